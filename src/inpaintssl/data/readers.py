"""Stored volumes read one 2D slice at a time: NIfTI, NumPy, HDF5, PNG and DICOM.

Every reader is a :class:`Volume`: its header (shape, spacing) is read and checked when it is
constructed, and :meth:`Volume.read` returns one slice ``(H, W)`` (or ``(H, W, C)`` for a 4D
volume, channels last) as stored, without normalisation. A 2D file is a volume of one slice.

Axis conventions: a 3D array ``(A0, A1, A2)`` is sliced along ``slice_axis``; the slice keeps the
other two axes in order as rows and columns (``slice_axis=2``: rows ``A0``, columns ``A1``). A 4D
array has its channels on the last axis. Spacing is ``(row_mm, col_mm, slice_mm)``.

Formats that cannot be read slice by slice (``.nii.gz``, ``.npz`` members, PNG) are decompressed
once per process on first read and kept; uncompressed ``.nii`` and ``.npy`` are memory-mapped and
HDF5 is read per slice, so convert large gzip NIfTI collections to ``.nii`` or HDF5.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.npy"
    >>> np.save(p, np.arange(24.0).reshape(2, 3, 4))
    >>> vol = NumpyVolume(p, slice_axis=0)
    >>> vol.slice_shape, vol.num_slices, vol.read(1)[0].tolist()
    ((3, 4), 2, [12.0, 13.0, 14.0, 15.0])
"""

from __future__ import annotations

import importlib
import math
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.checks import check_rank, check_slice_axis, check_spacing, existing_path
from inpaintssl.data.loading import H5Files, open_h5
from inpaintssl.data.orientation import Reorientation, axis_codes, check_axis_codes

__all__ = [
    "READ_ERRORS",
    "DicomVolume",
    "H5Volume",
    "IMAGE_RANKS",
    "LABEL_RANKS",
    "NiftiVolume",
    "NumpyVolume",
    "PngVolume",
    "Volume",
    "import_optional",
    "open_volume",
]

IMAGE_RANKS = frozenset({2, 3, 4})
"""A 2D slice, a 3D volume, or a 3D volume with channels last."""
LABEL_RANKS = frozenset({2, 3})
"""Integer class maps: a 2D slice or a 3D volume."""

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
READ_ERRORS = (EOFError, OSError, ValueError, KeyError, RuntimeError, zlib.error)
"""What readers raise on data they cannot decode: gzip (EOFError, zlib.error, OSError "not a gzip
file"), nibabel/NumPy memory maps of a short file (ValueError), h5py (OSError, KeyError, RuntimeError)."""


def import_optional(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency or say which ``inpaintssl`` extra installs it.

    Raises:
        ImportError: The module is missing; the message names ``pip install 'inpaintssl[extra]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs the optional package {module!r}: pip install 'inpaintssl[{extra}]'"
        ) from exc


