"""wilcoxon_greater against SciPy and against exact p-values counted by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from inpaintssl.stats import wilcoxon_greater
from wilcoxon_reference import brute_force_p_greater, grid_differences, normal_p_greater, ranked


def _exact_p_greater(signed_ranks: list[int]) -> float:
    """P(W+ >= observed) under H0 by counting the 2^n sign patterns with a subset-sum table."""
    n = len(signed_ranks)
    observed = sum(r for r in signed_ranks if r > 0)
    counts = [1] + [0] * (n * (n + 1) // 2)  # counts[s] = number of rank subsets summing to s
    for rank in range(1, n + 1):
        for s in range(len(counts) - 1, rank - 1, -1):
            counts[s] += counts[s - rank]
    return sum(counts[observed:]) / 2**n


@pytest.mark.parametrize(
    ("negative_ranks", "n"),
    [((), 5), ((1,), 5), ((1, 2), 10), ((3,), 12), ((1, 4, 7), 20), ((2, 5, 6, 9, 11), 15)],
)
def test_matches_exact_counting(negative_ranks, n) -> None:
    signed = [-r if r in negative_ranks else r for r in range(1, n + 1)]
    baseline = np.linspace(0.5, 0.7, n)
    a = baseline + np.array(signed) * 1e-3  # |differences| are distinct, ordered as the ranks
    assert wilcoxon_greater(a, baseline) == pytest.approx(_exact_p_greater(signed), rel=1e-9)


def test_hand_values() -> None:
    # 5 pairs all improved: only 1 of 32 sign patterns is as extreme -> 1/32.
    # Smallest difference negative: W+ = 14; patterns with W+ >= 14 are {all +} and {only rank 1 -}.
    base = np.array([0.60, 0.62, 0.58, 0.70, 0.65])
    assert wilcoxon_greater(base + np.array([0.01, 0.02, 0.03, 0.04, 0.05]), base) == pytest.approx(1 / 32)
    assert wilcoxon_greater(base + np.array([-0.01, 0.02, 0.03, 0.04, 0.05]), base) == pytest.approx(2 / 32)


def _exactly(kind: str) -> dict[str, float]:
    """Exact comparison for continuous samples: now and then two of their |differences| lie closer
    than the default round-off tolerance (~1e-6), which ties them where SciPy does not. Samples on
    the 0.1 grid keep the default, which removes their round-off as the references here do."""
    return {} if kind == "ties" else {"rtol": 0.0, "atol": 0.0}


def _sample(n: int, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.0, 1.0, n), rng.uniform(0.0, 1.0, n)
    if kind == "ties":
        a, b = np.round(a, 1), np.round(b, 1)
    elif kind == "zeros":
        m = int(rng.integers(0, n + 1))  # m == n: every difference is zero
        b[:m] = a[:m]
    return a, b


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32 - 1))
def test_untied_samples_match_scipy(n: int, seed: int) -> None:
    # Without ties or zeros every SciPy since 1.10 agrees: exact up to 50 pairs, normal beyond.
    a, b = _sample(n, "continuous", seed)
    got = wilcoxon_greater(a, b, **_exactly("continuous"))
    assert got == pytest.approx(stats.wilcoxon(a, b, alternative="greater").pvalue, rel=1e-12)
    assert 0.0 < got <= 1.0


@given(
    st.integers(min_value=1, max_value=16),
    st.sampled_from(["ties", "zeros"]),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_small_tied_samples_are_exact(n: int, kind: str, seed: int) -> None:
    a, b = _sample(n, kind, seed)
    got = wilcoxon_greater(a, b, **_exactly(kind))
    if np.all(a == b):
        assert got == 1.0
    else:
        assert got == pytest.approx(brute_force_p_greater(a, b), rel=1e-12)


@given(
    st.integers(min_value=60, max_value=300),
    st.sampled_from(["ties", "zeros"]),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_large_tied_samples_use_the_tie_corrected_normal_approximation(n: int, kind: str, seed: int) -> None:
    a, b = _sample(n, kind, seed)
    d = grid_differences(a, b)
    nonzero = int(np.count_nonzero(d))
    got = wilcoxon_greater(a, b, **_exactly(kind))
    if nonzero == 0:
        assert got == 1.0
    elif nonzero > 50:
        assert got == pytest.approx(normal_p_greater(a, b), rel=1e-12)
        # SciPy compares exactly, so it gets the differences with their round-off removed.
        assert got == pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue, rel=1e-12)


def test_a_mid_sized_tied_sample_stays_exact() -> None:
    # 30 pairs with ties: SciPy 1.13+ switches to the normal approximation here, older ones too;
    # the exact p of the tied ranks differs from it in the third digit.
    a, b = _sample(30, "ties", 4)
    ranks, observed = ranked(a, b)
    doubled = np.rint(2 * ranks).astype(int)
    counts = [1] + [0] * int(doubled.sum())  # an independent subset-sum count in Python integers
    for r in doubled:
        for s in range(len(counts) - 1, r - 1, -1):
            counts[s] += counts[s - r]
    expected = sum(counts[round(2 * observed) :]) / 2**ranks.size
    assert wilcoxon_greater(a, b) == pytest.approx(expected, rel=1e-12)
    assert wilcoxon_greater(a, b) != pytest.approx(normal_p_greater(a, b), rel=1e-3)


def test_small_tied_sample_by_hand() -> None:
    a = np.array([8.0, 7.0, 9.0, 6.0, 8.0, 8.0])
    b = np.array([7.0, 7.0, 8.0, 7.0, 7.0, 9.0])  # d = 1, 0, 1, -1, 1, -1: ties and a zero
    assert wilcoxon_greater(a, b) == pytest.approx(brute_force_p_greater(a, b), rel=1e-12)
    assert wilcoxon_greater(a, b) == 0.5  # W+ = 3 x rank 3 = 9: 16 of 32 patterns have >= 3 plus signs


def test_all_zero_differences_give_one() -> None:
    x = [0.8, 0.7, 0.9]
    assert wilcoxon_greater(x, x) == 1.0


def test_one_sided_direction() -> None:
    rng = np.random.default_rng(0)
    b = rng.uniform(0.6, 0.8, 30)
    a = b + rng.uniform(0.01, 0.05, 30)
    assert wilcoxon_greater(a, b) < 1e-6
    assert wilcoxon_greater(b, a) > 0.999


def test_pairs_any_matching_shape() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((4, 9)), rng.random((4, 9))
    assert wilcoxon_greater(a, b) == wilcoxon_greater(a.ravel(), b.ravel())


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], r"a\.shape=\(3,\) and b\.shape=\(2,\)"),
        ([1.0, np.nan], [1.0, 2.0], r"a must be finite; found NaN or inf at flat indices \[1\]"),
        ([1.0, 2.0], [np.inf, 2.0], r"b must be finite"),
        ([], [], r"at least one pair"),
        (["0.9", "high"], [0.5, 0.6], r"a and b must be sequences or arrays of numbers"),
    ],
)
def test_rejects_bad_samples(a, b, message) -> None:
    with pytest.raises(ValueError, match=message):
        wilcoxon_greater(a, b)


def test_a_missing_sample_is_named_not_read_as_nan() -> None:
    # None became NaN: "a must be finite; found NaN".
    with pytest.raises(TypeError, match=r"^a is None; expected scores"):
        wilcoxon_greater(None, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^b is None; expected scores"):
        wilcoxon_greater([0.9], None)  # type: ignore[arg-type]
