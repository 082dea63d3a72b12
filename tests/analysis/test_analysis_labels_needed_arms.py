"""Labels needed: each SSL arm against the baseline its runs name, and arms kept apart by name.

A data_scaling grid over a fine-tuning setting (here the learning rate) has a supervised baseline
per setting; each SSL arm's target and the labels it saves must come from its own baseline, not
from the baselines pooled into one curve. Dice is generated as ``0.9 + u_i - b / sqrt(n)`` over n
labelled volumes (u_i a per-image offset that averages to 0), so a target t is reached at
``n = (b / (0.9 - t))**2``, worked by hand below.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from inpaintssl.analysis.paper_tables import labels_needed_table
from inpaintssl.analysis.summaries import (
    labels_needed_estimates,
    labels_needed_intervals,
    labels_needed_rows,
)
from inpaintssl.analysis.table import Table
from study_helpers import result_row

_COUNTS = {1.0: 100, 0.5: 50, 0.25: 25, 0.1: 10, 0.05: 5}  # label fraction -> labelled volumes
_OFFSETS = np.linspace(-0.02, 0.02, 6)  # per test image; mean 0

# b of each arm by learning rate: the lr=0.01 baseline is far worse than the lr=0.001 one.
_SUPERVISED = {"0.01": 0.82, "0.001": 0.52}
_SSL = {"0.01": 0.61, "0.001": 0.42}


def _two_baselines() -> list[dict[str, Any]]:
    """A data_scaling grid over finetune.optim.lr: per lr, a baseline and an SSL arm naming it."""
    rows = []
    for lr in _SUPERVISED:
        for fraction, n in _COUNTS.items():
            run = f"ft-supervised-{lr}-{fraction}"
            for i, u in enumerate(_OFFSETS):
                sup = 0.9 + u - _SUPERVISED[lr] / math.sqrt(n)
                ssl = 0.9 + u - _SSL[lr] / math.sqrt(n)
                rows.append(
                    result_row(
                        "supervised",
                        f"supervised lr={lr}",
                        fraction,
                        i,
                        sup,
                        run=run,
                        baseline=run,
                        labelled_volumes=n,
                    )
                )
                rows.append(
                    result_row(
                        "ssl",
                        f"+0% unlabelled lr={lr}",
                        fraction,
                        i,
                        ssl,
                        run=f"ft-ssl-{lr}-{fraction}",
                        baseline=run,
                        labelled_volumes=n,
                        pretrain_data_pct=100.0,
                    )
                )
    return rows


def test_each_baseline_setting_is_an_arm_and_each_ssl_arm_names_its_own() -> None:
    # By hand, (b / 0.1)^2 rounded up: 67.24 -> 68, 27.04 -> 28, 37.21 -> 38, 17.64 -> 18.
    expected = {
        "supervised lr=0.001": (28.0, "supervised lr=0.001"),
        "supervised lr=0.01": (68.0, "supervised lr=0.01"),
        "ssl, 100% pretraining data, lr=0.001": (18.0, "supervised lr=0.001"),
        "ssl, 100% pretraining data, lr=0.01": (38.0, "supervised lr=0.01"),
    }
    # No pooled "supervised" arm (b = 0.67 -> 45 volumes): one per baseline, first.
    target, rows = labels_needed_rows(Table(_two_baselines()), target=0.8)
    assert target == 0.8 and [(name, needed) for name, _, needed in rows] == [
        (arm, needed) for arm, (needed, _) in expected.items()
    ]
    found = {e.arm: e for e in labels_needed_estimates(Table(_two_baselines()), target=0.8)}
    assert {arm: (e.needed, e.baseline) for arm, e in found.items()} == expected
    assert {e.target for e in found.values()} == {0.8}


def test_the_default_target_of_an_arm_is_its_own_baselines_dice_with_the_most_labels() -> None:
    found = {e.arm: e for e in labels_needed_estimates(Table(_two_baselines()))}
    # lr=0.01: 0.9 - 0.82 / 10 = 0.818; lr=0.001: 0.9 - 0.52 / 10 = 0.848 (not their mean, 0.833).
    low, high = 0.9 - 0.082, 0.9 - 0.052
    assert found["ssl, 100% pretraining data, lr=0.01"].target == pytest.approx(low)
    assert found["ssl, 100% pretraining data, lr=0.001"].target == pytest.approx(high)
    assert found["supervised lr=0.01"].target == pytest.approx(low)
    # SSL: (0.61 / 0.082)^2 = 55.34 -> 56 and (0.42 / 0.052)^2 = 65.24 -> 66; each baseline
    # reaches its own target at its 100 volumes.
    assert found["ssl, 100% pretraining data, lr=0.01"].needed == 56.0
    assert found["ssl, 100% pretraining data, lr=0.001"].needed == 66.0
    assert found["supervised lr=0.01"].needed == found["supervised lr=0.001"].needed == 100.0
    # Two targets: no one target to report for every arm.
    target, _ = labels_needed_rows(Table(_two_baselines()))
    assert math.isnan(target)


def test_the_intervals_resample_each_arms_own_baselines_target() -> None:
    # Every image's curves and its baseline's target move by the same offset u_i, so an arm solved
    # for its own baseline's resampled target needs the same count in every resample (56 and 66,
    # above); a target from the pooled baselines would not move with them.
    target, found = labels_needed_intervals(Table(_two_baselines()), n_resamples=50, seed=3)
    assert math.isnan(target)
    for arm, needed in (
        ("ssl, 100% pretraining data, lr=0.01", 56.0),
        ("ssl, 100% pretraining data, lr=0.001", 66.0),
        ("supervised lr=0.01", 100.0),
        ("supervised lr=0.001", 100.0),
    ):
        interval = found[arm]
        assert interval is not None
        assert (interval.estimate, interval.lower, interval.upper, interval.n_failed) == (
            needed,
            needed,
            needed,
            0,
        )


def test_an_ssl_arm_whose_baseline_has_no_rows_yet_has_no_default_target() -> None:
    # A third learning rate whose baseline has not finished anywhere: its SSL arm cannot be given
    # that baseline's target, nor be measured against another baseline.
    rows = _two_baselines()
    rows += [
        {
            **r,
            "strategy": "+0% unlabelled lr=0.1",
            "baseline_id": str(r["baseline_id"]).replace("0.01", "0.1"),
        }
        for r in rows
        if r["strategy"] == "+0% unlabelled lr=0.01"
    ]
    found = {e.arm: e for e in labels_needed_estimates(Table(rows))}
    orphan = found["ssl, 100% pretraining data, lr=0.1"]
    assert orphan.baseline is None and math.isnan(orphan.target) and math.isnan(orphan.needed)
    assert found["ssl, 100% pretraining data, lr=0.001"].needed == 66.0
    # A given target still gives it a count: (0.61 / 0.1)^2 = 37.21 -> 38.
    given = {e.arm: e for e in labels_needed_estimates(Table(rows), target=0.8)}
    assert given["ssl, 100% pretraining data, lr=0.1"].needed == 38.0
    _, intervals = labels_needed_intervals(Table(rows), n_resamples=10)
    assert intervals["ssl, 100% pretraining data, lr=0.1"] is None
    assert intervals["ssl, 100% pretraining data, lr=0.01"] is not None


def _amounts(amounts: dict[float, float]) -> list[dict[str, Any]]:
    """One baseline (b = 0.5) and an SSL arm per amount of pretraining data (% -> b)."""
    rows = []
    for fraction, n in _COUNTS.items():
        for i in range(2):
            rows.append(
                result_row(
                    "supervised", "supervised", fraction, i, 0.9 - 0.5 / math.sqrt(n), labelled_volumes=n
                )
            )
            for k, (pct, b) in enumerate(amounts.items()):
                rows.append(
                    result_row(
                        "ssl",
                        f"+{k}",
                        fraction,
                        i,
                        0.9 - b / math.sqrt(n),
                        labelled_volumes=n,
                        pretrain_data_pct=pct,
                    )
                )
    return rows


def test_amounts_of_pretraining_data_that_round_alike_are_separate_arms() -> None:
    # A small unlabelled pool: 100.36 % and 100.73 % both round to 101 %, yet are two arms.
    _, found = labels_needed_rows(Table(_amounts({100.0: 0.45, 100.36: 0.40, 100.73: 0.30})), target=0.8)
    # By hand: (0.5 / 0.1)^2 = 25; 20.25 -> 21; 16; 9.
    assert [(name, needed) for name, _, needed in found] == [
        ("supervised", 25.0),
        ("ssl, 100.0% pretraining data", 21.0),
        ("ssl, 100.4% pretraining data", 16.0),
        ("ssl, 100.7% pretraining data", 9.0),
    ]


def test_amounts_of_pretraining_data_equal_to_six_decimals_are_refused() -> None:
    rows = _amounts({100.0: 0.45, 100.0 + 1e-9: 0.40})
    with pytest.raises(ValueError, match=r"amounts of pretraining data 100\.0% and 100\.000000001% "):
        labels_needed_rows(Table(rows), target=0.8)


def test_the_table_counts_the_labels_each_ssl_arm_saves_against_its_own_baseline() -> None:
    table = labels_needed_table(Table(_two_baselines()), target=0.8, n_resamples=20)
    found = {row["arm"]: row for row in table}
    # 68 - 38 = 30 and 28 - 18 = 10 (above); against the pooled baseline (45) they were 7 and 27.
    assert found["ssl, 100% pretraining data, lr=0.01"]["saved_vs_supervised"] == 30.0
    assert found["ssl, 100% pretraining data, lr=0.001"]["saved_vs_supervised"] == 10.0
    assert found["supervised lr=0.01"]["saved_vs_supervised"] == 0.0
    assert "Dice 0.800" in table.title
    # The default target: each arm's own baseline's Dice with the most labels, per row.
    default = {row["arm"]: row for row in labels_needed_table(Table(_two_baselines()), n_resamples=20)}
    assert default["ssl, 100% pretraining data, lr=0.01"]["target_dice"] == pytest.approx(0.818)
    assert default["ssl, 100% pretraining data, lr=0.001"]["target_dice"] == pytest.approx(0.848)
    # 100 - 56 = 44 and 100 - 66 = 34 (above); each image's curves and its baseline's target move by
    # one offset, so every paired resample saves the same count.
    assert default["ssl, 100% pretraining data, lr=0.01"]["saved_vs_supervised"] == 44.0
    assert default["ssl, 100% pretraining data, lr=0.001"]["saved_vs_supervised"] == 34.0
    row = default["ssl, 100% pretraining data, lr=0.01"]
    assert (row["saved_ci_lower"], row["saved_ci_upper"]) == (44.0, 44.0)
    assert "each arm's baseline" in labels_needed_table(Table(_two_baselines()), n_resamples=2).title
