"""The evaluation passes give the network back in its own modes, and refuse counts of the wrong type."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.registry import BACKBONES
from inpaintssl.training.components import build_segmentation_loss
from inpaintssl.training.evaluation import (
    check_batch_size,
    check_num_workers,
    evaluate_inpainting,
    evaluate_segmentation,
)

CPU = torch.device("cpu")


def _network(out_channels: int) -> nn.Module:
    module = BACKBONES.build(
        "unet2d", in_channels=1, out_channels=out_channels, depth=2, base_width=4, seed=0
    )
    module.train()
    module.decoder.eval()  # a part the caller keeps in eval mode on purpose (frozen statistics)
    return module


def _modes(module: nn.Module) -> dict[str, bool]:
    return {name: sub.training for name, sub in module.named_modules()}


def _score(module: nn.Module) -> Any:
    test = SyntheticShapes(split="test", num_images=8, num_test=4, size=(16, 16))
    predictor = build_segmentation_loss("dice", {"activation": "sigmoid"})
    return evaluate_segmentation(
        module, test, predict_onehot=predictor.predict_onehot, class_names=test.class_names, device=CPU
    )


def test_segmentation_scoring_gives_back_each_submodules_training_flag() -> None:
    # It left the network in eval mode: a loop scoring between epochs trained on with dropout off.
    module = _network(2)
    before = _modes(module)
    assert before[""] and not before["decoder"]
    assert len(_score(module)) == 4
    assert _modes(module) == before
    # A network whose output does not fit the classes fails inside the pass: still given back.
    wrong = _network(3)
    with pytest.raises(ValueError, match="the model's output channels do not fit"):
        _score(wrong)
    assert _modes(wrong) == before


def test_inpainting_scoring_gives_back_each_submodules_training_flag() -> None:
    module = _network(1)
    before = _modes(module)
    val = SyntheticShapes(split="val", num_images=8, num_val=4, size=(16, 16))
    table = evaluate_inpainting(module, val, corrupt=lambda clean, keys: torch.zeros_like(clean), device=CPU)
    assert len(table) == 4
    assert _modes(module) == before

    def fail(clean: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("corruption failed")

    with pytest.raises(RuntimeError, match="corruption failed"):
        evaluate_inpainting(module, val, corrupt=fail, device=CPU)
    assert _modes(module) == before


@pytest.mark.parametrize("value", ["4", True, 2.0, None])
def test_a_batch_size_that_is_no_integer_is_refused_naming_it(value: object) -> None:
    # "4" failed as "'<' not supported between instances of 'str' and 'int'"; True ran batches of 1.
    with pytest.raises(
        TypeError, match=rf"^batch_size={value!r}: expected a positive integer; found {type(value).__name__}$"
    ):
        check_batch_size(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=rf"^slices={value!r}: "):
        check_batch_size(value, argument="slices")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["2", True, 1.0, None])
def test_a_worker_count_that_is_no_integer_is_refused_naming_it(value: object) -> None:
    with pytest.raises(
        TypeError, match=rf"^num_workers={value!r}: expected an integer, .*; found {type(value).__name__}$"
    ):
        check_num_workers(value)  # type: ignore[arg-type]


def test_integers_of_any_integral_type_pass_and_out_of_range_ones_are_refused() -> None:
    for value in (1, np.int64(16)):
        check_batch_size(value)  # type: ignore[arg-type]
    for value in (0, np.int32(3)):
        check_num_workers(value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^batch_size=0; expected a positive integer$"):
        check_batch_size(0)
    with pytest.raises(
        ValueError, match=r"^num_workers=-1; expected 0 \(read here\) or more worker processes$"
    ):
        check_num_workers(-1)
