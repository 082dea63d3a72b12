"""How many labelled images a fitted Dice curve needs to reach a target Dice (paper sec. 2.6, 4).

With a power law ``Dice = a * n**k + c`` fitted to Dice against the number of labelled images
``n`` (see :func:`~inpaintssl.stats.fit_power_law`), the labels needed for a target Dice is the
smallest ``n`` at which the curve reaches it. Comparing that number for an SSL curve and a
supervised curve turns the paper's data-efficiency claim into "labels saved".
"""

from __future__ import annotations

import math

from inpaintssl.stats.power_law import PowerLawFit

__all__ = ["labels_needed"]


def labels_needed(fit: PowerLawFit, target: float, *, round_up: bool = True) -> float:
    """Smallest number of labelled images at which a fitted increasing curve reaches ``target``.

    The curve must increase with ``n`` (``a * k > 0``):

    - ``k > 0``: it rises from ``c`` at ``n = 0`` without bound; a target at or below ``c`` needs 0
      images, any other target ``((target - c) / a) ** (1 / k)``.
    - ``k < 0``: it rises towards the plateau ``c``; a target at or above ``c`` is unreachable
      (``inf``).

    A curve that does not increase (``a * k <= 0``) makes "labels needed" meaningless: NaN.
    The result is an extrapolation whenever it lies outside the fitted range of ``n``
    (:attr:`~inpaintssl.stats.PowerLawFit.x_min` to :attr:`~inpaintssl.stats.PowerLawFit.x_max`;
    ``fit.extrapolates(result)`` says so, counting ``inf`` as beyond the range). Near a plateau a
    small change in the fit moves it a long way, so read such a count as a trend, not an estimate.

    Args:
        fit: Power law fitted to score against number of labelled images.
        target: Target score, e.g. a Dice of 0.85.
        round_up: Round up to a whole number of images (the default); ``False`` returns the
            continuous solution.

    Returns:
        Number of images (a whole number when ``round_up``), ``inf`` when unreachable, NaN when
        the curve does not increase.

    Raises:
        ValueError: If ``target`` is not finite.

    Example:
        >>> fit = PowerLawFit(a=-0.5, k=-0.5, c=0.9, rse=0.0, ssr=0.0, ssr_over_n_minus_2=0.0, n=5)
        >>> labels_needed(fit, 0.8)  # 0.9 - 0.5 / sqrt(n) >= 0.8 from n = 25
        25.0
        >>> labels_needed(fit, 0.95)  # above the plateau
        inf
    """
    if not math.isfinite(target):
        raise ValueError(f"target must be a finite number; found {target!r}")
    if not fit.a * fit.k > 0:
        return math.nan
    if fit.k > 0 and target <= fit.c:
        return 0.0
    if fit.k < 0 and target >= fit.c:
        return math.inf
    n = float(fit.inverse(target))
    # Guard the ceiling against round-off in the inverse (e.g. 25.000000000000004 -> 26).
    return float(math.ceil(n - 1e-9 * max(1.0, n))) if round_up else n
