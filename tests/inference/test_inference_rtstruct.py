"""``predict(output_format="rtstruct")``: a DICOM series' label map as an RT Structure Set of that series.

Each structure set is decoded here with pydicom and matplotlib alone: every contour's points are
taken to the pixel grid of the slice it references through that slice's own header (PS3.3
C.7.6.2.1.1's pixel-to-patient formula, inverted), and the polygons are filled with matplotlib's
point-in-path test, one polygon at a time, XORed (a polygon inside another is a hole). That must
give the label map back, slice for slice, independently of this library's own RTSTRUCT reader
(which is checked on the same files, as a round trip) and of its affines.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from matplotlib.path import Path as MplPath

import inpaintssl as issl
from dicom_helpers import write_enhanced, write_series
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.dicom_rtstruct import DicomRtStructVolume
from inpaintssl.inference.predict import PredictionError
from inpaintssl.inference.rtstruct import RT_STRUCTURE_SET_STORAGE, write_rtstruct
from predict_helpers import predict_command_quietly, predict_quietly

pydicom = pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 12, 10, 4
CLASSES = ["liver", "spleen", "kidney"]
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
OBLIQUE = (0.8, 0.6, 0.0, 0.0, 0.0, -1.0)


def _identity(**changes: Any) -> dict[str, Any]:
    from pydicom.uid import generate_uid

    tags: dict[str, Any] = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "PatientID": "ABD-012",
        "PatientName": "Doe^John",
        "StudyDate": "20260311",
        "SeriesNumber": 3,
    }
    tags.update(changes)
    return {tag: value for tag, value in tags.items() if value is not None}


def _positions(orientation: tuple[float, ...], count: int) -> list[tuple[float, float, float]]:
    normal = np.cross(orientation[:3], orientation[3:])
    return [tuple(np.array([-30.0, 12.5, 5.0]) + 2.5 * k * normal) for k in range(count)]  # type: ignore[misc]


def _pixels(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """``(slices, rows, columns)`` int16."""
    rows, columns, slices = shape
    return np.random.default_rng(seed).integers(0, 1000, (slices, rows, columns)).astype(np.int16)


def _labels(seed: int) -> np.ndarray:
    """``(rows, columns, slices)``: three classes with holes, diagonal touches and an empty slice."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    labels[1:8, 1:7, :3] = 1
    labels[3:5, 3:5, :3] = 0  # a hole
    labels[4, 4, 1] = 2  # an island in the hole
    labels[9, 7, :] = 3
    labels[10, 8, :] = 3  # touching the pixel above only at a corner
    noise = rng.random(labels.shape) < 0.1
    labels[noise] = rng.integers(0, 3, int(noise.sum()))
    labels[:, :, 3][labels[:, :, 3] == 1] = 0
    return labels


def _series(
    folder: Path, orientation: tuple[float, ...], *, enhanced: bool = False
) -> tuple[Path, list[Path]]:
    identity = _identity()
    if not enhanced:
        scan = write_series(
            folder,
            _pixels((ROWS, COLUMNS, SLICES), 1),
            modality="CT",
            positions=_positions(orientation, SLICES),
            orientation=orientation,
            rescale=[(1.0, -1024.0)] * SLICES,
            identity=identity,
        )
        return scan, sorted(scan.iterdir())
    order = [2, 0, 3, 1]  # frames stored out of position order
    scan = folder.with_suffix(".dcm")
    write_enhanced(
        scan,
        _pixels((ROWS, COLUMNS, SLICES), 1)[order],
        modality="CT",
        positions=[_positions(orientation, SLICES)[k] for k in order],
        orientation=orientation,
        rescale=[(1.0, -1024.0)] * SLICES,
        identity=identity,
    )
    return scan, [scan]


def _slice_geometry(files: list[Path]) -> dict[tuple[str, int | None], dict[str, np.ndarray]]:
    """``(SOPInstanceUID, frame number or None)`` -> position, row and column directions, spacing, slice."""
    found: dict[tuple[str, int | None], dict[str, np.ndarray]] = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        frames = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
        shared = ds.SharedFunctionalGroupsSequence[0] if frames else None
        for number, group in enumerate(frames or [None], start=1):
            if group is None:
                position, orientation, spacing = (
                    ds.ImagePositionPatient,
                    ds.ImageOrientationPatient,
                    ds.PixelSpacing,
                )
                key: tuple[str, int | None] = (ds.SOPInstanceUID, None)
            else:
                position = group.PlanePositionSequence[0].ImagePositionPatient
                orientation = shared.PlaneOrientationSequence[0].ImageOrientationPatient
                spacing = shared.PixelMeasuresSequence[0].PixelSpacing
                key = (ds.SOPInstanceUID, number)
            found[key] = {
                "position": np.array([float(v) for v in position]),
                "row": np.array([float(v) for v in orientation[:3]]),
                "column": np.array([float(v) for v in orientation[3:]]),
                "spacing": np.array([float(v) for v in spacing]),
            }
    for entry in found.values():
        entry["normal"] = np.cross(entry["row"], entry["column"])
    normal = next(iter(found.values()))["normal"]
    by_depth = sorted(found, key=lambda key: float(found[key]["position"] @ normal))
    for k, key in enumerate(by_depth):
        found[key]["slice"] = np.array(k)
    return found


