"""Invariants every registered loss keeps (plugins included)."""

from __future__ import annotations

import re

import pytest
import torch

from inpaintssl.losses import SegmentationLoss
from inpaintssl.registry import LOSSES, PluginLoadError

NUM_CLASSES = 3


def _is_segmentation_loss(name: str) -> bool:
    """Whether loss ``name`` is a :class:`SegmentationLoss`, told from its factory without building it.

    Nothing is built at collection, so one plugin loss with required parameters (or a broken one)
    fails its own tests instead of the collection of this whole module. A factory function cannot
    be told apart without calling it; it is checked as a segmentation loss, whose test then says
    whether the loss it builds is one.
    """
    try:
        factory = LOSSES.get(name)
    except PluginLoadError:
        return True  # listed, so that the import error fails a test of its own
    return not isinstance(factory, type) or issubclass(factory, SegmentationLoss)


SEGMENTATION_LOSSES = [n for n in LOSSES.names() if _is_segmentation_loss(n)]


def inputs_for(loss: torch.nn.Module, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if isinstance(loss, SegmentationLoss):
        labels = torch.randint(0, NUM_CLASSES + 1, (2, 8, 8), generator=generator)
        target = torch.stack([labels == c + 1 for c in range(NUM_CLASSES)], dim=1).float()
        logits = torch.randn(2, loss.out_channels(NUM_CLASSES), 8, 8, generator=generator)
        return logits, target
    return torch.randn(2, 1, 8, 8, generator=generator), torch.randn(2, 1, 8, 8, generator=generator)


def test_builtin_names_are_registered() -> None:
    assert {"l2", "dice"} <= set(LOSSES.names())


@pytest.mark.parametrize("name", LOSSES.names())
def test_scalar_finite_non_negative_and_differentiable(name: str) -> None:
    loss = LOSSES.build(name)
    pred, target = inputs_for(loss)
    pred.requires_grad_(True)
    value = loss(pred, target)
    assert value.ndim == 0 and torch.isfinite(value) and value >= 0
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES.names())
def test_a_perfect_prediction_scores_better_than_a_random_one(name: str) -> None:
    loss = LOSSES.build(name)
    pred, target = inputs_for(loss)
    if isinstance(loss, SegmentationLoss):
        background = 1 - target.sum(dim=1, keepdim=True)
        layout = target if loss.activation == "sigmoid" else torch.cat((background, target), dim=1)
        perfect = 30.0 * (layout - 0.5)
        assert torch.equal(loss.predict_onehot(perfect), target)
    else:
        perfect = target.clone()
    assert float(loss(perfect, target)) < float(loss(pred, target))
    assert float(loss(perfect, target)) < 1e-3


def test_dice_is_a_segmentation_loss_and_l2_is_not() -> None:
    assert "dice" in SEGMENTATION_LOSSES and "l2" not in SEGMENTATION_LOSSES


@pytest.mark.parametrize("name", SEGMENTATION_LOSSES)
def test_segmentation_losses_expose_the_trainer_interface(name: str) -> None:
    loss = LOSSES.build(name)
    if not isinstance(loss, SegmentationLoss):
        pytest.skip(f"{name!r} is built by a factory function, and builds an inpainting loss")
    assert loss.activation in ("sigmoid", "softmax")
    assert loss.out_channels(NUM_CLASSES) in (NUM_CLASSES, NUM_CLASSES + 1)
    logits, _ = inputs_for(loss)
    onehot = loss.predict_onehot(logits)
    assert onehot.shape == (2, NUM_CLASSES, 8, 8) and onehot.dtype == torch.float32
    assert set(onehot.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", LOSSES.names())
def test_an_unknown_parameter_is_refused_by_name(name: str) -> None:
    # The registry binds parameters to the factory's signature first, so the message names the
    # loss and the culprit; a loss whose signature is nn.Module's (*args, **kwargs) would instead
    # reach the constructor and fail with a bare TypeError naming neither.
    expected = rf"^losses '{re.escape(name)}': invalid parameters \['no_such_parameter'\] \(it accepts "
    with pytest.raises(TypeError, match=expected):
        LOSSES.build(name, no_such_parameter=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", LOSSES.names())
def test_cuda_half_precision_matches_cpu_float32(name: str) -> None:
    loss = LOSSES.build(name)
    pred, target = inputs_for(loss)
    expected = loss(pred, target)
    got = loss(pred.cuda().half(), target.cuda().half())
    assert got.device.type == "cuda" and got.dtype == torch.float32
    assert float(got) == pytest.approx(float(expected), rel=1e-2, abs=1e-3)
