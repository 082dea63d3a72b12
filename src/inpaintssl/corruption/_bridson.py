"""Numba kernels behind the patch samplers (paper sec. 2.4 and 2.5.2).

Two compiled kernels place square ``K x K`` patches by their integer top-left corners:

* :func:`bridson_corners` is Bridson's Poisson-disc algorithm (Bridson 2007, the paper's ref. 31)
  run directly on the integer corner lattice, so the minimum distance holds exactly for the
  corners that are returned (no rounding afterwards).
* :func:`random_corners` draws uniformly placed patches (optionally in non-overlapping pairs) until
  their union covers a target number of pixels.

Both seed Numba's own generator from an explicit ``seed`` argument, so the caller (which draws that
seed from a :class:`numpy.random.Generator`) fully controls reproducibility. These are private;
use :mod:`inpaintssl.corruption.samplers`.

Example:
    >>> corners = bridson_corners(480, 480, 32, 30, 2.0, False, 7)
    >>> corners.shape[1], corners.dtype.name
    (2, 'int64')
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from inpaintssl.corruption._jit import njit_cached

__all__ = ["bridson_corners", "random_corners"]


@njit_cached
def _is_far(
    grid: NDArray[np.int64], points: NDArray[np.int64], row: int, col: int, patch: int, min_dist_sq: int
) -> bool:
    # Cells are patch x patch, so a neighbour closer than patch * sqrt(2) is at most 2 cells away.
    grid_row = row // patch
    grid_col = col // patch
    for gr in range(max(grid_row - 2, 0), min(grid_row + 3, grid.shape[0])):
        for gc in range(max(grid_col - 2, 0), min(grid_col + 3, grid.shape[1])):
            other = grid[gr, gc]
            if other >= 0:
                dr = points[other, 0] - row
                dc = points[other, 1] - col
                if dr * dr + dc * dc < min_dist_sq:
                    return False
    return True


@njit_cached
def bridson_corners(
    max_row: int, max_col: int, patch: int, candidates: int, outer: float, boundary: bool, seed: int
) -> NDArray[np.int64]:
    """Maximal Poisson-disc set of corners in ``[0, max_row] x [0, max_col]``, spacing ``patch*sqrt(2)``.

    Args:
        max_row: Largest allowed corner row, ``H - K``.
        max_col: Largest allowed corner column, ``W - K``.
        patch: Patch side ``K``; also the background-grid cell side.
        candidates: Candidates tried around an active point before it retires.
        outer: Candidates fall in the annulus ``[d, outer * d]`` (uniform in area); values near 1
            pack tighter than Bridson's usual 2.
        boundary: Start at a random corner of the domain and move candidates that fall outside
            onto its edge instead of dropping them. Dense packings of small or narrow domains
            put points on the edges (e.g. K=16 pairs in 32x32 fit only on a diagonal), which
            uniform candidates almost never hit exactly.
        seed: Seed for Numba's generator (``0 <= seed < 2**32``).

    Returns:
        ``(M, 2)`` int64 corners whose pairwise squared distances are all ``>= 2 * K**2``.
    """
    np.random.seed(seed)
    min_dist_sq = 2 * patch * patch
    radius = math.sqrt(min_dist_sq)
    grid = np.full((max_row // patch + 1, max_col // patch + 1), -1, dtype=np.int64)
    # Two integer corners in one K x K cell are at most (K-1)*sqrt(2) apart, so each cell holds one point.
    capacity = grid.shape[0] * grid.shape[1]
    points = np.empty((capacity, 2), dtype=np.int64)
    active = np.empty(capacity, dtype=np.int64)

    if boundary:
        row = max_row * np.random.randint(0, 2)
        col = max_col * np.random.randint(0, 2)
    else:
        row = np.random.randint(0, max_row + 1)
        col = np.random.randint(0, max_col + 1)
    points[0, 0] = row
    points[0, 1] = col
    grid[row // patch, col // patch] = 0
    active[0] = 0
    count = 1
    n_active = 1
    spread = outer * outer - 1.0
    while n_active > 0:
        slot = np.random.randint(0, n_active)
        base = active[slot]
        placed = False
        for _ in range(candidates):
            rho = radius * math.sqrt(1.0 + spread * np.random.random())
            theta = 2.0 * math.pi * np.random.random()
            row = round(points[base, 0] + rho * math.sin(theta))
            col = round(points[base, 1] + rho * math.cos(theta))
            if boundary:
                row = min(max(row, 0), max_row)
                col = min(max(col, 0), max_col)
            elif row < 0 or row > max_row or col < 0 or col > max_col:
                continue
            if _is_far(grid, points, row, col, patch, min_dist_sq):
                points[count, 0] = row
                points[count, 1] = col
                grid[row // patch, col // patch] = count
                active[n_active] = count
                count += 1
                n_active += 1
                placed = True
                break
        if not placed:
            n_active -= 1
            active[slot] = active[n_active]
    placed_points: NDArray[np.int64] = points[:count].copy()
    return placed_points


@njit_cached
def _far_count(start: int, patch: int, max_pos: int) -> tuple[int, int]:
    # Positions p in [0, max_pos] with |p - start| >= patch: a low run [0, start-patch] and a high run.
    low = start - patch + 1 if start >= patch else 0
    high = max_pos - (start + patch) + 1 if start + patch <= max_pos else 0
    return low, high


@njit_cached
def _far_pick(start: int, patch: int, low: int, index: int) -> int:
    return index if index < low else start + patch + (index - low)


@njit_cached
def _partner(row: int, col: int, patch: int, max_row: int, max_col: int) -> tuple[int, int]:
    """A uniform corner whose patch does not overlap the patch at ``(row, col)``; ``(-1, -1)`` if none."""
    rows_all = max_row + 1
    cols_all = max_col + 1
    row_low, row_high = _far_count(row, patch, max_row)
    col_low, col_high = _far_count(col, patch, max_col)
    rows_far = row_low + row_high
    cols_far = col_low + col_high
    # Non-overlapping means far in rows (any column) or near in rows but far in columns.
    first = rows_far * cols_all
    total = first + (rows_all - rows_far) * cols_far
    if total == 0:
        return -1, -1
    u = np.random.randint(0, total)
    if u < first:
        return _far_pick(row, patch, row_low, u // cols_all), u % cols_all
    u -= first
    near_start = max(row - patch + 1, 0)
    return near_start + u // cols_far, _far_pick(col, patch, col_low, u % cols_far)


@njit_cached
def _paint(covered: NDArray[np.bool_], row: int, col: int, patch: int) -> int:
    added = 0
    for r in range(row, row + patch):
        for c in range(col, col + patch):
            if not covered[r, c]:
                covered[r, c] = True
                added += 1
    return added


@njit_cached
def random_corners(
    height: int, width: int, patch: int, target: int, pairs: bool, max_draws: int, seed: int
) -> tuple[NDArray[np.int64], int]:
    """Uniform corners drawn until their union covers ``target`` pixels or ``max_draws`` is spent.

    Args:
        height: Image height ``H``.
        width: Image width ``W``.
        patch: Patch side ``K``.
        target: Pixels the union must cover.
        pairs: Draw patches two at a time; the second is uniform among corners whose patch does
            not overlap the first (pairs may overlap other pairs).
        max_draws: Bound on first-patch draws, so an unreachable target cannot hang.
        seed: Seed for Numba's generator (``0 <= seed < 2**32``).

    Returns:
        ``(M, 2)`` int64 corners (rows ``2i, 2i + 1`` form a pair when ``pairs``) and the covered
        pixel count, which is below ``target`` only when the draws ran out.
    """
    np.random.seed(seed)
    max_row = height - patch
    max_col = width - patch
    covered = np.zeros((height, width), dtype=np.bool_)
    per_draw = 2 if pairs else 1
    corners = np.empty((max_draws * per_draw, 2), dtype=np.int64)
    count = 0
    area = 0
    draws = 0
    while area < target and draws < max_draws:
        draws += 1
        row = np.random.randint(0, max_row + 1)
        col = np.random.randint(0, max_col + 1)
        if pairs:
            other_row, other_col = _partner(row, col, patch, max_row, max_col)
            if other_row < 0:
                continue
            corners[count + 1, 0] = other_row
            corners[count + 1, 1] = other_col
            area += _paint(covered, other_row, other_col, patch)
        corners[count, 0] = row
        corners[count, 1] = col
        area += _paint(covered, row, col, patch)
        count += per_draw
    return corners[:count].copy(), area
