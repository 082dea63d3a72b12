"""A resumed run restores the global RNGs (``random``, ``numpy.random``, ``torch``) of its checkpoint.

The trainer's own randomness is keyed by (seed, epoch, index), so nothing of the library noticed
when a resume left the global generators alone. A plugin that draws from them (augmentation,
dropout-like noise) would then diverge silently after a restart. Here the objective draws from
all three generators at every step and scales its loss with the draws.
"""

from __future__ import annotations

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
