"""Load a trained network for inference: the module, in eval mode, with what it is and how to feed it.

:func:`load_model` accepts a run folder (``checkpoints/best`` or ``checkpoints/last`` inside it),
a checkpoint folder, a checkpoint's ``model.safetensors`` or a ``.safetensors`` file written by
:func:`inpaintssl.inference.export.export_model`. Nothing is unpickled: weights are read with
:mod:`safetensors` and metadata is validated JSON (:mod:`inpaintssl.checkpoint`).

The module returned *is* the trained backbone (an ``nn.Module`` whose state-dict keys are those of
the checkpoint), made an instance of :class:`LoadedModel` so that it also carries
``inference_meta`` (a :class:`ModelInfo`: kind, architecture, classes, output activation and the
run's :class:`Preprocessing`) and :meth:`LoadedModel.predict_onehot`, the hard prediction of the
run's loss (sigmoid heads threshold at 0.5; softmax heads take the arg-max, background first).

Preprocessing is read from the run folder's ``config.yaml`` (paper sec. 2.2: MRI z-scored per
volume, CT as three HU windows z-scored per channel, slices fitted to ``data.image_size``); a
checkpoint outside a run folder has none (``None``), unless it is an exported file that stored it.

Example:
    >>> import torch
    >>> import inpaintssl as issl
    >>> model = issl.load_model("runs/finetune")                 # doctest: +SKIP
    >>> model.inference_meta.class_names                         # doctest: +SKIP
    ('csf', 'gm', 'wm')
    >>> with torch.no_grad():                                    # doctest: +SKIP
    ...     onehot = model.predict_onehot(model(images))
    >>> info = ModelInfo(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2,
    ...                  class_names=("disc", "square"), activation="sigmoid")
    >>> ModelInfo.from_json(info.to_json()) == info
    True
"""

from __future__ import annotations

import functools
import inspect
import json
import zipfile
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, cast

import torch
import yaml
from pydantic import TypeAdapter, ValidationError
from safetensors import SafetensorError, safe_open
from torch import nn

from inpaintssl.checkpoint import (
    COMPLETE_MARKER,
    CheckpointError,
    CheckpointMeta,
    load_resolved_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from inpaintssl.config import DataConfig, quiet_unused_settings
from inpaintssl.data.base import DataError
from inpaintssl.data.cases import available_splits, resolve_cases
from inpaintssl.data.ct import reads_as_dicom
from inpaintssl.data.orientation import check_axis_codes
from inpaintssl.data.preprocess import DEFAULT_CT_WINDOWS, HU_FLOOR, ResizeMode
from inpaintssl.data.spacing import SpacingRange
from inpaintssl.layout import RunFolder
from inpaintssl.losses.base import SegmentationLoss
from inpaintssl.options import check_option
from inpaintssl.registry import BACKBONES, DATASETS, Origin, PluginLoadError, origin_change, restore_hint
from inpaintssl.training.components import build_backbone
from inpaintssl.training.device import resolve_device
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "HEADER_KEY",
    "ChannelSource",
    "InPlane",
    "LoadedModel",
    "ModelInfo",
    "Normalization",
    "Preprocessing",
    "backbone_class",
    "load_model",
    "recorded_orientations",
    "recorded_preprocessing",
    "recorded_spacing",
]

HEADER_KEY = "inpaintssl"
"""Key of the :class:`ModelInfo` JSON in exported files (safetensors header, ONNX metadata)."""

TORCHSCRIPT_EXTRA_FILE = "inpaintssl.json"
"""Name of the :class:`ModelInfo` JSON inside a TorchScript archive (``torch.jit.load(_extra_files=)``)."""

Normalization = Literal["volume", "channel", "none", "unknown"]
ChannelSource = Literal["image", "ct_windows", "rss_echoes", "unknown"]
InPlane = Literal["identity", "transpose_flip_rows"]
"""How a slice's two axes are laid out for the network: as cut from the volume (``identity``), or
``transpose_flip_rows``: transposed, then its rows reversed (``s.T[::-1]`` of an ``(H, W)`` slice;
the ``mni152`` dataset's display orientation, anterior or superior at the top)."""


def _in_plane_of(dataset: str) -> InPlane:
    # The one dataset that shows its slices turned; every other reader keeps them as cut.
    return "transpose_flip_rows" if dataset == "mni152" else "identity"


_SLICED_VOLUMES = ("nifti", "metaimage", "nrrd", "numpy", "hdf5", "dicom", "ct")


