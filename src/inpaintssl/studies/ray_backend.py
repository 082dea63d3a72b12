"""``--executor ray``: study runs as Ray tasks on an existing Ray cluster (or a local instance).

Each batch of runs is one Ray task (``num_cpus`` = ``cpus_per_task`` or 1, ``num_gpus`` =
``gpus_per_task``, ``memory`` = ``mem_gb`` GiB when given; Ray sets ``CUDA_VISIBLE_DEVICES`` for
it). A task whose worker process or node dies is retried by Ray up to ``max_requeues`` times, and
the retry resumes the interrupted run from its checkpoint. The driver connects with
``ray.init(address=...)`` (``ray_address`` in the spec or ``--ray-address``; without one, Ray
connects to ``RAY_ADDRESS`` or a Ray instance already running on this machine, else starts a local
one) and disconnects at the end if it was the one that connected. The results folder must be
shared by the cluster's nodes, like the run folders.

Ray waits without end for a task that no node can run, so the driver refuses, before it submits
anything, a request that no node of the cluster meets (:func:`check_fits`); and an address Ray
cannot connect to is a one-line error that names ``--ray-address`` or ``RAY_ADDRESS``, whichever
gave it (Ray's own advice names flags of its own command line).

Example:
    >>> from inpaintssl.studies.spec import ExecutorSpec
    >>> ray_options(ExecutorSpec(gpus_per_task=1, max_requeues=2))
    {'num_cpus': 1, 'num_gpus': 1, 'max_retries': 2}
    >>> ray_options(ExecutorSpec(mem_gb=1.5))["memory"]  # bytes, which Ray reserves on a node
    1610612736
    >>> node = {"Alive": True, "NodeManagerAddress": "10.0.0.7", "Resources": {"CPU": 8.0}}
    >>> check_fits(ExecutorSpec(gpus_per_task=1), [node])
    Traceback (most recent call last):
    ...
    inpaintssl.config.ConfigError: no node of the Ray cluster can run one task of the study: ...
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inpaintssl.config import ConfigError
from inpaintssl.extras import import_optional
from inpaintssl.signals import handler_kept
from inpaintssl.studies.spec import ExecutorSpec
from inpaintssl.studies.worker import Task, TaskReport, run_tasks

__all__ = ["RayBackend", "check_fits", "ray_options"]

_CONNECT_TIMEOUT_S = 10.0
"""How long a ``host:port`` address may take to accept a connection before it counts as unreachable."""


def ray_options(resources: ExecutorSpec) -> dict[str, Any]:
    """``ray.remote`` options of one task for the spec's resources."""
    options: dict[str, Any] = {
        "num_cpus": resources.cpus_per_task or 1,
        "num_gpus": resources.gpus_per_task,
        "max_retries": resources.max_requeues,
    }
    if resources.mem_gb is not None:
        options["memory"] = int(resources.mem_gb * 2**30)
    return options


