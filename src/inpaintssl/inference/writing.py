"""The predictions on disk: label maps, ``volumes.csv``, and the all-or-nothing move into ``output``.

:func:`nifti_image` puts a label (or probability) map on its input's affine and header and
:func:`save_nifti` writes it atomically; :func:`save_volume` writes one in the case's
:data:`OUTPUT_FORMATS` (NIfTI, or MetaImage and NRRD through :mod:`inpaintssl.data.writers`;
DICOM SEG through :mod:`~inpaintssl.inference.dicom_seg`, which needs the series itself),
and :func:`file_format_for` picks that format, the input's own with ``output_format="input"``;
:func:`volumes_ml` and :func:`volumes_csv` measure and
tabulate each case's class volumes; :func:`staging_folder` gives the hidden folder beside ``output``
that the files are written into, and :func:`commit` moves them into ``output`` so that a failure
leaves it as it was; :func:`check_output` refuses an ``output`` that cannot become a folder.

A predict killed while it writes leaves its staging folder, ``.<output name>.<8 random
characters>.predict.tmp``. Like :mod:`inpaintssl.atomic`'s temporaries, the folder is locked
(``flock`` on the folder itself) while its predict runs, and the operating system releases the lock
when the process dies: the next predict into the same ``output`` removes the folders nobody holds
(:func:`remove_stale_staging`), never a running predict's, nor a user's file or folder of another
name. A folder that holds finished cases' records (:mod:`~inpaintssl.inference.resume`) is
instead taken over by the next predict of the same prediction, which predicts only the rest.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from inpaintssl.atomic import (
    CLAIM_TRIES,
    TEMPORARY_TOKEN,
    atomic_path,
    claim_temporary,
    fsync_dir,
    give_plain_permissions,
    lock_if_unused,
    matching_entries,
    remove_unlocked,
    temporary_prefix,
    write_error,
)
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.metaimage import MetaImageVolume
from inpaintssl.data.nrrd import NrrdVolume
from inpaintssl.data.readers import Volume, affine_zooms, pixdim_agrees
from inpaintssl.data.writers import lps_columns, write_metaimage, write_nrrd
from inpaintssl.extras import import_optional
from inpaintssl.inference.dicom_seg import check_dicom_seg_source
from inpaintssl.inference.inputs import Geometry
from inpaintssl.inference.results import CasePrediction, PredictionError
from inpaintssl.inference.resume import holds_records
from inpaintssl.inference.rtstruct import check_rtstruct_source
from inpaintssl.inference.skipping import SKIPPED_CSV, merged_skipped_table
from inpaintssl.inference.volume_table import VOLUMES_CSV, cases_in, merged_volume_table, output_table_text
from inpaintssl.metrics import tissue_volume

__all__ = [
    "OUTPUT_FORMATS",
    "STAGING_SUFFIX",
    "VOLUME_FORMATS",
    "OutputFormat",
    "check_output",
    "check_writable",
    "commit",
    "file_format_for",
    "nifti_image",
    "remove_stale_staging",
    "save_nifti",
    "save_volume",
    "staging_folder",
    "volumes_csv",
    "volumes_ml",
]

OutputFormat = Literal["nifti", "metaimage", "nrrd", "dicom_seg", "rtstruct", "input"]
"""What ``predict(output_format=...)`` takes: a format of :data:`OUTPUT_FORMATS`, or ``input``."""

OUTPUT_FORMATS: Mapping[str, str] = MappingProxyType(
    {"nifti": ".nii.gz", "metaimage": ".mha", "nrrd": ".nrrd", "dicom_seg": ".dcm", "rtstruct": ".dcm"}
)
"""The formats label maps are written in -> the suffix of their files (``<case>_seg.mha``)."""

VOLUME_FORMATS = ("nifti", "metaimage", "nrrd")
"""The formats of :data:`OUTPUT_FORMATS` that hold a map by itself, with its geometry
(:func:`save_volume`); the others reference the DICOM series the map was predicted on."""

STAGING_SUFFIX = ".predict.tmp"
"""How the name of the hidden folder a predict writes its files into ends (see the module docstring)."""

# Opening a folder's own descriptor (to lock it) must not open a file or follow a link instead.
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

log = logging.getLogger(__name__)


_SHEAR_TOLERANCE = 1e-3
"""Largest cosine between two axes of an affine still taken as perpendicular: above the rounding of
DICOM's direction cosines and positions, below any real gantry tilt (1 degree gives 0.017)."""


