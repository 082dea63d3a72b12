"""DICOM slices for the benchmarks that read series: one 16-bit greyscale slice's dataset, and its file.

The tests have their own writers (``tests/dicom_helpers.py``); the benchmarks run on their own,
from this folder, on pydicom 3 and on the oldest pydicom the project admits (2.4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["save_slice", "slice_dataset"]


def slice_dataset(*, sop_class: str, modality: str, series: str, shape: tuple[int, int], signed: bool) -> Any:
    """A dataset of one uncompressed 16-bit monochrome slice of ``series``, without geometry or pixels.

    The caller adds geometry, rescale, echo tags and ``PixelData`` (``<i2`` when ``signed``, else ``<u2``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = modality, series
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
    return ds


def save_slice(ds: Any, path: Path) -> None:
    """Write ``ds`` as a DICOM file (preamble, ``DICM``, file meta) on pydicom 3 and on pydicom 2.4."""
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # 3.0 renamed write_like_original=False; 2.x takes the encoding from these two attributes
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
