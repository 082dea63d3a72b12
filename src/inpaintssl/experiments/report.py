"""A study's report: its tables (CSV + Markdown) and figures (PNG + PDF) in Markdown and HTML pages.

What goes in depends on the study (see :mod:`inpaintssl.experiments.runner`): every report has
the run status and the Dice table; ``pretext_design`` adds Table 2, Table 3 and Figures 3/4 (one
per pretext task); ``transfer_design`` Figure A1 and the strategy ranking; ``data_scaling``
Figure 5, its power-law fits and the labels-needed estimate; ``clinical`` Figures 6 and 7, the
agreement table and the per-image Wilcoxon test. A part that the results cannot support yet (an
unfinished study) is listed with the reason instead of failing the report. Every file is written
atomically, so a report being rewritten is never seen half-written.

Example:
    >>> import tempfile, pathlib
    >>> from inpaintssl.experiments.spec import StudySpec
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> files = write_report(StudySpec(study="clinical", output=out), output=out / "report")
    >>> files.markdown.name, files.html.name
    ('report.md', 'report.html')
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inpaintssl.atomic import atomic_write_text
from inpaintssl.experiments.clinical import agreement_table, per_image_comparison_table
from inpaintssl.experiments.figures import (
    FigureFiles,
    plot_dice_vs_label_fraction,
    plot_dice_vs_pretraining_data,
    plot_percent_error_bars,
    plot_ssl_vs_supervised,
    plot_transfer_boxplots,
)
from inpaintssl.experiments.results import ResultsTable, load_results, load_runs
from inpaintssl.experiments.spec import StudySpec
from inpaintssl.experiments.tables import (
    dice_table,
    labels_needed_table,
    power_law_table,
    table2_l2_norm,
    table3_ranking,
)
from inpaintssl.experiments.tabular import Table, format_value

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


@dataclass
class _Sections:
    """Report parts in order, each ``(table or figure, caption)``, and the parts skipped with why."""

    folder: Path
    parts: list[tuple[Table | FigureFiles, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def table(self, name: str, build: Callable[[], Table]) -> None:
        try:
            table = build()
        except ValueError as exc:
            self.skipped.append((name, str(exc)))
            return
        self.parts.append((table, table.title))

    def figure(self, name: str, caption: str, draw: Callable[[Path], FigureFiles]) -> None:
        try:
            files = draw(self.folder / name)
        except ValueError as exc:
            self.skipped.append((caption, str(exc)))
            return
        self.parts.append((files, caption))


def _status_table(spec: StudySpec) -> Table:
    counts: dict[tuple[str, str], int] = {}
    for run in load_runs(spec).values():
        counts[(run.kind, run.status)] = counts.get((run.kind, run.status), 0) + 1
    return Table(
        "status",
        "Runs by kind and status",
        ("kind", "status", "runs"),
        tuple((kind, status, n) for (kind, status), n in sorted(counts.items())),
    )


def _study_parts(spec: StudySpec, results: ResultsTable, parts: _Sections) -> None:
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


def _markdown(spec: StudySpec, parts: _Sections, folder: Path) -> str:
    lines = [f"# {spec.title}", "", f"Study `{spec.study}`; results from `{spec.database_pattern()}`.", ""]
    for item, caption in parts.parts:
        if isinstance(item, Table):
            lines += [
                f"## {caption}",
                "",
                item.to_markdown(),
                "",
                f"CSV: [{item.name}.csv]({item.name}.csv)",
                "",
            ]
        else:
            png = item.paths[0].relative_to(folder)
            lines += [
                f"## {caption}",
                "",
                f"![{caption}]({png})",
                "",
                f"PDF: [{png.with_suffix('.pdf')}]({png.with_suffix('.pdf')})",
                "",
            ]
    if parts.skipped:
        lines += ["## Not available yet", ""]
        lines += [f"- {name}: {reason}" for name, reason in parts.skipped]
        lines.append("")
    return "\n".join(lines)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row) + "</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(spec: StudySpec, parts: _Sections, folder: Path) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(spec.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:72em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{html.escape(spec.title)}</h1>",
        f"<p>Study <code>{html.escape(spec.study)}</code>.</p>",
    ]
    for item, caption in parts.parts:
        out.append(f"<h2>{html.escape(caption)}</h2>")
        if isinstance(item, Table):
            out.append(_html_table(item))
            out.append(f'<p><a href="{html.escape(item.name)}.csv">CSV</a></p>')
        else:
            png = item.paths[0].relative_to(folder)
            out.append(f'<img src="{html.escape(str(png))}" alt="{html.escape(caption)}">')
            out.append(f'<p><a href="{html.escape(str(png.with_suffix(".pdf")))}">PDF</a></p>')
    if parts.skipped:
        out.append("<h2>Not available yet</h2><ul>")
        out += [f"<li>{html.escape(n)}: {html.escape(r)}</li>" for n, r in parts.skipped]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    spec: StudySpec, *, output: str | Path | None = None, results: ResultsTable | None = None
) -> ReportFiles:
    """Write a study's tables, figures, ``results.csv``, ``report.md`` and ``report.html``.

    Args:
        spec: The study.
        output: Report folder (default ``<study output>/report``).
        results: The results table (default: loaded from the study's database files).

    Returns:
        The written files and the parts that were skipped, with why.
    """
    folder = Path(output) if output is not None else spec.output_dir() / "report"
    folder.mkdir(parents=True, exist_ok=True)
    results = load_results(spec) if results is None else results
    parts = _Sections(folder)
    parts.table("status", lambda: _status_table(spec))
    parts.table("dice", lambda: dice_table(results))
    _study_parts(spec, results, parts)
    tables: list[Path] = [results.to_csv(folder / "results.csv")]
    figures: list[Path] = []
    for item, _ in parts.parts:
        if isinstance(item, Table):
            tables += item.write(folder)
        else:
            figures += item.paths
    markdown, page = folder / "report.md", folder / "report.html"
    atomic_write_text(markdown, _markdown(spec, parts, folder))
    atomic_write_text(page, _html(spec, parts, folder))
    return ReportFiles(markdown, page, tuple(tables), tuple(figures), tuple(parts.skipped))
