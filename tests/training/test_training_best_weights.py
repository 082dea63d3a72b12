"""Best-weight restore and ties, with validation losses scripted epoch by epoch.

In real runs the best validation epoch is usually the last, so a trainer that never restored the
best weights, or that called an equal loss an improvement, passed every test. Here the objective
trains the network for real but reports validation losses from a script, and an epoch hook
snapshots the weights after every epoch: the expected end state is known independently of the
trainer's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from inpaintssl.checkpoint import CheckpointMeta, load_checkpoint
from inpaintssl.config import EarlyStoppingConfig, OptimConfig, RunConfig
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.registry import BACKBONES
from inpaintssl.training.context import RunContext
from inpaintssl.training.early_stopping import EarlyStopping
from inpaintssl.training.loop import Phase, Trainer
from inpaintssl.training.objectives import VALIDATION_KEY_OFFSET
from inpaintssl.training.run_folder import TensorBoardLog

STEPS_PER_EPOCH = 2  # 8 training images, batch size 4


class ScriptedValidation:
    """Trains on a real squared error; each epoch's validation loss is the next value of ``script``."""

    def __init__(self, script: Sequence[float]) -> None:
        self.script = list(script)
        self.validations = 0
        self.train_calls = 0
        self.at_call: dict[int, dict[str, torch.Tensor]] = {}
        self.watch: set[int] = set()

    def loss(self, model: nn.Module, batch: dict[str, Any], *, keys: torch.Tensor) -> torch.Tensor:
        if int(keys.min()) >= VALIDATION_KEY_OFFSET:
            # The 4 validation images make one batch, so one call per epoch.
            value = self.script[self.validations]
            self.validations += 1
            return torch.tensor(value)
        if self.train_calls in self.watch:
            self.at_call[self.train_calls] = _snapshot(model)
        self.train_calls += 1
        out: torch.Tensor = model(batch["image"])
        target: torch.Tensor = batch["label"]
        return ((out - target.float()) ** 2).mean()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _fit(
    tmp_path: Path,
    script: Sequence[float],
    *,
    phases: Sequence[Phase] = (Phase(name="finetune", lr=1e-2),),
    max_epochs: int,
    patience: int = 50,
    watch: Sequence[int] = (),
) -> tuple[Any, nn.Module, list[dict[str, torch.Tensor]], ScriptedValidation]:
    model: nn.Module = BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0)
    objective = ScriptedValidation(script)
    objective.watch = set(watch)
    after_epoch: list[dict[str, torch.Tensor]] = []

    def hook(model: nn.Module, *, epoch: int, tensorboard: TensorBoardLog) -> None:
        assert epoch == len(after_epoch)
        after_epoch.append(_snapshot(model))

    trainer = Trainer(
        model=model,
        objective=objective,
        train_set=SyntheticShapes(split="train", num_images=8, size=(16, 16)),
        val_set=SyntheticShapes(split="val", num_images=8, num_val=4, size=(16, 16)),
        phases=list(phases),
        optim=OptimConfig(batch_size=4, max_epochs=max_epochs),
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=patience),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=RunContext.local(RunConfig(output_dir=tmp_path, device="cpu", seed=0, quiet=True)),
        epoch_hooks=[hook],
    )
    outcome = trainer.fit()
    assert objective.validations == len(after_epoch) == outcome.epochs_run
    return outcome, model, after_epoch, objective


def test_the_phase_ends_with_the_weights_of_its_best_epoch_not_its_last(tmp_path: Path) -> None:
    outcome, model, after_epoch, _ = _fit(tmp_path, [3.0, 1.0, 2.0, 2.5], max_epochs=4)

    assert not _same(after_epoch[1], after_epoch[3]), "training did not move the weights"
    assert _same(_snapshot(model), after_epoch[1])
    assert (outcome.best_epoch, outcome.best_val_loss) == (1, 1.0)
    state, meta = load_checkpoint(tmp_path, which="best")
    assert meta is not None and meta.epoch == 1
    assert _same(state, after_epoch[1])


