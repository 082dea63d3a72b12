"""Clinical metrics against hand counts with anisotropic spacing, and their percent errors."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.metrics import (
    MEASUREMENT_SCALES,
    ClinicalComparison,
    absolute_error,
    clinical_errors,
    cross_sectional_area,
    mean_hu,
    mean_t2,
    percent_error,
    tissue_volume,
)

SKM_TEA_SPACING = (0.3125, 0.3125, 0.8)  # voxel volume 0.078125 mm^3


def test_volume_is_hand_count_times_anisotropic_voxel() -> None:
    mask = np.zeros((4, 5, 6), dtype=bool)
    mask[1, 2, :4] = True  # 4 voxels
    mask[3, 0, 5] = True  # 1 voxel
    mask[0, 4, 0:2] = True  # 2 voxels
    assert tissue_volume(mask, SKM_TEA_SPACING) == pytest.approx(7 * 0.078125)
    assert tissue_volume(mask.astype(np.float32), (1.0, 2.0, 3.0)) == pytest.approx(42.0)


def test_area_is_hand_count_times_anisotropic_pixel() -> None:
    mask = np.zeros((6, 8), dtype=np.uint8)
    mask[1:4, 2:6] = 1  # 3 x 4 = 12 pixels
    mask[5, 7] = 1  # 13
    assert cross_sectional_area(mask, (0.7, 0.9)) == pytest.approx(13 * 0.63)
    assert cross_sectional_area(torch.from_numpy(mask), [0.5, 0.5]) == pytest.approx(3.25)


@pytest.mark.parametrize(
    ("fn", "mask_shape", "spacing", "message"),
    [
        (tissue_volume, (3, 3, 3), (1.0, 1.0), r"3-D mask with 3 spacing values"),
        (tissue_volume, (3, 3), (1.0, 1.0, 1.0), r"found mask\.shape=\(3, 3\)"),
        (cross_sectional_area, (3, 3), (1.0, 1.0, 1.0), r"2-D mask with 2 spacing values"),
        (cross_sectional_area, (3, 3), (1.0, 0.0), r"spacing_mm must hold finite values > 0"),
        (tissue_volume, (3, 3, 3), (1.0, -1.0, 1.0), r"spacing_mm must hold finite values > 0"),
        # Not a sequence of numbers: the slice thickness alone, nothing, text, a unit mixed in.
        (tissue_volume, (3, 3, 3), 0.8, r"spacing_mm must be 3 voxel sizes in mm.*found 0\.8"),
        (tissue_volume, (3, 3, 3), None, r"spacing_mm must be 3 voxel sizes in mm.*found None"),
        (cross_sectional_area, (3, 3), "0.7", r"spacing_mm must be 2 voxel sizes in mm.*found '0\.7'"),
        (cross_sectional_area, (3, 3), (0.7, "0.7 mm"), r"spacing_mm must be 2 voxel sizes.*'0\.7 mm'"),
    ],
)
def test_spacing_and_dimensionality_are_validated(fn, mask_shape, spacing, message) -> None:
    with pytest.raises(ValueError, match=message):
        fn(np.ones(mask_shape, dtype=bool), spacing)


def test_a_volume_mask_without_its_class_axis_is_named_as_such() -> None:
    # An (X, Y, Z) mask read as K=X classes of (Y, Z) slices: the error spoke of a 2-D mask with
    # 2 spacing values, where the user gave a 3-D mask and 3 voxel sizes.
    mask = np.zeros((16, 16, 8), dtype=bool)
    mask[2:5, 2:5, 1:3] = True
    expected = (
        r"spacing_mm has 3 values for the 2 spatial axes of pred_onehot \(16, 16, 8\) \(its first axis "
        r"holds the K classes\); .* a 3-D mask without its class axis\? .*mask\[None\]"
    )
    with pytest.raises(ValueError, match=expected):
        clinical_errors(mask, mask, spacing_mm=SKM_TEA_SPACING)
    (row,) = clinical_errors(mask[None], mask[None], spacing_mm=SKM_TEA_SPACING)
    assert row.predicted == pytest.approx(3 * 3 * 2 * 0.3125 * 0.3125 * 0.8)


def test_slices_given_an_items_three_spacing_values_are_told_to_give_the_in_plane_two() -> None:
    # (K, H, W) CT slices with a dataset item's (row, column, thickness) spacing: the hint named
    # only mask[None], which then measured the K slices as one class's volume, without an error.
    masks = np.zeros((4, 8, 8), dtype=bool)
    masks[0, :2, :], masks[1, 3, 3], masks[2, 4, 4], masks[3, 6:, :] = True, True, True, True
    spacing = (0.7, 0.8, 5.0)
    with pytest.raises(ValueError, match=r"give the in-plane two, e\.g\. item\['spacing'\]\[:2\]") as told:
        clinical_errors(masks, masks, spacing_mm=spacing)
    assert "mask[None]" in str(told.value)  # the other reading, a 3-D mask, is still named
    rows = clinical_errors(masks, masks, spacing_mm=spacing[:2])
    assert [row.metric for row in rows] == ["area_mm2"] * 4
    assert [row.predicted for row in rows] == pytest.approx([n * 0.7 * 0.8 for n in (16, 1, 1, 16)])


def test_a_tissue_absent_from_both_masks_has_a_nan_size_error_and_one_only_predicted_an_infinite() -> None:
    pred = np.zeros((2, 4, 4), dtype=bool)
    pred[1, 0, 0] = True  # class 1 predicted where the reference has none; class 0 nowhere
    absent, predicted = clinical_errors(pred, np.zeros_like(pred), spacing_mm=(1.0, 1.0))
    assert math.isnan(absent.percent_error) and predicted.percent_error == math.inf


def test_label_maps_are_not_masks() -> None:
    with pytest.raises(ValueError, match=r"mask must be a binary mask.*\[2"):
        tissue_volume(np.full((2, 2, 2), 2), SKM_TEA_SPACING)


@pytest.mark.parametrize(
    ("values", "hint"),
    [
        ([0, 1, 2, 3], r"label map of class indices.*labels == k"),  # SKM-TEA-like class indices
        ([0.0, 0.3, 0.9], r"Threshold probabilities first"),  # probabilities
        ([0, 1, -1], r"Threshold probabilities first"),  # not class indices either
    ],
)
def test_a_non_binary_mask_gets_the_advice_that_fits_it(values, hint) -> None:
    # Thresholding a label map at 0.5 would merge every tissue: the advice must be the per-class split.
    mask = np.zeros((2, 2, 2))
    mask.flat[: len(values)] = values
    with pytest.raises(ValueError, match=hint):
        tissue_volume(mask, SKM_TEA_SPACING)


def test_clinical_numbers_match_numpy_on_a_knee_like_label_map() -> None:
    """Anisotropic voxels, a tissue on the volume's border, a one-voxel tissue and an empty one."""
    rng = np.random.default_rng(3)
    labels = np.zeros((12, 10, 6), dtype=np.int64)
    labels[0, :, :] = 1  # touches the border on every side of axis 0
    labels[5, 5, 5] = 2  # one voxel, on the last slice
    labels[6:9, 2:7, 1:4] = 3
    pred_labels = labels.copy()
    pred_labels[1, :4, :] = 1
    pred_labels[5, 5, 5] = 0  # the one-voxel tissue missed
    target = np.stack([labels == k for k in range(1, 5)])  # class 4 empty in both
    pred = np.stack([pred_labels == k for k in range(1, 5)])
    t2 = rng.uniform(20.0, 60.0, labels.shape)
    t2[0, :3, :] = np.nan  # invalid fits on the border
    rows = {
        (r.class_name, r.metric): r
        for r in clinical_errors(pred, target, spacing_mm=SKM_TEA_SPACING, t2_ms=t2)
    }
    voxel_mm3 = 0.3125 * 0.3125 * 0.8
    for k in range(4):
        name = f"class_{k}"
        volume = rows[(name, "volume_mm3")]
        assert volume.predicted == pytest.approx(np.sum(pred[k]) * voxel_mm3, rel=1e-12)
        assert volume.reference == pytest.approx(np.sum(target[k]) * voxel_mm3, rel=1e-12)
        t2_row = rows[(name, "mean_t2_ms")]
        for got, mask in ((t2_row.predicted, pred[k]), (t2_row.reference, target[k])):
            inside = t2[mask & ~np.isnan(t2)]
            assert (math.isnan(got) and inside.size == 0) or got == pytest.approx(inside.mean(), rel=1e-12)
    assert rows[("class_0", "volume_mm3")].percent_error == pytest.approx(
        100 * 24 / 60
    )  # 4 x 6 voxels added to 10 x 6
    assert rows[("class_1", "volume_mm3")].percent_error == pytest.approx(100.0)  # missed: all of it
    assert math.isnan(rows[("class_1", "mean_t2_ms")].predicted)  # no voxel to average
    assert math.isnan(rows[("class_3", "volume_mm3")].percent_error)  # 0 / 0: absent from both


