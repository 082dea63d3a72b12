"""SIGTERM as an exception, so that a stopped process cleans up on its way out, as for Ctrl-C.

Slurm's ``scancel``, a preemption, a time limit and ``kill`` send SIGTERM, whose default ends a
Python process where it stands: a run folder's lock and a study's claim on a run stay behind, and a
job requeued on another node waits until they go stale. Inside :func:`terminate_as_exit`, SIGTERM
raises :class:`Terminated` (a ``SystemExit`` with status 143) in the main thread instead, and the
``with`` blocks it passes release what they hold. The command line wraps every command in it, and
a study's local worker processes each wrap their work.

Example:
    >>> try:
    ...     with terminate_as_exit():
    ...         handler = signal.getsignal(signal.SIGTERM)
    ...         handler(signal.SIGTERM, None)  # what SIGTERM's arrival calls
    ... except Terminated as stopped:
    ...     print(stopped.code, stopped.signal_name)
    143 SIGTERM
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = [
    "Terminated",
    "ctrl_c_redelivered",
    "handler_kept",
    "sigterm_ends_at_once",
    "terminate_as_exit",
    "terminated_during",
]

_REDELIVERY_DELAY_S = 0.01
"""How long after a finaliser dropped SIGTERM's or Ctrl-C's exception the signal is sent again:
long enough for the unraisable hook that saw the drop to have returned, short against any
scheduler's grace period."""


class Terminated(SystemExit):
    """A signal ended the process: exit status ``128 + signal``, as a shell reports it.

    Attributes:
        signum: The signal's number.
        signal_name: Its name, e.g. ``SIGTERM``.

    Example:
        >>> Terminated(15).code, Terminated(15).signal_name
        (143, 'SIGTERM')
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name

    def __reduce__(self) -> tuple[type[Terminated], tuple[int]]:
        # A worker process sends it to its parent pickled; the default rebuilds it from the exit
        # status (143), which is no signal.
        return (type(self), (self.signum,))


@contextlib.contextmanager
def handler_kept(signum: int) -> Iterator[None]:
    """``signum``'s handler as it was before the block, whatever the block set (a library's own).

    Outside the main thread the block changes nothing: only there may a handler be set.

    Example:
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> with handler_kept(signal.SIGTERM):
        ...     _ = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        >>> signal.getsignal(signal.SIGTERM) is before
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signum)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler set outside Python, which cannot be put back
            signal.signal(signum, previous)


