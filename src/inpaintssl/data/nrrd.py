"""NRRD volumes (``.nrrd``, or an ``.nhdr`` header beside its data), as 3D Slicer saves scans and
label maps, read with NumPy, zlib and bz2: no extra needed.

A header starts with the magic ``NRRD000N``, holds ``field: value`` lines (``#`` comments and
``key:=value`` pairs are skipped) and ends with a blank line; the data follows (attached) or lies
in the file ``data file`` names (detached). Read here: ``type``, ``dimension`` (2 or 3 spatial
axes, plus at most one non-spatial axis such as an RGB or vector axis, which becomes the channels
axis, last), ``sizes``, ``endian``, ``encoding`` (``raw``, ``gzip`` of one or several members,
``bzip2``, ``ascii``), ``byte skip`` (bytes of the file before the data, or, for ``gzip`` and
``bzip2``, of the decompressed stream, as teem and pynrrd skip them), ``line skip``, and the
geometry: ``space`` (``left-posterior-superior``, ``right-anterior-superior``,
``left-anterior-superior`` or their initials), ``space directions`` (each spatial axis' step, in
that space) and ``space origin``, in the ``space units`` stated (``mm``, ``cm``, ``m``, ``um`` or
``micron``; none stated: mm) and converted to mm; without them, ``spacings``, in its ``units``
alike. Another unit (a time, a typo) is refused, naming it. A field of two words may be written
without the space, as the format allows (``byteskip``, ``datafile``, ``spacedirections``); a field
given twice is refused; one stated empty (``content:``) is read as empty; a detached header's last
line needs no newline after it. A data file given as a list (``LIST``) or a numbered pattern (a
``%``-format, then min, max and step) is refused, naming the field; any other ``data file`` is one
file's name, spaces included. A ``list`` axis is an image's channels, as a ``vector`` axis is;
opened as a label map, a file with one is a segmentation stored as several overlapping layers (3D
Slicer's 4D ``.seg.nrrd``, whose ``kinds`` start with ``list``), refused saying how to export it.

Voxel ``(i, j, k)`` lies at ``origin + i * d_i + j * d_j + k * d_k`` (``d`` the space
directions); :attr:`NrrdVolume.affine` is that in NIfTI's RAS+, so the volume reorients and its
label maps overlay as a NIfTI file's do. The first axis runs fastest, so the array is
``(X, Y, Z)`` or ``(X, Y, Z, C)``, as nibabel reads NIfTI; a 2-D image is ``(X, Y)``, or, with
channels, one slice ``(X, Y, 1, C)``, as a 2-D NIfTI image of several channels is read.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "knee.nrrd"
    >>> header = "NRRD0004\\ntype: short\\ndimension: 3\\nsizes: 2 3 1\\nspacings: 0.5 0.5 3\\n"
    >>> data = np.arange(6, dtype="<i2").tobytes()  # x fastest
    >>> _ = path.write_bytes((header + "endian: little\\nencoding: raw\\n\\n").encode() + data)
    >>> volume = NrrdVolume(path)
    >>> volume.shape, volume.spacing, volume.read(0).tolist()
    ((2, 3, 1), (0.5, 0.5, 3.0), [[0, 2, 4], [1, 3, 5]])
"""

from __future__ import annotations

import bz2
import math
import re
import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.checks import existing_path
from inpaintssl.data.readers import IMAGE_RANKS
from inpaintssl.data.stored_array import StoredArrayVolume, first_non_number

__all__ = ["NRRD_TYPES", "NrrdVolume", "read_nrrd_header"]

NRRD_TYPES: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(("signed char", "int8", "int8_t"), "i1"),
        **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
        **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
        **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
        **dict.fromkeys(("int", "signed int", "int32", "int32_t"), "i4"),
        **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
        **dict.fromkeys(
            (
                "longlong",
                "long long",
                "long long int",
                "signed long long",
                "signed long long int",
                "int64",
                "int64_t",
            ),
            "i8",
        ),
        **dict.fromkeys(
            ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"
        ),
        "float": "f4",
        "double": "f8",
    }
)
"""``type`` -> NumPy type code (byte order from ``endian``), every spelling the NRRD format allows."""

