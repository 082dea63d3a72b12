"""Turn stored label slices into one-hot foreground masks ``(K, H, W)``.

Two stored forms occur: integer class maps (NIfTI/PNG/NumPy masks, CT) and one-hot channel stacks
(SKM-TEA's ``seg``, whose six channels the paper merges into four, sec. 2.1.1). Both become a
float32 one-hot tensor over the K foreground classes; background is where every channel is 0
(see :mod:`inpaintssl.data.base`).

Example:
    >>> import numpy as np
    >>> values = class_values(("a", "b"), None)
    >>> values
    ((1,), (2,))
    >>> onehot_from_values(np.array([[0, 1], [2, 2]]), values, where="m.png").sum(axis=(1, 2)).tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NoReturn

import numpy as np

from inpaintssl.data.base import DataError, SliceDataset

__all__ = [
    "ABSENT_CLASS_CHECK_LIMIT",
    "RESERVED_CLASS_NAME",
    "absent_classes",
    "check_class_names",
    "check_label_values",
    "class_values",
    "merge_onehot",
    "onehot_from_values",
    "plain_name",
]


_LUT_MAX_VALUE = 65535
"""Largest class value mapped through a lookup table (512 KiB); larger ones are searched for."""

_TABLE_DTYPE_BYTES = 2
"""Labels of native integer dtypes this narrow (uint8, int16, ...: the usual label maps) are
mapped through one table over every value their dtype holds (at most 65,536 entries), indexed by
the label's own bits: no int64 copy, no range test. A 256x256 uint8 slice of 3 classes took
0.06 ms against 0.19 ms with NumPy 2.4, and about the same as the general path with 1.24
(``tests/data/test_data_labels_table.py`` checks that the two agree)."""

_INT64_MAX = int(np.iinfo(np.int64).max)


def plain_name(name: str) -> str:
    """A name compared without case, spaces, hyphens or underscores (``Left Kidney`` = ``left_kidney``).

    How a class name is matched to the name a label file gives its region (a DICOM SEG's
    ``SegmentLabel``, an RT Structure Set's ``ROIName``), which tools and people spell variously.

    Example:
        >>> plain_name("Left Kidney") == plain_name("left_kidney") == plain_name("LEFT-KIDNEY")
        True
    """
    return re.sub(r"[\s_\-]+", "", name).casefold()


RESERVED_CLASS_NAME = "mean"
"""No class may be called so: results name the classes' average Dice ``dice_mean``."""


def check_class_names(class_names: Sequence[str], *, where: str) -> tuple[str, ...]:
    """Return ``class_names`` as a tuple if no name occurs twice, and none is ``mean``.

    Each name is one output channel and one results column: a repeated name would train an extra
    channel and lose a column when results are keyed by name; ``mean`` is the column of the
    classes' average (``dice_mean``).

    Args:
        class_names: Foreground class names.
        where: The dataset they are for, e.g. ``"nifti"``; it starts the error message.

    Raises:
        DataError: A single string rather than a list (it would be split into one class per
            letter), a name that occurs more than once, or ``mean``; the message names the field
            and what was found.

    Example:
        >>> check_class_names(["wm", "gm"], where="nifti")
        ('wm', 'gm')
        >>> check_class_names(["wm", "gm", "wm"], where="nifti")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: nifti: class_names ['wm', 'gm', 'wm'] name 'wm' 2 times; ...
        >>> check_class_names("liver", where="nifti")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: nifti: class_names: expected a list of class names, found ...
    """
    if isinstance(class_names, (str, bytes)):
        # tuple("liver") is ('l', 'i', 'v', 'e', 'r'): five classes, one per letter.
        name = class_names.decode(errors="replace") if isinstance(class_names, bytes) else class_names
        raise DataError(
            f"{where}: class_names: expected a list of class names, found the string {class_names!r}; "
            f"for a single class write a one-item list: [{name}]"
        )
    names = tuple(class_names)
    repeated = [n for n in dict.fromkeys(names) if names.count(n) > 1]
    if repeated:
        counts = ", ".join(f"{n!r} {names.count(n)} times" for n in repeated)
        raise DataError(f"{where}: class_names {list(names)} name {counts}; expected each class once")
    if RESERVED_CLASS_NAME in names:
        # Results name a class's Dice dice_<class> beside the class average, dice_mean: the average
        # overwrote the class's own Dice in test_metrics.csv and the run's summary, without a word.
        raise DataError(
            f"{where}: class_names {list(names)} name a class {RESERVED_CLASS_NAME!r}; expected another "
            f"name: results hold the classes' average as dice_{RESERVED_CLASS_NAME}, beside each class's "
            "dice_<class>"
        )
    return names


def class_values(
    class_names: Sequence[str], label_values: Mapping[str, int | Sequence[int]] | None
) -> tuple[tuple[int, ...], ...]:
    """The stored integer value(s) of each class, in ``class_names`` order.

    Args:
        class_names: Foreground class names.
        label_values: ``{class name: value or list of values}``; ``None`` means class ``i``
            (0-based) is stored as ``i + 1`` and 0 is background.

    Raises:
        DataError: A class without values, an unknown class name, a value that is no whole
            number >= 0 (a string, ``1.7``, ``-1``), value 0 (reserved for background), a value
            above ``2**63 - 1`` (no 64-bit label holds it) or a value claimed by two classes.
    """
    if label_values is None:
        return tuple((i + 1,) for i in range(len(class_names)))
    unknown = sorted(set(label_values) - set(class_names))
    if unknown:
        raise DataError(
            f"label_values names unknown class(es) {unknown}; class_names are {list(class_names)}"
        )
    out: list[tuple[int, ...]] = []
    seen: dict[int, str] = {}
    for name in class_names:
        if name not in label_values:
            raise DataError(f"label_values has no value for class {name!r}; got {dict(label_values)}")
        raw = label_values[name]
        if isinstance(raw, (str, bytes)):
            # tuple(int(v) for v in "12") would be (1, 2): one value per digit.
            raise DataError(
                f"label_values[{name!r}]: expected an integer or a list of integers, found the string {raw!r}"
            )
        items: Iterable[object] = raw if isinstance(raw, Iterable) else [raw]
        values = tuple(_class_value(v, name) for v in items)
        if not values:
            raise DataError(f"label_values[{name!r}] is empty; expected at least one stored value")
        for v in values:
            if v == 0:
                raise DataError(f"label_values[{name!r}] uses 0, which is reserved for background")
            if v in seen:
                raise DataError(f"label value {v} is claimed by both {seen[v]!r} and {name!r}")
            seen[v] = name
        out.append(values)
    return tuple(out)


def _class_value(raw: object, name: str) -> int:
    """One stored value of class ``name``: a whole number >= 0 (``2.0`` from YAML is 2)."""
    # int(1.7) would be 1 and a negative value would index the lookup table from its end, moving
    # the voxels of the largest value to this class.
    if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (numbers.Real, np.number)):
        raise DataError(
            f"label_values[{name!r}]: expected an integer or a list of integers, found {raw!r} "
            f"({type(raw).__name__})"
        )
    value = float(raw)
    if not (math.isfinite(value) and value.is_integer() and value >= 0):
        raise DataError(
            f"label_values[{name!r}]: expected whole numbers >= 1 (the stored label values; 0 is the "
            f"background), found {raw!r}"
        )
    # int(float(2**53 + 1)) is 2**53: read integers exactly.
    whole = int(raw) if isinstance(raw, (numbers.Integral, np.integer)) else int(value)
    if whole > _INT64_MAX:
        # Labels are compared as int64, so no voxel can hold such a value.
        raise DataError(
            f"label_values[{name!r}]: expected whole numbers from 1 to {_INT64_MAX} (the largest "
            f"64-bit label value), found {raw!r}"
        )
    return whole


