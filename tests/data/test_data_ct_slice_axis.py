"""The ``ct`` dataset's ``slice_axis`` for DICOM series read without ``orientation``: refused.

``slice_axis`` cuts NIfTI, MetaImage, NRRD and NumPy volumes; a DICOM series read as stored is cut
along its own slices all the same. Ignored, the axis was recorded with the run (and ``predict``
cut new scans along it), and a NIfTI label map beside the series, cut along it, was refused for
its shape, naming neither setting. Another axis is refused for a DICOM image now, before its
label is read, naming the case and both settings.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from data_builders import write_dicom_slice, write_nifti

from inpaintssl.config import ConfigError
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.dicom import DicomVolume

pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 3, 5, 4


def _series(folder: Path) -> Path:
    folder.mkdir(parents=True)
    stored = np.random.default_rng(5).integers(0, 2000, (SLICES, ROWS, COLUMNS)).astype(np.int16)
    for k in range(SLICES):
        write_dicom_slice(
            folder / f"s{k}.dcm", stored[k], slope=1.0, intercept=-1024.0, z=2.5 * k, instance=k + 1
        )
    return folder


def _told(case: str, image: Path, axis: int) -> str:
    return (
        rf"^ct: data\.params\.slice_axis={axis} without data\.params\.orientation, but the image of case "
        rf"'{case}', {re.escape(str(image))}, is a DICOM series: .*expected slice_axis 2"
    )


def test_a_dicom_image_with_another_axis_is_refused_naming_the_case(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    with pytest.raises(ConfigError, match=_told("series", series, 0)):
        ct_dataset(split="unlabelled", labelled=False, cases=str(series), slice_axis=0)


def test_a_nifti_label_beside_it_no_longer_hides_the_setting_behind_a_shape_error(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    label = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    label[1, 1:3, :] = 1
    write_nifti(tmp_path / "label.nii.gz", label, spacing=(0.7, 0.8, 2.5))
    cases = {"train": [{"image": str(series), "label": str(tmp_path / "label.nii.gz")}]}
    with pytest.raises(ConfigError, match=_told("series", series, 1)):
        ct_dataset(split="train", cases=cases, class_names=["bone"], slice_axis=1)


def test_nifti_images_and_reoriented_series_still_take_any_axis(tmp_path: Path) -> None:
    series = _series(tmp_path / "series")
    hu = np.random.default_rng(1).uniform(-1000, 1000, size=(3, 6, 5)).astype(np.float32)
    write_nifti(tmp_path / "ct.nii.gz", hu, spacing=(1.0, 1.0, 1.0))
    nifti = ct_dataset(split="unlabelled", labelled=False, cases=str(tmp_path / "ct.nii.gz"), slice_axis=0)
    assert len(nifti) == 3
    # Reoriented to its own stored axis order, cut along axis 0: one slice per stored row.
    stored = DicomVolume(series).stored_orientation
    assert stored is not None
    reoriented = ct_dataset(
        split="unlabelled", labelled=False, cases=str(series), slice_axis=0, orientation=stored
    )
    assert len(reoriented) == ROWS
    assert len(ct_dataset(split="unlabelled", labelled=False, cases=str(series), slice_axis=-1)) == SLICES
