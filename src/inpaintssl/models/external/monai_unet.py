"""MONAI's ``BasicUNet`` (2D) as an inpaintssl backbone, split into encoder, decoder and head.

Registered as ``"monai_basic_unet"`` through the ``inpaintssl.backbones`` entry point; needs the
``monai`` extra (``pip install "inpaintssl[monai]"``). MONAI's network keeps its own layer names
inside the three parts (``encoder.conv_0``, ``encoder.down_1`` ... ``decoder.upcat_4`` ...), so
:func:`inpaintssl.inference.basic_unet_state_dict` maps a trained model back onto a plain
``BasicUNet`` key for key.

Example:
    >>> import torch
    >>> from inpaintssl.models.external import MonaiBasicUNet
    >>> net = MonaiBasicUNet(in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4), seed=0)
    >>> net.size_multiple
    16
    >>> net(torch.zeros(1, 1, 16, 32)).shape
    torch.Size([1, 2, 16, 32])
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from inpaintssl.extras import import_optional
from inpaintssl.models.external._parts import ThreePartBackbone, seeded_construction
from inpaintssl.models.input_checks import check_positive_int, check_positive_ints

__all__ = ["BasicUNetDecoder", "BasicUNetEncoder", "MonaiBasicUNet"]

# BasicUNet max-pools four times (down_1 .. down_4).
_SIZE_MULTIPLE = 2**4
_ENCODER_LAYERS = ("conv_0", "down_1", "down_2", "down_3", "down_4")
_DECODER_LAYERS = ("upcat_4", "upcat_3", "upcat_2", "upcat_1")
HEAD_LAYER = "final_conv"

NormOrAct = str | Sequence[Any]


def _require_monai() -> Any:
    basic_unet = import_optional(
        "monai.networks.nets.basic_unet", extra="monai", purpose="backbone 'monai_basic_unet'"
    )
    return basic_unet.BasicUNet


class BasicUNetEncoder(nn.Module):
    """MONAI ``BasicUNet``'s contracting path: ``conv_0`` then ``down_1`` .. ``down_4``.

    Args:
        layers: The five MONAI blocks, keyed by their ``BasicUNet`` attribute names.

    Example:
        >>> enc = MonaiBasicUNet(in_channels=1, out_channels=1, features=(2, 2, 2, 2, 2, 2)).encoder
        >>> [name for name, _ in enc.named_children()]
        ['conv_0', 'down_1', 'down_2', 'down_3', 'down_4']
    """

    def __init__(self, layers: Mapping[str, nn.Module]) -> None:
        super().__init__()
        for name in _ENCODER_LAYERS:
            self.add_module(name, layers[name])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Map ``(N, C_in, H, W)`` to five feature maps, level ``i`` of size ``H / 2**i``."""
        features: list[torch.Tensor] = []
        for layer in self.children():
            x = layer(x)
            features.append(x)
        return features


class BasicUNetDecoder(nn.Module):
    """MONAI ``BasicUNet``'s expanding path: ``upcat_4`` .. ``upcat_1`` with skip concatenation.

    Args:
        layers: The four MONAI ``UpCat`` blocks, keyed by their ``BasicUNet`` attribute names.

    Example:
        >>> dec = MonaiBasicUNet(in_channels=1, out_channels=1, features=(2, 2, 2, 2, 2, 2)).decoder
        >>> [name for name, _ in dec.named_children()]
        ['upcat_4', 'upcat_3', 'upcat_2', 'upcat_1']
    """

    def __init__(self, layers: Mapping[str, nn.Module]) -> None:
        super().__init__()
        for name in _DECODER_LAYERS:
            self.add_module(name, layers[name])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse the encoder's five features (shallowest first) into ``(N, features[5], H, W)``."""
        x = features[-1]
        for layer, skip in zip(self.children(), reversed(features[:-1])):
            x = layer(x, skip)
        return x


class MonaiBasicUNet(ThreePartBackbone):
    """MONAI's 2D ``BasicUNet`` with the ``encoder`` / ``decoder`` / ``head`` parts transfer needs.

    The weights are MONAI's own modules, initialised by MONAI's defaults under ``seed``; the
    forward pass equals ``BasicUNet``'s. The output is raw (no activation). With instance norm (the
    default) every pass, in training and in inference alike, needs more than one pixel at the
    deepest level (1/16 of the input): inputs at least 32 pixels on each side (a 16 x 16 input
    fails in PyTorch's instance norm).

    Args:
        in_channels: Image channels ``C_in``.
        out_channels: Output channels ``C_out`` of the head.
        features: Six widths: the five encoder levels, then the last decoder level (MONAI's
            default ``(32, 32, 64, 128, 256, 32)``).
        act: MONAI activation spec, a name or ``(name, kwargs)``.
        norm: MONAI normalisation spec, a name or ``(name, kwargs)`` (default instance norm with
            affine parameters; ``("group", {"num_groups": 8})`` is closer to the paper's U-Net).
        dropout: Dropout probability inside the convolution blocks.
        upsample: ``"deconv"``, ``"pixelshuffle"`` or ``"nontrainable"``.
        seed: Seed of the initialisation; the global torch RNG is left untouched. ``None`` draws
            fresh entropy.

    Attributes:
        encoder: :class:`BasicUNetEncoder`.
        decoder: :class:`BasicUNetDecoder`.
        head: MONAI's ``final_conv`` (1x1 convolution).
        size_multiple: 16; input height and width must be multiples of it.

    Raises:
        ImportError: If MONAI is not installed.
        ValueError: If ``features`` does not hold six positive integers.

    Example:
        >>> net = MonaiBasicUNet(in_channels=3, out_channels=1, features=(4, 4, 4, 4, 4, 4), seed=1)
        >>> sorted(name for name, _ in net.named_children())
        ['decoder', 'encoder', 'head']
    """

    # Imported only when built: `inpaintssl plugins` says "unavailable" while these are missing.
    requires: ClassVar[Mapping[str, str]] = MappingProxyType({"monai": "inpaintssl[monai]"})

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (32, 32, 64, 128, 256, 32),
        act: NormOrAct = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: NormOrAct = ("instance", {"affine": True}),
        dropout: float = 0.0,
        upsample: str = "deconv",
        seed: int | None = None,
    ) -> None:
        in_channels = check_positive_int("in_channels", in_channels)
        out_channels = check_positive_int("out_channels", out_channels)
        expected = "six integers >= 1 (five encoder levels, then the last decoder level)"
        widths = check_positive_ints("features", features, expected=expected)
        if len(widths) != 6:
            raise ValueError(f"features={features!r} is invalid; expected {expected}, found {len(widths)}")
        basic_unet = _require_monai()
        super().__init__(in_channels=in_channels, out_channels=out_channels, size_multiple=_SIZE_MULTIPLE)
        self.features = widths
        # MONAI before 1.6 prints "BasicUNet features: ..." on every construction: in a study, a
        # prediction or a doctest, once per network built, on the user's stdout.
        with seeded_construction(seed), contextlib.redirect_stdout(io.StringIO()):
            # MONAI's split_args wants a tuple, but YAML and JSON configs give lists.
            net = basic_unet(
                spatial_dims=2,
                in_channels=in_channels,
                out_channels=out_channels,
                features=widths,
                act=act if isinstance(act, str) else tuple(act),
                norm=norm if isinstance(norm, str) else tuple(norm),
                dropout=dropout,
                upsample=upsample,
            )
        layers = dict(net.named_children())
        self.encoder = BasicUNetEncoder(layers)
        self.decoder = BasicUNetDecoder(layers)
        self.head: nn.Module = layers[HEAD_LAYER]
