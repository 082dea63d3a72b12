"""Run a study: every pending run of a spec, resumable, in parallel, sharded (paper sec. 2.5-2.8).

The four studies
----------------
``transfer_design`` (sec. 2.5.1, Appendix B)
    One pretrained model; fine-tuning varies the transferred weights (``encoder``,
    ``encoder_decoder``), the schedule (``immediate`` = F?F, ``immediate_twice`` = F?S, ``frozen``
    = FF?F, ``freeze_then_unfreeze`` = FF?S: all eight models of Figure A1), the first learning
    rate and the second one, at one label fraction (the paper used 5%). Figure A1 and a ranking
    of the strategies against the supervised baseline.
``pretext_design`` (sec. 2.5.2, 2.5.3)
    Pretext task x patch size x sampler, each fine-tuned at every label fraction, plus the
    supervised baseline per label fraction. Table 2 (L2 norm), Table 3 (ranking), Figures 3/4.
``data_scaling`` (sec. 2.6)
    The optimal strategy pretrained on the training set plus growing shares of unlabelled data,
    fine-tuned at every label fraction. Figure 5 with power-law fits of Dice vs % pretraining
    data, and the labelled volumes each arm needs to reach a target Dice.
``clinical`` (sec. 2.7, 2.8)
    The optimal strategy vs supervised learning on clinical metrics (tissue volume, mean T2,
    cross-sectional area, mean HU): Figures 6 and 7, agreement statistics and a one-sided paired
    Wilcoxon test per metric.

``examples/studies/*.yaml`` holds one spec per study for the bundled ``mni152`` demo data.

Running, resuming, parallel workers
-----------------------------------
::

    inpaintssl experiment run study.yaml                     # every pending run, one process
    inpaintssl experiment run study.yaml --workers 4         # four worker processes, one database
    inpaintssl experiment run study.yaml --executor slurm    # a Slurm job array (submitit)
    inpaintssl experiment run study.yaml --executor ray      # Ray tasks
    inpaintssl experiment status study.yaml
    inpaintssl experiment report study.yaml --output report/

or from Python: ``run_study("study.yaml", workers=4)``. Results go to one SQLite database per study
(:mod:`inpaintssl.studies.database`). Runs already ``done`` are skipped, so running the command
again after a crash, a kill or a new grid value only trains what is missing; a run that was killed
mid-way resumes from its last checkpoint. Each pretrained model is trained once and shared by all
fine-tuning runs that start from it.

Across machines
---------------
The database is written from one host only (it refuses writers on any other host: SQLite's locks
do not work over network file systems). ``--executor slurm`` and ``--executor ray``
(:mod:`inpaintssl.studies.executors`) keep it that way: this process submits the runs, the
workers write one result file per run, and this process merges them into the database.

``--shard i/n`` runs the i-th of n disjoint parts of the study. A pretraining run and every
fine-tuning run that needs it are always in the same shard, so shards never wait for each other.
Shards on several machines need a database each (``database: studies/x/shard-{shard}.sqlite`` in
the spec; ``status`` and ``report`` read every matching file), and each file can be written again
only from the host that created it: where a scheduler may restart a shard on another node, use
``--executor slurm`` instead.

Example:
    >>> import tempfile, yaml
    >>> spec = {"study": "pretext_design", "output": tempfile.mkdtemp(), "label_fractions": [0.5],
    ...         "grid": {"pretrain.pretext.patch_size": [4, 8]}}
    >>> plan = expand_study(load_spec(spec))
    >>> len(plan.shard(0, 2)) + len(plan.shard(1, 2)) == len(plan)
    True
    >>> summary = run_study(spec, quiet=True)  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError

from inpaintssl.atomic import atomic_write_text
from inpaintssl.config import ConfigError, quiet_unused_settings
from inpaintssl.cores import usable_cores
from inpaintssl.options import check_option
from inpaintssl.signals import Terminated, handler_kept, terminate_as_exit
from inpaintssl.studies.demo_settings import check_same_demo_settings
from inpaintssl.studies.execute import execute_job
from inpaintssl.studies.grid import Job, StudyPlan, expand_study
from inpaintssl.studies.merge import merge_results, new_run
from inpaintssl.studies.queue import Heartbeat, RunRecord, WorkerId
from inpaintssl.studies.results import check_same_study, study_databases
from inpaintssl.studies.spec import EXECUTORS, ExecutorSpec, StudySpec, format_executor_errors, load_spec
from inpaintssl.studies.store import StudyStore
from inpaintssl.studies.summary import StudySummary, WorkerReport, summarise
from inpaintssl.warning_format import command_in_effect, install_command_warnings, warn_each_time

__all__ = ["StudySummary", "WorkerReport", "run_study", "run_worker"]

_POLL_S = 0.5


def _worker_device(plan: StudyPlan, index: int) -> str | None:
    # Spread workers over the GPUs of a multi-GPU machine; explicit devices in the spec win.
    if not plan.jobs or plan.jobs[0].config.run.device != "auto":
        return None
    count = torch.cuda.device_count()
    return f"cuda:{index % count}" if count > 1 else None


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _attempt(
    store: StudyStore, job: Job, me: WorkerId, *, spec: StudySpec, path: Path, device: str | None, quiet: bool
) -> Literal["done", "failed", "lost"]:
    """Execute a claimed job and record it; any error marks the run failed instead of ending the worker."""
    try:
        with Heartbeat(path, job.id, me, interval_s=spec.heartbeat_s):
            outcome = execute_job(job, quiet=quiet, device=device, clinical=spec.study == "clinical")
        recorded = store.record(job.id, me, result=outcome.result, rows=outcome.rows)
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C, or SIGTERM as the command line's exit (scancel, a preemption): the run goes back
        # to the queue at once, for a requeued job on any node, instead of waiting to go stale.
        store.release(job.id, me)
        raise
    except Exception as exc:  # noqa: BLE001 - one failing run must not stop the study
        store.fail(job.id, me, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        _say(quiet, f"{job.id} failed: {type(exc).__name__}: {exc}")
        return "failed"
    return "done" if recorded else "lost"


def _attempt_words(*, claims: int, failures: int, max_attempts: int) -> str:
    """Which attempt a claim starts, counted by failures as the remote driver counts them.

    A claim that ended without failing (Ctrl-C, SIGTERM, a worker reclaimed when its process
    died) costs no attempt: the run resumes from its last checkpoint. It is said apart, where
    the log used to call the claim count "attempt" and a resume after Ctrl-C read as a retry.

    Args:
        claims: The run's claims, this one included (``RunRecord.attempts``).
        failures: Its failed attempts.
        max_attempts: The spec's ``max_attempts``.

    Example:
        >>> _attempt_words(claims=3, failures=1, max_attempts=2)
        'attempt 2 of 2, after 1 interrupted start'
        >>> _attempt_words(claims=1, failures=0, max_attempts=2)
        'attempt 1 of 2'
    """
    words = f"attempt {failures + 1} of {max_attempts}"
    interrupted = claims - 1 - failures
    if interrupted > 0:
        words += f", after {interrupted} interrupted start{'s' if interrupted > 1 else ''}"
    return words


def run_worker(
    spec: StudySpec, *, shard: tuple[int, int] = (0, 1), index: int = 0, quiet: bool = False
) -> WorkerReport:
    """Claim and execute runs of ``shard`` until none is left (what each worker process does).

    Args:
        spec: The study.
        shard: ``(i, n)``.
        index: Worker number on this machine (picks its GPU when there are several).
        quiet: No progress output.
    """
    plan = expand_study(spec).shard(*shard)
    allowed = {job.id for job in plan}
    me = WorkerId.current()
    device = _worker_device(plan, index)
    executed: dict[str, int] = {}
    outcomes = {"failed": 0, "lost": 0}
    path = spec.database_path(shard)
    with StudyStore(path) as store:
        while True:
            claimed = store.claim(
                me, allowed=allowed, max_attempts=spec.max_attempts, stale_after_s=spec.stale_after_s
            )
            if claimed is None:
                break
            if not isinstance(claimed, RunRecord):  # WAIT: runs remain, none can start yet
                time.sleep(_POLL_S)
                continue
            job = plan.get(claimed.id)
            attempt = _attempt_words(
                claims=claimed.attempts, failures=claimed.failures, max_attempts=spec.max_attempts
            )
            _say(
                quiet,
                f"[worker {index}] {job.kind} {job.id} ({job.labels.get('strategy', '')}, "
                f"labels {job.labels.get('label_fraction', '-')}), {attempt}",
            )
            started = time.time()
            outcome = _attempt(store, job, me, spec=spec, path=path, device=device, quiet=quiet)
            if outcome == "done":
                executed[job.kind] = executed.get(job.kind, 0) + 1
                _say(quiet, f"[worker {index}] {job.id} done in {time.time() - started:.1f} s")
            else:
                outcomes[outcome] += 1
    return WorkerReport(str(me), executed, outcomes["failed"], outcomes["lost"])


def _local_threads(spec: StudySpec, workers: int) -> int:
    """Torch threads of a local worker: the spec's ``cpus_per_task``, else the cores shared out.

    N workers each running torch on every core would thrash; and a run's summation order follows
    its thread count, so a spec that states one trains the same bits here as on Slurm or Ray.
    """
    if spec.executor.cpus_per_task is not None:
        return spec.executor.cpus_per_task
    return max(1, usable_cores() // workers)


# One entry of ``warnings.filters``: action, message pattern, category, module pattern, line.
# Python's own default filters hold a plain string (matched whole) where filterwarnings compiles a
# pattern (matched at the start).
_WarningFilter = tuple[
    Any, "re.Pattern[str] | str | None", type[Warning], "re.Pattern[str] | str | None", int
]


def _filters_for_workers() -> tuple[_WarningFilter, ...]:
    """The caller's warning filters that a spawned worker process can take over.

    A spawned process starts with Python's default filters, so a caller's
    ``warnings.filterwarnings("ignore", category=ConvergenceWarning)`` did not reach the runs its
    workers train. A category defined in ``__main__`` (a notebook cell) cannot be imported there
    and is left out.
    """
    return tuple(
        (action, message, category, module, lineno)
        for action, message, category, module, lineno in warnings.filters
        # A class, as filterwarnings makes them (not a tuple of classes put in by hand).
        if isinstance(category, type) and category.__module__ not in {"__main__", "__mp_main__"}
    )


def _pattern_text(pattern: re.Pattern[str] | str | None) -> str:
    """The ``filterwarnings`` text that matches as ``pattern`` does in ``warnings.filters``."""
    if pattern is None:
        return ""
    return re.escape(pattern) + r"\Z" if isinstance(pattern, str) else pattern.pattern


def _take_over_filters(filters: Sequence[_WarningFilter]) -> None:
    """Replace this process's warning filters by ``filters`` (a driver's), in their order."""
    warnings.resetwarnings()
    for action, message, category, module, lineno in reversed(filters):
        warnings.filterwarnings(
            action,
            message=_pattern_text(message),
            category=category,
            module=_pattern_text(module),
            lineno=lineno,
        )


def _worker_process(
    spec_json: str,
    shard: tuple[int, int],
    index: int,
    workers: int,
    quiet: bool,
    command: str | None,
    filters: Sequence[_WarningFilter] = (),
    handed_back: Connection | None = None,
) -> WorkerReport:
    _take_over_filters(filters)
    if command is not None:
        # A spawned process starts with Python's warning form; its warnings reach the same terminal.
        install_command_warnings(command)
    with quiet_unused_settings():
        # The driver read this spec and warned about its unused settings; once is enough.
        spec = StudySpec.model_validate_json(spec_json)
    torch.set_num_threads(_local_threads(spec, workers))
    # Slurm signals every process of a job step: a worker stopped as an exception hands its run
    # and the run folder's lock back, so the job requeued on another node resumes at once.
    with _holding_runs():
        try:
            with terminate_as_exit():
                return run_worker(spec, shard=shard, index=index, quiet=quiet)
        except Terminated:
            # Told to stop: what is left is to wait for the pool's shutdown, which a repeat of the
            # signal (the driver's after the scheduler's) must not cut short.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if handed_back is not None:
                handed_back.send(os.getpid())  # a broken pool's driver ends this process on it
            raise


_HOLDING_NO_RUN = threading.Event()
"""Set while this local worker process is not claiming or executing runs (see :func:`_end_with_driver`)."""
_HOLDING_NO_RUN.set()

_HAND_BACK_S = 60.0
"""How long a worker whose driver died waits for its run to be handed back before it exits anyway."""


@contextlib.contextmanager
def _holding_runs() -> Iterator[None]:
    """Mark this worker process as claiming and executing runs for the block (:func:`_end_with_driver`)."""
    _HOLDING_NO_RUN.clear()
    try:
        yield
    finally:
        _HOLDING_NO_RUN.set()


def _end_with_driver() -> None:
    """End this local worker process once its driver (the pool's process) has died.

    A driver killed outright (``kill -9``, the OOM killer) cannot stop its workers: they went on
    claiming and training runs for no one, then waited for ever for the pool's next call, with
    Ctrl-C ignored. Told by SIGTERM, a worker hands its run and the run folder's lock back as when
    ``scancel`` stops it; then, or at once when it holds no run, it exits, since no pool is left
    to tell it to (the call queue it waits on stays open: this process holds its other end too).
    Run in a daemon thread.
    """
    driver = multiprocessing.parent_process()
    if driver is None:
        return
    multiprocessing.connection.wait([driver.sentinel])  # ready once the driver has exited
    os.kill(os.getpid(), signal.SIGTERM)
    # A run not handed back in time is reclaimed by the next call all the same (its pid is gone).
    _HOLDING_NO_RUN.wait(timeout=_HAND_BACK_S)
    os._exit(128 + signal.SIGTERM)


def _pool_worker_started() -> None:
    """Each local worker process's signals, from its start to its end (the pool's initializer).

    Ctrl-C reaches the terminal's whole process group; the driver answers it by sending its
    workers SIGTERM (:func:`_stop_workers`), one signal each, so none is interrupted twice: a
    worker ignores SIGINT. SIGTERM raises :class:`~inpaintssl.signals.Terminated` also between
    runs, where a worker waits for the pool's next call holding the call queue's read lock
    (``multiprocessing.Queue.get``): ended there by SIGTERM's default action, as ``scancel`` ends
    every process of a job step, a worker whose run was done took the lock with it, and a sibling
    that had handed its run back waited for ever for the pool's word to exit, and the study's
    driver with it. Raised as an exception, the lock is released on the way out.

    A thread ends the worker when the driver dies (:func:`_end_with_driver`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_terminated)
    threading.Thread(target=_end_with_driver, name="end-with-driver", daemon=True).start()


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _ignore_ctrl_c() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_pool(workers: int, context: multiprocessing.context.SpawnContext) -> ProcessPoolExecutor:
    """The pool of a study's local worker processes (see :func:`_pool_worker_started`)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_pool_worker_started)


def _stop_workers(workers: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM to each local worker still alive: it hands its run back and returns.

    A driver stopped alone (``kill`` of its pid, Ctrl-C) would otherwise wait, in the pool's
    shutdown, for its workers to train every run left, and only then exit as stopped.
    """
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)


