"""Study executors on existing engines: submitit (its local executor, real subprocesses) and Ray.

Results must match the local executor's exactly; only the driver writes the database, once per
result, and another host can never write it.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import socket
import sqlite3
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from inpaintssl.cli import main
from inpaintssl.layout import RunFolder
from inpaintssl.studies import StudyStore, expand_study, load_spec, run_study
from inpaintssl.studies import worker as worker_module
from inpaintssl.studies.database import StudyDatabase, StudyDatabaseError
from inpaintssl.studies.executors import run_with_executor
from inpaintssl.studies.merge import MergeReport, merge_results
from inpaintssl.studies.report import report_study
from inpaintssl.studies.resultfiles import (
    ResultFileError,
    read_result_file,
    result_files,
    result_path,
    write_result_file,
)
from inpaintssl.studies.worker import Task, TaskReport, run_tasks
from inpaintssl.training import lock as lock_module
from inpaintssl.training.lock import StaleLockWarning
from study_helpers import (
    CLASSES,
    TEST_SLICES,
    TEST_VOLUMES,
    VAL_SLICES,
    InstantClock,
    kill_study_after_first_checkpoint,
    tiny_spec,
)

# One pretext task, one label fraction: a pretraining run, its fine-tuning run and the baseline.
RUNS = 3
PRETRAIN_ROWS = VAL_SLICES * 3  # l2_norm, l2_norm_corrupted, l2_loss per validation image
FINETUNE_ROWS = (TEST_SLICES + TEST_VOLUMES) * (len(CLASSES) + 1)  # Dice per class and mean


def _spec(output: Path, **executor: Any) -> dict[str, Any]:
    spec = tiny_spec(output, label_fractions=[0.5], grid={"pretrain.pretext.task": ["context_restoration"]})
    # Submitit's local executor starts every array task at once: two chunks keep this 2-core
    # machine from running three torch processes side by side.
    spec["executor"] = {
        "cluster": "local",
        "cpus_per_task": 1,
        "chunk_size": 2,
        "timeout_min": 10,
        **executor,
    }
    return spec


def _tables(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What a study computed: its runs and every measurement.

    Left out: timing, attempts, and the config, which names each study's own run folders (the run
    ids hash everything else in it).
    """
    conn = sqlite3.connect(database)
    try:
        runs = conn.execute("SELECT id, kind, depends_on, config, labels, status FROM runs ORDER BY id")
        rows = conn.execute(
            "SELECT * FROM measurements ORDER BY run_id, level, volume_id, slice_index, metric, class_name"
        )
        return {
            "runs": [(*r[:3], json.loads(r[4]), r[5]) for r in runs.fetchall()],
            "measurements": rows.fetchall(),
        }
    finally:
        conn.close()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Any, ...]]]:
    """The tiny study run by the local executor (today's behaviour), once for this module."""
    spec = _spec(tmp_path_factory.mktemp("local") / "study")
    summary = run_study(spec, quiet=True)
    assert summary.complete, summary.errors
    return _tables(load_spec(spec).database_path())


def _assert_same_study(database: Path, reference: dict[str, list[tuple[Any, ...]]]) -> None:
    got = _tables(database)
    assert [r[:2] for r in got["runs"]] == [r[:2] for r in reference["runs"]]  # same run ids and kinds
    assert [r[2:] for r in got["runs"]] == [r[2:] for r in reference["runs"]]  # dependencies, labels, done
    assert got["measurements"] == reference["measurements"]  # every metric, bit for bit


# -- one writer per database ------------------------------------------------------------------
def test_a_database_refuses_a_writer_on_another_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "study.sqlite"
    here = socket.gethostname()
    with StudyStore(path) as store:
        assert store.owner == here
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    with pytest.raises(StudyDatabaseError) as caught:
        StudyStore(path)
    message = str(caught.value)
    assert str(path) in message and repr("node-b") in message and repr(here) in message
    assert "--executor slurm" in message
    # Readers may look from anywhere, and writing nothing leaves the owner as it was.
    with StudyStore(path, read_only=True) as store:
        assert store.runs() == [] and store.owner == here


