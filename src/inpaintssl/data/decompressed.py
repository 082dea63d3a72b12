"""Compressed volumes decompressed once into a folder, and memory-mapped by every process that reads them.

A slice of a ``.nii.gz`` or ``.npz`` volume cannot be read without decompressing the whole volume,
so a reader keeps the decompressed array (:meth:`~inpaintssl.data.readers.Volume.release`). Kept
in memory, each process holds its own copy: the training process, and every DataLoader worker
started by ``forkserver`` or ``spawn`` (or forked before the training process read the volume)
decompresses the same volumes again. Under :func:`decompressed_into`, a volume opened keeps its
array as an uncompressed ``.npy`` file in a folder instead (``data.cache_dir``), which every
process memory-maps: the operating system's page cache holds it once for all of them, drops what
does not fit, and the next run over the same files (a study's many runs) decompresses nothing.
This is what nnU-Net does when it unpacks its ``.npz`` training data to ``.npy``.

A file is named by a digest of what it was decompressed from: the reader, the array read, and
each source file's absolute path, size and modification time, so a source rewritten or replaced
gets a new file and the old one is never read for it. It is written atomically
(:mod:`inpaintssl.atomic`): processes that decompress the same volume at once each write a
complete file, and the last rename wins with the same bytes. A file that cannot be read back or
holds another shape (damaged by something else) is decompressed and written again. A folder that
cannot be written (full, read-only) costs memory, not the run: the array is kept in memory, with
a warning. Nothing removes the files: delete the folder (or files in it) when its data is gone.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from inpaintssl.data.readers import NumpyVolume
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.savez_compressed(folder / "scan.npz", image=np.arange(24.0).reshape(2, 3, 4))
    >>> with decompressed_into(folder / "cache"):
    ...     volume = NumpyVolume(folder / "scan.npz", key="image")
    >>> volume.read(1).tolist()
    [[1.0, 5.0, 9.0], [13.0, 17.0, 21.0]]
    >>> [p.suffix for p in (folder / "cache").iterdir()]
    ['.npy']
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from inpaintssl.atomic import atomic_path
from inpaintssl.warning_format import warn_each_time

__all__ = ["FORMAT_VERSION", "current_folder", "decompressed_into", "decompressed_name", "kept_on_disk"]

FORMAT_VERSION = 1
"""Part of every file's digest: a change in what a reader decompresses to gets new files."""

_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("inpaintssl_decompressed", default=None)


@contextlib.contextmanager
def decompressed_into(folder: str | Path | None) -> Iterator[None]:
    """Volumes opened inside keep their decompressed arrays as ``.npy`` files in ``folder``.

    ``None`` keeps them in memory, as outside. The folder travels with each volume (pickled into
    DataLoader workers too); it is created at the first write.

    Example:
        >>> with decompressed_into("/tmp/decompressed"):
        ...     current_folder()
        PosixPath('/tmp/decompressed')
        >>> current_folder() is None
        True
    """
    token = _FOLDER.set(None if folder is None else Path(folder))
    try:
        yield
    finally:
        _FOLDER.reset(token)


def current_folder() -> Path | None:
    """The folder of the innermost :func:`decompressed_into`, ``None`` outside one."""
    return _FOLDER.get()


def decompressed_name(*, reader: str, source: str, files: Sequence[str]) -> str:
    """The file name a volume's decompressed array gets: a digest of where it came from.

    Args:
        reader: The reader's class name (what decoding the bytes means).
        source: The file and the array read inside it (:attr:`Volume.source`).
        files: Every file the array is decompressed from; each one's absolute path, size and
            modification time (nanoseconds) enter the digest.

    Raises:
        OSError: A file cannot be examined (``os.stat``).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.nii.gz"
        >>> _ = path.write_bytes(b"1")
        >>> first = decompressed_name(reader="NiftiVolume", source=str(path), files=[str(path)])
        >>> _ = path.write_bytes(b"22")
        >>> first != decompressed_name(reader="NiftiVolume", source=str(path), files=[str(path)])
        True
    """
    stats = []
    for name in files:
        stat = os.stat(name)
        stats.append([os.path.abspath(name), stat.st_size, stat.st_mtime_ns])
    described = json.dumps([FORMAT_VERSION, reader, source, stats])
    return hashlib.sha256(described.encode()).hexdigest()[:32] + ".npy"


def kept_on_disk(
    folder: Path, name: str, *, shape: Sequence[int], what: str, decompress: Callable[[], np.ndarray]
) -> np.ndarray:
    """``folder / name`` memory-mapped read-only, decompressed into it first when it is not there.

    Args:
        folder: Where the decompressed files live (``data.cache_dir``).
        name: The file's name (:func:`decompressed_name`).
        shape: The stored shape of the volume: a file of another shape is decompressed again.
        what: The volume as messages name it.
        decompress: Returns the whole decompressed array.

    Returns:
        The memory map; or the decompressed array itself where the folder cannot be written.
    """
    target = folder / name
    try:
        mapped: np.ndarray = np.load(target, mmap_mode="r")
    except (FileNotFoundError, NotADirectoryError):
        pass  # not decompressed yet (or no folder can be made there: the write says so)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        warn_each_time(
            f"data.cache_dir: {target}, the decompressed copy of {what}, cannot be read ({exc}); "
            "decompressing it again",
            UserWarning,
        )
    else:
        if tuple(mapped.shape) == tuple(shape):
            return mapped
        warn_each_time(
            f"data.cache_dir: {target}, the decompressed copy of {what}, holds shape {mapped.shape}; "
            f"expected {tuple(shape)}: decompressing it again",
            UserWarning,
        )
    array = decompress()
    try:
        with atomic_path(target) as temporary, temporary.open("wb") as out:
            # Into the open file: np.save given a path would append ".npy" to the temporary's name.
            np.save(out, np.ascontiguousarray(array), allow_pickle=False)
        written: np.ndarray = np.load(target, mmap_mode="r")
        return written
    except (OSError, ValueError) as exc:
        warn_each_time(
            f"data.cache_dir: cannot keep {what} decompressed in {folder} ({exc}); this process keeps "
            "it in memory instead",
            UserWarning,
        )
        return array
