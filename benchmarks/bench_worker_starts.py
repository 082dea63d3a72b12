"""DataLoader workers kept for a run against workers started at every pass, by each start method.

Until 2026-12-05 the Trainer built a new ``DataLoader`` for every pass over the training data and
for every validation, so each epoch started its workers twice. Forked workers start in
milliseconds; by ``forkserver`` (Python 3.14's default on Linux) or ``spawn`` (macOS, Windows) each
start is a new interpreter that imports torch and the library and unpickles the dataset.
:class:`inpaintssl.training.epoch_loader.EpochLoader` starts them once per run.

Both arms read the same passes: ``epochs`` times a shuffled pass over the ``mni152`` demo training
slices (112x112, batch 9, the sampler the Trainer uses, set to the epoch) and a sequential pass
over the validation slices, with 2 workers. The time is the wall time of all passes, worker starts
and the final shutdown included; the batches of the two arms are checked to be identical.

Usage::

    python benchmarks/bench_worker_starts.py [--quick] [--out PATH]

Target: under ``forkserver`` and ``spawn``, the kept workers take at most half the time of the
per-pass ones (6 epochs; ``--quick``: 2). Under ``fork`` the ratio is reported without a target.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from provenance import emit, provenance
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler

from inpaintssl.config import DataConfig
from inpaintssl.data.base import SliceDataset
from inpaintssl.data.build import build_datasets
from inpaintssl.data.loading import seed_worker
from inpaintssl.training.epoch_loader import EpochLoader

BATCH = 9
WORKERS = 2
SEED = 0
TARGET_RATIO = 0.5  # kept / per-pass wall time, forkserver and spawn


def _fingerprint(batches: Iterable[dict[str, Any]]) -> list[float]:
    return [float(batch["image"].double().sum()) for batch in batches]


def _train_order(train: SliceDataset) -> DistributedSampler[Any]:
    # The Trainer's: one process, shuffled from the run's seed and the epoch.
    return DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=SEED)


def _per_pass(train: SliceDataset, val: SliceDataset, *, epochs: int, method: str) -> list[float]:
    sampler: DistributedSampler[Any] = DistributedSampler(
        train, num_replicas=1, rank=0, shuffle=True, seed=SEED
    )

    def loader(dataset: Dataset[Any], order: Sampler[Any]) -> DataLoader[Any]:
        return DataLoader(
            dataset,
            sampler=order,
            batch_size=BATCH,
            num_workers=WORKERS,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(SEED),
            multiprocessing_context=method,
        )

    seen: list[float] = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        seen += _fingerprint(loader(train, sampler))
        seen += _fingerprint(loader(val, SequentialSampler(val)))
    return seen


def _kept(train: SliceDataset, val: SliceDataset, *, epochs: int, method: str) -> list[float]:
    sampler: DistributedSampler[Any] = DistributedSampler(
        train, num_replicas=1, rank=0, shuffle=True, seed=SEED
    )
    options: dict[str, Any] = {
        "batch_size": BATCH,
        "seed": SEED,
        "num_workers": WORKERS,
        "multiprocessing_context": method,
    }
    seen: list[float] = []
    with (
        EpochLoader(train, sampler=sampler, **options) as train_loader,
        EpochLoader(val, sampler=SequentialSampler(val), **options) as val_loader,
    ):
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            seen += _fingerprint(train_loader)
            seen += _fingerprint(val_loader)
    return seen


def _timed(run: Callable[[], list[float]]) -> tuple[float, list[float]]:
    started = time.perf_counter()
    seen = run()
    return time.perf_counter() - started, seen


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time both arms under every start method this platform has; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 epochs instead of 6")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else 6
    data = build_datasets(DataConfig(dataset="mni152", image_size=(112, 112)), stage="finetune", seed=SEED)
    entries = []
    for method in ("fork", "forkserver", "spawn"):
        if method not in multiprocessing.get_all_start_methods():
            continue
        per_pass_s, per_pass = _timed(partial(_per_pass, data.train, data.val, epochs=epochs, method=method))
        kept_s, kept = _timed(partial(_kept, data.train, data.val, epochs=epochs, method=method))
        if kept != per_pass:
            raise AssertionError(f"{method}: the kept workers read other batches than the per-pass ones")
        entry: dict[str, Any] = {
            "source": f"start method {method}",
            "per_pass_s": per_pass_s,
            "kept_s": kept_s,
            "ratio_kept_vs_per_pass": kept_s / per_pass_s,
            "worker_starts": {"per_pass": 2 * epochs * WORKERS, "kept": 2 * WORKERS},
        }
        if method != "fork":
            entry["target_met"] = kept_s / per_pass_s <= TARGET_RATIO
        entries.append(entry)
    record: dict[str, Any] = {
        "benchmark": "worker_starts",
        **provenance(__file__, argv),
        "epochs": epochs,
        "workers": WORKERS,
        "batch_size": BATCH,
        "train_items": len(data.train),
        "val_items": len(data.val),
        "quick": args.quick,
        "target": f"kept / per-pass wall time <= {TARGET_RATIO:g} under forkserver and spawn",
        "entries": entries,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
