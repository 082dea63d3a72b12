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

A file is named by a digest of what it was decompressed from: the reader, the array read, and each
source file's real path, size and modification time when the volume was opened (its header
read), so a source rewritten or replaced gets a new file and the old one is never read for it. The
bytes are decoded with that header, so a volume whose files changed since is refused
(:class:`~inpaintssl.data.base.DataError`) rather than decompressed, checked before and after the
read. It is written atomically (:mod:`inpaintssl.atomic`): processes that decompress the same
volume at once each write a complete file, and the last rename wins with the same bytes. A file
that cannot be read back or holds another shape (damaged by something else) is decompressed and
written again, as is a file a prune removes between its write and its mapping. A folder that
cannot be written (full, read-only) costs memory, not the run: the array is kept in memory, with
a warning.

Beside each ``<digest>.npy`` a ``<digest>.json`` records what it was decompressed from
(:class:`DecompressedSource`), so that a file whose sources were rewritten or removed can be
told apart. Runs never remove a file. Each use of one sets its modification time (where the
folder lets this process), so :mod:`~inpaintssl.data.decompressed_upkeep` can list the folder
and remove the files of changed sources and those unused for longest (``inpaintssl cache``).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from inpaintssl.data.readers import NumpyVolume
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.savez_compressed(folder / "scan.npz", image=np.arange(24.0).reshape(2, 3, 4))
    >>> with decompressed_into(folder / "cache"):
    ...     volume = NumpyVolume(folder / "scan.npz", key="image")
    >>> volume.read(1).tolist()
    [[1.0, 5.0, 9.0], [13.0, 17.0, 21.0]]
    >>> sorted(p.suffix for p in (folder / "cache").iterdir())  # the array, and what it came from
    ['.json', '.npy']
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.atomic import atomic_path, atomic_write_text
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "FORMAT_VERSION",
    "DecompressedSource",
    "current_folder",
    "decompressed_into",
    "decompressed_name",
    "changed_files",
    "file_states",
    "kept_on_disk",
    "own_record",
    "source_record_path",
]

log = logging.getLogger("inpaintssl")

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


