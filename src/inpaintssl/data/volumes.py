"""Generic volume datasets: ``nifti``, ``metaimage``, ``nrrd``, ``numpy``, ``hdf5`` (sec. 2.2 preprocessing).

Each case is an image volume with an optional integer label volume on the same voxel grid
(:mod:`inpaintssl.data.cases` describes the ``cases`` parameter). Every slice along
``slice_axis`` is one item. Images are z-scored per volume by default (``normalize="volume"``,
the paper's MRI rule; ``"channel"`` z-scores each channel of a 4D volume separately, ``"none"``
keeps stored values). Volume statistics are computed on the first read of a volume (one pass over
its slices) and cached by the dataset object, i.e. once per process.

Labels hold integer classes: value ``i + 1`` is ``class_names[i]`` and 0 is background, unless
``label_values`` maps class names to other values. Any other value is an error naming the file
and slice, as are NaN/Inf image pixels. The pre-flight check also refuses an image volume holding
one value in every voxel (a blank export or copy); a constant label volume (all background) or a
constant slice of a varying volume is fine. An image of at most :data:`LABEL_MAP_MAX_VALUES`
distinct values, all whole numbers, is warned about as a likely label map (one that a pattern
meant for scans matched too).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(root / "img.npy", np.random.default_rng(0).normal(size=(8, 8, 3)))
    >>> np.save(root / "seg.npy", np.ones((8, 8, 3), dtype=np.uint8))
    >>> ds = numpy_dataset(split="train", cases={"train": {"image": "img.npy", "label": "seg.npy"}},
    ...                    root=root, class_names=("organ",))
    >>> item = ds[0]
    >>> len(ds), tuple(item["image"].shape), tuple(item["label"].shape), item["volume_id"]
    (3, (1, 8, 8), (1, 8, 8), 'img')
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.cases import CaseSpec, resolve_cases
from inpaintssl.data.checks import check_finite, check_real, check_same_shape, check_slice_axis, check_spacing
from inpaintssl.data.labels import check_class_names, check_label_values, class_values, onehot_from_values
from inpaintssl.data.loading import H5Files
from inpaintssl.data.metaimage import MetaImageVolume
from inpaintssl.data.nrrd import NrrdVolume
from inpaintssl.data.orientation import check_axis_codes
from inpaintssl.data.preflight import CaseCheck, check_same_geometry
from inpaintssl.data.preprocess import RunningStats, Stats, zscore
from inpaintssl.data.readers import LABEL_RANKS, H5Volume, NiftiVolume, NumpyVolume, Volume
from inpaintssl.listing import first_and_more
from inpaintssl.options import check_option
from inpaintssl.registry import DATASETS
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "LABEL_MAP_MAX_VALUES",
    "Case",
    "Normalize",
    "VolumeSliceDataset",
    "hdf5_dataset",
    "nifti_dataset",
    "numpy_dataset",
]

Normalize = Literal["volume", "channel", "none"]


@dataclass(frozen=True)
class Case:
    """An opened case: its id, image volume and optional label volume."""

    volume_id: str
    image: Volume
    label: Volume | None


def slice_place(volume: Volume, index: int) -> str:
    """Slice ``index`` of ``volume`` as a message names it: in the file's own axes where it was reoriented.

    Read reoriented (predict's run orientation), slice 36 of the volume may be slice 20 of the
    file along another axis: the file and that place are what a user can look up.

    Example:
        >>> import nibabel as nib, numpy as np, pathlib, tempfile
        >>> from inpaintssl.data.readers import NiftiVolume
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "v.nii"
        >>> nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.diag([-1.0, 1, 1, 1])), path)
        >>> volume = NiftiVolume(path)  # stored LAS, sliced along its third axis
        >>> slice_place(volume, 1).split("v.nii ")[1]
        'slice 1'
        >>> volume.reorient("SAR")  # R runs along stored axis 0, reversed
        >>> slice_place(volume, 1).split("v.nii ")[1]
        'slice 2 along its stored axis 0 (slice 1 as read in SAR)'
        >>> nib.save(nib.Nifti1Image(np.zeros((4, 5), np.float32), np.diag([-1.0, 1, 1, 1])), path)
        >>> flat = NiftiVolume(path)
        >>> flat.reorient("ARS")  # a 2-D slice, turned within its plane
        >>> slice_place(flat, 0).split("v.nii ")[1]
        'slice 0'
    """
    change = volume.reorientation
    if change is None or len(volume.stored_shape) == 2:
        # A 2-D file is its one slice, only turned within its plane: it has no third axis to name.
        return f"{volume.source} slice {index}"
    stored_axis = change.axes[volume.slice_axis]
    stored = volume.num_slices - 1 - index if change.flips[volume.slice_axis] else index
    return (
        f"{volume.source} slice {stored} along its stored axis {stored_axis} (slice {index} as read in "
        f"{change.target})"
    )


def _checked_slices(volume: Volume) -> Iterator[np.ndarray]:
    """Every slice of ``volume``, read, each refused unless real and finite (naming file and slice)."""
    for s in range(volume.num_slices):
        raw = volume.read(s)
        check_real(raw, where=slice_place(volume, s))
        check_finite(raw, where=slice_place(volume, s))
        yield raw


class VolumeSliceDataset(SliceDataset):
    """2D slices of image volumes with optional integer label volumes.

    Args:
        cases: Opened cases (all images must have one channel count).
        name: Dataset name used in messages.
        class_names: Foreground classes; empty for unlabelled data (labels are then ignored).
        label_values: Stored value(s) per class name; default ``i + 1`` for ``class_names[i]``.
        normalize: ``volume``, ``channel`` or ``none`` (see the module docstring).

    Raises:
        DataError: No cases, a class named twice, mixed channel counts, a label on another voxel
            grid, or a labelled dataset with a case that has no label.
    """

    def __init__(
        self,
        cases: Sequence[Case],
        *,
        name: str,
        class_names: Sequence[str] = (),
        label_values: Mapping[str, int | Sequence[int]] | None = None,
        normalize: Normalize = "volume",
    ) -> None:
        if not cases:
            raise DataError(f"{name}: no cases; expected at least one image volume")
        check_option(normalize, ("volume", "channel", "none"), field=f"{name}: normalize", error=DataError)
        self.name = name
        self.normalize: Normalize = normalize
        self.class_names = check_class_names(class_names, where=name)
        self._values = class_values(self.class_names, label_values) if self.class_names else ()
        self._cases = list(cases)
        self.in_channels = self._check_cases()
        slices = [(c, s) for c, case in enumerate(self._cases) for s in range(case.image.num_slices)]
        self._index = np.asarray(slices, dtype=np.int64).reshape(-1, 2)
        self.volume_ids = [self._cases[c].volume_id for c, _ in slices]
        self.slice_indices = [s for _, s in slices]
        self.spacing = self._cases[0].image.spacing
        volumes = [v for case in self._cases for v in (case.image, case.label) if v is not None]
        self.data_files = sorted({f for v in volumes for f in v.files})
        self._stats: dict[int, Stats] = {}

    def _check_cases(self) -> int:
        by_count: dict[int, list[str]] = {}
        for case in self._cases:
            by_count.setdefault(self._image_channels(case.image), []).append(str(case.image.path))
        if len(by_count) > 1:
            found = "; ".join(
                f"{count} channel(s): {_some(paths)}" for count, paths in sorted(by_count.items())
            )
            raise DataError(
                f"{self.name}: images have different channel counts ({found}); expected one channel "
                "count for every image"
            )
        for case in self._cases:
            if not self.labelled:
                continue
            if case.label is None:
                raise DataError(
                    f"{self.name}: case {case.volume_id!r} ({case.image.path}) has no label but the "
                    "dataset is labelled; add a 'label' or build it with labelled=False"
                )
            # The sources name the array inside a file that holds both (an HDF5 image and label).
            check_same_shape(
                case.image.grid,
                case.label.grid,
                image=case.image.source,
                label=case.label.source,
                image_stored=case.image.stored_grid,
                label_stored=case.label.stored_grid,
            )
        return next(iter(by_count))

    def _image_channels(self, volume: Volume) -> int:
        return volume.channels

    def __len__(self) -> int:
        return len(self._index)

    def slice_shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of item ``index`` without reading it."""
        case = self._cases[int(self._index[index, 0])]
        return case.image.slice_shape

    def slice_spacing(self, index: int) -> tuple[float, float]:
        """``(row_mm, col_mm)`` of item ``index`` without reading it."""
        row, col, _ = self._cases[int(self._index[index, 0])].image.spacing
        return row, col

    def slice_orientation(self, index: int) -> str | None:
        """Axis codes of the volume item ``index`` is sliced from, as read (``None``: unknown)."""
        return self._cases[int(self._index[index, 0])].image.orientation

    def to_channels(self, raw: np.ndarray) -> np.ndarray:
        """A stored slice ``(H, W)`` or ``(H, W, C)`` -> ``(C, H, W)`` float32, before z-scoring."""
        if raw.ndim == 2:
            return raw[None].astype(np.float32)
        return np.moveaxis(raw, -1, 0).astype(np.float32)

    def extras(self, raw: np.ndarray) -> dict[str, Any]:
        """Source-specific extra item keys computed from the stored slice (none here)."""
        return {}

    def volume_stats(self, case_index: int) -> Stats:
        """Normalisation statistics of one case, computed on first use and cached."""
        stats = self._stats.get(case_index)
        if stats is None:
            if self.normalize == "none":
                zeros = np.zeros(self.in_channels)
                stats = Stats(mean=zeros, std=np.ones(self.in_channels))
            else:
                stats = self._scan_image(case_index)
            self._stats[case_index] = stats
        return stats

    def _scan_image(self, case_index: int) -> Stats:
        """Read every slice of a case's image, check it, and return its normalisation statistics."""
        return self._scan(case_index)[0]

    def _scan(self, case_index: int) -> tuple[Stats, float, float]:
        """:meth:`_scan_image`, plus the smallest and largest stored value of the whole image."""
        return self._scan_values(case_index)[:3]

    def _scan_values(self, case_index: int) -> tuple[Stats, float, float, set[float] | None]:
        """:meth:`_scan`, plus the image's distinct values while they are few whole numbers, else ``None``."""
        case = self._cases[case_index]
        acc = RunningStats(per_channel=self.normalize == "channel")
        low, high = np.inf, -np.inf
        values: set[float] | None = set()
        for raw in _checked_slices(case.image):
            if raw.size:
                low, high = min(low, float(raw.min())), max(high, float(raw.max()))
            if values is not None:
                values = _few_whole_numbers(raw, values)
            acc.update(self.to_channels(raw))
        return acc.result(channels=self.in_channels), low, high, values

    def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
        """One complete check per case in ``volume_ids`` (see :mod:`inpaintssl.data.preflight`).

        The checks may run on threads beside each other (``CaseCheck.parallel``), unless a
        case's volumes say their reads do not (HDF5, DICOM:
        :attr:`~inpaintssl.data.readers.Volume.reads_on_threads`). A subclass whose
        ``to_channels`` or ``extras`` share state between cases overrides this to pass
        ``parallel=False``.
        """
        return [
            CaseCheck(
                f"{self.name} case {case.volume_id!r} ({case.image.path})",
                functools.partial(self._preflight, c),
                # Once each: a file several volumes read (an Enhanced series' echoes) is one fingerprint.
                files=tuple(dict.fromkeys(name for volume in self._case_volumes(c) for name in volume.files)),
                # Each reads its own case's volumes; _stats takes one key per case.
                parallel=all(v.reads_on_threads for v in self._case_volumes(c)),
            )
            for c, case in enumerate(self._cases)
            if case.volume_id in volume_ids
        ]

    def _case_volumes(self, case_index: int) -> tuple[Volume, ...]:
        """Every volume the items of case ``case_index`` read: image, label, :meth:`extra_volumes`."""
        case = self._cases[case_index]
        own = (case.image, case.label) if self.labelled and case.label is not None else (case.image,)
        return own + self.extra_volumes(case_index)

    def extra_volumes(self, case_index: int) -> tuple[Volume, ...]:
        """Volumes beside the image and label that the items of case ``case_index`` read slice by
        slice (none here; the ``dicom`` dataset's echoes with ``t2_echoes``).

        The pre-flight check reads each completely, as it reads the image, and fingerprints its
        files with the case's, so a damaged or rewritten one is found before training.
        """
        return ()

    def _preflight(self, case_index: int) -> None:
        case = self._cases[case_index]
        if self.labelled and case.label is not None:
            check_same_geometry(case.image, case.label)
        stats, low, high, values = self._scan_values(case_index)
        if values is not None and low != high:
            shown = ", ".join(f"{v:g}" for v in sorted(values))
            warn_each_time(
                f"{self.name} case {case.volume_id!r}: image {case.image.source} holds only "
                f"{len(values)} distinct values, all whole numbers ({shown}): is it a label map? A "
                "pattern meant for scans that also matches label maps ('train/*.nii.gz' beside "
                "'*_seg.nii.gz') uses them as scans: narrow it (e.g. '*_t1.nii.gz'); a scan of so few "
                "values is used as it is",
                UserWarning,
            )
        if low == high:
            # z-scoring only centres a constant channel (one all-air CT window is fine), but a whole
            # image of one value is a blank export or copy: it would be trained on and scored as a scan.
            raise DataError(
                f"{self.name} case {case.volume_id!r}: image {case.image.source} holds the value {low:g} in "
                f"every voxel (a blank volume: written without data, or a failed export or copy?); "
                "expected an image whose intensities vary"
            )
        # The scan is the volume-normalisation pass: keep it, so the first epoch does not repeat it.
        if self.normalize != "none":
            self._stats.setdefault(case_index, stats)
        if self.labelled and case.label is not None:
            for s in range(case.label.num_slices):
                raw = case.label.read(s)
                check_label_values(raw, self._values, where=f"label {slice_place(case.label, s)}")
        # What only a read finds in the other volumes the items read; their grid is the dataset's to
        # check when it opens them (the dicom dataset refuses echoes off echo 1's grid).
        for extra in self.extra_volumes(case_index):
            for _ in _checked_slices(extra):
                pass

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} slices")
        c, s = (int(v) for v in self._index[index])
        case = self._cases[c]
        raw = case.image.read(s)
        check_finite(raw, where=slice_place(case.image, s))
        image = zscore(self.to_channels(raw), self.volume_stats(c))
        item: dict[str, Any] = {
            "image": torch.from_numpy(image),
            "volume_id": case.volume_id,
            "slice_index": s,
            "spacing": torch.tensor(case.image.spacing, dtype=torch.float64),
        }
        item.update(self.extras(raw))
        if self.labelled:
            assert case.label is not None  # checked at construction
            label = case.label.read(s)
            onehot = onehot_from_values(label, self._values, where=f"label {slice_place(case.label, s)}")
            item["label"] = torch.from_numpy(onehot)
        return item


