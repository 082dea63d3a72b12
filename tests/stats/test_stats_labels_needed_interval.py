"""Bootstrap intervals of the labels needed: containment, narrowing, reproducibility, a closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inpaintssl.stats import labels_needed_interval, percentile_interval

LABELS = np.array([5.0, 10.0, 25.0, 50.0, 100.0])


def _cases(n_cases: int, seed: int, *, noise: float = 0.01) -> np.ndarray:
    """``(5, n_cases)`` Dice: 0.9 - 0.5 / sqrt(n), plus a per-volume offset and per-run noise."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0.0, 0.03, n_cases)
    curve = 0.9 - 0.5 / np.sqrt(LABELS)
    return curve[:, None] + offsets[None, :] + rng.normal(0.0, noise, (LABELS.size, n_cases))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_interval_contains_the_estimate_and_the_truth_in_a_well_posed_case(seed: int) -> None:
    # Truth: 0.5 / sqrt(n) = 0.1 -> 25 volumes, inside the 5-100 fitted.
    found = labels_needed_interval(LABELS, _cases(60, seed), 0.8, n_resamples=200, seed=seed)
    assert found.contains(found.estimate)
    assert found.lower <= 25.0 <= found.upper
    assert found.n_failed == 0 and found.resamples.shape == (200,)
    assert found.lower == int(found.lower) and found.upper == int(found.upper)  # rounded-up counts


def test_the_interval_narrows_with_more_cases() -> None:
    widths = [
        (lambda f: f.upper - f.lower)(
            labels_needed_interval(LABELS, _cases(n, 7), 0.8, n_resamples=200, seed=3)
        )
        for n in (10, 40, 160)
    ]
    assert widths[0] > widths[1] > widths[2] > 0


def test_the_same_seed_gives_the_same_interval() -> None:
    scores = _cases(20, 4)
    first = labels_needed_interval(LABELS, scores, 0.8, n_resamples=50, seed=11)
    again = labels_needed_interval(LABELS, scores, 0.8, n_resamples=50, seed=11)
    other = labels_needed_interval(LABELS, scores, 0.8, n_resamples=50, seed=12)
    np.testing.assert_array_equal(first.resamples, again.resamples)
    assert (first.lower, first.upper) == (again.lower, again.upper)
    assert not np.array_equal(first.resamples, other.resamples)
    from_generator = labels_needed_interval(
        LABELS, scores, 0.8, n_resamples=50, seed=np.random.default_rng(11)
    )
    np.testing.assert_array_equal(first.resamples, from_generator.resamples)


def test_offsets_only_have_a_closed_form() -> None:
    # Each volume i scores 0.9 + u_i - 0.5 / sqrt(n): a resample's mean curve is the true curve
    # shifted by the mean u* of its offsets, so its count solves 0.5 / sqrt(n) = 0.1 + u*:
    # n = (0.5 / (0.1 + u*))^2, a decreasing function of u*. The interval is therefore that
    # function of the bootstrap means of u, computed here with NumPy alone from the documented draw.
    offsets = np.linspace(-0.03, 0.03, 13)
    scores = (0.9 - 0.5 / np.sqrt(LABELS))[:, None] + offsets[None, :]
    found = labels_needed_interval(LABELS, scores, 0.8, n_resamples=300, seed=5, round_up=False)
    draws = np.random.default_rng(5).integers(0, offsets.size, size=(300, offsets.size))
    expected = (0.5 / (0.1 + offsets[draws].mean(axis=1))) ** 2
    np.testing.assert_allclose(found.resamples, expected, rtol=1e-6)
    assert found.estimate == pytest.approx((0.5 / (0.1 + offsets.mean())) ** 2, rel=1e-6)
    assert (found.lower, found.upper) == (
        pytest.approx(np.quantile(expected, 0.025, method="lower"), rel=1e-6),
        pytest.approx(np.quantile(expected, 0.975, method="higher"), rel=1e-6),
    )


def test_identical_cases_collapse_the_interval_onto_the_hand_solved_count() -> None:
    scores = np.repeat((0.9 - 0.5 / np.sqrt(LABELS))[:, None], 6, axis=1)
    found = labels_needed_interval(LABELS, scores, 0.8, n_resamples=20, seed=0)
    assert (found.estimate, found.lower, found.upper) == (25.0, 25.0, 25.0)


def test_a_target_measured_on_the_cases_moves_with_each_resample() -> None:
    # Each case scores 0.9 + u_i - 0.5 / sqrt(n), and the target is each case's score at 100
    # labels. In every resample the mean curve and the mean target shift by the same mean offset,
    # so by hand every resample needs exactly 100 labels. Held at the all-case mean, the same
    # target is crossed earlier by resamples of easier cases, later by harder ones.
    offsets = np.linspace(-0.03, 0.03, 13)
    scores = (0.9 - 0.5 / np.sqrt(LABELS))[:, None] + offsets[None, :]
    per_case = scores[-1]
    target = float(per_case.mean())
    moving = labels_needed_interval(LABELS, scores, target, n_resamples=100, seed=2, target_per_case=per_case)
    assert (moving.estimate, moving.lower, moving.upper, moving.n_failed) == (100.0, 100.0, 100.0, 0)
    fixed = labels_needed_interval(LABELS, scores, target, n_resamples=100, seed=2)
    assert fixed.estimate == 100.0 and fixed.lower < 90.0 and fixed.upper > 110.0
    # A target the same on every case is the fixed target, resample by resample (0.75: exact sums).
    constant = labels_needed_interval(
        LABELS, scores, 0.75, n_resamples=50, seed=4, target_per_case=np.full(13, 0.75)
    )
    np.testing.assert_array_equal(
        constant.resamples, labels_needed_interval(LABELS, scores, 0.75, n_resamples=50, seed=4).resamples
    )


