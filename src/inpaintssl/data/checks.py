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

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from inpaintssl.data.base import DataError, SliceDataset

__all__ = [
    "check_finite",
    "check_has_foreground",
    "check_rank",
    "check_real",
    "check_same_shape",
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


def check_same_shape(
    image_shape: Sequence[int], label_shape: Sequence[int], *, image: str, label: str
) -> None:
    """Raise unless an image and its label cover the same voxels."""
    if tuple(image_shape) != tuple(label_shape):
        raise DataError(
            f"label {label} has shape {tuple(label_shape)} but image {image} has shape "
            f"{tuple(image_shape)}; expected the same voxel grid"
        )


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
    shown = ", ".join(volumes[:5]) + (f" and {len(volumes) - 5} more" if len(volumes) > 5 else "")
    raise DataError(
        f"{what}: none of its {len(dataset)} labelled slice(s) (volumes {shown}) has a foreground pixel "
        f"of any class {list(dataset.class_names)}; expected at least one (check the label files and "
        "label_values)"
    )