def _factory_default(dataset: str, name: str, fallback: Any) -> Any:
    # The dataset factory's own default, so this table cannot drift from the readers.
    try:
        factory = DATASETS.get(dataset)
        parameter = inspect.signature(factory).parameters.get(name)
    except (KeyError, TypeError, ValueError):
        return fallback
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return fallback
    return parameter.default


def _cut_along_series_slices(
    name: str, params: Mapping[str, Any], axis: int, working_directory: str | Path | None
) -> bool:
    """Whether a run cut its volumes along the DICOM series' own slices, not along ``axis``.

    Without ``orientation`` a series is read as stored and cut along its own slices: the ``dicom``
    dataset never applied ``slice_axis`` then, nor did the ``ct`` dataset to its DICOM images (both
    refuse another axis now, :func:`~inpaintssl.data.dicom_dataset.check_own_slices`, but runs
    recorded before keep it in their ``config.yaml``). A ``ct`` run's images are looked up where
    its cases still lie; where they cannot be found, its NIfTI/NumPy images are assumed, which
    ``slice_axis`` did cut.
    """
    if axis % 3 == 2 or params.get("orientation") is not None:
        return False
    if name == "dicom":
        return True
    return name == "ct" and _ct_images_were_dicom(params, working_directory)


def _ct_images_were_dicom(params: Mapping[str, Any], working_directory: str | Path | None) -> bool:
    """Whether a ``ct`` run's data held a DICOM series among its images (by their paths, not read)."""
    if params.get("series") is not None:
        return True  # every image a DICOM study
    cases = params.get("cases")
    root = params.get("root")
    base = None if working_directory is None else Path(working_directory)
    if root is not None:
        # Relative to the folder the run was started in, as its dataset read it (an absolute root
        # stays itself).
        base = Path(str(root)).expanduser() if base is None else base / Path(str(root)).expanduser()
    try:
        for split in available_splits(cases):
            if any(
                reads_as_dicom(spec.image) for spec in resolve_cases(cases, split, root=base, dataset="ct")
            ):
                return True
    except (DataError, OSError, TypeError, ValueError):
        return False  # moved or gone: nothing left to tell by
    return False


