"""The training loop under torchrun (gloo, CPU): every rank takes part in every collective.

Each test starts ``torch.distributed.run`` on a small worker script (written to ``tmp_path``) that
builds a :class:`~inpaintssl.training.loop.Trainer` on synthetic 16x16 slices and writes what each
rank saw to ``rank<N>.json`` / ``rank<N>.pt``; the test compares the ranks and, where it says so,
one process. A worker that hangs in a collective prints its stack and exits after
``_HANG_SECONDS``, so a regression fails the test instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from inpaintssl.checkpoint import CheckpointMeta, load_checkpoint
from inpaintssl.config import EarlyStoppingConfig, OptimConfig, PretextConfig, RunConfig
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.registry import BACKBONES, LOSSES
from inpaintssl.training.components import build_pretext_task
from inpaintssl.training.context import RunContext
from inpaintssl.training.distributed import DistInfo, use_sync_batchnorm
from inpaintssl.training.lock import acquire_run_lock
from inpaintssl.training.loop import Phase, Trainer
from inpaintssl.training.objectives import (
    REAL_LOSS_KEY,
    REAL_ROWS_KEY,
    InpaintingObjective,
    SegmentationObjective,
)
from study_helpers import tiny_numpy_pretrain_config, tiny_pretrain_config

pytestmark = pytest.mark.distributed

_HANG_SECONDS = 60

# What every worker starts with: a process group, and the test's own Trainer recipe (the same one
# as _local_trainer below, so one process can re-check what the ranks recorded).
_PRELUDE = f"""
import faulthandler, json, os, sys, traceback
from pathlib import Path

faulthandler.dump_traceback_later({_HANG_SECONDS}, exit=True)

import torch
import torch.distributed as dist
from torch import nn

from inpaintssl.checkpoint import CheckpointMeta
from inpaintssl.config import EarlyStoppingConfig, OptimConfig, PretextConfig, RunConfig
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.registry import BACKBONES, LOSSES
from inpaintssl.training.components import build_pretext_task
from inpaintssl.training.context import RunContext
from inpaintssl.training.distributed import DistInfo, shutdown_distributed
from inpaintssl.training.loop import NonFiniteLossError, Phase, Trainer
from inpaintssl.training.objectives import InpaintingObjective, SegmentationObjective

OUT = Path(sys.argv[1])
INFO = DistInfo.from_env()
RANK = INFO.rank
dist.init_process_group("gloo", rank=RANK, world_size=INFO.world_size)


def unet():
    return BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0)


def dice_ce(objective=SegmentationObjective):
    loss = LOSSES.build("dice_ce")
    return objective(loss=loss, predict_onehot=loss.predict_onehot)


def trainer(
    folder, *, phases, model=None, num_val=4, objective=None, max_epochs=1, batch_size=4, num_train=16
):
    return Trainer(
        model=unet() if model is None else model,
        objective=objective or dice_ce(),
        train_set=SyntheticShapes(split="train", num_images=num_train, size=(16, 16)),
        val_set=SyntheticShapes(split="val", num_images=16, num_val=num_val, size=(16, 16)),
        phases=phases,
        optim=OptimConfig(batch_size=batch_size, max_epochs=max_epochs),
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=RunContext(
            run=RunConfig(output_dir=OUT / folder, device="cpu", seed=0, quiet=True, channels_last=False),
            device=torch.device("cpu"),
            dist=INFO,
            amp_dtype=None,
        ),
    )


def inpainting():
    # As _inpainting in the test: the pretraining objective, whose corruption is keyed per sample.
    task = build_pretext_task(PretextConfig(patch_size=4, bank_size=4), seed=0)
    return InpaintingObjective(task, loss=LOSSES.build("l2"))


def batchnorm_net():
    # As _batchnorm_net in the test.
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def report(**values):
    (OUT / f"rank{{RANK}}.json").write_text(json.dumps(values))


class Held:
    # An object to watch being freed, through a weakref.
    pass


def record_leaving(watched):
    # dist.destroy_process_group notes, each time it is called, whether watched() was freed.
    freed_when_leaving = []
    leave = dist.destroy_process_group

    def recording_leave(*args, **kwargs):
        freed_when_leaving.append(watched() is None)
        return leave(*args, **kwargs)

    dist.destroy_process_group = recording_leave
    return freed_when_leaving
