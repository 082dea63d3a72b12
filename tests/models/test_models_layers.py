"""WSConv2d and GroupNorm group clamping (paper sec. 2.3), checked against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from inpaintssl.models import ConvNormAct, WSConv2d, group_count


def numpy_standardize(weight: np.ndarray, eps: float) -> np.ndarray:
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    mean = flat.mean(axis=1, keepdims=True)
    var = ((flat - mean) ** 2).mean(axis=1, keepdims=True)
    return ((flat - mean) / np.sqrt(var + eps)).reshape(weight.shape)


def test_wsconv2d_is_a_real_conv2d() -> None:
    conv = WSConv2d(3, 5, kernel_size=3, padding=1)
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.shape == (5, 3, 3, 3)


@given(
    c_out=st.integers(1, 6),
    c_in=st.integers(1, 6),
    kernel=st.sampled_from([1, 3, 5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_standardized_weight_matches_numpy(c_out: int, c_in: int, kernel: int, seed: int) -> None:
    conv = WSConv2d(c_in, c_out, kernel_size=kernel)
    with torch.no_grad():
        conv.weight.normal_(0.3, 2.0, generator=torch.Generator().manual_seed(seed))
    got = conv.standardized_weight().detach().double().numpy()
    expected = numpy_standardize(conv.weight.detach().numpy(), conv.eps)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_effective_weights_have_zero_mean_and_unit_std_per_output_channel() -> None:
    conv = WSConv2d(16, 8, kernel_size=3)
    with torch.no_grad():
        conv.weight.normal_(5.0, 3.0, generator=torch.Generator().manual_seed(0))
    w = conv.standardized_weight().detach().numpy().reshape(8, -1)
    np.testing.assert_allclose(w.mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(w.std(axis=1), 1.0, atol=1e-5)


def test_forward_equals_plain_convolution_with_standardized_numpy_kernel() -> None:
    conv = WSConv2d(3, 4, kernel_size=3, padding=1, bias=True)
    with torch.no_grad():
        conv.bias.uniform_(-1, 1)
    x = torch.randn(2, 3, 7, 9)
    kernel = torch.from_numpy(numpy_standardize(conv.weight.detach().numpy(), conv.eps)).float()
    expected = F.conv2d(x, kernel, conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)


def test_output_is_invariant_to_affine_rescaling_of_each_kernel() -> None:
    conv = WSConv2d(4, 3, kernel_size=3, padding=1, bias=False, eps=1e-12)
    x = torch.randn(1, 4, 6, 6)
    before = conv(x)
    with torch.no_grad():
        scale = torch.tensor([0.5, 2.0, 10.0]).view(3, 1, 1, 1)
        conv.weight.mul_(scale).add_(torch.tensor([1.0, -3.0, 0.2]).view(3, 1, 1, 1))
    torch.testing.assert_close(conv(x), before, atol=1e-4, rtol=1e-4)


def test_gradients_through_standardization_pass_gradcheck() -> None:
    conv = WSConv2d(2, 3, kernel_size=3, padding=1).double()
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, inp: functional_call(conv, {"weight": w}, (inp,)), (weight, x))


def test_channels_last_gives_the_same_output() -> None:
    conv = WSConv2d(4, 6, kernel_size=3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    expected = conv(x)
    conv_cl = conv.to(memory_format=torch.channels_last)
    torch.testing.assert_close(conv_cl(x.contiguous(memory_format=torch.channels_last)), expected)


@pytest.mark.parametrize("kernel", ["blocked_gemm", "onednn", "auto"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_channels_last_training_under_cpu_autocast_matches_autocast_conv2d(
    kernel: str, dtype: torch.dtype
) -> None:
    # Under torch.autocast("cpu") the convolution runs in half precision, so its output gradient
    # arrives in half precision too; whichever weight-gradient kernel the layer names, the step
    # must train as autocast's own F.conv2d of the standardised kernel does.
    conv = WSConv2d(4, 6, kernel_size=3, padding=1, bias=False, weight_gradient=kernel)  # type: ignore[arg-type]
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    reference_weight = conv.weight.detach().clone().requires_grad_()
    reference_x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        out = conv(x)
        var, mean = torch.var_mean(reference_weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        expected = F.conv2d(reference_x, (reference_weight - mean) * torch.rsqrt(var + conv.eps), padding=1)
    assert out.dtype == expected.dtype == dtype
    out.float().square().sum().backward()
    expected.float().square().sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(conv.weight.grad, reference_weight.grad)
    torch.testing.assert_close(x.grad, reference_x.grad)


def test_non_positive_eps_is_rejected() -> None:
    with pytest.raises(ValueError, match="eps=0"):
        WSConv2d(1, 1, kernel_size=1, eps=0.0)


@pytest.mark.parametrize(
    ("channels", "groups", "expected"),
    [(32, 16, 16), (8, 16, 8), (24, 16, 12), (1, 16, 1), (7, 4, 1), (512, 16, 16)],
)
def test_group_count_hand_worked(channels: int, groups: int, expected: int) -> None:
    assert group_count(channels, groups) == expected


@given(channels=st.integers(1, 600), groups=st.integers(1, 64))
def test_group_count_is_the_largest_valid_divisor(channels: int, groups: int) -> None:
    got = group_count(channels, groups)
    assert channels % got == 0 and got <= groups
    assert all(channels % g for g in range(got + 1, groups + 1))


@pytest.mark.parametrize(("channels", "groups"), [(0, 16), (8, 0)])
def test_group_count_rejects_non_positive(channels: int, groups: int) -> None:
    with pytest.raises(ValueError, match="expected an integer >= 1"):
        group_count(channels, groups)


def test_conv_norm_act_uses_standard_group_norm_with_clamped_groups() -> None:
    block = ConvNormAct(3, 8, groups=16)
    conv, norm, act = block
    assert isinstance(conv, WSConv2d) and conv.bias is None and conv.kernel_size == (3, 3)
    assert type(norm) is nn.GroupNorm and norm.num_groups == 8
    assert isinstance(act, nn.ReLU)
    assert list(block.buffers()) == []
