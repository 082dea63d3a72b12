"""The next input read on a background thread while the current case is predicted.

Every input was read in full by its check and released again
(:mod:`~inpaintssl.inference.preparation`), so its case reads it a second time. A ``.nii.gz`` or
``.npz`` input is decompressed whole on that read, work the CPU does alone: on a GPU the card would
wait for it before every case. zlib releases the GIL while it decompresses, so a reader thread
overlaps the read of the next input with the prediction of the current one
(:meth:`~inpaintssl.data.readers.Volume.preload`). One input is read ahead at a time: at most two
inputs' images are in memory, the one being predicted and the next. ``predict`` reads ahead when
it predicts on a GPU (``read_ahead="auto"``): on the CPU the prediction keeps every core busy, and
reading ahead was no faster there beyond the noise (0.98x, 1.00x and 1.03x in three runs on a
2-core Xeon, where the reads were 3 % of the time; ``benchmarks/bench_predict_writes.py``).
Inputs whose reads take turns on one lock (HDF5, DICOM:
:attr:`~inpaintssl.data.readers.Volume.reads_on_threads` is ``False``) are read in their own
turn, as they would only slow the prediction beside them.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from inpaintssl.data.readers import NumpyVolume
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "scan.npz"
    >>> np.savez(p, image=np.ones((4, 4, 3)))
    >>> volume = NumpyVolume(p)
    >>> with ReadAhead() as reads:
    ...     reads.start(volume)  # returns at once; the archive is decompressed on the thread
    ...     reads.wait(volume)  # ready: reads of it take no decompression
    >>> float(volume.read(2).sum())
    16.0
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Literal

from inpaintssl.data.readers import Volume

__all__ = ["ReadAhead", "ReadAheadMode"]

ReadAheadMode = Literal["auto", "on", "off"]
"""``predict(read_ahead=...)``: ``auto`` reads ahead when predicting on a GPU, not on the CPU."""


class ReadAhead:
    """Reads one volume at a time ahead on a thread of its own (:meth:`Volume.preload`).

    Use it as a context manager. Leaving it waits for the read in flight, so that no thread reads
    past the block, and releases that volume, which no case will use; when the block is left by
    an exception, the read's own failure is dropped in favour of the exception under way.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inpaintssl-read-ahead")
        self._pending: tuple[Volume, Future[None]] | None = None

    def start(self, volume: Volume) -> None:
        """Begin reading ``volume`` on the thread, unless its reads take turns on a lock.

        Raises:
            RuntimeError: A read started before has not been waited for (one at a time).
        """
        if self._pending is not None:
            raise RuntimeError(
                f"a read ahead of {self._pending[0].path} is still in flight; wait for it before "
                f"starting the read of {volume.path}"
            )
        if volume.reads_on_threads:
            self._pending = (volume, self._executor.submit(volume.preload))

    def wait(self, volume: Volume) -> None:
        """Wait for the read ahead of ``volume``, if one was started; raise what it raised.

        A volume not read ahead (nothing started, or started for another) is read by its case's
        own first read, as without read-ahead.
        """
        if self._pending is None or self._pending[0] is not volume:
            return
        pending, self._pending = self._pending[1], None
        pending.result()

    def drop(self, volume: Volume) -> None:
        """Release ``volume``, whose case will not read it, once any read ahead of it has finished
        (what that read raised is dropped: no case wants its data)."""
        if self._pending is not None and self._pending[0] is volume:
            pending, self._pending = self._pending[1], None
            pending.exception()
        volume.release()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._pending is not None:
                self.drop(self._pending[0])
        finally:
            self._executor.shutdown(wait=True)
