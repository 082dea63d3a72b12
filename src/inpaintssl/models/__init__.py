"""Backbones: the 2D U-Net of paper sec. 2.3, its layers, and its CPU training convolution.

Importing this package registers ``"unet2d"`` in :data:`inpaintssl.registry.BACKBONES`.

Example:
    >>> from inpaintssl.models import UNet2d
    >>> UNet2d(in_channels=1, out_channels=1, depth=4, base_width=8).size_multiple
    8
"""

from inpaintssl.models.cpu_convolution import (
    WeightGradientKernel,
    conv3x3,
    conv3x3_weight_gradient,
    cpu_weight_gradient,
    set_cpu_weight_gradient,
    using_cpu_weight_gradient,
)
from inpaintssl.models.layers import (
    AutocastGroupNorm,
    ConvNormAct,
    DoubleConv,
    NormPrecision,
    WSConv2d,
    group_count,
)
from inpaintssl.models.unet import UNet2d, UNetDecoder, UNetEncoder, UpLevel

__all__ = [
    "AutocastGroupNorm",
    "ConvNormAct",
    "DoubleConv",
    "NormPrecision",
    "UNet2d",
    "UNetDecoder",
    "UNetEncoder",
    "UpLevel",
    "WSConv2d",
    "WeightGradientKernel",
    "conv3x3",
    "conv3x3_weight_gradient",
    "cpu_weight_gradient",
    "group_count",
    "set_cpu_weight_gradient",
    "using_cpu_weight_gradient",
]
