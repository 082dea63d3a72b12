"""Evaluation of a set fitted to the model's size scores on the data's own grid, as predict's label maps.

The "model" passes its input through, so its logits are images the test chooses; the expected
Dice is worked out here with NumPy on the source slices: the window a crop keeps, a bilinear
resize written out by hand (half-pixel centres, as ``align_corners=False``).
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from inpaintssl.data.base import SliceDataset
from inpaintssl.data.views import ClassOrder, FitToSize
from inpaintssl.losses import DiceCELoss
from inpaintssl.losses.base import Activation
from inpaintssl.training.evaluation import evaluate_segmentation


class _Slices(SliceDataset):
    """Slices of any size whose image is the logits the pass-through model gives back."""

    def __init__(
        self, items: list[tuple[str, int, np.ndarray, np.ndarray]], class_names: tuple[str, ...]
    ) -> None:
        self.items = items  # (volume_id, slice_index, logits (C_out, H, W), labels (K, H, W))
        self.class_names = class_names
        self.in_channels = items[0][2].shape[0]
        self.volume_ids = [v for v, _, _, _ in items]
        self.slice_indices = [s for _, s, _, _ in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume_id, slice_index, logits, label = self.items[index]
        return {
            "image": torch.from_numpy(logits.astype(np.float32)),
            "label": torch.from_numpy(label.astype(np.float32)),
            "volume_id": volume_id,
            "slice_index": slice_index,
            "spacing": torch.ones(3, dtype=torch.float64),
        }


def _evaluate(
    dataset: Any, names: tuple[str, ...], *, activation: Activation = "sigmoid", **reading: Any
) -> Any:
    return evaluate_segmentation(
        nn.Identity(),
        dataset,
        predict_onehot=DiceCELoss(activation=activation).predict_onehot,
        class_names=names,
        device=torch.device("cpu"),
        batch_size=3,
        channels_last=False,
        **reading,
    )


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else float(2 * (pred & true).sum() / total)


def _bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` -> ``size`` bilinearly, pixel centres at half-pixel offsets (``align_corners=False``)."""
    out = x.astype(np.float64)
    for axis, n_out in enumerate(size):
        n_in = out.shape[axis]
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        frac = src - low
        shape = [1, 1]
        shape[axis] = n_out
        out = np.take(out, low, axis=axis) * (1 - frac).reshape(shape) + np.take(
            out, high, axis=axis
        ) * frac.reshape(shape)
    return out


