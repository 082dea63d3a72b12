"""Copy pretrained inpainting weights into a fresh segmentation network (paper sec. 2.5.1, App. B).

A silent key or axis mismatch can wipe out the benefit of pretraining unnoticed, so the rules are
strict: every tensor of a part being copied must exist in the pretrained weights with the same
shape, or :func:`transfer` raises before touching the model. The only tolerated difference is the
input-channel axis of the kernels that read the image, and only when ``in_channels`` says how to
adapt it.

Example:
    >>> from inpaintssl.registry import BACKBONES
    >>> pre = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
    >>> seg = BACKBONES.build("unet2d", in_channels=1, out_channels=3, depth=2, base_width=4, seed=1)
    >>> report = transfer(pre, seg, weights="encoder")
    >>> report.parts, report.shape_mismatches
    (('encoder',), ['head.weight', 'head.bias'])
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from inpaintssl.checkpoint import (
    CheckpointError,
    load_resolved_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from inpaintssl.listing import first_and_more
from inpaintssl.options import check_option
from inpaintssl.registry import TRANSFER_STRATEGIES
from inpaintssl.transfer_learning.channels import adapt_input_channels
from inpaintssl.transfer_learning.network_parts import carried_record, get_part, unwrap_model
from inpaintssl.transfer_learning.report import TransferReport
from inpaintssl.transfer_learning.strategies import TransferStrategy

__all__ = [
    "BACKBONE_PARTS",
    "InChannelsMode",
    "PartsCheck",
    "PretrainedSource",
    "TransferReport",
    "backbone_parts",
    "check_backbone_parts",
    "strip_wrapper_prefixes",
    "transfer",
]

InChannelsMode = Literal["error", "repeat", "average"]
PretrainedSource: TypeAlias = "nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike[str]"
_IN_CHANNELS_MODES: tuple[str, ...] = ("error", "repeat", "average")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_MAX_LISTED = 8
_EXPORT_HEADER_KEY = "inpaintssl"
"""Key of the model metadata JSON in an ``export_model`` safetensors header: the value of
``inpaintssl.inference.loading.HEADER_KEY``, spelled here because inference sits above this layer."""


BACKBONE_PARTS: tuple[str, ...] = ("encoder", "decoder", "head")
"""The top-level submodules every backbone has, which together hold every parameter: strategies name
them (``encoder``, ``encoder_decoder``), and :func:`transfer` copies a part's tensors by its name."""


@dataclass(frozen=True)
class PartsCheck:
    """How a backbone keeps the parts contract (:func:`backbone_parts`).

    Attributes:
        missing: Parts of :data:`BACKBONE_PARTS` that are not top-level submodules of the model.
        outside: Parameters (by name) that no part holds: no strategy can transfer them.
    """

    missing: tuple[str, ...]
    outside: tuple[str, ...]

    @property
    def kept(self) -> bool:
        """Every part is there and holds, with the others, every parameter."""
        return not self.missing and not self.outside


def backbone_parts(model: nn.Module) -> PartsCheck:
    """Which of the parts ``model`` lacks and which of its parameters lie outside them.

    Wrappers (DDP, ``torch.compile``) are looked through, as :func:`transfer` does. A part must be a
    registered child module, as :func:`transfer` finds it; a parameter shared with a part is inside.

    Example:
        >>> from torch import nn
        >>> net = nn.Module()
        >>> net.encoder, net.head, net.stem = nn.Conv2d(1, 2, 1), nn.Conv2d(2, 1, 1), nn.Conv2d(1, 1, 1)
        >>> backbone_parts(net)
        PartsCheck(missing=('decoder',), outside=('stem.weight', 'stem.bias'))
    """
    model = unwrap_model(model)
    children = dict(model.named_children())
    parts = [children[name] for name in BACKBONE_PARTS if name in children]
    inside = {id(param) for part in parts for param in part.parameters()}
    return PartsCheck(
        missing=tuple(name for name in BACKBONE_PARTS if name not in children),
        outside=tuple(name for name, param in model.named_parameters() if id(param) not in inside),
    )