LABEL_MAP_MAX_VALUES = 16
"""An image of at most this many distinct values, all whole numbers, is warned about as a likely
label map: scans (MRI, CT in HU) hold hundreds or thousands; a label map a handful."""


def _few_whole_numbers(raw: np.ndarray, seen: set[float]) -> set[float] | None:
    """``seen`` with the distinct values of ``raw``, or ``None`` once there are too many or one is
    not a whole number (a scan: most stop at their first slice that is not background)."""
    distinct = np.unique(raw)
    if distinct.size > LABEL_MAP_MAX_VALUES or not np.array_equal(distinct, np.round(distinct)):
        return None
    seen = seen | {float(v) for v in distinct}
    return seen if len(seen) <= LABEL_MAP_MAX_VALUES else None


_LISTED_FILES = 3
"""How many files a message lists per group before it counts the rest."""


def _some(paths: Sequence[str]) -> str:
    return first_and_more(paths, limit=_LISTED_FILES)


def open_cases(
    specs: Sequence[CaseSpec],
    *,
    labelled: bool,
    open_image: Callable[[Path], Volume],
    open_label: Callable[[Path], Volume],
) -> list[Case]:
    """Open each case's image (and, if ``labelled``, its label) with the given readers."""
    return [
        Case(
            spec.volume_id,
            open_image(spec.image),
            open_label(spec.label) if labelled and spec.label is not None else None,
        )
        for spec in specs
    ]