def _crop_window(grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The pixels of a ``grid`` slice that a centred crop to ``size`` keeps."""
    window = np.zeros(grid, dtype=bool)
    top, left = max(0, (grid[0] - size[0]) // 2), max(0, (grid[1] - size[1]) // 2)
    window[top : top + size[0], left : left + size[1]] = True
    return window


def test_a_cropped_set_is_scored_with_the_tissue_the_crop_cut_off() -> None:
    # A perfect model on what it sees (its logits are the label): on the model's grid every Dice
    # is 1; on the slice's own grid the tissue outside the 8 x 8 window is missed.
    rng = np.random.default_rng(0)
    labels = [rng.random((1, 12, 10)) > 0.6 for _ in range(2)] + [rng.random((1, 6, 8)) > 0.6]
    items = [
        ("a", 0, np.where(labels[0], 4.0, -4.0), labels[0]),
        ("a", 1, np.where(labels[1], 4.0, -4.0), labels[1]),
        ("b", 0, np.where(labels[2], 4.0, -4.0), labels[2]),  # smaller than the window: padded
    ]
    table = _evaluate(FitToSize(_Slices(items, ("fg",)), (8, 8), mode="crop_or_pad"), ("fg",))
    predicted = [label[0] & _crop_window(label.shape[1:], (8, 8)) for label in labels]
    images = {(r["volume_id"], r["slice_index"]): r["dice_fg"] for r in table.select(level="image").rows}
    assert images == pytest.approx(
        {
            ("a", 0): _dice(predicted[0], labels[0][0]),
            ("a", 1): _dice(predicted[1], labels[1][0]),
            ("b", 0): 1.0,
        }
    )
    assert images[("a", 0)] < 1.0 and images[("a", 1)] < 1.0  # the crop cut tissue off both
    volumes = {r["volume_id"]: r["dice_fg"] for r in table.select(level="volume").rows}
    pooled = _dice(np.stack(predicted[:2]), np.stack([labels[0][0], labels[1][0]]))
    assert volumes == pytest.approx({"a": pooled, "b": 1.0})


def test_a_padded_slice_drops_what_the_model_found_in_the_padding() -> None:
    # The model's logits are the fitted image: padding takes the image's minimum, so a slice that
    # is positive everywhere stays positive in the padding. None of that is on the slice's grid.
    label = np.zeros((1, 4, 4), dtype=bool)
    label[0, :2] = True
    items = [("a", 0, np.full((1, 4, 4), 3.0), label)]
    table = _evaluate(FitToSize(_Slices(items, ("fg",)), (8, 8), mode="crop_or_pad"), ("fg",))
    assert table.rows[0]["dice_fg"] == pytest.approx(_dice(np.ones((4, 4), dtype=bool), label[0]))  # 2/3


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_a_resized_set_is_scored_on_probabilities_resized_back(activation: Activation) -> None:
    # Logits smooth enough that no probability lands near 0.5 in either resize.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:12, 0:10]
    labels, logits = [], []
    for _ in range(2):
        cy, cx, r = rng.uniform(3, 8), rng.uniform(3, 7), rng.uniform(2.5, 4)
        field = 3.0 * (r - np.hypot(yy - cy, xx - cx))
        logits.append(field)
        labels.append(((yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 0.6) ** 2)[None])  # not the model's edge
    heads = [f[None] if activation == "sigmoid" else np.stack([np.zeros_like(f), f]) for f in logits]
    items = [("a", i, head, label) for i, (head, label) in enumerate(zip(heads, labels))]
    table = _evaluate(
        FitToSize(_Slices(items, ("fg",)), (8, 8), mode="resize"), ("fg",), activation=activation
    )
    expected = []
    for field in logits:
        probability = 1 / (1 + np.exp(-_bilinear(field, (8, 8))))  # sigmoid, or softmax of (0, x)
        back = _bilinear(probability, (12, 10))
        assert np.abs(back - 0.5).min() > 1e-3  # float32 and float64 agree on every pixel
        expected.append(back > 0.5)
    images = [r["dice_fg"] for r in table.select(level="image").rows]
    assert images == pytest.approx([_dice(e, lab[0]) for e, lab in zip(expected, labels)])
    volume = table.select(level="volume").rows[0]["dice_fg"]
    assert volume == pytest.approx(_dice(np.stack(expected), np.stack([lab[0] for lab in labels])))


def test_the_class_order_of_a_fitted_set_is_kept_on_the_source_grid() -> None:
    # evaluate() puts data listing the classes otherwise under ClassOrder, over the fitted set.
    rng = np.random.default_rng(5)
    label = rng.random((2, 12, 12)) > 0.5
    logits = np.where(label[::-1], 4.0, -4.0)  # the model's channels: "b" then "a"
    data = _Slices([("v", 0, logits, label)], ("a", "b"))
    table = _evaluate(ClassOrder(FitToSize(data, (8, 8), mode="crop_or_pad"), ("b", "a")), ("b", "a"))
    window = _crop_window((12, 12), (8, 8))
    row = table.rows[0]
    assert row["dice_a"] == pytest.approx(_dice(label[0] & window, label[0]))
    assert row["dice_b"] == pytest.approx(_dice(label[1] & window, label[1]))


def test_a_set_fitted_to_its_own_size_scores_as_the_set_itself() -> None:
    rng = np.random.default_rng(7)
    items = [("a", i, rng.normal(size=(2, 8, 8)), rng.random((2, 8, 8)) > 0.5) for i in range(4)]
    data = _Slices(items, ("x", "y"))
    for mode in ("crop_or_pad", "resize"):
        assert (
            _evaluate(FitToSize(data, (8, 8), mode=mode), ("x", "y")).rows == _evaluate(data, ("x", "y")).rows
        )


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_workers_read_slices_of_several_sizes_into_the_same_table() -> None:
    rng = np.random.default_rng(9)
    shapes = [(12, 10), (12, 10), (6, 8), (9, 9), (12, 10)]
    labels = [rng.random((1, *s)) > 0.5 for s in shapes]
    items = [(f"v{i // 2}", i % 2, np.where(lab, 4.0, -4.0), lab) for i, lab in enumerate(labels)]
    data = FitToSize(_Slices(items, ("fg",)), (8, 8), mode="crop_or_pad")
    here = _evaluate(data, ("fg",)).rows
    assert _evaluate(data, ("fg",), num_workers=2, worker_start_method="fork").rows == here


def _two_discs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Sigmoid logits ``(2, H, W)`` of two overlapping discs, smooth so no pixel sits near 0.5."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    fields = []
    for _ in range(2):
        cy, cx, r = rng.uniform(4, shape[0] - 4), rng.uniform(4, shape[1] - 4), rng.uniform(3, 4.5)
        fields.append(3.0 * (r - np.hypot(yy - cy, xx - cx)))
    return np.stack(fields)


@pytest.mark.parametrize("fit", ["none", "resize"])
def test_overlap_pixels_counts_the_pixels_two_sigmoid_classes_claim(fit: str) -> None:
    rng = np.random.default_rng(13)
    shapes = [(12, 10), (12, 10), (11, 13)]
    logits = [_two_discs(rng, s) for s in shapes]
    labels = [rng.random((2, *s)) > 0.5 for s in shapes]
    items = [(f"v{i // 2}", i % 2, lg, lab) for i, (lg, lab) in enumerate(zip(logits, labels))]
    data: Any = _Slices(items[:2], ("a", "b")) if fit == "none" else _Slices(items, ("a", "b"))
    if fit == "resize":
        data = FitToSize(data, (8, 8), mode="resize")
    table = _evaluate(data, ("a", "b"))

    expected = []
    for field in logits[: len(data)]:
        if fit == "none":
            on = field > 0
        else:  # probabilities resized there and back, as the masks evaluate scores
            probability = 1 / (1 + np.exp(-np.stack([_bilinear(f, (8, 8)) for f in field])))
            back = np.stack([_bilinear(p, field.shape[1:]) for p in probability])
            assert np.abs(back - 0.5).min() > 1e-3  # float32 and float64 agree on every pixel
            on = back > 0.5
        expected.append(int((on[0] & on[1]).sum()))
    assert [r["overlap_pixels"] for r in table.select(level="image").rows] == expected
    assert sum(expected[:2]) > 0  # the discs do overlap: the column is not trivially 0
    volumes = {r["volume_id"]: r["overlap_pixels"] for r in table.select(level="volume").rows}
    assert volumes == {"v0": expected[0] + expected[1], **({"v1": expected[2]} if fit == "resize" else {})}


def test_a_softmax_head_never_overlaps() -> None:
    rng = np.random.default_rng(17)
    items = [("a", i, rng.normal(size=(3, 8, 8)) * 4, rng.random((2, 8, 8)) > 0.5) for i in range(3)]
    table = _evaluate(_Slices(items, ("x", "y")), ("x", "y"), activation="softmax")
    assert {r["overlap_pixels"] for r in table.rows} == {0}
