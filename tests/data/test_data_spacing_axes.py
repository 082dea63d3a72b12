"""The training spacing range kept per axis (rows, columns), and scans compared axis by axis.

Hand-worked expectations: a run trained at rows 1 mm x columns 2 mm, and scans at rows 2 x
columns 1 (the same anatomy squashed along one axis, stretched along the other) or rows 2 x
columns 0.5. Sorted, both used to count as fitting or be resampled to the training grid's
transpose.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.data.spacing import SpacingRange, same_axis_order, training_spacing
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.data.views import FitToSize

TRAINED = SpacingRange.of([(1.0, 2.0)], by_axis=True)


def test_a_scan_with_rows_and_columns_swapped_does_not_fit_where_its_axes_are_known() -> None:
    assert TRAINED.fits((1.0, 2.0)) and TRAINED.fits((1.1, 2.3))
    assert not TRAINED.fits((2.0, 1.0))
    # Where nothing says how its axes lie, either way round fits.
    assert TRAINED.fits((2.0, 1.0), axes_known=False) and not TRAINED.fits((2.0, 2.0), axes_known=False)


def test_each_axis_is_resampled_to_its_own_range() -> None:
    assert TRAINED.nearest((2.0, 0.5)) == (1.0, 2.0)  # not the transpose (2.0, 1.0)
    assert TRAINED.nearest((2.0, 1.0)) == (1.0, 2.0)
    wider = SpacingRange.of([(1.0, 2.0), (1.2, 2.4)], by_axis=True)
    assert wider.nearest((1.1, 2.2)) == (1.1, 2.2)  # inside: as is
    assert wider.nearest((2.2, 1.1)) == (1.2, 2.0)  # each axis clamped to its own rows' and columns'
    # Axes unknown: the way round that moves the scan less (its rows 2 -> 2, columns 0.5 -> 1).
    assert TRAINED.nearest((2.0, 0.5), axes_known=False) == (2.0, 1.0)
    assert TRAINED.nearest((0.9, 2.5), axes_known=False) == (1.0, 2.0)


def test_the_record_says_it_is_per_axis_and_an_older_one_stays_sorted() -> None:
    record = TRAINED.to_json()
    assert record == {"smallest": [1.0, 2.0], "largest": [1.0, 2.0], "axes": "rows_columns"}
    assert SpacingRange.from_json(record) == TRAINED
    swapped = SpacingRange.from_json({"smallest": [2.0, 1.0], "largest": [2.0, 1.0], "axes": "rows_columns"})
    assert (swapped.smallest, swapped.by_axis) == ((2.0, 1.0), True)
    # A run from before: which axis was finer is unknown, so a swapped scan still fits.
    older = SpacingRange.from_json({"smallest": [2.0, 1.0], "largest": [2.0, 1.0]})
    assert (older.smallest, older.by_axis) == ((1.0, 2.0), False)
    assert older.fits((2.0, 1.0)) and older.fits((1.0, 2.0))
    assert older.nearest((2.0, 0.5)) == (2.0, 1.0)  # finer to finer, as before
    with pytest.raises(ValueError, match=r"in_plane_spacing_mm=.*'axes': 'rows_columns'"):
        SpacingRange.from_json({"smallest": [1.0, 2.0], "largest": [1.0, 2.0], "axes": "sorted"})


millimetres = st.floats(min_value=0.05, max_value=20.0, allow_nan=False)


@given(st.lists(st.tuples(millimetres, millimetres), min_size=1, max_size=20))
def test_every_slice_fits_the_per_axis_range_of_its_set(spacings: list[tuple[float, float]]) -> None:
    seen = SpacingRange.of(spacings, by_axis=True)
    assert all(seen.fits(s, tolerance=0.0) for s in spacings)
    assert seen.smallest == (min(r for r, _ in spacings), min(c for _, c in spacings))
    assert seen.largest == (max(r for r, _ in spacings), max(c for _, c in spacings))
    assert all(seen.nearest(s) == s for s in spacings)
    assert SpacingRange.from_json(seen.to_json()) == seen


def test_training_records_rows_and_columns_as_the_network_sees_them() -> None:
    # 16 x 16 slices at rows 0.5 x columns 1 mm, resized to 8 x 4: rows 1 mm, columns 4 mm.
    slices = SyntheticShapes(num_images=4, size=(16, 16))
    slices.slice_spacing = lambda index: (0.5, 1.0)  # type: ignore[attr-defined]
    assert training_spacing(slices) == SpacingRange((0.5, 1.0), (0.5, 1.0), by_axis=True)
    resized = FitToSize(slices, (8, 4), mode="resize")
    assert training_spacing(resized) == SpacingRange((1.0, 4.0), (1.0, 4.0), by_axis=True)


def test_axes_are_known_where_every_training_orientation_lists_the_world_axes_alike() -> None:
    assert same_axis_order("RAS", ["RAS"]) and same_axis_order("LPS", ["RAS", "LAS"])  # flips: alike
    assert not same_axis_order("ARS", ["RAS"])  # rows and columns swapped
    assert not same_axis_order("RAS", ["RAS", "ARS"])  # training mixed both
    assert not same_axis_order(None, ["RAS"]) and not same_axis_order("RAS", [])