"""


def _launch(tmp_path: Path, script: Path, *, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """``script`` on ``nproc`` CPU processes under ``torch.distributed.run``, given ``tmp_path``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(script),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=4 * _HANG_SECONDS,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _torchrun(tmp_path: Path, body: str, *, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "worker.py"
    # Left as the library's own entry points leave it (not dist.destroy_process_group(): see
    # test_leaving_the_group_first_frees_what_only_a_collection_frees).
    script.write_text(_PRELUDE + textwrap.dedent(body) + "\nshutdown_distributed()\n")
    return _launch(tmp_path, script, nproc=nproc)


def _reports(tmp_path: Path, run: subprocess.CompletedProcess[str], nproc: int = 2) -> list[dict[str, Any]]:
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(nproc)]


def _unet() -> nn.Module:
    model: nn.Module = BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0)
    return model


def _inpainting() -> InpaintingObjective:
    """The pretraining objective (L2 of eq. A1), as the workers' ``inpainting()``."""
    task = build_pretext_task(PretextConfig(patch_size=4, bank_size=4), seed=0)
    return InpaintingObjective(task, loss=LOSSES.build("l2"))


def _local_trainer(
    folder: Path,
    *,
    model: nn.Module | None = None,
    num_val: int = 4,
    objective: Any = None,
    num_train: int = 16,
    batch_size: int = 4,
    steps_per_epoch: int | None = None,
    dist: DistInfo | None = None,
) -> Trainer:
    """One process, the workers' recipe; with ``dist``, one rank of a job (without a process group)."""
    loss = LOSSES.build("dice_ce")
    run = RunConfig(output_dir=folder, device="cpu", seed=0, quiet=True, channels_last=False)
    return Trainer(
        model=model or _unet(),
        objective=objective or SegmentationObjective(loss=loss, predict_onehot=loss.predict_onehot),
        train_set=SyntheticShapes(split="train", num_images=num_train, size=(16, 16)),
        val_set=SyntheticShapes(split="val", num_images=16, num_val=num_val, size=(16, 16)),
        phases=[Phase(name="check", lr=1e-3)],
        optim=OptimConfig(batch_size=batch_size, max_epochs=1, steps_per_epoch=steps_per_epoch),
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=RunContext.local(run)
        if dist is None
        else RunContext(run=run, device=torch.device("cpu"), dist=dist, amp_dtype=None),
    )


def test_freezing_phases_train_on_two_processes(tmp_path: Path) -> None:
    # DDP registers the parameters that train when it is built: one wrapper for the whole run
    # waited for the frozen encoder's gradients ("Expected to have finished reduction").
    run = _torchrun(
        tmp_path,
        """
        import logging
        logging.basicConfig(level=logging.INFO, filename=str(OUT / f"log{RANK}.txt"), format="%(message)s")
        frozen = Phase(name="frozen", lr=1e-2, frozen_parts=("encoder",))
        model = unet()
        trainer("frozen", model=model, phases=[frozen]).fit()
        torch.save(model.state_dict(), OUT / f"frozen{RANK}.pt")
        model = unet()
        outcome = trainer("two_phases", model=model, phases=[frozen, Phase(name="unfrozen", lr=1e-3)]).fit()
        torch.save(model.state_dict(), OUT / f"two_phases{RANK}.pt")
        report(phases=[row["phase"] for row in outcome.history], best=outcome.best_val_loss)
        """,
    )
    first, second = _reports(tmp_path, run)
    assert first == second and first["phases"] == ["frozen", "unfrozen"]
    # The epoch lines hold losses reduced over the ranks: rank 0 logs them, one per epoch.
    logs = [(tmp_path / f"log{r}.txt").read_text().splitlines() for r in (0, 1)]
    assert [line.split(":")[0] for line in logs[0] if "] epoch " in line] == [
        "[frozen] epoch 0",  # the first run
        "[frozen] epoch 0",  # the second, of two phases
        "[unfrozen] epoch 1",
    ]
    assert logs[1] == []
    start = _unet().state_dict()
    for name in ("frozen", "two_phases"):
        ranks = [torch.load(tmp_path / f"{name}{r}.pt") for r in (0, 1)]
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in start), f"{name}: the replicas differ"
        best, _ = load_checkpoint(tmp_path / name)
        assert all(torch.equal(best[k], ranks[0][k]) for k in start), f"{name}: not the best checkpoint"
    frozen = torch.load(tmp_path / "frozen0.pt")
    encoder = [k for k in start if k.startswith("encoder.")]
    assert encoder and all(torch.equal(frozen[k], start[k]) for k in encoder)
    assert any(not torch.equal(frozen[k], start[k]) for k in start if not k.startswith("encoder."))
    unfrozen = torch.load(tmp_path / "two_phases0.pt")
    assert any(not torch.equal(unfrozen[k], start[k]) for k in encoder)


