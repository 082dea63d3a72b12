"""An interrupted predict's finished cases, taken by the next predict of the same prediction.

The reference for every resumed predict is an uninterrupted one of the same inputs: the label maps
and ``volumes.csv`` must be the same, and the cases predicted again only those the interrupted
predict had not finished.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

import inpaintssl as issl
from inpaintssl.cli import main as cli_main
from inpaintssl.data.readers import NiftiVolume
from inpaintssl.inference.resume import prediction_identity
from predict_helpers import written_niftis

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="taking a folder over needs flock")

CASES = ("a", "b", "c")
predict_module = importlib.import_module("inpaintssl.inference.predict")


def _scan(path: Path, seed: int) -> None:
    image = np.random.default_rng(seed).normal(0.0, 1.0, size=(32, 32, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), path)


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    for seed, name in enumerate(CASES):
        _scan(folder / f"{name}.nii.gz", seed)
    return folder


class _Stop(BaseException):
    """Raised where the user's Ctrl-C would be."""


class _ModelCalls:
    """The cases the model predicted, in order; ``stop_at``: the next call for that case raises."""

    def __init__(self) -> None:
        self.cases: list[str] = []
        self.stop_at: str | None = None


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> _ModelCalls:
    """The real prediction of each case, counted, and interrupted where a test says."""
    real = predict_module.predict_case
    calls = _ModelCalls()

    def counted(item: Any, **kwargs: Any) -> Any:
        if item.case == calls.stop_at:
            calls.stop_at = None
            raise _Stop(item.case)
        calls.cases.append(item.case)
        return real(item, **kwargs)

    monkeypatch.setattr(predict_module, "predict_case", counted)
    return calls


def _interrupted(run: Path, scans: Any, out: Path, at: str, calls: _ModelCalls, **options: Any) -> Path:
    """Predict ``scans`` into ``out``, stopped at case ``at``; return the staging folder it kept."""
    calls.stop_at = at
    with pytest.raises(_Stop):
        issl.predict(run, scans, output=out, progress=False, **options)
    calls.cases.clear()
    assert not out.exists()
    (kept,) = (p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))
    return kept


def _outputs(folder: Path) -> dict[str, Any]:
    found: dict[str, Any] = {"volumes.csv": (folder / "volumes.csv").read_text()}
    for name, (array, affine) in written_niftis(folder).items():
        found[name] = (array.tolist(), affine.tolist())
    return found


def _beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


_KILLED_AFTER_FIRST_CASE = """
import importlib, os, signal, sys
predict_module = importlib.import_module("inpaintssl.inference.predict")
run, scans, out = sys.argv[1:4]
record_case = predict_module.record_case

def record_then_die(*args, **kwargs):
    record_case(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # the first case finished and recorded, nothing moved into output

predict_module.record_case = record_then_die
predict_module.predict(run, scans, output=out, progress=False, probabilities=True)
"""


def test_a_killed_predict_is_resumed_and_writes_what_an_uninterrupted_one_writes(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, calls: _ModelCalls
) -> None:
    run = trained_run.run_dir
    out = tmp_path / "pred"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_FIRST_CASE, str(run), str(scans), str(out)],
        capture_output=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert not out.exists() and len(_beside(out)) == 1
    report = issl.predict(run, scans, output=out, progress=False, probabilities=True)
    assert report.resumed == ("a",) and calls.cases == ["b", "c"]
    assert [c.case for c in report.cases] == list(CASES)
    assert _beside(out) == []  # the kept folder became the output, without its records
    files = [f"{name}_{kind}.nii.gz" for name in CASES for kind in ("prob", "seg")]
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "volumes.csv"])
    calls.cases.clear()
    reference = issl.predict(run, scans, output=tmp_path / "reference", progress=False, probabilities=True)
    assert calls.cases == list(CASES) and reference.resumed == ()
    assert _outputs(out) == _outputs(tmp_path / "reference")
    assert [c.volumes_ml for c in report.cases] == [c.volumes_ml for c in reference.cases]
    assert [c.probabilities for c in report.cases] == [out / f"{name}_prob.nii.gz" for name in CASES]


def test_a_resumed_predict_gives_again_the_warnings_of_the_check_it_does_not_repeat(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, calls: _ModelCalls
) -> None:
    # Case "a" holds three whole-number values: the full check asks "is it a label map?". A resumed
    # predict takes "a" without reading it in full, and gave no warning: the log kept of a killed
    # cohort job is the last one's. Interrupted twice, the second predict's record of "a" must
    # still hold the first check's warning for the third.
    image = np.random.default_rng(9).integers(0, 3, size=(32, 32, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), scans / "a.nii.gz")
    run, out = trained_run.run_dir, tmp_path / "pred"

    def label_map_warnings(caught: Any) -> list[str]:
        return [str(w.message) for w in caught if "is it a label map?" in str(w.message)]

    with pytest.warns(UserWarning) as first:
        _interrupted(run, scans, out, "b", calls)
    said = label_map_warnings(first)
    assert len(said) == 1 and "'a'" in said[0]
    with pytest.warns(UserWarning) as second:
        _interrupted(run, scans, out, "c", calls)
    assert label_map_warnings(second) == said
    with pytest.warns(UserWarning) as third:
        report = issl.predict(run, scans, output=out, progress=False)
    assert report.resumed == ("a", "b") and calls.cases == ["c"]
    assert label_map_warnings(third) == said


