"""The clinical study measures the masks evaluate scores, on the data's own grid (studies.clinical).

The "model" is a 1 x 1 convolution: its logits are a pointwise function of the image, so the
expected masks are worked out here from the images with ``torch.nn.functional.interpolate`` and
NumPy, not with the library's fitting or mapping code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inpaintssl.data.base import SliceDataset
from inpaintssl.data.views import FitToSize
from inpaintssl.losses import DiceCELoss
from inpaintssl.losses.base import Activation
from inpaintssl.studies.clinical import clinical_measurements, on_source_grid
from inpaintssl.studies.store import Measurement
from inpaintssl.training.evaluation import evaluate_segmentation

SPACING = (0.8, 1.3, 3.0)
VOXEL_MM3 = SPACING[0] * SPACING[1] * SPACING[2]
SIZE = (32, 32)
NAMES = ("disc", "ring")


class _Volumes(SliceDataset):
    """MRI-like slices (no HU): two volumes of different matrix sizes, smooth images, two classes."""

    def __init__(self) -> None:
        rng = np.random.default_rng(11)
        self.class_names = NAMES
        self.in_channels = 1
        self.items: list[tuple[str, int, np.ndarray]] = []
        for volume, (h, w), slices in (("v0", (45, 53), 3), ("v1", (30, 41), 2)):
            yy, xx = np.mgrid[0:h, 0:w]
            for s in range(slices):
                cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
                radius = rng.uniform(0.25, 0.4) * min(h, w)
                # A smooth bump: high at its centre, 0 far away, so each class has a soft border.
                image = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (radius / 1.5) ** 2))
                self.items.append((volume, s, image.astype(np.float32)))
        self.volume_ids = [v for v, _, _ in self.items]
        self.slice_indices = [s for _, s, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume, s, image = self.items[index]
        # References: "disc" the bump's top, "ring" its flank (they overlap, as sigmoid classes may).
        label = np.stack([image > 0.55, (image > 0.2) & (image < 0.7)]).astype(np.float32)
        return {
            "image": torch.from_numpy(image[None]),
            "label": torch.from_numpy(label),
            "volume_id": volume,
            "slice_index": s,
            "spacing": torch.tensor(SPACING, dtype=torch.float64),
        }


def _pointwise(activation: Activation) -> nn.Conv2d:
    """Logits of a sigmoid head (disc: image > 0.5, ring: image < 0.75) or of a softmax head."""
    if activation == "sigmoid":
        weight, bias = [12.0, -12.0], [-6.0, 9.0]
    else:  # background, disc, ring: disc wins on the top, ring on the flank, background outside
        weight, bias = [-10.0, 14.0, 3.0], [2.5, -7.0, 0.0]
    conv = nn.Conv2d(1, len(weight), 1)
    assert conv.bias is not None
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight).reshape(-1, 1, 1, 1))
        conv.bias.copy_(torch.tensor(bias))
    return conv.eval()


def _decide(scores: torch.Tensor, activation: Activation) -> torch.Tensor:
    """``(C_out, H, W)`` probabilities -> ``(K, H, W)`` masks by the head's rule."""
    if activation == "sigmoid":
        return scores > 0.5
    winner = scores.argmax(dim=0)
    return torch.stack([winner == k + 1 for k in range(len(NAMES))])


