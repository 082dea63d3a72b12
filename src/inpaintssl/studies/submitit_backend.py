"""``--executor slurm``: study runs as a Slurm job array, submitted with submitit.

Each submission is one array (``submitit.AutoExecutor.map_array``), one array task per chunk of
runs, with the spec's resources (:class:`~inpaintssl.studies.spec.ExecutorSpec`): partition,
GPUs, cores, memory, time limit, array parallelism. The task's callable is a
``submitit.helpers.Checkpointable``: when Slurm preempts the task or its time limit nears,
submitit requeues it with the same runs, and the new attempt skips the runs whose result file
exists and resumes the interrupted one from its checkpoint (after a time-out up to
``max_requeues`` times; submitit requeues a preempted task every time).

``cluster: local`` in the spec's ``executor`` section (or ``--cluster local``) takes the same
path through submitit's local executor: real subprocesses on this machine, which is how the tests
run it.

Every array of a study has the job name :func:`slurm_job_name`, which names this study alone (its
study folder), so ``scancel --name <it>`` cancels this study's arrays and no other's.

Example:
    >>> from inpaintssl.studies.spec import ExecutorSpec
    >>> sorted(slurm_parameters(ExecutorSpec(partition="gpu", gpus_per_task=1), name="x"))[:3]
    ['gpus_per_node', 'name', 'slurm_partition']
    >>> "gpus_per_node" in slurm_parameters(ExecutorSpec(), name="x")  # a CPU task asks for no GPU
    False
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inpaintssl.config import ConfigError
from inpaintssl.extras import import_optional
from inpaintssl.studies.spec import ExecutorSpec, StudySpec
from inpaintssl.studies.worker import Task, TaskReport, run_tasks

__all__ = ["SubmititBackend", "slurm_job_name", "slurm_parameters"]


def slurm_job_name(spec: StudySpec) -> str:
    """The Slurm job name of the study's arrays: ``inpaintssl-<folder name>-<8 hex digits>``.

    The study *is* its folder (its runs and database live there), so the name comes from it: the
    folder's name to read (the spec's ``name`` or study kind unless ``output`` says otherwise) and
    a digest of its absolute path, which tells apart two studies of one kind, or two folders of
    one name. A restarted driver of the same spec, from the same working folder, gets the same
    name, so ``scancel --name`` with it reaches the arrays of the driver that died.

    Example:
        >>> name = slurm_job_name(StudySpec(study="pretext_design", output="/data/studies/knee mri"))
        >>> name.startswith("inpaintssl-knee-mri-"), len(name.rsplit("-", 1)[1])
        (True, 8)
    """
    folder = spec.output_dir().resolve()
    # Only characters that pass through an sbatch directive and a shell command unquoted.
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-")[:40] or "study"
    digest = hashlib.sha256(str(folder).encode("utf-8")).hexdigest()[:8]
    return f"inpaintssl-{label}-{digest}"


def slurm_parameters(resources: ExecutorSpec, *, name: str) -> dict[str, Any]:
    """``update_parameters`` arguments of ``submitit.AutoExecutor`` for the spec's resources."""
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": resources.timeout_min,
        # One task per node in an array task: its GPUs are the node's GPUs. None for none: a
        # cluster without GPU resources configured may refuse even --gpus-per-node=0.
        "gpus_per_node": resources.gpus_per_task or None,
        "cpus_per_task": resources.cpus_per_task,
        "mem_gb": resources.mem_gb,
        "slurm_partition": resources.partition,
        "slurm_array_parallelism": resources.array_parallelism,
    }
    if resources.setup:
        params["slurm_setup"] = list(resources.setup)
        params["local_setup"] = list(resources.setup)
    return {key: value for key, value in params.items() if value is not None}


class _Batch:
    """The callable of one array task.

    Its ``checkpoint`` method (submitit's duck-typed ``Checkpointable`` protocol) makes submitit
    requeue the task with the same runs when Slurm preempts it or its time limit nears.
    """

    def __init__(self, results: Path, quiet: bool, threads: int | None) -> None:
        self.results = results
        self.quiet = quiet
        self.threads = threads

    def __call__(self, tasks: list[Task]) -> list[TaskReport]:
        return run_tasks(tasks, results=self.results, quiet=self.quiet, threads=self.threads)

    def checkpoint(self, tasks: list[Task]) -> Any:
        """Resubmit the same runs: finished ones are skipped, the interrupted one resumes."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, tasks)


@dataclass(frozen=True)
class _Submission:
    job: Any  # a submitit Job
    cluster: str

    @property
    def label(self) -> str:
        return f"{self.cluster}:{self.job.job_id}"

    def done(self) -> bool:
        return bool(self.job.done())

    def reports(self) -> list[TaskReport]:
        return list(self.job.result())

    def cancel(self) -> None:
        self.job.cancel(check=False)


class SubmititBackend:
    """Submit batches of study runs as a job array (see the module docstring).

    Args:
        resources: The spec's ``executor`` section.
        folder: Where submitit keeps each job's pickles and logs (``%j`` is added).
        results: The study's results folder (absolute: array tasks may start elsewhere).
        name: The Slurm job name.
        quiet: No progress output from the tasks.

    Raises:
        inpaintssl.config.ConfigError: submitit is not installed.
    """

    def __init__(
        self, resources: ExecutorSpec, *, folder: Path, results: Path, name: str, quiet: bool
    ) -> None:
        submitit = import_optional("submitit", extra="slurm", purpose="--executor slurm", error=ConfigError)
        try:
            self.job_folders = folder / "%j"
            self.executor = submitit.AutoExecutor(
                folder=self.job_folders,
                cluster=resources.cluster,
                slurm_max_num_timeout=resources.max_requeues,
                local_max_num_timeout=resources.max_requeues,
            )
        except RuntimeError as exc:  # submitit: no srun/sbatch on this machine
            raise ConfigError(
                f"--executor slurm cannot submit from this machine ({exc}); run it on a Slurm login "
                "node, or try the spec out here with --cluster local (submitit's local executor)"
            ) from exc
        self.executor.update_parameters(**slurm_parameters(resources, name=name))
        self.batch = _Batch(results, quiet, resources.cpus_per_task)
        self.cluster = resources.cluster

    def submit(self, batches: Sequence[Sequence[Task]]) -> Sequence[_Submission]:
        """Submit one array, one task per batch."""
        jobs = self.executor.map_array(self.batch, [list(b) for b in batches])
        return [_Submission(job, self.cluster) for job in jobs]

    def close(self) -> None:
        """Remove the empty, unexpanded ``%j`` folder submitit leaves; the jobs belong to Slurm."""
        with contextlib.suppress(OSError):  # not empty, or already gone: not ours to delete
            self.job_folders.rmdir()
