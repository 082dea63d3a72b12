"""The one row table of the analysis: filter and group rows, write them as CSV and Markdown.

A :class:`Table` holds rows of ``column -> value`` mappings: the long results of a study (one
row per run, item, class and metric), a paper table (one row per strategy), or the rows of a
training run's :class:`~inpaintssl.training.evaluation.EvaluationTable` (``Table(evaluation.rows)``).
Filters and group-bys return tables, so the numbers behind every table and figure are plain
filters over one type. CSV keeps full precision; Markdown rounds.

Example:
    >>> t = Table([{"arm": "ssl", "metric": "dice", "value": 0.8},
    ...            {"arm": "supervised", "metric": "dice", "value": 0.6}])
    >>> t.select(arm="ssl").column("value").tolist(), t.unique("arm")
    ([0.8], ['ssl', 'supervised'])
    >>> print(Table([("FEF", 1.5e-18)], name="demo", columns=("strategy", "p_value")).to_markdown())
    | strategy | p_value |
    | --- | --- |
    | FEF | 1.5e-18 |
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inpaintssl.atomic import atomic_write_text

__all__ = ["Table", "format_value", "markdown_text"]


def _is_float_list(value: Any) -> bool:
    """Whether ``value`` is a non-empty list or tuple of non-integer numbers (one difference per seed).

    Integers are left out: a list of them is a setting (an image size ``[112, 112]``), not measured
    differences, and ``+112.0 +112.0`` would not read back as it.
    """
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral) for v in value)
    )


def _plain(value: Any) -> Any:
    # json.dumps's fallback: a NumPy number as the Python number it holds, anything else as text.
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return str(value)


def _json_text(value: Any) -> str:
    # A list or mapping other than measured differences, e.g. a grid value such as an image size
    # [112, 112] or a list of datasets: JSON reads back as the value (str() would write Python).
    return json.dumps(value, default=_plain)


def format_value(value: Any, *, digits: int = 3) -> str:
    """Human-readable cell: ``digits`` significant digits, scientific notation for tiny p-values.

    A list of non-integer numbers (one difference per seed) is written as signed numbers; any other
    list (an image size ``[112, 112]``, a list of datasets), and a mapping, as JSON.

    Example:
        >>> format_value(0.123456), format_value(1.05e-17), format_value(None), format_value(93.6)
        ('0.123', '1.05e-17', '', '93.6')
        >>> format_value([0.1234, -0.02])
        '+0.123 -0.02'
        >>> format_value([112, 112]), format_value([{"dataset": "mni152"}]), format_value([])
        ('[112, 112]', '[{"dataset": "mni152"}]', '[]')
        >>> import numpy as np
        >>> format_value(np.float32(0.8123456)), format_value(np.int64(7))
        ('0.812', '7')
    """
    if value is None:
        return ""
    if _is_float_list(value):
        return " ".join(f"{v:+.{digits}g}" for v in value)
    if isinstance(value, (list, tuple, Mapping)):
        return _json_text(value)
    # numbers.Real, not (int, float): a NumPy float32 (a user's table, a tensor's .numpy()) is no
    # Python float, and was written with all its digits.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def _csv_cell(value: Any) -> Any:
    # A list of non-integer numbers (e.g. one difference per seed) stays one CSV field: signed
    # values, space-separated. Any other list (a grid value such as an image size or a list of
    # datasets) or a mapping is JSON, which reads back as the value.
    if value is None:
        return ""
    if _is_float_list(value):
        return " ".join(f"{float(v):+}" for v in value)
    if isinstance(value, (list, tuple, Mapping)):
        return _json_text(value)
    return value


# Backslash-escaped (CommonMark's escape for ASCII punctuation): "<" would open an HTML tag that a
# renderer drops ("<lambda>() missing ..." read "() missing ..."), "&" an entity ("&lt;" shown as "<"),
# a backslash would escape what follows it, and in a table "|" would end the cell.
_MARKDOWN_ACTIVE = re.compile(r"([\\<&|])")


def markdown_text(text: str) -> str:
    r"""``text`` escaped for Markdown, so that a renderer shows it as written: no tag, entity or cell end.

    Example:
        >>> print(markdown_text("boom | <x> & y"))
        boom \| \<x> \& y
    """
    return _MARKDOWN_ACTIVE.sub(r"\\\1", text)


def _markdown_cell(text: str) -> str:
    # A line break would end the row (an error message quoted in a note).
    return markdown_text(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def _sort_key(value: Any) -> tuple[int, Any]:
    # None sorts last; numbers numerically; everything else as text.
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


class Table:
    """Rows of ``column -> value`` mappings with a name (file stem) and a title (caption).

    Args:
        rows: Mappings, or sequences aligned with ``columns``. Missing keys read as ``None``.
        name: File stem used by :meth:`write`, e.g. ``table2_l2_norm``.
        title: Caption, citing the paper's table or figure it mirrors.
        columns: Column order; default: every key in first-seen order.

    Raises:
        ValueError: A sequence row whose length differs from ``columns`` (or no ``columns``).
    """

    __slots__ = ("_columns", "_rows", "name", "title")

    def __init__(
        self,
        rows: Iterable[Mapping[str, Any] | Sequence[Any]] = (),
        *,
        name: str = "table",
        title: str = "",
        columns: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.title = title
        self._columns = tuple(columns) if columns is not None else None
        self._rows = tuple(self._as_mapping(i, row) for i, row in enumerate(rows))

    def _as_mapping(self, index: int, row: Mapping[str, Any] | Sequence[Any]) -> Mapping[str, Any]:
        if isinstance(row, Mapping):
            return row
        if self._columns is None or len(row) != len(self._columns):
            expected = "no columns given" if self._columns is None else f"expected {len(self._columns)}"
            raise ValueError(
                f"table {self.name!r}: row {index} has {len(row)} cells, {expected} "
                f"(columns {list(self._columns or ())})"
            )
        return dict(zip(self._columns, row))

    def _like(self, rows: Iterable[Mapping[str, Any]]) -> Table:
        return Table(rows, name=self.name, title=self.title, columns=self._columns)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self._rows)

    def __repr__(self) -> str:
        return f"Table(name={self.name!r}, rows={len(self._rows)}, columns={list(self.columns)})"

    @property
    def rows(self) -> tuple[Mapping[str, Any], ...]:
        """The rows."""
        return self._rows

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names: the given order, else every key in first-seen order."""
        if self._columns is not None:
            return self._columns
        names: dict[str, None] = {}
        for row in self._rows:
            names.update(dict.fromkeys(row))
        return tuple(names)

    def tuples(self) -> tuple[tuple[Any, ...], ...]:
        """The rows as tuples aligned with :attr:`columns`."""
        columns = self.columns
        return tuple(tuple(row.get(c) for c in columns) for row in self._rows)

    def select(self, **equals: Any) -> Table:
        """Rows whose columns equal the given values, e.g. ``select(metric="dice", level="image")``."""
        return self._like(r for r in self._rows if all(r.get(k) == v for k, v in equals.items()))

    def where(self, predicate: Callable[[Mapping[str, Any]], bool]) -> Table:
        """Rows for which ``predicate(row)`` is true."""
        return self._like(r for r in self._rows if predicate(r))

    def unique(self, column: str) -> list[Any]:
        """Distinct values of a column, sorted (numbers numerically, ``None`` last)."""
        return sorted({r.get(column) for r in self._rows}, key=_sort_key)

    def column(self, name: str) -> npt.NDArray[np.float64]:
        """A numeric column as float64 (missing or ``None`` -> NaN)."""
        return np.array(
            [math.nan if r.get(name) is None else float(r[name]) for r in self._rows], dtype=np.float64
        )

    def cells(self, name: str) -> list[Any]:
        """The raw cells of one column.

        Raises:
            KeyError: No such column (the message lists the columns).
        """
        if name not in self.columns:
            raise KeyError(f"table {self.name!r} has no column {name!r}; columns are {list(self.columns)}")
        return [row.get(name) for row in self._rows]

    def groups(self, *columns: str) -> dict[tuple[Any, ...], Table]:
        """Split by the values of ``columns``; keys sorted like :meth:`unique`."""
        parts: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        for row in self._rows:
            parts.setdefault(tuple(row.get(c) for c in columns), []).append(row)
        ordered = sorted(parts, key=lambda key: tuple(_sort_key(v) for v in key))
        return {key: self._like(parts[key]) for key in ordered}

    def to_csv_text(self) -> str:
        """The table as CSV at full precision (NaN and inf as ``nan``/``inf``, ``None`` empty).

        A list of non-integer numbers is one field of signed numbers (``+0.1 -0.02``); any other
        list, and a mapping, is JSON (a grid value such as ``[112, 112]``).
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([_csv_cell(v) for v in row] for row in self.tuples())
        return buffer.getvalue()

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_csv_text` to ``path`` atomically; return the path."""
        atomic_write_text(path, self.to_csv_text())
        return Path(path)

    def to_markdown(self, *, digits: int = 3) -> str:
        """The table as a GitHub-flavoured Markdown table with rounded numbers.

        A ``|`` in a cell is escaped (``\\|``) and a line break becomes a space, so that every row
        keeps its columns.
        """
        lines = [
            "| " + " | ".join(_markdown_cell(c) for c in self.columns) + " |",
            "| " + " | ".join("---" for _ in self.columns) + " |",
        ]
        for row in self.tuples():
            cells = (_markdown_cell(format_value(v, digits=digits)) for v in row)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``<folder>/<name>.csv`` and ``<folder>/<name>.md`` atomically; return both paths."""
        folder = Path(folder)
        csv_path, md_path = folder / f"{self.name}.csv", folder / f"{self.name}.md"
        self.to_csv(csv_path)
        atomic_write_text(md_path, f"**{self.title}**\n\n{self.to_markdown()}\n")
        return csv_path, md_path
