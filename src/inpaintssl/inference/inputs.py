"""The scans given to :func:`~inpaintssl.inference.predict.predict`: found, named, opened with geometry.

:func:`expand_inputs` turns files, folders and globs into input paths (a folder holds NIfTI,
NumPy, HDF5, MetaImage or NRRD files, or is a DICOM series); :func:`case_names` names each input's
outputs, uniquely; :func:`open_input` opens one with the library's readers
(:mod:`inpaintssl.data.readers`) and returns the :class:`Geometry` its label map is written with (a
NIfTI input's affine and header; a MetaImage or NRRD file's geometry, coded scanner; a DICOM
series' patient geometry, coded scanner, or coded unknown for a series without PixelSpacing
(its in-plane 1 mm is assumed); for a series without ImagePositionPatient and
ImageOrientationPatient, its voxel sizes on a placeholder grid at the origin, coded unknown; a
NumPy/HDF5 input's ``diag(spacing)``); :func:`reading` turns a damaged file's low-level error into
a :class:`~inpaintssl.inference.results.PredictionError` naming it.

Example:
    >>> from pathlib import Path
    >>> case_names([Path("/data/a/scan.nii.gz"), Path("/data/b/scan.nii.gz"), Path("/data/t.npy")])
    ['a_scan', 'b_scan', 't']
"""

from __future__ import annotations

import glob
import math
import os
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.cases import case_stem, folder_qualified_stems, is_glob
from inpaintssl.data.dicom import (
    SeveralSeriesError,
    first_slice_header,
    headers_read_once,
    open_series,
    select_series,
)
from inpaintssl.data.loading import H5Files, open_h5
from inpaintssl.data.metaimage import MetaImageVolume
from inpaintssl.data.nrrd import NrrdVolume
from inpaintssl.data.readers import (
    READ_ERRORS,
    VOLUME_SUFFIXES,
    DicomVolume,
    H5Volume,
    NiftiVolume,
    NumpyVolume,
    PngVolume,
    Volume,
    affine_zooms,
    reader_class,
)
from inpaintssl.data.skmtea import QDESS_ECHO_KEYS, QdessRssVolume, holds_qdess_echoes
from inpaintssl.inference.results import PredictionError
from inpaintssl.inference.trained_run import SlicePreprocessing
from inpaintssl.listing import first_and_more
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "SHEAR_TOLERANCE",
    "Geometry",
    "InputPaths",
    "case_names",
    "expand_inputs",
    "open_input",
    "reading",
    "sheared_voxel_mm3",
]

_FOLDER_VOLUMES = (NiftiVolume, NumpyVolume, H5Volume, MetaImageVolume, NrrdVolume)
"""The readers of the files a folder input holds; a folder without any is a DICOM series."""
_FOLDER_FORMATS = "NIfTI, NumPy, HDF5, MetaImage or NRRD"
"""The formats of :data:`_FOLDER_VOLUMES`, as messages name them."""
_PREDICTED_SUFFIXES = ", ".join(s for s in VOLUME_SUFFIXES if s != ".png")
"""Every suffix :func:`open_input` takes: the readers' (:data:`~inpaintssl.data.readers.VOLUME_SUFFIXES`)
but PNG, a 2-D slice picture rather than a scan."""

InputPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
"""What :func:`~inpaintssl.inference.predict.predict` takes as ``inputs``: one path or glob, or a list."""


def _reader(path: Path) -> type[Volume] | None:
    """The reader the library opens ``path`` with (:func:`~inpaintssl.data.readers.reader_class`);
    ``None`` for a file type it does not read."""
    try:
        return reader_class(path)
    except DataError:
        return None


