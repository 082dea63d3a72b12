"""``predict`` on a compressed DICOM series (JPEG Lossless, HTJ2K), as on the same series uncompressed.

The expectation is the prediction of the same slices written uncompressed; the label map written
as a DICOM SEG of the compressed series must read back (through the series' own instances) as the
NIfTI label map of the uncompressed one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import inpaintssl as issl
from dicom_helpers import HTJ2K_LOSSLESS, compress_dicom, write_series
from predict_helpers import predict_quietly, written_nifti

pydicom = pytest.importorskip("pydicom")

SHAPE = (32, 32, 3)  # the tiny run's 32x32 slices
POSITIONS = [(-10.0, 20.0, 2.0 * k) for k in range(SHAPE[2])]
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
DECODED_BY = {JPEG_LOSSLESS_SV1: ("gdcm", "dicom-compressed"), HTJ2K_LOSSLESS: ("openjpeg", "dicom-htj2k")}
"""Each syntax tested: the module that decodes it, and the extra that installs that module."""


def _series(folder: Path, *, syntax: str | None) -> Path:
    rows, columns = np.mgrid[: SHAPE[0], : SHAPE[1]]
    disc = ((rows - 14) ** 2 + (columns - 15) ** 2 < 49).astype(np.int16) * 900 + 40
    slices = np.stack([disc + 13 * k for k in range(SHAPE[2])])
    write_series(
        folder,
        slices,
        modality="MR",
        positions=POSITIONS,
        identity={
            name: pydicom.uid.generate_uid()
            for name in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
        },
    )
    if syntax is not None:
        for f in sorted(folder.glob("*.dcm")):
            compress_dicom(f, syntax)
    return folder


@pytest.mark.parametrize("syntax", DECODED_BY, ids=["jpeg-lossless-sv1", "htj2k"])
def test_a_compressed_series_is_predicted_as_the_same_series_uncompressed(
    trained_run: issl.FinetuneResult, tmp_path: Path, syntax: str
) -> None:
    module, extra = DECODED_BY[syntax]
    pytest.importorskip(module, reason=f"the {extra} extra decodes it")
    packed = _series(tmp_path / "packed", syntax=syntax)
    plain = _series(tmp_path / "plain", syntax=None)
    got = predict_quietly(trained_run.run_dir, packed, tmp_path / "got", probabilities=True).cases[0]
    expected = predict_quietly(trained_run.run_dir, plain, tmp_path / "expected", probabilities=True).cases[0]
    np.testing.assert_array_equal(written_nifti(got.probabilities), written_nifti(expected.probabilities))
    labels = written_nifti(expected.segmentation)
    assert labels.max() > 0  # the disc is found: the comparison is not of empty maps
    np.testing.assert_array_equal(written_nifti(got.segmentation), labels)
    assert got.volumes_ml == expected.volumes_ml

    pytest.importorskip("highdicom", reason="the dicom-seg extra writes the SEG")
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.data.dicom_seg import DicomSegVolume

    seg = predict_quietly(trained_run.run_dir, packed, tmp_path / "seg", output_format="dicom_seg").cases[0]
    assert seg.segmentation is not None
    read_back = DicomSegVolume(seg.segmentation, reference=DicomVolume(packed))
    stored = np.stack([read_back.read(k) for k in range(SHAPE[2])], axis=-1)
    np.testing.assert_array_equal(stored, labels)