def test_a_study_run_from_another_host_exits_2(
    spec_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = spec_factory(label_fractions=[0.5], baseline=False)
    StudyDatabase(load_spec(spec).database_path()).close()  # created on this host
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    assert main(["experiment", "run", str(path), "--quiet"]) == 2
    assert "belongs to host" in capsys.readouterr().err
    assert main(["experiment", "status", str(path)]) == 0  # reading from elsewhere is fine


def test_the_remote_worker_opens_no_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(_spec(tmp_path / "study"))
    (pre,) = expand_study(spec).pretrain_jobs()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a remote worker opened a study database")

    monkeypatch.setattr(StudyDatabase, "__init__", refuse)
    assert not hasattr(Task, "database") and "database" not in run_tasks.__code__.co_varnames
    (report,) = run_tasks([Task.from_job(pre)], results=spec.results_dir())
    assert report.status == "done", report.error
    assert read_result_file(spec.results_dir() / f"{pre.id}.json").kind == "pretrain"
    # A task whose result file exists (a requeued array task) does not train it again.
    assert run_tasks([Task.from_job(pre)], results=spec.results_dir())[0].status == "skipped"


def test_a_node_without_the_drivers_folder_refuses_a_relative_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The driver ran in a folder this node lacks (not on a shared file system): a relative run
    # folder would be trained on this node's own disk and lost to the study.
    monkeypatch.chdir(tmp_path)
    spec = load_spec(_spec(Path("study")))
    (pre,) = expand_study(spec).pretrain_jobs()
    task = dataclasses.replace(Task.from_job(pre), cwd=str(tmp_path / "driver-only"))
    (node := tmp_path / "node").mkdir()
    monkeypatch.chdir(node)
    (report,) = run_tasks([task], results=tmp_path / "results")
    assert report.status == "failed"
    assert report.error.startswith(f"run {pre.id}: its run folder 'study/runs/{pre.id}' is relative")
    assert f"{tmp_path / 'driver-only'}, which does not exist on " in report.error
    assert not any(node.iterdir()) and not (tmp_path / "results").exists()
    # An absolute run folder does not depend on the driver's folder.
    absolute = load_spec(_spec(tmp_path / "study"))
    (pre,) = expand_study(absolute).pretrain_jobs()
    task = dataclasses.replace(Task.from_job(pre), cwd=str(tmp_path / "driver-only"))
    assert run_tasks([task], results=absolute.results_dir())[0].status == "done"


def test_a_requeued_task_on_another_node_waits_for_its_killed_attempts_lock_to_go_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attempt killed on node-a left its lock, still fresh when the requeued task starts here.
    spec = load_spec(_spec(tmp_path / "study"))
    (pre,) = expand_study(spec).pretrain_jobs()
    folder = Path(pre.config.run.output_dir)
    folder.mkdir(parents=True)
    lock_file = folder / RunFolder.LOCK
    killed = {"pid": 4242, "host": "node-a", "since": "2026-12-01T10:00:00+00:00", "token": "t"}
    lock_file.write_text(json.dumps({**killed, "heartbeat_s": 1.0}), encoding="utf-8")
    monkeypatch.setattr(lock_module, "LOCK_STALE_AFTER_S", 3.0)  # two minutes in production
    monkeypatch.setattr(worker_module, "LOCK_STALE_AFTER_S", 3.0)
    monkeypatch.setattr(worker_module, "LOCK_HEARTBEAT_S", 1.0)
    started = time.monotonic()
    with pytest.warns(StaleLockWarning, match="node-a"):
        (report,) = run_tasks([Task.from_job(pre)], results=spec.results_dir())
    assert report.status == "done", report.error
    assert time.monotonic() - started >= 2.0  # it waited for the silence, then trained
    assert read_result_file(spec.results_dir() / f"{pre.id}.json").kind == "pretrain"
    assert not lock_file.exists()


# -- merging ----------------------------------------------------------------------------------
def _dump(database: Path) -> list[str]:
    conn = sqlite3.connect(database)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_merging_the_same_result_files_twice_changes_nothing(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path / "study"))
    (pre,) = expand_study(spec).pretrain_jobs()
    run_tasks([Task.from_job(pre)], results=spec.results_dir())
    first = merge_results(spec)
    assert (first.merged, first.same) == (1, 0)
    before = _dump(spec.database_path())
    again = merge_results(spec)
    assert (again.merged, again.same, again.different) == (0, 1, ())
    assert _dump(spec.database_path()) == before
    with StudyStore(spec.database_path()) as store:
        assert {r.id: r.status for r in store.runs()} == {pre.id: "done"}

    # A second result of the same run with other numbers (trained again elsewhere) is reported and
    # the recorded one kept.
    path = spec.results_dir() / f"{pre.id}.json"
    original = path.read_text()
    data = json.loads(original)
    data["rows"][0][-1] += 1.0
    path.write_text(json.dumps(data))
    assert merge_results(spec).different == (pre.id,)
    assert _dump(spec.database_path()) == before

    with pytest.warns(UserWarning, match=rf"result file {path} holds other measurements .* are kept"):
        merge_results(spec).warn(results_dir=spec.results_dir())

    # A damaged file of a run already recorded loses nothing: ignored, with a warning.
    path.write_text("{not json")
    damaged = merge_results(spec)
    assert damaged.damaged == (pre.id,) and _dump(spec.database_path()) == before
    with pytest.warns(UserWarning, match=rf"result file {path} is damaged, but run {pre.id} is recorded"):
        damaged.warn(results_dir=spec.results_dir())
    # A damaged file of a run not recorded yet is an error: that run's result would be lost.
    (fine,) = [j for j in expand_study(spec).finetune_jobs() if j.depends_on == pre.id]
    (spec.results_dir() / f"{fine.id}.json").write_text("{not json")
    with pytest.raises(ResultFileError, match=rf"result file .*{fine.id}\.json"):
        merge_results(spec)
    (spec.results_dir() / f"{fine.id}.json").unlink()
    path.write_text(original)
    # A file of a run the spec no longer plans is named, not merged.
    (spec.results_dir() / "ft-0123456789abcdef.json").write_text(path.read_text())
    stray = merge_results(spec)
    assert stray == MergeReport(same=1, unknown=("ft-0123456789abcdef",))
    with pytest.warns(UserWarning, match=r"1 result file\(s\) in .* belong to runs this spec does not plan"):
        stray.warn(results_dir=spec.results_dir())


