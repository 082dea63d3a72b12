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
a warning.

Runs never remove a file. Each use of one sets its modification time (where the folder lets this
process), so :func:`prune_decompressed` can remove the files unused for longest, down to a size or
past an age (``inpaintssl cache prune``), and :func:`list_decompressed` says what the folder holds.
A file removed while a run maps it stays readable by that run (POSIX keeps an unlinked file's data
while it is open); a process that opens the volume afterwards decompresses it again.

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
import datetime
import hashlib
import json
import logging
import os
import re
import stat
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inpaintssl.atomic import TEMPORARY_TOKEN, atomic_path, remove_unlocked
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "FORMAT_VERSION",
    "DecompressedFile",
    "DecompressedFolder",
    "PruneReport",
    "current_folder",
    "decompressed_into",
    "decompressed_name",
    "kept_on_disk",
    "list_decompressed",
    "prune_decompressed",
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
            _mark_used(target)
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


def _mark_used(target: Path) -> None:
    """Set ``target``'s modification time to now: the last use :func:`prune_decompressed` orders by.

    Access times are no use for this: most file systems are mounted ``relatime`` or ``noatime``.
    A file this process may not change (another user's, a read-only folder) keeps its time.
    """
    with contextlib.suppress(OSError):
        os.utime(target)


_FILE_NAME = re.compile(r"[0-9a-f]{32}\.npy")
"""What :func:`decompressed_name` names a file; nothing else in a folder is listed or removed."""

_TEMPORARY_NAME = re.compile(r"\.[0-9a-f]{32}\.npy\." + TEMPORARY_TOKEN + r"\.tmp")
"""A file's temporary while a process writes it (:func:`~inpaintssl.atomic.atomic_path`)."""


@dataclass(frozen=True)
class DecompressedFile:
    """One decompressed volume in a ``data.cache_dir`` folder.

    Attributes:
        path: The ``.npy`` file.
        size: Its size in bytes.
        last_used: When a run last read it (or wrote it), in seconds since the epoch: its
            modification time, which each use sets.
    """

    path: Path
    size: int
    last_used: float


@dataclass(frozen=True)
class DecompressedFolder:
    """What a ``data.cache_dir`` folder holds (:func:`list_decompressed`).

    Attributes:
        folder: The folder.
        files: Its decompressed volumes, the one unused for longest first.
        temporaries: Files being written, or left by writers that were killed.
        other: Entries that are neither (the library never touches them).
    """

    folder: Path
    files: tuple[DecompressedFile, ...]
    temporaries: tuple[Path, ...]
    other: tuple[Path, ...]

    @property
    def total_size(self) -> int:
        """The bytes of :attr:`files`."""
        return sum(entry.size for entry in self.files)


