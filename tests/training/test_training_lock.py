"""One writer per run folder: the lock file, its stale-lock rules, and two real runs racing for a folder."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from inpaintssl.layout import RunFolder
from inpaintssl.signals import Terminated, terminate_as_exit
from inpaintssl.training import lock as lock_module
from inpaintssl.training.lock import (
    RunFolderInUseError,
    RunFolderLockedError,
    StaleLockWarning,
    acquire_run_lock,
    read_lock,
)
from study_helpers import tiny_pretrain_config


def _write_lock(folder: Path, **fields: object) -> dict[str, object]:
    lock = {"pid": 1, "host": socket.gethostname(), "since": "2024-05-01T10:00:00+00:00", "token": "x"}
    lock.update(fields)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RunFolder.LOCK).write_text(json.dumps(lock), encoding="utf-8")
    return lock


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_lock_records_this_process_and_is_removed_on_release(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "run"
    lock = acquire_run_lock(folder)
    recorded = json.loads((folder / RunFolder.LOCK).read_text(encoding="utf-8"))
    assert (recorded["pid"], recorded["host"]) == (os.getpid(), socket.gethostname())
    assert recorded["since"][:4].isdigit() and "T" in recorded["since"]
    assert sorted(p.name for p in folder.iterdir()) == [RunFolder.LOCK], "no temporary file is left"
    lock.release()
    lock.release()  # a second release does nothing
    assert not (folder / RunFolder.LOCK).exists()


def test_second_acquire_in_the_same_folder_names_the_owner(tmp_path: Path) -> None:
    with acquire_run_lock(tmp_path) as first:
        with pytest.raises(RunFolderLockedError) as caught:
            acquire_run_lock(tmp_path)
        assert isinstance(caught.value, RunFolderInUseError)
        message = str(caught.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()!r} since {first.owner.since}" in message
        assert str(tmp_path) in message
    assert not (tmp_path / RunFolder.LOCK).exists()


def test_live_process_on_this_host_holds_the_folder(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _write_lock(tmp_path, pid=sleeper.pid)
        with pytest.raises(
            RunFolderLockedError, match=rf"pid {sleeper.pid} on host .* Wait for it to finish"
        ):
            acquire_run_lock(tmp_path)
        recorded = json.loads((tmp_path / RunFolder.LOCK).read_text(encoding="utf-8"))
        assert recorded == lock, "the lock is untouched"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    dead = _dead_pid()
    _write_lock(tmp_path, pid=dead)
    with pytest.warns(StaleLockWarning, match=rf"stale lock from pid {dead} .*taking it over"):
        lock = acquire_run_lock(tmp_path)
    owner = read_lock(tmp_path)
    assert owner is not None and owner.pid == os.getpid() and owner.token == lock.owner.token
    lock.release()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_lock_whose_pid_now_belongs_to_a_newer_process_is_stale(tmp_path: Path) -> None:
    # Our own pid, but a start time that is not ours: the pid was reused after the owner died.
    _write_lock(tmp_path, pid=os.getpid(), pid_start=1)
    with pytest.warns(StaleLockWarning):
        acquire_run_lock(tmp_path).release()


def test_lock_from_another_host_without_a_heartbeat_is_never_stale(tmp_path: Path) -> None:
    _write_lock(tmp_path, pid=_dead_pid(), host="elsewhere.example")  # written before heartbeats
    _silence(tmp_path, 10 * lock_module.LOCK_STALE_AFTER_S)
    with pytest.raises(RunFolderLockedError, match=r"on host 'elsewhere\.example'.*delete the lock file"):
        acquire_run_lock(tmp_path)
    assert (tmp_path / RunFolder.LOCK).exists()


def _silence(folder: Path, seconds: float) -> None:
    """Make the lock file look untouched for ``seconds`` (its owner's heartbeat last heard then)."""
    then = time.time() - seconds
    os.utime(folder / RunFolder.LOCK, (then, then))


def test_another_hosts_lock_with_a_silent_heartbeat_is_stale(tmp_path: Path) -> None:
    # A run killed on another node (SIGKILL, a lost node): its lock stops being touched.
    _write_lock(tmp_path, host="elsewhere.example", heartbeat_s=15.0)
    _silence(tmp_path, lock_module.LOCK_STALE_AFTER_S + 1)
    with pytest.warns(StaleLockWarning, match=r"'elsewhere\.example'.*heartbeat has been silent for 12\d s"):
        held = acquire_run_lock(tmp_path)
    assert read_lock(tmp_path) == held.owner
    held.release()


def test_another_hosts_lock_with_a_recent_heartbeat_is_live(tmp_path: Path) -> None:
    _write_lock(tmp_path, host="elsewhere.example", heartbeat_s=15.0)
    _silence(tmp_path, lock_module.LOCK_STALE_AFTER_S - 30)
    live = r"heartbeat was heard 9\d s ago; a lock silent for over 120 s"
    with pytest.raises(RunFolderLockedError, match=live):
        acquire_run_lock(tmp_path)
    holder = read_lock(tmp_path)
    assert holder is not None and holder.host == "elsewhere.example"


def test_a_held_lock_beats_and_stops_beating_when_released(tmp_path: Path) -> None:
    held = acquire_run_lock(tmp_path, heartbeat_s=0.05)
    _silence(tmp_path, 1000)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and time.time() - (tmp_path / RunFolder.LOCK).stat().st_mtime > 60:
        time.sleep(0.02)
    assert time.time() - (tmp_path / RunFolder.LOCK).stat().st_mtime < 60  # touched again
    heart = held._heart
    held.release()
    assert heart is not None and not heart.is_alive()
    assert not (tmp_path / RunFolder.LOCK).exists()


def test_sigterm_while_release_waits_for_the_heartbeat_still_removes_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # release() waits for the heartbeat thread; SIGTERM's exception lands in the main thread during
    # that wait most often (a study worker stopped as its run ends), and it must not strand the lock.
    held = acquire_run_lock(tmp_path, heartbeat_s=0.01)
    heart = held._heart
    assert heart is not None
    beating, unblock = threading.Event(), threading.Event()
    real_read_lock = lock_module.read_lock

    def slow_in_the_heartbeat(folder: Path) -> object:
        if threading.current_thread() is heart:
            beating.set()
            unblock.wait(30)  # a beat stuck on a slow shared file system
        return real_read_lock(folder)

    monkeypatch.setattr(lock_module, "read_lock", slow_in_the_heartbeat)
    assert beating.wait(10)

    def sigterm_once_releasing() -> None:
        # release() sets the heartbeat's stop event first; its join then waits up to 5 s.
        if held._stop.wait(30):
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGTERM)

    sigterm = threading.Thread(target=sigterm_once_releasing, daemon=True)
    try:
        with terminate_as_exit(), pytest.raises(Terminated):
            sigterm.start()
            held.release()
            time.sleep(10)  # not reached when the signal lands in release(); a late one lands here
    finally:
        sigterm.join(10)
        unblock.set()
        heart.join(10)
    assert not (tmp_path / RunFolder.LOCK).exists()
    assert not heart.is_alive()


