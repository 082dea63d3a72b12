"""Shared input checks for the loss functions."""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["as_loss_dtype", "check_non_negative", "check_same_shape"]


def check_non_negative(value: object, *, name: str) -> float:
    """``value`` as a float when it is a finite real number ``>= 0``; else raise naming ``name``.

    Raises:
        TypeError: ``value`` is not a real number (a string from a config file, ``None``, a bool).
        ValueError: ``value`` is negative, NaN or infinite.

    Example:
        >>> check_non_negative(0, name="eps")
        0.0
        >>> check_non_negative(float("nan"), name="eps")
        Traceback (most recent call last):
        ...
        ValueError: eps=nan is invalid; expected a finite number >= 0
    """
    # A bool is an int to Python, but True as a weight is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name}={value!r} is invalid; expected a finite number >= 0, got {type(value).__name__}"
        )
    # NaN passes a plain ``< 0`` test and then turns every loss into NaN.
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number >= 0")
    return float(value)


def check_same_shape(
    first: torch.Tensor, second: torch.Tensor, *, names: tuple[str, str], min_ndim: int = 3
) -> None:
    """Raise ``ValueError`` unless both tensors have one shape ``(N, C, *spatial)``.

    Raises:
        TypeError: One is no torch tensor (a NumPy array failed on ``is_floating_point``).
    """
    for name, tensor in zip(names, (first, second)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"{name} is of type {type(tensor).__name__}; expected a torch.Tensor (N, C, H, W): "
                "convert an array with torch.from_numpy"
            )
        if tensor.ndim < min_ndim:
            raise ValueError(
                f"{name} must have shape (N, C, H, W) (at least {min_ndim} dimensions); "
                f"found shape {tuple(tensor.shape)}"
            )
    if first.shape != second.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; "
            f"found {tuple(first.shape)} and {tuple(second.shape)}"
        )


def as_loss_dtype(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors in float32, others unchanged.

    Loss sums run over whole images (512x512 pixels per slice), which overflow float16 and lose
    most digits in bfloat16; float64 is kept so ``gradcheck`` sees full precision.
    """
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    if not tensor.is_floating_point():
        return tensor.to(torch.get_default_dtype())
    return tensor
