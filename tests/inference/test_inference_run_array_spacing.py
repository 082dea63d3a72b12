"""A NumPy/HDF5 input given no ``spacing`` is read at the run's ``data.params.spacing``.

Such files state no voxel size, and neither did the run's own: it read them at its
``data.params.spacing``. Predict assumed 1 mm instead, so a scan just like the training ones was
taken for one at another resolution: ``resample="outside"`` rescaled it (the audit's Dice 0.97 ->
0.88), and its volumes in mL were wrong. Not given, the run's spacing is assumed now, and the
warning that fires names it; a run that stated none still reads them at 1 mm.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pytest
import yaml

import inpaintssl as issl
from inpaintssl.inference.inputs import open_input
from inpaintssl.inference.loading import load_model
from inpaintssl.inference.predict import predict
from inpaintssl.inference.trained_run import slice_preprocessing

SHAPE = (32, 32, 3)


def _run(trained_run: issl.FinetuneResult, folder: Path, dataset: str, spacing: list[float]) -> Path:
    """The tiny run as a ``dataset`` run whose arrays were read at ``spacing`` (config.yaml), which
    its training slices' in-plane spacing (manifest.json) follows."""
    run = Path(shutil.copytree(trained_run.run_dir, folder))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"].update(dataset=dataset, params={"cases": {"train": "*.npy"}, "spacing": spacing})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    manifest = json.loads((run / "manifest.json").read_text())
    rows_cols = spacing[:2]
    manifest["in_plane_spacing_mm"] = {"smallest": rows_cols, "largest": rows_cols, "axes": "rows_columns"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def _scan(path: Path) -> Path:
    image = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    if path.suffix == ".npy":
        np.save(path, image)
    else:
        with h5py.File(path, "w") as handle:
            handle.create_dataset("image", data=image)
    return path


def _predicted(run: Path, scan: Path, out: Path, **options: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = predict(run, scan, output=out, device="cpu", progress=False, **options)
    return report.cases[0], [str(w.message) for w in caught]


@pytest.mark.parametrize(("dataset", "suffix"), [("numpy", ".npy"), ("hdf5", ".h5")])
def test_an_array_is_read_at_the_run_s_spacing_when_given_none(
    trained_run: issl.FinetuneResult, tmp_path: Path, dataset: str, suffix: str
) -> None:
    run = _run(trained_run, tmp_path / "run", dataset, [0.5, 0.5, 2.0])
    scan = _scan(tmp_path / f"scan{suffix}")
    case, told = _predicted(run, scan, tmp_path / "a", resample="outside")
    assert (case.spacing_mm, case.spacing_fits_training, case.resampled_to_mm) == ((0.5, 0.5), True, None)
    assert nib.load(case.segmentation).header.get_zooms()[:3] == (0.5, 0.5, 2.0)
    assumed = [m for m in told if "states no voxel size" in m]
    assert len(assumed) == 1
    assert re.search(
        r"so the run's data\.params\.spacing, 0\.5 x 0\.5 x 2 mm along the stored axes of its \(32, 32, 3\) "
        r"array .*, is assumed.*give the scan's own with spacing=\.\.\. \(--spacing",
        assumed[0],
    )
    assert not any("in-plane voxel spacing" in m for m in told)  # it fits: nothing else to tell
    # The same as given explicitly, to the last voxel and mL.
    given, _ = _predicted(run, scan, tmp_path / "b", resample="outside", spacing=(0.5, 0.5, 2.0))
    assert np.array_equal(
        np.asarray(nib.load(given.segmentation).dataobj), np.asarray(nib.load(case.segmentation).dataobj)
    )
    assert given.volumes_ml == case.volumes_ml
    # A spacing given still wins.
    other, _ = _predicted(run, scan, tmp_path / "c", spacing=(0.6, 0.6, 2.0))
    assert other.spacing_mm == (0.6, 0.6)


def test_a_ct_run_s_spacing_is_its_numpy_images_too(trained_run: issl.FinetuneResult, tmp_path: Path) -> None:
    # A ct run stacks three windows (the tiny run takes one channel): its inputs are opened alone.
    run = _run(trained_run, tmp_path / "run", "ct", [0.7, 0.8, 2.5])
    prep = slice_preprocessing(load_model(run).inference_meta.preprocessing, slice_axis=None)
    assert prep.array_spacing == (0.7, 0.8, 2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        volume, geometry = open_input(_scan(tmp_path / "scan.npy"), prep=prep, key=None, spacing=None)
    assert volume.spacing == (0.7, 0.8, 2.5) and geometry.zooms == (0.7, 0.8, 2.5)


def test_a_run_s_2d_spacing_is_taken_with_a_1_mm_thickness(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    run = _run(trained_run, tmp_path / "run", "numpy", [0.5, 0.5])
    case, _ = _predicted(run, _scan(tmp_path / "scan.npy"), tmp_path / "a")
    assert case.spacing_mm == (0.5, 0.5)
    assert nib.load(case.segmentation).header.get_zooms()[:3] == (0.5, 0.5, 1.0)


def test_a_run_that_stated_no_spacing_still_reads_arrays_at_1_mm(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    case, told = _predicted(trained_run.run_dir, _scan(tmp_path / "scan.npy"), tmp_path / "a")
    assert case.spacing_mm == (1.0, 1.0)
    assert any("so 1 mm is assumed along every axis" in m for m in told)
