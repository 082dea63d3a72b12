"""``predict(output_format="dicom_seg")``: a DICOM series' label map as a DICOM SEG of that series.

Each SEG is decoded here with pydicom alone, frame by frame, through what DICOM says a frame
segments (its source instance and frame, its segment number), independently of highdicom's own
reader, and compared with the NIfTI label map ``predict`` writes for the same series; its
identifying attributes are compared with the source files'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from dicom_helpers import write_enhanced, write_series
from inpaintssl.inference.predict import PredictionError
from predict_helpers import predict_command_quietly, predict_quietly

pytest.importorskip("highdicom", reason="the dicom-seg extra is not installed")
pydicom = pytest.importorskip("pydicom")

SHAPE = (32, 32, 3)
"""The tiny run's own 32x32 slices, three of them."""
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
POSITIONS = [(-10.0, 20.0, 2.0 * k) for k in range(SHAPE[2])]


def _identity(**changes: Any) -> dict[str, Any]:
    from pydicom.uid import generate_uid

    tags: dict[str, Any] = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "PatientID": "KNEE-007",
        "PatientName": "Doe^Jane",
        "StudyDate": "20260102",
        "SeriesNumber": 5,
    }
    tags.update(changes)
    return {tag: value for tag, value in tags.items() if value is not None}


def _slices(seed: int) -> np.ndarray:
    """``(slices, rows, columns)`` int16, as the DICOM writers take them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1000, (SHAPE[2], *SHAPE[:2])).astype(np.int16)


def _sources(files: list[Path]) -> dict[tuple[str, int | None], int]:
    """``(SOPInstanceUID, frame number or None)`` -> stored slice, for the files of a series."""
    found: dict[tuple[str, int | None], tuple[float, ...]] = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        frames = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
        if frames is None:
            found[(ds.SOPInstanceUID, None)] = tuple(float(v) for v in ds.ImagePositionPatient)
        for number, group in enumerate(frames or [], start=1):
            position = group.PlanePositionSequence[0].ImagePositionPatient
            found[(ds.SOPInstanceUID, number)] = tuple(float(v) for v in position)
    # Stored slices run along the normal of (1, 0, 0, 0, 1, 0): by z.
    by_z = sorted(found, key=lambda key: found[key][2])
    return {key: k for k, key in enumerate(by_z)}


def _decoded(path: Path, sources: dict[tuple[str, int | None], int], segments: int) -> np.ndarray:
    """A SEG as ``(rows, columns, slices, segments)`` values: 0/1 (BINARY) or fractions (FRACTIONAL)."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    scale = float(ds.MaximumFractionalValue) if ds.SegmentationType == "FRACTIONAL" else 1.0
    maps = np.zeros((int(ds.Rows), int(ds.Columns), SHAPE[2], segments))
    for frame, group in zip(pixels, ds.PerFrameFunctionalGroupsSequence):
        source = group.DerivationImageSequence[0].SourceImageSequence[0]
        number = getattr(source, "ReferencedFrameNumber", None)
        key = (source.ReferencedSOPInstanceUID, None if number is None else int(number))
        segment = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        maps[:, :, sources[key], segment - 1] = frame / scale
    return maps


def _labels(maps: np.ndarray) -> np.ndarray:
    """Segment numbers from BINARY maps that do not overlap (a label map's), 0 where none."""
    assert maps.sum(axis=-1).max() <= 1
    return np.asarray((maps * np.arange(1, maps.shape[-1] + 1)).sum(axis=-1), dtype=np.uint8)


def _nifti(path: Path) -> np.ndarray:
    image: Any = nib.load(path)
    return np.asarray(image.dataobj)


def _scan(tmp_path: Path, layout: str, *, seed: int, identity: dict[str, Any]) -> tuple[Path, list[Path]]:
    """A series of :func:`_slices` ``seed``: a folder of files (``classic``), or one Enhanced file
    whose frames are stored in another order than their positions, which a SEG's frames follow.
    Returns the input to predict and its files."""
    if layout == "classic":
        scan = write_series(
            tmp_path / "scan", _slices(seed), modality="MR", positions=POSITIONS, identity=identity
        )
        return scan, sorted(scan.iterdir())
    order = [2, 0, 1]
    scan = tmp_path / "scan.dcm"
    write_enhanced(
        scan, _slices(seed)[order], modality="MR", positions=[POSITIONS[k] for k in order], identity=identity
    )
    return scan, [scan]


