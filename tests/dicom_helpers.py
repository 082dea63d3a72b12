"""DICOM files for the tests, written with pydicom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def save_dicom(ds: Any, path: Path | str) -> None:
    """Write ``ds`` as a DICOM file: preamble, ``DICM`` prefix and file meta, on pydicom 2.4 and 3."""
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        # pydicom 3.0 renamed write_like_original=False to enforce_file_format=True (and removed
        # the old name); 2.x takes the encoding from these two attributes, not the file meta.
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def single_frame_dataset(*, sop_class: str, modality: str, shape: tuple[int, int], signed: bool) -> Any:
    """A pydicom dataset with the file meta and pixel-format tags of one 16-bit monochrome slice.

    The caller adds geometry, rescale and ``PixelData`` (``<i2`` when ``signed``, else ``<u2``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = int(signed)
    return ds


def write_mr_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    z: float,
    instance: int,
    pixel_spacing: tuple[str, str] | None = ("0.5", "0.75"),
    imager_pixel_spacing: tuple[str, str] | None = None,
    thickness: str = "2",
    position: tuple[float, float, float] | None = None,
    orientation: tuple[int, ...] | None = (1, 0, 0, 0, 1, 0),
) -> None:
    """One unsigned 16-bit MR slice written by pydicom; ``None`` leaves a geometry tag out.

    ``position`` defaults to ``(-10, 20, z)``; ``imager_pixel_spacing`` is the detector's pixel
    size (projection imaging), which readers must not take for the patient's.
    """
    from pydicom.uid import MRImageStorage

    ds = single_frame_dataset(sop_class=MRImageStorage, modality="MR", shape=pixels.shape, signed=False)
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    ds.SliceThickness = thickness
    # Rows run along +y (posterior), columns along +x (patient left), slices along +z.
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    ds.ImagePositionPatient = [-10, 20, f"{z:g}"] if position is None else [f"{v:.6f}" for v in position]
    ds.InstanceNumber = instance
    ds.PixelData = pixels.astype("<u2").tobytes()
    save_dicom(ds, path)
