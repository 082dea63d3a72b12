"""Atomic writes: all-or-nothing content, and the permissions a plain write would give."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inpaintssl.atomic import atomic_path, atomic_write_text


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_new_file_gets_the_umask_mode_not_the_temporary_files(tmp_path: Path, umask_027: None) -> None:
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")  # what open(..., "w") gives under this umask
    atomic_write_text(atomic, "x")
    assert _mode(atomic) == _mode(plain) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_replacing_a_file_keeps_its_mode(tmp_path: Path, umask_027: None) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")
    target.chmod(0o604)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o604


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    target.write_text("complete")
    with pytest.raises(RuntimeError, match="writer died"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


@pytest.mark.parametrize("stem", ["a" * 246, "é" * 125, "病" * 82], ids=["ascii", "latin", "cjk"])
def test_a_target_name_near_the_limit_is_written(tmp_path: Path, stem: str) -> None:
    # 250-254 bytes is a legal name (the limit counts 255 bytes, not characters); a temporary of
    # ".<name>.<random>.tmp" would not be, nor one keeping 200 characters of a non-ASCII name.
    target = tmp_path / (stem + ".csv")
    assert 250 <= len(target.name.encode()) <= 255
    atomic_write_text(target, "x")
    assert target.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_temporary_that_cannot_be_created_names_the_target(tmp_path: Path) -> None:
    # A destination below a file: the error names what was to be written, not a hidden temporary.
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "out.csv"
    with pytest.raises(OSError, match=rf"could not write {target}"):
        atomic_write_text(target, "y")


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        # What safetensors (Rust) raises on a full disk, a read-only mount and a missing folder.
        ("Error while serializing: I/O error: No space left on device (os error 28)", 28, None),
        ("Error while serializing: I/O error: Read-only file system (os error 30)", 30, None),
        ('I/O error: No such file or directory (os error 2) at path "/x/.tmpoYIQOM"', 2, None),
        ("Error while serializing: I/O error: stream closed", 5, "Error while serializing: I/O error"),
    ],
)
def test_another_librarys_io_failure_reads_as_the_oserror_it_is(
    message: str, code: int, reason: str | None
) -> None:
    from inpaintssl.atomic import io_error_of, write_error

    error = io_error_of(RuntimeError(message))
    assert error is not None and error.errno == code
    assert (error.strerror or "").startswith(reason or os.strerror(code))
    assert str(write_error("checkpoint runs/a/checkpoints/last", error)).startswith(
        f"[Errno {code}] could not write checkpoint runs/a/checkpoints/last: "
    )


def test_a_failure_that_is_not_io_is_not_taken_for_one() -> None:
    from inpaintssl.atomic import io_error_of

    assert io_error_of(RuntimeError("Error while serializing: tensor 'w' is not contiguous")) is None
    own = OSError(28, "No space left on device")
    assert io_error_of(own) is own


@pytest.mark.skipif(os.name == "nt", reason="no flock: nothing is swept on Windows")
def test_a_leftover_that_cannot_be_removed_is_logged_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from inpaintssl.atomic import remove_stale_temporaries

    target = tmp_path / "model.onnx"
    stuck, gone = tmp_path / ".model.onnx.aaaaaaaa.tmp", tmp_path / ".model.onnx.bbbbbbbb.tmp"
    stuck.write_bytes(b"half")
    gone.write_bytes(b"half")
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with caplog.at_level("WARNING", logger="inpaintssl"):
        assert remove_stale_temporaries(target) == [gone]
    assert stuck.exists() and not gone.exists()
    assert f"could not remove {stuck}" in caplog.text


@pytest.mark.parametrize("full", [True, False], ids=["no-room-left", "room-left"])
def test_numpys_short_write_without_a_code_is_named_a_full_disk_where_no_room_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    # np.save into an open file (the decompressed cache's volumes) writes with tofile, whose short
    # write is "N requested and M written" with no errno: it printed "[Errno None] ..." on a full
    # disk. The disk is made to read as full (or not) through statvfs; the error is numpy's own.
    real = os.statvfs

    def reported(path: str | Path) -> os.statvfs_result:
        fields = list(real(path))
        fields[4] = 0 if full else max(fields[4], 1)  # f_bavail: blocks free to an unprivileged user
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", reported)
    target = tmp_path / "volume.npy"
    with pytest.raises(OSError) as caught, atomic_path(target) as tmp, tmp.open("wb") as out:
        np.save(out, np.zeros(4))
        raise OSError("262144 requested and 130544 written")  # what numpy's tofile raises
    if full:
        assert caught.value.errno == errno.ENOSPC
        assert str(caught.value) == (
            f"[Errno 28] could not write {target}: No space left on device "
            "(262144 requested and 130544 written)"
        )
    else:
        assert caught.value.errno is None
        assert str(caught.value) == f"could not write {target}: 262144 requested and 130544 written"
    assert sorted(tmp_path.iterdir()) == []
