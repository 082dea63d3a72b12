"""Shared input checks for the loss functions."""

from __future__ import annotations

import torch

__all__ = ["as_loss_dtype", "check_same_shape"]


def check_same_shape(
    first: torch.Tensor, second: torch.Tensor, *, names: tuple[str, str], min_ndim: int = 3
) -> None:
    """Raise ``ValueError`` unless both tensors have one shape ``(N, C, *spatial)``."""
    for name, tensor in zip(names, (first, second)):
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
