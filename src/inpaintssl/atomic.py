"""Crash-safe file writes: write to a temporary file in the same folder, fsync, then rename.

A reader (or a resumed run) therefore sees either the old complete file or the new complete
file, never a torn one, even when the writer is killed with SIGKILL or the disk fills up.

A writer killed before its rename leaves its temporary behind, named ``.<name>.<8 random
characters>.tmp`` beside the target (:func:`temporary_prefix`). While it writes, the writer holds
an exclusive advisory lock (``flock``) on that file, which the operating system releases when the
process dies; :func:`remove_stale_temporaries` removes a target's temporaries that nobody holds,
so a writer that sweeps before it writes never removes a live writer's file, nor a user's file of
another name.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_text(d / "x.json", "{}")
    >>> (d / "x.json").read_text()
    '{}'
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "CLAIM_TRIES",
    "TEMPORARY_TOKEN",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "claim_temporary",
    "fsync_dir",
    "give_plain_permissions",
    "io_error_of",
    "lock_if_unused",
    "matching_entries",
    "remove_stale_temporaries",
    "remove_unlocked",
    "temporary_prefix",
    "write_error",
]

log = logging.getLogger("inpaintssl")


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entry table so a completed rename survives power loss (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    try:  # Linux says it without changing it
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    # Elsewhere it can only be read by setting it, for an instant.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(target: Path) -> int:
    """The permissions ``open(target, "w")`` would leave: the existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def give_plain_permissions(folder: Path) -> None:
    """Give a staging folder and everything in it the modes ``mkdir`` and ``open`` would have.

    ``tempfile.mkdtemp`` makes an owner-only (``0o700``) folder and some writers (``safetensors``)
    owner-only files; renamed into place as a checkpoint or a prediction folder, they would keep
    colleagues on a shared file system out. Folders get ``0o777``, files ``0o666``, less the umask.

    Example:
        >>> import os, stat, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> give_plain_permissions(d)
        >>> stat.S_IMODE(d.stat().st_mode) == 0o777 & ~_umask()
        True
    """
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


_TEMPORARY_NAME_PREFIX = 200
"""Bytes of the target's name (in the file system's encoding) a temporary's name starts with."""


def temporary_prefix(target: Path) -> str:
    """``.<name>.``, the start of a temporary's name beside ``target``: hidden, and traceable to it.

    The temporary's name adds ~14 bytes: a target name near the file system's limit (255 bytes)
    keeps only its first 200 bytes there, whole characters only, so that its own legal length is
    not refused.

    Example:
        >>> temporary_prefix(Path("runs/a/metrics.csv"))
        '.metrics.csv.'
        >>> len(temporary_prefix(Path("é" * 125 + ".csv")).encode())  # 254 bytes: 100 'é' kept
        202
    """
    # The limit counts bytes: 200 characters of a non-ASCII name (an accented patient name, a
    # CJK study title) made the temporary's name too long where the target's was not.
    name = target.name[:_TEMPORARY_NAME_PREFIX]
    while len(os.fsencode(name)) > _TEMPORARY_NAME_PREFIX:
        name = name[:-1]
    return f".{name}."


def write_error(what: str, exc: OSError) -> OSError:
    """``exc`` restated as ``could not write <what>: <reason>`` (its errno kept), to raise from it.

    A failed write names what was being written, not a hidden temporary beside it.

    Example:
        >>> str(write_error("runs/a/metrics.csv", OSError(28, "No space left on device")))
        '[Errno 28] could not write runs/a/metrics.csv: No space left on device'
    """
    if exc.errno is None:
        # OSError(None, text) prints as "[Errno None] text".
        return OSError(f"could not write {what}: {exc.strerror or exc}")
    return OSError(exc.errno, f"could not write {what}: {exc.strerror or exc}")