def test_a_shard_merges_its_own_result_files_and_calls_no_other_shards_file_unplanned(tmp_path: Path) -> None:
    # Was: `run --shard 1/2` on a finished study warned that shard 0's result files "belong to runs
    # this spec (shard) does not plan"; they are planned, and recorded, and deleting them would lose
    # the durable record of their runs.
    given = tiny_spec(tmp_path / "study", database=str(tmp_path / "study" / "study-{shard}.sqlite"))
    spec = load_spec(given)
    plan = expand_study(spec)
    for job in plan:
        write_result_file(spec.results_dir(), job.id, kind=job.kind, result={}, rows=[])
    stray = "ft-0123456789abcdef"  # a run of no version of this spec
    write_result_file(spec.results_dir(), stray, kind="finetune", result={}, rows=[])
    shards = [{job.id for job in plan.shard(i, 2)} for i in range(2)]
    assert all(shards) and not shards[0] & shards[1]  # both shards hold runs of their own
    for i, own in enumerate(shards):
        report = merge_results(spec, shard=(i, 2))
        assert (report.merged, report.unknown) == (len(own), (stray,))
        with StudyStore(spec.database_path((i, 2)), read_only=True) as store:
            assert {run.id: run.status for run in store.runs()} == dict.fromkeys(own, "done")
        with pytest.warns(UserWarning) as said:
            report.warn(results_dir=spec.results_dir())
        assert [str(w.message).split(" in ")[0] for w in said] == ["1 result file(s)"]
        assert stray in str(said[0].message)
    # The command line's run of a finished shard says nothing of the other shard's files.
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(given))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["experiment", "run", str(path), "--shard", "1/2", "--quiet"]) == 0
    unplanned = [str(w.message) for w in caught if "does not plan" in str(w.message)]
    assert len(unplanned) == 1 and unplanned[0].startswith("1 result file(s)")
    assert f"does not plan ({stray})" in unplanned[0]


def test_a_merged_study_is_compared_and_reported_from_any_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing left to write: the database is only read, which any host may do.
    spec = load_spec(_spec(tmp_path / "study"))
    (pre,) = expand_study(spec).pretrain_jobs()
    run_tasks([Task.from_job(pre)], results=spec.results_dir())
    assert merge_results(spec).merged == 1
    before = _dump(spec.database_path())
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    assert merge_results(spec) == MergeReport(same=1)
    assert _dump(spec.database_path()) == before
    # A result still to record needs the writer's host, and says so.
    (fine,) = [j for j in expand_study(spec).finetune_jobs() if j.depends_on == pre.id]
    (spec.results_dir() / f"{fine.id}.json").write_text((spec.results_dir() / f"{pre.id}.json").read_text())
    with pytest.raises(StudyDatabaseError, match="belongs to host"):
        merge_results(spec)
    # A report from there shows what is merged, and says the rest waits for the database's host.
    with pytest.warns(UserWarning, match=r"belongs to host .* and this is host 'node-b'.*merged so far"):
        report = report_study(spec)
    assert report.files.html.is_file() and report.merged == MergeReport()
    assert _dump(spec.database_path()) == before


