"""The blocked-GEMM weight gradient of the U-Net's 3x3 convolution, against independent references.

References: a float64 NumPy sum over the nine shifted, zero-padded copies of the input (the
definition), PyTorch's own ``conv2d`` autograd, and ``gradcheck`` finite differences.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from inpaintssl.models import (
    UNet2d,
    WSConv2d,
    conv3x3,
    conv3x3_weight_gradient,
    cpu_convolution,
    cpu_weight_gradient,
    set_cpu_weight_gradient,
    using_cpu_weight_gradient,
)
from inpaintssl.models.cpu_convolution import auto_weight_gradient_kernel, blocked_weight_gradient_applies

CL = torch.channels_last


def numpy_weight_gradient(grad_output: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dL/dW[o, c, i, j] = sum over n, h, w of G[n, o, h, w] * Xpad[n, c, h + i, w + j]."""
    height, width = x.shape[2:]
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((grad_output.shape[1], x.shape[1], 3, 3))
    for i in range(3):
        for j in range(3):
            shifted = padded[:, :, i : i + height, j : j + width]
            out[:, :, i, j] = np.einsum("nohw,nchw->oc", grad_output.astype(np.float64), shifted)
    return out


@settings(deadline=None, max_examples=40)
@given(
    batch=st.integers(1, 3),
    c_in=st.integers(1, 5),
    c_out=st.integers(1, 5),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    block_rows=st.integers(1, 200),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
# An NCHW input of width 1 reshapes to a strided (pixel, channel) view, not a row-major one.
@example(batch=1, c_in=2, c_out=1, height=5, width=1, block_rows=1, channels_last=False, seed=0)
def test_weight_gradient_matches_the_numpy_definition(
    batch: int,
    c_in: int,
    c_out: int,
    height: int,
    width: int,
    block_rows: int,
    channels_last: bool,
    seed: int,
) -> None:
    # Every block shape: single rows, several rows, whole images, several images, ragged ends.
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, height, width, generator=generator, dtype=torch.float64)
    grad = torch.randn(batch, c_out, height, width, generator=generator, dtype=torch.float64)
    layout = CL if channels_last else torch.contiguous_format
    got = conv3x3_weight_gradient(
        grad.contiguous(memory_format=layout), x.contiguous(memory_format=layout), block_rows=block_rows
    )
    np.testing.assert_allclose(got.numpy(), numpy_weight_gradient(grad.numpy(), x.numpy()), atol=1e-10)


def test_weight_gradient_spans_a_whole_unet_layer_in_float32() -> None:
    # A 64x64 layer of batch 9: many blocks per image, the batch-edge windows, float32 sums.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(9, 16, 64, 64, generator=generator).contiguous(memory_format=CL)
    grad = torch.randn(9, 8, 64, 64, generator=generator).contiguous(memory_format=CL)
    expected = numpy_weight_gradient(grad.numpy(), x.numpy())
    got = conv3x3_weight_gradient(grad, x, block_rows=512).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("needs", ["both", "input", "weight"])
def test_conv3x3_passes_gradcheck(needs: str) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 4, generator=generator, dtype=torch.float64).contiguous(memory_format=CL)
    weight = torch.randn(4, 3, 3, 3, generator=generator, dtype=torch.float64).contiguous(memory_format=CL)
    x.requires_grad_(needs in ("both", "input"))
    weight.requires_grad_(needs in ("both", "weight"))
    assert blocked_weight_gradient_applies(x, weight, kernel="blocked_gemm")
    assert torch.autograd.gradcheck(lambda a, b: conv3x3(a, b, kernel="blocked_gemm"), (x, weight))


