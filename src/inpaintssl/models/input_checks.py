"""The checks every backbone makes: of its arguments, and of the input its ``forward`` gets.

A U-Net pools its input several times, so height and width must be multiples of its
``size_multiple``; libraries that pad silently (MONAI's ``BasicUNet``) shift the image borders
instead, so inpaintssl refuses such inputs with a message that says how to fit them.

Example:
    >>> import torch
    >>> check_backbone_input(torch.zeros(2, 1, 32, 48), in_channels=1, size_multiple=16, why="4 poolings")
    >>> check_backbone_input(torch.zeros(2, 1, 30, 48), in_channels=1, size_multiple=16, why="4 poolings")
    Traceback (most recent call last):
    ...
    ValueError: input size (H, W) = (30, 48) is not divisible by size_multiple=16 (4 poolings); ...
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["check_backbone_input", "check_init_seed", "check_positive_int"]


def check_backbone_input(x: torch.Tensor, *, in_channels: int, size_multiple: int, why: str) -> None:
    """Refuse a batch unless it is ``(N, in_channels, H, W)``, ``H`` and ``W`` multiples of ``size_multiple``.

    Args:
        x: The batch given to ``forward``.
        in_channels: The channel count the network was built for.
        size_multiple: The factor ``H`` and ``W`` must be multiples of.
        why: Where ``size_multiple`` comes from, for the message (e.g. ``"2**(depth-1) for depth=4"``).

    Raises:
        ValueError: Naming the shape found and, for a size that does not fit, the nearest size that does.
    """
    if x.ndim != 4:
        raise ValueError(f"input must have shape (N, C, H, W); found shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"input has {x.shape[1]} channels; this network expects in_channels={in_channels}")
    height, width = x.shape[-2:]
    if height % size_multiple or width % size_multiple:
        fit = (-(-height // size_multiple) * size_multiple, -(-width // size_multiple) * size_multiple)
        raise ValueError(
            f"input size (H, W) = ({height}, {width}) is not divisible by size_multiple={size_multiple} "
            f"({why}); crop or pad it, e.g. to {fit}"
        )


def check_init_seed(seed: object) -> int | None:
    """Return a backbone's initialisation ``seed`` as an ``int`` (or ``None``), or refuse it by name.

    :meth:`torch.Generator.manual_seed` takes any integer in ``[-2**63, 2**64)``; outside that range,
    or for a float, it fails with "Overflow when unpacking long long" or "expected a long", which
    name no argument.

    Raises:
        ValueError: ``seed`` is not ``None`` or an integer in that range (a bool is refused too).

    Example:
        >>> check_init_seed(7), check_init_seed(None)
        (7, None)
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not -(2**63) <= int(seed) < 2**64:
        raise ValueError(f"seed={seed!r} is invalid; expected None or an integer in [-2**63, 2**64)")
    return int(seed)


def check_positive_int(name: str, value: object) -> int:
    """``value``, a backbone argument that must be an integer >= 1 (``True`` is not one).

    Raises:
        ValueError: Naming ``name`` and the value found.

    Example:
        >>> check_positive_int("depth", 4)
        4
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= 1")
    return value