def test_a_lock_taken_over_is_not_kept_alive_by_its_old_owner(tmp_path: Path) -> None:
    # A frozen owner (SIGSTOP) whose lock went stale and was taken: its heartbeat must not revive it.
    held = acquire_run_lock(tmp_path, heartbeat_s=0.05)
    taken = _write_lock(tmp_path, host="elsewhere.example", token="new-owner", heartbeat_s=15.0)
    heart = held._heart
    assert heart is not None
    heart.join(timeout=10)  # it stops at its next beat, seeing another owner's token
    assert not heart.is_alive()
    _silence(tmp_path, 1000)
    time.sleep(0.2)  # four beats' time: nothing touches the new owner's lock
    assert time.time() - (tmp_path / RunFolder.LOCK).stat().st_mtime > 900
    held.release()  # leaves the new owner's lock alone
    assert json.loads((tmp_path / RunFolder.LOCK).read_text(encoding="utf-8")) == taken


def test_waiting_for_live_locks_takes_over_once_the_heartbeat_goes_silent(tmp_path: Path) -> None:
    # A requeued study task on another node finds its killed attempt's lock still fresh.
    _write_lock(tmp_path, host="elsewhere.example", heartbeat_s=15.0)
    _silence(tmp_path, 9.0)
    started = time.monotonic()
    with lock_module.waiting_for_live_locks(30.0), pytest.warns(StaleLockWarning):
        held = acquire_run_lock(tmp_path, stale_after_s=10.0)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 10.0, waited
    held.release()
    # Without the wait, and for a lock without a heartbeat even with one, it fails at once.
    _write_lock(tmp_path, host="elsewhere.example", heartbeat_s=15.0)
    with pytest.raises(RunFolderLockedError):
        acquire_run_lock(tmp_path, stale_after_s=10.0)
    _write_lock(tmp_path, host="elsewhere.example")
    _silence(tmp_path, 1000)
    started = time.monotonic()
    with lock_module.waiting_for_live_locks(30.0), pytest.raises(RunFolderLockedError, match="no heartbeat"):
        acquire_run_lock(tmp_path, stale_after_s=10.0)
    assert time.monotonic() - started < 1.0