def test_conv3x3_equals_conv2d_forward_and_backward_in_both_kernels() -> None:
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 6, 12, 10, generator=generator).contiguous(memory_format=CL)
    w0 = torch.randn(5, 6, 3, 3, generator=generator).contiguous(memory_format=CL)
    upstream = torch.randn(3, 5, 12, 10, generator=generator)
    x_ref, w_ref = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    expected = F.conv2d(x_ref, w_ref, padding=1)
    expected.backward(upstream)
    for kernel in ("blocked_gemm", "onednn"):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = conv3x3(x, w, kernel=kernel)
        out.backward(upstream)
        torch.testing.assert_close(out, expected)
        assert x.grad is not None and w.grad is not None
        torch.testing.assert_close(x.grad, x_ref.grad)
        torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-4, atol=1e-4)
        assert w.grad.is_contiguous(memory_format=CL)


def test_fast_path_applies_only_where_it_is_valid() -> None:
    x = torch.randn(1, 2, 4, 4).contiguous(memory_format=CL)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    blocked = "blocked_gemm"
    assert blocked_weight_gradient_applies(x, w, kernel=blocked)
    assert not blocked_weight_gradient_applies(x.contiguous(), w, kernel=blocked)  # NCHW: oneDNN is fine
    assert not blocked_weight_gradient_applies(x, w.detach(), kernel=blocked)  # no gradient wanted
    assert not blocked_weight_gradient_applies(x.half(), w.half(), kernel=blocked)
    assert not blocked_weight_gradient_applies(x, torch.randn(3, 2, 5, 5, requires_grad=True), kernel=blocked)
    with torch.no_grad():
        assert not blocked_weight_gradient_applies(x, w, kernel=blocked)
    assert not blocked_weight_gradient_applies(x, w, kernel="onednn")
    # The thread's override wins over the argument, in both directions.
    with using_cpu_weight_gradient("onednn"):
        assert not blocked_weight_gradient_applies(x, w, kernel=blocked)
    with using_cpu_weight_gradient("blocked_gemm"):
        assert blocked_weight_gradient_applies(x, w, kernel="onednn")


@pytest.mark.parametrize(
    ("capability", "shape", "c_out", "expected"),
    [
        # AVX2: operands of at least 24 MiB, or 256+ channels, take the blocked GEMMs.
        ("AVX2", (9, 32, 256, 256), 32, "blocked_gemm"),  # 9*65536*64*4 B = 144 MiB
        ("AVX2", (9, 128, 64, 64), 128, "blocked_gemm"),  # 36 MiB
        ("AVX2", (9, 256, 16, 16), 512, "blocked_gemm"),  # 6.8 MiB but 512 channels
        ("AVX2", (9, 32, 112, 96), 16, "onednn"),  # 17.7 MiB, 32 channels: the demo's largest layer
        ("AVX2", (9, 128, 14, 12), 128, "onednn"),
        # Elsewhere oneDNN's kernel was the faster or was never measured slower.
        ("AVX512", (9, 32, 256, 256), 32, "onednn"),
        ("DEFAULT", (9, 256, 16, 16), 512, "onednn"),
    ],
)
def test_auto_rule_by_processor_and_operand_size(
    monkeypatch: pytest.MonkeyPatch,
    capability: str,
    shape: tuple[int, int, int, int],
    c_out: int,
    expected: str,
) -> None:
    monkeypatch.setattr(cpu_convolution, "_cpu_capability", lambda: capability)
    x, w = torch.empty(shape), torch.empty(c_out, shape[1], 3, 3)
    assert auto_weight_gradient_kernel(x, w) == expected


@pytest.mark.parametrize(
    ("batch", "channels", "side"),
    [(9, 1, 256), (9, 32, 256), (9, 16, 112), (9, 128, 14), (2, 8, 32), (1, 2, 4)],
)
def test_auto_follows_its_rule_per_layer_shape(batch: int, channels: int, side: int) -> None:
    x = torch.randn(batch, channels, side, side).contiguous(memory_format=CL)
    w = torch.randn(4, channels, 3, 3, requires_grad=True)
    chosen = auto_weight_gradient_kernel(x, w)
    assert chosen in ("blocked_gemm", "onednn")
    assert blocked_weight_gradient_applies(x, w) == (chosen == "blocked_gemm")


