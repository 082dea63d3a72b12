"""issl.evaluate: classes matched by name, and the fixed corruption of pretraining checkpoints."""

from __future__ import annotations

import csv
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import ConcatDataset, Dataset, Subset

import inpaintssl as issl
from evaluation_helpers import assert_same_table
from inpaintssl.config import ConfigError
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.data.views import ClassOrder

DATA = {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 4, "num_test": 4, "size": [16, 16]}}
MODEL = {"backbone": "unet2d", "params": {"depth": 2, "base_width": 4}}


def _run(kind: str, out: Path, **extra: Any) -> Path:
    config: dict[str, Any] = {
        "data": DATA,
        "model": MODEL,
        "optim": {"max_epochs": 2, "batch_size": 4},
        "run": {"output_dir": str(out), "quiet": True, "device": "cpu", "seed": 0},
        **extra,
    }
    with pytest.warns(UserWarning):  # two epochs: too short to judge convergence
        (issl.pretrain if kind == "pretrain" else issl.finetune)(config)
    return out


def test_the_datas_classes_are_matched_to_the_models_by_name(tmp_path: Path) -> None:
    run = _run("finetune", tmp_path / "ft")
    test = SyntheticShapes(split="test", num_images=8, num_test=4, size=(16, 16))
    assert test.class_names == ("disc", "square")
    straight = issl.evaluate(run, test, device="cpu").select(level="image")
    # The same labels stored square first: scored by position, disc would be compared with squares.
    swapped = issl.evaluate(run, ClassOrder(test, ("square", "disc")), device="cpu").select(level="image")
    for name in ("dice_disc", "dice_square", "dice_mean"):
        np.testing.assert_array_equal(swapped.column(name), straight.column(name))
    assert straight.column("dice_disc").tolist() != straight.column("dice_square").tolist()

    organs = SyntheticShapes(split="test", num_images=8, num_test=4, size=(16, 16))
    organs.class_names = ("liver", "kidney")  # other anatomy, two classes all the same
    with pytest.raises(
        ValueError,
        match=r"the model segments \['disc', 'square'\] but the data's classes are \['liver', 'kidney'\]",
    ):
        issl.evaluate(run, organs, device="cpu")


class _Nameless(Dataset[dict[str, Any]]):
    """``parent``'s items, without any ``class_names`` to match them by."""

    def __init__(self, parent: Dataset[dict[str, Any]]) -> None:
        self.parent = parent

    def __len__(self) -> int:
        return len(self.parent)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self.parent[index])


def test_the_classes_are_matched_by_name_inside_a_torch_subset_or_concat(
    recorded_runs: dict[str, Path],
) -> None:
    # A torch Subset names no classes itself: its labels were scored by position, silently, so data
    # stored square first had each Dice column compare the other class.
    run = recorded_runs["sigmoid"]
    test = SyntheticShapes(split="test", num_images=8, num_test=4, size=(16, 16))
    straight = issl.evaluate(run, test, device="cpu").select(level="image")
    swapped = ClassOrder(test, ("square", "disc"))
    in_subset = issl.evaluate(run, Subset(swapped, range(len(swapped))), device="cpu").select(level="image")
    twice = issl.evaluate(run, ConcatDataset([swapped, Subset(swapped, range(len(swapped)))]), device="cpu")
    for name in ("dice_disc", "dice_square", "dice_mean"):
        np.testing.assert_array_equal(in_subset.column(name), straight.column(name))
        np.testing.assert_array_equal(
            twice.select(level="image").column(name), straight.column(name).tolist() * 2
        )
    assert straight.column("dice_disc").tolist() != straight.column("dice_square").tolist()
    # Parts listing their classes in different orders have no one order to put the labels in.
    with pytest.raises(
        ValueError,
        match=r"ConcatDataset whose parts name different classes \(part 0: \['disc', 'square'\]; "
        r"part 1: \['square', 'disc'\]\)",
    ):
        issl.evaluate(run, ConcatDataset([test, swapped]), device="cpu")
    # Data that name no classes are scored by position, as they always were, but not silently.
    with pytest.warns(UserWarning, match=r"the data \(a _Nameless\) name no classes, .* scored by position"):
        nameless = issl.evaluate(run, _Nameless(test), device="cpu").select(level="image")
    np.testing.assert_array_equal(nameless.column("dice_mean"), straight.column("dice_mean"))


