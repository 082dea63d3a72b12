"""An image that holds a handful of whole numbers is a label map matched as a scan: warned, naming it.

``cases: "train/*.nii.gz"`` over a folder of scans and their ``*_seg`` files pretrains on the label
maps as well, and ``predict 'scans/*.nii.gz'`` labels them, without a word: each is read, z-scored
and used like a scan.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from inpaintssl.data.preflight import preflight
from inpaintssl.data.volumes import numpy_dataset


def _write(root: Path) -> None:
    rng = np.random.default_rng(0)
    label = np.zeros((16, 16, 4), np.uint8)
    label[4:12, 4:12] = 1
    label[6:9, 6:9] = 2
    np.save(root / "case_t1.npy", (100 + 50 * label + rng.normal(0, 5, label.shape)).astype(np.float32))
    np.save(root / "case_seg.npy", label)


def _checked(root: Path, pattern: str) -> list[str]:
    dataset = numpy_dataset(
        split="unlabelled", labelled=False, cases=pattern, root=root, spacing=(1.0, 1.0, 2.0)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preflight({"train": dataset}, progress=False)
    return [str(w.message) for w in caught]


def test_a_label_map_among_the_images_is_warned_about_by_name(tmp_path: Path) -> None:
    _write(tmp_path)
    messages = _checked(tmp_path, "*.npy")  # matches the scan and its label map
    assert len(messages) == 1
    assert (
        f"image {tmp_path / 'case_seg.npy'} holds only 3 distinct values, all whole numbers (0, 1, 2)"
        in (messages[0])
    )
    assert "label map" in messages[0] and "case_t1" not in messages[0]
    assert _checked(tmp_path, "*_t1.npy") == []


@pytest.mark.parametrize(
    "image",
    [
        np.arange(16 * 16 * 4, dtype=np.int16).reshape(16, 16, 4) - 1000,  # CT: whole numbers, many
        np.tile(np.array([0.5, 1.5, 2.5, 3.5]), (16, 16, 1)),  # few values, not whole numbers
        np.pad(
            np.random.default_rng(1).normal(size=(16, 16, 2)), ((0, 0), (0, 0), (2, 0))
        ),  # zero slices first
    ],
)
def test_scans_are_not_taken_for_label_maps(tmp_path: Path, image: np.ndarray) -> None:
    np.save(tmp_path / "scan.npy", image)
    assert _checked(tmp_path, "*.npy") == []
