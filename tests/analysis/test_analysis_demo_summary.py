"""The SSL-vs-supervised summary's convergence columns: a p-value between unconverged runs is marked."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from inpaintssl.analysis.summaries import label_fraction_summary
from inpaintssl.analysis.table import Table


def _results(fractions: tuple[float, ...], *, seeds: int = 1) -> Table:
    """Six test slices per fraction and seed; SSL beats supervised on every one of them."""
    rows: list[dict[str, Any]] = []
    for fraction in fractions:
        for seed in range(seeds):
            for i in range(6):
                for arm, bonus in (("ssl", 0.01 * (i + 1)), ("supervised", 0.0)):
                    item = {"arm": arm, "strategy": arm, "label_fraction": fraction, "subset_seed": seed}
                    item |= {"level": "image", "volume_id": f"s{i}", "slice_index": 0, "class_name": ""}
                    rows.append({**item, "metric": "dice_mean", "value": 0.5 + bonus})
    return Table(rows)


def _runs(verdicts: dict[tuple[str, float], list[bool]]) -> Table:
    rows: list[dict[str, Any]] = [{"run": "pretrain", "converged": False}]  # no arm: not counted
    for (arm, fraction), flags in verdicts.items():
        rows += [{"arm": arm, "label_fraction": fraction, "converged": flag} for flag in flags]
    return Table(rows)


def test_each_row_counts_converged_runs_per_arm_and_marks_unconverged_comparisons() -> None:
    runs = _runs(
        {
            ("ssl", 0.05): [True, True, False],  # one SSL seed still improving
            ("supervised", 0.05): [True, True, True],
            ("ssl", 0.5): [True],
            ("supervised", 0.5): [True],
        }
    )
    summary = label_fraction_summary(_results((0.05, 0.5), seeds=3), class_names=[], runs=runs)
    small, large = summary.rows
    assert (small["ssl_converged"], small["supervised_converged"]) == ("2 of 3", "3 of 3")
    assert (large["ssl_converged"], large["supervised_converged"]) == ("1 of 1", "1 of 1")
    assert small["comparison"] == "unconverged runs" and large["comparison"] == "converged runs"
    # The statistic is kept (as computed) beside its mark: SSL wins on all six slices, p = 2**-6,
    # and Holm over two equal p-values doubles both.
    assert small["p_value"] == pytest.approx(2.0**-6) and large["p_value"] == pytest.approx(2.0**-6)
    assert small["p_holm"] == pytest.approx(2.0**-5) and large["p_holm"] == pytest.approx(2.0**-5)


def test_the_csv_has_the_convergence_columns_before_the_p_values() -> None:
    runs = _runs({("ssl", 0.1): [False], ("supervised", 0.1): [False]})
    text = label_fraction_summary(_results((0.1,)), class_names=[], runs=runs).to_csv_text()
    (row,) = csv.DictReader(io.StringIO(text))
    assert list(row) == [
        "label_fraction",
        "ssl_mean",
        "supervised_mean",
        "pairs",
        "ssl_converged",
        "supervised_converged",
        "comparison",
        "p_value",
        "p_holm",
        "seed_differences",
    ]
    assert (row["ssl_converged"], row["supervised_converged"], row["comparison"]) == (
        "0 of 1",
        "0 of 1",
        "unconverged runs",
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"ssl": ["1"], "supervised": ["1"]}, "converged runs"),  # 0/1 as read back from runs.csv
        ({"ssl": ["0"], "supervised": ["1"]}, "unconverged runs"),
        ({"ssl": [1], "supervised": [0]}, "unconverged runs"),
        ({"ssl": [True]}, "unconverged runs"),  # no supervised run known: not every run converged
    ],
)
def test_a_comparison_counts_as_converged_only_when_every_run_of_both_arms_did(
    flags: dict[str, list[Any]], expected: str
) -> None:
    runs = Table(
        [
            {"arm": arm, "label_fraction": 0.1, "converged": flag}
            for arm, values in flags.items()
            for flag in values
        ]
    )
    (row,) = label_fraction_summary(_results((0.1,)), class_names=[], runs=runs).rows
    assert row["comparison"] == expected


def test_without_runs_the_summary_has_no_convergence_columns() -> None:
    summary = label_fraction_summary(_results((0.1,)), class_names=[])
    assert not {"ssl_converged", "supervised_converged", "comparison"} & set(summary.columns)