def _has_shear(affine: np.ndarray) -> bool:
    """Whether the axes of ``affine`` (its first three columns) are not mutually perpendicular.

    A gantry-tilted CT series steps from slice to slice off the slice normal: its affine is sheared.

    Example:
        >>> tilt = np.tan(np.deg2rad(15))
        >>> _has_shear(np.diag([0.7, 0.9, 2.5, 1.0])), _has_shear(np.array(
        ...     [[0.7, 0, 0, 0], [0, 0.9, 2.5 * tilt, 0], [0, 0, 2.5, 0], [0, 0, 0, 1]]))
        (False, True)
    """
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if not np.all(norms > 0):
        return False  # singular: a zero column has no direction to compare
    directions = columns / norms
    cosines = directions.T @ directions - np.eye(3)
    return bool(np.max(np.abs(cosines)) > _SHEAR_TOLERANCE)


def _zooms_to_affine(header: Any, affine: np.ndarray) -> None:
    """Set ``header``'s voxel sizes (``pixdim``) to the lengths of ``affine``'s columns where they disagree.

    Disagree as the reader judges it (more than 1 % apart), so that a consistent file's ``pixdim``
    is copied bit for bit, and the label map is measured as its input was. A singular affine (a zero
    column) has no voxel size to give: its ``pixdim`` is kept, as the reader keeps it.

    Example:
        >>> import nibabel as nib
        >>> header = nib.Nifti1Header()
        >>> header.set_data_shape((4, 4, 2))
        >>> _zooms_to_affine(header, np.diag([0.5, 0.5, 2.0, 1.0]))
        >>> tuple(float(z) for z in header.get_zooms())
        (0.5, 0.5, 2.0)
    """
    zooms = tuple(float(z) for z in header.get_zooms())
    count = min(len(zooms), 3)
    lengths = affine_zooms(affine, count)
    if not all(math.isfinite(a) and a > 0 for a in lengths) or pixdim_agrees(lengths, zooms[:count]):
        return
    header.set_zooms((*lengths, *zooms[count:]))


def nifti_image(data: np.ndarray, geometry: Geometry, *, dtype: type[np.generic]) -> Any:
    """``data`` as a NIfTI image of ``dtype`` on its input's affine (and header, where it had one).

    A copied header's voxel sizes (``pixdim``) are set to the affine's where the two disagree (a
    stale ``pixdim`` the reader warned about and measured around). Without a header to copy (a DICOM
    series, a NumPy/HDF5 array), the sform and qform get ``geometry.qform_code``, except that the
    qform of a sheared affine (a gantry-tilted CT series) is coded 0 (unknown); ``pixdim`` holds
    the affine's voxel sizes, which readers fall back to where both codes are 0.
    """
    nib = import_optional("nibabel", extra="nifti", purpose="writing NIfTI predictions")
    header = None if geometry.header is None else geometry.header.copy()
    image = nib.Nifti1Image(data.astype(dtype, copy=False), geometry.affine, header=header)
    image.header.set_data_dtype(dtype)
    # The input's intensity scaling and display range describe the scan, not these values.
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0.0, 0.0
    if int(image.header["intent_code"]) != 0:
        # Nor does its intent: a vector image's (X, Y, Z, 1, C) would mark a label map as vectors.
        image.header.set_intent("none")
    if geometry.header is not None:
        # nibabel rewrites a header's pixdim only when the affine differs from the header's own; a
        # stale pixdim beside a right sform would be copied, and readers of pixdim misled.
        _zooms_to_affine(image.header, geometry.affine)
    if geometry.header is None and geometry.qform_code is not None:
        # A qform is a rotation, zooms and a shift: nibabel fits the nearest one to a sheared affine
        # (a gantry-tilted CT), millimetres off at the far slices, and ITK-based viewers may prefer
        # the qform. Coded 0 it is ignored, and every reader takes the exact sform.
        qform_code = 0 if _has_shear(geometry.affine) else geometry.qform_code
        image.set_qform(geometry.affine, code=qform_code)
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


def file_format_for(volume: Volume, output_format: OutputFormat) -> str:
    """The format of :data:`OUTPUT_FORMATS` a case's label map is written in.

    ``output_format`` itself, or with ``input`` the input's own kind: a MetaImage scan's label map
    is an ``.mha`` (also for an ``.mhd`` scan), an NRRD scan's an ``.nrrd`` (also for an
    ``.nhdr``), a DICOM series' a DICOM SEG (:mod:`~inpaintssl.inference.dicom_seg`); NIfTI for
    every other input (NIfTI, NumPy, HDF5).
    """
    if output_format != "input":
        return output_format
    if isinstance(volume, MetaImageVolume):
        return "metaimage"
    if isinstance(volume, NrrdVolume):
        return "nrrd"
    if isinstance(volume, DicomVolume):
        return "dicom_seg"
    return "nifti"


