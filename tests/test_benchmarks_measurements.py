"""What the benchmark scripts make of their measurements: a value no real effect can give is an
unreliable measurement, not a target met; and the temporary run folders go when the script ends."""

from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their siblings
    return importlib.import_module(name)


def _cache_dir_record(
    monkeypatch: pytest.MonkeyPatch, reference: float, in_memory: float, folder: float
) -> Any:
    """bench_cache_dir's record where its three arms' workers held these anonymous MiB."""
    bench = _script(monkeypatch, "bench_cache_dir")
    monkeypatch.setattr(bench, "_write_volumes", lambda root, **_: None)

    def read_once(root: Path, *, suffix: str, cache_dir: Path | None) -> tuple[list[float], float]:
        held = reference if suffix == ".npy" else (in_memory if cache_dir is None else folder)
        return [1.0, 2.0], held

    monkeypatch.setattr(bench, "_read_once", read_once)
    return bench.main(["--quick"])


def test_cache_dir_holding_less_than_the_reference_is_no_target_met(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loaded machine's record: 1.4 MiB less through the folder than the memory-mapped reference,
    # a ratio of -0.011, "target met".
    record = _cache_dir_record(monkeypatch, 157.6, 285.8, 156.2)
    assert record["ratio_cache_dir_vs_in_memory"] == pytest.approx((156.2 - 157.6) / (285.8 - 157.6))
    assert record["target_met"] is None
    assert "unreliable measurement" in record["unreliable"]


def test_cache_dir_without_a_baseline_is_no_target_met(monkeypatch: pytest.MonkeyPatch) -> None:
    record = _cache_dir_record(monkeypatch, 157.6, 157.6, 160.0)  # in memory no more than the reference
    assert record["target_met"] is None
    assert "unreliable" in record


@pytest.mark.parametrize(("folder", "met"), [(165.6, True), (157.6, True), (300.0, False)])
def test_cache_dir_measurements_an_effect_can_give_decide_the_target(
    monkeypatch: pytest.MonkeyPatch, folder: float, met: bool
) -> None:
    record = _cache_dir_record(monkeypatch, 157.6, 285.8, folder)
    assert record["ratio_cache_dir_vs_in_memory"] == pytest.approx((folder - 157.6) / (285.8 - 157.6))
    assert record["target_met"] is met
    assert "unreliable" not in record


@pytest.mark.parametrize(
    ("inline", "ahead", "writing", "met"),
    [
        (5.12, 4.89, 1.55, False),  # the committed record: 15 % hidden
        (5.0, 4.0, 1.5, True),  # two thirds hidden
        (5.0, 5.3, 1.5, False),  # the writer thread slowed the prediction: possible, and not met
        (5.0, 2.0, 0.256, None),  # 11.7 times the whole writing time hidden: the arms' noise
    ],
)
def test_predict_writes_hiding_more_than_the_writing_is_unreliable(
    monkeypatch: pytest.MonkeyPatch, inline: float, ahead: float, writing: float, met: bool | None
) -> None:
    verdict = _script(monkeypatch, "bench_predict_writes").writing_verdict((inline - ahead) / writing)
    assert verdict["target_met"] is met
    assert ("unreliable" in verdict) is (met is None)


@pytest.mark.parametrize("share", [384.2, 1.0001, float("nan")])
def test_predict_writes_hiding_more_than_the_reading_is_no_share(
    monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    # A loaded machine's record gave share_of_reading_hidden = 384.2, recorded as if measured.
    recorded = _script(monkeypatch, "bench_predict_writes").reading_share(share)
    assert recorded["share_of_reading_hidden"] is None
    why = recorded["share_of_reading_hidden_unreliable"]
    assert why.startswith(f"unreliable measurement: share_of_reading_hidden = {share:.3g} > 1")
    assert "reading" in why


@pytest.mark.parametrize("share", [0.81, 1.0, -0.3])
def test_predict_writes_reading_share_an_effect_can_give_is_recorded(
    monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    assert _script(monkeypatch, "bench_predict_writes").reading_share(share) == {
        "share_of_reading_hidden": share
    }


def test_mese_t2_peaks_are_mib_in_the_record_the_committed_one_and_the_readme(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The peaks were bytes / 2**20 under the name "peak_mb" and the header "peak MB", while the
    # README's other MB are decimal. Each arm is given a peak of a known number of bytes.
    bench = _script(monkeypatch, "bench_mese_t2")
    measured = bench._measured
    peaks = iter([5 * 2**20, 3 * 2**19, 6 * 2**20])  # read, t2_map, whole-volume fit: one repeat

    def known_peak(action: Any) -> tuple[float, int, Any]:
        seconds, _, result = measured(action)
        return seconds, next(peaks), result

    monkeypatch.setattr(bench, "_measured", known_peak)
    record = bench.main(["--quick", "--repeats", "1"])
    capsys.readouterr()  # the JSON record it prints
    assert [(e["source"], e["peak_mib"]) for e in record["entries"]] == [
        ("read", 5.0),
        ("t2_map", 1.5),
        ("whole_volume_fit", 6.0),
    ]
    assert record["memory_ratio_vs_whole_volume_fit"] == pytest.approx(0.25)
    committed = json.loads((BENCHMARKS / "results" / "bench_mese_t2.json").read_text())
    assert [sorted(e) for e in committed["entries"]] == [sorted(e) for e in record["entries"]]
    readme = (BENCHMARKS / "README.md").read_text()
    section = readme.split("<!-- section: bench_mese_t2", 1)[1].split("<!-- /section: bench_mese_t2", 1)[0]
    assert "| arm | median s | peak MiB |" in section


def _finetune_folders(monkeypatch: pytest.MonkeyPatch, bench: ModuleType) -> list[Path]:
    """The run folders ``bench``'s ``issl.finetune`` is given, each with a file in it as a run leaves."""
    folders: list[Path] = []

    def finetune(config: dict[str, Any]) -> Any:
        folder = Path(config["run"]["output_dir"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.csv").write_text("epoch\n0\n")
        folders.append(folder)
        history = [{"epoch": e, "train_seconds": 1.0, "val_dice": 0.5, "val_loss": 1.0} for e in range(2)]
        return SimpleNamespace(history=history, converged=True, epochs_run=2, mean_dice=lambda: {"a": 0.5})

    monkeypatch.setattr(bench, "issl", SimpleNamespace(finetune=finetune))
    return folders


@pytest.mark.parametrize("script", ["bench_convergence", "bench_weight_gradient_steps"])
def test_the_run_folders_are_removed_at_the_end(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bench = _script(monkeypatch, script)
    folders = _finetune_folders(monkeypatch, bench)
    bench.main(["--quick"])
    assert folders
    assert all(folder.is_relative_to(tmp_path) for folder in folders)
    assert [p for p in tmp_path.iterdir()] == []
