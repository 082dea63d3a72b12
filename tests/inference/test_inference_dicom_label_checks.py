"""What the DICOM writers take of a label map: integer class numbers on the series' stored grid.

``write_dicom_seg`` and ``write_rtstruct`` refuse, before anything is written, a label map that is
not on the series' stored grid (a slice too many or too few, transposed, or on the grid of the
volume as read after a reorientation), of no integer dtype, or holding a value below 0 or beyond
the classes; ``write_dicom_seg`` refuses probabilities off that grid or of another class count.
Labels of any integer dtype (``label_map``'s int64 among them) are written as the class numbers
they are. The derived series is numbered its source's ``SeriesNumber + 1000`` where that is a valid
one (1 to 2**31 - 1), else 1000. The objects are read back with pydicom alone
(:func:`dicom_helpers.seg_label_map`, :func:`dicom_helpers.rtstruct_masks`), never through the
library's readers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom_helpers import rtstruct_masks, seg_label_map, slice_planes, write_series
from inpaintssl.data.dicom import DicomVolume

pytest.importorskip("highdicom", reason="the dicom-seg extra is not installed")
pydicom = pytest.importorskip("pydicom")

from inpaintssl.inference.dicom_seg import write_dicom_seg  # noqa: E402 - after the skip
from inpaintssl.inference.rtstruct import write_rtstruct  # noqa: E402 - after the skip

ROWS, COLUMNS, SLICES = 6, 4, 3
CLASSES = ("liver", "spleen")
WRITERS = ["write_dicom_seg", "write_rtstruct"]


def _series(folder: Path, **identity: Any) -> Path:
    """An axial series (rows along +y, columns along +x: stored ``PLS``), slices 2 mm apart."""
    from pydicom.uid import generate_uid

    tags: dict[str, Any] = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "SeriesNumber": 5,
    }
    tags.update(identity)
    stored = np.random.default_rng(0).integers(0, 900, (SLICES, ROWS, COLUMNS)).astype(np.int16)
    positions = [(-10.0, 20.0, 2.0 * k) for k in range(SLICES)]
    tags = {name: value for name, value in tags.items() if value is not None}
    return write_series(folder, stored, modality="MR", positions=positions, identity=tags)


def _labels() -> np.ndarray:
    labels = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    labels[1:4, 1:3, 0] = 1
    labels[4, 2, 1] = 2
    labels[0:2, 0:2, 2] = 2
    return labels


def _write(writer: str, labels: np.ndarray, volume: DicomVolume, target: Path, **options: Any) -> None:
    if writer == "write_dicom_seg":
        write_dicom_seg(labels, volume, target, class_names=CLASSES, **options)
    else:
        write_rtstruct(labels, volume, target, class_names=CLASSES, **options)


def _read_back(writer: str, target: Path, series: Path) -> np.ndarray:
    """The written object's label map, decoded with pydicom (and matplotlib) alone."""
    planes = slice_planes(sorted(series.iterdir()))
    if writer == "write_dicom_seg":
        labels, _ = seg_label_map(target, planes, (ROWS, COLUMNS, SLICES))
        return labels
    masks, _ = rtstruct_masks(target, planes, (ROWS, COLUMNS, SLICES))
    labels = np.zeros((ROWS, COLUMNS, SLICES), np.int64)
    for k, name in enumerate(CLASSES):
        labels[masks[name]] = k + 1
    return labels


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(
    "shape",
    [(ROWS, COLUMNS, SLICES + 1), (ROWS, COLUMNS, SLICES - 1), (COLUMNS, ROWS, SLICES)],
    ids=["a-slice-too-many", "a-slice-too-few", "transposed"],
)
def test_labels_off_the_series_grid_are_refused_by_both_writers(
    tmp_path: Path, writer: str, shape: tuple[int, int, int]
) -> None:
    # A slice too many, labelled: a SEG took the first slices and lost it without a word.
    series = _series(tmp_path / "series")
    labels = np.zeros(shape, np.uint8)
    labels[1, 1, shape[2] - 1] = 1
    labels[0, 0, 0] = 1
    target = tmp_path / "out.dcm"
    expected = re.escape(f"{writer}: labels {shape} are not on the series' grid {(ROWS, COLUMNS, SLICES)}")
    with pytest.raises(ValueError, match=expected):
        _write(writer, labels, DicomVolume(series), target)
    assert not target.exists()


@pytest.mark.parametrize(
    ("shape", "found"),
    [
        ((ROWS, COLUMNS, SLICES + 1, len(CLASSES)), (ROWS, COLUMNS, SLICES + 1, len(CLASSES))),
        ((ROWS, COLUMNS, SLICES, 3), (ROWS, COLUMNS, SLICES, 3)),
    ],
    ids=["a-slice-too-many", "a-map-too-many"],
)
def test_probabilities_off_the_grid_or_of_another_class_count_are_refused(
    tmp_path: Path, shape: tuple[int, ...], found: tuple[int, ...]
) -> None:
    series = _series(tmp_path / "series")
    probabilities = np.zeros(shape, np.float32)
    probabilities[1, 1, -1, 0] = 0.9  # on the slice (or map) too many
    with pytest.raises(ValueError) as raised:
        write_dicom_seg(
            _labels(),
            DicomVolume(series),
            tmp_path / "seg.dcm",
            class_names=CLASSES,
            probabilities=probabilities,
            probabilities_target=tmp_path / "prob.dcm",
        )
    message = str(raised.value)
    assert message.startswith(f"write_dicom_seg: probabilities {found} are not on the series' grid")
    assert f"expected {(ROWS, COLUMNS, SLICES, len(CLASSES))}" in message
    assert not (tmp_path / "seg.dcm").exists() and not (tmp_path / "prob.dcm").exists()