def test_a_rank_without_validation_batches_takes_part_in_validation(tmp_path: Path) -> None:
    # One validation slice, two processes: rank 1 scores nothing, and once returned early while
    # rank 0 waited for it in the all-reduce of the Dice overlaps.
    run = _torchrun(
        tmp_path,
        """
        outcome = trainer("run", num_val=1, phases=[Phase(name="finetune", lr=1e-2)], max_epochs=2).fit()
        report(val_loss=[row["val_loss"] for row in outcome.history],
               val_dice=[row.get("val_dice") for row in outcome.history])
        """,
    )
    first, second = _reports(tmp_path, run)
    assert first == second and len(first["val_loss"]) == 2
    assert all(dice is not None for dice in first["val_dice"])


def test_the_validation_loss_of_given_weights_is_the_same_on_one_and_three_processes(tmp_path: Path) -> None:
    # Six slices in batches of 4: one process scores batches {0-3} and {4, 5}. The Dice loss sums
    # over a batch, so ranks that batch their slices otherwise (strided: {0, 3}, {1, 4}, {2, 5})
    # get another loss; the third rank here has no batch at all.
    run = _torchrun(
        tmp_path,
        """
        loss, dice = trainer("unused", num_val=6, phases=[Phase(name="x", lr=1e-3)])._validate()
        report(loss=loss, dice=dice)
        """,
        nproc=3,
    )
    reports = _reports(tmp_path, run, nproc=3)
    assert reports[0] == reports[1] == reports[2]
    loss, dice = _local_trainer(tmp_path / "single", num_val=6)._validate()
    assert reports[0]["loss"] == pytest.approx(loss, rel=1e-12, abs=0)
    assert reports[0]["dice"] == pytest.approx(dice, rel=1e-12, abs=0)


def test_each_rank_is_judged_by_its_share_of_the_node_and_one_refusal_stops_every_rank(
    tmp_path: Path,
) -> None:
    # First both ranks see room for one and a half estimates: each alone would pass, together they
    # need two. Then rank 0 sees room for four and rank 1 (another node's view) still for one and
    # a half: rank 1 is refused, and rank 0, which would have trained, stops too instead of
    # waiting for it in the first collective.
    run = _torchrun(
        tmp_path,
        """
        from unittest import mock
        from inpaintssl.training import memory_check

        need = memory_check.estimate_training_memory(
            unet, batch_size=4, channels=1, image_size=(16, 16)
        ).total_bytes
        ctx = RunContext(
            run=RunConfig(output_dir=OUT / "run", device="cpu"), device=torch.device("cpu"), dist=INFO,
            amp_dtype=None,
        )

        def verdict(room):
            free = (int(room * need), f"the memory rank {RANK} sees")
            with mock.patch.object(memory_check, "available_memory", return_value=free):
                try:
                    memory_check.check_run_memory(
                        backbone="unet2d", params={"depth": 2, "base_width": 4},
                        train_set=SyntheticShapes(split="train", num_images=16, size=(16, 16)),
                        image_size=None, in_channels=1, out_channels=2, batch_size=4, ctx=ctx,
                    )
                    return None
                except memory_check.InsufficientMemoryError as exc:
                    return str(exc)

        report(
            local_world_size=INFO.local_world_size,
            shared=verdict(1.5),
            one_node_short=verdict(4.0 if RANK == 0 else 1.5),
        )
        """,
    )
    first, second = _reports(tmp_path, run)
    assert first["local_world_size"] == second["local_world_size"] == 2
    for rank, seen in ((0, first), (1, second)):
        shared = seen["shared"]
        assert (
            shared is not None
            and f"counted 2 processes on this node that share the memory rank {rank}" in shared
        )
    refused = second["one_node_short"]
    assert refused.startswith("16x16 slices (data.image_size unset) with optim.batch_size=4")
    assert "counted 2 processes on this node that share the memory rank 1 sees" in refused
    assert first["one_node_short"] == f"rank 1 of 2 refused the run, so this rank stops too: {refused}"


