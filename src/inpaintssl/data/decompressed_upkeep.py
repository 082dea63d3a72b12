"""What a ``data.cache_dir`` folder holds, and removing what is no longer worth keeping.

Runs never remove a decompressed volume (:mod:`~inpaintssl.data.decompressed`): a source
rewritten gets a new file beside the old one, and volumes no run reads any more stay.
:func:`list_decompressed` lists the folder: each volume's size, last use (each use sets its
modification time) and, from the record beside it, whether its source files changed since.
:func:`prune_decompressed` removes the volumes whose sources changed or are gone, those unused
past an age, and then the ones unused for longest down to a size (``inpaintssl cache prune``).

Pruning while runs read the folder is safe. A run keeps what it has mapped: POSIX keeps an
unlinked file's data while it is open. A process that opens the volume afterwards decompresses
it again, and one that had just written it, not yet mapped, writes it again. Only names the
library writes are touched: ``<32 hex digits>.npy`` regular files, their ``.json`` records and
the temporaries of their writers; other files, links and folders are listed as
:attr:`DecompressedFolder.other` and left.

Example:
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from inpaintssl.data.decompressed import decompressed_into
    >>> from inpaintssl.data.readers import NumpyVolume
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> np.savez_compressed(root / "scan.npz", image=np.zeros((2, 3, 4)))
    >>> with decompressed_into(root / "cache"):
    ...     _ = NumpyVolume(root / "scan.npz", key="image").read(0)
    >>> (volume,) = list_decompressed(root / "cache").files
    >>> volume.size, volume.stale
    (320, False)
    >>> np.savez_compressed(root / "scan.npz", image=np.ones((2, 3, 4)))  # the scan rewritten
    >>> report = prune_decompressed(root / "cache", stale=True)
    >>> [entry.path for entry in report.removed] == [volume.path], report.kept
    (True, ())
"""

from __future__ import annotations

import datetime
import logging
import math
import numbers
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from inpaintssl.atomic import TEMPORARY_TOKEN, remove_unlocked
from inpaintssl.byte_sizes import parse_byte_size
from inpaintssl.data.decompressed import DecompressedSource, own_record, source_record_path

__all__ = ["DecompressedFile", "DecompressedFolder", "PruneReport", "list_decompressed", "prune_decompressed"]

log = logging.getLogger("inpaintssl")

_VOLUME_NAME = re.compile(r"[0-9a-f]{32}\.npy")
"""What :func:`~inpaintssl.data.decompressed.decompressed_name` names a volume."""

_RECORD_NAME = re.compile(r"[0-9a-f]{32}\.json")
"""A volume's record of its sources (:func:`~inpaintssl.data.decompressed.source_record_path`)."""

_TEMPORARY_NAME = re.compile(r"\.[0-9a-f]{32}\.(?:npy|json)\." + TEMPORARY_TOKEN + r"\.tmp")
"""A volume's or record's temporary while a process writes it (:func:`~inpaintssl.atomic.atomic_path`)."""


@dataclass(frozen=True)
class DecompressedFile:
    """One decompressed volume in a ``data.cache_dir`` folder.

    Attributes:
        path: The ``.npy`` file.
        size: Its size in bytes.
        last_used: When a run last read it (or wrote it), in seconds since the epoch: its
            modification time, which each use sets.
        source: What it was decompressed from, from the record beside it; ``None`` where there
            is no readable record (a file written before records were kept, which its next use
            records).
        changes: How its source files differ from the record now (each one gone or rewritten);
            ``None`` without a record, or when the listing did not examine the sources
            (:func:`list_decompressed` with ``check_sources=False``).
    """

    path: Path
    size: int
    last_used: float
    source: DecompressedSource | None = None
    changes: tuple[str, ...] | None = None

    @property
    def stale(self) -> bool | None:
        """Its sources changed or are gone, so no run reads it again; ``None``: unknown (no record,
        or its sources were not examined)."""
        return None if self.changes is None else bool(self.changes)


@dataclass(frozen=True)
class DecompressedFolder:
    """What a ``data.cache_dir`` folder holds (:func:`list_decompressed`).

    Attributes:
        folder: The folder.
        files: Its decompressed volumes, the one unused for longest first.
        temporaries: Files being written, or left by writers that were killed.
        orphaned_records: Records of sources whose volume is gone.
        other: Entries that are none of these (the library never touches them).
    """

    folder: Path
    files: tuple[DecompressedFile, ...]
    temporaries: tuple[Path, ...]
    orphaned_records: tuple[Path, ...]
    other: tuple[Path, ...]

    @property
    def total_size(self) -> int:
        """The bytes of :attr:`files`."""
        return sum(entry.size for entry in self.files)


