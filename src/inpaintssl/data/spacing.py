"""In-plane voxel spacing of a run's training slices, and whether a new scan's spacing fits it.

A segmentation network learns anatomy at the pixel size it was trained at (paper sec. 2.2: the
slices keep their acquired resolution; nothing is resampled). A scan at another resolution shows
the same anatomy larger or smaller in pixels, and the network's labels, and the volumes computed
from them (sec. 2.7), become unreliable without any error. Training records the range of its
slices' in-plane spacing (``manifest.json``, ``in_plane_spacing_mm``); prediction compares each
new scan with it and warns when the scan lies outside, beyond :data:`SPACING_TOLERANCE`.

The spacing is the one the network sees: after ``data.resize_mode: resize`` a slice's pixels
cover ``spacing * stored size / image_size``. A run records it per axis (rows, then columns:
:attr:`SpacingRange.by_axis`), and a scan read in the training volumes' axis order (predict
reorients it first, :mod:`~inpaintssl.data.orientation`) is compared axis by axis: a scan at rows
2 mm x columns 1 mm does not fit a run trained at rows 1 mm x columns 2 mm, whose anatomy it
shows squashed along one axis and stretched along the other. Where nothing tells how a scan's
axes lie against the training slices' (NumPy and HDF5 hold no orientation), it fits when its
rows and columns fit either way round. Runs recorded before the per-axis record stored each pair
sorted (finer axis first); their scans are compared so, sorted too.

Example:
    >>> seen = SpacingRange.of([(1.0, 2.0), (1.1, 2.0)], by_axis=True)
    >>> seen.smallest, seen.largest, seen.describe()
    ((1.0, 2.0), (1.1, 2.0), '1 x 2 to 1.1 x 2 mm')
    >>> seen.fits((1.05, 2.0)), seen.fits((2.0, 1.0)), seen.fits((2.0, 1.0), axes_known=False)
    (True, False, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from inpaintssl.data.base import SliceDataset
from inpaintssl.data.orientation import Reorientation
from inpaintssl.data.views import evenly_spaced, slice_spacing_of

__all__ = ["SPACING_TOLERANCE", "SpacingRange", "same_axis_order", "training_spacing"]

SPACING_TOLERANCE = 0.2
"""How far (relative) a scan's spacing may lie outside the training range before prediction
warns: scanners differ by a few percent, and training sets often span one range (CT in-plane
spacing follows the patient's size); a change of resolution, such as 0.3 to 0.5 mm, is far more."""

_BY_AXIS = "rows_columns"
"""The ``axes`` entry of a record kept per axis (:meth:`SpacingRange.to_json`); records without
one (runs before it) hold sorted pairs."""


@dataclass(frozen=True)
class SpacingRange:
    """Smallest and largest in-plane spacing in mm over a set of slices.

    Attributes:
        smallest: Per axis, the smallest spacing seen: ``(rows, columns)`` where :attr:`by_axis`,
            else ``(finer, coarser)`` of each pair sorted.
        largest: Per axis, the largest spacing seen, as :attr:`smallest`.
        by_axis: Whether the range is kept per axis of the slices (rows, columns), as runs record
            it (:func:`training_spacing`); ``False``: each pair was sorted, finer axis first (the
            record of runs before it, and of exports written by them), so which axis was finer is
            unknown and scans are compared sorted too.
    """

    smallest: tuple[float, float]
    largest: tuple[float, float]
    by_axis: bool = False

    @classmethod
    def of(cls, spacings: Iterable[tuple[float, float]], *, by_axis: bool = False) -> SpacingRange:
        """The range of ``spacings`` (``(row_mm, col_mm)`` pairs).

        Args:
            spacings: The slices' spacings.
            by_axis: Keep the range per axis (rows, columns); ``False``: sort each pair first
                (finer axis first), so that a pair and its swap give one range.

        Raises:
            ValueError: No spacing, or one that is not positive and finite.
        """
        given = [(float(a), float(b)) for a, b in spacings]
        pairs = given if by_axis else [(min(a, b), max(a, b)) for a, b in given]
        if not pairs:
            raise ValueError("no slice spacing to take a range of")
        bad = [p for p in pairs if not all(0.0 < v < float("inf") for v in p)]
        if bad:
            raise ValueError(f"in-plane spacing {bad[0]} mm; expected positive, finite millimetres")
        return cls(
            (min(p[0] for p in pairs), min(p[1] for p in pairs)),
            (max(p[0] for p in pairs), max(p[1] for p in pairs)),
            by_axis,
        )

    def fits(
        self, spacing: tuple[float, float], *, tolerance: float = SPACING_TOLERANCE, axes_known: bool = True
    ) -> bool:
        """Whether ``spacing`` lies in the range widened by ``tolerance`` on each side.

        Args:
            spacing: ``(row_mm, col_mm)`` of a slice as the network sees it.
            tolerance: Relative widening of the range on each side.
            axes_known: Whether ``spacing``'s rows and columns are those of the training slices
                (the scan was read in the training volumes' axis order). ``False``: it fits when
                it fits as given or with its rows and columns swapped. A range of sorted pairs
                (:attr:`by_axis` ``False``) compares the sorted pair either way.
        """
        row, col = float(spacing[0]), float(spacing[1])
        if not self.by_axis:
            return self._within((min(row, col), max(row, col)), tolerance)
        return self._within((row, col), tolerance) or (not axes_known and self._within((col, row), tolerance))

    def _within(self, pair: tuple[float, float], tolerance: float) -> bool:
        return all(
            low / (1.0 + tolerance) <= value <= high * (1.0 + tolerance)
            for value, low, high in zip(pair, self.smallest, self.largest)
        )

    def nearest(self, spacing: tuple[float, float], *, axes_known: bool = True) -> tuple[float, float]:
        """The spacing in the range closest to ``spacing``, in ``spacing``'s axis order.

        Kept per axis (:attr:`by_axis`), each axis is clamped to the range of its own axis; with
        ``axes_known`` ``False``, to that of its own axis or of the other, whichever moves the
        pair less (the swap the scan most likely is). Of sorted pairs, the finer axis is clamped
        to the range of the finer axes seen, the coarser to that of the coarser ones. A spacing
        inside the range is returned as is.

        Example:
            >>> SpacingRange.of([(1.0, 2.0)], by_axis=True).nearest((2.0, 0.5))
            (1.0, 2.0)
            >>> SpacingRange.of([(0.5, 0.5), (0.6, 0.7)]).nearest((1.0, 0.4))
            (0.7, 0.5)
        """
        first, second = (float(v) for v in spacing)
        if self.by_axis:
            as_given = self._clamped((first, second))
            if axes_known:
                return as_given
            other_col, other_row = self._clamped((second, first))
            swapped = (other_row, other_col)
            # Ties go to the scan as given: nothing says its axes are swapped.
            closer = _log_distance(swapped, (first, second)) < _log_distance(as_given, (first, second))
            return swapped if closer else as_given
        swapped_pair = first > second
        finer, coarser = (second, first) if swapped_pair else (first, second)
        finer = min(max(finer, self.smallest[0]), self.largest[0])
        coarser = min(max(coarser, self.smallest[1]), self.largest[1])
        return (coarser, finer) if swapped_pair else (finer, coarser)

    def _clamped(self, pair: tuple[float, float]) -> tuple[float, float]:
        return (
            min(max(pair[0], self.smallest[0]), self.largest[0]),
            min(max(pair[1], self.smallest[1]), self.largest[1]),
        )

    def describe(self) -> str:
        """``0.5 x 0.5 mm``, or ``0.5 x 0.5 to 0.55 x 0.6 mm`` for a range (rows x columns where
        :attr:`by_axis`)."""
        low = f"{self.smallest[0]:.3g} x {self.smallest[1]:.3g}"
        if self.smallest == self.largest:
            return f"{low} mm"
        return f"{low} to {self.largest[0]:.3g} x {self.largest[1]:.3g} mm"

    def to_json(self) -> dict[str, Any]:
        """``{"smallest": [a, b], "largest": [c, d]}`` (what ``manifest.json`` stores), with
        ``"axes": "rows_columns"`` for a range kept per axis."""
        record: dict[str, Any] = {"smallest": list(self.smallest), "largest": list(self.largest)}
        if self.by_axis:
            record["axes"] = _BY_AXIS
        return record

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SpacingRange:
        """Read :meth:`to_json` output; a record without ``axes`` (an older run's) is of sorted pairs.

        Raises:
            ValueError: Not two pairs of positive numbers, or ``axes`` other than
                ``"rows_columns"``; the message shows what was found.
        """
        try:
            smallest, largest = value["smallest"], value["largest"]
            axes = value.get("axes")
            if axes not in (None, _BY_AXIS):
                raise ValueError(f"axes={axes!r}")
            return cls.of(
                [(float(smallest[0]), float(smallest[1])), (float(largest[0]), float(largest[1]))],
                by_axis=axes == _BY_AXIS,
            )
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(
                f"in_plane_spacing_mm={value!r}; expected {{'smallest': [a, b], 'largest': [c, d]}} in mm, "
                f"with 'axes': {_BY_AXIS!r} where kept per axis"
            ) from exc


def _log_distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """How far apart two spacings are, as the sum of their axes' log ratios (scale-free)."""
    return abs(math.log(a[0] / b[0])) + abs(math.log(a[1] / b[1]))


def same_axis_order(orientation: str | None, trained: Iterable[str]) -> bool:
    """Whether slices of a volume read in ``orientation`` have the rows and columns of the training
    slices, cut from volumes in the ``trained`` orientations: every one of them lists the same
    world axes in the same order (flips aside, which change no spacing).

    ``False`` where either is unknown (``None``, or no training orientation recorded): nothing
    then says which of the scan's axes is which of the training slices'.

    Example:
        >>> same_axis_order("LPS", ["RAS"]), same_axis_order("PLS", ["RAS"]), same_axis_order(None, ["RAS"])
        (True, False, False)
    """
    codes = list(trained)
    if orientation is None or not codes:
        return False
    try:
        return all(Reorientation.between(orientation, t).axes == (0, 1, 2) for t in codes)
    except ValueError:
        return False


def training_spacing(dataset: SliceDataset, *, limit: int | None = 256) -> SpacingRange | None:
    """The in-plane spacing range of ``dataset``'s slices as the network sees them.

    Covers every slice where the dataset tells each one's spacing without reading it (the
    built-in datasets, through the views of :mod:`~inpaintssl.data.views`; microseconds a slice),
    so one scan at another spacing among hundreds is in the range. Where some source cannot tell
    (a plugin without ``slice_spacing``), at most ``limit`` items are read, spread evenly. The
    range is kept per axis (rows, columns: :attr:`SpacingRange.by_axis`).

    Returns:
        The range, or ``None`` for an empty dataset or one whose items state no usable spacing
        (a plugin without the ``spacing`` key, or with a zero or infinite one): the run then
        records none and its scans are not checked, rather than training failing over it.
    """
    indices = range(len(dataset)) if _tells_spacing(dataset) else evenly_spaced(len(dataset), limit)
    if not indices:
        return None
    try:
        return SpacingRange.of((slice_spacing_of(dataset, i) for i in indices), by_axis=True)
    except (KeyError, ValueError):
        return None


def _tells_spacing(dataset: SliceDataset, *, with_shape: bool = False) -> bool:
    """Whether ``dataset`` tells each item's spacing (and, ``with_shape``, its slice shape) without
    reading it, and so does every dataset under it: a view that resizes asks its parent's shape."""
    wanted = ("slice_spacing", "slice_shape") if with_shape else ("slice_spacing",)
    if not all(callable(getattr(dataset, name, None)) for name in wanted):
        return False
    parts = getattr(dataset, "parts", None)
    if isinstance(parts, list):
        return all(_tells_spacing(part, with_shape=True) for part in parts if isinstance(part, SliceDataset))
    parent = getattr(dataset, "parent", None)
    return _tells_spacing(parent, with_shape=True) if isinstance(parent, SliceDataset) else True
