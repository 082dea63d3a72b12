"""Clinical metrics of a segmentation and their percent error against the reference (sec. 2.7).

For MRI the paper reports tissue volume and mean T2 per tissue; for CT, cross-sectional area and
mean HU per tissue. Each is computed once from the predicted mask and once from the ground-truth
mask, and the model is scored by the percent error between the two.

Percent error needs a ratio scale, one whose zero means "none of it": volume, area and T2 (a time
in ms) qualify, and 10% of a 100 mm^3 tissue means what 10% of a 1000 mm^3 one does. Hounsfield
units do not: HU is an interval scale whose zero is set by water, so dividing by the reference mean
HU makes the error explode for water-like tissue near 0 HU (a 2 HU miss on a 1 HU tissue is 200%),
flip sign with the reference (fat near -100 HU, muscle near +40), and change if the scale were
shifted. For such measures (:data:`MEASUREMENT_SCALES`) report :func:`absolute_error`, in HU:
:class:`ClinicalComparison` carries both, and its :attr:`~ClinicalComparison.error` picks the one
that fits the scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inpaintssl.metrics._arrays import ArrayInput, as_mask, as_numpy, check_same_shape

__all__ = [
    "MEASUREMENT_SCALES",
    "MEASUREMENT_UNITS",
    "ClinicalComparison",
    "absolute_error",
    "clinical_errors",
    "cross_sectional_area",
    "mean_hu",
    "mean_t2",
    "percent_error",
    "tissue_volume",
]

MEASUREMENT_SCALES: Mapping[str, Literal["ratio", "interval"]] = MappingProxyType(
    {"volume_mm3": "ratio", "area_mm2": "ratio", "mean_t2_ms": "ratio", "mean_hu": "interval"}
)
"""Clinical metric -> its scale: ``"ratio"`` (a true zero: percent error is meaningful) or
``"interval"`` (an arbitrary zero, as HU's water: report the absolute error instead)."""

MEASUREMENT_UNITS: Mapping[str, str] = MappingProxyType(
    {"volume_mm3": "mm^3", "area_mm2": "mm^2", "mean_t2_ms": "ms", "mean_hu": "HU"}
)
"""Clinical metric -> the unit of its value and of its absolute error."""


def _spacing_values(spacing_mm: Iterable[float], *, ndim: int) -> tuple[float, ...]:
    """``spacing_mm`` as a tuple of floats, read once (an iterator is used up by one reading)."""
    expected = f"{ndim} voxel sizes in mm, one per axis of the {ndim}-D mask"
    # A bare number (one slice thickness), None or text failed inside float() or iter() with a
    # message that named neither the argument nor what it should hold.
    if isinstance(spacing_mm, (str, bytes)) or not isinstance(spacing_mm, Iterable):
        raise ValueError(f"spacing_mm must be {expected}; found {spacing_mm!r}")
    try:
        return tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ValueError(f"spacing_mm must be {expected}; found {spacing_mm!r}") from None


def _element_size(spacing_mm: Iterable[float], *, ndim: int, mask_shape: tuple[int, ...]) -> float:
    """Product of a validated spacing whose length must equal the mask's dimensionality."""
    spacing = _spacing_values(spacing_mm, ndim=ndim)
    if len(spacing) != ndim or len(mask_shape) != ndim:
        raise ValueError(
            f"expected a {ndim}-D mask with {ndim} spacing values; found mask.shape={mask_shape} "
            f"and spacing_mm={spacing}"
        )
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm must hold finite values > 0; found {spacing}")
    return math.prod(spacing)


def tissue_volume(mask: ArrayInput, spacing_mm: Sequence[float]) -> float:
    """Tissue volume in mm^3: voxel count times voxel volume (paper sec. 2.7, MRI).

    Args:
        mask: Binary 3-D mask ``(X, Y, Z)`` of one tissue.
        spacing_mm: Voxel size along each of the three axes in mm, e.g. ``(0.3125, 0.3125, 0.8)``.

    Returns:
        Volume in mm^3.

    Raises:
        ValueError: If the mask is not 3-D and binary, or the spacing is not 3 positive numbers.
        TypeError: If the mask holds no numbers (text, complex).

    Example:
        >>> import numpy as np
        >>> tissue_volume(np.ones((2, 2, 1), dtype=bool), (0.5, 0.5, 2.0))
        2.0
    """
    m = as_mask(mask, name="mask")
    voxel = _element_size(spacing_mm, ndim=3, mask_shape=m.shape)
    return float(np.count_nonzero(m)) * voxel


def cross_sectional_area(mask: ArrayInput, spacing_mm: Sequence[float]) -> float:
    """Tissue cross-sectional area in mm^2: pixel count times pixel area (paper sec. 2.7, CT).

    Args:
        mask: Binary 2-D mask ``(H, W)`` of one tissue.
        spacing_mm: Pixel size ``(row_mm, col_mm)``.

    Returns:
        Area in mm^2.

    Raises:
        ValueError: If the mask is not 2-D and binary, or the spacing is not 2 positive numbers.
        TypeError: If the mask holds no numbers (text, complex).

    Example:
        >>> import numpy as np
        >>> cross_sectional_area(np.eye(3, dtype=bool), (0.5, 2.0))
        3.0
    """
    m = as_mask(mask, name="mask")
    pixel = _element_size(spacing_mm, ndim=2, mask_shape=m.shape)
    return float(np.count_nonzero(m)) * pixel


def _masked_values(image: ArrayInput, mask: ArrayInput, *, image_name: str) -> npt.NDArray[Any]:
    img = as_numpy(image, name=image_name)
    m = as_mask(mask, name="mask")
    check_same_shape(img, m, names=(image_name, "mask"))
    return img[m].astype(np.float64, copy=False)


def mean_hu(hu: ArrayInput, mask: ArrayInput) -> float:
    """Mean Hounsfield units inside a tissue mask (paper sec. 2.7, CT).

    Use the raw HU image, before windowing and normalisation (DESIGN.md sec. 2). NaN in ``hu``
    propagates, because a NaN HU value means corrupt data rather than an excluded voxel.

    Args:
        hu: HU image, any shape, e.g. ``(H, W)``.
        mask: Binary tissue mask, same shape.

    Returns:
        Mean HU, or NaN for an empty mask.

    Raises:
        ValueError: If the shapes differ or the mask is not binary.
        TypeError: If ``hu`` or the mask holds no real numbers (text, complex).

    Example:
        >>> import numpy as np
        >>> mean_hu(np.array([[-100.0, 40.0], [60.0, 1000.0]]), np.array([[0, 1], [1, 0]]))
        50.0
    """
    values = _masked_values(hu, mask, image_name="hu")
    return float(values.mean()) if values.size else math.nan


def mean_t2(t2_ms: ArrayInput, mask: ArrayInput) -> float:
    """Mean T2 in ms over the valid voxels inside a tissue mask (paper sec. 2.7, MRI).

    NaN voxels of the map (invalid fits, see :func:`~inpaintssl.metrics.qdess_t2`) are skipped,
    unlike the authors' mean over zero-filled voxels, which biased T2 low. A T2 is a positive,
    finite time, so a value of 0 or below, or an infinite one, inside the mask is refused rather
    than averaged: it is how other tools (DOSMA writes 0) mark the invalid voxels this mean skips.

    Args:
        t2_ms: T2 map in ms, any shape, e.g. ``(X, Y, Z)``; NaN where invalid.
        mask: Binary tissue mask, same shape.

    Returns:
        Mean T2 in ms, or NaN when the mask holds no valid voxel.

    Raises:
        ValueError: If the shapes differ, the mask is not binary, or the map holds a value
            ``<= 0`` or ``+-inf`` inside the mask (mark invalid voxels NaN, e.g.
            ``np.where(np.isfinite(t2) & (t2 > 0), t2, np.nan)``).
        TypeError: If ``t2_ms`` or the mask holds no real numbers (text, complex).

    Example:
        >>> import numpy as np
        >>> mean_t2(np.array([30.0, np.nan, 50.0, 90.0]), np.array([1, 1, 1, 0]))
        40.0
    """
    values = _masked_values(t2_ms, mask, image_name="t2_ms")
    values = values[~np.isnan(values)]
    # A zero-filled map (DOSMA's) averaged as is gives a T2 biased low with no sign of it.
    bad = values[~(np.isfinite(values) & (values > 0))]
    if bad.size:
        raise ValueError(
            f"t2_ms must hold T2 values > 0 and finite (or NaN where invalid) inside the mask; found "
            f"{bad.size} other value(s) such as {np.unique(bad)[:5].tolist()}. A map that marks "
            "invalid voxels with 0 (as DOSMA writes them) would bias the mean low: mark them NaN, "
            "e.g. np.where(np.isfinite(t2) & (t2 > 0), t2, np.nan)."
        )
    return float(values.mean()) if values.size else math.nan


def _pred_and_ref(
    pred: ArrayInput, ref: ArrayInput
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``pred`` and ``ref`` as float64 arrays, refused where their shapes do not broadcast."""
    p = as_numpy(pred, name="pred").astype(np.float64)
    r = as_numpy(ref, name="ref").astype(np.float64)
    try:
        np.broadcast_shapes(p.shape, r.shape)
    except ValueError:
        raise ValueError(
            f"pred and ref must have shapes that broadcast together (the same, or one a scalar); "
            f"found pred.shape={p.shape} and ref.shape={r.shape}"
        ) from None
    return p, r


def percent_error(pred: ArrayInput, ref: ArrayInput) -> npt.NDArray[np.float64]:
    """Percent error ``100 * |pred - ref| / |ref|`` (paper sec. 2.7), element-wise.

    ``ref`` is the metric from the ground-truth mask. When ``ref`` is 0 the error is ``inf``
    (or NaN when ``pred`` is 0 too, since 0/0 is undefined); NaN inputs give NaN.

    Args:
        pred: Metric from the predicted mask, scalar or array.
        ref: Reference metric, broadcastable with ``pred``.

    Returns:
        Float64 array of the broadcast shape (0-d for scalar inputs; use ``float()``).

    Raises:
        ValueError: If the shapes of ``pred`` and ``ref`` do not broadcast together.
        TypeError: If either holds no real numbers (text, complex).

    Example:
        >>> float(percent_error(90.0, 100.0))
        10.0
        >>> percent_error([1.0, 0.0], [0.0, 0.0])
        array([inf, nan])
    """
    p, r = _pred_and_ref(pred, ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: npt.NDArray[np.float64] = 100.0 * np.abs(p - r) / np.abs(r)
    return out


def absolute_error(pred: ArrayInput, ref: ArrayInput) -> npt.NDArray[np.float64]:
    """Absolute error ``|pred - ref|`` in the metric's own unit, element-wise.

    The error to report for measures on an interval scale such as mean HU (see the module notes):
    it does not depend on where the scale puts its zero, so a reference mean of 0 HU is no special
    case. NaN inputs give NaN.

    Args:
        pred: Metric from the predicted mask, scalar or array.
        ref: Reference metric, broadcastable with ``pred``.

    Returns:
        Float64 array of the broadcast shape (0-d for scalar inputs; use ``float()``).

    Raises:
        ValueError: If the shapes of ``pred`` and ``ref`` do not broadcast together.
        TypeError: If either holds no real numbers (text, complex).

    Example:
        >>> float(absolute_error(3.0, 0.0))  # 3 HU off a water-like reference: percent error is inf
        3.0
        >>> absolute_error([-95.0, 45.0], [-100.0, 40.0])  # fat and muscle, 5 HU off each
        array([5., 5.])
    """
    p, r = _pred_and_ref(pred, ref)
    out: npt.NDArray[np.float64] = np.abs(p - r)
    return out


@dataclass(frozen=True)
class ClinicalComparison:
    """One clinical metric of one tissue, from the prediction and from the reference.

    Attributes:
        class_name: Tissue name.
        metric: ``"volume_mm3"``, ``"area_mm2"``, ``"mean_t2_ms"`` or ``"mean_hu"``.
        predicted: Metric computed from the predicted mask.
        reference: Metric computed from the ground-truth mask.
        percent_error: ``100 * |predicted - reference| / |reference|``; meaningful only for
            ratio-scale metrics (not ``mean_hu``, see :data:`MEASUREMENT_SCALES`).
        absolute_error: ``|predicted - reference|`` in the metric's unit
            (:data:`MEASUREMENT_UNITS`); NaN for a row built by hand without it.
    """

    class_name: str
    metric: str
    predicted: float
    reference: float
    percent_error: float
    absolute_error: float = math.nan

    @property
    def error(self) -> float:
        """The error that fits the metric's scale: absolute for interval scales (mean HU), else percent.

        Example:
            >>> ClinicalComparison("water", "mean_hu", 3.0, 0.0, math.inf, 3.0).error
            3.0
            >>> ClinicalComparison("fat", "area_mm2", 90.0, 100.0, 10.0, 10.0).error
            10.0
        """
        if MEASUREMENT_SCALES.get(self.metric) == "interval":
            return (
                abs(self.predicted - self.reference)
                if math.isnan(self.absolute_error)
                else self.absolute_error
            )
        return self.percent_error

    @property
    def error_unit(self) -> str:
        """Unit of :attr:`error`: ``"%"``, or the metric's unit for interval scales (``"HU"``).

        Example:
            >>> ClinicalComparison("water", "mean_hu", 3.0, 0.0, math.inf, 3.0).error_unit
            'HU'
        """
        if MEASUREMENT_SCALES.get(self.metric) == "interval":
            return MEASUREMENT_UNITS[self.metric]
        return "%"


def clinical_errors(
    pred_onehot: ArrayInput,
    target_onehot: ArrayInput,
    *,
    spacing_mm: Sequence[float],
    t2_ms: ArrayInput | None = None,
    hu: ArrayInput | None = None,
    class_names: Sequence[str] | None = None,
) -> list[ClinicalComparison]:
    """Clinical metrics of one image or volume and their percent and absolute errors (paper sec. 2.7).

    Every class gets its size: tissue volume for a 3-D volume ``(K, X, Y, Z)`` (MRI) or
    cross-sectional area for a 2-D slice ``(K, H, W)`` (CT). With ``t2_ms`` it also gets mean T2,
    with ``hu`` mean HU. Each row holds the percent error (the paper's) and the absolute error;
    for mean HU, an interval scale, read the absolute error in HU (:attr:`ClinicalComparison.error`).

    Args:
        pred_onehot: Predicted one-hot masks ``(K, ...)`` with 2 or 3 spatial axes.
        target_onehot: Ground-truth one-hot masks, same shape.
        spacing_mm: Spacing of the spatial axes in mm (2 or 3 values).
        t2_ms: T2 map ``(...)``, or one map per class ``(K, ...)`` (each computed with its
            tissue's T1, see :data:`~inpaintssl.metrics.T1_DEFAULTS_MS`).
        hu: Raw HU image ``(...)``.
        class_names: K tissue names; defaults to ``class_0``, ``class_1``, ...

    Returns:
        One :class:`ClinicalComparison` per class and metric, classes in order. A mean over an
        empty mask is NaN (and so is its error); a tissue predicted but absent from the reference
        has an infinite size error, one absent from both a NaN one.

    Raises:
        ValueError: If shapes, spacing or class names do not match the masks.
        TypeError: If a mask, ``t2_ms`` or ``hu`` holds no real numbers (text, complex).

    Example:
        >>> import numpy as np
        >>> target = np.zeros((1, 4, 4), dtype=bool); target[0, :2, :2] = True
        >>> pred = target.copy(); pred[0, 2, 0] = True
        >>> [(r.metric, r.percent_error) for r in clinical_errors(pred, target, spacing_mm=(1, 2))]
        [('area_mm2', 25.0)]
    """
    pred = as_mask(pred_onehot, name="pred_onehot")
    target = as_mask(target_onehot, name="target_onehot")
    check_same_shape(pred, target, names=("pred_onehot", "target_onehot"))
    spatial = pred.shape[1:]
    if len(spatial) not in (2, 3):
        raise ValueError(f"pred_onehot must be (K, H, W) or (K, X, Y, Z); found shape {pred.shape}")
    # Read once: each class's size reads it twice, and an iterator (a map over text) would be
    # empty from the second reading on.
    spacing = _spacing_values(spacing_mm, ndim=len(spatial))
    if len(spacing) != len(spatial):
        # A (X, Y, Z) mask given without its class axis reads as K=X classes of (Y, Z) slices;
        # (K, H, W) slices given a dataset item's three spacing values (row, column, thickness)
        # look the same, and mask[None] would then measure K slices as one volume.
        hint = (
            "; (K, H, W) slices with a dataset item's (row, column, thickness) spacing? give the "
            "in-plane two, e.g. item['spacing'][:2]; a 3-D mask without its class axis? give one "
            "axis per class first, e.g. mask[None]"
            if len(spacing) == pred.ndim
            else ""
        )
        raise ValueError(
            f"spacing_mm has {len(spacing)} values for the {len(spatial)} spatial axes of "
            f"pred_onehot {pred.shape} (its first axis holds the K classes){hint}"
        )
    num_classes = pred.shape[0]
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names must have K={num_classes} entries; found {len(names)}")

    t2_maps = None
    if t2_ms is not None:
        t2 = as_numpy(t2_ms, name="t2_ms")
        if t2.shape == spatial:
            t2_maps = [t2] * num_classes
        elif t2.shape == pred.shape:
            t2_maps = list(t2)
        else:
            raise ValueError(f"t2_ms must have shape {spatial} or {pred.shape}; found {t2.shape}")
    hu_image = None
    if hu is not None:
        hu_image = as_numpy(hu, name="hu")
        check_same_shape(hu_image, pred[0], names=("hu", "a class mask of pred_onehot"))

    size_name, size_fn = (
        ("area_mm2", cross_sectional_area) if len(spatial) == 2 else ("volume_mm3", tissue_volume)
    )
    rows: list[ClinicalComparison] = []

    def add(name: str, metric: str, predicted: float, reference: float) -> None:
        error = float(percent_error(predicted, reference))
        absolute = float(absolute_error(predicted, reference))
        rows.append(ClinicalComparison(name, metric, predicted, reference, error, absolute))

    for k, name in enumerate(names):
        add(name, size_name, size_fn(pred[k], spacing), size_fn(target[k], spacing))
        if t2_maps is not None:
            add(name, "mean_t2_ms", mean_t2(t2_maps[k], pred[k]), mean_t2(t2_maps[k], target[k]))
        if hu_image is not None:
            add(name, "mean_hu", mean_hu(hu_image, pred[k]), mean_hu(hu_image, target[k]))
    return rows
