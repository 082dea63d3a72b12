"""DICOM Segmentation objects (SEG) as label maps on the grid of the series they segment, read with pydicom.

OHIF, 3D Slicer (QuantitativeReporting), MONAI Label and ``inpaintssl predict
--output-format dicom_seg`` save annotations of a DICOM series as a SEG: one frame per segment
and slice, each frame saying which slice it segments (its ``DerivationImageSequence``: the source
instance, and its frame in an Enhanced file) and where it lies (``PlanePositionSequence``); frames
without a labelled pixel are usually left out. :class:`DicomSegVolume` reads such a file as the
label map of its series: ``(rows, columns, slices)`` on the series' stored grid
(:class:`~inpaintssl.data.dicom.DicomVolume`), each pixel the number of the segment that covers
it (``SegmentNumber``), 0 where none does; the ``ct`` dataset reads a ``.dcm`` label so, and its
``label_values`` map class names to segment numbers (by default class ``k`` is segment ``k + 1``).
A ``LABELMAP`` SEG (Label Map Segmentation Storage; ``--dicom-seg-type labelmap``) holds a frame per
slice whose pixels are the segment numbers themselves, and is read as such; its segment 0, the
background, is among :attr:`~DicomSegVolume.segment_labels` where the file describes it.

A frame is placed by the source it names (frame 1 of a single-frame instance being that instance),
else by its position: on the slice whose own ``ImagePositionPatient`` it is, within 1 % of a pixel
along the slice's rows and columns and of a slice step across, by that slice's own geometry
(:meth:`~inpaintssl.data.dicom.DicomVolume.slice_pixel_to_patient`), as an RT Structure Set's
contours are placed (:mod:`~inpaintssl.data.dicom_rtstruct`): a slice shifted within its plane off
the series' one affine, and one after a gap in an unevenly spaced series, take their frames.

Refused, naming the file and the frame: a ``FRACTIONAL`` SEG (it holds probabilities, not labels);
a SEG in another frame of reference than the series (``FrameOfReferenceUID``, where both state
one: another patient's SEG on the same grid would match its slices by position); frames of
another size than the series' slices; a frame that names no slice of the series and lies on
none, or whose ``ImagePositionPatient`` is no 3 finite numbers; two segments on one pixel (a
label map holds one class per pixel).

Example:
    >>> series = DicomVolume("ct/series-01")  # doctest: +SKIP
    >>> volume = DicomSegVolume("annotations/seg.dcm", reference=series)  # doctest: +SKIP
    >>> volume.shape, volume.segment_labels  # doctest: +SKIP
    ((512, 512, 120), {1: 'liver', 2: 'spleen'})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.checks import existing_path
from inpaintssl.data.dicom import SeriesAnnotation, _finite_numbers, _values_text, dicom_object_kind
from inpaintssl.data.dicom_pixels import missing_decoder
from inpaintssl.data.dicom_rtstruct import _referenced_slice, _SliceGeometry
from inpaintssl.data.readers import Volume
from inpaintssl.extras import import_optional

__all__ = ["SEGMENTATION_SOP_CLASSES", "DicomSegVolume", "is_dicom_seg"]

SEGMENTATION_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"})
"""Segmentation Storage and Label Map Segmentation Storage."""

_ON_GRID = 0.01
"""Largest distance of a frame's position from the first pixel of the slice it is placed on: in pixels
along the slice's rows and columns, in slice steps across."""


