"""``Volume.release``: a reader drops what a read decompressed, and reads the file again after it.

Every format the readers open is written with its real library; each volume is read in full,
released and read again. The values must be the same, bit for bit, and the array the first read
kept must be gone: not in the volume, and freed (no reference left anywhere, a weak reference to it
dies), since the point of releasing is the memory (``predict`` releases each scan after checking it).
"""

from __future__ import annotations

import gc
import pickle
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from data_builders import write_dicom_slice, write_nifti
from PIL import Image

from inpaintssl.data.loading import H5Files
from inpaintssl.data.readers import H5Volume, NiftiVolume, NumpyVolume, PngVolume, Volume, open_volume

RNG = np.random.default_rng(7)
IMAGE = RNG.normal(100.0, 20.0, size=(6, 5, 4)).astype(np.float32)
MASK = RNG.integers(0, 5, size=(6, 5)).astype(np.uint8)
STORED = RNG.integers(-1000, 2000, size=(3, 4, 5)).astype(np.int16)  # DICOM: 3 slices of 4x5


def _dicom(folder: Path) -> Volume:
    series = folder / "series"
    series.mkdir()
    for k, stored in enumerate(STORED):
        write_dicom_slice(
            series / f"s{k}.dcm", stored, slope=2.0, intercept=-1024.0, z=2.5 * k, instance=k + 1
        )
    return open_volume(series)


def _dicom_across_slices(folder: Path) -> Volume:
    volume = _dicom(folder)
    orientation = volume.stored_orientation
    assert orientation is not None
    # Sliced across the stored slices: the series is read whole and kept, as for a reoriented CT.
    volume.reorient(orientation, slice_axis=0)
    return volume


def _png(folder: Path) -> Volume:
    Image.fromarray(MASK).save(folder / "mask.png")
    return PngVolume(folder / "mask.png")


def _h5(folder: Path) -> Volume:
    with h5py.File(folder / "v.h5", "w") as handle:
        handle["scan/image"] = IMAGE
    return H5Volume(folder / "v.h5", key="scan/image", handles=H5Files())


def _nifti(name: str) -> Callable[[Path], Volume]:
    def opened(folder: Path) -> Volume:
        write_nifti(folder / name, IMAGE, spacing=(0.5, 0.6, 2.0))
        return NiftiVolume(folder / name)

    return opened


def _nifti_reoriented(folder: Path) -> Volume:
    write_nifti(folder / "v.nii.gz", IMAGE, spacing=(0.5, 0.6, 2.0))
    return NiftiVolume(folder / "v.nii.gz", orientation="SAL", slice_axis=1)


def _npy(folder: Path) -> Volume:
    np.save(folder / "v.npy", IMAGE)
    return NumpyVolume(folder / "v.npy")


def _npz(folder: Path) -> Volume:
    np.savez(folder / "v.npz", vol=IMAGE, other=IMAGE[:1])
    return NumpyVolume(folder / "v.npz", key="vol")


# Format -> (open a written file, whether its first read keeps a decompressed array or a memory map).
FORMATS: dict[str, tuple[Callable[[Path], Volume], bool]] = {
    "nii": (_nifti("v.nii"), False),  # nibabel's proxy reads the memory map per slice
    "nii.gz": (_nifti("v.nii.gz"), True),
    "nii.gz reoriented": (_nifti_reoriented, True),
    "npy": (_npy, True),  # the memory map
    "npz": (_npz, True),
    "h5": (_h5, False),
    "png": (_png, True),
    "dicom series": (_dicom, False),  # one file per slice
    "dicom series across its slices": (_dicom_across_slices, True),
}


def _read_all(volume: Volume) -> list[np.ndarray]:
    # Copies: a slice may be a view of the kept array, which would keep it alive.
    return [volume.read(i).copy() for i in range(volume.num_slices)]


def _geometry(volume: Volume) -> tuple[Any, ...]:
    affine = volume.world_affine
    return (
        volume.shape,
        volume.spacing,
        volume.slice_axis,
        volume.num_slices,
        volume.orientation,
        volume.reorientation,
        None if affine is None else affine.tolist(),
    )


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_read_release_read_gives_the_same_values_and_drops_the_kept_array(tmp_path: Path, fmt: str) -> None:
    opened, keeps = FORMATS[fmt]
    volume = opened(tmp_path)
    geometry = _geometry(volume)
    first = _read_all(volume)
    assert ("_cache" in volume.__dict__) is keeps, fmt  # what a read keeps, if anything
    kept = weakref.ref(volume.__dict__["_cache"]) if keeps else None

    volume.release()

    assert "_cache" not in volume.__dict__
    gc.collect()
    assert kept is None or kept() is None, "the released array is still referenced"
    assert _geometry(volume) == geometry
    again = _read_all(volume)
    assert len(again) == len(first) == volume.num_slices
    for i, (one, other) in enumerate(zip(first, again)):
        assert one.dtype == other.dtype and one.shape == other.shape, (fmt, i)
        assert np.array_equal(one, other), (fmt, i)
    # A second release, and a release of a volume never read since, are harmless.
    volume.release()
    volume.release()
    assert np.array_equal(volume.read(volume.num_slices - 1), first[-1])


def test_releasing_one_hdf5_volume_keeps_the_shared_handle_of_the_others(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as handle:
        handle["image"] = IMAGE
        handle["label"] = IMAGE.astype(np.uint8)
    handles = H5Files()
    image = H5Volume(tmp_path / "v.h5", key="image", handles=handles)
    label = H5Volume(tmp_path / "v.h5", key="label", handles=handles)
    label.read(0)
    shared = handles.get(tmp_path / "v.h5")
    image.read(1)
    image.release()
    assert handles.get(tmp_path / "v.h5") is shared and shared.id.valid
    assert np.array_equal(label.read(2), IMAGE[..., 2].astype(np.uint8))
    assert np.array_equal(image.read(1), IMAGE[..., 1])


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_volume_sent_to_a_started_worker_goes_without_what_reads_kept(tmp_path: Path, fmt: str) -> None:
    # Workers started by forkserver or spawn get the dataset pickled: each reads its volumes again
    # and keeps its own arrays (docs/guides/nifti.rst, "What a run keeps in memory").
    opened, keeps = FORMATS[fmt]
    volume = opened(tmp_path)
    first = _read_all(volume)
    sent = pickle.loads(pickle.dumps(volume))
    assert "_cache" not in sent.__dict__
    assert ("_cache" in volume.__dict__) is keeps  # the sender keeps its own
    again = _read_all(sent)
    assert ("_cache" in sent.__dict__) is keeps
    for i, (one, other) in enumerate(zip(first, again)):
        assert one.dtype == other.dtype and np.array_equal(one, other), (fmt, i)
