"""Listing and pruning a ``data.cache_dir`` folder: stale volumes, old ones, then the longest unused.

Files are made two ways: by the real readers (what a run leaves), and, for the invariants, as
files named the way the library names them, of chosen sizes and last-use times; the expected
survivors are computed here another way (the newest volumes that fit, counted from the newest).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.atomic import atomic_path
from inpaintssl.data.decompressed import decompressed_into, source_record_path
from inpaintssl.data.decompressed_upkeep import list_decompressed, prune_decompressed
from inpaintssl.data.readers import NumpyVolume

DAY = 86400.0


def _scans(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"scan{i}.npz"
        np.savez_compressed(path, image=np.full((3, 8, 8), float(i), dtype=np.float32))
        paths.append(path)
    return paths


def _read(scan: Path, cache: Path) -> np.ndarray:
    with decompressed_into(cache):
        return np.array(NumpyVolume(scan, key="image").read(0))


def _volume_file(folder: Path, index: int, *, size: int, last_used: float) -> Path:
    """A file named as the library names a decompressed volume, ``size`` bytes, used at ``last_used``."""
    path = folder / f"{index:032x}.npy"
    path.write_bytes(b"\0" * size)
    os.utime(path, (last_used, last_used))
    return path


def test_a_run_reading_a_volume_marks_its_file_used(tmp_path: Path) -> None:
    (scan,) = _scans(tmp_path / "data", 1)
    cache = tmp_path / "cache"
    _read(scan, cache)
    (written,) = list_decompressed(cache).files
    long_ago = time.time() - 40 * DAY
    os.utime(written.path, (long_ago, long_ago))
    before = time.time()
    _read(scan, cache)  # a later run: maps the file, decompresses nothing
    (used,) = list_decompressed(cache).files
    assert used.path == written.path and used.last_used >= before - 1


def test_pruning_to_a_size_keeps_the_volumes_used_last(tmp_path: Path) -> None:
    scans = _scans(tmp_path / "data", 3)
    cache = tmp_path / "cache"
    file_of: dict[str, Path] = {}
    for scan, age in zip(scans, (30, 20, 10), strict=True):
        known = {entry.path for entry in list_decompressed(cache).files} if cache.exists() else set()
        _read(scan, cache)
        (file_of[scan.name],) = {entry.path for entry in list_decompressed(cache).files} - known
        os.utime(file_of[scan.name], (time.time() - age * DAY,) * 2)  # written that long ago
    _read(scans[0], cache)  # a later run reads the first scan again
    sizes = {entry.size for entry in list_decompressed(cache).files}
    (size,) = sizes
    report = prune_decompressed(cache, max_size=2 * size)
    # scan1 was used 20 days ago, scan2 10 days ago, scan0 just now: scan1 goes.
    assert [entry.path for entry in report.removed] == [file_of["scan1.npz"]]
    assert {entry.path for entry in report.kept} == {file_of["scan0.npz"], file_of["scan2.npz"]}
    assert report.freed_size == size and report.kept_size == 2 * size and not report.dry_run
    assert set(cache.glob("*.npy")) == {entry.path for entry in report.kept}
    assert set(cache.glob("*.json")) == {source_record_path(entry.path) for entry in report.kept}
    # What is left still reads the same; what went is decompressed again by the next reader.
    for i, scan in enumerate(scans):
        assert _read(scan, cache).max() == i
    assert len(list_decompressed(cache).files) == 3


def test_pruning_by_age_removes_what_was_unused_for_longer(tmp_path: Path) -> None:
    now = time.time()
    old = _volume_file(tmp_path, 1, size=10, last_used=now - 31 * DAY)
    recent = _volume_file(tmp_path, 2, size=10, last_used=now - 29 * DAY)
    report = prune_decompressed(tmp_path, unused_for=datetime.timedelta(days=30))
    assert [entry.path for entry in report.removed] == [old]
    assert [entry.path for entry in report.kept] == [recent]
    assert not old.exists() and recent.exists()


@settings(max_examples=60)
@given(
    sizes=st.lists(st.integers(0, 5000), min_size=0, max_size=12),
    ages=st.lists(st.integers(0, 60), min_size=12, max_size=12, unique=True),
    max_size=st.one_of(st.none(), st.integers(0, 40000)),
    days=st.one_of(st.none(), st.integers(0, 60)),
    dry_run=st.booleans(),
)
def test_a_prune_keeps_the_newest_volumes_that_fit(
    tmp_path_factory: pytest.TempPathFactory,
    sizes: list[int],
    ages: list[int],
    max_size: int | None,
    days: int | None,
    dry_run: bool,
) -> None:
    if max_size is None and days is None:
        max_size = 0
    folder = tmp_path_factory.mktemp("cache")
    now = time.time()
    # Ages in whole days plus half a day: none sits on the cut-off of an age limit.
    made = [
        _volume_file(folder, i, size=size, last_used=now - (age + 0.5) * DAY)
        for i, (size, age) in enumerate(zip(sizes, ages, strict=False))
    ]
    user_file = folder / "notes.txt"
    user_file.write_text("mine")
    age_of = {path: ages[i] + 0.5 for i, path in enumerate(made)}
    size_of = {path: sizes[i] for i, path in enumerate(made)}

    report = prune_decompressed(
        folder,
        max_size=max_size,
        unused_for=None if days is None else datetime.timedelta(days=days),
        dry_run=dry_run,
    )

    # Expected, counted from the newest: young enough, and while the running total fits.
    expected_kept: set[Path] = set()
    total = 0
    for path in sorted(made, key=lambda p: age_of[p]):
        if days is not None and age_of[path] > days:
            continue
        if max_size is not None and total + size_of[path] > max_size:
            break
        expected_kept.add(path)
        total += size_of[path]
    kept = {entry.path for entry in report.kept}
    removed = {entry.path for entry in report.removed}
    assert kept == expected_kept
    assert removed == set(made) - expected_kept
    assert report.kept_size == total and report.freed_size == sum(size_of[p] for p in removed)
    # Reported oldest use first, as listed.
    assert [e.last_used for e in report.removed] == sorted(e.last_used for e in report.removed)
    on_disk = {p for p in folder.iterdir()}
    assert on_disk == (set(made) if dry_run else kept) | {user_file}
    assert user_file.read_text() == "mine" and report.dry_run == dry_run and report.failed == ()


def test_entries_the_library_did_not_write_are_never_touched(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.npy"
    outside.write_bytes(b"a user's array")
    cache = tmp_path / "cache"
    cache.mkdir()
    link = cache / f"{7:032x}.npy"
    link.symlink_to(outside)  # named as a volume, but a link: not the library's
    folder_named_like_one = cache / f"{8:032x}.npy"
    folder_named_like_one.mkdir()
    upper = cache / f"{'A' * 32}.npy"
    upper.write_bytes(b"x")
    contents = list_decompressed(cache)
    assert contents.files == () and set(contents.other) == {link, folder_named_like_one, upper}
    report = prune_decompressed(cache, max_size=0)
    assert report.removed == () and report.temporaries_removed == ()
    assert outside.read_bytes() == b"a user's array" and link.is_symlink()
    assert folder_named_like_one.is_dir() and upper.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX; Windows sweeps no temporaries")
def test_temporaries_of_killed_writers_go_and_a_live_writers_stay(tmp_path: Path) -> None:
    volume = _volume_file(tmp_path, 1, size=8, last_used=time.time())
    stale = tmp_path / f".{volume.name}.ab12cd34.tmp"
    live = tmp_path / f".{volume.name}.zz98yy76.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    import fcntl

    writer = os.open(live, os.O_RDONLY)
    fcntl.flock(writer, fcntl.LOCK_EX)  # as atomic_path's writer holds its temporary
    try:
        assert set(list_decompressed(tmp_path).temporaries) == {stale, live}
        dry = prune_decompressed(tmp_path, max_size=100, dry_run=True)
        assert dry.temporaries_removed == (stale,) and stale.exists()
        report = prune_decompressed(tmp_path, max_size=100)
        assert report.temporaries_removed == (stale,) and report.kept == dry.kept
        assert not stale.exists() and live.exists() and volume.exists()
    finally:
        os.close(writer)


def test_a_volume_removed_while_a_reader_maps_it_stays_readable_there(tmp_path: Path) -> None:
    (scan,) = _scans(tmp_path / "data", 1)
    scan_data = np.load(scan)["image"]
    cache = tmp_path / "cache"
    with decompressed_into(cache):
        volume = NumpyVolume(scan, key="image")
        first = np.array(volume.read(0))
    report = prune_decompressed(cache, max_size=0)
    assert len(report.removed) == 1 and list(cache.iterdir()) == []
    # The run that had mapped it reads on; a new reader decompresses it again.
    for i in range(volume.num_slices):
        assert np.array_equal(volume.read(i), scan_data[..., i])
    assert np.array_equal(_read(scan, cache), first) and len(list_decompressed(cache).files) == 1


def test_a_link_named_like_a_volumes_record_stays_when_the_volume_goes(tmp_path: Path) -> None:
    outside = tmp_path / "notes.json"
    outside.write_text("a user's notes")
    (tmp_path / "cache").mkdir()
    volume = _volume_file(tmp_path / "cache", 5, size=10, last_used=time.time())
    link = source_record_path(volume)
    link.symlink_to(outside)
    assert link in list_decompressed(tmp_path / "cache").other
    report = prune_decompressed(tmp_path / "cache", max_size=0)
    assert [entry.path for entry in report.removed] == [volume] and not volume.exists()
    assert link.is_symlink() and outside.read_text() == "a user's notes"


def test_a_volume_that_cannot_be_removed_is_reported_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As Windows refuses to remove a mapped file (and a folder without write permission would, for
    # a user other than root, which these tests run as): the unlink itself is made to fail.
    now = time.time()
    held = _volume_file(tmp_path, 1, size=100, last_used=now - 3 * DAY)
    other = _volume_file(tmp_path, 2, size=100, last_used=now - 2 * DAY)
    newest = _volume_file(tmp_path, 3, size=100, last_used=now - DAY)
    real_unlink = Path.unlink

    def refusing(self: Path, missing_ok: bool = False) -> None:
        if self == held:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refusing)
    report = prune_decompressed(tmp_path, max_size=150)
    ((failed, reason),) = report.failed
    assert failed.path == held and "Permission denied" in reason
    # The others chosen still go, and none in its place: the newest is never removed because an
    # older one could not be.
    assert [e.path for e in report.removed] == [other]
    assert [e.path for e in report.kept] == [held, newest] and held.exists() and newest.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give max_size, unused_for, stale or several; found none"),
        ({"max_size": -1}, "max_size must be >= 0 bytes; found -1"),
        ({"unused_for": datetime.timedelta(days=-1)}, "unused_for must be >= 0; found -1 day"),
        # No comparison holds with NaN: every volume was chosen and the whole cache removed.
        ({"max_size": float("nan")}, "max_size must be >= 0 bytes; found nan"),
        ({"max_size": "12 apples"}, "12 apples"),
        ({"max_size": True}, "max_size=True is of type bool; expected a number of bytes"),
        ({"unused_for": 7}, "unused_for=7 is of type int; expected a datetime.timedelta"),
    ],
)
def test_a_prune_without_a_limit_or_with_a_negative_one_is_refused(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    _volume_file(tmp_path, 1, size=1, last_used=time.time())
    with pytest.raises((ValueError, TypeError), match=message):
        prune_decompressed(tmp_path, **options)  # type: ignore[arg-type]
    assert len(list(tmp_path.iterdir())) == 1


def test_a_size_limit_may_be_written_as_the_command_line_takes_it(tmp_path: Path) -> None:
    now = time.time()
    old = _volume_file(tmp_path, 1, size=1024, last_used=now - 2 * DAY)
    new = _volume_file(tmp_path, 2, size=1024, last_used=now - DAY)
    report = prune_decompressed(tmp_path, max_size="1.5K")
    assert [e.path for e in report.removed] == [old] and [e.path for e in report.kept] == [new]


@pytest.mark.parametrize("what", ["missing", "a file"])
def test_a_folder_that_is_not_one_is_named(tmp_path: Path, what: str) -> None:
    path = tmp_path / "cache"
    if what == "a file":
        path.write_text("")
    found = "nothing there" if what == "missing" else "a file"
    for call in (lambda: list_decompressed(path), lambda: prune_decompressed(path, max_size=0)):
        with pytest.raises(
            NotADirectoryError, match=rf"{path}: expected a data.cache_dir folder; found {found}"
        ):
            call()


def _rewrite(scan: Path, value: float) -> None:
    """``scan`` written again with other data (a preprocessing step run again)."""
    before = scan.stat().st_mtime_ns
    np.savez_compressed(scan, image=np.full((3, 8, 8), value, dtype=np.float32))
    if scan.stat().st_mtime_ns == before:  # a coarse clock: the rewrite must show
        os.utime(scan, ns=(before + 1_000_000, before + 1_000_000))


def test_volumes_of_rewritten_or_removed_sources_are_stale_and_go_with_stale(tmp_path: Path) -> None:
    rewritten, removed_scan, kept_scan = _scans(tmp_path / "data", 3)
    cache = tmp_path / "cache"
    for scan in (rewritten, removed_scan, kept_scan):
        _read(scan, cache)
    before = {entry.source.files[0][0]: entry for entry in list_decompressed(cache).files if entry.source}
    assert len(before) == 3 and not any(entry.stale for entry in before.values())
    _rewrite(rewritten, 7.0)
    removed_scan.unlink()
    assert _read(rewritten, cache).max() == 7.0  # the new contents, in a file of their own

    contents = list_decompressed(cache)
    by_path = {entry.path: entry for entry in contents.files}
    assert len(by_path) == 4
    old, gone, fresh = before[str(rewritten)], before[str(removed_scan)], before[str(kept_scan)]
    assert by_path[old.path].changes == (f"{rewritten} was rewritten",)
    assert by_path[gone.path].changes == (f"{removed_scan} is gone",)
    assert by_path[fresh.path].stale is False
    (new,) = set(by_path) - {old.path, gone.path, fresh.path}
    assert by_path[new].stale is False

    report = prune_decompressed(cache, stale=True)
    assert {entry.path for entry in report.removed} == {old.path, gone.path}
    assert {entry.path for entry in report.kept} == {fresh.path, new}
    assert sorted(cache.iterdir()) == sorted(
        [fresh.path, new, source_record_path(fresh.path), source_record_path(new)]
    )


def test_a_source_that_cannot_be_examined_is_not_called_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shared cache pruned by a user who may not look into another's data folder: stat fails
    # with EACCES on a scan that stands unchanged. Its volume is not stale; a removed one's is.
    hidden, removed_scan = _scans(tmp_path / "data", 2)
    cache = tmp_path / "cache"
    for scan in (hidden, removed_scan):
        _read(scan, cache)
    removed_scan.unlink()
    real_stat = os.stat

    def refusing(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if not isinstance(path, int) and os.fspath(path) == os.path.abspath(hidden):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refusing)
    by_source = {entry.source.files[0][0]: entry for entry in list_decompressed(cache).files if entry.source}
    kept, gone = by_source[os.path.abspath(hidden)], by_source[os.path.abspath(removed_scan)]
    assert kept.stale is False and gone.changes == (f"{os.path.abspath(removed_scan)} is gone",)
    report = prune_decompressed(cache, stale=True)
    assert [entry.path for entry in report.removed] == [gone.path]
    assert [entry.path for entry in report.kept] == [kept.path] and kept.path.exists()


@pytest.mark.parametrize("criterion", ["max_size", "unused_for", "stale"])
def test_only_a_prune_by_staleness_examines_the_source_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, criterion: str
) -> None:
    scans = _scans(tmp_path / "data", 2)
    cache = tmp_path / "cache"
    for scan in scans:
        _read(scan, cache)
    sources = {os.path.abspath(scan) for scan in scans}
    examined: list[str] = []
    real_stat = os.stat

    def spied(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if not isinstance(path, int) and os.fspath(path) in sources:
            examined.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", spied)
    limits: dict[str, Any] = {"max_size": 10**9, "unused_for": datetime.timedelta(days=1), "stale": True}
    report = prune_decompressed(cache, **{criterion: limits[criterion]})
    assert len(report.kept) == 2 and not report.removed
    if criterion == "stale":
        assert sorted(examined) == sorted(sources)
        assert [entry.stale for entry in report.kept] == [False, False]
    else:
        # Size and age come from the volumes' own files: a DICOM series' hundreds of slices stay unread.
        assert examined == []
        assert [entry.changes for entry in report.kept] == [None, None]
    # A listing examines them unless told not to.
    examined.clear()
    assert [entry.stale for entry in list_decompressed(cache).files] == [False, False]
    assert sorted(examined) == sorted(sources)
    examined.clear()
    assert [entry.stale for entry in list_decompressed(cache, check_sources=False).files] == [None, None]
    assert examined == []


def test_a_dicom_series_is_stale_when_one_of_its_slices_changes(tmp_path: Path) -> None:
    from volume_formats import FORMATS

    opened, _ = FORMATS["dicom series across its slices"]
    (tmp_path / "data").mkdir()
    with decompressed_into(tmp_path / "cache"):
        volume = opened(tmp_path / "data")
        volume.read(0)
    (entry,) = list_decompressed(tmp_path / "cache").files
    assert entry.source is not None and len(entry.source.files) == len(volume.files) > 1
    assert entry.stale is False
    one = Path(volume.files[1])
    modified = one.stat().st_mtime_ns
    os.utime(one, ns=(modified, modified + 1_000_000_000))  # touched: read again, it could differ
    (entry,) = list_decompressed(tmp_path / "cache").files
    assert entry.changes == (f"{os.path.abspath(one)} was rewritten",)


@pytest.mark.parametrize("damage", ["missing", "not JSON", "another volume's", "another format"])
def test_a_volume_without_a_record_of_its_own_is_of_unknown_source_and_never_stale(
    tmp_path: Path, damage: str
) -> None:
    first, second = _scans(tmp_path / "data", 2)
    cache = tmp_path / "cache"
    _read(first, cache)
    _read(second, cache)
    volume = next(
        e.path for e in list_decompressed(cache).files if e.source and e.source.files[0][0] == str(first)
    )
    record = source_record_path(volume)
    other_record = next(p for p in cache.glob("*.json") if p != record)
    if damage == "missing":
        record.unlink()
    elif damage == "not JSON":
        record.write_text("{half a rec")
    elif damage == "another volume's":
        record.write_text(other_record.read_text())
    else:
        record.write_text(record.read_text().replace('"format": 1', '"format": 99'))
    first.unlink()  # its source gone: stale, were it known
    (entry,) = [e for e in list_decompressed(cache).files if e.path == volume]
    assert entry.source is None and entry.stale is None and entry.changes is None
    assert prune_decompressed(cache, stale=True).removed == ()
    assert volume.exists()


@pytest.mark.parametrize("damage", ["missing", "empty", "not JSON", "another volume's", "another format"])
def test_a_volume_read_again_gets_back_the_record_it_lacked(tmp_path: Path, damage: str) -> None:
    first, second = _scans(tmp_path / "data", 2)
    cache = tmp_path / "cache"
    _read(first, cache)
    _read(second, cache)
    volume = next(
        e.path for e in list_decompressed(cache).files if e.source and e.source.files[0][0] == str(first)
    )
    record = source_record_path(volume)
    other_record = next(p for p in cache.glob("*.json") if p != record)
    if damage == "missing":
        record.unlink()  # as a folder written before records were kept
    elif damage == "empty":
        record.write_text("")  # as a crash can leave it: records are written without an fsync
    elif damage == "not JSON":
        record.write_bytes(b"\xff{half a rec")
    elif damage == "another volume's":
        record.write_text(other_record.read_text())
    else:
        record.write_text(record.read_text().replace('"format": 1', '"format": 99'))
    assert [e.stale for e in list_decompressed(cache).files if e.path == volume] == [None]
    _read(first, cache)  # its next use records it again
    (entry,) = [e for e in list_decompressed(cache).files if e.path == volume]
    assert entry.stale is False and entry.source is not None
    assert entry.source.files == ((str(first), first.stat().st_size, first.stat().st_mtime_ns),)
    # So a rewrite of its source is seen, and the volume goes with the stale ones.
    np.savez_compressed(first, image=np.full((3, 8, 8), 7.0, dtype=np.float32))
    os.utime(first, ns=(time.time_ns() + 10**10,) * 2)  # whatever the clock's resolution
    (entry,) = [e for e in list_decompressed(cache).files if e.path == volume]
    assert entry.stale is True
    assert [e.path for e in prune_decompressed(cache, stale=True).removed] == [volume]
    assert not volume.exists() and not record.exists() and other_record.exists()


def test_records_whose_volume_is_gone_are_removed_by_any_prune(tmp_path: Path) -> None:
    (scan,) = _scans(tmp_path / "data", 1)
    cache = tmp_path / "cache"
    _read(scan, cache)
    (entry,) = list_decompressed(cache).files
    entry.path.unlink()  # a user removed the volume by hand
    record = source_record_path(entry.path)
    contents = list_decompressed(cache)
    assert contents.files == () and contents.orphaned_records == (record,) and contents.other == ()
    dry = prune_decompressed(cache, max_size=10**9, dry_run=True)
    assert dry.records_removed == (record,) and record.exists()
    assert prune_decompressed(cache, max_size=10**9).records_removed == (record,)
    assert list(cache.iterdir()) == []


def test_a_volume_pruned_between_its_write_and_its_mapping_is_written_again_not_kept_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (scan,) = _scans(tmp_path / "data", 1)
    cache = tmp_path / "cache"
    prunes: list[int] = []

    @contextlib.contextmanager
    def pruned_once_in_place(target: Path, **options: Any) -> Iterator[Path]:
        # `inpaintssl cache prune --max-size 0` beside the run, just after the first rename.
        with atomic_path(target, **options) as temporary:
            yield temporary
        if not prunes and target.suffix == ".npy":
            prunes.append(len(prune_decompressed(cache, max_size=0).removed))

    monkeypatch.setattr("inpaintssl.data.decompressed.atomic_path", pruned_once_in_place)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning that the folder cannot be written, refused
        with decompressed_into(cache):
            volume = NumpyVolume(scan, key="image")
            slices = [np.array(volume.read(i)) for i in range(volume.num_slices)]
    assert prunes == [1]  # the prune did remove the first write
    expected = np.load(scan)["image"]
    assert all(np.array_equal(one, expected[..., i]) for i, one in enumerate(slices))
    kept = volume.__dict__["_cache"]
    (entry,) = list_decompressed(cache).files
    assert isinstance(kept, np.memmap) and Path(str(kept.filename)) == entry.path
    assert entry.source is not None  # recorded, so that upkeep can tell it stale
