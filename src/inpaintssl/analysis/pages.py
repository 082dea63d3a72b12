"""A report's pages: its tables and figures in order, rendered as ``report.md`` and ``report.html``.

:class:`ReportParts` collects the parts (a :class:`~inpaintssl.analysis.table.Table` or a
:class:`~inpaintssl.analysis.figures.FigureFiles`, each with a caption); a part that the results
cannot support yet (its builder raises ``ValueError``) is listed with the reason instead of failing
the report. :func:`write_pages` writes every table's CSV and Markdown and both pages, atomically,
so a report being rewritten is never seen half-written.

Example:
    >>> import tempfile, pathlib
    >>> from inpaintssl.analysis.table import Table
    >>> parts = ReportParts(pathlib.Path(tempfile.mkdtemp()))
    >>> parts.table("runs", lambda: Table([{"kind": "pretrain", "runs": 1}], name="runs", title="Runs"))
    >>> def table3() -> Table:
    ...     raise ValueError("no baseline yet")
    >>> parts.table("table 3", table3)
    >>> markdown, page, written = write_pages(parts, title="A study", notes=["Two paragraphs."])
    >>> [p.name for p in written], parts.skipped
    (['runs.csv', 'runs.md'], [('table 3', 'no baseline yet')])
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inpaintssl.analysis.figures import FigureFiles
from inpaintssl.analysis.table import Table, format_value, markdown_text
from inpaintssl.atomic import atomic_write_text

__all__ = ["ReportParts", "render_html", "render_markdown", "write_pages"]


@dataclass
class ReportParts:
    """Report parts in order, each ``(table or figure, caption)``, and the parts skipped with why.

    Attributes:
        folder: The report folder (figures are drawn into it, links are relative to it).
        parts: ``(item, caption)`` in page order.
        skipped: ``(part, reason)`` of parts the results could not support.
        markdown_tables: Also write each table as ``<name>.md`` beside its CSV (the pages
            embed every table either way).
    """

    folder: Path
    parts: list[tuple[Table | FigureFiles, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    markdown_tables: bool = True

    def table(self, name: str, build: Callable[[], Table]) -> None:
        """Add ``build()``, or record why it could not be built (it raised ``ValueError``)."""
        try:
            table = build()
        except ValueError as exc:
            self.skipped.append((name, str(exc)))
            return
        self.parts.append((table, table.title))

    def figure(self, name: str, caption: str, draw: Callable[[Path], FigureFiles]) -> None:
        """Add ``draw(folder / name)``, or record why it could not be drawn (``ValueError``)."""
        try:
            files = draw(self.folder / name)
        except ValueError as exc:
            self.skipped.append((caption, str(exc)))
            return
        self.parts.append((files, caption))


def _pdf(files: FigureFiles) -> Path | None:
    return next((p for p in files.paths if p.suffix == ".pdf"), None)


def _markdown_note(note: str) -> str:
    """A note's text escaped (:func:`markdown_text`) outside its inline code spans, which show as written.

    Its links stay links: :func:`markdown_text` leaves brackets and parentheses alone.
    """
    # split() with one group alternates text outside code spans (even) and their contents (odd).
    parts = _CODE.split(note)
    return "".join(f"`{part}`" if index % 2 else markdown_text(part) for index, part in enumerate(parts))


def render_markdown(parts: ReportParts, *, title: str, notes: Sequence[str] = ()) -> str:
    """The Markdown page: title, note paragraphs, every part, then the skipped parts."""
    lines = [f"# {markdown_text(title)}", ""]
    for note in notes:
        lines += [_markdown_note(note), ""]
    for item, caption in parts.parts:
        lines += [f"## {caption}", ""]
        if isinstance(item, Table):
            lines += [item.to_markdown(), "", f"CSV: [{item.name}.csv]({item.name}.csv)", ""]
            continue
        lines += [f"![{caption}]({item.paths[0].relative_to(parts.folder).as_posix()})", ""]
        pdf = _pdf(item)
        if pdf is not None:
            rel = pdf.relative_to(parts.folder).as_posix()
            lines += [f"PDF: [{rel}]({rel})", ""]
    if parts.skipped:
        lines += ["## Not available yet", ""]
        lines += [f"- {name}: {reason}" for name, reason in parts.skipped]
        lines.append("")
    return "\n".join(lines)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row) + "</tr>"
        for row in table.tuples()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^()\s]+)\)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_LINKED_SCHEMES = frozenset({"http", "https", "mailto"})


def _html_link(match: re.Match[str]) -> str:
    # ``match`` is of escaped text, so its parts are safe inside the tag as they are; only a
    # relative link or a web one becomes a link (a "javascript:" one stays text).
    text, href = match.group(1), match.group(2)
    scheme = _SCHEME.match(html.unescape(href))
    if scheme is not None and scheme.group(1).lower() not in _LINKED_SCHEMES:
        return match.group(0)
    return f'<a href="{href}">{text}</a>'


def _inline_html(text: str) -> str:
    """A note written in Markdown as HTML: escaped, with its inline code and links rendered.

    The report's notes use two Markdown constructs alone, inline code (a span between backquotes)
    and links (``[text](link)``); everything else is escaped text. A link inside code stays code;
    a link with a scheme other than ``http``, ``https`` or ``mailto`` stays text.

    Example:
        >>> _inline_html("Study `a<b`; every measurement: [results.csv](results.csv).")
        'Study <code>a&lt;b</code>; every measurement: <a href="results.csv">results.csv</a>.'
        >>> _inline_html("[x](javascript:alert(1)) & `[y](y.csv)`")
        '[x](javascript:alert(1)) &amp; <code>[y](y.csv)</code>'
    """
    out = []
    # split() with one group alternates text outside code spans (even) and their contents (odd).
    for index, part in enumerate(_CODE.split(text)):
        escaped = html.escape(part)
        out.append(f"<code>{escaped}</code>" if index % 2 else _LINK.sub(_html_link, escaped))
    return "".join(out)


def render_html(parts: ReportParts, *, title: str, notes: Sequence[str] = ()) -> str:
    """The HTML page: the same content as :func:`render_markdown`.

    Notes are Markdown (as on the Markdown page); their inline code and links are rendered
    (:func:`_inline_html`), the rest is escaped text.
    """
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:72em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    out += [f"<p>{_inline_html(note)}</p>" for note in notes]
    for item, caption in parts.parts:
        out.append(f"<h2>{html.escape(caption)}</h2>")
        if isinstance(item, Table):
            out.append(_html_table(item))
            out.append(f'<p><a href="{html.escape(item.name)}.csv">CSV</a></p>')
            continue
        png = item.paths[0].relative_to(parts.folder).as_posix()
        out.append(f'<img src="{html.escape(png)}" alt="{html.escape(caption)}">')
        pdf = _pdf(item)
        if pdf is not None:
            out.append(f'<p><a href="{html.escape(pdf.relative_to(parts.folder).as_posix())}">PDF</a></p>')
    if parts.skipped:
        out.append("<h2>Not available yet</h2><ul>")
        out += [f"<li>{html.escape(n)}: {html.escape(r)}</li>" for n, r in parts.skipped]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out)


def write_pages(
    parts: ReportParts, *, title: str, notes: Sequence[str] = ()
) -> tuple[Path, Path, tuple[Path, ...]]:
    """Write every table's CSV and Markdown, ``report.md`` and ``report.html`` into ``parts.folder``.

    Returns:
        ``(report.md, report.html, the table files)``.
    """
    written: list[Path] = []
    for item, _ in parts.parts:
        if isinstance(item, Table):
            csv = parts.folder / f"{item.name}.csv"
            written += item.write(parts.folder) if parts.markdown_tables else (item.to_csv(csv),)
    markdown, page = parts.folder / "report.md", parts.folder / "report.html"
    atomic_write_text(markdown, render_markdown(parts, title=title, notes=notes))
    atomic_write_text(page, render_html(parts, title=title, notes=notes))
    return markdown, page, tuple(written)