def _decoded(path: Path, files: list[Path]) -> tuple[dict[str, np.ndarray], Any]:
    """ROI name -> its ``(rows, columns, slices)`` mask, filled by matplotlib from the contours."""
    geometry = _slice_geometry(files)
    ds = pydicom.dcmread(path)
    names = {int(roi.ROINumber): str(roi.ROIName) for roi in ds.StructureSetROISequence}
    centres = np.stack(np.meshgrid(np.arange(ROWS), np.arange(COLUMNS), indexing="ij"), axis=-1).reshape(
        -1, 2
    )
    masks = {name: np.zeros((ROWS, COLUMNS, SLICES), bool) for name in names.values()}
    for roi in ds.ROIContourSequence:
        for contour in getattr(roi, "ContourSequence", []):
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            image = contour.ContourImageSequence[0]
            number = getattr(image, "ReferencedFrameNumber", None)
            where = geometry[(image.ReferencedSOPInstanceUID, None if number is None else int(number))]
            points = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
            assert len(points) == int(contour.NumberOfContourPoints)
            offset = points - where["position"]
            assert np.abs(offset @ where["normal"]).max() < 1e-5  # on the slice it references
            between_rows, between_columns = where["spacing"]
            polygon = np.column_stack(
                [offset @ where["column"] / between_rows, offset @ where["row"] / between_columns]
            )
            inside = MplPath(polygon).contains_points(centres).reshape(ROWS, COLUMNS)
            masks[names[int(roi.ReferencedROINumber)]][:, :, int(where["slice"])] ^= inside
    return masks, ds


@pytest.mark.parametrize(
    ("orientation", "enhanced"),
    [(AXIAL, False), (SAGITTAL, False), (OBLIQUE, False), (AXIAL, True)],
    ids=["axial", "sagittal", "oblique", "enhanced"],
)
def test_the_contours_fill_back_to_the_label_map(
    tmp_path: Path, orientation: tuple[float, ...], enhanced: bool
) -> None:
    scan, files = _series(tmp_path / "scan", orientation, enhanced=enhanced)
    labels = _labels(2)
    volume = DicomVolume(scan)
    assert volume.patient_affine is not None
    target = tmp_path / "rtstruct.dcm"
    write_rtstruct(labels, volume, target, class_names=CLASSES, affine=volume.patient_affine)

    masks, ds = _decoded(target, files)
    assert list(masks) == CLASSES
    for k, name in enumerate(CLASSES):
        assert np.array_equal(masks[name], labels == k + 1), name
    assert all(
        len(str(v)) <= 16 for roi in ds.ROIContourSequence for c in roi.ContourSequence for v in c.ContourData
    )

    # This library's reader takes it back too.
    back = DicomRtStructVolume(
        target, reference=DicomVolume(scan), roi_values={n: k + 1 for k, n in enumerate(CLASSES)}
    )
    assert np.array_equal(np.stack([back.read(k) for k in range(SLICES)], axis=2), labels)
    assert back.overlaps == {}


def test_a_slice_off_its_neighbours_line_is_outlined_where_it_lies(tmp_path: Path) -> None:
    # Slice 2 lies 3 mm (4 columns) along its rows from where the line through the first and last
    # slices puts it; the series reads with a warning about that slice (its steps along the normal
    # are even), which the RT Structure Set need not heed.
    positions = _positions(AXIAL, SLICES)
    positions[2] = (positions[2][0] + 3.0, positions[2][1], positions[2][2])
    scan = write_series(
        tmp_path / "scan",
        _pixels((ROWS, COLUMNS, SLICES), 1),
        modality="CT",
        positions=positions,
        orientation=AXIAL,
        rescale=[(1.0, -1024.0)] * SLICES,
        identity=_identity(),
    )
    labels = _labels(4)
    target = tmp_path / "rtstruct.dcm"
    with pytest.warns(UserWarning, match="within its plane"):
        volume = DicomVolume(scan)
    # The series' affine, which predict gave before: each slice's own header places its contours now.
    write_rtstruct(labels, volume, target, class_names=CLASSES, affine=volume.patient_affine)

    masks, _ = _decoded(target, sorted(scan.iterdir()))
    for k, name in enumerate(CLASSES):
        assert np.array_equal(masks[name], labels == k + 1), name


