"""Local pixel shuffling inside the corruption patches: a third-party pretext task for inpaintssl.

Models Genesis (Zhou et al., Medical Image Analysis 2021) corrupts an image by shuffling the
pixels inside small windows, so that a network has to restore local texture and boundaries from
the intact surroundings. Here the windows are the ``K x K`` patches an inpainting sampler places
(Dominic et al. 2023, sec. 2.4), so the task reuses inpaintssl's samplers, mask banks, coverage
and seeding unchanged. It differs from ``context_restoration`` only in where the masked pixels go:
to another place inside their own patch instead of into the patch they are swapped with.

Example:
    >>> import numpy as np
    >>> perm = local_shuffle_permutation(
    ...     np.array([[0, 0]]), shape=(4, 4), patch_size=2, rng=np.random.default_rng(0)
    ... )
    >>> moved = perm != np.arange(16)
    >>> bool(moved.reshape(4, 4)[:2, :2].all()), int(moved.sum())
    (True, 4)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from inpaintssl.corruption import MaskBank, PretextTask

__all__ = ["LocalPixelShuffle", "local_shuffle_permutation", "patch_cells"]


def patch_cells(corners: NDArray[np.int64], *, shape: tuple[int, int], patch_size: int) -> NDArray[np.int64]:
    """Label every pixel with the patch whose pixels it is shuffled among.

    A pixel belongs to the first patch in ``corners`` that covers it (only the ``random`` sampler
    lets patches overlap). A patch left with a single pixel of its own would have to keep that
    pixel in place, so the pixel joins the cell of another pixel of the same patch.

    Args:
        corners: ``(N, 2)`` top-left corners ``(row, col)`` of the ``K x K`` patches.
        shape: Image shape ``(H, W)``.
        patch_size: Patch side ``K``.

    Returns:
        ``(H, W)`` int64 cell labels, ``-1`` outside every patch. Every cell has at least 2 pixels
        when ``patch_size >= 2``.

    Example:
        >>> patch_cells(np.array([[0, 0], [1, 1]]), shape=(3, 3), patch_size=2)
        array([[ 0,  0, -1],
               [ 0,  0,  1],
               [-1,  1,  1]])
    """
    cells = np.full(shape, -1, dtype=np.int64)
    k = patch_size
    # Painting the patches last-to-first leaves each pixel with the first patch that covers it.
    for index in range(len(corners) - 1, -1, -1):
        row, col = (int(v) for v in corners[index])
        cells[row : row + k, col : col + k] = index
    counts = np.bincount(cells[cells >= 0], minlength=len(corners))
    # Increasing order: a patch's other pixels belong to earlier patches, already merged by now.
    for single in np.flatnonzero(counts == 1).tolist():
        row, col = (int(v) for v in corners[single])
        window = cells[row : row + k, col : col + k]
        own = window == single
        window[own] = window[~own][0]
    return cells


def local_shuffle_permutation(
    corners: NDArray[np.int64], *, shape: tuple[int, int], patch_size: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Flat gather index that moves every pixel of every patch to another place in its patch.

    The pixels of each cell (see :func:`patch_cells`) are put in a random order and each one takes
    the value of the next, the last the value of the first: one random cycle per cell, so no
    covered pixel keeps its value's position, and pixels outside the patches stay where they are.

    Args:
        corners: ``(N, 2)`` top-left corners of the ``K x K`` patches.
        shape: Image shape ``(H, W)``.
        patch_size: Patch side ``K`` (at least 2).
        rng: Draws the cycle order.

    Returns:
        ``(H*W,)`` int64 permutation: the corrupted image is ``x.reshape(-1)[perm].reshape(H, W)``.

    Example:
        >>> perm = local_shuffle_permutation(
        ...     np.array([[1, 1]]), shape=(3, 4), patch_size=2, rng=np.random.default_rng(1)
        ... )
        >>> sorted(perm.tolist()) == list(range(12)), (perm != np.arange(12)).sum().item()
        (True, 4)
    """
    height, width = shape
    perm = np.arange(height * width, dtype=np.int64)
    flat = patch_cells(corners, shape=shape, patch_size=patch_size).reshape(-1)
    inside = np.flatnonzero(flat >= 0)
    if inside.size == 0:
        return perm
    # Sorting by (cell, random key) groups each cell's pixels in a random order.
    order = inside[np.lexsort((rng.random(inside.size), flat[inside]))]
    cell = flat[order]
    boundary = cell[1:] != cell[:-1]
    first = np.concatenate(([True], boundary))
    last = np.concatenate((boundary, [True]))
    source = np.roll(order, -1)
    source[last] = order[first]
    perm[order] = source
    return perm


