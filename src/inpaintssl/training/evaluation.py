"""Per-image (and per-volume) evaluation of segmentation and inpainting models.

Segmentation: Dice per foreground class for every test slice and, for 3D sources, for every
volume (voxel counts summed over its slices), as in sec. 2.5.2 ("Dice ... averaged across all
available volumes/slices"). Inpainting: the per-image L2 norm of the inpainted image against the
original (Table 2): computed per channel and averaged over channels, as the paper did for
three-channel CT.

Dice is scored on the data's own pixel grid. A set fitted to a run's ``data.image_size``
(:class:`~inpaintssl.data.views.FitToSize`, also under a
:class:`~inpaintssl.data.views.ClassOrder`) is scored on its source slices: the model sees each
slice fitted as in training, and its prediction is mapped back as
:func:`~inpaintssl.inference.predict.predict` maps its label maps back (``crop_or_pad``: the same
centred crop or pad, the parts the model never saw background; ``resize``: the class
probabilities resized bilinearly, then thresholded), then compared with the source labels, so
tissue a crop cut off counts against the model instead of dropping out of the reference.

Each class is scored on its own mask (the paper's rule): a pixel a sigmoid head puts above 0.5 in
two classes counts in both, where ``predict``'s label maps give it the single highest-scoring
class. The column ``overlap_pixels`` counts such pixels per slice and volume, so a table shows
where it scored masks no label map holds; a softmax head's is always 0, and a slice whose count
is 0 was scored on the masks its label map holds.

Both read their data as a training pass does: in the calling process, or with ``num_workers``
DataLoader workers (``data.num_workers`` and ``data.worker_start_method`` of a run), which read
and decompress the next batches while the model runs on this one. The table is the same either
way, bit for bit.

Example:
    >>> t = EvaluationTable([{"image": "a", "dice_gm": 0.5}, {"image": "b", "dice_gm": 1.0}])
    >>> t.mean()["dice_gm"]
    0.75
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, SequentialSampler

from inpaintssl.atomic import atomic_write_text
from inpaintssl.channel_argmax import channel_argmax
from inpaintssl.data.base import SliceDataset
from inpaintssl.data.preprocess import ResizeMode, fit_to_size
from inpaintssl.data.views import ClassOrder, FitToSize, slice_shape_of
from inpaintssl.progress import progress_iter
from inpaintssl.training.device import autocast_context
from inpaintssl.training.epoch_loader import EpochLoader, unavailable_start_method
from inpaintssl.training.objectives import VALIDATION_KEY_OFFSET

__all__ = [
    "EvaluationTable",
    "check_batch_size",
    "check_num_workers",
    "evaluate_inpainting",
    "evaluate_segmentation",
    "resized_prediction",
]


@dataclass
class EvaluationTable:
    """Rows of per-image (``level="image"``) and per-volume (``level="volume"``) metrics.

    Attributes:
        rows: One dict per evaluated image or volume.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Column names in first-seen order."""
        names: list[str] = []
        for row in self.rows:
            names.extend(k for k in row if k not in names)
        return names

    def select(self, **equals: Any) -> EvaluationTable:
        """Rows whose columns equal the given values, e.g. ``select(level="image")``."""
        return EvaluationTable([r for r in self.rows if all(r.get(k) == v for k, v in equals.items())])

    def column(self, name: str) -> np.ndarray:
        """One numeric column as float64 (missing -> NaN)."""
        return np.array([float(r.get(name, math.nan)) for r in self.rows], dtype=np.float64)

    def mean(self) -> dict[str, float]:
        """NaN-aware mean of every float column (integer columns such as indices are skipped)."""
        out: dict[str, float] = {}
        for name in self.columns:
            values = [r.get(name) for r in self.rows]
            if values and all(isinstance(v, float) for v in values):
                arr = np.asarray(values, dtype=np.float64)
                out[name] = float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write the table atomically; return the path."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(path, buffer.getvalue())
        return Path(path)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        # The rows can number thousands: show their count, columns and means, not the rows.
        levels = sorted({str(r.get("level")) for r in self.rows if "level" in r})
        means = ", ".join(f"{k}={v:.4g}" for k, v in self.select(level="image").mean().items())
        return (
            f"EvaluationTable({len(self.rows)} rows, levels {levels or '-'}, columns {self.columns}"
            f"{'; image means: ' + means if means else ''})"
        )


def check_num_workers(num_workers: int) -> None:
    """Refuse a negative or non-integer count of evaluation's DataLoader workers, naming the argument.

    :func:`inpaintssl.api.evaluate` checks before it loads the model; :func:`evaluate_segmentation`
    and :func:`evaluate_inpainting` check again, for callers that come to them directly.

    Raises:
        TypeError: ``num_workers`` is not an integer (``True`` and ``"2"`` included).
        ValueError: ``num_workers`` is negative.

    Example:
        >>> check_num_workers(-1)
        Traceback (most recent call last):
        ...
        ValueError: num_workers=-1; expected 0 (read here) or more worker processes
    """
    # A bool is an int to Python, but True is no count anyone means; "2" failed as "'<' not supported".
    if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral):
        raise TypeError(
            f"num_workers={num_workers!r}: expected an integer, 0 (read here) or more worker processes; "
            f"found {type(num_workers).__name__}"
        )
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers}; expected 0 (read here) or more worker processes")


def check_batch_size(batch_size: int, *, argument: str = "batch_size") -> None:
    """Refuse a batch size below 1, or one that is no integer, naming the argument.

    For :func:`inpaintssl.api.evaluate` and :func:`inpaintssl.inference.predict.predict`, which check
    before they load the model.

    Raises:
        TypeError: ``batch_size`` is not an integer (``True``, ``2.0`` and ``"4"`` included).
        ValueError: ``batch_size`` is below 1.

    Example:
        >>> check_batch_size("4")
        Traceback (most recent call last):
        ...
        TypeError: batch_size='4': expected a positive integer; found str
    """
    # A bool is an int to Python: True ran batches of one slice.
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(
            f"{argument}={batch_size!r}: expected a positive integer; found {type(batch_size).__name__}"
        )
    if batch_size < 1:
        raise ValueError(f"{argument}={batch_size}; expected a positive integer")


@contextlib.contextmanager
def _in_eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the block; each submodule's own training flag restored after.

    The caller's network is its own: a fine-tuning loop that scores its model between epochs
    (or a notebook) would otherwise go on training with dropout off and batch statistics frozen.
    Each flag, not the top one: ``model.train(flag)`` would undo a submodule kept in eval mode
    on purpose (frozen BatchNorm statistics).
    """
    modes = {name: sub.training for name, sub in model.named_modules(remove_duplicate=False)}
    model.eval()
    try:
        yield
    finally:
        for name, sub in model.named_modules(remove_duplicate=False):
            sub.training = modes[name]


