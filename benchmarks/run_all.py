"""Run every benchmark, each against its in-run baseline; write JSON and a Markdown summary.

``make bench`` runs this. Results go to ``benchmarks/results/<machine>.json`` and
``benchmarks/results/<machine>.md``; where CUDA is present, a GPU section runs too.

Usage::

    python benchmarks/run_all.py [--quick] [--full-demo]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_convergence
import bench_corruption
import bench_dataloader
import bench_gpu_throughput
import bench_system
import bench_training

from inpaintssl.atomic import atomic_write_text


def _machine() -> str:
    if torch.cuda.is_available():
        return f"{platform.machine()}-{torch.cuda.get_device_name(0).replace(' ', '_')}"
    return f"{platform.machine()}-cpu{torch.get_num_threads()}"


def _targets(record: dict[str, Any]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    targets = record.get("targets")
    if isinstance(targets, dict):
        found.extend(targets.items())
    for entry in record.get("entries", []) if isinstance(record.get("entries"), list) else []:
        if isinstance(entry, dict) and "target_met" in entry:
            found.append((str(entry.get("source", entry.get("name", "?"))), entry["target_met"]))
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run all benchmarks and write the combined record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke-run sizes")
    parser.add_argument("--full-demo", action="store_true", help="also time the full demo (minutes)")
    args = parser.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    results: dict[str, Any] = {
        "machine": _machine(),
        "quick": args.quick,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "corruption": bench_corruption.main(
            [*quick, "--out", str(HERE / "results" / "bench_corruption.json")]
        ),
        "dataloader": bench_dataloader.main(quick),
        "training": bench_training.main(quick),
        "system": bench_system.main([*quick, *(["--full"] if args.full_demo else [])]),
        "convergence": bench_convergence.main(
            [*quick, "--out", str(HERE / "results" / f"bench_convergence{'_quick' if quick else ''}.json")]
        ),
    }
    if torch.cuda.is_available():
        quick_gpu = HERE / "results" / "bench_gpu_throughput_quick.json"
        results["gpu"] = {
            "corruption": bench_corruption.main(
                [*quick, "--device", "cuda", "--out", str(HERE / "results" / "bench_corruption_cuda.json")]
            ),
            "training": bench_training.main([*quick, "--device", "cuda"]),
            # GPU only: 512x512, batch 16, bf16; --quick times fewer steps and keeps its record apart.
            "throughput": bench_gpu_throughput.main(
                [
                    "--device",
                    "cuda",
                    *(["--steps", "10", "--warmup", "3", "--output", str(quick_gpu)] if quick else []),
                ]
            ),
        }
    out = HERE / "results" / f"{results['machine']}{'-quick' if args.quick else ''}.json"
    atomic_write_text(out, json.dumps(results, indent=2, default=str))
    lines = [
        f"# Benchmarks on {results['machine']} (torch {results['torch']}, "
        f"{'smoke-test sizes, --quick' if args.quick else 'full sizes'})",
        "",
        "| benchmark | target | met |",
        "|---|---|---|",
    ]
    for name, record in results.items():
        if isinstance(record, dict):
            for target, met in _targets(record):
                lines.append(f"| {name} | {target} | {met} |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
