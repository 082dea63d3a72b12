"""Export a trained network to ONNX, TorchScript or a plain safetensors state dict.

Every format holds the *folded* network: each weight-standardised convolution
(:class:`~inpaintssl.models.layers.WSConv2d`, paper sec. 2.3) becomes an ordinary
:class:`torch.nn.Conv2d` whose kernel is the standardised kernel the trained layer computes on
every forward pass. The folded network computes the same function with no inpaintssl code, so any
runtime that knows ``Conv2d``, ``GroupNorm``, ``MaxPool2d`` and ``ConvTranspose2d`` can run it.
Every file carries the :class:`~inpaintssl.inference.loading.ModelInfo` JSON (with
``folded=True``): in the safetensors header, in the ONNX model's ``metadata_props`` and as the
TorchScript archive's extra file ``inpaintssl.json`` (all under the key ``inpaintssl``). It holds
what a consumer needs to run the model (architecture, classes, activation and the preprocessing
fields) and no trace of where the training data lay: the run's ``data.params``, with its data
folders and case file names (often patient identifiers), stays in the run folder
(:meth:`~inpaintssl.inference.loading.ModelInfo.for_export`).

ONNX uses the ``torch.export``-based exporter (``dynamo=True``, PyTorch's default since 2.9; the
TorchScript-based ``dynamo=False`` path is deprecated). The batch, height and width axes are
dynamic and named ``batch``, ``height`` and ``width``; because the U-Net only accepts sides that
are multiples of ``2**(depth - 1)``, height and width are exported as that multiple times a free
dimension (a plain free dimension fails ``torch.export``'s check that the decoder's skip
concatenation lines up). ONNX Runtime runs any batch size and any multiple; other sizes fail
inside the graph (the PyTorch model's readable size check cannot travel into ONNX; the exported
graph ends in a multiplication by ones of the input's height and width, exact, which fails in ONNX
Runtime and in TorchScript wherever the output's differ), so crop or pad inputs to
``size_multiple`` (stored in the metadata) first. Right after writing, the file is run
in ONNX Runtime on two inputs of different batch and spatial sizes and compared with the PyTorch
model; a max absolute difference above ``atol`` (default 1e-4) raises :class:`ExportError` and
leaves no file. A loaded model is exported as it computes in eval mode (batch-norm running
statistics, no dropout) whatever mode it is in, from a copy: the model given is left as it was,
its parameters, buffers, training flag and device untouched. TorchScript is traced in eval mode
under :func:`torch.no_grad` (traced in train mode or with autograd on, ``torch.jit.trace``'s
sanity check fails) and checked the same way at 1e-5; PyTorch 2.13 deprecates ``torch.jit`` (it
warns), so prefer ONNX for new deployments. The safetensors state dict is checked in memory
(folded against unfolded) before it is written. Files are written atomically
(:mod:`inpaintssl.atomic`): a failed check leaves any earlier file as it was.
Every format is serialised in memory and written through one locked temporary beside the output
(``.<name>.<random>.tmp``), never through a library's own temporary (``safetensors`` would write a
``.tmpXXXXXX`` of its own there): an export killed mid-write leaves only that temporary, and the
next export to the same output removes it (:func:`~inpaintssl.atomic.remove_stale_temporaries`),
leaving every other file, and a concurrent export's live temporary, alone.
An existing output is replaced only when it is an earlier export (it carries the metadata above, in
any of the three formats) or empty; any other file needs ``overwrite=True``, and no output may lie
in a run's checkpoints (``<run>/checkpoints/``, where ``<run>`` holds a ``config.yaml``, a
``manifest.json`` or a complete checkpoint) or in any folder holding a checkpoint's ``COMPLETE.json``,
whatever ``overwrite`` says; a folder that is only named ``checkpoints`` is an ordinary one.

Example:
    >>> import torch
    >>> from inpaintssl.models import UNet2d, WSConv2d
    >>> net = UNet2d(in_channels=1, out_channels=2, depth=2, base_width=4, seed=0).eval()
    >>> plain = fold_weight_standardisation(net)
    >>> any(isinstance(m, WSConv2d) for m in plain.modules())
    False
    >>> x = torch.randn(1, 1, 8, 8)
    >>> bool((plain(x) - net(x)).abs().max() < 1e-5)
    True
    >>> export_model("runs/finetune", format="onnx", output="model.onnx")  # doctest: +SKIP
    PosixPath('model.onnx')
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import mmap
import numbers
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Literal, TypeVar, get_args

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.jit._trace import TracerWarning

from inpaintssl.atomic import atomic_path, remove_stale_temporaries
from inpaintssl.checkpoint import COMPLETE_MARKER, CheckpointError, save_safetensors
from inpaintssl.extras import import_optional
from inpaintssl.inference.loading import (
    HEADER_KEY,
    TORCHSCRIPT_EXTRA_FILE,
    LoadedModel,
    ModelInfo,
    backbone_class,
    is_torchscript_export,
    load_model,
    safetensors_metadata,
)
from inpaintssl.layout import RunFolder
from inpaintssl.models.layers import AutocastGroupNorm, WSConv2d
from inpaintssl.models.unet import UNet2d
from inpaintssl.options import check_option
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "DEFAULT_ATOL",
    "ExportError",
    "ExportFormat",
    "export_model",
    "fold_weight_standardisation",
    "plain_unet",
]

ExportFormat = Literal["onnx", "torchscript", "safetensors"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)

DEFAULT_ATOL: Mapping[str, float] = MappingProxyType({"onnx": 1e-4, "torchscript": 1e-5, "safetensors": 1e-5})
"""Largest max-absolute difference from the PyTorch model each format's check accepts."""

