"""Each input made ready for the model, read as the run's training scans were, and checked against them.

:func:`prepare_inputs` opens every input before any prediction is made: reads it in the run's
orientation (:mod:`inpaintssl.data.orientation`), slices and normalises it with the dataset class
the run trained with, checks its channel count against the model's and its in-plane spacing
against the run's recorded range (:mod:`inpaintssl.data.spacing`), deciding whether it is
resampled (``resample="outside"``) or warned about.

Each input's image is also read in full and checked as training's pre-flight check checks every
training image (:func:`inpaintssl.data.preflight.preflight`, with the dataset's own case check):
every slice readable, real and finite (no NaN or +-Inf voxel), and not one value throughout. A
blank scan (all zeros, or any constant: written without data, a failed export or copy) would
otherwise be z-scored to zeros and labelled with whatever the network makes of nothing, with no
error. Like training's, the check has no switch to skip it. Its pass over the scan computes the
normalisation statistics (z-scoring runs), which the dataset keeps, as in training, for the
prediction to use: a valid scan's label maps are unchanged, bit for bit.

Memory: the check decompresses each scan in full (a ``.nii.gz`` cannot be read slice by slice),
and the reader would keep that array until predict ends; a hundred CT scans held at once are tens
of GB. So each input's volume is released (:meth:`~inpaintssl.data.readers.Volume.release`) as
soon as it has passed, keeping its header, orientation and normalisation statistics, and predict
reads it again when its turn comes (on a GPU, the next input on a background thread while a case
is predicted, :mod:`~inpaintssl.inference.read_ahead`) and releases it after its case: at most two
inputs' images are in memory at a time. Every input file is therefore read twice. Its fingerprint
(size and modification time, :func:`~inpaintssl.data.preflight.file_fingerprints`) is recorded
before the check reads it, and
:func:`check_unchanged` refuses a file whose fingerprint differs when its case is predicted (a
scan still being copied, or replaced meanwhile): the labels would describe data that was never
checked.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from inpaintssl.data.base import DataError
from inpaintssl.data.ct import CTDataset
from inpaintssl.data.orientation import Reorientation
from inpaintssl.data.preflight import Fingerprints, check_threads_to_use, file_fingerprints, preflight
from inpaintssl.data.readers import Volume, reads_on_threads
from inpaintssl.data.spacing import SPACING_TOLERANCE, SpacingRange, same_axis_order
from inpaintssl.data.views import slice_orientation_of, slice_shape_of, slice_spacing_of
from inpaintssl.data.volumes import Case, VolumeSliceDataset
from inpaintssl.in_order import Task, run_in_order
from inpaintssl.inference.inputs import Geometry, case_names, open_input, reading
from inpaintssl.inference.results import PredictionError
from inpaintssl.inference.skipping import BadInputs
from inpaintssl.inference.trained_run import PredictionModel, SlicePreprocessing
from inpaintssl.progress import progress_iter
from inpaintssl.warning_format import held_warnings, warn_each_time

__all__ = ["PreparedInput", "Resample", "check_unchanged", "prepare_inputs"]

Resample = Literal["off", "outside"]
"""Whether :func:`~inpaintssl.inference.predict.predict` resamples scans whose in-plane spacing lies
outside the run's range."""


def _slices(volume: Volume, prep: SlicePreprocessing, case: str) -> VolumeSliceDataset:
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
class PreparedInput:
    """One input, opened and checked, ready for the model.

    Attributes:
        case: Its case name (:func:`~inpaintssl.inference.inputs.case_names`).
        path: The input file (or DICOM folder).
        volume: Its volume, read in the run's orientation where it has one; released after its
            check (:meth:`~inpaintssl.data.readers.Volume.release`), so its next read decompresses
            the file again.
        geometry: Where its label map goes in space.
        dataset: Its slices through the dataset class the run trained with.
        spacing: In-plane spacing of its slices as the network sees them; ``None`` without slices.
        spacing_fits: Whether ``spacing`` lies in the run's training range; ``None``: unknown.
        orientation: Its axis codes as stored; ``None`` without patient geometry.
        resample_to: See below.
    """

    case: str
    path: Path
    volume: Volume
    geometry: Geometry
    dataset: VolumeSliceDataset
    spacing: tuple[float, float] | None
    spacing_fits: bool | None
    orientation: str | None
    resample_to: tuple[float, float] | None
    """In-plane ``(row_mm, col_mm)`` of the dataset's slices to resample to; ``None``: as read."""
    fingerprints: Fingerprints
    """``volume.files`` as they were checked (:func:`~inpaintssl.data.preflight.file_fingerprints`)."""
    check_warnings: tuple[tuple[str, str], ...] = ()
    """The warnings its full check gave, as ``(message, category name)``: recorded with the case,
    so that a resumed predict, which does not read a case taken over in full, gives them again."""


