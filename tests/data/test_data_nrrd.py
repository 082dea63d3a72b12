"""NRRD volumes (``.nrrd``/``.nhdr``) read as ITK and 3D Slicer write them: every encoding and
layout, the geometry (hand-worked voxel positions, files ITK wrote itself, the same scan saved as
NIfTI), and clear refusals of what is not one volume."""

from __future__ import annotations

import bz2
import gzip
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from inpaintssl.data.base import DataError
from inpaintssl.data.decompressed import decompressed_into
from inpaintssl.data.nrrd import NrrdVolume, read_nrrd_header
from inpaintssl.data.readers import LABEL_RANKS, NiftiVolume, open_volume, reader_class
from nrrd_helpers import write_nrrd

RNG = np.random.default_rng(31)
IMAGE = RNG.normal(100.0, 20.0, size=(6, 5, 4)).astype(np.float32)
SHORTS = RNG.integers(-1000, 3000, size=(6, 5, 4)).astype(np.int16)
CHANNELS = RNG.normal(size=(6, 5, 4, 3)).astype(np.float32)
SPACING = (0.5, 0.7, 2.0)
# Each axis' step (mm, LPS): axis 0 posterior, 1 superior, 2 left; not symmetric, so a reader that
# took the vectors as rows would place the voxels elsewhere.
DIRECTIONS = ((0.0, 0.5, 0.0), (0.0, 0.0, 0.7), (2.0, 0.0, 0.0))
ORIGIN = (10.0, -20.0, 5.0)
ITK_WRITTEN = Path(__file__).parent / "itk_written" / "nrrd"


def _slices(volume: object) -> list[np.ndarray]:
    assert isinstance(volume, (NrrdVolume, NiftiVolume))
    return [np.asarray(volume.read(i)) for i in range(volume.num_slices)]


LAYOUTS = {
    "raw": {"name": "scan.nrrd"},
    "gzip": {"name": "scan.nrrd", "encoding": "gzip"},
    "bzip2": {"name": "scan.nrrd", "encoding": "bzip2"},
    "ascii": {"name": "scan.nrrd", "encoding": "ascii"},
    "big-endian": {"name": "scan.nrrd", "big_endian": True},
    "nhdr-raw": {"name": "scan.nhdr"},
    "nhdr-gzip": {"name": "scan.nhdr", "encoding": "gzip", "data_file": "scan.raw.gz"},
    "channels-last": {"name": "scan.nrrd", "channels_first": False},
}


@pytest.mark.parametrize("array", [IMAGE, SHORTS, CHANNELS], ids=["float32", "int16", "channels"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_reads_the_array_written(tmp_path: Path, layout: str, array: np.ndarray) -> None:
    options = dict(LAYOUTS[layout])
    path = tmp_path / str(options.pop("name"))
    write_nrrd(path, array, directions=DIRECTIONS, origin=ORIGIN, **options)  # type: ignore[arg-type]
    for axis in (0, 2):
        volume = NrrdVolume(path, slice_axis=axis)
        assert volume.shape == array.shape and volume.channels == (array.shape[3] if array.ndim == 4 else 1)
        for k in range(array.shape[axis]):
            got, want = np.asarray(volume.read(k)), np.take(array, k, axis=axis)
            assert got.dtype == array.dtype and np.array_equal(got, want)
    assert len(volume.files) == (2 if path.suffix == ".nhdr" else 1)


def test_voxels_lie_where_the_space_directions_place_them(tmp_path: Path) -> None:
    path = tmp_path / "scan.nrrd"
    write_nrrd(path, SHORTS, directions=DIRECTIONS, origin=ORIGIN)
    volume = NrrdVolume(path)
    assert volume.spacing == pytest.approx(SPACING) and volume.has_geometry
    assert volume.affine is not None
    for index in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (5, 4, 3)]:
        lps = np.array(ORIGIN) + sum(i * np.array(d) for i, d in zip(index, DIRECTIONS))
        ras = volume.affine @ np.array([*index, 1.0])
        assert np.allclose(ras[:3], [-lps[0], -lps[1], lps[2]])
    assert volume.stored_orientation == "PSL"


@pytest.mark.parametrize(
    ("space", "codes"),
    [("left-posterior-superior", "PSL"), ("RAS", "ASR"), ("left-anterior-superior", "ASL")],
)
def test_the_space_sets_the_axis_codes(tmp_path: Path, space: str, codes: str) -> None:
    path = tmp_path / "scan.nrrd"
    write_nrrd(path, SHORTS, directions=DIRECTIONS, space=space)
    assert NrrdVolume(path).stored_orientation == codes


@pytest.mark.parametrize("name", ["a.nrrd", "b.nhdr", "c.nrrd"])
def test_files_itk_wrote_read_as_itk_reads_them(name: str) -> None:
    # Written by ITK 5.4.7 itself (itk_written/README.md): the values it was given, and the
    # positions its TransformIndexToPhysicalPoint gives (LPS).
    volume = NrrdVolume(ITK_WRITTEN / name)
    expected = np.load(ITK_WRITTEN / f"{name.split('.')[0]}_expected.npy")
    got = np.stack(_slices(volume), axis=2)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert volume.spacing == pytest.approx((0.5, 0.7, 2.0))
    assert volume.affine is not None
    for index, lps in json.loads((ITK_WRITTEN / "points.json").read_text())[name].items():
        ras = volume.affine @ np.array([*json.loads(index.replace("(", "[").replace(")", "]")), 1.0])
        assert np.allclose([-ras[0], -ras[1], ras[2]], lps, atol=1e-9)


def test_a_scan_reads_as_its_nifti_conversion_and_reorients_alike(tmp_path: Path) -> None:
    path = tmp_path / "scan.nrrd"
    write_nrrd(path, SHORTS, directions=DIRECTIONS, origin=ORIGIN, encoding="gzip")
    lps = np.eye(4)
    lps[:3, :3] = np.array(DIRECTIONS).T
    lps[:3, 3] = ORIGIN
    nifti = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(SHORTS, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps), nifti)
    for orientation in (None, "RAS"):
        ours, theirs = NrrdVolume(path, orientation=orientation), NiftiVolume(nifti, orientation=orientation)
        assert ours.shape == theirs.shape and ours.orientation == theirs.orientation
        assert ours.spacing == pytest.approx(theirs.spacing)
        assert ours.affine is not None and np.allclose(ours.affine, theirs.affine)
        for a, b in zip(_slices(ours), _slices(theirs), strict=True):
            assert np.array_equal(a, b)


