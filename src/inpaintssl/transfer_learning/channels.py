"""Adapting a pretrained first layer to a different number of input channels.

Pretraining and fine-tuning images may differ in channels (e.g. single-channel pretraining and
three-window CT, paper sec. 2.2). :func:`inpaintssl.transfer_learning.transfer` applies this only when
asked (``in_channels="repeat"`` or ``"average"``), never by accident.

Example:
    >>> import torch
    >>> adapt_input_channels(torch.ones(4, 1, 3, 3), 3, mode="repeat").shape
    torch.Size([4, 3, 3, 3])
"""

from __future__ import annotations

import numbers
from typing import Literal

import torch

__all__ = ["AdaptMode", "adapt_input_channels"]

AdaptMode = Literal["repeat", "average"]


def adapt_input_channels(weight: torch.Tensor, in_channels: int, *, mode: AdaptMode) -> torch.Tensor:
    """Kernel ``(C_out, C_old, kH, kW)`` rebuilt for ``in_channels`` input channels.

    ``"repeat"`` tiles the old kernels cyclically over the new channels (new channel ``j`` takes
    old channel ``j % C_old``) and divides each by the number of new channels that copy it. An
    input whose channels are replicated the same way therefore gives exactly the old response;
    when ``C_new`` is a multiple of ``C_old`` the factor is ``C_old / C_new``, and when
    ``C_new < C_old`` the first ``C_new`` kernels are kept unscaled. That holds for a plain
    convolution. A weight-standardised one (``unet2d``'s :class:`~inpaintssl.models.layers.WSConv2d`)
    standardises the rebuilt kernel again: when ``C_new`` is a multiple of ``C_old`` the scale
    cancels there and the response is the old one times ``C_new / C_old`` (up to the
    standardisation's ``eps``), which the GroupNorm after it removes; otherwise the copies are
    uneven, the standardisation re-centres the kernel, and the response is only close to the old
    one.
    ``"average"`` gives every new channel the mean of the old kernels over their channels.

    Args:
        weight: Pretrained kernel ``(C_out, C_old, *kernel)``.
        in_channels: New input channel count ``C_new``.
        mode: ``"repeat"`` or ``"average"``.

    Returns:
        Kernel ``(C_out, C_new, *kernel)`` of ``weight``'s dtype and device.

    Raises:
        TypeError: ``in_channels`` is not an integer (a float, a string, or a bool).
        ValueError: Unknown ``mode``, ``in_channels < 1`` or a weight with fewer than 3 dimensions.

    Example:
        >>> import torch
        >>> w = torch.tensor([[[[2.0]], [[4.0]]]])  # (1, 2, 1, 1)
        >>> adapt_input_channels(w, 4, mode="repeat").flatten().tolist()
        [1.0, 2.0, 1.0, 2.0]
        >>> adapt_input_channels(w, 1, mode="average").flatten().tolist()
        [3.0]
    """
    if weight.ndim < 3:
        raise ValueError(
            f"weight must be a convolution kernel (C_out, C_in, *kernel); found shape {tuple(weight.shape)}"
        )
    # True would count as one channel, and 3.0 fails deep inside torch (bincount, expand) without
    # naming the argument.
    if isinstance(in_channels, bool) or not isinstance(in_channels, numbers.Integral):
        raise TypeError(
            f"in_channels: expected an integer number of input channels (>= 1); found "
            f"{type(in_channels).__name__} {in_channels!r}"
        )
    in_channels = int(in_channels)
    if in_channels < 1:
        raise ValueError(f"in_channels={in_channels} is invalid; expected an integer >= 1")
    old = weight.shape[1]
    if mode == "average":
        return weight.mean(dim=1, keepdim=True).expand(-1, in_channels, *weight.shape[2:]).clone()
    if mode == "repeat":
        source = torch.arange(in_channels, device=weight.device) % old
        copies = torch.bincount(source, minlength=old).to(weight.dtype)
        scale = (1 / copies[source]).view(1, -1, *([1] * (weight.ndim - 2)))
        return weight.index_select(1, source) * scale
    raise ValueError(f"mode={mode!r} is invalid; expected 'repeat' or 'average'")
