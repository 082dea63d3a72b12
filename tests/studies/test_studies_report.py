"""Reports collect each study's tables and figures into Markdown and HTML that reference real files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from inpaintssl.analysis import paper_tables
from inpaintssl.analysis.table import Table as ResultsTable
from inpaintssl.studies.grid import expand_study
from inpaintssl.studies.queue import NewRun, RunRecord, WorkerId, pid_alive
from inpaintssl.studies.report import write_report
from inpaintssl.studies.spec import StudySpec, load_spec
from inpaintssl.studies.status import STALE, study_status
from inpaintssl.studies.store import Measurement, StudyStore
from study_helpers import (
    clinical_results,
    dice_rows,
    pretext_results,
    scaling_results,
    tiny_spec,
    transfer_results,
)

EXAMPLES = Path(__file__).parents[2] / "examples" / "studies"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and values.get("src"):
            self.images.append(str(values["src"]))
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))


def _with_l2(results: ResultsTable) -> ResultsTable:
    l2 = [
        {
            "arm": "pretrain",
            "task": "context_restoration",
            "patch_size": k,
            "sampler": "random",
            "metric": "l2_norm",
            "value": 40.0 + k + i,
        }
        for k in (16, 32)
        for i in range(3)
    ]
    return ResultsTable([*results.rows, *l2])


@pytest.mark.parametrize(
    ("study", "results", "figures", "tables"),
    [
        (
            "pretext_design",
            _with_l2(pretext_results()),
            {"fig3_dice_context_prediction", "fig3_dice_context_restoration"},
            {"status", "dice", "table2_l2_norm", "table3_ranking"},
        ),
        ("transfer_design", transfer_results(), {"figA1_transfer"}, {"status", "dice"}),
        (
            "data_scaling",
            scaling_results(),
            {"fig5_scaling", "fig3_dice"},
            {"status", "dice", "power_law_fits", "labels_needed"},
        ),
        (
            "clinical",
            clinical_results(),
            {"fig6_percent_error", "fig7_per_image"},
            {"status", "dice", "clinical_agreement", "clinical_per_image"},
        ),
    ],
)
def test_each_study_report_links_its_tables_and_figures(
    tmp_path: Path, study: str, results: ResultsTable, figures: set[str], tables: set[str]
) -> None:
    extra = {}
    if study == "data_scaling":
        extra = {
            "unlabelled_fractions": [0.0, 1.0],
            "pretrain": {"data": {"unlabelled": [{"dataset": "mni152"}]}},
        }
    spec = StudySpec.model_validate({"study": study, "output": str(tmp_path / "study"), **extra})
    files = write_report(spec, output=tmp_path / "report", results=results)
    assert {p.stem for p in files.figures} >= figures
    assert {p.stem for p in files.tables} >= tables | {"results"}
    for path in (*files.figures, *files.tables):
        assert path.is_file() and path.stat().st_size > 0
    markdown = files.markdown.read_text()
    for name in figures:
        assert f"({name}.png)" in markdown
    parser = _Links()
    parser.feed(files.html.read_text())
    assert {Path(src).stem for src in parser.images} == {p.stem for p in files.figures}
    for target in [*parser.images, *parser.links]:
        assert (files.html.parent / target).is_file(), target


def test_parts_without_data_are_listed_not_fatal(tmp_path: Path) -> None:
    spec = StudySpec(study="pretext_design", output=tmp_path / "study")
    files = write_report(spec, output=tmp_path / "report", results=ResultsTable([]))
    skipped = dict(files.skipped)
    assert "table 3" in skipped and "needs supervised-baseline" in skipped["table 3"]
    assert "Not available yet" in files.markdown.read_text()
    assert files.figures == ()


@pytest.mark.parametrize("fractions", [[0.0, 1.0], [0.0]])
def test_a_report_whose_ssl_runs_saw_the_test_anatomy_says_so(tmp_path: Path, fractions: list[float]) -> None:
    spec = StudySpec.model_validate(
        {
            "study": "data_scaling",
            "output": str(tmp_path / "study"),
            "unlabelled_fractions": fractions,
            "pretrain": {"data": {"unlabelled": [{"dataset": "mni152"}]}},
        }
    )
    markdown = write_report(spec, output=tmp_path / "report", results=ResultsTable([])).markdown.read_text()
    # Only where the template's crossing slices are added to some arm's pretraining.
    assert ("seen the test anatomy" in markdown) == (max(fractions) > 0)


def test_a_ranking_over_several_baselines_names_each_strategys_baseline(tmp_path: Path) -> None:
    # A transfer-design grid over two learning rates trains a baseline per rate; the report ranks
    # each strategy against its own and says which that was.
    rows = []
    for lr in ("0.01", "0.001"):
        run = f"ft-supervised-{lr}"
        rows += dice_rows("supervised", f"supervised lr={lr}", 0.05, run_id=run, baseline_id=run)
        for acronym in ("FEF", "FBF"):
            transfer = {"schedule": "immediate", "second_lr": None, "lr": float(lr), "acronym": acronym}
            rows += dice_rows(
                "ssl", f"{acronym} lr={lr}", 0.05, run_id=f"ft-{acronym}-{lr}", baseline_id=run, **transfer
            )
    spec = StudySpec(study="transfer_design", output=tmp_path / "study")
    files = write_report(spec, output=tmp_path / "report", results=ResultsTable(rows))
    (ranking,) = [p for p in files.tables if p.name == "table3_ranking.csv"]
    with open(ranking, newline="") as handle:
        found = {row["strategy"]: row["baseline"] for row in csv.DictReader(handle)}
    assert found == {
        "FEF lr=0.01": "supervised lr=0.01",
        "FBF lr=0.01": "supervised lr=0.01",
        "FEF lr=0.001": "supervised lr=0.001",
        "FBF lr=0.001": "supervised lr=0.001",
    }
    assert (
        "| rank | tied_rank | strategy | baseline | p_value |"
        in (tmp_path / "report" / "table3_ranking.md").read_text()
    )


def test_a_scaling_grid_over_patch_sizes_reports_each_strategy(tmp_path: Path) -> None:
    # A data_scaling spec with a grid over patch sizes: at each amount of pretraining data two
    # strategies. Figure 5, its fits and labels needed keep them apart, and the report says so.
    rows = []
    for fraction, n in ((1.0, 40), (0.5, 20), (0.1, 4)):
        rows += dice_rows("supervised", "supervised", fraction, labelled_volumes=n)
        for share, pct in ((0.0, 100.0), (1.0, 200.0)):
            for k in (16, 32):
                name = f"+{share:.0%} unlabelled patch_size={k}"
                rows += dice_rows("ssl", name, fraction, pretrain_data_pct=pct, labelled_volumes=n)
    spec = StudySpec.model_validate(
        {
            "study": "data_scaling",
            "output": str(tmp_path / "study"),
            "unlabelled_fractions": [0.0, 1.0],
            "pretrain": {"data": {"unlabelled": [{"dataset": "mni152"}]}},
            "grid": {"pretrain.pretext.patch_size": [16, 32]},
        }
    )
    files = write_report(spec, output=tmp_path / "report", results=ResultsTable(rows))
    assert not files.skipped
    assert {p.name for p in files.figures} >= {"fig5_scaling.png", "fig5_scaling.pdf"}
    with open(tmp_path / "report" / "power_law_fits.csv", newline="") as handle:
        fits = list(csv.DictReader(handle))
    # One fit per label fraction and patch size, each named.
    assert sorted((row["label_fraction"], row["strategy"]) for row in fits) == sorted(
        (str(f), f"patch_size={k}") for f in (1.0, 0.5, 0.1) for k in (16, 32)
    )
    with open(tmp_path / "report" / "labels_needed.csv", newline="") as handle:
        arms = [row["arm"] for row in csv.DictReader(handle)]
    assert arms == ["supervised"] + [
        f"ssl, {pct}% pretraining data, patch_size={k}" for k in (16, 32) for pct in (100, 200)
    ]


# -- a recorded study: convergence, untested strategies, stale files ------------------------------
def _recorded_study(
    spec: StudySpec,
    *,
    stalled: frozenset[str] = frozenset(),
    failed_task: str | None = None,
    failed_ssl: tuple[str, float] | None = None,
) -> dict[str, str]:
    """Record every run of ``spec`` as a worker would, without training: each run converged but those
    of the arms/tasks in ``stalled``; the pretraining of ``failed_task`` fails (its SSL runs are then
    blocked), and so does the SSL run of ``failed_ssl`` ``(task, label fraction)``. Returns ``run id
    -> what it was`` (``<arm> <task> <fraction>``)."""
    plan = expand_study(spec)
    names = {
        job.id: f"{job.labels['arm']} {job.labels.get('task')} {job.labels.get('label_fraction')}"
        for job in plan
    }
    with StudyStore(spec.database_path()) as store:
        store.add_runs(
            [
                NewRun(job.id, job.kind, job.depends_on, job.config.model_dump(mode="json"), dict(job.labels))
                for job in plan
            ]
        )
        me = WorkerId.current()
        while isinstance(run := store.claim(me, max_attempts=1), RunRecord):
            task, arm = run.labels.get("task"), run.labels["arm"]
            if run.kind == "pretrain" and task == failed_task:
                store.fail(run.id, me, "RuntimeError: out of memory\nTraceback ...")
                continue
            if arm == "ssl" and (task, run.labels["label_fraction"]) == failed_ssl:
                store.fail(run.id, me, "RuntimeError: CUDA error\nTraceback ...")
                continue
            gain = 0.1 if arm == "ssl" else 0.0
            rows = [
                Measurement(f"v{i}", i, "image", "", "dice_mean", 0.5 + gain + 0.01 * i) for i in range(6)
            ]
            converged = not ({arm, task} & stalled)
            assert store.record(run.id, me, result={"converged": converged}, rows=rows)
    return names


def _tiny(tmp_path: Path, **changes: object) -> StudySpec:
    return StudySpec.model_validate(tiny_spec(tmp_path / "study", **changes))


def test_the_report_says_which_runs_did_not_converge(tmp_path: Path) -> None:
    # Standard: a comparison means something only between converged models. The report records
    # each run's verdict and says, per arm, how many runs were still unfinished networks.
    spec = _tiny(tmp_path)
    names = _recorded_study(spec, stalled=frozenset({"supervised"}))
    files = write_report(spec, output=tmp_path / "report")
    with open(tmp_path / "report" / "results.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        assert reader.fieldnames is not None and reader.fieldnames[-1] == "converged"
    verdicts = {row["run_id"]: row["converged"] for row in rows}
    assert verdicts == {run: "0" if names[run].startswith("supervised") else "1" for run in names}
    with open(tmp_path / "report" / "status.csv", newline="") as handle:
        status = list(csv.DictReader(handle))
    assert [(r["kind"], r["status"], r["runs"], r["not_converged"]) for r in status] == [
        ("finetune", "done", "6", "2"),
        ("pretrain", "done", "2", "0"),
    ]
    markdown = files.markdown.read_text()
    assert "2 of 8 finished runs did not converge" in markdown
    assert "pretrain 0 of 2; ssl 0 of 4; supervised 2 of 2" in markdown
    assert "comparisons involving unconverged runs are between unfinished networks" in markdown


def test_a_report_of_converged_runs_says_so(tmp_path: Path) -> None:
    spec = _tiny(tmp_path)
    _recorded_study(spec)
    markdown = write_report(spec, output=tmp_path / "report").markdown.read_text()
    assert "Convergence: all 8 finished runs with a verdict converged" in markdown
    assert "unfinished networks" not in markdown


def test_a_strategy_whose_runs_failed_is_listed_in_table3_with_why(tmp_path: Path) -> None:
    # The context_prediction pretraining failed, so its SSL runs never ran: Table 3 still lists
    # the strategy, unranked, and says which runs failed; Holm's family is the strategy tested.
    spec = _tiny(tmp_path)
    names = _recorded_study(spec, failed_task="context_prediction")
    write_report(spec, output=tmp_path / "report")
    with open(tmp_path / "report" / "table3_ranking.csv", newline="") as handle:
        table = {row["strategy"]: row for row in csv.DictReader(handle)}
    assert set(table) == {"context_prediction 4x4 poisson_disc", "context_restoration 4x4 poisson_disc"}
    tested, failed = (
        table["context_restoration 4x4 poisson_disc"],
        table["context_prediction 4x4 poisson_disc"],
    )
    assert tested["rank"] == "1" and tested["p_holm"] == tested["p_value"]  # a family of one
    assert failed["rank"] == "" and failed["pairs"] == "0" and failed["p_value"] == failed["p_holm"] == "nan"
    assert failed["baseline"] == "supervised"
    blocked = [run for run, name in names.items() if name.startswith("ssl context_prediction")]  # plan order
    assert failed["note"].startswith(
        f"not ranked: no SSL results (runs {', '.join(blocked)} failed (blocked: "
    )
    title = (tmp_path / "report" / "table3_ranking.md").read_text().splitlines()[0]
    assert "Holm-adjusted over the 1 ranked (tested) strategies only" in title


def test_a_strategy_ranked_without_a_failed_ssl_run_says_so_in_table3_and_the_notes(tmp_path: Path) -> None:
    # One of context_prediction's three SSL runs (1.0, 0.5, 0.25) failed: it is ranked on its 0.5
    # items alone, 6 of the 2 x 6 it was planned on. Its row said nothing of it, nor did the page.
    spec = _tiny(tmp_path, label_fractions=[1.0, 0.5, 0.25])
    names = _recorded_study(spec, failed_ssl=("context_prediction", 0.25))
    (failed,) = [run for run, name in names.items() if name == "ssl context_prediction 0.25"]
    files = write_report(spec, output=tmp_path / "report")
    with open(tmp_path / "report" / "table3_ranking.csv", newline="") as handle:
        table = {row["strategy"]: row for row in csv.DictReader(handle)}
    partial, whole = (
        table["context_prediction 4x4 poisson_disc"],
        table["context_restoration 4x4 poisson_disc"],
    )
    note = f"ranked on 6 of 12 planned items (no SSL results: run {failed} failed (RuntimeError: CUDA error))"
    assert partial["note"] == note and partial["pairs"] == "6"
    assert whole["note"] == "" and whole["pairs"] == "12"
    assert {partial["rank"], whole["rank"]} == {"1", "2"}  # both ranked, by p-value as before
    assert f"'context_prediction 4x4 poisson_disc' {note}" in files.markdown.read_text()
    assert "ranked without some of their planned SSL runs" in files.html.read_text()


def test_the_pages_incomplete_ranking_note_survives_a_reworded_table3_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page found these notes by the note's first words: a reworded note vanished from it
    # silently. It names the strategies the ranking was given as incomplete, whatever the words.
    monkeypatch.setattr(
        paper_tables,
        "_incomplete_note",
        lambda strategy, *, n_pairs, items: (
            "" if strategy is None else f"counted {n_pairs} items ({strategy.why})"
        ),
    )
    spec = _tiny(tmp_path, label_fractions=[1.0, 0.5, 0.25])
    names = _recorded_study(spec, failed_ssl=("context_prediction", 0.25))
    (failed,) = [run for run, name in names.items() if name == "ssl context_prediction 0.25"]
    markdown = write_report(spec, output=tmp_path / "report").markdown.read_text()
    why = f"run {failed} failed (RuntimeError: CUDA error)"
    note = f"'context_prediction 4x4 poisson_disc' counted 6 items ({why})"
    assert f"the ranking's note column): {note}." in markdown
    assert "context_restoration 4x4 poisson_disc' " not in markdown  # complete: not noted


def test_a_report_whose_runs_all_finished_has_no_incomplete_ranking_note(tmp_path: Path) -> None:
    spec = _tiny(tmp_path, label_fractions=[1.0, 0.5, 0.25])
    _recorded_study(spec)
    files = write_report(spec, output=tmp_path / "report")
    assert "ranked on" not in files.markdown.read_text()


def _status_csv(folder: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """``(kind, status) -> (runs, not_converged)`` of a report's ``status.csv``."""
    with open(folder / "status.csv", newline="") as handle:
        return {(r["kind"], r["status"]): (r["runs"], r["not_converged"]) for r in csv.DictReader(handle)}


