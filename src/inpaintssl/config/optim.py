"""How a stage trains: the named recipes, the optimiser and its schedule, the loss, early stopping.

A recipe (:data:`RECIPES`) fills every optimiser and loss field a config leaves at ``None``.

Example:
    >>> OptimConfig(recipe="paper").effective_lr, LossConfig().name is None
    (0.001, True)
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from inpaintssl.config.base import _MAX_BATCH, Params, _given, _Strict
from inpaintssl.config.unused import UnusedSetting

__all__ = [
    "RECIPES",
    "EarlyStoppingConfig",
    "LossConfig",
    "OptimConfig",
    "Recipe",
    "RecipeDefaults",
    "Schedule",
]


Recipe = Literal["budget", "paper"]
Schedule = Literal["warmup_cosine", "step_decay"]


@dataclass(frozen=True)
class RecipeDefaults:
    """What a training recipe sets when the config leaves a field at ``None``.

    Attributes:
        lr: Initial (``step_decay``) or peak (``warmup_cosine``) learning rate.
        betas: Adam's ``(beta1, beta2)``.
        schedule: ``warmup_cosine`` (over the whole run) or ``step_decay`` (per epoch).
        loss: Segmentation loss name (fine-tuning).
        loss_params: Its parameters.
    """

    lr: float
    betas: tuple[float, float]
    schedule: Schedule
    loss: str
    loss_params: Mapping[str, Any]


RECIPES: Mapping[str, RecipeDefaults] = types.MappingProxyType(
    {
        # Chosen on validation data of the demo (docs/training.rst, benchmarks/recipe_search.py):
        # the best pretraining L2 and fine-tuning Dice of the candidates within 200 steps.
        "budget": RecipeDefaults(
            lr=1e-2, betas=(0.9, 0.999), schedule="warmup_cosine", loss="dice_ce", loss_params={}
        ),
        # Appendix A.1, exactly: Adam(0.99, 0.995), 1e-3 decayed x0.9 every 2 epochs, Dice with sigmoid heads.
        "paper": RecipeDefaults(
            lr=1e-3, betas=(0.99, 0.995), schedule="step_decay", loss="dice", loss_params={}
        ),
    }
)
"""The named training recipes: ``budget`` (the default) and ``paper`` (Appendix A.1)."""


class OptimConfig(_Strict):
    """Optimiser and learning-rate schedule.

    ``recipe`` fills every field left at ``None`` (:data:`RECIPES`):

    - ``budget`` (default): Adam(0.9, 0.999) at a peak rate of ``lr``, a linear warm-up over the
      first ``warmup_fraction`` of the run, then a half cosine that reaches ``min_lr`` one
      step past the last. The schedule is defined over the run's whole budget (``max_epochs`` x steps per
      epoch), so a short run still ends on a small learning rate and converges.
    - ``paper``: Appendix A.1 exactly: Adam(0.99, 0.995), 1e-3, and the rate at epoch ``e``
      (0-based) is ``max(lr * lr_decay ** ceil(e / lr_decay_every), min_lr)`` (with the
      paper's ``lr_decay_every=2``, its ``floor((1 + e) / 2)``); made for about a hundred
      epochs over thousands of slices.

    A field given explicitly (``optim.lr=1e-4``) wins over the recipe.

    Attributes:
        recipe: ``budget`` or ``paper``.
        lr: Initial/peak learning rate (``None``: the recipe's).
        betas: Adam's betas (``None``: the recipe's).
        schedule: ``warmup_cosine`` or ``step_decay`` (``None``: the recipe's).
        warmup_fraction: Share of the run's steps spent warming up (``warmup_cosine``).
        lr_decay: Factor per decay step (``step_decay``).
        lr_decay_every: Epochs per decay step (``step_decay``).
        min_lr: Floor of ``step_decay``, end point of ``warmup_cosine``.
        steps_per_epoch: ``None`` (the paper): an epoch is one pass over the training data.
            A number fixes the optimisation steps per epoch: shorter data is passed over again
            (re-shuffled), longer data is cut, so tiny label fractions still train properly.
        grad_clip: Clip the global gradient norm to this value (``None``: no clipping).

    Example:
        >>> OptimConfig().effective_schedule, OptimConfig(recipe="paper").effective_betas
        ('warmup_cosine', (0.99, 0.995))
    """

    recipe: Recipe = "budget"
    lr: float | None = Field(default=None, gt=0.0)
    betas: tuple[float, float] | None = None
    eps: float = Field(default=1e-8, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    schedule: Schedule | None = None
    warmup_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    lr_decay: float = Field(default=0.9, gt=0.0, le=1.0)
    lr_decay_every: int = Field(default=2, gt=0)
    min_lr: float = Field(default=1e-8, ge=0.0)
    # Upper bounds far above any real run, so that a slip (1e30 epochs) fails here, naming the field.
    batch_size: int = Field(default=9, gt=0, le=_MAX_BATCH)
    max_epochs: int = Field(default=100, gt=0, le=100_000)
    steps_per_epoch: int | None = Field(default=None, gt=0, le=10_000_000)
    grad_clip: float | None = Field(default=None, gt=0.0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"betas must lie in [0, 1), got {value}")
        return value

    @model_validator(mode="after")
    def _min_lr_below_lr(self) -> OptimConfig:
        if self.min_lr > self.effective_lr:
            raise ValueError(
                f"optim.min_lr ({self.min_lr:g}) must not exceed the learning rate ({self.effective_lr:g})"
            )
        return self

    def _unused_settings(self) -> list[UnusedSetting]:
        # Each schedule reads its own settings (training.loop.Trainer.learning_rate): one given
        # for the other schedule changes nothing, most likely a recipe switched under it.
        schedule = self.effective_schedule
        chosen = f"optim.schedule is {schedule!r}" + (
            "" if self.schedule is not None else f" (the {self.recipe!r} recipe's)"
        )
        unused: list[UnusedSetting] = []
        if schedule == "step_decay" and _given(self, "warmup_fraction"):
            why = f"{chosen}, which does not warm up; it applies to 'warmup_cosine'"
            unused.append(UnusedSetting("optim.warmup_fraction", self.warmup_fraction, why))
        if schedule == "warmup_cosine":
            why = f"{chosen}, which decays along a cosine, not in steps; it applies to 'step_decay'"
            unused.extend(
                UnusedSetting(f"optim.{name}", getattr(self, name), why)
                for name in ("lr_decay", "lr_decay_every")
                if _given(self, name)
            )
        return unused

    @property
    def defaults(self) -> RecipeDefaults:
        """The recipe's values for the fields left at ``None``."""
        return RECIPES[self.recipe]

    @property
    def effective_lr(self) -> float:
        """``lr``, or the recipe's."""
        return self.defaults.lr if self.lr is None else self.lr

    @property
    def effective_betas(self) -> tuple[float, float]:
        """``betas``, or the recipe's."""
        return self.defaults.betas if self.betas is None else self.betas

    @property
    def effective_schedule(self) -> Schedule:
        """``schedule``, or the recipe's."""
        return self.defaults.schedule if self.schedule is None else self.schedule


class EarlyStoppingConfig(_Strict):
    """Stop when validation loss has not improved by more than ``min_delta`` for ``patience`` epochs.

    Attributes:
        min_delta: Minimum decrease of the validation loss that counts as an improvement.
            ``None`` (pretraining's default): 50 per 512x512 slice (sec. 2.5.2), scaled to the
            slices' area, since the L2 loss is summed over pixels; the run records the number.
        patience: Epochs without improvement before the run stops.
        convergence_tolerance: A run that did not stop early counts as converged when the last
            fifth of its epochs made at most this share of its validation-loss improvement
            (see :func:`inpaintssl.training.convergence.assess_convergence`).
    """

    min_delta: float | None = Field(default=1e-3, ge=0.0)
    patience: int = Field(default=10, gt=0)
    convergence_tolerance: float = Field(default=0.05, gt=0.0, lt=1.0)


class LossConfig(_Strict):
    """Segmentation loss: a name in :data:`inpaintssl.registry.LOSSES` and its parameters.

    ``name=None`` takes the optimisation recipe's loss and parameters (``optim.recipe``; see
    :data:`RECIPES`); parameters given with ``name=None`` are added to the recipe's.
    """

    name: str | None = None
    params: Params = Field(default_factory=dict)
