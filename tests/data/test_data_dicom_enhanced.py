"""Enhanced (multi-frame) CT and MR DICOM: one file whose frames are a series' slices, with their
geometry and rescale in functional groups (DICOM PS3.3 C.7.6.16). Each file is written with
pydicom, and what it must read as is the same slices written as a classic series, one file per
slice, and the values and spacing worked out here from what was written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dicom_helpers import write_enhanced, write_series
from inpaintssl.data.base import DataError
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.readers import open_volume

ROWS, COLUMNS, SLICES = 6, 5, 4
STEP = 2.5
# A coronal-ish plane tilted about x: the slice normal is not an array axis of the patient frame.
ORIENTATIONS = {
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "tilted": (1.0, 0.0, 0.0, 0.0, 0.6, 0.8),
}


def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    return np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:]))


def _positions(orientation: tuple[float, ...]) -> list[tuple[float, float, float]]:
    origin = np.array([-10.0, 20.0, 5.0])
    return [tuple(float(v) for v in origin + k * STEP * _normal(orientation)) for k in range(SLICES)]  # type: ignore[misc]


def _stored(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-500, 1500, size=(SLICES, ROWS, COLUMNS)).astype(np.int16)


def _slices(volume: DicomVolume) -> list[np.ndarray]:
    return [np.asarray(volume.read(i)) for i in range(volume.num_slices)]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("geometry_in", ["shared", "per_frame"])
@pytest.mark.parametrize("frame_order", ["by-position", "shuffled"])
@pytest.mark.parametrize("modality", ["MR", "CT"])
def test_an_enhanced_file_reads_as_its_slices_written_one_file_each(
    tmp_path: Path, modality: str, frame_order: str, geometry_in: str, orientation: str
) -> None:
    codes = ORIENTATIONS[orientation]
    stored, positions = _stored(1), _positions(codes)
    rescale = [(1.0, -1024.0)] * SLICES if modality == "CT" else None
    order = [2, 0, 3, 1] if frame_order == "shuffled" else list(range(SLICES))
    enhanced = tmp_path / "enhanced.dcm"
    write_enhanced(
        enhanced,
        stored[order],
        modality=modality,
        positions=[positions[k] for k in order],
        orientation=codes,
        rescale=None if rescale is None else [rescale[k] for k in order],
        geometry_in=geometry_in,
    )
    series = write_series(
        tmp_path / "series",
        stored,
        modality=modality,
        positions=positions,
        orientation=codes,
        rescale=rescale,
    )

    classic, frames = DicomVolume(series), DicomVolume(enhanced)

    offset = -1024.0 if modality == "CT" else 0.0
    assert frames.shape == classic.shape == (ROWS, COLUMNS, SLICES)
    assert frames.spacing == pytest.approx(classic.spacing) and frames.spacing == pytest.approx(
        (0.5, 0.75, STEP)
    )
    assert frames.patient_affine is not None and classic.patient_affine is not None
    assert np.allclose(frames.patient_affine, classic.patient_affine)
    assert frames.uneven_slices is None and frames.files == (str(enhanced),)
    for k, (got, same) in enumerate(zip(_slices(frames), _slices(classic), strict=True)):
        assert got.dtype == np.float32 and np.array_equal(got, same)
        assert np.array_equal(got, stored[k].astype(np.float32) + np.float32(offset))  # sorted by position


def test_an_enhanced_file_is_reoriented_as_its_classic_series(tmp_path: Path) -> None:
    codes = ORIENTATIONS["tilted"]
    stored, positions = _stored(2), _positions(codes)
    enhanced = tmp_path / "enhanced.dcm"
    write_enhanced(enhanced, stored[::-1], modality="MR", positions=positions[::-1], orientation=codes)
    series = write_series(tmp_path / "series", stored, modality="MR", positions=positions, orientation=codes)
    frames, classic = open_volume(enhanced), open_volume(series)
    for volume in (frames, classic):
        volume.reorient("RAS", slice_axis=0)  # across the stored slices: the whole series is read
    assert frames.shape == classic.shape and frames.spacing == pytest.approx(classic.spacing)
    for got, same in zip(_slices(frames), _slices(classic), strict=True):  # type: ignore[arg-type]
        assert np.array_equal(got, same)


def test_each_frame_takes_its_own_rescale(tmp_path: Path) -> None:
    stored, positions = _stored(3), _positions(ORIENTATIONS["axial"])
    rescale = [(1.0, -1024.0), (0.5, -1000.0), (2.0, -2048.0), (1.0, 0.0)]
    path = tmp_path / "ct.dcm"
    write_enhanced(path, stored, modality="CT", positions=positions, rescale=rescale)
    volume = DicomVolume(path)
    for k, got in enumerate(_slices(volume)):
        slope, intercept = rescale[k]
        assert np.allclose(got, stored[k] * slope + intercept, rtol=0, atol=1e-3)


def test_an_enhanced_ct_without_rescale_in_any_group_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    write_enhanced(path, _stored(4), modality="CT", positions=_positions(ORIENTATIONS["axial"]))
    with pytest.raises(DataError, match=r"\(Modality CT\) has no RescaleSlope or RescaleIntercept"):
        DicomVolume(path)


def test_frames_of_several_echoes_at_one_position_are_refused_naming_the_frames(tmp_path: Path) -> None:
    positions = _positions(ORIENTATIONS["axial"])[:2]
    # Two echoes of two slices, echo by echo, as a multi-echo Enhanced MR file stores them.
    two_echoes = np.concatenate([_stored(5)[:2], _stored(6)[:2]])
    path = tmp_path / "echoes.dcm"
    write_enhanced(path, two_echoes, modality="MR", positions=positions + positions)
    with pytest.raises(DataError) as caught:
        DicomVolume(path)
    assert re.fullmatch(
        rf"DICOM file {re.escape(str(path))} holds frames 1 and 3 both at 5 mm along the slice normal "
        r".*\(1 more pair\(s\) too\); expected one frame per position: a multi-frame file of several "
        r"echoes, time points or stacks is several volumes; split it .*",
        str(caught.value),
    )


def test_a_per_frame_sequence_that_does_not_count_the_frames_is_refused(tmp_path: Path) -> None:
    import pydicom

    path = tmp_path / "short.dcm"
    write_enhanced(path, _stored(7), modality="MR", positions=_positions(ORIENTATIONS["axial"]))
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = SLICES + 1
    ds.save_as(path)
    with pytest.raises(
        DataError,
        match=rf"^DICOM file {re.escape(str(path))} has {SLICES} item\(s\) in "
        rf"PerFrameFunctionalGroupsSequence but NumberOfFrames {SLICES + 1}; expected one item per frame$",
    ):
        DicomVolume(path)


def test_a_gap_between_frames_is_named_by_frame(tmp_path: Path) -> None:
    positions = _positions(ORIENTATIONS["axial"])
    positions[3] = (positions[3][0], positions[3][1], positions[3][2] + STEP)  # a missing slice
    path = tmp_path / "gap.dcm"
    write_enhanced(path, _stored(8), modality="MR", positions=positions)
    with pytest.warns(
        UserWarning,
        match=r"^DICOM file .*gap\.dcm: slices gap\.dcm \(frame 3\) and gap\.dcm \(frame 4\) at 10 and 15 mm",
    ):
        volume = DicomVolume(path)
    assert volume.uneven_slices is not None


def test_a_folder_of_enhanced_files_of_several_series_says_to_give_each_file(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    positions = _positions(ORIENTATIONS["axial"])
    write_enhanced(folder / "t1.dcm", _stored(9), modality="MR", positions=positions, series_uid="1.2.3.1")
    write_enhanced(folder / "t2.dcm", _stored(10), modality="MR", positions=positions, series_uid="1.2.3.2")
    with pytest.raises(DataError) as caught:
        open_volume(folder)
    assert str(caught.value) == (
        f"DICOM series folder {folder} holds 2 series: SeriesInstanceUID 1.2.3.1: 1 file(s) ({SLICES} "
        f"frames), e.g. t1.dcm; SeriesInstanceUID 1.2.3.2: 1 file(s) ({SLICES} frames), e.g. t2.dcm; "
        "expected one series per folder (it is read as one volume): each series is one Enhanced file: "
        f"give each file on its own (as a predict input or a dataset case), e.g. {folder / '*.dcm'}"
    )
    for name in ("t1.dcm", "t2.dcm"):  # as the message says
        assert open_volume(folder / name).shape == (ROWS, COLUMNS, SLICES)


def test_a_frame_of_another_plane_is_refused_naming_the_frames(tmp_path: Path) -> None:
    import pydicom

    path = tmp_path / "localizer.dcm"
    write_enhanced(
        path, _stored(11), modality="MR", positions=_positions(ORIENTATIONS["axial"]), geometry_in="per_frame"
    )
    ds = pydicom.dcmread(path)
    coronal = [1, 0, 0, 0, 0, -1]  # frame 3, as in a three-plane localizer stored as one file
    ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence[0].ImageOrientationPatient = coronal
    ds.save_as(path)
    with pytest.raises(DataError) as caught:
        DicomVolume(path)
    assert str(caught.value) == (
        f"DICOM file {path} (frame 3) has ImageOrientationPatient [1, 0, 0, 0, 0, -1] but {path} (frame 1) "
        f"has ImageOrientationPatient [1, 0, 0, 0, 1, 0] (file {path}); expected one orientation per series "
        "(within 0.001): a multi-frame file of several planes (a localizer) is no volume"
    )
