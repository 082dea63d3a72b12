"""Reaching the named parts of a backbone through DDP / DataParallel / ``torch.compile`` wrappers."""

from __future__ import annotations

from torch import nn

__all__ = ["get_part", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain backbone inside any ``DistributedDataParallel``, ``DataParallel`` or compiled wrapper."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
            continue
        inner = getattr(model, "_orig_mod", None)  # set by torch.compile's OptimizedModule
        if isinstance(inner, nn.Module):
            model = inner
            continue
        return model


def get_part(model: nn.Module, name: str) -> nn.Module:
    """The top-level submodule ``name`` (e.g. ``"encoder"``) of ``model``.

    Raises:
        ValueError: If ``model`` has no such child; the message lists the children it has.
    """
    children = dict(unwrap_model(model).named_children())
    if name not in children:
        raise ValueError(
            f"model {type(unwrap_model(model)).__name__} has no part {name!r}; "
            f"its top-level submodules are {sorted(children)}"
        )
    return children[name]
