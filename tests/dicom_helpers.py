"""DICOM files for the tests, written with pydicom."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np


def save_dicom(ds: Any, path: Path | str) -> None:
    """Write ``ds`` as a DICOM file: preamble, ``DICM`` prefix and file meta, on pydicom 2.4 and 3."""
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        # pydicom 3.0 renamed write_like_original=False to enforce_file_format=True (and removed
        # the old name); 2.x takes the encoding from these two attributes, not the file meta.
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


STUDY_OBJECT_CLASSES = {"SR": "1.2.840.10008.5.1.4.1.1.88.22", "SEG": "1.2.840.10008.5.1.4.1.1.66.4"}
"""SOP classes of the objects a study export holds beside its slices: an Enhanced SR, a Segmentation."""


def save_study_object(slice_file: Path, target: Path, *, kind: str, **tags: Any) -> Path:
    """A study's object that is no slice, made from ``slice_file`` in a series of its own: ``"SR"``
    a structured report (no pixels, Rows or Columns), ``"SEG"`` a segmentation (its pixels are
    labels); ``tags`` set after (e.g. ``SeriesDescription``)."""
    import pydicom

    ds = pydicom.dcmread(slice_file)
    if kind == "SR":
        for name in ("Rows", "Columns", "PixelData", "ImagePositionPatient", "ImageOrientationPatient"):
            delattr(ds, name)
    ds.Modality, ds.SeriesInstanceUID = kind, pydicom.uid.generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = STUDY_OBJECT_CLASSES[kind]
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(target)
    return target


def single_frame_dataset(*, sop_class: str, modality: str, shape: tuple[int, int], signed: bool) -> Any:
    """A pydicom dataset with the file meta and pixel-format tags of one 16-bit monochrome slice.

    The caller adds geometry, rescale and ``PixelData`` (``<i2`` when ``signed``, else ``<u2``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = int(signed)
    return ds


def write_mr_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    z: float,
    instance: int,
    pixel_spacing: tuple[str, str] | None = ("0.5", "0.75"),
    imager_pixel_spacing: tuple[str, str] | None = None,
    thickness: str = "2",
    position: tuple[float, float, float] | None = None,
    orientation: tuple[int, ...] | None = (1, 0, 0, 0, 1, 0),
) -> None:
    """One unsigned 16-bit MR slice written by pydicom; ``None`` leaves a geometry tag out.

    ``position`` defaults to ``(-10, 20, z)``; ``imager_pixel_spacing`` is the detector's pixel
    size (projection imaging), which readers must not take for the patient's.
    """
    from pydicom.uid import MRImageStorage

    ds = single_frame_dataset(sop_class=MRImageStorage, modality="MR", shape=pixels.shape, signed=False)
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    ds.SliceThickness = thickness
    # Rows run along +y (posterior), columns along +x (patient left), slices along +z.
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    ds.ImagePositionPatient = [-10, 20, f"{z:g}"] if position is None else [f"{v:.6f}" for v in position]
    ds.InstanceNumber = instance
    ds.PixelData = pixels.astype("<u2").tobytes()
    save_dicom(ds, path)


