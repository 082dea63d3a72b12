"""Merge the result files of remote workers into the study database (the driver's job).

Workers of ``--executor slurm`` and ``--executor ray`` write ``<output>/results/<run_id>.json``
(:mod:`inpaintssl.studies.resultfiles`); :func:`merge_results` records each file whose run is not
``done`` yet, in one transaction per run, and only compares the others. Merging is idempotent:
merging the same files again changes nothing. The files stay where they are: they are the
durable record that a run finished, so a run with a file is never submitted again, and a
database lost or moved aside can be rebuilt from them.

``inpaintssl experiment run`` merges before it plans (whatever the executor) and after every
stage; ``inpaintssl experiment report`` merges what a killed driver left unmerged.

Example:
    >>> import tempfile
    >>> from inpaintssl.studies.spec import StudySpec
    >>> merge_results(StudySpec(study="clinical", output=tempfile.mkdtemp()))
    MergeReport(merged=0, same=0, different=(), unknown=())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from inpaintssl.studies.grid import Job, expand_study
from inpaintssl.studies.queue import NewRun
from inpaintssl.studies.resultfiles import read_result_file, result_files
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.store import StudyStore

__all__ = ["MergeReport", "merge_files", "merge_results", "new_run"]


def new_run(job: Job) -> NewRun:
    """The database row that registers a job."""
    return NewRun(job.id, job.kind, job.depends_on, job.config.model_dump(mode="json"), dict(job.labels))


@dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_results` did.

    Attributes:
        merged: Runs recorded now.
        same: Runs recorded before with the same measurements (nothing changed).
        different: Runs recorded before with other measurements (e.g. trained twice on different
            hardware); the recorded measurements are kept.
        unknown: Result files of runs that are not part of this study (shard) any more.
    """

    merged: int = 0
    same: int = 0
    different: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


def merge_results(spec: StudySpec, *, shard: tuple[int, int] = (0, 1)) -> MergeReport:
    """Record every result file of the study's shard in the shard's database.

    Args:
        spec: The study.
        shard: ``(i, n)``: merge the files of this shard's runs into its database.

    Returns:
        Counts of what happened (see :class:`MergeReport`). Without result files the database
        is not even opened, so a study run with the local executor reads as before, from any host.

    Raises:
        inpaintssl.studies.resultfiles.ResultFileError: A damaged result file (the message names it).
        inpaintssl.studies.database.StudyDatabaseError: The database belongs to another host.
    """
    files = result_files(spec.results_dir())
    if not files:
        return MergeReport()
    jobs = {job.id: job for job in expand_study(spec).shard(*shard)}
    with StudyStore(spec.database_path(shard)) as store:
        return merge_files(store, jobs, files)


def merge_files(store: StudyStore, jobs: Mapping[str, Job], files: Sequence[Path]) -> MergeReport:
    """Record the result ``files`` in an open ``store``; ``jobs`` are the shard's runs by id.

    What :func:`merge_results` does for every file of a study; a driver calls it with the files of
    the runs a task just ended, so each merge costs what the task produced, not the whole study.

    Raises:
        inpaintssl.studies.resultfiles.ResultFileError: A damaged result file (the message names it).
    """
    merged = same = 0
    different: list[str] = []
    unknown: list[str] = []
    # Register the runs that have files (a report may merge into a database that never saw them).
    store.add_runs(new_run(jobs[p.stem]) for p in files if p.stem in jobs)
    for path in files:
        if path.stem not in jobs:
            unknown.append(path.stem)
            continue
        data = read_result_file(path)
        outcome = store.merge(data.run_id, result=data.result, rows=data.rows)
        if outcome == "merged":
            merged += 1
        elif outcome == "same":
            same += 1
        else:
            different.append(data.run_id)
    return MergeReport(merged, same, tuple(different), tuple(unknown))
