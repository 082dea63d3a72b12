"""One-sided paired Wilcoxon signed-rank test (paper sec. 2.5.3, 2.8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["paired_samples", "wilcoxon_greater"]


def paired_samples(
    a: npt.ArrayLike, b: npt.ArrayLike, *, names: tuple[str, str] = ("a", "b")
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Validate two paired samples and return them as flat float64 arrays.

    Any shape is accepted (e.g. ``(F, N)`` label fractions x test images) as long as both have the
    same one; element ``i`` of ``a`` is paired with element ``i`` of ``b``.

    Raises:
        ValueError: If the shapes differ, the samples are empty, or either holds NaN/inf.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
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


def wilcoxon_greater(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """p-value of the one-sided paired Wilcoxon signed-rank test of ``a > b`` (sec. 2.5.3, 2.8).

    The paper tests whether SSL Dice scores are higher than fully-supervised ones, pair by pair
    (same test image, same label fraction), with SciPy's ``wilcoxon(..., alternative="greater")``;
    this calls it with SciPy's defaults: zero differences are dropped (``zero_method="wilcox"``)
    and the exact null distribution is used for small samples without ties, the normal
    approximation otherwise.

    When every difference is zero there is no evidence that ``a`` exceeds ``b`` and the statistic
    is undefined; this returns ``1.0`` in that case instead of relying on SciPy, whose behaviour
    there changed between versions (error, NaN, or 1.0 with a warning).

    Args:
        a: Scores of the method hypothesised to be better, any shape, e.g. ``(N,)`` per image.
        b: Paired scores of the comparator, same shape.

    Returns:
        The one-sided p-value in ``(0, 1]``.

    Raises:
        ValueError: If the shapes differ, the samples are empty, or hold NaN/inf.

    Example:
        >>> wilcoxon_greater([0.9, 0.8, 0.85, 0.7], [0.8, 0.75, 0.7, 0.68])  # 4 wins: 1 / 2**4
        0.0625
    """
    x, y = paired_samples(a, b)
    if np.all(x == y):
        return 1.0
    result: Any = stats.wilcoxon(x, y, alternative="greater")
    return float(result.pvalue)
