"""Contract tests for backbones, datasets, patch samplers and pretext tasks, reusable by plugin authors.

Every backbone in :data:`inpaintssl.registry.BACKBONES` must behave like the paper's U-Net where
the rest of inpaintssl relies on it (sec. 2.3, 2.5.1): it builds from ``in_channels``,
``out_channels`` and ``seed`` keywords, maps ``(N, C_in, H, W)`` to raw ``(N, C_out, H, W)``,
has ``encoder``, ``decoder`` and ``head`` parts holding every tensor (so transfer strategies can
name them), exposes ``size_multiple``, is deterministic under a seed without touching the global
RNG, passes gradients to every parameter, and gives the same result in ``channels_last`` layout
and under autocast.

Every dataset in :data:`inpaintssl.registry.DATASETS` keeps the item contract of
:class:`inpaintssl.data.SliceDataset` (:class:`DatasetContract`); every sampler in
:data:`~inpaintssl.registry.SAMPLERS` and every task in :data:`~inpaintssl.registry.PRETEXT_TASKS`
keeps what the mask banks and pretraining rely on (:class:`SamplerContract`,
:class:`PretextTaskContract`). inpaintssl's own tests run each contract for every registered name.

A plugin's test suite subclasses a contract under a ``Test*`` name; pytest then runs every check
against the plugin. The module imports pytest only
inside the one check that needs to skip, so ``import inpaintssl.testing`` works without it.

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

__all__ = ["BackboneContract", "DatasetContract", "PretextTaskContract", "SamplerContract"]
