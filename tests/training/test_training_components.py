"""Runs build their components in one place, from the config, with no process-wide settings.

Issue 17: the pretext defaults were written in four places and the task built twice; the CPU
weight-gradient kernel reached the U-Net through a module global.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import inpaintssl
from inpaintssl.config import FinetuneConfig, PretextConfig, PretrainConfig
from inpaintssl.corruption import base as corruption_base
from inpaintssl.corruption.tasks import ContextPrediction
from inpaintssl.models import WSConv2d, cpu_weight_gradient
from inpaintssl.registry import BACKBONES
from inpaintssl.training import finetuning, pretraining
from inpaintssl.training.components import build_backbone, build_pretext_task, build_segmentation_loss

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


def test_build_backbone_passes_the_kernel_only_to_backbones_that_take_it() -> None:
    net = build_backbone(
        "unet2d", {"depth": 2}, in_channels=1, out_channels=1, seed=0, weight_gradient="onednn"
    )
    assert {m.weight_gradient for m in net.modules() if isinstance(m, WSConv2d)} == {"onednn"}
    received: dict[str, Any] = {}

    @BACKBONES.register("kernel_probe_test")
    def probe(*, in_channels: int, out_channels: int, seed: int) -> nn.Module:
        received.update(in_channels=in_channels, out_channels=out_channels, seed=seed)
        return nn.Conv2d(in_channels, out_channels, 1)

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
        return nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2)

    run = {"output_dir": str(tmp_path / stage), "quiet": True, "device": "cpu"}
    config: dict[str, Any] = {"data": DATA, "model": {"backbone": "half_size_test"}, "run": run}
    told = r"the network torch\.nn\.modules\.conv\.Conv2d returned an output of shape \(8, \d, 8, 8\) "
    told += r"for an input of shape \(8, 1, 16, 16\); expected \(8, (1|C_out), 16, 16\)"
    try:
        with pytest.raises(ValueError, match=told):
            if stage == "pretrain":
                inpaintssl.pretrain({**config, "pretext": {"patch_size": 4, "bank_size": 2}})
            else:
                inpaintssl.finetune(config)
    finally:
        BACKBONES.unregister("half_size_test")
