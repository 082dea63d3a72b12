"""Numba kernels that turn patch corners into pixel masks and swap permutations (paper sec. 2.4).

They run once per mask-bank entry at bank-build time (hundreds of entries, each with up to about a
thousand patches at K = 8), where a Python loop over patches would dominate the build. Private;
use :func:`inpaintssl.corruption.masks.patch_union` and
:func:`inpaintssl.corruption.masks.swap_permutation`.

Each kernel fills a caller-owned ``out`` array, so a bank writes straight into its rows.

Example:
    >>> import numpy as np
    >>> out = np.empty((4, 4), dtype=bool)
    >>> union_mask(np.array([[0, 0], [1, 1]]), 2, out)
    >>> int(out.sum())
    7
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from inpaintssl.corruption._jit import njit_cached

__all__ = ["swap_index", "union_mask"]


@njit_cached
def union_mask(corners: NDArray[np.int64], patch: int, out: NDArray[np.bool_]) -> None:
    """Write into ``out`` ``(H, W)`` the union of the ``patch x patch`` squares at ``corners`` ``(N, 2)``."""
    out[:, :] = False
    for i in range(corners.shape[0]):
        row = corners[i, 0]
        col = corners[i, 1]
        out[row : row + patch, col : col + patch] = True


@njit_cached
def swap_index(corners: NDArray[np.int64], patch: int, out: NDArray[np.int32]) -> None:
    """Write into ``out`` ``(H, W)`` the gather index after swapping pairs ``(corners[2i], corners[2i+1])``.

    Swapping entries of an index map, one pair after another, keeps it a permutation even when a
    pair overlaps an earlier one.
    """
    width = out.shape[1]
    for r in range(out.shape[0]):
        for c in range(width):
            out[r, c] = r * width + c
    for i in range(0, corners.shape[0] - 1, 2):
        r1 = corners[i, 0]
        c1 = corners[i, 1]
        r2 = corners[i + 1, 0]
        c2 = corners[i + 1, 1]
        for dr in range(patch):
            for dc in range(patch):
                held = out[r1 + dr, c1 + dc]
                out[r1 + dr, c1 + dc] = out[r2 + dr, c2 + dc]
                out[r2 + dr, c2 + dc] = held
