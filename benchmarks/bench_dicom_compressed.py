"""Reading a compressed DICOM series for several epochs: decoded every read, or once under ``cache_dir``.

A CT series as PACS archives export it is often compressed, as JPEG Lossless or JPEG 2000. A
training run reads each slice once per epoch, and each read of a compressed file decodes it
again. Under ``data.cache_dir`` (:mod:`inpaintssl.data.decompressed`) the series is decoded once,
whole, and every later read memory-maps that copy (``DicomVolume.compressed``). On one CT-like
series (a body outline with soft tissue, fat and bone, and noise: what real CT compresses like),
each arm reads every slice once per epoch for ``--epochs`` epochs, in random order, the arms alternating
``--repeats`` times:

- ``uncompressed``: the same series stored uncompressed, read file by file (the baseline).
- ``jpeg_lossless`` / ``jpeg2000``: the compressed series, each read decoding its slice (no
  ``cache_dir``).
- ``jpeg_lossless_cached`` / ``jpeg2000_cached``: the compressed series under a fresh ``cache_dir``:
  the first read decodes the series and writes its copy, every other read memory-maps it.

Every arm must read the same values as the uncompressed one (the syntaxes are lossless).

Usage::

    python benchmarks/bench_dicom_compressed.py [--quick] [--epochs N] [--repeats N] [--out PATH]

Each epoch is timed on its own: the first opens the series (and under ``cache_dir`` decodes it
whole and writes the copy), the later ones are what every further epoch, worker and run costs; so
``--epochs`` is at least 2.
Target: for each syntax, an epoch after the first under ``cache_dir`` takes at most the time of an
uncompressed series' epoch (the decoding is paid once, not every epoch). Needs GDCM (the
``dicom-compressed`` extra), which writes the compressed series and decodes it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from dicom_files import save_slice, slice_dataset
from provenance import at_least, emit, provenance

from inpaintssl.data.decompressed import decompressed_into
from inpaintssl.data.dicom import DicomVolume

TARGET = 1.0  # an epoch after the first: compressed under cache_dir / uncompressed, at most, per syntax
SHAPE = (512, 512, 48)
QUICK_SHAPE = (64, 64, 4)
SYNTAXES = {"jpeg_lossless": "1.2.840.10008.1.2.4.70", "jpeg2000": "1.2.840.10008.1.2.4.90"}


def _ct(shape: tuple[int, int, int]) -> np.ndarray:
    """``(rows, columns, slices)`` stored CT values (HU + 1024): body, fat, muscle, bone, noise."""
    rows, columns = np.mgrid[: shape[0], : shape[1]] / np.array(shape[:2])[:, None, None]
    rng = np.random.default_rng(0)
    body = ((rows - 0.5) / 0.42) ** 2 + ((columns - 0.5) / 0.48) ** 2 < 1
    muscle = ((rows - 0.5) / 0.32) ** 2 + ((columns - 0.5) / 0.38) ** 2 < 1
    bone = ((rows - 0.62) / 0.07) ** 2 + ((columns - 0.5) / 0.07) ** 2 < 1
    hu = np.where(body, -90.0, -1000.0) + np.where(muscle, 130.0, 0.0) + np.where(bone, 700.0, 0.0)
    slices = [hu + rng.normal(0.0, 12.0, hu.shape) * body for _ in range(shape[2])]
    return (np.stack(slices, axis=-1) + 1024.0).clip(0, 4095).astype(np.int16)


def _series(folder: Path, stored: np.ndarray) -> Path:
    """A classic CT series of ``stored``, one uncompressed file per slice."""
    from pydicom.uid import CTImageStorage, generate_uid

    folder.mkdir()
    series, study = generate_uid(), generate_uid()
    for k in range(stored.shape[2]):
        ds = slice_dataset(
            sop_class=CTImageStorage, modality="CT", series=series, shape=stored.shape[:2], signed=True
        )
        ds.StudyInstanceUID = study
        ds.PixelSpacing, ds.SliceThickness = ["0.78", "0.78"], "2.5"
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = ["-200", "-200", f"{2.5 * k:g}"]
        ds.InstanceNumber = k + 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.PixelData = stored[:, :, k].astype("<i2").tobytes()
        save_slice(ds, folder / f"CT{k:04d}.dcm")
    return folder


def _compressed(source: Path, target: Path, syntax: str) -> Path:
    """``source``'s files compressed as ``syntax`` into ``target``, by GDCM's encoders."""
    import gdcm

    target.mkdir()
    for path in sorted(source.iterdir()):
        reader = gdcm.ImageReader()
        reader.SetFileName(str(path))
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(syntax)))
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(target / path.name))
        if not reader.Read():
            raise RuntimeError(f"GDCM cannot read {path}")
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError(f"GDCM cannot compress {path} as {syntax}")
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise RuntimeError(f"GDCM cannot write {target / path.name}")
    return target


def _epochs(path: Path, epochs: int, cache: Path | None) -> tuple[list[float], np.ndarray]:
    """Seconds of each epoch that reads every slice of the series once, in a new random order,
    the first one opening the series; and the slices read."""
    rng = np.random.default_rng(1)
    read: dict[int, np.ndarray] = {}
    seconds = []
    volume = None
    for _ in range(epochs):
        start = time.perf_counter()
        if volume is None:
            with decompressed_into(cache):
                volume = DicomVolume(path)
        for k in rng.permutation(volume.num_slices):
            read[int(k)] = np.array(volume.read(int(k)))
        seconds.append(time.perf_counter() - start)
    assert volume is not None
    return seconds, np.stack([read[k] for k in range(volume.num_slices)], axis=-1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time reading compressed series with and without ``cache_dir``; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SHAPE} series instead of {SHAPE}")
    parser.add_argument(
        "--epochs",
        type=at_least(2),
        default=5,
        help="reads of every slice per arm, at least 2: the first is reported apart (default: 5)",
    )
    parser.add_argument("--repeats", type=at_least(1), default=3, help="runs of each arm (default: 3)")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    shape = QUICK_SHAPE if args.quick else SHAPE
    stored = _ct(shape)
    expected = stored.astype(np.float32) - np.float32(1024.0)
    arms = ["uncompressed", *(f"{name}{cached}" for name in SYNTAXES for cached in ("", "_cached"))]
    first: dict[str, list[float]] = {name: [] for name in arms}
    later: dict[str, list[float]] = {name: [] for name in arms}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        plain = _series(Path(folder) / "uncompressed", stored)
        paths = {"uncompressed": plain}
        for name, syntax in SYNTAXES.items():
            paths[name] = _compressed(plain, Path(folder) / name, syntax)
        for name, path in paths.items():
            sizes[name] = sum(f.stat().st_size for f in path.iterdir())
        for repeat in range(args.repeats):
            for arm in arms:
                name = arm.removesuffix("_cached")
                cache = Path(folder) / f"cache-{arm}-{repeat}" if arm.endswith("_cached") else None
                took, values = _epochs(paths[name], args.epochs, cache)
                if not np.array_equal(values, expected):
                    raise AssertionError(f"{arm} read other values than the series holds")
                first[arm].append(took[0])
                later[arm].extend(took[1:])
    first_s = {arm: statistics.median(first[arm]) for arm in arms}
    later_s = {arm: statistics.median(later[arm]) for arm in arms}
    ratios = {arm: later_s[arm] / later_s["uncompressed"] for arm in arms}
    record: dict[str, Any] = {
        "benchmark": "dicom_compressed",
        **provenance(__file__, argv),
        "shape": list(shape),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "quick": args.quick,
        "series_bytes": sizes,
        "target": f"an epoch after the first, each syntax under cache_dir: <= {TARGET:g}x the uncompressed "
        "series' (median seconds)",
        "entries": [
            {
                "source": arm,
                "first_epoch_s": first_s[arm],
                "later_epoch_s": later_s[arm],
                "all_first_epoch_s": first[arm],
                "all_later_epoch_s": later[arm],
                "later_epoch_ratio_vs_uncompressed": ratios[arm],
            }
            for arm in arms
        ],
        "target_met": all(ratios[f"{name}_cached"] <= TARGET for name in SYNTAXES),
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
