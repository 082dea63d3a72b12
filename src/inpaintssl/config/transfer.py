"""The ``transfer`` section: how pretrained weights enter fine-tuning.

Example:
    >>> TransferConfig().schedule in TWO_RUN_SCHEDULES
    False
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from inpaintssl.config.base import _given, _Strict, user_path
from inpaintssl.config.unused import UnusedSetting

__all__ = ["TWO_RUN_SCHEDULES", "TransferConfig"]


TWO_RUN_SCHEDULES: tuple[str, ...] = ("immediate_twice", "freeze_then_unfreeze")
"""``transfer.schedule`` values with a second run at ``transfer.second_lr`` (the paper's ``??S`` models)."""


class TransferConfig(_Strict):
    """How pretrained weights enter fine-tuning (sec. 2.5.1, Appendix B).

    Attributes:
        pretrained: A pretraining run folder, its checkpoint folder or a ``.safetensors`` file;
            ``None`` trains from scratch (the fully supervised baseline).
        weights: Transfer strategy name: ``encoder`` or ``encoder_decoder``.
        schedule: ``immediate`` (fine-tune everything at ``optim.lr``, the paper's F?F),
            ``immediate_twice`` (then train everything again at ``second_lr``, F?S), ``frozen``
            (train only the fresh parts, FF?F) or ``freeze_then_unfreeze`` (train only the fresh
            parts to convergence, then unfreeze all and train again at ``second_lr``, FF?S).
        second_lr: Initial learning rate of the second run (defaults to ``optim.lr / 10``); given
            or by default, not below ``optim.min_lr``, the schedules' floor.
        in_channels: What to do when pretrained and fine-tuned input channels differ:
            ``error``, ``repeat`` (tile the kernels that read the image, scaled) or ``average``.
    """

    pretrained: Path | None = None
    weights: str = "encoder"
    schedule: Literal["immediate", "immediate_twice", "frozen", "freeze_then_unfreeze"] = "immediate"
    second_lr: float | None = Field(default=None, gt=0.0)
    in_channels: Literal["error", "repeat", "average"] = "error"

    @field_validator("pretrained", mode="before")
    @classmethod
    def _home(cls, value: Any) -> Any:
        return user_path(value, field="pretrained")

    def _unused_settings(self) -> list[UnusedSetting]:
        unused: list[UnusedSetting] = []
        if self.schedule not in TWO_RUN_SCHEDULES and _given(self, "second_lr"):
            runs = " and ".join(repr(name) for name in TWO_RUN_SCHEDULES)
            why = f"transfer.schedule={self.schedule!r} trains once; only {runs} have a second run"
            unused.append(UnusedSetting("transfer.second_lr", self.second_lr, why))
        if self.pretrained is None:
            # Without pretrained weights the run is the supervised baseline, trained from scratch:
            # a transfer setting given then most likely means the pretraining run was left out.
            why = "transfer.pretrained is null, so nothing is transferred and the run trains from scratch"
            unused.extend(
                UnusedSetting(f"transfer.{name}", getattr(self, name), why)
                for name in ("weights", "in_channels")
                if _given(self, name)
            )
        return unused
