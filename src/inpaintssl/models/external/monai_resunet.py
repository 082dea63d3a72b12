"""MONAI's residual-unit ``UNet`` (2D) as an inpaintssl backbone, split into encoder, decoder and head.

Registered as ``"monai_unet"`` through the ``inpaintssl.backbones`` entry point; needs the
``monai`` extra (``pip install "inpaintssl[monai]"``). This is ``monai.networks.nets.UNet``, the
network of MONAI's spleen and BraTS tutorials: residual units, strided convolutions down,
strided transposed convolutions up. (The module is not ``monai_unet.py``: that one holds
``BasicUNet``, registered as ``monai_basic_unet``.)

MONAI builds the network recursively, level ``i`` being
``Sequential(down_i, SkipConnection(<level i + 1>), up_i)`` and the innermost skip wrapping the
``bottom`` block. The wrapper takes MONAI's own modules out of that nesting, unchanged:

- ``encoder``: ``down_0`` .. ``down_{K-1}`` (outermost first), then ``bottom``;
- ``decoder``: ``up_{K-1}`` .. ``up_1`` (innermost first), each fed the concatenation
  ``[skip, deeper]`` as MONAI's ``SkipConnection`` forms it; it returns the last concatenation,
  ``[down_0's output, up_1's output]``;
- ``head``: ``up_0``, the outermost up block.

Why the whole outermost up block is the head: in MONAI's ``UNet`` the class count shapes all of
``up_0`` (its transposed convolution maps ``2 * channels[0]`` to ``out_channels``, and with
residual units the unit after it works at ``out_channels`` too), and nothing else. Fine-tuning
with another number of classes than pretraining therefore has to re-initialise exactly that block;
transfer (``encoder`` or ``encoder_decoder``) never copies the head, and copying a part fails on
any tensor whose shape differs, so any smaller head would leave class-shaped tensors in the
decoder. The price: the head is heavier than ``unet2d``'s 1x1 convolution (a strided transposed
convolution back to full resolution, plus a residual unit with ``num_res_units > 0``), so
``encoder_decoder`` transfers everything but the last upsampling step.

The forward pass is MONAI's, operation for operation, and equals it bit for bit;
:func:`inpaintssl.inference.monai_unet_state_dict` maps a trained model back onto a plain
``UNet``'s keys (``model.0.*``, ``model.1.submodule.0.*`` ...).

Example:
    >>> import torch
    >>> from inpaintssl.models.external import MonaiUNet
    >>> net = MonaiUNet(in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2), seed=0)
    >>> net.size_multiple
    4
    >>> [name for name, _ in net.encoder.named_children()], [name for name, _ in net.decoder.named_children()]
    (['down_0', 'down_1', 'bottom'], ['up_1'])
    >>> net(torch.zeros(1, 1, 16, 32)).shape
    torch.Size([1, 2, 16, 32])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from inpaintssl.extras import import_optional
from inpaintssl.models.external._parts import ThreePartBackbone, seeded_construction
from inpaintssl.models.input_checks import check_positive_int, check_positive_ints

__all__ = ["MonaiUNet", "MonaiUNetDecoder", "MonaiUNetEncoder"]

NormOrAct = str | Sequence[Any]
KernelSize = int | Sequence[int]

_ADN_LETTERS = frozenset("ADN")


def _require_monai() -> Any:
    unet = import_optional("monai.networks.nets.unet", extra="monai", purpose="backbone 'monai_unet'")
    return unet.UNet


class MonaiUNetEncoder(nn.Module):
    """MONAI ``UNet``'s down path: ``down_0`` .. ``down_{K-1}``, then the ``bottom`` block.

    Args:
        downs: The ``K`` down blocks, outermost first.
        bottom: The bottom block (stride 1).

    Example:
        >>> net = MonaiUNet(in_channels=1, out_channels=1, channels=(2, 2, 2), strides=(2, 2))
        >>> [name for name, _ in net.encoder.named_children()]
        ['down_0', 'down_1', 'bottom']
    """

    def __init__(self, downs: Sequence[nn.Module], bottom: nn.Module) -> None:
        super().__init__()
        for level, block in enumerate(downs):
            self.add_module(f"down_{level}", block)
        self.bottom = bottom

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Map ``(N, C_in, H, W)`` to ``K + 1`` feature maps: each down block's output, then the bottom's."""
        features: list[torch.Tensor] = []
        for block in self.children():
            x = block(x)
            features.append(x)
        return features


