"""Runs build their components in one place, from the config, with no process-wide settings.

Issue 17: the pretext defaults were written in four places and the task built twice; the CPU
weight-gradient kernel reached the U-Net through a module global.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import inpaintssl
from inpaintssl.config import FinetuneConfig, PretextConfig, PretrainConfig
from inpaintssl.corruption import base as corruption_base
from inpaintssl.corruption.tasks import ContextPrediction
from inpaintssl.data import DataError
from inpaintssl.models import UNet2d, WSConv2d, cpu_weight_gradient
from inpaintssl.registry import BACKBONES
from inpaintssl.training import finetuning, pretraining, stages
from inpaintssl.training.components import (
    build_backbone,
    build_pretext_task,
    build_segmentation_loss,
    size_multiple_of,
)
from inpaintssl.transfer_learning.transfer import PartsCheck, backbone_parts

PACKAGE = Path(inpaintssl.__file__).parent
DATA = {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 4, "num_test": 4, "size": [16, 16]}}
TINY_MODEL = {"backbone": "unet2d", "params": {"depth": 2, "base_width": 4}}


def test_build_pretext_task_uses_every_config_field() -> None:
    pretext = PretextConfig(
        task="context_prediction",
        patch_size=8,
        sampler="random",
        coverage=0.3,
        bank_size=3,
        params={"fill": "zero", "sampler_params": {"max_draws": 50}},
    )
    task = build_pretext_task(pretext, seed=7)
    assert isinstance(task, ContextPrediction)
    assert (task.patch_size, task.sampler_name, task.coverage, task.bank_size, task.seed) == (
        8,
        "random",
        0.3,
        3,
        7,
    )
    assert task.fill == "zero" and task.sampler.max_draws == 50  # type: ignore[attr-defined]


def test_pretext_defaults_agree_between_the_config_and_the_tasks() -> None:
    # One set of numbers: a run (PretextConfig), a bare PRETEXT_TASKS.build and the task signatures agree.
    config = PretextConfig()
    expected = {
        "patch_size": config.patch_size,
        "sampler": config.sampler,
        "coverage": config.coverage,
        "bank_size": config.bank_size,
    }
    assert expected == {
        "patch_size": corruption_base.DEFAULT_PATCH_SIZE,
        "sampler": corruption_base.DEFAULT_SAMPLER,
        "coverage": corruption_base.DEFAULT_COVERAGE,
        "bank_size": corruption_base.DEFAULT_BANK_SIZE,
    }
    for cls in (corruption_base.PretextTask, ContextPrediction):
        parameters = inspect.signature(cls).parameters  # ContextPrediction: the composed signature
        assert {name: parameters[name].default for name in expected} == expected, cls
    task = build_pretext_task(config, seed=0)
    assert (task.patch_size, task.sampler_name, task.coverage, task.bank_size) == tuple(expected.values())


def _pretext_builds(source: str) -> list[int]:
    """Lines calling ``PRETEXT_TASKS.build`` (or ``build_from``) outside docstrings."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("build", "build_from")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "PRETEXT_TASKS"
    ]


def test_only_the_component_builder_builds_pretext_tasks() -> None:
    assert _pretext_builds('"""PRETEXT_TASKS.build("x")"""\nt = PRETEXT_TASKS.build(name)\n') == [2]
    assert _pretext_builds("t = PRETEXT_TASKS.build_from(name, {}, field='f', set_by_caller={})\n") == [1]
    callers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _pretext_builds(path.read_text(encoding="utf-8"))
    }
    # The contract of inpaintssl.testing checks a registry entry itself, as a plugin's tests do.
    assert callers == {"training/components.py", "testing/corruption.py"}


