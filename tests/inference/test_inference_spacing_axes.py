"""A scan's in-plane spacing is compared with the run's axis by axis where its axes are known.

A run trained at rows 1 mm x columns 2 mm sees a scan at rows 2 x columns 1 (the same orientation)
squashed along one axis and stretched along the other. The range used to be compared sorted
(finer axis first), so such a scan counted as fitting: no warning, and ``resample="outside"`` did
nothing; a scan outside the range was resampled to the transpose of the training spacing. Runs
record the range per axis now; predict reads a scan in the training orientation first, so its
rows and columns are the training slices', and compares each with its own. A scan whose axes
nothing places (NumPy, HDF5) fits either way round, and a run recorded before keeps the sorted
comparison.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from inpaintssl.inference.predict import predict

SIZE = 32
PER_AXIS = {"smallest": [1.0, 2.0], "largest": [1.0, 2.0], "axes": "rows_columns"}
"""Rows 1 mm x columns 2 mm, recorded per axis."""
SORTED = {"smallest": [1.0, 2.0], "largest": [1.0, 2.0]}
"""The same, as runs recorded it before: a sorted pair, whose finer axis is unknown."""


def _run(trained_run: issl.FinetuneResult, folder: Path, spacing: dict[str, Any]) -> Path:
    """The tiny run as one trained on RAS volumes at ``spacing`` (its manifest.json)."""
    run = Path(shutil.copytree(trained_run.run_dir, folder))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["in_plane_spacing_mm"] = spacing
    manifest["orientations"] = {"RAS": 16}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def _scan(path: Path, rows_mm: float, cols_mm: float, *, label: bool = False) -> Path:
    """A 32 x 32 x 3 RAS volume at rows ``rows_mm`` x columns ``cols_mm`` (its affine)."""
    rng = np.random.default_rng(0)
    array = (rng.integers(0, 3, (SIZE, SIZE, 3)) if label else rng.normal(size=(SIZE, SIZE, 3))).astype(
        np.uint8 if label else np.float32
    )
    nib.save(nib.Nifti1Image(array, np.diag([rows_mm, cols_mm, 3.0, 1.0])), path)
    return path


def _predicted(run: Path, scans: list[Path], out: Path, **options: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = predict(run, scans, output=out, device="cpu", progress=False, **options)
    return report, [str(w.message) for w in caught if "in-plane voxel spacing" in str(w.message)]


def test_a_scan_with_rows_and_columns_swapped_does_not_fit_and_is_told(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    run = _run(trained_run, tmp_path / "run", PER_AXIS)
    native = _scan(tmp_path / "native.nii.gz", 1.0, 2.0)
    swapped = _scan(tmp_path / "swapped.nii.gz", 2.0, 1.0)
    report, told = _predicted(run, [native, swapped], tmp_path / "p")
    assert [(c.spacing_mm, c.spacing_fits_training) for c in report.cases] == [
        ((1.0, 2.0), True),
        ((2.0, 1.0), False),
    ]
    assert len(told) == 1
    assert re.search(r"swapped\.nii\.gz: in-plane voxel spacing 2 x 1 mm .* trained on 1 x 2 mm", told[0])


def test_resampling_targets_each_axis_its_own_training_spacing(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    run = _run(trained_run, tmp_path / "run", PER_AXIS)
    scans = [_scan(tmp_path / "swapped.nii.gz", 2.0, 1.0), _scan(tmp_path / "r2c05.nii.gz", 2.0, 0.5)]
    report, told = _predicted(run, scans, tmp_path / "p", resample="outside")
    assert not told
    # Rows to 1 mm, columns to 2 mm: the training slices' grid, not its transpose (2 x 1).
    assert [c.resampled_to_mm for c in report.cases] == [(1.0, 2.0), (1.0, 2.0)]


def test_an_array_without_orientation_fits_either_way_round(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    # Nothing tells which of a NumPy array's axes is which of the training slices' rows and columns.
    run = _run(trained_run, tmp_path / "run", PER_AXIS)
    array = tmp_path / "scan.npy"
    np.save(array, np.random.default_rng(0).normal(size=(SIZE, SIZE, 3)).astype(np.float32))
    report, told = _predicted(run, [array], tmp_path / "p", spacing=(2.0, 1.0, 3.0))
    assert report.cases[0].spacing_fits_training is True and not told
    # Outside, it is resampled to the nearer of the two ways round: its rows to 2 mm, columns to 1 mm.
    report, _ = _predicted(run, [array], tmp_path / "q", spacing=(2.0, 0.5, 3.0), resample="outside")
    assert report.cases[0].resampled_to_mm == (2.0, 1.0)


def test_a_run_recorded_before_keeps_the_sorted_comparison(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    run = _run(trained_run, tmp_path / "run", SORTED)
    report, told = _predicted(run, [_scan(tmp_path / "swapped.nii.gz", 2.0, 1.0)], tmp_path / "p")
    assert report.cases[0].spacing_fits_training is True and not told


def test_evaluate_tells_data_with_rows_and_columns_swapped(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    run = _run(trained_run, tmp_path / "run", PER_AXIS)
    for rows_mm, cols_mm, name in ((1.0, 2.0, "native"), (2.0, 1.0, "swapped")):
        folder = tmp_path / name
        folder.mkdir()
        _scan(folder / "c.nii.gz", rows_mm, cols_mm)
        _scan(folder / "c_seg.nii.gz", rows_mm, cols_mm, label=True)

    def data(folder: str) -> dict[str, Any]:
        cases = {"test": {"image": "c.nii.gz", "label": "c_seg.nii.gz"}}
        return {
            "dataset": "nifti",
            "params": {"root": str(tmp_path / folder), "cases": cases, "class_names": ["disc", "square"]},
        }

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        issl.evaluate(run, data("native"), device="cpu")
    told = r"evaluate: the data's in-plane voxel spacing as the model sees it, 2 x 1 mm, .* 1 x 2 mm"
    with pytest.warns(UserWarning, match=told):
        issl.evaluate(run, data("swapped"), device="cpu")
