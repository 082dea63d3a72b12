"""The predictions on disk: NIfTI label maps, ``volumes.csv``, and the all-or-nothing move into ``output``.

:func:`nifti_image` puts a label (or probability) map on its input's affine and header and
:func:`save_nifti` writes it atomically; :func:`volumes_ml` and :func:`volumes_csv` measure and
tabulate each case's class volumes; :func:`commit` moves the staged files into ``output`` so that a
failure leaves it as it was; :func:`check_output` refuses an ``output`` that cannot become a folder.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.atomic import atomic_path, fsync_dir, give_plain_permissions, temporary_prefix
from inpaintssl.data.readers import import_optional
from inpaintssl.inference.inputs import Geometry
from inpaintssl.inference.results import CasePrediction, PredictionError
from inpaintssl.metrics import tissue_volume

__all__ = ["check_output", "commit", "nifti_image", "save_nifti", "volumes_csv", "volumes_ml"]


def nifti_image(data: np.ndarray, geometry: Geometry, *, dtype: type[np.generic]) -> Any:
    """``data`` as a NIfTI image of ``dtype`` on its input's affine (and header, where it had one)."""
    nib = import_optional("nibabel", extra="nifti", purpose="writing NIfTI predictions")
    header = None if geometry.header is None else geometry.header.copy()
    image = nib.Nifti1Image(data.astype(dtype, copy=False), geometry.affine, header=header)
    image.header.set_data_dtype(dtype)
    # The input's intensity scaling and display range describe the scan, not these values.
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0.0, 0.0
    if geometry.header is None and geometry.qform_code is not None:
        image.set_qform(geometry.affine, code=geometry.qform_code)
        image.set_sform(geometry.affine, code=geometry.qform_code)
    return image


def save_nifti(image: Any, target: Path) -> None:
    """Write ``image`` to ``target`` (a ``.nii.gz`` name) atomically."""
    nib = import_optional("nibabel", extra="nifti", purpose="writing NIfTI predictions")
    with atomic_path(target) as tmp:
        # nibabel picks the format from the suffix, so save under the real name, then move.
        named = tmp.with_name(tmp.name + ".nii.gz")
        try:
            nib.save(image, named)
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)


def volumes_ml(
    labels: np.ndarray, zooms: tuple[float, float, float], names: Sequence[str]
) -> dict[str, float]:
    """Each class's volume in mL: its voxels in ``labels`` (``k + 1`` for ``names[k]``) x the voxel volume."""
    mask_3d = labels if labels.ndim == 3 else labels[..., None]
    return {name: tissue_volume(mask_3d == k + 1, zooms) / 1000.0 for k, name in enumerate(names)}


def volumes_csv(cases: Sequence[CasePrediction], names: Sequence[str]) -> str:
    """``volumes.csv``: one row per case, its class volumes in mL and then its checks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # After the volumes, the checks a reader of many rows wants beside them (see CasePrediction).
    checks = [
        "in_plane_spacing_mm",
        "spacing_fits_training",
        "cut_edge_share",
        "orientation",
        "reoriented_to",
        "resampled_to_mm",
    ]
    writer.writerow(["case", "file", *(f"{n}_ml" for n in names), *checks])
    for c in cases:
        spacing = "" if c.spacing_mm is None else f"{c.spacing_mm[0]:.6g}x{c.spacing_mm[1]:.6g}"
        fits = "" if c.spacing_fits_training is None else str(c.spacing_fits_training).lower()
        volumes = (repr(c.volumes_ml[n]) for n in names)
        resampled = (
            "" if c.resampled_to_mm is None else f"{c.resampled_to_mm[0]:.6g}x{c.resampled_to_mm[1]:.6g}"
        )
        orientation = [c.orientation or "", c.reoriented_to or "", resampled]
        writer.writerow(
            [c.case, str(c.source), *volumes, spacing, fits, f"{c.cut_edge_share:.4g}", *orientation]
        )
    return buffer.getvalue()


def commit(staging: Path, output: Path) -> None:
    """Move the finished files into ``output``: one rename when it is new, else all or nothing.

    Into an existing folder, the files they replace are first set aside; if any move fails, the
    new files are taken out again and the old ones put back, so ``output`` is as it was.
    """
    give_plain_permissions(staging)
    if not output.exists():
        os.replace(staging, output)
        fsync_dir(output.parent)
        return
    # volumes.csv last: its presence says the case files it lists are all in place.
    names = sorted((p.name for p in staging.iterdir()), key=lambda n: (n == "volumes.csv", n))
    folders = [name for name in names if (output / name).is_dir() and not (output / name).is_symlink()]
    if folders:
        raise PredictionError(
            f"output {output} holds a folder {folders[0]!r} where a prediction file goes; expected a file "
            "or nothing there (nothing was written)"
        )
    aside = Path(tempfile.mkdtemp(prefix=temporary_prefix(output), suffix=".old.tmp", dir=output.parent))
    replaced: list[str] = []
    placed: list[str] = []
    try:
        for name in names:
            if (output / name).exists() or (output / name).is_symlink():
                os.replace(output / name, aside / name)
                replaced.append(name)
            os.replace(staging / name, output / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            (output / name).unlink(missing_ok=True)
        for name in replaced:
            os.replace(aside / name, output / name)
        aside.rmdir()
        raise
    fsync_dir(output)
    shutil.rmtree(aside)
    staging.rmdir()


def check_output(output: Path) -> None:
    """Refuse an ``output`` that is a file, or a symbolic link to nothing, before any case runs.

    Raises:
        PredictionError: Naming what ``output`` is.
    """
    if output.is_symlink() and not output.exists():
        # Caught here because the final rename onto a dangling link would fail only after every case ran.
        raise PredictionError(
            f"output {output} is a symbolic link to {os.readlink(output)}, which does not exist; expected "
            "a folder (new or existing): create the link's target or choose another output"
        )
    if output.exists() and not output.is_dir():
        raise PredictionError(f"output {output} is a file; expected a folder (new or existing)")
