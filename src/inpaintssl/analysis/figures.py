"""The paper's figures from a study's results, as PNG and PDF (matplotlib, Agg; no pyplot state).

Each function takes the long results table (:mod:`inpaintssl.studies.results`) and a path
(its suffix is replaced: ``out/fig3`` writes ``out/fig3.png`` and ``out/fig3.pdf``, atomically and
with no time of writing inside, :mod:`inpaintssl.figure_files`) and returns a :class:`FigureFiles`
with the written paths and the figure, whose axes can be inspected.

- :func:`plot_dice_vs_label_fraction`: Figures 3/4, Dice vs label fraction, one panel per class,
  one line per SSL strategy, the supervised baseline in light blue and the supervised model with
  all labels as a black dotted line (with several baselines, one named line of its own style
  each); a shaded band shows each curve's range over subset seeds, the baselines' too.
- :func:`plot_dice_vs_pretraining_data`: Figure 5, Dice vs % pretraining data per label fraction
  (0% = supervised) with dashed power-law fits ``y = a x^k + c``, each labelled with a, k, c and
  its residual standard error ``sqrt(SSR / (n - 3))`` (the ``rse`` of the power-law table); one
  panel per strategy when the study's grid varies more than the amount of data.
- :func:`plot_percent_error_bars`: Figure 6, median percent error per class, label fraction and arm,
  one panel per clinical metric.
- :func:`plot_ssl_vs_supervised`: Figure 7, per-image percent error, SSL against supervised, one
  panel per clinical metric, with the identity line.
- :func:`plot_transfer_boxplots`: Figure A1, per-item Dice of each transfer strategy by first
  learning rate, one panel for single-phase runs and one per second learning rate.

Example:
    >>> import tempfile, pathlib
    >>> from inpaintssl.analysis.table import Table
    >>> rows = [{"arm": "supervised", "strategy": "supervised", "label_fraction": f, "subset_seed": 0,
    ...          "level": "image", "volume_id": "a", "slice_index": 0, "class_name": "gm",
    ...          "metric": "dice", "value": 0.5 + f / 4} for f in (0.1, 0.5, 1.0)]
    >>> out = plot_dice_vs_label_fraction(Table(rows), pathlib.Path(tempfile.mkdtemp()) / "fig3")
    >>> [p.suffix for p in out.paths], len(out.figure.axes)
    (['.png', '.pdf'], 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from inpaintssl.analysis.clinical import CLINICAL_METRICS, image_errors, percent_error_medians
from inpaintssl.analysis.summaries import (
    Curve,
    baseline_name,
    class_names,
    dice_curves,
    limited_fractions,
    named_baselines,
    scaling_series,
    transfer_boxes,
)
from inpaintssl.analysis.table import Table
from inpaintssl.figure_files import write_figure

if TYPE_CHECKING:
    # matplotlib 3.8 added matplotlib.typing; only the annotations name it.
    from matplotlib.typing import ColorType

__all__ = [
    "FigureFiles",
    "plot_dice_vs_label_fraction",
    "plot_dice_vs_pretraining_data",
    "plot_percent_error_bars",
    "plot_ssl_vs_supervised",
    "plot_transfer_boxplots",
    "save_figure",
]

SUPERVISED_COLOR = "#7ec8f0"  # the paper's light-blue supervised curve
# Further baselines (several learning rates or budgets): other blues, dash patterns and markers.
_BASELINE_STYLES: tuple[tuple[str, str | tuple[int, tuple[int, ...]], str], ...] = (
    (SUPERVISED_COLOR, "-", "s"),
    ("#08519c", "--", "D"),
    ("#6a51a3", "-.", "^"),
    ("#1c9099", (0, (5, 1, 1, 1, 1, 1)), "v"),
    ("#3182bd", (0, (1, 1)), "P"),
    ("#252525", (0, (8, 2)), "X"),
)
ARM_COLORS = MappingProxyType({"supervised": "#4c72b0", "ssl": "#dd8452"})
FORMATS = ("png", "pdf")
_DPI = 150


@dataclass(frozen=True)
class FigureFiles:
    """A rendered figure and the files it was written to.

    Attributes:
        figure: The matplotlib figure (inspect ``figure.axes`` for panels and series); ``None``
            for a figure drawn elsewhere (e.g. learning curves by :mod:`inpaintssl.training`).
        paths: The written files, PNG first.
    """

    figure: Figure | None
    paths: tuple[Path, ...]


def _panels(
    count: int, *, width: float = 3.4, height: float = 3.0, ncols: int = 4
) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    figure = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(nrows, ncols, i + 1) for i in range(count)]
    return figure, axes


def save_figure(figure: Figure, path: str | Path, *, formats: Sequence[str] = FORMATS) -> FigureFiles:
    """Write ``figure`` as ``<path stem>.<format>`` for each format (PNG and PDF by default).

    Each file is written by :func:`inpaintssl.figure_files.write_figure`: atomically, and with no
    time of writing inside, so a report drawn twice from the same results is the same bytes.

    Args:
        figure: The figure to write.
        path: Output path; a suffix that names one of the formats is replaced.
        formats: Image formats, one file each, in this order.

    Returns:
        The figure and the written paths, in the order of ``formats``.

    Example:
        >>> import tempfile, pathlib
        >>> figure = Figure(figsize=(2, 2))
        >>> out = save_figure(figure, pathlib.Path(tempfile.mkdtemp()) / "fig.png")
        >>> [p.name for p in out.paths]
        ['fig.png', 'fig.pdf']
    """
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in {f".{f}" for f in (*FORMATS, *formats)} else path
    written = tuple(
        write_figure(figure, stem.parent / f"{stem.name}.{fmt}", format=fmt, dpi=_DPI) for fmt in formats
    )
    return FigureFiles(figure, written)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _percent(fraction: float) -> str:
    # As the percent axes are labelled: 0.125 is 12.5%, where ".0%" drew 12% and 0.12 drew 12% too.
    return f"{100 * float(fraction):g}%"


def _percent_axis(ax: Axes, fractions: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([100 * f for f in fractions]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))


def _merged_curves(curves: Sequence[Curve]) -> list[tuple[list[str], Curve]]:
    """Curves with their names; curves of identical points are drawn once, with every name."""
    drawn: dict[tuple[tuple[float, ...], tuple[float, ...]], tuple[list[str], Curve]] = {}
    for curve in curves:
        key = (tuple(curve.x.tolist()), tuple(curve.mean.tolist()))
        drawn.setdefault(key, ([], curve))[0].append(baseline_name(curve.name))
    return list(drawn.values())


def _seed_band(ax: Axes, curve: Curve, color: ColorType) -> bool:
    """Shade ``curve``'s range over subset seeds, where it has one; whether it did."""
    if not np.any(curve.high > curve.low):
        return False
    ax.fill_between(100 * curve.x, curve.low, curve.high, color=color, alpha=0.15)
    return True


