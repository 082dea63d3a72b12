"""build_split: one labelled split without the others (new labelled scans to score a model on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inpaintssl.config import DataConfig
from inpaintssl.data.base import DataError
from inpaintssl.data.build import build_datasets, build_split


def _case(folder: Path, name: str, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    label = np.zeros((20, 12, 3), np.uint8)
    label[5 + seed : 12 + seed, 3:9] = 1
    np.save(folder / f"{name}_img.npy", (rng.normal(size=label.shape) + 3 * label).astype(np.float32))
    np.save(folder / f"{name}_lab.npy", label)


def _params(root: Path, splits: tuple[str, ...]) -> dict[str, object]:
    for i, split in enumerate(("train", "val", "test")):
        _case(root / split, "a", i)
    return {
        "root": str(root),
        "cases": {s: {"image": f"{s}/*_img.npy", "label": f"{s}/*_lab.npy"} for s in splits},
        "class_names": ["organ"],
        "spacing": [0.8, 0.8, 2.0],
    }


def test_a_test_split_alone_builds_as_in_the_whole_bundle(tmp_path: Path) -> None:
    everything = DataConfig(
        dataset="numpy", params=_params(tmp_path, ("train", "val", "test")), image_size=(16, 16)
    )
    alone = DataConfig(dataset="numpy", params=_params(tmp_path, ("test",)), image_size=(16, 16))
    with pytest.raises(DataError, match=r"split 'train' is not defined in 'cases'; it defines \['test'\]"):
        build_datasets(alone, stage="finetune", seed=0, size_multiple=4)
    bundle_test = build_datasets(everything, stage="finetune", seed=0, size_multiple=4).test
    test = build_split(alone, "test", size_multiple=4)
    assert bundle_test is not None and len(test) == len(bundle_test) == 3
    assert tuple(test.class_names) == ("organ",)
    for i in range(3):
        mine, theirs = test[i], bundle_test[i]
        assert mine["volume_id"] == theirs["volume_id"] == "a_img" and mine["slice_index"] == i
        assert torch.equal(mine["image"], theirs["image"]) and torch.equal(mine["label"], theirs["label"])
        assert mine["label"].shape == (1, 16, 16)


@pytest.mark.parametrize("split", ["train", "val"])
def test_the_other_splits_build_as_in_the_whole_bundle(tmp_path: Path, split: str) -> None:
    cfg = DataConfig(dataset="numpy", params=_params(tmp_path, ("train", "val", "test")), val_max_images=2)
    bundle = build_datasets(cfg, stage="finetune", seed=0)
    whole = bundle.train if split == "train" else bundle.val
    alone = build_split(cfg, split)
    assert [(x["volume_id"], x["slice_index"]) for x in alone] == [
        (x["volume_id"], x["slice_index"]) for x in whole
    ]
    assert len(alone) == (3 if split == "train" else 2)  # val capped at val_max_images


def test_an_unknown_split_is_refused(tmp_path: Path) -> None:
    cfg = DataConfig(dataset="numpy", params=_params(tmp_path, ("test",)))
    with pytest.raises(ValueError, match="split='tset'"):
        build_split(cfg, "tset")