@pytest.mark.parametrize("layout", ["classic", "enhanced"])
def test_a_series_label_map_as_dicom_seg_is_its_nifti_label_map(
    trained_run: issl.FinetuneResult, tmp_path: Path, layout: str
) -> None:
    identity = _identity()
    scan, files = _scan(tmp_path, layout, seed=1, identity=identity)
    reference = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti", probabilities=True)
    report = predict_quietly(
        trained_run.run_dir, scan, tmp_path / "seg", probabilities=True, output_format="dicom_seg"
    )

    case = report.cases[0]
    assert case.segmentation == tmp_path / "seg" / "scan_seg.dcm"
    assert case.probabilities == tmp_path / "seg" / "scan_prob.dcm"
    classes = list(trained_run.class_names)
    sources = _sources(files)
    expected = _nifti(reference.cases[0].segmentation)
    assert expected.shape == SHAPE and expected.max() > 0
    assert np.array_equal(_labels(_decoded(case.segmentation, sources, len(classes))), expected)
    assert case.volumes_ml == reference.cases[0].volumes_ml

    seg = pydicom.dcmread(case.segmentation, stop_before_pixels=True)
    assert (seg.SOPClassUID, seg.Modality, seg.SegmentationType) == (SEGMENTATION_STORAGE, "SEG", "BINARY")
    for tag in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName", "StudyDate"):
        assert str(getattr(seg, tag)) == str(identity[tag]), tag
    assert seg.SeriesInstanceUID != identity["SeriesInstanceUID"] and int(seg.SeriesNumber) == 1005
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == identity["SeriesInstanceUID"]
    assert [item.SegmentLabel for item in seg.SegmentSequence] == classes
    assert {item.SegmentAlgorithmType for item in seg.SegmentSequence} == {"AUTOMATIC"}
    assert {item.SegmentAlgorithmName for item in seg.SegmentSequence} == {"inpaintssl"}

    # The probabilities: a FRACTIONAL SEG in the same series, in 255 steps.
    assert case.probabilities is not None and reference.cases[0].probabilities is not None
    prob = pydicom.dcmread(case.probabilities, stop_before_pixels=True)
    assert (prob.SegmentationType, prob.SegmentationFractionalType) == ("FRACTIONAL", "PROBABILITY")
    assert prob.SeriesInstanceUID == seg.SeriesInstanceUID and int(prob.InstanceNumber) == 2
    fractions = _decoded(case.probabilities, sources, len(classes))
    np.testing.assert_allclose(
        fractions, _nifti(reference.cases[0].probabilities), rtol=0, atol=0.5 / 255 + 1e-6
    )


