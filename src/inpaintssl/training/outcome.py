"""What a run trains through and what it returns: :class:`Phase` and :class:`TrainOutcome`.

A run is a list of phases: pretraining and immediate fine-tuning have one, ``freeze_then_unfreeze``
has two (sec. 2.5.1). :meth:`inpaintssl.training.loop.Trainer.fit` returns a :class:`TrainOutcome`
with the history, the kept epoch and each phase's convergence verdict.

Example:
    >>> Phase(name="frozen", lr=1e-3, frozen_parts=("encoder",)).frozen_parts
    ('encoder',)
    >>> TrainOutcome(history=[], best_val_loss=1.0, best_epoch=0, epochs_run=0, stopped_early=False).converged
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inpaintssl.training.convergence import Convergence

__all__ = ["Phase", "TrainOutcome"]


@dataclass(frozen=True)
class Phase:
    """One stretch of training with its own optimiser, schedule and early stopping.

    Attributes:
        name: Shown in logs and the metrics CSV (``pretrain``, ``finetune``, ``frozen``, ``unfrozen``).
        lr: Initial learning rate of the phase.
        frozen_parts: Submodules (e.g. ``("encoder",)``) whose parameters do not train.
    """

    name: str
    lr: float
    frozen_parts: tuple[str, ...] = ()


@dataclass
class TrainOutcome:
    """What :meth:`inpaintssl.training.loop.Trainer.fit` returns."""

    history: list[dict[str, Any]]
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    resumed_from_epoch: int | None = None
    phase_best: list[float] = field(default_factory=list)
    convergence: list[Convergence] = field(default_factory=list)
    phase_names: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        """Whether every phase converged (:mod:`inpaintssl.training.convergence`)."""
        return bool(self.convergence) and all(c.converged for c in self.convergence)

    def describe_best_epoch(self) -> str:
        """The kept epoch for a console line, as counted there and as ``metrics.csv`` records it.

        The progress lines count epochs from 1 (``epoch 2/40``); ``metrics.csv``, ``best_epoch``
        and the ``--quiet`` log lines index them from 0. A bare number would read one way or the
        other, so the line gives both.

        Example:
            >>> TrainOutcome(history=[], best_val_loss=1.0, best_epoch=1, epochs_run=3,
            ...              stopped_early=False).describe_best_epoch()
            'epoch 2 of 3 (metrics.csv epoch 1)'
        """
        return f"epoch {self.best_epoch + 1} of {self.epochs_run} (metrics.csv epoch {self.best_epoch})"

    def describe_convergence(self) -> str:
        """The run's verdict for a console line: one phase's own, or every phase's when several ran."""
        if len(self.convergence) == 1:
            return self.convergence[0].describe()
        # One verdict per phase the run was given, rows or not (a phase that never ran has none).
        phases = self.phase_names or list(dict.fromkeys(str(row["phase"]) for row in self.history))
        named = zip(phases, self.convergence, strict=False)
        verdicts = "; ".join(f"{name}: {c.describe()}" for name, c in named)
        return f"{'converged' if self.converged else 'NOT converged'} ({verdicts})"