class Volume(ABC):
    """One stored image or label volume, read one 2D slice at a time.

    Attributes:
        path: The file (or DICOM folder) read.
        shape: The array shape as read: the stored shape, permuted after :meth:`reorient`.
        stored_shape: The stored array shape.
        slice_shape: ``(H, W)`` of every slice.
        num_slices: Number of slices along the slice axis.
        channels: Channels per slice (the last axis of a 4D volume, else 1).
        spacing: ``(row_mm, col_mm, slice_mm)``.
        files: Every file this volume reads (for a run manifest).
    """

    path: Path
    shape: tuple[int, ...]
    spacing: tuple[float, float, float]
    files: tuple[str, ...]
    has_geometry: bool = False
    """Whether ``spacing`` comes from the file (NIfTI, DICOM) rather than from parameters."""
    affine: np.ndarray | None = None
    """The voxel-to-world ``(4, 4)`` matrix, for formats that store one (NIfTI)."""
    reorientation: Reorientation | None = None
    """How the stored array is permuted and flipped on reading (:meth:`reorient`); ``None``: as stored."""
    read_in: str | None = None
    """The axis codes :meth:`reorient` was asked for (also when they are the stored ones)."""
    _what: str = "volume"

    def __init__(
        self,
        path: Path,
        shape: Sequence[int],
        *,
        slice_axis: int,
        ranks: Collection[int],
        spacing: Sequence[float],
        what: str,
    ) -> None:
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        layout = "(H, W), (X, Y, Z) or (X, Y, Z, C)" if 4 in ranks else "(H, W) or (X, Y, Z)"
        check_rank(self.shape, ranks, where=f"{what} {path}", layout=layout)
        if 0 in self.shape:
            raise DataError(
                f"{what} {path}: array has shape {self.shape}, an empty axis; expected at least one "
                "voxel along every axis"
            )
        self._what = what
        if len(self.shape) > 2:
            self.slice_axis = check_slice_axis(slice_axis, where=f"{what} {path}") % 3
        else:
            # A 2D file is one slice whatever axis the dataset slices its volumes along.
            check_slice_axis(slice_axis, where=f"{what} {path}")
            self.slice_axis = 0
        self.stored_shape = self.shape
        self._stored_zooms = tuple(float(s) for s in spacing)
        self._set_grid(self.shape, self._stored_zooms)
        self.files = (str(path),)

    def _set_grid(self, shape: tuple[int, ...], zooms: Sequence[float]) -> None:
        """Slice geometry of an array of ``shape`` with voxel sizes ``zooms`` (array axis order)."""
        self.shape = shape
        if len(shape) == 2:
            rows, cols = shape
            self.num_slices = 1
        else:
            in_plane = [a for a in range(3) if a != self.slice_axis]
            rows, cols = shape[in_plane[0]], shape[in_plane[1]]
            self.num_slices = shape[self.slice_axis]
        self.slice_shape = (rows, cols)
        self.channels = shape[3] if len(shape) == 4 else 1
        self.spacing = _plane_spacing(zooms, self.slice_axis, rank=len(shape))

    @property
    def world_affine(self) -> np.ndarray | None:
        """Voxel-to-world ``(4, 4)`` matrix (RAS+) of the array as read, where the format states one."""
        return self.affine

    @property
    def stored_orientation(self) -> str | None:
        """Axis codes of the stored array (:mod:`~inpaintssl.data.orientation`), ``None`` if unknown.

        Unknown for formats without patient geometry (NumPy, HDF5, PNG, DICOM without
        ImageOrientationPatient), 2D files and singular affines.
        """
        if self.reorientation is not None:
            return self.reorientation.source
        if "_stored_codes" not in self.__dict__:
            # Asked once per training slice when a run records its orientations: computed once.
            affine = self.world_affine
            self.__dict__["_stored_codes"] = (
                None if len(self.shape) < 3 or affine is None else axis_codes(affine)
            )
        codes: str | None = self.__dict__["_stored_codes"]
        return codes

    @property
    def orientation(self) -> str | None:
        """Axis codes of the array as :meth:`read` returns it: the target after :meth:`reorient`."""
        return self.reorientation.target if self.reorientation is not None else self.stored_orientation

    def reorient(self, target: str, *, slice_axis: int | None = None) -> None:
        """Read this volume in the axis order ``target`` (e.g. ``"RAS"``) from now on.

        The stored array is permuted and flipped, never resampled, and read lazily as before:
        ``shape``, ``spacing``, ``affine`` and every slice :meth:`read` returns then describe the
        reoriented array, and ``slice_axis`` counts its axes. Reorienting to the stored order
        changes nothing.

        Args:
            target: Axis codes (:mod:`~inpaintssl.data.orientation`).
            slice_axis: Slice the reoriented array along this axis (default: the volume's own
                ``slice_axis``; a DICOM series' is 2, its stored slices).

        Raises:
            DataError: The file states no orientation (see :attr:`stored_orientation`), or
                ``target`` is not an axis code, or ``slice_axis`` not one of 0, 1, 2.
        """
        target = check_axis_codes(target, where=f"{self._what} {self.path}: orientation", error=DataError)
        if slice_axis is not None:
            slice_axis = check_slice_axis(slice_axis, where=f"{self._what} {self.path}")
        source = self.stored_orientation
        if source is None:
            raise DataError(
                f"{self._what} {self.path} cannot be reoriented to {target}: it states no orientation "
                f"(shape {self.stored_shape}; a 3D volume with a voxel-to-world affine is needed: NIfTI, "
                "or DICOM with ImageOrientationPatient and ImagePositionPatient)"
            )
        # Kept from the first call, before any reorientation changed the affine.
        stored_affine = self.__dict__.setdefault("_stored_world_affine", self.world_affine)
        assert stored_affine is not None  # stored_orientation is known
        change = Reorientation.between(source, target)
        if slice_axis is not None:
            self.slice_axis = slice_axis % 3
        self.read_in = target
        self.reorientation = None if change.is_identity else change
        shape = change.shape(self.stored_shape)
        self._set_grid(shape, change.spacing(self._stored_zooms))
        self._set_world_affine(change.affine(stored_affine, self.stored_shape))

    def _set_world_affine(self, affine: np.ndarray) -> None:
        self.affine = affine

    @property
    def grid(self) -> tuple[int, int, int]:
        """``(H, W, num_slices)``: the voxel grid an image and its label must share."""
        return (*self.slice_shape, self.num_slices)

    def read(self, index: int) -> np.ndarray:
        """Slice ``index`` as stored: ``(H, W)``, or ``(H, W, C)`` for a 4D volume."""
        if not 0 <= index < self.num_slices:
            raise IndexError(f"{self.path}: slice {index} out of range [0, {self.num_slices})")
        try:
            change = self.reorientation
            if change is None:
                return self._read_stored(self.slice_axis, index)
            axis, stored_index = change.stored_slice(self.slice_axis, index, self.stored_shape)
            return np.ascontiguousarray(change.plane(self._read_stored(axis, stored_index), self.slice_axis))
        except READ_ERRORS as exc:
            # A header that parsed says nothing about the data after it: a truncated gzip stream
            # or HDF5 chunk only fails here, and the reader's own error names no file.
            raise DataError(
                f"{self._what} {self.path} cannot be read at slice {index} (truncated "
                f"or corrupt data?): {type(exc).__name__}: {exc}"
            ) from exc

    def _read_stored(self, axis: int, index: int) -> np.ndarray:
        """Slice ``index`` along ``axis`` of the stored array (the other axes in stored order)."""
        array = self._array()
        if len(self.stored_shape) == 2:
            return np.asarray(array[...])
        where: list[Any] = [slice(None)] * len(self.stored_shape)
        where[axis] = index
        return np.asarray(array[tuple(where)])

    @abstractmethod
    def _array(self) -> Any:
        """The stored array, or a lazy object that supports NumPy basic indexing."""

    def __getstate__(self) -> dict[str, Any]:
        # Decompressed caches and open handles are per process; a spawned worker rebuilds them.
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state


