"""A damaged or foreign file at the study database path is refused, untouched, with the path and a remedy."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from inpaintssl.cli import main
from inpaintssl.config import ConfigError
from inpaintssl.studies.database import StudyDatabaseError
from inpaintssl.studies.queue import NewRun
from inpaintssl.studies.store import StudyStore


def _text(path: Path) -> None:
    path.write_text("run_id,dice\npt-1,0.9\n" * 20, encoding="utf-8")


def _random_bytes(path: Path) -> None:
    # Seeded, so a failure reproduces; 8 KiB spans several SQLite pages.
    path.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(8192)))


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE songs (title TEXT, seconds INTEGER)")
    conn.execute("INSERT INTO songs VALUES ('a', 1)")
    conn.commit()
    conn.close()


def _same_names_other_columns(path: Path) -> None:
    # Tables named like ours, as another tool might call them, with other columns.
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("CREATE TABLE runs (id TEXT, score REAL)")
    conn.execute("CREATE TABLE measurements (id TEXT)")
    conn.commit()
    conn.close()


def _newer_schema(path: Path) -> None:
    StudyStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


def _truncated_header(path: Path) -> None:
    # An SQLite file cut short inside its first page, e.g. by an interrupted copy.
    _foreign(path)
    path.write_bytes(path.read_bytes()[:200])


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "inside.txt").write_text("x", encoding="utf-8")


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "text-file": (_text, "not an SQLite database"),
    "random-bytes": (_random_bytes, "not an SQLite database"),
    "foreign-schema": (_foreign, r"not an inpaintssl study database: it has tables \['songs'\]"),
    "other-columns": (_same_names_other_columns, r"table 'measurements' lacks columns"),
    "newer-schema": (_newer_schema, "schema version 99, expected 1"),
    "truncated": (_truncated_header, "not an SQLite database|damaged"),
    "directory": (_directory, "cannot be opened"),
}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_database_is_refused_untouched(tmp_path: Path, damage: str) -> None:
    make, reason = DAMAGE[damage]
    path = tmp_path / "study.sqlite"
    make(path)
    before = _files(tmp_path)

    with pytest.raises(StudyDatabaseError) as caught:
        StudyStore(path)

    message = str(caught.value)
    assert str(path) in message
    assert re.search(reason, message), message
    assert "point the study's `database` at a new file" in message
    # Refused before the first write: no WAL switch, no tables added, no side files left.
    assert _files(tmp_path) == before
    assert isinstance(caught.value, ConfigError)


def test_a_valid_database_with_extra_tables_still_opens(tmp_path: Path) -> None:
    # A user may add their own analysis tables; only missing or reshaped study tables are refused.
    path = tmp_path / "study.sqlite"
    with StudyStore(path) as store:
        store.add_runs([NewRun("pt-1", "pretrain", None, {}, {})])
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE my_notes (run_id TEXT, note TEXT)")
    conn.commit()
    conn.close()
    with StudyStore(path) as store:
        assert [r.id for r in store.runs()] == ["pt-1"]


@pytest.mark.parametrize("damage", ["text-file", "foreign-schema", "directory"])
def test_the_command_line_exits_2_naming_the_database(tmp_path: Path, damage: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    database = out / "study.sqlite"
    DAMAGE[damage][0](database)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"study": "clinical", "output": str(out)}), encoding="utf-8")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main(["experiment", "status", str(spec)])
    assert status == 2
    text = stderr.getvalue()
    assert "Traceback" not in text
    assert text.startswith("inpaintssl experiment: error: ")
    assert str(database) in text
    assert os.path.exists(database)
