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

__all__ = ["njit_cached", "njit_cached_parallel"]

_F = TypeVar("_F", bound=Callable[..., Any])


def njit_cached(func: _F) -> _F:
    """Compile ``func`` in nopython mode with an on-disk cache."""
    return cast(_F, numba.njit(cache=True)(func))


def njit_cached_parallel(func: _F) -> _F:
    """As :func:`njit_cached`, with ``numba.prange`` loops spread over Numba's thread pool."""
    return cast(_F, numba.njit(cache=True, parallel=True)(func))
