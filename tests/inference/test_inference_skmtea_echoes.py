"""``predict`` with a run trained on SKM-TEA reads a scan's HDF5 file as the run's image: the
root-sum-of-squares of its two qDESS echoes, not one echo.

Before, a SKM-TEA file was refused for holding no dataset called ``image``, and ``key="echo1"``
segmented the first echo alone without a word (an image the network never learned from).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from inpaintssl.inference.results import PredictionError

SHAPE = (16, 12, 4)  # (X, Y, Z): sagittal slices of 16x12
SPACING = (0.3125, 0.3125, 0.8)


def _scan(path: Path, rng: np.random.Generator) -> None:
    seg = np.zeros((*SHAPE, 6), dtype=np.uint8)
    # One block per stored class group of the four tissues, so that every class has pixels.
    for channel, rows in zip((0, 1, 2, 4), ((1, 4), (4, 8), (8, 11), (11, 14))):
        seg[rows[0] : rows[1], 3:8, :, channel] = 1
    with h5py.File(path, "w") as f:
        f["echo1"] = rng.uniform(0, 400, size=SHAPE).astype(np.uint16)
        f["echo2"] = rng.uniform(0, 150, size=SHAPE).astype(np.uint16)
        f["seg"] = seg


@pytest.fixture(scope="module")
def skmtea_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A SKM-TEA folder (one scan per split) and a run fine-tuned on it; returns (root, run)."""
    root = tmp_path_factory.mktemp("skmtea")
    (root / "image_files").mkdir()
    annotations = root / "annotations" / "v1.0.0"
    annotations.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for number, split in enumerate(("train", "val", "test"), start=1):
        scan = f"MTR_{number:03d}"
        _scan(root / "image_files" / f"{scan}.h5", rng)
        image = {"file_name": f"{scan}.h5", "scan_id": scan, "voxel_spacing": list(SPACING)}
        (annotations / f"{split}.json").write_text(json.dumps({"images": [image]}))
    run = tmp_path_factory.mktemp("skmtea_run") / "run"
    issl.finetune(
        {
            "data": {"dataset": "skmtea", "params": {"root": str(root), "metadata_csv": None}},
            "model": {"params": {"depth": 2, "base_width": 4}},
            "optim": {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 2},
            "run": {"output_dir": str(run), "device": "cpu", "quiet": True},
        }
    )
    return root, run


def _labels(output: Path) -> np.ndarray:
    (seg,) = sorted(output.glob("*_seg.nii.gz"))
    return np.asarray(nib.load(seg).dataobj)


def test_a_skmtea_file_is_read_as_the_root_sum_of_squares_of_its_echoes(
    skmtea_run: tuple[Path, Path], tmp_path: Path
) -> None:
    root, run = skmtea_run
    scan = root / "image_files" / "MTR_003.h5"
    report = issl.predict(run, scan, output=tmp_path / "echoes", spacing=SPACING, progress=False)
    # The guide's workaround, by hand: the combined image written as the file's 'image'.
    with h5py.File(scan) as f:
        e1, e2 = (np.asarray(f[key], dtype=np.float32) for key in ("echo1", "echo2"))
    by_hand = tmp_path / "MTR_003.h5"
    with h5py.File(by_hand, "w") as f:
        f["image"] = np.sqrt(e1 * e1 + e2 * e2)
    issl.predict(run, by_hand, output=tmp_path / "by_hand", spacing=SPACING, progress=False)
    assert np.array_equal(_labels(tmp_path / "echoes"), _labels(tmp_path / "by_hand"))
    assert len(report.cases) == 1


@pytest.mark.parametrize("echo", ["echo1", "echo2"])
def test_one_echo_of_a_skmtea_run_is_refused(
    skmtea_run: tuple[Path, Path], tmp_path: Path, echo: str
) -> None:
    root, run = skmtea_run
    with pytest.raises(PredictionError, match=rf"key='{echo}' is one qDESS echo, but the run was trained on"):
        issl.predict(
            run,
            root / "image_files" / "MTR_003.h5",
            output=tmp_path,
            key=echo,
            spacing=SPACING,
            progress=False,
        )


def _qdess_series(folder: Path, e1: np.ndarray, e2: np.ndarray) -> Path:
    """The two echoes (``(X, Y, Z)``) as the scanner exports a qDESS series: one DICOM file per echo
    and slice, both echoes at every position, told apart by EchoTime (and EchoNumbers)."""
    from pydicom.uid import generate_uid

    from dicom_helpers import write_single_frame

    folder.mkdir(parents=True)
    uid = generate_uid()
    for e, (echo, te) in enumerate(((e1, 6.0), (e2, 34.5))):
        for k in range(echo.shape[2]):
            write_single_frame(
                folder / f"IM{e}{k:03d}.dcm",
                echo[:, :, k],
                modality="MR",
                position=(0.0, 0.0, SPACING[2] * k),
                instance=e * echo.shape[2] + k + 1,
                pixel_spacing=SPACING[:2],
                thickness=SPACING[2],
                identity={"SeriesInstanceUID": uid, "EchoTime": f"{te:g}", "EchoNumbers": e + 1},
            )
    return folder


def test_the_scanners_qdess_series_is_read_as_the_root_sum_of_squares_of_its_echoes(
    skmtea_run: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("pydicom")
    root, run = skmtea_run
    scan = root / "image_files" / "MTR_003.h5"
    with h5py.File(scan) as f:
        e1, e2 = (np.asarray(f[key]) for key in ("echo1", "echo2"))
    series = _qdess_series(tmp_path / "qdess", e1, e2)
    from_dicom = issl.predict(run, series, output=tmp_path / "dicom", progress=False, probabilities=True)
    from_h5 = issl.predict(
        run, scan, output=tmp_path / "h5", spacing=SPACING, progress=False, probabilities=True
    )
    dicom_prob, h5_prob = (r.cases[0].probabilities for r in (from_dicom, from_h5))
    assert dicom_prob is not None and h5_prob is not None
    assert np.array_equal(np.asarray(nib.load(dicom_prob).dataobj), np.asarray(nib.load(h5_prob).dataobj))
    assert np.array_equal(_labels(tmp_path / "dicom"), _labels(tmp_path / "h5"))
    # One echo alone is another image: asked for, it is refused before anything is predicted.
    with pytest.raises(ValueError, match="echo=1: the run trained on the root-sum-of-squares"):
        issl.predict(run, series, output=tmp_path / "one", progress=False, echo=1)
