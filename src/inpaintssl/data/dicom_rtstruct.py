"""RT Structure Sets (RTSTRUCT) as label maps: their contours filled on the grid of the series they outline.

Radiotherapy planning systems, MIM, 3D Slicer (SlicerRT), TCIA's collections and most hospital
archives keep CT annotations as an RTSTRUCT: named regions (ROIs, ``StructureSetROISequence``), each
a stack of closed polygons in patient millimetres (``ROIContourSequence``), each polygon naming the
slice it was drawn on (``ContourImageSequence``). :class:`DicomRtStructVolume` fills the ROIs a
training run asks for, by name, into a label map on the series' stored grid
(:class:`~inpaintssl.data.dicom.DicomVolume`, ``(rows, columns, slices)``); the ``ct`` dataset reads
a ``.dcm`` label that is an RTSTRUCT so, each class from the ROI of its name
(:func:`~inpaintssl.data.labels.plain_name`: case, spaces, hyphens and underscores aside), stored
as the class's value (``label_values``, by default ``k + 1``). ROI numbers are not used: each
structure set numbers its ROIs in its own order.

Filling: a pixel is in an ROI when its centre lies inside the ROI's polygons on its slice by the
even-odd rule (:func:`~inpaintssl.data.contours.polygon_mask`), so a polygon drawn inside another
is a hole, and ROIs sharing an edge share no pixel. A polygon is placed on the slice it references
(instance, and frame in an Enhanced file), else by its points' position (within a tenth of a slice
step of one slice's plane), and into that slice's pixels by the slice's own geometry
(:meth:`~inpaintssl.data.dicom.DicomVolume.slice_pixel_to_patient`: its ``ImagePositionPatient``,
``ImageOrientationPatient`` and ``PixelSpacing``), as its pixels were placed by the scanner and
its contours by the writer: a slice shifted within its plane off the series' one affine
(:attr:`~inpaintssl.data.dicom.DicomVolume.shifted_slices`) is filled where it lies, and a slice
after a gap in an unevenly spaced series is found by its own position. Where two classes' ROIs
cover one pixel, the later class in ``roi_values``'s order keeps it and a warning names both and
counts the pixels: hand-drawn neighbours overlap by a pixel or two, which a label map cannot hold.

Refused, naming the file, the ROI and the contour: a class naming no ROI (the message lists the
ROIs), or two ROIs of one name; an ROI of another frame of reference than the series; contours
that are not ``CLOSED_PLANAR`` (points and open lines enclose no area); a contour referencing a
slice its points do not lie on, lying on no slice, or outside the slices; a series without patient
geometry (its contours, in millimetres, cannot be placed).

Example:
    >>> series = DicomVolume("ct/series-01")  # doctest: +SKIP
    >>> volume = DicomRtStructVolume(
    ...     "rtstruct.dcm", reference=series, roi_values={"liver": 1, "spleen": 2}
    ... )  # doctest: +SKIP
    >>> volume.shape, volume.roi_names  # doctest: +SKIP
    ((512, 512, 120), {1: 'BODY', 2: 'Liver', 3: 'Spleen'})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.checks import existing_path
from inpaintssl.data.contours import polygon_mask
from inpaintssl.data.dicom import SeriesAnnotation, dicom_object_kind
from inpaintssl.data.labels import plain_name
from inpaintssl.data.orientation import LPS_TO_RAS
from inpaintssl.data.readers import Volume
from inpaintssl.extras import import_optional
from inpaintssl.warning_format import warn_each_time

__all__ = ["ON_SLICE", "DicomRtStructVolume", "is_dicom_rtstruct"]

ON_SLICE = 0.1
"""Largest distance of an unreferenced contour's points from the slice it is placed on, in slice steps."""

_OFF_GRID = 1.0
"""How far (in pixels) a contour's points may reach past the slice's outer pixel centres."""

_REFERENCED_SLICE = 0.5
"""Largest distance (in slice steps) of a referenced contour's points from the slice it references."""

_CONTOUR_DATA = 0x30060050
"""The ContourData tag."""


def is_dicom_rtstruct(path: str | Path) -> bool:
    """Whether ``path`` is a ``.dcm`` file holding an RT Structure Set (by SOP class, else Modality)."""
    return dicom_object_kind(path) == "RTSTRUCT"


def _items(group: Any, sequence: str) -> list[Any]:
    return list(getattr(group, sequence, None) or [])


