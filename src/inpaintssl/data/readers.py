"""Stored volumes read one 2D slice at a time: NIfTI, NumPy, HDF5, PNG and DICOM.

Every reader is a :class:`Volume`: its header (shape, spacing) is read and checked when it is
constructed, and :meth:`Volume.read` returns one slice ``(H, W)`` (or ``(H, W, C)`` for a 4D
volume, channels last) as stored, without normalisation. A 2D file is a volume of one slice.
The DICOM series reader and its series checks live in :mod:`inpaintssl.data.dicom`;
:class:`~inpaintssl.data.dicom.DicomVolume` is importable from here too.

Axis conventions: a 3D array ``(A0, A1, A2)`` is sliced along ``slice_axis``; the slice keeps the
other two axes in order as rows and columns (``slice_axis=2``: rows ``A0``, columns ``A1``). A 4D
array has its channels on the last axis. Spacing is ``(row_mm, col_mm, slice_mm)``.

Spacing and geometry: a NIfTI file's spacing is its header's voxel sizes (``pixdim``) where they
agree with the affine (sform, else qform) within 1 %, and the lengths of the affine's columns,
with a warning, where they do not, so that volumes in mL follow the geometry viewers show. A DICOM
series' spacing is described in :mod:`inpaintssl.data.dicom`. NumPy, HDF5 and PNG files carry
none; it is given.

Formats that cannot be read slice by slice (``.nii.gz``, ``.npz`` members, PNG) are decompressed
once per process on first read and kept; uncompressed ``.nii`` and ``.npy`` are memory-mapped and
HDF5 is read per slice, so convert large gzip NIfTI collections to ``.nii`` or HDF5. A caller done
with a volume for a while (prediction, between its check of a scan and its turn) drops what is kept
with :meth:`Volume.release`; the next read decompresses the file again.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.npy"
    >>> np.save(p, np.arange(24.0).reshape(2, 3, 4))
    >>> vol = NumpyVolume(p, slice_axis=0)
    >>> vol.slice_shape, vol.num_slices, vol.read(1)[0].tolist()
    ((3, 4), 2, [12.0, 13.0, 14.0, 15.0])
"""

from __future__ import annotations

import functools
import math
import os
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from inpaintssl._lazy import lazy_exports
from inpaintssl.data.base import DataError
from inpaintssl.data.checks import check_rank, check_slice_axis, check_spacing, existing_path
from inpaintssl.data.decompressed import (
    DecompressedSource,
    changed_files,
    current_folder,
    file_states,
    kept_on_disk,
)
from inpaintssl.data.gzip_stream import GzipStream
from inpaintssl.data.loading import H5Files, open_h5
from inpaintssl.data.orientation import Reorientation, axis_codes, check_axis_codes
from inpaintssl.extras import import_optional
from inpaintssl.listing import first_and_more
from inpaintssl.warning_format import warn_each_time

if TYPE_CHECKING:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.data.metaimage import MetaImageVolume
    from inpaintssl.data.nrrd import NrrdVolume

__all__ = [
    "READ_ERRORS",
    "DicomVolume",
    "H5Volume",
    "IMAGE_RANKS",
    "LABEL_RANKS",
    "MetaImageVolume",
    "NiftiVolume",
    "NrrdVolume",
    "NumpyVolume",
    "PIXDIM_AFFINE_TOLERANCE",
    "PngVolume",
    "VOLUME_SUFFIXES",
    "Volume",
    "affine_zooms",
    "import_optional",
    "open_volume",
    "nifti_volume_shape",
    "pixdim_agrees",
    "reader_class",
    "reads_on_threads",
]

IMAGE_RANKS = frozenset({2, 3, 4})
"""A 2D slice, a 3D volume, or a 3D volume with channels last."""
LABEL_RANKS = frozenset({2, 3})
"""Integer class maps: a 2D slice or a 3D volume."""

_RANK_LAYOUTS = MappingProxyType({2: "(H, W)", 3: "(X, Y, Z)", 4: "(X, Y, Z, C)"})
"""The axes an array of each rank a reader takes is read as."""


