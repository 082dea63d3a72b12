"""Worker seeding and per-process HDF5 handles, exercised through real DataLoader workers."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from inpaintssl.data.base import DataError
from inpaintssl.data.loading import H5Files, open_h5, seed_worker


class _Draws(Dataset[dict[str, Any]]):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, Any]:
        info = torch.utils.data.get_worker_info()
        return {
            "np": float(np.random.random()),
            "py": random.random(),
            "worker": -1 if info is None else info.id,
        }


def _draws(seed: int) -> list[tuple[float, float, int]]:
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        _Draws(), batch_size=1, num_workers=2, worker_init_fn=seed_worker, generator=generator
    )
    return [(float(b["np"]), float(b["py"]), int(b["worker"])) for b in loader]


def test_workers_draw_differently_and_reproducibly() -> None:
    first, again, other = _draws(0), _draws(0), _draws(1)
    assert first == again
    assert first != other
    by_worker = {w: [d[0] for d in first if d[2] == w] for w in (0, 1)}
    assert by_worker[0][0] != by_worker[1][0]  # forked workers no longer share the parent's NumPy state


class _Handles(Dataset[dict[str, Any]]):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.handles = H5Files()

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, Any]:
        before = len(self.handles)
        value = float(self.handles.get(self.path)["x"][index])
        return {"pid": os.getpid(), "before": before, "after": len(self.handles), "value": value}


def test_each_worker_opens_its_own_handle_once(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(4.0)
    ds = _Handles(path)
    ds[0]  # the parent holds an open handle before the workers fork
    loader = DataLoader(ds, batch_size=1, num_workers=2, persistent_workers=False)
    rows = [{k: v[0] if isinstance(v, list) else v.item() for k, v in b.items()} for b in loader]
    assert [r["value"] for r in rows] == [0.0, 1.0, 2.0, 3.0]
    assert {r["pid"] for r in rows}.isdisjoint({os.getpid()})
    for pid in {r["pid"] for r in rows}:
        mine = [r for r in rows if r["pid"] == pid]
        assert mine[0]["before"] == 0  # the parent's handle was not inherited
        assert all(r["after"] == 1 for r in mine)  # and one handle per worker, reused


def test_pickling_drops_open_handles(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3.0)
    handles = H5Files()
    handles.get(path)
    clone = pickle.loads(pickle.dumps(handles))
    assert len(clone) == 0 and float(clone.get(path)["x"][2]) == 2.0
    handles.close()
    assert len(handles) == 0


def test_open_h5_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"HDF5 file .*missing\.h5 does not exist"):
        open_h5(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match=r"HDF5 file .*text\.h5 cannot be opened"):
        open_h5(tmp_path / "text.h5")
