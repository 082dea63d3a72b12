"""The numbers behind the paper's tables and figures, computed from a long results table.

Dice is averaged the way the paper does (sec. 2.5.2): per test volume for 3D data (the
``volume`` rows) or per slice for 2D data (``image`` rows), then over the test set. With several
subset seeds a point is the mean over seeds, with their minimum and maximum as the spread.

Each SSL run is compared with the supervised baseline trained like it (same label fraction, subset
seed, non-transfer fine-tuning settings and number of steps; :mod:`inpaintssl.studies.grid`): its
rows name that baseline's run id in ``baseline_id``, and a baseline's rows carry their own
``run_id``. A study whose grid varies the learning rate or budget has several baselines per label
fraction and seed, so every comparison here takes a strategy's own baseline
(:func:`named_baselines`), never all supervised rows: the runs its rows name for paired tests,
every run of those baselines' settings for curves and targets (a curve must not lose a label
fraction because an SSL run there has not finished). Results recorded before runs named their
baseline have no ``baseline_id``; they are compared with every supervised row when those are of
one baseline (one supervised ``strategy``), and refused when there are several, since which one a
strategy was trained like is then unknown.

Example:
    >>> from inpaintssl.analysis.table import Table
    >>> rows = [{"arm": "supervised", "strategy": "supervised", "label_fraction": f, "subset_seed": 0,
    ...          "level": "image", "volume_id": v, "slice_index": 0, "class_name": "gm",
    ...          "metric": "dice", "value": d}
    ...         for f, v, d in [(1.0, "a", 0.9), (1.0, "b", 0.7), (0.5, "a", 0.6), (0.5, "b", 0.6)]]
    >>> [(c.name, c.x.tolist(), c.mean.tolist()) for c in dice_curves(Table(rows), class_name="gm")]
    [('supervised', [0.5, 1.0], [0.6, 0.8])]
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inpaintssl.analysis.table import Table
from inpaintssl.options import check_option
from inpaintssl.stats import (
    LabelsNeededInterval,
    PowerLawFit,
    fit_power_law,
    holm_adjusted,
    labels_needed,
    labels_needed_interval,
    wilcoxon_greater,
)
from inpaintssl.stats.labels_needed import DEFAULT_RESAMPLES

__all__ = [
    "BaselinePair",
    "Curve",
    "LabelsNeeded",
    "ScalingSeries",
    "baseline_key",
    "baseline_name",
    "baseline_pairs",
    "class_names",
    "dice_curves",
    "dice_level",
    "dice_rows",
    "label_fraction_summary",
    "labels_needed_estimates",
    "labels_needed_intervals",
    "labels_needed_rows",
    "limited_fractions",
    "named_baselines",
    "paired_scores",
    "paired_with_baseline",
    "pooled_fractions",
    "scaling_series",
    "scaling_strategy",
    "transfer_boxes",
    "with_mean_class",
]

FloatArray = npt.NDArray[np.float64]
ItemKey = tuple[Any, ...]


def _id_text(value: Any) -> str | None:
    # A run id as text; None and "" (a None written to CSV) mean none was recorded.
    return None if value is None or value == "" else str(value)


def baseline_key(row: Mapping[str, Any]) -> str | None:
    """The run id of the supervised baseline a result row belongs to, ``None`` when not recorded.

    An SSL row's ``baseline_id`` (the baseline it is compared with); a supervised row's own run
    (``run_id``, else its ``baseline_id``: a baseline names itself). An SSL row and a supervised
    row are of one pair when their keys are equal.

    Example:
        >>> baseline_key({"arm": "ssl", "run_id": "ft-1", "baseline_id": "ft-0"})
        'ft-0'
        >>> baseline_key({"arm": "supervised", "run_id": "ft-0"}), baseline_key({"arm": "ssl"})
        ('ft-0', None)
    """
    if row.get("arm") == "supervised":
        return _id_text(row.get("run_id")) or _id_text(row.get("baseline_id"))
    return _id_text(row.get("baseline_id"))


def named_baselines(
    results: Table,
    *,
    ssl: Table | None = None,
    strict: bool = True,
    what: str = "SSL vs supervised",
    by: Literal["run", "setting"] = "run",
) -> Table:
    """The supervised rows of the baselines that SSL rows are compared with.

    SSL rows that name their baselines (``baseline_id``) select the supervised rows of those runs
    (:func:`baseline_key`), and no others: a baseline trained at another learning rate or budget
    than an SSL run is not its comparison, and a baseline run at a label fraction or subset seed
    where no SSL run names it (none trained or finished there) is left out too, so both arms cover
    the same subsets. That is what a paired test needs. A curve or a target needs the baseline's
    setting instead: ``by="setting"`` keeps every supervised run of the settings (supervised
    ``strategy``: the grid names a baseline by what it trains with) of the selected runs, so the
    baseline's curve does not lose a label fraction where no SSL run has finished yet. A setting
    is known from at least one finished run of it that an SSL row names.

    SSL rows without ``baseline_id`` (results recorded before runs named their baseline, or no SSL
    rows at all) select every supervised row, which is right only when these are of one baseline
    (one supervised ``strategy``).

    Args:
        results: Rows of both arms (other rows are ignored).
        ssl: The SSL rows whose baselines to find (default: the SSL rows of ``results``).
        strict: Raise when SSL rows name no baseline and the supervised rows are of several;
            ``False`` returns every supervised row then (a figure may show every baseline).
        what: What the rows are for, to begin error messages with.
        by: ``"run"``: the named runs' rows (paired tests); ``"setting"``: every run of the
            named runs' settings (curves, targets, descriptive summaries).

    Returns:
        The selected supervised rows of ``results``.

    Raises:
        ValueError: Some SSL rows name their baseline and others do not; or none does and the
            supervised rows hold several baselines (``strict``).

    Example:
        >>> rows = [{"arm": "supervised", "strategy": "supervised lr=0.01", "run_id": "ft-a", "value": 0.5},
        ...         {"arm": "supervised", "strategy": "supervised lr=0.001", "run_id": "ft-b", "value": 0.7},
        ...         {"arm": "ssl", "strategy": "FEF lr=0.001", "baseline_id": "ft-b", "value": 0.8}]
        >>> named_baselines(Table(rows)).cells("strategy")
        ['supervised lr=0.001']
        >>> rows.append({**rows[1], "run_id": "ft-e"})  # a run of that setting no SSL row names
        >>> by_run, by_setting = named_baselines(Table(rows)), named_baselines(Table(rows), by="setting")
        >>> by_run.cells("run_id"), by_setting.cells("run_id")
        (['ft-b'], ['ft-b', 'ft-e'])
    """
    supervised = results.select(arm="supervised")
    ssl = results.select(arm="ssl") if ssl is None else ssl
    ids = {baseline_key(row) for row in ssl}
    named = {i for i in ids if i is not None}
    if named:
        if None in ids:
            raise ValueError(
                f"{what}: some SSL rows name the supervised baseline they are compared with "
                "(baseline_id) and some do not; results of one plan name it in every row "
                "(load_results adds the current plan's baseline_id to every run)"
            )
        runs = supervised.where(lambda row: baseline_key(row) in named)
        if by == "run":
            return runs
        settings = set(runs.unique("strategy"))
        return supervised.where(lambda row: row.get("strategy") in settings)
    strategies = [str(name) for name in supervised.unique("strategy")]
    if strict and len(strategies) > 1:
        raise ValueError(
            f"{what}: the SSL rows do not name the supervised baseline they are compared with (no "
            f"baseline_id: results recorded before each SSL run was paired with a baseline trained "
            f"like it), and the supervised rows are of {len(strategies)} baselines {strategies}; "
            "which one an SSL run was trained like is unknown. Load the results with load_results, "
            "which adds each run's baseline_id from the current plan, or keep one baseline's rows"
        )
    return supervised


def dice_level(results: Table) -> str:
    """``volume`` when the results hold per-volume Dice (3D data), else ``image``."""
    return "volume" if _holds_dice_at(results, "volume") else "image"


def _holds_dice_at(results: Table, level: str) -> bool:
    """Whether ``results`` hold a class-averaged Dice at ``level``: up to the first such row only."""
    return any(row.get("metric") == "dice_mean" and row.get("level") == level for row in results.rows)


def class_names(results: Table) -> list[str]:
    """Segmentation classes with per-class Dice, in first-seen order."""
    seen: dict[str, None] = {}
    for row in results.select(metric="dice"):
        seen.setdefault(str(row["class_name"]), None)
    return list(seen)


DICE_LEVELS = ("image", "volume")
"""The levels results hold Dice at: per 2D image (slice), and per volume for 3D data."""


def dice_rows(results: Table, *, class_name: str | None = None, level: str | None = None) -> Table:
    """Dice rows of one class (``None``: the class average) at one level (``None``: :func:`dice_level`).

    Raises:
        ValueError: ``level`` is not ``image`` or ``volume``, or the results hold Dice at other
            levels only (every table of them came back empty, without a word).
    """
    if level is not None:
        check_option(level, DICE_LEVELS, field="level")
        # Called per class and fraction: the scans stop at the first row of the level asked for.
        other = next(held for held in DICE_LEVELS if held != level)
        if not _holds_dice_at(results, level) and _holds_dice_at(results, other):
            raise ValueError(
                f"level={level!r}: the results hold Dice per {other} only; expected "
                f"level={other!r}, or leave level out to take it from the results"
            )
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


def _curve(name: Any, table: Table, x: str) -> Curve:
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
    results: Table,
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
        strategy: The strategy whose runs the points are (:func:`scaling_strategy`), ``None``
            when the SSL runs are of one strategy (the study's grid varies the amount of data alone).
    """

    label_fraction: float
    x: FloatArray
    y: FloatArray
    fit: PowerLawFit | None
    strategy: str | None = None