class _ThreeParts(nn.Module):
    """The smallest backbone of the contract's three parts (every run checks them): one convolution."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride)
        self.decoder = nn.Identity()
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.decoder(self.encoder(x)))
        return out


def test_build_backbone_passes_the_kernel_only_to_backbones_that_take_it() -> None:
    net = build_backbone(
        "unet2d", {"depth": 2}, in_channels=1, out_channels=1, seed=0, weight_gradient="onednn"
    )
    assert {m.weight_gradient for m in net.modules() if isinstance(m, WSConv2d)} == {"onednn"}
    received: dict[str, Any] = {}

    @BACKBONES.register("kernel_probe_test")
    def probe(*, in_channels: int, out_channels: int, seed: int) -> nn.Module:
        received.update(in_channels=in_channels, out_channels=out_channels, seed=seed)
        return _ThreeParts(in_channels, out_channels)

    try:
        build_backbone(
            "kernel_probe_test", {}, in_channels=2, out_channels=3, seed=4, weight_gradient="onednn"
        )
    finally:
        BACKBONES.unregister("kernel_probe_test")
    assert received == {"in_channels": 2, "out_channels": 3, "seed": 4}


def test_a_backbone_without_a_seed_parameter_is_the_plugins_mistake_not_model_params() -> None:
    # The run passes seed itself (docs/plugins.rst): the message blamed "model.params: invalid
    # parameters ['seed']", a field the user never set.
    @BACKBONES.register("seedless_test")
    def seedless(*, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Conv2d(in_channels, out_channels, 1)

    try:
        with pytest.raises(TypeError) as caught:
            build_backbone("seedless_test", {}, in_channels=1, out_channels=2, seed=7)
    finally:
        BACKBONES.unregister("seedless_test")
    message = str(caught.value)
    assert "does not accept seed, which the run passes itself (seed=7)" in message, message
    assert not message.startswith("model.params"), message
    # A seed the user does give in model.params still wins over the run's.
    seeded = [
        build_backbone("unet2d", {"depth": 2, "seed": 5}, in_channels=1, out_channels=2, seed=seed)
        for seed in (0, 1)
    ]
    assert all(
        (a == b).all() for a, b in zip(seeded[0].state_dict().values(), seeded[1].state_dict().values())
    )


def test_build_segmentation_loss_refuses_the_inpainting_loss() -> None:
    assert build_segmentation_loss("dice", {"activation": "softmax"}).activation == "softmax"
    with pytest.raises(TypeError, match="loss 'l2' builds a L2Loss, not a SegmentationLoss"):
        build_segmentation_loss("l2", {})


class _BuiltError(Exception):
    """Stops a run right after its backbone is built."""


def _capture_backbone(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[nn.Module]:
    built: list[nn.Module] = []

    def recording(*args: Any, **kwargs: Any) -> nn.Module:
        built.append(build_backbone(*args, **kwargs))
        raise _BuiltError

    monkeypatch.setattr(module, "build_backbone", recording)
    return built


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_runs_build_the_backbone_with_run_cpu_weight_gradient(
    stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = {
        "output_dir": str(tmp_path / stage),
        "quiet": True,
        "device": "cpu",
        "cpu_weight_gradient": "onednn",
    }
    if stage == "pretrain":
        built = _capture_backbone(monkeypatch, pretraining)
        config = PretrainConfig.model_validate(
            {"data": DATA, "model": TINY_MODEL, "pretext": {"patch_size": 4, "bank_size": 2}, "run": run}
        )
        with pytest.raises(_BuiltError):
            pretraining.run_pretraining(config)
    else:
        built = _capture_backbone(monkeypatch, finetuning)
        finetune = FinetuneConfig.model_validate({"data": DATA, "model": TINY_MODEL, "run": run})
        with pytest.raises(_BuiltError):
            finetuning.run_finetuning(finetune)
    (model,) = built
    assert {m.weight_gradient for m in model.modules() if isinstance(m, WSConv2d)} == {"onednn"}
    assert cpu_weight_gradient() == "auto"  # nothing left behind for the next model in this thread


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_a_backbone_that_changes_the_image_size_is_named(stage: str, tmp_path: Path) -> None:
    """A plugin backbone whose output is not at the input's size fails naming it, not inside the loss."""

    @BACKBONES.register("half_size_test")
    def half_size(*, in_channels: int, out_channels: int, seed: int) -> nn.Module:
        return _ThreeParts(in_channels, out_channels, kernel_size=2, stride=2)

    run = {"output_dir": str(tmp_path / stage), "quiet": True, "device": "cpu"}
    config: dict[str, Any] = {"data": DATA, "model": {"backbone": "half_size_test"}, "run": run}
    told = r"the network \S*_ThreeParts returned an output of shape \(8, \d, 8, 8\) "
    told += r"for an input of shape \(8, 1, 16, 16\); expected \(8, (1|C_out), 16, 16\)"
    try:
        with pytest.raises(ValueError, match=told):
            if stage == "pretrain":
                inpaintssl.pretrain({**config, "pretext": {"patch_size": 4, "bank_size": 2}})
            else:
                inpaintssl.finetune(config)
    finally:
        BACKBONES.unregister("half_size_test")