def test_mean_hu_hand_values() -> None:
    hu = np.array([[-1000.0, 30.0, 50.0], [-100.0, 1200.0, 40.0]])
    mask = np.array([[0, 1, 1], [0, 0, 1]])
    assert mean_hu(hu, mask) == pytest.approx(40.0)
    assert math.isnan(mean_hu(hu, np.zeros_like(mask)))


def test_mean_hu_shape_mismatch_names_arguments() -> None:
    with pytest.raises(ValueError, match=r"hu\.shape=\(2, 3\) and mask\.shape=\(3, 2\)"):
        mean_hu(np.zeros((2, 3)), np.zeros((3, 2)))


@pytest.mark.parametrize("invalid", [0.0, -5.0, np.inf, -np.inf])
def test_mean_t2_refuses_values_that_are_no_t2_inside_the_mask(invalid: float) -> None:
    # A DOSMA map marks invalid voxels 0: averaged, (30 + 0 + 50) / 3 = 26.7 instead of 40.
    t2 = np.array([[30.0, invalid], [50.0, invalid]])
    with pytest.raises(ValueError, match=r"t2_ms must hold T2 values > 0 and finite.*found 1 other"):
        mean_t2(t2, np.array([[1, 1], [1, 0]]))
    with pytest.raises(ValueError, match=r"t2_ms must hold T2 values > 0"):
        clinical_errors(
            np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1)), spacing_mm=(1, 1, 1), t2_ms=t2[..., None]
        )
    # Outside the mask it is no measurement: background of any value is ignored.
    assert mean_t2(t2, np.array([[1, 0], [1, 0]])) == pytest.approx(40.0)
    assert mean_t2(
        np.where(np.isfinite(t2) & (t2 > 0), t2, np.nan), np.array([[1, 1], [1, 0]])
    ) == pytest.approx(40.0)