def _try_fit(x: FloatArray, y: FloatArray) -> PowerLawFit | None:
    if np.unique(x).size < 3:
        return None
    try:
        return fit_power_law(x, y)
    except (RuntimeError, ValueError):
        return None


# studies.grid names a data_scaling strategy by the unlabelled data its pretraining adds, then its
# other grid values ("+25% unlabelled patch_size=16"): the first part is the x of Figure 5, not the
# strategy a series follows across it.
_ADDED_DATA = re.compile(r"^\+\S+(?: unlabelled)?(?: |$)")


def scaling_strategy(strategy: object) -> str:
    """The strategy an SSL run follows across amounts of pretraining data (Figure 5's series).

    A ``data_scaling`` strategy is named by the unlabelled data its pretraining adds, then by its
    other grid values (:mod:`inpaintssl.studies.grid`: ``+25% unlabelled patch_size=16``); the
    runs at every amount of data with the same other values are one series. The name without its
    leading ``+<amount>`` part says which: ``""`` when the grid varies the amount alone. Another
    name is its own series.

    Example:
        >>> scaling_strategy("+25% unlabelled patch_size=16 task=context_prediction")
        'patch_size=16 task=context_prediction'
        >>> scaling_strategy("+0% unlabelled"), scaling_strategy("ssl")
        ('', 'ssl')
    """
    return _ADDED_DATA.sub("", "" if strategy is None else str(strategy), count=1)


def _scaling_strategies(rows: Table) -> dict[str | None, Table]:
    """The SSL rows by :func:`scaling_strategy`, sorted; one strategy (or none) is keyed ``None``.

    Keyed ``None``, a study that varies the amount of pretraining data alone keeps the names its
    series and arms always had.
    """
    ssl = rows.select(arm="ssl")
    parts: dict[str, list[Mapping[str, Any]]] = {}
    for row in ssl:
        parts.setdefault(scaling_strategy(row.get("strategy")), []).append(row)
    if len(parts) < 2:
        return {None: ssl}
    return {name: Table(parts[name]) for name in sorted(parts)}


def scaling_series(results: Table, *, level: str | None = None) -> list[ScalingSeries]:
    """Per label fraction and strategy: Dice at each amount of pretraining data, its power-law fit (sec. 2.6).

    SSL runs sit at their pretraining run's ``pretrain_data_pct`` (100% = the training set alone);
    the supervised baseline sits at 0%, as in the paper's Figure 5: the baselines of the settings
    the SSL rows name (:func:`named_baselines` ``by="setting"``), not every supervised run of the
    study, and at every label fraction they ran at, whether or not an SSL run has finished there.

    A ``data_scaling`` grid over other settings too (patch sizes, pretext tasks, learning rates)
    has several strategies at each amount of data. Each is a series of its own
    (:func:`scaling_strategy`, :attr:`ScalingSeries.strategy`), starting at the baselines its own
    runs name, rather than being averaged with the others into one point; series are ordered by
    label fraction, then strategy. With one strategy, :attr:`ScalingSeries.strategy` is ``None``.

    Raises:
        ValueError: The SSL rows name no baseline and the supervised rows are of several.
    """
    rows = dice_rows(results, level=level)
    # A curve: the baseline's point at a fraction stays whichever SSL runs have finished there. Asked of
    # every SSL row first, so that rows of which only some name their baseline are refused.
    everyone = named_baselines(rows, what="Dice vs pretraining data", by="setting")
    strategies = _scaling_strategies(rows)
    baselines = {
        name: everyone
        if name is None
        else named_baselines(rows, ssl=ssl, what=f"Dice vs pretraining data ({name})", by="setting")
        for name, ssl in strategies.items()
    }
    out = []
    for fraction in rows.unique("label_fraction"):
        for name, ssl in strategies.items():
            points: dict[float, list[float]] = {}
            ssl_here = ssl.select(label_fraction=fraction)
            for curve in dice_curves(ssl_here, level=level, x="pretrain_data_pct", series="arm"):
                for xv, yv in zip(curve.x, curve.mean):
                    points.setdefault(float(xv), []).append(float(yv))
            baseline = baselines[name].select(label_fraction=fraction)
            for curve in dice_curves(baseline, level=level, series="arm"):
                points.setdefault(0.0, []).extend(float(v) for v in curve.mean)
            if not points:
                continue  # no Dice of this strategy (or its baseline) at this fraction
            xs = np.asarray(sorted(points), dtype=np.float64)
            ys = np.asarray([np.mean(points[v]) for v in sorted(points)], dtype=np.float64)
            out.append(ScalingSeries(float(fraction), xs, ys, _try_fit(xs, ys), name))
    return out


# The most decimals an amount of pretraining data is named with: amounts that differ only beyond
# this are refused rather than shown as one arm.
_PCT_DECIMALS = 6