def test_the_train_loss_of_fixed_weights_is_the_same_on_one_and_three_processes(tmp_path: Path) -> None:
    # Ten slices on three processes: DistributedSampler deals twelve, repeating two, so ranks 1
    # and 2 each end with a batch of one real slice and one repeat. The recorded train_loss
    # averaged the repeats in. With the weights held still (learning rate 0) every slice's L2
    # (a mean over the batch's images, its corruption keyed by the slice) is the same whatever
    # batch or rank it lands in, so the epoch's mean over the ten slices is one process's.
    run = _torchrun(
        tmp_path,
        """
        Trainer.learning_rate = lambda self, phase, *, epoch, step: 0.0
        model = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
        outcome = trainer(
            "l2", model=model, objective=inpainting(), num_train=10, batch_size=2,
            phases=[Phase(name="pretrain", lr=1e-3)],
        ).fit()
        report(train_loss=outcome.history[0]["train_loss"])
        """,
        nproc=3,
    )
    reports = _reports(tmp_path, run, nproc=3)
    assert reports[0] == reports[1] == reports[2]
    model = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
    single = _local_trainer(
        tmp_path / "single", model=model, objective=_inpainting(), num_train=10, batch_size=2
    )
    with mock.patch.object(Trainer, "learning_rate", lambda self, phase, *, epoch, step: 0.0):
        expected = single.fit().history[0]["train_loss"]
    assert reports[0]["train_loss"] == pytest.approx(expected, rel=1e-6, abs=0)


@pytest.mark.parametrize("steps_per_epoch", [None, 7])
def test_the_train_loss_counts_every_slice_once_per_pass_and_no_padding(steps_per_epoch: int | None) -> None:
    # Three ranks of a job (no process group is needed to deal the data): the rows the train_loss
    # counts are each of the ten slices once per pass over the data, the padding rows none.
    # Seven steps of batch 2 are three and a half passes of a rank's four items.
    counted: dict[int, list[int]] = {}
    dealt = 0
    for rank in range(3):
        dist = DistInfo(rank=rank, world_size=3, local_world_size=3)
        trainer = _local_trainer(
            Path("unused"), num_train=10, batch_size=2, steps_per_epoch=steps_per_epoch, dist=dist
        )
        for data_pass, real, batch in trainer._epoch_batches(phase_index=0, epoch=0, desc="x"):
            counted.setdefault(data_pass, []).extend(batch["index"][:real].tolist())
            dealt += len(batch["index"])
    full_passes = [counted[p] for p in sorted(counted)][: 1 if steps_per_epoch is None else 3]
    assert all(sorted(indices) == list(range(10)) for indices in full_passes), counted
    assert dealt > sum(len(indices) for indices in counted.values())  # padding was dealt, not counted


def test_an_objective_records_the_loss_of_a_batchs_real_rows_and_optimises_them_all() -> None:
    loss_fn = LOSSES.build("dice_ce")
    objective = SegmentationObjective(loss=loss_fn)
    model = _unet()
    images = torch.randn(3, 1, 16, 16)
    labels = torch.zeros(3, 2, 16, 16)
    labels[:, 0, :8] = 1
    batch: dict[str, Any] = {"image": images, "label": labels, REAL_ROWS_KEY: 2}
    loss = objective.loss(model, batch, keys=torch.arange(3))
    assert torch.equal(loss, objective.loss(model, {"image": images, "label": labels}, keys=torch.arange(3)))
    with torch.no_grad():
        real = loss_fn(model(images[:2]), labels[:2])
    torch.testing.assert_close(batch[REAL_LOSS_KEY], real, rtol=1e-6, atol=0)
    assert not batch[REAL_LOSS_KEY].requires_grad


