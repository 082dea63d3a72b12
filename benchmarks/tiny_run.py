"""A tiny trained run to predict with, and the label maps a ``predict`` wrote, for the benchmarks
that time ``predict`` (its network is not what they measure)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

import inpaintssl as issl


def tiny_run(folder: Path, *, size: tuple[int, int]) -> Path:
    """A U-Net of depth 3 and width 8 fine-tuned 2 steps on ``size`` synthetic slices, in ``folder``."""
    return issl.finetune(
        {
            "data": {
                "dataset": "synthetic",
                "params": {"num_images": 16, "num_val": 4, "num_test": 4, "size": list(size)},
            },
            "model": {"params": {"depth": 3, "base_width": 8}},
            "optim": {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 4},
            "run": {"output_dir": str(folder), "quiet": True, "device": "cpu", "seed": 0},
        }
    ).run_dir


def written_label_maps(folder: Path) -> dict[str, np.ndarray]:
    """Every NIfTI label map ``predict`` wrote into ``folder``, by file name."""
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*_seg.nii.gz"))}