class _InProcess:
    """A backend that runs each batch at submission, in this process (dependency order checks)."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self.submitted: list[list[str]] = []

    def submit(self, batches: Sequence[Sequence[Task]]) -> list[_Done]:
        self.submitted += [[t.run_id for t in b] for b in batches]
        return [_Done(run_tasks(list(b), results=self.results)) for b in batches]

    def close(self) -> None:
        pass


class _Done:
    label = "inprocess"

    def __init__(self, reports: list[TaskReport]) -> None:
        self._reports = reports

    def done(self) -> bool:
        return True

    def reports(self) -> list[TaskReport]:
        return self._reports

    def cancel(self) -> None:
        pass


def test_a_failing_pretraining_run_is_retried_then_blocks_its_dependants(tmp_path: Path) -> None:
    # A 64x64 patch cannot fit a 32x32 image: pretraining fails at its first check, nothing trains.
    spec = _spec(tmp_path / "study", chunk_size=1)
    spec.update(grid={"pretrain.pretext.patch_size": [64]}, baseline=False, max_attempts=2)
    study = load_spec(spec)
    (pre,), (fine,) = expand_study(study).pretrain_jobs(), expand_study(study).finetune_jobs()
    backend = _InProcess(study.results_dir())
    reports = run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    assert backend.submitted == [[pre.id], [pre.id]]  # retried once, the dependant never submitted
    assert [r.failed for r in reports] == [1, 1]
    with StudyStore(study.database_path()) as store:
        runs = {r.id: r for r in store.runs()}
    assert runs[pre.id].status == "failed" and "patch" in (runs[pre.id].error or "")
    assert runs[fine.id].status == "failed" and (runs[fine.id].error or "").startswith("blocked")


def test_the_driver_says_whether_a_failed_run_is_submitted_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "X failed" followed by X submitted again read as a contradiction, and the last failure looked
    # like every other: the line says which attempt failed, of how many, and what comes next.
    spec = tiny_spec(tmp_path / "study", label_fractions=[0.5], baseline=False, max_attempts=2)
    spec["grid"] = {"pretrain.pretext.patch_size": [64]}  # cannot fit 32x32 images: fails at once
    study = load_spec(spec)
    (pre,) = expand_study(study).pretrain_jobs()
    run_with_executor(study, executor="slurm", backend=_InProcess(study.results_dir()))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"{pre.id} failed")]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{pre.id} failed (attempt 1 of 2; submitted again): ")
    assert lines[1].startswith(f"{pre.id} failed (attempt 2 of 2; its dependants are blocked): ")
    assert "patch" in lines[1]


class _Timed:
    """A backend whose tasks train at submission and end ``seconds`` later on ``clock``; a task
    listed in ``dies`` (by its submission number) dies at once instead, training nothing."""

    def __init__(
        self, results: Path, clock: InstantClock, *, seconds: float, dies: Sequence[int] = ()
    ) -> None:
        self.results, self.clock, self.seconds, self.dies = results, clock, seconds, set(dies)
        self.submitted: list[list[str]] = []
        self.ended = 0  # tasks whose reports the driver has read
        self.most_in_flight = 0

    def submit(self, batches: Sequence[Sequence[Task]]) -> list[_Ends]:
        out = []
        for batch in batches:
            self.submitted.append([t.run_id for t in batch])
            self.most_in_flight = max(self.most_in_flight, len(self.submitted) - self.ended)
            dead = len(self.submitted) - 1 in self.dies
            reports = None if dead else run_tasks(list(batch), results=self.results)
            out.append(_Ends(self, reports, self.clock.now + (0.0 if dead else self.seconds)))
        return out

    def close(self) -> None:
        pass


class _Ends:
    label = "timed"

    def __init__(self, backend: _Timed, reports: list[TaskReport] | None, at: float) -> None:
        self.backend, self._reports, self.at = backend, reports, at

    def done(self) -> bool:
        return self.backend.clock.now >= self.at

    def reports(self) -> list[TaskReport]:
        self.backend.ended += 1
        if self._reports is None:
            raise RuntimeError("the node was lost")
        return self._reports

    def cancel(self) -> None:
        pass


def _record_heartbeats(monkeypatch: pytest.MonkeyPatch, clock: InstantClock) -> dict[str, list[float]]:
    """The ``clock`` times of every heartbeat the driver writes, by run (filled as it runs)."""
    beats: dict[str, list[float]] = {}
    original = StudyStore.heartbeat

    def heartbeat(self: StudyStore, run_id: str, worker: Any) -> bool:
        beats.setdefault(run_id, []).append(clock.now)
        return original(self, run_id, worker)

    monkeypatch.setattr(StudyStore, "heartbeat", heartbeat)
    return beats


def test_the_driver_keeps_its_heartbeat_while_tasks_end_more_often_than_it_beats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tasks end every 20 s, the heartbeat is due every 30 s: the beat used to restart with each
    # wait, so a driver whose tasks kept ending never beat and a second driver took its runs.
    spec = {**_spec(tmp_path / "study", chunk_size=1), "heartbeat_s": 30.0, "stale_after_s": 900.0}
    study = load_spec(spec)
    clock = InstantClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    by_run = _record_heartbeats(monkeypatch, clock)
    backend = _Timed(study.results_dir(), clock, seconds=20.0)
    run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    # Pretraining and the baseline end at 20 s, the fine-tuning run they released at 40 s.
    assert [len(wave) for wave in backend.submitted] == [1, 1, 1]
    assert clock.now == pytest.approx(40.0, abs=1.0)
    beats = sorted(t for times in by_run.values() for t in times)
    assert beats and min(beats) == pytest.approx(30.0, abs=1.0), beats


def test_array_parallelism_caps_the_tasks_of_the_whole_study_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each wave of ready runs is an array of its own, so a per-array limit let the waves add up.
    study = load_spec(_spec(tmp_path / "study", chunk_size=1, array_parallelism=1))
    clock = InstantClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _Timed(study.results_dir(), clock, seconds=5.0)
    run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    assert sorted(run for batch in backend.submitted for run in batch) == sorted(
        job.id for job in expand_study(study)
    )
    assert backend.most_in_flight == 1
    with StudyStore(study.database_path()) as store:
        assert {r.status for r in store.runs()} == {"done"}


def test_a_capped_driver_submits_the_pretraining_run_before_the_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The plan lists the baseline first; one task at a time trained it while the fine-tuning run,
    # the study's SSL arm, waited on a pretraining run not yet submitted.
    study = load_spec(_spec(tmp_path / "study", chunk_size=1, array_parallelism=1))
    plan = expand_study(study)
    (pre,) = plan.pretrain_jobs()
    (tuned,) = [job for job in plan if job.depends_on == pre.id]
    (baseline,) = [job for job in plan if job.kind == "finetune" and job.depends_on is None]
    assert [job.id for job in plan].index(baseline.id) < [job.id for job in plan].index(pre.id)
    clock = InstantClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _Timed(study.results_dir(), clock, seconds=5.0)
    run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    assert backend.submitted == [[pre.id], [baseline.id], [tuned.id]]


def test_runs_a_dead_task_never_started_are_submitted_again_without_an_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One task holds pretraining and the baseline and dies before either has a run folder: the
    # first counts the death (a task that always dies must end), the second did not run.
    study = load_spec(_spec(tmp_path / "study", chunk_size=2))
    plan = expand_study(study)
    clock = InstantClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _Timed(study.results_dir(), clock, seconds=1.0, dies=[0])
    reports = run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    first, second = backend.submitted[:2]
    assert len(first) == 2 and sorted(second) == sorted(first)
    assert reports[0].failed == 1
    with StudyStore(study.database_path()) as store:
        runs = {r.id: r for r in store.runs()}
    assert {r.status for r in runs.values()} == {"done"}
    assert {run_id: runs[run_id].failures for run_id in first} == {first[0]: 1, first[1]: 0}
    assert len(runs) == len(list(plan))


class _LateClock(InstantClock):
    """A clock whose passing time also shows the result files ``hidden`` until their hour, as a
    network file system shows a file another node wrote once the driver's cached view expires."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: list[tuple[float, Path, Path]] = []  # (shown at, where it waits, where it shows)

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        for entry in [e for e in self.hidden if e[0] <= self.now]:
            entry[1].rename(entry[2])
            self.hidden.remove(entry)