@pytest.mark.parametrize("writer", WRITERS)
def test_labels_of_a_reoriented_volumes_grid_are_refused_naming_to_stored(
    tmp_path: Path, writer: str
) -> None:
    series = _series(tmp_path / "series")
    volume = DicomVolume(series)
    assert volume.stored_orientation == "PLS"
    volume.reorient("RAS")  # rows and columns swap: (4, 6, 3)
    assert volume.shape == (COLUMNS, ROWS, SLICES)
    on_ras = np.zeros(volume.shape, np.uint8)
    on_ras[0, 0, 0] = 1  # the most right, most anterior voxel of the first slice
    with pytest.raises(
        ValueError, match=r"reoriented to RAS: give a label map of that grid as volume\.to_stored"
    ):
        _write(writer, on_ras, volume, tmp_path / "out.dcm")

    # So given, it lands on that voxel as stored: R is the last column (x runs left), A the last
    # row (y runs posterior).
    _write(writer, volume.to_stored(on_ras), volume, tmp_path / "out.dcm")
    expected = np.zeros((ROWS, COLUMNS, SLICES), np.int64)
    expected[ROWS - 1, COLUMNS - 1, 0] = 1
    assert np.array_equal(_read_back(writer, tmp_path / "out.dcm", series), expected)


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(("value", "found"), [(3, "the class number 3"), (-1, "the value -1")])
def test_labels_beyond_the_classes_are_refused_by_both_writers(
    tmp_path: Path, writer: str, value: int, found: str
) -> None:
    # An RT Structure Set has no ROI for class 3 of two: its pixels were left out without a word.
    series = _series(tmp_path / "series")
    labels = _labels().astype(np.int16)
    labels[1, 1, 1] = value
    with pytest.raises(ValueError) as raised:
        _write(writer, labels, DicomVolume(series), tmp_path / "out.dcm")
    assert str(raised.value).startswith(f"{writer}: labels hold {found}, but class_names holds 2 classes")
    assert "expected values from 0 (background) to 2" in str(raised.value)
    assert not (tmp_path / "out.dcm").exists()


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_labels_of_no_integer_dtype_are_refused_by_both_writers(
    tmp_path: Path, writer: str, dtype: str
) -> None:
    # A SEG took 0/1 floats as a mask, an RT Structure Set dropped 1.5 without a word.
    series = _series(tmp_path / "series")
    labels = _labels().astype(dtype)
    labels[2, 2, 2] = 1.5
    with pytest.raises(ValueError, match=rf"^{writer}: labels are of dtype {dtype}; expected integer class"):
        _write(writer, labels, DicomVolume(series), tmp_path / "out.dcm")


@pytest.mark.parametrize(
    ("writer", "options"),
    [
        ("write_dicom_seg", {"dicom_seg_type": "binary"}),
        ("write_dicom_seg", {"dicom_seg_type": "labelmap"}),
        ("write_rtstruct", {}),
    ],
    ids=["binary-seg", "labelmap-seg", "rtstruct"],
)
@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "uint16", "uint32"])
def test_labels_of_any_integer_dtype_are_written_as_their_class_numbers(
    tmp_path: Path, writer: str, options: dict[str, Any], dtype: str
) -> None:
    # int64 is label_map's own dtype (argmax): highdicom refused it ("invalid data type").
    series = _series(tmp_path / "series")
    labels = _labels()
    _write(writer, labels.astype(dtype), DicomVolume(series), tmp_path / "out.dcm", **options)
    assert np.array_equal(_read_back(writer, tmp_path / "out.dcm", series), labels)
    if options.get("dicom_seg_type") == "labelmap":
        assert int(pydicom.dcmread(tmp_path / "out.dcm").BitsAllocated) == 8  # two classes fit 8 bits


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(
    ("source", "derived"),
    [
        (5, 1005),
        (None, 1000),
        (-1000, 1000),  # 0: no positive number (highdicom refused it after the prediction)
        (-3, 997),  # still a positive number
        (2**31 - 1 - 1000, 2**31 - 1),  # the largest a SeriesNumber (VR IS) holds
        (2**31 - 1000, 1000),  # one beyond it
        (2147483000, 1000),
    ],
)
def test_the_derived_series_number_is_the_sources_plus_1000_where_that_is_valid(
    tmp_path: Path, writer: str, source: int | None, derived: int
) -> None:
    series = _series(tmp_path / "series", SeriesNumber=source)
    _write(writer, _labels(), DicomVolume(series), tmp_path / "out.dcm")
    assert int(pydicom.dcmread(tmp_path / "out.dcm").SeriesNumber) == derived
