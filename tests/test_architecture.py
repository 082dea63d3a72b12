"""The architecture of docs/architecture.rst is enforced: the import contracts hold, and they bite.

``make lint`` runs import-linter with the contracts in ``pyproject.toml``. These tests run the same
contracts on a copy of the package: unchanged, every contract is kept; with one forbidden edge
planted (a leaf package importing training, the CLI reaching past the API), the check fails and
names the edge.
"""

from __future__ import annotations

import ast
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


def _private_imports_across_packages(package: Path) -> list[str]:
    """``file: statement`` for each import of a private module or name of another subpackage.

    A subpackage's ``_``-prefixed modules and names are its own; another package that needs one
    reaches past the layering's public faces, and import-linter does not see it (the edge may be
    allowed, the name is not). The root package's own private modules (``_version``, ``_lazy``) are
    infrastructure every package shares.
    """
    found = []
    for path in sorted(package.rglob("*.py")):
        inside = path.relative_to(package).parts
        own = inside[0] if len(inside) > 1 else None  # the subpackage, None for the root's modules
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            target = node.module.split(".")
            if target[0] != "inpaintssl" or len(target) < 2 or target[1] == own:
                continue
            private_module = any(part.startswith("_") for part in target[2:])
            private_names = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
            if private_module or (len(target) > 2 and private_names):
                found.append(f"{path.relative_to(package.parent)}: from {node.module} import ...")
    return found


def test_no_package_imports_another_packages_private_modules_or_names(package_copy: Path) -> None:
    assert _private_imports_across_packages(package_copy / "inpaintssl") == []
    # The check bites: one such import planted is found and named.
    _plant(package_copy, "inference/t2_maps.py", "from inpaintssl.metrics.qdess import _Scan")
    _plant(package_copy, "api.py", "from inpaintssl.transfer_learning.network_parts import _RECORDS")
    assert _private_imports_across_packages(package_copy / "inpaintssl") == [
        "inpaintssl/api.py: from inpaintssl.transfer_learning.network_parts import ...",
        "inpaintssl/inference/t2_maps.py: from inpaintssl.metrics.qdess import ...",
    ]
