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
from inpaintssl.studies.demo import format_table, settings_for


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
        "p_value",
        "p_holm",
        "seed_differences",
    ]
    with open(out / "runs.csv", newline="") as handle:
        run_rows = list(csv.DictReader(handle))
    assert run_rows[0]["run"] == "pretrain" and len(run_rows) == 1 + len(runs)
    assert {r["converged"] for r in run_rows} <= {"0", "1"}
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
