"""Diagnostic figures written at the end of a run: learning curves and reconstruction panels.

Learning curves show how a run trained (Dominic et al. 2023, Appendix A.1: early stopping on the
validation loss, best weights restored) and whether it converged
(:mod:`inpaintssl.training.convergence`) or merely ran out of budget. Reconstruction panels show
what the pretext network learned to restore (sec. 2.4): original, corrupted input, restoration and
the absolute error, slice by slice.

Everything here is pure plotting (matplotlib's object API, no pyplot state, no display needed)
and every file is replaced atomically, so a killed run never leaves a torn image behind, and holds
no time of writing (:mod:`inpaintssl.figure_files`), so the same history draws the same bytes.

Example:
    >>> import tempfile, pathlib
    >>> history = [
    ...     {"phase": "pretrain", "epoch": 0, "train_loss": 1.0, "val_loss": 0.9, "best": 1},
    ...     {"phase": "pretrain", "epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "best": 1},
    ... ]
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> plot_learning_curve(history, folder / "curve.png", converged=False).name
    'curve.png'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from inpaintssl.figure_files import write_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_learning_curve",
    "plot_learning_curves_grid",
    "reconstruction_grid",
    "write_reconstruction_panel",
]

_DPI = 90
_SEPARATOR = 2
_COLUMNS = ("original", "corrupted", "restored", "|restored - original|")
_NOT_CONVERGED = "NOT converged"
# Above this max/min ratio a linear axis squeezes the late epochs (where convergence is judged)
# into a flat line, so the loss axis switches to log scale.
_LOG_RATIO = 20.0


# -- learning curves ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Curve:
    """One run's metrics.csv rows as columns (floats are NaN where a value is missing)."""

    phase: list[str]
    epoch: npt.NDArray[np.float64]
    train_loss: npt.NDArray[np.float64]
    val_loss: npt.NDArray[np.float64]
    best: npt.NDArray[np.bool_]
    val_dice: npt.NDArray[np.float64]

    @property
    def has_dice(self) -> bool:
        return bool(np.isfinite(self.val_dice).any())

    def phase_starts(self) -> list[int]:
        """Row indices where a new phase begins (the first row included)."""
        return [i for i in range(len(self.phase)) if i == 0 or self.phase[i] != self.phase[i - 1]]

    def best_index(self) -> int | None:
        """The row whose weights the run kept.

        ``best`` flags each new lowest validation loss of the whole run (one ``best`` checkpoint
        across its phases), so the last flagged row is the one whose weights the run kept; without
        flags, the lowest validation loss.
        """
        flagged = np.flatnonzero(self.best)
        if flagged.size:
            return int(flagged[-1])
        if np.isfinite(self.val_loss).any():
            return int(np.nanargmin(self.val_loss))
        return None


def _number(value: Any) -> float:
    # Rows read back from metrics.csv hold strings, and columns absent from a row are "".
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    return float(value)


def _curve(history: Sequence[Mapping[str, Any]]) -> _Curve:
    def column(key: str) -> npt.NDArray[np.float64]:
        return np.array([_number(row.get(key)) for row in history], dtype=np.float64)

    best = column("best")
    return _Curve(
        phase=[str(row.get("phase", "")) for row in history],
        epoch=column("epoch"),
        train_loss=column("train_loss"),
        val_loss=column("val_loss"),
        best=np.nan_to_num(best) != 0,
        val_dice=column("val_dice"),
    )


def _use_log_scale(values: npt.NDArray[np.float64]) -> bool:
    finite = values[np.isfinite(values)]
    return bool(finite.size and (finite > 0).all() and finite.max() / finite.min() > _LOG_RATIO)


def _mark_phases(axes: Axes, curve: _Curve, *, label: bool) -> None:
    starts = curve.phase_starts()
    for index in starts[1:]:
        # Between the two epochs, so neither epoch's point sits on the line.
        x = (curve.epoch[index - 1] + curve.epoch[index]) / 2
        axes.axvline(x, color="0.4", linestyle="--", linewidth=0.9, gid="phase-change")
    if label:
        for index in starts:
            axes.text(
                curve.epoch[index],
                0.99,
                f" {curve.phase[index]}",
                transform=axes.get_xaxis_transform(),
                ha="left",
                va="top",
                fontsize=7,
                color="0.3",
            )


