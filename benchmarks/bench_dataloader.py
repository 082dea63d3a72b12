"""Data loading vs. training throughput: does the loader keep up with the U-Net? (issue #6).

Two sources, each measured in the same run against a training step at the same image size and
batch (9, the paper's): the ``mni152`` demo set at the demo size (112x112 axial slices, zoom 0.5,
crop/pad), and an SKM-TEA-layout HDF5 folder written to a temp dir (three 256x256x24 scans with
``echo1``/``echo2``/``seg``; RSS, z-score and class merge computed per item). Loader images/s is a
shuffled ``DataLoader`` pass over the labelled training set (median of several passes after one
warm-up pass), in the main process (``num_workers=0``: the cost a training process pays when it
loads its own data) and with two workers. Training images/s is ``BACKBONES.build("unet2d")``
(paper defaults: 5 levels, 32..512 filters) forward + backward + Adam on random batches,
channels_last, from the median step after warm-up steps. Medians keep the ratio meaningful on a
shared machine where other processes steal CPU time.

Usage::

    python benchmarks/bench_dataloader.py [--quick] [--out PATH]

Target: loader (``num_workers=0``) >= 10x training images/s for both sources.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from provenance import emit, provenance
from torch.utils.data import DataLoader

from inpaintssl.config import DataConfig
from inpaintssl.data.base import SliceDataset
from inpaintssl.data.build import build_datasets
from inpaintssl.data.loading import seed_worker
from inpaintssl.registry import BACKBONES

BATCH = 9
TARGET_RATIO = 10.0


def write_skmtea_folder(root: Path, *, size: int, slices: int, scans: int) -> Path:
    """An SKM-TEA DICOM-track folder (HDF5 + annotation JSON + metadata CSV) of random scans."""
    rng = np.random.default_rng(0)
    (root / "image_files").mkdir(parents=True)
    annotations = root / "annotations" / "v1.0.0"
    annotations.mkdir(parents=True)
    rows = ["MTR_ID,RepetitionTime,EchoTime1,FlipAngle,SpoilerGradientArea,SpoilerGradientTime"]
    for split, ids in {"train": range(scans), "val": [scans], "test": [scans + 1]}.items():
        images = []
        for i in ids:
            scan = f"MTR_{i:03d}"
            classes = rng.integers(0, 7, size=(size, size, slices))
            with h5py.File(root / "image_files" / f"{scan}.h5", "w") as f:
                f["echo1"] = rng.uniform(0, 400, (size, size, slices)).astype(np.float32)
                f["echo2"] = rng.uniform(0, 150, (size, size, slices)).astype(np.float32)
                f["seg"] = np.stack([classes == c for c in range(6)], axis=-1).astype(np.uint8)
            spacing = [0.3125, 0.3125, 0.8]
            images.append({"file_name": f"{scan}.h5", "scan_id": scan, "voxel_spacing": spacing})
            rows.append(f"{scan},18.2,5.9,20,3132,1560")
        (annotations / f"{split}.json").write_text(json.dumps({"images": images}))
    (root / "all_metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def loader_images_per_s(dataset: SliceDataset, *, workers: int, passes: int) -> float:
    """Median images/s over ``passes`` shuffled passes in batches of 9, after one warm-up pass."""
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=workers > 0,
    )
    for _ in loader:
        pass
    rates = []
    for _ in range(passes):
        images = 0
        started = time.perf_counter()
        for batch in loader:
            images += int(batch["image"].shape[0])
        rates.append(images / (time.perf_counter() - started))
    return float(np.median(rates))


def training_images_per_s(
    *, channels: int, classes: int, size: tuple[int, int], steps: int, warmup: int
) -> float:
    """Images/s of the median U-Net step (forward + backward + Adam) on batches of 9."""
    model = BACKBONES.build("unet2d", in_channels=channels, out_channels=classes, seed=0)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.99, 0.995), eps=1e-8)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, channels, *size, generator=generator)
    images = images.contiguous(memory_format=torch.channels_last)
    target = (torch.rand(BATCH, classes, *size, generator=generator) > 0.5).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), target)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return BATCH / float(np.median(seconds))


def _entry(name: str, dataset: SliceDataset, *, steps: int, warmup: int, passes: int) -> dict[str, Any]:
    _, h, w = dataset[0]["image"].shape
    loader0 = loader_images_per_s(dataset, workers=0, passes=passes)
    loader2 = loader_images_per_s(dataset, workers=2, passes=passes)
    train = training_images_per_s(
        channels=dataset.in_channels, classes=dataset.num_classes, size=(h, w), steps=steps, warmup=warmup
    )
    return {
        "source": name,
        "image_size": [int(h), int(w)],
        "items": len(dataset),
        "loader_images_per_s": {"workers_0": loader0, "workers_2": loader2},
        "train_images_per_s": train,
        "ratio_loader_vs_train": loader0 / train,
        "target_met": loader0 / train >= TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both comparisons; return (and optionally write) the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer training steps and loader passes")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    steps, warmup, passes = (1, 1, 2) if args.quick else (5, 2, 5)
    torch.manual_seed(0)
    entries = []
    mni = build_datasets(DataConfig(dataset="mni152", image_size=(112, 112)), stage="finetune", seed=0)
    entries.append(_entry("mni152 (112x112)", mni.train, steps=steps, warmup=warmup, passes=passes))
    with tempfile.TemporaryDirectory() as tmp:
        root = write_skmtea_folder(Path(tmp) / "skm-tea", size=256, slices=24, scans=3)
        cfg = DataConfig(dataset="skmtea", params={"root": str(root)})
        skm = build_datasets(cfg, stage="finetune", seed=0)
        entries.append(_entry("skmtea h5 (256x256)", skm.train, steps=steps, warmup=warmup, passes=passes))
    record: dict[str, Any] = {
        "benchmark": "dataloader",
        **provenance(__file__, argv),
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": BATCH,
        "quick": args.quick,
        "target": f"loader (num_workers=0) >= {TARGET_RATIO:g}x training images/s",
        "entries": entries,
        "all_targets_met": all(e["target_met"] for e in entries),
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
