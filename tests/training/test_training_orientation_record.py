"""A run records the orientations of its training volumes and warns when they are mixed.

Two copies of one scan, stored in two axis orders (nibabel's reorientation keeps every voxel's
world position), pretrain a tiny U-Net: as stored, the run's slices show two different planes and
it warns; with the ``nifti`` dataset's ``orientation`` it reads both alike and records one order.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from nifti_helpers import stored_as

AFFINE = np.array([[0.0, -2.0, 0.0, 10.0], [2.0, 0.0, 0.0, -5.0], [0.0, 0.0, 2.0, 0.0], [0, 0, 0, 1]])


def _scans(root: Path) -> None:
    rng = np.random.default_rng(0)
    image = nib.Nifti1Image(rng.normal(size=(16, 16, 16)).astype(np.float32), AFFINE)  # stored "ALS"
    for name, codes in (("a", "ALS"), ("b", "SRA"), ("v", "ALS")):
        nib.save(stored_as(image, codes), root / f"{name}.nii")


def _pretrain(root: Path, out: Path, **params: Any) -> Path:
    cases = {"train": ["a.nii", "b.nii"], "val": "v.nii"}
    result = issl.pretrain(
        {
            "data": {"dataset": "nifti", "params": {"root": str(root), "cases": cases, **params}},
            "model": {"params": {"depth": 2, "base_width": 4}},
            "pretext": {"patch_size": 4, "bank_size": 4},
            "optim": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 4},
            "run": {"output_dir": str(out), "device": "cpu", "quiet": True},
        }
    )
    return result.run_dir


def test_mixed_orientations_are_recorded_with_a_warning(tmp_path: Path) -> None:
    _scans(tmp_path)
    told = r"the training slices come from volumes in 2 orientations \(ALS: 16 slices, SRA: 16 slices\)"
    with pytest.warns(UserWarning, match=told):
        run = _pretrain(tmp_path, tmp_path / "stored")
    assert json.loads((run / "manifest.json").read_text())["orientations"] == {"ALS": 16, "SRA": 16}


def test_volumes_read_in_one_orientation_are_recorded_as_one(tmp_path: Path) -> None:
    _scans(tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*orientations")
        run = _pretrain(tmp_path, tmp_path / "ras", orientation="RAS")
    assert json.loads((run / "manifest.json").read_text())["orientations"] == {"RAS": 32}
