"""Tasks run on threads give what they would one by one: results, the first error, warnings, in order."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.in_order import Task, run_in_order
from inpaintssl.warning_format import warn_each_time


class TaskFailedError(Exception):
    """The error a task of these tests raises, naming the task."""


def _task(
    index: int, *, parallel: bool, fails: bool, warns: int, pause: float, log: list[tuple[int, str]]
) -> Task[int]:
    def run() -> int:
        log.append((index, threading.current_thread().name))
        time.sleep(pause)
        for w in range(warns):
            warn_each_time(f"task {index} warning {w}", UserWarning)
        if fails:
            raise TaskFailedError(f"task {index}")
        return index * 10

    return Task(run, parallel=parallel)


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.booleans(), st.booleans(), st.integers(0, 2), st.sampled_from([0.0, 0.001, 0.004])),
        min_size=0,
        max_size=10,
    ),
    threads=st.integers(1, 4),
)
def test_results_errors_and_warnings_are_those_of_running_one_by_one(
    plan: list[tuple[bool, bool, int, float]], threads: int
) -> None:
    def outcome(workers: int) -> tuple[list[int], str | None, list[str], list[tuple[int, str]]]:
        log: list[tuple[int, str]] = []
        tasks = [
            _task(i, parallel=parallel, fails=fails, warns=warns, pause=pause, log=log)
            for i, (parallel, fails, warns, pause) in enumerate(plan)
        ]
        results: list[int] = []
        error = None
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                for result in run_in_order(tasks, threads=workers):
                    results.append(result)
            except TaskFailedError as exc:
                error = str(exc)
        # Every warning points at this file, the caller's, on a thread or not.
        assert all(w.filename == __file__ for w in seen)
        return results, error, [str(w.message) for w in seen], log

    one_by_one = outcome(1)
    threaded = outcome(threads)
    assert threaded[:3] == one_by_one[:3]
    first_failure = next((i for i, step in enumerate(plan) if step[1]), len(plan))
    assert one_by_one[1] == (None if first_failure == len(plan) else f"task {first_failure}")
    assert one_by_one[0] == [10 * i for i in range(first_failure)]
    started = dict(threaded[3])
    assert len(started) == len(threaded[3])  # no task ran twice
    # Tasks that may not run beside others run in the calling thread, when their turn comes.
    main = threading.current_thread().name
    assert all(started[i] == main for i in started if not plan[i][0])
    assert all(i <= first_failure for i in started if not plan[i][0])
    # No more than `threads` parallel tasks ran ahead of the one that failed, that one included.
    ahead = [i for i in started if i > first_failure]
    in_flight_with_it = first_failure < len(plan) and plan[first_failure][0]
    assert len(ahead) <= (threads - 1 if in_flight_with_it else threads)


def test_parallel_tasks_run_at_once_on_threads_of_their_own() -> None:
    # Each task waits for the other at a barrier: one by one, the first would wait out its timeout.
    barrier = threading.Barrier(2, timeout=30)
    names: list[str] = []

    def meet() -> str:
        barrier.wait()
        names.append(threading.current_thread().name)
        return "met"

    assert list(run_in_order([Task(meet), Task(meet)], threads=2)) == ["met", "met"]
    assert all(name.startswith("inpaintssl-in-order") for name in names) and len(names) == 2


@pytest.mark.parametrize("threads", [0, 1])
def test_one_thread_runs_every_task_in_the_calling_thread(threads: int) -> None:
    names: list[str] = []
    tasks = [Task(lambda: names.append(threading.current_thread().name)) for _ in range(3)]
    assert list(run_in_order(tasks, threads=threads)) == [None, None, None]
    assert names == [threading.current_thread().name] * 3


def test_at_most_threads_tasks_are_in_flight() -> None:
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def counted(pause: float) -> Callable[[], None]:
        def run() -> None:
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(pause)
            with lock:
                state["now"] -= 1

        return run

    list(run_in_order([Task(counted(0.002 * (i % 3))) for i in range(24)], threads=3))
    assert 1 <= state["most"] <= 3


def test_a_warning_filter_of_error_raises_at_the_task_in_order() -> None:
    ran: list[int] = []

    def task(i: int) -> Callable[[], int]:
        def run() -> int:
            ran.append(i)
            if i == 2:
                warn_each_time("task 2 warns", UserWarning)
            return i

        return run

    got: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="task 2 warns"):
            for result in run_in_order([Task(task(i)) for i in range(6)], threads=2):
                got.append(result)
    assert got == [0, 1]


def test_stopping_early_leaves_no_thread_running() -> None:
    before = {t.name for t in threading.enumerate()}
    results = run_in_order([Task(lambda i=i: i) for i in range(10)], threads=3)
    assert next(results) == 0
    results.close()
    assert {t.name for t in threading.enumerate()} <= before


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to its own process is POSIX's")
def test_ctrl_c_while_waiting_stops_at_once_and_starts_nothing_more() -> None:
    started: list[int] = []
    release = threading.Event()

    def slow(i: int) -> Callable[[], int]:
        def run() -> int:
            started.append(i)
            release.wait(timeout=0.5)  # a case being read: it finishes on its own
            return i

        return run

    # Python's own Ctrl-C handler, whatever an earlier test in this process left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    begun = time.perf_counter()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            list(run_in_order([Task(slow(i)) for i in range(20)], threads=2))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    # Waited only for the two running tasks, not for the 18 others, which never started.
    assert time.perf_counter() - begun < 10
    assert sorted(started) == [0, 1]
    assert not [t for t in threading.enumerate() if t.name.startswith("inpaintssl-in-order")]
