"""``volumes.csv`` across the predicts into one output: a case's row stays until it is predicted again.

A predict into an output that already holds a ``volumes.csv`` (a cohort predicted before, and now
a few repaired scans, or a second batch) merges its rows into it (:func:`merged_volume_table`): a
case it predicted gets its new row, in its old place; a case new to the table is appended; every
other case keeps its row as it was. The table so lists every case whose label map lies in the
output. The merge happens as the files are moved in
(:func:`~inpaintssl.inference.writing.commit`), which holds a lock for it, so predicts into one
output at the same time keep each other's rows.

Only tables of the same classes merge: an output whose ``volumes.csv`` has other class columns
(another model's) is refused before anything is predicted (:func:`check_volume_table`). Columns
that one of the two tables has and the other lacks (the mean T2 of a ``t2=True`` predict) are
kept, left empty in the rows that have none.

A case's row names the input it was predicted from (its ``file``). A predict whose case of that name
comes from another input (two folders' ``sub.nii.gz``, predicted into one output in two calls)
replaces that case's label map and row all the same, with a warning naming both inputs
(:func:`warn_if_other_inputs`), given as the files are moved in, so between predicts at the same
time too: case names are unique within one predict, not across predicts.

Example:
    >>> earlier = "case,file,wm_ml\\na,a.nii.gz,1.5\\nb,b.nii.gz,2.0\\n"
    >>> print(merged_volume_table(earlier, "case,file,wm_ml\\nb,b2.nii.gz,2.5\\nc,c.nii.gz,3.0\\n"), end="")
    case,file,wm_ml
    a,a.nii.gz,1.5
    b,b2.nii.gz,2.5
    c,c.nii.gz,3.0
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from inpaintssl.inference.results import PredictionError
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "MOVE_AWAY",
    "VOLUMES_CSV",
    "case_inputs",
    "cases_in",
    "check_volume_table",
    "merged_volume_table",
    "output_table_rows",
    "output_table_text",
    "warn_if_other_inputs",
]

VOLUMES_CSV = "volumes.csv"
"""The name of the table of every case's class volumes in a predict's output."""

MOVE_AWAY = "predict into another output, or move it away first"
"""What to do with a table in an output that no predict wrote: the end of the refusal's message."""


