"""The numbers behind the paper's tables and figures, computed from a long results table.

Dice is averaged the way the paper does (sec. 2.5.2): per test volume for 3D data (the
``volume`` rows) or per slice for 2D data (``image`` rows), then over the test set. With several
subset seeds a point is the mean over seeds, with their minimum and maximum as the spread.

Example:
    >>> from inpaintssl.experiments.results import ResultsTable
    >>> rows = [{"arm": "supervised", "strategy": "supervised", "label_fraction": f, "subset_seed": 0,
    ...          "level": "image", "volume_id": v, "slice_index": 0, "class_name": "gm",
    ...          "metric": "dice", "value": d}
    ...         for f, v, d in [(1.0, "a", 0.9), (1.0, "b", 0.7), (0.5, "a", 0.6), (0.5, "b", 0.6)]]
    >>> [(c.name, c.x.tolist(), c.mean.tolist()) for c in dice_curves(ResultsTable(rows), class_name="gm")]
    [('supervised', [0.5, 1.0], [0.6, 0.8])]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inpaintssl.experiments.results import ResultsTable
from inpaintssl.stats import PowerLawFit, fit_power_law, labels_needed

__all__ = [
    "Curve",
    "ScalingSeries",
    "class_names",
    "dice_curves",
    "dice_level",
    "dice_rows",
    "labels_needed_rows",
    "paired_scores",
    "scaling_series",
    "transfer_boxes",
]

FloatArray = npt.NDArray[np.float64]
ItemKey = tuple[Any, ...]


def dice_level(results: ResultsTable) -> str:
    """``volume`` when the results hold per-volume Dice (3D data), else ``image``."""
    return "volume" if results.select(metric="dice_mean", level="volume").rows else "image"


def class_names(results: ResultsTable) -> list[str]:
    """Segmentation classes with per-class Dice, in first-seen order."""
    seen: dict[str, None] = {}
    for row in results.select(metric="dice"):
        seen.setdefault(str(row["class_name"]), None)
    return list(seen)


def dice_rows(
    results: ResultsTable, *, class_name: str | None = None, level: str | None = None
) -> ResultsTable:
    """Dice rows of one class (``None``: the class average) at one level (``None``: :func:`dice_level`)."""
    level = level or dice_level(results)
    if class_name is None:
        return results.select(metric="dice_mean", level=level)
    return results.select(metric="dice", class_name=class_name, level=level)


@dataclass(frozen=True)
class Curve:
    """Mean score against ``x`` for one series, with the spread over subset seeds.

    Attributes:
        name: Series name (e.g. a strategy).
        x: Sorted x values ``(P,)``.
        mean: Mean over seeds of the test-set mean ``(P,)``.
        low: Minimum over seeds ``(P,)``.
        high: Maximum over seeds ``(P,)``.
    """

    name: Any
    x: FloatArray
    mean: FloatArray
    low: FloatArray
    high: FloatArray


def _curve(name: Any, table: ResultsTable, x: str) -> Curve:
    per_seed = {
        key: float(np.nanmean(t.column("value"))) for key, t in table.groups(x, "subset_seed").items()
    }
    xs = sorted({key[0] for key in per_seed})
    values = [[v for key, v in per_seed.items() if key[0] == xv] for xv in xs]
    return Curve(
        name=name,
        x=np.asarray(xs, dtype=np.float64),
        mean=np.asarray([np.mean(v) for v in values]),
        low=np.asarray([np.min(v) for v in values]),
        high=np.asarray([np.max(v) for v in values]),
    )


def dice_curves(
    results: ResultsTable,
    *,
    class_name: str | None = None,
    level: str | None = None,
    x: str = "label_fraction",
    series: str = "strategy",
) -> list[Curve]:
    """Test-set mean Dice against ``x`` (default the label fraction), one curve per ``series``.

    Args:
        results: The long results table.
        class_name: A class, or ``None`` for the class-averaged Dice.
        level: ``image`` or ``volume`` (default :func:`dice_level`).
        x: The column on the x axis.
        series: The column that names the curves.
    """
    rows = dice_rows(results, class_name=class_name, level=level).where(lambda r: r.get(x) is not None)
    return [_curve(key[0], table, x) for key, table in rows.groups(series).items()]


@dataclass(frozen=True)
class ScalingSeries:
    """Dice against the amount of pretraining data for one label fraction (paper Figure 5).

    Attributes:
        label_fraction: The fine-tuning label fraction.
        x: Pretraining data in % of the training set ``(P,)``; 0 is the supervised baseline.
        y: Test-set mean class-averaged Dice ``(P,)``.
        fit: ``y = a * x**k + c`` (``None`` with fewer than 3 distinct x or when the fit fails).
    """

    label_fraction: float
    x: FloatArray
    y: FloatArray
    fit: PowerLawFit | None


def _try_fit(x: FloatArray, y: FloatArray) -> PowerLawFit | None:
    if np.unique(x).size < 3:
        return None
    try:
        return fit_power_law(x, y)
    except (RuntimeError, ValueError):
        return None


def scaling_series(results: ResultsTable, *, level: str | None = None) -> list[ScalingSeries]:
    """Per label fraction: Dice at each amount of pretraining data, with its power-law fit (sec. 2.6).

    SSL runs sit at their pretraining run's ``pretrain_data_pct`` (100% = the training set alone);
    the supervised baseline sits at 0%, as in the paper's Figure 5.
    """
    rows = dice_rows(results, level=level)
    out = []
    for (fraction,), table in rows.groups("label_fraction").items():
        points: dict[float, list[float]] = {}
        for curve in dice_curves(table.select(arm="ssl"), level=level, x="pretrain_data_pct", series="arm"):
            for xv, yv in zip(curve.x, curve.mean):
                points.setdefault(float(xv), []).append(float(yv))
        for curve in dice_curves(table.select(arm="supervised"), level=level, series="arm"):
            points.setdefault(0.0, []).extend(float(v) for v in curve.mean)
        xs = np.asarray(sorted(points), dtype=np.float64)
        ys = np.asarray([np.mean(points[v]) for v in sorted(points)], dtype=np.float64)
        out.append(ScalingSeries(float(fraction), xs, ys, _try_fit(xs, ys)))
    return out


def labels_needed_rows(
    results: ResultsTable, *, target: float | None = None, level: str | None = None
) -> tuple[float, list[tuple[str, PowerLawFit | None, float]]]:
    """Labelled volumes each arm needs to reach a target Dice, from power laws of Dice vs labels.

    For the supervised baseline and for each amount of pretraining data, Dice is fitted against
    the number of labelled training volumes (the unit label-limited subsets are drawn by: scans for
    3D data, slices for 2D data) and the fit is solved for ``target`` with
    :func:`inpaintssl.stats.labels_needed`.

    Args:
        results: The long results table.
        target: Target Dice; default the supervised Dice with the most labels.
        level: ``image`` or ``volume`` (default :func:`dice_level`).

    Returns:
        ``(target, [(arm name, fit or None, labelled volumes needed (NaN without a fit))])``.
    """
    rows = dice_rows(results, level=level)
    arms: dict[str, ResultsTable] = {"supervised": rows.select(arm="supervised")}
    for (pct,), table in rows.select(arm="ssl").groups("pretrain_data_pct").items():
        arms[f"ssl, {format(pct, '.0f') if pct is not None else '?'}% pretraining data"] = table
    if target is None:
        supervised = dice_curves(arms["supervised"], level=level, x="labelled_volumes", series="arm")
        if not supervised or supervised[0].x.size == 0:
            raise ValueError("labels needed: no supervised results to take the default target Dice from")
        target = float(supervised[0].mean[-1])
    out: list[tuple[str, PowerLawFit | None, float]] = []
    for name, table in arms.items():
        curves = dice_curves(table, level=level, x="labelled_volumes", series="arm")
        fit = _try_fit(curves[0].x, curves[0].mean) if curves else None
        out.append((name, fit, labels_needed(fit, target) if fit is not None else math.nan))
    return target, out


def _item_key(row: Mapping[str, Any]) -> ItemKey:
    return (row.get("label_fraction"), row.get("subset_seed"), row.get("volume_id"), row.get("slice_index"))


def paired_scores(
    results: ResultsTable, *, level: str | None = None, label_fractions: Sequence[float] | None = None
) -> tuple[dict[str, FloatArray], FloatArray]:
    """Class-averaged Dice of each SSL strategy and of the baseline on the same test items (sec. 2.5.3).

    Items are ``(label fraction, subset seed, volume, slice)``; only items that every strategy and
    the baseline have are kept, in one order, so the arrays pair element-wise.

    Args:
        results: The long results table.
        level: ``image`` or ``volume`` (default :func:`dice_level`).
        label_fractions: Fractions to pool (default: all but 1.0, the paper's 50/25/10/5%, when
            other fractions exist).

    Returns:
        ``(strategy -> scores (M,), baseline scores (M,))``.
    """
    rows = dice_rows(results, level=level)
    if label_fractions is None:
        available = [f for f in rows.unique("label_fraction") if f is not None]
        label_fractions = [f for f in available if f != 1.0] or available
    chosen = set(label_fractions)
    rows = rows.where(lambda r: r.get("label_fraction") in chosen)
    tables = {"__baseline__": rows.select(arm="supervised")}
    for (name,), table in rows.select(arm="ssl").groups("strategy").items():
        tables[str(name)] = table
    maps = {name: {_item_key(r): float(r["value"]) for r in t} for name, t in tables.items()}
    common = set.intersection(*(set(m) for m in maps.values())) if maps else set()
    keys = sorted(common, key=lambda k: tuple(str(v) for v in k))
    arrays = {name: np.asarray([m[k] for k in keys], dtype=np.float64) for name, m in maps.items()}
    baseline = arrays.pop("__baseline__")
    return arrays, baseline


def transfer_boxes(
    results: ResultsTable, *, level: str | None = None
) -> dict[str, dict[tuple[float, str], FloatArray]]:
    """Per-item class-averaged Dice of the transfer-design runs (paper Figure A1).

    Returns:
        ``{panel: {(first lr, acronym): scores}}``; panel ``"trained once"`` holds the one-run
        schedules, ``"second lr <v>"`` the two-run schedules by their second run's rate.
    """
    rows = dice_rows(results, level=level).select(arm="ssl")
    panels: dict[tuple[float, str], dict[tuple[float, str], FloatArray]] = {}
    for (_schedule, second, lr, name), table in rows.groups("schedule", "second_lr", "lr", "acronym").items():
        # "trained once" first, then the two-phase panels by decreasing second learning rate.
        panel = (math.inf, "trained once") if second is None else (float(second), f"second lr {second:g}")
        panels.setdefault(panel, {})[(float(lr), str(name))] = table.column("value")
    return {label: boxes for (_, label), boxes in sorted(panels.items(), key=lambda kv: -kv[0][0])}