def check_label_values(label: np.ndarray, values: Sequence[Sequence[int]], *, where: str) -> None:
    """Raise unless every voxel of ``label`` is 0 or one of the class ``values``.

    Works on a slice or a whole volume of any shape; :func:`onehot_from_values` applies the same
    rules per slice.

    Raises:
        DataError: NaN/Inf, non-integer or complex values, or values no class maps to; the
            message names ``where`` and the offending values.

    Example:
        >>> check_label_values(np.array([0, 2, 1]), ((1,), (2,)), where="seg.nii")
        >>> check_label_values(np.array([0.0, np.inf]), ((1,),), where="seg.nii")
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: seg.nii: label holds 1 NaN/Inf value(s); expected integer class values
    """
    _class_indices(label, values, where=where)


def _class_indices(label: np.ndarray, values: Sequence[Sequence[int]], *, where: str) -> np.ndarray:
    """Each voxel's class index (0 background, k + 1 for class k), after checking the values."""
    if label.dtype.kind not in "biuf":
        raise DataError(f"{where}: label has dtype {label.dtype}; expected integer class values")
    if label.dtype.kind == "f":
        finite = np.isfinite(label)
        if not finite.all():
            count = int(finite.size - np.count_nonzero(finite))
            raise DataError(f"{where}: label holds {count} NaN/Inf value(s); expected integer class values")
        fractional = label != np.round(label)
        if fractional.any():
            _refuse_fractions(label[fractional], where=where)
    kind, width = label.dtype.kind, label.dtype.itemsize
    if kind in "iu" and width <= _TABLE_DTYPE_BYTES and label.dtype.isnative:
        by_bits = _dtype_table(label.dtype, tuple(tuple(int(v) for v in group) for group in values))
        mapped = np.take(by_bits, label.view(f"u{width}"))  # take: 3x faster than by_bits[...] here
        if (mapped < 0).any():
            _refuse_values(label.astype(np.int64)[mapped < 0], values, where=where)
        return mapped
    lab = label.astype(np.int64, copy=False)
    top = max((v for group in values for v in group), default=0)
    if top <= _LUT_MAX_VALUE:
        # A lookup table keeps this O(pixels): no search on the per-item hot path.
        lut = np.full(top + 1, -1, dtype=np.int64)
        lut[0] = 0
        for k, group in enumerate(values):
            lut[list(group)] = k + 1
        in_table = (lab >= 0) & (lab <= top)
        mapped = np.where(in_table, lut[np.clip(lab, 0, top)], -1)
    else:
        # A table up to a value such as 1e9 would take gigabytes: search the sorted values
        # instead, whose memory grows with the classes and the image, not the largest value.
        table = {0: 0}
        for k, group in enumerate(values):
            table.update(dict.fromkeys(group, k + 1))
        keys = np.array(sorted(table), dtype=np.int64)
        classes = np.array([table[v] for v in keys.tolist()], dtype=np.int64)
        slot = np.minimum(np.searchsorted(keys, lab), keys.size - 1)
        mapped = np.where(keys[slot] == lab, classes[slot], -1)
    if (mapped < 0).any():
        _refuse_values(lab[mapped < 0], values, where=where)
    return mapped


