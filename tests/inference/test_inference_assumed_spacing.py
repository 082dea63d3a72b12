"""A NumPy/HDF5 input without ``spacing`` is always told that 1 mm is assumed (audit item 4c).

The ``trained_run`` fixture trained on 1 mm synthetic slices, so 1 mm lies inside its training
range: the range check says nothing, and only the assumption itself can be reported.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import inpaintssl as issl
from inpaintssl.inference.loading import recorded_spacing
from inpaintssl.inference.predict import predict


def _scan(path: Path) -> Path:
    image = np.random.default_rng(0).normal(size=(32, 32, 3)).astype(np.float32)
    if path.suffix == ".npy":
        np.save(path, image)
    else:
        with h5py.File(path, "w") as handle:
            handle.create_dataset("image", data=image)
    return path


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_an_array_without_spacing_always_warns_that_1_mm_is_assumed(
    trained_run: issl.FinetuneResult, tmp_path: Path, suffix: str
) -> None:
    trained = recorded_spacing(trained_run.run_dir)
    assert trained is not None and trained.fits((1.0, 1.0))  # no range warning can stand in for it
    scan = _scan(tmp_path / f"scan{suffix}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(trained_run.run_dir, scan, output=tmp_path / "a", device="cpu", progress=False)
    told = [str(w.message) for w in caught if "1 mm is assumed" in str(w.message)]
    assert len(told) == 1
    assert told[0].startswith(f"input {scan}: ")
    assert re.search(r"spacing=\.\.\. \(--spacing", told[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(
            trained_run.run_dir, scan, output=tmp_path / "b", device="cpu", progress=False, spacing=(1, 1, 1)
        )