def test_each_phase_restores_its_own_best_before_the_next_starts(tmp_path: Path) -> None:
    # Phase 1: best at its epoch 0 (global 0). Phase 2: best at its epoch 1 (global 4).
    first_call_of_phase_two = 3 * STEPS_PER_EPOCH
    outcome, model, after_epoch, objective = _fit(
        tmp_path,
        [1.0, 2.0, 3.0, 5.0, 0.5, 0.7, 0.9],
        phases=(Phase(name="frozen", lr=1e-2, frozen_parts=("encoder",)), Phase(name="unfrozen", lr=1e-2)),
        max_epochs=3,
        watch=[first_call_of_phase_two],
    )

    assert outcome.phase_best == [1.0, 0.5]
    assert _same(objective.at_call[first_call_of_phase_two], after_epoch[0])
    assert not _same(after_epoch[0], after_epoch[2])
    assert _same(_snapshot(model), after_epoch[4])


def test_an_equal_validation_loss_is_not_a_new_best(tmp_path: Path) -> None:
    outcome, model, after_epoch, _ = _fit(tmp_path, [2.0, 1.0, 1.0, 1.5], max_epochs=4)

    assert not _same(after_epoch[1], after_epoch[2])
    assert (outcome.best_epoch, outcome.best_val_loss) == (1, 1.0)
    assert [row["best"] for row in outcome.history] == [1, 1, 0, 0]
    assert _same(_snapshot(model), after_epoch[1])


def test_equal_losses_run_out_the_patience(tmp_path: Path) -> None:
    outcome, _, _, _ = _fit(tmp_path, [1.0] * 6, max_epochs=6, patience=2)

    assert outcome.stopped_early
    assert outcome.epochs_run == 3  # the first epoch improves on inf, two equal ones exhaust patience


@pytest.mark.parametrize(
    ("min_delta", "losses", "improved"),
    [
        (0.0, [1.0, 1.0, 1.0], [True, False, False]),
        # Exactly min_delta below the best (9.5 after 10, 8.75 after 9.25) is not enough.
        (0.5, [10.0, 9.5, 9.25, 8.75], [True, False, True, False]),
        (0.0, [3.0, 2.0, 2.0, 1.0], [True, True, False, True]),
    ],
)
def test_early_stopping_counts_a_tie_as_no_improvement(
    min_delta: float, losses: list[float], improved: list[bool]
) -> None:
    stop = EarlyStopping(min_delta=min_delta, patience=2)
    assert [stop.update(v) for v in losses] == improved
    assert stop.best == [v for v, better in zip(losses, improved, strict=True) if better][-1]


def test_early_stopping_stops_after_patience_ties() -> None:
    stop = EarlyStopping(min_delta=0.0, patience=2)
    stop.update(1.0)
    stop.update(1.0)
    assert not stop.should_stop
    stop.update(1.0)
    assert stop.should_stop


class KilledError(Exception):
    """Stands for the process being killed."""


def _killable_trainer(
    run: Path, script: Sequence[float], *, resume: bool, checkpoint_every: int, after_epoch: list[Any]
) -> Trainer:
    def hook(model: nn.Module, *, epoch: int, tensorboard: TensorBoardLog) -> None:
        after_epoch.append((epoch, _snapshot(model)))

    return Trainer(
        model=BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0),
        objective=ScriptedValidation(script),
        train_set=SyntheticShapes(split="train", num_images=8, size=(16, 16)),
        val_set=SyntheticShapes(split="val", num_images=8, num_val=4, size=(16, 16)),
        phases=[Phase(name="finetune", lr=1e-2)],
        optim=OptimConfig(batch_size=4, max_epochs=5),
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=RunContext.local(
            RunConfig(
                output_dir=run,
                device="cpu",
                seed=0,
                quiet=True,
                resume=resume,
                checkpoint_every=checkpoint_every,
            )
        ),
        epoch_hooks=[hook],
    )