class _SeenLate(_Timed):
    """A ``_Timed`` backend whose result files reach the driver ``lag`` seconds after their task
    ends (never, for ``lag=None``: the nodes wrote them to a folder the driver does not see)."""

    def __init__(self, results: Path, clock: _LateClock, *, seconds: float, lag: float | None) -> None:
        super().__init__(results, clock, seconds=seconds)
        self.late_clock, self.lag = clock, lag
        self.elsewhere = results.parent / "not-seen-yet"

    def submit(self, batches: Sequence[Sequence[Task]]) -> list[_Ends]:
        out = super().submit(batches)
        self.elsewhere.mkdir(exist_ok=True)
        for batch, task_end in zip(batches, out):
            for task in batch:
                path = result_path(self.results, task.run_id)
                aside = self.elsewhere / path.name
                path.replace(aside)
                if self.lag is not None:
                    self.late_clock.hidden.append((task_end.at + self.lag, aside, path))
        return out


def test_a_result_file_seen_late_by_the_driver_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On NFS the driver may list the results folder from a cache up to a minute old: a run whose
    # task reported it done was counted failed and trained again.
    study = load_spec({**_spec(tmp_path / "study", chunk_size=1), "max_attempts": 1})
    clock = _LateClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _SeenLate(study.results_dir(), clock, seconds=5.0, lag=45.0)
    reports = run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    assert [len(wave) for wave in backend.submitted] == [1, 1, 1]  # each run submitted once
    assert sum(r.failed for r in reports) == 0
    with StudyStore(study.database_path()) as store:
        runs = store.runs()
    assert {(r.status, r.failures) for r in runs} == {("done", 0)}
    # Pretraining ends at 5 s and is seen at 50 s; its fine-tuning run ends at 55 s, seen at 100 s.
    assert clock.now == pytest.approx(100.0, abs=1.0)