def _batches(
    dataset: Dataset[dict[str, Any]],
    batch_size: int,
    *,
    device: torch.device,
    num_workers: int,
    worker_start_method: str | None,
) -> EpochLoader[dict[str, Any]]:
    """The dataset in order, in batches; one pass. Close it (``with``) to stop its workers."""
    check_num_workers(num_workers)
    offered = unavailable_start_method(worker_start_method, num_workers=num_workers)
    if offered is not None:
        raise ValueError(
            f"worker_start_method={worker_start_method!r} is not a start method this platform offers: "
            f"expected one of {offered} or None (the process's default)"
        )
    # A loader with its own generator (EpochLoader's): one without draws its base seed from torch's
    # global generator on every pass, so evaluating would move the caller's random stream
    # (``torch.rand`` after ``issl.evaluate`` would differ from ``torch.rand`` without it).
    return EpochLoader(
        dataset,
        sampler=SequentialSampler(dataset),  # type: ignore[arg-type]
        batch_size=batch_size,
        seed=0,
        num_workers=num_workers,
        pin_memory=num_workers > 0 and device.type == "cuda",
        multiprocessing_context=worker_start_method,
    )


class _OnSourceGrid(SliceDataset):
    """A fitted set's source items: the image fitted as the model sees it, the label on its own grid.

    Items hold ``image`` (fitted to ``size``), ``label`` (the source label as booleans, placed at
    the top left of a canvas as large as the set's largest slice, so that items of different
    sizes batch together) and ``source_grid`` (the label's own ``(H, W)``). Fitting only the image
    reads each item once, in whichever process reads it.
    """

    def __init__(self, source: SliceDataset, size: tuple[int, int], mode: ResizeMode) -> None:
        self.source = source
        self.size = size
        self.mode: ResizeMode = mode
        self.class_names = tuple(source.class_names)
        self.volume_ids = list(getattr(source, "volume_ids", ()))
        shapes = [slice_shape_of(source, i) for i in range(len(source))]
        self.canvas = (max((h for h, _ in shapes), default=0), max((w for _, w in shapes), default=0))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.source[index]
        label = torch.as_tensor(item["label"]) > 0.5
        h, w = (int(n) for n in label.shape[-2:])
        if h > self.canvas[0] or w > self.canvas[1]:
            raise ValueError(
                f"volume {item['volume_id']!r} slice {item['slice_index']}: its label is {h}x{w} pixels, "
                f"larger than the {self.canvas[0]}x{self.canvas[1]} its dataset's slice_shape reports"
            )
        canvas = torch.zeros((label.shape[0], *self.canvas), dtype=torch.bool)
        canvas[:, :h, :w] = label
        return {
            "image": fit_to_size(torch.as_tensor(item["image"]), self.size, mode=self.mode, kind="image"),
            "label": canvas,
            "source_grid": torch.tensor([h, w], dtype=torch.int64),
            "volume_id": item["volume_id"],
            "slice_index": item["slice_index"],
        }


