"""Writers of small real data files for the data tests (imported by tests/data/conftest.py and tests).

Everything is written with the real libraries (h5py, pydicom, nibabel), with the key names and
layouts of the real datasets and shapes scaled down, so the readers under test parse genuine files.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dicom_helpers import save_dicom, single_frame_dataset

SKMTEA_SHAPE = (16, 12, 5)  # (X, Y, Z): SI, AP, LR; real data is (512, 512, ~160)


@dataclass
class SkmteaFixture:
    """A written SKM-TEA folder and the arrays/metadata that went into it."""

    root: Path
    echo1: dict[str, np.ndarray] = field(default_factory=dict)
    echo2: dict[str, np.ndarray] = field(default_factory=dict)
    seg: dict[str, np.ndarray] = field(default_factory=dict)
    spacing: dict[str, list[float]] = field(default_factory=dict)
    params: dict[str, dict[str, float]] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)


def _random_seg(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    # Each voxel gets at most one of the 6 stored classes (value 6 = background).
    classes = rng.integers(0, 7, size=shape)
    seg = np.zeros((*shape, 6), dtype=np.uint8)
    for c in range(6):
        seg[..., c] = classes == c
    return seg


def write_skmtea_scan(
    path: Path, echo1: np.ndarray, echo2: np.ndarray, seg: np.ndarray | None, *, with_stats: bool
) -> None:
    with h5py.File(path, "w") as f:
        f["echo1"] = echo1
        f["echo2"] = echo2
        if seg is not None:
            f["seg"] = seg
        if with_stats:
            rss = np.sqrt(echo1.astype(np.float64) ** 2 + echo2.astype(np.float64) ** 2)
            group = f.create_group("stats/rss")
            group["mean"] = rss.mean()
            group["std"] = rss.std()


def make_skmtea(
    root: Path, *, seed: int = 0, splits: dict[str, int] | None = None, unlabelled: int = 1
) -> SkmteaFixture:
    """Write a SKM-TEA-layout folder: annotated train/val/test scans plus unannotated ones."""
    rng = np.random.default_rng(seed)
    counts = splits or {"train": 4, "val": 1, "test": 1}
    fx = SkmteaFixture(root=root)
    (root / "image_files").mkdir(parents=True)
    ann = root / "annotations" / "v1.0.0"
    ann.mkdir(parents=True)
    number = 1
    for split, count in counts.items():
        images = []
        ids = []
        for _ in range(count):
            scan_id = f"MTR_{number:03d}"
            e1 = rng.uniform(0, 400, size=SKMTEA_SHAPE).astype(np.float32)
            e2 = rng.uniform(0, 150, size=SKMTEA_SHAPE).astype(np.float32)
            seg = _random_seg(rng, SKMTEA_SHAPE)
            write_skmtea_scan(root / "image_files" / f"{scan_id}.h5", e1, e2, seg, with_stats=number % 2 == 0)
            spacing = [0.3125, 0.3125 + 0.01 * number, 0.8]
            fx.echo1[scan_id], fx.echo2[scan_id], fx.seg[scan_id] = e1, e2, seg
            fx.spacing[scan_id] = spacing
            fx.params[scan_id] = {
                "tr_ms": 18.0 + number,
                "te_ms": 5.0 + 0.1 * number,
                "flip_angle_deg": 20.0,
                "gl_area": 3132.0,
                "tg_us": 1560.0 + number,
            }
            images.append(
                {
                    "id": number,
                    "file_name": f"{scan_id}.h5",
                    "scan_id": scan_id,
                    "voxel_spacing": spacing,
                    "matrix_shape": list(SKMTEA_SHAPE),
                    "orientation": ["SI", "AP", "LR"],
                    "num_echoes": 2,
                }
            )
            ids.append(scan_id)
            number += 1
        (ann / f"{split}.json").write_text(json.dumps({"info": {}, "images": images, "annotations": []}))
        fx.splits[split] = ids
    fx.splits["unlabelled"] = []
    for _ in range(unlabelled):
        scan_id = f"MTR_{number:03d}"
        e1 = rng.uniform(0, 400, size=SKMTEA_SHAPE).astype(np.float32)
        e2 = rng.uniform(0, 150, size=SKMTEA_SHAPE).astype(np.float32)
        write_skmtea_scan(root / "image_files" / f"{scan_id}.h5", e1, e2, None, with_stats=False)
        fx.echo1[scan_id], fx.echo2[scan_id] = e1, e2
        fx.splits["unlabelled"].append(scan_id)
        number += 1
    with (root / "all_metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "MTR_ID",
                "Manufacturer",
                "RepetitionTime",
                "EchoTime1",
                "FlipAngle",
                "SpoilerGradientArea",
                "SpoilerGradientTime",
            ]
        )
        for scan_id, p in fx.params.items():
            row = [p["tr_ms"], p["te_ms"], p["flip_angle_deg"], p["gl_area"], p["tg_us"]]
            writer.writerow([scan_id, "GE", *row])
    return fx


def write_dicom_slice(
    path: Path,
    stored: np.ndarray,
    *,
    slope: float,
    intercept: float,
    z: float,
    instance: int,
    pixel_spacing: tuple[float, float] = (0.7, 0.8),
    thickness: float = 2.5,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    position: tuple[float, float, float] | None = None,
    series_uid: str | None = None,
    series_description: str | None = None,
    series_number: int | None = None,
) -> None:
    """One CT slice written by pydicom, with modality rescale and geometry tags.

    ``position`` (default ``(0, 0, z)``) and ``orientation`` are ImagePositionPatient and
    ImageOrientationPatient; the series tags are written only when given.
    """
    from pydicom.uid import CTImageStorage

    ds = single_frame_dataset(sop_class=CTImageStorage, modality="CT", shape=stored.shape, signed=True)
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.PixelSpacing = [f"{pixel_spacing[0]:g}", f"{pixel_spacing[1]:g}"]
    ds.SliceThickness = f"{thickness:g}"
    ds.ImageOrientationPatient = [f"{v:g}" for v in orientation]
    ds.ImagePositionPatient = [f"{v:g}" for v in (position if position is not None else (0, 0, z))]
    ds.InstanceNumber = instance
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
    if series_description is not None:
        ds.SeriesDescription = series_description
    if series_number is not None:
        ds.SeriesNumber = series_number
    ds.PixelData = stored.astype("<i2").tobytes()
    save_dicom(ds, path)


def write_nifti(path: Path, array: np.ndarray, *, spacing: tuple[float, ...] = (1.0, 1.0, 1.0)) -> None:
    import nibabel as nib

    affine = np.diag([*spacing[:3], 1.0])
    nib.save(nib.Nifti1Image(array, affine), path)


def onehot_reference(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Independent one-hot: ``(H, W)`` ints -> ``(K, H, W)`` via broadcasting against 1..K."""
    return (label[None] == np.arange(1, num_classes + 1)[:, None, None]).astype(np.float32)


def zscore_reference(volume: np.ndarray, axis: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (float64, ddof=0) of a volume, optionally per channel."""
    v = volume.astype(np.float64)
    return v.mean(axis=axis), v.std(axis=axis)
