"""Dice overlap between predicted and reference one-hot segmentations (paper sec. 2.5.2, 2.5.3).

The paper compares segmentation models by the Dice coefficient of each class, computed per test
volume or slice and then averaged (sec. 2.5.2); sec. 2.5.3 averages it over classes per image to
get the paired samples of its Wilcoxon tests.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from inpaintssl.metrics._arrays import ArrayInput, as_mask, check_same_shape

__all__ = ["dice_per_class", "dice_per_image"]


def dice_per_image(
    pred: ArrayInput, target: ArrayInput, *, empty_score: float = 1.0
) -> npt.NDArray[np.float64]:
    """Dice coefficient of every class of every image in a batch.

    ``Dice = 2 |P & T| / (|P| + |T|)`` per image and class (paper sec. 2.5.2), on binary masks.

    A class that is empty in both the prediction and the reference has no defined Dice; it gets
    ``empty_score``, 1.0 by default (a correct "nothing here"): what the authors' MedSegPy ``DSC``
    returns through its epsilon smoothing, and what the project's evaluation tables use. Pass
    ``empty_score=float("nan")`` to leave such slices out of :func:`numpy.nanmean` averages
    instead. A class present in only one of the two scores 0.

    Args:
        pred: Predicted one-hot masks ``(N, K, ...)`` (e.g. ``(N, K, H, W)``), bool or 0/1, as a
            NumPy array or a tensor on any device.
        target: Reference one-hot masks, same shape as ``pred``.
        empty_score: Value for an image/class where both masks are empty.

    Returns:
        ``(N, K)`` float64 Dice scores in ``[0, 1]`` (or ``empty_score``); empty for an empty batch.

    Raises:
        ValueError: If the shapes differ, have fewer than 3 dimensions (no axis of voxels), or the
            masks are not binary.

    Example:
        >>> import numpy as np
        >>> pred = np.zeros((1, 2, 4, 4), dtype=bool); target = pred.copy()
        >>> pred[0, 0, :2] = True; target[0, 0, :1] = True
        >>> dice_per_image(pred, target)  # class 1 is empty in both
        array([[0.66666667, 1.        ]])
        >>> dice_per_image(pred, target, empty_score=float("nan"))
        array([[0.66666667,        nan]])
    """
    p = as_mask(pred, name="pred")
    t = as_mask(target, name="target")
    check_same_shape(p, t, names=("pred", "target"))
    if p.ndim < 3:
        # An (N, K) pair would score each pixel of a flattened mask as a class of its own.
        raise ValueError(
            f"pred and target must have shape (N, K, ...) with at least one axis of voxels; found {p.shape}"
        )
    # No -1: an empty batch (or no classes) is a (0, K) or (N, 0) result, not an unsolvable reshape.
    voxels = math.prod(p.shape[2:])
    p = p.reshape(p.shape[0], p.shape[1], voxels)
    t = t.reshape(t.shape[0], t.shape[1], voxels)
    intersection = np.count_nonzero(p & t, axis=-1)
    total = np.count_nonzero(p, axis=-1) + np.count_nonzero(t, axis=-1)
    dice = np.full(total.shape, empty_score, dtype=np.float64)
    np.divide(2.0 * intersection, total, out=dice, where=total > 0)
    return dice


def dice_per_class(
    pred_onehot: ArrayInput, target_onehot: ArrayInput, *, empty_score: float = 1.0
) -> npt.NDArray[np.float64]:
    """Dice coefficient of each class of one image or volume.

    Same definition and empty-class rule as :func:`dice_per_image` (paper sec. 2.5.2): a class
    empty in both masks gets ``empty_score`` (1.0 by default).

    Args:
        pred_onehot: Predicted one-hot mask ``(K, ...)`` (e.g. ``(K, H, W)`` or ``(K, X, Y, Z)``).
        target_onehot: Reference one-hot mask, same shape.
        empty_score: Value for a class where both masks are empty.

    Returns:
        ``(K,)`` float64 Dice scores.

    Raises:
        ValueError: If the shapes differ, have no class axis or no axis of voxels, or the masks are
            not binary.

    Example:
        >>> import numpy as np
        >>> pred = np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
        >>> target = np.array([[1, 0, 0, 0], [0, 0, 1, 1]])
        >>> dice_per_class(pred, target)
        array([0.66666667, 1.        ])
    """
    p = as_mask(pred_onehot, name="pred_onehot")
    t = as_mask(target_onehot, name="target_onehot")
    check_same_shape(p, t, names=("pred_onehot", "target_onehot"))
    if p.ndim < 2:
        raise ValueError(
            "pred_onehot and target_onehot must have shape (K, ...) with at least one axis of voxels; "
            f"found {p.shape} (one class's mask is mask[None])"
        )
    per_class: npt.NDArray[np.float64] = dice_per_image(p[None], t[None], empty_score=empty_score)[0]
    return per_class
