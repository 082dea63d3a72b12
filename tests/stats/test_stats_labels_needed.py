"""Labels needed for a target score, from hand-solved curves and from fitted ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.stats import PowerLawFit, fit_power_law, labels_needed


def _curve(a: float, k: float, c: float) -> PowerLawFit:
    return PowerLawFit(a=a, k=k, c=c, rse=0.0, ssr=0.0, ssr_over_n_minus_2=0.0, n=5)


def test_saturating_curve_hand_solved() -> None:
    fit = _curve(-0.5, -0.5, 0.9)  # 0.9 - 0.5 / sqrt(n)
    assert labels_needed(fit, 0.8) == 25.0  # 0.5 / sqrt(n) = 0.1 -> n = 25
    assert labels_needed(fit, 0.85) == 100.0  # 0.5 / sqrt(n) = 0.05 -> n = 100
    assert labels_needed(fit, 0.84, round_up=False) == pytest.approx(1 / 0.12**2)  # 69.44...
    assert labels_needed(fit, 0.84) == 70.0
    assert labels_needed(fit, 0.9) == math.inf  # the plateau itself is never reached
    assert labels_needed(fit, 0.95) == math.inf


def test_growing_curve_hand_solved() -> None:
    fit = _curve(0.01, 0.5, 0.6)  # 0.6 + 0.01 sqrt(n)
    assert labels_needed(fit, 0.7) == 100.0
    assert labels_needed(fit, 0.705, round_up=False) == pytest.approx(110.25)
    assert labels_needed(fit, 0.705) == 111.0
    assert labels_needed(fit, 0.55) == 0.0  # the curve starts above the target


@pytest.mark.parametrize(("a", "k"), [(-0.5, 0.5), (0.5, -0.5), (0.0, 0.5)])
def test_non_increasing_curve_gives_nan(a: float, k: float) -> None:
    assert math.isnan(labels_needed(_curve(a, k, 0.9), 0.8))


def test_from_a_fitted_curve() -> None:
    n = np.array([4.0, 8.0, 16.0, 32.0, 64.0])
    fit = fit_power_law(n, 0.92 - 0.6 * n**-0.5)
    # Truth: 0.6 / sqrt(n) = 0.07 -> n = (0.6 / 0.07)^2 = 73.47 -> 74 images.
    assert labels_needed(fit, 0.85, round_up=False) == pytest.approx((0.6 / 0.07) ** 2, rel=1e-3)
    assert labels_needed(fit, 0.85) == 74.0
    # Fitted on 4-64 images: 74 lies beyond them; 0.6 / sqrt(n) = 0.12 -> n = 25 lies within.
    assert fit.extrapolates(labels_needed(fit, 0.85)) is True
    assert labels_needed(fit, 0.8) == 25.0 and fit.extrapolates(25.0) is False


@given(st.floats(0.05, 0.89))
def test_rounded_answer_is_the_first_count_reaching_the_target(target: float) -> None:
    fit = _curve(-0.5, -0.5, 0.9)
    needed = labels_needed(fit, target)
    if needed > 1:
        assert float(fit.predict(needed)) >= target - 1e-12
        assert float(fit.predict(needed - 1)) < target


def test_target_must_be_finite() -> None:
    with pytest.raises(ValueError, match=r"target must be a finite number; found nan"):
        labels_needed(_curve(0.01, 0.5, 0.6), float("nan"))
