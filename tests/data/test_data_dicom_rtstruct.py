"""An RT Structure Set read as the label map of the series its contours were drawn on.

The contours are drawn around known pixels: rectangles and rings along pixel edges, placed in
patient millimetres with DICOM's own pixel-to-patient formula (PS3.3 C.7.6.2.1.1: position +
column x column spacing x row direction + row x row spacing x column direction), not through the
library's affines. The expectation is those pixels, written as a NIfTI label on the series'
patient affine, a label path the ``ct`` dataset already pairs and checks: both must give the
same label slices, stored and reoriented.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom_helpers import nifti_on_series, write_enhanced, write_rtstruct, write_series
from inpaintssl.data.base import DataError
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.dicom_rtstruct import DicomRtStructVolume, is_dicom_rtstruct

pydicom = pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 12, 10, 4
SPACING = (0.5, 0.75)  # PixelSpacing: between rows, between columns (dicom_helpers' default)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
FRAME = "1.2.3.4"  # the series' FrameOfReferenceUID


def _rtstruct(path: Path, rois: list[tuple[int, str, list[dict[str, Any]]]], **written: Any) -> Path:
    return write_rtstruct(path, rois, **{"frame_of_reference": FRAME, **written})


def _positions(orientation: tuple[float, ...]) -> list[tuple[float, float, float]]:
    normal = np.cross(orientation[:3], orientation[3:])
    return [tuple(np.array([-30.0, 12.5, 5.0]) + 2.5 * k * normal) for k in range(SLICES)]  # type: ignore[misc]


def _series(folder: Path, *, orientation: tuple[float, ...] = AXIAL, seed: int = 0) -> Path:
    stored = np.random.default_rng(seed).integers(-200, 300, (SLICES, ROWS, COLUMNS)).astype(np.int16) + 1024
    stored[:, 0, 0] = 24  # air in a corner, as every CT slice has
    return write_series(
        folder,
        stored,
        modality="CT",
        positions=_positions(orientation),
        orientation=orientation,
        rescale=[(1.0, -1024.0)] * SLICES,
        identity={"FrameOfReferenceUID": FRAME},
    )


def _millimetres(series: Path, k: int, pixels: np.ndarray) -> np.ndarray:
    """``(n, 2)`` (row, column) pixel coordinates of stored slice ``k`` -> ``(n, 3)`` patient LPS mm."""
    files = sorted(series.glob("*.dcm"), key=lambda f: int(pydicom.dcmread(f).InstanceNumber))
    ds = pydicom.dcmread(files[k])
    position = np.array([float(v) for v in ds.ImagePositionPatient])
    row_direction = np.array([float(v) for v in ds.ImageOrientationPatient[:3]])
    column_direction = np.array([float(v) for v in ds.ImageOrientationPatient[3:]])
    between_rows, between_columns = (float(v) for v in ds.PixelSpacing)
    rows, columns = pixels[:, 0:1], pixels[:, 1:2]
    return position + columns * between_columns * row_direction + rows * between_rows * column_direction


def _uid(series: Path, k: int) -> str:
    files = sorted(series.glob("*.dcm"), key=lambda f: int(pydicom.dcmread(f).InstanceNumber))
    return str(pydicom.dcmread(files[k]).SOPInstanceUID)


def _box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """The outline (along pixel edges) of pixels rows ``top..bottom - 1``, columns ``left..right - 1``."""
    a, b, c, d = top - 0.5, left - 0.5, bottom - 0.5, right - 0.5
    return np.array([(a, b), (a, d), (c, d), (c, b)])


def _contour(series: Path, k: int, box: np.ndarray, *, referenced: bool = True) -> dict[str, Any]:
    return {"points": _millimetres(series, k, box), "image": (_uid(series, k), None) if referenced else None}


def _drawn(
    series: Path, *, referenced: bool = True
) -> tuple[list[tuple[int, str, list[dict[str, Any]]]], np.ndarray]:
    """A liver box with a hole on slices 0-2, a spleen box on slices 1-2, and the expected label map."""
    expected = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    liver, spleen = [], []
    for k in range(3):
        liver.append(_contour(series, k, _box(1, 1, 7, 6), referenced=referenced))
        liver.append(_contour(series, k, _box(3, 2, 5, 4), referenced=referenced))  # a hole
        expected[1:7, 1:6, k] = 1
        expected[3:5, 2:4, k] = 0
    for k in (1, 2):
        spleen.append(_contour(series, k, _box(8, 6, 11, 9), referenced=referenced))
        expected[8:11, 6:9, k] = 2
    # ROI numbers out of class order, names spelt otherwise, and an ROI no class asks for.
    body = [_contour(series, k, _box(0, 0, ROWS, COLUMNS), referenced=referenced) for k in range(SLICES)]
    return [(7, "BODY", body), (5, "Spleen", spleen), (3, "LIVER", liver)], expected


def _label_slices(image: Path, label: Path, orientation: str | None) -> list[np.ndarray]:
    dataset = ct_dataset(
        split="train",
        cases={"train": [{"image": str(image), "label": str(label)}]},
        class_names=["liver", "spleen"],
        orientation=orientation,
    )
    return [dataset[i]["label"].numpy() for i in range(len(dataset))]


@pytest.mark.parametrize("orientation", [None, "LPS", "SAR"])
@pytest.mark.parametrize("drawn_on", [AXIAL, SAGITTAL], ids=["axial", "sagittal"])
@pytest.mark.parametrize("referenced", [True, False], ids=["referenced", "by-position"])
def test_an_rtstruct_label_reads_as_its_nifti_twin(
    tmp_path: Path, drawn_on: tuple[float, ...], referenced: bool, orientation: str | None
) -> None:
    series = _series(tmp_path / "series", orientation=drawn_on)
    rois, expected = _drawn(series, referenced=referenced)
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", rois)
    twin = nifti_on_series(series, expected, tmp_path / "twin.nii.gz")
    assert is_dicom_rtstruct(rtstruct) and not is_dicom_rtstruct(twin) and not is_dicom_rtstruct(series)

    from_rtstruct = _label_slices(series, rtstruct, orientation)
    from_nifti = _label_slices(series, twin, orientation)
    assert len(from_rtstruct) == len(from_nifti) > 0
    for mine, theirs in zip(from_rtstruct, from_nifti):
        assert np.array_equal(mine, theirs)
    assert sum(s.sum() for s in from_rtstruct) > 0


def test_the_volume_holds_the_requested_rois_with_their_values(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    rois, expected = _drawn(series)
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", rois)
    volume = DicomRtStructVolume(
        rtstruct, reference=DicomVolume(series), roi_values={"liver": 4, "spleen": 9}
    )
    assert volume.roi_names == {7: "BODY", 5: "Spleen", 3: "LIVER"}
    assert volume.shape == expected.shape and volume.overlaps == {}
    held = np.stack([volume.read(k) for k in range(SLICES)], axis=2)
    assert np.array_equal(held, np.select([expected == 1, expected == 2], [4, 9], 0))
    volume.release()
    assert np.array_equal(volume.read(2), held[:, :, 2])


def test_an_enhanced_series_frames_are_referenced_by_frame_number(tmp_path: Path) -> None:
    classic = _series(tmp_path / "classic")
    order = [2, 0, 3, 1]  # frames stored out of position order
    stored = np.stack([pydicom.dcmread(classic / f"im{k}.dcm").pixel_array for k in range(SLICES)])
    enhanced = tmp_path / "enhanced.dcm"
    write_enhanced(
        enhanced,
        stored[order],
        modality="CT",
        positions=[_positions(AXIAL)[k] for k in order],
        rescale=[(1.0, -1024.0)] * SLICES,
    )
    uid = str(pydicom.dcmread(enhanced).SOPInstanceUID)
    # Slice k is frame order.index(k) + 1; the points alone would place each contour too, so they are
    # drawn one slice off (within the half step a referenced contour may be off) to see the reference win.
    contours = []
    expected = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    for k in range(SLICES):
        points = _millimetres(classic, k, _box(k, k, k + 3, k + 4))
        points[:, 2] += 1.0  # 0.4 of the 2.5 mm step
        contours.append({"points": points, "image": (uid, order.index(k) + 1)})
        expected[k : k + 3, k : k + 4, k] = 1
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", [(1, "liver", contours)])
    volume = DicomRtStructVolume(rtstruct, reference=DicomVolume(enhanced), roi_values={"liver": 1})
    assert np.array_equal(np.stack([volume.read(k) for k in range(SLICES)], axis=2), expected)


def test_overlapping_rois_give_the_pixel_to_the_later_class_and_warn(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    a = [_contour(series, 1, _box(2, 2, 6, 6))]
    b = [_contour(series, 1, _box(4, 4, 8, 8))]  # 2 x 2 pixels in common
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", [(1, "a", a), (2, "b", b)])
    with pytest.warns(UserWarning, match=r"ROIs overlap \('b' over 'a' on 4 pixels\)"):
        volume = DicomRtStructVolume(rtstruct, reference=DicomVolume(series), roi_values={"a": 1, "b": 2})
    assert volume.overlaps == {("a", "b"): 4}
    label = volume.read(1)
    assert (label == 2).sum() == 16 and (label == 1).sum() == 12 and label[4:6, 4:6].min() == 2


def test_an_roi_without_contours_is_an_empty_class(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", [(1, "liver", [])])
    volume = DicomRtStructVolume(rtstruct, reference=DicomVolume(series), roi_values={"liver": 1})
    assert not volume.read(0).any() and volume.shape == (ROWS, COLUMNS, SLICES)


def _refused(tmp_path: Path, rois: list[tuple[int, str, list[dict[str, Any]]]], **written: Any) -> str:
    series = tmp_path / "series"
    if not series.exists():  # the contours were drawn on it
        _series(series)
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", rois, **written)
    with pytest.raises(DataError) as raised:
        DicomRtStructVolume(rtstruct, reference=DicomVolume(series), roi_values={"liver": 1})
    message = str(raised.value)
    assert message.startswith(f"DICOM RTSTRUCT {rtstruct}")
    return message


def test_a_class_naming_no_roi_is_refused_listing_the_rois(tmp_path: Path) -> None:
    message = _refused(tmp_path, [(1, "Spleen", []), (2, "Body", [])])
    assert "has no ROI named 'liver' (its ROIs: 1 'Spleen', 2 'Body')" in message


def test_two_rois_of_one_name_are_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, [(1, "Liver", []), (4, "liver ", [])])
    assert "has 2 ROIs named 'liver' (numbers [1, 4]); expected one" in message


def test_an_roi_of_another_frame_of_reference_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, [(1, "liver", [])], frame_of_reference="9.9.9")
    assert "ROI 1 'liver' is drawn in frame of reference 9.9.9 but the series" in message
    assert "is in 1.2.3.4" in message


def test_points_are_refused_as_a_class(tmp_path: Path) -> None:
    series_dir = tmp_path / "series"
    _series(series_dir)
    point = {"points": _millimetres(series_dir, 0, np.array([(2.0, 2.0)] * 3)), "kind": "POINT"}
    message = _refused(tmp_path, [(1, "liver", [point])])
    assert "ROI 1 'liver', contour 1 is POINT; expected CLOSED_PLANAR contours" in message


def test_a_contour_off_the_slice_it_references_is_refused(tmp_path: Path) -> None:
    series_dir = tmp_path / "series"
    _series(series_dir)
    contour = {"points": _millimetres(series_dir, 3, _box(1, 1, 4, 4)), "image": (_uid(series_dir, 1), None)}
    message = _refused(tmp_path, [(1, "liver", [contour])])
    assert re.search(
        r"contour 1 references slice 1 of the series .* but its points lie at slice position 3\.000", message
    )


def test_a_contour_naming_its_single_frame_slice_as_frame_1_is_placed_on_it(tmp_path: Path) -> None:
    # Frame 1 of a single-frame instance is its one frame: the contour is on the slice it names,
    # 0.3 of a step off it (within the half step a referenced contour may lie off its slice, beyond
    # the tenth one placed by position may), where it was refused as lying on no slice.
    series = _series(tmp_path / "series")
    points = _millimetres(series, 1, _box(1, 1, 4, 4))
    points[:, 2] += 0.3 * 2.5
    rtstruct = _rtstruct(
        tmp_path / "rtstruct.dcm", [(1, "liver", [{"points": points, "image": (_uid(series, 1), 1)}])]
    )
    volume = DicomRtStructVolume(rtstruct, reference=DicomVolume(series), roi_values={"liver": 1})
    expected = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    expected[1:4, 1:4, 1] = 1
    assert np.array_equal(np.stack([volume.read(k) for k in range(SLICES)], axis=2), expected)


def test_a_contour_between_slices_is_refused(tmp_path: Path) -> None:
    series_dir = tmp_path / "series"
    _series(series_dir)
    points = _millimetres(series_dir, 1, _box(1, 1, 4, 4))
    points[:, 2] += 1.25  # half a step
    message = _refused(tmp_path, [(1, "liver", [{"points": points}])])
    assert "contour 1 references no slice of the series" in message
    assert "lie at slice position 1.500 (in slice steps; the series has slices 0 to 3)" in message


def test_a_contour_outside_the_slices_is_refused(tmp_path: Path) -> None:
    series_dir = tmp_path / "series"
    _series(series_dir)
    contour = _contour(series_dir, 0, _box(5, 5, 20, 8))
    message = _refused(tmp_path, [(1, "liver", [contour])])
    assert "contour 1 reaches pixels (4.5, 4.5) to (19.5, 7.5) but the series" in message
    assert "has slices of 12x10" in message


def test_a_label_of_an_image_that_is_no_dicom_series_is_refused(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    rois, expected = _drawn(series)
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", rois)
    image = nifti_on_series(series, expected, tmp_path / "image.nii.gz")
    with pytest.raises(
        DataError, match=r"is a DICOM RTSTRUCT, which annotates a DICOM series, but its image"
    ):
        _label_slices(image, rtstruct, None)


def test_a_single_l3_slice_takes_its_body_composition_contours(tmp_path: Path) -> None:
    # The paper's CT cases: one .dcm slice each, with the default classes muscle, imat, vat, sat.
    series = _series(tmp_path / "series")
    single = series / "im2.dcm"
    rois = [
        (1, "SAT", [_contour(series, 2, _box(0, 0, 12, 10))]),
        (2, "Muscle", [_contour(series, 2, _box(2, 2, 10, 8)), _contour(series, 2, _box(4, 4, 8, 6))]),
        (3, "VAT", [_contour(series, 2, _box(4, 4, 8, 6))]),
    ]
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", rois)
    with pytest.raises(
        DataError, match=r"has no ROI named 'imat' \(its ROIs: 1 'SAT', 2 'Muscle', 3 'VAT'\)"
    ):
        ct_dataset(split="train", cases={"train": [{"image": str(single), "label": str(rtstruct)}]})
    with pytest.warns(
        UserWarning, match=r"ROIs overlap \('sat' over 'muscle' on 40 pixels; 'sat' over 'vat' on 8"
    ):
        dataset = ct_dataset(
            split="train",
            cases={"train": [{"image": str(single), "label": str(rtstruct)}]},
            class_names=["muscle", "vat", "sat"],
            label_values={"muscle": 1, "vat": 3, "sat": 4},
        )
    assert len(dataset) == 1
    onehot = dataset[0]["label"].numpy().astype(bool)  # (classes, rows, columns)
    # SAT is listed last, so it keeps every pixel of its outline: the whole slice. Listed first instead
    # (in class_names), muscle and VAT are drawn over it.
    assert onehot.shape == (3, ROWS, COLUMNS) and onehot[2].all() and not onehot[:2].any()
    with pytest.warns(
        UserWarning, match=r"ROIs overlap \('muscle' over 'sat' on 40 pixels; 'vat' over 'sat' on 8"
    ):
        inner = (
            ct_dataset(
                split="train",
                cases={"train": [{"image": str(single), "label": str(rtstruct)}]},
                class_names=["sat", "muscle", "vat"],
            )[0]["label"]
            .numpy()
            .astype(bool)
        )
    expected_muscle = np.zeros((ROWS, COLUMNS), bool)
    expected_muscle[2:10, 2:8] = True
    expected_muscle[4:8, 4:6] = False  # muscle's hole, which VAT fills
    assert np.array_equal(inner[1], expected_muscle)
    assert inner[2].sum() == 8 and inner[2][4:8, 4:6].all()
    assert np.array_equal(inner[0], ~(inner[1] | inner[2]))


def test_a_contour_too_long_for_explicit_vr_stored_as_un_is_read(tmp_path: Path) -> None:
    # pydicom itself, writing explicit VR, stores a DS value over 64 KiB as UN (with a warning):
    # such files exist, from scripts that contour large regions. 3,000 points on a circle.
    series = _series(tmp_path / "series")
    angles = np.linspace(0, 2 * np.pi, 3000, endpoint=False)
    circle = np.column_stack([5.5 + 4.2 * np.cos(angles), 4.5 + 3.7 * np.sin(angles)])
    with pytest.warns(UserWarning, match=r"exceeds the size of 64 kByte"):
        rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", [(1, "liver", [_contour(series, 2, circle)])])
    stored = pydicom.dcmread(rtstruct).ROIContourSequence[0].ContourSequence[0]
    assert stored.get_item(0x30060050).VR == "UN"
    volume = DicomRtStructVolume(rtstruct, reference=DicomVolume(series), roi_values={"liver": 1})
    rows, columns = np.mgrid[:ROWS, :COLUMNS]
    inside = ((rows - 5.5) / 4.2) ** 2 + ((columns - 4.5) / 3.7) ** 2 < 1
    # Every centre lies at least 0.04 pixels off the ellipse, the polygon within 1e-5 of it.
    assert np.array_equal(volume.read(2).astype(bool), inside)


def test_contour_data_that_are_not_numbers_are_refused(tmp_path: Path) -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    series = _series(tmp_path / "series")
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", [(1, "liver", [_contour(series, 1, _box(1, 1, 4, 4))])])
    ds = pydicom.dcmread(rtstruct)
    text = b"1.5\\2.5\\3.5\\x\\2\\3\\4\\5\\6 "
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    contour[0x30060050] = RawDataElement(Tag(0x30060050), "DS", len(text), text, 0, False, True)
    ds.save_as(rtstruct)
    with pytest.raises(
        DataError, match=r"ROI 1 'liver', contour 1 has ContourData that are not decimal numbers"
    ):
        DicomRtStructVolume(rtstruct, reference=DicomVolume(series), roi_values={"liver": 1})


def test_a_series_without_pixel_spacing_is_refused(tmp_path: Path) -> None:
    # Its 1 mm pixels are the reader's assumption: contours in millimetres would land elsewhere.
    series = _series(tmp_path / "series")
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", [(1, "liver", [_contour(series, 1, _box(1, 1, 4, 4))])])
    for path in series.iterdir():
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    with pytest.raises(DataError, match=r"states no patient geometry"):
        DicomRtStructVolume(rtstruct, reference=DicomVolume(series), roi_values={"liver": 1})


def test_a_dataset_of_rtstruct_labels_pickles_for_workers(tmp_path: Path) -> None:
    # DataLoader workers started by spawn or forkserver get the dataset pickled: the filled label
    # map stays behind (as every volume's decoded array does), the polygons travel, and the worker
    # fills the same labels, reoriented as the parent's.
    import pickle

    series = _series(tmp_path / "series", orientation=SAGITTAL)
    rois, _ = _drawn(series)
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", rois)
    dataset = ct_dataset(
        split="train",
        cases={"train": [{"image": str(series), "label": str(rtstruct)}]},
        class_names=["liver", "spleen"],
        orientation="LPS",
    )
    expected = [dataset[i]["label"].numpy() for i in range(len(dataset))]
    copy = pickle.loads(pickle.dumps(dataset))
    assert all(np.array_equal(copy[i]["label"].numpy(), expected[i]) for i in range(len(copy)))


def test_the_reference_must_be_the_series_as_stored(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    rtstruct = _rtstruct(tmp_path / "rtstruct.dcm", [(1, "liver", [])])
    reoriented = DicomVolume(series)
    reoriented.reorient("SAR")
    with pytest.raises(ValueError, match=r"DicomRtStructVolume: open the reference series as stored"):
        DicomRtStructVolume(rtstruct, reference=reoriented, roi_values={"liver": 1})
    twin = nifti_on_series(series, np.zeros((ROWS, COLUMNS, SLICES), np.uint8), tmp_path / "twin.nii.gz")
    from inpaintssl.data.readers import NiftiVolume

    with pytest.raises(
        TypeError, match=r"DicomRtStructVolume: reference is a NiftiVolume; expected the DicomVolume"
    ):
        DicomRtStructVolume(rtstruct, reference=NiftiVolume(twin), roi_values={"liver": 1})
