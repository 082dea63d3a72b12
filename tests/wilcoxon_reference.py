"""Reference p-values of the one-sided paired Wilcoxon signed-rank test, computed another way
than :func:`inpaintssl.stats.wilcoxon_greater` (every sign pattern enumerated; the textbook normal
approximation), so that tests do not depend on which method the installed SciPy chooses for tied
samples (its default changed in 1.13)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def grid_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` snapped to 1e-9: the samples here lie on grids of 0.1 or are continuous, so this
    removes the round-off (0.7 - 0.4 != 0.6 - 0.3 in floats) without merging real differences."""
    return np.round(a - b, 9)


def ranked(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Average ranks of the non-zero |a - b| (zeros dropped, Wilcoxon's way) and the positives' sum."""
    d = grid_differences(a, b)
    d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))
    return ranks, float(ranks[d > 0].sum())


def brute_force_p_greater(a: np.ndarray, b: np.ndarray) -> float:
    """Every sign pattern of the non-zero differences' average ranks, enumerated (n <= 16)."""
    ranks, observed = ranked(a, b)
    signs = (np.arange(2**ranks.size)[:, None] >> np.arange(ranks.size)) & 1  # (2^n, n) of 0/1
    sums = signs @ ranks
    return float(np.mean(sums >= observed - 1e-9))


def normal_p_greater(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook normal approximation: tie-corrected variance, no continuity correction."""
    ranks, observed = ranked(a, b)
    n = ranks.size
    _, t = np.unique(ranks, return_counts=True)
    sd = np.sqrt(n * (n + 1) * (2 * n + 1) / 24 - np.sum(t**3 - t) / 48)
    return float(stats.norm.sf((observed - n * (n + 1) / 4) / sd))
