"""Learning-rate schedule and early stopping against hand-computed expectations (Appendix A.1)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import inpaintssl as issl
from inpaintssl.config import FinetuneConfig
from inpaintssl.training.context import FinishedRunWarning
from inpaintssl.training.early_stopping import EarlyStopping, pretraining_min_delta
from inpaintssl.training.schedule import step_decay_lr
from study_helpers import tiny_pretrain_config


def test_step_decay_hand_values() -> None:
    # lr * 0.9 ** floor((1 + e) / 2): exponents 0, 1, 1, 2, 2, 3 for epochs 0..5.
    expected = [1e-3, 9e-4, 9e-4, 8.1e-4, 8.1e-4, 7.29e-4]
    got = [step_decay_lr(e, lr=1e-3) for e in range(6)]
    assert got == pytest.approx(expected, rel=1e-12)


@given(epoch=st.integers(0, 500))
def test_step_decay_every_two_epochs_is_the_papers_formula(epoch: int) -> None:
    # Appendix A.1 (the authors' Keras schedule): 0.9 ** floor((1 + e) / 2).
    assert step_decay_lr(epoch, lr=1.0, min_lr=0.0) == 0.9 ** ((1 + epoch) // 2)


@pytest.mark.parametrize(
    ("every", "exponents"),
    [(1, [0, 1, 2, 3, 4, 5, 6]), (3, [0, 1, 1, 1, 2, 2, 2]), (4, [0, 1, 1, 1, 1, 2, 2])],
)
def test_step_decay_starts_at_lr_and_decays_after_every_few_epochs(every: int, exponents: list[int]) -> None:
    # Epoch 0 trains at lr (optim.lr, transfer.second_lr), then one decay every `every` epochs:
    # floor((1 + e) / every) trained the first epoch at 0.9 lr with every=1 and decayed at 2, 5, 8
    # with every=3.
    got = [step_decay_lr(e, lr=1.0, decay=0.5, every=every, min_lr=0.0) for e in range(7)]
    assert got == [0.5**k for k in exponents]


def test_step_decay_floor() -> None:
    assert step_decay_lr(10_000, lr=1e-3) == 1e-8
    assert step_decay_lr(3, lr=1.0, decay=0.5, every=1, min_lr=0.2) == 0.2


@given(epoch=st.integers(0, 500), lr=st.floats(1e-6, 1.0), every=st.integers(1, 5))
def test_step_decay_is_monotone_and_bounded(epoch: int, lr: float, every: int) -> None:
    now = step_decay_lr(epoch, lr=lr, every=every)
    nxt = step_decay_lr(epoch + 1, lr=lr, every=every)
    assert 1e-8 <= nxt <= now <= lr


@pytest.mark.parametrize("bad", [{"epoch": -1, "lr": 1.0}, {"epoch": 0, "lr": 0.0}])
def test_step_decay_rejects_bad_input(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        step_decay_lr(int(bad["epoch"]), lr=bad["lr"])


def test_pretraining_rule_min_delta_50_patience_4() -> None:
    stop = EarlyStopping(min_delta=50.0, patience=4)
    # 1000 -> 960 improves by only 40 (< 50): not an improvement; 940 is 60 below 1000: improves.
    losses = [1000.0, 960.0, 940.0, 900.0, 895.0, 891.0, 892.0]
    improved = [stop.update(v) for v in losses]
    assert improved == [True, False, True, False, False, False, False]
    assert stop.best == 940.0
    assert stop.should_stop  # four epochs (900, 895, 891, 892) not below 940 - 50


@given(height=st.integers(1, 2048), width=st.integers(1, 2048))
def test_pretraining_min_delta_is_50_per_512x512_slice_by_area(height: int, width: int) -> None:
    # The L2 (eq. A1) sums over pixels: the same per-pixel improvement at any slice size.
    per_pixel = pretraining_min_delta(height, width) / (height * width)
    assert per_pixel == pytest.approx(50.0 / 512**2, rel=1e-12)


def test_a_pretraining_run_records_its_scaled_min_delta_and_a_resume_keeps_the_recorded_one(
    tmp_path: Path,
) -> None:
    run = tmp_path / "pre"
    issl.pretrain(tiny_pretrain_config(run))
    recorded = yaml.safe_load((run / "config.yaml").read_text())["early_stopping"]
    assert recorded["min_delta"] == 50.0 * 16 * 16 / 512**2 and recorded["patience"] == 4
    # A run recorded by an earlier release (min_delta 50) resumes with 50, not the new default.
    old = tmp_path / "old"
    first = tiny_pretrain_config(old, optim={"max_epochs": 1})
    issl.pretrain({**first, "early_stopping": {"min_delta": 50.0, "patience": 4}})
    # Resumed with the default (None): the recorded 50 is kept. Had the default been resolved to the
    # scaled number instead, the resume would be refused (a setting differing from config.yaml).
    with pytest.warns(FinishedRunWarning):
        resumed = issl.pretrain(tiny_pretrain_config(old, optim={"max_epochs": 1}, run={"resume": True}))
    assert resumed.epochs_run == 1


def test_fine_tuning_refuses_an_unscaled_min_delta() -> None:
    with pytest.raises(ValidationError, match=r"early_stopping.min_delta: null .* applies to pretraining"):
        FinetuneConfig.model_validate({"early_stopping": {"min_delta": None}})


def test_segmentation_rule_min_delta_1e3_patience_10() -> None:
    stop = EarlyStopping(min_delta=1e-3, patience=10)
    assert stop.update(0.5)
    for i in range(9):
        assert not stop.update(0.5 - 0.0005 * (i + 1) / 9)  # tiny gains below min-delta
        assert not stop.should_stop
    assert not stop.update(0.4996)
    assert stop.should_stop
    assert stop.wait == 10


def test_improvement_resets_patience() -> None:
    stop = EarlyStopping(min_delta=0.0, patience=2)
    assert [stop.update(v) for v in (3.0, 3.0, 2.0, 2.0, 2.0)] == [True, False, True, False, False]
    assert stop.should_stop


def test_state_round_trip() -> None:
    stop = EarlyStopping(min_delta=1.0, patience=3)
    fresh = EarlyStopping.from_state_dict(stop.state_dict())
    assert math.isinf(fresh.best)
    stop.update(5.0)
    stop.update(4.5)
    again = EarlyStopping.from_state_dict(stop.state_dict())
    assert again == stop


@pytest.mark.parametrize("kwargs", [{"min_delta": -1.0, "patience": 1}, {"min_delta": 0.0, "patience": 0}])
def test_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EarlyStopping(min_delta=kwargs["min_delta"], patience=int(kwargs["patience"]))
