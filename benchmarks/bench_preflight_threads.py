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
``check_threads=1`` and the default, and their label maps must be equal. A third pair reads each
file whole, one after the other, in one thread: through nibabel's own proxy (Python's
``gzip.GzipFile``, what the library read with before) and through
:class:`~inpaintssl.data.readers.NiftiVolume` (:mod:`inpaintssl.data.gzip_stream`); the arrays must
be equal. Two more pairs check the same images stored as HDF5 files (gzip-compressed datasets,
one slice per chunk, with the labels) and as DICOM series (one file per slice, unlabelled) one by
one and with the default thread count: h5py holds one lock over every HDF5 call and pydicom parses
in Python, so the library checks such cases in the calling thread whatever the count
(:attr:`~inpaintssl.data.readers.Volume.reads_on_threads`), and each pair should take the same
time.

Usage::

    python benchmarks/bench_preflight_threads.py [--quick] [--repeats N] [--out PATH]

Target (set before measuring): the threaded check at least 1.5x as fast as the one-by-one check
on a 2-core machine. ``predict`` has no target: it is reported, since on a CPU the prediction
itself takes most of its time. The whole-file reads have none either.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pydicom
from provenance import at_least, emit, provenance
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from scipy.ndimage import gaussian_filter
from tiny_run import tiny_run, written_label_maps

import inpaintssl as issl
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.preflight import default_check_threads, preflight
from inpaintssl.data.readers import NiftiVolume
from inpaintssl.data.volumes import VolumeSliceDataset, hdf5_dataset, nifti_dataset

TARGET_SPEEDUP = 1.5  # threaded check vs one case after the other, on 2 cores
HDF5_COMPRESSION = "gzip"


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


def _write_hdf5(root: Path, cases: list[dict[str, str]]) -> list[str]:
    """The NIfTI cases again as HDF5 files, gzip-compressed one slice per chunk."""
    names = []
    for case in cases:
        name = case["image"].replace(".nii.gz", ".h5")
        with h5py.File(root / name, "w") as f:
            for key in ("image", "label"):
                array = np.asarray(nib.load(root / case[key]).dataobj)
                f.create_dataset(key, data=array, compression=HDF5_COMPRESSION, chunks=(*array.shape[:2], 1))
        names.append(name)
    return names


def _opened_hdf5(root: Path, names: list[str]) -> VolumeSliceDataset:
    return hdf5_dataset(split="train", root=root, cases={"train": names}, class_names=["a", "b"])


