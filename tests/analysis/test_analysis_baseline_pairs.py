"""Each SSL strategy is compared with its own supervised baseline, the run its rows name.

A fine-tuning grid over learning rates trains one baseline per rate (studies.grid): the analysis
must test "FEF lr=0.001" against "supervised lr=0.001", never against the baseline of another
rate, nor against all baselines pooled. Expectations are worked by hand or with SciPy on the
arrays the rows were generated from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from inpaintssl.analysis.clinical import paired_image_errors
from inpaintssl.analysis.paper_tables import labels_needed_table, table3_ranking
from inpaintssl.analysis.summaries import (
    baseline_pairs,
    label_fraction_summary,
    labels_needed_rows,
    named_baselines,
    paired_scores,
    paired_with_baseline,
    scaling_series,
)
from inpaintssl.analysis.table import Table

IMAGES = 6
FRACTIONS = (0.5, 0.1)
SEEDS = {0.5: (0,), 0.1: (0, 1)}
B1, B2 = "supervised lr=0.01", "supervised lr=0.001"


def _row(
    arm: str,
    strategy: str,
    run: str,
    baseline: str | None,
    fraction: float,
    seed: int,
    image: int,
    value: float,
    **extra: Any,
) -> dict[str, Any]:
    row = {
        "arm": arm,
        "strategy": strategy,
        "run_id": run,
        "label_fraction": fraction,
        "subset_seed": seed,
        "level": "image",
        "volume_id": f"img{image}",
        "slice_index": 0,
        "class_name": "",
        "metric": "dice_mean",
        "value": value,
        **extra,
    }
    if baseline is not None:
        row["baseline_id"] = baseline
    return row


def _baseline_run(name: str, fraction: float, seed: int) -> str:
    return f"ft-{name.split('=')[1]}-{fraction}-{seed}"


_BASE = np.random.default_rng(7).uniform(0.55, 0.75, size=(len(FRACTIONS), IMAGES))
# Strategy -> (its baseline, its gain over that baseline per fraction and image). "FEF lr=0.01"
# beats its baseline on every item, by distinct amounts; the others win some and lose some.
_GAINS = {
    "FEF lr=0.01": (B1, 0.02 + 0.003 * np.arange(12.0).reshape(2, 6)),
    "FBF lr=0.01": (
        B1,
        np.array([[0.03, -0.011, 0.025, -0.004, 0.017, 0.006], [-0.02, 0.009, 0.013, -0.001, 0.022, 0.015]]),
    ),
    "FEF lr=0.001": (
        B2,
        np.array([[0.012, 0.005, -0.003, 0.021, 0.008, -0.016], [0.027, -0.007, 0.019, 0.002, 0.014, 0.031]]),
    ),
}


def _supervised(name: str, f: int, seed: int) -> np.ndarray:
    # The lr=0.001 baseline is much better: an SSL run at lr=0.01 loses to it on every item.
    return _BASE[f] + (0.1 if name == B2 else 0.0) + 0.01 * seed


def _ssl(strategy: str, f: int, seed: int) -> np.ndarray:
    name, gain = _GAINS[strategy]
    return _supervised(name, f, seed) + gain[f] + 0.004 * seed  # seed 1 of SSL gains a little more


def _two_baseline_rows(
    *, ids: bool = True, strategies: tuple[str, ...] = tuple(_GAINS)
) -> list[dict[str, Any]]:
    rows = []
    for f, fraction in enumerate(FRACTIONS):
        for seed in SEEDS[fraction]:
            for name in (B1, B2):
                run = _baseline_run(name, fraction, seed)
                rows += [
                    _row("supervised", name, run, run if ids else None, fraction, seed, i, v)
                    for i, v in enumerate(_supervised(name, f, seed))
                ]
            for strategy in strategies:
                pair = _baseline_run(_GAINS[strategy][0], fraction, seed) if ids else None
                run = f"ft-{strategy}-{fraction}-{seed}"
                rows += [
                    _row("ssl", strategy, run, pair, fraction, seed, i, v)
                    for i, v in enumerate(_ssl(strategy, f, seed))
                ]
    return rows


def _expected(strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Each item's SSL and own-baseline Dice, each averaged over the subset seeds of its fraction."""
    name = _GAINS[strategy][0]
    ssl = [
        np.mean([_ssl(strategy, f, s) for s in SEEDS[fraction]], axis=0)
        for f, fraction in enumerate(FRACTIONS)
    ]
    sup = [
        np.mean([_supervised(name, f, s) for s in SEEDS[fraction]], axis=0)
        for f, fraction in enumerate(FRACTIONS)
    ]
    return np.concatenate(ssl), np.concatenate(sup)


def _pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[float, float]]:
    return sorted(zip(a.round(12).tolist(), b.round(12).tolist()))