def test_spacings_without_a_space_give_spacing_and_no_orientation(tmp_path: Path) -> None:
    path = tmp_path / "scan.nrrd"
    write_nrrd(path, CHANNELS, spacing=SPACING)
    volume = NrrdVolume(path)
    assert volume.spacing == pytest.approx(SPACING) and volume.has_geometry
    assert volume.affine is None and volume.stored_orientation is None
    bare = tmp_path / "bare.nrrd"
    write_nrrd(bare, SHORTS)
    assert NrrdVolume(bare).spacing == (1.0, 1.0, 1.0) and not NrrdVolume(bare).has_geometry


def test_a_label_map_a_2d_slice_and_an_upper_case_name_open_through_open_volume(tmp_path: Path) -> None:
    labels = RNG.integers(0, 4, size=(6, 5, 4)).astype(np.uint8)
    path = tmp_path / "LABELS.SEG.NRRD"
    write_nrrd(path, labels, directions=DIRECTIONS, encoding="gzip")
    assert reader_class(path) is NrrdVolume
    assert np.array_equal(np.stack(_slices(open_volume(path, ranks=LABEL_RANKS)), axis=2), labels)
    flat = tmp_path / "slice.nrrd"
    write_nrrd(flat, SHORTS[..., 0], spacing=SPACING[:2])
    volume = open_volume(flat)
    assert volume.num_slices == 1 and np.array_equal(volume.read(0), SHORTS[..., 0])


def test_a_2d_slice_in_a_3d_space_lies_where_its_header_puts_it(tmp_path: Path) -> None:
    # As 3D Slicer saves one slice: two axes, each a step in LPS. The third axis is the plane's
    # normal, right-handed in LPS, at 1 mm: d0 x d1 = (0, 0.5, 0) x (0, 0, 0.7) runs along +x (left).
    path = tmp_path / "slice.nrrd"
    write_nrrd(path, SHORTS[..., 0], directions=DIRECTIONS[:2], origin=ORIGIN)
    volume = NrrdVolume(path)
    lps = np.array(
        [[0.0, 0.0, 1.0, 10.0], [0.5, 0.0, 0.0, -20.0], [0.0, 0.7, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0]]
    )
    assert volume.affine is not None
    np.testing.assert_allclose(volume.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, rtol=0, atol=1e-12)
    assert volume.stored_orientation == "".join(nib.aff2axcodes(volume.affine)) == "PSL"
    assert volume.num_slices == 1 and np.array_equal(volume.read(0), SHORTS[..., 0])
    assert volume.stored_zooms == pytest.approx((0.5, 0.7))


