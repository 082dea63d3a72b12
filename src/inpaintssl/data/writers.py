"""Volumes written as MetaImage (``.mha``) and NRRD (``.nrrd``) files, as ITK and 3D Slicer read them.

The counterparts of :mod:`inpaintssl.data.metaimage` and :mod:`inpaintssl.data.nrrd`, for one
layout each: a single file, the data attached, compressed (one zlib stream for MetaImage, gzip for
NRRD) and little-endian, the geometry in LPS millimetres (ITK's and 3D Slicer's space), converted
from the RAS+ affine every reader of this library gives. A volume ``(X, Y, Z)`` or channels-last
``(X, Y, Z, C)`` (a probability map, one channel per class) is written x fastest and channels
fastest of all, so that this library's readers, ITK and 3D Slicer read back the same array on the
same voxel positions. :func:`inpaintssl.predict` writes label maps with them (``output_format``).

MetaImage: ``TransformMatrix`` holds the unit direction of array axis ``n`` as its ``n``-th run
of three values, ``ElementSpacing`` the lengths of the affine's columns (the ``spacing`` given,
where it agrees with them to 1e-5) and ``Offset`` the position of voxel ``(0, 0, 0)``;
``CompressedDataSize`` is written, as ITK reads compressed data only with it. NRRD: ``space:
left-posterior-superior``, ``space directions`` the affine's columns (a step of one voxel along
each axis) and ``space origin``; a channels axis is the first (fastest) axis, of kind ``vector``.
Numbers are written in the shortest form that reads back as the same double.

Example:
    >>> import io
    >>> stream = io.BytesIO()
    >>> write_nrrd(stream, np.zeros((2, 3, 1), np.uint8), affine=np.diag([0.5, 0.5, 3.0, 1.0]))
    >>> print(stream.getvalue().split(b"\\n\\n")[0].decode())
    NRRD0004
    type: uint8
    dimension: 3
    space: left-posterior-superior
    sizes: 2 3 1
    space directions: (-0.5,0,0) (0,-0.5,0) (0,0,3)
    kinds: domain domain domain
    endian: little
    encoding: gzip
    space origin: (0,0,0)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import IO

import numpy as np

__all__ = ["METAIMAGE_ELEMENT_TYPES", "NRRD_WRITTEN_TYPES", "lps_columns", "write_metaimage", "write_nrrd"]

METAIMAGE_ELEMENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "i1": "MET_CHAR",
        "u1": "MET_UCHAR",
        "i2": "MET_SHORT",
        "u2": "MET_USHORT",
        "i4": "MET_INT",
        "u4": "MET_UINT",
        "i8": "MET_LONG_LONG",
        "u8": "MET_ULONG_LONG",
        "f4": "MET_FLOAT",
        "f8": "MET_DOUBLE",
    }
)
"""NumPy kind and size (``u1``, ``f4``, ...) -> the ``ElementType`` written."""

NRRD_WRITTEN_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "i1": "int8",
        "u1": "uint8",
        "i2": "int16",
        "u2": "uint16",
        "i4": "int32",
        "u4": "uint32",
        "i8": "int64",
        "u8": "uint64",
        "f4": "float",
        "f8": "double",
    }
)
"""NumPy kind and size (``u1``, ``f4``, ...) -> the NRRD ``type`` written."""

# inpaintssl.data.orientation.LPS_TO_RAS (its own inverse), kept here: this module needs NumPy
# alone, and is loaded so, without torch, by the script in tests/data/itk_written/read_by_itk/.
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_LPS_FROM_RAS.flags.writeable = False
_COMPRESS_LEVEL = 1
"""zlib's fastest level, as nibabel writes ``.nii.gz``: label maps are mostly runs of zeros."""


def _number(value: float) -> str:
    """``value`` in the shortest form that reads back as the same double, ``-0`` as ``0``."""
    return np.format_float_positional(float(value) + 0.0, unique=True, trim="-")


