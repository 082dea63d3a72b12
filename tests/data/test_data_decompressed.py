"""``data.decompressed``: compressed volumes kept decompressed on disk, memory-mapped by every reader.

The reference is the same file read without a folder: every slice must be the same, bit for bit.
Every format is written with its real library (``volume_formats``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from volume_formats import FORMATS

from inpaintssl.data.base import DataError
from inpaintssl.data.decompressed import (
    DecompressedSource,
    decompressed_into,
    decompressed_name,
    source_record_path,
)
from inpaintssl.data.readers import Volume

# Read whole to give a slice: decompressed (or decoded, for a DICOM series read across its slices).
COMPRESSED = [
    "nii.gz",
    "nii.gz reoriented",
    "npz",
    "mhd compressed",
    "nhdr gzip",
    "dicom series across its slices",
    "dicom series compressed",
]
# Read per slice from the file (a memory map, HDF5, one uncompressed DICOM file per slice), or a 2D
# PNG read whole when it is opened: nothing to keep on disk.
OTHERS = [fmt for fmt in FORMATS if fmt not in COMPRESSED]


def _slices(volume: Volume) -> list[np.ndarray]:
    return [np.array(volume.read(i)) for i in range(volume.num_slices)]


def _assert_same(ours: list[np.ndarray], reference: list[np.ndarray]) -> None:
    assert len(ours) == len(reference)
    for i, (one, other) in enumerate(zip(ours, reference, strict=True)):
        assert one.dtype == other.dtype and one.shape == other.shape, i
        assert np.array_equal(one, other), i


def _opened(fmt: str, folder: Path, cache: Path | None) -> Volume:
    opened, _ = FORMATS[fmt]
    folder.mkdir(parents=True, exist_ok=True)
    with decompressed_into(cache):
        return opened(folder)


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_a_compressed_volume_reads_the_same_slices_from_its_decompressed_file(
    tmp_path: Path, fmt: str
) -> None:
    reference = _slices(_opened(fmt, tmp_path / "plain", None))
    volume = _opened(fmt, tmp_path / "data", tmp_path / "cache")
    _assert_same(_slices(volume), reference)
    (written,) = (tmp_path / "cache").glob("*.npy")
    kept = volume.__dict__["_cache"]
    assert isinstance(kept, np.memmap) and Path(kept.filename) == written
    assert not kept.flags.writeable  # read-only: a reader cannot change another's data
    # Beside it, what it was decompressed from: every source file, as it was then.
    record = DecompressedSource.from_json(source_record_path(written).read_text())
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [written.name, f"{written.stem}.json"]
    )
    assert record.name == written.name and record.source == volume.source
    assert [path for path, _, _ in record.files] == [os.path.abspath(f) for f in volume.files]
    assert [size for _, size, _ in record.files] == [os.path.getsize(f) for f in volume.files]
    assert record.changed() == []


def _touch_each(volume: Volume) -> None:
    """Rewrite every file of ``volume`` as far as a stat can tell: a later modification time."""
    for name in volume.files:
        stat = os.stat(name)
        os.utime(name, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize(
    ("fmt", "cached"),
    [(fmt, True) for fmt in COMPRESSED]
    # Without a folder a compressed DICOM series decodes each slice's file, header and all, per read.
    + [(fmt, False) for fmt in COMPRESSED if fmt != "dicom series compressed"],
)
def test_a_source_rewritten_after_its_header_was_read_is_refused_not_decoded_with_that_header(
    tmp_path: Path, fmt: str, cached: bool
) -> None:
    # The header (dtype, offset, scaling) was parsed at opening: new bytes decoded with it are
    # wrong values, and under data.cache_dir they were kept under the new file's name, where every
    # later run read them.
    cache = tmp_path / "cache" if cached else None
    volume = _opened(fmt, tmp_path / "data", cache)
    _touch_each(volume)
    with pytest.raises(DataError, match=r"was rewritten since it was opened") as caught:
        volume.read(0)
    assert volume.source in str(caught.value)
    assert not (tmp_path / "cache").exists()


def test_a_file_rewritten_between_opening_and_reading_leaves_the_cache_to_its_new_contents(
    tmp_path: Path,
) -> None:
    # The audit's case: a label map re-exported (uint8 -> int16) while a dataset holding it was open.
    nib = pytest.importorskip("nibabel")
    from inpaintssl.data.readers import NiftiVolume

    path, cache = tmp_path / "label.nii.gz", tmp_path / "cache"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 3), np.uint8), np.eye(4)), path)
    with decompressed_into(cache):
        opened = NiftiVolume(path)
    fixed = np.zeros((4, 5, 3), np.int16)
    fixed[1:3, 1:4, :] = 300
    nib.save(nib.Nifti1Image(fixed, np.eye(4)), path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000_000))
    with pytest.raises(DataError, match=r"label\.nii\.gz was rewritten since it was opened"):
        opened.read(0)
    with decompressed_into(cache):
        fresh = NiftiVolume(path)
    assert np.array_equal(fresh.read(0), fixed[:, :, 0])


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_a_released_volume_reads_its_files_as_they_were_from_its_copy(tmp_path: Path, fmt: str) -> None:
    # The copy holds what the header describes, so a volume read again after release() is the same
    # volume even if its files changed since; a fresh volume of the changed files reads them.
    volume = _opened(fmt, tmp_path / "data", tmp_path / "cache")
    reference = _slices(volume)
    volume.release()
    _touch_each(volume)
    _assert_same(_slices(volume), reference)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


@pytest.mark.parametrize(
    ("fmt", "fortran"),
    [
        ("nii.gz", True),
        ("npz", True),
        ("dicom series compressed", True),
        ("dicom series across its slices", False),  # read along its first axis
    ],
)
def test_the_copy_is_laid_out_so_that_each_slice_read_is_one_block(
    tmp_path: Path, fmt: str, fortran: bool
) -> None:
    # Read along its last axis (axial slices of a NIfTI volume, a DICOM series' own), a volume's
    # copy is kept in Fortran order; along its first, in C order. The other way, each slice took one
    # value in every few bytes of the whole file (a 512x512x160 float32 copy in C order: 1.3 ms a
    # slice against 0.06 ms in Fortran order).
    volume = _opened(fmt, tmp_path / "data", tmp_path / "cache")
    _slices(volume)
    (written,) = (tmp_path / "cache").glob("*.npy")
    mapped = np.load(written, mmap_mode="r")
    assert mapped.flags.f_contiguous is fortran and mapped.flags.c_contiguous is not fortran
    axis = volume.slice_axis
    for k in range(mapped.shape[axis]):
        where: list[slice | int] = [slice(None)] * 3
        where[axis] = k
        assert mapped[tuple(where)].flags.f_contiguous or mapped[tuple(where)].flags.c_contiguous


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_another_reader_of_the_file_maps_it_without_decompressing_again(tmp_path: Path, fmt: str) -> None:
    first = _opened(fmt, tmp_path / "data", tmp_path / "cache")
    reference = _slices(first)
    (written,) = (tmp_path / "cache").glob("*.npy")
    inode, modified = written.stat().st_ino, written.stat().st_mtime_ns
    # A spawned DataLoader worker gets the volume pickled; a released one reads again.
    sent = pickle.loads(pickle.dumps(first))
    first.release()
    for reader in (sent, first):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _assert_same(_slices(reader), reference)
        assert Path(reader.__dict__["_cache"].filename) == written
    # Not rewritten: an atomic rewrite would have put a new file (a new inode) in its place. Each
    # use sets the modification time, the last use that pruning orders by.
    assert written.stat().st_ino == inode and written.stat().st_mtime_ns >= modified
    assert sorted((tmp_path / "cache").iterdir()) == sorted([written, written.with_suffix(".json")])


@pytest.mark.parametrize("fmt", OTHERS)
def test_a_volume_read_per_slice_writes_nothing(tmp_path: Path, fmt: str) -> None:
    reference = _slices(_opened(fmt, tmp_path / "plain", None))
    volume = _opened(fmt, tmp_path / "data", tmp_path / "cache")
    _assert_same(_slices(volume), reference)
    assert not (tmp_path / "cache").exists()


# Read per slice from the file, at the offsets and in the layout the header gave when the volume
# was opened. A DICOM series parses each slice's own file per read; a PNG is read whole when opened.
READ_FROM_THE_FILE = [fmt for fmt in OTHERS if not fmt.startswith("dicom") and fmt != "png"]


@pytest.mark.parametrize("fmt", READ_FROM_THE_FILE)
def test_a_file_read_per_slice_and_rewritten_after_opening_is_refused_at_the_next_read(
    tmp_path: Path, fmt: str
) -> None:
    volume = _opened(fmt, tmp_path, None)
    first = np.array(volume.read(0))
    _touch_each(volume)
    with pytest.raises(DataError, match=r"was rewritten since it was opened") as caught:
        volume.read(volume.num_slices - 1)
    assert volume.source in str(caught.value)
    assert np.array_equal(_opened(fmt, tmp_path / "again", None).read(0), first)


@pytest.mark.parametrize("fmt", ["npy", "mha", "nrrd"])
def test_a_memory_mapped_file_truncated_after_opening_is_refused_not_a_bus_error(
    tmp_path: Path, fmt: str
) -> None:
    # A page of a memory map past the file's new end is a SIGBUS: the process died with no message.
    opened, _ = FORMATS[fmt]
    volume = opened(tmp_path)
    volume.read(0)
    script = f"""
