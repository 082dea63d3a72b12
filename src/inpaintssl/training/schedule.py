"""The paper's step-decay learning-rate schedule (Appendix A.1).

Example:
    >>> [round(step_decay_lr(e, lr=1e-3), 8) for e in range(4)]
    [0.001, 0.0009, 0.0009, 0.00081]
"""

from __future__ import annotations

import math

__all__ = ["step_decay_lr"]


def step_decay_lr(
    epoch: int, *, lr: float, decay: float = 0.9, every: int = 2, min_lr: float = 1e-8
) -> float:
    """Learning rate for a 0-based ``epoch``: ``max(lr * decay ** floor((1 + epoch) / every), min_lr)``.

    This is the authors' Keras schedule (Appendix A.1): the first decay happens after the first
    epoch, then every ``every`` epochs.

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
    return max(lr * decay ** math.floor((1 + epoch) / every), min_lr)
