"""The configs of the two training stages, pretraining and fine-tuning, built from the sections.

Checks that span sections (the pretext patches against the image size, the transfer schedule
against the pretrained weights) live here, and so does what the recipe fills in.

Example:
    >>> FinetuneConfig().loss_name, PretrainConfig().early_stopping.patience
    ('dice_ce', 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from inpaintssl.config.base import _given, _Strict
from inpaintssl.config.data import DataConfig
from inpaintssl.config.model import ModelConfig
from inpaintssl.config.optim import EarlyStoppingConfig, LossConfig, OptimConfig
from inpaintssl.config.pretext import PretextConfig, _corruption_problem
from inpaintssl.config.run import RunConfig
from inpaintssl.config.transfer import TWO_RUN_SCHEDULES, TransferConfig
from inpaintssl.config.unused import UnusedSetting

__all__ = ["FinetuneConfig", "PretrainConfig", "recipe_filled"]


def _pretrain_stopping() -> EarlyStoppingConfig:
    # min_delta None: 50 per 512x512 slice, scaled to the run's slice area when it starts.
    return EarlyStoppingConfig(min_delta=None, patience=4)


class _StageConfig(_Strict):
    """The sections both training stages open with: the data and the network."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)


class PretrainConfig(_StageConfig):
    """Everything :func:`inpaintssl.pretrain` needs (sec. 2.3-2.5).

    When ``data.image_size`` is set, the pretext task's patches are checked against it here, so
    a request the sampler cannot meet fails when the config is read, not at the first batch.

    Example:
        >>> PretrainConfig.model_validate(
        ...     {"data": {"image_size": [64, 64]}, "pretext": {"patch_size": 64}}
        ... )  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for PretrainConfig
          Value error, pretext.patch_size=64 with pretext.coverage=0.25 ... one patch alone covers 100%...
    """

    pretext: PretextConfig = Field(default_factory=PretextConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=_pretrain_stopping)
    run: RunConfig = Field(default_factory=RunConfig)

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _stopping_keys_over_pretraining_defaults(cls, value: Any) -> Any:
        # A mapping naming some keys (a config file's ``early_stopping: {patience: 8}``) fills the
        # rest from pretraining's defaults, as an override does (overrides._left_out), not from
        # the section class's, whose min_delta (1e-3) suits fine-tuning's per-pixel losses.
        if isinstance(value, Mapping):
            return {**_pretrain_stopping().model_dump(), **value}
        return value

    @model_validator(mode="after")
    def _patches_fit_the_image(self) -> PretrainConfig:
        size = self.data.image_size
        problem = None if size is None else _corruption_problem(self.pretext, size)
        if problem is not None:
            raise ValueError(problem)
        return self

    def _unused_settings(self) -> list[UnusedSetting]:
        # data.build.build_datasets: pretraining reads the whole train split, without labels.
        if not _given(self.data, "label_fraction"):
            return []
        why = (
            "pretraining trains on every training volume, without labels; label_fraction selects "
            "fine-tuning's labelled subset"
        )
        return [UnusedSetting("data.label_fraction", self.data.label_fraction, why)]


class FinetuneConfig(_StageConfig):
    """Everything :func:`inpaintssl.finetune` needs (sec. 2.5.1, Appendix B)."""

    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _min_delta_is_a_number(self) -> FinetuneConfig:
        if self.early_stopping.min_delta is None:
            raise ValueError(
                "early_stopping.min_delta: null (scaled to the slice area) applies to pretraining's "
                "summed L2 loss; fine-tuning's losses are per-pixel means: give a number (default 1e-3)"
            )
        second = self.transfer.second_lr
        if second is not None and second < self.optim.min_lr:
            # Both schedules keep the rate at or above min_lr: the second phase would not train at
            # the rate asked for, as optim.lr below min_lr is refused for the first.
            raise ValueError(
                f"transfer.second_lr ({second:g}) must not be below optim.min_lr ({self.optim.min_lr:g}), "
                "the floor of the learning-rate schedule"
            )
        default = self.optim.effective_lr / 10  # training.finetuning.phases_for's
        if second is None and self.transfer.schedule in TWO_RUN_SCHEDULES and default < self.optim.min_lr:
            # The default rate too: a cosine would climb from it to min_lr, step decay sit at min_lr.
            raise ValueError(
                f"transfer.second_lr, by default optim.lr / 10 ({default:g}), must not be below "
                f"optim.min_lr ({self.optim.min_lr:g}), the floor of the learning-rate schedule; give "
                "transfer.second_lr at or above it, or a lower optim.min_lr"
            )
        return self

    def _unused_settings(self) -> list[UnusedSetting]:
        # data.build.build_datasets adds the unlabelled sources to pretraining's set alone.
        if not _given(self.data, "unlabelled"):
            return []
        datasets = [source.dataset for source in self.data.unlabelled]
        why = "fine-tuning trains on the labelled data alone; unlabelled sources are added to pretraining"
        return [UnusedSetting("data.unlabelled", datasets, why)]

    @property
    def loss_name(self) -> str:
        """``loss.name``, or the recipe's loss."""
        return self.optim.defaults.loss if self.loss.name is None else self.loss.name

    @property
    def loss_params(self) -> dict[str, Any]:
        """``loss.params``, over the recipe's parameters when the recipe's loss is used."""
        base = dict(self.optim.defaults.loss_params) if self.loss.name is None else {}
        return {**base, **self.loss.params}

    @model_validator(mode="after")
    def _second_lr_needs_schedule(self) -> FinetuneConfig:
        if self.transfer.schedule in ("frozen", "freeze_then_unfreeze") and self.transfer.pretrained is None:
            raise ValueError(
                f"transfer.schedule {self.transfer.schedule!r} needs transfer.pretrained "
                "(there is nothing to freeze when training from scratch)"
            )
        return self


def recipe_filled(config: BaseModel) -> dict[str, Any]:
    """The values ``optim.recipe`` gives the fields a training config leaves at ``None``.

    ``config.yaml`` keeps those fields ``null`` (the recipe decides, and a resume must compare
    like with like); this says what they were: the run's manifest records it, and ``inpaintssl
    config show`` prints it under the config.

    Example:
        >>> recipe_filled(FinetuneConfig())["optim.lr"], recipe_filled(FinetuneConfig())["loss.name"]
        (0.01, 'dice_ce')
        >>> recipe_filled(FinetuneConfig.model_validate({"optim": {"lr": 0.5}})).get("optim.lr") is None
        True
    """
    optim = getattr(config, "optim", None)
    if not isinstance(optim, OptimConfig):
        return {}
    filled: dict[str, Any] = {}
    if optim.lr is None:
        filled["optim.lr"] = optim.effective_lr
    if optim.betas is None:
        filled["optim.betas"] = list(optim.effective_betas)
    if optim.schedule is None:
        filled["optim.schedule"] = optim.effective_schedule
    if isinstance(config, FinetuneConfig) and config.loss.name is None:
        filled["loss.name"] = config.loss_name
        if config.loss_params:
            filled["loss.params"] = config.loss_params
    return filled
