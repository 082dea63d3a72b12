"""The training loop against hand-made expectations: freezing phases, resume state, torchrun parity."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import Subset

from inpaintssl.checkpoint import CheckpointMeta, load_checkpoint
from inpaintssl.config import ConfigError, EarlyStoppingConfig, OptimConfig, RunConfig
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.registry import BACKBONES, LOSSES
from inpaintssl.training import loop
from inpaintssl.training.context import FreshStartWarning, RunContext
from inpaintssl.training.loop import NonFiniteLossError, Phase, Trainer
from inpaintssl.training.objectives import SegmentationObjective

SIZE = (16, 16)


def _trainer(tmp_path: Path, model: torch.nn.Module, phases: list[Phase], **optim: object) -> Trainer:
    loss = LOSSES.build("dice")
    return Trainer(
        model=model,
        objective=SegmentationObjective(loss=loss),
        train_set=SyntheticShapes(split="train", num_images=8, size=SIZE),
        val_set=SyntheticShapes(split="val", num_images=8, num_val=4, size=SIZE),
        phases=phases,
        optim=OptimConfig(batch_size=4, **optim),  # type: ignore[arg-type]
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=RunContext.local(RunConfig(output_dir=tmp_path, device="cpu", seed=0, quiet=True)),
    )


def _model(seed: int = 0) -> torch.nn.Module:
    model: torch.nn.Module = BACKBONES.build(
        "unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=seed
    )
    return model


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class _BatchNormNet(torch.nn.Module):
    """Encoder, decoder and head with BatchNorm, as smp's encoders have: parts with running statistics."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4))
        self.decoder = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.BatchNorm2d(4))
        self.head = torch.nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.decoder(torch.relu(self.encoder(x)))))


@pytest.mark.parametrize("backbone", ["unet2d", "batchnorm"])
def test_frozen_phase_leaves_transferred_weights_bit_identical(tmp_path: Path, backbone: str) -> None:
    # Buffers too: a frozen BatchNorm in training mode would update its running statistics (and
    # normalise with each batch's), so the frozen encoder would compute another function.
    model = _model() if backbone == "unet2d" else _BatchNormNet()
    before = _snapshot(model)
    _trainer(tmp_path, model, [Phase(name="frozen", lr=1e-2, frozen_parts=("encoder",))], max_epochs=3).fit()
    after = model.state_dict()
    encoder = [k for k in before if k.startswith("encoder.")]
    others = [k for k in before if not k.startswith("encoder.")]
    assert encoder and others
    assert all(torch.equal(before[k], after[k]) for k in encoder), [
        k for k in encoder if not torch.equal(before[k], after[k])
    ]
    assert any(not torch.equal(before[k], after[k]) for k in others)
    if backbone == "batchnorm":  # the parts that train do update their statistics
        assert not torch.equal(before["decoder.1.running_mean"], after["decoder.1.running_mean"])
    assert all(p.requires_grad for p in model.parameters()), "fit() must leave every weight trainable"


def test_unfrozen_phase_moves_the_transferred_weights(tmp_path: Path) -> None:
    model = _model()
    before = _snapshot(model)
    outcome = _trainer(
        tmp_path,
        model,
        [Phase(name="frozen", lr=1e-2, frozen_parts=("encoder",)), Phase(name="unfrozen", lr=1e-3)],
        max_epochs=2,
        recipe="paper",
    ).fit()
    assert [row["phase"] for row in outcome.history] == ["frozen", "frozen", "unfrozen", "unfrozen"]
    # Each phase restarts the schedule from its own initial learning rate (the paper's step decay).
    assert [row["lr"] for row in outcome.history] == pytest.approx([1e-2, 9e-3, 1e-3, 9e-4])
    assert len(outcome.phase_best) == 2
    encoder = [k for k in before if k.startswith("encoder.")]
    assert any(not torch.equal(before[k], model.state_dict()[k]) for k in encoder)


def test_parameters_the_caller_froze_stay_frozen_through_every_phase(tmp_path: Path) -> None:
    # A fixed layer (requires_grad=False on arrival) is the caller's choice: a phase freezes its
    # frozen_parts on top of it and never unfreezes it. Every phase unfroze every part, so the
    # layer joined the optimiser, trained, and stayed trainable after fit.
    model = _model()
    fixed = model.encoder.levels[0]  # type: ignore[index, union-attr]
    for param in fixed.parameters():
        param.requires_grad_(False)
    before = _snapshot(fixed)
    _trainer(
        tmp_path,
        model,
        [Phase(name="frozen", lr=1e-2, frozen_parts=("decoder",)), Phase(name="unfrozen", lr=1e-2)],
        max_epochs=2,
    ).fit()
    assert all(torch.equal(before[k], v) for k, v in fixed.state_dict().items())
    assert [p.requires_grad for p in fixed.parameters()] == [False] * len(before)
    # Everything else is as the caller gave it, the phase's frozen decoder included.
    others = [p for name, p in model.named_parameters() if not name.startswith("encoder.levels.0.")]
    assert others and all(p.requires_grad for p in others)