def write_enhanced(
    path: Path,
    frames: np.ndarray,
    *,
    modality: str,
    positions: list[tuple[float, float, float]],
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: tuple[float, float] = (0.5, 0.75),
    thickness: float = 2.0,
    rescale: list[tuple[float, float]] | None = None,
    geometry_in: str = "shared",
    series_uid: str | None = None,
    identity: dict[str, Any] | None = None,
    echo_times: list[float] | None = None,
    edit: Callable[[Any], None] | None = None,
) -> None:
    """An Enhanced CT or MR file of ``frames`` (``(n, rows, columns)``, signed 16-bit) written by pydicom.

    Each frame's position goes in its own functional group (PlanePositionSequence, as scanners
    write it); the pixel measures and orientation in the shared group (``geometry_in="shared"``)
    or repeated in each frame's (``"per_frame"``); ``rescale`` (slope, intercept per frame), where
    given, in each frame's PixelValueTransformationSequence. Nothing of the geometry or rescale is
    at the top level, where a single-frame slice keeps it. ``series_uid``: SeriesInstanceUID,
    left out if ``None``. ``identity``: more top-level tags (patient, study, frame of reference).
    ``echo_times``: each frame's EffectiveEchoTime (ms), in its MREchoSequence, as multi-echo
    Enhanced MR files state it. ``edit``: called with the dataset before it is saved (more
    functional groups, private tags).
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage, EnhancedMRImageStorage

    storage = EnhancedCTImageStorage if modality == "CT" else EnhancedMRImageStorage
    ds = single_frame_dataset(sop_class=storage, modality=modality, shape=frames.shape[1:], signed=True)
    ds.NumberOfFrames = len(frames)
    ds.InstanceNumber = 1
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
    for tag, value in (identity or {}).items():
        setattr(ds, tag, value)

    def item(**tags: Any) -> Any:
        entry = Dataset()
        for tag, value in tags.items():
            setattr(entry, tag, value)
        return entry

    def geometry(group: Any) -> None:
        group.PixelMeasuresSequence = Sequence(
            [item(PixelSpacing=[f"{v:g}" for v in pixel_spacing], SliceThickness=f"{thickness:g}")]
        )
        group.PlaneOrientationSequence = Sequence(
            [item(ImageOrientationPatient=[f"{v:g}" for v in orientation])]
        )

    shared = Dataset()
    if geometry_in == "shared":
        geometry(shared)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k, position in enumerate(positions):
        group = Dataset()
        group.PlanePositionSequence = Sequence([item(ImagePositionPatient=[f"{v:g}" for v in position])])
        group.FrameContentSequence = Sequence([item(InStackPositionNumber=k + 1)])
        if geometry_in == "per_frame":
            geometry(group)
        if echo_times is not None:
            group.MREchoSequence = Sequence([item(EffectiveEchoTime=float(echo_times[k]))])
        if rescale is not None:
            slope, intercept = rescale[k]
            group.PixelValueTransformationSequence = Sequence(
                [item(RescaleSlope=f"{slope:g}", RescaleIntercept=f"{intercept:g}", RescaleType="HU")]
            )
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = frames.astype("<i2").tobytes()
    if edit is not None:
        edit(ds)
    save_dicom(ds, path)


def write_single_frame(
    path: Path,
    stored: np.ndarray,
    *,
    modality: str,
    position: tuple[float, float, float],
    instance: int,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: tuple[float, float] = (0.5, 0.75),
    thickness: float = 2.0,
    rescale: tuple[float, float] | None = None,
    identity: dict[str, Any] | None = None,
    edit: Callable[[Any], None] | None = None,
) -> None:
    """One classic CT or MR slice with the tags :func:`write_enhanced` puts in functional groups.

    ``identity``: more tags (patient, study, series, frame of reference). ``edit``: called with
    the dataset before it is saved (private tags).
    """
    from pydicom.uid import CTImageStorage, MRImageStorage

    storage = CTImageStorage if modality == "CT" else MRImageStorage
    ds = single_frame_dataset(sop_class=storage, modality=modality, shape=stored.shape, signed=True)
    ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
    ds.SliceThickness = f"{thickness:g}"
    ds.ImageOrientationPatient = [f"{v:g}" for v in orientation]
    ds.ImagePositionPatient = [f"{v:g}" for v in position]
    ds.InstanceNumber = instance
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
    for tag, value in (identity or {}).items():
        setattr(ds, tag, value)
    ds.PixelData = stored.astype("<i2").tobytes()
    if edit is not None:
        edit(ds)
    save_dicom(ds, path)


def write_echo_series(
    folder: Path,
    stored: np.ndarray,
    echo_times: tuple[float, ...],
    *,
    slope: float,
    tags: dict[str, Any] | None = None,
    edit: Callable[[Any], None] | None = None,
) -> Path:
    """A multi-echo MR series of classic slices in ``folder``: ``stored`` ``(echoes, rows, columns,
    slices)`` int16, each echo's slices 3 mm apart with its ``EchoTime`` and ``EchoNumbers``,
    rescaled by ``slope``; ``tags`` and ``edit`` as :func:`write_single_frame` takes them."""
    import pydicom

    folder.mkdir(parents=True)
    uid = pydicom.uid.generate_uid()
    for e, te in enumerate(echo_times):
        for k in range(stored.shape[-1]):
            write_single_frame(
                folder / f"IM{k}{e}.dcm",
                stored[e, :, :, k],
                modality="MR",
                position=(0.0, 0.0, 3.0 * k),
                instance=len(echo_times) * k + e + 1,
                rescale=(slope, 0.0),
                identity={
                    "SeriesInstanceUID": uid,
                    "EchoTime": f"{te:g}",
                    "EchoNumbers": e + 1,
                    **(tags or {}),
                },
                edit=edit,
            )
    return folder


def write_series(
    folder: Path,
    stored: np.ndarray,
    *,
    modality: str,
    positions: list[tuple[float, float, float]],
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    rescale: list[tuple[float, float]] | None = None,
    identity: dict[str, Any] | None = None,
) -> Path:
    """``stored`` (``(n, rows, columns)``) as a classic series in ``folder``, one :func:`write_single_frame`
    file per slice: what :func:`write_enhanced` holds in one file. ``identity``: tags every file gets."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, pixels in enumerate(stored):
        write_single_frame(
            folder / f"im{k}.dcm",
            pixels,
            modality=modality,
            position=positions[k],
            instance=k + 1,
            orientation=orientation,
            rescale=None if rescale is None else rescale[k],
            identity=identity,
        )
    return folder


