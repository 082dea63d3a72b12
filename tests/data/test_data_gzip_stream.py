"""GzipStream returns the bytes ``gzip`` returns, fails where ``gzip`` fails, and NIfTI reads through it
give nibabel's arrays."""

from __future__ import annotations

import gc
import gzip
import io
import itertools
import sys
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.data import DataError
from inpaintssl.data.gzip_stream import GzipStream
from inpaintssl.data.readers import NiftiVolume

# Compressible and incompressible pieces: runs make zlib emit long matches, random bytes stored blocks.
_payloads = st.lists(
    st.one_of(st.binary(max_size=3000), st.tuples(st.binary(min_size=1, max_size=3), st.integers(1, 4000))),
    max_size=6,
).map(lambda parts: b"".join(p if isinstance(p, bytes) else p[0] * p[1] for p in parts))


def _members(payload: bytes, cuts: list[int], levels: list[int], padding: list[int]) -> bytes:
    """``payload`` as concatenated gzip members cut at ``cuts``, each followed by zero padding."""
    edges = sorted({0, len(payload), *(c % (len(payload) + 1) for c in cuts)})
    pieces = [payload[a:b] for a, b in itertools.pairwise(edges)] or [b""]
    return b"".join(
        gzip.compress(piece, compresslevel=levels[i % len(levels)]) + b"\0" * padding[i % len(padding)]
        for i, piece in enumerate(pieces)
    )


@settings(max_examples=80, deadline=None)
@given(
    payload=_payloads,
    cuts=st.lists(st.integers(0, 20000), max_size=3),
    levels=st.lists(st.integers(0, 9), min_size=1, max_size=3),
    padding=st.lists(st.sampled_from([0, 0, 1, 7]), min_size=1, max_size=3),
    chunk_bytes=st.sampled_from([1, 5, 64, 4096, 1 << 22]),
    reads=st.lists(st.integers(0, 5000), max_size=8),
)
def test_reads_in_any_pieces_return_what_gzip_decompress_returns(
    tmp_path_factory: pytest.TempPathFactory,
    payload: bytes,
    cuts: list[int],
    levels: list[int],
    padding: list[int],
    chunk_bytes: int,
    reads: list[int],
) -> None:
    path = tmp_path_factory.mktemp("gz") / "data.gz"
    path.write_bytes(_members(payload, cuts, levels, padding))
    expected = gzip.decompress(path.read_bytes())
    assert expected == payload  # the file is what the test meant to write
    got = bytearray()
    with GzipStream(path, chunk_bytes=chunk_bytes) as stream:
        for size in reads:
            buffer = bytearray(size)
            count = stream.readinto(buffer)
            assert count == min(size, len(expected) - len(got))  # short only at the end
            got += buffer[:count]
            assert stream.tell() == len(got)
        got += stream.read()
        assert stream.read() == b"" and stream.readinto(bytearray(3)) == 0
    assert bytes(got) == expected


@settings(max_examples=60, deadline=None)
@given(
    payload=_payloads,
    cuts=st.lists(st.integers(0, 20000), max_size=2),
    moves=st.lists(st.tuples(st.integers(-3000, 12000), st.booleans(), st.integers(0, 3000)), max_size=6),
)
def test_seeking_anywhere_then_reading_returns_the_bytes_at_that_position(
    tmp_path_factory: pytest.TempPathFactory,
    payload: bytes,
    cuts: list[int],
    moves: list[tuple[int, bool, int]],
) -> None:
    path = tmp_path_factory.mktemp("gz") / "data.gz"
    path.write_bytes(_members(payload, cuts, [6], [0]))
    with GzipStream(path, chunk_bytes=256) as stream:
        position = 0
        for offset, relative, size in moves:
            target = position + offset if relative else offset
            if target < 0:
                with pytest.raises(ValueError, match="expected a position of 0 or more"):
                    stream.seek(offset, io.SEEK_CUR if relative else io.SEEK_SET)
                continue
            assert stream.seek(offset, io.SEEK_CUR if relative else io.SEEK_SET) == target
            assert stream.tell() == target
            assert stream.read(size) == payload[target : target + size]
            position = min(target + size, max(target, len(payload)))
            assert stream.tell() == position