def _batchnorm_net() -> nn.Sequential:
    """A segmentation network with BatchNorm (the default U-Net has GroupNorm); as the workers'."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def test_the_best_checkpoint_of_a_batchnorm_network_has_the_recorded_validation_loss(tmp_path: Path) -> None:
    # Each rank updates BatchNorm's running statistics from its own batches; rank 0 saves its own.
    # Validating with every rank's own statistics recorded a loss that no saved model has (two
    # validation batches here, one per rank).
    run = _torchrun(
        tmp_path,
        """
        torch.manual_seed(0)
        model = batchnorm_net()
        phases = [Phase(name="finetune", lr=3e-2)]
        outcome = trainer("bn", model=model, num_val=8, phases=phases, max_epochs=2).fit()
        report(best=outcome.best_val_loss, epoch=outcome.best_epoch)
        """,
    )
    first, second = _reports(tmp_path, run)
    assert first == second
    weights, meta = load_checkpoint(tmp_path / "bn")
    assert meta is not None and meta.epoch == first["epoch"]
    model = _batchnorm_net()
    model.load_state_dict(weights)
    assert _local_trainer(tmp_path / "single", model=model, num_val=8).validate() == pytest.approx(
        first["best"], rel=1e-12, abs=0
    )


def test_sync_batchnorm_shares_the_layers_tensors_and_is_undone() -> None:
    model = _batchnorm_net().eval()
    batchnorm = model[1]
    images = torch.randn(2, 1, 8, 8)
    expected = model(images)
    undo = use_sync_batchnorm(model)
    synced = model[1]
    assert isinstance(synced, nn.SyncBatchNorm)
    assert synced.weight is batchnorm.weight and synced.running_mean is batchnorm.running_mean
    assert list(model.state_dict()) == list(_batchnorm_net().state_dict())
    torch.testing.assert_close(model(images), expected, rtol=0, atol=0)
    undo()
    assert model[1] is batchnorm


def test_a_non_finite_loss_on_one_rank_stops_every_rank_with_the_same_error(tmp_path: Path) -> None:
    # Rank 0's second step is NaN: it raised alone, and rank 1 died in the next collective
    # ("Connection closed by peer"; on NCCL it would wait while rank 0 was alive).
    run = _torchrun(
        tmp_path,
        """
        class NaNOnRankZero(SegmentationObjective):
            calls = 0

            def loss(self, model, batch, *, keys):
                value = super().loss(model, batch, keys=keys)
                self.calls += 1
                return value * float("nan") if RANK == 0 and self.calls == 2 else value

        objective = dice_ce(NaNOnRankZero)
        try:
            trainer("nan", objective=objective, phases=[Phase(name="finetune", lr=1e-3)], max_epochs=2).fit()
            report(raised=None)
        except Exception as exc:
            report(raised=type(exc).__name__, message=str(exc))
        """,
    )
    first, second = _reports(tmp_path, run)
    assert first["raised"] == second["raised"] == "NonFiniteLossError", (first, second)
    assert first["message"] == second["message"]
    assert "(nan on 1 of 2 processes) in phase 'finetune' at epoch 0 step 1" in first["message"]


def test_leaving_the_group_first_frees_what_only_a_collection_frees(tmp_path: Path) -> None:
    # A run that raised leaves its trainer in reference cycles through the traceback; freed at the
    # interpreter's exit, after the group was gone, gloo aborted now and then (SIGABRT, "terminate
    # called without an active exception", about one run in 30 of the non-finite loss test on a
    # loaded machine). With the collector off, a cycle outlives everything but a collection.
    run = _torchrun(
        tmp_path,
        """
        import gc, weakref

        gc.disable()
        held = Held()
        held.itself = held
        freed_before_leaving = record_leaving(weakref.ref(held))
        del held
        shutdown_distributed()
        report(freed_before_leaving=freed_before_leaving, in_group=dist.is_initialized())
        """,
        nproc=1,
    )
    assert _reports(tmp_path, run, nproc=1) == [{"freed_before_leaving": [True], "in_group": False}]


def test_a_run_that_fails_under_torchrun_frees_what_it_held_before_leaving_the_group(tmp_path: Path) -> None:
    # The error on its way out of run_session holds the failed run's frames, and with them its
    # trainer: no collection frees what a live traceback reaches, so those frames are cleared.
    run = _torchrun(
        tmp_path,
        """
        import gc, weakref

        from inpaintssl.training.context import run_session

        gc.disable()
        held_by_the_run = []  # a weakref: the run's own frame holds the one reference
        freed_before_leaving = record_leaving(lambda: held_by_the_run[0]())

        def failing_run():
            held = Held()
            held_by_the_run.append(weakref.ref(held))
            raise RuntimeError("the run failed")

        try:
            with run_session(RunConfig(output_dir=OUT / "run", device="cpu", seed=0, quiet=True)):
                failing_run()
        except RuntimeError as exc:
            # The prelude's group is this script's, so the run leaves it joined; the script leaves
            # it as the docs say, with the error the run stopped with.
            shutdown_distributed(error=exc)
            lines = [line for line in traceback.format_exception(exc) if "failing_run" in line]
            report(freed_before_leaving=freed_before_leaving, named=len(lines), message=str(exc))
        """,
    )
    for seen in _reports(tmp_path, run):
        # The traceback still names the frame whose variables went.
        assert seen == {"freed_before_leaving": [True], "named": 2, "message": "the run failed"}


@pytest.mark.parametrize("run_ends", ["ended", "failed"])
def test_a_run_started_while_handling_an_error_leaves_that_errors_variables(
    tmp_path: Path, run_ends: str
) -> None:
    # A failed run's error chains to the one its caller was handling (__context__): clearing the
    # whole chain would wipe the caller's frames, which the caller may still read.
    run = _torchrun(
        tmp_path,
        f"""
        from inpaintssl.training.context import run_session

        def caller_step():
            kept = "the caller's"
            raise ValueError("handled by the caller")

        def innermost_variables(error):
            tb = error.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            return dict(tb.tb_frame.f_locals)

        try:
            caller_step()
        except ValueError as handled:
            chained = None
            try:
                with run_session(RunConfig(output_dir=OUT / "run", device="cpu", seed=0, quiet=True)):
                    if {run_ends!r} == "failed":
                        raise RuntimeError("the run failed")
            except RuntimeError as run_error:
                chained = run_error.__context__ is handled
                # The prelude's group is this script's to leave, as the docs say.
                shutdown_distributed(error=run_error, caller_error=handled)
            else:
                shutdown_distributed()
            report(kept=innermost_variables(handled).get("kept"), chained=chained)
        """,
        nproc=1,
    )
    chained = True if run_ends == "failed" else None
    assert _reports(tmp_path, run, nproc=1) == [{"kept": "the caller's", "chained": chained}]


_SESSION_WORKER = f"""
import faulthandler, json, os, sys
from pathlib import Path

