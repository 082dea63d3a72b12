"""Base class of segmentation losses: output activation, channel layout and hard predictions.

Labels everywhere in inpaintssl are one-hot over the K *foreground* classes, shape
``(N, K, H, W)``; background is the pixels where every channel is 0 (DESIGN.md sec. 2: the
authors' head had one sigmoid per class and no background channel). A loss decides how network
outputs map onto that layout:

- ``activation="sigmoid"``: K output channels, an independent sigmoid each (the paper's setup).
- ``activation="softmax"``: K + 1 output channels, background first, softmax across them.

A plugin loss subclasses :class:`SegmentationLoss`, implements :meth:`SegmentationLoss.compute`
and registers in :data:`inpaintssl.registry.LOSSES`.

Example:
    >>> import torch
    >>> class MeanAbs(SegmentationLoss):
    ...     def compute(self, logits, target_onehot):
    ...         probs, target = self.dice_pair(logits, target_onehot)
    ...         return (probs - target).abs().mean()
    >>> loss = MeanAbs(activation="softmax")
    >>> loss.out_channels(3)
    4
    >>> float(loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 3, 2, 2)))
    0.25
"""

from __future__ import annotations

import abc
from typing import Literal

import numpy as np
import torch
from torch import nn

from inpaintssl.channel_argmax import channel_argmax
from inpaintssl.losses._tensors import as_loss_dtype
from inpaintssl.options import check_option

__all__ = ["Activation", "SegmentationLoss"]

Activation = Literal["sigmoid", "softmax"]
_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "softmax")