def check_writable(volume: Volume, geometry: Geometry, file_format: str, *, source: Path) -> None:
    """Refuse, before any case is predicted, an input its label map's format cannot describe.

    MetaImage and NRRD give every array axis a direction: an affine with a column of length 0
    (which a NIfTI header may hold, and a NIfTI label map copies) has none. A DICOM SEG references
    a DICOM series that identifies its study and frame of reference
    (:func:`~inpaintssl.inference.dicom_seg.check_dicom_seg_source`); an RT Structure Set one that
    also states its patient geometry (:func:`~inpaintssl.inference.rtstruct.check_rtstruct_source`).

    Raises:
        PredictionError: Naming the input, and what its format lacks (for ``dicom_seg``, also
            highdicom, where the ``dicom-seg`` extra is not installed).
    """
    if file_format == "dicom_seg":
        check_dicom_seg_source(volume, source=source)
        return
    if file_format == "rtstruct":
        check_rtstruct_source(volume, source=source)
        return
    if file_format == "nifti":
        return
    try:
        lps_columns(geometry.affine)
    except ValueError as exc:
        raise PredictionError(
            f"input {source}: its label map cannot be written as {file_format}: {exc}; write it as NIfTI "
            "(output_format='nifti', --output-format nifti)"
        ) from None


def save_volume(
    data: np.ndarray,
    geometry: Geometry,
    target: Path,
    *,
    file_format: str,
    dtype: type[np.generic],
    channels: bool = False,
) -> None:
    """Write ``data`` (a label map, or with ``channels`` a channels-last probability map) to ``target``.

    In ``file_format`` (:data:`OUTPUT_FORMATS`), atomically, on the input's grid. NIfTI copies
    the input's header where it has one (:func:`nifti_image`); MetaImage and NRRD hold the
    geometry alone (:mod:`inpaintssl.data.writers`), the voxel sizes from ``geometry.zooms``, and a
    2-D input's map as a volume of one slice, ``(X, Y, 1)``, on its affine's third axis. A 2-D
    input's probability map is ``(X, Y, 1, K)`` in every format, as a volume's is ``(X, Y, Z, K)``:
    the classes after three spatial axes, never taken for slices.

    Raises:
        ValueError: ``dicom_seg`` or ``rtstruct``, which reference the series itself
            (:func:`~inpaintssl.inference.dicom_seg.write_dicom_seg`,
            :func:`~inpaintssl.inference.rtstruct.write_rtstruct`), or another unknown format.
    """
    if channels and data.ndim == 3:
        data = data[:, :, np.newaxis]
    if file_format == "nifti":
        save_nifti(nifti_image(data, geometry, dtype=dtype), target)
        return
    if file_format not in VOLUME_FORMATS:
        raise ValueError(
            f"save_volume: file_format={file_format!r}; expected 'nifti', 'metaimage' or 'nrrd' (a DICOM "
            "SEG or RT Structure Set is written from its series, by inference.dicom_seg.write_dicom_seg or "
            "inference.rtstruct.write_rtstruct)"
        )
    array = data.astype(dtype, copy=False)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    with atomic_path(target) as tmp, tmp.open("wb") as stream:
        if file_format == "metaimage":
            write_metaimage(stream, array, affine=geometry.affine, spacing=geometry.zooms)
        else:  # nrrd
            write_nrrd(stream, array, affine=geometry.affine)


def volumes_ml(
    labels: np.ndarray, zooms: tuple[float, float, float], names: Sequence[str]
) -> dict[str, float]:
    """Each class's volume in mL: its voxels in ``labels`` (``k + 1`` for ``names[k]``) x the voxel volume."""
    mask_3d = labels if labels.ndim == 3 else labels[..., None]
    return {name: tissue_volume(mask_3d == k + 1, zooms) / 1000.0 for k, name in enumerate(names)}


