"""Each figure renders from a small results table to valid PNG and PDF files with the expected series."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.artist import Artist
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import PathPatch

from inpaintssl.analysis.figures import (
    SUPERVISED_COLOR,
    FigureFiles,
    plot_dice_vs_label_fraction,
    plot_dice_vs_pretraining_data,
    plot_percent_error_bars,
    plot_ssl_vs_supervised,
    plot_transfer_boxplots,
)
from inpaintssl.analysis.table import Table as ResultsTable
from study_helpers import (
    FRACTIONS,
    RESULT_CLASSES,
    RESULT_IMAGES,
    clinical_results,
    dice_rows,
    pretext_results,
    result_row,
    scaling_results,
    transfer_results,
)


def _suptitle(figure: Figure) -> str:
    """The figure's suptitle text (Figure.get_suptitle is new in matplotlib 3.8; 3.7 is supported)."""
    return "" if figure._suptitle is None else figure._suptitle.get_text()


def _assert_valid_files(out: FigureFiles) -> None:
    png, pdf = out.paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_figure_3_has_a_panel_per_class_and_a_line_per_strategy(tmp_path: Path) -> None:
    out = plot_dice_vs_label_fraction(pretext_results(), tmp_path / "fig3", task="context_restoration")
    _assert_valid_files(out)
    assert [ax.get_title() for ax in out.figure.axes] == list(RESULT_CLASSES)
    for ax in out.figure.axes:
        labels = [line.get_label() for line in ax.get_lines()]
        # 4 restoration strategies, the supervised curve and the all-labels dotted line.
        assert len(labels) == 4 + 2
        assert labels.count("supervised") == 1 and "supervised, 100% labels" in labels
        assert all("prediction" not in label for label in labels)
        for line in ax.get_lines()[:4]:
            assert len(line.get_xdata()) == len(FRACTIONS)
        assert len(ax.collections) == 4  # seed spread bands of the 2-seed strategies


def test_figure_3_values_are_test_set_means(tmp_path: Path) -> None:
    results = pretext_results()
    out = plot_dice_vs_label_fraction(results, tmp_path / "fig3")
    supervised = next(line for line in out.figure.axes[1].get_lines() if line.get_label() == "supervised")
    expected = [
        np.mean(results.select(arm="supervised", label_fraction=f, class_name="gm").column("value"))
        for f in sorted(FRACTIONS)
    ]
    np.testing.assert_allclose(supervised.get_ydata(), expected)
    np.testing.assert_allclose(supervised.get_xdata(), [100 * f for f in sorted(FRACTIONS)])


def test_figure_5_has_points_and_a_fit_per_label_fraction(tmp_path: Path) -> None:
    out = plot_dice_vs_pretraining_data(scaling_results(), tmp_path / "fig5.png")
    _assert_valid_files(out)
    (ax,) = out.figure.axes
    lines = ax.get_lines()
    points = [line for line in lines if line.get_linestyle() == "None"]
    fits = [line for line in lines if line.get_linestyle() == "--"]
    assert len(points) == len(fits) == len(FRACTIONS)
    for line in points:
        np.testing.assert_allclose(line.get_xdata(), [0.0, 100.0, 150.0, 200.0])
    assert sum(line.get_linestyle() == ":" for line in lines) == 1


def test_figure_5_labels_each_fit_with_the_residual_standard_error_it_shows(tmp_path: Path) -> None:
    # The label's number is sqrt(SSR / (n - 3)) of the drawn curve through the drawn points, and is
    # called RSE: "S" is the paper's SSR / (n - 2), the power-law table's paper_s, another number.
    out = plot_dice_vs_pretraining_data(scaling_results(), tmp_path / "fig5.png")
    (ax,) = out.figure.axes
    lines = ax.get_lines()
    points = [line for line in lines if line.get_linestyle() == "None"]
    fits = [line for line in lines if line.get_linestyle() == "--"]
    for point, fit in zip(points, fits):
        x, y = np.asarray(point.get_xdata(), float), np.asarray(point.get_ydata(), float)
        a, k, c = (float(part.split("=")[1]) for part in fit.get_label().split(", ")[:3])
        ssr = float(np.sum((y - (a * x**k + c)) ** 2))
        label = fit.get_label()
        assert "RSE=" in label and " S=" not in label
        shown = float(label.split("RSE=")[1])
        expected = math.sqrt(ssr / (x.size - 3))
        # a, k, c are read back at 3 significant digits: compare at the label's 2 digits, loosely.
        assert shown == pytest.approx(expected, rel=0.2, abs=1e-4)