import pickle, sys
volume = pickle.loads({pickle.dumps(volume)!r})
volume.read(0)
for name in volume.files:
    open(name, "r+b").truncate(64)
try:
    volume.read(volume.num_slices - 1)
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("DataError") and "was rewritten since it was opened" in run.stdout


def test_a_rewritten_source_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "v.npz"
    np.savez_compressed(path, image=np.zeros((4, 3, 2), dtype=np.float32))
    with decompressed_into(tmp_path / "cache"):
        from inpaintssl.data.readers import NumpyVolume

        assert NumpyVolume(path, key="image").read(0).max() == 0
        new = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
        np.savez_compressed(path, image=new)
        assert np.array_equal(NumpyVolume(path, key="image").read(1), new[..., 1])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_one_file_however_its_path_is_spelled_gets_one_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaintssl.data.readers import NiftiVolume, NumpyVolume

    data = tmp_path / "data"
    data.mkdir()
    image = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    np.savez_compressed(data / "v.npz", image=image)
    nib.save(nib.Nifti1Image(image, np.eye(4)), data / "v.nii.gz")
    (tmp_path / "linked").symlink_to(data, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    spellings = [data, Path("data"), Path("data/../data"), tmp_path / "linked", Path("linked")]
    with decompressed_into(tmp_path / "cache"):
        for folder in spellings:
            assert np.array_equal(NumpyVolume(folder / "v.npz", key="image").read(1), image[..., 1])
            assert np.array_equal(NiftiVolume(folder / "v.nii.gz").read(1), image[..., 1])
    written = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(written) == 2
    # The records name the file itself, readable from any working folder.
    sources = sorted(json.loads(source_record_path(f).read_text())["source"] for f in written)
    assert sources == [str(data / "v.nii.gz"), f"{data / 'v.npz'} (array 'image')"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda target: target.write_bytes(target.read_bytes()[:100]), "cannot be read"),
        (lambda target: np.save(target, np.zeros((2, 2), dtype=np.float32)), r"holds shape \(2, 2\)"),
    ],
    ids=["truncated", "another shape"],
)
def test_a_damaged_file_is_decompressed_again(tmp_path: Path, damage: object, message: str) -> None:
    reference = _slices(_opened("nii.gz", tmp_path / "plain", None))
    volume = _opened("nii.gz", tmp_path / "data", tmp_path / "cache")
    _slices(volume)
    (written,) = (tmp_path / "cache").glob("*.npy")
    volume.release()
    damage(written)  # type: ignore[operator]
    with pytest.warns(UserWarning, match=rf"data\.cache_dir: .*{written.name}.*{message}"):
        _assert_same(_slices(volume), reference)
    assert isinstance(volume.__dict__["_cache"], np.memmap)
    _assert_same([np.load(written)[..., i] for i in range(volume.num_slices)], reference)


