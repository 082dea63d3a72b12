"""A DICOM folder is read as one series: other series, planes or repeated positions are refused."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_builders import write_dicom_slice

from dicom_helpers import write_enhanced, write_mr_slice
from inpaintssl.data.base import DataError
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.readers import DicomVolume

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # slice normal +y (posterior)
T1_UID, T2_UID = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


def _slices(folder: Path, prefix: str, positions: list[float], **tags: Any) -> list[np.ndarray]:
    """Axial slices ``prefix0.dcm``... at z = ``positions``; returns the stored pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(prefix) + len(positions))
    stored = []
    for k, z in enumerate(positions):
        pixels = rng.integers(-500, 500, (2, 3)).astype(np.int16)
        write_dicom_slice(
            folder / f"{prefix}{k}.dcm", pixels, slope=1.0, intercept=0.0, z=z, instance=k + 1, **tags
        )
        stored.append(pixels)
    return stored


def test_two_series_at_the_same_positions_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mr"
    t1 = {"series_uid": T1_UID, "series_description": "T1 axial", "series_number": 3}
    stored = _slices(folder, "t1_", [5.0, 0.0, 2.5], **t1)
    alone = DicomVolume(folder)
    # Sorted along +z: 0.0 (t1_1), 2.5 (t1_2), 5.0 (t1_0); the 2.5 mm step is the slice spacing.
    assert alone.num_slices == 3 and alone.spacing == pytest.approx((0.7, 0.8, 2.5))
    for index, k in enumerate([1, 2, 0]):
        assert np.array_equal(alone.read(index), stored[k].astype(np.float32))
    t2 = {"series_uid": T2_UID, "series_description": "T2 axial", "series_number": 4}
    _slices(folder, "t2_", [0.0, 2.5, 5.0, 7.5], **t2)
    with pytest.raises(DataError) as caught:
        DicomVolume(folder)
    message = str(caught.value)
    assert f"DICOM series folder {folder} holds 2 series" in message
    assert f"SeriesInstanceUID {T1_UID} (SeriesDescription 'T1 axial', SeriesNumber 3): 3 file(s)" in message
    assert f"SeriesInstanceUID {T2_UID} (SeriesDescription 'T2 axial', SeriesNumber 4): 4 file(s)" in message
    assert "expected one series per folder" in message
    # The dataset refuses it too, rather than training on 7 stacked slices.
    with pytest.raises(DataError, match="holds 2 series"):
        ct_dataset(split="unlabelled", labelled=False, cases=str(folder))


def test_a_colour_slice_is_refused_where_the_series_is_opened(tmp_path: Path) -> None:
    import pydicom

    folder = tmp_path / "ct"
    _slices(folder, "s", [0.0, 2.5])
    colour = pydicom.dcmread(folder / "s1.dcm")
    colour.SamplesPerPixel, colour.PhotometricInterpretation = 3, "RGB"
    colour.save_as(folder / "s1.dcm")
    with pytest.raises(
        DataError,
        match=r"DICOM file .*s1\.dcm is a colour image \(SamplesPerPixel 3, PhotometricInterpretation RGB\); "
        r"expected a greyscale MR or CT slice",
    ):
        DicomVolume(folder)


def test_a_monochrome1_slice_is_read_as_stored_not_inverted(tmp_path: Path) -> None:
    import pydicom

    folder = tmp_path / "ct"
    stored = _slices(folder, "s", [0.0, 2.5])
    plain = [DicomVolume(folder).read(k) for k in range(2)]
    # MONOCHROME1 says "draw low values bright"; HU are the stored values through the modality
    # LUT whatever the display, so the volume reads the same numbers as pydicom's modality LUT.
    for k in range(2):
        ds = pydicom.dcmread(folder / f"s{k}.dcm")
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(folder / f"s{k}.dcm")
    inverted_display = DicomVolume(folder)
    try:
        from pydicom.pixels import apply_modality_lut
    except ModuleNotFoundError:  # pydicom 3.0 moved it to pydicom.pixels
        from pydicom.pixel_data_handlers.util import apply_modality_lut  # type: ignore[no-redef]

    for k in range(2):
        ds = pydicom.dcmread(folder / f"s{k}.dcm")
        assert np.array_equal(inverted_display.read(k), apply_modality_lut(ds.pixel_array, ds))
        assert np.array_equal(inverted_display.read(k), plain[k])
        assert np.array_equal(inverted_display.read(k), stored[k].astype(np.float32))


