"""The predictions on disk: label maps, ``volumes.csv``, and the all-or-nothing move into ``output``.

:func:`nifti_image` puts a label (or probability) map on its input's affine and header and
:func:`save_nifti` writes it atomically; :func:`save_volume` writes one in the case's
:data:`OUTPUT_FORMATS` (NIfTI, or MetaImage and NRRD through :mod:`inpaintssl.data.writers`;
DICOM SEG through :mod:`~inpaintssl.inference.dicom_seg`, which needs the series itself),
and :func:`file_format_for` picks that format, the input's own with ``output_format="input"``;
:func:`volumes_ml` and :func:`volumes_csv` measure and
tabulate each case's class volumes; :func:`staging_folder` gives the hidden folder beside ``output``
that the files are written into, and :func:`commit` moves them into ``output`` so that a failure
leaves it as it was, and takes out the files an earlier predict wrote for the cases predicted again
that this one does not write (:func:`case_output_names`); :func:`check_output` refuses an
``output`` that cannot become a folder, :func:`check_not_inputs` one where a case's files would
replace an input.

A predict killed while it writes leaves its staging folder, ``.<output name>.<8 random
characters>.predict.tmp``. Like :mod:`inpaintssl.atomic`'s temporaries, the folder is locked
(``flock`` on the folder itself) while its predict runs, and the operating system releases the lock
when the process dies: the next predict into the same ``output`` removes the folders nobody holds
(:func:`remove_stale_staging`), never a running predict's, nor a user's file or folder of another
name. A folder that holds finished cases' records (:mod:`~inpaintssl.inference.resume`) is
instead taken over by the next predict of the same prediction, which predicts only the rest.

Into an existing ``output``, :func:`commit` first sets the files it replaces aside in another
hidden folder, ``.<output name>.<8 random characters>.old.tmp``, locked the same way, with a
journal of the files it places where there were none. A predict killed while it moves its files
leaves that folder; the next predict into the same ``output`` (and every commit into it) puts the
set-aside files back and takes out the new ones the journal names
(:func:`restore_interrupted_commits`), so ``output`` is as it was before the killed commit.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from inpaintssl.atomic import (
    CLAIM_TRIES,
    TEMPORARY_TOKEN,
    atomic_path,
    atomic_write_text,
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
from inpaintssl.data.readers import Volume, affine_zooms, nifti_mm_per_unit, pixdim_agrees
from inpaintssl.data.writers import lps_columns, write_metaimage, write_nrrd
from inpaintssl.extras import import_optional
from inpaintssl.inference.dicom_seg import check_dicom_seg_source
from inpaintssl.inference.inputs import Geometry
from inpaintssl.inference.results import CasePrediction, PredictionError
from inpaintssl.inference.resume import holds_records
from inpaintssl.inference.rtstruct import check_rtstruct_source
from inpaintssl.inference.skipping import SKIPPED_CSV, merged_skipped_table
from inpaintssl.inference.volume_table import (
    VOLUMES_CSV,
    case_inputs,
    cases_in,
    merged_volume_table,
    output_table_text,
    warn_if_other_inputs,
)
from inpaintssl.metrics import tissue_volume

__all__ = [
    "OUTPUT_FORMATS",
    "OUTPUT_KINDS",
    "STAGING_SUFFIX",
    "VOLUME_FORMATS",
    "OutputFormat",
    "case_output_names",
    "check_not_inputs",
    "check_output",
    "check_writable",
    "commit",
    "file_format_for",
    "nifti_image",
    "remove_stale_staging",
    "restore_interrupted_commits",
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

OUTPUT_KINDS = ("seg", "prob", "t2")
"""The maps a predict writes for a case, ``<case>_<kind><suffix>``: the label map, the probabilities,
the T2 map."""

STAGING_SUFFIX = ".predict.tmp"
"""How the name of the hidden folder a predict writes its files into ends (see the module docstring)."""

_ASIDE_SUFFIX = ".old.tmp"
"""How the name of the hidden folder :func:`commit` sets replaced files aside in ends."""
_ASIDE_FILES = "old"
"""The folder, in a set-aside folder, that holds the files set aside (under their names in ``output``)."""
_JOURNAL = "journal.json"
"""The file, in a set-aside folder, that names the files placed where there were none, and the
``output`` folder; there while the commit moves files, gone once all of them are in place."""

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
        lps_columns(_millimetre_affine(geometry, path=source))
    except ValueError as exc:
        raise PredictionError(
            f"input {source}: its label map cannot be written as {file_format}: {exc}; write it as NIfTI "
            "(output_format='nifti', --output-format nifti)"
        ) from None


def _millimetre_affine(geometry: Geometry, *, path: Path) -> np.ndarray:
    """``geometry``'s affine in millimetres, as MetaImage and NRRD files state their geometry.

    A NIfTI input's affine is in its file's own spatial unit (``xyzt_units``: metres, microns),
    which the NIfTI label map copied from its header keeps; MetaImage and NRRD have no unit field
    and are read as millimetres (a scan in metres would get a label map 1000 times too small), so
    it is scaled by the header's millimetres per unit
    (:func:`~inpaintssl.data.readers.nifti_mm_per_unit`); every other input's affine (no NIfTI
    header) is in millimetres already.

    Args:
        geometry: The case's geometry.
        path: The input, for messages.

    Example:
        >>> import nibabel as nib
        >>> header = nib.Nifti1Header()
        >>> header.set_xyzt_units("meter")
        >>> geometry = Geometry(np.diag([0.0005, 0.0005, 0.002, 1.0]), header, (0.5, 0.5, 2.0))
        >>> np.diag(_millimetre_affine(geometry, path=Path("scan.nii"))).tolist()
        [0.5, 0.5, 2.0, 1.0]
    """
    affine: np.ndarray = np.asarray(geometry.affine, dtype=np.float64)
    if geometry.header is None:
        return affine
    scaled: np.ndarray = affine.copy()
    scaled[:3, :] *= nifti_mm_per_unit(geometry.header, path=path)  # the 3x4 part: steps and origin
    return scaled


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
    geometry alone (:mod:`inpaintssl.data.writers`), in millimetres (:func:`_millimetre_affine`: a
    NIfTI input's in metres or microns converted), the voxel sizes from ``geometry.zooms``, and a
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
    # The header's unit was checked when the input was read (NiftiVolume), so target, named in a
    # refusal that cannot come, stands in for the input this function is not given.
    affine = _millimetre_affine(geometry, path=target)
    with atomic_path(target) as tmp, tmp.open("wb") as stream:
        if file_format == "metaimage":
            write_metaimage(stream, array, affine=affine, spacing=geometry.zooms)
        else:  # nrrd
            write_nrrd(stream, array, affine=affine)


def volumes_ml(
    labels: np.ndarray,
    zooms: tuple[float, float, float],
    names: Sequence[str],
    *,
    voxel_mm3: float | None = None,
) -> dict[str, float]:
    """Each class's volume in mL: its voxels in ``labels`` (``k + 1`` for ``names[k]``) x the voxel volume.

    The voxel volume is the product of ``zooms``, or ``voxel_mm3`` where given (a sheared grid's:
    ``voxel_mm3`` of :class:`~inpaintssl.inference.inputs.Geometry`).

    Raises:
        ValueError: ``voxel_mm3`` not a finite number > 0.
    """
    mask_3d = labels if labels.ndim == 3 else labels[..., None]
    if voxel_mm3 is None:
        return {name: tissue_volume(mask_3d == k + 1, zooms) / 1000.0 for k, name in enumerate(names)}
    if not (math.isfinite(voxel_mm3) and voxel_mm3 > 0):
        raise ValueError(f"volumes_ml: voxel_mm3={voxel_mm3!r}; expected a finite voxel volume > 0 (mm^3)")
    return {
        name: float(np.count_nonzero(mask_3d == k + 1)) * voxel_mm3 / 1000.0 for k, name in enumerate(names)
    }


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

    The lock is ``flock`` on ``output``'s real parent folder (links resolved), which a commit
    never removes (``output`` itself may not exist yet): two predicts that found no ``output``
    would otherwise both rename their staging folder onto it, and two that found one would each
    merge ``volumes.csv`` without the other's rows. Where the file system has no locks (and on
    Windows) commits run unheld, as they did before.
    """
    if sys.platform == "win32":
        yield
        return
    import fcntl

    # The real folder above: predicts naming one output through a link and by its own path
    # locked two folders, and merged at the same time, each without the other's rows.
    fd = os.open(Path(os.path.realpath(output)).parent, os.O_RDONLY | _O_DIRECTORY)
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
        # Here, under the commit lock, not before predicting: a predict committing meanwhile into
        # the same folder may have written the row of a case of the same name from another input.
        warn_if_other_inputs(output, case_inputs(table))
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


