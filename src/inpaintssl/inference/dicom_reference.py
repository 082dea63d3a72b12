"""What a derived DICOM object (a SEG, an RT Structure Set) needs of the series it annotates.

``predict`` writes a DICOM series' label map as an object of the series' own study: it copies the
patient and study, shares the frame of reference, and references the series and its instances. So
each file of the series must state a ``StudyInstanceUID``, a ``SeriesInstanceUID`` and a
``FrameOfReferenceUID`` (an anonymiser that removed them leaves nothing to reference); patient and
study attributes DICOM requires present but allows empty (type 2) are written empty where a file
leaves them out, as DICOM writes an unknown value. Both objects place the label map by its
slices' geometry, so each slice must state its ``ImagePositionPatient``,
``ImageOrientationPatient`` and ``PixelSpacing`` (:func:`check_slice_geometry`). A class name is
a segment label or ROI name, of DICOM's VR LO: at most 64 characters, no backslash (LO's value
separator) and no control characters (:func:`check_class_names`). The label map itself must be
unsigned class numbers on the series' stored grid, none beyond the classes
(:func:`checked_label_map`), and the derived series is numbered after its source's
(:func:`derived_series_number`).
:mod:`~inpaintssl.inference.dicom_seg` and :mod:`~inpaintssl.inference.rtstruct` share this.

Example:
    >>> from pydicom.dataset import Dataset  # doctest: +SKIP
    >>> complete_identity(Dataset()).PatientID  # doctest: +SKIP
    ''
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.data.dicom import DicomVolume, slice_header
from inpaintssl.extras import import_optional
from inpaintssl.inference.results import PredictionError

__all__ = [
    "GEOMETRY",
    "LO_MAX_CHARACTERS",
    "REQUIRED",
    "SERIES_NUMBER_MAX",
    "SERIES_NUMBER_OFFSET",
    "TYPE_2_IDENTITY",
    "check_class_names",
    "check_series_identity",
    "check_slice_geometry",
    "checked_label_map",
    "class_name_problem",
    "complete_identity",
    "derived_series_number",
]

REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
"""Attributes every source file must hold: the study the object joins, the series it references, the
space it lies in."""

TYPE_2_IDENTITY = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
"""Patient and study attributes DICOM requires present but allows empty (type 2)."""

SERIES_NUMBER_OFFSET = 1000
"""A derived series is numbered after its source's (``SeriesNumber + 1000``), as derived series often are."""

SERIES_NUMBER_MAX = 2**31 - 1
"""The largest ``SeriesNumber`` (VR IS: a signed 32-bit integer)."""

GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
"""What every slice must state for a derived object to be placed on it: where its first pixel lies,
which way its rows and columns run, and how far apart its pixels are."""

LO_MAX_CHARACTERS = 64
"""The most characters a value of DICOM's VR LO (Long String) holds (PS3.5 6.2): a SEG's
``SegmentLabel``, an RT Structure Set's ``ROIName``."""


def check_series_identity(volume: Any, *, source: Path, output_format: str, what: str) -> dict[str, Any]:
    """Refuse an input that is no DICOM series or whose files do not identify their study and space.

    Args:
        volume: The opened input.
        source: The input as given, for messages.
        output_format: The format asked for, for messages (``"dicom_seg"``).
        what: The kind of object written, for messages (``"DICOM SEG"``).

    Returns:
        Each of ``volume.files`` -> its header (no pixels), read for the check: for the next ones
        (:func:`check_slice_geometry`), which need not read the files again.

    Raises:
        PredictionError: Naming the input (and the file and attribute).
    """
    if not isinstance(volume, DicomVolume):
        raise PredictionError(
            f"input {source}: output_format={output_format!r} writes {what} objects, which reference the "
            "DICOM series they annotate, but this input is not a DICOM series; use output_format='input' "
            "(DICOM SEG for DICOM inputs, each other input in its own format or NIfTI) or 'nifti'"
        )
    pydicom = import_optional("pydicom", extra="dicom", purpose=f"writing {what}")
    headers = {}
    for path in volume.files:  # each file once, an Enhanced file too
        header = headers[str(path)] = pydicom.dcmread(path, stop_before_pixels=True)
        for name in REQUIRED:
            if not str(getattr(header, name, "") or "").strip():
                raise PredictionError(
                    f"input {source}: DICOM file {path} has no {name}; the {what} references its source's "
                    "study, series and frame of reference, so its source must state each (an anonymiser "
                    "that removed one leaves nothing to reference): write NIfTI instead "
                    "(output_format='nifti')"
                )
    return headers