def _wait_noticing_dead_workers(
    pool: ProcessPoolExecutor,
    futures: Sequence[Future[WorkerReport]],
    workers: Sequence[multiprocessing.process.BaseProcess],
) -> None:
    """Wait until every worker's future is done; a worker that died makes the pool notice at once.

    The pool's manager thread watches the processes it knew when it last woke, and each submit
    spawns its process after waking it: a worker spawned so late, killed (the OOM killer), went
    unnoticed until another event woke the thread (CPython 3.11), and its siblings trained on,
    their reports lost. Shutting the pool down wakes the thread, which then finds the dead worker,
    stops the others (they hand their runs back) and fails the futures with BrokenProcessPool.
    """
    pending: set[Future[WorkerReport]] = set(futures)
    while pending:
        _, pending = concurrent.futures.wait(pending, timeout=_POLL_S)
        # A pool worker never exits while work is pending: an exit code means it died.
        if pending and any(worker.exitcode is not None for worker in workers):
            pool.shutdown(wait=False)
            concurrent.futures.wait(pending)
            return


def _end_stopped_workers(
    workers: Sequence[multiprocessing.process.BaseProcess], handed_back: Connection
) -> None:
    """After a worker's death broke the pool, end each worker left once it has handed its run back.

    The broken pool SIGTERMs the workers left, and each hands its run back (``_worker_process``
    sends its pid on ``handed_back``) and waits, SIGTERM ignored, for the pool to tell it to exit.
    Python 3.10 and 3.11 tell it (a ``None`` on the call queue); from 3.12 the pool closes that
    queue instead and joins the worker, and the study waited for ever in the pool's shutdown.
    """
    stopped: set[int] = set()
    while True:
        while handed_back.poll():
            stopped.add(handed_back.recv())
        busy = [worker for worker in workers if worker.is_alive() and worker.pid not in stopped]
        if not busy:
            break
        multiprocessing.connection.wait([handed_back, *(worker.sentinel for worker in busy)], timeout=_POLL_S)
    for worker in workers:
        if worker.is_alive():  # its run handed back: nothing of it is left to wait for
            worker.kill()


