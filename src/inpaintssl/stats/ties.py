"""Ties within float round-off: values that differ only by round-off rank as ties (sec. 2.5.3, 2.8).

Per-case Dice scores reach the Wilcoxon test and the strategy ranking through sums whose order is
an accident of the code (class averages, means over seeds, float32 on an accelerator, float64 on
the host), so one score can arrive as ``0.1 + 0.2`` in one arm and ``0.3`` in the other. Exact
comparisons would call those values different and break the tie by round-off: ranks, signed-rank
statistics and p-values would then change with the summation order. Here two values tie when they
differ by at most a tolerance ``rtol * scale + atol``, where ``scale`` is the largest magnitude
among the values compared (round-off in a score, and in a difference of two scores, is relative to
the scores' size, not to the difference's). Paired differences get a tolerance each
(:func:`pairwise_round_off_tolerance`), from the magnitudes of their own pair: one extreme score
(a percent error of 1e6 on a tissue of a few pixels) must not make every other pair's genuine
difference a round-off zero.

Example:
    >>> tolerant_rankdata([0.1 + 0.2, 0.3, 0.5], tol=1e-12)  # scipy's rankdata gives [2, 1, 3]
    array([1.5, 1.5, 3. ])
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "ROUND_OFF_ATOL",
    "ROUND_OFF_RTOL",
    "pairwise_round_off_tolerance",
    "round_off_tolerance",
    "tolerant_rankdata",
]

ROUND_OFF_RTOL = 2.0**-20
"""Relative tolerance, about 9.5e-7: eight float32 ulps (float32 eps is ``2**-23``).

