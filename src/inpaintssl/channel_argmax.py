"""The index of each pixel's largest channel, as ``torch.argmax(dim=1)`` gives it, computed faster.

Label maps come from class scores ``(N, C, H, W)`` by an arg-max over the channels: every
``predict`` batch (:func:`~inpaintssl.inference.labelling.label_map`), every validation batch
(:meth:`~inpaintssl.losses.base.SegmentationLoss.predict_onehot`) and, with a softmax loss, every
training step's cross-entropy target (:meth:`~inpaintssl.losses.base.SegmentationLoss.class_index`).
On the CPU, PyTorch's ``argmax`` reduces along a strided axis one element at a time: over the
channels of a contiguous (NCHW) tensor it took 10 times as long as ``torch.max(dim=1)`` for
float32 scores and 18 times for a uint8 one-hot map, whose indices are the same (a 2-core AMD
EPYC, torch 2.13; ``benchmarks/bench_channel_argmax.py``). Where the channels are the innermost
axis in memory (``channels_last``), ``argmax`` takes its vectorised path and was as fast, so it
is kept there.

Both return the first largest channel where several tie, and a NaN counts as the largest (the
first NaN's channel), as PyTorch documents for each; the indices are equal to the bit.

Example:
    >>> import torch
    >>> scores = torch.tensor([[[[0.1, 2.0]], [[0.9, 2.0]], [[0.5, -1.0]]]])  # (1, 3, 1, 2)
    >>> channel_argmax(scores).tolist()
    [[[1, 0]]]
"""

from __future__ import annotations

import torch

__all__ = ["channel_argmax"]


def channel_argmax(scores: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """``scores.argmax(dim=1, keepdim=keepdim)``, the same ``int64`` indices, on the faster kernel.

    Args:
        scores: ``(N, C, ...)`` scores, probabilities or one-hot maps, any dtype ``argmax`` takes.
        keepdim: Keep the channel axis, of size 1.

    Returns:
        The channel of each element's largest score (the first where several tie).

    Example:
        >>> channel_argmax(torch.zeros(2, 3, 4, 5), keepdim=True).shape
        torch.Size([2, 1, 4, 5])
    """
    if scores.ndim >= 2 and scores.stride(1) == 1 and scores.shape[1] > 1:
        return scores.argmax(dim=1, keepdim=keepdim)  # channels innermost: argmax's vectorised path
    return torch.max(scores, dim=1, keepdim=keepdim).indices