def test_a_series_predicted_reoriented_gets_its_seg_on_the_stored_slices(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    # predict reads the series in RAS (rows and columns mirrored and swapped: the same 32x32x3
    # shape), and hands the writer its label map brought back to the stored grid with the volume
    # still reoriented: the SEG must hold the stored label map, as the NIfTI one does.
    identity = _identity()
    scan, files = _scan(tmp_path, "classic", seed=4, identity=identity)
    options: dict[str, Any] = {"orientation": "RAS"}
    reference = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti", **options)
    report = predict_quietly(
        trained_run.run_dir, scan, tmp_path / "seg", output_format="dicom_seg", **options
    )
    assert report.cases[0].reoriented_to == "RAS"
    expected = _nifti(reference.cases[0].segmentation)
    assert expected.shape == SHAPE and expected.max() > 0
    classes = len(trained_run.class_names)
    assert np.array_equal(_labels(_decoded(report.cases[0].segmentation, _sources(files), classes)), expected)


def test_input_writes_dicom_series_as_dicom_seg_and_the_rest_in_their_own_formats(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    write_series(scans / "series", _slices(2), modality="MR", positions=POSITIONS, identity=_identity())
    nib.Nifti1Image(_slices(3).transpose(1, 2, 0).astype(np.float32), np.eye(4)).to_filename(
        scans / "volume.nii.gz"
    )  # type: ignore[no-untyped-call]
    out = tmp_path / "out"
    inputs = [scans / "series", scans / "volume.nii.gz"]
    assert predict_command_quietly(trained_run.run_dir, inputs, out, "--output-format", "input") == 0
    assert sorted(p.name for p in out.iterdir()) == ["series_seg.dcm", "volume_seg.nii.gz", "volumes.csv"]


def test_patient_and_study_attributes_a_series_leaves_out_are_written_empty(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    identity = _identity(PatientID=None, PatientName=None, StudyDate=None)
    scan = write_series(tmp_path / "scan", _slices(4), modality="MR", positions=POSITIONS, identity=identity)
    report = predict_quietly(trained_run.run_dir, scan, tmp_path / "seg", output_format="dicom_seg")
    seg = pydicom.dcmread(report.cases[0].segmentation, stop_before_pixels=True)
    for tag in ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyID"):
        assert tag in seg and str(seg.data_element(tag).value or "") == "", tag
    assert seg.StudyInstanceUID == identity["StudyInstanceUID"]


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"])
def test_a_series_that_states_no_study_or_frame_of_reference_is_refused_before_predicting(
    trained_run: issl.FinetuneResult, tmp_path: Path, missing: str
) -> None:
    good = write_series(
        tmp_path / "good", _slices(5), modality="MR", positions=POSITIONS, identity=_identity()
    )
    bad = write_series(
        tmp_path / "bad",
        _slices(6),
        modality="MR",
        positions=POSITIONS,
        identity=_identity(**{missing: None}),
    )
    with pytest.raises(PredictionError, match=rf"input {bad}: DICOM file {bad}/im0\.dcm has no {missing}"):
        predict_quietly(trained_run.run_dir, [good, bad], tmp_path / "out", output_format="dicom_seg")
    assert not (tmp_path / "out").exists()


def test_dicom_seg_for_an_input_that_is_not_dicom_is_refused_naming_it(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scan = tmp_path / "volume.nii.gz"
    nib.Nifti1Image(np.random.default_rng(7).normal(size=SHAPE).astype(np.float32), np.eye(4)).to_filename(
        scan
    )  # type: ignore[no-untyped-call]
    with pytest.raises(PredictionError, match=rf"input {scan}: output_format='dicom_seg' writes DICOM SEG"):
        predict_quietly(trained_run.run_dir, scan, tmp_path / "out", output_format="dicom_seg")
    assert not (tmp_path / "out").exists()


LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"


def _decoded_label_map(
    path: Path, sources: dict[tuple[str, int | None], int]
) -> tuple[np.ndarray, list[int]]:
    """A LABELMAP SEG as ``(rows, columns, slices)`` segment numbers, each frame's pixels taken as they
    are, and the slices its frames segment."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    labels = np.zeros((int(ds.Rows), int(ds.Columns), SHAPE[2]), dtype=np.uint8)
    placed = []
    for frame, group in zip(pixels, ds.PerFrameFunctionalGroupsSequence):
        # A label map's frame holds every segment: it names none.
        assert "SegmentIdentificationSequence" not in group
        source = group.DerivationImageSequence[0].SourceImageSequence[0]
        number = getattr(source, "ReferencedFrameNumber", None)
        k = sources[(source.ReferencedSOPInstanceUID, None if number is None else int(number))]
        labels[:, :, k] = frame
        placed.append(k)
    return labels, placed


@pytest.mark.parametrize("layout", ["classic", "enhanced"])
def test_a_labelmap_seg_holds_each_slices_class_numbers_as_the_nifti_label_map_does(
    trained_run: issl.FinetuneResult, tmp_path: Path, layout: str
) -> None:
    identity = _identity()
    scan, files = _scan(tmp_path, layout, seed=11, identity=identity)
    reference = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti", probabilities=True)
    report = predict_quietly(
        trained_run.run_dir,
        scan,
        tmp_path / "seg",
        probabilities=True,
        output_format="dicom_seg",
        dicom_seg_type="labelmap",
    )

    case = report.cases[0]
    expected = _nifti(reference.cases[0].segmentation)
    assert expected.max() > 0
    labels, placed = _decoded_label_map(case.segmentation, _sources(files))
    assert np.array_equal(labels, expected)
    # A frame per slice that holds a labelled pixel, each slice once.
    assert sorted(placed) == [k for k in range(SHAPE[2]) if expected[:, :, k].any()]
    assert case.volumes_ml == reference.cases[0].volumes_ml

    seg = pydicom.dcmread(case.segmentation, stop_before_pixels=True)
    assert (seg.SOPClassUID, seg.Modality, seg.SegmentationType) == (
        LABEL_MAP_SEGMENTATION_STORAGE,
        "SEG",
        "LABELMAP",
    )
    assert int(seg.BitsAllocated) == 8
    # Segment 0 is the background every pixel without a class holds, described as such.
    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in seg.SegmentSequence] == [
        (0, "Background"),
        *enumerate(trained_run.class_names, start=1),
    ]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == identity["SeriesInstanceUID"]
    # The probabilities stay a FRACTIONAL SEG of the same series.
    assert case.probabilities is not None
    prob = pydicom.dcmread(case.probabilities, stop_before_pixels=True)
    assert (prob.SOPClassUID, prob.SegmentationType) == (SEGMENTATION_STORAGE, "FRACTIONAL")
    assert prob.SeriesInstanceUID == seg.SeriesInstanceUID


@pytest.mark.parametrize("dicom_seg_type", ["binary", "labelmap"])
@pytest.mark.parametrize("empty_slices", [[1], [0, 1, 2]], ids=["one-empty-slice", "all-empty"])
def test_either_type_reads_back_as_the_label_map_written(
    tmp_path: Path, dicom_seg_type: str, empty_slices: list[int]
) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.data.dicom_seg import DicomSegVolume
    from inpaintssl.inference.dicom_seg import write_dicom_seg

    scan = write_series(
        tmp_path / "scan", _slices(12), modality="MR", positions=POSITIONS, identity=_identity()
    )
    rows, columns = np.mgrid[: SHAPE[0], : SHAPE[1]]
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[:, :, 0] = np.where((rows - 10) ** 2 + (columns - 12) ** 2 < 40, 1, 0)
    labels[:, :, 2] = np.where(rows < 8, 2, np.where(columns > 25, 3, 0))
    labels[:, :, empty_slices] = 0
    series = DicomVolume(scan)
    target = tmp_path / "scan_seg.dcm"
    write_dicom_seg(
        labels, series, target, class_names=("liver", "spleen", "kidney"), dicom_seg_type=dicom_seg_type
    )

    read = DicomSegVolume(target, reference=series)
    assert np.array_equal(np.stack([read.read(k) for k in range(SHAPE[2])], axis=2), labels)
    background = {0: "Background"} if dicom_seg_type == "labelmap" else {}  # a label map's segment 0
    assert read.segment_labels == {**background, 1: "liver", 2: "spleen", 3: "kidney"}
    ds = pydicom.dcmread(target, stop_before_pixels=True)
    assert ds.SegmentationType == dicom_seg_type.upper()
    filled = [k for k in range(SHAPE[2]) if labels[:, :, k].any()]
    if dicom_seg_type == "labelmap":
        # A frame per slice with a labelled pixel; a map with none keeps every slice (a SEG needs a frame).
        assert int(ds.NumberOfFrames) == (len(filled) or SHAPE[2])
    else:
        # A frame per class and slice where that class has a pixel.
        present = sum(int((labels[:, :, k] == c).any()) for k in range(SHAPE[2]) for c in (1, 2, 3))
        assert int(ds.NumberOfFrames) == (present or 3 * SHAPE[2])


def test_a_labelmap_type_is_refused_with_a_format_that_writes_no_dicom_seg(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scan = write_series(
        tmp_path / "scan", _slices(13), modality="MR", positions=POSITIONS, identity=_identity()
    )
    with pytest.raises(ValueError, match=r"dicom_seg_type='labelmap' with output_format='nrrd'"):
        predict_quietly(
            trained_run.run_dir, scan, tmp_path / "out", output_format="nrrd", dicom_seg_type="labelmap"
        )
    with pytest.raises(ValueError, match=r"dicom_seg_type.*'label_map'.*did you mean 'labelmap'"):
        predict_quietly(
            trained_run.run_dir, scan, tmp_path / "out", output_format="dicom_seg", dicom_seg_type="label_map"
        )
    assert not (tmp_path / "out").exists()


def test_the_cli_writes_a_labelmap_seg(trained_run: issl.FinetuneResult, tmp_path: Path) -> None:
    scan = write_series(
        tmp_path / "scan", _slices(14), modality="MR", positions=POSITIONS, identity=_identity()
    )
    out = tmp_path / "out"
    flags = ["--output-format", "input", "--dicom-seg-type", "labelmap"]
    assert predict_command_quietly(trained_run.run_dir, [scan], out, *flags) == 0
    seg = pydicom.dcmread(out / "scan_seg.dcm", stop_before_pixels=True)
    assert (seg.SOPClassUID, seg.SegmentationType) == (LABEL_MAP_SEGMENTATION_STORAGE, "LABELMAP")


TAB10 = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
"""matplotlib's ``tab10`` (its documentation's hex codes): the first ten classes' colours."""


def _rgb(hex_code: str) -> tuple[int, int, int]:
    return (int(hex_code[1:3], 16), int(hex_code[3:5], 16), int(hex_code[5:7], 16))


def _cielab(rgb: tuple[int, int, int]) -> np.ndarray:
    """sRGB (8 bits) to CIE L*a*b* under D65, by the textbook formulas (IEC 61966-2-1, CIE 15)."""
    linear = np.array([c / 255 for c in rgb])
    linear = np.where(linear <= 0.04045, linear / 12.92, ((linear + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_class_colours_are_tab10_then_the_lighter_tab20_ten_repeating_after_twenty() -> None:
    from inpaintssl.inference.dicom_seg import class_colours

    colours = class_colours(41)
    assert colours[:10] == [_rgb(code) for code in TAB10]
    assert len(set(colours[:20])) == 20
    assert colours[20:40] == colours[:20] and colours[40] == colours[0]


@pytest.mark.parametrize("dicom_seg_type", ["binary", "labelmap"])
def test_each_class_is_shown_in_its_colour(tmp_path: Path, dicom_seg_type: str) -> None:
    from pydicom.pixels import apply_color_lut

    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.dicom_seg import write_dicom_seg

    scan = write_series(
        tmp_path / "scan", _slices(15), modality="MR", positions=POSITIONS, identity=_identity()
    )
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[2:9, 3:7, 0], labels[10:20, 5:9, 1], labels[20:30, 20:31, 2] = 1, 2, 3
    target, prob_target = tmp_path / "scan_seg.dcm", tmp_path / "scan_prob.dcm"
    probabilities = np.stack([labels == k for k in (1, 2, 3)], axis=-1).astype(np.float32)
    write_dicom_seg(
        labels,
        DicomVolume(scan),
        target,
        class_names=("liver", "spleen", "kidney"),
        probabilities=probabilities,
        probabilities_target=prob_target,
        dicom_seg_type=dicom_seg_type,
    )
    expected = [_rgb(code) for code in TAB10[:3]]
    ds = pydicom.dcmread(target)
    # The probabilities' segments recommend the colours either way, and so do a binary SEG's.
    for path in [prob_target] + ([target] if dicom_seg_type == "binary" else []):
        described = pydicom.dcmread(path, stop_before_pixels=True).SegmentSequence
        for item, rgb in zip(described, expected):
            value = [int(v) for v in item.RecommendedDisplayCIELabValue]
            lab = np.array(
                [value[0] * 100 / 65535, value[1] * 255 / 65535 - 128, value[2] * 255 / 65535 - 128]
            )
            np.testing.assert_allclose(lab, _cielab(rgb), atol=0.5)
    if dicom_seg_type == "labelmap":
        # Shown as a viewer shows a label map: its pixels through its palette.
        assert ds.PhotometricInterpretation == "PALETTE COLOR"
        assert not any("RecommendedDisplayCIELabValue" in item for item in ds.SegmentSequence)
        frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
        shown = np.asarray(apply_color_lut(frames, ds))
        if shown.dtype == np.uint16:  # a 16-bit palette entry holds 257 times the 8-bit value
            shown = shown // 257
        palette = np.array([(0, 0, 0), *expected])
        np.testing.assert_array_equal(shown, palette[frames])
        assert {int(v) for v in np.unique(frames)} == {0, 1, 2, 3}


def test_the_command_line_offers_the_seg_types_and_output_formats_predict_takes() -> None:
    from cli_parsers import subparsers
    from inpaintssl.cli import build_parser
    from inpaintssl.inference.dicom_seg import DICOM_SEG_TYPES
    from inpaintssl.inference.writing import OUTPUT_FORMATS

    parser = dict(subparsers(build_parser()))[("predict",)]
    choices = {action.dest: action.choices for action in parser._actions}
    assert tuple(choices["dicom_seg_type"]) == DICOM_SEG_TYPES
    assert set(choices["output_format"]) == {*OUTPUT_FORMATS, "input"}
