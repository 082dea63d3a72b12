"""Clinical metrics from predictions (hand counts, forward-model T2) and their summaries (NumPy, SciPy)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from inpaintssl.analysis.clinical import (
    absolute_error_medians,
    agreement_table,
    image_errors,
    paired_image_errors,
    per_image_comparison_table,
    percent_error_medians,
)
from inpaintssl.analysis.table import Table as ResultsTable
from inpaintssl.data.base import SliceDataset
from inpaintssl.data.views import FitToSize
from inpaintssl.metrics import T1_DEFAULTS_MS, mean_t2, qdess_signal_ratio
from inpaintssl.studies.clinical import clinical_measurements, on_source_grid
from inpaintssl.studies.store import Measurement
from study_helpers import result_row

SCAN = {"tr_ms": 18.0, "te_ms": 6.0, "flip_angle_deg": 20.0, "gl_area": 3132.0, "tg_us": 1800.0}


def _item(
    volume: str, index: int, label: np.ndarray, *, spacing: tuple[float, float, float], **extra: Any
) -> dict[str, Any]:
    return {
        "image": torch.zeros(1, *label.shape[1:]),
        "label": torch.from_numpy(label.astype(np.float32)),
        "volume_id": volume,
        "slice_index": index,
        "spacing": torch.tensor(spacing, dtype=torch.float64),
        **extra,
    }


def _by_metric(rows: list[Measurement]) -> dict[tuple[str, str, str], float]:
    return {(m.volume_id, m.class_name, m.metric): m.value for m in rows}


class _Replay:
    """Returns prepared predictions batch by batch (the prediction itself is what we test around)."""

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = torch.from_numpy(masks.astype(np.float32))
        self.start = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.masks[self.start : self.start + images.shape[0]]
        self.start += images.shape[0]
        return out


def test_tissue_volume_is_summed_over_a_volumes_slices() -> None:
    # Two slices of one volume, spacing 0.5 x 0.25 mm in plane, 2 mm thick: voxel = 0.25 mm^3.
    ref = np.zeros((2, 2, 4, 4), dtype=bool)  # (slices, K, H, W)
    ref[0, 0, :2, :2] = True  # 4 voxels of class a
    ref[1, 0, :3, :1] = True  # 3 voxels of class a
    ref[1, 1, 3, :] = True  # 4 voxels of class b
    pred = ref.copy()
    pred[1, 0, 3, 3] = True  # one extra voxel of class a
    pred[1, 1, 3, :2] = False  # two missed voxels of class b
    items = [_item("v", s, ref[s], spacing=(0.5, 0.25, 2.0)) for s in range(2)]
    rows = _by_metric(clinical_measurements(items, _Replay(pred), class_names=["a", "b"], batch_size=1))
    voxel = 0.5 * 0.25 * 2.0
    assert rows[("v", "a", "volume_mm3_ref")] == pytest.approx(7 * voxel)
    assert rows[("v", "a", "volume_mm3_pred")] == pytest.approx(8 * voxel)
    assert rows[("v", "a", "volume_mm3_pct_error")] == pytest.approx(100 / 7)
    assert rows[("v", "b", "volume_mm3_pred")] == pytest.approx(2 * voxel)
    assert rows[("v", "b", "volume_mm3_pct_error")] == pytest.approx(50.0)
    assert all(
        m.level == "volume" and m.slice_index == -1
        for m in clinical_measurements(items, _Replay(pred), class_names=["a", "b"])
    )


def test_mean_t2_matches_the_forward_model_and_skips_invalid_voxels() -> None:
    rng = np.random.default_rng(0)
    names = ["femoral_cartilage", "meniscus"]
    t2_true = rng.uniform(10.0, 80.0, size=(3, 6, 6))  # (slices, H, W)
    ref = rng.random((3, 2, 6, 6)) < 0.5
    pred = rng.random((3, 2, 6, 6)) < 0.5
    echo1 = np.ones((3, 6, 6))
    echo1[0, 0, :] = 0.0  # undefined ratio: these voxels must not count
    valid_t2 = np.where(echo1 > 0, t2_true, np.nan)
    # One class at a time: the echoes are simulated with that tissue's T1 (1200 vs 1000 ms), so a
    # wrong T1 lookup would shift the recovered T2.
    for k, name in enumerate(names):
        echo2 = qdess_signal_ratio(t2_true, t1_ms=T1_DEFAULTS_MS[name], **SCAN)  # S2 / S1 with S1 = 1
        items = [
            _item(
                "knee",
                s,
                ref[s, k : k + 1],
                spacing=(0.3, 0.3, 0.8),
                echo1=torch.from_numpy(echo1[s][None]),
                echo2=torch.from_numpy(echo2[s][None]),
                scan_params=dict(SCAN),
            )
            for s in range(3)
        ]
        rows = _by_metric(clinical_measurements(items, _Replay(pred[:, k : k + 1]), class_names=[name]))
        for quantity, mask in (("pred", pred[:, k]), ("ref", ref[:, k])):
            expected = mean_t2(valid_t2, mask)  # the metrics module on the stacked volume
            assert rows[("knee", name, f"mean_t2_ms_{quantity}")] == pytest.approx(expected, abs=1e-3)
        assert math.isfinite(rows[("knee", name, "mean_t2_ms_pct_error")])


def test_ct_slices_get_area_and_mean_hu_per_image() -> None:
    hu = np.array([[100.0, -50.0, 30.0], [0.0, 60.0, -1000.0]])
    ref = np.zeros((1, 2, 3), dtype=bool)
    ref[0, 0, :2] = True  # HU 100, -50 -> mean 25, area 2 px
    pred = np.zeros((1, 1, 2, 3), dtype=bool)
    pred[0, 0, 0, :] = True  # HU 100, -50, 30 -> mean 26.67, area 3 px
    item = _item("ct1", 0, ref, spacing=(0.7, 0.8, 5.0), hu=torch.from_numpy(hu[None]))
    rows = clinical_measurements([item], _Replay(pred), class_names=["muscle"])
    values = {m.metric: m.value for m in rows}
    assert values["area_mm2_ref"] == pytest.approx(2 * 0.7 * 0.8)
    assert values["area_mm2_pred"] == pytest.approx(3 * 0.7 * 0.8)
    assert values["area_mm2_pct_error"] == pytest.approx(50.0)
    assert values["mean_hu_ref"] == pytest.approx(25.0)
    assert values["mean_hu_pred"] == pytest.approx(80.0 / 3)
    assert values["mean_hu_pct_error"] == pytest.approx(100 * abs(80 / 3 - 25) / 25)
    assert {(m.level, m.volume_id, m.slice_index) for m in rows} == {("image", "ct1", 0)}


def test_prediction_shape_mismatch_is_an_error() -> None:
    item = _item("v", 0, np.ones((2, 4, 4), dtype=bool), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(
        ValueError, match=r"prediction shape \(1, 4, 4\) does not match label shape \(2, 4, 4\)"
    ):
        clinical_measurements([item], _Replay(np.ones((1, 1, 4, 4))), class_names=["a", "b"])


def test_missing_scan_parameters_are_named() -> None:
    item = _item(
        "knee",
        0,
        np.ones((1, 2, 2), dtype=bool),
        spacing=(1.0, 1.0, 1.0),
        echo1=torch.ones(1, 2, 2),
        echo2=torch.ones(1, 2, 2),
        scan_params={"tr_ms": 18.0},
    )
    with pytest.raises(ValueError, match="scan_params lacks"):
        clinical_measurements([item], _Replay(np.ones((1, 1, 2, 2))), class_names=["meniscus"])


def _clinical_results(seed: int = 0) -> tuple[ResultsTable, dict[tuple[str, float, str, str], np.ndarray]]:
    """Random predicted/reference volumes for 2 arms x 2 fractions x 2 classes x 6 volumes."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    errors: dict[tuple[str, float, str, str], np.ndarray] = {}
    for arm, spread in (("supervised", 0.3), ("ssl", 0.1)):
        for fraction in (0.5, 0.1):
            run = f"{arm}-{fraction}"
            for name in ("gm", "wm"):
                ref = rng.uniform(100, 200, size=6)
                pred = ref * (1 + rng.normal(0, spread, size=6))
                errors[(arm, fraction, name, "pct")] = 100 * np.abs(pred - ref) / ref
                errors[(arm, fraction, name, "pair")] = np.column_stack([pred, ref])
                for v in range(6):
                    for quantity, value in (
                        ("pred", pred[v]),
                        ("ref", ref[v]),
                        ("pct_error", 100 * abs(pred[v] - ref[v]) / ref[v]),
                    ):
                        rows.append(
                            {
                                "arm": arm,
                                "label_fraction": fraction,
                                "subset_seed": 0,
                                "run_id": run,
                                "level": "volume",
                                "volume_id": f"v{v}",
                                "slice_index": -1,
                                "class_name": name,
                                "metric": f"volume_mm3_{quantity}",
                                "value": value,
                            }
                        )
    return ResultsTable(rows), errors


