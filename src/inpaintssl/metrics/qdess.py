"""T2 relaxation maps from the two echoes of a quantitative DESS (qDESS) knee scan.

The paper's MRI clinical metric (sec. 2.7) is the mean T2 of each tissue, computed with the
analytic qDESS model of Sveinsson et al. 2017 (paper ref. 32) as implemented in DOSMA
``QDess.generate_t2_map``: the echo ratio ``S2 / S1`` depends on T2 through

``S2 / S1 = k * exp(-2 (TR - TE) / T2 - c1)``,

where ``k`` and ``c1`` depend on the flip angle, T1, the spoiler gradient and diffusion. Unlike
DOSMA, which writes 0 into invalid voxels (and then averages over those zeros), invalid voxels are
NaN here so a masked :func:`numpy.nanmean` ignores them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from inpaintssl.metrics._arrays import ArrayInput, as_numpy, check_same_shape
from inpaintssl.metrics.fit_arguments import one_number, t2_range

__all__ = ["T1_DEFAULTS_MS", "T1_OTHER_MS", "qdess_signal_ratio", "qdess_t2"]

T1_DEFAULTS_MS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "femoral_cartilage": 1200.0,
        "tibial_cartilage": 1000.0,
        "patellar_cartilage": 1000.0,
        "meniscus": 1000.0,
    }
)
"""Assumed T1 per tissue in ms (DESIGN.md sec. 2, as used for SKM-TEA): pass as ``t1_ms``."""

T1_OTHER_MS: Final = 1200.0
"""The T1 in ms assumed for a tissue not in :data:`T1_DEFAULTS_MS` (femoral cartilage's), and
:func:`qdess_t2`'s default."""

_GAMMA_RAD_PER_G_S: Final = 4258.0 * 2.0 * math.pi


_MIN_TR_MS: Final = 1.0
"""No qDESS repetition time is below 1 ms (SKM-TEA: about 18 ms); 0.018 is TR in seconds."""
_MIN_FLIP_DEG: Final = 1.0
"""qDESS flip angles are 10-30 degrees; a value below 1 is one in radians (20 deg = 0.35 rad)."""
_MIN_T1_MS: Final = 50.0
"""Tissue T1 at 3 T is hundreds of ms (cartilage about 1200); a value below 50 is one in seconds."""
_MIN_TE_MS: Final = 0.1
"""qDESS echo times are several ms (SKM-TEA: about 5.7 ms); 0.0057 is TE in seconds."""
_MIN_TG_US: Final = 10.0
"""Spoiler gradients last hundreds to thousands of us (SKM-TEA: about 1800); 1.8 is Tg in ms."""
_MAX_DIFFUSIVITY_M2_S: Final = 1e-6
"""No tissue diffuses faster than free water, about 3e-9 m^2/s at body temperature (cartilage:
1.25e-9); a value above 1e-6 is one in mm^2/s (1.25e-3) or cm^2/s (1.25e-5)."""

_UNITS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "tr_ms": "ms",
        "te_ms": "ms",
        "flip_angle_deg": "degrees",
        "gl_area": "the scanner's units (SpoilerGradientArea)",
        "tg_us": "microseconds",
        "t1_ms": "ms",
        "diffusivity": "m^2/s",
    }
)


