"""Tables 2 and 3, power-law fits and labels needed, checked against NumPy/SciPy and hand orderings."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from inpaintssl.analysis.paper_tables import (
    dice_table,
    labels_needed_table,
    power_law_table,
    table2_l2_norm,
    table3_ranking,
)
from inpaintssl.analysis.summaries import (
    label_fraction_summary,
    labels_needed_estimates,
    labels_needed_intervals,
    labels_needed_rows,
)
from inpaintssl.analysis.table import Table
from inpaintssl.analysis.table import Table as ResultsTable
from inpaintssl.stats import fit_power_law, labels_needed, labels_needed_interval
from study_helpers import result_row
from wilcoxon_reference import brute_force_p_greater


def test_table2_means_and_stds_match_numpy() -> None:
    rng = np.random.default_rng(0)
    rows, values = [], {}
    for task in ("context_prediction", "context_restoration"):
        for size in (8, 32):
            for sampler in ("random", "poisson_disc"):
                v = rng.normal(50 + size, 5, size=7)
                values[(task, size, sampler)] = v
                rows += [
                    {
                        "arm": "pretrain",
                        "task": task,
                        "patch_size": size,
                        "sampler": sampler,
                        "metric": "l2_norm",
                        "value": x,
                    }
                    for x in v
                ]
    rows.append(
        {
            "arm": "pretrain",
            "task": "context_prediction",
            "patch_size": 8,
            "sampler": "random",
            "metric": "l2_loss",
            "value": 1e6,
        }
    )  # another metric: ignored
    table = table2_l2_norm(ResultsTable(rows))
    assert table.columns == (
        "pretext_task",
        "patch_size",
        "poisson_disc_mean",
        "poisson_disc_std",
        "poisson_disc_n",
        "random_mean",
        "random_std",
        "random_n",
        "setting",
    )
    assert table.cells("setting") == [None] * 4  # rows without other grid values
    assert [(r[0], r[1]) for r in table.tuples()] == [
        ("context_prediction", 8),
        ("context_prediction", 32),
        ("context_restoration", 8),
        ("context_restoration", 32),
    ]
    for row in table.tuples():
        for offset, sampler in ((2, "poisson_disc"), (5, "random")):
            v = values[(row[0], row[1], sampler)]
            assert row[offset] == pytest.approx(v.mean())
            assert row[offset + 1] == pytest.approx(v.std(ddof=1))
            assert row[offset + 2] == 7


def _l2_rows(
    strategy: str | None, values: np.ndarray, *, sampler: str = "poisson_disc"
) -> list[dict[str, object]]:
    return [
        {
            "arm": "pretrain",
            "task": "context_prediction",
            "patch_size": 4,
            "sampler": sampler,
            "strategy": strategy,
            "metric": "l2_norm",
            "value": float(x),
        }
        for x in values
    ]


def test_table2_gives_each_pretraining_setting_its_own_row() -> None:
    # A grid over pretrain.optim.lr: two pretraining runs of one task and patch size. Pooled, the
    # row's mean was of neither setting and its std mostly the gap between them.
    rng = np.random.default_rng(7)
    fast, slow = rng.normal(16.7, 0.1, size=4), rng.normal(18.0, 0.4, size=4)
    other = rng.normal(20.0, 0.2, size=3)
    rows = [
        *_l2_rows("context_prediction 4x4 poisson_disc lr=0.01", fast),
        *_l2_rows("context_prediction 4x4 poisson_disc lr=0.0001", slow),
        *_l2_rows("context_prediction 4x4 random lr=0.01", other, sampler="random"),
    ]
    table = table2_l2_norm(ResultsTable(rows))
    assert sorted(table.cells("poisson_disc_n")) == [4, 4]  # not one row of 8
    found = {row["setting"]: row for row in table}
    assert set(found) == {"lr=0.01", "lr=0.0001"}
    for setting, values in (("lr=0.01", fast), ("lr=0.0001", slow)):
        row = found[setting]
        assert (row["pretext_task"], row["patch_size"]) == ("context_prediction", 4)
        assert row["poisson_disc_mean"] == pytest.approx(np.mean(values))
        assert row["poisson_disc_std"] == pytest.approx(np.std(values, ddof=1))
        assert row["poisson_disc_n"] == 4
    # Both samplers' runs of lr=0.01 are one setting: one row, a column group each.
    assert found["lr=0.01"]["random_mean"] == pytest.approx(np.mean(other))
    assert found["lr=0.01"]["random_n"] == 3
    assert found["lr=0.0001"]["random_n"] == 0 and math.isnan(found["lr=0.0001"]["random_mean"])
    assert "one row per pretraining setting" in table.title


def test_table2_of_a_strategy_outside_the_pretext_naming_keeps_it_whole() -> None:
    # A data-scaling pretraining run's strategy names no task/patch/sampler: it is the setting.
    rows = [
        *_l2_rows("+50% unlabelled", np.array([1.0, 3.0])),
        *_l2_rows("+100% unlabelled", np.array([5.0])),
    ]
    table = table2_l2_norm(ResultsTable(rows))
    assert sorted(table.cells("poisson_disc_mean")) == [2.0, 5.0]
    assert {row["setting"]: row["poisson_disc_mean"] for row in table} == {
        "+50% unlabelled": 2.0,
        "+100% unlabelled": 5.0,
    }


def test_table3_reproduces_a_hand_made_ordering() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.6, 0.8, size=(2, 12))  # 2 label fractions x 12 test images
    # Hand-made: "big" wins every pair clearly, "small" wins most pairs, "worse" loses.
    shifts = {
        "big": 0.05 + 0.001 * np.arange(24).reshape(2, 12),
        "small": rng.normal(0.01, 0.01, (2, 12)),
        "worse": -0.03 + rng.normal(0, 0.005, (2, 12)),
    }
    rows = []
    for f_index, fraction in enumerate((0.5, 0.1)):
        for i in range(12):
            rows.append(result_row("supervised", "supervised", fraction, i, base[f_index, i]))
            for name, shift in shifts.items():
                rows.append(result_row("ssl", name, fraction, i, base[f_index, i] + shift[f_index, i]))
    # 100% labels are left out of the pooled test: make them contradict the ordering.
    rows += [result_row("ssl", "worse", 1.0, i, 1.0) for i in range(12)]
    rows += [result_row("supervised", "supervised", 1.0, i, 0.0) for i in range(12)]
    table = table3_ranking(ResultsTable(rows))
    assert table.cells("strategy") == ["big", "small", "worse"]
    assert table.cells("rank") == [1, 2, 3]
    for name, p in zip(table.cells("strategy"), table.cells("p_value")):
        expected = stats.wilcoxon((base + shifts[name]).ravel(), base.ravel(), alternative="greater").pvalue
        assert p == pytest.approx(expected)
    assert table.cells("pairs") == [24, 24, 24]


@pytest.mark.parametrize("name", ["alpha", "zeta"])
def test_table3_gives_strategies_tied_up_to_round_off_their_shared_rank(name: str) -> None:
    # "beta" is the baseline + 0.05; the other the same Dice stored as float32, so its mean
    # difference is smaller by round-off only. Their ranks 2 and 3 followed their names alone:
    # both share 2.5, as scipy.stats.rankdata ranks ties, whatever they are called.
    base = np.linspace(0.6, 0.8, 6)
    rows = []
    for i, dice in enumerate(base):
        rows.append(result_row("supervised", "supervised", 0.5, i, float(dice)))
        rows.append(result_row("ssl", "gamma", 0.5, i, float(dice) + 0.10))
        rows.append(result_row("ssl", "beta", 0.5, i, float(dice) + 0.05))
        rows.append(result_row("ssl", name, 0.5, i, float(np.float32(dice + 0.05))))
    table = table3_ranking(ResultsTable(rows))
    found = {row["strategy"]: row for row in table}
    assert found[name]["mean_dice_difference"] != found["beta"]["mean_dice_difference"]
    assert found[name]["p_value"] == found["beta"]["p_value"]
    expected = stats.rankdata([-0.10, -0.05, -0.05])  # gamma first, the two equal ones after it
    assert [found[s]["tied_rank"] for s in ("gamma", "beta", name)] == list(expected)
    assert sorted(table.cells("rank")) == [1, 2, 3]


def test_table3_pools_the_label_fractions_it_is_given_not_the_100_percent_fallback() -> None:
    # The study plans 50% and 10%; "a" has finished its 50% runs, "b" only its 100% one. Left to
    # the results, "b" alone would be tested on its 100% items; given the plan's fractions, "a" is
    # ranked on its 50% items and "b" waits, unranked.
    rng = np.random.default_rng(6)
    base = rng.uniform(0.6, 0.8, size=(2, 6))  # 100% and 50% x 6 test images
    gain = np.array([0.05, 0.03, -0.01, 0.04, 0.06, 0.02])
    rows = []
    for f_index, fraction in enumerate((1.0, 0.5)):
        for i in range(6):
            rows.append(result_row("supervised", "supervised", fraction, i, base[f_index, i]))
            rows.append(result_row("ssl", "a", fraction, i, base[f_index, i] + gain[i]))
    rows += [result_row("ssl", "b", 1.0, i, base[0, i] + 0.1) for i in range(6)]
    table = table3_ranking(ResultsTable(rows), label_fractions=[0.5, 0.1])
    found = {row["strategy"]: row for row in table}
    assert found["a"]["rank"] == 1 and found["a"]["pairs"] == 6
    expected = stats.wilcoxon(base[1] + gain, base[1], alternative="greater").pvalue
    assert found["a"]["p_value"] == pytest.approx(expected)
    b = found["b"]
    assert (
        b["rank"] is None and b["pairs"] == 0 and math.isnan(b["p_value"]) and b["baseline"] == "supervised"
    )
    assert b["note"] == (
        "not ranked: no label-limited results yet (none at 0.5, 0.1; its results, at label fraction 1, "
        "are not pooled)"
    )
    assert "pooled over label fractions 0.5, 0.1;" in table.title
    assert "Holm-adjusted over the 1 ranked" in table.title
    # Left to the results, the default pools what they hold below 100%: 0.5 here, named too.
    assert "pooled over label fractions 0.5;" in table3_ranking(ResultsTable(rows)).title
    only_full = [row for row in rows if row["label_fraction"] == 1.0]
    with pytest.raises(
        ValueError, match=r"label fractions it pools \(0\.5, 0\.1\).*'a': not ranked: no label-limited"
    ):
        table3_ranking(ResultsTable(only_full), label_fractions=[0.5, 0.1])


def test_table3_counts_a_test_image_once_however_many_subset_seeds() -> None:
    # The same five images under 1 or 3 seeds: the seeds add training repeats, not test data, so
    # the test is SciPy's on the five seed-averaged pairs either way.
    rng = np.random.default_rng(3)
    base = rng.uniform(0.6, 0.8, size=5)
    gain = np.array([0.05, 0.03, -0.02, 0.04, 0.06])
    expected = stats.wilcoxon(base + gain, base, alternative="greater").pvalue
    for seeds in (1, 3):
        rows = [
            result_row(arm, arm, 0.5, i, base[i] + (gain[i] if arm == "ssl" else 0.0), seed=seed)
            for seed in range(seeds)
            for i in range(5)
            for arm in ("ssl", "supervised")
        ]
        table = table3_ranking(ResultsTable(rows))
        assert table.cells("pairs") == [5]
        assert table.cells("p_value")[0] == pytest.approx(expected)


def test_table3_tests_each_strategy_on_the_items_it_shares_with_the_baseline() -> None:
    # "partial" finished its 50% runs only: it must not take the 10% items away from "full".
    rng = np.random.default_rng(4)
    base = rng.uniform(0.6, 0.8, size=(2, 8))
    full, partial = base + 0.05 + 0.001 * np.arange(16).reshape(2, 8), base + 0.02
    rows = []
    for f_index, fraction in enumerate((0.5, 0.1)):
        for i in range(8):
            rows.append(result_row("supervised", "supervised", fraction, i, base[f_index, i]))
            rows.append(result_row("ssl", "full", fraction, i, full[f_index, i]))
            if fraction == 0.5:
                rows.append(result_row("ssl", "partial", fraction, i, partial[f_index, i]))
    table = table3_ranking(ResultsTable(rows))
    by_name = dict(zip(table.cells("strategy"), zip(table.cells("pairs"), table.cells("p_value"))))
    assert by_name["full"] == (
        16,
        pytest.approx(stats.wilcoxon(full.ravel(), base.ravel(), alternative="greater").pvalue),
    )
    assert by_name["partial"] == (
        8,
        pytest.approx(stats.wilcoxon(partial[0], base[0], alternative="greater").pvalue),
    )


def test_a_nan_dice_leaves_its_item_out_of_the_paired_tests() -> None:
    # A class absent from both masks scored with empty_score=nan: items 1 and 4 have no Dice in one
    # arm. They have no pair, so the tests are SciPy's on the other six items, per class and pooled.
    rng = np.random.default_rng(5)
    base = rng.uniform(0.6, 0.8, size=8)
    gain = np.array([0.05, 0.03, -0.02, 0.04, 0.06, 0.01, 0.02, 0.07])
    ssl = base + gain
    ssl[1] = math.nan
    sup = base.copy()
    sup[4] = math.nan
    rows = []
    for metric, class_name in (("dice_mean", ""), ("dice", "gm")):
        for i in range(8):
            rows.append(result_row("ssl", "ssl", 0.5, i, ssl[i], metric=metric, class_name=class_name))
            rows.append(
                result_row("supervised", "supervised", 0.5, i, sup[i], metric=metric, class_name=class_name)
            )
    kept = np.isfinite(ssl) & np.isfinite(sup)
    expected = brute_force_p_greater(ssl[kept], sup[kept])  # tied pairs, so exact on every SciPy
    table = table3_ranking(ResultsTable(rows))
    assert table.cells("pairs") == [6]
    assert table.cells("p_value")[0] == pytest.approx(expected)
    (summary,) = label_fraction_summary(ResultsTable(rows), class_names=["gm"]).rows
    assert summary["pairs"] == 6 and summary["p_value"] == pytest.approx(expected)
    assert summary["ssl_gm"] == pytest.approx(ssl[kept].mean())
    assert summary["supervised_gm"] == pytest.approx(sup[kept].mean())


def test_two_scores_for_one_item_and_seed_are_refused() -> None:
    rows = [result_row("supervised", "supervised", 0.5, i, 0.6) for i in range(3)]
    rows += [result_row("ssl", "a", 0.5, i, 0.7) for i in range(3)] * 2  # two studies' rows merged
    with pytest.raises(
        ValueError, match=r"strategy 'a': two scores for test item \(0\.5, 'img0', 0\) at subset seed 0"
    ):
        table3_ranking(ResultsTable(rows))


def test_table3_needs_paired_baseline_results() -> None:
    rows = [result_row("ssl", "a", 0.5, i, 0.7) for i in range(3)]
    with pytest.raises(ValueError, match="table 3 needs supervised-baseline and SSL Dice"):
        table3_ranking(ResultsTable(rows))


def test_power_law_fits_recover_noiseless_curves() -> None:
    # Dice = a * x^k + c against % pretraining data; the supervised point at x = 0 is c.
    truth = {0.5: (0.004, 0.45, 0.70), 0.1: (0.01, 0.3, 0.55)}
    rows = []
    for fraction, (a, k, c) in truth.items():
        rows += [result_row("supervised", "supervised", fraction, i, c) for i in range(3)]
        for pct in (100.0, 150.0, 200.0, 400.0):
            rows += [
                result_row("ssl", f"+{pct}", fraction, i, a * pct**k + c, pretrain_data_pct=pct)
                for i in range(3)
            ]
    table = power_law_table(ResultsTable(rows))
    found = {row[0]: row for row in table.tuples()}
    for fraction, (a, k, c) in truth.items():
        _, points, fa, fk, fc, rse, paper_s, at_bound, x_min, x_max = found[fraction]
        assert points == 5 and at_bound is False
        assert (x_min, x_max) == (0.0, 400.0)  # the supervised point at 0 % to the largest superset
        assert (fa, fk, fc) == (
            pytest.approx(a, rel=1e-3),
            pytest.approx(k, rel=1e-3),
            pytest.approx(c, rel=1e-3),
        )
        assert rse == pytest.approx(0.0, abs=1e-6) and paper_s == pytest.approx(0.0, abs=1e-9)


def test_a_fit_whose_exponent_stops_at_its_bound_is_flagged() -> None:
    # A step: supervised and +100 % at 0.5, +400 % at 0.8. No power law passes through a step, and
    # k runs to its upper bound; a table that printed a, k, c alone would present them as estimates.
    rows = [result_row("supervised", "supervised", 0.5, i, 0.5) for i in range(2)]
    for pct, dice in ((100.0, 0.5), (200.0, 0.5), (400.0, 0.8)):
        rows += [result_row("ssl", f"+{pct}", 0.5, i, dice, pretrain_data_pct=pct) for i in range(2)]
    (row,) = power_law_table(ResultsTable(rows)).tuples()
    assert row[3] == pytest.approx(5.0) and row[7] is True


def test_labels_needed_inverts_the_supervised_curve() -> None:
    # Supervised Dice = 0.9 - 0.5 * n^-0.5 over n labelled volumes; target 0.8 -> n = 25.
    rows = []
    for fraction, n in ((1.0, 100), (0.5, 50), (0.25, 25), (0.1, 10), (0.05, 5)):
        dice = 0.9 - 0.5 * n**-0.5
        rows += [
            result_row("supervised", "supervised", fraction, i, dice, labelled_volumes=n) for i in range(2)
        ]
    table = labels_needed_table(ResultsTable(rows), target=0.8)
    (row,) = table.tuples()
    assert row[0] == "supervised" and row[1] == 0.8
    assert row[2:5] == (
        pytest.approx(-0.5, rel=1e-3),
        pytest.approx(-0.5, rel=1e-3),
        pytest.approx(0.9, rel=1e-3),
    )
    assert row[5] == 25.0 and row[7] is False
    assert row[8:11] == (5.0, 100.0, False)  # 25 lies within the 5-100 labelled volumes fitted
    # Both test volumes score alike: every bootstrap resample gives the same curve and count.
    assert row[11:] == (25.0, 25.0, 0.0, 0.0, 0, 0)
    # The default target is the supervised Dice with the most labels.
    assert labels_needed_table(ResultsTable(rows)).tuples()[0][1] == pytest.approx(0.9 - 0.05)


@pytest.mark.parametrize(
    ("target", "needed", "extrapolated"),
    [
        (0.8, 25.0, False),  # 0.5 / sqrt(n) = 0.1 -> n = 25, inside the fitted 5-100
        (0.75, 12.0, False),  # 0.5 / sqrt(n) = 0.15 -> n = 11.1 -> 12
        (0.85, 100.0, False),  # 0.5 / sqrt(n) = 0.05 -> n = 100, the largest fitted count itself
        (0.87, 278.0, True),  # 0.5 / sqrt(n) = 0.03 -> n = 277.8 -> 278, beyond the largest
        (0.6, 3.0, True),  # 0.5 / sqrt(n) = 0.3 -> n = 2.8 -> 3, below the smallest
        (0.95, math.inf, True),  # above the plateau 0.9: never reached, a claim beyond the data
    ],
)
def test_labels_needed_flags_counts_outside_the_fitted_range(
    target: float, needed: float, extrapolated: bool
) -> None:
    # Supervised Dice = 0.9 - 0.5 * n^-0.5, fitted on 5 to 100 labelled volumes (hand-solved counts).
    rows = []
    for fraction, n in ((1.0, 100), (0.5, 50), (0.25, 25), (0.1, 10), (0.05, 5)):
        rows.append(
            result_row("supervised", "supervised", fraction, 0, 0.9 - 0.5 * n**-0.5, labelled_volumes=n)
        )
    # An SSL curve on only two label fractions cannot be fitted: no count, so nothing to flag.
    for fraction, n in ((1.0, 100), (0.5, 50)):
        rows.append(result_row("ssl", "s", fraction, 0, 0.9, labelled_volumes=n, pretrain_data_pct=100.0))
    table = labels_needed_table(ResultsTable(rows), target=target)
    assert table.columns[8:11] == ("fitted_volumes_min", "fitted_volumes_max", "extrapolated")
    supervised, ssl = table.tuples()
    assert supervised[0] == "supervised" and supervised[5] == needed
    assert supervised[8:11] == (5.0, 100.0, extrapolated)
    assert ssl[0].startswith("ssl") and math.isnan(ssl[5])
    assert math.isnan(ssl[8]) and math.isnan(ssl[9]) and ssl[10] is None


def test_labels_needed_says_the_default_target_lacks_labelled_volume_counts() -> None:
    # Supervised Dice exist, but no row carries labelled_volumes (a table built without
    # load_results): the error names the missing column, not "no supervised results".
    rows = [
        result_row(arm, arm, f, i, 0.5 + f / 4)
        for arm in ("ssl", "supervised")
        for f in (0.1, 0.5, 1.0)
        for i in range(2)
    ]
    with pytest.raises(
        ValueError, match=r"found 6 supervised Dice rows, none with a 'labelled_volumes' count"
    ):
        labels_needed_table(ResultsTable(rows), n_resamples=10)
    with pytest.raises(ValueError, match="found no supervised Dice rows"):
        labels_needed_table(ResultsTable([r for r in rows if r["arm"] == "ssl"]), n_resamples=10)


def test_labels_needed_of_a_decreasing_curve_is_not_flagged() -> None:
    # Dice = 0.5 + 0.5 * n^-0.5 falls with more labels: "labels needed" is NaN, neither inside nor
    # outside the fitted range.
    rows = [
        result_row("supervised", "supervised", f, 0, 0.5 + 0.5 * n**-0.5, labelled_volumes=n)
        for f, n in ((1.0, 100), (0.5, 50), (0.25, 25), (0.1, 10), (0.05, 5))
    ]
    ((*_, needed, _, _, x_min, x_max, extrapolated),) = (
        row[:11] for row in labels_needed_table(ResultsTable(rows), target=0.6).tuples()
    )
    assert math.isnan(needed) and (x_min, x_max) == (5.0, 100.0) and extrapolated is None


def test_dice_table_averages_images_then_seeds() -> None:
    rows = []
    for seed, values in ((0, [0.5, 0.7]), (1, [0.9, 0.9])):
        for i, v in enumerate(values):
            rows.append(result_row("ssl", "s", 0.5, i, v, seed=seed))
            rows.append(result_row("ssl", "s", 0.5, i, v / 2, seed=seed, metric="dice", class_name="gm"))
    table = dice_table(ResultsTable(rows))
    assert table.columns == ("strategy", "label_fraction", "seeds", "dice_mean", "dice_gm")
    assert table.tuples() == (("s", 0.5, 2, pytest.approx(0.75), pytest.approx(0.375)),)


def _image_level_results() -> ResultsTable:
    rows = []
    for arm in ("ssl", "supervised"):
        for i in range(3):
            value = 0.5 + 0.1 * i + (0.05 if arm == "ssl" else 0.0)
            rows.append(result_row(arm, arm, 0.5, i, value))
            rows.append(result_row(arm, arm, 0.5, i, value, metric="dice", class_name="gm"))
    return ResultsTable(rows)


@pytest.mark.parametrize(
    ("level", "error", "message"),
    [
        ("Image", ValueError, "level='Image'"),
        ("slice", ValueError, "level='slice'"),
        (
            "volume",
            ValueError,
            "level='volume': the results hold Dice per image only; expected level='image'",
        ),
    ],
)
@pytest.mark.parametrize("table", ["summary", "dice", "power_law"])
def test_a_level_the_results_do_not_hold_is_refused_not_an_empty_table(
    table: str, level: str, error: type[Exception], message: str
) -> None:
    # Each came back with no rows, without a word.
    results = _image_level_results()
    make = {
        "summary": lambda: label_fraction_summary(results, class_names=["gm"], level=level),
        "dice": lambda: dice_table(results, level=level),
        "power_law": lambda: power_law_table(results, level=level),
    }[table]
    with pytest.raises(error, match=re.escape(message)):
        make()
    assert label_fraction_summary(results, class_names=["gm"], level="image").rows  # the level held


@pytest.mark.parametrize(
    ("class_names", "error", "message"),
    [
        (["CSF"], ValueError, "class_names: ['CSF'] not in the results, whose per-class Dice are of ['gm']"),
        ("gm", TypeError, "class_names='gm' is a string; expected a list of class names (['gm'] for one)"),
    ],
)
def test_class_names_the_results_lack_are_refused_not_a_nan_column(
    class_names: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        label_fraction_summary(_image_level_results(), class_names=class_names)  # type: ignore[arg-type]
    row = label_fraction_summary(_image_level_results(), class_names=["gm"]).rows[0]
    assert row["ssl_gm"] == pytest.approx(0.65) and row["supervised_gm"] == pytest.approx(0.6)


def test_tables_write_csv_and_markdown(tmp_path: Path) -> None:
    table = Table(
        (("a", 1.234567e-17), ("b", float("nan"))), name="t", title="A title", columns=("name", "p")
    )
    csv_path, md_path = table.write(tmp_path)
    with open(csv_path, newline="") as handle:
        read = list(csv.reader(handle))
    assert read[0] == ["name", "p"] and float(read[1][1]) == 1.234567e-17 and read[2][1] == "nan"
    text = md_path.read_text()
    assert "**A title**" in text and "| a | 1.23e-17 |" in text
    with pytest.raises(ValueError, match="row 0 has 1 cells, expected 2"):
        Table((("x",),), name="bad", columns=("a", "b"))


def test_labels_needed_table_reports_bootstrap_intervals_over_the_test_volumes() -> None:
    # 12 test images, each with its own offset, at 5 label counts; SSL is 0.03 better on every
    # image. Hand-built (P, N) case matrices give the same intervals through the stats function.
    rng = np.random.default_rng(0)
    counts = np.array([5.0, 10.0, 25.0, 50.0, 100.0])
    fractions = (0.05, 0.1, 0.25, 0.5, 1.0)
    supervised = (0.9 - 0.5 / np.sqrt(counts))[:, None] + rng.normal(0, 0.03, 12)[None, :]
    supervised += rng.normal(0, 0.01, supervised.shape)
    rows = []
    for p, (fraction, n) in enumerate(zip(fractions, counts)):
        for i in range(12):
            rows.append(
                result_row("supervised", "supervised", fraction, i, supervised[p, i], labelled_volumes=n)
            )
            rows.append(
                result_row(
                    "ssl",
                    "s",
                    fraction,
                    i,
                    supervised[p, i] + 0.03,
                    labelled_volumes=n,
                    pretrain_data_pct=100.0,
                )
            )
    table = labels_needed_table(ResultsTable(rows), target=0.8, n_resamples=100, seed=3)
    assert table.columns[11:] == (
        "needed_ci_lower",
        "needed_ci_upper",
        "saved_ci_lower",
        "saved_ci_upper",
        "resamples_failed",
        "saved_resamples_left_out",
    )
    sup_row, ssl_row = table.tuples()
    for row in (sup_row, ssl_row):
        assert row[11] <= row[5] <= row[12] and row[15] == 0
    assert ssl_row[13] <= ssl_row[6] <= ssl_row[14] and ssl_row[13] > 0  # SSL saves labels in every resample
    assert sup_row[13:15] == (0.0, 0.0)
    columns = sorted(range(12), key=lambda i: f"img{i}")  # the table orders test images by name
    expected_sup = labels_needed_interval(counts, supervised[:, columns], 0.8, n_resamples=100, seed=3)
    expected_ssl = labels_needed_interval(counts, supervised[:, columns] + 0.03, 0.8, n_resamples=100, seed=3)
    assert sup_row[11:13] == (expected_sup.lower, expected_sup.upper)
    assert ssl_row[11:13] == (expected_ssl.lower, expected_ssl.upper)
    saved = expected_sup.resamples - expected_ssl.resamples  # paired: the same images per resample
    assert ssl_row[13:15] == (
        np.quantile(saved, 0.025, method="lower"),
        np.quantile(saved, 0.975, method="higher"),
    )


def test_the_default_target_is_resampled_with_the_test_cases() -> None:
    # Every image i scores 0.9 + u_i - 0.5 / sqrt(n) supervised and 0.03 more with SSL; the
    # default target is the supervised Dice at 100 labels, measured on the same images. By hand,
    # in every resample the curves and the target move by the same mean offset: supervised needs
    # 100 labels, SSL solves 0.5 / sqrt(n) = 0.08, n = 39.06 -> 40, so it saves 60, in every resample.
    counts = np.array([5.0, 10.0, 25.0, 50.0, 100.0])
    fractions = (0.05, 0.1, 0.25, 0.5, 1.0)
    offsets = np.linspace(-0.04, 0.04, 12)
    rows = []
    for fraction, n in zip(fractions, counts):
        for i in range(12):
            dice = 0.9 + offsets[i] - 0.5 / np.sqrt(n)
            rows.append(result_row("supervised", "supervised", fraction, i, dice, labelled_volumes=n))
            rows.append(
                result_row("ssl", "s", fraction, i, dice + 0.03, labelled_volumes=n, pretrain_data_pct=100.0)
            )
    sup_row, ssl_row = labels_needed_table(ResultsTable(rows), n_resamples=100, seed=1).tuples()
    assert sup_row[5] == 100.0 and sup_row[11:13] == (100.0, 100.0)
    assert ssl_row[5] == 40.0 and ssl_row[11:13] == (40.0, 40.0)
    assert ssl_row[13:16] == (60.0, 60.0, 0)


_COUNTS = {0.05: 5.0, 0.1: 10.0, 0.25: 25.0, 0.5: 50.0, 1.0: 100.0}  # label fraction -> labelled volumes


def _seeded_rows(dice: np.ndarray, *, ssl_b: float | None = None) -> list[dict[str, object]]:
    """Supervised rows of ``dice[seed, count, image]`` (counts of ``_COUNTS``), and with ``ssl_b`` an
    SSL arm scoring ``0.9 + offset_i - ssl_b / sqrt(n)`` on every seed, the offset read off seed 1 at 100."""
    rows = []
    for seed in range(dice.shape[0]):
        for p, (fraction, n) in enumerate(_COUNTS.items()):
            for i in range(dice.shape[2]):
                rows.append(
                    result_row(
                        "supervised",
                        "supervised",
                        fraction,
                        i,
                        dice[seed, p, i],
                        seed=seed,
                        labelled_volumes=n,
                    )
                )
                if ssl_b is not None:
                    offset = dice[1, -1, i] - (0.9 - 0.5 / 10.0)
                    rows.append(
                        result_row(
                            "ssl",
                            "s",
                            fraction,
                            i,
                            0.9 + offset - ssl_b / np.sqrt(n),
                            seed=seed,
                            labelled_volumes=n,
                            pretrain_data_pct=100.0,
                        )
                    )
    return rows


def test_a_nan_dice_gives_one_count_and_target_for_the_table_and_its_interval() -> None:
    # Image i scores 0.9 + u_i - 0.5 / sqrt(n) supervised and 0.9 + u_i - 0.4 / sqrt(n) with SSL, on
    # both subset seeds; the u_i average 0. Seed 0's supervised run at 100 labels scores the three
    # hardest images NaN (empty_score=nan). Each image keeps seed 1's Dice there, so by image the
    # supervised Dice at 100 labels averages 0.9 - 0.05 = 0.85 and the curves stay exact power
    # laws: supervised reaches 0.85 at 100 labels, SSL at (0.4 / 0.05)^2 = 64, in every resample
    # too (each resample moves curves and target by its mean u). Averaging seed 0's mean over its
    # seven easier images with seed 1's raised the target to 0.8575 and bent the supervised
    # curve's last point: counts 106 and 89, saving 17, outside their intervals (100, 64, 36).
    offsets = np.linspace(-0.045, 0.045, 10)
    curve = 0.9 - 0.5 / np.sqrt(np.array(list(_COUNTS.values())))
    dice = np.broadcast_to(curve[None, :, None] + offsets[None, None, :], (2, 5, 10)).copy()
    dice[0, -1, :3] = np.nan
    rows = _seeded_rows(dice, ssl_b=0.4)
    sup_row, ssl_row = labels_needed_table(ResultsTable(rows), n_resamples=50, seed=2)
    assert sup_row["target_dice"] == ssl_row["target_dice"] == pytest.approx(0.85)
    assert (sup_row["labelled_volumes_needed"], sup_row["needed_ci_lower"], sup_row["needed_ci_upper"]) == (
        100.0,
        100.0,
        100.0,
    )
    assert (ssl_row["labelled_volumes_needed"], ssl_row["needed_ci_lower"], ssl_row["needed_ci_upper"]) == (
        64.0,
        64.0,
        64.0,
    )
    assert (ssl_row["saved_vs_supervised"], ssl_row["saved_ci_lower"], ssl_row["saved_ci_upper"]) == (
        36.0,
        36.0,
        36.0,
    )
    target, intervals = labels_needed_intervals(ResultsTable(rows), n_resamples=50, seed=2)
    assert target == pytest.approx(0.85)
    assert (intervals["supervised"].estimate, intervals["ssl, 100% pretraining data"].estimate) == (
        100.0,
        64.0,
    )


def test_a_table_without_nan_dice_keeps_the_mean_over_seeds_of_the_test_set_means() -> None:
    # Noisy Dice on 2 seeds x 5 counts x 7 images, no NaN: the count and target are still those of
    # the curve of seed-averaged test-set means (Figures 3/4's points), fitted and solved here directly.
    rng = np.random.default_rng(5)
    counts = np.array(list(_COUNTS.values()))
    dice = 0.9 - 0.5 / np.sqrt(counts)[None, :, None] + rng.normal(0.0, 0.02, (2, 5, 7))
    rows = _seeded_rows(dice)
    (row,) = labels_needed_table(ResultsTable(rows), n_resamples=20).tuples()
    curve = dice.mean(axis=2).mean(axis=0)
    fit = fit_power_law(counts, curve)
    assert row[1] == pytest.approx(curve[-1], rel=1e-12)
    assert row[2:5] == (
        pytest.approx(fit.a, rel=1e-6),
        pytest.approx(fit.k, rel=1e-6),
        pytest.approx(fit.c, rel=1e-6),
    )
    assert row[5] == labels_needed(fit, float(curve[-1]))
    (row,) = labels_needed_table(ResultsTable(rows), target=0.8, n_resamples=20).tuples()
    assert row[5] == labels_needed(fit, 0.8)


@pytest.mark.parametrize("target", [85.0, 1.5, -0.2, 0.0, math.nan, math.inf])
@pytest.mark.parametrize(
    "function", [labels_needed_table, labels_needed_rows, labels_needed_estimates, labels_needed_intervals]
)
def test_a_target_that_is_not_a_dice_is_refused(function, target: float) -> None:
    # 85 (a percent) was never reached by any arm; 0 and below "needed" 1 volume for every arm.
    rows = [
        result_row(
            "supervised", "supervised", fraction, i, 0.9 - 0.5 / np.sqrt(n) + i / 100, labelled_volumes=n
        )
        for fraction, n in _COUNTS.items()
        for i in range(3)
    ]
    with pytest.raises(
        ValueError, match=r"target must be a Dice in \(0, 1\].*found " + re.escape(repr(target))
    ):
        function(ResultsTable(rows), target=target)


def test_a_target_of_one_is_a_dice() -> None:
    rows = [
        result_row("supervised", "supervised", fraction, 0, 0.9 - 0.5 / np.sqrt(n), labelled_volumes=n)
        for fraction, n in _COUNTS.items()
    ]
    (row,) = labels_needed_table(ResultsTable(rows), target=1.0, n_resamples=5).tuples()
    assert row[5] == math.inf  # above the plateau 0.9


def test_the_saved_interval_counts_the_resamples_where_neither_arm_reaches_the_target() -> None:
    # Both arms plateau at 0.9 + the resample's mean offset (no noise), SSL reaching it sooner. Fixed
    # at 0.9, the target is reached by both arms where the resample's mean offset is above 0, by
    # neither where it is below (inf - inf: no number of labels saved). Neither arm fails.
    offsets = np.array([-0.031, -0.017, 0.0043, 0.0119, 0.0137, 0.0191])
    curve = 0.9 - 0.5 / np.sqrt(np.array(list(_COUNTS.values())))
    dice = np.broadcast_to(curve[None, :, None] + offsets[None, None, :], (2, 5, 6)).copy()
    rows = _seeded_rows(dice, ssl_b=0.4)
    draws = np.random.default_rng(4).integers(0, 6, size=(200, 6))  # labels_needed_interval's draws
    mean_offsets = offsets[draws].mean(axis=1)
    assert np.abs(mean_offsets).min() > 1e-4  # no resample on the edge
    never = int(np.count_nonzero(mean_offsets < 0))
    assert 0 < never < 200
    sup_row, ssl_row = labels_needed_table(ResultsTable(rows), target=0.9, n_resamples=200, seed=4)
    assert ssl_row["resamples_failed"] == sup_row["resamples_failed"] == 0
    assert ssl_row["saved_resamples_left_out"] == sup_row["saved_resamples_left_out"] == never
    assert (
        "saved_resamples_left_out" in labels_needed_table(ResultsTable(rows), target=0.9, n_resamples=2).title
    )
