"""Building registered components from config values.

Example:
    >>> net = build_backbone("unet2d", {"depth": 2, "base_width": 4}, in_channels=1, out_channels=1, seed=0)
    >>> size_multiple_of("unet2d", {"depth": 3})
    4
"""

from __future__ import annotations

from typing import Any

from torch import nn

from inpaintssl.registry import BACKBONES

__all__ = ["build_backbone", "size_multiple_of"]


def build_backbone(
    name: str, params: dict[str, Any], *, in_channels: int, out_channels: int, seed: int
) -> nn.Module:
    """Build a registered backbone, with the run seed as its initialisation seed."""
    model: nn.Module = BACKBONES.build(
        name, in_channels=in_channels, out_channels=out_channels, **{"seed": seed, **params}
    )
    return model


def size_multiple_of(name: str, params: dict[str, Any]) -> int:
    """The input-size multiple a backbone needs (``size_multiple`` attribute, default 1)."""
    probe = build_backbone(name, params, in_channels=1, out_channels=1, seed=0)
    return int(getattr(probe, "size_multiple", 1))
