"""``predict`` as the inference tests call it: on the CPU, quietly, about a tiny run."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.inference.predict import PredictionReport, predict


def predict_quietly(run: Path, inputs: Any, out: Path, **options: Any) -> PredictionReport:
    """``predict(run, inputs, output=out, **options)`` on the CPU, without its progress bar.

    The tiny runs' spacing and orientation warnings are not what the tests look at: ignored here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return predict(run, inputs, output=out, device="cpu", progress=False, **options)


def predict_command_quietly(run: Path, inputs: Sequence[Path], out: Path, *flags: str) -> int:
    """The exit status of ``inpaintssl predict RUN INPUTS... --output OUT --device cpu --quiet FLAGS``,
    its warnings ignored as :func:`predict_quietly` ignores them."""
    from inpaintssl.cli import main as cli_main

    argv = [
        "predict",
        str(run),
        *(str(p) for p in inputs),
        "--output",
        str(out),
        "--device",
        "cpu",
        "--quiet",
        *flags,
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return cli_main(argv)


def written_nifti(path: Path | None) -> np.ndarray:
    """The array of a NIfTI map predict wrote (a case's ``segmentation``, ``probabilities`` or
    ``t2_map``); fails where it wrote none."""
    import nibabel as nib

    assert path is not None, "predict wrote no such map"
    return np.asarray(nib.load(path).dataobj)


def written_niftis(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every NIfTI map predict wrote into ``folder``: file name -> (array, affine), by name."""
    import nibabel as nib

    found = {}
    for path in sorted(folder.glob("*.nii.gz")):
        image = nib.load(path)
        found[path.name] = (np.asarray(image.dataobj), image.affine)
    return found


def assert_t2_outputs(
    report: PredictionReport, truth: np.ndarray, reference: np.ndarray, *, rtol: float
) -> None:
    """One case's T2 map and class means as ``predict(t2=True)`` must write them.

    The map lies on the label map's grid and affine, gives back ``truth`` (the T2 the echoes were
    written with) to ``rtol`` (the stored integers' rounding), and equals ``reference`` (the test's
    own computation from the stored echoes, in float64); each class's mean T2, in the report and
    in ``volumes.csv``, is the mean of ``reference`` over the voxels the written label map gives it.
    """
    import csv

    import nibabel as nib

    (case,) = report.cases
    assert case.t2_map == report.output / f"{case.case}_t2.nii.gz"
    t2_image, seg_image = nib.load(case.t2_map), nib.load(case.segmentation)
    t2 = np.asarray(t2_image.dataobj)
    assert t2.dtype == np.float32 and t2.shape == truth.shape
    np.testing.assert_allclose(t2_image.affine, seg_image.affine)
    np.testing.assert_allclose(t2, truth, rtol=rtol)
    np.testing.assert_allclose(t2, reference, rtol=1e-4)  # float32 against float64
    labels = np.asarray(seg_image.dataobj)
    assert labels.any(), "the tiny run labels nothing here: the means below would check nothing"
    with report.volumes_csv.open() as handle:
        (row,) = csv.DictReader(handle)
    assert case.mean_t2_ms is not None
    for k, name in enumerate(report.class_names):
        mask = labels == k + 1
        expected = float(reference[mask].mean()) if mask.any() else float("nan")
        np.testing.assert_allclose(case.mean_t2_ms[name], expected, rtol=1e-4)
        np.testing.assert_allclose(float(row[f"{name}_t2_ms"]), expected, rtol=1e-4)


def plain_slice_preprocessing() -> Any:
    """The ``SlicePreprocessing`` ``predict`` reads inputs with for a run of the ``nifti`` dataset's
    defaults: axis 2, per-volume z-scoring, no resizing, as stored."""
    from inpaintssl.inference.trained_run import SlicePreprocessing

    return SlicePreprocessing(
        slice_axis=2,
        normalize="volume",
        windows=None,
        hu_floor=-1024.0,
        image_size=None,
        resize_mode="crop_or_pad",
        display=False,
        orientation=None,
        training_orientations={},
    )
