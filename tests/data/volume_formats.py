"""Small volumes of every format the readers open, written with their real libraries (MetaImage and
NRRD by the tests' writers), and what a read of each keeps (imported by the data tests: pytest puts
this folder on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from data_builders import write_dicom_slice, write_nifti
from PIL import Image

from inpaintssl.data.loading import H5Files
from inpaintssl.data.readers import H5Volume, NiftiVolume, NumpyVolume, PngVolume, Volume, open_volume
from metaimage_helpers import write_metaimage
from nrrd_helpers import write_nrrd

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


def _dicom_compressed(folder: Path) -> Volume:
    from dicom_helpers import compress_dicom

    series = _dicom(folder).path
    for f in sorted(series.iterdir()):
        compress_dicom(f, "1.2.840.10008.1.2.5")  # RLE Lossless, which pydicom encodes and decodes itself
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


def _metaimage(name: str, **options: bool) -> Callable[[Path], Volume]:
    def opened(folder: Path) -> Volume:
        write_metaimage(folder / name, IMAGE, spacing=(0.5, 0.6, 2.0), **options)
        return open_volume(folder / name)

    return opened


def _nrrd(name: str, **options: str) -> Callable[[Path], Volume]:
    def opened(folder: Path) -> Volume:
        write_nrrd(folder / name, IMAGE, directions=((0.5, 0, 0), (0, 0.6, 0), (0, 0, 2.0)), **options)
        return open_volume(folder / name)

    return opened


# Format -> (open a written file, whether its first read keeps a decompressed array or a memory map).
FORMATS: dict[str, tuple[Callable[[Path], Volume], bool]] = {
    "nii": (_nifti("v.nii"), False),  # nibabel's proxy reads the memory map per slice
    "nii.gz": (_nifti("v.nii.gz"), True),
    "nii.gz reoriented": (_nifti_reoriented, True),
    "npy": (_npy, True),  # the memory map
    "npz": (_npz, True),
    "h5": (_h5, False),
    "png": (_png, True),
    "mha": (_metaimage("v.mha"), True),  # the memory map
    "mhd compressed": (_metaimage("v.mhd", compressed=True), True),
    "nrrd": (_nrrd("v.nrrd"), True),  # the memory map
    "nhdr gzip": (_nrrd("v.nhdr", encoding="gzip"), True),
    "dicom series": (_dicom, False),  # one file per slice
    "dicom series across its slices": (_dicom_across_slices, True),
    # Each read decodes its file; under data.cache_dir the series is decoded once, whole.
    "dicom series compressed": (_dicom_compressed, False),
}
