"""Label maps of DICOM series as DICOM Segmentation objects (SEG), which PACS viewers overlay on the series.

``predict(output_format="dicom_seg")`` (and ``"input"``, for DICOM inputs) writes each DICOM
series' label map as a SEG instance (``<case>_seg.dcm``), written with highdicom (the
``dicom-seg`` extra): a new series in the scan's study, for the same patient and frame of
reference, whose frames each reference the slice they segment (its SOP instance, and its frame in
an Enhanced file), so that OHIF, 3D Slicer (QuantitativeReporting) and other viewers place it on
the series without any geometry of this library's. It has a segment per class of the run's
``class_names`` (the segment label; category and type are SNOMED CT "Tissue", since a class name
alone says no more), and is of one of two types (``dicom_seg_type``):

- ``binary`` (the default, Segmentation Storage): a frame per class and slice, one bit per pixel,
  frames without a labelled pixel left out. Every viewer that reads SEG reads it.
- ``labelmap`` (Label Map Segmentation Storage, added to DICOM by Supplement 243): a frame per
  slice whose pixels hold the segment numbers themselves, 0 for background, 8 bits each (16
  beyond 255 classes), slices without a labelled pixel left out. One frame per slice however
  many classes, and a viewer takes it as the label map it is; a viewer or archive older than
  its SOP class may refuse it.

With ``probabilities``, ``<case>_prob.dcm`` is a ``FRACTIONAL`` SEG of type ``PROBABILITY``
(either way): each class' probability in 255 steps. Both name the algorithm (``inpaintssl``, its
version, artificial intelligence) as the segments' automatic source.

Each class has a display colour (:func:`class_colours`), so that a viewer shows every SEG of a run
in the same colours: a ``BINARY`` or ``FRACTIONAL`` SEG's segments recommend it
(``RecommendedDisplayCIELabValue``), and a ``LABELMAP`` SEG maps its pixel values through a palette
(``PALETTE COLOR``: black background, then the classes' colours), as DICOM has a label map shown.

The series must identify itself as DICOM requires of a referenced series: every file holds a
``StudyInstanceUID``, a ``SeriesInstanceUID`` and a ``FrameOfReferenceUID``; otherwise it is
refused, naming the file and the attribute, before any case is predicted. Patient and study
attributes a file leaves out (type 2: ``PatientID``, ``PatientName``, ``StudyDate`` ...) are written
empty, as DICOM writes an unknown value. A series held in several Enhanced (multi-frame) files is
refused: a SEG references frames of one multi-frame file at most.

Example:
    >>> report = predict("runs/ct-ft", "dicom/series-01", output="seg",
    ...                  output_format="dicom_seg")  # doctest: +SKIP
    >>> report.cases[0].segmentation.name  # doctest: +SKIP
    'series-01_seg.dcm'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inpaintssl.atomic import atomic_path
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.extras import import_optional
from inpaintssl.inference.dicom_reference import (
    SERIES_NUMBER_OFFSET,
    check_series_identity,
    complete_identity,
)
from inpaintssl.inference.results import PredictionError
from inpaintssl.options import check_option

__all__ = ["DICOM_SEG_TYPES", "DicomSegType", "check_dicom_seg_source", "class_colours", "write_dicom_seg"]

DicomSegType = Literal["binary", "labelmap"]
DICOM_SEG_TYPES: tuple[DicomSegType, ...] = ("binary", "labelmap")
"""The label map SEG's types: its ``SegmentationType``, in lower case."""


def class_colours(count: int) -> list[tuple[int, int, int]]:
    """The display colours of ``count`` classes, as 8-bit RGB, class 0 first.

    matplotlib's ``tab10`` colours, then the lighter ten of ``tab20``; they repeat from the 21st
    class on.

    Example:
        >>> class_colours(2)
        [(31, 119, 180), (255, 127, 14)]
    """
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]  # 20 colours, dark and light in turns: the dark ten are tab10's
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    colours = []
    for k in range(count):
        red, green, blue, _ = (round(255 * float(c)) for c in tab20(order[k % 20]))
        colours.append((red, green, blue))
    return colours


def _purpose() -> str:
    return "writing DICOM SEG label maps"


def _sources(volume: DicomVolume, pydicom: Any) -> tuple[list[Any], list[int]]:
    """The source datasets (headers only) and, per source frame in the SEG's order, the stored slice."""
    sources = volume.slice_sources
    datasets = [pydicom.dcmread(path, stop_before_pixels=True) for path in volume.files]
    if all(frame is None for _, frame in sources):
        return datasets, list(range(len(sources)))  # one file per slice, in stored order
    # One Enhanced file: the SEG's frames follow the file's frames, wherever their positions put them.
    by_frame = sorted(range(len(sources)), key=lambda k: sources[k][1] or 0)
    return datasets, by_frame


def check_dicom_seg_source(volume: Any, *, source: Path) -> None:
    """Refuse, before any case is predicted, an input whose label map cannot be a DICOM SEG.

    Raises:
        PredictionError: ``volume`` is not a DICOM series, a file lacks an attribute of
            :data:`~inpaintssl.inference.dicom_reference.REQUIRED`, or the series is held in
            several Enhanced files; the message names the input (and the file).
            Also where highdicom is not installed (the ``dicom-seg`` extra).
    """
    if isinstance(volume, DicomVolume):
        import_optional("highdicom", extra="dicom-seg", purpose=_purpose(), error=PredictionError)
        files = volume.files  # each file once, an Enhanced file too
        if len(files) > 1 and any(frame is not None for _, frame in volume.slice_sources):
            raise PredictionError(
                f"input {source}: its slices are frames of {len(files)} Enhanced (multi-frame) files; a "
                "DICOM SEG references frames of one multi-frame file at most: give each file on its own, or "
                "write NIfTI (output_format='nifti')"
            )
    check_series_identity(volume, source=source, output_format="dicom_seg", what="DICOM SEG")


