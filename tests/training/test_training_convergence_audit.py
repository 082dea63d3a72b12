"""The convergence verdict against an independent reading of docs/training.rst: the rule written
again in NumPy, its invariances (scale, shift, one more epoch at the best), the schedules whose
curves flatten only because their rate runs out, and early-stopped phases that never improved."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from inpaintssl.config import OptimConfig
from inpaintssl.training.convergence import ConvergenceWarning, assess_convergence
from inpaintssl.training.convergence_report import phase_convergence, report_convergence
from inpaintssl.training.early_stopping import EarlyStopping
from inpaintssl.training.outcome import Phase, TrainOutcome
from inpaintssl.training.schedule import step_decay_lr, warmup_cosine_lr, warmup_steps_for

PNG = b"\x89PNG\r\n\x1a\n"


def _documented_rule(
    v: list[float], *, stopped: bool, rates: list[float] | None, tolerance: float = 0.05
) -> tuple[bool, str]:
    """docs/training.rst's formula, written from the page, not from the module."""
    curve = np.asarray(v, dtype=float)
    n = len(curve)
    r = np.ones(n) if rates is None else np.asarray(rates, dtype=float)
    best = curve.min()
    noise = 1e-5 * max(abs(best), 1e-12)
    flat = curve.max() - best <= noise
    total = curve[0] - best
    if n < 2:
        return (True, "early stopping") if stopped else (False, "too short to judge")
    if flat:  # converged either way; the reason names early stopping when it ended the phase
        return True, "early stopping" if stopped else "flat"
    if total <= noise:
        return False, "no improvement"
    if stopped:
        return True, "early stopping"
    w = math.ceil(n / 5)
    recent = curve[: n - w].min() - best
    if recent == 0.0:
        return True, "plateau"
    spent = r[n - w :].mean()
    if spent == 0.0:
        return False, "still improving"
    share = recent / total * r[1:].mean() / spent
    return (True, "plateau") if share <= tolerance else (False, "still improving")


@st.composite
def _curves_and_rates(draw: st.DrawFn) -> tuple[list[float], list[float] | None]:
    curve = draw(st.lists(st.floats(-1e3, 1e4, allow_nan=False), min_size=1, max_size=60))
    rates = draw(
        st.one_of(st.none(), st.lists(st.floats(0.0, 1.0), min_size=len(curve), max_size=len(curve)))
    )
    return curve, rates


@given(data=_curves_and_rates(), stopped=st.booleans())
def test_the_verdict_is_the_documented_rule(
    data: tuple[list[float], list[float] | None], stopped: bool
) -> None:
    curve, rates = data
    verdict = assess_convergence(curve, stopped_early=stopped, learning_rates=rates)
    assert (verdict.converged, verdict.reason) == _documented_rule(curve, stopped=stopped, rates=rates)


@pytest.mark.parametrize(
    "curve",
    [
        [1.0, 1.5, 3.0],  # climbs from the first epoch
        [0.40, 0.41, 0.40, 0.42, 0.43],  # never below the first epoch, above float noise
        [1.0, 1.0 - 1e-9, 1.2, 1.4, 1.6],  # a gain of 1e-9 on the first epoch: rounding
    ],
)
@pytest.mark.parametrize("stopped", [False, True])
def test_a_phase_that_never_beat_its_first_epoch_is_not_converged_however_it_ended(
    curve: list[float], stopped: bool
) -> None:
    # Early stopping with patience 4 ends the second curve exactly so; that says only that the
    # loss stopped improving, and it never started. The third curve's dip is 1e-9 of a loss of
    # 1, below the relative 1e-5 float noise the flat verdict already allows.
    verdict = assess_convergence(curve, stopped_early=stopped)
    assert (verdict.converged, verdict.reason) == (False, "no improvement")


@given(
    steps=st.lists(st.integers(-50, 50), min_size=1, max_size=40),
    start=st.integers(-500, 500),
)
def test_early_stopping_does_not_rescue_a_curve_whose_first_epoch_is_its_best(
    steps: list[int], start: int
) -> None:
    curve = [float(start)] + [float(start + abs(s)) for s in steps]  # never below the first
    assume(max(curve) > curve[0])  # a flat curve is converged either way
    plain = assess_convergence(curve, stopped_early=False)
    stopped = assess_convergence(curve, stopped_early=True)
    assert (plain.reason, stopped.reason) == ("no improvement", "no improvement")
    assert not plain.converged and not stopped.converged


