"""Losses: eq. (A1) for inpainting and eq. (A2) batch-aggregate Dice for segmentation (App. A.1).

Importing this package registers ``"l2"``, ``"dice"`` and ``"dice_ce"`` in
:data:`inpaintssl.registry.LOSSES`.

Example:
    >>> import torch
    >>> from inpaintssl.registry import LOSSES
    >>> loss = LOSSES.build("dice", activation="softmax")
    >>> loss.out_channels(4), loss.activation
    (5, 'softmax')
"""

from inpaintssl.losses.base import Activation, SegmentationLoss
from inpaintssl.losses.dice import DiceLoss, dice_loss
from inpaintssl.losses.dice_ce import DiceCELoss
from inpaintssl.losses.l2 import L2Loss, l2_loss

__all__ = [
    "Activation",
    "DiceCELoss",
    "DiceLoss",
    "L2Loss",
    "SegmentationLoss",
    "dice_loss",
    "l2_loss",
]
