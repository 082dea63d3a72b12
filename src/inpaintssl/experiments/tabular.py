"""A small named table written as CSV (full precision) and Markdown (rounded), atomically.

Example:
    >>> t = Table("demo", "A demo", ("strategy", "p_value"), (("FEF", 1.5e-18), ("FBF", 0.25)))
    >>> print(t.to_markdown())
    | strategy | p_value |
    | --- | --- |
    | FEF | 1.5e-18 |
    | FBF | 0.25 |
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inpaintssl.atomic import atomic_write_text

__all__ = ["Table", "format_value"]


def format_value(value: Any, *, digits: int = 3) -> str:
    """Human-readable cell: ``digits`` significant digits, scientific notation for tiny p-values.

    Example:
        >>> format_value(0.123456), format_value(1.05e-17), format_value(None), format_value(93.6)
        ('0.123', '1.05e-17', '', '93.6')
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


@dataclass(frozen=True)
class Table:
    """A titled table.

    Attributes:
        name: File stem, e.g. ``table2_l2_norm``.
        title: Caption, citing the paper's table or figure it mirrors.
        columns: Column headers.
        rows: One tuple per row, aligned with ``columns``.
    """

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.name!r}: row {i} has {len(row)} cells, expected {len(self.columns)} "
                    f"(columns {list(self.columns)})"
                )

    def to_csv_text(self) -> str:
        """The table as CSV at full precision (NaN and inf as ``nan``/``inf``)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(["" if v is None else v for v in row] for row in self.rows)
        return buffer.getvalue()

    def to_markdown(self, *, digits: int = 3) -> str:
        """The table as a GitHub-flavoured Markdown table with rounded numbers."""
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "| " + " | ".join("---" for _ in self.columns) + " |",
        ]
        for row in self.rows:
            lines.append("| " + " | ".join(format_value(v, digits=digits) for v in row) + " |")
        return "\n".join(lines)

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``<folder>/<name>.csv`` and ``<folder>/<name>.md`` atomically; return both paths."""
        folder = Path(folder)
        csv_path, md_path = folder / f"{self.name}.csv", folder / f"{self.name}.md"
        atomic_write_text(csv_path, self.to_csv_text())
        atomic_write_text(md_path, f"**{self.title}**\n\n{self.to_markdown()}\n")
        return csv_path, md_path

    def column(self, name: str) -> list[Any]:
        """The cells of one column.

        Raises:
            KeyError: No such column (the message lists the columns).
        """
        if name not in self.columns:
            raise KeyError(f"table {self.name!r} has no column {name!r}; columns are {list(self.columns)}")
        i = self.columns.index(name)
        return [row[i] for row in self.rows]
