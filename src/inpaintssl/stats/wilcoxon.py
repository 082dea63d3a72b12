"""One-sided paired Wilcoxon signed-rank test (paper sec. 2.5.3, 2.8)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from inpaintssl.stats.ties import (
    ROUND_OFF_ATOL,
    ROUND_OFF_RTOL,
    pairwise_round_off_tolerance,
    tolerant_rankdata,
)

__all__ = ["paired_samples", "wilcoxon_greater"]


def paired_samples(
    a: npt.ArrayLike, b: npt.ArrayLike, *, names: tuple[str, str] = ("a", "b")
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Validate two paired samples and return them as flat float64 arrays.

    Any shape is accepted (e.g. ``(F, N)`` label fractions x test images) as long as both have the
    same one; element ``i`` of ``a`` is paired with element ``i`` of ``b``.

    Raises:
        ValueError: If the shapes differ, the samples are empty, or either holds NaN/inf or
            something that is no number (text).
        TypeError: If either is ``None`` (NumPy reads it as NaN: "must be finite").
    """
    for name, sample in zip(names, (a, b)):
        if sample is None:
            raise TypeError(f"{name} is None; expected scores, a sequence or array of numbers")
    try:
        x = np.asarray(a, dtype=np.float64)
        y = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{names[0]} and {names[1]} must be sequences or arrays of numbers: {exc}") from None
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must be paired samples of the same shape; found "
            f"{names[0]}.shape={x.shape} and {names[1]}.shape={y.shape}"
        )
    if x.size == 0:
        raise ValueError(f"{names[0]} and {names[1]} must hold at least one pair; found none")
    for name, arr in zip(names, (x, y)):
        if not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(arr.ravel()))[:5].tolist()
            raise ValueError(f"{name} must be finite; found NaN or inf at flat indices {bad}")
    return x.ravel(), y.ravel()


_EXACT_UP_TO = 50
"""Non-zero differences up to which the p-value is exact (SciPy's own limit for untied samples)."""


def wilcoxon_greater(
    a: npt.ArrayLike, b: npt.ArrayLike, *, rtol: float = ROUND_OFF_RTOL, atol: float = ROUND_OFF_ATOL
) -> float:
    """p-value of the one-sided paired Wilcoxon signed-rank test of ``a > b`` (sec. 2.5.3, 2.8).

    The paper tests whether SSL Dice scores are higher than fully-supervised ones, pair by pair
    (same test image, same label fraction), with SciPy's ``wilcoxon(..., alternative="greater")``.
    This computes the same test itself, so that a p-value does not depend on the SciPy version
    installed (SciPy's automatic choice of method for tied samples changed in 1.13):

    - zero differences are dropped (Wilcoxon's method, SciPy's ``zero_method="wilcox"``), and tied
      absolute differences get their average rank. "Zero" and "tied" are up to float round-off
      (:mod:`inpaintssl.stats.ties`): pair ``i``'s difference is zero within
      ``tol[i] = rtol * max(|a[i]|, |b[i]|) + atol`` of 0, and absolute differences whose sorted
      neighbours lie within the larger of their two tolerances tie. So Dice summed in another
      order (``0.1 + 0.2`` vs ``0.3``), or in float32 on one arm, gives the same p-value, and one
      pair of extreme values (a percent error of 1e6) widens no other pair's tolerance;
    - up to 50 non-zero differences, the p-value is exact: the share of the ``2**n`` sign patterns
      whose positive-rank sum reaches the observed one, counted with the tied ranks as they are
      (the permutation distribution);
    - beyond 50, the normal approximation with the tie correction of the variance and no
      continuity correction.

    Without ties or zeros (exact or within round-off) this equals SciPy's default (exact up to 50
    pairs, normal beyond). With ties or zeros, SciPy 1.13+'s default chooses its method by the
    number of pairs, zeros included: a permutation test (exact) up to 13 pairs, the normal
    approximation beyond. This
    therefore equals it up to 13 pairs (zeros included) and where more than 50 differences are
    non-zero; in between (more than 13 pairs, at most 50 of them non-zero) SciPy uses the normal
    approximation where this stays exact.

    When every difference is zero there is no evidence that ``a`` exceeds ``b`` and the statistic
    is undefined; this returns ``1.0``.

    Args:
        a: Scores of the method hypothesised to be better, any shape, e.g. ``(N,)`` per image.
        b: Paired scores of the comparator, same shape.
        rtol: Relative round-off tolerance (default :data:`~inpaintssl.stats.ties.ROUND_OFF_RTOL`,
            eight float32 ulps); ``rtol=0, atol=0`` compares exactly, as SciPy does.
        atol: Absolute round-off tolerance (default :data:`~inpaintssl.stats.ties.ROUND_OFF_ATOL`).

    Returns:
        The one-sided p-value in ``[0, 1]``: 0 only where the normal approximation underflows
        (some 2,000 or more non-zero pairs, all one way), as SciPy's does.

    Raises:
        ValueError: If the shapes differ, the samples are empty, or hold NaN/inf, or a tolerance
            is negative.

    Example:
        >>> wilcoxon_greater([0.9, 0.8, 0.85, 0.7], [0.8, 0.75, 0.7, 0.68])  # 4 wins: 1 / 2**4
        0.0625
        >>> wilcoxon_greater([0.1 + 0.2, 0.9, 0.8], [0.3, 0.5, 0.5])  # 0.1 + 0.2 - 0.3 is round-off: 2 pairs
        0.25
    """
    x, y = paired_samples(a, b)
    tol = pairwise_round_off_tolerance(x, y, rtol=rtol, atol=atol)
    differences = x - y
    kept = np.abs(differences) > tol
    differences, tol = differences[kept], tol[kept]
    n = differences.size
    if n == 0:
        return 1.0
    # Average ranks for ties (multiples of 1/2), ties taken up to round-off like the zeros.
    ranks = tolerant_rankdata(np.abs(differences), tol=tol)
    positive = float(ranks[differences > 0].sum())
    if n <= _EXACT_UP_TO:
        return _exact_p_at_least(ranks, positive)
    _, tie_counts = np.unique(ranks, return_counts=True)
    mean = n * (n + 1) / 4
    variance = n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(tie_counts**3 - tie_counts)) / 48
    return float(stats.norm.sf((positive - mean) / np.sqrt(variance)))


def _exact_p_at_least(ranks: npt.NDArray[np.float64], observed: float) -> float:
    """P(sum of the ranks given a + sign >= observed), every sign pattern equally likely."""
    doubled = np.rint(2 * ranks).astype(np.int64)  # integers, so the sums index an array
    # counts[s]: sign patterns whose positive ranks sum to s / 2; at most 2**50 < 2**53, exact.
    counts = np.zeros(int(doubled.sum()) + 1, dtype=np.float64)
    counts[0] = 1.0
    for rank in doubled:
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    at_least = round(2 * observed)
    return float(counts[at_least:].sum() / 2.0**ranks.size)
