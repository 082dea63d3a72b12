"""``inpaintssl cache info|prune``: what a ``data.cache_dir`` folder holds, and removing what is unused.

::

    inpaintssl cache info /scratch/me/decompressed [--json]
    inpaintssl cache prune /scratch/me/decompressed [--stale] [--unused-for 30d] [--max-size 200G]
                           [--dry-run] [--json]

Runs never remove a decompressed volume (:mod:`inpaintssl.data.decompressed_upkeep`); ``prune``
removes the ones whose source files were rewritten or removed (``--stale``), those unused past
an age (``--unused-for``: ``90m``, ``12h``, ``30d``, ``2w``), then the longest unused down to a
size (``--max-size``: ``200G`` or ``200GiB`` are powers of 1024, ``200GB`` of 1000). It is safe
while runs read the folder: a run keeps what it has open and decompresses again what it opens
later. ``prune`` exits 1 when a volume it chose could not be removed (each is named). The work is
:func:`inpaintssl.api.list_decompressed` and :func:`inpaintssl.api.prune_decompressed`.

Example:
    >>> import argparse, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> run_cache_command(argparse.Namespace(cache_command="info", folder=folder, json=False))
    ... # doctest: +ELLIPSIS
    /...: 0 decompressed volumes, 0 B
    0
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import re
from types import MappingProxyType
from typing import Any

from inpaintssl.byte_sizes import format_bytes, parse_byte_size

__all__ = ["parse_age", "parse_size", "run_cache_command"]

_AGE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)\s*")
# Lower case only: "M" is months to systemd and ISO 8601, and minutes here would remove far more.
_AGE_UNITS = MappingProxyType({"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400})
_DAYS_PER_MONTH = 30  # only to suggest a number of days for "M": never parsed


def _number(value: float) -> str:
    """``value`` as a user would write it: ``180``, ``1.5``."""
    return f"{value:.15g}"


def parse_age(text: str) -> datetime.timedelta:
    """``--unused-for``: a number and a lower-case unit (``s``, ``m``/``min``, ``h``, ``d``, ``w``).

    A bare number is refused: minutes or days, a prune must not guess. So is an upper-case unit:
    ``6M`` is six months to systemd and ISO 8601, and read as minutes it would remove nearly
    every volume.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not such an age (the message quotes it; for an
            upper-case unit it gives the lower-case spelling, and for ``M`` the months in days).

    Example:
        >>> parse_age("30d"), parse_age("1.5h")
        (datetime.timedelta(days=30), datetime.timedelta(seconds=5400))
    """
    match = _AGE.fullmatch(text)
    if match is not None and match.group(2) not in _AGE_UNITS and match.group(2).lower() in _AGE_UNITS:
        count, unit = float(match.group(1)), match.group(2)
        if unit == "M":
            meant = f"for {_number(count)} months give days, such as '{_number(count * _DAYS_PER_MONTH)}d'"
        else:
            meant = f"give '{_number(count)}{unit.lower()}'"
        raise argparse.ArgumentTypeError(
            f"expected a lower-case unit (s, m for minutes, h, d, w); found {text!r}: {meant}"
        )
    try:
        if match is not None and match.group(2) in _AGE_UNITS:
            return datetime.timedelta(seconds=float(match.group(1)) * _AGE_UNITS[match.group(2)])
    except OverflowError:
        pass  # past timedelta's 999,999,999 days: no file is that old
    raise argparse.ArgumentTypeError(
        f"expected an age with its unit (s, m, h, d, w), such as '90m', '12h', '30d' or '2w'; found {text!r}"
    )


def parse_size(text: str) -> int:
    """``--max-size``: :func:`~inpaintssl.byte_sizes.parse_byte_size` with its unit, refused as an
    argument error.

    A bare number other than 0 is refused, as ``--unused-for``'s is: it would be bytes, and
    ``--max-size 200`` meant as 200G removed every volume (so did ``0.5``, rounded to 0 bytes).

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a size, or is a number other than 0 without a
            unit (the message quotes it and suggests units).

    Example:
        >>> parse_size("1.5G") == 3 * 2**29, parse_size("4096B"), parse_size("0")
        (True, 4096, 0)
    """
    try:
        size = parse_byte_size(text, bare_example=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    # The text, not the rounded size, decides: "0.5" (a unit forgotten) rounds to 0 bytes, which is
    # allowed only when the user wrote zero.
    number = text.strip()
    if number.replace(".", "", 1).isdigit() and decimal.Decimal(number) != 0:
        raise argparse.ArgumentTypeError(
            f"expected a size with its unit, such as '{number}G' or '{number}GiB' (powers of "
            f"1024), '{number}GB' (of 1000) or '{number}B' (bytes); found {text!r}"
        )
    return size


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


def _volumes(count: int) -> str:
    return f"{count} decompressed volume{'' if count == 1 else 's'}"


def _info(args: argparse.Namespace) -> int:
    from inpaintssl.api import list_decompressed  # here: the parser imports this module, PyTorch-free

    contents = list_decompressed(args.folder)
    if args.json:
        record: dict[str, Any] = {
            "folder": str(contents.folder),
            "files": [
                {
                    "path": str(f.path),
                    "size": f.size,
                    "last_used": f.last_used,
                    "source": None if f.source is None else f.source.source,
                    "stale": f.stale,
                    "changes": None if f.changes is None else list(f.changes),
                }
                for f in contents.files
            ],
            "total_size": contents.total_size,
            "temporaries": [str(p) for p in contents.temporaries],
            "orphaned_records": [str(p) for p in contents.orphaned_records],
            "other": [str(p) for p in contents.other],
        }
        print(json.dumps(record, indent=2))
        return 0
    print(f"{contents.folder}: {_volumes(len(contents.files))}, {format_bytes(contents.total_size)}")
    if contents.files:
        oldest, newest = contents.files[0].last_used, contents.files[-1].last_used
        print(f"  last used from {_when(oldest)} (the longest unused) to {_when(newest)}")
    stale = [f for f in contents.files if f.stale]
    if stale:
        print(
            f"  {_volumes(len(stale))} ({format_bytes(sum(f.size for f in stale))}) of source files "
            "since rewritten or removed: no run reads them again (prune --stale removes them)"
        )
    unknown = sum(f.stale is None for f in contents.files)
    if unknown:
        print(f"  {_volumes(unknown)} without a record of their sources (their next use records them)")
    if contents.temporaries:
        print(
            f"  {len(contents.temporaries)} temporary file(s): being written, or left by a killed "
            "writer (prune removes those)"
        )
    if contents.other:
        print(
            f"  {len(contents.other)} other entr{'y' if len(contents.other) == 1 else 'ies'}, never touched"
        )
    return 0


def _prune(args: argparse.Namespace) -> int:
    if args.max_size is None and args.unused_for is None and not args.stale:
        raise ValueError("give --stale, --unused-for, --max-size or several; found none")
    from inpaintssl.api import prune_decompressed

    report = prune_decompressed(
        args.folder,
        max_size=args.max_size,
        unused_for=args.unused_for,
        stale=args.stale,
        dry_run=args.dry_run,
    )
    status = 1 if report.failed else 0
    if args.json:
        record: dict[str, Any] = {
            "folder": str(report.folder),
            "dry_run": report.dry_run,
            "removed": [str(f.path) for f in report.removed],
            "freed_size": report.freed_size,
            "kept": len(report.kept),
            "kept_size": report.kept_size,
            "temporaries_removed": [str(p) for p in report.temporaries_removed],
            "records_removed": [str(p) for p in report.records_removed],
            "failed": [{"path": str(f.path), "reason": reason} for f, reason in report.failed],
        }
        print(json.dumps(record, indent=2))
        return status
    verb = "would remove" if report.dry_run else "removed"
    print(
        f"{report.folder}: {verb} {_volumes(len(report.removed))} ({format_bytes(report.freed_size)}); "
        f"{len(report.kept)} left ({format_bytes(report.kept_size)})"
    )
    if report.temporaries_removed:
        print(f"  {verb} {len(report.temporaries_removed)} temporary file(s) left by killed writers")
    for entry, reason in report.failed:
        print(f"  could not remove {entry.path}: {reason}")
    return status


def run_cache_command(args: argparse.Namespace) -> int:
    """Run ``inpaintssl cache <info|prune>`` from parsed arguments; return the exit status."""
    return _prune(args) if args.cache_command == "prune" else _info(args)
