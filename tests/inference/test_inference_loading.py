"""``load_model``: a trained run back as a module with its metadata (issue 15, item 2)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
import yaml
from safetensors.torch import save_file

import inpaintssl as issl
from inpaintssl.checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from inpaintssl.config import ConfigWarning, DataConfig, FinetuneConfig, load_config
from inpaintssl.data.build import build_datasets
from inpaintssl.data.preprocess import DEFAULT_CT_WINDOWS, HU_FLOOR
from inpaintssl.data.spacing import SpacingRange
from inpaintssl.inference.loading import (
    LoadedModel,
    ModelInfo,
    Preprocessing,
    backbone_class,
    load_model,
    recorded_spacing,
)
from inpaintssl.models import UNet2d
from inpaintssl.registry import LOSSES


def _test_images(run: issl.FinetuneResult) -> torch.Tensor:
    """The run's own test slices (real items of its dataset, as training saw them)."""
    config = load_config(run.run_dir / "config.yaml", FinetuneConfig)
    bundle = build_datasets(config.data, stage="finetune", seed=0, size_multiple=4)
    assert bundle.test is not None
    return torch.stack([bundle.test[i]["image"] for i in range(len(bundle.test))])


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_outputs_equal_the_trained_model_exactly(trained_run: issl.FinetuneResult) -> None:
    trained = trained_run.model
    assert trained is not None
    model = load_model(trained_run.run_dir)
    assert _state_equal(model, trained)
    images = _test_images(trained_run)
    # The run trained in channels_last (the CPU default): compare in that layout, where the very
    # same kernels run, bit for bit; the default contiguous layout only reorders float sums.
    same_layout = copy.deepcopy(model).to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = trained(images.contiguous(memory_format=torch.channels_last))
        assert torch.equal(same_layout(images.contiguous(memory_format=torch.channels_last)), expected)
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)


def test_metadata_is_what_was_trained(trained_run: issl.FinetuneResult) -> None:
    model = load_model(trained_run.run_dir)
    assert isinstance(model, UNet2d) and isinstance(model, LoadedModel)
    assert not model.training and next(model.parameters()).device == torch.device("cpu")
    info = model.inference_meta
    assert info.kind == "finetune" and info.backbone == "unet2d"
    assert dict(info.backbone_params) == {"depth": 3, "base_width": 8}
    assert (info.in_channels, info.out_channels) == (1, 2)
    assert info.class_names == trained_run.class_names == ("disc", "square")
    assert info.activation == "sigmoid" and info.size_multiple == 4 and not info.folded
    assert info.epoch == trained_run.best_epoch
    assert info.val_loss == pytest.approx(trained_run.best_val_loss)
    assert info.source == trained_run.run_dir / "checkpoints" / "best"
    assert info.preprocessing == Preprocessing(
        dataset="synthetic",
        image_size=None,
        resize_mode="crop_or_pad",
        normalization="none",
        channels="image",
        dataset_params={"num_images": 16, "num_val": 4, "num_test": 4, "size": [32, 32]},
        in_plane_spacing_mm=SpacingRange((1.0, 1.0), (1.0, 1.0), by_axis=True),  # synthetic slices: 1 mm
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_trained_run_loads_onto_cuda(trained_run: issl.FinetuneResult) -> None:
    on_cpu = load_model(trained_run.run_dir)
    on_gpu = load_model(trained_run.run_dir, device="cuda")
    assert isinstance(on_gpu, LoadedModel) and not on_gpu.training
    assert {p.device.type for p in on_gpu.parameters()} == {"cuda"}
    assert on_gpu.inference_meta == on_cpu.inference_meta
    assert all(torch.equal(t.cpu(), on_cpu.state_dict()[k]) for k, t in on_gpu.state_dict().items())
    images = _test_images(trained_run)
    with torch.no_grad():
        expected = on_cpu(images)
        found = on_gpu(images.cuda()).cpu()
        # TF32 convolutions on the card round differently: logits agree to within 1 % of their
        # scale, and the thresholded masks on all but a few border pixels.
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-2 * float(expected.abs().max()))
        agree = (on_gpu.predict_onehot(found.cuda()).cpu() == on_cpu.predict_onehot(expected)).float().mean()
    assert float(agree) > 0.99


