"""The unet2d backbone against the paper's architecture (sec. 2.3, Figure 2) and its contract."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from inpaintssl.models import AutocastGroupNorm, UNet2d, WSConv2d
from inpaintssl.registry import BACKBONES


def small(**overrides: object) -> nn.Module:
    params: dict[str, object] = {"in_channels": 1, "out_channels": 2, "depth": 3, "base_width": 8, "seed": 0}
    params.update(overrides)
    return BACKBONES.build("unet2d", **params)


def paper_parameter_count(in_channels: int, out_channels: int, widths: list[int]) -> int:
    """Parameters of the U-Net as the paper describes it, counted layer by layer.

    Two bias-free 3x3 weight-standardised convs per level, each followed by GroupNorm (scale and
    shift); 2x2 transposed convs with bias; the decoder's first conv sees skip + upsampled
    channels; a 1x1 head with bias.
    """
    count = 0
    previous = in_channels
    for width in widths:
        count += 9 * previous * width + 2 * width
        count += 9 * width * width + 2 * width
        previous = width
    for deeper, width in zip(widths[:0:-1], widths[-2::-1]):
        count += 4 * deeper * width + width
        count += 9 * 2 * width * width + 2 * width
        count += 9 * width * width + 2 * width
    return count + widths[0] * out_channels + out_channels


def test_build_through_registry_returns_unet2d() -> None:
    assert isinstance(small(), UNet2d)


def test_default_is_the_papers_five_level_32_to_512_network() -> None:
    net = BACKBONES.build("unet2d", in_channels=1, out_channels=4, seed=0)
    assert net.widths == (32, 64, 128, 256, 512)
    assert net.size_multiple == 16
    encoder_widths = [level[1][0].out_channels for level in net.encoder.levels]
    assert encoder_widths == [32, 64, 128, 256, 512]
    assert sum(p.numel() for p in net.parameters()) == paper_parameter_count(1, 4, [32, 64, 128, 256, 512])


def test_parameter_count_hand_worked_for_a_tiny_network() -> None:
    # in=1, out=1, widths (4, 8): encoder 36+8+144+8 + 288+16+576+16 = 1092,
    # decoder up 128+4, convs 288+8 and 144+8 = 580, head 4+1 = 5.
    net = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
    assert sum(p.numel() for p in net.parameters()) == 1677


def test_layer_types_follow_the_paper() -> None:
    depth = 4
    net = small(depth=depth)
    convs = [m for m in net.modules() if isinstance(m, WSConv2d)]
    assert len(convs) == 2 * depth + 2 * (depth - 1)
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    ups = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == depth - 1
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert type(net.head) is nn.Conv2d and net.head.kernel_size == (1, 1)


def test_normalisation_is_standard_group_norm_without_running_statistics() -> None:
    net = small(base_width=8, groups=16)
    norms = [
        m
        for m in net.modules()
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
    ]
    assert norms and all(type(m) is AutocastGroupNorm and m.precision == "float32" for m in norms)
    assert {m.num_channels: m.num_groups for m in norms} == {8: 8, 16: 16, 32: 16}
    assert list(net.buffers()) == []


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_size_multiple_is_two_to_the_depth_minus_one(depth: int) -> None:
    net = small(depth=depth, base_width=4)
    assert net.size_multiple == 2 ** (depth - 1)
    side = 3 * net.size_multiple
    assert net(torch.zeros(1, 1, side, 2 * side)).shape == (1, 2, side, 2 * side)


def test_depth_one_accepts_odd_sizes() -> None:
    assert small(depth=1)(torch.zeros(1, 1, 7, 5)).shape == (1, 2, 7, 5)


def test_indivisible_size_error_names_the_size_and_the_multiple() -> None:
    net = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=5, base_width=4)
    with pytest.raises(ValueError, match=r"\(33, 48\).*size_multiple=16"):
        net(torch.zeros(1, 1, 33, 48))


def test_wrong_channel_count_and_rank_are_rejected() -> None:
    net = small()
    with pytest.raises(ValueError, match=r"3 channels.*in_channels=1"):
        net(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(1, 16, 16\)"):
        net(torch.zeros(1, 16, 16))


@pytest.mark.parametrize("name", ["in_channels", "out_channels", "depth", "base_width", "groups"])
@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_invalid_sizes_are_rejected_with_the_argument_name(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{name}={value!r}"):
        small(**{name: value})


@pytest.mark.parametrize("name", ["in_channels", "out_channels", "depth", "base_width", "groups"])
def test_numpy_integer_sizes_build_the_same_network_as_ints(name: str) -> None:
    # e.g. out_channels=labels.max() + 1, an np.int64; torch.nn.Conv2d accepts it too.
    plain = {"in_channels": 2, "out_channels": 3, "depth": 3, "base_width": 8, "groups": 4}
    numpy_sizes = {**plain, name: np.int64(plain[name])}
    net = small(**numpy_sizes)
    reference = small(**plain)
    assert type(getattr(net, name, 0)) is int  # stored as a Python int (groups is not stored)
    assert net.widths == reference.widths == (8, 16, 32) and all(type(w) is int for w in net.widths)
    assert all(type(m.num_groups) is int for m in net.modules() if isinstance(m, nn.GroupNorm))
    assert net.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), reference.parameters(), strict=True))


@pytest.mark.parametrize("seed", [2**64, 2**32, -1, -(2**63), 1.5, "0", True, np.int64(-1)])
def test_invalid_seed_is_rejected_with_the_argument_name(seed: object) -> None:
    # torch's manual_seed would say "Overflow when unpacking long long" or "expected a long" for
    # some, and would silently keep only the low 32 bits of the others.
    message = re.escape(f"seed={seed!r} is invalid; expected None or an integer in [0, 2**32)")
    with pytest.raises(ValueError, match=message):
        small(seed=seed)
    with pytest.raises(ValueError, match=message):
        UNet2d(in_channels=1, out_channels=1, depth=2, base_width=4, seed=0).reset_parameters(seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2**31, 2**32 - 1, np.int64(2**32 - 1), np.uint32(5)])
def test_every_documented_seed_is_accepted_and_reproducible(seed: int) -> None:
    first, second = small(seed=seed), small(seed=seed)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


@pytest.mark.parametrize(("low", "high"), [(0, 2**32), (5, 5 + 7 * 2**32), (2**32 - 1, -1)])
def test_seeds_equal_modulo_2_to_the_32_are_not_silently_merged(low: int, high: int) -> None:
    # PyTorch's CPU generator keeps seed & 0xffffffff: these pairs used to give identical weights.
    draws = [torch.randn(8, generator=torch.Generator().manual_seed(seed)) for seed in (low, high)]
    assert torch.equal(*draws)
    with pytest.raises(ValueError, match=re.escape(f"seed={high!r} is invalid")):
        small(seed=high)
    # Every seed that is accepted gives weights of its own.
    assert not torch.equal(small(seed=low).head.weight, small(seed=(low + 1) % 2**32).head.weight)


def test_kaiming_normal_statistics_and_zeroed_biases() -> None:
    net = BACKBONES.build("unet2d", in_channels=1, out_channels=4, seed=0)
    checked = 0
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            w = module.weight.detach()
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]  # PyTorch's fan-in convention
            if w.numel() >= 5000:
                assert w.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.05)
                assert abs(w.mean().item()) < 0.1 * math.sqrt(2.0 / fan_in)
                checked += 1
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0
        if isinstance(module, nn.GroupNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    assert checked >= 10


def test_unseeded_builds_differ_and_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    first, second = small(seed=None), small(seed=None)
    assert torch.equal(state, torch.random.get_rng_state())
    assert not torch.equal(first.encoder.levels[0][0][0].weight, second.encoder.levels[0][0][0].weight)


def test_reset_parameters_reproduces_the_seeded_init() -> None:
    net = small(seed=5)
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.reset_parameters(seed=5)
    assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())


def test_channels_last_backward_matches_default_layout() -> None:
    ref, net = small(), small().to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 16, 24, generator=torch.Generator().manual_seed(0))
    ref(x).square().mean().backward()
    net(x.contiguous(memory_format=torch.channels_last)).square().mean().backward()
    for (name, p_ref), p in zip(ref.named_parameters(), net.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    # bf16 keeps 3 fewer mantissa bits than fp16, about 8x the rounding: with the convolutions
    # rounded to each on the CPU this net's relative error is 0.006 (fp16) and 0.047-0.049 (bf16).
    [(torch.float16, 0.02), (torch.bfloat16, 0.1)],
)
def test_cuda_autocast_matches_cpu_float32(dtype: torch.dtype, tolerance: float) -> None:
    cpu = BACKBONES.build("unet2d", in_channels=1, out_channels=3, seed=0)
    gpu = BACKBONES.build("unet2d", in_channels=1, out_channels=3, seed=0).cuda()
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu.state_dict().values(), gpu.state_dict().values()))
    gpu = gpu.to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = cpu(x)
        with torch.autocast("cuda", dtype=dtype):
            out = gpu(x.cuda().contiguous(memory_format=torch.channels_last))
    assert out.device.type == "cuda" and torch.isfinite(out).all()
    error = (out.float().cpu() - expected).abs().mean() / expected.abs().mean()
    assert error < tolerance


def _gradients(
    net: nn.Module, x: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None
) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = net(x)
    (out.double() - target).square().mean().backward()
    return torch.cat([p.grad.detach().double().cpu().flatten() for p in net.parameters()])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")],
        ),
    ],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_normalising_in_the_autocast_dtype_keeps_the_gradients_as_close_to_float64(
    device: str, dtype: torch.dtype
) -> None:
    # norm_precision autocast keeps GroupNorm's saved statistics in bf16/fp16 for the backward pass
    # (PyTorch's CUDA kernel, and the CPU's for a low-precision input with low-precision weights);
    # its gradients may be no further from the float64 ones than those of the float32 norms, whose
    # error the half-precision convolutions already set.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 32, 48, generator=generator) * 50.0 + 200.0  # an MR-like offset and scale
    target = torch.randn(2, 3, 32, 48, generator=generator, dtype=torch.float64)
    exact = _gradients(
        BACKBONES.build("unet2d", in_channels=1, out_channels=3, seed=0).double(), x.double(), target, None
    )
    errors = {}
    for precision in ("float32", "autocast"):
        net = BACKBONES.build("unet2d", in_channels=1, out_channels=3, seed=0, norm_precision=precision)
        found = _gradients(net.to(device), x.to(device), target.to(device), dtype)
        errors[precision] = ((found - exact).norm() / exact.norm()).item()
    assert errors["autocast"] <= 1.25 * errors["float32"] + 0.01, errors
    assert errors["float32"] < 0.75, errors  # the comparison is between gradients, not noise


def test_norm_precision_reaches_every_group_norm_and_changes_nothing_outside_autocast() -> None:
    plain, fast = small(), small(norm_precision="autocast")
    assert {m.precision for m in fast.modules() if isinstance(m, AutocastGroupNorm)} == {"autocast"}
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(plain(x), fast(x))
    assert plain.state_dict().keys() == fast.state_dict().keys()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # The CPU's autocast already keeps GroupNorm in bf16: the two agree there too.
        assert torch.allclose(plain(x).float(), fast(x).float(), atol=0.05, rtol=0.05)
    assert fast.set_norm_precision("float32") is fast and fast.norm_precision == "float32"
    assert {m.precision for m in fast.modules() if isinstance(m, AutocastGroupNorm)} == {"float32"}
    with pytest.raises(ValueError, match="norm_precision='half' is invalid"):
        small(norm_precision="half")
