"""Backbones from the wider PyTorch ecosystem, wrapped to the inpaintssl backbone contract.

Each wrapper exposes the ``encoder``, ``decoder`` and ``head`` parts that pretraining and transfer
rely on (paper sec. 2.5.1) and keeps the third-party modules and their key names inside them.
They are registered through the ``inpaintssl.backbones`` entry-point group, not by importing this
package, and import their library only when built, so this package imports without the extras:

- ``monai_basic_unet``: :class:`MonaiBasicUNet` (extra ``monai``).
- ``monai_unet``: :class:`MonaiUNet`, MONAI's residual-unit ``UNet`` (extra ``monai``).
- ``smp_unet``: :class:`SmpUNet`, segmentation_models_pytorch's ``Unet`` with any smp or timm
  encoder (extra ``smp``).

Their weights in the libraries' own key layouts come from :mod:`inpaintssl.inference`
(:func:`~inpaintssl.inference.basic_unet_state_dict`,
:func:`~inpaintssl.inference.monai_unet_state_dict`, :func:`~inpaintssl.inference.save_smp_encoder`).

Example:
    >>> from inpaintssl.models.external import MonaiBasicUNet
    >>> net = MonaiBasicUNet(in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4), seed=0)
    >>> sorted(name for name, _ in net.named_children())
    ['decoder', 'encoder', 'head']
"""

from inpaintssl.models.external.monai_resunet import MonaiUNet, MonaiUNetDecoder, MonaiUNetEncoder
from inpaintssl.models.external.monai_unet import BasicUNetDecoder, BasicUNetEncoder, MonaiBasicUNet
from inpaintssl.models.external.smp_unet import SmpUNet

__all__ = [
    "BasicUNetDecoder",
    "BasicUNetEncoder",
    "MonaiBasicUNet",
    "MonaiUNet",
    "MonaiUNetDecoder",
    "MonaiUNetEncoder",
    "SmpUNet",
]
