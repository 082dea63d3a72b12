"""Whole training steps under each ``run.cpu_weight_gradient`` setting, at the demo's size.

``bench_conv_layers.py`` times single convolutions; this times what a user waits for: seconds per
10-step fine-tuning epoch of the demo network (U-Net depth 4, width 16, MNI152 slices at 112x96,
batch 9) with ``auto``, ``blocked_gemm`` and ``onednn``, alternating the settings over
``--repeats`` rounds so a drift of the machine's speed hits all three alike. The first epoch of
each run (warm-up) is dropped; the median of the rest is reported.

Usage::

    python benchmarks/bench_weight_gradient_steps.py [--repeats 2] [--epochs 4] [--quick] [--out PATH]

``--epochs`` must be at least 2 (the first epoch is dropped); ``--quick`` is one round of two epochs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from provenance import cpu_model, provenance, write_record

import inpaintssl as issl
from inpaintssl.training.convergence import ConvergenceWarning

KERNELS = ("auto", "blocked_gemm", "onednn")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, at least 2 (default 4)")
    parser.add_argument("--quick", action="store_true", help="one round of 2 epochs (a smoke run)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs = 1, 2
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch of every run is a warm-up and is dropped")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    seconds: dict[str, list[float]] = {kernel: [] for kernel in KERNELS}
    for _ in range(args.repeats):
        for kernel in KERNELS:
            # Each run's folder (checkpoints no one reads) is removed after it, even on an error.
            with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="bench_wgrad_") as folder:
                warnings.simplefilter("ignore", ConvergenceWarning)
                result = issl.finetune(
                    {
                        "data": {"dataset": "mni152", "image_size": [112, 96]},
                        "model": {"params": {"depth": 4, "base_width": 16}},
                        "optim": {"max_epochs": args.epochs, "steps_per_epoch": 10},
                        "run": {
                            "output_dir": folder,
                            "quiet": True,
                            "device": "cpu",
                            "cpu_weight_gradient": kernel,
                        },
                    }
                )
            seconds[kernel].extend(float(row["train_seconds"]) for row in result.history[1:])
    record: dict[str, Any] = {
        "benchmark": "weight_gradient_steps",
        **provenance(__file__, argv),
        "quick": args.quick,
        "repeats": args.repeats,
        "epochs": args.epochs,
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "processor": platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds_per_10_step_epoch": {k: statistics.median(v) for k, v in seconds.items()},
        "samples": seconds,
    }
    print(json.dumps(record["seconds_per_10_step_epoch"], indent=2))
    if args.out:
        write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