def _folder_inputs(folder: Path, *, studies: bool = False) -> list[Path]:
    """Every NIfTI, NumPy, HDF5, MetaImage or NRRD file in ``folder``; a folder without any is a DICOM
    series, or with ``studies`` a DICOM study, whose files may lie in subfolders."""
    volumes = sorted(p for p in folder.iterdir() if p.is_file() and _reader(p) in _FOLDER_VOLUMES)
    if volumes:
        return volumes
    if studies:
        return [folder]  # its series is chosen among every file under it (data.dicom.select_series)
    subfolders = _subfolders_alone(folder)
    if subfolders:
        # A study exported as one folder per series: "empty" would send the user looking for
        # files that are there, one level down, where folders are not searched.
        raise PredictionError(
            f"input folder {folder} holds no files, only {len(subfolders)} folder(s): "
            f"{first_and_more(subfolders, limit=3)}; expected {_FOLDER_FORMATS} "
            "files or the files of one DICOM series (folders are not searched): give each folder as "
            f"an input, e.g. the glob '{folder}{os.sep}*{os.sep}' (a trailing slash matches folders "
            "only), or name the series to read from the study with series=... (--series)"
        )
    if not any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir()):
        raise PredictionError(
            f"input folder {folder} is empty; expected {_FOLDER_FORMATS} files or a DICOM series"
        )
    return [folder]


