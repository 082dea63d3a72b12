"""Run a study: every pending run of a spec, resumable, in parallel, sharded (paper sec. 2.5-2.8).

The four studies
----------------
``transfer_design`` (sec. 2.5.1, Appendix B)
    One pretrained model; fine-tuning varies the transferred weights (``encoder``,
    ``encoder_decoder``), the schedule (``immediate`` = F?F, ``immediate_twice`` = F?S, ``frozen``
    = FF?F, ``freeze_then_unfreeze`` = FF?S: all eight models of Figure A1), the first learning
    rate and the second one, at one label fraction (the paper used 5%). Figure A1 and a ranking
    of the strategies against the supervised baseline.
``pretext_design`` (sec. 2.5.2, 2.5.3)
    Pretext task x patch size x sampler, each fine-tuned at every label fraction, plus the
    supervised baseline per label fraction. Table 2 (L2 norm), Table 3 (ranking), Figures 3/4.
``data_scaling`` (sec. 2.6)
    The optimal strategy pretrained on the training set plus growing shares of unlabelled data,
    fine-tuned at every label fraction. Figure 5 with power-law fits of Dice vs % pretraining
    data, and the labelled volumes each arm needs to reach a target Dice.
``clinical`` (sec. 2.7, 2.8)
    The optimal strategy vs supervised learning on clinical metrics (tissue volume, mean T2,
    cross-sectional area, mean HU): Figures 6 and 7, agreement statistics and a one-sided paired
    Wilcoxon test per metric.

``examples/studies/*.yaml`` holds one spec per study for the bundled ``mni152`` demo data.

Running, resuming, parallel workers
-----------------------------------
::

    inpaintssl experiment run study.yaml                 # every pending run, one process
    inpaintssl experiment run study.yaml --workers 4     # four worker processes, one database
    inpaintssl experiment status study.yaml
    inpaintssl experiment report study.yaml --output report/

or from Python: ``run_study("study.yaml", workers=4)``. Results go to one SQLite database per study
(:mod:`inpaintssl.studies.database`). Runs already ``done`` are skipped, so running the command
again after a crash, a kill or a new grid value only trains what is missing; a run that was killed
mid-way resumes from its last checkpoint. Each pretrained model is trained once and shared by all
fine-tuning runs that start from it.

Sharding across machines
------------------------
``--shard i/n`` runs the i-th of n disjoint parts of the study. A pretraining run and every
fine-tuning run that needs it are always in the same shard, so shards never wait for each other
and any scheduler can launch them. A Slurm array of 8 shards::

    #!/bin/bash
    #SBATCH --array=0-7
    #SBATCH --gres=gpu:1
    #SBATCH --time=24:00:00
    inpaintssl experiment run spec.yaml --shard $SLURM_ARRAY_TASK_ID/8

SQLite needs a local file system for its locks: on a shared network file system give every shard
its own database with ``database: studies/x/shard-{shard}.sqlite`` in the spec; ``status`` and
``report`` read all of them.

Example:
    >>> import tempfile, yaml
    >>> spec = {"study": "pretext_design", "output": tempfile.mkdtemp(), "label_fractions": [0.5],
    ...         "grid": {"pretrain.pretext.patch_size": [4, 8]}}
    >>> plan = expand_study(load_spec(spec))
    >>> len(plan.shard(0, 2)) + len(plan.shard(1, 2)) == len(plan)
    True
    >>> summary = run_study(spec, quiet=True)  # doctest: +SKIP
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from inpaintssl.atomic import atomic_write_text
from inpaintssl.studies.execute import execute_job
from inpaintssl.studies.grid import Job, StudyPlan, expand_study
from inpaintssl.studies.queue import Heartbeat, NewRun, RunRecord, WorkerId
from inpaintssl.studies.spec import StudySpec, load_spec
from inpaintssl.studies.store import StudyStore

__all__ = ["StudySummary", "WorkerReport", "run_study", "run_worker"]

_POLL_S = 0.5


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did.

    Attributes:
        worker: Its id (``host:pid:token``).
        executed: Runs it trained and recorded, per kind (``pretrain``, ``finetune``).
        failed: Runs that raised.
        lost: Runs it finished after another worker had reclaimed them (not recorded).
    """

    worker: str
    executed: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    lost: int = 0


@dataclass(frozen=True)
class StudySummary:
    """The state of a shard of a study after :func:`run_study`.

    Attributes:
        study: The study kind.
        database: This shard's database file.
        shard: ``(i, n)``.
        total: Runs in this shard.
        status: ``{status: count}`` over this shard's runs.
        executed: Runs executed by this call, per kind (0 pretraining runs on a finished study).
        workers: Each worker's report.
        errors: ``{run_id: error}`` of runs that failed for good.
    """

    study: str
    database: Path
    shard: tuple[int, int]
    total: int
    status: dict[str, int]
    executed: dict[str, int]
    workers: tuple[WorkerReport, ...]
    errors: dict[str, str]

    @property
    def complete(self) -> bool:
        """Whether every run of this shard is done."""
        return self.status.get("done", 0) == self.total


def _new_run(job: Job) -> NewRun:
    return NewRun(job.id, job.kind, job.depends_on, job.config.model_dump(mode="json"), dict(job.labels))