def test_a_folder_that_cannot_be_written_costs_memory_not_the_read(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    reference = _slices(_opened("npz", tmp_path / "plain", None))
    volume = _opened("npz", tmp_path / "data", blocker / "cache")  # no folder can be made inside a file
    with pytest.warns(UserWarning, match=r"data\.cache_dir: cannot keep .*v\.npz.* in memory instead"):
        _assert_same(_slices(volume), reference)
    kept = volume.__dict__["_cache"]
    assert isinstance(kept, np.ndarray) and not isinstance(kept, np.memmap)


def test_file_names_are_the_ones_earlier_versions_gave(tmp_path: Path) -> None:
    # A data.cache_dir filled before the records were kept stays in use: the name is still the
    # SHA-256 of [format, reader, source, [[absolute path, size, mtime_ns], ...]], cut to 32 digits.
    path = tmp_path / "a.nii.gz"
    path.write_bytes(b"12345")
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    described = json.dumps([1, "NiftiVolume", f"{path} (x)", [[str(path), 5, 1_700_000_000_123_456_789]]])
    expected = hashlib.sha256(described.encode()).hexdigest()[:32] + ".npy"
    assert decompressed_name(reader="NiftiVolume", source=f"{path} (x)", files=[str(path)]) == expected
    record = DecompressedSource.of(reader="NiftiVolume", source=f"{path} (x)", files=[str(path)])
    assert record.name == expected and DecompressedSource.from_json(record.to_json()) == record
