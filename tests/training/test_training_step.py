"""One training step (``inpaintssl.training.step``) against hand-worked updates, and compiled
training (``run.compile``) against eager training."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import torch

from inpaintssl.checkpoint import load_checkpoint
from inpaintssl.config import CompileMode, PretextConfig, RunConfig
from inpaintssl.registry import BACKBONES
from inpaintssl.training.components import build_pretext_task
from inpaintssl.training.objectives import InpaintingObjective, SegmentationObjective
from inpaintssl.training.step import TrainStep, adam, compile_network
from study_helpers import tiny_segmentation_trainer

CPU = torch.device("cpu")


def _regression_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(4, 1, 6, 6, generator=generator),
        "label": torch.randn(4, 1, 6, 6, generator=generator),
    }


def _mse_objective() -> SegmentationObjective:
    return SegmentationObjective(loss=torch.nn.functional.mse_loss)


def test_adam_first_step_moves_each_weight_by_lr_against_its_gradient_sign() -> None:
    # After one step Adam's bias-corrected moments are g and g**2, so the update is
    # lr * g / (|g| + eps): lr times the gradient's sign, to within eps / |g|.
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = adam([weight], lr=0.1, device=CPU, betas=(0.99, 0.995), eps=1e-8)
    gradient = torch.tensor([0.5, -4.0, 1e-3])
    weight.grad = gradient.clone()
    optimizer.step()
    expected = torch.tensor([1.0, -2.0, 3.0]) - 0.1 * gradient / (gradient.abs() + 1e-8)
    assert torch.allclose(weight.detach(), expected, rtol=0, atol=1e-6)
    assert optimizer.defaults["fused"] is None  # the CPU keeps PyTorch's reference Adam


@pytest.mark.parametrize("clip", [1e-3, 1e3])
def test_step_clips_the_global_gradient_norm(clip: float) -> None:
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    batch = _regression_batch()
    # The raw gradient, computed apart from TrainStep.
    reference = torch.nn.Conv2d(1, 1, 3, padding=1)
    reference.load_state_dict(net.state_dict())
    torch.nn.functional.mse_loss(reference(batch["image"]), batch["label"]).backward()
    raw = torch.cat([p.grad.flatten() for p in reference.parameters()])  # type: ignore[union-attr]
    before = torch.cat([p.detach().flatten() for p in net.parameters()])

    step = TrainStep(net, _mse_objective(), device=CPU, grad_clip=clip)
    step(torch.optim.SGD(net.parameters(), lr=1.0), batch, keys=torch.arange(4))
    moved = before - torch.cat([p.detach().flatten() for p in net.parameters()])

    norm = float(raw.norm())
    # SGD with lr 1 moves the weights by the (clipped) gradient itself.
    expected = raw * min(1.0, clip / (norm + 1e-6))
    # atol: the weights (about 0.3) minus the moved weights lose float32 digits.
    assert torch.allclose(moved, expected, rtol=1e-4, atol=1e-7)
    assert (norm > clip) == (float(moved.norm()) < norm * 0.99)


def test_step_returns_the_batch_loss_detached_and_trains_only_the_optimizers_parameters() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Conv2d(2, 1, 1))
    batch = _regression_batch()
    with torch.no_grad():
        expected_loss = torch.nn.functional.mse_loss(net(batch["image"]), batch["label"])
    frozen = net[0].weight.detach().clone()
    step = TrainStep(net, _mse_objective(), device=CPU)
    loss = step(torch.optim.SGD(net[1].parameters(), lr=0.1), batch, keys=torch.arange(4))
    assert not loss.requires_grad and loss.shape == ()
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-6)
    assert torch.equal(net[0].weight.detach(), frozen)


def test_compile_network_names_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"compile='fast' is invalid; expected one of .*'reduce-overhead'"):
        compile_network(torch.nn.Linear(1, 1), "fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", get_args(CompileMode))
def test_every_compile_mode_wraps_the_same_parameters(mode: CompileMode) -> None:
    net = torch.nn.Linear(2, 2)
    wrapped = compile_network(net, mode)
    assert (wrapped is net) == (mode == "off")
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in net.parameters()]
    assert RunConfig(compile=mode).compile == mode


@pytest.mark.slow
def test_compiled_training_matches_eager_training(tmp_path: Path) -> None:
    # The compiler reorders floating-point work, so agreement is to rounding, not bit for bit;
    # the checkpoints must be interchangeable (no "_orig_mod." keys).
    eager = tiny_segmentation_trainer(tmp_path / "eager", max_epochs=2, compile="off")
    compiled = tiny_segmentation_trainer(tmp_path / "compiled", max_epochs=2, compile="default")
    assert compiled.train_step.network is not compiled.model
    eager_outcome, compiled_outcome = eager.fit(), compiled.fit()
    for a, b in zip(eager_outcome.history, compiled_outcome.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    eager_state, _ = load_checkpoint(tmp_path / "eager")
    compiled_state, _ = load_checkpoint(tmp_path / "compiled")
    assert sorted(compiled_state) == sorted(eager_state)
    for name, tensor in eager_state.items():
        assert torch.allclose(compiled_state[name], tensor, rtol=1e-3, atol=1e-5), name


@pytest.mark.slow
@pytest.mark.parametrize("compile", ["off", "default"])
def test_validation_runs_compiled_exactly_when_training_does(tmp_path: Path, compile: CompileMode) -> None:
    # Dynamo counts every Python frame it turns into a graph: validating alone (no training step
    # yet) compiles the network under run.compile and compiles nothing when it is off.
    from torch._dynamo.utils import counters

    trainer = tiny_segmentation_trainer(tmp_path / compile, max_epochs=1, compile=compile)
    eager_loss = tiny_segmentation_trainer(tmp_path / "eager", max_epochs=1, compile="off").validate()
    torch._dynamo.reset()
    counters.clear()
    loss = trainer.validate()
    assert (counters["frames"]["ok"] > 0) == (compile != "off")
    assert loss == pytest.approx(eager_loss, rel=1e-5)


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", ["default", "reduce-overhead"])
def test_compiled_cuda_training_matches_eager_cuda_training(tmp_path: Path, compile: CompileMode) -> None:
    # The whole loop on the card: compiled steps and validation (replayed as CUDA graphs under
    # reduce-overhead) and checkpoints of the same parameters. float32 on both sides (TF32
    # convolutions alike), so only the compiler's reordering of the fused element-wise work differs.
    runs = {"eager": "off", "compiled": compile}
    trainers = {
        name: tiny_segmentation_trainer(tmp_path / name, max_epochs=3, compile=mode, device="cuda", amp="off")
        for name, mode in runs.items()
    }
    eager, compiled = (trainers[name].fit() for name in runs)
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-2)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-2)
    eager_state, _ = load_checkpoint(tmp_path / "eager")
    compiled_state, _ = load_checkpoint(tmp_path / "compiled")
    assert sorted(compiled_state) == sorted(eager_state)  # no "_orig_mod." keys
    for name, tensor in eager_state.items():
        assert compiled_state[name].device.type == "cpu"
        assert torch.allclose(compiled_state[name], tensor, rtol=1e-2, atol=1e-4), name


def _inpainting_step(compile: CompileMode) -> tuple[TrainStep, torch.optim.Optimizer]:
    device = torch.device("cuda")
    model = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=3, base_width=8, seed=0).to(device)
    task = build_pretext_task(PretextConfig(task="context_restoration", patch_size=8, bank_size=4), seed=0)
    step = TrainStep(
        model,
        InpaintingObjective(task),
        device=device,
        amp_dtype=torch.bfloat16,
        grad_clip=1.0,
        compile=compile,
    )
    return step, adam(model.parameters(), lr=1e-3, device=device)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", ["off", "reduce-overhead"])
def test_cuda_step_never_waits_for_the_device(compile: CompileMode) -> None:
    # Corruption, bf16 forward, backward, clipping and fused Adam are queued without the host
    # ever synchronising, so it can prepare the next batch while the device computes.
    step, optimizer = _inpainting_step(compile)
    assert optimizer.defaults["fused"] is True
    images = torch.randn(4, 4, 1, 64, 64, device="cuda")
    losses = []
    for i in range(3):  # warm-up: mask bank upload, compilation, CUDA graph recording
        losses.append(step(optimizer, {"image": images[i]}, keys=torch.arange(4 * i, 4 * i + 4)))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(3, 8):
            losses.append(step(optimizer, {"image": images[i % 4]}, keys=torch.arange(4 * i, 4 * i + 4)))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    values = torch.stack(losses).float().cpu()
    assert bool(torch.isfinite(values).all())
    assert float(values[4:].mean()) < float(values[:2].mean())


# PyTorch 2.4 added the CPU kernel of fused Adam (2.3 refuses fused=True for CPU parameters).
@pytest.mark.skipif(torch.__version__ < "2.4", reason="fused Adam runs on the CPU from PyTorch 2.4")
def test_fused_adam_takes_the_steps_of_the_reference_adam() -> None:
    # adam() swaps in PyTorch's fused kernel on CUDA; the kernel also runs on the CPU, where it
    # must follow the reference implementation the CPU keeps, step for step.
    torch.manual_seed(0)
    reference = torch.nn.Parameter(torch.randn(64))
    fused = torch.nn.Parameter(reference.detach().clone())
    hyper = {"lr": 1e-2, "betas": (0.99, 0.995), "eps": 1e-8, "weight_decay": 1e-4}
    plain = adam([reference], device=CPU, **hyper)  # type: ignore[arg-type]
    kernel = torch.optim.Adam([fused], fused=True, **hyper)  # type: ignore[arg-type]
    for i in range(20):
        gradient = torch.randn(64, generator=torch.Generator().manual_seed(i))
        for parameter, optimizer in ((reference, plain), (fused, kernel)):
            parameter.grad = gradient.clone()
            optimizer.step()
    assert torch.allclose(fused.detach(), reference.detach(), rtol=1e-5, atol=1e-6)
