"""One SQLite file per study, shared by its job queue and its result store (stdlib ``sqlite3``).


Tables::

    runs          id (the job id), kind, depends_on, config JSON, labels JSON,
                  status pending | running | done | failed, worker, host, pid, heartbeat,
                  started, finished, attempts (times claimed), failures (this invocation),
                  result JSON, error
    measurements  run_id, level (image | volume), volume_id, slice_index, class_name, metric,
                  value; UNIQUE over everything but the value, so a run's rows exist once
    meta          key -> value (the spec, the schema version)
    owner         host: the machine that created the file, the only one that may write it

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

**One host writes a database.** SQLite's locking needs a local file system: WAL's shared memory
is per machine and network file systems do not honour its locks, so two machines writing one file
can corrupt it. The file therefore records the host that created it (table ``owner``), and opening
it for writing on any other host raises :class:`ForeignHostError` naming both hosts. That host is
read over a read-only connection before any connection that could write: a refused writer has
not switched the file's journal mode, taken its write lock, nor, on closing, checkpointed a live
writer's log into it and deleted the log. Studies spread over machines with ``--executor slurm``
or ``--executor ray`` (:mod:`inpaintssl.studies.executors`): their workers write one result file
per run and only the driver, on one host, writes the database. Opening with ``read_only=True``
(status, reports) works from any host and writes nothing to an existing database: where a
write-ahead log exists it connects read-only, so it cannot checkpoint the log into the file
either, which SQLite's last connection to close otherwise does (a reader on another host cannot
see that the writer is still connected); like every SQLite reader of a log, it records its read
mark in the ``-shm`` file.

This module opens and checks the file (:class:`StudyDatabase`); :mod:`inpaintssl.studies.queue`
holds the runs and their state (:class:`~inpaintssl.studies.queue.JobQueue`),
:mod:`inpaintssl.studies.store` every evaluated image (:class:`~inpaintssl.studies.store.ResultStore`)
and :class:`~inpaintssl.studies.store.StudyStore`, the two in one connection.

Example:
    >>> import tempfile, pathlib
    >>> with StudyDatabase(pathlib.Path(tempfile.mkdtemp()) / "study.sqlite") as db:
    ...     db.set_meta("spec", "{}")
    ...     db.get_meta("spec")
    '{}'
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Final

from inpaintssl.config import ConfigError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

__all__ = [
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "ForeignHostError",
    "StudyDatabase",
    "StudyDatabaseError",
    "current_host",
    "foreign_host_error",
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
# Kept out of _SCHEMA so that databases written before it existed still open: the first host that
# writes such a file becomes its owner.
_OWNER_TABLE = "CREATE TABLE IF NOT EXISTS owner (host TEXT NOT NULL)"


def current_host() -> str:
    """The name of this machine, as the ``owner`` table records it.

    Example:
        >>> current_host() == socket.gethostname()
        True
    """
    return socket.gethostname()


class StudyDatabaseError(ConfigError):
    """The study database file is damaged, foreign or unusable; the message names it and what to do.

    A :class:`~inpaintssl.config.ConfigError` like every other bad input of a study, so the
    ``inpaintssl experiment`` command prints it and exits 2.
    """


class ForeignHostError(StudyDatabaseError):
    """A writer on another host than the one that created the database (``owner``, ``here``)."""

    def __init__(self, message: str, *, owner: str, here: str) -> None:
        super().__init__(message)
        self.owner = owner
        self.here = here


# What to tell the user, by SQLite's primary result code, when the file itself is the problem.
_UNUSABLE = MappingProxyType(
    {
        "SQLITE_NOTADB": "it is not an SQLite database (a damaged file or another kind of file)",
        "SQLITE_CORRUPT": "the database file is damaged",
        "SQLITE_CANTOPEN": (
            "the file cannot be opened (the path may be a directory or its folder not writable)"
        ),
        "SQLITE_READONLY": "the database is read-only",
    }
)
# sqlite3_errstr() of each code above, plus the full disk and I/O errors.
_CODE_BY_MESSAGE = MappingProxyType(
    {
        "database or disk is full": "SQLITE_FULL",
        "disk I/O error": "SQLITE_IOERR",
        "file is not a database": "SQLITE_NOTADB",
        "database disk image is malformed": "SQLITE_CORRUPT",
        "unable to open database file": "SQLITE_CANTOPEN",
        "attempt to write a readonly database": "SQLITE_READONLY",
    }
)


def foreign_host_error(path: Path, *, owner: str, here: str) -> ForeignHostError:
    """The refusal of a writer on host ``here`` of the database ``path`` that ``owner`` created.

    It gives the ways out that work wherever the command was started: the owner's host, and, when
    that host has stopped using the study for good (a Slurm job requeued onto another node, a
    retired login node), a new database here, which the next run fills from the result files and
    the run folders (``test_a_study_moved_aside_is_rebuilt_on_another_host`` checks this).
    """
    return ForeignHostError(
        f"study database {path} belongs to host {owner!r} and this is host {here!r}; nothing was "
        "written to it: SQLite cannot be written safely from two machines (its locks do not work "
        f"over network file systems). Run `experiment run` for this study on {owner!r}. If no "
        f"process on {owner!r} uses it any more (its job ended, or was requeued onto this node), "
        f"move {path} aside and run the same command here: the new database takes the runs that "
        "have a result file in the study's results folder (`--executor slurm` and `--executor ray` "
        "write one per run) and runs the others again, each resuming from its run folder's last "
        "checkpoint (a finished run is evaluated again, not retrained). Reading works from any host "
        "(`experiment status`; `experiment report` once every result file is merged)",
        owner=owner,
        here=here,
    )


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


class StudyDatabase:
    """The study database file (see the module docstring): opening, checking, transactions, meta.

    Args:
        path: The SQLite file (created with its folder when missing).
        timeout_s: How long a statement waits for another process's lock before failing.
        read_only: Only read: any host may open it, and an existing database is not written.

    Raises:
        StudyDatabaseError: ``path`` exists but is not a study database of this version (not
            SQLite, another program's database, another schema version, a directory), or
            another host created it and ``read_only`` is false; nothing was written to it.
        OSError: A write failed, e.g. ``ENOSPC`` (disk full); the message names the database.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A reader of a file with a write-ahead log connects read-only: the last connection to
        # close a WAL database checkpoints the log into the file, and a reader on another host that
        # cannot see the writer's locks (a network file system) would take itself for the last one.
        # Without a log no writer is connected and there is nothing to checkpoint: a plain
        # connection then also removes the -wal and -shm files it makes, which a read-only one leaves.
        log = self.path.with_name(self.path.name + "-wal")
        only_read = read_only and self.path.is_file() and self.path.stat().st_size > 0 and log.exists()
        if not read_only:
            # Before any connection that could write: see _foreign_owner.
            owner = self._foreign_owner(timeout_s)
            if owner is not None:
                raise foreign_host_error(self.path, owner=owner, here=current_host())
        with self._guard("open"):
            self._conn = self._connect(timeout_s, only_read=only_read)
        try:
            with self._guard("open"):
                # Check what the file holds before the first write: switching a foreign database to
                # WAL or adding our tables to it would change another program's file.
                complete = self._check_existing()
                if complete and read_only:
                    return  # a complete database: a reader writes nothing, not even the owner row
                if only_read:  # a file without tables yet: the schema is created below
                    self._conn.close()
                    self._conn = self._connect(timeout_s, only_read=False)
                self._switch_to_wal(timeout_s)
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
                self._claim_owner()
        except BaseException:
            self._conn.close()
            raise

    def _switch_to_wal(self, timeout_s: float) -> None:
        """Put the file in WAL mode (nothing to do when it is), waiting up to ``timeout_s`` for a lock.

        Two processes that create the file at once (two drivers started together) meet here: the
        switch of one finds the other's lock, and SQLite answers "database is locked" at once
        instead of calling its busy handler, so the wait is done here.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                # Python 3.10's errors carry no error name: SQLITE_BUSY reads "database is locked".
                busy = str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY") or (
                    "database is locked" in str(exc)
                )
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect(self, timeout_s: float, *, only_read: bool) -> sqlite3.Connection:
        if only_read:
            target = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(target, uri=True, timeout=timeout_s, isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        return conn

    def _foreign_owner(self, timeout_s: float) -> str | None:
        """The host that owns the existing file, if it is another than this one (else ``None``).

        Read over a read-only connection before any connection that could write: a writer
        refused only after its own open had switched the file to WAL and taken the write lock
        (``BEGIN IMMEDIATE``), and on closing, taking itself for the last connection (another
        host's locks are invisible), checkpointed the owner's live log into the file and deleted
        it. With a log, the owner row may be in it (a new file's stays there until a checkpoint):
        the connection reads it as any reader does, recording its read mark in ``-shm``. Without
        one, every commit is in the file and no connection is open, so the file is read as
        immutable: a plain read-only connection would create ``-wal`` and ``-shm`` and leave them.
        (A reader that takes no locks at all would leave ``-shm`` alone too, but closing it would
        drop the POSIX locks of every other connection of this process to the file.)
        """
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return None  # a new file: this host creates it and becomes its owner
        row = None
        for _ in range(3):
            log = self.path.with_name(self.path.name + "-wal")
            uri = f"{self.path.resolve().as_uri()}?mode=ro" + ("" if log.exists() else "&immutable=1")
            try:
                conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
                try:
                    table = conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'owner'"
                    ).fetchone()
                    row = None if table is None else conn.execute("SELECT host FROM owner LIMIT 1").fetchone()
                finally:
                    conn.close()
                break
            except sqlite3.Error:
                # Not SQLite, damaged, or changed while read as immutable (a writer started): read
                # again; in the end the open below refuses a bad file before writing, and
                # _claim_owner checks the owner again under the write lock.
                continue
        owner = None if row is None else str(row[0])
        return owner if owner is not None and owner != current_host() else None

    def _claim_owner(self) -> None:
        """Record this host as the owner of a new file; refuse a writer on another host (in a transaction).

        A rollback of the enclosing transaction undoes nothing here that matters: the refusal
        happens before any write of the caller, and the tables it may have created are empty.
        The owner was read before this connection opened (:meth:`_foreign_owner`); this check
        under the write lock covers a file another host created meanwhile.
        """
        self._conn.execute(_OWNER_TABLE)
        row = self._conn.execute("SELECT host FROM owner LIMIT 1").fetchone()
        here = current_host()
        if row is None:
            self._conn.execute("INSERT INTO owner VALUES (?)", (here,))
            return
        owner = str(row[0])
        if owner != here and not self.read_only:
            raise foreign_host_error(self.path, owner=owner, here=here)

    @property
    def owner(self) -> str | None:
        """The host that created this database (``None`` for a file written before owners existed)."""
        with self._guard("read"):
            found = self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'owner'"
            ).fetchone()
            if found is None:
                return None
            row = self._conn.execute("SELECT host FROM owner LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def _check_existing(self) -> bool:
        """Refuse a file that holds tables but is not a study database of this schema version.

        Returns:
            Whether the file already holds a complete study database.
        """
        tables = {
            r[0]
            for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not str(r[0]).startswith("sqlite_")
        }
        if not tables:
            return False  # a new or empty file: the schema is created next
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
        return True

    # -- plumbing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Self:
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