def _contour_values(contour: Any, where: str) -> np.ndarray:
    """A contour's ``ContourData`` as floats, parsed from the file's text where it is still raw.

    pydicom would make and validate one number object per coordinate, most of the reading time
    for a CT series' contours; a value another writer stored as ``UN`` (too long for explicit
    VR's DS length) is the same text.
    """
    element = contour.get_item(_CONTOUR_DATA) if _CONTOUR_DATA in contour else None
    if element is None:
        return np.zeros(0)
    value = element.value
    if value is None:
        return np.zeros(0)
    if not isinstance(value, bytes):
        return np.asarray([float(v) for v in (value if isinstance(value, Sequence) else [value])])
    text = value.decode("ascii", errors="replace").strip(" \x00")
    try:
        return np.array(text.split("\\") if text else [], dtype=np.float64)
    except ValueError:
        raise DataError(f"{where} has ContourData that are not decimal numbers: {text[:40]!r}...") from None


@dataclass(frozen=True)
class _SliceGeometry:
    """Patient LPS mm -> pixel coordinates of each stored slice, by the slice's own header.

    Slice ``k``'s coordinates of a point: ``(row, column, steps)``, its row and column from the
    slice's first pixel's centre along the slice's own directions and spacing, and ``steps`` how
    far off the slice's plane it lies, in the series' slice steps along the affine's slice axis (a
    gantry tilt's leaning one, so a point a little off the plane is projected onto it along that
    axis, as the series-wide affine does).
    """

    to_slice: np.ndarray
    """``(slices, 3, 3)``: millimetres from a slice's first pixel's centre -> its coordinates."""
    origins: np.ndarray
    """``(slices, 3)``: each slice's ImagePositionPatient."""

    @classmethod
    def of(cls, planes: np.ndarray, affine: np.ndarray) -> _SliceGeometry:
        """From :meth:`~inpaintssl.data.dicom.DicomVolume.slice_pixel_to_patient`'s ``planes`` and
        the series' RAS+ ``affine`` (whose slice column is the step)."""
        step = (LPS_TO_RAS @ affine)[:3, 2]
        bases = np.concatenate(
            [planes[:, :, :2], np.broadcast_to(step[None, :, None], (len(planes), 3, 1))], axis=2
        )
        return cls(np.linalg.inv(bases), planes[:, :, 3].copy())

    def coordinates(self, points: np.ndarray, k: int) -> np.ndarray:
        """``(n, 3)`` LPS points -> ``(n, 3)`` ``(row, column, steps)`` of slice ``k``."""
        coordinates: np.ndarray = (points - self.origins[k]) @ self.to_slice[k].T
        return coordinates

    def nearest(self, points: np.ndarray) -> tuple[int, float]:
        """The slice whose plane lies nearest the points' mean, and how far off it (in steps) it is."""
        steps = np.einsum("kj,kj->k", self.to_slice[:, 2, :], points.mean(axis=0) - self.origins)
        k = int(np.argmin(np.abs(steps)))
        return k, float(steps[k])


def _referenced_slice(slices: Mapping[tuple[str, int | None], int], instance: Any, number: Any) -> int | None:
    """The stored slice a reference names (``ReferencedSOPInstanceUID``, ``ReferencedFrameNumber``), if any.

    ``slices`` as :meth:`~inpaintssl.data.dicom.DicomVolume.slices_by_instance` gives them. Frame 1
    of a single-frame instance is that instance's one frame, as some writers name it (DICOM
    leaves the number out); shared by :mod:`~inpaintssl.data.dicom_seg`'s frames.
    """
    frame = None if number in (None, "") else int(number)
    k = slices.get((str(instance), frame))
    if k is None and frame == 1:
        k = slices.get((str(instance), None))
    return k