def _unfitted(dataset: Dataset[dict[str, Any]]) -> _OnSourceGrid | None:
    """``dataset`` on its source grid when it is fitted to the model's size, else ``None``.

    A :class:`~inpaintssl.data.views.FitToSize` view, or one put in the model's class order
    (:class:`~inpaintssl.data.views.ClassOrder`, as ``evaluate`` does); the class order is kept.
    """
    if isinstance(dataset, FitToSize):
        return _OnSourceGrid(dataset.parent, dataset.size, dataset.mode)
    if isinstance(dataset, ClassOrder):
        inner = _unfitted(dataset.parent)
        if inner is not None:
            return _OnSourceGrid(ClassOrder(inner.source, dataset.class_names), inner.size, inner.mode)
    return None


def resized_prediction(logits: torch.Tensor, grid: tuple[int, int], *, classes: int) -> torch.Tensor:
    """A resized slice's hard prediction ``(K, H, W)`` on its source ``grid``, as ``predict`` makes it.

    The head's probabilities (softmax for a head of ``classes + 1`` channels, background first;
    sigmoid for ``classes`` channels) are resized bilinearly to ``grid`` (``align_corners=False``,
    as :func:`~inpaintssl.data.preprocess.fit_to_size` resizes images), then the head decides: the
    softmax arg-max, or each sigmoid class above 0.5 (so sigmoid classes may overlap). Resizing
    probabilities, not 0/1 masks, moves class borders smoothly; :func:`evaluate_segmentation` and
    the clinical study (:func:`inpaintssl.studies.clinical.on_source_grid`) both map a
    ``resize`` run's predictions back with it.

    Args:
        logits: The model's output for the fitted slice, ``(C_out, h, w)``.
        grid: The source slice's ``(H, W)``.
        classes: K, the foreground classes.

    Returns:
        ``(K, H, W)`` booleans.

    Example:
        >>> logits = torch.tensor([[[-4.0, 4.0]]])  # a sigmoid head, one class, 1 x 2 pixels
        >>> resized_prediction(logits, (1, 4), classes=1).tolist()
        [[[False, False, True, True]]]
    """
    softmax = logits.shape[0] == classes + 1
    probs = torch.softmax(logits, dim=0) if softmax else torch.sigmoid(logits)
    scores = fit_to_size(probs, grid, mode="resize", kind="image")
    if not softmax:
        return scores > 0.5
    winners = channel_argmax(scores[None], keepdim=True)[0]
    return winners == torch.arange(1, classes + 1, device=scores.device)[:, None, None]


