"""CT slices as three stacked HU windows, z-scored per channel (paper sec. 2.1.2, 2.2).

Images are DICOM series folders or single ``.dcm`` slices (HU = stored pixel x RescaleSlope +
RescaleIntercept, pydicom, ``dicom`` extra), NIfTI volumes (already in HU after the header's
scl_slope/inter), MetaImage or NRRD volumes (in HU) or ``.npy`` HU arrays; labels are NIfTI,
MetaImage, NRRD, PNG or NumPy integer masks on the same pixel grid (for a DICOM series: rows x
columns x slices, slices ordered along the slice normal), or for a DICOM series a DICOM SEG of it or an RT
Structure Set drawn on it, whose ROIs the classes are read from by name.
The paper's CT data were single L3 slices, so a case is often one ``.dcm`` with one PNG mask.

Per item: HU below -1024 (scanner padding such as -2000 or -3024) is clipped to -1024; each of
``windows`` (``(width, level)`` in HU, default soft tissue 400/50, bone 1800/400, custom 500/50 —
see :mod:`inpaintssl.data.preprocess` for why the bone window follows the authors' code) clips the
HU slice into one channel; each channel is z-scored with its mean and std over the whole case
(one slice for 2D data, the series for 3D). The clipped HU slice is kept as the ``hu`` extra
``(1, H, W)`` for mean-HU metrics (sec. 2.7). Classes default to body composition
(``muscle``, ``imat``, ``vat``, ``sat`` stored as 1, 2, 3, 4); change them with ``class_names``
and ``label_values``.

A case with no value below -200 HU (no air, no fat) is warned about, naming the file: it is most
likely a display image windowed to 0..255 or stored values whose rescale was lost, not HU.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(root / "ct.npy", np.full((4, 4), -3024.0))
    >>> ds = ct_dataset(split="unlabelled", labelled=False, cases="ct.npy", root=root, spacing=(0.8, 0.8))
    >>> item = ds[0]
    >>> tuple(item["image"].shape), item["hu"].min().item()
    ((3, 4, 4), -1024.0)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inpaintssl.data.base import DataError
from inpaintssl.data.cases import CaseSpec, resolve_cases
from inpaintssl.data.checks import check_slice_axis, check_spacing
from inpaintssl.data.dicom import DicomVolume, check_series_param, dicom_object_kind
from inpaintssl.data.dicom_dataset import check_own_slices
from inpaintssl.data.dicom_labels import open_dicom_annotation
from inpaintssl.data.orientation import check_axis_codes
from inpaintssl.data.preprocess import (
    DEFAULT_CT_WINDOWS,
    HU_FLOOR,
    Stats,
    apply_windows,
    clip_padding,
    parse_windows,
)
from inpaintssl.data.readers import IMAGE_RANKS, LABEL_RANKS, NumpyVolume, Volume, open_volume, reader_class
from inpaintssl.data.volumes import Case, VolumeSliceDataset, _some
from inpaintssl.registry import DATASETS
from inpaintssl.warning_format import warn_each_time

__all__ = ["BODY_COMPOSITION_CLASSES", "CTDataset", "check_hu_floor", "ct_dataset", "reads_as_dicom"]

BODY_COMPOSITION_CLASSES = ("muscle", "imat", "vat", "sat")
"""Skeletal muscle, intramuscular, visceral and subcutaneous adipose tissue (sec. 2.1.2)."""


class CTDataset(VolumeSliceDataset):
    """CT cases as windowed, per-channel z-scored slices with the raw HU slice as ``hu``.

    Args:
        cases: Opened cases; images must be single-channel HU volumes.
        windows: ``(width, level)`` pairs, one channel each.
        hu_floor: HU below this is padding and is clipped to it (:func:`check_hu_floor`).
        class_names: Foreground classes (empty: unlabelled).
        label_values: Stored value(s) per class.

    Raises:
        DataError: Bad ``windows`` (:func:`~inpaintssl.data.preprocess.parse_windows`) or
            ``hu_floor`` (:func:`check_hu_floor`).
    """

    def __init__(
        self,
        cases: Sequence[Case],
        *,
        windows: Sequence[Sequence[float]] = DEFAULT_CT_WINDOWS,
        hu_floor: float = HU_FLOOR,
        class_names: Sequence[str] = BODY_COMPOSITION_CLASSES,
        label_values: Mapping[str, int | Sequence[int]] | None = None,
    ) -> None:
        self.windows = parse_windows(windows)
        self.hu_floor = check_hu_floor(hu_floor, self.windows)
        super().__init__(
            cases, name="ct", class_names=class_names, label_values=label_values, normalize="channel"
        )

    def _image_channels(self, volume: Volume) -> int:
        if volume.channels != 1:
            raise DataError(
                f"ct image {volume.path} has {volume.channels} channels (shape {volume.shape}); "
                "expected a single-channel HU slice or volume"
            )
        return len(self.windows)

    def to_channels(self, raw: np.ndarray) -> np.ndarray:
        """HU slice ``(H, W)`` -> clipped windows ``(len(windows), H, W)``."""
        return apply_windows(clip_padding(raw, floor=self.hu_floor), self.windows)

    def extras(self, raw: np.ndarray) -> dict[str, Any]:
        """The padding-clipped HU slice as ``hu`` ``(1, H, W)`` float32."""
        hu = clip_padding(raw, floor=self.hu_floor).astype(np.float32, copy=False)
        return {"hu": torch.from_numpy(np.ascontiguousarray(hu[None]))}

    def _scan_values(self, case_index: int) -> tuple[Stats, float, float, set[float] | None]:
        """The base class's scan of a case, which also says when its values do not look like HU."""
        result = super()._scan_values(case_index)
        _warn_not_hu(self._cases[case_index], low=result[1], high=result[2])
        return result


