"""What a remote worker (a Slurm array task, a Ray task) runs: jobs in, result files out.

A :class:`Task` is plain data (the run id, its kind and its resolved config as JSON), so it
pickles the same way for submitit and Ray. :func:`run_tasks` executes each task with
:func:`~inpaintssl.studies.execute.execute_job` (which resumes a run folder holding a
checkpoint) and writes the result to ``<results>/<run_id>.json``
(:mod:`inpaintssl.studies.resultfiles`). It takes no database path and opens no database: that
is what makes the study database single-writer by construction, whatever machine the task lands
on. A task whose result file exists already (a requeued array task that had finished some of its
runs) is skipped. A requeued task that lands on another node than its killed attempt finds that
attempt's run-folder lock still fresh for up to two minutes; it waits for the lock's heartbeat to
go silent and takes it over (:func:`~inpaintssl.training.lock.waiting_for_live_locks`), where
failing at once would spend the run's attempt on a lock nobody holds. A task works in the
driver's folder (:attr:`Task.cwd`); on a node without it, a run whose folder is relative fails
with a message naming both, since it would train on that node's own disk, lost to the study.

A task the driver gave a :attr:`Task.token` leaves a start marker (:func:`start_marker`) before
it executes a run: should the task die as a whole (a lost node, an out-of-memory kill), the
driver tells the runs it started from those it never reached by this marker, which no other task
or earlier attempt leaves (a run folder may be older than the task).

Example:
    >>> import tempfile, pathlib
    >>> from inpaintssl.studies.spec import StudySpec
    >>> from inpaintssl.studies.grid import expand_study
    >>> plan = expand_study(StudySpec(study="clinical", output=tempfile.mkdtemp()))
    >>> task = Task.from_job(plan.jobs[0], clinical=True)
    >>> task.run_id == plan.jobs[0].id, task.kind
    (True, 'finetune')
    >>> reports = run_tasks([task], results=pathlib.Path(tempfile.mkdtemp()))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inpaintssl.config import FinetuneConfig, PretrainConfig, quiet_unused_settings
from inpaintssl.studies.execute import execute_job
from inpaintssl.studies.grid import Job
from inpaintssl.studies.resultfiles import result_path, write_result_file
from inpaintssl.training.lock import LOCK_HEARTBEAT_S, LOCK_STALE_AFTER_S, waiting_for_live_locks

__all__ = ["Task", "TaskReport", "run_tasks", "start_marker"]


@dataclass(frozen=True)
class Task:
    """One run for a remote worker: plain strings, no database path.

    Attributes:
        run_id: The run's id (and the name of its result file).
        kind: ``pretrain`` or ``finetune``.
        config: The resolved config as JSON (it names the run folder).
        clinical: Also measure the clinical metrics (a ``clinical`` study's fine-tuning runs).
        cwd: The driver's working folder: relative paths in the config (data, run folders) mean
            the same on the worker when the folder is shared.
        token: The driver's name for the submitted task that holds this run (``""``: none); the
            worker leaves :func:`start_marker` under it when it starts the run.
    """

    run_id: str
    kind: Literal["pretrain", "finetune"]
    config: str
    clinical: bool = False
    cwd: str = ""
    token: str = ""

    @classmethod
    def from_job(cls, job: Job, *, clinical: bool = False, token: str = "") -> Task:
        """The task of a study job (``token``: see the attribute)."""
        return cls(job.id, job.kind, job.config.model_dump_json(), clinical, os.getcwd(), token)

    def job(self) -> Job:
        """The job again, on the worker."""
        model = PretrainConfig if self.kind == "pretrain" else FinetuneConfig
        with quiet_unused_settings():
            # The study's settings no run uses were told when its spec was read (load_spec); a
            # setting only some runs leave unused is the grid's doing, not worth a warning per run.
            return Job(self.run_id, self.kind, model.model_validate_json(self.config))


@dataclass(frozen=True)
class TaskReport:
    """What became of one task: ``done`` (its result file is written), ``skipped`` (it was already)
    or ``failed`` (with the error)."""

    run_id: str
    status: Literal["done", "skipped", "failed"]
    error: str = ""
    seconds: float = 0.0


@contextlib.contextmanager
def _working_directory(folder: str) -> Iterator[None]:
    # A Ray worker process serves many tasks: restore its folder afterwards.
    before = os.getcwd()
    if folder and Path(folder).is_dir():
        os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def start_marker(results: Path, run_id: str, token: str) -> Path:
    """The file that says the task named ``token`` started run ``run_id``.

    Beside the result files, in a hidden folder that no listing of result files reads.

    Example:
        >>> start_marker(Path("out/results"), "pt-1", "ab12")
        PosixPath('out/results/.started/pt-1.ab12')
    """
    return results / ".started" / f"{run_id}.{token}"


def _mark_started(results: Path, task: Task) -> None:
    """Leave the task's start marker of its run (see :func:`start_marker`)."""
    if not task.token:
        return
    marker = start_marker(results, task.run_id, task.token)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def _driver_folder_missing(task: Task) -> str:
    """Why ``task`` cannot run here: its run folder is relative to a driver's folder this node
    lacks (it would be written to this node's own disk and lost to the study); else ``""``."""
    if not task.cwd or Path(task.cwd).is_dir():
        return ""
    output = task.job().config.run.output_dir
    if Path(output).is_absolute():
        return ""
    return (
        f"run {task.run_id}: its run folder {str(output)!r} is relative to the driver's folder "
        f"{task.cwd}, which does not exist on {socket.gethostname()}; start the driver in a folder "
        "that every node shares, or give the study an absolute output folder"
    )


def run_tasks(
    tasks: Sequence[Task], *, results: Path, quiet: bool = True, threads: int | None = None
) -> list[TaskReport]:
    """Execute tasks one after another, each result to its own file (see the module docstring).

    Args:
        tasks: The runs, in order (a pretraining run before the fine-tuning runs that need it).
        results: The study's results folder (absolute, or relative to each task's ``cwd``).
        quiet: No progress output.
        threads: CPU threads for torch (e.g. the cores Slurm gave the task); ``None`` leaves
            torch's default.

    Returns:
        One report per task; a task that raised is ``failed`` and the next ones still run.
    """
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    reports = []
    for task in tasks:
        started = time.time()
        away = _driver_folder_missing(task)
        if away:
            reports.append(TaskReport(task.run_id, "failed", away))
            continue
        with _working_directory(task.cwd):
            if result_path(results, task.run_id).is_file():
                reports.append(TaskReport(task.run_id, "skipped"))
                continue
            try:
                _mark_started(results, task)
                # The silence that makes a lock stale, and two beats more for a slow shared file system.
                with waiting_for_live_locks(LOCK_STALE_AFTER_S + 2 * LOCK_HEARTBEAT_S):
                    outcome = execute_job(task.job(), quiet=quiet, clinical=task.clinical)
                write_result_file(
                    results, task.run_id, kind=task.kind, result=outcome.result, rows=outcome.rows
                )
            except Exception as exc:  # noqa: BLE001 - one failing run must not stop the others
                error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
                reports.append(TaskReport(task.run_id, "failed", error, time.time() - started))
                continue
        reports.append(TaskReport(task.run_id, "done", seconds=time.time() - started))
    return reports
