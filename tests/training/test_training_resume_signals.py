"""SIGTERM and Ctrl-C stop a real ``inpaintssl pretrain`` mid-run; the resume ends as if never stopped.

The reliability suite (``tests/reliability/test_reliability_resume.py``) compares the weights of
SIGKILLed runs; here the whole record is compared too: ``metrics.csv`` (each epoch once, the same
values), the final ``val_inpainting.csv`` and the checkpoints' trainer state. The signal is sent
once the run has recorded its second epoch, so it lands in the third (training, validation or the
checkpoint write), whatever the machine's speed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checkpoint_helpers import assert_same_checkpoints

ARGS = [
    "data.dataset=synthetic",
    "data.params={num_images: 12, num_val: 4, size: [16, 16]}",
    "model.params={depth: 2, base_width: 4}",
    "optim.batch_size=4",
    "optim.max_epochs=5",
    "pretext.patch_size=4",
    "pretext.bank_size=4",
    "early_stopping.min_delta=0",
    "run.deterministic=true",
    "run.device=cpu",
    "run.quiet=true",
]
TIMED = ("seconds", "train_seconds")


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "inpaintssl", "pretrain", *ARGS, f"run.output_dir={out}", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMED} for row in csv.DictReader(handle)]


def _stopped_in_epoch_3(out: Path, signum: int) -> subprocess.CompletedProcess[str]:
    # SIGINT's disposition put back to the default in the child, so Python installs its Ctrl-C
    # handler even where this test runs with SIGINT ignored (a shell's background job).
    proc = subprocess.Popen(
        _command(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    metrics = out / "metrics.csv"
    # No deadline of its own: on a loaded machine the second epoch may take long, and a run that
    # ends before it is signalled fails the exit status check, saying so.
    while proc.poll() is None:
        if metrics.is_file() and len(_rows(metrics)) >= 2:
            proc.send_signal(signum)
            break
        time.sleep(0.005)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _trainer_state(out: Path) -> dict[str, object]:
    state = json.loads((out / "checkpoints" / "last" / "trainer_state.json").read_text())
    for row in state["history"]:
        for key in TIMED:
            row.pop(key)
    return {k: v for k, v in state.items() if k != "rng"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run never interrupted (one for both signals: the command is the same)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "reference"
    done = subprocess.run(_command(out), capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_run_resumes_to_the_uninterrupted_record(
    tmp_path: Path, reference: Path, signum: int, status: int
) -> None:
    run = tmp_path / "run"
    stopped = _stopped_in_epoch_3(run, signum)
    assert stopped.returncode == status, stopped.stderr[-2000:]
    assert "the same command with --resume continues" in stopped.stderr
    assert not (run / ".inpaintssl.lock").exists()
    assert len(_rows(run / "metrics.csv")) < 5  # stopped before the end, not after it
    resumed = subprocess.run(
        _command(run, "run.resume=true"), capture_output=True, text=True, env=_env(), timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _rows(run / "metrics.csv") == _rows(reference / "metrics.csv")
    assert [int(r["epoch"]) for r in _rows(run / "metrics.csv")] == [0, 1, 2, 3, 4]
    assert _rows(run / "val_inpainting.csv") == _rows(reference / "val_inpainting.csv")
    assert _trainer_state(run) == _trainer_state(reference)
    assert_same_checkpoints(run, reference)


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_dataloader_workers_exits_143_with_one_line(tmp_path: Path) -> None:
    # scancel and a scheduler's preemption signal every process of the job: the DataLoader workers
    # died with the run, and their deaths raised a RuntimeError in the clean-up the SIGTERM had
    # started, in its place: a traceback and exit 1 where a requeue script reads 143.
    run = tmp_path / "run"
    # Five epochs, as every run here: the signal lands in the third.
    proc = subprocess.Popen(
        _command(run, "data.num_workers=2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,  # its own process group, as a job's
    )
    metrics = run / "metrics.csv"
    while proc.poll() is None:
        if metrics.is_file() and len(_rows(metrics)) >= 2:
            os.killpg(proc.pid, signal.SIGTERM)
            break
        time.sleep(0.005)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "inpaintssl pretrain: terminated (SIGTERM); the same command with --resume continues from the "
        "last checkpoint"
    )
    assert not (run / ".inpaintssl.lock").exists()