def volumes_csv(cases: Sequence[CasePrediction], names: Sequence[str], *, model: Path | None = None) -> str:
    """``volumes.csv``: one row per case, its class volumes in mL, then its checks, then the ``model``
    that predicted it (the run or checkpoint folder, or exported file; absolute), which tells the
    rows of one table apart once predicts of several models merged into it
    (:mod:`~inpaintssl.inference.volume_table`)."""
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
    # Mean T2 only where it was fitted (predict(t2=True)): the columns of other calls stay as they were.
    with_t2 = any(c.mean_t2_ms is not None for c in cases)
    t2_columns = [f"{n}_t2_ms" for n in names] if with_t2 else []
    writer.writerow(["case", "file", *(f"{n}_ml" for n in names), *t2_columns, *checks, "model"])
    model_text = "" if model is None else os.path.abspath(model)
    for c in cases:
        spacing = "" if c.spacing_mm is None else f"{c.spacing_mm[0]:.6g}x{c.spacing_mm[1]:.6g}"
        fits = "" if c.spacing_fits_training is None else str(c.spacing_fits_training).lower()
        volumes = (repr(c.volumes_ml[n]) for n in names)
        resampled = (
            "" if c.resampled_to_mm is None else f"{c.resampled_to_mm[0]:.6g}x{c.resampled_to_mm[1]:.6g}"
        )
        orientation = [c.orientation or "", c.reoriented_to or "", resampled]
        t2 = [repr(c.mean_t2_ms[n]) if c.mean_t2_ms is not None else "" for n in names] if with_t2 else []
        writer.writerow(
            [
                c.case,
                str(c.source),
                *volumes,
                *t2,
                spacing,
                fits,
                f"{c.cut_edge_share:.4g}",
                *orientation,
                model_text,
            ]
        )
    return buffer.getvalue()


