"""Merge the result files of remote workers into the study database (the driver's job).

Workers of ``--executor slurm`` and ``--executor ray`` write ``<output>/results/<run_id>.json``
(:mod:`inpaintssl.studies.resultfiles`); :func:`merge_results` records each file whose run is not
``done`` yet, in one transaction per run, and only compares the others. Merging is idempotent:
merging the same files again changes nothing. The files stay where they are: they are the
durable record that a run finished, so a run with a file is never submitted again, and a
database lost or moved aside can be rebuilt from them.

``inpaintssl experiment run`` merges before it plans (whatever the executor) and after every
stage; ``inpaintssl experiment report`` merges what a killed driver left unmerged, and opens the
database for writing only when some file's run is not recorded yet (so a report of a finished
study reads from any host). What a merge cannot take is said in a warning: a file whose
measurements differ from those recorded (the recorded ones are kept), a file of a run the spec
does not plan, and a damaged file of a run already recorded (ignored: delete it).

Example:
    >>> import tempfile
    >>> from inpaintssl.studies.spec import StudySpec
    >>> merge_results(StudySpec(study="clinical", output=tempfile.mkdtemp()))
    MergeReport(merged=0, same=0, different=(), unknown=(), damaged=())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from inpaintssl.studies.database import current_host, foreign_host_error
from inpaintssl.studies.grid import Job, expand_study
from inpaintssl.studies.queue import NewRun
from inpaintssl.studies.resultfiles import ResultFileError, read_result_file, result_files
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.store import StudyStore
from inpaintssl.warning_format import warn_each_time

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
        unknown: Result files of runs that the spec does not plan (any more); the files of
            another shard's runs are left to that shard and not counted.
        damaged: Unreadable result files of runs recorded already (ignored; a damaged file of a
            run not recorded yet is an error instead).
    """

    merged: int = 0
    same: int = 0
    different: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    damaged: tuple[str, ...] = ()

    def warn(self, *, results_dir: Path) -> None:
        """Say what was not merged, as warnings naming the files (nothing when all merged)."""
        for run_id in self.different:
            warn_each_time(
                f"result file {results_dir / (run_id + '.json')} holds other measurements than those "
                f"recorded for run {run_id} (trained twice, e.g. on other hardware?); the recorded ones "
                "are kept",
                UserWarning,
            )
        if self.unknown:
            shown = ", ".join(sorted(self.unknown)[:5]) + (", ..." if len(self.unknown) > 5 else "")
            warn_each_time(
                f"{len(self.unknown)} result file(s) in {results_dir} belong to runs this spec does not "
                f"plan ({shown}); they are ignored",
                UserWarning,
            )
        for run_id in self.damaged:
            warn_each_time(
                f"result file {results_dir / (run_id + '.json')} is damaged, but run {run_id} is recorded "
                "already; the file is ignored (delete it)",
                UserWarning,
            )


def merge_results(spec: StudySpec, *, shard: tuple[int, int] = (0, 1)) -> MergeReport:
    """Record every result file of the study's shard in the shard's database.

    Args:
        spec: The study.
        shard: ``(i, n)``: merge the files of this shard's runs into its database; the files of the
            other shards' runs are left alone, and only files of runs the spec does not plan at
            all count as unknown.

    Returns:
        Counts of what happened (see :class:`MergeReport`). Without result files the database
        is not even opened, so a study run with the local executor reads as before, from any host.

    Raises:
        inpaintssl.studies.resultfiles.ResultFileError: A damaged result file (the message names it).
        inpaintssl.studies.database.ForeignHostError: Some file's run is not recorded and the
            database belongs to another host; the database was only read.
    """
    files = result_files(spec.results_dir())
    if not files:
        return MergeReport()
    whole = expand_study(spec)
    jobs = {job.id: job for job in whole.shard(*shard)}
    # Another shard's runs are planned: their files are that shard's to merge, not unknown ones.
    others = {job.id for job in whole} - jobs.keys()
    files = [p for p in files if p.stem not in others]
    if not files:
        return MergeReport()
    database = spec.database_path(shard)
    if database.exists():
        # Read first: when every file's run is recorded there is nothing to write, and a study
        # whose results are all in reads (and is compared) from any host, not only the writer's.
        with StudyStore(database, read_only=True) as store:
            done = {run.id for run in store.runs() if run.status == "done"}
            if all(p.stem in done or p.stem not in jobs for p in files):
                return _merge(store, jobs, files, write=False)
            owner = store.owner
        if owner is not None and owner != current_host():
            # Refused here, from what the read-only connection saw: the file is never opened for
            # writing on a host that may not write it (its driver may be writing it right now).
            raise foreign_host_error(database, owner=owner, here=current_host())
    with StudyStore(database) as store:
        return merge_files(store, jobs, files)


def merge_files(store: StudyStore, jobs: Mapping[str, Job], files: Sequence[Path]) -> MergeReport:
    """Record the result ``files`` in an open ``store``; ``jobs`` are the shard's runs by id.

    What :func:`merge_results` does for every file of a study; a driver calls it with the files of
    the runs a task just ended, so each merge costs what the task produced, not the whole study.

    Raises:
        inpaintssl.studies.resultfiles.ResultFileError: A damaged result file (the message names it).
    """
    return _merge(store, jobs, files, write=True)


def _merge(store: StudyStore, jobs: Mapping[str, Job], files: Sequence[Path], *, write: bool) -> MergeReport:
    """Merge (or, without ``write``, only compare: every file's run is recorded) the result files."""
    merged = same = 0
    different: list[str] = []
    unknown: list[str] = []
    damaged: list[str] = []
    if write:
        # Register the runs that have files (a report may merge into a database that never saw them).
        store.add_runs(new_run(jobs[p.stem]) for p in files if p.stem in jobs)
    recorded = {run.id for run in store.runs() if run.status == "done"}
    for path in files:
        if path.stem not in jobs:
            unknown.append(path.stem)
            continue
        try:
            data = read_result_file(path)
        except ResultFileError:
            if path.stem not in recorded:
                raise
            damaged.append(path.stem)  # nothing is lost: the database holds the run's result
            continue
        if write:
            outcome = store.merge(data.run_id, result=data.result, rows=data.rows)
        else:
            outcome = store.compare(data.run_id, data.rows)
        if outcome == "merged":
            merged += 1
        elif outcome == "same":
            same += 1
        else:
            different.append(data.run_id)
    return MergeReport(merged, same, tuple(different), tuple(unknown), tuple(damaged))