def prepare_inputs(
    paths: Sequence[Path],
    *,
    model: PredictionModel,
    prep: SlicePreprocessing,
    key: str | None,
    spacing: Sequence[float] | None,
    resample: Resample = "off",
    threads: int | None = None,
    progress: bool = False,
    checked_before: Mapping[str, Fingerprints] | None = None,
    bad_inputs: BadInputs | None = None,
) -> list[PreparedInput]:
    """Open and check every input (see the module docstring) before any prediction is made.

    ``threads`` inputs are read and checked at once, each on a thread (``None``:
    :func:`~inpaintssl.data.preflight.default_check_threads`; ``1``: one after the other;
    :func:`~inpaintssl.data.preflight.check_threads_to_use` refuses fewer); what
    is raised and warned is the same, in input order. ``progress`` shows a bar over the inputs
    checked on a terminal (reading hundreds of scans takes minutes before the first is predicted).
    ``checked_before``: the fingerprints of inputs (by case name) that passed this check in an
    earlier predict whose finished cases this one takes (:mod:`~inpaintssl.inference.resume`);
    an input whose files still have them is opened but not read in full again.
    ``bad_inputs``: where it skips (:mod:`~inpaintssl.inference.skipping`), an input that fails
    is handed to it and left out, and the others are still checked; else the first error is raised.

    Returns:
        One prepared input per path (per path not left out), in order, each with its volume released.

    Raises:
        PredictionError: An input is unreadable, truncated, blank (one value in every voxel) or
            holds NaN/Inf voxels, or its channel count does not fit the model; the message names it.
    """
    skipping = bad_inputs is not None and bad_inputs.skip
    trained = model.preprocessing.in_plane_spacing_mm if model.preprocessing is not None else None
    tasks = [
        Task(
            functools.partial(
                _checked_or_error if skipping else _checked,
                case,
                path,
                model=model,
                prep=prep,
                key=key,
                spacing=spacing,
                checked_before=(checked_before or {}).get(case),
            ),
            parallel=reads_on_threads(path),
        )
        for case, path in zip(case_names(paths), paths)
    ]
    prepared = []
    workers = check_threads_to_use(threads)
    checked = progress_iter(
        run_in_order(tasks, threads=workers),
        desc="checking inputs",
        unit="input",
        total=len(tasks),
        leave=False,
        disable=not progress,
    )
    for outcome in checked:
        if isinstance(outcome, _Failed):
            assert bad_inputs is not None  # only a skipping check returns its error
            bad_inputs.left_out(outcome.case, outcome.path, outcome.error)
            continue
        case, path, volume, geometry, dataset, stored, prints, said = outcome
        seen = _spacing_seen(dataset, prep) if len(dataset) > 0 else None
        fits: bool | None = None
        resample_to: tuple[float, float] | None = None
        if trained is not None and seen is not None:
            # Axis by axis where the input was read in the training volumes' axis order (its rows
            # and columns are theirs); either way round where nothing says how it lies (NumPy, HDF5).
            known = same_axis_order(slice_orientation_of(dataset, 0), prep.training_orientations)
            as_trained = _in_network_order(seen, prep)
            fits = trained.fits(as_trained, axes_known=known)
            if not fits and resample == "outside":
                # Without a resize to image_size (check_resample), ``seen`` is the slices' own spacing.
                resample_to = _in_network_order(trained.nearest(as_trained, axes_known=known), prep)
            elif not fits:
                message = _spacing_message(
                    path, as_trained, trained, volume, spacing_given=spacing is not None
                )
                warn_each_time(message, UserWarning)
        prepared.append(
            PreparedInput(
                case, path, volume, geometry, dataset, seen, fits, stored, resample_to, prints, said
            )
        )
    return prepared