def case_output_names(case: str) -> list[str]:
    """Every file name a predict writes for ``case``, in any of its formats: each of
    :data:`OUTPUT_KINDS` with each suffix of :data:`OUTPUT_FORMATS`.

    Example:
        >>> case_output_names("a")[:5]
        ['a_seg.nii.gz', 'a_seg.mha', 'a_seg.nrrd', 'a_seg.dcm', 'a_prob.nii.gz']
    """
    suffixes = dict.fromkeys(OUTPUT_FORMATS.values())
    return [f"{case}_{kind}{suffix}" for kind in OUTPUT_KINDS for suffix in suffixes]


def _entry(path: Path) -> Path:
    """``path`` as a folder entry: its folder resolved, its own name kept (a link is not followed)."""
    return path.parent.resolve() / path.name


def check_not_inputs(output: Path, cases: Sequence[tuple[str, Path]]) -> None:
    """Refuse, before any case is predicted, an ``output`` where a case's files would replace an input.

    Predicting into the inputs' own folder, an input named like another case's output
    (``a_seg.nii.gz`` beside ``a.nii.gz``, perhaps an earlier label map) would be replaced by case
    ``a``'s label map, or set aside as one of its earlier files (:func:`commit`). Every name of
    :func:`case_output_names` counts, whichever this predict writes.

    Args:
        output: The folder predicted into.
        cases: Each case's name and input path.

    Raises:
        PredictionError: Naming the output file, its case and the input it is.
    """
    inputs = {_entry(path): path for _, path in cases}
    folder = output.resolve()
    for case, _ in cases:
        for name in case_output_names(case):
            input_path = inputs.get(folder / name)
            if input_path is not None:
                raise PredictionError(
                    f"output {output / name} (a file of case {case!r}, which this predict writes, or takes "
                    f"out where an earlier predict wrote it) is the input {input_path}: the scan would be "
                    "replaced by a label map. Predict into another folder than the inputs', or rename the "
                    "input"
                )


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _stale_names(staging: Path, output: Path, cases: Collection[str]) -> list[str]:
    """The files of ``cases`` in ``output`` that an earlier predict wrote and this one does not.

    Left, they would lie beside the new label map as if they were this prediction's (the
    probabilities of another model, a label map in another format). Only cases that the
    ``volumes.csv`` in ``output`` lists count: those an earlier predict wrote files for. Folders are
    never taken.
    """
    earlier = output / VOLUMES_CSV
    if not cases or not earlier.is_file():
        return []
    listed = cases_in(output_table_text(earlier)).intersection(cases)
    written = {path.name for path in staging.iterdir()}
    stale: list[str] = []
    for case in sorted(listed):
        for name in case_output_names(case):
            path = output / name
            if name not in written and (path.is_symlink() or path.is_file()):
                stale.append(name)
    return stale