# -- the size multiple is read from the run's own backbone -----------------------------------------
@pytest.mark.parametrize(("stage", "out_channels"), [("pretrain", 3), ("finetune", 2)])
def test_the_size_multiple_is_read_from_a_backbone_of_the_runs_channel_counts(
    stage: str, out_channels: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plugin for RGB images refused the probe of one channel in and out that the run built
    # before its data, and no run could use it. Fine-tuning's two classes under a sigmoid loss
    # are two output channels; pretraining outputs the image's three.
    built: list[tuple[int, int]] = []

    @BACKBONES.register("rgb_only_test")
    def rgb_only(*, in_channels: int, out_channels: int, seed: int) -> nn.Module:
        built.append((in_channels, out_channels))
        if in_channels != 3:
            raise ValueError(f"rgb_only_test takes 3-channel images, got in_channels={in_channels}")
        return UNet2d(in_channels=3, out_channels=out_channels, depth=2, base_width=4, seed=seed)

    data = {**DATA, "params": {**DATA["params"], "channels": 3}}
    run = {"output_dir": str(tmp_path / stage), "quiet": True, "device": "cpu"}
    model = {"backbone": "rgb_only_test"}
    try:
        with pytest.raises(_BuiltError):
            if stage == "pretrain":
                _capture_backbone(monkeypatch, pretraining)
                config = {
                    "data": data,
                    "model": model,
                    "pretext": {"patch_size": 4, "bank_size": 2},
                    "run": run,
                }
                pretraining.run_pretraining(PretrainConfig.model_validate(config))
            else:
                _capture_backbone(monkeypatch, finetuning)
                loss = {"name": "dice", "params": {"activation": "sigmoid"}}
                config = {"data": data, "model": model, "loss": loss, "run": run}
                finetuning.run_finetuning(FinetuneConfig.model_validate(config))
    finally:
        BACKBONES.unregister("rgb_only_test")
    assert len(built) >= 2 and set(built) == {(3, out_channels)}, built  # the probe, and the run's own


def test_a_failing_probe_says_it_was_built_to_read_the_size_multiple() -> None:
    @BACKBONES.register("failing_probe_test")
    def failing(*, in_channels: int, out_channels: int, seed: int, width: int = 1) -> nn.Module:
        raise ValueError(f"no network for in_channels={in_channels}")

    try:
        with pytest.raises(ValueError) as caught:
            size_multiple_of("failing_probe_test", {"width": 2}, in_channels=2, out_channels=5)
    finally:
        BACKBONES.unregister("failing_probe_test")
    assert str(caught.value) == (
        "model.backbone='failing_probe_test': building the backbone (in_channels=2, out_channels=5, "
        "model.params={'width': 2}) to read its size_multiple, the multiple the data's slice sizes must "
        "fit, failed: no network for in_channels=2"
    )


def test_a_misspelt_model_param_fails_before_the_data_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def read_data(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the data were read first")

    monkeypatch.setattr(stages, "build_datasets", read_data)
    config = PretrainConfig.model_validate(
        {"data": DATA, "model": {"backbone": "unet2d", "params": {"depht": 2}}}
    )
    with pytest.raises(
        TypeError, match=r"^model\.params: backbones 'unet2d': invalid parameters \['depht'\]"
    ):
        stages.build_stage_data(config, stage="pretrain")


def test_slices_the_backbone_cannot_take_are_named_with_a_size_that_fits() -> None:
    # The data are built before the backbone that says the multiple (16 for depth 5); the data's
    # own check still words both errors with it.
    model = {"backbone": "unet2d", "params": {"depth": 5, "base_width": 4}}
    uniform = FinetuneConfig.model_validate({"data": {"dataset": "mni152"}, "model": model})
    with pytest.raises(DataError, match=r"slice size \(116, 98\) is not divisible by 16"):
        stages.build_stage_data(uniform, stage="finetune")
    mixed = {"dataset": "mni152", "unlabelled": [{"dataset": "mni152"}]}
    with pytest.raises(DataError, match=r"slices have different sizes") as caught:
        stages.build_stage_data(
            PretrainConfig.model_validate({"data": mixed, "model": model}), stage="pretrain"
        )
    suggested = re.search(r"set data\.image_size \(e\.g\. \[(\d+), (\d+)\]\)", str(caught.value))
    assert suggested is not None, str(caught.value)
    assert all(int(side) % 16 == 0 for side in suggested.groups()), suggested.group(0)


# -- run.cpu_weight_gradient goes only to factories that name it -------------------------------------
def test_weight_gradient_is_not_passed_through_a_factorys_kwargs() -> None:
    # A wrapper forwarding **kwargs to MONAI raised a TypeError about weight_gradient, which the
    # user never wrote: the documented call is factory(in_channels=, out_channels=, seed=, **model.params).
    received: list[dict[str, Any]] = []

    @BACKBONES.register("forwarding_test")
    def forwarding(
        *, in_channels: int, out_channels: int, seed: int | None = None, **options: Any
    ) -> nn.Module:
        received.append(options)
        return _ThreeParts(in_channels, out_channels)

    try:
        build_backbone("forwarding_test", {}, in_channels=1, out_channels=1, seed=0, weight_gradient="onednn")
        build_backbone(
            "forwarding_test",
            {"features": [4, 8]},
            in_channels=1,
            out_channels=1,
            seed=0,
            weight_gradient="onednn",
        )
    finally:
        BACKBONES.unregister("forwarding_test")
    assert received == [{}, {"features": [4, 8]}]


# -- the encoder, decoder and head parts ---------------------------------------------------------------
def _backbones_that_build() -> list[str]:
    return [e.name for e in BACKBONES.entries(check=True) if e.status == "ok"]


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_registered_backbone_keeps_the_parts_a_run_checks(name: str) -> None:
    if name not in _backbones_that_build():
        pytest.skip(f"{name}: a required package is not installed")
    model = build_backbone(name, {}, in_channels=1, out_channels=2, seed=0)
    assert backbone_parts(model) == PartsCheck(missing=(), outside=())


def test_a_backbone_without_the_parts_is_refused_naming_them() -> None:
    @BACKBONES.register("partless_test")
    def partless(*, in_channels: int, out_channels: int, seed: int) -> nn.Module:
        net = _ThreeParts(in_channels, out_channels)
        del net.decoder
        net.gain = nn.Parameter(torch.ones(1))
        return net

    try:
        with pytest.raises(TypeError) as caught:
            build_backbone("partless_test", {}, in_channels=1, out_channels=1, seed=0)
        loaded = build_backbone("partless_test", {}, in_channels=1, out_channels=1, seed=0, check_parts=False)
    finally:
        BACKBONES.unregister("partless_test")
    message = str(caught.value)
    assert message.startswith("backbone 'partless_test' (built-in test_training_components:"), message
    assert "submodule(s) missing: decoder; 1 parameter(s) lie outside them: gain." in message, message
    assert not hasattr(loaded, "decoder")  # loading a trained run for inference does not check
