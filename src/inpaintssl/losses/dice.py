"""The segmentation loss: batch-aggregate Dice, eq. (A2) of the paper (Appendix A.1).

Example:
    >>> import torch
    >>> target = torch.zeros(1, 2, 2, 2)
    >>> target[0, 0, 0] = 1.0
    >>> float(dice_loss(target.clone(), target))  # perfect on class 0; class 1 empty and unpredicted
    0.0
"""

from __future__ import annotations

import torch

from inpaintssl.losses._tensors import as_loss_dtype, check_non_negative, check_same_shape
from inpaintssl.losses.base import Activation, SegmentationLoss
from inpaintssl.registry import LOSSES

__all__ = ["DiceLoss", "dice_loss"]


def dice_loss(probs: torch.Tensor, target_onehot: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Batch-aggregate soft Dice loss, eq. (A2).

    For each class ``c`` the sums run over the whole mini-batch and all pixels, then the per-class
    losses are averaged::

        L = 1/C * sum_c [1 - (2 * sum_{n,h,w} X*Y + eps) / (sum_{n,h,w} (X + Y) + eps)]

    Aggregating over the batch keeps sparse classes stable (a slice without the class does not
    produce a 0/0 on its own). A class absent from both prediction and target scores a loss of 0:
    with ``eps > 0`` as ``eps / eps``, with ``eps = 0`` because that 0/0 is read as a perfect match.

    Args:
        probs: Predicted probabilities ``X``, shape ``(N, C, H, W)``.
        target_onehot: One-hot targets ``Y``, same shape.
        eps: Smoothing term added to numerator and denominator, a finite number ``>= 0``.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: If the shapes differ or are not ``(N, C, H, W)``, or ``eps`` is negative,
            NaN or infinite.
        TypeError: If ``eps`` is not a real number.

    Example:
        >>> import torch
        >>> probs = torch.full((2, 1, 2, 2), 0.5)
        >>> target = torch.ones(2, 1, 2, 2)
        >>> round(float(dice_loss(probs, target, eps=0.0)), 4)  # 1 - 2*4 / (4 + 8)
        0.3333
    """
    check_same_shape(probs, target_onehot, names=("probs", "target_onehot"))
    eps = check_non_negative(eps, name="eps")
    probs = as_loss_dtype(probs)
    target = as_loss_dtype(target_onehot).to(probs.dtype)
    reduce_dims = (0, *range(2, probs.ndim))
    intersection = (probs * target).sum(dim=reduce_dims)
    total = probs.sum(dim=reduce_dims) + target.sum(dim=reduce_dims)
    denominator = total + eps
    # Only with eps = 0: a class absent from both sides is 0/0. It scores as a match, and divides
    # by 1 instead so that its gradient is 0, not NaN; elsewhere both ``where`` keep every bit.
    empty = denominator == 0
    ratio = (2 * intersection + eps) / torch.where(empty, 1.0, denominator)
    per_class = 1 - torch.where(empty, 1.0, ratio)
    return per_class.mean()


@LOSSES.register("dice")
class DiceLoss(SegmentationLoss):
    """Eq. (A2) on activated logits: the paper's segmentation objective (sec. 2.3).

    Args:
        activation: ``"sigmoid"`` (one channel per foreground class, as the authors) or
            ``"softmax"`` (background channel first).
        eps: Smoothing term of eq. (A2), a finite number ``>= 0``.
        include_background: With softmax, score the background channel too.

    Raises:
        ValueError: ``eps`` negative, NaN or infinite, or a bad ``activation`` (see
            :class:`~inpaintssl.losses.base.SegmentationLoss`).
        TypeError: ``eps`` is not a real number.

    Example:
        >>> import torch
        >>> loss = DiceLoss()
        >>> target = (torch.rand(2, 3, 4, 4) > 0.5).float()
        >>> confident = 40.0 * (target - 0.5)  # logits of +-20: sigmoid is 0 or 1 to 1e-9
        >>> float(loss(confident, target)) < 1e-6
        True
    """

    def __init__(
        self, *, activation: Activation = "sigmoid", eps: float = 1e-7, include_background: bool = False
    ) -> None:
        super().__init__(activation=activation, include_background=include_background)
        self.eps = check_non_negative(eps, name="eps")

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        """Eq. (A2) of the activated ``logits`` against ``target_onehot``."""
        probs, target = self.dice_pair(logits, target_onehot)
        return dice_loss(probs, target, self.eps)