@dataclass(frozen=True)
class Preprocessing:
    """How a run turned stored images into network inputs (paper sec. 2.2).

    Attributes:
        dataset: Registered dataset name of the run (``data.dataset``).
        image_size: ``(H, W)`` every slice was fitted to, or ``None`` (the data's own size).
        resize_mode: ``crop_or_pad`` (centred) or ``resize`` (bilinear images, nearest labels).
        normalization: Intensity z-scoring: ``volume`` (one mean/std per volume: MRI, the
            ``mni152`` template), ``channel`` (per channel over the volume: CT windows),
            ``none`` (values used as stored) or ``unknown`` (a plugin dataset).
        channels: How input channels were made: ``image`` (the stored channels),
            ``ct_windows`` (HU clipped at ``hu_floor``, then one channel per window),
            ``rss_echoes`` (root-sum-of-squares of the qDESS echoes: SKM-TEA, or a ``dicom`` run
            with ``echo: rss``) or ``unknown``.
        ct_windows: ``(width, level)`` HU windows, one channel each (CT only).
        hu_floor: HU below this (scanner padding) was clipped to it (CT only).
        slice_axis: Axis of the stored volume that 2D slices were taken along, ``None`` when the
            data are not volumes (``synthetic``) or unknown. The axis training used: a ``dicom``
            run without ``orientation``, and a ``ct`` run without it whose images were DICOM
            series, cut every series along its own slices (axis 2) whatever its
            ``data.params.slice_axis`` said (runs from before another axis was refused so).
        dataset_params: The run's ``data.params`` as written in ``config.yaml``; empty in
            metadata read from an exported file, which never stores them
            (:meth:`ModelInfo.for_export`: they name data folders and case files).
        in_plane_spacing_mm: In-plane spacing range of the training slices as the network saw
            them (from the run's ``manifest.json``; :mod:`inpaintssl.data.spacing`), ``None``
            for runs that did not record it.
        training_orientations: Axis codes -> number of training slices from volumes read in
            that orientation (``manifest.json``; :mod:`inpaintssl.data.orientation`); empty for
            runs that did not record it and for data without orientation (NumPy, HDF5).
        echo: The echo of multi-echo DICOM series the run trained on (the ``dicom`` dataset's
            ``echo``: 1 is the shortest echo time); ``None``: none chosen. A run on the echoes'
            root-sum-of-squares (``echo: rss``) has ``channels`` ``rss_echoes`` instead.
        in_plane: The in-plane transform between a slice as cut from the (reoriented) volume
            and the network's input (:data:`InPlane`; predict applies it before the network and
            undoes it on the labels): ``transpose_flip_rows`` for ``mni152`` runs, ``identity``
            otherwise (a plugin dataset's own is unknown; predict applies none). Not given (as
            in exports written before it was recorded), it follows from ``dataset``.

    Example:
        >>> from inpaintssl.config import DataConfig
        >>> p = Preprocessing.from_data_config(DataConfig(dataset="ct", image_size=(256, 256)))
        >>> p.normalization, p.channels, p.ct_windows[1], p.image_size
        ('channel', 'ct_windows', (1800.0, 400.0), (256, 256))
    """

    dataset: str
    image_size: tuple[int, int] | None = None
    resize_mode: ResizeMode = "crop_or_pad"
    normalization: Normalization = "unknown"
    channels: ChannelSource = "unknown"
    ct_windows: tuple[tuple[float, float], ...] = ()
    hu_floor: float | None = None
    slice_axis: int | None = None
    dataset_params: Mapping[str, Any] = field(default_factory=dict)
    in_plane_spacing_mm: SpacingRange | None = None
    training_orientations: Mapping[str, int] = field(default_factory=dict)
    in_plane: InPlane | None = None
    echo: int | None = None

    def __post_init__(self) -> None:
        if self.in_plane is None:
            # Frozen: set once here, so every instance (and its JSON) states the transform.
            object.__setattr__(self, "in_plane", _in_plane_of(self.dataset))

    @classmethod
    def from_data_config(
        cls, data: DataConfig, *, working_directory: str | Path | None = None
    ) -> Preprocessing:
        """The preprocessing the built-in readers apply for ``data`` (unknown for plugin datasets).

        Args:
            data: The run's data section.
            working_directory: The folder the run was started in (its ``manifest.json`` records
                it), which relative data paths start from; ``None``: this process's. Only read to
                tell whether a ``ct`` run's images were DICOM series (see ``slice_axis``).
        """
        name, params = data.dataset, dict(data.params)
        common: dict[str, Any] = {
            "dataset": name,
            "image_size": None if data.image_size is None else tuple(data.image_size),
            "resize_mode": data.resize_mode,
            "dataset_params": params,
        }
        if name == "synthetic":
            return cls(**common, normalization="none", channels="image")
        if name == "mni152":
            # The template is z-scored over the whole volume and sliced axially (RAS axis 2).
            return cls(**common, normalization="volume", channels="image", slice_axis=2)
        if name == "skmtea":
            return cls(**common, normalization="volume", channels="rss_echoes", slice_axis=2)
        if name in _SLICED_VOLUMES:
            # As the readers cut (-1 is axis 2): the record is read outside inpaintssl too, where
            # np.take(volume, k, axis=-1) of a channels-last (X, Y, Z, C) volume cuts the channels.
            axis = int(params.get("slice_axis", _factory_default(name, "slice_axis", 2))) % 3
            if _cut_along_series_slices(name, params, axis, working_directory):
                axis = 2
            if name == "ct":
                windows = params.get("windows", _factory_default(name, "windows", DEFAULT_CT_WINDOWS))
                return cls(
                    **common,
                    normalization="channel",
                    channels="ct_windows",
                    ct_windows=tuple((float(w), float(lv)) for w, lv in windows),
                    hu_floor=float(params.get("hu_floor", _factory_default(name, "hu_floor", HU_FLOOR))),
                    slice_axis=axis,
                )
            normalize = params.get("normalize", _factory_default(name, "normalize", "volume"))
            echo = params.get("echo") if name == "dicom" else None
            if echo == "rss":
                return cls(**common, normalization=normalize, channels="rss_echoes", slice_axis=axis)
            return cls(
                **common,
                normalization=normalize,
                channels="image",
                slice_axis=axis,
                echo=None if echo is None else int(echo),
            )
        axis_param = params.get("slice_axis")
        return cls(**common, slice_axis=None if axis_param is None else int(axis_param))


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded network is and how it was trained; ``LoadedModel.inference_meta``.

    Attributes:
        kind: ``pretrain`` (inpainting, sec. 2.4) or ``finetune`` (segmentation, sec. 2.5).
        backbone: Registered backbone name (``unet2d``).
        backbone_params: Its keyword arguments besides channel counts (``depth``, ``base_width``...).
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        class_names: Foreground classes (``()`` for pretraining).
        activation: Output activation of the run's loss: ``sigmoid`` (``C_out = K``), ``softmax``
            (``C_out = K + 1``, background first) or ``none`` (inpainting outputs images).
        size_multiple: Input height and width must be multiples of this (``2**(depth - 1)``).
        epoch: Epoch the weights are from (0-based; -1 unknown).
        val_loss: Validation loss of these weights, when recorded.
        pretext: Pretext-task settings of a pretraining run.
        preprocessing: The run's input preprocessing; ``None`` when not known (a bare checkpoint).
        folded: The weights have weight standardisation folded in (plain convolutions, as
            written by ``export_model(format="safetensors")``).
        source: The path the model was loaded from (not serialised, not compared).

    Example:
        >>> info = ModelInfo(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
        >>> info.checkpoint_meta().kind, info.activation
        ('pretrain', 'none')
    """

    kind: Literal["pretrain", "finetune"]
    backbone: str
    in_channels: int
    out_channels: int
    backbone_params: Mapping[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    activation: Literal["sigmoid", "softmax", "none"] = "none"
    size_multiple: int = 1
    epoch: int = -1
    val_loss: float | None = None
    pretext: Mapping[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    folded: bool = False
    source: Path | None = field(default=None, compare=False)

    @classmethod
    def from_checkpoint_meta(
        cls,
        meta: CheckpointMeta,
        *,
        size_multiple: int = 1,
        preprocessing: Preprocessing | None = None,
        source: Path | None = None,
    ) -> ModelInfo:
        """Combine a checkpoint's validated metadata with what loading found out."""
        shared = meta.model_dump(include=set(_fields_shared_with_checkpoint_meta()))
        shared["class_names"] = tuple(shared["class_names"])
        return cls(**shared, size_multiple=size_multiple, preprocessing=preprocessing, source=source)

    def checkpoint_meta(self) -> CheckpointMeta:
        """The architecture part as :class:`~inpaintssl.checkpoint.CheckpointMeta` (to save a checkpoint)."""
        shared = {name: getattr(self, name) for name in _fields_shared_with_checkpoint_meta()}
        return CheckpointMeta.model_validate(shared)

    def for_export(self) -> ModelInfo:
        """What an exported file stores: this metadata, folded, without the run's ``dataset_params``.

        ``dataset_params`` (the run's ``data.params``) names where the training data lay: absolute
        folders and case file names, which are often patient identifiers, and an export is what
        people share. Nothing that reads an export uses it: the preprocessing a consumer needs
        (normalisation, CT windows, slice axis, in-plane transform, image size, training spacing
        and orientations) is in fields of its own. The run folder's ``config.yaml`` keeps it.

        Example:
            >>> pre = Preprocessing(dataset="nifti", dataset_params={"root": "/data/study"})
            >>> info = ModelInfo(kind="finetune", backbone="unet2d", in_channels=1, out_channels=1,
            ...                  preprocessing=pre)
            >>> shared = info.for_export()
            >>> shared.folded, dict(shared.preprocessing.dataset_params), shared.preprocessing.slice_axis
            (True, {}, None)
        """
        pre = self.preprocessing
        return replace(
            self,
            folded=True,
            preprocessing=None if pre is None else replace(pre, dataset_params={}),
        )

    def to_json(self) -> str:
        """Compact JSON of every field but ``source`` (exported files store :meth:`for_export`'s)."""
        return _MODEL_INFO.dump_json(self, exclude={"source"}).decode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes, *, source: Path | None = None) -> ModelInfo:
        """Validate :meth:`to_json` output.

        Raises:
            CheckpointError: Not valid model metadata; the message names ``source`` and each field.
        """
        try:
            info = _MODEL_INFO.validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
            )
            raise CheckpointError(
                f"{source or '<json>'}: invalid inpaintssl model metadata: {problems}"
            ) from exc
        return replace(info, source=source)