def test_the_structure_set_joins_the_study_and_references_the_series(tmp_path: Path) -> None:
    scan, files = _series(tmp_path / "scan", AXIAL)
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    labels = _labels(3)
    labels[labels == 3] = 0  # a class no slice holds: an ROI without contours
    volume = DicomVolume(scan)
    assert volume.patient_affine is not None
    target = tmp_path / "rtstruct.dcm"
    write_rtstruct(labels, volume, target, class_names=CLASSES, affine=volume.patient_affine)

    ds = pydicom.dcmread(target)
    assert (ds.SOPClassUID, ds.Modality, ds.file_meta.MediaStorageSOPClassUID) == (
        RT_STRUCTURE_SET_STORAGE,
        "RTSTRUCT",
        RT_STRUCTURE_SET_STORAGE,
    )
    for tag in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate"):
        assert str(getattr(ds, tag)) == str(getattr(source, tag)), tag
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID and int(ds.SeriesNumber) == 1003
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == source.FrameOfReferenceUID
    study = frame.RTReferencedStudySequence[0]
    assert study.ReferencedSOPInstanceUID == source.StudyInstanceUID
    series = study.RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    every_slice = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert {item.ReferencedSOPInstanceUID for item in series.ContourImageSequence} == every_slice
    rois = ds.StructureSetROISequence
    assert [(int(r.ROINumber), r.ROIName, r.ROIGenerationAlgorithm) for r in rois] == [
        (1, "liver", "AUTOMATIC"),
        (2, "spleen", "AUTOMATIC"),
        (3, "kidney", "AUTOMATIC"),
    ]
    assert {r.ReferencedFrameOfReferenceUID for r in rois} == {source.FrameOfReferenceUID}
    contoured = {int(r.ReferencedROINumber): r for r in ds.ROIContourSequence}
    assert "ContourSequence" in contoured[1] and "ContourSequence" not in contoured[3]
    assert [int(o.ReferencedROINumber) for o in ds.RTROIObservationsSequence] == [1, 2, 3]


def test_labels_off_the_series_grid_are_refused(tmp_path: Path) -> None:
    scan, _ = _series(tmp_path / "scan", AXIAL)
    volume = DicomVolume(scan)
    assert volume.patient_affine is not None
    with pytest.raises(ValueError, match=r"labels \(10, 12, 4\) are not on the series' grid \(12, 10, 4\)"):
        write_rtstruct(
            np.zeros((COLUMNS, ROWS, SLICES), np.uint8),
            volume,
            tmp_path / "rt.dcm",
            class_names=CLASSES,
            affine=volume.patient_affine,
        )


# predict, on the tiny run's own 32x32 slices

SHAPE = (32, 32, 3)


def _nifti(path: Path) -> np.ndarray:
    image: Any = nib.load(path)
    return np.asarray(image.dataobj)