def test_mean_t2_skips_invalid_voxels() -> None:
    t2 = np.array([[30.0, np.nan], [50.0, 10.0]])
    mask = np.array([[1, 1], [1, 0]])
    assert mean_t2(t2, mask) == pytest.approx(40.0)
    assert math.isnan(mean_t2(t2, np.array([[0, 1], [0, 0]])))  # only a NaN voxel
    assert math.isnan(mean_t2(t2, np.zeros((2, 2))))


def test_percent_error_hand_values_and_zero_reference() -> None:
    assert float(percent_error(90.0, 120.0)) == pytest.approx(25.0)
    assert float(percent_error(-3.0, -2.0)) == pytest.approx(50.0)
    got = percent_error([5.0, 0.0, np.nan], [0.0, 0.0, 1.0])
    assert got[0] == np.inf
    assert np.isnan(got[1:]).all()
    np.testing.assert_allclose(percent_error([[1.0], [3.0]], [2.0, 4.0]), [[50.0, 75.0], [50.0, 25.0]])


@given(
    st.floats(min_value=1e-3, max_value=1e6) | st.floats(min_value=-1e6, max_value=-1e-3),
    st.floats(min_value=-200.0, max_value=200.0),
)
def test_percent_error_recovers_a_relative_offset(ref: float, percent: float) -> None:
    pred = ref * (1 + percent / 100)
    assert float(percent_error(pred, ref)) == pytest.approx(abs(percent), rel=1e-9, abs=1e-9)


def _volume_case():
    target = np.zeros((2, 3, 4, 5), dtype=bool)
    pred = np.zeros_like(target)
    target[0, 0, 0, :4] = True  # 4 voxels
    pred[0, 0, 0, :5] = True  # 5 voxels: +25% volume
    target[1, 2, 1:3, 1:3] = True  # 4 voxels
    pred[1, 2, 1:3, 1:2] = True  # 2 voxels: -50% volume
    t2 = np.full((3, 4, 5), np.nan)
    t2[0, 0, :] = [30.0, 30.0, 30.0, 30.0, 80.0]  # class 0: ref mean 30, pred mean 40
    t2[2, 1:3, 1:3] = [[20.0, 40.0], [20.0, 40.0]]  # class 1: ref mean 30, pred mean 20
    return pred, target, t2