def test_a_resample_without_a_target_case_fails_and_is_counted() -> None:
    # Only case 0 measures the target: resamples that miss it have no target and no count.
    scores = _cases(5, 1)
    per_case = np.array([0.8, np.nan, np.nan, np.nan, np.nan])
    found = labels_needed_interval(LABELS, scores, 0.8, n_resamples=200, seed=0, target_per_case=per_case)
    draws = np.random.default_rng(0).integers(0, 5, size=(200, 5))
    missing = ~np.any(draws == 0, axis=1)
    assert missing.any() and found.n_failed == int(missing.sum())
    assert np.array_equal(np.isnan(found.resamples), missing)


def test_an_infinite_score_is_refused_rather_than_left_to_the_resamples_without_it() -> None:
    # A well-posed curve with one test case scored inf: each resample drawing that case failed, and
    # the interval was read off the others alone, beside a NaN estimate.
    scores = _cases(6, 0)
    scores[2, 0] = math.inf
    with pytest.raises(ValueError, match=r"scores must be finite or NaN.*found inf at scores\[2, 0\]"):
        labels_needed_interval(LABELS, scores, 0.8, n_resamples=50, seed=0)


def test_a_label_count_with_no_case_measured_is_refused_not_failed_in_every_resample() -> None:
    # The row of a count whose runs are not evaluated yet, all NaN: every resample failed (NaN
    # estimate and interval, n_failed == n_resamples) without a word.
    scores = _cases(6, 0)
    scores[2, :] = math.nan
    with pytest.raises(ValueError, match=rf"scores\[2\] \(labels={LABELS[2]:g}\) is all NaN"):
        labels_needed_interval(LABELS, scores, 0.8, n_resamples=50, seed=0)


def test_a_plateau_below_the_target_gives_infinite_counts_not_nan() -> None:
    found = labels_needed_interval(LABELS, _cases(30, 0, noise=0.0), 0.95, n_resamples=30, seed=0)
    assert found.estimate == math.inf and found.lower == found.upper == math.inf and found.n_failed == 0


def test_percentile_interval_by_hand() -> None:
    assert percentile_interval(np.arange(1.0, 101.0), confidence=0.9) == (5.0, 96.0)
    # NaN left out: [1, 2, 3, inf]; the 25% and 75% positions are 0.75 and 2.25 of 0..3, taken
    # outwards (indices 0 and 3), so the infinite count stays infinite instead of turning NaN.
    assert percentile_interval([3.0, np.nan, 1.0, 2.0, math.inf], confidence=0.5) == (1.0, math.inf)
    assert percentile_interval([3.0, np.nan, 1.0, 2.0, 4.0], confidence=0.5) == (1.0, 4.0)
    assert all(math.isnan(v) for v in percentile_interval([np.nan]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.0}, r"confidence must lie in \(0, 1\)"),
        ({"n_resamples": 0}, r"n_resamples must be an int >= 1"),
        ({"target": math.nan}, r"target must be a finite number"),
        ({"scores": np.zeros((4, 3))}, r"scores \(P, N\)"),
        ({"target_per_case": np.zeros(4)}, r"target_per_case must be \(3,\).*found shape \(4,\)"),
        ({"target_per_case": np.full(3, np.nan)}, r"target_per_case must be \(3,\)"),
        # Input every resample shares is refused once, not turned into an all-NaN or partial interval.
        ({"labels": [5.0, 5.0, 10.0, 10.0, 10.0]}, r"3 distinct values of labels; found \[5\.0, 10\.0\]"),
        ({"labels": [5.0, 10.0, np.nan, 50.0, 100.0]}, r"labels must be finite; found \[nan\]"),
        ({"labels": [-5.0, 10.0, 25.0, 50.0, 100.0]}, r"labels must be >= 0.*\[-5\.0\]"),
        ({"k_bounds": (5.0, -5.0)}, r"k_bounds must be \(lo, hi\) with lo < hi.*\(5\.0, -5\.0\)"),
        ({"k_bounds": (-math.inf, 5.0)}, r"k_bounds must be two finite numbers"),
        (
            {"scores": np.where(np.eye(5, 3, k=-1) > 0, np.inf, 0.0)},
            r"scores must be finite or NaN.*scores\[1, 0\]",
        ),
        ({"target_per_case": [0.8, -np.inf, 0.8]}, r"target_per_case must be finite or NaN.*-inf at index 1"),
    ],
)
def test_validates(kwargs, message) -> None:
    args = {"labels": LABELS, "scores": np.zeros((5, 3)), "target": 0.8, **kwargs}
    with pytest.raises(ValueError, match=message):
        labels_needed_interval(args.pop("labels"), args.pop("scores"), args.pop("target"), **args)
