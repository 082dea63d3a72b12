"""One JSON file per finished run: how remote workers hand their results to the study's driver.

A worker started by ``--executor slurm`` or ``--executor ray`` never opens the study database (it
may run on another machine, and SQLite cannot be shared between machines). It writes each
finished run to ``<study output>/results/<run_id>.json`` instead, atomically (a reader sees the
whole file or none), and the driver merges the files into the database
(:func:`inpaintssl.studies.merge.merge_results`). A run whose file exists is finished: it is
never submitted again, and merging it twice changes nothing.

The file holds::

    {"format": 1, "run_id": "pt-...", "kind": "pretrain", "host": "node17",
     "result": {... the run's summary ...},
     "rows": [[volume_id, slice_index, level, class_name, metric, value], ...]}

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rows = [Measurement("v0", 0, "image", "", "l2_norm", 3.5)]
    >>> path = write_result_file(folder, "pt-1", kind="pretrain", result={"loss": 1.0}, rows=rows)
    >>> path.name, read_result_file(path).rows == rows
    ('pt-1.json', True)
    >>> [p.name for p in result_files(folder)]
    ['pt-1.json']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from inpaintssl.atomic import atomic_write_text
from inpaintssl.config import ConfigError
from inpaintssl.studies.database import current_host
from inpaintssl.studies.store import Measurement

__all__ = [
    "RESULT_FORMAT",
    "ResultFile",
    "ResultFileError",
    "read_result_file",
    "result_files",
    "result_path",
    "write_result_file",
]

RESULT_FORMAT: Final = 1

# Run ids start with their kind (inpaintssl.studies.grid.run_id): pt-<digest>, ft-<digest>.
_KIND_OF_PREFIX: Mapping[str, str] = MappingProxyType({"pt": "pretrain", "ft": "finetune"})


class ResultFileError(ConfigError):
    """A result file is unreadable or not a result of this format; the message names it and what to do."""


@dataclass(frozen=True)
class ResultFile:
    """A run's result as read back from its file."""

    path: Path
    run_id: str
    kind: str
    host: str
    result: dict[str, Any]
    rows: list[Measurement]


def result_path(folder: Path, run_id: str) -> Path:
    """The result file of ``run_id`` in a study's results folder."""
    return folder / f"{run_id}.json"


def result_files(folder: Path) -> list[Path]:
    """Every finished result file in ``folder``, sorted (the temporary files of writers are not)."""
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def write_result_file(
    folder: Path, run_id: str, *, kind: str, result: dict[str, Any], rows: list[Measurement]
) -> Path:
    """Write a run's result atomically; returns the file.

    Raises:
        OSError: The write failed (e.g. ``ENOSPC``); no partial file is left and the message
            names the file.
    """
    payload = {
        "format": RESULT_FORMAT,
        "run_id": run_id,
        "kind": kind,
        "host": current_host(),
        "result": result,
        # NaN (a Dice of an absent class) is written as JSON's non-standard NaN, which json reads back.
        "rows": [list(astuple(m)) for m in rows],
    }
    path = result_path(folder, run_id)
    atomic_write_text(path, json.dumps(payload, sort_keys=True))
    return path


def _expected_kinds(run_id: str) -> tuple[str, ...]:
    """The kinds a result of ``run_id`` may hold: the one its ``pt-``/``ft-`` prefix names, else either."""
    prefix, _, _ = run_id.partition("-")
    return (_KIND_OF_PREFIX[prefix],) if prefix in _KIND_OF_PREFIX else tuple(_KIND_OF_PREFIX.values())


def _check_distinct_rows(path: Path, rows: list[Measurement], *, what_to_do: str) -> None:
    """Refuse two rows of one measurement: the database holds each once per run.

    The key is the ``measurements`` table's UNIQUE one less the run id
    (:mod:`inpaintssl.studies.database`): a repeated row failed the merge with a bare
    ``sqlite3.IntegrityError`` naming no file, and ``experiment status`` did not call it damaged.

    Raises:
        ResultFileError: Naming the file, the repeated key and both rows' positions.
    """
    first: dict[tuple[str, str, int, str, str], int] = {}
    for index, m in enumerate(rows):
        key = (m.level, m.volume_id, m.slice_index, m.class_name, m.metric)
        if key in first:
            raise ResultFileError(
                f"result file {path} repeats a measurement at rows[{first[key]}] and rows[{index}] "
                f"(volume_id={m.volume_id!r}, slice_index={m.slice_index}, level={m.level!r}, class_name="
                f"{m.class_name!r}, metric={m.metric!r}); expected each measurement once; {what_to_do}"
            )
        first[key] = index


def read_result_file(path: Path) -> ResultFile:
    """Read and check a result file.

    Raises:
        ResultFileError: Not JSON, another format, a run id that does not match its file name, a
            kind that is not its run's (a pretraining result in a fine-tuning run's file), or a
            measurement given in two rows (one volume, slice, level, class and metric).
    """
    what_to_do = "delete it and run the study again (that run is trained again, resuming its checkpoint)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != RESULT_FORMAT:
            raise ResultFileError(
                f"result file {path}: format {data.get('format')!r}, expected {RESULT_FORMAT}; {what_to_do}"
            )
        if data["run_id"] != path.stem:
            raise ResultFileError(
                f"result file {path} holds run {data['run_id']!r}, expected {path.stem!r}; {what_to_do}"
            )
        expected = _expected_kinds(path.stem)
        if data["kind"] not in expected:
            raise ResultFileError(
                f"result file {path} holds a {data['kind']!r} result, expected "
                f"{' or '.join(map(repr, expected))} for run {path.stem!r}; {what_to_do}"
            )
        rows = [Measurement.from_values(r) for r in data["rows"]]
        _check_distinct_rows(path, rows, what_to_do=what_to_do)
        return ResultFile(
            path, str(data["run_id"]), str(data["kind"]), str(data["host"]), dict(data["result"]), rows
        )
    except ResultFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResultFileError(
            f"result file {path} is unreadable ({type(exc).__name__}: {exc}); {what_to_do}"
        ) from exc