def commit(staging: Path, output: Path, *, cases: Collection[str] = ()) -> None:
    """Move the finished files into ``output``: one rename when it is new, else all or nothing.

    Into an existing folder, the files they replace are first set aside; if any move fails, the
    new files are taken out again and the old ones put back, so ``output`` is as it was. The
    files an earlier predict wrote there for ``cases`` (the cases predicted now) that this one did
    not write (:func:`case_output_names`: another format's label map, probabilities or a T2 map
    not asked for now) are set aside and removed with them. A ``volumes.csv`` there keeps the
    rows of the cases not predicted now (:mod:`~inpaintssl.inference.volume_table`), a
    ``skipped.csv`` those of the inputs left out and not predicted since. Commits into one output
    run one at a time, and first put back what a killed commit left set aside
    (:func:`restore_interrupted_commits`).
    """
    give_plain_permissions(staging)
    with _commit_lock(output):
        _restore_interrupted(output)
        if not output.exists():
            os.replace(staging, output)
            fsync_dir(output.parent)
            return
        stale = _stale_names(staging, output, cases)
        _merge_tables(staging, output)
        _move_into(staging, output, stale=stale)


def _aside_name(output: Path) -> re.Pattern[str]:
    """The names :func:`_move_into` gives its set-aside folders for ``output``, and no others."""
    return re.compile(re.escape(temporary_prefix(output)) + TEMPORARY_TOKEN + re.escape(_ASIDE_SUFFIX))


