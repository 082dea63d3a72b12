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
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from inpaintssl.analysis import clinical, paper_tables
from inpaintssl.analysis import figures as plots
from inpaintssl.analysis.figures import FigureFiles
from inpaintssl.analysis.pages import ReportParts, write_pages
from inpaintssl.analysis.summaries import with_mean_class
from inpaintssl.analysis.table import Table
from inpaintssl.studies.database import ForeignHostError
from inpaintssl.studies.merge import MergeReport, merge_results
from inpaintssl.studies.results import load_results, load_runs
from inpaintssl.studies.spec import StudySpec, load_spec

__all__ = ["ReportFiles", "StudyReport", "report_study", "write_report"]


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


_CAPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "figA1_transfer": "Figure A1: Dice per test item by transfer strategy and learning rates",
        "fig5_scaling": "Figure 5: Dice vs amount of pretraining data, with power-law fits",
        "fig6_percent_error": "Figure 6: median percent error of the clinical metrics",
        "fig7_per_image": "Figure 7: per-image percent error, SSL vs supervised",
        "fig3_dice": "Dice vs label fraction",
    }
)


def _study_parts(spec: StudySpec, results: Table, parts: ReportParts) -> None:
    def figure(name: str, plot: Callable[..., FigureFiles], caption: str = "", **options: str) -> None:
        parts.figure(name, caption or _CAPTIONS[name], functools.partial(plot, results, **options))

    def table(name: str, build: Callable[..., Table], **options: float | None) -> None:
        parts.table(name, functools.partial(build, results, **options))

    study = spec.study
    if study == "pretext_design":
        table("table 2", paper_tables.table2_l2_norm)
        table("table 3", paper_tables.table3_ranking)
        for task in [str(t) for t in results.select(arm="ssl").unique("task") if t is not None]:
            caption = f"Figure 3/4: Dice vs label fraction ({task})"
            figure(f"fig3_dice_{task}", plots.plot_dice_vs_label_fraction, caption, task=task)
    elif study == "transfer_design":
        figure("figA1_transfer", plots.plot_transfer_boxplots)
        table("strategy ranking", paper_tables.table3_ranking)
    elif study == "data_scaling":
        figure("fig5_scaling", plots.plot_dice_vs_pretraining_data)
        table("power-law fits", paper_tables.power_law_table)
        table("labels needed", paper_tables.labels_needed_table, target=spec.target_dice)
        caption = "Dice vs label fraction per amount of unlabelled data"
        figure("fig3_dice", plots.plot_dice_vs_label_fraction, caption)
    elif study == "demo":
        from inpaintssl.studies.demo import demo_parts  # the demo's extras need torch and the data

        demo_parts(spec, results, parts)
    else:
        figure("fig6_percent_error", plots.plot_percent_error_bars)
        figure("fig7_per_image", plots.plot_ssl_vs_supervised)
        table("clinical agreement", clinical.agreement_table)
        table("per-image comparison", clinical.per_image_comparison_table)
        figure("fig3_dice", plots.plot_dice_vs_label_fraction)


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
    # The demo's report keeps the files it always had: its summary table holds the Dice, its runs
    # table the status, and the pages show its tables (no Markdown copies).
    demo = spec.study == "demo"
    parts = ReportParts(folder, markdown_tables=not demo)
    if not demo:
        parts.table("status", lambda: _status_table(spec))
        parts.table("dice", lambda: paper_tables.dice_table(results))
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


@dataclass(frozen=True)
class StudyReport:
    """What :func:`report_study` did.

    Attributes:
        files: The report's files.
        merged: The result files merged first (and those left out, with why).
        database: The database they were merged into.
        left_out: Recorded runs the spec does not plan (an earlier version of it), not reported.
    """

    files: ReportFiles
    merged: MergeReport
    database: Path
    left_out: int


def report_study(
    spec: StudySpec | Mapping[str, Any] | str | Path, *, output: str | Path | None = None
) -> StudyReport:
    """Merge the result files no driver merged yet, then write the report of the spec's runs.

    A driver killed after its workers finished leaves their result files unmerged; a report on
    the database's host takes them in first (read-only when there is nothing to merge). From
    another host, where a running study's files wait for its driver, the report shows the runs
    merged so far and warns. Result files that could not be merged are named in warnings.

    Args:
        spec: The study spec (a model, a mapping or a YAML/JSON file).
        output: Report folder (default ``<study output>/report``).

    Raises:
        inpaintssl.config.ConfigError: Invalid spec.

    Example:
        >>> done = report_study("spec.yaml")          # doctest: +SKIP
        >>> done.files.html, done.merged.merged       # doctest: +SKIP
        (PosixPath('out/report/report.html'), 0)
    """
    spec = load_spec(spec)
    try:
        merged = merge_results(spec)
    except ForeignHostError as exc:
        # A running study's driver merges its tasks' files as they end; its host alone may.
        warnings.warn(
            f"{spec.database_path()} belongs to host {exc.owner!r} and this is host {exc.here!r}: the "
            f"result files in {spec.results_dir()} not merged yet are left to that host (its driver "
            "merges them as tasks end, or run `experiment report` there); this report shows the runs "
            "merged so far",
            UserWarning,
            stacklevel=2,
        )
        merged = MergeReport()
    merged.warn(results_dir=spec.results_dir())
    left_out = len(load_runs(spec, planned_only=False)) - len(load_runs(spec))
    files = write_report(spec, output=output)
    return StudyReport(files=files, merged=merged, database=spec.database_path(), left_out=left_out)
