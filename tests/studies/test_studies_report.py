"""Reports collect each study's tables and figures into Markdown and HTML that reference real files."""

from __future__ import annotations

import csv
from html.parser import HTMLParser
from pathlib import Path

import pytest

from inpaintssl.analysis.table import Table as ResultsTable
from inpaintssl.studies.report import write_report
from inpaintssl.studies.spec import StudySpec
from study_helpers import clinical_results, dice_rows, pretext_results, scaling_results, transfer_results


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
        "| rank | strategy | baseline | p_value |" in (tmp_path / "report" / "table3_ranking.md").read_text()
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