def test_a_2d_space_gives_spacing_and_no_orientation(tmp_path: Path) -> None:
    path = tmp_path / "plane.nrrd"
    write_nrrd(path, SHORTS[..., 0], directions=((0.0, 0.5), (0.7, 0.0)), space=None)
    assert "space dimension: 2" in path.read_bytes().decode(errors="replace")
    volume = NrrdVolume(path)
    assert volume.stored_zooms == pytest.approx((0.5, 0.7)) and volume.has_geometry
    assert volume.affine is None and volume.stored_orientation is None
    assert np.array_equal(volume.read(0), SHORTS[..., 0])
    # A direction of another length than the space's dimension is refused, naming it.
    wrong = tmp_path / "wrong.nrrd"
    write_nrrd(wrong, SHORTS[..., 0], directions=((0.0, 0.5), (0.7, 0.0, 0.0)), space=None)
    with pytest.raises(
        DataError,
        match=r"space direction of axis 1 is '0\.69+6,0,0'; expected 2 finite numbers \(the space's",
    ):
        NrrdVolume(wrong)


def test_a_2d_slice_whose_two_axes_run_one_way_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "line.nrrd"
    write_nrrd(path, SHORTS[..., 0], directions=((0.0, 0.5, 0.0), (0.0, -1.0, 0.0)))
    with pytest.raises(
        DataError, match=r"line\.nrrd: field 'space directions' gives the two axes of a 2-D image"
    ):
        NrrdVolume(path)


def test_a_compressed_scan_is_kept_decompressed_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "scan.nrrd"
    write_nrrd(path, SHORTS, directions=DIRECTIONS, encoding="gzip")
    with decompressed_into(tmp_path / "cache"):
        for _ in range(2):  # the second read takes the kept copy
            assert np.array_equal(np.stack(_slices(NrrdVolume(path)), axis=2), SHORTS)
    assert list((tmp_path / "cache").rglob("*.npy"))


def _header_edited(path: Path, field: str, value: str | None) -> None:
    """Rewrite (or with ``None`` remove) one field of an ``.nhdr`` header."""
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{field}:")]
    if value is not None:
        lines.insert(2, f"{field}: {value}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("dimension", None, r"field 'dimension' is missing; expected a whole number > 0"),
        ("sizes", "6 5", r"field 'sizes' is '6 5'; expected 3 whole numbers > 0 \(dimension\)"),
        ("type", "block", r"field 'type' is 'block'; expected a numeric type"),
        ("encoding", "hex", r"field 'encoding' is 'hex'; expected raw, gzip, bzip2 or ascii"),
        ("endian", "middle", r"field 'endian' is 'middle'; expected little or big"),
        ("space directions", "(1,0,0) (0,1,0)", r"field 'space directions' holds 2 entries; expected 3"),
        ("space directions", "(1,0,0) (0,0,0) (0,0,1)", r"space direction of axis 1 is '0,0,0'"),
        ("space origin", "(1,2)", r"field 'space origin' is '\(1,2\)'; expected \(x,y,z\) in mm"),
        ("data file", "LIST", r"field 'data file' is 'LIST', a list or pattern of files"),
        (
            "data file",
            "slice%03d.raw 1 4 1",
            r"field .data file. is .slice%03d\.raw 1 4 1., a list or pattern",
        ),
        ("data file", "slice%03d.raw 1 4 1 2", r"field .data file. is .slice%03d\.raw 1 4 1 2., a list or"),
    ],
)
def test_a_bad_header_field_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, field: str, value: str | None, says: str
) -> None:
    path = tmp_path / "scan.nhdr"
    write_nrrd(path, SHORTS, directions=DIRECTIONS)
    _header_edited(path, field, value)
    with pytest.raises(DataError, match=rf"^NRRD file {re.escape(str(path))}: {says}"):
        NrrdVolume(path)


def test_a_layered_segmentation_is_refused_as_a_label_map_saying_how_to_export_it(tmp_path: Path) -> None:
    # 3D Slicer's .seg.nrrd of overlapping segments: one layer per segment group, first.
    path = tmp_path / "knee.seg.nrrd"
    write_nrrd(path, RNG.integers(0, 2, size=(6, 5, 4, 2)).astype(np.uint8), directions=DIRECTIONS)
    path.write_bytes(path.read_bytes().replace(b"kinds: vector", b"kinds: list"))
    with pytest.raises(
        DataError, match=r"kinds list domain domain domain with 2 layers: a segmentation stored as"
    ):
        NrrdVolume(path, ranks=LABEL_RANKS)
    with pytest.raises(DataError, match=r"a segmentation stored as overlapping layers"):
        open_volume(path, ranks=LABEL_RANKS)


