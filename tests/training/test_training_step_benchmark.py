"""The GPU throughput benchmark (``benchmarks/bench_gpu_throughput.py``) times the library's own
``TrainStep`` and counts FLOPs consistently; run here on the CPU at a small size."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling bench_training
    return importlib.import_module("bench_gpu_throughput")


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("gpu_throughput_table")


def test_convolution_flops_grow_with_the_pixel_count(bench: ModuleType) -> None:
    # Every layer of the U-Net is a convolution or a transposed convolution over the whole
    # (down- or up-sampled) image, so doubling the side quadruples the count, and the backward
    # pass (input and weight gradients, the first layer's input gradient excepted) is a little
    # under twice the forward pass.
    model = bench.library_unet()
    small = bench.flops_per_image(model, size=32, device=torch.device("cpu"))
    large = bench.flops_per_image(model, size=64, device=torch.device("cpu"))
    assert large["forward"] == 4 * small["forward"]
    assert large["total"] == small["total"] * 4
    assert 1.9 * small["forward"] < small["backward"] <= 2 * small["forward"]
    assert all(p.grad is None for p in model.parameters())


def test_the_norm_precision_option_builds_the_library_network_with_it(
    bench: ModuleType, table: ModuleType, tmp_path: Path
) -> None:
    assert bench.library_unet().norm_precision == "float32"
    assert bench.library_unet(norm_precision="autocast").norm_precision == "autocast"
    output = tmp_path / "norm.json"
    record = bench.main(
        ["--device", "cpu", "--size", "16", "--batch", "1", "--steps", "1", "--warmup", "1",
         "--patch-size", "4", "--arms", "library", "--dtype", "bf16", "--no-channels-last",
         "--norm-precision", "autocast", "--output", str(output)]
    )  # fmt: skip
    assert record["norm_precision"] == "autocast" and record["arms"]["library"]["images_per_s"] > 0
    assert "| contiguous, norm autocast | off | library |" in table.main([str(output)])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H200", 989.4),
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA H100 PCIe", None),
        ("NVIDIA H200 NVL", None),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_datasheet_peak_matches_only_the_listed_parts(
    bench: ModuleType, name: str, expected: float | None
) -> None:
    assert bench.datasheet_peak(name)[0] == expected


@pytest.mark.slow
def test_cpu_record_names_the_step_its_settings_and_a_failed_arm(
    bench: ModuleType, table: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_peer() -> torch.nn.Module:
        raise RuntimeError("planted failure of the peer network")

    # One arm failing (a compiler bug, say) is recorded; the other arms still run.
    monkeypatch.setattr(bench, "monai_basicunet", broken_peer)
    output = tmp_path / "cpu_smoke.json"
    record = bench.main(
        ["--device", "cpu", "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "1",
         "--patch-size", "8", "--arms", "library", "monai", "bare", "--output", str(output)]
    )  # fmt: skip
    assert record["arms"]["monai"] == {"error": "RuntimeError: planted failure of the peer network"}
    assert record["ratios"]["library_vs_monai"] is None
    assert json.loads(output.read_text()) == json.loads(json.dumps(record))
    library, bare = record["arms"]["library"], record["arms"]["bare"]
    assert library["step"] == "TrainStep" and library["compile"] == "off"
    assert bare["compile"] == "off"
    assert record["peak_tflops"] is None and library["mfu"] is None  # no datasheet peak for a CPU
    assert library["flops_per_image"] == bare["flops_per_image"]  # one network, counted once each
    assert library["achieved_tflops"] == pytest.approx(
        library["flops_per_image"]["total"] * library["images_per_s"] / 1e12
    )
    rendered = table.main([str(output)])
    assert "| library |" in rendered and "| bare |" in rendered
    assert rendered.count("| cpu_smoke |") == 3 and "failed: RuntimeError: planted" in rendered


def _record(**arms: dict[str, float] | str | None) -> dict[str, object]:
    return {"arms": {arm: {"error": e} if isinstance(e, str) else e for arm, e in arms.items()}}


def test_the_verdict_takes_each_network_at_its_fastest(table: ModuleType) -> None:
    records = {
        "eager": _record(library={"images_per_s": 120.0, "mfu": 0.10}, monai={"images_per_s": 90.0}),
        "compiled": _record(library={"images_per_s": 200.0, "mfu": 0.24}, monai="inductor failed"),
        "graphs": _record(library={"images_per_s": 180.0, "mfu": 0.22}, monai={"images_per_s": 150.0}),
    }
    # Fastest library 200 (compiled) over fastest MONAI 150 (graphs): 1.33, under 1.5; MFU 24 %.
    assert table.verdict(records).splitlines() == [
        "fastest library: 200.0 images/s (compiled), MFU 24.0 %; fastest MONAI: 150.0 images/s (graphs)",
        "library / MONAI = 1.33 (target >= 1.5: not met); MFU target >= 25 %: not met",
    ]
    records["graphs"]["arms"]["monai"] = {"images_per_s": 100.0}  # type: ignore[index]
    assert "library / MONAI = 2.00 (target >= 1.5: met)" in table.verdict(records)
    assert "MFU target >= 20 %: met" in table.verdict(records, mfu=0.20)
    no_peer = {"eager": _record(library={"images_per_s": 50.0, "mfu": None}, monai="import failed")}
    assert table.verdict(no_peer).splitlines() == [
        "fastest library: 50.0 images/s (eager), MFU n/a; MONAI ran in no record",
        "library / MONAI: n/a; MFU target >= 25 %: n/a",
    ]
    assert "no verdict" in table.verdict({"eager": _record(library="out of memory", monai=None)})


def test_a_setting_where_monai_never_ran_is_left_out_of_the_speed_ratio(table: ModuleType) -> None:
    # As on the H200 (2026-12-04): the compiled run's time limit ended it before MONAI's arm, so
    # its library arm (410 images/s) has no MONAI beside it; MONAI ran only in eager (257).
    eager = {
        "channels_last": False,
        "compile": "off",
        **_record(library={"images_per_s": 248.2, "mfu": 0.072}, monai={"images_per_s": 256.7}),
    }
    graphs = {
        "channels_last": True,
        "compile": "reduce-overhead",
        "complete": False,
        "arms_pending": ["monai"],
    }
    cut_off = {**graphs, **_record(library={"images_per_s": 410.2, "mfu": 0.12})}
    assert table.verdict({"eager": eager, "graphs": cut_off}).splitlines() == [
        "fastest library: 410.2 images/s (graphs), MFU 12.0 %; fastest MONAI: 256.7 images/s (eager)",
        "MONAI's arm never ran at the setting of graphs (channels_last, compile reduce-overhead): the ratio "
        "takes the library's fastest at a setting where MONAI's ran or failed, 248.2 images/s (eager)",
        "library / MONAI = 0.97 (target >= 1.5: not met); MFU target >= 25 %: not met",
    ]
    # MONAI timed at that setting in a record of its own counts; so does its failing there.
    alone = {**graphs, "complete": True, **_record(monai={"images_per_s": 300.0})}
    assert table.verdict({"eager": eager, "graphs": cut_off, "graphs_monai": alone}).splitlines()[1:] == [
        "library / MONAI = 1.37 (target >= 1.5: not met); MFU target >= 25 %: not met"
    ]
    failed = {**graphs, **_record(monai="inductor failed")}
    assert "library / MONAI = 1.60" in table.verdict({"eager": eager, "graphs": cut_off, "failed": failed})
    # Another setting's MONAI does not stand in: nothing comparable, nothing claimed.
    other = {"channels_last": True, "compile": "off", **_record(monai={"images_per_s": 100.0})}
    assert "library / MONAI: not established" in table.verdict({"graphs": cut_off, "other": other})
