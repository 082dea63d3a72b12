"""What a pretraining and a fine-tuning run share: the checks at the door, the run record, the trainer.

:mod:`~inpaintssl.training.pretraining` and :mod:`~inpaintssl.training.finetuning` differ in
their model, objective and evaluation; these three steps are the same for both.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from inpaintssl.checkpoint import CheckpointMeta
from inpaintssl.config import ConfigError, DataConfig, FinetuneConfig, PretrainConfig, recipe_filled
from inpaintssl.data.base import DataError
from inpaintssl.data.build import DataBundle, Stage, build_datasets
from inpaintssl.data.labels import ABSENT_CLASS_CHECK_LIMIT, absent_classes
from inpaintssl.data.orientation import mixed_orientation_message, training_orientations
from inpaintssl.data.preflight import PreflightReport, preflight
from inpaintssl.data.spacing import training_spacing
from inpaintssl.data.views import slice_shape_of
from inpaintssl.registry import REGISTRIES
from inpaintssl.training.components import build_segmentation_loss, check_backbone_params, size_multiple_of
from inpaintssl.training.context import RunContext, refused_on_rank_zero
from inpaintssl.training.distributed import broadcast_object
from inpaintssl.training.epoch_loader import unavailable_start_method, workers_used
from inpaintssl.training.loop import EpochHook, Phase, Trainer
from inpaintssl.training.memory_check import check_run_memory
from inpaintssl.training.objectives import Objective
from inpaintssl.training.run_folder import build_manifest, read_data_check, record_run, write_data_check
from inpaintssl.warning_format import warn_each_time

__all__ = ["build_stage_data", "build_trainer", "check_at_the_door", "record_stage"]

StageConfig = PretrainConfig | FinetuneConfig


def build_stage_data(config: StageConfig, *, stage: Stage) -> DataBundle:
    """The run's datasets, their slice sizes checked against the backbone's size multiple.

    The multiple (a U-Net of depth ``d`` halves the size ``d - 1`` times) is read from the
    configured backbone built with the run's own channel counts, which only the data tell (the
    image channels; for fine-tuning the classes, as the loss counts them). So the backbone's name
    and ``model.params`` are checked first, the data are built, then the backbone, and a size the
    network cannot take fails here, naming a ``data.image_size`` that fits, before the run starts.

    Example:
        >>> config = PretrainConfig(
        ...     data={"dataset": "synthetic", "params": {"num_images": 8, "num_val": 2, "size": [32, 32]}}
        ... )
        >>> bundle = build_stage_data(config, stage="pretrain")
        >>> len(bundle.train), len(bundle.val), bundle.test, bundle.class_names
        (8, 2, None, ())
    """
    backbone, params, seed = config.model.backbone, config.model.params, config.run.seed
    check_backbone_params(backbone, params, seed=seed)
    try:
        bundle = build_datasets(config.data, stage=stage, seed=seed, size_multiple=1)
    except DataError:
        _raise_naming_the_multiple(config, stage=stage)
        raise
    out_channels = _out_channels(config, bundle)
    if out_channels is None:
        return bundle  # fine-tuning without classes, which the stage refuses next
    multiple = size_multiple_of(backbone, params, in_channels=bundle.in_channels, out_channels=out_channels)
    if multiple > 1 and not _sizes_fit(bundle, multiple):
        # Built again with the multiple, the data's own check says what does not fit and what would.
        return build_datasets(config.data, stage=stage, seed=seed, size_multiple=multiple)
    return bundle


def _out_channels(config: StageConfig, bundle: DataBundle) -> int | None:
    """The network's output channels: the image's for pretraining, the loss's count for fine-tuning."""
    if isinstance(config, PretrainConfig):
        return bundle.in_channels
    if not bundle.class_names:
        return None
    loss = build_segmentation_loss(config.loss_name, config.loss_params)
    return int(loss.out_channels(len(bundle.class_names)))


def _sizes_fit(bundle: DataBundle, multiple: int) -> bool:
    """Whether every set's slices divide by ``multiple`` (built with multiple 1: one size a set)."""
    for dataset in (bundle.train, bundle.val, bundle.test):
        if dataset is None or len(dataset) == 0:
            continue
        height, width = slice_shape_of(dataset, 0)
        if height % multiple or width % multiple:
            return False
    return True