def _subfolders_alone(folder: Path) -> list[str]:
    """The subfolders of a folder that holds no file (hidden ones aside); ``[]`` where it holds one."""
    if any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir()):
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def expand_inputs(inputs: InputPaths, *, studies: bool = False) -> list[Path]:
    """The input paths ``inputs`` names: files, each folder's volumes (or a DICOM series), glob matches.

    Globs match recursively (``**``); a path that exists is itself even where its name has glob
    characters. Each file comes once, at its first place. With ``studies`` (``predict``'s
    ``series``), a folder without volume files is a DICOM study, its files in it or in subfolders.

    Raises:
        PredictionError: No inputs, a missing path, a glob that matches nothing, an empty folder.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise PredictionError("no inputs given; expected NIfTI/NumPy/HDF5 files, folders or globs")
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if is_glob(text, Path(text).expanduser()):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise PredictionError(f"input pattern {text!r} matched no files")
            for match in matches:
                found.extend(_folder_inputs(match, studies=studies) if match.is_dir() else [match])
            continue
        path = Path(text).expanduser()
        if not path.exists():
            raise PredictionError(f"input {path} does not exist")
        found.extend(_folder_inputs(path, studies=studies) if path.is_dir() else [path])
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def case_names(paths: Sequence[Path]) -> list[str]:
    """Unique case names: file names without suffixes, told apart where two clash.

    First by their folders below the common folder (``a/scan.nii.gz``, ``b/scan.nii.gz`` ->
    ``a_scan``, ``b_scan``), then by format (``scan.nii.gz`` beside ``scan.npy`` -> ``scan_nii_gz``,
    ``scan_npy``), then by a counter. A name no other input has is kept as it is. Each case's
    outputs are named after it, so two equal names would write one segmentation over the other;
    names that differ in letter case only clash too (``a/Scan.nii.gz``, ``b/scan.nii.gz`` ->
    ``a_Scan``, ``b_scan``), as they name one file on a case-insensitive file system (macOS,
    Windows). A folder given as ``.`` or ``..`` is named after the folder it is.

    Example:
        >>> case_names([Path("/data/a/Scan.nii.gz"), Path("/data/b/scan.nii.gz"), Path("/data/c.npy")])
        ['a_Scan', 'b_scan', 'c']
    """
    # A folder given as "." or ".." (a DICOM series predicted from inside it) has no name of its
    # own; unresolved, its outputs would be the hidden "_seg.nii.gz" or ".._seg.nii.gz".
    paths = [p.resolve() if p.name in ("", "..") else p for p in paths]
    names = [case_stem(p) for p in paths]
    folded = [name.casefold() for name in names]
    if len(set(folded)) == len(folded):
        return names
    by_folder = folder_qualified_stems(paths, ignore_case=True)
    by_folder_folded = [name.casefold() for name in by_folder]
    by_format = [
        f"{name}_{path.name[len(case_stem(path)) :].lstrip('.').replace('.', '_').lower() or 'folder'}"
        if by_folder_folded.count(name.casefold()) > 1
        else name
        for name, path in zip(by_folder, paths)
    ]
    kept = {key for key in folded if folded.count(key) == 1}
    taken: set[str] = set()
    unique: list[str] = []
    for name, told_apart in zip(names, by_format):
        candidate, k = told_apart, 2
        while candidate.casefold() in taken or (candidate != name and candidate.casefold() in kept):
            candidate, k = f"{told_apart}_{k}", k + 1
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


@dataclass
class Geometry:
    """Where the output goes in space: affine, the NIfTI header to copy and zooms in stored order.

    ``zooms`` (mm) measure every volume in mL, their product a voxel's volume, unless
    ``voxel_mm3`` states it: that of a NIfTI, MetaImage or NRRD file on a sheared grid, whose
    voxel sizes are the lengths of its affine's columns (:func:`sheared_voxel_mm3`). ``qform_code``
    is the NIfTI code a label map written without a header to copy gets for its sform and qform: 1
    (scanner) for a DICOM series' patient geometry, 0 (unknown) for a placeholder grid (a DICOM
    series without positions or without PixelSpacing); ``None`` leaves nibabel's defaults (a
    NumPy/HDF5 array's).
    """

    affine: np.ndarray
    header: Any | None
    zooms: tuple[float, float, float]
    qform_code: int | None = None
    voxel_mm3: float | None = None


SHEAR_TOLERANCE = 1e-9
"""How far (relative) a voxel's volume by its affine, ``|det|``, may fall short of the product of
the lengths of the affine's columns before the grid counts as sheared. The shortfall of an
affine whose axes are perpendicular but rounded (a float32 sform, a qform's quaternion) is of
the order of the rounding squared, 1e-14; a gantry tilt of 0.1 degrees is 1.5e-6."""


def sheared_voxel_mm3(affine: np.ndarray, zooms: Sequence[float]) -> float | None:
    """A voxel's volume (mm^3) on a sheared grid, ``zooms`` measured along its columns; else ``None``.

    The product of the voxel sizes is a voxel's volume only where the affine's axes are
    perpendicular. A gantry-tilted series' slices step along a column that leans off the slice
    normal, longer than the distance between the slices, so that product counts each voxel
    larger than it is; ``|det|`` of the affine's 3 x 3 part is its volume. Returned here as the
    product of ``zooms`` times ``|det|`` over the product of the column lengths (1 for
    perpendicular axes; the cosine of the tilt for one leaning column), which is ``|det|``
    where ``zooms`` are those lengths and in ``mm``, and follows a header's voxel sizes (NIfTI's
    ``pixdim``, within 1 % of them) where the reader kept those. ``None`` (take the product)
    where the axes are perpendicular to :data:`SHEAR_TOLERANCE`, so that the volumes of such
    files stay as they were to the last digit, and for an affine that places nothing (singular,
    non-finite).

    Example:
        >>> tilt = np.deg2rad(20.0)
        >>> affine = np.array([[0.7, 0, 0, 0], [0, 0.9, 2.5 * np.tan(tilt), 0], [0, 0, 2.5, 0], [0, 0, 0, 1]])
        >>> zooms = (0.7, 0.9, 2.5 / np.cos(tilt))  # the lengths of its columns
        >>> round(sheared_voxel_mm3(affine, zooms), 12), round(0.7 * 0.9 * 2.5, 12)
        (1.575, 1.575)
        >>> sheared_voxel_mm3(np.diag([0.7, 0.9, 2.5, 1.0]), (0.7, 0.9, 2.5)) is None
        True
    """
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    lengths = math.prod(affine_zooms(matrix, 3))
    volume = abs(float(np.linalg.det(matrix)))
    if not (math.isfinite(volume) and volume > 0 and math.isfinite(lengths) and lengths > 0):
        return None
    square = volume / lengths  # at most 1 (Hadamard's inequality)
    if square >= 1.0 - SHEAR_TOLERANCE:
        return None
    return math.prod(float(z) for z in zooms) * square


_LISTED = 10
"""How many member names a refusal of an ambiguous archive lists."""


def _image_member(names: Sequence[str], *, path: Path, what: str, holds: str) -> str:
    """The member or dataset called ``image``, as the training datasets read; else the only one.

    An archive of several arrays without one called ``image`` is refused: its first array may be
    the label map saved beside the scan, and predicting on that writes labels that look plausible.
    """
    if not names:
        raise PredictionError(f"{what} {path} holds no {holds}; expected an image array")
    if "image" in names:
        return "image"
    if len(names) == 1:
        return str(names[0])
    listed = first_and_more(map(repr, names), limit=_LISTED)
    raise PredictionError(
        f"{what} {path} holds {len(names)} {holds}s ({listed}) and none is called 'image'; "
        "name the image with key=... (--key)"
    )


def _image_dataset(path: Path) -> str:
    with open_h5(path) as handle:
        names: list[str] = []
        handle.visititems(lambda name, node: names.append(name) if hasattr(node, "shape") else None)
    return _image_member(names, path=path, what="HDF5 file", holds="dataset")


def _image_array(path: Path) -> str:
    # The zip's listing, as np.load's NpzFile.files gives it; np.load itself would return a plain
    # array for an .npy under an .npz name, and take a file that is neither for a pickle.
    try:
        with zipfile.ZipFile(path) as archive:
            members = [name.removesuffix(".npy") for name in archive.namelist()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise PredictionError(
            f"input {path} cannot be read as a NumPy .npz archive ({type(exc).__name__}: {exc}); expected "
            "a complete zip archive of .npy arrays, as np.savez writes (is it truncated or still being "
            "copied?)"
        ) from exc
    return _image_member(members, path=path, what="NumPy archive", holds="array")


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a damaged file's low-level error (truncated gzip, short data) into one naming it."""
    try:
        yield
    except PredictionError:
        raise
    except DataError as exc:
        # The readers already name the file; one error type for every input predict refuses.
        raise PredictionError(str(exc)) from exc
    except READ_ERRORS as exc:
        raise PredictionError(
            f"input {path} cannot be read ({type(exc).__name__}: {exc}); expected a complete, readable "
            "image file (is it truncated or still being copied?)"
        ) from exc


