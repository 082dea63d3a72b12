"""What a DICOM SEG (and an RT Structure Set) takes of its source series: the slices read, their
geometry, their text.

A multi-echo series read as its echoes' root-sum-of-squares is segmented on its first echo's slices
(not every echo's: two files per position); part of an Enhanced file's frames (one echo of a
multi-echo file) is refused before predicting, as is a series whose slices do not state their
geometry. The SEG is written in UTF-8 whatever the series' character set, and states an empty
``ContentCreatorName``. Each SEG is decoded here with pydicom alone (:func:`dicom_helpers.seg_label_map`),
each structure set filled with matplotlib (:func:`dicom_helpers.rtstruct_masks`), slice by slice
through the geometry the referenced slice's own header states.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from dicom_helpers import (
    rtstruct_masks,
    seg_label_map,
    slice_planes,
    write_echo_series,
    write_enhanced,
    write_series,
    write_single_frame,
)
from inpaintssl.inference.predict import PredictionError
from predict_helpers import predict_quietly

pytest.importorskip("highdicom", reason="the dicom-seg extra is not installed")
pydicom = pytest.importorskip("pydicom")

SIZE, SLICES = 32, 3
"""The tiny run's own 32x32 slices, three of them."""
CLASSES = ("femur", "tibia")


def _identity(**changes: Any) -> dict[str, Any]:
    from pydicom.uid import generate_uid

    tags: dict[str, Any] = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "PatientID": "KNEE-011",
        "PatientName": "Doe^Jane",
        "StudyDate": "20260102",
        "SeriesNumber": 7,
    }
    tags.update(changes)
    return {tag: value for tag, value in tags.items() if value is not None}


