"""A Markdown table of ``bench_gpu_throughput.py`` records, one row per record and arm.

Usage::

    python benchmarks/gpu_throughput_table.py benchmarks/results/bench_gpu_throughput_*.json

Each row names the record (its file's stem; with its folder where files of several folders share a
stem, as ``gpu_session.sh``'s sessions' do), the record's settings (memory format, ``--compile``),
the arm, images/s, TFLOP/s achieved, model FLOPs utilisation against the record's named peak, peak
memory, and the two ratios of issue 18's targets (library / MONAI images/s and the library's MFU) on
the library row.
Under the table, the verdict on the targets: each network at its fastest setting among the records
(a user runs each as fast as it goes), so that a peer that failed to compile is compared as it ran.
A setting (memory format, compile mode) at which MONAI's arm ran in no record (cut off by a time
limit, or left out) cannot say how MONAI does there, so the speed ratio leaves the library's arm
at that setting out (the verdict says so); the MFU target, which needs no peer, still takes it.
MONAI and the library may be timed in separate records of one setting. Records of different settings
(image size, batch, dtype, device) get a verdict each.

Records a run left unfinished (``"complete": false``, written when ``timeout`` stopped it) are
marked "incomplete", with a row for each arm it did not reach; missing keys, null speeds and
unreadable files print "n/a" or say what is wrong rather than stop the table. The exit status is 1
when no record could be read.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    "record",
    "layout",
    "compile",
    "arm",
    "images/s",
    "TFLOP/s",
    "MFU",
    "peak GiB",
    "library / MONAI",
    "targets met",
)
HEADER = ("| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS))


NO_RECORD = "no readable record"


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: object) -> float | None:
    """``value`` as a float, or ``None`` when it is not a finite number (null, missing, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _number(value: object, digits: int) -> str:
    found = _num(value)
    return "n/a" if found is None else f"{found:,.{digits}f}"


def _layout(record: dict[str, Any]) -> str:
    channels_last = record.get("channels_last")
    return "n/a" if channels_last is None else ("channels_last" if channels_last else "contiguous")


def rows(record: dict[str, Any], *, name: str) -> list[str]:
    """The table rows of one record (arms that did not run are left out; a failed arm says why).

    Example:
        >>> record = {"channels_last": False, "compile": "off", "ratios": {"library_vs_monai": 2.0},
        ...           "targets": {"a": True, "b": False},
        ...           "arms": {"library": {"images_per_s": 100.0, "achieved_tflops": 30.0, "mfu": 0.03,
        ...                                "peak_memory_gib": 4.0, "compile": "off"}, "monai": None}}
        >>> rows(record, name="r")[0]
        '| r | contiguous | off | library | 100.0 | 30.0 | 3.0 % | 4.0 | 2.00 | 1 of 2 |'
        >>> rows({"complete": False, "arms": {"library": {"images_per_s": None}}, "arms_pending": ["monai"],
        ...       "state": "stopped by SIGTERM during monai"}, name="r")  # doctest: +NORMALIZE_WHITESPACE
        ['| r (incomplete) | n/a | None | library | n/a | n/a | n/a | n/a | |  |',
         '| r (incomplete) | n/a | None | monai | not run: stopped by SIGTERM during monai |  |  |  |  |  |']
    """
    label = f"{name} (incomplete)" if record.get("complete") is False else name
    norm = record.get("norm_precision")
    out = []
    for arm, entry in _dict(record.get("arms")).items():
        if entry is None:
            continue
        layout = _layout(record)
        if arm != "monai" and norm not in (None, "float32"):  # the library's U-Net only
            layout += f", norm {norm}"
        if not isinstance(entry, dict) or "error" in entry:
            error = str(entry.get("error") or "no message") if isinstance(entry, dict) else "malformed entry"
            failed = (error.splitlines() or ["no message"])[0][:80].replace("|", "/")
            cells = [label, layout, str(record.get("compile")), arm, f"failed: {failed}", *[""] * 5]
            out.append("| " + " | ".join(cells) + " |")
            continue
        mfu = _num(entry.get("mfu"))
        ratio = _num(_dict(record.get("ratios")).get("library_vs_monai")) if arm == "library" else None
        targets = [v for v in _dict(record.get("targets")).values() if isinstance(v, bool)]
        met = f"{sum(targets)} of {len(targets)}" if arm == "library" and targets else ""
        cells = [
            label,
            layout,
            str(entry.get("compile", record.get("compile"))),
            arm,
            _number(entry.get("images_per_s"), 1),
            _number(entry.get("achieved_tflops"), 1),
            "n/a" if mfu is None else f"{100 * mfu:.1f} %",
            _number(entry.get("peak_memory_gib"), 1),
            "" if ratio is None else f"{ratio:.2f}",
            met,
        ]
        out.append("| " + " | ".join(cells) + " |")
    pending = record.get("arms_pending") if record.get("complete") is False else None
    layout = _layout(record)
    for arm in pending if isinstance(pending, list) else []:
        why = str(record.get("state") or "the run stopped first").replace("|", "/")
        cells = [label, layout, str(record.get("compile")), str(arm), f"not run: {why}", *[""] * 5]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _fastest(records: dict[str, dict[str, Any]], arm: str) -> tuple[str, dict[str, Any]] | None:
    """The record name and entry where ``arm`` ran fastest, or ``None`` where it never ran."""
    ran = []
    for name, record in records.items():
        entry = _dict(record).get("arms")
        entry = _dict(entry).get(arm)
        if isinstance(entry, dict) and _num(entry.get("images_per_s")):
            ran.append((name, entry))
    return max(ran, key=lambda pair: float(pair[1]["images_per_s"]), default=None)


def _setting(record: dict[str, Any], arm: str) -> tuple[str, str]:
    """The memory format and compile mode ``arm`` ran with in ``record``."""
    entry = _dict(_dict(record.get("arms")).get(arm))
    return _layout(record), str(entry.get("compile", record.get("compile")))


def _peer_settings(records: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    """The settings at which MONAI's arm ran or failed in some record, rather than never running
    (left out of a run, or cut off by its time limit)."""
    found = set()
    for record in records.values():
        entry = _dict(record).get("arms")
        entry = _dict(entry).get("monai")
        if isinstance(entry, dict) and ("error" in entry or _num(entry.get("images_per_s")) is not None):
            found.add(_setting(_dict(record), "monai"))
    return found


def verdict(records: dict[str, dict[str, Any]], *, speedup: float = 1.5, mfu: float = 0.25) -> str:
    """Issue 18's targets, each network at its fastest setting among ``records`` (name -> record).

    The speed ratio takes the library's fastest at a setting (memory format, compile mode) where
    MONAI's arm ran or failed, in any record: a setting at which MONAI never ran says nothing of
    how it would do there.

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
    fastest, monai = _fastest(records, "library"), _fastest(records, "monai")
    if fastest is None:
        return "the library's arm ran in no record: no verdict"
    name, entry = fastest
    lines = [f"fastest library: {entry['images_per_s']:,.1f} images/s ({name})"]
    found = _num(entry.get("mfu"))
    lines[0] += ", MFU n/a" if found is None else f", MFU {100 * found:.1f} %"
    peer = _peer_settings(records)
    compared = _fastest(
        {n: r for n, r in records.items() if _setting(_dict(r), "library") in peer}, "library"
    )
    if monai is None:
        lines[0] += "; MONAI ran in no record"
        ratio_text = "library / MONAI: n/a"
    elif compared is None:
        lines[0] += f"; fastest MONAI: {monai[1]['images_per_s']:,.1f} images/s ({monai[0]})"
        ratio_text = "library / MONAI: not established (MONAI's arm ran in no record where the library's did)"
    else:
        lines[0] += f"; fastest MONAI: {monai[1]['images_per_s']:,.1f} images/s ({monai[0]})"
        if compared[0] != name:
            layout, mode = _setting(records[name], "library")
            lines.append(
                f"MONAI's arm never ran at the setting of {name} ({layout}, compile {mode}):"
                f" the ratio takes the library's fastest at a setting where MONAI's ran or failed, "
                f"{compared[1]['images_per_s']:,.1f} images/s ({compared[0]})"
            )
        ratio = compared[1]["images_per_s"] / monai[1]["images_per_s"]
        met = "met" if ratio >= speedup else "not met"
        ratio_text = f"library / MONAI = {ratio:.2f} (target >= {speedup:g}: {met})"
    mfu_text = "n/a" if found is None else ("met" if found >= mfu else "not met")
    lines.append(f"{ratio_text}; MFU target >= {100 * mfu:g} %: {mfu_text}")
    return "\n".join(lines)


def _settings(record: dict[str, Any]) -> str:
    """The settings a verdict may compare across: records that differ in them get one each."""
    keys = ("device", "image_size", "batch_size", "dtype")
    return ", ".join(f"{key} {record.get(key, 'n/a')}" for key in keys)


def labels(paths: Sequence[Path]) -> list[str]:
    """A name for each record that no other record of the table shares.

    The file's stem where no other has it; else with its folder (``gpu_session.sh`` gives every
    session's records the same names, each session a folder of its own); else the path as given.
    A file named twice is numbered.

    Example:
        >>> labels([Path("s1/gpu_eager.json"), Path("s2/gpu_eager.json"), Path("s2/gpu_other.json")])
        ['s1/gpu_eager', 's2/gpu_eager', 'gpu_other']
        >>> labels([Path("a/s/x.json"), Path("b/s/x.json"), Path("b/s/x.json")])
        ['a/s/x.json', 'b/s/x.json', 'b/s/x.json (2)']
    """
    stems = [path.stem for path in paths]
    folders = [f"{path.parent.name}/{path.stem}" for path in paths]
    found = []
    for path, stem, folder in zip(paths, stems, folders):
        if stems.count(stem) == 1:
            found.append(stem)
        elif folders.count(folder) == 1:
            found.append(folder)
        else:
            found.append(str(path))
    seen: dict[str, int] = {}
    unique = []
    for label in found:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


def _load(path: Path) -> dict[str, Any] | str:
    """The record in ``path``, or why it could not be read."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return record if isinstance(record, dict) else f"not a JSON object but {type(record).__name__}"


def main(argv: Sequence[str] | None = None) -> str:
    """Print (and return) the table of the records named on the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("records", nargs="*", type=Path, help="JSON records of bench_gpu_throughput.py")
    args = parser.parse_args(argv)
    lines = list(HEADER)
    devices = set()
    problems = []
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    # Keyed by a label unique to each file: keyed by stem, a second session's record of the same
    # name replaced the first's in the verdict.
    for path, name in zip(args.records, labels(args.records)):
        record = _load(path)
        if isinstance(record, str):
            problems.append(f"{path}: unreadable ({record})")
            continue
        device, torch, peak, source = (
            "n/a" if record.get(key) is None else record[key]
            for key in ("device", "torch", "peak_tflops", "peak_source")
        )
        devices.add(f"{device} (torch {torch}, peak {peak} TFLOP/s: {source})")
        lines.extend(rows(record, name=name))
        groups.setdefault(_settings(record), {})[name] = record
    if not groups:
        table = "\n".join([*problems, NO_RECORD])
        print(table)
        return table
    if len(groups) == 1:
        verdicts = [verdict(next(iter(groups.values())))]
    else:  # a verdict compares like with like only
        verdicts = [f"{settings}:\n{verdict(records)}" for settings, records in groups.items()]
    table = "\n".join([*sorted(devices), *problems, "", *lines, "", *verdicts])
    print(table)
    return table


if __name__ == "__main__":
    raise SystemExit(1 if main().endswith(NO_RECORD) else 0)
