"""The optional Dice + cross-entropy loss, against NumPy cross-entropies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaintssl.losses import DiceCELoss, dice_loss
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


def test_negative_ce_weight_is_rejected() -> None:
    with pytest.raises(ValueError, match="ce_weight=-1"):
        DiceCELoss(ce_weight=-1)
