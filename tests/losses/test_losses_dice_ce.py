"""The optional Dice + cross-entropy loss, against NumPy cross-entropies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.losses import DiceCELoss, dice_loss
from inpaintssl.losses.dice_ce import categorical_cross_entropy
from inpaintssl.registry import LOSSES


def onehot_and_labels(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, k + 1, size=(2, 4, 4))
    return np.stack([(labels == c + 1) for c in range(k)], axis=1).astype(np.float64), labels


def test_sigmoid_variant_adds_weighted_binary_cross_entropy() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 4))
    target, _ = onehot_and_labels(rng, 3)
    p = 1 / (1 + np.exp(-logits))
    bce = float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))
    dice = float(dice_loss(torch.from_numpy(p), torch.from_numpy(target)))
    got = LOSSES.build("dice_ce", ce_weight=0.5)(torch.from_numpy(logits), torch.from_numpy(target))
    assert float(got) == pytest.approx(dice + 0.5 * bce, rel=1e-9)


def test_softmax_variant_adds_categorical_cross_entropy_with_background_class_zero() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 4, 4))
    target, labels = onehot_and_labels(rng, 3)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    ce = float(-np.take_along_axis(log_p, labels[:, None], axis=1).mean())
    dice = float(dice_loss(torch.from_numpy(np.exp(log_p)[:, 1:]), torch.from_numpy(target)))
    got = DiceCELoss(activation="softmax")(torch.from_numpy(logits), torch.from_numpy(target))
    assert float(got) == pytest.approx(dice + ce, rel=1e-9)


def test_gradcheck_float64() -> None:
    rng = np.random.default_rng(2)
    target, _ = onehot_and_labels(rng, 2)
    for activation in ("sigmoid", "softmax"):
        loss = DiceCELoss(activation=activation, eps=1e-3)  # type: ignore[arg-type]
        logits = torch.randn(2, loss.out_channels(2), 4, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda z, loss=loss: loss(z, torch.from_numpy(target)), (logits,))


@pytest.mark.parametrize(
    ("options", "error", "told"),
    [
        ({"ce_weight": float("nan")}, ValueError, r"ce_weight=nan is invalid; expected a finite number >= 0"),
        ({"ce_weight": float("inf")}, ValueError, r"ce_weight=inf is invalid; expected a finite number >= 0"),
        ({"ce_weight": "1"}, TypeError, r"ce_weight='1' is invalid; expected a finite number >= 0, got str"),
        ({"eps": float("nan")}, ValueError, r"eps=nan is invalid; expected a finite number >= 0"),
        ({"eps": "1e-7"}, TypeError, r"eps='1e-7' is invalid; expected a finite number >= 0, got str"),
    ],
)
def test_options_must_be_finite_numbers_at_least_zero(
    options: dict[str, object], error: type[Exception], told: str
) -> None:
    # NaN and infinity were accepted (every loss NaN or infinite); a string failed in a bare comparison.
    with pytest.raises(error, match=told):
        LOSSES.build("dice_ce", **options)


def test_eps_zero_with_a_class_absent_from_both_sides_is_finite() -> None:
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0] = 1.0
    logits = torch.where(target.bool(), 200.0, -200.0)  # sigmoid exactly 1 and 0 in float32
    assert float(DiceCELoss(eps=0.0, ce_weight=0.0)(logits, target)) == 0.0


def test_negative_ce_weight_is_rejected() -> None:
    with pytest.raises(ValueError, match="ce_weight=-1"):
        DiceCELoss(ce_weight=-1)


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), classes=st.integers(2, 6), scale=st.floats(0.1, 30.0))
def test_elementwise_cross_entropy_is_pytorchs_in_value_and_gradient(
    seed: int, classes: int, scale: float
) -> None:
    # The form run.deterministic uses on CUDA, checked against F.cross_entropy on the CPU: logits
    # up to +-30 * a few sigma, so log-softmax's cancellation is exercised, not only its easy middle.
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(3, classes, 5, 4, generator=generator, dtype=torch.float64)
    index = torch.randint(0, classes, (3, 5, 4), generator=generator)
    values, grads = [], []
    for elementwise in (False, True):
        z = logits.clone().requires_grad_(True)
        loss = categorical_cross_entropy(z, index, elementwise=elementwise)
        (grad,) = torch.autograd.grad(loss, z)
        values.append(float(loss.detach()))
        grads.append(grad)
    assert values[1] == pytest.approx(values[0], rel=1e-12, abs=1e-12)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-14)


def test_elementwise_cross_entropy_of_a_minus_infinite_logit_off_the_target() -> None:
    # A class masked with -inf (a plugin head), or a float16 logit overflowing below -65504, adds
    # nothing to the loss; log-softmax times a one-hot mask made it -inf * 0 = NaN, which stopped
    # the run as non-finite. Checked by hand: -log softmax of the target's logit.
    logits = torch.tensor([[[[2.0, 1.0]], [[-math.inf, 0.5]], [[0.0, -3.0]]]], dtype=torch.float64)
    index = torch.tensor([[[0, 2]]])
    first = -(2.0 - math.log(math.exp(2.0) + math.exp(0.0)))
    second = -(-3.0 - math.log(math.exp(1.0) + math.exp(0.5) + math.exp(-3.0)))
    for elementwise in (False, True):
        z = logits.clone().requires_grad_(True)
        loss = categorical_cross_entropy(z, index, elementwise=elementwise)
        assert float(loss.detach()) == pytest.approx((first + second) / 2, rel=1e-12)
        (grad,) = torch.autograd.grad(loss, z)
        assert bool(torch.isfinite(grad).all()) and float(grad[0, 1, 0, 0]) == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_softmax_variant_trains_under_deterministic_algorithms_on_cuda() -> None:
    # run.deterministic turns on use_deterministic_algorithms, under which CUDA's NLL loss raises.
    rng = np.random.default_rng(3)
    target, _ = onehot_and_labels(rng, 3)
    logits = torch.from_numpy(rng.normal(size=(2, 4, 4, 4))).float()
    loss = DiceCELoss(activation="softmax")
    expected = loss(logits, torch.from_numpy(target).float())
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        z = logits.cuda().requires_grad_(True)
        got = loss(z, torch.from_numpy(target).float().cuda())
        (grad,) = torch.autograd.grad(got, z)
    finally:
        torch.use_deterministic_algorithms(before)
    assert float(got.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert torch.isfinite(grad).all()