def check_fits(resources: ExecutorSpec, nodes: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a task request that no live node of ``nodes`` (``ray.nodes()``) can meet.

    Raises:
        inpaintssl.config.ConfigError: Naming the flags and spec fields of the request, what was
            asked and the most that one node offers.
    """
    options = ray_options(resources)
    asked = {"CPU": float(options["num_cpus"]), "GPU": float(options["num_gpus"])}
    asked["memory"] = float(options.get("memory", 0))
    live = [node.get("Resources", {}) for node in nodes if node.get("Alive", True)]
    if any(all(float(offer.get(key, 0.0)) >= need for key, need in asked.items()) for offer in live):
        return
    most = {key: max((float(offer.get(key, 0.0)) for offer in live), default=0.0) for key in asked}
    raise ConfigError(
        "no node of the Ray cluster can run one task of the study: it asks for "
        f"{asked['CPU']:g} CPU (--cpus-per-task, executor.cpus_per_task), {asked['GPU']:g} GPU "
        f"(--gpus-per-task, executor.gpus_per_task) and {asked['memory'] / 2**30:g} GiB of memory "
        f"(--mem-gb, executor.mem_gb); expected at most what one of its {len(live)} node(s) has: "
        f"{most['CPU']:g} CPU, {most['GPU']:g} GPU, {most['memory'] / 2**30:.1f} GiB on the largest. "
        "Ask for less, or add a node that has it (--ray-address picks the cluster)"
    )


def _host_and_port(address: str | None) -> tuple[str, int] | None:
    """The host and port of a cluster's ``host:port`` address; ``None`` for other forms.

    ``auto`` and ``local`` are found or started on this machine (Ray fails at once when it cannot),
    and a ``ray://`` client's connection times out by itself: those are left to Ray.

    Example:
        >>> _host_and_port("10.0.0.7:6379"), _host_and_port("[::1]:6379"), _host_and_port("ray://head:10001")
        (('10.0.0.7', 6379), ('::1', 6379), None)
    """
    if address is None or "://" in address or address.strip() in ("auto", "local"):
        return None
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


def _check_reachable(address: str | None, *, timeout_s: float = _CONNECT_TIMEOUT_S) -> None:
    """Refuse a ``host:port`` address where nothing accepts a connection.

    ``ray.init`` retries such an address without end (``Failed to get cluster ID from GCS server``),
    so the driver hung instead of saying that the address is wrong.

    Raises:
        inpaintssl.config.ConfigError: Naming ``--ray-address`` (or ``RAY_ADDRESS`` where no
            address is given), the address and why it failed.
    """
    # Without an address ray.init reads RAY_ADDRESS, and retries an unreachable one just as long.
    from_environment = address is None and bool(os.environ.get("RAY_ADDRESS", "").strip())
    where = _host_and_port(os.environ["RAY_ADDRESS"] if from_environment else address)
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=timeout_s).close()
    except OSError as exc:  # refused, no route, unknown host, timed out
        reason = str(exc) or type(exc).__name__
        raise _connection_error(
            OSError(f"nothing accepted a connection at {where[0]} port {where[1]} ({reason})"), address
        ) from exc


def _connection_error(exc: Exception, address: str | None) -> ConfigError:
    """``ray.init``'s failure as a one-line error naming inpaintssl's flag and spec field."""
    # Ray's first line may advise its own `--address` flag, which `experiment run` does not have.
    said = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    said = said.replace("`--address` flag or ", "").replace("--address flag or ", "").rstrip(".")
    environment = os.environ.get("RAY_ADDRESS", "").strip()
    if address is None and environment:
        where = (
            f"to connect to the Ray cluster at the RAY_ADDRESS environment variable's {environment!r} "
            "(no --ray-address or executor.ray_address given)"
        )
    elif address is None:
        where = (
            "to start a local Ray instance (no --ray-address or executor.ray_address given, and no "
            "RAY_ADDRESS)"
        )
    else:
        where = f"to connect to the Ray cluster at --ray-address (executor.ray_address) {address!r}"
    return ConfigError(
        f"--executor ray failed {where}: {said}; expected the address of a running cluster (`ray "
        "status` on its head node says it; `auto` finds one started on this machine with "
        "`ray start --head`), or no address for a local instance"
    )


@dataclass(frozen=True)
class _Submission:
    ray: Any  # the imported module
    ref: Any  # the task's ObjectRef

    @property
    def label(self) -> str:
        return f"ray:{self.ref.task_id().hex()[:16]}"

    def done(self) -> bool:
        finished, _ = self.ray.wait([self.ref], timeout=0)
        return bool(finished)

    def reports(self) -> list[TaskReport]:
        return list(self.ray.get(self.ref))

    def cancel(self) -> None:
        self.ray.cancel(self.ref, force=True)


class RayBackend:
    """Run batches of study runs as Ray tasks (see the module docstring).

    Args:
        resources: The spec's ``executor`` section (``ray_address`` picks the cluster).
        results: The study's results folder (absolute).
        quiet: No progress output from the tasks.

    Raises:
        inpaintssl.config.ConfigError: Ray is not installed, ``ray.init`` failed (the message
            names ``--ray-address``), or no node of the cluster can run one task
            (:func:`check_fits`).
    """

    def __init__(self, resources: ExecutorSpec, *, results: Path, quiet: bool) -> None:
        # Imported by name, so ray is typed loosely: its stubs describe remote functions without
        # arguments only.
        ray: Any = import_optional("ray", extra="ray", purpose="--executor ray", error=ConfigError)
        self.ray = ray
        # A caller that connected already (a notebook, a test) keeps its connection.
        self.owns_connection = not ray.is_initialized()
        if self.owns_connection:
            _check_reachable(resources.ray_address)
            # ray.init installs its own SIGTERM handler (a stack dump, exit 15); the command
            # line's hands the submitted runs back and exits 143, as --executor slurm does.
            try:
                with handler_kept(signal.SIGTERM):
                    ray.init(address=resources.ray_address, include_dashboard=False, log_to_driver=not quiet)
            except Exception as exc:  # ConnectionError, RuntimeError, a client timeout: all the same here
                raise _connection_error(exc, resources.ray_address) from exc
        try:
            check_fits(resources, ray.nodes())
        except ConfigError:
            if self.owns_connection:
                ray.shutdown()
            raise
        self.remote = ray.remote(run_tasks).options(**ray_options(resources))
        self.results = results
        self.quiet = quiet
        self.threads = resources.cpus_per_task or 1

    def submit(self, batches: Sequence[Sequence[Task]]) -> Sequence[_Submission]:
        """Start one Ray task per batch."""
        return [
            _Submission(
                self.ray,
                self.remote.remote(list(b), results=self.results, quiet=self.quiet, threads=self.threads),
            )
            for b in batches
        ]

    def close(self) -> None:
        """Disconnect from Ray if this backend connected."""
        if self.owns_connection:
            self.ray.shutdown()
