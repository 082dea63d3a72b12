"""Label maps from the network: one case's slices through the model, and the labels back on its grid.

:func:`predict_case` feeds a prepared input's slices to the network in batches, fitted to the
model's size as training did (cropped or padded, resized, or covered with sliding windows,
:mod:`inpaintssl.inference.tiling`), undoes that fit, any in-plane resampling and reorientation,
and counts the labelled voxels on the edges a crop cut; :func:`label_map` turns class scores into
labels, stored as :func:`label_dtype` says.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

from inpaintssl.channel_argmax import channel_argmax
from inpaintssl.data.preprocess import ResizeMode, fit_to_size
from inpaintssl.inference.inputs import reading
from inpaintssl.inference.preparation import PreparedInput
from inpaintssl.inference.results import PredictionError
from inpaintssl.inference.slice_grids import (
    cut_edge_mask,
    from_display,
    model_size,
    place_slice,
    resampled_grid,
    shrinks_past_bilinear,
    to_display,
)
from inpaintssl.inference.tiling import sliding_window_probabilities
from inpaintssl.inference.trained_run import PredictionModel, SlicePreprocessing
from inpaintssl.training.device import autocast_context

__all__ = ["LargeSlices", "label_dtype", "label_map", "predict_case"]

LargeSlices = Literal["crop", "sliding_window"]
"""What :func:`~inpaintssl.inference.predict.predict` does with slices larger than a
``crop_or_pad`` run's ``data.image_size``: ``crop`` to the centre as training did, or cover them
with overlapping windows of that size."""


def label_dtype(class_count: int) -> type[np.unsignedinteger[Any]]:
    """The smallest unsigned integer type that holds labels 0 to ``class_count`` (its classes and background).

    ``uint8`` up to 255 classes, as label maps have always been written; ``uint16`` beyond (a
    ``uint8`` map would wrap class 256 round to background), which NIfTI, MetaImage, NRRD, a
    ``LABELMAP`` DICOM SEG (16 bits) and the other writers take as they are.

    Example:
        >>> label_dtype(3).__name__, label_dtype(255).__name__, label_dtype(256).__name__
        ('uint8', 'uint8', 'uint16')
    """
    for dtype in (np.uint8, np.uint16, np.uint32):
        if class_count <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"label_dtype: {class_count} classes; expected at most {np.iinfo(np.uint32).max}")


def label_map(scores: torch.Tensor, *, activation: str, threshold: float = 0.5) -> torch.Tensor:
    """Integer labels ``(N, H, W)`` from class scores ``(N, C_out, H, W)``: 0 background, k+1 class k.

    Args:
        scores: Probabilities (or logits, with ``threshold=0``) in the head's layout: K sigmoid
            channels, or K + 1 softmax channels with background first.
        activation: ``sigmoid`` or ``softmax``.
        threshold: A sigmoid class is present above this (0.5 for probabilities, 0 for logits).

    Returns:
        ``int64`` labels. Softmax: the arg-max channel. Sigmoid: among the classes above
        ``threshold``, the highest scoring (classes may overlap in a sigmoid head); background
        where none is.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[[[0.2, 0.6]], [[0.4, 0.9]]]])  # (1, K=2, 1, 2)
        >>> label_map(probs, activation="sigmoid").tolist()
        [[[0, 2]]]
    """
    if activation == "softmax":
        return channel_argmax(scores)
    present = scores > threshold
    best = channel_argmax(scores.masked_fill(~present, -math.inf)) + 1
    return torch.where(present.any(dim=1), best, torch.zeros_like(best))


@torch.no_grad()
def predict_case(
    item: PreparedInput,
    *,
    model: PredictionModel,
    prep: SlicePreprocessing,
    device: torch.device,
    amp: torch.dtype | None,
    batch_size: int,
    probabilities: bool,
    large_slices: LargeSlices,
    overlap: float,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """The case's label map (and probabilities) on its grid; its labelled and all cut-edge voxels."""
    volume, dataset = item.volume, item.dataset
    rank = 2 if len(volume.shape) == 2 else 3
    spatial = volume.shape[:rank]
    k = len(model.class_names)
    labels = np.zeros(spatial, dtype=label_dtype(k))
    # Labels on the device before they reach it: torch has no uint16 to crop and pad, so a run of
    # more classes than uint8 holds keeps them as int32 (its labels fit either way).
    on_device = torch.uint8 if labels.dtype == np.uint8 else torch.int32
    probs = np.zeros((*spatial, k), dtype=np.float32) if probabilities else None
    resize_back = prep.image_size is not None and prep.resize_mode == "resize"
    on_cut_edges = torch.zeros((), dtype=torch.int64, device=device)  # summed on the device: no syncs
    cut_edges = 0

    def forward(batch: torch.Tensor) -> torch.Tensor:
        try:
            with autocast_context(device, amp):
                logits: torch.Tensor = model.module(batch)
        except (RuntimeError, ValueError) as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                raise
            # A network's own failure names neither the scan nor the size it was given.
            backbone = model.module.inference_meta.backbone
            raise PredictionError(
                f"input {item.path}: the network ({backbone}) failed on slices of {tuple(batch.shape[-2:])} "
                f"pixels: {type(exc).__name__}: {exc}; expected slices the network "
                "takes (some need more than a few pixels at their deepest level: use larger slices, or "
                "data.image_size in training)"
            ) from exc
        if logits.shape[1] != (k + 1 if model.activation == "softmax" else k):
            raise PredictionError(
                f"{model.source}: the model outputs {logits.shape[1]} channels, which does not fit its "
                f"{k} class(es) with a {model.activation} head"
            )
        return logits.float()

    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        with reading(item.path):
            planes = [dataset[i]["image"] for i in indices]
        own_grid = (int(planes[0].shape[-2]), int(planes[0].shape[-1]))
        if item.resample_to is not None:
            # In-plane to the training spacing, bilinear; the probabilities come back the same way.
            assert item.spacing is not None  # the spacing the resampling was decided on
            resampled = resampled_grid(own_grid, item.spacing, item.resample_to)
            smooth = shrinks_past_bilinear(own_grid, resampled)
            planes = [
                fit_to_size(p, resampled, mode="resize", kind="image", antialias=smooth) for p in planes
            ]
        if prep.display:
            planes = [to_display(p) for p in planes]
        grid = (int(planes[0].shape[-2]), int(planes[0].shape[-1]))
        size = model_size(grid, prep, model.size_multiple)
        mode: ResizeMode = prep.resize_mode if prep.image_size is not None else "crop_or_pad"
        larger = grid[0] > size[0] or grid[1] > size[1]
        tiled = larger and not resize_back and large_slices == "sliding_window"
        logits = None
        if not tiled:
            fitted = torch.stack([fit_to_size(p, size, mode=mode, kind="image") for p in planes])
            logits = forward(fitted.to(device))
        prob_maps: torch.Tensor | None = None
        if logits is None:
            # Windows of the training size over the whole slice (inference/tiling.py): nothing cut.
            scores = sliding_window_probabilities(
                torch.stack(planes).to(device),
                size=size,
                probabilities_of=lambda windows: model.module.probabilities(forward(windows)),
                batch_size=batch_size,
                overlap=overlap,
            )
            hard = label_map(scores, activation=model.activation, threshold=0.5)
            prob_maps = scores if probabilities or item.resample_to is not None else None
        elif resize_back:
            # Resample probabilities, not labels, so class borders move smoothly back to the input grid.
            on_model_grid = model.module.probabilities(logits)
            scores = torch.stack([fit_to_size(p, grid, mode="resize", kind="image") for p in on_model_grid])
            hard = label_map(scores, activation=model.activation, threshold=0.5)
            prob_maps = scores if probabilities else None
        else:
            # Labels from the logits, exactly as evaluate() scores them, then crop/pad back; pixels
            # the model never saw are background.
            hard = label_map(logits, activation=model.activation, threshold=0.0)
            edges = cut_edge_mask(grid, size)
            if edges is not None:
                # Counted on the host; only the mask goes to the device, and the sum stays there.
                cut_edges += int(edges.sum()) * len(planes)
                on_cut_edges += ((hard > 0) & edges.to(hard.device)).sum()
            hard = fit_to_size(hard.to(on_device), grid, mode="crop_or_pad", kind="label")
            if probabilities or item.resample_to is not None:
                on_model_grid = model.module.probabilities(logits)
                prob_maps = torch.stack(
                    [fit_to_size(p, grid, mode="crop_or_pad", kind="label") for p in on_model_grid]
                )
        if prep.display:
            hard = from_display(hard)
            prob_maps = None if prob_maps is None else from_display(prob_maps)
        if item.resample_to is not None:
            assert prob_maps is not None  # computed on every path when resampling
            smooth = shrinks_past_bilinear((int(prob_maps.shape[-2]), int(prob_maps.shape[-1])), own_grid)
            scores = torch.stack(
                [fit_to_size(p, own_grid, mode="resize", kind="image", antialias=smooth) for p in prob_maps]
            )
            hard = label_map(scores, activation=model.activation, threshold=0.5)
            prob_maps = scores if probabilities else None
        hard_np = hard.to(on_device).cpu().numpy()
        foreground = None
        if prob_maps is not None:
            foreground = (prob_maps[:, 1:] if model.activation == "softmax" else prob_maps).cpu().numpy()
        for j, i in enumerate(indices):
            index = dataset.slice_indices[i]
            place_slice(labels, hard_np[j], axis=volume.slice_axis, index=index, rank=rank)
            if probs is not None and foreground is not None:
                place_slice(
                    probs, np.moveaxis(foreground[j], 0, -1), axis=volume.slice_axis, index=index, rank=rank
                )
    # Back onto the input's own grid (a 2-D slice's two axes), where its affine and header describe it.
    labels = np.ascontiguousarray(volume.to_stored(labels))
    probs = None if probs is None else np.ascontiguousarray(volume.to_stored(probs))
    return labels, probs, (int(on_cut_edges), cut_edges)