def test_the_driver_keeps_its_heartbeat_while_it_waits_for_a_late_result_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wait for a late file outlasts stale_after_s here: without heartbeats meanwhile, a
    # second driver would take the runs still in flight for abandoned ones.
    spec = {**_spec(tmp_path / "study", chunk_size=1), "heartbeat_s": 10.0, "stale_after_s": 40.0}
    study = load_spec(spec)
    clock = _LateClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    beats = _record_heartbeats(monkeypatch, clock)
    backend = _SeenLate(study.results_dir(), clock, seconds=5.0, lag=100.0)
    run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    with StudyStore(study.database_path()) as store:
        assert {r.status for r in store.runs()} == {"done"}
    # Submitted at 0 s (the first beat), ended at 5 s, seen at 105 s: beats all along, not once.
    (pre,) = expand_study(study).pretrain_jobs()
    times = [0.0, *beats.get(pre.id, [])]
    assert times[-1] >= 100.0 - 10.0, times
    assert max(b - a for a, b in itertools.pairwise(times)) <= 10.0 + 1.0, times


def test_a_result_file_the_driver_never_sees_fails_its_run_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The nodes wrote the results to a folder the driver does not share (a node-local disk).
    study = load_spec({**_spec(tmp_path / "study", chunk_size=1), "max_attempts": 1})
    clock = _LateClock()
    monkeypatch.setattr("inpaintssl.studies.executors.time", clock)
    backend = _SeenLate(study.results_dir(), clock, seconds=5.0, lag=None)
    run_with_executor(study, executor="slurm", backend=backend, quiet=True)
    (pre,) = expand_study(study).pretrain_jobs()
    with StudyStore(study.database_path()) as store:
        runs = {r.id: r for r in store.runs()}
    error = runs[pre.id].error or ""
    assert runs[pre.id].status == "failed"
    assert str(result_path(study.results_dir(), pre.id)) in error and "share" in error, error
    assert clock.now >= 5.0 + 120.0  # it was looked for, for the whole grace
    assert {r.status for r in runs.values()} == {"failed"}  # the baseline likewise; fine-tuning blocked


class _Refused:
    """A backend whose scheduler refuses every submission (a bad partition, sbatch unreachable)."""

    def submit(self, batches: Sequence[Sequence[Task]]) -> list[_Done]:
        raise RuntimeError("sbatch: error: invalid partition specified: gpu")

    def close(self) -> None:
        pass