def _pct_names(amounts: Iterable[Any]) -> dict[Any, str]:
    """Each amount of pretraining data (%) named with the fewest decimals that keep all apart.

    Whole percents (``100``) as long as no two amounts round alike, so the usual arm names stay
    as they are; ``100``, ``100.36`` and ``100.73`` (``100``, ``100`` and ``101`` in whole
    percents) are named ``100.0``, ``100.4`` and ``100.7``.

    Raises:
        ValueError: Two amounts are equal to :data:`_PCT_DECIMALS` decimals.
    """
    numbers = sorted({float(v) for v in amounts if v is not None})
    for decimals in range(_PCT_DECIMALS + 1):
        names = {v: format(v, f".{decimals}f") for v in numbers}
        if len(set(names.values())) == len(numbers):
            break
    else:
        clash = next(
            (a, b)
            for a, b in itertools.pairwise(numbers)
            if format(a, f".{_PCT_DECIMALS}f") == format(b, f".{_PCT_DECIMALS}f")
        )
        raise ValueError(
            f"labels needed: the amounts of pretraining data {clash[0]!r}% and {clash[1]!r}% "
            f"(pretrain_data_pct) are equal to {_PCT_DECIMALS} decimals, so their arms would share a "
            "name; expected amounts that differ by more (are the rows of two studies in one table?)"
        )
    return {None: "?", **names}


@dataclass(frozen=True)
class _LabelsArms:
    """The arms of labels needed and the supervised arm each is compared with."""

    tables: Mapping[str, Table]
    """Arm name -> its Dice rows: the supervised arms first, then the SSL arms."""
    baseline_of: Mapping[str, str | None]
    """Arm name -> the supervised arm it is compared with (a supervised arm: itself); ``None``
    for an SSL arm of a study with several baselines whose own baseline has no rows yet."""


def _labels_needed_arms(results: Table, level: str | None) -> _LabelsArms:
    """The arms of labels needed: the named baselines' settings, then SSL by strategy and % pretraining data.

    An SSL arm is named ``ssl, <pct>% pretraining data``, followed by its strategy
    (:func:`scaling_strategy`) when the rows hold several, so that strategies are not averaged.
    The SSL rows naming one baseline setting give one supervised arm, ``supervised``. A grid over
    a fine-tuning setting (a learning rate) has a baseline per setting: each is an arm of its own,
    named by its ``strategy`` (``supervised lr=0.01``), and each SSL arm is compared with the
    baseline its own rows name (:func:`named_baselines`), as Figure 5's series are.

    Raises:
        ValueError: The SSL rows name no baseline and the supervised rows are of several; or two
            amounts of pretraining data would give arms one name (:func:`_pct_names`).
    """
    rows = dice_rows(results, level=level)
    # By setting: the baseline's curve, hence the default target (its Dice with the most labels),
    # must not lose its 100% point because the SSL run there has not finished. Asked of every SSL
    # row first, so that rows of which only some name their baseline are refused.
    everyone = named_baselines(rows, what="labels needed", by="setting")
    strategies = _scaling_strategies(rows)
    pct_names = _pct_names(pct for ssl in strategies.values() for pct in ssl.unique("pretrain_data_pct"))
    ssl_arms: dict[str, Table] = {}
    for name, ssl in strategies.items():
        for (pct,), table in ssl.groups("pretrain_data_pct").items():
            arm = f"ssl, {pct_names[None if pct is None else float(pct)]}% pretraining data"
            ssl_arms[arm if name is None else f"{arm}, {name}"] = table
    if len(everyone.unique("strategy")) <= 1:
        # One baseline: every SSL arm is compared with it, under the name it always had.
        return _LabelsArms(
            {"supervised": everyone, **ssl_arms}, {name: "supervised" for name in ("supervised", *ssl_arms)}
        )
    supervised: dict[str, Table] = {}
    baseline_of: dict[str, str | None] = {}
    for arm, table in ssl_arms.items():
        own = named_baselines(rows, ssl=table, what=f"labels needed ({arm})", by="setting")
        settings = [baseline_name(s) for s in own.unique("strategy")]
        if not settings:
            baseline_of[arm] = None  # the runs it names have no rows yet: its setting is unknown
            continue
        # An arm whose runs name baselines of two settings (unusual) is compared with both pooled.
        title = " + ".join(settings)
        supervised[title] = own
        baseline_of[arm] = title
    tables = {title: supervised[title] for title in sorted(supervised)}
    return _LabelsArms({**tables, **ssl_arms}, {**{t: t for t in tables}, **baseline_of})


def _default_target(supervised: Table, cases: Sequence[ItemKey]) -> float:
    """A baseline's Dice with the most labelled volumes: the default target of its arms.

    The mean over test cases of each case's Dice there (its mean over subset seeds), the target
    the bootstrap resamples (:func:`labels_needed_intervals`), so that the count read off and its
    interval are for one target. With a Dice for every case and seed it is the mean over seeds of
    the test-set mean; a NaN Dice (``empty_score=nan``) weighs its case by the seeds that measured
    it rather than its seed by the cases that did.
    """
    labels, scores = _case_scores(supervised, cases)
    if labels.size == 0:
        rows = len(supervised)
        found = (
            f"{rows} supervised Dice rows, none with a 'labelled_volumes' count (the run result's "
            "number of labelled training volumes, which load_results adds)"
            if rows
            else "no supervised Dice rows"
        )
        raise ValueError(
            "labels needed: the default target is the supervised Dice with the most labelled volumes; "
            f"found {found}. Pass a target Dice, or load the results with load_results"
        )
    return float(_case_means(scores)[-1])


def _arm_targets(arms: _LabelsArms, target: float | None, cases: Sequence[ItemKey]) -> dict[str, float]:
    """Each arm's target: ``target``, else the default target of the baseline it is compared with.

    NaN for an arm without a baseline (:attr:`_LabelsArms.baseline_of` ``None``) and no ``target``.
    """
    defaults: dict[str, float] = {}
    out: dict[str, float] = {}
    for name, baseline in arms.baseline_of.items():
        if target is not None:
            out[name] = target
        elif baseline is None:
            out[name] = math.nan
        else:
            if baseline not in defaults:
                defaults[baseline] = _default_target(arms.tables[baseline], cases)
            out[name] = defaults[baseline]
    return out


def _one_target(targets: Iterable[float]) -> float:
    """The target all arms share, NaN when they have several (one default per baseline)."""
    found = {t for t in targets if not math.isnan(t)}
    return found.pop() if len(found) == 1 else math.nan


@dataclass(frozen=True)
class LabelsNeeded:
    """One arm's estimate of the labelled volumes needed to reach a target Dice (sec. 2.6).

    Attributes:
        arm: ``supervised`` (a baseline's ``strategy`` when the study has several), or
            ``ssl, <pct>% pretraining data`` (followed by the strategy when there are several).
        fit: The power law of the arm's Dice vs labelled volumes, ``None`` when none could be fitted.
        needed: Labelled volumes needed to reach :attr:`target` (``inf`` unreachable, NaN without
            a fit or a target).
        target: The target Dice: the one given, else the Dice with the most labelled volumes of
            the baseline the arm is compared with; NaN for an arm whose baseline has no rows yet.
        baseline: The supervised arm the arm is compared with (how many labels it saves); a
            supervised arm's own name; ``None`` when the baseline its rows name has no rows yet.
    """

    arm: str
    fit: PowerLawFit | None
    needed: float
    target: float
    baseline: str | None