def _plane_spacing(spacing: Sequence[float], slice_axis: int, *, rank: int) -> tuple[float, float, float]:
    values = [float(s) for s in spacing] + [1.0] * max(0, 3 - len(spacing))
    if rank == 2:
        return values[0], values[1], values[2]
    in_plane = [a for a in range(3) if a != slice_axis]
    return values[in_plane[0]], values[in_plane[1]], values[slice_axis]


_MM_PER_NIFTI_UNIT = MappingProxyType({"mm": 1.0, "meter": 1000.0, "micron": 0.001, "unknown": 1.0})
"""Millimetres per NIfTI spatial unit (``xyzt_units``). ``unknown`` is read as mm, as FSL, ITK
and nibabel's own tools do: most files that do not say are in mm."""


def nifti_mm_per_unit(header: Any, *, path: Path) -> float:
    """How many millimetres one unit of a NIfTI header's ``pixdim`` and affine is.

    Raises:
        DataError: The header's spatial unit is not one NIfTI defines.

    Example:
        >>> import nibabel as nib, numpy as np
        >>> header = nib.Nifti1Header()
        >>> header.set_xyzt_units("meter")
        >>> nifti_mm_per_unit(header, path=Path("a.nii"))
        1000.0
    """
    unit = header.get_xyzt_units()[0]
    if unit not in _MM_PER_NIFTI_UNIT:
        raise DataError(
            f"NIfTI file {path}: spatial unit {unit!r} in xyzt_units; "
            f"expected one of {sorted(_MM_PER_NIFTI_UNIT)}"
        )
    return _MM_PER_NIFTI_UNIT[unit]