def _raise_naming_the_multiple(config: StageConfig, *, stage: Stage) -> None:
    """Where the data failed their own check, raise it as worded with the backbone's multiple.

    Only where no ``data.image_size`` is set does the multiple change what the data's check says
    (slices of several sizes: the size it suggests fits the multiple). The channel counts are not
    known, so the multiple is read from a backbone of one channel in and out, as far as it builds:
    where it does not, or is 1, the first error stands.
    """
    if config.data.image_size is not None:
        return
    try:
        multiple = size_multiple_of(config.model.backbone, config.model.params, in_channels=1, out_channels=1)
    except Exception:  # noqa: BLE001 - only a better worded message is at stake; the data's error stands
        return
    if multiple > 1:
        build_datasets(config.data, stage=stage, seed=config.run.seed, size_multiple=multiple)


def check_at_the_door(
    config: StageConfig,
    ctx: RunContext,
    bundle: DataBundle,
    *,
    out_channels: int,
) -> PreflightReport:
    """Fail before a slice is read or the run folder written.

    First loader workers this platform cannot start, then a size or batch that cannot fit, then
    any unreadable, truncated or inconsistent data file of the bundle's sets (pretraining has no
    test set). A resumed run checks again only the cases whose files changed since its last start
    (:func:`inpaintssl.data.preflight.preflight`, ``data_check.json``, which :func:`record_stage`
    writes from the report returned here).

    Example:
        As :mod:`~inpaintssl.training.pretraining` starts a run (the memory check runs the
        backbone once on the meta device, seconds on a CPU):

        >>> from inpaintssl.training.context import run_session
        >>> config = PretrainConfig(data={"dataset": "synthetic"}, run={"output_dir": "runs/p"})
        >>> bundle = build_stage_data(config, stage="pretrain")  # doctest: +SKIP
        >>> with run_session(config.run) as ctx:  # doctest: +SKIP
        ...     checked = check_at_the_door(config, ctx, bundle, out_channels=bundle.in_channels)
    """
    _check_worker_start_method(config.data)
    check_run_memory(
        backbone=config.model.backbone,
        params=config.model.params,
        train_set=bundle.train,
        image_size=config.data.image_size,
        in_channels=bundle.in_channels,
        out_channels=out_channels,
        batch_size=config.optim.batch_size,
        ctx=ctx,
    )
    report = _preflight_on_the_main_rank(config, ctx, bundle)
    if bundle.class_names and len(bundle.train) <= ABSENT_CLASS_CHECK_LIMIT and ctx.dist.is_main:
        missing = absent_classes(bundle.train)
        # Every class absent is no labelled pixel at all: fine-tuning refuses that next
        # (check_has_foreground), and a warning first would only say it twice.
        if missing and len(missing) < len(bundle.class_names):
            warn_each_time(
                f"data.dataset={config.data.dataset!r}: class(es) {missing} have no labelled pixel in the "
                f"{len(bundle.train)} training slice(s) (data.label_fraction={config.data.label_fraction}, "
                f"data.subset_seed={config.data.subset_seed}): their output channels learn from nothing "
                "and their Dice measures chance. Raise data.label_fraction, or check data.params "
                "class_names and label_values",
                UserWarning,
            )
    return report


def _check_worker_start_method(data: DataConfig) -> None:
    # A config stays valid on every platform (a cluster's run folder is read on a laptop); only
    # the run that would start the workers needs the method here.
    offered = unavailable_start_method(data.worker_start_method, num_workers=data.num_workers)
    if offered is not None:
        raise ConfigError(
            f"data.worker_start_method={data.worker_start_method!r} is not a start method this platform "
            f"({sys.platform}) offers: expected one of {offered} or null (the process's default)"
        )