def _worker_device(plan: StudyPlan, index: int) -> str | None:
    # Spread workers over the GPUs of a multi-GPU machine; explicit devices in the spec win.
    if not plan.jobs or plan.jobs[0].config.run.device != "auto":
        return None
    count = torch.cuda.device_count()
    return f"cuda:{index % count}" if count > 1 else None


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _attempt(
    store: StudyStore, job: Job, me: WorkerId, *, spec: StudySpec, path: Path, device: str | None, quiet: bool
) -> Literal["done", "failed", "lost"]:
    """Execute a claimed job and record it; any error marks the run failed instead of ending the worker."""
    try:
        with Heartbeat(path, job.id, me, interval_s=spec.heartbeat_s):
            outcome = execute_job(job, quiet=quiet, device=device, clinical=spec.study == "clinical")
        recorded = store.record(job.id, me, result=outcome.result, rows=outcome.rows)
    except KeyboardInterrupt:
        store.release(job.id, me)
        raise
    except Exception as exc:  # noqa: BLE001 - one failing run must not stop the study
        store.fail(job.id, me, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        _say(quiet, f"{job.id} failed: {type(exc).__name__}: {exc}")
        return "failed"
    return "done" if recorded else "lost"


def run_worker(
    spec: StudySpec, *, shard: tuple[int, int] = (0, 1), index: int = 0, quiet: bool = False
) -> WorkerReport:
    """Claim and execute runs of ``shard`` until none is left (what each worker process does).

    Args:
        spec: The study.
        shard: ``(i, n)``.
        index: Worker number on this machine (picks its GPU when there are several).
        quiet: No progress output.
    """
    plan = expand_study(spec).shard(*shard)
    allowed = {job.id for job in plan}
    me = WorkerId.current()
    device = _worker_device(plan, index)
    executed: dict[str, int] = {}
    outcomes = {"failed": 0, "lost": 0}
    path = spec.database_path(shard)
    with StudyStore(path) as store:
        while True:
            claimed = store.claim(
                me, allowed=allowed, max_attempts=spec.max_attempts, stale_after_s=spec.stale_after_s
            )
            if claimed is None:
                break
            if not isinstance(claimed, RunRecord):  # WAIT: runs remain, none can start yet
                time.sleep(_POLL_S)
                continue
            job = plan.get(claimed.id)
            _say(
                quiet,
                f"[worker {index}] {job.kind} {job.id} ({job.labels.get('strategy', '')}, "
                f"labels {job.labels.get('label_fraction', '-')}), attempt {claimed.attempts}",
            )
            started = time.time()
            outcome = _attempt(store, job, me, spec=spec, path=path, device=device, quiet=quiet)
            if outcome == "done":
                executed[job.kind] = executed.get(job.kind, 0) + 1
                _say(quiet, f"[worker {index}] {job.id} done in {time.time() - started:.1f} s")
            else:
                outcomes[outcome] += 1
    return WorkerReport(str(me), executed, outcomes["failed"], outcomes["lost"])


def _worker_process(
    spec_json: str, shard: tuple[int, int], index: int, workers: int, quiet: bool
) -> WorkerReport:
    # Share the cores: N workers each running torch on every core would thrash.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    return run_worker(StudySpec.model_validate_json(spec_json), shard=shard, index=index, quiet=quiet)


def _summarise(
    spec: StudySpec, plan: StudyPlan, shard: tuple[int, int], reports: list[WorkerReport]
) -> StudySummary:
    ids = {job.id for job in plan}
    with StudyStore(spec.database_path(shard)) as store:
        runs = [r for r in store.runs() if r.id in ids]
    status: dict[str, int] = {}
    for run in runs:
        status[run.status] = status.get(run.status, 0) + 1
    executed: dict[str, int] = {}
    for report in reports:
        for kind, n in report.executed.items():
            executed[kind] = executed.get(kind, 0) + n
    errors = {r.id: r.error or "" for r in runs if r.status == "failed"}
    return StudySummary(
        spec.study, spec.database_path(shard), shard, len(ids), status, executed, tuple(reports), errors
    )


def run_study(
    spec: StudySpec | Mapping[str, Any] | str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    quiet: bool = False,
) -> StudySummary:
    """Run every run of a study shard that is not done yet (see the module docstring).

    Args:
        spec: A :class:`~inpaintssl.studies.spec.StudySpec`, a mapping or a YAML/JSON path.
        shard: ``(i, n)``: run the i-th of n disjoint shards.
        workers: Worker processes on this machine (started with ``spawn``; they share the database).
        quiet: No progress output.

    Returns:
        The shard's state afterwards; runs that failed for good are listed in ``errors`` and the
        next call retries them.

    Raises:
        inpaintssl.config.ConfigError: Invalid spec.
        ValueError: Invalid ``shard`` or ``workers``.
    """
    spec = load_spec(spec)
    if workers < 1:
        raise ValueError(f"workers={workers}; expected at least 1")
    plan = expand_study(spec).shard(*shard)
    spec.output_dir().mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec.output_dir() / "spec.json", spec.model_dump_json(indent=2))
    with StudyStore(spec.database_path(shard)) as store:
        store.set_meta("spec", spec.model_dump_json())
        store.add_runs(_new_run(job) for job in plan)
        # A new invocation gives failed runs a fresh budget: the cause may have been fixed.
        store.requeue_failed({job.id for job in plan})
    _say(
        quiet, f"{spec.study}: {len(plan)} runs in shard {shard[0]}/{shard[1]} -> {spec.database_path(shard)}"
    )
    if workers == 1:
        reports = [run_worker(spec, shard=shard, index=0, quiet=quiet)]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_worker_process, spec.model_dump_json(), shard, i, workers, quiet)
                for i in range(workers)
            ]
            reports = [f.result() for f in futures]
    return _summarise(spec, plan, shard, reports)
