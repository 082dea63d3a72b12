"""build_datasets: stages, label-limited subsets, supersets, fitting, split files and errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_builders import SKMTEA_SHAPE, SkmteaFixture, write_dicom_slice
from PIL import Image
from torch.utils.data import default_collate

from inpaintssl.config import DataConfig, SourceConfig
from inpaintssl.data.base import DataError
from inpaintssl.data.build import build_datasets
from inpaintssl.data.mni152 import MNI152Dataset
from inpaintssl.data.splits import SplitRecord, label_limited_subsets, select_fraction


def _volumes(ds: torch.utils.data.Dataset) -> set[str]:  # type: ignore[type-arg]
    return {ds[i]["volume_id"] for i in range(len(ds))}


def test_finetune_subsets_are_nested_and_sized_by_volume() -> None:
    sizes = {}
    chosen = {}
    for fraction in (1.0, 0.5, 0.25, 0.1, 0.05):
        cfg = DataConfig(dataset="mni152", image_size=(112, 112), label_fraction=fraction, subset_seed=3)
        bundle = build_datasets(cfg, stage="finetune", seed=0, size_multiple=16)
        chosen[fraction] = set(bundle.splits.subsets["train"].volume_ids)
        sizes[fraction] = len(bundle.train)
        assert _volumes(bundle.train) == chosen[fraction]
    assert sizes == {1.0: 45, 0.5: 22, 0.25: 11, 0.1: 4, 0.05: 2}
    assert chosen[0.05] < chosen[0.1] < chosen[0.25] < chosen[0.5] < chosen[1.0]
    assert chosen[1.0] == set(MNI152Dataset(split="train").volume_ids)


def test_finetune_bundle_contents() -> None:
    cfg = DataConfig(dataset="mni152", image_size=(112, 112), label_fraction=0.5)
    bundle = build_datasets(cfg, stage="finetune", seed=0, size_multiple=16)
    assert bundle.in_channels == 1 and bundle.class_names == ("csf", "gm", "wm")
    assert bundle.test is not None and len(bundle.test) == 8 and len(bundle.val) == 8
    for ds in (bundle.train, bundle.val, bundle.test):
        item = ds[0]
        assert item["image"].shape == (1, 112, 112) and item["label"].shape == (3, 112, 112)
    assert all(f.endswith("_converted.nii.gz") for f in bundle.data_files) and len(bundle.data_files) == 3
    record = bundle.splits
    assert record.stage == "finetune" and record.label_fraction == 0.5
    assert sorted(record.label_subsets, key=float) == ["0.05", "0.1", "0.25", "0.5", "1"]
    assert record.subsets["test"].items == [(v, int(v[-3:])) for v in bundle.test.volume_ids]


def test_crop_or_pad_keeps_the_label_aligned_with_the_image() -> None:
    raw = MNI152Dataset(split="val")[3]
    fitted = build_datasets(
        DataConfig(dataset="mni152", image_size=(112, 112)), stage="finetune", seed=0, size_multiple=16
    ).val[3]
    # 116 rows -> 112: crop 2 from the top; 98 cols -> 112: pad 7 on the left
    torch.testing.assert_close(fitted["image"][:, :, 7:105], raw["image"][:, 2:114, :])
    torch.testing.assert_close(fitted["label"][:, :, 7:105], raw["label"][:, 2:114, :])
    assert fitted["label"][:, :, :7].sum() == 0
    assert fitted["image"][:, :, :7].unique().tolist() == [raw["image"].min().item()]


def test_same_config_gives_the_same_splits_and_the_seed_changes_them() -> None:
    def record(seed: int) -> SplitRecord:
        cfg = DataConfig(dataset="mni152", image_size=(112, 112), label_fraction=0.25, subset_seed=seed)
        return build_datasets(cfg, stage="finetune", seed=0).splits

    assert record(1) == record(1)
    assert record(1).subsets["train"] != record(2).subsets["train"]


def test_splits_file_is_reused_exactly(tmp_path: Path) -> None:
    cfg = DataConfig(
        dataset="mni152", image_size=(112, 112), label_fraction=0.25, subset_seed=5, val_max_images=3
    )
    first = build_datasets(cfg, stage="finetune", seed=0)
    first.splits.save(tmp_path / "splits.json")
    again = DataConfig(
        dataset="mni152",
        image_size=(112, 112),
        label_fraction=0.25,
        subset_seed=99,
        splits_file=tmp_path / "splits.json",
    )
    second = build_datasets(again, stage="finetune", seed=0)
    assert second.splits.subsets == first.splits.subsets
    assert [second.train[i]["volume_id"] for i in range(len(second.train))] == [
        first.train[i]["volume_id"] for i in range(len(first.train))
    ]
    smaller = build_datasets(again.model_copy(update={"label_fraction": 0.1}), stage="finetune", seed=0)
    assert set(smaller.splits.subsets["train"].volume_ids) < set(first.splits.subsets["train"].volume_ids)
    with pytest.raises(DataError, match=r"splits file .* has no label-limited subset for label_fraction=0.3"):
        build_datasets(again.model_copy(update={"label_fraction": 0.3}), stage="finetune", seed=0)


def test_a_reused_splits_file_records_the_seed_and_fractions_that_chose_its_volumes(tmp_path: Path) -> None:
    # The new record said the new config's subset_seed and fraction while listing the file's
    # volumes: a record whose seed and fraction do not give the volumes it lists.
    labelled = {"num_images": 20, "num_val": 2, "num_test": 2, "size": [16, 16]}
    first = build_datasets(
        DataConfig(dataset="synthetic", params=labelled, label_fraction=0.25, subset_seed=0),
        stage="finetune",
        seed=0,
    )
    first.splits.save(tmp_path / "finetune.json")
    again = DataConfig(
        dataset="synthetic",
        params=labelled,
        label_fraction=0.25,
        subset_seed=7,
        splits_file=tmp_path / "finetune.json",
    )
    record = build_datasets(again, stage="finetune", seed=0).splits
    ids = [f"train{i:04d}" for i in range(20)]
    seed0 = sorted(label_limited_subsets(ids, fractions=(0.25,), seed=0)[0.25])
    assert sorted(label_limited_subsets(ids, fractions=(0.25,), seed=7)[0.25]) != seed0  # the seeds differ
    assert record.subsets["train"].volume_ids == seed0
    assert record.subset_seed == 0

    extra = {"num_images": 10, "size": [16, 16]}
    unlabelled = [f"unlabelled{i:04d}" for i in range(10)]

    def pretrain(fraction: float, *, seed: int = 0, splits: Path | None = None) -> SplitRecord:
        source = SourceConfig(dataset="synthetic", params=extra, fraction=fraction)
        cfg = DataConfig(
            dataset="synthetic", params=labelled, unlabelled=[source], subset_seed=seed, splits_file=splits
        )
        return build_datasets(cfg, stage="pretrain", seed=0).splits

    pretrain(0.5).save(tmp_path / "pretrain.json")
    reused = pretrain(1.0, seed=7, splits=tmp_path / "pretrain.json")
    subset = reused.subsets["unlabelled/0"]
    assert (subset.fraction, reused.subset_seed) == (0.5, 0)
    # The record describes its own volumes: its seed and fraction draw them again.
    assert subset.volume_ids == list(select_fraction(unlabelled, fraction=0.5, seed=0))
    # A source the file does not list is drawn with data.subset_seed, as it was (a run that drew it so
    # resumes with its volumes), with a warning that the record states the file's seed.
    record.save(tmp_path / "finetune-seed0.json")
    with pytest.warns(
        UserWarning, match=r"data\.unlabelled\[0\] is not in splits file .* drawn with data\.subset_seed=7"
    ):
        added = pretrain(0.3, seed=7, splits=tmp_path / "finetune-seed0.json")
    assert added.subset_seed == 0
    assert added.subsets["unlabelled/0"].volume_ids == list(select_fraction(unlabelled, fraction=0.3, seed=7))
    assert added.subsets["unlabelled/0"].fraction == 0.3


def test_val_max_images_keeps_evenly_spaced_slices() -> None:
    full = MNI152Dataset(split="val").volume_ids
    cfg = DataConfig(dataset="mni152", image_size=(112, 112), val_max_images=3)
    bundle = build_datasets(cfg, stage="finetune", seed=0)
    assert [bundle.val[i]["volume_id"] for i in range(len(bundle.val))] == [full[0], full[4], full[7]]


def test_pretraining_combines_sources_and_drops_labels_and_extras(tmp_path: Path) -> None:
    np.save(tmp_path / "extra1.npy", np.random.default_rng(0).normal(size=(120, 90, 3)))
    np.save(tmp_path / "extra2.npy", np.random.default_rng(1).normal(size=(120, 90, 2)))
    cfg = DataConfig(
        dataset="mni152",
        image_size=(112, 112),
        unlabelled=[
            SourceConfig(dataset="mni152", params={"axes": ["coronal"]}, fraction=0.5),
            SourceConfig(
                dataset="numpy", params={"cases": "extra*.npy", "root": str(tmp_path)}, fraction=0.5
            ),
        ],
    )
    bundle = build_datasets(cfg, stage="pretrain", seed=0, size_multiple=16)
    assert bundle.test is None and bundle.class_names == ()
    coronal = MNI152Dataset(split="unlabelled", labelled=False, axes=("coronal",))
    record = bundle.splits
    assert len(record.subsets["unlabelled/0"].volume_ids) == round(0.5 * len(coronal))
    assert len(record.subsets["unlabelled/1"].volume_ids) == 1  # round(0.5 * 2) volumes of the numpy source
    n_numpy = len(record.subsets["unlabelled/1"].items)
    assert n_numpy in (2, 3)
    assert len(bundle.train) == 45 + round(0.5 * len(coronal)) + n_numpy
    mixed = [bundle.train[0], bundle.train[len(bundle.train) - 1]]
    assert all(set(item) == {"image", "volume_id", "slice_index", "spacing"} for item in mixed)
    batch = default_collate(mixed)
    assert batch["image"].shape == (2, 1, 112, 112) and batch["spacing"].shape == (2, 3)
    assert "label" not in bundle.val[0]
    assert (
        str(tmp_path / "extra1.npy") in bundle.data_files or str(tmp_path / "extra2.npy") in bundle.data_files
    )


def test_skmtea_pretrain_and_finetune(skmtea: SkmteaFixture) -> None:
    params = {"root": str(skmtea.root)}
    cfg = DataConfig(dataset="skmtea", params=params, label_fraction=0.5, subset_seed=2)
    tuned = build_datasets(cfg, stage="finetune", seed=0, size_multiple=4)
    train_volumes = set(tuned.splits.subsets["train"].volume_ids)
    assert len(train_volumes) == 2 and len(tuned.train) == 2 * SKMTEA_SHAPE[2]
    assert _volumes(tuned.train) == train_volumes  # whole volumes, never split across subsets
    assert tuned.train[0]["scan_params"].keys() >= {"tr_ms", "te_ms"}
    assert str(skmtea.root / "all_metadata.csv") in tuned.data_files
    pre = build_datasets(
        cfg.model_copy(update={"unlabelled": [SourceConfig(dataset="skmtea", params=params)]}),
        stage="pretrain",
        seed=0,
        size_multiple=4,
    )
    assert len(pre.train) == (4 + 1) * SKMTEA_SHAPE[2]
    fitted = build_datasets(cfg.model_copy(update={"image_size": (8, 8)}), stage="finetune", seed=0).test[3]
    scan = fitted["volume_id"]
    # 16x12 -> 8x8 crop: rows 4..11, cols 2..9; the echoes follow the image
    assert fitted["echo1"].shape == (1, 8, 8) and fitted["label"].shape == (4, 8, 8)
    assert fitted["echo2"][0].numpy().tolist() == skmtea.echo2[scan][4:12, 2:10, 3].tolist()
    assert set(pre.train[len(pre.train) - 1]) == {"image", "volume_id", "slice_index", "spacing"}


def test_fit_to_size_applies_to_image_like_extras_and_resize_scales_spacing(tmp_path: Path) -> None:
    stored = np.arange(48, dtype=np.int16).reshape(6, 8) * 40
    write_dicom_slice(
        tmp_path / "a.dcm", stored, slope=1, intercept=-1024, z=0, instance=1, pixel_spacing=(0.5, 0.5)
    )
    Image.fromarray((np.arange(48).reshape(6, 8) % 5).astype(np.uint8)).save(tmp_path / "a.png")
    for copy in ("b", "c"):  # one scan per split: a scan in two of them is refused as a leak
        shutil.copy(tmp_path / "a.dcm", tmp_path / f"{copy}.dcm")
        shutil.copy(tmp_path / "a.png", tmp_path / f"{copy}.png")
    splits = {"train": "a", "val": "b", "test": "c"}
    cases = {split: {"image": f"{n}.dcm", "label": f"{n}.png"} for split, n in splits.items()}
    params = {"cases": cases, "root": str(tmp_path)}
    resized = DataConfig(dataset="ct", params=params, image_size=(12, 4), resize_mode="resize")
    item = build_datasets(resized, stage="finetune", seed=0).test[0]
    assert item["image"].shape == (3, 12, 4) and item["hu"].shape == (1, 12, 4)
    assert item["label"].shape == (4, 12, 4) and set(item["label"].unique().tolist()) <= {0.0, 1.0}
    assert item["spacing"].tolist() == pytest.approx([0.25, 1.0, 2.5])  # 0.5 * 6 / 12, 0.5 * 8 / 4, thickness
    cropped = build_datasets(
        resized.model_copy(update={"image_size": (4, 10), "resize_mode": "crop_or_pad"}),
        stage="finetune",
        seed=0,
    ).test[0]
    hu = stored.astype(np.float32) - 1024
    np.testing.assert_array_equal(cropped["hu"][0, :, 1:9].numpy(), hu[1:5])
    assert cropped["hu"][0, :, 0].tolist() == [-1024.0] * 4 and cropped["spacing"].tolist() == [0.5, 0.5, 2.5]


# -- errors ----------------------------------------------------------------------------------


def test_mixed_sizes_without_image_size_are_an_error() -> None:
    cfg = DataConfig(dataset="mni152", unlabelled=[SourceConfig(dataset="mni152")])
    with pytest.raises(
        DataError, match=r"mni152 train set: slices have different sizes .* set data\.image_size"
    ):
        build_datasets(cfg, stage="pretrain", seed=0)


def test_size_not_divisible_by_the_backbone_multiple() -> None:
    with pytest.raises(
        DataError, match=r"mni152 train set: slice size \(116, 98\) is not divisible by 16.*data\.image_size"
    ) as info:
        build_datasets(DataConfig(dataset="mni152"), stage="finetune", seed=0, size_multiple=16)
    # The suggestion is the largest crop of 116x98 with both sides a multiple of 16: 7 x 16, 6 x 16.
    assert "(e.g. [112, 96])" in str(info.value)
    with pytest.raises(DataError, match=r"data\.image_size=\[100, 112\] is not divisible by 16"):
        build_datasets(
            DataConfig(dataset="mni152", image_size=(100, 112)), stage="finetune", seed=0, size_multiple=16
        )


def test_a_side_of_a_few_pixels_is_suspected_to_be_channels_last() -> None:
    import torch

    from inpaintssl.data.base import SliceDataset
    from inpaintssl.data.build import check_slice_sizes

    class ChannelsLast(SliceDataset):
        """An RGB-like (H, W, 3) array handed over as it was stored."""

        def __init__(self) -> None:
            self.volume_ids = ["v"]

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> dict[str, object]:
            return {"image": torch.zeros(32, 32, 3), "volume_id": "v", "slice_index": 0}

    with pytest.raises(
        DataError,
        match=r"slice size \(32, 3\) is not divisible by 4 .*a side of 3 pixel\(s\) suggests an image stored "
        r"channels last: items must be \(C, H, W\), with C = in_channels \(1\)",
    ):
        check_slice_sizes(ChannelsLast(), what="mine train set", size_multiple=4)


def test_a_plugin_datasets_class_names_are_checked_as_the_readers_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The readers check their own names; a dataset of another package (here: the synthetic one,
    # given other names) named a class "mean" unchecked, and its Dice was overwritten by the average.
    from inpaintssl.data import synthetic

    real_init = synthetic.SyntheticShapes.__init__

    def named_mean(self: synthetic.SyntheticShapes, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        if self.class_names:
            self.class_names = ("mean", "square")

    monkeypatch.setattr(synthetic.SyntheticShapes, "__init__", named_mean)
    config = DataConfig(dataset="synthetic", params={"num_images": 8, "num_val": 2, "size": [16, 16]})
    with pytest.raises(
        DataError, match=r"^data\.dataset='synthetic': class_names \['mean', 'square'\] name a"
    ):
        build_datasets(config, stage="finetune", seed=0)
    assert build_datasets(config, stage="pretrain", seed=0).class_names == ()  # no classes to name


def test_a_fraction_selecting_no_volume() -> None:
    with pytest.raises(DataError, match=r"label_fraction=0.01 of 45 training volumes selects 0 volumes"):
        build_datasets(DataConfig(dataset="mni152", label_fraction=0.01), stage="finetune", seed=0)


def test_an_unlabelled_fraction_selecting_no_volume_counts_that_sources_volumes() -> None:
    # The 3 are the unlabelled source's volumes, not training volumes (40 here).
    source = {"dataset": "synthetic", "params": {"num_images": 3, "size": [16, 16]}, "fraction": 0.1}
    config = DataConfig(
        dataset="synthetic", params={"num_images": 40, "num_val": 2, "size": [16, 16]}, unlabelled=[source]
    )
    with pytest.raises(
        DataError, match=r"^data\.unlabelled\[0\]\.fraction=0\.1 of 3 synthetic volumes selects 0 volumes"
    ):
        build_datasets(config, stage="pretrain", seed=0)


def test_empty_split_from_a_plugin_like_dataset(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((4, 4, 0)))
    cfg = DataConfig(dataset="numpy", params={"cases": {"train": "a.npy"}, "root": str(tmp_path)})
    # A zero-slice file is refused when opened, naming it (issue 16), before the split is counted.
    with pytest.raises(DataError, match=r"a\.npy: array has shape \(4, 4, 0\), an empty axis"):
        build_datasets(cfg, stage="pretrain", seed=0)


@pytest.mark.parametrize(("split", "field"), [("val", "num_val"), ("test", "num_test")])
def test_synthetic_zero_images_in_a_split_is_refused_not_taken_as_unset(split: str, field: str) -> None:
    from inpaintssl.data.synthetic import SyntheticShapes

    with pytest.raises(
        DataError, match=rf"synthetic: params\.{field}=0 would leave split '{split}' with no images"
    ):
        SyntheticShapes(split=split, num_images=12, **{field: 0})
    assert len(SyntheticShapes(split=split, num_images=12)) == 12  # not given: num_images


@pytest.mark.parametrize("odd_split", ["val", "test"])
def test_a_split_with_another_channel_count_is_refused_before_training(
    tmp_path: Path, odd_split: str
) -> None:
    # A test set stored with 2 channels passed; the evaluation after training then failed, in an
    # error naming neither the split nor a file.
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        shape = (16, 16, 3, 2) if split == odd_split else (16, 16, 3)
        np.save(tmp_path / split / "a.npy", rng.normal(size=shape).astype(np.float32))
        np.save(tmp_path / split / "a_seg.npy", rng.integers(0, 2, size=(16, 16, 3)).astype(np.uint8))
    cases = {s: {"image": f"{s}/a.npy", "label": f"{s}/a_seg.npy"} for s in ("train", "val", "test")}
    cfg = DataConfig(dataset="numpy", params={"root": str(tmp_path), "cases": cases, "class_names": ["x"]})
    with pytest.raises(DataError, match=rf"^numpy: train has 1 channels but {odd_split} has 2$"):
        build_datasets(cfg, stage="finetune", seed=0)