def test_a_pretraining_checkpoint_is_scored_under_its_validation_corruption(tmp_path: Path) -> None:
    # Seed 0: evaluate's fixed corruption is the run's own validation corruption, so the L2 of
    # each validation image is the run's val_inpainting.csv, whose mean is the best validation loss.
    run = _run("pretrain", tmp_path / "pre", pretext={"patch_size": 4, "bank_size": 4})
    with open(run / "val_inpainting.csv", newline="") as handle:
        recorded = [float(row["l2_loss"]) for row in csv.DictReader(handle)]
    table = issl.evaluate(run, DATA, split="val", device="cpu")
    np.testing.assert_allclose(table.column("l2_loss"), recorded, rtol=1e-6)
    with open(run / "metrics.csv", newline="") as handle:
        best = min(float(row["val_loss"]) for row in csv.DictReader(handle))
    assert float(np.mean(recorded)) == pytest.approx(best, rel=1e-5)


def test_evaluate_scores_the_run_as_its_own_test_pass_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same memory format as the run (run.channels_last: auto) rounds the convolutions alike:
    # slice by slice, evaluate() reproduces test_metrics.csv exactly, not merely closely.
    import torch

    from inpaintssl import api

    run = _run("finetune", tmp_path / "ft")
    formats: list[bool] = []
    real = api.evaluate_segmentation

    def spy(model: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        weights = [p for p in model.parameters() if p.ndim == 4]
        formats.append(all(p.is_contiguous(memory_format=torch.channels_last) for p in weights))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(api, "evaluate_segmentation", spy)
    table = issl.evaluate(run, DATA, split="test", device="cpu").select(level="image")
    assert formats == [True]  # channels_last on the CPU, as training's "auto" chose
    with open(run / "test_metrics.csv", newline="") as handle:
        recorded = [row for row in csv.DictReader(handle) if row["level"] == "image"]
    for name in ("dice_disc", "dice_square"):
        np.testing.assert_array_equal(table.column(name), [float(row[name]) for row in recorded])


def test_without_data_the_run_is_scored_on_the_data_it_recorded(tmp_path: Path) -> None:
    run = _run("finetune", tmp_path / "ft", data={**DATA, "label_fraction": 0.5})
    given = issl.evaluate(run, DATA, device="cpu").select(level="image")
    # The run's own record (its label subset ignored: every split is read whole), the same record
    # named as a file, and a file holding the data section alone all score the same slices.
    recorded = issl.evaluate(run, device="cpu").select(level="image")
    from_file = issl.evaluate(run, run / "config.yaml", device="cpu").select(level="image")
    section = tmp_path / "data.yaml"
    section.write_text(yaml.safe_dump(DATA))
    from_section = issl.evaluate(run / "checkpoints" / "best", section, device="cpu").select(level="image")
    for table in (recorded, from_file, from_section):
        np.testing.assert_array_equal(table.column("dice_mean"), given.column("dice_mean"))
    # An override changes what is read: two more test images.
    more = issl.evaluate(run, overrides=["data.params.num_test=6"], device="cpu").select(level="image")
    assert len(more.column("dice_mean")) == 6 and len(given.column("dice_mean")) == 4


def test_a_home_relative_run_and_output_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Unexpanded, "~/ft" missed its run's recorded data section: with an override of the dataset,
    # the dataset's defaults (64 images) were scored instead of the run's 4 test images; and
    # output "~/eval.csv" was written under a folder named "~" in the working folder.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    run = _run("finetune", tmp_path / "home" / "ft")
    expected = issl.evaluate(run, overrides=["data.dataset=synthetic"], device="cpu")
    found = issl.evaluate("~/ft", overrides=["data.dataset=synthetic"], device="cpu", output="~/eval.csv")
    np.testing.assert_array_equal(found.column("dice_mean"), expected.column("dice_mean"))
    assert len(expected.select(level="image").column("dice_mean")) == 4
    assert (tmp_path / "home" / "eval.csv").is_file() and not (tmp_path / "~").exists()


def test_a_label_fraction_is_ignored_however_the_data_are_given(
    recorded_runs: dict[str, Path], tmp_path: Path
) -> None:
    # Dropped from a run config's file alone: a mapping, a data-section file, a DataConfig or an
    # override scored split="train" on the label-limited subset of 2 of its 8 images.
    from inpaintssl.config import DataConfig

    run = recorded_runs["sigmoid"]
    train = SyntheticShapes(split="train", num_images=8, num_val=4, num_test=4, size=(16, 16))  # DATA's
    whole = [(train[i]["volume_id"], train[i]["slice_index"]) for i in range(len(train))]
    limited = {**DATA, "label_fraction": 0.25}
    section = tmp_path / "data.yaml"
    section.write_text(yaml.safe_dump(limited))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"data": limited}))
    given: list[tuple[Any, Sequence[str]]] = [
        (limited, ()),
        (section, ()),
        (tmp_path / "run.yaml", ()),
        (DataConfig.model_validate(limited), ()),
        (DATA, ["data.label_fraction=0.25"]),
    ]
    for data, overrides in given:
        table = issl.evaluate(run, data, overrides=overrides, split="train", device="cpu")
        rows = table.select(level="image").rows
        assert [(row["volume_id"], row["slice_index"]) for row in rows] == whole, (data, overrides)


