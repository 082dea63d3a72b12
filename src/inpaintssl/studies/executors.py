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

Before submitting, the driver takes its runs in one transaction that checks each is still ready
(:meth:`~inpaintssl.studies.queue.JobQueue.mark_submitted`): of two drivers started at once, only
one submits a run.

A run that raised is submitted again until it has failed ``max_attempts`` times in this
invocation; its dependants are then marked failed. A task that died as a whole (a lost node, an
out-of-memory kill) counts a failure for each of its runs without a result that it started (it
leaves a start marker, :func:`~inpaintssl.studies.worker.start_marker`, under a name the driver
gave the task), or for its first such run when it started none; the runs of its chunk that it
never reached are submitted again without one.

A scheduler that refuses a submission (:class:`SubmissionError`) charges no run an attempt.
A transient refusal (a busy controller, a submission limit) is tried again after
:data:`SUBMIT_RETRY_S`; a wave still refused then is handed back and tried again when a task
ends. Any other refusal (a partition the cluster does not have) submits nothing more. Either
way the tasks already submitted keep running and are merged as they end; then the driver raises
the refusal, which names the flag and spec field to change.

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
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from inpaintssl.config import ConfigError
from inpaintssl.studies.grid import Job, StudyPlan, expand_study
from inpaintssl.studies.merge import merge_files, merge_results, new_run
from inpaintssl.studies.queue import RunRecord, WorkerId, readiness, start_order
from inpaintssl.studies.resultfiles import result_path
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.store import StudyStore
from inpaintssl.studies.summary import WorkerReport
from inpaintssl.studies.worker import Task, TaskReport, start_marker

__all__ = [
    "SUBMIT_RETRY_S",
    "Backend",
    "Submission",
    "SubmissionError",
    "chunks",
    "make_backend",
    "run_with_executor",
]

T = TypeVar("T")
_POLL_S = 0.5
_RESULT_FILE_GRACE_S = 120.0
"""How long the driver looks for the result file of a run that its task reported finished: twice
the longest an NFS client keeps its cached view of a folder by default (``acdirmax``, 60 s)."""
SUBMIT_RETRY_S: tuple[float, ...] = (10.0, 30.0, 90.0)
"""The waits before each new try of a wave that the scheduler refused for now (a busy controller's
"Socket timed out", a per-user submission limit): about two minutes in all, which a controller
under load or a queue that drains usually needs."""