def test_a_slice_with_another_pixel_spacing_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    _slices(folder, "s", [0.0, 2.5])
    write_dicom_slice(
        folder / "s2.dcm",
        np.zeros((2, 3), np.int16),
        slope=1.0,
        intercept=0.0,
        z=5.0,
        instance=3,
        pixel_spacing=(0.7, 0.9),
    )
    with pytest.raises(
        DataError,
        match=r"DICOM file .*s2\.dcm has PixelSpacing 0\.7 x 0\.9 mm but the series .* has 0\.7 x 0\.8 mm "
        r"\(its first slice, s0\.dcm\); expected one pixel spacing per series",
    ):
        DicomVolume(folder)


def test_a_series_that_states_no_slice_spacing_warns_that_1_mm_is_assumed(tmp_path: Path) -> None:
    import pydicom

    folder = tmp_path / "mr"
    _slices(folder, "s", [0.0, 2.5, 5.0])
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        for tag in ("ImagePositionPatient", "SliceThickness", "SpacingBetweenSlices"):
            if tag in ds:
                delattr(ds, tag)
        ds.save_as(f)
    with pytest.warns(UserWarning, match=r"DICOM series .*mr states no slice spacing .*1 mm is assumed"):
        volume = DicomVolume(folder)
    assert volume.spacing == pytest.approx((0.7, 0.8, 1.0))
    # One slice has no slice axis to measure: nothing to warn about.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DicomVolume(folder / "s0.dcm")