def test_a_dataset_given_built_with_slices_of_different_sizes_is_named(
    recorded_runs: dict[str, Path],
) -> None:
    # A data config's slices are checked so; a dataset given built failed in torch's collate instead:
    # "stack expects each tensor to be equal size".
    from inpaintssl.data.base import DataError
    from inpaintssl.data.views import ConcatSlices, FitToSize

    run = recorded_runs["sigmoid"]
    parts = [SyntheticShapes(split="test", num_images=8, num_test=2, size=(n, n)) for n in (16, 24)]
    mixed = ConcatSlices(parts, names=["small", "large"])
    with pytest.raises(
        DataError,
        match=r"evaluate's data, a ConcatSlices given built, read in batches of 4: slices have different "
        r"sizes \[\(16, 16\), \(24, 24\)\]; wrap it in inpaintssl.data.views.FitToSize with a size "
        r"\(e.g. \[16, 16\]\)",
    ):
        issl.evaluate(run, mixed, batch_size=4, device="cpu")  # a batch of both sizes
    # One slice a batch stacks nothing: each part scored as it is alone.
    one_by_one = issl.evaluate(run, mixed, batch_size=1, device="cpu").select(level="image")
    alone = [issl.evaluate(run, part, device="cpu").select(level="image") for part in parts]
    expected = [value for table in alone for value in table.column("dice_mean").tolist()]
    np.testing.assert_array_equal(one_by_one.column("dice_mean"), expected)
    # What the message advises: fitted, they are batched.
    fitted = issl.evaluate(run, FitToSize(mixed, (16, 16), mode="crop_or_pad"), batch_size=4, device="cpu")
    assert len(fitted.select(level="image")) == 4


def test_new_labelled_scans_may_define_their_test_split_alone(tmp_path: Path) -> None:
    # Scoring a trained model on new labelled scans: the data section has nothing to train on, and
    # needs none. Scored as the same scans are with train and val defined beside them.
    run = _run("finetune", tmp_path / "ft")
    test = SyntheticShapes(split="test", num_images=8, num_test=4, size=(16, 16))
    items = [test[i] for i in range(len(test))]
    image = np.stack([item["image"][0].numpy() for item in items], axis=-1)
    label = np.stack([(item["label"].numpy() * np.array([1, 2])[:, None, None]).sum(0) for item in items], -1)
    for name, array in (("scan", image), ("scan_seg", label.astype(np.uint8)), ("other", image[..., :2])):
        np.save(tmp_path / f"{name}.npy", array)
    np.save(tmp_path / "other_seg.npy", label[..., :2].astype(np.uint8))

    def section(**cases: dict[str, str]) -> dict[str, Any]:
        return {
            "dataset": "numpy",
            "params": {"root": str(tmp_path), "cases": cases, "class_names": ["disc", "square"]},
        }

    scan = {"image": "scan.npy", "label": "scan_seg.npy"}
    other = {"image": "other.npy", "label": "other_seg.npy"}
    alone = issl.evaluate(run, section(test=scan), device="cpu").select(level="image")
    beside = issl.evaluate(run, section(train=other, val=other, test=scan), device="cpu").select(
        level="image"
    )
    assert len(alone.column("dice_mean")) == 4
    for name in ("dice_disc", "dice_square", "dice_mean"):
        np.testing.assert_array_equal(alone.column(name), beside.column(name))
    with pytest.raises(ValueError, match=r"split 'val' is not defined"):
        issl.evaluate(run, section(test=scan), split="val", device="cpu")