def file_states(files: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    """Each file's real path, size in bytes and modification time in nanoseconds, now.

    The real path (absolute, symbolic links resolved): a file reached by two spellings is one file.

    Raises:
        OSError: A file cannot be examined (``os.stat``).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.nii.gz"
        >>> _ = path.write_bytes(b"123")
        >>> [(name == str(path), size) for name, size, _ in file_states([str(path)])]
        [(True, 3)]
    """
    states = []
    for name in files:
        stat = os.stat(name)
        states.append((os.path.realpath(name), stat.st_size, stat.st_mtime_ns))
    return tuple(states)


def changed_files(states: Sequence[tuple[str, int, int]]) -> list[str]:
    """How the files of ``states`` (:func:`file_states`) differ now: each one gone or rewritten.

    A file that exists but cannot be examined (its folder unreadable to this user, an I/O error
    of a network mount) is not known to have changed, and is not listed.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.raw"
        >>> _ = path.write_bytes(b"1")
        >>> states = file_states([str(path)])
        >>> changed_files(states)
        []
        >>> path.unlink()
        >>> changed_files(states) == [f"{path} is gone"]
        True
    """
    found = []
    for path, size, modified in states:
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            found.append(f"{path} is gone")
            continue
        except OSError:
            # Permission denied on another user's folder of a shared cache, or a mount's I/O error:
            # called gone, the volume was pruned as stale while its scan stood unchanged.
            continue
        if (stat.st_size, stat.st_mtime_ns) != (size, modified):
            found.append(f"{path} was rewritten")
    return found


@dataclass(frozen=True)
class DecompressedSource:
    """Where a decompressed file came from: the reader, the array read, and each source file as it was.

    Attributes:
        reader: The reader's class name (what decoding the bytes means).
        source: The file and the array read inside it (:attr:`Volume.source`).
        files: Every file the array was decompressed from: its real path, size in bytes and
            modification time in nanoseconds, when it was read.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.nii.gz"
        >>> _ = path.write_bytes(b"1")
        >>> record = DecompressedSource.of(reader="NiftiVolume", source=str(path), files=[str(path)])
        >>> record.changed()
        []
        >>> _ = path.write_bytes(b"22")
        >>> record.changed() == [f"{path} was rewritten"]
        True
    """

    reader: str
    source: str
    files: tuple[tuple[str, int, int], ...]

    @classmethod
    def of(cls, *, reader: str, source: str, files: Sequence[str]) -> DecompressedSource:
        """The record of ``files`` as they are now.

        Raises:
            OSError: A file cannot be examined (``os.stat``).
        """
        return cls(reader=reader, source=source, files=file_states(files))

    @property
    def name(self) -> str:
        """The decompressed file's name: a digest of this record, so that another record gets another file."""
        described = json.dumps([FORMAT_VERSION, self.reader, self.source, [list(f) for f in self.files]])
        return hashlib.sha256(described.encode()).hexdigest()[:32] + ".npy"

    def changed(self) -> list[str]:
        """How the source files differ from the record now: each one gone or rewritten; empty if none."""
        return changed_files(self.files)

    def to_json(self) -> str:
        """The record as the JSON file beside the decompressed one holds it."""
        return json.dumps(
            {"format": FORMAT_VERSION, "reader": self.reader, "source": self.source, "files": self.files},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> DecompressedSource:
        """The record a JSON file holds (:meth:`to_json`).

        Raises:
            ValueError: Not such a record (damaged, or of another format version).
        """
        try:
            data: Any = json.loads(text)
            if data["format"] != FORMAT_VERSION:
                raise ValueError(f"format {data['format']!r}; expected {FORMAT_VERSION}")
            files = tuple((str(p), int(size), int(modified)) for p, size, modified in data["files"])
            return cls(reader=str(data["reader"]), source=str(data["source"]), files=files)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a record of a decompressed volume's sources: {exc}") from exc


def decompressed_name(*, reader: str, source: str, files: Sequence[str]) -> str:
    """The file name a volume's decompressed array gets: a digest of where it came from.

    The :attr:`DecompressedSource.name` of the files as they are now.

    Args:
        reader: The reader's class name (what decoding the bytes means).
        source: The file and the array read inside it (:attr:`Volume.source`).
        files: Every file the array is decompressed from; each one's real path, size and
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
    return DecompressedSource.of(reader=reader, source=source, files=files).name


def source_record_path(target: Path) -> Path:
    """Where the record of ``target``'s sources lives: ``<digest>.json`` beside ``<digest>.npy``.

    Example:
        >>> source_record_path(Path("cache/0123.npy"))
        PosixPath('cache/0123.json')
    """
    return target.with_suffix(".json")


def kept_on_disk(
    folder: Path,
    name: str,
    *,
    shape: Sequence[int],
    what: str,
    decompress: Callable[[], np.ndarray],
    source: DecompressedSource | None = None,
) -> np.ndarray:
    """``folder / name`` memory-mapped read-only, decompressed into it first when it is not there.

    Args:
        folder: Where the decompressed files live (``data.cache_dir``).
        name: The file's name (:func:`decompressed_name`).
        shape: The stored shape of the volume: a file of another shape is decompressed again.
        what: The volume as messages name it.
        decompress: Returns the whole decompressed array.
        source: What it is decompressed from, recorded beside the file
            (:func:`source_record_path`) when it is written, or used without a record of its own
            that reads (none, or one damaged).

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
            _mark_used(target)
            if source is not None and own_record(target) is None:
                # Written before records were kept, or its record damaged (written without an
                # fsync, a crash can leave it empty): without one it could never be found stale.
                _record_source(target, source)
            return mapped
        warn_each_time(
            f"data.cache_dir: {target}, the decompressed copy of {what}, holds shape {mapped.shape}; "
            f"expected {tuple(shape)}: decompressing it again",
            UserWarning,
        )
    array = decompress()
    try:
        written = _written(target, array)
    except (OSError, ValueError) as exc:
        warn_each_time(
            f"data.cache_dir: cannot keep {what} decompressed in {folder} ({exc}); this process keeps "
            "it in memory instead",
            UserWarning,
        )
        return array
    if source is not None:
        _record_source(target, source)
    return written


def _written(target: Path, array: np.ndarray) -> np.ndarray:
    """Write ``array`` to ``target`` atomically and memory-map it read-only.

    Raises:
        OSError: The write failed, or the file was removed twice as soon as it was in place.
        ValueError: What was written does not read back as an array.
    """

    def write() -> None:
        with atomic_path(target) as temporary, temporary.open("wb") as out:
            # Into the open file: np.save given a path would append ".npy" to the temporary's name.
            # np.save keeps a Fortran-ordered array so (a volume read along its last axis:
            # Volume._kept), its slices contiguous in the file, and writes any other in C order.
            np.save(out, array, allow_pickle=False)

    write()
    try:
        mapped: np.ndarray = np.load(target, mmap_mode="r")
    except FileNotFoundError:
        # A prune between the rename and the map (``inpaintssl cache prune`` beside running
        # runs, which the upkeep module says is safe): the folder can be written, so write again
        # rather than keep the volume in memory with a warning that it cannot.
        write()
        mapped = np.load(target, mmap_mode="r")
    return mapped


def own_record(target: Path) -> DecompressedSource | None:
    """The record beside ``target``, if it reads as its own (a record of this format whose digest
    is ``target``'s name): what upkeep tells a volume stale by
    (:func:`~inpaintssl.data.decompressed_upkeep.list_decompressed`).
    """
    try:
        record = DecompressedSource.from_json(source_record_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not such a record
        return None
    return record if record.name == target.name else None


def _record_source(target: Path, source: DecompressedSource) -> None:
    """Write the record of ``target``'s sources beside it; without one it is only of unknown source.

    The record is for upkeep (:mod:`~inpaintssl.data.decompressed_upkeep`), never for reading:
    a failed write leaves the volume usable, and is only logged.
    """
    try:
        atomic_write_text(source_record_path(target), source.to_json(), fsync=False)
    except OSError as exc:
        log.debug("could not record the sources of %s: %s", target, exc)


def _mark_used(target: Path) -> None:
    """Set ``target``'s modification time to now: the last use pruning orders by.

    Access times are no use for this: most file systems are mounted ``relatime`` or ``noatime``.
    A file this process may not change (another user's, a read-only folder) keeps its time.
    """
    with contextlib.suppress(OSError):
        os.utime(target)
