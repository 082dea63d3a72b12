"""Bad-input cases of issue 16 (reliability, second round): the study database and full disks.

Cases register themselves into :data:`corpus.CASES` through :func:`corpus._case`; corpus.py
imports this module at its end, so every name it defines above is available here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import yaml
from corpus import (
    Call,
    CommandLineError,
    _case,
    _cli,
    _disk_full_after_half,
    _save_pretrained,
    _tiny_unet,
    _write_text,
)
from safetensors.torch import save as safetensors_bytes

from inpaintssl.checkpoint import CheckpointMeta, save_checkpoint
from inpaintssl.studies.database import StudyDatabaseError
from inpaintssl.studies.queue import NewRun, WorkerId
from inpaintssl.studies.results import load_results, load_runs
from inpaintssl.studies.spec import load_spec
from inpaintssl.studies.store import Measurement, StudyStore

# -- building blocks ---------------------------------------------------------------------------


def _study_spec(folder: Path) -> Path:
    """A clinical study whose database is ``<folder>/study/study.sqlite`` (the default place)."""
    (folder / "study").mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({"study": "clinical", "output": str(folder / "study")}), encoding="utf-8")
    return spec


def _database(folder: Path) -> Path:
    return folder / "study" / "study.sqlite"


def _study_with_results(path: Path) -> WorkerId:
    """A study database with two recorded runs and a third claimed by the returned worker."""
    me = WorkerId.current()
    with StudyStore(path) as store:
        store.add_runs([NewRun(f"pt-{i}", "pretrain", None, {}, {}) for i in (1, 2, 3)])
        for run_id in ("pt-1", "pt-2"):
            store.claim(me)
            rows = [Measurement(f"v{i}", i, "image", "", "l2_norm", float(i)) for i in range(20)]
            store.record(run_id, me, result={"loss": 1.0}, rows=rows)
        store.claim(me)
    return me


@contextlib.contextmanager
def _sqlite_disk_full() -> Iterator[None]:
    """Every database the library opens may not grow by one page: SQLite's own ``SQLITE_FULL``."""
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        if str(args[0] if args else kwargs.get("database")) == ":memory:":
            # The library's in-memory schema probe (cached after its first use, so whether it runs
            # here depended on test order) is not the study's disk.
            return conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(int(pages), 1)}")
        return conn

    with mock.patch("inpaintssl.studies.database.sqlite3.connect", connect):
        yield


# -- the study database ------------------------------------------------------------------------


@_case(
    "data-study-database-text-file",
    "data",
    CommandLineError,
    r"^exit status 2: inpaintssl experiment: error:",
    r"could not open study database .*study/study\.sqlite: it is not an SQLite database",
    r"point the study's `database` at a new file",
)
def _database_text_file(folder: Path) -> Call:
    """``experiment status`` on a study whose database path holds a text file (a CSV export)."""
    spec = _study_spec(folder)
    _write_text(_database(folder), "run_id,dice\npt-1,0.91\n" * 50)
    return lambda: _cli("experiment", "status", str(spec))


@_case(
    "data-study-database-random-bytes",
    "data",
    StudyDatabaseError,
    r"could not open study database .*study/study\.sqlite: it is not an SQLite database",
    r"file is not a database",
)
def _database_random_bytes(folder: Path) -> Call:
    """A report of a study whose database file holds random bytes (a damaged copy)."""
    spec = _study_spec(folder)
    _database(folder).write_bytes(bytes((i * 7919 + 13) % 256 for i in range(8192)))
    return lambda: load_results(load_spec(spec))


@_case(
    "data-study-database-foreign-schema",
    "data",
    CommandLineError,
    r"^exit status 2: inpaintssl experiment: error:",
    r"study/study\.sqlite is an SQLite database but not an inpaintssl study database",
    r"it has tables \['songs'\]",
)
def _database_foreign(folder: Path) -> Call:
    """``experiment status`` on a study whose database path holds another program's SQLite file."""
    spec = _study_spec(folder)
    conn = sqlite3.connect(_database(folder))
    conn.execute("CREATE TABLE songs (title TEXT, seconds INTEGER)")
    conn.execute("INSERT INTO songs VALUES ('intro', 42)")
    conn.commit()
    conn.close()
    return lambda: _cli("experiment", "status", str(spec))


@_case(
    "data-study-database-newer-schema",
    "data",
    StudyDatabaseError,
    r"study/study\.sqlite: schema version 2, expected 1",
    r"open it with the inpaintssl version that wrote it",
)
def _database_newer(folder: Path) -> Call:
    """A study database written by a newer inpaintssl (schema version 2)."""
    spec = _study_spec(folder)
    StudyStore(_database(folder)).close()
    conn = sqlite3.connect(_database(folder))
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    return lambda: load_runs(load_spec(spec))


@_case(
    "data-study-database-directory",
    "data",
    StudyDatabaseError,
    r"could not open study database .*shared\.sqlite: the file cannot be opened",
    r"may be a directory",
)
def _database_directory(folder: Path) -> Call:
    """A study database path that names a directory."""
    (folder / "shared.sqlite").mkdir()
    return lambda: StudyStore(folder / "shared.sqlite")


# -- full disks --------------------------------------------------------------------------------


@_case(
    "runtime-disk-full-on-study-result",
    "runtime",
    OSError,
    r"could not record the result of run pt-3 in study database .*study\.sqlite",
    r"No space left on device",
    r"every earlier result is kept",
)
def _disk_full_on_result(folder: Path) -> Call:
    """The disk fills up while a worker records a run's measurements in the study database."""
    path = folder / "study.sqlite"
    me = _study_with_results(path)
    rows = [Measurement(f"v{i}", i, "image", "", "l2_norm", float(i)) for i in range(2000)]

    def run() -> object:
        with _sqlite_disk_full(), StudyStore(path) as store:
            return store.record("pt-3", me, result={"loss": 1.0}, rows=rows)

    return run


@_case(
    "runtime-disk-full-on-checkpoint-overwrite",
    "runtime",
    OSError,
    r"could not write checkpoint .*run/checkpoints/last: No space left on device",
)
def _disk_full_on_overwrite(folder: Path) -> Call:
    """The disk fills up half-way through replacing an earlier checkpoint (which must survive)."""
    last = _save_pretrained(folder / "run" / "checkpoints" / "last")
    model = _tiny_unet(out_channels=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    meta = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1, epoch=1)

    def run() -> object:
        with _disk_full_after_half("inpaintssl.checkpoint.save_file", serialise=safetensors_bytes):
            save_checkpoint(last, model.state_dict(), meta)
        return None

    return run