def _layouts(ranks: Collection[int]) -> str:
    """The layouts of ``ranks`` in words, for the rank error: only those allowed, since a PNG
    (rank 2 only) told that ``(X, Y, Z)`` is expected contradicts its "expected rank 2".

    Example:
        >>> _layouts({2, 3, 4}), _layouts({2})
        ('(H, W), (X, Y, Z) or (X, Y, Z, C)', '(H, W)')
    """
    names = [_RANK_LAYOUTS.get(rank, f"(a rank-{rank} array)") for rank in sorted(ranks)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


READ_ERRORS = (EOFError, OSError, ValueError, KeyError, RuntimeError, zlib.error, zipfile.BadZipFile)
"""What readers raise on data they cannot decode: gzip (EOFError, zlib.error, OSError "not a gzip
file"), nibabel/NumPy memory maps of a short file (ValueError), h5py (OSError, KeyError, RuntimeError),
a truncated ``.npz`` archive or a member whose CRC fails (zipfile.BadZipFile, no OSError)."""

# DicomVolume, MetaImageVolume and NrrdVolume subclass Volume, so their modules import this one:
# their re-exports here are resolved on first use, and open_volume imports them when it meets such
# a path.
__getattr__, __dir__ = lazy_exports(
    "inpaintssl.data",
    {"DicomVolume": "dicom", "MetaImageVolume": "metaimage", "NrrdVolume": "nrrd"},
    globals(),
)


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
        decompressed_folder: Where a compressed volume keeps its decompressed array, memory-mapped
            (:mod:`~inpaintssl.data.decompressed`, set by ``decompressed_into`` when the volume
            was opened); ``None`` keeps it in this process's memory.
    """

    path: Path
    shape: tuple[int, ...]
    spacing: tuple[float, float, float]
    has_geometry: bool = False
    """Whether ``spacing`` comes from the file (NIfTI, DICOM) rather than from parameters."""
    affine: np.ndarray | None = None
    """The voxel-to-world ``(4, 4)`` matrix, for formats that store one (NIfTI)."""
    reorientation: Reorientation | None = None
    """How the stored array is permuted and flipped on reading (:meth:`reorient`); ``None``: as stored."""
    read_in: str | None = None
    """The axis codes :meth:`reorient` was asked for (also when they are the stored ones)."""
    _what: str = "volume"
    decompressed_folder: Path | None = None
    reads_on_threads: bool = True
    """Whether reads of this volume run at once with other volumes' reads on threads (the
    pre-flight check's, :mod:`~inpaintssl.data.preflight`): zlib, file reads and NumPy release
    Python's lock. ``False`` for HDF5 and DICOM (:func:`reads_on_threads`)."""

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
        check_rank(self.shape, ranks, where=f"{what} {path}", layout=_layouts(ranks))
        if 0 in self.shape:
            raise DataError(
                f"{what} {path}: array has shape {self.shape}, an empty axis; expected at least one "
                "voxel along every axis"
            )
        self._what = what
        if len(self.shape) > 2:
            self.slice_axis = check_slice_axis(slice_axis, where=f"{what} {path}") % 3
        else:
            # A 2D file is one slice whatever axis the dataset slices its volumes along; that axis
            # is kept for reorient, which reads the slice as one of those volumes' slices.
            self._volume_slice_axis = check_slice_axis(slice_axis, where=f"{what} {path}") % 3
            self.slice_axis = 0
        self.stored_shape = self.shape
        self._stored_zooms = tuple(float(s) for s in spacing)
        self._set_grid(self.shape, self._stored_zooms)
        self.files = (str(path),)
        self.decompressed_folder = current_folder()

    @property
    def files(self) -> tuple[str, ...]:
        """Every file this volume reads (for a run manifest).

        Setting it (when a reader has parsed the header) notes each file's size and modification
        time: a volume reads its files as they were then, or refuses (:meth:`read`).
        """
        return self._read_files

    @files.setter
    def files(self, files: Sequence[str]) -> None:
        self._read_files = tuple(files)
        try:
            self._opened_as: tuple[tuple[str, int, int], ...] | None = file_states(self._read_files)
        except OSError:
            self._opened_as = None  # gone already: the first read says so, naming the file

    @property
    def source(self) -> str:
        """The file as messages name it, with the array read inside it where it holds several.

        Example:
            >>> import numpy as np, tempfile, pathlib
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "scans.npz"
            >>> np.savez(path, t1=np.ones((4, 4, 2)), t2=np.ones((4, 4, 2)))
            >>> NumpyVolume(path, key="t2").source.endswith("scans.npz (array 't2')")
            True
        """
        return str(self.path)

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
    def stored_zooms(self) -> tuple[float, ...]:
        """Voxel sizes (mm) of the stored array's axes, in stored order (what ``spacing`` is made from)."""
        return self._stored_zooms

    @property
    def world_affine(self) -> np.ndarray | None:
        """Voxel-to-world ``(4, 4)`` matrix (RAS+) of the array as read, where the format states one."""
        return self.affine

    @property
    def stored_grid(self) -> tuple[int, ...]:
        """The stored shape as a volume: a 2D file is ``(X, Y, 1)``, its affine's third axis its normal."""
        return (*self.stored_shape, 1) if len(self.stored_shape) == 2 else self.stored_shape

    @property
    def stored_orientation(self) -> str | None:
        """Axis codes of the stored array (:mod:`~inpaintssl.data.orientation`), ``None`` if unknown.

        Unknown for formats without patient geometry (NumPy, HDF5, PNG, DICOM without
        ImageOrientationPatient) and singular affines. A 2D file with an affine (NIfTI) is read
        as ``(X, Y, 1)``: its third code is the direction of the slice's normal.
        """
        if self.reorientation is not None:
            return self.reorientation.source
        if "_stored_codes" not in self.__dict__:
            # Asked once per training slice when a run records its orientations: computed once.
            affine = self.world_affine
            self.__dict__["_stored_codes"] = None if affine is None else axis_codes(affine)
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
        changes nothing. A 2D file is read as ``(X, Y, 1)`` (:attr:`stored_grid`): its one slice
        is turned in-plane (transposed, mirrored) into the slices of ``target`` volumes, and
        ``shape`` becomes 3D; :meth:`to_stored` brings a label map back to its two axes.

        Args:
            target: Axis codes (:mod:`~inpaintssl.data.orientation`).
            slice_axis: Slice the reoriented array along this axis (default: the volume's own
                ``slice_axis``; a DICOM series' is 2, its stored slices; a 2D file's, the axis
                it was opened with).

        Raises:
            DataError: The file states no orientation (see :attr:`stored_orientation`), or
                ``target`` is not an axis code, or ``slice_axis`` not one of 0, 1, 2, or the
                file is a 2D slice in another plane than ``target``'s slices along ``slice_axis``
                (its normal, the affine's third axis, runs along another world axis).
        """
        target = check_axis_codes(target, where=f"{self._what} {self.path}: orientation", error=DataError)
        if slice_axis is not None:
            slice_axis = check_slice_axis(slice_axis, where=f"{self._what} {self.path}")
        source = self.stored_orientation
        if source is None:
            raise DataError(
                f"{self._what} {self.path} cannot be reoriented to {target}: it states no orientation "
                f"(shape {self.stored_shape}; a voxel-to-world affine is needed: NIfTI with sform_code or "
                "qform_code above 0, a 2D slice too, or DICOM with ImageOrientationPatient and "
                "ImagePositionPatient)"
            )
        # Kept from the first call, before any reorientation changed the affine.
        stored_affine = self.__dict__.setdefault("_stored_world_affine", self.world_affine)
        assert stored_affine is not None  # stored_orientation is known
        change = Reorientation.between(source, target)
        zooms = self._stored_zooms
        if len(self.stored_shape) == 2:
            axis = self._volume_slice_axis if slice_axis is None else slice_axis % 3
            if change.axes[axis] != 2:
                raise DataError(
                    f"{self._what} {self.path} cannot be reoriented to {target} with slices along axis "
                    f"{axis}: it is a 2D slice whose normal (its affine's third axis, axis codes "
                    f"{source}) runs along {source[2]}, but those slices are normal to {target[axis]}; "
                    "a single slice can be turned within its plane, never into another plane"
                )
            slice_axis = axis
            zooms = (*zooms[:2], self._slice_thickness(stored_affine))
        if slice_axis is not None:
            self.slice_axis = slice_axis % 3
        self.read_in = target
        self.reorientation = None if change.is_identity else change
        grid = self.stored_grid
        self._set_grid(change.shape(grid), change.spacing(zooms))
        self._set_world_affine(change.affine(stored_affine, grid))

    @staticmethod
    def _slice_thickness(affine: np.ndarray) -> float:
        # A 2D header sizes rows and columns only; the slice is as thick as its affine's third column.
        thickness = affine_zooms(affine, 3)[2]
        return thickness if math.isfinite(thickness) and thickness > 0 else 1.0

    def to_stored(self, array: np.ndarray) -> np.ndarray:
        """``array`` on the grid as read (``shape``'s axes first, e.g. a label map) in the stored layout.

        Undoes :meth:`reorient` (a view where it can be), so that the result lies on the stored
        voxels that the file's affine and header describe; a 2D file read as ``(X, Y, 1)`` gets its
        two axes back. An array of a volume read as stored is returned as it is.
        """
        if self.reorientation is not None:
            array = self.reorientation.invert(array)
        if len(self.stored_shape) == 2 and len(self.shape) == 3:
            array = array.reshape(*self.stored_shape, *array.shape[3:])
        return array

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
        if self._opened_as is not None and self._reads_files_per_slice():
            # The bytes are read now, at the offsets and in the layout the header gave: after a
            # rewrite they would be read as the old file's (a truncated memory map kills the process).
            self._refuse_changed(self._opened_as)
        try:
            change = self.reorientation
            if change is None:
                return self._read_stored(self.slice_axis, index)
            axis, stored_index = change.stored_slice(self.slice_axis, index, self.stored_grid)
            return np.ascontiguousarray(change.plane(self._read_stored(axis, stored_index), self.slice_axis))
        except DataError:
            # A reader's own refusal already names its file and the cause (a DICOM transfer syntax
            # without a decoder); DataError is a ValueError, which the clause below would re-wrap
            # as "truncated or corrupt".
            raise
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
        """The stored array, or a lazy object that supports NumPy basic indexing.

        A reader that keeps a decompressed array keeps it in ``self.__dict__["_cache"]`` and
        rebuilds it there when it is missing, so that :meth:`release` can drop it; one that
        decompresses the whole volume returns :meth:`_kept`, which also keeps it on disk under a
        :attr:`decompressed_folder`.
        """

    def _reads_files_per_slice(self) -> bool:
        """Whether each :meth:`read` reads this volume's files again (a memory map, a file proxy),
        with what their header said when the volume was opened; checked unchanged before each read.

        ``False`` (the default) for an array read whole and kept (:meth:`_kept`, which checks the
        files around that one read) and for a format whose every read parses its file's own header
        again (DICOM).
        """
        return False

    def _kept(self, decompress: Callable[[], np.ndarray]) -> np.ndarray:
        """The stored array ``decompress`` returns, kept for the reads after this one.

        Kept in ``self.__dict__["_cache"]`` (what :meth:`release` drops): the array itself, or
        under a :attr:`decompressed_folder` the memory map of its ``.npy`` copy there.
        """
        kept = self.__dict__.get("_cache")
        if kept is None:
            # The record is of the files as the header was read from them: the bytes are decoded
            # with that header, so a copy of other bytes must neither be made nor kept under it.
            reader, source = type(self).__name__, self._source_as_stored()
            if self._opened_as is None:
                record = DecompressedSource.of(reader=reader, source=source, files=self.files)
            else:
                record = DecompressedSource(reader=reader, source=source, files=self._opened_as)
            decompress = functools.partial(
                self._unchanged_since_opened, functools.partial(self._slices_contiguous, decompress), record
            )
            if self.decompressed_folder is None:
                kept = decompress()
            else:
                kept = kept_on_disk(
                    self.decompressed_folder,
                    record.name,
                    shape=self.stored_shape,
                    what=self.source,
                    decompress=decompress,
                    source=record,
                )
            self.__dict__["_cache"] = kept
        return kept

    def _source_as_stored(self) -> str:
        """:attr:`source` with its file named by its real path, as a decompressed copy's record keeps it.

        A relative path, a ``..`` or a symbolic link to the same file then names one copy, not one
        per spelling, and the record names the file wherever ``inpaintssl cache`` is run from.
        """
        source, given = self.source, str(self.path)
        return os.path.realpath(given) + source[len(given) :] if source.startswith(given) else source

    def _unchanged_since_opened(
        self, decompress: Callable[[], np.ndarray], opened: DecompressedSource
    ) -> np.ndarray:
        """``decompress()``, refused if the files differ from ``opened``, before or after it.

        Raises:
            DataError: A file was rewritten or removed since its header was read.
        """
        self._refuse_changed(opened.files)
        array = decompress()
        self._refuse_changed(opened.files)  # rewritten while it was read: a mix of old and new bytes
        return array

    def _refuse_changed(self, opened: tuple[tuple[str, int, int], ...]) -> None:
        changed = changed_files(opened)
        if changed:
            raise DataError(
                f"{self._what} {self.source}: {'; '.join(changed)} since it was opened (its header "
                "read); expected its files as they were then (size and modification time): open it "
                "again to read the new contents"
            )

    def _slices_contiguous(self, decompress: Callable[[], np.ndarray]) -> np.ndarray:
        """``decompress()``'s array laid out so that each slice :meth:`read` takes is one block.

        Fortran order when the stored axis read is the last (a NIfTI volume's axial slices, a
        DICOM series' own), C order when it is the first; copied only where it is not so already.
        Read along the other axis, one value in every few would be taken across the whole array:
        in a ``data.cache_dir`` copy, every page of the file for each slice.
        """
        array = decompress()
        if array.ndim < 3:
            return array
        axis = self.slice_axis if self.reorientation is None else self.reorientation.axes[self.slice_axis]
        if axis == 2:
            return np.asfortranarray(array)
        return np.ascontiguousarray(array) if axis == 0 else array

    def preload(self) -> None:
        """Read now what the first :meth:`read` would, and keep it: its first slice is read.

        For the formats that keep a whole array (a ``.nii.gz`` or ``.npz`` array, a PNG, a DICOM
        series read across its slices) that is the whole decompression, and the reads after it
        take none; memory-mapped and per-slice formats read one slice. It fails as that read
        would, naming the file. :meth:`release` drops what it kept. ``predict`` calls it on a
        background thread for the next input while a case is predicted
        (:mod:`~inpaintssl.inference.read_ahead`).

        Example:
            >>> import numpy as np, tempfile, pathlib
            >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.npz"
            >>> np.savez(p, image=np.arange(8.0).reshape(2, 2, 2))
            >>> vol = NumpyVolume(p)
            >>> vol.preload()
            >>> "_cache" in vol.__dict__, vol.read(1).tolist()
            (True, [[1.0, 3.0], [5.0, 7.0]])
        """
        self.read(0)

    def release(self) -> None:
        """Drop the array decompressed on the first :meth:`read`; the next read reads the file again.

        Only what a read built is dropped (a ``.nii.gz`` or ``.npz`` array, a PNG, a DICOM series read
        across its slices, a ``.npy`` memory map): the header, spacing, geometry and any
        :meth:`reorient` stay, and reads after it return the same values as before: a file changed
        since the volume was opened is refused where it would be decompressed again (its
        ``data.cache_dir`` copy, of the file as it was, is read where there is one). Formats read per
        slice hold nothing to drop; an HDF5 file's handle stays open, as other volumes of the same file
        share it. Slices :meth:`read` returned earlier may be views of the dropped array and keep it in
        memory while they are referenced.

        Example:
            >>> import numpy as np, tempfile, pathlib
            >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.npz"
            >>> np.savez(p, image=np.arange(8.0).reshape(2, 2, 2))
            >>> vol = NumpyVolume(p)
            >>> before = vol.read(1)
            >>> vol.release()
            >>> "_cache" in vol.__dict__, np.array_equal(vol.read(1), before)
            (False, True)
        """
        self.__dict__.pop("_cache", None)

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


PIXDIM_AFFINE_TOLERANCE = 0.01
"""How far (relative) a NIfTI header's voxel sizes may differ from the lengths of its affine's
columns before the reader warns and takes the affine's: far above float32 rounding and the
scanners' own inconsistencies in the last digits, far below a stale or reset ``pixdim``."""


def affine_zooms(affine: np.ndarray, count: int) -> tuple[float, ...]:
    """Voxel sizes the affine implies: the lengths of its first ``count`` columns.

    Example:
        >>> affine_zooms(np.diag([0.5, 2.0, 3.0, 1.0]), 3)
        (0.5, 2.0, 3.0)
    """
    return tuple(
        float(n) for n in np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :count] ** 2).sum(axis=0))
    )


def pixdim_agrees(from_affine: Sequence[float], pixdim: Sequence[float]) -> bool:
    """Whether header voxel sizes agree with the affine's, each pair within :data:`PIXDIM_AFFINE_TOLERANCE`.

    Example:
        >>> pixdim_agrees((1.0, 1.0, 2.0), (1.005, 1.0, 2.0)), pixdim_agrees((1.0, 1.0, 2.0), (1.0, 1.0, 2.5))
        (True, False)
    """
    return all(
        abs(a - z) <= PIXDIM_AFFINE_TOLERANCE * max(abs(a), abs(z)) for a, z in zip(from_affine, pixdim)
    )


def _zooms_text(zooms: Sequence[float]) -> str:
    return " x ".join(f"{z:.6g}" for z in zooms) + " mm"


class NiftiVolume(Volume):
    """A ``.nii`` / ``.nii.gz`` volume (nibabel, ``nifti`` extra); scl_slope/inter are applied.

    A ``.nii.gz`` is decompressed whole on the first read, through
    :class:`~inpaintssl.data.gzip_stream.GzipStream` (faster than nibabel's own gzip reader, and
    it checks the file's CRC, which nibabel's read stops short of); a ``.nii`` is read as nibabel
    reads it, memory-mapped, and one shorter than its header's array needs (``vox_offset`` plus
    the voxels) is refused when opened, naming the bytes it holds and those expected.

    Spacing comes from the header's voxel sizes (``pixdim``), in mm whatever spatial unit the
    header states (``xyzt_units``: a file in metres or microns is converted); ``affine`` is in mm
    too, ``file_affine`` as the file holds it. Where the voxel sizes and the lengths of the
    affine's columns differ by more than 1 %, spacing is the affine's, with a warning.
    ``orientation`` (axis codes such as ``"RAS"``) reads the volume in that axis order
    (:meth:`Volume.reorient`); a 2D file is read as ``(X, Y, 1)`` and turned within its plane. A
    header whose ``sform_code`` and ``qform_code`` are both 0 states no orientation: nibabel's
    stand-in affine for it (the voxel sizes, x mirrored) says nothing about the patient, so
    :attr:`Volume.stored_orientation` is ``None`` and such a file is refused for reorientation
    instead of being read mirrored. Singleton axes after the third are dropped
    (:func:`nifti_volume_shape`: one time point, an ITK vector image's ``(X, Y, Z, 1, C)``);
    ``file_shape`` is the shape the header states. A suffix in any letter case is read under its
    own name (``Scan.Nii.Gz``).
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
            image = _nifti_image(nib, path)
        except Exception as exc:  # nibabel raises many types for a bad file
            gzip_named = path.name.lower().endswith(".gz")
            if not gzip_named and _is_gzip(path):
                raise DataError(f"NIfTI file {path} is gzip-compressed: rename it to .nii.gz") from exc
            if gzip_named and not _is_gzip(path) and _is_nifti_header(path):
                raise DataError(f"NIfTI file {path} is not gzip-compressed: rename it to .nii") from exc
            raise DataError(f"NIfTI file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
        self._image = image
        if not path.name.lower().endswith(".gz"):
            _check_nifti_length(path, image.dataobj)
        mm = nifti_mm_per_unit(image.header, path=path)
        file_affine = np.asarray(image.affine, dtype=np.float64)
        affine = np.diag([mm, mm, mm, 1.0]) @ file_affine
        zooms = _checked_zooms(image.header, affine, mm, path=path)
        self.file_shape: tuple[int, ...] = tuple(int(n) for n in image.shape)
        """The array's shape as the header states it, singleton axes after the third included."""
        shape = nifti_volume_shape(self.file_shape)
        # The checks in Volume.__init__ (rank, empty axes) name the header's shape too where it
        # differs from the one they check; later messages name the file alone.
        what = "NIfTI file" if shape == self.file_shape else f"NIfTI file (stored shape {self.file_shape})"
        super().__init__(path, shape, slice_axis=slice_axis, ranks=ranks, spacing=zooms, what=what)
        self._what = "NIfTI file"
        self._gzipped = path.name.lower().endswith(".gz")
        # Dropping singleton axes is a view of nibabel's memory-mapped proxy, never a copy: made
        # once here, not on every slice read.
        self._proxy = image.dataobj if shape == self.file_shape else image.dataobj.reshape(shape)
        self.has_geometry = True
        self.file_affine: np.ndarray = file_affine
        """The voxel-to-world matrix in the file's own unit (what a label map written for it copies)."""
        self.affine: np.ndarray = affine  # always known here
        self.header = image.header
        """The file's NIfTI header (what a label map written for this image copies)."""
        if orientation is not None:
            self.reorient(orientation)

    @property
    def stored_orientation(self) -> str | None:
        """As :attr:`Volume.stored_orientation`; ``None`` when the header codes no sform or qform."""
        if int(self.header["sform_code"]) == 0 and int(self.header["qform_code"]) == 0:
            return None
        return super().stored_orientation

    def _reads_files_per_slice(self) -> bool:
        return not self._gzipped

    def _array(self) -> Any:
        return self._kept(self._decompress) if self._gzipped else self._proxy

    def _decompress(self) -> np.ndarray:
        """The whole ``.nii.gz`` array through :class:`~inpaintssl.data.gzip_stream.GzipStream`.

        nibabel's own proxy reads it through ``gzip.GzipFile``: the same values, more slowly
        (:mod:`inpaintssl.data.gzip_stream`). The image's header has its scaling reset on load, so
        the proxy's spec (shape, dtype, offset, slope, intercept, order) is what is reused.
        """
        proxy = self._image.dataobj
        spec = (proxy.shape, proxy.dtype, proxy.offset, proxy.slope, proxy.inter)
        with GzipStream(self.path) as stream:
            array = np.asarray(type(proxy)(stream, spec, mmap=False, order=proxy.order))
            stream.skip_to_end()  # the trailer's CRC and length, which the last read stops short of
        return array.reshape(self.stored_shape)


def nifti_volume_shape(file_shape: Sequence[int]) -> tuple[int, ...]:
    """The shape a NIfTI array of ``file_shape`` is read as: its singleton axes after the third dropped.

    In NIfTI the fourth axis is time and the fifth holds a voxel's vector components, so a 3D scan
    or label map saved with one time point is ``(X, Y, Z, 1)``, and a multi-channel image saved as
    an ITK vector image is ``(X, Y, Z, 1, C)``: they are the volume ``(X, Y, Z)`` and the
    channels-last volume ``(X, Y, Z, C)``. Axes of more than one voxel are kept, and so are the
    first three (a one-slice volume stays ``(X, Y, 1)``).

    Example:
        >>> [nifti_volume_shape(s) for s in [(4, 4, 2, 1), (4, 4, 2, 1, 3), (4, 4, 1)]]
        [(4, 4, 2), (4, 4, 2, 3), (4, 4, 1)]
        >>> nifti_volume_shape((4, 4, 2, 5, 3))  # time points and channels: left for the rank check
        (4, 4, 2, 5, 3)
    """
    shape = tuple(int(n) for n in file_shape)
    return shape[:3] + tuple(n for n in shape[3:] if n != 1)


def _check_nifti_length(path: Path, proxy: Any) -> None:
    """Refuse an uncompressed NIfTI file shorter than its header's array needs, when it is opened.

    nibabel opens such a file without complaint and fails at the first slice past its end, so a
    copy cut short would pass the checks made at open and stop a run later. A ``.nii.gz`` cannot
    be measured without decompressing it; its reader checks its length and CRC when read.
    """
    needed = int(proxy.offset) + math.prod(int(n) for n in proxy.shape) * np.dtype(proxy.dtype).itemsize
    size = path.stat().st_size
    if size < needed:
        raise DataError(
            f"NIfTI file {path} holds {size} bytes; expected {needed} (vox_offset {int(proxy.offset)}, "
            f"then {' x '.join(str(int(n)) for n in proxy.shape)} voxels of "
            f"{np.dtype(proxy.dtype).itemsize} byte(s)): truncated?"
        )


def _nifti_image(nib: Any, path: Path) -> Any:
    """nibabel's image of the single-file NIfTI at ``path``, opened under exactly that name.

    ``nibabel.load`` rebuilds the name from its own suffixes, with ``.nii`` in lower case unless
    the given one is all upper case: ``Scan.Nii.Gz`` is looked for as ``Scan.nii.Gz``, which is
    missing ("No such file" for a file that is there) or, worse, another file that it reads in its
    place. So a ``.nii`` spelled in mixed case is opened the way ``load`` opens the others, class
    by header sniff, but through a file map that keeps the name; nibabel's opener recognises the
    gzip suffix in any case.
    """
    gzip_suffix = 3 if path.name.lower().endswith(".gz") else 0
    if path.name[: len(path.name) - gzip_suffix][-4:] in (".nii", ".NII"):
        return nib.load(path)
    from nibabel.filebasedimages import ImageFileError

    # nibabel.load's own checks, in its words:
    if path.stat().st_size == 0:
        raise ImageFileError(f"Empty file: '{path}'")
    if gzip_suffix and not _is_gzip(path):
        raise ImageFileError(f"File {path} is not a gzip file")
    sniff = None
    for image_class in (nib.Nifti1Image, nib.Nifti2Image):
        matches, sniff = image_class.path_maybe_image(path, sniff)
        if matches:
            return image_class.from_file_map(image_class.make_file_map({"image": str(path)}))
    raise ImageFileError(f'Cannot work out file type of "{path}"')


_GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(2) == _GZIP_MAGIC
    except OSError:
        return False


def _is_nifti_header(path: Path) -> bool:
    """Whether ``path`` starts with an uncompressed single-file NIfTI-1 or NIfTI-2 header (its magic)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(348)
    except OSError:
        return False
    return head[344:348] == b"n+1\x00" or head[4:12] == b"n+2\x00\r\n\x1a\n"


def _checked_zooms(header: Any, affine: np.ndarray, mm: float, *, path: Path) -> tuple[float, ...]:
    """The voxel sizes (mm) a NIfTI volume is measured with: ``pixdim``, or the affine's where they differ.

    The affine (sform, else qform) is what viewers place the voxels with, and what the label map
    written for the file copies; ``pixdim`` is what volumes in mL and the spacing checks used. Where
    they disagree (a stale ``pixdim`` after a resampling that rewrote only the sform, a ``pixdim``
    of 0 that nibabel resets to 1 with only a log line), measuring by ``pixdim`` would put volumes
    and spacing at odds with the geometry, silently. So the affine's column lengths are taken there,
    with a warning; where they agree within 1 %, ``pixdim`` is kept, as it always was, so that
    results for consistent files do not move by float rounding. Not refused: many real files carry
    small inconsistencies, and the affine is a sound answer (MRtrix3 warns too).
    """
    zooms = tuple(float(z) * mm for z in header.get_zooms()[:3])
    from_affine = affine_zooms(affine, len(zooms))
    if pixdim_agrees(from_affine, zooms):
        return zooms
    source = "sform" if int(header["sform_code"]) > 0 else "qform"
    if not all(math.isfinite(a) and a > 0 for a in from_affine):
        # A singular affine places nothing; its zero column is no voxel size to measure with.
        warn_each_time(
            f"NIfTI file {path}: its affine ({source}) has voxels of {_zooms_text(from_affine)}, a "
            f"degenerate geometry; volumes in mL and the spacing checks use the header's voxel sizes "
            f"(pixdim), {_zooms_text(zooms)}",
            UserWarning,
        )
        return zooms
    warn_each_time(
        f"NIfTI file {path}: its header's voxel sizes (pixdim) are {_zooms_text(zooms)} but its "
        f"affine ({source}) has voxels of {_zooms_text(from_affine)} (the lengths of its columns), "
        f"more than {PIXDIM_AFFINE_TOLERANCE:.0%} apart; volumes in mL and the spacing checks use the "
        f"affine's {_zooms_text(from_affine)}, as viewers and the label maps written for it do. If the "
        "pixdim is right, correct the file's affine",
        UserWarning,
    )
    return from_affine


def _npz_member_shape(path: Path, key: str) -> tuple[int, ...]:
    with zipfile.ZipFile(path) as archive:
        names = [n.removesuffix(".npy") for n in archive.namelist()]
        if key not in names:
            raise DataError(f"NumPy archive {path} has no array {key!r}; it holds {sorted(names)}")
        with archive.open(f"{key}.npy") as member:
            shape, dtype = _npy_header(member)
    if dtype.hasobject:
        # np.load refuses it (allow_pickle=False) only when the data is read, as if it were damaged.
        raise DataError(
            f"NumPy archive {path}: array {key!r} has dtype {dtype} (Python objects), which is never "
            "loaded, as reading it would mean unpickling the file's data; expected a numeric array "
            "(save it with e.g. np.savez(..., image=array.astype(np.float32)))"
        )
    return tuple(shape)


def _npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype an ``.npy`` stream's header announces, read without its data."""
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(stream)
    return tuple(shape), dtype


_NPY_MAGIC = b"\x93NUMPY"
"""How every ``.npy`` file starts (NumPy's format, :mod:`numpy.lib.format`)."""


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The shape of the ``.npy`` array ``path``, its header checked before NumPy loads it.

    Without its magic, ``np.load`` takes a file for a pickle and refuses it as "pickled (object)
    data": said of an HTML page a failed download saved, that sends the user looking for a flag.
    """
    with path.open("rb") as stream:
        start = stream.read(len(_NPY_MAGIC))
        if start != _NPY_MAGIC:
            hint = ""
            if start.startswith(b"PK"):
                hint = " (a zip archive: an .npz saved under an .npy name?)"
            elif start.lstrip().startswith(b"<"):
                hint = " (text markup: a web page saved by a failed download?)"
            raise DataError(
                f"NumPy file {path} is not a NumPy .npy file (expected the \\x93NUMPY magic; found "
                f"{start!r}{hint})"
            )
        stream.seek(0)
        _, dtype = _npy_header(stream)
    if dtype.hasobject:
        raise DataError(
            f"NumPy file {path} has dtype {dtype} (Python objects: pickled data, no image), which is never "
            "loaded, as reading it would mean unpickling the file's data; expected a numeric array (save "
            "it with e.g. np.save(path, array.astype(np.float32)))"
        )
    # Loaded (memory-mapped) for the shape: NumPy also checks that the file holds the data its header
    # announces.
    return tuple(np.load(path, mmap_mode="r").shape)


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
        self._archive = path.suffix.lower() == ".npz"
        try:
            if self._archive:
                shape = _npz_member_shape(path, key)
            else:
                shape = _npy_shape(path)
        except DataError:
            raise  # already names the file and what is wrong (no .npy, a missing or object-dtype array)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"NumPy file {path} cannot be read: {exc}") from exc
        spacing = _given_spacing(spacing, shape, where=f"NumPy file {path}")
        super().__init__(path, shape, slice_axis=slice_axis, ranks=ranks, spacing=spacing, what="NumPy file")

    @property
    def source(self) -> str:
        """The file, and for an ``.npz`` archive the array read (see :attr:`Volume.source`)."""
        return f"{self.path} (array {self.key!r})" if self._archive else str(self.path)

    def _reads_files_per_slice(self) -> bool:
        return not self._archive

    def _array(self) -> Any:
        if self._archive:
            return self._kept(self._decompress)
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = np.load(self.path, mmap_mode="r")
            self.__dict__["_cache"] = cache
        return cache

    def _decompress(self) -> np.ndarray:
        with np.load(self.path) as archive:
            return np.asarray(archive[self.key])


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

    @property
    def source(self) -> str:
        """The file and the dataset read (see :attr:`Volume.source`)."""
        return f"{self.path} (dataset {self.key!r})"

    # h5py holds one lock over every HDF5 call, decompression included: reads on threads take
    # turns and contend for it (12 cases of 256x256x64 checked on 2 threads: 0.83 s against 0.63 s
    # one by one, uncompressed; 1.41 s against 1.24 s, gzip).
    reads_on_threads = False

    def _reads_files_per_slice(self) -> bool:
        return True

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
        holds = f"datasets {first_and_more(map(repr, listed), limit=_H5_LISTED)}" if listed else "no datasets"
        raise DataError(
            f"HDF5 file {path}: {key!r} is a group, not a dataset; it holds {holds}; "
            f"expected {key!r} to name the array itself (e.g. the key of one of those datasets)"
        )
    return tuple(int(s) for s in node.shape)


class PngVolume(Volume):
    """A 2D PNG mask or greyscale slice read with Pillow (a matplotlib dependency), values preserved.

    Palette PNGs give their palette indices; images with colour or alpha bands (``RGB``, ``RGBA``,
    ``LA``) are refused, naming the mode. The image is
    decoded when the volume is opened and kept; after :meth:`~Volume.release` the next read
    decodes the file again.
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
                bands = image.getbands()
                if len(bands) > 1:
                    # Said before the rank check, whose "rank 3 (shape (H, W, 4))" does not say
                    # that the file is a colour picture, as annotation tools often export masks.
                    raise DataError(
                        f"PNG file {path} has mode {image.mode!r} ({len(bands)} bands: {', '.join(bands)}), "
                        "colour or with an alpha channel; expected a single band: a greyscale slice, "
                        "or a mask whose pixel values are the class values; save it as greyscale "
                        "('L', or 'I;16' for 16 bits) or palette ('P')"
                    )
                self._cache = np.asarray(image)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"PNG file {path} cannot be read: {exc}") from exc

    def _array(self) -> Any:
        if "_cache" not in self.__dict__:
            self._cache_array(self.path)
        return self._cache


