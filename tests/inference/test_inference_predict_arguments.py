"""``predict`` and ``load_model`` refuse a wrong argument naming it, before any model is loaded."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from inpaintssl.inference.predict import PredictionError, predict

predict_module = importlib.import_module("inpaintssl.inference.predict")


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    image = np.random.default_rng(0).normal(0.0, 1.0, size=(32, 32, 3)).astype(np.float32)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image, np.eye(4)), path)
    return path


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(predict_module, "load_prediction_model", load)


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_a_device_other_than_cpu_or_cuda_is_refused_by_predict_and_load_model(
    trained_run: issl.FinetuneResult, scan: Path, tmp_path: Path, device: str
) -> None:
    # load_model(run, device="meta") gave back a network without weights, which predicted nothing.
    message = rf"^device={device!r} is not a valid option: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
    with pytest.raises(ValueError, match=message):
        issl.load_model(trained_run.run_dir, device=device)
    with pytest.raises(ValueError, match=message):
        predict(trained_run.run_dir, scan, output=tmp_path / "p", progress=False, device=device)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"batch_size": "4"}, TypeError, r"^batch_size='4': expected a positive integer; found str$"),
        ({"batch_size": True}, TypeError, r"^batch_size=True: expected a positive integer; found bool$"),
        ({"batch_size": None}, TypeError, r"^batch_size=None: expected a positive integer; found NoneType$"),
        ({"batch_size": 0}, ValueError, r"^batch_size=0; expected a positive integer$"),
        (
            {"inputs": None},
            TypeError,
            r"^inputs: expected a file, folder or glob pattern \(str or os\.PathLike\), or a list of them; "
            r"found NoneType$",
        ),
        ({"inputs": 7}, TypeError, r"^inputs: expected .*; found int$"),
        ({"inputs": b"scan.nii.gz"}, TypeError, r"^inputs: expected .*; found bytes$"),
        ({"inputs": ["SCAN", None]}, TypeError, r"^inputs\[1\]=None: expected .*; found NoneType$"),
        ({"inputs": []}, PredictionError, r"^inputs=\[\]: no inputs given; expected NIfTI/NumPy/HDF5 files"),
        (
            {"output": None},
            TypeError,
            r"^output: expected a folder path \(str or os\.PathLike\); found NoneType$",
        ),
        ({"device": "mps"}, ValueError, r"^device='mps' is not a valid option"),
        # "'float' object is not iterable", "could not convert string to float: '.'" and
        # "'<=' not supported", naming no argument.
        (
            {"spacing": 0.8},
            TypeError,
            r"^spacing=0\.8: expected 2 or 3 voxel sizes in mm, a list .*; found float$",
        ),
        (
            {"spacing": "0.5 0.5 2"},
            TypeError,
            r"^spacing='0\.5 0\.5 2': expected 2 or 3 voxel sizes .*; found str$",
        ),
        (
            {"spacing": np.array([[0.5, 0.5, 2.0]])},
            TypeError,
            r"^spacing=array\(\[\[0\.5, 0\.5, 2\. \]\]\): expected",
        ),
        (
            {"spacing": [0.5, "x", 2]},
            TypeError,
            r"^spacing=\[0\.5, 'x', 2\]: expected 2 or 3 voxel sizes in mm, each a number$",
        ),
        (
            {"overlap": "0.5"},
            TypeError,
            r"^overlap='0\.5': expected a number, a share of the window in \[0, 1\); found str$",
        ),
        ({"overlap": None}, TypeError, r"^overlap=None: expected a number.*; found NoneType$"),
    ],
)
def test_a_wrong_argument_is_named_before_the_model_is_loaded(
    trained_run: issl.FinetuneResult,
    scan: Path,
    tmp_path: Path,
    no_loading: None,
    arguments: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    # "4" and None failed as "'<' not supported", None inputs as "'NoneType' object is not
    # iterable" once the model had loaded, output=None as pathlib's "expected str, bytes or
    # os.PathLike object", naming none of them.
    call: dict[str, Any] = {"inputs": scan, "output": tmp_path / "p", "progress": False, **arguments}
    if isinstance(call["inputs"], list):
        call["inputs"] = [scan if item == "SCAN" else item for item in call["inputs"]]
    with pytest.raises(error, match=message):
        predict(trained_run.run_dir, **call)
    assert not (tmp_path / "p").exists()


def test_inputs_given_as_a_tuple_or_an_iterator_are_each_predicted_once(
    trained_run: issl.FinetuneResult, scan: Path, tmp_path: Path
) -> None:
    # The inputs are made a list before they are checked: an iterator is read once, not used up.
    other = tmp_path / "other.nii.gz"
    other.write_bytes(scan.read_bytes())
    for name, inputs in (("tuple", (scan, other)), ("iterator", iter([scan, other]))):
        report = predict(trained_run.run_dir, inputs, output=tmp_path / name, progress=False)
        assert sorted(case.case for case in report.cases) == ["other", "scan"], name
