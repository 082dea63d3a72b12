"""Which way a volume's array axes point in the patient, and reorienting a volume to another order.

A 2D network learns anatomy in one plane and one orientation: trained on axial slices with the
patient's left on the image's right, it sees a sagittal slice, or a left-right flipped axial one,
as something it has never seen, and labels it badly without any error. Volumes of one study are
often stored in different array orders (a scanner's sagittal and axial protocols, ``dcm2niix``
output against another converter's, a DICOM series read as rows x columns x slices against a
NIfTI file of the same scan), so ``slice_axis`` alone does not say which plane the slices show.

The voxel-to-world affine does (paper sec. 2.2 slices volumes along one anatomical axis). Its
*axis codes* name, for each array axis, the direction it points toward as its index grows, in
NIfTI's RAS+ world (the convention of NIfTI and nibabel): ``R``/``L`` for the world x axis,
``A``/``P`` for y, ``S``/``I`` for z. ``"RAS"``: the first axis runs to the patient's right, the
second to the front, the third up; slicing along axis 2 gives axial slices. An oblique affine
gets the codes of its closest world axes.

:class:`Reorientation` takes a stored array to another axis order by permuting and flipping its
axes (nothing is resampled, so the voxel values are the stored ones), maps the affine along, and
reads one reoriented slice straight from the stored array, so a lazily read volume stays lazy.

Example:
    >>> import numpy as np
    >>> axis_codes(np.diag([-1.0, -1.0, 2.0, 1.0]))     # DICOM's LPS order, as NIfTI sees it
    'LPS'
    >>> r = Reorientation.between("LPS", "RAS")
    >>> r.axes, r.flips
    ((0, 1, 2), (True, True, False))
    >>> stored = np.arange(24).reshape(2, 3, 4)
    >>> bool((r.apply(stored) == stored[::-1, ::-1, :]).all())
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

from inpaintssl.data.base import SliceDataset
from inpaintssl.data.views import slice_orientation_of

__all__ = [
    "AXIS_LETTERS",
    "LPS_TO_RAS",
    "Reorientation",
    "axis_codes",
    "check_axis_codes",
    "describe_orientations",
    "mixed_orientation_message",
    "training_orientations",
]

AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))
"""Per world axis (x, y, z of RAS+), the letters for its negative and positive direction."""

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""DICOM's and ITK's patient space (LPS, mm) to NIfTI's RAS+ as a ``(4, 4)`` matrix; its own inverse."""
LPS_TO_RAS.flags.writeable = False

_WORLD_AXIS = MappingProxyType(
    {letter: (axis, sign) for axis, pair in enumerate(AXIS_LETTERS) for sign, letter in zip((-1, 1), pair)}
)


def check_axis_codes(codes: object, *, where: str, error: type[Exception] = ValueError) -> str:
    """``codes`` as three upper-case letters naming each world axis once, e.g. ``"RAS"``.

    Args:
        codes: The value to check (any case: ``"ras"`` is ``"RAS"``).
        where: The argument or field it came from, for the message.
        error: The exception type to raise, for callers with their own (a ``ValueError``
            subclass such as ``DataError``), as :func:`inpaintssl.options.check_option` takes.

    Raises:
        ValueError: (or ``error``) Not a string of three letters from ``R/L``, ``A/P`` and
            ``S/I``, one of each.

    Example:
        >>> check_axis_codes("lps", where="orientation")
        'LPS'
    """
    expected = (
        "expected three letters, one from each of R/L, A/P and S/I (the direction each array axis "
        "points toward), such as 'RAS' or 'LPS'"
    )
    if not isinstance(codes, str) or len(codes) != 3:
        raise error(f"{where}={codes!r} is invalid; {expected}")
    upper = codes.upper()
    axes = [_WORLD_AXIS[c][0] if c in _WORLD_AXIS else None for c in upper]
    if None in axes or sorted(a for a in axes if a is not None) != [0, 1, 2]:
        raise error(f"{where}={codes!r} is invalid; {expected}")
    return upper


