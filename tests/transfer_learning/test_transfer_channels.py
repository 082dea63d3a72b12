"""First-layer input-channel adaptation, checked with plain convolutions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.transfer_learning import adapt_input_channels


@given(old=st.integers(1, 4), new=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_repeat_reproduces_the_response_to_a_cyclically_replicated_input(
    old: int, new: int, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(5, old, 3, 3, generator=generator, dtype=torch.float64)
    x_old = torch.randn(2, old, 6, 6, generator=generator, dtype=torch.float64)
    adapted = adapt_input_channels(weight, new, mode="repeat")
    assert adapted.shape == (5, new, 3, 3)
    if new >= old:
        x_new = x_old[:, [j % old for j in range(new)]]
        torch.testing.assert_close(F.conv2d(x_new, adapted), F.conv2d(x_old, weight))
    else:
        torch.testing.assert_close(adapted, weight[:, :new])


def test_repeat_scale_is_old_over_new_for_multiples() -> None:
    weight = torch.randn(4, 2, 3, 3)
    torch.testing.assert_close(
        adapt_input_channels(weight, 6, mode="repeat"), weight.repeat(1, 3, 1, 1) * (2 / 6)
    )


def test_average_gives_every_channel_the_mean_kernel() -> None:
    weight = torch.randn(4, 3, 3, 3)
    adapted = adapt_input_channels(weight, 2, mode="average")
    for j in range(2):
        torch.testing.assert_close(adapted[:, j], weight.mean(dim=1))
    assert adapted.is_contiguous()


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="mode='tile'"):
        adapt_input_channels(torch.zeros(1, 1, 3, 3), 2, mode="tile")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_channels=0"):
        adapt_input_channels(torch.zeros(1, 1, 3, 3), 0, mode="repeat")
    with pytest.raises(ValueError, match=r"found shape \(4,\)"):
        adapt_input_channels(torch.zeros(4), 2, mode="repeat")


@pytest.mark.parametrize("mode", ["repeat", "average"])
@pytest.mark.parametrize("in_channels", [3.0, True, "3"])
def test_in_channels_that_is_not_an_integer_is_a_type_error_naming_it(in_channels: object, mode: str) -> None:
    # 3.0 failed inside torch (bincount on floats, expand), without naming the argument; True was
    # taken for one channel.
    with pytest.raises(
        TypeError, match=rf"^in_channels: expected an integer .*found {type(in_channels).__name__} "
    ):
        adapt_input_channels(torch.ones(2, 1, 3, 3), in_channels, mode=mode)  # type: ignore[arg-type]


def test_a_numpy_integer_in_channels_is_still_taken() -> None:
    weight = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    adapted = adapt_input_channels(weight, np.int64(3), mode="repeat")  # type: ignore[arg-type]
    torch.testing.assert_close(adapted, weight.repeat(1, 3, 1, 1) / 3)