# Integer-valued curves: every difference is 0 or at least 1, far from the float-noise tests
# (1e-5 of a level of at most 3000), so those tests cannot be what a transform changes.
_integer_curves = st.lists(st.integers(-1000, 1000), min_size=1, max_size=60).map(
    lambda values: [float(v) for v in values]
)


def _not_at_the_tolerance(curve: list[float]) -> bool:
    share = assess_convergence(curve, stopped_early=False).recent_share
    return math.isnan(share) or abs(share - 0.05) > 1e-9


@given(curve=_integer_curves, factor=st.floats(1e-3, 1e3), stopped=st.booleans())
def test_scaling_a_curve_leaves_its_verdict(curve: list[float], factor: float, stopped: bool) -> None:
    assume(_not_at_the_tolerance(curve))
    base = assess_convergence(curve, stopped_early=stopped)
    scaled = assess_convergence([factor * v for v in curve], stopped_early=stopped)
    assert (scaled.converged, scaled.reason) == (base.converged, base.reason)


@given(curve=_integer_curves, shift=st.integers(-2000, 2000), stopped=st.booleans())
def test_shifting_a_curve_leaves_its_verdict(curve: list[float], shift: int, stopped: bool) -> None:
    assume(_not_at_the_tolerance(curve))
    base = assess_convergence(curve, stopped_early=stopped)
    shifted = assess_convergence([v + shift for v in curve], stopped_early=stopped)
    assert (shifted.converged, shifted.reason) == (base.converged, base.reason)


def test_a_shift_changes_a_verdict_only_through_float_noise_as_documented() -> None:
    # 1.0 -> 1.000005 is within 1e-5 of the level 1 (flat), but 5e-6 above a level of 0 is not:
    # docs/training.rst says the float-noise tests, relative to the level, are where this happens.
    curve = [1.0, 1.000005, 1.000003]
    assert assess_convergence(curve, stopped_early=False).reason == "flat"
    assert assess_convergence([v - 1.0 for v in curve], stopped_early=False).reason == "no improvement"


@given(curve=_integer_curves, extra=st.integers(1, 5))
def test_more_epochs_at_the_best_never_undo_a_converged_verdict(curve: list[float], extra: int) -> None:
    # At a constant rate, epochs that add nothing widen the window over epochs already judged:
    # the improvement inside it can only stay or shrink, so the evidence of a plateau grows.
    assume(_not_at_the_tolerance(curve))
    before = assess_convergence(curve, stopped_early=False)
    after = assess_convergence([*curve, *[min(curve)] * extra], stopped_early=False)
    if before.converged:
        assert after.converged
    if not math.isnan(before.recent_share) and not math.isnan(after.recent_share):
        assert after.recent_share <= before.recent_share + 1e-12


def _epoch_rates(schedule: str, epochs: int, *, steps: int = 10) -> list[float]:
    """Each epoch's mean rate under a schedule, from the library's schedule functions."""
    if schedule == "constant":
        return [1e-2] * epochs
    if schedule == "step_decay":
        return [step_decay_lr(e, lr=1e-3) for e in range(epochs)]
    total = epochs * steps
    warmup = warmup_steps_for(total, warmup_fraction=0.05)

    def rate(step: int) -> float:
        return warmup_cosine_lr(step, lr=1e-2, total_steps=total, warmup_steps=warmup, min_lr=1e-8)

    return [float(np.mean([rate(e * steps + k) for k in range(steps)])) for e in range(epochs)]


@pytest.mark.parametrize("schedule", ["constant", "step_decay", "warmup_cosine"])
@pytest.mark.parametrize("epochs", [3, 5, 10, 20, 100])
def test_a_curve_that_flattens_only_with_its_rate_is_flagged_whatever_the_schedule(
    schedule: str, epochs: int
) -> None:
    # A network far from trained: its loss falls in proportion to the rate spent (linear in the
    # cumulative rate), so under a decaying schedule its curve flattens in epochs while the
    # network would still learn at any rate. Hand-worked: recent / total = sum(r[n-w:]) /
    # sum(r[1:]), which the rate factor mean(r[1:]) / mean(r[n-w:]) turns into w / (n - 1)
    # whatever the rates: the share of a curve falling steadily at a constant rate.
    rates = _epoch_rates(schedule, epochs)
    spent = np.cumsum(rates) / np.sum(rates)
    curve = [float(1.0 - 0.5 * s) for s in spent]
    verdict = assess_convergence(curve, stopped_early=False, learning_rates=rates)
    assert (verdict.converged, verdict.reason) == (False, "still improving")
    assert verdict.recent_share == pytest.approx(math.ceil(epochs / 5) / (epochs - 1), rel=1e-9)
    if schedule == "warmup_cosine" and epochs >= 5:
        # Judged per epoch, the same curve reads as a plateau: what the rate factor is for.
        assert assess_convergence(curve, stopped_early=False).converged


