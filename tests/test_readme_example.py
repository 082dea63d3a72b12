"""The README's first API example runs verbatim, in minutes on a CPU, and hands back converged models."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from inpaintssl.training.convergence import ConvergenceWarning

README = Path(__file__).resolve().parents[1] / "README.md"
QUICKSTART = README.parent / "docs" / "quickstart.rst"
INDEX = README.parent / "docs" / "index.rst"


def _first_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The API in ten lines") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, "the README's API section has no python block"
    return match.group(1)


def test_the_example_is_ten_lines() -> None:
    lines = [line for line in _first_example().splitlines() if line.strip()]
    assert len(lines) <= 10, lines


@pytest.mark.parametrize(("page", "after"), [(QUICKSTART, "The API in ten lines"), (INDEX, "")])
def test_the_docs_show_the_readme_example_verbatim(page: Path, after: str) -> None:
    # The quick start and the docs' landing page show the README's block, which the slow test below
    # runs: a copy that drifted (the landing page kept a 200-step pretraining budget that does not
    # converge) would claim a convergence nothing checks.
    text = page.read_text(encoding="utf-8")
    section = text[text.index(after) :]
    block = section[section.index(".. code-block:: python\n\n") + len(".. code-block:: python\n\n") :]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    assert "\n".join(lines).strip() == _first_example().strip()


@pytest.mark.slow
def test_readme_example_runs_and_converges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # an unconverged run fails the test
        exec(compile(_first_example(), str(README), "exec"), namespace)
    pre, ft = namespace["pre"], namespace["ft"]
    assert pre.converged and ft.converged  # type: ignore[attr-defined]
    assert len(namespace["table"]) > 0  # type: ignore[arg-type]
    assert (tmp_path / "runs" / "ft" / "learning_curve.png").is_file()
    assert (tmp_path / "runs" / "pre" / "reconstructions" / "epoch_000.png").is_file()