_READERS_BY_SUFFIX: tuple[tuple[tuple[str, ...], type[Volume]], ...] = (
    ((".nii", ".nii.gz"), NiftiVolume),
    ((".npy", ".npz"), NumpyVolume),
    ((".h5", ".hdf5"), H5Volume),
    ((".png",), PngVolume),
)
_METAIMAGE_SUFFIXES = (".mha", ".mhd")
_NRRD_SUFFIXES = (".nrrd", ".nhdr")
VOLUME_SUFFIXES: tuple[str, ...] = (
    *(s for suffixes, _ in _READERS_BY_SUFFIX for s in suffixes),
    *_METAIMAGE_SUFFIXES,
    *_NRRD_SUFFIXES,
    ".dcm",
)
"""Every file suffix :func:`reader_class` takes, in lower case (names match in any case)."""
_SUPPORTED = f"{', '.join(VOLUME_SUFFIXES)} or a DICOM folder"


def reader_class(path: str | Path) -> type[Volume]:
    """The :class:`Volume` class :func:`open_volume` reads ``path`` with, from its suffix (any case).

    ``.nii``/``.nii.gz`` -> :class:`NiftiVolume`, ``.npy``/``.npz`` -> :class:`NumpyVolume`,
    ``.h5``/``.hdf5`` -> :class:`H5Volume`, ``.png`` -> :class:`PngVolume`, ``.mha``/``.mhd`` ->
    :class:`~inpaintssl.data.metaimage.MetaImageVolume`, ``.nrrd``/``.nhdr`` ->
    :class:`~inpaintssl.data.nrrd.NrrdVolume`, ``.dcm`` or a folder ->
    :class:`~inpaintssl.data.dicom.DicomVolume`. Only a folder is looked at on disk; a file need
    not exist.

    Example:
        >>> reader_class("knee/case01.nii.gz").__name__, reader_class("scans/Scan.H5").__name__
        ('NiftiVolume', 'H5Volume')

    Raises:
        DataError: An unsupported suffix, naming it and those supported.
    """
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() or name.endswith(".dcm"):
        from inpaintssl.data.dicom import DicomVolume  # here: dicom.py imports this module

        return DicomVolume
    if name.endswith(_METAIMAGE_SUFFIXES):
        from inpaintssl.data.metaimage import MetaImageVolume  # here: metaimage.py imports this module

        return MetaImageVolume
    if name.endswith(_NRRD_SUFFIXES):
        from inpaintssl.data.nrrd import NrrdVolume  # here: nrrd.py imports this module

        return NrrdVolume
    for suffixes, reader in _READERS_BY_SUFFIX:
        if name.endswith(suffixes):
            return reader
    raise DataError(f"volume {path}: unsupported file type; expected {_SUPPORTED}")


