"""Label maps on new scans: run a trained segmentation model on whole volumes (paper sec. 2.2, 2.7).

:func:`predict` reads each input with the library's own readers (:mod:`inpaintssl.data.readers`),
puts every slice through the preprocessing the run's training data went through, runs the model
on batches of slices, then undoes the preprocessing, so that each label map lies on its input's
own voxel grid (same shape and affine) and can be overlaid on the scan in any viewer.

The preprocessing is the run's, as :func:`~inpaintssl.inference.loading.load_model` reads it
from the run folder's ``config.yaml`` (:class:`~inpaintssl.inference.loading.Preprocessing`):

- **Reading and slicing.** NIfTI (``.nii``/``.nii.gz``), NumPy (``.npy``/``.npz``), HDF5
  (``.h5``/``.hdf5``) and DICOM series (a folder, or one ``.dcm``; HU = pixel x RescaleSlope +
  RescaleIntercept) are read as the ``nifti``/``numpy``/``hdf5``/``ct`` datasets read them: a 3D
  volume ``(X, Y, Z)`` or a channels-last 4D volume ``(X, Y, Z, C)``, sliced along the run's
  ``slice_axis`` (default 2; ``slice_axis=`` overrides it). DICOM series are
  rows x columns x slices, sliced along the slices. First, NIfTI and DICOM inputs are read in the
  axis order of the run's training volumes (``orientation="auto"``; the orientations
  ``manifest.json`` records, :mod:`inpaintssl.data.orientation`), permuted and flipped but not
  resampled; the slice axis then counts the axes of that order, for DICOM series too.
- **Intensities.** The dataset class that trained the model normalises the slices: a
  :class:`~inpaintssl.data.volumes.VolumeSliceDataset` z-scores per volume (``normalize:
  volume``, the paper's MRI rule), per channel (``channel``) or not at all (``none``); a run on
  the ``ct`` dataset stacks its HU windows as channels and z-scores each over the case (sec. 2.2).
  Runs on ``mni152`` (the demo) z-score per volume and slice axially in the template's display
  orientation; runs on ``skmtea`` z-score per volume, so give them the root-sum-of-squares image
  of the two echoes; ``synthetic`` runs take values as stored. A run on a plugin dataset (or a
  checkpoint without its run folder) is predicted with per-volume z-scoring and a warning.
- **Resolution.** A scan whose in-plane spacing lies more than 20 % outside the range the run
  recorded (:mod:`inpaintssl.data.spacing`) is predicted at its own spacing with a warning
  naming both (``resample="off"``), or, with ``resample="outside"``, its slices are resampled
  in-plane (bilinear, after z-scoring) to the nearest spacing in the range, and the class
  probabilities are resampled back to its own grid before they become labels.
- **Slice size.** Every slice is cropped/padded (centred) or resized to ``data.image_size``
  with ``data.resize_mode``, exactly as :class:`~inpaintssl.data.views.FitToSize` did in
  training (:func:`~inpaintssl.data.preprocess.fit_to_size`). Without ``image_size``, slices
  are padded up to the backbone's size multiple (a no-op for the slices the run trained on).

Inverting it: after ``crop_or_pad`` the prediction is cropped/padded back, and pixels the model
never saw (cropped away) are background, unless ``large_slices="sliding_window"`` covers slices
larger than ``data.image_size`` with overlapping windows of that size
(:mod:`inpaintssl.inference.tiling`); after ``resize`` the class probabilities are resized
back bilinearly and then turned into labels. Where the crop cut the input's slices, the labelled
share of the cut edges is reported (:attr:`CasePrediction.cut_edge_share`), with a warning from
:data:`CUT_EDGE_WARN_SHARE` on: anatomy across the cut usually means a scan at another resolution
or field of view than the training data, and volumes that are too small.

Labels: the output is ``uint8``, 0 for background and ``k + 1`` for class ``k`` of the run's
``class_names`` (whatever stored values the training labels used). A softmax head takes the most
probable of background and the classes. A sigmoid head (one independent probability per class,
the paper's) can call a pixel two classes at once; the label map takes, among the classes whose
probability exceeds 0.5, the most probable one, and background where none does. On the model's
own grid this is exactly the prediction :func:`inpaintssl.evaluate` scores wherever the classes
do not overlap.

Outputs, per case: ``<output>/<case>_seg.nii.gz`` with the input's affine and header (DICOM: an
affine built from ImagePositionPatient, ImageOrientationPatient, PixelSpacing and the slice
positions, converted from DICOM's LPS to NIfTI's RAS; NumPy/HDF5: ``diag(spacing)``), optionally
``<case>_prob.nii.gz`` (float32 ``(X, Y, Z, K)``, the K foreground classes' probabilities), and
one ``volumes.csv`` row (``case``, ``file``, ``<class>_ml``: voxel count x voxel volume from the
header's zooms, in mL, :func:`inpaintssl.metrics.tissue_volume` / 1000, sec. 2.7; then the checks
``in_plane_spacing_mm``, ``spacing_fits_training`` and ``cut_edge_share``). Everything is
written to a hidden folder next to ``output`` and moved in only when every case succeeded, so a
failure leaves nothing partial in ``output``.

Example:
    >>> report = predict("runs/brain-ft", ["scans/*.nii.gz"], output="preds")  # doctest: +SKIP
    >>> [c.segmentation.name for c in report.cases]                            # doctest: +SKIP
    ['sub-01_seg.nii.gz', 'sub-02_seg.nii.gz']
    >>> import torch
    >>> scores = torch.tensor([[[[0.9]], [[0.7]], [[0.2]]]])  # sigmoid: two classes above 0.5
    >>> label_map(scores, activation="sigmoid").tolist()
    [[[1]]]
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from inpaintssl.atomic import (
    atomic_path,
    atomic_write_text,
    fsync_dir,
    give_plain_permissions,
    temporary_prefix,
    write_error,
)
from inpaintssl.config import DataConfig
from inpaintssl.data.base import DataError
from inpaintssl.data.cases import is_glob
from inpaintssl.data.ct import CTDataset
from inpaintssl.data.loading import H5Files, open_h5
from inpaintssl.data.orientation import check_axis_codes
from inpaintssl.data.preprocess import HU_FLOOR, ResizeMode, fit_to_size
from inpaintssl.data.readers import (
    READ_ERRORS,
    DicomVolume,
    H5Volume,
    NiftiVolume,
    NumpyVolume,
    Volume,
    import_optional,
    nifti_mm_per_unit,
)
from inpaintssl.data.spacing import SPACING_TOLERANCE, SpacingRange
from inpaintssl.data.views import slice_shape_of, slice_spacing_of
from inpaintssl.data.volumes import Case, Normalize, VolumeSliceDataset
from inpaintssl.inference.loading import LoadedModel, Preprocessing, load_model
from inpaintssl.inference.tiling import sliding_window_probabilities
from inpaintssl.metrics import tissue_volume
from inpaintssl.options import check_option
from inpaintssl.progress import progress_iter
from inpaintssl.training.device import autocast_context, autocast_dtype, resolve_device

__all__ = [
    "CUT_EDGE_WARN_SHARE",
    "CasePrediction",
    "PredictionError",
    "PredictionReport",
    "label_map",
    "predict",
]

_NIFTI = (".nii", ".nii.gz")
_NUMPY = (".npy", ".npz")
_HDF5 = (".h5", ".hdf5")
_DICOM = (".dcm",)

InputPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
Resample = Literal["off", "outside"]
"""Whether :func:`predict` resamples scans whose in-plane spacing lies outside the run's range."""
LargeSlices = Literal["crop", "sliding_window"]
"""What :func:`predict` does with slices larger than a ``crop_or_pad`` run's ``data.image_size``:
``crop`` to the centre as training did, or cover them with overlapping windows of that size."""