def test_a_record_written_before_check_warnings_were_kept_is_still_taken(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, calls: _ModelCalls
) -> None:
    run, out = trained_run.run_dir, tmp_path / "pred"
    kept = _interrupted(run, scans, out, "b", calls)
    (record,) = (kept / ".predict-resume").glob("*.json")
    fields = json.loads(record.read_text())
    del fields["check_warnings"]  # as an interrupted predict of an earlier version wrote it
    record.write_text(json.dumps(fields))
    report = issl.predict(run, scans, output=out, progress=False)
    assert report.resumed == ("a",) and calls.cases == ["b", "c"]


def test_an_interrupted_predict_keeps_only_finished_cases_and_the_next_removes_everything_else(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, calls: _ModelCalls
) -> None:
    run = trained_run.run_dir
    out = tmp_path / "pred"
    kept = _interrupted(run, scans, out, "c", calls)
    assert sorted(p.name for p in kept.iterdir()) == [".predict-resume", "a_seg.nii.gz", "b_seg.nii.gz"]
    # What a write killed midway leaves: half a file of the case it wrote, and a temporary.
    (kept / "c_seg.nii.gz").write_bytes(b"\x1f\x8b half a file")
    (kept / ".c_seg.nii.gz.abcd1234.tmp").write_bytes(b"a temporary")
    # A record whose files are gone does not count.
    (kept / "b_seg.nii.gz").unlink()
    report = issl.predict(run, scans, output=out, progress=False)
    assert report.resumed == ("a",) and calls.cases == ["b", "c"]
    assert sorted(p.name for p in out.iterdir()) == [
        "a_seg.nii.gz",
        "b_seg.nii.gz",
        "c_seg.nii.gz",
        "volumes.csv",
    ]
    reference = issl.predict(run, scans, output=tmp_path / "reference", progress=False)
    assert _outputs(out) == _outputs(tmp_path / "reference") and reference.resumed == ()


def test_a_case_whose_input_changed_since_is_predicted_again(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, calls: _ModelCalls
) -> None:
    run = trained_run.run_dir
    out = tmp_path / "pred"
    _interrupted(run, scans, out, "c", calls)
    _scan(scans / "a.nii.gz", seed=10)  # replaced by another scan
    os.utime(scans / "b.nii.gz", ns=(1, 1))  # touched: perhaps rewritten, so not trusted
    report = issl.predict(run, scans, output=out, progress=False)
    assert report.resumed == () and calls.cases == list(CASES)
    issl.predict(run, scans, output=tmp_path / "reference", progress=False)
    assert _outputs(out) == _outputs(tmp_path / "reference")


@pytest.mark.parametrize(
    "change",
    [
        {"probabilities": True},
        {"batch_size": 2},
        {"output_format": "nrrd"},
        {"resume": False},
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items()),
)
def test_another_prediction_into_the_same_output_takes_nothing_and_removes_the_kept_cases(
    trained_run: issl.FinetuneResult,
    scans: Path,
    tmp_path: Path,
    calls: _ModelCalls,
    change: dict[str, Any],
) -> None:
    run = trained_run.run_dir
    out = tmp_path / "pred"
    _interrupted(run, scans, out, "c", calls)
    report = issl.predict(run, scans, output=out, progress=False, **change)
    assert report.resumed == () and calls.cases == list(CASES)
    assert _beside(out) == []
    names = [path.name.split("_")[0] for path in out.iterdir() if path.name != "volumes.csv"]
    assert sorted(names) == sorted(list(CASES) * (2 if change.get("probabilities") else 1))


def test_a_predict_resumed_with_another_dicom_seg_type_takes_nothing(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, calls: _ModelCalls
) -> None:
    # The type is part of the prediction: a DICOM input's kept SEG would be of the other type.
    run = trained_run.run_dir
    out = tmp_path / "pred"
    _interrupted(run, scans, out, "c", calls, output_format="input")
    report = issl.predict(
        run, scans, output=out, progress=False, output_format="input", dicom_seg_type="labelmap"
    )
    assert report.resumed == () and calls.cases == list(CASES)