def _mapped_back(
    logits: torch.Tensor, onehot: torch.Tensor, grid: tuple[int, int], *, mode: ResizeMode, classes: int
) -> torch.Tensor:
    """One slice's prediction ``(K, H, W)`` on its source ``grid``, as ``predict`` maps its labels back.

    Args:
        logits: The model's output for the fitted slice, ``(C_out, h, w)``.
        onehot: Its hard prediction on the model's grid, ``(K, h, w)`` booleans.
        grid: The source slice's ``(H, W)``.
        mode: How the slice was fitted.
        classes: K; a head of K + 1 channels is a softmax head with background first.
    """
    if tuple(onehot.shape[-2:]) == grid:
        # Nothing to undo: the model's own decision, so an unfitted slice scores as it always has.
        return onehot
    if mode == "crop_or_pad":
        # The same centred crop or pad: what the model never saw (a crop's edges) is background.
        return fit_to_size(onehot, grid, mode="crop_or_pad", kind="label")
    return resized_prediction(logits, grid, classes=classes)


def _overlap(pred: torch.Tensor) -> torch.Tensor:
    """Pixels of each slice ``(N, K, H, W)`` predicted in more than one class, ``(N,)``.

    Only a sigmoid head can claim a pixel twice; ``predict``'s label maps give such a pixel one class.
    """
    return (pred.sum(dim=1) > 1).sum(dim=(1, 2))