class LocalPixelShuffle(PretextTask):
    """Shuffle the pixels inside each ``K x K`` patch; everything outside the patches is kept.

    Every covered pixel moves (each patch's pixels form one random cycle), all channels of an
    image get the same permutation, and each output channel is a permutation of its input, so
    intensity statistics stay exactly as they were and only local structure is destroyed.
    Permutations are drawn once per mask-bank entry from ``seed`` on the CPU, cached per image
    shape and device, and applied with one ``gather`` per batch.

    Args:
        patch_size: Patch side ``K`` in pixels, at least 2.
        sampler: A registered sampler name (``"poisson_disc"``, ``"random"``) or a sampler instance.
        coverage: Share of the image area the patches cover at least (the paper fixes 1/4).
        bank_size: Base masks per input shape (4 orientations each).
        seed: Seeds the masks, the permutations and the internal generator.
        sampler_params: Keyword arguments for the sampler.

    Raises:
        ValueError: ``patch_size`` below 2 (one pixel cannot be shuffled), or any option the
            :class:`~inpaintssl.corruption.PretextTask` base rejects.

    Example:
        >>> import torch
        >>> task = LocalPixelShuffle(patch_size=4, bank_size=2)
        >>> x = torch.randn(2, 3, 16, 16)
        >>> moved = task.corrupt(x) != x
        >>> bool(moved[:, 0].float().mean() >= 0.25), torch.equal(moved, moved[:, :1].expand_as(moved))
        (True, True)
    """

    pairs: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        # The base class takes every option; its signature becomes this task's (PretextTask
        # composes it), so PRETEXT_TASKS.build still names a misspelt option.
        super().__init__(**options)
        if self.patch_size < 2:
            raise ValueError(
                f"patch_size={self.patch_size!r} is too small for local_pixel_shuffle; expected "
                "patch_size >= 2 (a 1x1 patch has no other pixel to swap with)"
            )
        self._permutations: dict[tuple[int, int, torch.device], Tensor] = {}

    def permutations(self, bank: MaskBank) -> Tensor:
        """``(len(bank), H*W)`` int32 gather indices for ``bank``, on the bank's device.

        Drawn on the CPU from ``(seed, H, W)`` and copied to other devices, so every device
        corrupts identically.
        """
        height, width = bank.shape
        key = (height, width, bank.device)
        if key not in self._permutations:
            host = self._permutations.get((height, width, torch.device("cpu")))
            if host is None:
                rng = np.random.default_rng([self.seed, height, width])
                rows = [
                    local_shuffle_permutation(c, shape=bank.shape, patch_size=bank.patch_size, rng=rng)
                    for c in bank.corners
                ]
                # int32 halves the cache (it is 4 * bank_size * H * W entries); gather widens the rows used.
                host = torch.from_numpy(np.stack(rows).astype(np.int32))
                self._permutations[(height, width, torch.device("cpu"))] = host
            self._permutations[key] = host.to(bank.device)
        return self._permutations[key]

    def apply(self, images: Tensor, *, bank: MaskBank, choice: Tensor) -> Tensor:
        """``(N, C, H, W)`` with each image's patches shuffled, identically in every channel."""
        batch, channels, height, width = images.shape
        rows = self.permutations(bank).index_select(0, choice).long()
        index = rows[:, None, :].expand(batch, channels, height * width)
        return torch.gather(images.reshape(batch, channels, height * width), 2, index).reshape(images.shape)
