"""The demo's quick version end to end through the console script, with every report artefact checked."""

from __future__ import annotations

import csv
import re
import stat
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from inpaintssl.analysis.summaries import label_fraction_summary
from inpaintssl.analysis.table import Table
from inpaintssl.config import PretrainConfig
from inpaintssl.studies.demo import RunTiming, _summary, _time_line, demo_spec, format_table, settings_for
from inpaintssl.studies.queue import RunRecord


def _png_ok(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 50, path


@pytest.mark.slow
def test_quick_demo_writes_every_artefact(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "inpaintssl", "demo", "--quick", "--quiet", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "p (SSL>sup)" in done.stdout and "Caveat" in done.stdout
    assert "convergence:" in done.stdout and "time: pretraining steps" in done.stdout
    assert "quick: a smoke test of the pipeline, not a result" in done.stdout
    for name in (
        "corruption_panel.png",
        "dice_vs_label_fraction.png",
        "example_segmentations.png",
        "learning_curves.png",
    ):
        _png_ok(out / name)
    assert (out / "dice_vs_label_fraction.pdf").read_bytes()[:4] == b"%PDF"
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    settings = settings_for(quick=True)
    runs = {(r["arm"], r["label_fraction"], r["subset_seed"]) for r in rows}
    assert len(runs) == sum(2 * settings.seeds_for(f) for f in settings.fractions)
    assert {r["class_name"] for r in rows} == {"csf", "gm", "wm", "mean"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    with open(out / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert [float(s["label_fraction"]) for s in summary] == list(settings.fractions)
    assert list(summary[0]) == [
        "label_fraction",
        *[f"{arm}_{name}" for name in ("csf", "gm", "wm", "mean") for arm in ("ssl", "supervised")],
        "pairs",
        "ssl_converged",
        "supervised_converged",
        "comparison",
        "p_value",
        "p_holm",
        "seed_differences",
    ]
    with open(out / "runs.csv", newline="") as handle:
        run_rows = list(csv.DictReader(handle))
    assert run_rows[0]["run"] == "pretrain" and len(run_rows) == 1 + len(runs)
    assert {r["converged"] for r in run_rows} <= {"0", "1"}
    by_name = {r["run"]: r for r in run_rows}
    for s in summary:
        # Each row counts the converged runs of each arm at its fraction, as runs.csv says.
        pct = f"_{100 * float(s['label_fraction']):g}pct_"
        for arm in ("ssl", "supervised"):
            flags = [r["converged"] for name, r in by_name.items() if name.startswith(arm + pct)]
            assert s[f"{arm}_converged"] == f"{flags.count('1')} of {len(flags)}"
        every = all(
            s[f"{arm}_converged"].split(" of ")[0] == s[f"{arm}_converged"].split(" of ")[1]
            for arm in ("ssl", "supervised")
        )
        assert s["comparison"] == ("converged runs" if every else "unconverged runs")
        line = next(
            x for x in done.stdout.splitlines() if x.startswith(f"| {100 * float(s['label_fraction']):g}% |")
        )
        assert (line.count("n/a (not converged)") == 2) == (not every), line
    for r in run_rows:
        # The kept weights are those of the lowest validation loss in the run's metrics.csv.
        with open(out / "runs" / r["run"] / "metrics.csv", newline="") as handle:
            metrics = list(csv.DictReader(handle))
        losses = [float(m["val_loss"]) for m in metrics]
        kept = losses.index(min(losses))
        assert int(r["kept_epoch"]) == kept + 1 and int(r["epochs"]) == len(metrics)
        if r["run"] != "pretrain":
            assert float(r["kept_val_dice"]) == pytest.approx(float(metrics[kept]["val_dice"]))
    for r in run_rows:
        # Every run's time splits into steps, validation and the rest, none negative.
        assert 0 < float(r["train_seconds"]) <= float(r["seconds"]) + 1e-6
        assert float(r["validation_seconds"]) >= 0
    assert len(summary[0]["seed_differences"].split()) == 3  # three label-subset seeds at 5 %
    report = (out / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (out / link).is_file(), link
    assert (out / "report.html").read_text().count("<img") == 4
    assert (out / "runs" / "pretrain" / "checkpoints" / "best" / "model.safetensors").is_file()
    # The report folder holds the files the demo always wrote, and the study's state sits in runs/.
    assert sorted(p.name for p in out.iterdir()) == [
        "corruption_panel.png",
        "dice_vs_label_fraction.pdf",
        "dice_vs_label_fraction.png",
        "example_segmentations.png",
        "learning_curves.png",
        "report.html",
        "report.md",
        "results.csv",
        "runs",
        "runs.csv",
        "summary.csv",
    ]
    assert {"study.sqlite", "spec.json"} <= {p.name for p in (out / "runs").iterdir()}
    probe = tmp_path / "probe.txt"
    probe.write_text("a plain write under the same umask")
    assert stat.S_IMODE((out / "report.md").stat().st_mode) == stat.S_IMODE(probe.stat().st_mode)


def test_summary_pairs_slices_and_reports_per_seed_differences() -> None:
    rows = []
    for seed in (0, 1):
        for i in range(6):
            for arm, bonus in (("ssl", 0.1 * (seed + 1)), ("supervised", 0.0)):
                item = {"arm": arm, "strategy": arm, "label_fraction": 0.05, "subset_seed": seed}
                item |= {"level": "image", "volume_id": f"s{i}", "slice_index": 0}
                rows.append(
                    {**item, "class_name": "", "metric": "dice_mean", "value": 0.5 + 0.01 * i + bonus}
                )
                rows.append({**item, "class_name": "gm", "metric": "dice", "value": 0.4 + bonus})
    summary = label_fraction_summary(Table(rows), class_names=["gm"])
    (entry,) = summary.rows
    # Six test slices, each one observation whatever the number of subset seeds (two here).
    assert entry["pairs"] == 6
    assert entry["seed_differences"] == pytest.approx([0.1, 0.2])
    assert entry["ssl_gm"] == pytest.approx(0.55) and entry["supervised_gm"] == pytest.approx(0.4)
    # Every SSL slice (mean of its two seeds) beats its supervised twin: exact p = 2**-6, not the
    # 2**-12 that pairing (slice, seed) would claim.
    assert entry["p_value"] == pytest.approx(2.0**-6)
    table = format_table(summary, class_names=["gm"])
    assert "| 5% | 0.550 / 0.400 |" in table and "+0.100, +0.200" in table


def test_the_console_table_gives_each_fraction_its_holm_adjusted_p_value() -> None:
    # Two fractions: SSL wins on all six slices at 5 % (p = 2**-6) and on four of six at 50 %.
    rows = []
    for fraction, wins in ((0.05, 6), (0.5, 4)):
        for i in range(6):
            for arm in ("ssl", "supervised"):
                bonus = (0.01 * (i + 1) if i < wins else -0.02 * (i + 1)) if arm == "ssl" else 0.0
                item = {"arm": arm, "strategy": arm, "label_fraction": fraction, "subset_seed": 0}
                item |= {"level": "image", "volume_id": f"s{i}", "slice_index": 0, "class_name": ""}
                rows.append({**item, "metric": "dice_mean", "value": 0.5 + bonus})
    summary = label_fraction_summary(Table(rows), class_names=[])
    p_small, p_large = (entry["p_value"] for entry in summary)
    assert p_small == pytest.approx(2.0**-6) and p_large > p_small
    # Holm over two tests, by hand: the smaller p doubled, the larger kept (never below the first).
    holm = [min(1.0, 2 * p_small), max(min(1.0, 2 * p_small), p_large)]
    lines = format_table(summary, class_names=[]).splitlines()
    assert lines[0].split(" | ")[2:4] == ["p (SSL>sup)", "p Holm"]
    for line, expected in zip(lines[2:], holm):
        assert line.split(" | ")[3] == f"{expected:.3g}"


def _timing(history: list[dict[str, object]], *, best_epoch: int, labels: dict[str, object]) -> RunTiming:
    result = {"run_dir": "/x/runs/ssl_5pct_seed0", "history": history, "converged": False}
    result |= {"best_epoch": best_epoch, "seconds": 3.0}
    record = RunRecord(
        id="ft-1",
        kind="finetune",
        depends_on=None,
        config={},
        labels=labels,
        status="done",
        worker=None,
        heartbeat=None,
        started=None,
        finished=None,
        attempts=1,
        failures=0,
        result=result,
        error=None,
    )
    return RunTiming.of(record)


def test_runs_csv_gives_the_kept_weights_epoch_from_one_and_their_validation_dice() -> None:
    # Validation loss lowest at the third epoch; the validation Dice peaks later, at the fifth.
    losses = [1.0, 0.8, 0.6, 0.7, 0.65]
    dice = [0.30, 0.40, 0.45, 0.44, 0.50]
    history: list[dict[str, object]] = [
        {"epoch": i, "val_loss": v, "val_dice": d, "train_seconds": 0.1, "seconds": 0.2}
        for i, (v, d) in enumerate(zip(losses, dice))
    ]
    kept = losses.index(min(losses))  # the trainer keeps the lowest validation loss (0-based: 2)
    row = _timing(history, best_epoch=kept, labels={"arm": "ssl", "label_fraction": 0.05}).row()
    assert row["epochs"] == 5 and row["kept_epoch"] == 3  # "epoch 3 of 5", as the console counts
    assert row["kept_val_dice"] == pytest.approx(0.45)  # not the best Dice of any epoch (0.50)
    assert "best_epoch" not in row and "best_val_dice" not in row
    # Kept at the last epoch: kept_epoch equals epochs.
    assert _timing(history[:3], best_epoch=2, labels={}).row()["kept_epoch"] == 3


def test_a_run_without_validation_dice_has_none_for_its_kept_dice() -> None:
    history: list[dict[str, object]] = [
        {"epoch": i, "val_loss": v, "train_seconds": 0.1, "seconds": 0.2} for i, v in enumerate([9.0, 8.0])
    ]
    assert _timing(history, best_epoch=1, labels={}).row()["kept_val_dice"] is None


def test_the_demo_summary_takes_each_runs_verdict_from_its_labels() -> None:
    rows = []
    for i in range(6):
        for arm in ("ssl", "supervised"):
            item = {"arm": arm, "strategy": arm, "label_fraction": 0.25, "subset_seed": 0}
            item |= {"level": "image", "volume_id": f"s{i}", "slice_index": 0, "class_name": ""}
            rows.append(
                {**item, "metric": "dice_mean", "value": 0.5 + (0.01 * (i + 1) if arm == "ssl" else 0.0)}
            )
    history: list[dict[str, object]] = [{"epoch": 0, "val_loss": 1.0, "train_seconds": 0.1, "seconds": 0.2}]
    runs = [
        _timing(history, best_epoch=0, labels={}),  # pretraining: no arm
        _timing(history, best_epoch=0, labels={"arm": "ssl", "label_fraction": 0.25, "subset_seed": 0}),
        _timing(
            history, best_epoch=0, labels={"arm": "supervised", "label_fraction": 0.25, "subset_seed": 0}
        ),
    ]
    (entry,) = _summary(Table(rows), runs, class_names=[]).rows
    assert (entry["ssl_converged"], entry["supervised_converged"]) == ("0 of 1", "0 of 1")
    assert entry["comparison"] == "unconverged runs" and entry["p_value"] == pytest.approx(2.0**-6)


def test_the_console_withholds_the_p_values_of_unconverged_comparisons() -> None:
    rows = []
    for fraction in (0.05, 0.5):
        for i in range(6):
            for arm in ("ssl", "supervised"):
                item = {"arm": arm, "strategy": arm, "label_fraction": fraction, "subset_seed": 0}
                item |= {"level": "image", "volume_id": f"s{i}", "slice_index": 0, "class_name": ""}
                bonus = 0.01 * (i + 1) if arm == "ssl" else 0.0
                rows.append({**item, "metric": "dice_mean", "value": 0.5 + bonus})
    verdicts = {
        (0.05, "ssl"): False,
        (0.05, "supervised"): True,
        (0.5, "ssl"): True,
        (0.5, "supervised"): True,
    }
    runs = Table([{"arm": a, "label_fraction": f, "converged": c} for (f, a), c in verdicts.items()])
    summary = label_fraction_summary(Table(rows), class_names=[], runs=runs)
    lines = format_table(summary, class_names=[]).splitlines()
    assert lines[0].split(" | ")[2:5] == ["converged SSL / sup", "p (SSL>sup)", "p Holm"]
    small, large = (line.split(" | ") for line in lines[2:])
    # 5 %: one SSL run still improving, so no p-value; 50 %: every run converged, p = 2**-6 and
    # Holm over the two fractions' equal p-values doubles it.
    assert small[2:5] == ["0 of 1 / 1 of 1", "n/a (not converged)", "n/a (not converged)"]
    assert large[2:5] == ["1 of 1 / 1 of 1", f"{2.0**-6:.3g} (n=6)", f"{2.0**-5:.3g}"]


@pytest.mark.parametrize("quick", [True, False])
def test_each_stage_can_stop_early_and_the_settings_line_states_the_patience_it_runs(quick: bool) -> None:
    settings = settings_for(quick=quick)
    spec = demo_spec(settings, output="demo-report")
    pretrain, finetune = spec.pretrain, spec.finetune
    # Early stopping can end a run only when its patience is below the epoch budget.
    assert pretrain.early_stopping.patience < pretrain.optim.max_epochs
    assert finetune.early_stopping.patience < finetune.optim.max_epochs
    text = settings.describe()
    pretraining, finetuning = text.split("; fine-tuning:")
    assert f"early stopping patience {pretrain.early_stopping.patience} " in pretraining
    assert f"early stopping patience {finetune.early_stopping.patience} " in finetuning
    assert f"up to {pretrain.optim.max_epochs} epochs" in pretraining


def test_the_full_demo_keeps_the_librarys_pretraining_stopping_rule() -> None:
    # The full demo's runs (and their ids, so finished runs are reused) are unchanged.
    spec = demo_spec(settings_for(quick=False), output="demo-report")
    assert spec.pretrain.early_stopping == PretrainConfig().early_stopping
    assert (spec.finetune.early_stopping.patience, spec.finetune.optim.max_epochs) == (10, 20)


def test_the_time_line_counts_pretraining_by_the_runs_arm_not_its_folder() -> None:
    # A demo study with a grid gives its second pretraining run the folder "pretrain_pt-<id>": by
    # the folder's name its 30 s of steps were counted as fine-tuning.
    def timing(name: str, arm: str, train_seconds: float) -> RunTiming:
        row = {"epoch": 0, "train_seconds": train_seconds, "seconds": train_seconds + 1.0}
        return RunTiming(name, [row], True, 0, train_seconds + 2.0, {"arm": arm})

    runs = [
        timing("pretrain", "pretrain", 20.0),
        timing("pretrain_pt-0123456789abcdef", "pretrain", 30.0),
        timing("ssl_10pct_seed0", "ssl", 7.0),
    ]
    line = _time_line(runs, total=100.0)
    assert "pretraining steps 50 s (50%)" in line
    assert "fine-tuning steps 7 s (7%)" in line
