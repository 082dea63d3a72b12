"""What the remote executors' driver does when the engine or the database says no.

A scheduler refusing a submission, a second driver started at the same moment, a task that dies
before its later runs, a writer on another host, an engine asked for more than it has, and the
sbatch options a cluster needs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from inpaintssl.cli import main
from inpaintssl.config import ConfigError
from inpaintssl.studies import StudyStore, expand_study, load_spec, ray_backend, run_study
from inpaintssl.studies import executors as executors_module
from inpaintssl.studies import worker as worker_module
from inpaintssl.studies.database import ForeignHostError, StudyDatabase
from inpaintssl.studies.executors import SubmissionError, make_backend, run_with_executor
from inpaintssl.studies.merge import merge_results, new_run
from inpaintssl.studies.queue import JobQueue, WorkerId
from inpaintssl.studies.resultfiles import result_path, write_result_file
from inpaintssl.studies.spec import ExecutorSpec, StudySpec
from inpaintssl.studies.worker import Task, TaskReport, run_tasks
from inpaintssl.training.context import FinishedRunWarning
from study_helpers import InstantClock, tiny_spec


def _spec(output: Path, **executor: Any) -> dict[str, Any]:
    """A pretraining run, its fine-tuning run and the baseline, one run per task."""
    spec = tiny_spec(output, label_fractions=[0.5], grid={"pretrain.pretext.task": ["context_restoration"]})
    spec["executor"] = {
        "cluster": "local",
        "cpus_per_task": 1,
        "chunk_size": 1,
        "timeout_min": 10,
        **executor,
    }
    return spec


def _runs(study: StudySpec) -> dict[str, Any]:
    with StudyStore(study.database_path(), read_only=True) as store:
        return {run.id: run for run in store.runs()}


class _Scripted:
    """A scheduler that refuses the submissions its ``script`` says (``busy``: for now; ``refused``:
    for good; ``ok``: accepted, and ``then`` once the script is used up). An accepted task writes
    its runs' result files at once (no training) and ends ``lasts[run]`` seconds later (5 s)."""

    def __init__(
        self,
        study: StudySpec,
        clock: InstantClock,
        script: Sequence[str],
        *,
        then: str = "ok",
        lasts: Any = None,
    ) -> None:
        self.study, self.clock, self.script, self.then = study, clock, list(script), then
        self.lasts: dict[str, float] = dict(lasts or {})
        self.calls: list[list[str]] = []
        self.cancelled: list[list[str]] = []

    def submit(self, batches: Sequence[Sequence[Task]]) -> list[_Ends]:
        self.calls.append([t.run_id for batch in batches for t in batch])
        step = self.script.pop(0) if self.script else self.then
        if step == "busy":
            raise SubmissionError(
                "sbatch refused the study's job array: Socket timed out on send/recv operation",
                transient=True,
            )
        if step == "refused":
            raise SubmissionError(
                "sbatch refused the study's job array: invalid partition specified: gpux; --partition "
                "(executor.partition) is 'gpux'",
                transient=False,
            )
        out = []
        for batch in batches:
            for task in batch:
                write_result_file(self.study.results_dir(), task.run_id, kind=task.kind, result={}, rows=[])
            end = self.clock.now + max(self.lasts.get(t.run_id, 5.0) for t in batch)
            out.append(_Ends(self, [t.run_id for t in batch], end))
        return out

    def close(self) -> None:
        pass


class _Ends:
    label = "scripted"

    def __init__(self, backend: _Scripted, runs: list[str], at: float) -> None:
        self.backend, self.runs, self.at = backend, runs, at

    def done(self) -> bool:
        return self.backend.clock.now >= self.at

    def reports(self) -> list[TaskReport]:
        return [TaskReport(run_id, "done") for run_id in self.runs]

    def cancel(self) -> None:
        self.backend.cancelled.append(self.runs)


def _study_runs(study: StudySpec) -> tuple[str, str, str]:
    """The pretraining run, its fine-tuning run and the baseline."""
    plan = expand_study(study)
    (pre,) = plan.pretrain_jobs()
    (tuned,) = [job for job in plan if job.depends_on == pre.id]
    (baseline,) = [job for job in plan if job.kind == "finetune" and job.depends_on is None]
    return pre.id, tuned.id, baseline.id