def test_unet_gradients_agree_between_kernels() -> None:
    # The whole U-Net (WSConv2d routes every 3x3 conv through conv3x3) in channels_last.
    images = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(3)).contiguous(
        memory_format=CL
    )
    grads = {}
    for kernel in ("onednn", "blocked_gemm"):
        net = UNet2d(in_channels=1, out_channels=1, depth=3, base_width=8, seed=0, weight_gradient=kernel)
        net = net.to(memory_format=CL)
        ((net(images) - images) ** 2).mean().backward()
        grads[kernel] = {name: p.grad for name, p in net.named_parameters()}
    assert grads["onednn"].keys() == grads["blocked_gemm"].keys()
    for name, reference in grads["onednn"].items():
        torch.testing.assert_close(grads["blocked_gemm"][name], reference, rtol=1e-3, atol=1e-5, msg=name)


def test_wsconv2d_uses_conv3x3_only_for_bias_free_same_padding_3x3() -> None:
    assert WSConv2d(2, 3, kernel_size=3, padding=1, bias=False)._plain_3x3
    assert not WSConv2d(2, 3, kernel_size=3, padding=1, bias=True)._plain_3x3
    assert not WSConv2d(2, 3, kernel_size=3, padding=0, bias=False)._plain_3x3
    assert not WSConv2d(2, 3, kernel_size=3, padding=1, stride=2, bias=False)._plain_3x3
    assert not WSConv2d(2, 3, kernel_size=1, bias=False)._plain_3x3


def test_kernel_switch_validates_and_restores() -> None:
    assert cpu_weight_gradient() == "auto"
    message = "kernel='mkl' is invalid; expected 'auto', 'blocked_gemm' or 'onednn'"
    with pytest.raises(ValueError, match=message), using_cpu_weight_gradient("mkl"):  # type: ignore[arg-type]
        pass
    with pytest.raises(ValueError, match=message):
        UNet2d(in_channels=1, out_channels=1, depth=2, weight_gradient="mkl")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="boom"), using_cpu_weight_gradient("onednn"):
        assert cpu_weight_gradient() == "onednn"
        raise RuntimeError("boom")
    assert cpu_weight_gradient() == "auto"


def _kernels_used(net: torch.nn.Module) -> set[str]:
    # Which kernel each 3x3 layer's forward pass would pick for a channels_last training input.
    x = torch.zeros(1, 2, 4, 4).contiguous(memory_format=CL)
    w = torch.zeros(3, 2, 3, 3, requires_grad=True)
    return {
        "blocked_gemm" if blocked_weight_gradient_applies(x, w, kernel=m.weight_gradient) else "onednn"
        for m in net.modules()
        if isinstance(m, WSConv2d)
    }


def test_unet_passes_its_kernel_to_every_3x3_convolution() -> None:
    net = UNet2d(in_channels=1, out_channels=1, depth=3, base_width=4, seed=0, weight_gradient="blocked_gemm")
    convs = [m for m in net.modules() if isinstance(m, WSConv2d)]
    assert len(convs) == 2 * 3 + 2 * 2  # two per encoder level and two per decoder level
    assert {m.weight_gradient for m in convs} == {"blocked_gemm"} and net.weight_gradient == "blocked_gemm"
    assert _kernels_used(net) == {"blocked_gemm"}
    assert _kernels_used(net.set_weight_gradient("onednn")) == {"onednn"}
    assert "weight_gradient='onednn'" in repr(convs[0])
    assert {
        m.weight_gradient
        for m in UNet2d(in_channels=1, out_channels=1, depth=2).modules()
        if isinstance(m, WSConv2d)
    } == {"auto"}


def test_an_override_in_one_thread_never_reaches_another() -> None:
    # The finding of issue 17: a process-wide setting made one thread's choice every model's.
    net = UNet2d(in_channels=1, out_channels=1, depth=2, base_width=4, seed=0, weight_gradient="blocked_gemm")
    inside, entered, release = {}, threading.Event(), threading.Event()

    def other_thread() -> None:
        with using_cpu_weight_gradient("onednn"):
            inside["other"] = (cpu_weight_gradient(), _kernels_used(net))
            entered.set()
            release.wait(timeout=30)

    worker = threading.Thread(target=other_thread)
    worker.start()
    try:
        assert entered.wait(timeout=30)
        assert cpu_weight_gradient() == "auto"
        assert _kernels_used(net) == {"blocked_gemm"}  # this thread: the layer's own argument
    finally:
        release.set()
        worker.join()
    assert inside["other"] == ("onednn", {"onednn"})