def is_dicom_seg(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file holding a Segmentation (by its SOP class, else its Modality).

    A folder, a file of another suffix than ``.dcm`` or one that is not DICOM is not.
    """
    return dicom_object_kind(path) == "SEG"


def _item(group: Any, sequence: str) -> Any:
    items = getattr(group, sequence, None)
    return items[0] if items else None


class DicomSegVolume(SeriesAnnotation):
    """A DICOM SEG's segments as the label map of ``reference``, the series it segments.

    Args:
        path: The SEG file (``.dcm``).
        reference (inpaintssl.data.dicom.DicomVolume): The series, opened as stored (before any
            :meth:`~Volume.reorient`: the label map is built on its stored grid, and both may be
            reoriented afterwards, alike).

    Attributes:
        segment_labels: ``SegmentNumber`` -> ``SegmentLabel`` of every segment the file describes.

    Raises:
        DataError: See the module docstring; the message names the file (and the frame).
        TypeError: ``reference`` is not a DICOM series.
        ValueError: ``reference`` is reoriented.
    """

    def __init__(self, path: str | Path, *, reference: Volume) -> None:
        series = self.series_of(reference, owner="DicomSegVolume")
        path = existing_path(path, what="DICOM SEG")
        self._slices = int(series.stored_shape[2])
        self._series_slice = (int(series.stored_shape[0]), int(series.stored_shape[1]))
        planes, affine = series.slice_pixel_to_patient(), series.world_affine
        # Each slice's own plane, not the series' one affine: a slice shifted within its plane, or
        # after a gap, lies where its own header says and nowhere the affine's equal steps put it.
        self._geometry = (
            None if planes is None or affine is None else _SliceGeometry.of(planes, np.asarray(affine, float))
        )
        self._series = str(series.path)
        self._frame_of_reference = series.frame_of_reference_uid
        self._slice_of_source = series.slices_by_instance()
        labels, self.segment_labels = self._decode_file(path)
        super().__init__(path, labels, reference=series, what="DICOM SEG")

    def _build(self) -> np.ndarray:
        return self._decode_file(self.path)[0]

    def _slice_at(self, position: Any) -> int | None:
        """The stored slice a frame at ``position`` (LPS mm, its first pixel) lies on, if any."""
        if position is None or self._geometry is None:
            return None
        point = np.array([[float(v) for v in position]])
        k, _ = self._geometry.nearest(point)
        # (row, column, steps) from slice k's first pixel: a frame covers the whole slice.
        if np.all(np.abs(self._geometry.coordinates(point, k)) <= _ON_GRID):
            return k
        return None

    def _decode_file(self, path: Path) -> tuple[np.ndarray, dict[int, str]]:
        pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM SEG labels")
        where = f"DICOM SEG {path}"
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # pydicom raises many types for a bad file
            raise DataError(f"{where} cannot be read: {type(exc).__name__}: {exc}") from exc
        missing = [name for name in ("Rows", "Columns", "PixelData") if name not in ds]
        if missing:
            raise DataError(f"{where} has no {', '.join(missing)}; expected a SEG's frames")
        frame_of_reference = str(getattr(ds, "FrameOfReferenceUID", "") or "")
        if frame_of_reference and self._frame_of_reference and frame_of_reference != self._frame_of_reference:
            # Checked before any frame is placed: another patient's SEG on the same grid (data
            # converted from NIfTI, one MR protocol) matches the slices by position alone.
            raise DataError(
                f"{where} is in frame of reference {frame_of_reference} but the series {self._series} is "
                f"in {self._frame_of_reference}; expected the SEG of that series (or of one in its frame "
                "of reference)"
            )
        kind = str(getattr(ds, "SegmentationType", "") or "").upper()
        if kind == "FRACTIONAL":
            raise DataError(
                f"{where} is a FRACTIONAL segmentation (probabilities or occupancies); expected a BINARY "
                "or LABELMAP one, a label per pixel: threshold it into a binary SEG first"
            )
        shape = (int(ds.Rows), int(ds.Columns), self._slices)
        if shape[:2] != self._series_slice:
            raise DataError(
                f"{where} has frames of {shape[0]}x{shape[1]} pixels but the series {self._series} has "
                f"slices of {self._series_slice[0]}x{self._series_slice[1]}; expected a SEG of that series, "
                "on its grid"
            )
        try:
            frames = np.asarray(ds.pixel_array).reshape(-1, shape[0], shape[1])
        except Exception as exc:  # pydicom raises many types for undecodable pixels
            why = missing_decoder(ds) or f"{type(exc).__name__}: {exc}"
            raise DataError(f"{where}: its frames cannot be decoded: {why}") from exc
        described = getattr(ds, "SegmentSequence", None) or []
        segments = {int(s.SegmentNumber): str(getattr(s, "SegmentLabel", "")) for s in described}
        labels = np.zeros(shape, dtype=np.uint8 if max(segments, default=0) < 256 else np.uint16)
        shared = _item(ds, "SharedFunctionalGroupsSequence")
        per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None) or []
        if len(per_frame) != len(frames):
            raise DataError(
                f"{where} holds {len(frames)} frames but {len(per_frame)} per-frame functional groups; "
                "expected one group per frame (saying what each segments)"
            )
        label_map = (
            kind == "LABELMAP" or str(getattr(ds, "SOPClassUID", "")) == "1.2.840.10008.5.1.4.1.1.66.7"
        )
        for f, (pixels, group) in enumerate(zip(frames, per_frame), start=1):
            k = self._frame_slice(group, shared, self._slice_of_source, f, where)
            if label_map:
                values = pixels.astype(labels.dtype)
            else:
                identification = _item(group, "SegmentIdentificationSequence") or _item(
                    shared, "SegmentIdentificationSequence"
                )
                if identification is None:
                    raise DataError(f"{where}: frame {f} names no segment (SegmentIdentificationSequence)")
                values = np.where(pixels > 0, int(identification.ReferencedSegmentNumber), 0).astype(
                    labels.dtype
                )
            held = labels[:, :, k]
            clash = (held > 0) & (values > 0) & (held != values)
            if clash.any():
                other, this = int(held[clash][0]), int(values[clash][0])
                raise DataError(
                    f"{where}: segments {other} and {this} overlap on slice {k} of the series "
                    f"({int(clash.sum())} pixels, frame {f}); expected one segment per pixel, as a label "
                    "map holds one class per pixel"
                )
            labels[:, :, k] = np.maximum(held, values)
        return labels, segments

    def _frame_slice(
        self, group: Any, shared: Any, sources: Mapping[tuple[str, int | None], int], frame: int, where: str
    ) -> int:
        derivation = _item(group, "DerivationImageSequence")
        source = None if derivation is None else _item(derivation, "SourceImageSequence")
        named = None
        if source is not None:
            number = getattr(source, "ReferencedFrameNumber", None)
            named = (str(source.ReferencedSOPInstanceUID), None if number in (None, "") else int(number))
            k = _referenced_slice(sources, named[0], number)
            if k is not None:
                return k
        plane = _item(group, "PlanePositionSequence") or _item(shared, "PlanePositionSequence")
        position = None if plane is None else getattr(plane, "ImagePositionPatient", None)
        if position == "":
            position = None  # stated empty: nothing to place the frame by
        if position is not None and _finite_numbers(position, 3) is None:
            # Else NumPy's broadcasting error (two values) or float()'s (n/a), naming nothing.
            raise DataError(
                f"{where}: frame {frame} has ImagePositionPatient {_values_text(position)} "
                "(PlanePositionSequence); expected 3 finite numbers (DICOM PS3.3 C.7.6.16.2.3)"
            )
        k = self._slice_at(position)
        if k is not None:
            return k
        said = (
            f"instance {named[0]}" + ("" if named[1] is None else f" frame {named[1]}")
            if named
            else "no source"
        )
        raise DataError(
            f"{where}: frame {frame} segments {said}, at ImagePositionPatient "
            f"{None if position is None else [float(v) for v in position]}, which is no slice of the series "
            f"{self._series}; expected a SEG of that series"
        )