@pytest.mark.parametrize("first", [True, False], ids=["list first", "list last"])
def test_a_list_axis_of_an_image_is_its_channels_as_a_vector_axis_is(tmp_path: Path, first: bool) -> None:
    # A multi-channel scan whose channel axis is 'list' rather than 'vector': opened as an image,
    # its channels, read as write_nrrd wrote them (the vector-kind file is the second reading).
    vector = tmp_path / "vector.nrrd"
    write_nrrd(vector, CHANNELS, directions=DIRECTIONS, origin=ORIGIN, channels_first=first)
    listed = tmp_path / "list.nrrd"
    listed.write_bytes(vector.read_bytes().replace(b"vector", b"list"))
    assert b"list" in listed.read_bytes()[:400]
    ours, theirs = NrrdVolume(listed), NrrdVolume(vector)
    assert ours.shape == CHANNELS.shape and ours.channels == 3
    assert ours.spacing == pytest.approx(SPACING) and ours.affine is not None
    assert theirs.affine is not None and np.array_equal(ours.affine, theirs.affine)
    assert np.array_equal(np.stack(_slices(ours), axis=2), CHANNELS)
    assert np.array_equal(np.stack(_slices(open_volume(listed)), axis=2), CHANNELS)
    # As a label map it is the layers of a segmentation, refused as such.
    with pytest.raises(DataError, match=r"with 3 layers: a segmentation stored as overlapping layers"):
        NrrdVolume(listed, ranks=LABEL_RANKS)


def test_missing_short_and_damaged_data_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.nhdr"
    write_nrrd(path, SHORTS, directions=DIRECTIONS)
    raw = path.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-10])
    with pytest.raises(
        DataError, match=r"holds 230 bytes; expected 240 \(sizes 6 x 5 x 4 of 2 byte\(s\)\): truncated"
    ):
        NrrdVolume(path).read(0)
    raw.unlink()
    with pytest.raises(
        DataError, match=rf"its data file {re.escape(str(raw))} \('data file'\) does not exist"
    ):
        NrrdVolume(path)
    packed = tmp_path / "packed.nrrd"
    write_nrrd(packed, IMAGE, directions=DIRECTIONS, encoding="gzip")
    packed.write_bytes(packed.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"its gzip data .* cannot be decompressed|holds \d+ bytes; expected"):
        NrrdVolume(packed).read(0)


def test_a_file_that_is_no_nrrd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.nrrd"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(DataError, match=r"^NRRD file .*scan\.nrrd does not start with the NRRD magic"):
        NrrdVolume(path)
    path.write_text("NRRD0004\ntype: short\nnot a field line\n\n")
    with pytest.raises(DataError, match=r"header line 'not a field line' is not 'field: value'"):
        NrrdVolume(path)


def test_a_non_spatial_axis_of_one_sample_is_no_axis(tmp_path: Path) -> None:
    # A 3D volume saved with a vector axis of one component first, (1, X, Y, Z).
    path = tmp_path / "scan.nrrd"
    write_nrrd(path, SHORTS[..., None], directions=DIRECTIONS, encoding="gzip")
    volume = NrrdVolume(path)
    assert volume.shape == SHORTS.shape and volume.channels == 1
    assert np.array_equal(np.stack(_slices(volume), axis=2), SHORTS)
    raw = tmp_path / "raw.nrrd"
    write_nrrd(raw, SHORTS[..., None], directions=DIRECTIONS)  # memory-mapped alike
    assert np.array_equal(np.stack(_slices(NrrdVolume(raw)), axis=2), SHORTS)


# -- hand-built files ------------------------------------------------------------------------------

# (X, Y, Z) = (2, 3, 4): written x fastest, so as the C-order bytes of its (Z, Y, X) transpose.
SMALL = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
SMALL_RAW = np.ascontiguousarray(SMALL.transpose(2, 1, 0)).astype("<i2").tobytes()
SMALL_HEADER = "NRRD0004\ntype: short\ndimension: 3\nsizes: 2 3 4\nendian: little\n"