def test_unreadable_lock_is_an_error_not_a_takeover(tmp_path: Path) -> None:
    (tmp_path / RunFolder.LOCK).write_text("{", encoding="utf-8")
    with pytest.raises(RunFolderLockedError, match=r"not a readable lock .*expected JSON with pid, host"):
        acquire_run_lock(tmp_path)
    assert (tmp_path / RunFolder.LOCK).read_text(encoding="utf-8") == "{"


def test_release_leaves_a_lock_that_another_process_took_over(tmp_path: Path) -> None:
    lock = acquire_run_lock(tmp_path)
    replacement = _write_lock(tmp_path, token="someone-else")
    lock.release()
    assert json.loads((tmp_path / RunFolder.LOCK).read_text(encoding="utf-8")) == replacement


# -- two real processes ---------------------------------------------------------------------------

# The first run holds the lock and waits at a gate (a file the test creates) before it trains, so
# the second run is certain to start while the first is still running, however slow the machine.
_GATED_RUN = """
import json, sys, time
from pathlib import Path
import inpaintssl as issl
from inpaintssl.training import pretraining

gate, config = Path(sys.argv[1]), json.loads(sys.argv[2])
real = pretraining._pretrain

def gated(config, ctx):
    deadline = time.monotonic() + 300
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return real(config, ctx)

pretraining._pretrain = gated
print(json.dumps({"epochs": issl.pretrain(config).epochs_run}))
"""


