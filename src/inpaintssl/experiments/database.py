"""One SQLite database per study: runs, their state, and every evaluated image (stdlib ``sqlite3``).

Tables::

    runs          id (the job id), kind, depends_on, config JSON, labels JSON,
                  status pending | running | done | failed, worker, host, pid, heartbeat,
                  started, finished, attempts (times claimed), failures (this invocation),
                  result JSON, error
    measurements  run_id, level (image | volume), volume_id, slice_index, class_name, metric,
                  value; UNIQUE over everything but the value, so a run's rows exist once
    meta          key -> value (the spec, the schema version)

Concurrency: the database runs in WAL mode, so readers never block the writer. Claiming a run is
one ``BEGIN IMMEDIATE`` transaction (reclaim stale runs, pick the first runnable one, mark it
``running``), so two workers can never claim the same run. Recording a result inserts the run's
measurements and marks it ``done`` in one transaction that first checks the worker still owns the
run; a worker whose run was reclaimed records nothing. A ``running`` row is stale when its worker
runs on this host and its process is gone, or when its heartbeat is older than the spec's
``stale_after_s`` (a worker on another machine).

**Damaged files and full disks.** A file at the database path that is not SQLite (a text file,
random bytes), or an SQLite file of another program, is refused before anything is written to
it: :class:`StudyDatabaseError` names the path and what to do. Every write is one transaction,
so a write that fails (disk full, I/O error) is rolled back whole and loses no earlier result;
the error (an ``OSError``, ``ENOSPC`` for a full disk) names the database.

SQLite's locking needs a local file system (WAL does not work over NFS): give each shard its own
database on a network file system (``database: results/{shard}.sqlite``, see
:class:`~inpaintssl.experiments.spec.StudySpec`).

Example:
    >>> import tempfile, pathlib
    >>> store = StudyStore(pathlib.Path(tempfile.mkdtemp()) / "study.sqlite")
    >>> store.add_runs([NewRun("pt-1", "pretrain", None, {}, {})])
    1
    >>> me = WorkerId.current()
    >>> claimed = store.claim(me, max_attempts=2)
    >>> claimed.id, claimed.attempts
    ('pt-1', 1)
    >>> row = Measurement("v0", 0, "image", "", "l2_norm", 3.5)
    >>> store.record("pt-1", me, result={"loss": 1.0}, rows=[row])
    True
    >>> store.counts()
    {'pretrain': {'done': 1}}
    >>> store.close()
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from inpaintssl.config import ConfigError

__all__ = [
    "RUN_STATUSES",
    "WAIT",
    "Heartbeat",
    "Measurement",
    "NewRun",
    "RunRecord",
    "StudyDatabaseError",
    "StudyStore",
    "WorkerId",
    "pid_alive",
]

SCHEMA_VERSION: Final = 1
RUN_STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('pretrain', 'finetune')),
    depends_on TEXT,
    config TEXT NOT NULL,
    labels TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    worker TEXT,
    host TEXT,
    pid INTEGER,
    heartbeat REAL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
    run_id TEXT NOT NULL REFERENCES runs (id),
    level TEXT NOT NULL,
    volume_id TEXT NOT NULL,
    slice_index INTEGER NOT NULL,
    class_name TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    UNIQUE (run_id, level, volume_id, slice_index, class_name, metric)
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
"""

_RUN_COLUMNS = (
    "id, kind, depends_on, config, labels, status, worker, heartbeat, started, finished, "
    "attempts, failures, result, error"
)


class StudyDatabaseError(ConfigError):
    """The study database file is damaged, foreign or unusable; the message names it and what to do.

    A :class:`~inpaintssl.config.ConfigError` like every other bad input of a study, so the
    ``inpaintssl experiment`` command prints it and exits 2.
    """


