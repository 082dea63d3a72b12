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
