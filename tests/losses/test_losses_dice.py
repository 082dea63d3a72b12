"""Eq. (A2): batch-aggregate Dice, and the sigmoid / softmax output layouts, against NumPy."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.losses import DiceLoss, SegmentationLoss, dice_loss
from inpaintssl.registry import LOSSES


def numpy_a2(x: np.ndarray, y: np.ndarray, eps: float) -> float:
    """(1/C) sum_c [1 - (2 sum_{n,h,w} XY + eps) / (sum_{n,h,w} (X + Y) + eps)], loop by loop."""
    n_channels = x.shape[1]
    total = 0.0
    for c in range(n_channels):
        inter = float((x[:, c] * y[:, c]).sum())
        denom = float((x[:, c] + y[:, c]).sum())
        total += 1.0 - (2.0 * inter + eps) / (denom + eps)
    return total / n_channels


def numpy_sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def numpy_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_onehot(
    rng: np.random.Generator, n: int, k: int, h: int, w: int, empty: int | None = None
) -> np.ndarray:
    """One-hot over K foreground classes with background pixels; class ``empty`` never occurs."""
    labels = rng.integers(0, k + 1, size=(n, h, w))  # 0 = background
    if empty is not None:
        labels[labels == empty + 1] = 0
    return np.stack([(labels == c + 1) for c in range(k)], axis=1).astype(np.float64)


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
    eps=st.sampled_from([1e-7, 1e-3, 1.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_equation_a2(shape: tuple[int, int, int, int], eps: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.uniform(size=shape)
    target = (rng.uniform(size=shape) > 0.6).astype(np.float64)
    got = dice_loss(torch.from_numpy(probs), torch.from_numpy(target), eps=eps)
    assert float(got) == pytest.approx(numpy_a2(probs, target, eps), rel=1e-10, abs=1e-12)


def test_aggregates_over_the_batch_not_per_image() -> None:
    # Class present only in image 0; image 1 predicts nothing and has nothing. Batch-aggregate
    # Dice sees one perfect class; a per-image mean would be dragged towards the eps-only term.
    target = torch.zeros(2, 1, 2, 2)
    target[0, 0, 0, 0] = 1.0
    assert float(dice_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)


def test_empty_classes_follow_the_epsilon_rule() -> None:
    target = torch.zeros(1, 3, 2, 2)
    probs = torch.zeros(1, 3, 2, 2)
    target[0, 0] = 1.0
    probs[0, 0] = 1.0  # class 0 perfect
    probs[0, 2, 0, 0] = 0.5  # class 2: absent but predicted
    eps = 1e-7
    expected = (0.0 + 0.0 + (1 - eps / (0.5 + eps))) / 3  # class 1: absent, unpredicted -> eps/eps
    assert float(dice_loss(probs, target, eps=eps)) == pytest.approx(expected, rel=1e-6)
    assert float(dice_loss(torch.zeros(2, 2, 3, 3), torch.zeros(2, 2, 3, 3))) == 0.0


def test_eps_zero_scores_a_class_absent_from_both_sides_as_a_match() -> None:
    # eps = 0 is documented as valid; the absent class was 0/0 and the whole loss NaN.
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0] = 1.0
    probs = torch.zeros(1, 2, 2, 2)
    probs[0, 0] = 0.5
    # class 0: 1 - 2 * 2 / (2 + 4) = 1/3; class 1: absent from both, a match: 0.
    assert float(dice_loss(probs, target, eps=0.0)) == pytest.approx(1 / 6, rel=1e-6)
    assert float(dice_loss(target.clone(), target, eps=0)) == 0.0
    confident = torch.where(target.bool(), 200.0, -200.0)  # sigmoid exactly 1 and 0 in float32
    assert float(DiceLoss(eps=0.0)(confident, target)) == 0.0


def test_eps_zero_gives_a_finite_gradient_that_ignores_the_absent_class() -> None:
    target = torch.zeros(2, 2, 3, 3, dtype=torch.float64)
    target[:, 0, :2] = 1.0
    probs = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    probs[:, 1] = 0.0  # class 1 absent from prediction and target
    probs.requires_grad_(True)
    dice_loss(probs, target, eps=0.0).backward()
    assert probs.grad is not None and torch.isfinite(probs.grad).all()
    # The mean over two classes, one of them constant: half the gradient of class 0 alone.
    alone = probs.detach()[:, :1].clone().requires_grad_(True)
    dice_loss(alone, target[:, :1], eps=0.0).backward()
    assert alone.grad is not None
    torch.testing.assert_close(probs.grad[:, :1], alone.grad / 2, rtol=1e-12, atol=0)
    assert not probs.grad[:, 1].any()


@pytest.mark.parametrize(
    ("eps", "error", "told"),
    [
        (float("nan"), ValueError, r"eps=nan is invalid; expected a finite number >= 0"),
        (float("inf"), ValueError, r"eps=inf is invalid; expected a finite number >= 0"),
        (-1e-9, ValueError, r"eps=-1e-09 is invalid; expected a finite number >= 0"),
        ("1e-7", TypeError, r"eps='1e-7' is invalid; expected a finite number >= 0, got str"),
        (None, TypeError, r"eps=None is invalid; expected a finite number >= 0, got NoneType"),
        (True, TypeError, r"eps=True is invalid; expected a finite number >= 0, got bool"),
    ],
)
def test_eps_must_be_a_finite_number_at_least_zero(eps: object, error: type[Exception], told: str) -> None:
    # NaN was accepted (every loss NaN); a string failed in a bare comparison naming nothing.
    with pytest.raises(error, match=told):
        DiceLoss(eps=eps)  # type: ignore[arg-type]
    with pytest.raises(error, match=told):
        LOSSES.build("dice", eps=eps)
    with pytest.raises(error, match=told):
        dice_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), eps=eps)  # type: ignore[arg-type]


def test_eps_takes_any_real_number_type() -> None:
    assert DiceLoss(eps=np.float32(0.5)).eps == 0.5
    assert DiceLoss(eps=0).eps == 0.0


def test_hand_worked_value_with_large_eps() -> None:
    probs = torch.tensor([[[[0.5, 0.5]]]])  # (1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    # 1 - (2 * 0.5 + 1) / (1 + 1 + 1) = 1/3
    assert float(dice_loss(probs, target, eps=1.0)) == pytest.approx(1 / 3)


def test_gradcheck_functional_float64() -> None:
    probs = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(2, 3, 4, 4) > 0.5).double()
    target[:, 1] = 0  # an empty class too
    assert torch.autograd.gradcheck(lambda p: dice_loss(p, target), (probs,))


@pytest.mark.parametrize(
    ("activation", "include_background"), [("sigmoid", False), ("softmax", False), ("softmax", True)]
)
def test_gradcheck_module_float64(activation: str, include_background: bool) -> None:
    loss = DiceLoss(activation=activation, include_background=include_background, eps=1e-3)  # type: ignore[arg-type]
    k = 3
    logits = torch.randn(2, loss.out_channels(k), 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.from_numpy(random_onehot(np.random.default_rng(0), 2, k, 3, 3))
    assert torch.autograd.gradcheck(lambda z: loss(z, target), (logits,))


@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 4))
def test_sigmoid_dice_equals_a2_on_numpy_sigmoid(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(2, k, 4, 5))
    target = random_onehot(rng, 2, k, 4, 5, empty=0)
    got = LOSSES.build("dice")(torch.from_numpy(logits), torch.from_numpy(target))
    assert float(got) == pytest.approx(numpy_a2(numpy_sigmoid(logits), target, 1e-7), rel=1e-9, abs=1e-12)


@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 4), include_background=st.booleans())
def test_softmax_dice_equals_a2_on_numpy_softmax(seed: int, k: int, include_background: bool) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(2, k + 1, 4, 5))
    target = random_onehot(rng, 2, k, 4, 5)
    probs = numpy_softmax(logits)
    if include_background:
        full_target = np.concatenate([1.0 - target.sum(axis=1, keepdims=True), target], axis=1)
        expected = numpy_a2(probs, full_target, 1e-7)
    else:
        expected = numpy_a2(probs[:, 1:], target, 1e-7)
    loss = LOSSES.build("dice", activation="softmax", include_background=include_background)
    got = loss(torch.from_numpy(logits), torch.from_numpy(target))
    assert float(got) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("activation", "k", "expected"), [("sigmoid", 4, 4), ("softmax", 4, 5), ("softmax", 1, 2)]
)
def test_out_channels(activation: str, k: int, expected: int) -> None:
    loss = LOSSES.build("dice", activation=activation)
    assert loss.out_channels(k) == expected and loss.activation == activation


def test_predict_onehot_sigmoid_thresholds_each_class_at_one_half() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    got = LOSSES.build("dice").predict_onehot(torch.from_numpy(logits))
    expected = (numpy_sigmoid(logits.astype(np.float64)) > 0.5).astype(np.float32)
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), expected)


def test_predict_onehot_softmax_takes_the_argmax_and_drops_background() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    winner = logits.argmax(axis=1)
    expected = np.stack([(winner == c) for c in range(1, 4)], axis=1).astype(np.float32)
    got = LOSSES.build("dice", activation="softmax").predict_onehot(torch.from_numpy(logits))
    np.testing.assert_array_equal(got.numpy(), expected)
    assert set(np.unique(got.numpy().sum(axis=1))) <= {0.0, 1.0}


def test_shape_errors_name_both_shapes() -> None:
    loss = LOSSES.build("dice", activation="softmax")
    with pytest.raises(ValueError, match=r"logits have 3 channels.*K=3.*needs 4"):
        loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(1, 4, 4, 4\).*\(2, 3, 4, 4\)"):
        loss(torch.zeros(1, 4, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"probs and target_onehot must have the same shape"):
        dice_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, 3))


def test_invalid_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="include_background=True needs activation='softmax'"):
        DiceLoss(include_background=True)
    with pytest.raises(ValueError, match="activation='relu'"):
        DiceLoss(activation="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps=-1"):
        DiceLoss(eps=-1)
    with pytest.raises(ValueError, match="num_classes=0"):
        DiceLoss().out_channels(0)


SEGMENTATION_LOSSES = [n for n in LOSSES.names() if issubclass(LOSSES.get(n), SegmentationLoss)]


@pytest.mark.parametrize("name", SEGMENTATION_LOSSES)
@pytest.mark.parametrize("value", ["false", "no", 0.5, 1, None])
def test_include_background_other_than_true_or_false_is_refused(name: str, value: object) -> None:
    # A quoted "false" in a config file is a string, and a string is true: it scored the
    # background channel, a different objective, without a word.
    expected = rf"include_background={re.escape(repr(value))} is invalid; expected True or False"
    with pytest.raises(TypeError, match=expected):
        LOSSES.build(name, activation="softmax", include_background=value)
    assert (
        LOSSES.build(name, activation="softmax", include_background=np.bool_(True)).include_background is True
    )


def test_segmentation_loss_is_the_plugin_base_class() -> None:
    assert isinstance(LOSSES.build("dice"), SegmentationLoss)
    with pytest.raises(TypeError):
        SegmentationLoss()  # type: ignore[abstract]
