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

More ``sbatch`` options (``--account``, ``--qos``, ``--constraint``, ...) come from the spec's
``executor.slurm_options`` or ``--slurm-option KEY=VALUE``, checked by :func:`check_slurm_options`.

When ``sbatch`` refuses an array, :meth:`SubmititBackend.submit` raises
:class:`~inpaintssl.studies.executors.SubmissionError` (:func:`slurm_refusal`): *transient* for a
busy or unreachable controller or a submission limit, which the driver tries again later, else
with the flag and spec field to change (a partition, account or QOS this cluster refuses).

Example:
    >>> from inpaintssl.studies.spec import ExecutorSpec
    >>> sorted(slurm_parameters(ExecutorSpec(partition="gpu", gpus_per_task=1), name="x"))[:3]
    ['gpus_per_node', 'name', 'slurm_partition']
    >>> "gpus_per_node" in slurm_parameters(ExecutorSpec(), name="x")  # a CPU task asks for no GPU
    False
    >>> extra = ExecutorSpec(slurm_options={"account": "proj42"})  # as #SBATCH --account=proj42
    >>> slurm_parameters(extra, name="x")["slurm_additional_parameters"]
    {'account': 'proj42'}
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from inpaintssl.config import ConfigError
from inpaintssl.extras import import_optional
from inpaintssl.studies.executors import SubmissionError
from inpaintssl.studies.spec import ExecutorSpec, StudySpec
from inpaintssl.studies.worker import Task, TaskReport, run_tasks

__all__ = [
    "SubmititBackend",
    "check_slurm_options",
    "slurm_job_name",
    "slurm_parameters",
    "slurm_refusal",
]

# sbatch's long options that take a value and that nothing else here sets (sbatch(1), Slurm 23).
_SBATCH_OPTIONS = frozenset(
    {
        "account", "acctg-freq", "batch", "begin", "clusters", "cluster-constraint", "comment",
        "constraint", "container", "contiguous", "core-spec", "cores-per-socket", "cpu-freq",
        "deadline", "delay-boot", "distribution", "exclude", "exclusive", "export", "extra",
        "extra-node-info", "gpu-bind", "gpu-freq", "gpus-per-socket", "gres", "gres-flags", "hint",
        "licenses", "mail-type", "mail-user", "mcs-label", "mem-bind", "mem-per-gpu", "mincpus",
        "network", "nice", "nodelist", "power", "prefer", "priority", "profile", "qos",
        "reservation", "sockets-per-node", "spread-job", "switches", "thread-spec",
        "threads-per-core", "time-min", "tmp", "wckey",
    }
)  # fmt: skip
# Options this module sets itself, with what sets them instead.
_MANAGED_OPTIONS = MappingProxyType(
    {
        "partition": "--partition (executor.partition)",
        "time": "--timeout-min (executor.timeout_min)",
        "mem": "--mem-gb (executor.mem_gb)",
        "cpus-per-task": "--cpus-per-task (executor.cpus_per_task)",
        "gpus-per-node": "--gpus-per-task (executor.gpus_per_task)",
        "gpus": "--gpus-per-task (executor.gpus_per_task)",
        "gpus-per-task": "--gpus-per-task (executor.gpus_per_task)",
        "array": "--array-parallelism (executor.array_parallelism)",
        "job-name": "the study's job name (slurm_job_name), which `scancel --name` finds",
        "output": "submitit (its logs under <output>/slurm)",
        "error": "submitit (its logs under <output>/slurm)",
        "open-mode": "submitit (its logs under <output>/slurm)",
        "signal": "submitit (its requeue before the time limit)",
        "nodes": "the executor (one node per array task)",
        "ntasks": "the executor (one task per array task)",
        "ntasks-per-node": "the executor (one task per array task)",
    }
)


def check_slurm_options(options: Mapping[str, str], *, source: str) -> dict[str, str]:
    """The ``sbatch`` options ``options`` (long name -> value), checked.

    Args:
        options: Long option names without dashes (``account``), each with a non-empty value.
        source: Where they were given, for the message (``--slurm-option``, ``executor.slurm_options``).

    Returns:
        The options as given.

    Raises:
        inpaintssl.config.ConfigError: A name that is not one of sbatch's long options with a
            value (with close matches), one that a flag of its own sets, or an empty value.

    Example:
        >>> check_slurm_options({"account": "proj42"}, source="--slurm-option")
        {'account': 'proj42'}
        >>> check_slurm_options({"acount": "proj42"}, source="--slurm-option")
        Traceback (most recent call last):
        ...
        inpaintssl.config.ConfigError: --slurm-option 'acount': not an sbatch option ...
    """
    for key, value in options.items():
        if key in _MANAGED_OPTIONS:
            raise ConfigError(f"{source} {key!r}: set by {_MANAGED_OPTIONS[key]}; give it there instead")
        if key not in _SBATCH_OPTIONS:
            close = difflib.get_close_matches(key.lstrip("-").replace("_", "-"), sorted(_SBATCH_OPTIONS))
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{source} {key!r}: not an sbatch option this executor passes on; {hint}expected the "
                "long name of one that takes a value, without dashes (account, qos, constraint, "
                "reservation, exclude, ...)"
            )
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source} {key!r}: expected a value (as in {key}=VALUE); found {value!r}")
    return dict(options)


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
        # "#SBATCH --<key>=<value>" lines of their own; submitit writes them last.
        "slurm_additional_parameters": dict(resources.slurm_options) or None,
    }
    if resources.setup:
        params["slurm_setup"] = list(resources.setup)
        params["local_setup"] = list(resources.setup)
    return {key: value for key, value in params.items() if value is not None}


