"""Trainer state that survives a restart without pickle: optimizer and RNG state as tensors + JSON.

Example:
    >>> import torch
    >>> p = torch.nn.Parameter(torch.zeros(2))
    >>> opt = torch.optim.Adam([p])
    >>> p.grad = torch.ones(2); opt.step()
    >>> tensors, doc = optimizer_to_tensors(opt)
    >>> opt2 = torch.optim.Adam([p]); optimizer_from_tensors(opt2, tensors, doc)
    >>> torch.equal(opt2.state[p]["exp_avg"], opt.state[p]["exp_avg"])
    True
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = [
    "optimizer_from_tensors",
    "optimizer_to_tensors",
    "restore_rng_states",
    "rng_states",
]


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into flat tensors and a JSON document."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, slot in state_dict["state"].items():
        for key, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    document = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, document


_IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")
"""Optimizer group settings that choose how it steps on its device, not what it computes."""


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], document: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_to_tensors`; loads into ``optimizer`` in place."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    for param_id, slot in document.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(slot)
    optimizer.load_state_dict({"state": state, "param_groups": document["param_groups"]})
    # ``load_state_dict`` takes every group setting from the checkpoint, the implementation
    # switches too: a run started on CUDA (fused Adam) and resumed on the CPU would step with the
    # fused kernel there, and one started on the CPU would resume on a card without it. Those
    # follow the device the optimizer was built for, as in a run that never stopped.
    for group in optimizer.param_groups:
        for key in _IMPLEMENTATION_FLAGS:
            if key in optimizer.defaults:
                group[key] = optimizer.defaults[key]


def rng_states() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Python, NumPy and torch (CPU, and this process's CUDA device) global RNG states as tensors + JSON.

    Only the current CUDA device's generator is saved (``torch_cuda_<index>``): a process trains on
    one card, and reading every visible card's state would open a CUDA context on each of them (in
    a multi-GPU job, every rank on every card).
    """
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        tensors[f"torch_cuda_{index}"] = torch.cuda.get_rng_state(index)
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached_gauss = np.random.get_state(legacy=True)
    document = {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached_gauss)],
    }
    return tensors, document


def restore_rng_states(tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        # By the device's index, never by position in a sorted list ("torch_cuda_10" sorts before
        # "torch_cuda_2"); checkpoints that saved every card's state restore this card's.
        index = torch.cuda.current_device()
        saved = tensors.get(f"torch_cuda_{index}")
        if saved is not None:
            torch.cuda.set_rng_state(saved, index)
    version, internal, gauss = document["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached_gauss = document["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gauss))