def test_predict_writes_the_nifti_label_map_as_contours(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scan = write_series(
        tmp_path / "scan",
        _pixels(SHAPE, 4),
        modality="MR",
        positions=[(-10.0, 20.0, 2.0 * k) for k in range(SHAPE[2])],
        identity=_identity(),
    )
    reference = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti")
    report = predict_quietly(trained_run.run_dir, scan, tmp_path / "rt", output_format="rtstruct")
    case = report.cases[0]
    assert case.segmentation == tmp_path / "rt" / "scan_seg.dcm" and case.probabilities is None
    expected = _nifti(reference.cases[0].segmentation)
    assert expected.shape == SHAPE and expected.max() > 0
    classes = list(trained_run.class_names)
    back = DicomRtStructVolume(
        case.segmentation, reference=DicomVolume(scan), roi_values={n: k + 1 for k, n in enumerate(classes)}
    )
    assert np.array_equal(np.stack([back.read(k) for k in range(SHAPE[2])], axis=2), expected)
    assert case.volumes_ml == reference.cases[0].volumes_ml


def test_rtstruct_with_probabilities_is_refused_before_anything_runs(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    with pytest.raises(
        ValueError, match=r"probabilities=True with output_format='rtstruct': an RT Structure Set"
    ):
        predict_quietly(
            trained_run.run_dir,
            tmp_path / "absent",
            tmp_path / "out",
            output_format="rtstruct",
            probabilities=True,
        )
    assert not (tmp_path / "out").exists()


def test_rtstruct_for_an_input_that_is_not_dicom_is_refused_naming_it(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scan = tmp_path / "volume.nii.gz"
    nib.Nifti1Image(np.random.default_rng(7).normal(size=SHAPE).astype(np.float32), np.eye(4)).to_filename(
        scan
    )  # type: ignore[no-untyped-call]
    with pytest.raises(
        PredictionError, match=rf"input {scan}: output_format='rtstruct' writes RT Structure Set"
    ):
        predict_quietly(trained_run.run_dir, scan, tmp_path / "out", output_format="rtstruct")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"])
def test_a_series_that_does_not_identify_itself_is_refused_before_predicting(
    trained_run: issl.FinetuneResult, tmp_path: Path, missing: str
) -> None:
    bad = write_series(
        tmp_path / "bad",
        _pixels(SHAPE, 5),
        modality="MR",
        positions=[(-10.0, 20.0, 2.0 * k) for k in range(SHAPE[2])],
        identity=_identity(**{missing: None}),
    )
    with pytest.raises(
        PredictionError,
        match=rf"input {bad}: DICOM file {bad}/im0\.dcm has no {missing}; the RT Structure Set references",
    ):
        predict_quietly(trained_run.run_dir, bad, tmp_path / "out", output_format="rtstruct")
    assert not (tmp_path / "out").exists()


def test_the_cli_writes_an_rtstruct(trained_run: issl.FinetuneResult, tmp_path: Path) -> None:
    scan = write_series(
        tmp_path / "scan",
        _pixels(SHAPE, 6),
        modality="MR",
        positions=[(-10.0, 20.0, 2.0 * k) for k in range(SHAPE[2])],
        identity=_identity(),
    )
    out = tmp_path / "out"
    assert predict_command_quietly(trained_run.run_dir, [scan], out, "--output-format", "rtstruct") == 0
    assert sorted(p.name for p in out.iterdir()) == ["scan_seg.dcm", "volumes.csv"]
    assert pydicom.dcmread(out / "scan_seg.dcm", stop_before_pixels=True).Modality == "RTSTRUCT"


def test_a_run_trained_on_rtstruct_labels_predicts_rtstructs(tmp_path: Path) -> None:
    # The whole loop a radiotherapy user runs: DICOM series with RT Structure Sets in (the dicom
    # dataset), fine-tuning, and contours of new series out, which read back as predict's label map.
    from inpaintssl.data.dicom_dataset import dicom_dataset

    classes = ["a", "b"]
    cases: dict[str, list[dict[str, str]]] = {}
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        scan = write_series(
            tmp_path / split,
            _pixels(SHAPE, seed),
            modality="MR",
            positions=[(-10.0, 20.0, 2.0 * k) for k in range(SHAPE[2])],
            identity=_identity(),
        )
        labels = np.zeros(SHAPE, np.uint8)
        labels[4 + seed : 14 + seed, 6:20] = 1
        labels[20:28, 10 + seed : 24 + seed] = 2
        volume = DicomVolume(scan)
        assert volume.patient_affine is not None
        write_rtstruct(
            labels, volume, tmp_path / f"{split}.dcm", class_names=classes, affine=volume.patient_affine
        )
        cases[split] = [{"image": str(scan), "label": str(tmp_path / f"{split}.dcm")}]
    data = {"dataset": "dicom", "params": {"cases": cases, "class_names": classes}}
    assert len(dicom_dataset(split="train", **data["params"])) == SHAPE[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a run far too short to converge
        run = issl.finetune(
            {
                "data": data,
                "model": {"params": {"depth": 3, "base_width": 8}},
                "optim": {"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 4},
                "run": {"output_dir": str(tmp_path / "run"), "quiet": True, "device": "cpu", "seed": 0},
            }
        )
    test_scan = Path(cases["test"][0]["image"])
    reference = predict_quietly(run.run_dir, test_scan, tmp_path / "nifti")
    report = predict_quietly(run.run_dir, test_scan, tmp_path / "contours", output_format="rtstruct")
    back = DicomRtStructVolume(
        report.cases[0].segmentation, reference=DicomVolume(test_scan), roi_values={"a": 1, "b": 2}
    )
    expected = _nifti(reference.cases[0].segmentation)
    assert expected.any()  # contours to compare, not two empty maps
    assert np.array_equal(np.stack([back.read(k) for k in range(SHAPE[2])], axis=2), expected)
    assert report.cases[0].volumes_ml == reference.cases[0].volumes_ml
