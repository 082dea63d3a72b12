"""Numba kernels that turn patch corners into masks, swap permutations and swapped images (sec. 2.4).

``union_mask`` and ``swap_index`` run once per mask-bank entry (hundreds of entries, each with up
to about a thousand patches at K = 8), where a Python loop over patches would dominate the build.
``swap_blocks`` is context restoration's CPU hot path: a plane copy plus the swapped pixels,
where a full-image gather also reads an ``(N, H*W)`` int64 index and pays a cache miss per pixel.
Private; use :mod:`inpaintssl.corruption.masks`.

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

__all__ = ["swap_blocks", "swap_index", "union_mask"]


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


@njit_cached
def swap_blocks(
    source: NDArray[np.integer],
    out: NDArray[np.integer],
    corners: NDArray[np.int64],
    offsets: NDArray[np.int64],
    choice: NDArray[np.int64],
    patch: int,
) -> None:
    """Write into ``out`` the ``source`` images with entry ``choice[n]``'s pairs swapped in image ``n``.

    Args:
        source: ``(N, C, H, W)`` array, any layout; an integer view of float data works because
            swapping only moves bits.
        out: Array of the same shape and dtype, overwritten.
        corners: ``(M, 2)`` corners of all bank entries, concatenated.
        offsets: ``(E + 1,)``; entry ``e`` owns ``corners[offsets[e]:offsets[e + 1]]``.
        choice: ``(N,)`` entry per image.
        patch: Patch side ``K``.
    """
    channels = out.shape[1]
    # One thread: the swap is memory-bound (two threads were slower than one), and Numba's
    # thread pool would kill fork-started DataLoader workers and reset PyTorch's thread count.
    for flat in range(out.shape[0] * channels):
        n = flat // channels
        channel = flat % channels
        entry = choice[n]
        # Copy one plane, then swap inside it while it is still in cache: about the cost of
        # the copy alone, where copying the whole batch first sends the swaps back to memory.
        plane = out[n, channel]
        original = source[n, channel]
        for r in range(plane.shape[0]):
            plane[r, :] = original[r, :]
        for i in range(offsets[entry], offsets[entry + 1] - 1, 2):
            r1 = corners[i, 0]
            c1 = corners[i, 1]
            r2 = corners[i + 1, 0]
            c2 = corners[i + 1, 1]
            for dr in range(patch):
                # Row slices are contiguous runs that Numba vectorises, ~10x faster than
                # indexing single pixels of the 4-D array.
                first = plane[r1 + dr, c1 : c1 + patch]
                second = plane[r2 + dr, c2 : c2 + patch]
                for dc in range(patch):
                    held = first[dc]
                    first[dc] = second[dc]
                    second[dc] = held
