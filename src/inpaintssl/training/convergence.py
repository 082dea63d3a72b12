"""Did a run converge? A criterion on its validation-loss curve, and the warning when it did not.

A run counts as converged when early stopping ended it (the validation loss stopped improving
for ``patience`` epochs), or when the last fifth of its epochs made at most ``tolerance`` (5 %
by default, ``early_stopping.convergence_tolerance``) of the improvement it made over the whole
run::

    window  = the last ceil(n / 5) of the n epochs
    total   = v[0] - min(v)                       (improvement since the first epoch)
    recent  = min(v[:n - window]) - min(v)        (improvement made inside the window)
    converged  <=>  stopped early  or  total == 0  or  recent <= tolerance * total

Measuring against the run's own improvement makes the rule independent of the loss's scale
(the pretraining L2 is a per-image sum in the thousands, the Dice loss lies in [0, 1]). A curve
still falling linearly makes 20 % of its improvement in its last fifth and is flagged; a curve
that has flattened makes almost none. A run of one epoch cannot be judged and is not converged.

Example:
    >>> assess_convergence([0.8, 0.7, 0.6, 0.5, 0.4], stopped_early=False).converged
    False
    >>> assess_convergence([0.8, 0.3, 0.2, 0.2, 0.2], stopped_early=False).converged
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Convergence", "ConvergenceWarning", "assess_convergence"]

DEFAULT_TOLERANCE = 0.05


class ConvergenceWarning(UserWarning):
    """A run ended while its validation loss was still improving."""


@dataclass(frozen=True)
class Convergence:
    """The verdict on one validation-loss curve.

    Attributes:
        converged: Whether the run counts as converged.
        reason: ``early stopping``, ``plateau``, ``still improving`` or ``too short to judge``.
        recent_share: Share of the run's improvement made in its last fifth (NaN when undefined).
    """

    converged: bool
    reason: str
    recent_share: float

    def describe(self) -> str:
        """A short phrase for logs and consoles."""
        if math.isnan(self.recent_share):
            return f"converged ({self.reason})" if self.converged else f"NOT converged ({self.reason})"
        share = f"{100 * self.recent_share:.1f}% of the improvement in the last fifth"
        return f"converged ({self.reason}, {share})" if self.converged else f"NOT converged ({share})"


def assess_convergence(
    val_losses: Sequence[float], *, stopped_early: bool, tolerance: float = DEFAULT_TOLERANCE
) -> Convergence:
    """Judge a validation-loss curve by the rule in the module docstring.

    Args:
        val_losses: Validation loss per epoch of one training phase, in order.
        stopped_early: Whether early stopping ended the phase.
        tolerance: Largest share of the improvement the last fifth may make, in (0, 1).

    Raises:
        ValueError: On an empty or non-finite curve, or a tolerance outside (0, 1).

    Example:
        >>> assess_convergence([5.0, 4.0], stopped_early=True).reason
        'early stopping'
    """
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance must lie in (0, 1), got {tolerance}")
    if not val_losses:
        raise ValueError("val_losses is empty: a run needs at least one validation epoch")
    if not all(math.isfinite(v) for v in val_losses):
        raise ValueError(f"val_losses must be finite, got {list(val_losses)}")
    if stopped_early:
        return Convergence(True, "early stopping", math.nan)
    n = len(val_losses)
    if n < 2:
        return Convergence(False, "too short to judge", math.nan)
    window = math.ceil(n / 5)
    best = min(val_losses)
    total = val_losses[0] - best
    if total <= 0.0:
        return Convergence(True, "plateau", 0.0)
    recent = max(min(val_losses[: n - window]) - best, 0.0)
    share = recent / total
    if share <= tolerance:
        return Convergence(True, "plateau", share)
    return Convergence(False, "still improving", share)
