"""Data-parallel helpers for ``torchrun`` (DistributedDataParallel, gloo on CPU, nccl on CUDA).

A process started by ``torchrun`` sees ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and
``LOCAL_WORLD_SIZE`` (the processes on its node); everything else runs as a single process with
world size 1. Only rank 0 writes files.

The reductions, :func:`broadcast_buffers` and :func:`barrier` are collectives when a process group
exists (every rank must call them, in the same order) and the identity, or a no-op, for a single
process.

Example:
    >>> info = DistInfo.from_env({})
    >>> info.world_size, info.is_main
    (1, True)
    >>> DistInfo.from_env({"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"})
    DistInfo(rank=5, local_rank=1, world_size=8, local_world_size=4)
"""

from __future__ import annotations

import gc
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from inpaintssl.signals import sigterm_ends_at_once

__all__ = [
    "DistInfo",
    "all_gather_object",
    "all_reduce_max",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "group_joined",
    "init_distributed",
    "settle_last_collective",
    "shutdown_distributed",
    "use_sync_batchnorm",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a data-parallel job.

    Attributes:
        rank: The process's rank in the job.
        local_rank: Its rank on its node (its GPU under ``run.device: auto``).
        world_size: Processes in the job.
        local_world_size: Processes on this process's node, itself included: they share its
            host memory (:mod:`~inpaintssl.training.memory_check`).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 owns the run folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistInfo:
        """Read torchrun's variables (defaults: a single process).

        A launcher that sets ``WORLD_SIZE`` but not ``LOCAL_WORLD_SIZE`` (torchrun always sets
        both) is taken to run one process per node, so its ``LOCAL_RANK``, if set, must be 0.

        Raises:
            ValueError: A variable is not a whole number or out of range, ``WORLD_SIZE`` is
                above 1 without ``RANK``, or ``LOCAL_RANK`` is above 0 without
                ``LOCAL_WORLD_SIZE``. The message names the variable and what it holds.

        Example:
            >>> DistInfo.from_env({"RANK": "2", "WORLD_SIZE": "2"})
            Traceback (most recent call last):
            ...
            ValueError: environment variable RANK=2 is out of range (expected a rank of WORLD_SIZE=2 ...
        """
        env = os.environ if env is None else env
        world_size = _env_int(env, "WORLD_SIZE", default=1, low=1)
        if world_size > 1 and "RANK" not in env:
            # Defaulting to 0 made every such process rank 0: each waited in the rendezvous
            # for ranks that never came.
            raise ValueError(
                f"environment variable WORLD_SIZE={world_size} is set but RANK is not: start the "
                f"processes with torchrun, which sets RANK, LOCAL_RANK, WORLD_SIZE and "
                "LOCAL_WORLD_SIZE for each, or unset WORLD_SIZE to run one process"
            )
        rank = _env_int(env, "RANK", default=0, low=0, high=world_size, of="WORLD_SIZE")
        local_world_size = _env_int(env, "LOCAL_WORLD_SIZE", default=1, low=1, high=world_size + 1)
        counted = "LOCAL_WORLD_SIZE" in env
        local_rank = _env_int(
            env,
            "LOCAL_RANK",
            default=0,
            low=0,
            high=local_world_size if counted else world_size,
            of="LOCAL_WORLD_SIZE" if counted else "WORLD_SIZE",
        )
        if local_rank > 0 and not counted:
            # One process per node is the assumption without LOCAL_WORLD_SIZE; a LOCAL_RANK above 0
            # says the node runs more, and the memory check would count one where they all allocate.
            raise ValueError(
                f"environment variable LOCAL_RANK={local_rank} is set but LOCAL_WORLD_SIZE is not: at "
                f"least {local_rank + 1} processes share this node, and without their number each "
                "would judge the node's memory as its own. Start the processes with torchrun, which "
                "sets both, or set LOCAL_WORLD_SIZE to the processes per node (under Slurm, "
                "SLURM_NTASKS_PER_NODE)"
            )
        return cls(rank=rank, local_rank=local_rank, world_size=world_size, local_world_size=local_world_size)


def _env_int(
    env: Mapping[str, str], name: str, *, default: int, low: int, high: int | None = None, of: str = ""
) -> int:
    """``env[name]`` as a whole number in ``[low, high)`` (``default`` when unset).

    ``of`` names the variable ``high`` comes from (``high`` is its value, or its default).
    """
    launch = "; check the launch command (torchrun sets it for each process)"
    text = env.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={text!r} is not a whole number (expected one of at least "
            f"{low}){launch}"
        ) from None
    if low <= value and (high is None or value < high):
        return value
    if high is None:
        expected = f"at least {low}"
    else:
        expected = f"{low}" if high - 1 == low else f"{low} to {high - 1}"
        if of:
            unset = "" if of in env else f"; {of} is unset, so one"
            expected = f"a rank of {of}={high} processes{unset}: {expected}"
        else:
            expected = f"{expected}: at most WORLD_SIZE={high - 1}, the processes of the whole job"
    raise ValueError(f"environment variable {name}={value} is out of range (expected {expected}){launch}")


def group_joined() -> bool:
    """Whether this process is in a process group now (its own, or one a run joined).

    Example:
        >>> group_joined()
        False
    """
    return dist.is_available() and dist.is_initialized()


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun prepared (no-op for a single process)."""
    info = DistInfo.from_env()
    if info.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        with sigterm_ends_at_once():
            dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def shutdown_distributed(
    *, error: BaseException | None = None, caller_error: BaseException | None = None
) -> None:
    """Leave the process group if this process joined one, after freeing what the run left behind.

    A run that stopped with an error (a non-finite loss, which every rank raises) leaves its
    trainer, model, optimiser and tensors to the error's traceback and to reference cycles, which
    only the garbage collector frees. Left to the interpreter's exit, they were freed after the
    group was gone, and gloo aborted the process now and then ("terminate called without an active
    exception", SIGABRT) after the run's error had been reported: in about one run in 30 of the
    non-finite loss test on a loaded 2-core machine (PyTorch 2.13), none in 160 with a collection
    first. So this first clears the variables of the frames ``error`` has left
    (:func:`traceback.clear_frames`; the traceback still names every line), then collects, then
    leaves. End a script that joined the group itself with this rather than
    ``dist.destroy_process_group()``.

    Args:
        error: The error the run is stopping with, if it is stopping with one. The errors it was
            raised while handling (its ``__cause__`` and ``__context__``, in turn) are cleared too.
        caller_error: The error the caller was already handling when the run began
            (``sys.exc_info()[1]`` then). The walk along ``error``'s chain stops there, so a run
            started inside an ``except`` block leaves the caller's error, and the variables its
            frames held, as they were.

    Example:
        >>> shutdown_distributed()  # no process group: nothing to leave
    """
    if not group_joined():
        return
    seen: set[int] = set()
    while error is not None and error is not caller_error and id(error) not in seen:
        seen.add(id(error))
        # Frames still running (the caller's) refuse to be cleared and keep their variables.
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__
    gc.collect()
    dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity for a single process)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of a tensor over ranks (identity for a single process)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def broadcast_buffers(module: nn.Module, *, src: int = 0) -> None:
    """Give every rank rank ``src``'s buffers (BatchNorm running statistics; no-op for one process).

    DistributedDataParallel broadcasts rank 0's buffers before each training forward, but each
    rank then updates them from its own batch: after an epoch's last step every rank holds other
    running statistics, and rank 0's are the ones its checkpoints save.
    """
    if dist.is_available() and dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)


def use_sync_batchnorm(model: nn.Module) -> Callable[[], None]:
    """Swap ``model``'s BatchNorm layers for :class:`~torch.nn.SyncBatchNorm` in place; return the undo.

    A SyncBatchNorm layer normalises with the statistics of the whole global batch, all-gathered
    from every rank in each training forward, so its running statistics are the same on every
    rank (plain BatchNorm under DDP sees only its rank's share). It shares the original layer's
    parameters and buffers (not copies): the optimiser, checkpoints (same ``state_dict`` keys)
    and the layer put back by the undo see every update. ``model`` itself must not be a
    BatchNorm layer. In eval mode, or without a process group, SyncBatchNorm computes what
    BatchNorm does; in training mode under a process group PyTorch (2.13) runs it on GPUs only.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
        >>> batchnorm = net[1]
        >>> undo = use_sync_batchnorm(net)
        >>> type(net[1]).__name__, net[1].weight is batchnorm.weight
        ('SyncBatchNorm', True)
        >>> undo()
        >>> net[1] is batchnorm
        True
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                synced: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(child)  # type: ignore[no-untyped-call]
                parent.add_module(name, synced)
                swapped.append((parent, name, child))

    def undo() -> None:
        for parent, name, child in reversed(swapped):
            parent.add_module(name, child)
        swapped.clear()

    return undo


def broadcast_object(value: Any, *, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (a picklable object; ``value`` itself for one process).

    Example:
        >>> broadcast_object({"error": None})
        {'error': None}
    """
    if dist.is_available() and dist.is_initialized():
        box = [value]
        dist.broadcast_object_list(box, src=src)
        settle_last_collective()
        return box[0]
    return value


def settle_last_collective() -> None:
    """A barrier on gloo, met by every rank after the last collective before they all stop the same way.

    On PyTorch 2.3 (gloo) ``destroy_process_group`` hangs at random when the ranks leave straight
    from another collective: an object collective (``all_gather_object``,
    ``broadcast_object_list``; a run every rank refuses after the memory check's gather, or after
    rank 0's pre-flight verdict) or the all-reduce after which every rank raises
    :class:`~inpaintssl.training.loop.NonFiniteLossError`. A barrier as the last collective
    made that rare (the non-finite loss test: 3 hangs in 4 runs before, none in 6 after), though
    not impossible: PyTorch's open issue #75097 is the same teardown hang, and once it came after
    this barrier. PyTorch 2.13 never hangs; on NCCL this is not called.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "gloo":
        dist.barrier()


def all_gather_object(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank; ``[value]`` for one process.

    Example:
        >>> all_gather_object("fits")
        ['fits']
    """
    if dist.is_available() and dist.is_initialized():
        found: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(found, value)
        settle_last_collective()
        return found
    return [value]


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