def _refuse_values(bad: np.ndarray, values: Sequence[Sequence[int]], *, where: str) -> NoReturn:
    """Raise naming the (first 10 distinct) label values no class maps to."""
    distinct = np.unique(bad)
    raise DataError(
        f"{where}: label values {distinct[:10].tolist()} are out of range; expected 0 (background) "
        f"or one of {sorted(v for group in values for v in group)}"
    )


def _refuse_fractions(bad: np.ndarray, *, where: str) -> NoReturn:
    """Raise naming the (first 10 distinct) non-integer label values and how many there are.

    Such values are nearly always a label map resampled with linear interpolation (``0.5`` at a
    boundary, ``0.999`` for ``1``): rounding them would move boundaries, so they are refused.
    """
    distinct = np.unique(bad)
    # str of a NumPy scalar is the shortest text of its own precision: 0.999, not 0.9990000128746033.
    shown = ", ".join(str(value) for value in distinct[:10])
    more = f" and {distinct.size - 10} more" if distinct.size > 10 else ""
    raise DataError(
        f"{where}: label holds non-integer values [{shown}]{more} "
        f"({distinct.size} distinct, in {bad.size} voxel(s)); expected integer class values (was the "
        "label map resampled with linear interpolation? resample label maps with nearest neighbour)"
    )


