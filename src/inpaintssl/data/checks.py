"""Input checks shared by the dataset readers; every failure is a :class:`DataError`.

Cheap checks (a file exists, an array has the right rank, image and label shapes agree) run when
a dataset is constructed; per-pixel checks (finite values, label range) run when a slice is read,
so a bad slice is reported with its file and index without scanning whole volumes up front.

Example:
    >>> import numpy as np
    >>> check_finite(np.zeros((2, 2)), where="a.nii slice 0")
    >>> check_finite(np.array([0.0, np.nan]), where="a.nii slice 3")
    Traceback (most recent call last):
    ...
    inpaintssl.data.base.DataError: a.nii slice 3: 1 NaN/Inf value(s) (expected finite intensities)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.listing import first_and_more

__all__ = [
    "check_finite",
    "check_has_foreground",
    "check_item_tensors",
    "check_rank",
    "check_real",
    "check_same_shape",
    "check_slice_axis",
    "check_spacing",
    "existing_path",
]


def existing_path(path: str | Path, *, what: str, directory_ok: bool = False) -> Path:
    """Return ``path`` as a :class:`Path` if it exists.

    Args:
        path: The file (or, with ``directory_ok``, folder) to check.
        what: What the path is for, e.g. ``"skmtea image file"``; it starts the error message.
        directory_ok: Accept a folder as well as a file.

    Raises:
        DataError: The path is missing, or is a folder where a file was expected.
    """
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(f"{what} {resolved} does not exist")
    if resolved.is_dir() and not directory_ok:
        raise DataError(f"{what} {resolved} is a folder; expected a file")
    return resolved


def check_rank(shape: Sequence[int], ranks: Collection[int], *, where: str, layout: str) -> None:
    """Raise unless ``len(shape)`` is one of ``ranks``.

    Args:
        shape: The array's shape.
        ranks: Accepted numbers of dimensions.
        where: The file and array, e.g. ``"MTR_001.h5 key 'echo1'"``.
        layout: The expected layout in words, e.g. ``"(X, Y, Z)"``.
    """
    if len(shape) not in ranks:
        names = [str(r) for r in sorted(ranks)]
        allowed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise DataError(
            f"{where}: array has rank {len(shape)} (shape {tuple(shape)}); expected rank {allowed} {layout}"
        )


def check_slice_axis(slice_axis: Any, *, where: str) -> int:
    """Return ``slice_axis`` as an ``int`` if it is one of a volume's three axes.

    Negative axes count from the last one, as in NumPy (-1 is axis 2).

    Args:
        slice_axis: The value given, e.g. from a config file.
        where: The dataset or file it is for; it starts the error message.

    Raises:
        DataError: ``slice_axis`` is not an integer (a name such as ``"z"``, a float, a bool), or
            is out of range.

    Example:
        >>> check_slice_axis(-1, where="nifti")
        -1
        >>> check_slice_axis("z", where="nifti")
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: nifti: slice_axis='z' (str) is not one of the axes 0, 1, 2
    """
    # bool is an int subclass, but True/False in a config is a mistake, not axis 1/0.
    if isinstance(slice_axis, bool) or not isinstance(slice_axis, (int, np.integer)):
        raise DataError(
            f"{where}: slice_axis={slice_axis!r} ({type(slice_axis).__name__}) is not one of the axes 0, 1, 2"
        )
    if not -3 <= slice_axis < 3:
        raise DataError(f"{where}: slice_axis={slice_axis} is not one of the axes 0, 1, 2")
    return int(slice_axis)


def check_spacing(spacing: Any, *, where: str, rank: int | None = None) -> tuple[float, ...]:
    """Return ``spacing`` as floats if it is a valid voxel spacing in mm for an array of ``rank``.

    A 3D or 4D array (channels last, which have no spacing) needs one value per spatial axis, 3;
    a 2D slice 2 (rows, columns) or 3 (with its thickness). With ``rank=None`` (before any file
    is read) 2 or 3 values are accepted.

    Args:
        spacing: The value given, e.g. a dataset's ``spacing`` parameter.
        where: The parameter and its dataset or file, e.g. ``"numpy: spacing"``; it starts the message.
        rank: Number of dimensions of the array the spacing is for.

    Raises:
        DataError: Not a sequence of numbers, the wrong number of values, or a value that is
            zero, negative, NaN or infinite.

    Example:
        >>> check_spacing([0.5, 0.5, 2], where="numpy: spacing", rank=3)
        (0.5, 0.5, 2.0)
        >>> check_spacing([0, 0, 0], where="numpy: spacing", rank=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: numpy: spacing=[0, 0, 0] holds 0 (values 1, 2, 3); expected ...
    """
    counts = (2, 3) if rank is None or rank <= 2 else (3,)
    expected = " or ".join(str(c) for c in counts)
    shown = list(spacing) if isinstance(spacing, (list, tuple)) else spacing
    for_rank = "" if rank is None else f" for a {rank}D array"
    if isinstance(spacing, (str, bytes)) or not isinstance(spacing, Sequence):
        raise DataError(
            f"{where}={shown!r} is not a list of numbers; expected {expected} voxel sizes in mm{for_rank}"
        )
    if len(spacing) not in counts:
        raise DataError(
            f"{where}={shown!r} has {len(spacing)} value(s); expected {expected} voxel sizes in mm"
            f"{for_rank} (one per spatial axis, in stored axis order)"
        )
    values: list[float] = []
    for v in spacing:
        try:
            # A YAML "1e-3" (no dot) loads as a string; float() reads it as before.
            if isinstance(v, bool):
                raise TypeError
            values.append(float(v))
        except (TypeError, ValueError):
            found = f"{where}={shown!r} holds {v!r}"
            raise DataError(f"{found}, not a number; expected voxel sizes in mm") from None
    bad = [i for i, v in enumerate(values) if not (math.isfinite(v) and v > 0)]
    if bad:
        which = ", ".join(str(i + 1) for i in bad)
        raise DataError(
            f"{where}={shown!r} holds {spacing[bad[0]]!r} (value{'s' if len(bad) > 1 else ''} {which}); "
            "expected finite values > 0 in mm"
        )
    return tuple(values)


def check_same_shape(
    image_shape: Sequence[int],
    label_shape: Sequence[int],
    *,
    image: str,
    label: str,
    image_stored: Sequence[int] | None = None,
    label_stored: Sequence[int] | None = None,
) -> None:
    """Raise unless an image and its label cover the same voxels.

    Args:
        image_shape: The image's voxel grid as the dataset slices it.
        label_shape: The label's, likewise.
        image: The image as messages name it (its file, and the array inside it where the file
            holds several).
        label: The label, likewise.
        image_stored: The image's stored array shape, where the grid is not it (another slice
            axis, a reorientation, channels): the message then says both, since the grid alone
            is a shape neither file has.
        label_stored: The label's stored array shape, likewise.

    Example:
        >>> check_same_shape((8, 3, 10), (8, 4, 10), image="a.npy", label="a_seg.npy",
        ...                  image_stored=(10, 8, 3), label_stored=(10, 8, 4))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: label a_seg.npy (stored shape (10, 8, 4)) is sliced to a (rows, \
columns, slices) grid of (8, 4, 10) but image a.npy (stored shape (10, 8, 3)) to (8, 3, 10); ...
    """
    if tuple(image_shape) == tuple(label_shape):
        return
    stored = (image_stored, label_stored)
    if any(s is not None and tuple(s) != tuple(g) for s, g in zip(stored, (image_shape, label_shape))):
        raise DataError(
            f"label {label} (stored shape {_shape(label_stored, label_shape)}) is sliced to a (rows, "
            f"columns, slices) grid of {tuple(label_shape)} but image {image} (stored shape "
            f"{_shape(image_stored, image_shape)}) to {tuple(image_shape)}; expected the same voxel grid"
        )
    raise DataError(
        f"label {label} has shape {tuple(label_shape)} but image {image} has shape "
        f"{tuple(image_shape)}; expected the same voxel grid"
    )


def _shape(stored: Sequence[int] | None, grid: Sequence[int]) -> tuple[int, ...]:
    return tuple(grid if stored is None else stored)


def check_finite(array: np.ndarray, *, where: str) -> None:
    """Raise if ``array`` holds NaN or +-Inf (a corrupt export would otherwise poison training)."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise DataError(f"{where}: {bad} NaN/Inf value(s) (expected finite intensities)")


