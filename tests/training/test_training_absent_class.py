"""A class with no labelled pixel in the training subset is named at the start of fine-tuning."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import inpaintssl as issl
from inpaintssl.data.labels import absent_classes
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.data.views import Subset


def _config(out: Path, label_fraction: float) -> dict[str, Any]:
    return {
        "data": {
            "dataset": "synthetic",
            "label_fraction": label_fraction,
            # One shape per image: an image holds a disc or a square, never both.
            "params": {"num_images": 8, "num_val": 4, "num_test": 4, "size": [16, 16], "shapes_per_image": 1},
        },
        "model": {"params": {"depth": 2, "base_width": 4}},
        "optim": {"max_epochs": 1, "batch_size": 4},
        "run": {"output_dir": str(out), "quiet": True, "device": "cpu"},
    }


def test_a_class_missing_from_the_label_subset_is_named(tmp_path: Path) -> None:
    images = SyntheticShapes(split="train", num_images=8, size=(16, 16), shapes_per_image=1)
    by_image = [absent_classes(Subset(images, [i])) for i in range(len(images))]
    assert all(len(missing) == 1 for missing in by_image)  # each image lacks one of the two classes
    with pytest.warns(
        UserWarning, match=r"class\(es\) \['(disc|square)'\] have no labelled pixel in the 1 training"
    ):
        issl.finetune(_config(tmp_path / "one", label_fraction=0.125))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        issl.finetune(_config(tmp_path / "all", label_fraction=1.0))
    assert not [w for w in caught if "no labelled pixel" in str(w.message)]
