"""Input conversion shared by the metric modules: arrays or tensors in, NumPy out."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["ArrayInput", "as_mask", "as_numpy", "check_same_shape"]

ArrayInput: TypeAlias = npt.ArrayLike | torch.Tensor
"""Anything the metrics accept: NumPy arrays, nested sequences, or torch tensors on any device."""

_NUMERIC_KINDS = "biuf"
"""NumPy dtype kinds of the values a metric takes: bool, signed and unsigned integer, float."""

_KIND_NAMES = MappingProxyType(
    {
        "c": "complex",
        "U": "text",
        "S": "bytes",
        "O": "objects",
        "M": "dates",
        "m": "time spans",
        "V": "structured records",
    }
)


def as_numpy(x: ArrayInput, *, name: str, complex_ok: bool = False) -> npt.NDArray[Any]:
    """Return ``x`` as a NumPy array, copying a tensor from its device to host memory.

    Args:
        x: Array-like or :class:`torch.Tensor` (any device) of booleans, integers or floats.
        name: Argument name used in error messages.
        complex_ok: Take complex values too (echoes before the magnitude, which the T2 fits take
            by their magnitude); elsewhere a complex value has no meaning a real metric could use.

    Returns:
        A NumPy array (a view when ``x`` already is one).

    Raises:
        TypeError: ``x`` holds anything else: text (``np.asarray(["30"])``), objects, dates, or
            complex numbers without ``complex_ok``; the message names ``name`` and the dtype.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        # NumPy cannot hold bfloat16 and float16 loses precision in the T2 log-ratio: widen first.
        if t.is_floating_point() and t.dtype != torch.float64:
            t = t.to(torch.float32)
        arr = t.numpy()
    else:
        arr = np.asarray(x)
    # Text converted by astype(float) gave means of strings, complex lost its imaginary part with
    # only a ComplexWarning, and the rest failed deep in NumPy naming no argument.
    kinds = _NUMERIC_KINDS + ("c" if complex_ok else "")
    if arr.dtype.kind not in kinds:
        allowed = (
            "booleans, integers, floats or complex numbers" if complex_ok else "booleans, integers or floats"
        )
        kind = _KIND_NAMES.get(arr.dtype.kind, arr.dtype.kind)
        raise TypeError(f"{name} must be an array or tensor of {allowed}; found dtype {arr.dtype} ({kind})")
    return arr


def as_mask(x: ArrayInput, *, name: str) -> npt.NDArray[np.bool_]:
    """Return ``x`` as a boolean mask, refusing anything that is not binary.

    Probabilities or label maps passed by mistake would otherwise be silently thresholded
    at non-zero, so values other than 0 and 1 raise.

    Args:
        x: Boolean array, or numeric array holding only 0 and 1.
        name: Argument name used in error messages.

    Raises:
        ValueError: If ``x`` holds values other than 0 and 1.
    """
    arr = as_numpy(x, name=name)
    if arr.dtype == np.bool_:
        return arr
    bad = (arr != 0) & (arr != 1)
    if np.any(bad):
        found = np.unique(arr[bad])
        # Whole numbers >= 2 are class indices, not probabilities: thresholding at 0.5 would
        # merge every tissue into one mask, so point at the one-hot split instead.
        is_label_map = bool(np.all(found >= 2) and np.all(np.mod(found, 1) == 0))
        hint = (
            "This looks like a label map of class indices: pass one binary mask per class, e.g. "
            "labels == k (or a one-hot (K, ...) stack of them)."
            if is_label_map
            else "Threshold probabilities first, e.g. probs > 0.5."
        )
        raise ValueError(
            f"{name} must be a binary mask (bool, or only 0 and 1); found other values such as "
            f"{found[:5].tolist()}. {hint}"
        )
    return arr.astype(bool)


def check_same_shape(a: npt.NDArray[Any], b: npt.NDArray[Any], *, names: tuple[str, str]) -> None:
    """Raise a ``ValueError`` naming both arguments when their shapes differ."""
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; found {names[0]}.shape={a.shape} "
            f"and {names[1]}.shape={b.shape}"
        )
