"""Evaluation read by DataLoader workers: the same table, bit for bit, as read in the process.

Which process read each item is recorded by the dataset itself (a file per reading process), so
the test sees the workers at work rather than trusting a setting; the table of a run without
workers is the reference.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

import inpaintssl as issl
from inpaintssl.config import PretextConfig
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.losses import DiceCELoss
from inpaintssl.registry import BACKBONES
from inpaintssl.training import evaluation
from inpaintssl.training.components import build_pretext_task
from inpaintssl.training.evaluation import evaluate_inpainting, evaluate_segmentation
from inpaintssl.training.objectives import InpaintingObjective
from study_helpers import tiny_pretrain_config

METHODS = [m for m in ("fork", "forkserver", "spawn") if m in multiprocessing.get_all_start_methods()]


class _RecordsItsReaders(Dataset[dict[str, Any]]):
    """``SyntheticShapes``' test slices; each process that reads one leaves a file named by its id."""

    def __init__(self, folder: Path) -> None:
        self.shapes = SyntheticShapes(split="test", num_images=8, num_test=10, size=(16, 16))
        self.folder = folder
        self.class_names = self.shapes.class_names

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        (self.folder / str(os.getpid())).touch()
        item: dict[str, Any] = self.shapes[index]
        return item

    def readers(self) -> set[int]:
        found = {int(p.name) for p in self.folder.iterdir()}
        for p in self.folder.iterdir():
            p.unlink()
        return found


def _evaluate(kind: str, dataset: Dataset[dict[str, Any]], **reading: Any) -> list[dict[str, Any]]:
    model = BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0)
    common: dict[str, Any] = {"device": torch.device("cpu"), "batch_size": 4, "channels_last": False}
    if kind == "segmentation":
        loss = DiceCELoss()
        return evaluate_segmentation(
            model,
            dataset,
            predict_onehot=loss.predict_onehot,
            class_names=("disc", "square"),
            **common,
            **reading,
        ).rows
    model = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
    task = build_pretext_task(PretextConfig(patch_size=4, bank_size=4), seed=0)
    return evaluate_inpainting(
        model, dataset, corrupt=InpaintingObjective(task).corrupt, **common, **reading
    ).rows


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("kind", ["segmentation", "inpainting"])
@pytest.mark.parametrize("method", METHODS)
def test_workers_read_the_same_table_as_the_process_itself(tmp_path: Path, kind: str, method: str) -> None:
    dataset = _RecordsItsReaders(tmp_path)
    reference = _evaluate(kind, dataset)
    assert dataset.readers() == {os.getpid()}
    rows = _evaluate(kind, dataset, num_workers=2, worker_start_method=method)
    assert rows == reference  # every float equal, not merely close
    readers = dataset.readers()
    # 10 slices in batches of 4: 3 batches, read by the two workers, none by this process.
    assert len(readers) == 2 and os.getpid() not in readers
    assert not any(_alive(pid) for pid in readers)  # stopped when the pass ended


# PyTorch warns where 3 workers outnumber the cores (this 2-core machine), not on a larger one.
@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes:UserWarning")
def test_no_more_workers_start_than_the_pass_has_batches(tmp_path: Path) -> None:
    dataset = _RecordsItsReaders(tmp_path)
    _evaluate("segmentation", dataset, num_workers=8)
    assert len(dataset.readers()) == 3  # 10 slices, batches of 4


def test_evaluation_leaves_the_callers_random_stream_alone(tmp_path: Path) -> None:
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    _evaluate("segmentation", _RecordsItsReaders(tmp_path), num_workers=2)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize(
    ("reading", "message"),
    [
        ({"num_workers": -1}, r"num_workers=-1; expected 0 \(read here\) or more worker processes"),
        (
            {"num_workers": 2, "worker_start_method": "threads"},
            r"worker_start_method='threads' is not a start method this platform offers: expected one of \[",
        ),
    ],
)
def test_a_bad_reading_setting_is_named(tmp_path: Path, reading: dict[str, Any], message: str) -> None:
    dataset = _RecordsItsReaders(tmp_path)
    with pytest.raises(ValueError, match=message):
        _evaluate("segmentation", dataset, **reading)
    assert dataset.readers() == set()


def _loaders_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str | None]]:
    """The workers and start method of each evaluation loader built from now on (the real loaders)."""
    seen: list[tuple[int, str | None]] = []
    real = evaluation.EpochLoader

    def recording(*args: Any, **kwargs: Any) -> Any:
        loader = real(*args, **kwargs)
        seen.append((loader.num_workers, kwargs.get("multiprocessing_context")))
        return loader

    monkeypatch.setattr(evaluation, "EpochLoader", recording)
    return seen


def test_a_runs_own_evaluation_and_evaluate_read_with_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _loaders_seen(monkeypatch)
    config = tiny_pretrain_config(tmp_path / "run", optim={"max_epochs": 1})
    # fork: the quickest start; the test above starts workers by every method.
    config["data"] = {**config["data"], "num_workers": 1, "worker_start_method": "fork"}
    with pytest.warns(UserWarning):  # one epoch: too short to judge convergence
        issl.pretrain(config)
    assert seen == [(1, "fork")]  # val_inpainting.csv
    with open(tmp_path / "run" / "val_inpainting.csv", newline="") as handle:
        recorded = [float(row["l2_norm"]) for row in csv.DictReader(handle)]
    # evaluate() reads as the run recorded; its num_workers overrides that.
    for num_workers, expected in ((None, (1, "fork")), (0, (0, "fork"))):
        seen.clear()
        table = issl.evaluate(tmp_path / "run", split="val", device="cpu", num_workers=num_workers)
        assert seen == [expected]
        assert table.column("l2_norm").tolist() == recorded  # the run's own pass, to the last bit
    with pytest.raises(ValueError, match=r"num_workers=-2; expected 0"):
        issl.evaluate(tmp_path / "run", split="val", device="cpu", num_workers=-2)


def test_a_finetuning_runs_test_pass_reads_with_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _loaders_seen(monkeypatch)
    config = tiny_pretrain_config(tmp_path / "run", optim={"max_epochs": 1})
    del config["pretext"]
    config["data"] = {**config["data"], "num_workers": 2, "worker_start_method": "fork"}
    with pytest.warns(UserWarning):  # one epoch: too short to judge convergence
        issl.finetune(config)
    assert seen == [(1, "fork")]  # test_metrics.csv: 2 test slices, one batch, one worker
