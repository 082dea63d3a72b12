"""Bad-input cases of issue 16 (reliability, second round): process.

Cases register themselves into :data:`corpus.CASES` through :func:`corpus._case`; corpus.py
imports this module at its end, so every name it defines above is available here.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
from corpus import Call, CommandLineError, _case, _cli, _pretrain_config, _save_pretrained

import inpaintssl as issl
from inpaintssl.data import DataError
from inpaintssl.layout import RunFolder
from inpaintssl.training.lock import RunFolderLockedError

# The docs table shows each case's message, so it must not change from machine to machine: the
# live owner is pid 1 (init, alive in every Linux system or container) and this host is called
# ``node-01`` while the case runs.
_HOST = "node-01"


def _on_node01(call: Call) -> Call:
    def run() -> object:
        with mock.patch("inpaintssl.training.lock.socket.gethostname", return_value=_HOST):
            return call()

    return run


def _write_lock(run: Path, *, pid: int, host: str) -> None:
    """A lock as another run writes it (no ``pid_start``: only the pid's liveness is checked)."""
    run.mkdir(parents=True, exist_ok=True)
    lock = {"pid": pid, "host": host, "since": "2024-05-01T10:00:00+00:00", "token": "other-run"}
    (run / RunFolder.LOCK).write_text(json.dumps(lock), encoding="utf-8")


@_case(
    "runtime-run-folder-locked",
    "runtime",
    RunFolderLockedError,
    r"run folder '.*run' is in use by another run: pid 1 on host 'node-01' since 2024-05-01T10:00:00",
    r"lock file .*run/\.inpaintssl\.lock",
    r"Wait for it to finish, or choose another run\.output_dir",
)
def _run_folder_locked(folder: Path) -> Call:
    """A second run started into a folder that a live run on this host is writing (its lock names
    a running process)."""
    _write_lock(folder / "run", pid=1, host=_HOST)
    return _on_node01(lambda: issl.pretrain(_pretrain_config(folder)))


@_case(
    "runtime-run-folder-locked-other-host",
    "runtime",
    RunFolderLockedError,
    r"in use by another run: pid 4242 on host 'gpu-node-07\.cluster' since",
    r"cannot check a process on another host, and that lock has no heartbeat",
    r"delete the lock file",
)
def _run_folder_locked_other_host(folder: Path) -> Call:
    """A run folder on a shared filesystem locked by a run on another cluster node, with a lock
    written without a heartbeat (by an older version), so never judged stale from here."""
    _write_lock(folder / "run", pid=4242, host="gpu-node-07.cluster")
    return lambda: issl.pretrain(_pretrain_config(folder))


@_case(
    "runtime-run-folder-lock-unreadable",
    "runtime",
    RunFolderLockedError,
    r"run folder '.*run' is locked by .*run/\.inpaintssl\.lock, which is not a readable lock",
    r"expected JSON with pid, host and since",
    r"delete that file",
)
def _run_folder_lock_unreadable(folder: Path) -> Call:
    """A run folder whose lock file is not a lock (a user wrote or truncated it by hand)."""
    run = folder / "run"
    run.mkdir()
    (run / RunFolder.LOCK).write_text("locked by alice\n", encoding="utf-8")
    return lambda: issl.pretrain(_pretrain_config(folder))


@_case(
    "runtime-resume-while-running",
    "runtime",
    CommandLineError,
    r"exit status 2: inpaintssl pretrain: error: run folder '.*run' is in use by another run: pid 1 ",
    r"Wait for it to finish",
)
def _resume_while_running(folder: Path) -> Call:
    """``inpaintssl pretrain --resume`` on a run that is still training (it holds the folder's lock)."""
    _save_pretrained(folder / "run" / "checkpoints" / "best")
    _save_pretrained(folder / "run" / "checkpoints" / "last")
    _write_lock(folder / "run", pid=1, host=_HOST)
    config = folder / "pretrain.json"
    config.write_text(json.dumps(_pretrain_config(folder)), encoding="utf-8")
    return _on_node01(lambda: _cli("pretrain", str(config), "--resume", "--output", str(folder / "run")))


def _numpy_volumes(root: Path, names: dict[str, list[str]]) -> dict[str, object]:
    """``.npy`` volumes per split, found by pattern (``<split>/*.npy``); the ``data`` section."""
    for split, cases in names.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for seed, name in enumerate(cases):
            np.save(root / split / f"{name}.npy", np.random.default_rng(seed).normal(size=(16, 16, 3)))
    cases = {split: {"image": f"{split}/*.npy"} for split in names}
    return {"dataset": "numpy", "params": {"root": str(root), "cases": cases}}


@_case(
    "runtime-resume-on-changed-data",
    "runtime",
    DataError,
    r"cannot resume .*run: its data changed since the run started",
    r"splits\.json: train: volumes added: c5",
    r"3 file\(s\) recorded, 4 now",
    r"Restore the data as it was, or start a new run\.output_dir",
)
def _resume_on_changed_data(folder: Path) -> Call:
    """``--resume`` after a training volume was added to the data the run started on (the pattern
    that finds the training files finds one more)."""
    data = _numpy_volumes(folder / "data", {"train": ["c1", "c2"], "val": ["c3"]})
    issl.pretrain(_pretrain_config(folder, data=data))
    np.save(folder / "data" / "train" / "c5.npy", np.random.default_rng(5).normal(size=(16, 16, 3)))
    return lambda: issl.pretrain(_pretrain_config(folder, data=data, run={"resume": True}))