def _worker_report(future: Future[WorkerReport], spec: StudySpec, index: int) -> WorkerReport | None:
    """What local worker process ``index`` did; ``None``, with a warning, if a signal stopped it alone.

    A worker stopped by SIGTERM (``kill`` of its pid) handed its run back, and its siblings take
    it; the study goes on without it. SIGTERM to this process as well stops the whole command.
    """
    try:
        return future.result()
    except Terminated as stopped:
        if not (future.done() and future.exception() is stopped):
            raise  # this process's own SIGTERM, raised while it waited
        warn_each_time(
            f"worker process {index} of {spec.study!r} was stopped ({stopped.signal_name}); its run "
            "went back to the queue, for the other workers or the next call to resume from its last "
            "checkpoint",
            UserWarning,
        )
        return None


def _reports_read_back(
    spec: StudySpec,
    plan: StudyPlan,
    shard: tuple[int, int],
    processes: Sequence[multiprocessing.process.BaseProcess],
    *,
    since: float,
) -> list[WorkerReport]:
    """What the worker processes of a broken pool recorded, read back from the shard's database.

    Their own reports died with the pool, but each run a worker finished is ``done`` under its id
    (``host:pid:token``): the runs of this call's processes (this host, their pids, finished
    after ``since``) are theirs. Only ``executed`` can be read back; ``failed`` and ``lost`` stay 0.
    """
    host = WorkerId.current().host
    pids = {process.pid for process in processes}
    ids = {job.id for job in plan}
    executed: dict[str, dict[str, int]] = {}
    with StudyStore(spec.database_path(shard), read_only=True) as store:
        for run in store.runs(status="done"):
            if run.id not in ids or run.worker is None or (run.finished or 0.0) < since:
                continue
            worker = WorkerId.parse(run.worker)
            if worker is not None and worker.host == host and worker.pid in pids:
                counts = executed.setdefault(run.worker, {})
                counts[run.kind] = counts.get(run.kind, 0) + 1
    return [WorkerReport(worker, counts) for worker, counts in sorted(executed.items())]


