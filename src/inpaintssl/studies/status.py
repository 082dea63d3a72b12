"""Where a study stands: runs done, failed and not started, and result files not merged yet.

What ``inpaintssl experiment status`` prints, as data: the planned runs of the spec counted by
kind and status (a ``running`` run whose worker is gone counted as :data:`STALE`), the database
files, result files that workers wrote and no driver merged yet (and which of them are damaged, so
that a merge refuses them), result files of runs the spec does not plan, and the first line of
each failed run's error.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "out"
    >>> status = study_status({"study": "clinical", "output": str(out)})
    >>> status.done, status.planned, dict(status.counts["pretrain"])
    (0, 11, {'not started': 1})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from inpaintssl.studies.grid import Job, expand_study
from inpaintssl.studies.queue import RunRecord, run_is_stale
from inpaintssl.studies.resultfiles import ResultFileError, read_result_file, result_files
from inpaintssl.studies.results import load_runs, study_databases
from inpaintssl.studies.spec import StudySpec, load_spec

__all__ = ["NOT_STARTED", "STALE", "PlannedRun", "StudyStatus", "planned_runs", "study_status"]

NOT_STARTED = "not started"
"""The status counted for a planned run that no database records."""

STALE = "stale (worker gone; the next `experiment run` reclaims it)"
"""The status counted for a ``running`` run whose worker is gone: its process on this host has
ended, or (a worker on another host) its heartbeat is older than the spec's ``stale_after_s``
(the rule by which a claim reclaims it, :func:`inpaintssl.studies.queue.worker_gone`). Counted
as ``running``, a killed study looked busy for ever."""


@dataclass(frozen=True)
class PlannedRun:
    """A planned run and the status it is counted under (:func:`planned_runs`).

    Attributes:
        job: The planned job.
        run: Its record in the study's database, ``None`` when none records it.
        status: :data:`NOT_STARTED` without a record, :data:`STALE` for a ``running`` run whose
            worker is gone, else the recorded status.
    """

    job: Job
    run: RunRecord | None
    status: str


def planned_runs(
    plan: Iterable[Job], runs: Mapping[str, RunRecord], *, stale_after_s: float
) -> tuple[PlannedRun, ...]:
    """Each planned job with the status ``experiment status`` and the report's ``status.csv`` count it under.

    The one rule of both, so that they cannot disagree: a job no database records is
    :data:`NOT_STARTED`, and a ``running`` one whose worker is gone is :data:`STALE`
    (:func:`~inpaintssl.studies.queue.run_is_stale`, the rule by which a claim reclaims it).

    Args:
        plan: The planned jobs (:func:`~inpaintssl.studies.grid.expand_study`), in plan order.
        runs: Run id -> record (:func:`~inpaintssl.studies.results.load_runs`); records of
            jobs not in ``plan`` are not counted.
        stale_after_s: Heartbeat age after which a ``running`` run's worker counts as gone (the
            spec's ``stale_after_s``).

    Example:
        >>> from inpaintssl.studies.spec import StudySpec
        >>> plan = expand_study(StudySpec(study="clinical", output="out"))
        >>> {p.status for p in planned_runs(plan, {}, stale_after_s=900.0)}
        {'not started'}
    """
    found = []
    for job in plan:
        run = runs.get(job.id)
        status = run.status if run is not None else NOT_STARTED
        if run is not None and run_is_stale(run, stale_after_s=stale_after_s):
            status = STALE
        found.append(PlannedRun(job, run, status))
    return tuple(found)


@dataclass(frozen=True)
class StudyStatus:
    """A study's progress.

    Attributes:
        study: The spec's study name.
        planned: Runs the spec plans.
        done: Planned runs recorded ``done``.
        counts: Run kind (``pretrain``, ``finetune``) -> status -> number of planned runs; a
            ``running`` run whose worker is gone counts as :data:`STALE`, not ``running``.
        databases: The study's database files.
        unmerged: Result files of planned runs that no database records as done yet.
        unplanned: Result files of runs the spec does not plan (ignored by reports).
        failures: ``(run id, first line of its error)`` of each failed planned run.
        damaged: The unmerged result files that cannot be read (cut short, not JSON, another format,
            a measurement in two rows): ``experiment run`` and ``report`` refuse them, naming each,
            until they are deleted, and their runs are then trained again.
    """

    study: str
    planned: int
    done: int
    counts: Mapping[str, Mapping[str, int]]
    databases: tuple[Path, ...]
    unmerged: int
    unplanned: int
    failures: tuple[tuple[str, str], ...]
    damaged: tuple[Path, ...] = ()


def study_status(spec: StudySpec | Mapping[str, Any] | str | Path) -> StudyStatus:
    """Count a study's planned runs by kind and status; nothing is written.

    Args:
        spec: The study spec (a model, a mapping or a YAML/JSON file).

    Raises:
        inpaintssl.config.ConfigError: Invalid spec.
    """
    spec = load_spec(spec)
    plan = expand_study(spec)
    runs = load_runs(spec)
    counts: dict[str, dict[str, int]] = {}
    failures: list[tuple[str, str]] = []
    for planned_run in planned_runs(plan, runs, stale_after_s=spec.stale_after_s):
        job, run, status = planned_run.job, planned_run.run, planned_run.status
        by_status = counts.setdefault(job.kind, {})
        by_status[status] = by_status.get(status, 0) + 1
        if run is not None and run.status == "failed" and run.error:
            failures.append((job.id, run.error.splitlines()[0]))
    planned = {job.id for job in plan}
    files = result_files(spec.results_dir())
    unmerged = [
        p for p in files if p.stem in planned and (p.stem not in runs or runs[p.stem].status != "done")
    ]
    return StudyStatus(
        study=spec.study,
        planned=len(plan),
        done=sum(c.get("done", 0) for c in counts.values()),
        counts=MappingProxyType({kind: MappingProxyType(c) for kind, c in counts.items()}),
        databases=tuple(study_databases(spec)),
        unmerged=len(unmerged),
        unplanned=sum(p.stem not in planned for p in files),
        failures=tuple(failures),
        damaged=tuple(path for path in unmerged if not _readable(path)),
    )


def _readable(path: Path) -> bool:
    """Whether a merge can read the result file (only unmerged ones are read: there are few)."""
    try:
        read_result_file(path)
    except ResultFileError:
        return False
    return True
