"""Execute one job of a study: call the training engine, turn its output into database rows.

A job's run folder is ``<output>/runs/<run_id>``; when that folder already holds a checkpoint
(a worker was killed mid-run) the run is resumed from it (``run.resume = True``), so no finished
epoch is trained twice. Pretraining yields the per-image L2 norms of the inpainted validation
images (Table 2); fine-tuning yields per-image and per-volume Dice on the test set and, in a
``clinical`` study, the clinical metrics of :mod:`inpaintssl.experiments.clinical`.

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

import torch

from inpaintssl.config import FinetuneConfig, PretrainConfig, apply_overrides
from inpaintssl.data.build import build_datasets
from inpaintssl.data.splits import SplitRecord
from inpaintssl.experiments.clinical import clinical_measurements
from inpaintssl.experiments.database import Measurement
from inpaintssl.experiments.grid import Job
from inpaintssl.experiments.spec import grid_override
from inpaintssl.registry import LOSSES
from inpaintssl.training.components import size_multiple_of
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
    checkpoints = run_dir / "checkpoints"
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
    record = SplitRecord.load(run_dir / "splits.json")
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
    train = SplitRecord.load(run_dir / "splits.json").subsets["train"]
    return {"train_images": len(train.items), "labelled_volumes": len(train.volume_ids)}


def _common(result: PretrainResult | FinetuneResult, *, resumed: bool, started: float) -> dict[str, Any]:
    return {
        "run_dir": str(result.run_dir),
        "best_val_loss": float(result.best_val_loss),
        "best_epoch": int(result.best_epoch),
        "epochs_run": int(result.epochs_run),
        "stopped_early": bool(result.stopped_early),
        "resumed": resumed,
        "seconds": round(time.time() - started, 3),
    }


def _clinical_rows(config: FinetuneConfig, result: FinetuneResult) -> list[Measurement]:
    if result.model is None:
        return []
    multiple = size_multiple_of(config.model.backbone, config.model.params)
    bundle = build_datasets(config.data, stage="finetune", seed=config.run.seed, size_multiple=multiple)
    if bundle.test is None or len(bundle.test) == 0:
        return []
    model = result.model.eval()
    device = next(model.parameters()).device
    loss = LOSSES.build(config.loss_name, **config.loss_params)

    def predict(images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = loss.predict_onehot(model(images).float())
        return out

    return clinical_measurements(
        bundle.test,
        predict,
        class_names=result.class_names,
        device=device,
        batch_size=config.optim.batch_size,
    )


def _runtime(
    config: PretrainConfig | FinetuneConfig, *, quiet: bool, device: str | None
) -> tuple[PretrainConfig | FinetuneConfig, bool]:
    resume = has_checkpoint(config.run.output_dir)
    overrides = [grid_override("run.resume", resume), grid_override("run.quiet", quiet)]
    if device is not None:
        overrides.append(grid_override("run.device", device))
    return apply_overrides(config, overrides), resume


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