# -- a scheduler that refuses a submission -------------------------------------------------------
def test_a_wave_refused_for_now_is_tried_again_and_running_tasks_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy controller ("Socket timed out") refused the fine-tuning wave while the baseline
    # trained: the driver raised, cancelled the baseline and handed its run back.
    study = load_spec(_spec(tmp_path / "study"))
    pre, tuned, baseline = _study_runs(study)
    clock = InstantClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _Scripted(study, clock, ["ok", "busy", "busy", "ok"], lasts={baseline: 500.0})
    run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    assert backend.calls == [[pre, baseline], [tuned], [tuned], [tuned]]
    assert backend.cancelled == []
    runs = _runs(study)
    assert {run.status for run in runs.values()} == {"done"}
    assert (runs[tuned].attempts, runs[tuned].failures) == (1, 0)  # the refused tries cost nothing
    waits = executors_module.SUBMIT_RETRY_S
    assert clock.now == pytest.approx(500.0, abs=1.0)  # the backoff (10 + 30 s) overlapped the baseline
    assert waits[0] + waits[1] < 500.0


def test_a_wave_still_refused_is_handed_back_after_the_running_tasks_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    study = load_spec(_spec(tmp_path / "study"))
    pre, tuned, baseline = _study_runs(study)
    clock = InstantClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _Scripted(study, clock, ["ok"], then="busy", lasts={baseline: 500.0})
    with pytest.raises(SubmissionError, match="Socket timed out") as refused:
        run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    assert refused.value.transient
    tries = len(executors_module.SUBMIT_RETRY_S) + 1
    # Tried again with a backoff, then once more when the baseline's task ended.
    assert backend.calls == [[pre, baseline], *[[tuned]] * (2 * tries)]
    assert backend.cancelled == []
    runs = _runs(study)
    assert runs[pre].status == runs[baseline].status == "done"  # the running task was waited for
    assert (runs[tuned].status, runs[tuned].attempts, runs[tuned].failures) == ("pending", 0, 0)
    err = capsys.readouterr().err
    assert "1 task(s) submitted before keep running" in err and "tried again then" in err


def test_a_wave_refused_for_good_submits_nothing_more_and_keeps_running_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = load_spec(_spec(tmp_path / "study"))
    pre, tuned, baseline = _study_runs(study)
    clock = InstantClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _Scripted(study, clock, ["ok", "refused"], lasts={baseline: 500.0})
    with pytest.raises(SubmissionError, match="--partition") as refused:
        run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    assert not refused.value.transient
    assert backend.calls == [[pre, baseline], [tuned]]  # no retry of what cannot pass
    assert backend.cancelled == []
    runs = _runs(study)
    assert runs[baseline].status == "done" and clock.now == pytest.approx(500.0, abs=1.0)
    assert (runs[tuned].status, runs[tuned].attempts) == ("pending", 0)


_SBATCH_REFUSES_PARTITION = """\
echo "sbatch: error: invalid partition specified: gpux" >&2
echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
exit 1"""
_SBATCH_BUSY = """\
echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
exit 1"""
_SBATCH_ACCEPTS = """\
for a in "$@"; do f="$a"; done
cp "$f" {folder}/script.sh
echo "Submitted batch job 4242\""""