def _preflight_on_the_main_rank(config: StageConfig, ctx: RunContext, bundle: DataBundle) -> PreflightReport:
    """The pre-flight check of the bundle's sets, run by rank 0 alone under ``torchrun``.

    The check reads every case in full; run by every rank, a 16-process job would read the whole
    dataset 16 times from one shared file system. Its result is rank 0's to record
    (``data_check.json``), and the normalisation statistics it keeps as it goes are computed on
    first use anyway, to the same bits, by the ranks that skip it. Every rank gets rank 0's
    verdict: where rank 0 found a problem, every rank raises it (a rank left to train alone would
    wait in its first collective for one that has stopped).
    """

    def check() -> PreflightReport:
        passed = read_data_check(ctx.run_dir, data_config=config.data).passed if config.run.resume else None
        return preflight(
            {"train": bundle.train, "val": bundle.val, "test": bundle.test},
            progress=not config.run.quiet and ctx.dist.is_main,
            what=f"data.dataset={config.data.dataset!r}",
            passed=passed,
            threads=config.data.check_threads,
        )

    if not ctx.dist.distributed:
        return check()
    report = PreflightReport(cases=0, items=0, seconds=0.0)  # the other ranks record nothing
    if ctx.dist.is_main:
        try:
            report = check()
        except Exception as exc:
            broadcast_object((type(exc).__name__, str(exc), isinstance(exc, DataError)))
            raise
    failure = broadcast_object(None)
    if failure is not None:
        name, message, data_error = failure
        text = f"rank 0's pre-flight check of the data failed: {message}"
        raise DataError(text) if data_error else RuntimeError(f"{text} ({name})")
    return report


def component_origins(config: StageConfig) -> dict[str, dict[str, str]]:
    """Where each registered component a run uses comes from, by registry kind and name.

    A built-in says ``built-in module:qualname``; a plugin names its entry point, distribution and
    version, so the run record says which code built a component that a package provides.

    Example:
        >>> component_origins(PretrainConfig())["samplers"]
        {'poisson_disc': 'built-in inpaintssl.corruption.samplers:PoissonDiscSampler'}
    """
    used: dict[str, list[str]] = {
        "datasets": [config.data.dataset, *(source.dataset for source in config.data.unlabelled)],
        "backbones": [config.model.backbone],
    }
    if isinstance(config, PretrainConfig):
        used["pretext_tasks"] = [config.pretext.task]
        used["samplers"] = [config.pretext.sampler]
    else:
        used["losses"] = [config.loss_name]
        if config.transfer.pretrained is not None:
            used["transfer_strategies"] = [config.transfer.weights]
    return {kind: {name: REGISTRIES[kind].origin(name) for name in names} for kind, names in used.items()}


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _worker_start_method(data: DataConfig) -> str | None:
    """How the run's loader workers start, ``None`` when it has none.

    The default is read only for a run with workers: reading it fixes it for the process (as its
    loader's first worker would), after which ``multiprocessing.set_start_method`` fails.
    """
    if data.num_workers == 0:
        return None
    return data.worker_start_method or multiprocessing.get_start_method()


def record_stage(
    config: StageConfig,
    ctx: RunContext,
    bundle: DataBundle,
    *,
    stage: Stage,
    checked: PreflightReport | None = None,
    **extra: Any,
) -> None:
    """On rank 0, record the run (config, splits, a manifest naming ``stage`` and ``extra``).

    The manifest also holds the training slices' in-plane spacing range as the network saw it
    (``in_plane_spacing_mm``, :mod:`inpaintssl.data.spacing`), against which prediction checks
    new scans, and how many slices came from volumes in each orientation (``orientations``,
    :mod:`inpaintssl.data.orientation`), which prediction reorients new scans to, and the values
    ``optim.recipe`` gave the fields left ``null`` (``recipe_filled``), and what ``run.amp`` and
    ``run.channels_last`` became on the device (``autocast_dtype``: ``null`` for float32, which
    the CPU always uses; ``channels_last``) and the working directory that relative data paths
    started from (``working_directory``), and where each registered component came from
    (``components``, :func:`component_origins`). Slices from volumes in
    several orientations get a warning here. ``checked`` (from :func:`check_at_the_door`) is kept
    as ``data_check.json`` for a resume to skip the cases it read in full, with the sets each case
    served (a rewritten file of a case the run trained on refuses the resume, others warn).

    Example:
        Inside a run session, after :func:`check_at_the_door` passed (``extra`` lands in the
        manifest as given):

        >>> record_stage(config, ctx, bundle, stage="pretrain", checked=checked)  # doctest: +SKIP
        >>> sorted(p.name for p in ctx.run_dir.iterdir())  # doctest: +SKIP
        ['.inpaintssl.lock', 'config.yaml', 'manifest.json', 'splits.json']
    """
    if not ctx.dist.distributed:
        _record_stage(config, ctx, bundle, stage=stage, checked=checked, extra=extra)
        return
    # Rank 0 records the run; its refusal (settings, data or budget changed on resume) is every
    # rank's, or the others would go on to wait in the first collective for one that has stopped.
    refusal: Exception | None = None
    if ctx.dist.is_main:
        try:
            _record_stage(config, ctx, bundle, stage=stage, checked=checked, extra=extra)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after every rank has heard it
            refusal = exc
    verdict = broadcast_object(None if refusal is None else (type(refusal), str(refusal)))
    if refusal is not None:
        raise refusal
    if verdict is not None:
        raise refused_on_rank_zero(
            *verdict, world_size=ctx.dist.world_size, failed="could not record the run"
        )


