"""Dice plus cross-entropy: an optional, common variant of the paper's Dice loss.

Not used by the paper (which trains with eq. A2 alone, Appendix A.1); cross-entropy adds a dense
per-pixel signal that helps when a class is nearly absent from early predictions.

Example:
    >>> import torch
    >>> loss = DiceCELoss(activation="softmax")
    >>> loss.out_channels(4)
    5
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inpaintssl.losses._tensors import check_non_negative
from inpaintssl.losses.base import Activation, SegmentationLoss
from inpaintssl.losses.dice import dice_loss
from inpaintssl.registry import LOSSES

__all__ = ["DiceCELoss", "categorical_cross_entropy"]


@LOSSES.register("dice_ce")
class DiceCELoss(SegmentationLoss):
    """``dice_loss + ce_weight * cross_entropy``.

    With sigmoid the cross-entropy is per-class binary (mean over classes and pixels); with softmax
    it is categorical over background plus the K classes.

    Args:
        activation: ``"sigmoid"`` or ``"softmax"`` (background channel first).
        eps: Smoothing term of the Dice part, eq. (A2), a finite number ``>= 0``.
        include_background: With softmax, score the background channel in the Dice part.
        ce_weight: Weight of the cross-entropy term, a finite number ``>= 0``.

    Raises:
        ValueError: ``eps`` or ``ce_weight`` negative, NaN or infinite, or a bad ``activation``.
        TypeError: ``eps`` or ``ce_weight`` is not a real number.

    Example:
        >>> import torch
        >>> loss = DiceCELoss(ce_weight=0.0)
        >>> logits, target = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
        >>> round(float(loss(logits, target)), 4)  # only Dice: 1 - 2*0.5*4 / (2 + 4)
        0.3333
    """

    def __init__(
        self,
        *,
        activation: Activation = "sigmoid",
        eps: float = 1e-7,
        include_background: bool = False,
        ce_weight: float = 1.0,
    ) -> None:
        super().__init__(activation=activation, include_background=include_background)
        self.eps = check_non_negative(eps, name="eps")
        self.ce_weight = check_non_negative(ce_weight, name="ce_weight")

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        """Dice (eq. A2) plus weighted cross-entropy of ``logits`` against ``target_onehot``."""
        probs, target = self.dice_pair(logits, target_onehot)
        dice = dice_loss(probs, target, self.eps)
        logits = logits.to(probs.dtype)
        if self.activation == "sigmoid":
            ce = F.binary_cross_entropy_with_logits(logits, target_onehot.to(probs.dtype))
        else:
            ce = categorical_cross_entropy(
                logits,
                self.class_index(target_onehot),
                # PyTorch's NLL kernel on CUDA has no deterministic version and raises under
                # use_deterministic_algorithms (run.deterministic); the CPU keeps F.cross_entropy's bits.
                elementwise=logits.is_cuda and torch.are_deterministic_algorithms_enabled(),
            )
        return dice + self.ce_weight * ce


def categorical_cross_entropy(
    logits: torch.Tensor, index: torch.Tensor, *, elementwise: bool
) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` ``(N, C, H, W)`` against class indices ``index`` ``(N, H, W)``.

    ``elementwise=False`` is :func:`torch.nn.functional.cross_entropy`; ``elementwise=True`` gives
    the same value (to rounding) from element-wise operations only (the target's log-softmax
    picked by a mask built by comparison), which CUDA computes deterministically in both
    directions.

    Example:
        >>> logits, index = torch.tensor([[[[2.0]], [[0.0]]]]), torch.tensor([[[1]]])
        >>> a = categorical_cross_entropy(logits, index, elementwise=False)
        >>> b = categorical_cross_entropy(logits, index, elementwise=True)
        >>> round(float(a), 4), round(float(b), 4)  # log(1 + e**2)
        (2.1269, 2.1269)
    """
    if not elementwise:
        return F.cross_entropy(logits, index)
    classes = torch.arange(logits.shape[1], device=logits.device).view(1, -1, *([1] * (logits.ndim - 2)))
    # Picked, not multiplied by a one-hot: a -inf logit off the target (a masked class, a float16
    # overflow) times 0 is NaN, where F.cross_entropy leaves it out.
    picked = torch.where(index.unsqueeze(1) == classes, F.log_softmax(logits, dim=1), 0.0)
    return -picked.sum(dim=1).mean()
