"""Study 4, analysing: percent errors and agreement of the clinical metrics (paper sec. 2.7, 2.8).

The measurements come from :mod:`inpaintssl.studies.clinical` (``<metric>_pred``, ``_ref`` and
``_pct_error`` rows). This module computes the median percent errors per class, metric, label
fraction and arm (Figure 6); Bland-Altman bias and 95% limits of agreement and ICC(2,1) (absolute
agreement) between the metric from predicted and from true masks, beside the percent errors
(beyond the paper); and the per-image comparison of Figure 7 with a one-sided paired Wilcoxon test
that supervised errors exceed SSL errors (sec. 2.8).

Example:
    >>> rows = [{"metric": "volume_mm3_pct_error", "class_name": "wm", "label_fraction": 0.5,
    ...          "arm": a, "value": v} for a, v in [("ssl", 2.0), ("ssl", 4.0), ("supervised", 9.0)]]
    >>> percent_error_medians(Table(rows))
    [('volume_mm3', 'wm', 0.5, 'ssl', 3.0, 2), ('volume_mm3', 'wm', 0.5, 'supervised', 9.0, 1)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from inpaintssl.analysis.table import Table
from inpaintssl.metrics import bland_altman, icc
from inpaintssl.stats import wilcoxon_greater

__all__ = [
    "CLINICAL_METRICS",
    "agreement_table",
    "image_errors",
    "percent_error_medians",
    "per_image_comparison_table",
]

CLINICAL_METRICS: Mapping[str, str] = MappingProxyType(
    {
        "volume_mm3": "tissue volume (mm^3)",
        "mean_t2_ms": "mean T2 (ms)",
        "area_mm2": "cross-sectional area (mm^2)",
        "mean_hu": "mean HU",
    }
)
"""Metric key -> display name, in the paper's order (MRI, then CT)."""

FloatArray = npt.NDArray[np.float64]


def _metric_rows(results: Table, metric: str, quantity: str) -> Table:
    return results.select(metric=f"{metric}_{quantity}")


def _present_metrics(results: Table) -> list[str]:
    found = {str(m) for m in results.unique("metric")}
    return [m for m in CLINICAL_METRICS if f"{m}_pct_error" in found]


def percent_error_medians(results: Table) -> list[tuple[str, str, float, str, float, int]]:
    """Median percent error over the test set per metric, class, label fraction and arm (Figure 6).

    Non-finite errors (a tissue absent from the reference) are left out of the median.

    Returns:
        ``(metric, class, label_fraction, arm, median, n)`` rows.
    """
    out = []
    for metric in _present_metrics(results):
        rows = _metric_rows(results, metric, "pct_error")
        for (name, fraction, arm), table in rows.groups("class_name", "label_fraction", "arm").items():
            values = table.column("value")
            values = values[np.isfinite(values)]
            median = float(np.median(values)) if values.size else math.nan
            out.append((metric, str(name), float(fraction), str(arm), median, int(values.size)))
    return out


def _item_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row.get("subset_seed"), row.get("level"), row.get("volume_id"), row.get("slice_index"))


def _pair_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What pairs a predicted measurement with its reference: the item, the run and the class."""
    return (*_item_key(row), row.get("run_id"), row.get("class_name"))


def _scan_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The scan (or CT image) a measurement is of, whichever run and subset seed measured it."""
    return (row.get("level"), row.get("volume_id"), row.get("slice_index"))


def _per_scan_means(pairs: Sequence[tuple[tuple[Any, ...], float, float]]) -> np.ndarray:
    """``(predicted, reference)`` per scan, the predictions of its runs (subset seeds) averaged.

    A scan measured by several runs of one arm is one subject, not several: as pairs of their own
    they would count it once per seed in Bland-Altman's limits and the ICC (pseudo-replication).
    """
    by_scan: dict[tuple[Any, ...], tuple[list[float], float]] = {}
    for scan, predicted, reference in pairs:
        by_scan.setdefault(scan, ([], reference))[0].append(predicted)
    return np.asarray(
        [(float(np.mean(values)), reference) for values, reference in by_scan.values()], dtype=np.float64
    ).reshape(-1, 2)


