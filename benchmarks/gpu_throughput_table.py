"""A Markdown table of ``bench_gpu_throughput.py`` records, one row per record and arm.

Usage::

    python benchmarks/gpu_throughput_table.py benchmarks/results/bench_gpu_throughput_*.json

Each row names the record's settings (memory format, ``--compile``), the arm, images/s, TFLOP/s
achieved, model FLOPs utilisation against the record's named peak, peak memory, and the two
ratios of issue 18's targets (library / MONAI images/s and the library's MFU) on the library row.
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


def main(argv: Sequence[str] | None = None) -> str:
    """Print (and return) the table of the records named on the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("records", nargs="+", type=Path, help="JSON records of bench_gpu_throughput.py")
    args = parser.parse_args(argv)
    lines = list(HEADER)
    devices = set()
    for path in args.records:
        record = json.loads(path.read_text())
        devices.add(f"{record['device']} (torch {record['torch']}, peak {record['peak_tflops']} TFLOP/s: "
                    f"{record['peak_source']})")
        lines.extend(rows(record, name=path.stem))
    table = "\n".join([*sorted(devices), "", *lines])
    print(table)
    return table


if __name__ == "__main__":
    main()
