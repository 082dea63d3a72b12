"""Progress reports that suit where stderr goes: a live bar on a terminal, plain lines in a log file.

A tqdm bar redraws itself with carriage returns and cursor codes; in a cluster job's log (stderr
redirected to a file) that is thousands of overwritten fragments per epoch. Every progress report
in the package is made here, and the choice is made once, when the report starts:

- stderr is a terminal, or the code runs in a Jupyter kernel: a tqdm bar (``tqdm.auto``);
- otherwise: reports made with ``lines=True`` (one per epoch, one per case) print one plain line
  per step to stderr, with no ``\\r`` and no escape codes; the others (the steps inside an epoch,
  the batches of an evaluation) print nothing.

Example:
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     bar = progress_bar(total=2, desc="pretrain", unit="epoch", lines=True)
    ...     bar.set_postfix(val="0.5")
    ...     bar.update(1)
    ...     bar.close()
    >>> err.getvalue().split(" [")[0]
    'pretrain: epoch 1/2, val=0.5'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

__all__ = ["ProgressBar", "live_progress", "progress_bar", "progress_iter"]

T = TypeVar("T")


class ProgressBar(Protocol):
    """What the package's code calls on a progress report."""

    def update(self, n: int = 1) -> object:
        """Count ``n`` more steps done."""

    def set_postfix(self, *, refresh: bool = True, **values: Any) -> None:
        """Show ``values`` (e.g. losses) after the count."""

    def close(self) -> None:
        """End the report."""


def _in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def live_progress() -> bool:
    """Whether a redrawing bar suits stderr now: a terminal, or a Jupyter kernel (which draws widgets)."""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        terminal = bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed or detached stream
        terminal = False
    return terminal or _in_jupyter()


class _LineProgress:
    """One plain line per :meth:`update` to the current stderr: ``fit: epoch 3/10, val=0.4 [2.1 s]``."""

    def __init__(self, *, total: int | None, desc: str, unit: str, initial: int) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.postfix: dict[str, Any] = {}
        self.started = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        stream = sys.stderr
        if stream is None:
            # Python started with stderr closed (`2>&-`): print(file=None) would write the line to
            # stdout, into the JSON summary a pipeline reads there.
            return
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        values = "".join(f", {key}={value}" for key, value in self.postfix.items())
        elapsed = time.perf_counter() - self.started
        print(f"{self.desc}: {self.unit} {count}{values} [{elapsed:.1f} s]", file=stream, flush=True)

    def set_postfix(self, *, refresh: bool = True, **values: Any) -> None:
        self.postfix = dict(values)

    def close(self) -> None:
        pass


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *, refresh: bool = True, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(
    *,
    total: int | None,
    desc: str,
    unit: str = "it",
    initial: int = 0,
    leave: bool = False,
    disable: bool = False,
    lines: bool = False,
) -> ProgressBar:
    """A progress report counted with :meth:`~ProgressBar.update`.

    Args:
        total: Steps expected (``None``: unknown).
        desc: What is progressing (``"pretrain"``, ``"evaluate"``).
        unit: What one step is (``"epoch"``, ``"case"``).
        initial: Steps already done (a resumed run).
        leave: Keep a terminal bar on screen when it closes.
        disable: Report nothing at all (``--quiet``, a non-main rank).
        lines: Where stderr is not a terminal, print one plain line per step; without it, print
            nothing there (fine-grained steps would flood a log).
    """
    if disable:
        return _Silent()
    if live_progress():
        bar: ProgressBar = tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave)
        return bar
    if lines:
        return _LineProgress(total=total, desc=desc, unit=unit, initial=initial)
    return _Silent()


def progress_iter(
    iterable: Iterable[T],
    *,
    desc: str,
    unit: str = "it",
    total: int | None = None,
    leave: bool = True,
    disable: bool = False,
    lines: bool = False,
) -> Iterator[T]:
    """Iterate over ``iterable`` while reporting progress as :func:`progress_bar` does.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     list(progress_iter("ab", desc="runs", unit="run", total=2, lines=True))
        ['a', 'b']
        >>> "\\r" in err.getvalue(), err.getvalue().count("\\n")
        (False, 2)
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = progress_bar(total=total, desc=desc, unit=unit, leave=leave, disable=disable, lines=lines)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
