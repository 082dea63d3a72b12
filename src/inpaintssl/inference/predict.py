"""Label maps on new scans: run a trained segmentation model on whole volumes (paper sec. 2.2, 2.7).

:func:`predict` reads each input with the library's own readers (:mod:`inpaintssl.data.readers`),
puts every slice through the preprocessing the run's training data went through, runs the model
on batches of slices, then undoes the preprocessing, so that each label map lies on its input's
own voxel grid (same shape and affine) and can be overlaid on the scan in any viewer.

The preprocessing is the run's, as :func:`~inpaintssl.inference.loading.load_model` reads it
from the run folder's ``config.yaml`` (:class:`~inpaintssl.inference.loading.Preprocessing`):

- **Reading and slicing.** NIfTI (``.nii``/``.nii.gz``), MetaImage (``.mha``/``.mhd``), NRRD
  (``.nrrd``/``.nhdr``), NumPy (``.npy``/``.npz``), HDF5 (``.h5``/``.hdf5``) and DICOM series (a
  folder, or one ``.dcm``, Enhanced files included; HU = pixel x RescaleSlope + RescaleIntercept;
  compressed ones too, :mod:`~inpaintssl.data.dicom_pixels`; with ``series``, one series of a
  study's folder) are read as the ``nifti``/``metaimage``/``nrrd``/``numpy``/``hdf5``/``ct``
  datasets read them: a 3D volume ``(X, Y, Z)`` or a channels-last 4D volume ``(X, Y, Z, C)``,
  sliced along the run's ``slice_axis`` (default 2; ``slice_axis=`` overrides it). DICOM series
  are rows x columns x slices, sliced along the slices. First, NIfTI, MetaImage, NRRD and DICOM
  inputs are read in the axis order of the run's training volumes (``orientation="auto"``; the orientations
  ``manifest.json`` records, :mod:`inpaintssl.data.orientation`), permuted and flipped but not
  resampled; the slice axis then counts the axes of that order, for DICOM series too. A 2-D
  NIfTI slice with an sform or qform is read as ``(X, Y, 1)`` and turned within its plane to the
  training slices' rows and columns; one in another plane is used as stored, with a warning.
- **Intensities.** The dataset class that trained the model normalises the slices: a
  :class:`~inpaintssl.data.volumes.VolumeSliceDataset` z-scores per volume (``normalize:
  volume``, the paper's MRI rule), per channel (``channel``) or not at all (``none``); a run on
  the ``ct`` dataset stacks its HU windows as channels and z-scores each over the case (sec. 2.2).
  Runs on ``mni152`` (the demo) z-score per volume and slice axially in the template's display
  orientation; runs on ``skmtea`` z-score per volume the root-sum-of-squares of the two echoes,
  which predict computes from an SKM-TEA HDF5 file or a multi-echo DICOM series (the scanner's
  qDESS series); ``synthetic`` runs take values as stored. Of a multi-echo DICOM series, a run
  reads the echo it trained on (``dicom`` dataset, ``echo: k``) or ``echo``. A run on a plugin dataset (or a
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

Labels: the output is ``uint8`` (``uint16`` for a run of more than 255 classes:
:func:`~inpaintssl.inference.labelling.label_dtype`), 0 for background and ``k + 1`` for class
``k`` of the run's ``class_names`` (whatever stored values the training labels used). A softmax
head takes the most probable of background and the classes. A sigmoid head (one independent
probability per class, the paper's) can call a pixel two classes at once; the label map takes,
among the classes whose probability exceeds 0.5, the most probable one, and background where none
does. On the model's own grid this is exactly the prediction :func:`inpaintssl.evaluate` scores
wherever the classes do not overlap.

Outputs, per case: ``<output>/<case>_seg.nii.gz`` with the input's affine and header (DICOM: an
affine built from ImagePositionPatient, ImageOrientationPatient, PixelSpacing and the slice
positions, converted from DICOM's LPS to NIfTI's RAS; NumPy/HDF5: ``diag(spacing)``), optionally
``<case>_prob.nii.gz`` (float32 ``(X, Y, Z, K)``, the K foreground classes' probabilities), and one
``volumes.csv`` row (``case``, ``file``, ``<class>_ml``: voxel count x voxel volume from the
header's zooms, in mL, :func:`inpaintssl.metrics.tissue_volume` / 1000, sec. 2.7; on a sheared grid
(a gantry tilt) the voxel volume is the affine's ``|det|``, not the product of its column lengths,
:func:`~inpaintssl.inference.inputs.sheared_voxel_mm3`; then the checks
``in_plane_spacing_mm``, ``spacing_fits_training`` and ``cut_edge_share``, and last the ``model``
that predicted it); with ``t2=True`` also ``<case>_t2.nii.gz``, the T2 map in ms of a qDESS or
multi-echo spin-echo series, and each class's mean T2 in ``volumes.csv`` (``<class>_t2_ms``, after
the volumes). With ``output_format="metaimage"`` or ``"nrrd"`` the maps are ``<case>_seg.mha`` /
``.nrrd`` (and ``_prob``) instead, in the same world positions with ITK's and 3D Slicer's LPS
geometry (:mod:`inpaintssl.data.writers`; a 2-D input's map as one slice, ``(X, Y, 1)``); with
``"dicom_seg"`` a DICOM series' maps are DICOM SEG objects of that series, ``<case>_seg.dcm`` (and
``_prob.dcm``, fractional), which viewers overlay on it (:mod:`~inpaintssl.inference.dicom_seg`, the
``dicom-seg`` extra); with ``"rtstruct"`` a DICOM series' label map is an RT Structure Set of that
series, ``<case>_seg.dcm``, its classes as ROIs of contours for planning systems
(:mod:`~inpaintssl.inference.rtstruct`; no probabilities); with ``"input"`` each DICOM, MetaImage or
NRRD input's maps are in its own kind (DICOM SEG; ``.mha`` also for an ``.mhd``; ``.nrrd`` also for
an ``.nhdr``), every other input's in NIfTI. Everything is written to a hidden folder next to
``output`` (``.<output name>.<random>.predict.tmp``) and moved in only when every case succeeded, so
a failure leaves nothing partial in ``output``; a predict killed mid-write leaves that folder, and
the next predict into the same ``output`` removes it
(:func:`~inpaintssl.inference.writing.remove_stale_staging`), never a running predict's; one killed
while it moved its files into an existing ``output`` is undone by the next predict into it, which
puts back the files it had set aside
(:func:`~inpaintssl.inference.writing.restore_interrupted_commits`). Where it
holds cases already finished, and the next predict is the same prediction (weights, options), that
predict takes the finished cases it shares and predicts only the rest (``resume``,
:mod:`~inpaintssl.inference.resume`): a cohort predict stopped at case 900 of 1,000 goes on from
there, without reading the 900 scans again.

Memory and files read twice: every input is checked before any is predicted
(:mod:`~inpaintssl.inference.preparation`), which reads it in full, but at most two inputs' images
are held in memory at a time: after its check each input's decompressed volume is released, and it
is read again for its case (on a GPU, on a background thread while the case before is predicted:
``read_ahead``, :mod:`~inpaintssl.inference.read_ahead`) and released once its case is done. So the
model, the input being predicted, the next input and the label maps (with ``probabilities``, the
probability maps too) are what a predict over a hundred scans holds, not the hundred scans. A file
that changes between its check and its prediction (another size or modification time, or gone;
compared before its case is predicted and again after) is refused with a :class:`PredictionError`
naming it, with its size and time then and now; like every failure, it leaves nothing partial in
``output``.

The steps live in their own modules: the run's network and preprocessing
(:mod:`~inpaintssl.inference.trained_run`), finding, naming and opening the inputs
(:mod:`~inpaintssl.inference.inputs`), reading them as the training scans were and checking them
(:mod:`~inpaintssl.inference.preparation`), the model's pass over each case
(:mod:`~inpaintssl.inference.labelling`, :mod:`~inpaintssl.inference.slice_grids`), and the files
written (:mod:`~inpaintssl.inference.writing`); this module runs them in order.

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

import builtins
import functools
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar

import numpy as np

from inpaintssl.atomic import atomic_write_text
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.preflight import check_threads_to_use
from inpaintssl.data.scan_parameter_table import ScanParameterTable, read_scan_parameter_table
from inpaintssl.inference.dicom_reference import check_class_names
from inpaintssl.inference.dicom_seg import DICOM_SEG_TYPES, DicomSegType, write_dicom_seg
from inpaintssl.inference.inputs import Geometry, case_names, expand_inputs, reading
from inpaintssl.inference.inputs import InputPaths as InputPaths
from inpaintssl.inference.labelling import LargeSlices as LargeSlices
from inpaintssl.inference.labelling import label_map as label_map
from inpaintssl.inference.labelling import predict_case
from inpaintssl.inference.preparation import PreparedInput, check_unchanged, prepare_inputs
from inpaintssl.inference.preparation import Resample as Resample
from inpaintssl.inference.read_ahead import ReadAhead, ReadAheadMode
from inpaintssl.inference.results import CUT_EDGE_WARN_SHARE as CUT_EDGE_WARN_SHARE
from inpaintssl.inference.results import CasePrediction as CasePrediction
from inpaintssl.inference.results import PredictionError as PredictionError
from inpaintssl.inference.results import PredictionReport as PredictionReport
from inpaintssl.inference.results import SkippedInput as SkippedInput
from inpaintssl.inference.resume import (
    discard_records,
    kept_cases,
    prediction_identity,
    record_case,
    take_finished,
)
from inpaintssl.inference.rtstruct import write_rtstruct
from inpaintssl.inference.skipping import SKIPPED_CSV, BadInputs, check_skipped_table, skipped_csv_text
from inpaintssl.inference.t2_maps import check_qdess_parameters, check_t2_input, class_mean_t2, fitted_t2_map
from inpaintssl.inference.trained_run import (
    PredictionModel,
    SlicePreprocessing,
    check_resample,
    load_prediction_model,
    slice_preprocessing,
)
from inpaintssl.inference.volume_table import VOLUMES_CSV, check_volume_table
from inpaintssl.inference.write_ahead import WriteAhead
from inpaintssl.inference.writing import (
    OUTPUT_FORMATS,
    VOLUME_FORMATS,
    check_not_inputs,
    check_output,
    check_writable,
    commit,
    file_format_for,
    restore_interrupted_commits,
    save_volume,
    staging_folder,
    volumes_csv,
    volumes_ml,
)
from inpaintssl.inference.writing import OutputFormat as OutputFormat
from inpaintssl.listing import first_and_more
from inpaintssl.options import check_option
from inpaintssl.progress import progress_iter
from inpaintssl.training.device import autocast_dtype, resolve_device
from inpaintssl.training.evaluation import check_batch_size
from inpaintssl.warning_format import warn_each_time

T = TypeVar("T")

__all__ = [
    "CUT_EDGE_WARN_SHARE",
    "CasePrediction",
    "PredictionError",
    "PredictionReport",
    "SkippedInput",
    "label_map",
    "predict",
]


def _warning_category(name: str) -> type[Warning]:
    """The built-in warning class a case record names; ``UserWarning`` for any other name."""
    found = getattr(builtins, name, None)
    return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning


def _cut_message(item: PreparedInput, prep: SlicePreprocessing, voxels: int, edge_voxels: int) -> str:
    return (
        f"input {item.path}: {voxels} of the {edge_voxels} voxels ({100 * voxels / edge_voxels:.0f} %) on "
        f"the edges where its slices were cropped to the model's data.image_size="
        f"{list(prep.image_size or ())} (centred crop_or_pad, as in training) are labelled: the anatomy "
        "probably goes on beyond the crop, where every voxel is labelled background, so the volumes "
        "are too small. Predict the whole slice with large_slices='sliding_window' (--large-slices "
        "sliding_window) if the scan has the training data's voxel spacing; otherwise resample it"
    )


def _write_case(
    item: PreparedInput,
    labels: np.ndarray,
    probs: np.ndarray | None,
    seg: Path,
    prob: Path | None,
    file_format: str,
    class_names: tuple[str, ...],
    recorded: Callable[[], None] | None = None,
    dicom_seg_type: DicomSegType = "binary",
) -> None:
    """Write a case's label map (and probability maps) into the staging folder, on its input's grid.

    ``recorded`` is called once every file is written: it records the case as finished
    (:func:`~inpaintssl.inference.resume.record_case`).
    """
    if file_format == "dicom_seg":
        assert isinstance(item.volume, DicomVolume)  # check_writable refused every other input
        write_dicom_seg(
            labels,
            item.volume,
            seg,
            class_names=class_names,
            probabilities=probs,
            probabilities_target=prob,
            dicom_seg_type=dicom_seg_type,
        )
    elif file_format == "rtstruct":
        assert isinstance(item.volume, DicomVolume)  # check_writable refused every other input
        write_rtstruct(labels, item.volume, seg, class_names=class_names)
    else:
        # The label map's own type: uint8, or wider for a run of more classes (label_dtype).
        save_volume(labels, item.geometry, seg, file_format=file_format, dtype=labels.dtype.type)
        if probs is not None and prob is not None:
            save_volume(probs, item.geometry, prob, file_format=file_format, dtype=np.float32, channels=True)
    if recorded is not None:
        recorded()


_DICOM_OBJECTS = MappingProxyType(
    {"dicom_seg": ("DICOM SEG", "SegmentLabel"), "rtstruct": ("RT Structure Set", "ROIName")}
)
"""The formats of :data:`OUTPUT_FORMATS` that hold class names as DICOM LO values -> the object, the
attribute (:func:`~inpaintssl.inference.dicom_reference.check_class_names`)."""


def _check_class_names_fit(model: PredictionModel, formats: Sequence[str]) -> None:
    """Refuse, before any case is predicted, a run whose class names the DICOM objects of ``formats``
    cannot hold: the writer would refuse them only after the prediction."""
    for file_format in dict.fromkeys(formats):
        if file_format in _DICOM_OBJECTS:
            what, field = _DICOM_OBJECTS[file_format]
            check_class_names(model.class_names, owner=f"{model.source}", what=what, field=field)


def _write_t2_map(values: np.ndarray, geometry: Geometry, target: Path, file_format: str) -> None:
    save_volume(values, geometry, target, file_format=file_format, dtype=np.float32)


def _qdess_table(
    path: str | os.PathLike[str] | None, qdess: Mapping[str, float], *, t2: bool
) -> ScanParameterTable | None:
    """``qdess_parameters_csv``, read (:func:`read_scan_parameter_table`) and checked against the other
    options: it serves ``t2``, and gives none of the parameters ``qdess_parameters`` gives."""
    if path is None:
        return None
    if not t2:
        raise ValueError(
            f"qdess_parameters_csv={str(path)!r}: its scan parameters serve the qDESS T2 map, which only "
            "t2=True (--t2) computes; ask for it, or leave the table out"
        )
    table = read_scan_parameter_table(path, what="qdess_parameters_csv")
    both = [key for key in qdess if key in table.columns]
    if both:
        columns = [table.columns[key] for key in both]
        raise ValueError(
            f"qdess_parameters gives {both} for every scan, and the table {table.path} gives them per scan "
            f"(columns {columns}); give each scan parameter one way"
        )
    return table


def _warn_if_no_row_names_a_case(table: ScanParameterTable | None, cases: Sequence[str]) -> None:
    """A table none of whose rows is a case predicted is almost surely keyed by other names."""
    if table is None or not cases or any(case in table for case in cases):
        return
    warn_each_time(
        f"qdess_parameters_csv {table.path}: none of its {len(table)} rows ({table.case_column} "
        f"{first_and_more(map(repr, table.cases), limit=3)}) names a case predicted "
        f"({first_and_more(map(repr, cases), limit=3)}), so it gives no scan its parameters; a case is "
        "its input's file or folder name without suffixes",
        UserWarning,
    )


def _is_path(value: object) -> bool:
    """Whether ``value`` is a ``str`` or an ``os.PathLike`` (its own test: a ``__fspath__`` method)."""
    return isinstance(value, str) or hasattr(type(value), "__fspath__")


def _input_list(inputs: object) -> list[str | os.PathLike[str]]:
    """``predict``'s ``inputs`` as a list of paths, or an error naming the argument and the item.

    Raises:
        TypeError: ``inputs`` or an item of it is no path.
        PredictionError: ``inputs`` is an empty list.

    Made a list here, so an iterator given is read once.
    """
    if _is_path(inputs):
        return [inputs]  # type: ignore[list-item]  # a str or os.PathLike, as checked
    expected = "a file, folder or glob pattern (str or os.PathLike), or a list of them"
    if isinstance(inputs, (bytes, Mapping)) or not isinstance(inputs, Iterable):
        raise TypeError(f"inputs: expected {expected}; found {type(inputs).__name__}")
    items = list(inputs)
    if not items:
        raise PredictionError("inputs=[]: no inputs given; expected NIfTI/NumPy/HDF5 files, folders or globs")
    for index, item in enumerate(items):
        if not _is_path(item):
            raise TypeError(f"inputs[{index}]={item!r}: expected {expected}; found {type(item).__name__}")
    return items


def _check_large_slices(large_slices: str, model: PredictionModel, prep: SlicePreprocessing) -> None:
    """Refuse ``sliding_window`` for a run that resized its slices, which would silently not use it.

    Such a run saw each slice whole, resized to ``data.image_size``, and its slices are predicted
    the same way: no slice is larger than the model's input once resized, so no window would
    cover anything the crop cuts off. Refused, not ignored, as ``resample="outside"`` is
    (:func:`~inpaintssl.inference.trained_run.check_resample`): an option asked for and not
    applied would read in the report as if it had been.
    """
    if large_slices == "sliding_window" and prep.image_size is not None and prep.resize_mode == "resize":
        raise ValueError(
            f"large_slices='sliding_window' covers slices larger than a cropping run's data.image_size with "
            f"windows of that size, but {model.source} resized every slice to data.image_size="
            f"{list(prep.image_size)} (resize_mode: resize): each slice is predicted whole, resized as in "
            "training, and nothing is cut off to cover; leave large_slices at 'crop' (--large-slices crop)"
        )


def _spacing_values(spacing: object) -> tuple[float, ...]:
    """``predict``'s ``spacing`` as floats; one number, text or a 2D array is refused naming it."""
    flat = isinstance(spacing, np.ndarray) and spacing.ndim == 1
    if not flat and (isinstance(spacing, (str, bytes, np.ndarray)) or not isinstance(spacing, Iterable)):
        # 0.8 failed as "'float' object is not iterable", "0.5 0.5 2" as a float of '.'.
        raise TypeError(
            f"spacing={spacing!r}: expected 2 or 3 voxel sizes in mm, a list such as [0.5, 0.5, 2.0]; "
            f"found {type(spacing).__name__}"
        )
    given = list(spacing)  # type: ignore[call-overload]
    try:
        return tuple(float(v) for v in given)
    except (TypeError, ValueError):
        raise TypeError(f"spacing={given!r}: expected 2 or 3 voxel sizes in mm, each a number") from None


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
    check_threads: int | None = None,
    read_ahead: ReadAheadMode = "auto",
    output_format: OutputFormat = "nifti",
    dicom_seg_type: DicomSegType = "binary",
    echo: int | None = None,
    t2: bool = False,
    qdess_parameters: Mapping[str, float] | None = None,
    qdess_parameters_csv: str | os.PathLike[str] | None = None,
    series: str | int | None = None,
    resume: bool = True,
    skip_bad_inputs: bool = False,
) -> PredictionReport:
    """Predict a label map for every input scan with a fine-tuned run (see the module docstring).

    Args:
        run_or_checkpoint: A fine-tuning run folder (its ``checkpoints/best``) or a checkpoint
            folder inside one; the run's ``config.yaml`` gives the preprocessing.
        inputs: Files, folders (every NIfTI inside, or a DICOM series), or glob patterns; one or
            a list.
        output: Folder for ``<case>_seg.nii.gz``, ``<case>_prob.nii.gz`` and ``volumes.csv``
            (created if missing; files of the same name are replaced, and a case predicted again
            loses the files an earlier predict wrote for it that this one does not write, in any
            format (its probabilities, when not asked for now; its label map in another
            ``output_format``), but a ``volumes.csv`` there keeps the rows of the cases not
            predicted now: :mod:`~inpaintssl.inference.volume_table`; a case whose row there names
            another input gets a warning naming both).
        batch_size: Slices per forward pass.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        probabilities: Also write the per-class probability maps.
        progress: Show progress bars over the inputs checked and the cases predicted (on a
            terminal; in a log, a line per case predicted).
        slice_axis: Slice along this axis of 3D/4D arrays instead of the run's ``slice_axis``.
        key: HDF5 dataset or ``.npz`` member holding the image (default: the one called
            ``image``, as the ``numpy`` and ``hdf5`` datasets read, or the file's only array);
            NIfTI, MetaImage, NRRD and DICOM inputs hold one image, and warn that it is not used.
        spacing: Voxel size in mm, in stored axis order, for NumPy/HDF5 inputs (default 1 mm):
            3 values for a volume, 2 or 3 for a single 2-D slice (whose thickness is then 1 mm);
            NIfTI, MetaImage, NRRD and DICOM inputs carry their own, and warn that it is not used.
        amp: Mixed precision on CUDA (``auto``: bf16 where supported, else fp16; ``off``: float32;
            ``bf16``, ``fp16``); another value is refused on every device.
        large_slices: For a ``crop_or_pad`` run, slices larger than its ``data.image_size``:
            ``crop`` them to the centre, as training did (the rest is background), or cover
            them with overlapping windows of that size, blended (``sliding_window``,
            :mod:`inpaintssl.inference.tiling`). A run that resized its slices to
            ``data.image_size`` (``resize_mode: resize``) cuts nothing off: ``sliding_window`` is
            refused for it, as ``resample="outside"`` is.
        overlap: Share of a window that neighbouring sliding windows overlap by at least.
        orientation: The axis order NIfTI, MetaImage, NRRD and DICOM inputs are read in before slicing:
            ``auto`` (the one every training volume had, when the run recorded a single one; else
            as stored), ``stored``, or axis codes such as ``"RAS"``
            (:mod:`inpaintssl.data.orientation`).
            Inputs are permuted and flipped, never resampled, and the label maps are written on
            each input's own grid.
        resample: ``off``: scans are used at their own voxel spacing, and one more than 20 %
            outside the run's training range (:mod:`inpaintssl.data.spacing`) gets a warning.
            ``outside``: such a scan's slices are resampled in-plane (bilinear) to the nearest
            spacing in the range before the model sees them, and the class probabilities are
            resampled back onto the scan's own grid before they become labels; scans within
            the range are predicted exactly as with ``off``. Needs a run that keeps the pixel
            grid (``crop_or_pad``, or no ``data.image_size``) and recorded its spacing.
        check_threads: Inputs read and checked at once before any is predicted, each on a
            thread that holds its decompressed scan while it checks it; ``1``: one after the
            other. ``None``: the cores the process may use, 8 at most
            (:func:`~inpaintssl.data.preflight.default_check_threads`). HDF5 and DICOM inputs
            are checked in the calling thread (h5py holds one lock over every HDF5 call; pydicom
            parses in Python). Errors and warnings are the same, in input order.
        read_ahead: Read (decompress) the next input on a background thread while a case is
            predicted (``on``), or each in its own case's turn (``off``). ``auto``: on when
            predicting on a GPU, whose host thread mostly waits for the card; off on the CPU,
            whose cores the prediction keeps busy (no faster there beyond the noise,
            ``benchmarks/bench_predict_writes.py``). HDF5 and DICOM inputs are read in their own
            turn either way (:mod:`~inpaintssl.inference.read_ahead`).
        output_format: The label and probability maps' files: ``nifti`` (``.nii.gz``, the
            input's header copied where it has one), ``metaimage`` (``.mha``), ``nrrd``
            (``.nrrd``), ``dicom_seg`` (``.dcm``, DICOM series only: a DICOM SEG of the series),
            ``rtstruct`` (``.dcm``, DICOM series only: an RT Structure Set of the series, contours
            for planning systems; without ``probabilities``), or ``input``: each DICOM, MetaImage
            or NRRD input's own kind, NIfTI for the rest
            (NumPy, HDF5, NIfTI).
        dicom_seg_type: The type of each DICOM SEG label map (``output_format="dicom_seg"``, or
            ``"input"`` for DICOM inputs): ``binary``, a frame per class and slice, which every
            viewer of SEG reads; or ``labelmap`` (Label Map Segmentation Storage), a frame per
            slice holding the class numbers (:mod:`~inpaintssl.inference.dicom_seg`). The
            probabilities' SEG is ``FRACTIONAL`` either way.
        echo: The echo read from each multi-echo DICOM series (a qDESS, multi-echo spin-echo or
            Dixon series: several echoes at every slice position), 1 being the shortest echo
            time. ``None``: the run's own (a ``dicom`` run's ``data.params.echo``); a run without
            one refuses such a series, naming its echoes. A run on the echoes'
            root-sum-of-squares (``skmtea``, or ``dicom`` with ``echo: rss``) reads every
            multi-echo series so, and takes no ``echo``. Single-echo inputs are read as they are.
        t2: Also compute a T2 map from each input's echoes, every input being a DICOM series
            that holds them (:mod:`~inpaintssl.inference.t2_maps`): a qDESS series (two
            echoes; the analytic model of the paper, each voxel's T1 that of its predicted
            tissue) or a multi-echo spin-echo series of three echoes or more (the decay fitted,
            the first echo left out); or an SKM-TEA scan's HDF5 file (qDESS, every scan
            parameter given in ``qdess_parameters`` or ``qdess_parameters_csv``). Written as
            ``<case>_t2.nii.gz`` (``.mha``, ``.nrrd`` with those formats), and each class's mean T2
            over its predicted voxels in ``volumes.csv`` (``<class>_t2_ms``) and
            :attr:`CasePrediction.mean_t2_ms`.
            The model labels the echo it reads (``echo``, or the echoes' root-sum-of-squares).
        qdess_parameters: Scan parameters of the qDESS T2 model (``tr_ms``, ``te_ms``,
            ``flip_angle_deg``, ``gl_area``, ``tg_us``: :func:`~inpaintssl.metrics.qdess_t2`'s
            keywords) that override, or stand in for, what each qDESS series states
            (:mod:`~inpaintssl.data.dicom_acquisition`; the spoiler's ``gl_area`` and ``tg_us``
            are GE private tags, which other exports lack). Only with ``t2``.
        qdess_parameters_csv: A CSV table of such scan parameters, a row per case, for a cohort
            whose scans differ (:mod:`~inpaintssl.data.scan_parameter_table`): a ``case`` column
            holding each input's case name, or SKM-TEA's ``all_metadata.csv`` as it is (its
            ``MTR_ID`` is the case name of ``MTR_005.h5``). Each case's row overrides, or stands
            in for, what its series states; an empty cell or no row gives nothing. It and
            ``qdess_parameters`` give different parameters. Only with ``t2``.
        series: Each DICOM input folder is a whole study (its series' files together, or in
            subfolders, as PACS and CD exports hold them), and this names the series predicted
            from it: its ``SeriesDescription`` (without case), ``SeriesInstanceUID``, or
            ``SeriesNumber`` (a whole number) (:func:`~inpaintssl.data.dicom.select_series`). A
            study with none or several such series is refused, listing its series; so is an
            input that is not DICOM. ``None``: the run's own (a ``dicom`` or ``ct`` run's
            ``data.params.series``) for a DICOM input that is a study (several series in its
            folder, or its series in subfolders); a series alone is read as it is (with a
            warning where it is not the run's), and so is every DICOM input of a run without one.
        resume: Take the cases that an interrupted predict into the same ``output`` finished
            (killed, preempted, stopped by Ctrl-C or by an error at a later case) instead of
            predicting them again, when it was the same prediction: the same weights,
            preprocessing, options, device kind and library version. A case is taken by its
            name, its input's files unchanged since (:mod:`~inpaintssl.inference.resume`), and
            its input is opened but not read in full again; the other inputs may differ (a scan
            left out, scans added). Its other cases are checked and
            predicted. ``False``: predict every case; what an interrupted predict kept is
            removed. Either way nothing is written into ``output`` until every case is done.
        skip_bad_inputs: Leave out each input that fails a check (any input error under Raises
            below: unreadable, blank, the wrong channel count, changed after its check, ...) with
            a warning, and predict the others, instead of stopping at the first
            (:mod:`~inpaintssl.inference.skipping`). Those left out are in
            :attr:`PredictionReport.skipped` and ``<output>/skipped.csv`` (written, without rows
            where none was); ``volumes.csv`` gets rows of the cases predicted. Errors of the model, the
            device or the output still stop the call, as does leaving every input out.

    Returns:
        What was written, with each case's class volumes in mL.

    Raises:
        PredictionError: No input matched; an input is unreadable, truncated or of an unsupported
            type, is blank (one value in every voxel) or holds NaN/Inf voxels (every input is read
            in full and checked as training checks its images, before any is predicted); its
            channel count does not fit the model; an input file changed (size or modification
            time) or vanished between its check and its prediction; the checkpoint is a
            pretraining (inpainting) one; ``output`` is a file or a link to nothing, or a case's
            output file there is one of the inputs (a folder predicted into itself); a MetaImage or
            NRRD label map cannot describe an input's grid (an affine axis of length 0); a DICOM
            SEG or RT Structure Set is asked for an input that is not a DICOM series, or one
            without ``StudyInstanceUID``, ``SeriesInstanceUID`` or ``FrameOfReferenceUID``, or a
            slice without ``ImagePositionPatient``, ``ImageOrientationPatient`` or
            ``PixelSpacing`` (a SEG also without highdicom installed, or of one echo of a
            multi-echo Enhanced file), or for a run whose class names are no DICOM LO value (more
            than 64 characters, a backslash, a control character: checked before any input is
            read where ``output_format`` names the format); a
            multi-echo DICOM series without an echo to read; with ``t2``, an input that is no
            qDESS or multi-echo spin-echo DICOM series (two echoes, or three or more), or a qDESS
            series without every scan parameter stated or given, or whose row of
            ``qdess_parameters_csv`` is damaged; ``output`` holds a ``volumes.csv`` of other
            classes, or a ``volumes.csv`` or ``skipped.csv`` that no predict wrote. The message
            names the file.
            With ``skip_bad_inputs``, such an input is left out instead, and this is raised only
            where every input is.
        inpaintssl.checkpoint.CheckpointError: The run folder or checkpoint is missing, damaged or
            has no architecture metadata (from :func:`~inpaintssl.inference.loading.load_model`).
        inpaintssl.data.DataError: The readers' own checks (array rank, a missing HDF5 key, ...);
            a ``qdess_parameters_csv`` that is missing or no table of scan parameters.
            All three are ``ValueError`` subclasses.
        TypeError: ``inputs`` (or one of its items) or ``output`` is no path (str or
            os.PathLike), ``batch_size`` is no integer (``True`` included), ``overlap`` is no
            number, or ``spacing`` is not a list of numbers (one number, text); checked before
            the model is loaded.
        ValueError: ``probabilities`` with ``output_format="rtstruct"``; an unknown ``dicom_seg_type``,
            or one other than ``binary`` with a format that writes no DICOM SEG; ``qdess_parameters`` or
            ``qdess_parameters_csv`` without ``t2``, or both giving one parameter; an ``echo`` that is no
            whole number >= 1, or one for a run on the echoes' root-sum-of-squares; ``batch_size`` or
            ``check_threads`` below 1, an unknown ``device`` (one other than ``auto``, ``cpu``,
            ``cuda`` or ``cuda:N``), ``amp``,
            ``large_slices``, ``resample``, ``read_ahead`` or ``output_format``, ``overlap``
            outside ``[0, 1)``, a ``spacing`` that is not 2 or 3 finite sizes > 0,
            ``resample="outside"`` with a run that resized its slices or recorded no spacing, or
            ``large_slices="sliding_window"`` with a run that resized its slices.

    Example:
        >>> report = predict("runs/ft", "scans/", output="preds", progress=False)  # doctest: +SKIP
        >>> report.cases[0].volumes_ml                                            # doctest: +SKIP
        {'csf': 152.3, 'gm': 611.0, 'wm': 498.7}
    """
    # Each argument is refused before the model is loaded, naming it: "4" and None failed as
    # "'<' not supported", None inputs as "'NoneType' object is not iterable".
    check_batch_size(batch_size)
    inputs = _input_list(inputs)
    if not _is_path(output):
        raise TypeError(f"output: expected a folder path (str or os.PathLike); found {type(output).__name__}")
    # Resolved once, for the check of every input.
    check_workers = check_threads_to_use(check_threads, argument="check_threads")
    check_option(large_slices, ("crop", "sliding_window"), field="large_slices")
    check_option(read_ahead, ("auto", "on", "off"), field="read_ahead")
    check_option(output_format, (*OUTPUT_FORMATS, "input"), field="output_format")
    if output_format == "rtstruct" and probabilities:
        raise ValueError(
            "probabilities=True with output_format='rtstruct': an RT Structure Set holds contours, not "
            "probabilities; write them as a fractional DICOM SEG (output_format='dicom_seg') or NIfTI, or "
            "leave probabilities off"
        )
    check_option(dicom_seg_type, DICOM_SEG_TYPES, field="dicom_seg_type")
    if dicom_seg_type != "binary" and output_format not in ("dicom_seg", "input"):
        raise ValueError(
            f"dicom_seg_type={dicom_seg_type!r} with output_format={output_format!r}: it is the type of a "
            "DICOM SEG, which only output_format='dicom_seg' (or 'input', for DICOM inputs) writes; ask "
            "for one of those, or leave dicom_seg_type out"
        )
    qdess = check_qdess_parameters(qdess_parameters)
    if qdess and not t2:
        raise ValueError(
            f"qdess_parameters={qdess}: they serve the qDESS T2 map, which only t2=True (--t2) computes; "
            "ask for it, or leave them out"
        )
    qdess_table = _qdess_table(qdess_parameters_csv, qdess, t2=t2)
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real):
        # "0.5" or None failed as "'<=' not supported", naming no argument.
        raise TypeError(
            f"overlap={overlap!r}: expected a number, a share of the window in [0, 1); "
            f"found {type(overlap).__name__}"
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap={overlap}; expected a share of the window in [0, 1)")
    if spacing is not None:
        values = _spacing_values(spacing)
        if len(values) not in (2, 3) or not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"spacing={values}; expected 2 or 3 finite voxel sizes in mm, each > 0")
    out = Path(output).expanduser()
    check_output(out)
    target = resolve_device(device)
    amp_dtype = autocast_dtype(target, amp)
    model = load_prediction_model(run_or_checkpoint, target)
    _check_class_names_fit(model, [output_format])  # "input": once the inputs' formats are known
    # A predict killed while it moved its files in left them set aside: put back before the output's
    # tables are checked, as they were before it.
    restore_interrupted_commits(out)
    check_volume_table(out, model.class_names)
    check_skipped_table(out)
    prep = slice_preprocessing(
        model.preprocessing, slice_axis=slice_axis, orientation=orientation, echo=echo, series=series
    )
    check_resample(resample, model, prep)
    _check_large_slices(large_slices, model, prep)
    paths = expand_inputs(inputs, studies=prep.series is not None or prep.run_series is not None)
    check_not_inputs(out, list(zip(case_names(paths), paths)))
    bad = BadInputs(skip=skip_bad_inputs)
    identity = None
    if resume:
        options = {
            "batch_size": batch_size,
            "device": target.type,
            "amp": str(amp_dtype),
            "probabilities": probabilities,
            "key": key,
            "spacing": spacing,
            "large_slices": large_slices,
            "overlap": overlap,
            "resample": resample,
            "output_format": output_format,
            "dicom_seg_type": dicom_seg_type,
            "t2": t2,
            "qdess_parameters": sorted(qdess.items()),
            "qdess_parameters_csv": None if qdess_table is None else qdess_table.sha256,
        }
        identity = prediction_identity(
            model.module.state_dict(),
            preprocessing=(prep, model.preprocessing, model.class_names, model.activation),
            options=options,
        )
    # Taken over before the inputs are checked: the cases it holds finished need no second check.
    with staging_folder(out, resume=identity) as staging:
        kept = {} if identity is None else kept_cases(staging, identity, output=out)
        prepared = prepare_inputs(
            paths,
            model=model,
            prep=prep,
            key=key,
            spacing=spacing,
            resample=resample,
            threads=check_workers,
            progress=progress,
            checked_before={case: entry.fingerprints for case, entry in kept.items()},
            bad_inputs=bad,
        )
        prepared, _ = _passing(
            prepared,
            lambda item: check_writable(
                item.volume, item.geometry, file_format_for(item.volume, output_format), source=item.path
            ),
            bad,
        )
        # Refused before any case is predicted, as every input check is.
        t2_fits = None
        if t2:
            _warn_if_no_row_names_a_case(qdess_table, [item.case for item in prepared])
            prepared, t2_fits = _passing(
                prepared,
                lambda item: check_t2_input(
                    item.volume, item.path, qdess_parameters=qdess, qdess_table=qdess_table, case=item.case
                ),
                bad,
            )
        bad.check_some_left(len(prepared))
        formats = [file_format_for(item.volume, output_format) for item in prepared]
        _check_class_names_fit(model, formats)
        finished: dict[str, CasePrediction] = {}
        if identity is not None:
            finished = take_finished(staging, kept, {item.case: item.fingerprints for item in prepared})
        by_case = dict(finished)
        todo = [position for position, item in enumerate(prepared) if item.case not in finished]
        for item in prepared:
            if item.case in finished:
                # What its full check warned, which this predict does not read it again to find.
                for message, category in kept[item.case].check_warnings:
                    warn_each_time(message, _warning_category(category))
            if item.case in finished and finished[item.case].anatomy_cut_by_crop:
                case = finished[item.case]
                # The warning the interrupted predict gave for it, given again for this report.
                edge_voxels = round(case.cut_edge_voxels / case.cut_edge_share)
                warn_each_time(_cut_message(item, prep, case.cut_edge_voxels, edge_voxels), UserWarning)
        reads_ahead = read_ahead == "on" or (read_ahead == "auto" and target.type != "cpu")
        with WriteAhead() as writes, ReadAhead() as reads:
            for turn, position in enumerate(
                progress_iter(todo, desc="predict", unit="case", disable=not progress, lines=True)
            ):
                item = prepared[position]
                try:
                    # Released after its check, the input is read again here: it must still be what was
                    # checked.
                    check_unchanged(item)
                    try:
                        with reading(item.path):
                            reads.wait(item.volume)
                        if reads_ahead and turn + 1 < len(todo):
                            # Decompressed on the reader's thread while this case is predicted.
                            reads.start(prepared[todo[turn + 1]].volume)
                        labels, probs, (cut, edge_voxels) = predict_case(
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
                    finally:
                        # Two inputs' decompressed images in memory at most: this one goes before the next
                        # is predicted and the one after it read.
                        item.volume.release()
                    # A memory-mapped or per-slice read takes the data while predicting: a rewrite shows now.
                    check_unchanged(item)
                    t2_values = None
                    if t2_fits is not None:
                        with reading(item.path):
                            t2_values = fitted_t2_map(
                                item.volume, t2_fits[position], labels, model.class_names
                            )
                except PredictionError as exc:
                    if not bad.left_out(item.case, item.path, exc):
                        raise
                    # Nothing of this case was handed to the writer: it is left out whole, and its image
                    # (read ahead, perhaps) not kept in memory.
                    reads.drop(item.volume)
                    continue
                suffix = OUTPUT_FORMATS[formats[position]]
                seg_name = f"{item.case}_seg{suffix}"
                prob_name = None if probs is None else f"{item.case}_prob{suffix}"
                prob_path = None if prob_name is None else staging / prob_name
                t2_name, mean_t2 = None, None
                if t2_values is not None:
                    mean_t2 = class_mean_t2(t2_values, labels, model.class_names)
                    # A map by itself: beside a DICOM SEG or RT Structure Set, as NIfTI.
                    t2_format = formats[position] if formats[position] in VOLUME_FORMATS else "nifti"
                    t2_name = f"{item.case}_t2{OUTPUT_FORMATS[t2_format]}"
                    writes.submit(_write_t2_map, t2_values, item.geometry, staging / t2_name, t2_format)
                case = CasePrediction(
                    case=item.case,
                    source=item.path,
                    segmentation=out / seg_name,
                    probabilities=None if prob_name is None else out / prob_name,
                    shape=labels.shape,
                    volumes_ml=volumes_ml(
                        labels, item.geometry.zooms, model.class_names, voxel_mm3=item.geometry.voxel_mm3
                    ),
                    cut_edge_voxels=cut,
                    cut_edge_share=cut / edge_voxels if edge_voxels else 0.0,
                    spacing_mm=item.spacing,
                    spacing_fits_training=item.spacing_fits,
                    orientation=item.orientation,
                    reoriented_to=None if item.volume.reorientation is None else item.volume.orientation,
                    resampled_to_mm=item.resample_to,
                    t2_map=None if t2_name is None else out / t2_name,
                    mean_t2_ms=mean_t2,
                )
                # Recorded once its files are whole (after the T2 map's write, which this one waits for).
                recorded = (
                    None
                    if identity is None
                    else functools.partial(
                        record_case,
                        staging,
                        identity,
                        case,
                        fingerprints=item.fingerprints,
                        check_warnings=item.check_warnings,
                    )
                )
                # Compressed on the writer's thread while the next case is read and predicted.
                writes.submit(
                    _write_case,
                    item,
                    labels,
                    probs,
                    staging / seg_name,
                    prob_path,
                    formats[position],
                    tuple(model.class_names),
                    recorded,
                    dicom_seg_type,
                )
                by_case[item.case] = case
                if case.anatomy_cut_by_crop:
                    warn_each_time(_cut_message(item, prep, cut, edge_voxels), UserWarning)
                # Held by the write in flight alone, no longer: K float32 probability maps outweigh a scan.
                del labels, probs
        done = [by_case[item.case] for item in prepared if item.case in by_case]
        bad.check_some_left(len(done))
        skipped = bad.in_order(case_names(paths))
        if identity is not None:
            discard_records(staging)
        atomic_write_text(staging / VOLUMES_CSV, volumes_csv(done, model.class_names, model=model.source))
        if skip_bad_inputs:
            atomic_write_text(staging / SKIPPED_CSV, skipped_csv_text(skipped))
        commit(staging, out, cases=[case.case for case in done])
    return PredictionReport(
        output=out,
        volumes_csv=out / VOLUMES_CSV,
        class_names=model.class_names,
        cases=tuple(done),
        resumed=tuple(item.case for item in prepared if item.case in finished),
        skipped=skipped,
        skipped_csv=out / SKIPPED_CSV if skip_bad_inputs else None,
    )


def _passing(
    items: list[PreparedInput], check: Callable[[PreparedInput], T], bad: BadInputs
) -> tuple[list[PreparedInput], list[T]]:
    """The items that pass ``check``, with what it returned for each; one that fails is left out by
    ``bad``, or its error raised."""
    passing, found = [], []
    for item in items:
        try:
            result = check(item)
        except PredictionError as exc:
            if bad.left_out(item.case, item.path, exc):
                continue
            raise
        passing.append(item)
        found.append(result)
    return passing, found
