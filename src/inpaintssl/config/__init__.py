"""Typed run configuration (pydantic v2) with YAML/JSON loading and dotted overrides.

Defaults are the paper's settings (Dominic et al. 2023, sec. 2.3-2.5 and Appendix A.1): batch size
9, early stopping on validation loss (pretraining min-delta 50 / patience 4, segmentation
min-delta 1e-3 / patience 10), context restoration with 32x32 Poisson-disc patches covering 1/4 of
the image, a depth-5 width-32 U-Net. The training recipe is the exception: by default
``optim.recipe = "budget"`` (Adam(0.9, 0.999), peak 1e-2 with warm-up and cosine decay over the
run's budget, Dice + cross-entropy), which converges within short budgets; ``optim.recipe =
"paper"`` is Appendix A.1 exactly (Adam(0.99, 0.995), 1e-3 decayed by 0.9 every two epochs, Dice).
See :data:`RECIPES`.

Every model forbids unknown fields, so a typo fails with the field's dotted path.

Import every name from here; the submodules are the layout, not the interface:
``base`` (the strict base model and shared field checks), ``data``, ``model``, ``pretext``,
``optim`` (recipes, optimiser, loss, early stopping), ``transfer`` and ``run`` (one section
each), ``stages`` (the pretraining and fine-tuning configs), ``evaluate``, ``errors``
(:class:`ConfigError`, :class:`ConfigWarning` and the error format), ``unused`` (the settings a
config leaves unused), ``overrides`` and ``files`` (reading and writing).

A setting given with a value other than its default that has no effect under another setting
(``optim.warmup_fraction`` under the ``step_decay`` schedule) raises a :class:`ConfigWarning`
naming both when the config is validated; see docs/training.rst. :func:`unused_settings` lists
them for a config already built, and :func:`quiet_unused_settings` validates without the warning.

Example:
    >>> from inpaintssl.config import PretrainConfig, apply_overrides
    >>> cfg = apply_overrides(PretrainConfig(), ["optim.lr=1e-4", "pretext.patch_size=16"])
    >>> cfg.optim.lr, cfg.pretext.patch_size
    (0.0001, 16)
"""

from __future__ import annotations

from collections.abc import Mapping

from inpaintssl.config import optim as _optim
from inpaintssl.config.base import Device as Device
from inpaintssl.config.base import user_path as user_path
from inpaintssl.config.data import DATA_READING_FIELDS, DataConfig, SourceConfig
from inpaintssl.config.data import WorkerStartMethod as WorkerStartMethod
from inpaintssl.config.errors import ConfigError, ConfigWarning, format_validation_error
from inpaintssl.config.evaluate import EvaluateConfig
from inpaintssl.config.files import (
    config_to_yaml,
    load_config,
    read_config_file,
    read_config_text,
    read_text_file,
)
from inpaintssl.config.model import ModelConfig
from inpaintssl.config.optim import EarlyStoppingConfig, LossConfig, OptimConfig, RecipeDefaults
from inpaintssl.config.optim import Recipe as Recipe
from inpaintssl.config.optim import Schedule as Schedule
from inpaintssl.config.overrides import ModelT as ModelT
from inpaintssl.config.overrides import apply_overrides, update_fields
from inpaintssl.config.pretext import PretextConfig
from inpaintssl.config.run import CompileMode as CompileMode
from inpaintssl.config.run import RunConfig
from inpaintssl.config.stages import FinetuneConfig, PretrainConfig, recipe_filled
from inpaintssl.config.transfer import TWO_RUN_SCHEDULES as TWO_RUN_SCHEDULES
from inpaintssl.config.transfer import TransferConfig
from inpaintssl.config.unused import UnusedSetting, quiet_unused_settings, unused_settings

__all__ = [
    "DATA_READING_FIELDS",
    "RECIPES",
    "ConfigError",
    "ConfigWarning",
    "DataConfig",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "FinetuneConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PretextConfig",
    "PretrainConfig",
    "RecipeDefaults",
    "RunConfig",
    "SourceConfig",
    "TransferConfig",
    "UnusedSetting",
    "apply_overrides",
    "update_fields",
    "config_to_yaml",
    "format_validation_error",
    "load_config",
    "read_config_file",
    "read_config_text",
    "read_text_file",
    "quiet_unused_settings",
    "recipe_filled",
    "unused_settings",
]

# Bound here, not only imported, so the API docs (which read attribute docstrings from this file's
# source) keep listing it with its description.
RECIPES: Mapping[str, RecipeDefaults] = _optim.RECIPES
"""The named training recipes: ``budget`` (the default) and ``paper`` (Appendix A.1)."""
