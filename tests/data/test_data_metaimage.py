"""MetaImage volumes (``.mha``/``.mhd``) read as ITK reads them: every layout of the data, ITK's
geometry (checked against hand-worked voxel positions and the axis codes ITK's own
``AnatomicalOrientation`` implies), and the same scan saved as NIfTI reading alike."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from inpaintssl.data.base import DataError
from inpaintssl.data.decompressed import decompressed_into
from inpaintssl.data.metaimage import MetaImageVolume
from inpaintssl.data.readers import LABEL_RANKS, NiftiVolume, open_volume, reader_class
from metaimage_helpers import write_metaimage

RNG = np.random.default_rng(21)
IMAGE = RNG.normal(100.0, 20.0, size=(6, 5, 4)).astype(np.float32)
SHORTS = RNG.integers(-1000, 3000, size=(6, 5, 4)).astype(np.int16)
CHANNELS = RNG.normal(size=(6, 5, 4, 3)).astype(np.float32)
SPACING = (0.5, 0.7, 2.0)
# Array axis 0 runs posterior, 1 superior, 2 left (LPS columns); not symmetric, so reading the
# runs of TransformMatrix as rows instead of columns would give other directions.
TRANSFORM = (0, 1, 0, 0, 0, 1, 1, 0, 0)
OFFSET = (10.0, -20.0, 5.0)


def _slices(volume: object, axis_count: int) -> list[np.ndarray]:
    assert isinstance(volume, (MetaImageVolume, NiftiVolume))
    return [np.asarray(volume.read(i)) for i in range(axis_count)]


LAYOUTS = {
    "mha": {"name": "scan.mha"},
    "mha-compressed": {"name": "scan.mha", "compressed": True},
    "mha-big-endian": {"name": "scan.mha", "big_endian": True},
    "mhd-raw": {"name": "scan.mhd"},
    "mhd-zraw": {"name": "scan.mhd", "compressed": True},
    "mhd-header-size": {"name": "scan.mhd", "header_size": 32},
    "mhd-data-at-end": {"name": "scan.mhd", "header_size": -1},
}


@pytest.mark.parametrize("array", [IMAGE, SHORTS, CHANNELS], ids=["float32", "int16", "channels"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis", [0, 2])
def test_every_layout_reads_the_array_written(
    tmp_path: Path, layout: str, array: np.ndarray, axis: int
) -> None:
    options = dict(LAYOUTS[layout])
    path = tmp_path / str(options.pop("name"))
    write_metaimage(path, array, spacing=SPACING, **options)  # type: ignore[arg-type]
    volume = MetaImageVolume(path, slice_axis=axis)
    assert volume.shape == array.shape and volume.channels == (array.shape[3] if array.ndim == 4 else 1)
    assert volume.spacing == pytest.approx((*(s for a, s in enumerate(SPACING) if a != axis), SPACING[axis]))
    for k, got in enumerate(_slices(volume, array.shape[axis])):
        want = np.take(array, k, axis=axis)
        assert got.dtype == array.dtype and np.array_equal(got, want)
    data_files = {path.name} | (
        {path.with_suffix(".zraw" if "zraw" in layout else ".raw").name} if "mhd" in layout else set()
    )
    assert {Path(f).name for f in volume.files} == data_files


def test_voxels_lie_where_itk_places_them(tmp_path: Path) -> None:
    path = tmp_path / "scan.mha"
    write_metaimage(path, SHORTS, spacing=SPACING, transform=TRANSFORM, offset=OFFSET)
    volume = MetaImageVolume(path)
    directions = [np.array(TRANSFORM[3 * n : 3 * n + 3], dtype=float) for n in range(3)]
    for index in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (5, 4, 3)]:
        lps = np.array(OFFSET) + sum(i * s * d for i, s, d in zip(index, SPACING, directions))
        ras = volume.affine @ np.array([*index, 1.0])
        assert np.allclose(ras[:3], [-lps[0], -lps[1], lps[2]])


ITK_WRITTEN = Path(__file__).parent / "itk_written"


@pytest.mark.parametrize("name", ["a.mha", "b.mhd", "c.mha"])
def test_files_itk_wrote_read_as_itk_reads_them(name: str) -> None:
    # Written by ITK 5.4.7 itself (itk_written/README.md): the values it was given, and the
    # positions its TransformIndexToPhysicalPoint gives (LPS), to the rounding of its header.
    volume = MetaImageVolume(ITK_WRITTEN / name)
    expected = np.load(ITK_WRITTEN / f"{name.split('.')[0]}_expected.npy")
    got = np.stack(_slices(volume, volume.num_slices), axis=2)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert volume.spacing == pytest.approx((0.5, 0.7, 2.0))
    points = json.loads((ITK_WRITTEN / "points.json").read_text())[name]
    for index, lps in points.items():
        ras = volume.affine @ np.array([*json.loads(index.replace("(", "[").replace(")", "]")), 1.0])
        assert np.allclose([-ras[0], -ras[1], ras[2]], lps, atol=1e-9)
    # ITK wrote AnatomicalOrientation = AIR: where each axis comes from; the codes say where it goes.
    assert "AnatomicalOrientation = AIR" in (ITK_WRITTEN / name).read_bytes()[:600].decode("latin-1")
    assert volume.stored_orientation == "PSL"


@pytest.mark.parametrize(
    ("transform", "codes"),
    [
        ((1, 0, 0, 0, 1, 0, 0, 0, 1), "LPS"),  # ITK writes AnatomicalOrientation = RAI
        ((-1, 0, 0, 0, -1, 0, 0, 0, 1), "RAS"),  # LPI
        (TRANSFORM, "PSL"),  # ASR
    ],
)
def test_axis_codes_are_those_itk_names_in_reverse(
    tmp_path: Path, transform: tuple[int, ...], codes: str
) -> None:
    # ITK's AnatomicalOrientation names where each axis comes from; the library's codes, as
    # nibabel's, where it goes.
    path = tmp_path / "scan.mha"
    write_metaimage(path, SHORTS, spacing=SPACING, transform=transform)
    assert MetaImageVolume(path).stored_orientation == codes


def test_a_scan_reads_as_its_nifti_conversion_and_reorients_alike(tmp_path: Path) -> None:
    meta = tmp_path / "scan.mha"
    write_metaimage(meta, SHORTS, spacing=SPACING, transform=TRANSFORM, offset=OFFSET)
    # The conversion ITK makes: LPS -> RAS flips x and y of the same voxel-to-world map.
    lps = np.eye(4)
    lps[:3, :3] = np.array(TRANSFORM, dtype=float).reshape(3, 3).T * np.array(SPACING)
    lps[:3, 3] = OFFSET
    nifti = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(SHORTS, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps), nifti)
    for orientation in (None, "RAS"):
        from_meta, from_nifti = (
            MetaImageVolume(meta, orientation=orientation),
            NiftiVolume(nifti, orientation=orientation),
        )
        assert from_meta.shape == from_nifti.shape and from_meta.orientation == from_nifti.orientation
        assert from_meta.spacing == pytest.approx(from_nifti.spacing)
        assert np.allclose(from_meta.affine, from_nifti.affine)
        for a, b in zip(
            _slices(from_meta, from_meta.num_slices), _slices(from_nifti, from_nifti.num_slices), strict=True
        ):
            assert np.array_equal(a, b)


def test_a_2d_slice_reads_as_one_slice(tmp_path: Path) -> None:
    path = tmp_path / "slice.mha"
    write_metaimage(path, SHORTS[..., 0], spacing=SPACING[:2])
    volume = open_volume(path)
    assert isinstance(volume, MetaImageVolume) and volume.num_slices == 1
    assert np.array_equal(volume.read(0), SHORTS[..., 0]) and volume.spacing[:2] == SPACING[:2]


def test_a_label_map_and_an_upper_case_name_open_through_open_volume(tmp_path: Path) -> None:
    labels = RNG.integers(0, 4, size=(6, 5, 4)).astype(np.uint8)
    path = tmp_path / "LABELS.MHD"
    write_metaimage(path, labels, spacing=SPACING, data_file="labels.raw")
    assert reader_class(path) is MetaImageVolume
    volume = open_volume(path, ranks=LABEL_RANKS)
    assert np.array_equal(np.stack(_slices(volume, 4), axis=2), labels)


def test_a_compressed_scan_is_kept_decompressed_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "scan.mha"
    write_metaimage(path, SHORTS, spacing=SPACING, compressed=True)
    with decompressed_into(tmp_path / "cache"):
        for _ in range(2):  # the second read takes the kept copy
            assert np.array_equal(np.stack(_slices(MetaImageVolume(path), 4), axis=2), SHORTS)
    assert list((tmp_path / "cache").rglob("*.npy"))


def _edited(path: Path, field: str, value: str | None) -> None:
    """Rewrite (or with ``None`` remove) one header line of an ``.mhd`` header."""
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{field} =")]
    if value is not None:
        # ElementDataFile ends a header; every other field goes before it.
        lines.insert(len(lines) if field == "ElementDataFile" else -1, f"{field} = {value}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("NDims", "4", r"NDims is 4; expected 2 \(a slice\) or 3 \(a volume\)"),
        ("DimSize", "6 5", r"DimSize is '6 5'; expected 3 whole number\(s\) > 0"),
        ("DimSize", None, r"its header has no DimSize; expected 3 whole number\(s\)"),
        ("ElementType", "MET_STRING", r"ElementType is 'MET_STRING'; expected one of MET_CHAR, MET_UCHAR"),
        (
            "ElementSpacing",
            "0.5 0 2",
            r"voxel spacing \(0\.5, 0\.0, 2\.0\) \(ElementSpacing\); expected sizes > 0",
        ),
        ("TransformMatrix", "1 0 0", r"TransformMatrix is '1 0 0'; expected 9 finite number\(s\)"),
        ("ObjectType", "Mesh", r"ObjectType is 'Mesh'; expected 'Image'"),
        ("CompressedData", "maybe", r"CompressedData is 'maybe'; expected True or False"),
        ("HeaderSize", "auto", r"HeaderSize is 'auto'; expected a whole number, or -1"),
    ],
)
def test_a_bad_header_field_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, field: str, value: str | None, says: str
) -> None:
    path = tmp_path / "scan.mhd"
    write_metaimage(path, SHORTS, spacing=SPACING, transform=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    _edited(path, field, value)
    with pytest.raises(DataError, match=rf"^MetaImage file {re.escape(str(path))}: {says}"):
        MetaImageVolume(path)


def test_missing_and_short_data_are_refused_when_opened_or_read(tmp_path: Path) -> None:
    path = tmp_path / "scan.mhd"
    write_metaimage(path, SHORTS, spacing=SPACING)
    raw = path.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-10])
    with pytest.raises(
        DataError, match=r"holds 230 bytes; expected 240 \(DimSize 6 x 5 x 4, 1 channel\(s\) of 2"
    ):
        MetaImageVolume(path).read(0)
    raw.unlink()
    with pytest.raises(
        DataError, match=rf"its data file {re.escape(str(raw))} \(ElementDataFile\) does not exist"
    ):
        MetaImageVolume(path)


def test_a_truncated_compressed_stream_is_refused_when_read(tmp_path: Path) -> None:
    path = tmp_path / "scan.mha"
    write_metaimage(path, IMAGE, spacing=SPACING, compressed=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(
        DataError, match=r"its compressed data .* cannot be inflated \(truncated or corrupt\?\)"
    ):
        MetaImageVolume(path).read(0)


@pytest.mark.parametrize("name", ["LIST", "LIST 2D", "slice%03d.raw 1 4 1", "slice%d.raw"])
def test_slice_lists_and_patterns_are_refused(tmp_path: Path, name: str) -> None:
    # MetaIO reads a value starting with LIST as a list of slice files (named on the lines after
    # it), and one holding a % as a printf-style pattern of their names.
    path = tmp_path / "scan.mhd"
    write_metaimage(path, SHORTS, spacing=SPACING)
    _edited(path, "ElementDataFile", name)
    with pytest.raises(
        DataError,
        match=rf"^MetaImage file {re.escape(str(path))}: ElementDataFile is {re.escape(repr(name))}, a list "
        r"or pattern of slice files \(a value starting with LIST, or holding a %\); expected LOCAL or one",
    ):
        MetaImageVolume(path)


@pytest.mark.parametrize("name", ["knee scan.raw", "knee scan 2 of 3.raw"])
def test_a_data_file_whose_name_holds_spaces_is_one_file(tmp_path: Path, name: str) -> None:
    # ITK writes "knee scan.raw" as the data file of "knee scan.mhd": one name, spaces included.
    path = tmp_path / "knee scan.mhd"
    path.write_text(
        f"ObjectType = Image\nNDims = 3\nDimSize = 6 5 4\nElementType = MET_SHORT\nElementDataFile = {name}\n"
    )
    (tmp_path / name).write_bytes(np.ascontiguousarray(SHORTS.transpose(2, 1, 0)).astype("<i2").tobytes())
    volume = MetaImageVolume(path)
    assert np.array_equal(np.stack(_slices(volume, 4), axis=2), SHORTS)
    assert volume.files == (str(path), str(tmp_path / name))


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_a_2d_image_of_several_channels_is_one_slice_of_them(tmp_path: Path, compressed: bool) -> None:
    rgb = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)  # (X, Y, C)
    data = np.ascontiguousarray(rgb.transpose(1, 0, 2)).tobytes()  # channels fastest, then x, then y
    path = tmp_path / "photo.mha"
    # Axis 0 runs along LPS y (posterior), axis 1 along x (left): the runs of TransformMatrix.
    path.write_bytes(
        (
            f"ObjectType = Image\nNDims = 2\nCompressedData = {compressed}\nTransformMatrix = 0 1 1 0\n"
            "Offset = 10 -20\nElementSpacing = 0.5 0.7\nDimSize = 4 3\nElementNumberOfChannels = 3\n"
            "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
        ).encode()
        + (zlib.compress(data) if compressed else data)
    )
    volume = MetaImageVolume(path)
    assert volume.shape == (4, 3, 1, 3) and volume.num_slices == 1 and volume.channels == 3
    assert volume.slice_shape == (4, 3) and volume.spacing == (0.5, 0.7, 1.0)
    assert np.array_equal(volume.read(0), rgb)
    # Voxel (i, j, k) at LPS (10 + 0.7 j, -20 + 0.5 i, k): the third axis is the plane's normal
    # (LPS z) at 1 mm, as for a 2-D image of one channel. In RAS+, x and y negated.
    stored = np.array([[0.0, -0.7, 0, -10], [-0.5, 0, 0, 20], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert np.allclose(volume.affine, stored, rtol=0, atol=1e-12)
    assert volume.stored_orientation == "PLS"
    volume.reorient("RAS")
    # R runs along -axis 1 (its last column first), A along -axis 0; the slice stays one.
    assert volume.shape == (3, 4, 1, 3) and volume.num_slices == 1 and volume.channels == 3
    assert volume.spacing == pytest.approx((0.7, 0.5, 1.0))
    assert np.array_equal(volume.read(0), rgb.transpose(1, 0, 2)[::-1, ::-1])
    ras = np.array([[0.7, 0, 0, -10 - 0.7 * 2], [0, 0.5, 0, 20 - 0.5 * 3], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert np.allclose(volume.affine, ras, rtol=0, atol=1e-12)
    # Not a label map: three channels.
    with pytest.raises(
        DataError, match=r"photo\.mha: array has rank 4 \(shape \(4, 3, 1, 3\)\); expected rank 2 or 3"
    ):
        MetaImageVolume(path, ranks=LABEL_RANKS)


def test_a_file_that_is_no_metaimage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.mha"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(DataError, match=r"^MetaImage file .*scan\.mha: header line .* is not 'Key = Value'"):
        MetaImageVolume(path)
    path.write_text("NDims = 3\nDimSize = 2 2 2\n")
    with pytest.raises(
        DataError, match=r"no ElementDataFile line in its header \(fields found: NDims, DimSize\)"
    ):
        MetaImageVolume(path)


def test_a_header_without_spacing_is_read_at_1_mm_as_stating_no_geometry(tmp_path: Path) -> None:
    from inpaintssl.registry import DATASETS

    path = tmp_path / "ct.mha"
    write_metaimage(path, SHORTS)  # no ElementSpacing: ITK's default, 1 mm
    volume = MetaImageVolume(path)
    assert volume.spacing == (1.0, 1.0, 1.0) and not volume.has_geometry
    write_metaimage(tmp_path / "spaced.mha", SHORTS, spacing=SPACING)
    assert MetaImageVolume(tmp_path / "spaced.mha").has_geometry
    # The ct dataset says its areas are then in pixels, as for a DICOM slice without PixelSpacing.
    with pytest.warns(UserWarning, match=r"ct: 1 image\(s\) state no pixel spacing .*ct\.mha"):
        DATASETS.build("ct", split="u", labelled=False, cases={"u": ["ct.mha"]}, root=tmp_path)


# -- text data and gzip-wrapped data, as MetaIO reads them -----------------------------------------

TEXT_HEADER = "ObjectType = Image\nNDims = 3\nDimSize = 6 5 4\nElementType = MET_SHORT\n"


def _as_text(array: np.ndarray, *, per_line: int = 10) -> str:
    """``array`` ``(X, Y, Z)`` as MetaIO writes text voxels: x fastest, ten numbers a line."""
    values = [str(int(v)) for v in array.transpose(2, 1, 0).ravel()]
    lines = [" ".join(values[i : i + per_line]) for i in range(0, len(values), per_line)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("local", [True, False], ids=["mha", "mhd"])
def test_text_voxels_are_read_as_numbers(tmp_path: Path, local: bool) -> None:
    # BinaryData = False: MetaIO reads whitespace-separated numbers, x fastest. They were read as
    # the text's bytes (b"-1" as a short), garbage of the right shape.
    text = _as_text(SHORTS)
    if local:
        path = tmp_path / "scan.mha"
        path.write_text(TEXT_HEADER + "BinaryData = False\nElementDataFile = LOCAL\n" + text)
    else:
        path = tmp_path / "scan.mhd"
        path.write_text(TEXT_HEADER + "BinaryData = False\nHeaderSize = 3\nElementDataFile = scan.txt\n")
        (tmp_path / "scan.txt").write_text("## " + text)  # HeaderSize skips the writer's 3 bytes
    volume = MetaImageVolume(path)
    assert volume.shape == SHORTS.shape
    for axis_index, got in enumerate(_slices(volume, 4)):
        assert got.dtype == np.int16 and np.array_equal(got, SHORTS[:, :, axis_index])
    # The first number of the text is voxel (0, 0, 0), the second (1, 0, 0): x runs fastest.
    first = [int(v) for v in text.split()[:2]]
    assert first == [SHORTS[0, 0, 0], SHORTS[1, 0, 0]]


def test_text_voxels_of_another_count_or_not_numbers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.mha"
    header = TEXT_HEADER + "BinaryData = False\nElementDataFile = LOCAL\n"
    words = _as_text(SHORTS).split()
    where = rf"^MetaImage file {re.escape(str(path))}: its text data \(.*scan\.mha, BinaryData False\)"
    for data, says in [
        ([*words, "7"], r"holds 121 numbers; expected 120 \(DimSize 6 x 5 x 4, 1 channel\(s\)\)"),
        (words[:-1], r"holds 119 numbers; expected 120"),
        ([*words[:5], "x5", *words[6:]], r"holds 'x5'; expected numbers only"),
        (["40000", *words[1:]], r"holds 40000; expected whole numbers from -32768 to 32767 \(ElementType"),
        (["2.5", *words[1:]], r"holds 2\.5; expected whole numbers from -32768"),
    ]:
        path.write_text(header + " ".join(data) + "\n")
        with pytest.raises(DataError, match=where + " " + says):
            MetaImageVolume(path).read(0)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ("BinaryData = False\nCompressedData = True\n", r"CompressedData is True with BinaryData False"),
        ("BinaryData = False\nHeaderSize = -1\n", r"HeaderSize -1 with BinaryData False"),
        ("BinaryData = maybe\n", r"BinaryData is 'maybe'; expected True or False"),
    ],
)
def test_text_data_with_a_field_it_cannot_go_with_is_refused(tmp_path: Path, fields: str, says: str) -> None:
    path = tmp_path / "scan.mhd"
    path.write_text(TEXT_HEADER + fields + "ElementDataFile = scan.txt\n")
    (tmp_path / "scan.txt").write_text(_as_text(SHORTS))
    with pytest.raises(DataError, match=rf"^MetaImage file {re.escape(str(path))}: {says}"):
        MetaImageVolume(path)


@pytest.mark.parametrize("local", [True, False], ids=["mha", "mhd-zraw"])
def test_compressed_data_in_a_gzip_wrapper_is_inflated_as_metaio_does(tmp_path: Path, local: bool) -> None:
    # MetaIO inflates with inflateInit2(..., 47): a zlib stream or a gzip member. zlib.decompress
    # took the first only and refused the other ("incorrect header check").
    data = gzip.compress(np.ascontiguousarray(SHORTS.transpose(2, 1, 0)).astype("<i2").tobytes())
    header = TEXT_HEADER + "CompressedData = True\n"
    if local:
        path = tmp_path / "scan.mha"
        path.write_bytes((header + "ElementDataFile = LOCAL\n").encode() + data)
    else:
        path = tmp_path / "scan.mhd"
        path.write_text(header + "ElementDataFile = scan.zraw\n")
        (tmp_path / "scan.zraw").write_bytes(data)
    assert np.array_equal(np.stack(_slices(MetaImageVolume(path), 4), axis=2), SHORTS)
    # A gzip member cut short is refused as a zlib stream cut short is.
    (tmp_path / "cut.mha").write_bytes((header + "ElementDataFile = LOCAL\n").encode() + data[:-30])
    with pytest.raises(
        DataError, match=r"its compressed data .* cannot be inflated \(truncated or corrupt\?\)"
    ):
        MetaImageVolume(tmp_path / "cut.mha").read(0)