def _draw_baselines(ax: Axes, curves: Sequence[Curve], styles: dict[str, int]) -> bool:
    """The supervised curves (one per baseline) and each baseline's all-labels level, once each.

    Returns:
        Whether a curve's range over subset seeds was shaded.
    """
    single = len(styles) == 1
    levels: dict[float, list[str]] = {}
    shaded = False
    for names, curve in _merged_curves(curves):
        color, dashes, marker = _BASELINE_STYLES[styles[names[0]] % len(_BASELINE_STYLES)]
        ax.plot(
            100 * curve.x,
            curve.mean,
            color=color,
            linestyle=dashes,
            linewidth=2.5,
            marker=marker,
            label=" / ".join(names),
        )
        # Its seeds' spread, as the SSL curves show theirs: a mean drawn alone would look exact.
        shaded = _seed_band(ax, curve, color) or shaded
        full = curve.x == 1.0
        if full.any():
            levels.setdefault(float(curve.mean[full][0]), []).extend(names)
    for value, names in levels.items():
        color = "black" if single else _BASELINE_STYLES[styles[names[0]] % len(_BASELINE_STYLES)][0]
        label = "supervised, 100% labels" if single else f"{' / '.join(names)}, 100% labels"
        ax.axhline(value, color=color, linestyle=":", label=label)
    return shaded


