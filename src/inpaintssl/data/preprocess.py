"""Intensity normalisation, CT windows and fitting slices to one size (paper sec. 2.2).

The paper z-scores MR images per volume and CT images per channel, after stacking three HU
windows as channels. Statistics are accumulated slice by slice in float64
(:class:`RunningStats`), so a volume never has to be held in memory to be normalised.

CT windows are ``(width, level)`` pairs in HU; a window keeps ``[level - width/2, level + width/2]``.
The paper's text lists soft tissue 400/50, "bone" 1800/40 and a custom 500/50, but the authors'
code used 1800/400 for bone, the usual bone window (a 1800-wide window centred on 40 HU is mostly
air and fat, and 40 looks like a dropped zero). :data:`DEFAULT_CT_WINDOWS` follows the code,
which produced the published numbers; pass ``windows=`` to use the text's values.

Example:
    >>> import numpy as np, torch
    >>> hu = np.array([[-3024.0, 0.0], [50.0, 1000.0]])
    >>> apply_windows(clip_padding(hu), ((400.0, 50.0),))[0].tolist()
    [[-150.0, 0.0], [50.0, 250.0]]
    >>> fit_to_size(torch.zeros(1, 5, 7), (4, 4), mode="crop_or_pad", kind="image").shape
    torch.Size([1, 4, 4])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from inpaintssl.data.base import DataError

__all__ = [
    "DEFAULT_CT_WINDOWS",
    "HU_FLOOR",
    "ResizeMode",
    "RunningStats",
    "Stats",
    "apply_windows",
    "clip_padding",
    "fit_to_size",
    "parse_windows",
    "root_sum_of_squares",
    "zscore",
]

ResizeMode = Literal["crop_or_pad", "resize"]

DEFAULT_CT_WINDOWS: tuple[tuple[float, float], ...] = ((400.0, 50.0), (1800.0, 400.0), (500.0, 50.0))
"""Soft tissue 400/50, bone 1800/400 (the authors' code), custom 500/50, as ``(width, level)``."""

HU_FLOOR = -1024.0
"""Lowest physical HU kept: scanner padding (-2000, -3024, ...) below it is clipped to it."""

_MIN_RELATIVE_STD = 1e-6
"""A std below this fraction of ``|mean|`` is treated as a constant channel.

Scale-free, unlike an absolute cutoff: a float32 value resolves steps of about 6e-8 of itself,
so such a std is a few steps of rounding, not contrast (E[x^2] - E[x]^2 in float64 leaves a few
1e-7 * |mean| on a constant volume). :class:`RunningStats` reports exactly 0 for a constant
channel anyway; this catches the rounding in statistics computed elsewhere.
"""


@dataclass(frozen=True)
class Stats:
    """Per-channel mean and standard deviation, each of shape ``(C,)``."""

    mean: np.ndarray
    std: np.ndarray


class RunningStats:
    """Accumulate mean and standard deviation over slices in float64.

    The std of a channel whose every value is the same (its smallest equals its largest) is
    exactly 0.0: E[x^2] - E[x]^2 alone leaves rounding there (about 7e-4 for a channel of
    3000.1s over 256 x 256 x 20 voxels).

    Args:
        per_channel: Keep one mean/std per channel (CT) instead of one for all channels (MRI).

    Example:
        >>> import numpy as np
        >>> acc = RunningStats(per_channel=False)
        >>> acc.update(np.array([[[1.0, 3.0]]]))
        >>> acc.update(np.array([[[5.0, 7.0]]]))
        >>> s = acc.result(channels=1)
        >>> float(s.mean[0]), round(float(s.std[0]), 4)
        (4.0, 2.2361)
    """

    def __init__(self, *, per_channel: bool) -> None:
        self.per_channel = per_channel
        self._count = 0
        self._sum: np.ndarray | None = None
        self._sum_sq: np.ndarray | None = None
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None

    def update(self, channels: np.ndarray) -> None:
        """Add a ``(C, H, W)`` slice."""
        flat = channels.reshape(channels.shape[0], -1).astype(np.float64)
        if not self.per_channel:
            flat = flat.reshape(1, -1)
        total = flat.sum(axis=1)
        total_sq = np.einsum("ij,ij->i", flat, flat)
        self._sum = total if self._sum is None else self._sum + total
        self._sum_sq = total_sq if self._sum_sq is None else self._sum_sq + total_sq
        self._count += flat.shape[1]
        if flat.shape[1]:
            low, high = flat.min(axis=1), flat.max(axis=1)
            self._min = low if self._min is None else np.minimum(self._min, low)
            self._max = high if self._max is None else np.maximum(self._max, high)

    def result(self, *, channels: int) -> Stats:
        """Mean and std (population, ddof=0) broadcast to ``channels`` entries."""
        if self._sum is None or self._sum_sq is None or self._count == 0:
            raise ValueError("RunningStats.result() called before any update()")
        mean = self._sum / self._count
        # E[x^2] - E[x]^2 can dip below 0 by rounding on constant data.
        var = np.maximum(self._sum_sq / self._count - mean**2, 0.0)
        std = np.sqrt(var)
        if self._min is not None and self._max is not None:
            std = np.where(self._min == self._max, 0.0, std)
        if mean.shape[0] == 1 and channels > 1:
            mean = np.repeat(mean, channels)
            std = np.repeat(std, channels)
        return Stats(mean=mean, std=std)


def root_sum_of_squares(echoes: Sequence[np.ndarray]) -> np.ndarray:
    """``sqrt(sum_k echo_k**2)`` in float32: the image a qDESS run sees (sec. 2.2), from its echoes.

    One formula for every reader of echoes: the ``skmtea`` dataset and predict's HDF5 reader
    (two echoes), and a multi-echo DICOM series (:class:`~inpaintssl.data.dicom.DicomEchoesRssVolume`,
    any number), so that the same echoes give bit-identical images whichever file holds them.

    Example:
        >>> root_sum_of_squares([np.array([3.0]), np.array([4.0])]).tolist()
        [5.0]
    """
    total = np.zeros_like(echoes[0], dtype=np.float32)
    for echo in echoes:
        values = np.asarray(echo, dtype=np.float32)
        total += values * values
    rss: np.ndarray = np.sqrt(total)
    return rss


def zscore(channels: np.ndarray, stats: Stats) -> np.ndarray:
    """Normalise a ``(C, H, W)`` slice with per-channel ``stats``; returns float32.

    A constant channel is only centred, not divided, so it stays finite: one whose std is 0
    (an all-air CT window; :class:`RunningStats` reports exactly 0 for one value throughout) or
    below ``1e-6 * |mean|`` (rounding, e.g. in statistics stored with a dataset). The rule has no
    absolute scale: an image in any unit, such as an ADC map in m^2/s (std about 4e-10), comes out
    with mean 0 and std 1, the same as the image in mm^2/s.

    Example:
        >>> adc = np.array([[[0.8e-9, 1.6e-9]], [[3e3, 3e3]]])  # a channel in m^2/s, a constant one
        >>> zscore(adc, Stats(mean=np.array([1.2e-9, 3e3]), std=np.array([0.4e-9, 0.0]))).tolist()
        [[[-1.0, 1.0]], [[0.0, 0.0]]]
    """
    constant = (stats.std == 0) | (stats.std < _MIN_RELATIVE_STD * np.abs(stats.mean))
    std = np.where(constant, 1.0, stats.std)
    out: np.ndarray = (channels - stats.mean[:, None, None]) / std[:, None, None]
    return out.astype(np.float32, copy=False)


def clip_padding(hu: np.ndarray, *, floor: float = HU_FLOOR) -> np.ndarray:
    """Clip values below ``floor`` (padding such as -2000 or -3024) up to ``floor``."""
    clipped: np.ndarray = np.maximum(hu, floor)
    return clipped


def parse_windows(windows: Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    """Validate ``(width, level)`` pairs from a config (lists or tuples).

    Raises:
        DataError: No windows, a pair that is not two numbers (such as a flat ``[400, 50]``
            written for ``[[400, 50]]``), a level that is not finite, or a width that is not
            positive and finite.

    Example:
        >>> parse_windows([[400, 50], ("1800", "400")])
        ((400.0, 50.0), (1800.0, 400.0))
        >>> parse_windows([400, 50])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: windows[0]=400: expected a (width, level) pair in HU, ...
    """
    if isinstance(windows, np.ndarray):
        windows = windows.tolist()
    if isinstance(windows, (str, bytes)) or not isinstance(windows, Sequence):
        raise DataError(
            f"windows={windows!r}: expected a list of (width, level) pairs in HU, e.g. [[400, 50]]"
        )
    parsed: list[tuple[float, float]] = []
    for i, window in enumerate(windows):
        if isinstance(window, np.ndarray):
            window = window.tolist()
        # One flat pair [400, 50] for [[400, 50]] is the easy slip; its items have no len().
        if isinstance(window, (str, bytes)) or not isinstance(window, Sequence) or len(window) != 2:
            raise DataError(
                f"windows[{i}]={window!r}: expected a (width, level) pair in HU, such as [400, 50] "
                "(windows is a list of pairs: [[400, 50], [1800, 400]])"
            )
        try:
            if any(isinstance(v, bool) for v in window):
                raise TypeError
            width, level = float(window[0]), float(window[1])
        except (TypeError, ValueError):
            raise DataError(
                f"windows[{i}]={list(window)!r}: expected two numbers (width, level) in HU"
            ) from None
        # A NaN bound makes np.clip return NaN everywhere: every image of the run would be NaN.
        if not (width > 0 and math.isfinite(width)):
            raise DataError(f"windows[{i}]: width={width} must be positive and finite")
        if not math.isfinite(level):
            raise DataError(f"windows[{i}]: level={level} must be a finite HU value")
        parsed.append((width, level))
    if not parsed:
        raise DataError("windows is empty; expected at least one (width, level) pair")
    return tuple(parsed)


def apply_windows(hu: np.ndarray, windows: Sequence[tuple[float, float]]) -> np.ndarray:
    """Stack HU windows as channels: ``(H, W)`` -> ``(len(windows), H, W)`` float32.

    Each channel is ``hu`` clipped to ``[level - width/2, level + width/2]`` (sec. 2.2); the
    z-scoring that follows makes a rescale to [0, 1] unnecessary.
    """
    out = np.empty((len(windows), *hu.shape), dtype=np.float32)
    for c, (width, level) in enumerate(windows):
        np.clip(hu, level - width / 2, level + width / 2, out=out[c], casting="unsafe")
    return out


def _crop_or_pad(x: torch.Tensor, size: tuple[int, int], fill: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    th, tw = size
    out = fill.to(x.dtype).reshape(-1, 1, 1).expand(x.shape[0], th, tw).clone()
    # Centre both ways: the source window and the destination window are offset symmetrically.
    src_r, dst_r = max(0, (h - th) // 2), max(0, (th - h) // 2)
    src_c, dst_c = max(0, (w - tw) // 2), max(0, (tw - w) // 2)
    rows, cols = min(h, th), min(w, tw)
    out[:, dst_r : dst_r + rows, dst_c : dst_c + cols] = x[:, src_r : src_r + rows, src_c : src_c + cols]
    return out


def fit_to_size(
    x: torch.Tensor,
    size: tuple[int, int],
    *,
    mode: ResizeMode,
    kind: Literal["image", "label"],
    antialias: bool = False,
) -> torch.Tensor:
    """Fit a ``(C, H, W)`` tensor to ``size = (H', W')``.

    Args:
        x: Image-like (continuous) or one-hot label tensor.
        size: Target ``(H', W')``.
        mode: ``crop_or_pad`` keeps the pixel grid and centres it (padding images with each
            channel's minimum, the background of a z-scored MR or CT slice, and labels with 0);
            ``resize`` resamples (bilinear for images, nearest for labels so they stay one-hot).
        kind: ``image`` or ``label``.
        antialias: Low-pass an image before shrinking it (``resize`` only), so that detail finer
            than the new pixel spacing is averaged instead of folding into false patterns
            (aliasing); enlarging is unaffected. Off by default, which keeps the training data of
            ``resize`` runs as they were.

    Returns:
        A new ``(C, H', W')`` tensor on ``x``'s device and dtype.

    Example:
        >>> import torch
        >>> lab = torch.zeros(1, 2, 2); lab[0, 0, 0] = 1
        >>> fit_to_size(lab, (4, 4), mode="resize", kind="label")[0].sum().item()
        4.0
    """
    if x.ndim != 3:
        raise ValueError(f"fit_to_size: expected a (C, H, W) tensor, got shape {tuple(x.shape)}")
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "crop_or_pad":
        if kind == "label" or x.numel() == 0:
            fill = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        else:
            fill = x.amin(dim=(1, 2))
        return _crop_or_pad(x, size, fill)
    if mode == "resize":
        if kind == "label":
            return F.interpolate(x[None], size=size, mode="nearest-exact")[0]
        return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=antialias)[0]
    raise ValueError(f"fit_to_size: mode={mode!r}; expected 'crop_or_pad' or 'resize'")