def check_hu_floor(hu_floor: object, windows: Sequence[tuple[float, float]]) -> float:
    """``hu_floor`` as a float: a finite HU value below the top of each of ``windows`` (parsed pairs).

    A NaN floor makes every clipped value NaN, so every image of a run would be NaN; a floor at
    or above a window's top (``level + width / 2``) clips every HU value of every image into that
    window's top, so its channel is constant, all zeros once z-scored, and the network is fed
    nothing through it. Such a floor is no scanner padding but a slip, such as ``1024`` for
    ``-1024`` (the sign dropped), so it is refused rather than trained on.

    Raises:
        DataError: Naming ``hu_floor`` and what was found: not a number (or a bool), not finite,
            or not below a window's top (naming the window).

    Example:
        >>> check_hu_floor(-1024, [(400.0, 50.0), (1800.0, 400.0)])
        -1024.0
        >>> check_hu_floor(1024, [(400.0, 50.0), (1800.0, 400.0)])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: ct: hu_floor=1024 is at or above the top of windows[0] ...
    """
    try:
        if isinstance(hu_floor, bool):
            raise TypeError
        floor = float(hu_floor)  # type: ignore[arg-type]  # whatever a config holds; checked here
    except (TypeError, ValueError):
        raise DataError(
            f"ct: hu_floor={hu_floor!r}; expected a number, the HU value padding below it is clipped to "
            f"(default {HU_FLOOR:g})"
        ) from None
    if not math.isfinite(floor):
        raise DataError(
            f"ct: hu_floor={floor}; expected a finite HU value, the one padding below it is clipped to "
            f"(default {HU_FLOOR:g}): a NaN floor makes every image NaN, an infinite one clips nothing or all"
        )
    for i, (width, level) in enumerate(windows):
        top = level + width / 2
        if floor >= top:
            raise DataError(
                f"ct: hu_floor={floor:g} is at or above the top of windows[{i}] (width {width:g}, level "
                f"{level:g}: {level - width / 2:g} to {top:g} HU), so that channel would hold one value "
                f"for every image; expected a floor below {top:g} HU, the padding floor such as the default "
                f"{HU_FLOOR:g} (a minus sign dropped?)"
            )
    return floor


NOT_HU_BELOW = -200.0
"""A CT case with no value below this (air is about -1000 HU, fat about -100 HU) is warned about:
its values are most likely not HU but display values or stored values without their rescale."""


