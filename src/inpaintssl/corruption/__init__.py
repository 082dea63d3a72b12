"""The corruption engine: patch samplers, mask banks and the inpainting pretext tasks.

Paper sec. 2.4 and 2.5.2; DESIGN.md sections 1 and 2. Samplers (``poisson_disc``, ``random``)
place ``K x K`` patches covering at least 1/4 of the image; a :class:`MaskBank` precomputes masks
for the real input shape; the pretext tasks (``context_prediction``, ``context_restoration``)
corrupt ``(N, C, H, W)`` batches on any device; :func:`render_corruption_figure` draws Figure 1.
:func:`launch_thread_pool` does nothing now that no kernel runs on Numba's threads; it is kept for
code that calls it.

Example:
    >>> import torch
    >>> from inpaintssl.registry import PRETEXT_TASKS
    >>> task = PRETEXT_TASKS.build("context_prediction", patch_size=16, bank_size=4)
    >>> isinstance(task, PretextTask), task.corrupt(torch.randn(2, 1, 64, 64)).shape
    (True, torch.Size([2, 1, 64, 64]))
"""

from inpaintssl.corruption._jit import launch_thread_pool
from inpaintssl.corruption.base import PretextTask
from inpaintssl.corruption.figure import render_corruption_figure
from inpaintssl.corruption.masks import (
    ORIENTATIONS,
    MaskBank,
    orient_corners,
    patch_union,
    swap_permutation,
)
from inpaintssl.corruption.samplers import (
    PoissonDiscSampler,
    RandomSampler,
    Sampler,
    check_request,
    required_patch_count,
    target_pixels,
    validate_request,
)
from inpaintssl.corruption.tasks import ContextPrediction, ContextRestoration

__all__ = [
    "ORIENTATIONS",
    "ContextPrediction",
    "ContextRestoration",
    "MaskBank",
    "PoissonDiscSampler",
    "PretextTask",
    "RandomSampler",
    "Sampler",
    "check_request",
    "launch_thread_pool",
    "orient_corners",
    "patch_union",
    "render_corruption_figure",
    "required_patch_count",
    "swap_permutation",
    "target_pixels",
    "validate_request",
]