def run_study(
    spec: StudySpec | Mapping[str, Any] | str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    quiet: bool = False,
    executor: str = "local",
    resources: Mapping[str, Any] | None = None,
) -> StudySummary:
    """Run every run of a study shard that is not done yet (see the module docstring).

    Args:
        spec: A :class:`~inpaintssl.studies.spec.StudySpec`, a mapping or a YAML/JSON path.
        shard: ``(i, n)``: run the i-th of n disjoint shards.
        workers: Worker processes on this machine (started with ``spawn``; they share the
            database). Local executor only.
        quiet: No progress output.
        executor: ``local`` (worker processes on this machine and its job queue), ``slurm``
            (a job array through submitit) or ``ray`` (Ray tasks); see
            :mod:`inpaintssl.studies.executors`.
        resources: Fields of the spec's ``executor`` section to override (``partition``,
            ``gpus_per_task``, ``ray_address``, ...), e.g. from command-line flags.

    Returns:
        The shard's state afterwards; runs that failed for good are listed in ``errors`` and the
        next call retries them.

    Raises:
        inpaintssl.config.ConfigError: Invalid spec or resources, or the study database belongs
            to another host.
        ValueError: Invalid ``shard``, ``workers`` or ``executor``.
    """
    spec = _with_resources(load_spec(spec), resources or {})
    if workers < 1:
        raise ValueError(f"workers={workers}; expected at least 1")
    check_option(executor, EXECUTORS, field="executor")
    if executor != "local" and workers != 1:
        raise ValueError(
            f"workers={workers} applies to the local executor only; with executor {executor!r} set "
            "chunk_size and array_parallelism (slurm) or the cluster's size (ray) instead"
        )
    if executor != "local" and shard != (0, 1):
        # The shards' drivers would share one results folder, and a report merges unsharded.
        raise ValueError(
            f"shard {shard[0]}/{shard[1]} splits a study for the local executor; executor {executor!r} "
            "spreads every run of it already: run one driver without a shard"
        )
    spec.check_component_names()
    whole = expand_study(spec)
    overlap = spec.pretraining_sees_test_anatomy(plan=whole)
    if overlap is not None:
        warn_each_time(f"{spec.study}: {overlap}", UserWarning)
    plan = whole.shard(*shard)
    database = spec.database_path(shard)
    if spec.study == "demo":
        check_same_demo_settings(spec, database.parent / "spec.json")
    for folder in (spec.output_dir(), database.parent):
        folder.mkdir(parents=True, exist_ok=True)
    with StudyStore(database) as store:
        check_same_study(store, spec, database)
        # Beside the database it describes (the study folder unless the spec moves the database).
        atomic_write_text(database.parent / "spec.json", spec.model_dump_json(indent=2))
        store.set_meta("spec", spec.model_dump_json())
        store.add_runs(new_run(job) for job in plan)
        adopted = adopt_done_runs(store, spec, database=database, run_ids={job.id for job in plan})
        # A new invocation gives failed runs a fresh budget: the cause may have been fixed.
        store.requeue_failed({job.id for job in plan})
    if adopted:
        _say(
            quiet, f"{spec.study}: {adopted} runs done in the study's other database files are not run again"
        )
    # Results that remote workers finished (e.g. while a driver was down) count before planning.
    merge_results(spec, shard=shard).warn(results_dir=spec.results_dir())
    _say(
        quiet,
        f"{spec.study}: {len(plan)} runs in shard {shard[0]}/{shard[1]} -> {database} ({executor} executor)",
    )
    if executor != "local":
        from inpaintssl.studies.executors import run_with_executor

        reports = run_with_executor(spec, executor=executor, plan=plan, shard=shard, quiet=quiet)
    elif workers == 1:
        # In this process: the caller's thread count comes back afterwards.
        threads = torch.get_num_threads()
        if spec.executor.cpus_per_task is not None:
            torch.set_num_threads(spec.executor.cpus_per_task)
        try:
            reports = [run_worker(spec, shard=shard, index=0, quiet=quiet)]
        finally:
            torch.set_num_threads(threads)
    else:
        context = multiprocessing.get_context("spawn")
        others = set(multiprocessing.active_children())
        called = time.time()
        # Ctrl-C's handler comes back as it was, whatever _ignore_ctrl_c did inside.
        kept = handler_kept(signal.SIGINT)
        # Where a stopped worker says it has handed its run back (_end_stopped_workers); one writer
        # end serves every worker, as a message this small is one atomic write to the pipe.
        stops_read, stops_written = context.Pipe(duplex=False)
        with (
            kept,
            stops_read,
            stops_written,
            _worker_pool(workers, context) as pool,
        ):
            futures = [
                pool.submit(
                    _worker_process,
                    spec.model_dump_json(),
                    shard,
                    i,
                    workers,
                    quiet,
                    command_in_effect(),
                    _filters_for_workers(),
                    stops_written,
                )
                for i in range(workers)
            ]
            # The pool's processes: the caller's own children are not this study's to stop.
            started = [child for child in multiprocessing.active_children() if child not in others]
            try:
                _wait_noticing_dead_workers(pool, futures, started)
                reports = []
                for index, future in enumerate(futures):
                    report = _worker_report(future, spec, index)
                    if report is not None:
                        reports.append(report)
            except (Terminated, KeyboardInterrupt):
                _stop_workers(started)
                # Leaving the block waits for the workers to hand their runs back; a second Ctrl-C
                # cutting that wait short would leave the pool half shut down, as a second SIGTERM did.
                _ignore_ctrl_c()
                raise
            except BrokenProcessPool:
                # A worker killed (by the OOM killer, a user, a scheduler) takes the pool and its
                # siblings down; their runs stay claimed until the next call takes them over.
                _end_stopped_workers(started, stops_read)
                reports = _reports_read_back(spec, plan, shard, started, since=called)
                warn_each_time(
                    f"a worker process of {spec.study!r} died (killed, or out of memory), and the "
                    "others were stopped with it; finished runs are kept, and runs in progress resume "
                    "from their last checkpoint when the same command runs again",
                    UserWarning,
                )
    return summarise(spec, plan, shard, reports)