def test_every_way_of_naming_the_checkpoint_loads_the_same(trained_run: issl.FinetuneResult) -> None:
    run = trained_run.run_dir
    reference = load_model(run)
    for path in (run / "checkpoints" / "best", run / "checkpoints" / "best" / "model.safetensors", str(run)):
        other = load_model(path)
        assert other.inference_meta == reference.inference_meta
        assert _state_equal(other, reference)
    last = load_model(run, which="last")
    assert last.inference_meta.epoch == trained_run.epochs_run - 1
    assert last.inference_meta.preprocessing == reference.inference_meta.preprocessing


def test_a_path_under_the_home_folder_is_expanded(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "~/runs/ft" as typed in a shell or config, as predict and the CLI accept it.
    home = tmp_path / "home"
    shutil.copytree(trained_run.run_dir, home / "runs" / "ft")
    monkeypatch.setenv("HOME", str(home))
    best, last = load_model(home / "runs" / "ft"), load_model(home / "runs" / "ft", which="last")
    for path, expected in (
        ("~/runs/ft", best),
        (Path("~/runs/ft"), best),
        ("~/runs/ft/checkpoints/last", last),
    ):
        model = load_model(path)
        assert _state_equal(model, expected) and model.inference_meta == expected.inference_meta
        assert model.inference_meta.source is not None and home in model.inference_meta.source.parents
    assert _state_equal(load_model("~/runs/ft", which="last"), last)
    assert recorded_spacing("~/runs/ft") == SpacingRange((1.0, 1.0), (1.0, 1.0), by_axis=True)  # 1 mm


def test_pretraining_run_loads_as_an_inpainting_model(pretrained_run: issl.PretrainResult) -> None:
    model = load_model(pretrained_run.run_dir)
    info = model.inference_meta
    assert info.kind == "pretrain" and info.activation == "none" and info.class_names == ()
    assert info.in_channels == info.out_channels == 1
    assert info.pretext["task"] == "context_restoration" and info.pretext["patch_size"] == 4
    assert info.preprocessing is not None and info.preprocessing.dataset == "synthetic"
    assert pretrained_run.model is not None and _state_equal(model, pretrained_run.model)
    logits = torch.randn(1, 1, 8, 8)
    assert model.probabilities(logits) is logits
    with pytest.raises(ValueError, match="pretrain"):
        model.predict_onehot(logits)


def test_predict_onehot_is_the_run_loss(trained_run: issl.FinetuneResult) -> None:
    model = load_model(trained_run.run_dir)
    config = load_config(trained_run.run_dir / "config.yaml", FinetuneConfig)
    loss = LOSSES.build(config.loss_name, **config.loss_params)
    with torch.no_grad():
        logits = model(_test_images(trained_run))
    assert torch.equal(model.predict_onehot(logits), loss.predict_onehot(logits))
    torch.testing.assert_close(model.probabilities(logits), torch.sigmoid(logits))


def test_softmax_checkpoint_predicts_the_arg_max(tmp_path: Path) -> None:
    net = UNet2d(in_channels=1, out_channels=3, depth=2, base_width=4, seed=0)
    meta = CheckpointMeta(
        kind="finetune",
        backbone="unet2d",
        backbone_params={"depth": 2, "base_width": 4},
        in_channels=1,
        out_channels=3,
        class_names=["a", "b"],
        activation="softmax",
    )
    save_checkpoint(tmp_path / "best", net.state_dict(), meta)
    model = load_model(tmp_path / "best")
    assert model.inference_meta.preprocessing is None  # no run folder around it
    logits = torch.tensor([[[[9.0, 0.0, 0.0]], [[0.0, 9.0, 0.0]], [[0.0, 0.0, 9.0]]]])
    assert model.predict_onehot(logits).tolist() == [[[[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]]]


def test_pickle_and_deepcopy_keep_class_and_metadata(trained_run: issl.FinetuneResult) -> None:
    model = load_model(trained_run.run_dir)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    for other in (restored, copy.deepcopy(model)):
        assert type(other) is type(model) and backbone_class(type(other)) is UNet2d
        assert other.inference_meta == model.inference_meta and _state_equal(other, model)


# -- errors name the path and what was expected --------------------------------------------------


def _copy_run(run: issl.FinetuneResult, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run.run_dir, tmp_path / "run"))


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_run"
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_model(missing)
    assert str(missing) in str(err.value)


def test_folder_without_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("data: {}\n")
    with pytest.raises(CheckpointError, match=r"not a checkpoint .*checkpoints/best") as err:
        load_model(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_corrupted_weights_are_refused(trained_run: issl.FinetuneResult, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    _flip_a_byte(run / "checkpoints" / "best" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"changed or missing since written: model\.safetensors") as err:
        load_model(run)
    assert str(run / "checkpoints" / "best") in str(err.value)


def test_garbage_safetensors_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00\x01 not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as err:
        load_model(bad)
    assert str(bad) in str(err.value)


def test_bare_weights_without_metadata(tmp_path: Path) -> None:
    bare = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(CheckpointError, match="no architecture metadata") as err:
        load_model(bare)
    assert str(bare) in str(err.value)
    foreign = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=r"\.pt weights file has no architecture metadata"):
        load_model(foreign)


def test_weights_that_do_not_fit_the_recorded_architecture(tmp_path: Path) -> None:
    net = UNet2d(in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
    meta = CheckpointMeta(
        kind="pretrain", backbone="unet2d", backbone_params={"depth": 2, "base_width": 8}, in_channels=1,
        out_channels=1,
    )  # fmt: skip
    save_checkpoint(tmp_path / "best", net.state_dict(), meta)
    with pytest.raises(CheckpointError, match=r"weights do not fit backbone 'unet2d'.*base_width': 8") as err:
        load_model(tmp_path / "best")
    assert str(tmp_path / "best") in str(err.value)


def test_invalid_run_config(trained_run: issl.FinetuneResult, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    (run / "config.yaml").write_text("data:\n  resize_mode: stretch\n")
    with pytest.raises(CheckpointError, match=r"config\.yaml: invalid data section: data\.resize_mode"):
        load_model(run)


def test_a_run_setting_its_training_left_unused_is_not_told_again_to_the_models_user(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    run = _copy_run(trained_run, tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"].update(resize_mode="resize", image_size=None)  # unused: nothing to resize to
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.warns(ConfigWarning, match=r"data\.resize_mode='resize' has no effect"):
        DataConfig.model_validate(config["data"])  # as training was told
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        loaded = load_model(run)
    preprocessing = loaded.inference_meta.preprocessing
    assert preprocessing is not None and preprocessing.image_size is None


def test_damaged_spacing_record_in_the_manifest(trained_run: issl.FinetuneResult, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["in_plane_spacing_mm"] = {"smallest": [0.5]}
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json: in_plane_spacing_mm=.*expected"):
        load_model(run)
    # A run from before the spacing was recorded loads, with no range to check scans against.
    del manifest["in_plane_spacing_mm"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    info = load_model(run).inference_meta
    assert info.preprocessing is not None and info.preprocessing.in_plane_spacing_mm is None
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"manifest\.json: unreadable run manifest"):
        load_model(run)


@pytest.mark.parametrize("record", [["RAS"], {"RAX": 3}, {"RAS": "many"}])
def test_damaged_orientation_record_in_the_manifest(
    trained_run: issl.FinetuneResult, tmp_path: Path, record: object
) -> None:
    run = _copy_run(trained_run, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["orientations"] == {}  # synthetic slices come from no volume with an affine
    manifest["orientations"] = record
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json: orientations=.*expected axis codes -> slice"):
        load_model(run)
    manifest["orientations"] = {"ras": 5, "LPS": 2}  # codes are read in any case
    (run / "manifest.json").write_text(json.dumps(manifest))
    info = load_model(run).inference_meta
    assert info.preprocessing is not None and dict(info.preprocessing.training_orientations) == {
        "RAS": 5,
        "LPS": 2,
    }
    assert ModelInfo.from_json(info.to_json()) == dataclasses.replace(info, source=None)


def test_invalid_arguments(trained_run: issl.FinetuneResult) -> None:
    with pytest.raises(ValueError, match="which='first'"):
        load_model(trained_run.run_dir, which="first")  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "found"), [(42, "int"), (None, "NoneType"), (b"runs/ft", "bytes")])
def test_invalid_type_of_run_or_checkpoint_names_the_argument(value: object, found: str) -> None:
    # pathlib's own TypeError ("expected str, bytes or os.PathLike object, not int") names no argument.
    with pytest.raises(
        TypeError, match=rf"run_or_checkpoint: expected a path \(str or os\.PathLike\).*; found {found}$"
    ):
        load_model(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["best", "last"])
@pytest.mark.parametrize("inside", [("checkpoints", "best"), ("checkpoints", "best", "model.safetensors")])
def test_which_for_a_checkpoint_rather_than_a_run_is_refused(
    trained_run: issl.FinetuneResult, which: Literal["best", "last"], inside: tuple[str, ...]
) -> None:
    # A checkpoint names its weights already; loading 'best' when 'last' was asked would be silent.
    path = trained_run.run_dir.joinpath(*inside)
    with pytest.raises(ValueError, match=rf"which='{which}'.*{re.escape(str(path))} is not a run folder"):
        load_model(path, which=which)


# -- metadata types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "params", "expected"),
    [
        ("mni152", {}, {"normalization": "volume", "channels": "image", "slice_axis": 2}),
        ("skmtea", {"root": "/data"}, {"normalization": "volume", "channels": "rss_echoes"}),
        (
            "ct",
            {},
            {"normalization": "channel", "channels": "ct_windows", "ct_windows": DEFAULT_CT_WINDOWS},
        ),
        (
            "ct",
            {"windows": [[400, 50]], "hu_floor": -1000, "slice_axis": 0},
            {"ct_windows": ((400.0, 50.0),), "hu_floor": -1000.0, "slice_axis": 0},
        ),
        ("nifti", {}, {"normalization": "volume", "channels": "image", "slice_axis": 2}),
        ("dicom", {}, {"normalization": "volume", "channels": "image", "slice_axis": 2}),
        ("metaimage", {"slice_axis": 0}, {"normalization": "volume", "channels": "image", "slice_axis": 0}),
        (
            "nrrd",
            {"normalize": "channel"},
            {"normalization": "channel", "channels": "image", "slice_axis": 2},
        ),
        ("numpy", {"normalize": "channel", "slice_axis": 1}, {"normalization": "channel", "slice_axis": 1}),
        # Recorded as the readers cut: np.take(volume, k, axis=-1) would cut a (X, Y, Z, C) volume's channels.
        ("nifti", {"slice_axis": -1}, {"slice_axis": 2}),
        ("numpy", {"slice_axis": -3}, {"slice_axis": 0}),
        ("hdf5", {"normalize": "none"}, {"normalization": "none"}),
        ("synthetic", {}, {"normalization": "none", "slice_axis": None}),
        ("my_plugin", {}, {"normalization": "unknown", "channels": "unknown"}),
    ],
)
def test_preprocessing_per_dataset(dataset: str, params: dict[str, Any], expected: dict[str, Any]) -> None:
    data = DataConfig(dataset=dataset, params=params, image_size=(64, 48), resize_mode="resize")
    found = Preprocessing.from_data_config(data)
    assert (found.dataset, found.image_size, found.resize_mode) == (dataset, (64, 48), "resize")
    assert dict(found.dataset_params) == params
    for field, value in expected.items():
        assert getattr(found, field) == value, field
    if dataset == "ct" and not params:
        assert found.hu_floor == HU_FLOOR


def test_model_info_json_round_trip(trained_run: issl.FinetuneResult) -> None:
    info = load_model(trained_run.run_dir).inference_meta
    text = info.to_json()
    assert "source" not in json.loads(text)
    again = ModelInfo.from_json(text, source=Path("x.safetensors"))
    assert again == info and again.source == Path("x.safetensors")
    assert again.checkpoint_meta().class_names == ["disc", "square"]
    broken = json.loads(text) | {"activation": "relu"}
    with pytest.raises(CheckpointError, match=r"x\.json: invalid inpaintssl model metadata: activation"):
        ModelInfo.from_json(json.dumps(broken), source=Path("x.json"))
