"""What a study run did: per worker (:class:`WorkerReport`) and per shard (:class:`StudySummary`).

Shared by the local runner (:mod:`inpaintssl.studies.runner`) and the remote executors
(:mod:`inpaintssl.studies.executors`), so ``inpaintssl experiment run`` prints the same summary
whichever executor ran the study.

Example:
    >>> WorkerReport("slurm:1234_0", {"pretrain": 1}).failed
    0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inpaintssl.studies.grid import StudyPlan
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.store import StudyStore

__all__ = ["StudySummary", "WorkerReport", "summarise"]


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did.

    Attributes:
        worker: Its id: ``host:pid:token`` of a local worker, the job of a remote executor
            (``slurm:1234_0``, ``ray:<task id>``).
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


def summarise(
    spec: StudySpec, plan: StudyPlan, shard: tuple[int, int], reports: list[WorkerReport]
) -> StudySummary:
    """The state of ``plan``'s runs in the shard's database after a run with these worker reports."""
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