CUT_EDGE_WARN_SHARE = 0.05
"""Share of the cut edges' voxels that are labelled from which :func:`predict` warns that the
crop to ``data.image_size`` probably cut anatomy off. Measured on the demo's runs (``inpaintssl
demo``, 112x96 crops of the 2 mm template): the supervised all-labels model given the 1 mm
template (a scan at another resolution, whose brain fills the whole crop) labels 11 % of the cut
edges; on the 2 mm template it was trained on, 0 %; the 5 %-label SSL model's stray labels there
cover 4 %."""


class PredictionError(DataError):
    """An input or model that :func:`predict` cannot use; the message names the file and why."""


@dataclass(frozen=True)
class CasePrediction:
    """What :func:`predict` wrote for one input.

    Attributes:
        case: The case name (the input's file or folder name without suffixes).
        source: The input file (or DICOM folder).
        segmentation: ``<output>/<case>_seg.nii.gz``.
        probabilities: ``<output>/<case>_prob.nii.gz``, or ``None`` when not asked for.
        shape: The label map's shape: the input's spatial grid.
        volumes_ml: Volume of each class in mL.
        cut_edge_voxels: Labelled voxels on the edges where ``crop_or_pad`` cut the input's
            slices down to the model's ``image_size`` (the outermost rows/columns the model saw).
        cut_edge_share: ``cut_edge_voxels`` over all voxels on those edges (0 where nothing was
            cut). Anatomy that reaches the cut usually goes on beyond it, unseen and labelled
            background; ``predict`` warns from :data:`CUT_EDGE_WARN_SHARE` on.
        spacing_mm: The input's own in-plane voxel spacing ``(row_mm, col_mm)``, after any resize
            to ``data.image_size``; where the slices were resampled, ``resampled_to_mm`` is what
            the model saw.
        spacing_fits_training: Whether ``spacing_mm`` lies within the run's recorded training
            range (:mod:`inpaintssl.data.spacing`); ``None`` when the run recorded none.
        resampled_to_mm: The in-plane spacing the input's slices were resampled to before the
            model saw them (``resample="outside"``), or ``None`` where they were not.
        orientation: The input's axis codes as stored (:mod:`inpaintssl.data.orientation`);
            ``None`` for inputs without patient geometry (NumPy, HDF5).
        reoriented_to: The axis codes the input was read in for the model (the training
            volumes'), or ``None`` when it was used as stored.
    """

    case: str
    source: Path
    segmentation: Path
    probabilities: Path | None
    shape: tuple[int, ...]
    volumes_ml: dict[str, float]
    cut_edge_voxels: int = 0
    cut_edge_share: float = 0.0
    spacing_mm: tuple[float, float] | None = None
    spacing_fits_training: bool | None = None
    orientation: str | None = None
    reoriented_to: str | None = None
    resampled_to_mm: tuple[float, float] | None = None

    @property
    def anatomy_cut_by_crop(self) -> bool:
        """Whether enough of the cut edges are labelled for :func:`predict` to have warned."""
        return self.cut_edge_share >= CUT_EDGE_WARN_SHARE


@dataclass(frozen=True)
class PredictionReport:
    """Everything one :func:`predict` call wrote.

    Attributes:
        output: The output folder.
        volumes_csv: ``<output>/volumes.csv``.
        class_names: The run's classes (label ``k + 1`` is ``class_names[k]``).
        cases: One entry per input, in input order.
    """

    output: Path
    volumes_csv: Path
    class_names: tuple[str, ...]
    cases: tuple[CasePrediction, ...]

    def __len__(self) -> int:
        return len(self.cases)


# ---------------------------------------------------------------------------------------------
# The model and the run's preprocessing


@dataclass(frozen=True)
class _Model:
    module: LoadedModel
    source: Path
    in_channels: int
    class_names: tuple[str, ...]
    activation: Literal["sigmoid", "softmax"]
    size_multiple: int
    preprocessing: Preprocessing | None