def _folder_identity(folder: Path) -> list[int]:
    stats = os.stat(folder)
    return [stats.st_dev, stats.st_ino]


def _move_into(staging: Path, output: Path, *, stale: Sequence[str] = ()) -> None:
    """Move every file of ``staging`` into the existing folder ``output``, and ``stale`` (names in
    ``output``) out of it, all or nothing; a kill midway is undone by the next commit
    (:func:`restore_interrupted_commits`)."""
    # volumes.csv last: its presence says the case files it lists are all in place.
    names = sorted((p.name for p in staging.iterdir()), key=lambda n: (n == VOLUMES_CSV, n))
    folders = [name for name in names if (output / name).is_dir() and not (output / name).is_symlink()]
    if folders:
        raise PredictionError(
            f"output {output} holds a folder {folders[0]!r} where a prediction file goes; expected a file "
            "or nothing there (nothing was written)"
        )
    lock, aside = _locked_folder(output, _ASIDE_SUFFIX)
    try:
        old = aside / _ASIDE_FILES
        try:
            old.mkdir()
            journal = {
                "output": _folder_identity(output),
                "new": [name for name in names if not _present(output / name)],
            }
            # Written (and synced) before anything moves: a kill from here on is undone from it.
            atomic_write_text(aside / _JOURNAL, json.dumps(journal))
        except BaseException:
            shutil.rmtree(aside, ignore_errors=True)
            raise
        replaced: list[str] = []
        placed: list[str] = []
        try:
            for name in stale:
                os.replace(output / name, old / name)
                replaced.append(name)
            for name in names:
                if _present(output / name):
                    os.replace(output / name, old / name)
                    replaced.append(name)
                os.replace(staging / name, output / name)
                placed.append(name)
            fsync_dir(output)
            # Every file in place: from here on a kill leaves nothing to undo.
            (aside / _JOURNAL).unlink()
        except BaseException:
            for name in placed:
                (output / name).unlink(missing_ok=True)
            for name in replaced:
                os.replace(old / name, output / name)
            shutil.rmtree(aside)
            raise
        shutil.rmtree(aside)
    finally:
        if lock is not None:
            os.close(lock)
    staging.rmdir()


