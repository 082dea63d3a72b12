"""Calls for a study pool's worker processes whose driver is killed (test_studies_runner.py).

They are imported by the spawned workers, so they live in a module of their own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from inpaintssl.signals import Terminated, terminate_as_exit
from inpaintssl.studies import runner


def hold_a_run(folder: str) -> int:
    """Stand for a worker executing a run until SIGTERM, then hand it back as ``_worker_process`` does."""
    with runner._holding_runs():
        try:
            with terminate_as_exit():
                Path(folder, f"holding-{os.getpid()}").touch()
                while True:
                    time.sleep(0.05)
        except Terminated:
            time.sleep(0.5)  # handing a run back takes a while: it must not be cut short
            Path(folder, f"handed-back-{os.getpid()}").touch()
            raise


def wait_for_the_next_call(folder: str) -> int:
    """Return once the other worker holds its run: this worker then waits for the pool's next call."""
    deadline = time.monotonic() + 60
    while not list(Path(folder).glob("holding-*")):
        assert time.monotonic() < deadline, "the pool's other worker never took its call"
        time.sleep(0.01)
    Path(folder, f"idle-{os.getpid()}").touch()
    return os.getpid()
