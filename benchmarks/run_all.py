"""Run every benchmark, each against its in-run baseline; write JSON and a Markdown summary.

``make bench`` runs this. Results go to ``<results-dir>/<machine>.json`` and
``<results-dir>/<machine>.md`` (``-quick`` before the suffix with ``--quick``; the results folder
is ``benchmarks/results`` unless ``--results-dir`` names another); where CUDA is present, a GPU
section runs too (corruption, training and ``bench_gpu_throughput.py`` on the card) and its
targets are in the summary as ``gpu.<benchmark>``. Every benchmark's record is kept inside the
combined JSON, which is rewritten after each benchmark, so a run stopped halfway keeps what it
measured; a benchmark that fails is recorded with its error and the others still run. Nothing
else is written: the per-benchmark records committed in ``benchmarks/results/`` (the ones
``benchmarks/README.md`` quotes) are never overwritten, except the GPU throughput record, which
goes to ``<machine>[-quick]-gpu_throughput.json`` beside the summary, since that benchmark writes
its record arm by arm.

Usage::

    python benchmarks/run_all.py [--quick] [--full-demo] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import platform
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_cache_dir
import bench_channel_argmax
import bench_convergence
import bench_corruption
import bench_dataloader
import bench_dicom_compressed
import bench_dicom_label_formats
import bench_gpu_throughput
import bench_label_map_formats
import bench_mese_t2
import bench_predict_writes
import bench_preflight_threads
import bench_saved_activations
import bench_system
import bench_training
import bench_worker_starts
from provenance import provenance, write_record
from summary import targets

from inpaintssl.atomic import atomic_write_text


def _machine() -> str:
    if torch.cuda.is_available():
        return f"{platform.machine()}-{torch.cuda.get_device_name(0).replace(' ', '_')}"
    return f"{platform.machine()}-cpu{torch.get_num_threads()}"


def _run(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One benchmark's record, or its error: a failure does not cost the others their run."""
    print(f"== {name}", flush=True)
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - recorded in the combined record and the summary
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run all benchmarks and write the combined record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke-run sizes")
    parser.add_argument("--full-demo", action="store_true", help="also time the full demo (minutes)")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=HERE / "results",
        help="where the combined record and summary go (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    stem = f"{_machine()}{'-quick' if args.quick else ''}"
    out = args.results_dir / f"{stem}.json"
    results: dict[str, Any] = {
        "machine": _machine(),
        **provenance(__file__, argv),
        "quick": args.quick,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    stages: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("corruption", lambda: bench_corruption.main(quick)),
        ("dataloader", lambda: bench_dataloader.main(quick)),
        ("worker_starts", lambda: bench_worker_starts.main(quick)),
        ("cache_dir", lambda: bench_cache_dir.main(quick)),
        ("dicom_compressed", lambda: bench_dicom_compressed.main(quick)),
        ("predict_writes", lambda: bench_predict_writes.main(quick)),
        ("label_map_formats", lambda: bench_label_map_formats.main(quick)),
        ("channel_argmax", lambda: bench_channel_argmax.main(quick)),
        ("dicom_label_formats", lambda: bench_dicom_label_formats.main(quick)),
        ("mese_t2", lambda: bench_mese_t2.main(quick)),
        ("preflight_threads", lambda: bench_preflight_threads.main(quick)),
        ("training", lambda: bench_training.main(quick)),
        ("system", lambda: bench_system.main([*quick, *(["--full"] if args.full_demo else [])])),
        ("convergence", lambda: bench_convergence.main(quick)),
        # Counted, not timed (FakeTensorMode), under CUDA's autocast policy: the same on any machine.
        ("saved_activations", lambda: bench_saved_activations.main(quick)),
    ]
    for name, run in stages:
        results[name] = _run(name, run)
        write_record(out, results)
    if torch.cuda.is_available():
        gpu: dict[str, Any] = {}
        results["gpu"] = gpu
        throughput = [
            "--device",
            "cuda",
            *quick,
            "--output",
            str(args.results_dir / f"{stem}-gpu_throughput.json"),
        ]
        gpu_stages: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("corruption", lambda: bench_corruption.main([*quick, "--device", "cuda"])),
            # The library's layout default (run.channels_last auto: contiguous on CUDA) for the library
            # and bare loops; the record's channels_last and layout say what ran.
            ("training", lambda: bench_training.main([*quick, "--device", "cuda"])),
            # 512x512, batch 16, bf16; --quick times fewer steps.
            ("throughput", lambda: bench_gpu_throughput.main(throughput)),
        ]
        for name, run in gpu_stages:
            gpu[name] = _run(f"gpu.{name}", run)
            write_record(out, results)
    lines = [
        f"# Benchmarks on {results['machine']} (torch {results['torch']}, "
        f"{'smoke-test sizes, --quick' if args.quick else 'full sizes'})",
        "",
        f"Measured {results['date']} on {results['host']['cpu_model']}"
        + (f" with {results['cuda']}" if results["cuda"] else "")
        + f"; rerun with `{results['command']}`; records in `{out.name}`.",
        "",
        "| benchmark | target | met |",
        "|---|---|---|",
    ]
    for name, record in results.items():
        if isinstance(record, dict) and name != "host":
            for benchmark, target, met in targets(record, name):
                lines.append(f"| {benchmark} | {target} | {met} |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
