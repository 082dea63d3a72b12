"""Runs with DataLoader workers train the same bits whichever way the workers are started.

Python 3.14 starts multiprocessing children by ``forkserver`` on Linux where earlier versions
forked them, and macOS and Windows start them by ``spawn``: the workers then get the dataset, the
sampler and the worker seeding pickled instead of inherited, and a run must neither fail nor
draw other data.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from checkpoint_helpers import assert_same_checkpoints

# Each run is a fresh interpreter: the start method is process-wide and set once, before any
# worker starts.
_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    if __name__ == "__main__":
        method, out = sys.argv[1], sys.argv[2]
        multiprocessing.set_start_method(method, force=True)
        import inpaintssl as issl
        data = {"dataset": "synthetic", "num_workers": 2,
                "params": {"num_images": 16, "num_val": 4, "num_test": 4, "size": [32, 32]}}
        issl.finetune({"data": data, "model": {"params": {"depth": 2, "base_width": 8}},
                       "optim": {"max_epochs": 2, "steps_per_epoch": 2},
                       "run": {"output_dir": out, "quiet": True}})
        assert multiprocessing.get_start_method() == method
    """
)


def _train(method: str, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, method, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_workers_started_by_forkserver_train_the_same_bits_as_forked_ones(tmp_path: Path) -> None:
    # forkserver pickles what spawn pickles (spawn also imports the caller's __main__ again), so one
    # short run stands for both. Two epochs: the run's workers serve both, re-seeding at each pass.
    for method in ("fork", "forkserver"):
        _train(method, tmp_path / method)
    assert_same_checkpoints(
        tmp_path / "forkserver", tmp_path / "fork", why="differs from the forked workers' run"
    )
