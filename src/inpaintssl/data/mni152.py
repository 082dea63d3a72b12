"""Real demo data that installs offline: the ICBM152 2009a template bundled in nilearn's wheel.

nilearn ships ``datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``:
a T1 template and grey/white-matter probability maps, 197x233x189 voxels of 1 mm, RAS axes,
stored as uint8 0..255. Nothing is downloaded; the ``demo`` extra (nilearn + nibabel) is needed.

Preparation, done once per process per ``zoom`` and cached:

1. Scale all three to [0, 1] by 1/255 (the stored range is exactly 0..255; the T1 is already
   skull-stripped, so the background is 0).
2. Resample each with ``scipy.ndimage.zoom(order=1)`` by ``zoom`` (default 0.5: 98x116x94 voxels
   of ~2 mm, which fit-to-size 112x112 crops/pads for the demo). The spacing reported is that of
   the zoomed grid, whose end voxels sit on the stored end voxels (:func:`zoomed_spacing`).
3. ``brain = T1 > 0.2``; probabilities ``bg = 1 - brain``, ``csf = clip(1 - gm - wm, 0, 1) * brain``,
   ``gm * brain``, ``wm * brain``; ``label = argmax(bg, csf, gm, wm)`` (ties go to the first).
   Classes are ``("csf", "gm", "wm")`` as foreground one-hot; ``csf`` means CSF and any other
   in-brain tissue that is neither grey nor white matter.
4. The T1 is z-scored over the **whole** volume (sec. 2.2 "per volume"). Statistics over the
   brain only would put the background near -4.9 (cpu-budget notes: far from anything an
   untrained restorer outputs); over the whole volume the background sits at about -0.5.

Slices are shown in display orientation: axial slices have anterior at the top and the patient's
left on the left (neurological); coronal and sagittal slices have superior at the top. A slice is
used when at least ``min_brain_fraction`` (default 0.1) of its pixels are brain, which drops the
caps of the head where one or more classes is missing; at the default zoom this keeps 61 of 94
axial slices.

Splits. ``train``/``val``/``test`` are axial slices. The kept slices, in order, are cut into
blocks of ``block_size`` (default 4, about 8 mm) consecutive slices, and the blocks are dealt out
round-robin by the pattern train, train, val, train, train, train, test (5 : 1 : 1), so
neighbouring slices share a split except at block edges and every split samples the whole head.
Each axial slice is its own ``volume_id`` (``"axial_045"``), so label fractions act on slices.
``unlabelled`` holds the kept slices along ``axes`` (default coronal and sagittal; ``axial`` adds
every kept axial slice) for pretraining; it has no labels (build it with ``labelled=False``).
Coronal and sagittal slices have other shapes than the axial ones, so set ``data.image_size``
when mixing them. Each of them crosses every axial slice, the test and validation ones included,
and the axial ones are those slices: pretraining on any of them shows the network the test
anatomy, so a comparison with a supervised arm that never saw it is not held out (the demo leaves
them out; :meth:`MNI152Dataset.unlabelled_holds_test_anatomy` says what a source holds).

Example:
    >>> ds = MNI152Dataset(split="val")
    >>> tuple(ds[0]["image"].shape), ds.class_names, ds.volume_ids[0]
    ((1, 116, 98), ('csf', 'gm', 'wm'), 'axial_019')
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.checks import existing_path
from inpaintssl.data.preflight import CaseCheck
from inpaintssl.data.readers import READ_ERRORS
from inpaintssl.extras import find_optional, import_optional
from inpaintssl.options import check_option
from inpaintssl.registry import DATASETS

__all__ = [
    "MNI152Dataset",
    "MNI152_CLASSES",
    "SPLIT_PATTERN",
    "Template",
    "load_template",
    "template_files",
    "zoomed_spacing",
]

MNI152_CLASSES = ("csf", "gm", "wm")
SPLIT_PATTERN = ("train", "train", "val", "train", "train", "train", "test")
"""Split of each consecutive block of kept axial slices, repeated round-robin."""

BRAIN_THRESHOLD = 0.2
"""Brain where the T1, scaled to [0, 1], exceeds this."""
_STORED_MAX = 255.0
_AXES: Mapping[str, int] = MappingProxyType({"sagittal": 0, "coronal": 1, "axial": 2})
_DEFAULT_AXES = ("coronal", "sagittal")
_AXES_IN_WORDS = ("axial", "coronal", "sagittal")
"""Order in which the held-out phrase names the ``unlabelled`` split's axes, whatever order they came in."""
_FILE_TEMPLATE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def template_files(*, data_dir: str | Path | None = None) -> dict[str, Path]:
    """Paths of the T1, GM and WM files: in ``data_dir``, else in the installed nilearn wheel.

    Raises:
        ImportError: nilearn is not installed (``pip install "inpaintssl[demo]"``).
        DataError: A file is missing.

    Example:
        >>> sorted(template_files())
        ['gm', 't1', 'wm']
    """
    if data_dir is None:
        # Located, not imported: only the files inside nilearn's wheel are read.
        nilearn = find_optional("nilearn", extra="demo", purpose="the mni152 demo dataset")
        folder = nilearn / "datasets" / "data"
    else:
        folder = Path(data_dir)
    return {
        kind: existing_path(folder / _FILE_TEMPLATE.format(kind), what=f"ICBM152 {kind} file")
        for kind in ("t1", "gm", "wm")
    }


