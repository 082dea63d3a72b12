"""Disk full mid-write: the previous checkpoint and every earlier study result survive intact.

Issue 16 acceptance: a full disk while writing a checkpoint or while recording a study result
must leave what was written before exactly as it was (reloaded and compared, byte for byte where
files are concerned), and the error must name the path that could not be written.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save as safetensors_bytes
from safetensors.torch import save_file as real_save_file

from inpaintssl.checkpoint import CheckpointMeta, load_checkpoint, read_checkpoint_dir, save_checkpoint
from inpaintssl.studies.queue import NewRun, RunRecord, WorkerId
from inpaintssl.studies.store import Measurement, StudyStore
from inpaintssl.training.loop import Trainer
from study_helpers import tiny_segmentation_trainer

META = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)


def _no_space(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- checkpoints -------------------------------------------------------------------------------


def _torn_save_file(fail_on_call: int) -> Callable[..., None]:
    """A safetensors writer that writes half of call ``fail_on_call``'s bytes, then hits a full disk."""
    calls = {"n": 0}

    def save(tensors: dict[str, torch.Tensor], filename: str, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] < fail_on_call:
            real_save_file(tensors, filename, *args, **kwargs)
            return
        data = safetensors_bytes(tensors, *args, **kwargs)
        with open(filename, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise _no_space(filename)

    return save


def _torn_by_safetensors(fail_on_call: int) -> Callable[..., None]:
    """As :func:`_torn_save_file`, failing as safetensors itself does: its own ``SafetensorError``.

    A real full disk (a 560 KiB tmpfs) raised ``SafetensorError: Error while serializing: I/O error:
    No space left on device (os error 28)``, which no ``except OSError`` caught.
    """
    torn = _torn_save_file(fail_on_call)

    def save(tensors: dict[str, torch.Tensor], filename: str, *args: Any, **kwargs: Any) -> None:
        try:
            torn(tensors, filename, *args, **kwargs)
        except OSError as exc:
            message = f"Error while serializing: I/O error: {exc.strerror} (os error {exc.errno})"
            raise SafetensorError(message) from None

    return save


def _torn_write_text(name: str) -> Callable[..., int]:
    real = Path.write_text

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self.name != name:
            return real(self, data, *args, **kwargs)
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise _no_space(self)

    return write_text


def _failing_fsync(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# Where a checkpoint write can meet the full disk: each tensor file, each JSON file, the flush.
FAILURES: dict[str, Callable[[], Any]] = {
    "model weights": lambda: mock.patch("inpaintssl.checkpoint.save_file", _torn_save_file(1)),
    "optimizer tensors": lambda: mock.patch("inpaintssl.checkpoint.save_file", _torn_save_file(2)),
    "model weights, safetensors' own error": lambda: mock.patch(
        "inpaintssl.checkpoint.save_file", _torn_by_safetensors(1)
    ),
    "optimizer tensors, safetensors' own error": lambda: mock.patch(
        "inpaintssl.checkpoint.save_file", _torn_by_safetensors(2)
    ),
    "metadata JSON": lambda: mock.patch.object(Path, "write_text", _torn_write_text("meta.json")),
    "trainer-state JSON": lambda: mock.patch.object(
        Path, "write_text", _torn_write_text("trainer_state.json")
    ),
    "flush to disk": lambda: mock.patch("inpaintssl.checkpoint.os.fsync", _failing_fsync),
}


def _save(folder: Path, value: float, epoch: int) -> None:
    save_checkpoint(
        folder,
        {"w": torch.full((64,), value), "b": torch.arange(8.0) * value},
        META.model_copy(update={"epoch": epoch, "val_loss": value}),
        tensors={"optimizer": {"0.exp_avg": torch.full((64,), value / 2)}},
        documents={"trainer_state": {"epoch": epoch, "history": [value] * 3}},
    )


@pytest.mark.parametrize("where", list(FAILURES))
def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "checkpoints" / "last"
    _save(folder, 1.0, epoch=0)
    before_files = _files(tmp_path)
    before_tensors, before_documents = read_checkpoint_dir(folder)

    with FAILURES[where](), pytest.raises(OSError) as caught:
        _save(folder, 2.0, epoch=1)

    assert caught.value.errno == errno.ENOSPC
    assert f"could not write checkpoint {folder}" in str(caught.value)
    assert "No space left on device" in str(caught.value)
    # Byte for byte the previous checkpoint, and no temporary folder or torn file left beside it.
    assert _files(tmp_path) == before_files
    tensors, documents = read_checkpoint_dir(folder)
    assert documents == before_documents
    assert tensors.keys() == before_tensors.keys()
    for group, named in before_tensors.items():
        assert all(torch.equal(tensors[group][k], v) for k, v in named.items())
    state, meta = load_checkpoint(folder)
    assert meta is not None and meta.epoch == 0
    assert torch.equal(state["w"], torch.full((64,), 1.0))


def test_disk_full_in_training_keeps_the_run_resumable(tmp_path: Path) -> None:
    """A full disk at the second epoch's checkpoint stops the run; what it had written survives."""

    def trainer(resume: bool) -> Trainer:
        trainer: Trainer = tiny_segmentation_trainer(tmp_path, max_epochs=3, resume=resume)
        return trainer

    checkpoints = tmp_path / "checkpoints"
    at_failure: dict[str, bytes] = {}

    def fill_up_after_first_epoch(tensors: dict[str, torch.Tensor], filename: str, *a: Any, **k: Any) -> None:
        if not (checkpoints / "last" / "COMPLETE.json").exists():
            real_save_file(tensors, filename, *a, **k)
            return
        if not at_failure:
            at_failure.update(_files(checkpoints))
        with open(filename, "wb") as handle:
            handle.write(safetensors_bytes(tensors)[:100])
        raise _no_space(filename)

    with (
        mock.patch("inpaintssl.checkpoint.save_file", fill_up_after_first_epoch),
        pytest.raises(OSError) as caught,
    ):
        trainer(resume=False).fit()

    assert caught.value.errno == errno.ENOSPC
    assert f"could not write checkpoint {checkpoints}" in str(caught.value)
    assert at_failure, "the disk never filled up: the test did not exercise the failure"
    assert _files(checkpoints) == at_failure
    _, meta = load_checkpoint(tmp_path, which="last")
    assert meta is not None and meta.epoch == 0
    # Once space is back, the run resumes from what survived and finishes.
    outcome = trainer(resume=True).fit()
    assert outcome.resumed_from_epoch == 1
    assert outcome.epochs_run == 3


# -- study results -----------------------------------------------------------------------------


def _rows(run_id: str, n: int) -> list[Measurement]:
    return [Measurement(f"{run_id}-v{i}", i, "image", "disc", "dice", i / (n + 1)) for i in range(n)]


def _study(path: Path) -> WorkerId:
    """Two recorded runs and a third claimed by the returned worker, about to record."""
    me = WorkerId.current()
    with StudyStore(path) as store:
        store.add_runs([NewRun(f"pt-{i}", "pretrain", None, {"i": i}, {"label": i}) for i in (1, 2, 3)])
        for run_id in ("pt-1", "pt-2"):
            claimed = store.claim(me)
            assert isinstance(claimed, RunRecord) and claimed.id == run_id
            assert store.record(run_id, me, result={"loss": float(run_id[-1])}, rows=_rows(run_id, 50))
        claimed = store.claim(me)
        assert isinstance(claimed, RunRecord) and claimed.id == "pt-3"
    return me


def _contents(path: Path) -> tuple[list[tuple[str, str, Any]], list[tuple[str, Measurement]]]:
    with StudyStore(path) as store:
        runs = [(r.id, r.status, r.result) for r in store.runs()]
        return runs, store.measurements()


class _FailingWrites:
    """A connection whose bulk inserts fail with ``error`` (everything else goes through)."""

    def __init__(self, conn: sqlite3.Connection, error: BaseException) -> None:
        self._conn = conn
        self._error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        raise self._error


@contextmanager
def _disk(kind: str) -> Iterator[None]:
    real_connect = sqlite3.connect

    def full(*args: Any, **kwargs: Any) -> Any:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        if kind == "sqlite-full":
            # SQLite's own SQLITE_FULL, from its pager: the file may not grow by a single page.
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(int(pages), 1)}")
            return conn
        error = (
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if kind == "oserror"
            else sqlite3.OperationalError("database or disk is full")
        )
        return _FailingWrites(conn, error)

    with mock.patch("inpaintssl.studies.database.sqlite3.connect", full):
        yield


@pytest.mark.parametrize("kind", ["sqlite-full", "oserror", "mocked-sqlite-error"])
def test_disk_full_while_recording_a_result_keeps_every_earlier_result(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "study.sqlite"
    me = _study(path)
    runs_before, rows_before = _contents(path)
    assert [r[1] for r in runs_before] == ["done", "done", "running"] and len(rows_before) == 100

    with _disk(kind), pytest.raises(OSError) as caught, StudyStore(path) as store:
        store.record("pt-3", me, result={"loss": 3.0}, rows=_rows("pt-3", 2000))

    assert caught.value.errno == errno.ENOSPC
    message = str(caught.value)
    assert f"study database {path}" in message and "pt-3" in message
    assert "No space left on device" in message
    runs_after, rows_after = _contents(path)
    assert runs_after == runs_before
    assert rows_after == rows_before
    # With space back, the same worker records the run in full.
    with StudyStore(path) as store:
        assert store.record("pt-3", me, result={"loss": 3.0}, rows=_rows("pt-3", 2000))
        assert len(store.measurements(["pt-3"])) == 2000
