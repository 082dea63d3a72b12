"""Run a study on an existing engine: Slurm job arrays through submitit, or Ray tasks.

``inpaintssl experiment run SPEC --executor slurm|ray`` drives the study from one process (the
*driver*, e.g. on a login node) and leaves the training to the engine:

1. The driver merges any result files already present (:mod:`inpaintssl.studies.merge`), then
   submits every run that is ready: not ``done``, and, for a fine-tuning run that starts from a
   pretrained model, whose pretraining run is ``done``; pretraining runs go first
   (:func:`~inpaintssl.studies.queue.start_order`). Runs are grouped ``chunk_size`` at a time
   into one Slurm array task or one Ray task.
2. Each task runs :func:`inpaintssl.studies.worker.run_tasks`: it trains its runs (resuming any
   run folder that holds a checkpoint) and writes one result file per run. It has no database
   path.
3. As tasks finish, the driver merges their result files into the study database (it is the
   database's only writer) and submits the runs that became ready, until none is left. A file
   that a task reported written but the driver does not see yet (a network file system's cached
   view) is looked for again for up to two minutes.

A run that raised is submitted again until it has failed ``max_attempts`` times in this
invocation; its dependants are then marked failed. A task that died as a whole (a lost node, an
out-of-memory kill) counts a failure for the first of its runs without a result; the later runs of
its chunk that it never started (no run folder) are submitted again without one.
``array_parallelism`` caps the tasks submitted and not yet ended, over the whole study. A task
killed mid-run (preemption, time limit, a lost node) is requeued by Slurm (``max_requeues``) or
retried by Ray, and the next attempt, or the next ``experiment run``, resumes the run from its
last checkpoint. The database records submitted runs as ``running`` with the driver's heartbeat,
so a second driver started by mistake leaves them alone while the first one lives.

Example:
    >>> chunks([1, 2, 3, 4, 5], 2)
    [[1, 2], [3, 4], [5]]
    >>> from inpaintssl.studies.spec import StudySpec
    >>> run_with_executor(StudySpec(study="clinical"), executor="ray", quiet=True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from inpaintssl.studies.grid import Job, StudyPlan, expand_study
from inpaintssl.studies.merge import merge_files, merge_results, new_run
from inpaintssl.studies.queue import RunRecord, WorkerId, readiness, start_order
from inpaintssl.studies.resultfiles import result_path
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.store import StudyStore
from inpaintssl.studies.summary import WorkerReport
from inpaintssl.studies.worker import Task, TaskReport

__all__ = ["Backend", "Submission", "chunks", "make_backend", "run_with_executor"]

T = TypeVar("T")
_POLL_S = 0.5
_RESULT_FILE_GRACE_S = 120.0
"""How long the driver looks for the result file of a run that its task reported finished: twice
the longest an NFS client keeps its cached view of a folder by default (``acdirmax``, 60 s)."""


class Submission(Protocol):
    """One submitted task of an engine: a Slurm array task or a Ray task."""

    @property
    def label(self) -> str:
        """Who ran it, for the summary (``slurm:1234_0``, ``ray:<id>``)."""

    def done(self) -> bool:
        """Whether the task has ended, in any way."""

    def reports(self) -> list[TaskReport]:
        """The task's reports (call when :meth:`done`); raises when the task itself died."""

    def cancel(self) -> None:
        """Stop the task."""