def test_set_cpu_weight_gradient_is_deprecated_and_per_thread() -> None:
    with pytest.warns(DeprecationWarning, match="weight_gradient="):
        set_cpu_weight_gradient("onednn")
    try:
        assert cpu_weight_gradient() == "onednn"
        seen = []
        worker = threading.Thread(target=lambda: seen.append(cpu_weight_gradient()))
        worker.start()
        worker.join()
        assert seen == ["auto"]
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            set_cpu_weight_gradient("auto")
    assert cpu_weight_gradient() == "auto"


def test_kernel_choice_leaves_cpu_results_bit_identical_for_the_default() -> None:
    # "auto" as an argument and no argument at all take the same path, so the numbers are the same.
    images = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(4)).contiguous(
        memory_format=CL
    )
    grads = []
    for params in ({}, {"weight_gradient": "auto"}):
        net = UNet2d(in_channels=1, out_channels=1, depth=2, base_width=4, seed=0, **params).to(
            memory_format=CL
        )
        net(images).square().sum().backward()
        grads.append([p.grad.clone() for p in net.parameters() if p.grad is not None])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


@pytest.mark.parametrize(
    ("grad_shape", "x_shape", "block_rows", "message"),
    [
        ((1, 2, 4, 4), (1, 3, 4, 5), 64, r"equal N, H, W; found \(1, 2, 4, 4\) and \(1, 3, 4, 5\)"),
        ((2, 2, 4, 4), (1, 3, 4, 4), 64, "equal N, H, W"),
        ((2, 4, 4), (2, 3, 4, 4), 64, "must be"),
        ((1, 2, 4, 4), (1, 3, 4, 4), 0, "block_rows=0 is invalid; expected an integer >= 1"),
    ],
)
def test_weight_gradient_rejects_bad_shapes(
    grad_shape: tuple[int, ...], x_shape: tuple[int, ...], block_rows: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        conv3x3_weight_gradient(torch.zeros(grad_shape), torch.zeros(x_shape), block_rows=block_rows)


# --- Higher-order and torch.func differentiation (the blocked GEMMs are first-order only) ----------

CAPABILITIES = ["AVX2", "AVX512"]


def _fake_capability(monkeypatch: pytest.MonkeyPatch, capability: str) -> None:
    # "auto" picks the blocked GEMMs on AVX2 only: the same code must work on either processor.
    monkeypatch.setattr(cpu_convolution, "_cpu_capability", lambda: capability)


def _wide_conv_operands(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    # 256 output channels: "auto" takes the blocked GEMMs for it on AVX2 (the paper's deep layers).
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(2, 1, 3, 2, generator=generator, dtype=dtype).contiguous(memory_format=CL)
    weight = torch.randn(256, 1, 3, 3, generator=generator, dtype=dtype).contiguous(memory_format=CL)
    return x.requires_grad_(), weight.requires_grad_()


def _takes_blocked_gemms(kernel: str, capability: str) -> bool:
    return kernel == "blocked_gemm" or (kernel == "auto" and capability == "AVX2")


@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("kernel", cpu_convolution.KERNELS)
def test_conv3x3_double_backward_passes_gradgradcheck(
    monkeypatch: pytest.MonkeyPatch, kernel: cpu_convolution.WeightGradientKernel, capability: str
) -> None:
    # A gradient penalty differentiates the backward pass: finite differences of the backward
    # against its analytical derivative, in float64.
    _fake_capability(monkeypatch, capability)
    x, weight = _wide_conv_operands()
    assert blocked_weight_gradient_applies(x, weight, kernel=kernel) == _takes_blocked_gemms(
        kernel, capability
    )
    assert torch.autograd.gradgradcheck(
        lambda a, b: conv3x3(a, b, kernel=kernel), (x, weight), fast_mode=True
    )


@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("kernel", cpu_convolution.KERNELS)
def test_conv3x3_gradient_penalty_equals_conv2d(
    monkeypatch: pytest.MonkeyPatch, kernel: cpu_convolution.WeightGradientKernel, capability: str
) -> None:
    _fake_capability(monkeypatch, capability)

    def penalty_gradients(conv: Any) -> tuple[torch.Tensor, ...]:
        x, weight = _wide_conv_operands()
        (grad_x,) = torch.autograd.grad(conv(x, weight).tanh().sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(), (x, weight))

    expected = penalty_gradients(lambda a, b: F.conv2d(a, b, padding=1))
    got = penalty_gradients(lambda a, b: conv3x3(a, b, kernel=kernel))
    for found, reference in zip(got, expected, strict=True):
        torch.testing.assert_close(found, reference)


@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("kernel", cpu_convolution.KERNELS)
def test_conv3x3_under_torch_func_and_forward_ad_equals_conv2d(
    monkeypatch: pytest.MonkeyPatch, kernel: cpu_convolution.WeightGradientKernel, capability: str
) -> None:
    _fake_capability(monkeypatch, capability)
    x, weight = (t.detach() for t in _wide_conv_operands())
    tangent = torch.randn(x.shape, generator=torch.Generator().manual_seed(8), dtype=x.dtype)
    # The convolution is linear in x, so its derivative along a tangent is the tangent's convolution.
    expected = F.conv2d(tangent, weight, padding=1)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, tangent)
        found = torch.autograd.forward_ad.unpack_dual(conv3x3(dual, weight.requires_grad_(), kernel=kernel))
    torch.testing.assert_close(found.tangent, expected)
    _, jvp = torch.func.jvp(lambda a: conv3x3(a, weight, kernel=kernel), (x,), (tangent,))
    torch.testing.assert_close(jvp, expected)
    # A batched backward (is_grads_batched runs the backward pass under vmap), row by row.
    x.requires_grad_()
    out = conv3x3(x, weight, kernel=kernel)
    upstream = torch.randn((3, *out.shape), generator=torch.Generator().manual_seed(9), dtype=x.dtype)
    batched = torch.autograd.grad(out, (x, weight), upstream, retain_graph=True, is_grads_batched=True)
    for row in range(3):
        single = torch.autograd.grad(F.conv2d(x, weight, padding=1), (x, weight), upstream[row])
        for found_row, reference in zip(batched, single, strict=True):
            torch.testing.assert_close(found_row[row], reference)


def _per_sample_unet(kernel: cpu_convolution.WeightGradientKernel, dtype: torch.dtype) -> UNet2d:
    # Level widths 16-256: the 256-channel level is the one "auto" hands to the GEMMs on AVX2.
    net = UNet2d(in_channels=1, out_channels=1, depth=5, base_width=16, seed=0, weight_gradient=kernel)
    return net.to(dtype).to(memory_format=CL)


def _blocked_layers_in_training(net: UNet2d, image: torch.Tensor) -> int:
    """How many 3x3 convolutions an ordinary (first-order) training step sends to the blocked GEMMs."""
    calls = []
    original = cpu_convolution._Conv3x3ChannelsLast.apply
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            cpu_convolution._Conv3x3ChannelsLast, "apply", lambda *args: calls.append(1) or original(*args)
        )
        net(image.clone().requires_grad_())
    return len(calls)