def _volume_dataset(
    name: str,
    split: str,
    labelled: bool,
    cases: Any,
    root: str | Path | None,
    class_names: Sequence[str],
    label_values: Mapping[str, int | Sequence[int]] | None,
    normalize: Normalize,
    /,
    *,
    open_image: Callable[[Path], Volume],
    open_label: Callable[[Path], Volume],
    label_in_image_file: bool = False,
) -> VolumeSliceDataset:
    """The body every volume factory shares: resolve the split's cases, open them, build the dataset.

    ``label_in_image_file``: a labelled case without its own ``label`` reads it from its image file.
    """
    # Checked even when unlabelled: a string there is the same mistake fine-tuning would meet.
    names = check_class_names(class_names, where=name)
    if labelled and not names:
        raise DataError(f"{name}: labelled=True needs class_names (the foreground class of each label value)")
    specs = resolve_cases(cases, split, root=root, dataset=name)
    if label_in_image_file and labelled:
        specs = [CaseSpec(s.volume_id, s.image, s.label or s.image) for s in specs]
    opened = open_cases(specs, labelled=labelled, open_image=open_image, open_label=open_label)
    return VolumeSliceDataset(
        opened,
        name=name,
        class_names=names if labelled else (),
        label_values=label_values,
        normalize=normalize,
    )


