"""issl.evaluate of the model a ``pretrain`` / ``finetune`` result hands back: scored by its record.

The result's model carries its run's best ``meta.json`` as ``checkpoint_meta``; evaluate read only
the ``inference_meta`` of ``load_model``, so it scored a pretraining network as a segmentation one
and a softmax head with a sigmoid, and both failed on their channel count.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from torch import nn

import inpaintssl as issl
from evaluation_helpers import assert_same_table
from inpaintssl.checkpoint import CheckpointMeta

DATA = {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 4, "num_test": 4, "size": [16, 16]}}
MODEL = {"backbone": "unet2d", "params": {"depth": 2, "base_width": 4}}


def _config(out: Path, **extra: Any) -> dict[str, Any]:
    return {
        "data": DATA,
        "model": MODEL,
        "optim": {"max_epochs": 2, "batch_size": 4},
        "run": {"output_dir": str(out), "quiet": True, "device": "cpu", "seed": 0},
        **extra,
    }


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> issl.PretrainResult:
    out = tmp_path_factory.mktemp("results") / "pre"
    with pytest.warns(UserWarning):  # two epochs: too short to judge convergence
        return issl.pretrain(_config(out, pretext={"patch_size": 4, "bank_size": 4}))


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory: pytest.TempPathFactory) -> issl.FinetuneResult:
    out = tmp_path_factory.mktemp("results") / "softmax"
    with pytest.warns(UserWarning):
        return issl.finetune(_config(out, loss={"params": {"activation": "softmax"}}))


def _image_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("level", "image") == "image"]


def test_a_pretrain_results_model_is_scored_under_its_validation_corruption(
    pretrained: issl.PretrainResult,
) -> None:
    model = pretrained.model
    assert isinstance(model, nn.Module)
    assert isinstance(getattr(model, "checkpoint_meta", None), CheckpointMeta)
    assert not hasattr(model, "inference_meta")
    table = issl.evaluate(model, DATA, split="val", device="cpu")
    assert {"l2_norm", "l2_norm_corrupted", "l2_loss"} <= set(table.columns)
    # Three other computations of the same L2 table: the run's own validation pass (its CSV and
    # the result's evaluation, both seed 0), and the checkpoint loaded back from its folder.
    recorded = [float(row["l2_loss"]) for row in _image_rows(pretrained.run_dir / "val_inpainting.csv")]
    np.testing.assert_allclose(table.column("l2_loss"), recorded, rtol=1e-6)
    assert pretrained.evaluation is not None
    np.testing.assert_allclose(table.column("l2_loss"), pretrained.evaluation.column("l2_loss"), rtol=1e-6)
    assert_same_table(
        table, issl.evaluate(issl.load_model(pretrained.run_dir), DATA, split="val", device="cpu")
    )
    # An inpainting network has no segmentation head to score with: refused, naming the record.
    with pytest.raises(ValueError, match=r"activation='sigmoid', but the module's checkpoint_meta .*'none'"):
        issl.evaluate(model, DATA, activation="sigmoid", device="cpu")


def test_a_softmax_finetune_results_model_gives_its_runs_test_dice(softmax_run: issl.FinetuneResult) -> None:
    model = softmax_run.model
    assert isinstance(model, nn.Module)
    record = model.checkpoint_meta
    assert isinstance(record, CheckpointMeta) and record.activation == "softmax"
    table = issl.evaluate(model, DATA, device="cpu")
    # The run's test pass wrote test_metrics.csv and result.test; the run folder scores the same weights.
    recorded = _image_rows(softmax_run.run_dir / "test_metrics.csv")
    images = table.select(level="image")
    for name in ("dice_disc", "dice_square"):
        np.testing.assert_array_equal(images.column(name), [float(row[name]) for row in recorded])
    assert softmax_run.test is not None
    assert_same_table(table, softmax_run.test)
    assert_same_table(table, issl.evaluate(softmax_run.run_dir, DATA, device="cpu"))
    # The record's head and classes are the result's: another is refused, naming where they come from.
    with pytest.raises(ValueError, match=r"activation='sigmoid', but the module's checkpoint_meta"):
        issl.evaluate(model, DATA, activation="sigmoid", device="cpu")
    with pytest.raises(
        ValueError, match=r"class_names=\['square', 'disc'\], but the module's checkpoint_meta"
    ):
        issl.evaluate(model, DATA, class_names=["square", "disc"], device="cpu")


class _Compiled(nn.Module):
    """A wrapper holding the network as ``torch.compile``'s ``OptimizedModule`` does (``_orig_mod``),
    without compiling: a wrapper forwards none of the network's attributes, its record included."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self._orig_mod = network

    def forward(self, images: Any) -> Any:
        return self._orig_mod(images)


def test_a_results_model_inside_a_wrapper_is_scored_by_its_record(softmax_run: issl.FinetuneResult) -> None:
    # The record is read on the module inside the wrapper, as transfer reads it. (Not DataParallel:
    # on a machine with a card it moves the network there, where a CPU evaluation cannot run it.)
    model = softmax_run.model
    assert isinstance(model, nn.Module)
    wrapped = _Compiled(model)
    assert not hasattr(wrapped, "checkpoint_meta")
    assert_same_table(
        issl.evaluate(wrapped, DATA, device="cpu"), issl.evaluate(softmax_run.run_dir, DATA, device="cpu")
    )


def test_a_results_model_is_fitted_to_its_runs_slice_size_as_its_run_folder_is(tmp_path: Path) -> None:
    # Trained on 20x20 slices cropped to 16x16: data leaving image_size out are fitted to the run's
    # 16x16 through the run's record, as evaluate(run folder) fits them; scored at 20x20 (the
    # record alone, its folder gone) the Dice differs.
    data = {"dataset": "synthetic", "params": {**DATA["params"], "size": [20, 20]}}  # type: ignore[dict-item]
    with pytest.warns(UserWarning):
        result = issl.finetune(
            {
                **_config(tmp_path / "run", loss={"params": {"activation": "softmax"}}),
                "data": {**data, "image_size": [16, 16]},
            }
        )
    expected = issl.evaluate(result.run_dir, data, device="cpu")
    assert expected.select(level="image").column("dice_disc").size == 4
    assert_same_table(issl.evaluate(result.model, data, device="cpu"), expected)
    result.run_dir.rename(tmp_path / "moved")
    whole = issl.evaluate(result.model, data, device="cpu")
    assert not np.array_equal(whole.column("dice_disc"), expected.column("dice_disc"))
