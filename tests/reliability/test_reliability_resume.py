"""Hard kills: SIGKILL real training processes at seeded random moments, resume, compare weights.

Each resumed run must end with exactly (bit-for-bit, CPU, deterministic mode) the weights of a run
that was never interrupted, in pretraining and in a two-phase fine-tuning.

The processes run two at a time (one per core of a 2-core machine, ``OMP_NUM_THREADS=1``): most
of a tiny run's time is interpreter start-up and imports, which a second process overlaps. Kill
moments are drawn against the duration measured with two processes running, so they spread over
the whole run as they would one at a time.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from checkpoint_helpers import assert_same_checkpoints

COMMON = [
    "data.dataset=synthetic",
    "data.params={num_images: 24, num_val: 6, num_test: 6, size: [16, 16]}",
    "model.params={depth: 2, base_width: 4}",
    "optim.batch_size=4",
    "optim.max_epochs=6",
    "run.deterministic=true",
    "run.device=cpu",
    "run.quiet=true",
]
STAGES = {
    "pretrain": ["pretext.patch_size=4", "pretext.bank_size=4", "early_stopping.min_delta=0"],
    "finetune": [
        "transfer.schedule=freeze_then_unfreeze",
        "optim.max_epochs=3",
        "early_stopping.patience=50",
    ],
}
KILLS_PER_STAGE = 5
PROCESSES_AT_ONCE = 2
T = TypeVar("T")


def _command(stage: str, out: Path, *extra: str) -> list[str]:
    # A field set again (a stage's or a test's budget) replaces the common value: the command line
    # refuses a field given twice.
    fields = dict(item.split("=", 1) for item in [*COMMON, *STAGES[stage], f"run.output_dir={out}", *extra])
    return [sys.executable, "-m", "inpaintssl", stage, *(f"{key}={value}" for key, value in fields.items())]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _run(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - started


def _kill_after(cmd: list[str], delay: float) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)


def _two_at_a_time(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``jobs`` (each starts and waits for processes) on two threads; re-raise the first failure."""
    with ThreadPoolExecutor(max_workers=PROCESSES_AT_ONCE) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(tmp_path: Path, stage: str) -> None:
    extra: list[str] = []
    if stage == "finetune":
        _run(_command("pretrain", tmp_path / "pre", "optim.max_epochs=2"))
        extra = [f"transfer.pretrained={tmp_path / 'pre'}"]
    # Two uninterrupted runs side by side: their duration is that of a run sharing the machine, as
    # the killed ones will, and they must agree with each other bit for bit.
    references = [tmp_path / "reference", tmp_path / "reference_twin"]
    duration = max(_two_at_a_time([partial(_run, _command(stage, out, *extra)) for out in references]))
    assert_same_checkpoints(*references, why="differs between two uninterrupted runs")
    rng = random.Random(20231125 + len(stage))
    # Kill anywhere from start-up (nothing written yet) to near the end of a normal run.
    delays = sorted(rng.uniform(0.3, 0.95) * duration for _ in range(KILLS_PER_STAGE))

    def kill_then_resume(i: int, delay: float) -> None:
        out = tmp_path / f"killed{i}"
        _kill_after(_command(stage, out, *extra), delay)
        _run(_command(stage, out, *extra, "run.resume=true"))

    _two_at_a_time([partial(kill_then_resume, i, delay) for i, delay in enumerate(delays)])
    for i in range(KILLS_PER_STAGE):
        assert_same_checkpoints(tmp_path / f"killed{i}", references[0], why="differs after resume")


@pytest.mark.slow
def test_deterministic_runs_are_bit_identical(tmp_path: Path) -> None:
    # Run at the same time, so neither can reuse anything the other left (a cache, a file).
    _two_at_a_time(
        [partial(_run, _command("pretrain", tmp_path / name, "optim.max_epochs=2")) for name in "ab"]
    )
    assert_same_checkpoints(tmp_path / "a", tmp_path / "b")
