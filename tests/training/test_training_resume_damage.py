"""A resume against damaged or stale run files: refused at the door, or repaired from the checkpoint.

Each run here is the tiny one-phase fine-tuning of ``test_training_loop`` (two steps an epoch),
interrupted by an exception from an epoch hook, which is where a Ctrl-C or a kill between an
epoch's record and its checkpoint leaves a run.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from inpaintssl.checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from inpaintssl.config import EarlyStoppingConfig, FinetuneConfig, OptimConfig, RunConfig
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.registry import BACKBONES, LOSSES
from inpaintssl.training.context import FinishedRunWarning, RunContext
from inpaintssl.training.loop import Phase, Trainer
from inpaintssl.training.objectives import SegmentationObjective
from inpaintssl.training.run_folder import record_run
from study_helpers import EmptySplitRecord

SIZE = (16, 16)
EPOCHS = 4


class KilledError(Exception):
    """Stands for the interruption: raised by an epoch hook once that epoch's row is recorded."""


def _trainer(run: Path, *, resume: bool, hooks: list[object] | None = None) -> Trainer:
    model: torch.nn.Module = BACKBONES.build(
        "unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0
    )
    return Trainer(
        model=model,
        objective=SegmentationObjective(loss=LOSSES.build("dice")),
        train_set=SyntheticShapes(split="train", num_images=8, size=SIZE),
        val_set=SyntheticShapes(split="val", num_images=8, num_val=4, size=SIZE),
        phases=[Phase(name="finetune", lr=1e-2)],
        optim=OptimConfig(batch_size=4, max_epochs=EPOCHS),
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=RunContext.local(RunConfig(output_dir=run, device="cpu", seed=0, quiet=True, resume=resume)),
        epoch_hooks=hooks or [],  # type: ignore[arg-type]
    )


def _killed_after(run: Path, epoch: int) -> None:
    """Train ``run`` until the record of 0-based ``epoch`` is written, then interrupt it."""

    def kill(model: torch.nn.Module, *, epoch: int, tensorboard: object) -> None:
        if epoch == killed_at:
            raise KilledError

    killed_at = epoch
    with pytest.raises(KilledError):
        _trainer(run, resume=False, hooks=[kill]).fit()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_a_damaged_best_checkpoint_is_refused_before_any_epoch_is_trained(tmp_path: Path) -> None:
    # Before, the resume trained on and failed only at the run's end, loading the best weights
    # (or silently replaced them when a later epoch scored better): refused before any training.
    run = tmp_path / "run"
    _killed_after(run, epoch=1)
    best = run / "checkpoints" / "best" / "model.safetensors"
    _truncate(best, 100)
    trained: list[int] = []

    def count(model: torch.nn.Module, *, epoch: int, tensorboard: object) -> None:
        trained.append(epoch)

    with pytest.raises(
        CheckpointError, match=r"cannot resume .*checkpoints/best.*model\.safetensors"
    ) as info:
        _trainer(run, resume=True, hooks=[count]).fit()
    assert trained == []
    assert "Put back an intact copy of that folder, or start a new run.output_dir" in str(info.value)
    # Nothing was rewritten: the damaged file is left as found, for the user to restore.
    assert len(best.read_bytes()) == 100


def test_a_missing_best_checkpoint_is_refused_naming_the_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _killed_after(run, epoch=1)
    best = run / "checkpoints" / "best"
    for path in sorted(best.iterdir()):
        path.unlink()
    best.rmdir()
    with pytest.raises(CheckpointError, match=r"cannot resume .*checkpoints/best"):
        _trainer(run, resume=True).fit()


