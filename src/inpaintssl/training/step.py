"""One optimisation step, the optimiser it steps and the compiled network it runs.

:class:`TrainStep` is what the training loop does with every batch: corrupt and forward under
autocast (the objective), backward through the gradient scaler, optional clipping, the optimiser
step. The GPU throughput benchmark (``benchmarks/bench_gpu_throughput.py``) times this very
object, so what it measures is what training runs.

Nothing in a step reads a value back from the device: the loss comes back as a device tensor
(the loop checks it for NaN once every 50 steps), the corruption keys stay on the host, and with
bf16 or no autocast the scaler is disabled, so the host can queue the next batch's corruption and
kernels while the device is still busy with this one. (fp16's loss scaling has to look at the
gradients on the host; that is PyTorch's ``GradScaler`` and cannot be avoided.)

``run.compile`` (:func:`compile_network`) hands the network to ``torch.compile``. Compiled, the
U-Net's GroupNorm, ReLU and weight standardisation become a few fused kernels that read either
memory format, where eager CUDA GroupNorm has no channels-last kernel and copies every activation
(``benchmarks/README.md``); ``reduce-overhead`` also replays the step as a CUDA graph. The default
is ``off``: eager PyTorch, whose CPU runs are bit-identical from run to run.

On CUDA, Adam runs as PyTorch's fused kernel (:func:`adam`), which reads and writes each
parameter's state once per step where the default multi-tensor implementation makes several
elementwise passes; the CPU keeps the reference implementation.

Example:
    >>> import torch
    >>> from inpaintssl.training.objectives import SegmentationObjective
    >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
    >>> step = TrainStep(net, SegmentationObjective(loss=torch.nn.functional.mse_loss),
    ...                  device=torch.device("cpu"))
    >>> optimizer = adam(net.parameters(), lr=1e-2, device=torch.device("cpu"))
    >>> batch = {"image": torch.ones(2, 1, 8, 8), "label": torch.zeros(2, 1, 8, 8)}
    >>> first = step(optimizer, batch, keys=torch.arange(2))
    >>> bool(step(optimizer, batch, keys=torch.arange(2)) < first)
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

import torch
from torch import nn

from inpaintssl.config import CompileMode
from inpaintssl.training.device import autocast_context
from inpaintssl.training.objectives import Objective

__all__ = ["TrainStep", "adam", "compile_network"]


def compile_network(model: nn.Module, mode: CompileMode) -> nn.Module:
    """``model`` itself for ``off``, else ``torch.compile(model, mode=mode)``.

    The compiled wrapper shares the model's parameters (training it trains ``model``) and its
    ``state_dict`` keys carry an ``_orig_mod.`` prefix, so checkpoints are written from ``model``.

    Raises:
        ValueError: ``mode`` is not one of ``run.compile``'s values.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2)
        >>> compile_network(net, "off") is net
        True
    """
    if mode not in get_args(CompileMode):
        raise ValueError(f"compile={mode!r} is invalid; expected one of {get_args(CompileMode)}")
    if mode == "off":
        return model
    compiled: nn.Module = torch.compile(model, mode=mode)  # type: ignore[assignment]
    return compiled


def adam(
    params: Iterable[nn.Parameter],
    *,
    lr: float,
    device: torch.device,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Adam:
    """Adam, as PyTorch's fused kernel on CUDA and its reference implementation elsewhere.

    Both compute the same update (to rounding); the CPU path is the one every CPU result and
    test of this library was produced with, so it is left exactly as it was.

    Example:
        >>> import torch
        >>> opt = adam(torch.nn.Linear(2, 2).parameters(), lr=1e-3, device=torch.device("cpu"))
        >>> opt.defaults["fused"] is None  # the CPU: PyTorch's reference implementation
        True
    """
    fused = True if device.type == "cuda" else None
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)


class TrainStep:
    """One optimisation step of ``model`` on ``objective`` (sec. 2.3-2.4, Appendix A.1).

    Args:
        model: The network (or its DDP wrapper) whose parameters the optimiser holds.
        objective: Turns a batch into a loss.
        device: Where the batch and the network live; chooses the gradient scaler's device.
        amp_dtype: Autocast dtype, or ``None`` for full precision. The gradient scaler is active
            for ``float16`` only.
        grad_clip: Clip the global gradient norm of ``clip_parameters()`` to this value.
        compile: ``run.compile`` (:func:`compile_network`).

    Example:
        >>> import torch
        >>> from inpaintssl.training.objectives import SegmentationObjective
        >>> step = TrainStep(torch.nn.Linear(1, 1), SegmentationObjective(loss=torch.nn.functional.l1_loss),
        ...                  device=torch.device("cpu"), grad_clip=1.0)
        >>> step.network is step.model, step.scaler.is_enabled()
        (True, False)
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        *,
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
        grad_clip: float | None = None,
        compile: CompileMode = "off",
    ) -> None:
        self.model = model
        self.network = compile_network(model, compile)
        self.objective = objective
        self.device = device
        self.amp_dtype = amp_dtype
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    def clip_parameters(self) -> list[nn.Parameter]:
        """The parameters whose gradient norm is clipped: those that train in this phase."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def __call__(
        self, optimizer: torch.optim.Optimizer, batch: dict[str, Any], *, keys: torch.Tensor
    ) -> torch.Tensor:
        """Take one step on ``batch`` (its tensors on the device) and return the loss, detached.

        Args:
            optimizer: Holds (a subset of) the model's parameters.
            batch: The collated batch (``image``, and ``label`` for segmentation).
            keys: The samples' corruption keys, on the host.

        Returns:
            The mean batch loss as a 0-d tensor on the device (not synchronised).
        """
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(self.device, self.amp_dtype):
            loss = self.objective.loss(self.network, batch, keys=keys)
        scaled: torch.Tensor = self.scaler.scale(loss)
        scaled.backward()  # type: ignore[no-untyped-call]
        if self.grad_clip is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.clip_parameters(), self.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        return loss.detach()
