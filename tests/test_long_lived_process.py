"""The library in one long-lived process, as a notebook drives it: calls repeated in the same
process leave the caller's state as they found it and warn every time."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

import inpaintssl as issl
from inpaintssl.config import ConfigWarning, FinetuneConfig
from study_helpers import tiny_pretrain_config


def _finetune_config(output_dir: Path, **run: Any) -> dict[str, Any]:
    config = tiny_pretrain_config(output_dir, run=run)
    del config["pretext"]
    return config


def _live_tensors() -> list[torch.Tensor]:
    gc.collect()
    return [obj for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor)]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_runs_in_a_loop_leave_no_tensors_behind(tmp_path: Path) -> None:
    # The first run loads what stays for the process (registries, torch's own caches).
    issl.pretrain(tiny_pretrain_config(tmp_path / "warm"))
    # Compared by identity, not counted: an earlier test's leftovers may be freed meanwhile (seen
    # in 4 of 5 runs of tests/training and tests/reliability before this file: another test's
    # 23-tensor U-Net, alive when the loop began and freed during it).
    # (Weak references by id: a WeakSet would compare tensors with ==, which is elementwise.)
    before = {id(t): weakref.ref(t) for t in _live_tensors()}
    for i in range(2):
        issl.pretrain(tiny_pretrain_config(tmp_path / f"run{i}"))
    # The memory check's forward pass kept every activation and weight of its model alive
    # (a reference cycle through autograd's C++ graph): 46 tensors more per run.
    left = [tuple(t.shape) for t in _live_tensors() if (ref := before.get(id(t))) is None or ref() is not t]
    assert left == [], f"{len(left)} tensors outlive the runs: {left[:10]}"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_evaluate_leaves_the_callers_random_stream_where_it_was(tmp_path: Path) -> None:
    issl.finetune(_finetune_config(tmp_path / "ft"))
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    issl.evaluate(tmp_path / "ft", device="cpu")
    # The user's next draw is the one the seed gives, as if evaluate had not run.
    torch.testing.assert_close(torch.rand(4), expected, rtol=0, atol=0)


def test_an_unused_setting_warns_each_time_the_same_line_builds_its_config(tmp_path: Path) -> None:
    config = _finetune_config(tmp_path / "ft", cudnn_benchmark=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # Python's own action: once per message and line
        for _ in range(3):  # a notebook cell run three times
            FinetuneConfig.model_validate(config)
    shown = [w for w in seen if issubclass(w.category, ConfigWarning)]
    assert [str(w.message).split(":")[0] for w in shown] == ["run.cudnn_benchmark=true has no effect"] * 3
    # At the line that built the config, not inside pydantic or inpaintssl.
    assert {w.filename for w in shown} == {__file__}


# The notebook kernel: a fresh interpreter with Python's own Ctrl-C handler. A fork callback
# cannot be removed once registered, so this one lives in the kernel only; it presses at the
# run's first fork, as its first DataLoader worker starts (the run keeps its workers, so no later
# epoch forks), whatever the machine's speed.
_KERNEL = """
import _thread, json, multiprocessing, os, signal, sys, warnings

import inpaintssl as issl

# A kernel's Ctrl-C raises KeyboardInterrupt, whatever the test runner left: a shell starts a
# background job (CI under nohup ... &) with SIGINT ignored, and interrupt_main() does nothing then.
signal.signal(signal.SIGINT, signal.default_int_handler)

config = json.loads(sys.argv[1])
armed = [True]


def press_ctrl_c_if_armed():
    if armed:
        armed.clear()
        _thread.interrupt_main()
        (lambda: None)()  # a call: the main thread runs the SIGINT handler here, in the callback


os.register_at_fork(after_in_parent=press_ctrl_c_if_armed)
warnings.simplefilter("ignore")
try:
    issl.pretrain(config)
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
children = len(multiprocessing.active_children())
# The same cell again, resuming: the folder's lock was released and the checkpoint is whole.
result = issl.pretrain({**config, "run": {**config["run"], "resume": True}})
print(json.dumps({
    "interrupted": interrupted,
    "pressed": not armed,
    "children": children,
    "epochs_run": result.epochs_run,
    "epochs": [row["epoch"] for row in result.history],
}))
"""


def test_ctrl_c_mid_training_reaches_the_user_and_the_same_cell_resumes(tmp_path: Path) -> None:
    run = tmp_path / "pre"
    config = tiny_pretrain_config(
        run,
        data={"params": {"num_images": 32, "num_val": 2, "num_test": 2, "size": [16, 16]}, "num_workers": 2},
        optim={"max_epochs": 4},
    )
    # The notebook's stop button, pressed as the run forks its DataLoader workers: Python drops a
    # KeyboardInterrupt raised in a fork callback (as in logging's, which runs after every fork),
    # and the run trained on to its end.
    done = subprocess.run(
        [sys.executable, "-c", _KERNEL, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["pressed"], "no DataLoader worker was forked"
    assert outcome["interrupted"], done.stderr[-3000:]
    assert outcome["children"] == 0  # no DataLoader worker left behind
    assert outcome["epochs_run"] == 4 and outcome["epochs"] == [0, 1, 2, 3]
