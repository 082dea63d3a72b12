"""Closed planar contours as pixel masks: which pixel centres a polygon encloses.

RT Structure Sets (:mod:`~inpaintssl.data.dicom_rtstruct`) and most annotation tools store a region
as polygons drawn on slices; training needs it as pixels. :func:`polygon_mask` fills a slice's
polygons with the even-odd rule over pixel centres: a pixel belongs to the region when a ray from
its centre crosses the polygons' edges an odd number of times. A hole is then a polygon drawn
inside another (the form RTSTRUCT files give holes in), and a polygon's own self-overlaps cancel as
in every even-odd filler.

A centre exactly on an edge follows the crossing-number rule's half-open convention (PNPOLY's,
and the one graphics fillers call top-left): along each row an edge counts for the centres before
it, not at it, and a vertex for the edge leaving it upward, not the one arriving. So polygons
that tile a slice along shared edges give each pixel to exactly one of them, and a polygon's
pixels do not depend on where its vertex list starts or which way it turns. Vertices are snapped
to 1e-6 pixel first so that positions converted from millimetres (``4.9999999999`` for ``5``)
fall on the side their stated value does.

Example:
    >>> square = np.array([[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]])
    >>> polygon_mask([square], (5, 5)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["VERTEX_SNAP", "polygon_mask"]

VERTEX_SNAP = 1e-6
"""Vertices are rounded to this fraction of a pixel before filling."""


def polygon_mask(polygons: Iterable[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a ``shape`` slice whose centres the closed ``polygons`` enclose (even-odd rule).

    Args:
        polygons: Each ``(n, 2)``, ``n >= 3``: vertices in pixel coordinates of the slice, ``[:, 0]``
            along its first axis and ``[:, 1]`` along its second, pixel ``(i, j)``'s centre at
            ``(i, j)``. Closed implicitly (the last vertex joins the first). Vertices may lie
            outside the slice: only the pixels inside it are returned.
        shape: The slice's ``(rows, columns)``.

    Returns:
        A boolean ``shape`` mask.

    Raises:
        ValueError: A polygon of another shape than ``(n, 2)`` with ``n >= 3``, or with a vertex
            that is not finite.
    """
    rows, columns = shape
    # Per row, crossings toggle the parity of every centre before them: +1 at column 0 and -1
    # just past the last centre before the crossing, summed over all polygons, then a cumulative
    # sum over the rows some edge crosses.
    crossed_rows: list[np.ndarray] = []
    crossed_before: list[np.ndarray] = []
    for number, polygon in enumerate(polygons):
        vertices = np.asarray(polygon, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 2 or vertices.shape[0] < 3:
            raise ValueError(
                f"polygon_mask: polygon {number} has shape {vertices.shape}; expected (n, 2) vertices, n >= 3"
            )
        if not np.isfinite(vertices).all():
            raise ValueError(f"polygon_mask: polygon {number} has a vertex that is not finite")
        vertices = np.round(vertices / VERTEX_SNAP) * VERTEX_SNAP
        start, end = vertices, np.roll(vertices, -1, axis=0)
        low = np.minimum(start[:, 0], end[:, 0])
        high = np.maximum(start[:, 0], end[:, 0])
        # Row centres r with low <= r < high (half-open: a vertex counts once, a horizontal edge never).
        first = np.clip(np.ceil(low), 0, rows).astype(np.int64)
        stop = np.clip(np.ceil(high), 0, rows).astype(np.int64)
        counts = np.maximum(stop - first, 0)
        if not counts.any():
            continue
        edge = np.repeat(np.arange(len(vertices)), counts)
        row = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + first[edge]
        a0, b0, a1, b1 = start[edge, 0], start[edge, 1], end[edge, 0], end[edge, 1]
        crossing = b0 + (row - a0) * (b1 - b0) / (a1 - a0)
        # Centres c < crossing: columns 0 .. ceil(crossing) - 1.
        before = np.clip(np.ceil(crossing), 0, columns).astype(np.int64)
        crossed_rows.append(row)
        crossed_before.append(before)
    mask = np.zeros(shape, dtype=bool)
    if not crossed_rows:
        return mask
    row, before = np.concatenate(crossed_rows), np.concatenate(crossed_before)
    top, bottom = int(row.min()), int(row.max()) + 1
    width = columns + 1
    flat = (row - top) * width
    size = (bottom - top) * width
    toggles = np.bincount(flat, minlength=size) - np.bincount(flat + before, minlength=size)
    counts = np.cumsum(toggles.reshape(bottom - top, width)[:, :columns], axis=1)
    mask[top:bottom] = (counts % 2).astype(bool)
    return mask
