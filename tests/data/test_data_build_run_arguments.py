"""``split`` and ``labelled`` are the run's to pass a dataset: set in ``params``, they are refused by name.

Given in ``data.params``, each reached the registry twice, and the message was Python's
``Registry.build() got multiple values for keyword argument 'split'``: no field, no expectation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inpaintssl.config import DataConfig, SourceConfig
from inpaintssl.data.base import DataError
from inpaintssl.data.build import build_datasets


def _arrays(root: Path) -> dict[str, object]:
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True)
        image = np.random.default_rng(0).normal(size=(16, 16, 2)).astype(np.float32)
        label = np.zeros((16, 16, 2), np.uint8)
        label[4:10, 4:10] = 1
        np.save(root / split / "a_img.npy", image)
        np.save(root / split / "a_lab.npy", label)
    return {
        "root": str(root),
        "cases": {
            s: {"image": f"{s}/*_img.npy", "label": f"{s}/*_lab.npy"} for s in ("train", "val", "test")
        },
        "class_names": ["organ"],
        "spacing": [1.0, 1.0, 2.0],
    }


@pytest.mark.parametrize(("key", "value"), [("split", "val"), ("labelled", False)])
@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_data_params_that_the_run_sets_are_refused_naming_the_field(
    tmp_path: Path, key: str, value: object, stage: str
) -> None:
    params = {**_arrays(tmp_path), key: value}
    cfg = DataConfig(dataset="numpy", params=params)
    with pytest.raises(DataError) as caught:
        build_datasets(cfg, stage=stage, seed=0)
    message = str(caught.value)
    assert message.startswith(f"data.params.{key}={value!r}: ")
    assert "set by the run" in message and "multiple values" not in message


def test_an_unlabelled_source_may_name_its_split_but_not_labelled(tmp_path: Path) -> None:
    params = _arrays(tmp_path)
    extra = {"root": params["root"], "cases": {"more": "val/*_img.npy"}, "spacing": [1.0, 1.0, 2.0]}
    chosen = SourceConfig(dataset="numpy", params={**extra, "split": "more"})
    bundle = build_datasets(
        DataConfig(dataset="numpy", params=params, unlabelled=[chosen]), stage="pretrain", seed=0
    )
    assert bundle.splits.subsets["unlabelled/0"].split == "more"
    refused = SourceConfig(dataset="numpy", params={**extra, "split": "more", "labelled": True})
    with pytest.raises(DataError, match=r"^data\.unlabelled\[0\]\.params\.labelled=True: .*set by the run"):
        build_datasets(
            DataConfig(dataset="numpy", params=params, unlabelled=[refused]), stage="pretrain", seed=0
        )
