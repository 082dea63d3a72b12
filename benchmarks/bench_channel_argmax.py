"""How much faster label maps come from class scores with ``channel_argmax`` than with ``argmax``.

``predict`` turns every batch's class scores ``(N, C, H, W)`` into labels, and validation turns
every batch's logits into one-hot predictions, by an arg-max over the channels. PyTorch's CPU
``argmax`` reduces a strided axis one element at a time; :func:`inpaintssl.channel_argmax.channel_argmax`
takes ``torch.max(dim=1).indices`` there (the same indices) and ``argmax`` where the channels are
innermost in memory. Two arms compute each case: ``argmax`` (``scores.argmax(dim=1)``, what the
library did before) and ``channel_argmax``; their indices must be equal to the bit. The cases are
the shapes the library meets: a predict batch of 16 256x256 slices with 5 channels (contiguous,
as a model's float32 output reaches the label map), the same in ``channels_last`` float32 and
bfloat16 (a channels-last run's logits), a one-hot uint8 target (``class_index``), and 4 slices
at the paper's 512x512. Each arm's median of ``--repeats`` timed calls (after one untimed call),
the arms alternating, is compared.

Two more pairs of arms time what the library does with it, the arg-max taken each way
(``channel_argmax`` swapped for ``argmax`` where the library imports it, in the first arm): the
``dice_ce`` loss (softmax) forward and backward on a batch of the demo's fine-tuning size, 16
112x96 slices with 3 classes, whose cross-entropy takes each pixel's class from the one-hot
target (``class_index``), with equal losses and gradients; and a whole ``predict`` of NIfTI
volumes with a tiny trained run, with equal label maps. Their speed-ups are reported, not
targeted (a network's forward and backward take most of a step's time, the more so the larger
the network).

Usage::

    python benchmarks/bench_channel_argmax.py [--quick] [--repeats N] [--out PATH]

Target (set before measuring): ``channel_argmax`` at least 3x as fast as ``argmax`` on the
contiguous float32 cases, and no case below 0.9x, on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import nibabel as nib
import numpy as np
import torch
from provenance import at_least, emit, provenance
from scipy.ndimage import gaussian_filter
from tiny_run import tiny_run, written_label_maps

import inpaintssl as issl
from inpaintssl.channel_argmax import channel_argmax
from inpaintssl.inference import labelling
from inpaintssl.losses import base as loss_base
from inpaintssl.registry import LOSSES

TARGET_SPEEDUP = 3.0  # contiguous float32 scores, 2 cores
FLOOR = 0.9  # every other case


def _argmax(scores: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """What the library computed before: PyTorch's ``argmax`` over the channels."""
    return scores.argmax(dim=1, keepdim=keepdim)


def _cases(quick: bool) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    n, size = (4, 128) if quick else (16, 256)
    scores = torch.randn(n, 5, size, size, generator=gen)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 5, (n, size, size), generator=gen), 5)
    big = 2 if quick else 4
    return {
        f"float32 NCHW {n}x5x{size}x{size}": scores,
        f"float32 channels_last {n}x5x{size}x{size}": scores.contiguous(memory_format=torch.channels_last),
        f"bfloat16 channels_last {n}x5x{size}x{size}": scores.to(torch.bfloat16).contiguous(
            memory_format=torch.channels_last
        ),
        f"uint8 one-hot NCHW {n}x4x{size}x{size}": onehot[..., 1:].permute(0, 3, 1, 2).contiguous().byte(),
        f"float32 NCHW {big}x5x512x512": torch.randn(big, 5, 512, 512, generator=gen),
    }


