"""Ecosystem backbones: MONAI's BasicUNet and UNet and smp's Unet keep the contract, pretrain and transfer.

The three backbones are registered through the ``inpaintssl.backbones`` entry points; where the
installed metadata does not list them yet (an editable install older than the entry points), the
module fixture registers the factories for the duration of this file. Tests needing MONAI or
segmentation_models_pytorch skip when that package cannot be imported (smp also needs timm and a
torchvision that matches torch).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import inpaintssl as issl
from inpaintssl.checkpoint import CheckpointError
from inpaintssl.inference import (
    basic_unet_state_dict,
    monai_unet_state_dict,
    save_smp_encoder,
    smp_encoder_state_dict,
)
from inpaintssl.models.external import MonaiBasicUNet, MonaiUNet, SmpUNet
from inpaintssl.models.external._parts import seeded_construction
from inpaintssl.registry import BACKBONES
from inpaintssl.testing import BackboneContract

FACTORIES = {"monai_basic_unet": MonaiBasicUNet, "monai_unet": MonaiUNet, "smp_unet": SmpUNet}
TINY_PARAMS: dict[str, dict[str, Any]] = {
    "monai_basic_unet": {"features": [4, 4, 8, 8, 16, 4]},
    # Residual units (num_res_units=2, the default) as in MONAI's tutorials, three levels.
    "monai_unet": {"channels": [4, 8, 8, 16], "strides": [2, 2, 2]},
    "smp_unet": {"encoder_name": "resnet18", "decoder_channels": [16, 16, 8, 8, 8]},
}
DATA = {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 4, "num_test": 4, "size": [32, 32]}}
BUDGET = {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 4}


def _import_or_skip(name: str) -> ModuleType:
    # Not pytest.importorskip: a torchvision built for another torch fails with RuntimeError
    # ("operator torchvision::nms does not exist"), not ImportError, and means "not usable here".
    try:
        return importlib.import_module(name)
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"{name} is not importable: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module", autouse=True)
def external_backbones() -> Iterator[None]:
    added = [name for name in FACTORIES if name not in BACKBONES.names()]
    for name in added:
        BACKBONES.register(name)(FACTORIES[name])
    yield
    for name in added:
        BACKBONES.unregister(name)


@pytest.fixture
def monai() -> ModuleType:
    return pytest.importorskip("monai")


@pytest.fixture
def smp() -> ModuleType:
    return _import_or_skip("segmentation_models_pytorch")


def _needs(backbone: str) -> None:
    if backbone.startswith("monai_"):
        pytest.importorskip("monai")
    else:
        _import_or_skip("segmentation_models_pytorch")


# -- the backbone contract -----------------------------------------------------------------------
@pytest.mark.usefixtures("monai")
class TestMonaiBasicUNetContract(BackboneContract):
    backbone = "monai_basic_unet"
    params: ClassVar[Mapping[str, Any]] = TINY_PARAMS["monai_basic_unet"]


@pytest.mark.usefixtures("monai")
class TestMonaiBasicUNetGroupNormContract(BackboneContract):
    backbone = "monai_basic_unet"
    params: ClassVar[Mapping[str, Any]] = {
        "features": [8, 8, 8, 16, 16, 8],
        "norm": ["group", {"num_groups": 4}],
        "upsample": "nontrainable",
    }
    in_channels = 1
    out_channels = 1


@pytest.mark.usefixtures("monai")
class TestMonaiUNetContract(BackboneContract):
    backbone = "monai_unet"
    params: ClassVar[Mapping[str, Any]] = TINY_PARAMS["monai_unet"]


@pytest.mark.usefixtures("monai")
class TestMonaiUNetPlainBlocksContract(BackboneContract):
    # Plain convolution blocks (the head is then one transposed convolution), batch norm, uneven
    # strides (one of 1, one of 4), wide kernels and another activation order.
    backbone = "monai_unet"
    params: ClassVar[Mapping[str, Any]] = {
        "channels": [4, 8, 8, 8],
        "strides": [2, 1, 4],
        "num_res_units": 0,
        "kernel_size": 5,
        "up_kernel_size": [3, 5],
        "norm": "batch",
        "act": ["leakyrelu", {"negative_slope": 0.1}],
        "adn_ordering": "AN",
    }
    in_channels = 1
    out_channels = 1


@pytest.mark.usefixtures("smp")
class TestSmpUNetContract(BackboneContract):
    backbone = "smp_unet"
    params: ClassVar[Mapping[str, Any]] = TINY_PARAMS["smp_unet"]


@pytest.mark.usefixtures("smp")
class TestSmpTimmEncoderContract(BackboneContract):
    backbone = "smp_unet"
    params: ClassVar[Mapping[str, Any]] = {
        "encoder_name": "tu-resnet10t",
        "encoder_depth": 3,
        "decoder_channels": [16, 8, 8],
        # timm zero-initialises each residual branch's last norm, which the contract's
        # "every parameter gets a non-zero gradient" check would (rightly) report.
        "encoder_params": {"zero_init_last": False},
    }


def test_packages_import_without_the_extras() -> None:
    # The wrappers import MONAI / smp only when built, so doctest collection and
    # `import inpaintssl.models.external` work in an environment without them.
    module = importlib.import_module("inpaintssl.models.external.smp_unet")
    assert "segmentation_models_pytorch" not in vars(module)


# -- equal to the wrapped network, and back to its own key layout --------------------------------
def test_monai_wrapper_equals_basic_unet(monai: ModuleType) -> None:
    net = MonaiBasicUNet(in_channels=2, out_channels=3, features=(4, 4, 8, 8, 16, 4), seed=0).eval()
    plain = monai.networks.nets.BasicUNet(
        spatial_dims=2, in_channels=2, out_channels=3, features=(4, 4, 8, 8, 16, 4)
    ).eval()
    result = plain.load_state_dict(basic_unet_state_dict(net))
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 2, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain(x))


def test_monai_rejects_bad_features(monai: ModuleType) -> None:
    with pytest.raises(ValueError, match="six integers"):
        MonaiBasicUNet(in_channels=1, out_channels=1, features=(4, 4, 8))


@pytest.mark.parametrize(
    ("params", "told"),
    [
        ({"out_channels": 0}, r"out_channels=0 is invalid; expected an integer >= 1"),
        ({"in_channels": True}, r"in_channels=True is invalid; expected an integer >= 1"),
        ({"features": (4, 4, 8, 8, 0, 4)}, r"features=.* six integers >= 1 .*, found 0"),
    ],
)
def test_monai_basic_unet_refuses_bad_channel_counts_by_name(
    monai: ModuleType, params: dict[str, Any], told: str
) -> None:
    # Was: out_channels=0 built, and the first forward failed inside PyTorch ("expected weight to
    # be at least 1 at dimension 0").
    kwargs: dict[str, Any] = {"in_channels": 1, "out_channels": 1, "features": (4, 4, 8, 8, 16, 4), **params}
    with pytest.raises(ValueError, match=told):
        MonaiBasicUNet(**kwargs)


def test_monai_backbones_take_numpy_integer_widths_as_the_built_in_unet_does(monai: ModuleType) -> None:
    # Was: np.int64 widths (from arrays, or numpy arithmetic on a config) were refused as "found
    # np.int64(4)", although UNet2d and MonaiUNet's own in_channels take them.
    widths = tuple(np.int64(w) for w in (4, 4, 8, 8, 16, 4))
    basic = MonaiBasicUNet(in_channels=1, out_channels=np.int64(2), features=widths, seed=0)
    assert basic.features == (4, 4, 8, 8, 16, 4) and all(type(w) is int for w in basic.features)
    plain = MonaiBasicUNet(in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4), seed=0)
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(basic(x), plain(x))
    unet = MonaiUNet(
        in_channels=1, out_channels=1, channels=(np.int64(4), np.int64(8)), strides=(np.int64(2),), seed=0
    )
    assert unet.channels == (4, 8) and unet.strides == (2,)


@pytest.mark.parametrize("seed", [2**64, 1.5])
def test_monai_rejects_a_bad_seed_by_name(monai: ModuleType, seed: object) -> None:
    # torch's manual_seed would say "Overflow when unpacking long long" / "expected a long".
    with pytest.raises(ValueError, match=rf"seed={seed!r} is invalid; expected None or an integer"):
        MonaiBasicUNet(in_channels=1, out_channels=1, features=(4, 4, 8, 8, 16, 4), seed=seed)  # type: ignore[arg-type]


MONAI_UNET_SETTINGS = {
    "residual": {"channels": (4, 8, 8, 16), "strides": (2, 2, 2), "num_res_units": 2},
    "plain": {"channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 0, "norm": "batch"},
    "one level": {"channels": (4, 8), "strides": (4,), "kernel_size": 5, "num_res_units": 1},
}


@pytest.mark.parametrize("settings", MONAI_UNET_SETTINGS.values(), ids=MONAI_UNET_SETTINGS.keys())
def test_monai_unet_wrapper_equals_monai_unet(monai: ModuleType, settings: dict[str, Any]) -> None:
    # The same seed gives MONAI's own initialisation, key for key in MONAI's layout; a plain UNet
    # loads it strictly and computes the same outputs bit for bit, in training and in eval mode.
    net = MonaiUNet(in_channels=2, out_channels=3, seed=0, **settings)
    with seeded_construction(0):
        plain = monai.networks.nets.UNet(spatial_dims=2, in_channels=2, out_channels=3, **settings)
    ours, theirs = monai_unet_state_dict(net), plain.state_dict()
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    # Weights that differ from a fresh build's, so that the load is what makes the outputs equal.
    with torch.no_grad():
        for tensor in net.parameters():
            tensor.add_(torch.randn(tensor.shape, generator=torch.Generator().manual_seed(tensor.numel())))
    plain.load_state_dict(monai_unet_state_dict(net), strict=True)
    x = torch.randn(2, 2, 32, 48, generator=torch.Generator().manual_seed(0))
    for mode in (True, False):
        net.train(mode), plain.train(mode)
        with torch.no_grad():
            assert torch.equal(net(x), plain(x)), f"training={mode}"


def test_monai_unet_state_dict_refuses_another_backbone(monai: ModuleType) -> None:
    other = MonaiBasicUNet(in_channels=1, out_channels=1, features=(2, 2, 2, 2, 2, 2), seed=0)
    with pytest.raises(TypeError, match="model: expected a MonaiUNet; found MonaiBasicUNet"):
        monai_unet_state_dict(other)


@pytest.mark.parametrize(
    ("params", "told"),
    [
        ({"channels": [8]}, r"channels=\[8\] is invalid; expected at least two widths"),
        ({"channels": [8, 0]}, r"channels=\[8, 0\] is invalid; expected .* integers >= 1, found 0"),
        ({"channels": "16"}, r"channels='16' is invalid"),
        (
            {"strides": [2, 2, 2]},
            r"strides=\[2, 2, 2\] is invalid; expected len\(channels\) - 1 = 4 strides .* found 3",
        ),
        ({"strides": [2, 2, 2, 2, 2]}, r"expected len\(channels\) - 1 = 4 strides .* found 5"),
        ({"strides": [2, 2, 0, 2]}, r"strides=\[2, 2, 0, 2\] is invalid; .* found 0"),
        ({"kernel_size": 4}, r"kernel_size=4 is invalid; expected an odd integer >= 1"),
        ({"up_kernel_size": [3, 3, 3]}, r"up_kernel_size=\[3, 3, 3\] is invalid; expected an odd integer"),
        ({"num_res_units": -1}, r"num_res_units=-1 is invalid; expected an integer >= 0"),
        ({"dropout": 1.5}, r"dropout=1.5 is invalid; expected a probability between 0 and 1"),
        ({"bias": "yes"}, r"bias='yes' is invalid; expected True or False"),
        ({"adn_ordering": "NNA"}, r"adn_ordering='NNA' is invalid; expected a string of the letters"),
        ({"adn_ordering": "NBA"}, r"adn_ordering='NBA' is invalid"),
        ({"out_channels": 0}, r"out_channels=0 is invalid; expected an integer >= 1"),
        ({"seed": 1.5}, r"seed=1.5 is invalid; expected None or an integer"),
    ],
)
def test_monai_unet_rejects_bad_arguments_by_name(
    monai: ModuleType, params: dict[str, Any], told: str
) -> None:
    kwargs: dict[str, Any] = {"in_channels": 1, "out_channels": 1, **params}
    with pytest.raises(ValueError, match=told):
        MonaiUNet(**kwargs)


@pytest.mark.parametrize("num_res_units", [0, 2])
def test_monai_unet_finetunes_another_class_count_from_everything_but_the_head(
    monai: ModuleType, num_res_units: int
) -> None:
    # Pretrained for inpainting (out = in = 1 channel), fine-tuned for 3 classes: every tensor the
    # class count shapes is in the head, so encoder_decoder copies all the rest and the two
    # networks then compute the same head input, bit for bit.
    settings: dict[str, Any] = {"channels": (4, 8, 8), "strides": (2, 2), "num_res_units": num_res_units}
    pretrained = MonaiUNet(in_channels=1, out_channels=1, seed=1, **settings)
    model = MonaiUNet(in_channels=1, out_channels=3, seed=2, **settings)
    fresh_head = {key: value.clone() for key, value in model.head.state_dict().items()}
    report = issl.transfer(pretrained, model, weights="encoder_decoder")
    state = model.state_dict()
    assert set(report.copied) == {key for key in state if not key.startswith("head.")}
    assert report.shape_mismatches and all(key.startswith("head.") for key in report.shape_mismatches)
    # Each class-shaped head tensor: (2 * 4, classes, 3, 3) for the transposed convolution ...
    assert report.shape_changes["head.conv.weight" if num_res_units == 0 else "head.0.conv.weight"] == (
        (8, 1, 3, 3),
        (8, 3, 3, 3),
    )
    assert all(torch.equal(model.head.state_dict()[key], value) for key, value in fresh_head.items())
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.decoder(model.encoder(x)), pretrained.decoder(pretrained.encoder(x)))
        assert model(x).shape == (2, 3, 16, 16)


def test_monai_unet_without_residual_units_adapts_the_input_channels(monai: ModuleType) -> None:
    # With plain blocks the image meets one kernel; residual units also feed it through a strided
    # shortcut convolution, adapted too (test_one_channel_pretraining_transfers_to_three_channels).
    settings: dict[str, Any] = {"channels": (4, 8), "strides": (2,), "num_res_units": 0}
    pretrained = MonaiUNet(in_channels=1, out_channels=1, seed=1, **settings)
    model = MonaiUNet(in_channels=3, out_channels=2, seed=2, **settings)
    report = issl.transfer(pretrained, model, weights="encoder", in_channels="repeat")
    assert report.adapted == ["encoder.down_0.conv.weight"]
    torch.testing.assert_close(
        model.encoder.down_0.conv.weight, pretrained.encoder.down_0.conv.weight.repeat(1, 3, 1, 1) / 3
    )


def test_smp_wrapper_equals_smp_unet(smp: ModuleType) -> None:
    net = SmpUNet(in_channels=1, out_channels=2, encoder_name="resnet18", seed=0).eval()
    plain = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=2).eval()
    state = {
        key.replace("head.", "segmentation_head.", 1) if key.startswith("head.") else key: value
        for key, value in net.state_dict().items()
    }
    result = plain.load_state_dict(state)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 1, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain(x))


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"encoder_weights": "imagenet"}, "encoder_weights='imagenet'"),
        ({"encoder_params": {"weights": "imagenet"}}, "encoder_params['weights']='imagenet'"),
        (
            {"encoder_name": "tu-resnet10t", "encoder_params": {"pretrained": True}},
            "encoder_params['pretrained']=True",
        ),
    ],
)
def test_smp_refuses_pretrained_encoder_weights_before_importing_smp(
    params: dict[str, Any], named: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # smp and timm would download these weights; smp said only "unexpected keyword argument" or
    # "got multiple values for keyword argument 'weights'". Refused before smp is even imported.
    def no_import() -> None:
        raise AssertionError("smp was imported before the weights were refused")

    monkeypatch.setattr("inpaintssl.models.external.smp_unet._require_smp", no_import)
    told = rf"smp_unet: {re.escape(named)} is refused: smp_unet never loads pretrained encoder weights"
    with pytest.raises(ValueError, match=told):
        SmpUNet(in_channels=1, out_channels=2, **params)
    # And from a config, where model.params reach the backbone.
    with pytest.raises(ValueError, match=told):
        issl.pretrain(
            {
                "data": DATA,
                "model": {"backbone": "smp_unet", "params": params},
                "optim": BUDGET,
                "run": {"output_dir": str(tmp_path / "pre"), "quiet": True, "device": "cpu"},
            }
        )


def test_smp_accepts_encoder_weights_none(smp: ModuleType) -> None:
    # smp's own spelling of "random initialisation" carries over from an smp config.
    plain = SmpUNet(in_channels=1, out_channels=2, encoder_name="resnet18", seed=0)
    spelled = SmpUNet(in_channels=1, out_channels=2, encoder_name="resnet18", encoder_weights=None, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), spelled.state_dict().values()))


def test_smp_encoder_state_from_a_state_dict_needs_encoder_keys() -> None:
    state = {"module.encoder.conv1.weight": torch.ones(1), "module.head.0.bias": torch.zeros(1)}
    assert list(smp_encoder_state_dict(state)) == ["conv1.weight"]
    with pytest.raises(ValueError, match="encoder"):
        smp_encoder_state_dict({"head.0.bias": torch.zeros(1)})


def test_smp_encoder_of_another_backbones_run_is_refused(tmp_path: Path) -> None:
    # A unet2d run's encoder has other keys and raw kernels: written in smp's layout it would only
    # fail (or worse) when smp loads it.
    with pytest.warns(UserWarning):  # one step: too short to judge convergence
        result = issl.finetune(
            {
                "data": {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 4, "size": [16, 16]}},
                "model": {"params": {"depth": 2, "base_width": 4}},
                "optim": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 4},
                "run": {"output_dir": str(tmp_path / "ft"), "quiet": True, "device": "cpu"},
            }
        )
    told = r"is a 'unet2d' network; expected an 'smp_unet' run"
    with pytest.raises(ValueError, match=rf"{tmp_path / 'ft'} {told}"):
        save_smp_encoder(tmp_path / "ft", tmp_path / "encoder.safetensors")
    with pytest.raises(ValueError, match=rf"model {told}"):
        smp_encoder_state_dict(issl.load_model(tmp_path / "ft"))
    # The model the run hands back as well: it carried no record, and was written as an smp encoder.
    assert result.model is not None
    with pytest.raises(ValueError, match=rf"^model {told}"):
        save_smp_encoder(result.model, tmp_path / "encoder.safetensors")
    # Nor is it pretrained weights, as its run folder is not: its decoder learned from labels.
    seg = BACKBONES.build("unet2d", in_channels=1, out_channels=3, depth=2, base_width=4, seed=5)
    with pytest.raises(CheckpointError, match=r"kind 'finetune' in its checkpoint_meta"):
        issl.transfer(result.model, seg, weights="encoder_decoder")
    # Its weight files too: the checkpoint's model.safetensors (meta.json beside it) and an export
    # (its header) name the backbone; by path they were taken as plain weights.
    weights = tmp_path / "ft" / "checkpoints" / "best" / "model.safetensors"
    exported = issl.export_model(tmp_path / "ft", format="safetensors", output=tmp_path / "ft.safetensors")
    for path in (weights, exported):
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))} {told}"):
            save_smp_encoder(path, tmp_path / "encoder.safetensors")
    assert not (tmp_path / "encoder.safetensors").exists()


@pytest.mark.parametrize("backbone", ["unet2d", "monai_basic_unet", "monai_unet"])
def test_smp_encoder_of_a_bare_builtin_network_of_another_backbone_is_refused(
    backbone: str, tmp_path: Path
) -> None:
    # A module built directly records no backbone: its unet2d (or MONAI) keys were written as an
    # "smp encoder", which smp would refuse (or misread) only when loading it.
    if backbone != "unet2d":
        _needs(backbone)
    params = {"depth": 2, "base_width": 4} if backbone == "unet2d" else TINY_PARAMS[backbone]
    net = BACKBONES.build(backbone, in_channels=1, out_channels=1, seed=0, **params)
    told = rf"^model is a {type(net).__name__} \(the '{backbone}' backbone\); expected an 'smp_unet' network"
    with pytest.raises(ValueError, match=told):
        smp_encoder_state_dict(net)
    with pytest.raises(ValueError, match=told):
        save_smp_encoder(torch.nn.DataParallel(net), tmp_path / "encoder.safetensors")
    assert not (tmp_path / "encoder.safetensors").exists()


@pytest.mark.parametrize("convert", [basic_unet_state_dict, monai_unet_state_dict])
def test_monai_key_layouts_of_a_path_say_to_load_the_model_first(
    convert: Callable[[torch.nn.Module], dict[str, torch.Tensor]],
) -> None:
    wanted = "MonaiBasicUNet" if convert is basic_unet_state_dict else "MonaiUNet"
    with pytest.raises(
        TypeError,
        match=rf"^model: expected a {wanted}; found str; for a run folder or checkpoint, pass "
        r"inpaintssl\.load_model\(path\)$",
    ):
        convert("runs/x")  # type: ignore[arg-type]


# -- pretraining with both pretext tasks, transfer with both strategies --------------------------
def _pretrain(backbone: str, task: str, out: Path) -> issl.PretrainResult:
    return issl.pretrain(
        {
            "data": DATA,
            "model": {"backbone": backbone, "params": TINY_PARAMS[backbone]},
            "pretext": {"task": task, "patch_size": 4, "bank_size": 2},
            "optim": BUDGET,
            "run": {"output_dir": str(out), "quiet": True, "seed": 1, "device": "cpu"},
        }
    )


RestorationRun = Callable[[str], issl.PretrainResult]


@pytest.fixture(scope="module")
def restoration_run(tmp_path_factory: pytest.TempPathFactory) -> RestorationRun:
    # One context-restoration run per backbone, shared by the transfer and export tests.
    runs: dict[str, issl.PretrainResult] = {}

    def run(backbone: str) -> issl.PretrainResult:
        if backbone not in runs:
            out = tmp_path_factory.mktemp(f"pre-{backbone}")
            runs[backbone] = _pretrain(backbone, "context_restoration", out)
        return runs[backbone]

    return run


@pytest.mark.parametrize("backbone", sorted(FACTORIES))
def test_pretrain_context_prediction(backbone: str, tmp_path: Path) -> None:
    _needs(backbone)
    result = _pretrain(backbone, "context_prediction", tmp_path / "pre")
    assert isinstance(result.model, FACTORIES[backbone])
    assert result.epochs_run == 1 and torch.isfinite(torch.tensor(result.best_val_loss))
    assert (result.checkpoint / "model.safetensors").is_file()


@pytest.mark.parametrize("weights", ["encoder", "encoder_decoder"])
@pytest.mark.parametrize("backbone", sorted(FACTORIES))
def test_restoration_pretraining_transfers(
    backbone: str, weights: str, restoration_run: RestorationRun, tmp_path: Path
) -> None:
    _needs(backbone)
    pre = restoration_run(backbone)
    assert isinstance(pre.model, FACTORIES[backbone])
    result = issl.finetune(
        {
            "data": DATA,
            "model": {"backbone": backbone, "params": TINY_PARAMS[backbone]},
            "optim": BUDGET,
            "transfer": {"pretrained": str(pre.run_dir), "weights": weights},
            "run": {"output_dir": str(tmp_path / "ft"), "quiet": True, "seed": 2, "device": "cpu"},
        }
    )
    assert result.transfer is not None and result.model is not None
    parts = ("encoder",) if weights == "encoder" else ("encoder", "decoder")
    expected = {key for key in result.model.state_dict() if key.split(".", 1)[0] in parts}
    assert set(result.transfer.copied) == expected
    assert not any(key.startswith("head.") for key in result.transfer.copied)
    assert set(result.mean_dice()) == {"disc", "square"}


@pytest.mark.parametrize("suffix", [".safetensors", ".SAFETENSORS", ".pt"])
def test_pretrained_encoder_loads_into_a_fresh_smp_unet(
    smp: ModuleType, suffix: str, restoration_run: RestorationRun, tmp_path: Path
) -> None:
    pre = restoration_run("smp_unet")
    assert pre.model is not None
    path = save_smp_encoder(pre.run_dir, tmp_path / f"encoder{suffix}")
    state = load_file(path) if suffix.lower() == ".safetensors" else torch.load(path, weights_only=True)
    params = TINY_PARAMS["smp_unet"]
    fresh = smp.Unet(
        params["encoder_name"],
        encoder_weights=None,
        decoder_channels=params["decoder_channels"],
        in_channels=1,
        classes=3,
    ).eval()
    # smp's encoders return None from load_state_dict; strict loading raises on any key mismatch.
    assert state.keys() == fresh.encoder.state_dict().keys()
    fresh.encoder.load_state_dict(state, strict=True)
    # Training may have left the weights channels_last; compare in the same layout as `fresh`.
    trained = pre.model.cpu().eval().to(memory_format=torch.contiguous_format)
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for ours, theirs in zip(trained.encoder(x), fresh.encoder(x), strict=True):
            torch.testing.assert_close(ours, theirs)
    # The same export straight from the module.
    direct = smp_encoder_state_dict(trained)
    assert direct.keys() == state.keys() and all(torch.equal(direct[k], state[k]) for k in state)


# -- transfer, value by value --------------------------------------------------------------------
@pytest.mark.parametrize("weights", ["encoder", "encoder_decoder"])
@pytest.mark.parametrize("backbone", sorted(FACTORIES))
def test_transfer_copies_exactly_the_reported_tensors(
    backbone: str, weights: str, restoration_run: RestorationRun
) -> None:
    # The report's lists against the state dicts themselves: every copied tensor now holds the
    # pretrained checkpoint's value, every other one is still the fresh initialisation.
    _needs(backbone)
    pre = restoration_run(backbone)
    pretrained = issl.checkpoint.load_state_dict(pre.run_dir)
    model = BACKBONES.build(backbone, in_channels=1, out_channels=3, seed=7, **TINY_PARAMS[backbone])
    fresh = {key: value.clone() for key, value in model.state_dict().items()}
    report = issl.transfer(pre.run_dir, model, weights=weights)
    after = model.state_dict()
    parts = ("encoder",) if weights == "encoder" else ("encoder", "decoder")
    assert set(report.copied) == {key for key in after if key.split(".", 1)[0] in parts}
    assert set(report.skipped) == set(after) - set(report.copied)
    # The head's output channels change from the image's 1 to 3 classes.
    resized = {key for key in after if pretrained[key].shape != after[key].shape}
    assert resized and all(key.startswith("head.") for key in resized)
    assert set(report.shape_mismatches) == resized
    for key, value in after.items():
        expected = pretrained[key] if key in report.copied else fresh[key]
        assert torch.equal(value, expected), key
    # Trained values differ from a fresh build's, so the equalities above say something.
    assert any(not torch.equal(pretrained[key], fresh[key]) for key in report.copied)


# The kernels that read the image where there is more than one (the others: the first kernel only).
READ_THE_IMAGE = {"monai_unet": ["encoder.down_0.conv.unit0.conv.weight", "encoder.down_0.residual.weight"]}


@pytest.mark.parametrize("mode", ["repeat", "average"])
@pytest.mark.parametrize("backbone", sorted(FACTORIES))
def test_one_channel_pretraining_transfers_to_three_channels(
    backbone: str, mode: str, restoration_run: RestorationRun
) -> None:
    _needs(backbone)
    pre = restoration_run(backbone)
    pretrained = issl.checkpoint.load_state_dict(pre.run_dir)
    model = BACKBONES.build(backbone, in_channels=3, out_channels=2, seed=7, **TINY_PARAMS[backbone])
    report = issl.transfer(pre.run_dir, model, weights="encoder", in_channels=mode)
    # MONAI's residual unit reads the image twice: its first convolution and its strided shortcut.
    assert report.adapted == READ_THE_IMAGE.get(backbone, report.adapted[:1])
    for key in report.adapted:
        old, new = pretrained[key], model.state_dict()[key]
        assert old.shape[1] == 1 and new.shape[1] == 3
        # One input channel: repeat tiles its kernel over the three, each divided by its 3 copies (an
        # image replicated over the channels gives the old response); average gives each the mean of
        # the one old kernel, that kernel itself.
        share = old[:, 0] / 3 if mode == "repeat" else old[:, 0]
        for channel in range(3):
            torch.testing.assert_close(new[:, channel], share, rtol=1e-6, atol=0)


# -- export: ONNX Runtime with dynamic axes, and the safetensors file back -----------------------
@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated")  # Deprecation-, from 2.14 FutureWarning
@pytest.mark.parametrize("backbone", sorted(FACTORIES))
def test_export_runs_in_onnx_runtime_and_loads_back(
    backbone: str, restoration_run: RestorationRun, tmp_path: Path
) -> None:
    _needs(backbone)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    pre = restoration_run(backbone)
    model = issl.load_model(pre.run_dir)
    multiple = model.inference_meta.size_multiple
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.randn(batch, 1, h * multiple, w * multiple, generator=generator)
        for batch, h, w in ((1, 2, 2), (3, 3, 5))
    ]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    # A two-step smp run's BatchNorm statistics give outputs in the thousands: bound the difference
    # relative to them (float32 rounding), as the export's own message advises.
    scale = max(1.0, *(float(y.abs().max()) for y in expected))
    onnx_path = issl.export_model(pre.run_dir, format="onnx", output=tmp_path / "m.onnx", atol=1e-4 * scale)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 1, "height", "width"]
    for x, y in zip(inputs, expected, strict=True):
        (found,) = session.run(None, {"image": x.numpy()})
        assert found.shape == tuple(y.shape)
        assert float((torch.from_numpy(found) - y).abs().max()) <= 1e-5 * scale
    safetensors_path = issl.export_model(pre.run_dir, format="safetensors", output=tmp_path / "m.safetensors")
    assert load_file(safetensors_path).keys() == model.state_dict().keys()
    again = issl.load_model(safetensors_path)
    assert isinstance(again, FACTORIES[backbone])
    with torch.no_grad():
        for x, y in zip(inputs, expected, strict=True):
            torch.testing.assert_close(again(x), y, rtol=0, atol=0)