def write_rtstruct(
    path: Path,
    rois: list[tuple[int, str, list[dict[str, Any]]]],
    *,
    frame_of_reference: str | None = None,
) -> Path:
    """An RT Structure Set as planning systems write one, with pydicom.

    ``rois``: ``(ROINumber, ROIName, contours)``; each contour a dict with ``points`` (``(n, 3)``,
    patient LPS mm), optional ``image`` (``(SOPInstanceUID, frame number or None)``, the slice it
    references; left out: no ``ContourImageSequence``) and optional ``kind`` (default
    ``CLOSED_PLANAR``). ``frame_of_reference``: every ROI's ``ReferencedFrameOfReferenceUID``.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    storage = "1.2.840.10008.5.1.4.1.1.481.3"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = storage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StructureSetLabel = "tests"
    frame = frame_of_reference or generate_uid()
    reference = Dataset()
    reference.FrameOfReferenceUID = frame
    ds.ReferencedFrameOfReferenceSequence = Sequence([reference])
    described, contoured, observed = [], [], []
    for number, name, contours in rois:
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame
        roi.ROIGenerationAlgorithm = "MANUAL"
        described.append(roi)
        items = []
        for contour in contours:
            item = Dataset()
            if contour.get("image") is not None:
                uid, frame_number = contour["image"]
                image = Dataset()
                image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
                image.ReferencedSOPInstanceUID = uid
                if frame_number is not None:
                    image.ReferencedFrameNumber = frame_number
                item.ContourImageSequence = Sequence([image])
            points = np.asarray(contour["points"], dtype=float)
            item.ContourGeometricType = contour.get("kind", "CLOSED_PLANAR")
            item.NumberOfContourPoints = len(points)
            item.ContourData = [f"{v:.6f}" for v in points.ravel()]
            items.append(item)
        of_roi = Dataset()
        of_roi.ReferencedROINumber = number
        of_roi.ROIDisplayColor = [255, 0, 0]
        if items:
            of_roi.ContourSequence = Sequence(items)
        contoured.append(of_roi)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN", ""
        observed.append(observation)
    ds.StructureSetROISequence = Sequence(described)
    ds.ROIContourSequence = Sequence(contoured)
    ds.RTROIObservationsSequence = Sequence(observed)
    save_dicom(ds, path)
    return path


def nifti_on_series(series: Path, array: np.ndarray, target: Path) -> Path:
    """``array`` (rows x columns x slices of ``series``) as a NIfTI file on the series' patient affine.

    The independent twin of a label (or image) the tests give as a DICOM object: the ``ct``,
    ``dicom`` and ``nifti`` datasets already pair such a file with its series, and check it.
    """
    import nibabel as nib

    from inpaintssl.data.dicom import DicomVolume

    affine = DicomVolume(series).patient_affine
    assert affine is not None, f"{series} states no patient geometry"
    nib.Nifti1Image(array, affine).to_filename(target)  # type: ignore[no-untyped-call]
    return target


def compress_dicom(path: Path, syntax: str) -> None:
    """Rewrite the DICOM file ``path`` with its pixel data compressed losslessly as ``syntax``.

    RLE Lossless (``1.2.840.10008.1.2.5``) by pydicom's own encoder; High-Throughput JPEG 2000
    Lossless (``1.2.840.10008.1.2.4.201``) frame by frame by imagecodecs' (OpenJPH, reversible: the
    dev extra's; GDCM and pylibjpeg-openjpeg encode no HTJ2K); JPEG Lossless, JPEG-LS and
    JPEG 2000 by GDCM's (``python-gdcm``: the test is skipped without it). GDCM's JPEG 2000
    encoder corrupts the heap on frames below about 16x16 pixels (a 6x5 frame aborted the
    process): give it larger ones. GDCM's writer gives a file without a ``SeriesInstanceUID`` a
    new one of its own, so each file of a series would become a series: write the UID first.
    """
    import pydicom
    import pytest

    if syntax == "1.2.840.10008.1.2.5":
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path)
        return
    if syntax == HTJ2K_LOSSLESS:
        _compress_htj2k(path)
        return
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), f"GDCM cannot read {path}"
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change(), f"GDCM cannot compress {path} as {syntax}"
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write(), f"GDCM cannot write {path}"


HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"


def _compress_htj2k(path: Path) -> None:
    """:func:`compress_dicom` as High-Throughput JPEG 2000 Lossless, each frame its own codestream."""
    import pydicom
    import pytest
    from pydicom.encaps import encapsulate

    imagecodecs = pytest.importorskip("imagecodecs", reason="the dev extra's HTJ2K encoder")
    ds = pydicom.dcmread(path)
    frames = np.asarray(ds.pixel_array).reshape(-1, int(ds.Rows), int(ds.Columns))
    ds.PixelData = encapsulate([bytes(imagecodecs.htj2k_encode(frame, reversible=True)) for frame in frames])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = HTJ2K_LOSSLESS
    ds.save_as(path)


def count_dicom_reads(monkeypatch: Any, *, by: Literal["folder", "file"] = "folder") -> Counter[str]:
    """From now on, count each ``pydicom.dcmread`` under the name of the file it reads (``by="file"``)
    or of that file's folder.

    A study written one folder per series (``SE0002``, ...) then says how often each series' files
    were opened; ``monkeypatch.undo()`` stops the count.
    """
    import pydicom

    real_read = pydicom.dcmread
    reads: Counter[str] = Counter()

    def counted(path: Any, *args: Any, **kwargs: Any) -> Any:
        read = Path(getattr(path, "name", path))  # a path, or a file open already
        reads[read.name if by == "file" else read.parent.name] += 1
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counted)
    return reads


def count_opens_under(folder: Path, monkeypatch: Any) -> Counter[Path]:
    """From now on, count each opening of a file under ``folder`` (``open``, ``Path.open``, and
    pydicom's of a path), by the file; ``monkeypatch.undo()`` stops the count."""
    import builtins

    real_open, real_path_open = builtins.open, Path.open
    opens: Counter[Path] = Counter()
    root = folder.resolve()

    def note(file: Any) -> None:
        if isinstance(file, (str, Path)) and Path(file).resolve().is_relative_to(root):
            opens[Path(file).resolve()] += 1

    def counted(file: Any, *args: Any, **kwargs: Any) -> Any:
        note(file)
        return real_open(file, *args, **kwargs)

    def counted_path_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        # Path.open calls io.open (not builtins.open, which stays uncounted beneath it) or, before
        # Python 3.11, an accessor bound to it at import: counted here, once, on every version.
        note(self)
        return real_path_open(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counted)
    monkeypatch.setattr(Path, "open", counted_path_open)
    return opens


def slice_planes(files: list[Path]) -> dict[tuple[str, int | None], dict[str, np.ndarray]]:
    """``(SOPInstanceUID, frame number or None)`` -> that slice's own geometry, read with pydicom alone.

    Each entry: ``position`` (ImagePositionPatient), ``row`` and ``column`` (ImageOrientationPatient's
    two directions), ``spacing`` (PixelSpacing: row, column), and ``slice``: its place among the
    series' distinct positions along the normal (slices of several echoes at one position share it).
    An Enhanced file's frames each, from their own functional groups, else the shared ones.
    """
    import pydicom

    found: dict[tuple[str, int | None], dict[str, np.ndarray]] = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        frames = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
        if not frames:
            found[(ds.SOPInstanceUID, None)] = _plane(
                ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
            )
            continue
        groups = [[group, ds.SharedFunctionalGroupsSequence[0]] for group in frames]
        for number, (own, shared) in enumerate(groups, start=1):
            found[(ds.SOPInstanceUID, number)] = _plane(
                *(
                    _frame_tag((own, shared), sequence, name, path)
                    for sequence, name in (
                        ("PlanePositionSequence", "ImagePositionPatient"),
                        ("PlaneOrientationSequence", "ImageOrientationPatient"),
                        ("PixelMeasuresSequence", "PixelSpacing"),
                    )
                )
            )
    normal = np.cross(*(next(iter(found.values()))[k] for k in ("row", "column")))
    depths = {key: round(float(entry["position"] @ normal), 3) for key, entry in found.items()}
    distinct = sorted(set(depths.values()))
    for key, entry in found.items():
        entry["slice"] = np.array(distinct.index(depths[key]))
    return found


def _frame_tag(groups: tuple[Any, Any], sequence: str, name: str, path: Path) -> Any:
    """A frame's tag from its own functional group, else the shared one."""
    for group in groups:
        if sequence in group:
            return getattr(group[sequence].value[0], name)
    raise AssertionError(f"{path}: a frame without {sequence}")


def _plane(position: Any, orientation: Any, spacing: Any) -> dict[str, np.ndarray]:
    return {
        "position": np.array([float(v) for v in position]),
        "row": np.array([float(v) for v in orientation[:3]]),
        "column": np.array([float(v) for v in orientation[3:]]),
        "spacing": np.array([float(v) for v in spacing]),
    }


def seg_label_map(
    path: Path, planes: dict[tuple[str, int | None], dict[str, np.ndarray]], shape: tuple[int, int, int]
) -> tuple[np.ndarray, list[tuple[str, int | None]]]:
    """A BINARY or LABELMAP DICOM SEG decoded with pydicom alone: ``(rows, columns, slices)`` segment
    numbers, and the source slices its frames reference, in frame order.

    Each frame goes to the slice it references (its source instance and frame, looked up in
    :func:`slice_planes`'s ``planes``), whose position, orientation and pixel spacing the frame must
    state; a BINARY frame's pixels take its segment's number, a LABELMAP frame's are the numbers.
    """
    import pydicom

    ds = pydicom.dcmread(path)
    count, rows, columns = int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)
    pixels = np.asarray(ds.pixel_array).reshape(count, rows, columns)
    shared = ds.SharedFunctionalGroupsSequence[0]
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    labels = np.zeros(shape, dtype=np.int64)
    referenced = []
    for frame, group in zip(pixels, ds.PerFrameFunctionalGroupsSequence):
        source = group.DerivationImageSequence[0].SourceImageSequence[0]
        number = getattr(source, "ReferencedFrameNumber", None)
        key = (str(source.ReferencedSOPInstanceUID), None if number is None else int(number))
        referenced.append(key)
        plane = planes[key]
        position = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, plane["position"], atol=1e-4)
        np.testing.assert_allclose(orientation, [*plane["row"], *plane["column"]], atol=1e-6)
        np.testing.assert_allclose(spacing, plane["spacing"], atol=1e-6)
        k = int(plane["slice"])
        if ds.SegmentationType == "LABELMAP":
            labels[:, :, k] = frame
            continue
        segment = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        assert not labels[:, :, k][frame > 0].any(), f"{path}: segments overlap on slice {k}"
        labels[:, :, k][frame > 0] = segment
    return labels, referenced


