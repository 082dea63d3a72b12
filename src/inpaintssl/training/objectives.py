"""What one training step optimises: inpainting (sec. 2.4) or segmentation (sec. 2.3).

An objective turns a collated batch into a scalar loss. The trainer owns everything else
(optimiser, schedule, devices, checkpoints), so one loop serves both stages.

Example:
    >>> import torch
    >>> obj = SegmentationObjective(loss=lambda logits, y: ((logits - y) ** 2).mean())
    >>> net = torch.nn.Conv2d(1, 1, 1)
    >>> batch = {"image": torch.zeros(2, 1, 4, 4), "label": torch.zeros(2, 1, 4, 4)}
    >>> float(obj.loss(net, batch, keys=torch.arange(2)).detach()) >= 0
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from inpaintssl.losses import l2_loss

__all__ = [
    "REAL_LOSS_KEY",
    "REAL_ROWS_KEY",
    "VALIDATION_KEY_OFFSET",
    "InpaintingObjective",
    "Objective",
    "SegmentationObjective",
    "network_output",
    "per_sample_generator_seed",
    "record_real_rows_loss",
]

VALIDATION_KEY_OFFSET = 1 << 62
"""Added to a validation item's index to key its corruption: far above any training key, so
validation corruption never repeats a training one (and evaluation reuses the validation masks)."""


REAL_ROWS_KEY = "real_rows"
"""Set by the trainer on a training batch whose last rows repeat other samples (a torchrun rank's
``DistributedSampler`` padding): how many leading rows are real samples."""

REAL_LOSS_KEY = "real_loss"
"""Where an objective puts, for a batch with :data:`REAL_ROWS_KEY`, the detached loss of the real
rows alone: the value the epoch's ``train_loss`` records for them."""


class Objective(Protocol):
    """A training objective: ``loss(model, batch, keys=...)`` returns the mean-reduced batch loss.

    The returned loss, of every row, is what the step optimises. When ``batch`` holds
    :data:`REAL_ROWS_KEY` (``r``), an objective may also store the loss of the first ``r`` rows
    alone, detached, under :data:`REAL_LOSS_KEY` (:func:`record_real_rows_loss`); the trainer
    records that, weighted by ``r``, in ``train_loss``, and otherwise weights the whole batch's
    loss by ``r``.
    """

    def loss(self, model: nn.Module, batch: dict[str, Any], *, keys: torch.Tensor) -> torch.Tensor: ...


def record_real_rows_loss(
    batch: dict[str, Any],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    output: torch.Tensor,
    target: torch.Tensor,
) -> None:
    """Store ``loss_fn`` of the batch's real rows alone under :data:`REAL_LOSS_KEY` (a no-op
    without :data:`REAL_ROWS_KEY` or without a real row).

    The rows come from the forward pass the step optimises, so the recorded loss costs no other
    pass through the network, only the loss of the real rows.

    Example:
        >>> mse = torch.nn.functional.mse_loss
        >>> batch = {REAL_ROWS_KEY: 1}
        >>> record_real_rows_loss(batch, mse, torch.tensor([[1.0], [5.0]]), torch.zeros(2, 1))
        >>> batch[REAL_LOSS_KEY]
        tensor(1.)
    """
    rows = batch.get(REAL_ROWS_KEY)
    if rows is None or rows <= 0:
        return
    with torch.no_grad():
        batch[REAL_LOSS_KEY] = loss_fn(output[:rows], target[:rows]).detach()


def per_sample_generator_seed(keys: torch.Tensor) -> int:
    """One integer seed from a batch's sample keys (order-sensitive, platform-independent)."""
    seed = 0x9E3779B9
    for key in keys.tolist():
        seed = (seed * 6364136223846793005 + int(key) + 1442695040888963407) % (1 << 63)
    return seed


