"""Study 4, analysing: percent errors and agreement of the clinical metrics (paper sec. 2.7, 2.8).

The measurements come from :mod:`inpaintssl.studies.clinical` (``<metric>_pred``, ``_ref`` and
``_pct_error`` rows). This module computes the median percent errors per class, metric, label
fraction and arm (Figure 6); Bland-Altman bias and 95% limits of agreement and ICC(2,1) (absolute
agreement) between the metric from predicted and from true masks, beside the percent errors
(beyond the paper); and the per-image comparison of Figure 7 with a one-sided paired Wilcoxon test
that supervised errors exceed SSL errors (sec. 2.8).

Percent error suits ratio-scale metrics (volume, area, T2 in ms) but not mean HU: HU has an
arbitrary zero (water), so a percent of a reference mean near 0 HU explodes and flips sign with it
(:mod:`inpaintssl.metrics.clinical`). So the tables here also give the absolute error, in the
metric's unit, from the ``_pred`` and ``_ref`` rows (:func:`absolute_error_medians`; the
``median_abs_error`` column of :func:`agreement_table`), and the per-image comparison tests mean HU
on absolute errors in HU, beside the paper's percent errors.

Every table is by label fraction, so rows without a ``label_fraction`` (a run measured outside a
study's fine-tuning grid) are left out of all of them, as :mod:`inpaintssl.analysis.summaries`
leaves them out of the Dice summaries.

Example:
    >>> rows = [{"metric": "volume_mm3_pct_error", "class_name": "wm", "label_fraction": 0.5,
    ...          "arm": a, "volume_id": v, "value": x}
    ...         for a, v, x in [("ssl", "a", 2.0), ("ssl", "b", 4.0), ("supervised", "a", 9.0)]]
    >>> percent_error_medians(Table(rows))
    [('volume_mm3', 'wm', 0.5, 'ssl', 3.0, 2, 0), ('volume_mm3', 'wm', 0.5, 'supervised', 9.0, 1, 0)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inpaintssl.analysis.summaries import baseline_key, limited_fractions, named_baselines
from inpaintssl.analysis.table import Table
from inpaintssl.metrics import MEASUREMENT_SCALES, MEASUREMENT_UNITS, bland_altman, icc
from inpaintssl.stats import holm_adjusted, wilcoxon_greater

__all__ = [
    "CLINICAL_METRICS",
    "ImageErrors",
    "absolute_error_medians",
    "agreement_table",
    "image_errors",
    "paired_image_errors",
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


def _error_rows(results: Table, metric: str, quantity: str) -> Table:
    """``<metric>_pct_error`` rows, or absolute errors: ``<metric>_abs_error`` rows when recorded,
    else ``|pred - ref|`` of each ``_pred`` row and the ``_ref`` row of its item, run and class."""
    if quantity == "pct_error":
        return _metric_rows(results, metric, "pct_error")
    recorded = _metric_rows(results, metric, "abs_error")
    if recorded.rows:
        return recorded
    ref = {_pair_key(r): float(r["value"]) for r in _metric_rows(results, metric, "ref")}
    derived = [
        {**row, "metric": f"{metric}_abs_error", "value": abs(float(row["value"]) - ref[_pair_key(row)])}
        for row in _metric_rows(results, metric, "pred")
        if _pair_key(row) in ref
    ]
    return Table(tuple(derived))


def _with_label_fraction(rows: Table) -> Table:
    """The rows that belong to a label fraction; the tables here have no row for the others."""
    return rows.where(lambda r: r.get("label_fraction") is not None)


def _compared_arms(rows: Table, what: str) -> Table:
    """The rows of the arms compared: every row but the supervised ones of baselines no SSL row names.

    The supervised arm is the baselines the SSL strategies are paired with, every run of their
    settings (:func:`~inpaintssl.analysis.summaries.named_baselines` ``by="setting"``), as in
    Figures 3 and 7: a baseline trained at a learning rate or budget no SSL run used is no one's
    comparison. Without ``baseline_id`` (results recorded before runs named their baseline) every
    supervised row is kept.
    """
    kept = {id(row) for row in named_baselines(rows, strict=False, what=what, by="setting")}
    return rows.where(lambda row: row.get("arm") != "supervised" or id(row) in kept)


def _present_metrics(results: Table) -> list[str]:
    found = {str(m) for m in results.unique("metric")}
    return [m for m in CLINICAL_METRICS if f"{m}_pct_error" in found]


def percent_error_medians(results: Table) -> list[tuple[str, str, float, str, float, int, int]]:
    """Median percent error over the test scans per metric, class, label fraction and arm (Figure 6).

    A scan measured by several runs of one arm (subset seeds) counts once, with its runs' errors
    averaged, as in :func:`agreement_table`. A scan with a non-finite error in any of those runs
    is left out and counted: the model missed the tissue (no predicted mean T2 or HU), or the
    reference has none. Read a median beside its ``n`` and ``not_comparable``: an arm that misses
    a tissue on hard scans keeps only its easy ones. Rows without a ``label_fraction`` are left
    out (there is no row of the table to put them in).

    The supervised arm is the baselines the SSL strategies are compared with, every run of their
    settings (their ``baseline_id``; the study's every supervised run when the rows name none), as
    in Figure 7: not a baseline trained at a learning rate or budget no SSL run used. With several
    such baselines (a grid over learning rates) each arm pools its runs: the SSL strategies on one
    side, their baselines on the other.

    For mean HU, an interval scale, read :func:`absolute_error_medians` instead.

    Returns:
        ``(metric, class, label_fraction, arm, median, n, not_comparable)`` rows; ``n`` counts the
        scans in the median.
    """
    return _error_medians(results, "pct_error")


def absolute_error_medians(results: Table) -> list[tuple[str, str, float, str, float, int, int]]:
    """Median absolute error ``|pred - ref|``, in the metric's unit, as :func:`percent_error_medians`.

    The error to read for mean HU: HU is an interval scale (its zero is water's), where a percent
    of the reference is meaningless near 0 HU. Computed from the ``_pred`` and ``_ref`` rows.

    Returns:
        ``(metric, class, label_fraction, arm, median, n, not_comparable)`` rows, as there.

    Example:
        >>> cells = [("a", "pred", 3.0), ("a", "ref", 0.0), ("a", "pct_error", float("inf")),
        ...          ("b", "pred", -4.0), ("b", "ref", 1.0), ("b", "pct_error", 500.0)]
        >>> rows = [{"metric": f"mean_hu_{q}", "class_name": "water", "label_fraction": 0.5, "arm": "ssl",
        ...          "run_id": "r", "volume_id": v, "value": x} for v, q, x in cells]
        >>> absolute_error_medians(Table(rows))  # 3 and 5 HU off; in percent: inf and 500 %
        [('mean_hu', 'water', 0.5, 'ssl', 4.0, 2, 0)]
    """
    return _error_medians(results, "abs_error")


def _error_medians(results: Table, quantity: str) -> list[tuple[str, str, float, str, float, int, int]]:
    out = []
    for metric in _present_metrics(results):
        rows = _compared_arms(
            _with_label_fraction(_error_rows(results, metric, quantity)), f"{metric} errors by arm"
        )
        for (name, fraction, arm), table in rows.groups("class_name", "label_fraction", "arm").items():
            by_scan: dict[tuple[Any, ...], list[float]] = {}
            for row in table:
                by_scan.setdefault(_scan_key(row), []).append(float(row["value"]))
            values = np.asarray(
                [np.mean(v) for v in by_scan.values() if np.all(np.isfinite(v))], dtype=np.float64
            )
            median = float(np.median(values)) if values.size else math.nan
            out.append(
                (
                    metric,
                    str(name),
                    float(fraction),
                    str(arm),
                    median,
                    int(values.size),
                    len(by_scan) - values.size,
                )
            )
    return out


def _item_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row.get("subset_seed"), row.get("level"), row.get("volume_id"), row.get("slice_index"))


def _pair_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What pairs a predicted measurement with its reference: the item, the run and the class."""
    return (*_item_key(row), row.get("run_id"), row.get("class_name"))


def _scan_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The scan (or CT image) a measurement is of, whichever run and subset seed measured it."""
    return (row.get("level"), row.get("volume_id"), row.get("slice_index"))


def _per_scan_means(pairs: Sequence[tuple[tuple[Any, ...], float, float]]) -> tuple[np.ndarray, int]:
    """``(predicted, reference)`` per scan, the predictions of its runs (subset seeds) averaged.

    A scan measured by several runs of one arm is one subject, not several: as pairs of their own
    they would count it once per seed in Bland-Altman's limits and the ICC (pseudo-replication).
    A scan with a non-finite value in any run is left out; the second item counts those scans.
    """
    by_scan: dict[tuple[Any, ...], tuple[list[float], float]] = {}
    for scan, predicted, reference in pairs:
        by_scan.setdefault(scan, ([], reference))[0].append(predicted)
    kept = [
        (float(np.mean(values)), reference)
        for values, reference in by_scan.values()
        if math.isfinite(reference) and all(math.isfinite(v) for v in values)
    ]
    return np.asarray(kept, dtype=np.float64).reshape(-1, 2), len(by_scan) - len(kept)


def agreement_table(results: Table) -> Table:
    """Percent error beside Bland-Altman and ICC(2,1) per metric, class, label fraction and arm.

    Bland-Altman: bias and 95% limits of ``predicted - reference`` (Bland & Altman 1986). ICC:
    two-way random, absolute agreement, single measure (:func:`inpaintssl.metrics.icc`). Each
    scan is one pair, its runs' (subset seeds') predictions averaged, so ``n`` counts scans, not
    scans times seeds; fewer than 2 give NaN. A scan with a non-finite value in any run is left out
    of every column and counted in ``not_comparable``: a tissue the model missed (no predicted mean
    T2 or HU) or found where the reference has none. An arm's statistics cover only its ``n``
    scans, so read them beside ``not_comparable``. The median percent error is
    :func:`percent_error_medians`' (Figure 6's), over the scans with a finite percent error: these
    are the ``n`` scans but for those whose reference is 0 (a tissue absent from the reference, as
    on many CT slices), whose percent error is infinite or undefined while their pair still enters
    Bland-Altman and the ICC; :func:`percent_error_medians` counts the scans of its median.
    Predictions without a ``label_fraction``
    are left out, as there. ``median_abs_error`` is :func:`absolute_error_medians`', in the
    metric's unit: for mean HU (an interval scale) read it, not the percent error. The supervised
    arm is the baselines the SSL strategies are compared with, as there.
    """
    medians = {(m, c, f, a): med for m, c, f, a, med, _, _ in percent_error_medians(results)}
    absolute = {(m, c, f, a): med for m, c, f, a, med, _, _ in absolute_error_medians(results)}
    rows = []
    for metric in _present_metrics(results):
        pred = _compared_arms(
            _with_label_fraction(_metric_rows(results, metric, "pred")), f"{metric} agreement"
        )
        ref = {_pair_key(r): float(r["value"]) for r in _metric_rows(results, metric, "ref")}
        for (name, fraction, arm), table in pred.groups("class_name", "label_fraction", "arm").items():
            pairs = [
                (_scan_key(r), float(r["value"]), ref[_pair_key(r)]) for r in table if _pair_key(r) in ref
            ]
            # A tissue the model missed has no mean T2 or HU: its scan drops out of every statistic
            # here, which would flatter the arm that misses most; the count says so.
            arr, not_comparable = _per_scan_means(pairs)
            bias = lower = upper = agreement = math.nan
            if arr.shape[0] >= 2:
                ba = bland_altman(arr[:, 0], arr[:, 1])
                bias, lower, upper, agreement = ba.bias, ba.lower, ba.upper, icc(arr)
            key = (metric, str(name), float(fraction), str(arm))
            median = medians.get(key, math.nan)
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
                    absolute.get(key, math.nan),
                )
            )
    return Table(
        tuple(rows),
        name="clinical_agreement",
        title="Clinical metrics per scan, its subset seeds' predictions averaged first (n counts scans): "
        "median percent error (Figure 6), Bland-Altman bias and 95% limits of agreement "
        "(predicted - reference), ICC(2,1) absolute agreement, median absolute error in the metric's unit "
        "(the error to read for mean HU, whose zero is arbitrary)",
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
            "median_abs_error",
        ),
    )


@dataclass(frozen=True)
class ImageErrors:
    """Per-image percent errors of the two arms, paired, and the cells left out (Figure 7).

    Attributes:
        supervised: ``(M,)`` an image's error with supervised segmentations.
        ssl: ``(M,)`` the same image's error with SSL segmentations.
        not_comparable: ``(image, label fraction, class)`` cells left out because one arm has no
            finite error there in some run (a missed tissue, a reference without the tissue), or
            has no run there at all.
    """

    supervised: FloatArray
    ssl: FloatArray
    not_comparable: int


_Repeats = dict[tuple[Any, ...], dict[tuple[Any, ...], list[tuple[float, str | None]]]]
"""Per image, the SSL errors by (label fraction, class): each repeat (seed, strategy) with its pair."""
_Baselines = dict[tuple[Any, ...], dict[tuple[Any, ...], dict[str | None, list[float]]]]
"""Per image, the supervised errors by (label fraction, class) and baseline run."""


def paired_image_errors(
    results: Table,
    metric: str,
    *,
    label_fractions: Sequence[float] | None = None,
    quantity: Literal["pct_error", "abs_error"] = "pct_error",
) -> ImageErrors:
    """Per-image percent errors of supervised and SSL segmentations, paired (sec. 2.7, Figure 7).

    As in the paper, an image's error is averaged over classes and label-limited fractions (by
    default :func:`~inpaintssl.analysis.summaries.limited_fractions`: every fraction but 1.0, the
    paper's 50/25/10/5 %, when others exist). Repeats within a fraction and class (subset seeds,
    and SSL strategies if there are several) are averaged first, so a fraction drawn with more
    seeds does not weigh more.

    Each SSL run is compared with its own baseline: the supervised run its rows name in
    ``baseline_id``, trained with the same label fraction, subset seed and non-transfer settings
    (a fine-tuning grid over learning rates trains one per rate). The supervised error of a cell
    is the mean of the SSL repeats' baselines, so both arms average the same pairs; an SSL run
    whose baseline has not measured the cell is left out of it. Rows without ``baseline_id``
    (results recorded before runs named their baseline) are compared with every supervised row,
    which must then be of one baseline (:func:`~inpaintssl.analysis.summaries.named_baselines`).

    Both arms average the same cells: a cell enters only where every paired repeat of both arms has
    a finite error, so an arm that misses a tissue is not scored on the other tissues alone;
    :attr:`ImageErrors.not_comparable` counts the cells left out.

    Args:
        results: The long results table (``<metric>_pct_error`` rows).
        metric: A key of :data:`CLINICAL_METRICS`.
        label_fractions: The fractions to average over.
        quantity: ``"pct_error"`` (the paper's percent errors) or ``"abs_error"`` (``|pred -
            ref|`` in the metric's unit, from the ``_pred`` and ``_ref`` rows; the one for mean HU).

    Returns:
        The paired errors of the images with at least one cell both arms measured.

    Raises:
        ValueError: The SSL rows name no baseline and the supervised rows are of several, or some
            SSL rows name one and others do not.
    """
    rows = _error_rows(results, metric, quantity)
    chosen = set(limited_fractions(rows) if label_fractions is None else label_fractions)
    rows = rows.where(lambda r: r.get("label_fraction") in chosen)
    ssl_rows = rows.select(arm="ssl")
    supervised_rows = named_baselines(rows, ssl=ssl_rows, what=f"per-image {metric} errors")
    # Without baseline_id every SSL repeat is paired with all (one baseline's) supervised rows.
    by_run = any(baseline_key(row) is not None for row in ssl_rows)

    def pair_of(row: Mapping[str, Any]) -> str | None:
        return baseline_key(row) if by_run else None

    repeats: _Repeats = {}
    for row in ssl_rows:
        cell = (row.get("label_fraction"), row.get("class_name"))
        repeats.setdefault(_scan_key(row), {}).setdefault(cell, []).append(
            (float(row["value"]), pair_of(row))
        )
    baselines: _Baselines = {}
    for row in supervised_rows:
        cell = (row.get("label_fraction"), row.get("class_name"))
        runs = baselines.setdefault(_scan_key(row), {}).setdefault(cell, {})
        runs.setdefault(pair_of(row), []).append(float(row["value"]))

    def compared(image: tuple[Any, ...]) -> dict[tuple[Any, ...], tuple[float, float]]:
        """``(supervised, ssl)`` of each cell where the SSL repeats and their baselines are finite."""
        found = {}
        for cell, ssl_repeats in repeats.get(image, {}).items():
            runs = baselines.get(image, {}).get(cell, {})
            pairs = [(value, runs[key]) for value, key in ssl_repeats if key in runs]
            ssl_values = [value for value, _ in pairs]
            supervised_values = [value for _, partner in pairs for value in partner]
            if pairs and np.all(np.isfinite(ssl_values)) and np.all(np.isfinite(supervised_values)):
                supervised = float(np.mean([np.mean(partner) for _, partner in pairs]))
                found[cell] = (supervised, float(np.mean(ssl_values)))
        return found

    every_cell = {
        (image, cell) for arm in (repeats, baselines) for image, cells in arm.items() for cell in cells
    }
    images = sorted({image for image, _ in every_cell}, key=lambda k: tuple(str(v) for v in k))
    sup, ssl = [], []
    used = 0
    for image in images:
        cells = compared(image)
        shared = sorted(cells, key=lambda k: tuple(str(v) for v in k))
        used += len(shared)
        if shared:
            sup.append(float(np.mean([cells[c][0] for c in shared])))
            ssl.append(float(np.mean([cells[c][1] for c in shared])))
    return ImageErrors(
        supervised=np.asarray(sup, dtype=np.float64),
        ssl=np.asarray(ssl, dtype=np.float64),
        not_comparable=len(every_cell) - used,
    )


def image_errors(results: Table, metric: str) -> tuple[FloatArray, FloatArray]:
    """``(supervised (M,), ssl (M,))`` of :func:`paired_image_errors`, over the images both arms have."""
    found = paired_image_errors(results, metric)
    return found.supervised, found.ssl


def per_image_comparison_table(results: Table) -> Table:
    """One-sided paired Wilcoxon test: supervised per-image errors exceed SSL ones (sec. 2.8, Figure 7).

    One row per metric with the paper's percent errors (``error_unit`` ``%``); a metric on an
    interval scale (mean HU) gets a row on absolute errors in its unit first (``error_unit`` ``HU``),
    since its percent errors explode and flip sign for tissue near 0 HU. The ``mean_error_*`` and
    ``reduction`` columns hold the errors in ``error_unit``.

    ``p_holm`` is ``p_value`` adjusted over the table's family of hypotheses
    (:func:`~inpaintssl.stats.holm_adjusted`): one per metric, "SSL reduces the per-image error of
    this measurement". A metric tested twice is one hypothesis, and counting it twice would inflate
    every adjusted p-value. So the family holds each metric's primary row: the percent row of a
    ratio-scale metric (volume, area, T2), the absolute row of an interval-scale one (mean HU, whose
    percent error has no meaning near its arbitrary zero). Mean HU's percent row, the paper's
    reading kept for comparison, is a secondary analysis outside the family: its ``p_holm`` is NaN
    and its ``p_value`` is read on its own. Mean HU without ``_pred`` and ``_ref`` rows has its
    percent row alone, which is then its row in the family. Read ``p_holm`` to ask which
    measurements SSL improves, ``p_value`` to read one row on its own.
    """
    rows = []
    in_family: list[bool] = []
    for metric in _present_metrics(results):
        quantities: list[Literal["pct_error", "abs_error"]] = ["pct_error"]
        if MEASUREMENT_SCALES.get(metric) == "interval" and _error_rows(results, metric, "abs_error").rows:
            quantities.insert(0, "abs_error")
        for quantity in quantities:
            found = paired_image_errors(results, metric, quantity=quantity)
            sup, ssl = found.supervised, found.ssl
            p = wilcoxon_greater(sup, ssl) if sup.size else math.nan
            mean_sup = float(sup.mean()) if sup.size else math.nan
            mean_ssl = float(ssl.mean()) if ssl.size else math.nan
            rows.append(
                (
                    CLINICAL_METRICS[metric],
                    int(sup.size),
                    found.not_comparable,
                    mean_sup,
                    mean_ssl,
                    mean_sup - mean_ssl,
                    p,
                    math.nan,  # p_holm, once every primary row's test is known
                    "%" if quantity == "pct_error" else MEASUREMENT_UNITS.get(metric, "abs"),
                )
            )
            # The metric's first row is its primary test; a second one is the same hypothesis.
            in_family.append(quantity == quantities[0])
    family = [i for i, primary in enumerate(in_family) if primary]
    holm = dict(zip(family, holm_adjusted([rows[i][6] for i in family])))
    rows = [(*row[:7], float(holm.get(i, math.nan)), *row[8:]) for i, row in enumerate(rows)]
    return Table(
        tuple(rows),
        name="clinical_per_image",
        title="Per-image error, averaged over classes and label-limited fractions that both arms "
        "measured: supervised vs SSL (one-sided paired Wilcoxon, supervised > SSL); not_comparable: "
        "(image, fraction, class) cells left out; errors in error_unit (% of the reference, or HU for "
        "mean HU, whose zero is arbitrary); p_holm: Holm-adjusted over one row per metric (mean HU: its HU "
        "row; its % row, a secondary reading, is outside the family: NaN)",
        columns=(
            "metric",
            "images",
            "not_comparable",
            "mean_error_supervised",
            "mean_error_ssl",
            "reduction",
            "p_value",
            "p_holm",
            "error_unit",
        ),
    )
