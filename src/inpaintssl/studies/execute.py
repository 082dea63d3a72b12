"""Execute one job of a study: call the training engine, turn its output into database rows.

A job's run folder is ``<output>/runs/<run_id>``; when that folder already holds a checkpoint
(a worker was killed mid-run) the run is resumed from it (``run.resume = True``), so no finished
epoch is trained twice. Pretraining yields the per-image L2 norms of the inpainted validation
images (Table 2); fine-tuning yields per-image and per-volume Dice on the test set and, in a
``clinical`` study, the clinical metrics of :mod:`inpaintssl.analysis.clinical`.

Example:
    >>> import tempfile, pathlib
    >>> has_checkpoint(pathlib.Path(tempfile.mkdtemp()))
    False
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inpaintssl.config import FinetuneConfig, PretrainConfig, update_fields
from inpaintssl.data.splits import SplitRecord
from inpaintssl.layout import RunFolder
from inpaintssl.studies.clinical import clinical_measurements, on_source_grid
from inpaintssl.studies.grid import Job
from inpaintssl.studies.store import Measurement
from inpaintssl.training.evaluation import EvaluationTable
from inpaintssl.training.finetuning import run_finetuning
from inpaintssl.training.pretraining import run_pretraining
from inpaintssl.training.results import FinetuneResult, PretrainResult

__all__ = ["RunOutcome", "execute_job", "has_checkpoint", "table_measurements"]

_PRETRAIN_METRICS = ("l2_norm", "l2_norm_corrupted", "l2_loss")


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run records: a JSON summary and its measurements."""

    result: dict[str, Any]
    rows: list[Measurement]


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder holds any checkpoint (a resumable, or finished, run)."""
    checkpoints = RunFolder(run_dir).checkpoints
    return checkpoints.is_dir() and any(checkpoints.iterdir())


def table_measurements(table: EvaluationTable) -> list[Measurement]:
    """Long-format rows of an evaluation table.

    ``dice_<class>`` becomes metric ``dice`` of that class, ``dice_mean`` and the L2 columns are
    class-less (``class_name=""``).

    Example:
        >>> t = EvaluationTable([{"level": "image", "volume_id": "v", "slice_index": 3, "dice_gm": 0.5,
        ...                       "dice_mean": 0.5}])
        >>> [(m.class_name, m.metric) for m in table_measurements(t)]
        [('gm', 'dice'), ('', 'dice_mean')]
    """
    out = []
    for row in table.rows:
        key = (str(row.get("volume_id", "")), int(row.get("slice_index", -1)), str(row.get("level", "image")))
        for column, value in row.items():
            if column == "dice_mean" or column in _PRETRAIN_METRICS:
                out.append(Measurement(*key, "", column, float(value)))
            elif column.startswith("dice_"):
                out.append(Measurement(*key, column[len("dice_") :], "dice", float(value)))
    return out


def _pretrain_counts(run_dir: Path) -> dict[str, Any]:
    record = SplitRecord.load(RunFolder(run_dir).splits)
    train = record.subsets["train"]
    unlabelled = sum(len(s.items) for key, s in record.subsets.items() if key.startswith("unlabelled/"))
    total = len(train.items) + unlabelled
    return {
        "train_images": total,
        "unlabelled_images": unlabelled,
        # The paper's "% pretraining data": the training set alone is 100% (sec. 2.6).
        "pretrain_data_pct": 100.0 * total / len(train.items) if train.items else None,
    }


def _finetune_counts(run_dir: Path) -> dict[str, Any]:
    train = SplitRecord.load(RunFolder(run_dir).splits).subsets["train"]
    return {"train_images": len(train.items), "labelled_volumes": len(train.volume_ids)}


def _common(result: PretrainResult | FinetuneResult, *, resumed: bool, started: float) -> dict[str, Any]:
    return {
        "run_dir": str(result.run_dir),
        "best_val_loss": float(result.best_val_loss),
        "best_epoch": int(result.best_epoch),
        "epochs_run": int(result.epochs_run),
        "stopped_early": bool(result.stopped_early),
        # The learning curve and the verdict, for reports that show runs (the demo's runs.csv).
        "converged": bool(result.converged),
        "history": result.history,
        "resumed": resumed,
        "seconds": round(time.time() - started, 3),
    }


def _clinical_rows(config: FinetuneConfig, result: FinetuneResult) -> list[Measurement]:
    # Fine-tuning hands back the test slices it evaluated and its predictor: nothing is rebuilt.
    if result.model is None or result.test_set is None:
        return []
    model = result.model.eval()
    device = next(model.parameters()).device
    # References on the data's own grid, not on slices cropped or resized to the model's size.
    items, predict = on_source_grid(result.test_set, result.predict, model=model)
    return clinical_measurements(
        items,
        predict,
        class_names=result.class_names,
        device=device,
        batch_size=config.optim.batch_size,
    )


def _runtime(
    config: PretrainConfig | FinetuneConfig, *, quiet: bool, device: str | None
) -> tuple[PretrainConfig | FinetuneConfig, bool]:
    resume = has_checkpoint(config.run.output_dir)
    updates: dict[str, Any] = {"run.resume": resume, "run.quiet": quiet}
    if device is not None:
        updates["run.device"] = device
    return update_fields(config, updates), resume


def execute_job(
    job: Job, *, quiet: bool = True, device: str | None = None, clinical: bool = False
) -> RunOutcome:
    """Train and evaluate one job; resume it when its folder holds a checkpoint.

    Args:
        job: The job (its config names its run folder).
        quiet: No progress bars or per-epoch lines.
        device: Override ``run.device`` (e.g. to spread workers over GPUs).
        clinical: Also measure clinical metrics on the test set (fine-tuning jobs).

    Returns:
        The result summary and measurements to record.
    """
    started = time.time()
    config, resumed = _runtime(job.config, quiet=quiet, device=device)
    if isinstance(config, PretrainConfig):
        pre = run_pretraining(config)
        rows = table_measurements(pre.evaluation) if pre.evaluation is not None else []
        return RunOutcome(
            {**_common(pre, resumed=resumed, started=started), **_pretrain_counts(pre.run_dir)}, rows
        )
    assert isinstance(config, FinetuneConfig)
    fine = run_finetuning(config)
    rows = table_measurements(fine.test) if fine.test is not None else []
    if clinical:
        rows += _clinical_rows(config, fine)
    summary = {
        **_common(fine, resumed=resumed, started=started),
        **_finetune_counts(fine.run_dir),
        "class_names": list(fine.class_names),
        "test_dice": fine.mean_dice(),
    }
    summary["seconds"] = round(time.time() - started, 3)
    return RunOutcome(summary, rows)
