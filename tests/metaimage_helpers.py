"""MetaImage files for the tests, written byte by byte to the MetaIO layout ITK writes."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_TYPES = {
    "u1": "MET_UCHAR",
    "i1": "MET_CHAR",
    "u2": "MET_USHORT",
    "i2": "MET_SHORT",
    "i4": "MET_INT",
    "u4": "MET_UINT",
    "i8": "MET_LONG_LONG",
    "f4": "MET_FLOAT",
    "f8": "MET_DOUBLE",
}


def write_metaimage(
    path: Path,
    array: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    transform: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
    compressed: bool = False,
    big_endian: bool = False,
    data_file: str | None = None,
    header_size: int = 0,
    local: bool = False,
) -> None:
    """``array`` (``(X, Y[, Z])``, or ``(X, Y, Z, C)`` with ``C`` channels) as a MetaImage file.

    An ``.mha`` (or with ``local`` an ``.mhd``) holds its data (``ElementDataFile = LOCAL``);
    an ``.mhd`` names ``data_file`` (default: its own name with ``.raw``/``.zraw``) beside it,
    written after ``header_size`` bytes of padding (-1: some, and the header says the data ends
    the file). ``transform`` is
    ITK's TransformMatrix (the n-th run of NDims values: the direction of array axis n, in LPS),
    ``offset`` the first voxel's LPS position (mm).
    """
    channels = array.shape[3] if array.ndim == 4 else 1
    ndims = min(array.ndim, 3)
    dtype = array.dtype.newbyteorder(">" if big_endian else "<")
    # x runs fastest on disk (channels fastest of all): C order of (Z, Y, X, C).
    axes = (*range(ndims - 1, -1, -1), *(range(3, 4) if array.ndim == 4 else ()))
    data = np.ascontiguousarray(array.transpose(axes)).astype(dtype).tobytes()
    if compressed:
        data = zlib.compress(data)
    lines = [
        "ObjectType = Image",
        f"NDims = {ndims}",
        "BinaryData = True",
        f"BinaryDataByteOrderMSB = {big_endian}",
        f"CompressedData = {compressed}",
    ]
    if compressed:
        lines.append(f"CompressedDataSize = {len(data)}")
    if transform is not None:
        lines.append("TransformMatrix = " + " ".join(f"{v:g}" for v in transform))
    if offset is not None:
        lines.append("Offset = " + " ".join(f"{v:g}" for v in offset))
    if spacing is not None:
        lines.append("ElementSpacing = " + " ".join(f"{v:g}" for v in spacing))
    lines.append("DimSize = " + " ".join(str(n) for n in array.shape[:ndims]))
    if channels > 1:
        lines.append(f"ElementNumberOfChannels = {channels}")
    lines.append(f"ElementType = {_TYPES[array.dtype.str[1:]]}")
    if local or path.suffix.lower() == ".mha":
        lines.append("ElementDataFile = LOCAL")
        path.write_bytes(("\n".join(lines) + "\n").encode() + data)
        return
    name = data_file or path.with_suffix(".zraw" if compressed else ".raw").name
    if header_size:
        lines.insert(-1, f"HeaderSize = {header_size}")
    lines.append(f"ElementDataFile = {name}")
    path.write_text("\n".join(lines) + "\n")
    # HeaderSize -1: the data ends the file, after a header of the writer's own (17 bytes here).
    padding = 17 if header_size == -1 else header_size
    (path.parent / name).write_bytes(b"\xff" * padding + data)
