"""MetaImage and NRRD files from :mod:`inpaintssl.data.writers` read back as they were written.

Three independent expectations: this library's readers (checked against ITK's own files in
``test_data_metaimage.py`` and ``test_data_nrrd.py``) give back the array and the affine; the
files lay out their data and geometry as ITK's own files of the same image do
(``itk_written/``); and ITK itself read files these writers wrote as the array and the voxel
positions they were written from (``itk_written/read_by_itk/``, recorded with ITK 5.4.7).
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.data.metaimage import METAIMAGE_TYPES, MetaImageVolume, read_metaimage_header
from inpaintssl.data.nrrd import NRRD_TYPES, NrrdVolume, read_nrrd_header
from inpaintssl.data.readers import IMAGE_RANKS, LABEL_RANKS
from inpaintssl.data.writers import (
    METAIMAGE_ELEMENT_TYPES,
    NRRD_WRITTEN_TYPES,
    lps_columns,
    write_metaimage,
    write_nrrd,
)

ITK_WRITTEN = Path(__file__).parent / "itk_written"
READ_BY_ITK = ITK_WRITTEN / "read_by_itk"
FORMATS = {"metaimage": (".mha", METAIMAGE_ELEMENT_TYPES), "nrrd": (".nrrd", NRRD_WRITTEN_TYPES)}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    """Rotations about x, y and z by ``a``, ``b``, ``c`` radians, composed."""
    x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    y = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    z = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return z @ y @ x


def _affine(rotation: np.ndarray, spacing: tuple[float, ...], origin: tuple[float, ...]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


OBLIQUE = _affine(_rotation(0.3, -0.2, 1.1), (0.6, 0.9, 2.2), (-12.5, 30.25, 7.0))
"""An oblique grid whose axes are the patient's in no order, off the origin."""


def _itk_geometry() -> np.ndarray:
    """The RAS+ affine of the images in ``itk_written/`` (``itk_written/README.md``'s script)."""
    th = 0.3
    rotation = np.array([[1, 0, 0], [0, np.cos(th), -np.sin(th)], [0, np.sin(th), np.cos(th)]])
    direction = rotation @ np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float)
    lps = _affine(direction, (0.5, 0.7, 2.0), (10.0, -20.0, 5.0))
    return LPS_TO_RAS @ lps


def _write(file_format: str, path: Path, data: np.ndarray, affine: np.ndarray, **options: Any) -> None:
    with path.open("wb") as stream:
        if file_format == "metaimage":
            write_metaimage(stream, data, affine=affine, **options)
        else:
            write_nrrd(stream, data, affine=affine)


def _reader(file_format: str, path: Path) -> MetaImageVolume | NrrdVolume:
    ranks = {*IMAGE_RANKS, *LABEL_RANKS}
    if file_format == "metaimage":
        return MetaImageVolume(path, ranks=ranks)
    return NrrdVolume(path, ranks=ranks)


def _whole(volume: MetaImageVolume | NrrdVolume) -> np.ndarray:
    return np.stack([volume.read(k) for k in range(volume.shape[2])], axis=2)


def _values(dtype: np.dtype[Any], shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        return rng.normal(0.0, 1000.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _payload(path: Path, header_end: int) -> bytes:
    return path.read_bytes()[header_end:]


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize(
    ("file_format", "code"), [(f, c) for f, (_, table) in FORMATS.items() for c in table]
)
def test_every_type_reads_back_as_written(
    tmp_path: Path, file_format: str, code: str, channels: int | None
) -> None:
    shape = (5, 4, 3) if channels is None else (5, 4, 3, channels)
    data = _values(np.dtype(code), shape, seed=len(code) + (channels or 0))
    path = tmp_path / f"volume{FORMATS[file_format][0]}"
    _write(file_format, path, data, OBLIQUE)

    volume = _reader(file_format, path)
    read = _whole(volume)
    assert read.dtype == data.dtype and np.array_equal(read, data)
    assert volume.affine is not None
    np.testing.assert_allclose(volume.affine, OBLIQUE, rtol=0, atol=1e-12)
    np.testing.assert_allclose(volume.spacing, (0.6, 0.9, 2.2), rtol=1e-14)


@settings(max_examples=40, deadline=None)
@given(
    angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3),
    spacing=st.tuples(*[st.floats(0.05, 8.0)] * 3),
    origin=st.tuples(*[st.floats(-800.0, 800.0)] * 3),
    flips=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
)
def test_voxel_positions_read_back_as_written(
    angles: tuple[float, float, float],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    flips: tuple[float, float, float],
) -> None:
    # Any rotation, mirrored or not: the position of every corner voxel is what the affine says.
    affine = _affine(_rotation(*angles) * np.asarray(flips), spacing, origin)
    data = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2)
    corners = np.array([[i, j, k, 1.0] for i in (0, 1) for j in (0, 2) for k in (0, 1)]).T
    with tempfile.TemporaryDirectory() as folder:
        for file_format, (suffix, _) in FORMATS.items():
            path = Path(folder) / f"v{suffix}"
            _write(file_format, path, data, affine)
            volume = _reader(file_format, path)
            assert volume.affine is not None
            np.testing.assert_allclose(volume.affine @ corners, affine @ corners, rtol=0, atol=1e-9)
            assert np.array_equal(_whole(volume), data)