def _load_model(run_or_checkpoint: str | os.PathLike[str], device: torch.device) -> _Model:
    path = Path(run_or_checkpoint).expanduser()
    loaded = load_model(path, device=device)
    info = loaded.inference_meta
    if info.kind != "finetune" or info.activation == "none":
        raise PredictionError(
            f"{path} is a {info.kind} (inpainting) checkpoint: it outputs images, not labels; "
            "expected a fine-tuning (segmentation) run folder or checkpoint"
        )
    if info.preprocessing is None:
        warnings.warn(
            f"{path}: no run config.yaml (nor stored preprocessing) found for this checkpoint; predicting "
            "with per-volume z-scoring along axis 2 and no resizing (the nifti dataset's defaults)",
            stacklevel=3,
        )
    return _Model(
        module=loaded,
        source=path,
        in_channels=info.in_channels,
        class_names=tuple(info.class_names),
        activation="softmax" if info.activation == "softmax" else "sigmoid",
        size_multiple=info.size_multiple,
        preprocessing=info.preprocessing,
    )


@dataclass(frozen=True)
class _Preprocessing:
    """How the run's training slices were made, as far as predicting on new scans needs it."""

    slice_axis: int
    normalize: Normalize
    windows: tuple[tuple[float, float], ...] | None
    hu_floor: float
    image_size: tuple[int, int] | None
    resize_mode: ResizeMode
    display: bool
    orientation: str | None
    """The axis codes inputs are read in, or ``None``: as stored."""
    training_orientations: Mapping[str, int]


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


def _preprocessing(
    recorded: Preprocessing | None, *, slice_axis: int | None, orientation: str = "auto"
) -> _Preprocessing:
    pre = recorded if recorded is not None else Preprocessing.from_data_config(DataConfig(dataset="nifti"))
    if pre.normalization == "unknown" or pre.channels == "unknown":
        warnings.warn(
            f"the run was trained on the plugin dataset {pre.dataset!r}, whose preprocessing predict "
            "cannot know; predicting with per-volume z-scoring (the nifti dataset's default)",
            stacklevel=3,
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
    return _Preprocessing(
        slice_axis=axis,
        normalize=normalize,
        windows=windows,
        hu_floor=HU_FLOOR if pre.hu_floor is None else pre.hu_floor,
        image_size=pre.image_size,
        resize_mode=pre.resize_mode,
        display=pre.dataset == "mni152",
        orientation=_orientation(recorded, orientation),
        training_orientations=dict(pre.training_orientations),
    )


# ---------------------------------------------------------------------------------------------
# Inputs


def _has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    return path.name.lower().endswith(tuple(suffixes))


def _folder_inputs(folder: Path) -> list[Path]:
    """Every NIfTI, NumPy or HDF5 file in ``folder``; a folder without any is a DICOM series."""
    volumes = sorted(
        p for p in folder.iterdir() if p.is_file() and _has_suffix(p, (*_NIFTI, *_NUMPY, *_HDF5))
    )
    if volumes:
        return volumes
    if not any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir()):
        raise PredictionError(
            f"input folder {folder} is empty; expected NIfTI, NumPy or HDF5 files or a DICOM series"
        )
    return [folder]