def axis_codes(affine: ArrayLike) -> str | None:
    """The axis codes of a voxel-to-world affine (``(4, 4)``, or its upper ``(3, 3)``/``(3, 4)`` part).

    Zooms and shears are taken out first (the closest orthonormal matrix, from the SVD), then
    each array axis gets the world axis it is most aligned with, the strongest alignments
    assigned first: the codes nibabel's ``aff2axcodes`` gives.

    Returns:
        Three letters such as ``"RAS"``, or ``None`` when the affine's ``(3, 3)`` part is not
        finite or is singular (such a file says nothing about orientation).

    Example:
        >>> import numpy as np
        >>> axis_codes(np.eye(4)), axis_codes(np.diag([0.5, 0.5, -3.0, 1.0])[:, [2, 0, 1, 3]])
        ('RAS', 'IRA')
    """
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 3 or matrix.shape[1] < 3:
        return None
    rzs = matrix[:3, :3]
    if not np.isfinite(rzs).all():
        return None
    zooms = np.sqrt((rzs**2).sum(axis=0))
    if not (zooms > 0).all():
        return None
    u, singular, vt = np.linalg.svd(rzs / zooms)
    if singular.min() <= singular.max() * 1e-8:
        return None
    # R[w, v]: how far array axis v points along world axis w, after zooms and shears.
    rotation = np.abs(u @ vt)
    signed = u @ vt
    letters: list[str] = [""] * 3
    for _ in range(3):
        world, voxel = np.unravel_index(int(np.argmax(rotation)), rotation.shape)
        letters[voxel] = AXIS_LETTERS[world][1 if signed[world, voxel] > 0 else 0]
        rotation[world, :] = -1.0
        rotation[:, voxel] = -1.0
    return "".join(letters)


@dataclass(frozen=True)
class Reorientation:
    """A permutation and flips of a volume's three spatial axes, from one set of axis codes to another.

    Channels of a 4D ``(X, Y, Z, C)`` volume stay on the last axis.

    Attributes:
        source: Axis codes of the stored array.
        target: Axis codes of the reoriented array.
        axes: ``axes[t]`` is the stored axis that becomes axis ``t``.
        flips: ``flips[t]``: axis ``t`` runs opposite to its stored axis.

    Example:
        >>> r = Reorientation.between("ASR", "RAS")     # e.g. a sagittal series stored slice-last
        >>> r.axes, r.flips, r.shape((10, 20, 30))
        ((2, 0, 1), (False, False, False), (30, 10, 20))
    """

    source: str
    target: str
    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    @classmethod
    def between(cls, source: str, target: str) -> Reorientation:
        """The reorientation from ``source`` codes to ``target`` codes.

        Raises:
            ValueError: Either is not a valid code (:func:`check_axis_codes`).
        """
        source = check_axis_codes(source, where="source orientation")
        target = check_axis_codes(target, where="target orientation")
        stored = {_WORLD_AXIS[c][0]: (axis, _WORLD_AXIS[c][1]) for axis, c in enumerate(source)}
        axes: list[int] = []
        flips: list[bool] = []
        for letter in target:
            world, sign = _WORLD_AXIS[letter]
            axis, stored_sign = stored[world]
            axes.append(axis)
            flips.append(sign != stored_sign)
        return cls(source, target, (axes[0], axes[1], axes[2]), (flips[0], flips[1], flips[2]))

    @property
    def is_identity(self) -> bool:
        """Whether the reoriented array is the stored one."""
        return self.source == self.target

    def shape(self, stored_shape: Sequence[int]) -> tuple[int, ...]:
        """The reoriented array's shape (trailing channel sizes kept)."""
        dims = tuple(int(s) for s in stored_shape)
        return (*(dims[a] for a in self.axes), *dims[3:])

    def spacing(self, stored: Sequence[float]) -> tuple[float, float, float]:
        """The voxel sizes of the reoriented axes."""
        values = [float(v) for v in stored]
        return values[self.axes[0]], values[self.axes[1]], values[self.axes[2]]

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The stored ``array`` (3D, or 4D channels last) in the target orientation (a view)."""
        order = (*self.axes, *range(3, array.ndim))
        out = np.transpose(array, order)
        flipped = tuple(t for t in range(3) if self.flips[t])
        return np.flip(out, flipped) if flipped else out

    def invert(self, array: np.ndarray) -> np.ndarray:
        """A reoriented ``array`` back in the stored orientation (a view): ``invert(apply(a))`` is ``a``."""
        flipped = tuple(t for t in range(3) if self.flips[t])
        unflipped = np.flip(array, flipped) if flipped else array
        inverse = tuple(int(i) for i in np.argsort(self.axes))
        return np.transpose(unflipped, (*inverse, *range(3, array.ndim)))

    def affine(self, stored_affine: ArrayLike, stored_shape: Sequence[int]) -> np.ndarray:
        """The voxel-to-world affine of the reoriented array: every voxel keeps its world position."""
        to_stored = np.zeros((4, 4))
        to_stored[3, 3] = 1.0
        for t, (axis, flip) in enumerate(zip(self.axes, self.flips)):
            # Reoriented index j along t is stored index j, or n - 1 - j when flipped.
            to_stored[axis, t] = -1.0 if flip else 1.0
            to_stored[axis, 3] = float(int(stored_shape[axis]) - 1) if flip else 0.0
        result: np.ndarray = np.asarray(stored_affine, dtype=np.float64) @ to_stored
        return result

    def stored_slice(self, axis: int, index: int, stored_shape: Sequence[int]) -> tuple[int, int]:
        """``(stored axis, stored index)`` of the reoriented array's slice ``index`` along ``axis``."""
        source = self.axes[axis]
        return source, (int(stored_shape[source]) - 1 - index) if self.flips[axis] else index

    def plane(self, stored_plane: np.ndarray, axis: int) -> np.ndarray:
        """A slice read from the stored array (see :meth:`stored_slice`) as the reoriented slice.

        ``stored_plane`` holds the two other stored axes in increasing order (and any channels
        after them); the result holds the reoriented array's other two axes in increasing order.
        """
        rows, cols = (t for t in range(3) if t != axis)
        plane = stored_plane
        if self.axes[rows] > self.axes[cols]:
            plane = np.swapaxes(plane, 0, 1)
        flipped = tuple(d for d, t in enumerate((rows, cols)) if self.flips[t])
        return np.flip(plane, flipped) if flipped else plane