# What to tell the user, by SQLite's primary result code, when the file itself is the problem.
_UNUSABLE = {
    "SQLITE_NOTADB": "it is not an SQLite database (a damaged file or another kind of file)",
    "SQLITE_CORRUPT": "the database file is damaged",
    "SQLITE_CANTOPEN": "the file cannot be opened (the path may be a directory or its folder not writable)",
    "SQLITE_READONLY": "the database is read-only",
}
# sqlite3_errstr() of each code above, plus the full disk and I/O errors.
_CODE_BY_MESSAGE = {
    "database or disk is full": "SQLITE_FULL",
    "disk I/O error": "SQLITE_IOERR",
    "file is not a database": "SQLITE_NOTADB",
    "database disk image is malformed": "SQLITE_CORRUPT",
    "unable to open database file": "SQLITE_CANTOPEN",
    "attempt to write a readonly database": "SQLITE_READONLY",
}
_WHAT_TO_DO = (
    "move it away or point the study's `database` at a new file, then run again "
    "(runs missing from the new database are run again)"
)


@functools.lru_cache(maxsize=1)
def _expected_columns() -> dict[str, frozenset[str]]:
    """Columns of each table of this schema version, read back from SQLite itself."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(_SCHEMA)
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: frozenset(r[1] for r in conn.execute(f"PRAGMA table_info({n})")) for n in names}
    finally:
        conn.close()


class _Wait:
    def __repr__(self) -> str:
        return "WAIT"


WAIT: Final = _Wait()
"""Returned by :meth:`StudyStore.claim` when runs remain but none can start yet."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (POSIX; elsewhere assumed alive).

    Example:
        >>> pid_alive(os.getpid())
        True
    """
    if pid <= 0:
        return False
    if os.name != "posix":
        # Windows' os.kill(pid, 0) sends CTRL_C_EVENT; rely on the heartbeat timeout there.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


@dataclass(frozen=True)
class NewRun:
    """A run to register: id, kind, dependency, resolved config and labels (both JSON-able)."""

    id: str
    kind: Literal["pretrain", "finetune"]
    depends_on: str | None
    config: dict[str, Any]
    labels: dict[str, Any]


@dataclass(frozen=True)
class Measurement:
    """One evaluated value: ``metric`` of ``class_name`` (``""``: not per class) on one image/volume."""

    volume_id: str
    slice_index: int
    level: str
    class_name: str
    metric: str
    value: float


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


class StudyStore:
    """The study database (see the module docstring).

    Args:
        path: The SQLite file (created with its folder when missing).
        timeout_s: How long a statement waits for another process's lock before failing.

    Raises:
        StudyDatabaseError: ``path`` exists but is not a study database of this version (not
            SQLite, another program's database, another schema version, a directory); nothing
            was written to it.
        OSError: A write failed, e.g. ``ENOSPC`` (disk full); the message names the database.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._guard("open"):
            self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        try:
            with self._guard("open"):
                self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
                # Check what the file holds before the first write: switching a foreign database to
                # WAL or adding our tables to it would change another program's file.
                self._check_existing()
                self._conn.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode survives a killed process; only power loss can drop the newest commits.
                self._conn.execute("PRAGMA synchronous = NORMAL")
            with self._transaction("create the tables of"):
                # executescript() would COMMIT the open transaction first, so run statements one by one.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._conn.execute(statement)
                found = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if found is None:
                    self._conn.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
        except BaseException:
            self._conn.close()
            raise

    def _check_existing(self) -> None:
        """Refuse a file that holds tables but is not a study database of this schema version."""
        tables = {
            r[0]
            for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not str(r[0]).startswith("sqlite_")
        }
        if not tables:
            return  # a new or empty file: the schema is created next
        expected = _expected_columns()
        missing = sorted(set(expected) - tables)
        if missing:
            raise StudyDatabaseError(
                f"{self.path} is an SQLite database but not an inpaintssl study database: it has "
                f"tables {sorted(tables)}, expected {sorted(expected)}; {_WHAT_TO_DO}"
            )
        for table, columns in sorted(expected.items()):
            found = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            if not columns <= found:
                raise StudyDatabaseError(
                    f"{self.path} is not an inpaintssl study database of this version: table "
                    f"{table!r} lacks columns {sorted(columns - found)}; {_WHAT_TO_DO}"
                )
        version = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is not None and str(version[0]) != str(SCHEMA_VERSION):
            raise StudyDatabaseError(
                f"{self.path}: schema version {version[0]}, expected {SCHEMA_VERSION}; open it with "
                f"the inpaintssl version that wrote it, or {_WHAT_TO_DO}"
            )

    # -- plumbing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _error(self, exc: sqlite3.DatabaseError | OSError, action: str) -> BaseException:
        """The error to raise for ``exc``: one naming the database, or ``exc`` itself."""
        if isinstance(exc, OSError):
            if str(self.path) in str(exc):
                return exc
            return OSError(exc.errno, f"could not {action} study database {self.path}: {exc.strerror or exc}")
        # An error raised by SQLite carries its result code; one raised elsewhere (a wrapper, a
        # test double) only SQLite's standard wording, so fall back to that.
        code = str(getattr(exc, "sqlite_errorname", "") or _CODE_BY_MESSAGE.get(str(exc), ""))
        if code.startswith("SQLITE_FULL"):
            return OSError(
                errno.ENOSPC,
                f"could not {action} study database {self.path}: {os.strerror(errno.ENOSPC)} "
                f"({exc}); the write was rolled back and every earlier result is kept. "
                "Free disk space and run again",
            )
        if code.startswith("SQLITE_IOERR"):
            return OSError(
                errno.EIO,
                f"could not {action} study database {self.path}: {exc}; the write was rolled back",
            )
        for prefix, reason in _UNUSABLE.items():
            if code.startswith(prefix):
                return StudyDatabaseError(
                    f"could not {action} study database {self.path}: {reason} ({exc}); {_WHAT_TO_DO}"
                )
        return exc  # a lock timeout or a caller's bug (IntegrityError): SQLite's own words suffice

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Raise errors of the database file as errors naming it (see :meth:`_error`)."""
        try:
            yield
        except (sqlite3.DatabaseError, OSError) as exc:
            error = self._error(exc, action)
            if error is exc:
                raise
            raise error from exc

    @contextlib.contextmanager
    def _transaction(self, action: str = "write to") -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: no other writer can slip in between our read
        # of the runs table and the update that depends on it.
        with self._guard(action):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (SQLITE_FULL, SQLITE_IOERR); a
                # second ROLLBACK would fail and hide the error that matters.
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise

    def set_meta(self, key: str, value: str) -> None:
        """Store a string under ``key``."""
        with self._guard("write to"):
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        """The string stored under ``key``, or ``None``."""
        with self._guard("read"):
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

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
        if heartbeat is None or now - heartbeat > stale_after_s:
            return True
        if host != socket.gethostname():
            return False
        if me is not None and pid == me.pid:
            # Same process, another worker token: an earlier worker in this process that died.
            return bool(worker != str(me))
        return not pid_alive(int(pid))

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
        """Atomically take the first runnable run (in registration order) for ``worker``.

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
            for run_id, (status, failures, dep) in state.items():
                if allowed is not None and run_id not in allowed:
                    continue
                if status == "done" or (status == "failed" and failures >= max_attempts):
                    continue
                if status == "running":
                    waiting = True
                    continue
                if dep is not None:
                    dep_status, dep_failures, _ = state.get(dep, ("missing", 0, None))
                    if dep_status in ("pending", "running") or (
                        dep_status == "failed" and dep_failures < max_attempts
                    ):
                        waiting = True
                        continue
                    if dep_status != "done":
                        conn.execute(
                            "UPDATE runs SET status = 'failed', error = ? WHERE id = ?",
                            (f"blocked: the pretraining run {dep} it needs is {dep_status}", run_id),
                        )
                        continue
                conn.execute(
                    "UPDATE runs SET status = 'running', worker = ?, host = ?, pid = ?, heartbeat = ?, "
                    "started = ?, finished = NULL, attempts = attempts + 1, error = NULL WHERE id = ?",
                    (str(worker), worker.host, worker.pid, now, now, run_id),
                )
                row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
                return _record(row)
        return WAIT if waiting else None

    # -- a worker's updates ---------------------------------------------------------------------
    def heartbeat(self, run_id: str, worker: WorkerId) -> bool:
        """Refresh the heartbeat of a run ``worker`` owns; ``False`` if it no longer owns it."""
        with self._guard(f"refresh the heartbeat of run {run_id} in"):
            cur = self._conn.execute(
                "UPDATE runs SET heartbeat = ? WHERE id = ? AND status = 'running' AND worker = ?",
                (time.time(), run_id, str(worker)),
            )
        return cur.rowcount == 1

    def record(
        self, run_id: str, worker: WorkerId, *, result: dict[str, Any], rows: Iterable[Measurement]
    ) -> bool:
        """Insert a run's measurements and mark it ``done``, in one transaction.

        Returns:
            ``False`` (and writes nothing) when ``worker`` no longer owns the run, e.g. because
            it was reclaimed as stale and another worker finished it.

        Raises:
            sqlite3.IntegrityError: Two measurements share a key (a bug in the caller); nothing
                is written.
            OSError: The write failed (``ENOSPC`` when the disk is full); nothing of it is kept,
                earlier results are intact, and the message names the database.
        """
        with self._transaction(f"record the result of run {run_id} in") as conn:
            owner = conn.execute("SELECT status, worker FROM runs WHERE id = ?", (run_id,)).fetchone()
            if owner is None or owner[0] != "running" or owner[1] != str(worker):
                return False
            conn.executemany(
                "INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, m.level, m.volume_id, m.slice_index, m.class_name, m.metric, m.value)
                    for m in rows
                ],
            )
            now = time.time()
            conn.execute(
                "UPDATE runs SET status = 'done', result = ?, finished = ?, heartbeat = ?, error = NULL "
                "WHERE id = ?",
                (json.dumps(result, sort_keys=True), now, now, run_id),
            )
        return True

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

    def has_level(self, level: str, *, metric: str | None = None) -> bool:
        """Whether any measurement (of ``metric``, if given) has this level, e.g. ``volume``."""
        query = (
            "SELECT 1 FROM measurements WHERE level = ?" + (" AND metric = ?" if metric else "") + " LIMIT 1"
        )
        args = (level, metric) if metric else (level,)
        with self._guard("read"):
            return self._conn.execute(query, args).fetchone() is not None

    def measurements(
        self, run_ids: Collection[str] | None = None, *, finetune_slices: bool = True
    ) -> list[tuple[str, Measurement]]:
        """``(run_id, measurement)`` pairs of every recorded run (or of ``run_ids``).

        Args:
            run_ids: Only these runs.
            finetune_slices: Keep the per-slice (``image``) rows of fine-tuning runs; 3D studies
                that report per volume can skip them (they are most of the table).
        """
        skip = "" if finetune_slices else "WHERE NOT (m.level = 'image' AND r.kind = 'finetune')"
        with self._guard("read"):
            rows = self._conn.execute(
                "SELECT m.run_id, m.volume_id, m.slice_index, m.level, m.class_name, m.metric, m.value "
                f"FROM measurements AS m JOIN runs AS r ON r.id = m.run_id {skip} ORDER BY m.rowid"
            ).fetchall()
        out = []
        for run_id, volume_id, slice_index, level, class_name, metric, value in rows:
            if run_ids is None or run_id in run_ids:
                # SQLite stores NaN as NULL.
                number = math.nan if value is None else float(value)
                out.append(
                    (run_id, Measurement(volume_id, int(slice_index), level, class_name, metric, number))
                )
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
        store = StudyStore(self.path)
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
