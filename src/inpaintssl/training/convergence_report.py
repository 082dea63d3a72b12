"""What a finished run's learning curve says, said once: the figure, the log line and the warnings.

:func:`phase_convergence` judges one phase's rows of the history by
:func:`~inpaintssl.training.convergence.assess_convergence` (weighing the last fifth's improvement
by the learning rate spent there). :func:`report_convergence` writes ``learning_curve.png``, logs
every phase's verdict and warns (:class:`~inpaintssl.training.convergence.ConvergenceWarning`)
naming the setting to change: the budget for a phase still improving, the learning rate for one
that never improved on its first epoch, and the learning rate again when the kept weights score a
validation Dice of 0 for a class (a network collapsed to one output reads as a plateau).

Example:
    >>> rows = [{"phase": "finetune", "val_loss": v, "lr": 1e-2} for v in (1.0, 0.5, 0.4, 0.4, 0.4)]
    >>> phase_convergence(rows, "finetune", tolerance=0.01).converged
    True
    >>> phase_convergence(rows, "unfrozen", tolerance=0.01).reason
    'too short to judge'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inpaintssl.config import OptimConfig
from inpaintssl.training.convergence import Convergence, ConvergenceWarning, assess_convergence
from inpaintssl.training.diagnostics import plot_learning_curve
from inpaintssl.training.outcome import Phase, TrainOutcome
from inpaintssl.warning_format import warn_each_time

__all__ = ["ended_by_early_stopping", "phase_convergence", "report_convergence"]

log = logging.getLogger("inpaintssl.training")


def phase_convergence(
    history: Sequence[dict[str, Any]], phase: str, *, tolerance: float, max_epochs: int | None = None
) -> Convergence:
    """The convergence verdict of one phase's rows of a run's history.

    Args:
        history: The run's metrics rows (``phase``, ``val_loss``, ``lr`` and, since it was
            recorded, ``lr_mean``: the rate averaged over the epoch's steps).
        phase: The phase's name.
        tolerance: ``early_stopping.convergence_tolerance``.
        max_epochs: The phase's budget (``optim.max_epochs``): a patience that ran out on its last
            epoch ended nothing (:func:`ended_by_early_stopping`), so the curve decides.

    Returns:
        "too short to judge" (not converged) for a phase with no rows.
    """
    rows = [row for row in history if row["phase"] == phase]
    if not rows:
        return Convergence(False, "too short to judge", math.nan)
    return assess_convergence(
        [float(row["val_loss"]) for row in rows],
        stopped_early=ended_by_early_stopping(rows, max_epochs=max_epochs),
        tolerance=tolerance,
        # Rows of runs recorded before lr_mean was: the rate at the epoch's first step.
        learning_rates=[float(row.get("lr_mean") or row["lr"]) for row in rows],
    )


def ended_by_early_stopping(rows: Sequence[dict[str, Any]], *, max_epochs: int | None) -> bool:
    """Whether early stopping ended a phase of ``rows``: its last row says it stopped, before the
    phase's ``max_epochs`` (``None``: unknown, the row's word alone).

    A patience that runs out on the budget's last epoch ends nothing: the phase ran every epoch
    it had, its loss possibly still falling, and a patience one epoch longer gives the same run.

    Example:
        >>> rows = [{"stopped_early": 0}, {"stopped_early": 1}]
        >>> ended_by_early_stopping(rows, max_epochs=5), ended_by_early_stopping(rows, max_epochs=2)
        (True, False)
    """
    if not rows or not rows[-1].get("stopped_early", False):
        return False
    return max_epochs is None or len(rows) < max_epochs


def report_convergence(
    outcome: TrainOutcome,
    *,
    phases: Sequence[Phase],
    optim: OptimConfig,
    steps_per_epoch: int,
    run_dir: Path,
    learning_curve: Path,
) -> None:
    """Write the learning curve; log each phase's verdict; warn, naming what to change, when one fell short.

    Args:
        outcome: What :meth:`~inpaintssl.training.loop.Trainer.fit` returns, its
            ``convergence`` one verdict per phase.
        phases: The run's phases, in order.
        optim: The run's optimiser settings (the budget and schedule the warnings name).
        steps_per_epoch: Optimiser steps per epoch as the run took them.
        run_dir: The run folder, named in every warning.
        learning_curve: Where the figure goes (``learning_curve.png``).
    """
    unconverged = [c.reason for c in outcome.convergence if not c.converged]
    plot_learning_curve(
        outcome.history,
        learning_curve,
        title=run_dir.name,
        converged=outcome.converged,
        reason=unconverged[0] if unconverged else None,
    )
    for index, (phase, verdict) in enumerate(zip(phases, outcome.convergence, strict=True)):
        log.info("[%s] %s", phase.name, verdict.describe())
        if verdict.converged:
            continue
        budget = f"optim.max_epochs (now {optim.max_epochs}) or optim.steps_per_epoch (now {steps_per_epoch})"
        if optim.effective_schedule == "step_decay":
            # A phase after the first starts at the second run's rate: optim.lr does not set it
            # when transfer.second_lr is given.
            rate = f"transfer.second_lr (now {phase.lr:.3g})" if index > 0 else "optim.lr"
            budget += f" or {rate}, or use optim.recipe=budget (a schedule over the run's length)"
        if verdict.reason == "no improvement":
            warn_each_time(
                f"{run_dir}: phase {phase.name!r} ended {verdict.describe()}: its validation "
                "loss never went below its first epoch's (beyond float noise) and rose after it, "
                "whether early stopping or its budget ended it, so its learning rate "
                f"({phase.lr:.3g}) may be too large; the run keeps the best weights it saw. Try a "
                "smaller optim.lr (or transfer.second_lr for a second phase) in a new run.",
                ConvergenceWarning,
            )
            continue
        why = (
            "it ran too few epochs to tell whether its validation loss had levelled off"
            if verdict.reason == "too short to judge"
            else "its validation loss was still falling for the learning rate it spent"
        )
        warn_each_time(
            f"{run_dir}: phase {phase.name!r} ended {verdict.describe()}; {why}, so the model "
            f"may not be fully trained. Raise {budget} in a new run (a finished run is not extended).",
            ConvergenceWarning,
        )
    _warn_on_unpredicted_classes(outcome, run_dir=run_dir)


def _warn_on_unpredicted_classes(outcome: TrainOutcome, *, run_dir: Path) -> None:
    """Warn when the kept weights score a validation Dice of 0 for a class: a collapsed model.

    A learning rate far too large can drive a segmentation network to one constant output:
    its loss then stops changing, which the convergence rule reads as a plateau.
    """
    kept = [row for row in outcome.history if row["epoch"] == outcome.best_epoch]
    if not kept:
        return
    zero = sorted(
        key[len("val_dice_") :]
        for key, value in kept[0].items()
        if key.startswith("val_dice_") and value is not None and float(value) == 0.0
    )
    if zero:
        warn_each_time(
            f"{run_dir}: the kept weights (epoch {outcome.best_epoch}) score a validation Dice "
            f"of 0 for {', '.join(repr(z) for z in zero)}: its predictions and its labels on the "
            "validation slices do not overlap at all. A learning rate far too large "
            "(the model collapsed to one output) or a class too rare in the training labels does "
            "this; see learning_curve.png and try a smaller optim.lr.",
            ConvergenceWarning,
        )