def check_slice_geometry(
    volume: DicomVolume, headers: dict[str, Any], *, source: Path, what: str, needs: str
) -> None:
    """Refuse a series a slice of which does not state where it lies (each of :data:`GEOMETRY`).

    Checked before any case is predicted, slice by slice (an Enhanced file's frames each, by
    their functional groups): the object places the label map by each slice's own geometry, and a
    slice without it would fail the write after the prediction, with another library's words.

    Args:
        volume: The DICOM series.
        headers: Each of ``volume.files`` -> its header (:func:`check_series_identity` returns them).
        source: The input as given, for messages.
        what: The kind of object written, for messages (``"DICOM SEG"``).
        needs: Why it needs the geometry, for messages (``"places its frames by ..."``).

    Raises:
        PredictionError: Naming the input, the file (and frame) and the attributes it lacks.
    """
    for path, frame in volume.slice_sources:
        header = slice_header(headers[str(path)], frame)
        # An element present without a value (pydicom gives "" or None) states nothing either.
        missing = [name for name in GEOMETRY if getattr(header, name, None) in (None, "")]
        if missing:
            where = f"DICOM file {path}" + ("" if frame is None else f" (frame {frame + 1})")
            raise PredictionError(
                f"input {source}: {where} states no {' or '.join(missing)}; the {what} {needs}, so each "
                f"slice must state its {', '.join(GEOMETRY[:-1])} and {GEOMETRY[-1]}: write NIfTI instead "
                "(output_format='nifti')"
            )