def _write_dicom(root: Path, cases: list[dict[str, str]]) -> list[str]:
    """The NIfTI images again as CT DICOM series, one uncompressed file per slice."""
    names = []
    for case in cases:
        image = np.asarray(nib.load(root / case["image"]).dataobj)
        folder = root / case["image"].replace(".nii.gz", "_dicom")
        folder.mkdir()
        series = generate_uid()
        for z in range(image.shape[2]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", series, z + 1
            ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 2.5 * z], [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.SliceThickness = [0.7, 0.8], 2.5
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            ds.Rows, ds.Columns = image.shape[:2]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.PixelData = np.ascontiguousarray(image[:, :, z]).astype("<i2").tobytes()
            ds.save_as(folder / f"{z:03d}.dcm", enforce_file_format=True)
        names.append(folder.name)
    return names


def _opened_dicom(root: Path, names: list[str]) -> VolumeSliceDataset:
    return ct_dataset(split="train", labelled=False, root=root, cases={"train": names})


def _time_checks(
    opened: Any, arms: dict[str, int], repeats: int, count: int
) -> tuple[dict[str, list[float]], dict[str, list[tuple[bytes, bytes]]]]:
    """Seconds per check of a freshly opened dataset for each arm, arms alternating, after one
    untimed pass; and the statistics each arm kept."""
    preflight({"train": opened()}, progress=False, threads=1)  # into the page cache
    seconds: dict[str, list[float]] = {arm: [] for arm in arms}
    kept: dict[str, list[tuple[bytes, bytes]]] = {}
    for _ in range(repeats):
        for arm, workers in arms.items():
            dataset = opened()
            start = time.perf_counter()
            preflight({"train": dataset}, progress=False, threads=workers)
            seconds[arm].append(time.perf_counter() - start)
            kept[arm] = _stats(dataset, count)
    return seconds, kept


def _opened(root: Path, cases: list[dict[str, str]]) -> VolumeSliceDataset:
    return nifti_dataset(split="train", root=root, cases={"train": cases}, class_names=["a", "b"])


def _stats(dataset: VolumeSliceDataset, count: int) -> list[tuple[bytes, bytes]]:
    return [(s.mean.tobytes(), s.std.tobytes()) for s in (dataset.volume_stats(c) for c in range(count))]


def _read_with_nibabel(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def _read_with_nifti_volume(path: Path) -> np.ndarray:
    volume = NiftiVolume(path)  # its first read decompresses the whole file and keeps it
    return np.stack([volume.read(s) for s in range(volume.num_slices)], axis=-1)


def _time_reads(files: list[Path], repeats: int) -> dict[str, list[float]]:
    """Seconds per pass over ``files`` for each reader, passes alternating; the arrays must agree."""
    for path in files:
        first, second = _read_with_nibabel(path), _read_with_nifti_volume(path)
        if first.dtype != second.dtype or first.tobytes() != second.tobytes():
            raise AssertionError(f"the two readers read {path.name} differently")
    timed = {
        "nibabel_gzipfile": _read_with_nibabel,
        "nifti_volume_gzip_stream": lambda p: NiftiVolume(p).read(0),
    }
    seconds: dict[str, list[float]] = {arm: [] for arm in timed}
    for _ in range(repeats):
        for arm, read in timed.items():
            start = time.perf_counter()
            for path in files:
                read(path)
            seconds[arm].append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time the arms; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="6 cases of 128x128x32 instead of 12 of 256x256x64"
    )
    parser.add_argument("--repeats", type=at_least(1), default=3, help="timed passes per arm (default: 3)")
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
        check_seconds, kept = _time_checks(lambda: _opened(root, cases), arms, args.repeats, count)
        if kept["one_by_one"] != kept["threads"]:
            raise AssertionError("the two arms kept different normalisation statistics")
        files = sorted(root.glob("*.nii.gz"))
        read_seconds = _time_reads(files, args.repeats)
        h5_names = _write_hdf5(root, cases)
        hdf5_seconds, hdf5_kept = _time_checks(
            lambda: _opened_hdf5(root, h5_names), arms, args.repeats, count
        )
        if hdf5_kept["one_by_one"] != hdf5_kept["threads"] or hdf5_kept["threads"] != kept["threads"]:
            raise AssertionError("the HDF5 arms kept other normalisation statistics than the NIfTI arms")
        series = _write_dicom(root, cases)
        dicom_seconds, dicom_kept = _time_checks(
            lambda: _opened_dicom(root, series), arms, args.repeats, count
        )
        if dicom_kept["one_by_one"] != dicom_kept["threads"]:
            raise AssertionError("the two DICOM arms kept different normalisation statistics")

        run = tiny_run(root / "run", size=shape[:2])
        scans = [root / c["image"] for c in cases]
        predict_seconds: dict[str, list[float]] = {arm: [] for arm in arms}
        labels: dict[str, dict[str, np.ndarray]] = {}
        for repeat in range(args.repeats):
            for arm, workers in arms.items():
                out = root / f"{arm}{repeat}"
                start = time.perf_counter()
                issl.predict(run, scans, output=out, progress=False, device="cpu", check_threads=workers)
                predict_seconds[arm].append(time.perf_counter() - start)
                labels[arm] = written_label_maps(out)
    same = labels["one_by_one"].keys() == labels["threads"].keys() and all(
        np.array_equal(labels["one_by_one"][k], labels["threads"][k]) for k in labels["threads"]
    )
    if not same:
        raise AssertionError("the two predict arms wrote different label maps")
    check = {arm: statistics.median(v) for arm, v in check_seconds.items()}
    predicted = {arm: statistics.median(v) for arm, v in predict_seconds.items()}
    speedup = check["one_by_one"] / check["threads"]
    read = {arm: statistics.median(v) for arm, v in read_seconds.items()}
    hdf5 = {arm: statistics.median(v) for arm, v in hdf5_seconds.items()}
    dicom = {arm: statistics.median(v) for arm, v in dicom_seconds.items()}
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
        "read_files": len(files),
        "read_seconds": read_seconds,
        "median_read_seconds": read,
        "read_speedup_gzip_stream_vs_gzipfile": read["nibabel_gzipfile"] / read["nifti_volume_gzip_stream"],
        "hdf5_check_seconds": hdf5_seconds,
        "median_hdf5_check_seconds": hdf5,
        "hdf5_check_speedup_threads_vs_one_by_one": hdf5["one_by_one"] / hdf5["threads"],
        "dicom_check_seconds": dicom_seconds,
        "median_dicom_check_seconds": dicom,
        "dicom_check_speedup_threads_vs_one_by_one": dicom["one_by_one"] / dicom["threads"],
        "target": f"threaded check >= {TARGET_SPEEDUP:g}x the one-by-one check (2 cores)",
        "target_met": speedup >= TARGET_SPEEDUP,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