def plot_dice_vs_label_fraction(
    results: Table, path: str | Path, *, task: str | None = None, level: str | None = None
) -> FigureFiles:
    """Figures 3/4: test Dice vs label fraction, one panel per class (paper sec. 3.2).

    The supervised curves are the baselines the plotted SSL runs are compared with (their
    ``baseline_id``), each at every label fraction it ran at, whether or not an SSL run has
    finished there (:func:`~inpaintssl.analysis.summaries.named_baselines` ``by="setting"``), or
    every baseline when the rows name none. One baseline is drawn as the paper drew it: a light-blue line
    ``supervised`` and a black dotted line at its Dice with all labels. Several baselines (a grid
    over learning rates or budgets trains one per setting) get a line each, labelled with its name
    (``supervised lr=0.001``) and drawn in a style of its own, with a dotted all-labels line in its
    colour; lines that would coincide are drawn once, labelled with every name. Each curve, SSL
    or supervised, is the mean over subset seeds of the test-set mean; where it has several seeds a
    shaded band in its colour spans their lowest and highest, and the title says so.

    Args:
        results: The long results table.
        path: Output path without (or with a replaced) suffix.
        task: Keep only SSL strategies pretrained with this pretext task (the paper draws one
            figure per task), and the baselines they are compared with; ``None`` keeps all.
        level: ``image`` or ``volume`` Dice (default: volume for 3D data).

    Raises:
        ValueError: No per-class Dice in ``results``.
    """
    classes = class_names(results)
    _require(bool(classes), "plot_dice_vs_label_fraction: results hold no per-class 'dice' rows")
    ssl = results.select(arm="ssl")
    if task is not None:
        ssl = ssl.select(task=task)
    # By setting: a baseline's curve (and its 100% line) must not lose a label fraction where no
    # SSL run has finished yet.
    supervised = named_baselines(
        results, ssl=ssl, strict=False, what="plot_dice_vs_label_fraction", by="setting"
    )
    styles = {baseline_name(n): i for i, n in enumerate(supervised.unique("strategy"))}
    fractions = [float(f) for f in results.unique("label_fraction") if f is not None]
    figure, axes = _panels(len(classes))
    shaded = False
    for ax, name in zip(axes, classes):
        for curve in dice_curves(ssl, class_name=name, level=level):
            (line,) = ax.plot(100 * curve.x, curve.mean, marker="o", markersize=3, label=str(curve.name))
            shaded = _seed_band(ax, curve, line.get_color()) or shaded
        shaded = _draw_baselines(ax, dice_curves(supervised, class_name=name, level=level), styles) or shaded
        _percent_axis(ax, fractions)
        ax.set_title(name)
        ax.set_xlabel("labelled training data")
        ax.set_ylabel("Dice")
    axes[0].legend(fontsize="x-small")
    band = "; shaded: range over subset seeds" if shaded else ""
    figure.suptitle(f"Dice vs label fraction{f' ({task})' if task else ''}{band}")
    return save_figure(figure, path)