class _Scan(NamedTuple):
    """The scan and tissue parameters of the qDESS model, in the units of :func:`qdess_t2`."""

    tr_ms: float
    te_ms: float
    flip_angle_deg: float
    gl_area: float
    tg_us: float
    t1_ms: float
    diffusivity: float

    def constants(self) -> tuple[float, float, float]:
        """Validate the parameters and return ``(k, c1, TR - TE in s)`` of the model."""
        tr_ms, te_ms, flip_angle_deg, gl_area, tg_us, t1_ms, diffusivity = (
            one_number(value, name=name, unit=_UNITS[name]) for name, value in self._asdict().items()
        )
        for name, value in (("tr_ms", tr_ms), ("tg_us", tg_us), ("t1_ms", t1_ms)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0; found {value!r}")
        for name, value in (("te_ms", te_ms), ("gl_area", gl_area), ("diffusivity", diffusivity)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0; found {value!r}")
        # Values in the wrong unit are finite and positive, and gave T2 maps of 0.02 ms or all NaN
        # without a word; these bounds hold for every qDESS protocol by a wide margin. They come
        # before the comparisons of parameters, whose messages would blame the one given right
        # (TR in seconds is below TE in ms: "te_ms must be smaller than tr_ms").
        if diffusivity > _MAX_DIFFUSIVITY_M2_S:
            raise ValueError(
                f"diffusivity={diffusivity!r} is implausibly large (above {_MAX_DIFFUSIVITY_M2_S:g}); "
                "expected m^2/s (cartilage about 1.25e-9, free water at body temperature about 3e-9), "
                "was it given in mm^2/s or cm^2/s?"
            )
        for name, value, low, slip, unit in (
            ("tr_ms", tr_ms, _MIN_TR_MS, "seconds", "milliseconds"),
            ("flip_angle_deg", flip_angle_deg, _MIN_FLIP_DEG, "radians", "degrees"),
            ("t1_ms", t1_ms, _MIN_T1_MS, "seconds", "milliseconds"),
            ("te_ms", te_ms, _MIN_TE_MS, "seconds", "milliseconds"),
            ("tg_us", tg_us, _MIN_TG_US, "milliseconds", "microseconds"),
        ):
            # TE = 0 is the idealised echo of simulations, not a unit slip.
            if 0 < value < low:
                raise ValueError(
                    f"{name}={value!r} is implausibly small (below {low:g}); expected {unit}, "
                    f"was it given in {slip}?"
                )
        if te_ms >= tr_ms:
            raise ValueError(f"te_ms must be smaller than tr_ms; found te_ms={te_ms!r}, tr_ms={tr_ms!r}")
        if not 0 < flip_angle_deg < 180:
            raise ValueError(f"flip_angle_deg must lie in (0, 180) degrees; found {flip_angle_deg!r}")

        tr, te, tg, t1 = tr_ms * 1e-3, te_ms * 1e-3, tg_us * 1e-6, t1_ms * 1e-3
        alpha = math.radians(flip_angle_deg)
        # DOSMA's unit conventions (gradient in G/cm from the vendor's spoiler area), kept verbatim so
        # maps match the reference implementation.
        gl = gl_area / (tg * 1e6) * 100.0
        dkl = _GAMMA_RAD_PER_G_S * gl * tg
        e = math.exp(-tr / t1 - tr * dkl**2 * diffusivity)
        k = math.sin(alpha / 2.0) ** 2 * (1.0 + e) / (1.0 - math.cos(alpha) * e)
        c1 = (tr - tg / 3.0) * dkl**2 * diffusivity
        return k, c1, tr - te


def qdess_t2(
    echo1: ArrayInput,
    echo2: ArrayInput,
    *,
    tr_ms: float,
    te_ms: float,
    flip_angle_deg: float,
    gl_area: float,
    tg_us: float,
    t1_ms: float = T1_OTHER_MS,
    diffusivity: float = 1.25e-9,
    t2_range_ms: tuple[float, float] = (0.0, 100.0),
) -> npt.NDArray[np.floating[Any]]:
    """Voxel-wise T2 map in ms from the two qDESS echoes (paper sec. 2.7, ref. 32).

    ``T2 = -2000 (TR - TE) / (ln(|S2 / S1| / k) + c1)`` with TR, TE in seconds, following DOSMA
    ``QDess.generate_t2_map``. Voxels where the ratio is undefined (``S1 = 0``, ``S2 = 0``,
    non-finite input) or where T2 falls outside ``(lo, hi]`` of ``t2_range_ms`` are NaN (DOSMA's
    bounds, but NaN instead of its 0 so tissue means can skip them).

    Args:
        echo1: First echo ``S1`` (the FID-like echo), any shape, e.g. ``(X, Y, Z)``.
        echo2: Second echo ``S2``, same shape as ``echo1``.
        tr_ms: Repetition time TR in ms (SKM-TEA metadata ``RepetitionTime``).
        te_ms: Echo time TE in ms, smaller than TR (``EchoTime1``).
        flip_angle_deg: Flip angle in degrees, in (0, 180) (``FlipAngle``).
        gl_area: Spoiler gradient area as stored by the scanner (``SpoilerGradientArea``).
        tg_us: Spoiler gradient duration in microseconds (``SpoilerGradientTime``).
        t1_ms: Assumed tissue T1 in ms; see :data:`T1_DEFAULTS_MS` for per-tissue values.
        diffusivity: Assumed tissue diffusivity D in m^2/s (DOSMA's default 1.25e-9 for cartilage;
            not mm^2/s, in which that is 1.25e-3).
        t2_range_ms: ``(lo, hi)`` in ms with ``0 <= lo < hi`` (``hi`` may be ``inf``); T2 is kept
            where ``lo < T2 <= hi``.

    Returns:
        T2 map in ms with the shape of ``echo1``, float32 for float32 (or narrower) inputs and
        float64 otherwise (real for complex echoes too: complex64 gives float32); NaN where invalid.

    Raises:
        ValueError: If the echo shapes differ, a scan parameter is not one finite number (an array:
            one value per scan, not a map per voxel) or is out of its physical range (a value in the
            wrong unit among them), or ``t2_range_ms`` is not two numbers with ``0 <= lo < hi``.
        TypeError: If an echo holds no numbers (text, objects).

    Example:
        >>> import numpy as np
        >>> params = dict(tr_ms=18.0, te_ms=6.0, flip_angle_deg=20.0, gl_area=3132.0, tg_us=1800.0)
        >>> ratio = qdess_signal_ratio(np.array([30.0, 45.0]), **params)
        >>> np.round(qdess_t2(np.ones(2), ratio, **params), 6)
        array([30., 45.])
    """
    s1 = as_numpy(echo1, name="echo1", complex_ok=True)
    s2 = as_numpy(echo2, name="echo2", complex_ok=True)
    check_same_shape(s1, s2, names=("echo1", "echo2"))
    lo, hi = t2_range(t2_range_ms)
    k, c1, tr_minus_te = _Scan(tr_ms, te_ms, flip_angle_deg, gl_area, tg_us, t1_ms, diffusivity).constants()
    dtype = np.result_type(s1.dtype, s2.dtype, np.float32)
    # Complex echoes (reconstructions before the magnitude) enter through |S2 / S1| only, and a
    # T2 is real: the map takes the real type of their precision, not a complex type with 0j.
    real = np.finfo(dtype).dtype
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.abs(s2.astype(dtype, copy=False) / s1.astype(dtype, copy=False)).astype(real, copy=False)
        t2 = (-2000.0 * tr_minus_te) / (np.log(ratio / k) + c1)
        valid = np.isfinite(t2) & (t2 > lo) & (t2 <= hi)
    return np.where(valid, t2, np.nan).astype(real, copy=False)


def qdess_signal_ratio(
    t2_ms: ArrayInput,
    *,
    t1_ms: float = T1_OTHER_MS,
    diffusivity: float = 1.25e-9,
    tr_ms: float,
    te_ms: float,
    flip_angle_deg: float,
    gl_area: float,
    tg_us: float,
) -> npt.NDArray[np.float64]:
    """Echo ratio ``S2 / S1`` the qDESS model predicts for given T2 values (forward model).

    ``S2 / S1 = k * exp(-2 (TR - TE) / T2 - c1)``: the inverse of :func:`qdess_t2`, for simulating
    echoes and checking the T2 estimate. Parameters as in :func:`qdess_t2`.

    Args:
        t2_ms: T2 values in ms, any shape; must be > 0.
        tr_ms: Repetition time in ms.
        te_ms: Echo time in ms.
        flip_angle_deg: Flip angle in degrees.
        gl_area: Spoiler gradient area.
        tg_us: Spoiler gradient duration in microseconds.
        t1_ms: Assumed T1 in ms.
        diffusivity: Assumed diffusivity in m^2/s.

    Returns:
        Float64 array of ratios, shape of ``t2_ms``.

    Raises:
        ValueError: If a T2 value is not positive or a scan parameter is not one finite number or
            is out of range.
        TypeError: If ``t2_ms`` holds no real numbers (text, complex).

    Example:
        >>> r = qdess_signal_ratio([20.0, 40.0], tr_ms=18.0, te_ms=6.0, flip_angle_deg=20.0,
        ...                        gl_area=3132.0, tg_us=1800.0)
        >>> bool(r[0] < r[1])  # longer T2, less decay between the echoes
        True
    """
    t2 = as_numpy(t2_ms, name="t2_ms").astype(np.float64)
    bad = ~(t2 > 0)
    if np.any(bad):
        raise ValueError(f"t2_ms must be > 0 (and not NaN) everywhere; found {t2[bad][:5].tolist()}")
    k, c1, tr_minus_te = _Scan(tr_ms, te_ms, flip_angle_deg, gl_area, tg_us, t1_ms, diffusivity).constants()
    ratio: npt.NDArray[np.float64] = k * np.exp(-2.0 * tr_minus_te / (t2 * 1e-3) - c1)
    return ratio
