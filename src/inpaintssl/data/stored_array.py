"""What the MetaImage and NRRD readers share: one array, described by a text header, stored at an
offset of a data file, raw (memory-mapped) or encoded (read whole and kept).

:class:`StoredArrayVolume` reads it; a format's reader parses its header into
:attr:`~StoredArrayVolume._data_file`, :attr:`~StoredArrayVolume._data_offset` and
:attr:`~StoredArrayVolume._dtype`, and says how its bytes are laid out (:meth:`_written_shape`,
:meth:`_as_stored`), whether they are encoded (:meth:`_encoded`, :meth:`_decode`) and what a short
file is told (:meth:`_short_data`). See :mod:`inpaintssl.data.metaimage` and
:mod:`inpaintssl.data.nrrd`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.readers import Volume

__all__ = ["StoredArrayVolume", "first_non_number"]


class StoredArrayVolume(Volume):
    """A volume whose array lies in :attr:`_data_file` from byte :attr:`_data_offset` on.

    Raw data in this machine's byte order is memory-mapped, so a slice read touches that slice
    only. Encoded data, and big-endian data (turned to this machine's order once: torch takes no
    other), is read whole on the first read and kept, as a ``.nii.gz`` is
    (:meth:`~inpaintssl.data.readers.Volume._kept`). Either way a file shorter than the header
    says is refused, naming it, when the data is first read.
    """

    _data_file: Path
    _data_offset: int
    _dtype: np.dtype[Any]

    @abstractmethod
    def _written_shape(self) -> tuple[int, ...]:
        """The array as written, slowest axis first (C order)."""

    @abstractmethod
    def _as_stored(self, data: np.ndarray) -> np.ndarray:
        """An array of :meth:`_written_shape` as this volume's stored shape, a view."""

    @abstractmethod
    def _encoded(self) -> bool:
        """Whether the data must be decoded (:meth:`_decode`) rather than mapped."""

    @abstractmethod
    def _short_data(self, available: int, needed: int) -> DataError:
        """The error for data of ``available`` bytes where ``needed`` are described."""

    def _decode(self, data: bytes) -> bytes | np.ndarray:
        """The array's bytes from what the file holds after the offset (raw: those bytes).

        A format whose encoding is text returns the parsed values instead, in this machine's
        byte order.
        """
        return data

    def _data_bytes(self) -> int:
        return math.prod(self._written_shape()) * self._dtype.itemsize

    def _reads_files_per_slice(self) -> bool:
        return not self._encoded() and self._dtype.isnative

    def _array(self) -> Any:
        if self._encoded() or not self._dtype.isnative:
            return self._kept(self._read_whole)
        cache = self.__dict__.get("_cache")
        if cache is None:
            available = self._data_file.stat().st_size - self._data_offset
            if available < self._data_bytes():
                raise self._short_data(available, self._data_bytes())
            mapped = np.memmap(
                self._data_file,
                dtype=self._dtype,
                mode="r",
                offset=self._data_offset,
                shape=self._written_shape(),
            )
            cache = self._as_stored(mapped)
            self.__dict__["_cache"] = cache
        return cache

    def _read_whole(self) -> np.ndarray:
        """The whole array, decoded, in this machine's byte order."""
        with self._data_file.open("rb") as handle:
            handle.seek(self._data_offset)
            decoded = self._decode(handle.read())
        available = decoded.size * self._dtype.itemsize if isinstance(decoded, np.ndarray) else len(decoded)
        if available < self._data_bytes():
            raise self._short_data(available, self._data_bytes())
        count = math.prod(self._written_shape())
        if isinstance(decoded, np.ndarray):
            flat = decoded
        else:
            flat = np.frombuffer(decoded, dtype=self._dtype, count=count)
        native = flat[:count].astype(self._dtype.newbyteorder("="), copy=False)
        return self._as_stored(native.reshape(self._written_shape()))


def first_non_number(words: Sequence[str]) -> int:
    """The index of the first of ``words`` that is no number: where a text array's parse failed.

    MetaImage's text data (``BinaryData = False``) and NRRD's ``ascii`` encoding hold their voxels
    as words; NumPy's refusal of the array names none of them.

    Example:
        >>> first_non_number(["1", "2.5", "five", "nan"])
        2
    """
    for index, word in enumerate(words):
        try:
            float(word)
        except ValueError:
            return index
    raise ValueError("every word is a number")
