"""``polygon_mask`` against a point-by-point crossing-number test, hand-worked masks and invariants;
``mask_outlines`` by filling its outlines back and by Green's theorem.

The reference is W. R. Franklin's PNPOLY written out per pixel centre in plain Python: the
vectorised filler must agree with it on every pixel, centres on edges and vertices included.
Vertices on a grid of eighths of a pixel put many centres exactly on edges and vertices while
keeping every coordinate exact, so both are computed on the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inpaintssl.data.contours import mask_outlines, polygon_mask


def _pnpoly(polygon: np.ndarray, row: float, column: float) -> bool:
    inside = False
    n = len(polygon)
    for i in range(n):
        (ai, bi), (aj, bj) = polygon[i], polygon[i - 1]
        if (ai > row) != (aj > row) and column < (bj - bi) * (row - ai) / (aj - ai) + bi:
            inside = not inside
    return inside


def _reference(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for polygon in polygons:
        for r in range(shape[0]):
            for c in range(shape[1]):
                mask[r, c] ^= _pnpoly(polygon, float(r), float(c))
    return mask


_EIGHTHS = st.integers(-16, 12 * 8).map(lambda v: v / 8)
_POLYGON = st.lists(st.tuples(_EIGHTHS, _EIGHTHS), min_size=3, max_size=9).map(np.array)


@settings(max_examples=200, deadline=None)
@given(polygons=st.lists(_POLYGON, min_size=1, max_size=3))
def test_every_pixel_agrees_with_pnpoly(polygons: list[np.ndarray]) -> None:
    # Self-intersecting, partly outside the slice, several overlapping: all allowed.
    shape = (11, 9)
    assert np.array_equal(polygon_mask(polygons, shape), _reference(polygons, shape))


@settings(max_examples=100, deadline=None)
@given(polygon=_POLYGON, start=st.integers(0, 8))
def test_neither_the_first_vertex_nor_the_direction_matters(polygon: np.ndarray, start: int) -> None:
    shape = (11, 9)
    expected = polygon_mask([polygon], shape)
    assert np.array_equal(polygon_mask([np.roll(polygon, start, axis=0)], shape), expected)
    assert np.array_equal(polygon_mask([polygon[::-1]], shape), expected)


@settings(max_examples=100, deadline=None)
@given(
    cut=st.lists(st.tuples(st.integers(1, 7 * 8).map(lambda v: v / 8)), min_size=1, max_size=5),
    top=st.integers(-4, 3).map(lambda v: v / 2),
    bottom=st.integers(14, 20).map(lambda v: v / 2),
)
def test_polygons_tiling_a_rectangle_give_each_pixel_to_exactly_one(
    cut: list[tuple[float]], top: float, bottom: float
) -> None:
    # A rectangle split by a polyline from its top edge to its bottom edge, through the
    # interior: the two halves share that edge, centres on it included.
    left, right = 0.0, 8.0
    rows = np.linspace(top, bottom, len(cut) + 2)[1:-1]
    path = [(top, 4.0), *[(r, c[0]) for r, c in zip(rows, cut)], (bottom, 4.0)]
    west = np.array([(top, left), *path, (bottom, left)])
    east = np.array([*path, (bottom, right), (top, right)])
    shape = (12, 10)
    whole = polygon_mask([np.array([(top, left), (top, right), (bottom, right), (bottom, left)])], shape)
    halves = polygon_mask([west], shape), polygon_mask([east], shape)
    assert not (halves[0] & halves[1]).any()
    assert np.array_equal(halves[0] | halves[1], whole)


@pytest.mark.parametrize("error", [1e-10, -1e-10, 3e-8])
def test_rounding_of_millimetres_does_not_move_centres_across_edges(error: float) -> None:
    # Corners on pixel centres, as contours traced through centres have: every border centre is
    # decided by the half-open rule, and 4.9999999999 for 5 must be decided as 5.
    exact = np.array([(1.0, 1.0), (1.0, 5.0), (5.0, 5.0), (5.0, 1.0)])
    assert np.array_equal(polygon_mask([exact + error], (7, 7)), polygon_mask([exact], (7, 7)))
    assert polygon_mask([exact], (7, 7)).sum() == 16  # rows 1-4, columns 1-4


def test_a_polygon_inside_another_is_a_hole() -> None:
    outer = np.array([(0.5, 0.5), (0.5, 6.5), (6.5, 6.5), (6.5, 0.5)])
    inner = np.array([(2.5, 2.5), (2.5, 4.5), (4.5, 4.5), (4.5, 2.5)])
    expected = np.zeros((8, 8), dtype=bool)
    expected[1:7, 1:7] = True
    expected[3:5, 3:5] = False
    assert np.array_equal(polygon_mask([outer, inner], (8, 8)), expected)


def test_hand_worked_triangle() -> None:
    # Vertices (0, 0), (4, 0), (4, 4). Rows r = 0..3 meet the edge b = 0 and the hypotenuse b = a,
    # crossing at columns 0 and r; a centre is inside when an odd number of crossings lie after it:
    # columns 0 <= c < r (the crossing at 0 is not after c = 0; the one at r is not after c = r).
    # Row 4 holds only the horizontal edge, which no row crosses, and ends the half-open ranges.
    triangle = np.array([(0.0, 0.0), (4.0, 0.0), (4.0, 4.0)])
    expected = np.zeros((6, 6), dtype=bool)
    for r in range(4):
        expected[r, :r] = True
    assert np.array_equal(polygon_mask([triangle], (6, 6)), expected)


def test_area_approaches_the_polygons_area() -> None:
    # A disc of radius 40 pixels: pixel count within its perimeter's length of pi r^2.
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    disc = np.column_stack([50.3 + 40 * np.cos(angles), 49.7 + 40 * np.sin(angles)])
    polygon_area = 0.5 * abs(
        np.dot(disc[:, 0], np.roll(disc[:, 1], 1)) - np.dot(disc[:, 1], np.roll(disc[:, 0], 1))
    )
    count = int(polygon_mask([disc], (101, 101)).sum())
    assert abs(count - polygon_area) < 2 * np.pi * 40


def test_nothing_outside_the_slice_and_no_polygons_give_an_empty_mask() -> None:
    far = np.array([(20.0, 20.0), (20.0, 30.0), (30.0, 30.0)])
    assert not polygon_mask([far], (5, 5)).any()
    assert not polygon_mask([], (5, 5)).any()
    assert polygon_mask([], (5, 5)).shape == (5, 5)


@pytest.mark.parametrize(
    ("polygon", "message"),
    [
        (np.zeros((2, 2)), r"polygon 0 has shape \(2, 2\); expected \(n, 2\) vertices, n >= 3"),
        (np.zeros((4, 3)), r"polygon 0 has shape \(4, 3\)"),
        (np.array([(0.0, 0.0), (1.0, np.nan), (2.0, 0.0)]), r"polygon 0 has a vertex that is not finite"),
    ],
)
def test_bad_polygons_are_refused(polygon: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        polygon_mask([polygon], (4, 4))


_MASKS = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(lambda shape: arrays(bool, shape))


def _signed_area(polygon: np.ndarray) -> float:
    rows, columns = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(np.dot(rows, np.roll(columns, -1)) - np.dot(np.roll(rows, -1), columns))


@settings(max_examples=300, deadline=None)
@given(mask=_MASKS)
def test_outlines_fill_back_to_the_mask_and_enclose_its_area(mask: np.ndarray) -> None:
    outlines = mask_outlines(mask)
    assert np.array_equal(polygon_mask(outlines, mask.shape), mask)
    # Green's theorem: walked with the mask on their right (rows down), the outlines' signed areas
    # (in (row, column) order) sum to minus the pixel count; holes subtract.
    assert sum(_signed_area(o) for o in outlines) == pytest.approx(-float(mask.sum()))
    for outline in outlines:
        assert np.array_equal(outline % 1, np.full(outline.shape, 0.5))  # on pixel corners
        steps = np.roll(outline, -1, axis=0) - outline
        assert np.all((steps == 0).sum(axis=1) == 1)  # each step along one axis
        turns = (
            steps[:, 0] * np.roll(steps, -1, axis=0)[:, 1] - steps[:, 1] * np.roll(steps, -1, axis=0)[:, 0]
        )
        assert np.all(turns != 0)  # a vertex only where the outline turns


@settings(max_examples=100, deadline=None)
@given(mask=_MASKS)
def test_the_edges_walked_are_the_masks_boundary_each_once(mask: np.ndarray) -> None:
    padded = np.pad(mask, 1)
    boundary = int((padded[1:] != padded[:-1]).sum() + (padded[:, 1:] != padded[:, :-1]).sum())
    walked = sum(int(np.abs(np.roll(o, -1, axis=0) - o).sum()) for o in mask_outlines(mask))
    assert walked == boundary


def test_a_ring_is_an_outline_and_a_hole_walked_the_other_way() -> None:
    ring = np.zeros((6, 6), bool)
    ring[1:5, 1:5] = True
    ring[2:4, 2:4] = False
    outer, hole = mask_outlines(ring)
    assert outer.tolist() == [[0.5, 0.5], [0.5, 4.5], [4.5, 4.5], [4.5, 0.5]]
    assert hole.tolist() == [[1.5, 1.5], [3.5, 1.5], [3.5, 3.5], [1.5, 3.5]]
    assert _signed_area(outer) == -16 and _signed_area(hole) == 4


def test_pixels_touching_at_a_corner_keep_their_own_outlines() -> None:
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = mask[1, 1] = True
    outlines = mask_outlines(mask)
    assert [o.tolist() for o in outlines] == [
        [[-0.5, -0.5], [-0.5, 0.5], [0.5, 0.5], [0.5, -0.5]],
        [[0.5, 0.5], [0.5, 1.5], [1.5, 1.5], [1.5, 0.5]],
    ]


def test_an_empty_mask_has_no_outlines_and_a_volume_is_refused() -> None:
    assert mask_outlines(np.zeros((4, 5), bool)) == []
    with pytest.raises(ValueError, match=r"mask has shape \(2, 2, 2\); expected a 2-D slice"):
        mask_outlines(np.zeros((2, 2, 2), bool))