def _icc_2_1(x: np.ndarray) -> float:
    # Shrout & Fleiss ICC(2,1) written out independently from the library's implementation.
    n, k = x.shape
    grand = x.mean()
    msr = k * ((x.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
    mse = (resid**2).sum() / ((n - 1) * (k - 1))
    return float((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n))


def test_medians_and_agreement_match_numpy() -> None:
    results, errors = _clinical_results()
    medians = {(c, f, a): (m, n, k) for _, c, f, a, m, n, k in percent_error_medians(results)}
    table = agreement_table(results)
    assert len(table) == 2 * 2 * 2
    for row in table.tuples():
        _, name, fraction, arm, n, not_comparable, median, bias, lower, upper, icc_value, median_abs = row
        assert not_comparable == 0
        pct, pair = errors[(arm, fraction, name, "pct")], errors[(arm, fraction, name, "pair")]
        assert medians[(name, fraction, arm)] == (pytest.approx(np.median(pct)), 6, 0)
        assert median == pytest.approx(np.median(pct)) and n == 6
        diff = pair[:, 0] - pair[:, 1]
        assert bias == pytest.approx(diff.mean())
        assert (lower, upper) == (
            pytest.approx(diff.mean() - 1.96 * diff.std(ddof=1)),
            pytest.approx(diff.mean() + 1.96 * diff.std(ddof=1)),
        )
        assert icc_value == pytest.approx(_icc_2_1(pair))
        assert median_abs == pytest.approx(np.median(np.abs(diff)))


def test_per_image_errors_average_classes_and_fractions_and_match_scipy() -> None:
    results, errors = _clinical_results(seed=1)
    sup, ssl = image_errors(results, "volume_mm3")
    expected_sup = np.mean(
        [errors[("supervised", f, c, "pct")] for f in (0.5, 0.1) for c in ("gm", "wm")], axis=0
    )
    expected_ssl = np.mean([errors[("ssl", f, c, "pct")] for f in (0.5, 0.1) for c in ("gm", "wm")], axis=0)
    np.testing.assert_allclose(sup, expected_sup)
    np.testing.assert_allclose(ssl, expected_ssl)
    (row,) = per_image_comparison_table(results).tuples()
    assert row[1] == 6
    assert row[6] == pytest.approx(stats.wilcoxon(expected_sup, expected_ssl, alternative="greater").pvalue)
    assert row[7] == row[6]  # p_holm: one test in the table, nothing to adjust for
    assert row[-1] == "%"  # volume is a ratio scale: percent errors only


def test_non_finite_errors_are_left_out_of_medians() -> None:
    base = {
        "arm": "ssl",
        "label_fraction": 0.5,
        "subset_seed": 0,
        "run_id": "r",
        "level": "image",
        "slice_index": 0,
        "class_name": "imat",
        "metric": "area_mm2_pct_error",
    }
    rows = [{**base, "volume_id": v, "value": x} for v, x in [("a", 10.0), ("b", math.inf), ("c", 30.0)]]
    ((_, _, _, _, median, n, not_comparable),) = percent_error_medians(ResultsTable(rows))
    assert (median, n, not_comparable) == (20.0, 2, 1)


def test_the_agreement_table_counts_the_tissues_an_arm_missed() -> None:
    # Arm "misses" finds no mean T2 for 3 of 4 scans and is 2 % off on the fourth; arm "close" is
    # 5 % off on all four. The statistics of "misses" rest on one pair: the table must say so.
    rows: list[dict[str, Any]] = []
    for arm, predicted in (
        ("misses", [math.nan, math.nan, math.nan, 40.8]),
        ("close", [42.0, 42.0, 42.0, 42.0]),
    ):
        for v, pred in enumerate(predicted):
            for quantity, value in (
                ("pred", pred),
                ("ref", 40.0),
                ("pct_error", 100 * abs(pred - 40.0) / 40.0),
            ):
                rows.append(
                    {
                        "arm": arm,
                        "label_fraction": 0.1,
                        "subset_seed": 0,
                        "run_id": arm,
                        "level": "volume",
                        "volume_id": f"v{v}",
                        "slice_index": -1,
                        "class_name": "patellar_cartilage",
                        "metric": f"mean_t2_ms_{quantity}",
                        "value": value,
                    }
                )
    table = {row[3]: row for row in agreement_table(ResultsTable(rows)).tuples()}
    assert (table["misses"][4], table["misses"][5]) == (1, 3)
    assert (table["close"][4], table["close"][5]) == (4, 0)


def test_per_image_errors_also_average_subset_seeds() -> None:
    base = {
        "level": "volume",
        "slice_index": -1,
        "class_name": "gm",
        "label_fraction": 0.1,
        "metric": "volume_mm3_pct_error",
    }
    rows = [
        {**base, "arm": arm, "subset_seed": seed, "volume_id": v, "value": value}
        for arm, seed, v, value in [
            ("supervised", 0, "a", 10.0),
            ("supervised", 1, "a", 30.0),
            ("ssl", 0, "a", 5.0),
            ("ssl", 1, "a", 7.0),
            ("supervised", 0, "b", 1.0),
            ("ssl", 0, "b", 2.0),
        ]
    ]
    sup, ssl = image_errors(ResultsTable(rows), "volume_mm3")
    assert sup.tolist() == [20.0, 1.0] and ssl.tolist() == [6.0, 2.0]


def test_a_fraction_drawn_with_more_seeds_does_not_weigh_more_in_an_images_error() -> None:
    # Fraction 0.5 runs once, 0.25 with two seeds: the image's error is the mean of the two
    # fractions' errors, (10 + (30 + 50) / 2) / 2 = 25, not the mean of three runs (30).
    rows = [
        {
            "level": "volume",
            "slice_index": -1,
            "class_name": "gm",
            "metric": "volume_mm3_pct_error",
            "arm": arm,
            "label_fraction": fraction,
            "subset_seed": seed,
            "volume_id": "a",
            "value": value,
        }
        for arm in ("supervised", "ssl")
        for fraction, seed, value in [(0.5, 0, 10.0), (0.25, 0, 30.0), (0.25, 1, 50.0)]
    ]
    sup, ssl = image_errors(ResultsTable(rows), "volume_mm3")
    assert sup.tolist() == ssl.tolist() == [25.0]


def _pct_rows(
    cells: list[tuple[str, float, int, str, str, float]], metric: str = "mean_hu"
) -> list[dict[str, Any]]:
    """``(arm, label_fraction, subset_seed, volume_id, class_name, pct_error)`` as result rows."""
    return [
        result_row(
            arm,
            None,
            fraction,
            volume,
            value,
            seed=seed,
            run=f"{arm}-{fraction}-{seed}",
            class_name=name,
            metric=f"{metric}_pct_error",
        )
        for arm, fraction, seed, volume, name, value in cells
    ]


def test_per_image_errors_compare_the_cells_both_arms_measured() -> None:
    # Supervised misses the IMAT on every image (no predicted mean HU: a NaN error); SSL finds it,
    # 40 % off, and is closer on muscle everywhere. Averaging each arm over its own finite cells
    # would score supervised on muscle alone (7.5 %) against SSL on muscle and IMAT (21.75 %), and
    # call SSL worse; on the cells both measured SSL is better on every image.
    cells = []
    for i in range(6):
        cells += [
            ("supervised", 0.1, 0, f"ct{i}", "muscle", 7.5),
            ("supervised", 0.1, 0, f"ct{i}", "imat", math.nan),
            ("ssl", 0.1, 0, f"ct{i}", "muscle", 3.5),
            ("ssl", 0.1, 0, f"ct{i}", "imat", 40.0),
        ]
    results = ResultsTable(_pct_rows(cells))
    found = paired_image_errors(results, "mean_hu")
    assert found.supervised.tolist() == [7.5] * 6 and found.ssl.tolist() == [3.5] * 6
    assert found.not_comparable == 6
    ((_, images, not_comparable, mean_sup, mean_ssl, reduction, p, _, _),) = per_image_comparison_table(
        results
    ).tuples()
    assert (images, not_comparable, mean_sup, mean_ssl, reduction) == (6, 6, 7.5, 3.5, 4.0)
    assert p == pytest.approx(stats.wilcoxon([7.5] * 6, [3.5] * 6, alternative="greater").pvalue)
    assert p == pytest.approx(1 / 64)  # six positive differences: only the all-positive signing


def test_a_cell_missed_by_one_seed_is_left_out_for_both_arms() -> None:
    # Seed 1 of SSL misses the tissue on ct0: the cell is not an SSL measurement of ct0 any more,
    # and supervised is not scored on it alone either. ct1 is measured throughout.
    cells = [
        ("supervised", 0.1, 0, "ct0", "imat", 10.0),
        ("supervised", 0.1, 1, "ct0", "imat", 12.0),
        ("ssl", 0.1, 0, "ct0", "imat", 4.0),
        ("ssl", 0.1, 1, "ct0", "imat", math.inf),
        ("supervised", 0.1, 0, "ct1", "imat", 20.0),
        ("ssl", 0.1, 0, "ct1", "imat", 6.0),
    ]
    found = paired_image_errors(ResultsTable(_pct_rows(cells)), "mean_hu")
    assert (found.supervised.tolist(), found.ssl.tolist(), found.not_comparable) == ([20.0], [6.0], 1)


def test_per_image_errors_leave_out_the_full_label_set_as_the_paper_does() -> None:
    # Sec. 2.7 averages over the label-limited runs (50/25/10/5 %): with them present, 100 % is out.
    cells = [
        (arm, fraction, 0, "ct0", "muscle", value)
        for arm, values in (("supervised", (2.0, 10.0, 20.0)), ("ssl", (4.0, 8.0, 15.0)))
        for fraction, value in zip((1.0, 0.1, 0.05), values)
    ]
    found = paired_image_errors(ResultsTable(_pct_rows(cells)), "mean_hu")
    assert (found.supervised.tolist(), found.ssl.tolist()) == ([15.0], [11.5])
    everything = paired_image_errors(
        ResultsTable(_pct_rows(cells)), "mean_hu", label_fractions=[1.0, 0.1, 0.05]
    )
    assert everything.supervised.tolist() == [pytest.approx(32 / 3)]
    # A study of the full label set alone still compares it.
    alone = [c for c in cells if c[1] == 1.0]
    assert paired_image_errors(ResultsTable(_pct_rows(alone)), "mean_hu").supervised.tolist() == [2.0]


def test_medians_count_a_scan_once_and_leave_out_a_scan_any_seed_missed() -> None:
    # ct0: seeds 10 and 30 -> 20; ct1: 50 and 70 -> 60; ct2: seed 1 missed it -> left out.
    cells = [
        ("ssl", 0.1, 0, "ct0", "imat", 10.0),
        ("ssl", 0.1, 1, "ct0", "imat", 30.0),
        ("ssl", 0.1, 0, "ct1", "imat", 50.0),
        ("ssl", 0.1, 1, "ct1", "imat", 70.0),
        ("ssl", 0.1, 0, "ct2", "imat", 1.0),
        ("ssl", 0.1, 1, "ct2", "imat", math.nan),
    ]
    ((_, _, _, _, median, n, not_comparable),) = percent_error_medians(ResultsTable(_pct_rows(cells)))
    assert (median, n, not_comparable) == (40.0, 2, 1)


class _Slices(SliceDataset):
    """CT slices of two matrix sizes whose image is the label map itself (so a "model" can read it)."""

    def __init__(self, labels: list[np.ndarray], spacing: tuple[float, float, float]) -> None:
        self.labels, self.spacing = labels, spacing
        self.volume_ids = [f"ct{i}" for i in range(len(labels))]
        self.class_names = ("muscle", "fat")
        self.in_channels = 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        label_map = self.labels[index]
        onehot = np.stack([label_map == k for k in (1, 2)]).astype(np.float32)
        hu = np.where(label_map == 1, 40.0, np.where(label_map == 2, -100.0, -1000.0))
        return {
            "image": torch.from_numpy(label_map[None].astype(np.float32)),
            "label": torch.from_numpy(onehot),
            "hu": torch.from_numpy(hu[None]),
            "volume_id": self.volume_ids[index],
            "slice_index": 0,
            "spacing": torch.tensor(self.spacing, dtype=torch.float64),
        }


def _reads_the_image(images: torch.Tensor) -> torch.Tensor:
    """A perfect model of _Slices: one-hot masks of classes 1 and 2 of the image it is shown."""
    codes = images[:, 0].round()
    return torch.stack([codes == 1, codes == 2], dim=1).float()


@pytest.mark.parametrize("mode", ["crop_or_pad", "resize"])
def test_references_of_a_fitted_test_set_are_measured_on_the_source_grid(mode: str) -> None:
    # A 40 x 36 slice with fat out to its edges, and a 28 x 30 one: fitted to 32 x 32 for the model.
    rng = np.random.default_rng(0)
    big = np.full((40, 36), 2)
    big[6:34, 6:30] = 1
    small = rng.integers(0, 3, size=(28, 30))
    source = _Slices([big, small], spacing=(0.8, 0.8, 5.0))
    # _reads_the_image is no network: a resize view resizes its masks back, and says so.
    maps_masks_back = pytest.warns(UserWarning, match="without model=")
    with maps_masks_back if mode == "resize" else contextlib.nullcontext():
        items, predict = on_source_grid(FitToSize(source, (32, 32), mode=mode), _reads_the_image)

    rows = clinical_measurements(items, predict, class_names=["muscle", "fat"], batch_size=4)

    values = {(m.volume_id, m.class_name, m.metric): m.value for m in rows}
    pixel_mm2 = 0.8 * 0.8
    for volume_id, label_map in (("ct0", big), ("ct1", small)):
        for k, name in ((1, "muscle"), (2, "fat")):
            # The reference is the source label's own area, whatever the model's input size.
            assert values[(volume_id, name, "area_mm2_ref")] == pytest.approx(
                (label_map == k).sum() * pixel_mm2
            )
            assert values[(volume_id, name, "mean_hu_ref")] == pytest.approx(40.0 if k == 1 else -100.0)
    # The centre crop shows the model rows 4..35 and columns 2..33 of the big slice: the fat it
    # never saw is missing from the prediction, not from the reference.
    seen = big[4:36, 2:34]
    expected_fat = (seen == 2).sum() * pixel_mm2 if mode == "crop_or_pad" else None
    if expected_fat is not None:
        assert values[("ct0", "fat", "area_mm2_pred")] == pytest.approx(expected_fat)
        assert values[("ct0", "muscle", "area_mm2_pred")] == pytest.approx((big == 1).sum() * pixel_mm2)
    else:  # resized there and back: the masks return to the source grid within a pixel's rounding
        for name in ("muscle", "fat"):
            assert values[("ct0", name, "area_mm2_pct_error")] < 15.0


def test_the_agreement_table_counts_each_scan_once_whatever_the_subset_seeds() -> None:
    # Two seeds of one arm measure the same 5 scans: Bland-Altman and the ICC see 5 subjects, each
    # the mean of its two predictions, not 10 pairs.
    rng = np.random.default_rng(3)
    reference = rng.uniform(100, 200, size=5)
    predicted = {seed: reference * (1 + rng.normal(0, 0.1, size=5)) for seed in (0, 1)}
    rows: list[dict[str, Any]] = []
    for seed, values in predicted.items():
        for v in range(5):
            for quantity, value in (("pred", values[v]), ("ref", reference[v]), ("pct_error", 1.0)):
                rows.append(
                    {
                        "arm": "ssl",
                        "label_fraction": 0.1,
                        "subset_seed": seed,
                        "run_id": f"ssl-{seed}",
                        "level": "volume",
                        "volume_id": f"v{v}",
                        "slice_index": -1,
                        "class_name": "gm",
                        "metric": f"volume_mm3_{quantity}",
                        "value": value,
                    }
                )
    ((_, _, _, _, n, not_comparable, _, bias, lower, upper, icc_value, _),) = agreement_table(
        ResultsTable(rows)
    ).tuples()
    means = (predicted[0] + predicted[1]) / 2
    diff = means - reference
    assert (n, not_comparable) == (5, 0)
    assert bias == pytest.approx(diff.mean())
    assert (lower, upper) == (
        pytest.approx(diff.mean() - 1.96 * diff.std(ddof=1)),
        pytest.approx(diff.mean() + 1.96 * diff.std(ddof=1)),
    )
    assert icc_value == pytest.approx(_icc_2_1(np.column_stack([means, reference])))


def test_rows_without_a_label_fraction_are_left_out_of_the_tables() -> None:
    # Run "grid" fine-tuned at 10 % labels; run "loose" was measured outside a study, without a
    # label fraction. Both tables are by fraction, so only "grid" is in them, as in the Dice
    # summaries.
    base = {"arm": "ssl", "subset_seed": 0, "level": "volume", "slice_index": -1, "class_name": "gm"}
    measured = {
        ("grid", 0.1): [("a", 110.0, 100.0), ("b", 190.0, 200.0), ("c", 306.0, 300.0)],
        ("loose", None): [("a", 500.0, 100.0), ("d", 1.0, 400.0)],
    }
    rows: list[dict[str, Any]] = []
    for (run, fraction), scans in measured.items():
        for volume, pred, ref in scans:
            for quantity, value in (("pred", pred), ("ref", ref), ("pct_error", 100 * abs(pred - ref) / ref)):
                rows.append(
                    {
                        **base,
                        "run_id": run,
                        "label_fraction": fraction,
                        "volume_id": volume,
                        "metric": f"volume_mm3_{quantity}",
                        "value": value,
                    }
                )
    # Errors of "grid": 10 %, 5 %, 2 % -> median 5 %; differences +10, -10, +6 -> bias 2.
    assert percent_error_medians(ResultsTable(rows)) == [("volume_mm3", "gm", 0.1, "ssl", 5.0, 3, 0)]
    ((_, _, fraction, _, n, not_comparable, median, bias, lower, upper, _, _),) = agreement_table(
        ResultsTable(rows)
    ).tuples()
    sd = math.sqrt((8.0**2 + 12.0**2 + 4.0**2) / 2)  # deviations from the bias 2: 8, -12, 4
    assert (fraction, n, not_comparable, median) == (0.1, 3, 0, 5.0)
    assert (bias, lower, upper) == (
        pytest.approx(2.0),
        pytest.approx(2.0 - 1.96 * sd),
        pytest.approx(2.0 + 1.96 * sd),
    )
    # A table of loose runs alone has no fraction to report by: no rows, not a TypeError.
    loose = ResultsTable([r for r in rows if r["run_id"] == "loose"])
    assert percent_error_medians(loose) == []
    assert agreement_table(loose).tuples() == ()


def _hu_rows(cells: list[tuple[str, str, float, float]]) -> list[dict[str, Any]]:
    """``(arm, volume_id, predicted, reference)`` mean-HU measurements of one tissue, with the
    ``_pct_error`` rows the study records beside them."""
    rows = []
    for arm, volume, pred, ref in cells:
        pct = 100 * abs(pred - ref) / abs(ref) if ref else math.inf
        for quantity, value in (("pred", pred), ("ref", ref), ("pct_error", pct)):
            rows.append(
                {
                    "arm": arm,
                    "label_fraction": 0.1,
                    "subset_seed": 0,
                    "run_id": f"{arm}-run",
                    "level": "image",
                    "volume_id": volume,
                    "slice_index": 0,
                    "class_name": "water",
                    "metric": f"mean_hu_{quantity}",
                    "value": value,
                }
            )
    return rows


# (arm, image, predicted HU, reference HU): water-like tissue, references 0, 1, -2 and 4 HU;
# supervised misses by 6, 5, 4 and 8 HU, SSL by 2, 1, 3 and 1 HU.
_WATER_LIKE_HU = [
    ("supervised", "ct0", 6.0, 0.0),
    ("supervised", "ct1", -4.0, 1.0),
    ("supervised", "ct2", 2.0, -2.0),
    ("supervised", "ct3", 12.0, 4.0),
    ("ssl", "ct0", -2.0, 0.0),
    ("ssl", "ct1", 2.0, 1.0),
    ("ssl", "ct2", -5.0, -2.0),
    ("ssl", "ct3", 3.0, 4.0),
]


def test_mean_hu_is_reported_in_hu_near_a_reference_of_zero() -> None:
    # Water-like tissue: references 0, 1, -2 and 4 HU. Supervised misses by 6, 5, 4, 8 HU; SSL by
    # 2, 1, 3, 1 HU. In percent the scans with references of 0 and 1 HU dominate (inf, 500 %, ...),
    # so the paper's medians and means say little; in HU the errors are hand-checkable.
    cells = _WATER_LIKE_HU
    results = ResultsTable(_hu_rows(cells))
    medians = {arm: (median, n) for _, _, _, arm, median, n, _ in absolute_error_medians(results)}
    assert medians == {"supervised": (5.5, 4), "ssl": (1.5, 4)}  # medians of {4, 5, 6, 8}, {1, 1, 2, 3}
    table = {row[3]: row for row in agreement_table(results).tuples()}
    assert table["supervised"][-1] == 5.5 and table["ssl"][-1] == 1.5
    # In percent, ct0's "inf %" is left out and 1 HU off a 1 HU reference reads as 100 %: the median
    # of {100, 150, 25} % is 100 %, for an arm 1.5 HU off at the median.
    assert table["ssl"][6] == 100.0
    assert agreement_table(results).columns[-1] == "median_abs_error"
    hu, pct = per_image_comparison_table(results).tuples()
    # Per image, in HU: 6 - 2, 5 - 1, 4 - 3, 8 - 1: SSL better on all four -> p = 1/16. Mean HU is
    # one hypothesis, tested on its HU row: a family of one, nothing to adjust for.
    assert hu == ("mean HU", 4, 0, 5.75, 1.75, 4.0, 1 / 16, 1 / 16, "HU")
    # The paper's percent row stays, but ct0 (reference 0 HU) has no finite percent error at all.
    # Supervised misses the other three by 500, 200, 200 %, SSL by 100, 150, 25 %: three wins, p = 1/8.
    # The same hypothesis tested again is outside the Holm family: no adjusted p-value.
    assert pct[-1] == "%" and pct[1] == 3 and pct[2] == 1
    assert pct[6] == 1 / 8 and math.isnan(pct[7])
    found = paired_image_errors(results, "mean_hu", quantity="abs_error")
    assert found.supervised.tolist() == [6.0, 5.0, 4.0, 8.0] and found.ssl.tolist() == [2.0, 1.0, 3.0, 1.0]


def _paired_pct_rows(metric: str, errors: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """``(supervised, ssl)`` percent errors of one tissue per image, as ``<metric>_pct_error`` rows."""
    return [
        {
            "arm": arm,
            "label_fraction": 0.1,
            "subset_seed": 0,
            "run_id": f"{arm}-run",
            "level": "image",
            "volume_id": f"{metric}{i}",
            "slice_index": 0,
            "class_name": "tissue",
            "metric": f"{metric}_pct_error",
            "value": value,
        }
        for i, pair in enumerate(errors)
        for arm, value in zip(("supervised", "ssl"), pair)
    ]


def _holm(p: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out: the i-th smallest p times (m - i), running maximum."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_the_holm_family_counts_mean_hu_once() -> None:
    # SSL beats supervised on every image: 6 volumes (exact one-sided p = 1/64), 2 T2 images (1/4),
    # 4 CT images in HU (1/16). Three metrics, three hypotheses; mean HU's percent row (3 images
    # with a finite percent error, p = 1/8) tests the same one again and is not counted.
    volume = [(10.0 + i, 1.0 + i) for i in range(6)]
    t2 = [(8.0, 3.0), (9.0, 2.0)]
    hu = _WATER_LIKE_HU
    measured = _paired_pct_rows("volume_mm3", volume) + _paired_pct_rows("mean_t2_ms", t2) + _hu_rows(hu)
    results = ResultsTable(measured)
    table = per_image_comparison_table(results)
    rows = {(row["metric"], row["error_unit"]): row for row in table}
    assert [(r["metric"], r["error_unit"]) for r in table] == [
        ("tissue volume (mm^3)", "%"),
        ("mean T2 (ms)", "%"),
        ("mean HU", "HU"),
        ("mean HU", "%"),
    ]
    family = [("tissue volume (mm^3)", "%"), ("mean T2 (ms)", "%"), ("mean HU", "HU")]
    assert [rows[key]["p_value"] for key in family] == [1 / 64, 1 / 4, 1 / 16]
    # By hand: 3/64, then 2 x 1/16 = 1/8, then 1 x 1/4 (a family of four would give 1/16, 3/16, ...).
    expected = [3 / 64, 1 / 4, 1 / 8]
    assert _holm([1 / 64, 1 / 4, 1 / 16]) == expected
    assert [rows[key]["p_holm"] for key in family] == pytest.approx(expected)
    assert rows[("mean HU", "%")]["p_value"] == 1 / 8 and math.isnan(rows[("mean HU", "%")]["p_holm"])


def test_mean_hu_without_absolute_errors_keeps_its_percent_row_in_the_family() -> None:
    # No _pred or _ref rows: mean HU's percent row is its only test, so it is in the family.
    volume = [(10.0 + i, 1.0 + i) for i in range(6)]
    hu = [(20.0 + i, 2.0 + i) for i in range(3)]
    results = ResultsTable(_paired_pct_rows("volume_mm3", volume) + _paired_pct_rows("mean_hu", hu))
    (vol, pct) = per_image_comparison_table(results)
    assert (vol["p_value"], pct["p_value"], pct["error_unit"]) == (1 / 64, 1 / 8, "%")
    assert [vol["p_holm"], pct["p_holm"]] == pytest.approx(_holm([1 / 64, 1 / 8]))
    assert [vol["p_holm"], pct["p_holm"]] == pytest.approx([2 / 64, 1 / 8])
