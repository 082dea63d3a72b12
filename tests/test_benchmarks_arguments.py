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
    # These ran before: --steps 0 failed after 53 s of set-up, --threads 0 in torch.set_num_threads,
    # --batch 0 and profile_step's --steps 0 "succeeded", measuring nothing.
    ("bench_training", ["--quick", "--steps", "0"], "--steps", ">= 1", "'0'"),
    ("bench_training", ["--quick", "--threads", "0"], "--threads", ">= 1", "'0'"),
    ("profile_step", ["--size", "32", "--steps", "0"], "--steps", ">= 1", "'0'"),
    ("bench_conv_layers", ["--batch", "0", "--size", "32", "32", "--depth", "2"], "--batch", ">= 1", "'0'"),
    ("bench_saved_activations", ["--quick", "--batch", "-2"], "--batch", ">= 1", "'-2'"),
    ("bench_gpu_throughput", ["--device", "cpu", "--threads", "0"], "--threads", ">= 1", "'0'"),
    ("bench_gpu_throughput", ["--device", "cpu", "--patch-size", "0"], "--patch-size", ">= 1", "'0'"),
    ("bench_corruption", ["--quick", "--threads", "0"], "--threads", ">= 1", "'0'"),
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
    if script == "bench_gpu_throughput":  # its default output is in benchmarks/results
        argv = [*argv, "--output", str(tmp_path / "record.json")]
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


@pytest.mark.parametrize(("depth", "size", "multiple"), [(5, 100, 16), (5, 40, 16), (6, 48, 32)])
def test_gpu_throughput_refuses_a_size_its_network_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    depth: int,
    size: int,
    multiple: int,
) -> None:
    # --size 100 ran for 53 s, recorded every arm's "not divisible by size_multiple=16" and wrote
    # "complete": true with exit 0. The multiple is 2**(depth-1) for the U-Net of depth DEPTH: with
    # depth 6, 48 (a multiple of 16) is refused too.
    bench = _script(monkeypatch, "bench_gpu_throughput")
    monkeypatch.setattr(bench, "DEPTH", depth)
    output = tmp_path / "record.json"
    argv = ["--device", "cpu", "--size", str(size), "--batch", "1", "--steps", "1", "--warmup", "0"]
    with pytest.raises(SystemExit) as stopped:
        bench.main([*argv, "--arms", "bare", "--output", str(output)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--size must be a multiple of {multiple}" in error
    assert f"depth {depth}" in error
    assert f"got {size}" in error
    assert not output.exists()
