"""The architecture of docs/architecture.rst is enforced: the import contracts hold, and they bite.

``make lint`` runs import-linter with the contracts in ``pyproject.toml``. These tests run the same
contracts on a copy of the package: unchanged, every contract is kept; with one forbidden edge
planted (a leaf package importing training, the CLI reaching past the API), the check fails and
names the edge.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import inpaintssl

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(inpaintssl.__file__).parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    # Missing is a failure, not a skip: these tests are the only automatic check of the layering.
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} not found: install the dev extra (make venv)"
    # PYTHONPATH puts the copy before the installed (editable) package. The contracts are read from
    # the working folder, the one way every import-linter 2.x takes (a config argument is positional
    # from 2.17 on and --config before it).
    shutil.copyfile(ROOT / "pyproject.toml", src / "pyproject.toml")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=src,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "inpaintssl", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _plant(src: Path, module: str, line: str) -> None:
    path = src / "inpaintssl" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_package_keeps_every_contract(package_copy: Path) -> None:
    result = _lint(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        (
            "models/layers.py",
            "import inpaintssl.training.loop",
            "inpaintssl.models is not allowed to import inpaintssl.training",
        ),
        (
            "analysis/table.py",
            "import inpaintssl.studies.spec",
            "inpaintssl.analysis is not allowed to import inpaintssl.studies",
        ),
        (
            "cli/__init__.py",
            "import inpaintssl.training.loop",
            "inpaintssl.cli is not allowed to import inpaintssl.training",
        ),
        (
            "training/loop.py",
            "import inpaintssl.api",
            "inpaintssl.training is not allowed to import inpaintssl.api",
        ),
        (
            "studies/demo.py",
            "import inpaintssl.corruption.masks",
            "inpaintssl.studies is not allowed to import inpaintssl.corruption",
        ),
        (
            "cli/__init__.py",
            "import inpaintssl.data.base",
            "inpaintssl.cli is not allowed to import inpaintssl.data",
        ),
        (
            "layout.py",
            "import inpaintssl.data.base",
            "inpaintssl.layout is not allowed to import inpaintssl.data",
        ),
        (
            "transfer_learning/transfer.py",
            "import inpaintssl.training.loop",
            "inpaintssl.transfer_learning is not allowed to import inpaintssl.training",
        ),
    ],
)
def test_a_forbidden_edge_breaks_the_check(package_copy: Path, module: str, line: str, broken: str) -> None:
    _plant(package_copy, module, line)
    result = _lint(package_copy)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout
