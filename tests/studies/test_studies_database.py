"""The study database: atomic claims, exactly-once results, stale-run reclaiming, concurrent workers."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inpaintssl.studies.queue import WAIT, NewRun, RunRecord, WorkerId, pid_alive, run_is_stale
from inpaintssl.studies.store import Measurement, StudyStore


def _run(run_id: str, *, depends_on: str | None = None) -> NewRun:
    kind = "pretrain" if run_id.startswith("pt") else "finetune"
    return NewRun(run_id, kind, depends_on, {"id": run_id}, {"label": run_id})


def _rows(n: int) -> list[Measurement]:
    return [Measurement(f"v{i}", i, "image", "gm", "dice", i / 10) for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> StudyStore:
    return StudyStore(tmp_path / "study.sqlite")


def _other_worker() -> WorkerId:
    # Another live process on this host (two workers of one process would look like a dead one).
    return WorkerId(WorkerId.current().host, os.getppid(), "other")


def _claimed(result: object) -> RunRecord:
    assert isinstance(result, RunRecord), f"expected a claimed run, got {result!r}"
    return result


def test_database_uses_wal_and_the_schema(tmp_path: Path) -> None:
    StudyStore(tmp_path / "s.sqlite").close()
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "measurements", "meta"} <= tables


def test_claims_take_needed_runs_first_then_registration_order_and_wait_for_dependencies(
    store: StudyStore,
) -> None:
    # A plan lists baselines first; the pretraining runs that fine-tuning waits on are taken first.
    runs = [_run("ft-base"), _run("ft-base-2"), _run("pt-1"), _run("ft-a", depends_on="pt-1")]
    assert store.add_runs(runs) == 4
    assert store.add_runs([_run("pt-1")]) == 0  # known ids are not added twice
    me, other = WorkerId.current(), _other_worker()
    assert _claimed(store.claim(me)).id == "pt-1"
    assert _claimed(store.claim(other)).id == "ft-base"
    assert store.record("ft-base", other, result={}, rows=[])
    # ft-a needs pt-1, which is running: the other worker takes what it can.
    assert _claimed(store.claim(other)).id == "ft-base-2"
    assert store.claim(other) is WAIT  # only ft-a is left, and pt-1 still runs: wait, don't exit
    assert store.record("pt-1", me, result={}, rows=[])
    assert _claimed(store.claim(me)).id == "ft-a"
    assert store.record("ft-a", me, result={}, rows=[])
    assert store.record("ft-base-2", other, result={}, rows=[])
    assert store.claim(me) is None
    assert store.counts() == {"finetune": {"done": 3}, "pretrain": {"done": 1}}


def test_claims_respect_the_allowed_ids(store: StudyStore) -> None:
    store.add_runs([_run("ft-1"), _run("ft-2")])
    me = WorkerId.current()
    assert _claimed(store.claim(me, allowed={"ft-2"})).id == "ft-2"
    assert store.claim(me, allowed={"ft-2"}) is WAIT  # its only run is running (by itself)


def test_results_are_recorded_once_and_only_by_the_owner(store: StudyStore) -> None:
    store.add_runs([_run("ft-1")])
    me, intruder = WorkerId.current(), _other_worker()
    _claimed(store.claim(me))
    assert not store.record("ft-1", intruder, result={"x": 1}, rows=_rows(3))
    assert store.record("ft-1", me, result={"x": 2}, rows=_rows(3))
    assert not store.record("ft-1", me, result={"x": 3}, rows=_rows(3))  # already done
    assert len(store.measurements()) == 3
    (run,) = store.runs()
    assert (run.status, run.result, run.attempts) == ("done", {"x": 2}, 1)


def test_a_failed_record_writes_nothing(store: StudyStore) -> None:
    store.add_runs([_run("ft-1")])
    me = WorkerId.current()
    _claimed(store.claim(me))
    duplicate = [Measurement("v", 0, "image", "gm", "dice", 0.5)] * 2
    with pytest.raises(sqlite3.IntegrityError):
        store.record("ft-1", me, result={}, rows=duplicate)
    assert store.measurements() == []
    assert store.runs()[0].status == "running"
    assert store.record("ft-1", me, result={}, rows=duplicate[:1])


def test_nan_and_inf_values_survive(store: StudyStore) -> None:
    store.add_runs([_run("ft-1")])
    me = WorkerId.current()
    _claimed(store.claim(me))
    rows = [
        Measurement("v", 0, "image", "gm", m, v) for m, v in [("a", math.nan), ("b", math.inf), ("c", 1.5)]
    ]
    store.record("ft-1", me, result={}, rows=rows)
    values = [m.value for _, m in store.measurements()]
    assert math.isnan(values[0]) and values[1:] == [math.inf, 1.5]


def test_dead_workers_on_this_host_are_reclaimed(store: StudyStore) -> None:
    store.add_runs([_run("ft-1")])
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = WorkerId(WorkerId.current().host, int(gone.stdout), "dead")
    assert not pid_alive(dead.pid)
    _claimed(store.claim(dead))
    me = WorkerId.current()
    claimed = _claimed(store.claim(me))
    assert (claimed.id, claimed.attempts) == ("ft-1", 2)
    assert not store.record("ft-1", dead, result={}, rows=[])
    assert store.record("ft-1", me, result={}, rows=[])


def test_live_workers_keep_their_runs_until_the_heartbeat_is_stale(store: StudyStore) -> None:
    store.add_runs([_run("ft-1")])
    remote = WorkerId("another-host", 1, "remote")
    _claimed(store.claim(remote))
    me = WorkerId.current()
    assert store.claim(me, stale_after_s=60.0) is WAIT
    time.sleep(0.05)
    assert _claimed(store.claim(me, stale_after_s=0.01)).id == "ft-1"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process on this host, to stand for a worker; killed and reaped afterwards."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX job control")
def test_a_live_worker_on_this_host_keeps_its_run_however_long_it_is_silent(
    store: StudyStore, sleeper: subprocess.Popen[bytes]
) -> None:
    # Ctrl-Z (or a laptop asleep) for longer than stale_after_s: the stopped worker's run was given
    # to another worker, which found its run folder locked by the live one and failed it twice.
    store.add_runs([_run("pt-1")])
    stopped = WorkerId(WorkerId.current().host, sleeper.pid, "stopped")
    _claimed(store.claim(stopped))
    os.kill(sleeper.pid, signal.SIGSTOP)
    time.sleep(0.05)
    me = WorkerId.current()
    assert store.claim(me, stale_after_s=0.01) is WAIT
    assert store.reclaim_stale(stale_after_s=0.01, me=me) == []
    assert not run_is_stale(store.runs()[0], stale_after_s=0.01)
    # Once its process is gone, the run is reclaimed at once.
    sleeper.kill()
    sleeper.wait(timeout=30)
    assert run_is_stale(store.runs()[0], stale_after_s=math.inf)
    claimed = _claimed(store.claim(me, stale_after_s=math.inf))
    assert (claimed.id, claimed.attempts) == ("pt-1", 2)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc to date a process")
def test_a_dead_worker_s_pid_reused_by_a_newer_process_does_not_keep_its_run(
    store: StudyStore, sleeper: subprocess.Popen[bytes]
) -> None:
    # Judged by the pid alone, a worker whose pid another process took would keep its run for as
    # long as that process lives: the newcomer started after the worker's last heartbeat.
    store.add_runs([_run("pt-1")])
    _claimed(store.claim(WorkerId(WorkerId.current().host, sleeper.pid, "earlier")))
    an_hour_ago = time.time() - 3600.0  # the dead worker's last heartbeat, before the sleeper started
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET heartbeat = ? WHERE id = 'pt-1'", (an_hour_ago,))
    assert sleeper.poll() is None, "the process holding the pid is alive"
    claimed = _claimed(store.claim(WorkerId.current(), stale_after_s=math.inf))
    assert (claimed.id, claimed.attempts) == ("pt-1", 2)


def test_an_earlier_worker_of_this_process_counts_as_dead(store: StudyStore) -> None:
    store.add_runs([_run("ft-1")])
    _claimed(store.claim(WorkerId.current()))
    assert _claimed(store.claim(WorkerId.current())).attempts == 2


def test_failures_are_retried_up_to_the_budget_and_block_dependants(store: StudyStore) -> None:
    store.add_runs([_run("pt-1"), _run("ft-1", depends_on="pt-1")])
    me = WorkerId.current()
    for attempt in (1, 2):
        claimed = _claimed(store.claim(me, max_attempts=2))
        assert (claimed.id, claimed.attempts) == ("pt-1", attempt)
        store.fail("pt-1", me, "RuntimeError: boom")
    assert store.claim(me, max_attempts=2) is None
    runs = {r.id: r for r in store.runs()}
    assert runs["pt-1"].status == "failed" and runs["pt-1"].error == "RuntimeError: boom"
    assert runs["ft-1"].status == "failed" and "blocked" in (runs["ft-1"].error or "")
    # A new invocation gives them a fresh budget.
    assert store.requeue_failed() == 2
    assert _claimed(store.claim(me, max_attempts=2)).id == "pt-1"


def test_released_runs_go_back_to_pending(store: StudyStore) -> None:
    store.add_runs([_run("ft-1")])
    me = WorkerId.current()
    _claimed(store.claim(me))
    store.release("ft-1", me)
    assert store.runs()[0].status == "pending"


_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from inpaintssl.studies.queue import RunRecord, WorkerId
    from inpaintssl.studies.store import Measurement, StudyStore
    path, flag = Path(sys.argv[1]), Path(sys.argv[2])
    (flag.parent / f"ready-{os.getpid()}").touch()
    while not flag.exists():
        time.sleep(0.005)
    me = WorkerId.current()
    with StudyStore(path) as store:
        while True:
            run = store.claim(me, stale_after_s=600)
            if run is None:
                break
            if not isinstance(run, RunRecord):
                time.sleep(0.01)
                continue
            time.sleep(0.01)  # some work, so that the workers overlap
            rows = [Measurement(f"v{i}", 0, "image", "", "score", float(i)) for i in range(5)]
            store.record(run.id, me, result={"worker": str(me)}, rows=rows)
    """
)


