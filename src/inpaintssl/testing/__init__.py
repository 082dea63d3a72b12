"""Contract tests for every kind of plugin component, reusable by plugin authors.

Every backbone in :data:`inpaintssl.registry.BACKBONES` must behave like the paper's U-Net where
the rest of inpaintssl relies on it (sec. 2.3, 2.5.1): it builds from ``in_channels``,
``out_channels`` and ``seed`` keywords, maps ``(N, C_in, H, W)`` to raw ``(N, C_out, H, W)``,
has ``encoder``, ``decoder`` and ``head`` parts holding every tensor (so transfer strategies can
name them), exposes ``size_multiple``, is deterministic under a seed without touching the global
RNG, passes gradients to every parameter, and gives the same result in ``channels_last`` layout
and under autocast (:class:`BackboneContract`).

Every dataset in :data:`inpaintssl.registry.DATASETS` keeps the item contract of
:class:`inpaintssl.data.SliceDataset` (:class:`DatasetContract`); every sampler in
:data:`~inpaintssl.registry.SAMPLERS` and every task in :data:`~inpaintssl.registry.PRETEXT_TASKS`
keeps what the mask banks and pretraining rely on (:class:`SamplerContract`,
:class:`PretextTaskContract`). Every loss in :data:`~inpaintssl.registry.LOSSES` keeps what
training relies on (:class:`LossContract`: the output layout, a float32 scalar whose scale does
not grow with the batch, hard predictions as ``inpaintssl predict`` makes them), and every
strategy in :data:`~inpaintssl.registry.TRANSFER_STRATEGIES` copies exactly the parts it names,
the head left fresh, with every backbone (:class:`TransferStrategyContract`). inpaintssl's own
tests run each contract for every registered name.

A plugin's test suite subclasses a contract under a ``Test*`` name; pytest then runs every check
against the plugin. The modules import pytest only inside the checks that need to skip (without
CUDA, or a segmentation check of an inpainting loss), so ``import inpaintssl.testing`` works
without it.

Example:
    >>> class TestTinyUNet(BackboneContract):
    ...     backbone = "unet2d"
    ...     params = {"depth": 2, "base_width": 4}
    >>> TestTinyUNet().test_output_shape()
    >>> "test_seed_is_deterministic" in BackboneContract.check_names()
    True
"""

from __future__ import annotations

from inpaintssl.testing.backbones import BackboneContract
from inpaintssl.testing.corruption import PretextTaskContract, SamplerContract
from inpaintssl.testing.datasets import DatasetContract
from inpaintssl.testing.losses import LossContract
from inpaintssl.testing.transfer import TransferStrategyContract

__all__ = [
    "BackboneContract",
    "DatasetContract",
    "LossContract",
    "PretextTaskContract",
    "SamplerContract",
    "TransferStrategyContract",
]