def test_the_status_table_counts_planned_runs_that_no_database_records_yet(tmp_path: Path) -> None:
    # The runs of a label fraction added to the spec (or of another shard) are in no database yet:
    # counted from the database alone, status.csv read as a finished study.
    _recorded_study(_tiny(tmp_path))  # 1.0 and 0.5: 2 pretraining, 2 supervised + 4 SSL runs, all done
    spec = _tiny(tmp_path, label_fractions=[1.0, 0.5, 0.25])
    write_report(spec, output=tmp_path / "report")
    # 0.25 adds a supervised run and an SSL run per pretext task: 3 fine-tuning runs not started.
    expected = {
        ("finetune", "done"): ("6", "0"),
        ("finetune", "not started"): ("3", ""),
        ("pretrain", "done"): ("2", "0"),
    }
    assert _status_csv(tmp_path / "report") == expected
    counted = {
        (kind, status): str(n) for kind, c in study_status(spec).counts.items() for status, n in c.items()
    }
    assert counted == {key: runs for key, (runs, _) in expected.items()}  # as `experiment status` says


def test_the_status_table_counts_a_run_whose_worker_is_gone_as_stale(tmp_path: Path) -> None:
    # A killed driver's run stays "running" in the database; status.csv called it running, so a
    # dead study looked busy, where `experiment status` says stale (the next run reclaims it).
    spec = _tiny(tmp_path)
    plan = expand_study(spec)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = WorkerId(WorkerId.current().host, int(gone.stdout), "killed")
    assert not pid_alive(dead.pid)
    first = plan.pretrain_jobs()[0]
    with StudyStore(spec.database_path()) as store:
        store.add_runs(
            [
                NewRun(job.id, job.kind, job.depends_on, job.config.model_dump(mode="json"), dict(job.labels))
                for job in plan
            ]
        )
        assert store.mark_submitted([first.id], dead, max_attempts=2) == [first.id]
    write_report(spec, output=tmp_path / "report")
    assert _status_csv(tmp_path / "report") == {
        ("finetune", "pending"): ("6", ""),
        ("pretrain", "pending"): ("1", ""),
        ("pretrain", STALE): ("1", ""),
    }