def _warn_not_hu(case: Case, *, low: float, high: float) -> None:
    """Warn when a case's values cannot be HU: a windowed 0..255 export, or a lost intercept.

    Such an image reads without error, but its windows clip the wrong tissue and its mean HU
    (sec. 2.7) is in the wrong unit, so the clinical numbers come out wrong without a word.
    A warning, not an error: a crop inside the body without air or fat is possible, if rare.
    A constant image is left to the blank-volume check.
    """
    if not math.isfinite(low) or low < NOT_HU_BELOW or low == high:
        return
    if low >= 0 and high <= 255:
        likely = (
            "it looks like a display image windowed to 0..255 (8-bit grey values): export the "
            "original HU values (DICOM with RescaleSlope/RescaleIntercept, or NIfTI in HU)"
        )
    else:
        likely = (
            "it looks like stored pixel values whose rescale was lost (HU = pixel * RescaleSlope + "
            "RescaleIntercept, often -1024; NIfTI scl_slope/scl_inter): restore the rescale"
        )
    warn_each_time(
        f"ct case {case.volume_id!r}: image {case.image.source} holds values {low:g} to {high:g} and "
        f"none below {NOT_HU_BELOW:g}, while CT in HU has air near -1000 and fat near -100; {likely}. "
        "Its windows and its mean HU are computed from these values as if they were HU",
        UserWarning,
    )


def _warn_without_spacing(cases: Sequence[Case], *, given: bool) -> None:
    """Say which images are read at an assumed 1 mm: their areas in mm^2 would be pixel counts."""
    assumed = [
        case.image
        for case in cases
        if not case.image.has_geometry and not (given and isinstance(case.image, NumpyVolume))
    ]
    if not assumed:
        return
    warn_each_time(
        f"ct: {len(assumed)} image(s) state no pixel spacing ({_some([str(v.path) for v in assumed])}); "
        "1 mm is assumed, so their areas (mm^2) and volumes are in pixels. Give data.params.spacing "
        "for NumPy images, or use DICOM series with PixelSpacing or NIfTI files",
        UserWarning,
    )


def reads_as_dicom(path: str | Path) -> bool:
    """Whether a case's image is read as a DICOM series (a folder or a ``.dcm``:
    :func:`~inpaintssl.data.readers.reader_class`); ``False`` for a type no reader takes, which
    opening it refuses."""
    try:
        return reader_class(path) is DicomVolume
    except DataError:
        return False


