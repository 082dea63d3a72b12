"""Agreement between a clinical metric from predicted masks and from reference masks.

The paper reports percent errors (sec. 2.7); agreement statistics complement them for the same
paired measurements: Bland-Altman bias and limits of agreement (Bland & Altman, Lancet 1986) and
the intraclass correlation coefficient (Shrout & Fleiss, Psychol. Bull. 1979; McGraw & Wong,
Psychol. Methods 1996).

Bland-Altman's bias and limits are differences in the metric's own unit, so, unlike percent
error, they stay meaningful for measures on an interval scale with an arbitrary zero, such as mean
HU (see :mod:`inpaintssl.metrics.clinical`), including tissue whose reference mean is near 0 HU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inpaintssl.metrics._arrays import ArrayInput, as_numpy, check_same_shape
from inpaintssl.options import check_option

__all__ = ["BlandAltman", "bland_altman", "icc"]

# Deviations from a mean smaller than this fraction of the ratings' largest magnitude are within
# float64 round-off (a few ulps, even summed over millions of ratings), not variation.
_RESOLUTION = 1e-12


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman summary of paired differences ``measured - reference``.

    Attributes:
        bias: Mean difference.
        sd: Sample standard deviation of the differences (``ddof=1``).
        lower: Lower limit of agreement, ``bias - z * sd``.
        upper: Upper limit of agreement, ``bias + z * sd``.
        n: Number of pairs.
    """

    bias: float
    sd: float
    lower: float
    upper: float
    n: int


def bland_altman(measured: ArrayInput, reference: ArrayInput, *, z: float = 1.96) -> BlandAltman:
    """Bias and limits of agreement between paired measurements (Bland & Altman 1986).

    ``d = measured - reference``; bias ``= mean(d)``; limits ``= bias -/+ z * sd(d)`` with the
    sample standard deviation, so ``z = 1.96`` gives the usual 95% limits of agreement.

    Args:
        measured: Metric from predicted masks ``(n,)``, e.g. tissue volume per test volume.
        reference: Metric from ground-truth masks ``(n,)``, paired with ``measured``.
        z: Normal quantile of the limits (1.96 for 95%).

    Returns:
        A :class:`BlandAltman` summary.

    Raises:
        ValueError: If the inputs are not 1-D of equal length >= 2, or hold NaN/inf (drop unpaired
            or undefined measurements first).

    Example:
        >>> ba = bland_altman([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
        >>> ba.bias, ba.sd, round(ba.upper, 2)
        (2.0, 1.0, 3.96)
    """
    m = as_numpy(measured, name="measured").astype(np.float64)
    r = as_numpy(reference, name="reference").astype(np.float64)
    check_same_shape(m, r, names=("measured", "reference"))
    if m.ndim != 1 or m.size < 2:
        raise ValueError(f"measured and reference must be 1-D with >= 2 pairs; found shape {m.shape}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(r))):
        raise ValueError("measured and reference must be finite; found NaN or inf (drop those pairs first)")
    if not (math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a finite number > 0; found {z!r}")
    d = m - r
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    return BlandAltman(bias=bias, sd=sd, lower=bias - z * sd, upper=bias + z * sd, n=int(d.size))


def icc(ratings: ArrayInput, *, kind: Literal["agreement", "consistency"] = "agreement") -> float:
    """Single-measure intraclass correlation coefficient from a two-way ANOVA.

    With ``n`` subjects (rows) rated by ``k`` methods (columns), grand mean ``m``, row means
    ``r_i`` and column means ``c_j``:

    - ``MSR = k * sum_i (r_i - m)^2 / (n - 1)`` (between subjects),
    - ``MSC = n * sum_j (c_j - m)^2 / (k - 1)`` (between methods),
    - ``MSE = (SST - SSR - SSC) / ((n - 1)(k - 1))`` (residual), computed as the sum of squared
      residuals ``x_ij - r_i - c_j + m``, which equals it without the cancellation.

    ``kind="agreement"`` is ICC(2,1) of Shrout & Fleiss 1979 (two-way random effects, absolute
    agreement; McGraw & Wong's ICC(A,1)):
    ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)``. A systematic offset between methods
    lowers it, which is what matters when a predicted volume should equal the reference volume.

    ``kind="consistency"`` is ICC(3,1) (two-way mixed effects, consistency; ICC(C,1)):
    ``(MSR - MSE) / (MSR + (k - 1) MSE)``; it ignores a constant offset between methods.

    Args:
        ratings: ``(n, k)`` table, ``n >= 2`` subjects and ``k >= 2`` methods, e.g.
            ``np.column_stack([predicted, reference])``.
        kind: ``"agreement"`` (ICC(2,1)) or ``"consistency"`` (ICC(3,1)).

    Returns:
        The ICC (at most 1; can be negative). NaN when the ratings hold no variation to set the
        disagreement against (0/0): every rating identical, or, for ``"consistency"``, every
        subject rated alike with the methods apart by constant offsets. A sum of squares no larger
        than deviations of ``1e-12`` times the largest ``|rating|`` would give is round-off, not
        variation: a denominator no larger than such round-off gives NaN, where an exact zero
        test would let identical ratings come out at arbitrary values such as 0.16, 1 or -1.

    Raises:
        ValueError: If ``ratings`` is not a finite ``(n, k)`` table with ``n, k >= 2`` or ``kind``
            is unknown.

    Example:
        >>> round(icc([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]], kind="consistency"), 6)
        1.0
        >>> round(icc([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]]), 3)  # the offset of 1 costs agreement
        0.667
    """
    x = as_numpy(ratings, name="ratings").astype(np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(
            f"ratings must be an (n_subjects, k_methods) table with n >= 2 and k >= 2; found shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("ratings must be finite; found NaN or inf")
    check_option(kind, ("agreement", "consistency"), field="kind")
    n, k = x.shape
    grand = x.mean()
    row_effects = x.mean(axis=1) - grand
    col_effects = x.mean(axis=0) - grand
    residuals = x - grand - row_effects[:, None] - col_effects[None, :]
    ms_rows = k * float(row_effects @ row_effects) / (n - 1)
    ms_cols = n * float(col_effects @ col_effects) / (k - 1)
    ms_error = float(np.sum(residuals**2)) / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error
    if kind == "agreement":
        denominator += k * (ms_cols - ms_error) / n
    # Ratings without variation still leave round-off in every mean (0.1 stored three times and
    # averaged is not 0.1), so the 0/0 case arrives as noise / noise. Each sum of squares holds
    # n * k squared deviations; at most _RESOLUTION * max|x| each, the denominator stays below
    # 4 * noise / (n - 1) (its three weights sum to less than 4 / (n - 1) per unit of SS).
    noise = x.size * (_RESOLUTION * float(np.abs(x).max())) ** 2
    if denominator <= 4 * noise / (n - 1):
        return math.nan
    return float((ms_rows - ms_error) / denominator)