def plot_dice_vs_pretraining_data(
    results: Table, path: str | Path, *, level: str | None = None
) -> FigureFiles:
    """Figure 5: class-averaged Dice vs % pretraining data per label fraction, with power-law fits (sec. 2.6).

    The points and fits of :func:`~inpaintssl.analysis.summaries.scaling_series`, one colour per
    label fraction, and a black dotted line at the supervised Dice with all labels. A study whose
    grid varies more than the amount of pretraining data has several strategies at each amount:
    each gets a panel of its own, titled with its name
    (:func:`~inpaintssl.analysis.summaries.scaling_strategy`), each label fraction in the same
    colour in every panel, so that no point averages two strategies. One strategy is one panel
    without a title, the paper's figure.

    Raises:
        ValueError: No class-averaged Dice with a label fraction in ``results``.
    """
    series = scaling_series(results, level=level)
    _require(bool(series), "plot_dice_vs_pretraining_data: results hold no 'dice_mean' rows")
    strategies = list(dict.fromkeys(s.strategy for s in series))
    # Colour by label fraction, in the order the series come (by fraction), alike in every panel.
    fractions = list(dict.fromkeys(s.label_fraction for s in series))
    figure, axes = _panels(len(strategies), width=6.0, height=4.5, ncols=2)
    for ax, strategy in zip(axes, strategies):
        shown = [s for s in series if s.strategy == strategy]
        for s in shown:
            color = f"C{fractions.index(s.label_fraction)}"
            ax.plot(
                s.x,
                s.y,
                marker="o",
                linestyle="none",
                color=color,
                label=f"{_percent(s.label_fraction)} labels",
            )
            if s.fit is not None:
                grid = np.linspace(0.0, float(s.x.max()), 200)
                ax.plot(
                    grid,
                    s.fit.predict(grid),
                    linestyle="--",
                    color=color,
                    # RSE, the power-law table's "rse" column: the paper's "S" is SSR / (n - 2), its
                    # "paper_s" column, another number under the same letter.
                    label=f"a={s.fit.a:.3g}, k={s.fit.k:.3g}, c={s.fit.c:.3g}, RSE={s.fit.rse:.2g}",
                )
        full = [s for s in shown if s.label_fraction == 1.0 and s.x.size and s.x[0] == 0.0]
        if full:
            ax.axhline(float(full[0].y[0]), color="black", linestyle=":", label="supervised, 100% labels")
        if strategy is not None:
            ax.set_title(strategy or "(no other grid value)")
        ax.set_xlabel("pretraining data (% of the training set; 0 = supervised)")
        ax.set_ylabel("Dice (class average)")
        ax.legend(fontsize="x-small")
    figure.suptitle("Dice vs amount of pretraining data")
    return save_figure(figure, path)


def plot_percent_error_bars(results: Table, path: str | Path) -> FigureFiles:
    """Figure 6: median percent error per class, label fraction and arm; one panel per metric (sec. 2.7).

    Medians are :func:`~inpaintssl.analysis.clinical.percent_error_medians`'. A bar whose arm
    left scans out (a missed tissue) is labelled ``n/N``: the scans in its median of the scans tested.

    Raises:
        ValueError: No clinical ``*_pct_error`` rows in ``results``.
    """
    medians = percent_error_medians(results)
    metrics = [m for m in CLINICAL_METRICS if any(row[0] == m for row in medians)]
    _require(bool(metrics), "plot_percent_error_bars: results hold no clinical '*_pct_error' rows")
    figure, axes = _panels(len(metrics), width=4.5)
    for ax, metric in zip(axes, metrics):
        rows = [r for r in medians if r[0] == metric]
        classes = list(dict.fromkeys(r[1] for r in rows))
        groups = sorted({(r[2], r[3]) for r in rows}, key=lambda g: (-g[0], g[1] != "supervised"))
        width = 0.8 / len(groups)
        for i, (fraction, arm) in enumerate(groups):
            found = {r[1]: r for r in rows if (r[2], r[3]) == (fraction, arm)}
            x = np.arange(len(classes)) + (i - (len(groups) - 1) / 2) * width
            heights = [found[c][4] if c in found else math.nan for c in classes]
            ax.bar(
                x,
                heights,
                width,
                color=ARM_COLORS.get(arm, "gray"),
                alpha=0.35 + 0.65 * (i + 1) / len(groups),
                label=f"{arm} {_percent(fraction)}",
            )
            for xi, height, name in zip(x, heights, classes):
                n, left_out = (found[name][5], found[name][6]) if name in found else (0, 0)
                if left_out:  # the median rests on fewer scans than the test set holds
                    ax.text(
                        xi,
                        height if math.isfinite(height) else 0.0,
                        f"{n}/{n + left_out}",
                        ha="center",
                        va="bottom",
                        fontsize=5,
                        rotation=90,
                    )
        ax.set_xticks(np.arange(len(classes)), classes, rotation=20)
        ax.set_title(CLINICAL_METRICS[metric])
        ax.set_ylabel("median % error")
    # Below the panels (on a panel it covered the bars that reached its top), a column per arm
    # (the legend fills its columns in turn), each fraction on a row of its own.
    entries = dict(zip(*reversed(axes[0].get_legend_handles_labels())))
    arms = list(dict.fromkeys(label.rsplit(" ", 1)[0] for label in entries))
    order = sorted(entries, key=lambda label: arms.index(label.rsplit(" ", 1)[0]))
    figure.legend(
        [entries[label] for label in order],
        order,
        loc="outside lower center",
        fontsize="x-small",
        ncols=len(arms),
    )
    figure.suptitle("Percent error of clinical metrics: supervised vs SSL")
    return save_figure(figure, path)


