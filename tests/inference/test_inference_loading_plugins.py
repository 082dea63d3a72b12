"""Loading a run whose backbone came from a plugin that is no longer installed (audit item 4b)."""

from __future__ import annotations

import importlib
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import inpaintssl as issl
from inpaintssl.checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from inpaintssl.registry import BACKBONES

PLUGIN = """
    from inpaintssl.models import UNet2d

    def tiny_unet(*, in_channels, out_channels, seed=None):
        return UNet2d(in_channels=in_channels, out_channels=out_channels, depth=2, base_width=4, seed=seed)
"""


def test_a_missing_plugin_backbone_is_named_with_the_distribution_that_provided_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "issl_tiny_backbone_dist-2.5.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: issl_tiny_backbone_dist\nVersion: 2.5.1\n")
    (dist / "entry_points.txt").write_text(
        "[inpaintssl.backbones]\ntiny_plugin_unet = issl_tiny_backbone:tiny_unet\n"
    )
    (site / "issl_tiny_backbone.py").write_text(textwrap.dedent(PLUGIN))
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        run = issl.finetune(
            {
                "data": {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 2, "num_test": 2}},
                "model": {"backbone": "tiny_plugin_unet"},
                "optim": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 2},
                "run": {"output_dir": str(tmp_path / "run"), "device": "cpu", "quiet": True},
            }
        ).run_dir
    finally:
        # Uninstalled: off the import path, out of the registry's memory and out of sys.modules.
        sys.path.remove(str(site))
        importlib.invalidate_caches()
        BACKBONES.unregister("tiny_plugin_unet")
        sys.modules.pop("issl_tiny_backbone", None)
    manifest = json.loads((run / "manifest.json").read_text())
    assert "issl_tiny_backbone_dist 2.5.1" in manifest["components"]["backbones"]["tiny_plugin_unet"]
    with pytest.raises(CheckpointError) as refused:
        issl.load_model(run)
    message = str(refused.value)
    assert "'tiny_plugin_unet' is not installed" in message
    assert "issl_tiny_backbone:tiny_unet" in message
    assert "installed by issl_tiny_backbone_dist 2.5.1 when the run was trained" in message
    assert "pip install 'issl_tiny_backbone_dist==2.5.1'" in message
    assert not re.search("Did you mean", message)


class _Partless(nn.Module):
    """A network of one convolution, without the encoder, decoder and head a run now checks for."""

    def __init__(self, *, in_channels: int, out_channels: int, seed: int | None = None) -> None:
        super().__init__()
        self.body = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def test_a_run_trained_before_runs_checked_the_parts_still_loads(tmp_path: Path) -> None:
    # Inference copies no parts: refusing the network would only strand the run's weights.
    BACKBONES.register("partless_load_test")(_Partless)
    try:
        weights = _Partless(in_channels=1, out_channels=2).state_dict()
        meta = CheckpointMeta(kind="pretrain", backbone="partless_load_test", in_channels=1, out_channels=2)
        save_checkpoint(tmp_path / "checkpoint", weights, meta)
        model = issl.load_model(tmp_path / "checkpoint")
    finally:
        BACKBONES.unregister("partless_load_test")
    assert isinstance(model, _Partless)
    assert torch.equal(model.body.weight, weights["body.weight"])