def class_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a DICOM LO value (a segment label, an ROI name) as it is; ``None``: it can.

    Example:
        >>> class_name_problem("liver") is None
        True
        >>> class_name_problem("left\\\\right kidney")
        'holds a backslash, which DICOM reads as the separator between two values'
    """
    if not name.strip():
        # Leading and trailing spaces are LO's padding: a blank name reads back as none at all.
        return "is blank"
    if len(name) > LO_MAX_CHARACTERS:
        return f"is {len(name)} characters long"
    if "\\" in name:
        return "holds a backslash, which DICOM reads as the separator between two values"
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"holds the control character {control!r}"
    return None


def check_class_names(class_names: Sequence[str], *, owner: str, what: str, field: str) -> None:
    """Refuse class names a DICOM object cannot hold as its segment labels or ROI names (VR LO).

    A name of more than 64 characters would be written as an invalid value (and cut by some
    readers); one holding a backslash as two values, so that the class is no longer found by its
    name (this library's own RTSTRUCT reader looks classes up by ROI name).

    Args:
        class_names: The run's classes, in order.
        owner: Where they come from, for messages (the model's run folder, or an argument's name).
        what: The kind of object written, for messages (``"DICOM SEG"``).
        field: The attribute that holds a class name, for messages (``"SegmentLabel"``).

    Raises:
        PredictionError: Naming ``owner`` and what was found: a single string (one class per
            letter), no names at all (an object of no segments), or a class with what is wrong
            with its name and the limits.
    """
    if isinstance(class_names, (str, bytes)):
        # enumerate("liver") wrote five segments, l, i, v, e and r, without a word.
        raise PredictionError(
            f"{owner}: expected a sequence of class names, found the string {class_names!r}; "
            f"for a single class pass a one-item tuple: ({class_names!r},)"
        )
    if len(class_names) == 0:
        # A DICOM SEG of no segments failed inside its writer with an IndexError.
        raise PredictionError(
            f"{owner}: expected one name per foreground class (at least one), found none; the {what} "
            f"holds one {field} per class"
        )
    for k, name in enumerate(class_names):
        problem = class_name_problem(name)
        if problem is not None:
            raise PredictionError(
                f"{owner}: class {k + 1} of {len(class_names)}, {name!r}, {problem}; the {what} holds each "
                f"class name as its {field}, a DICOM LO value: expected at most {LO_MAX_CHARACTERS} "
                "characters, no backslash, no control characters and not blank; write NIfTI instead "
                "(output_format='nifti'), or train with class names that fit"
            )


def complete_identity(dataset: Any) -> Any:
    """``dataset`` with each type-2 patient and study attribute it lacks present and empty."""
    for name in TYPE_2_IDENTITY:
        if name not in dataset:
            setattr(dataset, name, "")
    return dataset


def derived_series_number(source: Any) -> int:
    """The ``SeriesNumber`` of a series derived from one numbered ``source`` (its value, or ``None``).

    ``source + 1000`` (:data:`SERIES_NUMBER_OFFSET`) where that is a valid positive number, else
    1000, as for a source without one: a negative source number gave 0 or less, which highdicom
    refuses after the prediction (and an RT Structure Set wrote), and one near the top of VR IS
    gave a number beyond it (:data:`SERIES_NUMBER_MAX`).

    Example:
        >>> derived_series_number(5), derived_series_number(None), derived_series_number(-1000)
        (1005, 1000, 1000)
    """
    try:
        number = SERIES_NUMBER_OFFSET + int(source)
    except (TypeError, ValueError):  # absent, empty, or no integer (a malformed IS)
        return SERIES_NUMBER_OFFSET
    return number if 1 <= number <= SERIES_NUMBER_MAX else SERIES_NUMBER_OFFSET


def checked_label_map(
    labels: np.ndarray, volume: DicomVolume, *, class_names: Sequence[str], owner: str
) -> np.ndarray:
    """``labels`` as the unsigned class numbers a DICOM object holds, refused where they are none.

    Checked before anything is built: a label map one slice too long lost that slice without a
    word (the SEG took the first slices), one of a reoriented grid's shape was written on the
    stored grid, and a value beyond the classes was dropped (an RT Structure Set has no ROI for
    it) or refused in highdicom's words.

    Args:
        labels: ``(rows, columns, slices)`` on ``volume``'s stored grid: 0 background, ``k + 1``
            for ``class_names[k]``; of any integer (or boolean) dtype.
        volume: The DICOM series they segment.
        class_names: The run's classes.
        owner: The writer, for messages (``"write_dicom_seg"``).

    Returns:
        ``labels`` as ``uint8`` up to 255 classes, ``uint16`` beyond (a copy where it is cast).

    Raises:
        ValueError: ``labels`` is not on the series' stored grid, not of an integer dtype, or holds a
            value below 0 or above the number of classes; the message names ``labels``, what was
            expected and what was found.
    """
    shape, stored = tuple(int(n) for n in labels.shape), tuple(int(n) for n in volume.stored_shape)
    if shape != stored:
        hint = ""
        if volume.reorientation is not None and shape == tuple(int(n) for n in volume.shape):
            hint = (
                f"; that is the shape of the volume as read, reoriented to {volume.orientation}: give "
                "a label map of that grid as volume.to_stored(labels)"
            )
        raise ValueError(
            f"{owner}: labels {shape} are not on the series' grid {stored}{hint}; expected (rows, columns, "
            "slices) of the series as stored, a slice per stored slice"
        )
    if labels.dtype.kind not in "biu":
        raise ValueError(
            f"{owner}: labels are of dtype {labels.dtype}; expected integer class numbers (0 background, "
            "k + 1 for class_names[k]), as label_map gives them"
        )
    classes = len(class_names)
    low, high = (int(v) for v in (labels.min(), labels.max())) if labels.size else (0, 0)
    if low < 0 or high > classes:
        found = f"the value {low}" if low < 0 else f"the class number {high}"
        raise ValueError(
            f"{owner}: labels hold {found}, but class_names holds {classes} class"
            f"{'' if classes == 1 else 'es'}; expected values from 0 (background) to {classes}, k + 1 for "
            "class_names[k]"
        )
    dtype = np.min_scalar_type(max(classes, 1))  # uint8 up to 255 classes, uint16 beyond
    return np.asarray(labels, dtype=dtype)
