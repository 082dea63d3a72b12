"""The pre-flight data check: every case read in full and checked before training starts."""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar

import h5py
import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from inpaintssl.config import RECIPES, DataConfig
from inpaintssl.data import DataError, build_datasets
from inpaintssl.data import preflight as preflight_module
from inpaintssl.data.base import SliceDataset
from inpaintssl.data.preflight import CaseCheck, check_same_geometry, file_fingerprints, preflight
from inpaintssl.data.readers import NiftiVolume, NumpyVolume
from inpaintssl.data.views import select_volumes
from inpaintssl.data.volumes import VolumeSliceDataset, hdf5_dataset, nifti_dataset, numpy_dataset
from inpaintssl.training.context import FinishedRunWarning

CLASSES = ("a", "b")


def _image(seed: int, shape: tuple[int, ...] = (16, 16, 4)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _label(seed: int, shape: tuple[int, ...] = (16, 16, 4)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, size=shape).astype(np.uint8)


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)  # type: ignore[no-untyped-call]
    return path


def _nifti_cases(root: Path, **arrays: np.ndarray) -> dict[str, Any]:
    """One image/label pair per split; ``arrays`` (e.g. ``train_seg=...``) replace the defaults."""
    cases: dict[str, Any] = {}
    for seed, split in enumerate(("train", "val", "test")):
        _save_nifti(root / f"{split}.nii.gz", arrays.get(split, _image(seed)))
        _save_nifti(root / f"{split}_seg.nii.gz", arrays.get(f"{split}_seg", _label(seed)))
        cases[split] = {"image": f"{split}.nii.gz", "label": f"{split}_seg.nii.gz"}
    return cases


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _finetune_config(root: Path, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": data,
        "model": {"params": {"depth": 2, "base_width": 4}},
        "optim": {"max_epochs": 1, "batch_size": 4},
        "run": {"output_dir": str(root / "run"), "device": "cpu", "quiet": True},
    }


def _run_folder_files(run: Path) -> list[str]:
    if not run.exists():
        return []
    # A lock file may be claimed before the check; nothing else may be written.
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "lock" not in p.name)


# -- acceptance: truncated files stop the run before training, naming the file -----------------


def test_truncated_gzip_nifti_stops_finetuning_before_training_naming_the_file(tmp_path: Path) -> None:
    cases = _nifti_cases(tmp_path, test=_image(2, (32, 32, 6)), test_seg=_label(2, (32, 32, 6)))
    _truncate(tmp_path / "test.nii.gz")
    # The header still parses: building the datasets succeeds, only the voxel data are cut.
    assert NiftiVolume(tmp_path / "test.nii.gz").shape == (32, 32, 6)
    params = {"cases": cases, "root": str(tmp_path), "class_names": CLASSES}
    data: dict[str, Any] = {"dataset": "nifti", "image_size": [16, 16], "params": params}

    with pytest.raises(DataError, match=r"NIfTI file .*test\.nii\.gz cannot be read .*EOFError"):
        issl.finetune(_finetune_config(tmp_path, data))

    assert _run_folder_files(tmp_path / "run") == []


def test_truncated_hdf5_stops_pretraining_before_training_naming_the_file(tmp_path: Path) -> None:
    cases = {}
    for seed, split in enumerate(("train", "val")):
        with h5py.File(tmp_path / f"{split}.h5", "w") as handle:
            handle.create_dataset("image", data=_image(seed, (16, 16, 64)))
        cases[split] = f"{split}.h5"
    _truncate(tmp_path / "val.h5", keep=0.9)
    data = {"dataset": "hdf5", "params": {"cases": cases, "root": str(tmp_path)}}
    config = _finetune_config(tmp_path, data)
    config["pretext"] = {"patch_size": 4, "bank_size": 4, "sampler": "random"}

    with pytest.raises(DataError, match=r"HDF5 file .*val\.h5 cannot be (opened|read)"):
        issl.pretrain(config)

    assert _run_folder_files(tmp_path / "run") == []