FILE_SUFFIXES: Mapping[str, str] = MappingProxyType(
    {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
)
"""Each format's usual file name ending: suggested for a folder output, warned about for another format."""

ONNX_INPUT, ONNX_OUTPUT = "image", "output"
"""Names of the ONNX graph's input ``(batch, C_in, height, width)`` and output ``(batch, C_out, ...)``."""

ModuleT = TypeVar("ModuleT", bound=nn.Module)

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """An exported file does not reproduce the PyTorch model; nothing was written."""


def _plain_conv(layer: WSConv2d) -> nn.Conv2d:
    conv = nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,  # type: ignore[arg-type]
        stride=layer.stride,  # type: ignore[arg-type]
        padding=layer.padding,  # type: ignore[arg-type]
        dilation=layer.dilation,  # type: ignore[arg-type]
        groups=layer.groups,
        bias=layer.bias is not None,
        padding_mode=layer.padding_mode,
        # Built without storage: a default init on the layer's device drew from the caller's
        # global random stream, which an export must leave where it was.
        device="meta",
        dtype=layer.weight.dtype,
    )
    with torch.no_grad():
        # Same dtype and formula as WSConv2d.forward, so the folded layer uses the very same kernel.
        kernel = layer.standardized_weight().contiguous()
        conv.weight = nn.Parameter(kernel, requires_grad=layer.weight.requires_grad)
        if layer.bias is not None:
            conv.bias = nn.Parameter(layer.bias.detach().clone())
    return conv.train(layer.training)


def _plain_norm(layer: AutocastGroupNorm) -> nn.GroupNorm:
    """The same normalisation as a plain ``nn.GroupNorm`` (the same parameters, shared)."""
    norm = nn.GroupNorm(
        layer.num_groups, layer.num_channels, eps=layer.eps, affine=layer.affine, device="meta"
    )
    norm.weight, norm.bias = layer.weight, layer.bias
    return norm.train(layer.training)


def fold_weight_standardisation(model: ModuleT, *, inplace: bool = False) -> ModuleT:
    """Fold weight standardisation: each ``WSConv2d`` becomes an ``nn.Conv2d`` with its standardised kernel.

    Weight standardisation (Qiao et al. 2019; paper sec. 2.3) re-standardises the stored kernel on
    every forward pass; folding computes it once, so the network runs anywhere ``Conv2d`` does and
    computes the same outputs (the folded kernel is the tensor the trained layer convolves with).
    Each :class:`~inpaintssl.models.AutocastGroupNorm` becomes the plain ``nn.GroupNorm`` it is
    outside autocast, so the folded network holds PyTorch's own layers only. State-dict keys stay
    the same; only the convolution weights' values change.

    Args:
        model: Any module; a :class:`~inpaintssl.inference.loading.LoadedModel` keeps its
            ``inference_meta``, with ``folded=True``.
        inplace: Fold ``model`` itself instead of a deep copy.

    Returns:
        The folded module (a deep copy unless ``inplace``).

    Example:
        >>> from inpaintssl.models import UNet2d
        >>> net = UNet2d(in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
        >>> type(fold_weight_standardisation(net).encoder.levels[0][0][0]).__name__
        'Conv2d'
        >>> type(net.encoder.levels[0][0][0]).__name__
        'WSConv2d'
    """
    folded = model if inplace else copy.deepcopy(model)
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, WSConv2d):
                setattr(parent, name, _plain_conv(child))
            elif isinstance(child, AutocastGroupNorm):
                setattr(parent, name, _plain_norm(child))
    if isinstance(folded, LoadedModel):
        folded.inference_meta = replace(folded.inference_meta, folded=True)
    return folded