@DATASETS.register("nifti")
def nifti_dataset(
    *,
    split: str,
    labelled: bool = True,
    cases: Any,
    root: str | Path | None = None,
    class_names: Sequence[str] = (),
    label_values: Mapping[str, int | Sequence[int]] | None = None,
    slice_axis: int = 2,
    normalize: Normalize = "volume",
    orientation: str | None = None,
) -> VolumeSliceDataset:
    """NIfTI image volumes (``.nii``/``.nii.gz``) with optional integer label volumes.

    The library's generalisation of the paper's datasets (sec. 2.1) to any NIfTI segmentation
    data, preprocessed by the paper's rule for MRI (sec. 2.2: 2D slices, z-scored per volume):
    what the MRI experiments (sec. 2.5-2.7) run on when the data are not SKM-TEA (``skmtea``).

    Args:
        split: Split name defined in ``cases``.
        labelled: Read labels (needs ``class_names``).
        cases: Files per split (see :mod:`inpaintssl.data.cases`).
        root: Folder relative paths start from.
        class_names: Foreground classes.
        label_values: Stored value(s) per class (default ``i + 1``).
        slice_axis: Axis of the stored array that slices are taken along (of the reoriented
            array with ``orientation``).
        normalize: ``volume``, ``channel`` or ``none``.
        orientation: Axis codes (:mod:`~inpaintssl.data.orientation`) every image and label is
            read in, e.g. ``"RAS"``: volumes stored in other axis orders are permuted and flipped
            (not resampled) on reading, so ``slice_axis`` cuts every case along one anatomical
            axis. ``None`` (default): as stored.
    """
    common = (split, labelled, cases, root, class_names, label_values, normalize)
    return _oriented_dataset("nifti", NiftiVolume, *common, slice_axis=slice_axis, orientation=orientation)