A Dice computed in float32 (an accelerator's default) and averaged over classes and seeds carries a
few ulps of round-off; eight covers that with room, and float64 round-off (``2**-52``) by far.
Genuine Dice differences are far larger: the paper reports Dice to three decimals, and one voxel
of a 3D tissue of 1e5 voxels moves Dice by about 5e-6. Pass ``rtol=0, atol=0`` for exact ties.
"""

ROUND_OFF_ATOL = 1e-12
"""Absolute floor of the tolerance, for samples whose largest magnitude is itself near 0.

Scores on the scales used here (Dice in [0, 1], percent errors up to a few thousand) are
computed from intermediates well below 1e3, whose float64 round-off stays below 1e-12; no
meaningful difference of such scores is that small.
"""


def round_off_tolerance(
    *samples: npt.ArrayLike, rtol: float = ROUND_OFF_RTOL, atol: float = ROUND_OFF_ATOL
) -> float:
    """The tie tolerance ``rtol * scale + atol``, ``scale`` the largest finite magnitude in ``samples``.

    Args:
        *samples: The values compared (for paired differences: both samples, not the differences,
            since round-off in ``a - b`` is relative to ``a`` and ``b``).
        rtol: Relative tolerance (default :data:`ROUND_OFF_RTOL`).
        atol: Absolute tolerance (default :data:`ROUND_OFF_ATOL`).

    Returns:
        The tolerance, ``>= atol``.

    Raises:
        ValueError: If ``rtol`` or ``atol`` is negative or not finite.

    Example:
        >>> round_off_tolerance([0.5, -2.0], [1.0], rtol=1e-6, atol=0.0)
        2e-06
    """
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0; found {value!r}")
    scale = 0.0
    for sample in samples:
        values = np.abs(np.asarray(sample, dtype=np.float64))
        values = values[np.isfinite(values)]
        if values.size:
            scale = max(scale, float(values.max()))
    return rtol * scale + atol


def pairwise_round_off_tolerance(
    a: npt.ArrayLike, b: npt.ArrayLike, *, rtol: float = ROUND_OFF_RTOL, atol: float = ROUND_OFF_ATOL
) -> npt.NDArray[np.float64]:
    """The tie tolerance of each paired difference ``a[i] - b[i]``: ``rtol * max(|a[i]|, |b[i]|) + atol``.

    Round-off in a difference is relative to the two values differenced, so each pair's scale is
    its own, not the samples' largest magnitude (:func:`round_off_tolerance`), which one extreme
    value would inflate for every pair.

    Args:
        a: Values of one sample, any shape (flattened).
        b: The paired values, same number of elements.
        rtol: Relative tolerance (default :data:`ROUND_OFF_RTOL`).
        atol: Absolute tolerance (default :data:`ROUND_OFF_ATOL`).

    Returns:
        ``(n,)`` float64 tolerances, each ``>= atol``.

    Raises:
        ValueError: If ``rtol`` or ``atol`` is negative or not finite, or the sizes differ.

    Example:
        >>> pairwise_round_off_tolerance([0.5, 1e6], [-2.0, 1e6], rtol=1e-6, atol=0.0).tolist()
        [2e-06, 1.0]
    """
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0; found {value!r}")
    x = np.abs(np.asarray(a, dtype=np.float64).ravel())
    y = np.abs(np.asarray(b, dtype=np.float64).ravel())
    if x.shape != y.shape:
        raise ValueError(f"a and b must hold the same number of values; found {x.size} and {y.size}")
    out: npt.NDArray[np.float64] = rtol * np.maximum(x, y) + atol
    return out


def tie_groups(values: npt.ArrayLike, *, tol: float | npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Group label of each value: sorted values whose neighbours lie within ``tol`` share a group.

    Groups are chains (single linkage): consecutive sorted values at most ``tol`` apart join, so a
    group is a run of the sorted values with no gap wider than ``tol``. Labels count up from 0 in
    increasing order of the values. With a tolerance per value (an array of the values' size), two
    neighbours join when their gap is within the larger of their two tolerances. Infinities are
    values (equal ones tie); NaN is refused, since it has no place in the order.

    Raises:
        ValueError: If ``values`` holds NaN (the message gives its flat indices), or ``tol`` is an
            array whose size is not that of ``values``.

    Example:
        >>> tie_groups([3.0, 1.0, 1.0 + 1e-9, 2.0], tol=1e-6).tolist()
        [2, 0, 0, 1]
        >>> tie_groups([1.0, 1.5, 3.0], tol=[0.0, 0.6, 0.0]).tolist()  # 1.5's 0.6 reaches 1.0
        [0, 0, 1]
        >>> tie_groups([0.0, -np.inf, -np.inf], tol=1e-6).tolist()  # equal infinities tie
        [1, 0, 0]
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    nan = np.flatnonzero(np.isnan(x))
    if nan.size:
        # Sorted last, NaN chained onto the largest value as a tie (its gap to it is NaN, never
        # "> tol"): a rank, a signed-rank statistic and a ranking made up from a missing score.
        raise ValueError(
            f"values must not hold NaN (a NaN has no rank); found {nan.size} NaN at flat indices "
            f"{nan[:5].tolist()}{' ...' if nan.size > 5 else ''}"
        )
    order = np.argsort(x, kind="stable")
    tolerance = np.asarray(tol, dtype=np.float64)
    if tolerance.ndim:
        if tolerance.size != x.size:
            raise ValueError(f"tol must be one number or one per value ({x.size}); found {tolerance.size}")
        ordered = tolerance.ravel()[order]
        gap_tol: float | npt.NDArray[np.float64] = np.maximum(ordered[1:], ordered[:-1])
    else:
        gap_tol = float(tolerance)
    ordered_x = x[order]
    with np.errstate(invalid="ignore"):
        gaps = np.diff(ordered_x)
    # Equal infinities are equal (two p-values of 0 ranked by log p): inf - inf is NaN, no gap.
    gaps[ordered_x[1:] == ordered_x[:-1]] = 0.0
    starts = np.concatenate([[0], (gaps > gap_tol).astype(np.int64)])
    groups = np.empty(x.size, dtype=np.int64)
    groups[order] = np.cumsum(starts)
    return groups


def tolerant_rankdata(values: npt.ArrayLike, *, tol: float | npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Ranks 1..n with values within ``tol`` of each other (chained, see :func:`tie_groups`) tied.

    Tied values get the average of the ranks they span, as :func:`scipy.stats.rankdata` does for
    exact ties; with ``tol=0`` this equals ``scipy.stats.rankdata(values)`` for values without NaN.
    NaN is refused where SciPy (``nan_policy="propagate"``) makes every rank NaN: the callers here
    (:func:`~inpaintssl.stats.wilcoxon_greater`, the rankings) refuse NaN scores too, and drop
    nothing silently.

    Args:
        values: Values to rank, any shape (flattened).
        tol: Largest gap between sorted neighbours that still counts as a tie, e.g. from
            :func:`round_off_tolerance`; or one per value (:func:`tie_groups`), e.g. from
            :func:`pairwise_round_off_tolerance`.

    Returns:
        ``(n,)`` float64 ranks, multiples of 1/2.

    Raises:
        ValueError: If ``values`` holds NaN (the message gives its flat indices), or ``tol`` is an
            array whose size is not that of ``values``.

    Example:
        >>> tolerant_rankdata([0.2, 0.1, 0.1, 0.4], tol=0.0).tolist()  # exact ties, as scipy
        [3.0, 1.5, 1.5, 4.0]
        >>> tolerant_rankdata([0.2, 0.1, 0.1 + 1e-9, 0.4], tol=1e-6).tolist()
        [3.0, 1.5, 1.5, 4.0]
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    groups = tie_groups(x, tol=tol)
    counts = np.bincount(groups)
    # A group spanning ranks s+1..s+c gets their average s + (c + 1) / 2.
    before = np.concatenate([[0], np.cumsum(counts)[:-1]])
    average = before + (counts + 1) / 2.0
    out: npt.NDArray[np.float64] = average[groups].astype(np.float64)
    return out
