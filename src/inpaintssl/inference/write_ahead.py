"""A case's prediction files written on a background thread while the next case is predicted.

Writing a ``.nii.gz`` is gzip compression, which the CPU does alone: on a GPU the card would wait
for it after every case. zlib releases the GIL while it compresses, so a writer thread overlaps
the write of one case with the reading and prediction of the next. One write is in flight at a
time: :meth:`WriteAhead.submit` first waits for the one before, so at most one case's outputs
(its label map and any probability maps) are held beside the case being predicted, and a failed
write stops ``predict`` at the next case, with the write's own error (which names the file).

Example:
    >>> with WriteAhead() as writes:
    ...     writes.submit(print, "case 1 written")
    ...     writes.wait()
    case 1 written
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

__all__ = ["WriteAhead"]


class WriteAhead:
    """Runs one write at a time on a thread of its own; :meth:`submit` waits for the previous one.

    Use it as a context manager: leaving it waits for the last write. When the block is left by
    an exception, the last write is still waited for (so that nothing writes into a folder being
    removed), and its own failure is dropped in favour of the exception already on its way.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inpaintssl-write")
        self._pending: Future[Any] | None = None

    def submit(self, write: Callable[..., Any], /, *args: Any) -> None:
        """Wait for the write before (raising its error), then start ``write(*args)``."""
        self.wait()
        self._pending = self._executor.submit(write, *args)

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> WriteAhead:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                self.wait()
            elif self._pending is not None:
                self._pending.exception()  # finished, whatever it raised: the error under way wins
        finally:
            self._executor.shutdown(wait=True)
