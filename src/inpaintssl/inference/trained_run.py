"""The run :func:`~inpaintssl.inference.predict.predict` uses: its segmentation network and its slicing.

:func:`load_prediction_model` loads a fine-tuning run's network (refusing an inpainting one) with
what predicting needs to know of it; :func:`slice_preprocessing` turns the run's recorded
preprocessing (:class:`~inpaintssl.inference.loading.Preprocessing`) into the settings new scans
are read, sliced and fitted with; :func:`check_resample` refuses ``resample`` for runs it cannot
serve.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from inpaintssl.config import DataConfig
from inpaintssl.data.base import DataError
from inpaintssl.data.checks import check_spacing
from inpaintssl.data.dicom import is_echo_number, is_series_choice
from inpaintssl.data.orientation import check_axis_codes
from inpaintssl.data.preprocess import HU_FLOOR, ResizeMode
from inpaintssl.data.volumes import Normalize
from inpaintssl.inference.loading import LoadedModel, Preprocessing, load_model
from inpaintssl.inference.results import PredictionError
from inpaintssl.options import check_option
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "PredictionModel",
    "SlicePreprocessing",
    "check_resample",
    "load_prediction_model",
    "slice_preprocessing",
]


@dataclass(frozen=True)
class PredictionModel:
    """A fine-tuned segmentation network with what predicting needs to know of it."""

    module: LoadedModel
    source: Path
    in_channels: int
    class_names: tuple[str, ...]
    activation: Literal["sigmoid", "softmax"]
    size_multiple: int
    preprocessing: Preprocessing | None


def load_prediction_model(run_or_checkpoint: str | os.PathLike[str], device: torch.device) -> PredictionModel:
    """The segmentation network of a fine-tuning run or checkpoint, on ``device``.

    Raises:
        PredictionError: The checkpoint is a pretraining (inpainting) one.
    """
    path = Path(run_or_checkpoint).expanduser()
    loaded = load_model(path, device=device)
    info = loaded.inference_meta
    if info.kind != "finetune" or info.activation == "none":
        raise PredictionError(
            f"{path} is a {info.kind} (inpainting) checkpoint: it outputs images, not labels; "
            "expected a fine-tuning (segmentation) run folder or checkpoint"
        )
    if info.preprocessing is None:
        warn_each_time(
            f"{path}: no run config.yaml (nor stored preprocessing) found for this checkpoint; predicting "
            "with per-volume z-scoring along axis 2 and no resizing (the nifti dataset's defaults)",
            UserWarning,
        )
    return PredictionModel(
        module=loaded,
        source=path,
        in_channels=info.in_channels,
        class_names=tuple(info.class_names),
        activation="softmax" if info.activation == "softmax" else "sigmoid",
        size_multiple=info.size_multiple,
        preprocessing=info.preprocessing,
    )


@dataclass(frozen=True)
class SlicePreprocessing:
    """How the run's training slices were made, as far as predicting on new scans needs it."""

    slice_axis: int
    normalize: Normalize
    windows: tuple[tuple[float, float], ...] | None
    hu_floor: float
    image_size: tuple[int, int] | None
    resize_mode: ResizeMode
    display: bool
    """Whether slices reach the network turned (the run's ``in_plane`` is ``transpose_flip_rows``)."""
    orientation: str | None
    """The axis codes inputs are read in, or ``None``: as stored."""
    training_orientations: Mapping[str, int]
    rss_echoes: bool = False
    """Whether the run's images were the root-sum-of-squares of the qDESS echoes (``skmtea``, or
    ``dicom`` with ``echo: rss``): an HDF5 input is then read as that of its ``echo1`` and
    ``echo2``, a multi-echo DICOM series as that of its echoes."""
    echo: int | None = None
    """The echo read from a multi-echo DICOM series (1: the shortest echo time); ``None``: a
    multi-echo series is refused, naming its echoes. Single-echo inputs are read as they are."""
    series: str | int | None = None
    """The series read from each DICOM input folder, a whole study's
    (:func:`~inpaintssl.data.dicom.select_series`), as ``predict`` names it; ``None``: each input
    is one series, or a study that :attr:`run_series` chooses from."""
    run_series: str | int | None = None
    """The series the run read from each study (a ``dicom`` or ``ct`` run's ``data.params.series``), which
    a DICOM input that is a study gives when ``predict`` names none; ``None``: the run named none
    (or its ``config.yaml`` is not at hand, as for an exported model)."""
    array_spacing: tuple[float, ...] | None = None
    """The voxel size in mm (stored axis order) the run read its NumPy/HDF5 arrays at (a ``numpy``,
    ``hdf5`` or ``ct`` run's ``data.params.spacing``), which NumPy/HDF5 inputs, stating none, are read
    at where ``predict`` is given no ``spacing``; ``None``: the run stated none (or its
    ``config.yaml`` is not at hand), and such inputs are read at 1 mm."""


def _orientation(recorded: Preprocessing | None, requested: str) -> str | None:
    """``predict(orientation=...)`` resolved: axis codes to read inputs in, or ``None`` (as stored)."""
    if requested == "stored":
        return None
    if requested != "auto":
        try:
            return check_axis_codes(requested, where="orientation")
        except ValueError as exc:
            raise ValueError(f"{exc}, 'auto' or 'stored'") from exc
    seen = {} if recorded is None else recorded.training_orientations
    # One orientation in training: read every input in it. Several: the run itself mixed them
    # (it warned), and no single order is the right one.
    return next(iter(seen)) if len(seen) == 1 else None


