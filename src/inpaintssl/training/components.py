"""Building registered components from config values.

Every run builds its backbone and pretext task here, so the config's defaults
(:class:`~inpaintssl.config.PretextConfig`) are the only ones a run ever uses.

Example:
    >>> from inpaintssl.config import PretextConfig
    >>> net = build_backbone("unet2d", {"depth": 2, "base_width": 4}, in_channels=1, out_channels=1, seed=0)
    >>> size_multiple_of("unet2d", {"depth": 3}, in_channels=1, out_channels=2)
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
from inpaintssl.registry import BACKBONES, LOSSES, PRETEXT_TASKS, PluginLoadError
from inpaintssl.transfer_learning.transfer import backbone_parts, check_backbone_parts

__all__ = [
    "build_backbone",
    "build_pretext_task",
    "build_segmentation_loss",
    "check_backbone_params",
    "size_multiple_of",
]


def build_backbone(
    name: str,
    params: Mapping[str, Any],
    *,
    in_channels: int,
    out_channels: int,
    seed: int,
    weight_gradient: WeightGradientKernel = "auto",
    check_parts: bool = True,
) -> nn.Module:
    """Build a registered backbone, with the run seed as its initialisation seed.

    Args:
        name: Registered backbone name.
        params: The config's ``model.params``; a ``seed`` or ``weight_gradient`` there wins.
        in_channels: Input channels.
        out_channels: Output channels.
        seed: Initialisation seed.
        weight_gradient: The run's ``run.cpu_weight_gradient``, passed to backbones whose
            factory names a ``weight_gradient`` parameter (the built-in U-Net) and to no other:
            a factory that forwards its ``**kwargs`` to another library would hand it an
            argument the user never wrote.
        check_parts: Refuse a network without the ``encoder``, ``decoder`` and ``head`` parts that
            hold every parameter (:func:`~inpaintssl.transfer_learning.transfer.check_backbone_parts`).
            Training checks them; loading a trained run for inference, which transfers nothing,
            does not.

    Raises:
        KeyError: Unknown backbone name.
        inpaintssl.registry.PluginLoadError: The plugin fails to load or is ambiguous.
        TypeError: ``params`` do not fit the factory, it builds no ``nn.Module``, or (with
            ``check_parts``) the network lacks the parts; the message names the plugin's origin.

    Example:
        >>> net = build_backbone("unet2d", {"depth": 2}, in_channels=1, out_channels=1, seed=0,
        ...                      weight_gradient="onednn")
        >>> net.weight_gradient
        'onednn'
    """
    given, passed = _backbone_arguments(
        name,
        params,
        in_channels=in_channels,
        out_channels=out_channels,
        seed=seed,
        weight_gradient=weight_gradient,
    )
    model = BACKBONES.build_from(name, given, field="model.params", set_by_caller=passed)
    if check_parts:
        _check_parts(name, model)
    return model


def _check_parts(name: str, model: nn.Module) -> None:
    """:func:`check_backbone_parts`, naming the backbone and where it comes from (a plugin's package)."""
    if not backbone_parts(model).kept:  # the origin, which reads the entry points, for a message only
        check_backbone_parts(model, what=f"backbone {name!r} ({BACKBONES.origin(name)})")


def check_backbone_params(name: str, params: Mapping[str, Any], *, seed: int) -> None:
    """Check the backbone name and ``model.params`` as :func:`build_backbone` would, building nothing.

    A run builds its backbone only once its data say the channel counts; a misspelt name or
    parameter fails here first, before any data are read.

    Raises:
        KeyError: Unknown backbone name.
        inpaintssl.registry.PluginLoadError: The plugin fails to load or is ambiguous.
        TypeError: ``params`` do not fit the factory (as :func:`build_backbone` says it).

    Example:
        >>> check_backbone_params("unet2d", {"depht": 3}, seed=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: model.params: backbones 'unet2d': invalid parameters ['depht'] ...
    """
    given, passed = _backbone_arguments(
        name,
        params,
        in_channels=_FROM_THE_DATA,
        out_channels=_FROM_THE_DATA,
        seed=seed,
        weight_gradient="auto",
    )
    BACKBONES.check_from(name, given, field="model.params", set_by_caller=passed)


class _FromTheData:
    """A channel count not known before the data are read; only its name reaches a message."""

    def __repr__(self) -> str:
        return "<from the data>"


_FROM_THE_DATA: Any = _FromTheData()


def _backbone_arguments(
    name: str,
    params: Mapping[str, Any],
    *,
    in_channels: int,
    out_channels: int,
    seed: int,
    weight_gradient: WeightGradientKernel,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The factory's keyword arguments: those ``model.params`` may set (with its values), and the run's."""
    factory = BACKBONES.get(name)
    defaults: dict[str, Any] = {}
    if weight_gradient != "auto" and _names(factory, "weight_gradient"):
        defaults["weight_gradient"] = weight_gradient
    passed: dict[str, Any] = {"in_channels": in_channels, "out_channels": out_channels}
    if _names(factory, "seed") or _takes_any_keyword(factory):
        defaults["seed"] = seed  # one model.params may set (it wins, and a misspelling lists it)
    elif "seed" not in params:
        # The contract's argument, passed by the run: a factory without it is the plugin's
        # mistake, not an unknown model.params key that the user never wrote.
        passed["seed"] = seed
    return {**defaults, **params}, passed


def _parameters(factory: object) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(factory).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return {}


def _names(factory: object, keyword: str) -> bool:
    """Whether ``keyword`` is a parameter of the factory's own (``**kwargs`` does not count)."""
    parameter = _parameters(factory).get(keyword)
    return parameter is not None and parameter.kind in (
        parameter.POSITIONAL_OR_KEYWORD,
        parameter.KEYWORD_ONLY,
    )


def _takes_any_keyword(factory: object) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in _parameters(factory).values())


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


def size_multiple_of(name: str, params: Mapping[str, Any], *, in_channels: int, out_channels: int) -> int:
    """The input-size multiple a backbone needs (``size_multiple`` attribute, default 1).

    Read from a backbone built with the run's own channel counts: a plugin may accept only
    those (a network for RGB images) and must not fail on counts the run never uses.

    Raises:
        KeyError: Unknown backbone name.
        inpaintssl.registry.PluginLoadError: The plugin fails to load or is ambiguous.
        TypeError: The network lacks the parts every run checks (see :func:`build_backbone`).
        Exception: What building it raised, its message prefixed by what was being built and why
            (where its type takes one message).

    Example:
        >>> size_multiple_of("unet2d", {"depth": 3}, in_channels=1, out_channels=2)
        4
    """
    try:
        # The parts are checked below, outside: a network that lacks them is no failure to probe.
        probe = build_backbone(
            name, params, in_channels=in_channels, out_channels=out_channels, seed=0, check_parts=False
        )
    except (KeyError, PluginLoadError):
        raise  # about the name, which the message gives: no probe to speak of
    except Exception as exc:
        context = (
            f"model.backbone={name!r}: building the backbone (in_channels={in_channels}, "
            f"out_channels={out_channels}, model.params={dict(params)}) to read its size_multiple, the "
            f"multiple the data's slice sizes must fit, failed: {exc}"
        )
        again = _with_message(exc, context)
        if again is exc:
            raise
        raise again from exc
    _check_parts(name, probe)
    return int(getattr(probe, "size_multiple", 1))


def _with_message(exc: Exception, message: str) -> Exception:
    """A new exception of ``exc``'s type saying ``message``; ``exc`` itself where the type cannot.

    The type is kept, so a caller that catches a ``ValueError`` still does; a type whose
    constructor takes other arguments (or that words its message otherwise) is left as raised.
    """
    try:
        again = type(exc)(message)
    except Exception:  # noqa: BLE001 - any type that cannot say it is left as raised
        return exc
    return again if str(again) == message else exc
