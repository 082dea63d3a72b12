"""Atomic writes: all-or-nothing content, and the permissions a plain write would give."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

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


def test_a_target_name_near_the_limit_is_written(tmp_path: Path) -> None:
    # 250 characters is a legal name (255); a temporary of ".<name>.<random>.tmp" would not be.
    target = tmp_path / ("a" * 246 + ".csv")
    atomic_write_text(target, "x")
    assert target.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_temporary_that_cannot_be_created_names_the_target(tmp_path: Path) -> None:
    # A destination below a file: the error names what was to be written, not a hidden temporary.
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "out.csv"
    with pytest.raises(OSError, match=rf"could not write {target}"):
        atomic_write_text(target, "y")