@pytest.mark.parametrize("chunk_bytes", [7, 1 << 22])
def test_a_file_cut_short_raises_eoferror_as_gzip_does(tmp_path: Path, chunk_bytes: int) -> None:
    whole = gzip.compress(np.random.default_rng(0).integers(0, 9, 50_000, dtype=np.uint8).tobytes())
    for keep in (3, 10, len(whole) // 2, len(whole) - 4, len(whole) - 1):
        path = tmp_path / f"cut{keep}.gz"
        path.write_bytes(whole[:keep])
        with pytest.raises(EOFError):
            gzip.decompress(path.read_bytes())
        with (
            GzipStream(path, chunk_bytes=chunk_bytes) as stream,
            pytest.raises(
                EOFError, match=r"^Compressed file ended before the end-of-stream marker was reached$"
            ),
        ):
            stream.read()


def test_a_wrong_crc_or_length_is_found_by_skip_to_end_though_every_byte_was_read(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40
    for field, field_zlib, where in (("CRC", "data check", -8), ("length", "length check", -4)):
        damaged = bytearray(gzip.compress(payload))
        damaged[where] ^= 0xFF
        path = tmp_path / f"{field.lower()}.gz"
        path.write_bytes(bytes(damaged))
        with pytest.raises(gzip.BadGzipFile):
            gzip.decompress(bytes(damaged))
        # Fed a byte at a time, zlib has every byte of the data before it has seen the trailer.
        with GzipStream(path, chunk_bytes=1) as stream:
            buffer = bytearray(len(payload))
            assert stream.readinto(buffer) == len(payload) and bytes(buffer) == payload
            with pytest.raises(gzip.BadGzipFile, match=f"{field} check failed: the data does not match"):
                stream.skip_to_end()
        # Fed the whole file, it meets the trailer within the read.
        with (
            GzipStream(path) as stream,
            pytest.raises(gzip.BadGzipFile, match=rf"\(zlib: .*incorrect {field_zlib}"),
        ):
            stream.readinto(bytearray(len(payload)))


def test_skip_to_end_counts_the_bytes_after_the_position(tmp_path: Path) -> None:
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(b"x" * 3_000_000) + gzip.compress(b"y" * 10))
    with GzipStream(path) as stream:
        stream.seek(1_000_000)
        assert stream.skip_to_end() == 2_000_010
        assert stream.skip_to_end() == 0


def test_a_highly_compressed_file_comes_back_in_pieces_of_at_most_8_mib(tmp_path: Path) -> None:
    # 48 MiB of background compresses to ~50 KB: one zlib call could return all of it at once.
    size = 48 << 20
    path = tmp_path / "zeros.gz"
    path.write_bytes(gzip.compress(bytes(size)))
    buffer = bytearray(size)
    tracemalloc.start()
    try:
        with GzipStream(path) as stream:
            assert stream.readinto(buffer) == size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not any(buffer)
    # zlib's module holds twice a piece while it builds it, beside the 4 MiB of input.
    assert peak < (2 * 8 + 4 + 2) << 20, f"{peak / 2**20:.1f} MiB held beside the buffer"


def test_an_empty_file_is_empty_and_garbage_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gz"
    empty.write_bytes(b"")
    assert gzip.decompress(b"") == b""
    with GzipStream(empty) as stream:
        assert stream.read() == b""
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"not gzip at all")
    with (
        GzipStream(garbage) as stream,
        pytest.raises(gzip.BadGzipFile, match=r"corrupt gzip data \(zlib: .*header"),
    ):
        stream.read()


def test_a_closed_stream_refuses_reads_and_bad_arguments_are_named(tmp_path: Path) -> None:
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(b"abc"))
    with pytest.raises(ValueError, match="chunk_bytes=0; expected 1 or more"):
        GzipStream(path, chunk_bytes=0)
    stream = GzipStream(path)
    with pytest.raises(io.UnsupportedOperation, match=str(path)):
        stream.seek(0, io.SEEK_END)
    stream.close()
    stream.close()  # twice is fine, as for any file
    for call in (stream.read, stream.tell, lambda: stream.seek(0), stream.skip_to_end):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_a_stream_that_failed_to_open_closes_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its finaliser closes it all the same; from Python 3.13 it reports what that close raises
    # ("Exception ignored in: <GzipStream ...>", AttributeError: no '_file'), on every failed open.
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(b"abc"))
    for arguments, error in [
        ({"path": tmp_path / "absent.gz"}, FileNotFoundError),
        ({"path": path, "chunk_bytes": 0}, ValueError),
    ]:
        stream = GzipStream.__new__(GzipStream)
        with pytest.raises(error):
            stream.__init__(**arguments)  # type: ignore[misc]
        stream.close()  # what the finaliser calls
        assert stream.closed
    reported: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    with pytest.raises(FileNotFoundError):
        GzipStream(tmp_path / "absent.gz")
    gc.collect()
    assert reported == []


_DTYPES = ["uint8", "int16", "<i4", ">i2", "<f4", ">f8", "uint16"]


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(_DTYPES),
    shape=st.sampled_from([(5, 4, 3), (9, 7, 2, 2), (1, 1, 1), (33, 17, 5)]),
    scaling=st.sampled_from([None, (2.0, 1.0), (0.5, -100.0), (1.0, 0.0)]),
    extension=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_nifti_read_through_the_stream_equals_nibabels_own_read(
    tmp_path_factory: pytest.TempPathFactory,
    dtype: str,
    shape: tuple[int, ...],
    scaling: tuple[float, float] | None,
    extension: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    low, high = (info.min, info.max) if info is not None else (-1e6, 1e6)
    data = rng.uniform(low, high, size=shape).astype(dtype)
    image = nib.Nifti1Image(data, np.diag([0.8, 0.9, 2.5, 1.0]))  # type: ignore[no-untyped-call]
    image.header.set_data_dtype(np.dtype(dtype))
    if scaling is not None:
        image.header.set_slope_inter(*scaling)
    if extension:  # moves the data's offset past 352 bytes
        image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * 101))  # type: ignore[no-untyped-call]
    path = tmp_path_factory.mktemp("nii") / "v.nii.gz"
    nib.save(image, path)  # type: ignore[no-untyped-call]
    expected = np.asarray(nib.load(path).dataobj)  # type: ignore[no-untyped-call]
    volume = NiftiVolume(path, ranks=(3, 4))
    got = volume._array()
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()
    assert got.flags.writeable == expected.flags.writeable


def test_a_nifti_whose_crc_is_wrong_is_refused_as_corrupt_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    # Larger than the 8 KiB nibabel's header sniff reads ahead through gzip, which would reach the CRC.
    data = np.random.default_rng(0).integers(-2000, 2000, size=(64, 64, 8)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)  # type: ignore[no-untyped-call]
    damaged = bytearray(path.read_bytes())
    damaged[-6] ^= 0x01  # a CRC byte: every voxel still decompresses to its value
    path.write_bytes(bytes(damaged))
    assert np.array_equal(np.asarray(nib.load(path).dataobj), data)  # type: ignore[no-untyped-call]
    with pytest.raises(DataError, match=rf"{path} cannot be read at slice 0 \(truncated or corrupt data\?\)"):
        NiftiVolume(path).read(0)