def _parsed(text: str, where: str) -> tuple[list[str], list[dict[str, str]]]:
    """A ``volumes.csv``'s header and rows; refused where it is no such table."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or ())
    if header[:2] != ["case", "file"]:
        raise PredictionError(
            f"{where} is no volumes.csv a predict wrote: its columns start {header[:2]}; expected case, "
            f"file and a volume per class: {MOVE_AWAY}"
        )
    return header, output_table_rows(reader, where)


def output_table_rows(reader: csv.DictReader[str], where: str) -> list[dict[str, str]]:
    """The rows of an output's table (``volumes.csv``, ``skipped.csv``) whose header was checked.

    Raises:
        PredictionError: A line is no CSV; the message names ``where`` and the line.
    """
    try:
        return list(reader)
    except csv.Error as exc:
        raise PredictionError(f"{where}, line {reader.line_num}: {exc}; {MOVE_AWAY}") from None


def _class_columns(header: Sequence[str]) -> list[str]:
    return [column for column in header[2:] if column.endswith("_ml")]


def output_table_text(path: Path) -> str:
    """The text of a table a predict wrote into its output (``volumes.csv``, ``skipped.csv``).

    Raises:
        PredictionError: It is no UTF-8 text; the message names it.
    """
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PredictionError(
            f"{path} is not UTF-8 text, so no {path.name} a predict wrote; {MOVE_AWAY}"
        ) from None


def check_volume_table(output: Path, class_names: Sequence[str]) -> None:
    """Refuse an ``output`` whose ``volumes.csv`` a predict of ``class_names`` cannot merge into.

    Raises:
        PredictionError: It is no table a predict wrote, or its class volume columns are not
            ``<class>_ml`` of ``class_names`` in order (another model's); the message names it.
    """
    path = output / VOLUMES_CSV
    if not path.is_file():
        return
    header, _ = _parsed(output_table_text(path), str(path))
    found, expected = _class_columns(header), [f"{name}_ml" for name in class_names]
    if found != expected:
        raise PredictionError(
            f"output {output} holds a volumes.csv of the class volumes {found}, but this run predicts "
            f"{expected}: the rows of another model's classes and these make no one table; {MOVE_AWAY}"
        )


def _merged_header(earlier: Sequence[str], new: Sequence[str]) -> list[str]:
    """``new``'s columns, and each of ``earlier``'s that it lacks after the column it follows there."""
    merged = list(new)
    for position, column in enumerate(earlier):
        if column in merged:
            continue
        before = earlier[position - 1] if position else None
        merged.insert(merged.index(before) + 1 if before in merged else len(merged), column)
    return merged


def merged_volume_table(earlier: str, new: str, *, where: str = VOLUMES_CSV) -> str:
    """The ``volumes.csv`` text of ``earlier``'s rows with ``new``'s merged in (see the module docstring).

    Raises:
        PredictionError: Either is no table a predict wrote, or their class columns differ; the
            message names ``where``.
    """
    earlier_header, earlier_rows = _parsed(earlier, where)
    new_header, new_rows = _parsed(new, "the new rows")
    if _class_columns(earlier_header) != _class_columns(new_header):
        raise PredictionError(
            f"{where} holds the class volumes {_class_columns(earlier_header)}, the rows to merge in "
            f"{_class_columns(new_header)}; expected one model's classes: {MOVE_AWAY}"
        )
    replacing = {row["case"]: row for row in new_rows}
    rows: list[dict[str, str]] = []
    placed: set[str] = set()
    for row in earlier_rows:
        case = row["case"]
        if case in placed:
            continue  # an earlier duplicate of a case predicted again: its one new row is placed
        if case in replacing:
            rows.append(replacing[case])
            placed.add(case)
        else:
            rows.append(row)
    rows += [row for row in new_rows if row["case"] not in placed]
    buffer = io.StringIO()
    fields = _merged_header(earlier_header, new_header)
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def case_inputs(table: str) -> list[tuple[str, Path]]:
    """Each row's case and input file (``file``, as its predict was given it) of ``volumes.csv`` text.

    Raises:
        PredictionError: It is no table a predict wrote.

    Example:
        >>> case_inputs("case,file,wm_ml\\nsub,site2/sub.nii.gz,1.5\\n")
        [('sub', PosixPath('site2/sub.nii.gz'))]
    """
    return [(row["case"], Path(row.get("file") or "")) for row in _parsed(table, VOLUMES_CSV)[1]]


def cases_in(table: str) -> set[str]:
    """The cases ``volumes.csv`` text ``table`` has rows of.

    Raises:
        PredictionError: It is no table a predict wrote.
    """
    return {row["case"] for row in _parsed(table, VOLUMES_CSV)[1]}


def _same_input(recorded: str, path: Path) -> bool:
    """Whether a row's ``file`` (``recorded``, as the earlier predict was given it) is the input ``path``.

    Resolved from the current folder; a relative path that resolves elsewhere still counts as the
    same input where ``path`` ends with it (the earlier predict ran in a folder above), so that
    only inputs that differ are reported.
    """
    earlier = Path(recorded).expanduser()
    current = path.resolve()
    if earlier.resolve() == current:
        return True
    if earlier.is_absolute():
        return False
    parts = Path(os.path.normpath(earlier)).parts
    return ".." not in parts and current.parts[-len(parts) :] == parts


def warn_if_other_inputs(output: Path, cases: Sequence[tuple[str, Path]]) -> None:
    """Warn for each case whose row in ``output``'s ``volumes.csv`` names another input than ``cases`` gives.

    Its label map and row are replaced by this predict's, from another scan: two folders'
    ``sub.nii.gz`` predicted into one output in two calls are one case ``sub``.

    Args:
        output: The folder predicted into.
        cases: Each case's name and input path, in this predict.
    """
    path = output / VOLUMES_CSV
    if not path.is_file():
        return
    earlier = {row["case"]: row.get("file") or "" for row in _parsed(output_table_text(path), str(path))[1]}
    for case, source in cases:
        recorded = earlier.get(case)
        if recorded and not _same_input(recorded, source):
            warn_each_time(
                f"output {output}: case {case!r} was predicted from {recorded} (its row in {path}), and is "
                f"now predicted from another input, {source}: its label map and row are replaced by this "
                "input's. If both scans are wanted, predict them into separate output folders, or rename "
                "one",
                UserWarning,
            )
