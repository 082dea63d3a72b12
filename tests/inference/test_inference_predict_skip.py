"""``predict(skip_bad_inputs=True)``: a cohort's bad inputs left out, the others predicted.

The reference for the inputs predicted is a predict of those inputs alone: their label maps and
``volumes.csv`` must be the same, bit for bit. Each input left out must be named, with the error
that a predict without skipping raises for it, in the report, in ``skipped.csv`` and in a warning.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from inpaintssl.cli import main as cli_main
from inpaintssl.inference.results import SkippedInput
from predict_helpers import predict_quietly, written_niftis

GOOD = ("a", "b", "c", "d", "e")
predict_module = importlib.import_module("inpaintssl.inference.predict")


def _scan(path: Path, image: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(image.astype(np.float32), np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def _noise(seed: int, channels: int = 0) -> np.ndarray:
    shape = (32, 32, 5) if channels == 0 else (32, 32, 5, channels)
    return np.random.default_rng(seed).normal(0.0, 1.0, size=shape)


@pytest.fixture
def good(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "scans"
    folder.mkdir()
    return {name: _scan(folder / f"{name}.nii.gz", _noise(seed)) for seed, name in enumerate(GOOD)}


@pytest.fixture
def bad(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Inputs that predict refuses, each with (a pattern of) the error it refuses it with."""
    folder = tmp_path / "bad"
    folder.mkdir()
    cut = _scan(folder / "cut.nii.gz", _noise(10))
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    holed = _noise(11)
    holed[3, 4, 2] = np.nan
    return {
        "cut": (cut, r"cut\.nii\.gz cannot be read .*truncated"),
        "blank": (_scan(folder / "blank.nii.gz", np.zeros((32, 32, 5))), r"holds the value 0 in every voxel"),
        "holed": (_scan(folder / "holed.nii.gz", holed), r"slice 2: 1 NaN/Inf value"),
        "pair": (_scan(folder / "pair.nii.gz", _noise(12, channels=2)), r"takes 1 input channel.*gives 2"),
    }


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_bad_inputs_are_left_out_and_the_others_predicted_as_they_are_alone(
    trained_run: issl.FinetuneResult, good: dict[str, Path], bad: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    run = trained_run.run_dir
    inputs = [
        good["a"],
        bad["cut"][0],
        good["b"],
        bad["blank"][0],
        bad["holed"][0],
        bad["pair"][0],
        good["c"],
    ]
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = issl.predict(run, inputs, output=out, device="cpu", progress=False, skip_bad_inputs=True)
    assert [c.case for c in report.cases] == ["a", "b", "c"]
    assert [s.case for s in report.skipped] == ["cut", "blank", "holed", "pair"]  # in input order
    skipped_warnings = [str(w.message) for w in caught if "skipped, not predicted" in str(w.message)]
    assert len(skipped_warnings) == 4
    for item, message in zip(report.skipped, skipped_warnings):
        path, pattern = bad[item.case]
        assert item.source == path and str(path) in item.reason and item.reason in message
        # The error a predict without skipping stops with, for this input alone.
        with pytest.raises(issl.PredictionError, match=pattern) as refused:
            predict_quietly(run, path, tmp_path / f"alone-{item.case}")
        assert str(refused.value) == item.reason
    assert report.skipped_csv == out / "skipped.csv"
    assert _read_csv(out / "skipped.csv") == [
        {"case": s.case, "file": str(s.source), "reason": s.reason} for s in report.skipped
    ]
    reference = predict_quietly(run, [good[n] for n in ("a", "b", "c")], tmp_path / "reference")
    assert reference.skipped == () and reference.skipped_csv is None
    assert (out / "volumes.csv").read_text() == (tmp_path / "reference" / "volumes.csv").read_text()
    ours, theirs = written_niftis(out), written_niftis(tmp_path / "reference")
    assert sorted(ours) == sorted(theirs) == ["a_seg.nii.gz", "b_seg.nii.gz", "c_seg.nii.gz"]
    for name in ours:
        assert np.array_equal(ours[name][0], theirs[name][0]) and np.array_equal(
            ours[name][1], theirs[name][1]
        )
    assert sorted(p.name for p in out.iterdir()) == sorted([*ours, "volumes.csv", "skipped.csv"])
    # Without the option the first bad input stops the call, and nothing is written.
    with pytest.raises(issl.PredictionError, match=bad["cut"][1]):
        predict_quietly(run, inputs, tmp_path / "stopped")
    assert not (tmp_path / "stopped").exists()


@pytest.mark.parametrize("read_ahead", ["on", "off"])
def test_an_input_changed_while_the_others_are_predicted_is_left_out(
    trained_run: issl.FinetuneResult,
    good: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    read_ahead: str,
) -> None:
    run = trained_run.run_dir
    real = predict_module.predict_case
    predicted: list[str] = []

    def changing(item: Any, **kwargs: Any) -> Any:
        predicted.append(item.case)
        if item.case == "b":
            # c, checked and (read ahead) perhaps being read again, is replaced by another scan.
            _scan(good["c"], _noise(20)[:, :, :4])
        return real(item, **kwargs)

    monkeypatch.setattr(predict_module, "predict_case", changing)
    report = predict_quietly(
        run, [good[n] for n in GOOD], tmp_path / "out", skip_bad_inputs=True, read_ahead=read_ahead
    )
    assert predicted == ["a", "b", "d", "e"]
    assert [c.case for c in report.cases] == ["a", "b", "d", "e"]
    (left,) = report.skipped
    assert left.case == "c" and f"input {good['c']} changed after it was checked" in left.reason
    assert [row["case"] for row in _read_csv(report.volumes_csv)] == ["a", "b", "d", "e"]
    assert not (tmp_path / "out" / "c_seg.nii.gz").exists()


def test_a_predict_that_leaves_every_input_out_fails_and_writes_nothing(
    trained_run: issl.FinetuneResult, bad: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    inputs = [path for path, _ in bad.values()]
    with pytest.raises(
        issl.PredictionError, match=r"no input could be predicted: all 4 failed a check"
    ) as err:
        predict_quietly(trained_run.run_dir, inputs, out, skip_bad_inputs=True)
    # The first three errors are quoted, and the fourth counted.
    for name in ("cut", "blank", "holed"):
        assert str(bad[name][0]) in str(err.value)
    assert str(bad["pair"][0]) not in str(err.value) and "and 1 more" in str(err.value)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_with_nothing_to_leave_out_skipped_csv_has_no_rows(
    trained_run: issl.FinetuneResult, good: dict[str, Path], tmp_path: Path
) -> None:
    report = predict_quietly(trained_run.run_dir, good["a"], tmp_path / "out", skip_bad_inputs=True)
    assert report.skipped == () and [c.case for c in report.cases] == ["a"]
    assert report.skipped_csv is not None and report.skipped_csv.read_text() == "case,file,reason\n"


def test_an_interrupted_skipping_predict_resumes_and_lists_what_it_left_out(
    trained_run: issl.FinetuneResult,
    good: dict[str, Path],
    bad: dict[str, tuple[Path, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = trained_run.run_dir
    inputs = [good["a"], bad["blank"][0], good["b"], good["c"]]
    real = predict_module.predict_case
    predicted: list[str] = []

    def stopping(item: Any, **kwargs: Any) -> Any:
        if item.case == "c" and not predicted.count("stopped"):
            predicted.append("stopped")
            raise KeyboardInterrupt
        predicted.append(item.case)
        return real(item, **kwargs)

    monkeypatch.setattr(predict_module, "predict_case", stopping)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        predict_quietly(run, inputs, out, skip_bad_inputs=True)
    assert not out.exists()
    report = predict_quietly(run, inputs, out, skip_bad_inputs=True)
    assert predicted == ["a", "b", "stopped", "c"]
    assert report.resumed == ("a", "b") and [c.case for c in report.cases] == ["a", "b", "c"]
    assert report.skipped == (SkippedInput("blank", bad["blank"][0], report.skipped[0].reason),)
    assert [row["case"] for row in _read_csv(out / "skipped.csv")] == ["blank"]


def test_the_cli_lists_the_inputs_left_out(
    trained_run: issl.FinetuneResult,
    good: dict[str, Path],
    bad: dict[str, tuple[Path, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = [
        str(trained_run.run_dir),
        str(good["a"]),
        str(bad["cut"][0]),
        str(good["b"]),
        "--output",
        str(out),
    ]
    left_out = rf"skipped, not predicted \(skip_bad_inputs\): .*{bad['cut'][0]} cannot be read"
    with pytest.warns(UserWarning, match=left_out):
        assert cli_main(["predict", *args, "--device", "cpu", "--quiet", "--skip-bad-inputs"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cases"] == 2 and printed["skipped"] == ["cut"]
    assert [row["case"] for row in _read_csv(out / "skipped.csv")] == ["cut"]
    # Without the flag: the error, exit status 2, and "skipped" empty where a predict succeeds.
    assert cli_main(["predict", *args, "--device", "cpu", "--quiet"]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "predict",
                str(trained_run.run_dir),
                str(good["a"]),
                "--output",
                str(tmp_path / "o2"),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["skipped"] == []


def test_skipped_csv_lists_the_inputs_left_out_and_not_predicted_since(
    trained_run: issl.FinetuneResult, good: dict[str, Path], bad: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    run, out = trained_run.run_dir, tmp_path / "out"
    inputs = [good["a"], bad["blank"][0], bad["holed"][0], bad["pair"][0]]
    predict_quietly(run, inputs, out, skip_bad_inputs=True)
    assert [row["case"] for row in _read_csv(out / "skipped.csv")] == ["blank", "holed", "pair"]
    # The blank scan repaired and predicted alone, without skipping: it is no longer left out.
    repaired = _scan(bad["blank"][0], _noise(20))
    predict_quietly(run, repaired, out)
    assert [row["case"] for row in _read_csv(out / "skipped.csv")] == ["holed", "pair"]
    assert [row["case"] for row in _read_csv(out / "volumes.csv")] == ["a", "blank"]
    # The other two again, one repaired: the one still bad keeps its row, with its error of now.
    _scan(bad["holed"][0], _noise(21))
    still = _scan(bad["pair"][0], _noise(22, channels=3))
    report = predict_quietly(run, [bad["holed"][0], still], out, skip_bad_inputs=True)
    assert [s.case for s in report.skipped] == ["pair"]
    (row,) = _read_csv(out / "skipped.csv")
    assert (row["case"], row["reason"]) == ("pair", report.skipped[0].reason) and "gives 3" in row["reason"]
    assert [row["case"] for row in _read_csv(out / "volumes.csv")] == ["a", "blank", "holed"]


def test_an_output_whose_skipped_csv_is_another_table_is_refused_before_predicting(
    trained_run: issl.FinetuneResult, good: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "skipped.csv").write_text("id,why\nx,blank\n")
    with pytest.raises(
        issl.PredictionError, match=r"skipped\.csv is no skipped\.csv a predict wrote: .*\['id', 'why'\]"
    ):
        predict_quietly(trained_run.run_dir, good["a"], out)
    assert sorted(p.name for p in out.iterdir()) == ["skipped.csv"]


def _damaged_npz(folder: Path) -> dict[str, tuple[Path, str]]:
    """A ``.npz`` cut off half way and one whose array fails its CRC, each with the refusal's pattern."""
    folder.mkdir()
    image = _noise(20).astype(np.float32)
    whole = folder / "whole.npz"
    np.savez_compressed(whole, image=image)
    data = whole.read_bytes()
    whole.unlink()
    trunc = folder / "trunc.npz"
    trunc.write_bytes(data[: len(data) // 2])  # a copy stopped half way: no zip directory at its end
    crc = folder / "crc.npz"
    np.savez(crc, image=image)  # stored: the array's bytes are in the file as they are
    raw = bytearray(crc.read_bytes())
    end = raw.find(image.tobytes()) + image.nbytes
    raw[end - 8 : end] = bytes(b ^ 0xFF for b in raw[end - 8 : end])  # its last voxels, flipped
    crc.write_bytes(bytes(raw))
    return {
        "trunc": (trunc, r"input \S*trunc\.npz cannot be read as a NumPy \.npz archive \(BadZipFile: "),
        "crc": (crc, r"NumPy file \S*crc\.npz cannot be read at slice \d+ .*BadZipFile: Bad CRC-32"),
    }


def test_a_truncated_or_corrupt_npz_is_refused_naming_it_or_left_out(
    trained_run: issl.FinetuneResult, good: dict[str, Path], tmp_path: Path
) -> None:
    # zipfile's BadZipFile is no OSError: it escaped every check as a raw traceback (exit 1), also
    # with skip_bad_inputs.
    run = trained_run.run_dir
    for case, (path, pattern) in _damaged_npz(tmp_path / "npz").items():
        with pytest.raises(issl.PredictionError, match=pattern):
            predict_quietly(run, [good["a"], path], tmp_path / f"refused_{case}")
        assert not (tmp_path / f"refused_{case}").exists()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            argv = ["predict", str(run), str(good["a"]), str(path), "--output", str(tmp_path / "cli")]
            assert cli_main([*argv, "--device", "cpu", "--quiet"]) == 2
        report = predict_quietly(run, [good["a"], path], tmp_path / f"left_out_{case}", skip_bad_inputs=True)
        assert [c.case for c in report.cases] == ["a"]
        assert [(s.case, s.source) for s in report.skipped] == [(case, path)]
        assert re.search(pattern, report.skipped[0].reason), report.skipped[0].reason