def test_clinical_errors_for_a_volume() -> None:
    pred, target, t2 = _volume_case()
    rows = clinical_errors(
        pred, target, spacing_mm=(0.5, 0.5, 2.0), t2_ms=t2, class_names=["femoral", "tibial"]
    )
    got = [(r.class_name, r.metric, r.predicted, r.reference, r.percent_error) for r in rows]
    expected = [
        ("femoral", "volume_mm3", 2.5, 2.0, 25.0),
        ("femoral", "mean_t2_ms", 40.0, 30.0, 100 / 3),
        ("tibial", "volume_mm3", 1.0, 2.0, 50.0),
        ("tibial", "mean_t2_ms", 20.0, 30.0, 100 / 3),
    ]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    np.testing.assert_allclose([g[2:] for g in got], [e[2:] for e in expected])
    assert all(isinstance(r, ClinicalComparison) for r in rows)


def test_clinical_errors_accepts_one_t2_map_per_class() -> None:
    pred, target, t2 = _volume_case()
    per_class = np.stack([t2, t2 + 10.0])
    rows = clinical_errors(pred, target, spacing_mm=(1.0, 1.0, 1.0), t2_ms=per_class)
    t2_rows = [r for r in rows if r.metric == "mean_t2_ms"]
    assert [r.class_name for r in t2_rows] == ["class_0", "class_1"]
    np.testing.assert_allclose([r.reference for r in t2_rows], [30.0, 40.0])


def test_clinical_errors_for_a_ct_slice() -> None:
    hu = np.arange(16, dtype=np.float64).reshape(4, 4) * 10.0 - 50.0
    target = np.zeros((1, 4, 4), dtype=bool)
    target[0, 0, :2] = True  # HU -50, -40 -> mean -45, 2 pixels
    pred = np.zeros_like(target)
    pred[0, 0, :3] = True  # HU -50, -40, -30 -> mean -40, 3 pixels
    rows = clinical_errors(pred, target, spacing_mm=(0.8, 0.6), hu=hu, class_names=["muscle"])
    assert [(r.metric, r.predicted, r.reference) for r in rows] == [
        ("area_mm2", pytest.approx(3 * 0.48), pytest.approx(2 * 0.48)),
        ("mean_hu", -40.0, -45.0),
    ]
    assert [r.percent_error for r in rows] == [pytest.approx(50.0), pytest.approx(100 * 5 / 45)]


def test_class_absent_from_reference_gives_infinite_error() -> None:
    target = np.zeros((1, 3, 3), dtype=bool)
    pred = target.copy()
    pred[0, 0, 0] = True
    (row,) = clinical_errors(pred, target, spacing_mm=(1.0, 1.0))
    assert row.reference == 0.0
    assert row.percent_error == math.inf


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_names": ["a"]}, r"class_names must have K=2 entries; found 1"),
        ({"t2_ms": np.zeros((3, 4))}, r"t2_ms must have shape \(3, 4, 5\) or \(2, 3, 4, 5\)"),
        ({"hu": np.zeros((4, 5))}, r"hu\.shape=\(4, 5\)"),
    ],
)
def test_clinical_errors_validates_inputs(kwargs, message) -> None:
    pred, target, _ = _volume_case()
    with pytest.raises(ValueError, match=message):
        clinical_errors(pred, target, spacing_mm=(1.0, 1.0, 1.0), **kwargs)


def test_clinical_errors_needs_two_or_three_spatial_axes() -> None:
    with pytest.raises(ValueError, match=r"\(K, H, W\) or \(K, X, Y, Z\); found shape \(2, 5\)"):
        clinical_errors(np.zeros((2, 5)), np.zeros((2, 5)), spacing_mm=(1.0,))


def test_absolute_error_in_hu_is_defined_where_percent_error_is_not() -> None:
    # Water-like tissue: reference mean 0 HU, prediction 3 HU -> 3 HU off, "inf %". A reference of
    # 1 HU and a prediction of -4 HU -> 5 HU off, "500 %"; fat -100 -> -95 and muscle 40 -> 45 are
    # 5 HU off each, though their percent errors (5 % and 12.5 %) differ by the scale's zero alone.
    pred = np.array([3.0, -4.0, -95.0, 45.0])
    ref = np.array([0.0, 1.0, -100.0, 40.0])
    np.testing.assert_array_equal(absolute_error(pred, ref), [3.0, 5.0, 5.0, 5.0])
    np.testing.assert_allclose(percent_error(pred, ref), [math.inf, 500.0, 5.0, 12.5])
    assert math.isnan(float(absolute_error(math.nan, 0.0)))


