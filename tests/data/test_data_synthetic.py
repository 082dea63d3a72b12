"""The synthetic dataset's parameters: counts and size are checked, naming the parameter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inpaintssl.config import DataConfig
from inpaintssl.data.base import DataError
from inpaintssl.data.build import build_datasets
from inpaintssl.data.synthetic import SyntheticShapes


@pytest.mark.parametrize(
    ("params", "said"),
    [
        # A YAML "size: 32" crashed with "'int' object is not iterable".
        (
            {"size": 32},
            r"params\.size=32: expected two whole numbers \[H, W\] .*found an int; for a square "
            r"slice write \[32, 32\]",
        ),
        ({"size": [32]}, r"params\.size=\[32\]: expected two whole numbers .*; found 1 value\(s\)"),
        ({"size": [32, 32, 3]}, r"params\.size=\[32, 32, 3\]: .*found 3 value\(s\)"),
        ({"size": "32x32"}, r"params\.size='32x32': .*found a str"),
        # A fractional side was cut to a whole one without a word.
        ({"size": [32.7, 40]}, r"params\.size=\[32\.7, 40\]: .*found 32\.7 \(a float\)"),
        ({"size": [True, 40]}, r"params\.size=\[True, 40\]: .*found True \(a bool\)"),
        ({"size": [4, 40]}, r"params\.size=\[4, 40\]: .*size must be at least 8x8\); found a side of 4"),
        ({"num_images": 2.5}, r"params\.num_images=2\.5: expected a whole number; found a float"),
        ({"num_images": "8"}, r"params\.num_images='8': expected a whole number; found a str"),
        ({"num_val": 1.5}, r"params\.num_val=1\.5: expected a whole number; found a float"),
        ({"num_images": 0}, r"params\.num_images=0 would leave split 'train' with no images"),
        ({"channels": 0}, r"params\.channels=0: expected a whole number of at least 1"),
        (
            {"slices_per_volume": 1.5},
            r"params\.slices_per_volume=1\.5: expected a whole number of at least 1",
        ),
        ({"shapes_per_image": -1}, r"params\.shapes_per_image=-1: expected a whole number of at least 0"),
        # NumPy refused these deep in its seeding, naming neither the dataset nor the parameter.
        ({"seed": -1}, r"params\.seed=-1: expected a whole number of at least 0"),
        ({"seed": 1.5}, r"params\.seed=1\.5: expected a whole number; found a float"),
    ],
)
def test_a_bad_count_or_size_is_refused_naming_the_parameter(params: dict[str, Any], said: str) -> None:
    with pytest.raises(DataError, match=rf"^synthetic: {said}"):
        SyntheticShapes(split="train", **params)
    # The same through a run's data section (the CLI's data.params).
    with pytest.raises(DataError, match=rf"^synthetic: {said}"):
        build_datasets(DataConfig(dataset="synthetic", params=params), stage="finetune", seed=0)


def test_whole_numbers_written_as_floats_or_numpy_integers_are_taken() -> None:
    ds = SyntheticShapes(
        split="val", num_images=np.int64(3), num_val=2.0, size=[16.0, np.int32(24)], channels=2.0
    )
    assert (len(ds), ds.size, ds.in_channels) == (2, (16, 24), 2)
    assert all(isinstance(side, int) for side in ds.size)
    assert tuple(ds[1]["image"].shape) == (2, 16, 24)
