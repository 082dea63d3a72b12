"""The staggered lattices behind the Poisson-disc fallback, against an independent construction.

``_zigzag_lattices`` and ``_two_row_lattices`` are rebuilt here from their docstrings alone:
integer spacings found by counting up (no floating-point square roots), exact integer
distances. A few small cases are also worked out by hand.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from inpaintssl.corruption.samplers import _two_row_lattices, _zigzag_lattices


def smallest_spacing(patch_size: int) -> int:
    """The least integer ``s`` with ``s**2 >= 2 K**2``: the Poisson-disc distance, rounded up."""
    spacing = 1
    while spacing * spacing < 2 * patch_size * patch_size:
        spacing += 1
    return spacing


def zigzag(span_rows: int, span_cols: int, patch_size: int) -> list[list[tuple[int, int]]]:
    """For each within-row spacing ``b`` in ``[s, 2s]``: rows ``a`` apart, every other shifted by ``b // 2``.

    ``a`` is the least positive integer with the next row's nearest point ``(a, b // 2)`` and the
    row after next ``(2a, 0)`` at least ``K*sqrt(2)`` away.
    """
    min_sq = 2 * patch_size * patch_size
    spacing = smallest_spacing(patch_size)
    found = []
    for across in range(spacing, 2 * spacing + 1):
        half = across // 2
        rows = 1
        while rows * rows + half * half < min_sq or (2 * rows) ** 2 < min_sq:
            rows += 1
        row_starts = range(0, span_rows + 1, rows)
        found.append(
            [(r, c) for i, r in enumerate(row_starts) for c in range(half * (i % 2), span_cols + 1, across)]
        )
    return found


def two_rows(span_rows: int, span_cols: int, patch_size: int) -> list[list[tuple[int, int]]]:
    """Rows 0 and ``R``, the second shifted by ``b // 2``, for each ``b`` keeping them ``K*sqrt(2)`` apart."""
    min_sq = 2 * patch_size * patch_size
    spacing = smallest_spacing(patch_size)
    found = []
    for across in range(spacing, 2 * spacing + 1):
        half = across // 2
        if span_rows >= 1 and span_rows * span_rows + half * half >= min_sq:
            found.append(
                [(r, c) for i, r in enumerate((0, span_rows)) for c in range(half * i, span_cols + 1, across)]
            )
    return found


def as_lists(lattices: list[np.ndarray]) -> list[list[tuple[int, int]]]:
    for corners in lattices:
        assert corners.dtype == np.int64 and corners.ndim == 2 and corners.shape[1] == 2
    return [[(int(r), int(c)) for r, c in corners.tolist()] for corners in lattices]


GRID = list(itertools.product((0, 1, 4, 7, 20, 33, 90), (0, 3, 11, 64, 129), (1, 2, 3, 5, 8, 13, 32)))


@pytest.mark.parametrize(("span_rows", "span_cols", "patch_size"), GRID)
def test_the_lattices_are_the_staggered_packings_their_docstrings_describe(
    span_rows: int, span_cols: int, patch_size: int
) -> None:
    assert as_lists(_zigzag_lattices(span_rows, span_cols, patch_size)) == zigzag(
        span_rows, span_cols, patch_size
    )
    assert as_lists(_two_row_lattices(span_rows, span_cols, patch_size)) == two_rows(
        span_rows, span_cols, patch_size
    )


def test_small_lattices_worked_out_by_hand() -> None:
    # K = 2: 2 K**2 = 8, so the least integer spacing is 3 (9 >= 8); b runs over 3..6.
    # b = 3: half 1; rows a with a**2 + 1 >= 8 and (2a)**2 >= 8: a = 3.
    # b = 4: half 2; a**2 + 4 >= 8: a = 2.  b = 5: half 2; a = 2.  b = 6: half 3; a**2 + 9 >= 8 and
    # (2a)**2 >= 8: a = 2.
    zig = as_lists(_zigzag_lattices(4, 6, 2))
    assert zig == [
        [(0, 0), (0, 3), (0, 6), (3, 1), (3, 4)],
        [(0, 0), (0, 4), (2, 2), (2, 6), (4, 0), (4, 4)],
        [(0, 0), (0, 5), (2, 2), (4, 0), (4, 5)],
        [(0, 0), (0, 6), (2, 3), (4, 0), (4, 6)],
    ]
    # Two rows R = 4 apart: 16 + half**2 >= 8 for every b, the second row shifted by b // 2.
    assert as_lists(_two_row_lattices(4, 6, 2)) == [
        [(0, 0), (0, 3), (0, 6), (4, 1), (4, 4)],
        [(0, 0), (0, 4), (4, 2), (4, 6)],
        [(0, 0), (0, 5), (4, 2)],
        [(0, 0), (0, 6), (4, 3)],
    ]
    # R = 1 with K = 2: 1 + half**2 >= 8 needs half >= 3, so only b = 6 of 3..6.
    assert as_lists(_two_row_lattices(1, 6, 2)) == [[(0, 0), (0, 6), (1, 3)]]
    # A domain of one row holds no second row.
    assert _two_row_lattices(0, 6, 2) == []
