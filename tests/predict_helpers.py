"""``predict`` as the inference tests call it: on the CPU, quietly, about a tiny run."""

from __future__ import annotations

import warnings
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