def test_a_metaimage_header_worked_by_hand(tmp_path: Path) -> None:
    # RAS+ 0.5 x 0.7 x 2 mm along x, y, z from (10, -20, 5): in LPS the first two axes and the
    # first two coordinates of the origin change sign.
    path = tmp_path / "a.mha"
    affine = np.array([[0.5, 0, 0, 10.0], [0, 0.7, 0, -20.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])
    _write("metaimage", path, np.zeros((3, 2, 1), np.uint8), affine)
    fields, end = read_metaimage_header(path)
    assert fields == {
        "ObjectType": "Image",
        "NDims": "3",
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": "False",
        "CompressedData": "True",
        "CompressedDataSize": str(path.stat().st_size - end),
        "TransformMatrix": "-1 0 0 0 -1 0 0 0 1",
        "Offset": "-10 20 5",
        "ElementSpacing": "0.5 0.7 2",
        "DimSize": "3 2 1",
        "ElementType": "MET_UCHAR",
        "ElementDataFile": "LOCAL",
    }
    # ITK inflates exactly CompressedDataSize bytes: the rest of the file, one zlib stream.
    assert zlib.decompress(_payload(path, end)) == bytes(6)


@pytest.mark.parametrize("channels", [None, 2])
def test_the_data_runs_x_fastest_and_channels_fastest_of_all(tmp_path: Path, channels: int | None) -> None:
    shape = (4, 3, 2) if channels is None else (4, 3, 2, channels)
    data = np.arange(np.prod(shape), dtype=">i2").reshape(shape)  # big-endian, written little
    # Fortran order of (C, X, Y, Z): channels, then x, then y, then z.
    expected = (data if channels is None else np.moveaxis(data, 3, 0)).astype("<i2").tobytes(order="F")
    mha, nrrd = tmp_path / "v.mha", tmp_path / "v.nrrd"
    _write("metaimage", mha, data, OBLIQUE)
    _write("nrrd", nrrd, data, OBLIQUE)
    assert zlib.decompress(_payload(mha, read_metaimage_header(mha)[1])) == expected
    assert gzip.decompress(_payload(nrrd, read_nrrd_header(nrrd)[1])) == expected


def test_the_spacing_given_is_written_where_it_agrees_with_the_affine(tmp_path: Path) -> None:
    # A rotated 0.7 mm axis has a column whose length is 0.7 only to rounding.
    affine = _affine(_rotation(0.3, 0.0, 0.0), (0.5, 0.7, 2.0), (0.0, 0.0, 0.0))
    lengths = np.linalg.norm(affine[:3, :3], axis=0)
    exact, stale = tmp_path / "exact.mha", tmp_path / "stale.mha"
    _write("metaimage", exact, np.zeros((2, 2, 2), np.uint8), affine, spacing=(0.5, 0.7, 2.0))
    _write("metaimage", stale, np.zeros((2, 2, 2), np.uint8), affine, spacing=(1.0, 1.0, 1.0))
    assert read_metaimage_header(exact)[0]["ElementSpacing"] == "0.5 0.7 2"
    # Direction cosines written to six digits (%g) leave columns up to ~1e-6 off unit length: the
    # scan's spacing is kept, and its directions, as far off, with it; the positions are the same.
    six_digits = tmp_path / "six_digits.mha"
    off_unit = affine.copy()
    off_unit[:3, :3] *= 1 + np.array([3e-7, -8e-7, 1e-6])
    _write("metaimage", six_digits, np.zeros((2, 2, 2), np.uint8), off_unit, spacing=(0.5, 0.7, 2.0))
    assert read_metaimage_header(six_digits)[0]["ElementSpacing"] == "0.5 0.7 2"
    read_back = MetaImageVolume(six_digits).affine
    np.testing.assert_allclose(read_back, off_unit, rtol=0, atol=1e-15)
    written = [float(v) for v in read_metaimage_header(stale)[0]["ElementSpacing"].split()]
    assert written == lengths.tolist()


def _itk_fields(path: Path) -> dict[str, str]:
    read = read_metaimage_header if path.suffix in (".mha", ".mhd") else read_nrrd_header
    return {key.lower(): value for key, value in read(path)[0].items()}


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.replace("(", " ").replace(")", " ").replace(",", " ").split()]


