"""The job queue of a study: its runs, their state, claiming and heartbeats (in the study database).

Claiming a run is one ``BEGIN IMMEDIATE`` transaction (reclaim stale runs, pick the first runnable
one, mark it ``running``), so two workers can never claim the same run. A ``running`` row is stale
when its worker ran on this host and its process is gone (however old its heartbeat: a process
stopped by Ctrl-Z, or on a laptop that slept, keeps its run), or when its worker ran on another
machine and its heartbeat is older than the spec's ``stale_after_s``. Finishing a run with its measurements is
:meth:`inpaintssl.studies.store.StudyStore.record`.

Example:
    >>> import tempfile, pathlib
    >>> queue = JobQueue(pathlib.Path(tempfile.mkdtemp()) / "study.sqlite")
    >>> queue.add_runs([NewRun("pt-1", "pretrain", None, {}, {})])
    1
    >>> claimed = queue.claim(WorkerId.current(), max_attempts=2)
    >>> claimed.id, claimed.attempts, queue.counts()
    ('pt-1', 1, {'pretrain': {'running': 1}})
    >>> queue.close()
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from inpaintssl.studies.database import StudyDatabase
from inpaintssl.training.lock import pid_alive, process_start_ticks

__all__ = [
    "WAIT",
    "Heartbeat",
    "JobQueue",
    "NewRun",
    "RunRecord",
    "WorkerId",
    "pid_alive",
    "readiness",
    "run_is_stale",
    "start_order",
    "worker_gone",
]

_RUN_COLUMNS = (
    "id, kind, depends_on, config, labels, status, worker, heartbeat, started, finished, "
    "attempts, failures, result, error"
)
# A run starts (claimed by a worker, or submitted by a driver) / cannot start (with why).
_START = (
    "UPDATE runs SET status = 'running', worker = ?, host = ?, pid = ?, heartbeat = ?, "
    "started = ?, finished = NULL, attempts = attempts + 1, error = NULL WHERE id = ?"
)
_BLOCK = "UPDATE runs SET status = 'failed', error = ? WHERE id = ?"


class _Wait:
    def __repr__(self) -> str:
        return "WAIT"


WAIT: Final = _Wait()
"""Returned by :meth:`StudyStore.claim` when runs remain but none can start yet."""


def readiness(
    status: str, failures: int, needs: tuple[str, int] | None, *, max_attempts: int
) -> Literal["skip", "wait", "block", "start"]:
    """What to do with a run now, the one rule of every scheduler (worker claims, remote drivers).

    Args:
        status: The run's status.
        failures: Its failed attempts.
        needs: ``(status, failures)`` of the pretraining run it needs, if any.
        max_attempts: Failures after which a run is not retried.

    Returns:
        ``skip`` (done, or failed for good), ``wait`` (running elsewhere, or its pretraining run
        may still finish), ``block`` (its pretraining run failed for good or is missing) or
        ``start``.

    Example:
        >>> readiness("pending", 0, ("failed", 1), max_attempts=2)  # the pretraining run gets a retry
        'wait'
        >>> readiness("pending", 0, ("failed", 2), max_attempts=2)
        'block'
    """
    if status == "done" or (status == "failed" and failures >= max_attempts):
        return "skip"
    if status == "running":
        return "wait"
    if needs is not None:
        dep_status, dep_failures = needs
        if dep_status in ("pending", "running") or (dep_status == "failed" and dep_failures < max_attempts):
            return "wait"
        if dep_status != "done":
            return "block"
    return "start"


def start_order(depends_on: Mapping[str, str | None]) -> list[str]:
    """The order in which every scheduler starts runs that are ready: first those that other runs
    need (pretraining runs with fine-tuning runs waiting on them), then the rest, each group in
    plan order.

    A study's plan lists its baselines first. Started in plan order, a few workers (or a capped
    Slurm array) trained every baseline before any pretraining run, so the fine-tuning runs that
    wait on pretraining, and the study's SSL results, came last and workers idled at the end.

    Args:
        depends_on: Each run id, in plan order, with the run it needs (or ``None``).

    Returns:
        The run ids in the order to start them.

    Example:
        >>> start_order({"baseline": None, "pretrain": None, "finetune": "pretrain"})
        ['pretrain', 'baseline', 'finetune']
    """
    needed = {dep for dep in depends_on.values() if dep is not None}
    return sorted(depends_on, key=lambda run_id: run_id not in needed)  # stable: plan order within


@dataclass(frozen=True)
class WorkerId:
    """Who executes a run: host, process id and a token unique to this worker."""

    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> WorkerId:
        """A new id for a worker in this process."""
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    @classmethod
    def parse(cls, text: str) -> WorkerId | None:
        """The id a ``runs.worker`` value names (``host:pid:token``); ``None`` for another form.

        Example:
            >>> WorkerId.parse("node-7:4101:ab12cd34ef56")
            WorkerId(host='node-7', pid=4101, token='ab12cd34ef56')
        """
        head, _, token = text.rpartition(":")
        host, _, pid = head.rpartition(":")
        return cls(host, int(pid), token) if host and pid.isdigit() else None


@dataclass(frozen=True)
class NewRun:
    """A run to register: id, kind, dependency, resolved config and labels (both JSON-able)."""

    id: str
    kind: Literal["pretrain", "finetune"]
    depends_on: str | None
    config: dict[str, Any]
    labels: dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    """A row of the ``runs`` table."""

    id: str
    kind: str
    depends_on: str | None
    config: dict[str, Any]
    labels: dict[str, Any]
    status: str
    worker: str | None
    heartbeat: float | None
    started: float | None
    finished: float | None
    attempts: int
    failures: int
    result: dict[str, Any] | None
    error: str | None


def _record(row: sqlite3.Row | tuple[Any, ...]) -> RunRecord:
    (
        run_id,
        kind,
        depends_on,
        config,
        labels,
        status,
        worker,
        heartbeat,
        started,
        finished,
        attempts,
        failures,
        result,
        error,
    ) = tuple(row)
    return RunRecord(
        id=run_id,
        kind=kind,
        depends_on=depends_on,
        config=json.loads(config),
        labels=json.loads(labels),
        status=status,
        worker=worker,
        heartbeat=heartbeat,
        started=started,
        finished=finished,
        attempts=int(attempts),
        failures=int(failures),
        result=None if result is None else json.loads(result),
        error=error,
    )


def worker_gone(
    worker: str | None,
    host: str | None,
    pid: int | None,
    heartbeat: float | None,
    *,
    now: float,
    stale_after_s: float,
    me: WorkerId | None = None,
) -> bool:
    """Whether a ``running`` run is stale: the one rule by which a claim reclaims it.

    A worker on this host is gone when its process is: no process has its pid, or the one that has
    it started after the worker's last heartbeat (the pid was reused). Its heartbeat's age counts
    for nothing there: a worker stopped by Ctrl-Z, or on a laptop that slept, is silent for as long,
    and its run taken away was recorded as failed (the run folder still locked by the live worker)
    and blocked the runs that needed it. A worker on another host (or where this OS cannot tell
    whether a process lives) is gone when its heartbeat is older than ``stale_after_s``. A run
    without a heartbeat is stale.

    Args:
        worker: The run's ``worker`` (``host:pid:token``).
        host: The worker's host.
        pid: The worker's process id.
        heartbeat: The run's last heartbeat (seconds since the epoch).
        now: The time to judge at.
        stale_after_s: Heartbeat age after which the worker counts as gone.
        me: The worker asking, if any: another worker token of its own process is an earlier
            worker of that process that died.

    Example:
        >>> worker_gone("node-7:4101:ab12", "node-7", 4101, 100.0, now=1000.0, stale_after_s=900.0)
        False
        >>> worker_gone("node-7:4101:ab12", "node-7", 4101, 100.0, now=1001.0, stale_after_s=900.0)
        True
        >>> here = WorkerId.current()  # this live process, judged after eleven days of silence
        >>> worker_gone(str(here), here.host, here.pid, time.time(), now=time.time() + 1e6, stale_after_s=900)
        False
    """
    if heartbeat is None:
        return True
    if host != socket.gethostname() or pid is None or os.name != "posix":
        # No process to check (pid_alive cannot probe a Windows process): silence is all there is.
        return now - heartbeat > stale_after_s
    if me is not None and pid == me.pid:
        # Same process, another worker token: an earlier worker in this process that died.
        return bool(worker != str(me))
    return not pid_alive(int(pid)) or _started_after(int(pid), heartbeat)


_CLOCK_SLACK_S: Final = 5.0
"""How much later than a heartbeat a process may seem to have started and still be its worker: the
wall clock may have been set forward since the heartbeat (NTP), which moves the start computed from
the time since boot."""


def _started_after(pid: int, moment: float) -> bool:
    """Whether the process with id ``pid`` started after ``moment`` (seconds since the epoch).

    A process that started after a worker's last heartbeat is not that worker: its pid was reused.
    ``False`` where the OS does not tell a process's start (Linux ``/proc`` and its boot clock do),
    as the run folder locks judge their owners (:class:`inpaintssl.training.lock.LockOwner`).
    """
    ticks = process_start_ticks(pid)
    boot_clock = getattr(time, "CLOCK_BOOTTIME", None)
    if ticks is None or boot_clock is None:
        return False
    # A process's start is counted in clock ticks on the boot clock, which also runs while asleep.
    age_s = time.clock_gettime(boot_clock) - ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - age_s > moment + _CLOCK_SLACK_S


def run_is_stale(run: RunRecord, *, stale_after_s: float, now: float | None = None) -> bool:
    """Whether a recorded ``running`` run is stale (:func:`worker_gone`), judged from outside its worker.

    Its host and process id are read from ``run.worker`` (``host:pid:token``); a worker named
    another way is judged by its heartbeat alone. ``False`` for a run that is not ``running``.

    Example:
        >>> from dataclasses import replace
        >>> run = RunRecord("pt-1", "pretrain", None, {}, {}, "running", "node-7:4101:ab12", 0.0,
        ...                 0.0, None, 1, 0, None, None)  # its last heartbeat in 1970
        >>> run_is_stale(run, stale_after_s=900.0)
        True
        >>> run_is_stale(replace(run, status="done"), stale_after_s=900.0)
        False
    """
    if run.status != "running":
        return False
    parsed = WorkerId.parse(run.worker or "")
    host, pid = (parsed.host, parsed.pid) if parsed is not None else (None, None)
    moment = time.time() if now is None else now
    return worker_gone(run.worker, host, pid, run.heartbeat, now=moment, stale_after_s=stale_after_s)


class JobQueue(StudyDatabase):
    """The runs of a study and their state (see the module docstring; arguments of :class:`StudyDatabase`)."""

    # -- registering and claiming ---------------------------------------------------------------
    def add_runs(self, runs: Iterable[NewRun]) -> int:
        """Register runs; existing ids keep their state (their labels are refreshed).

        Returns:
            How many runs were new.
        """
        new = 0
        with self._transaction("register runs in") as conn:
            for run in runs:
                labels = json.dumps(run.labels, sort_keys=True)
                cur = conn.execute(
                    "INSERT OR IGNORE INTO runs (id, kind, depends_on, config, labels) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (run.id, run.kind, run.depends_on, json.dumps(run.config, sort_keys=True), labels),
                )
                if cur.rowcount:
                    new += 1
                else:
                    conn.execute("UPDATE runs SET labels = ? WHERE id = ?", (labels, run.id))
        return new

    def requeue_failed(self, ids: Collection[str] | None = None) -> int:
        """Give failed runs a fresh retry budget (a new invocation retries them). Returns the count."""
        with self._transaction("requeue failed runs in") as conn:
            failed = [r[0] for r in conn.execute("SELECT id FROM runs WHERE status = 'failed'")]
            chosen = [i for i in failed if ids is None or i in ids]
            conn.executemany(
                "UPDATE runs SET status = 'pending', failures = 0 WHERE id = ?", [(i,) for i in chosen]
            )
        return len(chosen)

    def _is_stale(
        self, row: tuple[Any, ...], *, now: float, stale_after_s: float, me: WorkerId | None
    ) -> bool:
        worker, host, pid, heartbeat = row
        return worker_gone(worker, host, pid, heartbeat, now=now, stale_after_s=stale_after_s, me=me)

    def reclaim_stale(self, *, stale_after_s: float, me: WorkerId | None = None) -> list[str]:
        """Return ``running`` runs of dead workers to ``pending``; returns their ids.

        Their folders keep the last checkpoint, so the next worker resumes them mid-run.
        """
        with self._transaction("reclaim stale runs in"):
            return self._reclaim(now=time.time(), stale_after_s=stale_after_s, me=me)

    def _reclaim(self, *, now: float, stale_after_s: float, me: WorkerId | None) -> list[str]:
        rows = self._conn.execute(
            "SELECT id, worker, host, pid, heartbeat FROM runs WHERE status = 'running'"
        ).fetchall()
        stale = [r[0] for r in rows if self._is_stale(r[1:], now=now, stale_after_s=stale_after_s, me=me)]
        self._conn.executemany(
            "UPDATE runs SET status = 'pending', error = 'reclaimed from a dead worker: ' || worker "
            "WHERE id = ?",
            [(i,) for i in stale],
        )
        return stale

    def claim(
        self,
        worker: WorkerId,
        *,
        allowed: Collection[str] | None = None,
        max_attempts: int = 2,
        stale_after_s: float = math.inf,
    ) -> RunRecord | _Wait | None:
        """Atomically take the first runnable run for ``worker``: in registration order, runs that
        other runs need first (:func:`start_order`).

        A run is runnable when it is ``pending`` (or ``failed`` fewer than ``max_attempts`` times
        in this invocation) and the run it depends on is ``done``. A run whose dependency failed
        for good is marked ``failed`` too.

        Args:
            worker: The claiming worker.
            allowed: Ids this worker may take (its shard); ``None`` for all.
            max_attempts: Failures after which a run is not retried.
            stale_after_s: Heartbeat age after which a ``running`` run is reclaimed.

        Returns:
            The claimed run (``attempts`` already counts this claim), :data:`WAIT` when runs
            remain that are running elsewhere or wait for a dependency, or ``None`` when every
            allowed run is done or failed for good.
        """
        now = time.time()
        with self._transaction("claim a run in") as conn:
            self._reclaim(now=now, stale_after_s=stale_after_s, me=worker)
            state = {
                r[0]: (r[1], r[2], r[3])
                for r in conn.execute("SELECT id, status, failures, depends_on FROM runs ORDER BY rowid")
            }
            waiting = False
            for run_id in start_order({run_id: dep for run_id, (_, _, dep) in state.items()}):
                status, failures, dep = state[run_id]
                if allowed is not None and run_id not in allowed:
                    continue
                dep_status, dep_failures, _ = state.get(dep, ("missing", 0, None))
                needs = None if dep is None else (dep_status, dep_failures)
                step = readiness(status, failures, needs, max_attempts=max_attempts)
                waiting = waiting or step == "wait"
                if step == "block":
                    why = f"blocked: the pretraining run {dep} it needs is {dep_status}"
                    conn.execute(_BLOCK, (why, run_id))
                if step != "start":
                    continue
                conn.execute(_START, (str(worker), worker.host, worker.pid, now, now, run_id))
                row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
                return _record(row)
        return WAIT if waiting else None

    def mark_submitted(self, run_ids: Sequence[str], driver: WorkerId, *, max_attempts: int) -> list[str]:
        """Take the runs of ``run_ids`` that may start, and mark them ``running`` for ``driver``.

        A remote executor's driver picks its runs from an earlier read; a second driver of the
        study may have taken some of them since (two drivers started at once). Reading their
        state again and marking them is one ``BEGIN IMMEDIATE`` transaction, as :meth:`claim` is,
        so of two drivers only one takes a run, and the driver submits only what it took.

        The driver refreshes their heartbeats while it waits (:meth:`heartbeat`), so another
        invocation sees them as running; when the driver dies they go stale like any worker's
        runs and the next invocation submits them again.

        Args:
            run_ids: The runs the driver found ready, in the order to submit them.
            driver: The driver.
            max_attempts: Failures after which a run is not retried (:func:`readiness`).

        Returns:
            The runs taken, in the order of ``run_ids``.
        """
        now = time.time()
        with self._transaction("mark submitted runs in") as conn:
            state = {
                r[0]: (r[1], int(r[2]), r[3])
                for r in conn.execute("SELECT id, status, failures, depends_on FROM runs")
            }
            taken = []
            for run_id in run_ids:
                if run_id not in state:
                    continue
                status, failures, dep = state[run_id]
                needs = None
                if dep is not None:
                    dep_status, dep_failures, _ = state.get(dep, ("missing", 0, None))
                    needs = (dep_status, dep_failures)
                if readiness(status, failures, needs, max_attempts=max_attempts) == "start":
                    conn.execute(_START, (str(driver), driver.host, driver.pid, now, now, run_id))
                    taken.append(run_id)
        return taken

    def unsubmit(self, run_ids: Collection[str], driver: WorkerId) -> None:
        """Hand back runs that ``driver`` marked submitted but no scheduler queued (it refused
        them): ``pending`` again, and the attempt :meth:`mark_submitted` counted is taken back,
        since none was made."""
        with self._transaction("hand back unsubmitted runs in") as conn:
            conn.executemany(
                "UPDATE runs SET status = 'pending', attempts = MAX(attempts - 1, 0) "
                "WHERE id = ? AND status = 'running' AND worker = ?",
                [(run_id, str(driver)) for run_id in run_ids],
            )

    def block(self, run_id: str, error: str) -> None:
        """Mark a run that cannot start (its pretraining run failed for good) ``failed``."""
        with self._guard(f"mark run {run_id} failed in"):
            self._conn.execute(_BLOCK, (error, run_id))

    # -- a worker's updates ---------------------------------------------------------------------
    def heartbeat(self, run_id: str, worker: WorkerId) -> bool:
        """Refresh the heartbeat of a run ``worker`` owns; ``False`` if it no longer owns it."""
        with self._guard(f"refresh the heartbeat of run {run_id} in"):
            cur = self._conn.execute(
                "UPDATE runs SET heartbeat = ? WHERE id = ? AND status = 'running' AND worker = ?",
                (time.time(), run_id, str(worker)),
            )
        return cur.rowcount == 1

    def _owns(self, conn: sqlite3.Connection, run_id: str, worker: WorkerId) -> bool:
        """Whether ``worker`` still holds the run ``running`` (inside an open transaction)."""
        owner = conn.execute("SELECT status, worker FROM runs WHERE id = ?", (run_id,)).fetchone()
        return owner is not None and owner[0] == "running" and owner[1] == str(worker)

    def _mark_done(self, conn: sqlite3.Connection, run_id: str, result: dict[str, Any]) -> None:
        """Mark a run ``done`` with its result summary (inside an open transaction)."""
        now = time.time()
        conn.execute(
            "UPDATE runs SET status = 'done', result = ?, finished = ?, heartbeat = ?, error = NULL "
            "WHERE id = ?",
            (json.dumps(result, sort_keys=True), now, now, run_id),
        )

    def fail(self, run_id: str, worker: WorkerId, error: str) -> None:
        """Mark a run ``worker`` owns as failed with an error message."""
        with self._guard(f"mark run {run_id} failed in"):
            self._conn.execute(
                "UPDATE runs SET status = 'failed', failures = failures + 1, error = ?, finished = ? "
                "WHERE id = ? AND status = 'running' AND worker = ?",
                (error, time.time(), run_id, str(worker)),
            )

    def release(self, run_id: str, worker: WorkerId) -> None:
        """Hand a run back unfinished (e.g. on Ctrl-C); the next worker resumes it."""
        with self._guard(f"release run {run_id} in"):
            self._conn.execute(
                "UPDATE runs SET status = 'pending' WHERE id = ? AND status = 'running' AND worker = ?",
                (run_id, str(worker)),
            )

    # -- reading --------------------------------------------------------------------------------
    def runs(self, *, status: str | None = None) -> list[RunRecord]:
        """Every run (or those with ``status``), in registration order."""
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        with self._guard("read"):
            rows = self._conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY rowid", args)
            return [_record(r) for r in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{kind: {status: count}}``."""
        out: dict[str, dict[str, int]] = {}
        with self._guard("read"):
            for kind, status, n in self._conn.execute(
                "SELECT kind, status, COUNT(*) FROM runs GROUP BY kind, status ORDER BY kind, status"
            ):
                out.setdefault(kind, {})[status] = int(n)
        return out


class Heartbeat:
    """Refresh a run's heartbeat from a background thread while the run executes.

    Args:
        path: The study database.
        run_id: The run being executed.
        worker: Its worker.
        interval_s: Seconds between refreshes.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.sqlite"
        >>> with Heartbeat(path, "pt-1", WorkerId.current(), interval_s=0.01):
        ...     time.sleep(0.03)
    """

    def __init__(self, path: Path, run_id: str, worker: WorkerId, *, interval_s: float) -> None:
        self.path = path
        self.run_id = run_id
        self.worker = worker
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        # The thread needs its own connection: sqlite3 connections are bound to their thread.
        store = JobQueue(self.path)
        try:
            while not self._stop.wait(self.interval_s):
                store.heartbeat(self.run_id, self.worker)
        finally:
            store.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
