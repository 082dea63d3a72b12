"""Early stopping on validation loss with min-delta and patience (Appendix A.1).

Example:
    >>> stop = EarlyStopping(min_delta=1.0, patience=2)
    >>> [stop.update(v) for v in (10.0, 9.5, 9.2, 8.0)]
    [True, False, False, True]
    >>> stop.should_stop
    False
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Integral, Real

__all__ = ["PRETRAIN_MIN_DELTA_512", "EarlyStopping", "pretraining_min_delta"]

PRETRAIN_MIN_DELTA_512 = 50.0
"""Pretraining's least improvement of the validation L2 at the paper's 512x512 slices (sec. 2.5.2)."""


def pretraining_min_delta(height: int, width: int) -> float:
    """Pretraining's ``min_delta`` for ``height`` x ``width`` slices: 50 per 512x512 image, by area.

    The L2 loss (eq. A1) is summed over the pixels, so a fixed 50 would ask 256 times more of each
    pixel of a 32x32 slice than of a 512x512 one, and stop runs still improving every epoch.

    Example:
        >>> pretraining_min_delta(512, 512), pretraining_min_delta(128, 128)
        (50.0, 3.125)
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"slice size must be positive, got {height}x{width}")
    return PRETRAIN_MIN_DELTA_512 * height * width / 512**2


@dataclass
class EarlyStopping:
    """Keras-style early stopping: an epoch improves when ``loss < best - min_delta``.

    After ``patience`` consecutive epochs without improvement, :attr:`should_stop` turns true.
    Pretraining uses ``min_delta=50`` per 512x512 image, scaled to the slice area (its L2 loss is
    a per-image sum: :func:`pretraining_min_delta`), segmentation ``1e-3``.

    Attributes:
        min_delta: Minimum decrease that counts as an improvement.
        patience: Epochs without improvement tolerated.
        best: Best loss that counted as an improvement.
        wait: Epochs since the last improvement.
    """

    min_delta: float
    patience: int
    best: float = math.inf
    wait: int = 0

    def __post_init__(self) -> None:
        # NaN would pass a plain ``< 0`` test, and then no epoch ever counted as an improvement.
        if isinstance(self.min_delta, bool) or not (
            isinstance(self.min_delta, Real) and math.isfinite(self.min_delta) and self.min_delta >= 0
        ):
            raise ValueError(f"min_delta must be a finite number >= 0, got {self.min_delta!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, Integral) or self.patience <= 0:
            raise ValueError(f"patience must be a whole number of epochs > 0, got {self.patience!r}")

    def update(self, loss: float) -> bool:
        """Record one epoch's validation loss; return whether it counted as an improvement."""
        if loss < self.best - self.min_delta:
            self.best = loss
            self.wait = 0
            return True
        self.wait += 1
        return False

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` epochs have passed without improvement."""
        return self.wait >= self.patience

    def state_dict(self) -> dict[str, float | int]:
        """JSON-serialisable state for resuming (``inf`` is stored as ``None``)."""
        state = asdict(self)
        if math.isinf(self.best):
            state["best"] = None
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, float | int | None]) -> EarlyStopping:
        """Rebuild from :meth:`state_dict`."""
        best = state.get("best")
        return cls(
            min_delta=float(state["min_delta"] or 0.0),
            patience=int(state["patience"] or 1),
            best=math.inf if best is None else float(best),
            wait=int(state.get("wait") or 0),
        )