@pytest.mark.parametrize("spaced", [True, False], ids=["byte skip", "byteskip"])
def test_two_word_fields_read_alike_with_or_without_their_space(tmp_path: Path, spaced: bool) -> None:
    def field(name: str) -> str:
        return name if spaced else name.replace(" ", "")

    attached = tmp_path / "attached.nrrd"
    attached.write_bytes(
        (
            SMALL_HEADER + "encoding: raw\nspace: left-posterior-superior\n"
            f"{field('byte skip')}: 8\n{field('space directions')}: (2,0,0) (0,3,0) (0,0,4)\n"
            f"{field('space origin')}: (1,2,3)\n\n"
        ).encode()
        + b"JUNKJUNK"  # the 8 bytes skipped
        + SMALL_RAW
    )
    detached = tmp_path / "detached.nhdr"
    detached.write_text(
        SMALL_HEADER + f"encoding: raw\n{field('line skip')}: 1\n{field('byte skip')}: 2\n"
        f"{field('data file')}: detached.raw\n"
    )
    # One line (its newline included), then two bytes, then the data.
    (tmp_path / "detached.raw").write_bytes(b"a line of the writer's own\n" + b"\xff\xff" + SMALL_RAW)
    for path in (attached, detached):
        volume = NrrdVolume(path)
        assert np.array_equal(np.stack(_slices(volume), axis=2), SMALL)
    volume = NrrdVolume(attached)
    # LPS steps 2, 3, 4 mm along x, y, z from (1, 2, 3): in RAS+, x and y negated.
    ras = np.array([[-2.0, 0, 0, -1], [0, -3, 0, -2], [0, 0, 4, 3], [0, 0, 0, 1]])
    assert volume.spacing == (2.0, 3.0, 4.0) and volume.has_geometry
    assert volume.affine is not None and np.array_equal(volume.affine, ras)


def test_a_field_given_twice_in_either_spelling_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.nrrd"
    path.write_bytes((SMALL_HEADER + "encoding: raw\nbyte skip: 0\nbyteskip: 8\n\n").encode() + SMALL_RAW)
    with pytest.raises(
        DataError,
        match=rf"^NRRD file {re.escape(str(path))}: field 'byte skip' is given twice \(line 'byteskip: 8' "
        r"after '0'\); expected each field once",
    ):
        NrrdVolume(path)


@pytest.mark.parametrize("encoding", ["gzip", "bzip2"])
@pytest.mark.parametrize("detached", [False, True], ids=["nrrd", "nhdr"])
def test_a_byte_skip_of_compressed_data_skips_decompressed_bytes(
    tmp_path: Path, encoding: str, detached: bool
) -> None:
    # teem (and pynrrd) skip 'byte skip' bytes within the decompressed stream for gzip and bzip2;
    # they were skipped in the file, before decompression, cutting into the gzip header.
    compress = gzip.compress if encoding == "gzip" else bz2.compress
    payload = compress(b"\x7f" * 16 + SMALL_RAW)  # 16 bytes of the writer's own, then the array
    header = SMALL_HEADER + f"encoding: {encoding}\nbyte skip: 16\n"
    if detached:
        path = tmp_path / "scan.nhdr"
        path.write_text(header + "data file: scan.raw.z\n")
        (tmp_path / "scan.raw.z").write_bytes(payload)
    else:
        path = tmp_path / "scan.nrrd"
        path.write_bytes((header + "\n").encode() + payload)
    assert np.array_equal(np.stack(_slices(NrrdVolume(path)), axis=2), SMALL)
    # Bytes skipped count against what the stream holds: 16 + 47 of the 48 the array needs.
    path = tmp_path / "short.nrrd"
    path.write_bytes((header + "\n").encode() + compress(b"\x7f" * 16 + SMALL_RAW[:-1]))
    with pytest.raises(
        DataError, match=r"holds 47 bytes after its byte skip of 16; expected 48 \(sizes 2 x 3 x 4"
    ):
        NrrdVolume(path).read(0)


@pytest.mark.parametrize("encoding", ["gzip", "bzip2", "ascii"])
def test_a_byte_skip_of_minus_one_is_refused_for_data_not_raw(tmp_path: Path, encoding: str) -> None:
    # -1 (the data ends the file) needs the data's length in the file, known for raw data only.
    path = tmp_path / "scan.nrrd"
    path.write_bytes(
        (SMALL_HEADER + f"encoding: {encoding}\nbyte skip: -1\n\n").encode() + gzip.compress(SMALL_RAW)
    )
    with pytest.raises(
        DataError,
        match=rf"^NRRD file {re.escape(str(path))}: byte skip -1 \(the data ends the file\) with encoding "
        rf"{encoding}; expected raw data",
    ):
        NrrdVolume(path)


