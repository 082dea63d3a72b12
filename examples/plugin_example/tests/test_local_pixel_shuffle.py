"""Tests of the example plugin: the contract every pretext task keeps, its own invariants, and that
the installed entry point resolves.

Run after installing the package: ``pip install ".[test]" && pytest tests``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inpaintssl_pixel_shuffle import LocalPixelShuffle, local_shuffle_permutation, patch_cells

from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS
from inpaintssl.testing import PretextTaskContract


class TestLocalPixelShuffleContract(PretextTaskContract):
    """Every check inpaintssl runs on its own tasks: output, channels, coverage, seeding, dtypes."""

    task = "local_pixel_shuffle"


def window_of(corners: np.ndarray, k: int, pixel: tuple[int, int]) -> set[int]:
    """Indices of the patches whose K x K window contains ``pixel``."""
    row, col = pixel
    return {i for i, (r, c) in enumerate(corners.tolist()) if r <= row < r + k and c <= col < c + k}


def test_entry_point_builds_the_task() -> None:
    assert "local_pixel_shuffle" in PRETEXT_TASKS.names()
    task = PRETEXT_TASKS.build("local_pixel_shuffle", patch_size=8, bank_size=2)
    assert isinstance(task, LocalPixelShuffle)


def test_cells_hand_worked_with_a_single_leftover_pixel() -> None:
    # Patch 3 at (1, 1) only owns (2, 2); it joins the cell of (1, 1), which is patch 0's.
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    expected = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 0]])
    np.testing.assert_array_equal(patch_cells(corners, shape=(3, 3), patch_size=2), expected)


@pytest.mark.parametrize("sampler", SAMPLERS.names())
@pytest.mark.parametrize("shape", [(32, 32), (40, 64)])
@pytest.mark.parametrize("k", [2, 4, 8])
def test_permutation_moves_every_covered_pixel_within_its_cell(
    sampler: str, shape: tuple[int, int], k: int
) -> None:
    rng = np.random.default_rng(k)
    corners = SAMPLERS.build(sampler).sample(shape=shape, patch_size=k, coverage=0.25, rng=rng)
    covered = np.zeros(shape, dtype=bool)
    for r, c in corners.tolist():
        covered[r : r + k, c : c + k] = True
    perm = local_shuffle_permutation(corners, shape=shape, patch_size=k, rng=rng)
    cells = patch_cells(corners, shape=shape, patch_size=k).reshape(-1)
    assert np.array_equal(np.sort(perm), np.arange(perm.size))
    np.testing.assert_array_equal(perm != np.arange(perm.size), covered.reshape(-1))
    moved = np.flatnonzero(covered.reshape(-1))
    np.testing.assert_array_equal(cells[perm[moved]], cells[moved])


@pytest.mark.parametrize("k", [4, 8])
def test_poisson_disc_pixels_stay_inside_their_own_patch(k: int) -> None:
    rng = np.random.default_rng(0)
    shape = (48, 64)
    corners = SAMPLERS.build("poisson_disc").sample(shape=shape, patch_size=k, coverage=0.25, rng=rng)
    perm = local_shuffle_permutation(corners, shape=shape, patch_size=k, rng=rng)
    for dest in np.flatnonzero(perm != np.arange(perm.size)).tolist():
        dest_rc = divmod(dest, shape[1])
        source_rc = divmod(int(perm[dest]), shape[1])
        assert window_of(corners, k, dest_rc) == window_of(corners, k, source_rc)
        assert len(window_of(corners, k, dest_rc)) == 1


@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_corruption_moves_exactly_the_masked_pixels_in_every_channel(sampler: str) -> None:
    height, width = 32, 48
    rng = np.random.default_rng(3)
    # Distinct integer pixel values (exact in float32) make "moved" and "permutation" exact checks.
    base = np.stack([rng.permutation(height * width) for _ in range(3)]).astype(np.float32)
    images = torch.from_numpy(np.stack([base, 2 * base + 1], axis=1).reshape(3, 2, height, width))
    task = LocalPixelShuffle(patch_size=4, sampler=sampler, bank_size=2, seed=1)
    bank = task.bank(shape=(height, width))
    choice = torch.tensor([0, 3, len(bank) - 1])
    out = task.apply(images, bank=bank, choice=choice)
    moved = out != images
    assert torch.equal(moved[:, 0], bank.masks_for(choice))
    assert torch.equal(moved[:, 1], moved[:, 0])
    assert torch.equal(out.flatten(2).sort(dim=2).values, images.flatten(2).sort(dim=2).values)
    assert torch.equal(out[:, 1], 2 * out[:, 0] + 1)


def test_same_seed_same_corruption_other_seed_another() -> None:
    images = torch.randn(4, 1, 32, 32)
    first = LocalPixelShuffle(patch_size=4, bank_size=2, seed=5).corrupt_fixed(images, key=0)
    again = LocalPixelShuffle(patch_size=4, bank_size=2, seed=5).corrupt_fixed(images, key=0)
    other = LocalPixelShuffle(patch_size=4, bank_size=2, seed=6).corrupt_fixed(images, key=0)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_patch_size_one_is_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"patch_size=1 is too small for local_pixel_shuffle"):
        LocalPixelShuffle(patch_size=1)
