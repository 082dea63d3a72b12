"""Dataset views: subsets by volume or item, label-free views, concatenation, fit-to-size.

Views are :class:`~inpaintssl.data.base.SliceDataset` objects over other datasets; they read
nothing until an item is asked for. They rely on optional attributes that the built-in datasets
provide and a plugin may: ``slice_indices`` (one per item, like ``volume_ids``),
``slice_shape(index) -> (H, W)``, ``slice_spacing(index) -> (row_mm, col_mm)`` and
``slice_orientation(index) -> axis codes or None``; without them the item itself is read (the
orientation is then unknown).

Example:
    >>> import torch
    >>> from inpaintssl.data.base import SliceDataset
    >>> class Toy(SliceDataset):
    ...     volume_ids = ["a", "a", "b"]
    ...     def __len__(self): return 3
    ...     def __getitem__(self, i):
    ...         return {"image": torch.zeros(1, 5, 5), "volume_id": self.volume_ids[i],
    ...                 "slice_index": i, "spacing": torch.ones(3, dtype=torch.float64)}
    >>> sub = select_volumes(Toy(), ["b"], what="toy")
    >>> len(sub), FitToSize(sub, (4, 6), mode="crop_or_pad")[0]["image"].shape
    (1, torch.Size([1, 4, 6]))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.preprocess import ResizeMode, fit_to_size

__all__ = [
    "BASE_KEYS",
    "ClassOrder",
    "ConcatSlices",
    "FitToSize",
    "ImagesOnly",
    "Subset",
    "data_files_of",
    "evenly_spaced",
    "item_refs",
    "select_items",
    "select_volumes",
    "slice_orientation_of",
    "slice_shape_of",
    "slice_spacing_of",
]

BASE_KEYS = ("image", "volume_id", "slice_index", "spacing")
"""Keys every item has; :class:`ImagesOnly` keeps just these."""


def item_refs(dataset: SliceDataset) -> list[tuple[str, int]]:
    """``(volume_id, slice_index)`` of every item, from attributes when the dataset has them."""
    indices = getattr(dataset, "slice_indices", None)
    ids = getattr(dataset, "volume_ids", None)
    if indices is not None and ids is not None and len(ids) == len(dataset) == len(indices):
        return [(str(v), int(s)) for v, s in zip(ids, indices)]
    refs = []
    for i in range(len(dataset)):
        item = dataset[i]
        refs.append((str(item["volume_id"]), int(item["slice_index"])))
    return refs


def slice_shape_of(dataset: SliceDataset, index: int) -> tuple[int, int]:
    """``(H, W)`` of item ``index``, without reading it when the dataset can tell."""
    method = getattr(dataset, "slice_shape", None)
    if callable(method):
        h, w = method(index)
        return int(h), int(w)
    h, w = dataset[index]["image"].shape[-2:]
    return int(h), int(w)


def slice_spacing_of(dataset: SliceDataset, index: int) -> tuple[float, float]:
    """In-plane voxel spacing ``(row_mm, col_mm)`` of item ``index`` as the network sees it, without
    reading the item when the dataset can tell."""
    method = getattr(dataset, "slice_spacing", None)
    if callable(method):
        row, col = method(index)
    else:
        row, col = (float(v) for v in torch.as_tensor(dataset[index]["spacing"])[:2])
    return float(row), float(col)


def slice_orientation_of(dataset: SliceDataset, index: int) -> str | None:
    """Axis codes of the volume item ``index`` comes from (:mod:`~inpaintssl.data.orientation`).

    ``None`` when the dataset cannot tell (a plugin without ``slice_orientation``) or the volume
    states no orientation (NumPy, HDF5, PNG).
    """
    method = getattr(dataset, "slice_orientation", None)
    if not callable(method):
        return None
    codes = method(index)
    return None if codes is None else str(codes)


def data_files_of(dataset: SliceDataset) -> list[str]:
    """The files a dataset reads (its ``data_files`` attribute, else none known)."""
    return list(getattr(dataset, "data_files", []))


class _View(SliceDataset):
    def __init__(self, parent: SliceDataset) -> None:
        self.parent = parent
        self.in_channels = parent.in_channels
        self.class_names = tuple(parent.class_names)
        self.spacing = parent.spacing
        self.data_files = data_files_of(parent)


class Subset(_View):
    """Items ``indices`` of ``parent``, in that order."""

    def __init__(self, parent: SliceDataset, indices: Sequence[int]) -> None:
        super().__init__(parent)
        self.indices = [int(i) for i in indices]
        refs = item_refs(parent)
        self.volume_ids = [refs[i][0] for i in self.indices]
        self.slice_indices = [refs[i][1] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.parent[self.indices[index]]

    def slice_shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of item ``index``."""
        return slice_shape_of(self.parent, self.indices[index])

    def slice_spacing(self, index: int) -> tuple[float, float]:
        """In-plane spacing of item ``index``."""
        return slice_spacing_of(self.parent, self.indices[index])

    def slice_orientation(self, index: int) -> str | None:
        """Axis codes of item ``index``'s volume."""
        return slice_orientation_of(self.parent, self.indices[index])


