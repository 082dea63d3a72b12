"""The paper's four studies (and the demo) as declarative, resumable experiments (sec. 2.5-2.8).

A study spec (:class:`StudySpec`, usually a YAML file) names base pretraining and fine-tuning
configs, a grid over their fields, label fractions and subset seeds. :func:`expand_study` turns
it into jobs with stable ids, sharing each pretrained model among the fine-tuning runs that need
it; :func:`run_study` executes them with any number of worker processes or shards, with a job
queue (:mod:`~inpaintssl.studies.queue`) and a result store (:mod:`~inpaintssl.studies.store`) in
one SQLite file per study, or on Slurm or Ray (:mod:`~inpaintssl.studies.executors`), whose
workers write result files that :func:`merge_results` records; :func:`write_report` turns the
results into the paper's tables and figures with :mod:`inpaintssl.analysis`. See
:mod:`inpaintssl.studies.runner` for the studies and resuming, and :doc:`/scaling` for clusters.

Example:
    >>> from inpaintssl.studies import StudySpec, expand_study
    >>> plan = expand_study(StudySpec(study="transfer_design", label_fractions=[0.05],
    ...                               grid={"finetune.optim.lr": [1e-2, 1e-3]}))
    >>> [j.labels["strategy"] for j in plan.finetune_jobs()]
    ['supervised lr=0.01', 'supervised lr=0.001', 'FEF lr=0.01', 'FEF lr=0.001']
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from inpaintssl._lazy import lazy_exports

if TYPE_CHECKING:
    from inpaintssl.studies.demo import run_demo
    from inpaintssl.studies.grid import Job, StudyPlan, expand_study, parse_shard, run_id, transfer_acronym
    from inpaintssl.studies.merge import MergeReport, merge_results
    from inpaintssl.studies.queue import JobQueue, RunRecord, WorkerId
    from inpaintssl.studies.report import ReportFiles, StudyReport, report_study, write_report
    from inpaintssl.studies.results import load_results, load_runs
    from inpaintssl.studies.runner import StudySummary, WorkerReport, run_study, run_worker
    from inpaintssl.studies.spec import ExecutorSpec, StudySpec, load_spec
    from inpaintssl.studies.status import StudyStatus, study_status
    from inpaintssl.studies.store import Measurement, ResultStore, StudyStore

# Submodules load on first use: a worker that only needs the database does not import torch.
_EXPORTS = MappingProxyType(
    {
        "ExecutorSpec": "spec",
        "Job": "grid",
        "JobQueue": "queue",
        "Measurement": "store",
        "MergeReport": "merge",
        "ReportFiles": "report",
        "ResultStore": "store",
        "RunRecord": "queue",
        "StudyPlan": "grid",
        "StudyReport": "report",
        "StudySpec": "spec",
        "StudyStatus": "status",
        "StudyStore": "store",
        "StudySummary": "runner",
        "WorkerId": "queue",
        "WorkerReport": "runner",
        "expand_study": "grid",
        "load_results": "results",
        "load_runs": "results",
        "load_spec": "spec",
        "merge_results": "merge",
        "parse_shard": "grid",
        "run_demo": "demo",
        "run_id": "grid",
        "run_study": "runner",
        "run_worker": "runner",
        "report_study": "report",
        "study_status": "status",
        "transfer_acronym": "grid",
        "write_report": "report",
    }
)
__all__ = [
    "ExecutorSpec",
    "Job",
    "JobQueue",
    "Measurement",
    "MergeReport",
    "ReportFiles",
    "ResultStore",
    "RunRecord",
    "StudyPlan",
    "StudyReport",
    "StudySpec",
    "StudyStatus",
    "StudyStore",
    "StudySummary",
    "WorkerId",
    "WorkerReport",
    "expand_study",
    "load_results",
    "load_runs",
    "load_spec",
    "merge_results",
    "parse_shard",
    "run_demo",
    "run_id",
    "run_study",
    "report_study",
    "run_worker",
    "study_status",
    "transfer_acronym",
    "write_report",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
