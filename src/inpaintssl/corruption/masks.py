"""Mask banks: corruption masks precomputed once per input shape (paper sec. 2.4).

The authors precomputed 100 masks per run and rotated them by 0/90/180/270 degrees at use, for
400 effective masks, but fixed the masks at 512x512, which breaks other shapes (DESIGN.md
section 2). A :class:`MaskBank` samples ``B`` base masks for the real ``(H, W)`` and precomputes
each in the four orientations valid for that shape:

* square images: rotations by 0, 90, 180 and 270 degrees (as ``np.rot90(mask, k)``);
* non-square images: identity, vertical flip, horizontal flip and 180 degree rotation, the
  symmetries that map an ``H x W`` rectangle onto itself (a 90 degree turn would give ``W x H``).

Entry ``c`` of the bank is base mask ``c // 4`` in orientation ``c % 4``. Orientations are
applied to the patch corners, then rasterised, so every entry is exactly what the sampler's
invariants promise, and using an entry is a single row lookup. Memory: ``4 * B * H * W`` bytes of
bool masks, plus ``16 * B * H * W`` bytes of int32 permutations for swap tasks (about 105 MB and
420 MB for the default ``B = 100`` at 512x512; lower ``bank_size`` to trade variety for memory).

Example:
    >>> from inpaintssl.corruption.samplers import PoissonDiscSampler
    >>> bank = MaskBank.build(
    ...     sampler=PoissonDiscSampler(), shape=(32, 48), patch_size=8, size=3, seed=0, pairs=True
    ... )
    >>> len(bank), tuple(bank.masks_for(torch.tensor([0, 5])).shape)
    (12, (2, 32, 48))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from inpaintssl.corruption._raster import swap_index, union_mask
from inpaintssl.corruption.samplers import Sampler

__all__ = ["ORIENTATIONS", "MaskBank", "orient_corners", "patch_union", "swap_permutation"]

ORIENTATIONS = 4
"""Orientations per base mask (see the module docstring)."""


def orient_corners(
    corners: NDArray[np.int64], *, shape: tuple[int, int], patch_size: int, orientation: int
) -> NDArray[np.int64]:
    """Corners ``(N, 2)`` of the same patches after orienting the ``(H, W)`` image.

    Orientation ``k`` is ``np.rot90(image, k)`` for square images and, for non-square ones,
    ``image``, ``image[::-1]``, ``image[:, ::-1]``, ``image[::-1, ::-1]`` for ``k = 0..3``.
    Pair order is kept, so pairs stay pairs.

    Raises:
        ValueError: ``orientation`` outside ``0..3``.

    Example:
        >>> orient_corners(np.array([[0, 10]]), shape=(32, 32), patch_size=8, orientation=1)
        array([[14,  0]])
    """
    if orientation not in range(ORIENTATIONS):
        raise ValueError(f"orientation={orientation!r} must be one of 0, 1, 2, 3")
    height, width = shape
    rows, cols = corners[:, 0], corners[:, 1]
    if height == width:
        for _ in range(orientation):
            # np.rot90 sends pixel (i, j) to (W - 1 - j, i), so patch corner (r, c) to (W - K - c, r).
            rows, cols = width - patch_size - cols, rows
    else:
        if orientation in (1, 3):
            rows = height - patch_size - rows
        if orientation in (2, 3):
            cols = width - patch_size - cols
    return np.stack([rows, cols], axis=1).astype(np.int64)


def patch_union(corners: NDArray[np.int64], *, shape: tuple[int, int], patch_size: int) -> NDArray[np.bool_]:
    """``(H, W)`` bool mask of the pixels covered by the ``K x K`` patches at ``corners`` ``(N, 2)``.

    Example:
        >>> int(patch_union(np.array([[0, 0], [1, 1]]), shape=(4, 4), patch_size=2).sum())
        7
    """
    out = np.empty(shape, dtype=bool)
    union_mask(np.ascontiguousarray(corners, dtype=np.int64), patch_size, out)
    return out


def swap_permutation(
    corners: NDArray[np.int64], *, shape: tuple[int, int], patch_size: int
) -> NDArray[np.int32]:
    """Flat gather index that swaps the patch pairs ``(corners[2i], corners[2i+1])`` in order.

    The swaps are applied one after another to an index map, so the result is an exact
    permutation of ``H*W`` even where a pair overlaps an earlier pair (random sampling): the
    corrupted image is ``x.reshape(-1)[perm].reshape(H, W)``.

    Returns:
        ``(H*W,)`` int32 permutation.

    Raises:
        ValueError: If the number of corners is odd or a pair's two patches overlap each other.

    Example:
        >>> x = np.arange(16).reshape(4, 4)
        >>> perm = swap_permutation(np.array([[0, 0], [2, 2]]), shape=(4, 4), patch_size=2)
        >>> x.reshape(-1)[perm].reshape(4, 4)[:2, :2]
        array([[10, 11],
               [14, 15]])
    """
    corners = np.ascontiguousarray(corners, dtype=np.int64)
    _check_pairs(corners, patch_size)
    out = np.empty(shape, dtype=np.int32)
    swap_index(corners, patch_size, out)
    return out.reshape(-1)


@dataclass(frozen=True, eq=False)
class MaskBank:
    """Precomputed corruption masks for one image shape, on one device.

    Attributes:
        shape: Image shape ``(H, W)`` the bank was built for.
        patch_size: Patch side ``K``.
        corners: ``4 * B`` arrays of ``(N_c, 2)`` patch corners, one per entry (pairs in rows
            ``2i, 2i + 1`` when built with ``pairs=True``).
        masks: ``(4 * B, H, W)`` bool union of each entry's patches.
        permutations: ``(4 * B, H*W)`` int32 swap permutations (``None`` unless built with pairs).
    """

    shape: tuple[int, int]
    patch_size: int
    corners: tuple[NDArray[np.int64], ...]
    masks: Tensor
    permutations: Tensor | None

    @classmethod
    def build(
        cls,
        *,
        sampler: Sampler,
        shape: tuple[int, int],
        patch_size: int,
        coverage: float = 0.25,
        size: int = 100,
        seed: int = 0,
        pairs: bool = False,
    ) -> MaskBank:
        """Sample ``size`` base masks on the CPU with ``numpy.random.default_rng(seed)``.

        Args:
            sampler: Any :class:`~inpaintssl.corruption.samplers.Sampler`.
            shape: Image shape ``(H, W)``.
            patch_size: Patch side ``K``.
            coverage: Share of the image each mask covers at least.
            size: Base masks ``B`` (the bank holds ``4 * B`` entries).
            seed: Seed of the bank; equal seeds give equal banks on every device.
            pairs: Sample patch pairs and precompute swap permutations (context restoration).

        Raises:
            ValueError: Bad ``size`` or an impossible sampling request (from the sampler).
        """
        if isinstance(size, bool) or int(size) != size or size < 1:
            raise ValueError(f"size={size!r} must be a positive integer (base masks in the bank)")
        height, width = (int(side) for side in shape)
        if pairs and height * width >= 2**31:
            raise ValueError(f"shape={shape} has too many pixels for int32 permutations")
        size_hw = (height, width)
        rng = np.random.default_rng(seed)
        bases = [
            _checked(
                sampler.sample(shape=size_hw, patch_size=patch_size, coverage=coverage, rng=rng, pairs=pairs),
                sampler=sampler,
                shape=size_hw,
                patch_size=patch_size,
                pairs=pairs,
            )
            for _ in range(size)
        ]
        corners = tuple(
            orient_corners(base, shape=size_hw, patch_size=patch_size, orientation=k)
            for base in bases
            for k in range(ORIENTATIONS)
        )
        # The kernels write straight into the bank's rows: no per-entry arrays to stack afterwards.
        masks = np.empty((len(corners), height, width), dtype=bool)
        permutations = np.empty((len(corners), height, width), dtype=np.int32) if pairs else None
        for entry, entry_corners in enumerate(corners):
            union_mask(entry_corners, patch_size, masks[entry])
            if permutations is not None:
                swap_index(entry_corners, patch_size, permutations[entry])
        return cls(
            shape=(height, width),
            patch_size=patch_size,
            corners=corners,
            masks=torch.from_numpy(masks),
            permutations=None
            if permutations is None
            else torch.from_numpy(permutations.reshape(len(corners), -1)),
        )

    def __len__(self) -> int:
        return len(self.corners)

    @property
    def device(self) -> torch.device:
        """Device holding the bank's tensors."""
        return self.masks.device

    def to(self, device: torch.device | str) -> MaskBank:
        """A copy of the bank with its tensors on ``device``."""
        return dataclasses.replace(
            self,
            masks=self.masks.to(device),
            permutations=None if self.permutations is None else self.permutations.to(device),
        )

    def masks_for(self, choice: Tensor) -> Tensor:
        """``(N, H, W)`` bool masks of entries ``choice`` (``(N,)`` int64, True where corrupted)."""
        return self.masks[_as_index(choice, self.device)]

    def permutations_for(self, choice: Tensor) -> Tensor:
        """``(N, H*W)`` int64 gather indices of entries ``choice`` (``(N,)`` int64).

        Raises:
            ValueError: If the bank was built without pairs.
        """
        if self.permutations is None:
            raise ValueError("this MaskBank has no permutations; build it with pairs=True")
        # Stored as int32 to halve the bank; gather needs int64, so only the chosen rows are widened.
        return self.permutations[_as_index(choice, self.device)].long()


