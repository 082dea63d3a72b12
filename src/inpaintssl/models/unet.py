"""The 2D U-Net used for both inpainting and segmentation (paper sec. 2.3, Figure 2).

Registered as ``"unet2d"`` in :data:`inpaintssl.registry.BACKBONES`. The network is split into the
three parts that transfer learning talks about (sec. 2.5.1): ``encoder`` (the contracting path),
``decoder`` (the expanding path with skip concatenation) and ``head`` (the paper's
"post-processing" layer, a 1x1 convolution). Every trainable parameter lives in one of them.

Example:
    >>> import torch
    >>> from inpaintssl.registry import BACKBONES
    >>> net = BACKBONES.build("unet2d", in_channels=1, out_channels=4, depth=3, base_width=8, seed=0)
    >>> net.size_multiple
    4
    >>> net(torch.zeros(2, 1, 16, 24)).shape
    torch.Size([2, 4, 16, 24])
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence

import torch
from torch import nn

from inpaintssl.models.cpu_convolution import WeightGradientKernel, check_weight_gradient_kernel
from inpaintssl.models.input_checks import check_backbone_input, check_init_seed, check_positive_int
from inpaintssl.models.layers import (
    AutocastGroupNorm,
    DoubleConv,
    NormPrecision,
    WSConv2d,
    check_norm_precision,
)
from inpaintssl.registry import BACKBONES

__all__ = ["UNet2d", "UNetDecoder", "UNetEncoder", "UpLevel"]


class UNetEncoder(nn.Module):
    """Contracting path: ``DoubleConv`` per level, 2x2 max-pooling between levels.

    Args:
        in_channels: Image channels ``C_in``.
        widths: Output channels of each level, shallowest first (the paper: 32, 64, 128, 256, 512).
        groups: Requested GroupNorm groups.
        weight_gradient: The 3x3 convolutions' CPU weight-gradient kernel (see
            :class:`~inpaintssl.models.layers.WSConv2d`).

    Example:
        >>> import torch
        >>> feats = UNetEncoder(1, (4, 8), groups=2)(torch.zeros(1, 1, 8, 8))
        >>> [tuple(f.shape) for f in feats]
        [(1, 4, 8, 8), (1, 8, 4, 4)]
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        *,
        groups: int,
        weight_gradient: WeightGradientKernel = "auto",
    ) -> None:
        super().__init__()
        channels = (in_channels, *widths)
        self.levels = nn.ModuleList(
            DoubleConv(c_in, c_out, groups=groups, weight_gradient=weight_gradient)
            for c_in, c_out in itertools.pairwise(channels)
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Map ``(N, C_in, H, W)`` to one feature map per level, level ``i`` of size ``H / 2**i``."""
        features: list[torch.Tensor] = []
        for index, level in enumerate(self.levels):
            x = level(self.pool(x) if index else x)
            features.append(x)
        return features


class UpLevel(nn.Module):
    """One expanding step: 2x2 transposed convolution (stride 2), skip concatenation, ``DoubleConv``.

    Args:
        in_channels: Channels of the deeper feature map.
        out_channels: Channels of the skip connection and of the output.
        groups: Requested GroupNorm groups.
        weight_gradient: The 3x3 convolutions' CPU weight-gradient kernel.

    Example:
        >>> import torch
        >>> up = UpLevel(8, 4, groups=2)
        >>> up(torch.zeros(1, 8, 2, 2), torch.zeros(1, 4, 4, 4)).shape
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
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, groups=groups, weight_gradient=weight_gradient)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` ``(N, C_in, h, w)`` and fuse it with ``skip`` ``(N, C_out, 2h, 2w)``."""
        fused: torch.Tensor = self.conv(torch.cat((self.up(x), skip), dim=1))
        return fused


class UNetDecoder(nn.Module):
    """Expanding path: one :class:`UpLevel` per encoder level below the first, deepest first.

    Args:
        widths: The encoder's level widths, shallowest first.
        groups: Requested GroupNorm groups.
        weight_gradient: The 3x3 convolutions' CPU weight-gradient kernel.

    Example:
        >>> import torch
        >>> dec = UNetDecoder((4, 8), groups=2)
        >>> dec([torch.zeros(1, 4, 8, 8), torch.zeros(1, 8, 4, 4)]).shape
        torch.Size([1, 4, 8, 8])
    """

    def __init__(
        self, widths: Sequence[int], *, groups: int, weight_gradient: WeightGradientKernel = "auto"
    ) -> None:
        super().__init__()
        deep_to_shallow = tuple(reversed(widths))
        self.levels = nn.ModuleList(
            UpLevel(c_in, c_out, groups=groups, weight_gradient=weight_gradient)
            for c_in, c_out in itertools.pairwise(deep_to_shallow)
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse the encoder's features (shallowest first) into ``(N, widths[0], H, W)``."""
        x = features[-1]
        for level, skip in zip(self.levels, reversed(features[:-1])):
            x = level(x, skip)
        return x


@BACKBONES.register("unet2d")
class UNet2d(nn.Module):
    """2D U-Net with GroupNorm, weight standardisation and seeded He initialisation (sec. 2.3).

    Level ``i`` has ``base_width * 2**i`` channels, so the defaults give the paper's
    32-64-128-256-512. The output is raw (no activation): the loss applies sigmoid or softmax.

    Args:
        in_channels: Image channels ``C_in``.
        out_channels: Output channels ``C_out`` of the head (``C_in`` for inpainting, one per
            class for segmentation).
        depth: Number of levels (resolutions); inputs must be divisible by ``2**(depth - 1)``.
        base_width: Channels of the first level.
        groups: GroupNorm groups (the authors used 16); layers with fewer channels use the largest
            divisor of their width not above it.
        seed: Seed of the Kaiming-normal initialisation, an integer in ``[0, 2**32)`` (the range of
            ``run.seed``; PyTorch's generator keeps 32 bits of a seed). The same seed gives
            bit-identical weights, different seeds different ones; a local generator is used, so the
            global torch RNG is left untouched. ``None`` draws fresh entropy.
        weight_gradient: How channels_last CPU training computes the 3x3 weight gradients:
            ``"auto"`` (per layer, the kernel measured faster for its shape), ``"blocked_gemm"``
            or ``"onednn"`` (:mod:`~inpaintssl.models.cpu_convolution`). Gradients agree to float32
            rounding; no effect on CUDA or in evaluation. Not part of the architecture: checkpoints
            do not record it. Change it later with :meth:`set_weight_gradient`.
        norm_precision: Where GroupNorm normalises under autocast (:class:`AutocastGroupNorm`):
            ``"float32"`` (default; PyTorch's autocast choice on CUDA) or ``"autocast"`` (in the
            bf16/fp16 of the convolutions, no casts; opt-in, not yet timed on a GPU). No effect
            outside autocast: weights, checkpoints and float32 outputs are the same either way.
            Change it later with :meth:`set_norm_precision`.

    Attributes:
        encoder: :class:`UNetEncoder`.
        decoder: :class:`UNetDecoder`.
        head: 1x1 convolution, the "post-processing" layer.
        size_multiple: ``2**(depth - 1)``; input height and width must be multiples of it.
        widths: Channels per level, shallowest first.
        weight_gradient: The 3x3 convolutions' weight-gradient kernel.
        norm_precision: The GroupNorm layers' precision under autocast.

    Raises:
        ValueError: If a size argument is not a positive integer, or ``seed`` is not ``None`` or an
            integer in ``[0, 2**32)``.

    Example:
        >>> import torch
        >>> net = UNet2d(in_channels=3, out_channels=2, depth=2, base_width=4, seed=1)
        >>> net.widths
        (4, 8)
        >>> net(torch.zeros(1, 3, 6, 8)).shape
        torch.Size([1, 2, 6, 8])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        depth: int = 5,
        base_width: int = 32,
        groups: int = 16,
        seed: int | None = None,
        weight_gradient: WeightGradientKernel = "auto",
        norm_precision: NormPrecision = "float32",
    ) -> None:
        super().__init__()
        self.weight_gradient = check_weight_gradient_kernel(weight_gradient)
        self.norm_precision = check_norm_precision(norm_precision)
        # Checked values replace the arguments: NumPy integers become ints before any layer sees them.
        in_channels = self.in_channels = check_positive_int("in_channels", in_channels)
        out_channels = self.out_channels = check_positive_int("out_channels", out_channels)
        depth = self.depth = check_positive_int("depth", depth)
        base_width = check_positive_int("base_width", base_width)
        groups = check_positive_int("groups", groups)
        seed = check_init_seed(seed)
        self.widths = tuple(base_width * 2**level for level in range(depth))
        self.size_multiple = 2 ** (depth - 1)
        # torch layers draw their default init from the global RNG; restore it, since every
        # weight is re-drawn below from a local generator anyway.
        with torch.random.fork_rng(devices=()):
            self.encoder = UNetEncoder(
                in_channels, self.widths, groups=groups, weight_gradient=self.weight_gradient
            )
            self.decoder = UNetDecoder(self.widths, groups=groups, weight_gradient=self.weight_gradient)
            self.head = nn.Conv2d(self.widths[0], out_channels, kernel_size=1)
        self.reset_parameters(seed=seed)
        self.set_norm_precision(self.norm_precision)

    def set_norm_precision(self, precision: NormPrecision) -> UNet2d:
        """Make every GroupNorm layer normalise in ``precision`` under autocast; returns ``self``.

        Raises:
            ValueError: If ``precision`` is not ``"float32"`` or ``"autocast"``.

        Example:
            >>> net = UNet2d(in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
            >>> net.set_norm_precision("autocast").encoder.levels[0][0][1].precision
            'autocast'
        """
        self.norm_precision = check_norm_precision(precision)
        self._set_on_each(AutocastGroupNorm, "precision", self.norm_precision)
        return self

    def set_weight_gradient(self, kernel: WeightGradientKernel) -> UNet2d:
        """Make every 3x3 convolution compute its CPU weight gradient with ``kernel``; returns ``self``.

        Raises:
            ValueError: If ``kernel`` is not ``"auto"``, ``"blocked_gemm"`` or ``"onednn"``.

        Example:
            >>> net = UNet2d(in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
            >>> net.set_weight_gradient("onednn").weight_gradient
            'onednn'
        """
        self.weight_gradient = check_weight_gradient_kernel(kernel)
        self._set_on_each(WSConv2d, "weight_gradient", self.weight_gradient)
        return self

    def _set_on_each(self, layer_type: type[nn.Module], attribute: str, value: object) -> None:
        for module in self.modules():
            if isinstance(module, layer_type):
                setattr(module, attribute, value)

    @torch.no_grad()
    def reset_parameters(self, *, seed: int | None = None) -> None:
        """Re-initialise every weight: Kaiming normal (fan-in, ReLU gain), zero biases, unit GroupNorm.

        Samples are drawn on the CPU from a generator seeded with ``seed`` (an integer in
        ``[0, 2**32)``, or ``None`` for fresh entropy) and then copied to each parameter's device and
        dtype, so a seed gives the same weights on every device.

        Raises:
            ValueError: If ``seed`` is not ``None`` or an integer in ``[0, 2**32)``.
        """
        seed = check_init_seed(seed)
        generator = torch.Generator(device="cpu")
        # 32 bits: all the generator keeps of a seed.
        generator.manual_seed(secrets.randbits(32) if seed is None else seed)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                sample = torch.empty(module.weight.shape, dtype=torch.float32, device="cpu")
                nn.init.kaiming_normal_(sample, mode="fan_in", nonlinearity="relu", generator=generator)
                module.weight.copy_(sample)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, C_in, H, W)`` to raw outputs ``(N, C_out, H, W)``.

        Raises:
            ValueError: If ``x`` is not 4-D, has the wrong channel count, or ``H``/``W`` is not a
                multiple of :attr:`size_multiple`.
        """
        check_backbone_input(
            x,
            in_channels=self.in_channels,
            size_multiple=self.size_multiple,
            why=f"2**(depth-1) for depth={self.depth}",
        )
        out: torch.Tensor = self.head(self.decoder(self.encoder(x)))
        return out
