"""The config of an evaluation: which checkpoint, on which data, written where.

Example:
    >>> EvaluateConfig(checkpoint="runs/ft").split
    'test'
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from inpaintssl.config.base import _MAX_BATCH, Device, _Strict, user_path
from inpaintssl.config.data import DataConfig
from inpaintssl.config.errors import ConfigError, format_config_error
from inpaintssl.config.overrides import apply_overrides
from inpaintssl.config.unused import quiet_unused_settings

__all__ = ["EvaluateConfig", "load_data_section"]


class EvaluateConfig(_Strict):
    """Everything :func:`inpaintssl.evaluate` needs when driven from a file or the CLI.

    ``inpaintssl evaluate eval.yaml`` reads such a file (``inpaintssl config show evaluate
    checkpoint=runs/ft > eval.yaml`` writes one); flags given beside it take precedence.

    Attributes:
        checkpoint: A run folder, checkpoint folder or ``.safetensors`` file.
        data: The data to evaluate (its ``split`` is read); ``None``: the data section the run
            recorded in its ``config.yaml``. Where it leaves ``image_size`` or ``resize_mode`` out,
            the run's recorded ones apply (:func:`inpaintssl.evaluate`).
        split: Which split to evaluate.
        output: CSV path for the per-image table (defaults to ``<run>/eval_<split>.csv``).
        device: As in :class:`RunConfig`.
        batch_size: Inference batch size.
    """

    checkpoint: Path
    data: DataConfig | None = None
    split: Literal["train", "val", "test"] = "test"
    output: Path | None = None
    device: Device = "auto"
    batch_size: int = Field(default=9, gt=0, le=_MAX_BATCH)

    @field_validator("checkpoint", "output", mode="before")
    @classmethod
    def _home(cls, value: Any, info: ValidationInfo) -> Any:
        # "~" reaches a config file's paths unexpanded, as it does a run config's output_dir.
        return user_path(value, field=info.field_name or "path")


class _DataSection(_Strict):
    """A run config's ``data`` section on its own: its fields keep their ``data.`` path."""

    data: DataConfig = Field(default_factory=DataConfig)


def load_data_section(
    section: DataConfig | Mapping[str, Any], *, source: str, overrides: Sequence[str] = ()
) -> DataConfig:
    """Validate the ``data`` section of a run config, then apply ``data.KEY=VALUE`` overrides.

    Errors name each field by its path in a run config (``data.image_size``), as the overrides
    spell it and as the section sits in the file ``source`` names.

    Args:
        section: The section's fields, or a config already built.
        source: Where the section came from, for error messages (a file, a run's ``config.yaml``).
        overrides: ``data.KEY=VALUE`` strings applied last.

    Raises:
        ConfigError: A field that fails validation or an override of another section; names it.

    Example:
        >>> section = {"dataset": "mni152", "image_size": [96, 96]}
        >>> load_data_section(section, source="run.yaml", overrides=["data.image_size=[64,64]"]).image_size
        (64, 64)
    """
    try:
        # Judged with the overrides applied (apply_overrides), not before: see load_config.
        with quiet_unused_settings() if overrides else contextlib.nullcontext():
            holder = _DataSection.model_validate({"data": section})
    except ValidationError as exc:
        raise ConfigError(format_config_error(exc, source=source, model=_DataSection)) from exc
    return apply_overrides(holder, overrides).data if overrides else holder.data
