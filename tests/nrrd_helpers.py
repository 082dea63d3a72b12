"""NRRD files for the tests, written byte by byte to the layout of the NRRD format (NRRD0004)."""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_TYPES = {
    "u1": "uint8",
    "i1": "int8",
    "u2": "uint16",
    "i2": "int16",
    "i4": "int32",
    "u4": "uint32",
    "i8": "int64",
    "f4": "float",
    "f8": "double",
}


def write_nrrd(
    path: Path,
    array: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    directions: Sequence[Sequence[float]] | None = None,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    space: str | None = "left-posterior-superior",
    encoding: str = "raw",
    big_endian: bool = False,
    channels_first: bool = True,
    data_file: str | None = None,
) -> None:
    """``array`` (``(X, Y[, Z])``, or ``(X, Y, Z, C)``) as an NRRD file (``.nrrd``, or an ``.nhdr``
    header beside ``data_file``, default its own name with ``.raw``).

    ``directions``: each spatial axis' step (mm) in ``space`` (``None``: in a ``space dimension``
    of the steps' length), as ``space directions``; else
    ``spacing`` as ``spacings`` (no space); else neither. Channels are written as the first,
    fastest axis (``kinds: vector``), as 3D Slicer and ITK write them, or last with
    ``channels_first=False``.
    """
    spatial = min(array.ndim, 3)
    data_array = array
    kinds = ["domain"] * spatial
    if array.ndim == 4:
        data_array = np.moveaxis(array, 3, 0) if channels_first else array
        kinds = ["vector", *kinds] if channels_first else [*kinds, "vector"]
    dtype = array.dtype.newbyteorder(">" if big_endian else "<")
    # The first axis runs fastest: C order of the axes reversed.
    raw = (
        np.ascontiguousarray(data_array.transpose(range(data_array.ndim - 1, -1, -1))).astype(dtype).tobytes()
    )
    data = {"raw": raw, "gzip": gzip.compress(raw), "bzip2": bz2.compress(raw)}.get(encoding)
    if encoding == "ascii":
        data = (" ".join(str(v) for v in np.frombuffer(raw, dtype=dtype)) + "\n").encode()
    assert data is not None, encoding
    lines = [
        "NRRD0004",
        "# written by the inpaintssl tests",
        f"type: {_TYPES[array.dtype.str[1:]]}",
        f"dimension: {data_array.ndim}",
    ]
    if directions is not None:
        # Without a named space: one of the directions' own dimension.
        lines.append(f"space: {space}" if space is not None else f"space dimension: {len(directions[0])}")
    lines.append("sizes: " + " ".join(str(n) for n in data_array.shape))
    if directions is not None:
        entries = ["(" + ",".join(f"{v:.17g}" for v in d) + ")" for d in directions]
        if array.ndim == 4:
            entries = ["none", *entries] if channels_first else [*entries, "none"]
        lines.append("space directions: " + " ".join(entries))
    elif spacing is not None:
        values = [f"{v:g}" for v in spacing]
        if array.ndim == 4:
            values = ["nan", *values] if channels_first else [*values, "nan"]
        lines.append("spacings: " + " ".join(values))
    lines.append("kinds: " + " ".join(kinds))
    lines.append(f"endian: {'big' if big_endian else 'little'}")
    lines.append(f"encoding: {encoding}")
    if directions is not None:
        lines.append("space origin: (" + ",".join(f"{v:.17g}" for v in origin) + ")")
    lines.append("Segment0_Name:=ignored key/value pair")
    if path.suffix.lower() == ".nhdr":
        name = data_file or path.with_suffix(".raw").name
        lines.append(f"data file: {name}")
        path.write_text("\n".join(lines) + "\n")
        (path.parent / name).write_bytes(data)
        return
    path.write_bytes(("\n".join(lines) + "\n\n").encode() + data)