@contextlib.contextmanager
def _commit_lock(output: Path) -> Iterator[None]:
    """Hold the commits into ``output`` (and into its parent's other outputs) to one at a time.

    The lock is ``flock`` on ``output``'s parent folder, which a commit never removes (``output``
    itself may not exist yet): two predicts that found no ``output`` would otherwise both rename
    their staging folder onto it, and two that found one would each merge ``volumes.csv`` without
    the other's rows. Where the file system has no locks (and on Windows) commits run unheld, as
    they did before.
    """
    if sys.platform == "win32":
        yield
        return
    import fcntl

    fd = os.open(output.parent, os.O_RDONLY | _O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # no locks here
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the lock


def _merge_tables(staging: Path, output: Path) -> None:
    """Merge the ``volumes.csv`` and ``skipped.csv`` in ``output`` into those in ``staging``
    (:mod:`.volume_table`, :func:`~inpaintssl.inference.skipping.merged_skipped_table`)."""
    new = staging / VOLUMES_CSV
    if not new.is_file():
        return
    table = new.read_text(encoding="utf-8")
    earlier = output / VOLUMES_CSV
    if earlier.is_file():
        merged = merged_volume_table(output_table_text(earlier), table, where=str(earlier))
        with atomic_path(new) as temporary:
            temporary.write_text(merged, encoding="utf-8")
    earlier = output / SKIPPED_CSV
    if earlier.is_file():
        skipped = staging / SKIPPED_CSV
        left_out = skipped.read_text(encoding="utf-8") if skipped.is_file() else None
        merged = merged_skipped_table(
            output_table_text(earlier), left_out, cases_in(table), where=str(earlier)
        )
        with atomic_path(skipped) as temporary:
            temporary.write_text(merged, encoding="utf-8")


def commit(staging: Path, output: Path) -> None:
    """Move the finished files into ``output``: one rename when it is new, else all or nothing.

    Into an existing folder, the files they replace are first set aside; if any move fails, the
    new files are taken out again and the old ones put back, so ``output`` is as it was. A
    ``volumes.csv`` there keeps the rows of the cases not predicted now
    (:mod:`~inpaintssl.inference.volume_table`), a ``skipped.csv`` those of the inputs left out
    and not predicted since. Commits into one output run one at a time.
    """
    give_plain_permissions(staging)
    with _commit_lock(output):
        if not output.exists():
            os.replace(staging, output)
            fsync_dir(output.parent)
            return
        _merge_tables(staging, output)
        _move_into(staging, output)


def _move_into(staging: Path, output: Path) -> None:
    """Move every file of ``staging`` into the existing folder ``output``, all or nothing."""
    # volumes.csv last: its presence says the case files it lists are all in place.
    names = sorted((p.name for p in staging.iterdir()), key=lambda n: (n == VOLUMES_CSV, n))
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


def _staging_name(output: Path) -> re.Pattern[str]:
    """The names :func:`staging_folder` gives the folders of predicts into ``output``, and no others."""
    return re.compile(re.escape(temporary_prefix(output)) + TEMPORARY_TOKEN + re.escape(STAGING_SUFFIX))


def remove_stale_staging(output: Path) -> list[Path]:
    """Remove the staging folders that killed predicts into ``output`` left beside it; return them.

    Only folders named as :func:`staging_folder` names them (``.<name>.<8 random
    characters>.predict.tmp``; no file, no link) are candidates, and of those only the ones no live
    predict holds locked: a user's own files and folders, and a concurrent predict's folder, are
    never touched. Where the file system has no locks (and on Windows) nothing is removed.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / ".preds.k2x9ab_7.predict.tmp").mkdir()
        >>> (root / ".preds.notes.predict.tmp").mkdir()
        >>> [p.name for p in remove_stale_staging(root / "preds")]
        ['.preds.k2x9ab_7.predict.tmp']
        >>> sorted(p.name for p in root.iterdir())
        ['.preds.notes.predict.tmp']
    """
    return remove_unlocked(output.parent, _staging_name(output), folders=True)


def _locked_staging(output: Path) -> tuple[int | None, Path]:
    """A new staging folder for ``output``, and the open descriptor holding its predict's lock."""
    for _ in range(CLAIM_TRIES):
        staging = Path(
            tempfile.mkdtemp(prefix=temporary_prefix(output), suffix=STAGING_SUFFIX, dir=output.parent)
        )
        if sys.platform == "win32":
            return None, staging  # no flock; nor does anything sweep there
        try:
            fd = os.open(staging, os.O_RDONLY | _O_DIRECTORY)
        except FileNotFoundError:
            continue  # a concurrent sweep took it before it was locked
        if claim_temporary(fd, str(staging)):
            return fd, staging
        os.close(fd)  # the sweep that claimed it removes it
    raise OSError(errno.EAGAIN, f"{CLAIM_TRIES} staging folders were removed by concurrent sweeps")


def _adopted_staging(output: Path, identity: str) -> tuple[int, Path] | None:
    """A staging folder an interrupted predict left for ``output`` holding records of ``identity``, locked.

    Only a folder this process locks itself (``flock``, then checked to be still the folder that
    was opened) is taken: a live predict's is never shared. Where the file system has no locks
    (and on Windows) none is taken.
    """
    if sys.platform == "win32":
        return None
    for path in matching_entries(output.parent, _staging_name(output)):
        fd = lock_if_unused(path, folder=True)
        if fd is None:
            continue  # held by a live predict, a link or a file, gone, or no locks here
        if holds_records(path, identity):
            return fd, path
        os.close(fd)
    return None


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) while empty: one another process wrote into stays,
    and with it every folder above."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def staging_folder(output: Path, *, resume: str | None = None) -> Iterator[Path]:
    """A hidden folder beside ``output`` to write predictions into, locked while the block runs.

    First removes what killed predicts into ``output`` left (:func:`remove_stale_staging`). The
    folder is removed when the block raises; on success :func:`commit` has moved its files into
    ``output`` (or the folder itself, as ``output``).

    With ``resume`` (a :func:`~inpaintssl.inference.resume.prediction_identity`), a folder an
    interrupted predict left holding records of that identity is taken over instead of a new
    one (:mod:`~inpaintssl.inference.resume`), and the folder is kept, unlocked, when the block
    raises after a case was recorded, for the next predict to take over in turn.

    Folders above ``output`` that it had to create are removed again with it, while empty.

    Raises:
        OSError: The folder cannot be created; the message names ``output``.
    """
    adopted = _adopted_staging(output, resume) if resume is not None else None
    for path in remove_stale_staging(output):
        log.info("removed %s, left by an interrupted predict", path)
    # The folders above output this predict creates, deepest first: a failed predict removes them
    # again (while empty), as it leaves nothing else behind.
    created = (
        [] if adopted is not None else [p for p in (output.parent, *output.parent.parents) if not p.exists()]
    )
    try:
        if adopted is None:
            output.parent.mkdir(parents=True, exist_ok=True)
        lock, staging = adopted if adopted is not None else _locked_staging(output)
    except OSError as exc:
        _remove_if_empty(created)
        raise write_error(f"predictions to {output}", exc) from exc
    try:
        yield staging
    except BaseException:
        if resume is not None and lock is not None and holds_records(staging, resume):
            log.warning(
                "kept the cases predicted so far in %s: the next predict into %s with the same model and "
                "options takes them (their inputs unchanged) instead of predicting them again",
                staging,
                output,
            )
        else:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_if_empty(created)
        raise
    finally:
        if lock is not None:
            os.close(lock)  # and with it the lock, once the files are in place or gone