def _learning_curve_figure(
    history: Sequence[Mapping[str, Any]],
    *,
    title: str = "",
    converged: bool | None = None,
    reason: str | None = None,
) -> Figure:
    """Build (but do not save) the figure of :func:`plot_learning_curve`."""
    if not history:
        raise ValueError("history is empty: a learning curve needs at least one epoch row")
    curve = _curve(history)
    figure = _figure(figsize=(8.4 if curve.has_dice else 4.6, 3.2), layout="constrained")
    loss_axes, *rest = figure.subplots(1, 2 if curve.has_dice else 1, squeeze=False)[0]
    loss_axes.plot(curve.epoch, curve.train_loss, marker=".", markersize=3, label="train loss")
    loss_axes.plot(curve.epoch, curve.val_loss, marker=".", markersize=3, label="validation loss")
    best = curve.best_index()
    if best is not None:
        loss_axes.plot(
            [curve.epoch[best]],
            [curve.val_loss[best]],
            linestyle="none",
            marker="*",
            markersize=11,
            color="tab:red",
            label=f"best (epoch {curve.epoch[best]:.0f})",
            gid="best",
        )
    if _use_log_scale(np.concatenate([curve.train_loss, curve.val_loss])):
        loss_axes.set_yscale("log")
    _mark_phases(loss_axes, curve, label=True)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("loss")
    loss_axes.legend(fontsize=7, loc="upper right")
    for dice_axes in rest:
        finite = np.isfinite(curve.val_dice)
        dice_axes.plot(
            curve.epoch[finite], curve.val_dice[finite], marker=".", color="tab:green", label="val Dice"
        )
        dice_axes.set_ylim(0.0, 1.0)
        _mark_phases(dice_axes, curve, label=False)
        dice_axes.set_xlabel("epoch")
        dice_axes.set_ylabel("validation Dice (mean)")
    if converged is not None:
        status = "converged" if converged else f"{_NOT_CONVERGED}: {reason}" if reason else _NOT_CONVERGED
        title = f"{title} ({status})".strip()
    if title:
        figure.suptitle(title, color="red" if converged is False else "black", fontsize=10)
    return figure


def plot_learning_curve(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "",
    converged: bool | None = None,
    reason: str | None = None,
) -> Path:
    """Plot one run's training and validation loss (and validation Dice) per epoch.

    Args:
        history: The per-epoch rows of the run's ``metrics.csv`` (dicts or rows read back with
            :class:`csv.DictReader`): ``phase``, ``epoch``, ``train_loss``, ``val_loss``, ``best``
            and optionally ``val_dice`` (missing, ``None``, ``""`` or NaN where not measured).
        path: Image file to write; its suffix picks the format (``.png`` expected).
        title: Figure title.
        converged: When given, the title says whether the run converged; an unconverged run
            gets a red title.
        reason: Why an unconverged run is not (``still improving``, ``no improvement``, ``too
            short to judge``, ``stopped by a non-finite loss``), added to its title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``history`` is empty, or ``path`` has no suffix.

    Example:
        >>> import tempfile, pathlib
        >>> rows = [{"phase": "finetune", "epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1 / (e + 2),
        ...          "best": 1, "val_dice": 0.2 * e} for e in range(4)]
        >>> out = plot_learning_curve(rows, pathlib.Path(tempfile.mkdtemp()) / "c.png", title="run")
        >>> out.read_bytes()[:4]
        b'\\x89PNG'
    """
    figure = _learning_curve_figure(history, title=title, converged=converged, reason=reason)
    return write_figure(figure, path, dpi=_DPI)


