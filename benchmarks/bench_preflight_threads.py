"""How much faster the pre-flight check reads a dataset of compressed volumes on threads.

Before a run trains, :func:`inpaintssl.data.preflight.preflight` reads every case in full and
checks it; ``predict`` does the same with its inputs before it predicts any. Both read several
cases at once, each on a thread (:mod:`inpaintssl.in_order`), because zlib, file reads and NumPy's
reductions release Python's lock. Two arms check the same ``.nii.gz`` image/label pairs (smooth
MRI-like int16 images, so they compress as scans do): one case after the other
(``threads=1``, the check before this change) and with the default thread count
(:func:`~inpaintssl.data.preflight.default_check_threads`). Each repeat opens the dataset again,
so nothing decompressed is reused; the arms alternate after one untimed pass that brings the
files into the page cache, and their medians are compared. The statistics both arms keep must be
equal to the bit. A second pair of arms runs a whole ``predict`` of the images (a tiny run) with
``check_threads=1`` and the default, and their label maps must be equal.

Usage::

    python benchmarks/bench_preflight_threads.py [--quick] [--repeats N] [--out PATH]

Target (set before measuring): the threaded check at least 1.5x as fast as the one-by-one check
on a 2-core machine. ``predict`` has no target: it is reported, since on a CPU the prediction
itself takes most of its time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from provenance import emit, provenance
from scipy.ndimage import gaussian_filter

import inpaintssl as issl
from inpaintssl.data.preflight import default_check_threads, preflight
from inpaintssl.data.volumes import VolumeSliceDataset, nifti_dataset

TARGET_SPEEDUP = 1.5  # threaded check vs one case after the other, on 2 cores


def _write_cases(root: Path, count: int, shape: tuple[int, int, int]) -> list[dict[str, str]]:
    rng = np.random.default_rng(0)
    cases = []
    for i in range(count):
        smooth = gaussian_filter(rng.normal(size=shape).astype(np.float32), 2.0)
        image = (smooth / smooth.std() * 300.0 + 1000.0).astype(np.int16)
        label = (smooth > 0.5).astype(np.uint8) + (smooth > 1.0).astype(np.uint8)
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / f"case{i}_seg.nii.gz")
        cases.append({"image": f"case{i}.nii.gz", "label": f"case{i}_seg.nii.gz"})
    return cases


def _opened(root: Path, cases: list[dict[str, str]]) -> VolumeSliceDataset:
    return nifti_dataset(split="train", root=root, cases={"train": cases}, class_names=["a", "b"])


def _stats(dataset: VolumeSliceDataset, count: int) -> list[tuple[bytes, bytes]]:
    return [(s.mean.tobytes(), s.std.tobytes()) for s in (dataset.volume_stats(c) for c in range(count))]


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*_seg.nii.gz"))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time the arms; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="6 cases of 128x128x32 instead of 12 of 256x256x64"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per arm (default: 3)")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    count, shape = (6, (128, 128, 32)) if args.quick else (12, (256, 256, 64))
    threads = default_check_threads()
    arms = {"one_by_one": 1, "threads": threads}
    warnings.simplefilter("ignore")  # a two-step run is not converged; that is not measured here
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cases = _write_cases(root, count, shape)
        compressed = sum((root / c[key]).stat().st_size for c in cases for key in ("image", "label"))
        preflight({"train": _opened(root, cases)}, progress=False, threads=1)  # into the page cache
        check_seconds: dict[str, list[float]] = {arm: [] for arm in arms}
        kept: dict[str, list[tuple[bytes, bytes]]] = {}
        for _ in range(args.repeats):
            for arm, workers in arms.items():
                dataset = _opened(root, cases)
                start = time.perf_counter()
                preflight({"train": dataset}, progress=False, threads=workers)
                check_seconds[arm].append(time.perf_counter() - start)
                kept[arm] = _stats(dataset, count)
        if kept["one_by_one"] != kept["threads"]:
            raise AssertionError("the two arms kept different normalisation statistics")

        run = issl.finetune(
            {
                "data": {
                    "dataset": "synthetic",
                    "params": {"num_images": 16, "num_val": 4, "num_test": 4, "size": list(shape[:2])},
                },
                "model": {"params": {"depth": 3, "base_width": 8}},
                "optim": {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 4},
                "run": {"output_dir": str(root / "run"), "quiet": True, "device": "cpu", "seed": 0},
            }
        ).run_dir
        scans = [root / c["image"] for c in cases]
        predict_seconds: dict[str, list[float]] = {arm: [] for arm in arms}
        labels: dict[str, dict[str, np.ndarray]] = {}
        for repeat in range(args.repeats):
            for arm, workers in arms.items():
                out = root / f"{arm}{repeat}"
                start = time.perf_counter()
                issl.predict(run, scans, output=out, progress=False, device="cpu", check_threads=workers)
                predict_seconds[arm].append(time.perf_counter() - start)
                labels[arm] = _labels(out)
    same = labels["one_by_one"].keys() == labels["threads"].keys() and all(
        np.array_equal(labels["one_by_one"][k], labels["threads"][k]) for k in labels["threads"]
    )
    if not same:
        raise AssertionError("the two predict arms wrote different label maps")
    check = {arm: statistics.median(v) for arm, v in check_seconds.items()}
    predicted = {arm: statistics.median(v) for arm, v in predict_seconds.items()}
    speedup = check["one_by_one"] / check["threads"]
    record: dict[str, Any] = {
        "benchmark": "preflight_threads",
        **provenance(__file__, argv),
        "quick": args.quick,
        "cases": count,
        "case_shape": list(shape),
        "compressed_bytes": compressed,
        "threads": threads,
        "repeats": args.repeats,
        "check_seconds": check_seconds,
        "predict_seconds": predict_seconds,
        "median_check_seconds": check,
        "median_predict_seconds": predicted,
        "check_speedup_threads_vs_one_by_one": speedup,
        "predict_speedup_threads_vs_one_by_one": predicted["one_by_one"] / predicted["threads"],
        "target": f"threaded check >= {TARGET_SPEEDUP:g}x the one-by-one check (2 cores)",
        "target_met": speedup >= TARGET_SPEEDUP,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