def slice_preprocessing(
    recorded: Preprocessing | None,
    *,
    slice_axis: int | None,
    orientation: str = "auto",
    echo: int | None = None,
    series: str | int | None = None,
) -> SlicePreprocessing:
    """The run's ``recorded`` preprocessing, with ``predict``'s ``slice_axis``, ``orientation``,
    ``echo`` and ``series``.

    A run without recorded preprocessing gets the ``nifti`` dataset's defaults (with a warning
    from the loader); one on a plugin dataset, per-volume z-scoring with a warning. ``echo``
    (``None``: the run's own) picks the echo of multi-echo DICOM inputs, ``series`` the series of
    DICOM study folders.

    Raises:
        PredictionError: The run's ``normalize`` is none predict knows.
        ValueError: ``orientation`` is not ``auto``, ``stored`` or valid axis codes; ``echo`` is
            no whole number >= 1, or is given for a run on the echoes' root-sum-of-squares;
            ``series`` is neither text nor a whole number, or is empty.
    """
    pre = recorded if recorded is not None else Preprocessing.from_data_config(DataConfig(dataset="nifti"))
    if echo is not None:
        if not is_echo_number(echo):
            raise ValueError(f"echo={echo!r}; expected an echo number >= 1 (1: the shortest echo time)")
        if pre.channels == "rss_echoes":
            raise ValueError(
                f"echo={echo}: the run trained on the root-sum-of-squares of the qDESS echoes "
                f"({pre.dataset!r}), and reads every multi-echo DICOM series so; one echo alone is "
                "another image than it learned from. Leave echo out"
            )
    if series is not None and not is_series_choice(series):
        raise ValueError(
            f"series={series!r}; expected a SeriesDescription or SeriesInstanceUID (text), or a SeriesNumber "
            "(a whole number)"
        )
    if pre.normalization == "unknown" or pre.channels == "unknown":
        warn_each_time(
            f"the run was trained on the plugin dataset {pre.dataset!r}, whose preprocessing predict "
            "cannot know; predicting with per-volume z-scoring (the nifti dataset's default), right only "
            "if the dataset z-scores each volume too (docs: plugins, 'Predicting with a run trained on "
            "your dataset')",
            UserWarning,
        )
    normalize: Normalize = "volume" if pre.normalization == "unknown" else pre.normalization
    check_option(
        normalize,
        ("volume", "channel", "none"),
        field="the run's data.params.normalize",
        error=PredictionError,
    )
    windows = pre.ct_windows if pre.channels == "ct_windows" else None
    if slice_axis is not None:
        axis = slice_axis
    else:
        axis = 2 if pre.slice_axis is None else pre.slice_axis
    return SlicePreprocessing(
        slice_axis=axis,
        normalize=normalize,
        windows=windows,
        hu_floor=HU_FLOOR if pre.hu_floor is None else pre.hu_floor,
        image_size=pre.image_size,
        resize_mode=pre.resize_mode,
        display=pre.in_plane == "transpose_flip_rows",
        orientation=_orientation(recorded, orientation),
        training_orientations=dict(pre.training_orientations),
        rss_echoes=pre.channels == "rss_echoes",
        echo=echo if echo is not None else pre.echo,
        series=series,
        run_series=_run_series(pre),
        array_spacing=_array_spacing(pre),
    )


_STUDY_DATASETS = ("dicom", "ct")
"""The built-in datasets whose ``series`` parameter names the series read from each case's study."""


def _run_series(pre: Preprocessing) -> str | int | None:
    """The series a ``dicom`` or ``ct`` run read from each case's study folder (``data.params.series``)."""
    recorded = pre.dataset_params.get("series") if pre.dataset in _STUDY_DATASETS else None
    return recorded if is_series_choice(recorded) else None


_ARRAY_DATASETS = ("numpy", "hdf5", "ct")
"""The built-in datasets whose ``spacing`` parameter is the voxel size of arrays that state none."""


def _array_spacing(pre: Preprocessing) -> tuple[float, ...] | None:
    """The voxel size a ``numpy``, ``hdf5`` or ``ct`` run read its arrays at (``data.params.spacing``),
    or ``None`` where it gave none or one its dataset would have refused (it trained at 1 mm then)."""
    recorded = pre.dataset_params.get("spacing") if pre.dataset in _ARRAY_DATASETS else None
    if recorded is None:
        return None
    try:
        return check_spacing(recorded, where=f"the run's data.params.spacing ({pre.dataset})")
    except DataError:
        return None


def check_resample(resample: str, model: PredictionModel, prep: SlicePreprocessing) -> None:
    """Refuse ``resample`` where it is unknown, or ``outside`` for a run it cannot serve.

    Raises:
        ValueError: An unknown ``resample``, or ``outside`` for a run that resized its slices
            to ``data.image_size`` or recorded no training spacing.
    """
    check_option(resample, ("off", "outside"), field="resample")
    if resample == "off":
        return
    if prep.image_size is not None and prep.resize_mode == "resize":
        raise ValueError(
            f"resample={resample!r} needs a run that kept the pixel grid, but {model.source} resized every "
            f"slice to data.image_size={list(prep.image_size)}: the spacing it saw follows each scan's field "
            "of view, which resampling does not change"
        )
    recorded = model.preprocessing.in_plane_spacing_mm if model.preprocessing is not None else None
    if recorded is None:
        raise ValueError(
            f"resample={resample!r} needs the training spacing, but {model.source} recorded none (a run "
            "from before it was recorded, or a checkpoint without its run folder)"
        )
