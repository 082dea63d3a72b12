"""``data.cache_dir``: runs over compressed volumes read them decompressed from one shared folder.

The reference is the same run without the folder: the weights must be the same bits. Workers
started by ``spawn`` get the dataset pickled, so they find the folder through each volume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import inpaintssl as issl
from checkpoint_helpers import assert_same_checkpoints, pretrain_stopped_after_the_first_epoch
from inpaintssl.data import DataError
from study_helpers import tiny_pretrain_config

VOLUMES = {"train": 3, "val": 1}


def _config(root: Path, output: Path, **data: Any) -> dict[str, Any]:
    """Pretraining on 16x16x3 ``.npz`` volumes (compressed) under ``root``, written once."""
    for split, count in VOLUMES.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = root / split / f"{split}{i}.npz"
            if not path.exists():
                image = np.random.default_rng(i).normal(size=(16, 16, 3)).astype(np.float32)
                np.savez_compressed(path, image=image)
    cases = {split: {"image": f"{split}/*.npz"} for split in VOLUMES}
    params = {"root": str(root), "cases": cases}
    return tiny_pretrain_config(output, data={"dataset": "numpy", "params": params, **data})


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_runs_read_the_volumes_decompressed_once_and_train_the_same_bits(tmp_path: Path) -> None:
    data, cache = tmp_path / "data", tmp_path / "decompressed"
    issl.pretrain(_config(data, tmp_path / "in-memory"))
    workers = {"num_workers": 2, "worker_start_method": "spawn"}
    issl.pretrain(_config(data, tmp_path / "first", cache_dir=str(cache), **workers))
    assert_same_checkpoints(tmp_path / "first", tmp_path / "in-memory", why="differs from the run in memory")
    written = sorted(cache.glob("*.npy"))
    assert len(written) == sum(VOLUMES.values())  # one file per volume, whichever process read it
    inodes = {path: path.stat().st_ino for path in written}
    used = {path: path.stat().st_mtime_ns for path in written}

    issl.pretrain(_config(data, tmp_path / "second", cache_dir=str(cache), **workers))
    assert_same_checkpoints(tmp_path / "second", tmp_path / "in-memory", why="differs from the run in memory")
    # The second run decompressed nothing: no file was written again (a rewrite is renamed into
    # place, a new inode). It marked each file used, for pruning (its modification time).
    assert {path: path.stat().st_ino for path in sorted(cache.glob("*.npy"))} == inodes
    assert all(path.stat().st_mtime_ns > used[path] for path in written)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_resume_may_start_reading_through_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    issl.pretrain(_config(data, tmp_path / "reference"))
    config = _config(data, tmp_path / "run")
    pretrain_stopped_after_the_first_epoch(config, monkeypatch)
    cache = str(tmp_path / "decompressed")
    resumed = {
        **config,
        "data": {**config["data"], "cache_dir": cache},
        "run": {**config["run"], "resume": True},
    }
    issl.pretrain(resumed)
    (entry,) = json.loads((tmp_path / "run" / "manifest.json").read_text())["resumes"]
    assert entry["changed"] == {"data.cache_dir": {"recorded": None, "now": cache}}
    assert_same_checkpoints(
        tmp_path / "run", tmp_path / "reference", why="differs from the run never stopped"
    )


def test_a_file_given_as_the_folder_is_refused_naming_the_field(tmp_path: Path) -> None:
    blocker = tmp_path / "decompressed"
    blocker.write_text("")
    with pytest.raises(DataError, match=r"data\.cache_dir='.*decompressed' is a file; expected a folder"):
        issl.pretrain(_config(tmp_path / "data", tmp_path / "run", cache_dir=str(blocker)))
    assert not (tmp_path / "run").exists()