faulthandler.dump_traceback_later({_HANG_SECONDS}, exit=True)

from inpaintssl.config import RunConfig
from inpaintssl.training.context import run_session

OUT = Path(sys.argv[1])
RANK = int(os.environ["RANK"])
try:
    # run_session joins the group itself, as the library's own entry points do.
    with run_session(RunConfig(output_dir=OUT / "run", device="cpu", quiet=True)):
        seen = {{"refused": None}}
except Exception as exc:
    seen = {{"refused": type(exc).__name__, "message": str(exc)}}
(OUT / f"rank{{RANK}}.json").write_text(json.dumps(seen))
"""


@pytest.mark.parametrize("refusal", ["locked", "file"])
def test_when_rank_zero_cannot_claim_the_run_folder_every_rank_stops_with_its_reason(
    tmp_path: Path, refusal: str
) -> None:
    # Rank 0 alone claims the folder. Before it sent its verdict, rank 1 waited for it in the
    # group's rendezvous (or, in a group its caller had joined, trained on) until a launcher ended it.

    script = tmp_path / "worker.py"
    script.write_text(_SESSION_WORKER)
    if refusal == "file":
        (tmp_path / "run").write_text("not a folder")
        expected = ("ConfigError", f"'{tmp_path / 'run'}' is a file")
        run = _launch(tmp_path, script)
    else:
        expected = ("RunFolderLockedError", f"pid {os.getpid()}")
        with acquire_run_lock(tmp_path / "run"):
            run = _launch(tmp_path, script)
    first, second = _reports(tmp_path, run)
    kind, named = expected
    assert first["refused"] == second["refused"] == kind
    assert named in first["message"]
    assert (
        second["message"]
        == f"rank 0 of 2 could not claim the run folder, so this rank stops too: {first['message']}"
    )


_API_WORKER = f"""
import faulthandler, json, os, sys
from pathlib import Path

