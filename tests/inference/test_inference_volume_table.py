"""``volumes.csv`` across the predicts into one output (``inference.volume_table``).

The expectation for a merged table is built case by case from the two tables' rows (each case's
row is the latest predict's), and for the rows a predict writes, a predict of the same inputs
into a fresh folder.
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inpaintssl as issl
from inpaintssl.inference.results import PredictionError
from inpaintssl.inference.volume_table import merged_volume_table
from predict_helpers import predict_quietly

writing = importlib.import_module("inpaintssl.inference.writing")


def _table(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    return buffer.getvalue()


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


_cases = st.lists(st.sampled_from([f"case{k}" for k in range(8)]), unique=True, max_size=6)
_volume = st.floats(min_value=0, max_value=1e4, allow_nan=False).map(repr)


@settings(max_examples=60, deadline=None)
@given(earlier_cases=_cases, new_cases=_cases, data=st.data())
def test_each_case_keeps_its_latest_row_in_its_first_place(
    earlier_cases: list[str], new_cases: list[str], data: st.DataObject
) -> None:
    header = ["case", "file", "wm_ml", "gm_ml", "cut_edge_share"]

    def rows(cases: list[str], tag: str) -> list[list[str]]:
        return [[c, f"{tag}/{c}.nii.gz", data.draw(_volume), data.draw(_volume), "0"] for c in cases]

    earlier, new = rows(earlier_cases, "earlier"), rows(new_cases, "new")
    merged = _rows(merged_volume_table(_table(header, earlier), _table(header, new)))
    latest = {row[0]: row for row in earlier} | {row[0]: row for row in new}
    order = earlier_cases + [c for c in new_cases if c not in earlier_cases]
    assert [row["case"] for row in merged] == order
    for row in merged:
        assert list(row.values()) == latest[row["case"]]


@pytest.mark.parametrize("with_t2", ["earlier", "new"])
def test_columns_one_table_lacks_are_kept_empty_in_its_rows(with_t2: str) -> None:
    plain = ["case", "file", "wm_ml", "gm_ml", "cut_edge_share"]
    t2 = ["case", "file", "wm_ml", "gm_ml", "wm_t2_ms", "gm_t2_ms", "cut_edge_share"]
    t2_row, plain_row = (
        ["a", "a.nii.gz", "1.0", "2.0", "35.5", "40.0", "0"],
        ["b", "b.nii.gz", "3.0", "4.0", "0"],
    )
    earlier, new = (_table(t2, [t2_row]), _table(plain, [plain_row]))
    if with_t2 == "new":
        earlier, new = _table(plain, [plain_row]), _table(t2, [t2_row])
    merged = merged_volume_table(earlier, new)
    assert merged.splitlines()[0] == ",".join(t2)  # the mean T2 after the volumes, as predict writes it
    by_case = {row["case"]: row for row in _rows(merged)}
    assert (by_case["a"]["wm_t2_ms"], by_case["b"]["wm_t2_ms"], by_case["b"]["cut_edge_share"]) == (
        "35.5",
        "",
        "0",
    )


def test_tables_of_other_classes_or_no_table_are_refused_naming_the_file() -> None:
    ours = _table(["case", "file", "wm_ml"], [["a", "a.nii.gz", "1.0"]])
    theirs = _table(["case", "file", "liver_ml"], [["b", "b.nii.gz", "1.0"]])
    with pytest.raises(PredictionError, match=r"out/volumes\.csv holds the class volumes \['liver_ml'\]"):
        merged_volume_table(theirs, ours, where="out/volumes.csv")
    with pytest.raises(
        PredictionError, match=r"out/volumes\.csv is no volumes\.csv a predict wrote: .*\['id', 'wm'\]"
    ):
        merged_volume_table("id,wm\nx,1\n", ours, where="out/volumes.csv")


def _scan(path: Path, seed: int) -> Path:
    image = np.random.default_rng(seed).normal(0.0, 1.0, size=(32, 32, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def test_a_predict_of_some_cases_keeps_the_others_rows(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    first = [_scan(scans / f"{name}.nii.gz", seed) for seed, name in enumerate("abc")]
    out = tmp_path / "out"
    earlier = _rows(predict_quietly(trained_run.run_dir, first, out).volumes_csv.read_text())
    # b is a repaired scan (other values), d a new one; predicted with another run of the same classes.
    second = [_scan(scans / "b.nii.gz", 10), _scan(scans / "d.nii.gz", 11)]
    other_run = Path(shutil.copytree(trained_run.run_dir, tmp_path / "other_run"))
    report = predict_quietly(other_run, second, out)
    alone = _rows(predict_quietly(other_run, second, tmp_path / "alone").volumes_csv.read_text())
    assert [c.case for c in report.cases] == ["b", "d"]
    merged = _rows(report.volumes_csv.read_text())
    assert [row["case"] for row in merged] == ["a", "b", "c", "d"]
    assert [merged[0], merged[2]] == [earlier[0], earlier[2]]
    assert [merged[1], merged[3]] == alone
    assert merged[1] != earlier[1]  # the repaired scan's volumes are its own
    # Each row names the model that predicted it.
    models = [row["model"] for row in merged]
    assert models == [str(trained_run.run_dir.resolve()), str(other_run.resolve())] * 2


def test_an_output_of_another_models_classes_is_refused_before_anything_is_predicted(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "volumes.csv").write_text("case,file,liver_ml\nx,x.nii.gz,1.5\n")
    scan = _scan(tmp_path / "a.nii.gz", 0)
    with pytest.raises(
        PredictionError, match=r"holds a volumes\.csv of the class volumes \['liver_ml'\], but this run"
    ):
        predict_quietly(trained_run.run_dir, scan, out)
    assert sorted(p.name for p in out.iterdir()) == ["volumes.csv"]
    assert not list(tmp_path.glob(".out.*"))


def _predicts_at_once(
    monkeypatch: pytest.MonkeyPatch,
    run_dir: Path,
    out: Path,
    first: Any,
    second: Any,
    *,
    first_marker: str,
    **options: Any,
) -> tuple[list[BaseException], list[warnings.WarningMessage]]:
    """Predict ``first`` and ``second`` into ``out`` on two threads, the first held inside its commit
    (its merge read, its files not moved) until the second has reached its own commit lock and, for
    up to a second, merged; the errors either raised, and the warnings of both.

    Args:
        first_marker: Text only the first predict's new table rows hold (how its merge is told apart).
    """
    inside, second_at_lock, second_merged = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []
    real_merge, real_lock = writing.merged_volume_table, writing._commit_lock

    def held_merge(earlier: str, new: str, **where: str) -> str:
        merged = real_merge(earlier, new, **where)
        if first_marker in new:  # the first predict's
            inside.set()
            assert second_at_lock.wait(60)
            second_merged.wait(1.0)  # it cannot, holding no lock, while this one holds it
        else:
            second_merged.set()
        return str(merged)

    def noted_lock(output: Path) -> Any:
        if threading.current_thread().name == "second":
            second_at_lock.set()
        return real_lock(output)

    monkeypatch.setattr(writing, "merged_volume_table", held_merge)
    monkeypatch.setattr(writing, "_commit_lock", noted_lock)

    def run(inputs: Any) -> None:
        try:
            issl.predict(run_dir, inputs, output=out, progress=False, **options)
        except BaseException as exc:  # noqa: BLE001 - reported below, on the test's thread
            errors.append(exc)
            inside.set()

    threads = [
        threading.Thread(target=run, args=(inputs,), name=name)
        for name, inputs in (("first", first), ("second", second))
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads[0].start()
        assert inside.wait(120)
        threads[1].start()
        for thread in threads:
            thread.join(120)
    return errors, caught


def test_two_predicts_into_one_output_at_once_keep_each_others_rows(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first predict is held inside its commit until the second has reached its own and, for up
    to a second, merged: without the commit lock the second merges then, without the first's rows,
    and the first moves its table, without the second's, over it. With the lock the second waits for
    the first's files, and merges them."""
    scans = tmp_path / "scans"
    scans.mkdir()
    out = tmp_path / "out"
    predict_quietly(trained_run.run_dir, _scan(scans / "a.nii.gz", 0), out)
    first, second = _scan(scans / "b.nii.gz", 1), _scan(scans / "c.nii.gz", 2)
    errors, _ = _predicts_at_once(monkeypatch, trained_run.run_dir, out, first, second, first_marker="\nb,")
    assert not errors
    assert [row["case"] for row in _rows((out / "volumes.csv").read_text())] == ["a", "b", "c"]


