"""The targets a benchmark record states, and whether each was met: the rows of ``run_all.py``'s summary.

Records state their targets in one of three forms: a ``targets`` mapping (target -> met), an
``entries`` list whose items each carry ``target_met``, or one ``target`` with its ``target_met``
at the top (``target_met`` ``None`` with an ``unreliable`` reason: the reason is the row's verdict).
A section of records (``gpu``) is searched one level down.
"""

from __future__ import annotations

from typing import Any


def targets(record: dict[str, Any], prefix: str = "") -> list[tuple[str, str, Any]]:
    """``(benchmark, target, met)`` of a record, or of each record in a section such as ``gpu``.

    Example:
        >>> section = {"training": {"targets": {"a>=1": True}}, "throughput": {"targets": {"b": None}}}
        >>> targets({"gpu": section}["gpu"], "gpu")
        [('gpu.training', 'a>=1', True), ('gpu.throughput', 'b', None)]
        >>> targets({"target": "threads >= 1.5x", "target_met": False, "seconds": {"a": 1.0}}, "preflight")
        [('preflight', 'threads >= 1.5x', False)]
    """
    found: list[tuple[str, str, Any]] = []
    stated = record.get("targets")
    if isinstance(stated, dict):
        found.extend((prefix, str(name), met) for name, met in stated.items())
    if "target_met" in record:
        met = record["target_met"]
        # A measurement too noisy to decide says so (bench_predict_writes, bench_cache_dir), not "None".
        if met is None and isinstance(record.get("unreliable"), str):
            met = record["unreliable"]
        found.append((prefix, str(record.get("target", "?")), met))
    entries = record.get("entries")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and "target_met" in entry:
            found.append((prefix, str(entry.get("source", entry.get("name", "?"))), entry["target_met"]))
    if "error" in record and prefix:
        found.append((prefix, "(benchmark failed)", f"error: {str(record['error']).splitlines()[0][:120]}"))
    if not found:  # a section of records: look one level down
        for name, sub in record.items():
            if isinstance(sub, dict):
                found.extend(targets(sub, f"{prefix}.{name}" if prefix else name))
    return found
