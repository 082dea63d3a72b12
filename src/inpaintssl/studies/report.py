"""A study's report: its tables (CSV + Markdown) and figures (PNG + PDF) in Markdown and HTML pages.

What goes in depends on the study (see :mod:`inpaintssl.studies.runner`): every report has
the run status and (but the demo's) the Dice table; ``pretext_design`` adds Table 2, Table 3 and
Figures 3/4 (one per pretext task); ``transfer_design`` Figure A1 and the strategy ranking;
``data_scaling`` Figure 5, its power-law fits and the labels-needed estimate; ``clinical`` Figures
6 and 7, the agreement table and the per-image Wilcoxon test; ``demo`` the SSL-vs-supervised
summary, the runs and their learning curves, a corruption panel and example segmentations
(:mod:`inpaintssl.studies.demo`). A part that the results cannot support yet (an unfinished study)
is listed with the reason instead of failing the report. The pages are rendered and written,
atomically, by :mod:`inpaintssl.analysis.pages`.

Example:
    >>> import tempfile, pathlib
    >>> from inpaintssl.studies.spec import StudySpec
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> files = write_report(StudySpec(study="clinical", output=out), output=out / "report")
    >>> files.markdown.name, files.html.name
    ('report.md', 'report.html')
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inpaintssl.analysis.clinical import agreement_table, per_image_comparison_table
from inpaintssl.analysis.figures import (
    plot_dice_vs_label_fraction,
    plot_dice_vs_pretraining_data,
    plot_percent_error_bars,
    plot_ssl_vs_supervised,
    plot_transfer_boxplots,
)
from inpaintssl.analysis.pages import ReportParts, write_pages
from inpaintssl.analysis.paper_tables import (
    dice_table,
    labels_needed_table,
    power_law_table,
    table2_l2_norm,
    table3_ranking,
)
from inpaintssl.analysis.summaries import with_mean_class
from inpaintssl.analysis.table import Table
from inpaintssl.studies.results import load_results, load_runs
from inpaintssl.studies.spec import StudySpec

__all__ = ["ReportFiles", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """The files of a report.

    Attributes:
        markdown: ``report.md``.
        html: ``report.html``.
        tables: CSV and Markdown files of every table.
        figures: PNG and PDF files of every figure.
        skipped: ``(part, reason)`` of parts the results could not support.
    """

    markdown: Path
    html: Path
    tables: tuple[Path, ...] = ()
    figures: tuple[Path, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def _status_table(spec: StudySpec) -> Table:
    counts: dict[tuple[str, str], int] = {}
    for run in load_runs(spec).values():
        counts[(run.kind, run.status)] = counts.get((run.kind, run.status), 0) + 1
    return Table(
        tuple((kind, status, n) for (kind, status), n in sorted(counts.items())),
        name="status",
        title="Runs by kind and status",
        columns=("kind", "status", "runs"),
    )


def _study_parts(spec: StudySpec, results: Table, parts: ReportParts) -> None:
    study = spec.study
    if study == "pretext_design":
        parts.table("table 2", lambda: table2_l2_norm(results))
        parts.table("table 3", lambda: table3_ranking(results))
        for task in [t for t in results.select(arm="ssl").unique("task") if t is not None]:
            parts.figure(
                f"fig3_dice_{task}",
                f"Figure 3/4: Dice vs label fraction ({task})",
                functools.partial(plot_dice_vs_label_fraction, results, task=str(task)),
            )
    elif study == "transfer_design":
        parts.figure(
            "figA1_transfer",
            "Figure A1: Dice per test item by transfer strategy and learning rates",
            lambda p: plot_transfer_boxplots(results, p),
        )
        parts.table("strategy ranking", lambda: table3_ranking(results))
    elif study == "data_scaling":
        parts.figure(
            "fig5_scaling",
            "Figure 5: Dice vs amount of pretraining data, with power-law fits",
            lambda p: plot_dice_vs_pretraining_data(results, p),
        )
        parts.table("power-law fits", lambda: power_law_table(results))
        parts.table("labels needed", lambda: labels_needed_table(results, target=spec.target_dice))
        parts.figure(
            "fig3_dice",
            "Dice vs label fraction per amount of unlabelled data",
            lambda p: plot_dice_vs_label_fraction(results, p),
        )
    elif study == "demo":
        from inpaintssl.studies.demo import demo_parts  # the demo's extras need torch and the data

        demo_parts(spec, results, parts)
    else:
        parts.figure(
            "fig6_percent_error",
            "Figure 6: median percent error of the clinical metrics",
            lambda p: plot_percent_error_bars(results, p),
        )
        parts.figure(
            "fig7_per_image",
            "Figure 7: per-image percent error, SSL vs supervised",
            lambda p: plot_ssl_vs_supervised(results, p),
        )
        parts.table("clinical agreement", lambda: agreement_table(results))
        parts.table("per-image comparison", lambda: per_image_comparison_table(results))
        parts.figure("fig3_dice", "Dice vs label fraction", lambda p: plot_dice_vs_label_fraction(results, p))


def write_report(
    spec: StudySpec,
    *,
    output: str | Path | None = None,
    results: Table | None = None,
    notes: Sequence[str] = (),
) -> ReportFiles:
    """Write a study's tables, figures, ``results.csv``, ``report.md`` and ``report.html``.

    Args:
        spec: The study.
        output: Report folder (default ``<study output>/report``).
        results: The results table (default: loaded from the study's database files).
        notes: Paragraphs shown under the title (e.g. the demo's settings and timing).

    Returns:
        The written files and the parts that were skipped, with why.
    """
    folder = Path(output) if output is not None else spec.output_dir() / "report"
    folder.mkdir(parents=True, exist_ok=True)
    results = load_results(spec) if results is None else results
    parts = ReportParts(folder)
    parts.table("status", lambda: _status_table(spec))
    if spec.study != "demo":  # the demo's summary table holds its Dice
        parts.table("dice", lambda: dice_table(results))
    _study_parts(spec, results, parts)
    # The demo's results.csv has one row per slice and class, with the class average as "mean".
    written = (with_mean_class(results) if spec.study == "demo" else results).to_csv(folder / "results.csv")
    intro = [
        f"Study `{spec.study}`; results from `{spec.database_pattern()}`; "
        "every measurement: [results.csv](results.csv).",
        *notes,
    ]
    markdown, page, tables = write_pages(parts, title=spec.title, notes=intro)
    figures = [p for item, _ in parts.parts if not isinstance(item, Table) for p in item.paths]
    return ReportFiles(markdown, page, (written, *tables), tuple(figures), tuple(parts.skipped))
