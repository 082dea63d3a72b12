"""Reaching the named parts of a backbone, and the record of what it is, through DDP / DataParallel /
``torch.compile`` wrappers."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = [
    "RUN_RECORD",
    "RUN_SOURCE",
    "attach_run_record",
    "carried_record",
    "carried_run_source",
    "get_part",
    "unwrap_model",
]

RUN_RECORD = "checkpoint_meta"
"""Attribute of the model a training run hands back (``PretrainResult.model``,
``FinetuneResult.model``) that holds its run's :class:`~inpaintssl.checkpoint.CheckpointMeta`."""

RUN_SOURCE = "checkpoint_source"
"""Attribute of the model a training run hands back that holds the checkpoint folder its weights
and :data:`RUN_RECORD` come from: what ``evaluate`` reads the run's preprocessing and spacing by."""

_RECORDS = ("inference_meta", RUN_RECORD)
"""Where a module carries what it is, in this order: ``inference_meta`` (the
:class:`~inpaintssl.inference.loading.ModelInfo` that ``load_model`` attaches), then :data:`RUN_RECORD`."""


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


def attach_run_record(model: nn.Module, record: Any, *, source: Any = None) -> None:
    """Attach a run's checkpoint metadata to the ``model`` it hands back (as :data:`RUN_RECORD`),
    and the checkpoint folder it comes from (as :data:`RUN_SOURCE`) where given.

    With it the model is refused where its run folder is: as ``pretrained`` for ``transfer`` when
    it is a fine-tuned network, and by ``smp_encoder_state_dict`` when it is not ``smp_unet``; and
    ``evaluate`` scores it as it scores that checkpoint.
    """
    setattr(model, RUN_RECORD, record)
    if source is not None:
        setattr(model, RUN_SOURCE, source)


def carried_record(model: nn.Module) -> tuple[Any, str] | None:
    """The record of what ``model`` is, and the attribute holding it; ``None`` for a bare module.

    ``inference_meta`` comes first, then :data:`RUN_RECORD`; each is looked for on ``model`` and on
    the module inside its wrappers (a DDP wrapper does not forward attributes). Both records hold
    ``kind`` and ``backbone``.
    """
    for attribute in _RECORDS:
        record = _carried(model, attribute)
        if record is not None:
            return record, attribute
    return None


def carried_run_source(model: nn.Module) -> Any:
    """The checkpoint folder :func:`attach_run_record` noted beside the run's record (:data:`RUN_SOURCE`),
    looked for as :func:`carried_record` looks; ``None`` where none was."""
    return _carried(model, RUN_SOURCE)


def _carried(model: nn.Module, attribute: str) -> Any:
    """``attribute`` of ``model``, else of the module inside its wrappers (a DDP wrapper does not
    forward attributes); ``None`` on neither."""
    for candidate in (model, unwrap_model(model)):
        value = getattr(candidate, attribute, None)
        if value is not None:
            return value
    return None