_MODEL_INFO: TypeAdapter[ModelInfo] = TypeAdapter(ModelInfo)


@functools.cache
def _fields_shared_with_checkpoint_meta() -> tuple[str, ...]:
    return tuple(f.name for f in fields(ModelInfo) if f.name in CheckpointMeta.model_fields)


class _Activation(SegmentationLoss):
    """The run loss's activation and hard prediction, without a loss (only its shared base is used)."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("_Activation only maps logits; it is not a loss")


@functools.cache
def _activation(activation: Literal["sigmoid", "softmax"]) -> _Activation:
    return _Activation(activation=activation)


class LoadedModel(nn.Module):
    """What :func:`load_model` returns: the trained backbone plus ``inference_meta``.

    A loaded module is an instance of both its backbone class (e.g.
    :class:`~inpaintssl.models.unet.UNet2d`) and this class: :func:`load_model` gives it a
    subclass of the two (as :mod:`torch.nn.utils.parametrize` does), so ``forward``, submodules
    and state-dict keys are the backbone's own. It pickles and deep-copies like any module. Do not
    instantiate it directly.

    Attributes:
        inference_meta: What the network is and how it was trained (:class:`ModelInfo`).
    """

    inference_meta: ModelInfo

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the run's output activation (sigmoid/softmax); inpainting outputs are returned as is."""
        activation = self.inference_meta.activation
        if activation == "none":
            return logits
        return _activation(activation).probabilities(logits)

    def predict_onehot(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard prediction ``(N, K, H, W)`` in {0, 1} over the foreground classes, as the run's loss makes it.

        Sigmoid heads: a class is on where its probability exceeds 0.5 (classes may overlap).
        Softmax heads: the arg-max channel wins; background pixels are all zero.

        Raises:
            ValueError: The model is an inpainting (``pretrain``) network: it has no classes.
        """
        activation = self.inference_meta.activation
        if activation == "none":
            raise ValueError(
                f"predict_onehot: {self.inference_meta.source or 'this model'} is a "
                f"{self.inference_meta.kind} (inpainting) network; its outputs are images, not class scores"
            )
        return _activation(activation).predict_onehot(logits)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # The dynamic class is not importable by name: pickle the plain backbone and re-wrap on load.
        base = backbone_class(type(self))
        plain = base.__new__(base)
        plain.__dict__ = self.__dict__
        return (_as_loaded, (plain,))


@functools.cache
def _loaded_class(base: Hashable) -> type[LoadedModel]:
    # One subclass per backbone class, shared by every load, so isinstance and pickling stay cheap.
    # (Typed Hashable: mypy does not see nn.Module classes as hashable keys of the cache.)
    backbone = cast(type[nn.Module], base)
    return cast(type[LoadedModel], type(f"Loaded{backbone.__name__}", (LoadedModel, backbone), {}))


def backbone_class(cls: type[nn.Module]) -> type[nn.Module]:
    """The backbone class behind a :class:`LoadedModel` subclass (``cls`` itself otherwise).

    Example:
        >>> from inpaintssl.models import UNet2d
        >>> backbone_class(UNet2d).__name__
        'UNet2d'
    """
    if issubclass(cls, LoadedModel):
        for base in cls.__mro__[1:]:
            if issubclass(base, nn.Module) and not issubclass(base, LoadedModel):
                return base
    return cls


def _as_loaded(module: nn.Module, info: ModelInfo | None = None) -> LoadedModel:
    """Make ``module`` (in place) an instance of its :class:`LoadedModel` subclass."""
    module.__class__ = _loaded_class(cast(Hashable, backbone_class(type(module))))
    loaded = cast(LoadedModel, module)
    if info is not None:
        loaded.inference_meta = info
    return loaded


def _read_preprocessing(run: RunFolder | None) -> Preprocessing | None:
    if run is None:
        return None
    config_path = run.config
    if not config_path.is_file():
        return None
    try:
        document = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{config_path}: unreadable run configuration: {exc}") from exc
    section = document.get("data", {}) if isinstance(document, Mapping) else None
    if not isinstance(section, Mapping):
        raise CheckpointError(f"{config_path}: expected a mapping with a 'data' section, found {document!r}")
    try:
        with quiet_unused_settings():
            # A setting the run left unused was told to whoever trained it, not to its model's user.
            data = DataConfig.model_validate(dict(section))
    except ValidationError as exc:
        problems = "; ".join(f"data.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise CheckpointError(f"{config_path}: invalid data section: {problems}") from exc
    manifest = _read_manifest(run)
    started_in = manifest.get("working_directory")
    return replace(
        Preprocessing.from_data_config(
            data, working_directory=started_in if isinstance(started_in, str) else None
        ),
        in_plane_spacing_mm=_read_spacing(run, manifest),
        training_orientations=_read_orientations(run, manifest),
    )


def _read_manifest(run: RunFolder) -> Mapping[str, Any]:
    """A run's ``manifest.json`` (empty for a run without one)."""
    if not run.manifest.is_file():
        return {}
    try:
        document = json.loads(run.manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{run.manifest}: unreadable run manifest: {exc}") from exc
    return document if isinstance(document, Mapping) else {}


def _read_orientations(run: RunFolder, manifest: Mapping[str, Any]) -> dict[str, int]:
    """The slices per orientation a manifest recorded (runs before it was recorded: none)."""
    recorded = manifest.get("orientations")
    if recorded is None:
        return {}
    try:
        if not isinstance(recorded, Mapping):
            raise ValueError("not a mapping")
        return {check_axis_codes(codes, where="orientation"): int(n) for codes, n in recorded.items()}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{run.manifest}: orientations={recorded!r}; expected axis codes -> slice count, such as "
            f"{{'RAS': 120}} ({exc})"
        ) from exc


def _read_spacing(run: RunFolder, manifest: Mapping[str, Any]) -> SpacingRange | None:
    """The training spacing a run's ``manifest.json`` recorded (runs before it was recorded: none)."""
    recorded = manifest.get("in_plane_spacing_mm")
    if recorded is None:
        return None
    try:
        return SpacingRange.from_json(recorded)
    except ValueError as exc:
        raise CheckpointError(f"{run.manifest}: {exc}") from exc


def recorded_preprocessing(run_or_checkpoint: str | Path) -> Preprocessing | None:
    """How a run's slices were fitted for its network (its ``config.yaml``'s data section), as
    :func:`load_model` records it in ``inference_meta.preprocessing``.

    Args:
        run_or_checkpoint: A run folder, or a checkpoint folder (or a file in one) inside a run.

    Returns:
        The preprocessing, or ``None`` for a path outside a run folder or a run without its config.

    Raises:
        inpaintssl.checkpoint.CheckpointError: The run's ``config.yaml`` is unreadable or damaged.
    """
    return _read_preprocessing(_run_of(Path(run_or_checkpoint).expanduser()))


def recorded_spacing(run_or_checkpoint: str | Path) -> SpacingRange | None:
    """The in-plane spacing range a run's training slices had, as its ``manifest.json`` records it.

    Args:
        run_or_checkpoint: A run folder, or a checkpoint folder (or a file in one) inside a run.

    Returns:
        The range, or ``None`` for a path outside a run folder or a run that recorded none.

    Raises:
        inpaintssl.checkpoint.CheckpointError: The manifest is unreadable or its record damaged.
    """
    run = _run_of(Path(run_or_checkpoint).expanduser())
    return None if run is None else _read_spacing(run, _read_manifest(run))


def recorded_orientations(run_or_checkpoint: str | Path) -> dict[str, int]:
    """The orientations of a run's training volumes, as its ``manifest.json`` records them.

    Args:
        run_or_checkpoint: A run folder, or a checkpoint folder (or a file in one) inside a run.

    Returns:
        Axis codes -> training slices (:mod:`inpaintssl.data.orientation`); empty for a path
        outside a run folder, a run that recorded none, or data without orientation.

    Raises:
        inpaintssl.checkpoint.CheckpointError: The manifest is unreadable or its record damaged.
    """
    run = _run_of(Path(run_or_checkpoint).expanduser())
    return {} if run is None else _read_orientations(run, _read_manifest(run))


def _run_of(path: Path) -> RunFolder | None:
    return RunFolder(path) if RunFolder(path).checkpoints.is_dir() else RunFolder.of_checkpoint(path)


def is_torchscript_export(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive written by ``export_model`` (read as a zip listing only).

    Export and load both ask: export to replace an earlier export, load to refuse running one.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.endswith(f"/extra/{TORCHSCRIPT_EXTRA_FILE}") for name in names)


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The header metadata of a safetensors file (``{}`` when it has none), read without its tensors.

    Raises:
        inpaintssl.checkpoint.CheckpointError: ``path`` is not a readable safetensors file.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from exc


def _header_info(path: Path) -> ModelInfo | None:
    text = safetensors_metadata(path).get(HEADER_KEY)
    return None if text is None else ModelInfo.from_json(text, source=path)


def checked_which(which: str | None, path: Path) -> Literal["best", "last"]:
    """The checkpoint of a run folder to load: ``which``, ``best`` when not given.

    Raises:
        ValueError: ``which`` is neither ``best`` nor ``last``, or is given for an existing path
            that is not a run folder (a checkpoint folder or file, whose weights it cannot change).
    """
    if which is None:
        return "best"
    check_option(which, ("best", "last"), field="which")
    if path.exists() and not RunFolder(path).checkpoints.is_dir():
        raise ValueError(
            f"which={which!r} picks a checkpoint of a run folder, but {path} is not a run folder "
            f"(no {RunFolder.CHECKPOINTS}/ in it); pass the run folder, or leave which out to load "
            f"{path} itself"
        )
    return cast(Literal["best", "last"], which)


def _read(path: Path, *, which: Literal["best", "last"]) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """Weights and metadata of whatever ``path`` names (the size multiple is filled in later)."""
    target = resolve_checkpoint(path, which=which)
    if target.is_file():
        if target.suffix.lower() != ".safetensors":
            if is_torchscript_export(target):
                raise CheckpointError(
                    f"{target}: a TorchScript export, which runs without inpaintssl "
                    f"(torch.jit.load; its metadata is the extra file {TORCHSCRIPT_EXTRA_FILE!r}) but is "
                    "not read back here, as loading it would run its stored program; pass the run "
                    "folder it came from or an export_model(format='safetensors') file"
                )
            raise CheckpointError(
                f"{target}: a {target.suffix} weights file has no architecture metadata; expected a run "
                "folder, a checkpoint folder or a .safetensors file with inpaintssl metadata"
            )
        info = _header_info(target)
        if info is not None:
            state, _ = load_resolved_checkpoint(target)
            return state, info
        meta_path = target.with_name("meta.json")
        if not meta_path.is_file():
            raise CheckpointError(
                f"{target}: no architecture metadata: expected an '{HEADER_KEY}' entry in its header "
                "(from export_model) or a meta.json next to it (a checkpoint folder)"
            )
        if target.name == "model.safetensors" and target.with_name(COMPLETE_MARKER).is_file():
            # Inside a checkpoint folder: load the folder so its checksums are verified.
            return _read(target.parent, which=which)
        state, _ = load_resolved_checkpoint(target)
        meta = read_checkpoint_meta(meta_path)
    else:
        state, maybe_meta = load_resolved_checkpoint(target)
        if maybe_meta is None:
            raise CheckpointError(
                f"{target}: checkpoint folder without meta.json; cannot tell its architecture"
            )
        meta = maybe_meta
    preprocessing = _read_preprocessing(RunFolder.of_checkpoint(target))
    return state, ModelInfo.from_checkpoint_meta(meta, preprocessing=preprocessing, source=target)


def _recorded_origin(info: ModelInfo) -> str | None:
    """Where the run's ``manifest.json`` says its backbone came from; ``None`` outside a run or unrecorded."""
    run = None if info.source is None else RunFolder.of_checkpoint(info.source)
    if run is None:
        return None
    try:
        components = _read_manifest(run).get("components")
    except CheckpointError:
        return None  # the missing backbone is the error to report; a damaged manifest adds nothing
    backbones = components.get("backbones") if isinstance(components, Mapping) else None
    origin = backbones.get(info.backbone) if isinstance(backbones, Mapping) else None
    return origin if isinstance(origin, str) else None


def _not_installed(where: object, backbone: str, recorded: str) -> str:
    """Why a run's backbone cannot be built: the name is unknown here; what the run recorded of it."""
    plugin = Origin.parse(recorded)
    if plugin is None or plugin.requirement is None:
        return (
            f"{where}: backbone {backbone!r} is not registered in this installation; the run's manifest.json "
            f"records it as {recorded}: install the inpaintssl (or package) version the run was trained with"
        )
    return (
        f"{where}: backbone {backbone!r} is not installed: it is the plugin {plugin.target}, installed by "
        f"{plugin.distribution} {plugin.version} when the run was trained (its manifest.json, components); "
        f"install it (pip install '{plugin.requirement}') and load the run again"
    )


def _check_origin(info: ModelInfo, where: object) -> None:
    """Refuse a backbone name that other code provides now than when the run was trained.

    The weights of a plugin's network fit another distribution's network of the same name as long
    as its parameter names and shapes agree, and ``load_state_dict`` says nothing: predictions
    would come from code the run never trained. Another version of the same distribution is
    warned about only (the usual upgrade, whose network may compute otherwise). Outside a run
    folder (an export) nothing is recorded to compare with.
    """
    recorded = _recorded_origin(info)
    if recorded is None:
        return
    try:
        current = BACKBONES.origin(info.backbone)
    except (KeyError, PluginLoadError):
        return  # building it reports what is wrong with the name, with what the run recorded
    change = origin_change(recorded, current)
    if change == "other":
        raise CheckpointError(
            f"{where}: backbone {info.backbone!r} is not the code the run was trained with: its "
            f"manifest.json (components) records {recorded}, but here {info.backbone!r} is {current}. "
            "The weights would load into another package's network without an error and predict with "
            f"it; expected the recorded code: {restore_hint(recorded, current)}, and load the run again"
        )
    if change == "version":
        then = Origin.parse(recorded)
        install = None if then is None or then.requirement is None else f"pip install '{then.requirement}'"
        warn_each_time(
            f"{where}: backbone {info.backbone!r} was {recorded} when the run was trained (its "
            f"manifest.json, components) and is {current} here: the weights load into this version's "
            "network, whose outputs differ if it changed"
            + (f"; {install} to use the code the run was trained with" if install else ""),
            UserWarning,
        )


def _build(info: ModelInfo, state: Mapping[str, torch.Tensor]) -> nn.Module:
    where = info.source or "<weights>"
    _check_origin(info, where)
    try:
        model = build_backbone(
            info.backbone,
            dict(info.backbone_params),
            in_channels=info.in_channels,
            out_channels=info.out_channels,
            seed=0,
            # Inference copies no parts, and a run trained before runs checked them still loads.
            check_parts=False,
        )
    except KeyError as exc:
        # Only an unknown name: a KeyError raised inside an installed backbone is its own fault.
        recorded = None if info.backbone in BACKBONES.names() else _recorded_origin(info)
        if recorded is None:
            raise CheckpointError(
                f"{where}: cannot build backbone {info.backbone!r} "
                f"with params {dict(info.backbone_params)}: {exc}"
            ) from exc
        raise CheckpointError(_not_installed(where, info.backbone, recorded)) from exc
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{where}: cannot build backbone {info.backbone!r} "
            f"with params {dict(info.backbone_params)}: {exc}"
        ) from exc
    if info.folded:
        # Imported here: export builds on this module.
        from inpaintssl.inference.export import fold_weight_standardisation

        model = fold_weight_standardisation(model, inplace=True)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{where}: the weights do not fit backbone {info.backbone!r} with params "
            f"{dict(info.backbone_params)}, in_channels={info.in_channels}, out_channels={info.out_channels} "
            f"(folded={info.folded}): {exc}"
        ) from exc
    return model