def labels_needed_estimates(
    results: Table, *, target: float | None = None, level: str | None = None
) -> list[LabelsNeeded]:
    """Labelled volumes each arm needs to reach a target Dice, each with its own baseline and target.

    The arms and fits of :func:`labels_needed_rows`, with the target each count is for and the
    supervised arm each is compared with. A study with one baseline has one supervised arm,
    ``supervised``, and one target. A data_scaling grid over a fine-tuning setting (a learning
    rate) has a baseline per setting: each is an arm named by its ``strategy``
    (``supervised lr=0.01``), and each SSL arm is compared with the baseline its runs name
    (``baseline_id``, :func:`named_baselines`), whose Dice with the most labels is its default
    target, never with the baselines pooled into one curve.

    An arm's curve at a labelled-volume count, and a default target, is the mean over the test
    cases of each case's Dice there (its mean over subset seeds): the curve and target that
    :func:`labels_needed_intervals` resamples, so that each count is its interval's point estimate.
    With a Dice for every case and seed this is the mean over seeds of the test-set mean (the
    Dice table's); NaN Dice cells (``empty_score=nan``) make the two differ.

    Args:
        results: The long results table.
        target: Target Dice of every arm, in ``(0, 1]``; default each arm's baseline's Dice with
            the most labels.
        level: ``image`` or ``volume`` (default :func:`dice_level`).

    Returns:
        One estimate per arm: the supervised arms first, then the SSL arms by strategy and amount
        of pretraining data.

    Raises:
        ValueError: ``target`` is not a Dice in ``(0, 1]``; a baseline has no Dice with a
            labelled-volume count to take a default target from; the SSL rows name no baseline and
            the supervised rows are of several; or two amounts of pretraining data would give arms
            one name.

    Example:
        >>> rows = [{"arm": arm, "strategy": name, "run_id": f"{arm}-{lr}-{n}",
        ...          "baseline_id": f"supervised-{lr}-{n}", "level": "image", "volume_id": "v",
        ...          "slice_index": 0, "class_name": "", "metric": "dice_mean", "labelled_volumes": n,
        ...          "pretrain_data_pct": 100.0, "value": 0.9 - b / n**0.5}
        ...         for lr, sup, ssl in [("0.01", 0.8, 0.6), ("0.001", 0.5, 0.4)]
        ...         for arm, name, b in [("supervised", f"supervised lr={lr}", sup),
        ...                              ("ssl", f"+0% unlabelled lr={lr}", ssl)]
        ...         for n in (5, 10, 25, 50, 100)]
        >>> for e in labels_needed_estimates(Table(rows), target=0.8):
        ...     print(f"{e.arm}: {e.needed:g} vs {e.baseline}")
        supervised lr=0.001: 25 vs supervised lr=0.001
        supervised lr=0.01: 64 vs supervised lr=0.01
        ssl, 100% pretraining data, lr=0.001: 16 vs supervised lr=0.001
        ssl, 100% pretraining data, lr=0.01: 36 vs supervised lr=0.01
    """
    _check_target(target)
    arms = _labels_needed_arms(results, level)
    cases = _cases(*arms.tables.values())
    targets = _arm_targets(arms, target, cases)
    out: list[LabelsNeeded] = []
    for name, table in arms.tables.items():
        # The curve :func:`labels_needed_intervals` resamples (each case's Dice, then their mean), so
        # that the count is the interval's point estimate; the mean over seeds of test-set means
        # (dice_curves) differs from it once a NaN Dice leaves the design unbalanced.
        labels, scores = _case_scores(table, cases)
        means = _case_means(scores)
        fit = _try_fit(labels, means) if labels.size and not np.any(np.isnan(means)) else None
        aim = targets[name]
        needed = labels_needed(fit, aim) if fit is not None and not math.isnan(aim) else math.nan
        out.append(LabelsNeeded(name, fit, needed, aim, arms.baseline_of[name]))
    return out


def labels_needed_rows(
    results: Table, *, target: float | None = None, level: str | None = None
) -> tuple[float, list[tuple[str, PowerLawFit | None, float]]]:
    """Labelled volumes each arm needs to reach a target Dice, from power laws of Dice vs labels.

    For the supervised baseline and for each amount of pretraining data, Dice is fitted against
    the number of labelled training volumes (the unit label-limited subsets are drawn by: scans for
    3D data, slices for 2D data) and the fit is solved for ``target`` with
    :func:`inpaintssl.stats.labels_needed`. The supervised curve is that of the baselines the SSL
    rows are compared with, every run of their settings (:func:`named_baselines` ``by="setting"``),
    not of every supervised run of the study, so neither the curve nor the default target depends
    on which SSL runs have finished.
    :func:`labels_needed_intervals` adds bootstrap intervals over the test cases.

    The SSL arms are named ``ssl, <pct>% pretraining data`` (whole percents, or as many decimals
    as keep two amounts apart). A study whose grid varies more than the amount of pretraining data
    (patch sizes, pretext tasks) has several strategies at each amount; each is an arm of its own,
    named ``ssl, <pct>% pretraining data, <strategy>`` (:func:`scaling_strategy`), and arms are
    ordered by strategy, then amount, so that no arm's curve averages two strategies. A grid over a
    fine-tuning setting has a baseline per setting: each is a supervised arm of its own, and each
    SSL arm is solved for its own baseline's default target (:func:`labels_needed_estimates`,
    which also says which baseline each arm is compared with).

    Args:
        results: The long results table.
        target: Target Dice in ``(0, 1]``; default the supervised Dice with the most labels.
        level: ``image`` or ``volume`` (default :func:`dice_level`).

    Returns:
        ``(target, [(arm name, fit or None, labelled volumes needed (NaN without a fit))])``; the
        target is NaN when it is the default and the arms' baselines have different ones.

    Raises:
        ValueError: ``target`` is not a Dice in ``(0, 1]``; no supervised Dice with a
            labelled-volume count to take the default target from; the SSL rows name no baseline
            and the supervised rows are of several; or two amounts of pretraining data would give
            arms one name.
    """
    found = labels_needed_estimates(results, target=target, level=level)
    shared = target if target is not None else _one_target(e.target for e in found)
    return shared, [(e.arm, e.fit, e.needed) for e in found]


def _check_target(target: float | None) -> None:
    """Refuse a target that is not a Dice: one outside ``(0, 1]`` is never reached or needs 0 labels."""
    if target is None:
        return
    if isinstance(target, bool) or not isinstance(target, (int, float, np.integer, np.floating)):
        raise ValueError(f"labels needed: target must be a Dice in (0, 1] or None; found {target!r}")
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(
            f"labels needed: target must be a Dice in (0, 1] (a fraction, not a percent); found {target!r}"
        )


def _cases(*tables: Table) -> list[ItemKey]:
    """The test cases ``(volume_id, slice_index)`` of ``tables``, in one order for every arm."""
    return sorted(
        {(row.get("volume_id"), row.get("slice_index")) for table in tables for row in table},
        key=lambda k: tuple(str(v) for v in k),
    )


def _case_means(scores: FloatArray) -> FloatArray:
    """``(P,)`` mean over the cases measured at each count (NaN cells left out; NaN where none is).

    The mean :func:`~inpaintssl.stats.labels_needed_interval` fits, computed the same way.
    """
    means = np.full(scores.shape[0], np.nan)
    measured = np.any(~np.isnan(scores), axis=1)
    means[measured] = np.nanmean(scores[measured], axis=1)
    return means