def test_an_axial_and_a_coronal_series_are_refused_by_their_uids(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    _slices(folder, "ax", [0.0, 2.5], series_uid=T1_UID)
    write_dicom_slice(
        folder / "cor0.dcm",
        np.zeros((2, 3), np.int16),
        slope=1.0,
        intercept=0.0,
        z=0.0,
        instance=1,
        orientation=CORONAL,
        position=(0.0, 10.0, 0.0),
        series_uid=T2_UID,
    )
    with pytest.raises(
        DataError, match=rf"{T1_UID}: 2 file\(s\), e\.g\. ax0\.dcm; SeriesInstanceUID {T2_UID}: 1"
    ):
        DicomVolume(folder)


def test_files_with_and_without_a_series_uid_are_two_series(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    _slices(folder, "a", [0.0, 2.5], series_uid=T1_UID)
    _slices(folder, "b", [5.0])
    with pytest.raises(DataError, match=r"files without SeriesInstanceUID: 1 file\(s\), e\.g\. b0\.dcm"):
        DicomVolume(folder)


def test_slices_of_another_plane_without_uids_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    _slices(folder, "a", [0.0, 2.5])
    # A scanner's rounding of the same plane, 2e-5 off in one cosine, is the same orientation.
    _slices(folder, "r", [5.0], orientation=(1.0, 0.0, 0.0, 0.0, 0.99998, 0.0))
    assert DicomVolume(folder).num_slices == 3
    write_dicom_slice(
        folder / "b0.dcm",
        np.zeros((2, 3), np.int16),
        slope=1.0,
        intercept=0.0,
        z=0.0,
        instance=3,
        orientation=CORONAL,
        position=(0.0, 10.0, 0.0),
    )
    expected = (
        rf"DICOM file {folder / 'b0.dcm'} has ImageOrientationPatient \[1, 0, 0, 0, 0, -1\] but "
        rf"{folder / 'a0.dcm'} has ImageOrientationPatient \[1, 0, 0, 0, 1, 0\] .* one orientation per series"
    )
    with pytest.raises(DataError, match=expected):
        DicomVolume(folder)


def test_two_slices_at_one_position_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    _slices(folder, "im", [0.0, 2.5, 5.0], series_uid=T1_UID)
    assert DicomVolume(folder).num_slices == 3
    # Another echo of the same series at z = 2.5: the same position along the +z normal.
    write_dicom_slice(
        folder / "im9.dcm",
        np.zeros((2, 3), np.int16),
        slope=1,
        intercept=0,
        z=2.5,
        instance=9,
        series_uid=T1_UID,
    )
    expected = (
        rf"DICOM files {folder / 'im1.dcm'} and {folder / 'im9.dcm'} are both at 2\.5 mm along the slice "
        r"normal .* expected one slice per position"
    )
    with pytest.raises(DataError, match=expected):
        DicomVolume(folder)


def test_a_copied_slice_without_uids_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    _slices(folder, "im", [0.0, 2.5])
    (folder / "im1 copy.dcm").write_bytes((folder / "im1.dcm").read_bytes())
    with pytest.raises(DataError, match=r"im1 copy\.dcm and .*im1\.dcm are both at 2\.5 mm"):
        DicomVolume(folder)


def test_a_series_where_only_some_slices_state_their_position_is_refused(tmp_path: Path) -> None:
    import pydicom

    folder = tmp_path / "s"
    # im0 at z = 10 mm (InstanceNumber 1) and im1 at z = 20 mm (InstanceNumber 2): sorted by one key
    # they are im0, im1. Without im1's position, 10 (mm) and 2 (a count) would put im1 first.
    _slices(folder, "im", [10.0, 20.0])
    assert DicomVolume(folder).files == (str(folder / "im0.dcm"), str(folder / "im1.dcm"))
    ds = pydicom.dcmread(folder / "im1.dcm")
    del ds.ImagePositionPatient
    ds.save_as(folder / "im1.dcm")
    expected = (
        rf"DICOM file {folder / 'im1.dcm'} has no ImagePositionPatient or ImageOrientationPatient but "
        rf"{folder / 'im0.dcm'} has both \(1 of 2 slices lack them, series folder {folder}\); expected every "
        "slice of a series to state its position, or none"
    )
    with pytest.raises(DataError, match=expected):
        DicomVolume(folder)
    # With no slice stating a position, InstanceNumber orders them.
    ds = pydicom.dcmread(folder / "im0.dcm")
    del ds.ImagePositionPatient
    ds.save_as(folder / "im0.dcm")
    assert DicomVolume(folder).files == (str(folder / "im0.dcm"), str(folder / "im1.dcm"))


def _edit(folder: Path, **tags: Any) -> None:
    """Set (or, given ``None``, delete) ``tags`` in every slice of ``folder``, as a scanner writes them."""
    for path in sorted(folder.glob("*.dcm")):
        _edit_one(path, **tags)


def _edit_one(path: Path, **tags: Any) -> None:
    """Set (or, given ``None``, delete) ``tags`` in the slice ``path``."""
    import pydicom

    ds = pydicom.dcmread(path)
    for tag, value in tags.items():
        if value is None:
            delattr(ds, tag)
        else:
            setattr(ds, tag, value)
    ds.save_as(path)


def test_a_series_without_orientation_takes_its_slice_spacing_from_its_tags(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    # 5 mm slices at z = 0, 6, 12, 18 (1 mm gaps), positions stated but no ImageOrientationPatient.
    _slices(folder, "im", [0.0, 6.0, 12.0, 18.0], thickness=5.0)
    _edit(folder, ImageOrientationPatient=None, SpacingBetweenSlices="6")
    volume = DicomVolume(folder)
    # Without a normal to project the positions on, the slices sort by InstanceNumber, whose unit
    # step is no spacing: SpacingBetweenSlices is (not 1 mm, which made every volume in mL 6x too small).
    assert volume.spacing == pytest.approx((0.7, 0.8, 6.0))
    assert volume.files == tuple(str(folder / f"im{k}.dcm") for k in range(4))
    assert volume.patient_affine is None
    _edit(folder, SpacingBetweenSlices=None)
    assert DicomVolume(folder).spacing == pytest.approx((0.7, 0.8, 5.0))  # then SliceThickness


def test_a_missing_slice_is_read_with_a_warning_naming_where_the_spacing_breaks(tmp_path: Path) -> None:
    folder = tmp_path / "gap"
    _slices(folder, "im", [0.0, 2.5, 5.0, 10.0, 12.5])  # the slice at 7.5 mm is missing
    with pytest.warns(UserWarning) as caught:
        volume = DicomVolume(folder)
    where = (
        f"DICOM series folder {folder}: slices im2.dcm and im3.dcm at 5 and 10 mm along the slice "
        "normal are 5 mm apart where the series' other slices are 2.5 mm apart (steps between "
        "neighbouring slices: 2.5 mm (3x), 5 mm (1x)): a missing slice or a series of mixed spacing"
    )
    assert volume.uneven_slices is not None and volume.uneven_slices.startswith(where)
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(where) and "volumes in mL along the slice axis are approximate" in message
    # A 2D network reads every slice as it is.
    assert volume.num_slices == 5 and volume.spacing[2] == pytest.approx(2.5)


def _read_quietly(folder: Path) -> DicomVolume:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return DicomVolume(folder)


def test_mixed_spacing_is_uneven_and_rounding_is_not(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    _slices(mixed, "im", [0.0, 2.5, 5.0, 7.5, 8.5, 9.5])  # 2.5 mm slices, then 1 mm ones
    uneven = r"slices im3\.dcm and im4\.dcm at 7\.5 and 8\.5 mm .* are 1 mm apart"
    with pytest.warns(UserWarning, match=uneven):
        DicomVolume(mixed)
    # Within 1 % of the 2.5 mm step (positions rounded to two decimals): one regular grid.
    rounded = tmp_path / "rounded"
    _slices(rounded, "im", [0.0, 2.5, 5.01, 7.52])
    volume = _read_quietly(rounded)
    assert volume.uneven_slices is None and volume.spacing[2] == pytest.approx(2.51)
    beyond = tmp_path / "beyond"
    _slices(beyond, "im", [0.0, 2.5, 5.0, 7.53])  # 2.53 mm, 1.2 % off
    with pytest.warns(UserWarning, match=r"are 2\.53 mm apart where the series' other slices are 2\.5 mm"):
        DicomVolume(beyond)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_a_multi_frame_file_without_per_frame_groups_is_refused_naming_it(
    tmp_path: Path, modality: str
) -> None:
    from pydicom.uid import EnhancedCTImageStorage, EnhancedMRImageStorage

    from inpaintssl.data.readers import open_volume

    folder = tmp_path / "enhanced"
    _slices(folder, "mf", [0.0])
    # Enhanced CT/MR: three frames in one file, their geometry and rescale in functional groups
    # (left out here), none at the top level where single-frame slices have them.
    storage = EnhancedCTImageStorage if modality == "CT" else EnhancedMRImageStorage
    frames = np.arange(18, dtype="<i2").reshape(3, 2, 3)
    _edit(
        folder,
        Modality=modality,
        SOPClassUID=storage,
        NumberOfFrames=3,
        PixelData=frames.tobytes(),
        RescaleSlope=None,
        RescaleIntercept=None,
        PixelSpacing=None,
        ImagePositionPatient=None,
        ImageOrientationPatient=None,
    )
    path = folder / "mf0.dcm"
    expected = (
        f"DICOM file {path} holds 3 frames (NumberOfFrames) without per-frame functional groups "
        "(PerFrameFunctionalGroupsSequence, as Enhanced CT and MR files state each frame's position in): "
        "where each frame lies is unknown; convert it to single-frame DICOM or NIfTI first (e.g. dcm2niix)"
    )
    for opened in (folder, path):
        with pytest.raises(DataError) as caught:
            open_volume(opened)
        assert str(caught.value) == expected


def test_a_file_that_is_not_dicom_is_named_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    _slices(folder, "im", [0.0, 2.5])
    (folder / "notes.txt").write_text("scan notes: patient moved during the last slices")
    with pytest.raises(DataError) as caught:
        DicomVolume(folder)
    assert str(caught.value) == (
        f"DICOM file {folder / 'notes.txt'} cannot be read: it is not a DICOM file (no DICM preamble); "
        f"remove non-DICOM files from the series folder {folder}"
    )
    # Given on its own (a web page saved as .dcm), the file is named with what was expected.
    (tmp_path / "l3.dcm").write_text("<html><body>404 Not Found</body></html>\n")
    with pytest.raises(
        DataError, match=r"l3\.dcm cannot be read: it is not a DICOM file .*; expected a DICOM"
    ):
        DicomVolume(tmp_path / "l3.dcm")
    # A DICOM file cut short after its preamble is DICOM, damaged: pydicom's own error says so.
    (folder / "notes.txt").unlink()
    (folder / "im1.dcm").write_bytes((folder / "im1.dcm").read_bytes()[:200])
    with pytest.raises(
        DataError, match=rf"DICOM file {folder / 'im1.dcm'} (cannot be read|has no Rows)"
    ) as cut:
        DicomVolume(folder)
    assert "not a DICOM file" not in str(cut.value)


def test_undecodable_pixel_data_is_refused_in_the_readers_own_words(tmp_path: Path) -> None:
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    folder = tmp_path / "s"
    _slices(folder, "im", [0.0, 2.5])
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        # JPEG-LS needs a plugin (GDCM from the dicom-compressed extra, pyjpegls or pylibjpeg); without
        # one nothing is decoded (test_data_dicom_compressed.py checks that message), and with one
        # these few bytes are no image: either way refused.
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 40])
        ds["PixelData"].VR = "OB"
        ds.save_as(path)
    volume = DicomVolume(folder)  # the headers are fine
    with pytest.raises(DataError) as caught:
        volume.read(0)
    message = str(caught.value)
    # The DICOM reader's own message, not re-wrapped as "truncated or corrupt data?".
    assert message.startswith(f"DICOM file {folder / 'im0.dcm'} cannot be read: "), message
    assert "truncated or corrupt" not in message


@pytest.mark.parametrize(
    ("pixel_spacing", "shown"),
    [
        (("0.7",), "0.7 (1 value(s))"),
        (("0.5", "0.75", "1"), "0.5\\0.75\\1 (3 value(s))"),
        (("0", "0.7"), "0\\0.7 (2 value(s))"),
    ],
)
def test_a_pixel_spacing_that_is_not_two_sizes_is_refused_naming_the_file(
    tmp_path: Path, pixel_spacing: tuple[str, ...], shown: str
) -> None:
    # One value escaped as a bare TypeError (len of a number); three were read as 1 mm while the
    # series still counted as stating its geometry.
    for k in range(2):
        write_mr_slice(tmp_path / f"m{k}.dcm", np.ones((2, 3)), z=2.0 * k, instance=k + 1)
    write_mr_slice(tmp_path / "m2.dcm", np.ones((2, 3)), z=4.0, instance=3, pixel_spacing=pixel_spacing)  # type: ignore[arg-type]
    with pytest.raises(
        DataError, match=rf"DICOM file .*m2\.dcm: PixelSpacing is {re.escape(shown)}; expected two sizes > 0"
    ):
        DicomVolume(tmp_path)


def _bad_position(folder: Path, tag: str) -> None:
    """Three axial slices, the middle one's ``tag`` holding a value that is no number."""
    _slices(folder, "s", [0.0, 7.125, 14.25])
    path = folder / "s1.dcm"
    if tag == "ImagePositionPatient":
        stored, bad = b"7.125", b"n/a  "
    else:
        _edit_one(path, ImageOrientationPatient=["1", "0", "0", "0", "1", "0.125"])
        stored, bad = b"0.125", b"x.777"
    data = path.read_bytes()
    assert data.count(stored) == 1
    path.write_bytes(data.replace(stored, bad))


@pytest.mark.parametrize(
    ("tag", "value", "told"),
    [
        # NumPy's "shapes (3,) and (2,) not aligned" and float()'s "could not convert", naming nothing.
        ("ImagePositionPatient", ["0", "0"], r"ImagePositionPatient is 0\\0; expected 3 finite numbers"),
        ("ImagePositionPatient", "text", r"ImagePositionPatient is 0\\0\\n/a; expected 3 finite numbers"),
        ("ImageOrientationPatient", "text", r"ImageOrientationPatient is 1\\0\\0\\0\\1\\x\.777; expected 6"),
        (
            "ImageOrientationPatient",
            ["1", "0", "0", "0", "1"],
            r"ImageOrientationPatient is 1\\0\\0\\0\\1; expected 6",
        ),
    ],
)
def test_a_slice_position_or_orientation_that_is_no_numbers_is_refused_naming_the_file_and_tag(
    tmp_path: Path, tag: str, value: Any, told: str
) -> None:
    if value == "text":
        _bad_position(tmp_path, tag)
    else:
        _slices(tmp_path, "s", [0.0, 2.0, 4.0])
        _edit_one(tmp_path / "s1.dcm", **{tag: value})
    with pytest.raises(DataError, match=rf"^DICOM file {re.escape(str(tmp_path / 's1.dcm'))}: {told}"):
        DicomVolume(tmp_path)


@pytest.mark.parametrize(
    ("orientation", "slices"),
    [((0, 0, 0, 0, 0, 0), 3), ((1, 0, 0, 1, 0, 0), 3), ((0, 0, 0, 0, 0, 0), 1), ((1, 0, 0, 0, 0.5, 0), 1)],
)
def test_an_orientation_of_no_two_perpendicular_unit_vectors_is_refused(
    tmp_path: Path, orientation: tuple[float, ...], slices: int
) -> None:
    # Zeros put every slice at 0 mm along a zero normal: refused as repeated acquisitions, or, alone,
    # read with an all-zero affine that an RTSTRUCT label then failed to invert (LinAlgError).
    _slices(tmp_path, "s", [2.0 * k for k in range(slices)], orientation=orientation)
    with pytest.raises(
        DataError,
        match=r"^DICOM file .*s0\.dcm: ImageOrientationPatient \[.*\] holds row and column cosines .*; "
        r"expected two perpendicular unit vectors",
    ):
        DicomVolume(tmp_path)


def _frame_position(frame: int, value: list[str]) -> Callable[[Any], None]:
    """An edit of an Enhanced file: frame ``frame``'s (0-based) ImagePositionPatient set to ``value``."""

    def edit(ds: Any) -> None:
        ds.PerFrameFunctionalGroupsSequence[frame].PlanePositionSequence[0].ImagePositionPatient = value

    return edit


def _shared_orientation(value: list[str]) -> Callable[[Any], None]:
    """An edit of an Enhanced file: the shared ImageOrientationPatient set to ``value``."""

    def edit(ds: Any) -> None:
        ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient = value

    return edit


@pytest.mark.parametrize(
    ("edit", "told"),
    [
        # In the frame's own PlanePositionSequence: NumPy's "shapes not aligned", naming nothing.
        pytest.param(
            _frame_position(1, ["0", "0"]),
            r"\(frame 2\): ImagePositionPatient is 0\\0; expected 3 finite",
            id="two-values",
        ),
        # Read without a word, with NaN in the affine's slice column.
        pytest.param(
            _frame_position(2, ["0", "0", "nan"]),
            r"\(frame 3\): ImagePositionPatient is 0\\0\\nan; expected 3",
            id="nan",
        ),
        # In the shared PlaneOrientationSequence: zeros, which every frame reads.
        pytest.param(
            _shared_orientation(["0"] * 6),
            r"\(frame 1\): ImageOrientationPatient \[0, 0, 0, 0, 0, 0\] holds row and column cosines of "
            r"lengths 0 and 0 with dot product 0; expected two perpendicular unit vectors",
            id="zero-orientation",
        ),
    ],
)
def test_an_enhanced_frame_s_position_or_orientation_is_checked_naming_the_frame(
    tmp_path: Path, edit: Callable[[Any], None], told: str
) -> None:
    path = tmp_path / "enhanced.dcm"
    stored = np.arange(3 * 2 * 3, dtype=np.int16).reshape(3, 2, 3)
    positions = [(0.0, 0.0, 2.0 * k) for k in range(3)]
    write_enhanced(path, stored, modality="MR", positions=positions, edit=edit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own warning on an invalid DS value
        with pytest.raises(DataError, match=rf"^DICOM file {re.escape(str(path))} {told}"):
            DicomVolume(path)


def test_an_orientation_rounded_as_scanners_write_it_is_read(tmp_path: Path) -> None:
    # An oblique plane's cosines to 4 decimals: lengths and dot product off by ~1e-4.
    c, s = round(np.cos(0.3), 4), round(np.sin(0.3), 4)
    _slices(tmp_path, "s", [0.0, 2.0, 4.0], orientation=(1, 0, 0, 0, c, s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert DicomVolume(tmp_path).shape[2] == 3


def test_an_empty_pixel_spacing_states_no_geometry(tmp_path: Path) -> None:
    for k in range(2):
        write_mr_slice(tmp_path / f"m{k}.dcm", np.ones((2, 3)), z=2.0 * k, instance=k + 1, pixel_spacing=())  # type: ignore[arg-type]
    volume = DicomVolume(tmp_path)
    assert not volume.has_geometry
    assert volume.spacing[:2] == (1.0, 1.0)


def test_a_negative_spacing_between_slices_is_taken_as_its_size(tmp_path: Path) -> None:
    # Some CT and NM writers sign SpacingBetweenSlices with a direction; the slices of one file (or
    # of a series without ImageOrientationPatient) still lie that far apart.
    folder = tmp_path / "one"
    _slices(folder, "im", [10.0])
    _edit(folder, SpacingBetweenSlices="-5")
    volume = DicomVolume(folder / "im0.dcm")
    assert volume.spacing == pytest.approx((0.7, 0.8, 5.0))
    # Rows along +x, columns along +y (LPS): the slice normal, row x column, is +z, superior in
    # RAS too; one slice's affine steps 5 mm along it, as the positive value would.
    assert volume.patient_affine is not None
    assert volume.patient_affine[:3, 2] == pytest.approx([0.0, 0.0, 5.0])
    assert volume.stored_orientation is not None and volume.stored_orientation.endswith("S")
    series = tmp_path / "series"
    _slices(series, "im", [0.0, 6.0, 12.0])
    _edit(series, ImageOrientationPatient=None, SpacingBetweenSlices="-6")
    assert DicomVolume(series).spacing == pytest.approx((0.7, 0.8, 6.0))


def _raw_tag(path: Path, written: bytes, raw: bytes) -> None:
    """Replace the one occurrence of ``written`` (a tag's value) in ``path`` by ``raw`` (same length):
    a value pydicom refuses to write, as other writers leave in files."""
    data = path.read_bytes()
    assert data.count(written) == 1 and len(raw) == len(written)
    path.write_bytes(data.replace(written, raw))


@pytest.mark.parametrize("raw", [b"abcd", b"nan ", b"0.0 ", b"-2.0"])
def test_a_slice_thickness_that_is_no_size_is_refused_naming_the_file(tmp_path: Path, raw: bytes) -> None:
    folder = tmp_path / "one"
    _slices(folder, "im", [10.0], thickness=97.5)
    path = folder / "im0.dcm"
    _raw_tag(path, b"97.5", raw)
    shown = raw.decode().strip()
    with pytest.raises(
        DataError,
        match=rf"DICOM file {re.escape(str(path))} has SliceThickness '{re.escape(shown)}'; expected a "
        r"slice spacing > 0 in mm",
    ):
        DicomVolume(path)


def test_an_unusable_spacing_between_slices_falls_back_to_the_slice_thickness(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    _slices(folder, "im", [10.0], thickness=2.5)
    _edit(folder, SpacingBetweenSlices="97.5")
    _raw_tag(folder / "im0.dcm", b"97.5", b"nan ")
    assert DicomVolume(folder / "im0.dcm").spacing == pytest.approx((0.7, 0.8, 2.5))
    # With no usable thickness either, both are named.
    _raw_tag(folder / "im0.dcm", b"2.5 ", b"0.0 ")
    with pytest.raises(
        DataError, match=r"has SpacingBetweenSlices 'nan' and SliceThickness '0\.0'; expected"
    ):
        DicomVolume(folder / "im0.dcm")


def test_a_slice_rewritten_after_the_series_was_opened_is_refused_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    stored = _slices(folder, "im", [0.0, 2.5, 5.0])
    volume = DicomVolume(folder)
    assert np.array_equal(volume.read(1), stored[1].astype(np.float32))  # slope 1, intercept 0
    # Replaced by a slice of another matrix size (a re-export), at the same position.
    write_dicom_slice(
        folder / "im1.dcm", np.full((4, 5), 9, np.int16), slope=3.0, intercept=0.0, z=2.5, instance=2
    )
    with pytest.raises(
        DataError,
        match=rf"DICOM file {re.escape(str(folder / 'im1.dcm'))} holds 4x5 pixels but the series "
        rf"{re.escape(str(folder))} was opened with 2x3 slices: the file changed since the series was opened",
    ):
        volume.read(1)
    # Of the same size, with a RescaleSlope the series would have been refused for when opened.
    write_dicom_slice(folder / "im1.dcm", stored[1], slope=0.0, intercept=-1024.0, z=2.5, instance=2)
    with pytest.raises(DataError, match=r"im1\.dcm has RescaleSlope 0\.0; expected a finite number, not 0"):
        volume.read(1)
    assert np.array_equal(volume.read(2), stored[2].astype(np.float32))  # the others read as before
