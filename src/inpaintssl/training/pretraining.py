"""Pretraining: learn to inpaint corrupted slices (sec. 2.4, Appendix A.1).

After every epoch a :class:`ReconstructionPanel` draws fixed validation slices, their
corruption and the network's restoration into ``<run>/reconstructions/epoch_NNN.png`` (and
TensorBoard), so a user sees what the network has learned, not only a falling loss.

Example:
    >>> from inpaintssl.config import PretrainConfig
    >>> PretrainConfig().pretext.task
    'context_restoration'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from inpaintssl.checkpoint import CheckpointMeta
from inpaintssl.config import PretrainConfig, read_config_file
from inpaintssl.registry import LOSSES
from inpaintssl.training.components import build_backbone, build_pretext_task
from inpaintssl.training.context import RunContext, run_session
from inpaintssl.training.device import to_memory_format
from inpaintssl.training.diagnostics import reconstruction_grid, write_reconstruction_panel
from inpaintssl.training.early_stopping import pretraining_min_delta
from inpaintssl.training.evaluation import evaluate_inpainting
from inpaintssl.training.loop import Phase
from inpaintssl.training.objectives import VALIDATION_KEY_OFFSET, InpaintingObjective
from inpaintssl.training.results import PretrainResult
from inpaintssl.training.run_folder import TensorBoardLog
from inpaintssl.training.stages import build_stage_data, build_trainer, check_at_the_door, record_stage

__all__ = ["ReconstructionPanel", "run_pretraining"]

PANEL_SLICES = 4


class ReconstructionPanel:
    """An epoch hook: fixed slices, corrupted and restored, as a PNG per epoch and in TensorBoard.

    Args:
        objective: The run's inpainting objective (its corruption is the one trained on).
        images: ``(N, C, H, W)`` clean slices on the training device.
        keys: ``(N,)`` corruption keys, fixed so every epoch shows the same corruption.
        folder: Where ``epoch_NNN.png`` files go.

    Example:
        >>> import tempfile, torch
        >>> from inpaintssl.registry import PRETEXT_TASKS
        >>> task = PRETEXT_TASKS.build("context_prediction", patch_size=4, sampler="random")
        >>> folder = Path(tempfile.mkdtemp())
        >>> panel = ReconstructionPanel(InpaintingObjective(task), images=torch.rand(2, 1, 16, 16),
        ...                             keys=torch.arange(2), folder=folder)
        >>> panel.write(torch.nn.Identity(), epoch=0).name
        'epoch_000.png'
    """

    def __init__(
        self, objective: InpaintingObjective, *, images: torch.Tensor, keys: torch.Tensor, folder: Path
    ) -> None:
        self.objective = objective
        self.images = images
        self.keys = keys
        self.folder = Path(folder)

    def write(self, model: nn.Module, *, epoch: int) -> Path:
        """Write ``epoch_NNN.png`` and return its path."""
        return self._draw(model, epoch=epoch, tensorboard=None)

    def __call__(self, model: nn.Module, *, epoch: int, tensorboard: TensorBoardLog) -> None:
        self._draw(model, epoch=epoch, tensorboard=tensorboard)

    @torch.no_grad()
    def _draw(self, model: nn.Module, *, epoch: int, tensorboard: TensorBoardLog | None) -> Path:
        corrupted = self.objective.corrupt(self.images, self.keys)
        restored = model(corrupted).float()
        path = write_reconstruction_panel(
            self.images, corrupted, restored, self.folder / f"epoch_{epoch:03d}.png", title=f"epoch {epoch}"
        )
        if tensorboard is not None and tensorboard.active:
            grid = reconstruction_grid(self.images, corrupted, restored)
            tensorboard.log_image("pretrain/reconstruction", grid, step=epoch)
        return path


def run_pretraining(config: PretrainConfig) -> PretrainResult:
    """Pretrain a backbone on an inpainting pretext task; see :func:`inpaintssl.pretrain`."""
    with run_session(config.run) as ctx:
        return _pretrain(config, ctx)


def _with_min_delta(
    config: PretrainConfig, ctx: RunContext, *, slice_shape: tuple[int, int]
) -> PretrainConfig:
    """``config`` with the default ``early_stopping.min_delta`` resolved to a number, then recorded.

    A resumed run keeps the number it recorded (an earlier version's default included); a new one
    takes 50 per 512x512 slice, scaled to ``slice_shape``.
    """
    recorded = ctx.run_folder.config
    resolved: float | None = None
    if config.run.resume and recorded.is_file():
        section = read_config_file(recorded).get("early_stopping")
        value = section.get("min_delta") if isinstance(section, dict) else None
        resolved = float(value) if isinstance(value, (int, float)) else None
    if resolved is None:
        resolved = pretraining_min_delta(*slice_shape)
    stopping = config.early_stopping.model_copy(update={"min_delta": resolved})
    return config.model_copy(update={"early_stopping": stopping})


def _pretrain(config: PretrainConfig, ctx: RunContext) -> PretrainResult:
    bundle = build_stage_data(config, stage="pretrain")
    channels = bundle.in_channels
    checked = check_at_the_door(config, ctx, bundle, out_channels=channels)
    model = build_backbone(
        config.model.backbone,
        config.model.params,
        in_channels=channels,
        out_channels=channels,
        seed=config.run.seed,
        weight_gradient=config.run.cpu_weight_gradient,
    ).to(ctx.device)
    model = to_memory_format(model, channels_last=ctx.channels_last)
    task = build_pretext_task(config.pretext, seed=config.run.seed)
    objective = InpaintingObjective(task, loss=LOSSES.build("l2"))
    # Fail at the door: an impossible patch size or coverage raises here, not hours into training.
    probe = bundle.val[0]["image"].unsqueeze(0).to(ctx.device)
    objective.corrupt(probe, torch.zeros(1, dtype=torch.long, device=ctx.device))
    if config.early_stopping.min_delta is None:
        config = _with_min_delta(config, ctx, slice_shape=(int(probe.shape[-2]), int(probe.shape[-1])))
    record_stage(config, ctx, bundle, stage="pretrain", checked=checked)
    meta = CheckpointMeta(
        kind="pretrain",
        backbone=config.model.backbone,
        backbone_params=dict(config.model.params),
        in_channels=channels,
        out_channels=channels,
        activation="none",
        pretext=config.pretext.model_dump(mode="json"),
    )
    picks = np.linspace(0, len(bundle.val) - 1, num=min(PANEL_SLICES, len(bundle.val))).round().astype(int)
    panel = ReconstructionPanel(
        objective,
        images=torch.stack([bundle.val[int(i)]["image"] for i in picks]).to(ctx.device),
        keys=torch.as_tensor(picks, dtype=torch.long) + VALIDATION_KEY_OFFSET,
        folder=ctx.run_folder.reconstructions,
    )
    trainer = build_trainer(
        config,
        ctx,
        bundle,
        model=model,
        objective=objective,
        phases=[Phase(name="pretrain", lr=config.optim.effective_lr)],
        meta=meta,
        epoch_hooks=[panel],
    )
    outcome = trainer.fit()
    evaluation = None
    if ctx.dist.is_main:
        evaluation = evaluate_inpainting(
            model,
            bundle.val,
            corrupt=objective.corrupt,
            device=ctx.device,
            batch_size=config.optim.batch_size,
            channels_last=ctx.channels_last,
            amp_dtype=ctx.amp_dtype,
            num_workers=config.data.num_workers,
            worker_start_method=config.data.worker_start_method,
        )
        evaluation.to_csv(ctx.run_folder.val_inpainting)
    if not config.run.quiet and ctx.dist.is_main:
        print(
            f"pretrain done: {outcome.epochs_run} epochs{' (early stop)' if outcome.stopped_early else ''}, "
            f"best val L2 {outcome.best_val_loss:.4g} in {outcome.describe_best_epoch()}; "
            f"{outcome.describe_convergence()} -> {ctx.run_dir}"
        )
    model.eval()  # handed back for inference, whatever the last pass left it in
    return PretrainResult.from_outcome(ctx.run_dir, outcome, model=model, evaluation=evaluation)