@pytest.mark.parametrize(
    ("checkpoint_every", "killed_in", "redone"),
    [
        # Killed after epoch 3's new best, before its ``last``: epoch 3 is trained again.
        (1, 3, [0.7, 0.8]),
        # ``last`` every 3 epochs (after epoch 2): a kill in epoch 4 loses epochs 3 and 4.
        (3, 4, [0.7, 0.8]),
    ],
)
def test_a_best_epoch_the_resume_trains_again_never_becomes_the_runs_best(
    tmp_path: Path, checkpoint_every: int, killed_in: int, redone: list[float]
) -> None:
    # Epoch 3 beats epoch 1 in the killed process; trained again (a GPU's non-deterministic
    # kernels, a run.* setting changed on resume) it does not. The run's best is then epoch 1,
    # as its metrics.csv says, and its weights must be epoch 1's.
    killed: list[Any] = []
    first = _killable_trainer(
        tmp_path,
        [0.9, 0.5, 0.6, 0.4, 0.45],
        resume=False,
        checkpoint_every=checkpoint_every,
        after_epoch=killed,
    )

    def kill(model: nn.Module, *, epoch: int, tensorboard: TensorBoardLog) -> None:
        if epoch == killed_in:
            raise KilledError

    first.epoch_hooks.append(kill)
    with pytest.raises(KilledError):
        first.fit()

    resumed: list[Any] = []
    second = _killable_trainer(
        tmp_path, redone, resume=True, checkpoint_every=checkpoint_every, after_epoch=resumed
    )
    outcome = second.fit()

    assert [epoch for epoch, _ in resumed] == [3, 4]
    assert (outcome.best_epoch, outcome.best_val_loss) == (1, 0.5)
    weights_of_epoch_1 = dict(killed)[1]
    state, meta = load_checkpoint(tmp_path, which="best")
    assert meta is not None and meta.epoch == 1
    assert _same(state, weights_of_epoch_1)
    assert _same(_snapshot(second.model), weights_of_epoch_1)
    assert not (tmp_path / "checkpoints" / "best.pending").exists()


def test_a_kill_between_last_and_the_move_of_its_best_is_finished_by_the_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``last`` after epoch 3 records epoch 3 as the best; the process dies before its weights
    # reach ``best``. The resume must finish the move, not drop epoch 3's weights.
    import inpaintssl.training.loop as loop_module

    real_promote = loop_module.promote_checkpoint
    moves = 0

    def promote_then_die(source: Path, folder: Path) -> bool:
        nonlocal moves
        moves += 1
        if moves == 4:  # the moves after epochs 0, 1 (new bests), 2 (none pending), 3
            raise KilledError
        return real_promote(source, folder)

    monkeypatch.setattr(loop_module, "promote_checkpoint", promote_then_die)
    killed: list[Any] = []
    first = _killable_trainer(
        tmp_path, [0.9, 0.5, 0.6, 0.375], resume=False, checkpoint_every=1, after_epoch=killed
    )
    with pytest.raises(KilledError):
        first.fit()
    assert load_checkpoint(tmp_path, which="best")[1].epoch == 1  # type: ignore[union-attr]
    monkeypatch.setattr(loop_module, "promote_checkpoint", real_promote)

    resumed: list[Any] = []
    second = _killable_trainer(tmp_path, [0.7], resume=True, checkpoint_every=1, after_epoch=resumed)
    outcome = second.fit()

    assert [epoch for epoch, _ in resumed] == [4]
    assert (outcome.best_epoch, outcome.best_val_loss) == (3, 0.375)
    state, meta = load_checkpoint(tmp_path, which="best")
    assert meta is not None and meta.epoch == 3
    assert _same(state, dict(killed)[3])


def test_a_best_checkpoint_ahead_of_last_from_an_older_version_is_named_and_its_epoch_reported(
    tmp_path: Path,
) -> None:
    # An older version wrote a new best straight to ``best``: killed before ``last``, the folder
    # holds epoch 3's weights in ``best`` while ``last`` records epoch 1 as the best.
    from inpaintssl.checkpoint import promote_checkpoint

    killed: list[Any] = []
    first = _killable_trainer(
        tmp_path, [0.9, 0.5, 0.6, 0.375, 0.45], resume=False, checkpoint_every=1, after_epoch=killed
    )

    def kill(model: nn.Module, *, epoch: int, tensorboard: TensorBoardLog) -> None:
        if epoch == 3:
            raise KilledError

    first.epoch_hooks.append(kill)
    with pytest.raises(KilledError):
        first.fit()
    assert promote_checkpoint(tmp_path / "checkpoints" / "best.pending", tmp_path / "checkpoints" / "best")

    resumed: list[Any] = []
    second = _killable_trainer(tmp_path, [0.7, 0.8], resume=True, checkpoint_every=1, after_epoch=resumed)
    with pytest.warns(
        UserWarning,
        match=r"holds epoch 3 \(val_loss 0\.375\), not the run's best weights so far "
        r"\(metrics\.csv epoch 1",
    ):
        outcome = second.fit()

    # What the run reports as its best is what it ends with.
    assert (outcome.best_epoch, outcome.best_val_loss) == (3, 0.375)
    assert _same(_snapshot(second.model), dict(killed)[3])
