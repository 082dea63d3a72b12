"""Learning-rate schedules: the paper's per-epoch step decay and a warm-up + cosine run schedule.

The paper (Appendix A.1) decays the rate by 0.9 every two epochs: a schedule made for about a
hundred epochs over thousands of slices. Over a short budget it barely moves, and with
``optim.steps_per_epoch`` making epochs short it decays as fast as epochs pass, whatever the
run's length. :func:`warmup_cosine_lr` is defined over the whole run instead (``total_steps``
= ``max_epochs`` x steps per epoch): a linear warm-up over the first steps, then a half cosine
that reaches ``min_lr`` one step past the last, so a run of any length ends on a small learning
rate.

Example:
    >>> [round(step_decay_lr(e, lr=1e-3), 8) for e in range(4)]
    [0.001, 0.0009, 0.0009, 0.00081]
    >>> [round(warmup_cosine_lr(k, lr=1.0, total_steps=5, warmup_steps=1, min_lr=0.0), 3) for k in range(5)]
    [1.0, 1.0, 0.854, 0.5, 0.146]
"""

from __future__ import annotations

import math

__all__ = ["step_decay_lr", "warmup_cosine_lr", "warmup_steps_for"]


def step_decay_lr(
    epoch: int, *, lr: float, decay: float = 0.9, every: int = 2, min_lr: float = 1e-8
) -> float:
    """Learning rate for a 0-based ``epoch``: ``max(lr * decay ** ceil(epoch / every), min_lr)``.

    The first epoch trains at ``lr``; the first decay comes after it, then one every ``every``
    epochs. For the paper's ``every=2`` this is the authors' Keras schedule (Appendix A.1),
    ``lr * decay ** floor((1 + epoch) / 2)``; that formula with another ``every`` (the Keras
    snippet's) would decay before the first epoch when ``every=1`` and after ``every - 1`` epochs
    otherwise, so ``lr`` itself would never be used, or the first step would come early.

    Example:
        >>> [round(step_decay_lr(e, lr=1.0, decay=0.5, every=1), 3) for e in range(3)]
        [1.0, 0.5, 0.25]
        >>> [round(step_decay_lr(e, lr=1.0, decay=0.5, every=3), 3) for e in range(5)]
        [1.0, 0.5, 0.5, 0.5, 0.25]

    Args:
        epoch: 0-based epoch within the current training phase.
        lr: Initial learning rate.
        decay: Multiplicative factor per step.
        every: Epochs per step.
        min_lr: Floor.

    Raises:
        ValueError: On a negative epoch or non-positive ``lr``/``every``.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if lr <= 0 or every <= 0:
        raise ValueError(f"lr and every must be positive, got lr={lr}, every={every}")
    return max(lr * decay ** math.ceil(epoch / every), min_lr)


def warmup_steps_for(total_steps: int, *, warmup_fraction: float) -> int:
    """Warm-up length: ``round(warmup_fraction * total_steps)``, below ``total_steps``, and at
    least 1 when ``warmup_fraction > 0`` (a short run still warms up for one step).

    Example:
        >>> warmup_steps_for(200, warmup_fraction=0.05), warmup_steps_for(3, warmup_fraction=0.05)
        (10, 1)
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must lie in [0, 1), got {warmup_fraction}")
    if warmup_fraction == 0.0 or total_steps == 1:
        return 0
    return min(max(1, round(warmup_fraction * total_steps)), total_steps - 1)


def warmup_cosine_lr(
    step: int, *, lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0
) -> float:
    """Learning rate at 0-based optimisation ``step`` of a run of ``total_steps`` steps.

    ``lr * (step + 1) / warmup_steps`` during the warm-up (``step < warmup_steps``), then
    ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2`` with
    ``t = (step - warmup_steps) / (total_steps - warmup_steps)``, so the rate reaches ``lr`` on
    the last warm-up step and falls towards ``min_lr`` at the end of the run. Steps past the
    end stay at ``min_lr``.

    Args:
        step: 0-based step within the training phase.
        lr: Peak learning rate.
        total_steps: Steps in the phase (``max_epochs`` x steps per epoch).
        warmup_steps: Linear warm-up length, ``0 <= warmup_steps < total_steps`` (or 1 step runs).
        min_lr: Final learning rate.

    Raises:
        ValueError: On a negative step, a non-positive ``lr`` or ``total_steps``, or a warm-up
            that does not fit the run.

    Example:
        >>> warmup_cosine_lr(0, lr=1e-2, total_steps=100, warmup_steps=10)
        0.001
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if lr <= 0 or total_steps <= 0:
        raise ValueError(f"lr and total_steps must be positive, got lr={lr}, total_steps={total_steps}")
    if warmup_steps < 0 or (warmup_steps >= total_steps and total_steps > 1):
        raise ValueError(f"warmup_steps must lie in [0, total_steps={total_steps}), got {warmup_steps}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    t = min((step - warmup_steps) / decay_steps, 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
