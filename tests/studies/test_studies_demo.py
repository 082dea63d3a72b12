"""The demo's quick version end to end through the console script, with every report artefact checked."""

from __future__ import annotations

import csv
import json
import re
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from inpaintssl.analysis.summaries import label_fraction_summary
from inpaintssl.analysis.table import Table
from inpaintssl.cli import main
from inpaintssl.config import PretrainConfig
from inpaintssl.studies.demo import (
    DemoSettings,
    RunTiming,
    _summary,
    _time_line,
    demo_spec,
    format_table,
    run_demo,
    settings_for,
)
from inpaintssl.studies.grid import expand_study
from inpaintssl.studies.queue import RunRecord
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.summary import WorkerReport


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


# A demo small enough to plan in a blink: one label fraction, one seed, so three runs (pretraining,
# SSL and supervised fine-tuning). "--quick" gets a U-Net of depth 2, the full demo one of depth 3.
TINY = DemoSettings(
    image_size=(32, 32),
    depth=2,
    base_width=4,
    pretrain_epochs=2,
    pretrain_steps_per_epoch=2,
    finetune_max_epochs=4,
    finetune_steps_per_epoch=2,
    finetune_patience=2,
    pretrain_patience=1,
    fractions=(1.0,),
    seeds={},
    batch_size=4,
)


@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tiny settings in place of the demo's; workers that train nothing, the calls they got."""
    monkeypatch.setattr(
        "inpaintssl.studies.demo.settings_for", lambda *, quick: TINY if quick else replace(TINY, depth=3)
    )
    calls: list[str] = []

    def worker(spec: Any, **kwargs: Any) -> WorkerReport:
        calls.append(str(spec.output_dir()))
        return WorkerReport("stub")

    monkeypatch.setattr("inpaintssl.studies.runner.run_worker", worker)
    return calls


def _earlier_demo(out: Path, *, quick: bool, seed: int) -> None:
    """A demo stopped before its first run ended: the runner has recorded its spec and its runs."""
    with pytest.raises(RuntimeError):  # no run finished
        run_demo(output=out, quick=quick, seed=seed, quiet=True)
    assert (out / "runs" / "spec.json").is_file() and (out / "runs" / "study.sqlite").is_file()


