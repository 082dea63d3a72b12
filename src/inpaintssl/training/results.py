"""What :func:`inpaintssl.pretrain` and :func:`inpaintssl.finetune` return.

Example:
    >>> from pathlib import Path
    >>> r = PretrainResult(run_dir=Path("runs/a"), best_val_loss=1.0, best_epoch=0, epochs_run=1,
    ...                    stopped_early=False, history=[])
    >>> r.checkpoint
    PosixPath('runs/a/checkpoints/best')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from inpaintssl.checkpoint import CheckpointError, CheckpointMeta, read_checkpoint_meta
from inpaintssl.data.base import SliceDataset
from inpaintssl.layout import RunFolder
from inpaintssl.training.evaluation import EvaluationTable
from inpaintssl.training.loop import TrainOutcome
from inpaintssl.transfer_learning import TransferReport
from inpaintssl.transfer_learning.network_parts import attach_run_record

__all__ = ["FinetuneResult", "PretrainResult", "RunResult"]

_Result = TypeVar("_Result", bound="RunResult")


@dataclass
class RunResult:
    """What every training run's result holds: its folder and how training went.

    Attributes:
        run_dir: The run folder.
        best_val_loss: Best validation loss over every phase (the kept weights').
        best_epoch: Epoch of the best weights.
        epochs_run: Epochs trained in total (over all phases, including those of a resumed run).
        stopped_early: Whether early stopping ended the (final phase of the) run.
        history: Per-epoch metrics (as in ``metrics.csv``).
        converged: Whether every phase converged (:mod:`inpaintssl.training.convergence`).
    """

    run_dir: Path
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]]
    converged: bool = False

    @classmethod
    def from_outcome(cls: type[_Result], run_dir: Path, outcome: TrainOutcome, **extra: Any) -> _Result:
        """The result of a run whose :meth:`~inpaintssl.training.loop.Trainer.fit` gave ``outcome``.

        Every :class:`RunResult` field but ``run_dir`` is the outcome's attribute of that name. A
        ``model`` handed back gets the ``meta.json`` of the run's best checkpoint, whose weights it
        holds, as its ``checkpoint_meta``.
        """
        trained = {f.name: getattr(outcome, f.name) for f in fields(RunResult) if f.name != "run_dir"}
        result = cls(run_dir=run_dir, **trained, **extra)
        model = getattr(result, "model", None)
        if isinstance(model, nn.Module):
            record = _best_checkpoint_meta(run_dir)
            if record is not None:
                # Without it the model escapes the checks its run folder gets: transfer refuses a
                # fine-tuned run as pretrained weights, save_smp_encoder another backbone than smp_unet.
                attach_run_record(model, record, source=RunFolder(run_dir).best)
        return result

    @property
    def run_folder(self) -> RunFolder:
        """The paths inside the run folder."""
        return RunFolder(self.run_dir)

    @property
    def checkpoint(self) -> Path:
        """The best checkpoint folder, ready for :func:`inpaintssl.transfer`."""
        return self.run_folder.best


@dataclass
class PretrainResult(RunResult):
    """Outcome of a pretraining run; its ``best_val_loss`` is the validation L2 loss (eq. A1).

    The fields of :class:`RunResult`, and:

    Attributes:
        model: The network with the best weights loaded, in eval mode, on every ``torchrun``
            rank. Its ``checkpoint_meta`` attribute is the best checkpoint's
            :class:`~inpaintssl.checkpoint.CheckpointMeta` (kind, backbone, ...).
        evaluation: Per-image L2 norms of the inpainted validation images (Table 2); ``None``
            on ranks other than 0, which do not evaluate.
    """

    model: nn.Module | None = None
    evaluation: EvaluationTable | None = None

    def __repr__(self) -> str:
        # The network and the evaluation rows stay out: print() of a result should fit a line.
        return (
            f"PretrainResult(run_dir={str(self.run_dir)!r}, epochs_run={self.epochs_run}, "
            f"best_val_loss={self.best_val_loss:.5g}, best_epoch={self.best_epoch}, "
            f"converged={self.converged}, stopped_early={self.stopped_early})"
        )


@dataclass
class FinetuneResult(RunResult):
    """Outcome of a fine-tuning (or supervised-baseline) run.

    Its ``best_val_loss`` is the best validation loss of the segmentation loss (``loss.name``;
    Dice + cross-entropy by default) over every phase: the kept weights'.

    The fields of :class:`RunResult`, and:

    Attributes:
        transfer: What was copied from the pretrained model (``None`` from scratch; a resumed
            run reports the transfer its manifest recorded at its start, ``None`` if it has none).
        test: Per-image/per-volume Dice on the test split (``None`` when there is none, and on
            ``torchrun`` ranks other than 0, which do not evaluate).
        class_names: Foreground classes.
        model: The network with the best weights loaded, in eval mode (on every ``torchrun``
            rank). Its ``checkpoint_meta``
            attribute is the best checkpoint's :class:`~inpaintssl.checkpoint.CheckpointMeta`
            (kind ``finetune``, backbone, classes, ...): :func:`inpaintssl.transfer` refuses it
            as pretrained weights, as it refuses the run folder.
        test_set: The test slices fine-tuning evaluated (``None`` without a test split), so later
            steps (clinical measurements, figures) use them without rebuilding the data. With
            ``data.image_size`` set they are fitted to it (a ``FitToSize`` view): clinical
            measurements take them through :func:`inpaintssl.studies.clinical.on_source_grid`.
        predict_onehot: The run's loss's hard prediction from logits (sigmoid heads threshold at
            0.5, softmax heads take the arg-max); with :attr:`model` it is the run's predictor,
            :meth:`predict`.
    """

    transfer: TransferReport | None = None
    test: EvaluationTable | None = None
    class_names: tuple[str, ...] = ()
    model: nn.Module | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    test_set: SliceDataset | None = field(default=None, repr=False)
    predict_onehot: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """One-hot masks ``(N, K, H, W)`` for a batch of images, as the run's evaluation makes them.

        Raises:
            ValueError: The result carries no model or no predictor (one built by hand without them).
        """
        if self.model is None or self.predict_onehot is None:
            raise ValueError(f"FinetuneResult of {self.run_dir}: no model or predictor on this process")
        with torch.no_grad():
            return self.predict_onehot(self.model(images).float())

    def __repr__(self) -> str:
        # The network and the per-image rows stay out: print() of a result should fit a line.
        dice = ", ".join(f"{k}: {v:.3f}" for k, v in self.mean_dice().items())
        return (
            f"FinetuneResult(run_dir={str(self.run_dir)!r}, epochs_run={self.epochs_run}, "
            f"best_val_loss={self.best_val_loss:.5g}, best_epoch={self.best_epoch}, "
            f"converged={self.converged}, test_dice={{{dice}}}, "
            f"transferred={self.transfer is not None})"
        )

    def mean_dice(self) -> dict[str, float]:
        """Mean per-image test Dice per class (empty without a test split)."""
        if self.test is None:
            return {}
        means = self.test.select(level="image").mean()
        return {name: means[f"dice_{name}"] for name in self.class_names}


def _best_checkpoint_meta(run_dir: Path) -> CheckpointMeta | None:
    """The ``meta.json`` of the run's best checkpoint; ``None`` where this process cannot read it
    (a rank on another machine than the run folder's)."""
    try:
        # The file alone: resolve_checkpoint would hash the weights again, which fit just wrote.
        return read_checkpoint_meta(RunFolder(run_dir).best / "meta.json")
    except (CheckpointError, OSError):
        return None
