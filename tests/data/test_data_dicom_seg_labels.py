"""A DICOM SEG read as the label map of the series it segments (``ct`` dataset, ``DicomSegVolume``).

The expectation is independent of the SEG reader: the same label map written as NIfTI on the
series' patient affine, a label path the ``ct`` dataset already pairs with its series (and checks),
must give the same label slices, stored and reoriented. SEG files are written by highdicom
(through :func:`inpaintssl.inference.dicom_seg.write_dicom_seg`, as ``predict`` writes them) and
edited with pydicom where a test needs a SEG of another writer's kind.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom_helpers import nifti_on_series, write_enhanced, write_series
from inpaintssl.data.base import DataError
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.dicom_seg import DicomSegVolume, is_dicom_seg

pytest.importorskip("highdicom", reason="the dicom-seg extra (highdicom) writes the SEG files")
pydicom = pytest.importorskip("pydicom")

from inpaintssl.inference.dicom_seg import write_dicom_seg  # noqa: E402 - after the skip

ROWS, COLUMNS, SLICES = 12, 10, 4
POSITIONS = [(-30.0, 12.5, 5.0 + 2.5 * k) for k in range(SLICES)]
CLASSES = ["liver", "spleen"]


def _identity() -> dict[str, Any]:
    from pydicom.uid import generate_uid

    return {
        "StudyInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
    }


def _hu(seed: int) -> np.ndarray:
    """Stored pixels (HU + 1024) of soft tissue, with air in a corner as every CT slice has."""
    stored = np.random.default_rng(seed).integers(-200, 300, (SLICES, ROWS, COLUMNS)).astype(np.int16) + 1024
    stored[:, 0, 0] = 24
    return stored


def _labels(seed: int) -> np.ndarray:
    """``(rows, columns, slices)``: two blobs of classes 1 and 2, slice 3 left empty (its frames omitted)."""
    labels = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    rng = np.random.default_rng(seed)
    labels[2:7, 1:5, :3] = 1
    labels[8:11, 6:9, 1:3] = 2
    labels[rng.random(labels.shape) < 0.05] = 0
    labels[:, :, 3] = 0
    return labels


def _series(
    folder: Path, *, enhanced: bool = False, seed: int = 0, identity: dict[str, Any] | None = None
) -> Path:
    if not enhanced:
        return write_series(
            folder,
            _hu(seed),
            modality="CT",
            positions=POSITIONS,
            rescale=[(1.0, -1024.0)] * SLICES,
            identity=identity or _identity(),
        )
    order = [2, 0, 3, 1]  # frames stored out of position order
    path = folder.with_suffix(".dcm")
    write_enhanced(
        path,
        _hu(seed)[order],
        modality="CT",
        positions=[POSITIONS[k] for k in order],
        rescale=[(1.0, -1024.0)] * SLICES,
        identity=_identity(),
    )
    return path


def _seg(series: Path, labels: np.ndarray, target: Path) -> Path:
    write_dicom_seg(labels, DicomVolume(series), target, class_names=CLASSES)
    return target


def _label_slices(image: Path, label: Path, orientation: str | None) -> list[np.ndarray]:
    dataset = ct_dataset(
        split="train",
        cases={"train": [{"image": str(image), "label": str(label)}]},
        class_names=CLASSES,
        orientation=orientation,
    )
    return [dataset[i]["label"].numpy() for i in range(len(dataset))]


@pytest.mark.parametrize("orientation", [None, "LPS", "SAR"])
@pytest.mark.parametrize("enhanced", [False, True])
def test_a_seg_label_reads_as_its_nifti_twin(tmp_path: Path, enhanced: bool, orientation: str | None) -> None:
    series = _series(tmp_path / "series", enhanced=enhanced)
    labels = _labels(1)
    seg = _seg(series, labels, tmp_path / "seg.dcm")
    twin = nifti_on_series(series, labels, tmp_path / "twin.nii.gz")
    assert is_dicom_seg(seg) and not is_dicom_seg(twin)

    from_seg = _label_slices(series, seg, orientation)
    from_nifti = _label_slices(series, twin, orientation)
    assert len(from_seg) == len(from_nifti) > 0
    for mine, theirs in zip(from_seg, from_nifti):
        assert np.array_equal(mine, theirs)
    assert any(s.any() for s in from_seg)


def test_the_volume_holds_segment_numbers_and_labels(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    labels = _labels(2)
    volume = DicomSegVolume(_seg(series, labels, tmp_path / "seg.dcm"), reference=DicomVolume(series))
    assert volume.shape == labels.shape and volume.segment_labels == {1: "liver", 2: "spleen"}
    assert np.array_equal(np.stack([volume.read(k) for k in range(SLICES)], axis=2), labels)
    # Released and read again: the same.
    volume.release()
    assert np.array_equal(volume.read(1), labels[:, :, 1])


def test_frames_without_their_sources_are_placed_by_their_positions(tmp_path: Path) -> None:
    # Some writers leave DerivationImageSequence out: each frame's position places it.
    series = _series(tmp_path / "series")
    labels = _labels(3)
    seg = _seg(series, labels, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(seg)
    for group in ds.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence
    ds.save_as(seg)
    volume = DicomSegVolume(seg, reference=DicomVolume(series))
    assert np.array_equal(np.stack([volume.read(k) for k in range(SLICES)], axis=2), labels)


@pytest.mark.parametrize(
    ("position", "shown"),
    [(["-30", "12.5"], r"-30\\12\.5"), (["-30", "12.5", "nan"], r"-30\\12\.5\\nan")],
    ids=["two-values", "nan"],
)
def test_a_frame_position_that_is_no_point_is_refused_naming_the_frame(
    tmp_path: Path, position: list[str], shown: str
) -> None:
    # A frame without its source is placed by its position: two values raised NumPy's broadcasting
    # error, naming neither the file nor the frame.
    series = _series(tmp_path / "series")
    seg = _seg(series, _labels(3), tmp_path / "seg.dcm")
    ds = pydicom.dcmread(seg)
    for group in ds.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence
    ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient = position
    ds.save_as(seg)
    with pytest.raises(
        DataError,
        match=rf"^DICOM SEG {re.escape(str(seg))}: frame 2 has ImagePositionPatient {shown} "
        r"\(PlanePositionSequence\); expected 3 finite numbers",
    ):
        DicomSegVolume(seg, reference=DicomVolume(series))


def test_frames_naming_their_single_frame_source_as_frame_1_are_placed_on_it(tmp_path: Path) -> None:
    # Some writers number a single-frame source's one frame (ReferencedFrameNumber 1) where DICOM
    # leaves the number out; without a position, only that reference places the frame.
    series = _series(tmp_path / "series")
    labels = _labels(6)
    seg = _seg(series, labels, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(seg)
    for group in ds.PerFrameFunctionalGroupsSequence:
        group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber = 1
        del group.PlanePositionSequence
    ds.save_as(seg)
    volume = DicomSegVolume(seg, reference=DicomVolume(series))
    assert np.array_equal(np.stack([volume.read(k) for k in range(SLICES)], axis=2), labels)


def test_a_seg_of_another_series_is_refused_naming_the_frame(tmp_path: Path) -> None:
    # Another series of the same study and frame of reference, 50 mm further along.
    study = _identity()
    series = _series(tmp_path / "series", identity=study)
    shifted = tmp_path / "other"
    write_series(
        shifted,
        _hu(4),
        modality="CT",
        positions=[(x, y, z + 50.0) for x, y, z in POSITIONS],
        rescale=[(1.0, -1024.0)] * SLICES,
        identity={**study, "SeriesInstanceUID": _identity()["SeriesInstanceUID"]},
    )
    seg = _seg(shifted, _labels(4), tmp_path / "seg.dcm")
    with pytest.raises(
        DataError,
        match=rf"DICOM SEG {re.escape(str(seg))}: frame 1 segments instance .* which is no slice of the",
    ):
        DicomSegVolume(seg, reference=DicomVolume(series))


def test_a_seg_of_another_patient_on_the_same_grid_is_refused_naming_both_frames_of_reference(
    tmp_path: Path,
) -> None:
    # Same positions, spacing and matrix (data converted from NIfTI, one protocol): the frames
    # matched the slices by position and another patient's labels were read without a word.
    series = _series(tmp_path / "series")
    other = _series(tmp_path / "other", seed=4)
    seg = _seg(other, _labels(4), tmp_path / "seg.dcm")
    mine, theirs = DicomVolume(series).frame_of_reference_uid, DicomVolume(other).frame_of_reference_uid
    assert mine and theirs and mine != theirs
    with pytest.raises(
        DataError,
        match=rf"DICOM SEG {re.escape(str(seg))} is in frame of reference {re.escape(theirs)} but the "
        rf"series .* is in {re.escape(mine)}",
    ):
        DicomSegVolume(seg, reference=DicomVolume(series))
    # The same labels written on the series itself are read.
    own = _seg(series, _labels(4), tmp_path / "own.dcm")
    volume = DicomSegVolume(own, reference=DicomVolume(series))
    assert np.array_equal(np.stack([volume.read(k) for k in range(SLICES)], axis=2), _labels(4))


def test_a_seg_of_another_matrix_size_is_refused(tmp_path: Path) -> None:
    study = _identity()
    series = _series(tmp_path / "series", identity=study)
    small = write_series(
        tmp_path / "small",
        _hu(5)[:, :8, :8],
        modality="CT",
        positions=POSITIONS,
        rescale=[(1.0, -1024.0)] * SLICES,
        identity={**study, "SeriesInstanceUID": _identity()["SeriesInstanceUID"]},
    )
    seg = _seg(small, _labels(5)[:8, :8], tmp_path / "seg.dcm")
    with pytest.raises(DataError, match=r"has frames of 8x8 pixels but the series .* has slices of 12x10"):
        DicomSegVolume(seg, reference=DicomVolume(series))


def test_a_fractional_seg_is_refused(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    labels = _labels(6)
    probabilities = np.stack([labels == 1, labels == 2], axis=-1).astype(np.float32)
    write_dicom_seg(
        labels,
        DicomVolume(series),
        tmp_path / "seg.dcm",
        class_names=CLASSES,
        probabilities=probabilities,
        probabilities_target=tmp_path / "prob.dcm",
    )
    with pytest.raises(DataError, match=r"is a FRACTIONAL segmentation .* expected a BINARY or LABELMAP one"):
        DicomSegVolume(tmp_path / "prob.dcm", reference=DicomVolume(series))


def test_overlapping_segments_are_refused_naming_both(tmp_path: Path) -> None:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    series = _series(tmp_path / "series")
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(series.iterdir())]
    sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    for ds in sources:  # patient and study attributes highdicom copies (empty: unknown)
        for name in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber"):
            setattr(ds, name, "")
        ds.StudyID, ds.StudyDate, ds.StudyTime = "", "", ""
    masks = np.zeros((SLICES, ROWS, COLUMNS, 2), bool)
    masks[1, 2:6, 2:6, 0] = True
    masks[1, 4:8, 4:8, 1] = True  # overlaps the first on 4 pixels of slice 1
    algorithm = hd.AlgorithmIdentificationSequence(
        name="t", version="1", family=codes.cid7162.ArtificialIntelligence
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=name,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm,
        )
        for k, name in enumerate(CLASSES)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=masks,
        segmentation_type="BINARY",
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="t",
        manufacturer_model_name="t",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(tmp_path / "seg.dcm")
    with pytest.raises(DataError, match=r"segments 1 and 2 overlap on slice 1 of the series \(4 pixels"):
        DicomSegVolume(tmp_path / "seg.dcm", reference=DicomVolume(series))


def test_a_seg_label_beside_an_image_that_is_not_dicom_is_refused(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    seg = _seg(series, _labels(7), tmp_path / "seg.dcm")
    image = nifti_on_series(series, _hu(7).transpose(1, 2, 0).astype(np.float32), tmp_path / "image.nii.gz")
    cases = {"train": [{"image": str(image), "label": str(seg)}]}
    with pytest.raises(
        DataError, match=rf"ct case .*: label {re.escape(str(seg))} is a DICOM SEG, .* is a NiftiVolume"
    ):
        ct_dataset(split="train", cases=cases, class_names=CLASSES)


def test_a_reference_that_is_not_a_dicom_series_is_a_type_error(tmp_path: Path) -> None:
    from inpaintssl.data.readers import NiftiVolume

    series = _series(tmp_path / "series")
    seg = _seg(series, _labels(8), tmp_path / "seg.dcm")
    twin = NiftiVolume(nifti_on_series(series, _labels(8), tmp_path / "twin.nii.gz"))
    with pytest.raises(
        TypeError, match=r"reference is a NiftiVolume; expected the DicomVolume of the series"
    ):
        DicomSegVolume(seg, reference=twin)


@pytest.mark.parametrize(
    ("class_names", "label_values", "warned"),
    [
        (["liver", "spleen"], None, []),
        (["Liver", "SPLEEN"], None, []),  # case, spaces and underscores aside, the same names
        (["spleen", "liver"], None, ["'spleen' reads segment 1", "'liver' reads segment 2"]),
        (["spleen", "liver"], {"spleen": 2, "liver": 1}, []),
        (["liver", "spleen", "kidney"], None, ["'kidney' reads segment 3 .* describes no segment 3"]),
    ],
)
def test_a_class_reading_a_segment_labelled_otherwise_is_warned(
    tmp_path: Path, class_names: list[str], label_values: dict[str, int] | None, warned: list[str]
) -> None:
    import warnings

    series = _series(tmp_path / "series")
    seg = _seg(series, _labels(9), tmp_path / "seg.dcm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ct_dataset(
            split="train",
            cases={"train": [{"image": str(series), "label": str(seg)}]},
            class_names=class_names,
            label_values=label_values,
        )
    messages = [str(w.message) for w in caught if "DICOM SEG" in str(w.message)]
    assert len(messages) == len(warned), messages
    for pattern, message in zip(warned, messages):
        assert re.search(rf"class {pattern}", message), message
        assert "check class_names' order, or set label_values" in message