_SPACES: Mapping[str, tuple[float, float, float]] = MappingProxyType(
    {
        **dict.fromkeys(("right-anterior-superior", "ras"), (1.0, 1.0, 1.0)),
        **dict.fromkeys(("left-anterior-superior", "las"), (-1.0, 1.0, 1.0)),
        **dict.fromkeys(("left-posterior-superior", "lps"), (-1.0, -1.0, 1.0)),
    }
)
"""``space`` -> the signs that take its x, y, z to RAS+."""

_MM_PER_UNIT: Mapping[str, float] = MappingProxyType(
    {
        **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), 1.0),
        **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), 10.0),
        **dict.fromkeys(("m", "meter", "meters", "metre", "metres"), 1000.0),
        **dict.fromkeys(
            (
                "um",
                "\u00b5m",  # micro sign
                "\u03bcm",  # Greek mu
                "micron",
                "microns",
                "micrometer",
                "micrometers",
                "micrometre",
                "micrometres",
            ),
            0.001,
        ),
        # No unit stated (teem writes "" and marks an unknown value "???"): mm, as the NIfTI reader
        # takes 'unknown' (readers._MM_PER_NIFTI_UNIT): most files that do not say are in mm.
        **dict.fromkeys(("", "???"), 1.0),
    }
)
"""A ``space units`` or ``units`` entry (lower case) -> millimetres per unit."""

_SPATIAL_KINDS = ("domain", "space", "???", "none")
"""``kinds`` of a spatial axis; any other (``vector``, ``RGB-color``, ``list``, ``time``...) is not."""
_HEADER_LIMIT = 1 << 20
_VECTOR = re.compile(r"\(([^)]*)\)|none")
_GZIP_MAGIC = b"\x1f\x8b"
_FIELD_SPELLINGS: Mapping[str, str] = MappingProxyType(
    {
        name.replace(" ", ""): name
        for name in (
            "block size",
            "space dimension",
            "axis mins",
            "axis maxs",
            "space directions",
            "old min",
            "old max",
            "line skip",
            "byte skip",
            "sample units",
            "space units",
            "space origin",
            "measurement frame",
            "data file",
        )
    }
)
"""The spellings without the space (``byteskip``) -> the field's name: the NRRD format (teem's
field table) takes every two-word field name either way."""


def _is_file_pattern(name: str) -> bool:
    """Whether ``data file``'s value is the format's numbered pattern: ``<format> <min> <max> <step>
    [<subdim>]``, the format holding a ``%``; any other value is one file's name, spaces included."""
    words = name.split()
    numbers = words[1:]
    return len(numbers) in (3, 4) and "%" in words[0] and all(re.fullmatch(r"-?\d+", w) for w in numbers)


def _quoted_words(text: str) -> list[str]:
    """The entries of a field of quoted strings (``"mm" "mm" ""``), as UTF-8 where they are.

    The header is decoded as Latin-1 (it is bytes before the data); a unit such as ``µm`` written
    in UTF-8 is turned back into its characters. Without quotes, the words are the entries.
    """
    words = re.findall(r'"([^"]*)"', text) if '"' in text else text.split()
    entries = []
    for word in words:
        try:
            entries.append(word.encode("latin-1").decode("utf-8"))
        except UnicodeError:
            entries.append(word)
    return entries