@dataclass(frozen=True)
class Template:
    """The prepared template (RAS voxel order).

    Attributes:
        image: ``(X, Y, Z)`` float32 T1, z-scored over the volume.
        label: ``(X, Y, Z)`` int8: 0 background, 1 csf/other, 2 gm, 3 wm.
        brain: ``(X, Y, Z)`` bool brain mask.
        spacing: ``(x_mm, y_mm, z_mm)`` after zooming.
        files: The three files read.
    """

    image: np.ndarray
    label: np.ndarray
    brain: np.ndarray
    spacing: tuple[float, float, float]
    files: tuple[str, ...]


def _load_stored(path: Path) -> np.ndarray:
    nib = import_optional("nibabel", extra="demo", purpose="the mni152 demo dataset")
    try:
        stored: np.ndarray = np.asanyarray(nib.load(path).dataobj)
    except READ_ERRORS as exc:  # e.g. a truncated or corrupt gzip stream
        raise DataError(f"ICBM152 file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    return stored.astype(np.float32)


def _stored_zooms(path: Path) -> tuple[float, ...]:
    nib = import_optional("nibabel", extra="demo", purpose="the mni152 demo dataset")
    return tuple(float(z) for z in nib.load(path).header.get_zooms()[:3])


def zoomed_spacing(
    old_shape: Sequence[int], new_shape: Sequence[int], old_spacing: Sequence[float]
) -> tuple[float, float, float]:
    """Voxel size (mm) after ``scipy.ndimage.zoom`` took ``old_shape`` to ``new_shape``.

    ``ndimage.zoom`` (``grid_mode=False``, its default) maps the first and last voxel centres onto
    the first and last: ``n - 1`` old steps become ``m - 1`` new ones, so a step is
    ``old * (n - 1) / (m - 1)`` (197 -> 98 voxels of 1 mm: 2.0206 mm, not 197 / 98 = 2.0102 mm,
    which put volumes ~1.5 % low at zoom 0.5 and ~5 % at 0.25). An axis zoomed to one voxel keeps
    the extent it stood for.

    Example:
        >>> [round(v, 4) for v in zoomed_spacing((197, 233, 189), (98, 116, 94), (1.0, 1.0, 1.0))]
        [2.0206, 2.0174, 2.0215]
    """
    steps = [
        s * (n - 1) / (m - 1) if m > 1 else s * n / m for n, m, s in zip(old_shape, new_shape, old_spacing)
    ]
    return steps[0], steps[1], steps[2]


@functools.lru_cache(maxsize=4)
def load_template(*, zoom: float = 0.5, data_dir: str | None = None) -> Template:
    """Load, zoom, label and normalise the template (see the module docstring); cached.

    Example:
        >>> t = load_template(zoom=0.25)
        >>> t.image.shape, sorted(set(t.label.ravel().tolist()))
        ((49, 58, 47), [0, 1, 2, 3])
    """
    from scipy import ndimage

    files = template_files(data_dir=data_dir)
    # Work in stored units (0..255, i.e. probability x 255): float32 is exact on these integers,
    # so at zoom=1 ties such as csf == gm are decided exactly (to the first class), not by rounding.
    maps = {kind: _load_stored(path) for kind, path in files.items()}
    shape = maps["t1"].shape
    if zoom != 1.0:
        maps = {kind: ndimage.zoom(vol, zoom, order=1) for kind, vol in maps.items()}
    t1, gm, wm = maps["t1"], maps["gm"], maps["wm"]
    brain = t1 > BRAIN_THRESHOLD * _STORED_MAX
    inside = brain.astype(np.float32)
    full = np.float32(_STORED_MAX)
    background = (1 - inside) * full
    csf = np.clip(full - gm - wm, 0, full) * inside
    probs = np.stack([background, csf, gm * inside, wm * inside])
    label = probs.argmax(axis=0).astype(np.int8)
    # z-scoring is scale-free, so the 1/255 to [0, 1] drops out here.
    image = ((t1 - t1.mean()) / t1.std()).astype(np.float32)
    spacing = zoomed_spacing(shape, t1.shape, _stored_zooms(files["t1"]))
    return Template(
        image=image,
        label=label,
        brain=brain,
        spacing=(spacing[0], spacing[1], spacing[2]),
        files=tuple(str(p) for p in files.values()),
    )


def _display(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    # Put superior (coronal/sagittal) or anterior (axial) at the top: the second in-plane axis
    # becomes the rows, flipped so it increases upwards.
    plane = np.take(volume, index, axis=axis)
    return np.ascontiguousarray(plane.T[::-1])


def _plane_spacing(spacing: tuple[float, float, float], axis: int) -> tuple[float, float, float]:
    in_plane = [a for a in range(3) if a != axis]
    return spacing[in_plane[1]], spacing[in_plane[0]], spacing[axis]


def kept_slices(brain: np.ndarray, axis: int, *, min_brain_fraction: float) -> list[int]:
    """Indices along ``axis`` whose brain fraction is at least ``min_brain_fraction``."""
    other = tuple(a for a in range(3) if a != axis)
    fraction = brain.mean(axis=other)
    return [int(i) for i in np.flatnonzero(fraction >= min_brain_fraction)]


def _check_axes(axes: Any, *, split: str) -> tuple[str, ...]:
    """``axes`` as a tuple if it is a list of distinct known axis names (not empty for ``unlabelled``).

    Example:
        >>> _check_axes(["coronal"], split="unlabelled")
        ('coronal',)
        >>> _check_axes("coronal", split="unlabelled")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: mni152: axes: expected a list of axis names, found the string \
'coronal'; for one axis write a one-item list: [coronal]
    """
    known = sorted(_AXES)
    if isinstance(axes, (str, bytes)):
        # tuple("coronal") is one axis per letter, which were refused as unknown axes 'c', 'o', ...
        name = axes.decode(errors="replace") if isinstance(axes, bytes) else axes
        raise DataError(
            f"mni152: axes: expected a list of axis names, found the string {axes!r}; for one axis write a "
            f"one-item list: [{name}]"
        )
    if not isinstance(axes, Sequence):
        raise DataError(f"mni152: axes={axes!r}: expected a list of axis names, some of {known}")
    given = tuple(axes)
    unknown = [axis for axis in given if not isinstance(axis, str) or axis not in _AXES]
    if unknown:
        raise DataError(f"mni152: axes {unknown} unknown; expected some of {known}")
    repeated = [axis for axis in dict.fromkeys(given) if given.count(axis) > 1]
    if repeated:
        counts = ", ".join(f"{axis!r} {given.count(axis)} times" for axis in repeated)
        # Each slice of such an axis would be built twice, twice the weight in pretraining.
        raise DataError(f"mni152: axes {list(given)} name {counts}; expected each axis once")
    if not given and split == "unlabelled":
        raise DataError(
            f"mni152: axes [] names no axis, so split 'unlabelled' has no slices; expected one or more of "
            f"{known} (the default: {list(_DEFAULT_AXES)})"
        )
    return given


def assign_blocks(count: int, *, block_size: int, pattern: Sequence[str] = SPLIT_PATTERN) -> list[str]:
    """Split name of each of ``count`` ordered slices: blocks of ``block_size`` dealt by ``pattern``.

    Example:
        >>> assign_blocks(9, block_size=2, pattern=("train", "val"))
        ['train', 'train', 'val', 'val', 'train', 'train', 'val', 'val', 'train']
    """
    return [pattern[(i // block_size) % len(pattern)] for i in range(count)]


@DATASETS.register("mni152")
class MNI152Dataset(SliceDataset):
    """The registered ``mni152`` dataset: 2D slices of the prepared ICBM152 template.

    Not a dataset of the paper: the library's own demo data, installed with the ``demo`` extra
    so the method runs offline. It stands in for the MRI dataset of sec. 2.1.1 (SKM-TEA knee
    qDESS volumes, which must be downloaded under their own terms): MR tissue segmentation
    from 2D slices of a 3D volume, z-scored per volume as sec. 2.2 prescribes for MR, with
    labelled axial ``train``/``val``/``test`` splits whose label-limited subsets act on slices,
    and the ``unlabelled`` coronal and sagittal slices in the role of the unlabelled
    pretraining volumes. One brain is far from 155 knees, so its numbers show that the pipeline
    works, not the paper's results.

    Args:
        split: ``train``, ``val``, ``test`` (axial) or ``unlabelled`` (other axes).
        labelled: Attach ``label`` (not for ``unlabelled``).
        zoom: Resampling factor applied to the 1 mm template.
        min_brain_fraction: Smallest share of brain pixels for a slice to be used.
        block_size: Consecutive axial slices per block of the split pattern.
        axes: Axes of the ``unlabelled`` split (``coronal``, ``sagittal``, even ``axial``): a
            list of distinct names, not empty for that split (``[coronal]`` for one axis).
        data_dir: Folder holding the three files (default: nilearn's bundled copy).

    Raises:
        DataError: Bad parameter (``axes`` as one string rather than a list, an axis named twice,
            an unknown one, or none for ``unlabelled``) or a split that keeps no slices.
        ImportError: nilearn/nibabel missing (``demo`` extra).
    """

    def __init__(
        self,
        *,
        split: str,
        labelled: bool = True,
        zoom: float = 0.5,
        min_brain_fraction: float = 0.1,
        block_size: int = 4,
        axes: Sequence[str] = _DEFAULT_AXES,
        data_dir: str | Path | None = None,
    ) -> None:
        if not zoom > 0:
            raise DataError(f"mni152: zoom={zoom} must be positive")
        if not 0.0 <= min_brain_fraction < 1.0:
            raise DataError(f"mni152: min_brain_fraction={min_brain_fraction}; expected 0 <= value < 1")
        if block_size < 1:
            raise DataError(f"mni152: block_size={block_size}; expected a positive integer")
        check_option(split, ("train", "val", "test", "unlabelled"), field="mni152: split", error=DataError)
        if split == "unlabelled" and labelled:
            raise DataError("mni152: split 'unlabelled' has no labels; build it with labelled=False")
        axes = _check_axes(axes, split=split)
        template = load_template(zoom=float(zoom), data_dir=None if data_dir is None else str(data_dir))
        self.split = split
        self.class_names = MNI152_CLASSES if labelled else ()
        self.in_channels = 1
        self.data_files = list(template.files)
        self.spacing = _plane_spacing(template.spacing, _AXES["axial"])
        chosen = self._select(
            template, split, axes, min_brain_fraction=min_brain_fraction, block_size=block_size
        )
        if not chosen:
            raise DataError(
                f"mni152: split {split!r} keeps no slices (min_brain_fraction={min_brain_fraction}, "
                f"block_size={block_size}); lower min_brain_fraction or block_size"
            )
        self._images = [_display(template.image, _AXES[a], i)[None] for a, i in chosen]
        self._labels = [_display(template.label, _AXES[a], i) for a, i in chosen] if labelled else []
        self._spacings = [_plane_spacing(template.spacing, _AXES[a]) for a, _ in chosen]
        self.volume_ids = [f"{axis}_{index:03d}" for axis, index in chosen]
        self.slice_indices = [index for _, index in chosen]

    @staticmethod
    def _select(
        template: Template,
        split: str,
        axes: Sequence[str],
        *,
        min_brain_fraction: float,
        block_size: int,
    ) -> list[tuple[str, int]]:
        if split == "unlabelled":
            return [
                (axis, i)
                for axis in axes
                for i in kept_slices(template.brain, _AXES[axis], min_brain_fraction=min_brain_fraction)
            ]
        axial = kept_slices(template.brain, _AXES["axial"], min_brain_fraction=min_brain_fraction)
        names = assign_blocks(len(axial), block_size=block_size)
        return [("axial", i) for i, name in zip(axial, names) if name == split]

    @classmethod
    def unlabelled_holds_test_anatomy(cls, **params: Any) -> str | None:
        """What a pretraining source built with ``params`` holds of the axial test slices.

        The ``unlabelled`` split (the default) holds the test anatomy whenever it keeps any slice:
        a coronal or sagittal slice spans the template's whole axial extent, so it crosses every
        axial test slice, and ``axial`` among its ``axes`` adds the test slices themselves. The
        phrase names the axes given, in a fixed order. A source that names another ``split``
        holds the test anatomy only when that split is ``test`` (the test slices themselves):
        ``train`` and ``val`` slices are axial, parallel to the test slices and disjoint from them
        (and the supervised arm trains on ``train`` too). ``axes`` that keep no slice hold nothing
        (the dataset then refuses to build).

        Example:
            >>> MNI152Dataset.unlabelled_holds_test_anatomy(axes=["sagittal", "axial"])[:64]
            "the mni152 template's axial and sagittal slices, which include e"
            >>> MNI152Dataset.unlabelled_holds_test_anatomy(split="train") is None
            True
        """
        split = str(params.get("split", "unlabelled"))
        if split == "test":
            return "the mni152 template's axial test slices themselves"
        if split != "unlabelled":
            return None
        axes = params.get("axes", _DEFAULT_AXES)
        given = {axis for axis in axes if isinstance(axis, str)} if isinstance(axes, (list, tuple)) else set()
        named = [axis for axis in _AXES_IN_WORDS if axis in given]
        if not named:
            return None  # unknown or no axes: the dataset refuses to build (DataError)
        # An axial unlabelled slice at a test position is that test slice; the others only cross it.
        relation = "include" if "axial" in named else "cross"
        listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
        return (
            f"the mni152 template's {listed} slices, which {relation} every axial test slice of the same "
            "template"
        )

    def __len__(self) -> int:
        return len(self._images)

    def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
        """No checks: the template was read in full and prepared in memory when this was built."""
        return []

    def slice_shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of item ``index``."""
        h, w = self._images[index].shape[-2:]
        return int(h), int(w)

    def slice_spacing(self, index: int) -> tuple[float, float]:
        """``(row_mm, col_mm)`` of item ``index``."""
        row, col, _ = self._spacings[index]
        return row, col

    def slice_orientation(self, index: int) -> str:
        """``RAS``: every slice is cut from the template in its stored RAS voxel order.

        A run records it (:mod:`~inpaintssl.data.orientation`), so ``predict`` reads a brain
        stored in any other axis order in the template's before showing its slices in display
        orientation.
        """
        return "RAS"

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "image": torch.from_numpy(self._images[index].copy()),
            "volume_id": self.volume_ids[index],
            "slice_index": self.slice_indices[index],
            "spacing": torch.tensor(self._spacings[index], dtype=torch.float64),
        }
        if self.labelled:
            label = self._labels[index]
            onehot = np.stack([label == k for k in range(1, len(MNI152_CLASSES) + 1)]).astype(np.float32)
            item["label"] = torch.from_numpy(onehot)
        return item
