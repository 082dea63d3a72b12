"""A gallery page whose tiny training budget ends in a ConvergenceWarning explains it beside it.

The warning is kept on the page (it is true: a budget of seconds does not converge); a reader who
meets it without a word would think the example broken. Blocks are split as sphinx-gallery
renders them, so "a text block" here is a paragraph of the built page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "examples" / "gallery"
RENDERED = ROOT / "docs" / "auto_examples"

TINY_BUDGETS = ("plot_transfer", "plot_ssl_vs_supervised")
"""Pages that train on purpose for too few steps to converge (their rendered output shows the warning)."""

_TRAINS = re.compile(r"\bissl\.(pretrain|finetune)\(")


def blocks(name: str) -> list[tuple[str, str]]:
    parser = pytest.importorskip("sphinx_gallery.py_source_parser")
    parsed = parser.split_code_and_text_blocks(str(GALLERY / f"{name}.py"))
    return [(label, content) for label, content, _ in parsed[1]]


def explains_the_warning(text: str) -> bool:
    return "ConvergenceWarning" in text and ":doc:`/training`" in text


@pytest.mark.parametrize("name", TINY_BUDGETS)
def test_a_tiny_budget_page_explains_its_convergence_warning_after_its_first_training_cell(name: str) -> None:
    parsed = blocks(name)
    first = next(
        i for i, (label, content) in enumerate(parsed) if label == "code" and _TRAINS.search(content)
    )
    # The next text block after the first cell that trains: right under the warning's output.
    following = next(content for label, content in parsed[first + 1 :] if label == "text")
    assert explains_the_warning(following), following
    # Every file it cites for the converged recipe exists.
    for cited in re.findall(r"``([\w/.]+\.py)``", following):
        assert (ROOT / cited).is_file(), cited


def test_the_gallery_header_says_the_warnings_are_deliberate() -> None:
    header = (GALLERY / "GALLERY_HEADER.rst").read_text(encoding="utf-8")
    assert explains_the_warning(header)


def test_every_rendered_page_that_shows_the_warning_explains_it() -> None:
    # docs/auto_examples is the docs build's output (not committed): checked where it was built.
    pages = sorted(RENDERED.glob("plot_*.rst"))
    if not pages:
        pytest.skip("the gallery is not rendered here (make docs)")
    warned = [page.stem for page in pages if "ConvergenceWarning: " in page.read_text(encoding="utf-8")]
    for name in warned:
        if not (GALLERY / f"{name}.py").is_file():
            continue  # a page of an example since removed
        texts = [content for label, content in blocks(name) if label == "text"]
        assert any(explains_the_warning(text) for text in texts), name