class Backend(Protocol):
    """An engine that runs batches of tasks somewhere else."""

    def submit(self, batches: Sequence[Sequence[Task]]) -> Sequence[Submission]:
        """Submit each batch as one task (a Slurm array for all of them)."""

    def close(self) -> None:
        """Release what the backend holds (a Ray connection it opened)."""


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive groups of ``size`` (the last one may be shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def make_backend(name: str, spec: StudySpec, *, quiet: bool = True) -> Backend:
    """The backend of ``--executor name`` with the spec's resources.

    Raises:
        inpaintssl.config.ConfigError: Its package is not installed (the message says which extra).
        ValueError: Unknown executor name.
    """
    results = spec.results_dir().absolute()
    if name == "slurm":
        from inpaintssl.studies.submitit_backend import SubmititBackend, slurm_job_name

        job_name = slurm_job_name(spec)
        backend = SubmititBackend(
            spec.executor,
            folder=spec.output_dir().absolute() / "slurm",
            results=results,
            name=job_name,
            quiet=quiet,
        )
        if not quiet:
            # The name to cancel this study's arrays by, should this driver die.
            print(f"[slurm] job name {job_name}", file=sys.stderr, flush=True)
        return backend
    if name == "ray":
        from inpaintssl.studies.ray_backend import RayBackend

        return RayBackend(spec.executor, results=results, quiet=quiet)
    raise ValueError(f"executor {name!r}; expected 'slurm' or 'ray' (the local executor needs no backend)")


@dataclass
class _Driver:
    """The driver's bookkeeping while a study runs on an engine."""

    spec: StudySpec
    plan: StudyPlan
    shard: tuple[int, int]
    store: StudyStore
    me: WorkerId
    quiet: bool
    last_beat: float = 0.0  # time.monotonic() of the last heartbeat of the submitted runs
    submitted: tuple[str, ...] = ()  # the runs submitted and not yet merged, whose heartbeat it keeps

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def _runs(self) -> dict[str, RunRecord]:
        return {r.id: r for r in self.store.runs()}

    def ready(self, in_flight: set[str]) -> list[Job]:
        """Runs to submit now; marks those whose pretraining run failed for good as blocked."""
        runs = self._runs()
        limit = self.spec.max_attempts
        jobs = {job.id: job for job in self.plan}
        out = []
        for job in (jobs[i] for i in start_order({j.id: j.depends_on for j in self.plan})):
            if job.id in in_flight:
                continue
            run = runs[job.id]
            dep = None if job.depends_on is None else runs[job.depends_on]
            needs = None if dep is None else (dep.status, dep.failures)
            step = readiness(run.status, run.failures, needs, max_attempts=limit)
            if step == "block":
                self.store.block(job.id, f"blocked: the pretraining run {job.depends_on} it needs failed")
            elif step == "start":
                out.append(job)
        return out

    def finish(
        self, ids: Sequence[str], reports: dict[str, TaskReport], died: str | None
    ) -> tuple[dict[str, RunRecord], set[str]]:
        """Merge the files of ended runs; a run without a file failed (with its error).

        A task that died (``died``: a lost node, an out-of-memory kill) trains its runs in order
        and reached no run after the one it died in: the first run without a file counts a
        failure, and a later one whose run folder does not exist was never started, so it is
        handed back to be submitted again without counting an attempt.

        Returns:
            Every run's record after the merge, before the failures are recorded (which change
            no run that is done), and the runs handed back unstarted.
        """
        # Only the ended runs' files: merging every file again at each task's end would cost
        # the whole study each time (files left by an earlier driver were merged at the start).
        files, unseen = self._result_files(ids, reports)
        merge_files(self.store, {job.id: job for job in self.plan}, files).warn(
            results_dir=self.spec.results_dir()
        )
        runs = self._runs()
        jobs = {job.id: job for job in self.plan}
        unstarted: set[str] = set()
        counted = False
        for run_id in ids:
            if runs[run_id].status == "done":
                continue
            if died is not None and counted and not Path(jobs[run_id].config.run.output_dir).exists():
                self.store.release(run_id, self.me)
                unstarted.add(run_id)
                self._say(f"{run_id} was not started before the task died: submitted again")
                continue
            counted = True
            report = reports.get(run_id)
            if run_id in unseen:
                error = (
                    f"its task reported it {reports[run_id].status}, but its result file "
                    f"{result_path(self.spec.results_dir(), run_id)} was not there after "
                    f"{_RESULT_FILE_GRACE_S:.0f} s: the study's output folder must be one that the "
                    "driver and the nodes share"
                )
            elif report is not None and report.error:
                error = report.error
            else:
                error = died or "the task ended without writing this run's result file"
            self.store.fail(run_id, self.me, error)
            self._say(
                f"{run_id} failed ({self._next_step(jobs[run_id], runs[run_id].failures + 1)}): "
                + (error.splitlines()[0] if error else "")
            )
        return runs, unstarted

    def _next_step(self, job: Job, failures: int) -> str:
        """Which attempt of ``job`` failed and what :meth:`ready` does next, for its failure line."""
        limit = self.spec.max_attempts
        if failures < limit:
            then = "submitted again"
        elif any(other.depends_on == job.id for other in self.plan):
            then = "its dependants are blocked"
        else:
            then = "not submitted again"
        return f"attempt {failures} of {limit}; {then}"

    def _result_files(
        self, ids: Sequence[str], reports: dict[str, TaskReport]
    ) -> tuple[list[Path], set[str]]:
        """The result files of the ended runs ``ids``, and the runs reported finished whose file
        did not appear within :data:`_RESULT_FILE_GRACE_S`.

        A file another node wrote may not be seen at once on a network file system: the driver's
        cached view of the folder (NFS's attribute cache, up to ``acdirmax``, 60 s by default)
        may predate it. A run its task reported ``done`` or ``skipped`` has its file, so the driver
        asks for it again until the grace runs out, rather than fail a run that finished.
        """
        folder = self.spec.results_dir()
        paths = {run_id: result_path(folder, run_id) for run_id in ids}
        reported = [
            run_id
            for run_id in ids
            if (report := reports.get(run_id)) is not None and report.status in ("done", "skipped")
        ]
        deadline = time.monotonic() + _RESULT_FILE_GRACE_S
        unseen = [run_id for run_id in reported if not paths[run_id].is_file()]
        while unseen and time.monotonic() < deadline:
            self._beat_if_due()  # a long wait must not let a second driver take the live runs
            time.sleep(_POLL_S)
            unseen = [run_id for run_id in unseen if not paths[run_id].is_file()]
        return [paths[run_id] for run_id in ids if paths[run_id].is_file()], set(unseen)

    def report(self, submission: Submission, batch: Sequence[Job]) -> WorkerReport:
        """Merge an ended task's results and say what it did."""
        by_run, died = _task_reports(submission)
        runs, unstarted = self.finish([j.id for j in batch], by_run, died)
        executed: dict[str, int] = {}
        for job in batch:
            mine = by_run.get(job.id)
            # "skipped": the file was there before this task ran, so another task trained it.
            if runs[job.id].status == "done" and mine is not None and mine.status == "done":
                executed[job.kind] = executed.get(job.kind, 0) + 1
        failed = sum(runs[j.id].status != "done" and j.id not in unstarted for j in batch)
        return WorkerReport(submission.label, executed, failed)

    def drive(self, backend: Backend, executor: str) -> list[WorkerReport]:
        """Submit what is ready, wait for a task to end, merge, repeat; returns one report per task."""
        clinical = self.spec.study == "clinical"
        in_flight: list[tuple[Submission, list[Job]]] = []
        reports: list[WorkerReport] = []
        self.store.reclaim_stale(stale_after_s=self.spec.stale_after_s, me=self.me)
        merge_results(self.spec, shard=self.shard)
        self.last_beat = time.monotonic()  # mark_submitted stamps each run's first heartbeat
        cap = self.spec.executor.array_parallelism
        try:
            while True:
                ready = self.ready({j.id for _, batch in in_flight for j in batch})
                batches = chunks(ready, self.spec.executor.chunk_size)
                if cap is not None:
                    # The study's cap, not each array's: every wave is an array of its own.
                    batches = batches[: max(cap - len(in_flight), 0)]
                if batches:
                    ready = [job for batch in batches for job in batch]
                    self.store.mark_submitted([j.id for j in ready], self.me)
                    tasks = [[Task.from_job(j, clinical=clinical) for j in b] for b in batches]
                    try:
                        submissions = backend.submit(tasks)
                    except BaseException:
                        for job in ready:  # nothing was queued: the next call may submit them at once
                            self.store.release(job.id, self.me)
                        raise
                    for submission, batch in zip(submissions, batches):
                        in_flight.append((submission, batch))
                        self._say(f"[{executor}] {submission.label}: " + ", ".join(j.id for j in batch))
                if not in_flight:
                    return reports
                self._wait(in_flight)
                for submission, batch in [entry for entry in in_flight if entry[0].done()]:
                    self.submitted = tuple(job.id for _, jobs in in_flight for job in jobs)
                    in_flight.remove((submission, batch))
                    reports.append(self.report(submission, batch))
        finally:
            # Ctrl-C or an error in the driver: stop the tasks and hand their runs back, so that the
            # next invocation resumes them instead of training them twice at once.
            for submission, batch in in_flight:
                with contextlib.suppress(Exception):  # a task that ended meanwhile cannot be cancelled
                    submission.cancel()
                for job in batch:
                    self.store.release(job.id, self.me)

    def _wait(self, in_flight: Sequence[tuple[Submission, Sequence[Job]]]) -> None:
        """Sleep until a task ends, refreshing the heartbeats of the submitted runs when due.

        The time since the last heartbeat is kept across calls: tasks that end less than
        ``heartbeat_s`` apart must not postpone it forever, or a second driver would take this
        live driver's runs for abandoned ones.
        """
        self.submitted = tuple(job.id for _, batch in in_flight for job in batch)
        while True:
            self._beat_if_due()
            if any(submission.done() for submission, _ in in_flight):
                return
            time.sleep(_POLL_S)

    def _beat_if_due(self) -> None:
        """Refresh the heartbeats of the submitted runs if ``heartbeat_s`` has passed."""
        if time.monotonic() - self.last_beat > self.spec.heartbeat_s:
            for run_id in self.submitted:
                self.store.heartbeat(run_id, self.me)
            self.last_beat = time.monotonic()


def _task_reports(submission: Submission) -> tuple[dict[str, TaskReport], str | None]:
    try:
        return {r.run_id: r for r in submission.reports()}, None
    except Exception as exc:  # noqa: BLE001 - a dead task fails its runs, not the driver
        return {}, f"{submission.label} died: {type(exc).__name__}: {exc}"


def run_with_executor(
    spec: StudySpec,
    *,
    executor: str,
    plan: StudyPlan | None = None,
    shard: tuple[int, int] = (0, 1),
    quiet: bool = False,
    backend: Backend | None = None,
) -> list[WorkerReport]:
    """Run every pending run of ``plan`` on an engine (see the module docstring).

    Usually called by :func:`inpaintssl.studies.runner.run_study`, which also gives failed runs a
    fresh budget first; the plan's runs are registered here if they are new.

    Args:
        spec: The study; ``spec.executor`` holds the resources.
        executor: ``slurm`` or ``ray``.
        plan: The runs (default: the whole study's shard).
        shard: ``(i, n)``: the database to record in.
        quiet: No progress output (also passed to the tasks).
        backend: An engine to use instead of ``executor``'s (tests).

    Returns:
        One report per submitted task.
    """
    plan = plan if plan is not None else expand_study(spec).shard(*shard)
    backend = backend if backend is not None else make_backend(executor, spec, quiet=quiet)
    try:
        with StudyStore(spec.database_path(shard)) as store:
            store.add_runs(new_run(job) for job in plan)
            driver = _Driver(spec, plan, shard, store, WorkerId.current(), quiet)
            return driver.drive(backend, executor)
    finally:
        backend.close()