@contextlib.contextmanager
def sigterm_ends_at_once() -> Iterator[None]:
    """Within the block, SIGTERM ends the process at once (its default), whatever handler was set.

    For a call that blocks in C++ and retries through interrupted system calls, where a Python
    handler never runs: joining a process group whose rank 0 never comes (it refused the run
    before the group formed) waited out PyTorch's 30-minute store timeout, SIGTERM or not. Such a
    call holds nothing to clean up. Outside the main thread the block changes nothing.

    Example:
        >>> with terminate_as_exit(), sigterm_ends_at_once():
        ...     signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with handler_kept(signal.SIGTERM):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        yield


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (in any other
    thread the block changes nothing: only the main thread may set a signal's handler).

    A signal's handler runs wherever the main thread is, and that may be a finaliser (a
    ``__del__``, a weakref callback such as matplotlib's): Python drops an exception raised there
    after printing "Exception ignored in ...", and the process would go on as if never told to
    stop. The unraisable hook sees such a drop, of :class:`Terminated` or of Ctrl-C's
    ``KeyboardInterrupt``, and the signal is then sent again, to land in the process's own code.
    Once :class:`Terminated` is raised, further SIGTERMs in the block are ignored, so that the
    clean-up it started runs to its end (a ``SIGKILL`` still ends the process at once). The
    previous handler and hook come back when the block ends.

    Example:
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> with terminate_as_exit():
        ...     signal.getsignal(signal.SIGTERM) is before
        False
        >>> signal.getsignal(signal.SIGTERM) is before
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = threading.Event()

    def terminated(signum: int, frame: object) -> None:
        if stopping.is_set():
            # The process is on its way out already: a repeat (``timeout`` signals the command, then
            # its process group; a study's driver passes SIGTERM on to its workers) must not
            # interrupt the clean-up the first one started, such as handing a run back.
            return
        stopping.set()
        _stop_watching_children()
        raise Terminated(signum)

    def signal_of(dropped: BaseException | None) -> int | None:
        signum = dropped.signum if isinstance(dropped, Terminated) else _ctrl_c_of(dropped)
        if signum is not None:
            stopping.clear()  # the dropped one stopped nothing: the signal sent again must count
        return signum

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        with _dropped_signals_sent_again(signal_of):
            yield
    except Exception as error:
        # A SIGTERM sent to a process group (scancel, a scheduler's preemption) ends the DataLoader
        # workers too; their deaths raise a RuntimeError in the clean-up the Terminated started,
        # which took its place: a traceback and exit 1 where schedulers read 143.
        cause = terminated_during(error)
        if cause is None:
            raise
        raise cause from None  # the workers' deaths follow from it: the signal is what ended the run
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_watching_children() -> None:
    """Put SIGCHLD back to its default where Python code watches it (PyTorch's DataLoader does).

    A SIGTERM sent to the process group ends the DataLoader workers too, and their handler raised
    "DataLoader worker ... is killed by signal" in the clean-up, or at exit, with a traceback. The
    process is on its way out: a child's end is no news.
    """
    sigchld = getattr(signal, "SIGCHLD", None)
    if sigchld is not None and callable(signal.getsignal(sigchld)):
        signal.signal(sigchld, signal.SIG_DFL)


def terminated_during(error: BaseException) -> Terminated | None:
    """The :class:`Terminated` whose unwinding ``error`` was raised in, if it was (its context chain).

    Example:
        >>> try:
        ...     try:
        ...         raise Terminated(15)
        ...     finally:
        ...         raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")
        ... except RuntimeError as error:
        ...     terminated_during(error).code
        143
    """
    seen: set[int] = set()
    link: BaseException | None = error.__context__
    while link is not None and id(link) not in seen:
        if isinstance(link, Terminated):
            return link
        seen.add(id(link))
        link = link.__context__
    return None


def _ctrl_c_of(dropped: BaseException | None) -> int | None:
    """SIGINT for a dropped ``KeyboardInterrupt`` while Python's default handler raises it."""
    if (
        isinstance(dropped, KeyboardInterrupt)
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        return signal.SIGINT
    return None


@contextlib.contextmanager
def _dropped_signals_sent_again(signal_of: Callable[[BaseException | None], int | None]) -> Iterator[None]:
    """Within the block, a signal whose exception a finaliser dropped is sent again.

    ``signal_of`` names the signal behind a dropped exception (``None``: not one of ours, passed
    on to the previous unraisable hook, which comes back when the block ends).
    """
    inside = threading.Event()
    previous_hook = sys.unraisablehook

    def redeliver_if_dropped(unraisable: sys.UnraisableHookArgs) -> None:
        signum = signal_of(unraisable.exc_value)
        if signum is None:
            previous_hook(unraisable)
            return
        while True:
            try:
                _send_again_later(signum, inside=inside)
                return
            except (Terminated, KeyboardInterrupt):  # the signal sent again came before this returned
                continue

    sys.unraisablehook = redeliver_if_dropped
    inside.set()
    try:
        yield
    finally:
        inside.clear()
        sys.unraisablehook = previous_hook


def _send_again_later(signum: int, *, inside: threading.Event) -> None:
    """Send ``signum`` to the main thread after :data:`_REDELIVERY_DELAY_S`, if still ``inside``."""
    main_thread = threading.main_thread().ident

    def send() -> None:
        if not inside.is_set():  # once outside, the previous handler would see it: let it be
            return
        if hasattr(signal, "pthread_kill") and main_thread is not None:
            # To the main thread itself, so that a wait it is blocked in (a lock, a sleep)
            # is interrupted and the handler runs at once; raise() would signal this thread.
            signal.pthread_kill(main_thread, signum)
        else:
            signal.raise_signal(signum)

    timer = threading.Timer(_REDELIVERY_DELAY_S, send)
    timer.daemon = True
    timer.start()


@contextlib.contextmanager
def ctrl_c_redelivered() -> Iterator[None]:
    """Within the block, a Ctrl-C whose ``KeyboardInterrupt`` a finaliser dropped is sent again.

    :func:`terminate_as_exit`'s remedy for Ctrl-C alone, for a caller that keeps its own SIGTERM
    handling (a notebook whose stop button interrupts a run). Python runs the SIGINT handler
    wherever the main thread is, and that may be a finaliser or a fork callback (``logging``'s
    lock release after each DataLoader worker is forked): the ``KeyboardInterrupt`` raised there
    is printed as "Exception ignored in ..." and dropped, and the run trains on as if the button
    was never pressed. The unraisable hook sees the drop and sends SIGINT again, to land in the
    run's own code. Only while SIGINT's handler is Python's default (which raises
    ``KeyboardInterrupt``), and only in the main thread; the previous hook comes back on exit.

    Example:
        >>> before = sys.unraisablehook
        >>> with ctrl_c_redelivered():
        ...     sys.unraisablehook is before
        False
        >>> sys.unraisablehook is before
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _dropped_signals_sent_again(_ctrl_c_of):
        yield