@pytest.mark.parametrize("best_intact", [True, False])
def test_a_damaged_last_checkpoint_says_the_way_on_and_whether_the_best_weights_serve(
    tmp_path: Path, best_intact: bool
) -> None:
    # The refusal named the damaged file and stopped there: a user did not learn that the run's
    # best weights, which load_model/evaluate/predict read, were still usable.
    run = tmp_path / "run"
    _killed_after(run, epoch=1)
    _truncate(run / "checkpoints" / "last" / "model.safetensors", 100)
    if not best_intact:
        _truncate(run / "checkpoints" / "best" / "model.safetensors", 100)
    with pytest.raises(CheckpointError, match=r"cannot resume from .*checkpoints/last") as info:
        _trainer(run, resume=True).fit()
    message = str(info.value)
    assert "To train on, put back an intact copy of it, or start a new run.output_dir" in message
    intact = f"the run's best weights so far, in {run / 'checkpoints' / 'best'}, are intact"
    assert (intact in message) is best_intact, message


def test_a_truncated_metrics_csv_of_a_finished_run_is_rewritten_from_the_checkpoint(tmp_path: Path) -> None:
    # A finished run resumed trains no epoch, so nothing rewrote metrics.csv: a torn copy stayed.
    run = tmp_path / "run"
    _trainer(run, resume=False).fit()
    metrics = run / "metrics.csv"
    whole = _rows(metrics)
    assert [int(r["epoch"]) for r in whole] == list(range(EPOCHS))
    _truncate(metrics, len(metrics.read_bytes()) // 3)
    with pytest.warns(FinishedRunWarning):
        _trainer(run, resume=True).fit()
    assert _rows(metrics) == whole


def test_metrics_csv_rows_past_the_checkpoint_are_redone_once(tmp_path: Path) -> None:
    # Killed after epoch 2's row was written but before its checkpoint: the resume redoes epoch 2,
    # and metrics.csv ends with each epoch once, the values of a run never interrupted.
    reference = tmp_path / "reference"
    _trainer(reference, resume=False).fit()
    run = tmp_path / "run"
    _killed_after(run, epoch=2)
    assert [int(r["epoch"]) for r in _rows(run / "metrics.csv")] == [0, 1, 2]
    _trainer(run, resume=True).fit()

    def without_times(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in rows]

    assert without_times(_rows(run / "metrics.csv")) == without_times(_rows(reference / "metrics.csv"))


def test_resuming_a_finished_run_warns_that_it_had_finished(tmp_path: Path) -> None:
    # A warning, shown on the command line and in a notebook: as a log line it was shown only with
    # --quiet, and the output looked like a fresh run's.
    run = tmp_path / "run"
    _trainer(run, resume=False).fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = _trainer(run, resume=True).fit()
    assert outcome.epochs_run == EPOCHS
    said = [str(w.message) for w in caught if issubclass(w.category, FinishedRunWarning)]
    # Counted from 1 as the run's summary counts ("best ... in epoch 2 of 2 (metrics.csv epoch 1)"),
    # the metrics.csv row beside it: the 0-based row alone read as the epoch before the best.
    best_row = min(range(EPOCHS), key=lambda e: outcome.history[e]["val_loss"])
    assert said == [
        f"resumed {run}: the run had finished ({EPOCHS} epochs, best in epoch {best_row + 1} "
        f"(metrics.csv epoch {best_row})); nothing is left to train, so its best weights are loaded again"
    ]


@pytest.mark.parametrize("name", ["splits.json", "manifest.json"])
@pytest.mark.parametrize("torn", ["", '{\n  "seed": 0,\n  "subs', "[]"])
def test_a_torn_record_is_named_and_written_again_on_resume(tmp_path: Path, name: str, torn: str) -> None:
    # Before, the resume skipped the data comparison against it without a word, and the torn
    # file stayed so for every later resume and for predict's spacing and orientation checks.
    record_run(
        tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=lambda: {"seed": 0}
    )
    (tmp_path / name).write_text(torn)
    splits = EmptySplitRecord()
    with pytest.warns(
        UserWarning,
        match=rf"{re.escape(str(tmp_path / name))} is unreadable \(.*\): this resume could not compare",
    ):
        record_run(tmp_path, FinetuneConfig(), resume=True, splits=splits, manifest=lambda: {"seed": 0})
    assert json.loads((tmp_path / name).read_text()) == ({} if name == "splits.json" else {"seed": 0})
    assert splits.saved == ([tmp_path / name] if name == "splits.json" else [])


def test_the_patience_count_survives_a_resume(tmp_path: Path) -> None:
    # min_delta above any Dice loss: only epoch 0 improves, so patience 3 stops the run after
    # epoch 3 (0-based) of 6. Killed after epoch 2's row, whose checkpoint is not written: the
    # resume starts from epoch 1's, one epoch into the count. A count reset there would train
    # epochs 2 to 4 and stop after 4.
    def trainer(run: Path, *, resume: bool, hooks: list[object] | None = None) -> Trainer:
        made = _trainer(run, resume=resume, hooks=hooks)
        made.stopping_config = EarlyStoppingConfig(min_delta=10.0, patience=3)
        made.optim = OptimConfig(batch_size=4, max_epochs=6)
        return made

    def kill(model: torch.nn.Module, *, epoch: int, tensorboard: object) -> None:
        if epoch == 2:
            raise KilledError

    run = tmp_path / "run"
    with pytest.raises(KilledError):
        trainer(run, resume=False, hooks=[kill]).fit()
    assert (
        json.loads((run / "checkpoints" / "last" / "trainer_state.json").read_text())["stopping"]["wait"] == 1
    )
    outcome = trainer(run, resume=True).fit()
    assert outcome.stopped_early and outcome.epochs_run == 4
    rows = _rows(run / "metrics.csv")
    # "best" marks a lower loss than any before (no min_delta), so it is not hand-known here.
    assert [(int(r["epoch"]), int(r["stopped_early"])) for r in rows] == [(0, 0), (1, 0), (2, 0), (3, 1)]


def test_a_killed_runs_figure_temporaries_are_swept(tmp_path: Path) -> None:
    # A kill while an epoch's reconstruction PNG was written leaves its temporary; before, no run
    # (not even a resume) removed it. A user's files there, of other names, stay.
    run = tmp_path / "run"
    figures = run / "reconstructions"
    figures.mkdir(parents=True)
    for name in (".epoch_002.png.k2x9ab_7.tmp", ".epoch_002.png.notes.tmp", "epoch_002.png", "mine.txt"):
        (figures / name).write_bytes(b"x")
    _killed_after(run, epoch=0)
    assert sorted(p.name for p in figures.iterdir()) == [
        ".epoch_002.png.notes.tmp",
        "epoch_002.png",
        "mine.txt",
    ]


def test_a_stale_pending_best_that_cannot_be_removed_is_named_not_claimed_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A read-only checkpoints/ folder: before, the resume logged "removed .../best.pending" and
    # left it there.
    run = tmp_path / "run"
    _killed_after(run, epoch=1)
    pending = run / "checkpoints" / "best.pending"
    meta = CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2, epoch=99)
    save_checkpoint(pending, {"w": torch.zeros(1)}, meta)
    real_rmtree = shutil.rmtree
    refused: list[str | Path] = []

    def read_only(path: str | Path, ignore_errors: bool = False, **kwargs: Any) -> None:
        if Path(path) == pending and not refused:  # the settling on resume; a later new best may move it
            refused.append(path)
            if not ignore_errors:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return
        real_rmtree(path, ignore_errors=ignore_errors, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", read_only)
    with (
        caplog.at_level("INFO", logger="inpaintssl"),
        pytest.warns(UserWarning, match=rf"could not remove {pending} \(Permission denied\)"),
        pytest.raises(KilledError),
    ):
        _trainer(run, resume=True, hooks=[_kill_at(2)]).fit()
    assert pending.is_dir()
    assert not any(f"removed {pending}" in record.getMessage() for record in caplog.records)


def _kill_at(killed_at: int) -> object:
    def kill(model: torch.nn.Module, *, epoch: int, tensorboard: object) -> None:
        if epoch == killed_at:
            raise KilledError

    return kill