def _expand(inputs: InputPaths) -> list[Path]:
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise PredictionError("no inputs given; expected NIfTI/NumPy/HDF5 files, folders or globs")
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if is_glob(text, Path(text).expanduser()):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise PredictionError(f"input pattern {text!r} matched no files")
            for match in matches:
                found.extend(_folder_inputs(match) if match.is_dir() else [match])
            continue
        path = Path(text).expanduser()
        if not path.exists():
            raise PredictionError(f"input {path} does not exist")
        found.extend(_folder_inputs(path) if path.is_dir() else [path])
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", *_NIFTI, *_NUMPY, *_HDF5, *_DICOM):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _case_names(paths: Sequence[Path]) -> list[str]:
    """Unique case names: file names without suffixes, told apart where two clash.

    First by their folders below the common folder (``a/scan.nii.gz``, ``b/scan.nii.gz`` ->
    ``a_scan``, ``b_scan``), then by format (``scan.nii.gz`` beside ``scan.npy`` -> ``scan_nii_gz``,
    ``scan_npy``), then by a counter. A name no other input has is kept as it is. Each case's
    outputs are named after it, so two equal names would write one segmentation over the other.
    """
    names = [_stem(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    by_folder = [
        name if names.count(name) == 1 else "_".join([*path.relative_to(common).parts[:-1], name])
        for name, path in zip(names, resolved)
    ]
    by_format = [
        f"{name}_{path.name[len(_stem(path)) :].lstrip('.').replace('.', '_').lower() or 'folder'}"
        if by_folder.count(name) > 1
        else name
        for name, path in zip(by_folder, paths)
    ]
    kept = {name for name in names if names.count(name) == 1}
    unique: list[str] = []
    for name, told_apart in zip(names, by_format):
        candidate, k = told_apart, 2
        while candidate in unique or (candidate != name and candidate in kept):
            candidate, k = f"{told_apart}_{k}", k + 1
        unique.append(candidate)
    return unique


@dataclass
class _Geometry:
    """Where the output goes in space: affine, the NIfTI header to copy and zooms in stored order."""

    affine: np.ndarray
    header: Any | None
    zooms: tuple[float, float, float]
    qform_code: int | None = None


def _first_dataset(path: Path) -> str:
    with open_h5(path) as handle:
        names: list[str] = []
        handle.visititems(lambda name, node: names.append(name) if hasattr(node, "shape") else None)
    if not names:
        raise PredictionError(f"HDF5 file {path} holds no dataset; expected an image array")
    return str(names[0])


def _first_member(path: Path) -> str:
    with np.load(path) as archive:
        members = list(archive.files)
    if not members:
        raise PredictionError(f"NumPy archive {path} holds no array; expected an image array")
    return str(members[0])


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a damaged file's low-level error (truncated gzip, short data) into one naming it."""
    try:
        yield
    except PredictionError:
        raise
    except DataError as exc:
        # The readers already name the file; one error type for every input predict refuses.
        raise PredictionError(str(exc)) from exc
    except READ_ERRORS as exc:
        raise PredictionError(
            f"input {path} cannot be read ({type(exc).__name__}: {exc}); expected a complete, readable "
            "image file (is it truncated or still being copied?)"
        ) from exc


def _dicom_geometry(volume: DicomVolume) -> _Geometry:
    if volume.patient_affine is None:
        # No patient geometry: keep the voxel sizes, place the grid at the origin.
        return _Geometry(np.diag([*volume.spacing, 1.0]), None, volume.spacing, 1)
    return _Geometry(volume.patient_affine.copy(), None, volume.spacing, 1)


def _zooms3(values: Sequence[float]) -> tuple[float, float, float]:
    padded = [float(v) for v in values[:3]] + [1.0] * max(0, 3 - len(values))
    return padded[0], padded[1], padded[2]


def _warn_spacing_unused(spacing: Sequence[float] | None, path: Path, own: Sequence[float]) -> None:
    if spacing is not None:
        warnings.warn(
            f"input {path}: spacing={tuple(float(v) for v in spacing)} is not used; the file states its "
            f"own voxel size ({' x '.join(f'{v:g}' for v in own)} mm). spacing applies to NumPy/HDF5 inputs",
            UserWarning,
            stacklevel=4,
        )


def _open(
    path: Path, *, prep: _Preprocessing, key: str | None, spacing: Sequence[float] | None
) -> tuple[Volume, _Geometry]:
    """The input's :class:`Volume` (header checked) and its geometry."""
    axis = prep.slice_axis
    if path.is_dir() or _has_suffix(path, _DICOM):
        volume: Volume = DicomVolume(path)
        assert isinstance(volume, DicomVolume)
        _warn_spacing_unused(spacing, path, volume.spacing)
        return volume, _dicom_geometry(volume)
    # As given: a 3-D array needs all three sizes (its slice thickness sets every volume in mL),
    # which the reader checks against the array's rank; a single 2-D slice may take two.
    given = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
    if _has_suffix(path, _NIFTI):
        nifti = NiftiVolume(path, slice_axis=axis)
        mm = nifti_mm_per_unit(nifti.header, path=path)
        zooms = _zooms3([z * mm for z in nifti.header.get_zooms()[: len(nifti.shape[:3])]])
        _warn_spacing_unused(spacing, path, zooms)
        return nifti, _Geometry(nifti.file_affine, nifti.header, zooms)
    if _has_suffix(path, _NUMPY):
        member = key if key is not None else ("image" if path.suffix == ".npy" else _first_member(path))
        volume = NumpyVolume(path, key=member, slice_axis=axis, spacing=given)
    elif _has_suffix(path, _HDF5):
        dataset = key if key is not None else _first_dataset(path)
        volume = H5Volume(path, key=dataset, handles=H5Files(), slice_axis=axis, spacing=given)
    else:
        raise PredictionError(
            f"input {path}: unsupported file type; expected .nii, .nii.gz, .npy, .npz, .h5, .hdf5, "
            ".dcm or a folder (of NIfTI files, or a DICOM series)"
        )
    stored = _zooms3(volume.spacing)
    return volume, _Geometry(np.diag([*stored, 1.0]), None, stored)


def _slices(volume: Volume, prep: _Preprocessing, case: str) -> VolumeSliceDataset:
    """The dataset class the run trained with, over this one unlabelled case."""
    cases = [Case(case, volume, None)]
    if prep.windows is not None:
        return CTDataset(cases, windows=prep.windows, hu_floor=prep.hu_floor, class_names=())
    return VolumeSliceDataset(cases, name="predict", normalize=prep.normalize)


def _channels_hint(channels: int) -> str:
    if channels == 1:
        return "a 3D (X, Y, Z) volume or a 4D volume with one channel"
    return f"a 4D (X, Y, Z, {channels}) volume, channels last"


@dataclass
class _Input:
    case: str
    path: Path
    volume: Volume
    geometry: _Geometry
    dataset: VolumeSliceDataset
    spacing: tuple[float, float] | None
    spacing_fits: bool | None
    orientation: str | None
    resample_to: tuple[float, float] | None
    """In-plane ``(row_mm, col_mm)`` of the dataset's slices to resample to; ``None``: as read."""


def _prepare(
    paths: Sequence[Path],
    *,
    model: _Model,
    prep: _Preprocessing,
    key: str | None,
    spacing: Sequence[float] | None,
    resample: Resample = "off",
) -> list[_Input]:
    """Open every input and check it fits the model before any prediction is made."""
    trained = model.preprocessing.in_plane_spacing_mm if model.preprocessing is not None else None
    prepared = []
    for case, path in zip(_case_names(paths), paths):
        with _reading(path):
            volume, geometry = _open(path, prep=prep, key=key, spacing=spacing)
            stored = volume.stored_orientation
            _orient(volume, prep)
            dataset = _slices(volume, prep, case)
        if dataset.in_channels != model.in_channels:
            raise PredictionError(
                f"input {path}: the model takes {model.in_channels} input channel(s) "
                f"({_channels_hint(model.in_channels)}) but the image gives {dataset.in_channels} "
                f"(shape {volume.shape})"
            )
        seen = _spacing_seen(dataset, prep) if len(dataset) > 0 else None
        fits: bool | None = None
        resample_to: tuple[float, float] | None = None
        if trained is not None and seen is not None:
            fits = trained.fits(seen)
            if not fits and resample == "outside":
                # Without a resize to image_size (_check_resample), ``seen`` is the slices' own spacing.
                resample_to = trained.nearest(seen)
            elif not fits:
                warnings.warn(_spacing_message(path, seen, trained, volume), stacklevel=3)
        prepared.append(_Input(case, path, volume, geometry, dataset, seen, fits, stored, resample_to))
    return prepared


def _resampled_grid(
    grid: tuple[int, int], spacing: tuple[float, float], target: tuple[float, float]
) -> tuple[int, int]:
    """The slice size that covers the same field of view at the ``target`` spacing."""
    return (
        max(1, round(grid[0] * spacing[0] / target[0])),
        max(1, round(grid[1] * spacing[1] / target[1])),
    )


def _shrinks_past_bilinear(grid: tuple[int, int], target: tuple[int, int]) -> bool:
    """Whether resizing ``grid`` to ``target`` shrinks an axis more than twofold.

    Up to twofold, bilinear sampling weighs every input pixel (at exactly two, it averages each
    pair); beyond, it skips pixels and finer detail folds into false patterns (aliasing), so the
    image is low-passed first.
    """
    return any(old > 2 * new for old, new in zip(grid, target))


def _orient(volume: Volume, prep: _Preprocessing) -> None:
    """Read ``volume`` in the run's orientation, or warn where it is none of the training ones."""
    stored = volume.stored_orientation
    if stored is None:
        # NumPy, HDF5, geometry-less DICOM: nothing says how they lie; used as stored.
        return
    if prep.orientation is not None:
        # In the training volumes' axis order, the run's slice axis is theirs, for DICOM too.
        volume.reorient(prep.orientation, slice_axis=prep.slice_axis)
        return
    trained = prep.training_orientations
    if trained and stored not in trained:
        seen = ", ".join(trained)
        warnings.warn(
            f"input {volume.path}: stored in {stored} orientation, which none of the run's training "
            f"volumes had ({seen}); its slices show the anatomy in another plane or mirrored, and the "
            "labels are unreliable: pass orientation=... (--orientation) with the axis codes the model "
            "should see it in",
            stacklevel=4,
        )


def _spacing_seen(dataset: VolumeSliceDataset, prep: _Preprocessing) -> tuple[float, float]:
    """In-plane spacing of the input's slices as the network will see them (after any resize)."""
    row, col = slice_spacing_of(dataset, 0)
    if prep.image_size is None or prep.resize_mode != "resize":
        return row, col
    # Slices shown in the display orientation are transposed before fitting: there the model's
    # rows are the stored columns, so each stored axis pairs with the other target length.
    grid = slice_shape_of(dataset, 0)
    size = prep.image_size[::-1] if prep.display else prep.image_size
    return row * grid[0] / size[0], col * grid[1] / size[1]


def _spacing_message(path: Path, seen: tuple[float, float], trained: SpacingRange, volume: Volume) -> str:
    stated = (
        ""
        if volume.has_geometry
        else " (this file type carries no spacing: give the scan's with spacing=... / --spacing)"
    )
    return (
        f"input {path}: in-plane voxel spacing {seen[0]:.3g} x {seen[1]:.3g} mm as the model sees it"
        f"{stated}, but the run trained on {trained.describe()} (more than {SPACING_TOLERANCE:.0%} "
        "apart). Nothing was resampled, so the anatomy appears at another scale and the labels and "
        "volumes are unreliable: predict with resample='outside' (--resample outside), or resample "
        "the scan to the training spacing first"
    )


# ---------------------------------------------------------------------------------------------
# Prediction


def label_map(scores: torch.Tensor, *, activation: str, threshold: float = 0.5) -> torch.Tensor:
    """Integer labels ``(N, H, W)`` from class scores ``(N, C_out, H, W)``: 0 background, k+1 class k.

    Args:
        scores: Probabilities (or logits, with ``threshold=0``) in the head's layout: K sigmoid
            channels, or K + 1 softmax channels with background first.
        activation: ``sigmoid`` or ``softmax``.
        threshold: A sigmoid class is present above this (0.5 for probabilities, 0 for logits).

    Returns:
        ``int64`` labels. Softmax: the arg-max channel. Sigmoid: among the classes above
        ``threshold``, the highest scoring (classes may overlap in a sigmoid head); background
        where none is.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[[[0.2, 0.6]], [[0.4, 0.9]]]])  # (1, K=2, 1, 2)
        >>> label_map(probs, activation="sigmoid").tolist()
        [[[0, 2]]]
    """
    if activation == "softmax":
        return scores.argmax(dim=1)
    present = scores > threshold
    best = scores.masked_fill(~present, -math.inf).argmax(dim=1) + 1
    return torch.where(present.any(dim=1), best, torch.zeros_like(best))


def _to_display(planes: torch.Tensor) -> torch.Tensor:
    # The mni152 dataset's orientation: the second in-plane axis becomes the rows, flipped upwards.
    return planes.transpose(-1, -2).flip(-2)


def _from_display(planes: torch.Tensor) -> torch.Tensor:
    return planes.flip(-2).transpose(-1, -2)


def _model_size(shape: tuple[int, int], prep: _Preprocessing, multiple: int) -> tuple[int, int]:
    if prep.image_size is not None:
        return prep.image_size
    return (-(-shape[0] // multiple) * multiple, -(-shape[1] // multiple) * multiple)


def _cut_edges(grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor | None:
    """``(H, W)`` host mask of the model-grid pixels on a border where the centred crop cut the slice."""
    if grid[0] <= size[0] and grid[1] <= size[1]:
        return None
    edges = torch.zeros(size, dtype=torch.bool)
    if grid[0] > size[0]:
        edges[[0, -1], :] = True
    if grid[1] > size[1]:
        edges[:, [0, -1]] = True
    return edges


def _place(volume: np.ndarray, plane: np.ndarray, *, axis: int, index: int, rank: int) -> None:
    """Write one slice back where :meth:`Volume.read` took it from."""
    if rank == 2:
        volume[...] = plane
        return
    where: list[Any] = [slice(None)] * 3
    where[axis] = index
    volume[tuple(where)] = plane


@torch.no_grad()
def _predict_case(
    item: _Input,
    *,
    model: _Model,
    prep: _Preprocessing,
    device: torch.device,
    amp: torch.dtype | None,
    batch_size: int,
    probabilities: bool,
    large_slices: LargeSlices,
    overlap: float,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """The case's label map (and probabilities) on its grid; its labelled and all cut-edge voxels."""
    volume, dataset = item.volume, item.dataset
    rank = 2 if len(volume.shape) == 2 else 3
    spatial = volume.shape[:rank]
    labels = np.zeros(spatial, dtype=np.uint8)
    k = len(model.class_names)
    probs = np.zeros((*spatial, k), dtype=np.float32) if probabilities else None
    resize_back = prep.image_size is not None and prep.resize_mode == "resize"
    on_cut_edges = torch.zeros((), dtype=torch.int64, device=device)  # summed on the device: no syncs
    cut_edges = 0

    def forward(batch: torch.Tensor) -> torch.Tensor:
        try:
            with autocast_context(device, amp):
                logits: torch.Tensor = model.module(batch)
        except (RuntimeError, ValueError) as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                raise
            # A network's own failure names neither the scan nor the size it was given.
            backbone = model.module.inference_meta.backbone
            raise PredictionError(
                f"input {item.path}: the network ({backbone}) failed on slices of {tuple(batch.shape[-2:])} "
                f"pixels: {type(exc).__name__}: {exc}; expected slices the network "
                "takes (some need more than a few pixels at their deepest level: use larger slices, or "
                "data.image_size in training)"
            ) from exc
        if logits.shape[1] != (k + 1 if model.activation == "softmax" else k):
            raise PredictionError(
                f"{model.source}: the model outputs {logits.shape[1]} channels, which does not fit its "
                f"{k} class(es) with a {model.activation} head"
            )
        return logits.float()

    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        with _reading(item.path):
            planes = [dataset[i]["image"] for i in indices]
        own_grid = (int(planes[0].shape[-2]), int(planes[0].shape[-1]))
        if item.resample_to is not None:
            # In-plane to the training spacing, bilinear; the probabilities come back the same way.
            assert item.spacing is not None  # the spacing the resampling was decided on
            resampled = _resampled_grid(own_grid, item.spacing, item.resample_to)
            smooth = _shrinks_past_bilinear(own_grid, resampled)
            planes = [
                fit_to_size(p, resampled, mode="resize", kind="image", antialias=smooth) for p in planes
            ]
        if prep.display:
            planes = [_to_display(p) for p in planes]
        grid = (int(planes[0].shape[-2]), int(planes[0].shape[-1]))
        size = _model_size(grid, prep, model.size_multiple)
        mode: ResizeMode = prep.resize_mode if prep.image_size is not None else "crop_or_pad"
        larger = grid[0] > size[0] or grid[1] > size[1]
        tiled = larger and not resize_back and large_slices == "sliding_window"
        logits = None
        if not tiled:
            fitted = torch.stack([fit_to_size(p, size, mode=mode, kind="image") for p in planes])
            logits = forward(fitted.to(device))
        prob_maps: torch.Tensor | None = None
        if logits is None:
            # Windows of the training size over the whole slice (inference/tiling.py): nothing cut.
            scores = sliding_window_probabilities(
                torch.stack(planes).to(device),
                size=size,
                probabilities_of=lambda windows: model.module.probabilities(forward(windows)),
                batch_size=batch_size,
                overlap=overlap,
            )
            hard = label_map(scores, activation=model.activation, threshold=0.5)
            prob_maps = scores if probabilities or item.resample_to is not None else None
        elif resize_back:
            # Resample probabilities, not labels, so class borders move smoothly back to the input grid.
            on_model_grid = model.module.probabilities(logits)
            scores = torch.stack([fit_to_size(p, grid, mode="resize", kind="image") for p in on_model_grid])
            hard = label_map(scores, activation=model.activation, threshold=0.5)
            prob_maps = scores if probabilities else None
        else:
            # Labels from the logits, exactly as evaluate() scores them, then crop/pad back; pixels
            # the model never saw are background.
            hard = label_map(logits, activation=model.activation, threshold=0.0)
            edges = _cut_edges(grid, size)
            if edges is not None:
                # Counted on the host; only the mask goes to the device, and the sum stays there.
                cut_edges += int(edges.sum()) * len(planes)
                on_cut_edges += ((hard > 0) & edges.to(hard.device)).sum()
            hard = fit_to_size(hard.to(torch.uint8), grid, mode="crop_or_pad", kind="label")
            if probabilities or item.resample_to is not None:
                on_model_grid = model.module.probabilities(logits)
                prob_maps = torch.stack(
                    [fit_to_size(p, grid, mode="crop_or_pad", kind="label") for p in on_model_grid]
                )
        if prep.display:
            hard = _from_display(hard)
            prob_maps = None if prob_maps is None else _from_display(prob_maps)
        if item.resample_to is not None:
            assert prob_maps is not None  # computed on every path when resampling
            smooth = _shrinks_past_bilinear((int(prob_maps.shape[-2]), int(prob_maps.shape[-1])), own_grid)
            scores = torch.stack(
                [fit_to_size(p, own_grid, mode="resize", kind="image", antialias=smooth) for p in prob_maps]
            )
            hard = label_map(scores, activation=model.activation, threshold=0.5)
            prob_maps = scores if probabilities else None
        hard_np = hard.to(torch.uint8).cpu().numpy()
        foreground = None
        if prob_maps is not None:
            foreground = (prob_maps[:, 1:] if model.activation == "softmax" else prob_maps).cpu().numpy()
        for j, i in enumerate(indices):
            index = dataset.slice_indices[i]
            _place(labels, hard_np[j], axis=volume.slice_axis, index=index, rank=rank)
            if probs is not None and foreground is not None:
                _place(
                    probs, np.moveaxis(foreground[j], 0, -1), axis=volume.slice_axis, index=index, rank=rank
                )
    change = volume.reorientation
    if change is not None:
        # Back onto the input's own grid, where its affine and header describe the voxels.
        labels = np.ascontiguousarray(change.invert(labels))
        probs = None if probs is None else np.ascontiguousarray(change.invert(probs))
    return labels, probs, (int(on_cut_edges), cut_edges)


# ---------------------------------------------------------------------------------------------
# Writing


def _cut_message(item: _Input, prep: _Preprocessing, voxels: int, edge_voxels: int) -> str:
    return (
        f"input {item.path}: {voxels} of the {edge_voxels} voxels ({100 * voxels / edge_voxels:.0f} %) on "
        f"the edges where its slices were cropped to the model's data.image_size="
        f"{list(prep.image_size or ())} (centred crop_or_pad, as in training) are labelled: the anatomy "
        "probably goes on beyond the crop, where every voxel is labelled background, so the volumes "
        "are too small. Predict the whole slice with large_slices='sliding_window' (--large-slices "
        "sliding_window) if the scan has the training data's voxel spacing; otherwise resample it"
    )


def _nifti(data: np.ndarray, geometry: _Geometry, *, dtype: type[np.generic]) -> Any:
    nib = import_optional("nibabel", extra="nifti", purpose="writing NIfTI predictions")
    header = None if geometry.header is None else geometry.header.copy()
    image = nib.Nifti1Image(data.astype(dtype, copy=False), geometry.affine, header=header)
    image.header.set_data_dtype(dtype)
    # The input's intensity scaling and display range describe the scan, not these values.
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0.0, 0.0
    if geometry.header is None and geometry.qform_code is not None:
        image.set_qform(geometry.affine, code=geometry.qform_code)
        image.set_sform(geometry.affine, code=geometry.qform_code)
    return image


def _save(image: Any, target: Path) -> None:
    nib = import_optional("nibabel", extra="nifti", purpose="writing NIfTI predictions")
    with atomic_path(target) as tmp:
        # nibabel picks the format from the suffix, so save under the real name, then move.
        named = tmp.with_name(tmp.name + ".nii.gz")
        try:
            nib.save(image, named)
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)


def _volumes_ml(
    labels: np.ndarray, zooms: tuple[float, float, float], names: Sequence[str]
) -> dict[str, float]:
    mask_3d = labels if labels.ndim == 3 else labels[..., None]
    return {name: tissue_volume(mask_3d == k + 1, zooms) / 1000.0 for k, name in enumerate(names)}


def _volumes_csv(cases: Sequence[CasePrediction], names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # After the volumes, the checks a reader of many rows wants beside them (see CasePrediction).
    checks = [
        "in_plane_spacing_mm",
        "spacing_fits_training",
        "cut_edge_share",
        "orientation",
        "reoriented_to",
        "resampled_to_mm",
    ]
    writer.writerow(["case", "file", *(f"{n}_ml" for n in names), *checks])
    for c in cases:
        spacing = "" if c.spacing_mm is None else f"{c.spacing_mm[0]:.6g}x{c.spacing_mm[1]:.6g}"
        fits = "" if c.spacing_fits_training is None else str(c.spacing_fits_training).lower()
        volumes = (repr(c.volumes_ml[n]) for n in names)
        resampled = (
            "" if c.resampled_to_mm is None else f"{c.resampled_to_mm[0]:.6g}x{c.resampled_to_mm[1]:.6g}"
        )
        orientation = [c.orientation or "", c.reoriented_to or "", resampled]
        writer.writerow(
            [c.case, str(c.source), *volumes, spacing, fits, f"{c.cut_edge_share:.4g}", *orientation]
        )
    return buffer.getvalue()


def _commit(staging: Path, output: Path) -> None:
    """Move the finished files into ``output``: one rename when it is new, else all or nothing.

    Into an existing folder, the files they replace are first set aside; if any move fails, the
    new files are taken out again and the old ones put back, so ``output`` is as it was.
    """
    give_plain_permissions(staging)
    if not output.exists():
        os.replace(staging, output)
        fsync_dir(output.parent)
        return
    # volumes.csv last: its presence says the case files it lists are all in place.
    names = sorted((p.name for p in staging.iterdir()), key=lambda n: (n == "volumes.csv", n))
    folders = [name for name in names if (output / name).is_dir() and not (output / name).is_symlink()]
    if folders:
        raise PredictionError(
            f"output {output} holds a folder {folders[0]!r} where a prediction file goes; expected a file "
            "or nothing there (nothing was written)"
        )
    aside = Path(tempfile.mkdtemp(prefix=temporary_prefix(output), suffix=".old.tmp", dir=output.parent))
    replaced: list[str] = []
    placed: list[str] = []
    try:
        for name in names:
            if (output / name).exists() or (output / name).is_symlink():
                os.replace(output / name, aside / name)
                replaced.append(name)
            os.replace(staging / name, output / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            (output / name).unlink(missing_ok=True)
        for name in replaced:
            os.replace(aside / name, output / name)
        aside.rmdir()
        raise
    fsync_dir(output)
    shutil.rmtree(aside)
    staging.rmdir()


def _check_resample(resample: str, model: _Model, prep: _Preprocessing) -> None:
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


def _check_output(output: Path) -> None:
    if output.is_symlink() and not output.exists():
        # Caught here because the final rename onto a dangling link would fail only after every case ran.
        raise PredictionError(
            f"output {output} is a symbolic link to {os.readlink(output)}, which does not exist; expected "
            "a folder (new or existing): create the link's target or choose another output"
        )
    if output.exists() and not output.is_dir():
        raise PredictionError(f"output {output} is a file; expected a folder (new or existing)")


def predict(
    run_or_checkpoint: str | os.PathLike[str],
    inputs: InputPaths,
    *,
    output: str | os.PathLike[str],
    batch_size: int = 16,
    device: str = "auto",
    probabilities: bool = False,
    progress: bool = True,
    slice_axis: int | None = None,
    key: str | None = None,
    spacing: Sequence[float] | None = None,
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto",
    large_slices: LargeSlices = "crop",
    overlap: float = 0.5,
    orientation: str = "auto",
    resample: Resample = "off",
) -> PredictionReport:
    """Predict a label map for every input scan with a fine-tuned run (see the module docstring).

    Args:
        run_or_checkpoint: A fine-tuning run folder (its ``checkpoints/best``) or a checkpoint
            folder inside one; the run's ``config.yaml`` gives the preprocessing.
        inputs: Files, folders (every NIfTI inside, or a DICOM series), or glob patterns; one or
            a list.
        output: Folder for ``<case>_seg.nii.gz``, ``<case>_prob.nii.gz`` and ``volumes.csv``
            (created if missing; files of the same name are replaced).
        batch_size: Slices per forward pass.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        probabilities: Also write the per-class probability maps.
        progress: Show a progress bar over cases (on a terminal).
        slice_axis: Slice along this axis of 3D/4D arrays instead of the run's ``slice_axis``.
        key: HDF5 dataset or ``.npz`` member holding the image (default: the first one).
        spacing: Voxel size in mm, in stored axis order, for NumPy/HDF5 inputs (default 1 mm):
            3 values for a volume, 2 or 3 for a single 2-D slice (whose thickness is then 1 mm);
            NIfTI and DICOM inputs carry their own.
        amp: Mixed precision on CUDA (``auto``: bf16 where supported, else fp16; ``off``: float32).
        large_slices: For a ``crop_or_pad`` run, slices larger than its ``data.image_size``:
            ``crop`` them to the centre, as training did (the rest is background), or cover
            them with overlapping windows of that size, blended (``sliding_window``,
            :mod:`inpaintssl.inference.tiling`).
        overlap: Share of a window that neighbouring sliding windows overlap by at least.
        orientation: The axis order NIfTI and DICOM inputs are read in before slicing: ``auto``
            (the one every training volume had, when the run recorded a single one; else as
            stored), ``stored``, or axis codes such as ``"RAS"`` (:mod:`inpaintssl.data.orientation`).
            Inputs are permuted and flipped, never resampled, and the label maps are written on
            each input's own grid.
        resample: ``off``: scans are used at their own voxel spacing, and one more than 20 %
            outside the run's training range (:mod:`inpaintssl.data.spacing`) gets a warning.
            ``outside``: such a scan's slices are resampled in-plane (bilinear) to the nearest
            spacing in the range before the model sees them, and the class probabilities are
            resampled back onto the scan's own grid before they become labels; scans within
            the range are predicted exactly as with ``off``. Needs a run that keeps the pixel
            grid (``crop_or_pad``, or no ``data.image_size``) and recorded its spacing.

    Returns:
        What was written, with each case's class volumes in mL.

    Raises:
        PredictionError: No input matched; an input is unreadable, truncated or of an unsupported
            type; its channel count does not fit the model; the checkpoint is a pretraining
            (inpainting) one; ``output`` is a file or a link to nothing. The message names the file.
        inpaintssl.checkpoint.CheckpointError: The run folder or checkpoint is missing, damaged or
            has no architecture metadata (from :func:`~inpaintssl.inference.loading.load_model`).
        inpaintssl.data.DataError: The readers' own checks (array rank, NaN pixels, a missing HDF5
            key, ...). All three are ``ValueError`` subclasses.
        ValueError: ``batch_size`` below 1, an unknown ``device``, ``large_slices`` or
            ``resample``, ``overlap`` outside ``[0, 1)``, a ``spacing`` that is not 2 or 3 finite
            sizes > 0, or ``resample="outside"`` with a run that resized its slices or recorded no
            spacing.

    Example:
        >>> report = predict("runs/ft", "scans/", output="preds", progress=False)  # doctest: +SKIP
        >>> report.cases[0].volumes_ml                                            # doctest: +SKIP
        {'csf': 152.3, 'gm': 611.0, 'wm': 498.7}
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected a positive integer")
    check_option(large_slices, ("crop", "sliding_window"), field="large_slices")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap={overlap}; expected a share of the window in [0, 1)")
    if spacing is not None:
        values = tuple(float(v) for v in spacing)
        if len(values) not in (2, 3) or not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"spacing={values}; expected 2 or 3 finite voxel sizes in mm, each > 0")
    out = Path(output).expanduser()
    _check_output(out)
    target = resolve_device(device)
    model = _load_model(run_or_checkpoint, target)
    prep = _preprocessing(model.preprocessing, slice_axis=slice_axis, orientation=orientation)
    _check_resample(resample, model, prep)
    prepared = _prepare(_expand(inputs), model=model, prep=prep, key=key, spacing=spacing, resample=resample)
    amp_dtype = autocast_dtype(target, amp)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(out), suffix=".predict.tmp", dir=out.parent))
    except OSError as exc:
        raise write_error(f"predictions to {out}", exc) from exc
    try:
        done: list[CasePrediction] = []
        for item in progress_iter(prepared, desc="predict", unit="case", disable=not progress, lines=True):
            labels, probs, (cut, edge_voxels) = _predict_case(
                item,
                model=model,
                prep=prep,
                device=target,
                amp=amp_dtype,
                batch_size=batch_size,
                probabilities=probabilities,
                large_slices=large_slices,
                overlap=overlap,
            )
            seg_name = f"{item.case}_seg.nii.gz"
            _save(_nifti(labels, item.geometry, dtype=np.uint8), staging / seg_name)
            prob_name = None
            if probs is not None:
                prob_name = f"{item.case}_prob.nii.gz"
                _save(_nifti(probs, item.geometry, dtype=np.float32), staging / prob_name)
            done.append(
                CasePrediction(
                    case=item.case,
                    source=item.path,
                    segmentation=out / seg_name,
                    probabilities=None if prob_name is None else out / prob_name,
                    shape=labels.shape,
                    volumes_ml=_volumes_ml(labels, item.geometry.zooms, model.class_names),
                    cut_edge_voxels=cut,
                    cut_edge_share=cut / edge_voxels if edge_voxels else 0.0,
                    spacing_mm=item.spacing,
                    spacing_fits_training=item.spacing_fits,
                    orientation=item.orientation,
                    reoriented_to=None if item.volume.reorientation is None else item.volume.orientation,
                    resampled_to_mm=item.resample_to,
                )
            )
            if done[-1].anatomy_cut_by_crop:
                warnings.warn(_cut_message(item, prep, cut, edge_voxels), stacklevel=2)
        atomic_write_text(staging / "volumes.csv", _volumes_csv(done, model.class_names))
        _commit(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PredictionReport(
        output=out, volumes_csv=out / "volumes.csv", class_names=model.class_names, cases=tuple(done)
    )
