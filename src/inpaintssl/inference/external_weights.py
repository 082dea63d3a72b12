"""A model trained here, in the key layouts of the libraries its backbone came from.

A network pretrained with inpainting is most useful where its users already work: an encoder
pretrained on unlabelled scans here loads with ``load_state_dict`` into a fresh
segmentation_models_pytorch model (the self-supervised encoder weights smp users ask for in its
issues #702 and #787), and a MONAI ``BasicUNet`` or ``UNet`` trained here loads into MONAI's own
class. The wrappers in :mod:`inpaintssl.models.external` keep the third-party modules intact under
``encoder`` / ``decoder`` / ``head``, so these maps only drop or rename the first levels of the keys.

Example:
    >>> import torch
    >>> smp_encoder_state_dict({"encoder.conv1.weight": torch.zeros(1), "head.0.bias": torch.zeros(1)})
    {'conv1.weight': tensor([0.])}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn

from inpaintssl.atomic import atomic_write_with
from inpaintssl.checkpoint import (
    contiguous_cpu,
    load_resolved_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
    save_safetensors,
)
from inpaintssl.inference.loading import HEADER_KEY, ModelInfo, safetensors_metadata
from inpaintssl.models.external.monai_resunet import MonaiUNet
from inpaintssl.models.external.monai_unet import HEAD_LAYER, MonaiBasicUNet
from inpaintssl.models.unet import UNet2d
from inpaintssl.transfer_learning.network_parts import carried_record, get_part, unwrap_model
from inpaintssl.transfer_learning.transfer import strip_wrapper_prefixes

__all__ = [
    "EncoderSource",
    "basic_unet_state_dict",
    "monai_unet_state_dict",
    "save_smp_encoder",
    "smp_encoder_state_dict",
]

EncoderSource = nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike[str]

_NOT_SMP: Mapping[type[nn.Module], str] = MappingProxyType(
    {UNet2d: "unet2d", MonaiBasicUNet: "monai_basic_unet", MonaiUNet: "monai_unet"}
)
"""The built-in backbones whose encoders are not smp's, by class, with their registered names."""


def _not_a_module(model: object) -> str:
    """What to add when a path was given where a module is expected: how to get the module."""
    if isinstance(model, (str, os.PathLike)):
        return "; for a run folder or checkpoint, pass inpaintssl.load_model(path)"
    return ""


def basic_unet_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of a ``MonaiBasicUNet`` backbone in MONAI's own ``BasicUNet`` key layout.

    ``monai.networks.nets.BasicUNet(spatial_dims=2, ...)`` with the same settings loads the result
    with ``strict=True`` and computes the same outputs.

    Args:
        model: A :class:`~inpaintssl.models.external.MonaiBasicUNet`, possibly inside a DDP,
            DataParallel or compiled wrapper.

    Returns:
        Detached tensors keyed ``conv_0.*``, ``down_1.*`` ... ``upcat_1.*``, ``final_conv.*``.

    Raises:
        TypeError: If ``model`` is not a :class:`~inpaintssl.models.external.MonaiBasicUNet`.

    Example:
        >>> net = MonaiBasicUNet(in_channels=1, out_channels=1, features=(2, 2, 2, 2, 2, 2), seed=0)
        >>> sorted({key.split(".")[0] for key in basic_unet_state_dict(net)})[:3]
        ['conv_0', 'down_1', 'down_2']
    """
    inner = unwrap_model(model) if isinstance(model, nn.Module) else model
    if not isinstance(inner, MonaiBasicUNet):
        raise TypeError(
            f"model: expected a MonaiBasicUNet; found {type(inner).__name__}{_not_a_module(model)}"
        )
    state: dict[str, torch.Tensor] = {}
    for part in ("encoder", "decoder"):
        for key, tensor in getattr(inner, part).state_dict().items():
            state[key] = tensor.detach()
    for key, tensor in inner.head.state_dict().items():
        state[f"{HEAD_LAYER}.{key}"] = tensor.detach()
    return state


def monai_unet_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of a ``MonaiUNet`` backbone in MONAI's own ``UNet`` key layout.

    ``monai.networks.nets.UNet(spatial_dims=2, ...)`` with the same settings loads the result with
    ``strict=True`` and computes the same outputs: the blocks go back into MONAI's recursive
    nesting (``model.0.*`` for ``encoder.down_0``, ``model.1.submodule.0.*`` for
    ``encoder.down_1`` ... ``model.2.*`` for the head; see
    :meth:`~inpaintssl.models.external.MonaiUNet.monai_key_prefixes`).

    Args:
        model: A :class:`~inpaintssl.models.external.MonaiUNet`, possibly inside a DDP,
            DataParallel or compiled wrapper.

    Returns:
        Detached tensors keyed as in ``UNet(...).state_dict()``.

    Raises:
        TypeError: If ``model`` is not a :class:`~inpaintssl.models.external.MonaiUNet`.

    Example:
        >>> from inpaintssl.models.external import MonaiUNet
        >>> net = MonaiUNet(in_channels=1, out_channels=1, channels=(2, 2), strides=(2,), num_res_units=0)
        >>> list(monai_unet_state_dict(net))[::3]  # down_0, bottom, head
        ['model.0.conv.weight', 'model.1.submodule.conv.weight', 'model.2.conv.weight']
    """
    inner = unwrap_model(model) if isinstance(model, nn.Module) else model
    if not isinstance(inner, MonaiUNet):
        raise TypeError(f"model: expected a MonaiUNet; found {type(inner).__name__}{_not_a_module(model)}")
    state: dict[str, torch.Tensor] = {}
    for ours, theirs in inner.monai_key_prefixes().items():
        for key, tensor in inner.get_submodule(ours).state_dict().items():
            state[f"{theirs}.{key}"] = tensor.detach()
    return state