class NiftiVolume(Volume):
    """A ``.nii`` / ``.nii.gz`` volume (nibabel, ``nifti`` extra); scl_slope/inter are applied.

    Spacing comes from the header's voxel sizes (``pixdim``), in mm whatever spatial unit the
    header states (``xyzt_units``: a file in metres or microns is converted); ``affine`` is in mm
    too, ``file_affine`` as the file holds it. ``orientation`` (axis codes such as ``"RAS"``)
    reads the volume in that axis order (:meth:`Volume.reorient`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        slice_axis: int = 2,
        ranks: Collection[int] = IMAGE_RANKS,
        orientation: str | None = None,
    ) -> None:
        nib = import_optional("nibabel", extra="nifti", purpose="reading NIfTI")
        path = existing_path(path, what="NIfTI file")
        try:
            image = nib.load(path)
        except Exception as exc:  # nibabel raises many types for a bad file
            raise DataError(f"NIfTI file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
        self._image = image
        mm = nifti_mm_per_unit(image.header, path=path)
        zooms = tuple(float(z) * mm for z in image.header.get_zooms()[:3])
        super().__init__(
            path, image.shape, slice_axis=slice_axis, ranks=ranks, spacing=zooms, what="NIfTI file"
        )
        self.has_geometry = True
        self.file_affine: np.ndarray = np.asarray(image.affine, dtype=np.float64)
        """The voxel-to-world matrix in the file's own unit (what a label map written for it copies)."""
        self.affine: np.ndarray = np.diag([mm, mm, mm, 1.0]) @ self.file_affine  # always known here
        self.header = image.header
        """The file's NIfTI header (what a label map written for this image copies)."""
        if orientation is not None:
            self.reorient(orientation)

    def _array(self) -> Any:
        if not str(self.path).endswith(".gz"):
            return self._image.dataobj
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = np.asarray(self._image.dataobj)
            self.__dict__["_cache"] = cache
        return cache


def _npz_member_shape(path: Path, key: str) -> tuple[int, ...]:
    with zipfile.ZipFile(path) as archive:
        names = [n.removesuffix(".npy") for n in archive.namelist()]
        if key not in names:
            raise DataError(f"NumPy archive {path} has no array {key!r}; it holds {sorted(names)}")
        with archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(member)
    return tuple(shape)


class NumpyVolume(Volume):
    """A ``.npy`` array (memory-mapped) or one array ``key`` of an ``.npz`` archive.

    NumPy files carry no spacing: pass ``spacing`` (default 1 mm).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        key: str = "image",
        slice_axis: int = 2,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        ranks: Collection[int] = IMAGE_RANKS,
    ) -> None:
        path = existing_path(path, what="NumPy file")
        self.key = key
        try:
            if path.suffix == ".npz":
                shape = _npz_member_shape(path, key)
            else:
                shape = np.load(path, mmap_mode="r").shape
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"NumPy file {path} cannot be read: {exc}") from exc
        spacing = _given_spacing(spacing, shape, where=f"NumPy file {path}")
        super().__init__(path, shape, slice_axis=slice_axis, ranks=ranks, spacing=spacing, what="NumPy file")

    def _array(self) -> Any:
        cache = self.__dict__.get("_cache")
        if cache is None:
            if self.path.suffix == ".npz":
                with np.load(self.path) as archive:
                    cache = archive[self.key]
            else:
                cache = np.load(self.path, mmap_mode="r")
            self.__dict__["_cache"] = cache
        return cache


class H5Volume(Volume):
    """Dataset ``key`` of an HDF5 file, read per slice through a per-process handle.

    Args:
        path: The ``.h5`` file.
        key: The dataset path inside it, e.g. ``"image"`` or ``"scans/ct"``.
        handles: Shared per-process handle cache (one per dataset object).
        slice_axis: Axis sliced.
        spacing: Voxel spacing (HDF5 carries none by convention).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        key: str,
        handles: H5Files,
        slice_axis: int = 2,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        ranks: Collection[int] = IMAGE_RANKS,
    ) -> None:
        path = existing_path(path, what="HDF5 file")
        with open_h5(path) as handle:
            shape = h5_dataset_shape(handle, key, path=path)
        spacing = _given_spacing(spacing, shape, where=f"HDF5 file {path} key {key!r}")
        self.key = key
        self._handles = handles
        super().__init__(path, shape, slice_axis=slice_axis, ranks=ranks, spacing=spacing, what="HDF5 file")

    def _array(self) -> Any:
        return self._handles.get(self.path)[self.key]


def _given_spacing(spacing: Sequence[float], shape: Sequence[int], *, where: str) -> tuple[float, ...]:
    """``spacing`` told for a format that stores none, checked against the array's rank."""
    return check_spacing(spacing, where=f"{where}: spacing", rank=len(shape))


_H5_LISTED = 20
"""How many dataset names a message about an HDF5 group lists."""