def test_runs_of_a_refused_submission_are_handed_back(tmp_path: Path) -> None:
    # They were marked running before the submission: left so, a next call would skip them
    # until their heartbeat went stale (15 min by default).
    study = load_spec(_spec(tmp_path / "study"))
    with pytest.raises(RuntimeError, match="invalid partition"):
        run_with_executor(study, executor="slurm", backend=_Refused(), quiet=True)
    with StudyStore(study.database_path()) as store:
        assert {r.status for r in store.runs()} == {"pending"}


def test_resource_flags_need_a_remote_executor(
    spec_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_factory()))
    assert main(["experiment", "run", str(path), "--partition", "gpu"]) == 2
    assert "--partition applies to --executor slurm; the local executor" in capsys.readouterr().err
    assert main(["experiment", "run", str(path), "--ray-address", "auto"]) == 2
    assert "--ray-address applies to --executor ray; the local executor" in capsys.readouterr().err
    assert main(["experiment", "run", str(path), "--executor", "ray", "--workers", "2"]) == 2
    assert "workers=2 applies to the local executor only" in capsys.readouterr().err
    assert main(["experiment", "run", str(path), "--executor", "slurm", "--shard", "0/2"]) == 2
    assert "shard 0/2 splits a study for the local executor; executor 'slurm'" in capsys.readouterr().err
    # A flag of the other engine is refused, not dropped.
    assert main(["experiment", "run", str(path), "--executor", "ray", "--timeout-min", "60"]) == 2
    assert "--timeout-min applies to --executor slurm only" in capsys.readouterr().err
    assert main(["experiment", "run", str(path), "--executor", "slurm", "--ray-address", "auto"]) == 2
    assert "--ray-address applies to --executor ray only" in capsys.readouterr().err
    assert main(["experiment", "run", str(path), "--executor", "slurm", "--chunk-size", "0"]) == 2
    assert "chunk_size" in capsys.readouterr().err


