"""What a CT series' label map costs as a DICOM SEG or an RT Structure Set, against NIfTI.

``predict`` writes a DICOM series' label map as NIfTI (the baseline), a DICOM SEG
(``output_format="dicom_seg"``, highdicom) or an RT Structure Set of contours
(``output_format="rtstruct"``); the ``ct`` dataset reads SEG and RTSTRUCT labels back on the
series' grid. Each arm writes the same label map of an abdominal CT's size (512 x 512 slices, four
classes drawn as nested ellipses with a hole, as body-composition maps are, each slice's a little
larger and further off-centre than the last) through the writer
``predict`` calls, and reads it back through the reader training uses (nibabel via the library's
NIfTI reader; :class:`~inpaintssl.data.dicom_seg.DicomSegVolume`;
:class:`~inpaintssl.data.dicom_rtstruct.DicomRtStructVolume`), every slice; what is read must be
the label map written. The arms alternate, ``--repeats`` times each, and the medians are compared.
The SEG arm is left out where highdicom is not installed (the ``dicom-seg`` extra).

Usage::

    python benchmarks/bench_dicom_label_formats.py [--quick] [--repeats N] [--out PATH]

Target: the RT Structure Set, this library's own writer and reader, writes and reads back a label
map in at most 3x the time the DICOM SEG takes (highdicom's writer, the field's reference
implementation, and this library's SEG reader): contours for a planning system cost no more than
the PACS's label format. NIfTI, a gzipped array, is the baseline of every ratio. Without highdicom
the target is not checked.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from dicom_files import save_slice, slice_dataset
from provenance import at_least, emit, provenance

from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.dicom_rtstruct import DicomRtStructVolume
from inpaintssl.data.dicom_seg import DicomSegVolume
from inpaintssl.data.readers import NiftiVolume
from inpaintssl.inference.dicom_seg import write_dicom_seg
from inpaintssl.inference.inputs import Geometry
from inpaintssl.inference.rtstruct import write_rtstruct
from inpaintssl.inference.writing import save_volume

TARGET_RATIO = 3.0  # RTSTRUCT's median time (write and read each) / the DICOM SEG's, at most
SHAPE = (512, 512, 60)
QUICK_SHAPE = (128, 128, 6)
CLASSES = ("muscle", "imat", "vat", "sat")
SPACING = (0.78, 0.78, 2.5)  # an abdominal CT's, mm


def _series(folder: Path, shape: tuple[int, int, int]) -> Path:
    """A classic CT series, one file per slice, written with pydicom."""
    from pydicom.uid import CTImageStorage, generate_uid

    identity = {
        "StudyInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "PatientID": "BENCH",
        "PatientName": "Bench^Mark",
    }
    series = generate_uid()
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(800, 1300, shape[:2]).astype("<i2")
    for k in range(shape[2]):
        ds = slice_dataset(
            sop_class=CTImageStorage, modality="CT", series=series, shape=shape[:2], signed=True
        )
        for tag, value in identity.items():
            setattr(ds, tag, value)
        ds.PixelSpacing = [f"{v:g}" for v in SPACING[:2]]
        ds.SliceThickness = f"{SPACING[2]:g}"
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = ["-200", "-180", f"{SPACING[2] * k:g}"]
        ds.InstanceNumber = k + 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.PixelData = pixels.tobytes()
        save_slice(ds, folder / f"im{k:04d}.dcm")
    return folder


def _labels(shape: tuple[int, int, int]) -> np.ndarray:
    """Nested ellipses: subcutaneous fat around visceral fat, muscle with intramuscular fat in it."""
    labels = np.zeros(shape, np.uint8)
    for k in range(shape[2]):
        grow, shift = 1.0 + 0.002 * k, 0.001 * k
        rows, columns = np.ogrid[: shape[0], : shape[1]]
        r = (rows - shape[0] / 2) / shape[0] / grow - shift
        c = (columns - shape[1] / 2) / shape[1] / grow + shift
        body = r**2 / 0.42**2 + c**2 / 0.45**2 < 1
        inner = r**2 / 0.36**2 + c**2 / 0.40**2 < 1
        muscle = ((r - 0.18) ** 2 / 0.10**2 + c**2 / 0.30**2 < 1) & ~((r - 0.18) ** 2 + c**2 < 0.03**2)
        imat = (r - 0.18) ** 2 / 0.02**2 + (c - 0.15) ** 2 / 0.02**2 < 1
        labels[:, :, k] = np.select([imat, muscle, inner, body], [2, 1, 3, 4], 0)
    return labels


def _timed(action: Callable[[Path], Any], path: Path) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action(path)
    return time.perf_counter() - start, result


def _every_slice(volume: Any) -> np.ndarray:
    return np.stack([volume.read(k) for k in range(volume.shape[2])], axis=2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time the DICOM label formats' writes and reads against NIfTI's; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SHAPE} series instead of {SHAPE}")
    parser.add_argument(
        "--repeats", type=at_least(1), default=3, help="writes and reads per format (default: 3)"
    )
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args(argv)
    shape = QUICK_SHAPE if args.quick else SHAPE
    labels = _labels(shape)
    values = {name: k + 1 for k, name in enumerate(CLASSES)}
    formats = ["nifti", "rtstruct"]
    if importlib.util.find_spec("highdicom") is not None:
        formats.insert(1, "dicom_seg")
    timings: dict[str, dict[str, list[float]]] = {name: {"write": [], "read": []} for name in formats}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        series = DicomVolume(_series(Path(folder) / "series", shape))
        affine = series.patient_affine
        assert affine is not None
        geometry = Geometry(affine.copy(), None, series.spacing, qform_code=1)
        writers: dict[str, Callable[[Path], Any]] = {
            "nifti": lambda path: save_volume(labels, geometry, path, file_format="nifti", dtype=np.uint8),
            "dicom_seg": lambda path: write_dicom_seg(labels, series, path, class_names=CLASSES),
            "rtstruct": lambda path: write_rtstruct(labels, series, path, class_names=CLASSES, affine=affine),
        }
        readers: dict[str, Callable[[Path], Any]] = {
            "nifti": lambda path: NiftiVolume(path, ranks={3}),
            "dicom_seg": lambda path: DicomSegVolume(path, reference=series),
            "rtstruct": lambda path: DicomRtStructVolume(path, reference=series, roi_values=values),
        }
        for repeat in range(args.repeats):
            for name in formats:  # alternating: drifts in speed hit every arm
                path = Path(folder) / f"labels-{repeat}{'.nii.gz' if name == 'nifti' else '.dcm'}"
                seconds, _ = _timed(writers[name], path)
                timings[name]["write"].append(seconds)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # a NIfTI of a series' affine: nothing new
                    seconds, volume = _timed(readers[name], path)
                    start = time.perf_counter()
                    read = _every_slice(volume)
                    seconds += time.perf_counter() - start
                timings[name]["read"].append(seconds)
                if not np.array_equal(read, labels):
                    raise AssertionError(f"{name}: the label map read back is not the one written")
                sizes[name] = path.stat().st_size
                path.unlink()
    baseline = {step: statistics.median(timings["nifti"][step]) for step in ("write", "read")}
    entries = []
    for name in formats:
        entry: dict[str, Any] = {"source": f"output_format={name}", "bytes": sizes[name]}
        for step in ("write", "read"):
            median = statistics.median(timings[name][step])
            entry[f"{step}_median_s"] = median
            entry[f"{step}_all_s"] = timings[name][step]
            entry[f"{step}_ratio_vs_nifti"] = median / baseline[step]
            if name == "rtstruct" and "dicom_seg" in timings:
                entry[f"{step}_ratio_vs_dicom_seg"] = median / statistics.median(timings["dicom_seg"][step])
        if name == "rtstruct":
            entry["target_met"] = (
                max(entry["write_ratio_vs_dicom_seg"], entry["read_ratio_vs_dicom_seg"]) <= TARGET_RATIO
                if "dicom_seg" in timings
                else None
            )
        entries.append(entry)
    record: dict[str, Any] = {
        "benchmark": "dicom_label_formats",
        **provenance(__file__, argv),
        "shape": list(shape),
        "classes": list(CLASSES),
        "repeats": args.repeats,
        "quick": args.quick,
        "target": f"the RT Structure Set's median time to write, and to read back, a label map <= "
        f"{TARGET_RATIO:g}x the DICOM SEG's",
        "entries": entries,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
