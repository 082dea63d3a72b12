"""How long ``predict`` takes to write a case's maps in each output format, against NIfTI.

``predict(output_format=...)`` writes label and probability maps as NIfTI (nibabel, the
baseline), MetaImage or NRRD (:mod:`inpaintssl.data.writers`). Each arm writes the same maps of a
knee MRI's size (384 x 384 x 160: a ``uint8`` label map of two classes and, with them, the
``float32`` probabilities of four classes) through :func:`inpaintssl.inference.writing.save_volume`,
the function ``predict``'s writer thread calls; the arms alternate, ``--repeats`` times each, and
the medians are compared. Every file written is read back (nibabel; this library's MetaImage and
NRRD readers) and must hold the maps written.

Usage::

    python benchmarks/bench_label_map_formats.py [--quick] [--repeats N] [--out PATH]

Target: each format writes the maps in at most 1.25x NIfTI's time, so choosing the scans' own
format costs a user nothing noticeable.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from provenance import at_least, emit, provenance

from inpaintssl.data.metaimage import MetaImageVolume
from inpaintssl.data.nrrd import NrrdVolume
from inpaintssl.inference.inputs import Geometry
from inpaintssl.inference.writing import OUTPUT_FORMATS, VOLUME_FORMATS, save_volume

TARGET_RATIO = 1.25  # a format's median writing time / NIfTI's, at most
SHAPE = (384, 384, 160)
QUICK_SHAPE = (128, 128, 32)
CLASSES = 4
SPACING = (0.36, 0.36, 0.7)  # a knee MRI's in-plane and slice spacing, mm


def _maps(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A label map of two blobs (mostly background, as segmentations are) and noisy probabilities."""
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cx, cy = shape[0] / 2, shape[1] / 2
    femur = (x - cx) ** 2 + (y - cy) ** 2 < (shape[0] / 4) ** 2
    tibia = (x - cx / 1.3) ** 2 + (z - shape[2] / 2) ** 2 < (shape[0] / 9) ** 2
    labels = np.where(tibia, 2, np.where(femur, 1, 0)).astype(np.uint8)
    rng = np.random.default_rng(0)
    probs = np.clip(rng.normal(0.05, 0.03, (*shape, CLASSES)), 0.0, 1.0).astype(np.float32)
    for k in (1, 2):
        probs[labels == k, k - 1] = 0.95
    return labels, probs


def _read(path: Path) -> np.ndarray:
    if path.name.endswith(".nii.gz"):
        image: Any = nib.load(path)
        return np.asarray(image.dataobj)
    volume = (MetaImageVolume if path.suffix == ".mha" else NrrdVolume)(path, ranks=(3, 4))
    return np.stack([volume.read(k) for k in range(volume.shape[2])], axis=2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time every output format's writes against NIfTI's; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SHAPE} maps instead of {SHAPE}")
    parser.add_argument("--repeats", type=at_least(1), default=5, help="writes per format (default: 5)")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    shape = QUICK_SHAPE if args.quick else SHAPE
    labels, probs = _maps(shape)
    geometry = Geometry(np.diag([*SPACING, 1.0]), None, SPACING, qform_code=1)
    # The DICOM formats reference a series: bench_dicom_label_formats times them.
    formats = {name: OUTPUT_FORMATS[name] for name in VOLUME_FORMATS}
    seconds: dict[str, list[float]] = {name: [] for name in formats}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for name, suffix in formats.items():  # alternating: drifts in speed hit every arm
                seg, prob = Path(folder) / f"seg{suffix}", Path(folder) / f"prob{suffix}"
                start = time.perf_counter()
                save_volume(labels, geometry, seg, file_format=name, dtype=np.uint8)
                save_volume(probs, geometry, prob, file_format=name, dtype=np.float32, channels=True)
                seconds[name].append(time.perf_counter() - start)
                sizes[name] = seg.stat().st_size + prob.stat().st_size
        for name, suffix in formats.items():
            if not np.array_equal(_read(Path(folder) / f"seg{suffix}"), labels):
                raise AssertionError(f"{name}: the label map read back is not the one written")
            if not np.array_equal(_read(Path(folder) / f"prob{suffix}"), probs):
                raise AssertionError(f"{name}: the probability map read back is not the one written")
    baseline = statistics.median(seconds["nifti"])
    entries = []
    for name in formats:
        median = statistics.median(seconds[name])
        entry: dict[str, Any] = {
            "source": f"output_format={name}",
            "median_s": median,
            "all_s": seconds[name],
            "bytes": sizes[name],
            "ratio_vs_nifti": median / baseline,
            "size_vs_nifti": sizes[name] / sizes["nifti"],
        }
        if name != "nifti":
            entry["target_met"] = median / baseline <= TARGET_RATIO
        entries.append(entry)
    record: dict[str, Any] = {
        "benchmark": "label_map_formats",
        **provenance(__file__, argv),
        "shape": list(shape),
        "classes": CLASSES,
        "repeats": args.repeats,
        "quick": args.quick,
        "target": f"each format's median time to write a label and a probability map <= "
        f"{TARGET_RATIO:g}x NIfTI's",
        "entries": entries,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
