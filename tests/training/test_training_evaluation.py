"""Segmentation evaluation: Dice per slice and, for volumetric data, per volume over pooled voxels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from inpaintssl.training.evaluation import evaluate_segmentation


class _Slices(torch.utils.data.Dataset[dict[str, Any]]):
    """One-class slices whose image is the label itself, so an identity "model" reads it back."""

    def __init__(self, items: list[tuple[str, int, np.ndarray, np.ndarray]]) -> None:
        self.items = items  # (volume_id, slice_index, shown to the model, true label)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume_id, slice_index, shown, label = self.items[index]
        return {
            "image": torch.from_numpy(shown[None].astype(np.float32)),
            "label": torch.from_numpy(label[None].astype(np.float32)),
            "volume_id": volume_id,
            "slice_index": slice_index,
        }


def _evaluate(items: list[tuple[str, int, np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    table = evaluate_segmentation(
        nn.Identity(),
        _Slices(items),
        predict_onehot=lambda logits: (logits > 0.5).float(),
        class_names=["fg"],
        device=torch.device("cpu"),
        batch_size=2,
        channels_last=False,
        per_volume=True,
    )
    return table.rows


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    return float(2 * (pred & true).sum() / (pred.sum() + true.sum()))


def test_every_volume_of_a_volumetric_set_gets_a_row_a_one_slice_volume_too() -> None:
    rng = np.random.default_rng(0)
    labels = [rng.random((8, 8)) > 0.5 for _ in range(4)]
    shown = [label.copy() for label in labels]
    shown[1][:4] = False  # volume a's second slice: the top half missed
    shown[3][:] = False  # volume b, one slice: nothing found
    items = [("a", 0, shown[0], labels[0]), ("a", 1, shown[1], labels[1]), ("a", 2, shown[2], labels[2])]
    items.append(("b", 0, shown[3], labels[3]))
    rows = _evaluate(items)
    volumes = {r["volume_id"]: r["dice_fg"] for r in rows if r["level"] == "volume"}
    pooled = _dice(np.stack(shown[:3]), np.stack(labels[:3]))
    assert volumes == {"a": pooled, "b": 0.0}
    assert len([r for r in rows if r["level"] == "image"]) == 4


def test_a_set_of_single_slices_has_no_volume_rows() -> None:
    rng = np.random.default_rng(1)
    labels = [rng.random((8, 8)) > 0.5 for _ in range(3)]
    rows = _evaluate([(f"img{i}", 0, label, label) for i, label in enumerate(labels)])
    assert {r["level"] for r in rows} == {"image"}
    assert [r["dice_fg"] for r in rows] == [1.0, 1.0, 1.0]


def test_integer_volume_ids_are_written_as_the_numbers_they_are() -> None:
    # Was: default collation turned ints into a tensor, and str() of its element gave "tensor(0)".
    rng = np.random.default_rng(2)
    labels = [rng.random((8, 8)) > 0.5 for _ in range(4)]
    items: list[tuple[Any, int, np.ndarray, np.ndarray]] = [
        (i // 2, i % 2, lab, lab) for i, lab in enumerate(labels)
    ]
    rows = _evaluate(items)
    assert [(r["level"], r["volume_id"]) for r in rows] == [
        ("image", "0"),
        ("image", "0"),
        ("image", "1"),
        ("image", "1"),
        ("volume", "0"),
        ("volume", "1"),
    ]