def test_table3_waits_for_label_limited_results_rather_than_ranking_the_100_percent_ones(
    tmp_path: Path,
) -> None:
    # Only the 100%-label runs have finished. Table 3 pools the label-limited fractions (sec.
    # 2.5.3): it ranked both strategies on the 100% items instead, and counted them against the
    # 50%/25% items planned.
    _recorded_study(_tiny(tmp_path, label_fractions=[1.0]))
    spec = _tiny(tmp_path, label_fractions=[1.0, 0.5, 0.25])
    files = write_report(spec, output=tmp_path / "report")
    assert not (tmp_path / "report" / "table3_ranking.csv").exists()
    why = dict(files.skipped)["table 3"]
    assert "at the label fractions it pools (0.5, 0.25)" in why
    for task in ("context_prediction", "context_restoration"):
        assert f"'{task} 4x4 poisson_disc': not ranked: no label-limited results yet" in why
    assert "its results, at label fraction 1, are not pooled" in why


def test_table3_ranks_the_strategy_with_label_limited_results_and_lists_the_other(tmp_path: Path) -> None:
    # context_restoration's 50% run has finished, context_prediction's has not: the first is ranked
    # on its 50% items, the second listed unranked, though both have 100% results.
    spec = _tiny(tmp_path)
    names = _recorded_study(spec, failed_ssl=("context_prediction", 0.5))
    write_report(spec, output=tmp_path / "report")
    with open(tmp_path / "report" / "table3_ranking.csv", newline="") as handle:
        table = {row["strategy"]: row for row in csv.DictReader(handle)}
    ranked, waiting = (
        table["context_restoration 4x4 poisson_disc"],
        table["context_prediction 4x4 poisson_disc"],
    )
    # _recorded_study scores item i 0.5 + 0.01 i (supervised) and 0.6 + 0.01 i (SSL), 6 items at 0.5.
    ssl, supervised = 0.6 + 0.01 * np.arange(6), 0.5 + 0.01 * np.arange(6)
    expected = stats.wilcoxon(ssl, supervised, alternative="greater").pvalue
    assert ranked["rank"] == "1" and ranked["pairs"] == "6"
    assert float(ranked["p_value"]) == pytest.approx(expected)
    (failed,) = [run for run, name in names.items() if name == "ssl context_prediction 0.5"]
    assert waiting["rank"] == "" and waiting["pairs"] == "0" and waiting["baseline"] == "supervised"
    why = f"run {failed} failed (RuntimeError: CUDA error)"
    assert waiting["note"].startswith(f"not ranked: no label-limited results yet (none at 0.5; {why}")
    title = (tmp_path / "report" / "table3_ranking.md").read_text().splitlines()[0]
    assert "pooled over label fractions 0.5;" in title


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_table2_of_the_example_specs_keeps_a_row_per_task_and_patch_size(path: Path) -> None:
    # Table 2 has a row per pretraining setting; the example specs' grids vary nothing but the
    # pretext task, patch size and sampler (data_scaling: the unlabelled amount), so their rows are
    # the ones they always had, with an empty setting.
    spec = load_spec(path)
    rows = [
        {**job.labels, "metric": "l2_norm", "value": float(i)}
        for job in expand_study(spec).pretrain_jobs()
        for i in range(3)
    ]
    table = paper_tables.table2_l2_norm(ResultsTable(rows))
    keys = {(row["task"], row["patch_size"]) for row in rows}
    if spec.study == "data_scaling":  # a pretraining run per amount of unlabelled data: a row each
        strategies = {row["strategy"] for row in rows}
        assert len(table) == len(strategies) > 1 and set(table.cells("setting")) == strategies
    else:
        assert len(table) == len(keys) and set(table.cells("setting")) == {None}
        assert {(r["pretext_task"], r["patch_size"]) for r in table} == keys


