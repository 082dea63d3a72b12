"""One training loop for both stages: Adam, a learning-rate schedule, early stopping, best restore, resume.

The loop runs the config's recipe (:class:`~inpaintssl.config.OptimConfig`): by default Adam(0.9,
0.999) with a warm-up + cosine schedule over the run's whole budget, or the paper's Appendix A.1
(Adam(0.99, 0.995), the learning rate decayed by 0.9 every two epochs). It stops early on the
validation loss and restores the best checkpoint at the end. After every epoch it judges whether
the run has converged (:mod:`inpaintssl.training.convergence`); at the end it writes the
learning curve (``learning_curve.png``) and warns when the run was still improving.

A run is a list of :class:`Phase` objects: pretraining and immediate fine-tuning have one phase,
``freeze_then_unfreeze`` has two (sec. 2.5.1), each with a fresh optimiser (no stale moments for
parameters that were frozen), schedule and early stopping.

Every epoch ends with ``checkpoints/last`` written atomically (weights, optimizer moments,
early-stopping state, history, RNG states). Data order and corruption are pure functions of
(seed, phase, epoch, sample index), so a run killed at any instant and resumed from ``last``
ends with the same weights as one that never stopped (bit-identical on CPU).

The trainer takes where and how it runs (device, seed, run folder, process group, resume,
progress bars, checkpoint interval) from the run's :class:`~inpaintssl.training.context.RunContext`.
Under ``torchrun`` every rank runs the same collectives in the same order: a DDP wrapper per
phase, validation split into whole batches of the single-process batching, rank 0's buffers
before each validation, non-finite losses judged over all ranks, a training loss that counts no
sample the ``DistributedSampler`` repeated to pad a rank's share (``docs/distributed.rst``, "What
is synchronised").

Example:
    >>> Phase(name="finetune", lr=1e-3).frozen_parts
    ()
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler, Sampler, SequentialSampler, Subset

from inpaintssl.atomic import TEMPORARY_TOKEN, remove_unlocked
from inpaintssl.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    checkpoint_exists,
    promote_checkpoint,
    read_checkpoint_dir,
    read_checkpoint_meta,
    remove_checkpoint,
    remove_partial_writes,
    resolve_checkpoint,
    save_checkpoint,
)
from inpaintssl.config import ConfigError, EarlyStoppingConfig, OptimConfig, WorkerStartMethod
from inpaintssl.progress import progress_bar
from inpaintssl.training.context import FinishedRunWarning, RunContext
from inpaintssl.training.convergence import Convergence
from inpaintssl.training.convergence_report import (
    ended_by_early_stopping,
    phase_convergence,
    report_convergence,
)
from inpaintssl.training.device import autocast_context
from inpaintssl.training.diagnostics import plot_learning_curve
from inpaintssl.training.distributed import (
    all_reduce_max,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    settle_last_collective,
    use_sync_batchnorm,
)
from inpaintssl.training.early_stopping import EarlyStopping
from inpaintssl.training.epoch_loader import EpochLoader, unavailable_start_method
from inpaintssl.training.loader_workers import batches
from inpaintssl.training.objectives import REAL_LOSS_KEY, REAL_ROWS_KEY, VALIDATION_KEY_OFFSET, Objective
from inpaintssl.training.outcome import Phase, TrainOutcome
from inpaintssl.training.run_folder import RunFolder, TensorBoardLog, record_budget, write_metrics_csv
from inpaintssl.training.schedule import step_decay_lr, warmup_cosine_lr, warmup_steps_for
from inpaintssl.training.state import (
    optimizer_from_tensors,
    optimizer_to_tensors,
    restore_rng_states,
    rng_states,
)
from inpaintssl.training.step import TrainStep, adam, compile_network
from inpaintssl.transfer_learning.schedules import hold_running_statistics, set_trainable
from inpaintssl.warning_format import warn_each_time

__all__ = ["EpochHook", "IndexedDataset", "NonFiniteLossError", "Phase", "TrainOutcome", "Trainer"]

log = logging.getLogger("inpaintssl.training")

# A sample's corruption key folds (phase, epoch, pass over the data, dataset index) into one
# integer; these bounds keep distinct tuples distinct and the result below 2**62.
_MAX_ITEMS = 10_000_019
_MAX_PASSES = 1_009
_MAX_EPOCHS = 100_003


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


class EpochHook(Protocol):
    """Called on rank 0 after every epoch, e.g. to draw what the network restores now."""

    def __call__(self, model: nn.Module, *, epoch: int, tensorboard: TensorBoardLog) -> None: ...


class IndexedDataset(Dataset[dict[str, Any]]):
    """Adds each item's dataset index as ``index`` (the key its corruption is drawn from)."""

    def __init__(self, base: Dataset[dict[str, Any]]) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        item["index"] = index
        return item


