"""Label maps of DICOM series as RT Structure Sets (RTSTRUCT), which planning systems import as contours.

``predict(output_format="rtstruct")`` writes each DICOM series' label map as an RT Structure Set
(``<case>_seg.dcm``), for radiotherapy planning systems (Eclipse, RayStation, Monaco), MIM and 3D
Slicer's SlicerRT, which take contours, not label maps. It is written with pydicom (the ``dicom``
extra): a new series in the scan's study, for the same patient and frame of reference
(:mod:`~inpaintssl.inference.dicom_reference`), one ROI per class of the run's ``class_names``
(the ROI name; ``ROIGenerationAlgorithm`` ``AUTOMATIC``, by ``inpaintssl``), each slice's region
as closed planar polygons along its pixels' edges (:func:`~inpaintssl.data.contours.mask_outlines`),
each referencing the slice it was drawn on (its instance, and frame in an Enhanced file) and placed
in millimetres by that slice's own geometry (its ``ImagePositionPatient``,
``ImageOrientationPatient`` and ``PixelSpacing``), as the slice's pixels are: a slice shifted
from its neighbours is outlined where it lies. A hole is a
polygon inside another, as planning systems read them; filled back by pixel centre
(:mod:`~inpaintssl.data.dicom_rtstruct`, or any even-odd filler), the contours give the label map
exactly. A class no slice holds is an ROI without contours. Probabilities have no place in an
RTSTRUCT: ``probabilities=True`` with this format is refused before any case is predicted; nor
do class names that are no ``ROIName`` (DICOM's VR LO: at most 64 characters, no backslash, no
control characters). A multi-echo series' contours reference the slices read: the echo chosen,
or for the root-sum-of-squares of the echoes, the first echo's (at the same positions). The label
map is class numbers of any integer dtype on the series' stored grid; one off that grid, of
another dtype, or holding a value beyond the classes (which no ROI would hold) is refused
(:func:`~inpaintssl.inference.dicom_reference.checked_label_map`).

Example:
    >>> report = predict("runs/ct-ft", "dicom/series-01", output="seg",
    ...                  output_format="rtstruct")  # doctest: +SKIP
    >>> report.cases[0].segmentation.name  # doctest: +SKIP
    'series-01_seg.dcm'
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.atomic import atomic_path
from inpaintssl.data.contours import mask_outlines
from inpaintssl.data.dicom import DicomVolume, slice_header
from inpaintssl.extras import import_optional
from inpaintssl.inference.dicom_reference import (
    TYPE_2_IDENTITY,
    check_class_names,
    check_series_identity,
    check_slice_geometry,
    checked_label_map,
    complete_identity,
    derived_series_number,
)

__all__ = ["ROI_COLOURS", "RT_STRUCTURE_SET_STORAGE", "check_rtstruct_source", "write_rtstruct"]

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
"""The RT Structure Set Storage SOP class."""

ROI_COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
"""``ROIDisplayColor`` of class ``k``: ``ROI_COLOURS[k % 10]`` (matplotlib's ten categorical colours)."""

_DETACHED_STUDY = "1.2.840.10008.3.1.2.3.1"
"""The SOP class the RT Referenced Study Sequence names a study by (PS3.3 C.8.8.5, retired but required)."""

_MM_DECIMALS = 6
"""Contour points are written to a micrometre's thousandth: within a DS value's 16 characters."""

_CONTOUR_DATA = 0x30060050
"""The ContourData tag."""


def check_rtstruct_source(volume: Any, *, source: Path) -> None:
    """Refuse, before any case is predicted, an input whose label map cannot be an RT Structure Set.

    Raises:
        PredictionError: ``volume`` is not a DICOM series, a file lacks an attribute of
            :data:`~inpaintssl.inference.dicom_reference.REQUIRED`, or a slice one of
            :data:`~inpaintssl.inference.dicom_reference.GEOMETRY` (contours are in millimetres);
            the message names the input (and the file).
    """
    headers = check_series_identity(volume, source=source, output_format="rtstruct", what="RT Structure Set")
    check_slice_geometry(
        volume,
        headers,
        source=source,
        what="RT Structure Set",
        needs="places each contour in millimetres on the slice it outlines",
    )


def _item(**attributes: Any) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    for name, value in attributes.items():
        setattr(item, name, value)
    return item


def _contour_data(points: np.ndarray) -> Any:
    """``ContourData`` of ``(n, 3)`` points: decimal strings (DS) of at most 16 characters each.

    Built as the encoded value, as a file holds it: pydicom would otherwise make and validate one
    number object per coordinate, then format each again, most of the writing time for a CT
    series' contours (0.6 of 1.2 s for 12 slices of four classes). Handed to pydicom as raw bytes
    of VR OB, which it writes as they are (a raw UN it would convert to the dictionary's DS
    first): the file is implicit VR, which stores no VR, so the bytes on disk are those of the DS
    value, and every reader takes ContourData's VR (DS) from the data dictionary.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    values = np.round(points.ravel(), _MM_DECIMALS) + 0.0  # + 0.0: no "-0"
    # Vertices are pixel corners: few distinct coordinates, each formatted once.
    distinct, where = np.unique(values, return_inverse=True)
    texts = np.array([f"{v:.10g}" for v in distinct], dtype=object)
    text = "\\".join(texts[where.ravel()].tolist()).encode("ascii")
    if len(text) % 2:
        text += b" "  # DICOM values have even lengths, DS padded with a space
    return RawDataElement(Tag(_CONTOUR_DATA), "OB", len(text), text, 0, True, True)


def _pixel_to_patient(header: Any) -> np.ndarray:
    """A slice's ``(row, column, 0, 1)`` pixel index -> patient LPS mm, from its own header (3 x 4).

    DICOM's pixel-to-patient mapping (PS3.3 C.7.6.2.1.1): the first pixel's centre at
    ``ImagePositionPatient``; rows step along ``ImageOrientationPatient``'s column direction by
    the row spacing, columns along its row direction by the column spacing (``PixelSpacing``).
    """
    position = np.asarray([float(v) for v in header.ImagePositionPatient], dtype=np.float64)
    orientation = np.asarray([float(v) for v in header.ImageOrientationPatient], dtype=np.float64)
    between_rows, between_columns = (float(v) for v in header.PixelSpacing)
    matrix = np.zeros((3, 4))
    matrix[:, 0] = orientation[3:] * between_rows
    matrix[:, 1] = orientation[:3] * between_columns
    matrix[:, 3] = position
    return matrix


def write_rtstruct(
    labels: np.ndarray,
    volume: DicomVolume,
    target: Path,
    *,
    class_names: Sequence[str],
    affine: np.ndarray | None = None,
) -> None:
    """Write ``labels`` as an RT Structure Set of ``volume`` to ``target``, atomically.

    Args:
        labels: Integers ``(rows, columns, slices)`` on the series' stored grid, whatever
            ``volume``'s reorientation (``volume.to_stored`` takes a label map of the volume as read
            there): 0 background, ``k + 1`` for ``class_names[k]``.
        volume: The DICOM series the labels were predicted on (:func:`check_rtstruct_source` passed).
        target: The ``.dcm`` file.
        class_names: The ROI names, in order.
        affine: Not used: each slice's contours are placed by that slice's own header, which a
            series-wide affine (from its first and last slices) misplaces where a slice lies off
            the line between them. Taken, and ignored, so that calls giving it still work.

    Raises:
        ValueError: ``labels`` is not on the series' stored grid, not of an integer dtype, or holds
            a value below 0 or beyond the classes
            (:func:`~inpaintssl.inference.dicom_reference.checked_label_map`): such a value has no
            ROI, and was left out without a word.
        PredictionError: A class name that is no ``ROIName``
            (:func:`~inpaintssl.inference.dicom_reference.check_class_names`).
    """
    del affine  # see the docstring: per-slice geometry replaced it
    pydicom = import_optional("pydicom", extra="dicom", purpose="writing RT Structure Sets")
    from pydicom.dataset import FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import UID, ImplicitVRLittleEndian, generate_uid

    from inpaintssl import __version__

    check_class_names(
        class_names, owner="write_rtstruct: class_names", what="RT Structure Set", field="ROIName"
    )
    labels = checked_label_map(labels, volume, class_names=class_names, owner="write_rtstruct")
    headers = {str(path): pydicom.dcmread(path, stop_before_pixels=True) for path in volume.files}
    first = complete_identity(headers[str(volume.files[0])])
    images = []  # per stored slice: its Contour Image Sequence item
    to_patient = []  # per stored slice: its pixel-to-patient matrix
    for path, frame in volume.slice_sources:
        header = headers[str(path)]
        image = _item(
            ReferencedSOPClassUID=header.SOPClassUID, ReferencedSOPInstanceUID=header.SOPInstanceUID
        )
        if frame is not None:
            image.ReferencedFrameNumber = frame + 1
        images.append(image)
        to_patient.append(_pixel_to_patient(slice_header(header, frame)))

    now = datetime.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(RT_STRUCTURE_SET_STORAGE)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    # Implicit VR, DICOM's default: its 4-byte lengths hold a large region's ContourData, which
    # explicit VR's 2-byte DS length (64 KiB, about 2,000 points) cannot.
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = _item(SpecificCharacterSet="ISO_IR 192")  # UTF-8: class names may be any text
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RT_STRUCTURE_SET_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    for name in ("StudyInstanceUID", *TYPE_2_IDENTITY):
        setattr(ds, name, getattr(first, name))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = derived_series_number(getattr(first, "SeriesNumber", None))
    ds.SeriesDescription = "inpaintssl segmentation"
    ds.OperatorsName = ""
    ds.Manufacturer, ds.ManufacturerModelName = "inpaintssl", "inpaintssl predict"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "inpaintssl"
    ds.StructureSetDate, ds.StructureSetTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    frame_of_reference = str(first.FrameOfReferenceUID)
    series = _item(SeriesInstanceUID=first.SeriesInstanceUID, ContourImageSequence=DicomSequence(images))
    study = _item(
        ReferencedSOPClassUID=_DETACHED_STUDY,
        ReferencedSOPInstanceUID=first.StudyInstanceUID,
        RTReferencedSeriesSequence=DicomSequence([series]),
    )
    ds.ReferencedFrameOfReferenceSequence = DicomSequence(
        [_item(FrameOfReferenceUID=frame_of_reference, RTReferencedStudySequence=DicomSequence([study]))]
    )
    rois, contours, observations = [], [], []
    for k, name in enumerate(class_names):
        number = k + 1
        rois.append(
            _item(
                ROINumber=number,
                ReferencedFrameOfReferenceUID=frame_of_reference,
                ROIName=name,
                ROIGenerationAlgorithm="AUTOMATIC",
                ROIGenerationDescription=f"inpaintssl {__version__}",
            )
        )
        drawn = []
        for z in range(labels.shape[2]):
            for outline in mask_outlines(labels[:, :, z] == number):
                index = np.column_stack([outline, np.zeros(len(outline)), np.ones(len(outline))])
                points = (to_patient[z] @ index.T).T
                item = _item(
                    ContourImageSequence=DicomSequence([images[z]]),
                    ContourGeometricType="CLOSED_PLANAR",
                    NumberOfContourPoints=len(points),
                )
                item[_CONTOUR_DATA] = _contour_data(points)
                drawn.append(item)
        contour = _item(ReferencedROINumber=number, ROIDisplayColor=list(ROI_COLOURS[k % len(ROI_COLOURS)]))
        if drawn:
            contour.ContourSequence = DicomSequence(drawn)
        contours.append(contour)
        observations.append(
            _item(
                ObservationNumber=number,
                ReferencedROINumber=number,
                RTROIInterpretedType="",
                ROIInterpreter="",
            )
        )
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    with atomic_path(target) as tmp:
        if int(pydicom.__version__.split(".")[0]) >= 3:
            ds.save_as(tmp, enforce_file_format=True)
        else:  # pydicom 2 takes the encoding from these, and names the option otherwise
            ds.is_little_endian, ds.is_implicit_VR = True, True
            ds.save_as(tmp, write_like_original=False)
