"""Pretrained tensors that hold NaN/Inf or are not floating point are refused, naming the tensors.

Issue 16: NaN weights were reported as copied, and the run then failed at step 0 asking for a lower
learning rate. Checked for every registered transfer strategy and every kind of source.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from inpaintssl.checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from inpaintssl.registry import BACKBONES, TRANSFER_STRATEGIES
from inpaintssl.transfer_learning import transfer

FIRST = "encoder.levels.0.0.0.weight"
HEAD = "head.weight"


def unet(*, out_channels: int = 1, seed: int = 0) -> nn.Module:
    return BACKBONES.build(
        "unet2d", in_channels=1, out_channels=out_channels, depth=2, base_width=4, seed=seed
    )


def spoiled(kind: str) -> dict[str, torch.Tensor]:
    """A pretrained state whose first encoder kernel is spoiled in one way."""
    state = {k: v.clone() for k, v in unet(seed=7).state_dict().items()}
    weight = state[FIRST]
    if kind == "nan":
        weight.view(-1)[:3] = float("nan")
    elif kind == "inf":
        weight.view(-1)[0] = float("inf")
        weight.view(-1)[1] = float("-inf")
    elif kind == "int":
        state[FIRST] = torch.round(weight * 100).to(torch.int32)
    elif kind == "bool":
        state[FIRST] = weight > 0
    return state


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


EXPECTED = {
    "nan": rf"{FIRST} has 3 non-finite value\(s\) of 36 \(3 NaN, 0 Inf\)",
    "inf": rf"{FIRST} has 2 non-finite value\(s\) of 36 \(0 NaN, 2 Inf\)",
    "int": rf"{FIRST} has dtype torch\.int32, expected a floating-point dtype",
    "bool": rf"{FIRST} has dtype torch\.bool, expected a floating-point dtype",
}


@pytest.mark.parametrize("weights", TRANSFER_STRATEGIES.names())
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_in_memory_weights_are_refused_and_the_model_is_untouched(weights: str, kind: str) -> None:
    model = unet(out_channels=2)
    before = snapshot(model)
    with pytest.raises(ValueError, match=EXPECTED[kind]) as info:
        transfer(spoiled(kind), model, weights=weights)
    assert type(info.value) is ValueError
    assert "pretrained weights: 1 tensor(s)" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("weights", TRANSFER_STRATEGIES.names())
@pytest.mark.parametrize("kind", sorted(EXPECTED))
@pytest.mark.parametrize("source", ["safetensors", "checkpoint"])
def test_files_are_refused_as_bad_checkpoints_naming_the_file(
    tmp_path: Path, weights: str, kind: str, source: str
) -> None:
    state = spoiled(kind)
    if source == "safetensors":
        path = tmp_path / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "best"
        meta = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
        save_checkpoint(path, state, meta)
    model = unet(out_channels=2)
    before = snapshot(model)
    with pytest.raises(CheckpointError, match=EXPECTED[kind]) as info:
        transfer(path, model, weights=weights)
    assert str(path) in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_spoiled_tensors_outside_the_copied_parts_do_not_matter() -> None:
    # The head is never transferred, so a NaN there cannot reach the fine-tuned model.
    state = {k: v.clone() for k, v in unet(seed=7).state_dict().items()}
    state[HEAD].fill_(float("nan"))
    model = unet()
    report = transfer(state, model, weights="encoder_decoder")
    assert HEAD not in report.copied and FIRST in report.copied
    assert all(bool(torch.isfinite(v).all()) for v in model.state_dict().values())


def test_every_spoiled_tensor_is_named() -> None:
    state = spoiled("nan")
    second = "encoder.levels.1.0.0.weight"
    state[second] = state[second].to(torch.int64)
    with pytest.raises(ValueError, match=r"2 tensor\(s\)") as info:
        transfer(state, unet(), weights="encoder")
    assert FIRST in str(info.value) and second in str(info.value)


def test_integer_buffers_may_go_into_integer_buffers() -> None:
    # BatchNorm-style counters are integers on both sides: nothing is cast, nothing refused.
    class Counted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.register_buffer("steps", torch.zeros((), dtype=torch.int64))
            self.encoder.conv = nn.Conv2d(1, 1, 3)
            self.decoder = nn.Identity()
            self.head = nn.Identity()

    source, target = Counted(), Counted()
    source.encoder.steps.fill_(5)
    report = transfer(source, target, weights="encoder")
    assert int(target.encoder.steps) == 5 and "encoder.steps" in report.copied
