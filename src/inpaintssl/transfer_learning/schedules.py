"""Fine-tuning schedules for transferred weights (paper sec. 2.5.1, design choice #2; App. B).

``immediate`` (the paper's ``F?F``)
    Every weight is trainable from the start, at the fine-tuning learning rate (``optim.lr``).
``immediate_twice`` (``F?S``)
    As ``immediate``, then a second training run of every weight from the first run's best
    weights at ``transfer.second_lr`` (Appendix B.1 trained the immediate models twice so the
    comparison with the two-run schedules is fair).
``frozen`` (``FF?F``)
    The transferred parts stay frozen; only the fresh parts train (one run).
``freeze_then_unfreeze`` (``FF?S``)
    Phase 1 freezes the transferred parts and trains the fresh ones to convergence; phase 2
    unfreezes everything and trains again from the phase-1 result with its own initial learning
    rate (``transfer.second_lr``). The authors ran the two phases as two separate runs; here they
    are two phases of one run.

Freezing sets ``requires_grad=False`` on every parameter of the frozen parts, GroupNorm affine
parameters included, so no gradient update can reach them. A normalisation layer that keeps
running statistics (BatchNorm in ``smp_unet``'s encoders, MONAI's ``norm="batch"``) would still
update them in training mode and normalise with each batch's statistics, so the trainer holds
those layers of the frozen parts in evaluation mode (:func:`hold_running_statistics`): a frozen
part computes the same function throughout its phase. The paper's ``unet2d`` (GroupNorm) keeps no
such statistics. The trainer builds a new optimizer over
:func:`trainable_parameters` at the start of each phase, so no Adam moment estimated in one phase
leaks into the next.

Example:
    >>> from inpaintssl.registry import BACKBONES
    >>> net = BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0)
    >>> [p.frozen_parts for p in finetune_phases("freeze_then_unfreeze", transferred_parts=("encoder",))]
    [('encoder',), ()]
    >>> set_trainable(net, ["encoder"], trainable=False)
    >>> len(trainable_parameters(net)) < len(list(net.parameters()))
    True
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from inpaintssl.config import TWO_RUN_SCHEDULES
from inpaintssl.options import CLOSE_MATCH_CUTOFF
from inpaintssl.transfer_learning.network_parts import get_part

__all__ = [
    "FINETUNE_SCHEDULES",
    "SCHEDULE_DESCRIPTIONS",
    "TWO_RUN_SCHEDULES",
    "FinetunePhase",
    "finetune_phases",
    "hold_running_statistics",
    "set_trainable",
    "trainable_parameters",
]

FINETUNE_SCHEDULES: tuple[str, ...] = ("immediate", "immediate_twice", "frozen", "freeze_then_unfreeze")
"""Names of the fine-tuning schedules, as accepted by ``FinetuneConfig.transfer.schedule``."""

SCHEDULE_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "immediate": "fine-tune all weights at once at the fine-tuning learning rate",
        "immediate_twice": (
            "fine-tune all weights at once, then train all weights again from the best weights at the "
            "second learning rate"
        ),
        "frozen": "freeze the transferred weights and train only the fresh ones",
        "freeze_then_unfreeze": (
            "freeze the transferred weights and train the rest to convergence, then unfreeze all "
            "weights and train again at the second learning rate"
        ),
    }
)
"""One-line description of each schedule, for help texts and reports."""


@dataclass(frozen=True)
class FinetunePhase:
    """One training phase of a schedule.

    Attributes:
        name: ``"finetune"``, ``"again"``, ``"frozen"`` or ``"unfrozen"``.
        frozen_parts: Top-level parts whose parameters do not train in this phase.
        second_lr: Whether the phase starts at the second learning rate instead of ``optim.lr``.
    """

    name: str
    frozen_parts: tuple[str, ...]
    second_lr: bool


def finetune_phases(schedule: str, *, transferred_parts: Sequence[str]) -> tuple[FinetunePhase, ...]:
    """The phases a schedule runs, in order.

    Args:
        schedule: One of :data:`FINETUNE_SCHEDULES`.
        transferred_parts: Parts that received pretrained weights (the strategy's ``parts``).

    Raises:
        ValueError: Unknown schedule (with close matches), or a freezing schedule with no
            transferred parts (nothing to freeze).

    Example:
        >>> finetune_phases("immediate", transferred_parts=("encoder",))
        (FinetunePhase(name='finetune', frozen_parts=(), second_lr=False),)
    """
    if schedule == "immediate":
        return (FinetunePhase("finetune", (), second_lr=False),)
    if schedule == "immediate_twice":
        return (FinetunePhase("finetune", (), second_lr=False), FinetunePhase("again", (), second_lr=True))
    if schedule in ("frozen", "freeze_then_unfreeze"):
        if not transferred_parts:
            raise ValueError(
                f"schedule {schedule!r} needs transferred_parts (e.g. ('encoder',)); "
                "found none, so there is nothing to freeze"
            )
        frozen = FinetunePhase("frozen", tuple(transferred_parts), second_lr=False)
        if schedule == "frozen":
            return (frozen,)
        return (frozen, FinetunePhase("unfrozen", (), second_lr=True))
    close = difflib.get_close_matches(schedule, FINETUNE_SCHEDULES, n=1, cutoff=CLOSE_MATCH_CUTOFF)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"schedule={schedule!r} is unknown; expected one of {FINETUNE_SCHEDULES}.{hint}")


def set_trainable(model: nn.Module, parts: Iterable[str], *, trainable: bool) -> None:
    """Set ``requires_grad`` on every parameter of the named top-level parts.

    Freezing also drops the parameters' ``.grad``, so a stale gradient cannot be applied later.

    Args:
        model: A backbone with the named parts (DDP / compiled wrappers are looked through).
        parts: Top-level submodule names, e.g. ``("encoder", "decoder")``.
        trainable: ``True`` to unfreeze, ``False`` to freeze.

    Raises:
        TypeError: If ``parts`` is a single string rather than a collection of names.
        ValueError: If the model lacks one of the parts (checked before anything changes).

    Example:
        >>> from torch import nn
        >>> net = nn.ModuleDict({"encoder": nn.Linear(2, 2), "head": nn.Linear(2, 1)})
        >>> set_trainable(net, ("encoder",), trainable=False)
        >>> [p.requires_grad for p in net.parameters()]
        [False, False, True, True]
    """
    if isinstance(parts, str):
        raise TypeError(
            f"parts must be a collection of part names such as ({parts!r},); found the string {parts!r}"
        )
    modules = [get_part(model, part) for part in parts]
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(trainable)
            if not trainable:
                param.grad = None


def hold_running_statistics(model: nn.Module, parts: Iterable[str]) -> None:
    """Put the normalisation layers of ``parts`` that keep running statistics in evaluation mode.

    Call it after ``model.train()`` in a phase that freezes ``parts``: in training mode a BatchNorm
    (or an InstanceNorm with ``track_running_stats``) normalises with each batch's statistics and
    updates its running ones, so a part whose parameters are frozen would still change what it
    computes. Other layers keep their mode (dropout in a frozen part still drops).

    Args:
        model: A backbone with the named parts (DDP / compiled wrappers are looked through).
        parts: Top-level submodule names, e.g. ``("encoder",)``.

    Raises:
        TypeError: If ``parts`` is a single string rather than a collection of names.
        ValueError: If the model lacks one of the parts.

    Example:
        >>> from torch import nn
        >>> net = nn.ModuleDict({"encoder": nn.BatchNorm2d(2), "head": nn.BatchNorm2d(2)}).train()
        >>> hold_running_statistics(net, ("encoder",))
        >>> net["encoder"].training, net["head"].training
        (False, True)
    """
    if isinstance(parts, str):
        raise TypeError(
            f"parts must be a collection of part names such as ({parts!r},); found the string {parts!r}"
        )
    for module in [get_part(model, part) for part in parts]:
        for layer in module.modules():
            # _NormBase: BatchNorm, SyncBatchNorm and InstanceNorm, the layers with running statistics.
            if isinstance(layer, nn.modules.batchnorm._NormBase) and layer.track_running_stats:
                layer.eval()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad=True``, in module order: what a phase's optimizer gets.

    Example:
        >>> from torch import nn
        >>> len(trainable_parameters(nn.Linear(3, 2)))
        2
    """
    return [param for param in model.parameters() if param.requires_grad]
