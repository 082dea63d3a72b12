"""Sizes in bytes as people write and read them: ``50G``, ``1.5 TiB``, ``500MB``.

Binary units (``K``, ``M``, ``G``, ``T``, ``P``, alone or as ``KiB`` ... ``PiB``) are powers of
1024, as ``du -h`` and ``ls -h`` print them; ``KB`` ... ``PB`` are powers of 1000, as disks are
sold. :func:`format_bytes` writes binary units.

Example:
    >>> parse_byte_size("50G") == 50 * 2**30, parse_byte_size("500MB"), format_bytes(3 * 2**20)
    (True, 500000000, '3.0 MiB')
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["format_bytes", "parse_byte_size"]

_UNITS: Mapping[str, int] = MappingProxyType(
    {
        "": 1,
        "b": 1,
        **{f"{prefix}": 1024**power for power, prefix in enumerate("kmgtp", start=1)},
        **{f"{prefix}ib": 1024**power for power, prefix in enumerate("kmgtp", start=1)},
        **{f"{prefix}b": 1000**power for power, prefix in enumerate("kmgtp", start=1)},
    }
)

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_byte_size(text: str, *, bare_example: bool = True) -> int:
    """The bytes ``text`` says: a number and an optional unit (``B``, ``K``/``KiB``, ``KB``, ... ``P``).

    Args:
        text: The size as written.
        bare_example: Whether the refusal offers a bare number of bytes (``'4096'``) as an
            example: not where the caller refuses bare numbers itself (``cache prune --max-size``).

    Raises:
        ValueError: ``text`` is not a number with one of those units (the message quotes it).

    Example:
        >>> parse_byte_size("1.5 KiB"), parse_byte_size("2k"), parse_byte_size("0")
        (1536, 2048, 0)
    """
    match = _SIZE.fullmatch(text)
    unit = None if match is None else _UNITS.get(match.group(2).lower())
    if match is None or unit is None:
        examples = "'50G' or '50GiB' (powers of 1024), '50GB' (powers of 1000)"
        # Where bare numbers are refused, the message neither calls the unit optional nor offers
        # a bare '4096': the caller would refuse what its own message suggested.
        expected = (
            f"a number of bytes with an optional unit, such as {examples} or '4096'"
            if bare_example
            else f"a number with its unit, such as {examples} or '4096B' (bytes)"
        )
        raise ValueError(f"{text!r} is not a size: expected {expected}")
    # Decimal, not float: 295149PB is 295149 * 10**15 exactly, where a float is 32768 bytes off.
    return round(decimal.Decimal(match.group(1)) * unit)


def format_bytes(count: float) -> str:
    """Bytes in binary units, two significant figures at least.

    Example:
        >>> format_bytes(170 * 2**30), format_bytes(3 * 2**20), format_bytes(1.6 * 2**40), format_bytes(320)
        ('170 GiB', '3.0 MiB', '1.6 TiB', '320 B')
    """
    value = float(count)
    if value < 1024:
        return f"{value:.0f} B"  # a byte is not divided
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