@DATASETS.register("ct")
def ct_dataset(
    *,
    split: str,
    labelled: bool = True,
    cases: Any,
    root: str | Path | None = None,
    windows: Sequence[Sequence[float]] = DEFAULT_CT_WINDOWS,
    hu_floor: float = HU_FLOOR,
    class_names: Sequence[str] = BODY_COMPOSITION_CLASSES,
    label_values: Mapping[str, int | Sequence[int]] | None = None,
    slice_axis: int = 2,
    orientation: str | None = None,
    spacing: Sequence[float] | None = None,
    series: str | int | None = None,
) -> CTDataset:
    """The registered ``ct`` dataset: the paper's CT data (sec. 2.1.2) preprocessed as in sec. 2.2.

    The paper's L3 slices with their four body-composition classes, or any CT of the user's in
    the same form: three stacked HU windows, z-scored per channel, with the HU slice kept for the
    mean-HU and area metrics of sec. 2.7.

    Args:
        split: Split name defined in ``cases`` (see :mod:`inpaintssl.data.cases`).
        labelled: Read labels.
        cases: Images (DICOM folder, ``.dcm``, NIfTI, MetaImage, NRRD or ``.npy``) and labels per split;
            a label may be a DICOM SEG of its DICOM series (:mod:`~inpaintssl.data.dicom_seg`) or an
            RT Structure Set drawn on it, each class filled from the ROI of its name
            (:mod:`~inpaintssl.data.dicom_rtstruct`).
        root: Folder relative paths start from.
        windows: ``(width, level)`` HU windows stacked as channels.
        hu_floor: Padding floor in HU: lower values are clipped to it; a finite number below the
            top of every window (:func:`check_hu_floor`).
        class_names: Foreground classes.
        label_values: Stored value(s) per class name (default ``i + 1``).
        slice_axis: Slice axis of NIfTI/NumPy volumes (DICOM series are rows x cols x slices,
            sliced along the slices), and of every volume read in ``orientation``. Without
            ``orientation``, an axis other than 2 is refused for a case whose image is a DICOM
            series, which would be cut along its own slices all the same.
        orientation: Axis codes (:mod:`~inpaintssl.data.orientation`) every image and label is
            read in, e.g. ``"LPS"``: DICOM series, NIfTI, MetaImage and NRRD files stored in other
            axis orders are permuted and flipped (not resampled), and an image's patient geometry
            must match its label's affine. Images and labels then need geometry (DICOM, NIfTI,
            MetaImage or NRRD, not PNG or NumPy). ``None`` (default): as stored.
        spacing: Pixel spacing in mm of ``.npy`` images, which carry none (rows, columns and, for
            volumes, slices, in stored axis order). Images without a spacing of their own (NumPy
            without this, a DICOM series without PixelSpacing) are read at 1 mm with a warning:
            their areas and volumes are then in pixels, not mm.
        series: Each case's image is a DICOM folder of a whole study (its series' files together,
            or in subfolders, as archives export a CT study with its scout, soft-tissue and bone
            reconstructions), and this names the series read: its ``SeriesDescription`` (without
            case), ``SeriesInstanceUID``, or ``SeriesNumber`` (a whole number)
            (:func:`~inpaintssl.data.dicom.select_series`). ``None`` (default): each image is one
            series (or another format).

    Raises:
        ConfigError: ``slice_axis`` other than 2 without ``orientation`` where an image is a DICOM
            series (:func:`~inpaintssl.data.dicom_dataset.check_own_slices`).
        DataError: An image or label its reader refuses, a bad ``spacing``, ``series``,
            ``slice_axis``, ``windows`` or ``hu_floor``; the message names the file or parameter.
    """
    # Before any case is opened: a bad floor is refused at once, not after reading every image.
    check_hu_floor(hu_floor, parse_windows(windows))
    if orientation is not None:
        orientation = check_axis_codes(orientation, where="ct: orientation", error=DataError)
    # Checked here too: a DICOM series ignores slice_axis unless it is reoriented (then refused).
    slice_axis = check_slice_axis(slice_axis, where="ct")

    given = None if spacing is None else check_spacing(spacing, where="ct: spacing")
    check_series_param(series, dataset="ct")

    def stored(path: Path, ranks: Collection[int]) -> Volume:
        return open_volume(path, slice_axis=slice_axis, ranks=ranks, spacing=given or (1.0, 1.0, 1.0))

    def image_of(spec: CaseSpec) -> Volume:
        if orientation is None and reads_as_dicom(spec.image):
            # Before its label is read: a label map cut along slice_axis would be refused for its
            # shape, hiding the setting that is wrong.
            where = f"the image of case {spec.volume_id!r}, {spec.image}, is a DICOM series"
            check_own_slices(slice_axis, dataset="ct", images=where)
        if series is None:
            return stored(spec.image, IMAGE_RANKS)
        found = reader_class(spec.image)
        if found is not DicomVolume:
            raise DataError(
                f"ct case {spec.volume_id!r}: image {spec.image} is read as {found.__name__}, but series="
                f"{series!r} chooses a series of a DICOM study; give DICOM study folders, or leave series out"
            )
        return DicomVolume(spec.image, series=series)

    def oriented(volume: Volume) -> Volume:
        if orientation is not None:
            volume.reorient(orientation, slice_axis=slice_axis)
        return volume

    def open_case(spec: CaseSpec) -> Case:
        label_path = spec.label if labelled else None
        kind = None if label_path is None else dicom_object_kind(label_path)
        if label_path is None or kind is None:
            image = oriented(image_of(spec))
            plain = None if label_path is None else oriented(stored(label_path, LABEL_RANKS))
            return Case(spec.volume_id, image, plain)
        # A DICOM SEG or RTSTRUCT is laid on the series it was drawn on, as stored; then both are read alike.
        image = image_of(spec)
        label = open_dicom_annotation(
            label_path,
            image,
            kind,
            class_names=class_names,
            label_values=label_values,
            where=f"ct case {spec.volume_id!r}",
        )
        return Case(spec.volume_id, oriented(image), oriented(label))

    specs = resolve_cases(cases, split, root=root, dataset="ct")
    opened = [open_case(spec) for spec in specs]
    _warn_without_spacing(opened, given=given is not None)
    return CTDataset(
        opened,
        windows=windows,
        hu_floor=hu_floor,
        class_names=class_names if labelled else (),
        label_values=label_values if labelled else None,
    )