def h5_dataset_shape(handle: Any, key: str, *, path: Path) -> tuple[int, ...]:
    """Shape of dataset ``key`` in an open file, or a :class:`DataError` naming file and key.

    Raises:
        DataError: ``key`` is missing (the message lists the file's top-level names) or names a
            group (the message lists the datasets inside it).
    """
    node = handle.get(key)
    if node is None:
        found = sorted(handle.keys())
        raise DataError(f"HDF5 file {path} has no dataset {key!r}; it holds {found}")
    if not hasattr(node, "shape"):
        inside: list[str] = []

        def collect(name: str, obj: Any) -> None:
            if hasattr(obj, "shape"):
                inside.append(f"{key.rstrip('/')}/{name}")

        node.visititems(collect)
        listed = sorted(inside)
        more = f" and {len(listed) - _H5_LISTED} more" if len(listed) > _H5_LISTED else ""
        holds = f"datasets {listed[:_H5_LISTED]}{more}" if listed else "no datasets"
        raise DataError(
            f"HDF5 file {path}: {key!r} is a group, not a dataset; it holds {holds}; "
            f"expected {key!r} to name the array itself (e.g. the key of one of those datasets)"
        )
    return tuple(int(s) for s in node.shape)


class PngVolume(Volume):
    """A 2D PNG mask read with Pillow (a matplotlib dependency), integer values preserved.

    Palette PNGs give their palette indices; RGB images are rejected (rank 3).
    """

    def __init__(self, path: str | Path) -> None:
        path = existing_path(path, what="PNG file")
        self._cache_array(path)
        super().__init__(
            path, self._cache.shape, slice_axis=0, ranks={2}, spacing=(1.0, 1.0), what="PNG file"
        )

    def _cache_array(self, path: Path) -> None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                self._cache = np.asarray(image)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"PNG file {path} cannot be read: {exc}") from exc

    def _array(self) -> Any:
        if "_cache" not in self.__dict__:
            self._cache_array(self.path)
        return self._cache


class DicomVolume(Volume):
    """A DICOM series folder (or one ``.dcm`` file) as HU: ``pixel * RescaleSlope + RescaleIntercept``.

    Headers are read at construction to order the slices along the slice normal
    (``ImagePositionPatient`` projected on the ``ImageOrientationPatient`` normal, falling back to
    ``InstanceNumber``) and to check that the files are one series: one ``SeriesInstanceUID``
    (files without one are taken as one series), one ``ImageOrientationPatient``, one slice per
    position and one matrix size. Pixel data is read per slice. Row/column spacing comes from
    ``PixelSpacing``; slice spacing from the sorted positions, else ``SpacingBetweenSlices``, else
    ``SliceThickness``. Slices are rows x columns as stored.
    A CT slice (``Modality`` CT) must carry both rescale tags; other modalities default to slope 1,
    intercept 0. Needs pydicom (``dicom`` extra).
    """

    def __init__(self, path: str | Path) -> None:
        pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
        path = existing_path(path, what="DICOM series", directory_ok=True)
        candidates = sorted(_series_files(path)) if path.is_dir() else [path]
        if not candidates:
            raise DataError(f"DICOM series folder {path} holds no files")
        headers = [(_read_dicom(pydicom, f, pixels=False), f) for f in candidates]
        _check_one_series(headers, path)
        _check_one_orientation(headers, path)
        _check_one_ordering(headers, path)
        headers.sort(key=lambda pair: _slice_position(pair[0]))
        _check_distinct_positions(headers, path)
        first = headers[0][0]
        size = (int(first.Rows), int(first.Columns))
        for ds, f in headers:
            if (int(ds.Rows), int(ds.Columns)) != size:
                raise DataError(
                    f"DICOM file {f} is {int(ds.Rows)}x{int(ds.Columns)} but the series {path} is "
                    f"{size[0]}x{size[1]}; expected one matrix size per series"
                )
            _check_ct_rescale(ds, f)
            _check_rescale_values(ds, f)
        self._files = [f for _, f in headers]
        spacing = (*_pixel_spacing(first), _slice_spacing([ds for ds, _ in headers]))
        super().__init__(
            path, (*size, len(headers)), slice_axis=2, ranks={3}, spacing=spacing, what="DICOM series"
        )
        self.files = tuple(str(f) for f in self._files)
        # Spacing is geometry only when the file states it; the 1 mm fallbacks are placeholders.
        self.has_geometry = getattr(first, "PixelSpacing", None) is not None
        self.patient_affine = _patient_affine(headers[0][0], headers[-1][0], self.spacing, len(headers))
        """Voxel-to-world (RAS+) matrix from the series' patient geometry; ``None`` without it."""

    @property
    def world_affine(self) -> np.ndarray | None:
        """:attr:`patient_affine`: DICOM states its geometry per slice, not as one affine."""
        return self.patient_affine

    def _set_world_affine(self, affine: np.ndarray) -> None:
        self.patient_affine = affine

    def _array(self) -> np.ndarray:
        # Only a reorientation that slices across the stored slices reads the whole series.
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = np.stack([self._read_stored(2, i) for i in range(len(self._files))], axis=-1)
            self.__dict__["_cache"] = cache
        return cache

    def _read_stored(self, axis: int, index: int) -> np.ndarray:
        """Slice ``index`` in HU (float32, before any clipping): one file along the stored slices."""
        if axis != 2:
            return np.asarray(np.take(self._array(), index, axis=axis))
        pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
        ds = _read_dicom(pydicom, self._files[index], pixels=True)
        pixels = np.asarray(ds.pixel_array, dtype=np.float32)
        # Absent or empty tags mean identity (non-CT modalities); a present slope of 0 was refused
        # when the series was opened, not mended to 1.
        slope = _rescale_value(ds, "RescaleSlope", 1.0)
        intercept = _rescale_value(ds, "RescaleIntercept", 0.0)
        values: np.ndarray = pixels * np.float32(slope) + np.float32(intercept)
        return values


