"""MetaImage volumes, ITK's own format (``.mha``, or an ``.mhd`` header beside its ``.raw`` or
``.zraw`` data), read with NumPy and zlib: no ITK needed.

Many segmentation collections ship in it (the OAI-ZIB knee MRIs and their cartilage label maps,
SKI10, PROMISE12). A header is ``Key = Value`` lines ending with ``ElementDataFile``: ``LOCAL``
(the data follows in the same file) or the data file's name beside the header. Read here:
``NDims`` 2 or 3, ``DimSize``, ``ElementType`` (``MET_UCHAR`` ... ``MET_DOUBLE``),
``ElementNumberOfChannels`` (channels last), ``ElementSpacing`` (else ``ElementSize``, else 1 mm),
``Offset`` (or ``Position``/``Origin``), ``TransformMatrix`` (or ``Rotation``/``Orientation``),
``BinaryDataByteOrderMSB`` (or ``ElementByteOrderMSB``), ``BinaryData`` (``False``: the voxels
are written as text, whitespace-separated numbers, as MetaIO writes and reads them),
``CompressedData`` (one zlib or gzip stream, both of which MetaIO inflates) and ``HeaderSize``
(bytes before the data in an ``.mhd``'s data file; -1: the data ends the file).
An ``ElementDataFile`` that MetaIO reads as a list of slice files (a value starting with ``LIST``)
or as a numbered pattern of their names (one holding a ``%``) is refused; any other value names
one file, spaces included (``knee scan.raw``, as ITK writes for ``knee scan.mhd``).

Geometry is ITK's: voxel ``(i, j, k)`` lies at ``Offset + D @ (spacing * (i, j, k))`` in LPS
millimetres, where column ``n`` of the direction matrix ``D`` is the ``n``-th run of NDims values
of ``TransformMatrix``; :attr:`MetaImageVolume.affine` is that in NIfTI's RAS+, so the volume
reorients and its label maps overlay as a NIfTI file's do. The data runs x fastest (then y, then
z; channels fastest of all), so the array is ``(X, Y, Z)`` or ``(X, Y, Z, C)``, as nibabel reads
NIfTI: the same scan converted to NIfTI by ITK reads alike. A 2-D image is ``(X, Y)``, or, with
channels, one slice ``(X, Y, 1, C)`` of spacing ``(sx, sy, 1)``, as a 2-D NIfTI image of several
channels is read; its third axis is the plane's normal (LPS z), as a 2-D image's always is here.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "knee.mha"
    >>> header = "NDims = 3\\nDimSize = 2 3 1\\nElementType = MET_SHORT\\nElementSpacing = 0.5 0.5 3\\n"
    >>> data = np.arange(6, dtype="<i2").tobytes()  # x fastest
    >>> _ = path.write_bytes((header + "ElementDataFile = LOCAL\\n").encode() + data)
    >>> volume = MetaImageVolume(path)
    >>> volume.shape, volume.spacing, volume.read(0).tolist()
    ((2, 3, 1), (0.5, 0.5, 3.0), [[0, 2, 4], [1, 3, 5]])
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.checks import existing_path
from inpaintssl.data.orientation import LPS_TO_RAS
from inpaintssl.data.readers import IMAGE_RANKS
from inpaintssl.data.stored_array import StoredArrayVolume, first_non_number

__all__ = ["METAIMAGE_TYPES", "MetaImageVolume", "read_metaimage_header"]

METAIMAGE_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "MET_CHAR": "i1",
        "MET_UCHAR": "u1",
        "MET_SHORT": "i2",
        "MET_USHORT": "u2",
        "MET_INT": "i4",
        "MET_UINT": "u4",
        "MET_LONG": "i4",  # MetaIO's own table sizes MET_LONG at 4 bytes on every platform
        "MET_ULONG": "u4",
        "MET_LONG_LONG": "i8",
        "MET_ULONG_LONG": "u8",
        "MET_FLOAT": "f4",
        "MET_DOUBLE": "f8",
    }
)
"""``ElementType`` -> NumPy type code (byte order from the header)."""

_HEADER_LIMIT = 1 << 20
"""Bytes searched for the header's last line, ``ElementDataFile``: headers are a few hundred."""

_ALIASES = MappingProxyType(
    {
        "offset": ("Offset", "Position", "Origin"),
        "matrix": ("TransformMatrix", "Rotation", "Orientation"),
        "msb": ("BinaryDataByteOrderMSB", "ElementByteOrderMSB"),
    }
)


