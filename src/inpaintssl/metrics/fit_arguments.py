"""Checks of the scalar arguments of the T2 fits, shared by :mod:`~inpaintssl.metrics.qdess` and
:mod:`~inpaintssl.metrics.mese` so that both name the argument and say what they expected.

Example:
    >>> one_number(18, name="tr_ms", unit="ms")
    18.0
    >>> t2_range([0, float("inf")])
    (0.0, inf)
"""

from __future__ import annotations

import decimal
import math
import numbers
from collections.abc import Iterable
from typing import cast

import numpy as np
import numpy.typing as npt

__all__ = ["one_number", "t2_range"]


def _real(value: object) -> float | None:
    """``value`` as a float if it is one real number (not a bool), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    # pydicom's DSdecimal (config.use_DS_decimal) is a Decimal, which numbers.Real does not include.
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        return float(value)
    return None


def one_number(value: object, *, name: str, unit: str) -> float:
    """``value`` as a float, after checking it is one finite real number.

    A 0-d array or tensor counts as one number; an array of any other shape does not: the fits
    take one value per scan, not a map per voxel.

    Args:
        value: The argument as given.
        name: Its name in the message, e.g. ``"tr_ms"`` or ``"echo_times_ms[2]"``.
        unit: Its unit in the message, e.g. ``"ms"``.

    Returns:
        ``float(value)``.

    Raises:
        ValueError: ``value`` is not one finite real number (a string, bytes, None, a bool, a
            complex number, an array of more than 0 dimensions, NaN or inf); the message names
            ``name``, the unit and what was found.
    """
    expected = f"{name} must be one finite number in {unit}"
    number = _real(value)
    if number is None and not isinstance(value, (str, bytes)):
        try:
            shape: tuple[int, ...] | None = tuple(np.shape(cast("npt.ArrayLike", value)))
        except (TypeError, ValueError):  # a ragged sequence
            shape = None
        if shape != ():
            shown = f"an array of shape {shape}" if shape else "a ragged sequence"
            raise ValueError(f"{expected} (one number; a per-voxel map is not supported); found {shown}")
        item = getattr(value, "item", None)
        if callable(item):  # a 0-d array or tensor
            number = _real(item())
    if number is None:
        raise ValueError(f"{expected}; found {value!r} ({type(value).__name__})")
    if not math.isfinite(number):
        raise ValueError(f"{expected}; found {number!r}")
    return number


def t2_range(t2_range_ms: object) -> tuple[float, float]:
    """``t2_range_ms`` as ``(lo, hi)`` floats, after checking it is a usable range of T2 values.

    Args:
        t2_range_ms: The argument as given.

    Returns:
        ``(lo, hi)`` with ``0 <= lo < hi``; ``hi`` may be ``inf``.

    Raises:
        ValueError: Not two real numbers, a NaN or negative/infinite ``lo``, or ``hi <= lo``;
            the message names ``t2_range_ms`` and what was found.
    """
    expected = "(lo, hi): two numbers in ms with 0 <= lo < hi (hi may be inf), e.g. (0.0, 100.0)"
    if isinstance(t2_range_ms, (str, bytes)) or not isinstance(t2_range_ms, Iterable):
        raise ValueError(f"t2_range_ms must be {expected}; found {t2_range_ms!r}")
    values = tuple(t2_range_ms)
    if len(values) != 2:
        raise ValueError(f"t2_range_ms must be {expected}; found {len(values)} value(s) {values!r}")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in values):
        raise ValueError(f"t2_range_ms must be {expected}; found {values!r}")
    lo, hi = float(values[0]), float(values[1])
    # hi = inf is a meaningful "no upper cap"; lo must be finite and >= 0 because every T2 the
    # model yields below 0 comes from a ratio S2 / S1 no real tissue gives, never a short T2.
    if not (math.isfinite(lo) and lo >= 0 and not math.isnan(hi) and lo < hi):
        raise ValueError(f"t2_range_ms must be {expected}; found {values!r}")
    return lo, hi
