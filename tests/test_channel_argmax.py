"""Each pixel's largest channel is NumPy's arg-max, whatever the layout, dtype, ties and NaNs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.channel_argmax import channel_argmax

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.uint8, torch.int64]
LAYOUTS = ["contiguous", "channels_last", "transposed", "sliced"]


def _laid_out(scores: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in another memory layout (``sliced``: every other row of a larger tensor)."""
    if layout == "channels_last":
        return scores.contiguous(memory_format=torch.channels_last)
    if layout == "transposed":
        return scores.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "sliced":
        wider = torch.zeros((*scores.shape[:2], 2 * scores.shape[2], scores.shape[3]), dtype=scores.dtype)
        wider[:, :, ::2] = scores
        return wider[:, :, ::2]
    return scores


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 9), st.integers(1, 9)),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(LAYOUTS),
    special=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**31 - 1),
    keepdim=st.booleans(),
)
def test_the_channel_is_numpys_first_largest(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    layout: str,
    special: float,
    seed: int,
    keepdim: bool,
) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct values, so that channels tie often; NaN and both infinities where floats allow.
    values = rng.integers(0, 4, size=shape).astype(np.float64)
    if dtype.is_floating_point:
        draw = rng.random(shape)
        values[draw < special / 3] = np.nan
        values[(draw >= special / 3) & (draw < 2 * special / 3)] = np.inf
        values[(draw >= 2 * special / 3) & (draw < special)] = -np.inf
    scores = _laid_out(torch.from_numpy(values).to(dtype), layout)
    # NumPy's argmax: the first largest, the first NaN where there is one (every value is exact in
    # each dtype, so the comparison is over the same numbers).
    expected = np.argmax(values, axis=1)
    if keepdim:
        expected = expected[:, None]
    found = channel_argmax(scores, keepdim=keepdim)
    assert found.dtype == torch.int64
    np.testing.assert_array_equal(found.numpy(), expected)
    assert torch.equal(found, scores.argmax(dim=1, keepdim=keepdim))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_single_channel_and_a_plain_matrix_are_handled(layout: str) -> None:
    one = _laid_out(torch.randn(2, 1, 3, 4), layout)
    assert torch.equal(channel_argmax(one), torch.zeros(2, 3, 4, dtype=torch.int64))
    rows = torch.tensor([[0.0, 3.0, 3.0], [5.0, float("nan"), 1.0]])
    assert channel_argmax(rows).tolist() == [1, 1]
    assert channel_argmax(rows.t().contiguous().t()).tolist() == [1, 1]  # the channels strided
