"""The hypothesis strategy of sampling requests shared by the sampler tests."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import strategies as st


@st.composite
def requests(draw: st.DrawFn) -> tuple[tuple[int, int], int, float, int]:
    """Shapes (square and not), patch sizes up to a quarter of the short side, coverages, seeds."""
    height = draw(st.integers(16, 160))
    width = draw(st.sampled_from([height, draw(st.integers(16, 160))]))
    k = draw(st.integers(2, min(height, width) // 4))
    coverage = draw(st.sampled_from([0.1, 0.25, 0.3]))
    return (height, width), k, coverage, draw(st.integers(0, 2**32 - 1))


def exact_target(coverage: float, shape: tuple[int, int]) -> int:
    """``ceil(coverage * H * W)`` in decimal arithmetic, ``coverage`` read as it prints.

    Floating point rounds ``0.07 * 100 * 100`` up to ``700.0000000000001`` (ceiling 701).
    """
    return math.ceil(Decimal(repr(coverage)) * shape[0] * shape[1])