def _expected_blocked_layers(kernel: str, capability: str) -> int:
    # 18 3x3 convolutions (two per level, five encoder and four decoder levels). "auto" on AVX2
    # takes those with 256 channels on a side: the bottom level's two (128->256, 256->256) and the
    # first decoder level's fused 256->128; every operand here is far below 24 MiB.
    if kernel == "blocked_gemm":
        return 18
    return 3 if kernel == "auto" and capability == "AVX2" else 0


@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("kernel", cpu_convolution.KERNELS)
def test_unet_per_sample_gradients_with_vmap_equal_a_loop(
    monkeypatch: pytest.MonkeyPatch, kernel: cpu_convolution.WeightGradientKernel, capability: str
) -> None:
    # Per-sample gradients (e.g. for differential privacy): vmap(grad(...)) against one backward
    # pass per image through plain conv2d (the "onednn" override).
    _fake_capability(monkeypatch, capability)
    net = _per_sample_unet(kernel, torch.float32)
    # 16x16 makes the 256-channel bottom level 1x1, the only size whose per-sample slices vmap
    # reports as channels_last (so the only one that reached the GEMMs under vmap). float32:
    # PyTorch's own float64 convolution fails under vmap at 1x1 ("grad_weight needs to be
    # contiguous"), with or without the GEMMs.
    images = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(10))
    images = images.contiguous(memory_format=CL)
    assert _blocked_layers_in_training(net, images[:1]) == _expected_blocked_layers(kernel, capability)
    params = {name: p.detach() for name, p in net.named_parameters()}

    def loss(weights: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(net, weights, (image.unsqueeze(0),)).square().sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, images)
    with using_cpu_weight_gradient("onednn"):
        for index in range(len(images)):
            net.zero_grad()
            net(images[index : index + 1]).square().sum().backward()
            for name, p in net.named_parameters():
                assert p.grad is not None
                # float32 sums in another order: tolerances scaled to each gradient's size.
                scale = float(p.grad.abs().max())
                torch.testing.assert_close(
                    per_sample[name][index], p.grad, rtol=1e-4, atol=1e-5 * scale, msg=name
                )


