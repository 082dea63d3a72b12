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
``StudyInstanceUID``, a ``SeriesInstanceUID`` and a ``FrameOfReferenceUID``; and every slice
states its geometry (``ImagePositionPatient``, ``ImageOrientationPatient``, ``PixelSpacing``),
by which the SEG's frames are placed; otherwise it is refused, naming the file and the
attribute, before any case is predicted. A SEG states one pixel spacing (and slice thickness)
and one orientation for all its frames: an Enhanced file that states them in each frame's
functional groups rather than the shared ones is written where every frame states the same, and
refused otherwise, naming the file, the frame and the attribute. Patient and study attributes a
file leaves out (type 2: ``PatientID``, ``PatientName``, ``StudyDate`` ...) are written empty,
as DICOM writes an unknown value; a slice without ``SliceThickness`` (type 2 in its Image Plane
module) gives a SEG whose pixel measures state none, as nothing says what it is. A series held
in several Enhanced (multi-frame) files is refused: a SEG references frames of one multi-frame
file at most; and so is part of an Enhanced file's frames (one echo of a multi-echo file, or
their root-sum-of-squares): a SEG of a multi-frame file has a frame for each of its frames. A
multi-echo series of single-frame files is referenced by the slices read (the echo chosen; for
the root-sum-of-squares, the first echo's, at the same positions).

:func:`write_dicom_seg` takes the label map as class numbers of any integer dtype on the series'
stored grid (whatever the volume's reorientation), and refuses, before anything is written, one
off that grid, of another dtype, or holding a value beyond the classes, and probabilities off that
grid or of another class count
(:func:`~inpaintssl.inference.dicom_reference.checked_label_map`).

The SEG is written in UTF-8 (``SpecificCharacterSet`` ``ISO_IR 192``), whatever the series' own
character set: the patient and study attributes copied keep their text, and a class name may be
any text. Class names must fit a ``SegmentLabel`` (DICOM's VR LO: at most 64 characters, no
backslash, no control characters), checked before any case is predicted.

Example:
    >>> report = predict("runs/ct-ft", "dicom/series-01", output="seg",
    ...                  output_format="dicom_seg")  # doctest: +SKIP
    >>> report.cases[0].segmentation.name  # doctest: +SKIP
    'series-01_seg.dcm'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inpaintssl.atomic import atomic_path
from inpaintssl.data.dicom import DicomEchoesRssVolume, DicomVolume, slice_header
from inpaintssl.extras import import_optional
from inpaintssl.inference.dicom_reference import (
    check_class_names,
    check_series_identity,
    check_slice_geometry,
    checked_label_map,
    complete_identity,
    derived_series_number,
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


_UTF8 = "ISO_IR 192"
"""The SEG's ``SpecificCharacterSet``: UTF-8, which holds any text the source's character set holds."""


def _sources(volume: DicomVolume, pydicom: Any) -> tuple[list[Path], list[Any], list[int]]:
    """The source files, their datasets (headers only) and, per source frame in the SEG's order, the
    stored slice."""
    sources = volume.slice_sources
    if all(frame is None for _, frame in sources):
        # One file per slice read, in stored order: not volume.files, which for a multi-echo
        # series read as its root-sum-of-squares holds every echo's files (two per position).
        paths = [path for path, _ in sources]
        datasets = [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]
        return paths, datasets, list(range(len(sources)))
    # One Enhanced file, every frame of it read (check_dicom_seg_source): the SEG's frames follow
    # the file's frames, wherever their positions put them.
    paths = [Path(path) for path in volume.files]
    datasets = [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]
    by_frame = sorted(range(len(sources)), key=lambda k: sources[k][1] or 0)
    return paths, datasets, by_frame


def _in_utf8(dataset: Any) -> Any:
    """``dataset`` with its text decoded in its own character set, then declared UTF-8 (:data:`_UTF8`).

    highdicom copies the source's patient and study attributes and its ``SpecificCharacterSet``
    into the SEG, and writes every value in that character set: a class name outside it (a
    Latin-1 series' "右腎") became "?", an undeclared one's "ä" Latin-1 bytes in a file declaring
    ASCII, and one of an empty first value (``["", "ISO 2022 IR 87"]``, as DICOM allows) was
    refused. Decoded first, every value is text that pydicom encodes again in UTF-8.
    """
    for element in dataset.iterall():
        _ = element.value  # decodes a raw element with the character set it was read in
    dataset.SpecificCharacterSet = _UTF8
    return dataset


def _with_slice_thickness(dataset: Any) -> Any:
    """``dataset`` with an empty ``SliceThickness`` where it has none, which highdicom needs.

    highdicom copies a single-frame source's ``SliceThickness`` into the SEG's pixel measures and
    fails (``AttributeError``) on a slice without one, which DICOM allows (type 2: an unknown
    thickness). Given an empty one it leaves the thickness out of the pixel measures: nothing is
    made up.
    """
    if "PerFrameFunctionalGroupsSequence" not in dataset and "SliceThickness" not in dataset:
        dataset.SliceThickness = None
    return dataset


_SHARED_GEOMETRY = (
    ("PixelMeasuresSequence", ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices")),
    ("PlaneOrientationSequence", ("ImageOrientationPatient",)),
)
"""The functional groups (and their attributes) highdicom reads a multi-frame source's pixel
measures and orientation from: its shared functional group only, never a frame's own."""


def _values(value: Any) -> list[Any]:
    """A DICOM value's values: a multi-valued one's (pydicom's ``MultiValue``), else itself alone."""
    return [value] if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) else list(value)


def _compared(value: Any) -> tuple[Any, ...]:
    """A DICOM value as numbers, so that "0.5" and "0.50" agree; as text where it holds no number."""
    values = _values(value)
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return tuple(str(v) for v in values)


def _shown(value: Any) -> str:
    values = _values(value)
    return str(values[0]) if len(values) == 1 else "[" + ", ".join(str(v) for v in values) + "]"


def _shared_frame_geometry(dataset: Any, path: Path, *, owner: str) -> dict[str, dict[str, Any]]:
    """The pixel measures and orientation an Enhanced file's frames all state, to share in a SEG.

    For each of :data:`_SHARED_GEOMETRY` that some frame states in its own functional group (or
    that the shared group lacks, the frames' values then at the file's top level): each attribute's
    value, as every frame states it (:func:`~inpaintssl.data.dicom.slice_header`: its own group,
    else the shared one, else the top level, as the series was read), left out where no frame
    states one. A group already shared and in no frame's own is left out, as highdicom reads it.

    Args:
        dataset: The file's header.
        path: The file, for messages.
        owner: What the message starts with (``"input <source>"``).

    Raises:
        PredictionError: Two frames state an attribute differently (the SEG states one for all
            its frames): naming the file, the frames, the attribute and both values.
    """
    frames = getattr(dataset, "PerFrameFunctionalGroupsSequence", None)
    if not frames:
        return {}
    shared_groups = getattr(dataset, "SharedFunctionalGroupsSequence", None)
    shared = shared_groups[0] if shared_groups else None
    headers = [slice_header(dataset, k) for k in range(len(frames))]
    common: dict[str, dict[str, Any]] = {}
    for group, names in _SHARED_GEOMETRY:
        if (shared is not None and group in shared) and not any(group in own for own in frames):
            continue
        values: dict[str, Any] = {}
        for name in names:
            stated = [getattr(header, name, None) for header in headers]
            stated = [None if value in (None, "") else value for value in stated]
            first = stated[0]
            for number, value in enumerate(stated[1:], start=2):
                if (value is None) != (first is None) or (
                    value is not None and _compared(value) != _compared(first)
                ):
                    raise PredictionError(
                        f"{owner}: the Enhanced (multi-frame) file {path} states {name} ({group}) per "
                        f"frame, and frame {number}'s, {_shown(value)}, is not frame 1's, {_shown(first)}; "
                        "a DICOM SEG states one pixel spacing, slice thickness and orientation for all "
                        "its frames, so every frame must state the same: write an RT Structure Set "
                        "(output_format='rtstruct'), whose contours follow each frame's own geometry, or "
                        "NIfTI (output_format='nifti')"
                    )
            if first is not None:
                values[name] = first
        common[group] = values
    return common


def _with_shared_geometry(dataset: Any, path: Path) -> Any:
    """``dataset`` (a header-only copy) with its frames' pixel measures and orientation shared.

    highdicom takes a multi-frame source's ``PixelMeasuresSequence`` and
    ``PlaneOrientationSequence`` from its shared functional group alone, and failed (an
    ``AttributeError``, "Source images must have a shared orientation") on an Enhanced file that
    states them in each frame's group, as DICOM allows, after the prediction. Where every frame
    states the same (:func:`_shared_frame_geometry`), the shared group gets it and the frames'
    own are taken out: the SEG states what each frame does.

    Raises:
        PredictionError: Frames that state them differently (refused before predicting by
            :func:`check_dicom_seg_source`).
    """
    pydicom = import_optional("pydicom", extra="dicom", purpose=_purpose())
    common = _shared_frame_geometry(dataset, path, owner="write_dicom_seg")
    if not common:
        return dataset
    if "SharedFunctionalGroupsSequence" not in dataset or not dataset.SharedFunctionalGroupsSequence:
        dataset.SharedFunctionalGroupsSequence = pydicom.Sequence([pydicom.Dataset()])
    shared = dataset.SharedFunctionalGroupsSequence[0]
    for group, values in common.items():
        item = pydicom.Dataset()
        for name, value in values.items():
            setattr(item, name, value)
        setattr(shared, group, pydicom.Sequence([item]))
        for own in dataset.PerFrameFunctionalGroupsSequence:
            if group in own:
                delattr(own, group)
    return dataset


def check_dicom_seg_source(volume: Any, *, source: Path) -> None:
    """Refuse, before any case is predicted, an input whose label map cannot be a DICOM SEG.

    Raises:
        PredictionError: ``volume`` is not a DICOM series, a file lacks an attribute of
            :data:`~inpaintssl.inference.dicom_reference.REQUIRED`, a slice one of
            :data:`~inpaintssl.inference.dicom_reference.GEOMETRY`, the series is held in
            several Enhanced files, or is part of one Enhanced file's frames (an echo of a
            multi-echo file), or its frames state different pixel measures or orientations in
            their own functional groups (:func:`_shared_frame_geometry`); the message names the
            input (and the file).
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
    headers = check_series_identity(volume, source=source, output_format="dicom_seg", what="DICOM SEG")
    assert isinstance(volume, DicomVolume)  # check_series_identity refused every other input
    check_slice_geometry(
        volume,
        headers,
        source=source,
        what="DICOM SEG",
        needs="places each of its frames where the slice it segments lies, as viewers overlay it",
    )
    _check_every_frame_read(volume, headers, source=source)
    if len(volume.files) == 1 and volume.slice_sources[0][1] is not None:
        # Before predicting: the SEG states one pixel measures and orientation for all its frames.
        path = Path(volume.files[0])
        _shared_frame_geometry(headers[str(path)], path, owner=f"input {source}")


def _check_every_frame_read(volume: DicomVolume, headers: dict[str, Any], *, source: Path) -> None:
    """Refuse a volume of some of an Enhanced file's frames (an echo of a multi-echo file).

    highdicom makes a SEG of a multi-frame source one frame per source frame, placed and
    referenced by the file's own frames: a label map of half of them (one echo's) matches none.
    """
    sources = volume.slice_sources
    if len(volume.files) != 1 or sources[0][1] is None:
        return
    path = volume.files[0]
    count = int(getattr(headers[str(path)], "NumberOfFrames", 0) or 0)
    if count == len(sources):
        return
    times = ", ".join(f"{t:g}" for t in volume.echo_times_ms)
    if isinstance(volume, DicomEchoesRssVolume):
        read = f"the root-sum-of-squares of its echoes ({times} ms), placed on the first echo's frames"
    elif volume.echo is not None:
        read = f"echo {volume.echo} of its echoes ({times} ms)"
    else:
        read = "the frames read"
    raise PredictionError(
        f"input {source}: its label map is of {len(sources)} of the {count} frames of the Enhanced "
        f"(multi-frame) file {path}: {read}; a DICOM SEG of a multi-frame file has a frame for each of "
        "the file's frames, so none can hold a label map of some of them: write an RT Structure Set "
        "(output_format='rtstruct'), whose contours reference the frames read, or NIfTI "
        "(output_format='nifti')"
    )


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
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segment_descriptions=segments,
        series_instance_uid=series_instance_uid,
        series_number=derived_series_number(getattr(datasets[0], "SeriesNumber", None)),
        series_description="inpaintssl " + ("probabilities" if probabilities else "segmentation"),
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer="inpaintssl",
        manufacturer_model_name="inpaintssl predict",
        software_versions=__version__,
        device_serial_number="0",
        # Who made it: no person (type 2, so present and empty); the algorithm is named per segment.
        content_creator_name="",
        specific_character_set=_UTF8,
        # An empty map keeps its frames: a SEG of no frame is not valid DICOM.
        omit_empty_frames=bool(frames.any()),
        palette_color_lut_transformation=palette,
        **kind,
    )


def _check_probabilities(probabilities: np.ndarray, volume: DicomVolume, *, classes: int) -> None:
    """Refuse probabilities that are not ``(rows, columns, slices, classes)`` on the stored grid."""
    expected = (*(int(n) for n in volume.stored_shape), classes)
    shape = tuple(int(n) for n in probabilities.shape)
    if shape != expected:
        raise ValueError(
            f"write_dicom_seg: probabilities {shape} are not on the series' grid {expected[:3]} with one map "
            f"per class; expected {expected}: (rows, columns, slices) as stored, then one of the "
            f"{classes} class_names each"
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
        labels: Integers ``(rows, columns, slices)`` on the series' stored grid, whatever
            ``volume``'s reorientation (``volume.to_stored`` takes a label map of the volume as read
            there): 0 background, ``k + 1`` for ``class_names[k]``; one segment per class. Written
            as 8-bit values up to 255 classes, 16-bit beyond.
        volume: The DICOM series the labels segment (:func:`check_dicom_seg_source` passed).
        target: The label map's ``.dcm`` file.
        class_names: The segments' labels, in order.
        probabilities: ``(rows, columns, slices, K)`` probabilities in ``[0, 1]``, written to
            ``probabilities_target`` as a ``FRACTIONAL`` SEG of type ``PROBABILITY``.
        probabilities_target: Where they go (needed with ``probabilities``).
        dicom_seg_type: The label map's SEG type: ``binary`` or ``labelmap`` (see the module
            docstring).

    Raises:
        ValueError: An unknown ``dicom_seg_type``; ``labels`` not on the series' stored grid, not of
            an integer dtype, or holding a value below 0 or beyond the classes
            (:func:`~inpaintssl.inference.dicom_reference.checked_label_map`); ``probabilities`` not
            ``(rows, columns, slices, len(class_names))`` on that grid, or without their target.
        PredictionError: A class name that is no ``SegmentLabel``
            (:func:`~inpaintssl.inference.dicom_reference.check_class_names`); an Enhanced file
            whose frames state different pixel measures or orientations
            (:func:`check_dicom_seg_source` refuses it before predicting).

    Example:
        >>> series = DicomVolume("ct/series-01")  # doctest: +SKIP
        >>> write_dicom_seg(labels, series, Path("series-01_seg.dcm"), class_names=("liver",),
        ...                 dicom_seg_type="labelmap")  # doctest: +SKIP
    """
    check_option(dicom_seg_type, DICOM_SEG_TYPES, field="dicom_seg_type")
    check_class_names(
        class_names, owner="write_dicom_seg: class_names", what="DICOM SEG", field="SegmentLabel"
    )
    # Checked before anything is built: highdicom took extra slices' labels without a word (the
    # frames take the first slices), and refused signed integers and unknown classes in its words.
    labels = checked_label_map(labels, volume, class_names=class_names, owner="write_dicom_seg")
    if probabilities is not None:
        _check_probabilities(probabilities, volume, classes=len(class_names))
        if probabilities_target is None:
            raise ValueError("write_dicom_seg: probabilities given without probabilities_target")
    hd = import_optional("highdicom", extra="dicom-seg", purpose=_purpose())
    pydicom = import_optional("pydicom", extra="dicom", purpose=_purpose())
    from pydicom.sr.codedict import codes

    from inpaintssl import __version__

    paths, datasets, order = _sources(volume, pydicom)
    datasets = [
        _with_shared_geometry(_with_slice_thickness(_in_utf8(complete_identity(ds))), path)
        for path, ds in zip(paths, datasets)
    ]
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
    entries = np.array([(0, 0, 0), *colours], dtype=np.uint16)
    if len(entries) > 256:
        # An 8-bit palette holds 256 entries at most: beyond 255 classes its entries are 16-bit,
        # each 8-bit colour scaled to the full range (255 -> 65535).
        entries *= 257
    else:
        entries = entries.astype(np.uint8)
    palette = (
        hd.PaletteColorLUTTransformation.from_combined_lut(entries, palette_color_lut_uid=hd.UID())
        if dicom_seg_type == "labelmap"
        else None
    )
    series = hd.UID()
    # (frames, rows, columns) of segment numbers: highdicom's label-map style, for either type.
    written = [(target, np.moveaxis(labels, 2, 0)[order], dicom_seg_type.upper())]
    if probabilities is not None:
        assert probabilities_target is not None  # checked above, before anything was built
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
