"""One writer per run folder: a lock file that names its owner, taken before anything is written.

Two runs started into one folder would interleave their checkpoints, TensorBoard files and
config, and both exit 0. :func:`acquire_run_lock` creates ``<run>/.inpaintssl.lock`` atomically
(the file appears whole or not at all), holding the owner's pid, host and start time; a second
run finds it and stops with :class:`RunFolderLockedError` naming that owner.

A lock left by a run that died without cleaning up (``kill -9``, a power cut) is *stale* when its
owner ran on this host and its pid is gone (or now belongs to a newer process): it is taken over
with a warning. This host cannot see another host's processes, so a lock's owner also keeps it
alive with a heartbeat: a thread touches the lock file every :data:`LOCK_HEARTBEAT_S` seconds, and
a lock from another host whose file has not been touched for :data:`LOCK_STALE_AFTER_S` seconds is
stale too. That is what lets a run killed on one cluster node (a preemption's ``SIGKILL``, a lost
node) resume on another: the requeued run finds the lock silent and takes it over, where it would
otherwise wait for someone to delete the file. The threshold is eight heartbeats, far beyond
clock differences between NTP-synchronised nodes and the stalls of a shared file system; a run
frozen for longer (``SIGSTOP``, a suspended job) loses its lock and finds out when it releases it.
A lock written without a heartbeat (by a version before it) is never stale from another host;
:func:`waiting_for_live_locks` lets a caller (a study's requeued worker) wait for a fresh one to go
silent instead of failing at once.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with acquire_run_lock(folder) as lock:
    ...     lock.path.name, lock.owner.pid == os.getpid()
    ('.inpaintssl.lock', True)
    >>> RunFolder(folder).lock.exists()
    False
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from inpaintssl.atomic import write_error
from inpaintssl.layout import RunFolder
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "LOCK_HEARTBEAT_S",
    "LOCK_STALE_AFTER_S",
    "LockOwner",
    "RunFolderInUseError",
    "RunFolderLockedError",
    "RunLock",
    "StaleLockWarning",
    "acquire_run_lock",
    "pid_alive",
    "process_start_ticks",
    "read_lock",
    "waiting_for_live_locks",
]

LOCK_HEARTBEAT_S = 15.0
"""How often a held lock's file is touched (seconds)."""

LOCK_STALE_AFTER_S = 120.0
"""How long a lock from another host may go untouched before it counts as stale (seconds)."""

_WAIT_FOR_LIVE_LOCKS: contextvars.ContextVar[float] = contextvars.ContextVar(
    "wait_for_live_locks", default=0.0
)


class RunFolderInUseError(FileExistsError):
    """A new run would overwrite a folder that already holds a run, or another run is writing it."""


class RunFolderLockedError(RunFolderInUseError):
    """Another live run holds the run folder's lock (or its owner cannot be checked from here)."""


