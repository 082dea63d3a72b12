"""Did a run converge? A criterion on its validation-loss curve, and the warning when it did not.

A phase counts as converged when its curve is flat, or when it improved on its first epoch and
then either early stopping ended it (the validation loss stopped improving by
``early_stopping.min_delta`` for ``patience`` epochs) or the last fifth of its epochs made at most
``tolerance`` (5 % by default, ``early_stopping.convergence_tolerance``) of the improvement it made
over the whole phase, for the learning rate it spent there::

    v[0..n-1]  validation loss after each epoch;  r[i]  mean learning rate of epoch i's steps
    noise   = 1e-5 * max(|min(v)|, 1e-12)          (float noise at the loss's level)
    flat    = max(v) - min(v) <= noise
    window  = the last w = ceil(n / 5) epochs
    total   = v[0] - min(v)                        (improvement since the first epoch)
    recent  = min(v[:n - w]) - min(v)               (improvement made inside the window)
    share   = (recent / total) * (sum(r[1:]) / sum(r[n-w:])) * (w / (n - 1))
    converged  <=>  flat  or  (total > noise  and  (stopped early  or  share <= tolerance))

With a constant learning rate the two middle factors cancel and ``share`` is the share of the
improvement made in the last fifth: a curve still falling linearly makes 20 % there and is
flagged, a curve that has flattened makes almost none. A decaying schedule (warm-up + cosine)
runs the rate down to nearly nothing over the last fifth, which flattens every curve whatever
the network has learned; dividing by the rate spent there judges the progress per unit of
learning rate instead, so a budget far too small, whose curve only flattens because its rate ran
out, is still flagged. Measuring against the phase's own improvement keeps the rule free of the
loss's scale (the pretraining L2 is a per-image sum in the hundreds, the Dice loss lies in
[0, 1]).

The price of that division: a small late gain counts as much as the rate is small. Under the
paper's step decay over 100 epochs the last fifth runs at about 1/20 of the phase's mean rate,
so a plateau with one late dip of 0.4 % of the phase's improvement (validation noise, say) reads
as 8 % and the phase as not converged. That is the intended reading: a gain made at a tiny
rate says the network was still learning when its rate ran out.

Two curves get a verdict of their own:

* ``flat``: every epoch within a relative ``1e-5`` (float noise) of the best: nothing left to
  learn at this rate (a second fine-tuning phase at a tiny rate, say); converged.
* ``no improvement``: the best epoch is the first, to float noise, and the loss rose after it
  (a rate so large that the loss climbs, or a phase that made its start worse); not converged,
  whether its budget or early stopping ended it. Early stopping says only that the loss stopped
  improving, and a loss that climbs from its first epoch never started; a gain within float
  noise on the first epoch is no improvement either, so ``[1.0, 1.0 - 1e-9, 3.0]`` reads as
  ``[1.0, 1.5, 3.0]`` does, not as a plateau reached in the second epoch.

Both float-noise tests are relative to the loss's level, as rounding is, so they are the one
place where adding a constant to a curve can change its verdict (a positive factor does not,
for losses above 1e-12); the share is a ratio of differences, free of both.

A run of one epoch cannot be judged and is not converged.

Example:
    >>> assess_convergence([0.8, 0.7, 0.6, 0.5, 0.4], stopped_early=False).converged
    False
    >>> assess_convergence([0.8, 0.3, 0.2, 0.2, 0.2], stopped_early=False).converged
    True
    >>> assess_convergence([1.0, 1.5, 3.0], stopped_early=False).reason
    'no improvement'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Convergence", "ConvergenceWarning", "assess_convergence"]

DEFAULT_TOLERANCE = 0.05

FLAT_TOLERANCE = 1e-5
"""Relative spread of a curve below which it counts as flat (validation losses repeat to about
this precision across memory formats and batch sizes)."""


class ConvergenceWarning(UserWarning):
    """A run ended while its validation loss was still improving, or without improving at all."""


@dataclass(frozen=True)
class Convergence:
    """The verdict on one validation-loss curve.

    Attributes:
        converged: Whether the run counts as converged.
        reason: ``early stopping``, ``plateau``, ``flat``, ``still improving``,
            ``no improvement`` or ``too short to judge``.
        recent_share: Share of the run's improvement made in its last fifth, per unit of
            learning rate (NaN when undefined, infinite for a gain made at a rate of 0).
    """

    converged: bool
    reason: str
    recent_share: float

    def describe(self) -> str:
        """A short phrase for logs and consoles."""
        if math.isnan(self.recent_share):
            return f"converged ({self.reason})" if self.converged else f"NOT converged ({self.reason})"
        if math.isinf(self.recent_share):
            return "NOT converged (improved in the last fifth at a learning rate of 0)"
        share = (
            f"{100 * self.recent_share:.1f}% of the improvement in the last fifth, per unit of learning rate"
        )
        return f"converged ({self.reason}, {share})" if self.converged else f"NOT converged ({share})"


def assess_convergence(
    val_losses: Sequence[float],
    *,
    stopped_early: bool,
    tolerance: float = DEFAULT_TOLERANCE,
    learning_rates: Sequence[float] | None = None,
) -> Convergence:
    """Judge a validation-loss curve by the rule in the module docstring.

    Args:
        val_losses: Validation loss per epoch of one training phase, in order.
        stopped_early: Whether early stopping ended the phase.
        tolerance: Largest share of the improvement the last fifth may make, in (0, 1).
        learning_rates: Mean learning rate of each epoch's steps, as long as ``val_losses``
            (default: one constant rate).

    Raises:
        ValueError: On an empty or non-finite curve, learning rates that are negative, not
            finite or not one per epoch, or a tolerance outside (0, 1).

    Example:
        >>> assess_convergence([5.0, 4.0], stopped_early=True).reason
        'early stopping'
        >>> assess_convergence([5.0, 6.0, 7.0], stopped_early=True).reason
        'no improvement'
        >>> # Flat only because the rate ran out: 13.5 % of the progress per unit of rate at the end.
        >>> curve, rates = [1.30, 1.22, 1.18, 1.165, 1.161], [0.01, 0.0097, 0.0075, 0.0041, 0.0012]
        >>> assess_convergence(curve, stopped_early=False).converged
        True
        >>> assess_convergence(curve, stopped_early=False, learning_rates=rates).describe()
        'NOT converged (13.5% of the improvement in the last fifth, per unit of learning rate)'
    """
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance must lie in (0, 1), got {tolerance}")
    try:
        # A list, a NumPy array or a pandas column (metrics.csv read back) alike.
        val_losses = [float(v) for v in val_losses]
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"val_losses must be a sequence of numbers, one per epoch; got {val_losses!r}"
        ) from exc
    if not val_losses:
        raise ValueError("val_losses is empty: a run needs at least one validation epoch")
    if not all(math.isfinite(v) for v in val_losses):
        raise ValueError(f"val_losses must be finite, got {list(val_losses)}")
    n = len(val_losses)
    try:
        rates = [1.0] * n if learning_rates is None else [float(r) for r in learning_rates]
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"learning_rates must be a sequence of numbers, one per epoch; got {learning_rates!r}"
        ) from exc
    if len(rates) != n or not all(math.isfinite(r) and r >= 0 for r in rates):
        raise ValueError(
            f"learning_rates must hold one non-negative, finite rate per epoch ({n}); got {list(rates)}"
        )
    best = min(val_losses)
    noise = FLAT_TOLERANCE * max(abs(best), 1e-12)
    flat = max(val_losses) - best <= noise
    total = val_losses[0] - best
    # Checked before early stopping: patience running out on a loss that climbed from its first
    # epoch is the rate-too-large curve the budget would have ended as "no improvement", and the
    # verdict must not depend on which of the two ended it.
    if n >= 2 and not flat and total <= noise:
        return Convergence(False, "no improvement", math.nan)
    if stopped_early:
        return Convergence(True, "early stopping", math.nan)
    if n < 2:
        return Convergence(False, "too short to judge", math.nan)
    if flat:
        return Convergence(True, "flat", math.nan)
    window = math.ceil(n / 5)
    recent = max(min(val_losses[: n - window]) - best, 0.0)
    spent = sum(rates[n - window :]) / window
    overall = sum(rates[1:]) / (n - 1)
    # A schedule may decay to a rate of exactly 0 (min_lr=0): epochs that took no step cannot have
    # improved, so a last fifth without steps is a plateau, and any gain in it is not the rate's.
    share = 0.0 if recent == 0.0 else math.inf if spent == 0.0 else (recent / total) * (overall / spent)
    if share <= tolerance:
        return Convergence(True, "plateau", share)
    return Convergence(False, "still improving", share)