def test_each_strategy_is_paired_with_the_baseline_its_runs_name() -> None:
    pairs = baseline_pairs(Table(_two_baseline_rows()))
    assert sorted(pairs) == sorted(_GAINS)
    for strategy, pair in pairs.items():
        ssl, sup = _expected(strategy)
        # The same (SSL, baseline) pairs, whatever the order of the items.
        assert _pairs(pair.ssl, pair.baseline) == _pairs(ssl, sup)
        assert pair.baseline_name == _GAINS[strategy][0]
    # paired_with_baseline gives the same arrays.
    for strategy, (ssl, sup) in paired_with_baseline(Table(_two_baseline_rows())).items():
        np.testing.assert_array_equal(ssl, pairs[strategy].ssl)
        np.testing.assert_array_equal(sup, pairs[strategy].baseline)


def test_the_ranking_tests_each_strategy_against_its_own_baseline_and_names_it() -> None:
    table = table3_ranking(Table(_two_baseline_rows()))
    assert table.columns == ("rank", "strategy", "baseline", "p_value", "pairs", "mean_dice_difference")
    found = {row["strategy"]: row for row in table}
    assert {name: row["baseline"] for name, row in found.items()} == {
        "FEF lr=0.01": B1,
        "FBF lr=0.01": B1,
        "FEF lr=0.001": B2,
    }
    for strategy, row in found.items():
        ssl, sup = _expected(strategy)
        assert row["pairs"] == 12  # 6 images x 2 fractions; the 0.1 seeds are averaged, not counted
        assert row["p_value"] == pytest.approx(stats.wilcoxon(ssl, sup, alternative="greater").pvalue)
        assert row["mean_dice_difference"] == pytest.approx(np.mean(ssl - sup))
    # Worked by hand: "FEF lr=0.01" wins all 12 pairs -> only the all-positive signing, 1 / 2^12.
    # Against the lr=0.001 baseline it would lose every pair (p near 1).
    assert found["FEF lr=0.01"]["p_value"] == pytest.approx(1 / 4096)
    assert found["FEF lr=0.01"]["rank"] == 1
    # Its mean gain: the gains 0.02 + 0.003 k, plus 0.002 (half the seed-1 extra) on the 6 items at 0.1.
    assert found["FEF lr=0.01"]["mean_dice_difference"] == pytest.approx(0.02 + 0.003 * 5.5 + 0.001)


def test_paired_scores_returns_the_one_baseline_strategies_share() -> None:
    # The two lr=0.01 strategies both name the lr=0.01 baseline: it is theirs, the other is ignored.
    rows = _two_baseline_rows(strategies=("FEF lr=0.01", "FBF lr=0.01"))
    scores, baseline = paired_scores(Table(rows))
    assert sorted(scores) == ["FBF lr=0.01", "FEF lr=0.01"]
    for strategy, values in scores.items():
        ssl, sup = _expected(strategy)  # sup: the lr=0.01 baseline, seed-averaged
        assert _pairs(values, baseline) == _pairs(ssl, sup)


def test_paired_scores_refuses_strategies_trained_like_different_baselines() -> None:
    with pytest.raises(
        ValueError, match=r"trained like different baselines \(label fraction 0\.1, subset seed 0"
    ) as err:
        paired_scores(Table(_two_baseline_rows()))
    message = str(err.value)
    assert B1 in message and B2 in message and "paired_with_baseline" in message


def test_the_per_fraction_summary_compares_one_strategy_with_its_baseline() -> None:
    rows = _two_baseline_rows(strategies=("FEF lr=0.001",))
    summary = {row["label_fraction"]: row for row in label_fraction_summary(Table(rows), class_names=[])}
    for f, fraction in enumerate(FRACTIONS):
        seeds = SEEDS[fraction]
        ssl = np.mean([_ssl("FEF lr=0.001", f, s) for s in seeds], axis=0)
        sup = np.mean([_supervised(B2, f, s) for s in seeds], axis=0)
        row = summary[fraction]
        assert row["supervised_mean"] == pytest.approx(sup.mean())  # the lr=0.001 baseline alone
        assert row["ssl_mean"] == pytest.approx(ssl.mean())
        assert row["pairs"] == IMAGES
        assert row["p_value"] == pytest.approx(stats.wilcoxon(ssl, sup, alternative="greater").pvalue)
        gain = _GAINS["FEF lr=0.001"][1][f]
        assert row["seed_differences"] == pytest.approx([gain.mean() + 0.004 * s for s in seeds])