@pytest.mark.parametrize(
    ("inputs", "taken", "predicted"),
    [
        (["a", "b"], ("a", "b"), []),
        (["d", "b", "a", "c"], ("b", "a"), ["d", "c"]),
        (["c", "a"], ("a",), ["c"]),
    ],
    ids=["without-the-one-that-failed", "more-and-reordered", "one-left-out"],
)
def test_a_predict_of_other_inputs_takes_the_finished_cases_it_shares(
    trained_run: issl.FinetuneResult,
    scans: Path,
    tmp_path: Path,
    calls: _ModelCalls,
    inputs: list[str],
    taken: tuple[str, ...],
    predicted: list[str],
) -> None:
    run = trained_run.run_dir
    out = tmp_path / "pred"
    _interrupted(run, scans, out, "c", calls)
    _scan(scans / "d.nii.gz", seed=3)
    paths = [scans / f"{name}.nii.gz" for name in inputs]
    report = issl.predict(run, paths, output=out, progress=False)
    assert report.resumed == taken and calls.cases == predicted
    assert [c.case for c in report.cases] == inputs
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}_seg.nii.gz" for name in inputs] + ["volumes.csv"]
    )
    issl.predict(run, paths, output=tmp_path / "reference", progress=False)
    assert _outputs(out) == _outputs(tmp_path / "reference")


def test_a_folder_a_live_predict_holds_is_not_taken(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, calls: _ModelCalls
) -> None:
    run = trained_run.run_dir
    out = tmp_path / "pred"
    kept = _interrupted(run, scans, out, "c", calls)
    before = sorted(p.name for p in kept.iterdir())
    fd = os.open(kept, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a concurrent predict that took it over holds it
        report = issl.predict(run, scans, output=out, progress=False)
        assert report.resumed == () and calls.cases == list(CASES)
        assert sorted(p.name for p in kept.iterdir()) == before  # untouched
    finally:
        os.close(fd)
    assert sorted(p.name for p in out.iterdir()) == [
        "a_seg.nii.gz",
        "b_seg.nii.gz",
        "c_seg.nii.gz",
        "volumes.csv",
    ]
    shutil.rmtree(kept)


def test_the_cli_resumes_and_says_which_cases_it_took(
    trained_run: issl.FinetuneResult,
    scans: Path,
    tmp_path: Path,
    calls: _ModelCalls,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = trained_run.run_dir
    out = tmp_path / "pred"
    _interrupted(run, scans, out, "b", calls)
    assert cli_main(["predict", str(run), str(scans), "--output", str(out), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] == ["a"]
    _interrupted(run, scans, tmp_path / "again", "b", calls)
    command = ["predict", str(run), str(scans), "--output", str(tmp_path / "again"), "--quiet", "--no-resume"]
    assert cli_main(command) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] == [] and calls.cases == list(CASES)


def _identity(weights: dict[str, torch.Tensor], **change: Any) -> str:
    arguments: dict[str, Any] = {
        "preprocessing": ("z-score", 2),
        "options": {"batch_size": 16, "probabilities": False},
    }
    arguments.update(change)
    return prediction_identity(weights, **arguments)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool])
def test_the_identity_changes_with_any_weight_or_option_and_with_nothing_else(
    dtype: torch.dtype,
) -> None:
    weights = {
        "conv.weight": torch.arange(12).reshape(3, 4).to(dtype),
        "bn.num_batches_tracked": torch.tensor(7),
    }
    reference = _identity(weights)
    assert _identity({name: value.clone() for name, value in weights.items()}) == reference
    others = []
    for index in range(12):
        changed = weights["conv.weight"].clone().reshape(-1)
        changed[index] = torch.logical_not(changed[index]) if dtype == torch.bool else changed[index] + 1
        others.append(_identity({**weights, "conv.weight": changed.reshape(3, 4)}))
    others.append(_identity({**weights, "conv.weight": weights["conv.weight"].reshape(4, 3)}))
    others.append(_identity({**weights, "bn.num_batches_tracked": torch.tensor(8)}))
    others.append(_identity(weights, preprocessing=("z-score", 1)))
    others.append(_identity(weights, options={"batch_size": 8, "probabilities": False}))
    others.append(_identity(weights, options={"batch_size": 16, "probabilities": True}))
    others.append(_identity(weights, options={"batch_size": 16}))
    assert len(set(others)) == len(others) and reference not in others


def test_the_scans_of_the_cases_taken_are_not_read_again(
    trained_run: issl.FinetuneResult,
    scans: Path,
    tmp_path: Path,
    calls: _ModelCalls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = trained_run.run_dir
    out = tmp_path / "pred"
    _interrupted(run, scans, out, "c", calls)
    real = NiftiVolume._array
    read: list[str] = []

    def whole_reads(self: NiftiVolume) -> Any:
        if "_cache" not in self.__dict__:
            read.append(Path(self.path).name)
        return real(self)

    monkeypatch.setattr(NiftiVolume, "_array", whole_reads)
    report = issl.predict(run, scans, output=out, progress=False)
    assert report.resumed == ("a", "b")
    assert read == ["c.nii.gz", "c.nii.gz"]  # c's check, then c's prediction; a and b not at all
    read.clear()
    issl.predict(run, scans, output=tmp_path / "reference", progress=False)
    assert sorted(read) == sorted([f"{name}.nii.gz" for name in CASES] * 2)
    assert _outputs(out) == _outputs(tmp_path / "reference")
