"""``inpaintssl cache info|prune``: a ``data.cache_dir`` folder on the command line.

The folder is filled by the real readers (what runs leave); the printed figures are checked
against :func:`~inpaintssl.data.decompressed.list_decompressed` and the files left on disk.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.byte_sizes import format_bytes
from inpaintssl.cli import main
from inpaintssl.cli.cache import parse_age, parse_size
from inpaintssl.data.decompressed import decompressed_into, source_record_path
from inpaintssl.data.decompressed_upkeep import list_decompressed
from inpaintssl.data.readers import NumpyVolume

DAY = 86400.0


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A cache folder holding three decompressed volumes, last used 3, 2 and 1 days ago."""
    folder = tmp_path / "cache"
    for i, age in enumerate((3, 2, 1)):
        scan = tmp_path / f"scan{i}.npz"
        np.savez_compressed(scan, image=np.full((2, 16, 16), float(i)))
        known = {e.path for e in list_decompressed(folder).files} if folder.exists() else set()
        with decompressed_into(folder):
            NumpyVolume(scan, key="image").read(0)
        (new,) = {e.path for e in list_decompressed(folder).files} - known
        os.utime(new, (time.time() - age * DAY,) * 2)
    return folder


def test_info_counts_and_sizes_the_volumes(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = list_decompressed(cache).files
    assert main(["cache", "info", str(cache)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{cache}: 3 decompressed volumes, {format_bytes(sum(f.size for f in files))}"
    assert lines[1].startswith("  last used from ") and len(lines) == 2  # nothing stale, all recorded
    assert main(["cache", "info", str(cache), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [Path(f["path"]) for f in record["files"]] == [f.path for f in files]  # the longest unused first
    assert record["total_size"] == sum(f.size for f in files) and record["temporaries"] == []
    assert [f["stale"] for f in record["files"]] == [False, False, False]


def test_prune_to_a_size_removes_the_longest_unused(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    oldest, middle, newest = list_decompressed(cache).files
    limit = f"{(middle.size + newest.size) / 1024}K"  # in KiB, as a user would write it
    assert main(["cache", "prune", str(cache), "--max-size", limit, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"{cache}: would remove 1 decompressed volume (")
    assert len(list(cache.glob("*.npy"))) == 3
    assert main(["cache", "prune", str(cache), "--max-size", limit, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["removed"] == [str(oldest.path)] and record["freed_size"] == oldest.size
    assert record["kept"] == 2 and record["failed"] == [] and not record["dry_run"]
    assert set(cache.glob("*.npy")) == {middle.path, newest.path}
    assert not source_record_path(oldest.path).exists()  # its record went with it


def test_prune_by_age(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    newest = list_decompressed(cache).files[-1]
    assert main(["cache", "prune", str(cache), "--unused-for", "36h"]) == 0
    assert capsys.readouterr().out.startswith(f"{cache}: removed 2 decompressed volumes (")
    assert list(cache.glob("*.npy")) == [newest.path]


def test_a_volume_that_could_not_be_removed_fails_the_command_naming_it(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    oldest = list_decompressed(cache).files[0]
    real_unlink = Path.unlink

    def refusing(self: Path, missing_ok: bool = False) -> None:
        if self == oldest.path:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refusing)
    assert main(["cache", "prune", str(cache), "--unused-for", "60h"]) == 1
    assert f"  could not remove {oldest.path}: [Errno 13] Permission denied" in capsys.readouterr().out
    assert oldest.path.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-size", "5 gigs"], "argument --max-size: '5 gigs' is not a size"),
        (["--unused-for", "30"], "argument --unused-for: expected an age with its unit"),
        # 200 bytes, where 200G was meant, removed every volume.
        (["--max-size", "200"], "argument --max-size: expected a size with its unit, such as '200G'"),
        (["--max-size", "0.5"], "argument --max-size: expected a size with its unit, such as '0.5G'"),
        ([], "give --stale, --unused-for, --max-size or several; found none"),
    ],
)
def test_a_prune_without_a_usable_limit_exits_2_naming_it(cache: Path, argv: list[str], message: str) -> None:
    # A real console: the message and the status a script sees.
    done = subprocess.run(
        [sys.executable, "-m", "inpaintssl", "cache", "prune", str(cache), *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(list(cache.glob("*.npy"))) == 3


@pytest.mark.parametrize("text", ["1,5G", "5 gigs", "-1G", "G"])
def test_every_size_a_refusal_offers_is_one_the_flag_takes(text: str) -> None:
    # The refusal offered a bare '4096', which the same flag then refused as a size without its unit.
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse_size(text)
    offered = re.findall(r"'([^']*)'", str(refused.value))[1:]  # the first quotes the text given
    assert offered and all(parse_size(example) > 0 for example in offered), offered
    assert "optional unit" not in str(refused.value)  # a unit is what the flag requires


@pytest.mark.parametrize("text", ["0.5", "0.4", ".3", " 0.5 ", "1", "200.0"])
def test_a_size_without_its_unit_is_refused_even_below_one_byte(text: str) -> None:
    # 0.5 (0.5G meant) rounds to 0 bytes: taken as the allowed "0", it removed every volume.
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected a size with its unit.*found {text!r}"):
        parse_size(text)


@pytest.mark.parametrize("text", ["0", "0.0", "00", ".0", " 0 "])
def test_zero_needs_no_unit(text: str) -> None:
    assert parse_size(text) == 0  # zero bytes in any unit


def test_a_folder_that_is_not_there_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "info", str(tmp_path / "nope")]) == 2
    assert (
        f"{tmp_path / 'nope'}: expected a data.cache_dir folder; found nothing there"
        in capsys.readouterr().err
    )


def test_prune_stale_removes_the_volumes_of_rewritten_scans(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oldest, middle, newest = list_decompressed(cache).files
    assert oldest.source is not None
    scan = Path(oldest.source.files[0][0])
    np.savez_compressed(scan, image=np.full((2, 16, 16), 9.0))  # the scan rewritten since
    os.utime(scan, (time.time() + 10,) * 2)  # whatever the clock's resolution
    assert main(["cache", "info", str(cache)]) == 0
    assert (
        f"  1 decompressed volume ({format_bytes(oldest.size)}) of source files since rewritten or removed"
        in capsys.readouterr().out
    )
    assert main(["cache", "prune", str(cache), "--stale"]) == 0
    assert capsys.readouterr().out.startswith(f"{cache}: removed 1 decompressed volume (")
    assert set(cache.glob("*.npy")) == {middle.path, newest.path}


# Each unit in seconds, spelt out here rather than taken from the module.
AGE_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


@given(count=st.integers(0, 10**6), unit=st.sampled_from(sorted(AGE_UNITS)))
def test_an_age_is_a_count_of_its_unit(count: int, unit: str) -> None:
    assert parse_age(f"{count}{unit}") == datetime.timedelta(seconds=count * AGE_UNITS[unit])


@given(count=st.integers(0, 10**6), unit=st.sampled_from(sorted(AGE_UNITS)), data=st.data())
def test_an_age_with_an_upper_case_unit_is_refused_naming_the_lower_case_one(
    count: int, unit: str, data: st.DataObject
) -> None:
    # Any spelling with a capital: "M" is months to systemd and ISO 8601, so no capital is read.
    spelt = data.draw(
        st.sampled_from(
            [unit.upper()] + [unit[:i] + unit[i].upper() + unit[i + 1 :] for i in range(len(unit))]
        )
    )
    with pytest.raises(argparse.ArgumentTypeError, match="expected a lower-case unit") as refused:
        parse_age(f"{count}{spelt}")
    if spelt != "M":
        assert f"give '{count}{unit}'" in str(refused.value)


@pytest.mark.parametrize(("text", "days"), [("6M", "180d"), ("1.5M", "45d"), ("12 M", "360d")])
def test_months_are_refused_with_their_days_suggested(
    cache: Path, capsys: pytest.CaptureFixture[str], text: str, days: str
) -> None:
    # Read as minutes, "6M" removed every volume unused for the last 6 minutes: here all three.
    before = sorted(cache.glob("*.npy"))
    with pytest.raises(SystemExit) as exited:
        main(["cache", "prune", str(cache), "--unused-for", text])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "argument --unused-for: expected a lower-case unit" in error
    assert f"found {text!r}: for {text[:-1].strip()} months give days, such as '{days}'" in error
    assert sorted(cache.glob("*.npy")) == before


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1y", "1e3s", "10000000000000w", ""])
def test_an_age_without_a_unit_or_past_any_date_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected an age with its unit .*found {text!r}"):
        parse_age(text)