@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("kernel", cpu_convolution.KERNELS)
def test_unet_gradient_penalty_equals_plain_conv2d(
    monkeypatch: pytest.MonkeyPatch, kernel: cpu_convolution.WeightGradientKernel, capability: str
) -> None:
    # Double backward through the whole network (the audit's failure with the default "auto" on AVX2).
    _fake_capability(monkeypatch, capability)
    images = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    grads = {}
    for name, override in (("found", None), ("expected", "onednn")):
        net = _per_sample_unet(kernel, torch.float64)
        x = images.clone().contiguous(memory_format=CL).requires_grad_()
        if override is None:
            assert _blocked_layers_in_training(net, x.detach()) == _expected_blocked_layers(
                kernel, capability
            )
        with using_cpu_weight_gradient(override) if override else contextlib.nullcontext():
            (grad_x,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
            grad_x.square().sum().backward()
        grads[name] = [p.grad for p in net.parameters()]
    for found, reference in zip(grads["found"], grads["expected"], strict=True):
        # The head's bias does not move the input gradient, so no penalty gradient reaches it.
        assert (found is None) == (reference is None)
        if reference is not None:
            torch.testing.assert_close(found, reference)


def test_first_order_backward_still_uses_the_blocked_gemms() -> None:
    # Ordinary training keeps the benchmarked path bit for bit: oneDNN's input gradient and the
    # blocked weight gradient, exactly as computed directly.
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(2, 6, 9, 7, generator=generator).contiguous(memory_format=CL).requires_grad_()
    weight = torch.randn(5, 6, 3, 3, generator=generator).contiguous(memory_format=CL).requires_grad_()
    upstream = torch.randn(2, 5, 9, 7, generator=generator).contiguous(memory_format=CL)
    conv3x3(x, weight, kernel="blocked_gemm").backward(upstream)
    expected_input = torch.ops.aten.convolution_backward(
        upstream,
        x.detach(),
        weight.detach(),
        None,
        [1, 1],
        [1, 1],
        [1, 1],
        False,
        [0, 0],
        1,
        [True, False, False],
    )[0]
    assert x.grad is not None and weight.grad is not None
    assert torch.equal(x.grad, expected_input)
    assert torch.equal(weight.grad, conv3x3_weight_gradient(upstream, x.detach()))
