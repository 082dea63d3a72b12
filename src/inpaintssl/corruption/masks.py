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
invariants promise, and using an entry is a single row lookup. Dense forms are built on first
use: ``4 * B * H * W`` bytes of bool masks (context prediction) and ``16 * B * H * W`` bytes of
int32 permutations (context restoration off the CPU or under autograd), about 105 MB and 420 MB
for the default ``B = 100`` at 512x512; lower ``bank_size`` to trade variety for memory.

Example:
    >>> from inpaintssl.corruption.samplers import PoissonDiscSampler
    >>> bank = MaskBank.build(
    ...     sampler=PoissonDiscSampler(), shape=(32, 48), patch_size=8, size=3, seed=0, pairs=True
    ... )
    >>> len(bank), tuple(bank.masks_for(torch.tensor([0, 5])).shape)
    (12, (2, 32, 48))
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from inpaintssl.corruption._raster import swap_blocks, swap_index, union_mask
from inpaintssl.corruption.samplers import Sampler, _is_integral, describe_sampler, target_pixels

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
        ValueError: ``orientation`` is not an integer in ``0..3``, or anything :func:`patch_union`
            refuses (a bad ``shape`` or ``patch_size``, or ``corners`` that are not an ``(N, 2)``
            integer array of corners inside the image).

    Example:
        >>> orient_corners(np.array([[0, 10]]), shape=(32, 32), patch_size=8, orientation=1)
        array([[14,  0]])
    """
    # A float 1.0 worked on non-square images only (it is ``in (1, 3)``) and failed in range() on
    # square ones; True would pass as 1.
    if (
        isinstance(orientation, bool)
        or not isinstance(orientation, numbers.Integral)
        or orientation not in range(ORIENTATIONS)
    ):
        raise ValueError(f"orientation={orientation!r} must be one of the integers 0, 1, 2, 3")
    height, width, patch_size = _image_and_patch(shape, patch_size)
    # A corner outside the image would come back as another corner outside it (negative after a
    # rotation), and float corners would be truncated: refused as patch_union refuses them.
    corners = _check_corners(corners, shape=(height, width), patch_size=patch_size)
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

    Raises:
        ValueError: ``corners`` is not an ``(N, 2)`` integer array, ``shape`` or ``patch_size`` is
            not positive, or a patch does not lie wholly inside the image.

    Example:
        >>> int(patch_union(np.array([[0, 0], [1, 1]]), shape=(4, 4), patch_size=2).sum())
        7
    """
    height, width, patch = _image_and_patch(shape, patch_size)
    corners = _check_corners(corners, shape=(height, width), patch_size=patch)
    out = np.empty((height, width), dtype=bool)
    union_mask(corners, patch, out)
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
        ValueError: If the number of corners is odd, a pair's two patches overlap each other, or
            anything :func:`patch_union` refuses.

    Example:
        >>> x = np.arange(16).reshape(4, 4)
        >>> perm = swap_permutation(np.array([[0, 0], [2, 2]]), shape=(4, 4), patch_size=2)
        >>> x.reshape(-1)[perm].reshape(4, 4)[:2, :2]
        array([[10, 11],
               [14, 15]])
    """
    height, width, patch = _image_and_patch(shape, patch_size)
    corners = _check_corners(corners, shape=(height, width), patch_size=patch)
    _check_pairs(corners, patch)
    out = np.empty((height, width), dtype=np.int32)
    swap_index(corners, patch, out)
    return out.reshape(-1)


def _check_corners(
    corners: NDArray[np.integer], *, shape: tuple[int, int], patch_size: int, name: str = "corners"
) -> NDArray[np.int64]:
    """``corners`` as a C-contiguous int64 ``(N, 2)`` array, once every patch is inside the image.

    The compiled kernels index without bounds checks: a corner outside ``[0, H - K] x [0, W - K]``
    would read or write past the image (or, negative, wrap to its other edge), so every path from
    corners to a kernel goes through here first.

    Args:
        corners: ``(N, 2)`` integer array of patch corners ``(row, col)``.
        shape: Image shape ``(H, W)``, positive ints.
        patch_size: Patch side ``K``, a positive int.
        name: What the message calls ``corners`` (``corners[3]`` for a bank's entry 3).

    Raises:
        ValueError: Not an ``(N, 2)`` integer array, or a corner outside the image, naming its
            index, the corner, the patch size and the shape.

    Example:
        >>> _check_corners(np.array([[0, 28]]), shape=(32, 32), patch_size=8)
        Traceback (most recent call last):
        ...
        ValueError: corners[0]=[0, 28] lies outside [0, 24] x [0, 24], the corners of 8x8 patches \
inside a 32x32 image (shape=(32, 32), patch_size=8)
    """
    array = np.asarray(corners)
    # An empty float array (np.empty((0, 2))) holds no corner to truncate, so it is let through.
    if array.ndim != 2 or array.shape[1] != 2 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be an (N, 2) integer array, got {array.dtype} of shape {array.shape}")
    height, width = shape
    limit = np.array([height - patch_size, width - patch_size])
    outside = ((array < 0) | (array > limit)).any(axis=1)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{name}[{index}]={array[index].tolist()} lies outside [0, {limit[0]}] x [0, {limit[1]}], "
            f"the corners of {patch_size}x{patch_size} patches inside a {height}x{width} image "
            f"(shape={(height, width)}, patch_size={patch_size})"
        )
    return np.ascontiguousarray(array, dtype=np.int64)


def _image_and_patch(shape: tuple[int, int], patch_size: int) -> tuple[int, int, int]:
    """``(H, W, K)`` as plain ints, or a ValueError naming the argument that is not positive."""
    if (
        not isinstance(shape, Sequence | np.ndarray)
        or len(shape) != 2
        or not all(_is_integral(side) and side >= 1 for side in shape)
    ):
        raise ValueError(f"shape={shape!r} must be (H, W), two positive integers")
    if not _is_integral(patch_size) or patch_size < 1:
        raise ValueError(f"patch_size={patch_size!r} must be a positive integer")
    return int(shape[0]), int(shape[1]), int(patch_size)


class MaskBank:
    """Precomputed corruption masks for one image shape, on one device.

    The bank keeps every entry's patch corners; the dense forms are derived on first use, so a
    task only pays for what it needs: ``masks`` (context prediction), ``permutations`` (context
    restoration with autograd or off the CPU) or neither (restoration on the CPU swaps patches with
    the compiled :meth:`swap_patches`).

    Args:
        shape: Image shape ``(H, W)``.
        patch_size: Patch side ``K``.
        corners: One ``(N_e, 2)`` integer array of patch corners per entry (pairs in rows
            ``2i, 2i + 1`` when ``pairs``), already oriented; every patch must lie inside the
            image.
        pairs: Whether the entries are patch pairs to swap.
        device: Where :attr:`masks` and :attr:`permutations` live.

    Attributes:
        shape: Image shape ``(H, W)``.
        patch_size: Patch side ``K``.
        corners: The entries' corners.
        pairs: Whether the entries are patch pairs.
        device: Device of the dense tensors.

    Raises:
        ValueError: No entries, a bad ``shape`` or ``patch_size``, an entry that is not an
            ``(N_e, 2)`` integer array of corners inside the image (see :func:`patch_union`), or,
            with ``pairs``, an entry that :func:`swap_permutation` refuses (an odd count of
            corners, or a pair whose two patches overlap), naming the entry.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, int],
        patch_size: int,
        corners: Sequence[NDArray[np.int64]],
        pairs: bool,
        device: torch.device | str = "cpu",
    ) -> None:
        if not corners:
            raise ValueError("corners must hold at least one entry")
        height, width, patch = _image_and_patch(shape, patch_size)
        self.shape = (height, width)
        self.patch_size = patch
        # The kernels index these without bounds checks: a corner past the edge would write outside
        # the arrays (the constructor is public, so its input is not trusted to come from build).
        self.corners = tuple(
            _check_corners(entry, shape=self.shape, patch_size=patch, name=f"corners[{e}]")
            for e, entry in enumerate(corners)
        )
        if pairs:
            # swap_permutation refuses these: an odd count left the last patch masked but unmoved, and
            # a pair overlapping itself has no well-defined swap.
            for e, entry in enumerate(self.corners):
                _check_pairs(entry, patch, name=f"corners[{e}]")
        self.pairs = pairs
        self.device = torch.device(device)
        # All entries back to back, for kernels that take one entry per image.
        self._packed = np.ascontiguousarray(np.concatenate(self.corners), dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum([len(c) for c in self.corners])]).astype(np.int64)

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
        """Sample ``size`` base masks with ``numpy.random.default_rng(seed)``, in 4 orientations.

        Args:
            sampler: Any :class:`~inpaintssl.corruption.samplers.Sampler`.
            shape: Image shape ``(H, W)``.
            patch_size: Patch side ``K``.
            coverage: Share of the image each mask covers at least.
            size: Base masks ``B`` (the bank holds ``4 * B`` entries).
            seed: Seed of the bank; equal seeds give equal banks on every device.
            pairs: Sample patch pairs to swap (context restoration).

        Raises:
            ValueError: Bad ``size``, ``shape`` or ``patch_size``, an impossible sampling request
                (from the sampler) or a sampler that broke its contract.
        """
        # 3.0 or None failed inside range() or int() with a message naming no argument.
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"size={size!r} must be a positive integer (base masks in the bank)")
        # int() on each side truncated (32.7, 40) to a 32x40 bank, which the constructor refuses.
        height, width, patch_size = _image_and_patch(shape, patch_size)
        if pairs and height * width >= 2**31:
            raise ValueError(f"shape={shape} has too many pixels for int32 permutations")
        size_hw = (height, width)
        rng = np.random.default_rng(seed)

        def draw() -> NDArray[np.int64]:
            return _checked(
                sampler.sample(shape=size_hw, patch_size=patch_size, coverage=coverage, rng=rng, pairs=pairs),
                sampler=sampler,
                shape=size_hw,
                patch_size=patch_size,
                coverage=coverage,
                pairs=pairs,
            )

        bases = [draw() for _ in range(size)] if not pairs else []
        if pairs:
            # Pairs that overlap earlier pairs (random sampling) can carry pixels back where they
            # started: what moves may then fall short of the coverage the union reaches. Such a
            # layout is drawn again, so every entry moves at least ``coverage`` of the image.
            target = target_pixels(shape=size_hw, coverage=coverage)
            for _ in range(size):
                base, redraws = draw(), 0
                while _moved_pixels(base, patch_size=patch_size, shape=size_hw) < target:
                    if redraws == _SWAP_REDRAWS:
                        raise ValueError(
                            f"sampler {describe_sampler(sampler)}: {redraws + 1} pair layouts in a row for "
                            f"shape={size_hw}, patch_size={patch_size} moved fewer than {target} pixels "
                            f"(coverage={coverage}): later pairs swapped earlier ones back; expected pairs "
                            "that move at least the coverage, as non-overlapping pairs do"
                        )
                    base, redraws = draw(), redraws + 1
                bases.append(base)
        corners = [
            orient_corners(base, shape=size_hw, patch_size=patch_size, orientation=k)
            for base in bases
            for k in range(ORIENTATIONS)
        ]
        return cls(shape=size_hw, patch_size=patch_size, corners=corners, pairs=pairs)

    def __len__(self) -> int:
        return len(self.corners)

    def __repr__(self) -> str:
        return (
            f"MaskBank(shape={self.shape}, patch_size={self.patch_size}, entries={len(self)}, "
            f"pairs={self.pairs}, device={self.device})"
        )

    def to(self, device: torch.device | str) -> MaskBank:
        """The same entries with the dense tensors (built on demand) on ``device``."""
        return MaskBank(
            shape=self.shape,
            patch_size=self.patch_size,
            corners=self.corners,
            pairs=self.pairs,
            device=device,
        )

    @functools.cached_property
    def masks(self) -> Tensor:
        """``(E, H, W)`` bool union of each entry's patches (``4 * H * W`` bytes per base mask)."""
        host = np.empty((len(self), *self.shape), dtype=bool)
        for entry, corners in enumerate(self.corners):
            union_mask(corners, self.patch_size, host[entry])
        return torch.from_numpy(host).to(self.device)

    @functools.cached_property
    def permutations(self) -> Tensor | None:
        """``(E, H*W)`` int32 swap permutations (``16 * H * W`` bytes per base mask), or ``None``."""
        if not self.pairs:
            return None
        host = np.empty((len(self), *self.shape), dtype=np.int32)
        for entry, corners in enumerate(self.corners):
            swap_index(corners, self.patch_size, host[entry])
        return torch.from_numpy(host.reshape(len(self), -1)).to(self.device)

    def masks_for(self, choice: Tensor) -> Tensor:
        """``(N, H, W)`` bool masks of entries ``choice`` (``(N,)`` int64, True where corrupted)."""
        # index_select, not masks[choice]: advanced indexing is ~50x slower for bool rows on CPU.
        return self.masks.index_select(0, _as_index(choice, self.device))

    def permutations_for(self, choice: Tensor) -> Tensor:
        """``(N, H*W)`` int64 gather indices of entries ``choice`` (``(N,)`` int64).

        Raises:
            ValueError: If the bank was built without pairs.
        """
        if self.permutations is None:
            raise ValueError("this MaskBank has no permutations; build it with pairs=True")
        # Stored as int32 to halve the bank; gather needs int64, so only the chosen rows are widened.
        return self.permutations.index_select(0, _as_index(choice, self.device)).long()

    def swap_patches(self, images: Tensor, choice: Tensor) -> Tensor:
        """A copy of ``images`` with entry ``choice[n]``'s pairs swapped in every channel of image ``n``.

        Equal to gathering with :meth:`permutations_for`, but a compiled kernel copies each plane
        and swaps inside it, close to the cost of a plain copy, and needs no permutation table.
        CPU tensors only, and not differentiable.

        Args:
            images: ``(N, C, H, W)`` CPU tensor of any dtype and memory layout (kept).
            choice: ``(N,)`` int64 entries.

        Returns:
            ``(N, C, H, W)`` new tensor.

        Raises:
            ValueError: Not pairs, not on the CPU, a shape other than the bank's, or an entry
                out of range.
        """
        if not self.pairs:
            raise ValueError("this MaskBank has no pairs to swap; build it with pairs=True")
        if images.device.type != "cpu" or images.ndim != 4 or tuple(images.shape[-2:]) != self.shape:
            raise ValueError(
                f"images must be a CPU tensor (N, C, {self.shape[0]}, {self.shape[1]}), got "
                f"{tuple(images.shape)} on {images.device}"
            )
        entries = _as_index(choice, torch.device("cpu")).numpy()
        if len(entries) != images.shape[0] or (
            len(entries) and not 0 <= entries.min() <= entries.max() < len(self)
        ):
            raise ValueError(f"choice must hold {images.shape[0]} entries in [0, {len(self)}), got {entries}")
        out = torch.empty_like(images)
        # Swapping only moves bits, so an integer view of the same width serves every float dtype
        # (bfloat16 included, which NumPy cannot hold).
        bits = _SAME_WIDTH_INT[images.element_size()]
        swap_blocks(
            images.detach().view(bits).numpy(),
            out.view(bits).numpy(),
            self._packed,
            self._offsets,
            entries,
            self.patch_size,
        )
        return out


