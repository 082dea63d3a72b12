"""Fixtures for every test the project collects, the doctests in ``src/inpaintssl`` included."""

from __future__ import annotations

import tempfile

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _doctest_temporaries_in_tmp_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A doctest's ``tempfile.mkdtemp()`` folders go in its own ``tmp_path``, which pytest removes.

    The docstring examples make their files where a reader would, in ``tempfile.mkdtemp()``, and
    leave them: on every run of the suite that was some 60 folders in the system's temporary
    folder, never removed. Only doctests: a test has ``tmp_path`` itself.
    """
    if isinstance(request.node, DoctestItem):
        monkeypatch.setattr(tempfile, "tempdir", str(request.getfixturevalue("tmp_path")))