@pytest.mark.parametrize(
    ("first", "again", "options", "difference"),
    [
        # `inpaintssl demo --quick`, then `inpaintssl demo`, both into the default folder.
        (
            ["--quick"],
            [],
            "recorded --quick --seed 0, now --seed 0",
            "model.params.depth (recorded 2, now 3)",
        ),
        (["--seed", "0"], ["--seed", "1"], "recorded --seed 0, now --seed 1", "run.seed (recorded 0, now 1)"),
    ],
)
def test_a_demo_with_other_settings_is_refused_in_one_line_before_any_run_starts(
    first: list[str],
    again: list[str],
    options: str,
    difference: str,
    tmp_path: Path,
    tiny_demo: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "demo-report"
    _earlier_demo(out, quick="--quick" in first, seed=int(first[-1]) if "--seed" in first else 0)
    tiny_demo.clear()
    capsys.readouterr()
    assert main(["demo", *again, "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert tiny_demo == []  # no worker started: nothing trained
    assert captured.out == ""  # not even the plan: only why it was refused
    assert captured.err.count("\n") == 1, captured.err
    err = captured.err
    assert err.startswith(f"inpaintssl demo: error: --output {out} holds a demo made with other settings")
    assert options in err and difference in err
    # What to do: another folder, a fresh start, or the options that resume the recorded demo.
    assert "give another --output" in err and f"delete {out} to start over" in err
    assert f"rerun with {options.split(',')[0].removeprefix('recorded ')} to resume it" in err


@pytest.mark.parametrize(("lr", "refused"), [(0.001, True), (0.01, False)], ids=["other-rate", "recipe-rate"])
def test_a_demo_spec_with_other_settings_is_refused_by_the_study_runner_too(
    tmp_path: Path, tiny_demo: list[str], lr: float, refused: bool
) -> None:
    # `experiment run` on a demo spec whose settings changed: the runs found the earlier runs'
    # folders (named by arm, fraction and seed) and each failed to resume, on every call. Written
    # out at the budget recipe's own rate (0.01), the setting trains as null does, and resumes.
    from inpaintssl.config import ConfigError
    from inpaintssl.studies import run_study

    out = tmp_path / "demo-report"
    _earlier_demo(out, quick=True, seed=0)
    tiny_demo.clear()
    fields = json.loads((out / "runs" / "spec.json").read_text())
    fields["finetune"]["optim"]["lr"] = lr
    changed = StudySpec.model_validate(fields)
    if refused:
        expected = (
            f"{out} holds a demo study run with other settings ({out / 'runs' / 'spec.json'}): "
            "finetune.optim.lr (recorded null, now 0.001); a demo study names its run folders"
        )
        with pytest.raises(ConfigError, match=re.escape(expected)):
            run_study(changed, quiet=True)
        assert tiny_demo == []  # refused before any worker started
    else:
        run_study(changed, quiet=True)
        assert tiny_demo == [str(out)]


def test_a_demo_with_its_own_settings_resumes_its_folder_even_moved(
    tmp_path: Path, tiny_demo: list[str]
) -> None:
    first = tmp_path / "demo-report"
    _earlier_demo(first, quick=True, seed=3)
    moved = tmp_path / "moved"
    first.rename(moved)
    tiny_demo.clear()
    with pytest.raises(RuntimeError, match="did not finish"):  # the stub workers train nothing
        run_demo(output=moved, quick=True, seed=3, quiet=True)
    assert tiny_demo == [str(moved)]  # the runner got to work on the earlier demo's folder


def test_failed_runs_end_the_demo_with_one_line_each_and_their_tracebacks_in_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("inpaintssl.studies.demo.settings_for", lambda *, quick: TINY)

    def execute(job: Any, **kwargs: Any) -> Any:
        raise ValueError("the first line of the error\nits second line")

    monkeypatch.setattr("inpaintssl.studies.runner.execute_job", execute)
    out = tmp_path / "demo-report"
    assert main(["demo", "--quiet", "--output", str(out)]) == 1  # as `experiment run` with failed runs
    err = capsys.readouterr().err
    plan = expand_study(demo_spec(TINY, output=out))
    (pretrain,) = (job for job in plan if job.kind == "pretrain")
    finetune = list(plan.finetune_jobs())
    log = out / "runs" / "failed_runs.txt"
    # A headline, then one line per run: the pretraining run and the supervised one raised, the
    # SSL run waited for the failed pretraining run.
    lines = err.splitlines()
    assert len(lines) == 1 + 3, err
    assert lines[0].startswith("inpaintssl demo: error: 3 of 3 demo runs failed")
    assert f"tracebacks included, is in {log}" in lines[0]
    assert (
        f"  {pretrain.id} ({pretrain.config.run.output_dir}): ValueError: the first line of the error"
        in lines
    )
    for job in finetune:
        line = next(x for x in lines if x.startswith(f"  {job.id} ({job.config.run.output_dir}): "))
        if job.labels["arm"] == "ssl":
            assert f"blocked: the pretraining run {pretrain.id}" in line
        else:
            assert line.endswith(": ValueError: the first line of the error")
    assert "Traceback" not in err and "its second line" not in err
    # The file holds each run's whole error, under its id and folder.
    sections = {
        section.split(" ", 1)[0]: section for section in log.read_text().split("\n\n") if section.strip()
    }
    assert sorted(sections) == sorted(job.id for job in (pretrain, *finetune))
    for job in (pretrain, *finetune):
        assert sections[job.id].startswith(f"{job.id} ({job.config.run.output_dir}):\n")
        raised = job.labels.get("arm") != "ssl"
        assert ("Traceback (most recent call last)" in sections[job.id]) == raised
        assert ("its second line" in sections[job.id]) == raised


@pytest.mark.parametrize(
    ("argv", "folder"),
    [
        (["demo"], "demo-report"),
        (["demo", "--quick"], "demo-report-quick"),
        (["demo", "--quick", "--output", "mine"], "mine"),
    ],
)
def test_the_quick_demo_has_a_default_folder_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], folder: str
) -> None:
    # `inpaintssl demo --quick` then `inpaintssl demo`, the README's order, shared demo-report: the
    # full demo was refused there (another demo's settings). The folders are make's.
    told: dict[str, Any] = {}
    monkeypatch.setattr("inpaintssl.studies.demo.run_demo", lambda **options: told.update(options))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    assert told["output"] == Path(folder) and told["quick"] == ("--quick" in argv)
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    if "--output" not in argv:
        assert f"demo {'--quick ' if told['quick'] else ''}--output {folder}\n" in makefile