def check_backbone_parts(model: nn.Module, *, what: str) -> None:
    """Refuse a backbone that breaks the parts contract, before it trains.

    A network without the parts pretrains to the end and fails only at fine-tuning (no
    ``encoder`` to transfer); one with parameters outside them (a ``stem``) loses those pretrained
    weights at transfer, listed only in ``TransferReport.skipped``.

    Args:
        model: The built backbone.
        what: Names the backbone for the message (``backbone 'x' (plugin ... from distribution ...)``).

    Raises:
        TypeError: Naming ``what``, the parts missing and the parameters outside them.

    Example:
        >>> from torch import nn
        >>> check_backbone_parts(nn.Conv2d(1, 1, 3), what="backbone 'conv'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: backbone 'conv' builds torch.nn.modules.conv.Conv2d, which lacks the parts ...
    """
    found = backbone_parts(model)
    if found.kept:
        return
    problems = []
    if found.missing:
        problems.append(f"submodule(s) missing: {', '.join(found.missing)}")
    if found.outside:
        problems.append(
            f"{len(found.outside)} parameter(s) lie outside them: {_listing(list(found.outside))}"
        )
    kind = type(unwrap_model(model))
    raise TypeError(
        f"{what} builds {kind.__module__}.{kind.__qualname__}, which lacks the parts every backbone needs: "
        f"{'; '.join(problems)}. Expected top-level submodules {', '.join(BACKBONE_PARTS)} holding every "
        "parameter (transfer strategies copy them by name: a network without them pretrains but cannot be "
        "fine-tuned from its weights, and weights outside them are left behind at transfer); see "
        "docs/plugins.rst, Backbones, and inpaintssl.testing.BackboneContract"
    )


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` (DDP / DataParallel) and ``_orig_mod.`` (``torch.compile``) key prefixes.

    A prefix is removed only when every key carries it, repeatedly, so nested wrappers unwrap too.

    Example:
        >>> import torch
        >>> list(strip_wrapper_prefixes({"_orig_mod.module.encoder.w": torch.zeros(1)}))
        ['encoder.w']
    """
    result = dict(state)
    while result:
        prefix = next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in result)), None)
        if prefix is None:
            break
        result = {key[len(prefix) :]: value for key, value in result.items()}
    return result


def _header_kind(path: Path) -> str | None:
    """The ``kind`` an ``export_model`` safetensors file records, if it is one (else ``None``)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            text = (handle.metadata() or {}).get(_EXPORT_HEADER_KEY)
        info: Any = json.loads(text) if text is not None else None
    except (SafetensorError, OSError, ValueError):
        return None  # unreadable here: loading the weights says what is wrong with the file
    kind = info.get("kind") if isinstance(info, dict) else None
    return kind if isinstance(kind, str) else None


def _recorded_kind(target: Path) -> tuple[str, Path] | None:
    """The stage (``pretrain``/``finetune``) the resolved checkpoint ``target`` records, and where.

    A checkpoint folder records it in its ``meta.json`` (a sealed checkpoint's ``model.safetensors``
    arrives here as its verified folder: :func:`~inpaintssl.checkpoint.resolve_checkpoint`), an
    unsealed ``model.safetensors`` in the ``meta.json`` next to it, and an ``export_model``
    safetensors file in its header. Plain weights record nothing (``None``).
    """
    if target.is_dir():
        meta_path: Path | None = target / "meta.json"
    elif target.name == "model.safetensors" and target.with_name("meta.json").is_file():
        meta_path = target.with_name("meta.json")
    else:
        meta_path = None
    if meta_path is not None and meta_path.is_file():
        return read_checkpoint_meta(meta_path).kind, meta_path
    kind = _header_kind(target) if target.is_file() and target.suffix.lower() == ".safetensors" else None
    return None if kind is None else (kind, target)


def _refuse_finetuned(kind: str | None, *, source: str, where: str) -> None:
    """Refuse a fine-tuned (segmentation) network: its decoder and head learned from labels."""
    if kind != "finetune":
        return
    raise CheckpointError(
        f"pretrained {source}: a fine-tuned segmentation checkpoint (kind 'finetune' in {where}); transfer "
        "expects a pretraining (inpainting) run: the decoder and head of a fine-tuned run learned from "
        "labels, so copying them would feed labels into a 'self-supervised' result. Expected a "
        "pretraining run, checkpoint or export (kind 'pretrain'), or weights without inpaintssl "
        "metadata (a plain state dict or .safetensors file)"
    )


def _load_pretrained(pretrained: PretrainedSource) -> dict[str, torch.Tensor]:
    if isinstance(pretrained, nn.Module):
        # A model from inpaintssl.load_model carries the kind of the checkpoint it was loaded from,
        # and one a training run handed back (FinetuneResult.model) the kind of that run.
        carried = carried_record(pretrained)
        if carried is not None:
            record, attribute = carried
            kind = getattr(record, "kind", None)
            origin = getattr(record, "source", None)
            if origin:
                described = f"model loaded from {origin}"
            elif attribute == "inference_meta":
                described = "model loaded from a checkpoint"
            else:
                described = "model handed back by a training run"
            _refuse_finetuned(
                kind if isinstance(kind, str) else None, source=described, where=f"its {attribute}"
            )
        state = unwrap_model(pretrained).state_dict()
    elif isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained)
        target = resolve_checkpoint(path)
        recorded = _recorded_kind(target)
        if recorded is not None:
            _refuse_finetuned(recorded[0], source=str(path), where=str(recorded[1]))
        state, _ = load_resolved_checkpoint(target)
    elif isinstance(pretrained, Mapping):
        bad = [str(k) for k, v in pretrained.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise TypeError(f"pretrained mapping must hold tensors; these keys do not: {_listing(bad)}")
        state = dict(pretrained)
    else:
        raise TypeError(
            "pretrained must be an nn.Module, a state dict, or a path to a .safetensors file, "
            f"checkpoint folder or run folder; found {type(pretrained).__name__}"
        )
    return strip_wrapper_prefixes(state)


def _unusable(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], keys: list[str]
) -> list[str]:
    """Problems of the pretrained tensors at ``keys``: not floating point, or not finite.

    ``copy_`` would cast an integer or bool tensor into a float parameter without a word (a
    file of quantised or wrongly exported weights), and a NaN or Inf would surface only as a
    non-finite loss at the first step. A non-float tensor is fine where the model's own tensor is
    not float either (a counter buffer such as BatchNorm's ``num_batches_tracked``).
    """
    problems: list[str] = []
    for key in keys:
        src = source[key]
        if not src.is_floating_point():
            # Complex is refused too: copy_ into a real tensor would drop the imaginary part.
            if target[key].is_floating_point() or src.is_complex():
                problems.append(f"{key} has dtype {src.dtype}, expected a floating-point dtype")
            continue
        bad = int((~torch.isfinite(src)).sum())
        if bad:
            nan = int(torch.isnan(src).sum())
            problems.append(
                f"{key} has {bad} non-finite value(s) of {src.numel()} ({nan} NaN, {bad - nan} Inf)"
            )
    return problems


def _listing(keys: list[str]) -> str:
    return first_and_more(keys, limit=_MAX_LISTED)


def _resolve_strategy(weights: str | TransferStrategy) -> TransferStrategy:
    if isinstance(weights, TransferStrategy):
        return weights
    expected = "weights: expected a strategy name or a TransferStrategy instance"
    if isinstance(weights, type) and issubclass(weights, TransferStrategy):
        # The registry would only say its name must be a str, naming neither weights nor the fix.
        name = f" or its registered name ({weights.name!r})" if weights.name else ""
        raise TypeError(
            f"{expected}; found the class {weights.__name__}: pass an instance, {weights.__name__}(){name}"
        )
    if not isinstance(weights, str):
        raise TypeError(f"{expected}; found {type(weights).__name__} {weights!r}")
    strategy = TRANSFER_STRATEGIES.build(weights)
    if not isinstance(strategy, TransferStrategy):
        raise TypeError(
            f"transfer strategy {weights!r} built a {type(strategy).__name__}; expected a TransferStrategy"
        )
    return strategy


def _first_kernel(target: Mapping[str, torch.Tensor], strategy: TransferStrategy) -> str | None:
    """Key of the first convolution kernel (>= 3-D) among the copied tensors, in module order."""
    return next((k for k, v in target.items() if strategy.part_of(k) and v.ndim >= 3), None)


def _is_channel_only_change(source: torch.Tensor, dest: torch.Tensor) -> bool:
    return (
        source.ndim == dest.ndim
        and source.shape[0] == dest.shape[0]
        and source.shape[2:] == dest.shape[2:]
        and source.shape[1] != dest.shape[1]
    )


def _image_channels(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], first_kernel: str | None
) -> tuple[int, int] | None:
    """The image's channel count in the pretrained network and in the model, when they differ.

    Read from the first copied kernel, which reads the image: ``None`` when it is missing or
    differs in more than its input channels (then nothing is adapted).
    """
    if first_kernel is None or first_kernel not in source:
        return None
    src, dest = source[first_kernel], target[first_kernel]
    return (src.shape[1], dest.shape[1]) if _is_channel_only_change(src, dest) else None


def _reads_the_image(src: torch.Tensor, dest: torch.Tensor, channels: tuple[int, int] | None) -> bool:
    """Whether a kernel's change is the image's: from exactly its old to its new channel count.

    The first kernel is one; a residual unit's shortcut convolution that reads the image beside
    it (MONAI's ``UNet``) is another. A deeper kernel whose input holds the image together with
    features (a concatenation) changes by the same difference but not between these counts, and
    stays an error: tiling its whole kernel would mix features into the image's channels.
    """
    return (
        channels is not None
        and _is_channel_only_change(src, dest)
        and (src.shape[1], dest.shape[1]) == channels
    )


def _key_prefix(
    source: Mapping[str, torch.Tensor], wanted: list[str]
) -> tuple[Literal["strip", "add"], str, int] | None:
    """A key prefix whose removal from (``strip``) or addition to (``add``) the pretrained keys would
    give the model's keys ``wanted``, with how many of them it would then match.

    Read from ``wanted[0]``: a pretrained key that ends with it names a prefix to strip (a PyTorch
    Lightning checkpoint's ``model.``); one it ends with names a prefix to add (a state dict of
    the encoder alone). The candidate that matches most of ``wanted`` wins; ``None`` when none
    matches at least half of them.
    """
    if not wanted:
        return None
    first = wanted[0]
    candidates: set[tuple[Literal["strip", "add"], str]] = set()
    for key in source:
        if key.endswith(first) and key != first and key[: -len(first)].endswith("."):
            candidates.add(("strip", key[: -len(first)]))
        if first.endswith(key) and key != first and first[: -len(key)].endswith("."):
            candidates.add(("add", first[: -len(key)]))
    best: tuple[Literal["strip", "add"], str, int] | None = None
    for how, prefix in sorted(candidates):
        if how == "strip":
            matched = sum(prefix + key in source for key in wanted)
        else:
            matched = sum(key.startswith(prefix) and key[len(prefix) :] in source for key in wanted)
        if best is None or matched > best[2]:
            best = (how, prefix, matched)
    return best if best is not None and 2 * best[2] >= len(wanted) else None


def _absent_parts_hint(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], strategy: TransferStrategy
) -> tuple[str, bool] | None:
    """What to say when the pretrained weights hold none of a copied part's tensors.

    Then the keys, not the networks, usually differ: a prefix from the program that saved them.
    Returns the sentence and whether it names such a prefix (``None`` when every copied part is
    at least partly there).
    """
    held = {part: [key for key in target if strategy.part_of(key) == part] for part in strategy.parts}
    # A part without tensors (none to copy) is not missing from the pretrained weights.
    absent = [part for part, keys in held.items() if keys and not any(key in source for key in keys)]
    if not absent:
        return None
    wanted = [key for part in absent for key in held[part]]
    found = _key_prefix(source, wanted)
    named = ", ".join(repr(part) for part in absent)
    if found is None:
        return (
            f"The pretrained weights hold no tensor of part(s) {named}; their {len(source)} key(s) are "
            f"{first_and_more(list(source), limit=3) if source else 'none'}",
            False,
        )
    how, prefix, matched = found
    if how == "strip":
        carrying = sum(key.startswith(prefix) for key in source)
        whose = "all" if carrying == len(source) else f"{carrying} of {len(source)}"
        return (
            f"{whose} pretrained keys start with {prefix!r} ({first_and_more(list(source), limit=2)}), "
            f"which the model's keys do not: without it they match {matched} of the {len(wanted)} "
            f"tensors of part(s) {named}. Strip it, e.g. "
            f"{{k.removeprefix({prefix!r}): v for k, v in state.items()}}, and pass that state dict",
            True,
        )
    return (
        f"the pretrained keys lack the prefix {prefix!r} that the model's keys of part(s) {named} have "
        f"(pretrained: {first_and_more(list(source), limit=2)}; model: {wanted[0]}): with it they match "
        f"{matched} of the {len(wanted)} tensors (a state dict of one part alone?). Add it, e.g. "
        f"{{{prefix!r} + k: v for k, v in state.items()}}, and pass that state dict",
        True,
    )


def transfer(
    pretrained: PretrainedSource,
    model: nn.Module,
    *,
    weights: str | TransferStrategy = "encoder",
    in_channels: InChannelsMode = "error",
) -> TransferReport:
    """Copy the parts named by ``weights`` from ``pretrained`` into ``model`` in place.

    Tensors outside those parts keep their current (fresh) values. Copies go into the model's own
    tensors, so device, dtype, memory format and optimizer references are preserved. Nothing is
    modified if any check fails.

    Args:
        pretrained: An ``nn.Module``, a state dict, or a path to a ``.safetensors`` file, a
            checkpoint folder or a run folder (read as
            :func:`inpaintssl.checkpoint.load_state_dict` reads it: ``~`` expanded, a checkpoint's
            ``model.safetensors`` verified against its ``COMPLETE.json``; nothing is unpickled).
            ``module.`` and ``_orig_mod.`` key prefixes from DDP and ``torch.compile`` are
            stripped. A source that records its kind (a checkpoint's ``meta.json``, an export's
            header, a loaded model's ``inference_meta``, the ``checkpoint_meta`` of the model a
            training run hands back) must be a pretraining one, not ``finetune``; weights that
            record none are taken as given.
        model: The fine-tuning network (wrappers are looked through).
        weights: A registered strategy name (``"encoder"``, ``"encoder_decoder"``) or a
            :class:`~inpaintssl.transfer_learning.strategies.TransferStrategy`.
        in_channels: What to do when the kernels that read the image differ only in their input
            channels: ``"error"`` (raise), ``"repeat"`` or ``"average"`` (see
            :func:`~inpaintssl.transfer_learning.channels.adapt_input_channels`). Those are the
            first copied kernel and every other copied kernel whose input channels change from
            exactly its old count to its new one (a residual shortcut that reads the image too).

    Returns:
        A :class:`~inpaintssl.transfer_learning.report.TransferReport`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``pretrained`` is none of the sources above, or
            ``weights`` is neither a name nor a strategy instance (a strategy class, say).
        ValueError: The model lacks a requested part; a tensor of a copied part is missing from,
            or has a different shape in, the pretrained weights; the pretrained weights hold a
            tensor of a copied part the model lacks; or ``in_channels`` is unknown. The message
            names each parameter and both shapes; when the pretrained weights hold no tensor of a
            copied part, it lists some of their keys and names a key prefix that, stripped or
            added, would make them match. Also a pretrained tensor of a copied part that holds
            NaN/Inf or is not floating point (when ``pretrained`` is in memory).
        KeyError: Unknown strategy name (with close matches).
        inpaintssl.checkpoint.CheckpointError: Unreadable checkpoint path; a pretrained
            file whose tensors of a copied part hold NaN/Inf or are not floating point (the
            message names the file and each tensor); or a fine-tuned (segmentation) run, checkpoint,
            export, loaded model or ``FinetuneResult.model`` as ``pretrained`` (its recorded kind
            is ``finetune``: its decoder and head learned from labels).

    Example:
        >>> import torch
        >>> from inpaintssl.registry import BACKBONES
        >>> pre = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
        >>> ct = BACKBONES.build("unet2d", in_channels=3, out_channels=4, depth=2, base_width=4, seed=1)
        >>> report = transfer(pre, ct, weights="encoder_decoder", in_channels="repeat")
        >>> report.adapted
        ['encoder.levels.0.0.0.weight']
        >>> torch.equal(ct.decoder.levels[0].up.weight, pre.decoder.levels[0].up.weight)
        True
    """
    check_option(in_channels, _IN_CHANNELS_MODES, field="in_channels")
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model: expected an nn.Module (the fine-tuning network to copy weights into), found "
            f"{type(model).__name__}"
        )
    strategy = _resolve_strategy(weights)
    for part in strategy.parts:
        get_part(model, part)
    source = _load_pretrained(pretrained)
    target = unwrap_model(model).state_dict()
    copied = [key for key in target if key in source and strategy.part_of(key) is not None]
    unusable = _unusable(source, target, copied)
    if unusable:
        origin = (
            f"pretrained weights {os.fspath(pretrained)}"
            if isinstance(pretrained, (str, os.PathLike))
            else "pretrained weights"
        )
        message = (
            f"{origin}: {len(unusable)} tensor(s) of the transferred parts "
            f"({', '.join(strategy.parts)}) cannot be used: "
            + first_and_more(unusable, limit=_MAX_LISTED, separator="; ")
        )
        # A file is a bad checkpoint, as with any other unreadable pretrained file.
        raise CheckpointError(message) if isinstance(pretrained, (str, os.PathLike)) else ValueError(message)
    first_kernel = _first_kernel(target, strategy)
    channels = _image_channels(source, target, first_kernel)

    # The name the run asked for (its config's transfer.weights) is the one a reader can look up;
    # a plugin class's own ``name`` may differ from the entry point it is registered under.
    label = weights if isinstance(weights, str) else strategy.name or type(strategy).__name__
    report = TransferReport(strategy=label, parts=strategy.parts)
    errors: list[str] = []
    updates: dict[str, torch.Tensor] = {}
    for key, dest in target.items():
        src = source.get(key)
        in_part = strategy.part_of(key) is not None
        if not in_part:
            report.skipped.append(key)
        if src is None:
            if in_part:
                errors.append(f"{key} {tuple(dest.shape)} is missing from the pretrained weights")
            else:
                report.missing.append(key)
            continue
        if src.shape != dest.shape:
            change = (tuple(src.shape), tuple(dest.shape))
            if not in_part:
                report.shape_mismatches.append(key)
                report.shape_changes[key] = change
                continue
            reads_the_image = _reads_the_image(src, dest, channels)
            if reads_the_image and in_channels != "error":
                src = adapt_input_channels(src, dest.shape[1], mode=in_channels)
                report.adapted.append(key)
                report.shape_changes[key] = change
            else:
                hint = (
                    "; the input channels differ: pass in_channels='repeat' or 'average' to adapt them "
                    "(transfer.in_channels in a fine-tuning config)"
                    if reads_the_image
                    else ""
                )
                errors.append(f"{key}: pretrained shape {change[0]} != model shape {change[1]}{hint}")
                continue
        if in_part:
            updates[key] = src
    extra = [k for k in source if k not in target]
    report.unexpected.extend(extra)
    errors += [
        f"{k} {tuple(source[k].shape)} is in the pretrained weights but not in the model"
        for k in extra
        if strategy.part_of(k)
    ]
    if errors:
        only_channels = all("the input channels differ" in error for error in errors)
        listed = f"{len(errors)} problem(s): " + first_and_more(errors, limit=_MAX_LISTED, separator="; ")
        absent = _absent_parts_hint(source, target, strategy)
        if absent is not None and absent[1]:
            # The keys differ by a prefix, not the networks: say so first, and not "build another model".
            explained = f"{absent[0]}. {listed}"
        else:
            explained = listed + ("" if absent is None else f". {absent[0]}")
            if not only_channels:
                explained += (
                    ". The two networks differ: build the model with the pretraining run's backbone "
                    "and model.params (depth, base_width, ...), as its config.yaml records them"
                )
        raise ValueError(
            f"cannot transfer weights={report.strategy!r} (parts: {', '.join(strategy.parts)}): {explained}"
        )
    with torch.no_grad():
        for key, src in updates.items():
            target[key].copy_(src)
            report.copied.append(key)
    return report