class SegmentationLoss(nn.Module, abc.ABC):
    """Maps logits ``(N, C_out, H, W)`` and one-hot targets ``(N, K, H, W)`` to a scalar loss.

    Args:
        activation: ``"sigmoid"`` (``C_out = K``) or ``"softmax"`` (``C_out = K + 1``, background
            channel first).
        include_background: With softmax, also score the background channel. Needs
            ``activation="softmax"`` (a sigmoid head has no background channel).

    Attributes:
        activation: The output activation, also recorded in checkpoints.
        include_background: As given.

    Raises:
        ValueError: Unknown ``activation``, or ``include_background=True`` with sigmoid.
        TypeError: ``include_background`` is not ``True`` or ``False`` (a config file's quoted
            ``"false"`` is a string, and a string is true).
    """

    def __init__(self, *, activation: Activation = "sigmoid", include_background: bool = False) -> None:
        super().__init__()
        check_option(activation, _ACTIVATIONS, field="activation")
        if not isinstance(include_background, bool | np.bool_):
            # Only truth was asked of it: "false", "no" or 0.5 scored the background channel.
            raise TypeError(
                f"include_background={include_background!r} is invalid; expected True or False "
                f"(a YAML true/false, unquoted), found {type(include_background).__name__}"
            )
        include_background = bool(include_background)
        if include_background and activation != "softmax":
            raise ValueError(
                "include_background=True needs activation='softmax'; a sigmoid head has no background channel"
            )
        self.activation: Activation = activation
        self.include_background = include_background

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, include_background={self.include_background}"

    def out_channels(self, num_classes: int) -> int:
        """Network output channels for ``num_classes`` foreground classes (K, or K + 1 for softmax)."""
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} is invalid; expected an integer >= 1")
        return num_classes + 1 if self.activation == "softmax" else num_classes

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the activation: ``(N, C_out, H, W)`` logits to probabilities of the same shape."""
        logits = as_loss_dtype(logits)
        if self.activation == "softmax":
            return torch.softmax(logits, dim=1)
        return torch.sigmoid(logits)

    @torch.no_grad()
    def predict_onehot(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard prediction ``(N, K, H, W)`` float in {0, 1} over the foreground classes.

        Sigmoid: a class is on where its probability exceeds 0.5 (classes may overlap). Softmax:
        the arg-max channel wins and background pixels are all zero.

        Example:
            >>> import torch
            >>> class Probe(SegmentationLoss):
            ...     def compute(self, logits, target_onehot):
            ...         return logits.sum()
            >>> # (1, 3, 1, 3): background, class 0 and class 1 scores for three pixels
            >>> logits = torch.tensor([[[[0.0, 0.0, 9.0]], [[5.0, 0.0, 0.0]], [[0.0, 5.0, 0.0]]]])
            >>> Probe(activation="softmax").predict_onehot(logits).tolist()
            [[[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]]]
        """
        if logits.ndim < 3:
            raise ValueError(f"logits must have shape (N, C, H, W); found shape {tuple(logits.shape)}")
        if self.activation == "sigmoid":
            return (logits > 0).to(torch.float32)
        winners = channel_argmax(logits, keepdim=True)
        classes = torch.arange(1, logits.shape[1], device=logits.device)
        return (winners == classes.view(1, -1, *([1] * (logits.ndim - 2)))).to(torch.float32)

    def dice_pair(
        self, logits: torch.Tensor, target_onehot: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities and targets channel-aligned for scoring.

        Returns:
            ``(probs, target)`` of equal shape: ``(N, K, H, W)``, or ``(N, K + 1, H, W)`` with the
            background channel first when ``include_background`` is set.
        """
        probs = self.probabilities(logits)
        target = as_loss_dtype(target_onehot).to(probs.dtype)
        if self.activation == "sigmoid":
            return probs, target
        if not self.include_background:
            return probs[:, 1:], target
        background = (1 - target.sum(dim=1, keepdim=True)).clamp(min=0)
        return probs, torch.cat((background, target), dim=1)

    def class_index(self, target_onehot: torch.Tensor) -> torch.Tensor:
        """Integer label map ``(N, H, W)``: 0 for background, ``k + 1`` for foreground class ``k``."""
        on = target_onehot > 0.5
        return torch.where(on.any(dim=1), channel_argmax(on.to(torch.uint8)) + 1, 0)

    def check_inputs(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> None:
        """Raise ``ValueError`` unless the shapes are ``(N, out_channels(K), H, W)`` and ``(N, K, H, W)``.

        Also refuses target values outside [0, 1] (on a GPU, those of the first target only).
        """
        if logits.ndim < 3 or target_onehot.ndim != logits.ndim:
            raise ValueError(
                f"logits (N, C_out, H, W) and target_onehot (N, K, H, W) must have the same number of "
                f"dimensions (>= 3); found shapes {tuple(logits.shape)} and {tuple(target_onehot.shape)}"
            )
        expected = self.out_channels(target_onehot.shape[1])
        if logits.shape[1] != expected:
            raise ValueError(
                f"logits have {logits.shape[1]} channels but target_onehot has K={target_onehot.shape[1]} "
                f"foreground classes; activation={self.activation!r} needs {expected} output channels"
            )
        if logits.shape[0] != target_onehot.shape[0] or logits.shape[2:] != target_onehot.shape[2:]:
            raise ValueError(
                f"logits and target_onehot disagree in batch or spatial size; found shapes "
                f"{tuple(logits.shape)} and {tuple(target_onehot.shape)}"
            )
        self._check_target_range(target_onehot)

    def _check_target_range(self, target_onehot: torch.Tensor) -> None:
        """Refuse target values outside [0, 1]: 0/255 masks or a label map passed as one class.

        Eq. (A2) and cross-entropy are bounded below only for targets in [0, 1]; outside it the loss
        goes negative and keeps falling as the logits grow, a "better than perfect" curve that
        trains nothing. Soft targets inside [0, 1] are the caller's choice and pass. Reading the
        range waits for the device, so on a GPU only a loss object's first target is read; on the
        CPU every one is.
        """
        if target_onehot.dtype == torch.bool or target_onehot.numel() == 0:
            return
        if target_onehot.device.type != "cpu" and getattr(self, "_target_range_read", False):
            return
        low, high = (float(v) + 0.0 for v in torch.aminmax(target_onehot.detach()))  # no "-0"
        self._target_range_read = True
        if not (low >= 0 and high <= 1):  # NaN fails both
            raise ValueError(
                f"target_onehot holds values from {low:g} to {high:g}; expected one-hot values in [0, 1] "
                "(one 0/1 channel per foreground class): divide 0/255 masks by 255, and turn a label "
                "map into K one-hot channels, e.g. torch.nn.functional.one_hot(labels, K + 1)[..., 1:]"
                ".movedim(-1, 1)"
            )

    def forward(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        """Check the shapes and the target's range, then return :meth:`compute`."""
        self.check_inputs(logits, target_onehot)
        return self.compute(logits, target_onehot)

    @abc.abstractmethod
    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        """The scalar loss for already-checked inputs."""