_SCANNER = 1
"""NIfTI xform code of coordinates in the scanner's patient space (DICOM's, here in RAS+)."""
_UNKNOWN = 0
"""NIfTI xform code of a placeholder: readers place the grid by its voxel sizes alone."""


def _dicom_geometry(volume: DicomVolume) -> Geometry:
    if volume.uneven_slices is not None:
        # Training reads such a series slice by slice; a label map needs one regular grid.
        raise PredictionError(
            f"{volume.uneven_slices}: its label map cannot be written on one grid (one affine, one "
            "voxel volume), so its labels would be misplaced and its volumes in mL wrong. Export only "
            "the evenly spaced part as a series of its own, or resample the series to one spacing with "
            "a tool such as dcm2niix or 3D Slicer"
        )
    if volume.patient_affine is None:
        # No patient geometry (no ImagePositionPatient/ImageOrientationPatient): keep the voxel sizes
        # on a grid at the origin, coded unknown, so no viewer or registration takes the made-up
        # place and axes for the scanner's.
        return Geometry(np.diag([*volume.spacing, 1.0]), None, volume.spacing, _UNKNOWN)
    if not volume.has_geometry:
        # Placed and oriented, but without PixelSpacing: its in-plane 1 mm is the reader's assumption,
        # so the affine is no scanner geometry. Kept for the place and axes the series does state,
        # coded unknown, so readers take pixdim's voxel sizes and nothing claims the scanner's.
        return Geometry(volume.patient_affine.copy(), None, volume.spacing, _UNKNOWN)
    # No voxel_mm3 for a gantry-tilted series' sheared affine: its slice spacing is the step along
    # the slice normal, not the length of the leaning column, so the product is the voxel's volume.
    return Geometry(volume.patient_affine.copy(), None, volume.spacing, _SCANNER)


def _zooms3(values: Sequence[float]) -> tuple[float, float, float]:
    padded = [float(v) for v in values[:3]] + [1.0] * max(0, 3 - len(values))
    return padded[0], padded[1], padded[2]


def _warn_spacing_unused(spacing: Sequence[float] | None, path: Path, own: Sequence[float]) -> None:
    if spacing is not None:
        warn_each_time(
            f"input {path}: spacing={tuple(float(v) for v in spacing)} is not used; the file states its "
            f"own voxel size ({' x '.join(f'{v:g}' for v in own)} mm). spacing applies to NumPy/HDF5 inputs",
            UserWarning,
        )