_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_LPS_TO_RAS.flags.writeable = False


def _patient_affine(
    first: Any, last: Any, spacing: tuple[float, float, float], num_slices: int
) -> np.ndarray | None:
    """A series' voxel-to-world matrix in NIfTI's RAS+ (DICOM's patient space is LPS+).

    Array axis 0 walks down the rows (ImageOrientationPatient's column direction), axis 1 along
    a row, axis 2 from the first slice to the last, whose ImagePositionPatient fix the step.
    """
    position = getattr(first, "ImagePositionPatient", None)
    orientation = getattr(first, "ImageOrientationPatient", None)
    if position is None or orientation is None or len(orientation) != 6:
        return None
    rows_mm, cols_mm, slice_mm = spacing
    along_row = np.asarray(orientation[:3], dtype=np.float64)  # direction of increasing column
    along_col = np.asarray(orientation[3:], dtype=np.float64)  # direction of increasing row
    origin = np.asarray(position, dtype=np.float64)
    if num_slices > 1 and getattr(last, "ImagePositionPatient", None) is not None:
        step = (np.asarray(last.ImagePositionPatient, dtype=np.float64) - origin) / (num_slices - 1)
    else:
        step = np.cross(along_row, along_col) * slice_mm
    lps = np.eye(4)
    lps[:3, 0] = along_col * rows_mm
    lps[:3, 1] = along_row * cols_mm
    lps[:3, 2] = step
    lps[:3, 3] = origin
    affine: np.ndarray = _LPS_TO_RAS @ lps
    return affine


def _series_files(folder: Path) -> list[Path]:
    # Hidden files and the DICOMDIR index are not slices; anything else that fails to parse is
    # reported rather than skipped, so a half-copied series is not silently shortened.
    return [
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != "DICOMDIR"
    ]


def _read_dicom(pydicom: ModuleType, path: Path, *, pixels: bool) -> Any:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
        if pixels:
            _ = ds.pixel_array
        else:
            _ = int(ds.Rows), int(ds.Columns)
    except AttributeError as exc:
        raise DataError(f"DICOM file {path} has no Rows/Columns; is it an image?") from exc
    except Exception as exc:  # pydicom raises many types for a bad file
        raise DataError(f"DICOM file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    return ds


_ORIENTATION_TOLERANCE = 1e-3
"""How far two slices' ImageOrientationPatient direction cosines may differ within one series:
scanners write them rounded to a few decimals, while another plane differs by far more (a 1 degree
tilt changes a cosine by 0.017)."""
_SAME_POSITION_MM = 1e-3
"""Slices closer than this along the slice normal (mm) are at one position: far below any real
slice spacing, far above the rounding of ImagePositionPatient's decimal strings."""


def _check_one_series(headers: Sequence[tuple[Any, Path]], folder: Path) -> None:
    """Refuse files of more than one SeriesInstanceUID (files without one count as one series).

    Stacked together, a T1 and a T2 (or two reconstructions) at the same positions would make one
    volume of twice the slices, with a wrong slice spacing and doubled tissue volumes.
    """
    groups: dict[str | None, list[Path]] = {}
    first: dict[str | None, Any] = {}
    for ds, f in headers:
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "").strip() or None
        groups.setdefault(uid, []).append(f)
        first.setdefault(uid, ds)
    if len(groups) <= 1:
        return
    found = "; ".join(_describe_series(uid, first[uid], files) for uid, files in groups.items())
    raise DataError(
        f"DICOM series folder {folder} holds {len(groups)} series: {found}; expected one series per "
        "folder (it is read as one volume): move each series into a folder of its own"
    )


