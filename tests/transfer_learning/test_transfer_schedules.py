"""Fine-tuning schedules (sec. 2.5.1 design choice #2): freezing really stops updates."""

from __future__ import annotations

import typing

import pytest
import torch
from torch import nn

from inpaintssl.config import TransferConfig
from inpaintssl.registry import BACKBONES
from inpaintssl.transfer_learning import (
    FINETUNE_SCHEDULES,
    SCHEDULE_DESCRIPTIONS,
    FinetunePhase,
    finetune_phases,
    hold_running_statistics,
    set_trainable,
    trainable_parameters,
    transfer,
)


def unet(*, out_channels: int, seed: int) -> nn.Module:
    return BACKBONES.build(
        "unet2d", in_channels=1, out_channels=out_channels, depth=3, base_width=8, seed=seed
    )


def test_schedule_names_agree_with_the_config_schema() -> None:
    assert typing.get_args(TransferConfig.model_fields["schedule"].annotation) == FINETUNE_SCHEDULES
    assert set(SCHEDULE_DESCRIPTIONS) == set(FINETUNE_SCHEDULES)


def test_phases_of_each_schedule() -> None:
    assert finetune_phases("immediate", transferred_parts=("encoder",)) == (
        FinetunePhase("finetune", (), second_lr=False),
    )
    assert finetune_phases("freeze_then_unfreeze", transferred_parts=("encoder", "decoder")) == (
        FinetunePhase("frozen", ("encoder", "decoder"), second_lr=False),
        FinetunePhase("unfrozen", (), second_lr=True),
    )


def test_phase_errors() -> None:
    with pytest.raises(ValueError, match="Did you mean 'immediate'"):
        finetune_phases("immediat", transferred_parts=("encoder",))
    with pytest.raises(ValueError, match="nothing to freeze"):
        finetune_phases("freeze_then_unfreeze", transferred_parts=())


def test_set_trainable_covers_every_parameter_of_the_parts_including_group_norm() -> None:
    net = unet(out_channels=2, seed=0)
    set_trainable(net, ["encoder", "decoder"], trainable=False)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in net.named_parameters() if not n.startswith("head.")}
    norm_params = {
        f"{m}.{p}"
        for m, mod in net.named_modules()
        if isinstance(mod, nn.GroupNorm)
        for p in ("weight", "bias")
    }
    assert norm_params and norm_params <= frozen
    assert trainable_parameters(net) == list(net.head.parameters())
    set_trainable(net, ["encoder"], trainable=True)
    assert {n.split(".")[0] for n, p in net.named_parameters() if not p.requires_grad} == {"decoder"}


def test_freezing_drops_stale_gradients() -> None:
    net = unet(out_channels=2, seed=0)
    net(torch.randn(1, 1, 8, 8)).sum().backward()
    set_trainable(net, ("encoder",), trainable=False)
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.head.parameters())


def test_set_trainable_argument_errors_change_nothing() -> None:
    net = unet(out_channels=2, seed=0)
    with pytest.raises(TypeError, match=r"\('encoder',\)"):
        set_trainable(net, "encoder", trainable=False)
    with pytest.raises(ValueError, match=r"no part 'backbone'.*\['decoder', 'encoder', 'head'\]"):
        set_trainable(net, ["encoder", "backbone"], trainable=False)
    assert all(p.requires_grad for p in net.parameters())


def test_held_running_statistics_stay_put_in_a_training_forward() -> None:
    # The frozen encoder's layers with running statistics stop updating them; a dropout there, an
    # InstanceNorm without statistics and the parts that train keep training mode.
    net = nn.ModuleDict(
        {
            "encoder": nn.Sequential(
                nn.BatchNorm2d(2),
                nn.InstanceNorm2d(2, track_running_stats=True),
                nn.InstanceNorm2d(2),
                nn.Dropout(0.5),
            ),
            "head": nn.BatchNorm2d(2),
        }
    ).train()
    hold_running_statistics(nn.DataParallel(net), ("encoder",))
    assert [m.training for m in net["encoder"]] == [False, False, True, True]
    assert net["head"].training
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 2, 5, 5) * 3 + 1
    net["head"](net["encoder"][:2](x))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert not torch.equal(before["head.running_mean"], after["head.running_mean"])


def test_hold_running_statistics_argument_errors() -> None:
    net = unet(out_channels=2, seed=0)
    with pytest.raises(TypeError, match=r"\('encoder',\)"):
        hold_running_statistics(net, "encoder")
    with pytest.raises(ValueError, match=r"no part 'backbone'"):
        hold_running_statistics(net, ["backbone"])


def test_set_trainable_sees_through_wrappers() -> None:
    net = unet(out_channels=2, seed=0)
    set_trainable(nn.DataParallel(net), ["encoder"], trainable=False)
    assert not any(p.requires_grad for p in net.encoder.parameters())


def test_freeze_then_unfreeze_keeps_transferred_weights_bit_identical_then_trains_them() -> None:
    pretrained = unet(out_channels=1, seed=1)
    model = unet(out_channels=2, seed=2)
    report = transfer(pretrained, model, weights="encoder")
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 1, 32, 32, generator=generator)
    labels = (torch.rand(3, 2, 32, 32, generator=generator) > 0.5).float()
    loss_fn = nn.BCEWithLogitsLoss()

    def run_phase(phase: FinetunePhase, lr: float) -> None:
        set_trainable(model, report.parts, trainable=True)
        set_trainable(model, phase.frozen_parts, trainable=False)
        optimizer = torch.optim.Adam(trainable_parameters(model), lr=lr, betas=(0.99, 0.995), eps=1e-8)
        for _ in range(3):
            optimizer.zero_grad()
            loss_fn(model(images), labels).backward()
            optimizer.step()

    frozen_phase, unfrozen_phase = finetune_phases("freeze_then_unfreeze", transferred_parts=report.parts)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    run_phase(frozen_phase, lr=1e-3)
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    assert all(
        torch.equal(v, pretrained.encoder.state_dict()[k]) for k, v in model.encoder.state_dict().items()
    )
    assert any(not torch.equal(v, decoder_before[k]) for k, v in model.decoder.state_dict().items())
    norm_weight = model.encoder.levels[0][0][1].weight
    assert isinstance(model.encoder.levels[0][0][1], nn.GroupNorm) and torch.all(norm_weight == 1)

    run_phase(unfrozen_phase, lr=1e-4)
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(v, encoder_before[k])]
    assert len(changed) == len(encoder_before)  # every encoder tensor, GroupNorm affine included
