"""Closed planar contours as pixel masks and back: which pixel centres a polygon encloses, and outlines.

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

:func:`mask_outlines` goes the other way, for writing label maps as contours: polygons along
the pixels' edges whose even-odd fill is the mask again, pixel for pixel.

Example:
    >>> square = np.array([[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]])
    >>> polygon_mask([square], (5, 5)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    >>> outline, = mask_outlines(polygon_mask([square], (5, 5)))
    >>> outline.tolist()
    [[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["VERTEX_SNAP", "mask_outlines", "polygon_mask"]

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


# Directions along the corner grid, (rows, columns), clockwise on screen (rows down): each turn to
# the right is the next one.
_DIRECTIONS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def mask_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """Closed polygons along the edges of ``mask``'s pixels whose even-odd fill is ``mask`` exactly.

    Each outline walks a boundary between the mask and the rest (or the slice's border) with the
    mask on its right (rows down, columns right): a region's outer boundary runs clockwise on
    screen, a hole's counter-clockwise, each a separate polygon as RT Structure Sets hold holes.
    Where two pixels touch only at a corner, each keeps its own outline (the mask's 4-connected
    parts), so outlines meet at such corners without crossing; a region pinched at a corner can
    touch itself there. Vertices are pixel corners (half-integers: pixel ``(i, j)`` spans
    ``i - 0.5 .. i + 0.5``), only where the outline turns. No pixel centre lies on an outline, so
    :func:`polygon_mask` of the outlines is ``mask`` under any boundary convention.

    Args:
        mask: A 2-D boolean (or 0/1) slice.

    Returns:
        ``(n, 2)`` float arrays of vertices in pixel coordinates, ``[:, 0]`` rows and ``[:, 1]``
        columns, in the order of their first vertex (row, then column); empty for an empty mask.

    Raises:
        ValueError: ``mask`` is not 2-D.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask_outlines: mask has shape {mask.shape}; expected a 2-D slice")
    inside = np.pad(mask.astype(bool), 1)
    # Corner (i, j) is the top-left corner of padded pixel (i, j). Each boundary edge leaves a corner
    # in one of _DIRECTIONS, the mask on its right: below/above a row boundary, right/left of a column one.
    i, j = np.nonzero(inside[1:, :] != inside[:-1, :])  # padded rows i and i + 1, along corner row i + 1
    below = inside[i + 1, j]
    rows_h, columns_h, heading_h = i + 1, np.where(below, j, j + 1), np.where(below, 0, 2)
    i, j = np.nonzero(inside[:, 1:] != inside[:, :-1])  # padded columns j and j + 1, corner column j + 1
    right = inside[i, j + 1]
    rows_v, columns_v, heading_v = np.where(right, i + 1, i), j + 1, np.where(right, 3, 1)
    rows = np.concatenate([rows_h, rows_v])
    columns = np.concatenate([columns_h, columns_v])
    heading = np.concatenate([heading_h, heading_v])
    if rows.size == 0:
        return []
    width = inside.shape[1] + 1
    # Edges numbered by their start corner (row-major), so each loop's lowest-numbered edge leaves
    # its smallest corner, where it turns: that corner is the outline's first vertex.
    order = np.lexsort((heading, rows * width + columns))
    rows, columns, heading = rows[order], columns[order], heading[order]
    start = rows * width + columns
    step = np.asarray(_DIRECTIONS)[heading]
    end = (rows + step[:, 0]) * width + columns + step[:, 1]
    # The edge each edge leads to: the one leaving its end corner, or where two leave it (pixels
    # touching only at that corner), the rightmost turn, so each pixel keeps its own outline.
    first = np.searchsorted(start, end, side="left")
    two = np.searchsorted(start, end, side="right") - first == 2
    second = np.minimum(first + 1, start.size - 1)
    following = np.where(two & (heading[second] == (heading + 1) % 4), second, first)
    # Each loop (a cycle of `following`) named by its lowest edge, found by pointer doubling; then
    # each edge's place along its loop, by list ranking from that edge.
    hops = max(1, int(np.ceil(np.log2(start.size))) + 1)
    loop, jump = np.arange(start.size), following.copy()
    for _ in range(hops):
        loop, jump = np.minimum(loop, loop[jump]), jump[jump]
    last = following == loop  # the edge before its loop's first
    after = np.where(last, np.arange(start.size), following)
    to_last = (~last).astype(np.int64)
    for _ in range(hops):
        to_last, after = to_last + to_last[after], after[after]
    place = to_last[loop] - to_last
    order = np.lexsort((place, loop))
    previous = np.empty_like(following)
    previous[following] = np.arange(start.size)
    turns = order[heading[previous[order]] != heading[order]]
    corners = np.column_stack([rows[turns], columns[turns]]).astype(np.float64) - 1.5
    breaks = np.flatnonzero(np.diff(loop[turns])) + 1
    return list(np.split(corners, breaks))