def _describe_series(uid: str | None, ds: Any, files: Sequence[Path]) -> str:
    details = []
    description = str(getattr(ds, "SeriesDescription", "") or "").strip()
    if description:
        details.append(f"SeriesDescription {description!r}")
    number = getattr(ds, "SeriesNumber", None)
    if number is not None and str(number).strip():
        details.append(f"SeriesNumber {number}")
    name = "files without SeriesInstanceUID" if uid is None else f"SeriesInstanceUID {uid}"
    shown = f" ({', '.join(details)})" if details else ""
    return f"{name}{shown}: {len(files)} file(s), e.g. {files[0].name}"


def _orientation(ds: Any) -> np.ndarray | None:
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if orientation is None or len(orientation) != 6:
        return None
    return np.asarray([float(v) for v in orientation])


def _orientation_text(orientation: np.ndarray | None) -> str:
    if orientation is None:
        return "no ImageOrientationPatient"
    return "ImageOrientationPatient [" + ", ".join(f"{v:g}" for v in orientation) + "]"


def _check_one_orientation(headers: Sequence[tuple[Any, Path]], folder: Path) -> None:
    """Refuse slices of different planes: sorted along one normal they would not form a volume."""
    reference_ds, reference_file = headers[0]
    reference = _orientation(reference_ds)
    for ds, f in headers[1:]:
        orientation = _orientation(ds)
        same = (orientation is None and reference is None) or (
            orientation is not None
            and reference is not None
            and float(np.max(np.abs(orientation - reference))) <= _ORIENTATION_TOLERANCE
        )
        if not same:
            raise DataError(
                f"DICOM file {f} has {_orientation_text(orientation)} but {reference_file} has "
                f"{_orientation_text(reference)} (series folder {folder}); expected one orientation per "
                f"series (within {_ORIENTATION_TOLERANCE:g}): slices of another plane, such as a coronal "
                "series next to an axial one, belong in a folder of their own"
            )


def _has_position(ds: Any) -> bool:
    """Whether a slice's place along the normal comes from its position (else its InstanceNumber)."""
    return getattr(ds, "ImagePositionPatient", None) is not None and _orientation(ds) is not None


def _check_one_ordering(headers: Sequence[tuple[Any, Path]], folder: Path) -> None:
    """Refuse a series where only some slices state ImagePositionPatient and ImageOrientationPatient.

    The slices are sorted by one key: millimetres along the normal for slices with both tags,
    InstanceNumber for the rest. A mix compares millimetres with counts and interleaves the slices.
    """
    with_position = [f for ds, f in headers if _has_position(ds)]
    if 0 < len(with_position) < len(headers):
        without = next(f for ds, f in headers if not _has_position(ds))
        raise DataError(
            f"DICOM file {without} has no ImagePositionPatient or ImageOrientationPatient but "
            f"{with_position[0]} has both ({len(headers) - len(with_position)} of {len(headers)} files "
            f"lack them, series folder {folder}); expected every slice of a series to state its "
            "position, or none (then InstanceNumber orders them), so that the slices sort in one order"
        )


def _check_distinct_positions(headers: Sequence[tuple[Any, Path]], folder: Path) -> None:
    """Refuse two slices at one position along the normal (``headers`` sorted by position).

    Only where every slice states its position: without ImagePositionPatient the InstanceNumber
    order is all there is, and files without either keep their name order as before.
    """
    if not all(_has_position(ds) for ds, _ in headers):
        return
    positions = [_slice_position(ds) for ds, _ in headers]
    same = [i for i in range(len(positions) - 1) if positions[i + 1] - positions[i] < _SAME_POSITION_MM]
    if not same:
        return
    i = same[0]
    more = f" ({len(same) - 1} more pair(s) too)" if len(same) > 1 else ""
    raise DataError(
        f"DICOM files {headers[i][1]} and {headers[i + 1][1]} are both at {positions[i]:g} mm along the "
        f"slice normal (ImagePositionPatient projected on it){more}, in series folder {folder}; "
        "expected one slice per position: repeated acquisitions (echoes, time points) or copied "
        "files belong in folders of their own"
    )


