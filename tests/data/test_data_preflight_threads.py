"""The pre-flight check reads several cases at once on threads and finds what it finds one by one."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, ClassVar

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from data_builders import write_dicom_slice

import inpaintssl as issl
from inpaintssl.data import DataError
from inpaintssl.data.base import SliceDataset
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.preflight import MAX_CHECK_THREADS, CaseCheck, default_check_threads, preflight
from inpaintssl.data.volumes import VolumeSliceDataset, hdf5_dataset, nifti_dataset

CLASSES = ("a", "b")


def _save(path: Path, array: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)  # type: ignore[no-untyped-call]


def _cases(root: Path, count: int, *, images: dict[int, np.ndarray] | None = None) -> VolumeSliceDataset:
    """``count`` labelled NIfTI cases; ``images`` replaces the image of some of them."""
    rng = np.random.default_rng(0)
    cases = []
    for i in range(count):
        image = (images or {}).get(i, rng.normal(100.0 * i, 10.0 + i, size=(12, 10, 5)).astype(np.float32))
        _save(root / f"case{i}.nii.gz", image)
        _save(root / f"case{i}_seg.nii.gz", rng.integers(0, 3, size=(12, 10, 5)).astype(np.uint8))
        cases.append({"image": f"case{i}.nii.gz", "label": f"case{i}_seg.nii.gz"})
    return _opened(root, count)


def _opened(root: Path, count: int) -> VolumeSliceDataset:
    """The ``count`` cases :func:`_cases` wrote, opened again (nothing read yet)."""
    cases = [{"image": f"case{i}.nii.gz", "label": f"case{i}_seg.nii.gz"} for i in range(count)]
    return nifti_dataset(split="train", root=root, cases={"train": cases}, class_names=list(CLASSES))


def _checked_on(monkeypatch: pytest.MonkeyPatch, *, meet: int = 0) -> list[str]:
    """The thread each case check of a built-in dataset runs on; the first ``meet`` checks wait
    for each other at a barrier (one by one, the first would wait out its timeout)."""
    names: list[str] = []
    barrier = threading.Barrier(meet, timeout=60) if meet else None
    calls = {"n": 0}
    lock = threading.Lock()
    real = VolumeSliceDataset._preflight

    def spied(self: VolumeSliceDataset, case_index: int) -> None:
        with lock:
            calls["n"] += 1
            first = calls["n"] <= meet
            names.append(threading.current_thread().name)
        if barrier is not None and first:
            barrier.wait()
        real(self, case_index)

    monkeypatch.setattr(VolumeSliceDataset, "_preflight", spied)
    return names


def test_cases_are_checked_at_once_and_keep_the_statistics_of_a_check_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_by_one = _cases(tmp_path, 6)
    names = _checked_on(monkeypatch)
    sequential = preflight({"train": one_by_one}, progress=False, threads=1)
    assert names == [threading.current_thread().name] * 6

    names = _checked_on(monkeypatch, meet=3)
    threaded_data = _opened(tmp_path, 6)
    threaded = preflight({"train": threaded_data}, progress=False, threads=3)
    assert len(names) == 6 and all(name.startswith("inpaintssl-in-order") for name in names)
    # None is left running: a run forks its DataLoader workers next, which threads would make unsafe.
    assert not [t for t in threading.enumerate() if t.name.startswith("inpaintssl-in-order")]
    assert (threaded.cases, threaded.passed, threaded.sets) == (
        sequential.cases,
        sequential.passed,
        sequential.sets,
    )
    # The normalisation statistics each check keeps are its own case's, to the bit.
    assert sorted(threaded_data._stats) == list(range(6))  # kept by the checks, not computed later
    for case in range(6):
        mine, theirs = threaded_data.volume_stats(case), one_by_one.volume_stats(case)
        assert np.array_equal(mine.mean, theirs.mean) and np.array_equal(mine.std, theirs.std)
    # And the slices the run trains on are the same.
    for index in (0, 7, 29):
        assert torch.equal(threaded_data[index]["image"], one_by_one[index]["image"])


def test_the_first_bad_case_in_order_is_named_and_warnings_come_in_case_order(tmp_path: Path) -> None:
    bad = np.ones((12, 10, 5), np.float32)
    bad[3, 4, 2] = np.nan
    few = np.tile(np.arange(3, dtype=np.float32), (12, 10, 5))[:, :, :5]  # whole numbers: a label map?
    data = _cases(tmp_path, 6, images={1: few, 3: bad, 4: few, 5: np.zeros((12, 10, 5), np.float32)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=r"case3\.nii\.gz slice 2: 1 NaN/Inf value"):
            preflight({"train": data}, progress=False, threads=4)
    assert not [t for t in threading.enumerate() if t.name.startswith("inpaintssl-in-order")]
    told = [str(w.message) for w in caught if "is it a label map?" in str(w.message)]
    # Case 1's warning, raised before the failing case 3; case 4 comes after it, so is never told.
    assert len(told) == 1 and "case1.nii.gz" in told[0]
    assert {w.filename for w in caught if "is it a label map?" in str(w.message)} == {__file__}

    (tmp_path / "passing").mkdir()
    data = _cases(tmp_path / "passing", 5, images={1: few, 3: few})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preflight({"train": data}, progress=False, threads=4)
    told = [str(w.message) for w in caught if "is it a label map?" in str(w.message)]
    assert len(told) == 2 and "case1.nii.gz" in told[0] and "case3.nii.gz" in told[1]


def _hdf5_cases(root: Path) -> VolumeSliceDataset:
    rng = np.random.default_rng(0)
    for i in range(3):
        with h5py.File(root / f"case{i}.h5", "w") as f:
            f["image"] = rng.normal(size=(12, 10, 5)).astype(np.float32)
            f["label"] = rng.integers(0, 3, (12, 10, 5)).astype(np.uint8)
    names = [f"case{i}.h5" for i in range(3)]
    return hdf5_dataset(split="train", root=root, cases={"train": names}, class_names=list(CLASSES))


def _dicom_cases(root: Path) -> VolumeSliceDataset:
    rng = np.random.default_rng(0)
    for i in range(3):
        (root / f"series{i}").mkdir()
        for z in range(4):
            stored = rng.integers(0, 2000, (12, 10)).astype(np.int16)
            path = root / f"series{i}" / f"{z}.dcm"
            write_dicom_slice(path, stored, slope=1.0, intercept=-1024.0, z=2.5 * z, instance=z + 1)
    series = [f"series{i}" for i in range(3)]
    return ct_dataset(split="train", labelled=False, root=root, cases={"train": series})


@pytest.mark.parametrize("build", [_hdf5_cases, _dicom_cases], ids=["hdf5", "dicom"])
def test_cases_of_hdf5_files_or_dicom_series_are_checked_in_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build: Callable[[Path], VolumeSliceDataset]
) -> None:
    # h5py holds one lock over every HDF5 call and pydicom parses in Python: on threads the reads
    # would only take turns.
    data = build(tmp_path)
    assert [check.parallel for check in data.preflight_checks(set(data.volume_ids))] == [False] * 3
    assert [check.parallel for check in _cases(tmp_path, 3).preflight_checks({"case0"})] == [True]
    seen = _checked_on(monkeypatch)
    assert preflight({"train": data}, progress=False, threads=3).cases == 3
    assert seen == [threading.current_thread().name] * 3


@pytest.mark.parametrize("parallel", [False, True])
def test_a_plugins_checks_run_in_the_calling_thread_unless_they_say_they_may_run_on_threads(
    parallel: bool,
) -> None:
    seen: list[tuple[str, str]] = []

    def check(name: str) -> CaseCheck:
        def run() -> None:
            seen.append((name, threading.current_thread().name))

        return CaseCheck(f"plugin case {name}", run, parallel=parallel)

    class Plugin(SliceDataset):
        volume_ids: ClassVar[list[str]] = ["v0", "v1", "v2"]

        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> dict[str, Any]:
            return {"image": torch.zeros(1, 4, 4), "volume_id": f"v{index}", "slice_index": 0}

        def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
            return [check(v) for v in sorted(volume_ids)]

    report = preflight({"train": Plugin()}, progress=False, threads=4)
    assert report.cases == 3 and sorted(v for v, _ in seen) == ["v0", "v1", "v2"]
    calling = threading.current_thread().name
    assert all((name != calling) == parallel for _, name in seen)
    assert all(name.startswith("inpaintssl-in-order") == parallel for _, name in seen)


@pytest.mark.parametrize("threads", [0, -2])
def test_fewer_than_one_thread_is_refused(threads: int) -> None:
    with pytest.raises(ValueError, match=rf"threads={threads}; expected 1 or more threads"):
        preflight({"train": None}, progress=False, threads=threads)


def test_the_default_is_the_cores_this_process_may_use_up_to_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 32)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert default_check_threads() == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert default_check_threads() == MAX_CHECK_THREADS
    # A study's worker process gets its share of the cores as PyTorch's thread count.
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert default_check_threads() == 2


@pytest.mark.parametrize("check_threads", [1, 3])
def test_a_runs_check_reads_with_data_check_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check_threads: int
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    _cases(root, 3)
    names = _checked_on(monkeypatch, meet=check_threads if check_threads > 1 else 0)
    cases = {
        split: {"image": f"case{i}.nii.gz", "label": f"case{i}_seg.nii.gz"}
        for i, split in enumerate(("train", "val", "test"))
    }
    issl.finetune(
        {
            "data": {
                "dataset": "nifti",
                "params": {"root": str(root), "cases": cases, "class_names": list(CLASSES)},
                "check_threads": check_threads,
            },
            "model": {"params": {"depth": 2, "base_width": 4}},
            "optim": {"max_epochs": 1, "batch_size": 4},
            "run": {"output_dir": str(tmp_path / "run"), "device": "cpu", "quiet": True},
        }
    )
    assert len(names) == 3
    on_threads = [name.startswith("inpaintssl-in-order") for name in names]
    assert on_threads == [check_threads > 1] * 3