# -- one test per check: each fails without its check ------------------------------------------


def _nifti_set(root: Path, split: str = "train", **arrays: np.ndarray) -> SliceDataset:
    cases = _nifti_cases(root, **arrays)
    return nifti_dataset(split=split, cases=cases, root=root, class_names=CLASSES)


def test_truncated_nifti_is_found_only_by_reading_every_voxel(tmp_path: Path) -> None:
    cases = _nifti_cases(tmp_path, train=_image(0, (64, 64, 4)), train_seg=_label(0, (64, 64, 4)))
    _truncate(tmp_path / "train.nii.gz", keep=0.7)  # before opening: its header reads
    dataset = nifti_dataset(split="train", cases=cases, root=tmp_path, class_names=CLASSES)
    with pytest.raises(DataError, match=r"train\.nii\.gz cannot be read at slice 0 .*truncated"):
        preflight({"train": dataset}, progress=False)


def test_truncated_uncompressed_nifti_is_named(tmp_path: Path) -> None:
    _save_nifti(tmp_path / "a.nii", _image(0))
    _truncate(tmp_path / "a.nii", keep=0.6)
    # Refused when opened, as the dataset is built, before any slice is read: its length falls
    # short of what its header describes.
    with pytest.raises(DataError, match=r"NIfTI file .*a\.nii holds \d+ bytes; expected \d+ .*truncated\?"):
        dataset = nifti_dataset(split="unlabelled", labelled=False, cases="a.nii", root=tmp_path)
        preflight({"train": dataset}, progress=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_image_voxel_in_a_late_slice_is_found(tmp_path: Path, bad: float) -> None:
    image = _image(1)
    image[7, 9, 3] = bad
    dataset = _nifti_set(tmp_path, split="val", val=image)
    with pytest.raises(DataError, match=r"val\.nii\.gz slice 3: 1 NaN/Inf value"):
        preflight({"val": dataset}, progress=False)


def test_complex_image_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", _image(0).astype(np.complex64))
    dataset = numpy_dataset(split="unlabelled", labelled=False, cases="c.npy", root=tmp_path)
    with pytest.raises(DataError, match=r"c\.npy slice 0: values have dtype complex64; expected real"):
        preflight({"train": dataset}, progress=False)


def test_empty_volume_is_refused_when_opened(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros((16, 0, 4), np.float32))
    with pytest.raises(DataError, match=r"e\.npy: array has shape \(16, 0, 4\), an empty axis"):
        NumpyVolume(tmp_path / "e.npy")


def test_label_values_outside_the_classes_are_found_in_any_slice(tmp_path: Path) -> None:
    label = _label(0)
    label[0, 0, 3] = 9
    dataset = _nifti_set(tmp_path, train_seg=label)
    with pytest.raises(DataError, match=r"train_seg\.nii\.gz slice 3: label values \[9\] are out of range"):
        preflight({"train": dataset}, progress=False)


@pytest.mark.parametrize(("bad", "message"), [(0.5, "non-integer"), (np.nan, "1 NaN/Inf value")])
def test_float_labels_must_hold_integers(tmp_path: Path, bad: float, message: str) -> None:
    label = _label(0).astype(np.float32)
    label[3, 3, 2] = bad
    np.save(tmp_path / "i.npy", _image(0))
    np.save(tmp_path / "l.npy", label)
    cases = {"train": {"image": "i.npy", "label": "l.npy"}}
    dataset = numpy_dataset(split="train", cases=cases, root=tmp_path, class_names=CLASSES)
    with pytest.raises(DataError, match=rf"l\.npy slice 2: label holds {message}"):
        preflight({"train": dataset}, progress=False)


def test_label_affine_must_match_the_image(tmp_path: Path) -> None:
    rotated = np.array([[0.0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    cases = _nifti_cases(tmp_path)
    _save_nifti(tmp_path / "val_seg.nii.gz", _label(1), rotated)
    dataset = nifti_dataset(split="val", cases=cases, root=tmp_path, class_names=CLASSES)
    with pytest.raises(DataError, match=r"val_seg\.nii\.gz has affine .*\(largest difference 1 mm\)"):
        preflight({"val": dataset}, progress=False)


def test_label_spacing_must_match_the_image(tmp_path: Path) -> None:
    cases = _nifti_cases(tmp_path)
    _save_nifti(tmp_path / "test_seg.nii.gz", _label(2), np.diag([0.5, 0.5, 1.0, 1.0]))
    dataset = nifti_dataset(split="test", cases=cases, root=tmp_path, class_names=CLASSES)
    with pytest.raises(DataError, match=r"voxel spacing \(0\.5, 0\.5, 1\) mm but image .* \(1, 1, 1\) mm"):
        preflight({"test": dataset}, progress=False)


def test_geometry_within_float32_rounding_is_accepted(tmp_path: Path) -> None:
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-101.3, 87.25, 40.1]
    nudged = affine.copy()
    nudged[:3, 3] += 4e-5  # what a float32 srow round trip moves a 100 mm origin by
    image = NiftiVolume(_save_nifti(tmp_path / "i.nii", _image(0), affine))
    label = NiftiVolume(_save_nifti(tmp_path / "l.nii", _label(0), nudged))
    check_same_geometry(image, label)


def test_geometry_of_formats_without_it_is_not_compared(tmp_path: Path) -> None:
    np.save(tmp_path / "i.npy", _image(0))
    image = NumpyVolume(tmp_path / "i.npy", spacing=(0.5, 0.5, 3.0))
    label = NiftiVolume(_save_nifti(tmp_path / "l.nii", _label(0), np.diag([2.0, 2.0, 2.0, 1.0])))
    check_same_geometry(image, label)


def test_image_and_label_shapes_must_agree(tmp_path: Path) -> None:
    cases = _nifti_cases(tmp_path, train_seg=_label(0, (16, 16, 3)))
    with pytest.raises(DataError, match=r"train_seg\.nii\.gz has shape \(16, 16, 3\) but image"):
        nifti_dataset(split="train", cases=cases, root=tmp_path, class_names=CLASSES)


# -- scope and cost ---------------------------------------------------------------------------


def test_only_volumes_the_run_uses_are_checked_and_good_data_passes(tmp_path: Path) -> None:
    entries = []
    for i in range(6):
        _save_nifti(tmp_path / f"c{i}.nii.gz", _image(i))
        _save_nifti(tmp_path / f"c{i}_seg.nii.gz", _label(i))
        entries.append({"image": f"c{i}.nii.gz", "label": f"c{i}_seg.nii.gz"})
    cases: dict[str, Any] = {"train": entries[:4], "val": entries[4], "test": entries[5]}
    params = {"cases": cases, "root": tmp_path, "class_names": CLASSES}
    data = {"dataset": "nifti", "label_fraction": 0.5, "params": params}
    bundle = build_datasets(DataConfig.model_validate(data), stage="finetune", seed=0)
    chosen = set(bundle.train.volume_ids)
    unused = sorted({f"c{i}" for i in range(4)} - chosen)
    _truncate(tmp_path / f"{unused[0]}.nii.gz")  # outside the label-limited subset: never read

    report = preflight({"train": bundle.train, "val": bundle.val, "test": bundle.test}, progress=False)

    assert len(chosen) == 2
    assert report.cases == len(chosen) + 2  # the train subset, then c4 (val) and c5 (test)
    assert report.items == 0


def test_image_statistics_from_the_check_are_reused(tmp_path: Path) -> None:
    dataset = _nifti_set(tmp_path)
    preflight({"train": dataset}, progress=False)
    reads: list[int] = []
    volume = dataset._cases[0].image  # type: ignore[attr-defined]
    original = volume.read

    def counting_read(index: int) -> np.ndarray:
        reads.append(index)
        return original(index)

    volume.read = counting_read
    dataset[1]
    assert reads == [1]  # the item's slice only: no second normalisation pass


def test_plugin_dataset_without_checks_is_read_item_by_item() -> None:
    import torch

    class Plugin(SliceDataset):
        def __init__(self) -> None:
            self.volume_ids = ["v0", "v1"]

        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> dict[str, Any]:
            image = torch.zeros(1, 8, 8)
            image[0, 0, 0] = float("nan") if index == 1 else 0.0
            return {"image": image, "volume_id": f"v{index}", "slice_index": 0}

    with pytest.raises(DataError, match=r"my data train set item 1 \(volume 'v1', slice 0\): .*NaN"):
        preflight({"train": Plugin()}, progress=False, what="my data")


def test_a_plugin_check_that_fails_unworded_is_named_by_its_case(tmp_path: Path) -> None:
    import torch

    # docs/plugins.rst's NpySlices checks each file with np.load: a file cut short raised NumPy's
    # ValueError through preflight, naming no case, file or dataset.
    path = tmp_path / "s1.npy"
    np.save(path, np.zeros((32, 48), np.float32))
    path.write_bytes(path.read_bytes()[:-1000])

    class Plugin(SliceDataset):
        def __init__(self) -> None:
            self.volume_ids = ["s1"]

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> dict[str, Any]:
            return {"image": torch.zeros(1, 8, 8), "volume_id": "s1", "slice_index": 0}

        def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
            return [CaseCheck(f"npy case 's1' ({path})", lambda: np.load(path), files=(str(path),))]

    with pytest.raises(ValueError) as direct:  # what the check itself raises
        np.load(path)
    assert not isinstance(direct.value, DataError)
    with pytest.raises(DataError, match=rf"^npy case 's1' \({path}\) cannot be read: ValueError: .*") as told:
        preflight({"train": Plugin()}, progress=False, what="my data")
    assert str(direct.value) in str(told.value)


def test_a_plugin_whose_volume_ids_are_a_numpy_array_is_checked() -> None:
    import torch

    # "if not source.volume_ids" raised NumPy's "truth value of an array ... is ambiguous".
    class Plugin(SliceDataset):
        def __init__(self) -> None:
            self.volume_ids = np.array(["v0", "v1"])

        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> dict[str, Any]:
            if index == 1:
                raise OSError("disk said no")
            return {"image": torch.zeros(1, 8, 8), "volume_id": f"v{index}", "slice_index": 0}

    with pytest.raises(DataError, match=r"my data train set item 1 \(volume 'v1'\) cannot be read: OSError"):
        preflight({"train": Plugin()}, progress=False, what="my data")


def test_a_plugin_item_that_cannot_be_read_is_named_with_its_set_and_cause(tmp_path: Path) -> None:
    import gzip

    import torch

    # A plugin reading gzip-compressed slices, one file cut short: its EOFError stopped the check
    # naming neither the item nor the set.
    for index in range(3):
        (tmp_path / f"s{index}.gz").write_bytes(gzip.compress(np.zeros((8, 8), np.float32).tobytes()))
    cut = (tmp_path / "s2.gz").read_bytes()
    (tmp_path / "s2.gz").write_bytes(cut[: len(cut) // 2])

    class Plugin(SliceDataset):
        def __init__(self) -> None:
            self.volume_ids = ["v0", "v1", "v2"]  # per item

        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> dict[str, Any]:
            with gzip.open(tmp_path / f"s{index}.gz") as stream:
                image = torch.from_numpy(np.frombuffer(stream.read(), np.float32).reshape(1, 8, 8).copy())
            return {"image": image, "volume_id": f"v{index}", "slice_index": 0}

    with pytest.raises(EOFError) as direct:  # what the plugin itself raises
        Plugin()[2]
    with pytest.raises(
        DataError, match=r"^my data train set item 2 \(volume 'v2'\) cannot be read: EOFError: "
    ) as refused:
        preflight({"train": Plugin()}, progress=False, what="my data")
    assert str(direct.value) in str(refused.value)


def _item_plugin(image: Any, label: Any, *, class_names: tuple[str, ...] = ("a", "b")) -> SliceDataset:
    class Plugin(SliceDataset):
        def __init__(self) -> None:
            self.volume_ids = ["v0"]
            self.class_names = class_names

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> dict[str, Any]:
            return {"image": image, "label": label, "volume_id": "v0", "slice_index": 0}

    return Plugin()


def _onehot(*channels: list[list[float]]) -> Any:
    import torch

    return torch.tensor(channels, dtype=torch.float32)


@pytest.mark.parametrize(
    ("image", "label", "message"),
    [
        ("float64", "good", r"image is a torch.float64 tensor; expected float32"),
        ("two_channels", "good", r"image has 2 channel\(s\) but the dataset's in_channels is 1"),
        # An index map where a one-hot label belongs: the loss would blame the network's output.
        (
            "good",
            "index_map",
            r"label is a torch.int64 tensor of shape \(1, 2, 2\); expected a float32 "
            r"one-hot tensor of shape \(2, 2, 2\): one 0/1 channel per foreground class \(2 classes\)",
        ),
        (
            "good",
            "one_channel_short",
            r"label is a torch.float32 tensor of shape \(1, 2, 2\); expected .*\(2, 2, 2\)",
        ),
        ("good", "values_255", r"label holds values \[0.0, 255.0\]; expected one-hot 0/1 values"),
        ("good", "overlapping", r"a pixel belongs to two classes"),
        ("good", "numpy", r"label is a ndarray; expected a float32 one-hot tensor"),
    ],
)
def test_plugin_items_breaking_the_contract_are_named_before_training(
    image: str, label: str, message: str
) -> None:
    import torch

    images = {
        "good": torch.zeros(1, 2, 2),
        "float64": torch.zeros(1, 2, 2, dtype=torch.float64),
        "two_channels": torch.zeros(2, 2, 2),
    }
    labels = {
        "good": _onehot([[1, 0], [0, 0]], [[0, 1], [0, 0]]),
        "index_map": torch.tensor([[[0, 1], [2, 0]]]),
        "one_channel_short": _onehot([[1, 0], [0, 0]]),
        "values_255": _onehot([[255, 0], [0, 0]], [[0, 0], [0, 0]]),
        "overlapping": _onehot([[1, 0], [0, 0]], [[1, 0], [0, 0]]),
        "numpy": np.zeros((2, 2, 2), np.float32),
    }
    dataset = _item_plugin(images[image], labels[label])
    with pytest.raises(DataError, match=r"my data train set item 0 \(volume 'v0', slice 0\): " + message):
        preflight({"train": dataset}, progress=False, what="my data")
    preflight({"train": _item_plugin(images["good"], labels["good"])}, progress=False, what="my data")


class _LabelledPlugin(SliceDataset):
    """A plugin labelled with one class whose item ``unlabelled_item`` lacks its label."""

    def __init__(self, *, unlabelled_item: int | None, pair: bool = False) -> None:
        self.class_names = ("blob",)
        self.volume_ids = ["v0", "v0", "v1", "v1"]
        self.unlabelled_item = unlabelled_item
        self.pair = pair

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> Any:
        import torch

        image, label = torch.zeros(1, 4, 6), torch.zeros(1, 4, 6)
        if self.pair:
            return image, label
        item = {"image": image, "volume_id": self.volume_ids[index], "slice_index": index % 2}
        if index != self.unlabelled_item:
            item["label"] = label
        return item


@pytest.mark.parametrize("unlabelled_item", [0, 3])
def test_an_item_of_a_labelled_set_without_a_label_is_named_before_training(unlabelled_item: int) -> None:
    # Collated with labelled items it failed in default_collate with KeyError('label'), naming nothing.
    slice_index = unlabelled_item % 2
    volume = "v0" if unlabelled_item < 2 else "v1"
    with pytest.raises(
        DataError,
        match=rf"my data train set item {unlabelled_item} \(volume '{volume}', slice {slice_index}\): has no "
        r"label; expected a float32 one-hot tensor of shape \(1, 4, 6\) under 'label' \(one 0/1 channel "
        r"per class of \['blob'\]\)",
    ):
        preflight({"train": _LabelledPlugin(unlabelled_item=unlabelled_item)}, progress=False, what="my data")
    preflight({"train": _LabelledPlugin(unlabelled_item=None)}, progress=False, what="my data")


def test_a_label_is_not_asked_of_items_only_pretraining_reads() -> None:
    from inpaintssl.data.views import ImagesOnly, Subset

    # Pretraining reads images only; a set of the same source that scores labels still asks.
    source = _LabelledPlugin(unlabelled_item=3)
    preflight({"train": ImagesOnly(source)}, progress=False, what="my data")
    with pytest.raises(DataError, match=r"my data train set item 3 .*: has no label"):
        preflight(
            {"train": ImagesOnly(Subset(source, [0, 1])), "test": Subset(source, [2, 3])},
            progress=False,
            what="my data",
        )
    # The test set selects volume v0 only: item 3 (volume v1) is read for pretraining alone.
    preflight({"train": ImagesOnly(source), "test": Subset(source, [0, 1])}, progress=False, what="my data")


def test_an_item_that_is_not_a_dict_is_named() -> None:
    # A tuple, as torchvision's datasets return, failed on item.get() with an AttributeError.
    with pytest.raises(
        DataError,
        match=r"my data train set item 0 is a tuple; expected a dict with a float32 \(C, H, W\) 'image'",
    ):
        preflight({"train": _LabelledPlugin(unlabelled_item=None, pair=True)}, progress=False, what="my data")


def test_hdf5_dataset_is_checked_per_case(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        handle.create_dataset("image", data=_image(0))
        label = _label(0)
        label[1, 1, 1] = 5
        handle.create_dataset("label", data=label)
    dataset = hdf5_dataset(split="train", cases={"train": "a.h5"}, root=tmp_path, class_names=CLASSES)
    with pytest.raises(DataError, match=r"label .*a\.h5 \(dataset 'label'\) slice 1: label values \[5\]"):
        preflight({"train": dataset}, progress=False)


# -- a resumed run reads again only what changed --------------------------------------------------


def _three_sets(root: Path) -> dict[str, SliceDataset | None]:
    """Each split as a new process would build it (no statistics cached from an earlier check)."""
    cases = {
        split: {"image": f"{split}.nii.gz", "label": f"{split}_seg.nii.gz"}
        for split in ("train", "val", "test")
    }
    return {s: nifti_dataset(split=s, cases=cases, root=root, class_names=CLASSES) for s in cases}


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    original = NiftiVolume.read

    def counting_read(self: NiftiVolume, index: int) -> np.ndarray:
        reads.append(self.path.name)
        return original(self, index)

    monkeypatch.setattr(NiftiVolume, "read", counting_read)
    return reads


def test_cases_whose_files_are_unchanged_are_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _nifti_cases(tmp_path)
    first = preflight(_three_sets(tmp_path), progress=False)
    reads = _count_reads(monkeypatch)

    again = preflight(_three_sets(tmp_path), progress=False, passed=first.passed)

    assert (first.cases, first.skipped) == (3, 0)
    assert (again.cases, again.skipped) == (0, 3)
    assert reads == []
    assert again.passed == first.passed
    # Each case's fingerprint names its image and label file with their sizes on disk.
    for split in ("train", "val", "test"):
        (what,) = [w for w in first.passed if f"'{split}'" in w]
        files = [tmp_path / f"{split}.nii.gz", tmp_path / f"{split}_seg.nii.gz"]
        assert [(name, size) for name, size, _ in first.passed[what]] == [
            (str(f), f.stat().st_size) for f in files
        ]


def test_a_file_changed_since_the_check_is_checked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _nifti_cases(tmp_path)
    first = preflight(_three_sets(tmp_path), progress=False)
    bad = _label(1)
    bad[2, 3, 1] = 7  # not a class
    _save_nifti(tmp_path / "val_seg.nii.gz", bad)

    with pytest.raises(DataError, match=r"label .*val_seg\.nii\.gz slice 1: label values \[7\]"):
        preflight(_three_sets(tmp_path), progress=False, passed=first.passed)

    # Only touching a file (same bytes, new modification time) also makes its case read again.
    _save_nifti(tmp_path / "val_seg.nii.gz", _label(1))
    second = preflight(_three_sets(tmp_path), progress=False)
    stat = (tmp_path / "test.nii.gz").stat()
    os.utime(tmp_path / "test.nii.gz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    reads = _count_reads(monkeypatch)
    third = preflight(_three_sets(tmp_path), progress=False, passed=second.passed)
    assert (third.cases, third.skipped) == (1, 2)
    assert set(reads) == {"test.nii.gz", "test_seg.nii.gz"}


def test_a_vanished_file_is_never_taken_as_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _nifti_cases(tmp_path)
    sets = _three_sets(tmp_path)  # opened while every file is there; the readers keep what they read
    first = preflight(sets, progress=False)
    (tmp_path / "train_seg.nii.gz").unlink()
    reads = _count_reads(monkeypatch)

    again = preflight(sets, progress=False, passed=first.passed)

    assert (again.cases, again.skipped) == (1, 2)
    assert set(reads) == {"train.nii.gz", "train_seg.nii.gz"}
    assert not [what for what in again.passed if "'train'" in what]


def test_checks_that_name_no_files_always_run() -> None:
    import torch

    runs: list[str] = []

    class Checked(SliceDataset):
        volume_ids: ClassVar[list[str]] = ["v0"]

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> dict[str, Any]:
            return {"image": torch.zeros(1, 4, 4), "volume_id": "v0", "slice_index": 0}

        def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
            return [CaseCheck("plugin case v0", lambda: runs.append("v0"))]

    first = preflight({"train": Checked()}, progress=False)
    again = preflight({"train": Checked()}, progress=False, passed={"plugin case v0": []})
    assert runs == ["v0", "v0"]
    assert first.passed == again.passed == {}
    assert (again.cases, again.skipped) == (1, 0)


def test_resumed_finetuning_rechecks_only_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = _nifti_cases(tmp_path)
    data: dict[str, Any] = {
        "dataset": "nifti",
        "image_size": [16, 16],
        "params": {"cases": cases, "root": str(tmp_path), "class_names": CLASSES},
    }
    config = _finetune_config(tmp_path, data)
    issl.finetune(config)
    record = json.loads((tmp_path / "run" / "data_check.json").read_text())
    # The manifest also says what the (default) budget recipe filled in.
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    budget = RECIPES["budget"]
    assert (
        manifest["recipe_filled"]["optim.lr"] == budget.lr
        and manifest["recipe_filled"]["loss.name"] == budget.loss
    )
    assert sorted(what.split()[2] for what in record["passed"]) == ["'test'", "'train'", "'val'"]

    resumed = {**config, "run": {**config["run"], "resume": True}}
    bad = _label(1)
    bad[0, 0, 3] = 9
    _save_nifti(tmp_path / "val_seg.nii.gz", bad)
    with pytest.raises(DataError, match=r"val_seg\.nii\.gz slice 3: label values \[9\]"):
        issl.finetune(resumed)

    _save_nifti(tmp_path / "val_seg.nii.gz", _label(1))
    checked: list[int] = []
    original = preflight_module.preflight

    def spy(*args: Any, **kwargs: Any) -> Any:
        report = original(*args, **kwargs)
        checked.append(report.cases)
        return report

    monkeypatch.setattr("inpaintssl.training.stages.preflight", spy)
    # Rewritten validation labels are checked again and used as they are now, with a word.
    rewritten = (
        r"validation or test files rewritten since data_check\.json recorded them \(same size, new "
        r"modification time\): \S*val_seg\.nii\.gz; the resumed run validates and tests on them"
    )
    with pytest.warns(FinishedRunWarning), pytest.warns(UserWarning, match=rewritten):
        issl.finetune(resumed)
    assert checked == [1]  # the rewritten val case; train and test were not read again


# -- which sets each case served ------------------------------------------------------------------


class _SpiedChecks(VolumeSliceDataset):
    """A real NIfTI dataset that records the volume ids it is asked to check, call by call."""

    asked: list[set[str]]

    def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
        self.asked.append(set(volume_ids))
        return super().preflight_checks(volume_ids)


def _one_source(root: Path, count: int) -> _SpiedChecks:
    """One labelled NIfTI split of ``count`` cases ``c0``, ``c1``, ... (a single source object)."""
    entries = []
    for i in range(count):
        _save_nifti(root / f"c{i}.nii.gz", _image(i))
        _save_nifti(root / f"c{i}_seg.nii.gz", _label(i))
        entries.append({"image": f"c{i}.nii.gz", "label": f"c{i}_seg.nii.gz"})
    dataset = nifti_dataset(split="train", cases={"train": entries}, root=root, class_names=CLASSES)
    dataset.__class__ = _SpiedChecks
    assert isinstance(dataset, _SpiedChecks)
    dataset.asked = []
    return dataset


def _by_volume(mapping: Any) -> dict[str, Any]:
    """A report mapping keyed by the volume id its check names (``nifti case 'c0' (...)``)."""
    return {what.split("'")[1]: value for what, value in mapping.items()}


def test_the_report_says_which_set_each_case_of_a_shared_source_served(tmp_path: Path) -> None:
    # One dataset split into train and val by views: the checks of one source serve both sets.
    source = _one_source(tmp_path, 4)
    train = select_volumes(source, ["c0", "c1"], what="test")
    val = select_volumes(source, ["c2"], what="test")

    report = preflight({"train": train, "val": val, "test": None}, progress=False)

    assert _by_volume(report.sets) == {"c0": ("train",), "c1": ("train",), "c2": ("val",)}
    # passed is what it was: each checked case's files and fingerprints, whichever set it served.
    assert _by_volume(report.passed) == {
        f"c{i}": file_fingerprints([str(tmp_path / f"c{i}.nii.gz"), str(tmp_path / f"c{i}_seg.nii.gz")])
        for i in range(3)
    }
    alone = preflight({"all": select_volumes(source, ["c0", "c1", "c2"], what="test")}, progress=False)
    assert report.passed == alone.passed
    assert (report.cases, report.items, report.skipped) == (3, 0, 0)


def test_a_case_in_two_sets_is_checked_once_and_recorded_under_both(tmp_path: Path) -> None:
    source = _one_source(tmp_path, 3)
    train = select_volumes(source, ["c0", "c1"], what="test")
    val = select_volumes(source, ["c1", "c2"], what="test")

    report = preflight({"train": train, "val": val}, progress=False)

    assert _by_volume(report.sets) == {"c0": ("train",), "c1": ("train", "val"), "c2": ("val",)}
    assert report.cases == 3  # c1 once, although both sets hold it
    assert sorted(_by_volume(report.passed)) == ["c0", "c1", "c2"]
    again = preflight({"train": train, "val": val}, progress=False, passed=report.passed)
    assert (again.cases, again.skipped) == (0, 3)
    assert again.sets == report.sets


def test_a_shared_source_is_asked_for_its_checks_once_per_group_of_sets(tmp_path: Path) -> None:
    # Not once per volume: the ids are grouped by the sets that select them.
    source = _one_source(tmp_path, 6)
    sets: dict[str, SliceDataset | None] = {
        "train": select_volumes(source, ["c0", "c1", "c2", "c3"], what="test"),
        "val": select_volumes(source, ["c2", "c3", "c4", "c5"], what="test"),
        "test": select_volumes(source, ["c4", "c5"], what="test"),
    }

    report = preflight(sets, progress=False)

    assert source.asked == [{"c0", "c1"}, {"c2", "c3"}, {"c4", "c5"}]
    assert _by_volume(report.sets) == {
        "c0": ("train",),
        "c1": ("train",),
        "c2": ("train", "val"),
        "c3": ("train", "val"),
        "c4": ("test", "val"),
        "c5": ("test", "val"),
    }
    assert report.cases == 6
