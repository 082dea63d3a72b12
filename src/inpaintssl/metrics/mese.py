"""T2 relaxation maps from a multi-echo spin-echo (MESE) series: the clinical cartilage T2 map.

The paper measures cartilage T2 with qDESS (sec. 2.7, :mod:`inpaintssl.metrics.qdess`); most
clinical and cohort knee protocols (the Osteoarthritis Initiative's among them) measure it with a
multi-echo spin-echo series instead: the same slices at several echo times ``TE_k``, whose signal
decays as ``S(TE) = S0 exp(-TE / T2)``. :func:`mese_t2` fits that decay voxel by voxel.

The fit is log-linear least squares with weights ``S_k**2``: taking logarithms makes the model
linear, ``ln S_k = ln S0 - TE_k / T2``, and the weights undo what the logarithm does to Gaussian
noise (``var(ln S) ~ sigma**2 / S**2``), so that the late, noisy echoes weigh less (Bydder et al.
2011 compare this weighting with a non-linear fit). It does not undo the noise floor: a
magnitude image's noise is Rician, which lifts the late echoes as they near the noise level, so
the decay looks slower and T2 comes out too long wherever the last echoes are within a few noise
levels of zero (simulated: T2 35 ms, echoes at 10 to 70 ms, ``S0`` 15 times the noise's
sigma: a median of 41 ms, where a non-linear fit of the same echoes gave 37 ms). Compare T2 of
low-signal tissue with care, or fit it with a noise model. By default the first echo is left out:
stimulated echoes from imperfect refocusing pulses make it too bright (Smith et al. 2001; the
OAI's T2 maps leave it out). Voxels where a used echo is not positive (background, a phase
wrap), where the signal does not decay, or whose T2 falls outside the range kept are NaN, so a
masked :func:`numpy.nanmean` (:func:`~inpaintssl.metrics.mean_t2`) skips them.

Example:
    >>> import numpy as np
    >>> te = [10.0, 20.0, 30.0, 40.0]
    >>> echoes = np.stack([1000 * np.exp(-t / np.array([35.0, 60.0])) for t in te])
    >>> np.round(mese_t2(echoes, te), 6)
    array([35., 60.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from inpaintssl.metrics._arrays import ArrayInput, as_numpy
from inpaintssl.metrics.fit_arguments import one_number, t2_range

__all__ = ["MESE_MIN_ECHOES", "mese_t2"]

MESE_MIN_ECHOES = 3
"""Echoes a series needs for :func:`mese_t2` with its default ``skip_first_echo``: the first one,
left out, and two to draw a decay through."""

MESE_MIN_LAST_ECHO_MS = 1.0
"""A multi-echo spin-echo series' echoes reach tens of ms (the OAI's: 10 to 70 ms); a last echo
before 1 ms is one in seconds."""


def mese_t2(
    echoes: ArrayInput,
    echo_times_ms: Sequence[float],
    *,
    skip_first_echo: bool = True,
    t2_range_ms: tuple[float, float] = (0.0, 1000.0),
) -> npt.NDArray[np.floating[Any]]:
    """Voxel-wise T2 in ms from the echoes of a multi-echo spin-echo series, ``S = S0 exp(-TE / T2)``.

    Args:
        echoes: The magnitude images, echoes first: ``(E, ...)``, e.g. ``(E, X, Y, Z)``, in the
            order of ``echo_times_ms``, in any order of time (complex images are fitted by their
            magnitude).
        echo_times_ms: Each echo's time in ms (``EchoTime``), all different.
        skip_first_echo: Leave the first echo in time (the shortest TE, wherever it is listed)
            out of the fit, as clinical cartilage T2 maps do (stimulated echoes make it too bright).
        t2_range_ms: ``(lo, hi)`` in ms with ``0 <= lo < hi`` (``hi`` may be ``inf``); T2 is kept
            where ``lo < T2 <= hi`` (a near-flat decay of fluid or noise gives T2s of seconds or
            more).

    Returns:
        T2 in ms, shaped as one echo; float32 for float32 (or narrower) echoes, else float64;
        NaN where a used echo is not a positive finite number, where the signal does not decay,
        or outside ``t2_range_ms``.

    Raises:
        ValueError: ``echoes`` has fewer than two echoes to fit (three with ``skip_first_echo``),
            ``echo_times_ms`` does not give one finite, distinct number per echo (the message
            names the echo time that is not a number), the last echo time is below 1 ms (times
            in seconds), or ``t2_range_ms`` is not two numbers with ``0 <= lo < hi``.
        TypeError: ``echoes`` holds no numbers (text, objects).
    """
    signal = as_numpy(echoes, name="echoes", complex_ok=True)
    if np.iscomplexobj(signal):
        signal = np.abs(signal)  # a reconstruction before the magnitude: the decay is |S|'s
    try:
        # A 0-d array is Iterable by its type but raises TypeError when iterated.
        listed = None if isinstance(echo_times_ms, (str, bytes)) else list(echo_times_ms)
    except TypeError:
        listed = None
    if listed is None:
        raise ValueError(
            f"echo_times_ms must be a sequence of echo times in ms, one per echo; found {echo_times_ms!r}"
        )
    times = [one_number(t, name=f"echo_times_ms[{i}]", unit="ms") for i, t in enumerate(listed)]
    if signal.ndim < 1 or signal.shape[0] != len(times):
        raise ValueError(
            f"echoes has shape {signal.shape} but echo_times_ms gives {len(times)} time(s); expected the "
            "echoes first, one echo time each"
        )
    if not all(t >= 0 for t in times) or len(set(times)) != len(times):
        raise ValueError(f"echo_times_ms={times}; expected one finite, distinct echo time >= 0 per echo")
    if max(times) < MESE_MIN_LAST_ECHO_MS:
        # Times in seconds (BIDS sidecars, NIfTI converters) fit, and give T2s 1000 times too short
        # that pass t2_range_ms: a cartilage T2 of 0.035 ms, without a word.
        raise ValueError(
            f"echo_times_ms={times} is implausibly small (the last below {MESE_MIN_LAST_ECHO_MS:g}); "
            "expected milliseconds, were they given in seconds?"
        )
    first = 1 if skip_first_echo else 0
    if len(times) - first < 2:
        raise ValueError(
            f"{len(times)} echo(es) with skip_first_echo={skip_first_echo} leave {len(times) - first} to "
            "fit; expected at least two (a decay needs two points)"
        )
    lo, hi = t2_range(t2_range_ms)
    real = np.result_type(signal.dtype, np.float32)
    used, used_times = signal, times
    if skip_first_echo:
        # The first echo in time, not in the list: echoes listed in another order (instance
        # numbers, a file per echo) would otherwise keep the bright one and drop a good one.
        shortest = times.index(min(times))
        used = signal[1:] if shortest == 0 else np.delete(signal, shortest, axis=0)
        used_times = times[:shortest] + times[shortest + 1 :]
    used = used.astype(real, copy=False)
    te = np.asarray(used_times, dtype=real).reshape((-1,) + (1,) * (signal.ndim - 1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fitted = np.all(np.isfinite(used) & (used > 0), axis=0)
        log_signal = np.log(np.where(used > 0, used, 1))
        weights = np.where(fitted, used * used, 0)
        # The weighted least-squares slope of ln S against TE, in closed form per voxel.
        total = weights.sum(axis=0)
        mean_te = (weights * te).sum(axis=0) / total
        mean_log = (weights * log_signal).sum(axis=0) / total
        spread = (weights * (te - mean_te) ** 2).sum(axis=0)
        slope = (weights * (te - mean_te) * (log_signal - mean_log)).sum(axis=0) / spread
        t2 = -1.0 / slope
        valid = fitted & np.isfinite(t2) & (slope < 0) & (t2 > lo) & (t2 <= hi)
    result: npt.NDArray[np.floating[Any]] = np.where(valid, t2, np.nan).astype(real, copy=False)
    return result