def plain_unet(
    *, in_channels: int, out_channels: int, depth: int = 5, base_width: int = 32, groups: int = 16
) -> UNet2d:
    """The paper's U-Net (sec. 2.3) built with plain ``nn.Conv2d``: the architecture of exported state dicts.

    Load ``export_model(format="safetensors")`` files into it with ``load_state_dict`` (or use
    :func:`~inpaintssl.inference.loading.load_model`, which reads the architecture from the header).

    Example:
        >>> from safetensors.torch import load_file
        >>> net = plain_unet(in_channels=1, out_channels=2, depth=3, base_width=8)
        >>> net.load_state_dict(load_file("model.safetensors"))  # doctest: +SKIP
        <All keys matched successfully>
        >>> net.size_multiple
        4
    """
    net = UNet2d(
        in_channels=in_channels,
        out_channels=out_channels,
        depth=depth,
        base_width=base_width,
        groups=groups,
        seed=0,
    )
    return fold_weight_standardisation(net, inplace=True)


ONNX_MIN_TORCH = "2.11"
"""The first PyTorch whose ``torch.export``-based ONNX exporter has ``ONNXProgram.rename_axes``."""


def _require_onnx() -> tuple[ModuleType, ModuleType]:
    # Optional extra: imported only when ONNX is asked for. torch's exporter needs onnxscript.
    onnx, _, onnxruntime = (
        import_optional(name, extra="onnx", purpose='export_model(format="onnx")')
        for name in ("onnx", "onnxscript", "onnxruntime")
    )
    # The package supports PyTorch 2.3 on, whose ONNXProgram (if any) cannot name the dynamic axes:
    # the export failed after tracing with an AttributeError naming nothing the user can change.
    if not hasattr(getattr(torch.onnx, "ONNXProgram", None), "rename_axes"):
        raise ImportError(
            f'export_model(format="onnx") needs PyTorch {ONNX_MIN_TORCH} or newer (its torch.export-based '
            f"exporter names the batch, height and width axes); found torch {torch.__version__}. "
            'Upgrade PyTorch, or export with format="torchscript" or "safetensors", which work on this one'
        )
    return onnx, onnxruntime


class _SameSizeOutput(nn.Module):
    """The network, with its output's height and width tied to the input's inside the graph.

    A traced or exported graph drops the network's Python size check. A U-Net whose decoder joins
    only maps of one resolution (MONAI's ``UNet`` with every stride after the first 1) then ran an
    input of a side that is no multiple of ``size_multiple`` and returned an output of another
    size, offset from it. Multiplying by ones of the input's size is exact (x * 1.0 == x) and fails
    in any runtime where the two sizes differ.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.net(image)
        return output * torch.ones_like(image[:, :1])


def _plain_copy(model: LoadedModel) -> nn.Module:
    """A folded copy of a CPU model whose class is the backbone's own (what exporters and tracers see)."""
    plain: nn.Module = fold_weight_standardisation(model)
    plain.__class__ = backbone_class(type(plain))
    plain.__dict__.pop("inference_meta", None)
    return plain.eval()


