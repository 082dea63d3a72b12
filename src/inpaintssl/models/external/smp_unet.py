"""segmentation_models_pytorch's ``Unet`` as an inpaintssl backbone.

Registered as ``"smp_unet"`` through the ``inpaintssl.backbones`` entry point; needs the ``smp``
extra (``pip install "inpaintssl[smp]"``, which brings timm and torchvision). Any smp or timm
encoder works (``"resnet18"``, ``"efficientnet-b0"``, ``"tu-resnet10t"``, ...), always randomly
initialised: nothing is downloaded. The model's ``encoder`` *is* smp's encoder module, so
:func:`inpaintssl.inference.smp_encoder_state_dict` and
:func:`~inpaintssl.inference.save_smp_encoder` hand an inpainting-pretrained encoder to any smp
architecture (``Unet``, ``UnetPlusPlus``, ``FPN``, ...) built with the same encoder.

Example:
    >>> import segmentation_models_pytorch as smp  # doctest: +SKIP
    >>> net = SmpUNet(in_channels=1, out_channels=2, encoder_name="resnet18", seed=0)  # doctest: +SKIP
    >>> fresh = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=2)  # doctest: +SKIP
    >>> from inpaintssl.inference import smp_encoder_state_dict
    >>> fresh.encoder.load_state_dict(smp_encoder_state_dict(net), strict=True)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

from torch import nn

from inpaintssl.extras import import_optional
from inpaintssl.models.external._parts import ThreePartBackbone, seeded_construction

__all__ = ["SmpUNet"]

# Keys through which smp and timm would fetch pretrained encoder weights (smp's ``weights``, timm's
# ``pretrained``, and smp's own argument name); in ``encoder_params`` they reach smp and timm only as
# a clash with the ``encoder_weights=None`` this wrapper passes ("got multiple values for keyword").
_DOWNLOAD_KEYS = ("encoder_weights", "weights", "pretrained")


def _require_smp() -> Any:
    # smp imports timm and torchvision itself: when one of those is missing or incompatible the
    # message shows that import's own error, not just "install smp".
    return import_optional("segmentation_models_pytorch", extra="smp", purpose="backbone 'smp_unet'")


class SmpUNet(ThreePartBackbone):
    """smp ``Unet`` with the ``encoder`` / ``decoder`` / ``head`` parts transfer needs.

    ``encoder``, ``decoder`` and ``head`` are smp's ``encoder``, ``decoder`` and
    ``segmentation_head`` modules, initialised by smp's defaults under ``seed``; the forward pass
    equals ``smp.Unet``'s. The output is raw (no activation, no classification head).

    Args:
        in_channels: Image channels ``C_in``.
        out_channels: Output channels ``C_out`` of the head (smp's ``classes``).
        encoder_name: Any smp encoder, or a timm one as ``"tu-<timm name>"``.
        encoder_depth: Encoder stages (3 to 5); inputs must be divisible by the encoder's
            output stride, ``2**encoder_depth`` for plain encoders.
        decoder_channels: One width per decoder block, ``encoder_depth`` of them.
        decoder_use_norm: smp's decoder normalisation (``"batchnorm"``, ``"groupnorm"``,
            ``"instancenorm"``, ``"layernorm"``, ``"identity"`` or ``True``/``False``).
        decoder_attention_type: ``None`` or ``"scse"``.
        decoder_interpolation: Upsampling mode of the decoder blocks (``"nearest"``, ``"bilinear"``, ...).
        encoder_params: Extra keyword arguments for the encoder (for ``"tu-"`` encoders, timm's
            ``create_model``), e.g. ``{"zero_init_last": False}``: timm ResNets start each residual
            branch at zero, so before the first update those branches get no gradient. Keys that
            would download weights (``weights``, ``pretrained``, ``encoder_weights``) are refused.
        encoder_weights: Only ``None`` (smp's spelling of a random initialisation), accepted so
            that an smp config carries over; named weights such as ``"imagenet"`` are refused,
            since they would be downloaded.
        seed: Seed of the initialisation; the global torch RNG is left untouched. ``None`` draws
            fresh entropy.

    Attributes:
        encoder: smp's encoder (keys and layout exactly as in ``smp.Unet(...).encoder``).
        decoder: smp's ``UnetDecoder``.
        head: smp's ``SegmentationHead`` (3x3 convolution).
        size_multiple: The encoder's output stride.
        encoder_name: The encoder's smp name.

    Raises:
        ImportError: If segmentation_models_pytorch (or its timm / torchvision) is not importable.
        ValueError: If ``encoder_weights`` is not ``None``, or ``encoder_params`` asks for
            pretrained weights; checked before smp is imported.

    Example:
        >>> net = SmpUNet(in_channels=1, out_channels=3, encoder_name="resnet18")  # doctest: +SKIP
        >>> net.size_multiple  # doctest: +SKIP
        32
    """

    # Imported only when built: `inpaintssl plugins` says "unavailable" while these are missing.
    requires: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"segmentation_models_pytorch": "inpaintssl[smp]", "timm": "inpaintssl[smp]"}
    )

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        decoder_use_norm: bool | str = "batchnorm",
        decoder_attention_type: str | None = None,
        decoder_interpolation: str = "nearest",
        encoder_params: Mapping[str, Any] | None = None,
        encoder_weights: str | None = None,
        seed: int | None = None,
    ) -> None:
        _refuse_downloads(encoder_weights, encoder_params or {})
        smp = _require_smp()
        # The size multiple is the encoder's output stride, known once it is built.
        super().__init__(in_channels=in_channels, out_channels=out_channels, size_multiple=1)
        self.encoder_name = encoder_name
        self.encoder_depth = encoder_depth
        self.size_reason = f"the output stride of encoder {encoder_name!r}"
        with seeded_construction(seed):
            net = smp.Unet(
                encoder_name=encoder_name,
                encoder_depth=encoder_depth,
                encoder_weights=None,  # never download: pretraining is what inpaintssl is for
                decoder_channels=tuple(decoder_channels),
                decoder_use_norm=decoder_use_norm,
                decoder_attention_type=decoder_attention_type,
                decoder_interpolation=decoder_interpolation,
                in_channels=in_channels,
                classes=out_channels,
                **dict(encoder_params or {}),
            )
        self.encoder: nn.Module = net.encoder
        self.decoder: nn.Module = net.decoder
        self.head: nn.Module = net.segmentation_head
        self.size_multiple = int(net.encoder.output_stride)


def _refuse_downloads(encoder_weights: str | None, encoder_params: Mapping[str, Any]) -> None:
    """Refuse every request for pretrained encoder weights, before smp or timm could fetch them.

    smp and timm would download them from the internet (and fail offline deep inside their hub
    code); here the encoder's weights come from inpainting pretraining instead.
    """
    asked = [] if encoder_weights is None else [f"encoder_weights={encoder_weights!r}"]
    asked += [
        f"encoder_params[{key!r}]={encoder_params[key]!r}" for key in _DOWNLOAD_KEYS if key in encoder_params
    ]
    if asked:
        raise ValueError(
            f"smp_unet: {', '.join(asked)} is refused: smp_unet never loads pretrained encoder "
            "weights (smp and timm would download them); its encoder starts from a random "
            "initialisation and gets its weights from inpainting pretraining (transfer.pretrained). "
            "Expected encoder_weights=None (the default) and no 'weights', 'pretrained' or "
            "'encoder_weights' in encoder_params"
        )