def test_evaluate_data_mistakes_are_named(tmp_path: Path) -> None:
    run = _run("finetune", tmp_path / "ft")
    test = SyntheticShapes(split="test", num_images=8, num_test=4, size=(16, 16))
    with pytest.raises(ConfigError, match=r"override 'params.num_test=6': expected data.KEY=VALUE"):
        issl.evaluate(run, overrides=["params.num_test=6"], device="cpu")
    with pytest.raises(ValueError, match="overrides apply to a data config; data is a dataset"):
        issl.evaluate(run, test, overrides=["data.params.num_test=6"], device="cpu")
    with pytest.raises(ValueError, match="data is required with a module"):
        issl.evaluate(issl.load_model(run), device="cpu")
    (tmp_path / "bare").mkdir()
    with pytest.raises(ConfigError, match=r"bare: no config.yaml recorded beside it"):
        issl.evaluate(tmp_path / "bare", device="cpu")
    # A copied checkpoint, away from its run: overrides that name the dataset say what to read...
    shutil.copytree(run / "checkpoints" / "best", tmp_path / "copied")
    params = "data.params={num_images: 8, num_val: 2, num_test: 4, size: [16, 16]}"
    table = issl.evaluate(tmp_path / "copied", overrides=["data.dataset=synthetic", params], device="cpu")
    assert len(table.select(level="image").column("dice_mean")) == 4
    # ...and overrides that leave it unnamed would evaluate on the default (demo) data: refused.
    with pytest.raises(
        ConfigError, match=r"bare: no config.yaml .*\(given: data.image_size, which do not name it\)"
    ):
        issl.evaluate(tmp_path / "bare", overrides=["data.image_size=[16, 16]"], device="cpu")
    with pytest.raises(ConfigError, match=r"nowhere does not exist"):
        issl.evaluate(tmp_path / "nowhere", device="cpu")


def test_a_bad_data_field_is_named_by_its_path_and_its_file(tmp_path: Path) -> None:
    run = _run("finetune", tmp_path / "ft")
    # A whole run config: the field sits under data: in that file, as the error says.
    whole = tmp_path / "run.yaml"
    whole.write_text(yaml.safe_dump({"data": {**DATA, "imge_size": [16, 16]}, "run": {"seed": 0}}))
    with pytest.raises(
        ConfigError, match=r"(?s)in .*run\.yaml:\n  data\.imge_size: unknown field; did you mean"
    ):
        issl.evaluate(run, whole, device="cpu")
    # A data section on its own: its fields sit at the top of the file.
    alone = tmp_path / "data.yaml"
    alone.write_text(yaml.safe_dump({**DATA, "imge_size": [16, 16]}))
    with pytest.raises(ConfigError, match=r"(?s)in .*data\.yaml:\n  imge_size: unknown field"):
        issl.evaluate(run, alone, device="cpu")
    # An override: named as it was typed.
    with pytest.raises(ConfigError, match=r"(?s)in overrides:\n  data\.imge_size: unknown field"):
        issl.evaluate(run, overrides=["data.imge_size=[16, 16]"], device="cpu")


def _fitting_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str]]:
    """Each evaluation's ``(image_size, resize_mode)``, as ``evaluate`` builds its split, from now on."""
    from inpaintssl import api

    fitted: list[tuple[Any, str]] = []
    real = api.build_split

    def spy(cfg: Any, split: str, **kwargs: Any) -> Any:
        fitted.append((cfg.image_size, cfg.resize_mode))
        return real(cfg, split, **kwargs)

    monkeypatch.setattr(api, "build_split", spy)
    return fitted


