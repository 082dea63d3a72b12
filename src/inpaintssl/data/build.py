"""Build the train/val/test sets of a run from its :class:`~inpaintssl.config.DataConfig`.

Pretraining (sec. 2.4-2.6): ``train`` is the main dataset's train split without labels plus each
``data.unlabelled`` source (its ``fraction`` of volumes, nested and seeded by ``subset_seed``;
built with ``split="unlabelled"`` unless its params name a ``split``); ``val`` is the val split
without labels. Pretraining items keep only the base keys (image, volume_id, slice_index,
spacing) so that sources with different extras collate together. ``test`` is ``None``.

Fine-tuning (sec. 2.1, 2.5): ``train`` is the label-limited subset ``label_fraction`` of the
labelled train split (by volume, nested, seeded); ``val`` and ``test`` are the labelled val and
test splits.

``val_max_images`` keeps that many evenly spaced validation slices. ``image_size`` fits every
slice of every set (crop/pad centred, or resize); without it, all slices of a set must already
share one size divisible by ``size_multiple`` (the backbone's ``2**(depth - 1)``). A
``splits_file`` from an earlier run fixes the training volumes (from its label-subset chain), the
val/test items and the unlabelled volumes it lists; the new record states the file's
``subset_seed`` and each reused unlabelled subset's ``fraction`` (those that chose its volumes). A
source the file lacks is drawn with ``data.subset_seed``, with a warning where that is not the
file's seed.

Example:
    >>> from inpaintssl.config import DataConfig
    >>> cfg = DataConfig(dataset="mni152", image_size=(112, 112), label_fraction=0.25)
    >>> bundle = build_datasets(cfg, stage="finetune", seed=0, size_multiple=16)
    >>> len(bundle.train), bundle.in_channels, bundle.class_names
    (11, 1, ('csf', 'gm', 'wm'))
    >>> tuple(bundle.val[0]["image"].shape)
    (1, 112, 112)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from inpaintssl.config import DataConfig, SourceConfig
from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.decompressed import decompressed_into
from inpaintssl.data.labels import check_class_names
from inpaintssl.data.splits import (
    DEFAULT_LABEL_FRACTIONS,
    SplitRecord,
    SubsetRecord,
    fraction_key,
    label_limited_subsets,
    select_fraction,
    subset_size,
)
from inpaintssl.data.views import (
    ConcatSlices,
    FitToSize,
    ImagesOnly,
    Subset,
    data_files_of,
    evenly_spaced,
    item_refs,
    select_items,
    select_volumes,
    slice_shape_of,
)
from inpaintssl.options import check_option
from inpaintssl.registry import DATASETS
from inpaintssl.warning_format import warn_each_time

__all__ = ["DataBundle", "Stage", "build_datasets", "build_split", "check_slice_sizes"]

Stage = Literal["pretrain", "finetune"]


@dataclass(frozen=True)
class DataBundle:
    """The datasets of one run and what was used to make them.

    Attributes:
        train: Training items (labelled for fine-tuning, images only for pretraining).
        val: Validation items.
        test: Test items (fine-tuning), else ``None``.
        in_channels: Image channels C.
        class_names: Foreground classes (``()`` for pretraining).
        splits: The exact subsets; a run saves them with
            ``splits.save(RunFolder(run).splits)`` (:class:`~inpaintssl.layout.RunFolder`).
        data_files: Every data file read (for the run manifest).
    """

    train: SliceDataset
    val: SliceDataset
    test: SliceDataset | None
    in_channels: int
    class_names: tuple[str, ...]
    splits: SplitRecord
    data_files: list[str] = field(default_factory=list)


_SET_BY_THE_RUN = MappingProxyType(
    {
        "split": "once for each split it reads (train, val, test), whose files the cases parameter names",
        "labelled": "reading labels to fine-tune and evaluate, and images alone to pretrain",
    }
)
"""Dataset arguments the run passes itself, with what it passes: never taken from ``params``."""


def _build_source(
    name: str, params: dict[str, Any], *, split: str, labelled: bool, where: str = "data.params"
) -> SliceDataset:
    for key, passed in _SET_BY_THE_RUN.items():
        if key in params:
            # Given twice, Python's own refusal named Registry.build and neither the field nor why.
            raise DataError(
                f"{where}.{key}={params[key]!r}: {key} is set by the run, {passed}; expected only "
                f"the dataset's own parameters in {where}"
            )
    dataset = DATASETS.build_from(
        name, params, field=where, set_by_caller={"split": split, "labelled": labelled}
    )
    if not isinstance(dataset, SliceDataset):
        raise DataError(f"dataset {name!r} returned {type(dataset).__name__}; expected a SliceDataset")
    if len(dataset) == 0:
        raise DataError(f"dataset {name!r} split {split!r} is empty; expected at least one slice")
    return dataset


def _record(dataset: str, split: str, view: SliceDataset, *, fraction: float = 1.0) -> SubsetRecord:
    refs = item_refs(view)
    return SubsetRecord(
        dataset=dataset,
        split=split,
        fraction=fraction,
        volume_ids=sorted({v for v, _ in refs}),
        items=refs,
    )


def _fitting_size(sizes: Collection[tuple[int, int]], size_multiple: int) -> tuple[int, int]:
    """The ``data.image_size`` an error suggests: the largest size that every slice can be cropped
    to with both sides divisible by ``size_multiple`` (one multiple where a slice is smaller).

    Example:
        >>> _fitting_size({(116, 98)}, 4), _fitting_size({(116, 98), (120, 90)}, 16)
        ((116, 96), (112, 80))
        >>> _fitting_size({(5, 9)}, 8)
        (8, 8)
    """
    height, width = min(h for h, _ in sizes), min(w for _, w in sizes)
    return (
        max(height // size_multiple, 1) * size_multiple,
        max(width // size_multiple, 1) * size_multiple,
    )


def check_slice_sizes(
    dataset: SliceDataset, *, what: str, size_multiple: int, remedy: str = "set data.image_size"
) -> None:
    """Refuse slices that cannot be batched: of different sizes, or not divisible by ``size_multiple``.

    Args:
        dataset: The slices to check (each one's size read without the item where it can tell).
        what: What the message names, e.g. ``mni152 test set``.
        size_multiple: Both sides of every slice must be divisible by this (backbone constraint).
        remedy: How the message tells to fit the slices, followed by a size that would do: a data
            config's ``data.image_size``, or whatever fits a dataset given already built.

    Raises:
        DataError: Slices of different sizes, or a side not divisible by ``size_multiple``.
    """
    sizes = {slice_shape_of(dataset, i) for i in range(len(dataset))}
    h, w = _fitting_size(sizes, size_multiple)
    hint = f"{remedy} (e.g. [{h}, {w}]) to crop/pad or resize every slice to one size"
    if len(sizes) > 1:
        raise DataError(f"{what}: slices have different sizes {sorted(sizes)[:5]}; {hint}")
    h, w = sizes.pop()
    if h % size_multiple or w % size_multiple:
        # A side of a few pixels is rarely anatomy: more often an (H, W, C) image read as (C, H, W).
        layout = (
            f"; a side of {min(h, w)} pixel(s) suggests an image stored channels last: items must be "
            f"(C, H, W), with C = in_channels ({dataset.in_channels})"
            if min(h, w) <= 4
            else ""
        )
        raise DataError(
            f"{what}: slice size ({h}, {w}) is not divisible by {size_multiple} (the backbone's size "
            f"multiple); {hint} with both sides divisible by {size_multiple}{layout}"
        )


class _Builder:
    """Builds the views of one run and records what each contains."""

    def __init__(self, cfg: DataConfig, *, size_multiple: int) -> None:
        self.cfg = cfg
        self.size_multiple = size_multiple
        self.reuse = SplitRecord.load(cfg.splits_file) if cfg.splits_file is not None else None
        self.reuse_source = f"splits file {cfg.splits_file}"
        # The reused subsets were drawn with the file's seed, and the new record lists them: it
        # states that seed, whatever data.subset_seed says (the record describes its own volumes).
        self.subset_seed = cfg.subset_seed if self.reuse is None else self.reuse.subset_seed
        self.subsets: dict[str, SubsetRecord] = {}
        self.chain: dict[str, list[str]] = {}

    def main(self, split: str, *, labelled: bool) -> SliceDataset:
        return _build_source(self.cfg.dataset, dict(self.cfg.params), split=split, labelled=labelled)

    def _label_chain(self, train: SliceDataset, *, fraction: float) -> dict[str, list[str]]:
        """The nested chain: the default fractions that select a volume, plus ``fraction``."""
        if self.reuse is not None:
            return {k: list(v) for k, v in self.reuse.label_subsets.items()}
        ids = [v for v, _ in item_refs(train)]
        count = len(set(ids))
        fractions = sorted(
            {fraction, *(f for f in DEFAULT_LABEL_FRACTIONS if subset_size(count, f) > 0)}, reverse=True
        )
        chain = label_limited_subsets(ids, fractions=fractions, seed=self.cfg.subset_seed)
        return {fraction_key(f): list(v) for f, v in chain.items()}

    def training_subset(self, *, fraction: float, labelled: bool) -> SliceDataset:
        """The label-limited subset ``fraction`` of the train split, by volume."""
        split = self.main("train", labelled=labelled)
        self.chain = self._label_chain(split, fraction=fraction)
        if self.reuse is not None:
            volumes = self.reuse.label_subset(fraction, source=self.reuse_source)
            train = select_volumes(split, volumes, what=self.reuse_source)
        else:
            train = select_volumes(split, self.chain[fraction_key(fraction)], what="label-limited subsets")
        self.subsets["train"] = _record(self.cfg.dataset, "train", train, fraction=fraction)
        return train

    def evaluation_set(self, name: str, *, labelled: bool) -> SliceDataset:
        """The ``val``/``test`` split (``val`` capped at ``val_max_images`` evenly spaced slices)."""
        dataset = self.main(name, labelled=labelled)
        if self.reuse is not None and name in self.reuse.subsets:
            view: SliceDataset = select_items(dataset, self.reuse.subsets[name].items, what=self.reuse_source)
        else:
            limit = self.cfg.val_max_images if name == "val" else None
            view = Subset(dataset, evenly_spaced(len(dataset), limit))
        self.subsets[name] = _record(self.cfg.dataset, name, view)
        return view

    def unlabelled(self, position: int, source: SourceConfig) -> SliceDataset:
        """The ``fraction`` of volumes of one extra pretraining source."""
        params = dict(source.params)
        split = str(params.pop("split", "unlabelled"))
        where = f"data.unlabelled[{position}].params"
        dataset = _build_source(source.dataset, params, split=split, labelled=False, where=where)
        key = f"unlabelled/{position}"
        fraction = source.fraction
        if self.reuse is not None and key in self.reuse.subsets:
            chosen: Sequence[str] = self.reuse.subsets[key].volume_ids
            # The share that chose these volumes, not this config's (which chose nothing here).
            fraction = self.reuse.subsets[key].fraction
        else:
            # With data.subset_seed, as always, also beside a splits file: a run that drew a source so
            # resumes with the volumes it recorded.
            chosen = select_fraction(
                [v for v, _ in item_refs(dataset)],
                fraction=source.fraction,
                seed=self.cfg.subset_seed,
                what=f"data.unlabelled[{position}].fraction",
                of_what=f"{source.dataset} volumes",
            )
            if self.reuse is not None and self.cfg.subset_seed != self.subset_seed:
                warn_each_time(
                    f"data.unlabelled[{position}] is not in {self.reuse_source}, so its volumes are drawn "
                    f"with data.subset_seed={self.cfg.subset_seed}; the other subsets come from the file, "
                    f"drawn with its subset_seed {self.subset_seed}, which splits.json states. Set "
                    f"data.subset_seed={self.subset_seed} to draw every subset with one seed",
                    UserWarning,
                )
        view = select_volumes(dataset, chosen, what=self.reuse_source if self.reuse else key)
        self.subsets[key] = _record(source.dataset, split, view, fraction=fraction)
        return view

    def pretraining_set(self, train: SliceDataset) -> SliceDataset:
        """``train`` plus every unlabelled source, images only (so all sources collate)."""
        parts: list[SliceDataset] = [ImagesOnly(train)]
        names = [f"{self.cfg.dataset} train"]
        for i, extra in enumerate(self.cfg.unlabelled):
            parts.append(ImagesOnly(self.unlabelled(i, extra)))
            names.append(f"data.unlabelled[{i}] ({extra.dataset})")
        return ConcatSlices(parts, names=names)

    def fit(self, dataset: SliceDataset, *, what: str) -> SliceDataset:
        """Fit to ``image_size``, or check that the slices already share a usable size."""
        size = self.cfg.image_size
        if size is None:
            check_slice_sizes(dataset, what=what, size_multiple=self.size_multiple)
            return dataset
        return FitToSize(dataset, size, mode=self.cfg.resize_mode)


def _check_arguments(cfg: DataConfig, stage: str, size_multiple: int) -> None:
    check_option(stage, ("pretrain", "finetune"), field="stage")
    if size_multiple < 1:
        raise ValueError(f"size_multiple={size_multiple}; expected a positive integer")
    size = cfg.image_size
    if size is not None and (size[0] % size_multiple or size[1] % size_multiple):
        raise DataError(
            f"data.image_size={list(size)} is not divisible by {size_multiple} (the backbone's size "
            f"multiple); expected both sides to be multiples of {size_multiple}"
        )
    if cfg.cache_dir is not None and cfg.cache_dir.exists() and not cfg.cache_dir.is_dir():
        raise DataError(
            f"data.cache_dir={str(cfg.cache_dir)!r} is a file; expected a folder for the decompressed "
            "volumes (it is created when missing)"
        )


def build_datasets(cfg: DataConfig, *, stage: Stage, seed: int, size_multiple: int = 1) -> DataBundle:
    """Build the datasets of a pretraining or fine-tuning run.

    Args:
        cfg: The run's data configuration.
        stage: ``pretrain`` or ``finetune``.
        seed: The run seed. Subsets are drawn with ``cfg.subset_seed`` instead, so that runs
            with different seeds share subsets; ``seed`` is accepted for the engine's contract.
        size_multiple: Both sides of every slice must be divisible by this (backbone constraint).

    Returns:
        A :class:`DataBundle`.

    Raises:
        DataError: Empty split, a fraction selecting no volume, mixed channel counts, slice sizes
            that differ or do not divide by ``size_multiple``, or a splits file that does not
            match the data.
    """
    del seed  # subsets follow cfg.subset_seed; see the docstring
    _check_arguments(cfg, stage, size_multiple)
    with decompressed_into(cfg.cache_dir):
        return _build_datasets(cfg, stage=stage, size_multiple=size_multiple)


def _build_datasets(cfg: DataConfig, *, stage: Stage, size_multiple: int) -> DataBundle:
    builder = _Builder(cfg, size_multiple=size_multiple)
    finetune = stage == "finetune"
    fraction = cfg.label_fraction if finetune else 1.0
    train = builder.training_subset(fraction=fraction, labelled=finetune)
    val = builder.evaluation_set("val", labelled=finetune)
    test = builder.evaluation_set("test", labelled=True) if finetune else None
    if not finetune:
        train, val = builder.pretraining_set(train), ImagesOnly(val)
    for name, other in (("val", val), ("test", test)):
        # The test set is first read after training: a mismatch found there costs the whole run.
        if other is not None and other.in_channels != train.in_channels:
            raise DataError(
                f"{cfg.dataset}: train has {train.in_channels} channels but {name} has {other.in_channels}"
            )
    record = SplitRecord(
        stage=stage,
        dataset=cfg.dataset,
        subset_seed=builder.subset_seed,
        label_fraction=fraction,
        label_subsets=builder.chain,
        subsets=builder.subsets,
    )
    files = sorted({f for ds in (train, val, test) if ds is not None for f in data_files_of(ds)})
    return DataBundle(
        train=builder.fit(train, what=f"{cfg.dataset} train set"),
        val=builder.fit(val, what=f"{cfg.dataset} val set"),
        test=None if test is None else builder.fit(test, what=f"{cfg.dataset} test set"),
        in_channels=train.in_channels,
        # Checked here too, for a plugin dataset's names: the built-in readers check their own.
        class_names=check_class_names(train.class_names, where=f"data.dataset={cfg.dataset!r}")
        if finetune
        else (),
        splits=record,
        data_files=files,
    )


def build_split(cfg: DataConfig, split: str, *, size_multiple: int = 1) -> SliceDataset:
    """One labelled split, as :func:`build_datasets` builds and fits it, without the others.

    What scoring a model reads: a data section for new labelled scans may define its ``test``
    split alone, where :func:`build_datasets` needs ``train`` and ``val`` too (a run trains on them).

    Args:
        cfg: The data configuration.
        split: ``train`` (its ``label_fraction`` subset), ``val`` (capped at ``val_max_images``
            slices) or ``test``.
        size_multiple: Both sides of every slice must be divisible by this (backbone constraint).

    Raises:
        DataError: As :func:`build_datasets`, for this split's files alone.
    """
    check_option(split, ("train", "val", "test"), field="split")
    _check_arguments(cfg, "finetune", size_multiple)
    with decompressed_into(cfg.cache_dir):
        builder = _Builder(cfg, size_multiple=size_multiple)
        if split == "train":
            view = builder.training_subset(fraction=cfg.label_fraction, labelled=True)
        else:
            view = builder.evaluation_set(split, labelled=True)
        return builder.fit(view, what=f"{cfg.dataset} {split} set")
