"""A study's results as one long table: one row per run, image (or volume), class and metric.

Each row joins a measurement with the labels of its run (``arm``, ``strategy``,
``label_fraction``, ``task``, ``patch_size``, ``sampler``, ``weights``, ``schedule``, ``lr``,
``second_lr``, ``unlabelled_fraction``, ``baseline_id``, ``budget_epochs``, ...) and a few
numbers from the run's result (``train_images`` and ``labelled_volumes`` of the run,
``pretrain_images`` and ``pretrain_data_pct`` of the pretraining run an SSL run started from), so
that tables and figures are plain filters and group-bys over it. Long format keeps every metric of
every study in the same shape: ``level``, ``volume_id``, ``slice_index``, ``class_name`` (``""``
when the metric is not per class), ``metric``, ``value``.

A run's labels are those the current plan gives it (:func:`~inpaintssl.studies.grid.expand_study`)
over those its database recorded: a run recorded before runs named the supervised baseline they
are compared with gets its ``baseline_id`` (and the baseline its current name), so the analysis
pairs each SSL run with its own baseline in an older study folder too.

The rows form an :class:`inpaintssl.analysis.table.Table`.

Example:
    >>> import tempfile
    >>> len(load_results(StudySpec(study="clinical", output=tempfile.mkdtemp())))
    0
"""

from __future__ import annotations

import glob
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inpaintssl.analysis.table import Table
from inpaintssl.config import ConfigError
from inpaintssl.studies.grid import StudyPlan, expand_study
from inpaintssl.studies.queue import RunRecord
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.store import StudyStore

__all__ = ["check_same_study", "load_results", "load_runs", "study_databases"]


def study_databases(spec: StudySpec) -> list[Path]:
    """Every database file of a study (one, or one per shard with a ``{shard}`` placeholder).

    Only files named exactly as a shard's: a damaged database moved aside in the same folder
    (``shard-0-of-2.damaged.sqlite``) or a file manager's copy is not one of the study's.
    """
    return sorted(Path(p) for p in glob.glob(spec.database_pattern()) if spec.is_database_file(p))


def check_same_study(store: StudyStore, spec: StudySpec, path: Path) -> None:
    """Refuse a database that holds another kind of study than ``spec``.

    Two specs pointed at one study folder would otherwise share a database: a ``clinical``
    report would list another study's strategies, and its runs would be counted as this one's.

    Raises:
        ConfigError: The database's recorded spec is of another study; the message names both.
    """
    recorded = store.get_meta("spec")
    if recorded is None:
        return
    try:
        kind = json.loads(recorded).get("study")
    except (ValueError, AttributeError):
        return  # an unreadable record says nothing about the kind; the runs themselves still load
    if kind is not None and kind != spec.study:
        raise ConfigError(
            f"study database {path} holds a {kind!r} study, and this spec is a {spec.study!r} study; "
            "give this spec an output (or database) of its own"
        )


def load_runs(spec: StudySpec, *, planned_only: bool = True) -> dict[str, RunRecord]:
    """The runs recorded in the study's database file(s); a ``done`` copy wins over others.

    Args:
        spec: The study.
        planned_only: Only the runs ``spec`` plans (:func:`~inpaintssl.studies.grid.expand_study`).
            A database keeps the runs of earlier versions of a spec (another budget, a label
            fraction dropped): counted in, they would be averaged with this version's runs of the
            same labels. ``False`` returns every recorded run.

    Raises:
        ConfigError: A database holds another kind of study (:func:`check_same_study`).
    """
    return _recorded_runs(spec, expand_study(spec) if planned_only else None)


def _recorded_runs(spec: StudySpec, plan: StudyPlan | None) -> dict[str, RunRecord]:
    """:func:`load_runs` of the runs of ``plan`` (``None``: every recorded run)."""
    planned = {job.id for job in plan} if plan is not None else None
    runs: dict[str, RunRecord] = {}
    for path in study_databases(spec):
        with StudyStore(path, read_only=True) as store:
            check_same_study(store, spec, path)
            for run in store.runs():
                if planned is not None and run.id not in planned:
                    continue
                if run.id not in runs or run.status == "done":
                    runs[run.id] = run
    return runs


def _run_columns(run: RunRecord, runs: Mapping[str, RunRecord]) -> dict[str, Any]:
    result = run.result or {}
    extra: dict[str, Any] = {
        "train_images": result.get("train_images"),
        "labelled_volumes": result.get("labelled_volumes"),
    }
    parent = runs.get(run.depends_on) if run.depends_on else None
    if parent is not None and parent.result is not None:
        extra["pretrain_images"] = parent.result.get("train_images")
        extra["pretrain_data_pct"] = parent.result.get("pretrain_data_pct")
    return extra


def load_results(spec: StudySpec, *, finetune_slices: bool | None = None) -> Table:
    """The long results table of every ``done`` run the spec plans (see the module docstring).

    Each row carries its run's labels from the current plan over those the database recorded
    (``{**recorded, **planned}``), so ``baseline_id`` reaches rows of runs recorded before runs
    named their baseline.

    Args:
        spec: The study.
        finetune_slices: Keep per-slice rows of fine-tuning runs. ``None`` keeps them only when
            the study has no per-volume Dice: 3D studies are reported per volume (sec. 2.5.2), and
            their per-slice rows (160 per scan) would dominate memory. Per-slice clinical rows
            (a CT scan's area and mean HU, :data:`~inpaintssl.studies.store.CLINICAL_SUFFIXES`)
            are kept either way: no other level holds them.

    Example:
        >>> from inpaintssl.studies.spec import StudySpec
        >>> import tempfile
        >>> len(load_results(StudySpec(study="clinical", output=tempfile.mkdtemp())))
        0
    """
    paths = study_databases(spec)
    if finetune_slices is None:
        finetune_slices = True
        for path in paths:
            with StudyStore(path, read_only=True) as store:
                finetune_slices = finetune_slices and not store.has_level("volume", metric="dice_mean")
    plan = expand_study(spec)
    runs = _recorded_runs(spec, plan)
    # The plan's labels win: a database written before runs named their baseline has no
    # baseline_id, and an older name for a baseline whose run (and id) stayed the same.
    labels = {job.id: {**runs[job.id].labels, **job.labels} for job in plan if job.id in runs}
    rows: list[dict[str, Any]] = []
    taken: set[str] = set()
    for path in paths:
        found: set[str] = set()
        with StudyStore(path, read_only=True) as store:
            for run_id, m in store.measurements(finetune_slices=finetune_slices):
                run = runs.get(run_id)
                # A run recorded in two shard files (the shard count changed) counts once.
                if run is None or run_id in taken:
                    continue
                found.add(run_id)
                rows.append(
                    {
                        **labels[run_id],
                        **_run_columns(run, runs),
                        "run_id": run_id,
                        "kind": run.kind,
                        "level": m.level,
                        "volume_id": m.volume_id,
                        "slice_index": m.slice_index,
                        "class_name": m.class_name,
                        "metric": m.metric,
                        "value": m.value,
                    }
                )
        taken |= found
    # In the plan's order, not the order runs finished (or their result files merged), which
    # differs between workers, executors and shards; each run's own rows keep theirs.
    position = {job.id: index for index, job in enumerate(plan)}
    rows.sort(key=lambda row: position[row["run_id"]])
    return Table(rows, name="results", title="Every measurement of every finished run")
