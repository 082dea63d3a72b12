"""Dice per class / per image against hand counts and an independent set-based formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis.extra.numpy import arrays

from inpaintssl.metrics import dice_per_class, dice_per_image


def _set_dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice as 2TP / (2TP + FP + FN) on sets of flat indices (independent of the implementation)."""
    p = set(np.flatnonzero(pred).tolist())
    t = set(np.flatnonzero(target).tolist())
    tp, fp, fn = len(p & t), len(p - t), len(t - p)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def test_hand_counted_two_classes() -> None:
    pred = np.zeros((2, 4, 4), dtype=np.uint8)
    target = np.zeros((2, 4, 4), dtype=np.uint8)
    pred[0, 0, :3] = 1  # 3 pixels
    target[0, 0, 1:] = 1  # 3 pixels, 2 shared -> 2*2 / 6
    pred[1, 3, 3] = 1  # 1 pixel, target class 1 has 4, none shared -> 0
    target[1, :2, :2] = 1
    np.testing.assert_allclose(dice_per_class(pred, target), [4 / 6, 0.0])


def test_empty_in_both_scores_one_by_default_or_the_chosen_value() -> None:
    pred = np.zeros((2, 3, 3), dtype=bool)
    target = np.zeros((2, 3, 3), dtype=bool)
    pred[0, 1, 1] = target[0, 1, 1] = True
    target[1, 0, 0] = True
    pred[1, 2, 2] = True
    np.testing.assert_array_equal(dice_per_class(pred, target), [1.0, 0.0])
    pred[1] = target[1] = False  # class 1 now absent from both
    np.testing.assert_array_equal(dice_per_class(pred, target), [1.0, 1.0])
    scores = dice_per_class(pred, target, empty_score=float("nan"))
    assert scores[0] == 1.0
    assert np.isnan(scores[1])


def test_present_in_only_one_mask_scores_zero() -> None:
    pred = np.zeros((1, 3, 3), dtype=bool)
    target = pred.copy()
    target[0, 0, 0] = True
    assert dice_per_class(pred, target)[0] == 0.0
    assert dice_per_class(target, pred)[0] == 0.0


@given(
    arrays(np.bool_, (3, 2, 5, 4)),
    arrays(np.bool_, (3, 2, 5, 4)),
)
def test_per_image_matches_set_formula(pred: np.ndarray, target: np.ndarray) -> None:
    got = dice_per_image(pred, target)
    expected = np.array([[_set_dice(pred[n, k], target[n, k]) for k in range(2)] for n in range(3)])
    np.testing.assert_allclose(got, expected)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(dice_per_image(target, pred), got)  # symmetric


@given(arrays(np.bool_, (2, 3, 4, 5)))
def test_identical_volumes_score_one(mask: np.ndarray) -> None:
    np.testing.assert_array_equal(dice_per_class(mask, mask), [1.0, 1.0])
    scores = dice_per_class(mask, mask, empty_score=-1.0)
    present = mask.reshape(2, -1).any(axis=1)
    np.testing.assert_array_equal(scores, np.where(present, 1.0, -1.0))


def test_per_class_equals_per_image_rows() -> None:
    rng = np.random.default_rng(0)
    pred = rng.random((4, 3, 8, 8)) > 0.5
    target = rng.random((4, 3, 8, 8)) > 0.5
    per_image = dice_per_image(pred, target)
    for n in range(4):
        np.testing.assert_array_equal(dice_per_class(pred[n], target[n]), per_image[n])


def test_float_tensors_give_numpy() -> None:
    rng = np.random.default_rng(1)
    pred = (rng.random((2, 3, 6, 6)) > 0.5).astype(np.float32)
    target = (rng.random((2, 3, 6, 6)) > 0.5).astype(np.float32)
    got = dice_per_image(torch.from_numpy(pred), torch.from_numpy(target))
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, dice_per_image(pred, target))


def test_shape_mismatch_names_both_arguments() -> None:
    with pytest.raises(ValueError, match=r"pred_onehot\.shape=\(2, 4, 4\).*target_onehot\.shape=\(3, 4, 4\)"):
        dice_per_class(np.zeros((2, 4, 4)), np.zeros((3, 4, 4)))


def test_probabilities_are_refused() -> None:
    with pytest.raises(ValueError, match=r"pred must be a binary mask.*0\.7"):
        dice_per_image(np.full((1, 1, 2, 2), 0.7), np.ones((1, 1, 2, 2)))


def test_per_image_needs_batch_and_class_axes() -> None:
    with pytest.raises(ValueError, match=r"\(N, K, \.\.\.\)"):
        dice_per_image(np.ones(4), np.ones(4))


def test_a_flattened_mask_is_refused_not_scored_per_pixel() -> None:
    # One class's mask raveled: 2 pixels predicted, 1 true, 1 shared; its Dice is 2*1/(2+1).
    pred = np.array([1, 1, 0, 0], dtype=bool)
    target = np.array([1, 0, 0, 0], dtype=bool)
    np.testing.assert_allclose(dice_per_class(pred[None], target[None]), [2 / 3])
    with pytest.raises(ValueError, match=r"pred_onehot.*\(K, \.\.\.\).*found \(4,\).*mask\[None\]"):
        dice_per_class(pred, target)
    with pytest.raises(ValueError, match=r"axis of voxels; found \(1, 4\)"):
        dice_per_image(pred[None], target[None])


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (2, 0, 8, 8), (0, 0, 4)])
def test_an_empty_batch_or_no_classes_gives_an_empty_table(shape: tuple[int, ...]) -> None:
    got = dice_per_image(np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool))
    assert got.shape == shape[:2] and got.dtype == np.float64


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_match_cpu() -> None:
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand((2, 3, 16, 16), generator=gen) > 0.5
    target = torch.rand((2, 3, 16, 16), generator=gen) > 0.5
    got = dice_per_image(pred.cuda(), target.cuda())
    np.testing.assert_array_equal(got, dice_per_image(pred.numpy(), target.numpy()))
