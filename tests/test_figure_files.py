"""Figure files: the same figure gives the same bytes in every format; a failed save keeps the old file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from inpaintssl.figure_files import figure_format, render_figure, write_figure

# What the library writes (PNG, PDF) and what a diagnostics path may ask for by its suffix.
FORMATS = ("png", "pdf", "svg", "eps", "ps", "jpg", "tiff", "webp")


def figure() -> Figure:
    # Text, an image, a clipped fill and a legend: the parts whose ids or fonts could vary.
    figure = Figure(figsize=(3, 2), layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(np.arange(16.0).reshape(4, 4), cmap="gray")
    ax.plot([0.0, 1.0, 3.0], [1.0, 0.0, 2.0], label="val")
    ax.fill_between([0.0, 1.0], [0.0, 1.0], alpha=0.3)
    ax.set_title("epoch 3")
    ax.legend()
    return figure


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_same_figure_drawn_twice_is_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    # A different SOURCE_DATE_EPOCH is what matplotlib would stamp as a later time of writing;
    # SVG ids would differ by their random salt alone.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    first = write_figure(figure(), tmp_path / f"a.{fmt}").read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1956528000")
    second = write_figure(figure(), tmp_path / f"b.{fmt}").read_bytes()
    assert first == second
    assert len(first) > 100


@pytest.mark.parametrize(
    ("fmt", "date"), [("pdf", b"CreationDate"), ("svg", b"<dc:date>"), ("eps", b"%%CreationDate")]
)
def test_no_date_is_written(fmt: str, date: bytes) -> None:
    data = render_figure(figure(), fmt)
    assert date not in data
    assert len(data) > 100


def test_the_user_svg_salt_is_put_back() -> None:
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "mine"}):
        render_figure(figure(), "svg")
        assert matplotlib.rcParams["svg.hashsalt"] == "mine"


@pytest.mark.parametrize("fmt", ["svgz", "pgf"])
def test_formats_that_cannot_be_reproducible_are_refused_without_a_file(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(ValueError, match=f"cannot write a figure as '{fmt}' reproducibly"):
        write_figure(figure(), tmp_path / "sub" / f"f.{fmt}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_a_format_written_as_a_suffix_is_the_same_format(fmt: str) -> None:
    # Path(...).suffix gives ".png": the leading dot must not send it past the refusal or fail in matplotlib.
    assert render_figure(figure(), f".{fmt.upper()}") == render_figure(figure(), fmt)


def test_a_refused_format_written_as_a_suffix_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot write a figure as 'svgz' reproducibly"):
        render_figure(figure(), ".svgz")


def test_a_figure_that_fails_to_draw_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "curve.png"
    write_figure(figure(), target)
    before = target.read_bytes()
    broken = figure()
    broken.axes[0].set_xlabel(r"$\frac{$")  # mathtext fails to parse when the figure is drawn
    with pytest.raises(ValueError):
        write_figure(broken, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary left either


def test_a_failed_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "figure.pdf"
    target.write_bytes(b"the earlier figure")

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("inpaintssl.atomic.os.replace", disk_full)
    with pytest.raises(OSError, match=f"could not write {target}"):
        write_figure(figure(), target)
    assert target.read_bytes() == b"the earlier figure"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.pdf"]


def test_the_format_comes_from_the_suffix_unless_given(tmp_path: Path) -> None:
    assert figure_format(tmp_path / "x.PDF") == "pdf"
    assert figure_format(tmp_path / "x.tmp", ".png") == "png"
    written = write_figure(figure(), tmp_path / "x.tmp", format="png")
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no suffix"):
        write_figure(figure(), tmp_path / "x")


def test_dpi_defaults_to_the_figures_own_not_the_users_setting() -> None:
    import matplotlib
    from matplotlib.image import imread

    with matplotlib.rc_context({"savefig.dpi": 37}):
        pixels = imread(io.BytesIO(render_figure(Figure(figsize=(2, 1), dpi=50), "png")))
    assert pixels.shape[:2] == (50, 100)
    pixels = imread(io.BytesIO(render_figure(Figure(figsize=(2, 1), dpi=50), "png", dpi=20)))
    assert pixels.shape[:2] == (20, 40)
