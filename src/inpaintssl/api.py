"""The public, typed API: ``pretrain``, ``transfer``, ``finetune``, ``evaluate``.

Three calls cover the method of Dominic et al. 2023: pretrain a U-Net to inpaint unlabelled
slices, move its weights, fine-tune on few labels. The CLI subcommands call exactly these.

Example:
    >>> import inpaintssl as issl
    >>> pre = issl.pretrain({"data": {"dataset": "mni152", "image_size": [96, 112]},
    ...                      "optim": {"max_epochs": 1}})                    # doctest: +SKIP
    >>> ft = issl.finetune({"transfer": {"pretrained": str(pre.run_dir)},
    ...                     "data": {"label_fraction": 0.1}})               # doctest: +SKIP
    >>> ft.mean_dice()                                                      # doctest: +SKIP
    {'csf': 0.71, 'gm': 0.83, 'wm': 0.90}
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset
from torch.utils.data import Subset as TorchSubset

from inpaintssl import _API_NAMES
from inpaintssl.checkpoint import CheckpointMeta
from inpaintssl.config import (
    ConfigError,
    DataConfig,
    FinetuneConfig,
    PretextConfig,
    PretrainConfig,
    load_config,
    read_config_file,
)
from inpaintssl.config.evaluate import load_data_section
from inpaintssl.config.overrides import check_override_list, override_fields, parse_override
from inpaintssl.corruption import render_corruption_figure as render_corruption_figure
from inpaintssl.data.base import SliceDataset
from inpaintssl.data.build import build_split, check_slice_sizes
from inpaintssl.data.decompressed_upkeep import list_decompressed as list_decompressed
from inpaintssl.data.decompressed_upkeep import prune_decompressed as prune_decompressed
from inpaintssl.data.dicom import list_series as list_dicom_series
from inpaintssl.data.orientation import describe_orientations, training_orientations
from inpaintssl.data.preflight import preflight
from inpaintssl.data.spacing import SPACING_TOLERANCE, same_axis_order, training_spacing
from inpaintssl.data.views import ClassOrder
from inpaintssl.inference import ExportError as ExportError
from inpaintssl.inference import PredictionError as PredictionError
from inpaintssl.inference import PredictionReport as PredictionReport
from inpaintssl.inference import export_model as export_model
from inpaintssl.inference import load_model as load_model
from inpaintssl.inference import predict as predict
from inpaintssl.inference.loading import (
    ModelInfo,
    Preprocessing,
    recorded_orientations,
    recorded_preprocessing,
    recorded_spacing,
)
from inpaintssl.layout import RunFolder
from inpaintssl.options import check_option
from inpaintssl.training.components import build_pretext_task, build_segmentation_loss
from inpaintssl.training.device import resolve_device, to_memory_format, use_channels_last
from inpaintssl.training.evaluation import EvaluationTable as EvaluationTable
from inpaintssl.training.evaluation import (
    check_batch_size,
    check_num_workers,
    evaluate_inpainting,
    evaluate_segmentation,
)
from inpaintssl.training.finetuning import run_finetuning
from inpaintssl.training.objectives import InpaintingObjective
from inpaintssl.training.pretraining import run_pretraining
from inpaintssl.training.results import FinetuneResult as FinetuneResult
from inpaintssl.training.results import PretrainResult as PretrainResult
from inpaintssl.transfer_learning import TransferReport as TransferReport
from inpaintssl.transfer_learning import transfer as _transfer
from inpaintssl.transfer_learning.network_parts import (
    RUN_RECORD,
    carried_record,
    carried_run_source,
    unwrap_model,
)
from inpaintssl.transfer_learning.transfer import InChannelsMode
from inpaintssl.warning_format import warn_each_time

# What ``import inpaintssl`` serves from here, plus ExportError, the paper's Figure 1 of a pretext
# task and the upkeep of a data.cache_dir folder (the imports above re-export with ``as``).
__all__ = [
    *sorted(_API_NAMES),
    "ExportError",
    "list_decompressed",
    "list_dicom_series",
    "prune_decompressed",
    "render_corruption_figure",
]

ConfigSource = Mapping[str, Any] | str | Path


def pretrain(config: PretrainConfig | ConfigSource, *, overrides: Sequence[str] = ()) -> PretrainResult:
    """Pretrain a backbone on an inpainting pretext task (paper sec. 2.4, Appendix A.1).

    Args:
        config: A :class:`~inpaintssl.config.PretrainConfig`, a mapping, or a YAML/JSON path.
        overrides: Dotted ``key=value`` overrides, e.g. ``["optim.lr=1e-4"]``.

    Returns:
        The run folder, best validation loss, history and the model with its best weights.

    Raises:
        inpaintssl.config.ConfigError: Invalid configuration (names the field path).
        inpaintssl.data.base.DataError: Malformed data (names the file).
        inpaintssl.training.context.RunFolderInUseError: ``run.output_dir`` holds an earlier run
            (without ``run.resume``), or another run is writing it (``RunFolderLockedError``,
            naming that run's pid, host and start time).

    Example:
        >>> result = pretrain("pretrain.yaml", overrides=["optim.max_epochs=2"])  # doctest: +SKIP
        >>> result.checkpoint                                                    # doctest: +SKIP
        PosixPath('runs/run/checkpoints/best')
    """
    return run_pretraining(load_config(config, PretrainConfig, overrides=overrides))


def finetune(config: FinetuneConfig | ConfigSource, *, overrides: Sequence[str] = ()) -> FinetuneResult:
    """Fine-tune for segmentation from pretrained weights, or from scratch (sec. 2.5.1, App. B).

    ``transfer.pretrained`` names the pretraining run (``None``: fully supervised baseline);
    ``transfer.weights`` picks ``encoder`` or ``encoder_decoder``; ``transfer.schedule`` picks
    ``immediate`` or ``freeze_then_unfreeze``.

    Args:
        config: A :class:`~inpaintssl.config.FinetuneConfig`, a mapping, or a YAML/JSON path.
        overrides: Dotted ``key=value`` overrides.

    Returns:
        The run folder, history, transfer report and per-image test Dice.

    Example:
        >>> result = finetune({"transfer": {"pretrained": "runs/pre"}})  # doctest: +SKIP
        >>> result.mean_dice()                                           # doctest: +SKIP
    """
    return run_finetuning(load_config(config, FinetuneConfig, overrides=overrides))


def transfer(
    pretrained: nn.Module | str | Path,
    model: nn.Module,
    *,
    weights: str = "encoder",
    in_channels: InChannelsMode = "error",
) -> TransferReport:
    """Copy pretrained ``encoder`` (or ``encoder`` + ``decoder``) weights into ``model`` (sec. 2.5.1).

    Args:
        pretrained: A module, a ``.safetensors`` file, a checkpoint folder or a run folder.
            Files are never unpickled.
        model: The fresh segmentation network (modified in place).
        weights: ``encoder`` or ``encoder_decoder`` (or a plugin strategy).
        in_channels: ``error``, ``repeat`` or ``average`` when input channels differ.

    Returns:
        What was copied, left fresh, missing, unexpected or adapted.

    Example:
        >>> from inpaintssl.registry import BACKBONES
        >>> a = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
        >>> b = BACKBONES.build("unet2d", in_channels=1, out_channels=3, depth=2, base_width=4, seed=1)
        >>> len(transfer(a, b, weights="encoder").copied) > 0
        True
    """
    return _transfer(pretrained, model, weights=weights, in_channels=in_channels)


_NOT_FOR_EVALUATION = ("label_fraction", "splits_file", "unlabelled")
"""Data fields of a training config that evaluation ignores: every split is read whole."""


def _read_whole(section: DataConfig) -> DataConfig:
    """``section`` with the defaults of :data:`_NOT_FOR_EVALUATION`, whoever set them (file, mapping,
    config or override).

    Dropped from a run config's file alone, a ``label_fraction`` given any other way scored
    ``split="train"`` on its label-limited subset, and a ``splits_file`` read the items it lists.
    """
    fields = DataConfig.model_fields
    whole = {name: fields[name].get_default(call_default_factory=True) for name in _NOT_FOR_EVALUATION}
    update = {name: value for name, value in whole.items() if getattr(section, name) != value}
    return section.model_copy(update=update) if update else section


def _data_section(path: Path) -> DataConfig:
    """The ``data`` section of a file holding a whole run config, else the file as a data section."""
    loaded = read_config_file(path)
    if "data" not in loaded:
        return load_config(path, DataConfig)  # a data section on its own: errors name its fields as written
    section = loaded["data"]
    if not isinstance(section, dict):
        raise ConfigError(
            f"config file {path}: 'data' holds a {type(section).__name__}; expected the data section"
        )
    kept = {k: v for k, v in section.items() if k not in _NOT_FOR_EVALUATION}
    return load_data_section(kept, source=str(path))


def _recorded_data(source: str | Path, *, overridden: Sequence[str]) -> DataConfig | dict[str, Any]:
    """The data section the run owning ``source`` recorded (``{}`` without one, when the
    ``overridden`` data keys name the dataset)."""
    path = Path(source)
    recorded = RunFolder.owning(path).config
    if recorded.is_file():
        return _data_section(recorded)
    if "dataset" in overridden:
        return {}
    if not path.exists():
        raise ConfigError(
            f"{source} does not exist (expected a .safetensors file, a checkpoint folder or a run folder)"
        )
    # Without a record the defaults would be the demo's brain data: never a silent choice.
    given = (
        f" (given: {', '.join(f'data.{key}' for key in overridden)}, which do not name it)"
        if overridden
        else ""
    )
    raise ConfigError(
        f"{source}: no {recorded.name} recorded beside it to say what data it was trained on; pass "
        "the data (data=..., --data FILE on the command line: a data config, or a file holding a "
        f"data section or a run config) or data.KEY=VALUE overrides that name it (data.dataset=...){given}"
    )


_FITTING = ("image_size", "resize_mode")
"""The data fields a ``data`` section given to ``evaluate`` takes from the run where it leaves them
out: the slice size its network was trained at, and predicts at (:func:`_fitted_as_trained`)."""


class _EvaluationData(NamedTuple):
    """What ``evaluate`` reads, which of :data:`_FITTING` it takes from the run, and whether its
    ``data.params.slice_axis`` is the run's record, untouched by any override."""

    data: DataConfig | Dataset[dict[str, Any]]
    from_run: frozenset[str]
    recorded_axis: bool = False


def _left_out(section: DataConfig | Mapping[str, Any], overridden: Sequence[str]) -> frozenset[str]:
    """The :data:`_FITTING` fields neither ``section`` nor an override gives."""
    given = set(section.model_fields_set) if isinstance(section, DataConfig) else set(section)
    return frozenset(name for name in _FITTING if name not in given and name not in overridden)


def _carried_metadata(model: nn.Module) -> tuple[ModelInfo, str] | None:
    """What ``model`` records of itself, and how to name that record in a message; ``None``: nothing.

    The ``inference_meta`` a module from :func:`~inpaintssl.inference.loading.load_model` carries,
    else the ``checkpoint_meta`` that ``pretrain`` and ``finetune`` attach to the model they hand
    back (its run's best checkpoint's ``meta.json``), read as ``load_model`` reads that file, with
    the run's preprocessing and the checkpoint folder as its source (``checkpoint_source``, attached
    beside it), so that the model is scored exactly as that checkpoint. Each is looked for through
    DDP / ``DataParallel`` / ``torch.compile`` wrappers, as ``transfer`` does. Without the second, a
    result's model was scored as a bare module: a pretraining network as a segmentation one, a
    softmax head with a sigmoid, both refused on their channel count.
    """
    carried = carried_record(model)
    if carried is None:
        return None
    record, attribute = carried
    if isinstance(record, ModelInfo):
        described = "the module's inference_meta"
        if record.source is not None:
            described = f"the module's inference_meta (loaded from {record.source})"
        return record, described
    if attribute == RUN_RECORD and isinstance(record, CheckpointMeta):
        # As load_model builds it from the same meta.json; the size multiple is the network's own.
        multiple = int(getattr(unwrap_model(model), "size_multiple", 1))
        source = carried_run_source(model)
        # A run folder moved or deleted since: the record alone, scored as the module it describes.
        present = source if isinstance(source, Path) and source.is_dir() else None
        info = ModelInfo.from_checkpoint_meta(
            record,
            size_multiple=multiple,
            preprocessing=None if present is None else recorded_preprocessing(present),
            source=present,
        )
        where = "" if present is None else f", {present}"
        return info, f"the module's {RUN_RECORD} (the record of the run that trained it{where})"
    return None


def _as_recorded(
    info: ModelInfo, *, activation: str | None, class_names: Sequence[str] | None, model: str
) -> tuple[str, tuple[str, ...] | None]:
    """The activation and class names to score with: the model's record's; a conflicting argument is refused.

    Scored with another activation or class order than its training used, a model's Dice compares
    other channels or other thresholds than it learnt, under the recorded classes' names.

    Args:
        info: The model's metadata.
        activation: ``evaluate``'s ``activation`` argument (``None``: not given).
        class_names: ``evaluate``'s ``class_names`` argument (``None``: not given).
        model: How to name the model in a message (its path, or "the module's inference_meta").

    Returns:
        The activation (``none`` for an inpainting network) and the class names (``None``: take
        the data's, for a record that lists none).

    Raises:
        ValueError: ``activation`` or ``class_names`` is given and differs from the record.
    """
    if activation is not None and activation != info.activation:
        raise ValueError(
            f"evaluate: activation={activation!r}, but {model} records activation {info.activation!r} "
            f"(a {info.kind} network); expected activation left out (the record's is used) or "
            f"{info.activation!r}"
        )
    recorded = info.class_names or None
    if info.kind == "pretrain":
        recorded = ()  # an inpainting network has no classes to name
    if class_names is not None and recorded is not None and tuple(class_names) != recorded:
        raise ValueError(
            f"evaluate: class_names={list(class_names)}, but {model} records class_names {list(recorded)} "
            f"(a {info.kind} network; output channel k is its k-th class); expected class_names left "
            "out (the record's are used, and the data's classes are matched to them by name) or "
            f"{list(recorded)}"
        )
    names = recorded if recorded is not None else class_names
    return info.activation, None if names is None else tuple(names)


def _evaluation_data(
    source: nn.Module | str | Path,
    data: DataConfig | Mapping[str, Any] | Dataset[dict[str, Any]] | str | Path | None,
    overrides: Sequence[str],
) -> _EvaluationData:
    """What ``evaluate`` reads: ``data`` as given, from a file, or the run's own record; then overrides.

    A section other than the run's own record takes the run's slice size where it leaves it out
    (``from_run``): a path's run, or a module's ``inference_meta`` (a bare module records none).
    """
    paths = []
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key == "data" and "=" in item:
            # A mapping for the whole section, as pretrain and finetune take one: each key it sets.
            paths += [field.removeprefix("data.") for field in override_fields(*parse_override(item))]
        elif item.startswith("data."):
            paths.append(item[len("data.") :].split("=", 1)[0].strip())
        else:
            raise ConfigError(
                f"override {item!r}: expected data.KEY=VALUE (e.g. data.image_size=[64, 64]) or data={{...}}"
            )
    if isinstance(data, Dataset):
        if paths:
            raise ValueError("evaluate: overrides apply to a data config; data is a dataset already built")
        return _EvaluationData(data, frozenset())
    overridden = [path.split(".", 1)[0] for path in paths]
    if data is None:
        if isinstance(source, nn.Module):
            raise ValueError("evaluate: data is required with a module (it records no training data)")
        data = _recorded_data(source, overridden=overridden)
        # The run's own record states its fitting; an empty section (no record) takes the model's.
        own = isinstance(data, DataConfig)
    else:
        if isinstance(data, (str, Path)):
            data = _data_section(Path(data))
        elif isinstance(data, Mapping):
            # Left out before validation, as from a run config's file: they are not read.
            data = {key: value for key, value in data.items() if key not in _NOT_FOR_EVALUATION}
        elif not isinstance(data, DataConfig):
            # A list of items or a tensor failed with "'list' object has no attribute 'items'".
            raise TypeError(
                f"evaluate: data is of type {type(data).__name__}; expected a torch Dataset of "
                "{'image', 'label'} items, a DataConfig, a data-section mapping, or the path of a "
                "config file (wrap a list of items in a Dataset)"
            )
        own = False
    recorded = not isinstance(source, nn.Module) or _carried_metadata(source) is not None
    from_run = _left_out(data, overridden) if recorded and not own else frozenset()
    # Validated as a run config's data section, so that errors name fields as the overrides do.
    checked = _read_whole(load_data_section(data, source="evaluate's data argument", overrides=overrides))
    recorded_axis = own and not any(path in ("params", "params.slice_axis") for path in paths)
    return _EvaluationData(checked, from_run, recorded_axis)


def _cut_as_trained(data: DataConfig, recorded: Preprocessing | None) -> DataConfig:
    """The run's own data section with the slice axis its training used, where its record says another.

    A ``dicom`` (or ``ct``, of DICOM series) run without ``orientation`` recorded before another
    ``slice_axis`` than 2 was refused cut its series along their own slices all the same; its
    dataset refuses that record now. Its network is scored on the slices it was trained on.
    """
    axis = data.params.get("slice_axis")
    if recorded is None or recorded.slice_axis is None or axis is None or data.dataset not in ("dicom", "ct"):
        return data
    if isinstance(axis, bool) or not isinstance(axis, int) or axis % 3 == recorded.slice_axis % 3:
        return data
    return data.model_copy(update={"params": {**data.params, "slice_axis": recorded.slice_axis}})


def _fitted_as_trained(
    data: DataConfig, recorded: Preprocessing | None, fields: frozenset[str]
) -> DataConfig:
    """``data`` with the run's ``image_size`` and ``resize_mode`` for the ``fields`` it left out.

    Without them a data section of new scans would be scored on whole slices, a size the network
    met neither in training nor in ``predict`` (which fits every slice as the run did), and its
    Dice would measure that instead, without a word.
    """
    if recorded is None or not fields:
        return data
    run = {"image_size": recorded.image_size, "resize_mode": recorded.resize_mode}
    update = {name: run[name] for name in fields if getattr(data, name) != run[name]}
    if "resize_mode" in update and (update.get("image_size", data.image_size) is None):
        del update["resize_mode"]  # no size to fit to: the mode would only be reported as unused
    return data.model_copy(update=update) if update else data


def _class_names_of(dataset: Dataset[dict[str, Any]]) -> tuple[str, ...]:
    """The classes a dataset given built names (``()``: none): its own ``class_names``, else those of
    the dataset a torch ``Subset`` reads, or that every part of a ``ConcatDataset`` names.

    A ``Subset`` has no ``class_names`` of its own: read as naming none, its labels were scored by
    position against the model's classes, whatever order its dataset lists them in.

    Raises:
        ValueError: Parts of a ``ConcatDataset`` that name different classes, or a different order.
    """
    names = getattr(dataset, "class_names", None)
    if names is not None:
        return tuple(names)
    if isinstance(dataset, TorchSubset):
        return _class_names_of(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        parts = [_class_names_of(part) for part in dataset.datasets]
        if any(part != parts[0] for part in parts):
            listed = "; ".join(f"part {i}: {list(part)}" for i, part in enumerate(parts))
            raise ValueError(
                f"evaluate: data is a ConcatDataset whose parts name different classes ({listed}); "
                "expected every part to list the same classes in the same order, so that label "
                "channel k is one class throughout (inpaintssl.data.views.ClassOrder reorders a part)"
            )
        return parts[0]
    return ()


def _dataset_for(
    data: DataConfig | Dataset[dict[str, Any]], *, split: str, multiple: int, batch_size: int, classes: bool
) -> tuple[Dataset[dict[str, Any]], tuple[str, ...]]:
    """The dataset to score and the classes it names: ``data`` itself, or its config's ``split``.

    ``classes``: whether the classes are asked for (not for an inpainting network, which scores
    no class: a ``ConcatDataset`` whose parts name different ones is no mistake there).

    A dataset given built is checked as a config's split is where its slices are batched: slices
    of different sizes failed in torch's collate ("stack expects each tensor to be equal size").
    """
    if isinstance(data, Dataset):
        if isinstance(data, SliceDataset) and batch_size > 1:
            # Sizes only (size_multiple=1): a slice the network cannot take is named by the
            # network's own check, with the size to fit it to.
            check_slice_sizes(
                data,
                what=f"evaluate's data, a {type(data).__name__} given built, read in batches of {batch_size}",
                size_multiple=1,
                remedy="wrap it in inpaintssl.data.views.FitToSize with a size",
            )
        return data, _class_names_of(data) if classes else ()
    cfg = data
    chosen = build_split(cfg, split, size_multiple=multiple)
    if len(chosen) == 0:
        raise ValueError(f"data.dataset={cfg.dataset!r} has no {split!r} split to evaluate")
    # Every file of the split, read in full before the first batch, so a bad one is named.
    preflight(
        {split: chosen}, progress=False, what=f"data.dataset={cfg.dataset!r}", threads=cfg.check_threads
    )
    return chosen, tuple(chosen.class_names)


def _in_model_class_order(
    dataset: Dataset[dict[str, Any]], *, data_classes: tuple[str, ...], names: tuple[str, ...]
) -> Dataset[dict[str, Any]]:
    """The data's labels in the model's class order; other classes than the model's are refused.

    Output channel ``k`` is the model's ``k``-th class: scored by position against data that list
    their classes otherwise, each Dice column would compare two different tissues under one name.
    """
    if sorted(data_classes) != sorted(names):
        raise ValueError(
            f"evaluate: the model segments {list(names)} but the data's classes are {list(data_classes)}; "
            "expected the same classes: give the data the model's class_names (with label_values "
            "mapping stored label values to them), or evaluate a model trained on these classes"
        )
    if isinstance(dataset, SliceDataset):
        return ClassOrder(dataset, names)
    return _LabelsInOrder(dataset, [data_classes.index(name) for name in names])


class _LabelsInOrder(Dataset[dict[str, Any]]):
    """``dataset``'s items with their label channels taken in ``order``.

    What :class:`~inpaintssl.data.views.ClassOrder` does for a ``SliceDataset``, for a dataset that
    is none (a torch ``Subset`` or ``ConcatDataset`` of one), which lacks the attributes it keeps.
    """

    def __init__(self, dataset: Dataset[dict[str, Any]], order: Sequence[int]) -> None:
        self.dataset = dataset
        self.order = list(order)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]  # a map-style dataset given to evaluate

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        if "label" in item:
            item["label"] = item["label"][self.order]
        return item


def _warn_on_other_spacing(source: str | Path, dataset: Dataset[dict[str, Any]]) -> None:
    """Warn when the evaluated slices' spacing is not the one the run trained at (sec. 2.2)."""
    trained = recorded_spacing(source)
    if trained is None or not isinstance(dataset, SliceDataset):
        return
    seen = training_spacing(dataset)
    if seen is None:
        return
    # Axis by axis where every slice comes from a volume in the training volumes' axis order; either
    # way round where any states none (NumPy, HDF5) or lies otherwise (that is warned about apart).
    orientations = training_orientations(dataset)
    trained_in = recorded_orientations(source)
    known = sum(orientations.values()) == len(dataset) and all(
        same_axis_order(codes, trained_in) for codes in orientations
    )
    if trained.fits(seen.smallest, axes_known=known) and trained.fits(seen.largest, axes_known=known):
        return
    warn_each_time(
        f"evaluate: the data's in-plane voxel spacing as the model sees it, {seen.describe()}, lies "
        f"more than {SPACING_TOLERANCE:.0%} outside the {trained.describe()} of the run {source} "
        "trained on; nothing is resampled, so its scores measure the model at another scale",
        UserWarning,
    )


def _warn_on_other_orientation(source: str | Path, dataset: Dataset[dict[str, Any]]) -> None:
    """Warn when evaluated volumes are read in an orientation the run's training volumes never had."""
    trained = recorded_orientations(source)
    if not trained or not isinstance(dataset, SliceDataset):
        return
    seen = training_orientations(dataset)
    other = {codes: n for codes, n in seen.items() if codes not in trained}
    if not other:
        return
    warn_each_time(
        f"evaluate: the data's volumes are read in orientations the run {source} never trained on "
        f"({describe_orientations(other)}; it trained on {', '.join(trained)}), so the model sees other "
        "planes or mirror images and its scores measure that; read them in the training order "
        "(data.params.orientation of the nifti and ct datasets)",
        UserWarning,
    )


def _check_source(checkpoint_or_model: object) -> None:
    """Refuse what is neither a module nor a path, naming ``evaluate``'s own argument."""
    # os.PathLike's own test (a __fspath__ method), as load_model's.
    if isinstance(checkpoint_or_model, (nn.Module, str)) or hasattr(type(checkpoint_or_model), "__fspath__"):
        return
    raise TypeError(
        "checkpoint_or_model: expected a module or a path (str or os.PathLike) to a run folder, checkpoint "
        f"folder or .safetensors file; found {type(checkpoint_or_model).__name__}"
    )


def _override_list(overrides: object) -> list[str]:
    """``overrides`` as a list of strings, or a ConfigError naming what else was given.

    Raises:
        inpaintssl.config.ConfigError: A bare string (whose letters were read one override each),
            something that is no list, or an item that is no string.
    """
    check_override_list(overrides)  # type: ignore[arg-type]  # the check of pretrain's overrides
    if not isinstance(overrides, Iterable):
        raise ConfigError(
            f"overrides: expected a list of 'data.KEY=VALUE' strings, found {type(overrides).__name__} "
            f"{overrides!r}"
        )
    items = list(overrides)
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(
                f"overrides: expected a list of 'data.KEY=VALUE' strings, found the item {item!r} "
                f"({type(item).__name__})"
            )
    return items


def _check_output(output: object) -> None:
    """Refuse an ``output`` that cannot be written as a CSV file before anything is evaluated.

    A folder (or a file where a folder should be on the way to it) failed only at the write,
    after the whole evaluation had run.
    """
    if output is None:
        return
    if not isinstance(output, str) and not hasattr(type(output), "__fspath__"):
        raise TypeError(
            f"output: expected a CSV file path (str or os.PathLike) or None; found {type(output).__name__}"
        )
    path = Path(output)  # type: ignore[arg-type]  # a str or os.PathLike, as checked
    if path.is_dir():
        raise ValueError(
            f"output={str(output)!r} is a folder; expected the path of a CSV file to write (new, or a "
            f"file to replace), e.g. {str(path / 'eval.csv')!r}"
        )
    above = next((parent for parent in path.parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        raise ValueError(
            f"output={str(output)!r}: {above} is a file, not a folder, so no file can be written "
            "below it; expected a CSV file path in a folder"
        )


@contextlib.contextmanager
def _given_back(module: nn.Module) -> Iterator[None]:
    """Give the caller's ``module`` back as it came, however the block leaves it (or fails).

    The block moves it to the evaluation's device and memory format (``nn.Module.to`` gives
    each parameter new ``.data`` and each buffer a new tensor) and puts it in eval mode. The
    original tensors are kept and put back, so the caller's weights are the very tensors they
    were (on their device, in their layout, any views of them intact), with their gradients,
    and each submodule gets its own training flag back (not the top one's: a submodule kept in
    eval mode on purpose stays so).
    """
    modes = {name: sub.training for name, sub in module.named_modules(remove_duplicate=False)}
    # The gradient's .data too: nn.Module.to keeps the gradient tensor and replaces its .data.
    parameters = [(p, p.data, p.grad, None if p.grad is None else p.grad.data) for p in module.parameters()]
    buffers = [
        (owner, key, buffer)
        for owner in module.modules()
        for key, buffer in owner.named_buffers(recurse=False)
    ]
    try:
        yield
    finally:
        for parameter, data, grad, grad_data in parameters:
            parameter.data = data
            if grad is not None and grad_data is not None:
                grad.data = grad_data
            parameter.grad = grad
        for owner, key, buffer in buffers:
            setattr(owner, key, buffer)
        for name, sub in module.named_modules(remove_duplicate=False):
            sub.training = modes[name]


def evaluate(
    checkpoint_or_model: nn.Module | str | Path,
    data: DataConfig | Mapping[str, Any] | Dataset[dict[str, Any]] | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    split: str = "test",
    activation: str | None = None,
    class_names: Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 9,
    num_workers: int | None = None,
    output: str | Path | None = None,
) -> EvaluationTable:
    """Per-image (and per-volume) metrics of a model on a dataset.

    A segmentation checkpoint gives Dice per class (sec. 2.5.2), the data's classes matched to
    the model's by name (the same classes in another order are reordered; others are refused); a
    torch ``Subset`` or ``ConcatDataset`` names the classes of the datasets it reads, and data
    that name none are scored by position, with a warning where the model records its classes. A
    pretraining checkpoint gives the L2 norm of the inpainted images (Table 2) under one fixed
    corruption for every model: the pretext task seeded 0, each image keyed as in validation, so
    for a run of ``run.seed`` 0 the masks of its validation loss and ``val_inpainting.csv``. A run
    whose data were at another in-plane voxel spacing than ``data`` (beyond the tolerance of
    :mod:`inpaintssl.data.spacing`), or whose volumes were read in other orientations
    (:mod:`inpaintssl.data.orientation`), is evaluated with a warning naming both.

    Args:
        checkpoint_or_model: A run folder, checkpoint folder, ``.safetensors`` file, or a module.
            A module is evaluated itself, not a copy: while ``evaluate`` runs it is moved to
            ``device``, laid out as a run's test pass lays it out (``channels_last`` on the CPU),
            in float32 as a run's weights are (a module cast to float16 or float64 is evaluated
            as the float32 model) and put in eval mode; it is given back as it came, also when
            ``evaluate`` raises: each submodule's training flag, and each parameter's and buffer's
            own tensor (its device, dtype, layout and values) and gradient. Do not use it from
            another thread meanwhile.
        data: A data config (its ``split`` is used), a dataset, or a YAML/JSON file holding a
            data section or a whole run config (its ``data`` section). ``None``: the data the run
            recorded in its ``config.yaml``. ``label_fraction``, ``splits_file`` and
            ``unlabelled`` are ignored wherever they are given (a run config, a data section, a
            mapping, a config or an override): every split is read whole. A data section (or
            overrides) that leaves ``image_size`` or ``resize_mode`` out takes the run's recorded
            one (its ``config.yaml``, or an exported file's metadata), so new scans are scored on
            slices fitted as the network was trained and as ``predict`` fits them; give
            ``image_size: null`` to score whole slices.
        overrides: ``data.KEY=VALUE`` (or ``data={...}``) changes to the data config, as
            ``pretrain`` spells them (``data.image_size=[64, 64]``); not for a dataset.
        split: ``train``, ``val`` or ``test`` when ``data`` is a config.
        activation: For a bare module: ``sigmoid`` (default) or ``softmax`` output. A run,
            checkpoint, exported file or module from :func:`load_model` records its own (its
            ``inference_meta``), and so does the ``model`` of a ``pretrain`` or ``finetune``
            result (its ``checkpoint_meta``): leave it out, or give the same one; another is
            refused. A result's model is scored exactly as its run's best checkpoint (the
            run's ``image_size``, spacing and orientation records included) while that folder
            is there.
        class_names: For a bare module: class names, output channel ``k`` the ``k``-th (default
            from the dataset). A recorded model's are its record's: leave them out, or give the
            same ones in the same order; others are refused.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: Inference batch size. Above 1, a ``SliceDataset`` given built is checked for
            slices of one size, as a data config's split without ``image_size`` is.
        num_workers: DataLoader worker processes reading the data while the model runs (0: this
            process reads it). ``None``: the data config's ``data.num_workers`` (a run's recorded
            one when ``data`` is ``None``), started by its ``data.worker_start_method``; 0 for a
            dataset. The table is the same with any number.
        output: Optional CSV path for the table (written atomically; missing folders are
            created). A folder is refused before anything is evaluated.

    Returns:
        The per-image table (``level`` column: ``image`` or ``volume``).

    Raises:
        inpaintssl.data.base.DataError: A dataset given built whose slices cannot be batched
            (``batch_size``), or malformed data (names the file).
        inpaintssl.config.ConfigError: No data given and none recorded, a malformed data file or
            override (names the file or field), or ``overrides`` that is no list of strings (a
            bare string included).
        TypeError: ``checkpoint_or_model`` neither a module nor a path, ``batch_size`` or
            ``num_workers`` no integer (``True`` included), ``class_names`` a string, or
            ``output`` no path.
        ValueError: An unknown ``split`` or ``device`` (one other than ``auto``, ``cpu``, ``cuda``
            or ``cuda:N``), ``batch_size`` below 1, ``num_workers`` below 0, an ``output`` that is
            a folder, an ``activation`` or ``class_names`` other than the model records, or (for
            a segmentation model) a ``ConcatDataset`` whose parts name different classes. The
            arguments' types, ``split``, ``device``, the counts and ``output`` are checked before
            the data are read or the model is loaded.

    Example:
        >>> table = evaluate("runs/finetune", {"dataset": "mni152"})  # doctest: +SKIP
        >>> table = evaluate("runs/finetune", overrides=["data.image_size=[64, 64]"])  # doctest: +SKIP
        >>> table.select(level="image").mean()["dice_mean"]            # doctest: +SKIP
    """
    # Every argument is checked before the data are read or the model is loaded: a wrong one
    # failed deep inside (a string's letters read as overrides, an output folder refused only
    # once the whole evaluation had run).
    _check_source(checkpoint_or_model)
    check_option(split, ("train", "val", "test"), field="split")
    check_batch_size(batch_size)
    if num_workers is not None:
        check_num_workers(num_workers)
    target_device = resolve_device(device)
    overrides = _override_list(overrides)
    if isinstance(class_names, (str, bytes)):
        raise TypeError(
            f"class_names={class_names!r}: expected a list of class names, output channel k the "
            f"k-th; found a {type(class_names).__name__}, whose letters would each be a class: "
            f"write [{class_names!r}]"
        )
    _check_output(output)
    # "~" as load_model, predict, export and the command line read it: unexpanded, the run's
    # recorded data section was missed (its config looked for under a folder named "~").
    if not isinstance(checkpoint_or_model, nn.Module):
        checkpoint_or_model = Path(checkpoint_or_model).expanduser()
    if output is not None:
        output = Path(output).expanduser()
    evaluated, from_run, recorded_axis = _evaluation_data(checkpoint_or_model, data, overrides)
    # Read as the data config says its data are read; a dataset given built is read here.
    workers, start_method = 0, None
    if isinstance(evaluated, DataConfig):
        workers, start_method = evaluated.num_workers, evaluated.worker_start_method
    if num_workers is not None:
        workers = num_workers
    pretext: dict[str, Any] = {}
    kind = "finetune"
    # Where the model's run records its training spacing and orientations (for the warnings below).
    run_record: str | Path | None = None
    if isinstance(checkpoint_or_model, nn.Module):
        model = checkpoint_or_model
        carried = _carried_metadata(model)
        info, described = (None, "the module") if carried is None else carried
        if info is not None and info.source is not None:
            run_record = info.source
    else:
        # The loader every other entry point uses: a checkpoint's meta.json or an exported
        # file's header metadata tells the architecture, classes and activation.
        model = load_model(checkpoint_or_model)
        info = model.inference_meta
        run_record = checkpoint_or_model
        described = str(checkpoint_or_model)
    if info is None:
        activation = "sigmoid" if activation is None else activation
    else:
        # A module from load_model carries what the path would have told: scored the same.
        kind = info.kind
        pretext = dict(info.pretext)
        activation, class_names = _as_recorded(
            info, activation=activation, class_names=class_names, model=described
        )
        if isinstance(evaluated, DataConfig):
            evaluated = _fitted_as_trained(evaluated, info.preprocessing, from_run)
            if recorded_axis:
                evaluated = _cut_as_trained(evaluated, info.preprocessing)
    # A caller's module is used itself (a copy would double its memory, and not every network
    # copies) and given back as it came; one loaded here is this call's own.
    borrowed = isinstance(checkpoint_or_model, nn.Module)
    with _given_back(model) if borrowed else contextlib.nullcontext():
        # The memory format a run's own test pass uses by default (run.channels_last: auto), so the
        # two agree to the last bit: layouts round convolutions differently.
        channels_last = use_channels_last(target_device, "auto")
        # The batches are float32: a module cast to float64 or float16 failed inside its first
        # convolution ("Input type (torch.FloatTensor) and weight type ... should be the same").
        model = to_memory_format(model.to(target_device, dtype=torch.float32), channels_last=channels_last)
        multiple = int(getattr(model, "size_multiple", 1))
        dataset, data_classes = _dataset_for(
            evaluated, split=split, multiple=multiple, batch_size=batch_size, classes=kind != "pretrain"
        )
        if run_record is not None:
            _warn_on_other_spacing(run_record, dataset)
            _warn_on_other_orientation(run_record, dataset)
        if kind == "pretrain":
            # A checkpoint records the whole pretext section; missing fields take the config's defaults.
            task = build_pretext_task(PretextConfig.model_validate(dict(pretext)), seed=0)
            table = evaluate_inpainting(
                model,
                dataset,
                corrupt=InpaintingObjective(task).corrupt,
                device=target_device,
                batch_size=batch_size,
                channels_last=channels_last,
                num_workers=workers,
                worker_start_method=start_method,
            )
        else:
            names = tuple(class_names) if class_names is not None else data_classes
            if not names:
                raise ValueError("evaluate: no class names (neither in the checkpoint nor in the dataset)")
            if not data_classes and info is not None and info.class_names:
                # Nothing to match by name: said, since data listing the classes in another order
                # would be scored with each Dice column comparing two different tissues.
                warn_each_time(
                    f"evaluate: the data (a {type(dataset).__name__}) name no classes, so the classes "
                    f"{list(names)} that {described} records are scored by position, label channel k "
                    "as output channel k; give the dataset a class_names attribute listing its label "
                    "channels' classes to have them matched by name",
                    UserWarning,
                )
            if data_classes and tuple(data_classes) != names:
                dataset = _in_model_class_order(dataset, data_classes=tuple(data_classes), names=names)
            predictor = build_segmentation_loss("dice", {"activation": activation})
            table = evaluate_segmentation(
                model,
                dataset,
                predict_onehot=predictor.predict_onehot,
                class_names=names,
                device=target_device,
                batch_size=batch_size,
                channels_last=channels_last,
                num_workers=workers,
                worker_start_method=start_method,
            )
    if output is not None:
        table.to_csv(output)
    return table