def _short_write_named(exc: OSError, folder: Path) -> OSError:
    """``exc``, or ``ENOSPC`` where it is a short write without a code into a folder with no room.

    NumPy's ``tofile`` (``np.save`` into an open file) reports a short write as ``OSError("N
    requested and M written")``, with no errno, so a full disk was not named as one.
    """
    if exc.errno is not None or not hasattr(os, "statvfs"):
        return exc
    try:
        full = os.statvfs(folder).f_bavail == 0
    except OSError:
        return exc
    if not full:
        return exc
    return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({exc})")


_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)")


def io_error_of(exc: BaseException) -> OSError | None:
    """The :class:`OSError` behind another library's I/O failure, or ``None`` when it is not one.

    Libraries written in Rust (``safetensors``) raise their own exception type for a failed write,
    with the operating system's error in the message (``I/O error: No space left on device (os
    error 28)``): restated as an ``OSError`` with that errno, :func:`write_error` can name the file
    and a full disk reads as one, whatever library hit it. An I/O error without a code becomes
    ``EIO``.

    Example:
        >>> error = io_error_of(RuntimeError("I/O error: No space left on device (os error 28)"))
        >>> error.errno == errno.ENOSPC, error.strerror
        (True, 'No space left on device')
        >>> io_error_of(RuntimeError("tensor 'w' is not contiguous")) is None
        True
    """
    if isinstance(exc, OSError):
        return exc
    message = str(exc)
    code = _OS_ERROR_CODE.search(message)
    if code is not None:
        number = int(code.group(1))
        return OSError(number, os.strerror(number))
    if "I/O error" in message:
        return OSError(errno.EIO, message)
    return None


CLAIM_TRIES = 5
"""Temporaries :func:`atomic_path` creates before giving up, should a sweep claim each one first."""


def claim_temporary(fd: int, name: str) -> bool:
    """Lock a new temporary ``name`` (open as ``fd``) for its writer; ``False``: a sweep took it first.

    A sweep locks a temporary before removing it, so between ``mkstemp`` and this lock one could
    have taken (and unlinked) the file: the writer then starts again with another. Where the file
    system has no locks, the writer goes on unlocked, and sweeps there remove nothing.
    """
    if sys.platform == "win32":
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    try:
        # Still the file under that name: a sweep may have locked, unlinked and released it.
        return os.stat(name).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _temporary(target: Path) -> tuple[int | None, Path]:
    """A new temporary beside ``target``, and the open descriptor holding its writer's lock."""
    for _ in range(CLAIM_TRIES):
        fd, name = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=".tmp", dir=target.parent)
        if sys.platform == "win32":
            # Windows cannot rename a file that is open; nor can it delete one, which protects it there.
            os.close(fd)
            return None, Path(name)
        if claim_temporary(fd, name):
            return fd, Path(name)
        os.close(fd)  # the sweep that claimed it removes it
    raise OSError(errno.EAGAIN, f"{CLAIM_TRIES} temporary files were removed by concurrent sweeps")


