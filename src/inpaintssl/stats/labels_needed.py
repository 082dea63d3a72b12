"""How many labelled images a fitted Dice curve needs to reach a target Dice (paper sec. 2.6, 4).

With a power law ``Dice = a * n**k + c`` fitted to Dice against the number of labelled images
``n`` (see :func:`~inpaintssl.stats.fit_power_law`), the labels needed for a target Dice is the
smallest ``n`` at which the curve reaches it. Comparing that number for an SSL curve and a
supervised curve turns the paper's data-efficiency claim into "labels saved".

:func:`labels_needed` reads the count off one fitted curve. :func:`labels_needed_interval` adds
the uncertainty that comes from the test set: it resamples the test cases (volumes or slices) with
replacement, refits the curve to each resample's mean scores and reads the count off each, giving a
percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) beside the point estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inpaintssl.stats.power_law import PowerLawFit, _exponent_bounds, _validated_x, fit_power_law

__all__ = ["LabelsNeededInterval", "labels_needed", "labels_needed_interval", "percentile_interval"]

DEFAULT_RESAMPLES = 1000
"""Bootstrap resamples by default: the usual minimum for the tails a 95% percentile interval reads
(Efron & Tibshirani 1993, sec. 19.3); each costs one power-law fit (a few ms)."""


def labels_needed(fit: PowerLawFit, target: float, *, round_up: bool = True) -> float:
    """Smallest number of labelled images at which a fitted increasing curve reaches ``target``.

    The curve must increase with ``n`` (``a * k > 0``):

    - ``k > 0``: it rises from ``c`` at ``n = 0`` without bound; a target at or below ``c`` needs 0
      images, any other target ``((target - c) / a) ** (1 / k)``.
    - ``k < 0``: it rises towards the plateau ``c``; a target at or above ``c`` is unreachable
      (``inf``).

    A curve that does not increase (``a * k <= 0``) makes "labels needed" meaningless: NaN.
    The result is an extrapolation whenever it lies outside the fitted range of ``n``
    (:attr:`~inpaintssl.stats.PowerLawFit.x_min` to :attr:`~inpaintssl.stats.PowerLawFit.x_max`;
    ``fit.extrapolates(result)`` says so, counting ``inf`` as beyond the range). Near a plateau a
    small change in the fit moves it a long way, so read such a count as a trend, not an estimate.

    Args:
        fit: Power law fitted to score against number of labelled images.
        target: Target score, e.g. a Dice of 0.85.
        round_up: Round up to a whole number of images (the default); ``False`` returns the
            continuous solution.

    Returns:
        Number of images (a whole number when ``round_up``), ``inf`` when unreachable, NaN when
        the curve does not increase.

    Raises:
        ValueError: If ``target`` is not finite.

    Example:
        >>> fit = PowerLawFit(a=-0.5, k=-0.5, c=0.9, rse=0.0, ssr=0.0, ssr_over_n_minus_2=0.0, n=5)
        >>> labels_needed(fit, 0.8)  # 0.9 - 0.5 / sqrt(n) >= 0.8 from n = 25
        25.0
        >>> labels_needed(fit, 0.95)  # above the plateau
        inf
    """
    if not math.isfinite(target):
        raise ValueError(f"target must be a finite number; found {target!r}")
    if not fit.a * fit.k > 0:
        return math.nan
    if fit.k > 0 and target <= fit.c:
        return 0.0
    if fit.k < 0 and target >= fit.c:
        return math.inf
    n = float(fit.inverse(target))
    # Guard the ceiling against round-off in the inverse (e.g. 25.000000000000004 -> 26).
    return float(math.ceil(n - 1e-9 * max(1.0, n))) if round_up else n


def percentile_interval(values: npt.ArrayLike, *, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of a bootstrap distribution: its ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles, NaN values (failed resamples) left out.

    The quantiles are order statistics, not interpolated (NumPy's ``"lower"`` and ``"higher"`` methods,
    one replicate wider at the top than Efron and Tibshirani's ``B (1 + confidence) / 2``-th value, so
    that as many replicates lie beyond each end): the interval stays conservative, an infinite count
    ("never reached") stays infinite rather than turning NaN, and whole counts stay whole.

    Args:
        values: ``(B,)`` bootstrap replicates; may hold ``inf``.
        confidence: Coverage in ``(0, 1)``, e.g. 0.95.

    Returns:
        ``(lower, upper)``; ``(nan, nan)`` when no replicate is a number.

    Raises:
        ValueError: If ``confidence`` is not in ``(0, 1)``.

    Example:
        >>> percentile_interval(range(1, 101), confidence=0.9)  # the 5th smallest and 5th largest
        (5.0, 96.0)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); found {confidence!r}")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    return (
        float(np.quantile(x, tail, method="lower")),
        float(np.quantile(x, 1.0 - tail, method="higher")),
    )


@dataclass(frozen=True)
class LabelsNeededInterval:
    """Labels needed for a target score, with a percentile bootstrap interval over the test cases.

    Attributes:
        estimate: :func:`labels_needed` of the curve fitted to the mean over all cases.
        lower: Lower end of the interval (NaN when no resample gave a count).
        upper: Upper end (``inf`` when the resamples' curves often never reach the target).
        confidence: Nominal coverage, e.g. 0.95.
        n_resamples: Bootstrap resamples drawn.
        n_failed: Resamples without a count (a failed fit, a curve that does not increase, a
            label count without any case, or a target measured on none of the resample's cases),
            left out of the interval; read it beside the interval.
        resamples: ``(n_resamples,)`` each resample's count, NaN where it failed. Two calls with the
            same ``seed`` and the same number of cases resample the same cases, so for two arms
            measured on the same test cases (same column order) their difference is a paired
            bootstrap of the labels saved (:func:`percentile_interval` of it).
    """

    estimate: float
    lower: float
    upper: float
    confidence: float
    n_resamples: int
    n_failed: int
    resamples: npt.NDArray[np.float64]

    def contains(self, value: float) -> bool:
        """Whether ``lower <= value <= upper`` (``False`` against NaN).

        Example:
            >>> LabelsNeededInterval(25.0, 20.0, 31.0, 0.95, 3, 0, np.array([20.0, 25.0, 31.0])).contains(25)
            True
        """
        return bool(self.lower <= value <= self.upper)


def labels_needed_interval(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    target: float,
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | np.random.Generator = 0,
    round_up: bool = True,
    k_bounds: tuple[float, float] = (-5.0, 5.0),
    target_per_case: npt.ArrayLike | None = None,
) -> LabelsNeededInterval:
    """:func:`labels_needed` with a percentile bootstrap interval over the test cases (sec. 2.6, 4).

    ``scores[p, i]`` is test case ``i``'s score (e.g. a volume's class-averaged Dice) after
    fine-tuning on ``labels[p]`` labelled images. The point estimate fits
    ``mean score = a * labels**k + c`` to the mean over the cases at each label count (NaN cells,
    cases not measured at some count, left out of that mean) and solves it for ``target``.

    The interval resamples the test cases, the unit the test set was drawn in: resample ``b`` takes
    the columns ``rng.integers(0, N, size=(n_resamples, N))[b]`` of ``scores`` (the same cases at
    every label count, since every model is tested on the same cases), refits the curve to their
    means and solves it again, with ``rng = numpy.random.default_rng(seed)``. The interval is the
    percentile interval of those counts (:func:`percentile_interval`); resamples without a count
    are left out and counted in :attr:`LabelsNeededInterval.n_failed`. It covers the test-set
    sampling only, not the training runs' seed-to-seed spread, and near the curve's plateau, where
    a small change in the curve moves the count a long way, it is wide, as it should be.

    A target measured on the same test cases (the default of the paper's comparison: the supervised
    Dice with the most labels) moves with them: pass its per-case scores as ``target_per_case``,
    and each resample's target is their mean over that resample's cases. Held fixed instead, a
    resample of easier cases lifts the curve against an unmoved target, and the interval is that
    much too wide.

    Args:
        labels: ``(P,)`` labelled images of each fine-tuning run, at least 3 distinct.
        scores: ``(P, N)`` score of each of ``N`` test cases at each label count.
        target: Target score, e.g. a Dice of 0.85.
        confidence: Nominal coverage of the interval in ``(0, 1)``.
        n_resamples: Bootstrap resamples (default 1000).
        seed: Seed of the ``numpy.random.Generator`` drawing the resamples, or a generator.
        round_up: As in :func:`labels_needed`.
        k_bounds: Exponent range of :func:`~inpaintssl.stats.fit_power_law`.
        target_per_case: ``(N,)`` per-case scores whose mean (NaN cells left out) is the target,
            in the columns' order; each resample's target is their mean over its cases. ``target``
            stays the point estimate's (their mean over all cases, as the caller measured it).

    Returns:
        A :class:`LabelsNeededInterval`.

    Raises:
        ValueError: If the shapes disagree; ``labels`` are not finite and non-negative with at least
            3 distinct values; ``scores`` hold ``inf`` or a row of NaN alone; ``k_bounds`` is not a range
            (:func:`~inpaintssl.stats.fit_power_law`); ``target`` is not finite; ``confidence`` is
            not in ``(0, 1)``; ``n_resamples < 1``; or ``target_per_case`` is not ``(N,)`` with a
            number and no ``inf``. These are checked before resampling: a resample fails (NaN,
            counted in :attr:`LabelsNeededInterval.n_failed`) only for what its own cases make of
            the curve, never for input every resample shares.

    Example:
        >>> import numpy as np
        >>> n = np.array([5.0, 10.0, 25.0, 50.0, 100.0])
        >>> offsets = np.linspace(-0.02, 0.02, 9)  # nine test volumes, each a constant offset
        >>> scores = (0.9 - 0.5 / np.sqrt(n))[:, None] + offsets[None, :]
        >>> found = labels_needed_interval(n, scores, 0.8, n_resamples=200, seed=1)
        >>> found.estimate, found.contains(found.estimate), found.lower < 25.0 < found.upper
        (25.0, True, True)
    """
    xs = np.asarray(labels, dtype=np.float64)
    ys = np.asarray(scores, dtype=np.float64)
    if xs.ndim != 1 or ys.ndim != 2 or ys.shape[0] != xs.size or ys.shape[1] < 1:
        raise ValueError(
            "labels must be (P,) and scores (P, N) with N >= 1 test cases; found "
            f"labels.shape={xs.shape}, scores.shape={ys.shape}"
        )
    # Checked once here: every resample shares these, and a fit refusing them inside the loop would
    # read as n_resamples failed resamples (an all-NaN or partial interval) instead of an error.
    _validated_x(xs, name="labels")
    _exponent_bounds(xs, k_bounds)
    if np.any(np.isinf(ys)):
        bad = np.argwhere(np.isinf(ys))[0]
        raise ValueError(
            "scores must be finite or NaN (a case not measured at that count); found "
            f"{ys[tuple(bad)]} at scores[{bad[0]}, {bad[1]}]"
        )
    empty = np.flatnonzero(np.all(np.isnan(ys), axis=1))
    if empty.size:
        raise ValueError(
            f"scores[{empty[0]}] (labels={xs[empty[0]]:g}) is all NaN: no case was measured at that "
            "label count, so no resample has a curve to solve; expected at least one score per count "
            "(leave the count out)"
        )
    if not math.isfinite(target):
        raise ValueError(f"target must be a finite number; found {target!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); found {confidence!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1; found {n_resamples!r}")

    moving: npt.NDArray[np.float64] | None = None
    if target_per_case is not None:
        moving = np.asarray(target_per_case, dtype=np.float64)
        if moving.shape != (ys.shape[1],) or bool(np.all(np.isnan(moving))):
            raise ValueError(
                f"target_per_case must be ({ys.shape[1]},), one score per test case with at least one "
                f"number; found shape {moving.shape}"
            )
        if np.any(np.isinf(moving)):
            raise ValueError(
                "target_per_case must be finite or NaN (a case not measured); found "
                f"{moving[np.isinf(moving)][0]} at index {int(np.argmax(np.isinf(moving)))}"
            )

    def solve(columns: npt.NDArray[np.float64], goal: float) -> float:
        if math.isnan(goal) or np.any(np.all(np.isnan(columns), axis=1)):
            return math.nan  # no target, or a label count without any case: no curve to solve
        try:
            fit = fit_power_law(xs, np.nanmean(columns, axis=1), k_bounds=k_bounds)
        except RuntimeError:  # the optimiser did not converge on this resample's means
            return math.nan
        return labels_needed(fit, goal, round_up=round_up)

    def goal_of(row: npt.NDArray[np.int64]) -> float:
        if moving is None:
            return target
        chosen = moving[row]
        return float(np.nanmean(chosen)) if np.any(~np.isnan(chosen)) else math.nan

    rng = np.random.default_rng(seed)
    n_cases = ys.shape[1]
    indices = rng.integers(0, n_cases, size=(n_resamples, n_cases))
    resamples = np.array([solve(ys[:, row], goal_of(row)) for row in indices], dtype=np.float64)
    lower, upper = percentile_interval(resamples, confidence=confidence)
    return LabelsNeededInterval(
        estimate=solve(ys, target),
        lower=lower,
        upper=upper,
        confidence=confidence,
        n_resamples=n_resamples,
        n_failed=int(np.count_nonzero(np.isnan(resamples))),
        resamples=resamples,
    )