def test_every_phase_ends_with_its_best_weights(tmp_path: Path) -> None:
    model = _model()
    outcome = _trainer(tmp_path, model, [Phase(name="finetune", lr=0.3)], max_epochs=4).fit()
    losses = [row["val_loss"] for row in outcome.history]
    assert outcome.best_val_loss == min(losses)
    state, meta = load_checkpoint(tmp_path)
    assert meta is not None and meta.epoch == losses.index(min(losses))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    rows = _read_csv(tmp_path / "metrics.csv")
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(losses)


def test_tensorboard_events_are_written_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _trainer(tmp_path, _model(), [Phase(name="finetune", lr=1e-2)], max_epochs=2).fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("finetune/val_loss")] == pytest.approx(
        [float(r["val_loss"]) for r in _read_csv(tmp_path / "metrics.csv")], rel=1e-6
    )


@pytest.mark.parametrize("killed_in", [1, 0])
def test_tensorboard_of_a_resumed_run_holds_each_epoch_once(tmp_path: Path, killed_in: int) -> None:
    # killed_in=0: killed before its first checkpoint, the resume starts afresh; TensorBoard kept
    # the killed run's step 0 beside the new one (no purge for a fresh start).
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class KilledError(Exception):
        pass

    def kill_after_logging_epoch_2(model: torch.nn.Module, *, epoch: int, tensorboard: object) -> None:
        # The epoch is in metrics.csv and TensorBoard, but its checkpoint is not written.
        if epoch == killed_in:
            raise KilledError

    def trainer(*, resume: bool, hooks: list[object]) -> Trainer:
        loss = LOSSES.build("dice")
        return Trainer(
            model=_model(),
            objective=SegmentationObjective(loss=loss),
            train_set=SyntheticShapes(split="train", num_images=8, size=SIZE),
            val_set=SyntheticShapes(split="val", num_images=8, num_val=4, size=SIZE),
            phases=[Phase(name="finetune", lr=1e-2)],
            optim=OptimConfig(batch_size=4, max_epochs=3),
            stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
            meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
            context=RunContext.local(
                RunConfig(output_dir=tmp_path, device="cpu", seed=0, quiet=True, resume=resume)
            ),
            epoch_hooks=hooks,  # type: ignore[arg-type]
        )

    with pytest.raises(KilledError):
        trainer(resume=False, hooks=[kill_after_logging_epoch_2]).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FreshStartWarning)  # killed_in=0: nothing to resume
        trainer(resume=True, hooks=[]).fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("finetune/val_loss")
    assert [e.step for e in scalars] == [0, 1, 2]
    assert [e.value for e in scalars] == pytest.approx(
        [float(r["val_loss"]) for r in _read_csv(tmp_path / "metrics.csv")], rel=1e-6
    )


