"""Building blocks of the U-Net: weight-standardised convolution and the conv-norm-ReLU block.

Paper sec. 2.3 uses Group Normalization (Wu & He 2018) and weight standardization (Qiao et al.
2019) so that training is stable at the small batch size of 9. Normalisation is the standard
:class:`torch.nn.GroupNorm`, which keeps no running statistics (the authors' Keras layer kept some;
DESIGN.md sec. 2), in :class:`AutocastGroupNorm`, which can also normalise in autocast's dtype.

Example:
    >>> import torch
    >>> block = DoubleConv(1, 8, groups=16)
    >>> block(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 8, 16, 16])
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from inpaintssl.models.autocast_state import LOW_PRECISION_DTYPES, autocast_enabled
from inpaintssl.models.cpu_convolution import WeightGradientKernel, check_weight_gradient_kernel, conv3x3

__all__ = [
    "AutocastGroupNorm",
    "ConvNormAct",
    "DoubleConv",
    "NormPrecision",
    "WSConv2d",
    "check_norm_precision",
    "group_count",
]

NormPrecision = Literal["float32", "autocast"]
"""Where :class:`AutocastGroupNorm` normalises under autocast: ``"float32"`` (autocast's own
choice on CUDA) or ``"autocast"`` (the input's bf16 or fp16, statistics still accumulated in
float32)."""


def check_norm_precision(value: object) -> NormPrecision:
    """Return ``value`` as a :data:`NormPrecision`, or refuse it naming the choices.

    Example:
        >>> check_norm_precision("autocast")
        'autocast'
    """
    choices = get_args(NormPrecision)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"norm_precision={value!r} is invalid; expected one of {', '.join(map(repr, choices))}"
        )
    return value  # type: ignore[return-value]


class AutocastGroupNorm(nn.GroupNorm):
    """:class:`torch.nn.GroupNorm` that can normalise a bf16 or fp16 input in its own dtype under autocast.

    Under CUDA autocast PyTorch runs ``group_norm`` in float32: every normalisation casts the
    convolution's bf16 output up, writes a float32 output, and the next convolution casts it down
    again. On an H200 (512x512, bf16, eager) those casts took 16 % of a U-Net training step's GPU
    time and GroupNorm itself 24 % (benchmarks/README.md). With ``precision="autocast"`` the layer
    normalises the input in its own dtype instead (PyTorch's kernels still accumulate the
    statistics in float32, but keep them for the backward pass in the input's dtype; the affine
    weights are cast to that dtype, their gradients flow back in float32), so no cast is made and
    half the bytes move: at 512x512 the paper's U-Net keeps 344 MiB per image for its backward pass
    instead of 680 (``benchmarks/bench_saved_activations.py``). Opt-in: not yet timed on a card.

    With ``precision="float32"`` (the default), outside autocast, or for a float32 input, it is
    :class:`torch.nn.GroupNorm` exactly. The state dict is GroupNorm's.

    Args:
        num_groups: Groups, as :class:`torch.nn.GroupNorm`.
        num_channels: Channels, as :class:`torch.nn.GroupNorm`.
        precision: ``"float32"`` or ``"autocast"`` (:data:`NormPrecision`); change it later with the
            attribute of that name.

    Example:
        >>> import torch
        >>> norm = AutocastGroupNorm(2, 4, precision="autocast")
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     norm(torch.randn(1, 4, 3, 3, dtype=torch.bfloat16)).dtype
        torch.bfloat16
    """

    def __init__(self, num_groups: int, num_channels: int, *, precision: NormPrecision = "float32") -> None:
        super().__init__(num_groups, num_channels)
        self.precision: NormPrecision = check_norm_precision(precision)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise ``input`` ``(N, C, ...)`` per group (see the class docstring for the dtype)."""
        if (
            self.precision == "autocast"
            and input.dtype in LOW_PRECISION_DTYPES
            and autocast_enabled(input.device.type)
        ):
            weight = None if self.weight is None else self.weight.to(input.dtype)
            bias = None if self.bias is None else self.bias.to(input.dtype)
            with torch.autocast(input.device.type, enabled=False):
                return F.group_norm(input, self.num_groups, weight, bias, self.eps)
        out: torch.Tensor = super().forward(input)
        return out

    def extra_repr(self) -> str:
        """GroupNorm's description, plus a precision that is not the default."""
        base: str = super().extra_repr()
        return base if self.precision == "float32" else f"{base}, precision={self.precision!r}"


def group_count(channels: int, groups: int) -> int:
    """Largest divisor of ``channels`` that is at most ``groups``.

    :class:`torch.nn.GroupNorm` needs ``channels % num_groups == 0``; narrow layers (e.g. a base
    width of 8 with the paper's 16 groups) therefore get fewer, evenly sized groups.

    Args:
        channels: Number of feature channels, ``>= 1``.
        groups: Requested number of groups, ``>= 1``.

    Raises:
        ValueError: If either argument is smaller than 1.

    Example:
        >>> group_count(32, 16), group_count(8, 16), group_count(24, 16)
        (16, 8, 12)
    """
    if channels < 1:
        raise ValueError(f"channels={channels} is invalid; expected an integer >= 1")
    if groups < 1:
        raise ValueError(f"groups={groups} is invalid; expected an integer >= 1")
    return max(g for g in range(1, min(channels, groups) + 1) if channels % g == 0)


