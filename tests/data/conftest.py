"""Fixtures of the data tests: a small SKM-TEA-layout folder written with h5py in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_builders import SkmteaFixture, make_skmtea


@pytest.fixture
def skmtea(tmp_path: Path) -> SkmteaFixture:
    """Annotated train (4) / val (1) / test (1) scans and one unannotated scan."""
    return make_skmtea(tmp_path / "skm-tea")