def _warn_key_unused(key: str | None, path: Path, what: str) -> None:
    if key is not None:
        warn_each_time(
            f"input {path}: key={key!r} is not used; a {what} holds one image. key chooses the array of "
            "NumPy (.npz) and HDF5 inputs",
            UserWarning,
        )


def _assumed_spacing(prep: SlicePreprocessing) -> tuple[float, ...]:
    """The voxel size of a NumPy/HDF5 input given none: the run's ``data.params.spacing``, else 1 mm.

    A run's 2-D spacing (rows, columns: its arrays were slices) gets a 1 mm thickness, which a
    3-D input needs and a 2-D one takes.
    """
    recorded = prep.array_spacing
    if recorded is None:
        return (1.0, 1.0, 1.0)
    return recorded if len(recorded) == 3 else (*recorded[:2], 1.0)


def _warn_spacing_assumed(path: Path, volume: Volume, *, from_run: Sequence[float] | None) -> None:
    # Always, not only where the assumed size misses the training range: the volumes in mL (and the
    # label map's affine) rest on it, whichever spacing the run trained at.
    if from_run is None:
        assumed = f"1 mm is assumed along every axis of its {volume.shape} array"
    else:
        sizes = " x ".join(f"{v:g}" for v in from_run)
        assumed = (
            f"the run's data.params.spacing, {sizes} mm along the stored axes of its {volume.shape} array "
            "(the voxel size the run read its own arrays at), is assumed"
        )
    warn_each_time(
        f"input {path}: a NumPy/HDF5 file states no voxel size, so {assumed}, for the spacing the model "
        "sees and for every volume in mL; give the scan's own with spacing=... (--spacing, one size in "
        "mm per stored axis)",
        UserWarning,
    )


def _open_dicom_input(path: Path, prep: SlicePreprocessing) -> DicomVolume:
    """A DICOM input as the run's images were made: its echo, or the echoes' root-sum-of-squares
    (skmtea); the series ``predict`` names, else, where the input is a study (several series in
    the folder, or its series in subfolders), the series the run read from each study. A series
    alone is read as it is, with a warning where the run read another."""

    def opened(series: str | int | None) -> DicomVolume:
        return open_series(path, echo=prep.echo, combine_echoes=prep.rss_echoes, series=series)

    if prep.series is not None or prep.run_series is None:
        return opened(prep.series)
    if path.is_dir() and _subfolders_alone(path):
        return opened(prep.run_series)
    # Read as a series, then (a study after all) as a study: each file's header parsed once.
    with headers_read_once():
        try:
            volume = opened(None)
        except SeveralSeriesError:
            return opened(prep.run_series)
        header = first_slice_header(volume)
    try:
        select_series([(header, Path(volume.files[0]))], prep.run_series, path)
    except DataError:
        stated = ", ".join(
            f"{tag} {value!r}"
            for tag in ("SeriesDescription", "SeriesNumber")
            if (value := getattr(header, tag, None)) not in (None, "")
        )
        warn_each_time(
            f"input {path}: one series ({stated or 'no SeriesDescription or SeriesNumber'}), not the series "
            f"{prep.run_series!r} the run read from each study (data.params.series); predicted as it is. "
            "If it is another kind of scan than the run learned from, its labels are unreliable",
            UserWarning,
        )
    return volume