class _Checked(NamedTuple):
    """What :func:`_checked` leaves of one input for :func:`prepare_inputs`."""

    case: str
    path: Path
    volume: Volume
    geometry: Geometry
    dataset: VolumeSliceDataset
    stored: str | None
    fingerprints: Fingerprints
    check_warnings: tuple[tuple[str, str], ...]


def _checked(
    case: str,
    path: Path,
    *,
    model: PredictionModel,
    prep: SlicePreprocessing,
    key: str | None,
    spacing: Sequence[float] | None,
    checked_before: Fingerprints | None = None,
) -> _Checked:
    """One input opened, oriented, sliced and checked in full, its volume released again.

    Runs on a thread beside other inputs' (:func:`~inpaintssl.in_order.run_in_order`; an HDF5
    or DICOM input in the calling thread, :func:`~inpaintssl.data.readers.reads_on_threads`):
    it touches only this input's objects, and its warnings are raised by the caller, in input
    order.
    """
    with reading(path):
        volume, geometry = open_input(path, prep=prep, key=key, spacing=spacing)
        stored = volume.stored_orientation
        _orient(volume, prep)
        dataset = _slices(volume, prep, case)
    if dataset.in_channels != model.in_channels:
        raise PredictionError(
            f"input {path}: the model takes {model.in_channels} input channel(s) "
            f"({_channels_hint(model.in_channels)}) but the image gives {dataset.in_channels} "
            f"(shape {volume.shape})"
        )
    with reading(path):
        # Stat'ed before the check reads the data, as training's check stats: a file rewritten
        # while it is read here no longer matches when its case is read again to be predicted.
        prints = _fingerprints(volume)
        said: list[tuple[str, type[Warning]]] = []
        if prints != checked_before:
            # Training's check of its images, before any case is predicted: a blank or NaN scan is
            # refused naming its file (reading() makes its DataError a PredictionError), not labelled.
            try:
                with held_warnings() as said:
                    preflight({"predict": dataset}, progress=False, what=f"input {path}", threads=1)
            finally:
                for message, category in said:
                    warn_each_time(message, category)
    # Kept, the decompressed scan would stay in memory with every other input's until predict
    # ends; the dataset keeps the statistics its check computed, which are all it needs.
    volume.release()
    warned = tuple((message, category.__name__) for message, category in said)
    return _Checked(case, path, volume, geometry, dataset, stored, prints, warned)


class _Failed(NamedTuple):
    """An input whose check failed, returned rather than raised where bad inputs are skipped."""

    case: str
    path: Path
    error: DataError


def _checked_or_error(case: str, path: Path, **options: Any) -> _Checked | _Failed:
    """:func:`_checked`, its input error returned: raised, it would stop the other inputs' checks
    (:func:`~inpaintssl.in_order.run_in_order` raises the first and starts no later task)."""
    try:
        return _checked(case, path, **options)
    except DataError as exc:
        return _Failed(case, path, exc)


def _fingerprints(volume: Volume) -> Fingerprints:
    prints = file_fingerprints(volume.files)
    if prints is None:
        gone = next((f for f in volume.files if file_fingerprints([f]) is None), volume.files[0])
        raise PredictionError(
            f"input {volume.path}: {gone} cannot be found or stat'ed any more, just after it was opened "
            "(was it moved or deleted, or is it still being copied?); expected it to stay in place "
            "until predict ends"
        )
    return prints