def list_decompressed(folder: str | Path, *, check_sources: bool = True) -> DecompressedFolder:
    """The decompressed volumes in ``folder`` (a ``data.cache_dir``), the one unused for longest first.

    Only regular files named as the library names them are listed as volumes, records and
    temporaries; links and other entries are listed as :attr:`~DecompressedFolder.other`.

    Args:
        folder: A ``data.cache_dir`` folder.
        check_sources: Examine each volume's recorded source files (one ``stat`` per file: a
            DICOM series is hundreds, on what is often a network file system) to tell whether it
            is :attr:`~DecompressedFile.stale`; ``False`` leaves every
            :attr:`~DecompressedFile.changes` ``None``, for listings that need sizes and ages only.

    Raises:
        NotADirectoryError: ``folder`` is not a folder (the message names it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        found = "nothing there" if not folder.exists() else "a file"
        raise NotADirectoryError(f"{folder}: expected a data.cache_dir folder; found {found}")
    files: list[DecompressedFile] = []
    records: list[Path] = []
    temporaries: list[Path] = []
    other: list[Path] = []
    for path in sorted(folder.iterdir()):
        try:
            status = path.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed since it was listed (a run's writer renaming, another prune)
        regular = stat.S_ISREG(status.st_mode)
        if regular and _VOLUME_NAME.fullmatch(path.name):
            record = own_record(path)
            changes = None if record is None or not check_sources else tuple(record.changed())
            files.append(DecompressedFile(path, status.st_size, status.st_mtime, record, changes))
        elif regular and _RECORD_NAME.fullmatch(path.name):
            records.append(path)
        elif regular and _TEMPORARY_NAME.fullmatch(path.name):
            temporaries.append(path)
        else:
            other.append(path)
    volumes = {entry.path.with_suffix("") for entry in files}
    orphaned = tuple(path for path in records if path.with_suffix("") not in volumes)
    files.sort(key=lambda entry: (entry.last_used, entry.path.name))
    return DecompressedFolder(
        folder=folder,
        files=tuple(files),
        temporaries=tuple(temporaries),
        orphaned_records=orphaned,
        other=tuple(other),
    )


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune_decompressed` removed (or, in a dry run, would remove).

    Attributes:
        folder: The folder pruned.
        removed: The volumes removed, the one unused for longest first.
        kept: The volumes left, in the same order.
        temporaries_removed: Temporaries that no live writer held (left by killed writers).
        records_removed: Records whose volume was gone.
        failed: Volumes chosen for removal that could not be removed, with the reason; they
            are in :attr:`kept` too.
        dry_run: Nothing was removed: the report says what a prune would remove.
    """

    folder: Path
    removed: tuple[DecompressedFile, ...]
    kept: tuple[DecompressedFile, ...]
    temporaries_removed: tuple[Path, ...]
    records_removed: tuple[Path, ...]
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


def _remove(entry: DecompressedFile) -> str | None:
    """Remove a volume and its record; ``None`` when done (or already gone), else why not."""
    try:
        entry.path.unlink()
    except FileNotFoundError:
        pass  # another prune took it
    except OSError as exc:
        log.warning("could not remove %s from data.cache_dir: %s", entry.path, exc)
        return str(exc)
    record = source_record_path(entry.path)
    try:
        # Only a record the library wrote, a plain file: a link named like one is listed among the
        # entries it never touches, and went with the volume.
        if stat.S_ISREG(record.lstat().st_mode):
            record.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # a record without its volume: the next prune removes it
        log.warning("could not remove %s from data.cache_dir: %s", record, exc)
    return None


def _byte_limit(max_size: object) -> float | None:
    """``max_size`` checked as a number of bytes (a size text parsed); ``None`` stays ``None``."""
    if max_size is None:
        return None
    if isinstance(max_size, str):
        return parse_byte_size(max_size)
    if isinstance(max_size, bool) or not isinstance(max_size, numbers.Real):
        raise TypeError(
            f"prune_decompressed: max_size={max_size!r} is of type {type(max_size).__name__}; "
            "expected a number of bytes, or a size such as '200G'"
        )
    if not math.isfinite(max_size) or max_size < 0:
        # No comparison holds with NaN: every volume was chosen, and the whole cache removed.
        raise ValueError(f"prune_decompressed: max_size must be >= 0 bytes; found {max_size}")
    return float(max_size)