def _fake_slurm(folder: Path, monkeypatch: pytest.MonkeyPatch, *, sbatch: str) -> Path:
    """Slurm's commands on ``PATH``, with ``sbatch`` running ``sbatch`` (a bash body); returns
    the folder, where the accepting ``sbatch`` leaves the script it was given (``script.sh``)."""
    folder.mkdir()
    for name, body in {
        "sbatch": sbatch,
        "srun": "exit 0",
        "sacct": 'echo "JobID|State"',
        "scancel": "exit 0",
    }.items():
        command = folder / name
        command.write_text("#!/bin/bash\n" + body.format(folder=folder) + "\n")
        command.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def test_a_partition_sbatch_refuses_is_one_line_naming_the_flag_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: submitit's traceback and exit 1, the status of "some runs failed".
    pytest.importorskip("submitit")
    _fake_slurm(tmp_path / "bin", monkeypatch, sbatch=_SBATCH_REFUSES_PARTITION)
    spec = _spec(tmp_path / "study", cluster="slurm")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert (
        main(["experiment", "run", str(path), "--executor", "slurm", "--partition", "gpux", "--quiet"]) == 2
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("inpaintssl experiment: error: sbatch refused the study's job array: ")
    assert "Invalid partition name specified" in line
    assert "--partition (executor.partition) is 'gpux'; expected a partition" in line
    runs = _runs(load_spec(spec))
    assert {(run.status, run.attempts) for run in runs.values()} == {("pending", 0)}


def test_a_busy_slurm_controller_is_a_refusal_for_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit")
    _fake_slurm(tmp_path / "bin", monkeypatch, sbatch=_SBATCH_BUSY)
    study = load_spec(_spec(tmp_path / "study", cluster="slurm"))
    pre = expand_study(study).pretrain_jobs()[0]
    backend = make_backend("slurm", study, quiet=True)
    try:
        with pytest.raises(SubmissionError, match="Socket timed out") as refused:
            backend.submit([[Task.from_job(pre)]])
    finally:
        backend.close()
    assert refused.value.transient


# -- more sbatch options --------------------------------------------------------------------------
def test_slurm_options_of_the_spec_reach_the_sbatch_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit")
    folder = _fake_slurm(tmp_path / "bin", monkeypatch, sbatch=_SBATCH_ACCEPTS)
    options = {"account": "proj42", "qos": "high", "constraint": "a100"}
    study = load_spec(_spec(tmp_path / "study", cluster="slurm", slurm_options=options))
    pre = expand_study(study).pretrain_jobs()[0]
    backend = make_backend("slurm", study, quiet=True)
    try:
        (submission,) = backend.submit([[Task.from_job(pre)]])
    finally:
        backend.close()
    assert submission.label == "slurm:4242"
    script = (folder / "script.sh").read_text().splitlines()
    assert {"#SBATCH --account=proj42", "#SBATCH --qos=high", "#SBATCH --constraint=a100"} <= set(script)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"acount": "proj42"}, "executor.slurm_options 'acount': not an sbatch option this executor "),
        ({"acount": "proj42"}, "did you mean 'account'?"),
        ({"partition": "gpu"}, "executor.slurm_options 'partition': set by --partition (executor.partition)"),
        ({"qos": " "}, "executor.slurm_options 'qos': expected a value (as in qos=VALUE); found ' '"),
    ],
)
def test_slurm_options_are_checked_before_anything_is_submitted(
    tmp_path: Path, options: dict[str, str], expected: str
) -> None:
    pytest.importorskip("submitit")
    study = load_spec(_spec(tmp_path / "study", slurm_options=options))
    with pytest.raises(ConfigError) as refused:
        make_backend("slurm", study, quiet=True)
    assert expected in str(refused.value)


def _run_args(spec: Path, executor: str, **flags: Any) -> argparse.Namespace:
    return argparse.Namespace(
        experiment_command="run", spec=spec, shard="0/1", workers=1, quiet=True, executor=executor, **flags
    )


