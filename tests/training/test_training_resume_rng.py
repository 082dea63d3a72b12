"""A resumed run restores the global RNGs (``random``, ``numpy.random``, ``torch``) of its checkpoint.

The trainer's own randomness is keyed by (seed, epoch, index), so nothing of the library noticed
when a resume left the global generators alone. A plugin that draws from them (augmentation,
dropout-like noise) would then diverge silently after a restart. Here the objective draws from
all three generators at every step and scales its loss with the draws. float16 training's loss
scale (its ``GradScaler``) is trainer state of the same kind and continues too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from inpaintssl.training.loop import Trainer
from inpaintssl.training.objectives import VALIDATION_KEY_OFFSET
from study_helpers import tiny_segmentation_trainer

STEPS_PER_EPOCH = 2  # 8 training images, batch size 4
EPOCHS = 4


class SimulatedKillError(Exception):
    """Stands in for a kill: raised at a chosen training step, before that step draws."""


class GlobalRandomness:
    """A squared-error objective whose loss is scaled by draws from the three global RNGs."""

    def __init__(self, *, stop_at_call: int | None = None) -> None:
        self.stop_at_call = stop_at_call
        self.calls = 0
        self.draws: dict[int, tuple[float, float, float]] = {}

    def loss(self, model: nn.Module, batch: dict[str, Any], *, keys: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(batch["image"])
        target: torch.Tensor = batch["label"]
        error = ((out - target.float()) ** 2).mean()
        if int(keys.min()) >= VALIDATION_KEY_OFFSET:
            return error
        if self.calls == self.stop_at_call:
            raise SimulatedKillError(f"stopped at training call {self.calls}")
        draw = (random.random(), float(np.random.random()), float(torch.rand(())))
        self.draws[self.calls] = draw
        self.calls += 1
        return error * (1.0 + sum(draw))


def _trainer(run_dir: Path, objective: GlobalRandomness, *, resume: bool) -> tuple[Trainer, nn.Module]:
    trainer: Trainer = tiny_segmentation_trainer(run_dir, max_epochs=EPOCHS, resume=resume)
    trainer.objective = objective
    return trainer, trainer.model


def _seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_resume_continues_the_global_random_streams(tmp_path: Path) -> None:
    _seed_globals(0)
    reference = GlobalRandomness()
    trainer, reference_model = _trainer(tmp_path / "reference", reference, resume=False)
    trainer.fit()

    # Stop at the first step of epoch 2; checkpoints/last then holds the end of epoch 1.
    stop = 2 * STEPS_PER_EPOCH
    _seed_globals(0)
    trainer, _ = _trainer(tmp_path / "run", GlobalRandomness(stop_at_call=stop), resume=False)
    with pytest.raises(SimulatedKillError):
        trainer.fit()

    # A restarted process starts from unrelated global states.
    _seed_globals(12345)
    resumed = GlobalRandomness()
    resumed.calls = stop
    trainer, model = _trainer(tmp_path / "run", resumed, resume=True)
    outcome = trainer.fit()

    assert outcome.resumed_from_epoch == 2
    expected = {call: draw for call, draw in reference.draws.items() if call >= stop}
    assert sorted(resumed.draws) == sorted(expected)
    for call, draw in expected.items():
        python, numpy, torch_draw = resumed.draws[call]
        assert python == draw[0], f"random differs at step {call}"
        assert numpy == draw[1], f"numpy.random differs at step {call}"
        assert torch_draw == draw[2], f"torch differs at step {call}"
    reference_state = reference_model.state_dict()
    assert all(torch.equal(v, reference_state[k]) for k, v in model.state_dict().items())


def _float16_style_scaler(trainer: Trainer) -> torch.amp.GradScaler:
    # float16 autocast runs on CUDA only (amp is off on the CPU), but the GradScaler it enables is
    # device-independent: enabled here on the CPU, doubling its scale after every finite step.
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    trainer.train_step.scaler = scaler
    return scaler


def _killed_after_two_epochs(run_dir: Path, *, scaled: bool) -> None:
    trainer, _ = _trainer(run_dir, GlobalRandomness(stop_at_call=2 * STEPS_PER_EPOCH), resume=False)
    if scaled:
        _float16_style_scaler(trainer)
    with pytest.raises(SimulatedKillError):
        trainer.fit()
    if scaled:
        assert trainer.train_step.scaler.get_scale() == 1024.0 * 2**4  # 4 finite steps, each doubling


def _resumed_scale(run_dir: Path) -> float:
    """The scale after the resumed run's remaining epochs, from a scaler built anew at 1024."""
    objective = GlobalRandomness()
    objective.calls = 2 * STEPS_PER_EPOCH
    trainer, _ = _trainer(run_dir, objective, resume=True)
    scaler = _float16_style_scaler(trainer)
    assert trainer.fit().resumed_from_epoch == 2
    return scaler.get_scale()


def test_resume_continues_at_the_loss_scale_the_run_reached(tmp_path: Path) -> None:
    _killed_after_two_epochs(tmp_path, scaled=True)
    remaining = (EPOCHS - 2) * STEPS_PER_EPOCH
    # Started again from 1024 it would end at 1024 * 2**remaining, and skip steps on float16
    # until it backed off; continued, it goes on from the scale the checkpoint reached.
    assert _resumed_scale(tmp_path) == 1024.0 * 2 ** (4 + remaining)


def test_a_checkpoint_without_a_loss_scale_leaves_the_scaler_as_built(tmp_path: Path) -> None:
    _killed_after_two_epochs(tmp_path, scaled=False)  # amp off: no scale recorded
    saved = json.loads((tmp_path / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert "grad_scaler" not in saved
    assert _resumed_scale(tmp_path) == 1024.0 * 2 ** ((EPOCHS - 2) * STEPS_PER_EPOCH)
