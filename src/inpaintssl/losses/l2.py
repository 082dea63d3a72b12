"""The inpainting loss: eq. (A1) of the paper (Appendix A.1).

Example:
    >>> import torch
    >>> l2_loss(torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))
    tensor(16.)
"""

from __future__ import annotations

import torch
from torch import nn

from inpaintssl.losses._tensors import as_loss_dtype, check_same_shape
from inpaintssl.registry import LOSSES

__all__ = ["L2Loss", "l2_loss"]


def l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels, averaged over images and channels (eq. A1).

    ``L = 1/C * sum_c 1/N * sum_n sum_{h,w} (X[n,c,h,w] - Y[n,c,h,w])**2``. Because it is a
    per-image *sum*, its scale grows with the image area (hence the authors' early-stopping
    threshold of 50, Appendix A.1).

    Args:
        pred: Restored images ``X``, shape ``(N, C, H, W)``.
        target: Original images ``Y``, same shape.

    Returns:
        A scalar tensor (float32 for half-precision inputs).

    Raises:
        ValueError: If the shapes differ or are not ``(N, C, H, W)``.

    Example:
        >>> import torch
        >>> pred = torch.zeros(1, 2, 2, 2)
        >>> target = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 2.0]]]])
        >>> l2_loss(pred, target)  # channel sums 4 and 4, mean over C = 2 channels
        tensor(4.)
    """
    # At least (N, C, H, W): an (N, H, W) batch or one (C, H, W) image would average its rows as
    # channels, an L2 H times too small.
    check_same_shape(pred, target, names=("pred", "target"), min_ndim=4)
    diff = as_loss_dtype(pred) - as_loss_dtype(target)
    per_image_channel = diff.square().flatten(start_dim=2).sum(dim=2)
    return per_image_channel.mean()


@LOSSES.register("l2")
class L2Loss(nn.Module):
    """Module form of :func:`l2_loss` (eq. A1), the inpainting objective of sec. 2.3.

    Example:
        >>> import torch
        >>> L2Loss()(torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2))
        tensor(4.)
    """

    def __init__(self) -> None:
        """Take no parameters: eq. A1 has none to set.

        Spelled out so that the registry sees an empty signature (``nn.Module``'s is
        ``*args, **kwargs``) and refuses a parameter by name (``LOSSES.build("l2", reduction=...)``).
        """
        super().__init__()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Eq. A1 for ``pred`` and ``target`` of shape ``(N, C, H, W)``."""
        return l2_loss(pred, target)