class SubmissionError(ConfigError):
    """The scheduler refused a submission; nothing of it was queued.

    A :class:`~inpaintssl.config.ConfigError`, so the command line prints its one-line message
    and exits 2.

    Attributes:
        transient: Whether the same submission may pass later (a busy or unreachable controller,
            a submission limit); otherwise the message names the flag and spec field to change.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


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
        """Submit each batch as one task (a Slurm array for all of them).

        Raises:
            SubmissionError: The scheduler refused them; none was queued.
        """

    def close(self) -> None:
        """Release what the backend holds (a Ray connection it opened)."""


_InFlight = tuple[Submission, list[Job], str]
"""A submitted task: its submission, its runs and the token its start markers are named by."""


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
        self, ids: Sequence[str], reports: dict[str, TaskReport], died: str | None, token: str = ""
    ) -> tuple[dict[str, RunRecord], set[str]]:
        """Merge the files of ended runs; a run without a file failed (with its error).

        A task that died (``died``: a lost node, an out-of-memory kill) has no reports. Its runs
        without a file that it started (its start marker under ``token`` exists) count a failure;
        when it started none, the first of them does (a task that always dies, e.g. at start-up,
        must end). The others it never reached: they are handed back to be submitted again
        without counting an attempt. A run folder is no evidence: an earlier task may have left it.

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
        missing = [run_id for run_id in ids if runs[run_id].status != "done"]
        charged = set(missing)
        if died is not None:
            charged = {run_id for run_id in missing if self._started(run_id, token)} or set(missing[:1])
        for run_id in missing:
            if run_id not in charged:
                self.store.unsubmit([run_id], self.me)
                unstarted.add(run_id)
                self._say(f"{run_id} was not started before the task died: submitted again")
                continue
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
        for run_id in ids:  # read, or never to be: the next task of a run has a token of its own
            with contextlib.suppress(OSError):
                start_marker(self.spec.results_dir(), run_id, token).unlink(missing_ok=True)
        return runs, unstarted

    def _started(self, run_id: str, token: str) -> bool:
        """Whether the task named ``token`` left its start marker of ``run_id``."""
        return bool(token) and start_marker(self.spec.results_dir(), run_id, token).is_file()

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

    def report(self, submission: Submission, batch: Sequence[Job], token: str = "") -> WorkerReport:
        """Merge an ended task's results and say what it did (``token``: the task's name)."""
        by_run, died = _task_reports(submission)
        runs, unstarted = self.finish([j.id for j in batch], by_run, died, token)
        executed: dict[str, int] = {}
        for job in batch:
            mine = by_run.get(job.id)
            # "skipped": the file was there before this task ran, so another task trained it.
            if runs[job.id].status == "done" and mine is not None and mine.status == "done":
                executed[job.kind] = executed.get(job.kind, 0) + 1
        failed = sum(runs[j.id].status != "done" and j.id not in unstarted for j in batch)
        return WorkerReport(submission.label, executed, failed)

    def drive(self, backend: Backend, executor: str) -> list[WorkerReport]:
        """Submit what is ready, wait for a task to end, merge, repeat; returns one report per task.

        Raises:
            SubmissionError: The scheduler refused runs that are still unsubmitted, once the tasks
                submitted before have ended and been merged (see the module docstring).
        """
        in_flight: list[_InFlight] = []
        reports: list[WorkerReport] = []
        self.store.reclaim_stale(stale_after_s=self.spec.stale_after_s, me=self.me)
        merge_results(self.spec, shard=self.shard)
        self.last_beat = time.monotonic()  # mark_submitted stamps each run's first heartbeat
        cap = self.spec.executor.array_parallelism
        refused: SubmissionError | None = None  # the last refusal of a wave not submitted since
        deferred: set[str] = set()  # runs of a wave refused for now, held back until a task ends
        try:
            while True:
                ready: list[Job] = []
                if refused is None or refused.transient:  # after any other refusal, nothing more
                    ready = self.ready({j.id for _, batch, _ in in_flight for j in batch} | deferred)
                batches = chunks(ready, self.spec.executor.chunk_size)
                if cap is not None:
                    # The study's cap, not each array's: every wave is an array of its own.
                    batches = batches[: max(cap - len(in_flight), 0)]
                if batches:
                    wanted = [job.id for batch in batches for job in batch]
                    taken = set(
                        self.store.mark_submitted(wanted, self.me, max_attempts=self.spec.max_attempts)
                    )
                    # A second driver may have taken some since ready() read them: submit the rest.
                    batches = chunks(
                        [j for b in batches for j in b if j.id in taken], self.spec.executor.chunk_size
                    )
                if batches:
                    try:
                        in_flight += self._submit(backend, batches, in_flight, executor)
                        refused = None
                    except SubmissionError as exc:
                        refused = exc
                        if exc.transient:
                            deferred |= {job.id for batch in batches for job in batch}
                        if in_flight:
                            print(
                                f"[{executor}] {exc}; {len(in_flight)} task(s) submitted before keep "
                                "running and are merged as they end"
                                + ("; the refused runs are tried again then" if exc.transient else ""),
                                file=sys.stderr,
                                flush=True,
                            )
                if not in_flight:
                    if refused is not None:
                        raise refused
                    return reports
                self._wait([(submission, batch) for submission, batch, _ in in_flight])
                for entry in [entry for entry in in_flight if entry[0].done()]:
                    self.submitted = tuple(job.id for _, jobs, _ in in_flight for job in jobs)
                    in_flight.remove(entry)
                    reports.append(self.report(*entry))
                    deferred.clear()  # the controller may take them now
        finally:
            # Ctrl-C or an error in the driver: stop the tasks and hand their runs back, so that the
            # next invocation resumes them instead of training them twice at once.
            for submission, batch, _ in in_flight:
                with contextlib.suppress(Exception):  # a task that ended meanwhile cannot be cancelled
                    submission.cancel()
                for job in batch:
                    self.store.release(job.id, self.me)

    def _submit(
        self,
        backend: Backend,
        batches: Sequence[Sequence[Job]],
        in_flight: Sequence[_InFlight],
        executor: str,
    ) -> list[_InFlight]:
        """Submit the wave ``batches`` (its runs are marked submitted already), trying a transient
        refusal again after each of :data:`SUBMIT_RETRY_S`, with the heartbeats kept meanwhile.

        Raises:
            SubmissionError: Still refused (transient), or refused for good; the wave's runs are
                handed back without an attempt counted.
        """
        clinical = self.spec.study == "clinical"
        wave = [job.id for batch in batches for job in batch]
        tokens = [uuid.uuid4().hex[:12] for _ in batches]
        tasks = [
            [Task.from_job(j, clinical=clinical, token=token) for j in batch]
            for batch, token in zip(batches, tokens)
        ]
        self.submitted = (*(job.id for _, jobs, _ in in_flight for job in jobs), *wave)
        try:
            for tried, pause in enumerate((*SUBMIT_RETRY_S, None), start=1):
                try:
                    submissions = backend.submit(tasks)
                    break
                except SubmissionError as exc:
                    if not exc.transient or pause is None:
                        raise
                    self._say(
                        f"[{executor}] {exc} (try {tried} of {len(SUBMIT_RETRY_S) + 1}); trying again "
                        f"in {pause:.0f} s"
                    )
                    self._pause(pause)
        except BaseException:
            # Nothing was queued: the runs are pending again, as if never marked, and the next
            # wave (or invocation) may submit them at once.
            self.store.unsubmit(wave, self.me)
            raise
        out = []
        for submission, batch, token in zip(submissions, batches, tokens):
            out.append((submission, list(batch), token))
            self._say(f"[{executor}] {submission.label}: " + ", ".join(j.id for j in batch))
        return out

    def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, refreshing the heartbeats of the submitted runs when due."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self._beat_if_due()
            time.sleep(min(_POLL_S, until - time.monotonic()))

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