def _volumes_mm3(rows: list[Measurement], metric: str) -> dict[tuple[str, str], float]:
    return {(m.volume_id, m.class_name): m.value for m in rows if m.metric == metric}


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else float(2 * (pred & true).sum() / total)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_a_resize_runs_clinical_volumes_are_those_of_the_masks_evaluate_scores(
    activation: Activation,
) -> None:
    source = _Volumes()
    model = _pointwise(activation)
    predict_onehot = DiceCELoss(activation=activation).predict_onehot
    fitted = FitToSize(source, SIZE, mode="resize")

    items, predict = on_source_grid(fitted, lambda x: predict_onehot(model(x)), model=model)
    rows = clinical_measurements(items, predict, class_names=NAMES, batch_size=2)

    # Independently: the image resized to the model's size, its probabilities resized back
    # bilinearly to the slice's own size, the head's rule, then voxels counted per volume.
    expected: dict[str, list[np.ndarray]] = {}
    nearest: dict[str, np.ndarray] = {}
    labels: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for index in range(len(source)):
            item = source[index]
            own = tuple(item["image"].shape[-2:])
            small = F.interpolate(item["image"][None], size=SIZE, mode="bilinear", align_corners=False)
            logits = model(small)
            probs = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=1)
            back = F.interpolate(probs, size=own, mode="bilinear", align_corners=False)[0]
            mask = _decide(back, activation).numpy()
            expected.setdefault(item["volume_id"], []).append(mask)
            labels.setdefault(item["volume_id"], []).append(item["label"].numpy() > 0.5)
            # The rule this replaced: 0/1 masks of the model's grid resized nearest-neighbour.
            onehot = _decide(probs[0], activation)[None].float()
            old = F.interpolate(onehot, size=own, mode="nearest-exact")[0].numpy() > 0.5
            nearest[item["volume_id"]] = nearest.get(item["volume_id"], 0) + old.sum(axis=(1, 2))

    volumes = _volumes_mm3(rows, "volume_mm3_pred")
    for volume, masks in expected.items():
        counts = np.stack(masks).sum(axis=(0, 2, 3))
        for k, name in enumerate(NAMES):
            assert volumes[(volume, name)] == pytest.approx(counts[k] * VOXEL_MM3, rel=1e-12)
    # The data tells the two rules apart: the nearest-neighbour volumes are not these.
    assert any(not np.array_equal(nearest[v], np.stack(m).sum(axis=(0, 2, 3))) for v, m in expected.items())

    # And these are the masks evaluate scores: its per-volume Dice is theirs against the labels.
    table = evaluate_segmentation(
        model,
        fitted,
        predict_onehot=predict_onehot,
        class_names=NAMES,
        device=torch.device("cpu"),
        batch_size=2,
        channels_last=False,
    )
    scored = {r["volume_id"]: r for r in table.select(level="volume").rows}
    for volume, masks in expected.items():
        pred, true = np.stack(masks), np.stack(labels[volume])
        for k, name in enumerate(NAMES):
            assert scored[volume][f"dice_{name}"] == pytest.approx(_dice(pred[:, k], true[:, k]), rel=1e-12)


def _window(grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The pixels of a ``grid`` slice that a centred crop or pad to ``size`` shows the model."""
    window = np.zeros(grid, dtype=bool)
    top, left = max(0, (grid[0] - size[0]) // 2), max(0, (grid[1] - size[1]) // 2)
    window[top : top + size[0], left : left + size[1]] = True
    return window


def test_a_crop_runs_clinical_numbers_do_not_depend_on_the_model_argument() -> None:
    # crop_or_pad never resizes: the masks are the model's, put back where the crop took them,
    # with or without model= (the path crop runs took before it existed).
    source = _Volumes()
    model = _pointwise("sigmoid")
    predict_onehot = DiceCELoss(activation="sigmoid").predict_onehot
    fitted = FitToSize(source, SIZE, mode="crop_or_pad")

    def measure(**option: Any) -> list[Measurement]:
        items, predict = on_source_grid(fitted, lambda x: predict_onehot(model(x)), **option)
        return clinical_measurements(items, predict, class_names=NAMES, batch_size=2)

    with_model, without = measure(model=model), measure()
    assert with_model == without

    # Pointwise logits: a shown pixel's prediction is the model's on its own value; a cut one is 0.
    counts: dict[str, np.ndarray] = {}
    for index in range(len(source)):
        item = source[index]
        image = item["image"][0].numpy().astype(np.float64)
        shown = _window(image.shape, SIZE)
        pred = np.stack([(image > 0.5) & shown, (image < 0.75) & shown])
        counts[item["volume_id"]] = counts.get(item["volume_id"], 0) + pred.sum(axis=(1, 2))
    volumes = _volumes_mm3(with_model, "volume_mm3_pred")
    for volume, count in counts.items():
        for k, name in enumerate(NAMES):
            assert volumes[(volume, name)] == pytest.approx(count[k] * VOXEL_MM3, rel=1e-12)


def test_a_resize_view_without_the_model_warns_that_it_resizes_masks() -> None:
    fitted = FitToSize(_Volumes(), SIZE, mode="resize")
    with pytest.warns(UserWarning, match=r"on_source_grid: a resize view without model="):
        on_source_grid(fitted, lambda x: torch.zeros(x.shape[0], 2, *SIZE))


@pytest.mark.parametrize("mode", ["crop_or_pad", "resize"])
def test_a_fitted_view_given_straight_to_clinical_measurements_is_refused(mode: str) -> None:
    # Was: measured as given, its references were the fitted slices': a crop dropped tissue from
    # them, a resize interpolated them (and HU), all without a word; FinetuneResult.test_set is
    # such a view whenever data.image_size is set.
    fitted = FitToSize(_Volumes(), SIZE, mode=mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"fitted to 32x32 \({mode}\); .*on_source_grid\(items, predict"):
        clinical_measurements(fitted, lambda x: torch.zeros(x.shape[0], 2, *SIZE), class_names=NAMES)