def plot_ssl_vs_supervised(results: Table, path: str | Path) -> FigureFiles:
    """Figure 7: per-image percent error with SSL vs with supervised segmentation, one panel per metric.

    An image's error is averaged over classes and the label fractions the paired test pools
    (:func:`~inpaintssl.analysis.clinical.paired_image_errors`: all but 100 %, when others exist),
    which the title names.

    Raises:
        ValueError: No image has clinical errors from both arms.
    """
    pairs = {m: image_errors(results, m) for m in CLINICAL_METRICS}
    pairs = {m: p for m, p in pairs.items() if p[0].size}
    _require(bool(pairs), "plot_ssl_vs_supervised: no image has clinical percent errors from both arms")
    errors = results.where(
        lambda r: any(r.get("metric") == f"{m}_pct_error" for m in pairs) and r.get("arm") == "ssl"
    )
    pooled = sorted((float(f) for f in limited_fractions(errors)), reverse=True)
    figure, axes = _panels(len(pairs), width=4.5)
    for ax, (metric, (sup, ssl)) in zip(axes, pairs.items()):
        ax.scatter(sup, ssl, s=10, color=ARM_COLORS["supervised"])
        top = float(max(sup.max(), ssl.max(), 1e-9))
        ax.plot([0.0, top], [0.0, top], color="black", linestyle=":", linewidth=1)
        ax.set_title(CLINICAL_METRICS[metric])
        ax.set_xlabel("supervised % error")
        ax.set_ylabel("SSL % error")
    # Two short lines: one panel is narrow, and a longer line ran off both its sides.
    fractions = ", ".join(_percent(f) for f in pooled)
    figure.suptitle(
        f"Per-image percent error\n(mean over classes and label fractions {fractions})", fontsize="medium"
    )
    return save_figure(figure, path)


def plot_transfer_boxplots(results: Table, path: str | Path, *, level: str | None = None) -> FigureFiles:
    """Figure A1: Dice per test item of each transfer strategy, grouped by first learning rate (App. B).

    Raises:
        ValueError: No SSL class-averaged Dice in ``results``.
    """
    panels = transfer_boxes(results, level=level)
    _require(bool(panels), "plot_transfer_boxplots: results hold no SSL 'dice_mean' rows")
    figure, axes = _panels(len(panels), width=5.0, ncols=1)
    for ax, (title, boxes) in zip(axes, panels.items()):
        rates = sorted({lr for lr, _ in boxes}, reverse=True)
        names = sorted({name for _, name in boxes})
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            keys = [(lr, name) for lr in rates if (lr, name) in boxes]
            positions = [rates.index(lr) + (j - (len(names) - 1) / 2) * width for lr, _ in keys]
            art = ax.boxplot(
                [boxes[k] for k in keys],
                positions=positions,
                widths=width * 0.9,
                patch_artist=True,
                medianprops={"color": "black"},
                manage_ticks=False,
            )
            for patch in art["boxes"]:
                patch.set_facecolor(f"C{j}")
            art["boxes"][0].set_label(name)
        ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates])
        ax.set_xlabel("initial learning rate")
        ax.set_ylabel("Dice")
        ax.set_title(title)
        # Beside the panel: inside it, matplotlib's search for a free corner ("best") ran past a
        # second over the boxes' many lines and outliers (it warns so), and a legend of many
        # strategies covered boxes wherever it went.
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.suptitle("Transfer design: Dice per test item")
    return save_figure(figure, path)
