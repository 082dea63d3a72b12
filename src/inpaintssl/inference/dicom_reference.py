"""What a derived DICOM object (a SEG, an RT Structure Set) needs of the series it annotates.

``predict`` writes a DICOM series' label map as an object of the series' own study: it copies the
patient and study, shares the frame of reference, and references the series and its instances. So
each file of the series must state a ``StudyInstanceUID``, a ``SeriesInstanceUID`` and a
``FrameOfReferenceUID`` (an anonymiser that removed them leaves nothing to reference); patient and
study attributes DICOM requires present but allows empty (type 2) are written empty where a file
leaves them out, as DICOM writes an unknown value. :mod:`~inpaintssl.inference.dicom_seg` and
:mod:`~inpaintssl.inference.rtstruct` share this.

Example:
    >>> from pydicom.dataset import Dataset  # doctest: +SKIP
    >>> complete_identity(Dataset()).PatientID  # doctest: +SKIP
    ''
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inpaintssl.data.dicom import DicomVolume
from inpaintssl.extras import import_optional
from inpaintssl.inference.results import PredictionError

__all__ = [
    "REQUIRED",
    "SERIES_NUMBER_OFFSET",
    "TYPE_2_IDENTITY",
    "check_series_identity",
    "complete_identity",
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


def check_series_identity(volume: Any, *, source: Path, output_format: str, what: str) -> None:
    """Refuse an input that is no DICOM series or whose files do not identify their study and space.

    Args:
        volume: The opened input.
        source: The input as given, for messages.
        output_format: The format asked for, for messages (``"dicom_seg"``).
        what: The kind of object written, for messages (``"DICOM SEG"``).

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
    for path in volume.files:  # each file once, an Enhanced file too
        header = pydicom.dcmread(path, stop_before_pixels=True)
        for name in REQUIRED:
            if not str(getattr(header, name, "") or "").strip():
                raise PredictionError(
                    f"input {source}: DICOM file {path} has no {name}; the {what} references its source's "
                    "study, series and frame of reference, so its source must state each (an anonymiser "
                    "that removed one leaves nothing to reference): write NIfTI instead "
                    "(output_format='nifti')"
                )


def complete_identity(dataset: Any) -> Any:
    """``dataset`` with each type-2 patient and study attribute it lacks present and empty."""
    for name in TYPE_2_IDENTITY:
        if name not in dataset:
            setattr(dataset, name, "")
    return dataset