def _segmentation(
    hd: Any,
    datasets: list[Any],
    frames: np.ndarray,
    segments: list[Any],
    *,
    segmentation_type: str,
    series_instance_uid: str,
    instance_number: int,
    palette: Any = None,
) -> Any:
    from inpaintssl import __version__

    probabilities = segmentation_type == "FRACTIONAL"
    kind: dict[str, Any] = {"segmentation_type": segmentation_type}
    if probabilities:
        kind["fractional_type"] = "PROBABILITY"
    series_number = getattr(datasets[0], "SeriesNumber", None)
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segment_descriptions=segments,
        series_instance_uid=series_instance_uid,
        series_number=SERIES_NUMBER_OFFSET + (int(series_number) if series_number is not None else 0),
        series_description="inpaintssl " + ("probabilities" if probabilities else "segmentation"),
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer="inpaintssl",
        manufacturer_model_name="inpaintssl predict",
        software_versions=__version__,
        device_serial_number="0",
        # An empty map keeps its frames: a SEG of no frame is not valid DICOM.
        omit_empty_frames=bool(frames.any()),
        palette_color_lut_transformation=palette,
        **kind,
    )


def write_dicom_seg(
    labels: np.ndarray,
    volume: DicomVolume,
    target: Path,
    *,
    class_names: Sequence[str],
    probabilities: np.ndarray | None = None,
    probabilities_target: Path | None = None,
    dicom_seg_type: DicomSegType = "binary",
) -> None:
    """Write ``labels`` as a DICOM SEG of ``volume`` to ``target`` (and the probabilities beside it).

    Both instances form one new SEG series in the source's study; each file is written atomically.

    Args:
        labels: ``uint8`` ``(rows, columns, slices)`` on the series' stored grid: 0 background,
            ``k + 1`` for ``class_names[k]``; one segment per class.
        volume: The DICOM series the labels segment (:func:`check_dicom_seg_source` passed).
        target: The label map's ``.dcm`` file.
        class_names: The segments' labels, in order.
        probabilities: ``(rows, columns, slices, K)`` probabilities in ``[0, 1]``, written to
            ``probabilities_target`` as a ``FRACTIONAL`` SEG of type ``PROBABILITY``.
        probabilities_target: Where they go (needed with ``probabilities``).
        dicom_seg_type: The label map's SEG type: ``binary`` or ``labelmap`` (see the module
            docstring).

    Raises:
        ValueError: An unknown ``dicom_seg_type``, or ``probabilities`` without their target.

    Example:
        >>> series = DicomVolume("ct/series-01")  # doctest: +SKIP
        >>> write_dicom_seg(labels, series, Path("series-01_seg.dcm"), class_names=("liver",),
        ...                 dicom_seg_type="labelmap")  # doctest: +SKIP
    """
    check_option(dicom_seg_type, DICOM_SEG_TYPES, field="dicom_seg_type")
    hd = import_optional("highdicom", extra="dicom-seg", purpose=_purpose())
    pydicom = import_optional("pydicom", extra="dicom", purpose=_purpose())
    from pydicom.sr.codedict import codes

    from inpaintssl import __version__

    datasets, order = _sources(volume, pydicom)
    datasets = [complete_identity(ds) for ds in datasets]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="inpaintssl", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    colours = class_colours(len(class_names))

    def segments(*, coloured: bool) -> list[Any]:
        return [
            hd.seg.SegmentDescription(
                segment_number=k + 1,
                segment_label=name,
                segmented_property_category=codes.SCT.Tissue,
                segmented_property_type=codes.SCT.Tissue,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*colours[k]) if coloured else None,
            )
            for k, name in enumerate(class_names)
        ]

    # A label map's colours are its palette's; DICOM allows no segment colour beside one.
    palette = (
        hd.PaletteColorLUTTransformation.from_combined_lut(
            np.array([(0, 0, 0), *colours], dtype=np.uint8), palette_color_lut_uid=hd.UID()
        )
        if dicom_seg_type == "labelmap"
        else None
    )
    series = hd.UID()
    # (frames, rows, columns) of segment numbers: highdicom's label-map style, for either type.
    written = [(target, np.moveaxis(labels, 2, 0)[order], dicom_seg_type.upper())]
    if probabilities is not None:
        if probabilities_target is None:
            raise ValueError("write_dicom_seg: probabilities given without probabilities_target")
        frames = np.clip(np.moveaxis(probabilities, 2, 0)[order], 0.0, 1.0)  # (frames, rows, columns, K)
        written.append((probabilities_target, frames, "FRACTIONAL"))
    for number, (path, frames, segmentation_type) in enumerate(written, start=1):
        label_map = segmentation_type == "LABELMAP"
        seg = _segmentation(
            hd,
            datasets,
            frames,
            segments(coloured=not label_map),
            segmentation_type=segmentation_type,
            series_instance_uid=series,
            instance_number=number,
            palette=palette if label_map else None,
        )
        with atomic_path(path) as tmp:
            seg.save_as(tmp)