def _inflated(path: Path) -> bytes:
    """A file's data, decoded: raw, zlib (MetaImage) or gzip (NRRD)."""
    fields = _itk_fields(path)
    data = _payload(path, (read_metaimage_header if path.suffix == ".mha" else read_nrrd_header)(path)[1])
    if fields.get("compresseddata") == "True":
        return zlib.decompress(data)
    return gzip.decompress(data) if fields.get("encoding") == "gzip" else data


@pytest.mark.parametrize("name", ["a.mha", "c.mha", "nrrd/a.nrrd", "nrrd/c.nrrd"])
def test_the_files_are_laid_out_as_itk_lays_out_its_own(tmp_path: Path, name: str) -> None:
    itk_file = ITK_WRITTEN / name
    expected = np.load(itk_file.with_name(itk_file.name.split(".")[0] + "_expected.npy"))
    file_format = "metaimage" if name.endswith(".mha") else "nrrd"
    ours = tmp_path / Path(name).name
    options = {"spacing": (0.5, 0.7, 2.0)} if file_format == "metaimage" else {}
    _write(file_format, ours, expected, _itk_geometry(), **options)

    # The same bytes once decoded: ITK's order of voxels and channels, little-endian.
    assert _inflated(ours) == _inflated(itk_file)
    theirs, mine = _itk_fields(itk_file), _itk_fields(ours)
    if file_format == "metaimage":
        for key in ("ndims", "dimsize", "elementtype", "elementdatafile", "offset", "elementspacing"):
            assert mine[key] == theirs[key] or _numbers(mine[key]) == _numbers(theirs[key]), key
        assert mine.get("elementnumberofchannels") == theirs.get("elementnumberofchannels")
        np.testing.assert_allclose(
            _numbers(mine["transformmatrix"]), _numbers(theirs["transformmatrix"]), rtol=0, atol=2e-16
        )
    else:
        assert NRRD_TYPES[mine["type"]] == NRRD_TYPES[theirs["type"]]
        for key in ("dimension", "space", "sizes", "kinds"):
            assert mine[key] == theirs[key], key
        assert _numbers(mine["space origin"]) == _numbers(theirs["space origin"])
        assert mine["space directions"].startswith("none") == theirs["space directions"].startswith("none")
        directions = mine["space directions"].removeprefix("none ")
        np.testing.assert_allclose(
            _numbers(directions),
            _numbers(theirs["space directions"].removeprefix("none ")),
            rtol=0,
            atol=2e-16,
        )


