"""qDESS T2 maps: recover known T2 from simulated echoes, NaN where the model has no answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inpaintssl.metrics import T1_DEFAULTS_MS, qdess_signal_ratio, qdess_t2

# (tr_ms, te_ms, flip_angle_deg, gl_area, tg_us, t1_ms): an SKM-TEA-like protocol and variations.
SETTINGS = [
    (18.176, 5.656, 20.0, 3132.0, 1800.0, 1200.0),
    (18.176, 5.656, 20.0, 3132.0, 1800.0, 1000.0),
    (25.0, 8.0, 30.0, 3132.0, 1800.0, 1200.0),
    (12.0, 4.0, 10.0, 1500.0, 1000.0, 1000.0),
    (20.0, 6.0, 25.0, 0.0, 1800.0, 1200.0),  # no spoiler: the diffusion term vanishes
]


def _simulated_ratio(t2_ms, tr_ms, te_ms, flip_angle_deg, gl_area, tg_us, t1_ms, diffusivity=1.25e-9):
    """S2/S1 from Sveinsson et al. 2017 / DOSMA, solved for the ratio: S2/S1 = k exp(-2(TR-TE)/T2 - c1)."""
    tr_s, te_s, tg_s, t1_s = tr_ms / 1000, te_ms / 1000, tg_us / 1e6, t1_ms / 1000
    flip = flip_angle_deg * math.pi / 180
    gradient = gl_area / tg_us * 100  # DOSMA: Gl = area / (Tg[s] * 1e6) * 100
    dk = 2 * math.pi * 4258 * gradient * tg_s
    decay = math.exp(-tr_s / t1_s - tr_s * dk * dk * diffusivity)
    k = math.sin(flip / 2) ** 2 * (1 + decay) / (1 - math.cos(flip) * decay)
    c1 = (tr_s - tg_s / 3) * dk * dk * diffusivity
    return k * np.exp(-2 * (tr_s - te_s) / (np.asarray(t2_ms) / 1000) - c1)


def _params(setting):
    tr, te, fa, gl, tg, t1 = setting
    return dict(tr_ms=tr, te_ms=te, flip_angle_deg=fa, gl_area=gl, tg_us=tg, t1_ms=t1)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_recovers_known_t2_within_a_tenth_of_a_ms(setting, dtype) -> None:
    rng = np.random.default_rng(0)
    t2_true = rng.uniform(10.0, 80.0, size=(6, 7, 5))
    echo1 = rng.uniform(50.0, 800.0, size=t2_true.shape)
    echo2 = echo1 * _simulated_ratio(t2_true, *setting)
    t2 = qdess_t2(echo1.astype(dtype), echo2.astype(dtype), **_params(setting))
    assert t2.shape == t2_true.shape
    assert t2.dtype == dtype
    assert np.max(np.abs(t2 - t2_true)) < 0.1


@pytest.mark.parametrize("setting", SETTINGS)
def test_forward_model_matches_independent_formula(setting) -> None:
    t2 = np.linspace(10.0, 80.0, 15)
    np.testing.assert_allclose(
        qdess_signal_ratio(t2, **_params(setting)), _simulated_ratio(t2, *setting), rtol=1e-12
    )


def test_invalid_ratios_are_nan() -> None:
    setting = SETTINGS[0]
    params = _params(setting)
    at_t2_50 = float(_simulated_ratio(50.0, *setting))
    at_t2_150 = float(_simulated_ratio(150.0, *setting))
    echo1 = np.array([0.0, 100.0, 100.0, 100.0, np.nan, 100.0])
    echo2 = np.array(
        [
            10.0,  # S1 = 0: division by zero
            0.0,  # S2 = 0: log(0)
            100.0 * at_t2_150,  # T2 = 150 ms, above DOSMA's 100 ms bound
            100.0,  # S2 = S1 exceeds k exp(-c1): no positive T2 gives it
            10.0,  # NaN input
            100.0 * at_t2_50,  # the one valid voxel
        ]
    )
    t2 = qdess_t2(echo1, echo2, **params)
    assert np.isnan(t2[:5]).all()
    assert abs(t2[5] - 50.0) < 0.1


def test_sign_of_echoes_is_ignored_like_dosma() -> None:
    params = _params(SETTINGS[0])
    ratio = float(_simulated_ratio(40.0, *SETTINGS[0]))
    t2 = qdess_t2(np.array([-200.0]), np.array([200.0 * ratio]), **params)
    assert abs(t2[0] - 40.0) < 0.1


@pytest.mark.parametrize(
    ("complex_dtype", "real_dtype"), [(np.complex64, np.float32), (np.complex128, np.float64)]
)
def test_complex_echoes_give_a_real_map_from_their_magnitudes(complex_dtype, real_dtype) -> None:
    # Reconstructed echoes are complex; T2 depends on |S2 / S1| only and is a real time.
    params = _params(SETTINGS[0])
    t2_true = np.array([25.0, 40.0, 70.0])
    phase = np.exp(1j * np.array([0.3, -2.0, 1.1]))
    echo1 = (300.0 * phase).astype(complex_dtype)
    echo2 = (300.0 * _simulated_ratio(t2_true, *SETTINGS[0]) * phase * 1j).astype(complex_dtype)
    t2 = qdess_t2(echo1, echo2, **params)
    assert t2.dtype == real_dtype
    np.testing.assert_allclose(t2, t2_true, atol=0.01)
    np.testing.assert_allclose(t2, qdess_t2(np.abs(echo1), np.abs(echo2), **params), rtol=1e-6)


def test_custom_range_and_tensor_input() -> None:
    params = _params(SETTINGS[0])
    t2_true = np.array([20.0, 60.0])
    echo2 = torch.from_numpy(_simulated_ratio(t2_true, *SETTINGS[0]))
    t2 = qdess_t2(torch.ones(2, dtype=torch.float64), echo2, t2_range_ms=(0.0, 50.0), **params)
    assert isinstance(t2, np.ndarray)
    assert abs(t2[0] - 20.0) < 0.1
    assert np.isnan(t2[1])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"te_ms": 20.0}, r"te_ms must be smaller than tr_ms"),
        ({"tg_us": 0.0}, r"tg_us must be > 0; found 0\.0"),
        ({"flip_angle_deg": 0.0}, r"flip_angle_deg must lie in \(0, 180\)"),
        ({"t1_ms": float("nan")}, r"t1_ms must be one finite number in ms; found nan"),
        ({"gl_area": -1.0}, r"gl_area must be >= 0"),
        ({"t2_range_ms": (100.0, 0.0)}, r"t2_range_ms must be \(lo, hi\)"),
        # Units slipped: SKM-TEA's TR and TE in seconds, 20 degrees in radians, T1 in seconds.
        (
            {"tr_ms": 0.018176, "te_ms": 0.005784},
            r"tr_ms=0\.018176 is implausibly small .*milliseconds, was it given in seconds",
        ),
        ({"flip_angle_deg": 0.349}, r"flip_angle_deg=0\.349 .*expected degrees, was it given in radians"),
        ({"t1_ms": 1.2}, r"t1_ms=1\.2 .*given in seconds"),
        # TE alone in seconds beside TR in ms passed every other check and gave T2 about 45 % high.
        (
            {"te_ms": 0.005656},
            r"te_ms=0\.005656 is implausibly small .*milliseconds, was it given in seconds",
        ),
        ({"tg_us": 1.8}, r"tg_us=1\.8 is implausibly small .*microseconds, was it given in milliseconds"),
        # TR alone in seconds is below TE in ms: the TE < TR check blamed te_ms, the one given right.
        (
            {"tr_ms": 0.018176},
            r"^tr_ms=0\.018176 is implausibly small .*milliseconds, was it given in seconds",
        ),
    ],
)
def test_bad_scan_parameters_name_the_argument(override, message) -> None:
    params = {**_params(SETTINGS[0]), **override}
    with pytest.raises(ValueError, match=message):
        qdess_t2(np.ones(3), np.ones(3), **params)


@pytest.mark.parametrize("diffusivity", [1.25e-3, 3.0e-3, 1.25e-5])
def test_a_diffusivity_in_mm2_or_cm2_per_s_is_refused(diffusivity) -> None:
    # Cartilage's 1.25e-9 m^2/s is 1.25e-3 mm^2/s and 1.25e-5 cm^2/s: either gave an all-NaN map.
    with pytest.raises(
        ValueError,
        match=rf"^diffusivity={diffusivity!r} is implausibly large .*m\^2/s.*mm\^2/s or cm\^2/s\?$",
    ):
        qdess_t2(np.ones(3), np.ones(3), diffusivity=diffusivity, **_params(SETTINGS[0]))
    with pytest.raises(ValueError, match=r"^diffusivity="):
        qdess_signal_ratio([30.0], diffusivity=diffusivity, **_params(SETTINGS[0]))


@pytest.mark.parametrize("diffusivity", [0.0, 1.25e-9, 3.0e-9, 1e-7])
def test_every_plausible_diffusivity_in_m2_per_s_is_fitted(diffusivity) -> None:
    # No diffusion, cartilage, free water at body temperature, and 30 times that: all kept.
    t2_true = np.array([20.0, 35.0, 50.0])
    echo2 = 100.0 * _simulated_ratio(t2_true, *SETTINGS[0], diffusivity=diffusivity)
    t2 = qdess_t2(np.full(3, 100.0), echo2, diffusivity=diffusivity, **_params(SETTINGS[0]))
    np.testing.assert_allclose(t2, t2_true, rtol=1e-9)


@pytest.mark.parametrize(
    ("name", "value", "found"),
    [
        ("gl_area", b"3132", r"found b'3132' \(bytes\)"),
        ("tg_us", "1800", r"found '1800' \(str\)"),
        ("tr_ms", None, r"found None \(NoneType\)"),
        ("t1_ms", True, r"found True \(bool\)"),
        ("te_ms", 5.656 + 0j, r"found \(5\.656\+0j\) \(complex\)"),
        (
            "flip_angle_deg",
            np.full(1, 20.0),
            r"\(one number; a per-voxel map is not supported\); found an array of shape \(1,\)",
        ),
        (
            "t1_ms",
            np.full((2, 3), 1200.0),
            r"\(one number; a per-voxel map is not supported\); found an array of shape \(2, 3\)",
        ),
        (
            "diffusivity",
            torch.full((4,), 1.25e-9),
            r"per-voxel map is not supported\); found an array of shape \(4,\)",
        ),
        ("gl_area", [3132.0, 3132.0], r"per-voxel map is not supported\); found an array of shape \(2,\)"),
        ("tr_ms", float("inf"), r"found inf$"),
    ],
)
def test_a_scan_parameter_that_is_not_one_number_is_named(name, value, found) -> None:
    # bytes, None and arrays failed in math.isfinite with TypeErrors that named no argument.
    units = {
        "gl_area": "the scanner's units",
        "tg_us": "microseconds",
        "tr_ms": "ms",
        "t1_ms": "ms",
        "te_ms": "ms",
        "flip_angle_deg": "degrees",
        "diffusivity": r"m\^2/s",
    }
    params = {**_params(SETTINGS[0]), name: value}
    with pytest.raises(ValueError, match=rf"^{name} must be one finite number in {units[name]}.*{found}"):
        qdess_t2(np.ones(3), np.ones(3), **params)
    with pytest.raises(ValueError, match=rf"^{name} must be one finite number"):
        qdess_signal_ratio([30.0], **params)


@pytest.mark.parametrize(
    "tr_ms", [np.float32(18.0), np.array(18.0), torch.tensor(18.0, dtype=torch.float64), 18], ids=repr
)
def test_a_scan_parameter_may_be_any_one_real_number(tr_ms) -> None:
    # NumPy and torch scalars (a value read from metadata) are one number, as is a Python int.
    params = {**_params(SETTINGS[0]), "tr_ms": tr_ms}
    setting = (18.0, *SETTINGS[0][1:])
    echo2 = _simulated_ratio(np.array([30.0, 45.0]), *setting)
    np.testing.assert_allclose(qdess_t2(np.ones(2), echo2, **params), [30.0, 45.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("t2_range_ms", "found"),
    [
        ((1.0, 2.0, 3.0), r"found 3 value\(s\) \(1\.0, 2\.0, 3\.0\)"),
        ((50.0,), r"found 1 value\(s\) \(50\.0,\)"),
        (100.0, r"found 100\.0"),
        ("0,100", r"found '0,100'"),
        ((0.0, "100"), r"found \(0\.0, '100'\)"),
        ((-10.0, 100.0), r"found \(-10\.0, 100\.0\)"),
        ((50.0, 50.0), r"found \(50\.0, 50\.0\)"),
        ((float("nan"), 100.0), r"found \(nan, 100\.0\)"),
        ((0.0, float("nan")), r"found \(0\.0, nan\)"),
        ((float("inf"), float("inf")), r"found \(inf, inf\)"),
    ],
    ids=["three", "one", "scalar", "string", "text-hi", "negative-lo", "empty", "nan-lo", "nan-hi", "inf-lo"],
)
def test_a_bad_t2_range_names_the_argument(t2_range_ms, found) -> None:
    # (1, 2, 3) failed in tuple unpacking with "too many values to unpack", naming nothing.
    with pytest.raises(
        ValueError, match=rf"^t2_range_ms must be \(lo, hi\): two numbers .*0 <= lo < hi.*; {found}$"
    ):
        qdess_t2(np.ones(3), np.ones(3), t2_range_ms=t2_range_ms, **_params(SETTINGS[0]))


def test_t2_range_may_be_open_above_and_given_as_an_array() -> None:
    params = _params(SETTINGS[0])
    t2_true = np.array([20.0, 150.0, 400.0])
    echo2 = _simulated_ratio(t2_true, *SETTINGS[0])
    # The default (0, 100] drops 150 and 400 ms; no upper cap keeps every positive T2.
    assert np.isnan(qdess_t2(np.ones(3), echo2, **params)[1:]).all()
    for t2_range_ms in ((0.0, math.inf), np.array([0.0, math.inf]), [10, 1000]):
        np.testing.assert_allclose(
            qdess_t2(np.ones(3), echo2, t2_range_ms=t2_range_ms, **params), t2_true, rtol=1e-6
        )


def test_echo_shapes_must_match() -> None:
    with pytest.raises(ValueError, match=r"echo1\.shape=\(3,\) and echo2\.shape=\(4,\)"):
        qdess_t2(np.ones(3), np.ones(4), **_params(SETTINGS[0]))


def test_forward_model_refuses_non_positive_t2() -> None:
    with pytest.raises(ValueError, match=r"t2_ms must be > 0"):
        qdess_signal_ratio([10.0, 0.0], **_params(SETTINGS[0]))


def test_t1_defaults_per_tissue_are_read_only() -> None:
    assert dict(T1_DEFAULTS_MS) == {
        "femoral_cartilage": 1200.0,
        "tibial_cartilage": 1000.0,
        "patellar_cartilage": 1000.0,
        "meniscus": 1000.0,
    }
    with pytest.raises(TypeError):
        T1_DEFAULTS_MS["meniscus"] = 900.0  # type: ignore[index]


def test_echoes_of_text_are_refused_naming_the_echo() -> None:
    # Text echoes failed in np.finfo ("data type <class 'numpy.str_'> not inexact"), naming nothing;
    # complex echoes are still taken (test_complex_echoes_give_a_real_map_from_their_magnitudes).
    with pytest.raises(TypeError, match=r"^echo2 must be an array or tensor of .*found dtype <U3 \(text\)"):
        qdess_t2(np.ones(1), np.array(["0.3"]), **_params(SETTINGS[0]))
    with pytest.raises(TypeError, match=r"^t2_ms must be an array or tensor of booleans, integers or floats"):
        qdess_signal_ratio(np.array([30 + 0j]), **_params(SETTINGS[0]))
