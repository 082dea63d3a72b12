"""``benchmarks/summary.py`` finds every target a benchmark record states, in each of its forms."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RECORDS = sorted((BENCHMARKS / "results").glob("bench_*.json"))


def _summary() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_summary", BENCHMARKS / "summary.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_record_with_its_one_target_at_the_top_gives_its_row() -> None:
    # bench_preflight_threads, bench_cache_dir, bench_predict_writes and others state it so; the
    # summary of make bench left them out.
    record = json.loads((BENCHMARKS / "results" / "bench_preflight_threads.json").read_text())
    assert _summary().targets(record, "preflight_threads") == [
        ("preflight_threads", record["target"], record["target_met"])
    ]


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_every_target_a_committed_record_states_is_a_row(path: Path) -> None:
    record: dict[str, Any] = json.loads(path.read_text())
    stated = list(record.get("targets", {}).items())
    if "target_met" in record:
        stated.append((record["target"], record["target_met"]))
    entries = [e for e in record.get("entries", []) if isinstance(e, dict) and "target_met" in e]
    rows = _summary().targets(record, path.stem)
    assert [(target, met) for _, target, met in rows][: len(stated)] == [(str(t), m) for t, m in stated]
    assert len(rows) == len(stated) + len(entries)
    assert {name for name, _, _ in rows} <= {path.stem}


def test_a_section_is_searched_one_level_down_and_a_failure_is_a_row() -> None:
    section = {
        "training": {"targets": {"library >= 1.5x MONAI": False}},
        "throughput": {"target": "MFU >= 25 %", "target_met": None, "arms": {"eager": {}}},
        "corruption": {"error": "RuntimeError: CUDA error: out of memory\nmore"},
    }
    assert _summary().targets(section, "gpu") == [
        ("gpu.training", "library >= 1.5x MONAI", False),
        ("gpu.throughput", "MFU >= 25 %", None),
        ("gpu.corruption", "(benchmark failed)", "error: RuntimeError: CUDA error: out of memory"),
    ]


def test_an_unreliable_measurement_gives_its_reason_as_the_verdict() -> None:
    # bench_predict_writes and bench_cache_dir record target_met None with the reason beside it.
    why = "unreliable measurement: share_of_writing_hidden = 11.7 > 1"
    record = {
        "target": "(inline - write-ahead) / inline writing time >= 0.5",
        "target_met": None,
        "unreliable": why,
    }
    assert _summary().targets(record, "predict_writes") == [("predict_writes", record["target"], why)]
    assert _summary().targets({**record, "unreliable": None}, "p") == [("p", record["target"], None)]