def training_orientations(dataset: SliceDataset) -> dict[str, int]:
    """How many of ``dataset``'s slices come from volumes read in each orientation.

    What a run records (``manifest.json``, ``orientations``) and :func:`inpaintssl.predict` reads:
    a run whose slices all share one orientation predicts new scans in that orientation.
    Reads no image; slices whose volume states no orientation (or from a dataset that cannot
    tell, see :func:`~inpaintssl.data.views.slice_orientation_of`) are not counted.

    Returns:
        Axis codes -> slice count, most slices first; empty when no orientation is known.
    """
    counts = Counter(slice_orientation_of(dataset, i) for i in range(len(dataset)))
    counts.pop(None, None)
    return {str(codes): n for codes, n in counts.most_common()}


def describe_orientations(counts: Mapping[str, int]) -> str:
    """``"LAS: 120 slices, ASL: 40 slices"``: slice counts per orientation, for messages."""
    return ", ".join(f"{codes}: {n} slices" for codes, n in counts.items())


def mixed_orientation_message(counts: Mapping[str, int], *, where: str) -> str | None:
    """A warning for slices from volumes in more than one orientation, or ``None`` for one (or none).

    Example:
        >>> print(mixed_orientation_message({"RAS": 3}, where="data"))
        None
        >>> mixed_orientation_message({"LAS": 120, "ASL": 40}, where="data")[:64]
        'data: the training slices come from volumes in 2 orientations (L'
    """
    if len(counts) < 2:
        return None
    return (
        f"{where}: the training slices come from volumes in {len(counts)} orientations "
        f"({describe_orientations(counts)}), so one "
        "slice_axis cuts them along different anatomical planes or flips them, and the network learns "
        "each as different anatomy; read every volume in one axis order (data.params.orientation of "
        "the nifti and ct datasets, e.g. RAS) or convert the files"
    )