def test_a_narrowed_report_removes_the_files_it_no_longer_writes(tmp_path: Path) -> None:
    results = _with_l2(pretext_results())
    spec = StudySpec(study="pretext_design", output=tmp_path / "study")
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")  # a file of the user's: never the report's to remove
    first = write_report(spec, output=folder, results=results)
    stale = folder / "fig3_dice_context_prediction.png"
    assert stale.is_file() and first.removed == ()
    narrowed = results.where(lambda row: row.get("task") != "context_prediction")
    second = write_report(spec, output=folder, results=narrowed)
    assert {p.name for p in second.removed} == {
        "fig3_dice_context_prediction.png",
        "fig3_dice_context_prediction.pdf",
    }
    assert not stale.exists() and (folder / "fig3_dice_context_restoration.png").is_file()
    assert (folder / "notes.txt").read_text() == "mine"
    kept = {p.name for p in folder.iterdir()}
    assert kept == {p.name for p in (second.markdown, second.html, *second.tables, *second.figures)} | {
        "notes.txt",
        "report_manifest.json",
    }


def test_a_manifest_never_leads_the_report_outside_its_own_files(tmp_path: Path) -> None:
    spec = StudySpec(study="pretext_design", output=tmp_path / "study")
    folder, outside = tmp_path / "report", tmp_path / "precious.txt"
    outside.write_text("keep")
    write_report(spec, output=folder, results=pretext_results())
    (folder / "report_manifest.json").write_text(json.dumps({"files": ["../precious.txt", str(outside)]}))
    assert write_report(spec, output=folder, results=pretext_results()).removed == ()
    assert outside.read_text() == "keep"
    (folder / "report_manifest.json").write_text("{not json")
    with pytest.warns(UserWarning, match="report_manifest.json cannot be read"):
        write_report(spec, output=folder, results=pretext_results())