def agreement_table(results: Table) -> Table:
    """Percent error beside Bland-Altman and ICC(2,1) per metric, class, label fraction and arm.

    Bland-Altman: bias and 95% limits of ``predicted - reference`` (Bland & Altman 1986). ICC:
    two-way random, absolute agreement, single measure (:func:`inpaintssl.metrics.icc`). Pairs with
    a non-finite value are dropped; fewer than 2 scans give NaN. ``not_comparable`` counts the
    dropped pairs: a tissue the model missed (no predicted mean T2 or HU) or found where the
    reference has none. Each scan is one pair, its runs' (subset seeds') predictions averaged, so
    ``n`` counts scans, not scans times seeds; an arm's statistics cover only those, so read them
    beside ``not_comparable``.
    """
    medians = {(m, c, f, a): (med, n) for m, c, f, a, med, n in percent_error_medians(results)}
    rows = []
    for metric in _present_metrics(results):
        pred = _metric_rows(results, metric, "pred")
        ref = {_pair_key(r): float(r["value"]) for r in _metric_rows(results, metric, "ref")}
        for (name, fraction, arm), table in pred.groups("class_name", "label_fraction", "arm").items():
            pairs = [
                (_scan_key(r), float(r["value"]), ref[_pair_key(r)]) for r in table if _pair_key(r) in ref
            ]
            finite = [(scan, p, q) for scan, p, q in pairs if math.isfinite(p) and math.isfinite(q)]
            # A tissue the model missed has no mean T2 or HU: its pair drops out of every statistic
            # here, which would flatter the arm that misses most; the count says so.
            not_comparable = len(pairs) - len(finite)
            arr = _per_scan_means(finite)
            bias = lower = upper = agreement = math.nan
            if arr.shape[0] >= 2:
                ba = bland_altman(arr[:, 0], arr[:, 1])
                bias, lower, upper, agreement = ba.bias, ba.lower, ba.upper, icc(arr)
            median, _ = medians.get((metric, str(name), float(fraction), str(arm)), (math.nan, 0))
            rows.append(
                (
                    CLINICAL_METRICS[metric],
                    name,
                    fraction,
                    arm,
                    int(arr.shape[0]),
                    not_comparable,
                    median,
                    bias,
                    lower,
                    upper,
                    agreement,
                )
            )
    return Table(
        tuple(rows),
        name="clinical_agreement",
        title="Clinical metrics: median percent error (Figure 6), Bland-Altman bias and 95% limits of "
        "agreement "
        "(predicted - reference), ICC(2,1) absolute agreement",
        columns=(
            "metric",
            "class",
            "label_fraction",
            "arm",
            "n",
            "not_comparable",
            "median_pct_error",
            "bias",
            "loa_lower",
            "loa_upper",
            "icc_2_1",
        ),
    )


_Repeats = dict[tuple[Any, ...], list[float]]
"""An image's errors by (label fraction, class): the repeats of each, by seed or strategy."""


def image_errors(results: Table, metric: str) -> tuple[FloatArray, FloatArray]:
    """Per-image percent errors of supervised and SSL segmentations, paired (Figure 7).

    As in the paper (sec. 2.7), an image's error is averaged over classes and label fractions;
    repeats within one class and fraction (subset seeds, and SSL strategies if there are several)
    are averaged first, so a fraction drawn with more seeds does not weigh more. Non-finite errors
    are left out of the average.

    Returns:
        ``(supervised (M,), ssl (M,))`` over the images both arms have.
    """
    rows = _metric_rows(results, metric, "pct_error")
    per_arm: dict[str, dict[tuple[Any, ...], _Repeats]] = {"supervised": {}, "ssl": {}}
    for row in rows:
        arm = row.get("arm")
        value = float(row["value"])
        if arm in per_arm and math.isfinite(value):
            image = (row.get("level"), row.get("volume_id"), row.get("slice_index"))
            cell = (row.get("label_fraction"), row.get("class_name"))
            per_arm[str(arm)].setdefault(image, {}).setdefault(cell, []).append(value)

    def image_mean(cells: _Repeats) -> float:
        return float(np.mean([np.mean(values) for values in cells.values()]))

    keys = sorted(set(per_arm["supervised"]) & set(per_arm["ssl"]), key=lambda k: tuple(str(v) for v in k))
    sup = np.asarray([image_mean(per_arm["supervised"][k]) for k in keys], dtype=np.float64)
    ssl = np.asarray([image_mean(per_arm["ssl"][k]) for k in keys], dtype=np.float64)
    return sup, ssl


def per_image_comparison_table(results: Table) -> Table:
    """One-sided paired Wilcoxon test: supervised per-image errors exceed SSL ones (sec. 2.8, Figure 7)."""
    rows = []
    for metric in _present_metrics(results):
        sup, ssl = image_errors(results, metric)
        p = wilcoxon_greater(sup, ssl) if sup.size else math.nan
        mean_sup = float(sup.mean()) if sup.size else math.nan
        mean_ssl = float(ssl.mean()) if ssl.size else math.nan
        rows.append((CLINICAL_METRICS[metric], int(sup.size), mean_sup, mean_ssl, mean_sup - mean_ssl, p))
    return Table(
        tuple(rows),
        name="clinical_per_image",
        title="Per-image percent error, averaged over classes and label fractions: supervised vs SSL "
        "(one-sided paired Wilcoxon, supervised > SSL)",
        columns=(
            "metric",
            "images",
            "mean_pct_error_supervised",
            "mean_pct_error_ssl",
            "reduction",
            "p_value",
        ),
    )