def check_real(array: np.ndarray, *, where: str) -> None:
    """Raise unless ``array`` holds real numbers (complex or RGB-record voxels would be mangled).

    Example:
        >>> check_real(np.zeros(2, dtype=np.complex64), where="a.nii slice 0")
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: a.nii slice 0: values have dtype complex64; expected real numbers
    """
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: values have dtype {array.dtype}; expected real numbers")


def check_item_tensors(item: Mapping[str, Any], *, where: str, in_channels: int, num_classes: int) -> None:
    """Check an item's ``image`` and ``label`` tensors against the dataset contract.

    The contract (:class:`~inpaintssl.data.base.SliceDataset`): the image is a finite float32
    ``(C, H, W)`` tensor with ``C = in_channels``; a label, when present, a float32 one-hot
    ``(K, H, W)`` tensor with ``K = num_classes``: 0/1 values, one channel per foreground class,
    at most one class per pixel, background all zeros. A plugin dataset breaking it would
    otherwise fail deep inside a convolution or a loss, naming neither dataset nor item.

    Args:
        item: What the dataset's ``__getitem__`` returned.
        where: Names the item in messages, e.g. ``"data.dataset='mine' train set item 3"``.
        in_channels: The dataset's ``in_channels``.
        num_classes: The dataset's ``num_classes`` (used when the item has a label).

    Raises:
        DataError: Naming ``where``, the field, what was expected and what was found.

    Example:
        >>> import torch
        >>> item = {"image": torch.zeros(1, 4, 4), "label": torch.zeros(1, 4, 4, dtype=torch.int64)}
        >>> check_item_tensors(item, where="item 0", in_channels=1, num_classes=2)
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: item 0: label is a torch.int64 tensor of shape (1, 4, 4); expected \
a float32 one-hot tensor of shape (2, 4, 4): one 0/1 channel per foreground class (2 classes), \
background all zeros
    """
    import torch  # here: the readers using the other checks need NumPy only

    image = item.get("image")
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or min(image.shape) == 0:
        raise DataError(f"{where}: image is {_described(image)}; expected a non-empty (C, H, W) tensor")
    if image.dtype != torch.float32:
        raise DataError(
            f"{where}: image is a {image.dtype} tensor; expected float32 (convert it in __getitem__, "
            "e.g. image.float())"
        )
    if image.shape[0] != in_channels:
        raise DataError(
            f"{where}: image has {image.shape[0]} channel(s) but the dataset's in_channels is "
            f"{in_channels}; expected a (C, H, W) tensor with C = in_channels"
        )
    if not bool(torch.isfinite(image).all()):
        raise DataError(f"{where}: image holds NaN or Inf values; expected finite real intensities")
    label = item.get("label")
    if label is None:  # unlabelled; pretraining's images-only view keeps no label key at all
        return
    expected = (num_classes, *image.shape[1:])
    if not isinstance(label, torch.Tensor) or label.dtype != torch.float32 or tuple(label.shape) != expected:
        raise DataError(
            f"{where}: label is {_described(label)}; expected a float32 one-hot tensor of shape "
            f"{expected}: one 0/1 channel per foreground class ({num_classes} classes), background all zeros"
        )
    if not bool(((label == 0) | (label == 1)).all()):
        found = sorted({float(v) for v in torch.unique(label)[:6].tolist()})
        raise DataError(f"{where}: label holds values {found}; expected one-hot 0/1 values")
    if num_classes and bool((label.sum(0) > 1).any()):
        raise DataError(f"{where}: a pixel belongs to two classes; expected at most one class per pixel")