def _record_stage(
    config: StageConfig,
    ctx: RunContext,
    bundle: DataBundle,
    *,
    stage: Stage,
    checked: PreflightReport | None,
    extra: Mapping[str, Any],
) -> None:
    """:func:`record_stage`'s work, on the one process that does it."""
    orientations = training_orientations(bundle.train)
    mixed = mixed_orientation_message(orientations, where=f"data.dataset={config.data.dataset!r}")
    if mixed is not None:
        warn_each_time(mixed, UserWarning)

    def manifest() -> dict[str, Any]:
        spacing = training_spacing(bundle.train)
        return build_manifest(
            seed=config.run.seed,
            data_files=bundle.data_files,
            # The training loader's workers: one per batch of a rank's pass at most.
            num_workers=workers_used(
                config.data.num_workers,
                items=math.ceil(len(bundle.train) / ctx.dist.world_size),
                batch_size=config.optim.batch_size,
            ),
            extra={
                "stage": stage,
                "worker_start_method": _worker_start_method(config.data),
                "world_size": ctx.dist.world_size,
                "device": str(ctx.device),
                # What the run options became on this device: amp and channels_last say "auto" or
                # name something the CPU path does not use, so the request alone does not say it.
                "autocast_dtype": _dtype_name(ctx.amp_dtype),
                "channels_last": ctx.channels_last,
                "working_directory": os.getcwd(),
                "in_plane_spacing_mm": None if spacing is None else spacing.to_json(),
                "orientations": orientations,
                "recipe_filled": recipe_filled(config),
                "components": component_origins(config),
                **extra,
            },
        )

    record_run(ctx.run_dir, config, resume=config.run.resume, splits=bundle.splits, manifest=manifest)
    # After the record: a run that fails before it starts leaves nothing behind, this included.
    if checked is not None and checked.passed:
        write_data_check(ctx.run_dir, checked.passed, data_config=config.data, sets=checked.sets)


def build_trainer(
    config: StageConfig,
    ctx: RunContext,
    bundle: DataBundle,
    *,
    model: nn.Module,
    objective: Objective,
    phases: Sequence[Phase],
    meta: CheckpointMeta,
    epoch_hooks: Sequence[EpochHook] = (),
) -> Trainer:
    """The run's :class:`~inpaintssl.training.loop.Trainer` on the bundle's train and val sets.

    Optimiser, early stopping and loader workers come from ``config``; what differs between the
    stages (the model, its objective, the learning-rate phases, the checkpoint's ``meta``) is
    passed in.

    Example:
        Pretraining's single phase (:func:`~inpaintssl.training.pretraining.run_pretraining`):

        >>> from inpaintssl.training.loop import Phase
        >>> trainer = build_trainer(  # doctest: +SKIP
        ...     config, ctx, bundle, model=model, objective=objective,
        ...     phases=[Phase(name="pretrain", lr=config.optim.effective_lr)], meta=meta,
        ... )
        >>> outcome = trainer.fit()  # doctest: +SKIP
    """
    return Trainer(
        model=model,
        objective=objective,
        train_set=bundle.train,
        val_set=bundle.val,
        phases=phases,
        optim=config.optim,
        stopping=config.early_stopping,
        meta=meta,
        context=ctx,
        num_workers=config.data.num_workers,
        worker_start_method=config.data.worker_start_method,
        epoch_hooks=epoch_hooks,
    )