def test_a_gzip_payload_of_several_members_is_read_member_after_member(tmp_path: Path) -> None:
    # What `cat a.gz b.gz c.gz` (or bgzip) writes: one gzip file, three members.
    members = [gzip.compress(SMALL_RAW[:10]), gzip.compress(SMALL_RAW[10:11]), gzip.compress(SMALL_RAW[11:])]
    header = (SMALL_HEADER + "encoding: gzip\n\n").encode()
    path = tmp_path / "members.nrrd"
    path.write_bytes(header + b"".join(members))
    assert np.array_equal(np.stack(_slices(NrrdVolume(path)), axis=2), SMALL)
    detached = tmp_path / "members.nhdr"
    detached.write_text(SMALL_HEADER + "encoding: gzip\ndata file: members.raw.gz\n")
    (tmp_path / "members.raw.gz").write_bytes(b"".join(members))
    assert np.array_equal(np.stack(_slices(NrrdVolume(detached)), axis=2), SMALL)
    # What follows the array's bytes is ignored, as after a file's only member: padding, or
    # another member.
    for tail in (bytes(16), gzip.compress(b"extra bytes")):
        for payload in (gzip.compress(SMALL_RAW), b"".join(members)):
            path.write_bytes(header + payload + tail)
            assert np.array_equal(np.stack(_slices(NrrdVolume(path)), axis=2), SMALL)
    # Members missing, or padding where the next member should be: the array is short.
    for payload in (b"".join(members[:2]), b"".join(members[:2]) + bytes(16)):
        path.write_bytes(header + payload)
        with pytest.raises(
            DataError, match=r"\(.*members\.nrrd, gzip\) holds 11 bytes; expected 48 \(sizes 2 x 3 x 4 of 2"
        ):
            NrrdVolume(path).read(0)


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
def test_a_2d_image_of_several_channels_is_one_slice_of_them(tmp_path: Path, encoding: str) -> None:
    rgb = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)  # (X, Y, C)
    data = np.ascontiguousarray(rgb.transpose(1, 0, 2)).tobytes()  # channels fastest, then x, then y
    path = tmp_path / "photo.nrrd"
    path.write_bytes(
        (
            "NRRD0004\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\nsizes: 3 4 3\n"
            "space directions: none (0,0.5,0) (0.7,0,0)\nkinds: RGB-color domain domain\n"
            f"encoding: {encoding}\nspace origin: (10,-20,5)\n\n"
        ).encode()
        + (gzip.compress(data) if encoding == "gzip" else data)
    )
    volume = NrrdVolume(path)
    assert volume.shape == (4, 3, 1, 3) and volume.num_slices == 1 and volume.channels == 3
    assert volume.slice_shape == (4, 3) and volume.spacing == (0.5, 0.7, 1.0)
    assert np.array_equal(volume.read(0), rgb)
    # Axis 0 steps 0.5 mm posterior, axis 1 0.7 mm left; the third is the plane's normal at 1 mm,
    # right-handed in LPS: (0, 0.5, 0) x (0.7, 0, 0) runs along -z (inferior). In RAS+, x and y
    # negated.
    stored = np.array([[0.0, -0.7, 0, -10], [-0.5, 0, 0, 20], [0, 0, -1, 5], [0, 0, 0, 1]])
    assert volume.affine is not None and np.allclose(volume.affine, stored, rtol=0, atol=1e-12)
    assert volume.stored_orientation == "PLI"
    volume.reorient("RAS")
    # R runs along -axis 1 (x -> its last column first), A along -axis 0; the slice stays one.
    assert volume.shape == (3, 4, 1, 3) and volume.num_slices == 1 and volume.channels == 3
    assert volume.spacing == pytest.approx((0.7, 0.5, 1.0))
    assert np.array_equal(volume.read(0), rgb.transpose(1, 0, 2)[::-1, ::-1])
    ras = np.array([[0.7, 0, 0, -10 - 0.7 * 2], [0, 0.5, 0, 20 - 0.5 * 3], [0, 0, 1, 5], [0, 0, 0, 1]])
    assert np.allclose(volume.affine, ras, rtol=0, atol=1e-12)
    # Not a label map: three channels.
    with pytest.raises(
        DataError, match=r"photo\.nrrd: array has rank 4 \(shape \(4, 3, 1, 3\)\); expected rank 2 or 3"
    ):
        NrrdVolume(path, ranks=LABEL_RANKS)


@pytest.mark.parametrize("name", ["knee scan.raw", "knee scan 1 4 1.raw", "100% knee.raw"])
def test_a_data_file_whose_name_holds_spaces_is_one_file(tmp_path: Path, name: str) -> None:
    # Only LIST and a %-format followed by min, max and step (and a sub-dimension) name several
    # files; any other value is one file's name, spaces included.
    path = tmp_path / "knee scan.nhdr"
    path.write_text(SMALL_HEADER + f"encoding: raw\ndata file: {name}\n")
    (tmp_path / name).write_bytes(SMALL_RAW)
    volume = NrrdVolume(path)
    assert np.array_equal(np.stack(_slices(volume), axis=2), SMALL)
    assert volume.files == (str(path), str(tmp_path / name))


