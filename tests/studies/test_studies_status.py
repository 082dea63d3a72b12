"""`experiment status`: planned runs counted by kind and status, a dead worker's run as stale."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from inpaintssl.cli import main
from inpaintssl.studies import expand_study, load_spec
from inpaintssl.studies.merge import new_run
from inpaintssl.studies.queue import WorkerId, pid_alive
from inpaintssl.studies.status import STALE, study_status
from inpaintssl.studies.store import StudyStore
from study_helpers import tiny_spec

DAY_S = 24 * 3600.0


def _take(path: Path, run_id: str, worker: WorkerId, *, heartbeat: float) -> None:
    """Mark a run ``running`` for ``worker`` as its claim does, with the heartbeat given."""
    with StudyStore(path) as store:
        assert store.mark_submitted([run_id], worker, max_attempts=2) == [run_id]
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (heartbeat, run_id))
    finally:
        conn.close()


@pytest.mark.parametrize(("stale_after_s", "remote_silent_stale"), [(900.0, True), (2 * DAY_S, False)])
def test_a_running_run_whose_worker_is_gone_is_counted_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stale_after_s: float, remote_silent_stale: bool
) -> None:
    # A killed study's runs stayed "running" in `experiment status` for ever, though the next
    # `experiment run` reclaims them: status judges them by the claim's rule and the spec's stale_after_s.
    given = tiny_spec(tmp_path / "study", label_fractions=[1.0, 0.5], stale_after_s=stale_after_s)
    spec = load_spec(given)
    plan = expand_study(spec)
    path = spec.database_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with StudyStore(path) as store:
        store.add_runs(new_run(job) for job in plan)
    dead_pre, silent_pre = plan.pretrain_jobs()
    baselines = [j for j in plan if j.labels["arm"] == "supervised"]
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    here = WorkerId.current().host
    dead = WorkerId(here, int(gone.stdout), "killed")
    assert not pid_alive(dead.pid)
    now = time.time()
    _take(path, dead_pre.id, dead, heartbeat=now)  # this host, its process ended: stale at once
    _take(path, silent_pre.id, WorkerId("node-7", 4101, "remote"), heartbeat=now - DAY_S)  # a day silent
    _take(path, baselines[0].id, WorkerId("node-8", 4102, "remote"), heartbeat=now)  # another host, beating
    _take(path, baselines[1].id, WorkerId(here, os.getpid(), "live"), heartbeat=now)  # this live process

    status = study_status(spec)
    ssl = len(plan) - 4  # registered, waiting on pretraining
    expected_pretrain = {STALE: 2} if remote_silent_stale else {STALE: 1, "running": 1}
    assert dict(status.counts["pretrain"]) == expected_pretrain
    assert dict(status.counts["finetune"]) == {"running": 2, "pending": ssl}
    assert status.done == 0 and status.planned == len(plan)

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(given), encoding="utf-8")
    assert main(["experiment", "status", str(spec_file)]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("  pretrain: "))
    assert "stale (worker gone; the next `experiment run` reclaims it)" in line
    assert ("1 running" in line) == (not remote_silent_stale)
    # What status calls stale is what the next run reclaims.
    with StudyStore(path) as store:
        reclaimed = store.reclaim_stale(stale_after_s=stale_after_s)
    assert sorted(reclaimed) == sorted([dead_pre.id, silent_pre.id] if remote_silent_stale else [dead_pre.id])
