"""Training's warnings about a call show on every call, at the caller's line.

A fixed ``stacklevel`` pointed FreshStartWarning at training/context.py, and Python's
once-per-line memory hides an identical warning the second time a notebook cell runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import inpaintssl as issl
from inpaintssl.config import OptimConfig
from inpaintssl.training.context import FreshStartWarning
from inpaintssl.training.convergence import ConvergenceWarning
from inpaintssl.training.convergence_report import phase_convergence, report_convergence
from inpaintssl.training.outcome import Phase, TrainOutcome


def _tiny_pretrain(output_dir: Path) -> dict[str, Any]:
    return {
        "data": {
            "dataset": "synthetic",
            "params": {"num_images": 8, "num_val": 4, "num_test": 4, "size": [32, 32]},
        },
        "model": {"params": {"depth": 2, "base_width": 4}},
        "pretext": {"patch_size": 4},
        "optim": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 4},
        "run": {"output_dir": str(output_dir), "quiet": True, "device": "cpu", "resume": True},
    }


def test_a_fresh_start_warning_shows_on_each_call_at_the_callers_line(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for n in range(2):
            issl.pretrain(_tiny_pretrain(tmp_path / f"run{n}"))
    fresh = [w for w in caught if w.category is FreshStartWarning]
    assert [w.filename for w in fresh] == [__file__] * 2
    assert [f"run{n}' did not exist" in str(w.message) for n, w in enumerate(fresh)] == [True, True]


def _unconverged() -> TrainOutcome:
    # Still falling at its last epoch: a phase its budget ended early.
    history = [
        {"epoch": e, "phase": "pretrain", "val_loss": loss, "lr": 1e-3, "lr_mean": 1e-3, "stopped_early": 0}
        for e, loss in enumerate([10.0, 8.0, 6.0, 4.0, 2.0])
    ]
    verdict = phase_convergence(history, "pretrain", tolerance=0.05)
    assert not verdict.converged
    return TrainOutcome(
        history=history,
        best_val_loss=2.0,
        best_epoch=4,
        epochs_run=5,
        stopped_early=False,
        convergence=[verdict],
        phase_names=["pretrain"],
    )


def test_the_same_convergence_warning_shows_again_when_the_call_repeats(tmp_path: Path) -> None:
    outcome = _unconverged()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):  # the same run's report twice: the same words from the same line
            report_convergence(
                outcome,
                phases=[Phase(name="pretrain", lr=1e-3)],
                optim=OptimConfig(max_epochs=5, steps_per_epoch=2),
                steps_per_epoch=2,
                run_dir=tmp_path,
                learning_curve=tmp_path / "learning_curve.png",
            )
    said = [w for w in caught if w.category is ConvergenceWarning]
    assert [w.filename for w in said] == [__file__] * 2
    assert len({str(w.message) for w in said}) == 1 and "still falling" in str(said[0].message)
