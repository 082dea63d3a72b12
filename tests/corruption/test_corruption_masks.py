"""Mask banks: orientations valid for the real shape, exact swap permutations, seeding."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.corruption import (
    ORIENTATIONS,
    MaskBank,
    PoissonDiscSampler,
    orient_corners,
    patch_union,
    swap_permutation,
)
from inpaintssl.corruption import masks as masks_module
from inpaintssl.registry import SAMPLERS


def orient_image(image: np.ndarray, k: int) -> np.ndarray:
    """The orientation convention written with NumPy's own rotations and flips."""
    if image.shape[0] == image.shape[1]:
        return np.rot90(image, k)
    return [image, image[::-1], image[:, ::-1], image[::-1, ::-1]][k]


def unorient_image(image: np.ndarray, k: int) -> np.ndarray:
    if image.shape[0] == image.shape[1]:
        return np.rot90(image, -k)
    return orient_image(image, k)  # every flip is its own inverse


def loop_union(corners: np.ndarray, shape: tuple[int, int], k: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for row, col in corners.tolist():
        mask[row : row + k, col : col + k] = True
    return mask


def loop_swap(image: np.ndarray, corners: np.ndarray, k: int) -> np.ndarray:
    out = image.copy()
    for (r1, c1), (r2, c2) in zip(corners[0::2].tolist(), corners[1::2].tolist()):
        held = out[r1 : r1 + k, c1 : c1 + k].copy()
        out[r1 : r1 + k, c1 : c1 + k] = out[r2 : r2 + k, c2 : c2 + k]
        out[r2 : r2 + k, c2 : c2 + k] = held
    return out


shapes = st.sampled_from([(32, 32), (48, 48), (24, 40), (40, 24), (96, 160)])


@given(shape=shapes, k=st.integers(1, 8), seed=st.integers(0, 2**32 - 1), orientation=st.integers(0, 3))
def test_orient_corners_matches_numpy_rotations_and_flips(
    shape: tuple[int, int], k: int, seed: int, orientation: int
) -> None:
    rng = np.random.default_rng(seed)
    corners = np.stack(
        [rng.integers(0, shape[0] - k + 1, size=6), rng.integers(0, shape[1] - k + 1, size=6)], axis=1
    )
    expected = orient_image(loop_union(corners, shape, k), orientation)
    moved = orient_corners(corners, shape=shape, patch_size=k, orientation=orientation)
    assert expected.shape == shape  # a valid orientation keeps the shape
    np.testing.assert_array_equal(loop_union(moved, shape, k), expected)


def test_orient_corners_hand_worked() -> None:
    # 32x32, K=8, patch at rows 0..7, cols 10..17: np.rot90 puts it at rows 14..21, cols 0..7.
    rotated = orient_corners(np.array([[0, 10]]), shape=(32, 32), patch_size=8, orientation=1)
    np.testing.assert_array_equal(rotated, [[14, 0]])
    flipped = orient_corners(np.array([[0, 10]]), shape=(32, 48), patch_size=8, orientation=3)
    np.testing.assert_array_equal(flipped, [[24, 30]])
    with pytest.raises(ValueError, match="orientation=4"):
        orient_corners(np.array([[0, 0]]), shape=(8, 8), patch_size=8, orientation=4)


@pytest.mark.parametrize(
    ("corners", "shape", "patch_size", "orientation", "told"),
    [
        # 32x32, K=8: corners lie in [0, 24]; (0, 30) came back rotated as (-6, 0).
        ([[0, 30]], (32, 32), 8, 1, r"corners\[0\]=\[0, 30\] lies outside \[0, 24\] x \[0, 24\]"),
        ([[25, 0]], (32, 48), 8, 2, r"corners\[0\]=\[25, 0\] lies outside \[0, 24\] x \[0, 40\]"),
        # Float corners were truncated: (0.5, 3.7) turned into (20, 0).
        (np.array([[0.5, 3.7]]), (32, 32), 8, 1, r"corners must be an \(N, 2\) integer array, got float64"),
        ([[0, 3]], (32, 32), 8, 1.0, r"orientation=1\.0 must be one of the integers 0, 1, 2, 3"),
        ([[0, 3]], (32, 48), 8, 1.0, r"orientation=1\.0 must be one of the integers 0, 1, 2, 3"),
        ([[0, 3]], (32, 32), 8, True, r"orientation=True must be one of the integers 0, 1, 2, 3"),
        ([[0, 3]], (32, 32), 8, -1, r"orientation=-1 must be one of the integers 0, 1, 2, 3"),
        ([[0, 3]], (32.5, 32), 8, 1, r"shape=\(32\.5, 32\) must be \(H, W\), two positive integers"),
        ([[0, 3]], (32, 32), 0, 1, r"patch_size=0 must be a positive integer"),
    ],
)
def test_orient_corners_refuses_what_patch_union_refuses(
    corners: object, shape: tuple[int, int], patch_size: int, orientation: object, told: str
) -> None:
    with pytest.raises(ValueError, match=told):
        orient_corners(
            np.asarray(corners),
            shape=shape,
            patch_size=patch_size,
            orientation=orientation,  # type: ignore[arg-type]
        )


def test_orient_corners_takes_a_list_and_numpy_integers() -> None:
    # Hand-worked as in test_orient_corners_hand_worked: rows 0..7, cols 10..17 rotate to 14..21, 0..7.
    expected = [[14, 0]]
    np.testing.assert_array_equal(
        orient_corners([[0, 10]], shape=(32, 32), patch_size=8, orientation=1),  # type: ignore[arg-type]
        expected,
    )
    np.testing.assert_array_equal(
        orient_corners(
            np.array([[0, 10]], dtype=np.int32),
            shape=(np.int64(32), 32),
            patch_size=np.int64(8),
            orientation=np.int64(1),
        ),
        expected,
    )


@given(shape=shapes, k=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_kernels_match_python_loops_with_overlapping_pairs(shape: tuple[int, int], k: int, seed: int) -> None:
    # Random pairs that overlap other pairs (the hard case for a swap permutation), never themselves.
    rng = np.random.default_rng(seed)
    corners = np.stack(
        [rng.integers(0, shape[0] - k + 1, size=200), rng.integers(0, shape[1] - k + 1, size=200)], axis=1
    ).reshape(-1, 2, 2)
    apart = (np.abs(corners[:, 0] - corners[:, 1]) >= k).any(axis=1)
    corners = corners[apart][:10].reshape(-1, 2)
    np.testing.assert_array_equal(
        patch_union(corners, shape=shape, patch_size=k), loop_union(corners, shape, k)
    )
    image = rng.normal(size=shape)
    perm = swap_permutation(corners, shape=shape, patch_size=k)
    np.testing.assert_array_equal(np.sort(perm), np.arange(shape[0] * shape[1]))
    np.testing.assert_array_equal(image.reshape(-1)[perm].reshape(shape), loop_swap(image, corners, k))


def test_swap_permutation_rejects_an_odd_count_and_self_overlapping_pairs() -> None:
    with pytest.raises(ValueError, match="even count"):
        swap_permutation(np.zeros((3, 2), np.int64), shape=(8, 8), patch_size=2)
    with pytest.raises(ValueError, match="pair 1 overlaps itself"):
        swap_permutation(np.array([[0, 0], [4, 4], [0, 0], [1, 1]]), shape=(8, 8), patch_size=2)


# -- the kernels index without bounds checks: every public way in checks the corners first -------

# 32 x 40 image, K = 8: corners must lie in [0, 24] x [0, 32]. The second corner of each pair is bad.
_OUTSIDE = [
    ([[0, 0], [25, 16]], r"corners\[1\]=\[25, 16\] lies outside \[0, 24\] x \[0, 32\]"),  # past the bottom
    ([[0, 0], [16, 33]], r"corners\[1\]=\[16, 33\] lies outside \[0, 24\] x \[0, 32\]"),  # past the right
    ([[0, 0], [-4, 16]], r"corners\[1\]=\[-4, 16\] lies outside"),  # would wrap to the other edge
    ([[16, 16], [0, -1]], r"corners\[1\]=\[0, -1\] lies outside"),
]


@pytest.mark.parametrize("function", [patch_union, swap_permutation])
@pytest.mark.parametrize(("corners", "told"), _OUTSIDE)
def test_corners_outside_the_image_are_refused_naming_the_corner(
    function: object, corners: list[list[int]], told: str
) -> None:
    # The patch_union of a patch at row -4 covered nothing and swap_permutation returned a
    # non-permutation: both read and wrote past the image.
    with pytest.raises(
        ValueError, match=told + r".*8x8 patches inside a 32x40 image \(shape=\(32, 40\), patch_size=8\)"
    ):
        function(np.array(corners), shape=(32, 40), patch_size=8)  # type: ignore[operator]


def test_corners_on_the_last_valid_row_and_column_are_kept() -> None:
    corners = np.array([[24, 32], [0, 0]])
    assert int(patch_union(corners, shape=(32, 40), patch_size=8).sum()) == 128
    perm = swap_permutation(corners, shape=(32, 40), patch_size=8)
    np.testing.assert_array_equal(np.sort(perm), np.arange(32 * 40))
    assert not patch_union(np.empty((0, 2)), shape=(32, 40), patch_size=8).any()


@pytest.mark.parametrize(
    ("corners", "shape", "patch_size", "told"),
    [
        (
            np.array([[0.5, 0.0]]),
            (32, 32),
            8,
            r"corners must be an \(N, 2\) integer array, got float64 of shape \(1, 2\)",
        ),
        (
            np.array([0, 0]),
            (32, 32),
            8,
            r"corners must be an \(N, 2\) integer array, got int64 of shape \(2,\)",
        ),
        (np.array([[0, 0]]), (32, 0), 8, r"shape=\(32, 0\) must be \(H, W\), two positive integers"),
        (np.array([[0, 0]]), (32, 32), 0, r"patch_size=0 must be a positive integer"),
        (np.array([[0, 0]]), (32, 32), -8, r"patch_size=-8 must be a positive integer"),
    ],
)
def test_malformed_corners_shapes_and_patch_sizes_are_refused(
    corners: np.ndarray, shape: tuple[int, int], patch_size: int, told: str
) -> None:
    # Float corners were truncated silently; a negative patch size made the kernels do nothing.
    for function in (patch_union, swap_permutation):
        with pytest.raises(ValueError, match=told):
            function(corners, shape=shape, patch_size=patch_size)


def test_a_bank_built_from_corners_outside_the_image_is_refused_naming_the_entry() -> None:
    # Built directly, a bank passed these to the kernels unchecked: swap_patches corrupted the heap.
    inside = np.array([[0, 0], [16, 16]])
    with pytest.raises(
        ValueError,
        match=r"corners\[1\]\[1\]=\[28, 28\] lies outside \[0, 24\] x \[0, 24\], the corners of 8x8 "
        r"patches inside a 32x32 image \(shape=\(32, 32\), patch_size=8\)",
    ):
        MaskBank(shape=(32, 32), patch_size=8, corners=[inside, np.array([[0, 0], [28, 28]])], pairs=True)
    with pytest.raises(ValueError, match=r"corners\[0\] must be an \(N, 2\) integer array"):
        MaskBank(shape=(32, 32), patch_size=8, corners=[np.array([[0.0, 0.0]])], pairs=False)


@pytest.mark.parametrize(
    ("bad", "told"),
    [
        # Three corners: the third patch was masked as corrupted, but no swap moved it.
        (np.array([[0, 0], [0, 8], [0, 16]]), r"corners\[1\] must hold patch pairs \(an even count\), got 3"),
        # Patches at (0, 0) and (4, 4) overlap: swapping them has no well-defined result.
        (
            np.array([[0, 0], [4, 4]]),
            r"corners\[1\]: pair 0 overlaps itself: patches at \[0, 0\] and \[4, 4\]",
        ),
    ],
)
def test_a_pairs_bank_refuses_entries_that_swap_permutation_refuses(bad: np.ndarray, told: str) -> None:
    good = np.array([[0, 0], [16, 16]])
    with pytest.raises(ValueError):
        swap_permutation(bad, shape=(32, 32), patch_size=8)
    with pytest.raises(ValueError, match=told):
        MaskBank(shape=(32, 32), patch_size=8, corners=[good, bad], pairs=True)
    # Without pairs there is nothing to swap: any patches are a valid mask.
    unpaired = MaskBank(shape=(32, 32), patch_size=8, corners=[good, bad], pairs=False)
    np.testing.assert_array_equal(unpaired.masks[1].numpy(), loop_union(bad, (32, 32), 8))


def test_far_out_of_range_corners_are_refused_before_any_kernel_runs() -> None:
    # Such corners made the kernels write far outside their arrays: the process died (a segfault,
    # or "double free or corruption"). In a child process, so a regression fails this test only.
    script = """
import numpy as np, torch
from inpaintssl.corruption import MaskBank, patch_union, swap_permutation
far = np.array([[0, 0], [10_000, 10_000]])
refused = []
for call in (
    lambda: swap_permutation(far, shape=(32, 32), patch_size=8),
    lambda: patch_union(np.array([[-10_000, 0]]), shape=(32, 32), patch_size=8),
    lambda: MaskBank(shape=(32, 32), patch_size=8, corners=[far], pairs=True).swap_patches(
        torch.zeros(1, 1, 32, 32), torch.tensor([0])
    ),
):
    try:
        call()
    except ValueError as error:
        refused.append("lies outside" in str(error))
print(refused)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[True, True, True]"


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("shape", [(48, 48), (40, 64)])
def test_bank_entries_are_oriented_base_masks(name: str, shape: tuple[int, int]) -> None:
    k = 8
    bank = MaskBank.build(sampler=SAMPLERS.build(name), shape=shape, patch_size=k, size=3, seed=1, pairs=True)
    assert len(bank) == 3 * ORIENTATIONS
    assert bank.masks.shape == (len(bank), *shape) and bank.masks.dtype == torch.bool
    assert bank.permutations is not None and bank.permutations.shape == (len(bank), shape[0] * shape[1])
    image = np.random.default_rng(0).normal(size=shape)
    for base in range(3):
        base_corners = bank.corners[base * ORIENTATIONS]
        base_mask = loop_union(base_corners, shape, k)
        assert base_mask.mean() >= 0.25
        for orientation in range(ORIENTATIONS):
            entry = base * ORIENTATIONS + orientation
            np.testing.assert_array_equal(bank.masks[entry].numpy(), orient_image(base_mask, orientation))
            # Oriented swap = orient(swap(unorient(image))), all computed with NumPy loops.
            expected = orient_image(
                loop_swap(unorient_image(image, orientation), base_corners, k), orientation
            )
            index = bank.permutations_for(torch.tensor([entry]))[0].numpy()
            np.testing.assert_array_equal(image.reshape(-1)[index].reshape(shape), expected)


def test_bank_without_pairs_has_no_permutations() -> None:
    bank = MaskBank.build(sampler=PoissonDiscSampler(), shape=(32, 32), patch_size=8, size=2)
    assert bank.permutations is None
    with pytest.raises(ValueError, match="pairs=True"):
        bank.permutations_for(torch.tensor([0]))


def test_bank_is_reproducible_from_its_seed() -> None:
    def build(seed: int) -> MaskBank:
        return MaskBank.build(sampler=PoissonDiscSampler(), shape=(40, 56), patch_size=8, size=4, seed=seed)

    assert torch.equal(build(7).masks, build(7).masks)
    assert not torch.equal(build(7).masks, build(8).masks)


def test_masks_for_indexes_entries() -> None:
    bank = MaskBank.build(sampler=PoissonDiscSampler(), shape=(32, 32), patch_size=4, size=2)
    picked = bank.masks_for(torch.tensor([7, 0, 7]))
    assert torch.equal(picked[0], bank.masks[7]) and torch.equal(picked[1], bank.masks[0])
    with pytest.raises(ValueError, match="1-D int64"):
        bank.masks_for(torch.tensor([[0]]))


@pytest.mark.parametrize("size", [0, -1, 2.5, True, 3.0, None, "3"])
def test_bank_size_is_validated(size: object) -> None:
    # 3.0 and None failed in range() or int() with a TypeError naming no argument.
    with pytest.raises(ValueError, match=rf"size={re.escape(repr(size))} must be a positive integer"):
        MaskBank.build(sampler=PoissonDiscSampler(), shape=(32, 32), patch_size=4, size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(32.7, 40), 32, (32, 32, 1), (0, 40), None])
def test_bank_build_shape_is_validated(shape: object) -> None:
    # (32.7, 40) built a 32x40 bank silently (the constructor refuses that shape); 32 and (32, 32, 1)
    # failed in an unpacking with a message naming no argument.
    with pytest.raises(ValueError, match=rf"shape={re.escape(repr(shape))} must be \(H, W\), two positive"):
        MaskBank.build(sampler=PoissonDiscSampler(), shape=shape, patch_size=4, size=1)  # type: ignore[arg-type]


def test_bank_build_takes_whole_numbers_of_any_type() -> None:
    bank = MaskBank.build(
        sampler=PoissonDiscSampler(),
        shape=(np.int64(32), 40.0),  # type: ignore[arg-type]
        patch_size=np.int64(4),
        size=np.int64(2),
    )
    assert bank.shape == (32, 40) and bank.patch_size == 4 and len(bank) == 2 * ORIENTATIONS


class _OutOfBounds:
    def sample(self, **_: object) -> np.ndarray:
        return np.array([[0, 0], [30, 30]], dtype=np.int64)


def test_bank_rejects_corners_outside_the_image_from_a_plugin_sampler() -> None:
    with pytest.raises(ValueError, match=r"outside \[0, 24\] x \[0, 24\]"):
        MaskBank.build(sampler=_OutOfBounds(), shape=(32, 32), patch_size=8, size=1)  # type: ignore[arg-type]


class _TooFew:
    """A sampler that ignores the coverage: one patch, or none."""

    def __init__(self, count: int) -> None:
        self.count = count

    def sample(self, **_: object) -> np.ndarray:
        return np.array([[0, 0]] * self.count, dtype=np.int64).reshape(-1, 2)


@pytest.mark.parametrize(("count", "covered"), [(0, 0), (1, 64), (3, 64)])
def test_a_sampler_that_falls_short_of_the_coverage_is_refused_naming_it(count: int, covered: int) -> None:
    # 32 x 32 at coverage 1/4 needs 256 pixels; stacked 8 x 8 patches cover 64 however many.
    with pytest.raises(
        ValueError,
        match=rf"sampler ([\w.]+\.)?_TooFew returned {count} patches covering {covered} of "
        r"the 1024 pixels .*coverage=0\.25 of the image \(256 pixels\)",
    ):
        MaskBank.build(sampler=_TooFew(count), shape=(32, 32), patch_size=8, coverage=0.25, size=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_compiled_swap_equals_the_permutation_gather(
    name: str, dtype: torch.dtype, channels_last: bool
) -> None:
    shape = (40, 56)
    bank = MaskBank.build(sampler=SAMPLERS.build(name), shape=shape, patch_size=4, size=3, seed=2, pairs=True)
    images = torch.randn(6, 3, *shape).to(dtype)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    choice = torch.tensor([0, 3, 5, 7, 11, 3])
    index = bank.permutations_for(choice)[:, None, :].expand(6, 3, -1)
    expected = torch.gather(images.reshape(6, 3, -1), 2, index).reshape(images.shape)
    before = images.clone()
    swapped = bank.swap_patches(images, choice)
    assert torch.equal(swapped, expected)
    assert torch.equal(images, before)
    assert swapped.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_compiled_swap_validates_its_inputs() -> None:
    bank = MaskBank.build(sampler=PoissonDiscSampler(), shape=(32, 32), patch_size=4, size=1, pairs=True)
    with pytest.raises(ValueError, match=r"CPU tensor \(N, C, 32, 32\), got \(1, 1, 16, 32\)"):
        bank.swap_patches(torch.zeros(1, 1, 16, 32), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"choice must hold 1 entries in \[0, 4\)"):
        bank.swap_patches(torch.zeros(1, 1, 32, 32), torch.tensor([4]))
    unpaired = MaskBank.build(sampler=PoissonDiscSampler(), shape=(32, 32), patch_size=4, size=1)
    with pytest.raises(ValueError, match="no pairs to swap"):
        unpaired.swap_patches(torch.zeros(1, 1, 32, 32), torch.tensor([0]))


def test_bank_moves_to_a_device_with_the_same_entries() -> None:
    bank = MaskBank.build(sampler=PoissonDiscSampler(), shape=(32, 48), patch_size=8, size=2, pairs=True)
    moved = bank.to("cpu")
    assert moved.corners == bank.corners and torch.equal(moved.masks, bank.masks)
    assert "entries=8" in repr(moved)
    with pytest.raises(ValueError, match="at least one entry"):
        MaskBank(shape=(8, 8), patch_size=2, corners=[], pairs=False)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_bank_entry_moves_at_least_the_coverage(name: str) -> None:
    # Random pairs may overlap earlier pairs and carry pixels back: on 16 x 16 with K = 4, about 1
    # layout in 300 moves fewer than 64 pixels although its union covers 64 (3 of the 2000 drawn
    # here for the random sampler, without the redraw). The bank redraws them.
    bank = MaskBank.build(sampler=SAMPLERS.build(name), shape=(16, 16), patch_size=4, size=2000, pairs=True)
    permutations = bank.permutations
    assert permutations is not None
    moved = (permutations != torch.arange(256, dtype=torch.int32)).sum(dim=1)
    assert int(moved.min()) >= 64


@pytest.mark.parametrize("pairs", [False, True])
@pytest.mark.parametrize("name", SAMPLERS.names())
def test_building_a_bank_reads_no_plugin_metadata_unless_it_reports_an_error(
    name: str, pairs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Naming a sampler in a message reads every installed distribution's entry points (about 5 ms
    # here); it was done for each draw, which made a bank of 2,000 pairs take 11.5 s instead of 0.7.
    calls: list[object] = []

    def counted(sampler: object) -> str:
        calls.append(sampler)
        return "named"

    monkeypatch.setattr(masks_module, "describe_sampler", counted)
    bank = MaskBank.build(sampler=SAMPLERS.build(name), shape=(16, 16), patch_size=4, size=20, pairs=pairs)
    assert len(bank) == 80 and calls == []
    with pytest.raises(ValueError, match="sampler named returned invalid pairs"):
        MaskBank.build(sampler=_Overlapping(), shape=(16, 16), patch_size=4, size=1, pairs=True)  # type: ignore[arg-type]
    assert len(calls) == 1


class _Overlapping:
    """A sampler whose one pair overlaps itself."""

    def sample(self, **_: object) -> np.ndarray:
        return np.array([[0, 0], [1, 1]], dtype=np.int64)


class _SwapsBack:
    """A sampler whose second pair undoes its first: nothing moves."""

    def sample(self, **_: object) -> np.ndarray:
        return np.array([[0, 0], [8, 8], [0, 0], [8, 8]], dtype=np.int64)


def test_a_sampler_whose_pairs_move_nothing_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"21 pair layouts in a row .* moved fewer than 64 pixels"):
        MaskBank.build(sampler=_SwapsBack(), shape=(16, 16), patch_size=4, size=1, pairs=True)  # type: ignore[arg-type]