def test_a_field_stated_empty_is_read(tmp_path: Path) -> None:
    # "content:" with nothing after it, as some writers leave a field they have no value for.
    path = tmp_path / "scan.nrrd"
    path.write_bytes((SMALL_HEADER + "content:\nencoding: raw\n\n").encode() + SMALL_RAW)
    assert read_nrrd_header(path)[0]["content"] == ""
    assert np.array_equal(np.stack(_slices(NrrdVolume(path)), axis=2), SMALL)


def test_ascii_data_that_is_not_numbers_is_refused_naming_the_word_and_its_place(tmp_path: Path) -> None:
    # The 24 values of SMALL written as text, the fifth replaced by a word.
    words = [str(v) for v in np.frombuffer(SMALL_RAW, dtype="<i2")]
    words[4] = "five"
    path = tmp_path / "words.nrrd"
    path.write_bytes((SMALL_HEADER + "encoding: ascii\n\n" + " ".join(words) + "\n").encode())
    with pytest.raises(
        DataError,
        match=rf"^NRRD file {re.escape(str(path))}: its ascii data \(.*\) holds 'five' as value 5; "
        r"expected numbers",
    ):
        NrrdVolume(path).read(0)


# -- a detached header's last line without a newline -----------------------------------------------


def test_the_last_line_of_a_detached_header_without_a_newline_is_read(tmp_path: Path) -> None:
    # (X, Y, Z) = (4, 3, 2) written big-endian, x fastest; the header's last line says so and has
    # no newline after it: it was dropped, and the data read little-endian.
    written = np.arange(24, dtype=np.int16).reshape(2, 3, 4)  # (Z, Y, X)
    (tmp_path / "be.raw").write_bytes(written.astype(">i2").tobytes())
    header = "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nencoding: raw\ndata file: be.raw\n"
    path = tmp_path / "be.nhdr"
    path.write_text(header + "endian: big")
    assert read_nrrd_header(path)[0]["endian"] == "big"
    # The second reading: NumPy's own, of big-endian shorts, (Z, Y, X) -> (X, Y, Z).
    expected = np.fromfile(tmp_path / "be.raw", dtype=">i2").reshape(2, 3, 4).transpose(2, 1, 0)
    assert expected[1, 0, 0] == 1  # not 256: big-endian read as such
    assert np.array_equal(np.stack(_slices(NrrdVolume(path)), axis=2), expected)


@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_space_origin_last_without_a_newline_places_the_volume(tmp_path: Path, eol: str) -> None:
    (tmp_path / "s.raw").write_bytes(np.arange(24, dtype="<i2").tobytes())
    lines = [
        "NRRD0004",
        "type: short",
        "dimension: 3",
        "sizes: 4 3 2",
        "endian: little",
        "encoding: raw",
        "data file: s.raw",
        "space: left-posterior-superior",
        "space directions: (1,0,0) (0,1,0) (0,0,2)",
        "space origin: (10,20,30)",
    ]
    path = tmp_path / "s.nhdr"
    path.write_bytes(eol.join(lines).encode())  # no newline after the last line
    volume = NrrdVolume(path)
    # LPS (10, 20, 30) in RAS+: x and y negated; steps 1, 1, 2 mm along -x, -y, +z.
    ras = np.array([[-1.0, 0, 0, -10], [0, -1, 0, -20], [0, 0, 2, 30], [0, 0, 0, 1]])
    assert volume.affine is not None and np.array_equal(volume.affine, ras)
    assert np.array_equal(np.stack(_slices(volume), axis=2), np.arange(24).reshape(2, 3, 4).T)


