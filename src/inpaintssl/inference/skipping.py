"""The inputs a cohort predict leaves out when they fail a check, instead of stopping at the first.

By default :func:`~inpaintssl.inference.predict.predict` refuses the whole call at the first bad
input: one truncated export among a thousand scans stops the other 999. With
``skip_bad_inputs=True`` (``--skip-bad-inputs``) an input that fails any of predict's own checks
is left out, and the others are predicted:

- unreadable, truncated or of an unsupported type, blank or holding NaN/Inf voxels, a channel
  count the model does not take, a study without the series asked for, a multi-echo series
  without an echo to read (:mod:`~inpaintssl.inference.preparation`);
- a label map its format cannot describe, or with ``t2=True`` no multi-echo spin-echo series;
- changed or gone between its check and its prediction.

Each input left out gets a warning with its error, a :class:`~inpaintssl.inference.results.SkippedInput`
in :attr:`PredictionReport.skipped <inpaintssl.inference.results.PredictionReport.skipped>`, and a
row of ``skipped.csv`` in the output folder. That table lists the inputs left out and not predicted
since: a later predict into the same output (with or without skipping) takes out the rows of the
cases it predicted, replaces those of the cases it left out again, and keeps the others
(:func:`merged_skipped_table`), as ``volumes.csv`` keeps its rows
(:mod:`~inpaintssl.inference.volume_table`). Only these input errors
(:class:`~inpaintssl.data.DataError`, of which :class:`PredictionError` is one) are skipped: an
error of the model, the device or the output folder (a full disk) is no input's and still stops
the call. Where every input is left out, nothing was predicted and the call fails.

Example:
    >>> from pathlib import Path
    >>> bad = BadInputs(skip=True)
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     bad.left_out("s2", Path("s2.nii.gz"), PredictionError("input s2.nii.gz cannot be read"))
    True
    >>> print(skipped_csv_text(bad.in_order(["s1", "s2"])), end="")
    case,file,reason
    s2,s2.nii.gz,input s2.nii.gz cannot be read
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inpaintssl.data.base import DataError
from inpaintssl.inference.results import PredictionError, SkippedInput
from inpaintssl.inference.volume_table import MOVE_AWAY, output_table_rows, output_table_text
from inpaintssl.warning_format import warn_each_time

__all__ = ["SKIPPED_CSV", "BadInputs", "check_skipped_table", "merged_skipped_table", "skipped_csv_text"]

SKIPPED_CSV = "skipped.csv"
"""The output folder's list of the inputs left out, one row each."""

_HEADER = ("case", "file", "reason")

_REASONS_SHOWN = 3
"""Errors quoted when every input was left out; the rest are in the warnings before it."""


@dataclass
class BadInputs:
    """The inputs one predict leaves out (``skip``), or none, the first bad input stopping it.

    Attributes:
        skip: Leave bad inputs out (``skip_bad_inputs=True``); ``False``: every error is raised.
        skipped: Those left out so far, in the order they failed.
    """

    skip: bool
    skipped: list[SkippedInput] = field(default_factory=list)

    def left_out(self, case: str, path: Path, error: DataError) -> bool:
        """Whether the input that failed with ``error`` is left out (then with a warning); ``False``:
        the caller raises ``error``, as without skipping."""
        if not self.skip:
            return False
        self.skipped.append(SkippedInput(case, path, str(error)))
        warn_each_time(f"skipped, not predicted (skip_bad_inputs): {error}", UserWarning)
        return True

    def check_some_left(self, remaining: int) -> None:
        """Refuse a predict that left every input out: it has nothing to write.

        Raises:
            PredictionError: ``remaining`` is 0; the message quotes the first errors.
        """
        if remaining > 0:
            return
        reasons = "; ".join(item.reason for item in self.skipped[:_REASONS_SHOWN])
        more = len(self.skipped) - _REASONS_SHOWN
        rest = f"; and {more} more (see the warnings)" if more > 0 else ""
        raise PredictionError(
            f"no input could be predicted: all {len(self.skipped)} failed a check and were left out "
            f"(skip_bad_inputs): {reasons}{rest}"
        )

    def in_order(self, cases: Sequence[str]) -> tuple[SkippedInput, ...]:
        """Those left out, in the order of ``cases`` (every input's case name): the checks leave
        inputs out in passes, and the prediction after them."""
        position = {case: k for k, case in enumerate(cases)}
        return tuple(sorted(self.skipped, key=lambda item: position[item.case]))


def skipped_csv_text(skipped: Sequence[SkippedInput]) -> str:
    """``skipped.csv``: a ``case``, ``file`` and ``reason`` row per input left out."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(_HEADER)
    for item in skipped:
        writer.writerow([item.case, str(item.source), item.reason])
    return text.getvalue()


def _parsed(text: str, where: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != _HEADER:
        raise PredictionError(
            f"{where} is no skipped.csv a predict wrote: its columns are {reader.fieldnames}; expected "
            f"{', '.join(_HEADER)}: {MOVE_AWAY}"
        )
    return output_table_rows(reader, where)


def check_skipped_table(output: Path) -> None:
    """Refuse an ``output`` whose ``skipped.csv`` is no table a predict wrote (before predicting).

    Raises:
        PredictionError: Naming the file and its columns.
    """
    path = output / SKIPPED_CSV
    if path.is_file():
        _parsed(output_table_text(path), str(path))


def merged_skipped_table(
    earlier: str, new: str | None, predicted: Collection[str], *, where: str = SKIPPED_CSV
) -> str:
    """``skipped.csv`` after a predict: the rows of the text ``earlier`` but of the cases
    ``predicted`` now, each case left out again (a row of ``new``) in its old place with its new
    error, and ``new``'s other rows after them.

    Raises:
        PredictionError: ``earlier`` is no table a predict wrote; the message names ``where``.

    Example:
        >>> earlier = "case,file,reason\\ns1,s1.nii.gz,truncated\\ns2,s2.nii.gz,blank\\n"
        >>> print(merged_skipped_table(earlier, None, predicted={"s1"}), end="")
        case,file,reason
        s2,s2.nii.gz,blank
    """
    rows = _parsed(earlier, where)
    again = {row["case"]: row for row in _parsed(new, "the new rows")} if new is not None else {}
    kept: list[dict[str, str]] = []
    seen: set[str] = set()
    for row in rows:
        case = row["case"]
        if case not in predicted and case not in seen:
            kept.append(again.pop(case, row))
            seen.add(case)
    kept += again.values()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    return text.getvalue()
