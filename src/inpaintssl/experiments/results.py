"""A study's results as one long table: one row per run, image (or volume), class and metric.

Each row joins a measurement with the labels of its run (``arm``, ``strategy``,
``label_fraction``, ``task``, ``patch_size``, ``sampler``, ``weights``, ``schedule``, ``lr``,
``second_lr``, ``unlabelled_fraction``, ...) and a few numbers from the run's result
(``train_images`` and ``labelled_volumes`` of the run, ``pretrain_images`` and
``pretrain_data_pct`` of the pretraining run an SSL run started from), so that tables and figures
are plain filters and group-bys over it. Long format keeps every metric of every study in the same
shape: ``level``, ``volume_id``, ``slice_index``, ``class_name`` (``""`` when the metric is not per
class), ``metric``, ``value``.

Example:
    >>> t = ResultsTable([{"arm": "ssl", "metric": "dice", "value": 0.8},
    ...                   {"arm": "supervised", "metric": "dice", "value": 0.6}])
    >>> t.select(arm="ssl").column("value").tolist(), t.unique("arm")
    ([0.8], ['ssl', 'supervised'])
"""

from __future__ import annotations

import csv
import glob
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inpaintssl.atomic import atomic_write_text
from inpaintssl.experiments.database import RunRecord, StudyStore
from inpaintssl.experiments.spec import StudySpec

__all__ = ["ResultsTable", "load_results", "load_runs", "study_databases"]


def _sort_key(value: Any) -> tuple[int, Any]:
    # None sorts last; numbers numerically; everything else as text.
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


@dataclass(frozen=True)
class ResultsTable:
    """Rows of dicts with filters and group-bys (a dependency-free sliver of a data frame).

    Attributes:
        rows: The rows; missing keys read as ``None``.
    """

    rows: Sequence[Mapping[str, Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.rows)

    @property
    def columns(self) -> list[str]:
        """Column names in first-seen order."""
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(row))
        return list(names)

    def select(self, **equals: Any) -> ResultsTable:
        """Rows whose columns equal the given values, e.g. ``select(metric="dice", level="image")``."""
        return ResultsTable([r for r in self.rows if all(r.get(k) == v for k, v in equals.items())])

    def where(self, predicate: Callable[[Mapping[str, Any]], bool]) -> ResultsTable:
        """Rows for which ``predicate(row)`` is true."""
        return ResultsTable([r for r in self.rows if predicate(r)])

    def unique(self, column: str) -> list[Any]:
        """Distinct values of a column, sorted (numbers numerically, ``None`` last)."""
        return sorted({r.get(column) for r in self.rows}, key=_sort_key)

    def column(self, name: str) -> npt.NDArray[np.float64]:
        """A numeric column as float64 (missing or ``None`` -> NaN)."""
        return np.array(
            [math.nan if r.get(name) is None else float(r[name]) for r in self.rows], dtype=np.float64
        )

    def groups(self, *columns: str) -> dict[tuple[Any, ...], ResultsTable]:
        """Split by the values of ``columns``; keys sorted like :meth:`unique`."""
        parts: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        for row in self.rows:
            parts.setdefault(tuple(row.get(c) for c in columns), []).append(row)
        ordered = sorted(parts, key=lambda key: tuple(_sort_key(v) for v in key))
        return {key: ResultsTable(parts[key]) for key in ordered}

    def to_csv(self, path: str | Path) -> Path:
        """Write every row (columns: union in first-seen order) atomically; return the path."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(path, buffer.getvalue())
        return Path(path)


def study_databases(spec: StudySpec) -> list[Path]:
    """Every database file of a study (one, or one per shard with a ``{shard}`` placeholder)."""
    return sorted(Path(p) for p in glob.glob(spec.database_pattern()))


def load_runs(spec: StudySpec) -> dict[str, RunRecord]:
    """Every run recorded in the study's database file(s); a ``done`` copy wins over others."""
    runs: dict[str, RunRecord] = {}
    for path in study_databases(spec):
        with StudyStore(path) as store:
            for run in store.runs():
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


def load_results(spec: StudySpec, *, finetune_slices: bool | None = None) -> ResultsTable:
    """The long results table of every ``done`` run of a study (see the module docstring).

    Args:
        spec: The study.
        finetune_slices: Keep per-slice rows of fine-tuning runs. ``None`` keeps them only when
            the study has no per-volume Dice: 3D studies are reported per volume (sec. 2.5.2), and
            their per-slice rows (160 per scan) would dominate memory.

    Example:
        >>> from inpaintssl.experiments.spec import StudySpec
        >>> import tempfile
        >>> len(load_results(StudySpec(study="clinical", output=tempfile.mkdtemp())))
        0
    """
    paths = study_databases(spec)
    if finetune_slices is None:
        finetune_slices = True
        for path in paths:
            with StudyStore(path) as store:
                finetune_slices = finetune_slices and not store.has_level("volume", metric="dice_mean")
    runs = load_runs(spec)
    rows: list[dict[str, Any]] = []
    taken: set[str] = set()
    for path in paths:
        found: set[str] = set()
        with StudyStore(path) as store:
            for run_id, m in store.measurements(finetune_slices=finetune_slices):
                run = runs.get(run_id)
                # A run recorded in two shard files (the shard count changed) counts once.
                if run is None or run_id in taken:
                    continue
                found.add(run_id)
                rows.append(
                    {
                        **run.labels,
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
    return ResultsTable(rows)
