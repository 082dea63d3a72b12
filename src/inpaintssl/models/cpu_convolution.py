"""The U-Net's 3x3 convolution for channels_last training on the CPU, with a blocked-GEMM weight gradient.

Why it exists: on AVX2 processors oneDNN's channels_last (NHWC) kernel for the *weight* gradient of
a 3x3 convolution is slow: over the U-Net's eighteen 3x3 convolutions on the project's 2-core EPYC
it took 2.7x the time of their forward passes and 1.9x that of the NCHW kernel
(``benchmarks/bench_conv_layers.py``, ``benchmarks/README.md``), while its NHWC forward pass and
input gradient are the fastest available. :func:`conv3x3` therefore keeps oneDNN for the forward
pass and the input gradient and computes the weight gradient itself:

.. math::

    \\frac{\\partial L}{\\partial W_{o,c,i,j}} = \\sum_{n,h,w} G_{n,o,h,w}\\,X_{n,c,h+i-1,w+j-1},

block by block of image rows: the nine shifted copies of a block of ``X`` (an im2col matrix of
``rows x 9C``, small enough to stay in cache) are built with one strided copy, the taps that fall
outside the image are zeroed, and one GEMM ``im2col^T @ G`` accumulates the block's share. ``G``
and ``X`` are read from memory once, the GEMM has ``9C`` rows, and nothing is padded. Over those
eighteen convolutions it is 2.0x faster than oneDNN's NHWC kernel and a little faster than its
NCHW kernel.

The path is used by :class:`inpaintssl.models.layers.WSConv2d` only where it applies (CPU,
channels_last, float32/float64, gradients wanted, no CPU autocast, no ``torch.func`` transform or
forward-mode AD); everywhere else the convolution is :func:`torch.nn.functional.conv2d`. A backward
pass that builds a graph of its own (``create_graph=True``, e.g. a gradient penalty) or runs under
``vmap`` (``is_grads_batched=True``) gets both gradients from PyTorch's differentiable convolution
backward instead of the blocked GEMMs, so higher-order gradients work on every processor.

Which kernel computes the weight gradient is an argument: ``conv3x3(..., kernel=...)``, passed
down from ``UNet2d(weight_gradient=...)`` through every ``WSConv2d`` (training passes
``run.cpu_weight_gradient``). For comparisons, :func:`using_cpu_weight_gradient` overrides it for
the current thread only, inside a ``with`` block; no setting is shared between threads or left
behind. Paper sec. 2.3 fixes the network, not the kernels: both paths compute the same gradient
(to float32 rounding; the summation order differs).

Example:
    >>> import torch
    >>> x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    >>> w = torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    >>> conv3x3(x, w).sum().backward()
    >>> reference = torch.nn.grad.conv2d_weight(x, w.shape, torch.ones(2, 4, 8, 8), padding=1)
    >>> torch.allclose(w.grad, reference, atol=1e-4)
    True
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import warnings
from collections.abc import Iterator
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch.autograd import forward_ad

from inpaintssl.models.autocast_state import autocast_enabled

__all__ = [
    "KERNELS",
    "WeightGradientKernel",
    "auto_weight_gradient_kernel",
    "blocked_weight_gradient_applies",
    "check_weight_gradient_kernel",
    "conv3x3",
    "conv3x3_weight_gradient",
    "cpu_weight_gradient",
    "set_cpu_weight_gradient",
    "using_cpu_weight_gradient",
]

WeightGradientKernel = Literal["auto", "blocked_gemm", "onednn"]
KERNELS: tuple[WeightGradientKernel, ...] = get_args(WeightGradientKernel)

# Pixels per im2col block: 2,048 x 9C floats (2.4 MB at C = 32) stays in cache for the wide,
# shallow layers that cost the most, and keeps the Python loop to a few hundred blocks per
# 256x256 layer. A 4 MiB cap for the deep layers changed nothing measurable (benchmarks/README.md).
_BLOCK_ROWS = 2048


class _Override(threading.local):
    """The current thread's kernel override (``None``: each layer's own ``weight_gradient``).

    Thread-local so that two threads training two models never see each other's choice.
    """

    kernel: WeightGradientKernel | None = None


_override = _Override()

# "auto" uses the blocked GEMMs only where they were measured faster (benchmarks/README.md,
# bench_conv_layers.py): on AVX2 processors (PyTorch's CPU capability "AVX2"), for a layer whose
# input and output gradient together take at least _AUTO_MIN_BYTES or that has at least
# _AUTO_MIN_CHANNELS channels on either side. On the project's 2-core AVX2 EPYC every layer of
# the 256x256 width-32 U-Net was 1.3-3.2x faster with them (the smallest: 28 MB at 128 channels,
# 7 MB at 256-512 channels), while a whole training step of the 112x96 width-16 demo U-Net (18.6
# MB and 32 channels at most) was 1.13x slower. On a 2-core AVX-512 Xeon oneDNN's NHWC kernel was
# faster at both sizes (749 against 1,072 ms over the 256x256 network's eighteen convolutions).
_AUTO_MIN_BYTES = 24 * 2**20
_AUTO_MIN_CHANNELS = 256


@functools.cache
def _cpu_capability() -> str:
    return str(torch.backends.cpu.get_cpu_capability())


# PyTorch has no public query for "a torch.func transform is running" or "this tensor is batched by
# the legacy vmap"; these private ones are what torch.autograd.Function.apply and FakeTensor consult
# (the first since torch 2.0, the second since FakeTensor learnt legacy batching, before 2.3.1).
# The getattr keeps a torch that renamed them importable: such a torch would refuse the custom
# function under a transform with its own error, as every torch did before these checks existed.
_functorch_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def _has_the_batched_key(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` carries the legacy ``Batched`` dispatch key, read from its key set's name.

    PyTorch 2.3 has no query for it (``is_legacy_batchedtensor`` came later) and no
    ``DispatchKey.Batched`` member, but prints the key set, e.g. ``DispatchKeySet(..., Batched)``.
    """
    return "Batched" in re.findall(r"\w+", str(torch._C._dispatch_keys(tensor)))