def test_slurm_without_slurm_says_so_and_how_to_try_the_spec_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("submitit")
    import shutil

    if shutil.which("srun") or shutil.which("sbatch"):
        pytest.skip("this machine has Slurm")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path / "study", cluster="slurm")))
    assert main(["experiment", "run", str(path), "--executor", "slurm", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--executor slurm cannot submit from this machine" in err and "--cluster local" in err
    assert "Traceback" not in err


def test_each_study_submits_its_arrays_under_a_job_name_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `scancel --name <job name>` (docs/scaling.rst) must cancel one study's arrays, not every
    # study of its kind: the name reaching submitit has to tell the study folders apart.
    submitit = pytest.importorskip("submitit")
    from inpaintssl.studies.executors import make_backend

    submitted: list[str] = []
    update_parameters = submitit.AutoExecutor.update_parameters

    def recording(self: Any, **params: Any) -> None:
        submitted.append(params["name"])
        update_parameters(self, **params)

    monkeypatch.setattr(submitit.AutoExecutor, "update_parameters", recording)
    monkeypatch.chdir(tmp_path)
    specs = {
        "knee": {**_spec(tmp_path / "unused"), "output": None, "name": "knee"},
        "hip": {**_spec(tmp_path / "unused"), "output": None, "name": "hip"},
        "lab-a": _spec(tmp_path / "lab-a" / "study"),
        "lab-b": _spec(tmp_path / "lab-b" / "study"),
    }
    for key in [*specs, "knee"]:  # the last: a restarted driver of the first spec
        make_backend("slurm", load_spec(specs[key]), quiet=False).close()
    knee, hip, lab_a, lab_b, knee_again = submitted
    assert len({knee, hip, lab_a, lab_b}) == 4, submitted  # one kind (pretext_design), four studies
    assert knee_again == knee  # the dead driver's arrays are found by the same name
    assert "knee" in knee and "hip" in hip and "study" in lab_a and "study" in lab_b
    # The driver says the name: the one the docs tell to cancel by.
    assert f"[slurm] job name {knee}\n" in capsys.readouterr().err


def test_cpus_per_task_sets_the_local_workers_threads(
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
    with pytest.raises(AcceptedError) as info:
        main(["experiment", "run", str(path), "--cpus-per-task", "1"])
    assert info.value.args == ({"cpus_per_task": 1},)


# -- end to end through the engines ------------------------------------------------------------
@pytest.mark.slow
def test_submitit_runs_a_study_like_the_local_executor(
    tmp_path: Path, local_reference: dict[str, list[tuple[Any, ...]]], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("submitit")
    spec = _spec(tmp_path / "study")
    summary = run_study(spec, executor="slurm", quiet=True)
    assert summary.complete, summary.errors
    assert summary.executed == {"pretrain": 1, "finetune": 2}
    # Baseline and pretraining in one array task, then the fine-tuning run that needed the model.
    assert [sum(w.executed.values()) for w in summary.workers] == [2, 1]
    study = load_spec(spec)
    _assert_same_study(study.database_path(), local_reference)
    assert len(result_files(study.results_dir())) == RUNS
    job_folders = [p.name for p in (study.output_dir() / "slurm").iterdir()]
    assert job_folders and all(name.isdigit() for name in job_folders), job_folders  # no stray '%j'

    # Nothing is submitted twice; a lost database is rebuilt from the result files by `report`.
    assert run_study(spec, executor="slurm", quiet=True).workers == ()
    study.database_path().rename(tmp_path / "lost.sqlite")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["experiment", "report", str(path), "--output", str(tmp_path / "report")]) == 0
    assert f"merged {RUNS} result files" in capsys.readouterr().err
    _assert_same_study(study.database_path(), local_reference)


@pytest.mark.slow
def test_ray_runs_a_study_like_the_local_executor(
    tmp_path: Path, local_reference: dict[str, list[tuple[Any, ...]]]
) -> None:
    ray = pytest.importorskip("ray")
    spec = _spec(tmp_path / "study")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_study(spec, executor="ray", quiet=True)
    finally:
        ray.shutdown()
    assert summary.complete, summary.errors
    assert summary.executed == {"pretrain": 1, "finetune": 2}
    assert all(w.worker.startswith("ray:") for w in summary.workers)
    _assert_same_study(load_spec(spec).database_path(), local_reference)


@pytest.mark.slow
def test_a_killed_worker_is_resumed_by_the_next_submission(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    spec = _spec(tmp_path / "study", chunk_size=1)
    spec["baseline"] = False
    # The driver and its submitit job in one process group: SIGKILL takes the worker down mid-run
    # (a lost node), and the driver with it.
    study, pre = kill_study_after_first_checkpoint(spec, tmp_path, "--executor", "slurm")
    assert not result_files(study.results_dir())
    with StudyStore(study.database_path()) as store:
        assert {r.id: r.status for r in store.runs()}[pre.id] == "running"  # its driver died silently

    summary = run_study(spec, executor="slurm", quiet=True)
    assert summary.complete, summary.errors
    with StudyStore(study.database_path()) as store:
        runs = {r.id: r for r in store.runs()}
    resumed = runs[pre.id]
    assert resumed.attempts == 2
    assert resumed.result is not None and resumed.result["resumed"] is True
    assert resumed.result["epochs_run"] == 6
    # Every epoch once: the resumed run continued where the killed one stopped.
    with open(study.runs_dir() / pre.id / "metrics.csv", newline="") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(6))
    # Every result recorded exactly once, none lost.
    measured: dict[str, int] = {}
    for row in _tables(study.database_path())["measurements"]:
        measured[row[0]] = measured.get(row[0], 0) + 1
    assert measured == {
        pre.id: PRETRAIN_ROWS,
        **{j.id: FINETUNE_ROWS for j in expand_study(study).finetune_jobs()},
    }
    assert len(result_files(study.results_dir())) == len(runs) == 2


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_submitit_tasks_train_on_their_gpu_like_the_local_executor(tmp_path: Path) -> None:
    # submitit hands each array task its GPU through CUDA_VISIBLE_DEVICES; with deterministic
    # kernels the runs in those subprocesses must compute what the driver's own process computes.
    pytest.importorskip("submitit")
    on_gpu = {"device": "cuda", "channels_last": False, "deterministic": True}
    local = _spec(tmp_path / "local")
    remote = _spec(tmp_path / "remote", gpus_per_task=1)
    for spec in (local, remote):
        for stage in ("pretrain", "finetune"):
            spec[stage]["run"] = dict(on_gpu)
    reference = run_study(local, quiet=True)
    assert reference.complete, reference.errors
    summary = run_study(remote, executor="slurm", quiet=True)
    assert summary.complete, summary.errors
    assert summary.executed == {"pretrain": 1, "finetune": 2}
    _assert_same_study(load_spec(remote).database_path(), _tables(load_spec(local).database_path()))
