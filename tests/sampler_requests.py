"""The hypothesis strategy of sampling requests shared by the sampler tests."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def requests(draw: st.DrawFn) -> tuple[tuple[int, int], int, float, int]:
    """Shapes (square and not), patch sizes up to a quarter of the short side, coverages, seeds."""
    height = draw(st.integers(16, 160))
    width = draw(st.sampled_from([height, draw(st.integers(16, 160))]))
    k = draw(st.integers(2, min(height, width) // 4))
    coverage = draw(st.sampled_from([0.1, 0.25, 0.3]))
    return (height, width), k, coverage, draw(st.integers(0, 2**32 - 1))