def test_a_strategy_whose_baseline_has_not_finished_is_not_paired_with_another() -> None:
    rows = [r for r in _two_baseline_rows() if r["strategy"] != B2]
    pairs = baseline_pairs(Table(rows))
    assert pairs["FEF lr=0.001"].ssl.size == 0 and pairs["FEF lr=0.001"].baseline_name is None
    table = table3_ranking(Table(rows))
    assert table.cells("strategy") == ["FEF lr=0.01", "FBF lr=0.01"]
    assert table.cells("baseline") == [B1, B1]


def test_results_without_baseline_ids_and_one_baseline_still_pair() -> None:
    # Rows recorded before runs named their baseline: one supervised strategy, so it is the baseline.
    rows = [r for r in _two_baseline_rows(ids=False) if r["strategy"] != B2]
    rows = [{**r, "strategy": "supervised"} if r["arm"] == "supervised" else r for r in rows]
    table = table3_ranking(Table(rows))
    assert table.cells("baseline") == ["supervised"] * 3
    row = next(r for r in table if r["strategy"] == "FEF lr=0.01")
    assert row["p_value"] == pytest.approx(1 / 4096) and row["pairs"] == 12
    # FEF lr=0.001 was generated against the lr=0.001 baseline: against this one it gains 0.1 more.
    ssl, sup = _expected("FEF lr=0.001")
    row = next(r for r in table if r["strategy"] == "FEF lr=0.001")
    assert row["mean_dice_difference"] == pytest.approx(np.mean(ssl - sup) + 0.1)


def test_several_baselines_without_ids_are_refused_everywhere() -> None:
    results = Table(_two_baseline_rows(ids=False))
    names = r"\['supervised lr=0\.001', 'supervised lr=0\.01'\]"
    message = rf"do not name the supervised baseline.*of 2 baselines {names}"
    with pytest.raises(ValueError, match=message):
        table3_ranking(results)
    with pytest.raises(ValueError, match=message):
        paired_scores(results)
    with pytest.raises(ValueError, match=message):
        scaling_series(Table([{**r, "pretrain_data_pct": 100.0} for r in results]))
    with pytest.raises(ValueError, match=message):
        labels_needed_rows(results)


def test_rows_of_which_only_some_name_their_baseline_are_refused() -> None:
    rows = _two_baseline_rows()
    rows = [{k: v for k, v in r.items() if k != "baseline_id"} if r["subset_seed"] == 1 else r for r in rows]
    with pytest.raises(ValueError, match="some SSL rows name the supervised baseline"):
        table3_ranking(Table(rows))


def test_named_baselines_select_by_run_id() -> None:
    rows = _two_baseline_rows(strategies=("FEF lr=0.001",))
    chosen = named_baselines(Table(rows))
    assert chosen.unique("strategy") == [B2]
    assert len(chosen) == sum(len(SEEDS[f]) for f in FRACTIONS) * IMAGES
    # Without SSL rows to name one, every supervised row (a figure shows every baseline).
    supervised_only = Table([r for r in rows if r["arm"] == "supervised"])
    assert len(named_baselines(supervised_only, strict=False)) == len(supervised_only)


def _scaling_rows() -> list[dict[str, Any]]:
    # Two baselines at every label fraction: lr=0.01 at Dice 0.5, lr=0.001 at 0.7. The SSL runs
    # (two amounts of pretraining data) were fine-tuned at lr=0.001 and name that baseline.
    rows = []
    for fraction in (1.0, 0.5):
        for name, dice in ((B1, 0.5), (B2, 0.7)):
            run = _baseline_run(name, fraction, 0)
            rows += [_row("supervised", name, run, run, fraction, 0, i, dice) for i in range(3)]
        for pct, dice in ((100.0, 0.75), (200.0, 0.78)):
            pair = _baseline_run(B2, fraction, 0)
            rows += [
                _row(
                    "ssl",
                    f"+{pct}",
                    f"ft-{pct}-{fraction}",
                    pair,
                    fraction,
                    0,
                    i,
                    dice,
                    pretrain_data_pct=pct,
                )
                for i in range(3)
            ]
    return rows


def test_the_scaling_series_starts_at_the_baseline_the_ssl_runs_name() -> None:
    series = scaling_series(Table(_scaling_rows()))
    assert [s.label_fraction for s in series] == [0.5, 1.0]
    for s in series:
        np.testing.assert_allclose(s.x, [0.0, 100.0, 200.0])
        np.testing.assert_allclose(s.y, [0.7, 0.75, 0.78])  # 0.7, not the pooled (0.5 + 0.7) / 2