_SAME_WIDTH_INT: Mapping[int, torch.dtype] = MappingProxyType(
    {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
)


_SWAP_REDRAWS = 20
"""Pair layouts drawn again, at most, for one bank entry whose swaps moved too few pixels."""


def _moved_pixels(corners: NDArray[np.int64], *, patch_size: int, shape: tuple[int, int]) -> int:
    """Pixels that swapping ``corners``' pairs one after another leaves somewhere else."""
    permutation = swap_permutation(corners, shape=shape, patch_size=patch_size)
    return int(np.count_nonzero(permutation != np.arange(permutation.size, dtype=np.int32)))


def _checked(
    corners: NDArray[np.int64],
    *,
    sampler: Sampler,
    shape: tuple[int, int],
    patch_size: int,
    coverage: float,
    pairs: bool,
) -> NDArray[np.int64]:
    # The kernels index without bounds checks, so a plugin sampler's output is verified first.
    # The sampler is named only in a message: naming it reads every distribution's entry points,
    # which for each draw of a large bank would cost more than the drawing.
    corners = np.asarray(corners)
    if corners.ndim != 2 or corners.shape[1] != 2 or not np.issubdtype(corners.dtype, np.integer):
        raise ValueError(
            f"sampler {describe_sampler(sampler)} returned {corners.dtype} corners of shape "
            f"{corners.shape}; expected an (N, 2) integer array"
        )
    try:
        corners = _check_corners(corners, shape=shape, patch_size=patch_size)
    except ValueError as exc:
        raise ValueError(f"sampler {describe_sampler(sampler)} returned invalid corners: {exc}") from exc
    if pairs:
        try:
            _check_pairs(corners, patch_size)
        except ValueError as exc:
            raise ValueError(f"sampler {describe_sampler(sampler)} returned invalid pairs: {exc}") from exc
        return corners  # what the swaps move is checked against the coverage by the caller
    # Too few patches would corrupt less than asked, or nothing: pretraining would then learn to
    # copy its input, with a loss that looks like any other.
    target = target_pixels(shape=shape, coverage=coverage)
    covered = int(patch_union(corners, shape=shape, patch_size=patch_size).sum())
    if covered < target:
        raise ValueError(
            f"sampler {describe_sampler(sampler)} returned {len(corners)} patches covering {covered} of "
            f"the {shape[0] * shape[1]} pixels for shape {shape}, patch_size {patch_size}; expected their "
            f"union to cover at least coverage={coverage} of the image ({target} pixels)"
        )
    return corners


def _check_pairs(corners: NDArray[np.int64], patch_size: int, *, name: str = "corners") -> None:
    # A pair whose patches overlap has no well-defined swap: the second copy would clobber the first.
    if len(corners) % 2:
        raise ValueError(f"{name} must hold patch pairs (an even count), got {len(corners)} corners")
    apart = (np.abs(corners[0::2] - corners[1::2]) >= patch_size).any(axis=1)
    if not apart.all():
        bad = int(np.flatnonzero(~apart)[0])
        where = "" if name == "corners" else f"{name}: "
        raise ValueError(
            f"{where}pair {bad} overlaps itself: patches at {corners[2 * bad].tolist()} and "
            f"{corners[2 * bad + 1].tolist()} are closer than patch_size={patch_size} in both axes"
        )


def _as_index(choice: Tensor, device: torch.device) -> Tensor:
    if not isinstance(choice, Tensor) or choice.dtype != torch.int64 or choice.ndim != 1:
        found = (
            f"{choice.dtype} of shape {tuple(choice.shape)}" if isinstance(choice, Tensor) else type(choice)
        )
        raise ValueError(f"choice must be a 1-D int64 tensor of bank entries, got {found}")
    return choice.to(device)
