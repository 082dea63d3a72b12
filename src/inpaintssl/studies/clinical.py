"""Study 4, measuring: clinical metrics from a fine-tuned model's test-set predictions (sec. 2.7).

Per class, from the predicted and the ground-truth masks, with :mod:`inpaintssl.metrics`:

- CT (items carry the raw ``hu`` slice): cross-sectional area (mm^2) and mean HU, per slice.
- 3D MRI and every other volume source: tissue volume (mm^3, pixel area x slice thickness summed
  over the volume's slices); SKM-TEA items also carry ``echo1``, ``echo2`` and ``scan_params``, and
  get the mean T2 (ms) of each tissue from :func:`~inpaintssl.metrics.qdess_t2` with that tissue's
  T1 (:data:`~inpaintssl.metrics.T1_DEFAULTS_MS`, 1200 ms for other classes), averaged over the
  valid (non-NaN) voxels of the mask in the whole volume; items of multi-echo spin-echo series
  (the ``dicom`` dataset's ``t2_echoes``: ``echoes`` and ``echo_times_ms``) get it from
  :func:`~inpaintssl.metrics.mese_t2` (first echo left out), averaged the same way. The demo's
  ``mni152`` data has one axial slice per volume, so its "volume" is that slice's area times the
  slice spacing.

References are measured on the data's own pixel grid. A test set fitted to the model's
``data.image_size`` (:class:`~inpaintssl.data.views.FitToSize`) is measured on its source items
(the study runs :func:`on_source_grid` first; :func:`clinical_measurements` refuses such a view):
the model sees each slice fitted as in training and its prediction is mapped back as
:func:`~inpaintssl.evaluate` maps it back (the crop padded with background; a resize undone on the
class probabilities, bilinearly, before the head decides), so the masks measured are the masks
``evaluate`` scores, and a crop that cuts off tissue counts against the prediction, never shrinks
the reference (:func:`on_source_grid`).

Each class is measured on its own mask, as ``evaluate`` scores it: a pixel a sigmoid head puts
above 0.5 in two classes counts in both, where ``predict``'s label maps give it one class.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from inpaintssl.data.dicom_acquisition import SCAN_PARAMETER_KEYS
from inpaintssl.data.preprocess import fit_to_size
from inpaintssl.data.views import FitToSize
from inpaintssl.metrics import (
    T1_DEFAULTS_MS,
    T1_OTHER_MS,
    cross_sectional_area,
    mean_hu,
    mese_t2,
    percent_error,
    qdess_t2,
    tissue_volume,
)
from inpaintssl.studies.store import Measurement
from inpaintssl.training.evaluation import resized_prediction
from inpaintssl.warning_format import warn_each_time

__all__ = ["clinical_measurements", "on_source_grid"]

FloatArray = npt.NDArray[np.float64]


class _Items(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


def _batches_of_one_size(items: _Items, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive items in batches of at most ``batch_size`` whose images share one size.

    Source slices (:func:`on_source_grid`) keep each scan's own matrix size, so one batch must
    not stack two sizes.
    """
    batch: list[dict[str, Any]] = []
    for index in range(len(items)):
        item = items[index]
        if batch and (
            len(batch) == batch_size or tuple(batch[0]["image"].shape) != tuple(item["image"].shape)
        ):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


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
    if {"echoes", "echo_times_ms"} <= set(item):
        # A multi-echo spin-echo slice (the dicom dataset's t2_echoes): its decay, whatever the tissue.
        echoes = np.asarray(item["echoes"], dtype=np.float32)
        times = [float(t) for t in np.asarray(item["echo_times_ms"]).ravel()]
        return np.asarray(mese_t2(echoes.reshape(echoes.shape[-3:]), times), dtype=np.float64)
    if not {"echo1", "echo2", "scan_params"} <= set(item):
        return None
    e1 = np.asarray(item["echo1"], dtype=np.float32).reshape(np.shape(item["echo1"])[-2:])
    e2 = np.asarray(item["echo2"], dtype=np.float32).reshape(np.shape(item["echo2"])[-2:])
    params = dict(item["scan_params"])
    missing = sorted(set(SCAN_PARAMETER_KEYS) - set(params))
    if missing:
        raise ValueError(
            f"volume {item['volume_id']!r}: scan_params lacks {missing}; expected "
            f"{list(SCAN_PARAMETER_KEYS)} (qdess_t2's scan parameters)"
        )
    t2 = qdess_t2(
        e1,
        e2,
        tr_ms=float(params["tr_ms"]),
        te_ms=float(params["te_ms"]),
        flip_angle_deg=float(params["flip_angle_deg"]),
        gl_area=float(params["gl_area"]),
        tg_us=float(params["tg_us"]),
        t1_ms=T1_DEFAULTS_MS.get(class_name, T1_OTHER_MS),
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


def on_source_grid(
    items: _Items,
    predict: Callable[[torch.Tensor], torch.Tensor],
    *,
    model: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[_Items, Callable[[torch.Tensor], torch.Tensor]]:
    """The items before any fit to the model's size, with ``predict`` answering on their grid.

    For a :class:`~inpaintssl.data.views.FitToSize` view, its parent's items (their own labels,
    HU, echoes and spacing), and a ``predict`` that fits each image as the view does, runs the
    model, and maps its prediction back as :func:`~inpaintssl.evaluate` does, so the masks
    measured here are the masks ``evaluate`` scores (``test_metrics.csv``):

    - ``crop_or_pad``: ``predict``'s masks, put back by the same centred crop or pad (the parts
      the model never saw become background).
    - ``resize``: the ``model``'s class probabilities resized bilinearly to the slice's own size,
      then the head's rule (sigmoid classes above 0.5, or the softmax arg-max), with
      :func:`~inpaintssl.training.evaluation.resized_prediction`. Without ``model`` (a
      ``predict`` that is no network's, e.g. prepared masks) the masks are resized instead,
      nearest-neighbour, with a warning: class borders then move against ``evaluate``'s, by up
      to about a pixel of the model's grid.
    - A slice already the model's size: ``predict``'s masks as they are.

    Anything else is returned as it is.

    Args:
        items: The test items, e.g. a fine-tuning run's test set.
        predict: Images ``(N, C, h, w)`` -> one-hot masks ``(N, K, h, w)`` on the model's grid.
        model: The network behind ``predict``: images -> its logits ``(N, C_out, h, w)``, K
            sigmoid channels or K + 1 softmax channels (background first). Used only where a
            resize is undone.

    Example:
        >>> import torch
        >>> from inpaintssl.data.synthetic import SyntheticShapes
        >>> fitted = FitToSize(SyntheticShapes(num_images=2, size=(20, 20)), (16, 16), mode="crop_or_pad")
        >>> items, predict = on_source_grid(fitted, lambda x: torch.ones(x.shape[0], 2, 16, 16))
        >>> tuple(items[0]["label"].shape), tuple(predict(items[0]["image"][None]).shape)
        ((2, 20, 20), (1, 2, 20, 20))
        >>> predict(items[0]["image"][None])[0, 0].sum().item()  # the centre 16 x 16 only
        256.0
    """
    if not isinstance(items, FitToSize):
        return items, predict
    size, mode, classes = items.size, items.mode, len(items.class_names)
    if mode == "resize" and model is None:
        warn_each_time(
            "on_source_grid: a resize view without model=: its masks are resized back "
            "nearest-neighbour, where evaluate resizes the class probabilities bilinearly; pass "
            "model= (the network behind predict) to measure the masks evaluate scores",
            UserWarning,
        )

    @torch.no_grad()
    def predict_on_own_grid(images: torch.Tensor) -> torch.Tensor:
        own = (int(images.shape[-2]), int(images.shape[-1]))
        fitted = torch.stack([fit_to_size(image, size, mode=mode, kind="image") for image in images])
        if mode == "resize" and own != size and model is not None:
            # evaluate's rule, from the same function: probabilities back, then the head decides.
            logits = model(fitted).float()
            return torch.stack([resized_prediction(lg, own, classes=classes) for lg in logits]).float()
        masks = predict(fitted).float()
        return torch.stack([fit_to_size(mask, own, mode=mode, kind="label") for mask in masks])

    return items.parent, predict_on_own_grid


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
            ``volume_id``, ``slice_index``, ``spacing`` and source extras) on their own pixel
            grid: a fine-tuning run's test set fitted to ``data.image_size`` (a
            :class:`~inpaintssl.data.views.FitToSize` view, as ``FinetuneResult.test_set`` is
            then) goes through :func:`on_source_grid` first, with its ``predict``.
        predict: Images ``(N, C, H, W)`` on ``device`` -> one-hot masks ``(N, K, H, W)``.
        class_names: The K class names, in label-channel order.
        device: Where ``predict`` runs.
        batch_size: Images per call of ``predict``.

    Returns:
        Three measurements (``_pred``, ``_ref``, ``_pct_error``) per class and metric per image
        (``level="image"``, CT) or volume (``level="volume"``, ``slice_index=-1``).

    Raises:
        ValueError: A prediction's shape does not match its label, or ``items`` is a
            :class:`~inpaintssl.data.views.FitToSize` view.
    """
    if isinstance(items, FitToSize):
        # Its labels, HU and spacing are the fitted slice's: a crop drops tissue from the reference,
        # a resize interpolates HU and scales areas by the fit, all without a word.
        raise ValueError(
            f"clinical_measurements: items are fitted to {items.size[0]}x{items.size[1]} "
            f"({items.mode}); expected items on their own pixel grid, as references are measured "
            "there: call items, predict = on_source_grid(items, predict, model=model) first"
        )
    names = list(class_names)
    volumes: dict[str, _VolumeSums] = {}
    out: list[Measurement] = []
    for batch in _batches_of_one_size(items, batch_size):
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