def _plain_name(name: object) -> bool:
    """Whether a journal's entry is a file name in ``output`` (no path, nothing hidden behind ``..``)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and os.sep not in name


def _put_back(aside: Path, output: Path) -> bool:
    """Undo the killed commit whose set-aside folder is ``aside``; whether the folder may go.

    With its journal (the commit was moving files): the files set aside go back into ``output``,
    over the new ones, and the new files placed where there were none are taken out, while
    ``output`` is still the folder the journal names (else nothing is put back: it was removed or
    replaced since). Without it (every file was in place), nothing. A folder of an earlier
    version, its files set aside directly in it without a journal, has each put back where
    ``output`` lacks it, while ``output`` is a folder.
    """
    journal = aside / _JOURNAL
    old = aside / _ASIDE_FILES
    if journal.is_file():
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
            recorded, new = record["output"], record["new"]
        except (ValueError, KeyError, TypeError):
            log.warning(
                "left %s: its journal is damaged, so what to put back into %s is unknown", aside, output
            )
            return False
        try:
            same = output.is_dir() and _folder_identity(output) == recorded
        except OSError:
            same = False
        if not same:
            log.warning(
                "removed %s: it held files a killed predict had set aside from %s, which has been removed or "
                "replaced since",
                aside,
                output,
            )
            return True
        for entry in sorted(old.iterdir()) if old.is_dir() else []:
            os.replace(entry, output / entry.name)
        for name in new if isinstance(new, list) else []:
            if _plain_name(name) and not (output / name).is_dir():
                (output / name).unlink(missing_ok=True)
        fsync_dir(output)
        log.warning("put %s back as it was before a predict killed while moving its files in", output)
        return True
    if old.is_dir():
        return True  # the commit finished: what was set aside is replaced
    if not output.is_dir():
        return False
    for entry in sorted(aside.iterdir()):
        if not _present(output / entry.name):
            os.replace(entry, output / entry.name)
    fsync_dir(output)
    log.warning("put back into %s the files a killed predict had set aside in %s", output, aside)
    return True


def _restore_interrupted(output: Path) -> list[Path]:
    """:func:`restore_interrupted_commits`, the commit lock held by the caller."""
    if sys.platform == "win32":
        return []
    handled: list[Path] = []
    for path in matching_entries(output.parent, _aside_name(output)):
        fd = lock_if_unused(path, folder=True)
        if fd is None:
            continue  # a live commit holds it, a link or a file, gone, or no locks here
        try:
            if _put_back(path, output):
                shutil.rmtree(path)
                handled.append(path)
        except OSError as exc:
            log.warning(
                "could not put back into %s what a killed predict set aside in %s: %s", output, path, exc
            )
        finally:
            os.close(fd)
    return handled


def restore_interrupted_commits(output: Path) -> list[Path]:
    """Undo the commits into ``output`` that were killed while they moved files; return their folders.

    A commit into an existing ``output`` sets the files it replaces aside in a hidden folder
    beside it (``.<name>.<8 random characters>.old.tmp``), locked while it runs, with a journal of
    the new files it places where there were none. Of the folders no live commit holds, each with
    a journal has its files put back and the new ones it names taken out, so ``output`` is as it
    was before that commit, then is removed; one without (its commit finished) is removed. Runs
    under the commits' lock. Where the file system has no locks (and on Windows) nothing is done.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "preds").mkdir()
        >>> _ = (root / "preds" / "volumes.csv").write_text("new")
        >>> aside = root / ".preds.k2x9ab_7.old.tmp"
        >>> (aside / "old").mkdir(parents=True)
        >>> _ = (aside / "old" / "a_seg.nii.gz").write_text("old")
        >>> identity = [(root / "preds").stat().st_dev, (root / "preds").stat().st_ino]
        >>> _ = (aside / "journal.json").write_text(json.dumps({"output": identity, "new": ["volumes.csv"]}))
        >>> [p.name for p in restore_interrupted_commits(root / "preds")]
        ['.preds.k2x9ab_7.old.tmp']
        >>> sorted(p.name for p in (root / "preds").iterdir()), sorted(p.name for p in root.iterdir())
        (['a_seg.nii.gz'], ['preds'])
    """
    if sys.platform == "win32" or not matching_entries(output.parent, _aside_name(output)):
        return []
    with _commit_lock(output):
        return _restore_interrupted(output)


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


def _locked_folder(output: Path, suffix: str) -> tuple[int | None, Path]:
    """A new hidden folder beside ``output`` whose name ends with ``suffix`` (a staging or
    set-aside folder), and the open descriptor holding its process's lock."""
    for _ in range(CLAIM_TRIES):
        folder = Path(tempfile.mkdtemp(prefix=temporary_prefix(output), suffix=suffix, dir=output.parent))
        if sys.platform == "win32":
            return None, folder  # no flock; nor does anything sweep there
        try:
            fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY)
        except FileNotFoundError:
            continue  # a concurrent sweep took it before it was locked
        if claim_temporary(fd, str(folder)):
            return fd, folder
        os.close(fd)  # the sweep that claimed it removes it
    raise OSError(
        errno.EAGAIN, f"{CLAIM_TRIES} hidden folders for {output} were removed by concurrent sweeps"
    )


def _locked_staging(output: Path) -> tuple[int | None, Path]:
    """A new staging folder for ``output``, and the open descriptor holding its predict's lock."""
    return _locked_folder(output, STAGING_SUFFIX)


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