@functools.lru_cache(maxsize=64)
def _dtype_table(dtype: np.dtype, values: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """The class index (0 background, k + 1 for class k, -1 none) of every value ``dtype`` holds,
    at the position of its bits read as an unsigned integer; read-only, as it is shared."""
    bits = np.arange(2 ** (8 * dtype.itemsize), dtype=np.int64).astype(f"u{dtype.itemsize}")
    stored = bits.view(dtype).astype(np.int64)  # the value each bit pattern holds
    # int16 unless there are more classes than it counts: NumPy's take gathers it far faster.
    table = np.where(stored == 0, 0, -1).astype(np.int16 if len(values) < 2**15 - 1 else np.int64)
    for k, group in enumerate(values):
        table[np.isin(stored, group)] = k + 1  # a later class wins a shared value, as in the general path
    table.flags.writeable = False
    return table


def onehot_from_values(label: np.ndarray, values: Sequence[Sequence[int]], *, where: str) -> np.ndarray:
    """``(H, W)`` integer class map -> ``(K, H, W)`` float32 one-hot.

    Raises:
        DataError: A pixel holds a value that is neither 0 nor a class value, or a non-integer;
            the message names ``where`` and the offending values.
    """
    mapped = _class_indices(label, values, where=where)
    out = np.empty((len(values), *mapped.shape), dtype=np.float32)
    for k in range(len(values)):
        np.equal(mapped, k + 1, out=out[k], casting="unsafe")
    return out


def _is_binary(a: np.ndarray) -> bool:
    if a.dtype.kind == "f":
        return bool(np.isin(a, (0.0, 1.0)).all())
    return bool(a.min() >= 0 and a.max() <= 1)


def merge_onehot(
    seg: np.ndarray,
    groups: Sequence[Sequence[int]],
    *,
    where: str,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """``(..., C)`` stored one-hot channels -> ``(K, ...)`` float32, channel groups OR-ed.

    Channels of one group may overlap (they become one class); a voxel set in channels of two
    different groups would be a pixel of two classes, which the label contract forbids
    (:func:`~inpaintssl.data.checks.check_item_tensors`), so it is refused.

    Args:
        seg: Stored one-hot label, channels last, e.g. an ``(H, W, C)`` slice or an
            ``(X, Y, Z, C)`` slab.
        groups: Stored channels merged into each output class.
        where: The file and slice the label comes from; it starts every error message.
        class_names: Names of the output classes, for error messages; ``None`` numbers them.

    Raises:
        DataError: Values other than 0 and 1, a group naming a missing channel, or voxels set
            in two classes; the message names ``where``, the classes and how many voxels.

    Example:
        >>> seg = np.zeros((1, 2, 3), np.uint8)
        >>> seg[0, 0, 1] = seg[0, 0, 2] = 1  # channels 1 and 2: both of class 1
        >>> merge_onehot(seg, ((0,), (1, 2)), where="s.h5").tolist()
        [[[0.0, 0.0]], [[1.0, 0.0]]]
        >>> seg[0, 1, 0] = seg[0, 1, 1] = 1  # channels 0 and 1: classes 0 and 1
        >>> merge_onehot(seg, ((0,), (1, 2)), where="s.h5")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: s.h5: 1 voxel(s) are set in more than one class: 1 in both ...
    """
    channels = seg.shape[-1]
    for group in groups:
        if any(c >= channels for c in group):
            raise DataError(f"{where}: label has {channels} channels; cannot merge channels {list(group)}")
    if seg.size and not _is_binary(seg):
        present = np.unique(seg)
        bad = present[(present != 0) & (present != 1)]
        raise DataError(
            f"{where}: one-hot label values {bad[:10].tolist()} are out of range; expected 0 or 1"
        )
    out = np.empty((len(groups), *seg.shape[:-1]), dtype=np.float32)
    for k, group in enumerate(groups):
        out[k] = seg[..., list(group)].max(axis=-1)
    if len(groups) > 1 and out.size:
        overlap = out.sum(axis=0) > 1
        if overlap.any():
            raise DataError(_overlap_message(out, overlap, groups, where=where, class_names=class_names))
    return out


def _overlap_message(
    out: np.ndarray,
    overlap: np.ndarray,
    groups: Sequence[Sequence[int]],
    *,
    where: str,
    class_names: Sequence[str] | None,
) -> str:
    """The error for voxels set in two merged classes: how many, which class pairs, the first one."""

    def name(k: int) -> str:
        label = repr(class_names[k]) if class_names is not None and k < len(class_names) else f"class {k}"
        channels = f"channel {groups[k][0]}" if len(groups[k]) == 1 else f"channels {list(groups[k])}"
        return f"{label} ({channels})"

    pairs = []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            count = int(np.count_nonzero((out[i] > 0) & (out[j] > 0)))
            if count:
                pairs.append(f"{count} in both {name(i)} and {name(j)}")
    first = tuple(int(i) for i in np.argwhere(overlap)[0])
    return (
        f"{where}: {int(np.count_nonzero(overlap))} voxel(s) are set in more than one class: "
        f"{', '.join(pairs)} (the first at index {first} of the {overlap.shape} array); "
        "expected at most one class per voxel in the one-hot label"
    )


ABSENT_CLASS_CHECK_LIMIT = 2000
"""Training slices up to which a fine-tuning run counts each class's labelled pixels at its start."""


def absent_classes(dataset: SliceDataset) -> list[str]:
    """The classes no item of ``dataset`` labels a single pixel of (reads every item's label).

    At small label fractions, drawn by volume, a class can vanish from the training subset; a
    ``label_values`` or ``class_names`` slip can leave it empty everywhere. Either way its output
    channel learns from nothing and its Dice measures chance.

    Example:
        >>> from inpaintssl.data.synthetic import SyntheticShapes
        >>> absent_classes(SyntheticShapes(num_images=4, size=(16, 16)))
        []
    """
    names = tuple(dataset.class_names)
    if not names:
        return []
    counts = np.zeros(len(names), dtype=np.int64)
    for index in range(len(dataset)):
        label = dataset[index].get("label")
        if label is not None:
            counts += np.asarray(label.reshape(len(names), -1).sum(-1) > 0, dtype=np.int64)
    return [name for name, count in zip(names, counts) if count == 0]
