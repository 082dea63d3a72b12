"""Prediction files written on a background thread while the next case is predicted.

The overlap is shown, not timed: the first case's write is held until the second case's
prediction has started, which a predict that wrote before predicting on would never reach. The
files are compared with those of predicts of one case each, which have nothing to overlap.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from inpaintssl.inference.write_ahead import WriteAhead
from predict_helpers import written_niftis

CASES = ("a", "b", "c")
predict_module = importlib.import_module(
    "inpaintssl.inference.predict"
)  # the package re-exports the function


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    rng = np.random.default_rng(0)
    for name in CASES:
        image = rng.normal(0.0, 1.0, size=(32, 32, 5)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), folder / f"{name}.nii.gz")
    return folder


def test_a_case_is_written_while_the_next_is_predicted_and_the_files_are_the_same(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One case per predict: nothing to overlap, the reference files.
    alone = tmp_path / "alone"
    for name in CASES:
        issl.predict(
            trained_run.run_dir, scans / f"{name}.nii.gz", output=alone, probabilities=True, progress=False
        )

    second_case_started = threading.Event()
    predicted: list[str] = []
    writers: list[str] = []
    seen_while_writing: list[bool] = []
    real_predict, real_save = predict_module.predict_case, predict_module.save_volume

    def predicting(item: Any, **kwargs: Any) -> Any:
        predicted.append(item.case)
        if len(predicted) == 2:
            second_case_started.set()
        return real_predict(item, **kwargs)

    def saving(data: Any, geometry: Any, target: Path, **options: Any) -> None:
        writers.append(threading.current_thread().name)
        if target.name == "a_seg.nii.gz":
            seen_while_writing.append(second_case_started.wait(timeout=60))
        real_save(data, geometry, target, **options)

    monkeypatch.setattr(predict_module, "predict_case", predicting)
    monkeypatch.setattr(predict_module, "save_volume", saving)
    together = tmp_path / "together"
    report = issl.predict(trained_run.run_dir, scans, output=together, probabilities=True, progress=False)

    assert seen_while_writing == [True]  # case b was being predicted while case a was written
    assert predicted == list(CASES) and len(writers) == 2 * len(CASES)
    assert all(name.startswith("inpaintssl-write") for name in writers)
    assert [case.case for case in report.cases] == list(CASES)
    ours, reference = written_niftis(together), written_niftis(alone)
    assert (
        sorted(ours) == sorted(reference) == sorted(f"{n}_{k}.nii.gz" for n in CASES for k in ("seg", "prob"))
    )
    for name, (array, affine) in reference.items():
        assert np.array_equal(ours[name][0], array) and np.array_equal(ours[name][1], affine), name
    # Each predict of one case wrote volumes.csv anew: the last one holds case c alone.
    assert (together / "volumes.csv").read_text().splitlines()[-1] == (
        alone / "volumes.csv"
    ).read_text().splitlines()[-1]


def test_a_failed_write_stops_predict_naming_the_file_and_leaves_no_output(
    trained_run: issl.FinetuneResult, scans: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = predict_module.save_volume
    predicted: list[str] = []
    real_predict = predict_module.predict_case

    def predicting(item: Any, **kwargs: Any) -> Any:
        predicted.append(item.case)
        return real_predict(item, **kwargs)

    def full_disk_on_b(data: Any, geometry: Any, target: Path, **options: Any) -> None:
        if target.name == "b_seg.nii.gz":
            raise OSError(28, f"could not write {target}: No space left on device")
        real_save(data, geometry, target, **options)

    monkeypatch.setattr(predict_module, "predict_case", predicting)
    monkeypatch.setattr(predict_module, "save_volume", full_disk_on_b)
    out = tmp_path / "pred"
    for resume in (False, True):
        predicted.clear()
        with pytest.raises(OSError, match=r"could not write .*b_seg\.nii\.gz: No space left on device"):
            issl.predict(trained_run.run_dir, scans, output=out, progress=False, resume=resume)
        assert predicted == ["a", "b", "c"]  # c was predicted while b's write failed; nothing after
        assert not out.exists()
        if not resume:
            assert list(tmp_path.iterdir()) == []  # no output, no staging folder left
    # Resumable, the staging folder keeps case a, the one whose files were written, for the next predict.
    (kept,) = tmp_path.iterdir()
    assert sorted(p.name for p in kept.iterdir()) == [".predict-resume", "a_seg.nii.gz"]
    monkeypatch.setattr(predict_module, "save_volume", real_save)  # space freed
    predicted.clear()
    report = issl.predict(trained_run.run_dir, scans, output=out, progress=False)
    assert predicted == ["b", "c"] and report.resumed == ("a",)
    assert sorted(p.name for p in out.iterdir()) == [
        "a_seg.nii.gz",
        "b_seg.nii.gz",
        "c_seg.nii.gz",
        "volumes.csv",
    ]
    assert list(tmp_path.iterdir()) == [out]


def test_write_ahead_keeps_one_write_in_flight_and_raises_its_error_at_the_next_call() -> None:
    order: list[str] = []
    release = threading.Event()

    def slow(name: str) -> None:
        release.wait(timeout=30)
        order.append(name)

    def failing(name: str) -> None:
        raise ValueError(f"{name} failed")

    with WriteAhead() as writes:
        writes.submit(slow, "first")
        assert order == []  # running on its thread, not here
        release.set()
        writes.submit(order.append, "second")  # waits for the first
        assert order[0] == "first"
        writes.submit(failing, "third")
        with pytest.raises(ValueError, match="third failed"):
            writes.wait()
        writes.submit(order.append, "fourth")
    assert order == ["first", "second", "fourth"]


def test_an_error_in_the_block_wins_over_the_writes_and_waits_for_it() -> None:
    finished = threading.Event()

    def failing_slowly() -> None:
        finished.wait(timeout=0.2)
        finished.set()
        raise OSError("the write's own failure")

    with pytest.raises(KeyError, match="the block's"), WriteAhead() as writes:
        writes.submit(failing_slowly)
        raise KeyError("the block's")
    assert finished.is_set()  # waited for before the block's error went on