def reads_on_threads(path: str | Path) -> bool:
    """Whether :func:`open_volume` opens ``path`` as a volume whose reads run on threads at once:
    its :func:`reader_class`'s :attr:`Volume.reads_on_threads`. ``True`` for an unsupported
    suffix, which opening it refuses.

    Example:
        >>> reads_on_threads("scan.nii.gz"), reads_on_threads("scans/Scan.H5"), reads_on_threads("ct/1.dcm")
        (True, False, False)
    """
    try:
        return reader_class(path).reads_on_threads
    except DataError:
        return True


def open_volume(
    path: str | Path,
    *,
    slice_axis: int = 2,
    key: str = "image",
    handles: H5Files | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    ranks: Collection[int] = IMAGE_RANKS,
) -> Volume:
    """Open ``path`` with the reader its suffix (or, for a folder, DICOM) calls for: its
    :func:`reader_class`.

    Raises:
        DataError: Missing path or an unsupported suffix.
    """
    path = existing_path(path, what="volume", directory_ok=True)
    reader = reader_class(path)
    if reader is NiftiVolume:
        return NiftiVolume(path, slice_axis=slice_axis, ranks=ranks)
    if reader is NumpyVolume:
        return NumpyVolume(path, key=key, slice_axis=slice_axis, spacing=spacing, ranks=ranks)
    if reader is H5Volume:
        return H5Volume(
            path, key=key, handles=handles or H5Files(), slice_axis=slice_axis, spacing=spacing, ranks=ranks
        )
    if reader is PngVolume:
        return PngVolume(path)
    from inpaintssl.data.metaimage import MetaImageVolume  # here: metaimage.py imports this module

    if reader is MetaImageVolume:
        return MetaImageVolume(path, slice_axis=slice_axis, ranks=ranks)
    from inpaintssl.data.nrrd import NrrdVolume  # here: nrrd.py imports this module

    if reader is NrrdVolume:
        return NrrdVolume(path, slice_axis=slice_axis, ranks=ranks)
    from inpaintssl.data.dicom import DicomVolume  # here: dicom.py imports this module

    assert reader is DicomVolume, reader
    return DicomVolume(path)
