"""The two inpainting pretext tasks of the paper (sec. 2.4, Figure 1), registered in PRETEXT_TASKS.

``context_prediction``
    The patches take the image's per-channel mean (the text's "set to zero" after
    z-scoring; the authors' code wrote a constant 0, DESIGN.md section 2).
``context_restoration``
    Pairs of non-overlapping patches swap places, so every channel is a permutation of its pixels.

Both run vectorised on any device, with no Python loop over images or patches: one
``torch.where`` (prediction) or one ``gather`` with a precomputed permutation (restoration; on the
CPU a compiled block swap, which gives identical results) per batch.

Example:
    >>> import torch
    >>> from inpaintssl.registry import PRETEXT_TASKS
    >>> task = PRETEXT_TASKS.build("context_restoration", patch_size=8, bank_size=2)
    >>> x = torch.randn(3, 2, 64, 64)
    >>> y = task.corrupt(x)
    >>> torch.equal(y.flatten(2).sort(dim=2).values, x.flatten(2).sort(dim=2).values)
    True
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

# Importing the samplers registers them: PRETEXT_TASKS.build(..., sampler="poisson_disc") works
# even when SAMPLERS was never touched.
from inpaintssl.corruption import samplers as _samplers  # noqa: F401
from inpaintssl.corruption.base import PretextTask
from inpaintssl.corruption.masks import MaskBank
from inpaintssl.options import check_option
from inpaintssl.registry import PRETEXT_TASKS

__all__ = ["ContextPrediction", "ContextRestoration"]


@PRETEXT_TASKS.register("context_prediction")
class ContextPrediction(PretextTask):
    """Context prediction: fill ``K x K`` patches with the image's per-channel mean (sec. 2.4).

    Args:
        fill: ``"mean"`` (the paper's intent: the real per-image, per-channel mean, computed in
            float32 for half-precision inputs) or ``"zero"`` (the authors' code).
        **options: The :class:`~inpaintssl.corruption.base.PretextTask` options.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 3, 64, 64)
        >>> y = ContextPrediction(patch_size=16, bank_size=2).corrupt(x)
        >>> changed = (y != x).any(dim=1)  # (N, H, W): the same pixels in every channel
        >>> bool(changed.float().mean(dim=(1, 2)).min() >= 0.25)
        True
    """

    pairs: ClassVar[bool] = False

    def __init__(self, *, fill: Literal["mean", "zero"] = "mean", **options: Any) -> None:
        check_option(fill, ("mean", "zero"), field="fill")
        super().__init__(**options)
        self.fill = fill

    def apply(self, images: Tensor, *, bank: MaskBank, choice: Tensor) -> Tensor:
        """``(N, C, H, W)`` with masked pixels set to the fill value of their image and channel."""
        masks = bank.masks_for(choice)[:, None]
        if self.fill == "zero":
            return images.masked_fill(masks, 0.0)
        # Half-precision sums over 512x512 pixels lose digits: accumulate in at least float32.
        accumulate = torch.promote_types(images.dtype, torch.float32)
        mean = images.mean(dim=(-2, -1), keepdim=True, dtype=accumulate).to(images.dtype)
        # torch.where with a bool mask is ~13x faster on CPU than blending with a float mask.
        return torch.where(masks, mean, images)


@PRETEXT_TASKS.register("context_restoration")
class ContextRestoration(PretextTask):
    """Context restoration: swap pairs of non-overlapping ``K x K`` patches (sec. 2.4, ref. 8).

    Off the CPU (or under autograd) each image's permutation is precomputed in its mask bank, so a
    batch costs one ``gather``; on the CPU a compiled kernel copies and swaps the patches. Either way
    every output channel is an exact permutation of the input channel, with the same permutation
    in every channel, even where random-sampled pairs overlap other pairs. With ``poisson_disc``
    the moved pixels are exactly the patches' union; with ``random`` they lie in that union, and
    a later pair can carry a pixel straight back to where it started: the mask bank draws such a
    layout again when it moves less than ``coverage`` of the image, so every entry moves at least
    that much.

    Args:
        **options: The :class:`~inpaintssl.corruption.base.PretextTask` options.

    Example:
        >>> import torch
        >>> x = torch.arange(64.0 * 64).reshape(1, 1, 64, 64)
        >>> y = ContextRestoration(patch_size=8, bank_size=2).corrupt(x)
        >>> bool((y != x).float().mean() >= 0.25), torch.equal(y.flatten().sort().values, x.flatten())
        (True, True)
    """

    pairs: ClassVar[bool] = True

    def apply(self, images: Tensor, *, bank: MaskBank, choice: Tensor) -> Tensor:
        """``(N, C, H, W)`` with each image's patch pairs swapped, identically in every channel."""
        if images.device.type == "cpu" and not (images.requires_grad and torch.is_grad_enabled()):
            # On the CPU the full-image gather is memory-bound (it also reads an (N, H*W) int64
            # index, with a cache miss per pixel); the compiled block swap costs about one copy.
            return bank.swap_patches(images, choice)
        batch, channels, height, width = images.shape
        index = bank.permutations_for(choice)[:, None, :].expand(batch, channels, height * width)
        return torch.gather(images.reshape(batch, channels, height * width), 2, index).reshape(images.shape)