faulthandler.dump_traceback_later({_HANG_SECONDS}, exit=True)

import inpaintssl as issl
from inpaintssl.training import stages

OUT = Path(sys.argv[1])
RANK = int(os.environ["RANK"])
calls = []
real = stages.preflight


def counted(*args, **kwargs):
    calls.append(1)
    return real(*args, **kwargs)


stages.preflight = counted
config = json.loads((OUT / "config.json").read_text())
try:
    issl.pretrain(config)
    error = None
except Exception as exc:
    error = [type(exc).__name__, str(exc)]
(OUT / f"rank{{RANK}}.json").write_text(json.dumps({{"preflights": len(calls), "error": error}}))
"""


def _api_torchrun(tmp_path: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = tmp_path / "api_worker.py"
    script.write_text(_API_WORKER)
    run = _launch(tmp_path, script)
    return _reports(tmp_path, run)


def test_only_rank_0_reads_the_data_for_the_preflight_check_and_every_rank_hears_its_verdict(
    tmp_path: Path,
) -> None:
    # Every rank reading every case in full would read a dataset once per process.
    config = tiny_numpy_pretrain_config(tmp_path / "data", [("train", "c1"), ("train", "c2"), ("val", "c3")])
    config["optim"] = {"max_epochs": 1, "batch_size": 2}
    first, second = _api_torchrun(tmp_path, config)
    assert (first, second) == ({"preflights": 1, "error": None}, {"preflights": 0, "error": None})
    # A case with a NaN voxel, which opens fine and only a full read finds: rank 0 finds it, and
    # rank 1 stops with the same words instead of waiting for rank 0 in its first collective.
    volume = np.load(tmp_path / "data" / "train" / "c2_img.npy")
    volume[3, 4, 1] = np.nan
    np.save(tmp_path / "data" / "train" / "c2_img.npy", volume)
    config["run"] = {**config["run"], "output_dir": str(tmp_path / "data" / "run2")}
    first, second = _api_torchrun(tmp_path, config)
    assert first["error"] is not None and first["error"][0] == "DataError", first
    assert "c2_img.npy" in first["error"][1] and "NaN" in first["error"][1]
    verdict = f"rank 0's pre-flight check of the data failed: {first['error'][1]}"
    assert second["error"] == ["DataError", verdict]


def test_when_rank_zero_refuses_to_resume_every_rank_stops_with_its_reason(tmp_path: Path) -> None:
    # Rank 0 alone records the run and checks a resume against the record. Its refusal reached no
    # other rank: rank 1 went on to the first barrier and died there with gloo's "Connection closed
    # by peer" (under NCCL it would wait for the group's timeout).
    config = tiny_numpy_pretrain_config(tmp_path / "data", [("train", "c1"), ("train", "c2"), ("val", "c3")])
    config["optim"] = {"max_epochs": 1, "batch_size": 2}
    assert _api_torchrun(tmp_path, config) == [
        {"preflights": 1, "error": None},
        {"preflights": 0, "error": None},
    ]
    config["optim"] = {**config["optim"], "lr": 0.5}
    config["run"] = {**config["run"], "resume": True}
    first, second = _api_torchrun(tmp_path, config)
    assert first["error"] is not None and first["error"][0] == "ConfigError", first
    assert "cannot resume" in first["error"][1] and "optim.lr" in first["error"][1]
    verdict = f"rank 0 of 2 could not record the run, so this rank stops too: {first['error'][1]}"
    assert second["error"] == ["ConfigError", verdict]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # A typo or a stray value: int() named neither the variable nor what it should hold.
        ({"RANK": "abc", "WORLD_SIZE": "2"}, "RANK='abc' is not a whole number (expected one of at least 0)"),
        ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
        (
            {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "x"},
            "LOCAL_WORLD_SIZE='x' is not a whole number",
        ),
        # No process at all: the memory check divided by it (ZeroDivisionError).
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 is out of range (expected at least 1)"),
        # Ranks outside the job waited in the rendezvous for a job that cannot form.
        (
            {"RANK": "2", "WORLD_SIZE": "2"},
            "RANK=2 is out of range (expected a rank of WORLD_SIZE=2 processes: 0 to 1)",
        ),
        (
            {"RANK": "-1", "WORLD_SIZE": "2"},
            "RANK=-1 is out of range (expected a rank of WORLD_SIZE=2 processes: 0 to 1)",
        ),
        # A lone process that is not rank 0 wrote no run folder and printed nothing.
        (
            {"RANK": "1"},
            "RANK=1 is out of range (expected a rank of WORLD_SIZE=1 processes; WORLD_SIZE is unset",
        ),
        (
            {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
            "LOCAL_RANK=2 is out of range (expected a rank of LOCAL_WORLD_SIZE=2 processes: 0 to 1)",
        ),
        (
            {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "3"},
            "LOCAL_WORLD_SIZE=3 is out of range (expected 1 to 2: at most WORLD_SIZE=2",
        ),
        # Every such process defaulted to rank 0 and waited for the others in the rendezvous.
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
        # Without LOCAL_WORLD_SIZE a LOCAL_RANK was only checked to be >= 0: 5 in a job of 2 was
        # kept, and 3 (four processes on the node) was counted as one process per node by the
        # memory check, which then judged the node's memory as each one's own.
        (
            {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "5"},
            "LOCAL_RANK=5 is out of range (expected a rank of WORLD_SIZE=2 processes: 0 to 1)",
        ),
        (
            {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "3"},
            "LOCAL_RANK=3 is set but LOCAL_WORLD_SIZE is not: at least 4 processes share this node",
        ),
    ],
)
def test_a_launch_environment_torchrun_cannot_have_set_is_refused_naming_the_variable(
    env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ValueError, match="environment variable ") as raised:
        DistInfo.from_env(env)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DistInfo()),
        ({"RANK": "0"}, DistInfo()),
        # torchrun's four variables, as it sets them for rank 5 of two nodes of four.
        (
            {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"},
            DistInfo(rank=5, local_rank=1, world_size=8, local_world_size=4),
        ),
        # A launcher without LOCAL_WORLD_SIZE runs one process per node: its LOCAL_RANK is 0.
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, DistInfo(rank=1, local_rank=0, world_size=2)),
    ],
)
def test_a_launch_environment_torchrun_sets_is_read_as_it_says(
    env: dict[str, str], expected: DistInfo
) -> None:
    assert DistInfo.from_env(env) == expected


def test_a_run_under_an_impossible_launch_environment_stops_before_it_creates_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaintssl.training.context import run_session

    monkeypatch.setenv("WORLD_SIZE", "0")
    folder = tmp_path / "run"
    with (
        pytest.raises(ValueError, match=r"WORLD_SIZE=0 is out of range"),
        run_session(RunConfig(output_dir=folder, device="cpu")),
    ):
        pass
    assert not folder.exists()


def test_a_group_the_caller_joined_is_left_to_the_caller(tmp_path: Path) -> None:
    # A harness that owns the group (to broadcast a config, or for more distributed work after
    # training) found it destroyed by the first pretrain call: its next collective failed.
    import torch.distributed as dist

    import inpaintssl as issl

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        issl.pretrain(tiny_pretrain_config(tmp_path / "run"))
        assert dist.is_initialized()
        total = torch.ones(1)
        dist.all_reduce(total)
        assert total.item() == 1.0
    finally:
        dist.destroy_process_group()