def _time(arms: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each arm, ``repeats`` times, the arms alternating after a warm-up call."""
    for run in arms.values():
        run()
    seconds: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(repeats):
        for arm, run in arms.items():
            start = time.perf_counter()
            run()
            seconds[arm].append(time.perf_counter() - start)
    return seconds


DICE_CE_BATCH = (16, 4, 112, 96)  # the demo's fine-tuning batch: background and 3 classes


def _time_dice_ce(repeats: int) -> tuple[dict[str, list[float]], dict[str, list[torch.Tensor]]]:
    """Seconds of one ``dice_ce`` forward and backward per arm, and each arm's loss and gradient."""
    gen = torch.Generator().manual_seed(0)
    n, channels, height, width = DICE_CE_BATCH
    logits = torch.randn(n, channels, height, width, generator=gen)
    labels = torch.randint(0, channels, (n, height, width), generator=gen)
    target = torch.nn.functional.one_hot(labels, channels)[..., 1:].permute(0, 3, 1, 2).float().contiguous()
    loss = LOSSES.build("dice_ce", activation="softmax")
    found: dict[str, list[torch.Tensor]] = {}

    def step() -> list[torch.Tensor]:
        scores = logits.clone().requires_grad_()
        value = loss(scores, target)
        value.backward()
        assert scores.grad is not None
        return [value.detach(), scores.grad]

    arms: dict[str, Callable[[], Any]] = {}
    for arm, kernel in (("argmax", _argmax), ("channel_argmax", channel_argmax)):

        def run(kernel: Callable[..., torch.Tensor] = kernel, arm: str = arm) -> None:
            with mock.patch.object(loss_base, "channel_argmax", kernel):
                found[arm] = step()

        arms[arm] = run
    return _time(arms, repeats), found


def _write_volumes(root: Path, count: int, shape: tuple[int, int, int]) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        smooth = gaussian_filter(rng.normal(size=shape).astype(np.float32), 2.0)
        path = root / f"scan{i}.nii.gz"
        nib.save(nib.Nifti1Image((smooth / smooth.std() * 300.0 + 1000.0).astype(np.int16), np.eye(4)), path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time the arms; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller batches, 128x128 slices")
    parser.add_argument("--repeats", type=at_least(1), default=7, help="timed calls per arm (default: 7)")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    cases: dict[str, dict[str, Any]] = {}
    for name, scores in _cases(args.quick).items():
        if not torch.equal(_argmax(scores), channel_argmax(scores)):
            raise AssertionError(f"{name}: channel_argmax gave other indices than argmax")
        seconds = _time(
            {"argmax": lambda s=scores: _argmax(s), "channel_argmax": lambda s=scores: channel_argmax(s)},
            args.repeats,
        )
        median = {arm: statistics.median(v) for arm, v in seconds.items()}
        cases[name] = {
            "seconds": seconds,
            "median_seconds": median,
            "speedup": median["argmax"] / median["channel_argmax"],
        }

    loss_seconds, gradients = _time_dice_ce(args.repeats)
    if not all(torch.equal(a, b) for a, b in zip(gradients["argmax"], gradients["channel_argmax"])):
        raise AssertionError("the two dice_ce arms gave different losses or gradients")
    loss_median = {arm: statistics.median(v) for arm, v in loss_seconds.items()}

    count, shape = (2, (128, 128, 16)) if args.quick else (4, (256, 256, 48))
    predict_seconds: dict[str, list[float]] = {"argmax": [], "channel_argmax": []}
    written: dict[str, dict[str, np.ndarray]] = {}
    warnings.simplefilter("ignore")  # a two-step run is not converged; that is not measured here
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        scans = _write_volumes(root, count, shape)
        run = tiny_run(root / "run", size=shape[:2])
        for repeat in range(1 + max(1, args.repeats // 2)):
            for arm in predict_seconds:
                out = root / f"{arm}{repeat}"
                kernel = _argmax if arm == "argmax" else channel_argmax
                with mock.patch.object(labelling, "channel_argmax", kernel):
                    start = time.perf_counter()
                    issl.predict(run, scans, output=out, progress=False, device="cpu")
                    elapsed = time.perf_counter() - start
                if repeat:  # the first pass of each arm warms the caches, untimed
                    predict_seconds[arm].append(elapsed)
                written[arm] = written_label_maps(out)
    if written["argmax"].keys() != written["channel_argmax"].keys() or not all(
        np.array_equal(written["argmax"][k], written["channel_argmax"][k]) for k in written["argmax"]
    ):
        raise AssertionError("the two predict arms wrote different label maps")
    predicted = {arm: statistics.median(v) for arm, v in predict_seconds.items()}
    contiguous = [c["speedup"] for name, c in cases.items() if name.startswith("float32 NCHW")]
    others = [c["speedup"] for name, c in cases.items() if not name.startswith("float32 NCHW")]
    record: dict[str, Any] = {
        "benchmark": "channel_argmax",
        **provenance(__file__, argv),
        "quick": args.quick,
        "repeats": args.repeats,
        "cases": cases,
        "dice_ce_batch": list(DICE_CE_BATCH),
        "dice_ce_seconds": loss_seconds,
        "median_dice_ce_seconds": loss_median,
        "dice_ce_speedup": loss_median["argmax"] / loss_median["channel_argmax"],
        "predict_volumes": count,
        "predict_volume_shape": list(shape),
        "predict_seconds": predict_seconds,
        "median_predict_seconds": predicted,
        "predict_speedup": predicted["argmax"] / predicted["channel_argmax"],
        "target": (
            f"channel_argmax >= {TARGET_SPEEDUP:g}x argmax on contiguous float32 scores and >= "
            f"{FLOOR:g}x on every other case (2 cores)"
        ),
        "target_met": min(contiguous) >= TARGET_SPEEDUP and min(others) >= FLOOR,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
