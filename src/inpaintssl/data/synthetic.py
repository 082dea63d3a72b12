"""A deterministic synthetic dataset of textured shapes, for tests, examples and install checks.

Each slice is a smooth noisy background with a few discs and squares of distinct intensity
and texture; the labels are the discs (class ``disc``) and the squares (class ``square``).
Everything is a pure function of ``(seed, split, index)``, so no file is read or written.

Example:
    >>> ds = SyntheticShapes(split="train", num_images=4, size=(32, 32), seed=0)
    >>> item = ds[0]
    >>> tuple(item["image"].shape), tuple(item["label"].shape), ds.class_names
    ((1, 32, 32), (2, 32, 32), ('disc', 'square'))
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.preflight import CaseCheck
from inpaintssl.registry import DATASETS

__all__ = ["SyntheticShapes"]

_SPLIT_OFFSETS: Mapping[str, int] = MappingProxyType(
    {"train": 0, "val": 1_000_000, "test": 2_000_000, "unlabelled": 3_000_000}
)


_MIN_SIDE = 8
"""Smallest height and width of a slice (``params.size``)."""


def _whole(value: Any, *, field: str, minimum: int) -> int:
    """``value`` as an ``int`` if it is a whole number (``3`` or ``3.0``) of at least ``minimum``.

    Example:
        >>> _whole(2.0, field="num_images", minimum=1)
        2
        >>> _whole(2.5, field="channels", minimum=1)
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: synthetic: params.channels=2.5: expected a whole number of at least \
1; found a float
    """
    if not _is_whole(value):
        least = f" of at least {minimum}" if minimum > 0 else ""
        raise DataError(
            f"synthetic: params.{field}={value!r}: expected a whole number{least}; found {_a(value)}"
        )
    if int(value) < minimum:
        raise DataError(f"synthetic: params.{field}={value!r}: expected a whole number of at least {minimum}")
    return int(value)


def _size(size: Any) -> tuple[int, int]:
    """``size`` as ``(H, W)``: two whole numbers of at least :data:`_MIN_SIDE`.

    Example:
        >>> _size([32, 40.0])
        (32, 40)
        >>> _size(32)
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: synthetic: params.size=32: expected two whole numbers [H, W] (size \
must be at least 8x8); found an int; for a square slice write [32, 32]
    """
    expected = f"expected two whole numbers [H, W] (size must be at least {_MIN_SIDE}x{_MIN_SIDE})"
    if isinstance(size, (str, bytes)) or not isinstance(size, (list, tuple)):
        side = int(size) if isinstance(size, int) and not isinstance(size, bool) else None
        hint = f"; for a square slice write [{side}, {side}]" if side is not None else ""
        raise DataError(f"synthetic: params.size={size!r}: {expected}; found {_a(size)}{hint}")
    shown = list(size)
    if len(size) != 2:
        raise DataError(f"synthetic: params.size={shown!r}: {expected}; found {len(size)} value(s)")
    for value in size:
        if not _is_whole(value):
            raise DataError(f"synthetic: params.size={shown!r}: {expected}; found {value!r} ({_a(value)})")
    height, width = int(size[0]), int(size[1])
    if min(height, width) < _MIN_SIDE:
        raise DataError(f"synthetic: params.size={shown!r}: {expected}; found a side of {min(height, width)}")
    return height, width


def _is_whole(value: Any) -> bool:
    """Whether ``value`` is a whole number, ``3`` or ``3.0`` (not ``True``: a mistake, not 1)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer()
    )