def _labels(shape: tuple[int, int, int], seed: int, classes: int = len(CLASSES)) -> np.ndarray:
    """Random labels with every class present and an empty slice in the middle."""
    labels = np.random.default_rng(seed).integers(0, classes + 1, shape).astype(np.uint8)
    labels[:, :, shape[2] // 2] = 0
    return labels


def _echo_numbers(files: list[Path]) -> dict[str, int]:
    """SOPInstanceUID -> EchoNumbers of a classic multi-echo series' files."""
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    return {str(ds.SOPInstanceUID): int(ds.EchoNumbers) for ds in headers}


def _echo_series(folder: Path, shape: tuple[int, int, int], seed: int) -> Path:
    """Two echoes (6 and 34.5 ms, as qDESS) at each of ``shape[2]`` positions, one file each."""
    stored = np.random.default_rng(seed).integers(1, 900, (2, *shape)).astype(np.int16)
    tags = _identity()
    tags.pop("SeriesInstanceUID")  # write_echo_series gives the series its own
    return write_echo_series(folder, stored, (6.0, 34.5), slope=1.0, tags=tags)


def _count_predicted_cases(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The cases ``predict`` predicts from now on, in order (a refusal before predicting leaves it empty)."""
    predict_module = importlib.import_module("inpaintssl.inference.predict")  # not the function it exports
    predicted: list[str] = []
    real = predict_module.predict_case

    def counted(item: Any, **kwargs: Any) -> Any:
        predicted.append(item.case)
        return real(item, **kwargs)

    monkeypatch.setattr(predict_module, "predict_case", counted)
    return predicted


@pytest.mark.parametrize("dicom_seg_type", ["binary", "labelmap"])
def test_a_root_sum_of_squares_is_segmented_on_its_first_echos_slices(
    tmp_path: Path, dicom_seg_type: str
) -> None:
    from inpaintssl.data.dicom import open_series
    from inpaintssl.inference.dicom_seg import write_dicom_seg
    from inpaintssl.inference.rtstruct import write_rtstruct

    shape = (8, 6, 4)
    scan = _echo_series(tmp_path / "qdess", shape, seed=1)
    files = sorted(scan.iterdir())
    volume = open_series(scan, combine_echoes=True)
    labels = _labels(shape, seed=2)
    target = tmp_path / "seg.dcm"
    write_dicom_seg(labels, volume, target, class_names=CLASSES, dicom_seg_type=dicom_seg_type)

    planes = slice_planes(files)
    decoded, referenced = seg_label_map(target, planes, shape)
    assert np.array_equal(decoded, labels)
    echo_of = _echo_numbers(files)
    # Every frame references a slice of the first echo, each labelled slice once.
    assert {echo_of[uid] for uid, _ in referenced} == {1}
    seg = pydicom.dcmread(target, stop_before_pixels=True)
    listed = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert {echo_of[str(item.ReferencedSOPInstanceUID)] for item in listed} == {1}
    assert len(listed) == shape[2]

    # The structure set of the same labels references the same slices.
    rt = tmp_path / "rt.dcm"
    write_rtstruct(labels, volume, rt, class_names=CLASSES, affine=volume.patient_affine)
    masks, contoured = rtstruct_masks(rt, planes, shape)
    assert {echo_of[uid] for uid, _ in contoured} == {1}
    for k, name in enumerate(CLASSES):
        assert np.array_equal(masks[name], labels == k + 1), name


def test_predict_writes_a_seg_of_a_multi_echo_series_for_a_run_on_its_root_sum_of_squares(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predict_module = importlib.import_module("inpaintssl.inference.predict")  # not the function it exports

    real = predict_module.slice_preprocessing

    def on_echoes(*args: Any, **kwargs: Any) -> Any:
        # The tiny run as one trained with echo: rss (SKM-TEA's qDESS images): same network.
        return dataclasses.replace(real(*args, **kwargs), rss_echoes=True)

    monkeypatch.setattr(predict_module, "slice_preprocessing", on_echoes)
    scan = _echo_series(tmp_path / "qdess", (SIZE, SIZE, SLICES), seed=3)
    files = sorted(scan.iterdir())
    reference = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti")
    report = predict_quietly(trained_run.run_dir, scan, tmp_path / "seg", output_format="dicom_seg")

    expected = np.asarray(nib.load(reference.cases[0].segmentation).dataobj)
    assert expected.shape == (SIZE, SIZE, SLICES) and expected.max() > 0
    decoded, referenced = seg_label_map(report.cases[0].segmentation, slice_planes(files), expected.shape)
    assert np.array_equal(decoded, expected)
    assert {_echo_numbers(files)[uid] for uid, _ in referenced} == {1}


def _enhanced_echoes(path: Path, *, frames: int, seed: int) -> Path:
    """An Enhanced MR file of two echoes (10 and 40 ms), each at ``frames`` positions 2 mm apart."""
    stored = np.random.default_rng(seed).integers(0, 900, (2 * frames, SIZE, SIZE)).astype(np.int16)
    write_enhanced(
        path,
        stored,
        modality="MR",
        positions=[(0.0, 0.0, 2.0 * k) for k in range(frames)] * 2,
        echo_times=[10.0] * frames + [40.0] * frames,
        identity=_identity(),
    )
    return path


@pytest.mark.parametrize("read", ["echo 1", "echo 2", "root-sum-of-squares"])
def test_part_of_an_enhanced_files_frames_is_refused_as_a_seg_naming_the_echoes(
    tmp_path: Path, read: str
) -> None:
    from inpaintssl.data.dicom import DicomVolume, open_series
    from inpaintssl.inference.dicom_seg import check_dicom_seg_source

    scan = _enhanced_echoes(tmp_path / "mese.dcm", frames=SLICES, seed=4)
    volume = open_series(scan, combine_echoes=True) if read == "root-sum-of-squares" else None
    if volume is None:
        volume = DicomVolume(scan, echo=int(read[-1]))
    described = (
        "the root-sum-of-squares of its echoes (10, 40 ms)"
        if volume.echo is None
        else f"{read} of its echoes"
    )
    with pytest.raises(PredictionError) as caught:
        check_dicom_seg_source(volume, source=scan)
    message = str(caught.value)
    assert message.startswith(
        f"input {scan}: its label map is of {SLICES} of the {2 * SLICES} frames of the Enhanced "
        f"(multi-frame) file {scan}: {described}"
    )
    assert "output_format='rtstruct'" in message and "output_format='nifti'" in message


def test_predict_refuses_a_seg_of_one_echo_of_an_enhanced_file_before_predicting(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predicted = _count_predicted_cases(monkeypatch)
    scan = _enhanced_echoes(tmp_path / "mese.dcm", frames=SLICES, seed=5)
    with pytest.raises(PredictionError, match=rf"input {scan}: its label map is of 3 of the 6 frames"):
        predict_quietly(trained_run.run_dir, scan, tmp_path / "out", output_format="dicom_seg", echo=2)
    assert predicted == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("echo", [1, 2])
def test_an_rtstruct_of_one_echo_of_an_enhanced_file_references_that_echos_frames(
    tmp_path: Path, echo: int
) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.rtstruct import write_rtstruct

    scan = _enhanced_echoes(tmp_path / "mese.dcm", frames=4, seed=6)
    volume = DicomVolume(scan, echo=echo)
    shape = (SIZE, SIZE, 4)
    labels = _labels(shape, seed=7)
    target = tmp_path / "rt.dcm"
    write_rtstruct(labels, volume, target, class_names=CLASSES, affine=volume.patient_affine)

    masks, referenced = rtstruct_masks(target, slice_planes([scan]), shape)
    for k, name in enumerate(CLASSES):
        assert np.array_equal(masks[name], labels == k + 1), name
    frames = range(1, 5) if echo == 1 else range(5, 9)  # the file holds echo 1's frames, then echo 2's
    assert {number for _, number in referenced} <= set(frames)


CHARACTER_SETS = [
    (None, "Doe^Jane", "Dr. Who"),
    ("ISO_IR 100", "Müller^Jürgen", "Dr. Größe"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎", "Dr"),
    ("ISO_IR 144", "Иванов^Иван", "Петров"),
]


@pytest.mark.parametrize(
    ("charset", "patient", "physician"), CHARACTER_SETS, ids=["none", "latin-1", "iso-2022-jp", "cyrillic"]
)
def test_a_seg_is_written_in_utf8_whatever_its_series_character_set(
    tmp_path: Path, charset: Any, patient: str, physician: str
) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.dicom_seg import write_dicom_seg

    identity = _identity(
        SpecificCharacterSet=charset,
        PatientName=patient,
        ReferringPhysicianName=physician,
        StudyDescription="Knie",
    )
    stored = np.random.default_rng(8).integers(0, 900, (SLICES, 6, 5)).astype(np.int16)
    scan = write_series(
        tmp_path / "scan",
        stored,
        modality="MR",
        positions=[(0, 0, 2.0 * k) for k in range(SLICES)],
        identity=identity,
    )
    names = ("Femur-Knorpel ä", "右腎", "μ-Zone")
    target = tmp_path / "seg.dcm"
    write_dicom_seg(_labels((6, 5, SLICES), seed=9, classes=3), DicomVolume(scan), target, class_names=names)

    seg = pydicom.dcmread(target, stop_before_pixels=True)
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    assert [item.SegmentLabel for item in seg.SegmentSequence] == list(names)
    assert (str(seg.PatientName), str(seg.ReferringPhysicianName)) == (patient, physician)
    # The bytes on disk are UTF-8, whatever pydicom makes of them.
    raw = target.read_bytes()
    for text in (*names, patient.split("=")[-1], physician):
        assert text.encode("utf-8") in raw, text


@pytest.mark.parametrize("output_format", ["dicom_seg", "rtstruct"])
@pytest.mark.parametrize(
    "missing",
    [("ImagePositionPatient", "ImageOrientationPatient"), ("PixelSpacing",)],
    ids=["position", "pixel-spacing"],
)
def test_a_series_whose_slices_state_no_geometry_is_refused_before_predicting(
    trained_run: issl.FinetuneResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    output_format: str,
    missing: tuple[str, ...],
) -> None:
    predicted = _count_predicted_cases(monkeypatch)
    rng = np.random.default_rng(10)
    inputs = []
    for name, dropped in (("good", ()), ("bad", missing)):

        def drop(ds: Any, dropped: tuple[str, ...] = dropped) -> None:
            for tag in dropped:
                delattr(ds, tag)

        scan = tmp_path / "in" / name
        scan.mkdir(parents=True)
        identity = _identity()
        for k in range(SLICES):
            write_single_frame(
                scan / f"im{k}.dcm",
                rng.integers(0, 900, (SIZE, SIZE)).astype(np.int16),
                modality="MR",
                position=(0.0, 0.0, 2.0 * k),
                instance=k + 1,
                identity=identity,
                edit=drop,
            )
        inputs.append(scan)
    bad = inputs[1]
    stated = " or ".join(missing)
    with pytest.raises(
        PredictionError, match=rf"input {bad}: DICOM file {bad}/im\d\.dcm states no {stated}; "
    ):
        predict_quietly(trained_run.run_dir, inputs, tmp_path / "out", output_format=output_format)
    assert predicted == [] and not (tmp_path / "out").exists()

    # Left out as a bad input, the other series is predicted.
    report = predict_quietly(
        trained_run.run_dir, inputs, tmp_path / "out", output_format=output_format, skip_bad_inputs=True
    )
    assert [case.case for case in report.cases] == ["good"]
    assert [(skipped.case, stated in skipped.reason) for skipped in report.skipped] == [("bad", True)]
    assert predicted == ["good"]


def _series_without_slice_thickness(folder: Path) -> Path:
    folder.mkdir()
    identity = _identity()
    stored = np.random.default_rng(11).integers(0, 900, (SLICES, 6, 5)).astype(np.int16)
    for k in range(SLICES):
        write_single_frame(
            folder / f"im{k}.dcm",
            stored[k],
            modality="MR",
            position=(0.0, 0.0, 2.0 * k),
            instance=k + 1,
            identity=identity,
            edit=lambda ds: delattr(ds, "SliceThickness"),
        )
    return folder


@pytest.mark.parametrize("dicom_seg_type", ["binary", "labelmap"])
def test_a_series_without_slice_thickness_gets_a_seg_that_states_none(
    tmp_path: Path, dicom_seg_type: str
) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.dicom_seg import write_dicom_seg

    scan = _series_without_slice_thickness(tmp_path / "scan")
    labels = _labels((6, 5, SLICES), seed=12)
    target = tmp_path / "seg.dcm"
    write_dicom_seg(labels, DicomVolume(scan), target, class_names=CLASSES, dicom_seg_type=dicom_seg_type)

    measures = pydicom.dcmread(target).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert measures.get("SliceThickness") in (None, "")  # no thickness made up
    assert [float(v) for v in measures.PixelSpacing] == [0.5, 0.75]
    decoded, _ = seg_label_map(target, slice_planes(sorted(scan.iterdir())), labels.shape)
    assert np.array_equal(decoded, labels)


@pytest.mark.parametrize("dicom_seg_type", ["binary", "labelmap"])
def test_a_seg_states_an_empty_content_creator_name(tmp_path: Path, dicom_seg_type: str) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.dicom_seg import write_dicom_seg

    stored = np.random.default_rng(13).integers(0, 900, (SLICES, 6, 5)).astype(np.int16)
    scan = write_series(
        tmp_path / "scan",
        stored,
        modality="MR",
        positions=[(0, 0, 2.0 * k) for k in range(SLICES)],
        identity=_identity(),
    )
    targets = (tmp_path / "seg.dcm", tmp_path / "prob.dcm")
    write_dicom_seg(
        _labels((6, 5, SLICES), seed=14),
        DicomVolume(scan),
        targets[0],
        class_names=CLASSES,
        probabilities=np.full((6, 5, SLICES, len(CLASSES)), 0.5, dtype=np.float32),
        probabilities_target=targets[1],
        dicom_seg_type=dicom_seg_type,
    )
    for target in targets:
        seg = pydicom.dcmread(target, stop_before_pixels=True)
        # Type 2 in the Content Identification module (PS3.3 C.10.9): present, empty where no person made it.
        assert "ContentCreatorName" in seg and str(seg.ContentCreatorName or "") == "", target.name


OBLIQUE = (0.8, 0.6, 0.0, 0.0, 0.0, -1.0)
"""Rows along (0.8, 0.6, 0), columns along feet: an oblique coronal-ish plane, unit and orthogonal."""


def _per_frame_geometry_file(path: Path, *, seed: int, where: str, edit: Any = None) -> Path:
    """An Enhanced MR file of ``SLICES`` 32x32 frames, stored out of position order, on an oblique
    plane with non-square pixels, whose pixel measures and orientation are in each frame's own
    functional group (``where="per_frame"``), or only its orientation (``"orientation"``)."""

    def orientation_per_frame(ds: Any) -> None:
        shared = ds.SharedFunctionalGroupsSequence[0]
        for group in ds.PerFrameFunctionalGroupsSequence:
            group.PlaneOrientationSequence = copy.deepcopy(shared.PlaneOrientationSequence)
        del shared.PlaneOrientationSequence

    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    order = [2, 0, 1]  # the file's frames lie at the 3rd, 1st and 2nd position along the normal
    write_enhanced(
        path,
        np.random.default_rng(seed).integers(0, 900, (SLICES, SIZE, SIZE)).astype(np.int16),
        modality="MR",
        positions=[tuple(float(v) for v in np.array([5.0, -3.0, 7.0]) + 2.5 * k * normal) for k in order],
        orientation=OBLIQUE,
        pixel_spacing=(0.6, 0.9),
        geometry_in="per_frame" if where == "per_frame" else "shared",
        identity=_identity(),
        edit=edit if edit is not None else (orientation_per_frame if where == "orientation" else None),
    )
    return path


@pytest.mark.parametrize("dicom_seg_type", ["binary", "labelmap"])
@pytest.mark.parametrize("where", ["per_frame", "orientation"])
def test_an_enhanced_file_with_per_frame_geometry_gets_a_seg_placed_on_its_frames(
    tmp_path: Path, where: str, dicom_seg_type: str
) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.dicom_seg import check_dicom_seg_source, write_dicom_seg

    scan = _per_frame_geometry_file(tmp_path / "enhanced.dcm", seed=15, where=where)
    volume = DicomVolume(scan)
    check_dicom_seg_source(volume, source=scan)
    shape = (SIZE, SIZE, SLICES)
    labels = _labels(shape, seed=16)
    probabilities = np.random.default_rng(17).random((*shape, len(CLASSES))).astype(np.float32)
    targets = (tmp_path / "seg.dcm", tmp_path / "prob.dcm")
    write_dicom_seg(
        labels,
        volume,
        targets[0],
        class_names=CLASSES,
        probabilities=probabilities,
        probabilities_target=targets[1],
        dicom_seg_type=dicom_seg_type,
    )

    # Decoded by pydicom alone: every frame on the source frame it references, at that frame's
    # position, with the orientation and pixel spacing the source frames state in their own groups.
    planes = slice_planes([scan])
    decoded, referenced = seg_label_map(targets[0], planes, shape)
    assert np.array_equal(decoded, labels)
    assert {number for _, number in referenced} <= {1, 2, 3}
    for target in targets:
        seg = pydicom.dcmread(target, stop_before_pixels=True)
        shared = seg.SharedFunctionalGroupsSequence[0]
        assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == list(OBLIQUE)
        measures = shared.PixelMeasuresSequence[0]
        assert [float(v) for v in measures.PixelSpacing] == [0.6, 0.9]
        assert float(measures.SliceThickness) == 2.0  # write_enhanced's, stated by each frame
        for group in seg.PerFrameFunctionalGroupsSequence:
            source = group.DerivationImageSequence[0].SourceImageSequence[0]
            plane = planes[(str(source.ReferencedSOPInstanceUID), int(source.ReferencedFrameNumber))]
            position = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
            np.testing.assert_allclose(position, plane["position"], atol=1e-4)


def test_predict_writes_a_seg_of_an_enhanced_file_with_per_frame_geometry(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scan = _per_frame_geometry_file(tmp_path / "enhanced.dcm", seed=18, where="per_frame")
    nifti = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti")
    report = predict_quietly(trained_run.run_dir, scan, tmp_path / "seg", output_format="dicom_seg")

    image: Any = nib.load(nifti.cases[0].segmentation)
    expected = np.asarray(image.dataobj)
    decoded, _ = seg_label_map(report.cases[0].segmentation, slice_planes([scan]), expected.shape)
    assert expected.any() and np.array_equal(decoded, expected)


def _tilted_frame_2(ds: Any) -> None:
    """Frame 2's orientation 1e-4 off the others': one the reader takes (within 1e-3), a SEG cannot."""
    tilted = [0.8, 0.6, 1e-4, 0.0, 1e-4, -1.0]
    ds.PerFrameFunctionalGroupsSequence[1].PlaneOrientationSequence[0].ImageOrientationPatient = tilted


def _thicker_frame_2(ds: Any) -> None:
    ds.PerFrameFunctionalGroupsSequence[1].PixelMeasuresSequence[0].SliceThickness = "2.5"


@pytest.mark.parametrize(
    ("edit", "stated"),
    [
        (_tilted_frame_2, "ImageOrientationPatient (PlaneOrientationSequence)"),
        (_thicker_frame_2, "SliceThickness (PixelMeasuresSequence)"),
    ],
    ids=["orientation", "slice-thickness"],
)
def test_an_enhanced_file_whose_frames_state_different_geometry_is_refused_before_predicting(
    trained_run: issl.FinetuneResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    edit: Any,
    stated: str,
) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.dicom_seg import write_dicom_seg

    predicted = _count_predicted_cases(monkeypatch)
    scan = _per_frame_geometry_file(tmp_path / "enhanced.dcm", seed=19, where="per_frame", edit=edit)
    volume = DicomVolume(scan)  # the reader takes it, and places each frame by its own geometry
    message = rf"input {scan}: the Enhanced \(multi-frame\) file {scan} states {re.escape(stated)} per frame"
    with pytest.raises(PredictionError, match=message) as caught:
        predict_quietly(trained_run.run_dir, scan, tmp_path / "out", output_format="dicom_seg")
    assert "frame 2's" in str(caught.value) and "frame 1's" in str(caught.value)
    assert "output_format='rtstruct'" in str(caught.value)
    assert predicted == [] and not (tmp_path / "out").exists()

    # Called directly, the writer refuses it in the same words, before writing anything.
    target = tmp_path / "seg.dcm"
    with pytest.raises(PredictionError, match=rf"write_dicom_seg: the Enhanced .* {re.escape(stated)}"):
        write_dicom_seg(_labels((SIZE, SIZE, SLICES), seed=20), volume, target, class_names=CLASSES)
    assert not target.exists()