def _case_scores(table: Table, cases: Sequence[ItemKey]) -> tuple[FloatArray, FloatArray]:
    """``(labels (P,), scores (P, N))``: each test case's Dice per labelled-volume count.

    A case's score at a count is the mean of its rows there (subset seeds, and strategies pooled in
    one arm); NaN where the case was not measured at that count.
    """
    by_cell: dict[tuple[float, ItemKey], list[float]] = {}
    for row in table.where(lambda r: r.get("labelled_volumes") is not None):
        key = (row.get("volume_id"), row.get("slice_index"))
        by_cell.setdefault((float(row["labelled_volumes"]), key), []).append(float(row["value"]))
    labels = sorted({x for x, _ in by_cell})
    column = {case: j for j, case in enumerate(cases)}
    scores = np.full((len(labels), len(cases)), np.nan)
    for (x, case), values in by_cell.items():
        scores[labels.index(x), column[case]] = float(np.nanmean(values))
    return np.asarray(labels, dtype=np.float64), scores


def labels_needed_intervals(
    results: Table,
    *,
    target: float | None = None,
    level: str | None = None,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[float, dict[str, LabelsNeededInterval | None]]:
    """Bootstrap intervals of :func:`labels_needed_rows`' counts over the test cases (sec. 2.6, 4).

    Each arm's count is re-estimated on ``n_resamples`` resamples of the test cases (volumes for 3D
    data, slices for 2D) with :func:`inpaintssl.stats.labels_needed_interval`. Every arm gets the
    same cases in the same column order and the same ``seed``, so resample ``b`` draws the same
    cases for every arm: the difference of two arms' resamples is a paired bootstrap of the labels
    saved. The default target is measured on the same test cases, so it is resampled with them:
    resample ``b``'s target is the supervised Dice with the most labels on resample ``b``'s cases
    (``target_per_case`` of :func:`~inpaintssl.stats.labels_needed_interval`), that of the
    baseline each arm is compared with (:func:`labels_needed_estimates`); a given ``target`` stays
    fixed.

    Each interval's :attr:`~inpaintssl.stats.LabelsNeededInterval.estimate` is the arm's count of
    :func:`labels_needed_estimates`: both fit the mean over the test cases of each case's Dice.

    Args:
        results: The long results table.
        target: Target Dice in ``(0, 1]``; default the supervised Dice with the most labels.
        level: ``image`` or ``volume`` (default :func:`dice_level`).
        confidence: Nominal coverage, e.g. 0.95.
        n_resamples: Bootstrap resamples per arm (default 1000).
        seed: Seed of the resampling generator.

    Returns:
        ``(target, {arm name: interval, or None with fewer than 3 labelled-volume counts or
        without a baseline to take the default target from})``, arms and target as in
        :func:`labels_needed_rows`.

    Raises:
        ValueError: As :func:`labels_needed_estimates`.
    """
    _check_target(target)
    arms = _labels_needed_arms(results, level)
    cases = _cases(*arms.tables.values())
    targets = _arm_targets(arms, target, cases)
    # The same cells each default target averages: each case's Dice at the most labels of the
    # baseline the arm is compared with.
    per_case = {
        name: _case_scores(arms.tables[name], cases)[1][-1]
        for name in set(arms.baseline_of.values())
        if name is not None and target is None
    }
    out: dict[str, LabelsNeededInterval | None] = {}
    for name, table in arms.tables.items():
        labels, scores = _case_scores(table, cases)
        if np.unique(labels).size < 3 or math.isnan(targets[name]):
            out[name] = None
            continue
        baseline = arms.baseline_of[name]
        out[name] = labels_needed_interval(
            labels,
            scores,
            targets[name],
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
            target_per_case=per_case.get(baseline) if baseline is not None else None,
        )
    shared = target if target is not None else _one_target(targets.values())
    return shared, out


def limited_fractions(results: Table) -> list[Any]:
    """The label fractions the paired comparisons pool by default (sec. 2.5.3, 2.7).

    Every label fraction of ``results`` but 1.0, the paper's label-limited 50/25/10/5%; all of them
    when 1.0 is the only one (:func:`pooled_fractions`). Rows without a label fraction are not counted.
    That fallback is for a study that plans 100% alone: results read while only a study's 100%-label
    runs have finished hold 1.0 alone too, so a caller that knows the plan pools
    :func:`pooled_fractions` of its planned fractions instead (as the report's Table 3 does).

    Example:
        >>> limited_fractions(Table([{"label_fraction": f} for f in (1.0, 0.5, 0.1, None)]))
        [0.1, 0.5]
        >>> limited_fractions(Table([{"label_fraction": 1.0}]))
        [1.0]
    """
    return pooled_fractions(results.unique("label_fraction"))


def pooled_fractions(fractions: Iterable[Any]) -> list[Any]:
    """Of ``fractions`` (``None`` skipped), those the paired comparisons pool: all but 1.0, or 1.0 alone.

    Example:
        >>> pooled_fractions([1.0, 0.25, 0.05]), pooled_fractions([1.0])
        ([0.25, 0.05], [1.0])
    """
    available = [f for f in fractions if f is not None]
    return [f for f in available if f != 1.0] or available


def _item_key(row: Mapping[str, Any]) -> ItemKey:
    return (row.get("label_fraction"), row.get("volume_id"), row.get("slice_index"))


SeedScores = dict[ItemKey, dict[Any, float]]
"""Test item ``(label fraction, volume, slice)`` -> subset seed -> score, for one arm."""


def _seed_scores(name: str, table: Table) -> SeedScores:
    found: SeedScores = {}
    measured: dict[ItemKey, set[Any]] = {}
    for row in table:
        key, seed = _item_key(row), row.get("subset_seed")
        seen = measured.setdefault(key, set())
        if seed in seen:
            raise ValueError(
                f"{name}: two scores for test item {key} at subset seed {seed!r}; expected one "
                "per item and seed (results of two studies merged into one table?)"
            )
        seen.add(seed)
        value = float(row["value"])
        # A NaN Dice (a class absent from both masks, scored with empty_score=nan) has no value to
        # pair: the item is left out at that seed for every arm, as the curves' nanmean leaves it out,
        # rather than failing the paired test.
        if not math.isnan(value):
            found.setdefault(key, {})[seed] = value
    return found


def _paired_means(arms: Sequence[SeedScores]) -> tuple[list[ItemKey], list[FloatArray]]:
    """Items every arm has, each arm's score averaged over the subset seeds all of them measured.

    A test item (a case at a label fraction) is one observation however many subsets were
    trained: pairing (item, seed) would
    count it once per seed and shrink the p-value with the number of training repeats.
    """
    keys = sorted(set.intersection(*(set(arm) for arm in arms)), key=lambda k: tuple(str(v) for v in k))
    kept: list[ItemKey] = []
    means: list[list[float]] = [[] for _ in arms]
    for key in keys:
        seeds = set.intersection(*(set(arm[key]) for arm in arms))
        if not seeds:
            continue
        kept.append(key)
        for out, arm in zip(means, arms):
            out.append(float(np.mean([arm[key][seed] for seed in seeds])))
    return kept, [np.asarray(m, dtype=np.float64) for m in means]


@dataclass(frozen=True)
class BaselinePair:
    """An SSL strategy and its own supervised baseline on the test items the two share (sec. 2.5.3).

    Attributes:
        ssl: The strategy's scores ``(M,)``, each test item's mean over the subset seeds both arms
            measured.
        baseline: The baseline's scores on the same items, in the same order ``(M,)``.
        baseline_name: The baseline's ``strategy`` (``supervised``, ``supervised lr=0.001``, ...;
            several joined by ``" + "``), ``None`` when the results hold none of its rows.
        missing_runs: The baseline runs the strategy's rows name (``baseline_id``) that have no
            rows in the results (not finished, failed, or not loaded), sorted: the strategy's
            items there have no pair.
    """

    ssl: FloatArray
    baseline: FloatArray
    baseline_name: str | None
    missing_runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Arm:
    """One SSL strategy's scores and the supervised rows of the baselines its runs name."""

    scores: SeedScores
    baseline: Table
    claims: Mapping[tuple[Any, Any], frozenset[str]]
    """(label fraction, subset seed) -> the baseline run ids its rows name there."""


def _arm_tables(
    results: Table, *, level: str | None, label_fractions: Sequence[float] | None, class_name: str | None
) -> dict[str, _Arm]:
    """Each SSL strategy by test item and subset seed, with its baseline's rows (:func:`named_baselines`)."""
    rows = dice_rows(results, class_name=class_name, level=level)
    chosen = set(limited_fractions(rows) if label_fractions is None else label_fractions)
    rows = rows.where(lambda r: r.get("label_fraction") in chosen)
    arms: dict[str, _Arm] = {}
    for (name,), table in rows.select(arm="ssl").groups("strategy").items():
        what = f"strategy {name!r}"
        claims: dict[tuple[Any, Any], set[str]] = {}
        for row in table:
            key = baseline_key(row)
            if key is not None:
                claims.setdefault((row.get("label_fraction"), row.get("subset_seed")), set()).add(key)
        baseline = named_baselines(rows, ssl=table, what=what)
        frozen = {k: frozenset(v) for k, v in claims.items()}
        arms[str(name)] = _Arm(_seed_scores(what, table), baseline, frozen)
    return arms


def baseline_name(strategy: object) -> str:
    """A supervised baseline's display name: its ``strategy``, ``supervised`` when none is recorded.

    Example:
        >>> baseline_name("supervised lr=0.001"), baseline_name(None)
        ('supervised lr=0.001', 'supervised')
    """
    return "supervised" if strategy is None else str(strategy)


def _one_baseline(arms: Mapping[str, _Arm]) -> Table:
    """The baseline every strategy is compared with, refused when their runs name different ones."""
    named: dict[tuple[Any, Any], dict[str, list[str]]] = {}
    for name, arm in arms.items():
        for subset, ids in arm.claims.items():
            for run in ids:
                named.setdefault(subset, {}).setdefault(run, []).append(name)
    kept: dict[int, Mapping[str, Any]] = {}
    for arm in arms.values():
        for row in arm.baseline:
            kept.setdefault(id(row), row)
    baseline = Table(kept.values())
    clashes = sorted(((k, v) for k, v in named.items() if len(v) > 1), key=lambda kv: str(kv[0]))
    if clashes:
        (fraction, seed), by_run = clashes[0]
        titles = {baseline_key(row): row.get("strategy") for row in baseline}
        found = "; ".join(
            f"{', '.join(repr(s) for s in strategies)} with {titles.get(run) or 'baseline'} ({run})"
            for run, strategies in sorted(by_run.items())
        )
        raise ValueError(
            "paired_scores compares every SSL strategy with one supervised baseline on the same test "
            "items, but the strategies were trained like different baselines (label fraction "
            f"{fraction}, subset seed {seed}: {found}); pair each strategy with its own baseline with "
            "paired_with_baseline, as Table 3 does"
        )
    return baseline


def paired_scores(
    results: Table,
    *,
    level: str | None = None,
    label_fractions: Sequence[float] | None = None,
    class_name: str | None = None,
) -> tuple[dict[str, FloatArray], FloatArray]:
    """Class-averaged Dice of each SSL strategy and of the baseline on the same test items (sec. 2.5.3).

    An item is a test image (or volume) at a label fraction. With several subset seeds each arm's
    score of an item is its mean over the seeds every arm measured: the item is one observation,
    however many subsets were trained on. Only items that every strategy and the baseline have are
    kept, in one order, so the arrays pair element-wise; :func:`paired_with_baseline` pairs each
    strategy on the items it shares with the baseline instead. A NaN score (a class absent from
    both masks, scored with ``empty_score=nan``) is no measurement: that item and seed is left
    out of the pairs, as the curves' means leave it out.

    One baseline array serves every strategy, so the strategies must be compared with the same
    baseline: their runs name (``baseline_id``) the same baseline run at each label fraction and
    subset seed, or name none and the results hold one (:func:`named_baselines`). Strategies
    trained like different baselines (another learning rate or budget) are refused rather than
    measured against one they were not trained like; :func:`paired_with_baseline` pairs each with
    its own. Without SSL strategies the baseline is empty: there is nothing to pair it with.

    Args:
        results: The long results table.
        level: ``image`` or ``volume`` (default :func:`dice_level`).
        label_fractions: Fractions to pool (default :func:`limited_fractions`: all but 1.0, the
            paper's 50/25/10/5%, when other fractions exist).
        class_name: Pair one class's Dice instead of the class average.

    Returns:
        ``(strategy -> scores (M,), baseline scores (M,))``.

    Raises:
        ValueError: An arm has two scores for one item and seed (two studies in one table); the
            strategies were trained like different baselines; or their rows name no baseline and
            the supervised rows are of several.
    """
    arms = _arm_tables(results, level=level, label_fractions=label_fractions, class_name=class_name)
    if not arms:
        return {}, np.zeros(0)
    baseline = _seed_scores("supervised baseline", _one_baseline(arms))
    names = list(arms)
    _, means = _paired_means([baseline, *(arms[name].scores for name in names)])
    return dict(zip(names, means[1:])), means[0]


def baseline_pairs(
    results: Table,
    *,
    level: str | None = None,
    label_fractions: Sequence[float] | None = None,
    class_name: str | None = None,
) -> dict[str, BaselinePair]:
    """Each SSL strategy and its own baseline on the test items the two share (sec. 2.5.3, Table 3).

    As :func:`paired_scores` (items at a label fraction, seeds averaged over those both arms
    measured), but each strategy is paired with its own baseline alone: the supervised runs its
    runs name in ``baseline_id``, trained with the same learning rate, budget and other
    non-transfer settings (:func:`named_baselines`), and a strategy with fewer finished runs (or
    whose baseline has fewer) is tested on fewer items without taking items away from the others.

    Returns:
        ``strategy -> BaselinePair``, M per strategy.

    Raises:
        ValueError: An arm has two scores for one item and seed (two studies in one table), or a
            strategy's rows name no baseline and the supervised rows are of several.

    Example:
        >>> rows = [{"arm": arm, "strategy": name, "run_id": run, "baseline_id": pair, "label_fraction": 0.5,
        ...          "subset_seed": 0, "level": "image", "volume_id": "v", "slice_index": 0,
        ...          "class_name": "", "metric": "dice_mean", "value": value}
        ...         for arm, name, run, pair, value in [
        ...             ("supervised", "supervised lr=0.01", "ft-a", "ft-a", 0.5),
        ...             ("supervised", "supervised lr=0.001", "ft-b", "ft-b", 0.7),
        ...             ("ssl", "FEF lr=0.01", "ft-c", "ft-a", 0.6),
        ...             ("ssl", "FEF lr=0.001", "ft-d", "ft-b", 0.8)]]
        >>> for name, p in baseline_pairs(Table(rows)).items():
        ...     print(name, p.ssl.tolist(), "vs", p.baseline_name, p.baseline.tolist())
        FEF lr=0.001 [0.8] vs supervised lr=0.001 [0.7]
        FEF lr=0.01 [0.6] vs supervised lr=0.01 [0.5]
    """
    arms = _arm_tables(results, level=level, label_fractions=label_fractions, class_name=class_name)
    out: dict[str, BaselinePair] = {}
    for name, arm in arms.items():
        baseline = _seed_scores(f"supervised baseline of strategy {name!r}", arm.baseline)
        _, (ssl, sup) = _paired_means([arm.scores, baseline])
        titles = [baseline_name(n) for n in arm.baseline.unique("strategy")]
        found = {baseline_key(row) for row in arm.baseline}
        missing = sorted({run for runs in arm.claims.values() for run in runs} - found)
        out[name] = BaselinePair(ssl, sup, " + ".join(titles) or None, tuple(missing))
    return out


def paired_with_baseline(
    results: Table,
    *,
    level: str | None = None,
    label_fractions: Sequence[float] | None = None,
    class_name: str | None = None,
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Each SSL strategy and its own baseline on the test items the two share (sec. 2.5.3, Table 3).

    The arrays of :func:`baseline_pairs`: as :func:`paired_scores` (items at a label fraction,
    seeds averaged over those both arms measured), but each strategy is paired with its own
    baseline (the supervised runs its rows name in ``baseline_id``) alone: a strategy with fewer
    finished runs is tested on fewer items without taking items away from the others.

    Returns:
        ``strategy -> (strategy scores (M,), baseline scores (M,))``, M per strategy.

    Raises:
        ValueError: An arm has two scores for one item and seed (two studies in one table), or a
            strategy's rows name no baseline and the supervised rows are of several.

    Example:
        >>> rows = [{"arm": arm, "strategy": name, "label_fraction": f, "subset_seed": seed,
        ...          "level": "image", "volume_id": "v", "slice_index": 0, "class_name": "",
        ...          "metric": "dice_mean", "value": value}
        ...         for arm, name, f, seed, value in [
        ...             ("supervised", "supervised", 0.5, 0, 0.5), ("supervised", "supervised", 0.5, 1, 0.7),
        ...             ("supervised", "supervised", 0.1, 0, 0.4),
        ...             ("ssl", "a", 0.5, 0, 0.6), ("ssl", "a", 0.5, 1, 0.9), ("ssl", "a", 0.1, 0, 0.5),
        ...             ("ssl", "b", 0.5, 0, 0.8)]]
        >>> pairs = paired_with_baseline(Table(rows))
        >>> [(name, ssl.round(3).tolist(), sup.round(3).tolist()) for name, (ssl, sup) in pairs.items()]
        [('a', [0.5, 0.75], [0.4, 0.6]), ('b', [0.8], [0.5])]
    """
    pairs = baseline_pairs(results, level=level, label_fractions=label_fractions, class_name=class_name)
    return {name: (pair.ssl, pair.baseline) for name, pair in pairs.items()}


def _box_name(acronym: Any, strategy: Any, fraction: Any, *, fractions: int) -> str:
    """A box's name: the acronym and the strategy's other grid values (the first lr is the x axis)."""
    # A transfer-design strategy is "<acronym> lr=<first>[/<second>] <other grid values>"
    # (studies.grid); the other values tell apart runs that share an acronym and learning rates.
    parts = str(strategy or "").split(" ")
    tail = parts[2:] if len(parts) > 1 and parts[1].startswith("lr=") else []
    if fractions > 1:
        tail.append("no label fraction" if fraction is None else f"{100 * float(fraction):g}% labels")
    return " ".join([str(acronym), *tail])


def transfer_boxes(
    results: Table, *, level: str | None = None
) -> dict[str, dict[tuple[float, str], FloatArray]]:
    """Per-item class-averaged Dice of the transfer-design runs (paper Figure A1).

    One box per strategy, named by its acronym (FEF, FFBS, ...) followed by any other grid value
    that sets it apart (``FEF max_epochs=20``), so that no two strategies share a box; with several
    label fractions each box also names its fraction (``FEF 10% labels``).

    Returns:
        ``{panel: {(first lr, box name): scores}}``; panel ``"trained once"`` holds the one-run
        schedules, ``"second lr <v>"`` the two-run schedules by their second run's rate.

    Raises:
        ValueError: An SSL row lacks the ``lr`` or ``acronym`` label of a transfer-design run.
    """
    rows = dice_rows(results, level=level).select(arm="ssl")
    unlabelled = rows.where(lambda r: r.get("lr") is None or r.get("acronym") is None)
    if unlabelled.rows:
        raise ValueError(
            "transfer_boxes: Figure A1 needs the 'lr' and 'acronym' labels of transfer-design runs; "
            f"found SSL rows without them (strategies {[str(s) for s in unlabelled.unique('strategy')]})"
        )
    fractions = len(rows.unique("label_fraction"))
    panels: dict[tuple[float, str], dict[tuple[float, str], FloatArray]] = {}
    groups = rows.groups("schedule", "second_lr", "lr", "acronym", "strategy", "label_fraction")
    for (_schedule, second, lr, acronym, strategy, fraction), table in groups.items():
        # "trained once" first, then the two-phase panels by decreasing second learning rate.
        panel = (math.inf, "trained once") if second is None else (float(second), f"second lr {second:g}")
        name = _box_name(acronym, strategy, fraction, fractions=fractions)
        boxes = panels.setdefault(panel, {})
        values = table.column("value")
        # Two strategies that differ in nothing the name shows are one box: pooled, not overwritten.
        boxes[(float(lr), name)] = np.concatenate([boxes.get((float(lr), name), np.zeros(0)), values])
    return {label: boxes for (_, label), boxes in sorted(panels.items(), key=lambda kv: -kv[0][0])}


def _ssl_and_baseline(
    results: Table, *, level: str | None, fraction: float, class_name: str | None
) -> tuple[FloatArray, FloatArray]:
    scores, baseline = paired_scores(results, level=level, label_fractions=[fraction], class_name=class_name)
    if len(scores) > 1:
        raise ValueError(
            f"one SSL strategy expected for an SSL-vs-supervised summary; found {sorted(scores)}"
        )
    ssl = next(iter(scores.values()), np.zeros(0))
    return ssl, baseline if ssl.size else np.zeros(0)


UNCONVERGED = "unconverged runs"
"""``comparison`` of a :func:`label_fraction_summary` row whose runs did not all converge."""


def _converged_counts(runs: Table, *, arm: str, fraction: float) -> tuple[int, int]:
    """(converged, total) fine-tuning runs of ``arm`` at ``fraction`` in a table of runs."""
    flags = [
        str(row.get("converged")).strip().lower() in {"1", "1.0", "true"}  # bool, 0/1 or CSV text
        for row in runs
        if row.get("arm") == arm
        and row.get("label_fraction") is not None
        and float(row["label_fraction"]) == fraction
    ]
    return sum(flags), len(flags)


def _check_class_names(results: Table, given: Sequence[str]) -> None:
    """Refuse a string (one class per letter) or class names the results' per-class Dice lack."""
    if isinstance(given, str):
        raise TypeError(
            f"class_names={given!r} is a string; expected a list of class names ([{given!r}] for one)"
        )
    held = class_names(results)
    missing = [name for name in given if name not in held]
    if held and missing:
        # A misspelt class made a column of NaN in each arm, without a word.
        raise ValueError(f"class_names: {missing} not in the results, whose per-class Dice are of {held}")


def label_fraction_summary(
    results: Table, *, class_names: Sequence[str], level: str | None = None, runs: Table | None = None
) -> Table:
    """SSL vs supervised per label fraction: mean Dice per class and arm, p-value, per-seed differences.

    One SSL strategy against its baseline on the same test items (:func:`paired_scores`): the mean
    Dice of each class and of the class average (``mean``) per arm over the pairs (a NaN Dice, a
    class absent from both masks, is left out with its pair), the number of pairs (test
    items, each arm's score averaged over the subset seeds both measured), the one-sided paired
    Wilcoxon p-value that SSL beats supervised on the class-averaged Dice, and the mean SSL -
    supervised difference of each subset seed (which shows the spread that the p-value over test
    items, correlated slices of few volumes, does not).

    A comparison means something only between converged models: given the ``runs`` (one row per
    fine-tuning run with its ``arm``, ``label_fraction`` and ``converged`` verdict), each row also
    counts the converged runs of each arm and says in ``comparison`` whether every run of both
    arms converged (``converged runs``) or not (``unconverged runs``: its p-values are kept, as
    computed, but test models that were still learning, and a reader should not take them as a
    result). ``p_holm`` is adjusted over every fraction either way.

    Args:
        results: The long results table.
        class_names: The segmentation classes, in column order.
        level: ``image`` or ``volume`` (default :func:`dice_level`).
        runs: The fine-tuning runs and their convergence verdicts (``arm``, ``label_fraction``,
            ``converged``: a bool or 0/1); other rows (pretraining, no ``arm``) are ignored. ``None``: no
            convergence columns.

    Returns:
        Table ``summary``: ``label_fraction``, ``ssl_<class>``, ``supervised_<class>`` (classes,
        then ``mean``), ``pairs``, with ``runs`` ``ssl_converged`` and ``supervised_converged``
        (``"<converged> of <runs>"``, e.g. ``"2 of 3"``) and ``comparison``, then ``p_value``,
        ``p_holm`` (``p_value`` adjusted over the fractions, :func:`~inpaintssl.stats.holm_adjusted`),
        ``seed_differences`` (a list per fraction).

    Example:
        >>> rows = [{"arm": a, "strategy": a, "label_fraction": 0.1, "subset_seed": 0, "level": "image",
        ...          "volume_id": f"s{i}", "slice_index": 0, "class_name": "", "metric": "dice_mean",
        ...          "value": 0.5 + 0.1 * i + (0.05 if a == "ssl" else 0.0)}
        ...         for i in range(3) for a in ("ssl", "supervised")]
        >>> row = label_fraction_summary(Table(rows), class_names=[]).rows[0]
        >>> row["ssl_mean"], row["pairs"], row["seed_differences"]
        (0.65, 3, [0.05])
        >>> runs = Table([{"arm": "ssl", "label_fraction": 0.1, "converged": True},
        ...               {"arm": "supervised", "label_fraction": 0.1, "converged": False}])
        >>> row = label_fraction_summary(Table(rows), class_names=[], runs=runs).rows[0]
        >>> row["ssl_converged"], row["supervised_converged"], row["comparison"]
        ('1 of 1', '0 of 1', 'unconverged runs')
    """
    _check_class_names(results, class_names)
    names: list[str | None] = [*class_names, None]
    columns = ["label_fraction"]
    columns += [f"{arm}_{name or 'mean'}" for name in names for arm in ("ssl", "supervised")]
    columns += ["pairs"]
    if runs is not None:
        columns += ["ssl_converged", "supervised_converged", "comparison"]
    columns += ["p_value", "p_holm", "seed_differences"]
    out = []
    for fraction in [f for f in dice_rows(results, level=level).unique("label_fraction") if f is not None]:
        entry: dict[str, Any] = {"label_fraction": float(fraction)}
        for name in names:  # the class average (None) last: its pairs feed the test below
            ssl, sup = _ssl_and_baseline(results, level=level, fraction=fraction, class_name=name)
            entry[f"ssl_{name or 'mean'}"] = float(np.mean(ssl)) if ssl.size else math.nan
            entry[f"supervised_{name or 'mean'}"] = float(np.mean(sup)) if sup.size else math.nan
        entry["pairs"] = int(ssl.size)
        if runs is not None:
            counts = [
                _converged_counts(runs, arm=arm, fraction=float(fraction)) for arm in ("ssl", "supervised")
            ]
            entry["ssl_converged"], entry["supervised_converged"] = (f"{k} of {n}" for k, n in counts)
            every = all(n > 0 and k == n for k, n in counts)
            entry["comparison"] = "converged runs" if every else UNCONVERGED
        entry["p_value"] = wilcoxon_greater(ssl, sup) if ssl.size else math.nan
        entry["seed_differences"] = [
            round(float(np.mean(a - b)), 12)
            for (_,), seed_rows in results.select(label_fraction=fraction).groups("subset_seed").items()
            for a, b in [_ssl_and_baseline(seed_rows, level=level, fraction=fraction, class_name=None)]
            if a.size
        ]
        out.append(entry)
    for entry, adjusted in zip(out, holm_adjusted([entry["p_value"] for entry in out])):
        entry["p_holm"] = float(adjusted)
    return Table(
        out,
        name="summary",
        title="SSL vs supervised per label fraction: mean Dice per class, one-sided paired Wilcoxon "
        "p-value (SSL > supervised, class-averaged Dice; p_holm: Holm-adjusted over the fractions) and "
        "SSL - supervised per subset seed"
        + (
            "; runs converged per arm (comparison: unconverged runs = p-values not a result)"
            if runs is not None
            else ""
        ),
        columns=columns,
    )


def with_mean_class(results: Table, *, level: str = "image") -> Table:
    """Per-class Dice rows with the class average as class ``mean`` (one metric ``dice``).

    The shape of the demo's ``results.csv``: one row per item, class (and ``mean``), arm, label
    fraction and subset seed.

    Example:
        >>> rows = [{"level": "image", "class_name": "", "metric": "dice_mean", "value": 0.5},
        ...         {"level": "image", "class_name": "gm", "metric": "dice", "value": 0.4}]
        >>> [(r["class_name"], r["metric"]) for r in with_mean_class(Table(rows))]
        [('mean', 'dice'), ('gm', 'dice')]
    """
    out: list[Mapping[str, Any]] = []
    for row in results.select(level=level):
        if row.get("metric") == "dice_mean":
            out.append({**row, "class_name": "mean", "metric": "dice"})
        elif row.get("metric") == "dice":
            out.append(row)
    return Table(out, name=results.name, title=results.title)