def _other_input_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "is now predicted from another input" in str(w.message)]


def _two_sites_sub(root: Path) -> None:
    """``site1/sub.nii.gz`` and ``site2/sub.nii.gz`` under ``root``: two scans that are both case ``sub``."""
    for folder, seed in (("site1", 0), ("site2", 1)):
        (root / folder).mkdir()
        _scan(root / folder / "sub.nii.gz", seed)


def test_a_case_predicted_again_from_another_input_is_named_in_a_warning(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two folders' sub.nii.gz are both case "sub": predicted into one output in two calls, the second
    # replaced the first's label map and row without a word.
    _two_sites_sub(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = Path("out")

    def warned(inputs: Any) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            issl.predict(trained_run.run_dir, inputs, output=out, device="cpu", progress=False)
        return _other_input_warnings(caught)

    assert warned("site1/sub.nii.gz") == []
    (message,) = warned("site2/")
    assert message == (
        "output out: case 'sub' was predicted from site1/sub.nii.gz (its row in out/volumes.csv), and is now "
        "predicted from another input, site2/sub.nii.gz: its label map and row are replaced by this input's. "
        "If both scans are wanted, predict them into separate output folders, or rename one"
    )
    # The same file again, however it is named: as given before, absolute, or from another folder.
    assert warned("site2/sub.nii.gz") == []
    assert warned(tmp_path / "site2" / "sub.nii.gz") == []
    monkeypatch.chdir(tmp_path / "site2")
    out = Path("../out")
    assert warned("sub.nii.gz") == []  # the row's site2/sub.nii.gz, from the folder above, is this file
    monkeypatch.chdir(tmp_path)
    out = Path("out")
    assert warned("site2/sub.nii.gz") == []
    assert [m.split(": its label map")[0] for m in warned(tmp_path / "site1" / "sub.nii.gz")] == [
        "output out: case 'sub' was predicted from site2/sub.nii.gz (its row in out/volumes.csv), and is "
        f"now predicted from another input, {tmp_path / 'site1' / 'sub.nii.gz'}"
    ]


def test_two_predicts_at_once_of_one_case_name_from_two_inputs_warn(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: the check read volumes.csv once, before predicting; a predict committing meanwhile wrote
    # site1's "sub", and site2's replaced it at its own commit without a word.
    _two_sites_sub(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = Path("out")
    predict_quietly(trained_run.run_dir, _scan(tmp_path / "a.nii.gz", 2), out)
    errors, caught = _predicts_at_once(
        monkeypatch,
        trained_run.run_dir,
        out,
        "site1/sub.nii.gz",
        "site2/sub.nii.gz",
        first_marker="site1/",
        device="cpu",
    )
    assert not errors
    assert [m.split(": its label map")[0] for m in _other_input_warnings(caught)] == [
        "output out: case 'sub' was predicted from site1/sub.nii.gz (its row in out/volumes.csv), and is "
        "now predicted from another input, site2/sub.nii.gz"
    ]
    assert [(row["case"], row["file"]) for row in _rows((out / "volumes.csv").read_text())] == [
        ("a", str(tmp_path / "a.nii.gz")),
        ("sub", "site2/sub.nii.gz"),
    ]


def test_the_commit_lock_of_an_output_named_through_a_link_is_the_real_folders(tmp_path: Path) -> None:
    # Was: flock on the folder above the path as typed: one predict into preds_link (-> elsewhere/
    # preds) and one into elsewhere/preds locked two folders and merged at once, losing rows.
    fcntl = pytest.importorskip("fcntl")
    real = tmp_path / "elsewhere" / "preds"
    real.mkdir(parents=True)
    (tmp_path / "preds_link").symlink_to(real)
    with writing._commit_lock(tmp_path / "preds_link"):
        fd = os.open(real.parent, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