def _a(value: Any) -> str:
    """The type of ``value`` in words, for messages: ``a float``, ``an int``."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


@DATASETS.register("synthetic")
class SyntheticShapes(SliceDataset):
    """Textured discs and squares on a noisy background.

    Not data of the paper: a stand-in for its labelled 2D slice datasets (sec. 2.1), so that every
    experiment the library runs (pretraining sec. 2.4, the design-choice grids of sec. 2.5, the
    data-scaling and clinical comparisons of sec. 2.6-2.7) can be tried in seconds without data,
    as the tests, examples and ``docs/studies.rst`` do. Its numbers say nothing about the paper's
    findings.

    Args:
        split: ``train``, ``val``, ``test`` or ``unlabelled`` (disjoint random streams).
        labelled: Whether items carry ``label`` (``unlabelled`` is never labelled).
        num_images: Number of slices in this split (``num_val``/``num_test`` override it for
            those splits).
        num_val: Slices in the ``val`` split.
        num_test: Slices in the ``test`` split.
        size: ``(H, W)``, two whole numbers of at least 8.
        channels: Image channels (each a scaled copy with independent noise).
        shapes_per_image: Shapes drawn per slice.
        slices_per_volume: Consecutive slices grouped into one ``volume_id``.
        seed: Stream seed.

    Raises:
        DataError: An unknown split; a count (``num_images``, ``num_val``, ``num_test``,
            ``channels``, ``slices_per_volume``, ``shapes_per_image``) that is not a whole number,
            or is below 1 (0 for ``shapes_per_image``) where it is used; a ``size`` that is not two
            whole numbers of at least 8. The message names the parameter, what was expected and
            what was found (a float such as ``32.7`` was cut to 32).
    """

    def __init__(
        self,
        *,
        split: str = "train",
        labelled: bool = True,
        num_images: int = 64,
        num_val: int | None = None,
        num_test: int | None = None,
        size: tuple[int, int] | list[int] = (32, 32),
        channels: int = 1,
        shapes_per_image: int = 3,
        slices_per_volume: int = 1,
        seed: int = 0,
    ) -> None:
        if split not in _SPLIT_OFFSETS:
            raise DataError(f"synthetic: split must be one of {sorted(_SPLIT_OFFSETS)}, got {split!r}")
        num_images = _whole(num_images, field="num_images", minimum=0)
        num_val = None if num_val is None else _whole(num_val, field="num_val", minimum=0)
        num_test = None if num_test is None else _whole(num_test, field="num_test", minimum=0)
        given = {"val": num_val, "test": num_test}.get(split)
        count = num_images if given is None else given  # 0 is a count, not "unset"
        if count <= 0:
            field = {"val": "num_val", "test": "num_test"}.get(split) if given is not None else "num_images"
            raise DataError(
                f"synthetic: params.{field}={count} would leave split {split!r} with no images; expected "
                "at least 1"
            )
        height, width = _size(size)
        channels = _whole(channels, field="channels", minimum=1)
        slices_per_volume = _whole(slices_per_volume, field="slices_per_volume", minimum=1)
        shapes_per_image = _whole(shapes_per_image, field="shapes_per_image", minimum=0)
        seed = _whole(seed, field="seed", minimum=0)  # NumPy's seeds are whole numbers >= 0
        self.split = split
        self.count = count
        self.size = (height, width)
        self.in_channels = channels
        self.shapes_per_image = shapes_per_image
        self.seed = seed
        self.class_names = ("disc", "square") if labelled and split != "unlabelled" else ()
        self.volume_ids = [f"{split}{i // slices_per_volume:04d}" for i in range(count)]
        self._slices_per_volume = slices_per_volume

    def __len__(self) -> int:
        return self.count

    def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
        """No checks: slices are generated in memory, there is no stored data to go bad."""
        return []

    def _draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, _SPLIT_OFFSETS[self.split] + index])
        h, w = self.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        background = (
            0.3 * np.sin(xx / w * rng.uniform(2, 6) + rng.uniform(0, 6)) * np.cos(yy / h * rng.uniform(2, 6))
        )
        labels = np.zeros((2, h, w), dtype=bool)
        image = background.astype(np.float32)
        for _ in range(self.shapes_per_image):
            kind = int(rng.integers(0, 2))
            radius = rng.uniform(0.1, 0.2) * min(h, w)
            cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
            if kind == 0:
                region = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
                texture = 1.0 + 0.2 * np.sin(xx / 2.0)
            else:
                region = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
                texture = -1.0 + 0.2 * np.cos(yy / 2.0)
            image = np.where(region, texture, image).astype(np.float32)
            labels[kind] |= region
            labels[1 - kind] &= ~region
        noise = rng.normal(0.0, 0.15, size=(self.in_channels, h, w)).astype(np.float32)
        scales = np.linspace(1.0, 0.6, self.in_channels, dtype=np.float32)[:, None, None]
        stacked = image[None] * scales + noise
        stacked = (stacked - stacked.mean()) / (stacked.std() + 1e-6)
        return stacked.astype(np.float32), labels

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.count:
            raise IndexError(f"synthetic {self.split}: index {index} out of range [0, {self.count})")
        image, labels = self._draw(index)
        item: dict[str, Any] = {
            "image": torch.from_numpy(image),
            "volume_id": self.volume_ids[index],
            "slice_index": index % self._slices_per_volume,
            "spacing": torch.ones(3, dtype=torch.float64),
        }
        if self.class_names:
            item["label"] = torch.from_numpy(labels.astype(np.float32))
        return item