def read_nrrd_header(path: str | Path) -> tuple[dict[str, str], int]:
    """The fields of an NRRD header (keys in lower case) and the byte offset just after it, where
    attached data starts (a detached header may end without the blank line, its last line without
    a newline: its length).

    A two-word field written without its space (``byteskip``, ``datafile``, ``spacedirections``),
    as the format allows, is keyed by its name with the space (``byte skip``).

    Raises:
        DataError: No ``NRRD000N`` magic, no blank line ending the header within the first MiB
            (a detached header, too, must end within it), a line that is not ``field: value``, or
            a field given twice (in either spelling).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.nhdr"
        >>> _ = path.write_text("NRRD0004\\n# a comment\\ntype: uint8\\nsizes: 4 4\\ndata file: a.raw\\n")
        >>> read_nrrd_header(path)[0]
        {'type': 'uint8', 'sizes': '4 4', 'data file': 'a.raw'}
    """
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(_HEADER_LIMIT)
    if not head.startswith(b"NRRD000"):
        raise DataError(
            f"NRRD file {path} does not start with the NRRD magic (NRRD000N, e.g. NRRD0004); expected "
            "an NRRD file (.nrrd, or a detached .nhdr header)"
        )
    fields: dict[str, str] = {}
    magic_end = head.find(b"\n")
    offset = len(head) if magic_end < 0 else magic_end + 1  # the magic alone is no header line
    while offset < len(head):
        end = head.find(b"\n", offset)
        if end < 0 and len(head) == _HEADER_LIMIT:
            break  # the line may go on past what was read: refused below
        # A detached header's last line may have no newline after it: it is a line all the same
        # (dropping it lost an 'endian: big' or a 'space origin' without a word).
        line_end = len(head) if end < 0 else end
        line = head[offset:line_end].decode("latin-1").rstrip("\r")
        offset = len(head) if end < 0 else end + 1
        if not line.strip():
            return fields, offset  # the blank line ends the header; attached data follows it
        if line.startswith("#") or ":=" in line:
            continue  # comments, and key/value pairs of the writer's own
        field, colon, value = line.partition(": ")
        if not colon and line.endswith(":"):
            field, colon = line[:-1], ":"  # a field stated empty (``content:``), as writers leave one
        if not colon:
            raise DataError(f"NRRD file {path}: header line {line[:60]!r} is not 'field: value'")
        name = field.strip().lower()
        name = _FIELD_SPELLINGS.get(name, name)
        if name in fields:
            # As teem refuses it: which of the two values was meant is not for a reader to guess.
            raise DataError(
                f"NRRD file {path}: field '{name}' is given twice (line {line[:60]!r} after "
                f"{fields[name]!r}); expected each field once (with or without the space in its name)"
            )
        fields[name] = value.strip()
    if "data file" in fields and len(head) < _HEADER_LIMIT:
        return fields, len(head)  # a detached header may end without a blank line
    raise DataError(
        f"NRRD file {path}: its header has no blank line ending it within {_HEADER_LIMIT} bytes; "
        "expected an NRRD header, a blank line, then the data (or a 'data file' field, the header "
        f"under {_HEADER_LIMIT} bytes)"
    )


