"""The ``dicom`` dataset: DICOM series read as ``nifti`` reads a NIfTI of the same scan.

The expectation is independent of the DICOM reader: the series' stored pixels written as a NIfTI
volume on the series' patient affine (rows x columns x slices), with its label map beside it, read
by the ``nifti`` dataset, whose preprocessing (z-score per volume, orientation) is already
checked. The ``dicom`` dataset must give the same image and label slices from the series and its
label, as a NIfTI label map, an RT Structure Set or a DICOM SEG of the series.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom_helpers import nifti_on_series, write_enhanced, write_series
from inpaintssl.data.base import DataError
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.dicom_dataset import dicom_dataset
from inpaintssl.data.volumes import nifti_dataset
from inpaintssl.inference.rtstruct import write_rtstruct

pydicom = pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 12, 10, 4
CLASSES = ["femur", "tibia"]
POSITIONS = [(-30.0, 12.5, 5.0 + 2.5 * k) for k in range(SLICES)]


def _identity() -> dict[str, Any]:
    from pydicom.uid import generate_uid

    return {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
    }


def _stored(seed: int) -> np.ndarray:
    """``(slices, rows, columns)`` MR signal as stored."""
    return np.random.default_rng(seed).integers(0, 2000, (SLICES, ROWS, COLUMNS)).astype(np.int16)


def _labels() -> np.ndarray:
    labels = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    labels[1:6, 2:8, :3] = 1
    labels[3:4, 4:6, 1] = 0  # a hole
    labels[7:11, 1:5, 1:] = 2
    return labels


def _series(folder: Path, *, enhanced: bool) -> Path:
    if not enhanced:
        return write_series(folder, _stored(1), modality="MR", positions=POSITIONS, identity=_identity())
    order = [3, 1, 0, 2]  # frames stored out of position order
    path = folder.with_suffix(".dcm")
    write_enhanced(
        path,
        _stored(1)[order],
        modality="MR",
        positions=[POSITIONS[k] for k in order],
        identity=_identity(),
    )
    return path


def _twins(series: Path, folder: Path) -> tuple[Path, Path]:
    """The series' stored pixels and the label map as NIfTI files on its patient affine."""
    image = nifti_on_series(series, _stored(1).transpose(1, 2, 0).astype(np.float32), folder / "image.nii.gz")
    return image, nifti_on_series(series, _labels(), folder / "label.nii.gz")


def _label_file(kind: str, series: Path, nifti_label: Path, folder: Path) -> Path:
    if kind == "nifti":
        return nifti_label
    volume = DicomVolume(series)
    if kind == "rtstruct":
        assert volume.patient_affine is not None
        target = folder / "rtstruct.dcm"
        write_rtstruct(_labels(), volume, target, class_names=CLASSES, affine=volume.patient_affine)
        return target
    pytest.importorskip("highdicom", reason="the dicom-seg extra writes the SEG")
    from inpaintssl.inference.dicom_seg import write_dicom_seg

    target = folder / "seg.dcm"
    write_dicom_seg(_labels(), volume, target, class_names=CLASSES)
    return target


def _items(dataset: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(dataset[i]["image"].numpy(), dataset[i]["label"].numpy()) for i in range(len(dataset))]


@pytest.mark.parametrize("orientation", [None, "RAS", "SAR"])
@pytest.mark.parametrize("label_kind", ["nifti", "rtstruct", "seg"])
@pytest.mark.parametrize("enhanced", [False, True], ids=["classic", "enhanced"])
def test_a_series_reads_as_the_nifti_of_the_same_scan(
    tmp_path: Path, enhanced: bool, label_kind: str, orientation: str | None
) -> None:
    series = _series(tmp_path / "series", enhanced=enhanced)
    nifti_image, nifti_label = _twins(series, tmp_path)
    label = _label_file(label_kind, series, nifti_label, tmp_path)
    common = {"split": "train", "class_names": CLASSES, "orientation": orientation}
    mine = _items(dicom_dataset(cases={"train": [{"image": str(series), "label": str(label)}]}, **common))
    theirs = _items(
        nifti_dataset(cases={"train": [{"image": str(nifti_image), "label": str(nifti_label)}]}, **common)
    )
    assert len(mine) == len(theirs) > 0
    for (image, labels), (expected_image, expected_labels) in zip(mine, theirs):
        np.testing.assert_allclose(image, expected_image, rtol=0, atol=1e-5)
        assert np.array_equal(labels, expected_labels)
    assert any(labels.any() for _, labels in mine)


def test_unlabelled_series_need_no_classes(tmp_path: Path) -> None:
    series = _series(tmp_path / "series", enhanced=False)
    dataset = dicom_dataset(split="unlabelled", labelled=False, cases={"unlabelled": [str(series)]})
    assert len(dataset) == SLICES and "label" not in dataset[0]


def test_an_image_that_is_no_dicom_series_is_refused_naming_it(tmp_path: Path) -> None:
    series = _series(tmp_path / "series", enhanced=False)
    nifti_image, nifti_label = _twins(series, tmp_path)
    cases = {"train": [{"image": str(nifti_image), "label": str(nifti_label)}]}
    with pytest.raises(
        DataError, match=rf"dicom case 'image': image {re.escape(str(nifti_image))} is read as NiftiVolume"
    ):
        dicom_dataset(split="train", cases=cases, class_names=CLASSES)


def test_labels_without_class_names_are_refused(tmp_path: Path) -> None:
    series = _series(tmp_path / "series", enhanced=False)
    with pytest.raises(DataError, match=r"dicom: labelled=True needs class_names"):
        dicom_dataset(split="train", cases={"train": [str(series)]})


def test_a_ct_series_is_read_with_a_pointer_to_the_ct_dataset(tmp_path: Path) -> None:
    series = write_series(
        tmp_path / "ct",
        _stored(2),
        modality="CT",
        positions=POSITIONS,
        rescale=[(1.0, -1024.0)] * SLICES,
    )
    with pytest.warns(
        UserWarning, match=r"dicom: 1 series are CT .*; they are z-scored as MR is\. The ct dataset"
    ):
        dataset = dicom_dataset(split="unlabelled", labelled=False, cases={"unlabelled": [str(series)]})
    assert len(dataset) == SLICES


def test_a_series_without_pixel_spacing_is_read_at_1_mm_with_a_warning(tmp_path: Path) -> None:
    series = _series(tmp_path / "series", enhanced=False)
    for path in series.iterdir():
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    with pytest.warns(UserWarning, match=r"dicom: 1 series state no PixelSpacing .*; 1 mm is assumed"):
        dataset = dicom_dataset(split="unlabelled", labelled=False, cases={"unlabelled": [str(series)]})
    assert len(dataset) == SLICES
