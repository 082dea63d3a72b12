"""Per-run set-up shared by pretraining and fine-tuning: device, process group, seeding, run folder.

Example:
    >>> from inpaintssl.config import RunConfig
    >>> import tempfile, pathlib
    >>> ctx = RunContext.start(RunConfig(output_dir=pathlib.Path(tempfile.mkdtemp()) / "r", device="cpu"))
    >>> ctx.device.type, ctx.dist.world_size
    ('cpu', 1)
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inpaintssl.config import RunConfig
from inpaintssl.models.cpu_convolution import using_cpu_weight_gradient
from inpaintssl.training.device import autocast_dtype, resolve_device, use_channels_last
from inpaintssl.training.distributed import DistInfo, init_distributed, shutdown_distributed
from inpaintssl.training.host_memory import keep_freed_host_memory

__all__ = ["RunContext", "RunFolderInUseError", "run_session", "seed_everything"]


class RunFolderInUseError(FileExistsError):
    """A new run would overwrite a folder that already holds a run."""


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; with ``deterministic``, also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace for reproducible GEMMs on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


@dataclass(frozen=True)
class RunContext:
    """Where and how this process trains."""

    run: RunConfig
    device: torch.device
    dist: DistInfo
    amp_dtype: torch.dtype | None

    @property
    def channels_last(self) -> bool:
        """Whether this run uses the ``channels_last`` memory format on its device."""
        return use_channels_last(self.device, self.run.channels_last)

    @property
    def run_dir(self) -> Path:
        """The run folder."""
        return self.run.output_dir

    @classmethod
    def start(cls, run: RunConfig) -> RunContext:
        """Resolve the device, join a torchrun group if any, seed, and claim the run folder.

        Raises:
            RunFolderInUseError: ``run.output_dir`` already holds checkpoints and ``resume`` is off.
        """
        info = DistInfo.from_env()
        device = resolve_device(run.device, local_rank=info.local_rank if info.distributed else None)
        info = init_distributed(device)
        seed_everything(run.seed, deterministic=run.deterministic)
        checkpoints = run.output_dir / "checkpoints"
        if not run.resume and checkpoints.exists() and any(checkpoints.iterdir()):
            raise RunFolderInUseError(
                f"run.output_dir={str(run.output_dir)!r} already holds a run (found {checkpoints}); "
                "pass --resume (run.resume=true) to continue it, or choose another run.output_dir"
            )
        if info.is_main:
            run.output_dir.mkdir(parents=True, exist_ok=True)
        return cls(run=run, device=device, dist=info, amp_dtype=autocast_dtype(device, run.amp))


@contextlib.contextmanager
def run_session(run: RunConfig) -> Iterator[RunContext]:
    """Start a run (:meth:`RunContext.start`) and always leave the process group afterwards.

    Inside the session the U-Net's CPU weight gradients use ``run.cpu_weight_gradient``; on the
    CPU, ``run.reuse_host_memory: true`` also tunes the process's allocator (which stays tuned).
    """
    ctx = RunContext.start(run)
    if ctx.device.type == "cpu" and run.reuse_host_memory:
        keep_freed_host_memory()
    try:
        with using_cpu_weight_gradient(run.cpu_weight_gradient):
            yield ctx
    finally:
        shutdown_distributed()
