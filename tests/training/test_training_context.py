"""A run session leaves the caller's process as it found it, and an early failure leaves no folder."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import inpaintssl as issl
from inpaintssl.config import ConfigError, RunConfig
from inpaintssl.data import DataError
from inpaintssl.layout import RunFolder
from inpaintssl.training.context import FreshStartWarning, RunContext, RunFolderLockedError, run_session
from study_helpers import tiny_pretrain_config


def _globals() -> dict[str, Any]:
    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "threads": torch.get_num_threads(),
        "matmul": torch.get_float32_matmul_precision(),
        # The next draw of each generator: equal only if its state was put back.
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state()[1].tolist(),
        "torch_rng": torch.get_rng_state().tolist(),
    }


@pytest.fixture
def caller_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A caller with non-default settings, distinct from what a deterministic run sets."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    previous = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    random.seed(123)
    np.random.seed(456)
    torch.manual_seed(789)
    yield _globals()
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous


@pytest.mark.parametrize("fails", [False, True], ids=["normal-exit", "exception"])
def test_session_restores_every_global_it_changes(
    caller_state: dict[str, Any], tmp_path: Path, fails: bool
) -> None:
    run = RunConfig(output_dir=tmp_path / "run", device="cpu", deterministic=True, seed=3)
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext(), run_session(run):
        inside = _globals()
        if fails:
            raise RuntimeError("boom")
    # Inside, the run's settings held (so the comparison below can tell restoring from never changing).
    assert inside["deterministic"] and inside["cudnn_deterministic"] and not inside["cudnn_benchmark"]
    assert inside["cublas"] == ":4096:8"
    assert inside["torch_rng"] != caller_state["torch_rng"]
    assert inside["python_rng"] != caller_state["python_rng"]
    assert _globals() == caller_state


def test_cudnn_autotuning_holds_inside_the_run_only(tmp_path: Path) -> None:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        with run_session(RunConfig(output_dir=tmp_path / "run", device="cpu", cudnn_benchmark=True)):
            inside = torch.backends.cudnn.benchmark
        assert inside is True and torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = previous


def test_cudnn_autotuning_and_determinism_are_refused_together() -> None:
    with pytest.raises(ValueError, match=r"run\.deterministic=true and run\.cudnn_benchmark=true contradict"):
        RunConfig(deterministic=True, cudnn_benchmark=True)


def test_session_keeps_a_callers_own_cublas_setting(caller_state: dict[str, Any], tmp_path: Path) -> None:
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    with run_session(RunConfig(output_dir=tmp_path / "run", device="cpu", deterministic=True)):
        pass
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_pretrain_leaves_the_callers_generators_and_flags_alone(
    caller_state: dict[str, Any], tmp_path: Path
) -> None:
    issl.pretrain(tiny_pretrain_config(tmp_path / "run", run={"deterministic": True}))
    assert _globals() == caller_state


def test_early_failure_removes_the_folders_it_created(tmp_path: Path) -> None:
    run = tmp_path / "new" / "nested" / "run"
    config = tiny_pretrain_config(run)
    config["data"]["params"]["size"] = [0, 16]
    with pytest.raises(DataError, match="size must be at least 8x8"):
        issl.pretrain(config)  # fails in the session, after the folder and its lock were made
    assert not (tmp_path / "new").exists()


def test_early_failure_keeps_a_folder_that_existed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    config = tiny_pretrain_config(run)
    config["data"]["params"]["size"] = [0, 16]
    with pytest.raises(DataError, match="size must be at least 8x8"):
        issl.pretrain(config)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_late_failure_keeps_what_was_written_and_drops_the_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = tiny_pretrain_config(run)
    config["optim"]["lr"] = 1e30  # the loss becomes NaN after the run recorded its config
    with pytest.raises(FloatingPointError):
        issl.pretrain(config)
    names = {p.name for p in run.iterdir()}
    assert "config.yaml" in names and RunFolder.LOCK not in names


def test_resume_into_a_missing_folder_warns_that_it_starts_fresh(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.warns(
        FreshStartWarning, match=r"run\.output_dir='.*run' did not exist: starting a fresh run"
    ):
        result = issl.pretrain(tiny_pretrain_config(run, run={"resume": True}))
    assert result.epochs_run == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", FreshStartWarning)
        # Now there is a checkpoint: no warning.
        issl.pretrain(tiny_pretrain_config(run, run={"resume": True}))


def test_resume_into_a_folder_without_checkpoints_warns(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = RunConfig(output_dir=run, device="cpu", resume=True)
    expected = r"holds no resumable checkpoint .*checkpoints/last"
    with pytest.warns(FreshStartWarning, match=expected), run_session(config):
        pass


def test_a_fresh_start_warning_raised_as_an_error_leaves_no_lock_behind(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = RunConfig(output_dir=run, device="cpu", resume=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FreshStartWarning)
        with pytest.raises(FreshStartWarning), run_session(config):
            pass
    assert not (run / RunFolder.LOCK).exists()
    with run_session(RunConfig(output_dir=run, device="cpu")):  # the folder is free again
        pass


def test_pretrain_into_a_locked_folder_writes_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lock = {"pid": 1, "host": socket.gethostname(), "since": "2024-05-01T10:00:00+00:00"}
    (run / RunFolder.LOCK).write_text(json.dumps(lock), encoding="utf-8")
    with pytest.raises(RunFolderLockedError, match=r"in use by another run: pid 1 on host"):
        issl.pretrain(tiny_pretrain_config(run))
    assert [p.name for p in run.iterdir()] == [RunFolder.LOCK]


def test_a_local_context_changes_nothing_around_it(tmp_path: Path) -> None:
    # Trainer tests build their context with RunContext.local: it must neither seed the global
    # generators (the resume test checks those streams) nor claim or create the run folder.
    run = RunConfig(output_dir=tmp_path / "run", device="cpu", seed=7, resume=True, checkpoint_every=3)
    before = _globals()
    ctx = RunContext.local(run)
    assert _globals() == before, "building a local context seeded or reconfigured the process"
    assert not run.output_dir.exists()
    assert (ctx.device.type, ctx.dist.world_size, ctx.amp_dtype) == ("cpu", 1, None)
    assert ctx.run_folder.root == run.output_dir and ctx.run is run


@pytest.mark.parametrize("below", ["", "sub"])
def test_an_output_dir_that_is_a_file_is_named(tmp_path: Path, below: str) -> None:
    (tmp_path / "afile").write_text("not a folder")
    folder = tmp_path / "afile" / below if below else tmp_path / "afile"
    with (
        pytest.raises(ConfigError, match=r"run.output_dir=.*afile.*: '.*afile' is a file; expected a folder"),
        run_session(RunConfig(output_dir=folder, device="cpu", quiet=True)),
    ):
        pass
    assert (tmp_path / "afile").read_text() == "not a folder"


_TWO_RUNS = """
import json, sys, tempfile, torch
import inpaintssl as issl
from safetensors.torch import load_file
threads = []
def run():
    out = tempfile.mkdtemp() + "/run"
    issl.pretrain({
        "data": {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 4, "size": [16, 16]}},
        "model": {"params": {"depth": 2, "base_width": 4}},
        "pretext": {"patch_size": 4, "bank_size": 2},
        "optim": {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 4},
        "run": {"output_dir": out, "device": "cpu", "quiet": True, "deterministic": True},
    })
    threads.append(torch.get_num_threads())
    return load_file(out + "/checkpoints/last/model.safetensors")
first, second = run(), run()
print(json.dumps({"same": all(torch.equal(first[k], second[k]) for k in first), "threads": threads}))
"""


def test_two_runs_in_one_process_train_the_same_bits_whatever_numba_does_to_the_threads() -> None:
    # Numba's OpenMP pool shares libgomp with PyTorch and, started by a run's first corruption, set
    # both to NUMBA_NUM_THREADS: the first run of a process then trained on other threads than
    # the next (a study worker's runs), and their weights differed in the last bits.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": str(max(2, os.cpu_count() or 2))}
    done = subprocess.run(
        [sys.executable, "-c", _TWO_RUNS], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"same": True, "threads": [1, 1]}
