"""Poisson-disc patches spread over the whole image, not in a blob around Bridson's first point.

Bridson's algorithm grows its set outward from one seed point, so the first ``N`` corners it
returns form a compact blob. The sampler must keep a random subset of the maximal set instead;
a subset drawn uniformly at random keeps the spread of the set it is drawn from.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from inpaintssl.registry import SAMPLERS

# Mean distance between two independent uniform points in the unit square:
# (2 + sqrt(2) + 5 * asinh(1)) / 15 (a classical closed form, about 0.5214).
UNIT_SQUARE_MEAN_DISTANCE = (2 + math.sqrt(2) + 5 * math.asinh(1)) / 15
BANK = 60


def _mean_pairwise_distance(points: NDArray[np.int64]) -> float:
    diff = points[:, None, :].astype(float) - points[None, :, :].astype(float)
    distances = np.sqrt((diff**2).sum(axis=-1))
    return float(distances[np.triu_indices(len(points), k=1)].mean())


@pytest.mark.parametrize(("size", "patch", "coverage"), [(128, 8, 0.1), (128, 8, 0.05), (96, 6, 0.08)])
def test_patches_of_a_bank_spread_like_uniform_points(size: int, patch: int, coverage: float) -> None:
    # Low coverages keep only a small share of each maximal Poisson-disc set, where a blob and a
    # spread-out subset differ most. Corners live in a square of side size - patch; points
    # spread over it have mean pairwise distance near the uniform value (Poisson-disc points,
    # being more regular, come out slightly above it), while a blob of the first corners Bridson
    # placed comes out at about 0.55-0.7 of it.
    sampler = SAMPLERS.build("poisson_disc")
    rng = np.random.default_rng(20231125)
    uniform = UNIT_SQUARE_MEAN_DISTANCE * (size - patch)
    ratios = []
    for _ in range(BANK):
        corners = sampler.sample(shape=(size, size), patch_size=patch, coverage=coverage, rng=rng)
        assert len(corners) >= 2
        ratios.append(_mean_pairwise_distance(corners) / uniform)
    assert float(np.mean(ratios)) > 0.9, f"patches cluster: mean distance ratio {np.mean(ratios):.3f}"


def test_patches_of_a_bank_reach_every_part_of_the_image() -> None:
    # Across a bank every region of the image must be corrupted now and then, and no region
    # far more often than another: count patch centres per quarter of the image.
    sampler = SAMPLERS.build("poisson_disc")
    rng = np.random.default_rng(7)
    size, patch = 128, 8
    per_mask_quarters = []
    for _ in range(BANK):
        corners = sampler.sample(shape=(size, size), patch_size=patch, coverage=0.05, rng=rng)
        centres = corners + patch / 2
        quarters = {(int(r // (size / 2)), int(c // (size / 2))) for r, c in centres}
        per_mask_quarters.append(len(quarters))
    # 13 spread-out patches land in all four quarters almost always; a blob rarely does.
    assert float(np.mean(per_mask_quarters)) > 3.5, per_mask_quarters