def test_a_data_section_without_a_slice_size_takes_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # New scans given without data.image_size used to be scored on whole slices: a size the network
    # met neither in training nor in predict, which fits every slice as the run did.
    run = _run("finetune", tmp_path / "ft", data={**DATA, "image_size": [12, 12], "resize_mode": "resize"})
    fitted = _fitting_seen(monkeypatch)
    section = tmp_path / "data.yaml"
    section.write_text(yaml.safe_dump(DATA))
    recorded = issl.evaluate(run, device="cpu").select(level="image")
    given = issl.evaluate(run, DATA, device="cpu").select(level="image")
    from_file = issl.evaluate(run, section, device="cpu").select(level="image")
    assert fitted == [((12, 12), "resize")] * 3
    for table in (given, from_file):
        np.testing.assert_array_equal(table.column("dice_mean"), recorded.column("dice_mean"))
    # What a section gives is kept: its size (with the run's mode), or whole slices asked for.
    # Slices at another size are at another scale, as the spacing check tells.
    fitted.clear()
    scale = r"the data's in-plane voxel spacing as the model sees it, .* 1\.33 x 1\.33 mm of the run"
    with pytest.warns(UserWarning, match=scale):
        issl.evaluate(run, {**DATA, "image_size": [8, 8]}, device="cpu")
    with pytest.warns(UserWarning, match=scale):
        issl.evaluate(run, {**DATA, "image_size": None}, device="cpu")
    with pytest.warns(UserWarning, match=scale):
        issl.evaluate(run, DATA, overrides=["data.resize_mode=crop_or_pad"], device="cpu")
    assert fitted == [((8, 8), "resize"), (None, "crop_or_pad"), ((12, 12), "crop_or_pad")]


