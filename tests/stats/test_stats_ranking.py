"""Strategy rankings reproduce hand-made orderings and the paper's Table 3 selection."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from inpaintssl.stats import StrategyRank, pairwise_wilcoxon, rank_strategies, top_in_all, wilcoxon_greater

N = 20
BASELINE = np.linspace(0.55, 0.75, N)


def _strategy(negative_ranks: tuple[int, ...]) -> np.ndarray:
    """Baseline plus differences whose size is their rank (1..N) and sign is - for the given ranks."""
    signs = np.array([-1.0 if r in negative_ranks else 1.0 for r in range(1, N + 1)])
    return BASELINE + signs * np.arange(1, N + 1) * 1e-3


def test_hand_made_ordering_and_exact_p_values() -> None:
    # With distinct |differences| the exact one-sided p-value is (number of sign patterns with
    # W+ at least the observed one) / 2^N. All positive: 1 pattern. Rank 1 negative: W+ = 209,
    # patterns with negative-rank sum <= 1: {}, {1} -> 2. Ranks 1, 2 negative: W+ = 207,
    # negative-rank sums <= 3: {}, {1}, {2}, {3}, {1, 2} -> 5.
    scores = {
        "worse": _strategy(tuple(range(1, 16))),
        "two_losses": _strategy((1, 2)),
        "all_wins": _strategy(()),
        "one_loss": _strategy((1,)),
    }
    ranking = rank_strategies(scores, BASELINE)
    assert [r.name for r in ranking] == ["all_wins", "one_loss", "two_losses", "worse"]
    assert [r.rank for r in ranking] == [1, 2, 3, 4]
    np.testing.assert_allclose([r.p_value for r in ranking[:3]], np.array([1, 2, 5]) / 2**N, rtol=1e-9)
    assert ranking[3].p_value > 0.5
    assert all(r.n_pairs == N for r in ranking)
    assert ranking[0].mean_difference == pytest.approx(np.mean(np.arange(1, N + 1) * 1e-3))


def test_equal_p_values_are_ordered_by_mean_difference_then_name() -> None:
    small = BASELINE + np.arange(1, N + 1) * 1e-3
    large = BASELINE + np.arange(1, N + 1) * 2e-3
    ranking = rank_strategies({"b_small": small, "a_large": large, "c_small": small}, BASELINE)
    assert ranking[0].p_value == ranking[1].p_value == ranking[2].p_value
    assert [r.name for r in ranking] == ["a_large", "b_small", "c_small"]


def test_label_fractions_are_pooled_pairwise() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0.5, 0.8, (4, 12))  # 4 label fractions x 12 test images
    strategy = baseline + rng.normal(0.01, 0.02, (4, 12))
    (row,) = rank_strategies({"s": strategy}, baseline)
    assert row.n_pairs == 48
    assert row.p_value == wilcoxon_greater(strategy.ravel(), baseline.ravel())


def test_rank_strategies_validates() -> None:
    with pytest.raises(ValueError, match=r"at least one strategy"):
        rank_strategies({}, BASELINE)
    told = r"scores\['short'\]\.shape=\(3,\) and baseline\['short'\]\.shape=\(20,\)"
    with pytest.raises(ValueError, match=told):
        rank_strategies({"short": [0.1, 0.2, 0.3]}, BASELINE)


def _table(names_and_p: list[tuple[str, float]]) -> list[StrategyRank]:
    return [StrategyRank(i, name, p, 100, 0.0) for i, (name, p) in enumerate(names_and_p, start=1)]


def test_top_in_all_reproduces_the_papers_choice() -> None:
    # Paper Table 3 (CR = context restoration, CP = context prediction).
    mri = _table(
        [
            ("CR 64 random", 1.64e-18),
            ("CR 8 random", 1.89e-18),
            ("CR 32 poisson", 1.05e-17),
            ("CR 8 poisson", 4.03e-17),
            ("CR 32 random", 9.38e-16),
        ]
    )
    ct = _table(
        [
            ("CR 32 poisson", 6.29e-17),
            ("CR 64 poisson", 1.88e-9),
            ("CR 32 random", 4.12e-7),
            ("CP 64 poisson", 0.1),
            ("CP 64 random", 0.66),
        ]
    )
    assert top_in_all({"mri": mri, "ct": ct}, top=3) == ["CR 32 poisson"]
    assert top_in_all({"mri": mri, "ct": ct}, top=5) == ["CR 32 poisson", "CR 32 random"]
    assert top_in_all({"mri": mri, "ct": ct}, top=1) == []


def test_top_in_all_requires_presence_in_every_dataset() -> None:
    assert top_in_all({"a": _table([("x", 0.1), ("y", 0.2)]), "b": _table([("y", 0.1)])}, top=2) == ["y"]


def test_top_in_all_validates() -> None:
    with pytest.raises(ValueError, match=r"top must be >= 1; found 0"):
        top_in_all({"a": _table([("x", 0.1)])}, top=0)
    with pytest.raises(ValueError, match=r"at least one dataset"):
        top_in_all({})


def test_pairwise_matrix() -> None:
    scores = {"one_loss": _strategy((1,)), "all_wins": _strategy(()), "baseline": BASELINE}
    names, p = pairwise_wilcoxon(scores)
    assert names == ["all_wins", "baseline", "one_loss"]
    assert np.isnan(np.diag(p)).all()
    assert p[0, 1] == pytest.approx(1 / 2**N)  # all_wins > baseline
    assert p[2, 1] == pytest.approx(2 / 2**N)  # one_loss > baseline
    assert p[1, 0] > 0.99
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                assert p[i, j] == wilcoxon_greater(scores[a], scores[b])


def test_strategies_whose_p_values_underflow_to_zero_rank_by_mean_difference_without_a_warning() -> None:
    # 3,000 pairs all one way: the normal approximation's p-value underflows to 0 for both, and
    # log(0) - log(0) is NaN; the two must still tie on p and be told apart by their differences.
    baseline = np.linspace(0.5, 0.6, 3000)
    scores = {"small": baseline + 0.01, "large": baseline + 0.02}
    assert wilcoxon_greater(scores["small"], baseline) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ranking = rank_strategies(scores, baseline)
    assert [(r.name, r.rank, r.tied_rank) for r in ranking] == [("large", 1, 1.0), ("small", 2, 2.0)]
