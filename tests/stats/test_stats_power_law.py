"""Power-law fits recover noiseless curves; RSE and the paper's SSR/(n-2) are what they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.stats import PowerLawFit, fit_power_law

CURVES = [
    # (a, k, c, x): the paper's Figure 5 axes (0% = supervised, then % pretraining data) ...
    (0.02, 0.4, 0.6, [0.0, 100.0, 150.0, 200.0]),
    (0.004, 0.3, 0.75, [0.0, 100.0, 650.0, 1200.0]),
    # ... Dice against labelled images, saturating (k < 0) ...
    (-0.5, -0.7, 0.9, [2.0, 5.0, 10.0, 20.0, 40.0, 80.0]),
    # ... and other shapes: convex growth, decreasing.
    (3.0, 1.5, -2.0, [1.0, 2.0, 3.0, 5.0, 8.0]),
    (-1.2, 0.5, 10.0, [0.5, 1.0, 4.0, 9.0, 16.0, 25.0]),
]


@pytest.mark.parametrize(("a", "k", "c", "x"), CURVES)
def test_recovers_noiseless_curves(a, k, c, x) -> None:
    xs = np.array(x)
    fit = fit_power_law(xs, a * xs**k + c)
    np.testing.assert_allclose([fit.a, fit.k, fit.c], [a, k, c], rtol=1e-3)
    assert fit.n == xs.size
    assert fit.ssr < 1e-12
    assert fit.rse < 1e-6


def test_reported_errors_follow_their_definitions() -> None:
    rng = np.random.default_rng(0)
    x = np.array([0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0])
    truth = 0.02 * x**0.4 + 0.6
    y = truth + rng.normal(0.0, 0.005, x.size)
    fit = fit_power_law(x, y)
    residual = y - (fit.a * x**fit.k + fit.c)
    ssr = float(residual @ residual)
    assert fit.ssr == pytest.approx(ssr)
    assert fit.rse == pytest.approx(math.sqrt(ssr / (x.size - 3)))
    assert fit.ssr_over_n_minus_2 == pytest.approx(ssr / (x.size - 2))
    # Least squares cannot fit worse than the curve that generated the data.
    assert ssr <= float((y - truth) @ (y - truth))


def test_fit_is_a_local_minimum() -> None:
    rng = np.random.default_rng(1)
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    y = -0.4 * x**-0.6 + 0.88 + rng.normal(0.0, 0.003, x.size)
    fit = fit_power_law(x, y)

    def ssr(a: float, k: float, c: float) -> float:
        r = y - (a * x**k + c)
        return float(r @ r)

    best = ssr(fit.a, fit.k, fit.c)
    for da, dk, dc in [(1e-3, 0, 0), (-1e-3, 0, 0), (0, 1e-3, 0), (0, -1e-3, 0), (0, 0, 1e-3), (0, 0, -1e-3)]:
        assert ssr(fit.a + da, fit.k + dk, fit.c + dc) >= best - 1e-15


def test_fit_records_the_range_of_x_it_saw() -> None:
    x = np.array([20.0, 2.0, 80.0, 5.0, 40.0, 10.0])  # unsorted: the ends are not the first and last
    fit = fit_power_law(x, -0.5 * x**-0.7 + 0.9)
    assert (fit.x_min, fit.x_max) == (2.0, 80.0)
    assert [fit.extrapolates(v) for v in (2.0, 33.3, 80.0)] == [False, False, False]
    assert [fit.extrapolates(v) for v in (1.99, 80.01, 579.0, 0.0, math.inf)] == [True] * 5
    assert fit.extrapolates(math.nan) is None


def test_a_hand_built_fit_has_no_known_range() -> None:
    fit = PowerLawFit(a=1.0, k=0.5, c=2.0, rse=0.0, ssr=0.0, ssr_over_n_minus_2=0.0, n=4)
    assert math.isnan(fit.x_min) and math.isnan(fit.x_max)
    assert fit.extrapolates(10.0) is None


def test_three_points_fit_exactly_without_an_rse() -> None:
    x = np.array([1.0, 2.0, 4.0])
    fit = fit_power_law(x, 2.0 * x**0.5 + 1.0)
    np.testing.assert_allclose([fit.a, fit.k, fit.c], [2.0, 0.5, 1.0], rtol=1e-3)
    assert math.isnan(fit.rse)


@given(
    st.floats(0.1, 5.0),
    st.floats(0.2, 2.0) | st.floats(-2.0, -0.2),
    st.floats(-5.0, 5.0),
    st.lists(st.floats(0.0, 1e3), min_size=1, max_size=5),
)
def test_predict_and_inverse_round_trip(a, k, c, xs) -> None:
    fit = PowerLawFit(a=a, k=k, c=c, rse=0.0, ssr=0.0, ssr_over_n_minus_2=0.0, n=4)
    x = np.array(xs) + 0.5
    np.testing.assert_allclose(fit.inverse(fit.predict(x)), x, rtol=1e-6)


def test_inverse_is_nan_where_the_curve_never_goes() -> None:
    rising = PowerLawFit(a=1.0, k=0.5, c=2.0, rse=0.0, ssr=0.0, ssr_over_n_minus_2=0.0, n=4)
    assert float(rising.inverse(2.0)) == 0.0
    assert np.isnan(rising.inverse(1.0))  # below the value at x = 0
    plateau = PowerLawFit(a=-1.0, k=-0.5, c=2.0, rse=0.0, ssr=0.0, ssr_over_n_minus_2=0.0, n=4)
    assert np.isnan(plateau.inverse([2.0, 2.5])).all()  # the asymptote and beyond
    assert float(plateau.inverse(1.0)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "message"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], {}, r"x\.shape=\(3,\), y\.shape=\(2,\)"),
        ([1.0, 2.0, np.nan], [1.0, 2.0, 3.0], {}, r"must be finite"),
        ([-1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {}, r"x must be >= 0.*-1\.0"),
        (
            [1.0, 1.0, 2.0, 2.0],
            [1.0, 2.0, 3.0, 4.0],
            {},
            r"at least 3 distinct values of x; found \[1\.0, 2\.0\]",
        ),
        ([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], {"k_bounds": (-2.0, -0.5)}, r"lo > 0 when x contains 0"),
        (
            [1.0, 2.0, 3.0],
            [1.0, 2.0, 3.0],
            {"k_bounds": (-math.inf, 5.0)},
            r"two finite numbers; found \(-inf, 5\.0\)",
        ),
    ],
)
def test_rejects_bad_input(x, y, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, y, **kwargs)
