"""Labels drawn on a DICOM series as DICOM objects: a SEG's segments or an RTSTRUCT's ROIs as its label map.

The ``ct`` and ``dicom`` datasets take a case's label as a label map on the series' grid (NIfTI,
MetaImage, NRRD, PNG, NumPy) or as a DICOM object that annotates the series: a Segmentation
(:mod:`~inpaintssl.data.dicom_seg`; classes take segment numbers, ``label_values``, by default
``k + 1``) or an RT Structure Set (:mod:`~inpaintssl.data.dicom_rtstruct`; each class the ROI of
its name, filled with the class's first value). :func:`open_dicom_annotation` opens either on the
series as stored (both may be reoriented afterwards, alike). A class that reads a SEG segment
labelled otherwise, or one the SEG does not describe, is warned about: classes take segment
numbers, so ``class_names`` in another order than the segments would train each class on
another's pixels without an error.

Example:
    >>> image = DicomVolume("ct/series-01")  # doctest: +SKIP
    >>> label = open_dicom_annotation(  # doctest: +SKIP
    ...     Path("ct/rtstruct.dcm"), image, "RTSTRUCT", class_names=["liver"], label_values=None,
    ...     where="ct case 'series-01'")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from inpaintssl.data.base import DataError
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.dicom_rtstruct import DicomRtStructVolume
from inpaintssl.data.dicom_seg import DicomSegVolume
from inpaintssl.data.labels import class_values, plain_name
from inpaintssl.data.readers import Volume
from inpaintssl.warning_format import warn_each_time

__all__ = ["open_dicom_annotation"]


def open_dicom_annotation(
    label: Path,
    image: Volume,
    kind: str,
    *,
    class_names: Sequence[str],
    label_values: Mapping[str, int | Sequence[int]] | None,
    where: str,
) -> Volume:
    """The label map of ``label``, a DICOM ``kind`` (``"SEG"`` or ``"RTSTRUCT"``) drawn on ``image``.

    Args:
        label: The SEG or RTSTRUCT file (:func:`~inpaintssl.data.dicom.dicom_object_kind` says which).
        image: The case's image, opened as stored: it must be the DICOM series the object annotates.
        kind: ``"SEG"`` or ``"RTSTRUCT"``.
        class_names: The dataset's classes.
        label_values: Stored value(s) per class (default ``k + 1``): SEG segment numbers; an
            RTSTRUCT ROI's pixels get the class's first value.
        where: The case, for messages (``"ct case 'p01'"``).

    Raises:
        DataError: ``image`` is not a DICOM series, or the object's own reader refuses it.
    """
    if not isinstance(image, DicomVolume):
        raise DataError(
            f"{where}: label {label} is a DICOM {kind}, which annotates a DICOM series, but its image "
            f"{image.path} is a {type(image).__name__}; expected the DICOM series the {kind} was drawn on"
        )
    values = class_values(class_names, label_values)
    if kind == "SEG":
        seg = DicomSegVolume(label, reference=image)
        _warn_segment_names(seg, class_names, values, where=where)
        return seg
    return DicomRtStructVolume(
        label, reference=image, roi_values={name: value[0] for name, value in zip(class_names, values)}
    )


def _warn_segment_names(
    label: DicomSegVolume, class_names: Sequence[str], values: Sequence[Sequence[int]], *, where: str
) -> None:
    """Warn where a class reads a SEG segment labelled as something else, or one the SEG lacks.

    ``values``: each class's segment numbers, as :func:`~inpaintssl.data.labels.class_values` gives them.
    """
    described = ", ".join(f"{number} {text!r}" for number, text in sorted(label.segment_labels.items()))
    for name, numbers in zip(class_names, values):
        for value in numbers:
            segment = label.segment_labels.get(value)
            if segment is None:
                problem = f"but the SEG describes no segment {value} (its segments: {described or 'none'})"
            elif segment.strip() and plain_name(segment) != plain_name(name):
                problem = f"which the SEG labels {segment!r} (its segments: {described})"
            else:
                continue
            warn_each_time(
                f"{where}: class {name!r} reads segment {value} of DICOM SEG {label.path}, {problem}; "
                "classes take segment numbers in class_names order (1, 2, ...) unless label_values maps "
                "them: check class_names' order, or set label_values",
                UserWarning,
            )
