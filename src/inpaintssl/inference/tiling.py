"""Sliding-window prediction: a network trained on crops, run over whole slices in overlapping tiles.

A run that cropped its slices to ``data.image_size`` (``crop_or_pad``) saw only the centre of
larger slices; :func:`~inpaintssl.inference.predict.predict` by default does the same, so
anatomy outside the centre is never labelled. With ``large_slices="sliding_window"`` every slice
is covered by windows of the training size, neighbours overlapping by ``overlap`` of a window,
and the class probabilities of overlapping windows are blended with a Gaussian weight that
trusts each window's centre more than its border (where the network lacks context), as nnU-Net
(Isensee et al., Nat. Methods 2021) and MONAI's ``sliding_window_inference`` do. Each window has
exactly the training size, so normalisation statistics inside the network (GroupNorm) see inputs
of the size they were trained on.

Example:
    >>> tile_starts(56, 48, overlap=0.5), tile_starts(100, 48, overlap=0.5), tile_starts(40, 48, overlap=0.5)
    ([0, 8], [0, 17, 34, 52], [0])
    >>> weights = gaussian_weights((5, 5))
    >>> float(weights[2, 2]), bool(weights[0, 0] < weights[0, 2] < weights[2, 2])
    (1.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from inpaintssl.data.preprocess import fit_to_size

__all__ = ["gaussian_weights", "sliding_window_probabilities", "tile_starts"]

GAUSSIAN_SIGMA_SCALE = 1.0 / 8.0
"""Standard deviation of the blending weight as a share of the window side (nnU-Net's choice)."""


def tile_starts(length: int, size: int, *, overlap: float) -> list[int]:
    """Offsets of windows of ``size`` that cover ``range(length)``, neighbours overlapping by at
    least ``overlap`` of a window, spread evenly from the first pixel to the last.

    Raises:
        ValueError: ``overlap`` outside ``[0, 1)`` or a non-positive ``size``.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap={overlap}; expected a share of the window in [0, 1)")
    if size < 1:
        raise ValueError(f"window size {size}; expected a positive number of pixels")
    if length <= size:
        return [0]
    step = max(1, math.floor(size * (1.0 - overlap)))
    count = math.ceil((length - size) / step) + 1
    # Integer floor division: neighbours are never more than `step` apart (rounding half to even
    # could put two of them step + 1 apart).
    return [i * (length - size) // (count - 1) for i in range(count)]


def gaussian_weights(size: tuple[int, int], *, sigma_scale: float = GAUSSIAN_SIGMA_SCALE) -> torch.Tensor:
    """``(H, W)`` float32 blending weight: a Gaussian centred on the window, 1 at its centre."""
    axes = []
    for n in size:
        offset = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        axes.append(torch.exp(-0.5 * (offset / (n * sigma_scale)) ** 2))
    weights = axes[0][:, None] * axes[1][None, :]
    return (weights / weights.max()).to(torch.float32)


def sliding_window_probabilities(
    images: torch.Tensor,
    *,
    size: tuple[int, int],
    probabilities_of: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    overlap: float = 0.5,
) -> torch.Tensor:
    """Class probabilities ``(N, C_out, H, W)`` of ``images`` ``(N, C, H, W)`` from windows of ``size``.

    A side shorter than the window is padded (centred, as ``crop_or_pad`` pads in training) and
    the padding cut off again; every pixel is covered by at least one window.

    Args:
        images: The slices, on the device the network runs on.
        size: The window ``(H, W)``: the run's ``data.image_size``.
        probabilities_of: Maps a batch of windows ``(B, C, *size)`` to probabilities ``(B, C_out, *size)``.
        batch_size: Windows per call of ``probabilities_of``.
        overlap: Share of a window that neighbours overlap by at least.

    Raises:
        ValueError: No images, or ``overlap`` outside ``[0, 1)``.
    """
    if images.shape[0] == 0:
        raise ValueError("sliding_window_probabilities: no images")
    height, width = int(images.shape[-2]), int(images.shape[-1])
    padded = (max(height, size[0]), max(width, size[1]))
    if padded != (height, width):
        images = torch.stack([fit_to_size(i, padded, mode="crop_or_pad", kind="image") for i in images])
    # Every image has the same windows, so their summed weight is one (H, W) map.
    corners = [
        (top, left)
        for top in tile_starts(padded[0], size[0], overlap=overlap)
        for left in tile_starts(padded[1], size[1], overlap=overlap)
    ]
    windows = [(n, top, left) for n in range(images.shape[0]) for top, left in corners]
    weights = gaussian_weights(size).to(images.device)
    norm = torch.zeros(padded, dtype=torch.float32, device=images.device)
    for top, left in corners:
        norm[top : top + size[0], left : left + size[1]] += weights
    chunks = [windows[first : first + batch_size] for first in range(0, len(windows), batch_size)]
    total = torch.zeros(0)
    for number, chunk in enumerate(chunks):
        crops = torch.stack([images[n, :, t : t + size[0], x : x + size[1]] for n, t, x in chunk])
        scores = probabilities_of(crops).float()
        if number == 0:  # the channel count is known once the network has answered
            total = scores.new_zeros((images.shape[0], scores.shape[1], *padded))
        for (n, t, x), score in zip(chunk, scores):
            total[n, :, t : t + size[0], x : x + size[1]] += score * weights
    blended = total / norm
    if padded != (height, width):
        grid = (height, width)
        blended = torch.stack([fit_to_size(b, grid, mode="crop_or_pad", kind="image") for b in blended])
    return blended