class NrrdVolume(StoredArrayVolume):
    """An NRRD volume (``.nrrd``, or ``.nhdr`` with its data file), with its geometry in RAS+ mm.

    Raw data is memory-mapped; gzip, bzip2 or ascii data (and raw big-endian data, turned to this
    machine's byte order) is read whole on the first read and kept, as a ``.nii.gz`` is. gzip
    data is read member after member until the array's bytes are there; what follows them is
    ignored. Spacing is the length of each spatial axis' ``space directions`` vector (else
    ``spacings``; both in mm, converted from the ``space units`` or ``units`` stated; else 1 mm,
    and :attr:`~inpaintssl.data.readers.Volume.has_geometry` is ``False``); :attr:`affine` (RAS+,
    mm) comes from ``space``, ``space directions`` and ``space origin`` (``None`` without them,
    or in a space other than LPS, RAS or LAS: such a file states no orientation). A 2-D image in
    such a space (one slice, as 3D Slicer saves it) has the normal of its plane as third axis, 1 mm
    long: the thickness a 2-D file is read with. A 2-D image of several channels is that one slice,
    ``(X, Y, 1, C)``, spacing ``(sx, sy, 1)``.

    Args:
        path: The ``.nrrd`` file, or the ``.nhdr`` header.
        slice_axis: Axis sliced (0, 1 or 2) among the spatial axes.
        ranks: Array ranks accepted (:data:`~inpaintssl.data.readers.IMAGE_RANKS`; label maps
            pass :data:`~inpaintssl.data.readers.LABEL_RANKS`).
        orientation: Axis codes to read the volume in, e.g. ``"RAS"``; ``None``: as stored.

    Raises:
        DataError: A field missing or malformed, a type that is not a number, an encoding not
            read here, a unit that is not a length, a layered segmentation opened as a label map,
            a data file missing or shorter than ``sizes`` needs, naming the file and the field.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        slice_axis: int = 2,
        ranks: Collection[int] = IMAGE_RANKS,
        orientation: str | None = None,
    ) -> None:
        path = existing_path(path, what="NRRD file")
        self._fields, header_end = read_nrrd_header(path)
        where = f"NRRD file {path}"
        dimension = self._integer("dimension", where)
        sizes = self._sizes(dimension, where)
        self._spatial, self._channel_axis = self._axes(dimension, sizes, where, ranks=ranks)
        self._dtype = self._type(where)
        self._encoding = self._encoding_of(where)
        self._sizes_stored = sizes
        self._data_file, self._data_offset = self._data_location(path, header_end, where)
        grid = tuple(sizes[a] for a in self._spatial)
        directions = self._directions(dimension, where)
        spacing, stated = self._spacing(directions, where)
        shape: tuple[int, ...] = grid
        if self._channel_axis is not None:
            if len(grid) == 2:
                # One slice of several channels, as NIfTI holds it (nifti_volume_shape): its third
                # axis one voxel along the plane's normal, 1 mm thick, as a 2-D file is read.
                grid, spacing = (*grid, 1), (*spacing, 1.0)
            shape = (*grid, sizes[self._channel_axis])
        super().__init__(path, shape, slice_axis=slice_axis, ranks=ranks, spacing=spacing, what="NRRD file")
        self.files = tuple(dict.fromkeys((str(path), str(self._data_file))))
        self.has_geometry = stated
        self.affine = self._ras_affine(directions, where)
        """Voxel-to-world ``(4, 4)`` matrix in RAS+ mm; ``None`` where the header states no space."""
        if orientation is not None:
            self.reorient(orientation)

    # -- header fields -------------------------------------------------------------------------

    def _integer(self, name: str, where: str) -> int:
        text = self._fields.get(name)
        try:
            value = int(text) if text is not None else None
        except ValueError:
            value = None
        if value is None or value < 1:
            shown = "missing" if text is None else repr(text)
            raise DataError(f"{where}: field '{name}' is {shown}; expected a whole number > 0")
        return value

    def _sizes(self, dimension: int, where: str) -> tuple[int, ...]:
        text = self._fields.get("sizes", "")
        try:
            sizes = tuple(int(v) for v in text.split())
        except ValueError:
            sizes = ()
        if len(sizes) != dimension or any(n < 1 for n in sizes):
            raise DataError(
                f"{where}: field 'sizes' is {text!r}; expected {dimension} whole numbers > 0 (dimension)"
            )
        return sizes

    def _axes(
        self, dimension: int, sizes: tuple[int, ...], where: str, *, ranks: Collection[int]
    ) -> tuple[tuple[int, ...], int | None]:
        """The spatial axes (in stored order) and the one non-spatial axis (channels), if any.

        An axis is non-spatial by its ``kinds`` entry (``vector``, ``RGB-color``, ``list``,
        ``time``...), or, without ``kinds``, by its ``none`` in ``space directions``. One of a
        single sample is no axis at all (a 3D volume saved as ``(1, X, Y, Z)``). A ``list`` axis
        is the channels of an image, but in a label map (``ranks`` without the rank of channels)
        the layers of a segmentation, refused saying how to export it.
        """
        kinds = self._fields.get("kinds", "").split()
        if len(kinds) == dimension:
            other = [a for a, kind in enumerate(kinds) if kind.lower() not in _SPATIAL_KINDS]
        elif "space directions" in self._fields:
            other = [a for a, text in enumerate(self._direction_texts()) if text is None]
        else:
            other = []
        # With channels the array is (X, Y, Z, C), or a 2-D image's (X, Y, 1, C): rank 4. Read as an
        # image, a 'list' axis is channels as a 'vector' one is (a multi-channel scan); read as a
        # label map, it is 3D Slicer's segments stored as overlapping layers, which no one label
        # map holds: refused with how to export them, not as 'rank 4'.
        as_label_map = 4 not in ranks
        layered = [
            a
            for a in other
            if as_label_map and len(kinds) == dimension and kinds[a].lower() == "list" and sizes[a] > 1
        ]
        if layered:
            raise DataError(
                f"{where}: kinds {' '.join(kinds)} with {sizes[layered[0]]} layers: a segmentation stored as "
                "overlapping layers (3D Slicer's 4D .seg.nrrd); expected one label map: export the "
                "segments as a labelmap volume (.nrrd or .nii.gz)"
            )
        channels = [a for a in other if sizes[a] > 1]
        if len(channels) > 1:
            raise DataError(
                f"{where}: kinds {' '.join(kinds) or '(none)'}, sizes {' '.join(map(str, sizes))}: more "
                "than one non-spatial axis; expected at most one (the channels)"
            )
        spatial = tuple(a for a in range(dimension) if a not in other)
        if len(spatial) not in (2, 3):
            raise DataError(
                f"{where}: {len(spatial)} spatial axes (dimension {dimension}, sizes "
                f"{' '.join(map(str, sizes))}); expected 2 (a slice) or 3 (a volume)"
            )
        return spatial, (channels[0] if channels else None)

    def _type(self, where: str) -> np.dtype[Any]:
        text = self._fields.get("type")
        code = None if text is None else NRRD_TYPES.get(" ".join(text.lower().split()))
        if code is None:
            raise DataError(
                f"{where}: field 'type' is {text!r}; expected a numeric type (e.g. short, uint8, float, "
                "double)"
            )
        endian = self._fields.get("endian", "little").lower()
        if endian not in ("little", "big"):
            raise DataError(f"{where}: field 'endian' is {endian!r}; expected little or big")
        return np.dtype(("<" if endian == "little" or np.dtype(code).itemsize == 1 else ">") + code)

    def _encoding_of(self, where: str) -> str:
        text = self._fields.get("encoding", "").lower()
        encoding = {"gz": "gzip", "bz2": "bzip2", "text": "ascii", "txt": "ascii"}.get(text, text)
        if encoding not in ("raw", "gzip", "bzip2", "ascii"):
            raise DataError(f"{where}: field 'encoding' is {text!r}; expected raw, gzip, bzip2 or ascii")
        return encoding

    def _data_location(self, path: Path, header_end: int, where: str) -> tuple[Path, int]:
        name = self._fields.get("data file")
        if name is None:
            data = path
            start = header_end
        else:
            if name.startswith("LIST") or _is_file_pattern(name):
                raise DataError(
                    f"{where}: field 'data file' is {name!r}, a list or pattern of files (LIST, or a "
                    "%-format followed by min, max and step); expected one data file (save the volume "
                    "as one .nrrd, e.g. with 3D Slicer)"
                )
            data = path.parent / name
            if not data.is_file():
                raise DataError(f"{where}: its data file {data} ('data file') does not exist")
            start = 0
        start = self._skip_lines(data, start, where)
        skip = self._fields.get("byte skip", "0")
        try:
            byte_skip = int(skip)
        except ValueError:
            raise DataError(
                f"{where}: field 'byte skip' is {skip!r}; expected a whole number, or -1"
            ) from None
        self._decoded_skip = 0
        if byte_skip == -1:
            # As teem: the data's length is known before decompression for raw data only.
            if self._encoding != "raw":
                raise DataError(
                    f"{where}: byte skip -1 (the data ends the file) with encoding {self._encoding}; "
                    "expected raw data, or a byte skip of 0 or more"
                )
            return data, data.stat().st_size - self._data_bytes()
        if byte_skip < 0:
            raise DataError(f"{where}: field 'byte skip' is {byte_skip}; expected 0 or more, or -1")
        if self._encoding in ("gzip", "bzip2"):
            # teem skips these bytes within the decompressed stream for a compression encoding.
            self._decoded_skip = byte_skip
            return data, start
        return data, start + byte_skip

    def _skip_lines(self, data: Path, start: int, where: str) -> int:
        text = self._fields.get("line skip", "0")
        try:
            lines = int(text)
        except ValueError:
            raise DataError(f"{where}: field 'line skip' is {text!r}; expected a whole number") from None
        with data.open("rb") as handle:
            handle.seek(start)
            for _ in range(lines):
                start += len(handle.readline())
        return start

    def _direction_texts(self) -> list[str | None]:
        """Each axis' ``space directions`` entry, ``None`` for ``none``."""
        text = self._fields.get("space directions", "")
        return [None if m.group(0) == "none" else m.group(1) for m in _VECTOR.finditer(text)]

    def _directions(self, dimension: int, where: str) -> np.ndarray | None:
        """``(space dimension, spatial axes)``: each spatial axis' step, in the header's space (3-D
        for the named spaces); ``None`` without."""
        if "space directions" not in self._fields:
            return None
        size = self._space_dimension(where)
        texts = self._direction_texts()
        if len(texts) != dimension:
            raise DataError(
                f"{where}: field 'space directions' holds {len(texts)} entries; expected {dimension} "
                "(one per axis, 'none' for a non-spatial one)"
            )
        columns = []
        for axis in self._spatial:
            entry = texts[axis]
            try:
                vector = [float(v) for v in (entry or "").split(",")]
            except ValueError:
                vector = []
            if len(vector) != size or not all(math.isfinite(v) for v in vector) or not any(vector):
                raise DataError(
                    f"{where}: space direction of axis {axis} is {entry!r}; expected {size} finite numbers "
                    "(the space's dimension), not all 0 (the axis' step in mm)"
                )
            columns.append(vector)
        # In mm whatever 'space units' the header states (a file in metres or microns is converted).
        steps: np.ndarray = np.asarray(columns, dtype=np.float64).T * self._space_mm(size, where)[:, None]
        return steps

    def _space_mm(self, size: int, where: str) -> np.ndarray:
        """Millimetres per unit of each of the header's ``size`` world axes (``space units``); a
        time axis (``...-time`` spaces) is left as it is."""
        spatial = size - 1 if self._is_time_space() else size
        scale = self._mm_per_unit("space units", size, range(spatial), where)
        return np.array(scale + [1.0] * (size - spatial))

    def _is_time_space(self) -> bool:
        space = self._fields.get("space", "").lower()
        return space.endswith("-time") or space in ("rast", "last", "lpst")

    def _mm_per_unit(self, field: str, count: int, entries: Sequence[int], where: str) -> list[float]:
        """Millimetres per unit of the ``entries`` of ``field`` (``space units``: one per world axis;
        ``units``: one per array axis); 1 each where the field is absent or empty (mm assumed).

        Raises:
            DataError: The field holds another number of units than ``count``, or one of ``entries``
                is no length unit read here.
        """
        text = self._fields.get(field, "")
        if not text.strip():
            return [1.0] * len(entries)
        units = _quoted_words(text)
        if len(units) != count:
            raise DataError(
                f"{where}: field '{field}' is {text!r}, {len(units)} unit(s); expected {count} quoted "
                "units (one per " + ("world axis of the space)" if field == "space units" else "axis)")
            )
        scale = []
        for entry in entries:
            mm = _MM_PER_UNIT.get(units[entry].strip().lower())
            if mm is None:
                raise DataError(
                    f"{where}: field '{field}' gives entry {entry + 1} of {count} the unit "
                    f"{units[entry]!r}; expected a length unit: mm, cm, m or um (micron), or none "
                    "stated (mm)"
                )
            scale.append(mm)
        return scale

    def _space_dimension(self, where: str) -> int:
        """The dimension of the header's space: ``space dimension``, else that of the named ``space``
        (4 for one with time, such as ``right-anterior-superior-time``; else 3)."""
        if "space dimension" in self._fields:
            return self._integer("space dimension", where)
        return 4 if self._is_time_space() else 3

    def _spacing(self, directions: np.ndarray | None, where: str) -> tuple[tuple[float, ...], bool]:
        if directions is not None:
            return tuple(float(v) for v in np.linalg.norm(directions, axis=0)), True
        text = self._fields.get("spacings")
        if text is None:
            return (1.0,) * len(self._spatial), False
        values = text.split()
        try:
            spacing = tuple(float(values[a]) for a in self._spatial)
        except (ValueError, IndexError):
            spacing = ()
        if len(spacing) != len(self._spatial) or not all(math.isfinite(v) and v > 0 for v in spacing):
            raise DataError(
                f"{where}: field 'spacings' is {text!r}; expected a size > 0 in mm per spatial axis"
            )
        # 'units' (one per axis) states what 'spacings' are in: converted to mm.
        mm = self._mm_per_unit("units", len(self._sizes_stored), self._spatial, where)
        return tuple(v * f for v, f in zip(spacing, mm, strict=True)), True

    def _ras_affine(self, directions: np.ndarray | None, where: str) -> np.ndarray | None:
        space = self._fields.get("space", "").lower()
        signs = _SPACES.get(space)
        if directions is None or signs is None or directions.shape[0] != 3:
            return None
        if directions.shape[1] == 2:
            # One slice in a 3-D space, as 3D Slicer saves a 2-D image: its third axis is the
            # plane's normal (right-handed in the file's space) at 1 mm, the thickness a 2-D
            # file is read with, so that its label map lies where the slice does.
            normal = np.cross(directions[:, 0], directions[:, 1])
            length = float(np.linalg.norm(normal))
            if not length > 0:
                raise DataError(
                    f"{where}: field 'space directions' gives the two axes of a 2-D image parallel "
                    "directions; expected two directions spanning its plane"
                )
            directions = np.column_stack([directions, normal / length])
        if directions.shape[1] != 3:
            return None
        origin_text = self._fields.get("space origin", "(0,0,0)")
        try:
            origin = [float(v) for v in origin_text.strip("() ").split(",")]
        except ValueError:
            origin = []
        if len(origin) != 3 or not all(math.isfinite(v) for v in origin):
            raise DataError(
                f"{where}: field 'space origin' is {origin_text!r}; expected (x,y,z) in mm (or in its "
                "'space units')"
            )
        affine = np.eye(4)
        affine[:3, :3] = directions  # in mm already (_directions)
        affine[:3, 3] = np.asarray(origin) * self._space_mm(3, where)
        ras: np.ndarray = np.diag([*signs, 1.0]) @ affine
        return ras

    # -- data ----------------------------------------------------------------------------------

    def _written_shape(self) -> tuple[int, ...]:
        return self._sizes_stored[::-1]

    def _encoded(self) -> bool:
        return self._encoding != "raw"

    def _decode(self, data: bytes) -> bytes | np.ndarray:
        try:
            if self._encoding == "gzip":
                return self._gunzip(data)[self._decoded_skip :]
            if self._encoding == "bzip2":
                return bz2.decompress(data)[self._decoded_skip :]
        except (zlib.error, OSError, ValueError) as exc:
            raise DataError(
                f"NRRD file {self.path}: its {self._encoding} data ({self._data_file}) cannot be "
                f"decompressed (truncated or corrupt?): {exc}"
            ) from exc
        if self._encoding == "ascii":
            # Through float64, which holds every value of the types up to 32 bits exactly.
            words = data.decode("latin-1").split()
            try:
                values = np.array(words, dtype=np.float64)
            except ValueError:
                bad = first_non_number(words)
                raise DataError(
                    f"NRRD file {self.path}: its ascii data ({self._data_file}) holds {words[bad]!r} "
                    f"as value {bad + 1}; expected numbers separated by white space"
                ) from None
            return values.astype(self._dtype.newbyteorder("="))
        return data

    def _gunzip(self, data: bytes) -> bytes:
        """The bytes of ``data``'s gzip members (or of its one zlib stream), one member after another.

        A gzip file may hold several members, read as one stream (what ``cat a.gz b.gz`` and
        bgzip write), so a member that ends before the array does is followed by the next. Once
        the array's bytes are all there, the rest is ignored: further members, and whatever else
        follows a member (padding), as after a file's only member.
        """
        needed = self._decoded_skip + self._data_bytes()
        parts: list[bytes] = []
        decoded = 0
        rest = data
        while True:
            stream = zlib.decompressobj(wbits=47)  # a gzip member, or a zlib stream
            part = stream.decompress(rest)
            parts.append(part)
            decoded += len(part)
            rest = stream.unused_data
            # A member cut short (not at eof) or followed by no further member leaves the array
            # short: _read_whole says how many bytes it got.
            if decoded >= needed or not stream.eof or not rest.startswith(_GZIP_MAGIC):
                return b"".join(parts)

    def _short_data(self, available: int, needed: int) -> DataError:
        skipped = f" after its byte skip of {self._decoded_skip}" if self._decoded_skip else ""
        return DataError(
            f"NRRD file {self.path}: its data ({self._data_file}, {self._encoding}) holds {available} "
            f"bytes{skipped}; expected {needed} (sizes {' x '.join(map(str, self._sizes_stored))} of "
            f"{self._dtype.itemsize} byte(s)): truncated?"
        )

    def _as_stored(self, data: np.ndarray) -> np.ndarray:
        """As written, slowest axis first -> spatial axes in stored order, then the channels; a view.

        A 2-D image of several channels gets its one-voxel third axis before them.
        """
        dimension = len(self._sizes_stored)
        kept = [*self._spatial, *(() if self._channel_axis is None else (self._channel_axis,))]
        dropped = [a for a in range(dimension) if a not in kept]  # non-spatial axes of one sample
        stored: np.ndarray = data.transpose([dimension - 1 - a for a in (*kept, *dropped)])
        # Axes of one voxel dropped (those of one sample) or added (a 2-D image's third): a view.
        return stored.reshape(self.stored_shape)
