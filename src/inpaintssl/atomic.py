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
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_with", "fsync_dir"]


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entry table so a completed rename survives power loss (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed over ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched.

    Raises:
        OSError: Creating, writing or renaming failed (e.g. ``ENOSPC``); the message names the target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        if fsync:
            fsync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, f"could not write {target}: {exc.strerror or exc}") from exc
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
