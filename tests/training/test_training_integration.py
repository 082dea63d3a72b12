"""End to end on CPU: pretrain, transfer, fine-tune on synthetic shapes, and beat chance clearly."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import inpaintssl as issl
from inpaintssl.checkpoint import load_checkpoint
from inpaintssl.data.synthetic import SyntheticShapes

TINY_MODEL = {"backbone": "unet2d", "params": {"depth": 3, "base_width": 8}}
DATA = {"dataset": "synthetic", "params": {"num_images": 48, "num_val": 12, "num_test": 16, "size": [32, 32]}}


def _pretrain_config(out: Path, **optim: Any) -> dict[str, Any]:
    return {
        "data": DATA,
        "model": TINY_MODEL,
        "pretext": {"task": "context_restoration", "patch_size": 4, "bank_size": 8},
        "optim": {"max_epochs": 4, "batch_size": 8, **optim},
        "run": {"output_dir": str(out), "quiet": True, "seed": 1, "device": "cpu"},
    }


def _finetune_config(out: Path, pretrained: Path | None, **transfer: Any) -> dict[str, Any]:
    return {
        "data": DATA,
        "model": TINY_MODEL,
        "optim": {"max_epochs": 8, "steps_per_epoch": 10, "batch_size": 8, "lr": 3e-3},
        "transfer": {"pretrained": None if pretrained is None else str(pretrained), **transfer},
        "run": {"output_dir": str(out), "quiet": True, "seed": 2, "device": "cpu"},
    }


def _chance_dice(seed: int = 0) -> float:
    """Dice of a prediction that labels each pixel at random with the classes' base rates."""
    test = SyntheticShapes(split="test", num_images=48, num_test=16, size=(32, 32))
    labels = torch.stack([test[i]["label"] for i in range(len(test))]).numpy() > 0.5
    rng = np.random.default_rng(seed)
    dice = []
    for k in range(labels.shape[1]):
        rate = labels[:, k].mean()
        guess = rng.random(labels[:, k].shape) < rate
        inter = (guess & labels[:, k]).sum()
        dice.append(2 * inter / (guess.sum() + labels[:, k].sum()))
    return float(np.mean(dice))


@pytest.mark.slow
def test_pretrain_transfer_finetune_beats_chance(tmp_path: Path) -> None:
    pre = issl.pretrain(_pretrain_config(tmp_path / "pre"))
    assert pre.epochs_run == 4 and np.isfinite(pre.best_val_loss)
    for name in ("config.yaml", "manifest.json", "metrics.csv", "splits.json", "val_inpainting.csv"):
        assert (tmp_path / "pre" / name).is_file(), name
    manifest = json.loads((tmp_path / "pre" / "manifest.json").read_text())
    assert manifest["seed"] == 1 and len(manifest["data_files_sha256"]) == 64
    # run.amp and run.channels_last are left "auto": on the CPU that is float32 and channels_last.
    assert manifest["autocast_dtype"] is None and manifest["channels_last"] is True
    assert manifest["working_directory"] == os.getcwd()
    # Pretraining must learn: validation L2 falls well below its first epoch.
    val_losses = [row["val_loss"] for row in pre.history]
    assert val_losses[-1] < 0.7 * val_losses[0], val_losses
    assert pre.evaluation is not None and len(pre.evaluation) == 12

    ft = issl.finetune(_finetune_config(tmp_path / "ft", pre.run_dir))
    assert ft.transfer is not None and ft.transfer.copied
    components = json.loads((tmp_path / "ft" / "manifest.json").read_text())["components"]
    assert components["transfer_strategies"] == {
        "encoder": "built-in inpaintssl.transfer_learning.strategies:EncoderTransfer"
    }
    ((loss, origin),) = components["losses"].items()  # the recipe's loss, whichever it is
    assert loss in issl.registry.LOSSES.names() and origin.startswith("built-in inpaintssl.losses.")
    dice = ft.mean_dice()
    assert set(dice) == {"disc", "square"}
    chance = _chance_dice()
    assert chance < 0.3
    # A clear margin: every class at least 0.3 above chance, the mean at least 0.4 above.
    assert min(dice.values()) > chance + 0.3, (dice, chance)
    assert sum(dice.values()) / len(dice) > chance + 0.4, (dice, chance)
    with open(tmp_path / "ft" / "test_metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len([r for r in rows if r["level"] == "image"]) == 16

    # evaluate() from the checkpoint alone reproduces the run's own test table.
    table = issl.evaluate(tmp_path / "ft", DATA, split="test", device="cpu")
    again = table.select(level="image").mean()
    assert again["dice_mean"] == pytest.approx(ft.test.select(level="image").mean()["dice_mean"], abs=1e-6)


@pytest.mark.slow
def test_best_checkpoint_is_restored_and_matches_history(tmp_path: Path) -> None:
    result = issl.finetune(
        {
            **_finetune_config(tmp_path / "ft", None),
            "optim": {"max_epochs": 5, "batch_size": 8, "lr": 5e-2},
        }
    )
    losses = [row["val_loss"] for row in result.history]
    best_epoch = int(np.argmin(losses))
    assert result.best_epoch == best_epoch and result.best_val_loss == pytest.approx(min(losses))
    state, meta = load_checkpoint(tmp_path / "ft")
    assert meta is not None and meta.epoch == best_epoch
    assert result.model is not None
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor.cpu(), state[name]), name


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_mixed_precision_pipeline_beats_chance(tmp_path: Path, amp: str) -> None:
    # The same pipeline and margins as the CPU test, on the GPU under autocast (fp16 also runs the
    # gradient scaler); checkpoints stay float32 and portable to the CPU.
    cuda_run = {"device": "cuda", "amp": amp}
    pre_config = _pretrain_config(tmp_path / "pre")
    pre_config["run"].update(cuda_run)
    pre = issl.pretrain(pre_config)
    val_losses = [row["val_loss"] for row in pre.history]
    assert all(np.isfinite(val_losses)) and val_losses[-1] < 0.7 * val_losses[0], val_losses

    ft_config = _finetune_config(tmp_path / "ft", pre.run_dir)
    ft_config["run"].update(cuda_run)
    ft = issl.finetune(ft_config)
    assert ft.model is not None and next(ft.model.parameters()).device.type == "cuda"
    dice = ft.mean_dice()
    chance = _chance_dice()
    assert min(dice.values()) > chance + 0.3, (dice, chance)

    state, _ = load_checkpoint(tmp_path / "ft")
    assert all(
        t.dtype == torch.float32 and t.device.type == "cpu" for t in state.values() if t.is_floating_point()
    )
    on_cpu = issl.evaluate(tmp_path / "ft", DATA, split="test", device="cpu").select(level="image").mean()
    on_gpu = issl.evaluate(tmp_path / "ft", DATA, split="test", device="cuda").select(level="image").mean()
    # Evaluation runs without autocast on both devices; only kernel rounding (TF32 convolutions on
    # CUDA) may flip a few thresholded pixels.
    assert on_gpu["dice_mean"] == pytest.approx(on_cpu["dice_mean"], abs=5e-3)
