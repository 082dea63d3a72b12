"""Fixtures of the experiment tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from study_helpers import tiny_spec


@pytest.fixture
def spec_factory(tmp_path: Path) -> Any:
    """``spec_factory(**changes)`` -> a tiny spec writing under ``tmp_path / "study"``."""

    def make(**changes: Any) -> dict[str, Any]:
        return tiny_spec(tmp_path / "study", **changes)

    return make