def list_decompressed(folder: str | Path) -> DecompressedFolder:
    """The decompressed volumes in ``folder`` (a ``data.cache_dir``), the one unused for longest first.

    Only regular files named as :func:`decompressed_name` names them are volumes; links and other
    entries are listed as :attr:`~DecompressedFolder.other`.

    Raises:
        NotADirectoryError: ``folder`` is not a folder (the message names it).

    Example:
        >>> import tempfile, pathlib
        >>> from inpaintssl.data.readers import NumpyVolume
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> np.savez_compressed(root / "scan.npz", image=np.zeros((2, 3, 4)))
        >>> with decompressed_into(root / "cache"):
        ...     _ = NumpyVolume(root / "scan.npz", key="image").read(0)
        >>> contents = list_decompressed(root / "cache")
        >>> len(contents.files), contents.total_size
        (1, 320)
    """
    folder = Path(folder)
    if not folder.is_dir():
        found = "nothing there" if not folder.exists() else "a file"
        raise NotADirectoryError(f"{folder}: expected a data.cache_dir folder; found {found}")
    files: list[DecompressedFile] = []
    temporaries: list[Path] = []
    other: list[Path] = []
    for path in sorted(folder.iterdir()):
        try:
            status = path.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed since it was listed (a run's writer renaming, another prune)
        regular = stat.S_ISREG(status.st_mode)
        if regular and _FILE_NAME.fullmatch(path.name):
            files.append(DecompressedFile(path=path, size=status.st_size, last_used=status.st_mtime))
        elif regular and _TEMPORARY_NAME.fullmatch(path.name):
            temporaries.append(path)
        else:
            other.append(path)
    files.sort(key=lambda entry: (entry.last_used, entry.path.name))
    return DecompressedFolder(
        folder=folder, files=tuple(files), temporaries=tuple(temporaries), other=tuple(other)
    )


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune_decompressed` removed (or, in a dry run, would remove).

    Attributes:
        folder: The folder pruned.
        removed: The volumes removed, the one unused for longest first.
        kept: The volumes left, in the same order.
        temporaries_removed: Temporaries that no live writer held (left by killed writers).
        failed: Volumes chosen for removal that could not be removed, with the reason; they
            are in :attr:`kept` too.
        dry_run: Nothing was removed: the report says what a prune would remove.
    """

    folder: Path
    removed: tuple[DecompressedFile, ...]
    kept: tuple[DecompressedFile, ...]
    temporaries_removed: tuple[Path, ...]
    failed: tuple[tuple[DecompressedFile, str], ...]
    dry_run: bool

    @property
    def freed_size(self) -> int:
        """The bytes of :attr:`removed`."""
        return sum(entry.size for entry in self.removed)

    @property
    def kept_size(self) -> int:
        """The bytes of :attr:`kept`."""
        return sum(entry.size for entry in self.kept)


def prune_decompressed(
    folder: str | Path,
    *,
    max_size: int | None = None,
    unused_for: datetime.timedelta | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Remove the decompressed volumes of ``folder`` unused for longest: past an age, down to a size.

    A volume goes when it was last used longer ago than ``unused_for``, and then, the one unused
    for longest first, while the volumes left add up to more than ``max_size`` bytes. Temporaries
    left by killed writers go too; a temporary a live writer holds stays
    (:func:`~inpaintssl.atomic.remove_unlocked`). Nothing else in the folder is touched. Pruning
    while runs read the folder is safe: a run keeps what it has mapped, and decompresses again what
    it opens afterwards (where the operating system refuses to remove a mapped file, Windows, the
    file is reported in :attr:`PruneReport.failed` and kept).

    Args:
        folder: A ``data.cache_dir`` folder.
        max_size: The bytes the volumes left may add up to; ``None``: no limit.
        unused_for: Remove every volume unused for longer than this; ``None``: none by age.
        dry_run: Remove nothing; report what would be removed.

    Returns:
        What was removed and kept.

    Raises:
        ValueError: Neither ``max_size`` nor ``unused_for`` given, or one is negative.
        NotADirectoryError: ``folder`` is not a folder.

    Example:
        >>> import tempfile, pathlib
        >>> from inpaintssl.data.readers import NumpyVolume
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> np.savez_compressed(root / "scan.npz", image=np.zeros((2, 3, 4)))
        >>> with decompressed_into(root / "cache"):
        ...     _ = NumpyVolume(root / "scan.npz", key="image").read(0)
        >>> report = prune_decompressed(root / "cache", max_size=0)
        >>> report.freed_size, report.kept
        (320, ())
    """
    if max_size is None and unused_for is None:
        raise ValueError("prune_decompressed: give max_size, unused_for or both; found neither")
    if max_size is not None and max_size < 0:
        raise ValueError(f"prune_decompressed: max_size must be >= 0 bytes; found {max_size}")
    if unused_for is not None and unused_for < datetime.timedelta(0):
        raise ValueError(f"prune_decompressed: unused_for must be >= 0; found {unused_for}")
    contents = list_decompressed(folder)
    cutoff = -float("inf") if unused_for is None else time.time() - unused_for.total_seconds()
    left = contents.total_size
    removed: list[DecompressedFile] = []
    kept: list[DecompressedFile] = []
    failed: list[tuple[DecompressedFile, str]] = []
    for entry in contents.files:
        too_old = entry.last_used < cutoff
        too_much = max_size is not None and left > max_size
        if not (too_old or too_much):
            kept.append(entry)
            continue
        if not dry_run:
            try:
                entry.path.unlink()
            except FileNotFoundError:
                left -= entry.size
                continue  # another prune took it: not this one's to report
            except OSError as exc:
                log.warning("could not remove %s from data.cache_dir: %s", entry.path, exc)
                failed.append((entry, str(exc)))
                kept.append(entry)
                continue
        left -= entry.size
        removed.append(entry)
    temporaries = remove_unlocked(contents.folder, _TEMPORARY_NAME, folders=False, dry_run=dry_run)
    return PruneReport(
        folder=contents.folder,
        removed=tuple(removed),
        kept=tuple(kept),
        temporaries_removed=tuple(temporaries),
        failed=tuple(failed),
        dry_run=dry_run,
    )