class InpaintingObjective:
    """Restore the clean image from its corruption (eq. A1, L2 summed over pixels).

    Args:
        task: A pretext task with ``corrupt(images, generator=...)``.
        loss: ``(pred, target) -> scalar``; the paper's eq. A1 by default.

    The corruption of each batch is drawn from a generator seeded by the batch's sample keys,
    which the trainer derives from (seed, epoch, dataset index): an interrupted run that resumes
    sees exactly the corruptions it would have seen, and validation corruption is fixed.
    """

    def __init__(
        self,
        task: Any,
        *,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = l2_loss,
    ) -> None:
        self.task = task
        self.loss_fn = loss

    def corrupt(self, clean: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Corrupt ``clean`` (N, C, H, W) reproducibly from the per-sample ``keys`` (N,) >= 0.

        Tasks derived from :class:`~inpaintssl.corruption.PretextTask` pick each image's mask
        from its own key, so the corruption of a sample does not depend on which batch or which
        rank it landed in (a torchrun job matches a single process). Other tasks get a generator
        seeded from the batch's keys.
        """
        corrupt_fixed = getattr(self.task, "corrupt_fixed", None)
        if callable(corrupt_fixed):
            keyed: torch.Tensor = corrupt_fixed(clean, key=[int(k) for k in keys.tolist()])
            return keyed
        generator = torch.Generator(device=clean.device)
        generator.manual_seed(per_sample_generator_seed(keys))
        corrupted: torch.Tensor = self.task.corrupt(clean, generator=generator)
        return corrupted

    def loss(self, model: nn.Module, batch: dict[str, Any], *, keys: torch.Tensor) -> torch.Tensor:
        clean = batch["image"]
        with torch.no_grad():
            corrupted = self.corrupt(clean, keys)
        restored = network_output(model, corrupted, channels=clean.shape[1]).float()
        record_real_rows_loss(batch, self.loss_fn, restored, clean.float())
        return self.loss_fn(restored, clean.float())


def network_output(model: nn.Module, images: torch.Tensor, *, channels: int | None = None) -> torch.Tensor:
    """``model(images)``, refused unless it is ``(N, C_out, H, W)`` with the input's N, H and W.

    A backbone (a plugin's, say) that changes the spatial size would otherwise fail inside the
    loss with a shape message naming neither the network nor what it should return.

    Args:
        model: The network (possibly wrapped by DDP or ``torch.compile``).
        images: ``(N, C, H, W)`` input batch.
        channels: The output channels required (the input's for inpainting); ``None``: any.

    Raises:
        ValueError: Naming the network's class, both shapes and what was expected.
    """
    output: torch.Tensor = model(images)
    n, _, *grid = images.shape
    fits = output.ndim == images.ndim and output.shape[0] == n and list(output.shape[2:]) == grid
    if not fits or (channels is not None and output.shape[1] != channels):
        inner = getattr(model, "module", model)  # DistributedDataParallel
        inner = getattr(inner, "_orig_mod", inner)  # torch.compile
        expected = f"({n}, {'C_out' if channels is None else channels}, {', '.join(map(str, grid))})"
        raise ValueError(
            f"the network {type(inner).__module__}.{type(inner).__qualname__} returned an output of "
            f"shape {tuple(output.shape)} for an input of shape {tuple(images.shape)}; expected "
            f"{expected}: one map per output channel at the input's height and width"
        )
    return output


class SegmentationObjective:
    """Segment with a Dice-type loss on one-hot foreground labels (eq. A2).

    Args:
        loss: ``(logits, target_onehot) -> scalar``, e.g. ``LOSSES.build("dice")``.
        predict_onehot: ``logits -> (N, K, H, W)`` hard foreground predictions (a segmentation
            loss's ``predict_onehot``); when given, validation also reports Dice.
    """

    def __init__(
        self,
        *,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        predict_onehot: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.loss_fn = loss
        self.predict_onehot = predict_onehot

    def loss(self, model: nn.Module, batch: dict[str, Any], *, keys: torch.Tensor) -> torch.Tensor:
        logits = network_output(model, batch["image"]).float()
        record_real_rows_loss(batch, self.loss_fn, logits, batch["label"].float())
        return self.loss_fn(logits, batch["label"].float())

    def loss_and_overlaps(
        self, model: nn.Module, batch: dict[str, Any], *, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch loss and a ``(2, K)`` tensor: per-class intersections and totals (|P| + |G|)
        of the hard predictions, summed over the batch, for a pooled validation Dice (``None``
        without ``predict_onehot``)."""
        logits = network_output(model, batch["image"]).float()
        target = batch["label"].float()
        if self.predict_onehot is None:
            return self.loss_fn(logits, target), None
        predicted = self.predict_onehot(logits).to(target.dtype)
        dims = (0, *range(2, target.ndim))
        intersection = (predicted * target).sum(dim=dims)
        total = predicted.sum(dim=dims) + target.sum(dim=dims)
        return self.loss_fn(logits, target), torch.stack([intersection, total])