def test_figure_5_names_each_label_fraction_as_its_axis_does(tmp_path: Path) -> None:
    # ".0%" drew 0.125 as "12%" (Python rounds 12.5 to even) and 0.12 as "12%" too: one legend entry
    # for two series; 0.004 drew "0%". Named as the x axis is: 100 * fraction in %g.
    fractions = (1.0, 0.125, 0.12, 0.004)
    rows = []
    for fraction in fractions:
        for pct in (100.0, 150.0, 200.0):
            rows += dice_rows("ssl", f"+{pct}", fraction, pretrain_data_pct=pct, labelled_volumes=40)
    out = plot_dice_vs_pretraining_data(ResultsTable(rows), tmp_path / "fig5.png")
    (ax,) = out.figure.axes
    points = [line.get_label() for line in ax.get_lines() if line.get_linestyle() == "None"]
    assert sorted(points) == sorted(f"{100 * f:g}% labels" for f in fractions)
    assert {"12.5% labels", "12% labels", "0.4% labels"} <= set(points)


def test_figure_6_has_a_panel_per_metric_and_a_bar_group_per_fraction_and_arm(tmp_path: Path) -> None:
    results = clinical_results()
    out = plot_percent_error_bars(results, tmp_path / "fig6")
    _assert_valid_files(out)
    assert len(out.figure.axes) == 2
    for ax in out.figure.axes:
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert len(bars) == 2 * 2  # label fractions x arms
        assert all(len(b.patches) == 2 for b in bars)  # classes
    first = out.figure.axes[0]  # tissue volume, in the paper's order
    label = "supervised 50%"
    bar = next(b for b in first.containers if b.get_label() == label)
    expected = np.median(
        results.select(
            arm="supervised", label_fraction=0.5, class_name="gm", metric="volume_mm3_pct_error"
        ).column("value")
    )
    assert bar.patches[0].get_height() == pytest.approx(expected)


def test_figure_6_labels_a_bar_whose_arm_missed_scans(tmp_path: Path) -> None:
    results = clinical_results()
    # Supervised at 10 % misses the wm tissue on two volumes: no mean T2, a NaN error.
    missed = {"v0", "v1"}
    rows = [
        {**r, "value": math.nan}
        if (r["arm"], r["label_fraction"], r["class_name"], r["metric"], r["volume_id"])
        in {("supervised", 0.1, "wm", "mean_t2_ms_pct_error", v) for v in missed}
        else r
        for r in results
    ]
    out = plot_percent_error_bars(ResultsTable(rows), tmp_path / "fig6")
    t2 = out.figure.axes[1]
    labels = [t.get_text() for t in t2.texts]
    assert labels == [f"{RESULT_IMAGES - 2}/{RESULT_IMAGES}"]
    assert len(out.figure.axes[0].texts) == 0  # every scan measured: no label


