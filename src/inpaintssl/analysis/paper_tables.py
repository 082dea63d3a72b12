"""The paper's tables from a study's results (CSV and Markdown via :class:`Table`).

- :func:`table2_l2_norm`: Table 2, L2 norm of the inpainted validation images (mean and standard
  deviation) by pretext task, patch size K and sampler, a row per pretraining setting.
- :func:`table3_ranking`: Table 3, SSL strategies ranked by the p-value of a one-sided paired
  Wilcoxon test that they beat their supervised baseline (sec. 2.5.3), pooled over the label
  fractions below 100%; each strategy against the baseline trained like it, named in the table;
  with Holm-adjusted p-values beside the paper's. The label fractions pooled are the study's
  planned ones when given (the report gives them), named in the title. A strategy the study
  planned but could not test (:class:`UntestedStrategy`) is listed unranked, with a note saying
  why; one ranked without some of its planned SSL runs (:class:`IncompleteStrategy`) says on how
  many of its planned items.
- :func:`dice_table`: test Dice per strategy and label fraction, class-averaged and per class (the
  numbers behind Figures 3/4).
- :func:`power_law_table`: the Figure 5 fit parameters per label fraction (and strategy, when the
  grid varies more than the amount of data): a, k, c, the usual RSE ``sqrt(SSR / (n - 3))`` and
  the paper's ``SSR / (n - 2)``, the range of x fitted.
- :func:`labels_needed_table`: labelled volumes each arm needs to reach a target Dice, flagged
  where the count lies outside the range of labelled volumes the curve was fitted on, with
  bootstrap intervals over the test cases.

Example:
    >>> from inpaintssl.analysis.table import Table
    >>> rows = [{"arm": "pretrain", "task": "context_restoration", "patch_size": 32, "sampler": s,
    ...          "metric": "l2_norm", "value": v}
    ...         for s, v in [("random", 80.0), ("random", 90.0), ("poisson_disc", 70.0)]]
    >>> table2_l2_norm(Table(rows)).tuples()
    (('context_restoration', 32, 70.0, nan, 1, 85.0, 7.0710678118654755, 2, None),)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inpaintssl.analysis.summaries import (
    BaselinePair,
    baseline_pairs,
    class_names,
    dice_curves,
    dice_rows,
    labels_needed_estimates,
    labels_needed_intervals,
    limited_fractions,
    pooled_fractions,
    scaling_series,
)
from inpaintssl.analysis.table import Table
from inpaintssl.listing import first_and_more
from inpaintssl.stats import holm_adjusted, percentile_interval, rank_pairs
from inpaintssl.stats.labels_needed import DEFAULT_RESAMPLES

__all__ = [
    "IncompleteStrategy",
    "UntestedStrategy",
    "dice_table",
    "labels_needed_table",
    "power_law_table",
    "table2_l2_norm",
    "table3_ranking",
]

_NOTE_RUNS = 3  # baseline run ids a note names before it counts the rest


def table2_l2_norm(results: Table) -> Table:
    """Table 2: per-image L2 norm (mean, sample std, n) by task x patch size, one column group per sampler.

    Uses the pretraining runs' ``l2_norm`` rows (validation images under the fixed evaluation
    corruption; per channel, averaged over channels, as the paper did for CT). A row is one
    pretraining setting: a grid over other pretraining values (a learning rate, a budget) gives
    each task and patch size a row per setting, named in the last column, ``setting``: the other
    grid values of the runs' ``strategy`` (``lr=0.01``), empty when the grid varies only the task,
    patch size and sampler. Pooled into one row, runs of different settings had a mean of none of
    them and a standard deviation that was mostly the gap between them.
    """
    rows = results.select(metric="l2_norm", arm="pretrain")
    samplers = [str(s) for s in rows.unique("sampler")]
    settings = Table({**row, "setting": _pretraining_setting(row.get("strategy"), row)} for row in rows)
    out = []
    for (task, size, setting), table in settings.groups("task", "patch_size", "setting").items():
        cells: list[object] = [task, size]
        for sampler in samplers:
            values = table.select(sampler=sampler).column("value")
            values = values[np.isfinite(values)]
            mean = float(values.mean()) if values.size else math.nan
            std = float(values.std(ddof=1)) if values.size > 1 else math.nan
            cells += [mean, std, int(values.size)]
        out.append((*cells, setting))
    columns = ["pretext_task", "patch_size"]
    for sampler in samplers:
        columns += [f"{sampler}_mean", f"{sampler}_std", f"{sampler}_n"]
    # The setting goes last: code that reads the table's columns by position keeps them.
    return Table(
        tuple(out),
        name="table2_l2_norm",
        title="Table 2: L2 norm of inpainted validation images (mean, std, n) by pretext task, patch size "
        "and sampler; one row per pretraining setting (setting: its other grid values)",
        columns=(*columns, "setting"),
    )


def _pretraining_setting(strategy: object, labels: Mapping[str, object]) -> str | None:
    """A pretraining run's grid values other than its task, patch size and sampler, from its ``strategy``.

    A pretext-design strategy is ``<task> <K>x<K> <sampler>`` followed by the other grid values
    (:mod:`inpaintssl.studies.grid`); another (a data-scaling run's ``+50% unlabelled``) is
    itself the setting.

    Args:
        strategy: The run's ``strategy`` label (``None`` when it has none).
        labels: Its ``task``, ``patch_size`` and ``sampler``.

    Returns:
        The setting, ``None`` when the strategy names nothing but the task, patch size and sampler
        (or there is none).

    Example:
        >>> labels = {"task": "context_prediction", "patch_size": 4, "sampler": "random"}
        >>> _pretraining_setting("context_prediction 4x4 random lr=0.01", labels)
        'lr=0.01'
        >>> _pretraining_setting("context_prediction 4x4 random", labels) is None
        True
    """
    if strategy is None:
        return None
    name, size = str(strategy), labels.get("patch_size")
    head = f"{labels.get('task')} {size}x{size} {labels.get('sampler')}"
    if name == head:
        return None
    return name[len(head) + 1 :] if name.startswith(head + " ") else name


@dataclass(frozen=True)
class UntestedStrategy:
    """An SSL strategy a study planned that has no SSL results to test, for Table 3's unranked rows.

    Attributes:
        baseline: The supervised baseline it would be tested against (``supervised lr=0.001``,
            ...), ``None`` when the study trains none.
        why: Which of its runs have no results and why (failed, not started, ...), for the note.
    """

    baseline: str | None
    why: str


@dataclass(frozen=True)
class IncompleteStrategy:
    """A strategy with SSL results whose other planned SSL runs have none, for its Table 3 note.

    Such a strategy is ranked as usual, on the items its results hold: fewer than planned, so
    its p-value rests on less than the others' may.

    Attributes:
        label_fractions: The label fractions of all its planned SSL runs (with results or not):
            with the test items of the results, the items it was planned to be ranked on.
        why: Which of its runs have no results and why (``run ft-a failed (ValueError: ...)``,
            the runs named with :func:`named_runs`), for the note.
    """

    label_fractions: tuple[float, ...]
    why: str


def table3_ranking(
    results: Table,
    *,
    level: str | None = None,
    label_fractions: Sequence[float] | None = None,
    untested: Mapping[str, UntestedStrategy] | None = None,
    incomplete: Mapping[str, IncompleteStrategy] | None = None,
) -> Table:
    """Table 3: SSL strategies sorted by the p-value of beating their supervised baseline (sec. 2.5.3).

    Class-averaged Dice per test item (volume for 3D data, slice for 2D) and label fraction,
    paired with the baseline on the same item and fraction, each arm averaged over the subset seeds
    both measured (a test item at a label fraction is one observation, however many subsets were
    trained); the label fractions below 100% are pooled (``label_fractions``), so a test volume
    counts once per pooled fraction, as in the paper (36 volumes at 4 fractions: 144 pairs; read
    the p-value beside ``pairs``). The title names the fractions pooled. Each strategy is
    tested against its own baseline, the supervised runs trained with its learning rate, budget and
    other non-transfer settings (the ``baseline_id`` of its rows), on the items the two share
    (:func:`~inpaintssl.analysis.summaries.baseline_pairs`), so ``pairs`` may differ between
    strategies when some runs are missing. The ``baseline`` column names that baseline
    (``supervised``, ``supervised lr=0.001``, ...): p-values of strategies with different
    baselines answer different questions.

    ``p_holm`` adjusts the p-values for the number of strategies ranked (Holm's step-down method,
    :func:`~inpaintssl.stats.holm_adjusted`): the strategies with ``p_holm`` at most 0.05 beat
    their baselines with a family-wise error rate of 5 %, where ``p_value`` at most 0.05 would let
    through about one in twenty of the strategies that do not. The rank, as in the paper, follows
    ``p_value``; Holm's adjustment keeps that order, so it changes which strategies clear a level,
    not the ranking. Strategies whose p-values and mean differences are equal up to float round-off
    (:func:`~inpaintssl.stats.rank_pairs`) are tied: ``rank`` lists them by name, and ``tied_rank``
    gives each the average of their ranks (2.5 for two tied at ranks 2 and 3), the rank to compare
    them and to cut a top 3 by. The family is the strategies tested, the ranked rows, and no other: an
    unranked strategy was not tested, has no p-value to adjust (NaN, never a stand-in) and is not
    counted, so a strategy whose runs failed makes the family, and the adjustment, smaller. The
    title says how many strategies the family holds.

    No strategy is left out without a word. A strategy that shares no test item with its baseline
    (typically: its baseline has no finished run yet, e.g. the two-phase baseline of a two-run
    schedule, or it failed) is listed after the ranked ones, unranked (``rank`` ``None``), with 0
    pairs and NaN p-value and difference. The ``note`` column says why, naming the baseline runs
    that have no results; for a ranked strategy it names those whose absence cost it pairs. So is
    each strategy of ``untested`` that has no SSL rows to test here (its runs failed or have not
    finished; the results alone cannot know it was planned), its note saying why; an entry whose
    strategy has rows here is tested as usual and its entry unused. A ranked strategy in
    ``incomplete`` (some of its planned SSL runs failed or have not finished) is ranked as it
    would be without it, and its note says on how many of its planned items (the test items of
    the results at each pooled label fraction of its planned runs) and why the others are
    missing: ``ranked on 8 of 12 planned items (no SSL results: run ft-a failed (...))``. A
    strategy whose results hold none of the pooled fractions (only its 100%-label runs have
    finished) is listed unranked, ``not ranked: no label-limited results yet``: ranked on its 100%
    items instead, it would answer another question than the others (sec. 2.5.3 leaves 100% out).

    Args:
        results: The long results table.
        level: ``image`` or ``volume`` (default :func:`~inpaintssl.analysis.summaries.dice_level`).
        label_fractions: The label fractions to pool: a study's planned fractions below 100%
            (:func:`~inpaintssl.analysis.summaries.pooled_fractions` of them; 100% alone for a study
            that plans only 100%). Default: those of ``results``
            (:func:`~inpaintssl.analysis.summaries.limited_fractions`), which are 100% alone while
            no label-limited run has finished: a caller that knows the plan passes its fractions.
        untested: Strategies the study planned, by name, each with its baseline and why it has
            no results (:class:`UntestedStrategy`).
        incomplete: Strategies with results that lack some planned SSL runs, by name, each with
            its planned label fractions and why (:class:`IncompleteStrategy`); an entry whose
            strategy is not ranked here is unused.

    Raises:
        ValueError: No SSL strategy shares test items with its baseline (the message names each
            strategy and why it has none: what its baseline lacks, or ``untested``'s reason), or
            the rows name no baseline and hold several
            (:func:`~inpaintssl.analysis.summaries.named_baselines`).
    """
    dice = dice_rows(results, level=level)
    pooled = list(label_fractions) if label_fractions is not None else limited_fractions(dice)
    pairs = baseline_pairs(results, level=level, label_fractions=pooled)
    found = {name: pair for name, pair in pairs.items() if pair.ssl.size}
    partial = incomplete or {}
    # Unranked: (baseline, note) of strategies without pairs, of those with results at other
    # fractions only, and of planned ones without rows.
    unranked = {
        name: (pair.baseline_name, _unpaired_note(pair)) for name, pair in pairs.items() if not pair.ssl.size
    }
    elsewhere = _outside_pooled(results, dice, set(pairs), level=level)
    unranked.update(
        (name, (baseline, _not_limited_note(held, pooled=pooled, strategy=partial.get(name))))
        for name, (baseline, held) in elsewhere.items()
    )
    unranked.update(
        (name, (strategy.baseline, f"not ranked: no SSL results ({strategy.why})"))
        for name, strategy in (untested or {}).items()
        if name not in pairs and name not in elsewhere
    )
    unranked = dict(sorted(unranked.items()))
    where = _fractions(pooled) or "none"
    if not found:
        waiting = "; ".join(f"{name!r}: {note}" for name, (_, note) in unranked.items())
        raise ValueError(
            "table 3 needs supervised-baseline and SSL Dice on the same test items at the label "
            f"fractions it pools ({where}); found no SSL strategy with test items its baseline also has"
            f"{f' ({waiting})' if waiting else ''}"
        )
    ranking = rank_pairs({name: (pair.ssl, pair.baseline) for name, pair in found.items()})
    holm = holm_adjusted([r.p_value for r in ranking])
    items = _test_items(results, level=level)
    rows: list[tuple[int | None, float | None, str, str | None, float, float, int, float, str]] = [
        (
            r.rank,
            r.tied_rank,
            r.name,
            found[r.name].baseline_name,
            r.p_value,
            float(adjusted),
            r.n_pairs,
            r.mean_difference,
            "; ".join(
                note
                for note in (
                    _incomplete_note(partial.get(r.name), n_pairs=r.n_pairs, items=items),
                    _ranked_note(found[r.name]),
                )
                if note
            ),
        )
        for r, adjusted in zip(ranking, holm)
    ]
    rows += [
        (None, None, name, baseline, math.nan, math.nan, 0, math.nan, note)
        for name, (baseline, note) in unranked.items()
    ]
    return Table(
        tuple(rows),
        name="table3_ranking",
        title="Table 3: strategies ranked by one-sided paired Wilcoxon p-value (SSL > supervised Dice), "
        f"each against the supervised baseline trained like it, pooled over label fractions {where}; "
        "strategies without results there, or whose baseline shares no test item with them there, "
        "are listed unranked, note says why; p_holm: "
        f"Holm-adjusted over the {len(found)} ranked (tested) strategies only; tied_rank: the average "
        "rank that strategies tied up to float round-off share (rank orders them by name)",
        columns=(
            "rank",
            "tied_rank",
            "strategy",
            "baseline",
            "p_value",
            "p_holm",
            "pairs",
            "mean_dice_difference",
            "note",
        ),
    )


def _fractions(fractions: Sequence[float]) -> str:
    """``0.5, 0.25``: label fractions as a note names them, largest first."""
    return ", ".join(f"{f:g}" for f in sorted(fractions, reverse=True))


def _outside_pooled(
    results: Table, dice: Table, paired: set[str], *, level: str | None
) -> dict[str, tuple[str | None, list[float]]]:
    """Strategies with SSL Dice rows, none of them ``paired`` (at a pooled label fraction).

    Returns:
        ``name -> (baseline, the label fractions its rows are at)``; the baseline is the one its
        rows there name, for the ``baseline`` column.
    """
    held = {
        str(name): [float(f) for f in table.unique("label_fraction") if f is not None]
        for (name,), table in dice.select(arm="ssl").groups("strategy").items()
        if str(name) not in paired
    }
    if not held:
        return {}
    everywhere = baseline_pairs(
        results, level=level, label_fractions=sorted({f for found in held.values() for f in found})
    )
    out: dict[str, tuple[str | None, list[float]]] = {}
    for name, fractions in held.items():
        pair = everywhere.get(name)
        out[name] = (pair.baseline_name if pair is not None else None, fractions)
    return out


def _not_limited_note(
    held: Sequence[float], *, pooled: Sequence[float], strategy: IncompleteStrategy | None
) -> str:
    """Why a strategy with results at other label fractions only (100% alone, typically) is not ranked."""
    what = "label-limited results yet" if set(held) == {1.0} else "results at the pooled label fractions"
    why = f"; {strategy.why}" if strategy is not None else ""
    return (
        f"not ranked: no {what} (none at {_fractions(pooled)}{why}; its results, at label fraction "
        f"{_fractions(held)}, are not pooled)"
    )


def named_runs(runs: Sequence[str]) -> str:
    """``a, b, c and 2 more``: the run ids a table's note names, the first few, then a count.

    Example:
        >>> named_runs(["ft-1", "ft-2", "ft-3", "ft-4", "ft-5"])
        'ft-1, ft-2, ft-3 and 2 more'
    """
    return first_and_more(runs, limit=_NOTE_RUNS)


def _missing_note(runs: Sequence[str]) -> str:
    """The baseline runs a strategy names that have no results, for a note ("" when none)."""
    if not runs:
        return ""
    return (
        f"no results of its baseline run{'s' if len(runs) > 1 else ''} {named_runs(runs)} "
        "(not finished, or failed)"
    )


def _ranked_note(pair: BaselinePair) -> str:
    """For a ranked strategy, the baseline runs whose absence left some of its runs unpaired."""
    missing = _missing_note(pair.missing_runs)
    if not missing:
        return ""
    return f"{missing}: its runs paired with {'them' if len(pair.missing_runs) > 1 else 'it'} are left out"


def _test_items(results: Table, *, level: str | None) -> int:
    """How many test items (volumes, or slices) the results' Dice rows hold, over every run."""
    return len({(row.get("volume_id"), row.get("slice_index")) for row in dice_rows(results, level=level)})


def _incomplete_note(strategy: IncompleteStrategy | None, *, n_pairs: int, items: int) -> str:
    """For a ranked strategy without some of its planned SSL runs: on how many planned items, and why.

    Planned items: the test items at each label fraction of its planned runs that Table 3 pools
    (:func:`~inpaintssl.analysis.summaries.pooled_fractions`).
    """
    if strategy is None:
        return ""
    planned = items * len(pooled_fractions(strategy.label_fractions))
    on = (
        f"ranked on {n_pairs} of {planned} planned items"
        if n_pairs < planned
        else f"ranked on all {planned} planned items, some over fewer subset seeds"
    )
    return f"{on} (no SSL results: {strategy.why})"


def _unpaired_note(pair: BaselinePair) -> str:
    """Why a strategy has no pairs with its baseline, hence no rank."""
    if pair.missing_runs:
        why = _missing_note(pair.missing_runs)
    elif pair.baseline_name is None:
        why = "no supervised baseline in the results"
    else:
        why = f"no test item shared with its baseline {pair.baseline_name}"
    return f"not ranked: {why}"


def power_law_table(results: Table, *, level: str | None = None) -> Table:
    """Figure 5's fits: ``Dice = a * x**k + c`` against % pretraining data, per label fraction (sec. 2.6).

    Columns: ``label_fraction``; ``points`` fitted; ``a``, ``k``, ``c``; ``rse`` (``sqrt(SSR /
    (n - 3))``) and ``paper_s`` (the paper's ``SSR / (n - 2)``); ``k_at_bound`` (the exponent
    stopped at the end of its range, so the points do not pin the curve); ``x_min`` and ``x_max``,
    the range of % pretraining data fitted (0 is the supervised baseline), outside which the curve
    is an extrapolation. A label fraction without a fit (fewer than 3 distinct x, or a failed fit)
    has NaN parameters and range and ``k_at_bound`` ``None``.

    A study whose grid varies more than the amount of pretraining data has a fit per label
    fraction and strategy (:func:`~inpaintssl.analysis.summaries.scaling_series`); a ``strategy``
    column after ``label_fraction`` then names each row's
    (:func:`~inpaintssl.analysis.summaries.scaling_strategy`). With one strategy the table has no
    such column, as it never had.
    """
    found = scaling_series(results, level=level)
    named = any(series.strategy is not None for series in found)
    rows: list[tuple[object, ...]] = []
    for series in found:
        fit = series.fit
        head: tuple[object, ...] = (series.label_fraction,)
        if named:
            head += (series.strategy,)
        if fit is None:
            rows.append((*head, int(series.x.size), *(math.nan,) * 5, None, math.nan, math.nan))
        else:
            rows.append(
                (
                    *head,
                    fit.n,
                    fit.a,
                    fit.k,
                    fit.c,
                    fit.rse,
                    fit.ssr_over_n_minus_2,
                    fit.k_at_bound,
                    fit.x_min,
                    fit.x_max,
                )
            )
    head_columns = ("label_fraction", "strategy") if named else ("label_fraction",)
    return Table(
        tuple(rows),
        name="power_law_fits",
        title="Figure 5 fits: Dice = a * x^k + c, x = % pretraining data (0 = supervised); "
        "rse = sqrt(SSR/(n-3)), "
        "paper_s = SSR/(n-2) as printed in the paper; "
        "k_at_bound: k stopped at the end of its range, so the points do not pin the curve; "
        "x_min, x_max: the range of x fitted"
        + ("; one fit per label fraction and strategy" if named else ""),
        columns=(*head_columns, "points", "a", "k", "c", "rse", "paper_s", "k_at_bound", "x_min", "x_max"),
    )


def labels_needed_table(
    results: Table,
    *,
    target: float | None = None,
    level: str | None = None,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Table:
    """Labelled volumes each arm needs to reach ``target`` Dice, and how many SSL saves (sec. 2.6, 4).

    See :func:`inpaintssl.analysis.summaries.labels_needed_rows`; ``inf`` means the fitted curve
    levels off below the target, NaN that no curve could be fitted (fewer than 3 label fractions)
    or that the fitted curve does not increase. ``arm`` is ``supervised`` or ``ssl, <pct>%
    pretraining data``; with several strategies at each amount of pretraining data (a grid over
    patch sizes or pretext tasks too) each has its arms, named ``ssl, <pct>% pretraining data,
    <strategy>``. A grid over a fine-tuning setting (a learning rate) has a baseline per setting:
    each is an arm named by its strategy (``supervised lr=0.01``), and each SSL arm's
    ``saved_vs_supervised`` and default ``target_dice`` are those of the baseline its runs name
    (:func:`~inpaintssl.analysis.summaries.labels_needed_estimates`), never of the baselines pooled.

    ``fitted_volumes_min`` and ``fitted_volumes_max`` are the range of labelled volumes the arm's
    curve was fitted on (NaN without a fit). ``extrapolated`` says whether the count, as reported
    (rounded up), lies outside that range: ``True`` below it (including 0, a target the curve
    starts above) or above it (including ``inf``: that the curve never reaches the target is a
    claim about where it goes beyond the data), ``False`` within it, ``None`` when the count is
    NaN. An extrapolated count, above all near the curve's plateau, moves a long way with a small
    change in the fit. ``saved_vs_supervised`` is a difference of two counts, so it is an
    extrapolation when either its own row or the supervised row is.

    ``needed_ci_lower`` and ``needed_ci_upper`` are a ``confidence`` percentile bootstrap interval
    of the count over the test cases (:func:`~inpaintssl.analysis.summaries.labels_needed_intervals`,
    ``n_resamples`` resamples drawn with ``seed``); ``saved_ci_lower`` and ``saved_ci_upper`` the
    same for ``saved_vs_supervised``, from the paired resamples (the same test cases for both
    arms); ``resamples_failed`` counts resamples that gave no count (left out). NaN without a fit.
    ``saved_resamples_left_out`` counts the paired resamples left out of the saved interval: those
    where either arm gave no count, and those where neither arm's curve reaches the target (both
    ``inf``: no number of labels saved), which ``resamples_failed`` does not count; read it beside
    the saved interval, which describes only the other resamples (``None`` without that interval).
    A target Dice other than the default must lie in ``(0, 1]``.
    The intervals cover the test-set sampling, not the spread between training runs; the default
    target, measured on the same test cases, is resampled with them.
    """
    found = labels_needed_estimates(results, target=target, level=level)
    # The caller's target, not the one found: a default target is resampled with the test cases.
    _, intervals = labels_needed_intervals(
        results, target=target, level=level, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    # Each arm saves labels against its own baseline (one per fine-tuning setting the grid varies).
    needed_by_arm = {estimate.arm: estimate.needed for estimate in found}
    rows = []
    for estimate in found:
        name, fit, needed, own = estimate.arm, estimate.fit, estimate.needed, estimate.baseline
        supervised = needed_by_arm.get(own, math.nan) if own is not None else math.nan
        supervised_interval = intervals.get(own) if own is not None else None
        a, k, c = (fit.a, fit.k, fit.c) if fit is not None else (math.nan,) * 3
        at_bound = fit.k_at_bound if fit is not None else None
        x_min, x_max = (fit.x_min, fit.x_max) if fit is not None else (math.nan, math.nan)
        extrapolated = fit.extrapolates(needed) if fit is not None else None
        interval = intervals.get(name) if fit is not None else None
        needed_ci = saved_ci = (math.nan, math.nan)
        failed: int | None = None
        saved_left_out: int | None = None
        if interval is not None:
            needed_ci, failed = (interval.lower, interval.upper), interval.n_failed
            if supervised_interval is not None:
                with np.errstate(invalid="ignore"):  # inf - inf: no saving to speak of, left out
                    saved = supervised_interval.resamples - interval.resamples
                saved_ci = percentile_interval(saved, confidence=confidence)
                # Counted apart from resamples_failed: both arms' counts exist (inf) when neither
                # reaches the target, yet the saved interval has to leave that resample out.
                saved_left_out = int(np.count_nonzero(np.isnan(saved)))
        rows.append(
            (
                name,
                estimate.target,
                a,
                k,
                c,
                needed,
                supervised - needed,
                at_bound,
                x_min,
                x_max,
                extrapolated,
                *needed_ci,
                *saved_ci,
                failed,
                saved_left_out,
            )
        )
    targets = {estimate.target for estimate in found}
    aim = (
        f"Dice {targets.pop():.3f}"
        if len(targets) == 1
        else "the Dice of each arm's baseline with the most labelled volumes (target_dice)"
    )
    return Table(
        tuple(rows),
        name="labels_needed",
        title=f"Labelled volumes needed to reach {aim} "
        "(power law of Dice vs labelled volumes; k_at_bound: k stopped at the end of its range, "
        "so the count read off the curve is not an estimate; extrapolated: the count lies outside "
        "the fitted range of labelled volumes, inf included; "
        f"ci: {confidence:.0%} percentile bootstrap interval over the test cases, {n_resamples} resamples, "
        f"seed {seed}; saved_resamples_left_out: paired resamples without a number of labels saved, "
        "left out of the saved ci)",
        columns=(
            "arm",
            "target_dice",
            "a",
            "k",
            "c",
            "labelled_volumes_needed",
            "saved_vs_supervised",
            "k_at_bound",
            "fitted_volumes_min",
            "fitted_volumes_max",
            "extrapolated",
            "needed_ci_lower",
            "needed_ci_upper",
            "saved_ci_lower",
            "saved_ci_upper",
            "resamples_failed",
            "saved_resamples_left_out",
        ),
    )


def dice_table(results: Table, *, level: str | None = None) -> Table:
    """Test-set mean Dice per strategy and label fraction: class average, then each class.

    With several subset seeds each cell is the mean over seeds; ``seeds`` says how many.
    """
    classes = class_names(results)
    curves = {name: dice_curves(results, class_name=name, level=level) for name in [None, *classes]}
    cells: dict[tuple[str, float], dict[str | None, float]] = {}
    for name, found in curves.items():
        for curve in found:
            for x, y in zip(curve.x, curve.mean):
                cells.setdefault((str(curve.name), float(x)), {})[name] = float(y)
    seeds = {
        (str(k[0]), float(k[1])): len(t.unique("subset_seed"))
        for k, t in results.select(metric="dice_mean").groups("strategy", "label_fraction").items()
        if k[1] is not None
    }
    rows = [
        (
            strategy,
            fraction,
            seeds.get((strategy, fraction), 0),
            *(v.get(n, math.nan) for n in [None, *classes]),
        )
        for (strategy, fraction), v in sorted(cells.items(), key=lambda kv: (kv[0][0], -kv[0][1]))
    ]
    return Table(
        tuple(rows),
        name="dice",
        title="Test Dice (mean over the test set, then over subset seeds) per strategy and label fraction",
        columns=("strategy", "label_fraction", "seeds", "dice_mean", *(f"dice_{n}" for n in classes)),
    )