@pytest.mark.parametrize("name", ["a.mha", "c.mha", "a.nrrd", "c.nrrd"])
def test_files_the_writers_wrote_are_read_by_itk_as_intended(tmp_path: Path, name: str) -> None:
    itk_folder = ITK_WRITTEN if name.endswith(".mha") else ITK_WRITTEN / "nrrd"
    expected = np.load(itk_folder / f"{name.split('.')[0]}_expected.npy")
    file_format = "metaimage" if name.endswith(".mha") else "nrrd"
    options = {"spacing": (0.5, 0.7, 2.0)} if file_format == "metaimage" else {}
    today = tmp_path / name
    _write(file_format, today, expected, _itk_geometry(), **options)
    committed = READ_BY_ITK / name
    # What ITK read is what today's writers write: the same header (its numbers to the rounding of
    # the direction cosines, which NumPy's sin and cos give to the last bit differently across
    # builds), the same data once inflated.
    fields, read_fields = _itk_fields(today), _itk_fields(committed)
    assert fields.keys() == read_fields.keys()
    for key in fields.keys() - {"compresseddatasize"}:
        # "none" stands for a vector axis' direction in NRRD's space directions.
        if any(c.isalpha() for c in fields[key].replace("none", "").replace("e-", "")):
            assert fields[key] == read_fields[key], key
        else:
            assert fields[key].count("none") == read_fields[key].count("none"), key
            numbers = [_numbers(f[key].replace("none", "")) for f in (fields, read_fields)]
            np.testing.assert_allclose(*numbers, rtol=0, atol=1e-15, err_msg=key)
    assert _inflated(today) == _inflated(committed)

    # ITK read the array it was written from, (z, y, x[, c]) in ITK's order ...
    as_read = np.load(READ_BY_ITK / f"{name.replace('.', '_')}_as_itk_read.npy")
    axes = (2, 1, 0) if expected.ndim == 3 else (2, 1, 0, 3)
    assert as_read.dtype == expected.dtype and np.array_equal(as_read.transpose(axes), expected)
    # ... on the voxel positions ITK gives its own file of that image.
    read = json.loads((READ_BY_ITK / "itk_read.json").read_text())[name]
    own = json.loads((itk_folder / "points.json").read_text())
    own_points = next(iter(own.values()))
    assert read["components"] == (1 if expected.ndim == 3 else expected.shape[3])
    for index, point in own_points.items():
        np.testing.assert_allclose(read["points"][index], point, rtol=0, atol=1e-12)


@pytest.mark.parametrize("file_format", list(FORMATS))
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((4, 4), np.uint8), r"shape \(4, 4\); expected \(X, Y, Z\) or \(X, Y, Z, C\)"),
        (np.zeros((2, 2, 2, 2, 2), np.uint8), r"shape \(2, 2, 2, 2, 2\)"),
        (np.zeros((4, 0, 2), np.uint8), r"shape \(4, 0, 2\); .* none empty"),
        (np.zeros((2, 2, 2), bool), r"type bool; expected one of int8, uint8"),
        (np.zeros((2, 2, 2), np.float16), r"type float16; expected one of"),
        (np.zeros((2, 2, 2), np.complex64), r"type complex64; expected one of"),
    ],
)
def test_data_no_format_holds_is_refused(file_format: str, data: np.ndarray, match: str) -> None:
    write = write_metaimage if file_format == "metaimage" else write_nrrd
    stream = io.BytesIO()
    with pytest.raises(ValueError, match=match):
        write(stream, data, affine=OBLIQUE)
    assert stream.getvalue() == b""


@pytest.mark.parametrize(
    ("affine", "match"),
    [
        (np.diag([0.5, 0.0, 2.0, 1.0]), r"its column 1 has length 0; expected a voxel size > 0"),
        (np.full((4, 4), np.nan), r"expected a finite \(4, 4\) voxel-to-world matrix"),
        (np.eye(3), r"expected a finite \(4, 4\)"),
    ],
)
def test_an_affine_without_a_voxel_size_on_every_axis_is_refused(affine: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lps_columns(affine)
    for write in (write_metaimage, write_nrrd):
        stream = io.BytesIO()
        with pytest.raises(ValueError, match=match):
            write(stream, np.zeros((2, 2, 2), np.uint8), affine=affine)
        assert stream.getvalue() == b""  # refused before a byte is written


def test_every_type_written_is_one_the_readers_read_as_that_type() -> None:
    for code, name in METAIMAGE_ELEMENT_TYPES.items():
        assert np.dtype(METAIMAGE_TYPES[name]) == np.dtype(code)
    for code, name in NRRD_WRITTEN_TYPES.items():
        assert np.dtype(NRRD_TYPES[name]) == np.dtype(code)
