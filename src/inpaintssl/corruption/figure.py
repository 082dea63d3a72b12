"""A picture of the corruptions, like the "Inpainting" panel of the paper's Figure 1.

Example:
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> image = np.random.default_rng(0).normal(size=(64, 64))
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "fig1.png"
    >>> out = render_corruption_figure(image, target, patch_sizes=(16, 8))
    >>> out.read_bytes()[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray

from inpaintssl.corruption.base import PretextTask
from inpaintssl.corruption.tasks import ContextPrediction, ContextRestoration
from inpaintssl.figure_files import write_figure
from inpaintssl.warning_format import warn_each_time

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["render_corruption_figure"]

_TASKS: tuple[tuple[str, type[PretextTask]], ...] = (
    ("context prediction", ContextPrediction),
    ("context restoration", ContextRestoration),
)


def _corrupt_or_reason(
    task_type: type[PretextTask], image: NDArray[np.float64], patch_size: int, sampler: str, seed: int
) -> NDArray[np.float64] | str:
    # ``patch_size`` as the caller gave it: the task's own check refuses 8.7 (or "8"), which
    # int() would have drawn as 8x8 patches.
    try:
        task = task_type(patch_size=patch_size, sampler=sampler, bank_size=1, seed=seed)
        batch = torch.from_numpy(image)[None, None]
        return task.corrupt_fixed(batch, key=0)[0, 0].numpy()
    except ValueError as exc:
        return str(exc)


def _new_figure(rows: int, cols: int) -> Figure:
    # The object API with an Agg canvas draws without pyplot's global state or a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.2 * cols, 2.4 * rows + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def render_corruption_figure(
    image: NDArray[np.floating] | NDArray[np.integer],
    path: str | Path,
    *,
    patch_sizes: Sequence[int] = (64, 32, 16, 8),
    sampler: str = "poisson_disc",
    seed: int = 0,
) -> Path:
    """Write a PNG of ``image`` and its corruptions for both pretext tasks and each patch size.

    Row ``t`` shows task ``t`` (context prediction, then context restoration): the original
    image, then one corruption per patch size ``K`` at 1/4 coverage, as in Figure 1 of the paper
    (sec. 2.4). A ``K`` that the tasks refuse (not a positive integer, such as ``8.7``; too
    large for the image; a coverage unreachable there) is skipped with a :class:`UserWarning` and
    a note under the figure, never an error.

    Args:
        image: ``(H, W)`` real-valued image (e.g. one z-scored slice).
        path: Where to write the PNG (parent folders are created; the write is atomic).
        patch_sizes: Patch sides ``K``, one column each.
        sampler: Registered sampler name placing the patches.
        seed: Mask seed; the same seed draws the same figure, byte for byte
            (:mod:`inpaintssl.figure_files`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``image`` is not a finite 2-D array.
    """
    # Contiguous: torch.from_numpy refuses the negative strides of np.flipud or np.rot90 views.
    pixels = np.ascontiguousarray(image, dtype=np.float64)
    if pixels.ndim != 2:
        raise ValueError(f"image must be a 2-D array (H, W), got shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise ValueError("image must be finite; found NaN or inf values")
    path = Path(path)

    columns: list[tuple[int, list[NDArray[np.float64]]]] = []
    notes: list[str] = []
    for size in patch_sizes:
        results = [_corrupt_or_reason(task_type, pixels, size, sampler, seed) for _, task_type in _TASKS]
        reasons = [r for r in results if isinstance(r, str)]
        if reasons:
            notes.append(f"K={size} skipped: {reasons[0]}")
            warn_each_time(f"render_corruption_figure: patch size {size} skipped: {reasons[0]}", UserWarning)
        else:
            # Both tasks took it, so it is a whole number: 8.0 is titled 8x8.
            columns.append((int(size), [r for r in results if not isinstance(r, str)]))

    figure = _new_figure(len(_TASKS), 1 + len(columns))
    axes = figure.subplots(len(_TASKS), 1 + len(columns), squeeze=False)
    low, high = float(pixels.min()), float(pixels.max())
    for row, (task_label, _) in enumerate(_TASKS):
        panels = [("original", pixels)] + [(f"{size}x{size}", shown[row]) for size, shown in columns]
        for col, (title, panel) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(task_label, fontsize=9)
    caption = f"{sampler} sampling, 1/4 of the area corrupted, seed {seed}"
    figure.suptitle("\n".join([caption, *notes]), fontsize=8)
    # Always a PNG, as promised above, whatever the suffix of ``path``.
    return write_figure(figure, path, format="png")