class StaleLockWarning(UserWarning):
    """A run folder's lock was left by a process that no longer runs; it was taken over."""


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (Linux ``/proc``); ``None`` where unknown.

    Why: a pid is reused after its process exits, so "pid alive" alone can mistake a stale lock
    for a live one; the start time tells the original process from a newcomer.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (POSIX; elsewhere assumed alive).

    Run-folder locks and the study queue's claims both ask this of a recorded owner.

    Example:
        >>> pid_alive(os.getpid()), pid_alive(0)
        (True, False)
    """
    if pid <= 0:
        return False
    if os.name != "posix":
        # Windows' os.kill(pid, 0) does not probe: it sends CTRL_C_EVENT. There a lock's owner
        # counts as alive, and the study queue falls back on its heartbeat timeout.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    except OSError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but not been reaped (Linux's ``/proc``; elsewhere ``False``).

    A killed worker stays a zombie until its parent waits for it, and ``kill(pid, 0)`` succeeds on
    a zombie: its lock and its claimed run would look held until a heartbeat timeout.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself hold spaces or ")".
    return stat[stat.rfind(")") + 1 :].split()[:1] == ["Z"]


@dataclass(frozen=True)
class LockOwner:
    """Who holds a run folder: the lock file's content.

    Attributes:
        pid: The owner's process id.
        host: The owner's host name (``socket.gethostname()``).
        since: When the lock was taken (ISO 8601, local time with offset).
        token: A random id, so a process releases only a lock it created.
        pid_start: The owner's start time in clock ticks since boot, where the OS tells it.
        heartbeat_s: How often the owner touches the lock file; ``None``: it does not (a lock
            written before heartbeats), and then the lock is never stale from another host.
    """

    pid: int
    host: str
    since: str
    token: str = ""
    pid_start: int | None = None
    heartbeat_s: float | None = None

    @classmethod
    def current(cls, *, heartbeat_s: float = LOCK_HEARTBEAT_S) -> LockOwner:
        """This process, now."""
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            since=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            token=uuid.uuid4().hex,
            pid_start=process_start_ticks(os.getpid()),
            heartbeat_s=heartbeat_s,
        )

    def describe(self) -> str:
        """``pid 123 on host 'node7' since 2024-05-01T10:00:00+02:00``."""
        return f"pid {self.pid} on host {self.host!r} since {self.since}"

    def is_stale(self, *, silent_s: float | None = None, stale_after_s: float = LOCK_STALE_AFTER_S) -> bool:
        """Whether the owner is gone: on this host, its pid is dead or belongs to a newer process;
        on another host, its lock has a heartbeat that has been silent for over ``stale_after_s``.

        Args:
            silent_s: Seconds since the lock file was last touched (``None``: unknown).
            stale_after_s: The silence after which another host's lock is stale.
        """
        if self.host != socket.gethostname():
            return self.heartbeat_s is not None and silent_s is not None and silent_s > stale_after_s
        if not pid_alive(self.pid):
            return True
        if self.pid_start is None:
            return False
        now = process_start_ticks(self.pid)
        return now is not None and now != self.pid_start


def read_lock(folder: Path) -> LockOwner | None:
    """The owner recorded in ``folder``'s lock file, or ``None`` when there is no lock.

    Raises:
        RunFolderLockedError: The lock file exists but is not a lock this library wrote.
    """
    path = RunFolder(Path(folder)).lock
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data: Any = json.loads(text)
        return LockOwner(
            pid=int(data["pid"]),
            host=str(data["host"]),
            since=str(data["since"]),
            token=str(data.get("token", "")),
            pid_start=None if data.get("pid_start") is None else int(data["pid_start"]),
            heartbeat_s=None if data.get("heartbeat_s") is None else float(data["heartbeat_s"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RunFolderLockedError(
            f"run folder {str(folder)!r} is locked by {path}, which is not a readable lock "
            f"(expected JSON with pid, host and since; {type(exc).__name__}: {exc}). "
            "If no run is writing this folder, delete that file and start again"
        ) from exc


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` only if it does not exist; ``False`` when it does.

    The text goes into a private temporary file first, then is hard-linked into place: ``link``
    fails on an existing name just as ``O_CREAT | O_EXCL`` does, and a reader never sees a lock
    half-written. Filesystems without hard links fall back to ``O_EXCL`` and a plain write.
    """
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            temporary.write_text(text, encoding="utf-8")
        except OSError as exc:
            # A full disk or a read-only folder: say which lock, not which hidden temporary.
            raise write_error(f"run lock {path}", exc) from exc
        try:
            os.link(temporary, path)
            return True
        except FileExistsError:
            return False
        except OSError:
            pass  # no hard links here: the O_EXCL fallback below
    finally:
        # Also after a failed write: a full disk fails it once the file exists.
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise write_error(f"run lock {path}", exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        # A lock that could not be written whole must not stay to be read as "not a readable lock".
        with contextlib.suppress(OSError):
            path.unlink()
        raise write_error(f"run lock {path}", exc) from exc
    return True


class RunLock(contextlib.AbstractContextManager["RunLock"]):
    """A held run-folder lock; :meth:`release` (or leaving the ``with`` block) removes it.

    Attributes:
        path: The lock file.
        owner: This process's entry in it.
    """

    def __init__(self, path: Path, owner: LockOwner) -> None:
        self.path = path
        self.owner = owner
        self._held = True
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
        if owner.heartbeat_s is not None:
            # A daemon thread: a process that dies (or is killed) stops beating with it.
            self._heart = threading.Thread(
                target=self._beat, args=(owner.heartbeat_s,), name="inpaintssl-run-lock", daemon=True
            )
            self._heart.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                current = read_lock(self.path.parent)
                if current is None or current.token != self.owner.token:
                    return  # released, or taken over as stale: not this process's lock to keep alive
                os.utime(self.path)
            except (OSError, RunFolderLockedError):
                continue  # a file-system hiccup: the next beat tries again, long before the lock is stale

    def release(self) -> None:
        """Remove the lock file if it is still this process's (calling it again does nothing)."""
        if not self._held:
            return
        self._held = False
        self._stop.set()
        # The file goes before the heartbeat thread is joined: SIGTERM's exception (or Ctrl-C's)
        # arrives in the main thread and is most likely during that wait, and it must not leave
        # the lock behind. A beat racing the removal only fails to touch the missing file.
        try:
            current = read_lock(self.path.parent)
        except RunFolderLockedError:
            current = None
        if current is not None and current.token == self.owner.token:
            self.path.unlink(missing_ok=True)
        if self._heart is not None and self._heart is not threading.current_thread():
            self._heart.join(timeout=5.0)

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if value is None:
            self.release()
            return
        # A run leaving with an error (a folder made read-only, a full disk) may be unable to
        # remove its lock too: that must not replace the error that says what went wrong. The
        # lock left behind is taken over as stale by the next run on this host.
        try:
            self.release()
        except OSError as exc:
            warn_each_time(f"could not remove the run lock {self.path}: {exc}", UserWarning)


@contextlib.contextmanager
def waiting_for_live_locks(seconds: float) -> Iterator[None]:
    """Within this block, :func:`acquire_run_lock` waits up to ``seconds`` for a lock another host
    holds with a heartbeat to go silent (stale) before it gives up.

    For a run that is expected to find its own earlier attempt's lock: a study task requeued
    after its node was lost starts on another node at once, while the killed attempt's lock still
    looks fresh for up to :data:`LOCK_STALE_AFTER_S`.

    Example:
        >>> with waiting_for_live_locks(LOCK_STALE_AFTER_S + LOCK_HEARTBEAT_S):
        ...     pass
    """
    token = _WAIT_FOR_LIVE_LOCKS.set(max(0.0, float(seconds)))
    try:
        yield
    finally:
        _WAIT_FOR_LIVE_LOCKS.reset(token)


def _silent_for(path: Path) -> float | None:
    """Seconds since ``path`` was last touched (by its owner's heartbeat), ``None`` if it is gone."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return None


def acquire_run_lock(
    folder: Path,
    *,
    heartbeat_s: float | None = None,
    stale_after_s: float | None = None,
) -> RunLock:
    """Take ``folder``'s lock (creating the folder if needed) before anything is written into it.

    Args:
        folder: The run folder.
        heartbeat_s: How often the held lock's file is touched (default :data:`LOCK_HEARTBEAT_S`).
        stale_after_s: How long another host's lock may go untouched before it is taken over
            (default :data:`LOCK_STALE_AFTER_S`).

    Returns:
        The held lock; release it when the run ends, also on error.

    Raises:
        RunFolderLockedError: Another live process holds the lock (its pid, host and start time
            are named), a process on another host holds it with a heartbeat heard in the last
            ``stale_after_s`` (after any wait :func:`waiting_for_live_locks` allows) or without
            one, or the lock file is unreadable.
        OSError: The folder or its lock file could not be written (a full disk, a read-only
            folder); the message names the folder or the lock, and no temporary is left.
    """
    heartbeat_s = LOCK_HEARTBEAT_S if heartbeat_s is None else heartbeat_s
    stale_after_s = LOCK_STALE_AFTER_S if stale_after_s is None else stale_after_s
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(f"run folder {folder}", exc) from exc
    path = RunFolder(folder).lock
    owner = LockOwner.current(heartbeat_s=heartbeat_s)
    text = json.dumps(asdict(owner), indent=2)
    deadline = time.monotonic() + _WAIT_FOR_LIVE_LOCKS.get()
    # Two attempts: the second follows the removal of a stale lock.
    attempts = 0
    while attempts < 2:
        attempts += 1
        if _create_exclusive(path, text):
            return RunLock(path, owner)
        holder = read_lock(folder)
        if holder is None:
            continue  # released between our attempt and the read: try again
        silent = _silent_for(path)
        if holder.host != owner.host and not holder.is_stale(silent_s=silent, stale_after_s=stale_after_s):
            if holder.heartbeat_s is not None and silent is not None and time.monotonic() < deadline:
                # Asked to wait (a requeued study task): look again when it may have gone stale.
                until_stale = max(stale_after_s - silent, 0.0) + 1.0
                time.sleep(min(until_stale, max(deadline - time.monotonic(), 0.0)))
                attempts -= 1
                continue
            if holder.heartbeat_s is None:
                reason = (
                    "This host cannot check a process on another host, and that lock has no "
                    "heartbeat (written by an older version)"
                )
            else:
                reason = (
                    f"Its heartbeat was heard {silent or 0.0:.0f} s ago; a lock silent for over "
                    f"{stale_after_s:g} s is taken over, so a run killed on that host can resume here "
                    "once its lock has gone quiet"
                )
            raise RunFolderLockedError(
                f"run folder {str(folder)!r} is in use by another run: {holder.describe()} "
                f"(lock file {path}). {reason}; if that run is over, delete the lock file and start "
                "again, or choose another run.output_dir"
            )
        if holder.host == owner.host and not holder.is_stale():
            raise RunFolderLockedError(
                f"run folder {str(folder)!r} is in use by another run: {holder.describe()} "
                f"(lock file {path}). Wait for it to finish, or choose another run.output_dir"
            )
        gone = (
            "a process that no longer runs"
            if holder.host == owner.host
            else f"whose heartbeat has been silent for {silent or 0.0:.0f} s"
        )
        warn_each_time(
            f"run folder {str(folder)!r} had a stale lock from {holder.describe()}, {gone}; taking it over",
            StaleLockWarning,
        )
        # Remove the lock only if it is still the stale one just read: another process taking
        # it over at the same time may already have replaced it with its own live lock. (Between
        # this read and the unlink a tiny window remains; a lock file cannot close it.)
        with contextlib.suppress(RunFolderLockedError):
            again = read_lock(folder)
            if again is not None and again.token == holder.token and again.pid == holder.pid:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    holder = read_lock(folder)
    raise RunFolderLockedError(
        f"run folder {str(folder)!r} is in use by another run: "
        f"{holder.describe() if holder else 'an unknown process'} (lock file {path}); "
        "it was taken while this run replaced a stale lock"
    )
