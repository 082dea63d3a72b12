"""Diagnostic figures: valid files, figure content against the history, hand-checked grids, errors."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from inpaintssl.training.diagnostics import (
    _learning_curve_figure,
    _learning_curves_grid_figure,
    _reconstruction_figure,
    plot_learning_curve,
    plot_learning_curves_grid,
    reconstruction_grid,
    write_reconstruction_panel,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RED = to_rgba("red")


def history(
    losses: list[tuple[float, float]], *, phases: list[str] | None = None, dice: list[Any] | None = None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    best = math.inf
    for epoch, (train, val) in enumerate(losses):
        row: dict[str, Any] = {
            "phase": phases[epoch] if phases else "pretrain",
            "epoch": epoch,
            "train_loss": train,
            "val_loss": val,
            "best": int(val < best),
        }
        best = min(best, val)
        if dice is not None:
            row["val_dice"] = dice[epoch]
        rows.append(row)
    return rows


DECREASING = history([(1.0, 1.2), (0.6, 0.8), (0.4, 0.7), (0.3, 0.75)])


def line(axes: Any, label: str) -> Any:
    (found,) = [ln for ln in axes.get_lines() if ln.get_label() == label]
    return found


def tensors(*shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    original = torch.rand(*shape, generator=g)
    return original, original * (torch.rand(*shape, generator=g) > 0.3), original + 0.05


# -- written files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("writer", ["curve", "grid", "panel"])
def test_writers_produce_a_valid_png_atomically(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "sub" / "figure.png"
    if writer == "curve":
        out = plot_learning_curve(DECREASING, str(target), title="t", converged=True)
    elif writer == "grid":
        out = plot_learning_curves_grid([("a", DECREASING, True), ("b", DECREASING, False)], str(target))
    else:
        out = write_reconstruction_panel(*tensors(2, 1, 8, 8), str(target), title="t")
    assert out == target and isinstance(out, Path)
    assert target.read_bytes()[:8] == PNG_MAGIC
    image = imread(target)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert [p.name for p in target.parent.iterdir()] == ["figure.png"]  # no temporary file left


def test_an_unknown_format_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_learning_curve(DECREASING, tmp_path / "figure.nosuchformat")
    assert list(tmp_path.iterdir()) == []


def test_a_path_without_suffix_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suffix"):
        plot_learning_curve(DECREASING, tmp_path / "figure")


def test_rewriting_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "c.png"
    target.write_bytes(b"old")
    plot_learning_curve(DECREASING, target)
    assert target.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
@pytest.mark.parametrize("writer", ["curve", "grid"])
def test_learning_curves_from_the_same_history_are_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, suffix: str
) -> None:
    # The demo's learning_curve(s).png are compared across runs: a time of writing (what
    # SOURCE_DATE_EPOCH stands in for here) or a random SVG id would make equal runs differ.
    def draw(name: str) -> bytes:
        target = tmp_path / f"{name}{suffix}"
        if writer == "curve":
            plot_learning_curve(DECREASING, target, title="t", converged=True)
        else:
            plot_learning_curves_grid([("a", DECREASING, True), ("b", DECREASING, False)], target)
        return target.read_bytes()

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    first = draw("first")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1956528000")
    assert draw("second") == first


# -- single learning curve --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dice", "panels"),
    [
        (None, 1),
        (["", "", "", ""], 1),
        ([None, math.nan, None, math.nan], 1),
        ([None, "", 0.4, math.nan], 2),
        ([0.1, 0.2, 0.3, 0.4], 2),
    ],
)
def test_a_dice_panel_appears_only_with_a_finite_val_dice(dice: list[Any] | None, panels: int) -> None:
    rows = history([(1.0, 1.2), (0.6, 0.8), (0.4, 0.7), (0.3, 0.75)], dice=dice)
    assert len(_learning_curve_figure(rows).axes) == panels


def test_plotted_lines_are_the_history_values() -> None:
    figure = _learning_curve_figure(DECREASING)
    (axes,) = figure.axes
    epochs = [row["epoch"] for row in DECREASING]
    for label, key in (("train loss", "train_loss"), ("validation loss", "val_loss")):
        plotted = line(axes, label)
        np.testing.assert_array_equal(plotted.get_xdata(), epochs)
        np.testing.assert_array_equal(plotted.get_ydata(), [row[key] for row in DECREASING])


def test_dice_panel_skips_missing_values_and_spans_zero_to_one() -> None:
    rows = history([(1.0, 1.0)] * 4, dice=[0.2, "", None, 0.6])
    _, dice_axes = _learning_curve_figure(rows).axes
    (plotted,) = [ln for ln in dice_axes.get_lines() if ln.get_gid() != "phase-change"]
    np.testing.assert_array_equal(plotted.get_xdata(), [0, 3])
    np.testing.assert_array_equal(plotted.get_ydata(), [0.2, 0.6])
    assert dice_axes.get_ylim() == (0.0, 1.0)


def test_best_marker_sits_on_the_last_flagged_epoch() -> None:
    # best restarts with each phase: the run keeps the last flagged epoch, not the lowest loss overall.
    rows = history([(1.0, 0.5), (0.9, 0.6), (0.8, 0.9), (0.7, 0.8)], phases=["frozen"] * 2 + ["unfrozen"] * 2)
    rows[2]["best"] = 1
    rows[3]["best"] = 1
    (axes,) = _learning_curve_figure(rows).axes
    (marker,) = [ln for ln in axes.get_lines() if ln.get_gid() == "best"]
    assert (np.asarray(marker.get_xdata()).tolist(), np.asarray(marker.get_ydata()).tolist()) == ([3], [0.8])


@pytest.mark.parametrize(
    ("losses", "scale"),
    [
        ([(100.0, 90.0), (1.0, 2.0), (0.5, 1.0)], "log"),  # max/min = 200
        ([(10.0, 9.0), (2.0, 3.0), (1.0, 1.5)], "linear"),  # max/min = 10
        ([(10.0, 9.0), (2.0, 3.0), (0.4, 0.6)], "log"),  # max/min = 25, just over 20
        ([(100.0, 90.0), (1.0, 2.0), (0.0, 1.0)], "linear"),  # a zero cannot go on a log axis
        ([(100.0, 90.0), (1.0, 2.0), (-0.5, 1.0)], "linear"),
    ],
)
def test_log_scale_only_for_positive_losses_spanning_more_than_20x(
    losses: list[tuple[float, float]], scale: str
) -> None:
    (axes,) = _learning_curve_figure(history(losses)).axes
    assert axes.get_yscale() == scale


def test_phase_changes_get_dashed_lines_and_labels() -> None:
    phases = ["frozen"] * 3 + ["unfrozen"] * 2
    rows = history([(1.0, 1.0)] * 5, phases=phases, dice=[0.1] * 5)
    loss_axes, dice_axes = _learning_curve_figure(rows).axes
    for axes in (loss_axes, dice_axes):
        (boundary,) = [ln for ln in axes.get_lines() if ln.get_gid() == "phase-change"]
        assert boundary.get_linestyle() == "--"
        assert np.asarray(boundary.get_xdata()).tolist() == [2.5, 2.5]
    labels = {text.get_text().strip() for text in loss_axes.texts}
    assert {"frozen", "unfrozen"} <= labels


def test_a_single_phase_has_no_boundary_line() -> None:
    (axes,) = _learning_curve_figure(DECREASING).axes
    assert not [ln for ln in axes.get_lines() if ln.get_gid() == "phase-change"]


@pytest.mark.parametrize(
    ("converged", "reason", "expected", "colour"),
    [
        (None, None, "run 7", "black"),
        (True, None, "run 7 (converged)", "black"),
        (False, "still improving", "run 7 (NOT converged: still improving)", "red"),
        (False, "too short to judge", "run 7 (NOT converged: too short to judge)", "red"),
        (False, None, "run 7 (NOT converged)", "red"),
    ],
)
def test_title_states_convergence(
    converged: bool | None, reason: str | None, expected: str, colour: str
) -> None:
    figure = _learning_curve_figure(DECREASING, title="run 7", converged=converged, reason=reason)
    (suptitle,) = figure.texts
    assert suptitle.get_text() == expected
    assert to_rgba(suptitle.get_color()) == to_rgba(colour)


def test_no_title_and_unknown_convergence_gives_no_title() -> None:
    assert _learning_curve_figure(DECREASING).texts == []


def test_rows_read_back_from_metrics_csv_are_accepted() -> None:
    finetune = {
        "phase": "finetune",
        "epoch": 2,
        "train_loss": 0.5,
        "val_loss": 0.6,
        "best": 1,
        "val_dice": 0.7,
    }
    rows = [*history([(1.0, 1.2), (0.6, 0.8)]), finetune]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[-1]))
    writer.writeheader()
    writer.writerows(rows)
    read_back = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert read_back[0]["val_dice"] == ""
    loss_axes, _ = _learning_curve_figure(read_back).axes
    np.testing.assert_array_equal(line(loss_axes, "validation loss").get_ydata(), [1.2, 0.8, 0.6])
    assert len(loss_axes.texts) == 2  # pretrain, finetune


def test_empty_history_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history"):
        plot_learning_curve([], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


# -- grid of learning curves ------------------------------------------------------------------------
def spines_are_red(axes: Any) -> bool:
    return all(to_rgba(spine.get_edgecolor()) == RED for spine in axes.spines.values())


@pytest.mark.parametrize(
    ("count", "shape"), [(1, (1, 1)), (3, (1, 3)), (4, (1, 4)), (5, (2, 4)), (9, (3, 4))]
)
def test_grid_has_one_visible_panel_per_run_in_at_most_four_columns(
    count: int, shape: tuple[int, int]
) -> None:
    runs = [(f"run{i}", DECREASING, True) for i in range(count)]
    figure = _learning_curves_grid_figure(runs)
    assert len(figure.axes) == shape[0] * shape[1]
    visible = [axes for axes in figure.axes if axes.get_visible()]
    assert [axes.get_title() for axes in visible] == [name for name, _, _ in runs]
    spec = visible[0].get_subplotspec()
    assert spec is not None and spec.get_geometry()[:2] == shape


def test_grid_panel_shows_val_solid_train_dashed_and_dice_on_a_twin_axis() -> None:
    rows = history([(1.0, 1.2), (0.6, 0.8), (0.4, 0.7)], dice=[0.1, None, 0.5])
    figure = _learning_curves_grid_figure([("with dice", rows, None), ("without", DECREASING, None)])
    with_dice, without, twin = figure.axes  # the twin axes is added after the grid
    assert twin.get_position().bounds == with_dice.get_position().bounds and twin.get_ylim() == (0.0, 1.0)
    assert not [ln for ln in without.get_lines() if ln.get_label() == "val Dice"]
    val, train = line(with_dice, "val loss"), line(with_dice, "train loss")
    assert val.get_linestyle() == "-" and train.get_linestyle() == "--"
    np.testing.assert_array_equal(val.get_ydata(), [1.2, 0.8, 0.7])
    np.testing.assert_array_equal(train.get_ydata(), [1.0, 0.6, 0.4])
    np.testing.assert_array_equal(line(twin, "val Dice").get_ydata(), [0.1, 0.5])


def test_unconverged_runs_get_a_red_frame_and_title() -> None:
    dice_rows = history([(1.0, 1.2), (0.6, 0.8)], dice=[0.3, 0.4])
    runs = [
        ("ok", DECREASING, True),
        ("bad", DECREASING, False),
        ("?", DECREASING, None),
        ("bad+dice", dice_rows, False),
    ]
    figure = _learning_curves_grid_figure(runs, title="sweep")
    ok, bad, unknown, bad_dice, twin = figure.axes
    assert spines_are_red(bad) and spines_are_red(bad_dice) and spines_are_red(twin)
    assert not any(spines_are_red(axes) for axes in (ok, unknown))
    assert "NOT converged" in bad.get_title() and to_rgba(bad.title.get_color()) == RED
    assert ok.get_title() == "ok" and to_rgba(ok.title.get_color()) != RED


def test_grid_keeps_a_panel_for_a_run_without_epochs() -> None:
    figure = _learning_curves_grid_figure([("died", [], False), ("ran", DECREASING, True)])
    died = figure.axes[0]
    assert died.get_title().startswith("died") and not died.get_lines()
    assert "no epochs" in died.texts[0].get_text()


def test_empty_runs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runs"):
        plot_learning_curves_grid([], tmp_path / "g.png")


# -- reconstruction grid and panel ------------------------------------------------------------------
def test_grid_pixels_by_hand() -> None:
    original = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])  # 1st/99th percentiles: exactly 0 and 1
    corrupted = torch.zeros(1, 1, 2, 2)
    restored = torch.tensor([[[[0.5, 0.0], [1.0, 2.0]]]])  # 2.0 lies above the scale: clipped to 1
    s = 1.0  # separator
    expected = np.array(
        [
            [0.0, 0.0, s, s, 0.0, 0.0, s, s, 0.5, 0.0, s, s, 0.5, 0.0],
            [1.0, 1.0, s, s, 0.0, 0.0, s, s, 1.0, 1.0, s, s, 0.0, 1.0],  # error 1.0 is the maximum
        ],
        dtype=np.float32,
    )
    grid = reconstruction_grid(original, corrupted, restored)
    assert grid.dtype == np.float32 and grid.shape == (2, 4 * 2 + 3 * 2)
    np.testing.assert_array_equal(grid, expected)


def test_grid_scales_each_row_by_its_own_original() -> None:
    original, corrupted, restored = tensors(1, 1, 5, 6)
    single = reconstruction_grid(original, corrupted, restored)
    # The second row is the first times 10 (plus an offset): after per-row scaling it looks the same.
    stacked = [torch.cat([t, 10 * t - 3]) for t in (original, corrupted, restored)]
    grid = reconstruction_grid(*stacked)
    assert grid.shape == (2 * 5 + 2, 4 * 6 + 3 * 2)
    np.testing.assert_allclose(grid[:5], single, atol=1e-6)
    np.testing.assert_array_equal(grid[5:7], 1.0)  # 2-pixel separator between the rows
    np.testing.assert_allclose(grid[7:], single, atol=1e-5)


def test_grid_scale_is_the_1st_to_99th_percentile_of_the_original() -> None:
    values = torch.arange(100, dtype=torch.float32).reshape(1, 1, 10, 10)
    grid = reconstruction_grid(values, values, values)
    low, high = np.percentile(np.arange(100), [1, 99])
    expected = np.clip((np.arange(100).reshape(10, 10) - low) / (high - low), 0, 1)
    np.testing.assert_allclose(grid[:, :10], expected, atol=1e-6)
    np.testing.assert_array_equal(grid[:, 36:], 0.0)  # zero error


def test_grid_shows_channel_zero_only() -> None:
    original, corrupted, restored = tensors(2, 3, 4, 4)
    first = reconstruction_grid(original[:, :1], corrupted[:, :1], restored[:, :1])
    np.testing.assert_array_equal(reconstruction_grid(original, corrupted, restored), first)


def test_grid_survives_constant_and_non_finite_slices() -> None:
    constant = torch.full((1, 1, 3, 3), 5.0)
    restored = constant.clone()
    restored[0, 0, 0, 0] = math.nan
    restored[0, 0, 1, 1] = math.inf
    grid = reconstruction_grid(constant, torch.zeros_like(constant), restored)
    assert np.isfinite(grid).all() and grid.min() >= 0.0 and grid.max() <= 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_grid_accepts_other_float_dtypes_and_autograd_tensors(dtype: torch.dtype) -> None:
    converted = [t.to(dtype).requires_grad_() for t in tensors(2, 1, 4, 4)]
    # Shown as float32: the same picture as the float32 copy of the same values.
    reference = reconstruction_grid(*(t.detach().float() for t in converted))
    np.testing.assert_array_equal(reconstruction_grid(*converted), reference)


@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
        elements=st.floats(-(2.0**100), 2.0**100, allow_nan=False, width=32),
    ),
    st.floats(-1e3, 1e3, allow_nan=False),
)
def test_grid_is_always_in_unit_range_with_white_separators(data: np.ndarray, shift: float) -> None:
    original = torch.from_numpy(data)
    n, _, h, w = original.shape
    grid = reconstruction_grid(original, original * 0.5, original + shift)
    assert grid.dtype == np.float32
    assert grid.shape == (n * h + (n - 1) * 2, 4 * w + 3 * 2)
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    for j in range(1, 4):
        np.testing.assert_array_equal(grid[:, j * (w + 2) - 2 : j * (w + 2)], 1.0)
    for i in range(1, n):
        np.testing.assert_array_equal(grid[i * (h + 2) - 2 : i * (h + 2)], 1.0)


BAD_SHAPES = [
    ((2, 1, 4, 4), (2, 1, 4, 5), (2, 1, 4, 4), r"corrupted has shape \(2, 1, 4, 5\) but original has shape"),
    ((2, 1, 4, 4), (2, 1, 4, 4), (1, 1, 4, 4), r"restored has shape \(1, 1, 4, 4\)"),
    ((1, 4, 4), (1, 4, 4), (1, 4, 4), r"original must be 4-D \(N, C, H, W\), got shape \(1, 4, 4\)"),
    ((2, 1, 4, 4), (2, 1, 1, 4, 4), (2, 1, 4, 4), r"corrupted must be 4-D"),
    ((0, 1, 4, 4), (0, 1, 4, 4), (0, 1, 4, 4), r"original holds no slice"),
]


@pytest.mark.parametrize(("a", "b", "c", "message"), BAD_SHAPES)
@pytest.mark.parametrize("function", ["grid", "panel"])
def test_bad_shapes_name_the_argument(
    tmp_path: Path, a: tuple[int, ...], b: tuple[int, ...], c: tuple[int, ...], message: str, function: str
) -> None:
    tensors_ = (torch.zeros(a), torch.zeros(b), torch.zeros(c))
    with pytest.raises(ValueError, match=message):
        if function == "grid":
            reconstruction_grid(*tensors_)
        else:
            write_reconstruction_panel(*tensors_, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def _tile(mosaic: np.ndarray, i: int, j: int, size: int, gap: int) -> np.ndarray:
    return mosaic[i * (size + gap) : i * (size + gap) + size, j * (size + gap) : j * (size + gap) + size]


def test_panel_layout_titles_and_colour_scales() -> None:
    original, corrupted, restored = tensors(3, 2, 6, 6)
    restored[1] += 0.5
    restored[2, 0, 0, 0] = math.nan  # a diverged pixel: shown as the white page
    figure = _reconstruction_figure(original, corrupted, restored, title="what was learned")
    (axes,) = figure.axes
    (image,) = axes.get_images()
    mosaic = np.asarray(image.get_array())
    gap = 2  # 6-pixel tiles: the smallest gap
    assert mosaic.shape == (3 * 6 + 2 * gap, 4 * 6 + 3 * gap, 3)
    texts = [text.get_text() for text in axes.texts]
    assert texts[:4] == ["original", "corrupted", "restored", "|restored - original|"]
    errors = (restored[:, 0] - original[:, 0]).abs().numpy().astype(np.float64)
    assert texts[4:] == [f"max {np.nanmax(errors[i]):.3g}" for i in range(3)]
    assert [text.get_text() for text in figure.texts] == ["what was learned"]
    for i in range(3):
        # A linear grey scale from the 1st to the 99th percentile of the row's original, clipped;
        # the colormap has 256 levels, so a pixel is within 1/255 of its exact grey.
        low, high = np.percentile(original[i, 0].numpy().astype(np.float64), [1, 99])
        for j, shown in enumerate((original, corrupted, restored)):
            tile = _tile(mosaic, i, j, 6, gap)
            values = shown[i, 0].numpy().astype(np.float64)
            finite = np.isfinite(values)
            assert np.all(tile[..., 0] == tile[..., 1]) and np.all(tile[..., 1] == tile[..., 2])
            expected = np.clip((values - low) / (high - low), 0.0, 1.0)
            np.testing.assert_allclose(tile[..., 0][finite], expected[finite], atol=1 / 255 + 1e-9)
            assert np.all(tile[~finite] == 1.0)
        # The error tile: magma from 0 to the row's largest error, so its largest error is magma's
        # brightest colour, and a larger error is never drawn darker.
        error_tile = _tile(mosaic, i, 3, 6, gap)
        finite = np.isfinite(errors[i])
        brightest = np.unravel_index(np.nanargmax(errors[i]), errors[i].shape)
        np.testing.assert_allclose(error_tile[brightest], colormaps["magma"](1.0)[:3])
        lightness = error_tile.sum(axis=-1)[finite]
        assert np.all(np.diff(lightness[np.argsort(errors[i][finite], kind="stable")]) >= -1e-12)
        assert np.all(error_tile[~finite] == 1.0)
    # The gaps between tiles are white.
    assert np.all(mosaic[6 : 6 + gap] == 1.0) and np.all(mosaic[:, 6 : 6 + gap] == 1.0)