def test_figure_7_has_a_point_per_image_and_the_identity_line(tmp_path: Path) -> None:
    out = plot_ssl_vs_supervised(clinical_results(), tmp_path / "fig7")
    _assert_valid_files(out)
    assert len(out.figure.axes) == 2
    for ax in out.figure.axes:
        (scatter,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(scatter.get_offsets()) == RESULT_IMAGES
        assert len(ax.get_lines()) == 1


def test_figure_a1_has_a_panel_per_training_schedule_and_a_box_per_strategy_and_rate(tmp_path: Path) -> None:
    out = plot_transfer_boxplots(transfer_results(), tmp_path / "figA1")
    _assert_valid_files(out)
    titles = [ax.get_title() for ax in out.figure.axes]
    assert titles == ["trained once", "second lr 0.001", "second lr 0.0001"]
    for ax in out.figure.axes:
        boxes = [p for p in ax.patches if isinstance(p, PathPatch)]
        assert len(boxes) == 2 * 3  # 2 strategies x 3 first learning rates
        assert len(ax.get_legend().get_texts()) == 2


def test_figure_a1_legends_lie_beside_their_panels_within_the_figure(tmp_path: Path) -> None:
    # Inside a panel a legend covers boxes (and its placement search is slow over their lines).
    out = plot_transfer_boxplots(transfer_results(), tmp_path / "figA1")
    renderer = out.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    page = out.figure.bbox
    for ax in out.figure.axes:
        legend, panel = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
        assert legend.x0 >= panel.x1, (legend, panel)
        assert page.x0 <= legend.x0 and legend.x1 <= page.x1 and page.y0 <= legend.y0 and legend.y1 <= page.y1


def test_figure_a1_gives_strategies_that_share_an_acronym_and_rate_a_box_each(tmp_path: Path) -> None:
    # A grid that also varies the budget: "FEF lr=0.01 max_epochs=10" and "... max_epochs=20" are
    # two strategies; pooled into one "FEF" box their medians would be lost. Likewise the same
    # strategy at two label fractions.
    rows = []
    for strategy, fraction, value in [
        ("FEF lr=0.01 max_epochs=10", 0.1, 0.2),
        ("FEF lr=0.01 max_epochs=20", 0.1, 0.8),
        ("FEF lr=0.01 max_epochs=10", 0.5, 0.5),
        ("FEF lr=0.01 max_epochs=20", 0.5, 0.9),
    ]:
        rows += [
            result_row(
                "ssl",
                strategy,
                fraction,
                i,
                value,
                schedule="immediate",
                second_lr=None,
                lr=0.01,
                acronym="FEF",
            )
            for i in range(3)
        ]
    out = plot_transfer_boxplots(ResultsTable(rows), tmp_path / "figA1")
    (ax,) = out.figure.axes
    assert len([p for p in ax.patches if isinstance(p, PathPatch)]) == 4
    # Each box holds its own strategy's three equal items: its median, whiskers and caps all lie at
    # the value given (a pooled box would have a median between two of them).
    flat = [np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
    levels = sorted({float(y[0]) for y in flat if y.size == 2 and y[0] == y[1]})
    assert levels == [0.2, 0.5, 0.8, 0.9]
    names = {text.get_text() for text in ax.get_legend().get_texts()}
    assert names == {
        "FEF max_epochs=10 10% labels",
        "FEF max_epochs=20 10% labels",
        "FEF max_epochs=10 50% labels",
        "FEF max_epochs=20 50% labels",
    }


def test_figure_a1_names_the_labels_it_needs(tmp_path: Path) -> None:
    rows = [result_row("ssl", "a", 0.1, i, 0.5) for i in range(3)]  # not a transfer-design run
    with pytest.raises(ValueError, match=r"needs the 'lr' and 'acronym' labels.*strategies \['a'\]"):
        plot_transfer_boxplots(ResultsTable(rows), tmp_path / "figA1")


@pytest.mark.parametrize(
    "draw",
    [
        plot_dice_vs_label_fraction,
        plot_dice_vs_pretraining_data,
        plot_percent_error_bars,
        plot_ssl_vs_supervised,
        plot_transfer_boxplots,
    ],
)
def test_figures_refuse_results_without_their_data(draw: Callable[..., FigureFiles], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=draw.__name__):
        draw(ResultsTable([]), tmp_path / "empty")
    assert not list(tmp_path.iterdir())


def test_a_figure_saved_twice_is_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A PDF records its creation time unless told not to: a report made twice differed there.
    import datetime

    from matplotlib.figure import Figure

    from inpaintssl.analysis.figures import save_figure

    figure = Figure()
    figure.add_subplot().plot([1.0, 3.0, 2.0])
    first = save_figure(figure, tmp_path / "a" / "fig")
    later = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(later.timestamp())))  # what matplotlib would stamp
    second = save_figure(figure, tmp_path / "b" / "fig")
    for a, b in zip(first.paths, second.paths, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def _two_baseline_results(*, same: bool = False) -> ResultsTable:
    """A grid over two learning rates: a baseline per rate, each SSL strategy naming its rate's."""
    rows = []
    for fraction in FRACTIONS:
        for lr in ("0.01", "0.001"):
            run = f"ft-sup-{lr}-{fraction}"
            source = "supervised lr=0.01" if same else f"supervised lr={lr}"
            rows += [
                {**row, "strategy": f"supervised lr={lr}", "run_id": run, "baseline_id": run}
                for row in dice_rows("supervised", source, fraction)
            ]
            for task in ("context_restoration", "context_prediction"):
                rows += dice_rows(
                    "ssl",
                    f"{task} lr={lr}",
                    fraction,
                    task=task,
                    run_id=f"ft-{task}-{lr}-{fraction}",
                    baseline_id=run,
                )
    return ResultsTable(rows)


def test_figure_3_draws_a_named_line_per_baseline_in_styles_of_their_own(tmp_path: Path) -> None:
    results = _two_baseline_results()
    out = plot_dice_vs_label_fraction(results, tmp_path / "fig3")
    names = ["supervised lr=0.001", "supervised lr=0.01"]
    for ax, class_name in zip(out.figure.axes, RESULT_CLASSES):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert sorted(lines) == sorted(
            [
                f"{task} lr={lr}"
                for task in ("context_restoration", "context_prediction")
                for lr in ("0.01", "0.001")
            ]
            + names
            + [f"{name}, 100% labels" for name in names]
        )
        styles = {
            (str(lines[n].get_color()), str(lines[n].get_linestyle()), lines[n].get_marker()) for n in names
        }
        assert len(styles) == 2  # told apart by colour, dashes and marker
        for name in names:  # each line is its own baseline's test-set means, not the pooled ones
            expected = [
                np.mean(
                    results.select(strategy=name, label_fraction=f, class_name=class_name).column("value")
                )
                for f in sorted(FRACTIONS)
            ]
            np.testing.assert_allclose(lines[name].get_ydata(), expected)
            full = lines[f"{name}, 100% labels"]
            assert full.get_ydata()[0] == pytest.approx(expected[-1]) and full.get_linestyle() == ":"
            assert full.get_color() == lines[name].get_color()


def test_figure_3_of_one_task_shows_the_baselines_its_strategies_name(tmp_path: Path) -> None:
    rows = [
        r
        for r in _two_baseline_results()
        if r["arm"] == "supervised" or r["strategy"] != "context_prediction lr=0.01"
    ]
    out = plot_dice_vs_label_fraction(ResultsTable(rows), tmp_path / "fig3", task="context_prediction")
    labels = [line.get_label() for line in out.figure.axes[0].get_lines()]
    # The only prediction strategy left was fine-tuned at lr=0.001: one baseline, drawn as the paper did.
    assert labels == ["context_prediction lr=0.001", "supervised lr=0.001", "supervised, 100% labels"]


def test_figure_3_draws_coinciding_baseline_lines_once(tmp_path: Path) -> None:
    out = plot_dice_vs_label_fraction(_two_baseline_results(same=True), tmp_path / "fig3")
    labels = [line.get_label() for line in out.figure.axes[0].get_lines()]
    both = "supervised lr=0.001 / supervised lr=0.01"
    assert labels.count(both) == 1 and labels.count(f"{both}, 100% labels") == 1
    assert not any(label in {"supervised lr=0.001", "supervised lr=0.01"} for label in labels)


def test_figure_3_keeps_a_baselines_full_label_point_before_the_ssl_runs_there_finish(tmp_path: Path) -> None:
    # No SSL run at 100 % labels has finished: none names the baselines' 100 % runs. The baselines
    # are still drawn at every fraction they ran at, with their all-labels dotted lines.
    rows = [r for r in _two_baseline_results() if not (r["arm"] == "ssl" and r["label_fraction"] == 1.0)]
    out = plot_dice_vs_label_fraction(ResultsTable(rows), tmp_path / "fig3")
    lines = {line.get_label(): line for line in out.figure.axes[0].get_lines()}
    for name in ("supervised lr=0.001", "supervised lr=0.01"):
        np.testing.assert_allclose(lines[name].get_xdata(), [100 * f for f in sorted(FRACTIONS)])
        expected = np.mean(
            ResultsTable(rows)
            .select(strategy=name, label_fraction=1.0, class_name=RESULT_CLASSES[0])
            .column("value")
        )
        assert lines[f"{name}, 100% labels"].get_ydata()[0] == pytest.approx(expected)
    assert len(lines["context_restoration lr=0.01"].get_xdata()) == len(FRACTIONS) - 1


def _walk_clinical_results() -> ResultsTable:
    """One clinical metric (tissue volume), three classes, 100/50/25 % labels, errors all near 30 %:
    the bars of every group reach the top of the panel, as in a short study."""
    rng = np.random.default_rng(5)
    rows = [
        result_row(
            arm,
            None,
            fraction,
            f"v{image}",
            30.0 + rng.uniform(-1, 1),
            level="volume",
            slice_index=-1,
            class_name=name,
            metric="volume_mm3_pct_error",
        )
        for arm, fraction, name, image in itertools.product(
            ("supervised", "ssl"), (1.0, 0.5, 0.25), RESULT_CLASSES, range(RESULT_IMAGES)
        )
    ]
    return ResultsTable(rows)


def _renderer(figure: Figure) -> Any:
    """The canvas renderer after a draw at the figure's own dpi (saving drew it at another)."""
    figure.canvas.draw()
    return figure.canvas.get_renderer()  # type: ignore[attr-defined]


def _inside_figure(artist: Artist, figure: Figure) -> bool:
    box = artist.get_window_extent(_renderer(figure))
    return bool(box.x0 >= 0 and box.y0 >= 0 and box.x1 <= figure.bbox.width and box.y1 <= figure.bbox.height)


def test_figure_6_legend_hides_no_bar(tmp_path: Path) -> None:
    # The legend sat on the panel: where the bars reached its top, it covered some of them.
    out = plot_percent_error_bars(_walk_clinical_results(), tmp_path / "fig6")
    assert out.figure is not None
    renderer = _renderer(out.figure)
    legends = [*out.figure.legends, *(ax.get_legend() for ax in out.figure.axes if ax.get_legend())]
    (legend,) = legends
    assert len(legend.get_texts()) == 6  # 3 label fractions x 2 arms
    assert _inside_figure(legend, out.figure)
    box = legend.get_window_extent(renderer)
    bars = [
        p for ax in out.figure.axes for c in ax.containers if isinstance(c, BarContainer) for p in c.patches
    ]
    assert len(bars) == 6 * len(RESULT_CLASSES)
    assert not any(box.overlaps(bar.get_window_extent(renderer)) for bar in bars)


@pytest.mark.parametrize("metrics", [1, 2])
def test_figure_7_title_fits_and_names_the_label_fractions_averaged(metrics: int, tmp_path: Path) -> None:
    # The title said "label fractions" where the points average the label-limited ones (100 % is
    # left out, as in the per-image test), and ran off both sides of a one-panel figure.
    results = _walk_clinical_results()
    if metrics == 2:
        results = ResultsTable(
            [*results.rows, *({**r, "metric": "mean_t2_ms_pct_error"} for r in results.rows)]
        )
    out = plot_ssl_vs_supervised(results, tmp_path / "fig7")
    assert out.figure is not None and len(out.figure.axes) == metrics
    title = _suptitle(out.figure)
    assert "50%, 25%" in title and "100%" not in title
    assert out.figure._suptitle is not None and _inside_figure(out.figure._suptitle, out.figure)


def test_figure_3_shades_the_baselines_spread_over_subset_seeds_as_it_does_the_ssl_runs(
    tmp_path: Path,
) -> None:
    # Both arms trained two subsets at 50 %: the SSL curve showed its seed-to-seed range, the
    # supervised curve none, as if its mean were exact; and the figure never said what the band is.
    rows = [
        *dice_rows("supervised", "supervised", 1.0),
        *(r for seed in (0, 1) for r in dice_rows("supervised", "supervised", 0.5, seed)),
        *dice_rows("ssl", "context_restoration", 1.0, task="context_restoration"),
        *(
            r
            for seed in (0, 1)
            for r in dice_rows("ssl", "context_restoration", 0.5, seed, task="context_restoration")
        ),
    ]
    results = ResultsTable(rows)
    out = plot_dice_vs_label_fraction(results, tmp_path / "fig3")
    assert out.figure is not None and "shaded: range over subset seeds" in _suptitle(out.figure)
    for ax, class_name in zip(out.figure.axes, RESULT_CLASSES):
        seeds = [
            np.mean(
                results.select(
                    arm="supervised", label_fraction=0.5, subset_seed=s, class_name=class_name
                ).column("value")
            )
            for s in (0, 1)
        ]
        bands = {
            tuple(np.round(band.get_facecolor()[0][:3], 3)): band.get_paths()[0].vertices
            for band in ax.collections
            if isinstance(band, PolyCollection)
        }
        assert len(bands) == 2  # one per arm
        supervised = bands[tuple(np.round(to_rgb(SUPERVISED_COLOR), 3))]
        at_half = supervised[np.isclose(supervised[:, 0], 50.0), 1]
        np.testing.assert_allclose(sorted(set(np.round(at_half, 12))), sorted(np.round(seeds, 12)))
