"""The ``dicom`` dataset's ``slice_axis`` without ``orientation``: refused, not ignored.

Read as stored, a series is cut along its own slices whatever ``slice_axis`` says. Ignored, the
axis was still recorded with the run, and ``predict`` cut new scans along it: another plane than
the network learned. Another axis is refused now, naming both settings; with ``orientation`` it
counts the axes of the reoriented series, as the ``nifti`` dataset counts a NIfTI's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_helpers import nifti_on_series, write_series
from inpaintssl.config import ConfigError
from inpaintssl.data.dicom_dataset import dicom_dataset
from inpaintssl.data.volumes import nifti_dataset

pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 12, 10, 4
POSITIONS = [(-30.0, 12.5, 5.0 + 2.5 * k) for k in range(SLICES)]


def _stored() -> np.ndarray:
    """``(slices, rows, columns)`` MR signal as stored."""
    return np.random.default_rng(3).integers(0, 2000, (SLICES, ROWS, COLUMNS)).astype(np.int16)


def _series(folder: Path) -> Path:
    return write_series(folder, _stored(), modality="MR", positions=POSITIONS)


@pytest.mark.parametrize("axis", [0, 1, -2, -3])
def test_another_slice_axis_without_orientation_is_refused_naming_both_settings(
    tmp_path: Path, axis: int
) -> None:
    series = _series(tmp_path / "series")
    told = (
        rf"^dicom: data\.params\.slice_axis={axis} without data\.params\.orientation, but its images are "
        r"DICOM series: .* cut along its own slices \(axis 2\).*expected slice_axis 2 \(or left out\).*"
        r"data\.params\.orientation"
    )
    with pytest.raises(ConfigError, match=told):
        dicom_dataset(
            split="unlabelled", labelled=False, cases={"unlabelled": [str(series)]}, slice_axis=axis
        )


@pytest.mark.parametrize("axis", [2, -1])
def test_the_series_own_slices_need_no_orientation(tmp_path: Path, axis: int) -> None:
    series = _series(tmp_path / "series")
    dataset = dicom_dataset(
        split="unlabelled", labelled=False, cases={"unlabelled": [str(series)]}, slice_axis=axis
    )
    assert len(dataset) == SLICES


@pytest.mark.parametrize("axis", [0, 1])
def test_with_an_orientation_the_axis_cuts_the_reoriented_series_as_nifti_cuts_its_twin(
    tmp_path: Path, axis: int
) -> None:
    # The twin: the series' stored pixels as a NIfTI volume on its patient affine, read by the
    # nifti dataset in the same orientation along the same axis.
    series = _series(tmp_path / "series")
    twin = nifti_on_series(series, _stored().transpose(1, 2, 0).astype(np.float32), tmp_path / "twin.nii.gz")
    common = {"split": "unlabelled", "labelled": False, "orientation": "RAS", "slice_axis": axis}
    mine = dicom_dataset(cases={"unlabelled": [str(series)]}, **common)
    theirs = nifti_dataset(cases={"unlabelled": [str(twin)]}, **common)
    assert len(mine) == len(theirs) == {0: COLUMNS, 1: ROWS}[axis]
    for k in range(len(mine)):
        np.testing.assert_allclose(mine[k]["image"].numpy(), theirs[k]["image"].numpy(), rtol=0, atol=1e-5)
