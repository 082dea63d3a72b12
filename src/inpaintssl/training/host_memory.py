"""Keep freed host memory in the process so CPU training steps stop page-faulting.

Why: glibc's ``malloc`` serves every block above its mmap threshold (128 KiB to 32 MiB, adaptive)
with a fresh ``mmap`` and hands it back to the kernel on ``free``. A U-Net step at 256x256 and batch
9 allocates and frees dozens of 5-150 MB activations and gradients, so every step touches all of
them again as new pages: on the project's 2-core machine a ReLU backward over a 75 MB tensor took
39 ms that way and 5 ms with the memory reused, and a whole training step of the U-Net ran
1.25-1.33x faster (MONAI's BasicUNet: 1.70-1.96x; ``benchmarks/README.md``). PyTorch's CPU tuning
guide fixes this by preloading jemalloc or tcmalloc; :func:`keep_freed_host_memory` gets the same
effect from the C library already loaded, through ``mallopt``: no mmap for large blocks and no
trimming of the heap's top.

The cost is memory: the process keeps its heap until it exits, and blocks freed in one size are
not always reusable in another, so the heap grows past the bare peak. A 256x256 pretraining run
of the U-Net peaked at 19-29% more resident memory with it (``benchmarks/bench_system.py``), which
is why ``run.reuse_host_memory``, the run option that applies it to CPU runs, is off by default.
The setting is process-wide and applies on Linux with glibc only.

Example:
    Not run as a doctest, since it would tune the test process's own allocator for good;
    ``tests/training/test_training_host_memory.py`` runs it in a fresh process.

    >>> import platform
    >>> applied = keep_freed_host_memory()  # doctest: +SKIP
    >>> applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["keep_freed_host_memory"]

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1


def keep_freed_host_memory() -> bool:
    """Make glibc keep freed large blocks for reuse instead of unmapping them (process-wide).

    Sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to their largest value, the effect of
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in the environment, which only work
    when set before the process starts. Calling it again changes nothing.

    Returns:
        ``True`` when both settings were applied; ``False`` on other platforms or C libraries,
        where nothing is changed.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _INT_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