def rtstruct_masks(
    path: Path, planes: dict[tuple[str, int | None], dict[str, np.ndarray]], shape: tuple[int, int, int]
) -> tuple[dict[str, np.ndarray], list[tuple[str, int | None]]]:
    """An RT Structure Set's contours filled with pydicom and matplotlib alone: ROI name -> its
    ``(rows, columns, slices)`` mask, and the slices the contours reference.

    Each contour is taken to the pixel grid of the slice it references through that slice's own
    geometry (:func:`slice_planes`; PS3.3 C.7.6.2.1.1's pixel-to-patient mapping, inverted) and
    filled by pixel centre; a polygon inside another is a hole (XOR).
    """
    import pydicom
    from matplotlib.path import Path as MplPath

    rows, columns = shape[:2]
    ds = pydicom.dcmread(path)
    names = {int(roi.ROINumber): str(roi.ROIName) for roi in ds.StructureSetROISequence}
    centres = np.stack(np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij"), axis=-1).reshape(
        -1, 2
    )
    masks = {name: np.zeros(shape, bool) for name in names.values()}
    referenced = []
    for roi in ds.ROIContourSequence:
        for contour in getattr(roi, "ContourSequence", []):
            image = contour.ContourImageSequence[0]
            number = getattr(image, "ReferencedFrameNumber", None)
            key = (str(image.ReferencedSOPInstanceUID), None if number is None else int(number))
            referenced.append(key)
            plane = planes[key]
            offset = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3) - plane["position"]
            normal = np.cross(plane["row"], plane["column"])
            assert np.abs(offset @ normal).max() < 1e-5, f"{path}: a contour off the slice it references"
            polygon = np.column_stack(
                [offset @ plane["column"] / plane["spacing"][0], offset @ plane["row"] / plane["spacing"][1]]
            )
            inside = MplPath(polygon).contains_points(centres).reshape(rows, columns)
            masks[names[int(roi.ReferencedROINumber)]][:, :, int(plane["slice"])] ^= inside
    return masks, referenced
