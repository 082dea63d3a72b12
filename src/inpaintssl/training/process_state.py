"""Snapshot and restore the process-wide settings a run changes, so a caller's process is left as found.

A run seeds every random generator, may switch on deterministic kernels (a torch flag, cuDNN
flags, ``CUBLAS_WORKSPACE_CONFIG``) and may pick a CUDA device. Those are globals: a notebook
that called :func:`inpaintssl.pretrain` would otherwise keep them, and its next ``torch.rand``
would replay the run's seed. :func:`preserved_process_state` puts each one back on exit, also
when the run raises.

Not restored: glibc's allocator thresholds that ``run.reuse_host_memory`` sets
(:func:`~inpaintssl.training.host_memory.keep_freed_host_memory`), because ``mallopt`` cannot
read back their adaptive defaults; that option is documented as lasting for the process.

Example:
    >>> before = torch.are_deterministic_algorithms_enabled()
    >>> with preserved_process_state():
    ...     torch.use_deterministic_algorithms(not before)
    >>> torch.are_deterministic_algorithms_enabled() == before
    True
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["ENV_VARIABLES", "ProcessState", "preserved_process_state"]

ENV_VARIABLES = ("CUBLAS_WORKSPACE_CONFIG",)
"""Environment variables a run may set (deterministic cuBLAS needs a fixed workspace)."""


@dataclass(frozen=True)
class ProcessState:
    """The process-wide settings a run may change, as they were when captured."""

    deterministic: bool
    deterministic_warn_only: bool
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    environ: dict[str, str | None]
    num_threads: int
    matmul_precision: str
    python_rng: Any
    numpy_rng: Any
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None
    cuda_device: int | None

    @classmethod
    def capture(cls) -> ProcessState:
        """Read every setting now (CUDA ones only when CUDA is already initialised: reading them
        would otherwise initialise it)."""
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
        return cls(
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
            environ={name: os.environ.get(name) for name in ENV_VARIABLES},
            num_threads=torch.get_num_threads(),
            matmul_precision=torch.get_float32_matmul_precision(),
            python_rng=random.getstate(),
            numpy_rng=np.random.get_state(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if cuda else None,
            cuda_device=torch.cuda.current_device() if cuda else None,
        )

    def restore(self) -> None:
        """Put every captured setting back."""
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        if (deterministic, warn_only) != (self.deterministic, self.deterministic_warn_only):
            # Only when changed: the setter imports torch's compiler stack (seconds in a fresh process).
            torch.use_deterministic_algorithms(self.deterministic, warn_only=self.deterministic_warn_only)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        for name, value in self.environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        torch.set_float32_matmul_precision(self.matmul_precision)
        random.setstate(self.python_rng)
        np.random.set_state(self.numpy_rng)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        if self.cuda_device is not None:
            torch.cuda.set_device(self.cuda_device)


@contextlib.contextmanager
def preserved_process_state() -> Iterator[ProcessState]:
    """Capture the process-wide settings, run the block, then restore them (also on error)."""
    state = ProcessState.capture()
    try:
        yield state
    finally:
        state.restore()
