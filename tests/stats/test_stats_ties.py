"""Scores equal up to float round-off tie: ranks, Wilcoxon p-values and rankings ignore summation order."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from inpaintssl.stats import rank_strategies, tolerant_rankdata, top_in_all, wilcoxon_greater
from inpaintssl.stats.ties import (
    ROUND_OFF_RTOL,
    pairwise_round_off_tolerance,
    round_off_tolerance,
    tie_groups,
)


def test_round_off_zero_and_round_off_ties_by_hand() -> None:
    # Differences: 0.1 + 0.2 - 0.3 = 5.6e-17 (round-off: zero), 0.8 - 0.7 = +0.10000000000000009,
    # 0.4 - 0.5 = -0.09999999999999998 (the same 0.1 in decimal: a tie), 0.5 - 0.3 = +0.2.
    # By hand: zero dropped, ranks 1.5 (+), 1.5 (-), 3 (+), W+ = 4.5. The 8 sign patterns of
    # {1.5, 1.5, 3} have W+ in {0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6}: P(W+ >= 4.5) = 3/8.
    a = [0.1 + 0.2, 0.8, 0.4, 0.5]
    b = [0.3, 0.7, 0.5, 0.3]
    assert wilcoxon_greater(a, b) == 3 / 8
    # Exact comparison ranks the round-off: 4 pairs, ranks 1 (+), 3 (+), 2 (-), 4 (+) -> W+ = 8,
    # reached by {1,3,4}, {2,3,4}, {1,2,3,4} of 16 patterns. Which "0.1" is larger decided that.
    assert wilcoxon_greater(a, b, rtol=0.0, atol=0.0) == 3 / 16
    # The same data written with the other round-off give the same p-value with the tolerance.
    assert wilcoxon_greater([0.3, 0.7 - 0.6 + 0.7, 0.4, 0.5], [0.1 + 0.2, 0.7, 0.5, 0.3]) == 3 / 8


def test_tolerant_ranks_by_hand_and_scipy_at_zero_tolerance() -> None:
    values = [0.3, 0.1 + 0.2, 0.2, 0.7 - 0.6, 0.1]
    # 0.1 and 0.7 - 0.6 (0.09999999999999998) tie at ranks 1-2, 0.2 is 3, 0.3 and 0.1 + 0.2 tie at 4-5.
    assert tolerant_rankdata(values, tol=round_off_tolerance(values)).tolist() == [4.5, 4.5, 3.0, 1.5, 1.5]
    np.testing.assert_array_equal(tolerant_rankdata(values, tol=0.0), stats.rankdata(values))


def test_the_tolerance_scales_with_the_largest_score() -> None:
    assert round_off_tolerance([0.25, -1.0], [0.5], rtol=1e-6, atol=1e-12) == pytest.approx(1e-6 + 1e-12)
    assert round_off_tolerance([], rtol=1e-6, atol=1e-12) == 1e-12
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        round_off_tolerance([1.0], rtol=-1.0)


def test_one_extreme_pair_leaves_the_other_pairs_differences_alone() -> None:
    # Twelve images, the first arm's percent error lower on each by 0.05..0.6 points, and a
    # thirteenth image of a tissue of a few pixels: errors of 1e6 % in both arms, 5 points apart.
    # By hand: no difference is round-off, all 13 favour the first arm and no two tie, so the
    # one-sided exact p is 1 / 2**13. A tolerance scaled by the samples' largest magnitude (1e6 x
    # 2**-20, about 0.95 points) dropped the twelve as zeros and left p = 1/2 from the one pair.
    baseline = np.linspace(5.0, 20.0, 12)
    better = baseline - np.linspace(0.05, 0.6, 12)
    a = np.append(baseline, 1e6 + 5.0)  # "a > b": the baseline's error exceeds the better arm's
    b = np.append(better, 1e6)
    assert wilcoxon_greater(a, b) == 1 / 2**13
    assert wilcoxon_greater(a, b) == stats.wilcoxon(a, b, alternative="greater", method="exact").pvalue


@settings(deadline=None)
@given(st.floats(min_value=1.0, max_value=1e12), st.integers(0, 2**32 - 1))
def test_a_pair_of_equal_extreme_values_changes_no_p_value(extreme: float, seed: int) -> None:
    # A zero difference is dropped whatever its size: adding one must leave the test as it was,
    # however far its magnitude lies above the other scores'.
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 1, 15).round(3), rng.uniform(0, 1, 15).round(3)
    assert wilcoxon_greater(np.append(a, extreme), np.append(b, extreme)) == wilcoxon_greater(a, b)


def test_pairwise_tolerances_and_per_value_tie_groups_by_hand() -> None:
    tol = pairwise_round_off_tolerance([0.5, -3.0, 1e6], [-2.0, 1.0, 1e6], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(tol, [2e-6 + 1e-12, 3e-6 + 1e-12, 1.0 + 1e-12], rtol=1e-15)
    with pytest.raises(ValueError, match="same number of values"):
        pairwise_round_off_tolerance([1.0, 2.0], [1.0])
    # Sorted 1.0, 1.4, 2.0, 5.0: gaps 0.4, 0.6, 3.0. With tolerances 0.5, 0.1, 0.7, 0.0 each gap
    # joins within the larger of its two ends' tolerances: 0.4 <= 0.5 and 0.6 <= 0.7 join, 3.0 does not.
    assert tie_groups([5.0, 2.0, 1.4, 1.0], tol=[0.0, 0.7, 0.1, 0.5]).tolist() == [1, 0, 0, 0]
    # A scalar tolerance equal to every per-value one groups alike.
    values = [5.0, 2.0, 1.4, 1.0]
    per_value = tie_groups(values, tol=[0.45] * 4).tolist()
    assert per_value == tie_groups(values, tol=0.45).tolist() == [2, 1, 0, 0]
    with pytest.raises(ValueError, match="one per value"):
        tie_groups(values, tol=[0.1, 0.2])


# Per-case class-averaged Dice of two arms, built from integers (per-class Dice in thousandths) so
# the exact answer is known: the mean of 3 classes is their integer sum / 3000, a grid of 3.3e-4,
# far above the ~1e-6 tolerance; float round-off and float32 are far below it.
_cases = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1000), min_size=3 * n, max_size=3 * n),
        st.lists(st.integers(0, 1000), min_size=3 * n, max_size=3 * n),
        st.permutations(range(3)),
        st.integers(0, 2**32 - 1),
    )
)


def _class_means(counts: list[int], order: tuple[int, ...], *, float32: bool = False) -> np.ndarray:
    per_class = np.asarray(counts, dtype=np.float64).reshape(-1, 3) / 1000.0
    if float32:  # Dice computed on an accelerator in float32, averaged there
        return per_class.astype(np.float32).mean(axis=1, dtype=np.float32).astype(np.float64)
    total = per_class[:, order[0]] + per_class[:, order[1]] + per_class[:, order[2]]  # one summation order
    return total / 3.0


@settings(deadline=None)
@given(_cases)
def test_summation_order_and_round_off_do_not_change_the_p_value(case) -> None:
    a_counts, b_counts, order, seed = case
    # The truth: the test on the exact integer sums, where equal means equal.
    exact = wilcoxon_greater(
        np.asarray(a_counts).reshape(-1, 3).sum(axis=1),
        np.asarray(b_counts).reshape(-1, 3).sum(axis=1),
        rtol=0.0,
        atol=0.0,
    )
    a, b = _class_means(a_counts, order), _class_means(b_counts, (0, 1, 2))
    assert wilcoxon_greater(a, b) == exact
    # One arm in float32, the other in float64; then relative noise of 1 float32 ulp on both.
    a32 = _class_means(a_counts, order, float32=True)
    assert wilcoxon_greater(a32, b) == exact
    noise = np.random.default_rng(seed).uniform(-1, 1, (2, a.size)) * 2.0**-23
    assert wilcoxon_greater(a * (1 + noise[0]), b * (1 + noise[1])) == exact
    assert ROUND_OFF_RTOL > 2.0**-23 * 4  # the noise stays below the tolerance, as the test intends


@settings(deadline=None)
@given(_cases)
def test_round_off_does_not_change_ranks(case) -> None:
    a_counts, _, order, seed = case
    # Every case twice, its classes summed in two orders: exact ties that round-off may split.
    sums = np.asarray(a_counts).reshape(-1, 3).sum(axis=1)
    exact_sums = np.concatenate([sums, sums])
    twice = np.concatenate([_class_means(a_counts, order), _class_means(a_counts, (0, 1, 2))])
    noise = np.random.default_rng(seed).uniform(-1, 1, exact_sums.size) * 2.0**-22
    for scores in (
        twice,
        np.concatenate([_class_means(a_counts, order, float32=True), _class_means(a_counts, (0, 1, 2))]),
        twice * (1 + noise),
    ):
        tol = round_off_tolerance(scores)
        np.testing.assert_array_equal(tolerant_rankdata(scores, tol=tol), stats.rankdata(exact_sums))


@settings(deadline=None, max_examples=50)
@given(_cases)
def test_a_strategy_and_its_round_off_twin_tie_in_the_ranking(case) -> None:
    a_counts, b_counts, order, _ = case
    baseline = _class_means(b_counts, (0, 1, 2))
    plain = _class_means(a_counts, (0, 1, 2))
    reordered = _class_means(a_counts, order, float32=True)
    better = np.minimum(plain + 0.01, 1.0)  # a third strategy, ranked by its own merit
    # The twins' names are swapped between the two calls: were round-off to decide the order,
    # one of the calls would list them the other way, or give them different ranks.
    first = rank_strategies({"x": plain, "y": reordered, "z": better}, baseline)
    second = rank_strategies({"x": reordered, "y": plain, "z": better}, baseline)
    assert [(r.name, r.rank, r.tied_rank, r.p_value) for r in first] == [
        (r.name, r.rank, r.tied_rank, r.p_value) for r in second
    ]
    twins = {r.name: r for r in first if r.name in "xy"}
    assert twins["x"].p_value == twins["y"].p_value
    assert twins["x"].tied_rank == twins["y"].tied_rank == (twins["x"].rank + twins["y"].rank) / 2
    assert twins["x"].rank < twins["y"].rank  # listed by name within the tie


def test_tied_strategies_share_the_average_rank_and_the_top_cut() -> None:
    baseline = np.linspace(0.5, 0.7, 8)
    best = baseline + 0.05
    tied = baseline + np.linspace(0.01, 0.02, 8)
    twin = (baseline.astype(np.float32) + np.linspace(0.01, 0.02, 8).astype(np.float32)).astype(np.float64)
    ranking = rank_strategies({"best": best, "second": baseline + 0.03, "t1": tied, "t2": twin}, baseline)
    assert [(r.name, r.rank, r.tied_rank) for r in ranking] == [
        ("best", 1, 1.0),
        ("second", 2, 2.0),
        ("t1", 3, 3.5),
        ("t2", 4, 3.5),
    ]
    # A tie across the top-3 cut keeps neither twin: their names must not decide which is "3rd".
    assert top_in_all({"mri": ranking}, top=3) == ["best", "second"]
    assert top_in_all({"mri": ranking}, top=4) == ["best", "second", "t1", "t2"]
    # Exact comparison (the old behaviour) separates them by float32 round-off.
    exact = rank_strategies({"t1": tied, "t2": twin}, baseline, rtol=0.0, atol=0.0)
    assert exact[0].tied_rank == 1.0 and exact[1].tied_rank == 2.0


# Values with many exact ties (a few distinct values drawn again), signed zeros and infinities.
_tied_values = st.lists(
    st.one_of(
        st.sampled_from([0.0, -0.0, 0.25, 1.0, -1.0, np.inf, -np.inf]),
        st.floats(allow_nan=False, allow_infinity=True, width=64),
    ),
    max_size=30,
)


@settings(deadline=None, max_examples=200)
@given(_tied_values)
def test_zero_tolerance_ranks_are_scipys(values: list[float]) -> None:
    # SciPy ranks each value's position among the distinct values (same order, same ties): the
    # SciPy of the oldest supported releases ranks [inf, -inf] themselves as all NaN.
    _, position = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True)
    expected = stats.rankdata(position.reshape(-1))
    np.testing.assert_array_equal(tolerant_rankdata(values, tol=0.0), expected)
    np.testing.assert_array_equal(tolerant_rankdata(values, tol=[0.0] * len(values)), expected)


@pytest.mark.parametrize(
    ("values", "indices"),
    [
        ([3.0, 1.0, np.nan, 2.0], "1 NaN at flat indices [2]"),
        ([[np.nan, 1.0], [np.inf, np.nan]], "2 NaN at flat indices [0, 3]"),
        ([np.nan] * 7, "7 NaN at flat indices [0, 1, 2, 3, 4] ..."),
    ],
)
def test_nan_has_no_rank_and_is_refused(values: list[float], indices: str) -> None:
    # NaN sorted last and chained onto the largest value as a tie: [3, 1, nan, 2] ranked
    # [3.5, 1, 3.5, 2], where scipy's rankdata (which the docstring promises at tol=0) gives NaN.
    assert np.isnan(stats.rankdata(values)).all()
    message = f"values must not hold NaN (a NaN has no rank); found {indices}"
    for tol in (0.0, 1e-6):
        with pytest.raises(ValueError, match=re.escape(message) + "$"):
            tolerant_rankdata(values, tol=tol)
        with pytest.raises(ValueError, match=re.escape(message) + "$"):
            tie_groups(values, tol=tol)