def test_the_slurm_option_flag_is_parsed_checked_and_slurm_only(
    spec_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaintssl.cli import experiment as experiment_cli

    class AcceptedError(Exception):
        """Stops the command once its flags reached run_study."""

    def run_study(*args: Any, resources: dict[str, Any], **kwargs: Any) -> None:
        raise AcceptedError(resources)

    monkeypatch.setattr(experiment_cli, "run_study", run_study)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_factory()))
    given = ["account=proj42", "qos=high"]
    with pytest.raises(AcceptedError) as accepted:
        experiment_cli.run_experiment_command(_run_args(path, "slurm", slurm_options=given))
    assert accepted.value.args == ({"slurm_options": {"account": "proj42", "qos": "high"}},)
    with pytest.raises(ValueError, match=r"--slurm-option 'account': expected KEY=VALUE"):
        experiment_cli.run_experiment_command(_run_args(path, "slurm", slurm_options=["account"]))
    with pytest.raises(ConfigError, match=r"--slurm-option 'acount': .*did you mean 'account'"):
        experiment_cli.run_experiment_command(_run_args(path, "slurm", slurm_options=["acount=x"]))
    with pytest.raises(ValueError, match=r"^--slurm-option applies to --executor slurm; the local"):
        experiment_cli.run_experiment_command(_run_args(path, "local", slurm_options=given))
    with pytest.raises(ValueError, match=r"^--slurm-option applies to --executor slurm only"):
        experiment_cli.run_experiment_command(_run_args(path, "ray", slurm_options=given))


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--gpus-per-task", "-1", "--gpus-per-task (executor.gpus_per_task) is -1; expected >= 0"),
        ("--cpus-per-task", "0", "--cpus-per-task (executor.cpus_per_task) is 0; expected >= 1"),
        ("--timeout-min", "0", "--timeout-min (executor.timeout_min) is 0; expected >= 1"),
        ("--chunk-size", "0", "--chunk-size (executor.chunk_size) is 0; expected >= 1"),
        ("--array-parallelism", "0", "--array-parallelism (executor.array_parallelism) is 0; expected >= 1"),
        ("--mem-gb", "inf", "--mem-gb (executor.mem_gb) is inf; expected a finite number of GB"),
    ],
)
def test_an_invalid_resource_flag_is_named_as_typed_with_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, said: str
) -> None:
    # Was: "invalid executor resources {'gpus_per_task': -1, 'cluster': 'local'}: gpus_per_task:
    # Input should be greater than or equal to 0", naming a field of a dict, not the flag typed.
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path / "study")))
    command = ["experiment", "run", str(path), "--executor", "slurm", "--cluster", "local"]
    assert main([*command, f"{flag}={value}", "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"inpaintssl experiment: error: {said}")
    assert "{" not in line  # no dict of the flags given
    assert not load_spec(_spec(tmp_path / "study")).database_path().exists()  # refused before anything


@pytest.mark.parametrize("mem_gb", [float("inf"), float("nan"), 0.0005, 1 / 1024 - 1e-9, 0.0])
def test_a_memory_slurm_and_ray_cannot_be_sent_is_refused_naming_the_field(mem_gb: float) -> None:
    # Was: inf passed, then overflowed in submitit or Ray (a traceback, exit 1); under 1 MB was sent
    # to sbatch as --mem=0MB, which Slurm reads as all of a node's memory.
    with pytest.raises(ConfigError) as refused:
        load_spec({"study": "clinical", "executor": {"mem_gb": mem_gb}})
    message = str(refused.value)
    assert "executor.mem_gb: expected a finite number of GB, at least 1/1024 (1 MB" in message
    assert f"(found {mem_gb!r})" in message


def test_the_least_memory_reaches_sbatch_and_ray_as_one_megabyte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit")
    folder = _fake_slurm(tmp_path / "bin", monkeypatch, sbatch=_SBATCH_ACCEPTS)
    study = load_spec(_spec(tmp_path / "study", cluster="slurm", mem_gb=1 / 1024))
    backend = make_backend("slurm", study, quiet=True)
    try:
        backend.submit([[Task.from_job(expand_study(study).pretrain_jobs()[0])]])
    finally:
        backend.close()
    assert "#SBATCH --mem=1MB" in (folder / "script.sh").read_text().splitlines()
    assert ray_backend.ray_options(study.executor)["memory"] == 2**20  # 1 MiB, in bytes


# -- two drivers started at once ----------------------------------------------------------------
def test_of_two_drivers_marking_the_same_runs_only_the_first_takes_them(tmp_path: Path) -> None:
    path = tmp_path / "study.sqlite"
    with JobQueue(path) as queue:
        queue.add_runs([new_run(job) for job in expand_study(load_spec(_spec(tmp_path / "study")))])
        ids = [run.id for run in queue.runs() if run.depends_on is None]  # ready: no pretraining to wait on
    first, second = WorkerId.current(), WorkerId.current()
    with JobQueue(path) as one, JobQueue(path) as two:
        assert one.mark_submitted(ids, first, max_attempts=2) == ids
        assert two.mark_submitted(ids, second, max_attempts=2) == []
        assert {run.worker for run in two.runs() if run.id in ids} == {str(first)}


def test_a_driver_submits_no_run_that_another_driver_took_since_it_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two drivers started at the same moment both read the runs as ready; the second one's
    # marking overwrote the first's, and both submitted them: each run trained twice at once.
    study = load_spec(_spec(tmp_path / "study"))
    read = executors_module._Driver.ready

    def read_then_taken_by_another_driver(self: Any, in_flight: set[str]) -> list[Any]:
        found = read(self, in_flight)
        conn = sqlite3.connect(study.database_path())
        try:
            with conn:
                conn.executemany(
                    "UPDATE runs SET status = 'running', worker = 'node-z:7:other', host = 'node-z', "
                    "pid = 7, heartbeat = ?, attempts = attempts + 1 WHERE id = ?",
                    [(time.time(), job.id) for job in found],
                )
        finally:
            conn.close()
        return found

    monkeypatch.setattr(executors_module._Driver, "ready", read_then_taken_by_another_driver)
    clock = InstantClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _Scripted(study, clock, [])
    assert run_with_executor(study, executor="slurm", backend=backend, quiet=True) == []
    assert backend.calls == []
    taken = [run for run in _runs(study).values() if run.status == "running"]
    assert taken and {(run.worker, run.attempts) for run in taken} == {("node-z:7:other", 1)}


def test_a_database_file_another_driver_is_creating_is_waited_for(tmp_path: Path) -> None:
    # Two drivers started together create the file at once. The one whose switch to WAL met the
    # other's write lock got "database is locked" at once (SQLite calls no busy handler there) and
    # died with a raw traceback. Here the other driver is mid-write in the new file.
    path = tmp_path / "study.sqlite"
    creating = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    creating.execute("PRAGMA user_version = 1")  # the file exists, not in WAL mode yet
    creating.execute("BEGIN IMMEDIATE")
    creating.execute("PRAGMA user_version = 2")
    done = threading.Timer(0.5, creating.execute, ("COMMIT",))
    done.start()
    try:
        with StudyDatabase(path, timeout_s=10.0) as database:
            assert database.owner == socket.gethostname()
    finally:
        done.join()
        creating.close()


# -- a task that dies -----------------------------------------------------------------------------
class _NodeLostError(BaseException):
    """Ends a task as a lost node does: no run of it gets to report anything."""


class _DiesInItsFirstRun:
    """Each task starts its first run for real (``run_tasks``) and dies in it."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self.submitted: list[list[str]] = []

    def submit(self, batches: Sequence[Sequence[Task]]) -> list[Any]:
        out = []
        for batch in batches:
            self.submitted.append([t.run_id for t in batch])
            with pytest.raises(_NodeLostError):
                run_tasks(list(batch), results=self.results)
            out.append(_Died())
        return out

    def close(self) -> None:
        pass


class _Died:
    label = "slurm:77_0"

    def done(self) -> bool:
        return True

    def reports(self) -> list[TaskReport]:
        raise RuntimeError("job 77_0 OUT_OF_MEMORY")

    def cancel(self) -> None:
        pass


def test_a_dead_task_charges_no_run_it_never_reached_whose_folder_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The baseline's run folder is left from an earlier invocation. A task holding pretraining and
    # the baseline died in pretraining: "the folder exists" was read as "this task started it", so
    # two such deaths failed the baseline for good though no task had reached it.
    study = load_spec({**_spec(tmp_path / "study", chunk_size=2), "max_attempts": 2})
    pre, tuned, baseline = _study_runs(study)
    jobs = {job.id: job for job in expand_study(study)}
    Path(jobs[baseline].config.run.output_dir).mkdir(parents=True)

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise _NodeLostError

    monkeypatch.setattr(worker_module, "execute_job", lost)
    backend = _DiesInItsFirstRun(study.results_dir())
    run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    # Pretraining died twice (its dependant is blocked); the baseline then died twice on its own.
    assert backend.submitted == [[pre, baseline], [pre, baseline], [baseline], [baseline]]
    runs = _runs(study)
    assert {run_id: (runs[run_id].failures, runs[run_id].attempts) for run_id in (pre, baseline)} == {
        pre: (2, 2),
        baseline: (2, 2),
    }
    assert runs[tuned].status == "failed" and (runs[tuned].error or "").startswith("blocked")
    assert not list((study.results_dir() / ".started").iterdir())  # the driver read its markers


# -- a writer on another host ---------------------------------------------------------------------
def _files(database: Path) -> dict[str, str | None]:
    """The database and its -wal and -shm files: a digest of each, ``None`` where absent."""
    found: dict[str, str | None] = {}
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        found[path.name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    return found


def test_a_refused_writer_on_another_host_leaves_the_database_files_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refused writer had switched the file to WAL, taken the write lock and, closing, folded
    # the owner's live write-ahead log into the file and deleted it (with its -shm).
    study = load_spec(_spec(tmp_path / "study"))
    database = study.database_path()
    database.parent.mkdir(parents=True)
    # The owner's driver: runs registered, its log not checkpointed, still "connected" (killed).
    owner = textwrap.dedent(
        f"""
        import os
        from inpaintssl.studies.store import StudyStore
        from inpaintssl.studies.queue import NewRun
        store = StudyStore({str(database)!r})
        store._conn.execute("PRAGMA wal_autocheckpoint = 0")
        store.add_runs([NewRun(f"pt-{{i}}", "pretrain", None, {{}}, {{}}) for i in range(50)])
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", owner], check=True)
    pre = expand_study(study).pretrain_jobs()[0]
    write_result_file(study.results_dir(), pre.id, kind="pretrain", result={}, rows=[])  # not merged yet
    before = _files(database)
    assert before[f"{database.name}-wal"] is not None
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    for refused in (lambda: StudyDatabase(database), lambda: merge_results(study)):  # merge: `report`
        with pytest.raises(ForeignHostError, match="belongs to host"):
            refused()
        after = _files(database)
        assert after[database.name] == before[database.name]
        assert after[f"{database.name}-wal"] == before[f"{database.name}-wal"]
        # Its read-only look recorded its read mark in -shm, as every SQLite reader of a log does.
        assert after[f"{database.name}-shm"] is not None


def test_a_study_moved_aside_is_rebuilt_on_another_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the refusal tells a user whose job was requeued onto another node: move the database
    # aside and run again. Runs with a result file are taken from it, and a run recorded in the
    # old database only (a local worker's) resumes its folder's last checkpoint and is not retrained.
    pytest.importorskip("submitit")
    spec = _spec(tmp_path / "study")
    study = load_spec(spec)
    pre, tuned, baseline = _study_runs(study)

    class InProcess:
        def submit(self, batches: Sequence[Sequence[Task]]) -> list[Any]:
            return [_Ran(run_tasks(list(batch), results=study.results_dir())) for batch in batches]

        def close(self) -> None:
            pass

    run_with_executor(study, executor="slurm", backend=InProcess(), quiet=True)
    assert {run.status for run in _runs(study).values()} == {"done"}
    result_path(study.results_dir(), tuned).unlink()

    def epochs(run_id: str) -> list[str]:
        with open(study.runs_dir() / run_id / "metrics.csv", newline="") as handle:
            return [row["epoch"] for row in csv.DictReader(handle)]

    trained = epochs(tuned)
    database = study.database_path()
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    with pytest.raises(ForeignHostError) as refused:
        run_study(spec, quiet=True)
    message = str(refused.value)
    assert f"move {database} aside and run the same command here" in message
    assert "spread it over machines" not in message  # the advice a slurm user was already following
    database.rename(tmp_path / "aside.sqlite")
    with pytest.warns(FinishedRunWarning, match="nothing is left to train"):
        summary = run_study(spec, quiet=True)
    assert summary.complete, summary.errors
    assert summary.executed == {"finetune": 1}  # the two runs with a result file were merged
    runs = _runs(study)
    assert runs[tuned].result is not None and runs[tuned].result["resumed"] is True
    assert epochs(tuned) == trained
    assert {runs[pre].attempts, runs[baseline].attempts} == {0}
    with StudyStore(database, read_only=True) as store:
        assert store.owner == "node-b"


class _Ran:
    label = "inprocess"

    def __init__(self, reports: list[TaskReport]) -> None:
        self._reports = reports

    def done(self) -> bool:
        return True

    def reports(self) -> list[TaskReport]:
        return self._reports

    def cancel(self) -> None:
        pass


# -- Ray: an address it cannot reach, a request no node meets ------------------------------------
class _FakeRay(types.SimpleNamespace):
    """``ray`` with one cluster node of ``resources``, or an ``init`` that raises ``refusal``."""

    def __init__(self, resources: dict[str, float], refusal: Exception | None = None) -> None:
        super().__init__(resources=resources, refusal=refusal, initialized=False, shut_down=False)

    def is_initialized(self) -> bool:
        return bool(self.initialized)

    def init(self, **kwargs: Any) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.initialized = True

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True, "NodeManagerAddress": "10.0.0.7", "Resources": self.resources}]

    def remote(self, function: Any) -> Any:
        return types.SimpleNamespace(options=lambda **options: function)

    def shutdown(self) -> None:
        self.shut_down = True


