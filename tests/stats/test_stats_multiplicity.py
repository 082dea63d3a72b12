"""Holm-adjusted p-values reproduce Holm's step-down procedure and hand-worked values."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.stats import holm_adjusted

P_VALUES = st.lists(
    st.one_of(st.floats(min_value=0.0, max_value=1.0), st.just(math.nan), st.sampled_from([0.01, 0.05, 0.5])),
    min_size=0,
    max_size=12,
)


def _holm_rejects(p: list[float], alpha: float) -> set[int]:
    """Holm's procedure as he stated it: test the sorted p-values in turn against alpha / (m - k)."""
    tested = sorted((value, i) for i, value in enumerate(p) if not math.isnan(value))
    m = len(tested)
    rejected: set[int] = set()
    for k, (value, i) in enumerate(tested):
        if value > alpha / (m - k):
            break
        rejected.add(i)
    return rejected


def test_hand_worked_values() -> None:
    # Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04; the running
    # maximum lifts the last to 0.06. Back in the order given:
    np.testing.assert_allclose(holm_adjusted([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    assert holm_adjusted([0.2, 0.6]).tolist() == [0.4, 0.6]
    assert holm_adjusted([0.7, 0.6]).tolist() == [1.0, 1.0]  # capped at 1, then kept monotone
    assert holm_adjusted([0.03]).tolist() == [0.03]  # one test: nothing to adjust for


def test_nan_is_no_test_and_the_shape_is_kept() -> None:
    adjusted = holm_adjusted([[0.01, math.nan], [0.02, 0.5]])
    assert adjusted.shape == (2, 2)
    assert math.isnan(adjusted[0, 1])
    np.testing.assert_allclose(adjusted[[0, 1, 1], [0, 0, 1]], [0.03, 0.04, 0.5])  # m = 3, not 4
    assert np.isnan(holm_adjusted([math.nan, math.nan])).all()
    assert holm_adjusted([]).shape == (0,)


@pytest.mark.parametrize("bad, index", [([0.1, 1.5], 1), ([-0.01], 0), ([0.2, 0.3, math.inf], 2)])
def test_values_outside_the_unit_interval_are_refused_by_index(bad: list[float], index: int) -> None:
    with pytest.raises(ValueError, match=rf"p_values must lie in \[0, 1\].*found .* at flat index {index}"):
        holm_adjusted(bad)


@given(P_VALUES, st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.25]))
def test_rejections_at_any_level_are_holms_procedure(p: list[float], alpha: float) -> None:
    adjusted = holm_adjusted(p)
    assert {i for i, value in enumerate(adjusted) if value <= alpha} == _holm_rejects(p, alpha)


@given(P_VALUES, st.randoms(use_true_random=False))
def test_invariants(p: list[float], rng: random.Random) -> None:
    adjusted = holm_adjusted(p)
    values = np.asarray(p, dtype=np.float64)
    tested = ~np.isnan(values)
    assert np.array_equal(np.isnan(adjusted), ~tested)
    assert np.all(adjusted[tested] >= values[tested]) and np.all(adjusted[tested] <= 1.0)
    m = int(tested.sum())
    if m:
        # The smallest is Bonferroni's; a smaller p-value never gets a larger adjusted one.
        smallest = int(np.nanargmin(values))
        assert adjusted[smallest] == pytest.approx(min(1.0, m * values[smallest]))
        order = np.argsort(values[tested], kind="stable")
        assert np.all(np.diff(adjusted[tested][order]) >= 0)
    # The listing order changes nothing: adjusted values follow their p-values.
    permutation = list(range(len(p)))
    rng.shuffle(permutation)
    np.testing.assert_array_equal(holm_adjusted(values[permutation]), adjusted[permutation])