@DATASETS.register("metaimage")
def metaimage_dataset(
    *,
    split: str,
    labelled: bool = True,
    cases: Any,
    root: str | Path | None = None,
    class_names: Sequence[str] = (),
    label_values: Mapping[str, int | Sequence[int]] | None = None,
    slice_axis: int = 2,
    normalize: Normalize = "volume",
    orientation: str | None = None,
) -> VolumeSliceDataset:
    """MetaImage volumes (``.mha``, or ``.mhd`` headers beside their data) with optional label volumes.

    Like ``nifti`` (sec. 2.1-2.2), for data in ITK's own format, as the OAI-ZIB knee MRIs and
    their cartilage label maps ship (:class:`~inpaintssl.data.metaimage.MetaImageVolume`: spacing
    and geometry from the header, no ITK needed). Args are those of :func:`nifti_dataset`.
    """
    common = (split, labelled, cases, root, class_names, label_values, normalize)
    return _oriented_dataset(
        "metaimage", MetaImageVolume, *common, slice_axis=slice_axis, orientation=orientation
    )


@DATASETS.register("nrrd")
def nrrd_dataset(
    *,
    split: str,
    labelled: bool = True,
    cases: Any,
    root: str | Path | None = None,
    class_names: Sequence[str] = (),
    label_values: Mapping[str, int | Sequence[int]] | None = None,
    slice_axis: int = 2,
    normalize: Normalize = "volume",
    orientation: str | None = None,
) -> VolumeSliceDataset:
    """NRRD volumes (``.nrrd``, or ``.nhdr`` headers beside their data) with optional label volumes.

    Like ``nifti`` (sec. 2.1-2.2), for scans and label maps saved by 3D Slicer
    (:class:`~inpaintssl.data.nrrd.NrrdVolume`: spacing and geometry from the header, no extra
    needed). Args are those of :func:`nifti_dataset`.
    """
    common = (split, labelled, cases, root, class_names, label_values, normalize)
    return _oriented_dataset("nrrd", NrrdVolume, *common, slice_axis=slice_axis, orientation=orientation)


