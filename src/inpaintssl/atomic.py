"""Crash-safe file writes: write to a temporary file in the same folder, fsync, then rename.

A reader (or a resumed run) therefore sees either the old complete file or the new complete
file, never a torn one, even when the writer is killed with SIGKILL or the disk fills up.

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
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "fsync_dir",
    "give_plain_permissions",
    "io_error_of",
    "temporary_prefix",
    "write_error",
]


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
"""Characters of the target's name a temporary's name starts with."""


def temporary_prefix(target: Path) -> str:
    """``.<name>.``, the start of a temporary's name beside ``target``: hidden, and traceable to it.

    The temporary's name adds ~14 characters: a target name near the file system's limit (255)
    keeps only its first 200 there, so that its own legal length is not refused.

    Example:
        >>> temporary_prefix(Path("runs/a/metrics.csv"))
        '.metrics.csv.'
    """
    return f".{target.name[:_TEMPORARY_NAME_PREFIX]}."


def write_error(what: str, exc: OSError) -> OSError:
    """``exc`` restated as ``could not write <what>: <reason>`` (its errno kept), to raise from it.

    A failed write names what was being written, not a hidden temporary beside it.

    Example:
        >>> str(write_error("runs/a/metrics.csv", OSError(28, "No space left on device")))
        '[Errno 28] could not write runs/a/metrics.csv: No space left on device'
    """
    return OSError(exc.errno, f"could not write {what}: {exc.strerror or exc}")


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


@contextlib.contextmanager
def atomic_path(target: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed over ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched. The new file
    gets the permissions a plain write would give it (the old file's, or the umask's for a new
    one), not the owner-only mode of a temporary file.

    Raises:
        OSError: Creating, writing or renaming failed (e.g. ``ENOSPC``); the message names the target.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(str(target), exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
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
        raise write_error(str(target), exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