def read_metaimage_header(path: str | Path) -> tuple[dict[str, str], int]:
    """The header fields of a MetaImage file (keys as written) and the byte offset just after it.

    Raises:
        DataError: No ``ElementDataFile`` line within the first MiB (not a MetaImage header, or
            one cut short), or a line that is not ``Key = Value``.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.mhd"
        >>> _ = path.write_text("NDims = 2\\nDimSize = 4 4\\nElementDataFile = a.raw\\n")
        >>> read_metaimage_header(path)
        ({'NDims': '2', 'DimSize': '4 4', 'ElementDataFile': 'a.raw'}, 48)
    """
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(_HEADER_LIMIT)
    fields: dict[str, str] = {}
    offset = 0
    while offset < len(head):
        end = head.find(b"\n", offset)
        line_end = len(head) if end < 0 else end + 1
        line = head[offset:line_end].decode("latin-1").strip()
        offset = line_end
        if not line:
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip() or " " in key.strip():
            raise DataError(
                f"MetaImage file {path}: header line {line[:60]!r} is not 'Key = Value'; expected a "
                "MetaImage header (.mha/.mhd), ending with an ElementDataFile line"
            )
        fields[key.strip()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            if end < 0 and len(head) == _HEADER_LIMIT:
                break  # the line may go on past what was read
            return fields, offset
    raise DataError(
        f"MetaImage file {path}: no ElementDataFile line in its header (fields found: "
        f"{', '.join(fields) or 'none'}); expected a MetaImage header ending with ElementDataFile"
    )


class MetaImageVolume(StoredArrayVolume):
    """A MetaImage volume (``.mha``, or ``.mhd`` with its data file), with ITK's geometry in RAS+ mm.

    Uncompressed data is memory-mapped; compressed data (``CompressedData = True``) is inflated
    whole on the first read and kept, as a ``.nii.gz`` is (so is big-endian data, turned to this
    machine's byte order, and text data, ``BinaryData = False``, parsed number by number).
    Spacing comes from ``ElementSpacing`` (mm; without it 1 mm, and
    :attr:`~inpaintssl.data.readers.Volume.has_geometry` is ``False``, as for a DICOM series
    without PixelSpacing); :attr:`affine` (RAS+) from ``Offset``, ``TransformMatrix`` and the
    spacing. ``orientation`` reads the volume in that axis order (:meth:`Volume.reorient`).

    Args:
        path: The ``.mha`` file, or the ``.mhd`` header.
        slice_axis: Axis sliced (0, 1 or 2).
        ranks: Array ranks accepted (:data:`~inpaintssl.data.readers.IMAGE_RANKS`; label maps
            pass :data:`~inpaintssl.data.readers.LABEL_RANKS`).
        orientation: Axis codes to read the volume in, e.g. ``"RAS"``; ``None``: as stored.

    Raises:
        DataError: A header field missing or malformed, an element type that is not a number, a
            data file missing or shorter than ``DimSize`` needs, text data holding another count
            of numbers than ``DimSize`` needs (or a word that is not a number, or a value the
            ``ElementType`` cannot hold), naming the file and the field.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        slice_axis: int = 2,
        ranks: Collection[int] = IMAGE_RANKS,
        orientation: str | None = None,
    ) -> None:
        path = existing_path(path, what="MetaImage file")
        fields, header_end = read_metaimage_header(path)
        self._fields = {key.lower(): value for key, value in fields.items()}
        where = f"MetaImage file {path}"
        object_type = self._fields.get("objecttype", "Image")
        if object_type.lower() != "image":
            raise DataError(f"{where}: ObjectType is {object_type!r}; expected 'Image'")
        ndims = self._integers("NDims", where, count=1)[0]
        if ndims not in (2, 3):
            raise DataError(f"{where}: NDims is {ndims}; expected 2 (a slice) or 3 (a volume)")
        dims = self._integers("DimSize", where, count=ndims)
        channels = self._integers("ElementNumberOfChannels", where, count=1, default=(1,))[0]
        self._dtype = self._element_type(where)
        self._grid = tuple(dims)
        self._channels = channels
        self._compressed = self._flag("CompressedData", where)
        # MetaIO's images default to binary; False means the voxels are whitespace-separated text.
        self._binary = self._flag("BinaryData", where, default=True)
        if self._compressed and not self._binary:
            # MetaIO inflates only binary data and would parse the compressed bytes as text.
            raise DataError(
                f"{where}: CompressedData is True with BinaryData False; expected compressed binary "
                "data (BinaryData True) or uncompressed text data (CompressedData False)"
            )
        self._data_file, self._data_offset = self._data_location(path, header_end, where)
        spacing = self._spacing(ndims, where)
        shape = tuple(dims)
        if channels > 1:
            if ndims == 2:
                # One slice of several channels, as NIfTI holds it (nifti_volume_shape): its third
                # axis one voxel along the plane's normal, 1 mm thick, as a 2-D file is read.
                shape, spacing = (*shape, 1), (*spacing, 1.0)
            shape = (*shape, channels)
        super().__init__(
            path, shape, slice_axis=slice_axis, ranks=ranks, spacing=spacing, what="MetaImage file"
        )
        self.files = tuple(dict.fromkeys((str(path), str(self._data_file))))
        # Spacing is geometry only when the header states it; the 1 mm fallback is a placeholder.
        self.has_geometry = self._numbers(("ElementSpacing", "ElementSize"), where, count=ndims) is not None
        self.affine: np.ndarray = self._ras_affine(ndims, spacing[:ndims], where)
        """Voxel-to-world ``(4, 4)`` matrix in RAS+ mm (ITK's LPS geometry, converted)."""
        if orientation is not None:
            self.reorient(orientation)

    def _integers(
        self, name: str, where: str, *, count: int, default: tuple[int, ...] | None = None
    ) -> tuple[int, ...]:
        text = self._fields.get(name.lower())
        if text is None:
            if default is not None:
                return default
            raise DataError(f"{where}: its header has no {name}; expected {count} whole number(s)")
        try:
            values = tuple(int(v) for v in text.split())
        except ValueError:
            values = ()
        if len(values) != count or any(v < 1 for v in values):
            raise DataError(f"{where}: {name} is {text!r}; expected {count} whole number(s) > 0")
        return values

    def _numbers(self, names: tuple[str, ...], where: str, *, count: int) -> tuple[float, ...] | None:
        for name in names:
            text = self._fields.get(name.lower())
            if text is None:
                continue
            try:
                values = tuple(float(v) for v in text.split())
            except ValueError:
                values = ()
            if len(values) != count or not all(math.isfinite(v) for v in values):
                raise DataError(f"{where}: {name} is {text!r}; expected {count} finite number(s)")
            return values
        return None

    def _flag(
        self, name: str, where: str, names: tuple[str, ...] | None = None, *, default: bool = False
    ) -> bool:
        for key in names or (name,):
            text = self._fields.get(key.lower())
            if text is None:
                continue
            if text.lower() in ("true", "1"):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise DataError(f"{where}: {key} is {text!r}; expected True or False")
        return default

    def _element_type(self, where: str) -> np.dtype[Any]:
        text = self._fields.get("elementtype")
        code = None if text is None else METAIMAGE_TYPES.get(text.upper())
        if code is None:
            raise DataError(f"{where}: ElementType is {text!r}; expected one of {', '.join(METAIMAGE_TYPES)}")
        big_endian = self._flag("BinaryDataByteOrderMSB", where, _ALIASES["msb"])
        return np.dtype(("<", ">")[big_endian] + code)

    def _data_location(self, path: Path, header_end: int, where: str) -> tuple[Path, int]:
        name = self._fields["elementdatafile"]
        if name.upper() == "LOCAL":
            return path, header_end
        # As ITK's MetaIO reads the value: a list of slice files when it starts with LIST, a
        # printf-style pattern of their names when it holds a %; else one file, whose name may
        # hold spaces (ITK writes "knee scan.raw" for "knee scan.mhd").
        if name.startswith("LIST") or "%" in name:
            raise DataError(
                f"{where}: ElementDataFile is {name!r}, a list or pattern of slice files (a value "
                "starting with LIST, or holding a %); expected LOCAL or one data file (write the "
                "volume as one .mha, e.g. with SimpleITK)"
            )
        data = path.parent / name
        if not data.is_file():
            raise DataError(f"{where}: its data file {data} (ElementDataFile) does not exist")
        text = self._fields.get("headersize", "0")
        try:
            skip = int(text)
        except ValueError:
            raise DataError(f"{where}: HeaderSize is {text!r}; expected a whole number, or -1") from None
        if skip == -1:  # the data ends the file: whatever precedes it is someone's header
            if self._compressed:
                raise DataError(f"{where}: HeaderSize -1 with CompressedData; expected a HeaderSize >= 0")
            if not self._binary:
                # The data's length in bytes is known for binary data only.
                raise DataError(f"{where}: HeaderSize -1 with BinaryData False; expected a HeaderSize >= 0")
            skip = data.stat().st_size - self._data_bytes()
        if skip < 0:
            raise DataError(f"{where}: HeaderSize is {skip}; expected 0 or more, or -1")
        return data, skip

    def _spacing(self, ndims: int, where: str) -> tuple[float, ...]:
        spacing = self._numbers(("ElementSpacing", "ElementSize"), where, count=ndims) or (1.0,) * ndims
        if not all(v > 0 for v in spacing):
            raise DataError(f"{where}: voxel spacing {spacing} (ElementSpacing); expected sizes > 0 in mm")
        return spacing

    def _ras_affine(self, ndims: int, spacing: tuple[float, ...], where: str) -> np.ndarray:
        matrix = self._numbers(_ALIASES["matrix"], where, count=ndims * ndims)
        offset = self._numbers(_ALIASES["offset"], where, count=ndims) or (0.0,) * ndims
        directions = np.eye(3)
        if matrix is not None:
            # ITK's MetaImageIO: the n-th run of NDims values is the direction of array axis n.
            directions[:ndims, :ndims] = np.asarray(matrix, dtype=np.float64).reshape(ndims, ndims).T
        lps = np.eye(4)
        lps[:3, :3] = directions * np.asarray([*spacing, 1.0][:3])
        lps[:ndims, 3] = offset
        affine: np.ndarray = LPS_TO_RAS @ lps
        return affine

    def _encoded(self) -> bool:
        return self._compressed or not self._binary

    def _decode(self, data: bytes) -> bytes | np.ndarray:
        if not self._binary:
            return self._parsed_text(data)
        if not self._compressed:
            return data
        # wbits 47: a zlib stream or a gzip member, as MetaIO's inflateInit2(..., 47) takes.
        stream = zlib.decompressobj(wbits=47)
        try:
            inflated = stream.decompress(data)
        except zlib.error as exc:
            raise self._not_inflated(str(exc)) from exc
        if not stream.eof:
            raise self._not_inflated("the stream ends before its end marker")
        return inflated

    def _not_inflated(self, problem: str) -> DataError:
        return DataError(
            f"MetaImage file {self.path}: its compressed data ({self._data_file}) cannot be "
            f"inflated (truncated or corrupt?): {problem}"
        )

    def _parsed_text(self, data: bytes) -> np.ndarray:
        """The voxels of text data (``BinaryData = False``), in this machine's byte order.

        MetaIO reads each number as a double and casts it to the element type; float64 holds
        every value of the types up to 32 bits exactly.
        """
        where = f"MetaImage file {self.path}: its text data ({self._data_file}, BinaryData False)"
        words = data.decode("latin-1").split()
        expected = math.prod(self._written_shape())
        if len(words) != expected:
            raise DataError(
                f"{where} holds {len(words)} numbers; expected {expected} (DimSize "
                f"{' x '.join(map(str, self._grid))}, {self._channels} channel(s))"
            )
        try:
            values = np.array(words, dtype=np.float64)
        except ValueError:
            bad = words[first_non_number(words)]
            raise DataError(f"{where} holds {bad[:40]!r}; expected numbers only") from None
        native = self._dtype.newbyteorder("=")
        if native.kind in "iu":
            limits = np.iinfo(native)
            fits = np.isfinite(values) & (values == np.round(values))
            # Bounds as floats, the upper one exclusive: 2**63 - 1 rounds up to 2**63 in float64.
            fits &= (values >= float(limits.min)) & (values < float(limits.max) + 1.0)
            if not fits.all():
                bad_value = values[~fits][0]
                raise DataError(
                    f"{where} holds {bad_value:g}; expected whole numbers from {limits.min} to "
                    f"{limits.max} (ElementType {self._fields['elementtype']})"
                )
        return values.astype(native)

    def _short_data(self, available: int, needed: int) -> DataError:
        what = "inflates to" if self._compressed else "holds"
        return DataError(
            f"MetaImage file {self.path}: its data ({self._data_file}) {what} {available} bytes; "
            f"expected {needed} (DimSize {' x '.join(map(str, self._grid))}, {self._channels} "
            f"channel(s) of {self._dtype.itemsize} byte(s)): truncated?"
        )

    def _written_shape(self) -> tuple[int, ...]:
        """The data as written, slowest axis first: ``(Z, Y, X)`` (``(Y, X)``), channels last."""
        return (*self._grid[::-1], self._channels)

    def _as_stored(self, data: np.ndarray) -> np.ndarray:
        """``(Z, Y, X, C)`` as written -> ``(X, Y, Z)`` or ``(X, Y, Z, C)`` (``(X, Y)``, or
        ``(X, Y, 1, C)`` for a 2-D image of several channels), a view."""
        spatial = len(self._grid)
        stored: np.ndarray = data.transpose(*range(spatial - 1, -1, -1), spatial)
        # Axes of one voxel dropped (one channel) or added (a 2-D image's third): a view.
        return stored.reshape(self.stored_shape)
