"""p-values adjusted for the number of tests a table reports (Holm 1979).

A study's report tests many hypotheses at once: Table 3 tests every SSL strategy against its
baseline (16 in the paper: 2 pretext tasks x 4 patch sizes x 2 samplers), the clinical
comparison one test per measurement, the per-fraction summary one per label fraction. The paper
reads each p-value on its own (sec. 2.5.3 ranks by them), which is what the ``p_value`` columns
keep; a reader who asks "which of these strategies beat supervised learning?" of a whole table
needs the family-wise error rate controlled, or about one strategy in twenty that does not beat
its baseline "wins" at 0.05 by chance alone. The ``p_holm`` columns give Holm's step-down
adjusted p-values: reject every hypothesis whose adjusted p-value is at most the chosen level,
and the chance of any false rejection in the table stays below that level, whatever the
dependence between the tests (the strategies share one baseline's scores). Holm is uniformly
more powerful than Bonferroni under the same guarantee, and needs no assumption of independence
or positive dependence as Hochberg's and Hommel's methods do.

Example:
    >>> holm_adjusted([0.01, 0.04, 0.03]).tolist()
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["holm_adjusted"]


def holm_adjusted(p_values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Holm's step-down adjusted p-values, in the order given (Holm 1979, Scand. J. Stat. 6:65-70).

    With the ``m`` finite p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value
    of ``p_(i)`` is ``max_{j <= i} min(1, (m - j + 1) * p_(j))``: the smallest is multiplied by
    ``m`` (Bonferroni), the next by ``m - 1``, and so on, kept monotone so that a hypothesis is
    never rejected while one with a smaller p-value is kept. NaN entries (a strategy with no pairs)
    are not tests: they stay NaN and do not count in ``m``. Equal p-values get equal adjusted
    values, whichever order they are listed in.

    Args:
        p_values: Any shape; each entry in [0, 1] or NaN.

    Returns:
        The adjusted p-values, float64, of the same shape as ``p_values``.

    Raises:
        ValueError: If an entry is infinite or outside [0, 1] (the message names its index).

    Example:
        >>> holm_adjusted([0.01, float("nan"), 0.02]).tolist()  # m = 2: NaN is no test
        [0.02, nan, 0.02]
    """
    p = np.asarray(p_values, dtype=np.float64)
    flat = p.ravel()
    bad = np.flatnonzero(~np.isnan(flat) & ~((flat >= 0.0) & (flat <= 1.0)))
    if bad.size:
        raise ValueError(
            "p_values must lie in [0, 1] (or be NaN for no test); found "
            f"{float(flat[bad[0]])!r} at flat index {int(bad[0])}"
        )
    tested = np.flatnonzero(~np.isnan(flat))
    adjusted = np.full(flat.shape, np.nan)
    m = tested.size
    if m == 0:
        return adjusted.reshape(p.shape)
    order = tested[np.argsort(flat[tested], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
    # The running maximum keeps the order of rejections; it also gives tied p-values one value,
    # since within a run of ties the first (largest multiplier) is the largest scaled value.
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.reshape(p.shape)