def _oriented_dataset(
    name: str,
    reader: type[NiftiVolume] | type[MetaImageVolume] | type[NrrdVolume],
    split: str,
    labelled: bool,
    cases: Any,
    root: str | Path | None,
    class_names: Sequence[str],
    label_values: Mapping[str, int | Sequence[int]] | None,
    normalize: Normalize,
    /,
    *,
    slice_axis: int,
    orientation: str | None,
) -> VolumeSliceDataset:
    """A dataset of a format that states its geometry, and so can be read in one ``orientation``."""
    if orientation is not None:
        orientation = check_axis_codes(orientation, where=f"{name}: orientation", error=DataError)
    slice_axis = check_slice_axis(slice_axis, where=name)
    return _volume_dataset(
        name,
        split,
        labelled,
        cases,
        root,
        class_names,
        label_values,
        normalize,
        open_image=lambda p: reader(p, slice_axis=slice_axis, orientation=orientation),
        open_label=lambda p: reader(p, slice_axis=slice_axis, ranks=LABEL_RANKS, orientation=orientation),
    )


@DATASETS.register("numpy")
def numpy_dataset(
    *,
    split: str,
    labelled: bool = True,
    cases: Any,
    root: str | Path | None = None,
    class_names: Sequence[str] = (),
    label_values: Mapping[str, int | Sequence[int]] | None = None,
    slice_axis: int = 2,
    normalize: Normalize = "volume",
    image_key: str = "image",
    label_key: str = "label",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> VolumeSliceDataset:
    """``.npy`` arrays (memory-mapped) or ``.npz`` archives (``image_key``/``label_key`` members).

    Like ``nifti``, the library's generalisation of the paper's datasets (sec. 2.1) with the
    sec. 2.2 preprocessing, for data already exported as arrays.

    Args are those of :func:`nifti_dataset`, plus ``image_key``/``label_key`` (``.npz`` member
    names) and ``spacing`` (NumPy files carry none): finite voxel sizes > 0 in mm in stored axis
    order, 3 for volumes (2 are enough when every array is a 2D slice).
    """
    slice_axis = check_slice_axis(slice_axis, where="numpy")
    spacing = check_spacing(spacing, where="numpy: spacing")
    common = (split, labelled, cases, root, class_names, label_values, normalize)
    return _volume_dataset(
        "numpy",
        *common,
        open_image=lambda p: NumpyVolume(p, key=image_key, slice_axis=slice_axis, spacing=spacing),
        open_label=lambda p: NumpyVolume(
            p, key=label_key, slice_axis=slice_axis, spacing=spacing, ranks=LABEL_RANKS
        ),
    )


@DATASETS.register("hdf5")
def hdf5_dataset(
    *,
    split: str,
    labelled: bool = True,
    cases: Any,
    root: str | Path | None = None,
    class_names: Sequence[str] = (),
    label_values: Mapping[str, int | Sequence[int]] | None = None,
    slice_axis: int = 2,
    normalize: Normalize = "volume",
    image_key: str = "image",
    label_key: str = "label",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> VolumeSliceDataset:
    """HDF5 files holding the image (``image_key``) and label (``label_key``) as datasets.

    Like ``nifti``, the library's generalisation of the paper's datasets (sec. 2.1) with the
    sec. 2.2 preprocessing, for data stored as HDF5 (the form the paper's SKM-TEA scans come in;
    ``skmtea`` reads that layout itself).

    A case's ``label`` may name the same file as its ``image``; each file is opened once per
    worker process and read per slice. Args are those of :func:`numpy_dataset`.
    """
    slice_axis = check_slice_axis(slice_axis, where="hdf5")
    spacing = check_spacing(spacing, where="hdf5: spacing")
    common = (split, labelled, cases, root, class_names, label_values, normalize)
    handles = H5Files()
    return _volume_dataset(
        "hdf5",
        *common,
        open_image=lambda p: H5Volume(
            p, key=image_key, handles=handles, slice_axis=slice_axis, spacing=spacing
        ),
        open_label=lambda p: H5Volume(
            p, key=label_key, handles=handles, slice_axis=slice_axis, spacing=spacing, ranks=LABEL_RANKS
        ),
        label_in_image_file=True,
    )
