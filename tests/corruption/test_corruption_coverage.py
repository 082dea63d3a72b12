"""Coverage is met and never overshot by more than one patch (one pair for swapped pairs).

Issue 16: a context-prediction patch as large as the image corrupted 100 % of it when 25 % was
asked. Every registered sampler and pretext task either meets the request within one placement
unit or refuses it with a ValueError naming the image size, the patch size and the coverage.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.corruption import patch_union
from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS
from sampler_requests import exact_target


@st.composite
def requests(draw: st.DrawFn) -> tuple[tuple[int, int], int, float]:
    """Image sizes, patch sizes up to the whole image, coverages up to 0.45 (always packable)."""
    height = draw(st.integers(4, 96))
    width = draw(st.integers(4, 96))
    k = draw(st.integers(1, max(height, width) + 4))
    coverage = draw(st.floats(0.02, 0.45))
    return (height, width), k, coverage


def impossible(shape: tuple[int, int], k: int, coverage: float, *, pairs: bool) -> bool:
    """Independent statement of the rules: the patch must fit, and one patch must not already
    cover more than the coverage; pairs need room for two side by side."""
    height, width = shape
    target = exact_target(coverage, (height, width))
    return k > min(height, width) or k * k > target or (pairs and 2 * k > max(height, width))


def assert_names_request(message: str, shape: tuple[int, int], k: int, coverage: float) -> None:
    assert f"{shape[0]}x{shape[1]}" in message, message
    assert f"patch_size={k}" in message, message
    assert f"coverage={coverage}" in message, message


def covered(corners: np.ndarray, shape: tuple[int, int], k: int) -> int:
    # Counted by hand, not by the library's rasteriser.
    mask = np.zeros(shape, dtype=bool)
    for row, col in corners.tolist():
        mask[row : row + k, col : col + k] = True
    return int(mask.sum())


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("pairs", [False, True])
@settings(max_examples=60, deadline=None)
@given(request=requests(), seed=st.integers(0, 2**32 - 1))
def test_sampler_meets_coverage_within_one_unit_or_refuses(
    name: str, pairs: bool, request: tuple[tuple[int, int], int, float], seed: int
) -> None:
    shape, k, coverage = request
    sampler = SAMPLERS.build(name)
    call = {"shape": shape, "patch_size": k, "coverage": coverage, "rng": np.random.default_rng(seed)}
    if impossible(shape, k, coverage, pairs=pairs):
        with pytest.raises(ValueError) as info:
            sampler.sample(**call, pairs=pairs)
        assert_names_request(str(info.value), shape, k, coverage)
        return
    try:
        corners = sampler.sample(**call, pairs=pairs)
    except ValueError as exc:
        # Only a packing that no draw reached may fail, and it must say so ("unreachable" where a
        # packing bound proves it, "not reached" where the draws found no layout).
        assert "coverage unreachable" in str(exc) or "coverage not reached" in str(exc)
        assert_names_request(str(exc), shape, k, coverage)
        return
    target = exact_target(coverage, shape)
    unit = (2 if pairs else 1) * k * k
    assert target <= covered(corners, shape, k) < target + unit


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
@pytest.mark.parametrize("sampler", SAMPLERS.names())
@settings(max_examples=25, deadline=None)
@given(request=requests())
def test_pretext_task_meets_coverage_within_one_unit_or_refuses(
    name: str, sampler: str, request: tuple[tuple[int, int], int, float]
) -> None:
    shape, k, coverage = request
    task = PRETEXT_TASKS.build(name, patch_size=k, sampler=sampler, coverage=coverage, bank_size=2)
    images = torch.randn(2, 1, *shape)
    if impossible(shape, k, coverage, pairs=task.pairs):
        with pytest.raises(ValueError) as info:
            task.corrupt(images)
        assert_names_request(str(info.value), shape, k, coverage)
        return
    try:
        bank = task.bank(shape=shape, device="cpu")
    except ValueError as exc:
        assert "coverage unreachable" in str(exc) or "coverage not reached" in str(exc)
        return
    target = exact_target(coverage, shape)
    unit = (2 if task.pairs else 1) * k * k
    for corners in bank.corners:
        assert target <= covered(corners, shape, k) < target + unit
    # What the task changes lies inside the patches of one bank entry.
    changed = (task.corrupt_fixed(images, key=0) != images).any(dim=1)
    unions = [torch.from_numpy(patch_union(c, shape=shape, patch_size=k)) for c in bank.corners]
    for n in range(len(images)):
        assert any(not bool((changed[n] & ~union).any()) for union in unions)


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_patch_as_large_as_the_image_is_refused(name: str) -> None:
    # The reported case: 64x64 patches on 64x64 images corrupted everything instead of 1/4.
    task = PRETEXT_TASKS.build(name, patch_size=64, bank_size=2)
    with pytest.raises(ValueError, match=r"cannot cover 25% of a 64x64 image with 64x64 patches") as info:
        task.corrupt(torch.randn(1, 1, 64, 64))
    assert "one patch alone covers 100%" in str(info.value)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_largest_allowed_patch_is_accepted(name: str) -> None:
    # K = 32 on 64x64 covers exactly 1/4 with one patch: the boundary of the rule, allowed.
    corners = SAMPLERS.build(name).sample(
        shape=(64, 64), patch_size=32, coverage=0.25, rng=np.random.default_rng(0)
    )
    assert covered(corners, (64, 64), 32) == 1024
    with pytest.raises(ValueError, match="expected patch_size <= 32"):
        SAMPLERS.build(name).sample(
            shape=(64, 64), patch_size=33, coverage=0.25, rng=np.random.default_rng(0)
        )
