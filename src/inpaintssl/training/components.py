"""Building registered components from config values.

Every run builds its backbone and pretext task here, so the config's defaults
(:class:`~inpaintssl.config.PretextConfig`) are the only ones a run ever uses.

Example:
    >>> from inpaintssl.config import PretextConfig
    >>> net = build_backbone("unet2d", {"depth": 2, "base_width": 4}, in_channels=1, out_channels=1, seed=0)
    >>> size_multiple_of("unet2d", {"depth": 3})
    4
    >>> build_pretext_task(PretextConfig(patch_size=8, bank_size=2), seed=0).patch_size
    8
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from inpaintssl.config import PretextConfig
from inpaintssl.corruption.base import PretextTask
from inpaintssl.losses.base import SegmentationLoss
from inpaintssl.models.cpu_convolution import WeightGradientKernel
from inpaintssl.registry import BACKBONES, LOSSES, PRETEXT_TASKS

__all__ = ["build_backbone", "build_pretext_task", "build_segmentation_loss", "size_multiple_of"]


def build_backbone(
    name: str,
    params: Mapping[str, Any],
    *,
    in_channels: int,
    out_channels: int,
    seed: int,
    weight_gradient: WeightGradientKernel = "auto",
) -> nn.Module:
    """Build a registered backbone, with the run seed as its initialisation seed.

    Args:
        name: Registered backbone name.
        params: The config's ``model.params``; a ``seed`` or ``weight_gradient`` there wins.
        in_channels: Input channels.
        out_channels: Output channels.
        seed: Initialisation seed.
        weight_gradient: The run's ``run.cpu_weight_gradient``, passed to backbones whose
            factory takes a ``weight_gradient`` keyword (the built-in U-Net) and to no other.

    Example:
        >>> net = build_backbone("unet2d", {"depth": 2}, in_channels=1, out_channels=1, seed=0,
        ...                      weight_gradient="onednn")
        >>> net.weight_gradient
        'onednn'
    """
    factory = BACKBONES.get(name)
    defaults: dict[str, Any] = {}
    if weight_gradient != "auto" and _accepts(factory, "weight_gradient"):
        defaults["weight_gradient"] = weight_gradient
    passed: dict[str, Any] = {"in_channels": in_channels, "out_channels": out_channels}
    if _accepts(factory, "seed"):
        defaults["seed"] = seed  # one model.params may set (it wins, and a misspelling lists it)
    elif "seed" not in params:
        # The contract's argument, passed by the run: a factory without it is the plugin's
        # mistake, not an unknown model.params key that the user never wrote.
        passed["seed"] = seed
    return BACKBONES.build_from(name, {**defaults, **params}, field="model.params", set_by_caller=passed)


def _accepts(factory: object, keyword: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return keyword in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def build_pretext_task(pretext: PretextConfig, *, seed: int) -> PretextTask:
    """Build the pretext task a :class:`~inpaintssl.config.PretextConfig` describes.

    Args:
        pretext: Task name, patch size, sampler, coverage, bank size and extra ``params``.
        seed: Seeds the task's mask banks and corruption.

    Raises:
        KeyError: Unknown task or sampler name.
        ValueError: Options the task rejects, naming them.

    Example:
        >>> task = build_pretext_task(PretextConfig(task="context_prediction", bank_size=2), seed=1)
        >>> task.patch_size, task.coverage, task.sampler_name
        (32, 0.25, 'poisson_disc')
    """
    own = {
        "patch_size": pretext.patch_size,
        "sampler": pretext.sampler,
        "coverage": pretext.coverage,
        "bank_size": pretext.bank_size,
        "seed": seed,
    }
    return PRETEXT_TASKS.build_from(pretext.task, pretext.params, field="pretext.params", set_by_caller=own)


def build_segmentation_loss(name: str, params: Mapping[str, Any]) -> SegmentationLoss:
    """Build a registered loss that can train and score a segmentation head.

    Args:
        name: Registered loss name (``dice``, ``dice_ce``, or a plugin).
        params: Its keyword parameters (e.g. ``activation``).

    Raises:
        KeyError: Unknown loss name.
        TypeError: The loss is not a :class:`~inpaintssl.losses.base.SegmentationLoss`
            (``l2`` is the inpainting loss), so it has no activation or hard prediction.

    Example:
        >>> build_segmentation_loss("dice", {"activation": "softmax"}).out_channels(3)
        4
        >>> build_segmentation_loss("l2", {})
        Traceback (most recent call last):
        ...
        TypeError: loss 'l2' builds a L2Loss, not a SegmentationLoss: it cannot train a segmentation head
    """
    loss = LOSSES.build_from(name, params, field="loss.params", set_by_caller={})
    if not isinstance(loss, SegmentationLoss):
        raise TypeError(
            f"loss {name!r} builds a {type(loss).__name__}, not a SegmentationLoss: "
            "it cannot train a segmentation head"
        )
    return loss


def size_multiple_of(name: str, params: Mapping[str, Any]) -> int:
    """The input-size multiple a backbone needs (``size_multiple`` attribute, default 1)."""
    probe = build_backbone(name, params, in_channels=1, out_channels=1, seed=0)
    return int(getattr(probe, "size_multiple", 1))
