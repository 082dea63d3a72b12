"""Whether autocast is on for a device, asked the same way on every supported PyTorch.

PyTorch 2.4 gave :func:`torch.is_autocast_enabled` a device argument; before it the argument-less
form answered for CUDA and the CPU had a query of its own (deprecated, with a warning, since 2.4).
The layers that behave differently under autocast (:class:`~inpaintssl.models.AutocastGroupNorm`,
:func:`~inpaintssl.models.conv3x3`) and the training package's CPU emulation of CUDA's policy
(:mod:`inpaintssl.training.autocast_policy`) all ask :func:`autocast_enabled`, which picks the form
once, at import, rather than by a ``try`` on every call, which ``torch.compile`` would have to trace.

Example:
    >>> import torch
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     inside = autocast_enabled("cpu")
    >>> inside, autocast_enabled("cpu")
    (True, False)
"""

from __future__ import annotations

import torch

__all__ = ["LOW_PRECISION_DTYPES", "autocast_enabled"]

LOW_PRECISION_DTYPES: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16)
"""The dtypes autocast computes in: what a layer sees when it runs under mixed precision."""


def _enabled_by_device(device_type: str) -> bool:
    return bool(torch.is_autocast_enabled(device_type))  # type: ignore[call-arg,unused-ignore]


def _enabled_torch_2_3(device_type: str) -> bool:
    if device_type == "cpu":
        return bool(torch.is_autocast_cpu_enabled())  # type: ignore[attr-defined,unused-ignore]
    return bool(torch.is_autocast_enabled())  # type: ignore[call-arg,unused-ignore]


def _takes_a_device() -> bool:
    try:
        torch.is_autocast_enabled("cpu")  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        return False
    return True


_ENABLED = _enabled_by_device if _takes_a_device() else _enabled_torch_2_3


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``"cpu"``, ``"cuda"``, ...) in this thread.

    Args:
        device_type: A :attr:`torch.device.type`.

    Example:
        >>> import torch
        >>> autocast_enabled("cpu"), autocast_enabled("cuda")
        (False, False)
    """
    return _ENABLED(device_type)