def test_a_report_over_list_valued_grid_values_writes_results_csv_and_its_pages(tmp_path: Path) -> None:
    # A grid over the fine-tuning image size and the unlabelled datasets labels runs with lists:
    # results.csv must hold them as JSON (not crash, nor print an image size as "+112.0 +112.0"),
    # and the report must still be written after it.
    sizes = {0.5: [112, 112], 0.1: [128, 128]}
    rows = [
        {**row, "image_size": sizes[row["label_fraction"]], "unlabelled": [{"dataset": "mni152"}]}
        for fraction in sizes
        for arm, strategy in (("supervised", "supervised"), ("ssl", "FEF lr=0.01"))
        for row in dice_rows(arm, strategy, fraction, lr=0.01, acronym="FEF")
    ]
    spec = StudySpec(study="transfer_design", output=tmp_path / "study")
    files = write_report(spec, output=tmp_path / "report", results=ResultsTable(rows))
    with open(tmp_path / "report" / "results.csv", newline="") as handle:
        read = list(csv.DictReader(handle))
    assert len(read) == len(rows)
    assert {(r["label_fraction"], r["image_size"]) for r in read} == {
        ("0.5", "[112, 112]"),
        ("0.1", "[128, 128]"),
    }
    assert {r["unlabelled"] for r in read} == {json.dumps([{"dataset": "mni152"}])}
    assert files.markdown.is_file() and (tmp_path / "report" / "report_manifest.json").is_file()
    # The intro's Markdown link is a link on the HTML page.
    parser = _Links()
    parser.feed(files.html.read_text())
    assert "results.csv" in parser.links
