"""Cells that are not plain numbers or words: lists and mappings in CSV and Markdown, "|" and line
breaks in Markdown tables, and the Markdown of a report's notes on its HTML page."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inpaintssl.analysis.pages import ReportParts, render_html, write_pages
from inpaintssl.analysis.table import Table

# Grid values a study's runs are labelled with (studies.grid): an image size and the unlabelled
# datasets of pretraining, one of them none.
_UNLABELLED = [{"dataset": "mni152", "fraction": 1.0}]


def _rows() -> list[dict[str, Any]]:
    return [
        {"strategy": "a", "image_size": [112, 112], "unlabelled": [], "value": 0.5},
        {"strategy": "b", "image_size": (128, 128), "unlabelled": _UNLABELLED, "value": 0.25},
    ]


def test_csv_writes_list_and_mapping_grid_values_as_json_that_reads_back() -> None:
    rows: list[dict[str, Any]] = [
        *_rows(),
        {"strategy": "c", "image_size": [np.int64(96), np.int64(96)], "params": {"k": 3}},
    ]
    text = Table(rows).to_csv_text()
    read = list(csv.DictReader(io.StringIO(text)))
    assert [json.loads(r["image_size"]) for r in read] == [[112, 112], [128, 128], [96, 96]]
    assert [r["unlabelled"] for r in read] == ["[]", json.dumps(_UNLABELLED), ""]
    assert json.loads(read[1]["unlabelled"]) == _UNLABELLED
    assert json.loads(read[2]["params"]) == {"k": 3}


def test_csv_keeps_per_seed_differences_as_signed_numbers() -> None:
    # One SSL - supervised difference per subset seed (label_fraction_summary's seed_differences).
    text = Table([{"seed_differences": [0.05, -0.02, 0.0]}]).to_csv_text()
    assert text.splitlines() == ["seed_differences", "+0.05 -0.02 +0.0"]


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells: split at each "|" that no backslash escapes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_markdown_writes_lists_and_mappings_as_json_and_differences_as_signed_numbers() -> None:
    rows: list[dict[str, Any]] = [*_rows(), {"strategy": "c", "seed_differences": [0.1234, -0.02]}]
    lines = Table(rows).to_markdown().splitlines()
    assert _cells(lines[0]) == ["strategy", "image_size", "unlabelled", "value", "seed_differences"]
    assert _cells(lines[2]) == ["a", "[112, 112]", "[]", "0.5", ""]
    assert _cells(lines[3]) == ["b", "[128, 128]", json.dumps(_UNLABELLED), "0.25", ""]
    assert _cells(lines[4]) == ["c", "", "", "", "+0.123 -0.02"]


def test_a_bar_or_line_break_in_a_markdown_cell_keeps_the_row_in_its_columns() -> None:
    why = "run ft-b failed (TypeError: unsupported operand type(s) for |: 'dict' and 'NoneType')"
    table = Table(
        [("ft-b", why, 1), ("ft-c", "line one\nline two\r\nline three", 2)],
        columns=("run", "note | why", "n"),
    )
    lines = table.to_markdown().splitlines()
    assert [len(_cells(line)) for line in lines] == [3, 3, 3, 3]
    assert _cells(lines[0])[1] == r"note \| why"
    assert _cells(lines[2]) == ["ft-b", why.replace("|", r"\|"), "1"]
    assert _cells(lines[3]) == ["ft-c", "line one line two line three", "2"]


_ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _shown(markdown: str, *, cell: bool = False) -> str:
    """The text CommonMark shows for ``markdown`` without code spans; refuses a raw tag, entity or "|".

    A backslash before ASCII punctuation shows that character (CommonMark's backslash escape); a
    bare "<" or "&" would start an HTML tag or an entity, and in a table cell a bare "|" its end.
    """
    shown, index = [], 0
    while index < len(markdown):
        char = markdown[index]
        if char == "\\" and index + 1 < len(markdown) and markdown[index + 1] in _ASCII_PUNCTUATION:
            shown.append(markdown[index + 1])
            index += 2
            continue
        assert char not in "<&" and not (cell and char == "|"), f"bare {char!r} in {markdown!r}"
        shown.append(char)
        index += 1
    return "".join(shown)


def test_markdown_shows_tags_entities_and_backslashes_as_written(tmp_path: Path) -> None:
    # "<x>" was left raw: a renderer took it for an HTML tag and dropped it, as GitHub does.
    error = "RuntimeError: boom | <x> &lt; C:\\runs\\|<lambda>() missing"
    table = Table([("ft-b", error)], columns=("run", "why <it> failed"))
    lines = table.to_markdown().splitlines()
    assert [_shown(c, cell=True) for c in _cells(lines[0])] == ["run", "why <it> failed"]
    assert [_shown(c, cell=True) for c in _cells(lines[2])] == ["ft-b", error]
    title = 'odd, "name" | <b>x</b> \u00e9'
    notes = [f"Study `a<b`: run ft-b failed ({error}); all data: [results.csv](results.csv)."]
    markdown, _, _ = write_pages(ReportParts(tmp_path), title=title, notes=notes)
    page = markdown.read_text(encoding="utf-8").splitlines()
    assert _shown(page[0]) == f"# {title}"
    # Code spans show as written, links stay links; the rest shows the error as it was raised.
    before, code, after = page[2].split("`")
    assert (_shown(before), code) == ("Study ", "a<b")
    assert _shown(after) == f": run ft-b failed ({error}); all data: [results.csv](results.csv)."


class _Page(HTMLParser):
    """The links and the inline code of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.code: list[str] = []
        self.scripts = 0
        self._open: str | None = None
        self._href = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        if tag in ("a", "code"):
            self._open, self._href = tag, str(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open == "a":
            self.links.append((data, self._href))
        elif self._open == "code":
            self.code.append(data)


def test_the_html_page_renders_the_inline_code_and_links_of_markdown_notes(tmp_path: Path) -> None:
    notes = [
        "Study `pretext_design`; results from `out/db.sqlite`; all data: [results.csv](results.csv).",
        "per run: the `converged` column of [results.csv](results.csv); a <script>x</script> & "
        "[a click](javascript:alert(1)) stay text, as does `[csv](results.csv)` in code",
    ]
    page = render_html(ReportParts(tmp_path), title="t", notes=notes)
    parser = _Page()
    parser.feed(page)
    assert parser.links == [("results.csv", "results.csv"), ("results.csv", "results.csv")]
    assert parser.code == ["pretext_design", "out/db.sqlite", "converged", "[csv](results.csv)"]
    assert parser.scripts == 0
    assert "a &lt;script&gt;x&lt;/script&gt; &amp; [a click](javascript:alert(1)) stay text" in page
    # The Markdown page keeps the notes as written.
    markdown, _, _ = write_pages(ReportParts(tmp_path), title="t", notes=notes)
    assert markdown.read_text().splitlines()[2] == notes[0]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (np.float32(0.8123456), "0.812"),
        (np.float64(0.8123456), "0.812"),
        (np.int64(12), "12"),
        (np.bool_(True), "True"),
    ],
)
def test_numpy_numbers_are_rounded_in_markdown_as_python_numbers_are(value: object, shown: str) -> None:
    # Was: a NumPy float32 (a user's table built from .numpy() values) is no Python float and was
    # written with every digit, "0.8123456", against the documented significant digits.
    table = Table([("FEF", value)], name="demo", columns=("strategy", "score"))
    assert table.to_markdown().splitlines()[-1] == f"| FEF | {shown} |"
