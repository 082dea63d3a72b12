"""Sliding-window prediction (``inpaintssl.inference.tiling``) against invariants and a plain
NumPy reference of the blend."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.inference.tiling import gaussian_weights, sliding_window_probabilities, tile_starts


@given(st.integers(1, 300), st.integers(1, 120), st.floats(0.0, 0.95))
def test_windows_cover_every_pixel_with_at_least_the_overlap(length: int, size: int, overlap: float) -> None:
    starts = tile_starts(length, size, overlap=overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if length <= size:
        assert starts == [0]
        return
    assert starts[-1] == length - size  # the last window ends on the last pixel
    step = max(1, math.floor(size * (1 - overlap)))
    assert all(b - a <= step for a, b in itertools.pairwise(starts))  # overlap never below the request
    assert len(starts) == math.ceil((length - size) / step) + 1  # and no more windows than needed


@pytest.mark.parametrize(("overlap", "size"), [(-0.1, 4), (1.0, 4), (0.5, 0)])
def test_invalid_windows_are_refused(overlap: float, size: int) -> None:
    with pytest.raises(ValueError, match=r"overlap=|window size"):
        tile_starts(10, size, overlap=overlap)


def test_gaussian_weights_by_hand() -> None:
    weights = gaussian_weights((9, 7))
    # sigma = side / 8; the centre is 1; weights fall off as exp(-d^2 / (2 sigma^2)) per axis.
    assert float(weights[4, 3]) == 1.0
    assert float(weights[0, 3]) == pytest.approx(math.exp(-0.5 * (4 / (9 / 8)) ** 2), rel=1e-6)
    assert float(weights[4, 0]) == pytest.approx(math.exp(-0.5 * (3 / (7 / 8)) ** 2), rel=1e-6)
    assert torch.equal(weights, weights.flip(0)) and torch.equal(weights, weights.flip(1))
    assert bool((weights > 0).all())


def _reference_blend(
    images: np.ndarray, size: tuple[int, int], network: Callable[[np.ndarray], np.ndarray], overlap: float
) -> np.ndarray:
    """The blend written out with NumPy, one window at a time (images already at least ``size``)."""
    n, _, height, width = images.shape
    ys = (np.arange(size[0]) - (size[0] - 1) / 2) / (size[0] / 8)
    xs = (np.arange(size[1]) - (size[1] - 1) / 2) / (size[1] / 8)
    weight = np.exp(-0.5 * ys[:, None] ** 2) * np.exp(-0.5 * xs[None, :] ** 2)
    weight = weight / weight.max()
    out, norm = None, np.zeros((height, width))
    for top in tile_starts(height, size[0], overlap=overlap):
        for left in tile_starts(width, size[1], overlap=overlap):
            window = images[:, :, top : top + size[0], left : left + size[1]]
            scores = network(window)
            if out is None:
                out = np.zeros((n, scores.shape[1], height, width))
            out[:, :, top : top + size[0], left : left + size[1]] += scores * weight
            norm[top : top + size[0], left : left + size[1]] += weight
    return out / norm


@pytest.mark.parametrize("shape", [(23, 40), (16, 16), (30, 17)])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_blend_matches_the_reference(shape: tuple[int, int], batch_size: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 2, *shape)).astype(np.float32)
    size = (16, 16)

    # A network whose answer depends on where the window is (its content), not only per pixel:
    # each window's output is its per-channel mean plus a pixel term, two channels in, three out.
    def network(window: np.ndarray) -> np.ndarray:
        mean = window.mean(axis=(2, 3), keepdims=True)
        return np.concatenate([window + mean, window.sum(axis=1, keepdims=True) * 0.5], axis=1)

    got = sliding_window_probabilities(
        torch.from_numpy(images),
        size=size,
        probabilities_of=lambda w: torch.from_numpy(network(w.numpy())),
        batch_size=batch_size,
        overlap=0.5,
    )
    expected = _reference_blend(images.astype(np.float64), size, network, 0.5)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert tuple(got.shape) == (3, 3, *shape)


@given(st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 0.9))
def test_a_pixelwise_network_comes_back_unchanged(height: int, width: int, overlap: float) -> None:
    # Every window sees the same value at a pixel, so any weighted mean of them is that value:
    # this checks that windows go back where they came from and that padding is cut off again.
    images = torch.arange(2 * height * width, dtype=torch.float32).reshape(2, 1, height, width)
    got = sliding_window_probabilities(
        images, size=(8, 12), probabilities_of=lambda w: w * 2.0, batch_size=3, overlap=overlap
    )
    torch.testing.assert_close(got, images * 2.0, rtol=1e-6, atol=1e-3)


def test_no_images_is_an_error() -> None:
    with pytest.raises(ValueError, match="no images"):
        sliding_window_probabilities(
            torch.zeros(0, 1, 8, 8), size=(4, 4), probabilities_of=lambda w: w, batch_size=2
        )