def _check_ct_rescale(ds: Any, path: Path) -> None:
    """Refuse a CT slice without RescaleSlope/RescaleIntercept (Type 1 in the CT Image module).

    Without them the stored values are not HU (often off by the usual -1024 intercept), and every
    HU window of sec. 2.2 would silently clip the wrong tissue.
    """
    if str(getattr(ds, "Modality", "")).upper() != "CT":
        return
    missing = [tag for tag in ("RescaleSlope", "RescaleIntercept") if getattr(ds, tag, None) in (None, "")]
    if missing:
        raise DataError(
            f"DICOM file {path} (Modality CT) has no {' or '.join(missing)}; expected both, to convert "
            "stored pixel values to HU (HU = pixel * RescaleSlope + RescaleIntercept)"
        )


def _check_rescale_values(ds: Any, path: Path) -> None:
    """Refuse a RescaleSlope of 0 (every pixel one value) and non-numeric or non-finite rescale tags."""
    for tag, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        try:
            value = _rescale_value(ds, tag, default)
        except (TypeError, ValueError):
            raise DataError(f"DICOM file {path} has {tag} {getattr(ds, tag)!r}; expected a number") from None
        if not math.isfinite(value) or (tag == "RescaleSlope" and value == 0.0):
            raise DataError(
                f"DICOM file {path} has {tag} {value!r}; expected a finite number"
                + (", not 0 (it would map every pixel to the intercept)" if tag == "RescaleSlope" else "")
            )


def _rescale_value(ds: Any, tag: str, default: float) -> float:
    value = getattr(ds, tag, None)
    return default if value is None or value == "" else float(value)


def _slice_position(ds: Any) -> float:
    position = getattr(ds, "ImagePositionPatient", None)
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if position is not None and orientation is not None and len(orientation) == 6:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
        return float(np.dot(normal, np.asarray(position, float)))
    return float(getattr(ds, "InstanceNumber", 0) or 0)


def _pixel_spacing(ds: Any) -> tuple[float, float]:
    spacing = getattr(ds, "PixelSpacing", None)
    if spacing is None or len(spacing) != 2:
        return 1.0, 1.0
    return float(spacing[0]), float(spacing[1])


def _slice_spacing(headers: Sequence[Any]) -> float:
    if len(headers) > 1 and all(getattr(ds, "ImagePositionPatient", None) is not None for ds in headers):
        steps = np.diff([_slice_position(ds) for ds in headers])
        if np.all(steps > 0):
            return float(np.median(steps))
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        value = getattr(headers[0], tag, None)
        if value:
            return float(value)
    return 1.0


def open_volume(
    path: str | Path,
    *,
    slice_axis: int = 2,
    key: str = "image",
    handles: H5Files | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    ranks: Collection[int] = IMAGE_RANKS,
) -> Volume:
    """Open ``path`` with the reader its suffix (or, for a folder, DICOM) calls for.

    ``.nii``/``.nii.gz`` -> :class:`NiftiVolume`, ``.npy``/``.npz`` -> :class:`NumpyVolume`,
    ``.h5``/``.hdf5`` -> :class:`H5Volume`, ``.png`` -> :class:`PngVolume`, ``.dcm`` or a folder
    -> :class:`DicomVolume`.

    Raises:
        DataError: Missing path or an unsupported suffix.
    """
    path = existing_path(path, what="volume", directory_ok=True)
    name = path.name.lower()
    if path.is_dir() or name.endswith(".dcm"):
        return DicomVolume(path)
    if name.endswith(_NIFTI_SUFFIXES):
        return NiftiVolume(path, slice_axis=slice_axis, ranks=ranks)
    if name.endswith((".npy", ".npz")):
        return NumpyVolume(path, key=key, slice_axis=slice_axis, spacing=spacing, ranks=ranks)
    if name.endswith((".h5", ".hdf5")):
        return H5Volume(
            path, key=key, handles=handles or H5Files(), slice_axis=slice_axis, spacing=spacing, ranks=ranks
        )
    if name.endswith(".png"):
        return PngVolume(path)
    raise DataError(
        f"volume {path}: unsupported file type; expected .nii, .nii.gz, .npy, .npz, .h5, .hdf5, "
        ".png, .dcm or a DICOM folder"
    )