def prune_decompressed(
    folder: str | Path,
    *,
    max_size: int | str | None = None,
    unused_for: datetime.timedelta | None = None,
    stale: bool = False,
    dry_run: bool = False,
) -> PruneReport:
    """Remove the decompressed volumes of ``folder`` that are stale, old, or the longest unused past a size.

    A volume goes when its sources changed or are gone (with ``stale``), or when it was last
    used longer ago than ``unused_for``; then, the one unused for longest first, while the volumes
    left add up to more than ``max_size`` bytes. A volume without a record of its sources is never
    stale. Records whose volume is gone go too, and so do temporaries left by killed writers (a
    temporary a live writer holds stays: :func:`~inpaintssl.atomic.remove_unlocked`). Where the
    operating system refuses to remove a file (Windows, while a run maps it), the file is
    reported in :attr:`PruneReport.failed` and kept.

    Args:
        folder: A ``data.cache_dir`` folder.
        max_size: The bytes the volumes left may add up to, or a size as the command line takes
            it (``"200G"``: :func:`~inpaintssl.byte_sizes.parse_byte_size`); ``None``: no limit.
        unused_for: Remove every volume unused for longer than this (a
            :class:`datetime.timedelta`); ``None``: none by age.
        stale: Remove every volume whose recorded source files were rewritten or removed.
        dry_run: Remove nothing; report what would be removed.

    Returns:
        What was removed and kept. Without ``stale`` the volumes' sources are not examined (a
        prune by size or age needs no ``stat`` of them), so each entry's
        :attr:`~DecompressedFile.changes` is ``None``.

    Raises:
        ValueError: None of ``max_size``, ``unused_for`` and ``stale`` given, or a negative one,
            or a ``max_size`` that is no finite number of bytes (NaN removed every volume).
        TypeError: ``max_size`` is no number or size text (a bool among them), or ``unused_for``
            is no ``timedelta`` (a number of seconds or days would be a guess).
        NotADirectoryError: ``folder`` is not a folder.

    Example:
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from inpaintssl.data.decompressed import decompressed_into
        >>> from inpaintssl.data.readers import NumpyVolume
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> np.savez_compressed(root / "scan.npz", image=np.zeros((2, 3, 4)))
        >>> with decompressed_into(root / "cache"):
        ...     _ = NumpyVolume(root / "scan.npz", key="image").read(0)
        >>> report = prune_decompressed(root / "cache", max_size=0)
        >>> report.freed_size, report.kept, list((root / "cache").iterdir())
        (320, (), [])
    """
    if max_size is None and unused_for is None and not stale:
        raise ValueError("prune_decompressed: give max_size, unused_for, stale or several; found none")
    limit = _byte_limit(max_size)
    if unused_for is not None and not isinstance(unused_for, datetime.timedelta):
        raise TypeError(
            f"prune_decompressed: unused_for={unused_for!r} is of type {type(unused_for).__name__}; "
            "expected a datetime.timedelta (timedelta(days=30)), whose unit is explicit"
        )
    if unused_for is not None and unused_for < datetime.timedelta(0):
        raise ValueError(f"prune_decompressed: unused_for must be >= 0; found {unused_for}")
    # A prune by size or age alone never asks whether a volume is stale: its sources stay unread.
    contents = list_decompressed(folder, check_sources=stale)
    cutoff = -float("inf") if unused_for is None else time.time() - unused_for.total_seconds()
    # Stale and old volumes go whatever the size; then the longest unused while the rest exceed it.
    chosen = {e.path for e in contents.files if (stale and e.stale) or e.last_used < cutoff}
    left = contents.total_size - sum(e.size for e in contents.files if e.path in chosen)
    for entry in contents.files:
        if limit is None or left <= limit:
            break
        if entry.path not in chosen:
            chosen.add(entry.path)
            left -= entry.size
    removed: list[DecompressedFile] = []
    kept: list[DecompressedFile] = []
    failed: list[tuple[DecompressedFile, str]] = []
    for entry in contents.files:
        if entry.path not in chosen:
            kept.append(entry)
            continue
        reason = None if dry_run else _remove(entry)
        if reason is None:
            removed.append(entry)
        else:
            failed.append((entry, reason))
            kept.append(entry)
    records: list[Path] = []
    for record in contents.orphaned_records:
        if not dry_run:
            try:
                record.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not remove %s from data.cache_dir: %s", record, exc)
                continue
        records.append(record)
    temporaries = remove_unlocked(contents.folder, _TEMPORARY_NAME, folders=False, dry_run=dry_run)
    return PruneReport(
        folder=contents.folder,
        removed=tuple(removed),
        kept=tuple(kept),
        temporaries_removed=tuple(temporaries),
        records_removed=tuple(records),
        failed=tuple(failed),
        dry_run=dry_run,
    )
