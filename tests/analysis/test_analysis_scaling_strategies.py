"""A data_scaling grid over more than the amount of data: each strategy is a Figure 5 series of its own.

studies.grid names a data_scaling strategy by the unlabelled data its pretraining adds, then by its
other grid values ("+100% unlabelled patch_size=16"). Runs of different patch sizes (or pretext
tasks, or learning rates) at one amount of pretraining data must not be averaged into one point of
Figure 5 or one labels-needed arm. Expectations are worked by hand from the values the rows are
generated from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inpaintssl.analysis.figures import plot_dice_vs_pretraining_data
from inpaintssl.analysis.paper_tables import labels_needed_table, power_law_table
from inpaintssl.analysis.summaries import labels_needed_rows, scaling_series, scaling_strategy
from inpaintssl.analysis.table import Table
from study_helpers import result_row

# Amount of pretraining data (% of the training set) -> the unlabelled share its strategy names.
_ADDED = {100.0: 0.0, 200.0: 1.0}


def _name(pct: float, tail: str) -> str:
    return f"+{_ADDED[pct]:.0%} unlabelled {tail}"


def _two_patch_sizes(dice: dict[tuple[str, float], float]) -> list[dict[str, Any]]:
    """Supervised Dice 0.6 and SSL Dice ``dice[(patch size tail, pct)]`` at two label fractions."""
    rows = []
    for fraction in (1.0, 0.5):
        rows += [result_row("supervised", "supervised", fraction, i, 0.6) for i in range(3)]
        for (tail, pct), value in dice.items():
            rows += [
                result_row("ssl", _name(pct, tail), fraction, i, value, pretrain_data_pct=pct)
                for i in range(3)
            ]
    return rows


_DICE = {
    ("patch_size=16", 100.0): 0.65,
    ("patch_size=16", 200.0): 0.70,
    ("patch_size=32", 100.0): 0.75,
    ("patch_size=32", 200.0): 0.80,
}


def test_strategy_names_lose_the_amount_of_data_alone() -> None:
    assert scaling_strategy("+25% unlabelled patch_size=16 task=context_prediction") == (
        "patch_size=16 task=context_prediction"
    )
    assert scaling_strategy("+100% unlabelled") == ""
    assert scaling_strategy("+150.0") == ""  # the tests' short names for amounts of data
    assert scaling_strategy("supervised lr=0.01") == "supervised lr=0.01"
    assert scaling_strategy(None) == ""


def test_each_strategy_is_a_series_of_its_own() -> None:
    series = scaling_series(Table(_two_patch_sizes(_DICE)))
    found = {(s.label_fraction, s.strategy): s for s in series}
    assert list(found) == [
        (0.5, "patch_size=16"),
        (0.5, "patch_size=32"),
        (1.0, "patch_size=16"),
        (1.0, "patch_size=32"),
    ]
    for fraction in (0.5, 1.0):
        small, large = found[(fraction, "patch_size=16")], found[(fraction, "patch_size=32")]
        np.testing.assert_allclose(small.x, [0.0, 100.0, 200.0])
        np.testing.assert_allclose(large.x, [0.0, 100.0, 200.0])
        # Not the pooled [0.6, 0.70, 0.75]: each strategy's own points, from the shared baseline.
        np.testing.assert_allclose(small.y, [0.6, 0.65, 0.70])
        np.testing.assert_allclose(large.y, [0.6, 0.75, 0.80])


def test_one_strategy_keeps_unnamed_series() -> None:
    one = {key: value for key, value in _DICE.items() if key[0] == "patch_size=16"}
    series = scaling_series(Table(_two_patch_sizes(one)))
    assert [(s.label_fraction, s.strategy) for s in series] == [(0.5, None), (1.0, None)]
    assert power_law_table(Table(_two_patch_sizes(one))).columns[:2] == ("label_fraction", "points")


def test_each_strategy_starts_at_the_baseline_its_runs_name() -> None:
    # A grid over learning rates: the lr=0.01 runs name a baseline at Dice 0.5, the lr=0.001 runs
    # one at 0.7. Each series starts at its own, not at their mean 0.6.
    rows = []
    for lr, base, gain in (("0.01", 0.5, 0.02), ("0.001", 0.7, 0.05)):
        run = f"ft-sup-{lr}"
        rows += [
            result_row("supervised", f"supervised lr={lr}", 0.5, i, base, run=run, baseline=run)
            for i in range(3)
        ]
        for pct in (100.0, 200.0):
            rows += [
                result_row(
                    "ssl",
                    _name(pct, f"lr={lr}"),
                    0.5,
                    i,
                    base + gain * pct / 100,
                    run=f"ft-{lr}-{pct}",
                    baseline=run,
                    pretrain_data_pct=pct,
                )
                for i in range(3)
            ]
    found = {s.strategy: s for s in scaling_series(Table(rows))}
    assert sorted(found) == ["lr=0.001", "lr=0.01"]
    np.testing.assert_allclose(found["lr=0.01"].y, [0.5, 0.52, 0.54])
    np.testing.assert_allclose(found["lr=0.001"].y, [0.7, 0.75, 0.80])


def test_power_law_table_has_a_fit_per_fraction_and_strategy() -> None:
    # Dice = a * x^k + c against % pretraining data; both strategies share the baseline at x = 0 (c).
    truth = {"patch_size=16": (0.004, 0.45), "patch_size=32": (0.01, 0.3)}
    c = 0.6
    rows = [result_row("supervised", "supervised", 0.5, i, c) for i in range(3)]
    for tail, (a, k) in truth.items():
        for pct in (100.0, 150.0, 200.0, 400.0):
            name = f"+{pct - 100:g}% unlabelled {tail}"
            rows += [result_row("ssl", name, 0.5, i, a * pct**k + c, pretrain_data_pct=pct) for i in range(3)]
    table = power_law_table(Table(rows))
    assert table.columns[:3] == ("label_fraction", "strategy", "points")
    found = {row["strategy"]: row for row in table}
    assert sorted(found) == sorted(truth) and len(table) == 2
    for tail, (a, k) in truth.items():
        row = found[tail]
        assert row["label_fraction"] == 0.5 and row["points"] == 5
        assert (row["a"], row["k"], row["c"]) == (
            pytest.approx(a, rel=1e-3),
            pytest.approx(k, rel=1e-3),
            pytest.approx(c, rel=1e-3),
        )


# Labels needed: Dice = 0.9 - b / sqrt(n) over n labelled volumes; target 0.8 -> n = (b / 0.1)^2.
_B = {("patch_size=16", 100.0): 0.42, ("patch_size=16", 200.0): 0.38}
_B |= {("patch_size=32", 100.0): 0.33, ("patch_size=32", 200.0): 0.29}


def _labels_rows() -> list[dict[str, Any]]:
    rows = []
    for fraction, n in ((1.0, 100), (0.5, 50), (0.25, 25), (0.1, 10), (0.05, 5)):
        rows += [
            result_row("supervised", "supervised", fraction, i, 0.9 - 0.5 * n**-0.5, labelled_volumes=n)
            for i in range(2)
        ]
        for (tail, pct), b in _B.items():
            rows += [
                result_row(
                    "ssl",
                    _name(pct, tail),
                    fraction,
                    i,
                    0.9 - b * n**-0.5,
                    labelled_volumes=n,
                    pretrain_data_pct=pct,
                )
                for i in range(2)
            ]
    return rows


def test_labels_needed_has_an_arm_per_strategy_and_amount_of_data() -> None:
    table = labels_needed_table(Table(_labels_rows()), target=0.8, n_resamples=20)
    found = {row["arm"]: row for row in table}
    # By hand: ceil((b / 0.1)^2). Pooled, the 100 % arm would be b = 0.375 -> 15 for both sizes.
    expected = {
        "supervised": 25.0,  # 0.5 -> 25
        "ssl, 100% pretraining data, patch_size=16": 18.0,  # 0.42 -> 17.64
        "ssl, 200% pretraining data, patch_size=16": 15.0,  # 0.38 -> 14.44
        "ssl, 100% pretraining data, patch_size=32": 11.0,  # 0.33 -> 10.89
        "ssl, 200% pretraining data, patch_size=32": 9.0,  # 0.29 -> 8.41
    }
    assert list(found) == list(expected)
    for arm, needed in expected.items():
        assert found[arm]["labelled_volumes_needed"] == needed, arm
        assert found[arm]["saved_vs_supervised"] == 25.0 - needed
    target, rows = labels_needed_rows(Table(_labels_rows()), target=0.8)
    assert target == 0.8 and [name for name, _, _ in rows] == list(expected)


def test_labels_needed_of_one_strategy_keeps_its_arm_names() -> None:
    rows = [r for r in _labels_rows() if "patch_size=32" not in str(r["strategy"])]
    _, found = labels_needed_rows(Table(rows), target=0.8)
    assert [(name, needed) for name, _, needed in found] == [
        ("supervised", 25.0),
        ("ssl, 100% pretraining data", 18.0),
        ("ssl, 200% pretraining data", 15.0),
    ]


def test_figure_5_draws_a_panel_per_strategy(tmp_path: Path) -> None:
    out = plot_dice_vs_pretraining_data(Table(_two_patch_sizes(_DICE)), tmp_path / "fig5")
    assert out.figure is not None
    axes = out.figure.axes
    assert [ax.get_title() for ax in axes] == ["patch_size=16", "patch_size=32"]
    for ax, own in zip(axes, ([0.6, 0.65, 0.70], [0.6, 0.75, 0.80])):
        points = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
        assert [line.get_label() for line in points] == ["50% labels", "100% labels"]
        for line in points:
            np.testing.assert_allclose(line.get_xdata(), [0.0, 100.0, 200.0])
            np.testing.assert_allclose(line.get_ydata(), own)
        # Each label fraction in one colour in every panel.
        assert [line.get_color() for line in points] == ["C0", "C1"]
        (level,) = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert level.get_ydata()[0] == pytest.approx(0.6)