class DicomRtStructVolume(SeriesAnnotation):
    """The ROIs of an RT Structure Set named in ``roi_values``, filled on ``reference``'s grid.

    Args:
        path: The RTSTRUCT file (``.dcm``).
        reference (inpaintssl.data.dicom.DicomVolume): The series the contours were drawn on,
            opened as stored (before any :meth:`~Volume.reorient`: the label map is built on its
            stored grid, and both may be reoriented afterwards, alike).
        roi_values: ROI name -> the value its pixels get (``>= 1``), in painting order: where ROIs
            overlap, the later one keeps the pixel. Names are matched as
            :func:`~inpaintssl.data.labels.plain_name` compares them.

    Attributes:
        roi_names: ``ROINumber`` -> ``ROIName`` of every ROI the file describes.
        overlaps: ``(earlier name, later name)`` -> pixels the later ROI took from the earlier.

    Raises:
        DataError: See the module docstring; the message names the file (and the ROI and contour).
        TypeError: ``reference`` is not a DICOM series.
        ValueError: ``reference`` is reoriented, or a value in ``roi_values`` is below 1.
    """

    def __init__(self, path: str | Path, *, reference: Volume, roi_values: Mapping[str, int]) -> None:
        reference = self.series_of(reference, owner="DicomRtStructVolume")
        low = {name: value for name, value in roi_values.items() if int(value) < 1}
        if low:
            raise ValueError(f"DicomRtStructVolume: roi_values {low} are below 1; 0 is the background")
        path = existing_path(path, what="DICOM RTSTRUCT")
        self._where = f"DICOM RTSTRUCT {path}"
        self._series = str(reference.path)
        planes = reference.slice_pixel_to_patient()
        if reference.world_affine is None or not reference.has_geometry or planes is None:
            raise DataError(
                f"{self._where}: its series {self._series} states no patient geometry (ImagePositionPatient, "
                "ImageOrientationPatient, PixelSpacing), so contours in millimetres cannot be placed on its "
                "pixels; expected a series with its geometry"
            )
        self._grid_affine: np.ndarray = np.array(reference.world_affine, dtype=np.float64)
        rows, columns, slices = (int(n) for n in reference.stored_shape)
        self._grid_shape = (rows, columns, slices)
        self._values = {name: int(value) for name, value in roi_values.items()}
        pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM RTSTRUCT labels")
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # pydicom raises many types for a bad file
            raise DataError(f"{self._where} cannot be read: {type(exc).__name__}: {exc}") from exc
        self.roi_names = {
            int(roi.ROINumber): str(getattr(roi, "ROIName", "") or "")
            for roi in _items(ds, "StructureSetROISequence")
        }
        chosen = self._choose_rois(ds, reference.frame_of_reference_uid)
        # Kept instead of the file: each fill (the first, and each after a release) starts from them.
        self._polygons = self._read_polygons(
            ds, chosen, reference.slices_by_instance(), _SliceGeometry.of(planes, self._grid_affine)
        )
        self.overlaps: dict[tuple[str, str], int] = {}
        super().__init__(path, self._build(), reference=reference, what="DICOM RTSTRUCT")
        if self.overlaps:
            said = "; ".join(
                f"{later!r} over {earlier!r} on {pixels} pixels"
                for (earlier, later), pixels in self.overlaps.items()
            )
            warn_each_time(
                f"{self._where}: ROIs overlap ({said}); each pixel is given the ROI later in the class "
                "order. Check the contours where an overlap is more than an edge's pixels",
                UserWarning,
            )

    def _choose_rois(self, ds: Any, series_frame: str | None) -> dict[int, str]:
        """``ROINumber`` -> requested name, for every name of ``roi_values``."""
        by_name: dict[str, list[int]] = {}
        for number, name in self.roi_names.items():
            by_name.setdefault(plain_name(name), []).append(number)
        listed = ", ".join(f"{number} {name!r}" for number, name in sorted(self.roi_names.items()))
        chosen: dict[int, str] = {}
        for name in self._values:
            numbers = by_name.get(plain_name(name), [])
            if not numbers:
                raise DataError(
                    f"{self._where} has no ROI named {name!r} (its ROIs: {listed or 'none'}); expected an "
                    "ROI of each class's name (case, spaces, hyphens and underscores aside): name the "
                    "classes as the ROIs"
                )
            if len(numbers) > 1:
                raise DataError(
                    f"{self._where} has {len(numbers)} ROIs named {name!r} (numbers {numbers}); expected "
                    "one, so that a class reads one region"
                )
            chosen[numbers[0]] = name
        for roi in _items(ds, "StructureSetROISequence"):
            number = int(roi.ROINumber)
            frame = str(getattr(roi, "ReferencedFrameOfReferenceUID", "") or "")
            if number in chosen and frame and series_frame and frame != series_frame:
                raise DataError(
                    f"{self._where}: ROI {number} {self.roi_names[number]!r} is drawn in frame of reference "
                    f"{frame} but the series {self._series} is in {series_frame}; expected the structure set "
                    "of that series"
                )
        return chosen

    def _read_polygons(
        self,
        ds: Any,
        chosen: Mapping[int, str],
        slices: Mapping[tuple[str, int | None], int],
        geometry: _SliceGeometry,
    ) -> dict[str, dict[int, list[np.ndarray]]]:
        """Requested name -> slice -> its polygons in pixel coordinates of that slice (its own geometry)."""
        polygons: dict[str, dict[int, list[np.ndarray]]] = {name: {} for name in self._values}
        for roi in _items(ds, "ROIContourSequence"):
            number = int(getattr(roi, "ReferencedROINumber", -1))
            if number not in chosen:
                continue
            where = f"{self._where}: ROI {number} {self.roi_names.get(number, '')!r}"
            for c, contour in enumerate(_items(roi, "ContourSequence"), start=1):
                kind = str(getattr(contour, "ContourGeometricType", "") or "").strip().upper()
                if kind != "CLOSED_PLANAR":
                    raise DataError(
                        f"{where}, contour {c} is {kind or 'of no ContourGeometricType'}; expected "
                        "CLOSED_PLANAR contours: a class's region must enclose an area (points and open "
                        "lines enclose none)"
                    )
                values = _contour_values(contour, f"{where}, contour {c}")
                if values.size < 9 or values.size % 3:
                    raise DataError(
                        f"{where}, contour {c} has {values.size} ContourData values; expected x, y, z "
                        "triplets of at least 3 points"
                    )
                k, index = self._contour_slice(
                    contour, values.reshape(-1, 3), slices, geometry, f"{where}, contour {c}"
                )
                self._check_in_plane(index[:, :2], f"{where}, contour {c}")
                polygons[chosen[number]].setdefault(k, []).append(index[:, :2])
        return polygons

    def _contour_slice(
        self,
        contour: Any,
        points: np.ndarray,
        slices: Mapping[tuple[str, int | None], int],
        geometry: _SliceGeometry,
        where: str,
    ) -> tuple[int, np.ndarray]:
        """The stored slice a contour lies on (the one it references, else the one its points are on),
        and its ``(n, 3)`` LPS ``points`` in that slice's ``(row, column, steps)`` coordinates."""
        referenced = None
        for image in _items(contour, "ContourImageSequence"):
            number = getattr(image, "ReferencedFrameNumber", None)
            found = _referenced_slice(slices, image.ReferencedSOPInstanceUID, number)
            referenced = referenced if found is None else found
        if referenced is not None:
            index = geometry.coordinates(points, referenced)
            if np.abs(index[:, 2]).max() > _REFERENCED_SLICE:
                at = f"at slice position {referenced + float(np.mean(index[:, 2])):.3f}"
                raise DataError(
                    f"{where} references slice {referenced} of the series {self._series} but its points lie "
                    f"{at} (in slice steps along the series); expected them on the slice it references"
                )
            return int(referenced), index
        # The slice whose own plane is nearest, not the series affine's rounded depth: after a gap in
        # an unevenly spaced series, the affine's equal steps put the slices elsewhere.
        k, off = geometry.nearest(points)
        index = geometry.coordinates(points, k)
        if np.abs(index[:, 2]).max() > ON_SLICE:
            raise DataError(
                f"{where} references no slice of the series {self._series} and its points lie at slice "
                f"position {k + off:.3f} (in slice steps; the series has slices 0 to "
                f"{self._grid_shape[2] - 1}), on none of them; expected the structure set of that series"
            )
        return k, index

    def _check_in_plane(self, points: np.ndarray, where: str) -> None:
        limit = np.array(self._grid_shape[:2], dtype=float) - 1.0 + _OFF_GRID
        if (points < -_OFF_GRID).any() or (points > limit).any():
            low, high = points.min(axis=0), points.max(axis=0)
            raise DataError(
                f"{where} reaches pixels ({low[0]:.1f}, {low[1]:.1f}) to ({high[0]:.1f}, {high[1]:.1f}) but "
                f"the series {self._series} has slices of {self._grid_shape[0]}x{self._grid_shape[1]}; "
                "expected contours on its slices"
            )

    def _build(self) -> np.ndarray:
        """The label map: each requested ROI's polygons filled with its value, in ``roi_values``'s order."""
        dtype = np.min_scalar_type(max(self._values.values(), default=1))
        labels = np.zeros(self._grid_shape, dtype=dtype)
        names = list(self._values)
        overlaps: dict[tuple[str, str], int] = {}
        for k in sorted({k for name in names for k in self._polygons[name]}):
            owner = np.full(self._grid_shape[:2], -1, dtype=np.int32)  # which name holds a pixel
            for n, name in enumerate(names):
                polygons = self._polygons[name].get(k)
                if not polygons:
                    continue
                mask = polygon_mask(polygons, self._grid_shape[:2])
                taken = owner[mask]
                for earlier, pixels in zip(*np.unique(taken[taken >= 0], return_counts=True)):
                    pair = (names[int(earlier)], name)
                    overlaps[pair] = overlaps.get(pair, 0) + int(pixels)
                labels[:, :, k][mask] = self._values[name]
                owner[mask] = n
        self.overlaps = overlaps
        return labels