def test_a_detached_header_past_the_header_limit_is_refused(tmp_path: Path) -> None:
    # Past the first MiB a line may be cut, or lines unread ('endian: big' below): refused, not
    # read without them.
    (tmp_path / "s.raw").write_bytes(SMALL_RAW)
    path = tmp_path / "long.nhdr"
    padding = "# " + "x" * 78 + "\n"
    path.write_text(
        SMALL_HEADER
        + "encoding: raw\ndata file: s.raw\n"
        + padding * (2**20 // len(padding))
        + "endian: big\n"
    )
    assert path.stat().st_size > 2**20
    with pytest.raises(
        DataError, match=rf"^NRRD file {re.escape(str(path))}: its header has no blank line ending it within"
    ):
        NrrdVolume(path)


# -- units -----------------------------------------------------------------------------------------

# 0.5 x 0.5 x 3 mm voxels at LPS (10, 20, 30) mm, each written in the unit named: mm per unit.
UNITS = {"mm": 1.0, "m": 1000.0, "cm": 10.0, "um": 0.001, "micron": 0.001, "microns": 0.001, "\u00b5m": 0.001}


def _in_unit(value: float, mm_per_unit: float) -> str:
    return f"{value / mm_per_unit:.17g}"


@pytest.mark.parametrize("unit", UNITS)
def test_space_units_are_converted_to_mm(tmp_path: Path, unit: str) -> None:
    mm = UNITS[unit]
    steps = " ".join(
        "(" + ",".join(_in_unit(v, mm) for v in step) + ")"
        for step in ((0.5, 0, 0), (0, 0.5, 0), (0, 0, 3.0))
    )
    origin = ",".join(_in_unit(v, mm) for v in (10.0, 20.0, 30.0))
    path = tmp_path / "scan.nrrd"
    path.write_bytes(
        (
            SMALL_HEADER + "encoding: raw\nspace: left-posterior-superior\n"
            f'space units: "{unit}" "{unit}" "{unit}"\nspace directions: {steps}\n'
            f"space origin: ({origin})\n\n"
        ).encode("utf-8")
        + SMALL_RAW
    )
    volume = NrrdVolume(path)
    assert volume.spacing == pytest.approx((0.5, 0.5, 3.0), rel=1e-12)
    # In RAS+ mm: LPS x and y negated.
    ras = np.array([[-0.5, 0, 0, -10], [0, -0.5, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]])
    assert volume.affine is not None and np.allclose(volume.affine, ras, rtol=1e-12, atol=1e-12)
    assert np.array_equal(np.stack(_slices(volume), axis=2), SMALL)


@pytest.mark.parametrize("unit", UNITS)
def test_units_of_spacings_are_converted_to_mm(tmp_path: Path, unit: str) -> None:
    mm = UNITS[unit]
    spacings = " ".join(_in_unit(v, mm) for v in (0.5, 0.5, 3.0))
    path = tmp_path / "scan.nrrd"
    path.write_bytes(
        (
            SMALL_HEADER + f'encoding: raw\nspacings: {spacings}\nunits: "{unit}" "{unit}" "{unit}"\n\n'
        ).encode()
        + SMALL_RAW
    )
    volume = NrrdVolume(path)
    assert volume.spacing == pytest.approx((0.5, 0.5, 3.0), rel=1e-12) and volume.affine is None


def test_units_of_a_channel_axis_are_not_lengths_to_check(tmp_path: Path) -> None:
    # A vector axis first, without a length: its unit ("" or any other) is not the spacing's.
    path = tmp_path / "scan.nrrd"
    write_nrrd(path, CHANNELS, spacing=(0.05, 0.07, 0.2))
    text = path.read_bytes().replace(b"\n\n", b'\nunits: "???" "cm" "cm" "cm"\n\n', 1)
    path.write_bytes(text)
    assert NrrdVolume(path).spacing == pytest.approx((0.5, 0.7, 2.0), rel=1e-12)


@pytest.mark.parametrize(
    ("field", "says"),
    [
        (
            'space units: "mm" "furlong" "mm"',
            r"field 'space units' gives entry 2 of 3 the unit 'furlong'; expected a length unit",
        ),
        (
            'space units: "s" "s" "s"',
            r"field 'space units' gives entry 1 of 3 the unit 's'; expected a length unit",
        ),
        (
            'space units: "m" "m"',
            r"field 'space units' is '\"m\" \"m\"', 2 unit\(s\); expected 3 quoted units",
        ),
        ('units: "in" "in" "in"', r"field 'units' gives entry 1 of 3 the unit 'in'; expected a length unit"),
    ],
    ids=["space units, unknown", "space units, a time", "space units, too few", "units of spacings"],
)
def test_an_unknown_unit_is_refused_naming_the_file_the_field_and_the_unit(
    tmp_path: Path, field: str, says: str
) -> None:
    geometry = (
        "spacings: 0.5 0.5 3"
        if field.startswith("units")
        else ("space: left-posterior-superior\nspace directions: (0.5,0,0) (0,0.5,0) (0,0,3)")
    )
    path = tmp_path / "scan.nrrd"
    path.write_bytes((SMALL_HEADER + f"encoding: raw\n{geometry}\n{field}\n\n").encode() + SMALL_RAW)
    with pytest.raises(DataError, match=rf"^NRRD file {re.escape(str(path))}: {says}"):
        NrrdVolume(path)
