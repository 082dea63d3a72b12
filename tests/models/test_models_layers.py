"""WSConv2d, GroupNorm group clamping and GroupNorm under autocast (paper sec. 2.3), against references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from inpaintssl.models import AutocastGroupNorm, ConvNormAct, WSConv2d, group_count


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
    # PyTorch's GroupNorm (no running statistics), computing exactly it unless asked otherwise.
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 8 and norm.precision == "float32"
    assert isinstance(act, nn.ReLU)
    assert list(block.buffers()) == []


def _norm_pair(
    precision: str, channels: int, groups: int, seed: int
) -> tuple[AutocastGroupNorm, nn.GroupNorm]:
    """An AutocastGroupNorm and a plain GroupNorm with the same (non-trivial) affine parameters."""
    ours = AutocastGroupNorm(groups, channels, precision=precision)  # type: ignore[arg-type]
    plain = nn.GroupNorm(groups, channels)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p, q in zip(ours.parameters(), plain.parameters()):
            p.copy_(torch.randn(p.shape, generator=generator))
            q.copy_(p)
    return ours, plain


@pytest.mark.parametrize("precision", ["float32", "autocast"])
@given(
    groups=st.sampled_from([1, 2, 4]),
    per_group=st.integers(1, 3),
    side=st.integers(1, 5),
    seed=st.integers(0, 99),
)
def test_autocast_group_norm_is_group_norm_bit_for_bit_outside_autocast(
    precision: str, groups: int, per_group: int, side: int, seed: int
) -> None:
    ours, plain = _norm_pair(precision, groups * per_group, groups, seed)
    x = torch.randn(2, groups * per_group, side, side + 1, generator=torch.Generator().manual_seed(seed))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours, out_plain = ours(a), plain(b)
    assert torch.equal(out_ours, out_plain)
    out_ours.square().sum().backward()
    out_plain.square().sum().backward()
    assert torch.equal(a.grad, b.grad)  # type: ignore[arg-type]
    for p, q in zip(ours.parameters(), plain.parameters()):
        assert torch.equal(p.grad, q.grad)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_group_norm_at_float32_precision_is_group_norm_under_autocast(dtype: torch.dtype) -> None:
    ours, plain = _norm_pair("float32", 8, 4, seed=1)
    x = torch.randn(2, 8, 6, 6).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        assert torch.equal(ours(x), plain(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_precision_normalises_in_the_input_dtype_with_float32_gradients(dtype: torch.dtype) -> None:
    ours, _ = _norm_pair("autocast", 8, 4, seed=2)
    x = (3.0 + 2.0 * torch.randn(2, 8, 6, 6)).to(dtype).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        out = ours(x)
    assert out.dtype == dtype
    # The reference: the whole normalisation in float64 from the same low-precision input.
    weight, bias = ours.weight.detach().double(), ours.bias.detach().double()
    groups = x.detach().double().reshape(2, 4, -1)
    normalised = (groups - groups.mean(-1, keepdim=True)) / torch.sqrt(
        groups.var(-1, unbiased=False, keepdim=True) + ours.eps
    )
    expected = normalised.reshape(x.shape) * weight[:, None, None] + bias[:, None, None]
    tolerance = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10  # a few units in the last place
    scale = expected.abs().max().item()
    assert (out.double() - expected).abs().max().item() <= 4 * tolerance * scale
    out.float().sum().backward()
    assert ours.weight.grad is not None and ours.weight.grad.dtype == torch.float32
    assert ours.bias.grad is not None and ours.bias.grad.dtype == torch.float32
    # d(sum)/d(bias_c) is the element count per channel; d(sum)/d(weight_c) the sum of its normalised values.
    assert torch.allclose(ours.bias.grad, torch.full((8,), 2.0 * 36))
    expected_weight_grad = normalised.reshape(x.shape).sum(dim=(0, 2, 3)).float()
    assert torch.allclose(ours.weight.grad, expected_weight_grad, atol=0.05 * 72**0.5 + 0.5)


def test_an_unknown_norm_precision_is_refused_naming_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"norm_precision='bf16' is invalid; expected one of 'float32', 'autocast'"
    ):
        AutocastGroupNorm(2, 4, precision="bf16")  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_under_cuda_autocast_only_the_autocast_precision_skips_the_float32_round_trip() -> None:
    # CUDA autocast runs group_norm in float32 (the reason for the option); the CPU's does not.
    default, _ = _norm_pair("float32", 32, 16, seed=3)
    fast = AutocastGroupNorm(16, 32, precision="autocast")
    fast.load_state_dict(default.state_dict())
    default, fast = default.cuda(), fast.cuda()
    x = torch.randn(4, 32, 64, 64, device="cuda", dtype=torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        slow_out, fast_out = default(x), fast(x)
    assert slow_out.dtype == torch.float32 and fast_out.dtype == torch.bfloat16
    assert torch.allclose(fast_out.float(), slow_out, atol=0.05, rtol=0.02)