def _checked(
    corners: NDArray[np.int64], *, sampler: Sampler, shape: tuple[int, int], patch_size: int, pairs: bool
) -> NDArray[np.int64]:
    # The kernels index without bounds checks, so a plugin sampler's output is verified first.
    corners = np.asarray(corners)
    if corners.ndim != 2 or corners.shape[1] != 2 or not np.issubdtype(corners.dtype, np.integer):
        raise ValueError(
            f"sampler {sampler!r} returned {corners.dtype} corners of shape {corners.shape}; "
            "expected an (N, 2) integer array"
        )
    limit = np.array([shape[0] - patch_size, shape[1] - patch_size])
    if len(corners) and ((corners < 0).any() or (corners > limit).any()):
        raise ValueError(
            f"sampler {sampler!r} returned corners outside [0, {limit[0]}] x [0, {limit[1]}] for "
            f"shape {shape} and patch_size {patch_size}"
        )
    corners = np.ascontiguousarray(corners, dtype=np.int64)
    if pairs:
        try:
            _check_pairs(corners, patch_size)
        except ValueError as exc:
            raise ValueError(f"sampler {sampler!r} returned invalid pairs: {exc}") from exc
    return corners


def _check_pairs(corners: NDArray[np.int64], patch_size: int) -> None:
    # A pair whose patches overlap has no well-defined swap: the second copy would clobber the first.
    if len(corners) % 2:
        raise ValueError(f"corners must hold patch pairs (an even count), got {len(corners)} corners")
    apart = (np.abs(corners[0::2] - corners[1::2]) >= patch_size).any(axis=1)
    if not apart.all():
        bad = int(np.flatnonzero(~apart)[0])
        raise ValueError(
            f"pair {bad} overlaps itself: patches at {corners[2 * bad].tolist()} and "
            f"{corners[2 * bad + 1].tolist()} are closer than patch_size={patch_size} in both axes"
        )


def _as_index(choice: Tensor, device: torch.device) -> Tensor:
    if not isinstance(choice, Tensor) or choice.dtype != torch.int64 or choice.ndim != 1:
        found = (
            f"{choice.dtype} of shape {tuple(choice.shape)}" if isinstance(choice, Tensor) else type(choice)
        )
        raise ValueError(f"choice must be a 1-D int64 tensor of bank entries, got {found}")
    return choice.to(device)
