"""The supervised baseline of a two-run transfer schedule trains the same two phases from scratch.

A two-run schedule (``immediate_twice`` = F?S, ``freeze_then_unfreeze`` = FF?S) trains twice, each
run with its own ``optim.max_epochs`` and its own early-stopping window, the second from the
first's best weights at ``transfer.second_lr``. Its baseline must be trained the same way (the
project's rule: both arms of a comparison get the same treatment): one run of twice the epochs
with one early-stopping window trains fewer steps than the SSL run as soon as early stopping ends
a phase.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

from inpaintssl.config import TWO_RUN_SCHEDULES, FinetuneConfig
from inpaintssl.layout import RunFolder
from inpaintssl.registry import TRANSFER_STRATEGIES
from inpaintssl.studies import expand_study, load_runs, load_spec, run_study
from inpaintssl.studies.grid import Job, StudyPlan
from inpaintssl.studies.spec import StudySpec
from inpaintssl.training.finetuning import phases_for
from inpaintssl.training.loop import Phase


def _phases(config: FinetuneConfig) -> list[Phase]:
    """The phases a fine-tuning run trains, worked out as ``training.finetuning`` does."""
    transferred: tuple[str, ...] = ()
    if config.transfer.pretrained is not None:
        transferred = tuple(TRANSFER_STRATEGIES.build(config.transfer.weights).parts)
    return phases_for(
        lr=config.optim.effective_lr,
        schedule=config.transfer.schedule,
        second_lr=config.transfer.second_lr,
        transferred=transferred,
    )


def _config(job: Job) -> FinetuneConfig:
    assert isinstance(job.config, FinetuneConfig)
    return job.config


def _pairs(plan: StudyPlan) -> list[tuple[Job, Job]]:
    """Each SSL fine-tuning job with its baseline."""
    pairs = []
    for job in plan.finetune_jobs():
        if job.labels["arm"] != "ssl":
            continue
        baseline = plan.baseline_of(job)
        assert baseline is not None
        pairs.append((job, baseline))
    return pairs


@pytest.mark.parametrize("second_lr", [None, 3e-4], ids=["default-second-lr", "second-lr-given"])
@pytest.mark.parametrize("schedule", TWO_RUN_SCHEDULES)
def test_the_baseline_of_a_two_run_schedule_plans_its_phases(
    tmp_path: Path, schedule: str, second_lr: float | None
) -> None:
    grid: dict[str, list[Any]] = {
        "finetune.optim.lr": [1e-2, 1e-3],
        "finetune.transfer.weights": ["encoder", "encoder_decoder"],
        "finetune.transfer.schedule": [schedule],
    }
    if second_lr is not None:
        grid["finetune.transfer.second_lr"] = [second_lr]
    spec = StudySpec.model_validate(
        {
            "study": "transfer_design",
            "output": str(tmp_path),
            "finetune": {"optim": {"max_epochs": 7}, "early_stopping": {"patience": 3}},
            "label_fractions": [0.1],
            "grid": grid,
        }
    )
    pairs = _pairs(expand_study(spec))
    assert len(pairs) == 2 * 2  # learning rates x weights
    for ssl, baseline in pairs:
        ssl_config, base_config = _config(ssl), _config(baseline)
        ssl_phases, base_phases = _phases(ssl_config), _phases(base_config)
        # Worked by hand: a first phase at lr, a second at second_lr (default lr / 10).
        lr = ssl_config.optim.effective_lr
        expected_second = lr / 10 if second_lr is None else second_lr
        assert [p.lr for p in ssl_phases] == [p.lr for p in base_phases] == [lr, expected_second]
        if schedule == "immediate_twice":
            assert base_phases == ssl_phases  # names, rates, frozen parts: all the same
        else:
            assert [p.frozen_parts != () for p in ssl_phases] == [True, False]
        assert [p.name for p in base_phases] == ["finetune", "again"]
        assert all(p.frozen_parts == () for p in base_phases)  # nothing transferred, nothing frozen
        # Each phase has the same window: the same budget per phase and the same early stopping.
        assert base_config.optim == ssl_config.optim
        assert base_config.early_stopping == ssl_config.early_stopping
        assert base_config.transfer.pretrained is None
        assert baseline.labels["budget_epochs"] == ssl.labels["budget_epochs"] == 2 * 7
        assert baseline.labels["strategy"] == f"supervised lr={lr:g} second_lr={expected_second:g}"
    # Encoder and encoder-decoder runs at one pair of rates share the baseline: one per lr.
    assert len({baseline.id for _, baseline in pairs}) == 2


def _phase_epochs(run_dir: Path) -> list[tuple[str, float, int, bool]]:
    """Per phase of a run's ``metrics.csv``: name, first learning rate, epochs, stopped early."""
    with RunFolder(run_dir).metrics_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    phases: list[tuple[str, float, int, bool]] = []
    for row in rows:
        if not phases or phases[-1][0] != row["phase"]:
            phases.append((row["phase"], float(row["lr"]), 0, False))
        name, lr, epochs, _ = phases[-1]
        phases[-1] = (name, lr, epochs + 1, row["stopped_early"] == "1")
    return phases


@pytest.mark.slow
def test_a_two_run_pair_trains_the_same_phases_when_early_stopping_fires(spec_factory: Any) -> None:
    torch.manual_seed(0)
    max_epochs = 6
    finetune_changes = {
        "optim": {"max_epochs": max_epochs, "steps_per_epoch": 2, "batch_size": 4},
        # No epoch improves the validation loss by half: every phase stops after patience epochs.
        "early_stopping": {"min_delta": 0.5, "patience": 2},
    }
    raw = spec_factory(
        study="transfer_design",
        label_fractions=[0.5],
        grid={"finetune.transfer.schedule": ["immediate_twice", "freeze_then_unfreeze"]},
    )
    raw["finetune"] = {**raw["finetune"], **finetune_changes}
    spec = load_spec(raw)
    plan = expand_study(spec)
    pairs = _pairs(plan)
    assert len(pairs) == 2 and len({b.id for _, b in pairs}) == 1  # FES and FFES share a baseline
    run_study(spec, quiet=True)
    runs = load_runs(spec)
    baseline = pairs[0][1]
    base_phases = _phase_epochs(baseline.config.run.output_dir)
    # Worked by hand: each phase stops early after 1 + patience epochs, well inside its budget.
    assert base_phases == [("finetune", 1e-2, 3, True), ("again", 1e-3, 3, True)]
    for ssl, _ in pairs:
        ssl_phases = _phase_epochs(ssl.config.run.output_dir)
        # The same rates and the same epochs per phase, each phase ended by its own early stopping.
        assert [p[1:] for p in ssl_phases] == [p[1:] for p in base_phases]
        if ssl.labels["schedule"] == "immediate_twice":
            assert ssl_phases == base_phases  # the phase names too
        ssl_result, base_result = runs[ssl.id].result, runs[baseline.id].result
        assert ssl_result is not None and base_result is not None
        assert ssl_result["epochs_run"] == base_result["epochs_run"] == 6
        assert ssl.labels["budget_epochs"] == baseline.labels["budget_epochs"] == 2 * max_epochs
