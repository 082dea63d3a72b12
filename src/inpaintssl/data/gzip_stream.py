"""Read a gzip file's decompressed bytes straight into a caller's buffer, in large steps.

A ``.nii.gz`` volume is decompressed whole on its first read (and by the pre-flight check, on
threads: :mod:`inpaintssl.data.preflight`). nibabel reads it through Python's ``gzip.GzipFile``,
which feeds zlib 128 KiB of the file at a time, copies each piece it gets back out of a new bytes
object and computes the CRC in a second pass over it: 6 cases (12 files of 256x256x64 voxels) of
``benchmarks/bench_preflight_threads.py`` took 4,686 such steps, each taking Python's lock
between zlib's calls. :class:`GzipStream` feeds zlib 4 MiB at a time, has zlib write no more
than the caller still wants (so nothing is held back between calls) and at most 8 MiB at once,
and lets zlib check each member's CRC and length itself (``wbits=31``). The bytes are the ones
``gzip.decompress`` returns; the benchmark's whole-file reads (``read_seconds``) measure the
difference.

It is a read-only, seekable :class:`io.RawIOBase`, so nibabel's array proxy reads from it as from
a file (:class:`~inpaintssl.data.readers.NiftiVolume`). Seeking forward decompresses and discards;
seeking back starts again from the file's beginning. Concatenated members and zero padding after
a member are read as ``gzip`` reads them.

Example:
    >>> import gzip, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.gz"
    >>> _ = path.write_bytes(gzip.compress(b"header|payload"))
    >>> with GzipStream(path) as stream:
    ...     _ = stream.seek(7)
    ...     buffer = bytearray(7)
    ...     stream.readinto(buffer), bytes(buffer), stream.read()
    (7, b'payload', b'')
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Any

__all__ = ["GzipStream"]

_GZIP_WBITS = 31
"""zlib's ``wbits`` for a gzip wrapper: zlib parses the header and checks the CRC and length."""

_PIECE_BYTES = 1 << 23
"""The most zlib writes per step: a label map of mostly background compresses by up to ~1000x,
so 4 MiB of it would otherwise come back as one piece the size of the whole volume, next to the
buffer it is copied into (and zlib's module holds twice a piece while it builds one)."""

_SKIP_BYTES = 1 << 20
"""The largest piece decompressed at once to skip forward on a seek."""


class GzipStream(io.RawIOBase):
    """A gzip file's decompressed bytes, read into the caller's buffers.

    Args:
        path: The gzip file.
        chunk_bytes: Compressed bytes read from the file per step.

    Raises:
        EOFError: (on reads) the file ends inside a member, as ``gzip`` raises it.
        gzip.BadGzipFile: (on reads) the data is corrupt or a member's CRC or length does not
            match (zlib's own message in parentheses).

    Example:
        >>> import gzip, pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.gz"
        >>> _ = path.write_bytes(gzip.compress(bytes(range(10))) + gzip.compress(b"!"))
        >>> with GzipStream(path, chunk_bytes=4) as stream:
        ...     stream.read()
        b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\t!'
    """

    def __init__(self, path: str | Path, *, chunk_bytes: int = 1 << 22) -> None:
        super().__init__()
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes={chunk_bytes}; expected 1 or more bytes per step")
        self.name = str(path)
        self._chunk_bytes = chunk_bytes
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close(), as io's own readers do
        self._restart()

    def _restart(self) -> None:
        self._file.seek(0)
        self._decompressor: Any = None  # the current member's; None before the first
        self._input = b""  # compressed bytes read from the file that zlib has not taken yet
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._position

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next decompressed bytes; fewer only at the end of the data."""
        self._check_open()
        with memoryview(buffer) as view, view.cast("B") as out:
            filled = 0
            while filled < len(out):
                piece = self._next(min(len(out) - filled, _PIECE_BYTES))
                if not piece:
                    break
                out[filled : filled + len(piece)] = piece
                filled += len(piece)
                del piece  # not held while zlib builds the next one
        self._position += filled
        return filled

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation(f"{self.name}: a gzip stream seeks from its start or position only")
        if offset < 0:
            raise ValueError(f"{self.name}: seek to {offset}; expected a position of 0 or more")
        if offset < self._position:
            self._restart()
        self._skip(offset - self._position)
        self._position = offset  # past the end too, as a file's position may be; reads there return nothing
        return offset

    def skip_to_end(self) -> int:
        """Decompress the rest of the file, discarding it, so that every member's CRC and length
        are checked (a reader that stops at the last byte it wants leaves the trailer unread).

        Returns:
            How many decompressed bytes were skipped.

        Raises:
            EOFError: The file ends inside a member.
            gzip.BadGzipFile: Corrupt data, or a CRC or length that does not match.
        """
        self._check_open()
        return self._skip(None)

    def _skip(self, count: int | None) -> int:
        """Read ``count`` bytes (``None``: all that is left) into scratch; returns how many there were."""
        scratch = memoryview(bytearray(_SKIP_BYTES if count is None else min(_SKIP_BYTES, count)))
        skipped = 0
        while count is None or skipped < count:
            wanted = len(scratch) if count is None else min(len(scratch), count - skipped)
            got = self.readinto(scratch[:wanted])
            skipped += got
            if got < wanted:
                break  # the end: reads there return nothing, as a file's do
        return skipped

    def close(self) -> None:
        # A stream whose __init__ failed (no such file, a bad chunk_bytes) has no file; its finaliser
        # still closes it, and from Python 3.13 on reports what that close raises.
        file = getattr(self, "_file", None)
        if not self.closed and file is not None:
            file.close()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self.name}: I/O operation on a closed gzip stream")

    def _next(self, limit: int) -> bytes:
        """Up to ``limit`` decompressed bytes; empty only at the end of the last member."""
        while True:
            if (self._decompressor is None or self._decompressor.eof) and not self._start_member():
                return b""
            if not self._input:
                self._input = self._file.read(self._chunk_bytes)
                if not self._input:
                    # gzip's own words: callers that name the file (Volume.read) add the path.
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            try:
                piece: bytes = self._decompressor.decompress(self._input, limit)
            except zlib.error as exc:
                raise gzip.BadGzipFile(_what_failed(exc)) from exc
            # At a member's end what follows is in unused_data; unconsumed_tail may still hold a
            # stale copy of it from an earlier call cut short by the limit (CPython keeps it).
            self._input = b"" if self._decompressor.eof else self._decompressor.unconsumed_tail
            if piece:
                return piece

    def _start_member(self) -> bool:
        """Start decompressing the next member; ``False`` at the end of the file."""
        after_member = self._decompressor is not None
        if after_member:
            self._input = self._decompressor.unused_data
        while True:
            if after_member:
                # Zero padding may follow a member (as gzip reads it); before the first it is an error.
                self._input = self._input.lstrip(b"\x00")
            if self._input:
                break
            self._input = self._file.read(self._chunk_bytes)
            if not self._input:
                return False
        self._decompressor = zlib.decompressobj(wbits=_GZIP_WBITS)
        return True


def _what_failed(exc: zlib.error) -> str:
    """zlib's error in gzip's words (``error: Error -3 ...`` says little in a message about a file)."""
    text = str(exc)
    if "incorrect data check" in text:
        return f"CRC check failed: the data does not match the CRC-32 the file stores (zlib: {text})"
    if "incorrect length check" in text:
        return f"length check failed: the data does not match the length the file stores (zlib: {text})"
    return f"corrupt gzip data (zlib: {text})"
