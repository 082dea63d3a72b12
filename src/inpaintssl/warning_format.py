"""The command line's form of the library's warnings: ``inpaintssl <command>: warning: <message>``.

Python's default form names the library's source line and repeats the ``warnings.warn`` call,
which tells a command-line user nothing. The ``inpaintssl`` command installs this form for the
library's own ``UserWarning`` and ``FutureWarning``: those raised in its files, those of a
category it defines wherever they point, and those :func:`warn_each_time` raised, which point at
the code that made the call (under the command line, Python's own ``runpy``). Other packages' warnings keep
their default form, whose source line helps report them. Only the format changes: filters, and callers that
record warnings (``warnings.catch_warnings(record=True)``, pytest), see every warning as before.

Processes a command starts (a study's ``--workers``) begin with Python's defaults, so the study
runner asks :func:`command_in_effect` and installs the same form in each of them.

Example:
    >>> import warnings
    >>> with command_warnings("pretrain"):
    ...     command_in_effect()
    'pretrain'
    >>> command_in_effect() is None
    True
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

__all__ = [
    "caller_stacklevel",
    "command_in_effect",
    "command_warnings",
    "held_warnings",
    "install_command_warnings",
    "warn_each_time",
]

_PACKAGE = str(Path(__file__).resolve().parent)
_INSIDE = _PACKAGE + os.sep


def caller_stacklevel() -> int:
    """``stacklevel`` for a warning raised in this package that points at the first caller outside it.

    Call it in the function that calls :func:`warnings.warn`. A fixed ``stacklevel`` counts the
    frames between the warning and the user's call, and points at a line of the library when a
    call path gains or loses one; this counts them as they are. Under the command line the first
    frame outside the package is Python's own ``runpy``, which :func:`command_warnings` does not
    show.

    Example:
        >>> caller_stacklevel() >= 1
        True
    """
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.realpath(frame.f_code.co_filename).startswith(_INSIDE):
        frame, level = frame.f_back, level + 1
    return level


# Packages whose frames a per-call warning passes over: the library's own, pydantic's, which
# calls the config validators that warn, and contextlib's, which enters the library's context
# managers (a run session warns as it starts, from contextlib's __enter__).
_PASSED_OVER = ("inpaintssl", "pydantic", "pydantic_core", "contextlib")

# The attribute :func:`warn_each_time` sets on the warnings it raises.
_RAISED_HERE = "inpaintssl_warn_each_time"

# Per thread: the list :func:`held_warnings` collects this thread's per-call warnings in, if any.
_HOLDING = threading.local()


@contextlib.contextmanager
def held_warnings() -> Iterator[list[tuple[str, type[Warning]]]]:
    """Hold this thread's :func:`warn_each_time` warnings as ``(message, category)``; raise none of them.

    Work run on a thread pool (the pre-flight check's cases, :mod:`inpaintssl.data.preflight`)
    would raise its warnings from a stack that holds no caller: their location would be
    :mod:`threading`'s, and their order the order the threads happened to finish in. Held, they are
    raised again by the thread that waits for the work, with :func:`warn_each_time`, in the order
    the work was asked for, at that thread's caller, where the filters apply as they would have.
    Only this thread's warnings are held; blocks nest, the inner one holding its own.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as seen:
        ...     warnings.simplefilter("always")
        ...     with held_warnings() as held:
        ...         warn_each_time("case 'a': few distinct values", UserWarning)
        >>> seen, held
        ([], [("case 'a': few distinct values", <class 'UserWarning'>)])
    """
    outer = getattr(_HOLDING, "held", None)
    held: list[tuple[str, type[Warning]]] = []
    _HOLDING.held = held
    try:
        yield held
    finally:
        _HOLDING.held = outer


def warn_each_time(message: str, category: type[Warning]) -> None:
    """Warn about what this call did, at the first caller outside inpaintssl and pydantic, on every call.

    :func:`warnings.warn` remembers each message it showed in the calling module, and its
    ``default`` action does not show the same message from the same line again until the filters
    change: a notebook cell run a second time, or a loop, would see the warning about its config
    the first time only. A warning about one call's input is news on every call, so none is
    remembered here; the filters still apply (``ignore``, ``error``, ``once``). Frames of pydantic
    (which calls the config validators) and of contextlib (which enters the library's context
    managers) are passed over as the library's are. Inside a :func:`held_warnings` block of the
    calling thread the warning is held there instead, to be raised again by the thread that waits.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as seen:
        ...     warnings.simplefilter("default")
        ...     for _ in range(2):
        ...         warn_each_time("run.amp='bf16' has no effect", UserWarning)
        >>> len(seen)
        2
    """
    held: list[tuple[str, type[Warning]]] | None = getattr(_HOLDING, "held", None)
    if held is not None:
        held.append((message, category))
        return
    frame = sys._getframe(1)
    while (
        frame.f_back is not None
        and str(frame.f_globals.get("__name__", "")).partition(".")[0] in _PASSED_OVER
    ):
        frame = frame.f_back
    warning = category(message)
    # The command line's form needs to know the warning is the library's: its location is the
    # caller's, outside the package, and its category may be Python's own UserWarning.
    setattr(warning, _RAISED_HERE, True)
    # Python's warn_explicit asks the frame's loader for the source line by the module's name and
    # lets its error out: `python -c` (a built-in loader) and `python -m pkg.mod` (pkg.mod's
    # loader, for __main__) refuse it. linecache asks the same loader, for a zip-imported module
    # too, and gives up quietly; the line shown is then read from its cache.
    linecache.getlines(frame.f_code.co_filename, frame.f_globals)
    warnings.warn_explicit(
        warning,
        category,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=str(frame.f_globals.get("__name__", "<string>")),
        registry=None,  # no memory of what was shown: see above
    )


class _Formatter(Protocol):
    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: str | None = None,
    ) -> str: ...


def _library_category(category: type[Warning]) -> bool:
    """Whether ``category`` is a warning class inpaintssl defines (its module is in the package)."""
    module = getattr(category, "__module__", "")
    return module == "inpaintssl" or module.startswith("inpaintssl.")


def _command_form(command: str, default: _Formatter) -> _Formatter:
    def short(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
    ) -> str:
        if issubclass(category, (UserWarning, FutureWarning)) and (
            filename.startswith(_INSIDE)
            or _library_category(category)
            or getattr(message, _RAISED_HERE, False)
        ):
            return f"inpaintssl {command}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    short.inpaintssl_command = command  # type: ignore[attr-defined]
    return short


def install_command_warnings(command: str) -> None:
    """Print the library's warnings in this process as ``inpaintssl <command>: warning: ...``.

    For a process that runs on behalf of a command until it exits (a worker process); a command
    itself uses :func:`command_warnings`, which restores the previous form.
    """
    warnings.formatwarning = _command_form(command, warnings.formatwarning)


@contextlib.contextmanager
def command_warnings(command: str) -> Iterator[None]:
    """The command line's form of the library's warnings inside the ``with`` block."""
    default = warnings.formatwarning
    warnings.formatwarning = _command_form(command, default)
    try:
        yield
    finally:
        warnings.formatwarning = default


def command_in_effect() -> str | None:
    """The command whose warning form is installed in this process, or ``None`` (Python's default)."""
    command = getattr(warnings.formatwarning, "inpaintssl_command", None)
    return command if isinstance(command, str) else None
