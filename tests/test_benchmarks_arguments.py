"""The benchmark scripts refuse arguments that can measure nothing before any work, naming the
argument, what it must be and what was given (rather than failing after the work, or recording a
division by zero as an arm's error)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their siblings
    return importlib.import_module(name)


REFUSED = [
    ("bench_label_map_formats", ["--quick", "--repeats", "0"], "--repeats", ">= 1", "'0'"),
    ("bench_channel_argmax", ["--quick", "--repeats", "0"], "--repeats", ">= 1", "'0'"),
    ("bench_predict_writes", ["--quick", "--repeats", "0"], "--repeats", ">= 1", "'0'"),
    ("bench_mese_t2", ["--quick", "--repeats", "0"], "--repeats", ">= 1", "'0'"),
    ("bench_preflight_threads", ["--quick", "--repeats", "-1"], "--repeats", ">= 1", "'-1'"),
    ("bench_dicom_label_formats", ["--quick", "--repeats", "0"], "--repeats", ">= 1", "'0'"),
    ("bench_dicom_compressed", ["--quick", "--repeats", "0"], "--repeats", ">= 1", "'0'"),
    # Every epoch after the first is compared: one epoch leaves nothing to compare.
    ("bench_dicom_compressed", ["--quick", "--epochs", "1"], "--epochs", ">= 2", "'1'"),
    ("bench_conv_layers", ["--quick", "--repeats", "0"], "--repeats", ">= 1", "'0'"),
    ("bench_convergence", ["--quick", "--steps", "0"], "--steps", ">= 1", "'0'"),
    ("recipe_search", ["finetune", "--epochs", "0"], "--epochs", ">= 1", "'0'"),
    ("recipe_search", ["transfer", "--pretrain-epochs", "0"], "--pretrain-epochs", ">= 1", "'0'"),
]


@pytest.mark.parametrize(
    ("script", "argv", "argument", "expected", "given"),
    REFUSED,
    ids=[f"{script} {' '.join(argv)}" for script, argv, *_ in REFUSED],
)
def test_a_count_that_measures_nothing_is_refused_first(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    script: str,
    argv: list[str],
    argument: str,
    expected: str,
    given: str,
) -> None:
    if script == "recipe_search":  # never the committed record, whatever happens
        argv = [*argv, "--out", str(tmp_path / "record.json"), "--root", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as stopped:
        _script(monkeypatch, script).main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {argument}" in error
    assert expected in error
    assert given in error


def test_the_help_says_how_many_epochs_dicom_compressed_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _script(monkeypatch, "bench_dicom_compressed").main(["--help"])
    assert "at least 2" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("peak", ["0", "-5", "nan", "inf"])
def test_gpu_throughput_refuses_a_peak_that_is_no_positive_number(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, peak: str
) -> None:
    # With 0 every arm was timed, then recorded as {"error": "ZeroDivisionError"} with exit 0; with
    # -5 the MFU came out negative.
    output = tmp_path / "record.json"
    argv = ["--device", "cpu", "--size", "64", "--batch", "1", "--steps", "1", "--warmup", "0"]
    with pytest.raises(SystemExit) as stopped:
        _script(monkeypatch, "bench_gpu_throughput").main(
            [*argv, "--arms", "bare", "--peak-tflops", peak, "--output", str(output)]
        )
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--peak-tflops" in error
    assert "> 0" in error
    assert f"got {float(peak):g}" in error
    assert not output.exists()