def test_a_ray_cluster_that_cannot_be_reached_names_the_ray_address_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray's message told the user to set "the `--address` flag", which `experiment run` lacks.
    refusal = ConnectionError(
        "Could not find any running Ray instance. Please specify the one to connect to by setting "
        "`--address` flag or `RAY_ADDRESS` environment variable."
    )
    fake = _FakeRay({"CPU": 4.0}, refusal)
    monkeypatch.setattr(ray_backend, "import_optional", lambda *args, **kwargs: fake)
    with pytest.raises(ConfigError) as refused:
        ray_backend.RayBackend(ExecutorSpec(ray_address="auto"), results=tmp_path, quiet=True)
    message = str(refused.value)
    assert "--ray-address (executor.ray_address) 'auto'" in message
    assert "Could not find any running Ray instance" in message and "`--address` flag" not in message
    assert len(message.splitlines()) == 1


def _closed_port() -> int:
    """A local TCP port where nothing listens (bound, then let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_ray_address_where_nothing_listens_is_refused_at_once_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: ray.init retried a host:port without a Ray cluster for ever ("Failed to get cluster ID
    # from GCS server: TimedOut"), and the driver hung. The fake's init connects to anything: only
    # the driver's own check can refuse the address.
    fake = _FakeRay({"CPU": 4.0})
    monkeypatch.setattr(ray_backend, "import_optional", lambda *args, **kwargs: fake)
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        ray_backend.RayBackend(ExecutorSpec(ray_address=address), results=tmp_path, quiet=True)
    assert time.monotonic() - started < 5.0
    message = str(refused.value)
    assert (
        message.count(f"--ray-address (executor.ray_address) {address!r}: nothing accepted a connection") == 1
    )
    assert message.count("expected the address of a running cluster") == 1
    assert len(message.splitlines()) == 1
    assert not fake.initialized  # refused before ray.init, which would have waited
    # The command line: one line and exit 2, as for every other address Ray cannot use.
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path / "study")))
    assert (
        main(["experiment", "run", str(path), "--executor", "ray", "--ray-address", address, "--quiet"]) == 2
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"--ray-address (executor.ray_address) {address!r}" in line


def test_a_ray_address_where_something_listens_is_left_to_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeRay({"CPU": 4.0})
    monkeypatch.setattr(ray_backend, "import_optional", lambda *args, **kwargs: fake)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        ray_backend.RayBackend(ExecutorSpec(ray_address=address), results=tmp_path, quiet=True).close()
    assert fake.initialized and fake.shut_down


@pytest.mark.parametrize(
    ("resources", "named"),
    [
        ({"gpus_per_task": 1}, "1 GPU (--gpus-per-task, executor.gpus_per_task)"),
        ({"cpus_per_task": 8}, "8 CPU (--cpus-per-task, executor.cpus_per_task)"),
        ({"mem_gb": 64.0}, "64 GiB of memory (--mem-gb, executor.mem_gb)"),
    ],
)
def test_a_ray_task_no_node_can_run_is_refused_before_anything_is_submitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resources: dict[str, Any], named: str
) -> None:
    # Ray waited for such a task without end (a GPU task on a cluster without GPUs).
    fake = _FakeRay({"CPU": 4.0, "memory": 16.0 * 2**30})
    monkeypatch.setattr(ray_backend, "import_optional", lambda *args, **kwargs: fake)
    with pytest.raises(ConfigError, match="no node of the Ray cluster can run one task") as refused:
        ray_backend.RayBackend(ExecutorSpec(**resources), results=tmp_path, quiet=True)
    assert named in str(refused.value)
    assert "4 CPU, 0 GPU, 16.0 GiB on the largest" in str(refused.value)
    assert fake.shut_down  # the connection it opened is closed again
    fits = _FakeRay({"CPU": 8.0, "GPU": 1.0, "memory": 64.0 * 2**30})
    monkeypatch.setattr(ray_backend, "import_optional", lambda *args, **kwargs: fits)
    ray_backend.RayBackend(ExecutorSpec(**resources), results=tmp_path, quiet=True).close()


@pytest.mark.slow
def test_a_gpu_task_on_a_local_ray_instance_without_gpus_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The docs' own command with --gpus-per-task 1 on a workstation without GPUs waited forever.
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path / "study")))
    started = time.monotonic()
    assert main(["experiment", "run", str(path), "--executor", "ray", "--gpus-per-task", "1", "--quiet"]) == 2
    assert time.monotonic() - started < 300
    assert "no node of the Ray cluster can run one task" in capsys.readouterr().err
    import ray

    assert not ray.is_initialized()


class _StoppedError(Exception):
    """Ends the driver once it has submitted (the fake sbatch runs nothing)."""


def _stop_driver(self: Any, in_flight: Any) -> None:
    raise _StoppedError


def test_the_slurm_option_flag_reaches_the_sbatch_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit")
    folder = _fake_slurm(tmp_path / "bin", monkeypatch, sbatch=_SBATCH_ACCEPTS)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path / "study", cluster="slurm", chunk_size=3)))
    monkeypatch.setattr(executors_module._Driver, "_wait", _stop_driver)
    with pytest.raises(_StoppedError):
        main(
            [
                "experiment",
                "run",
                str(path),
                "--executor",
                "slurm",
                "--quiet",
                "--slurm-option",
                "account=proj42",
                "--slurm-option",
                "qos=high",
            ]
        )
    script = (folder / "script.sh").read_text().splitlines()
    assert {"#SBATCH --account=proj42", "#SBATCH --qos=high"} <= set(script)


def test_a_ray_address_environment_variable_where_nothing_listens_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: without --ray-address, ray.init read RAY_ADDRESS and retried an unreachable host:port
    # for ever; the driver's own check looked at the flag only.
    fake = _FakeRay({"CPU": 4.0})
    monkeypatch.setattr(ray_backend, "import_optional", lambda *args, **kwargs: fake)
    address = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        ray_backend.RayBackend(ExecutorSpec(), results=tmp_path, quiet=True)
    assert time.monotonic() - started < 5.0
    message = str(refused.value)
    assert f"the RAY_ADDRESS environment variable's {address!r}" in message
    assert "nothing accepted a connection" in message and "and no RAY_ADDRESS" not in message
    assert len(message.splitlines()) == 1
    assert not fake.initialized
    # An address given in the spec or on the command line is the one checked, as ray.init uses it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        listening = f"127.0.0.1:{head.getsockname()[1]}"
        ray_backend.RayBackend(ExecutorSpec(ray_address=listening), results=tmp_path, quiet=True).close()
    assert fake.initialized and fake.shut_down


def test_a_slurm_option_given_twice_is_refused_naming_both_values(
    spec_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: mail-type=END then mail-type=FAIL reached sbatch as FAIL alone, without a word.
    from inpaintssl.cli import experiment as experiment_cli

    submitted: list[dict[str, Any]] = []
    monkeypatch.setattr(
        experiment_cli, "run_study", lambda *args, resources, **kwargs: submitted.append(resources)
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_factory()))
    given = ["mail-type=END", "account=proj42", " mail-type = FAIL"]
    with pytest.raises(ValueError, match=r"^--slurm-option mail-type given twice \('END', then 'FAIL'\)"):
        experiment_cli.run_experiment_command(_run_args(path, "slurm", slurm_options=given))
    flags = [arg for option in given for arg in ("--slurm-option", option)]
    assert main(["experiment", "run", str(path), "--executor", "slurm", *flags, "--quiet"]) == 2
    assert (
        "--slurm-option mail-type given twice ('END', then 'FAIL'); give each once" in capsys.readouterr().err
    )
    assert submitted == []  # refused before anything was submitted
