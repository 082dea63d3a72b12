"""SIGTERM as an exception: what crosses a process boundary, and where the handler is set."""

from __future__ import annotations

import pickle
import signal
import sys
import threading

import pytest

from inpaintssl.signals import Terminated, terminate_as_exit


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_terminated_survives_the_pickling_a_worker_process_sends_it_back_with(signum: int) -> None:
    # Rebuilt from its exit status (143) it would name signal 143, which does not exist.
    sent = pickle.loads(pickle.dumps(Terminated(signum)))
    assert type(sent) is Terminated
    assert (sent.code, sent.signum, sent.signal_name) == (128 + signum, signum, signal.Signals(signum).name)


def test_the_handler_and_the_unraisable_hook_come_back_after_the_block() -> None:
    handler, hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    with pytest.raises(Terminated), terminate_as_exit():
        assert signal.getsignal(signal.SIGTERM) is not handler
        assert sys.unraisablehook is not hook
        signal.raise_signal(signal.SIGTERM)
        raise AssertionError("SIGTERM did not raise")
    assert signal.getsignal(signal.SIGTERM) is handler and sys.unraisablehook is hook


def test_outside_the_main_thread_the_block_changes_nothing() -> None:
    # Only the main thread may set a handler; a block in a worker thread must neither fail nor
    # take SIGTERM from the main thread's code.
    seen: list[object] = []

    def body() -> None:
        with terminate_as_exit():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_repeated_sigterm_does_not_interrupt_the_clean_up_the_first_started() -> None:
    # `timeout` signals the command, then its process group: the second SIGTERM raised again in
    # the middle of the first one's clean-up (a study's workers handing their runs back), and a
    # study's driver left its worker pool half shut down and never exited.
    cleaned: list[str] = []
    with pytest.raises(Terminated), terminate_as_exit():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            signal.raise_signal(signal.SIGTERM)
            cleaned.append("run handed back")
    assert cleaned == ["run handed back"]


def test_each_block_takes_its_first_sigterm() -> None:
    for _ in range(2):
        with pytest.raises(Terminated), terminate_as_exit():
            signal.raise_signal(signal.SIGTERM)


def test_an_error_raised_while_a_sigterm_unwinds_leaves_the_exit_to_the_signal() -> None:
    # A DataLoader worker killed by the same group SIGTERM raised in the clean-up the Terminated
    # started; that RuntimeError took its place (a traceback and exit 1, not 143).
    with pytest.raises(Terminated) as caught, terminate_as_exit():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")
    assert caught.value.code == 143
    # An error of its own, with no SIGTERM behind it, is left as it is.
    with pytest.raises(RuntimeError, match="not a signal"), terminate_as_exit():
        try:
            raise ValueError("first")
        finally:
            raise RuntimeError("not a signal")


def test_a_sigterm_stops_python_watching_child_processes() -> None:
    # PyTorch's DataLoader raises from its SIGCHLD handler when a worker dies: at exit, after the
    # group's SIGTERM ended the workers, it printed a traceback under the one-line message.
    def watching(signum: int, frame: object) -> None:
        raise AssertionError("a child's end reached the old handler")

    before = signal.signal(signal.SIGCHLD, watching)
    try:
        with pytest.raises(Terminated), terminate_as_exit():
            signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGCHLD, before)


def test_sigterm_ends_a_process_at_once_while_it_joins_a_process_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blocked in the rendezvous for a rank 0 that refused the run before joining, a rank took no
    # Python handler's SIGTERM (C++ retries the interrupted connect) and waited 30 minutes.
    import torch
    import torch.distributed as dist

    from inpaintssl.training.distributed import init_distributed

    seen: list[object] = []
    monkeypatch.setattr(
        dist, "init_process_group", lambda **kwargs: seen.append(signal.getsignal(signal.SIGTERM))
    )
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    with terminate_as_exit():
        ours = signal.getsignal(signal.SIGTERM)
        init_distributed(torch.device("cpu"))
        assert signal.getsignal(signal.SIGTERM) is ours  # put back once the group is joined
    assert seen == [signal.SIG_DFL]
