"""A ``dicom`` or ``ct`` run without ``orientation`` is predicted along the axis training used.

Such a run cut every DICOM series along the series' own slices, whatever its
``data.params.slice_axis`` said; the datasets refuse another axis now, but runs recorded before
keep it in their ``config.yaml``, and predict cut new scans along it: another plane than the
network learned (the audit's Dice 0.97 -> 0.6), without a warning. The loader reports the axis
training used; predict of such a run labels a series exactly as a run recorded with axis 2 does.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import yaml

import inpaintssl as issl
from dicom_helpers import nifti_on_series, write_series
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.inference.loading import load_model
from predict_helpers import predict_quietly, written_nifti

pytest.importorskip("pydicom")

SIZE, SLICES = 32, 4
POSITIONS = [(-16.0, -16.0, 2.5 * k) for k in range(SLICES)]


def _series(folder: Path) -> Path:
    """A 32 x 32 x 4 MR series: its own slices fit the tiny run's 32 x 32 inputs."""
    stored = np.random.default_rng(7).integers(0, 2000, (SLICES, SIZE, SIZE)).astype(np.int16)
    return write_series(folder, stored, modality="MR", positions=POSITIONS)


def _run_as(trained_run: issl.FinetuneResult, folder: Path, dataset: str, params: dict[str, Any]) -> Path:
    """The tiny run as a ``dataset`` run recorded with ``params`` (its config.yaml), which trained on
    volumes in ``orientation`` (its manifest.json), in the working directory ``folder.parent``."""
    run = Path(shutil.copytree(trained_run.run_dir, folder))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"].update(dataset=dataset, params=params)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def _trained_in(run: Path, orientation: str) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["orientations"] = {orientation: 40}
    (run / "manifest.json").write_text(json.dumps(manifest))


def _axis(run: Path) -> int | None:
    pre = load_model(run).inference_meta.preprocessing
    assert pre is not None
    return pre.slice_axis


def test_a_dicom_run_without_orientation_reports_the_series_own_slices(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    cases = {"train": [str(tmp_path / "series")]}
    for axis in (0, 1):
        run = _run_as(trained_run, tmp_path / f"axis{axis}", "dicom", {"cases": cases, "slice_axis": axis})
        assert _axis(run) == 2
    # With an orientation the series were reoriented and cut along slice_axis: kept.
    oriented = _run_as(
        trained_run, tmp_path / "oriented", "dicom", {"cases": cases, "slice_axis": 0, "orientation": "LPS"}
    )
    assert _axis(oriented) == 0


def test_predict_of_such_a_run_labels_a_series_as_a_run_recorded_with_axis_2(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    series = _series(tmp_path / "series")
    stored = DicomVolume(series).stored_orientation
    assert stored is not None
    runs = {}
    for axis in (0, 2):
        runs[axis] = _run_as(
            trained_run,
            tmp_path / f"axis{axis}",
            "dicom",
            {"cases": {"test": [str(series)]}, "slice_axis": axis},
        )
        _trained_in(runs[axis], stored)  # as training records a series' orientation
    recorded = predict_quietly(runs[2], series, tmp_path / "p2", probabilities=True)
    old = predict_quietly(runs[0], series, tmp_path / "p0", probabilities=True)
    expected = written_nifti(recorded.cases[0].probabilities)
    assert expected.shape == (SIZE, SIZE, SLICES, 2)
    np.testing.assert_array_equal(written_nifti(old.cases[0].probabilities), expected)
    assert old.cases[0].volumes_ml == recorded.cases[0].volumes_ml


def test_a_ct_run_is_looked_up_for_dicom_images_where_its_cases_still_lie(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    data = tmp_path / "started_in" / "data"
    _series(data / "series")
    image = np.zeros((SIZE, SIZE, SLICES), np.float32)
    nib.save(nib.Nifti1Image(image, np.eye(4)), data / "scan.nii.gz")
    # Relative to the folder the run was started in (its manifest's working_directory), not this one.
    runs = {
        name: _run_as(
            trained_run,
            tmp_path / name,
            "ct",
            {"root": "data", "cases": {"train": [pattern]}, "slice_axis": 0},
        )
        for name, pattern in (("dicom_run", "series"), ("nifti_run", "scan.nii.gz"))
    }
    for run in runs.values():
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["working_directory"] = str(tmp_path / "started_in")
        (run / "manifest.json").write_text(json.dumps(manifest))
    assert _axis(runs["dicom_run"]) == 2  # its series were cut along their own slices
    assert _axis(runs["nifti_run"]) == 0  # its NIfTI volumes along slice_axis
    # A study named by series: every image a DICOM series, without looking.
    study = _run_as(trained_run, tmp_path / "study_run", "ct", {"series": "AX", "slice_axis": 1})
    assert _axis(study) == 2
    # Data gone: nothing says they were DICOM; the recorded axis stands, as for NIfTI.
    shutil.rmtree(data)
    assert _axis(runs["dicom_run"]) == 0


def test_evaluate_reads_such_a_run_s_recorded_data_along_the_slices_it_trained_on(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    # Its recorded data section says slice_axis 0, which the dicom dataset refuses now: evaluated
    # as recorded, the run is scored on the slices it trained on, as a run recorded with axis 2.
    series = _series(tmp_path / "series")
    labels = np.zeros((SIZE, SIZE, SLICES), np.uint8)
    labels[4:12, 6:14, :] = 1
    labels[20:26, 18:24, 1:] = 2
    label = nifti_on_series(series, labels, tmp_path / "label.nii.gz")
    cases = {"test": [{"image": str(series), "label": str(label)}]}
    tables = {}
    for axis in (0, 2):
        params = {"cases": cases, "class_names": ["disc", "square"], "slice_axis": axis}
        run = _run_as(trained_run, tmp_path / f"axis{axis}", "dicom", params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tables[axis] = issl.evaluate(run, device="cpu", batch_size=4).rows
    assert len(tables[2]) > SLICES  # every slice, and the volume
    assert tables[0] == tables[2]
