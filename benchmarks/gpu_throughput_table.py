"""A Markdown table of ``bench_gpu_throughput.py`` records, one row per record and arm.

Usage::

    python benchmarks/gpu_throughput_table.py benchmarks/results/bench_gpu_throughput_*.json

Each row names the record's settings (memory format, ``--compile``), the arm, images/s, TFLOP/s
achieved, model FLOPs utilisation against the record's named peak, peak memory, and the two
ratios of issue 18's targets (library / MONAI images/s and the library's MFU) on the library row.
Under the table, the verdict on the targets: each network at its fastest setting among the records
(a user runs each as fast as it goes), so that a peer that failed to compile is compared as it ran.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("record", "layout", "compile", "arm", "images/s", "TFLOP/s", "MFU", "peak GiB", "library / MONAI",
           "targets met")
HEADER = ("| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS))


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def rows(record: dict[str, Any], *, name: str) -> list[str]:
    """The table rows of one record (arms that did not run are left out; a failed arm says why).

    Example:
        >>> record = {"channels_last": False, "compile": "off", "ratios": {"library_vs_monai": 2.0},
        ...           "targets": {"a": True, "b": False},
        ...           "arms": {"library": {"images_per_s": 100.0, "achieved_tflops": 30.0, "mfu": 0.03,
        ...                                "peak_memory_gib": 4.0, "compile": "off"}, "monai": None}}
        >>> rows(record, name="r")[0]
        '| r | contiguous | off | library | 100.0 | 30.0 | 3.0 % | 4.0 | 2.00 | 1 of 2 |'
    """
    layout = "channels_last" if record["channels_last"] else "contiguous"
    out = []
    for arm, entry in record["arms"].items():
        if entry is None:
            continue
        if "error" in entry:
            failed = entry["error"].splitlines()[0][:80].replace("|", "/")
            cells = [name, layout, str(record.get("compile")), arm, f"failed: {failed}", *[""] * 5]
            out.append("| " + " | ".join(cells) + " |")
            continue
        mfu = entry.get("mfu")
        ratio = record["ratios"].get("library_vs_monai") if arm == "library" else None
        targets = [v for v in record["targets"].values() if v is not None]
        met = f"{sum(targets)} of {len(targets)}" if arm == "library" and targets else ""
        cells = [
            name,
            layout,
            str(entry.get("compile", record.get("compile"))),
            arm,
            _number(entry["images_per_s"], 1),
            _number(entry["achieved_tflops"], 1),
            "n/a" if mfu is None else f"{100 * mfu:.1f} %",
            _number(entry.get("peak_memory_gib"), 1),
            "" if ratio is None else f"{ratio:.2f}",
            met,
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _fastest(records: dict[str, dict[str, Any]], arm: str) -> tuple[str, dict[str, Any]] | None:
    """The record name and entry where ``arm`` ran fastest, or ``None`` where it never ran."""
    ran = [
        (name, record["arms"][arm])
        for name, record in records.items()
        if record["arms"].get(arm) and "images_per_s" in record["arms"][arm]
    ]
    return max(ran, key=lambda pair: pair[1]["images_per_s"], default=None)


def verdict(records: dict[str, dict[str, Any]], *, speedup: float = 1.5, mfu: float = 0.25) -> str:
    """Issue 18's targets, each network at its fastest setting among ``records`` (name -> record).

    Example:
        >>> def rec(library, monai):
        ...     arms = {"library": {"images_per_s": library, "mfu": library / 1000},
        ...             "monai": monai if isinstance(monai, dict) else {"images_per_s": monai}}
        ...     return {"arms": arms}
        >>> records = {"eager": rec(100.0, 80.0), "compiled": rec(300.0, {"error": "inductor"})}
        >>> print(verdict(records))
        fastest library: 300.0 images/s (compiled), MFU 30.0 %; fastest MONAI: 80.0 images/s (eager)
        library / MONAI = 3.75 (target >= 1.5: met); MFU target >= 25 %: met
    """
    library, monai = _fastest(records, "library"), _fastest(records, "monai")
    if library is None:
        return "the library's arm ran in no record: no verdict"
    name, entry = library
    lines = [f"fastest library: {entry['images_per_s']:,.1f} images/s ({name})"]
    found = entry.get("mfu")
    lines[0] += ", MFU n/a" if found is None else f", MFU {100 * found:.1f} %"
    if monai is None:
        lines[0] += "; MONAI ran in no record"
        ratio_text = "library / MONAI: n/a"
    else:
        lines[0] += f"; fastest MONAI: {monai[1]['images_per_s']:,.1f} images/s ({monai[0]})"
        ratio = entry["images_per_s"] / monai[1]["images_per_s"]
        met = "met" if ratio >= speedup else "not met"
        ratio_text = f"library / MONAI = {ratio:.2f} (target >= {speedup:g}: {met})"
    mfu_text = "n/a" if found is None else ("met" if found >= mfu else "not met")
    lines.append(f"{ratio_text}; MFU target >= {100 * mfu:g} %: {mfu_text}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    """Print (and return) the table of the records named on the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("records", nargs="+", type=Path, help="JSON records of bench_gpu_throughput.py")
    args = parser.parse_args(argv)
    lines = list(HEADER)
    devices = set()
    records = {}
    for path in args.records:
        record = json.loads(path.read_text())
        devices.add(f"{record['device']} (torch {record['torch']}, peak {record['peak_tflops']} TFLOP/s: "
                    f"{record['peak_source']})")
        lines.extend(rows(record, name=path.stem))
        records[path.stem] = record
    table = "\n".join([*sorted(devices), "", *lines, "", verdict(records)])
    print(table)
    return table


if __name__ == "__main__":
    main()