def _state(size: int, mtime_ns: int) -> str:
    seconds, nanoseconds = divmod(mtime_ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")
    return f"{size} bytes, modified {when}.{nanoseconds:09d}"


def check_unchanged(item: PreparedInput) -> None:
    """Refuse an input whose files changed since :func:`prepare_inputs` checked them.

    Every input is read in full and checked before any case is predicted, then released and read
    again for its prediction (see the module docstring): a file rewritten, replaced or removed in
    between would be labelled from data that was never checked. A file is taken as unchanged
    while its size and modification time are (:func:`~inpaintssl.data.preflight.file_fingerprints`).

    Raises:
        PredictionError: A file's size or modification time differs from its check's, or the file
            is gone; the message names the file, what was recorded and what is found.
    """
    for recorded in item.fingerprints:
        name, size, mtime_ns = str(recorded[0]), int(recorded[1]), int(recorded[2])
        found = file_fingerprints([name])
        if found is not None and found[0] == recorded:
            continue
        now = "missing" if found is None else _state(int(found[0][1]), int(found[0][2]))
        which = f"input {name}" if name == str(item.path) else f"input {item.path}: file {name}"
        raise PredictionError(
            f"{which} changed after it was checked: it was {_state(size, mtime_ns)} when checked, and is "
            f"{now} now. Every input is checked before any is predicted and read again for its "
            "prediction, so it must stay as it is until predict ends (was it still being written or "
            "copied?); predict again once the file is complete"
        )


def _orient(volume: Volume, prep: SlicePreprocessing) -> None:
    """Read ``volume`` in the run's orientation, or warn where it is none of the training ones."""
    stored = volume.stored_orientation
    if stored is None:
        # NumPy, HDF5, geometry-less DICOM, NIfTI without sform or qform: nothing says how they lie.
        return
    if prep.orientation is not None:
        if _in_another_plane(volume, stored, prep.orientation, prep.slice_axis):
            return
        # In the training volumes' axis order, the run's slice axis is theirs, for DICOM too; a 2-D
        # slice is turned within its plane into the training slices' rows and columns.
        volume.reorient(prep.orientation, slice_axis=prep.slice_axis)
        return
    trained = prep.training_orientations
    if trained and stored not in trained:
        seen = ", ".join(trained)
        warn_each_time(
            f"input {volume.path}: stored in {stored} orientation, which none of the run's training "
            f"volumes had ({seen}); its slices show the anatomy in another plane or mirrored, and the "
            "labels are unreliable: pass orientation=... (--orientation) with the axis codes the model "
            "should see it in",
            UserWarning,
        )


def _in_another_plane(volume: Volume, stored: str, target: str, slice_axis: int) -> bool:
    """Whether ``volume`` is a 2-D slice in another plane than the training slices (then warn).

    A single slice can be turned within its plane but not into another one: its normal (the
    affine's third axis) must run along the world axis the training slices are normal to. Such a
    slice is used as stored, showing the network a plane it never saw, labelled badly without any
    error.
    """
    axis = slice_axis % 3
    if len(volume.stored_shape) != 2 or Reorientation.between(stored, target).axes[axis] == 2:
        return False
    warn_each_time(
        f"input {volume.path}: a 2-D slice normal to {stored[2]} (its affine, axis codes {stored}), but "
        f"the run's training slices are normal to {target[axis]} (volumes in {target}, sliced along "
        f"axis {axis}); a single slice cannot be turned into another plane, so it is used as stored, "
        "showing the anatomy in a plane the network never saw, and its labels are unreliable: predict "
        "a volume that holds the training plane",
        UserWarning,
    )
    return True


def _spacing_seen(dataset: VolumeSliceDataset, prep: SlicePreprocessing) -> tuple[float, float]:
    """In-plane spacing of the input's slices as the network will see them (after any resize)."""
    row, col = slice_spacing_of(dataset, 0)
    if prep.image_size is None or prep.resize_mode != "resize":
        return row, col
    # Slices shown in the display orientation are transposed before fitting: there the model's
    # rows are the stored columns, so each stored axis pairs with the other target length.
    grid = slice_shape_of(dataset, 0)
    size = prep.image_size[::-1] if prep.display else prep.image_size
    return row * grid[0] / size[0], col * grid[1] / size[1]


def _in_network_order(pair: tuple[float, float], prep: SlicePreprocessing) -> tuple[float, float]:
    """A slice's ``(row_mm, col_mm)`` as cut, in the network's rows and columns (the run records its
    range so): swapped where slices reach the network turned (``display``); its own inverse."""
    return (pair[1], pair[0]) if prep.display else pair


def _spacing_message(
    path: Path, seen: tuple[float, float], trained: SpacingRange, volume: Volume, *, spacing_given: bool
) -> str:
    if volume.has_geometry:
        stated = ""
    elif spacing_given:
        stated = " (as given by spacing=... / --spacing)"
    else:
        stated = " (this file type carries no spacing: give the scan's with spacing=... / --spacing)"
    return (
        f"input {path}: in-plane voxel spacing {seen[0]:.3g} x {seen[1]:.3g} mm as the model sees it"
        f"{stated}, but the run trained on {trained.describe()} (more than {SPACING_TOLERANCE:.0%} "
        "apart). Nothing was resampled, so the anatomy appears at another scale and the labels and "
        "volumes are unreliable: predict with resample='outside' (--resample outside), or resample "
        "the scan to the training spacing first"
    )