def _described(value: object) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def check_has_foreground(dataset: SliceDataset, *, what: str) -> None:
    """Raise unless some item of a labelled dataset has at least one foreground pixel.

    A training set whose labels are all background (label files exported empty, or a
    ``label_values`` mapping that matches nothing) trains without any error to a constant Dice
    loss of 1 (eq. A2). Items are read in order and the scan stops at the first foreground pixel,
    so usable data costs a few reads; only data without any foreground is read to the end.

    Args:
        dataset: Items with a one-hot ``label`` ``(K, H, W)``.
        what: Which dataset, e.g. ``"data.dataset='ct' train set"``; it starts the message.

    Raises:
        DataError: No item has a foreground pixel; the message names the volumes and classes.

    Example:
        >>> from inpaintssl.data.synthetic import SyntheticShapes
        >>> check_has_foreground(SyntheticShapes(split="train", num_images=2, size=(16, 16)), what="demo")
    """
    for index in range(len(dataset)):
        if bool(dataset[index]["label"].any()):
            return
    volumes = sorted(set(dataset.volume_ids))
    shown = first_and_more(volumes, limit=5)
    raise DataError(
        f"{what}: none of its {len(dataset)} labelled slice(s) (volumes {shown}) has a foreground pixel "
        f"of any class {list(dataset.class_names)}; expected at least one (check the label files and "
        "label_values)"
    )
