"""The in-plane spacing range a run records and the check a new scan's spacing goes through."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.data.spacing import SPACING_TOLERANCE, SpacingRange, training_spacing
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.data.views import ConcatSlices, FitToSize, ImagesOnly, Subset, select_volumes
from inpaintssl.data.volumes import VolumeSliceDataset, nifti_dataset

millimetres = st.floats(min_value=0.05, max_value=20.0, allow_nan=False)
pairs = st.lists(st.tuples(millimetres, millimetres), min_size=1, max_size=20)


@given(pairs)
def test_every_slice_fits_the_range_of_its_set(spacings: list[tuple[float, float]]) -> None:
    seen = SpacingRange.of(spacings)
    assert all(seen.fits(s, tolerance=0.0) for s in spacings)
    assert all(seen.fits((b, a), tolerance=0.0) for a, b in spacings)  # rows and columns swapped
    assert seen.smallest[0] <= seen.smallest[1] and seen.largest[0] <= seen.largest[1]
    assert seen.smallest[0] == min(min(p) for p in spacings)
    assert seen.largest[1] == max(max(p) for p in spacings)
    assert SpacingRange.from_json(seen.to_json()) == seen


@given(pairs, st.floats(min_value=1.01, max_value=10.0))
def test_a_scan_beyond_the_tolerance_does_not_fit(spacings: list[tuple[float, float]], factor: float) -> None:
    seen = SpacingRange.of(spacings)
    beyond = (1.0 + SPACING_TOLERANCE) * factor
    assert not seen.fits((seen.largest[0] * beyond, seen.largest[1] * beyond))
    assert not seen.fits((seen.smallest[0] / beyond, seen.smallest[1] / beyond))
    within = 1.0 + SPACING_TOLERANCE * 0.99
    assert seen.fits((seen.largest[0] * within, seen.largest[1] * within))
    assert seen.fits((seen.smallest[0] / within, seen.smallest[1] / within))


def test_hand_worked_range_and_description() -> None:
    # Sorted pairs (0.7, 0.7), (0.9, 1.2), (0.75, 0.8): per axis, the least and the most.
    seen = SpacingRange.of([(0.7, 0.7), (1.2, 0.9), (0.8, 0.75)])
    assert (seen.smallest, seen.largest) == ((0.7, 0.7), (0.9, 1.2))
    assert seen.describe() == "0.7 x 0.7 to 0.9 x 1.2 mm"
    assert SpacingRange.of([(0.3125, 0.3125)]).describe() == "0.312 x 0.312 mm"
    # The finer axis may reach 0.9 * 1.2 = 1.08 mm, the coarser 1.2 * 1.2 = 1.44; down to 0.7 / 1.2.
    assert seen.fits((1.3, 1.07)) and not seen.fits((1.3, 1.09)) and not seen.fits((1.0, 1.45))
    assert seen.fits((0.59, 0.59)) and not seen.fits((0.57, 0.59))


@pytest.mark.parametrize(
    "value",
    [{"smallest": [1.0]}, {"smallest": [1.0, 1.0], "largest": [0.0, 1.0]}, {"small": 1}, [1.0, 2.0], None],
)
def test_a_damaged_record_is_refused_with_what_was_found(value: object) -> None:
    with pytest.raises(ValueError, match=r"in_plane_spacing_mm=.*expected \{'smallest': \[a, b\]"):
        SpacingRange.from_json(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("spacing", [(0.0, 1.0), (-1.0, 1.0), (math.inf, 1.0), (math.nan, 1.0)])
def test_spacing_must_be_positive_and_finite(spacing: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="expected positive, finite millimetres"):
        SpacingRange.of([(1.0, 1.0), spacing])
    with pytest.raises(ValueError, match="no slice spacing"):
        SpacingRange.of([])


class _Spaced(SyntheticShapes):
    """Synthetic slices whose items state ``spacing`` (no ``slice_spacing``: items are read)."""

    def __init__(self, spacing: tuple[float, float, float], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stated = spacing
        self.reads = 0

    def __getitem__(self, index: int) -> dict[str, object]:
        self.reads += 1
        item = dict(super().__getitem__(index))
        item["spacing"] = torch.tensor(self.stated, dtype=torch.float64)
        return item


def test_training_spacing_of_a_concatenation_resized() -> None:
    fine = _Spaced((0.5, 0.5, 2.0), num_images=6, size=(16, 16))
    coarse = _Spaced((0.8, 1.0, 2.0), num_images=6, size=(16, 16))
    both = ConcatSlices([fine, coarse], names=["fine", "coarse"])
    assert training_spacing(both) == SpacingRange((0.5, 0.5), (0.8, 1.0), by_axis=True)
    # Resized 16 -> 8 pixels a side: every pixel covers twice the length.
    assert training_spacing(FitToSize(both, (8, 8), mode="resize")) == SpacingRange(
        (1.0, 1.0), (1.6, 2.0), by_axis=True
    )
    fine.reads = 0
    assert training_spacing(fine, limit=3) == SpacingRange((0.5, 0.5), (0.5, 0.5), by_axis=True)
    assert fine.reads == 3  # a dataset that cannot tell its spacing is read at most `limit` times
    assert training_spacing(Subset(fine, [])) is None  # an empty set has no range


class _Unspaced(SyntheticShapes):
    def __getitem__(self, index: int) -> dict[str, object]:
        item = dict(super().__getitem__(index))
        del item["spacing"]
        return item


def test_a_dataset_without_usable_spacing_records_none() -> None:
    # Recording the spacing must never fail a run: a plugin that states none gets no check.
    assert training_spacing(_Unspaced(num_images=3, size=(8, 8))) is None
    assert training_spacing(_Spaced((0.0, 1.0, 1.0), num_images=3, size=(8, 8))) is None


def _nifti_cases(root: Path, spacings: list[float], *, slices: int = 1) -> VolumeSliceDataset:
    """One ``16 x 16 x slices`` NIfTI per entry of ``spacings`` (its in-plane mm; NIfTI stores float32,
    so the tests give ones float32 holds exactly), ``case00``, ``case01``, ..."""
    rng = np.random.default_rng(0)
    for i, mm in enumerate(spacings):
        image = rng.normal(size=(16, 16, slices)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.diag([mm, mm, 3.0, 1.0])), root / f"case{i:02d}.nii")
    return nifti_dataset(split="train", labelled=False, cases={"train": "case*.nii"}, root=root)


def test_every_volume_that_tells_its_spacing_counts_whatever_the_limit(tmp_path: Path) -> None:
    # Ten cases, the second at 0.5 mm, the others at 0.75: 4 of 10 items evenly spaced are 0, 3, 6, 9.
    cases = _nifti_cases(tmp_path, [0.75, 0.5, *[0.75] * 8])
    assert training_spacing(cases, limit=4) == SpacingRange((0.5, 0.5), (0.75, 0.75), by_axis=True)
    # Through views: the cases but the first, resized 16 -> 4 pixels a side (4 times the length).
    resized = FitToSize(
        ImagesOnly(select_volumes(cases, [f"case{i:02d}" for i in range(1, 10)], what="t")),
        (4, 4),
        mode="resize",
    )
    assert training_spacing(resized, limit=4) == SpacingRange((2.0, 2.0), (3.0, 3.0), by_axis=True)
    # Beside a source that cannot tell, items are read: `limit` of them, spread evenly, as before.
    plugin = _Spaced((0.25, 0.375, 2.0), num_images=6, size=(16, 16))
    both = ConcatSlices([ImagesOnly(cases), ImagesOnly(plugin)], names=["nifti", "plugin"])
    plugin.reads = 0  # building the views read it
    assert training_spacing(both, limit=2) == SpacingRange(
        (0.25, 0.375), (0.75, 0.75), by_axis=True
    )  # items 0, 15
    assert plugin.reads == 1


def test_every_slice_is_covered_without_reading_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every slice is asked for its spacing, through a resizing view; no item is read for it.
    cases = _nifti_cases(tmp_path, [0.625, 0.875, 0.5], slices=50)
    view = FitToSize(Subset(cases, list(range(len(cases)))), (32, 32), mode="resize")

    def unread(self: VolumeSliceDataset, index: int) -> None:
        raise AssertionError(f"item {index} read")

    monkeypatch.setattr(VolumeSliceDataset, "__getitem__", unread)
    assert training_spacing(view, limit=2) == SpacingRange((0.25, 0.25), (0.4375, 0.4375), by_axis=True)
