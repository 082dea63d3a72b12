"""Eq. (A1): the inpainting L2 loss, against a NumPy transcription of the formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.losses import L2Loss, l2_loss
from inpaintssl.registry import LOSSES


def numpy_a1(x: np.ndarray, y: np.ndarray) -> float:
    """(1/C) sum_c (1/N) sum_n sum_{h,w} (X - Y)^2, written as the paper's nested sums."""
    n_images, n_channels = x.shape[:2]
    total = 0.0
    for c in range(n_channels):
        per_channel = 0.0
        for n in range(n_images):
            per_channel += float(((x[n, c] - y[n, c]) ** 2).sum())
        total += per_channel / n_images
    return total / n_channels


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_equation_a1(shape: tuple[int, int, int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=shape), rng.normal(size=shape)
    got = l2_loss(torch.from_numpy(x), torch.from_numpy(y))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(numpy_a1(x, y), rel=1e-12)


def test_hand_worked_value() -> None:
    pred = torch.zeros(2, 2, 2, 2)
    target = torch.zeros(2, 2, 2, 2)
    target[0, 0] = 1.0  # channel 0: image sums 4 and 0 -> mean 2
    target[1, 1, 0, 0] = 3.0  # channel 1: image sums 0 and 9 -> mean 4.5
    assert float(l2_loss(pred, target)) == pytest.approx((2 + 4.5) / 2)


def test_registered_module_equals_the_function() -> None:
    loss = LOSSES.build("l2")
    assert isinstance(loss, L2Loss)
    x, y = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    assert torch.equal(loss(x, y), l2_loss(x, y))


def test_gradcheck_float64() -> None:
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: l2_loss(a, y), (x,))


def test_half_precision_is_summed_in_float32() -> None:
    # 512x512 squared errors of 1 sum to 262144, beyond float16's 65504.
    pred = torch.ones(1, 1, 512, 512, dtype=torch.float16)
    target = torch.zeros_like(pred)
    got = l2_loss(pred, target)
    assert got.dtype == torch.float32 and float(got) == 512 * 512


@pytest.mark.parametrize(
    ("pred_shape", "target_shape", "message"),
    [
        ((1, 1, 4, 4), (1, 1, 4, 5), r"same shape.*\(1, 1, 4, 4\).*\(1, 1, 4, 5\)"),
        ((4, 4), (4, 4), "pred must have shape"),
        # One image without its batch axis, a batch without its channel axis: scored H times too
        # small (rows averaged as channels), where eq. A1 sums every pixel.
        (
            (1, 8, 8),
            (1, 8, 8),
            r"pred must have shape \(N, C, H, W\) \(at least 4 dimensions\); found shape \(1, 8, 8\)",
        ),
        ((4, 8, 8), (4, 8, 8), r"at least 4 dimensions\); found shape \(4, 8, 8\)"),
    ],
)
def test_bad_shapes_are_rejected(
    pred_shape: tuple[int, ...], target_shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        l2_loss(torch.zeros(pred_shape), torch.zeros(target_shape))


def test_arrays_that_are_no_tensors_are_named() -> None:
    # NumPy arrays failed as "'numpy.ndarray' object has no attribute 'is_floating_point'".
    from inpaintssl.losses import dice_loss

    array = np.zeros((1, 2, 4, 4), dtype=np.float32)
    with pytest.raises(TypeError, match=r"^pred is of type ndarray; expected a torch\.Tensor"):
        l2_loss(array, torch.zeros(1, 2, 4, 4))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^target_onehot is of type ndarray; expected a torch\.Tensor"):
        dice_loss(torch.zeros(1, 2, 4, 4), array)  # type: ignore[arg-type]