def _refused_option(resources: ExecutorSpec, key: str) -> str:
    value = resources.slurm_options.get(key)
    given = f"is {value!r}" if value is not None else "is not given (the cluster's default)"
    return f"--slurm-option {key}=... (executor.slurm_options.{key}) {given}"


# What sbatch's refusals name, most specific first, with the flag and spec field to change.
_PERMANENT: tuple[tuple[re.Pattern[str], Callable[[ExecutorSpec], str]], ...] = (
    (
        re.compile(r"account", re.IGNORECASE),
        lambda r: (
            _refused_option(r, "account") + "; expected an account you may charge "
            "(`sacctmgr show associations user=$USER`)"
        ),
    ),
    (
        re.compile(r"qos", re.IGNORECASE),
        lambda r: _refused_option(r, "qos") + "; expected a QOS of your account (`sacctmgr show qos`)",
    ),
    (
        re.compile(r"partition", re.IGNORECASE),
        lambda r: (
            f"--partition (executor.partition) is {r.partition!r}; expected a partition of this "
            "cluster that you may use (`sinfo --summarize` lists them)"
        ),
    ),
    (
        re.compile(r"feature|constraint", re.IGNORECASE),
        lambda r: (
            _refused_option(r, "constraint") + "; expected features of this cluster's nodes "
            "(`sinfo -o '%P %f'`)"
        ),
    ),
    (
        re.compile(r"gres|gpu", re.IGNORECASE),
        lambda r: (
            f"--gpus-per-task (executor.gpus_per_task) is {r.gpus_per_task}; expected a "
            "partition with GPUs (--partition) or 0"
        ),
    ),
    (
        re.compile(r"time limit", re.IGNORECASE),
        lambda r: (
            f"--timeout-min (executor.timeout_min) is {r.timeout_min}; expected at most the "
            "partition's time limit (`sinfo -o '%P %l'`)"
        ),
    ),
    (
        re.compile(r"memory|node configuration|cpu count", re.IGNORECASE),
        lambda r: (
            f"--gpus-per-task, --cpus-per-task and --mem-gb (executor.gpus_per_task, "
            f"cpus_per_task, mem_gb) are {r.gpus_per_task}, {r.cpus_per_task}, {r.mem_gb}; expected "
            "what one node of the partition has (`sinfo -o '%P %c %m %G'`)"
        ),
    ),
)
# A busy or unreachable controller, or a submission limit: the same array may pass later.
_TRANSIENT = re.compile(
    r"timed out|unable to contact|connection refused|temporarily unavailable|try again|"
    r"slurm_receive_msg|zero bytes were transmitted|transport endpoint|job submit limit|maxsubmit|"
    r"killed for an unknown reason",
    re.IGNORECASE,
)


def slurm_refusal(stderr: str, resources: ExecutorSpec) -> SubmissionError:
    """The error of an array that ``sbatch`` refused with ``stderr``.

    Example:
        >>> stderr = "sbatch: error: invalid partition specified: gpux"
        >>> error = slurm_refusal(stderr, ExecutorSpec(partition="gpux"))
        >>> error.transient, str(error).split("; ")[1]
        (False, "--partition (executor.partition) is 'gpux'")
        >>> slurm_refusal("sbatch: error: Socket timed out on send/recv operation", ExecutorSpec()).transient
        True
    """
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    reason = "; ".join(re.sub(r"^sbatch: error:\s*", "", line) for line in lines) or "no reason given"
    if _TRANSIENT.search(reason):
        return SubmissionError(f"sbatch refused the study's job array: {reason}", transient=True)
    hint = next((make(resources) for pattern, make in _PERMANENT if pattern.search(reason)), None)
    if hint is None:
        hint = (
            "check the spec's executor section and its flags (--partition, --gpus-per-task, "
            "--cpus-per-task, --mem-gb, --timeout-min, --slurm-option)"
        )
    return SubmissionError(f"sbatch refused the study's job array: {reason}; {hint}", transient=False)


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
        inpaintssl.config.ConfigError: submitit is not installed, no Slurm here (``cluster: slurm``),
            or an ``executor.slurm_options`` entry is not one to pass on (:func:`check_slurm_options`).
    """

    def __init__(
        self, resources: ExecutorSpec, *, folder: Path, results: Path, name: str, quiet: bool
    ) -> None:
        submitit = import_optional("submitit", extra="slurm", purpose="--executor slurm", error=ConfigError)
        # Before the machine's check: a mistyped option is told on a workstation too.
        check_slurm_options(resources.slurm_options, source="executor.slurm_options")
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
        self.resources = resources
        self.refused: tuple[type[BaseException], ...] = (
            submitit.core.utils.FailedJobError,
            submitit.core.utils.FailedSubmissionError,
            OSError,
        )

    def submit(self, batches: Sequence[Sequence[Task]]) -> Sequence[_Submission]:
        """Submit one array, one task per batch.

        Raises:
            inpaintssl.studies.executors.SubmissionError: ``sbatch`` refused it (see
                :func:`slurm_refusal`); nothing was queued.
        """
        said = io.StringIO()
        try:
            # submitit prints sbatch's complaint itself before raising it: the error says it once.
            with contextlib.redirect_stderr(said):
                jobs = self.executor.map_array(self.batch, [list(b) for b in batches])
        except self.refused as exc:
            raise slurm_refusal(str(exc) or said.getvalue(), self.resources) from exc
        return [_Submission(job, self.cluster) for job in jobs]

    def close(self) -> None:
        """Remove the empty, unexpanded ``%j`` folder submitit leaves; the jobs belong to Slurm."""
        with contextlib.suppress(OSError):  # not empty, or already gone: not ours to delete
            self.job_folders.rmdir()
