"""Run a forward pass on the CPU under the autocast dtypes another device would give its tensors.

The memory pre-flight (:mod:`~inpaintssl.training.memory_check`) counts what a training step
keeps for its backward pass on the CPU, without the card, and under mixed precision that depends
on which ops autocast runs in float32. CPU and CUDA autocast agree on everything the U-Nets here
call (convolutions in the low precision; ReLU, pooling, concatenation, instance and batch norm in
their input's dtype) but the norms ``group_norm`` and ``layer_norm``: CUDA runs them in float32
(PyTorch's AMP reference, "CUDA Ops that can autocast to float32"), the CPU in the input's dtype.
For the paper's U-Net at 512x512 that difference is 680 MiB against 344 MiB kept per image
(``benchmarks/bench_saved_activations.py``). :func:`autocast_as_on` emulates it.

Example:
    >>> import torch
    >>> import torch.nn.functional as F
    >>> x = torch.randn(1, 4, 8, 8)
    >>> with autocast_as_on("cuda", torch.bfloat16):
    ...     F.group_norm(x.bfloat16(), 2).dtype, F.conv2d(x, torch.randn(4, 4, 3, 3)).dtype
    (torch.float32, torch.bfloat16)
    >>> with autocast_as_on("cpu", torch.bfloat16):
    ...     F.group_norm(x.bfloat16(), 2).dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from inpaintssl.models.autocast_state import LOW_PRECISION_DTYPES, autocast_enabled

__all__ = ["CudaAutocastNorms", "autocast_as_on"]

# CUDA autocast's float32 list, as far as the networks here call it.
_CUDA_FLOAT32_NORMS: tuple[Callable[..., Any], ...] = (F.group_norm, F.layer_norm)


class CudaAutocastNorms(TorchFunctionMode):
    """Under CPU autocast, run ``group_norm`` and ``layer_norm`` in float32, as CUDA autocast does.

    A norm called with autocast off is left alone, as CUDA leaves it:
    :class:`~inpaintssl.models.AutocastGroupNorm` with ``precision="autocast"`` turns autocast
    off around its own call to normalise in the low precision.
    """

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """Call ``func``; a norm of CUDA's float32 list gets a float32 copy of its low-precision input."""
        kwargs = kwargs or {}
        if func in _CUDA_FLOAT32_NORMS and args and autocast_enabled("cpu"):
            first = args[0]
            if isinstance(first, torch.Tensor) and first.dtype in LOW_PRECISION_DTYPES:
                with torch.autocast("cpu", enabled=False):
                    return func(first.float(), *args[1:], **kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def autocast_as_on(device_type: str, dtype: torch.dtype | None) -> Iterator[None]:
    """CPU autocast to ``dtype`` with ``device_type``'s policy for the norms; nothing for ``None``.

    Args:
        device_type: ``"cuda"`` (group and layer norm in float32), or any other device type
            for the CPU's own policy.
        dtype: The autocast dtype, ``torch.bfloat16`` or ``torch.float16``; ``None`` for none.
    """
    if dtype is None:
        yield
        return
    norms = CudaAutocastNorms() if device_type == "cuda" else contextlib.nullcontext()
    with torch.autocast("cpu", dtype=dtype), norms:
        yield
