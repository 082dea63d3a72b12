"""The ``dicom`` dataset: DICOM series read as ``nifti`` reads a NIfTI of the same scan.

The expectation is independent of the DICOM reader: the series' stored pixels written as a NIfTI
volume on the series' patient affine (rows x columns x slices), with its label map beside it, read
by the ``nifti`` dataset, whose preprocessing (z-score per volume, orientation) is already
checked. The ``dicom`` dataset must give the same image and label slices from the series and its
label, as a NIfTI label map, an RT Structure Set or a DICOM SEG of the series.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
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


# Rows run along (0, 0.8, 0.6): a gantry tilted by 36.87 degrees about x, with cosines exact in
# decimal. Its slices lie 5 mm apart along z (the table's step) but 4 mm apart along the slice
# normal (row x column = (0, -0.6, 0.8)): the series' slice spacing is 4 mm, its affine's step 5 mm.
TILTED = (1.0, 0.0, 0.0, 0.0, 0.8, 0.6)


def _hand_affine(
    orientation: tuple[float, ...], first: tuple[float, ...], last: tuple[float, ...], slices: int
) -> np.ndarray:
    """The series' voxel-to-world (RAS+) matrix worked from its tags by DICOM's formula, not the reader's.

    Array axis 0 steps a row spacing (0.5 mm, :func:`write_single_frame`'s) along the column
    direction, axis 1 a column spacing (0.75 mm) along the row direction, axis 2 from the first
    slice's position to the last's; RAS negates LPS's x and y.
    """
    lps = np.eye(4)
    lps[:3, 0] = np.array(orientation[3:]) * 0.5
    lps[:3, 1] = np.array(orientation[:3]) * 0.75
    lps[:3, 2] = (np.array(last) - np.array(first)) / (slices - 1)
    lps[:3, 3] = first
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


@pytest.mark.parametrize(
    ("orientation", "heights", "slice_spacing"),
    [
        (TILTED, [0.0, 5.0, 10.0, 15.0], 4.0),  # gantry tilt: the affine steps 5 mm, the normal 4 mm
        ((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), [5.0, 7.5, 10.0, 15.0], 2.5),  # 12.5 missing: mean step 3.33 mm
    ],
    ids=["gantry-tilt", "missing-slice"],
)
def test_a_nifti_label_on_the_series_own_affine_is_its_label_where_the_slice_steps_differ(
    tmp_path: Path, orientation: tuple[float, ...], heights: list[float], slice_spacing: float
) -> None:
    from inpaintssl.data.preflight import preflight

    positions = [(-30.0, 12.5, z) for z in heights]
    series = write_series(
        tmp_path / "series", _stored(3), modality="MR", positions=positions, orientation=orientation
    )
    affine = _hand_affine(orientation, positions[0], positions[-1], SLICES)
    # The label's pixdim is its affine's column lengths: 5 mm (or 3.33 mm) slices where the series'
    # spacing along the normal is 4 mm (2.5 mm); the grids in space are one.
    nib.Nifti1Image(_labels(), affine).to_filename(tmp_path / "label.nii.gz")  # type: ignore[no-untyped-call]
    cases = {"train": [{"image": str(series), "label": str(tmp_path / "label.nii.gz")}]}
    with warnings.catch_warnings():
        # The missing slice's warning: such a series trains with it.
        warnings.filterwarnings(
            "ignore", message=r"DICOM series folder .* mm apart where", category=UserWarning
        )
        assert DicomVolume(series).spacing[2] == pytest.approx(slice_spacing)  # not the affine's step
        dataset = dicom_dataset(split="train", cases=cases, class_names=CLASSES)
        preflight({"train": dataset}, progress=False, threads=1)
        read = [labels for _, labels in _items(dataset)]
        # Each slice's label as written, one channel per class (femur 1, tibia 2).
        expected = [np.stack([_labels()[:, :, k] == c for c in (1, 2)]) for k in range(SLICES)]
        assert len(read) == SLICES and all(np.array_equal(a, b) for a, b in zip(read, expected))
        # Another grid is still refused: the same label on a grid that steps the normal spacing
        # along z (resampled to the series' spacing, off its tilted or uneven slices).
        resampled = affine.copy()
        resampled[:3, 2] *= slice_spacing / np.linalg.norm(affine[:3, 2])
        nib.Nifti1Image(_labels(), resampled).to_filename(tmp_path / "label.nii.gz")  # type: ignore[no-untyped-call]
        with pytest.raises(DataError, match=r"label .*label\.nii\.gz has affine .* expected the same voxel"):
            preflight(
                {"train": dicom_dataset(split="train", cases=cases, class_names=CLASSES)}, progress=False
            )
