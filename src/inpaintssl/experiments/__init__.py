"""The paper's four studies as declarative, resumable experiments (Dominic et al. 2023, sec. 2.5-2.8).

A study spec (:class:`StudySpec`, usually a YAML file) names base pretraining and fine-tuning
configs, a grid over their fields, label fractions and subset seeds. :func:`expand_study` turns
it into jobs with stable ids, sharing each pretrained model among the fine-tuning runs that need
it; :func:`run_study` executes them with any number of worker processes or shards, recording
every run and every evaluated image in one SQLite database per study (:class:`StudyStore`);
:func:`write_report` turns the results into the paper's tables and figures. See
:mod:`inpaintssl.experiments.runner` for the studies, resuming and a Slurm example.

Example:
    >>> from inpaintssl.experiments import StudySpec, expand_study
    >>> plan = expand_study(StudySpec(study="transfer_design", label_fractions=[0.05],
    ...                               grid={"finetune.optim.lr": [1e-2, 1e-3]}))
    >>> [j.labels["strategy"] for j in plan.finetune_jobs()]
    ['supervised', 'FEF lr=0.01', 'FEF lr=0.001']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inpaintssl.experiments.database import Measurement, RunRecord, StudyStore, WorkerId
    from inpaintssl.experiments.figures import (
        FigureFiles,
        plot_dice_vs_label_fraction,
        plot_dice_vs_pretraining_data,
        plot_percent_error_bars,
        plot_ssl_vs_supervised,
        plot_transfer_boxplots,
    )
    from inpaintssl.experiments.grid import (
        Job,
        StudyPlan,
        expand_study,
        parse_shard,
        run_id,
        transfer_acronym,
    )
    from inpaintssl.experiments.report import ReportFiles, write_report
    from inpaintssl.experiments.results import ResultsTable, load_results, load_runs
    from inpaintssl.experiments.runner import StudySummary, WorkerReport, run_study, run_worker
    from inpaintssl.experiments.spec import StudySpec, load_spec
    from inpaintssl.experiments.tables import (
        dice_table,
        labels_needed_table,
        power_law_table,
        table2_l2_norm,
        table3_ranking,
    )
    from inpaintssl.experiments.tabular import Table

__all__ = [
    "FigureFiles",
    "Job",
    "Measurement",
    "ReportFiles",
    "ResultsTable",
    "RunRecord",
    "StudyPlan",
    "StudySpec",
    "StudyStore",
    "StudySummary",
    "Table",
    "WorkerId",
    "WorkerReport",
    "dice_table",
    "expand_study",
    "labels_needed_table",
    "load_results",
    "load_runs",
    "load_spec",
    "parse_shard",
    "plot_dice_vs_label_fraction",
    "plot_dice_vs_pretraining_data",
    "plot_percent_error_bars",
    "plot_ssl_vs_supervised",
    "plot_transfer_boxplots",
    "power_law_table",
    "run_id",
    "run_study",
    "run_worker",
    "table2_l2_norm",
    "table3_ranking",
    "transfer_acronym",
    "write_report",
]

# Submodules load on first use: a worker that only needs the database does not import torch.
_EXPORTS = {
    "FigureFiles": "inpaintssl.experiments.figures",
    "Job": "inpaintssl.experiments.grid",
    "Measurement": "inpaintssl.experiments.database",
    "ReportFiles": "inpaintssl.experiments.report",
    "ResultsTable": "inpaintssl.experiments.results",
    "RunRecord": "inpaintssl.experiments.database",
    "StudyPlan": "inpaintssl.experiments.grid",
    "StudySpec": "inpaintssl.experiments.spec",
    "StudyStore": "inpaintssl.experiments.database",
    "StudySummary": "inpaintssl.experiments.runner",
    "Table": "inpaintssl.experiments.tabular",
    "WorkerId": "inpaintssl.experiments.database",
    "WorkerReport": "inpaintssl.experiments.runner",
    "dice_table": "inpaintssl.experiments.tables",
    "expand_study": "inpaintssl.experiments.grid",
    "labels_needed_table": "inpaintssl.experiments.tables",
    "load_results": "inpaintssl.experiments.results",
    "load_runs": "inpaintssl.experiments.results",
    "load_spec": "inpaintssl.experiments.spec",
    "parse_shard": "inpaintssl.experiments.grid",
    "plot_dice_vs_label_fraction": "inpaintssl.experiments.figures",
    "plot_dice_vs_pretraining_data": "inpaintssl.experiments.figures",
    "plot_percent_error_bars": "inpaintssl.experiments.figures",
    "plot_ssl_vs_supervised": "inpaintssl.experiments.figures",
    "plot_transfer_boxplots": "inpaintssl.experiments.figures",
    "power_law_table": "inpaintssl.experiments.tables",
    "run_id": "inpaintssl.experiments.grid",
    "run_study": "inpaintssl.experiments.runner",
    "run_worker": "inpaintssl.experiments.runner",
    "table2_l2_norm": "inpaintssl.experiments.tables",
    "table3_ranking": "inpaintssl.experiments.tables",
    "transfer_acronym": "inpaintssl.experiments.grid",
    "write_report": "inpaintssl.experiments.report",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inpaintssl.experiments' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