def select_volumes(parent: SliceDataset, volume_ids: Iterable[str], *, what: str) -> Subset:
    """The items of ``parent`` whose volume is in ``volume_ids`` (in ``parent`` order).

    Raises:
        DataError: A requested volume is not in ``parent``; ``what`` says where the ids came from.
    """
    wanted = set(volume_ids)
    refs = item_refs(parent)
    missing = wanted - {v for v, _ in refs}
    if missing:
        raise DataError(f"{what}: volume id(s) {sorted(missing)[:10]} are not in the dataset")
    return Subset(parent, [i for i, (v, _) in enumerate(refs) if v in wanted])


def select_items(parent: SliceDataset, items: Iterable[tuple[str, int]], *, what: str) -> Subset:
    """The items ``(volume_id, slice_index)`` of ``parent``, in the order given.

    Raises:
        DataError: An item is not in ``parent``.
    """
    position = {ref: i for i, ref in enumerate(item_refs(parent))}
    indices, missing = [], []
    for vid, idx in items:
        i = position.get((str(vid), int(idx)))
        if i is None:
            missing.append((vid, idx))
        else:
            indices.append(i)
    if missing:
        raise DataError(f"{what}: item(s) {missing[:10]} (volume_id, slice_index) are not in the dataset")
    return Subset(parent, indices)


def evenly_spaced(count: int, limit: int | None) -> list[int]:
    """At most ``limit`` indices spread evenly over ``range(count)``, first and last included.

    Example:
        >>> evenly_spaced(10, 4)
        [0, 3, 6, 9]
    """
    if limit is None or limit >= count:
        return list(range(count))
    if limit == 1:
        return [0]
    return [int(i) for i in np.unique(np.round(np.linspace(0, count - 1, limit)).astype(np.int64))]


class ImagesOnly(_View):
    """``parent`` without labels or source extras: items keep :data:`BASE_KEYS` only.

    Used for pretraining, where every source must collate with every other.
    """

    def __init__(self, parent: SliceDataset) -> None:
        super().__init__(parent)
        self.class_names = ()
        self.volume_ids = list(getattr(parent, "volume_ids", ()))
        self.slice_indices = list(getattr(parent, "slice_indices", ()))

    def __len__(self) -> int:
        return len(self.parent)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.parent[index]
        out = {key: item[key] for key in BASE_KEYS}
        # One spacing type across sources, so that mixed sources collate together.
        out["spacing"] = torch.as_tensor(out["spacing"], dtype=torch.float64)
        return out

    def slice_shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of item ``index``."""
        return slice_shape_of(self.parent, index)

    def slice_spacing(self, index: int) -> tuple[float, float]:
        """In-plane spacing of item ``index``."""
        return slice_spacing_of(self.parent, index)

    def slice_orientation(self, index: int) -> str | None:
        """Axis codes of item ``index``'s volume."""
        return slice_orientation_of(self.parent, index)


class ClassOrder(_View):
    """``parent`` with its label channels put in the order of ``class_names`` (the same classes).

    A model's output channel ``k`` is its ``k``-th class; data that list the same classes in
    another order are scored against the right channel only once their labels follow the model's.

    Raises:
        DataError: ``class_names`` are not the parent's classes (in any order).

    Example:
        >>> from inpaintssl.data.synthetic import SyntheticShapes
        >>> data = SyntheticShapes(num_images=2, size=(16, 16))
        >>> swapped = ClassOrder(data, ("square", "disc"))
        >>> bool((swapped[0]["label"][0] == data[0]["label"][1]).all()), swapped.class_names
        (True, ('square', 'disc'))
    """

    def __init__(self, parent: SliceDataset, class_names: Sequence[str]) -> None:
        super().__init__(parent)
        own = tuple(parent.class_names)
        wanted = tuple(class_names)
        if sorted(own) != sorted(wanted) or len(set(own)) != len(own):
            raise DataError(
                f"the data's classes {list(own)} are not the classes {list(wanted)} in another order"
            )
        self.class_names = wanted
        self.order = [own.index(name) for name in wanted]
        self.volume_ids = list(getattr(parent, "volume_ids", ()))
        self.slice_indices = list(getattr(parent, "slice_indices", ()))

    def __len__(self) -> int:
        return len(self.parent)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.parent[index])
        if "label" in item:
            item["label"] = item["label"][self.order]
        return item

    def slice_shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of item ``index``."""
        return slice_shape_of(self.parent, index)

    def slice_spacing(self, index: int) -> tuple[float, float]:
        """In-plane spacing of item ``index``."""
        return slice_spacing_of(self.parent, index)

    def slice_orientation(self, index: int) -> str | None:
        """Axis codes of item ``index``'s volume."""
        return slice_orientation_of(self.parent, index)