@dataclass
class _FitState:
    """Where a run stands; saved as JSON in ``checkpoints/last`` so a killed run can resume."""

    history: list[dict[str, Any]] = field(default_factory=list)
    phase: int = 0
    epoch: int = 0
    global_epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = -1
    stopped_early: bool = False
    phase_best: list[float] = field(default_factory=list)
    phase_best_val: float = math.inf
    max_epochs: int | None = None
    stopping: EarlyStopping | None = None
    resumed_from: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "phase": self.phase,
            "epoch": self.epoch,
            "global_epoch": self.global_epoch,
            "best_val": None if math.isinf(self.best_val) else self.best_val,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "phase_best": self.phase_best,
            "phase_best_val": None if math.isinf(self.phase_best_val) else self.phase_best_val,
            "max_epochs": self.max_epochs,
            "stopping": None if self.stopping is None else self.stopping.state_dict(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _FitState:
        return cls(
            history=list(data["history"]),
            phase=int(data["phase"]),
            epoch=int(data["epoch"]),
            global_epoch=int(data["global_epoch"]),
            best_val=math.inf if data["best_val"] is None else float(data["best_val"]),
            best_epoch=int(data["best_epoch"]),
            stopped_early=bool(data["stopped_early"]),
            phase_best=[float(v) for v in data["phase_best"]],
            # States written before these keys: the best was reset per phase, the budget unknown.
            phase_best_val=_optional_float(data.get("phase_best_val", data["best_val"])),
            max_epochs=data.get("max_epochs"),
            stopping=None if data["stopping"] is None else EarlyStopping.from_state_dict(data["stopping"]),
        )


def _optional_float(value: Any) -> float:
    return math.inf if value is None else float(value)


def _validation_shard(size: int, *, batch_size: int, rank: int, world_size: int) -> list[int]:
    """The validation items ``rank`` scores: whole batches ``rank``, ``rank + world_size``, ... of
    the single-process batching of ``size`` items.

    A batch-level loss (the Dice of eq. A2 sums over the batch) depends on which items share a
    batch, so ranks validate the very batches one process would: the validation loss of given
    weights is then the same for every world size (to the rounding of the all-reduce). A rank may
    get no batch at all (fewer batches than processes).

    Example:
        >>> [_validation_shard(10, batch_size=3, rank=r, world_size=2) for r in (0, 1)]
        [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9]]
    """
    batches = range(rank, math.ceil(size / batch_size), world_size)
    return [i for b in batches for i in range(b * batch_size, min(size, (b + 1) * batch_size))]


def _real_items(size: int, *, rank: int, world_size: int) -> int:
    """How many of the items ``DistributedSampler`` gives ``rank`` in one pass are real samples.

    Without ``drop_last`` the sampler pads ``size`` items up to a multiple of ``world_size`` by
    repeating the first ones, appended after the shuffled order, and deals position ``p`` to rank
    ``p % world_size``: the repeats are the last item of the ranks from ``size % world_size`` on,
    and each rank's real items come first.

    Example:
        >>> [_real_items(10, rank=r, world_size=4) for r in range(4)]  # 12 dealt, 2 repeats
        [3, 3, 2, 2]
    """
    return len(range(rank, size, world_size))


def _unwrap(model: nn.Module) -> nn.Module:
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    assert isinstance(inner, nn.Module)
    return inner


class Trainer:
    """Train ``model`` on ``objective`` through one or more :class:`Phase`.

    Args:
        model: The network (already on ``context.device``).
        objective: Turns a batch into a loss.
        train_set: Items as in :mod:`inpaintssl.data.base`.
        val_set: Validation items; its loss drives early stopping and best-checkpoint choice.
        phases: One or two phases.
        optim: Optimiser, schedule, batch size, epochs, clipping.
        stopping: Early-stopping rule.
        meta: Metadata stored with every checkpoint.
        context: Where and how the run trains: its device, autocast dtype, memory format and
            process group, and from ``context.run`` the run folder (only rank 0 writes), the
            seed (data order, corruption keys), ``compile`` (the training steps' network, see
            :mod:`inpaintssl.training.step`, and validation's), ``resume`` (continue from ``checkpoints/last``
            when it exists), ``quiet`` (no progress bars) and ``checkpoint_every`` (write
            ``last`` every this many epochs, always at a phase's end).
        num_workers: DataLoader workers for training and as many for validation (no more than a
            pass has batches), started once and kept until :meth:`fit` returns
            (:class:`~inpaintssl.training.epoch_loader.EpochLoader`).
        worker_start_method: How those workers start (``fork``, ``forkserver`` or ``spawn``, one
            this platform offers); ``None`` takes the process's default.
        epoch_hooks: Called on rank 0 after every epoch with the model (in eval mode).

    Example:
        >>> from inpaintssl.config import EarlyStoppingConfig, OptimConfig, RunConfig
        >>> from inpaintssl.data.synthetic import SyntheticShapes
        >>> from inpaintssl.registry import BACKBONES, LOSSES
        >>> from inpaintssl.training.objectives import SegmentationObjective
        >>> trainer = Trainer(
        ...     model=BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4),
        ...     objective=SegmentationObjective(loss=LOSSES.build("dice")),
        ...     train_set=SyntheticShapes(split="train", num_images=8, size=(16, 16)),
        ...     val_set=SyntheticShapes(split="val", num_images=8, num_val=4, size=(16, 16)),
        ...     phases=[Phase(name="finetune", lr=1e-2)],
        ...     optim=OptimConfig(batch_size=4, max_epochs=1),
        ...     stopping=EarlyStoppingConfig(),
        ...     meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        ...     context=RunContext.local(RunConfig(output_dir=Path("runs/doc"), device="cpu")),
        ... )
        >>> trainer.run_folder.last, trainer.steps_per_epoch()
        (PosixPath('runs/doc/checkpoints/last'), 2)
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        objective: Objective,
        train_set: Dataset[dict[str, Any]],
        val_set: Dataset[dict[str, Any]],
        phases: Sequence[Phase],
        optim: OptimConfig,
        stopping: EarlyStoppingConfig,
        meta: CheckpointMeta,
        context: RunContext,
        num_workers: int = 0,
        worker_start_method: WorkerStartMethod | None = None,
        epoch_hooks: Sequence[EpochHook] = (),
    ) -> None:
        if not phases:
            raise ValueError("phases must name at least one training phase")
        # Checked here, not by the loader at the first epoch, which comes after the first writes.
        offered = unavailable_start_method(worker_start_method, num_workers=num_workers)
        if offered is not None:
            raise ValueError(
                f"worker_start_method={worker_start_method!r} is not a start method this platform "
                f"({sys.platform}) offers; expected one of {offered} or None"
            )
        if len(train_set) == 0:  # type: ignore[arg-type]
            raise ValueError("the training set is empty: nothing to train on")
        if len(val_set) == 0:  # type: ignore[arg-type]
            raise ValueError("the validation set is empty: early stopping needs validation data")
        self.model = model
        self.phases = list(phases)
        self.optim = optim
        self.stopping_config = stopping
        self.meta = meta
        self.context = context
        # Read on every step: resolved once here rather than through the context each time.
        self.run_folder = context.run_folder
        self.device = context.device
        self.seed = context.run.seed
        self.amp_dtype = context.amp_dtype
        self.channels_last = context.channels_last
        self.dist = context.dist
        self.resume = context.run.resume
        self.quiet = context.run.quiet
        self.checkpoint_every = context.run.checkpoint_every
        self.epoch_hooks = list(epoch_hooks)
        self.train_set = IndexedDataset(train_set)
        self._check_passes_per_epoch()
        val_indices = _validation_shard(
            len(val_set),  # type: ignore[arg-type]
            batch_size=optim.batch_size,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.val_set = Subset(IndexedDataset(val_set), val_indices)
        self.num_workers = num_workers
        self.worker_start_method = worker_start_method
        self._loaders: dict[str, EpochLoader[dict[str, Any]]] = {}
        self._fitting = False
        # Each parameter's requires_grad as the caller gave the model (set when fit begins).
        self._requires_grad_given: list[bool] | None = None
        self._tensorboard: TensorBoardLog | None = None
        # Under torchrun each phase wraps the model in its own DistributedDataParallel
        # (:meth:`_wrap_for_phase`), once the phase has fixed which parameters train.
        self.ddp_model: nn.Module = model
        self.train_step = TrainStep(
            self.ddp_model,
            objective,
            device=self.device,
            amp_dtype=self.amp_dtype,
            grad_clip=optim.grad_clip,
            compile=context.run.compile,
        )
        # Validation skips DDP (there are no gradients to synchronise) but, under run.compile, runs
        # compiled like the steps: the compiler traces the eval/no-grad network as a graph of its own,
        # so validating the paper's thousands of slices gets the same fused kernels as training.
        self.eval_network = compile_network(model, context.run.compile)

    @property
    def objective(self) -> Objective:
        """What a batch's loss is; training steps and validation both read it from here."""
        return self.train_step.objective

    @objective.setter
    def objective(self, objective: Objective) -> None:
        self.train_step.objective = objective

    @property
    def run_dir(self) -> Path:
        """The run folder (only rank 0 writes it)."""
        return self.run_folder.root

    # -- data -------------------------------------------------------------------------------
    def _train_loader(self, *, epoch_key: int) -> EpochLoader[dict[str, Any]]:
        """The training loader, its sampler shuffled for ``epoch_key`` (one key per pass over the data)."""
        if self._loaders.get("train") is None:
            sampler: DistributedSampler[dict[str, Any]] = DistributedSampler(
                self.train_set,
                num_replicas=self.dist.world_size,
                rank=self.dist.rank,
                shuffle=True,
                seed=self.seed,
                drop_last=False,
            )
            self._loaders["train"] = self._epoch_loader(self.train_set, sampler)
        loader = self._loaders["train"]
        assert isinstance(loader.sampler, DistributedSampler)
        loader.sampler.set_epoch(epoch_key)
        return loader

    def _val_loader(self) -> EpochLoader[dict[str, Any]]:
        if self._loaders.get("val") is None:
            self._loaders["val"] = self._epoch_loader(self.val_set, SequentialSampler(self.val_set))
        return self._loaders["val"]

    def _epoch_loader(
        self, dataset: Dataset[dict[str, Any]], sampler: Sampler[Any]
    ) -> EpochLoader[dict[str, Any]]:
        # Its workers serve every epoch of the run (fit closes it): by forkserver or spawn a worker
        # start is an interpreter start, which a loader per epoch would pay at every epoch.
        return EpochLoader(
            dataset,
            sampler=sampler,
            batch_size=self.optim.batch_size,
            seed=self.seed,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            multiprocessing_context=self.worker_start_method,
        )

    def _close_loaders(self) -> None:
        """Stop the loaders' workers (each holds a copy of its dataset)."""
        loaders, self._loaders = self._loaders, {}
        for loader in loaders.values():
            loader.close()

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        moved: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and key in ("image", "label"):
                moved[key] = value.to(self.device, non_blocking=True, memory_format=fmt)
            else:
                # "index" stays on the host: corruption keys are hashed there, and reading them back
                # from the GPU would stall every step until the device caught up.
                moved[key] = value
        return moved

    # -- checkpoints ------------------------------------------------------------------------
    def _save(
        self,
        folder: Path,
        *,
        epoch: int,
        val_loss: float,
        optimizer: torch.optim.Optimizer | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        if not self.dist.is_main:
            return
        meta = self.meta.model_copy(update={"epoch": epoch, "val_loss": val_loss})
        tensors: dict[str, dict[str, torch.Tensor]] = {}
        documents: dict[str, Any] = {}
        if optimizer is not None and state is not None:
            opt_tensors, opt_doc = optimizer_to_tensors(optimizer)
            rng_tensors, rng_doc = rng_states()
            tensors = {"optimizer": opt_tensors, "rng": rng_tensors}
            documents = {"optimizer": opt_doc, "trainer_state": {**state, "rng": rng_doc}}
        save_checkpoint(
            folder,
            _unwrap(self.model).state_dict(),
            meta,
            tensors=tensors,
            documents=documents,
        )

    def _load_weights(self, which: Literal["best", "last"]) -> None:
        tensors, _ = read_checkpoint_dir(self.run_folder.checkpoint(which))
        _unwrap(self.model).load_state_dict(tensors["model"])

    def _load_best_so_far(self) -> None:
        """Load the best weights so far: a pending best's (this phase's newest), else ``best``'s."""
        pending = self.run_folder.pending_best
        tensors, _ = read_checkpoint_dir(pending if checkpoint_exists(pending) else self.run_folder.best)
        _unwrap(self.model).load_state_dict(tensors["model"])

    def _promote_pending_best(self) -> None:
        """Move a pending best to ``best``: called right after ``last`` is written, which records its epoch.

        A new best epoch's weights wait in ``checkpoints/best.pending`` until then. Written straight
        to ``best``, a process killed before the next ``last`` left ``best`` holding an epoch that
        the resume trains again; where that epoch then scored otherwise (a GPU's non-deterministic
        kernels, a ``run.*`` setting changed on resume) ``best`` kept the lost epoch's weights, and
        the run ended by loading weights no record described.
        """
        if self.dist.is_main:
            promote_checkpoint(self.run_folder.pending_best, self.run_folder.best)

    def _settle_pending_best(self, state: _FitState) -> None:
        """On starting or resuming: finish the move of a pending best ``last`` records, drop any other.

        A pending best whose epoch is the best ``last``'s trainer state records was written before
        ``last`` and not yet moved (a kill between the two). Any other is from an epoch this run
        trains again, or from an earlier run in the folder: it goes.
        """
        pending = self.run_folder.pending_best
        if not self.dist.is_main or not checkpoint_exists(pending):
            return
        try:
            epoch: int | None = read_checkpoint_meta(resolve_checkpoint(pending) / "meta.json").epoch
        except CheckpointError:
            epoch = None
        if state.best_epoch >= 0 and epoch == state.best_epoch:
            promote_checkpoint(pending, self.run_folder.best)
            log.info("moved %s (epoch %d) to %s, as its last checkpoint records", pending, epoch, "best")
            return
        kept = remove_checkpoint(pending)
        if kept:
            # Not an error: a stale pending best is moved to ``best`` only if ``last`` records its
            # epoch, which it does not; the next new best replaces it.
            stayed = ", ".join(f"{path} ({exc.strerror or exc})" for path, exc in kept)
            warn_each_time(
                f"could not remove {stayed}: weights of an epoch this run trains again", UserWarning
            )
        else:
            log.info("removed %s: weights of an epoch this run trains again", pending)

    def _try_resume(self) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]], dict[str, Any]] | None:
        last = self.run_folder.last
        if not checkpoint_exists(last):
            return None
        try:
            tensors, documents = read_checkpoint_dir(last)
        except CheckpointError as exc:
            raise CheckpointError(f"cannot resume from {last}: {exc}. {self._without_last()}") from exc
        if "trainer_state" not in documents or "optimizer" not in tensors:
            raise CheckpointError(
                f"cannot resume from {last}: it has no trainer state. {self._without_last()}"
            )
        _unwrap(self.model).load_state_dict(tensors["model"])
        return documents["trainer_state"], tensors, documents

    def _without_last(self) -> str:
        """What is left to a user whose ``checkpoints/last`` cannot be resumed from: the way on."""
        best = self.run_folder.best
        way_on = "put back an intact copy of it, or start a new run.output_dir"
        try:
            resolve_checkpoint(best)
        except CheckpointError:
            return f"To train on, {way_on}"
        return (
            f"To train on, {way_on}; the run's best weights so far, in {best}, are intact, and "
            "load_model, evaluate and predict read them from the run folder"
        )

    # -- the loop ---------------------------------------------------------------------------
    def _wrap_for_phase(self) -> None:
        """Wrap the model in a fresh DistributedDataParallel for this phase (distributed runs only).

        DDP registers the parameters that require gradients when it is built, and its reducer
        then waits for a gradient of every one of them in each backward: a wrapper built before a
        phase froze the encoder would wait for gradients that never come ("Expected to have
        finished reduction in the prior iteration"). Built after :meth:`_make_optimizer` fixed the
        phase's trainable set, it registers exactly those, with no ``find_unused_parameters``
        (which walks the autograd graph on every step). Building it also broadcasts rank 0's
        weights and buffers, so every phase starts from the same state on every rank. The training
        steps run the wrapper (compiled under ``run.compile``, as :class:`TrainStep` would);
        validation keeps the bare module.
        """
        if not self.dist.distributed:
            return
        model = _unwrap(self.model)
        # The previous phase's wrapper is let go first, so its gradient buckets (the size of the
        # trained weights) are freed before the new one allocates its own.
        self.ddp_model = self.train_step.model = self.train_step.network = model
        self.ddp_model = DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None
        )
        self.train_step.model = self.ddp_model
        self.train_step.network = compile_network(self.ddp_model, self.context.run.compile)

    def _trainable_as_given(self) -> None:
        """Give every parameter back the ``requires_grad`` it had when :meth:`fit` began.

        A phase freezes its ``frozen_parts`` on top of that, never unfreezes what the caller froze
        (a fixed layer, a backbone's non-trainable weights): those stay out of every optimiser.
        """
        given = self._requires_grad_given
        for index, param in enumerate(_unwrap(self.model).parameters()):
            param.requires_grad_(True if given is None else given[index])

    def _make_optimizer(self, phase: Phase) -> torch.optim.Optimizer:
        model = _unwrap(self.model)
        self._trainable_as_given()
        if phase.frozen_parts:
            set_trainable(model, phase.frozen_parts, trainable=False)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"phase {phase.name!r}: every parameter is frozen, nothing to train")
        return adam(
            params,
            lr=phase.lr,
            device=self.device,
            betas=self.optim.effective_betas,
            eps=self.optim.eps,
            weight_decay=self.optim.weight_decay,
        )

    def steps_per_epoch(self) -> int:
        """Optimisation steps in one epoch: ``optim.steps_per_epoch`` or one pass over this rank's share."""
        if self.optim.steps_per_epoch is not None:
            return self.optim.steps_per_epoch
        per_rank = math.ceil(len(self.train_set) / self.dist.world_size)
        return math.ceil(per_rank / self.optim.batch_size)

    def _check_passes_per_epoch(self) -> None:
        """Refuse an ``optim.steps_per_epoch`` that needs more passes over the data than an epoch has.

        An epoch passes over the data at most ``_MAX_PASSES`` times (each pass's corruption keys and
        order are folded into one integer with that bound); more steps than those passes hold would
        end the epoch short of ``steps_per_epoch``, and the ``warmup_cosine`` schedule, laid over
        ``max_epochs`` x ``steps_per_epoch`` steps, would never reach its end.

        Raises:
            ConfigError: Naming ``optim.steps_per_epoch``, the largest that fits and the data's size.
        """
        wanted = self.optim.steps_per_epoch
        items = math.ceil(len(self.train_set) / self.dist.world_size)
        per_pass = math.ceil(items / self.optim.batch_size)
        if wanted is None or wanted <= per_pass * _MAX_PASSES:
            return
        share = " per process" if self.dist.world_size > 1 else ""
        raise ConfigError(
            f"optim.steps_per_epoch={wanted} needs {math.ceil(wanted / per_pass)} passes over the "
            f"{items} training item(s){share} per epoch ({per_pass} step(s) of optim.batch_size="
            f"{self.optim.batch_size} a pass); an epoch holds at most {_MAX_PASSES} passes, so at most "
            f"{per_pass * _MAX_PASSES} steps. Lower optim.steps_per_epoch and raise optim.max_epochs, "
            "or train on more data"
        )

    def learning_rate(self, phase: Phase, *, epoch: int, step: int) -> float:
        """The learning rate at 0-based ``step`` of 0-based ``epoch`` of ``phase``.

        ``step_decay`` (the paper) is constant within an epoch; ``warmup_cosine`` is defined
        over the phase's whole budget, ``max_epochs`` x :meth:`steps_per_epoch` steps.
        """
        optim = self.optim
        if optim.effective_schedule == "step_decay":
            return step_decay_lr(
                epoch, lr=phase.lr, decay=optim.lr_decay, every=optim.lr_decay_every, min_lr=optim.min_lr
            )
        per_epoch = self.steps_per_epoch()
        total = optim.max_epochs * per_epoch
        return warmup_cosine_lr(
            epoch * per_epoch + step,
            lr=phase.lr,
            total_steps=total,
            warmup_steps=warmup_steps_for(total, warmup_fraction=optim.warmup_fraction),
            min_lr=optim.min_lr,
        )

    def _epoch_batches(
        self, *, phase_index: int, epoch: int, desc: str
    ) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Yield ``(pass, real, batch)``: one pass over the data, or exactly ``steps_per_epoch`` batches.

        With ``steps_per_epoch`` larger than one pass (a few labelled slices), the data is
        re-shuffled and passed over again, so every epoch trains the same number of steps
        whatever the label fraction. ``real`` counts the batch's leading rows that are real
        samples: under torchrun, the rows after them repeat samples other ranks train on (the
        ``DistributedSampler`` pads every rank to the same number of items, see
        :func:`_real_items`); for a single process it is the whole batch.
        """
        total = self.steps_per_epoch()
        real_items = _real_items(len(self.train_set), rank=self.dist.rank, world_size=self.dist.world_size)
        bar = progress_bar(total=total, desc=desc, leave=False, disable=self.quiet or not self.dist.is_main)
        step = 0
        for data_pass in range(_MAX_PASSES):
            loader = self._train_loader(
                epoch_key=(phase_index * _MAX_EPOCHS + epoch) * _MAX_PASSES + data_pass
            )
            position = 0
            for batch in batches(loader):
                rows = len(batch["index"])
                yield data_pass, min(max(real_items - position, 0), rows), batch
                position += rows
                bar.update(1)
                step += 1
                if step >= total:
                    bar.close()
                    return
        bar.close()

    def _check_finite(self, losses: list[torch.Tensor], *, first_step: int, phase: Phase, epoch: int) -> None:
        """Raise :class:`NonFiniteLossError` if a loss in ``losses`` is NaN or infinite on any rank.

        A collective: every rank calls it at the same steps (every 50 and at the epoch's end; each
        rank trains the same number of steps) with its own losses, and the decision is taken on
        their sum over ranks. So every rank raises the same error at the same point, where a rank
        that raised alone would leave the others waiting in the next collective (gloo: "Connection
        closed by peer"; NCCL: a hang while the raising process is alive). This is the loop's one
        host sync in 50 steps either way; the all-reduce adds a few bytes to it.
        """
        if not losses:
            return
        stacked = torch.stack(losses)
        # Per step: how many ranks saw NaN, +inf and -inf.
        kinds = torch.stack([stacked.isnan(), stacked == math.inf, stacked == -math.inf], dim=1)
        counts = all_reduce_sum(kinds.to(torch.float32))
        per_step = counts.sum(dim=1)
        if not bool(per_step.any()):
            return
        index = int(per_step.nonzero()[0, 0])
        nan, positive, _ = (float(c) for c in counts[index])
        value = "nan" if nan else "inf" if positive else "-inf"
        if self.dist.distributed:
            value += f" on {int(per_step[index])} of {self.dist.world_size} processes"
        raise NonFiniteLossError(
            f"non-finite training loss ({value}) in phase {phase.name!r} at "
            f"epoch {epoch} step {first_step + index}; stopped. {self._kept_checkpoint()}. "
            "Try a lower optim.lr or set optim.grad_clip."
        )

    def _kept_checkpoint(self) -> str:
        """What a run stopped by a non-finite loss keeps, for its message; a lone pending best becomes best.

        With ``run.checkpoint_every`` above 1 the best weights so far may wait in ``best.pending``
        with no ``best`` beside it: nothing would move them once the run stops, ``load_model``
        does not read that folder and the next run in the folder removes it. They are the run's
        best weights, so they become its ``best``.
        """
        folder = self.run_folder.checkpoints
        best, pending = self.run_folder.best, self.run_folder.pending_best
        if self.dist.is_main and not checkpoint_exists(best) and checkpoint_exists(pending):
            promote_checkpoint(pending, best)
        if checkpoint_exists(best) or checkpoint_exists(pending):
            return f"The last good checkpoint is kept in {folder}"
        # A run that fails in its first epoch has no checkpoint: saying one is kept would send the
        # user looking for weights that do not exist.
        return f"No checkpoint had been written yet, so {folder} holds none"

    def _train_epoch(
        self, optimizer: torch.optim.Optimizer, *, phase_index: int, epoch: int, global_epoch: int
    ) -> tuple[float, float]:
        """One epoch of training steps: the sample-weighted mean loss and the mean learning rate.

        The mean is over the real samples the steps trained on, each batch's loss weighted by
        its real rows: a padding row of a torchrun rank (:meth:`_epoch_batches`) still trains,
        as ``DistributedSampler`` intends, but is not counted, and the objective's loss of the
        batch's real rows alone (:data:`~inpaintssl.training.objectives.REAL_LOSS_KEY`) stands
        for the batch where the objective gives it. For a loss that is a mean over the images of
        a batch (the pretraining L2) that is the mean of every real sample's loss, as one process
        records it; an objective that does not give it has its whole batch's loss weighted.
        """
        phase = self.phases[phase_index]
        if len(self.train_set) >= _MAX_ITEMS or epoch >= _MAX_EPOCHS:
            raise ValueError(
                f"at most {_MAX_ITEMS - 1} training items and {_MAX_EPOCHS - 1} epochs are supported"
            )
        self.ddp_model.train()
        if phase.frozen_parts:
            hold_running_statistics(_unwrap(self.model), phase.frozen_parts)
        pending: list[torch.Tensor] = []
        pending_start = 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        step = -1
        lr_sum = 0.0
        batches = self._epoch_batches(
            phase_index=phase_index, epoch=epoch, desc=f"{phase.name} epoch {global_epoch}"
        )
        for step, (data_pass, real, raw) in enumerate(batches):
            lr = self.learning_rate(phase, epoch=epoch, step=step)
            lr_sum += lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = self._to_device(raw)
            keys = (
                batch["index"] + ((phase_index * _MAX_EPOCHS + epoch) * _MAX_PASSES + data_pass) * _MAX_ITEMS
            )
            n = int(batch["image"].shape[0])
            if real < n:
                batch[REAL_ROWS_KEY] = real
            detached = self.train_step(optimizer, batch, keys=keys)
            # The whole batch's loss: a non-finite padding row poisons the update all the same.
            pending.append(detached)
            if real == n:
                loss_sum += detached.double() * n
            elif real > 0:
                loss_sum += batch.get(REAL_LOSS_KEY, detached).double() * real
            count += real
            if len(pending) >= 50:
                self._check_finite(pending, first_step=pending_start, phase=phase, epoch=global_epoch)
                pending, pending_start = [], step + 1
        self._check_finite(pending, first_step=pending_start, phase=phase, epoch=global_epoch)
        totals = all_reduce_sum(
            torch.stack([loss_sum, torch.tensor(float(count), dtype=torch.float64, device=self.device)])
        )
        mean_lr = lr_sum / (step + 1) if step >= 0 else self.learning_rate(phase, epoch=epoch, step=0)
        return float(totals[0] / totals[1].clamp_min(1)), mean_lr

    @torch.no_grad()
    def validate(self) -> float:
        """Mean validation loss (sample-weighted over batches, summed across ranks)."""
        try:
            return self._validate()[0]
        finally:
            if not self._fitting:
                self._close_loaders()

    @torch.no_grad()
    def _validate(self) -> tuple[float, dict[str, float]]:
        """Mean validation loss and, for objectives that score overlaps, the validation Dice.

        The Dice is pooled per class over every validation pixel (intersections and totals summed
        over slices and ranks): ``val_dice`` averages the classes present (labelled or predicted
        somewhere), ``val_dice_<class>`` is each present class's own.

        Each rank scores whole batches of the single-process batching (:func:`_validation_shard`)
        and every rank takes part in every all-reduce, a rank without a batch with zeros.
        """
        loader = self._val_loader()
        self.ddp_model.eval()
        model = self.eval_network
        score = getattr(self.objective, "loss_and_overlaps", None)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        overlaps: torch.Tensor | None = None
        for raw in batches(loader):
            batch = self._to_device(raw)
            keys = batch["index"] + VALIDATION_KEY_OFFSET
            with autocast_context(self.device, self.amp_dtype):
                if callable(score):
                    loss, batch_overlaps = score(model, batch, keys=keys)
                    if batch_overlaps is not None:
                        overlaps = batch_overlaps if overlaps is None else overlaps + batch_overlaps
                else:
                    loss = self.objective.loss(model, batch, keys=keys)
            n = batch["image"].shape[0]
            loss_sum += loss.detach().double() * n
            count += n
        totals = all_reduce_sum(torch.stack([loss_sum, count]))
        value = float(totals[0] / totals[1].clamp_min(1))
        if not callable(score):
            return value, {}
        # A rank without a validation batch has no overlaps and does not know how many classes
        # there are: the ranks agree on that first, so it adds zeros to the pooled sums.
        classes = int(
            all_reduce_max(torch.tensor(0 if overlaps is None else overlaps.shape[-1], device=self.device))
        )
        if classes == 0:
            return value, {}
        if overlaps is None:
            overlaps = torch.zeros(2, classes, dtype=torch.float64, device=self.device)
        pooled = all_reduce_sum(overlaps.double())
        present = pooled[1] > 0
        if not bool(present.any()):
            return value, {}
        dice = 2 * pooled[0] / pooled[1].clamp_min(1e-12)
        names = list(self.meta.class_names)
        if len(names) != dice.numel():
            names = [str(k) for k in range(dice.numel())]
        per_class = {f"val_dice_{n}": float(d) for n, d, p in zip(names, dice, present, strict=True) if p}
        return value, {"val_dice": float(dice[present].mean()), **per_class}

    def fit(self) -> TrainOutcome:
        """Run every phase to early stopping or ``max_epochs``; return the history and best loss.

        On return the model holds the best weights of the last phase.

        Raises:
            NonFiniteLossError: A training or validation loss became NaN/inf.
            CheckpointError: ``resume`` was asked for but the last checkpoint is unusable.
        """
        state = _FitState()
        restore: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        self._requires_grad_given = [p.requires_grad for p in _unwrap(self.model).parameters()]
        if self.dist.is_main:
            # This process holds the run folder's lock: temporaries there are a killed run's.
            swept = ((self.run_dir, RunFolder.NAMES), (self.run_folder.checkpoints, ("best", "last")))
            removed = [path for folder, names in swept for path in remove_partial_writes(folder, names=names)]
            # Pretraining's per-epoch images are named by epoch, not listed anywhere: their
            # temporaries are matched by pattern, and one a live writer holds is left alone.
            figures = re.compile(r"\.epoch_\d+\.png\." + TEMPORARY_TOKEN + r"\.tmp")
            removed += remove_unlocked(self.run_folder.reconstructions, figures, folders=False)
            for path in removed:
                log.info("removed %s, left by an interrupted write", path)
        if self.resume:
            resumed = self._try_resume()
            if resumed is not None:
                saved, tensors, documents = resumed
                try:
                    state = _FitState.from_json(saved)
                    restore = (tensors["optimizer"], documents["optimizer"])
                    rng_tensors, rng = tensors["rng"], saved["rng"]
                except (KeyError, TypeError, ValueError) as exc:
                    what = f"no {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
                    raise CheckpointError(
                        f"cannot resume from {self.run_folder.checkpoint('last')}: its trainer state is "
                        f"not one this version writes ({what}); resume it with the version that wrote "
                        "it, or start a new run.output_dir"
                    ) from exc
                state.resumed_from = state.global_epoch
                self._settle_pending_best(state)
                barrier()  # other ranks read ``best`` once rank 0 has settled it
                self._check_best_checkpoint(state)
                restore_rng_states(rng_tensors, rng)
                self._restore_grad_scaler(saved.get("grad_scaler"))
                if self.dist.is_main:  # every rank resumes alike; the log says it once
                    self._said_resumed(state)
                    # The table is rewritten only after an epoch: a resume that trains none (a
                    # finished run) would leave a torn or edited copy beside the checkpoint's.
                    if state.history:
                        write_metrics_csv(self.run_folder.metrics_csv, state.history)
        if state.resumed_from is None:
            self._settle_pending_best(state)  # an earlier run's, in a folder trained afresh
        if state.phase >= len(self.phases):
            self._refuse_to_extend(state)
            if self.dist.is_main:  # after the refusal of a larger budget, which it would contradict
                self._said_finished(state)
            self._load_weights("best")
        elif state.max_epochs not in (None, self.optim.max_epochs):
            if self.optim.max_epochs <= state.epoch:
                raise ConfigError(
                    f"cannot resume {self.run_dir} with optim.max_epochs={self.optim.max_epochs}: its "
                    f"phase {self.phases[state.phase].name!r} has already trained {state.epoch} epochs "
                    f"(of optim.max_epochs={state.max_epochs}), so that budget is behind it. Resume with a "
                    f"budget above {state.epoch}, or start a new run.output_dir"
                )
            self._refuse_a_budget_finished_phases_contradict(state)
            if self.dist.is_main and self.run_folder.config.is_file():
                record_budget(self.run_dir, self.optim.max_epochs)
        elif state.max_epochs is not None and self.dist.is_main and self.run_folder.config.is_file():
            # Back to the checkpoint's budget: a resume to another one that stopped before its first
            # checkpoint rewrote the record to a budget no weights were trained with.
            record_budget(self.run_dir, self.optim.max_epochs)
        undo_sync_batchnorm = self._sync_batchnorm()
        self._fitting = True
        try:
            while state.phase < len(self.phases):
                self._run_phase(state, restore)
                restore = None
        except NonFiniteLossError:
            # The curve up to the blow-up is what tells a diverging run apart; draw it before raising.
            if self.dist.is_main and state.history:
                try:
                    plot_learning_curve(
                        state.history,
                        self.run_folder.learning_curve,
                        title=self.run_dir.name,
                        converged=False,
                        reason="stopped by a non-finite loss",
                    )
                except Exception as exc:  # noqa: BLE001 - the non-finite loss is the error to report
                    log.warning("could not draw %s: %s", self.run_folder.learning_curve, exc)
            # Every rank raises here, decided by an all-reduce; leaving straight from it can hang
            # gloo's teardown on PyTorch 2.3.
            settle_last_collective()
            raise
        finally:
            self._fitting = False
            self._close_loaders()
            undo_sync_batchnorm()
            if self._tensorboard is not None:
                self._tensorboard.close()
                self._tensorboard = None
        barrier()
        self._trainable_as_given()
        outcome = TrainOutcome(
            history=state.history,
            best_val_loss=state.best_val,
            best_epoch=state.best_epoch,
            epochs_run=state.global_epoch,
            # Not where patience ran out on the last phase's last budgeted epoch: that ended nothing.
            stopped_early=ended_by_early_stopping(
                [row for row in state.history if row["phase"] == self.phases[-1].name],
                max_epochs=self.optim.max_epochs,
            ),
            resumed_from_epoch=state.resumed_from,
            phase_best=state.phase_best,
            convergence=[self._phase_convergence(state.history, p.name) for p in self.phases],
            phase_names=[p.name for p in self.phases],
        )
        if self.dist.is_main:
            report_convergence(
                outcome,
                phases=self.phases,
                optim=self.optim,
                steps_per_epoch=self.steps_per_epoch(),
                run_dir=self.run_dir,
                learning_curve=self.run_folder.learning_curve,
            )
        return outcome

    def _said_resumed(self, state: _FitState) -> None:
        if state.phase < len(self.phases):
            log.info("resumed %s at phase %d epoch %d", self.run_dir, state.phase, state.epoch)

    def _said_finished(self, state: _FitState) -> None:
        # A warning, not a log line: without --quiet (or logging set up by the caller) a log line is
        # not shown, and the output then looked like a fresh run's.
        warn_each_time(
            f"resumed {self.run_dir}: the run had finished ({state.global_epoch} epochs, best in epoch "
            f"{state.best_epoch + 1} (metrics.csv epoch {state.best_epoch})); nothing is left to train, so "
            "its best weights are loaded again",
            FinishedRunWarning,
        )

    def _check_best_checkpoint(self, state: _FitState) -> None:
        """Refuse a resume whose ``checkpoints/best`` is missing or damaged, before any epoch trains.

        The run's best weights so far are only there, and the run ends by loading them: found
        damaged then, the error came after the resumed epochs were trained, or, where one of them
        scored better, the damaged copy was silently replaced and the error never came.

        Raises:
            CheckpointError: Naming the folder (and the damaged file), the best epoch it holds and
                what to do.
        """
        if state.best_epoch < 0:  # no epoch validated yet: there is no best to lose
            return
        best = self.run_folder.best
        holds = (
            f"the run's best weights so far (metrics.csv epoch {state.best_epoch}, "
            f"val_loss {state.best_val:.6g})"
        )
        remedy = "Put back an intact copy of that folder, or start a new run.output_dir"
        if not checkpoint_exists(best):
            raise CheckpointError(
                f"cannot resume {self.run_dir}: its best checkpoint {best} is missing; it held {holds}. "
                f"{remedy}"
            )
        try:
            recorded = read_checkpoint_meta(resolve_checkpoint(best) / "meta.json")
        except CheckpointError as exc:
            raise CheckpointError(
                f"cannot resume {self.run_dir}: its best checkpoint {best} is damaged ({exc}); it holds "
                f"{holds}. {remedy}"
            ) from exc
        if recorded.epoch != state.best_epoch:
            # Left by a version that wrote ``best`` before ``last`` recorded its epoch: the weights
            # of the recorded best epoch are gone. The run goes on from what ``best`` holds, so
            # the best epoch it reports is the one whose weights it ends with.
            loss = "unrecorded" if recorded.val_loss is None else f"{recorded.val_loss:.6g}"
            warn_each_time(
                f"resuming {self.run_dir}: its best checkpoint {best} holds epoch {recorded.epoch} "
                f"(val_loss {loss}), not {holds}: a process killed after writing it and before its "
                f"last checkpoint, by a version before this one, overwrote the weights of epoch "
                f"{state.best_epoch}. The run goes on with epoch {recorded.epoch} as its best",
                UserWarning,
            )
            state.best_epoch = recorded.epoch
            if recorded.val_loss is not None:
                state.best_val = recorded.val_loss

    def _sync_batchnorm(self) -> Callable[[], None]:
        """Under torchrun on GPUs, train BatchNorm layers as SyncBatchNorm; return the undo.

        Without it each rank's BatchNorm normalises with the statistics of its share of the batch
        only, and keeps running statistics of its own. On the CPU (gloo) PyTorch 2.13 refuses
        SyncBatchNorm in training ("expected input tensor to be on GPU"), so the layers stay
        BatchNorm there and :meth:`_run_epoch` gives every rank rank 0's running statistics before
        validating. The caller's model gets its own layers back when :meth:`fit` returns.
        """
        if self.dist.distributed and self.device.type == "cuda":
            return use_sync_batchnorm(_unwrap(self.model))  # a no-op without BatchNorm layers
        return lambda: None

    def _refuse_to_extend(self, state: _FitState) -> None:
        """A finished run resumed with another ``optim.max_epochs`` is an error, not a silent no-op.

        Its phases ended (by their budget or by early stopping) and it holds its best weights, not
        its last, and a ``warmup_cosine`` schedule ran down to its floor, so no continuation would
        be the longer run the user asks for (a run killed mid-phase does continue to a new budget).
        """
        recorded = state.max_epochs
        if recorded is None:  # a state from before the budget was recorded: infer it
            for phase in self.phases:
                rows = [row for row in state.history if row["phase"] == phase.name]
                if rows and not rows[-1].get("stopped_early") and len(rows) < self.optim.max_epochs:
                    recorded = len(rows)
                    break
        if recorded is None or recorded == self.optim.max_epochs:
            return
        raise ConfigError(
            f"cannot resume {self.run_dir} with optim.max_epochs={self.optim.max_epochs}: the run has "
            f"finished (with optim.max_epochs={recorded}, each phase ended by its budget or by early "
            "stopping, and the run was set to its best weights), and a finished run is not extended. "
            "Start a new run with the new budget (another run.output_dir), or resume with the "
            "recorded optim.max_epochs"
        )

    def _refuse_a_budget_finished_phases_contradict(self, state: _FitState) -> None:
        """Refuse a new ``optim.max_epochs`` under which a finished phase would have ended otherwise.

        The resumed run is recorded as a run with the new budget from its start (:func:`record_budget`
        rewrites ``config.yaml``), which holds for a phase early stopping ended within that budget.
        A phase that its old budget ended would have trained longer (or shorter) under the new one,
        and one that trained past the new budget has no place in it; a two-phase run resumed in its
        second phase would then record a budget its first phase never had.
        """
        new, old = self.optim.max_epochs, state.max_epochs
        for phase in self.phases[: state.phase]:
            rows = [row for row in state.history if row["phase"] == phase.name]
            stopped_early = bool(rows) and bool(rows[-1].get("stopped_early"))
            if stopped_early and len(rows) <= new:
                continue
            if stopped_early:
                how = f"was stopped early after {len(rows)} epochs, past a budget of {new}"
            else:
                longer = "trained it longer" if new > len(rows) else "stopped it sooner"
                how = f"ended by its budget after {len(rows)} epochs, which a budget of {new} would have"
                how += f" {longer}"
            raise ConfigError(
                f"cannot resume {self.run_dir} with optim.max_epochs={new}: its finished phase "
                f"{phase.name!r} (run with optim.max_epochs={old}) {how}, so config.yaml would record "
                f"a budget the run did not train with. Resume with optim.max_epochs={old}, or start a "
                "new run.output_dir with the new budget"
            )

    def _phase_convergence(self, history: Sequence[dict[str, Any]], phase: str) -> Convergence:
        return phase_convergence(
            history,
            phase,
            tolerance=self.stopping_config.convergence_tolerance,
            max_epochs=self.optim.max_epochs,
        )

    def _run_phase(
        self, state: _FitState, restore: tuple[dict[str, torch.Tensor], dict[str, Any]] | None
    ) -> None:
        phase = self.phases[state.phase]
        optimizer = self._make_optimizer(phase)
        self._wrap_for_phase()
        # Only the phase a resumed run stopped in carries optimizer moments and stopping state.
        if restore is not None and state.stopping is not None:
            optimizer_from_tensors(optimizer, *restore)
        else:
            min_delta = self.stopping_config.min_delta
            if min_delta is None:
                raise ValueError(
                    "early_stopping.min_delta is None: the stage resolves it to a number before training "
                    "(pretraining: inpaintssl.training.early_stopping.pretraining_min_delta)"
                )
            state.stopping = EarlyStopping(min_delta=min_delta, patience=self.stopping_config.patience)
            # The best weights are the best over every phase: a later phase is kept only where it
            # beats the validation loss of the weights it started from.
            state.phase_best_val, state.epoch = math.inf, 0
        state.stopped_early = False
        state.max_epochs = self.optim.max_epochs
        # Outside a terminal this is one plain line per epoch (see inpaintssl.progress).
        bar = progress_bar(
            total=self.optim.max_epochs,
            initial=state.epoch,
            desc=phase.name,
            unit="epoch",
            leave=False,
            disable=self.quiet or not self.dist.is_main,
            lines=True,
        )
        while state.epoch < self.optim.max_epochs:
            row = self._run_epoch(optimizer, state, phase)
            bar.set_postfix(
                train=f"{row['train_loss']:.4g}",
                val=f"{row['val_loss']:.4g}",
                lr=f"{row['lr']:.2g}",
                refresh=False,
            )
            bar.update(1)
            if self.dist.is_main:  # the row's losses are reduced over ranks: one line says it
                log.info(
                    "[%s] epoch %d: lr=%.3g train_loss=%.5g val_loss=%.5g%s",
                    phase.name,
                    row["epoch"],
                    row["lr"],
                    row["train_loss"],
                    row["val_loss"],
                    " *" if row["best"] else "",
                )
            if state.stopped_early or state.epoch >= self.optim.max_epochs:
                break
            if state.epoch % self.checkpoint_every == 0:
                self._save_last(optimizer, state, val_loss=row["val_loss"])
        bar.close()
        state.phase_best.append(state.phase_best_val)
        state.phase, state.epoch, state.stopping = state.phase + 1, 0, None
        final = state.phase >= len(self.phases)
        if final:
            # The end of the run: ``last`` keeps the last epoch's weights, as its name says.
            self._save_last(optimizer, state, val_loss=float(state.history[-1]["val_loss"]))
        # Restore the best weights so far (Keras' restore-best) before the next phase or the end;
        # other ranks wait until rank 0 has written them.
        barrier()
        self._load_best_so_far()
        if not final:
            # A resume after this point starts the next phase from these weights. Every rank has
            # read them before rank 0 moves the pending best they may have come from.
            barrier()
            self._save_last(optimizer, state, val_loss=state.best_val)

    def _run_epoch(self, optimizer: torch.optim.Optimizer, state: _FitState, phase: Phase) -> dict[str, Any]:
        assert state.stopping is not None
        lr = self.learning_rate(phase, epoch=state.epoch, step=0)
        started = time.perf_counter()
        train_loss, mean_lr = self._train_epoch(
            optimizer, phase_index=state.phase, epoch=state.epoch, global_epoch=state.global_epoch
        )
        train_seconds = time.perf_counter() - started
        # Every rank validates, and rank 0 saves, rank 0's buffers (BatchNorm running statistics,
        # which each rank's last steps updated from its own batches): the recorded validation loss
        # is then the saved weights' loss.
        broadcast_buffers(_unwrap(self.model))
        val_loss, val_dice = self._validate()
        if not math.isfinite(val_loss):
            raise NonFiniteLossError(
                f"non-finite validation loss ({val_loss}) in phase {phase.name!r} at epoch "
                f"{state.global_epoch}; stopped. {self._kept_checkpoint()}."
            )
        state.phase_best_val = min(state.phase_best_val, val_loss)
        is_best = val_loss < state.best_val
        if is_best:
            state.best_val, state.best_epoch = val_loss, state.global_epoch
            self._save(self.run_folder.pending_best, epoch=state.global_epoch, val_loss=val_loss)
        state.stopping.update(val_loss)
        row = {
            "phase": phase.name,
            "epoch": state.global_epoch,
            "phase_epoch": state.epoch,
            "lr": lr,
            "lr_mean": mean_lr,
            "train_loss": train_loss,
            "val_loss": val_loss,
            **val_dice,
            "best": int(is_best),
            "stopped_early": int(state.stopping.should_stop),
            "train_seconds": round(train_seconds, 4),
            "seconds": round(time.perf_counter() - started, 3),
        }
        state.history.append(row)
        # The verdict on the run so far: every finished phase and the curve of this one, so the
        # last row is the run's verdict (a two-phase run is converged only when both phases are).
        row["converged"] = int(
            all(
                self._phase_convergence(state.history, p.name).converged
                for p in self.phases[: state.phase + 1]
            )
        )
        state.epoch += 1
        state.global_epoch += 1
        state.stopped_early = state.stopping.should_stop
        if self.dist.is_main:
            write_metrics_csv(self.run_folder.metrics_csv, state.history)
            if self._tensorboard is None:
                # A resumed run redoes the epochs after its last checkpoint: TensorBoard drops
                # what the killed process logged from this step on, as metrics.csv does. So does a
                # fresh start, from step 0: a --resume of a run killed before its first checkpoint
                # starts afresh in a folder whose event file holds the killed run's first epochs.
                self._tensorboard = TensorBoardLog(self.run_dir, purge_step=state.global_epoch - 1)
            self._tensorboard.log(row, step=state.global_epoch - 1)
            if self.epoch_hooks:
                self.ddp_model.eval()
                for hook in self.epoch_hooks:
                    hook(_unwrap(self.model), epoch=state.global_epoch - 1, tensorboard=self._tensorboard)
        return row

    def _save_last(self, optimizer: torch.optim.Optimizer, state: _FitState, *, val_loss: float) -> None:
        # float16 training's loss scale (empty when the scaler is off: bf16, float32) is saved too:
        # a resume would otherwise start again from 2**16 and skip steps until it backs off.
        scaler = self.train_step.scaler.state_dict()
        self._save(
            self.run_folder.last,
            epoch=state.global_epoch - 1,
            val_loss=val_loss,
            optimizer=optimizer,
            state={**state.to_json(), **({"grad_scaler": scaler} if scaler else {})},
        )
        self._promote_pending_best()

    def _restore_grad_scaler(self, saved: Any) -> None:
        """Continue float16 training at the loss scale the checkpoint reached.

        A checkpoint written without a scaler (bf16 or float32, or before scales were saved), or a
        resume without one, leaves the scaler as built.
        """
        if isinstance(saved, dict) and saved and self.train_step.scaler.is_enabled():
            self.train_step.scaler.load_state_dict(saved)