@contextlib.contextmanager
def atomic_path(target: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed over ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched. The new file
    gets the permissions a plain write would give it (the old file's, or the umask's for a new
    one), not the owner-only mode of a temporary file. Until then the temporary is locked against
    :func:`remove_stale_temporaries`, as long as the caller writes into that file (opening the
    path for writing does) rather than putting another file in its place.

    Raises:
        OSError: Creating, writing or renaming failed (e.g. ``ENOSPC``); the message names the target.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock, tmp = _temporary(target)
    except OSError as exc:
        raise write_error(str(target), exc) from exc
    try:
        yield tmp
        os.chmod(tmp, _plain_mode(target))
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        if fsync:
            fsync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(str(target), _short_write_named(exc, target.parent)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)  # and with it the lock, once the file is in place or gone


TEMPORARY_TOKEN = r"[a-z0-9_]{8}"
"""The random part ``tempfile.mkstemp`` gives a temporary's name (:func:`atomic_path`)."""


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Remove the temporaries killed writers of ``target`` left beside it; return what was removed.

    Only files named as :func:`atomic_path` names ``target``'s temporaries
    (``.<name>.<8 random characters>.tmp``) are candidates, and of those only the ones no live
    writer holds locked: a user's own file (another name, a folder, a link) is never touched, nor
    is a temporary another process is writing now. Where the file system has no locks (and on
    Windows) nothing is removed.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / ".model.onnx.k2x9ab_7.tmp").write_bytes(b"half an export")
        >>> _ = (root / ".model.onnx.notes.tmp").write_text("a user's")
        >>> [p.name for p in remove_stale_temporaries(root / "model.onnx")]
        ['.model.onnx.k2x9ab_7.tmp']
        >>> sorted(p.name for p in root.iterdir())
        ['.model.onnx.notes.tmp']
    """
    target = Path(target)
    pattern = re.compile(re.escape(temporary_prefix(target)) + TEMPORARY_TOKEN + r"\.tmp")
    return remove_unlocked(target.parent, pattern, folders=False)


def remove_unlocked(
    folder: Path, pattern: re.Pattern[str], *, folders: bool, dry_run: bool = False
) -> list[Path]:
    """Remove the entries of ``folder`` whose names match ``pattern`` that no live writer holds locked.

    The sweep behind :func:`remove_stale_temporaries` (files) and predict's staging folders
    (``folders=True``): each candidate of the kind asked for (never a link, a FIFO or the other
    kind) is locked with ``flock`` before it is removed, so an entry whose writer still holds its
    lock (:func:`claim_temporary`) is left alone, and is checked to be still the entry that was
    opened (a writer may have renamed it into place since it was listed). An entry that cannot be
    removed is logged and left: what a killed writer left must not fail the next one. Where the
    file system has no locks (and on Windows) nothing is removed. With ``dry_run``, each candidate
    is locked and checked as for removal, then released: the result says what would be removed (a
    writer that meets that lock before its own starts another temporary, and leaves the first to
    the next sweep).

    Returns:
        What was removed (with ``dry_run``: would be), sorted.
    """
    if sys.platform == "win32":
        return []
    removed: list[Path] = []
    for path in matching_entries(folder, pattern):
        fd = lock_if_unused(path, folder=folders)
        if fd is None:
            continue  # a live writer holds it, or a link, the other kind, gone, or no locks here
        try:
            if not dry_run:
                if folders:
                    shutil.rmtree(path)
                else:
                    path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove %s, left by an interrupted write: %s", path, exc)
            continue
        finally:
            os.close(fd)
        removed.append(path)
    return removed


def matching_entries(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """The entries of ``folder`` whose whole names match ``pattern``, sorted; none if it cannot be listed."""
    try:
        return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name))
    except OSError:
        return []  # no folder yet: nothing left there


def lock_if_unused(path: Path, *, folder: bool) -> int | None:
    """Lock ``path`` for this process if no live writer holds it; the open descriptor, else ``None``.

    ``path`` is opened without following a link (a FIFO without blocking) and must be of the kind
    asked for (a folder, else a regular file); it is locked with ``flock`` (never waiting) and
    checked to be still the entry of that name (a writer may have renamed another into place since
    it was listed). Closing the descriptor releases the lock. ``None`` also where the file system
    has no locks: the entry may be live. POSIX only.
    """
    import fcntl

    flags = os.O_RDONLY | os.O_NOFOLLOW | (getattr(os, "O_DIRECTORY", 0) if folder else os.O_NONBLOCK)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None  # a link, the other kind, or gone
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd
    except OSError:
        pass  # a live writer holds it, no locks here, or gone
    os.close(fd)
    return None


def atomic_write_bytes(target: str | Path, data: bytes, *, fsync: bool = True) -> None:
    """Atomically replace ``target`` with ``data``."""
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str, *, fsync: bool = True) -> None:
    """Atomically replace ``target`` with UTF-8 ``text``."""
    atomic_write_bytes(target, text.encode("utf-8"), fsync=fsync)


def atomic_write_with(target: str | Path, writer: Callable[[Path], None], *, fsync: bool = True) -> None:
    """Atomically create ``target`` by calling ``writer(tmp_path)`` (e.g. a library's save function)."""
    with atomic_path(target, fsync=fsync) as tmp:
        writer(tmp)
