"""``benchmarks/pytest_failures_now.py`` writes a failure's report while the run still goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# The third test reads the file while the run is still going: the failures before it must be
# there already, which pytest's own end-of-run report could never show.
RUN = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import pytest


    @pytest.fixture
    def broken():
        raise RuntimeError("planted in setup")


    def test_fails():
        assert 1 + 1 == 3, "planted in the call"


    def test_errors(broken):
        pass


    def test_passes_and_sees_both():
        text = Path(os.environ["PYTEST_FAILURES_NOW"]).read_text()
        assert "test_fails: failed in call" in text and "planted in the call" in text
        assert "test_errors: failed in setup" in text and "planted in setup" in text
    """
)


def _pytest(folder: Path, *args: str, failures: Path | None) -> str:
    """Run pytest with the plugin on the test files in ``folder``; its terminal output."""
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS)}
    for name in ("PYTEST_FAILURES_NOW", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    if failures is not None:
        env["PYTEST_FAILURES_NOW"] = str(failures)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "pytest_failures_now",
        "-q",
        *args,
    ]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def test_each_failure_is_in_the_file_before_the_run_ends(tmp_path: Path) -> None:
    # Under pytest-xdist (`-n 2`, as the GPU session runs it) the same holds, each failure written
    # once, by the controller: checked by hand with pytest-xdist 3.8 on 2026-12-04; the project's
    # virtualenv has no pytest-xdist, so this test runs in one process.
    (tmp_path / "test_planted.py").write_text(RUN)
    failures = tmp_path / "failures.txt"
    output = _pytest(tmp_path, "test_planted.py", failures=failures)
    assert "1 failed, 1 passed, 1 error" in output, output
    text = failures.read_text()
    assert text.count("== test_planted.py::") == 2
    assert "RuntimeError: planted in setup" in text and "AssertionError: planted in the call" in text


def test_without_the_variable_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text("def test_fails():\n    assert False\n")
    output = _pytest(tmp_path, "test_one.py", failures=None)
    assert "1 failed" in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_one.py"]