def _source_grid_counts(
    logits: torch.Tensor,
    pred: torch.Tensor,
    canvas: torch.Tensor,
    grids: torch.Tensor,
    *,
    mode: ResizeMode,
    classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per slice and class, predicted-and-true and predicted-plus-true voxels on the source grids.

    Args:
        logits: ``(N, C_out, h, w)`` on the model's grid.
        pred: ``(N, K, h, w)`` hard predictions on the model's grid.
        canvas: ``(N, K, H_max, W_max)`` source labels at the top left (:class:`_OnSourceGrid`).
        grids: ``(N, 2)`` each source slice's ``(H, W)``.
        mode: How the slices were fitted.
        classes: K.

    Returns:
        Intersections and totals, each ``(N, K)``, and each slice's pixels predicted in more than
        one class, ``(N,)``.
    """
    inter, total, overlap = [], [], []
    for i, (h, w) in enumerate(grids.tolist()):
        on_grid = _mapped_back(logits[i], pred[i], (h, w), mode=mode, classes=classes)
        target = canvas[i, :, :h, :w]
        inter.append((on_grid & target).sum(dim=(1, 2)))
        total.append(on_grid.sum(dim=(1, 2)) + target.sum(dim=(1, 2)))
        overlap.append(_overlap(on_grid[None])[0])
    return torch.stack(inter), torch.stack(total), torch.stack(overlap)


def _id_text(value: Any) -> str:
    """A batch's ``volume_id`` entry as text: an integer id is collated into a tensor, ``tensor(0)``.

    Example:
        >>> _id_text(torch.tensor(3)), _id_text("case-01")
        ('3', 'case-01')
    """
    return str(value.item() if isinstance(value, torch.Tensor) else value)


def _dice(intersection: np.ndarray, total: np.ndarray) -> np.ndarray:
    # Both masks empty -> Dice 1 (a correct "nothing here"), consistent with inpaintssl.metrics.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * intersection / np.maximum(total, 1e-12), 1.0)


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    dataset: Dataset[dict[str, Any]],
    *,
    predict_onehot: Callable[[torch.Tensor], torch.Tensor],
    class_names: Sequence[str],
    device: torch.device,
    batch_size: int = 9,
    channels_last: bool = True,
    amp_dtype: torch.dtype | None = None,
    per_volume: bool = True,
    quiet: bool = True,
    num_workers: int = 0,
    worker_start_method: str | None = None,
) -> EvaluationTable:
    """Dice per class for every slice, plus per-volume rows when volumes span several slices.

    Scored on the data's own grid: a ``dataset`` fitted to the model's size
    (:class:`~inpaintssl.data.views.FitToSize`, bare or under a
    :class:`~inpaintssl.data.views.ClassOrder`) is read from its source slices, each fitted for
    the model and its prediction mapped back as ``predict`` maps its labels back (module
    docstring), then compared with the source labels. Any other dataset is scored as it is.

    Args:
        model: Segmentation network producing logits, run in eval mode (each submodule's training
            flag is restored after, also when this raises).
        dataset: Labelled items (``image``, ``label``, ``volume_id``, ``slice_index``).
        predict_onehot: Logits ``(N, C_out, H, W)`` -> one-hot ``(N, K, H, W)``. It decides on
            the model's grid; a resized slice's prediction is decided on its source grid by the
            head's own rule (``C_out == K + 1``: softmax arg-max, else sigmoid above 0.5).
        class_names: The K foreground class names (columns ``dice_<name>``).
        device: Where to run.
        batch_size: Inference batch size.
        channels_last: Memory format.
        amp_dtype: Autocast dtype (CUDA) or ``None``.
        per_volume: Add a ``level="volume"`` row per volume (Dice over its slices' pooled
            voxels) when some volume has more than one slice; a set of single slices has none.
        quiet: No progress bar.
        num_workers: DataLoader worker processes reading the data (0: this process reads it).
        worker_start_method: How the workers start (``fork``, ``forkserver``, ``spawn``);
            ``None``: the process's default.

    Raises:
        ValueError: The model's output does not fit the dataset's classes, ``num_workers`` is
            negative, or ``worker_start_method`` is not a start method this platform offers.

    Returns:
        Rows with ``level``, ``volume_id``, ``slice_index``, ``dice_<class>``, ``dice_mean`` and
        ``overlap_pixels`` (pixels predicted in more than one class, on the grid scored; a
        volume's is its slices' sum; always 0 for a softmax head).
    """
    with _in_eval_mode(model):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        rows: list[dict[str, Any]] = []
        volumes: dict[str, list[np.ndarray]] = {}
        volume_slices: dict[str, int] = {}
        volume_overlap: dict[str, int] = {}
        names = list(class_names)
        # A set fitted to the model's size is scored on its source slices: scored on the fitted labels,
        # a crop would drop the tissue it cut off from the reference, and a resize would replace the
        # reference with its nearest-neighbour copy.
        on_source = _unfitted(dataset)
        with _batches(
            dataset if on_source is None else on_source,
            batch_size,
            device=device,
            num_workers=num_workers,
            worker_start_method=worker_start_method,
        ) as loader:
            for batch in progress_iter(loader, desc="evaluate", leave=False, disable=quiet):
                images = batch["image"].to(device, memory_format=fmt)
                target = batch["label"].to(device) > 0.5
                with autocast_context(device, amp_dtype):
                    logits = model(images)
                logits = logits.float()
                pred = predict_onehot(logits) > 0.5
                expected = (
                    tuple(target.shape) if on_source is None else (*target.shape[:2], *images.shape[-2:])
                )
                if tuple(pred.shape) != expected:
                    raise ValueError(
                        f"prediction shape {tuple(pred.shape)} does not match label shape {expected}: "
                        "the model's output channels do not fit this dataset's classes"
                    )
                if on_source is None:
                    inter_t = (pred & target).sum(dim=(2, 3))
                    total_t = pred.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
                    overlap_t = _overlap(pred)
                else:
                    inter_t, total_t, overlap_t = _source_grid_counts(
                        logits, pred, target, batch["source_grid"], mode=on_source.mode, classes=len(names)
                    )
                inter = inter_t.double().cpu().numpy()
                total = total_t.double().cpu().numpy()
                overlap = overlap_t.cpu().tolist()
                dice = _dice(inter, total)
                for i in range(dice.shape[0]):
                    vid = _id_text(batch["volume_id"][i])
                    sidx = int(batch["slice_index"][i])
                    row: dict[str, Any] = {"level": "image", "volume_id": vid, "slice_index": sidx}
                    row.update({f"dice_{n}": float(dice[i, k]) for k, n in enumerate(names)})
                    row["dice_mean"] = float(np.mean(dice[i]))
                    row["overlap_pixels"] = int(overlap[i])
                    rows.append(row)
                    acc = volumes.setdefault(vid, [np.zeros(len(names)), np.zeros(len(names))])
                    acc[0] += inter[i]
                    acc[1] += total[i]
                    volume_slices[vid] = volume_slices.get(vid, 0) + 1
                    volume_overlap[vid] = volume_overlap.get(vid, 0) + int(overlap[i])
        # Volumes of one slice each are a 2-D data set: its images are the items. Once any volume has
        # more, every volume gets its row, a one-slice volume too: the analyses switch to volume rows
        # when there are any, and a volume without one would drop out of every statistic.
        if per_volume and any(count > 1 for count in volume_slices.values()):
            for vid, (inter_v, total_v) in volumes.items():
                dice_v = _dice(inter_v, total_v)
                vrow: dict[str, Any] = {"level": "volume", "volume_id": vid, "slice_index": -1}
                vrow.update({f"dice_{n}": float(dice_v[k]) for k, n in enumerate(names)})
                vrow["dice_mean"] = float(np.mean(dice_v))
                vrow["overlap_pixels"] = volume_overlap[vid]
                rows.append(vrow)
        return EvaluationTable(rows)


def _channel_l2_norm(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm, per channel then averaged over channels: (N, C, H, W) -> (N,)."""
    norms: torch.Tensor = torch.linalg.vector_norm((restored - clean).flatten(2), ord=2, dim=2)
    return norms.mean(dim=1)


@torch.no_grad()
def evaluate_inpainting(
    model: nn.Module,
    dataset: Dataset[dict[str, Any]],
    *,
    corrupt: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 9,
    channels_last: bool = True,
    amp_dtype: torch.dtype | None = None,
    quiet: bool = True,
    num_workers: int = 0,
    worker_start_method: str | None = None,
) -> EvaluationTable:
    """L2 norm of each inpainted image against its original (Table 2), and of the corrupted input.

    Args:
        model: Inpainting network, run in eval mode (each submodule's training flag is restored
            after, also when this raises).
        dataset: Items with ``image``.
        corrupt: ``(clean (N, C, H, W), keys (N,)) -> corrupted``; keys are the dataset indices
            plus :data:`~inpaintssl.training.objectives.VALIDATION_KEY_OFFSET`, as in validation, so the
            corruption is fixed, reproducible, and for a run's validation set the one its
            validation loss used.
        device: Where to run.
        batch_size: Inference batch size.
        channels_last: Memory format.
        amp_dtype: Autocast dtype (CUDA) or ``None``.
        quiet: No progress bar.
        num_workers: DataLoader worker processes reading the data (0: this process reads it).
        worker_start_method: How the workers start (``fork``, ``forkserver``, ``spawn``);
            ``None``: the process's default.

    Raises:
        ValueError: ``num_workers`` is negative, or ``worker_start_method`` is not a start method
            this platform offers.

    Returns:
        Rows with ``volume_id``, ``slice_index``, ``l2_norm`` (restored vs. original),
        ``l2_norm_corrupted`` (corrupted input vs. original) and ``l2_loss`` (eq. A1 per image).
    """
    with _in_eval_mode(model):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        rows: list[dict[str, Any]] = []
        start = 0
        with _batches(
            dataset,
            batch_size,
            device=device,
            num_workers=num_workers,
            worker_start_method=worker_start_method,
        ) as loader:
            for batch in progress_iter(loader, desc="evaluate", leave=False, disable=quiet):
                clean = batch["image"].to(device, memory_format=fmt)
                # The validation keys: the masks the validation loss (and checkpoint selection) saw.
                keys = torch.arange(start, start + clean.shape[0], device=device) + VALIDATION_KEY_OFFSET
                start += clean.shape[0]
                corrupted = corrupt(clean, keys)
                with autocast_context(device, amp_dtype):
                    restored = model(corrupted)
                restored = restored.float()
                norm = _channel_l2_norm(restored, clean).cpu().tolist()
                norm_in = _channel_l2_norm(corrupted, clean).cpu().tolist()
                loss = ((restored - clean) ** 2).sum(dim=(2, 3)).mean(dim=1).cpu().tolist()
                for i in range(clean.shape[0]):
                    rows.append(
                        {
                            "level": "image",
                            "volume_id": _id_text(batch["volume_id"][i])
                            if "volume_id" in batch
                            else str(start - clean.shape[0] + i),
                            "slice_index": int(batch["slice_index"][i]) if "slice_index" in batch else -1,
                            "l2_norm": norm[i],
                            "l2_norm_corrupted": norm_in[i],
                            "l2_loss": loss[i],
                        }
                    )
        return EvaluationTable(rows)
