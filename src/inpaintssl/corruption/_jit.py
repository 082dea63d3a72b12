"""A typed ``numba.njit(cache=True)`` decorator for the corruption kernels.

Numba ships no type information, so under ``mypy --strict`` a bare ``@numba.njit`` would make
every kernel untyped; this wrapper keeps the kernels' own annotations. ``cache=True`` stores the
compiled machine code next to the source (or in Numba's user cache when that is read-only), so
only the first import on a machine pays the compile time.

Kernels must live in a source file (Numba keys its cache on the file), so the example uses one:

Example:
    >>> import numpy as np
    >>> from inpaintssl.corruption._raster import union_mask  # decorated with @njit_cached
    >>> out = np.empty((4, 4), dtype=bool)
    >>> union_mask(np.array([[0, 0]]), 2, out)
    >>> int(out.sum())
    4
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import torch

__all__ = ["launch_thread_pool", "njit_cached", "njit_cached_parallel"]

_F = TypeVar("_F", bound=Callable[..., Any])


def njit_cached(func: _F) -> _F:
    """Compile ``func`` in nopython mode with an on-disk cache."""
    return cast(_F, numba.njit(cache=True)(func))


def njit_cached_parallel(func: _F) -> _F:
    """As :func:`njit_cached`, with ``numba.prange`` loops spread over Numba's thread pool."""
    return cast(_F, numba.njit(cache=True, parallel=True)(func))


def launch_thread_pool() -> None:
    """Start Numba's thread pool now, leaving PyTorch's thread count as it was.

    Numba's OpenMP threading layer shares the process's ``libgomp`` with PyTorch, and when its pool
    starts (at the first parallel kernel, e.g. a run's first corruption) it sets the thread count of
    both to ``NUMBA_NUM_THREADS``. A run would then compute with one thread count before its first
    corruption and another after, and a second run in the same process (a study worker's next
    run) with yet another: other summation orders, other bits. Started here, at a session's
    start, the pool leaves every run the thread count it began with.

    Example:
        >>> before = torch.get_num_threads()
        >>> launch_thread_pool()
        >>> torch.get_num_threads() == before
        True
    """
    threads = torch.get_num_threads()
    numba.get_num_threads()  # launches the pool, once per process
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
