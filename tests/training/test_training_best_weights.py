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
