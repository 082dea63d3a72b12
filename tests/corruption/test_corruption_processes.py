"""Corruption beside other processes and threads: fork-started DataLoader workers, PyTorch's thread count.

Each check runs in a fresh interpreter: Numba's thread pool, once started, stays for the life of a
process, so a pytest process that had started it earlier would hide what a first call does.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

_WORKERS = """
import json, torch
from torch.utils.data import DataLoader, Dataset
from inpaintssl.corruption import ContextPrediction, ContextRestoration, launch_thread_pool

tasks = [
    ContextRestoration(patch_size=4, bank_size=2, sampler="poisson_disc"),
    ContextRestoration(patch_size=4, bank_size=2, sampler="random"),
    ContextPrediction(patch_size=4, bank_size=2),
]
images = torch.randn(4, 2, 32, 32)


class Corrupted(Dataset):
    def __len__(self):
        return len(images)

    def __getitem__(self, i):
        return torch.stack([task.corrupt_fixed(images[i : i + 1], key=[i])[0] for task in tasks])


# What a notebook or a training session does in the parent before its DataLoader forks workers.
launch_thread_pool()
for task in tasks:
    task.corrupt(images)
expected = torch.stack([task.corrupt_fixed(images, key=list(range(len(images)))) for task in tasks], dim=1)
loader = DataLoader(Corrupted(), batch_size=2, num_workers=2, multiprocessing_context="fork")
print(json.dumps({"same": torch.equal(torch.cat(list(loader)), expected)}))
"""


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_fork_started_workers_corrupt_after_the_parent_did() -> None:
    # Context restoration ran on Numba's OpenMP pool: once the parent had started it (a CPU
    # restoration, or launch_thread_pool at every run's start), a forked worker that corrupted a
    # batch was killed ("fork() called from a process already using GNU OpenMP, this is unsafe").
    done = subprocess.run([sys.executable, "-c", _WORKERS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"same": True}


_THREADS = """
import json, torch
from inpaintssl.corruption import ContextPrediction, ContextRestoration

torch.randn(512, 512).exp().sum()  # as in any real session, PyTorch has computed on its threads
torch.set_num_threads(1)
seen = []
for task in (ContextRestoration(patch_size=4, bank_size=2), ContextPrediction(patch_size=4, bank_size=2)):
    task.corrupt(torch.randn(2, 3, 32, 32))
    task.corrupt_fixed(torch.randn(2, 3, 32, 32), key=0)
    seen.append(torch.get_num_threads())
print(json.dumps(seen))
"""


def test_corrupting_leaves_pytorch_s_thread_count_alone() -> None:
    # Numba's pool, started by the first CPU restoration, set PyTorch's thread count to
    # NUMBA_NUM_THREADS: a user's torch.set_num_threads(1) (or a DataLoader worker's) was undone.
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run(
        [sys.executable, "-c", _THREADS], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [1, 1]