def test_a_whole_section_override_sets_the_fields_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: `data={...}`, as pretrain and finetune take a section (`optim={...}`), was refused:
    # "expected data.KEY=VALUE". The fields it names count as given; the others keep the run's.
    run = _run("finetune", tmp_path / "ft", data={**DATA, "image_size": [12, 12], "resize_mode": "resize"})
    fitted = _fitting_seen(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the spacing check: another scale, as meant
        issl.evaluate(run, DATA, overrides=["data={resize_mode: crop_or_pad}"], device="cpu")
        issl.evaluate(run, DATA, overrides=["data={image_size: [8, 8]}"], device="cpu")
    assert fitted == [((12, 12), "crop_or_pad"), ((8, 8), "resize")]
    with pytest.raises(ConfigError, match=r"expected data.KEY=VALUE .* or data=\{...\}"):
        issl.evaluate(run, DATA, overrides=["optim={lr: 1}"], device="cpu")


# -- a model from load_model is scored as its path is -------------------------------------------


@pytest.fixture(scope="module")
def recorded_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny runs of each kind the metadata tells apart: sigmoid and softmax heads, and pretraining."""
    root = tmp_path_factory.mktemp("recorded")
    return {
        "sigmoid": _run("finetune", root / "sigmoid"),
        "softmax": _run("finetune", root / "softmax", loss={"params": {"activation": "softmax"}}),
        "pretrain": _run("pretrain", root / "pre", pretext={"patch_size": 4, "bank_size": 4}),
    }


def _scans(folder: Path, class_names: list[str]) -> dict[str, Any]:
    """The synthetic test slices as a ``numpy`` test split, its classes listed in ``class_names``' order."""
    test = SyntheticShapes(split="test", num_images=8, num_test=4, size=(16, 16))
    items = [test[i] for i in range(len(test))]
    image = np.stack([item["image"][0].numpy() for item in items], axis=-1)
    # Stored label values 1 (disc) and 2 (square), whatever order the config lists the classes in.
    label = np.stack([(item["label"].numpy() * np.array([1, 2])[:, None, None]).sum(0) for item in items], -1)
    np.save(folder / "scan.npy", image)
    np.save(folder / "scan_seg.npy", label.astype(np.uint8))
    return {
        "dataset": "numpy",
        "params": {
            "root": str(folder),
            "cases": {"test": {"image": "scan.npy", "label": "scan_seg.npy"}},
            "class_names": class_names,
            "label_values": {"disc": 1, "square": 2},
        },
    }


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_a_loaded_segmentation_model_is_scored_as_its_run(
    recorded_runs: dict[str, Path], head: str, tmp_path: Path
) -> None:
    # A module from load_model was scored with the defaults (sigmoid, the data's class order): Dice 0
    # with the classes listed otherwise, and a softmax head failed on its background channel.
    run = recorded_runs[head]
    assert issl.load_model(run).inference_meta.activation == head
    # The run's own test pass, as it recorded it: what the loaded model must reproduce on its data.
    loaded = issl.evaluate(issl.load_model(run), DATA, device="cpu")
    with open(run / "test_metrics.csv", newline="") as handle:
        recorded = [row for row in csv.DictReader(handle) if row["level"] == "image"]
    for name in ("dice_disc", "dice_square"):
        expected = [float(row[name]) for row in recorded]
        np.testing.assert_array_equal(loaded.select(level="image").column(name), expected)
    assert_same_table(loaded, issl.evaluate(run, DATA, device="cpu"))
    # The same scans, their classes listed in either order: matched to the model's by name.
    straight = issl.evaluate(issl.load_model(run), _scans(tmp_path, ["disc", "square"]), device="cpu")
    swapped_data = _scans(tmp_path, ["square", "disc"])
    swapped = issl.evaluate(issl.load_model(run), swapped_data, device="cpu")
    assert_same_table(swapped, issl.evaluate(run, swapped_data, device="cpu"))
    for name in ("dice_disc", "dice_square", "dice_mean"):
        np.testing.assert_array_equal(swapped.column(name), straight.column(name))
    assert straight.column("dice_disc").tolist() != straight.column("dice_square").tolist()


def test_a_loaded_pretraining_model_is_scored_under_its_validation_corruption(
    recorded_runs: dict[str, Path],
) -> None:
    run = recorded_runs["pretrain"]
    with open(run / "val_inpainting.csv", newline="") as handle:
        recorded = [float(row["l2_loss"]) for row in csv.DictReader(handle)]
    loaded = issl.evaluate(issl.load_model(run), DATA, split="val", device="cpu")
    np.testing.assert_allclose(loaded.column("l2_loss"), recorded, rtol=1e-6)
    assert_same_table(loaded, issl.evaluate(run, DATA, split="val", device="cpu"))


def test_an_argument_other_than_the_models_record_is_refused(recorded_runs: dict[str, Path]) -> None:
    run = recorded_runs["sigmoid"]
    expected = issl.evaluate(run, DATA, device="cpu")
    for model in (run, issl.load_model(run)):
        with pytest.raises(ValueError, match=r"activation='softmax', but .* records activation 'sigmoid'"):
            issl.evaluate(model, DATA, activation="softmax", device="cpu")
        with pytest.raises(
            ValueError,
            match=r"class_names=\['square', 'disc'\], but .* records class_names \['disc', 'square'\]",
        ):
            issl.evaluate(model, DATA, class_names=["square", "disc"], device="cpu")
        # The record's own values, given: scored as without them.
        same = issl.evaluate(model, DATA, activation="sigmoid", class_names=("disc", "square"), device="cpu")
        assert_same_table(same, expected)
    with pytest.raises(ValueError, match=r"activation='sigmoid', but .* records activation 'none'"):
        issl.evaluate(issl.load_model(recorded_runs["pretrain"]), DATA, activation="sigmoid", device="cpu")


def test_a_bare_module_is_scored_with_the_arguments_given(recorded_runs: dict[str, Path]) -> None:
    from inpaintssl.registry import BACKBONES

    run = recorded_runs["softmax"]
    bare = BACKBONES.build("unet2d", in_channels=1, out_channels=3, depth=2, base_width=4, seed=0)
    bare.load_state_dict(issl.load_model(run).state_dict())
    assert not hasattr(bare, "inference_meta")
    given = issl.evaluate(bare, DATA, activation="softmax", class_names=["disc", "square"], device="cpu")
    assert_same_table(given, issl.evaluate(run, DATA, device="cpu"))


def test_a_loaded_model_fits_a_data_section_as_its_run_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The preprocessing a loaded model carries: a section without image_size takes the run's, and
    # slices at another scale are warned about, as for the run's path.
    run = _run("finetune", tmp_path / "ft", data={**DATA, "image_size": [12, 12], "resize_mode": "resize"})
    fitted = _fitting_seen(monkeypatch)
    loaded = issl.evaluate(issl.load_model(run), DATA, device="cpu")
    assert fitted == [((12, 12), "resize")]
    assert_same_table(loaded, issl.evaluate(run, DATA, device="cpu"))
    scale = r"the data's in-plane voxel spacing as the model sees it, .* 1\.33 x 1\.33 mm of the run"
    with pytest.warns(UserWarning, match=scale):
        issl.evaluate(issl.load_model(run), {**DATA, "image_size": [8, 8]}, device="cpu")


# -- a module passed in, and the arguments ---------------------------------------------------------


def _bare_module() -> Any:
    from inpaintssl.registry import BACKBONES

    return BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0)


