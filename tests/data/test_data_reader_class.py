"""Which reader opens a path (``reader_class``), in any letter case, and what that decides: the
reader ``open_volume`` and ``predict`` use, whether the pre-flight check reads it on threads, the
case name. Every file is written with its real library; MetaImage and NRRD, which have none here,
by the tests' writers (checked against files ITK wrote in test_data_metaimage.py and
test_data_nrrd.py)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from data_builders import write_dicom_slice, write_nifti
from PIL import Image

from inpaintssl.data.base import DataError
from inpaintssl.data.cases import case_stem
from inpaintssl.data.metaimage import MetaImageVolume
from inpaintssl.data.nrrd import NrrdVolume
from inpaintssl.data.readers import (
    VOLUME_SUFFIXES,
    DicomVolume,
    H5Volume,
    NiftiVolume,
    NumpyVolume,
    PngVolume,
    Volume,
    open_volume,
    reader_class,
    reads_on_threads,
)
from inpaintssl.inference.inputs import expand_inputs, open_input
from inpaintssl.inference.results import PredictionError
from metaimage_helpers import write_metaimage
from nrrd_helpers import write_nrrd
from predict_helpers import plain_slice_preprocessing

IMAGE = np.random.default_rng(3).normal(100.0, 20.0, size=(6, 5, 4)).astype(np.float32)
MASK = np.random.default_rng(4).integers(0, 5, size=(6, 5)).astype(np.uint8)


def _nifti(path: Path) -> None:
    write_nifti(path, IMAGE, spacing=(0.5, 0.6, 2.0))


def _npy(path: Path) -> None:
    with path.open("wb") as handle:  # np.save would append ".npy" to a name ending in ".NPY"
        np.save(handle, IMAGE)


def _npz(path: Path) -> None:
    with path.open("wb") as handle:
        np.savez(handle, image=IMAGE)


def _h5(path: Path) -> None:
    with h5py.File(path, "w") as handle:
        handle["image"] = IMAGE


def _png(path: Path) -> None:
    Image.fromarray(MASK).save(path, format="PNG")


def _metaimage(path: Path) -> None:
    # The data in the header's own file (LOCAL), so that a copy under another name reads alike.
    write_metaimage(path, IMAGE, spacing=(0.5, 0.6, 2.0), local=True)


def _nrrd(path: Path) -> None:
    # A detached header names its data by absolute path, so that a copy of it reads the same data.
    data = path.with_name(path.name + ".raw").resolve()
    write_nrrd(path, IMAGE, directions=((0.5, 0, 0), (0, 0.6, 0), (0, 0, 2.0)), data_file=str(data))


def _dcm(path: Path) -> None:
    write_dicom_slice(
        path, (IMAGE[..., 0] * 10).astype(np.int16), slope=0.1, intercept=0.0, z=0.0, instance=1
    )


# Suffix -> (its writer, the reader class, whether reads of it run on threads beside others').
FORMATS: dict[str, tuple[Callable[[Path], None], type[Volume], bool]] = {
    ".nii": (_nifti, NiftiVolume, True),
    ".nii.gz": (_nifti, NiftiVolume, True),
    ".npy": (_npy, NumpyVolume, True),
    ".npz": (_npz, NumpyVolume, True),
    ".h5": (_h5, H5Volume, False),  # h5py holds one lock over every HDF5 call
    ".hdf5": (_h5, H5Volume, False),
    ".png": (_png, PngVolume, True),
    ".mha": (_metaimage, MetaImageVolume, True),
    ".mhd": (_metaimage, MetaImageVolume, True),
    ".nrrd": (_nrrd, NrrdVolume, True),
    ".nhdr": (_nrrd, NrrdVolume, True),
    ".dcm": (_dcm, DicomVolume, False),  # pydicom parses in Python
}


def _written(folder: Path, suffix: str, *, spelled: Callable[[str], str] = str) -> Path:
    """The format's file written under a lower-case name (where its library takes it), then copied
    into ``folder`` under the name ``spelled``."""
    written = folder.parent / "written" / folder.name / f"scan{suffix}"
    written.parent.mkdir(parents=True, exist_ok=True)
    FORMATS[suffix][0](written)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(written, folder / spelled(written.name)))


def _slices(volume: Volume) -> list[np.ndarray]:
    return [np.asarray(volume.read(i)) for i in range(volume.num_slices)]


def test_the_formats_cover_every_suffix_the_readers_take() -> None:
    assert sorted(FORMATS) == sorted(VOLUME_SUFFIXES)


@pytest.mark.parametrize(
    ("suffix", "spelled"),
    [(suffix, spelled) for suffix in FORMATS for spelled in (str.upper, str.title)],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_a_file_is_read_alike_whatever_the_letter_case_of_its_suffix(
    tmp_path: Path, suffix: str, spelled: Callable[[str], str]
) -> None:
    lower = _written(tmp_path / "lower", suffix)
    other = _written(tmp_path / "other", suffix, spelled=spelled)
    assert other.name != lower.name and other.name.lower() == lower.name
    expected_class = FORMATS[suffix][1]
    assert reader_class(lower) is expected_class and reader_class(other) is expected_class
    read_lower, read_other = open_volume(lower), open_volume(other)
    assert type(read_lower) is expected_class and type(read_other) is expected_class
    assert read_other.shape == read_lower.shape and read_other.spacing == read_lower.spacing
    for a, b in zip(_slices(read_lower), _slices(read_other), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert read_other.source == read_lower.source.replace(str(lower), str(other))
    assert case_stem(other) == other.name[: len("scan")]  # the suffix goes in any case


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_nifti_suffix_in_mixed_case_opens_that_file_and_not_its_lower_case_twin(
    tmp_path: Path, suffix: str
) -> None:
    # nibabel.load rebuilds "Scan.Nii.Gz" as "Scan.nii.Gz": a missing file, or here a twin it would
    # read in the named one's place.
    named = tmp_path / f"Scan{suffix.title()}"
    twin = tmp_path / f"Scan{suffix.title().replace('.Nii', '.nii')}"
    write_nifti(tmp_path / f"written{suffix}", IMAGE, spacing=(0.5, 0.6, 2.0))
    write_nifti(tmp_path / f"twin{suffix}", -IMAGE, spacing=(3.0, 3.0, 3.0))
    shutil.copyfile(tmp_path / f"written{suffix}", named)
    shutil.copyfile(tmp_path / f"twin{suffix}", twin)
    volume = open_volume(named)
    assert volume.spacing == pytest.approx((0.5, 0.6, 2.0))
    assert np.allclose(np.stack(_slices(volume), axis=-1), IMAGE)


@pytest.mark.parametrize("name", ["Scan.Nii", "Scan.Nii.Gz", "scan.nii", "scan.nii.gz"])
@pytest.mark.parametrize("empty", [True, False], ids=["empty", "zeros"])
def test_a_file_that_is_no_nifti_is_refused_alike_in_any_letter_case(
    tmp_path: Path, name: str, empty: bool
) -> None:
    path = tmp_path / name
    path.write_bytes(b"" if empty else b"\x00" * 400)
    # What nibabel.load says of the lower-case names, and so of the others too.
    says = (
        "Empty file" if empty else "is not a gzip file" if name.endswith("z") else "Cannot work out file type"
    )
    with pytest.raises(DataError, match=rf"^NIfTI file {re.escape(str(path))} cannot be read: .*{says}"):
        open_volume(path)


@pytest.mark.parametrize("name", ["scan.nii.gz", "SCAN.NII.GZ", "scan.NII.gz"])
def test_a_gzip_nifti_of_any_letter_case_has_its_crc_checked(tmp_path: Path, name: str) -> None:
    # Only the decompression the library does itself checks the trailer; nibabel's proxy reads
    # exactly the array's bytes and never reaches it (tests/data/test_data_gzip_stream.py).
    path = tmp_path / name
    data = np.random.default_rng(0).integers(-2000, 2000, size=(64, 64, 8)).astype(np.int16)
    write_nifti(path.with_name("written.nii.gz"), data)
    damaged = bytearray(path.with_name("written.nii.gz").read_bytes())
    damaged[-6] ^= 0x01  # a CRC byte: every voxel still decompresses to its value
    path.write_bytes(bytes(damaged))
    with pytest.raises(
        DataError, match=r"cannot be read at slice 0 \(truncated or corrupt data\?\).*CRC check"
    ):
        open_volume(path).read(0)


@pytest.mark.parametrize("spelled", [str, str.upper], ids=["lower", "upper"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_reads_on_threads_of_a_path_is_that_of_the_volume_it_opens(
    tmp_path: Path, suffix: str, spelled: Callable[[str], str]
) -> None:
    path = _written(tmp_path, suffix, spelled=spelled)
    assert reads_on_threads(path) is FORMATS[suffix][2]
    assert reads_on_threads(path) is type(open_volume(path)).reads_on_threads


def test_a_folder_is_a_dicom_series(tmp_path: Path) -> None:
    series = tmp_path / "1.2.840.113619.2.55"  # dotted like a UID, not a suffix
    _written(series, ".dcm")
    assert reader_class(series) is DicomVolume and not reads_on_threads(series)
    assert type(open_volume(series)) is DicomVolume


@pytest.mark.parametrize("name", ["scan.vtk", "scan.nii.bz2", "scan", "scan.npy.txt"])
def test_an_unsupported_file_type_is_named_with_those_supported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00" * 64)
    expected = (
        f"volume {path}: unsupported file type; expected .nii, .nii.gz, .npy, .npz, .h5, .hdf5, "
        ".png, .mha, .mhd, .nrrd, .nhdr, .dcm or a DICOM folder"
    )
    for call in (reader_class, open_volume):
        with pytest.raises(DataError) as caught:
            call(path)
        assert str(caught.value) == expected
    # Opening it refuses it, in its turn among the inputs: the thread choice does not.
    assert reads_on_threads(path) is True


_PREP = plain_slice_preprocessing()


@pytest.mark.parametrize(
    "suffix", [".nii.gz", ".npy", ".npz", ".h5", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm"]
)
def test_predict_opens_an_input_of_upper_case_suffix_as_its_lower_case_twin(
    tmp_path: Path, suffix: str
) -> None:
    lower = _written(tmp_path / "lower", suffix)
    upper = _written(tmp_path / "upper", suffix, spelled=str.upper)
    spacing = None if suffix in (".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm") else (0.5, 0.6, 2.0)
    (volume_lower, geometry_lower), (volume_upper, geometry_upper) = (
        open_input(p, prep=_PREP, key=None, spacing=spacing) for p in (lower, upper)
    )
    assert type(volume_upper) is type(volume_lower) is FORMATS[suffix][1]
    assert geometry_upper.zooms == geometry_lower.zooms
    for a, b in zip(_slices(volume_lower), _slices(volume_upper), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["mask.png", "MASK.PNG", "scan.vtk"])
def test_predict_refuses_what_it_does_not_predict_on_naming_the_input(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.lower().endswith(".png"):
        _png(path)
    else:
        path.write_bytes(b"\x00" * 64)
    with pytest.raises(PredictionError) as caught:
        open_input(path, prep=_PREP, key=None, spacing=None)
    assert str(caught.value) == (
        f"input {path}: unsupported file type; expected .nii, .nii.gz, .npy, .npz, .h5, .hdf5, "
        ".mha, .mhd, .nrrd, .nhdr, .dcm or a folder (of NIfTI, NumPy, HDF5, MetaImage or NRRD files, or a "
        "DICOM series)"
    )


def test_a_folder_input_holds_the_volume_files_it_has_in_any_letter_case(tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    taken = [
        _written(folder, ".nii.gz", spelled=str.upper),
        _written(folder, ".npz", spelled=str.title),
        _written(folder, ".h5"),
        _written(folder, ".mha", spelled=str.upper),
        _written(folder, ".nrrd", spelled=str.title),
    ]
    _written(folder, ".png", spelled=str.upper)  # a slice picture, not a scan to predict on
    (folder / "notes.txt").write_text("acquired 2026-11-30")
    assert expand_inputs(folder) == sorted(taken)


@pytest.mark.parametrize(("mode", "bands"), [("RGB", "R, G, B"), ("RGBA", "R, G, B, A"), ("LA", "L, A")])
def test_a_png_mask_with_colour_or_alpha_bands_is_refused_naming_its_mode(
    tmp_path: Path, mode: str, bands: str
) -> None:
    # Annotation tools often export masks in colour: the error said "rank 3 ... expected rank 2
    # (H, W) or (X, Y, Z)", a rank-3 layout, and did not say what was wrong with the file. The
    # reader does not know whether the file is a scan slice or a mask: the message names both.
    path = tmp_path / "a_seg.png"
    Image.fromarray(MASK, "L").convert(mode).save(path)
    with Image.open(path) as image:
        assert image.mode == mode  # the file holds the mode under test
    expected = (
        f"PNG file {path} has mode '{mode}' ({len(bands.split(', '))} bands: {bands}), colour or with an "
        "alpha channel; expected a single band: a greyscale slice, or a mask whose pixel values are the "
        "class values; save it as greyscale ('L', or 'I;16' for 16 bits) or palette ('P')"
    )
    for ranks in ({2, 3}, {2, 3, 4}):
        with pytest.raises(DataError) as caught:
            open_volume(path, ranks=ranks)
        assert str(caught.value) == expected


@pytest.mark.parametrize("mode", ["L", "P", "I;16", "1"])
def test_a_single_band_png_mask_is_read_with_its_stored_values(tmp_path: Path, mode: str) -> None:
    # The refusal of colour bands leaves every one-band mode as it was: its stored values.
    stored = (MASK > 2).astype(np.uint8) if mode == "1" else MASK  # mode "1" holds 0 / 1 only
    if mode == "1":
        image = Image.fromarray(stored * 255, "L").convert("1")
    elif mode == "I;16":
        image = Image.fromarray(MASK.astype(np.uint16))
    elif mode == "P":
        image = Image.fromarray(MASK, "P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0])  # 5 colours: values 0-4
    else:
        image = Image.fromarray(MASK, "L")
    path = tmp_path / "a_seg.png"
    image.save(path)
    with Image.open(path) as saved:
        assert saved.mode == mode
    read = open_volume(path, ranks={2, 3}).read(0)
    np.testing.assert_array_equal(read.astype(np.int64), stored.astype(np.int64))


@pytest.mark.parametrize(
    ("stored", "ranks", "expected"),
    [
        ((2, 3, 4), {2}, "expected rank 2 (H, W)"),
        ((2, 3), {3}, "expected rank 3 (X, Y, Z)"),
        ((2, 3, 4), {2, 4}, "expected rank 2 or 4 (H, W) or (X, Y, Z, C)"),
        ((2, 3, 4, 1, 1), {2, 3}, "expected rank 2 or 3 (H, W) or (X, Y, Z)"),
        ((2, 3, 4, 1, 1), {2, 3, 4}, "expected rank 2, 3 or 4 (H, W), (X, Y, Z) or (X, Y, Z, C)"),
    ],
)
def test_the_rank_error_names_the_layouts_of_the_ranks_allowed_only(
    tmp_path: Path, stored: tuple[int, ...], ranks: set[int], expected: str
) -> None:
    # "(H, W) or (X, Y, Z)" was said whenever rank 4 was not allowed, also where only rank 2 was
    # (a PNG: "expected rank 2 (H, W) or (X, Y, Z)"). The last two are as they were.
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(stored, np.float32))
    with pytest.raises(DataError, match=re.escape(expected) + "$"):
        open_volume(path, ranks=ranks)
