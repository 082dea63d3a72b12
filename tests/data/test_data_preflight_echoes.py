"""The pre-flight check of a ``dicom`` dataset with ``t2_echoes``: every echo its items read."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom_helpers import write_echo_series
from inpaintssl.data.base import DataError
from inpaintssl.data.preflight import preflight

pytest.importorskip("pydicom")

ECHO_TIMES = (10.0, 20.0, 30.0)
SLICES = 4


def _series(root: Path) -> Path:
    """Three echoes of four 8 x 8 slices, written ``IM{slice}{echo - 1}.dcm``."""
    stored = np.random.default_rng(0).integers(100, 1000, (len(ECHO_TIMES), 8, 8, SLICES)).astype(np.int16)
    tags = {"PixelSpacing": [0.5, 0.5], "SliceThickness": 3.0}
    return write_echo_series(root / "s1", stored, ECHO_TIMES, slope=1.0, tags=tags)


def _dataset(root: Path, *, t2_echoes: bool) -> Any:
    from inpaintssl.data.dicom_dataset import dicom_dataset

    return dicom_dataset(
        split="u", labelled=False, cases={"u": "s1/"}, root=root, echo=1, t2_echoes=t2_echoes
    )


def _echo_files(folder: Path, echo: int) -> list[str]:
    return [str(folder / f"IM{k}{echo - 1}.dcm") for k in range(SLICES)]


def test_a_damaged_echo_stops_the_check_naming_its_file(tmp_path: Path) -> None:
    folder = _series(tmp_path)
    damaged = folder / "IM22.dcm"  # echo 3 of slice 2
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) - 60])  # the pixel data ends early; the header still reads
    with pytest.raises(DataError, match=re.escape(f"DICOM file {damaged} cannot be read")):
        preflight({"train": _dataset(tmp_path, t2_echoes=True)}, progress=False, threads=1)
    # Read as echo 1 alone, the series' other echoes are no part of the run: nothing to refuse.
    report = preflight({"train": _dataset(tmp_path, t2_echoes=False)}, progress=False, threads=1)
    assert report.cases == 1


def test_every_echo_file_is_fingerprinted_with_its_case(tmp_path: Path) -> None:
    folder = _series(tmp_path)
    every = sorted(f for echo in (1, 2, 3) for f in _echo_files(folder, echo))
    first = preflight({"train": _dataset(tmp_path, t2_echoes=True)}, progress=False, threads=1)
    (prints,) = first.passed.values()
    assert sorted(name for name, _, _ in prints) == every
    again = preflight({"train": _dataset(tmp_path, t2_echoes=True)}, progress=False, passed=first.passed)
    assert (again.cases, again.skipped) == (0, 1)
    # An echo-3 file rewritten since the check: the resume reads the case again.
    rewritten = folder / "IM32.dcm"
    stat = rewritten.stat()
    os.utime(rewritten, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    resumed = preflight({"train": _dataset(tmp_path, t2_echoes=True)}, progress=False, passed=first.passed)
    assert (resumed.cases, resumed.skipped) == (1, 0)
    # Without t2_echoes the case's files are echo 1's alone, as before.
    single = preflight({"train": _dataset(tmp_path, t2_echoes=False)}, progress=False, threads=1)
    (prints,) = single.passed.values()
    assert sorted(name for name, _, _ in prints) == sorted(_echo_files(folder, 1))