def _snapshot(module: Any) -> dict[str, Any]:
    """What the caller sees of ``module``: flags, and each tensor's values, device, layout and storage."""
    tensors = {
        name: (t.detach().clone(), t.device, t.stride(), t.data_ptr())
        for name, t in [*module.named_parameters(), *module.named_buffers()]
    }
    grads = {name: (p.grad.clone(), p.grad.data_ptr()) for name, p in module.named_parameters()}
    return {
        "modes": {name: sub.training for name, sub in module.named_modules()},
        "tensors": tensors,
        "grads": grads,
    }


def _assert_as_before(module: Any, before: dict[str, Any]) -> None:
    after = _snapshot(module)
    assert after["modes"] == before["modes"]
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, (values, device, stride, pointer) in before["tensors"].items():
        now, now_device, now_stride, now_pointer = after["tensors"][name]
        assert (now_device, now_stride, now_pointer) == (device, stride, pointer), name
        assert now.dtype == values.dtype and torch.equal(now, values), name  # bit for bit
    for name, (grad, pointer) in before["grads"].items():
        assert after["grads"][name][1] == pointer and torch.equal(after["grads"][name][0], grad), name


def test_a_module_passed_in_comes_back_as_it_came() -> None:
    # evaluate moved the caller's network to channels_last (on the CPU) or the card, and left it in
    # eval mode: a notebook that went on fine-tuning it trained with dropout off and frozen statistics.
    module = _bare_module()
    module.train()
    module.encoder.levels[0].eval()  # a part the caller keeps in eval mode on purpose
    module.register_buffer("marker", torch.arange(16.0).reshape(1, 4, 2, 2))  # 4-D: re-laid out too
    module(torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))).sum().backward()
    weight = next(p for p in module.parameters() if p.ndim == 4)
    view = weight.view(-1)  # the caller's own view of a weight stays one
    before = _snapshot(module)
    assert before["modes"][""] and not before["modes"]["encoder.levels.0"]

    table = issl.evaluate(module, DATA, device="cpu")
    assert len(table.select(level="image")) == 4
    _assert_as_before(module, before)
    assert view.data_ptr() == weight.data_ptr()
    # Given back also when evaluate fails once it has moved the module.
    with pytest.raises(ValueError, match=r"the model segments \['a'\]"):
        issl.evaluate(module, DATA, class_names=["a"], device="cpu")
    _assert_as_before(module, before)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_a_module_cast_to_another_dtype_is_evaluated_as_the_float32_model_and_given_back(
    dtype: torch.dtype,
) -> None:
    # The batches are float32: a float64 or half module failed inside its first convolution.
    reference = issl.evaluate(_bare_module(), DATA, device="cpu")
    module = _bare_module().to(dtype)
    module(
        torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=dtype)
    ).sum().backward()
    before = _snapshot(module)
    table = issl.evaluate(module, DATA, device="cpu")
    _assert_as_before(module, before)
    # Cast back to float32, the weights are the reference's exactly where the cast is exact.
    scores = table.select(level="image").column("dice_mean")
    expected = reference.select(level="image").column("dice_mean")
    tolerance = 0.0 if dtype == torch.float64 else 0.05
    assert len(scores) == 4 and list(scores) == pytest.approx(list(expected), abs=tolerance)


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_a_device_other_than_cpu_or_cuda_is_refused_and_the_module_kept(device: str) -> None:
    # "meta" moved the caller's network to a device without values: its weights were gone.
    module = _bare_module()
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    with pytest.raises(
        ValueError,
        match=rf"^device={device!r} is not a valid option: expected 'auto', 'cpu', 'cuda' or 'cuda:N'",
    ):
        issl.evaluate(module, DATA, device=device)
    for name, p in module.named_parameters():
        assert p.device == torch.device("cpu") and torch.equal(p.detach(), before[name]), name


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"batch_size": "4"}, TypeError, r"^batch_size='4': expected a positive integer; found str$"),
        ({"batch_size": True}, TypeError, r"^batch_size=True: expected a positive integer; found bool$"),
        ({"batch_size": 2.0}, TypeError, r"^batch_size=2\.0: expected a positive integer; found float$"),
        ({"batch_size": 0}, ValueError, r"^batch_size=0; expected a positive integer$"),
        (
            {"num_workers": "2"},
            TypeError,
            r"^num_workers='2': expected an integer, 0 \(read here\) or more worker processes; found str$",
        ),
        ({"num_workers": True}, TypeError, r"^num_workers=True: expected an integer.*; found bool$"),
        (
            {"overrides": "data.image_size=[16, 16]"},
            ConfigError,
            r"^overrides: expected a list of .*found the string 'data\.image_size=\[16, 16\]'; "
            r"write \['data\.image_size=\[16, 16\]'\]$",
        ),
        (
            {"overrides": [3]},
            ConfigError,
            r"^overrides: expected a list of 'data\.KEY=VALUE' strings, found the item 3 \(int\)$",
        ),
        (
            {"overrides": None},
            ConfigError,
            r"^overrides: expected a list of 'data\.KEY=VALUE' strings, found NoneType None$",
        ),
        (
            {"class_names": "disc"},
            TypeError,
            r"^class_names='disc': expected a list of class names.*write \['disc'\]$",
        ),
        (
            {"output": 5},
            TypeError,
            r"^output: expected a CSV file path \(str or os\.PathLike\) or None; found int$",
        ),
        (
            {"checkpoint_or_model": None},
            TypeError,
            r"^checkpoint_or_model: expected a module or a path \(str or os\.PathLike\).*; found NoneType$",
        ),
    ],
)
def test_a_wrong_argument_is_named_before_anything_is_read(
    monkeypatch: pytest.MonkeyPatch, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    # "4" failed as "'<' not supported", a bare string of overrides as "override 'd'" (its first
    # letter), and an output folder only once the whole evaluation had run.
    from inpaintssl import api

    def read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the data were read before the arguments were checked")

    monkeypatch.setattr(api, "_evaluation_data", read)
    source = arguments.pop("checkpoint_or_model", _bare_module())
    with pytest.raises(error, match=message):
        issl.evaluate(source, DATA, device="cpu", **arguments)


@pytest.mark.parametrize(
    "data",
    [[{"image": torch.zeros(1, 16, 16), "label": torch.zeros(1, 16, 16)}], torch.zeros(2, 1, 16, 16), 3],
    ids=["list-of-items", "tensor", "int"],
)
def test_data_of_another_kind_is_named_with_the_kinds_taken(data: Any) -> None:
    # Anything not a dataset, path or config was taken for a mapping: "'list' object has no
    # attribute 'items'".
    found = type(data).__name__
    with pytest.raises(TypeError, match=rf"^evaluate: data is of type {found}; expected a torch Dataset"):
        issl.evaluate(_bare_module(), data, device="cpu")


def test_an_output_that_cannot_be_a_csv_file_is_refused_before_anything_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaintssl import api

    def read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the data were read before the arguments were checked")

    monkeypatch.setattr(api, "_evaluation_data", read)
    folder = tmp_path / "tables"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"^output='.*tables' is a folder; expected the path of a CSV file"):
        issl.evaluate(_bare_module(), DATA, device="cpu", output=folder)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(
        ValueError, match=r"notes\.txt is a file, not a folder, so no file can be written below it"
    ):
        issl.evaluate(_bare_module(), DATA, device="cpu", output=tmp_path / "notes.txt" / "eval.csv")
    assert not any(folder.iterdir())
