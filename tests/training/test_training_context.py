"""A run session leaves the caller's process as it found it, and an early failure leaves no folder."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
import yaml

import inpaintssl as issl
from checkpoint_helpers import pretrain_stopped_after_the_first_epoch
from inpaintssl.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from inpaintssl.config import ConfigError, ConfigWarning, RunConfig
from inpaintssl.data import DataError
from inpaintssl.layout import RunFolder
from inpaintssl.training.context import (
    FinishedRunWarning,
    FreshStartWarning,
    RunContext,
    RunFolderInUseError,
    RunFolderLockedError,
    run_session,
)
from inpaintssl.training.process_state import preserved_process_state
from study_helpers import tiny_numpy_pretrain_config, tiny_pretrain_config


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


def test_a_deterministic_flag_left_alone_is_not_set_again(caller_state: dict[str, Any]) -> None:
    # Setting it imports torch's compiler stack, seconds of a small run's start-up: only a change is undone.
    with mock.patch("torch.use_deterministic_algorithms") as setter, preserved_process_state():
        pass
    setter.assert_not_called()
    # warn_only alone changed is put back too.
    with preserved_process_state():
        torch.use_deterministic_algorithms(False, warn_only=True)
    assert _globals() == caller_state


def test_cudnn_autotuning_holds_inside_the_run_only(tmp_path: Path) -> None:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        # cuDNN never runs on the CPU: the config says so, and the flag is still scoped to the run.
        with pytest.warns(ConfigWarning, match=r"run\.cudnn_benchmark=true has no effect"):
            config = RunConfig(output_dir=tmp_path / "run", device="cpu", cudnn_benchmark=True)
        with run_session(config):
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
    with pytest.warns(FinishedRunWarning), warnings.catch_warnings():
        warnings.simplefilter("error", FreshStartWarning)
        # Now there is a checkpoint: no FreshStartWarning.
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


# -- a resume clears what a kill left, refuses other data, records what it changed -----------------


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _resumed(config: dict[str, Any], **run: Any) -> dict[str, Any]:
    return {**config, "run": {**config["run"], "resume": True, **run}}


def test_a_resume_removes_the_copy_a_kill_after_the_last_swap_left(tmp_path: Path) -> None:
    # Killed after the final swap of checkpoints/last and before its previous copy was removed, a
    # finished run kept a whole extra checkpoint, last.old, for ever: it never saves last again.
    run = tmp_path / "run"
    config = tiny_pretrain_config(run)
    issl.pretrain(config)
    checkpoints = run / "checkpoints"
    shutil.copytree(checkpoints / "last", checkpoints / "last.old")
    kept = _files(checkpoints / "last")

    with pytest.warns(FinishedRunWarning):
        result = issl.pretrain(_resumed(config))

    assert sorted(p.name for p in checkpoints.iterdir()) == ["best", "last"]
    assert _files(checkpoints / "last") == kept
    assert result.epochs_run == 2


@pytest.mark.parametrize("last", ["missing", "incomplete", "changed"])
def test_a_resume_keeps_the_copy_that_is_the_only_complete_checkpoint(tmp_path: Path, last: str) -> None:
    # Beside a missing or damaged checkpoint the .old copy is what the resume recovers from.
    checkpoints = tmp_path / "run" / "checkpoints"
    meta = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
    for name in (
        ("best", "best.old", "last.old") if last == "missing" else ("best", "best.old", "last", "last.old")
    ):
        save_checkpoint(checkpoints / name, {"w": torch.full((2,), float(name.endswith(".old")))}, meta)
    if last == "incomplete":
        (checkpoints / "last" / "COMPLETE.json").unlink()
    elif last == "changed":
        (checkpoints / "last" / "model.safetensors").write_bytes(b"torn")
    # Without --resume the folder is refused, and nothing in it touched.
    before = _files(checkpoints)
    with (
        pytest.raises(RunFolderInUseError),
        run_session(RunConfig(output_dir=tmp_path / "run", device="cpu")),
    ):
        pass
    assert _files(checkpoints) == before

    with run_session(RunConfig(output_dir=tmp_path / "run", device="cpu", resume=True)):
        names = sorted(p.name for p in checkpoints.iterdir())

    assert "last.old" in names and "best.old" not in names  # best is complete: its copy was stale
    state, _ = load_checkpoint(tmp_path / "run", which="last")
    assert state["w"].tolist() == [1.0, 1.0]


def _numpy_run(root: Path) -> dict[str, Any]:
    """A tiny pretraining config on ``.npy`` volumes found by pattern (two train, one val)."""
    return tiny_numpy_pretrain_config(root, [("train", "c1"), ("train", "c2"), ("val", "c3")])


def _add_volume(root: Path) -> None:
    # Intensities as the others' (a volume of 1s and 2s alone would be warned about as a label map).
    volume = np.random.default_rng(5).normal(size=(16, 16, 3)).astype(np.float32)
    np.save(root / "train" / "c5_img.npy", volume)


def _remove_volume(root: Path) -> None:
    (root / "train" / "c2_img.npy").unlink()


def _rewrite_volume(root: Path) -> None:
    path = root / "train" / "c1_img.npy"
    np.save(path, -np.load(path))  # other voxels, the same shape and size


DATA_CHANGES = {
    "volume added": (
        _add_volume,
        [r"splits\.json: train: volumes added: c5_img", r"3 file\(s\) recorded, 4 now"],
    ),
    "volume removed": (
        _remove_volume,
        [r"splits\.json: train: volumes removed: c2_img", r"files gone or resized .*c2_img\.npy \(gone\)"],
    ),
    "volume rewritten": (
        _rewrite_volume,
        [
            r"training files rewritten since data_check\.json recorded them \(same size, new modification "
            r"time\): .*train/c1_img\.npy",
            r"if their contents are unchanged .*delete .*run/data_check\.json and resume again",
        ],
    ),
}


@pytest.mark.parametrize("change", list(DATA_CHANGES))
def test_a_resume_on_changed_data_is_refused_naming_the_change(tmp_path: Path, change: str) -> None:
    # Data added or replaced between a kill and --resume was trained on, while splits.json and the
    # manifest still described the data the run started on.
    config = _numpy_run(tmp_path)
    issl.pretrain(config)
    run = tmp_path / "run"
    record = _files(run)
    alter, patterns = DATA_CHANGES[change]
    alter(tmp_path)

    with pytest.raises(DataError) as caught:
        issl.pretrain(_resumed(config))

    message = str(caught.value)
    assert message.startswith(f"cannot resume {run}: its data changed since the run started")
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)
    assert "Restore the data as it was, or start a new run.output_dir" in message
    assert _files(run) == record  # the refused resume wrote nothing


def test_a_rewritten_file_with_its_old_contents_resumes_once_the_data_check_is_deleted(
    tmp_path: Path,
) -> None:
    config = _numpy_run(tmp_path)
    issl.pretrain(config)
    for path in (tmp_path / "train" / "c1_img.npy", tmp_path / "val" / "c3_img.npy"):
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # copied or touched
    with pytest.raises(DataError, match=r"training files rewritten .*c1_img\.npy"):
        issl.pretrain(_resumed(config))
    (tmp_path / "run" / RunFolder.DATA_CHECK).unlink()  # the way out the message names
    with pytest.warns(FinishedRunWarning):
        issl.pretrain(_resumed(config))
    # A rewritten validation file is not trained on: it is named in a warning, not refused.
    path = tmp_path / "val" / "c3_img.npy"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with (
        pytest.warns(FinishedRunWarning),
        pytest.warns(UserWarning, match=r"validation or test files rewritten .*val/c3_img\.npy"),
    ):
        issl.pretrain(_resumed(config))


@pytest.mark.parametrize("dataset", ["synthetic", "mni152"])
def test_a_dataset_without_files_of_its_own_still_resumes(tmp_path: Path, dataset: str) -> None:
    # synthetic reads no file; mni152 reads the template inside the installed nilearn package.
    if dataset == "mni152":
        pytest.importorskip("nilearn")
        data: dict[str, Any] = {"dataset": "mni152", "params": {"zoom": 0.25}, "image_size": [32, 32]}
    else:
        data = {}
    config = tiny_pretrain_config(
        tmp_path / "run", optim={"max_epochs": 1, "steps_per_epoch": 1}, **({"data": data} if data else {})
    )
    issl.pretrain(config)
    manifest = (tmp_path / "run" / "manifest.json").read_text()
    with pytest.warns(FinishedRunWarning):
        result = issl.pretrain(_resumed(config))
    assert result.epochs_run == 1
    assert "resumes" not in json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert (
        json.loads(manifest)["data_files_sha256"]
        == json.loads((tmp_path / "run" / "manifest.json").read_text())["data_files_sha256"]
    )


def test_run_settings_a_resume_changed_are_recorded_in_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A resume may change run.cpu_weight_gradient (other kernels, other last bits of the weights);
    # config.yaml said "auto" for both halves of the run.
    run = tmp_path / "run"
    config = tiny_pretrain_config(run, optim={"max_epochs": 2})
    pretrain_stopped_after_the_first_epoch(config, monkeypatch)
    config_yaml = (run / "config.yaml").read_text()

    result = issl.pretrain(_resumed(config, cpu_weight_gradient="blocked_gemm", quiet=False))

    assert result.epochs_run == 2
    assert (run / "config.yaml").read_text() == config_yaml  # the record of how the run started
    assert yaml.safe_load(config_yaml)["run"]["cpu_weight_gradient"] == "auto"
    (entry,) = json.loads((run / "manifest.json").read_text())["resumes"]
    assert entry["resumed_from_epoch"] == 1
    assert entry["changed"] == {"run.cpu_weight_gradient": {"recorded": "auto", "now": "blocked_gemm"}}
    assert entry["environment"] == {}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", entry["time"])
    # A later resume back on the recorded settings says so: the change held up to it.
    with pytest.warns(FinishedRunWarning):
        issl.pretrain(_resumed(config))
    first, second = json.loads((run / "manifest.json").read_text())["resumes"]
    assert first == entry and second["changed"] == {} and second["resumed_from_epoch"] == 2


def test_a_folder_that_cannot_be_created_names_run_output_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only parent (the tests run as root, which no permission stops): before, the error
    # was "Permission denied: '.../run'", not which setting named that folder.
    run = tmp_path / "run"
    real_mkdir = Path.mkdir

    def read_only_parent(self: Path, *args: Any, **kwargs: Any) -> None:
        if self == run:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_parent)
    with pytest.raises(PermissionError) as caught, run_session(RunConfig(output_dir=run, device="cpu")):
        pass
    assert f"could not create run.output_dir={str(run)!r}: Permission denied" in str(caught.value)


@pytest.mark.parametrize(
    ("left", "refused"),
    [
        (".best.pending.k2x9ab_7.tmp", False),  # a kill during the first checkpoint's write
        (".last.k2x9ab_7.tmp", False),
        ("last.old", True),  # a kill between a save's two renames: the run is resumable
        ("best.pending", True),
        ("best", True),
    ],
)
def test_only_a_checkpoint_makes_a_folder_hold_a_run(tmp_path: Path, left: str, refused: bool) -> None:
    # Before, any entry of checkpoints/ counted: a folder whose only checkpoint write was cut
    # short was refused as holding a run, and --resume then said it held nothing to resume.
    run = tmp_path / "run"
    (RunFolder(run).checkpoints / left).mkdir(parents=True)
    config = RunConfig(output_dir=run, device="cpu")
    if refused:
        with pytest.raises(RunFolderInUseError, match=r"already holds a run"), run_session(config):
            pass
    else:
        with run_session(config):
            pass