def _learning_curves_grid_figure(
    runs: Sequence[tuple[str, Sequence[Mapping[str, Any]], bool | None]], *, title: str = ""
) -> Figure:
    """Build (but do not save) the figure of :func:`plot_learning_curves_grid`."""
    if not runs:
        raise ValueError("runs is empty: the grid needs at least one (name, history, converged) run")
    columns = min(4, len(runs))
    rows = math.ceil(len(runs) / columns)
    figure = _figure(figsize=(2.9 * columns, 2.3 * rows + (0.3 if title else 0.0)), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in grid[len(runs) :]:
        axes.set_visible(False)
    legend_drawn = False
    for axes, (name, history, converged) in zip(grid, runs):
        frames = [axes]
        if history:
            curve = _curve(history)
            axes.plot(curve.epoch, curve.val_loss, color="tab:orange", linewidth=1.2, label="val loss")
            axes.plot(curve.epoch, curve.train_loss, color="tab:blue", linestyle="--", label="train loss")
            if _use_log_scale(np.concatenate([curve.train_loss, curve.val_loss])):
                axes.set_yscale("log")
            if curve.has_dice:
                twin = axes.twinx()
                finite = np.isfinite(curve.val_dice)
                twin.plot(
                    curve.epoch[finite],
                    curve.val_dice[finite],
                    color="tab:green",
                    linewidth=1,
                    label="val Dice",
                )
                twin.set_ylim(0.0, 1.0)
                twin.tick_params(labelsize=6, colors="tab:green")
                frames.append(twin)
        else:
            # A run that died in its first epoch still gets its panel, so the grid stays complete.
            axes.text(0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=axes.transAxes)
            axes.set_xticks([])
            axes.set_yticks([])
        if history and not legend_drawn:
            # One legend for the whole grid (every panel uses the same styles), on the top-most axes
            # so the Dice line of a twin axes does not hide it.
            handles = [handle for frame in frames for handle in frame.get_legend_handles_labels()[0]]
            frames[-1].legend(handles=handles, fontsize=6, loc="upper right")
            legend_drawn = True
        axes.tick_params(labelsize=6)
        unconverged = converged is False
        axes.set_title(
            f"{name} ({_NOT_CONVERGED})" if unconverged else name,
            color="red" if unconverged else "black",
            fontsize=8,
        )
        if unconverged:
            # The twin axes draws its own spines on top, so both frames must turn red.
            for frame in frames:
                for spine in frame.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(1.6)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def plot_learning_curves_grid(
    runs: Sequence[tuple[str, Sequence[Mapping[str, Any]], bool | None]], path: str | Path, *, title: str = ""
) -> Path:
    """Plot the learning curves of many runs, one small panel each, up to 4 panels per row.

    Each panel shows the validation loss (solid) and train loss (dashed) per epoch, plus the
    validation Dice on a right-hand axis (0..1) when the run measured it. Runs whose
    ``converged`` is ``False`` get a red frame and a red "NOT converged" title, so they stand
    out in a sweep of dozens of runs.

    Args:
        runs: ``(name, history, converged)`` per run; ``history`` as in :func:`plot_learning_curve`
            (an empty history gives a panel saying so); ``converged`` may be ``None`` (unknown).
        path: Image file to write, as in :func:`plot_learning_curve`.
        title: Figure title.

    Returns:
        The written ``path``.

    Raises:
        ValueError: ``runs`` is empty, or ``path`` has no suffix.

    Example:
        >>> import tempfile, pathlib
        >>> rows = [{"phase": "pretrain", "epoch": e, "train_loss": 1.0 - 0.1 * e, "val_loss": 1.0 - 0.1 * e,
        ...          "best": 1} for e in range(3)]
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> plot_learning_curves_grid([("a", rows, True), ("b", rows, False)], folder / "g.png").exists()
        True
    """
    return write_figure(_learning_curves_grid_figure(runs, title=title), path, dpi=_DPI)


# -- reconstructions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Row:
    """One slice (channel 0) with its display scales."""

    original: npt.NDArray[np.float64]
    corrupted: npt.NDArray[np.float64]
    restored: npt.NDArray[np.float64]
    error: npt.NDArray[np.float64]
    low: float
    high: float
    error_max: float


def _slices(original: torch.Tensor, corrupted: torch.Tensor, restored: torch.Tensor) -> list[_Row]:
    named = {"original": original, "corrupted": corrupted, "restored": restored}
    for name, tensor in named.items():
        if tensor.dim() != 4:
            raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {tuple(tensor.shape)}")
    for name in ("corrupted", "restored"):
        if named[name].shape != original.shape:
            raise ValueError(
                f"{name} has shape {tuple(named[name].shape)} but original has shape {tuple(original.shape)}"
            )
    if original.shape[0] == 0 or original.shape[1] == 0:
        raise ValueError(f"original holds no slice or no channel: shape {tuple(original.shape)}")
    # float32 as the display precision, float64 for the arithmetic so extreme values cannot overflow.
    o, c, r = (
        t.detach()[:, 0].to(device="cpu", dtype=torch.float32).numpy().astype(np.float64)
        for t in (original, corrupted, restored)
    )
    rows = []
    for n in range(o.shape[0]):
        finite = o[n][np.isfinite(o[n])]
        low, high = (float(v) for v in np.percentile(finite, [1, 99])) if finite.size else (0.0, 1.0)
        if not high > low:
            # A constant slice (e.g. pure background) has no percentile spread: fall back to the
            # range of everything shown in the row, and to a unit range if that is constant too.
            shown = np.stack([o[n], c[n], r[n]])
            shown = shown[np.isfinite(shown)]
            low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
            if not high > low:
                high = low + 1.0
        error = np.abs(r[n] - o[n])
        finite_error = error[np.isfinite(error)]
        error_max = float(finite_error.max()) if finite_error.size else 0.0
        rows.append(_Row(o[n], c[n], r[n], error, low, high, error_max))
    return rows


def reconstruction_grid(
    original: torch.Tensor, corrupted: torch.Tensor, restored: torch.Tensor
) -> npt.NDArray[np.float32]:
    """Tile original | corrupted | restored | error, one row per slice, into one grey image.

    Channel 0 of each slice is shown. In each row the first three tiles are scaled so that the
    1st/99th percentiles of that row's original map to 0/1 (clipped); the error tile
    ``|restored - original|`` is scaled from 0 to its own maximum. Tiles are separated by
    2-pixel white (1.0) lines. Suitable for ``SummaryWriter.add_image(tag, grid, dataformats="HW")``.

    Args:
        original: Clean slices, shape (N, C, H, W), any float dtype and device.
        corrupted: The network's input, same shape.
        restored: The network's output, same shape.

    Returns:
        float32 array of shape ``(N * H + (N - 1) * 2, 4 * W + 3 * 2)`` with values in [0, 1]
        (non-finite pixels, e.g. of a diverged network, are shown as 0).

    Raises:
        ValueError: A tensor is not 4-D or the shapes differ (the message names the argument).

    Example:
        >>> x = torch.zeros(2, 1, 8, 8)
        >>> reconstruction_grid(x, x, x).shape
        (18, 38)
    """
    tiles = []
    for row in _slices(original, corrupted, restored):
        span = row.high - row.low
        scaled = [(image - row.low) / span for image in (row.original, row.corrupted, row.restored)]
        scaled.append(row.error / row.error_max if row.error_max > 0 else np.zeros_like(row.error))
        tiles.append(scaled)
    grid = _tiled(tiles, gap=_SEPARATOR)
    image: npt.NDArray[np.float32] = np.clip(
        np.nan_to_num(grid, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0
    ).astype(np.float32)
    return image


def _tiled(tiles: Sequence[Sequence[npt.NDArray[np.float64]]], *, gap: int) -> npt.NDArray[np.float64]:
    """Equal-sized tiles (grey ``(H, W)`` or colour ``(H, W, 3)``), a list per row, on white, gap apart."""
    height, width = tiles[0][0].shape[:2]
    step_y, step_x = height + gap, width + gap
    shape = (len(tiles) * step_y - gap, len(tiles[0]) * step_x - gap, *tiles[0][0].shape[2:])
    out = np.ones(shape, dtype=np.float64)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            out[i * step_y : i * step_y + height, j * step_x : j * step_x + width] = tile
    return out


def _panel_gap(width: int) -> int:
    """Pixels between tiles of the panel: visible after the figure scales a tile to its size."""
    return max(_SEPARATOR, width // 16)


def _figure(**options: Any) -> Figure:
    """A matplotlib ``Figure``, matplotlib imported only now.

    Every training process imports this module (the CLI, study workers, torchrun ranks), and
    matplotlib took about 0.4 s of their start (with pyparsing, its dependency), where a figure is
    drawn only at an epoch's end.
    """
    from matplotlib.figure import Figure

    return Figure(**options)


def _to_rgb(image: npt.NDArray[np.float64], *, cmap: str, low: float, high: float) -> npt.NDArray[np.float64]:
    """``image`` through a colormap between ``low`` and ``high`` (clipped), as RGB on white.

    Non-finite pixels (a diverged network's output) take the colormap's "bad" colour, transparent,
    so they show as the white page, as an image axes draws them.
    """
    from matplotlib import colormaps

    scaled = np.ma.masked_invalid((image - low) / (high - low))
    rgba = np.asarray(colormaps[cmap](np.ma.clip(scaled, 0.0, 1.0)), dtype=np.float64)
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1.0 - alpha)


def _reconstruction_figure(
    original: torch.Tensor, corrupted: torch.Tensor, restored: torch.Tensor, *, title: str = ""
) -> Figure:
    """Build (but do not save) the figure of :func:`write_reconstruction_panel`.

    The tiles are coloured here and drawn as one RGB image on one axes: a grid of ``4 x N`` axes
    took about 1 s per panel to lay out and draw, every epoch of every pretraining run, where the
    one image takes a fifth of that.
    """
    rows = _slices(original, corrupted, restored)
    height, width = rows[0].original.shape
    gap = _panel_gap(width)
    step_y, step_x = height + gap, width + gap
    mosaic = _tiled(
        [
            [
                *(
                    _to_rgb(image, cmap="gray", low=row.low, high=row.high)
                    for image in (row.original, row.corrupted, row.restored)
                ),
                _to_rgb(row.error, cmap="magma", low=0.0, high=max(row.error_max, 1e-12)),
            ]
            for row in rows
        ],
        gap=gap,
    )
    side = 1.9
    aspect = height / width
    header = 0.3 + (0.3 if title else 0.0)  # inches above the tiles: column names, then the title
    tiles_height = len(rows) * side * aspect
    figure = _figure(figsize=(4 * side, tiles_height + header + 0.05))
    axes = figure.add_axes((0.0, 0.05 / figure.get_figheight(), 1.0, tiles_height / figure.get_figheight()))
    axes.imshow(mosaic, interpolation="nearest", aspect="auto")
    axes.set_axis_off()
    for j, name in enumerate(_COLUMNS):
        axes.text(j * step_x + width / 2, -gap, name, ha="center", va="bottom", fontsize=8)
    for i, row in enumerate(rows):
        # The error scale differs per row; print it so rows can be compared.
        axes.text(
            3 * step_x + 0.03 * width,
            i * step_y + 0.97 * height,
            f"max {row.error_max:.3g}",
            color="white",
            fontsize=7,
        )
    if title:
        figure.suptitle(title, fontsize=10, y=1.0 - 0.05 / figure.get_figheight())
    return figure


def write_reconstruction_panel(
    original: torch.Tensor,
    corrupted: torch.Tensor,
    restored: torch.Tensor,
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Write a figure of what the pretext network restores: one row per slice.

    Columns: original, corrupted (the network's input), restored (its output) and
    ``|restored - original|``. Channel 0 is shown. The first three columns of a row share one
    grey scale (the 1st/99th percentiles of that row's original); the error column has its own
    scale from 0, its maximum printed in the tile.

    Args:
        original: Clean slices, shape (N, C, H, W), any float dtype and device.
        corrupted: The network's input, same shape.
        restored: The network's output, same shape.
        path: Image file to write; its suffix picks the format (``.png`` expected).
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: A tensor is not 4-D, the shapes differ (the message names the argument), or
            ``path`` has no suffix.

    Example:
        >>> import tempfile, pathlib
        >>> x = torch.rand(2, 1, 16, 16)
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "panel.png"
        >>> write_reconstruction_panel(x, x * (x > 0.3), x, out, title="context restoration") == out
        True
    """
    figure = _reconstruction_figure(original, corrupted, restored, title=title)
    return write_figure(figure, path, dpi=_DPI)