def test_concurrent_worker_processes_never_record_a_run_twice(tmp_path: Path) -> None:
    path, flag = tmp_path / "study.sqlite", tmp_path / "go"
    runs = [_run(f"pt-{i}") for i in range(10)]
    runs += [_run(f"ft-{i}-{j}", depends_on=f"pt-{i}") for i in range(10) for j in range(3)]
    with StudyStore(path) as store:
        store.add_runs(runs)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(flag)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    # Start them together, once all have imported, so that they really compete for the runs.
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < len(procs):
        assert time.monotonic() < deadline, "the worker processes did not start"
        time.sleep(0.01)
    flag.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with StudyStore(path) as store:
        records = store.runs()
        measurements = store.measurements()
    assert all(r.status == "done" and r.attempts == 1 for r in records)
    keys = [(run_id, m.volume_id) for run_id, m in measurements]
    assert len(keys) == len(set(keys)) == 5 * len(runs)
    workers = {json.dumps(r.result) for r in records}
    assert len(workers) >= 2, "the workers did not share the runs"


def test_finetune_slices_can_be_left_out(store: StudyStore) -> None:
    store.add_runs([_run("pt-1"), _run("ft-1", depends_on="pt-1")])
    me = WorkerId.current()
    for run_id in ("pt-1", "ft-1"):
        _claimed(store.claim(me))
        rows = [Measurement("v", 0, "image", "", "m", 1.0), Measurement("v", -1, "volume", "", "m", 2.0)]
        store.record(run_id, me, result={}, rows=rows)
    assert store.has_level("volume") and not store.has_level("patch")
    assert store.has_level("volume", metric="m") and not store.has_level("volume", metric="dice_mean")
    kept = [(run_id, m.level) for run_id, m in store.measurements(finetune_slices=False)]
    assert kept == [("pt-1", "image"), ("pt-1", "volume"), ("ft-1", "volume")]
    assert len(store.measurements()) == 4


