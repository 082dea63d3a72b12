"""A slice whose ImagePositionPatient is shifted within its plane, off the series' one affine.

Such a series is evenly spaced along the normal, so the step check passes it, but the affine
(from the first and last slices) puts the shifted slice where it is not. An RT Structure Set's
contours are placed by each slice's own header, and must be read back so: the contours here are
computed by hand from each slice's ImagePositionPatient, ImageOrientationPatient and
PixelSpacing (read with pydicom alone, :func:`dicom_helpers.slice_planes`), never through the
library. :class:`DicomVolume` reads the series with a warning naming the slice and its offset.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from dicom_helpers import slice_planes, write_enhanced, write_rtstruct, write_series
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.dicom_rtstruct import DicomRtStructVolume

pydicom = pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 10, 12, 5
SPACING = (0.5, 0.75)  # PixelSpacing (between rows, between columns): dicom_helpers' default
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
OBLIQUE = (0.8, 0.6, 0.0, 0.0, 0.0, -1.0)  # rotated 37 degrees about z: every coordinate varies
FRAME = "1.2.3.4"  # the series' FrameOfReferenceUID
SHIFTED = 2  # the slice shifted in-plane
SHIFT_MM = 3.0  # along its rows: 4 columns at 0.75 mm
BOX = (3, 2, 6, 5)  # rows 3-5, columns 2-4 on every slice


def _positions(
    orientation: tuple[float, ...], *, shift: float = SHIFT_MM, steps: list[float] | None = None
) -> list[tuple[float, float, float]]:
    """Slices 2 mm apart along the normal (or at ``steps`` mm), slice :data:`SHIFTED` moved ``shift``
    mm along its row direction."""
    row_direction = np.array(orientation[:3])
    normal = np.cross(orientation[:3], orientation[3:])
    along = [2.0 * k for k in range(SLICES)] if steps is None else steps
    return [
        tuple(np.array([-30.0, 12.5, 5.0]) + d * normal + (shift if k == SHIFTED else 0.0) * row_direction)
        for k, d in enumerate(along)
    ]


def _stored() -> np.ndarray:
    return np.random.default_rng(0).integers(-200, 300, (SLICES, ROWS, COLUMNS)).astype(np.int16) + 1024


def _series(
    folder: Path, positions: list[tuple[float, float, float]], orientation: tuple[float, ...]
) -> Path:
    return write_series(
        folder,
        _stored(),
        modality="CT",
        positions=positions,
        orientation=orientation,
        rescale=[(1.0, -1024.0)] * SLICES,
        identity={"FrameOfReferenceUID": FRAME},
    )


def _open(series: Path) -> DicomVolume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shifted (or uneven) series' own warning, tested below
        return DicomVolume(series)


def _box_contours(series_files: list[Path], *, referenced: bool) -> list[dict[str, object]]:
    """:data:`BOX`'s outline on every slice, in mm by DICOM's pixel-to-patient formula (PS3.3
    C.7.6.2.1.1) with that slice's own header: position + column x column spacing x row direction
    + row x row spacing x column direction."""
    top, left, bottom, right = BOX
    corners = np.array([(top, left), (top, right), (bottom, right), (bottom, left)], dtype=float) - 0.5
    contours: list[dict[str, object]] = []
    for key, plane in sorted(slice_planes(series_files).items(), key=lambda kv: int(kv[1]["slice"])):
        rows, columns = corners[:, 0:1], corners[:, 1:2]
        points = (
            plane["position"]
            + columns * plane["spacing"][1] * plane["row"]
            + rows * plane["spacing"][0] * plane["column"]
        )
        contours.append({"points": points, "image": key if referenced else None})
    return contours


def _expected() -> np.ndarray:
    top, left, bottom, right = BOX
    expected = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    expected[top:bottom, left:right, :] = 1
    return expected


def _read(rtstruct: Path, reference: DicomVolume) -> np.ndarray:
    volume = DicomRtStructVolume(rtstruct, reference=reference, roi_values={"liver": 1})
    return np.stack([volume.read(k) for k in range(SLICES)], axis=2)


@pytest.mark.parametrize("orientation", [AXIAL, SAGITTAL, OBLIQUE], ids=["axial", "sagittal", "oblique"])
@pytest.mark.parametrize("referenced", [True, False], ids=["referenced", "by-position"])
def test_contours_on_a_slice_shifted_in_plane_fill_that_slice_where_it_lies(
    tmp_path: Path, orientation: tuple[float, ...], referenced: bool
) -> None:
    series = _series(tmp_path / "series", _positions(orientation), orientation)
    files = sorted(series.glob("*.dcm"))
    rtstruct = write_rtstruct(
        tmp_path / "rt.dcm",
        [(1, "liver", _box_contours(files, referenced=referenced))],
        frame_of_reference=FRAME,
    )
    read = _read(rtstruct, _open(series))
    # The series-wide affine put slice 2's contour 4 columns (3 mm at 0.75 mm) off its pixels.
    assert np.array_equal(read, _expected()), [
        sorted(set(np.nonzero(read[:, :, k])[1].tolist())) for k in range(SLICES)
    ]


def test_an_enhanced_files_shifted_frame_is_filled_where_it_lies(tmp_path: Path) -> None:
    enhanced = tmp_path / "enhanced.dcm"
    order = [2, 0, 4, 1, 3]  # frames out of position order: the shifted one is frame 1
    positions = _positions(AXIAL)
    write_enhanced(
        enhanced,
        _stored()[order],
        modality="CT",
        positions=[positions[k] for k in order],
        rescale=[(1.0, -1024.0)] * SLICES,
        identity={"FrameOfReferenceUID": FRAME},
    )
    rtstruct = write_rtstruct(
        tmp_path / "rt.dcm",
        [(1, "liver", _box_contours([enhanced], referenced=True))],
        frame_of_reference=FRAME,
    )
    assert np.array_equal(_read(rtstruct, _open(enhanced)), _expected())


def test_the_writers_structure_set_of_a_shifted_series_reads_back_exactly(tmp_path: Path) -> None:
    # inference.rtstruct places each slice's contours by its own header; the reader must agree.
    from inpaintssl.inference.rtstruct import write_rtstruct as predicted_rtstruct

    identity = {
        "FrameOfReferenceUID": FRAME,
        "StudyInstanceUID": "1.2.3.5",
        "SeriesInstanceUID": "1.2.3.6",
        "PatientID": "P1",
        "PatientName": "Doe^Jane",
        "StudyDate": "20260102",
        "SeriesNumber": 5,
    }
    series = write_series(
        tmp_path / "series",
        _stored(),
        modality="CT",
        positions=_positions(AXIAL),
        rescale=[(1.0, -1024.0)] * SLICES,
        identity=identity,
    )
    volume = _open(series)
    labels = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    labels[2:7, 3:9, :] = 1
    labels[4, 5, :] = 0  # a hole
    labels[1:3, 8:11, 1:4] = 2
    predicted_rtstruct(labels, volume, tmp_path / "seg.dcm", class_names=["liver", "spleen"])
    read = DicomRtStructVolume(tmp_path / "seg.dcm", reference=volume, roi_values={"liver": 1, "spleen": 2})
    assert np.array_equal(np.stack([read.read(k) for k in range(SLICES)], axis=2), labels)


def test_by_position_contours_after_a_missing_slice_find_their_slice(tmp_path: Path) -> None:
    # The affine's equal steps (first to last) put the slices after the gap between its planes;
    # each slice's own position finds them.
    steps = [0.0, 2.0, 4.0, 8.0, 10.0, 12.0][:SLICES]
    series = _series(tmp_path / "series", _positions(AXIAL, shift=0.0, steps=steps), AXIAL)
    files = sorted(series.glob("*.dcm"))
    rtstruct = write_rtstruct(
        tmp_path / "rt.dcm", [(1, "liver", _box_contours(files, referenced=False))], frame_of_reference=FRAME
    )
    reference = _open(series)
    assert np.array_equal(_read(rtstruct, reference), _expected())
    assert reference.uneven_slices is not None and reference.shifted_slices is None


def _seg_by_position(
    folder: Path, positions: list[tuple[float, float, float]], orientation: tuple[float, ...]
) -> Path:
    """:func:`_expected` as the SEG ``predict`` writes of a series at ``positions`` (``folder/series``),
    its frames' sources then removed, as writers that reference nothing leave them: each frame
    placed by its ``ImagePositionPatient`` alone, which must be its slice's own (checked with
    pydicom)."""
    pytest.importorskip("highdicom", reason="the dicom-seg extra (highdicom) writes the SEG")
    from inpaintssl.inference.dicom_seg import write_dicom_seg

    identity = {"FrameOfReferenceUID": FRAME, "StudyInstanceUID": "1.2.3.5", "SeriesInstanceUID": "1.2.3.6"}
    series = write_series(
        folder / "series",
        _stored(),
        modality="CT",
        positions=positions,
        orientation=orientation,
        rescale=[(1.0, -1024.0)] * SLICES,
        identity=identity,
    )
    seg = folder / "seg.dcm"
    write_dicom_seg(_expected(), _open(series), seg, class_names=["liver"])
    own = np.array([plane["position"] for plane in slice_planes(sorted(series.glob("*.dcm"))).values()])
    ds = pydicom.dcmread(seg)
    assert len(ds.PerFrameFunctionalGroupsSequence) == SLICES
    for group in ds.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence
        position = np.array([float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient])
        assert np.abs(own - position).max(axis=1).min() < 1e-4  # a slice's own position
    ds.save_as(seg)
    return seg


@pytest.mark.parametrize("orientation", [AXIAL, SAGITTAL, OBLIQUE], ids=["axial", "sagittal", "oblique"])
def test_a_seg_frame_placed_by_position_on_a_shifted_slice_lands_on_it(
    tmp_path: Path, orientation: tuple[float, ...]
) -> None:
    # The series-wide affine put slice 2's position 4 columns off it, so its frame was refused
    # as lying on no slice of the series.
    from inpaintssl.data.dicom_seg import DicomSegVolume

    seg = _seg_by_position(tmp_path, _positions(orientation), orientation)
    volume = DicomSegVolume(seg, reference=_open(tmp_path / "series"))
    assert np.array_equal(np.stack([volume.read(k) for k in range(SLICES)], axis=2), _expected())


def test_seg_frames_placed_by_position_after_a_missing_slice_find_their_slice(tmp_path: Path) -> None:
    # The affine's equal steps (first to last) put the slices after the gap between its planes.
    from inpaintssl.data.dicom_seg import DicomSegVolume

    steps = [0.0, 2.0, 4.0, 8.0, 10.0]
    seg = _seg_by_position(tmp_path, _positions(AXIAL, shift=0.0, steps=steps), AXIAL)
    reference = _open(tmp_path / "series")
    assert reference.uneven_slices is not None
    volume = DicomSegVolume(seg, reference=reference)
    assert np.array_equal(np.stack([volume.read(k) for k in range(SLICES)], axis=2), _expected())


def test_a_slice_shifted_in_plane_is_read_with_a_warning_naming_it(tmp_path: Path) -> None:
    series = _series(tmp_path / "series", _positions(AXIAL), AXIAL)
    with pytest.warns(UserWarning) as caught:
        volume = DicomVolume(series)
    where = (
        f"DICOM series folder {series}: slice im2.dcm (slice 3 of 5 along the normal) has "
        "ImagePositionPatient [-27, 12.5, 9], 3 mm within its plane (+0 rows, +4 columns) off the line "
        "from the first slice's position to the last's, on which the series' one affine puts every slice"
    )
    assert volume.shifted_slices is not None and volume.shifted_slices.startswith(where)
    assert volume.uneven_slices is None  # evenly spaced along the normal
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(where)
    assert message.endswith(
        "but a NIfTI image or label map written with the series' one affine (patient_affine, as "
        "predict's NIfTI output is) puts that slice's pixels that far from where they were scanned"
    )
    # Still a volume of its slices as stored; each slice's own geometry says where slice 2 lies.
    assert volume.stored_shape == (ROWS, COLUMNS, SLICES)
    planes = volume.slice_pixel_to_patient()
    assert planes is not None and planes.shape == (SLICES, 3, 4)
    assert np.allclose(planes[SHIFTED, :, 3], [-27.0, 12.5, 9.0])
    assert np.allclose(planes[0, :, :2], [[0.0, 0.75], [0.5, 0.0], [0.0, 0.0]])


def test_two_shifted_slices_name_the_furthest_and_count_the_other(tmp_path: Path) -> None:
    positions = _positions(SAGITTAL, shift=-1.5)  # along y: 2 columns
    positions[3] = (positions[3][0], positions[3][1], positions[3][2] + 2.0)  # down z: -4 rows
    series = _series(tmp_path / "series", positions, SAGITTAL)
    with pytest.warns(UserWarning) as caught:
        DicomVolume(series)
    (message,) = [str(w.message) for w in caught]
    assert "slice im3.dcm (slice 4 of 5 along the normal)" in message
    assert "2 mm within its plane (-4 rows, +0 columns)" in message
    assert "; 1 more slice(s) lie off it by over 0.05 mm" in message


@pytest.mark.parametrize(
    "name",
    ["regular", "gantry-tilt", "missing-slice", "rounded-oblique", "below-tolerance"],
)
def test_slices_on_the_affines_line_are_read_without_the_warning(tmp_path: Path, name: str) -> None:
    orientation = OBLIQUE if name == "rounded-oblique" else AXIAL
    positions = _positions(orientation, shift=0.04 if name == "below-tolerance" else 0.0)
    if name == "gantry-tilt":  # each slice further back, along the line the sheared affine steps
        tilt = np.tan(np.deg2rad(15))
        positions = [(x, y + 2.0 * k * tilt, z) for k, (x, y, z) in enumerate(positions)]
    if name == "missing-slice":
        positions = _positions(AXIAL, shift=0.0, steps=[0.0, 2.0, 4.0, 8.0, 10.0])
    if name == "rounded-oblique":  # positions written to two decimals, as many scanners do
        positions = [tuple(round(v, 2) for v in p) for p in positions]  # type: ignore[misc]
        positions = [
            (x + 0.0049, y - 0.0049, z) if k == 2 else (x, y, z) for k, (x, y, z) in enumerate(positions)
        ]
    series = _series(tmp_path / "series", positions, orientation)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = DicomVolume(series)
    assert volume.shifted_slices is None
    assert not [w for w in caught if "within its plane" in str(w.message)]
    assert [w for w in caught if "missing slice" in str(w.message)] == (
        caught if name == "missing-slice" else []
    )


def test_a_shift_just_beyond_a_tenth_of_a_pixel_is_reported(tmp_path: Path) -> None:
    # A tenth of the finer pixel spacing (0.5 mm rows): 0.05 mm; 0.06 mm along the rows is beyond.
    series = _series(tmp_path / "series", _positions(AXIAL, shift=0.06), AXIAL)
    with pytest.warns(
        UserWarning, match=r"slice im2\.dcm .* 0\.06 mm within its plane \(\+0 rows, \+0\.08 columns\)"
    ):
        volume = DicomVolume(series)
    assert volume.shifted_slices is not None
