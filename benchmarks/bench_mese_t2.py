"""What ``predict(t2=True)`` adds per scan: the T2 map of a multi-echo spin-echo series, in time and memory.

``predict --t2`` reads every echo of a MESE DICOM series and fits ``S = S0 exp(-TE / T2)`` voxel by
voxel (:func:`inpaintssl.inference.t2_maps.t2_map`, :func:`inpaintssl.metrics.mese_t2`), one slice
at a time. Three arms on the same series, an OAI-like knee protocol (7 echoes, 10 to 70 ms,
384 x 384 slices), alternating ``--repeats`` times:

- ``read``: open the series' echoes and read every slice of each (:func:`~inpaintssl.data.dicom.open_echoes`),
  the baseline: what any T2 map must read.
- ``t2_map``: the library's map, read and fit slice by slice, given the series opened as predict
  opens it (its echoes' headers are read again, and their pixels).
- ``whole_volume_fit``: the same fit over the stacked echoes at once, the alternative the slice
  loop avoids; its map must equal ``t2_map``'s.

Peak memory is the largest allocation total ``tracemalloc`` sees during each arm (NumPy reports its
arrays to it), apart from the echoes the whole-volume arm is given already read.

Usage::

    python benchmarks/bench_mese_t2.py [--quick] [--repeats N] [--out PATH]

Targets: the T2 map takes at most 2x the time of reading the echoes (the fit costs no more than the
reading), and the slice-by-slice fit's peak memory is at most a quarter of the whole-volume fit's.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from dicom_files import save_slice, slice_dataset
from provenance import at_least, emit, provenance

from inpaintssl.data.dicom import DicomVolume, open_echoes
from inpaintssl.inference.t2_maps import t2_map
from inpaintssl.metrics import mese_t2

TIME_TARGET = 2.0  # t2_map's median time / reading the echoes', at most
MEMORY_TARGET = 0.25  # the slice loop's peak / the whole-volume fit's, at most
SHAPE = (384, 384, 24)
QUICK_SHAPE = (64, 64, 4)
ECHO_TIMES_MS = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0)


def _series(folder: Path, shape: tuple[int, int, int]) -> Path:
    """A classic MR series, one file per echo and slice, of tissue with T2 from 20 to 80 ms."""
    from pydicom.uid import MRImageStorage, generate_uid

    folder.mkdir()
    rng = np.random.default_rng(0)
    t2 = rng.uniform(20.0, 80.0, shape)
    s0 = rng.uniform(1500.0, 3000.0, shape)
    series = generate_uid()
    for e, te in enumerate(ECHO_TIMES_MS):
        echo = np.round(s0 * np.exp(-te / t2) + rng.normal(0.0, 5.0, shape)).clip(1, None).astype("<u2")
        for k in range(shape[2]):
            ds = slice_dataset(
                sop_class=MRImageStorage, modality="MR", series=series, shape=shape[:2], signed=False
            )
            ds.PixelSpacing, ds.SliceThickness = ["0.365", "0.456"], "3"
            ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]  # sagittal, as the OAI's
            ds.ImagePositionPatient = [f"{3.0 * k:g}", "-70", "70"]
            ds.InstanceNumber = e * shape[2] + k + 1
            ds.EchoTime, ds.EchoNumbers = f"{te:g}", e + 1
            ds.PixelData = echo[:, :, k].tobytes()
            save_slice(ds, folder / f"IM{e}{k:04d}.dcm")
    return folder


def _read(path: Path) -> np.ndarray:
    echoes = open_echoes(path)
    return np.stack([np.stack([e.read(k) for k in range(e.num_slices)], axis=-1) for e in echoes])


def _measured(action: Any) -> tuple[float, int, Any]:
    tracemalloc.start()
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time the T2 map against reading the echoes and the whole-volume fit; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SHAPE} series instead of {SHAPE}")
    parser.add_argument("--repeats", type=at_least(1), default=3, help="runs of each arm (default: 3)")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    shape = QUICK_SHAPE if args.quick else SHAPE
    arms = ("read", "t2_map", "whole_volume_fit")
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    peaks: dict[str, list[int]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as folder:
        path = _series(Path(folder) / "mese", shape)
        for _ in range(args.repeats):
            took, peak, echoes = _measured(lambda: _read(path))
            seconds["read"].append(took)
            peaks["read"].append(peak)
            opened = DicomVolume(path, echo=1)  # as predict hands it over: opened for the model's echo
            took, peak, sliced = _measured(functools.partial(t2_map, opened, ECHO_TIMES_MS))
            seconds["t2_map"].append(took)
            peaks["t2_map"].append(peak)
            took, peak, whole = _measured(functools.partial(mese_t2, echoes, ECHO_TIMES_MS))
            seconds["whole_volume_fit"].append(took)
            peaks["whole_volume_fit"].append(peak)
            if not np.allclose(sliced, whole, rtol=1e-6, equal_nan=True):
                raise AssertionError("the slice-by-slice T2 map differs from the whole-volume fit")
        valid = float(np.isfinite(sliced).mean())
    medians = {name: statistics.median(seconds[name]) for name in arms}
    # MiB (2**20 bytes), named so: the README's other "MB" figures are decimal.
    peak_mib = {name: max(peaks[name]) / 2**20 for name in arms}
    time_ratio = medians["t2_map"] / medians["read"]
    memory_ratio = peak_mib["t2_map"] / peak_mib["whole_volume_fit"]
    record: dict[str, Any] = {
        "benchmark": "mese_t2",
        **provenance(__file__, argv),
        "shape": list(shape),
        "echo_times_ms": list(ECHO_TIMES_MS),
        "repeats": args.repeats,
        "quick": args.quick,
        "valid_voxel_share": valid,
        "target": f"t2_map's median time <= {TIME_TARGET:g}x reading the echoes'; its peak memory <= "
        f"{MEMORY_TARGET:g}x the whole-volume fit's",
        "entries": [
            {"source": name, "median_s": medians[name], "all_s": seconds[name], "peak_mib": peak_mib[name]}
            for name in arms
        ],
        "time_ratio_vs_read": time_ratio,
        "memory_ratio_vs_whole_volume_fit": memory_ratio,
        "target_met": time_ratio <= TIME_TARGET and memory_ratio <= MEMORY_TARGET,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