@pytest.mark.parametrize("schedule", ["constant", "step_decay", "warmup_cosine"])
@pytest.mark.parametrize("epochs", [5, 10, 20, 100])
def test_a_curve_that_levelled_off_early_in_its_budget_is_converged_whatever_the_schedule(
    schedule: str, epochs: int
) -> None:
    # exp(-20 s) in the cumulative rate s: within 2e-9 of its floor by the last fifth, whose
    # per-unit-of-rate share is below 1e-3 under every schedule.
    rates = _epoch_rates(schedule, epochs)
    spent = np.cumsum(rates) / np.sum(rates)
    curve = [float(0.2 + math.exp(-20 * s)) for s in spent]
    verdict = assess_convergence(curve, stopped_early=False, learning_rates=rates)
    assert verdict.converged and verdict.reason in ("plateau", "flat")


def _rows(phase: str, curve: list[float], *, stopped_last: bool) -> list[dict[str, Any]]:
    return [
        {
            "phase": phase,
            "epoch": i,
            "val_loss": v,
            "lr": 1e-2,
            "lr_mean": 1e-2,
            "stopped_early": int(stopped_last and i == len(curve) - 1),
        }
        for i, v in enumerate(curve)
    ]


def test_an_early_stopped_phase_that_climbed_is_reported_as_a_rate_too_large(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Pretraining's patience of 4 ends a rate-too-large run exactly so: its first epoch is its
    # best, four epochs fail to beat it. The console, the figure and the warning must all say
    # NOT converged and name the learning rate, as they do for the same curve its budget ended.
    history = _rows("pretrain", [900.0, 950.0, 1400.0, 2100.0, 2600.0], stopped_last=True)
    verdict = phase_convergence(history, "pretrain", tolerance=0.05)
    assert (verdict.converged, verdict.reason) == (False, "no improvement")
    outcome = TrainOutcome(
        history=history,
        best_val_loss=900.0,
        best_epoch=0,
        epochs_run=5,
        stopped_early=True,
        convergence=[verdict],
        phase_names=["pretrain"],
    )
    assert not outcome.converged
    assert outcome.describe_convergence() == "NOT converged (no improvement)"
    figure = tmp_path / "learning_curve.png"
    with (
        caplog.at_level(logging.INFO, logger="inpaintssl.training"),
        pytest.warns(ConvergenceWarning, match=r"rose after it.*smaller optim.lr"),
    ):
        report_convergence(
            outcome,
            phases=[Phase(name="pretrain", lr=1e-2)],
            optim=OptimConfig(max_epochs=20, steps_per_epoch=10),
            steps_per_epoch=10,
            run_dir=tmp_path,
            learning_curve=figure,
        )
    assert "[pretrain] NOT converged (no improvement)" in caplog.text
    assert figure.read_bytes()[:8] == PNG


def test_an_early_stopped_phase_that_improved_stays_converged() -> None:
    history = _rows("finetune", [1.0, 0.6, 0.5, 0.51, 0.52, 0.50], stopped_last=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verdict = phase_convergence(history, "finetune", tolerance=0.05)
    assert (verdict.converged, verdict.reason) == (True, "early stopping")


def test_a_second_phase_still_improving_under_step_decay_names_its_own_rate(tmp_path: Path) -> None:
    # The second phase runs at transfer.second_lr: raising optim.lr would not change it.
    history = _rows("frozen", [1.0, 0.6, 0.5, 0.5, 0.5], stopped_last=True)
    history += [
        dict(row, epoch=5 + row["epoch"])
        for row in _rows("unfrozen", [0.5, 0.45, 0.4, 0.35, 0.3], stopped_last=False)
    ]
    phases = [Phase(name="frozen", lr=1e-3, frozen_parts=("encoder",)), Phase(name="unfrozen", lr=1e-5)]
    verdicts = [phase_convergence(history, p.name, tolerance=0.05) for p in phases]
    assert [v.converged for v in verdicts] == [True, False]
    outcome = TrainOutcome(
        history=history,
        best_val_loss=0.3,
        best_epoch=9,
        epochs_run=10,
        stopped_early=False,
        convergence=verdicts,
        phase_names=[p.name for p in phases],
    )
    with pytest.warns(ConvergenceWarning) as caught:
        report_convergence(
            outcome,
            phases=phases,
            optim=OptimConfig(recipe="paper", max_epochs=5),
            steps_per_epoch=2,
            run_dir=tmp_path,
            learning_curve=tmp_path / "learning_curve.png",
        )
    (message,) = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert "phase 'unfrozen'" in message
    assert "or transfer.second_lr (now 1e-05), or use optim.recipe=budget" in message
    assert "optim.lr" not in message


def test_a_metrics_csv_column_read_back_as_an_array_gets_the_lists_verdict() -> None:
    # How a user re-checks a run: metrics.csv read with NumPy (or pandas), columns passed as read.
    curve = [1.30, 1.22, 1.18, 1.165, 1.161]
    rates = [0.01, 0.0097, 0.0075, 0.0041, 0.0012]
    expected = assess_convergence(curve, stopped_early=False, learning_rates=rates)
    assert not expected.converged  # the module docstring's example: flat only because the rate ran out
    as_read = assess_convergence(np.array(curve), stopped_early=False, learning_rates=np.array(rates))
    assert (as_read.converged, as_read.reason, as_read.recent_share) == (
        expected.converged,
        expected.reason,
        expected.recent_share,
    )


@pytest.mark.parametrize(
    ("val_losses", "learning_rates", "named"),
    [
        (np.ones((2, 2)), None, "val_losses"),
        (["a", "b"], None, "val_losses"),
        ([1.0, 0.5], ["fast", "slow"], "learning_rates"),
    ],
)
def test_a_curve_that_is_not_numbers_is_refused_naming_the_argument(
    val_losses: object, learning_rates: object, named: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{named} must be a sequence of numbers, one per epoch"):
        assess_convergence(val_losses, stopped_early=False, learning_rates=learning_rates)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("min_delta", "patience", "named"),
    [
        (math.nan, 2, "min_delta"),
        (math.inf, 2, "min_delta"),
        (True, 2, "min_delta"),
        (0.0, 2.5, "patience"),
        (0.0, True, "patience"),
    ],
)
def test_early_stopping_refuses_a_threshold_or_patience_no_epoch_could_meet(
    min_delta: float, patience: int, named: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{named} must be"):
        EarlyStopping(min_delta=min_delta, patience=patience)


def test_a_patience_that_runs_out_on_the_budgets_last_epoch_ended_nothing() -> None:
    # Falling by less than min_delta each epoch, still improving by the documented share: a
    # patience that runs out on the 10th of 10 epochs read as "early stopping" (converged), the
    # same curve with a patience one longer as NOT converged.
    curve = [1.0, 0.8, 0.7, 0.65, 0.62, 0.6, 0.58, 0.56, 0.54, 0.52]
    budget_ended = phase_convergence(
        _rows("finetune", curve, stopped_last=False), "finetune", tolerance=0.05, max_epochs=10
    )
    flagged = _rows("finetune", curve, stopped_last=True)
    assert not budget_ended.converged
    assert phase_convergence(flagged, "finetune", tolerance=0.05, max_epochs=10) == budget_ended
    # Before the budget's end, patience did end the phase.
    assert phase_convergence(flagged, "finetune", tolerance=0.05, max_epochs=20).reason == "early stopping"


def test_a_run_whose_patience_runs_out_on_its_last_epoch_did_not_stop_early(tmp_path: Path) -> None:
    import inpaintssl as issl

    def run(max_epochs: int) -> Any:
        # min_delta no epoch can meet: the first epoch is the best, patience 1 runs out on the second.
        return issl.finetune(
            {
                "data": {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 4, "size": [16, 16]}},
                "model": {"params": {"depth": 2, "base_width": 4}},
                "optim": {"max_epochs": max_epochs, "batch_size": 4},
                "early_stopping": {"patience": 1, "min_delta": 1e6},
                "run": {"output_dir": str(tmp_path / f"e{max_epochs}"), "quiet": True, "device": "cpu"},
            }
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stopped, budget_ended = run(3), run(2)
    assert stopped.epochs_run == budget_ended.epochs_run == 2
    assert stopped.stopped_early and stopped.converged
    assert not budget_ended.stopped_early and not budget_ended.converged