def open_input(
    path: Path, *, prep: SlicePreprocessing, key: str | None, spacing: Sequence[float] | None
) -> tuple[Volume, Geometry]:
    """The input's :class:`Volume` (header checked) and its geometry."""
    axis = prep.slice_axis
    reader = _reader(path)
    if reader is None or reader is PngVolume:
        raise PredictionError(
            f"input {path}: unsupported file type; expected {_PREDICTED_SUFFIXES} or a folder (of "
            f"{_FOLDER_FORMATS} files, or a DICOM series)"
        )
    if prep.series is not None and reader is not DicomVolume:
        raise PredictionError(
            f"input {path}: series={prep.series!r} chooses a series among a DICOM study's, but this input "
            f"is read as {reader.__name__}; give DICOM folders only, or leave series (--series) out"
        )
    if reader is DicomVolume:
        series = _open_dicom_input(path, prep)
        _warn_spacing_unused(spacing, path, series.spacing)
        _warn_key_unused(key, path, "DICOM series")
        return series, _dicom_geometry(series)
    # As given: a 3-D array needs all three sizes (its slice thickness sets every volume in mL),
    # which the reader checks against the array's rank; a single 2-D slice may take two. Not given,
    # the run's own (its arrays state none either, so it trained at these), else 1 mm.
    given = tuple(spacing) if spacing is not None else _assumed_spacing(prep)
    if reader is NiftiVolume:
        nifti = NiftiVolume(path, slice_axis=axis)
        # The reader's voxel sizes (mm): its pixdim, or its affine's where the two disagree, so the
        # volumes in mL agree with the affine the label map is written with.
        zooms = _zooms3(nifti.stored_zooms)
        if len(nifti.stored_zooms) == 2:
            # A 2-D file's header sizes only its rows and columns; the slice's thickness is the
            # length of its affine's third column, which its label map is written with too (the
            # same slice saved as an (X, Y, 1) volume would be measured with it).
            thickness = affine_zooms(nifti.affine, 3)[2]
            if math.isfinite(thickness) and thickness > 0:
                zooms = (zooms[0], zooms[1], thickness)
        _warn_spacing_unused(spacing, path, zooms)
        _warn_key_unused(key, path, "NIfTI file")
        voxel = sheared_voxel_mm3(nifti.affine, zooms)
        return nifti, Geometry(nifti.file_affine, nifti.header, zooms, voxel_mm3=voxel)
    if reader in (MetaImageVolume, NrrdVolume):
        meta: MetaImageVolume | NrrdVolume = reader(path, slice_axis=axis)
        # A 2-D file's third axis is its normal at 1 mm (the reader's), as in its label map.
        zooms = _zooms3(meta.stored_zooms)
        _warn_spacing_unused(spacing, path, zooms)
        _warn_key_unused(key, path, "MetaImage file" if reader is MetaImageVolume else "NRRD file")
        if meta.affine is None:  # an NRRD file without a space: its voxel sizes on a plain grid
            return meta, Geometry(np.diag([*zooms, 1.0]), None, zooms)
        # The patient geometry of ITK and 3D Slicer (LPS, converted): coded 1, as a DICOM series' is.
        voxel = sheared_voxel_mm3(meta.affine, zooms)
        return meta, Geometry(meta.affine.copy(), None, zooms, qform_code=1, voxel_mm3=voxel)
    if reader is NumpyVolume:
        member = (
            key if key is not None else ("image" if path.suffix.lower() == ".npy" else _image_array(path))
        )
        volume: Volume = NumpyVolume(path, key=member, slice_axis=axis, spacing=given)
    elif prep.rss_echoes and key is None and holds_qdess_echoes(path):  # HDF5 from here on
        volume = QdessRssVolume(path, handles=H5Files(), slice_axis=axis, spacing=given)
    else:
        if prep.rss_echoes and key in QDESS_ECHO_KEYS:
            raise PredictionError(
                f"input {path}: key={key!r} is one qDESS echo, but the run was trained on the "
                "root-sum-of-squares of echo1 and echo2 (the skmtea dataset); give the file without "
                "key=... (--key) to read that from its echoes, or key=... naming such an image"
            )
        dataset = key if key is not None else _image_dataset(path)
        volume = H5Volume(path, key=dataset, handles=H5Files(), slice_axis=axis, spacing=given)
    if spacing is None:
        _warn_spacing_assumed(path, volume, from_run=None if prep.array_spacing is None else given)
    # Stored axis order, as ``spacing`` is given; ``volume.spacing`` is the slice plane's (rows,
    # columns, normal), the same only for slices along the last axis.
    stored = _zooms3(volume.stored_zooms)
    # nibabel's default codes (sform 2, aligned), as when a user turns the same array into NIfTI with
    # nibabel: coded 0, nibabel would read the label map on its own flipped, centred grid instead,
    # and the two would not overlay.
    return volume, Geometry(np.diag([*stored, 1.0]), None, stored)