def test_labels_needed_fits_the_curve_of_the_named_baseline() -> None:
    # lr=0.001 baseline: Dice = 0.9 - 0.5 n^-0.5 (target 0.8 -> n = 25, by hand); the lr=0.01
    # baseline is 0.2 lower. The SSL runs (fine-tuned at lr=0.001) name the lr=0.001 baseline.
    rows = []
    for fraction, n in ((1.0, 100), (0.5, 50), (0.25, 25), (0.1, 10), (0.05, 5)):
        for name, shift in ((B1, -0.2), (B2, 0.0)):
            run = _baseline_run(name, fraction, 0)
            dice = 0.9 - 0.5 * n**-0.5 + shift
            rows += [
                _row("supervised", name, run, run, fraction, 0, i, dice, labelled_volumes=n) for i in range(2)
            ]
        pair = _baseline_run(B2, fraction, 0)
        ssl = 0.95 - 0.5 * n**-0.5
        extra = {"labelled_volumes": n, "pretrain_data_pct": 100.0}
        rows += [
            _row("ssl", "+100", f"ft-ssl-{fraction}", pair, fraction, 0, i, ssl, **extra) for i in range(2)
        ]
    target, found = labels_needed_rows(Table(rows))
    assert target == pytest.approx(0.9 - 0.05)  # the named baseline's Dice with all labels
    supervised, ssl = labels_needed_table(Table(rows), target=0.8).tuples()
    assert supervised[0] == "supervised" and supervised[5] == 25.0
    assert supervised[2:5] == (
        pytest.approx(-0.5, rel=1e-3),
        pytest.approx(-0.5, rel=1e-3),
        pytest.approx(0.9, rel=1e-3),
    )
    # SSL: 0.95 - 0.5 n^-0.5 = 0.8 -> n = (0.5 / 0.15)^2 = 11.1 -> 12 volumes, 13 fewer than 25.
    assert ssl[0] == "ssl, 100% pretraining data" and ssl[5] == 12.0 and ssl[6] == 13.0
    assert [name for name, _, _ in found] == ["supervised", "ssl, 100% pretraining data"]


def _pct_row(
    arm: str, strategy: str, run: str, baseline: str | None, image: str, value: float
) -> dict[str, Any]:
    row = {
        "arm": arm,
        "strategy": strategy,
        "run_id": run,
        "label_fraction": 0.1,
        "subset_seed": 0,
        "level": "volume",
        "volume_id": image,
        "slice_index": -1,
        "class_name": "gm",
        "metric": "volume_mm3_pct_error",
        "value": value,
    }
    if baseline is not None:
        row["baseline_id"] = baseline
    return row


def test_clinical_errors_pair_each_ssl_run_with_its_baseline() -> None:
    # A clinical grid over two learning rates: SSL at lr=0.01 (errors 4) names the lr=0.01 baseline
    # (errors 10); SSL at lr=0.001 (errors 6) names the lr=0.001 baseline (errors 20). A third
    # baseline (another budget) is named by no SSL run: it is not part of the comparison.
    rows = []
    for image in ("v0", "v1"):
        rows += [
            _pct_row("supervised", B1, "ft-b1", "ft-b1", image, 10.0),
            _pct_row("supervised", B2, "ft-b2", "ft-b2", image, 20.0),
            _pct_row("supervised", "supervised max_epochs=20", "ft-b3", "ft-b3", image, 90.0),
            _pct_row("ssl", "ssl lr=0.01", "ft-s1", "ft-b1", image, 4.0),
            _pct_row("ssl", "ssl lr=0.001", "ft-s2", "ft-b2", image, 6.0),
        ]
    found = paired_image_errors(Table(rows), "volume_mm3")
    # Per image: SSL (4 + 6) / 2 = 5 against their baselines (10 + 20) / 2 = 15.
    assert found.ssl.tolist() == [5.0, 5.0] and found.supervised.tolist() == [15.0, 15.0]
    assert found.not_comparable == 0
    # The lr=0.001 baseline has not measured v1 yet: there the SSL run at 0.001 waits for it and
    # the lr=0.01 pair alone is compared (4 vs 10); it is not scored against another rate's baseline.
    partial = [r for r in rows if not (r["run_id"] == "ft-b2" and r["volume_id"] == "v1")]
    found = paired_image_errors(Table(partial), "volume_mm3")
    assert found.ssl.tolist() == [5.0, 4.0] and found.supervised.tolist() == [15.0, 10.0]


def test_clinical_errors_without_ids_need_one_baseline() -> None:
    rows = [
        _pct_row("supervised", B1, "ft-b1", None, "v0", 10.0),
        _pct_row("supervised", B2, "ft-b2", None, "v0", 20.0),
        _pct_row("ssl", "ssl", "ft-s1", None, "v0", 4.0),
    ]
    with pytest.raises(ValueError, match="per-image volume_mm3 errors: the SSL rows do not name"):
        paired_image_errors(Table(rows), "volume_mm3")
    one = [r for r in rows if r["run_id"] != "ft-b2"]
    found = paired_image_errors(Table(one), "volume_mm3")
    assert (found.supervised.tolist(), found.ssl.tolist()) == ([10.0], [4.0])
