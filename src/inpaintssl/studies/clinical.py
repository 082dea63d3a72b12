"""Study 4, measuring: clinical metrics from a fine-tuned model's test-set predictions (sec. 2.7).

Per class, from the predicted and the ground-truth masks, with :mod:`inpaintssl.metrics`:

- CT (items carry the raw ``hu`` slice): cross-sectional area (mm^2) and mean HU, per slice.
- 3D MRI and every other volume source: tissue volume (mm^3, pixel area x slice thickness summed
  over the volume's slices); SKM-TEA items also carry ``echo1``, ``echo2`` and ``scan_params``, and
  get the mean T2 (ms) of each tissue from :func:`~inpaintssl.metrics.qdess_t2` with that tissue's
  T1 (:data:`~inpaintssl.metrics.T1_DEFAULTS_MS`, 1200 ms for other classes), averaged over the
  valid (non-NaN) voxels of the mask in the whole volume. The demo's ``mni152`` data has one
  axial slice per volume, so its "volume" is that slice's area times the slice spacing.

Each metric ``m`` is stored as three measurements, ``m_pred``, ``m_ref`` and ``m_pct_error``
(``100 |pred - ref| / |ref|``; ``inf`` when the tissue is absent from the reference but predicted).
Volumes are accumulated slice by slice, so a 512 x 512 x 160 scan never sits in memory at once.
The analysis of these measurements is :mod:`inpaintssl.analysis.clinical`.

Example:
    >>> import torch
    >>> items = [{"image": torch.zeros(1, 4, 4), "label": torch.ones(1, 4, 4), "volume_id": "v",
    ...           "slice_index": 0, "spacing": torch.tensor([1.0, 1.0, 2.0])}]
    >>> predict = lambda x: torch.ones(x.shape[0], 1, 4, 4)   # a perfect prediction
    >>> [(m.metric, m.value) for m in clinical_measurements(items, predict, class_names=["wm"])]
    [('volume_mm3_pred', 32.0), ('volume_mm3_ref', 32.0), ('volume_mm3_pct_error', 0.0)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from inpaintssl.metrics import (
    T1_DEFAULTS_MS,
    cross_sectional_area,
    mean_hu,
    percent_error,
    qdess_t2,
    tissue_volume,
)
from inpaintssl.studies.store import Measurement

__all__ = ["clinical_measurements"]

_DEFAULT_T1_MS = 1200.0
_SCAN_KEYS = ("tr_ms", "te_ms", "flip_angle_deg", "gl_area", "tg_us")
FloatArray = npt.NDArray[np.float64]


class _Items(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


def _rows(
    volume_id: str, slice_index: int, level: str, name: str, metric: str, pred: float, ref: float
) -> list[Measurement]:
    error = float(percent_error(pred, ref))
    return [
        Measurement(volume_id, slice_index, level, name, f"{metric}_pred", float(pred)),
        Measurement(volume_id, slice_index, level, name, f"{metric}_ref", float(ref)),
        Measurement(volume_id, slice_index, level, name, f"{metric}_pct_error", error),
    ]


@dataclass
class _VolumeSums:
    """Running per-class sums of one volume: sizes and (optionally) T2 sums and valid-voxel counts."""

    classes: int
    size_pred: FloatArray = field(init=False)
    size_ref: FloatArray = field(init=False)
    t2: FloatArray | None = None  # (4, K): pred sum, pred count, ref sum, ref count

    def __post_init__(self) -> None:
        self.size_pred = np.zeros(self.classes)
        self.size_ref = np.zeros(self.classes)


def _scan_t2(item: Mapping[str, Any], class_name: str) -> FloatArray | None:
    if not {"echo1", "echo2", "scan_params"} <= set(item):
        return None
    e1 = np.asarray(item["echo1"], dtype=np.float32).reshape(np.shape(item["echo1"])[-2:])
    e2 = np.asarray(item["echo2"], dtype=np.float32).reshape(np.shape(item["echo2"])[-2:])
    params = dict(item["scan_params"])
    missing = sorted(set(_SCAN_KEYS) - set(params))
    if missing:
        raise ValueError(
            f"volume {item['volume_id']!r}: scan_params lacks {missing}; expected {list(_SCAN_KEYS)} "
            "(qdess_t2's scan parameters)"
        )
    t2 = qdess_t2(
        e1,
        e2,
        tr_ms=float(params["tr_ms"]),
        te_ms=float(params["te_ms"]),
        flip_angle_deg=float(params["flip_angle_deg"]),
        gl_area=float(params["gl_area"]),
        tg_us=float(params["tg_us"]),
        t1_ms=T1_DEFAULTS_MS.get(class_name, _DEFAULT_T1_MS),
    )
    return np.asarray(t2, dtype=np.float64)


def _add_slice(
    sums: _VolumeSums,
    item: Mapping[str, Any],
    pred: npt.NDArray[np.bool_],
    ref: npt.NDArray[np.bool_],
    names: Sequence[str],
) -> None:
    row_mm, col_mm, slice_mm = (float(v) for v in np.asarray(item["spacing"]).ravel()[:3])
    for k, name in enumerate(names):
        sums.size_pred[k] += tissue_volume(pred[k][..., None], (row_mm, col_mm, slice_mm))
        sums.size_ref[k] += tissue_volume(ref[k][..., None], (row_mm, col_mm, slice_mm))
        t2 = _scan_t2(item, name)
        if t2 is None:
            continue
        if t2.shape != pred[k].shape:
            raise ValueError(
                f"volume {item['volume_id']!r} slice {item['slice_index']}: echo shape {t2.shape} differs "
                "from "
                f"the label shape {pred[k].shape}; the dataset must fit echoes like images"
            )
        if sums.t2 is None:
            sums.t2 = np.zeros((4, sums.classes))
        valid = ~np.isnan(t2)
        for row, mask in ((0, pred[k]), (2, ref[k])):
            chosen = mask & valid
            sums.t2[row, k] += float(t2[chosen].sum())
            sums.t2[row + 1, k] += float(chosen.sum())


def _volume_rows(volume_id: str, sums: _VolumeSums, names: Sequence[str]) -> list[Measurement]:
    out: list[Measurement] = []
    for k, name in enumerate(names):
        out += _rows(volume_id, -1, "volume", name, "volume_mm3", sums.size_pred[k], sums.size_ref[k])
        if sums.t2 is not None:
            t2 = sums.t2[:, k]
            # NaN-aware means over the whole volume (what mean_t2 gives on the stacked volume).
            pred = t2[0] / t2[1] if t2[1] else math.nan
            ref = t2[2] / t2[3] if t2[3] else math.nan
            out += _rows(volume_id, -1, "volume", name, "mean_t2_ms", pred, ref)
    return out


def _image_rows(
    item: Mapping[str, Any], pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_], names: Sequence[str]
) -> list[Measurement]:
    row_mm, col_mm = (float(v) for v in np.asarray(item["spacing"]).ravel()[:2])
    hu = np.asarray(item["hu"], dtype=np.float64).reshape(pred.shape[1:])
    vid, sidx = str(item["volume_id"]), int(item["slice_index"])
    out: list[Measurement] = []
    for k, name in enumerate(names):
        area = (
            cross_sectional_area(pred[k], (row_mm, col_mm)),
            cross_sectional_area(ref[k], (row_mm, col_mm)),
        )
        out += _rows(vid, sidx, "image", name, "area_mm2", *area)
        out += _rows(vid, sidx, "image", name, "mean_hu", mean_hu(hu, pred[k]), mean_hu(hu, ref[k]))
    return out


@torch.no_grad()
def clinical_measurements(
    items: _Items,
    predict: Callable[[torch.Tensor], torch.Tensor],
    *,
    class_names: Sequence[str],
    device: torch.device | str = "cpu",
    batch_size: int = 9,
) -> list[Measurement]:
    """Clinical metrics of every test image (CT) or volume (MRI) from predicted and true masks.

    Args:
        items: Labelled test items (``image`` ``(C, H, W)``, ``label`` ``(K, H, W)``,
            ``volume_id``, ``slice_index``, ``spacing`` and source extras), e.g. a fine-tuning
            run's test set.
        predict: Images ``(N, C, H, W)`` on ``device`` -> one-hot masks ``(N, K, H, W)``.
        class_names: The K class names, in label-channel order.
        device: Where ``predict`` runs.
        batch_size: Images per call of ``predict``.

    Returns:
        Three measurements (``_pred``, ``_ref``, ``_pct_error``) per class and metric per image
        (``level="image"``, CT) or volume (``level="volume"``, ``slice_index=-1``).

    Raises:
        ValueError: A prediction's shape does not match its label.
    """
    names = list(class_names)
    volumes: dict[str, _VolumeSums] = {}
    out: list[Measurement] = []
    for start in range(0, len(items), batch_size):
        batch = [items[i] for i in range(start, min(start + batch_size, len(items)))]
        images = torch.stack([torch.as_tensor(item["image"]) for item in batch]).to(device)
        masks = (predict(images) > 0.5).cpu().numpy()
        for item, pred in zip(batch, masks):
            ref = np.asarray(item["label"]) > 0.5
            if pred.shape != ref.shape:
                raise ValueError(
                    f"prediction shape {pred.shape} does not match label shape {ref.shape} of volume "
                    f"{item['volume_id']!r} slice {item['slice_index']}"
                )
            if "hu" in item:
                out += _image_rows(item, pred, ref, names)
            else:
                sums = volumes.setdefault(str(item["volume_id"]), _VolumeSums(len(names)))
                _add_slice(sums, item, pred, ref, names)
    for volume_id, sums in volumes.items():
        out += _volume_rows(volume_id, sums, names)
    return out
