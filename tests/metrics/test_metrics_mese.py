"""Multi-echo spin-echo T2 maps: known decays recovered, the weighted fit as NumPy's, NaN where no T2."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.metrics import mese_t2

OAI_TE_MS = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]  # the OAI's 7-echo MESE protocol


def _decay(s0: Any, t2_ms: Any, times: list[float]) -> np.ndarray:
    return np.stack([np.asarray(s0) * np.exp(-t / np.asarray(t2_ms)) for t in times])


@settings(max_examples=60, deadline=None)
@given(
    t2=st.lists(st.floats(5.0, 400.0), min_size=1, max_size=6),
    s0=st.floats(10.0, 1e4),
    times=st.lists(st.floats(2.0, 120.0), min_size=3, max_size=8, unique_by=lambda t: round(t, 1)),
    skip=st.booleans(),
)
def test_an_exact_decay_gives_back_its_t2(t2: list[float], s0: float, times: list[float], skip: bool) -> None:
    times = sorted(times)
    expected = np.asarray(t2)
    got = mese_t2(_decay(s0, expected, times), times, skip_first_echo=skip)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_the_weighted_fit_is_numpys_polyfit_of_the_log_signal_weighted_by_the_signal() -> None:
    rng = np.random.default_rng(0)
    t2 = rng.uniform(20.0, 80.0, size=50)
    noisy = _decay(rng.uniform(200.0, 2000.0, size=50), t2, OAI_TE_MS) + rng.normal(0.0, 8.0, (7, 50))
    noisy = np.abs(noisy) + 1.0
    got = mese_t2(noisy, OAI_TE_MS)
    for v in range(50):
        # polyfit weights multiply residuals: w = S gives least squares weighted by S**2.
        slope, _ = np.polyfit(OAI_TE_MS[1:], np.log(noisy[1:, v]), 1, w=noisy[1:, v])
        assert got[v] == pytest.approx(-1.0 / slope, rel=1e-9)
    assert np.nanmean(np.abs(got - t2) / t2) < 0.1  # and near the truth under noise


def test_a_bright_first_echo_is_left_out_by_default() -> None:
    # Stimulated echoes brighten the first echo; left in, they shorten T2.
    echoes = _decay(1000.0, np.array([40.0]), OAI_TE_MS)
    echoes[0] *= 1.3
    assert mese_t2(echoes, OAI_TE_MS)[0] == pytest.approx(40.0, rel=1e-9)
    assert mese_t2(echoes, OAI_TE_MS, skip_first_echo=False)[0] < 35.0


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(range(len(OAI_TE_MS))), skip=st.booleans())
def test_the_map_is_the_same_whatever_order_the_echoes_are_listed_in(order: list[int], skip: bool) -> None:
    # The shortest-TE echo is the bright one skip_first_echo leaves out, wherever it is listed.
    rng = np.random.default_rng(1)
    echoes = _decay(rng.uniform(200.0, 2000.0, size=20), rng.uniform(20.0, 80.0, size=20), OAI_TE_MS)
    echoes[0] *= 1.3
    in_time_order = mese_t2(echoes, OAI_TE_MS, skip_first_echo=skip)
    listed = mese_t2(echoes[order], [OAI_TE_MS[i] for i in order], skip_first_echo=skip)
    np.testing.assert_allclose(listed, in_time_order, rtol=1e-9)


def test_the_shortest_echo_is_left_out_where_it_is_not_listed_first() -> None:
    # Hand-worked: the TE = 10 ms echo 1.3x too bright, listed second; dropped, the exact decay of
    # the other four gives T2 = 40 ms.
    times = [30.0, 10.0, 20.0, 40.0, 50.0]
    echoes = _decay(1000.0, np.array([40.0]), times)
    echoes[1] *= 1.3
    assert mese_t2(echoes, times)[0] == pytest.approx(40.0, rel=1e-9)


def test_voxels_without_a_t2_are_nan_and_the_others_kept() -> None:
    times = [10.0, 20.0, 30.0, 40.0]
    voxels = {
        "decays": [900.0, 700.0, 550.0, 430.0],
        "zero echo": [900.0, 0.0, 550.0, 430.0],
        "negative echo": [900.0, 700.0, -5.0, 430.0],
        "nan echo": [900.0, 700.0, np.nan, 430.0],
        "rises": [400.0, 500.0, 600.0, 700.0],
        "flat": [500.0, 500.0, 500.0, 500.0],
        "T2 of seconds": [900.0, 899.0, 898.0, 897.0],
        "first echo zero only": [0.0, 700.0, 550.0, 430.0],  # left out of the fit
    }
    got = dict(zip(voxels, mese_t2(np.asarray(list(voxels.values())).T, times)))
    expected = -1.0 / np.polyfit(times[1:], np.log([700.0, 550.0, 430.0]), 1, w=[700.0, 550.0, 430.0])[0]
    assert got["decays"] == pytest.approx(expected, rel=1e-9)
    assert got["first echo zero only"] == pytest.approx(expected, rel=1e-9)
    for name in ("zero echo", "negative echo", "nan echo", "rises", "flat", "T2 of seconds"):
        assert np.isnan(got[name]), name
    # The range is (lo, hi]: raising hi keeps the slow decay.
    assert mese_t2(np.asarray([voxels["T2 of seconds"]]).T, times, t2_range_ms=(0.0, 1e6))[0] > 1000.0


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.float32, np.float32), (np.uint16, np.float32), (np.int16, np.float32), (np.float64, np.float64)],
)
def test_the_map_keeps_the_echoes_precision(dtype: Any, expected: Any) -> None:
    echoes = np.round(_decay(3000.0, np.full((2, 3), 45.0), OAI_TE_MS)).astype(dtype)
    got = mese_t2(echoes, OAI_TE_MS)
    assert got.dtype == expected and got.shape == (2, 3)
    np.testing.assert_allclose(got, 45.0, rtol=0.02)


def test_tensors_and_complex_echoes_are_fitted_by_their_magnitude() -> None:
    echoes = _decay(800.0, np.array([30.0, 50.0]), OAI_TE_MS)
    phase = np.exp(1j * np.linspace(0.0, 3.0, 7))[:, None]
    np.testing.assert_allclose(mese_t2(echoes * phase, OAI_TE_MS), [30.0, 50.0], rtol=1e-6)
    np.testing.assert_allclose(mese_t2(torch.from_numpy(echoes), OAI_TE_MS), [30.0, 50.0], rtol=1e-9)


@pytest.mark.parametrize(
    ("times", "options", "message"),
    [
        ([10.0, 20.0], {}, "echoes has shape (3, 2) but echo_times_ms gives 2 time(s)"),
        ([10.0, 20.0, 20.0], {}, "echo_times_ms=[10.0, 20.0, 20.0]; expected one finite, distinct echo time"),
        ([10.0, -20.0, 30.0], {}, "expected one finite, distinct echo time >= 0 per echo"),
        ([10.0, float("nan"), 30.0], {}, "echo_times_ms[1] must be one finite number in ms; found nan"),
        ([10.0, 20.0, 30.0], {"t2_range_ms": (50.0, 10.0)}, "t2_range_ms must be (lo, hi)"),
    ],
)
def test_bad_echo_times_and_ranges_are_refused(times: list[float], options: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        mese_t2(np.ones((3, 2)), times, **options)


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ([10.0, 20.0, None], "echo_times_ms[2] must be one finite number in ms; found None (NoneType)"),
        ([10.0, "20", 30.0], "echo_times_ms[1] must be one finite number in ms; found '20' (str)"),
        ([b"10", 20.0, 30.0], "echo_times_ms[0] must be one finite number in ms; found b'10' (bytes)"),
        (
            [10.0, np.array([20.0, 21.0]), 30.0],
            "echo_times_ms[1] must be one finite number in ms (one number; a per-voxel map is not "
            "supported); found an array of shape (2,)",
        ),
        (30.0, "echo_times_ms must be a sequence of echo times in ms, one per echo; found 30.0"),
        (
            np.array(30.0),
            "echo_times_ms must be a sequence of echo times in ms, one per echo; found array(30.)",
        ),
        ("10,20,30", "echo_times_ms must be a sequence of echo times in ms, one per echo; found '10,20,30'"),
    ],
    ids=["none", "str", "bytes", "array", "scalar", "0-d-array", "string"],
)
def test_an_echo_time_that_is_not_a_number_is_named(times: Any, message: str) -> None:
    # float() on each time raised TypeErrors that named neither the argument nor the echo.
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        mese_t2(np.ones((3, 2)), times)


@pytest.mark.parametrize(
    ("t2_range_ms", "found"),
    [
        ((None, 1000.0), "(None, 1000.0)"),
        ((0.0, "1000"), "(0.0, '1000')"),
        (1000.0, "1000.0"),
        ((0.0, 100.0, 1000.0), "3 value(s) (0.0, 100.0, 1000.0)"),
        ((float("nan"), 1000.0), "(nan, 1000.0)"),
        ((-1.0, 1000.0), "(-1.0, 1000.0)"),
        ((0.0, float("nan")), "(0.0, nan)"),
    ],
)
def test_a_bad_t2_range_names_the_argument_as_qdess_does(t2_range_ms: Any, found: str) -> None:
    # A None, a string or a lone number failed in unpacking or comparing with bare TypeErrors.
    with pytest.raises(
        ValueError, match=r"^t2_range_ms must be \(lo, hi\): two numbers .*0 <= lo < hi.*; found "
    ):
        mese_t2(_decay(100.0, [30.0], [10.0, 20.0, 30.0]), [10.0, 20.0, 30.0], t2_range_ms=t2_range_ms)
    with pytest.raises(ValueError, match=re.escape(f"; found {found}") + "$"):
        mese_t2(_decay(100.0, [30.0], [10.0, 20.0, 30.0]), [10.0, 20.0, 30.0], t2_range_ms=t2_range_ms)


def test_echo_times_and_range_may_be_numpy_or_torch_numbers() -> None:
    times = [10.0, 20.0, 30.0, 40.0]
    echoes = _decay(100.0, [35.0, 2000.0], times)
    expected = [35.0, 2000.0]
    for as_given in (np.array(times), torch.tensor(times), [np.float32(t) for t in times], [10, 20, 30, 40]):
        np.testing.assert_allclose(mese_t2(echoes, as_given, t2_range_ms=(0, np.inf)), expected, rtol=1e-6)
    # The default range keeps T2 up to 1000 ms: 2 s is NaN, as before.
    assert np.isnan(mese_t2(echoes, times)[1])


def test_echo_times_in_seconds_are_refused_as_qdess_refuses_them() -> None:
    # The same decays at 10..40 ms written in seconds fitted T2s of 0.035 and 0.06 "ms", inside
    # the default range (0, 1000], without a word.
    times_ms = [10.0, 20.0, 30.0, 40.0]
    echoes = _decay(1000.0, [35.0, 60.0], times_ms)
    np.testing.assert_allclose(mese_t2(echoes, times_ms), [35.0, 60.0], rtol=1e-9)
    with pytest.raises(
        ValueError, match=r"implausibly small.*expected milliseconds, were they given in seconds"
    ):
        mese_t2(echoes, [t / 1000 for t in times_ms])


def test_too_few_echoes_to_fit_are_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("2 echo(es) with skip_first_echo=True leave 1 to fit")):
        mese_t2(np.ones((2, 4)), [10.0, 20.0])
    assert mese_t2(_decay(100.0, np.array([25.0]), [10.0, 20.0]), [10.0, 20.0], skip_first_echo=False)[0] == (
        pytest.approx(25.0)
    )


def test_echoes_of_text_are_refused_naming_echoes() -> None:
    # Text echoes failed in NumPy's isfinite ("ufunc 'isfinite' not supported"), naming nothing.
    with pytest.raises(TypeError, match=r"^echoes must be an array or tensor of .*found dtype <U1 \(text\)"):
        mese_t2(np.array([["1"], ["2"], ["3"]]), [10.0, 20.0, 30.0])
