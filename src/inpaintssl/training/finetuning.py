"""Fine-tuning for segmentation, from transferred weights or from scratch (sec. 2.5.1, Appendix B).

``transfer.schedule = "immediate"`` trains every weight at ``optim.lr`` (the paper's best choice
with encoder-only transfer, sec. 3.1). ``"freeze_then_unfreeze"`` first trains only the fresh
parts with the transferred ones frozen until early stopping, restores the best weights, then
unfreezes everything and trains again from ``transfer.second_lr`` (the authors' two manual runs,
as one run with one folder and one resume point). ``"immediate_twice"`` and ``"frozen"`` complete
Appendix B's grid (see :mod:`inpaintssl.transfer_learning.schedules`).

Example:
    >>> frozen, unfrozen = phases_for(
    ...     lr=1e-3, schedule="freeze_then_unfreeze", second_lr=None, transferred=("encoder",)
    ... )
    >>> frozen.frozen_parts, unfrozen.lr
    (('encoder',), 0.0001)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from inpaintssl.checkpoint import CheckpointMeta, checkpoint_exists
from inpaintssl.config import FinetuneConfig
from inpaintssl.data.checks import check_has_foreground
from inpaintssl.registry import TRANSFER_STRATEGIES
from inpaintssl.training.components import build_backbone, build_segmentation_loss
from inpaintssl.training.context import RunContext, run_session
from inpaintssl.training.device import to_memory_format
from inpaintssl.training.evaluation import evaluate_segmentation
from inpaintssl.training.loop import Phase
from inpaintssl.training.objectives import SegmentationObjective
from inpaintssl.training.results import FinetuneResult
from inpaintssl.training.stages import build_stage_data, build_trainer, check_at_the_door, record_stage
from inpaintssl.transfer_learning import TransferReport, transfer
from inpaintssl.transfer_learning.schedules import finetune_phases

__all__ = ["phases_for", "run_finetuning"]


def phases_for(
    *, lr: float, schedule: str, second_lr: float | None, transferred: Sequence[str]
) -> list[Phase]:
    """The training phases of a fine-tuning schedule, with their learning rates.

    Args:
        lr: Initial learning rate of the first (or only) phase.
        schedule: A name in :data:`~inpaintssl.transfer_learning.schedules.FINETUNE_SCHEDULES`.
        second_lr: Initial learning rate of a second run (default ``lr / 10``, the paper's best pair).
        transferred: Submodules that received pretrained weights.

    Raises:
        ValueError: Unknown schedule, or a freezing schedule with nothing transferred.
    """
    second = second_lr if second_lr is not None else lr / 10
    return [
        Phase(name=p.name, lr=second if p.second_lr else lr, frozen_parts=p.frozen_parts)
        for p in finetune_phases(schedule, transferred_parts=transferred)
    ]


def run_finetuning(config: FinetuneConfig) -> FinetuneResult:
    """Fine-tune (or train from scratch) for segmentation; see :func:`inpaintssl.finetune`."""
    with run_session(config.run) as ctx:
        return _finetune(config, ctx)


def _finetune(config: FinetuneConfig, ctx: RunContext) -> FinetuneResult:
    bundle = build_stage_data(config, stage="finetune")
    class_names = tuple(bundle.class_names)
    if not class_names:
        raise ValueError(
            f"data.dataset={config.data.dataset!r} yields no label classes: fine-tuning needs labelled data"
        )
    loss = build_segmentation_loss(config.loss_name, config.loss_params)
    out_channels = int(loss.out_channels(len(class_names)))
    checked = check_at_the_door(config, ctx, bundle, out_channels=out_channels)
    # All-background labels would train to a constant loss without any error.
    where = f"data.dataset={config.data.dataset!r} train set (label_fraction={config.data.label_fraction:g})"
    check_has_foreground(bundle.train, what=where)
    model = build_backbone(
        config.model.backbone,
        config.model.params,
        in_channels=bundle.in_channels,
        out_channels=out_channels,
        seed=config.run.seed,
        weight_gradient=config.run.cpu_weight_gradient,
    )
    report = None
    transferred: tuple[str, ...] = ()
    # A resume takes every weight from checkpoints/last, and keeps the transfer the run recorded:
    # transferring again would only need the pretrained source, which may be gone by then.
    resuming = config.run.resume and checkpoint_exists(ctx.run_folder.last)
    if config.transfer.pretrained is not None and not resuming:
        report = transfer(
            config.transfer.pretrained,
            model,
            weights=config.transfer.weights,
            in_channels=config.transfer.in_channels,
        )
    elif config.transfer.pretrained is not None:
        report = _recorded_transfer(ctx.run_folder.manifest)
    if config.transfer.pretrained is not None:
        transferred = tuple(TRANSFER_STRATEGIES.build(config.transfer.weights).parts)
    model = model.to(ctx.device)
    model = to_memory_format(model, channels_last=ctx.channels_last)
    phases = phases_for(
        lr=config.optim.effective_lr,
        schedule=config.transfer.schedule,
        second_lr=config.transfer.second_lr,
        transferred=transferred,
    )
    record_stage(
        config,
        ctx,
        bundle,
        stage="finetune",
        checked=checked,
        transfer=None if report is None else report.summary(),
        transfer_report=None if report is None else report.to_record(),
    )
    meta = CheckpointMeta(
        kind="finetune",
        backbone=config.model.backbone,
        backbone_params=dict(config.model.params),
        in_channels=bundle.in_channels,
        out_channels=out_channels,
        class_names=list(class_names),
        activation=loss.activation,
    )
    trainer = build_trainer(
        config,
        ctx,
        bundle,
        model=model,
        objective=SegmentationObjective(loss=loss, predict_onehot=loss.predict_onehot),
        phases=phases,
        meta=meta,
    )
    outcome = trainer.fit()
    test = None
    if ctx.dist.is_main and bundle.test is not None and len(bundle.test) > 0:
        test = evaluate_segmentation(
            model,
            bundle.test,
            predict_onehot=loss.predict_onehot,
            class_names=class_names,
            device=ctx.device,
            batch_size=config.optim.batch_size,
            channels_last=ctx.channels_last,
            amp_dtype=ctx.amp_dtype,
            num_workers=config.data.num_workers,
            worker_start_method=config.data.worker_start_method,
        )
        test.to_csv(ctx.run_folder.test_metrics)
    # Handed back for inference: in eval mode, whatever the last pass (or none, on a resume of a
    # finished run) left it in.
    model.eval()
    result = FinetuneResult.from_outcome(
        ctx.run_dir,
        outcome,
        transfer=report,
        test=test,
        class_names=class_names,
        model=model,
        test_set=bundle.test if bundle.test is not None and len(bundle.test) > 0 else None,
        predict_onehot=loss.predict_onehot,
    )
    if not config.run.quiet and ctx.dist.is_main:
        dice = ", ".join(f"{k}={v:.3f}" for k, v in result.mean_dice().items())
        print(
            f"finetune done: {outcome.epochs_run} epochs, best val {config.loss_name} loss "
            f"{outcome.best_val_loss:.4g} in {outcome.describe_best_epoch()}; "
            f"{outcome.describe_convergence()}; test Dice {dice or 'n/a'} "
            f"-> {ctx.run_dir}"
        )
    return result


def _recorded_transfer(manifest: Path) -> TransferReport | None:
    """The transfer a resumed run made at its start, from its manifest (``transfer_report``).

    ``None`` where the manifest cannot be read or predates the record: the run still transferred
    (its weights come from its checkpoint), but what was copied is only in the manifest's
    ``transfer`` text.
    """
    try:
        record = json.loads(manifest.read_text(encoding="utf-8")).get("transfer_report")
        return None if record is None else TransferReport.from_record(record)
    except (OSError, ValueError, AttributeError):
        return None
