"""``predict 'scans/*.nii.gz'`` over scans kept beside their label maps labels the maps too: warned."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

import inpaintssl as issl
from inpaintssl.inference.predict import predict


def test_a_label_map_among_the_inputs_is_predicted_with_a_warning_naming_it(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    label = np.zeros((32, 32, 3), np.uint8)
    label[8:20, 8:20] = 1
    label[12:16, 12:16] = 2
    image = (label + np.random.default_rng(0).normal(0, 0.3, label.shape)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), scans / "a.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), scans / "a_seg.nii.gz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = predict(
            trained_run.run_dir, f"{scans}/*.nii.gz", output=tmp_path / "out", device="cpu", progress=False
        )
    assert [case.case for case in report.cases] == ["a", "a_seg"]  # still predicted: a warning only
    named = [str(w.message) for w in caught if "label map" in str(w.message)]
    assert len(named) == 1
    assert (
        f"image {scans / 'a_seg.nii.gz'} holds only 3 distinct values, all whole numbers (0, 1, 2)"
        in named[0]
    )