def _wait_for(path: Path, process: subprocess.Popen[str], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the first run exited ({process.returncode}): {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.05)


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_two_runs_into_one_folder_one_trains_the_other_stops_with_the_owner(tmp_path: Path) -> None:
    run, gate = tmp_path / "run", tmp_path / "go"
    settings = json.dumps(tiny_pretrain_config(run, optim={"max_epochs": 3}, run={"seed": 5}))
    config = tmp_path / "pretrain.json"
    config.write_text(settings, encoding="utf-8")
    first = subprocess.Popen(
        [sys.executable, "-c", _GATED_RUN, str(gate), settings],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(run / RunFolder.LOCK, first, seconds=120)
        before = _files(run)
        second = subprocess.run(
            [sys.executable, "-m", "inpaintssl", "pretrain", str(config)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert second.returncode == 2, second.stderr
        assert f"is in use by another run: pid {first.pid} on host {socket.gethostname()!r}" in second.stderr
        assert str(run) in second.stderr
        assert _files(run) == before, "the refused run wrote into the folder"
        gate.touch()
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"epochs": 3}
    assert not (run / RunFolder.LOCK).exists()
    assert {"config.yaml", "manifest.json", "splits.json", "metrics.csv"} <= {p.name for p in run.iterdir()}
    assert (run / "checkpoints" / "last" / "COMPLETE.json").is_file()
    assert len((run / "metrics.csv").read_text(encoding="utf-8").splitlines()) == 1 + 3
    events = list((run / "tensorboard").glob("events.*")) if (run / "tensorboard").exists() else []
    assert len(events) <= 1, f"TensorBoard files from more than one run: {events}"

    resumed = subprocess.run(
        [sys.executable, "-m", "inpaintssl", "pretrain", str(config), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["epochs"] == 3
    assert "starting a fresh run" not in resumed.stderr
    assert not (run / RunFolder.LOCK).exists()


def test_pid_alive_never_signals_a_process_where_kill_does_not_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    # On Windows os.kill(pid, 0) sends CTRL_C_EVENT to the process instead of probing it.
    def refuse(pid: int, signal: int) -> None:
        raise AssertionError(f"os.kill({pid}, {signal}) was called")

    monkeypatch.setattr(lock_module.os, "name", "nt")
    monkeypatch.setattr(lock_module.os, "kill", refuse)
    assert lock_module.pid_alive(4242) is True
    assert lock_module.pid_alive(0) is False


def test_a_lock_that_cannot_be_removed_does_not_hide_the_runs_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run folder made read-only mid-run: writing metrics.csv fails, and so does removing the
    # lock. The error the user sees must be the first one, which names the file not written.
    folder = tmp_path / "run"
    lock = acquire_run_lock(folder)
    real_unlink = Path.unlink

    def read_only(path: Path, missing_ok: bool = False) -> None:
        if path.name == RunFolder.LOCK:
            raise PermissionError(13, "Permission denied", str(path))
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    with (
        pytest.raises(PermissionError, match=r"metrics\.csv"),
        pytest.warns(UserWarning, match=r"could not remove the run lock .*\.inpaintssl\.lock"),
        lock,
    ):
        raise PermissionError(13, "Permission denied", str(folder / "metrics.csv"))
    monkeypatch.setattr(Path, "unlink", real_unlink)
    # Without an error in flight, a failed removal is the error.
    other = acquire_run_lock(tmp_path / "other")
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(PermissionError, match=r"\.inpaintssl\.lock"), other:
        pass


@pytest.mark.slow
def test_sigterm_releases_the_lock_so_a_requeue_on_another_node_may_resume(tmp_path: Path) -> None:
    # scancel and preemption send SIGTERM: by Python's default the process ends where it is, and
    # its lock stays behind, which another node cannot tell from a live run. The command exits
    # 143 through its cleanups instead, leaving the folder free for --resume anywhere.
    run = tmp_path / "run"
    config = tmp_path / "pretrain.json"
    settings = tiny_pretrain_config(run, optim={"max_epochs": 400, "steps_per_epoch": 1})
    config.write_text(json.dumps(settings), encoding="utf-8")
    command = [sys.executable, "-m", "inpaintssl", "pretrain", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "checkpoints" / "last" / "COMPLETE.json", process, seconds=120)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert not (run / RunFolder.LOCK).exists()
    assert not list(run.rglob("*.tmp")), "temporaries left behind"
    assert read_lock(run) is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_killed_child_not_yet_reaped_is_not_alive() -> None:
    """A SIGKILLed worker stays a zombie until waited for; kill(pid, 0) alone calls it alive."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert lock_module.pid_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while lock_module.pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(child.pid, 0)  # the zombie still answers the probe: it is not reaped yet
        assert not lock_module.pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not lock_module.pid_alive(child.pid)  # reaped: gone altogether


def test_a_lock_that_cannot_be_written_names_it_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk fails a write once the file exists: half the text lands, then ENOSPC. Before, the
    # error named nothing (or the hidden temporary) and the temporary stayed in the run folder.
    real_write_text = Path.write_text

    def half_then_full(self: Path, data: str, *args: object, **kwargs: object) -> int:
        real_write_text(self, data[: len(data) // 2], encoding="utf-8")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OSError) as caught:
        acquire_run_lock(folder)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert f"could not write run lock {folder / RunFolder.LOCK}: No space left on device" in str(caught.value)
    assert list(folder.iterdir()) == []
    with acquire_run_lock(folder):  # nothing left blocks the next run
        pass