class MonaiUNetDecoder(nn.Module):
    """MONAI ``UNet``'s up path below the head: ``up_{K-1}`` .. ``up_1``, with skip concatenation.

    Each block gets ``cat([skip, deeper], dim=1)``, the order of MONAI's ``SkipConnection``. The
    output is the concatenation the outermost up block (the head) takes:
    ``[down_0's output, up_1's output]``, ``2 * channels[0]`` channels (``channels[0] +
    channels[1]`` for a single level, where there is no up block here and ``up_1``'s place is
    the bottom's output).

    Args:
        ups: The up blocks ``up_1`` .. ``up_{K-1}``, outermost first (empty for ``K == 1``).

    Example:
        >>> net = MonaiUNet(in_channels=1, out_channels=1, channels=(2, 2, 2, 2), strides=(2, 2, 2))
        >>> [name for name, _ in net.decoder.named_children()]
        ['up_2', 'up_1']
    """

    def __init__(self, ups: Sequence[nn.Module]) -> None:
        super().__init__()
        # Registered innermost first, the order they run in.
        for level in range(len(ups), 0, -1):
            self.add_module(f"up_{level}", ups[level - 1])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse the encoder's ``K + 1`` features into the head's input ``(N, 2 * channels[0], h, w)``."""
        x = features[-1]
        for block, skip in zip(self.children(), reversed(features[1:-1]), strict=True):
            x = block(torch.cat([skip, x], dim=1))
        return torch.cat([features[0], x], dim=1)


class MonaiUNet(ThreePartBackbone):
    """MONAI's 2D residual-unit ``UNet`` with the ``encoder`` / ``decoder`` / ``head`` parts transfer needs.

    The weights are MONAI's own modules, initialised by MONAI's defaults under ``seed``; the
    forward pass equals ``monai.networks.nets.UNet``'s bit for bit. The output is raw (no
    activation). With instance norm (the default) the bottom block, at ``1 / size_multiple`` of
    the input, needs more than one pixel: for the default strides, inputs at least 32 pixels on
    each side.

    Args:
        in_channels: Image channels ``C_in``.
        out_channels: Output channels ``C_out`` of the head.
        channels: Widths of the ``K + 1`` levels, outermost first; the last is the bottom block's
            (the default is the spleen tutorial's ``(16, 32, 64, 128, 256)``).
        strides: One stride per down block, ``K = len(channels) - 1`` of them.
        kernel_size: Kernel size of the convolutions (odd), an int or one per spatial axis.
        up_kernel_size: Kernel size of the transposed convolutions (odd), an int or one per axis.
        num_res_units: Convolutions per residual unit; ``0`` gives plain convolution blocks.
        act: MONAI activation spec, a name or ``(name, kwargs)`` (MONAI's default ``"PRELU"``).
        norm: MONAI normalisation spec, a name or ``(name, kwargs)`` (MONAI's default
            ``"INSTANCE"``, without affine parameters; the spleen tutorial uses ``"BATCH"``).
        dropout: Dropout probability inside the blocks.
        bias: Whether the convolutions have a bias.
        adn_ordering: Order of activation (``A``), dropout (``D``) and normalisation (``N``) after
            each convolution, each letter at most once (MONAI's default ``"NDA"``).
        seed: Seed of the initialisation; the global torch RNG is left untouched. ``None`` draws
            fresh entropy.

    Attributes:
        encoder: :class:`MonaiUNetEncoder`.
        decoder: :class:`MonaiUNetDecoder`.
        head: MONAI's outermost up block ``up_0`` (see the module docstring for why).
        size_multiple: The product of ``strides``; input height and width must be multiples of it.
        channels: The level widths, as a tuple.
        strides: The strides, as a tuple.

    Raises:
        ImportError: If MONAI is not installed.
        ValueError: If an argument is out of range or of the wrong type (the message names it);
            checked before MONAI is imported.

    Example:
        >>> net = MonaiUNet(in_channels=3, out_channels=1, channels=(4, 4), strides=(4,), seed=1)
        >>> sorted(name for name, _ in net.named_children()), net.size_multiple
        (['decoder', 'encoder', 'head'], 4)
    """

    # Imported only when built: `inpaintssl plugins` says "unavailable" while these are missing.
    requires: ClassVar[Mapping[str, str]] = MappingProxyType({"monai": "inpaintssl[monai]"})

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2, 2),
        kernel_size: KernelSize = 3,
        up_kernel_size: KernelSize = 3,
        num_res_units: int = 2,
        act: NormOrAct = "PRELU",
        norm: NormOrAct = "INSTANCE",
        dropout: float = 0.0,
        bias: bool = True,
        adn_ordering: str = "NDA",
        seed: int | None = None,
    ) -> None:
        in_channels = check_positive_int("in_channels", in_channels)
        out_channels = check_positive_int("out_channels", out_channels)
        widths = check_positive_ints(
            "channels", channels, expected="a sequence of at least two integers >= 1"
        )
        if len(widths) < 2:
            raise ValueError(
                f"channels={channels!r} is invalid; expected at least two widths "
                "(the levels, then the bottom block)"
            )
        steps = check_positive_ints(
            "strides", strides, expected=f"len(channels) - 1 = {len(widths) - 1} integers >= 1"
        )
        if len(steps) != len(widths) - 1:
            # MONAI only warns about extra strides and ignores them; a config that lists them
            # probably meant another depth.
            raise ValueError(
                f"strides={strides!r} is invalid; expected len(channels) - 1 = {len(widths) - 1} "
                f"strides for channels={widths}, found {len(steps)}"
            )
        _odd_kernel("kernel_size", kernel_size)
        _odd_kernel("up_kernel_size", up_kernel_size)
        if isinstance(num_res_units, bool) or not isinstance(num_res_units, int) or num_res_units < 0:
            raise ValueError(f"num_res_units={num_res_units!r} is invalid; expected an integer >= 0")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, numbers.Real)
            or not 0.0 <= float(dropout) <= 1.0
        ):
            raise ValueError(f"dropout={dropout!r} is invalid; expected a probability between 0 and 1")
        if not isinstance(bias, bool):
            raise ValueError(f"bias={bias!r} is invalid; expected True or False")
        letters = adn_ordering.upper() if isinstance(adn_ordering, str) else None
        if letters is None or not set(letters) <= _ADN_LETTERS or len(set(letters)) != len(letters):
            raise ValueError(
                f"adn_ordering={adn_ordering!r} is invalid; expected a string of the letters A "
                "(activation), D (dropout) and N (normalisation), each at most once, e.g. 'NDA'"
            )
        unet = _require_monai()
        super().__init__(in_channels=in_channels, out_channels=out_channels, size_multiple=math.prod(steps))
        self.channels: tuple[int, ...] = widths
        self.strides: tuple[int, ...] = steps
        self.size_reason = f"the product of strides={steps}"
        with seeded_construction(seed):
            net = unet(
                spatial_dims=2,
                in_channels=in_channels,
                out_channels=out_channels,
                channels=widths,
                strides=steps,
                # MONAI tells a kernel size per axis from a scalar by Sequence; YAML gives lists.
                kernel_size=kernel_size if isinstance(kernel_size, int) else tuple(kernel_size),
                up_kernel_size=up_kernel_size if isinstance(up_kernel_size, int) else tuple(up_kernel_size),
                num_res_units=num_res_units,
                # MONAI's split_args wants a tuple, but YAML and JSON configs give lists.
                act=act if isinstance(act, str) else tuple(act),
                norm=norm if isinstance(norm, str) else tuple(norm),
                dropout=float(dropout),
                bias=bias,
                adn_ordering=adn_ordering,
            )
        downs: list[nn.Module] = []
        ups: list[nn.Module] = []
        block: nn.Module = net.model
        for _ in steps:
            # Level i: Sequential(down_i, SkipConnection(level i + 1, or the bottom), up_i).
            down, skip, up = block.children()
            downs.append(down)
            ups.append(up)
            block = skip.get_submodule("submodule")
        self.encoder = MonaiUNetEncoder(downs, block)
        self.decoder = MonaiUNetDecoder(ups[1:])
        self.head: nn.Module = ups[0]

    def monai_key_prefixes(self) -> dict[str, str]:
        """Where each block of this model sits in a plain MONAI ``UNet``'s state dict.

        Returns:
            This model's block paths (``"encoder.down_0"``, ``"encoder.bottom"``,
            ``"decoder.up_1"``, ``"head"`` ...) mapped to MONAI's (``"model.0"``,
            ``"model.1.submodule.1.submodule"``, ``"model.1.submodule.2"``, ``"model.2"`` ...).

        Example:
            >>> net = MonaiUNet(in_channels=1, out_channels=1, channels=(2, 2, 2), strides=(2, 2))
            >>> net.monai_key_prefixes()["encoder.bottom"]
            'model.1.submodule.1.submodule'
        """
        levels = len(self.strides)
        level = ["model" + ".1.submodule" * i for i in range(levels)]
        prefixes = {f"encoder.down_{i}": f"{level[i]}.0" for i in range(levels)}
        prefixes["encoder.bottom"] = f"{level[-1]}.1.submodule"
        prefixes.update({f"decoder.up_{i}": f"{level[i]}.2" for i in range(levels - 1, 0, -1)})
        prefixes["head"] = f"{level[0]}.2"
        return prefixes


def _odd_kernel(name: str, value: object) -> None:
    # MONAI's "same" padding exists only for odd kernels (its same_padding raises
    # NotImplementedError deep inside the build otherwise).
    sizes = [value] if isinstance(value, int) else value
    if (
        isinstance(value, (str, bytes, bool))
        or not isinstance(sizes, Sequence)
        or (not isinstance(value, int) and len(sizes) != 2)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 and s % 2 for s in sizes)
    ):
        raise ValueError(
            f"{name}={value!r} is invalid; expected an odd integer >= 1, or two of them (one per axis)"
        )
