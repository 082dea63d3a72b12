"""The contract every dataset keeps: 2D slices with one-hot foreground labels and metadata.

A dataset registered in :data:`inpaintssl.registry.DATASETS` is built as
``DATASETS.build(name, split=..., labelled=..., **params)`` and returns a :class:`SliceDataset`.
Each item is a dict:

``image``
    ``(C, H, W)`` float32 tensor, normalised as in paper sec. 2.2.
``label``
    ``(K, H, W)`` float32 one-hot tensor over the K *foreground* classes (background is the
    pixels where every channel is 0, as in the authors' sigmoid-per-class head). Absent when the
    dataset is unlabelled.
``volume_id``
    The unit that label-limited subsets are drawn by (a scan for 3D data).
``slice_index``
    Index of the slice inside its volume.
``spacing``
    ``(3,)`` float64 tensor ``(row_mm, col_mm, slice_mm)``: the voxel spacing.

Datasets may add more keys (e.g. ``hu`` for CT, ``echo1``/``echo2``/``scan_params`` for
SKM-TEA); collation keeps them.

Example:
    >>> from inpaintssl.data.base import SliceDataset
    >>> issubclass(SliceDataset, object)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from inpaintssl.errors import DataError

__all__ = ["DataError", "SliceDataset"]


class SliceDataset(Dataset[dict[str, Any]]):
    """Base class of 2D-slice datasets.

    Subclasses set :attr:`in_channels`, :attr:`class_names` and :attr:`volume_ids`
    (one entry per item) and implement ``__len__`` and ``__getitem__``.
    """

    in_channels: int = 1
    class_names: tuple[str, ...] = ()
    volume_ids: Sequence[str] = ()
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def num_classes(self) -> int:
        """Number of foreground classes K (0 for unlabelled data)."""
        return len(self.class_names)

    @property
    def labelled(self) -> bool:
        """Whether items carry a ``label``."""
        return self.num_classes > 0

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the first item (datasets of mixed sizes must be fitted to one size)."""
        image = self[0]["image"]
        assert isinstance(image, torch.Tensor)
        c, h, w = image.shape
        return int(c), int(h), int(w)