def smp_encoder_state_dict(source: EncoderSource) -> dict[str, torch.Tensor]:
    """The encoder weights in smp's own key layout, ready for ``smp_model.encoder.load_state_dict``.

    Args:
        source: A model with an ``encoder`` part (an
            :class:`~inpaintssl.models.external.SmpUNet`, an smp model, or either inside a DDP,
            DataParallel or compiled wrapper); a full state dict with ``encoder.*`` keys; or a run
            folder, checkpoint folder or weight file of an
            ``smp_unet`` run (read without unpickling).

    Returns:
        Detached CPU tensors keyed as in ``smp.<Arch>(encoder_name, ...).encoder.state_dict()``.

    Raises:
        ValueError: If the source has no encoder weights, or is a run (or loaded model, or the
            model a training run handed back) of another backbone than ``smp_unet``, or a
            built-in network of another backbone (:class:`~inpaintssl.models.UNet2d`,
            :class:`~inpaintssl.models.external.MonaiBasicUNet`,
            :class:`~inpaintssl.models.external.MonaiUNet`).

    Example:
        >>> import torch
        >>> smp_encoder_state_dict({"encoder.conv1.weight": torch.zeros(1), "head.0.bias": torch.zeros(1)})
        {'conv1.weight': tensor([0.])}
    """
    if isinstance(source, nn.Module):
        carried = carried_record(source)
        backbone = None if carried is None else getattr(carried[0], "backbone", None)
        _check_smp_run(backbone if isinstance(backbone, str) else None, where="model")
        _check_smp_class(source)
        state: Mapping[str, torch.Tensor] = get_part(source, "encoder").state_dict()
    else:
        if isinstance(source, (str, os.PathLike)):
            target = resolve_checkpoint(Path(source))
            full, meta = load_resolved_checkpoint(target)
            _check_smp_run(meta.backbone if meta is not None else _file_backbone(target), where=str(source))
        else:
            full = dict(source)
        prefix = "encoder."
        state = {
            key[len(prefix) :]: value
            for key, value in strip_wrapper_prefixes(full).items()
            if key.startswith(prefix)
        }
        if not state:
            raise ValueError(
                f"no encoder weights found: expected keys starting with {prefix!r}; "
                f"found e.g. {sorted(full)[:3]}"
            )
    return {key: value.detach().to("cpu") for key, value in state.items()}


def _file_backbone(target: Path) -> str | None:
    """The backbone a weight file records: a checkpoint's ``model.safetensors`` in the ``meta.json``
    beside it, an :func:`~inpaintssl.inference.export.export_model` file in its header; plain
    weights record none."""
    beside = target.with_name("meta.json")
    if target.name == "model.safetensors" and beside.is_file():
        return read_checkpoint_meta(beside).backbone
    if target.suffix.lower() != ".safetensors":
        return None
    header = safetensors_metadata(target).get(HEADER_KEY)
    return None if header is None else ModelInfo.from_json(header, source=target).backbone


def _check_smp_run(backbone: str | None, *, where: str) -> None:
    # Another backbone's encoder keys would be written in smp's layout without a word (and, for
    # unet2d, as raw kernels before weight standardisation); smp would refuse them only later.
    if backbone is not None and backbone != "smp_unet":
        raise ValueError(
            f"{where} is a {backbone!r} network; expected an 'smp_unet' run, whose encoder has smp's "
            "architecture and key layout"
        )


def _check_smp_class(model: nn.Module) -> None:
    # A bare module records no backbone, but a built-in network of another is known by its class.
    inner = unwrap_model(model)
    name = next((name for cls, name in _NOT_SMP.items() if isinstance(inner, cls)), None)
    if name is not None:
        raise ValueError(
            f"model is a {type(inner).__name__} (the {name!r} backbone); expected an 'smp_unet' "
            "network (SmpUNet) or an smp model, whose encoder has smp's architecture and key layout"
        )


def save_smp_encoder(source: EncoderSource, path: str | os.PathLike[str]) -> Path:
    """Write the encoder weights in smp's key layout (see :func:`smp_encoder_state_dict`).

    A ``.safetensors`` path (in any letter case) gets a safetensors file (load it with
    ``safetensors.torch.load_file``); any other suffix gets a plain ``torch.save`` dict of tensors
    that ``torch.load(path, weights_only=True)`` reads. The write is atomic.

    Args:
        source: As for :func:`smp_encoder_state_dict`.
        path: Output file.

    Returns:
        The written path.

    Example:
        >>> import tempfile, torch
        >>> from safetensors.torch import load_file
        >>> path = tempfile.mkdtemp() + "/encoder.safetensors"
        >>> load_file(save_smp_encoder({"encoder.conv1.weight": torch.ones(2)}, path))
        {'conv1.weight': tensor([1., 1.])}
    """
    tensors = contiguous_cpu(smp_encoder_state_dict(source))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".safetensors":
        save_safetensors(target, tensors, metadata={"format": "pt"})
    else:
        atomic_write_with(target, lambda tmp: torch.save(tensors, tmp))
    return target