def _type_code(data: np.ndarray, table: Mapping[str, str], *, what: str) -> str:
    code = f"{data.dtype.kind}{data.dtype.itemsize}"
    if code not in table:
        raise ValueError(
            f"{what}: data of type {data.dtype}; expected one of {', '.join(str(np.dtype(c)) for c in table)}"
        )
    return table[code]


def _check_volume(data: np.ndarray, *, what: str) -> None:
    if data.ndim not in (3, 4) or 0 in data.shape:
        raise ValueError(
            f"{what}: data of shape {data.shape}; expected (X, Y, Z) or (X, Y, Z, C), none empty"
        )


def lps_columns(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voxel steps (columns) and origin of a RAS+ ``affine``, in LPS millimetres.

    Raises:
        ValueError: ``affine`` is not a finite ``(4, 4)`` matrix whose first three columns each
            have a length > 0 (a voxel size).

    Example:
        >>> steps, origin = lps_columns(np.array(
        ...     [[0.5, 0, 0, 10.0], [0, 0.7, 0, -20.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]]))
        >>> float(steps[:, 0] @ [-1, 0, 0]), np.linalg.norm(steps, axis=0).tolist(), origin.tolist()
        (0.5, [0.5, 0.7, 2.0], [-10.0, 20.0, 5.0])
    """
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"affine {matrix.tolist()}: expected a finite (4, 4) voxel-to-world matrix")
    lps = _LPS_FROM_RAS @ matrix
    lengths = np.linalg.norm(lps[:3, :3], axis=0)
    if not np.all(lengths > 0):
        axis = int(np.argmin(lengths))
        raise ValueError(
            f"affine {matrix.tolist()}: its column {axis} has length 0; expected a voxel size > 0 along "
            "every axis (ITK and NRRD readers need a direction for each)"
        )
    return lps[:3, :3], lps[:3, 3]


def _x_fastest(data: np.ndarray) -> Iterator[bytes]:
    """``data``'s bytes in file order, one z plane at a time: x fastest, channels fastest of all."""
    little = data.astype(data.dtype.newbyteorder("<"), copy=False)
    for z in range(data.shape[2]):
        # (X, Y[, C]) -> (Y, X[, C]) in row-major order runs x fastest within each row of y.
        yield np.ascontiguousarray(little[:, :, z].swapaxes(0, 1)).tobytes()


def _deflated(chunks: Iterator[bytes], *, gzip: bool) -> Iterator[bytes]:
    """``chunks`` as one zlib (or, with ``gzip``, one gzip) stream, in pieces."""
    compressor = zlib.compressobj(_COMPRESS_LEVEL, zlib.DEFLATED, 31 if gzip else 15)
    for chunk in chunks:
        piece = compressor.compress(chunk)
        if piece:
            yield piece
    yield compressor.flush()


_SPACING_AGREES = 1e-5
"""Relative difference up to which a given voxel size is taken as the affine's column length."""


def _spacing(lengths: np.ndarray, spacing: Sequence[float] | None) -> list[float]:
    if spacing is None:
        return [float(v) for v in lengths]
    # A scan's own ElementSpacing, so that its label map states it exactly: its column lengths
    # differ from it by rounding, more where TransformMatrix was written to six digits (%g), as
    # many writers do (then the label map's directions are the scan's, as far from unit length).
    return [
        float(s) if math.isclose(s, v, rel_tol=_SPACING_AGREES) else float(v)
        for s, v in zip(spacing, lengths)
    ]


def write_metaimage(
    stream: IO[bytes], data: np.ndarray, *, affine: np.ndarray, spacing: Sequence[float] | None = None
) -> None:
    """Write ``data`` to ``stream`` as one compressed MetaImage file (``.mha``), on ``affine``.

    Args:
        stream: A binary file open for writing.
        data: ``(X, Y, Z)``, or ``(X, Y, Z, C)`` with ``C`` channels (``ElementNumberOfChannels``),
            of a type in :data:`METAIMAGE_ELEMENT_TYPES`.
        affine: Voxel-to-world ``(4, 4)`` matrix in RAS+ mm.
        spacing: The voxel sizes the affine was built from, if known (a MetaImage header's
            ``ElementSpacing``): written as given where they agree with the affine's column lengths
            to 1e-5 (rounding, or direction cosines written to six digits), and the directions
            are the columns divided by them; otherwise, and without it, the lengths are written.

    Raises:
        ValueError: ``data`` of another rank or type, or an affine that is not finite or has a
            column of length 0.

    Example:
        >>> import io
        >>> stream = io.BytesIO()
        >>> write_metaimage(stream, np.ones((2, 2, 1), np.uint8), affine=np.diag([0.5, 0.5, 3.0, 1]))
        >>> [line for line in stream.getvalue().split(b"\\n")[:12] if b"Transform" in line]
        [b'TransformMatrix = -1 0 0 0 -1 0 0 0 1']
    """
    what = "MetaImage volume"
    _check_volume(data, what=what)
    element_type = _type_code(data, METAIMAGE_ELEMENT_TYPES, what=what)
    steps, origin = lps_columns(affine)
    lengths = np.linalg.norm(steps, axis=0)
    sizes = _spacing(lengths, spacing)
    directions = steps / np.asarray(sizes)
    compressed = list(_deflated(_x_fastest(data), gzip=False))
    fields = [
        ("ObjectType", "Image"),
        ("NDims", "3"),
        ("BinaryData", "True"),
        ("BinaryDataByteOrderMSB", "False"),
        ("CompressedData", "True"),
        ("CompressedDataSize", str(sum(len(piece) for piece in compressed))),
        # Run n of TransformMatrix is the direction of array axis n: the columns, one after another.
        ("TransformMatrix", " ".join(map(_number, directions.T.ravel()))),
        ("Offset", " ".join(map(_number, origin))),
        ("ElementSpacing", " ".join(map(_number, sizes))),
        ("DimSize", " ".join(str(n) for n in data.shape[:3])),
        *([("ElementNumberOfChannels", str(data.shape[3]))] if data.ndim == 4 else []),
        ("ElementType", element_type),
        ("ElementDataFile", "LOCAL"),
    ]
    stream.write("".join(f"{key} = {value}\n" for key, value in fields).encode("ascii"))
    for piece in compressed:
        stream.write(piece)


def _vector(values: np.ndarray) -> str:
    return "(" + ",".join(map(_number, values)) + ")"


def write_nrrd(stream: IO[bytes], data: np.ndarray, *, affine: np.ndarray) -> None:
    """Write ``data`` to ``stream`` as one gzip-encoded NRRD file (``.nrrd``), on ``affine``.

    Args:
        stream: A binary file open for writing.
        data: ``(X, Y, Z)``, or ``(X, Y, Z, C)`` with ``C`` channels (a first axis of kind
            ``vector``), of a type in :data:`NRRD_WRITTEN_TYPES`.
        affine: Voxel-to-world ``(4, 4)`` matrix in RAS+ mm.

    Raises:
        ValueError: ``data`` of another rank or type, or an affine that is not finite or has a
            column of length 0.
    """
    what = "NRRD volume"
    _check_volume(data, what=what)
    type_name = _type_code(data, NRRD_WRITTEN_TYPES, what=what)
    steps, origin = lps_columns(affine)
    vector = data.ndim == 4
    sizes = [*([data.shape[3]] if vector else []), *data.shape[:3]]
    directions = [*(["none"] if vector else []), *(_vector(steps[:, n]) for n in range(3))]
    kinds = [*(["vector"] if vector else []), *(["domain"] * 3)]
    fields = [
        ("type", type_name),
        ("dimension", str(len(sizes))),
        ("space", "left-posterior-superior"),
        ("sizes", " ".join(map(str, sizes))),
        ("space directions", " ".join(directions)),
        ("kinds", " ".join(kinds)),
        ("endian", "little"),
        ("encoding", "gzip"),
        ("space origin", _vector(origin)),
    ]
    header = "NRRD0004\n" + "".join(f"{key}: {value}\n" for key, value in fields) + "\n"
    stream.write(header.encode("ascii"))
    for piece in _deflated(_x_fastest(data), gzip=True):
        stream.write(piece)
