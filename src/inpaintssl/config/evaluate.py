"""The config of an evaluation: which checkpoint, on which data, written where.

Example:
    >>> EvaluateConfig(checkpoint="runs/ft").split
    'test'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from inpaintssl.config.base import _MAX_BATCH, Device, _Strict
from inpaintssl.config.data import DataConfig

__all__ = ["EvaluateConfig"]


class EvaluateConfig(_Strict):
    """Everything :func:`inpaintssl.evaluate` needs when driven from a file or the CLI.

    Attributes:
        checkpoint: A run folder, checkpoint folder or ``.safetensors`` file.
        data: The data to evaluate (the ``test`` split of ``data.dataset``).
        split: Which split to evaluate.
        output: CSV path for the per-image table (defaults to ``<run>/eval_<split>.csv``).
        device: As in :class:`RunConfig`.
    """

    checkpoint: Path
    data: DataConfig = Field(default_factory=DataConfig)
    split: Literal["train", "val", "test"] = "test"
    output: Path | None = None
    device: Device = "auto"
    batch_size: int = Field(default=9, gt=0, le=_MAX_BATCH)