def test_clinical_errors_report_hu_in_hu_and_areas_in_percent() -> None:
    hu = np.array([[-10.0, 10.0], [30.0, 50.0]])
    target = np.zeros((1, 2, 2), dtype=bool)
    target[0, 0, :] = True  # -10, 10 -> mean 0 HU, 2 pixels
    pred = np.zeros_like(target)
    pred[0, 0, 1] = pred[0, 1, 0] = True  # 10, 30 -> mean 20 HU, 2 pixels
    pred[0, 1, 1] = True  # 50 -> mean 30 HU, 3 pixels
    area, hu_row = clinical_errors(pred, target, spacing_mm=(1.0, 1.0), hu=hu, class_names=["water"])
    assert (hu_row.metric, hu_row.predicted, hu_row.reference) == ("mean_hu", 30.0, 0.0)
    assert hu_row.percent_error == math.inf  # the paper's number explodes at a reference of 0 HU
    assert (hu_row.absolute_error, hu_row.error, hu_row.error_unit) == (30.0, 30.0, "HU")
    # Area is a ratio scale: 3 pixels for 2 is 50 % off, and that is the error to read.
    assert (area.percent_error, area.absolute_error, area.error, area.error_unit) == (50.0, 1.0, 50.0, "%")
    assert MEASUREMENT_SCALES["mean_hu"] == "interval"
    assert {MEASUREMENT_SCALES[m] for m in ("volume_mm3", "area_mm2", "mean_t2_ms")} == {"ratio"}


def test_clinical_errors_reads_an_iterator_of_spacings_once() -> None:
    # Each class's size read spacing_mm twice (prediction, reference): an iterator, empty from the
    # second reading, was refused as "spacing_mm=()". Hand values from _volume_case's comments:
    # femoral 5 predicted and 4 reference voxels, tibial 2 and 4, of 0.5 x 0.5 x 2 = 0.5 mm^3.
    pred, target, _ = _volume_case()
    rows = clinical_errors(pred, target, spacing_mm=map(float, ["0.5", "0.5", "2"]))  # type: ignore[arg-type]
    assert [(r.metric, r.predicted, r.reference) for r in rows] == [
        ("volume_mm3", 2.5, 2.0),
        ("volume_mm3", 1.0, 2.0),
    ]
    with pytest.raises(ValueError, match=r"spacing_mm has 2 values for the 3 spatial axes"):
        clinical_errors(pred, target, spacing_mm=iter([0.5, 0.5]))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "argument", "dtype"),
    [
        (lambda: mean_t2(np.array(["30", "50"]), np.array([1, 1])), "t2_ms", "<U2"),
        (lambda: mean_hu(np.array(["30"]), np.array([1])), "hu", "<U2"),
        (lambda: mean_hu(np.array([30 + 40j]), np.array([1])), "hu", "complex128"),
        (lambda: mean_hu(torch.tensor([30 + 40j]), torch.tensor([1])), "hu", "complex64"),
        (lambda: percent_error("1", "2"), "pred", "<U1"),
        (lambda: absolute_error(1.0, np.array(["2"])), "ref", "<U1"),
        (lambda: tissue_volume(np.array([[["1"]]]), (1, 1, 1)), "mask", "<U1"),
        (lambda: cross_sectional_area(np.array([[1 + 0j]]), (1, 1)), "mask", "complex128"),
        (
            lambda: mean_t2(np.array(["2024-01-01"], dtype="datetime64[D]"), np.array([1])),
            "t2_ms",
            "datetime64[D]",
        ),
    ],
)
def test_values_that_are_no_real_numbers_are_refused_naming_the_argument(
    call: Any, argument: str, dtype: str
) -> None:
    # Text was converted (a mean T2 of the strings "30" and "50": 40.0), complex lost its
    # imaginary part behind a ComplexWarning (mean_hu of 30+40j: 30.0), and the rest failed in
    # NumPy naming no argument.
    with pytest.raises(
        TypeError, match=rf"^{argument} must be an array or tensor of .*found dtype {re.escape(dtype)}"
    ):
        call()


def test_error_shapes_that_do_not_broadcast_are_refused_naming_pred_and_ref() -> None:
    for error in (percent_error, absolute_error):
        with pytest.raises(ValueError, match=r"pred\.shape=\(3,\) and ref\.shape=\(2,\)"):
            error(np.ones(3), np.ones(2))
        # Broadcasting itself stays: one reference for several predictions.
        np.testing.assert_allclose(error(np.array([90.0, 110.0]), 100.0), [10.0, 10.0])