def test_a_reader_never_writes_the_database_file(tmp_path: Path) -> None:
    # A writer killed with commits still in the write-ahead log: a plain connection that closes
    # last checkpoints them into the file, which a reader on another host (status, report) whose
    # file system hides the writer's locks must never do.
    path = tmp_path / "study.sqlite"
    with StudyStore(path) as store:
        store.add_runs([_run("pt-0")])
    writer = textwrap.dedent(
        """
        import os, sys
        from inpaintssl.studies.store import StudyStore
        from inpaintssl.studies.queue import NewRun
        store = StudyStore(sys.argv[1])
        store.add_runs([NewRun("pt-1", "pretrain", None, {"id": "pt-1"}, {"label": "pt-1"})])
        os._exit(0)  # no close: the commit stays in the log
        """
    )
    subprocess.run([sys.executable, "-c", writer, str(path)], check=True, timeout=120)
    wal = path.with_name(path.name + "-wal")
    before, logged = path.read_bytes(), wal.read_bytes()
    assert logged, "the killed writer left no log to checkpoint"
    with StudyStore(path, read_only=True) as reader:
        assert [r.id for r in reader.runs()] == ["pt-0", "pt-1"]  # it reads the log
    assert path.read_bytes() == before and wal.read_bytes() == logged
    # The owner's next connection takes the log in as usual.
    with StudyStore(path) as store:
        assert [r.id for r in store.runs()] == ["pt-0", "pt-1"]
