"""A DICOM SEG or RTSTRUCT given where an image goes is refused as what it is.

Read as a series, a SEG's frames (one per segment and slice) repeat positions, and an RTSTRUCT has no
pixels: before this check their messages spoke of echoes to split and of a missing Rows, pointing away
from the cause. The files here are built with pydicom alone; their SOP class or Modality says what
they are.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dicom_helpers import save_dicom, save_study_object, single_frame_dataset, write_series
from inpaintssl.data.base import DataError
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.dicom import SeveralSeriesError
from inpaintssl.data.readers import DicomVolume

pytest.importorskip("pydicom")

SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
POSITIONS = [(0.0, 0.0, 2.0 * k) for k in range(3)]


def _segmentation(path: Path, *, sop_class: str, modality: str) -> Path:
    """A two-frame SEG-like file: segments 1 and 2 of one slice, at one position (as a SEG holds them)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = single_frame_dataset(sop_class=sop_class, modality=modality, shape=(4, 4), signed=False)
    ds.NumberOfFrames = 2
    frames = []
    for segment in (1, 2):
        group, position, identification = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = ["0", "0", "0"]
        identification.ReferencedSegmentNumber = segment
        group.PlanePositionSequence = Sequence([position])
        group.SegmentIdentificationSequence = Sequence([identification])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.zeros((2, 4, 4), "<u2").tobytes()
    save_dicom(ds, path)
    return path


def _structure_set(path: Path, *, modality: str = "RTSTRUCT") -> Path:
    """An RTSTRUCT-like file: no pixels, no Rows or Columns."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = (
        RT_STRUCTURE_SET,
        meta.MediaStorageSOPInstanceUID,
        modality,
    )
    ds.StructureSetLabel = "organs"
    save_dicom(ds, path)
    return path


@pytest.mark.parametrize(
    ("sop_class", "modality"),
    [(SEGMENTATION, "SEG"), (LABEL_MAP_SEGMENTATION, "SEG"), (SEGMENTATION, ""), ("1.2.3.4", "SEG")],
)
def test_a_segmentation_is_refused_as_a_segmentation(tmp_path: Path, sop_class: str, modality: str) -> None:
    seg = _segmentation(tmp_path / "seg.dcm", sop_class=sop_class, modality=modality)
    with pytest.raises(DataError, match=re.escape(f"DICOM file {seg} is a Segmentation (SEG)")) as err:
        DicomVolume(seg)
    assert "segimage2itkimage" in str(err.value) and "series folder" not in str(err.value)


@pytest.mark.parametrize("modality", ["RTSTRUCT", "OT"])
def test_a_structure_set_is_refused_as_contours(tmp_path: Path, modality: str) -> None:
    # By its SOP class, whatever its Modality says.
    rtstruct = _structure_set(tmp_path / "rs.dcm", modality=modality)
    with pytest.raises(
        DataError, match=re.escape(f"DICOM file {rtstruct} is an RT Structure Set (RTSTRUCT)")
    ):
        DicomVolume(rtstruct)


@pytest.mark.parametrize("kind", ["SEG", "RTSTRUCT"])
def test_one_in_a_series_folder_is_named_and_the_folder_told_to_lose_it(tmp_path: Path, kind: str) -> None:
    series = write_series(
        tmp_path / "series", np.zeros((3, 4, 4), np.int16), modality="MR", positions=POSITIONS
    )
    if kind == "SEG":
        stray = _segmentation(series / "zz_seg.dcm", sop_class=SEGMENTATION, modality="SEG")
    else:
        stray = _structure_set(series / "zz_rs.dcm")
    file, folder = re.escape(str(stray)), re.escape(str(series))
    expected = rf"DICOM file {file} is .*\({kind}\).*move it out of the series folder {folder}"
    with pytest.raises(DataError, match=expected):
        DicomVolume(series)
    # Without it, the folder is the series it was.
    stray.unlink()
    assert DicomVolume(series).shape == (4, 4, 3)


def test_a_segmentation_given_as_a_ct_image_is_refused_naming_it(tmp_path: Path) -> None:
    # As a label of its series the ct dataset reads it (test_data_dicom_seg_labels.py); as an image, never.
    seg = _segmentation(tmp_path / "seg.dcm", sop_class=SEGMENTATION, modality="SEG")
    cases = {"train": [{"image": str(seg)}]}
    with pytest.raises(DataError, match=re.escape(f"DICOM file {seg} is a Segmentation (SEG)")) as err:
        ct_dataset(split="train", cases=cases, labelled=False)
    assert "the ct dataset reads a SEG as the label of the DICOM series it segments" in str(err.value)


def test_an_object_without_rows_or_columns_is_refused_as_no_image_alone_and_a_series_of_its_own_beside(
    tmp_path: Path,
) -> None:
    # A structured report (a CT's dose report) has no pixels: alone it is no image; beside slices
    # it is a series of its own, so the folder is a study (SeveralSeriesError), not a broken series.
    series = write_series(
        tmp_path / "series", np.zeros((3, 4, 4), np.int16), modality="MR", positions=POSITIONS
    )
    report = save_study_object(sorted(series.iterdir())[0], series / "zz_sr.dcm", kind="SR")
    with pytest.raises(DataError) as alone:
        DicomVolume(report)
    assert str(alone.value) == f"DICOM file {report} has no Rows/Columns; is it an image?"
    assert not isinstance(alone.value, SeveralSeriesError)
    with pytest.raises(SeveralSeriesError) as beside:
        DicomVolume(series)
    assert str(beside.value) == (
        f"DICOM file {report} has no Rows/Columns; is it an image? A structured report, key-object "
        f"selection or presentation state is a series of its own: move it out of the series folder {series}"
    )
