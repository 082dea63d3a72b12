"""The result store of a study: every evaluated image or volume of every finished run.

:class:`ResultStore` reads the ``measurements`` table; :class:`StudyStore` is the study database as
the runner uses it, the job queue (:class:`~inpaintssl.studies.queue.JobQueue`) and the result store
in one connection, so that a run's measurements and its ``done`` mark are written in one
transaction: a worker whose run was reclaimed records nothing.

Example:
    >>> import tempfile, pathlib
    >>> from inpaintssl.studies.queue import NewRun, WorkerId
    >>> store = StudyStore(pathlib.Path(tempfile.mkdtemp()) / "study.sqlite")
    >>> store.add_runs([NewRun("pt-1", "pretrain", None, {}, {})])
    1
    >>> me = WorkerId.current()
    >>> claimed = store.claim(me, max_attempts=2)
    >>> row = Measurement("v0", 0, "image", "", "l2_norm", 3.5)
    >>> store.record("pt-1", me, result={"loss": 1.0}, rows=[row])
    True
    >>> store.counts(), [m.value for _, m in store.measurements()]
    ({'pretrain': {'done': 1}}, [3.5])
    >>> store.close()
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from inpaintssl.studies.database import StudyDatabase
from inpaintssl.studies.queue import JobQueue, WorkerId

__all__ = ["CLINICAL_SUFFIXES", "MergeOutcome", "Measurement", "ResultStore", "StudyStore"]

CLINICAL_SUFFIXES = ("_pred", "_ref", "_pct_error")
"""How the metrics of a clinical measurement end (:mod:`inpaintssl.studies.clinical`): ``m_pred``,
``m_ref`` and ``m_pct_error`` of each clinical metric ``m``."""

MergeOutcome = Literal["merged", "same", "different", "unknown"]
"""What :meth:`StudyStore.merge` did with a result: recorded it, found it recorded already (equal
or different), or found no such run."""


@dataclass(frozen=True)
class Measurement:
    """One evaluated value: ``metric`` of ``class_name`` (``""``: not per class) on one image/volume."""

    volume_id: str
    slice_index: int
    level: str
    class_name: str
    metric: str
    value: float

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Measurement:
        """The measurement of six stored values in field order; ``None`` reads as NaN (SQLite stores
        NaN as NULL)."""
        volume_id, slice_index, level, class_name, metric, value = values
        number = math.nan if value is None else float(value)
        return cls(str(volume_id), int(slice_index), str(level), str(class_name), str(metric), number)


class ResultStore(StudyDatabase):
    """The measurements of a study's runs (arguments of :class:`StudyDatabase`)."""

    def _insert(self, conn: sqlite3.Connection, run_id: str, rows: Iterable[Measurement]) -> None:
        """Insert a run's measurements inside an open transaction."""
        conn.executemany(
            "INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(run_id, m.level, m.volume_id, m.slice_index, m.class_name, m.metric, m.value) for m in rows],
        )

    def run_measurements(self, run_id: str) -> list[Measurement]:
        """The measurements of one run, in the order they were recorded."""
        with self._guard("read"):
            rows = self._conn.execute(
                "SELECT volume_id, slice_index, level, class_name, metric, value FROM measurements "
                "WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            ).fetchall()
        return [Measurement.from_values(row) for row in rows]

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
                that report per volume can skip them (they are most of the table). Clinical rows
                (metrics ending in :data:`CLINICAL_SUFFIXES`, e.g. a CT slice's ``area_mm2_pred``)
                are kept either way: they are measured per slice and exist at no other level.
        """
        # Clinical rows are kept whatever finetune_slices says: a CT study measures area and mean HU
        # per slice (level "image"), and those rows are its results, not a per-slice copy of them.
        clinical = " OR ".join(f"m.metric GLOB '*{suffix}'" for suffix in CLINICAL_SUFFIXES)
        skip = (
            ""
            if finetune_slices
            else f"WHERE NOT (m.level = 'image' AND r.kind = 'finetune' AND NOT ({clinical}))"
        )
        with self._guard("read"):
            rows = self._conn.execute(
                "SELECT m.run_id, m.volume_id, m.slice_index, m.level, m.class_name, m.metric, m.value "
                f"FROM measurements AS m JOIN runs AS r ON r.id = m.run_id {skip} ORDER BY m.rowid"
            ).fetchall()
        wanted = (row for row in rows if run_ids is None or row[0] in run_ids)
        return [(row[0], Measurement.from_values(row[1:])) for row in wanted]


def _key(m: Measurement) -> tuple[Any, ...]:
    # NaN != NaN, so compare NaN as a marker; floats survive JSON and SQLite bit for bit.
    return (
        m.volume_id,
        m.slice_index,
        m.level,
        m.class_name,
        m.metric,
        "nan" if math.isnan(m.value) else m.value,
    )


class StudyStore(JobQueue, ResultStore):
    """The study database: the job queue and the result store in one connection.

    Args:
        path: The SQLite file (created with its folder when missing).
        timeout_s: How long a statement waits for another process's lock before failing.

    Raises:
        StudyDatabaseError: ``path`` exists but is not a study database of this version; nothing
            was written to it.
        OSError: A write failed, e.g. ``ENOSPC`` (disk full); the message names the database.
    """

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
            if not self._owns(conn, run_id, worker):
                return False
            self._insert(conn, run_id, rows)
            self._mark_done(conn, run_id, result)
        return True

    def merge(self, run_id: str, *, result: dict[str, Any], rows: Iterable[Measurement]) -> MergeOutcome:
        """Record a result that a remote worker wrote to a file; idempotent.

        Only the process that drives a study calls this (the database's one writer), so no
        worker ownership is checked. A run that is ``done`` already is left alone and its
        recorded measurements are compared with ``rows``.

        Returns:
            ``"merged"`` (recorded now), ``"same"`` (recorded before, equal measurements),
            ``"different"`` (recorded before with other measurements: the recorded ones are
            kept) or ``"unknown"`` (no run with this id in this database).

        Raises:
            OSError: The write failed; nothing of it is kept and the message names the database.
        """
        rows = list(rows)
        with self._transaction(f"merge the result of run {run_id} into") as conn:
            found = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if found is None:
                return "unknown"
            if found[0] != "done":
                # A failed or stale attempt may have left rows behind; the file is the whole result.
                conn.execute("DELETE FROM measurements WHERE run_id = ?", (run_id,))
                self._insert(conn, run_id, rows)
                self._mark_done(conn, run_id, result)
                return "merged"
        return self.compare(run_id, rows)

    def compare(self, run_id: str, rows: Iterable[Measurement]) -> Literal["same", "different"]:
        """Whether ``rows`` are the measurements recorded for ``run_id`` (in any order); reads only."""
        recorded = sorted(map(_key, self.run_measurements(run_id)), key=repr)
        return "same" if recorded == sorted(map(_key, rows), key=repr) else "different"
