"""Each scan's qDESS parameters from a CSV table, a row per case (paper sec. 2.7).

The qDESS T2 model (:func:`~inpaintssl.metrics.qdess_t2`) needs every scan's repetition time,
first echo time, flip angle, and the area and duration of its spoiler gradient. A DICOM series
states most of them (:mod:`inpaintssl.data.dicom_acquisition`); an SKM-TEA scan's HDF5 file
states none, and the scans of a cohort differ. SKM-TEA ships them as ``all_metadata.csv``, a row
per scan. A table read here has:

- one case column: ``case`` (``predict``'s case name for an input: its file or folder name
  without suffixes) or SKM-TEA's ``MTR_ID``;
- a column for each parameter it gives, named as :func:`~inpaintssl.metrics.qdess_t2`'s keyword
  (``tr_ms``, ``te_ms``, ``flip_angle_deg``, ``gl_area``, ``tg_us``) or as ``all_metadata.csv``
  names it (:data:`SCAN_PARAM_COLUMNS`). Other columns are ignored, so SKM-TEA's file is read
  as it is.

An empty cell gives nothing for that scan (a series' own tag then serves). A row is checked when
its case is asked for (:meth:`ScanParameterTable.parameters_of`): a damaged row of a scan that is
not used stops nothing, and a used one is refused naming the file, the case and the column. Two
rows of one case are one row if they agree (the same numbers, however written: ``20`` and
``20.0``), refused if they differ (a re-export appended to the file would otherwise give whichever
came last). A row without a case name is never asked for.

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "spoilers.csv"
    >>> _ = path.write_text("case,gl_area,tg_us\\nknee_01,3132,1792\\n")
    >>> table = read_scan_parameter_table(path)
    >>> table.parameters_of("knee_01")
    {'gl_area': 3132.0, 'tg_us': 1792.0}
    >>> table.parameters_of("knee_02")
    {}
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from inpaintssl.data.base import DataError
from inpaintssl.data.checks import existing_path
from inpaintssl.data.dicom_acquisition import SCAN_PARAMETER_KEYS

__all__ = ["CASE_COLUMNS", "SCAN_PARAM_COLUMNS", "ScanParameterTable", "read_scan_parameter_table"]

SCAN_PARAM_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "tr_ms": "RepetitionTime",
        "te_ms": "EchoTime1",
        "flip_angle_deg": "FlipAngle",
        "gl_area": "SpoilerGradientArea",
        "tg_us": "SpoilerGradientTime",
    }
)
"""Scan parameter (:func:`~inpaintssl.metrics.qdess_t2`'s keyword) -> SKM-TEA ``all_metadata.csv`` column."""

CASE_COLUMNS = ("case", "MTR_ID")
"""The names a table's case column may have: the case name, or SKM-TEA's scan id."""


class ScanParameterTable:
    """A CSV table of scan parameters, a row per case, as :func:`read_scan_parameter_table` read it.

    Attributes:
        path: The file.
        case_column: The column naming each row's case (one of :data:`CASE_COLUMNS`).
        columns: Scan parameter -> the column that gives it, for each parameter the table has.
        sha256: The file's SHA-256 as read: a resumed ``predict`` compares it.
    """

    def __init__(
        self,
        *,
        path: Path,
        case_column: str,
        columns: Mapping[str, str],
        rows: Mapping[str, Sequence[tuple[int, Mapping[str, str]]]],
        sha256: str,
        what: str = "scan parameter table",
    ) -> None:
        self.path = path
        self.case_column = case_column
        self.columns: Mapping[str, str] = MappingProxyType(dict(columns))
        self.sha256 = sha256
        self._rows = {case: tuple(found) for case, found in rows.items()}
        self._what = what

    def __contains__(self, case: object) -> bool:
        return case in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def cases(self) -> tuple[str, ...]:
        """The case names with a row, in the file's order."""
        return tuple(self._rows)

    def _where(self, case: str) -> str:
        return f"{self._what} {self.path}, {self.case_column} {case!r}"

    def parameters_of(self, case: str) -> dict[str, float]:
        """The scan parameters ``case``'s row gives (its non-empty cells); ``{}`` when it has none.

        Raises:
            DataError: A cell that is no finite number, or two rows of the case that differ; the
                message names the file, the case and the column.
        """
        found = self._rows.get(case)
        if found is None:
            return {}
        (first_line, first), *later = found
        for line, row in later:
            differ = [col for col in self.columns.values() if not _same_cell(row[col], first[col])]
            if differ:
                raise DataError(
                    f"{self._what} {self.path}: {self.case_column} {case!r} has two rows that differ in "
                    f"{differ} (lines {first_line} and {line}); expected one row per scan"
                )
        values: dict[str, float] = {}
        for key, col in self.columns.items():
            cell = first[col]
            if not cell:
                continue
            try:
                values[key] = float(cell)
            except ValueError:
                raise DataError(
                    f"{self._where(case)}: column {col} holds {cell!r}; expected a number (the scan "
                    "parameter for its T2 map)"
                ) from None
        # float() reads "nan" and "inf": refused here, naming the file, not at the T2 map.
        bad = {self.columns[key]: value for key, value in values.items() if not math.isfinite(value)}
        if bad:
            raise DataError(
                f"{self._where(case)}: {bad} are not finite numbers; expected the scan's parameters"
            )
        return values


def _same_cell(one: str, other: str) -> bool:
    """Whether two cells give the same parameter: the same text, or the same number however written
    (a re-export through a spreadsheet or pandas writes ``20`` as ``20.0``)."""
    if one == other:
        return True
    try:
        return float(one) == float(other)
    except ValueError:
        return False


def _one_of(names: Sequence[str], header: Sequence[str], *, path: Path, what: str, role: str) -> str | None:
    present = [name for name in names if name in header]
    if len(present) > 1:
        raise DataError(f"{what} {path} has columns {present} for {role}; expected one of them")
    return present[0] if present else None


def read_scan_parameter_table(
    path: str | os.PathLike[str],
    *,
    what: str = "scan parameter table",
    case_columns: Sequence[str] = CASE_COLUMNS,
) -> ScanParameterTable:
    """Read a table of each scan's qDESS parameters (see the module docstring).

    Args:
        path: The CSV file (UTF-8, with or without the byte-order mark Excel writes).
        what: What the file is, to start error messages (``"SKM-TEA metadata file"``).
        case_columns: The names the case column may have.

    Raises:
        DataError: The file is missing or no CSV table, has no case column or two, no scan
            parameter column, or two columns for one parameter (its keyword and SKM-TEA's name).

    Example:
        >>> read_scan_parameter_table("all_metadata.csv").parameters_of("MTR_005")  # doctest: +SKIP
        {'tr_ms': 18.176, 'te_ms': 5.712, 'flip_angle_deg': 20.0, 'gl_area': 3132.0, 'tg_us': 1792.0}
    """
    source = existing_path(Path(path), what=what)
    data = source.read_bytes()
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which utf-8 would keep as part
        # of the first column's name ('\ufeffMTR_ID'), so the case column read as missing.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {source} is not UTF-8 text ({exc}); expected a CSV table") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or ()]
    reader.fieldnames = header
    case_column = _one_of(case_columns, header, path=source, what=what, role="the case")
    if case_column is None:
        raise DataError(
            f"{what} {source} has no case column: expected one named {' or '.join(case_columns)}; "
            f"found {header}"
        )
    columns: dict[str, str] = {}
    for key in SCAN_PARAMETER_KEYS:
        column = _one_of((key, SCAN_PARAM_COLUMNS[key]), header, path=source, what=what, role=key)
        if column is not None:
            columns[key] = column
    if not columns:
        named = ", ".join(f"{key} or {SCAN_PARAM_COLUMNS[key]}" for key in SCAN_PARAMETER_KEYS)
        raise DataError(
            f"{what} {source} has no scan parameter column: expected some of {named}; found {header}"
        )
    rows: dict[str, list[tuple[int, Mapping[str, str]]]] = {}
    try:
        for row in reader:
            case = (row.get(case_column) or "").strip()
            if case:
                cells = {col: (row.get(col) or "").strip() for col in columns.values()}
                rows.setdefault(case, []).append((reader.line_num, cells))
    except csv.Error as exc:
        raise DataError(f"{what} {source}, line {reader.line_num}: {exc}; expected a CSV table") from None
    return ScanParameterTable(
        path=source,
        case_column=case_column,
        columns=columns,
        rows=rows,
        sha256=hashlib.sha256(data).hexdigest(),
        what=what,
    )
