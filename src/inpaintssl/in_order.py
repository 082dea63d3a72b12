"""Run tasks on a few threads and take their results, errors and warnings as if they ran one by one.

Reading a scan is mostly work that releases Python's lock: zlib decompressing a ``.nii.gz``,
file reads, NumPy's reductions. Several scans read at once on threads finish sooner, the more
cores the sooner (the pre-flight check of 12 ``.nii.gz`` cases: 1.66x as fast on 2 cores,
``benchmarks/bench_preflight_threads.py``). :func:`run_in_order` does that without changing what
a caller sees:

- results come in the order the tasks were given;
- the error raised is the first in that order (tasks after it that were already running finish
  and are dropped, and none later starts);
- the library's per-call warnings (:func:`~inpaintssl.warning_format.warn_each_time`) a task
  raises on a thread are held there (:func:`~inpaintssl.warning_format.held_warnings`) and raised
  by the calling thread, in task order, at its caller, where the filters apply as before;
- at most ``threads`` tasks run ahead of the one waited for, so tasks that each hold a
  decompressed volume hold at most that many volumes at once.

A task that is not safe beside others (``parallel=False``: a plugin's code, which may share
state between its cases) runs in the calling thread when its turn comes.

Example:
    >>> squares = [Task(lambda i=i: i * i) for i in range(5)]
    >>> list(run_in_order(squares, threads=3))
    [0, 1, 4, 9, 16]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from inpaintssl.warning_format import held_warnings, warn_each_time

__all__ = ["Task", "run_in_order"]

T = TypeVar("T")

_Outcome = tuple[list[tuple[str, type[Warning]]], T | None, Exception | None]


@dataclass(frozen=True)
class Task(Generic[T]):
    """One unit of work for :func:`run_in_order`.

    Attributes:
        run: What to do; its return value is the task's result.
        parallel: ``run`` may run on a thread beside the other tasks: it reads and changes only
            what is its own. ``False``: it runs in the calling thread.
    """

    run: Callable[[], T]
    parallel: bool = True


def _held(run: Callable[[], T]) -> _Outcome[T]:
    """Run ``run`` on this (pool) thread, holding its warnings for the waiting thread to raise."""
    with held_warnings() as held:
        try:
            result = run()
        except Exception as exc:  # noqa: BLE001 - raised again by the waiting thread, in task order
            return held, None, exc
    return held, result, None


def run_in_order(tasks: Iterable[Task[T]], *, threads: int) -> Iterator[T]:
    """Each task's result, in the order given, with up to ``threads`` parallel tasks running at once.

    See the module docstring for what stays as it would be one by one. ``threads <= 1`` runs every
    task in the calling thread, as does a list with at most one parallel task. Stopping the
    iteration early drops the tasks not started and waits for those running.

    Raises:
        Exception: The first task's error, in task order.
    """
    listed = list(tasks)
    if threads <= 1 or sum(task.parallel for task in listed) <= 1:
        for task in listed:
            yield task.run()
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inpaintssl-in-order")
    queued: deque[tuple[Task[T], Future[_Outcome[T]] | None]] = deque()
    upcoming = iter(listed)
    running = 0
    try:
        while True:
            while running < threads and (ahead := next(upcoming, None)) is not None:
                queued.append((ahead, pool.submit(_held, ahead.run) if ahead.parallel else None))
                running += ahead.parallel
            if not queued:
                return
            task, future = queued.popleft()
            if future is None:
                yield task.run()
                continue
            running -= 1
            held, result, error = future.result()
            for message, category in held:
                warn_each_time(message, category)
            if error is not None:
                raise error
            yield result  # type: ignore[misc]  # a task that passed returned its result, None or not
    finally:
        # Tasks not started are dropped; those running finish, their outcome unread.
        pool.shutdown(wait=True, cancel_futures=True)
