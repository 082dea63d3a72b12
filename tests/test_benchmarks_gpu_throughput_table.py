"""``benchmarks/gpu_throughput_table.py``: every record named on the command line is a row and counts
in the verdict, also where two sessions' records share a file name (``gpu_session.sh`` gives every
session the same ones)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def table() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gpu_throughput_table", BENCHMARKS / "gpu_throughput_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(library: float, monai: float) -> dict[str, Any]:
    arms = {
        "library": {"images_per_s": library, "mfu": 0.3, "compile": "off"},
        "monai": {"images_per_s": monai},
    }
    return {"complete": True, "device": "NVIDIA H200", "image_size": 512, "batch_size": 16, "dtype": "bf16",
            "channels_last": False, "compile": "off", "arms": arms}  # fmt: skip


def _write(path: Path, record: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def test_records_of_two_sessions_with_one_name_are_both_compared(table: ModuleType, tmp_path: Path) -> None:
    first = _write(tmp_path / "s1" / "gpu_eager.json", _record(400.0, 250.0))
    second = _write(tmp_path / "s2" / "gpu_eager.json", _record(240.0, 260.0))
    printed = table.main([str(first), str(second)])
    rows = [line for line in printed.splitlines() if line.startswith("| s")]
    assert [row.split(" | ")[0] for row in rows] == ["| s1/gpu_eager"] * 2 + ["| s2/gpu_eager"] * 2
    # Each network at its fastest among both records: the library's 400 (s1) against MONAI's 260 (s2).
    assert f"library / MONAI = {400 / 260:.2f} (target >= 1.5: met)" in printed
    assert "fastest library: 400.0 images/s (s1/gpu_eager)" in printed


def test_a_stem_no_other_record_has_stays_the_name(table: ModuleType, tmp_path: Path) -> None:
    eager = _write(tmp_path / "s1" / "gpu_eager.json", _record(300.0, 250.0))
    other = _write(tmp_path / "s1" / "gpu_compiled.json", _record(320.0, 250.0))
    printed = table.main([str(eager), str(other)])
    assert "| gpu_eager | contiguous |" in printed
    assert "fastest library: 320.0 images/s (gpu_compiled)" in printed


def test_labels_are_unique_however_the_paths_collide(table: ModuleType) -> None:
    paths = [Path("a/s/x.json"), Path("b/s/x.json"), Path("b/s/x.json"), Path("c/y.json")]
    found = table.labels(paths)
    assert len(set(found)) == len(paths)
    assert found[-1] == "y"