def adopt_done_runs(store: StudyStore, spec: StudySpec, *, database: Path, run_ids: set[str]) -> int:
    """Record in ``store`` the runs of ``run_ids`` that another database file of the study has done.

    With one database per shard (``{shard}`` in its path), running the study with another shard
    count opens new files: without this, runs finished under the old count would train again.
    Their measurements are copied as they are; the other files are only read.

    Returns:
        How many runs were recorded from other files.
    """
    adopted = 0
    for path in study_databases(spec):
        if path.resolve() == database.resolve():
            continue
        with StudyStore(path, read_only=True) as other:
            check_same_study(other, spec, path)
            done = {run.id: run for run in other.runs() if run.status == "done" and run.id in run_ids}
            found = {run_id: other.run_measurements(run_id) for run_id in done}
        for run_id, run in done.items():
            if store.merge(run_id, result=dict(run.result or {}), rows=found[run_id]) == "merged":
                adopted += 1
    return adopted


def _with_resources(spec: StudySpec, resources: Mapping[str, Any]) -> StudySpec:
    """The spec with its ``executor`` section updated (and validated) by ``resources``."""
    if not resources:
        return spec
    merged = {**spec.executor.model_dump(), **resources}
    try:
        section = ExecutorSpec.model_validate(merged)
    except ValidationError as exc:
        # The spec's own section was valid already: what fails is a flag (or resources=) given now.
        raise ConfigError(format_executor_errors(exc)) from exc
    return spec.model_copy(update={"executor": section})
