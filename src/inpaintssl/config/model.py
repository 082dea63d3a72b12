"""The ``model`` section: the backbone a run trains.

Example:
    >>> ModelConfig(params={"depth": 4}).backbone
    'unet2d'
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from inpaintssl.config.base import Params, _Strict

__all__ = ["ModelConfig"]


class ModelConfig(_Strict):
    """Backbone (sec. 2.3, Appendix A.1).

    Attributes:
        backbone: Name in :data:`inpaintssl.registry.BACKBONES`.
        params: Extra keyword arguments (``depth``, ``base_width``, ``groups``, ...); the input
            and output channel counts are filled in from the data.
    """

    backbone: str = "unet2d"
    params: Params = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _channels_come_from_the_data(cls, value: dict[str, Any]) -> dict[str, Any]:
        given = sorted({"in_channels", "out_channels"} & set(value))
        if given:
            raise ValueError(
                f"{', '.join(given)}: filled in from the data (its image channels, its classes, or "
                "the image channels again for pretraining); leave them out of model.params"
            )
        return value
