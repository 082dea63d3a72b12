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

__all__ = ["launch_thread_pool", "njit_cached"]

_F = TypeVar("_F", bound=Callable[..., Any])


def njit_cached(func: _F) -> _F:
    """Compile ``func`` in nopython mode with an on-disk cache.

    There is deliberately no ``parallel=True`` variant. Numba's OpenMP threading layer shares the
    process's ``libgomp`` with PyTorch: once its pool has started, a fork-started DataLoader worker
    that runs a parallel kernel is killed ("fork() called from a process already using GNU OpenMP"),
    and the pool's start sets PyTorch's thread count to ``NUMBA_NUM_THREADS``. The kernels here
    are memory-bound (context restoration's block swap costs about one copy of the batch), so a
    second thread bought nothing to pay for that.
    """
    return cast(_F, numba.njit(cache=True)(func))


def launch_thread_pool() -> None:
    """Does nothing; kept so that code calling it keeps working.

    It started Numba's thread pool before a run, so that the pool, started later by a parallel
    corruption kernel, could not change PyTorch's thread count mid-run. No corruption kernel runs
    on Numba's threads any more (see :func:`njit_cached`), so there is no pool to start, and
    starting it would only make every fork-started DataLoader worker that corrupts a batch die.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> launch_thread_pool()
        >>> torch.get_num_threads() == before
        True
    """
