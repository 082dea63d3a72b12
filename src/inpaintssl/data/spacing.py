"""In-plane voxel spacing of a run's training slices, and whether a new scan's spacing fits it.

A segmentation network learns anatomy at the pixel size it was trained at (paper sec. 2.2: the
slices keep their acquired resolution; nothing is resampled). A scan at another resolution shows
the same anatomy larger or smaller in pixels, and the network's labels, and the volumes computed
from them (sec. 2.7), become unreliable without any error. Training records the range of its
slices' in-plane spacing (``manifest.json``, ``in_plane_spacing_mm``); prediction compares each
new scan with it and warns when the scan lies outside, beyond :data:`SPACING_TOLERANCE`.

The spacing is the one the network sees: after ``data.resize_mode: resize`` a slice's pixels
cover ``spacing * stored size / image_size``. Each pair is sorted (finer axis first), so a scan
stored in another in-plane orientation (rows and columns swapped) compares equal.

Example:
    >>> seen = SpacingRange.of([(0.5, 0.5), (0.55, 0.6)])
    >>> seen.smallest, seen.largest, seen.describe()
    ((0.5, 0.5), (0.55, 0.6), '0.5 x 0.5 to 0.55 x 0.6 mm')
    >>> seen.fits((0.6, 0.52)), seen.fits((1.0, 1.0))
    (True, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from inpaintssl.data.base import SliceDataset
from inpaintssl.data.views import evenly_spaced, slice_spacing_of

__all__ = ["SPACING_TOLERANCE", "SpacingRange", "training_spacing"]

SPACING_TOLERANCE = 0.2
"""How far (relative) a scan's spacing may lie outside the training range before prediction
warns: scanners differ by a few percent, and training sets often span one range (CT in-plane
spacing follows the patient's size); a change of resolution, such as 0.3 to 0.5 mm, is far more."""


@dataclass(frozen=True)
class SpacingRange:
    """Smallest and largest in-plane spacing ``(finer, coarser)`` in mm over a set of slices.

    Attributes:
        smallest: Per sorted axis, the smallest spacing seen.
        largest: Per sorted axis, the largest spacing seen.
    """

    smallest: tuple[float, float]
    largest: tuple[float, float]

    @classmethod
    def of(cls, spacings: Iterable[tuple[float, float]]) -> SpacingRange:
        """The range of ``spacings`` (``(row_mm, col_mm)`` pairs, any order within a pair).

        Raises:
            ValueError: No spacing, or one that is not positive and finite.
        """
        pairs = [tuple(sorted((float(a), float(b)))) for a, b in spacings]
        if not pairs:
            raise ValueError("no slice spacing to take a range of")
        bad = [p for p in pairs if not all(0.0 < v < float("inf") for v in p)]
        if bad:
            raise ValueError(f"in-plane spacing {bad[0]} mm; expected positive, finite millimetres")
        return cls(
            (min(p[0] for p in pairs), min(p[1] for p in pairs)),
            (max(p[0] for p in pairs), max(p[1] for p in pairs)),
        )

    def fits(self, spacing: tuple[float, float], *, tolerance: float = SPACING_TOLERANCE) -> bool:
        """Whether ``spacing`` lies in the range widened by ``tolerance`` on each side."""
        pair = sorted(float(v) for v in spacing)
        return all(
            low / (1.0 + tolerance) <= value <= high * (1.0 + tolerance)
            for value, low, high in zip(pair, self.smallest, self.largest)
        )

    def nearest(self, spacing: tuple[float, float]) -> tuple[float, float]:
        """The spacing in the range closest to ``spacing``, in ``spacing``'s axis order.

        The finer axis is clamped to the range of the finer axes seen, the coarser to that of the
        coarser ones; a spacing inside the range is returned as is.

        Example:
            >>> SpacingRange.of([(0.5, 0.5), (0.6, 0.7)]).nearest((1.0, 0.4))
            (0.7, 0.5)
        """
        first, second = (float(v) for v in spacing)
        swapped = first > second
        finer, coarser = (second, first) if swapped else (first, second)
        finer = min(max(finer, self.smallest[0]), self.largest[0])
        coarser = min(max(coarser, self.smallest[1]), self.largest[1])
        return (coarser, finer) if swapped else (finer, coarser)

    def describe(self) -> str:
        """``0.5 x 0.5 mm``, or ``0.5 x 0.5 to 0.55 x 0.6 mm`` for a range."""
        low = f"{self.smallest[0]:.3g} x {self.smallest[1]:.3g}"
        if self.smallest == self.largest:
            return f"{low} mm"
        return f"{low} to {self.largest[0]:.3g} x {self.largest[1]:.3g} mm"

    def to_json(self) -> dict[str, list[float]]:
        """``{"smallest": [a, b], "largest": [c, d]}`` (what ``manifest.json`` stores)."""
        return {"smallest": list(self.smallest), "largest": list(self.largest)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SpacingRange:
        """Read :meth:`to_json` output.

        Raises:
            ValueError: Not two pairs of positive numbers; the message shows what was found.
        """
        try:
            smallest, largest = value["smallest"], value["largest"]
            return cls.of([(float(smallest[0]), float(smallest[1])), (float(largest[0]), float(largest[1]))])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(
                f"in_plane_spacing_mm={value!r}; expected {{'smallest': [a, b], 'largest': [c, d]}} in mm"
            ) from exc


def training_spacing(dataset: SliceDataset, *, limit: int | None = 256) -> SpacingRange | None:
    """The in-plane spacing range of ``dataset``'s slices as the network sees them.

    Covers every slice where the dataset tells each one's spacing without reading it (the
    built-in datasets, through the views of :mod:`~inpaintssl.data.views`; microseconds a slice),
    so one scan at another spacing among hundreds is in the range. Where some source cannot tell
    (a plugin without ``slice_spacing``), at most ``limit`` items are read, spread evenly.

    Returns:
        The range, or ``None`` for an empty dataset or one whose items state no usable spacing
        (a plugin without the ``spacing`` key, or with a zero or infinite one): the run then
        records none and its scans are not checked, rather than training failing over it.
    """
    indices = range(len(dataset)) if _tells_spacing(dataset) else evenly_spaced(len(dataset), limit)
    if not indices:
        return None
    try:
        return SpacingRange.of(slice_spacing_of(dataset, i) for i in indices)
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
