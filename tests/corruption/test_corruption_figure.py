"""The Figure-1 style PNG: written, readable, one column per fitting patch size, reproducible."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from inpaintssl.corruption import render_corruption_figure


def image(shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return np.sin(rows / 7.0) + np.cos(cols / 5.0)


def test_writes_a_png_with_one_column_per_patch_size(tmp_path: Path) -> None:
    one = render_corruption_figure(image((96, 96)), tmp_path / "one.png", patch_sizes=(16,))
    three = render_corruption_figure(
        image((96, 96)), tmp_path / "nested" / "three.png", patch_sizes=(32, 16, 8)
    )
    assert one == tmp_path / "one.png"
    assert three.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    narrow, wide = imread(one), imread(three)
    # 1 + 1 panels against 1 + 3 panels at 2.2 inches each.
    assert wide.shape[1] / narrow.shape[1] == pytest.approx(2.0, rel=0.05)
    assert narrow.shape[0] == wide.shape[0]
    assert not list(tmp_path.glob("**/*.tmp"))


def test_same_seed_same_png_and_other_seed_differs(tmp_path: Path) -> None:
    a = render_corruption_figure(image((64, 80)), tmp_path / "a.png", patch_sizes=(16, 8), seed=1)
    b = render_corruption_figure(image((64, 80)), tmp_path / "b.png", patch_sizes=(16, 8), seed=1)
    c = render_corruption_figure(image((64, 80)), tmp_path / "c.png", patch_sizes=(16, 8), seed=2)
    assert a.read_bytes() == b.read_bytes()  # the file, not only its pixels: no time of writing inside
    assert not np.array_equal(imread(a), imread(c))


@pytest.mark.parametrize("view", [np.flipud, np.fliplr, np.rot90, lambda a: a[::-1, ::2]])
def test_a_flipped_or_rotated_view_draws_what_its_copy_draws(tmp_path: Path, view: object) -> None:
    # Views with negative strides (a slice turned for display) made torch.from_numpy raise, and
    # that was taken for a K that does not fit: every corruption panel was skipped.
    shown = view(image((64, 96)))  # type: ignore[operator]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = render_corruption_figure(shown, tmp_path / "view.png", patch_sizes=(16, 8))
    copy = render_corruption_figure(np.array(shown, copy=True), tmp_path / "copy.png", patch_sizes=(16, 8))
    assert out.read_bytes() == copy.read_bytes()


def test_patch_sizes_that_do_not_fit_are_skipped_with_a_warning(tmp_path: Path) -> None:
    # 40x40: K=64 exceeds the image, K=32 leaves no room for a swapped pair; K=8 fits.
    with pytest.warns(UserWarning) as caught:
        out = render_corruption_figure(image((40, 40)), tmp_path / "small.png", patch_sizes=(64, 32, 8))
    messages = " ".join(str(w.message) for w in caught)
    assert "patch size 64 skipped" in messages and "patch size 32 skipped" in messages
    assert "patch size 8" not in messages
    reference = render_corruption_figure(image((40, 40)), tmp_path / "ref.png", patch_sizes=(8,))
    assert imread(out).shape[1] == imread(reference).shape[1]


def test_every_patch_size_skipped_still_draws_the_original(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="patch size 64 skipped"):
        out = render_corruption_figure(image((20, 30)), tmp_path / "tiny.png", patch_sizes=(64,))
    assert imread(out).shape[0] > 0


def test_a_fractional_patch_size_is_skipped_not_truncated(tmp_path: Path) -> None:
    # int(8.7) drew it as 8x8 patches, silently, where ContextPrediction(patch_size=8.7) refuses.
    with pytest.warns(UserWarning) as caught:
        out = render_corruption_figure(image((64, 64)), tmp_path / "frac.png", patch_sizes=(8.7, 16))  # type: ignore[arg-type]
    messages = [str(w.message) for w in caught]
    assert any(
        "patch size 8.7 skipped" in m and "patch_size=8.7 must be a positive integer" in m for m in messages
    )
    assert not any("patch size 16" in m for m in messages)
    # One corruption column (16x16), as wide as a figure asked for 16 alone.
    reference = render_corruption_figure(image((64, 64)), tmp_path / "ref.png", patch_sizes=(16,))
    assert imread(out).shape[1] == imread(reference).shape[1]


@pytest.mark.parametrize("whole", [8.0, np.int64(8)])
def test_a_whole_patch_size_of_another_type_draws_what_the_int_draws(tmp_path: Path, whole: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = render_corruption_figure(image((64, 64)), tmp_path / "whole.png", patch_sizes=(whole,))  # type: ignore[arg-type]
    reference = render_corruption_figure(image((64, 64)), tmp_path / "int.png", patch_sizes=(8,))
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((2, 8, 8)), r"2-D array \(H, W\), got shape \(2, 8, 8\)"),
        (np.full((8, 8), np.nan), "NaN or inf"),
    ],
)
def test_bad_images_raise(tmp_path: Path, bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        render_corruption_figure(bad, tmp_path / "x.png")