class _NonFiniteFrom(SegmentationObjective):
    """The Dice objective, its training loss multiplied by ``factor`` (NaN, inf) from call ``first`` on.

    Validation scores through ``loss_and_overlaps``, not ``loss``, so only training steps count.
    """

    def __init__(self, *, first: int, factor: float) -> None:
        super().__init__(loss=LOSSES.build("dice"))
        self.first, self.factor, self.calls = first, factor, 0

    def loss(self, model: torch.nn.Module, batch: dict[str, object], *, keys: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        value = super().loss(model, batch, keys=keys)
        return value * self.factor if self.calls >= self.first else value


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, _model(), [Phase(name="finetune", lr=1e-3)], max_epochs=3)
    # 8 images / batch 4 = 2 training steps per epoch: call 3 is epoch 1, step 0.
    trainer.objective = _NonFiniteFrom(first=3, factor=float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 0"):
        trainer.fit()
    _, meta = load_checkpoint(tmp_path, which="last")
    assert meta is not None and meta.epoch == 0


def test_a_non_finite_loss_before_the_first_last_checkpoint_keeps_the_best_weights_loadable(
    tmp_path: Path,
) -> None:
    # checkpoint_every=2: epoch 0's best waited in best.pending, no last written yet. The stop said
    # the last good checkpoint was kept, but load_model refused the folder and the next run removed it.
    trainer = _trainer(tmp_path, _model(), [Phase(name="finetune", lr=1e-3)], max_epochs=3)
    trainer.checkpoint_every = 2
    trainer.objective = _NonFiniteFrom(first=3, factor=float("nan"))  # epoch 1, step 0
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 0.*last good checkpoint is kept"):
        trainer.fit()
    assert not (tmp_path / "checkpoints" / "last").exists()
    tensors, meta = load_checkpoint(tmp_path, which="best")
    assert meta is not None and meta.epoch == 0 and tensors
    assert not (tmp_path / "checkpoints" / "best.pending").exists()


def test_a_learning_curve_that_cannot_be_drawn_does_not_hide_the_non_finite_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unwritable(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    trainer = _trainer(tmp_path, _model(), [Phase(name="finetune", lr=1e-3)], max_epochs=3)
    # Epoch 0 trains (two steps) and is validated, so there is a curve to draw when epoch 1 diverges.
    trainer.objective = _NonFiniteFrom(first=3, factor=float("inf"))
    monkeypatch.setattr("inpaintssl.training.loop.plot_learning_curve", unwritable)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 0"):
        trainer.fit()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, env=env)


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_processes_match_one_process(tmp_path: Path) -> None:
    common = [
        "data.dataset=synthetic",
        "data.params={num_images: 16, num_val: 6, size: [16, 16]}",
        "model.params={depth: 2, base_width: 4}",
        "pretext.patch_size=4",
        "pretext.bank_size=4",
        "optim.max_epochs=2",
        "run.channels_last=false",
        "run.device=cpu",
        "run.quiet=true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = _cli(
        sys.executable,
        "-m",
        "inpaintssl",
        "pretrain",
        *common,
        "optim.batch_size=8",
        f"run.output_dir={tmp_path / 'single'}",
        env=env,
    )
    assert single.returncode == 0, single.stderr
    double = _cli(
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "inpaintssl",
        "pretrain",
        *common,
        "optim.batch_size=4",
        f"run.output_dir={tmp_path / 'ddp'}",
        env=env,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one, _ = load_checkpoint(tmp_path / "single")
    two, meta = load_checkpoint(tmp_path / "ddp")
    assert meta is not None and meta.epoch >= 0
    for name, tensor in one.items():
        torch.testing.assert_close(two[name], tensor, rtol=1e-3, atol=1e-4, msg=name)
    rows1 = _read_csv(tmp_path / "single" / "metrics.csv")
    rows2 = _read_csv(tmp_path / "ddp" / "metrics.csv")
    assert [float(r["val_loss"]) for r in rows2] == pytest.approx(
        [float(r["val_loss"]) for r in rows1], rel=1e-4
    )
    assert [float(r["train_loss"]) for r in rows2] == pytest.approx(
        [float(r["train_loss"]) for r in rows1], rel=1e-4
    )


@pytest.mark.parametrize("missing", ["phase", "rng tensors"])
def test_a_trainer_state_this_version_does_not_write_is_named_on_resume(tmp_path: Path, missing: str) -> None:
    # An intact checkpoint (checksums match) whose trainer state lacks a field or a tensor group:
    # the error names the checkpoint and what is missing, not just a bare KeyError.
    import inpaintssl as issl
    from inpaintssl.checkpoint import CheckpointError, read_checkpoint_dir, save_checkpoint
    from study_helpers import tiny_pretrain_config

    run = tmp_path / "run"
    issl.pretrain(tiny_pretrain_config(run))
    last = run / "checkpoints" / "last"
    tensors, documents = read_checkpoint_dir(last)
    _, meta = load_checkpoint(last)
    assert meta is not None
    if missing == "phase":
        del documents["trainer_state"]["phase"]
    else:
        del tensors["rng"]
    model = tensors.pop("model")
    save_checkpoint(last, model, meta, tensors=tensors, documents=documents)
    named = "'phase'" if missing == "phase" else "'rng'"
    with pytest.raises(CheckpointError, match=rf"cannot resume from .*last: its trainer state .*no {named}"):
        issl.pretrain(tiny_pretrain_config(run, run={"resume": True}))


def _trainer_on(tmp_path: Path, items: int, *, batch_size: int, steps_per_epoch: int) -> Trainer:
    return Trainer(
        model=_model(),
        objective=SegmentationObjective(loss=LOSSES.build("dice")),
        train_set=Subset(SyntheticShapes(split="train", num_images=8, size=SIZE), range(items)),
        val_set=SyntheticShapes(split="val", num_images=8, num_val=4, size=SIZE),
        phases=[Phase(name="finetune", lr=1e-2)],
        optim=OptimConfig(batch_size=batch_size, max_epochs=1, steps_per_epoch=steps_per_epoch),
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=RunContext.local(RunConfig(output_dir=tmp_path, device="cpu", seed=0, quiet=True)),
    )


def test_steps_per_epoch_beyond_what_an_epochs_passes_hold_is_refused_not_cut_short(tmp_path: Path) -> None:
    # 3 items in batches of 2 make 2 steps a pass; an epoch holds at most 1009 passes: 2018 steps.
    assert _trainer_on(tmp_path, 3, batch_size=2, steps_per_epoch=2018).steps_per_epoch() == 2018
    with pytest.raises(
        ConfigError, match=r"optim.steps_per_epoch=2019 needs 1010 passes .* so at most 2018 steps"
    ):
        _trainer_on(tmp_path, 3, batch_size=2, steps_per_epoch=2019)


def test_an_epoch_takes_its_steps_per_epoch_up_to_its_last_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One item, one step a pass, and (patched) 10 passes an epoch: 10 steps train, 11 would not fit.
    monkeypatch.setattr(loop, "_MAX_PASSES", 10)
    steps: list[float] = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: steps.append(1.0))
    try:
        outcome = _trainer_on(tmp_path, 1, batch_size=4, steps_per_epoch=10).fit()
    finally:
        handle.remove()
    assert len(steps) == 10 and outcome.epochs_run == 1
    with pytest.raises(ConfigError, match=r"steps_per_epoch=11 needs 11 passes over the 1 training item"):
        _trainer_on(tmp_path / "more", 1, batch_size=4, steps_per_epoch=11)
