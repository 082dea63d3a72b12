"""How much of ``predict``'s NIfTI writing the writer thread hides behind the next case's prediction.

``predict`` compresses each case's ``.nii.gz`` files on a background thread while it reads and
predicts the next case (:mod:`inpaintssl.inference.write_ahead`). Two arms predict the same scans
with the same trained run: the library as it is, and the same code with each write done at once
in the predicting thread (``WriteAhead`` swapped for an inline stand-in), which is how ``predict``
wrote before. The inline arm also times its writes. Arms alternate, ``--repeats`` times each; the
medians are compared, and the label maps of the two arms must be equal.

Usage::

    python benchmarks/bench_predict_writes.py [--quick] [--out PATH]

Target: the writer thread hides at least half of the writing time, i.e. (inline - write-ahead) /
inline writing time >= 0.5. On a GPU the prediction is far quicker and the writing a larger
share; this CPU figure is the floor.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from provenance import emit, provenance

import inpaintssl as issl

TARGET_HIDDEN = 0.5  # share of the inline arm's writing time that the writer thread hides
predict_module = importlib.import_module("inpaintssl.inference.predict")


class _Inline:
    """``WriteAhead``'s interface, writing at once in the calling thread (predict before it)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def submit(self, write: Callable[..., Any], /, *args: Any) -> None:
        start = time.perf_counter()
        write(*args)
        self.seconds += time.perf_counter() - start

    def wait(self) -> None:
        pass

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@contextmanager
def _inline_writes() -> Iterator[list[_Inline]]:
    made: list[_Inline] = []

    def make() -> _Inline:
        made.append(_Inline())
        return made[-1]

    real = predict_module.WriteAhead
    predict_module.WriteAhead = make
    try:
        yield made
    finally:
        predict_module.WriteAhead = real


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*_seg.nii.gz"))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time both arms; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 scans of 64x64x32 instead of 6 of 128x128x64")
    parser.add_argument("--repeats", type=int, default=3, help="predicts per arm (default: 3)")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    count, shape = (4, (64, 64, 32)) if args.quick else (6, (128, 128, 64))
    warnings.simplefilter("ignore")  # a two-step run is not converged; that is not measured here
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        data = {"num_images": 16, "num_val": 4, "num_test": 4, "size": list(shape[:2])}
        run = issl.finetune(
            {
                "data": {"dataset": "synthetic", "params": data},
                "model": {"params": {"depth": 3, "base_width": 8}},
                "optim": {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 4},
                "run": {"output_dir": str(root / "run"), "quiet": True, "device": "cpu", "seed": 0},
            }
        ).run_dir
        scans = root / "scans"
        scans.mkdir()
        rng = np.random.default_rng(0)
        for i in range(count):
            image = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
            nib.save(nib.Nifti1Image(image, np.eye(4)), scans / f"s{i}.nii.gz")
        seconds: dict[str, list[float]] = {"write_ahead": [], "inline": []}
        writing: list[float] = []
        labels: dict[str, dict[str, np.ndarray]] = {}
        for repeat in range(args.repeats):
            for arm in ("write_ahead", "inline"):
                out = root / f"{arm}{repeat}"
                if arm == "inline":
                    with _inline_writes() as made:
                        start = time.perf_counter()
                        issl.predict(run, scans, output=out, probabilities=True, progress=False, device="cpu")
                        seconds[arm].append(time.perf_counter() - start)
                    writing.append(sum(writer.seconds for writer in made))
                else:
                    start = time.perf_counter()
                    issl.predict(run, scans, output=out, probabilities=True, progress=False, device="cpu")
                    seconds[arm].append(time.perf_counter() - start)
                labels[arm] = _labels(out)
    same = labels["write_ahead"].keys() == labels["inline"].keys() and all(
        np.array_equal(labels["write_ahead"][k], labels["inline"][k]) for k in labels["inline"]
    )
    if not same:
        raise AssertionError("the two arms wrote different label maps")
    ahead, inline, write = (
        statistics.median(v) for v in (seconds["write_ahead"], seconds["inline"], writing)
    )
    hidden = (inline - ahead) / write
    record: dict[str, Any] = {
        "benchmark": "predict_writes",
        **provenance(__file__, argv),
        "quick": args.quick,
        "scans": count,
        "scan_shape": list(shape),
        "probabilities": True,
        "repeats": args.repeats,
        "seconds": seconds,
        "inline_writing_seconds": writing,
        "median_seconds": {"write_ahead": ahead, "inline": inline, "inline_writing": write},
        "speedup_write_ahead_vs_inline": inline / ahead,
        "share_of_writing_hidden": hidden,
        "target": f"(inline - write-ahead) / inline writing time >= {TARGET_HIDDEN:g}",
        "target_met": hidden >= TARGET_HIDDEN,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