class ConcatSlices(SliceDataset):
    """Items of several datasets one after another.

    Raises:
        DataError: No parts, or parts with different channel counts or classes; ``names``
            label the parts in the message.
    """

    def __init__(self, parts: Sequence[SliceDataset], *, names: Sequence[str]) -> None:
        if not parts:
            raise DataError("cannot concatenate zero datasets")
        channels = {name: part.in_channels for name, part in zip(names, parts)}
        if len(set(channels.values())) > 1:
            raise DataError(f"sources have different channel counts {channels}; expected one count for all")
        classes = {name: tuple(part.class_names) for name, part in zip(names, parts)}
        if len(set(classes.values())) > 1:
            raise DataError(f"sources have different classes {classes}")
        self.parts = list(parts)
        self.in_channels = parts[0].in_channels
        self.class_names = tuple(parts[0].class_names)
        self.spacing = parts[0].spacing
        self._offsets = np.cumsum([0, *(len(p) for p in parts)])
        refs = [ref for part in parts for ref in item_refs(part)]
        self.volume_ids = [v for v, _ in refs]
        self.slice_indices = [s for _, s in refs]
        self.data_files = sorted({f for part in parts for f in data_files_of(part)})

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, index: int) -> tuple[SliceDataset, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} slices")
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.parts[part], index - int(self._offsets[part])

    def __getitem__(self, index: int) -> dict[str, Any]:
        part, local = self._locate(index)
        return part[local]

    def slice_shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of item ``index``."""
        part, local = self._locate(index)
        return slice_shape_of(part, local)

    def slice_spacing(self, index: int) -> tuple[float, float]:
        """In-plane spacing of item ``index``."""
        part, local = self._locate(index)
        return slice_spacing_of(part, local)

    def slice_orientation(self, index: int) -> str | None:
        """Axis codes of item ``index``'s volume."""
        part, local = self._locate(index)
        return slice_orientation_of(part, local)


class FitToSize(_View):
    """``parent`` with every item fitted to ``size = (H, W)`` (:func:`fit_to_size`).

    The image, the label and every image-like extra (a ``(c, H, W)`` tensor on the image's grid,
    e.g. ``hu``, ``echo1``) are fitted the same way. With ``mode="resize"`` the in-plane
    ``spacing`` is scaled so that physical sizes (areas, volumes) are preserved.
    """

    def __init__(self, parent: SliceDataset, size: tuple[int, int], *, mode: ResizeMode) -> None:
        super().__init__(parent)
        self.size = (int(size[0]), int(size[1]))
        self.mode: ResizeMode = mode
        self.volume_ids = list(getattr(parent, "volume_ids", ()))
        self.slice_indices = list(getattr(parent, "slice_indices", ()))

    def __len__(self) -> int:
        return len(self.parent)

    def slice_shape(self, index: int) -> tuple[int, int]:
        """The target size."""
        return self.size

    def slice_orientation(self, index: int) -> str | None:
        """Axis codes of item ``index``'s volume (fitting to size keeps them)."""
        return slice_orientation_of(self.parent, index)

    def slice_spacing(self, index: int) -> tuple[float, float]:
        """The parent's spacing, scaled as ``__getitem__`` scales it under ``resize``."""
        row, col = slice_spacing_of(self.parent, index)
        if self.mode != "resize":
            return row, col
        grid = slice_shape_of(self.parent, index)
        return row * grid[0] / self.size[0], col * grid[1] / self.size[1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.parent[index])
        image = item["image"]
        grid = tuple(image.shape[-2:])
        for key, value in item.items():
            if isinstance(value, torch.Tensor) and value.ndim == 3 and tuple(value.shape[-2:]) == grid:
                kind: Literal["image", "label"] = "label" if key == "label" else "image"
                item[key] = fit_to_size(value, self.size, mode=self.mode, kind=kind)
        if self.mode == "resize" and "spacing" in item:
            spacing = torch.as_tensor(item["spacing"], dtype=torch.float64).clone()
            spacing[0] *= grid[0] / self.size[0]
            spacing[1] *= grid[1] / self.size[1]
            item["spacing"] = spacing
        return item