_is_legacy_batched = getattr(torch._C._functorch, "is_legacy_batchedtensor", _has_the_batched_key)


def _batched_backward(grad_output: torch.Tensor) -> bool:
    """Whether a backward pass runs under vmap: functorch's, or the older one of ``is_grads_batched=True``.

    ``torch.autograd.grad(..., is_grads_batched=True)`` (and ``torch.autograd.functional.jacobian``
    with ``vectorize=True``) vmaps the backward pass with PyTorch's legacy batching, whose tensors
    carry the ``Batched`` dispatch key and which the functorch query does not see.
    """
    return bool(_functorch_transforms_active() or _is_legacy_batched(grad_output))


def _transformed(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, jvp, ...) or forward-mode AD sees the convolution.

    The blocked GEMMs have neither a batching rule nor a forward derivative, so such a convolution
    must stay :func:`torch.nn.functional.conv2d`.
    """
    if _functorch_transforms_active():
        return True
    # Outside a dual level unpack_dual returns at once without touching the tensor.
    unpack = forward_ad.unpack_dual
    return unpack(x).tangent is not None or unpack(weight).tangent is not None  # type: ignore[no-untyped-call]


def auto_weight_gradient_kernel(x: torch.Tensor, weight: torch.Tensor) -> Literal["blocked_gemm", "onednn"]:
    """The kernel ``"auto"`` uses for one convolution, from the processor and the layer's shapes.

    Example:
        >>> import torch
        >>> big = auto_weight_gradient_kernel(torch.zeros(9, 32, 256, 256), torch.zeros(32, 32, 3, 3))
        >>> big == ("blocked_gemm" if torch.backends.cpu.get_cpu_capability() == "AVX2" else "onednn")
        True
        >>> auto_weight_gradient_kernel(torch.zeros(9, 16, 112, 96), torch.zeros(16, 16, 3, 3))
        'onednn'
    """
    if _cpu_capability() != "AVX2":
        return "onednn"
    c_out, c_in = int(weight.shape[0]), int(weight.shape[1])
    pixels = int(x.shape[0]) * int(x.shape[-2]) * int(x.shape[-1])
    operand_bytes = pixels * (c_in + c_out) * x.element_size()
    if operand_bytes >= _AUTO_MIN_BYTES or max(c_in, c_out) >= _AUTO_MIN_CHANNELS:
        return "blocked_gemm"
    return "onednn"


def check_weight_gradient_kernel(kernel: object) -> WeightGradientKernel:
    """Return ``kernel`` if it names a weight-gradient kernel.

    Raises:
        ValueError: If ``kernel`` is not ``"auto"``, ``"blocked_gemm"`` or ``"onednn"``.

    Example:
        >>> check_weight_gradient_kernel("onednn")
        'onednn'
    """
    for known in KERNELS:
        if kernel == known:
            return known
    raise ValueError(f"kernel={kernel!r} is invalid; expected 'auto', 'blocked_gemm' or 'onednn'")


def cpu_weight_gradient() -> WeightGradientKernel:
    """The current thread's override (see :func:`using_cpu_weight_gradient`); ``"auto"`` when none.

    Example:
        >>> cpu_weight_gradient()
        'auto'
    """
    return _override.kernel or "auto"


@contextlib.contextmanager
def using_cpu_weight_gradient(kernel: WeightGradientKernel) -> Iterator[None]:
    """Make every 3x3 convolution of this thread use ``kernel`` inside a ``with`` block.

    The override wins over the layers' own ``weight_gradient`` argument, applies to the current
    thread only, and is restored on exit. Prefer the argument (``UNet2d(weight_gradient=...)``);
    this is for comparing kernels on a model built elsewhere.

    Args:
        kernel: ``"auto"``: per layer, whichever of the two measured faster for its shape
            (:func:`auto_weight_gradient_kernel`); ``"blocked_gemm"``:
            :func:`conv3x3_weight_gradient` everywhere; ``"onednn"``: PyTorch's own convolution
            backward everywhere (use it to compare, or on processors where oneDNN's NHWC
            weight-gradient kernel is fast, e.g. with AVX-512).

    Raises:
        ValueError: If ``kernel`` is not one of the three names.

    Example:
        >>> with using_cpu_weight_gradient("onednn"):
        ...     cpu_weight_gradient()
        'onednn'
        >>> cpu_weight_gradient()
        'auto'
    """
    checked = check_weight_gradient_kernel(kernel)
    previous = _override.kernel
    _override.kernel = checked
    try:
        yield
    finally:
        _override.kernel = previous


def set_cpu_weight_gradient(kernel: WeightGradientKernel) -> None:
    """Deprecated: override the kernel for the rest of the current thread's life.

    Use ``UNet2d(weight_gradient=...)`` or, to compare kernels, :func:`using_cpu_weight_gradient`.
    The setting is per thread (it used to be process-wide); ``"auto"`` clears it.

    Raises:
        ValueError: If ``kernel`` is not one of the three names.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     set_cpu_weight_gradient("onednn"); print(cpu_weight_gradient())
        ...     set_cpu_weight_gradient("auto")
        onednn
    """
    warnings.warn(
        "set_cpu_weight_gradient is deprecated: pass weight_gradient= to UNet2d/WSConv2d, "
        "or use the thread-local `with using_cpu_weight_gradient(...)`",
        DeprecationWarning,
        stacklevel=2,
    )
    checked = check_weight_gradient_kernel(kernel)
    # "auto" clears the override, so the layers' own setting applies again.
    _override.kernel = None if checked == "auto" else checked


def blocked_weight_gradient_applies(
    x: torch.Tensor, weight: torch.Tensor, *, kernel: WeightGradientKernel = "auto"
) -> bool:
    """Whether :func:`conv3x3` would compute this convolution's weight gradient itself.

    True for 4-D CPU float32/float64 inputs in channels_last with a ``(C_out, C_in, 3, 3)`` kernel,
    when a gradient is wanted, CPU autocast is off, no ``torch.func`` transform or forward-mode AD
    sees the tensors and the ``"blocked_gemm"`` kernel is selected (or ``"auto"`` picks it for this
    shape). Under ``torch.autocast("cpu")`` the convolution runs in bfloat16/float16 and its
    gradient arrives in that dtype, which the float32 GEMMs cannot take: autocast's own convolution
    serves it. Under a transform (``vmap``, ``grad``, ``jvp``, ...) or with a dual tensor the
    GEMMs, which have no batching rule or forward derivative, give way to ``conv2d`` too.
    ``kernel`` is the layer's choice; the thread's override (:func:`using_cpu_weight_gradient`),
    when set, replaces it.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 2, 4, 4).contiguous(memory_format=torch.channels_last)
        >>> w = torch.zeros(3, 2, 3, 3, requires_grad=True)
        >>> blocked_weight_gradient_applies(x, w, kernel="blocked_gemm")
        True
        >>> blocked_weight_gradient_applies(x, w, kernel="onednn")
        False
    """
    kernel = _override.kernel or kernel
    return (
        kernel != "onednn"
        and torch.is_grad_enabled()
        and (x.requires_grad or weight.requires_grad)
        and x.device.type == "cpu"
        and not autocast_enabled("cpu")
        and weight.device == x.device
        and x.dtype in (torch.float32, torch.float64)
        and weight.dtype == x.dtype
        and x.ndim == 4
        and weight.shape[1:] == (x.shape[1], 3, 3)
        and x.is_contiguous(memory_format=torch.channels_last)
        and (kernel == "blocked_gemm" or auto_weight_gradient_kernel(x, weight) == "blocked_gemm")
        and not _transformed(x, weight)
    )


def conv3x3(x: torch.Tensor, weight: torch.Tensor, *, kernel: WeightGradientKernel = "auto") -> torch.Tensor:
    """3x3 convolution, stride 1, padding 1, no bias; blocked-GEMM weight gradient where it applies.

    Args:
        x: Input ``(N, C_in, H, W)``.
        weight: Kernel ``(C_out, C_in, 3, 3)``.
        kernel: How a channels_last CPU backward pass computes the weight gradient
            (see :func:`using_cpu_weight_gradient` for the names and for the thread's override).

    Returns:
        ``(N, C_out, H, W)``, equal to ``F.conv2d(x, weight, padding=1)``.

    Example:
        >>> import torch
        >>> conv3x3(torch.ones(1, 2, 4, 4), torch.ones(3, 2, 3, 3))[0, 0]
        tensor([[ 8., 12., 12.,  8.],
                [12., 18., 18., 12.],
                [12., 18., 18., 12.],
                [ 8., 12., 12.,  8.]])
    """
    # Under torch.compile the compiler owns the backward pass (``run.compile``); it gets the plain
    # convolution to trace rather than an opaque autograd function.
    if not torch.compiler.is_compiling() and blocked_weight_gradient_applies(x, weight, kernel=kernel):
        out: torch.Tensor = _Conv3x3ChannelsLast.apply(x, weight)  # type: ignore[no-untyped-call]
        return out
    return F.conv2d(x, weight, None, 1, 1)


class _Conv3x3ChannelsLast(torch.autograd.Function):
    """oneDNN forward and input gradient; :func:`conv3x3_weight_gradient` for the kernel."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, None, 1, 1)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        if torch.is_grad_enabled() or _batched_backward(grad_output):
            # create_graph=True (gradient penalties, Hessian-vector products) needs gradients that
            # are differentiable in turn, and a batched backward (is_grads_batched=True runs it under
            # vmap) needs ops with batching rules: the in-place im2col GEMMs are neither, PyTorch's
            # convolution backward is both. Ordinary backward passes run with grad mode off and
            # keep the blocked GEMMs below.
            grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
                grad_output,
                x,
                weight,
                None,
                [1, 1],
                [1, 1],
                [1, 1],
                False,
                [0, 0],
                1,
                [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False],
            )
            return grad_input, grad_weight
        grad_output = grad_output.contiguous(memory_format=torch.channels_last)
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.aten.convolution_backward(
                grad_output, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            # Same layout as the parameter, so accumulating into .grad copies nothing.
            channels_last = weight.is_contiguous(memory_format=torch.channels_last)
            layout = torch.channels_last if channels_last else torch.contiguous_format
            grad_weight = conv3x3_weight_gradient(grad_output, x).contiguous(memory_format=layout)
        return grad_input, grad_weight


def conv3x3_weight_gradient(
    grad_output: torch.Tensor, x: torch.Tensor, *, block_rows: int = _BLOCK_ROWS
) -> torch.Tensor:
    """Weight gradient of a 3x3, stride-1, padding-1 convolution by blocked im2col GEMMs.

    Equal (to rounding) to ``torch.nn.grad.conv2d_weight(x, (C_out, C_in, 3, 3), grad_output,
    padding=1)``. Fastest for channels_last inputs, which it reads without copying.

    Args:
        grad_output: Gradient of the convolution's output, ``(N, C_out, H, W)``.
        x: The convolution's input, ``(N, C_in, H, W)``, on the same device and dtype.
        block_rows: Pixels per im2col block (rounded to whole image rows or whole images).

    Returns:
        ``(C_out, C_in, 3, 3)``.

    Raises:
        ValueError: If the shapes do not match or ``block_rows < 1``.

    Example:
        >>> import torch
        >>> x, g = torch.randn(2, 3, 5, 6), torch.randn(2, 4, 5, 6)
        >>> reference = torch.nn.grad.conv2d_weight(x, (4, 3, 3, 3), g, padding=1)
        >>> torch.allclose(conv3x3_weight_gradient(g, x), reference, atol=1e-5)
        True
    """
    if (
        x.ndim != 4
        or grad_output.ndim != 4
        or grad_output.shape[0] != x.shape[0]
        or grad_output.shape[2:] != x.shape[2:]
    ):
        raise ValueError(
            "grad_output and x must be (N, C_out, H, W) and (N, C_in, H, W) with equal N, H, W; "
            f"found {tuple(grad_output.shape)} and {tuple(x.shape)}"
        )
    if block_rows < 1:
        raise ValueError(f"block_rows={block_rows} is invalid; expected an integer >= 1")
    batch, channels, height, width = x.shape
    out_channels = grad_output.shape[1]
    image = height * width
    total = batch * image
    # (pixel, channel) matrices; views when the tensors are channels_last. The im2col below reads
    # ``pixels`` through its storage, so it must be row-major (reshape may return a strided view).
    pixels = x.permute(0, 2, 3, 1).reshape(total, channels).contiguous()
    grads = grad_output.permute(0, 2, 3, 1).reshape(total, out_channels)
    if image <= block_rows:
        images_per_block, rows_per_block = max(1, block_rows // image), height
    else:
        images_per_block, rows_per_block = 1, max(1, block_rows // width)
    capacity = images_per_block * rows_per_block * width
    halo = width + 1
    columns = x.new_empty((capacity, 3, 3, channels))
    edge_window = x.new_zeros((capacity + 2 * halo, channels))
    result = x.new_zeros((3, 3, channels, out_channels))
    flat_result = result.view(9 * channels, out_channels)
    for first_image in range(0, batch, images_per_block):
        images = min(images_per_block, batch - first_image)
        for top in range(0, height, rows_per_block):
            rows = min(rows_per_block, height - top)
            start = (first_image * height + top) * width
            count = images * rows * width
            low, high = start - halo, start + count + halo
            if low >= 0 and high <= total:
                window = pixels[low:high]
            else:
                # First or last block of the batch: its halo lies outside the tensor.
                inside = slice(max(low, 0), min(high, total))
                edge_window.zero_()
                edge_window[inside.start - low : inside.stop - low] = pixels[inside]
                window = edge_window
            block = columns[:count]
            # Row r, tap (i, j) reads pixel r + (i - 1) * width + (j - 1) of the window's centre.
            taps = (channels, width * channels, channels, 1)
            block.copy_(window.as_strided((count, 3, 3, channels), taps, window.storage_offset()))
            # Taps beyond the left/right edge wrapped to the neighbouring row, and taps beyond
            # the top/bottom edge to the neighbouring image: they are the zero padding.
            grid = block.view(images, rows, width, 3, 3, channels)
            grid[:, :, 0, :, 0].zero_()
            grid[:, :, width - 1, :, 2].zero_()
            if top == 0:
                grid[:, 0, :, 0].zero_()
            if top + rows == height:
                grid[:, rows - 1, :, 2].zero_()
            flat_result.addmm_(block.view(count, 9 * channels).t(), grads[start : start + count])
    return result.permute(3, 2, 0, 1)
