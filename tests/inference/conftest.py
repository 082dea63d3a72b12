"""Tiny trained runs shared by the inference tests (loading, export, prediction).

Both runs train a depth-3, width-8 U-Net on 32x32 ``synthetic`` slices on the CPU for a few
steps: enough for non-trivial weights and a complete run folder (``config.yaml``,
``checkpoints/best`` and ``checkpoints/last``), in a few seconds each. They are session-scoped, so
every test module gets the same runs; treat them as read-only (copy a run folder before damaging
it, and deep-copy ``result.model`` before changing it).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import inpaintssl as issl
from inpaintssl.data.readers import NiftiVolume

TINY_MODEL: dict[str, Any] = {"params": {"depth": 3, "base_width": 8}}
"""The U-Net of both runs: inputs must be multiples of 4 (``2**(depth - 1)``)."""

SYNTHETIC: dict[str, Any] = {
    "dataset": "synthetic",
    "params": {"num_images": 16, "num_val": 4, "num_test": 4, "size": [32, 32]},
}
"""The data of both runs: 32x32 single-channel slices, classes ``disc`` and ``square``."""


def _run(output_dir: Path, *, seed: int) -> dict[str, Any]:
    return {"output_dir": str(output_dir), "quiet": True, "device": "cpu", "seed": seed}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> issl.FinetuneResult:
    """A fine-tuning run (sigmoid heads, the budget recipe) in a session temp folder.

    ``result.run_dir`` is the run folder, ``result.model`` the network with its best weights.
    """
    return issl.finetune(
        {
            "data": SYNTHETIC,
            "model": TINY_MODEL,
            "optim": {"max_epochs": 2, "steps_per_epoch": 3, "batch_size": 4},
            "run": _run(tmp_path_factory.mktemp("finetune_run"), seed=3),
        }
    )


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory: pytest.TempPathFactory) -> issl.PretrainResult:
    """An inpainting pretraining run (context restoration, 4x4 patches) in a session temp folder."""
    return issl.pretrain(
        {
            "data": SYNTHETIC,
            "model": TINY_MODEL,
            "pretext": {"task": "context_restoration", "patch_size": 4, "bank_size": 4},
            "optim": {"max_epochs": 2, "steps_per_epoch": 3, "batch_size": 4},
            "run": _run(tmp_path_factory.mktemp("pretrain_run"), seed=4),
        }
    )


@pytest.fixture
def decompressing_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The real NIfTI reader, instrumented: the name of the thread of each whole-array read (a
    ``.nii.gz`` decompressed), in order."""
    real = NiftiVolume._array
    threads: list[str] = []

    def on_thread(self: NiftiVolume) -> Any:
        if "_cache" not in self.__dict__:
            threads.append(threading.current_thread().name)
        return real(self)

    monkeypatch.setattr(NiftiVolume, "_array", on_thread)
    return threads