class WSConv2d(nn.Conv2d):
    """2D convolution whose kernel is standardised per output channel on every forward pass.

    Weight standardization (Qiao et al. 2019, used in paper sec. 2.3) replaces the stored kernel
    ``W`` of shape ``(C_out, C_in / groups, kH, kW)`` by
    ``(W - mean(W[o])) / sqrt(var(W[o]) + eps)``, with the mean and (biased) variance taken over
    each output channel ``o``. The stored parameter is left untouched, so checkpoints hold the raw
    weights and gradients flow through the standardisation.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        kernel_size: Kernel size, as in :class:`torch.nn.Conv2d`.
        stride: Stride, as in :class:`torch.nn.Conv2d`.
        padding: Padding, as in :class:`torch.nn.Conv2d`.
        dilation: Dilation, as in :class:`torch.nn.Conv2d`.
        groups: Convolution groups (not GroupNorm groups), as in :class:`torch.nn.Conv2d`.
        bias: Whether to add a learnable bias.
        eps: Added to the variance; keeps near-constant kernels finite.
        weight_gradient: How channels_last CPU training computes a bias-free 3x3 same-padding
            kernel's gradient: ``"auto"``, ``"blocked_gemm"`` or ``"onednn"``
            (:mod:`~inpaintssl.models.cpu_convolution`). The results agree to float32 rounding.

    Example:
        >>> import torch
        >>> conv = WSConv2d(3, 4, kernel_size=3, padding=1, weight_gradient="onednn")
        >>> w = conv.standardized_weight()
        >>> bool(w.mean(dim=(1, 2, 3)).abs().max() < 1e-6)
        True
        >>> conv(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        eps: float = 1e-6,
        weight_gradient: WeightGradientKernel = "auto",
    ) -> None:
        if not eps > 0:
            raise ValueError(f"eps={eps} is invalid; expected a positive float")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.eps = eps
        self.weight_gradient = check_weight_gradient_kernel(weight_gradient)

    @property
    def _plain_3x3(self) -> bool:
        # The U-Net's own convolution: eligible for the blocked-GEMM weight gradient on the CPU.
        return (
            self.kernel_size == (3, 3)
            and self.stride == (1, 1)
            and self.padding == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and self.bias is None
        )

    def standardized_weight(self) -> torch.Tensor:
        """The kernel actually used: zero mean and unit variance per output channel.

        Returns:
            Tensor of the weight's shape ``(C_out, C_in / groups, kH, kW)``.
        """
        weight = self.weight
        # Elementwise ops keep the weight's memory format, so a channels_last model stays fast.
        var, mean = torch.var_mean(weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (weight - mean) * torch.rsqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` of shape ``(N, C_in, H, W)`` with the standardised kernel.

        A bias-free 3x3 same-padding kernel goes through :func:`~inpaintssl.models.cpu_convolution.conv3x3`,
        which computes the weight gradient of channels_last CPU training by blocked GEMMs.
        """
        weight = self.standardized_weight()
        if self._plain_3x3:
            return conv3x3(x, weight, kernel=self.weight_gradient)
        out: torch.Tensor = self._conv_forward(x, weight, self.bias)
        return out

    def extra_repr(self) -> str:
        """The :class:`torch.nn.Conv2d` description, plus a weight-gradient kernel that is not ``auto``."""
        base: str = super().extra_repr()  # type: ignore[no-untyped-call]
        return base if self.weight_gradient == "auto" else f"{base}, weight_gradient={self.weight_gradient!r}"


class ConvNormAct(nn.Sequential):
    """``WSConv2d`` (3x3, same padding, no bias) -> ``GroupNorm`` -> ``ReLU``.

    The convolution has no bias because GroupNorm's affine shift makes one redundant.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        groups: Requested GroupNorm groups, clamped by :func:`group_count`.
        weight_gradient: The convolution's weight-gradient kernel (see :class:`WSConv2d`).

    Example:
        >>> import torch
        >>> ConvNormAct(2, 6, groups=4)(torch.ones(1, 2, 4, 4)).shape
        torch.Size([1, 6, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        groups: int,
        weight_gradient: WeightGradientKernel = "auto",
    ) -> None:
        conv = WSConv2d(
            in_channels, out_channels, kernel_size=3, padding=1, bias=False, weight_gradient=weight_gradient
        )
        super().__init__(
            conv,
            AutocastGroupNorm(group_count(out_channels, groups), out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvNormAct` blocks: the unit of every U-Net level (paper Figure 2).

    Maps ``(N, C_in, H, W)`` to ``(N, C_out, H, W)``.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out`` of both convolutions.
        groups: Requested GroupNorm groups, clamped by :func:`group_count`.
        weight_gradient: The convolutions' weight-gradient kernel (see :class:`WSConv2d`).

    Example:
        >>> import torch
        >>> DoubleConv(3, 4, groups=16)(torch.ones(1, 3, 4, 4)).shape
        torch.Size([1, 4, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        groups: int,
        weight_gradient: WeightGradientKernel = "auto",
    ) -> None:
        super().__init__(
            ConvNormAct(in_channels, out_channels, groups=groups, weight_gradient=weight_gradient),
            ConvNormAct(out_channels, out_channels, groups=groups, weight_gradient=weight_gradient),
        )