def load_model(
    run_or_checkpoint: str | Path,
    *,
    which: Literal["best", "last"] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load a trained backbone for inference, without unpickling anything.

    Args:
        run_or_checkpoint: A run folder, a checkpoint folder (``run/checkpoints/best``), a
            checkpoint's ``model.safetensors`` (its ``meta.json`` is read next to it) or a
            ``.safetensors`` file from ``export_model(format="safetensors")``; a leading ``~``
            is the home folder.
        which: For a run folder: the ``best`` (lowest validation loss, the default) or ``last``
            checkpoint. Given for anything else (a checkpoint folder or file names its weights
            already) it is an error rather than ignored.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

    Returns:
        The backbone in eval mode on ``device``, with ``inference_meta``
        (:class:`ModelInfo`) and :meth:`LoadedModel.predict_onehot`.

    Raises:
        inpaintssl.checkpoint.CheckpointError: Nothing at the path, no checkpoint in it, a corrupt,
            interrupted or incomplete checkpoint, missing metadata, or weights that do not fit the
            recorded architecture; the message names the path and what was expected.
        ValueError: ``which`` or ``device`` is invalid, or ``which`` is given for a path that is
            not a run folder.
        TypeError: ``run_or_checkpoint`` is not a path (a ``str`` or ``os.PathLike``).

    Example:
        >>> model = load_model("runs/finetune", which="best")           # doctest: +SKIP
        >>> model.inference_meta.kind, model.inference_meta.activation  # doctest: +SKIP
        ('finetune', 'sigmoid')
    """
    # os.PathLike's own test (a __fspath__ method); pathlib's error for anything else names no argument.
    if not isinstance(run_or_checkpoint, str) and not hasattr(type(run_or_checkpoint), "__fspath__"):
        raise TypeError(
            "run_or_checkpoint: expected a path (str or os.PathLike) to a run folder, checkpoint folder "
            f"or .safetensors file; found {type(run_or_checkpoint).__name__}"
        )
    target_device = resolve_device(device)
    # As predict and the command line take it: "~/runs/ft" is the user's, not a folder named "~".
    path = Path(run_or_checkpoint).expanduser()
    state, info = _read(path, which=checked_which(which, path))
    model = _build(info, state)
    info = replace(info, size_multiple=int(getattr(model, "size_multiple", 1)))
    model = model.to(target_device).eval()
    return _as_loaded(model, info)
