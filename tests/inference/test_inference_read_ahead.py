"""ReadAhead: the next input decompressed on a thread of its own while a case is predicted."""

from __future__ import annotations

import threading
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from inpaintssl.data.base import DataError
from inpaintssl.data.loading import H5Files
from inpaintssl.data.readers import H5Volume, NiftiVolume, NumpyVolume, Volume
from inpaintssl.inference.read_ahead import ReadAhead

IMAGE = np.random.default_rng(5).normal(size=(16, 12, 6)).astype(np.float32)


def _nifti(path: Path) -> NiftiVolume:
    nib.save(nib.Nifti1Image(IMAGE, np.eye(4)), path)
    return NiftiVolume(path)


def test_a_volume_read_ahead_is_decompressed_on_the_reader_thread_and_read_alike(
    tmp_path: Path, decompressing_threads: list[str]
) -> None:
    threads = decompressing_threads
    volume = _nifti(tmp_path / "scan.nii.gz")
    with ReadAhead() as reads:
        reads.start(volume)
        reads.wait(volume)
        assert "_cache" in volume.__dict__
        slices = [volume.read(i) for i in range(volume.num_slices)]
    assert threads == ["inpaintssl-read-ahead_0"]  # and the reads after it decompress nothing
    for k, plane in enumerate(slices):
        assert np.array_equal(plane, IMAGE[:, :, k])


def test_hdf5_volumes_are_not_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with h5py.File(tmp_path / "scan.h5", "w") as handle:
        handle["image"] = IMAGE
    volume = H5Volume(tmp_path / "scan.h5", key="image", handles=H5Files())
    preloads: list[str] = []
    monkeypatch.setattr(Volume, "preload", lambda self: preloads.append(str(self.path)))
    with ReadAhead() as reads:
        reads.start(volume)  # h5py holds one lock over every call: it would only slow the case beside it
        reads.wait(volume)
    assert preloads == [] and np.array_equal(volume.read(2), IMAGE[:, :, 2])


def test_one_read_is_in_flight_at_a_time(tmp_path: Path) -> None:
    first, second = _nifti(tmp_path / "a.nii.gz"), _nifti(tmp_path / "b.nii.gz")
    with ReadAhead() as reads:
        reads.start(first)
        with pytest.raises(
            RuntimeError, match=r"a read ahead of .*a\.nii\.gz is still in flight; wait for it"
        ):
            reads.start(second)
        reads.wait(second)  # not the one read ahead: its case reads it in its own turn
        assert "_cache" not in second.__dict__
        reads.wait(first)
        reads.start(second)
        reads.wait(second)
    assert "_cache" in first.__dict__ and "_cache" in second.__dict__


def test_a_failed_read_ahead_is_raised_when_its_case_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(IMAGE, np.eye(4)), path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # cut short after its header: it opens
    volume = NiftiVolume(path)
    with ReadAhead() as reads:
        reads.start(volume)  # fails on the thread, silently until waited for
        with pytest.raises(DataError, match=rf"NIfTI file {path} cannot be read at slice 0 \(truncated"):
            reads.wait(volume)


def test_leaving_with_a_read_in_flight_waits_for_it_and_releases_the_volume(tmp_path: Path) -> None:
    path = tmp_path / "scan.npz"
    np.savez(path, image=IMAGE)
    next_input = NumpyVolume(path)
    with pytest.raises(ZeroDivisionError), ReadAhead() as reads:
        reads.start(next_input)
        raise ZeroDivisionError("the case before failed")  # the error under way is the one raised
    assert "_cache" not in next_input.__dict__  # released: no case will read it
    assert not [t for t in threading.enumerate() if t.name.startswith("inpaintssl-read-ahead")]


def test_leaving_drops_the_error_of_a_read_no_case_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    volume = _nifti(path)
    path.write_bytes(path.read_bytes()[:400])
    with ReadAhead() as reads:
        reads.start(volume)
    assert "_cache" not in volume.__dict__
