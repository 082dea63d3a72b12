"""A pytest plugin: each failing test's report, appended to a file the moment pytest has it.

The GPU session's test stages run under a time limit, and pytest prints its failure reports only
when the whole run ends: a stage cut off by its limit loses every traceback (on the H200,
2026-12-04, six setup errors came back as bare ``E`` marks). With this plugin each report is in
the file as soon as the test has failed. Load it with ``-p pytest_failures_now`` (this folder on
``PYTHONPATH``) and name the file in ``$PYTEST_FAILURES_NOW``; without that variable it does
nothing.

Under pytest-xdist the controller writes every report (the workers send theirs to it), so each
failure is written once.

Example::

    PYTHONPATH=benchmarks PYTEST_FAILURES_NOW=/tmp/failures.txt \\
        python -m pytest -p pytest_failures_now tests/training
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENVIRONMENT_VARIABLE = "PYTEST_FAILURES_NOW"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Append ``report`` to ``$PYTEST_FAILURES_NOW`` when its test failed (setup, call or teardown)."""
    target = os.environ.get(ENVIRONMENT_VARIABLE)
    if not target or not report.failed or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    worker = getattr(report, "node", None)
    where = f" on {worker.gateway.id}" if worker is not None else ""
    text = f"== {report.nodeid}: failed in {report.when}{where} after {report.duration:.1f} s\n"
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(f"{text}{report.longreprtext}\n\n")
        out.flush()