def _samples(
    info: ModelInfo, example: torch.Tensor | npt.ArrayLike | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The trace input and a second check input with other batch and spatial sizes."""
    multiple = info.size_multiple
    # At least 32 pixels a side and at least 2 blocks, so no dimension is 0/1-specialised by torch.export.
    blocks = max(2, math.ceil(32 / multiple))
    generator = torch.Generator().manual_seed(0)
    if example is not None and not isinstance(example, torch.Tensor):
        # Real slices are often a NumPy array (nibabel's): taken as the tensor it holds.
        try:
            example = torch.as_tensor(np.asarray(example, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"example must be a tensor or an array of numbers (N, C, H, W); found a "
                f"{type(example).__name__}: {exc}"
            ) from None
    if example is None:
        example = torch.randn(2, info.in_channels, blocks * multiple, blocks * multiple, generator=generator)
    elif example.ndim != 4 or example.shape[1] != info.in_channels or min(example.shape) < 1:
        # An empty batch failed in the output check, as max() of an empty tensor.
        raise ValueError(
            f"example must have shape (N, {info.in_channels}, H, W) for this model, N, H and W at "
            f"least 1; found {tuple(example.shape)}"
        )
    elif example.shape[2] % multiple or example.shape[3] % multiple:
        # Caught here to name the argument: the network's own size check names neither it nor export.
        sides = tuple(int(s) for s in example.shape[-2:])
        fitted = tuple(-(-s // multiple) * multiple for s in sides)
        raise ValueError(
            f"example has H x W = {sides[0]} x {sides[1]}; expected multiples of the model's "
            f"size_multiple={multiple}: crop or pad it, e.g. to {fitted[0]} x {fitted[1]}"
        )
    example = example.detach().to("cpu", torch.float32)
    # torch.export specialises a side of a single block to that size: tile such a side to two blocks.
    example = example.repeat(
        1, 1, 2 if example.shape[2] < 2 * multiple else 1, 2 if example.shape[3] < 2 * multiple else 1
    )
    height, width = (int(s) for s in example.shape[-2:])
    other = torch.randn(
        int(example.shape[0]) + 1,
        info.in_channels,
        height + multiple,
        width + 2 * multiple,
        generator=generator,
    )
    return example, other


def _max_diff(found: torch.Tensor | np.ndarray, expected: torch.Tensor) -> float:
    return float((torch.as_tensor(np.asarray(found)) - expected).abs().max())


@dataclass(frozen=True)
class _Reference:
    """The PyTorch model's outputs on the samples: what every exported form must reproduce."""

    samples: tuple[torch.Tensor, torch.Tensor]
    expected: list[torch.Tensor]
    output: Path

    def check(self, name: str, run: Callable[[torch.Tensor], torch.Tensor | np.ndarray], atol: float) -> None:
        """Raise :class:`ExportError` (nothing written) when ``run`` differs by more than ``atol``."""
        with torch.no_grad():
            diffs = [
                (tuple(x.shape), _max_diff(run(x), e), float(e.abs().max()))
                for x, e in zip(self.samples, self.expected)
            ]
        worst = max(diffs, key=lambda item: item[1])
        if not worst[1] <= atol:
            raise ExportError(
                f"{self.output}: the {name} model differs from the PyTorch model by max |diff| = "
                f"{worst[1]:.3g} on an input of shape {worst[0]} (expected <= atol={atol:g}); "
                f"nothing was written{_rounding_hint(worst[1], worst[2], atol)}"
            )


def _rounding_hint(diff: float, scale: float, atol: float) -> str:
    """Why a difference within ``atol`` of the outputs' own magnitude is float32 rounding, not a bad export.

    ``atol`` is absolute: a network whose outputs reach thousands (BatchNorm running statistics
    after a few steps, as in a smoke-test run of ``smp_unet``) differs from any other float32
    runtime by more than 1e-4 in its last bits alone, and the bare message would read as a broken export.
    """
    if not (math.isfinite(diff) and math.isfinite(scale) and scale > 1 and diff <= atol * scale):
        return ""
    suggested = 10 ** math.ceil(math.log10(diff))
    return (
        f". The outputs reach |y| = {scale:.3g} on that input, so this is {diff / scale:.2g} of their "
        "magnitude: float32 rounding, which an absolute atol does not allow for at that scale (a "
        f"barely trained network can have such outputs); to accept it, pass atol={suggested:g} "
        "(inpaintssl export --atol)"
    )


def _eval_copy_on_the_cpu(model: LoadedModel) -> LoadedModel:
    """A copy of the caller's ``model`` on the CPU in eval mode: what is exported, and checked against.

    The caller's model is never run nor changed (its parameters, buffers, training flag, device and
    dtype stay as they were). Run in train mode, a batch-norm layer normalises with the batch's own
    statistics and moves its running statistics towards them: the export's reference would then
    come from another function than the one exported, and the caller's model would keep the moved
    statistics, so a retry in eval mode exported weights the run never had, without a word.

    On the CPU whatever device the model was loaded on: cuDNN's convolutions run in TF32 by default
    (about 1e-2 off float32 for the paper's U-Net), far outside an export's tolerance, and weight
    standardisation folded on a GPU differs from the CPU's in the last bits, so one run would
    otherwise export different files from different devices.

    In float32 whatever dtype the model was cast to (``.half()`` for GPU inference, say): every
    exported form takes float32 ``(N, C, H, W)`` images, and the checks run float32 samples.
    """
    return copy.deepcopy(model).to("cpu", torch.float32).eval()


def _reference(model: LoadedModel, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The model's float32 outputs, where every exported form is checked (an eval-mode CPU copy's,
    see :func:`_eval_copy_on_the_cpu`)."""
    with torch.no_grad():
        return [model(x).float() for x in inputs]


def _export_safetensors(plain: nn.Module, info: ModelInfo, output: Path) -> None:
    save_safetensors(output, plain.state_dict(), metadata={HEADER_KEY: info.to_json(), "format": "pt"})


def _export_torchscript(plain: nn.Module, info: ModelInfo, reference: _Reference, atol: float) -> None:
    samples = reference.samples
    with torch.no_grad(), warnings.catch_warnings():
        # The backbone's Python size checks are constants in a trace; the graph itself is shape-generic
        # (the second sample, of other sizes, checks that below).
        warnings.filterwarnings("ignore", category=TracerWarning)
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            plain, samples[0], check_inputs=[(samples[1],)]
        )
    extra = {TORCHSCRIPT_EXTRA_FILE: info.to_json()}
    # Into memory, then into the locked temporary: torch.jit.save to a path puts a new file in its
    # place, which the temporary's lock (inpaintssl.atomic) would not cover.
    archive = io.BytesIO()
    torch.jit.save(traced, archive, _extra_files=extra)
    with atomic_path(reference.output) as tmp:
        tmp.write_bytes(archive.getvalue())
        reloaded = torch.jit.load(str(tmp), map_location="cpu")  # type: ignore[no-untyped-call]
        reference.check("TorchScript", reloaded, atol)


# Where torch.onnx says, at every export without torchvision installed, that it skips
# torchvision's detection operators (nms, roi_align, ...), which no backbone here uses.
_TORCHVISION_NOTICE_LOGGER = "torch.onnx._internal.exporter._registration"


# Where torch.onnx and onnxscript narrate a conversion to an older opset, failed ones with a whole
# traceback; the export checks the opset written and says itself what went wrong.
_OPSET_CONVERSION_LOGGERS = ("torch.onnx._internal.exporter._compat", "onnxscript.version_converter")


@contextmanager
def _quiet_logger(name: str, *, level: int = logging.ERROR) -> Iterator[None]:
    """Raise logger ``name`` to ``level`` for the duration (its messages are not the caller's concern)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def _export_onnx(
    plain: nn.Module, info: ModelInfo, reference: _Reference, atol: float, opset: int | None
) -> None:
    samples = reference.samples
    _, onnxruntime = _require_onnx()
    dim = torch.export.Dim
    multiple = info.size_multiple
    # torch.export must see H and W as multiples of 2**(depth-1), or it cannot prove that the
    # decoder's skip concatenations line up (see the module docstring).
    height = dim("height") if multiple == 1 else multiple * dim("height_blocks")
    width = dim("width") if multiple == 1 else multiple * dim("width_blocks")
    shapes = ({0: dim("batch"), 2: height, 3: width},)
    with contextlib.ExitStack() as quiet:
        quiet.enter_context(warnings.catch_warnings())
        quiet.enter_context(_quiet_logger(_TORCHVISION_NOTICE_LOGGER))
        for name in _OPSET_CONVERSION_LOGGERS:
            quiet.enter_context(_quiet_logger(name, level=logging.CRITICAL + 1))
        # PyTorch-internal deprecation noise of torch.export (pytree LeafSpec); nothing a caller can act on.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
        program: Any = torch.onnx.export(
            plain,
            (samples[0],),
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            opset_version=opset,
            verbose=False,
        )
    dims = program.model.graph.inputs[0].shape
    program.rename_axes({dims[0]: "batch", dims[2]: "height", dims[3]: "width"})
    program.model.metadata_props[HEADER_KEY] = info.to_json()
    proto: Any = program.model_proto
    written = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and written != opset:
        # The exporter falls back to its own opset when it cannot convert to the one asked for;
        # a runtime that needs the older opset would then refuse the file.
        raise ExportError(
            f"{reference.output}: opset={opset} was asked for, but the exporter could convert this network "
            f"only to opset {written}; expected an opset it supports for it (e.g. {written}, or leave "
            "opset unset for the exporter's default)"
        )
    payload: bytes = proto.SerializeToString()
    with atomic_path(reference.output) as tmp:
        tmp.write_bytes(payload)
        try:
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types (InvalidGraph, Fail, ...)
            raise ExportError(
                f"{reference.output}: ONNX Runtime cannot load the exported model (opset {written}): "
                f"{type(exc).__name__}: {exc}; expected an opset this onnxruntime supports"
            ) from exc
        reference.check("ONNX Runtime", lambda x: session.run(None, {ONNX_INPUT: x.numpy()})[0], atol)


_ONNX_METADATA_ENTRY = b"\x0a" + bytes([len(HEADER_KEY)]) + HEADER_KEY.encode() + b"\x12"
"""How an ONNX file stores the ``metadata_props`` entry keyed :data:`HEADER_KEY`: the protobuf
string ``key`` (field 1) followed by the tag of its ``value`` (field 2)."""

_CHECKPOINT_NAMES = ("best", "last", "best.old", "last.old")
"""The checkpoint folders in a run's ``checkpoints/``: ``best``, ``last``, and the ``.old`` twin of
each, where :func:`~inpaintssl.checkpoint.save_checkpoint` parks the previous checkpoint while it
swaps the new one in."""


def _is_run_folder(root: Path) -> bool:
    """Whether ``root`` is a run folder: it holds a run's record or a complete checkpoint in ``checkpoints/``.

    A folder merely *named* ``checkpoints`` (``~/checkpoints/onnx/``) makes no run: training writes
    ``config.yaml`` first, and a run copied without its record still has its sealed checkpoints.
    """
    run = RunFolder(root)
    if run.config.is_file() or run.manifest.is_file():
        return True
    return any((run.checkpoints / name / COMPLETE_MARKER).is_file() for name in _CHECKPOINT_NAMES)


def _checkpoints_holding(path: Path) -> tuple[Path, str] | None:
    """The checkpoint folder, or run's ``checkpoints/`` folder, that the file ``path`` would lie in.

    Returns:
        That folder and what it is, or ``None`` when ``path`` lies in no checkpoint.
    """
    folder = path.parent
    if (folder / COMPLETE_MARKER).is_file():
        return folder, "a checkpoint folder"  # a checkpoint anywhere, e.g. one copied out of its run
    for above in (folder, *folder.parents):
        if above.name == RunFolder.CHECKPOINTS and _is_run_folder(above.parent):
            if folder.parent == above and folder.name in _CHECKPOINT_NAMES:
                return folder, "a checkpoint folder"
            return above, "the checkpoints folder of a run"
    return None


def _check_not_a_checkpoint(destination: Path, source: Path | None) -> None:
    """Refuse an output inside a run's checkpoints, or over the file the model was loaded from.

    Refused, whatever ``overwrite`` says: anything under ``<run>/checkpoints/`` (its ``best`` and
    ``last`` folders, their ``.old`` twins, the folder itself) where ``<run>`` is a run folder
    (:func:`_is_run_folder`), anything in a folder holding a checkpoint's ``COMPLETE.json``, anything
    in the checkpoints ``source`` came from, and ``source`` itself when it is a file. Each would
    replace or add to a checkpoint's files, and a checkpoint whose checksums no longer match cannot
    be loaded or resumed. Symbolic links are followed. A folder only *named* ``checkpoints``, in no
    run, is an ordinary folder.
    """
    target = destination.resolve()
    found: tuple[Path, str] | None = None
    if source is not None:
        source = source.resolve()
        if source.is_file() and target == source:
            raise ValueError(
                f"output={str(destination)!r} is {source}, the weights the model is exported from; writing "
                "there would replace them; expected another path"
            )
        # The whole checkpoints/ folder of the source's run, or the source folder outside a run.
        own = source.parent if source.is_dir() and source.parent.name == RunFolder.CHECKPOINTS else source
        if source.is_dir() and own in target.parents:
            found = own, "the checkpoints the model is exported from"
    found = found or _checkpoints_holding(destination) or _checkpoints_holding(target)
    if found is not None:
        folder, what = found
        raise ValueError(
            f"output={str(destination)!r} lies in {folder}, {what}; writing there would replace or add to "
            f"a checkpoint's files and break its checksums ({COMPLETE_MARKER}), so that run could no longer "
            f"be loaded or resumed; expected a path outside every run's {RunFolder.CHECKPOINTS}/ folder "
            "(overwrite=True does not apply to checkpoints)"
        )


def _holds_bytes(path: Path, pattern: bytes) -> bool:
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(pattern) != -1


def _not_an_export(path: Path) -> str | None:
    """What the existing file ``path`` is, unless it is empty or an earlier export (then ``None``).

    An export carries :data:`HEADER_KEY` in every format: the TorchScript archive as an extra file,
    the safetensors header as an entry, the ONNX model as a ``metadata_props`` entry.
    """
    size = path.stat().st_size
    if size == 0:
        return None  # nothing to lose
    if zipfile.is_zipfile(path):
        if is_torchscript_export(path):
            return None
        extra = TORCHSCRIPT_EXTRA_FILE
        return f"a zip archive, e.g. a PyTorch file, without the TorchScript extra file {extra!r}"
    try:
        header = safetensors_metadata(path)
    except CheckpointError:
        pass  # not safetensors: perhaps ONNX
    else:
        if HEADER_KEY in header:
            return None
        return f"a safetensors file without an {HEADER_KEY!r} header entry, e.g. a checkpoint's weights"
    if _holds_bytes(path, _ONNX_METADATA_ENTRY):
        return None
    return f"a {size}-byte file without inpaintssl's model metadata"


def _check_replaceable(destination: Path, *, overwrite: bool) -> None:
    """Refuse to replace an existing file that no export wrote, unless ``overwrite``."""
    if overwrite or not destination.exists():
        return
    found = _not_an_export(destination)
    if found is not None:
        raise FileExistsError(
            f"output={str(destination)!r} already exists and is not an earlier inpaintssl export (found "
            f"{found}); it would be replaced and lost; expected a new path or an earlier export to "
            "replace, or overwrite=True (inpaintssl export --overwrite) to replace it"
        )


def export_model(
    run_or_checkpoint: str | Path | LoadedModel,
    *,
    format: ExportFormat,
    output: str | Path,
    opset: int | None = None,
    which: Literal["best", "last"] | None = None,
    example: torch.Tensor | npt.ArrayLike | None = None,
    atol: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a trained network, weight standardisation folded in, as ONNX, TorchScript or safetensors.

    Args:
        run_or_checkpoint: A run folder, checkpoint folder, ``.safetensors`` file (anything
            :func:`~inpaintssl.inference.loading.load_model` reads) or a model it loaded (a bare
            ``nn.Module`` lacks the metadata every export records). A model is exported as it
            computes in eval mode, whatever mode it is in, and is left as it was (an export
            works on a copy).
        format: ``onnx`` (dynamic ``batch``/``height``/``width``; needs the ``onnx`` extra),
            ``torchscript`` (traced; ``torch.jit.load`` runs it without inpaintssl) or
            ``safetensors`` (the plain-convolution state dict, for :func:`plain_unet`).
        output: The file to write (its folder is created; a suffix of another format gets a
            warning). An existing file is replaced atomically when it is an earlier export (it
            carries inpaintssl's metadata, in any format) or empty; any other file is refused
            unless ``overwrite``. A path inside any run's checkpoints is refused whatever
            ``overwrite`` says. Temporaries that an earlier export to it left when it was killed
            (``.<name>.<random>.tmp`` beside it, unlocked) are removed before it is written.
        opset: ONNX opset version, a whole number >= 1 (an ``int``; ``17.0`` or ``"17"`` is
            refused, not converted); default the exporter's, 20 with PyTorch 2.13. ONNX only.
        which: For a run folder: the ``best`` (default) or ``last`` checkpoint; an error for
            anything else, as in :func:`~inpaintssl.inference.loading.load_model`.
        example: An input ``(N, C_in, H, W)`` (e.g. real slices; a tensor, or a NumPy array or
            other array-like of numbers, read as float32) to trace and check with, ``H`` and ``W``
            multiples of ``size_multiple`` (a side of a single block is tiled to two, since
            ``torch.export`` would fix it); default seeded standard-normal noise (inputs are
            z-scored) of at least 32x32 pixels.
        atol: A non-negative number (not a bool or a string): the largest max-absolute difference
            from the PyTorch model the checks accept, that of the folded network (the whole check
            of a safetensors export) and that of the exported file (default
            :data:`DEFAULT_ATOL`: 1e-4 for ONNX, 1e-5 otherwise).
        overwrite: Replace an existing ``output`` that is not an earlier export (a file of another
            origin, such as weights without inpaintssl's metadata); it is still written atomically.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: Unknown ``format``, an ``opset`` that is not a whole number >= 1 or is given
            for a non-ONNX format, a folder as ``output``, an ``output`` inside a run's checkpoints
            or over the file the model is loaded from, an ``atol`` that is not a non-negative
            number, or an ``example`` of the wrong shape.
        TypeError: An ``example`` that is neither a tensor nor an array of numbers, or an
            ``output`` that is no path.
        FileExistsError: ``output`` exists and is not an earlier export, and ``overwrite`` is false.
        ImportError: ``format="onnx"`` without onnx/onnxscript/onnxruntime
            (``pip install "inpaintssl[onnx]"``).
        ExportError: The exported model does not reproduce the PyTorch model within ``atol``.
        inpaintssl.checkpoint.CheckpointError: The model could not be loaded.

    Example:
        >>> export_model("runs/finetune", format="torchscript", output="model.pt")  # doctest: +SKIP
        PosixPath('model.pt')
        >>> torch.jit.load("model.pt")(torch.zeros(1, 1, 112, 112)).shape          # doctest: +SKIP
        torch.Size([1, 3, 112, 112])
    """
    check_option(format, FORMATS, field="format")
    whole = isinstance(opset, int | np.integer) and not isinstance(opset, bool)
    if opset is not None and (not whole or opset < 1):
        # Checked before the exporter sees it: "17" failed comparing with an int, and 17.0 was
        # reported as an opset the exporter could not convert to.
        raise ValueError(
            f"opset={opset!r} is invalid; expected an ONNX opset version, a whole number >= 1 such as 18"
        )
    if opset is not None and format != "onnx":
        raise ValueError(f"opset={opset} applies to format='onnx' only; found format={format!r}")
    if not isinstance(output, str) and not hasattr(type(output), "__fspath__"):
        # None failed in pathlib, "expected str, bytes or os.PathLike object", naming no argument.
        raise TypeError(
            f"output: expected a file or folder path (str or os.PathLike); found {type(output).__name__}"
        )
    destination = Path(output).expanduser()
    # Path() drops a trailing separator, so "exports/" would otherwise become a file named exports.
    if destination.is_dir() or str(output).endswith(("/", os.sep)):
        raise ValueError(
            f"output={str(output)!r} is a folder; expected a file path such as "
            f"{str(destination / ('model' + FILE_SUFFIXES[format]))!r}"
        )
    if atol is not None and (isinstance(atol, bool) or not isinstance(atol, numbers.Real) or not atol >= 0):
        raise ValueError(f"atol={atol!r} is invalid; expected a non-negative number")
    if format == "onnx":
        _require_onnx()  # fail before loading or tracing anything
    if isinstance(run_or_checkpoint, LoadedModel):
        if which is not None:
            raise ValueError(
                f"which={which!r} picks a checkpoint of a run folder; run_or_checkpoint is a model "
                "already loaded, so leave which out (or pass the run folder)"
            )
        model = _eval_copy_on_the_cpu(run_or_checkpoint)
    elif isinstance(run_or_checkpoint, nn.Module):
        # A bare network lacks what every export records (classes, activation, preprocessing).
        raise TypeError(
            f"run_or_checkpoint is a {type(run_or_checkpoint).__name__} without inpaintssl's metadata; "
            "expected a run folder, a checkpoint or a model from inpaintssl.load_model"
        )
    else:
        model = load_model(run_or_checkpoint, which=which, device="cpu")  # in eval mode, and this call's own
    _check_not_a_checkpoint(destination, model.inference_meta.source)
    _check_replaceable(destination, overwrite=overwrite)
    other = {suffix: f for f, suffix in FILE_SUFFIXES.items()}.get(destination.suffix.lower(), format)
    if other != format:
        warn_each_time(
            f"output {destination} has the suffix of {other} files; it is written as {format}", UserWarning
        )
    info = model.inference_meta.for_export()
    tolerance = DEFAULT_ATOL[format] if atol is None else float(atol)
    samples = _samples(info, example)
    reference = _Reference(samples, _reference(model, samples), destination)
    plain = _plain_copy(model)
    # Against the unfolded model's outputs, as every later check: atol bounds the whole difference,
    # and for safetensors this is the only check there is.
    reference.check("folded PyTorch", plain, tolerance)
    # Only now, with the output known to be one this export may write: what an earlier export to it
    # left when it was killed (locked temporaries of a live one stay).
    for path in remove_stale_temporaries(destination):
        log.info("removed %s, left by an interrupted export", path)
    if format == "safetensors":
        _export_safetensors(plain, info, destination)
    elif format == "torchscript":
        _export_torchscript(_SameSizeOutput(plain), info, reference, tolerance)
    else:
        _export_onnx(_SameSizeOutput(plain), info, reference, tolerance, opset)
    return destination
