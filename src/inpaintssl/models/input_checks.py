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
from collections.abc import Sequence

import torch

__all__ = ["check_backbone_input", "check_init_seed", "check_positive_int", "check_positive_ints"]

# Initialisation seeds lie in [0, 2**32), the range of run.seed (config/run.py).
_SEED_BOUND = 2**32


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

    The range is ``[0, 2**32)``, that of ``run.seed``: PyTorch's CPU generator keeps only the low 32
    bits of what :meth:`torch.Generator.manual_seed` takes, so seeds beyond it (``2**32`` and ``0``,
    ``-1`` and ``2**32 - 1``) would silently give the same weights. NumPy integers are integers.

    Raises:
        ValueError: ``seed`` is not ``None`` or an integer in that range (a bool is refused too).

    Example:
        >>> check_init_seed(7), check_init_seed(None)
        (7, None)
        >>> check_init_seed(2**32)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: seed=4294967296 is invalid; expected None or an integer in [0, 2**32) ...
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < _SEED_BOUND:
        raise ValueError(
            f"seed={seed!r} is invalid; expected None or an integer in [0, 2**32) (PyTorch's CPU "
            "generator keeps 32 bits of a seed, so larger or negative ones would repeat others)"
        )
    return int(seed)


def check_positive_int(name: str, value: object) -> int:
    """``value``, a backbone argument that must be an integer >= 1, as an ``int``.

    Any integer type counts (``numpy.int64`` from ``labels.max() + 1``, say); ``True`` does not.

    Raises:
        ValueError: Naming ``name`` and the value found.

    Example:
        >>> import numpy as np
        >>> check_positive_int("depth", 4), check_positive_int("out_channels", np.int64(3))
        (4, 3)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= 1")
    return int(value)


def check_positive_ints(name: str, value: object, *, expected: str) -> tuple[int, ...]:
    """``value``, a sequence of backbone widths or strides that must each be an integer >= 1, as ints.

    The integer rule of :func:`check_positive_int` (NumPy integers count, ``True`` does not).

    Raises:
        ValueError: Naming ``name``, ``expected`` and the first bad item found.

    Example:
        >>> import numpy as np
        >>> check_positive_ints("channels", np.array([4, 8]).tolist(), expected="integers >= 1")
        (4, 8)
        >>> check_positive_ints("channels", (np.int64(4), np.int64(8)), expected="integers >= 1")
        (4, 8)
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name}={value!r} is invalid; expected {expected}")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1]
    if bad:
        raise ValueError(f"{name}={value!r} is invalid; expected {expected}, found {bad[0]!r}")
    return tuple(int(v) for v in value)
