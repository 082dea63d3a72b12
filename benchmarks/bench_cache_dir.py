"""Memory of DataLoader workers reading compressed volumes, with and without ``data.cache_dir``.

A compressed volume (``.npz``, ``.nii.gz``) is decompressed whole by the process that reads it,
which keeps the array: each worker started by ``spawn`` or ``forkserver`` holds its own copy of
every volume it reads. Under ``data.cache_dir`` the volume is decompressed once into an ``.npy``
file that every process memory-maps, so its pages are the page cache's, shared and reclaimable,
not the worker's (:mod:`inpaintssl.data.decompressed`).

Three arms read the same slices: one pass over ``numpy``-dataset training volumes with the
Trainer's loader (:class:`~inpaintssl.training.epoch_loader.EpochLoader`, 2 workers started by
``spawn``), from ``.npz`` archives kept in memory, from the same archives through
``data.cache_dir``, and from uncompressed ``.npy`` files (memory-mapped: the reference, a worker
holding no copy). With the workers still alive after the pass, each one's anonymous memory
(``RssAnon`` in ``/proc/<pid>/status``: not file-backed, so not the page cache) is read. What a
worker holds of the data is its anonymous memory less the reference arm's.

Usage::

    python benchmarks/bench_cache_dir.py [--quick] [--out PATH]

Target: through ``data.cache_dir`` a worker holds at most 10 % of what it holds reading the
archives into memory (Linux only: it reads ``/proc``). A ratio below 0 is recorded as an unreliable
measurement, not as met.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from provenance import emit, provenance
from torch.utils.data import SequentialSampler

from inpaintssl.config import DataConfig
from inpaintssl.data.build import build_datasets
from inpaintssl.training.epoch_loader import EpochLoader

WORKERS = 2
BATCH = 8
TARGET_RATIO = 0.1  # held through the folder / held in memory


def _write_volumes(root: Path, *, count: int, shape: tuple[int, int, int]) -> None:
    for split, volumes in (("train", count), ("val", 1)):
        (root / split).mkdir(parents=True)
        for i in range(volumes):
            image = np.random.default_rng(i).normal(size=shape).astype(np.float32)
            np.savez_compressed(root / split / f"v{i}.npz", image=image)
            np.save(root / split / f"v{i}.npy", image)


def _anonymous_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no RssAnon line")


def _read_once(root: Path, *, suffix: str, cache_dir: Path | None) -> tuple[list[float], float]:
    """One pass over the training slices; the workers' sums of each batch, and their mean anonymous MiB."""
    cases = {split: {"image": f"{split}/*{suffix}"} for split in ("train", "val")}
    config = DataConfig(dataset="numpy", params={"root": str(root), "cases": cases}, cache_dir=cache_dir)
    train = build_datasets(config, stage="pretrain", seed=0).train
    loader = EpochLoader(
        train,
        sampler=SequentialSampler(train),
        batch_size=BATCH,
        seed=0,
        num_workers=WORKERS,
        multiprocessing_context="spawn",
    )
    with loader:
        sums = [float(batch["image"].double().sum()) for batch in loader]
        iterator = loader._loader._iterator  # the live workers, for their process ids
        pids = [worker.pid for worker in iterator._workers]  # type: ignore[union-attr]
        held = [_anonymous_mib(pid) for pid in pids]
    return sums, sum(held) / len(held)


def ratio_verdict(held_in_memory: float, held_through_folder: float) -> dict[str, Any]:
    """The ratio, and ``target_met`` with ``unreliable`` where the memory read says nothing.

    Each arm's memory is measured less the reference arm's. A worker that held less through the
    folder than the memory-mapped reference (a ratio below 0), or no more in memory than it (no
    baseline to divide by), shows only the noise of the reads (another load on the machine):
    ``target_met`` is then ``None``. A ratio above 1 can be (the folder holding more than memory),
    and fails the target.

    Example:
        >>> ratio_verdict(128.0, 8.0)
        {'ratio_cache_dir_vs_in_memory': 0.0625, 'target_met': True}
        >>> ratio_verdict(128.0, -1.4)["target_met"] is None
        True
    """
    ratio = held_through_folder / held_in_memory if held_in_memory > 0 else None
    if ratio is None or not ratio >= 0.0:
        why = (
            f"unreliable measurement: held in memory {held_in_memory:.3g} MiB, through the folder "
            f"{held_through_folder:.3g} MiB, beyond the reference arm's: "
            + ("no more than the reference in memory" if ratio is None else f"a ratio of {ratio:.3g} < 0")
            + "; rerun on an idle machine"
        )
        return {"ratio_cache_dir_vs_in_memory": ratio, "target_met": None, "unreliable": why}
    return {"ratio_cache_dir_vs_in_memory": ratio, "target_met": ratio <= TARGET_RATIO}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure the three arms; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="8 volumes of 128x128x32 instead of 16 of 256x256x32"
    )
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    count, shape = (8, (128, 128, 32)) if args.quick else (16, (256, 256, 32))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _write_volumes(root / "data", count=count, shape=shape)
        reference_sums, reference = _read_once(root / "data", suffix=".npy", cache_dir=None)
        memory_sums, in_memory = _read_once(root / "data", suffix=".npz", cache_dir=None)
        folder_sums, through_folder = _read_once(root / "data", suffix=".npz", cache_dir=root / "cache")
    if not reference_sums == memory_sums == folder_sums:
        raise AssertionError("the three arms read different slices")
    held_in_memory, held_through_folder = in_memory - reference, through_folder - reference
    verdict = ratio_verdict(held_in_memory, held_through_folder)
    record: dict[str, Any] = {
        "benchmark": "cache_dir",
        **provenance(__file__, argv),
        "quick": args.quick,
        "volumes": count,
        "volume_shape": list(shape),
        "decompressed_mib": count * int(np.prod(shape)) * 4 / 2**20,
        "workers": WORKERS,
        "start_method": "spawn",
        "worker_anonymous_mib": {
            "npy_reference": reference,
            "npz_in_memory": in_memory,
            "npz_cache_dir": through_folder,
        },
        "worker_holds_mib": {"in_memory": held_in_memory, "cache_dir": held_through_folder},
        "ratio_cache_dir_vs_in_memory": verdict.pop("ratio_cache_dir_vs_in_memory"),
        "target": f"held through data.cache_dir / held in memory <= {TARGET_RATIO:g}",
        **verdict,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
