"""The pixel grids a slice passes through between the input and the model, and back.

The in-plane size a slice is resampled to (and whether that shrink needs a low-pass first), the
``mni152`` display orientation, the size the model takes, the border a centred crop cut, and
where a predicted slice goes back into its volume.

Example:
    >>> resampled_grid((48, 56), (1.0, 1.0), (2.0, 2.0)), shrinks_past_bilinear((48, 56), (16, 28))
    ((24, 28), True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # a hint only: the grid arithmetic needs nothing of the run's loading
    from inpaintssl.inference.trained_run import SlicePreprocessing

__all__ = [
    "cut_edge_mask",
    "from_display",
    "model_size",
    "place_slice",
    "resampled_grid",
    "shrinks_past_bilinear",
    "to_display",
]


def resampled_grid(
    grid: tuple[int, int], spacing: tuple[float, float], target: tuple[float, float]
) -> tuple[int, int]:
    """The slice size that covers the same field of view at the ``target`` spacing."""
    return (
        max(1, round(grid[0] * spacing[0] / target[0])),
        max(1, round(grid[1] * spacing[1] / target[1])),
    )


def shrinks_past_bilinear(grid: tuple[int, int], target: tuple[int, int]) -> bool:
    """Whether resizing ``grid`` to ``target`` shrinks an axis more than twofold.

    Up to twofold, bilinear sampling weighs every input pixel (at exactly two, it averages each
    pair); beyond, it skips pixels and finer detail folds into false patterns (aliasing), so the
    image is low-passed first.
    """
    return any(old > 2 * new for old, new in zip(grid, target))


def to_display(planes: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` slices in the ``mni152`` dataset's display orientation, as its runs saw them.

    The export metadata's ``in_plane: "transpose_flip_rows"``
    (:data:`~inpaintssl.inference.loading.InPlane`): ``s.T[::-1]`` of each ``(H, W)`` slice.
    """
    # The mni152 dataset's orientation: the second in-plane axis becomes the rows, flipped upwards.
    return planes.transpose(-1, -2).flip(-2)


def from_display(planes: torch.Tensor) -> torch.Tensor:
    """Undo :func:`to_display`."""
    return planes.flip(-2).transpose(-1, -2)


def model_size(shape: tuple[int, int], prep: SlicePreprocessing, multiple: int) -> tuple[int, int]:
    """The slice size the model takes: the run's ``image_size``, else ``shape`` padded to ``multiple``."""
    if prep.image_size is not None:
        return prep.image_size
    return (-(-shape[0] // multiple) * multiple, -(-shape[1] // multiple) * multiple)


def _filled(length: int, size: int) -> slice:
    """The model-grid positions a centred ``crop_or_pad`` fills with a side of ``length`` pixels."""
    if length >= size:
        return slice(0, size)
    start = (size - length) // 2
    return slice(start, start + length)


def cut_edge_mask(grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor | None:
    """``(H, W)`` host mask of the model-grid pixels on a border where the centred crop cut the slice.

    Only the slice's own pixels count: where the other axis was padded (a slice cut in height but
    narrower than the model), the padding on the cut rows is no edge of the scan, and its labels
    are dropped when the prediction is cut back to the slice.

    Example:
        >>> mask = cut_edge_mask((6, 2), (4, 4))  # rows cut 6 -> 4, columns padded 2 -> 4
        >>> mask.int().tolist()
        [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0]]
    """
    if grid[0] <= size[0] and grid[1] <= size[1]:
        return None
    rows, cols = _filled(grid[0], size[0]), _filled(grid[1], size[1])
    edges = torch.zeros(size, dtype=torch.bool)
    if grid[0] > size[0]:
        edges[[0, -1], cols] = True
    if grid[1] > size[1]:
        edges[rows, [0, -1]] = True
    return edges


def place_slice(volume: np.ndarray, plane: np.ndarray, *, axis: int, index: int, rank: int) -> None:
    """Write one slice back where :meth:`Volume.read` took it from."""
    if rank == 2:
        volume[...] = plane
        return
    where: list[Any] = [slice(None)] * 3
    where[axis] = index
    volume[tuple(where)] = plane
