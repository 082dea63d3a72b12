"""transfer(): which tensors move, from which sources, and how mismatches are refused (sec. 2.5.1)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from checkpoint_helpers import flip_exponent_bits
from inpaintssl.checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from inpaintssl.registry import BACKBONES, TRANSFER_STRATEGIES
from inpaintssl.training.outcome import TrainOutcome
from inpaintssl.training.results import FinetuneResult
from inpaintssl.transfer_learning import (
    EncoderTransfer,
    TransferReport,
    TransferStrategy,
    strip_wrapper_prefixes,
    transfer,
)

SMALL = {"depth": 3, "base_width": 8, "groups": 4}


def unet(*, in_channels: int = 1, out_channels: int = 4, seed: int = 0, **params: int) -> nn.Module:
    kwargs = {**SMALL, **params}
    return BACKBONES.build("unet2d", in_channels=in_channels, out_channels=out_channels, seed=seed, **kwargs)


def pretrained_inpainter(**params: int) -> nn.Module:
    """An inpainting network (output channels = input channels) whose weights moved away from init."""
    net = unet(out_channels=params.pop("in_channels", 1), seed=123, **params)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return net


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_encoder_strategy_leaves_decoder_and_head_fresh() -> None:
    report = transfer(pretrained_inpainter(), unet(), weights="encoder")
    assert {k.split(".")[0] for k in report.copied} == {"encoder"}
    assert {k.split(".")[0] for k in report.skipped} == {"decoder", "head"}
    assert report.shape_mismatches == ["head.weight", "head.bias"]
    assert report.shape_changes["head.weight"] == ((1, 8, 1, 1), (4, 8, 1, 1))
    assert report.missing == [] and report.unexpected == [] and report.adapted == []


def test_encoder_decoder_strategy_leaves_only_the_head_fresh() -> None:
    report = transfer(pretrained_inpainter(), unet(), weights="encoder_decoder")
    assert {k.split(".")[0] for k in report.copied} == {"encoder", "decoder"}
    assert report.skipped == ["head.weight", "head.bias"]


def test_default_strategy_is_encoder() -> None:
    assert transfer(pretrained_inpainter(), unet()).parts == ("encoder",)


def test_summary_reports_counts_and_shapes() -> None:
    report = transfer(pretrained_inpainter(), unet(), weights="encoder")
    text = report.summary()
    assert f"copied {len(report.copied)} tensors" in text
    assert "head.weight (1, 8, 1, 1) -> (4, 8, 1, 1)" in text
    assert isinstance(report, TransferReport)


def write_sources(tmp_path: Path, state: dict[str, torch.Tensor]) -> dict[str, Path]:
    meta = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "weights.safetensors"))
    save_checkpoint(tmp_path / "ckpt", state, meta)
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", state, meta)
    return {
        "safetensors": tmp_path / "weights.safetensors",
        "checkpoint": tmp_path / "ckpt",
        "run": tmp_path / "run",
    }


@pytest.mark.parametrize("kind", ["safetensors", "checkpoint", "run"])
def test_paths_load_the_same_weights_as_the_module(tmp_path: Path, kind: str) -> None:
    pretrained = pretrained_inpainter()
    path = write_sources(tmp_path, pretrained.state_dict())[kind]
    from_module, from_path = unet(), unet()
    transfer(pretrained, from_module, weights="encoder_decoder")
    report = transfer(str(path) if kind == "run" else path, from_path, weights="encoder_decoder")
    assert report.copied
    assert all(
        torch.equal(a, b) for a, b in zip(from_module.state_dict().values(), from_path.state_dict().values())
    )


def write_finetuned_sources(tmp_path: Path) -> dict[str, Path]:
    """A fine-tuned (segmentation) network as a run, checkpoint, its weights file and an export."""
    state = unet(seed=5).state_dict()
    meta = CheckpointMeta(
        kind="finetune",
        backbone="unet2d",
        in_channels=1,
        out_channels=4,
        class_names=["a", "b", "c", "d"],
        activation="sigmoid",
    )
    save_checkpoint(tmp_path / "ckpt", state, meta)
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", state, meta)
    header = {"inpaintssl": json.dumps({"kind": "finetune", "backbone": "unet2d"}), "format": "pt"}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "export.safetensors"), header)
    # The same export as a copy through another file system may name it: its header still tells.
    shutil.copyfile(tmp_path / "export.safetensors", tmp_path / "EXPORT.SAFETENSORS")
    return {
        "run": tmp_path / "run",
        "checkpoint": tmp_path / "ckpt",
        "weights": tmp_path / "run" / "checkpoints" / "best" / "model.safetensors",
        "export": tmp_path / "export.safetensors",
        "export in upper case": tmp_path / "EXPORT.SAFETENSORS",
    }


@pytest.mark.parametrize("kind", ["run", "checkpoint", "weights", "export", "export in upper case"])
def test_a_fine_tuned_network_is_refused_as_pretrained(tmp_path: Path, kind: str) -> None:
    # Accepted, its label-trained decoder was copied into a "self-supervised" fine-tuning run.
    path = write_finetuned_sources(tmp_path)[kind]
    where = path.name if kind.startswith("export") else "meta.json"
    model = unet()
    before = snapshot(model)
    with pytest.raises(
        CheckpointError,
        match=rf"^pretrained {re.escape(str(path))}: a fine-tuned segmentation checkpoint \(kind 'finetune' "
        rf"in .*{re.escape(where)}\); transfer expects a pretraining \(inpainting\) run",
    ):
        transfer(str(path), model, weights="encoder_decoder")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_model_loaded_from_a_fine_tuned_run_is_refused_as_pretrained() -> None:
    finetuned = unet(seed=5)
    # What inpaintssl.load_model attaches (the inference layer sits above transfer_learning).
    finetuned.inference_meta = SimpleNamespace(kind="finetune", source=Path("runs/ft/checkpoints/best"))
    with pytest.raises(
        CheckpointError,
        match=r"^pretrained model loaded from runs/ft/checkpoints/best: a fine-tuned segmentation checkpoint",
    ):
        transfer(finetuned, unet())


def test_a_loaded_fine_tuned_model_inside_a_wrapper_is_refused_as_pretrained() -> None:
    # A DataParallel wrapper does not forward inference_meta: the wrapped model was taken.
    finetuned = unet(seed=5)
    finetuned.inference_meta = SimpleNamespace(kind="finetune", source=Path("runs/ft/checkpoints/best"))
    with pytest.raises(CheckpointError, match=r"kind 'finetune' in its inference_meta"):
        transfer(nn.DataParallel(finetuned), unet())


def test_the_model_a_fine_tuning_run_hands_back_is_refused_as_pretrained(tmp_path: Path) -> None:
    # FinetuneResult.model carried no record, so transfer took the label-trained decoder that it
    # refuses from the same run's folder or from load_model(run).
    finetuned = unet(seed=5)
    meta = CheckpointMeta(
        kind="finetune",
        backbone="unet2d",
        backbone_params=SMALL,
        in_channels=1,
        out_channels=4,
        class_names=["a", "b", "c", "d"],
        activation="sigmoid",
    )
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", finetuned.state_dict(), meta)
    outcome = TrainOutcome(history=[], best_val_loss=0.5, best_epoch=0, epochs_run=1, stopped_early=False)
    result = FinetuneResult.from_outcome(tmp_path / "run", outcome, model=finetuned)
    assert result.model is not None
    model = unet()
    before = snapshot(model)
    with pytest.raises(
        CheckpointError,
        match=r"^pretrained model handed back by a training run: a fine-tuned segmentation checkpoint "
        r"\(kind 'finetune' in its checkpoint_meta\)",
    ):
        transfer(result.model, model, weights="encoder_decoder")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_pretraining_exports_and_weights_without_metadata_are_still_taken(tmp_path: Path) -> None:
    pretrained = pretrained_inpainter()
    state = {k: v.contiguous() for k, v in pretrained.state_dict().items()}
    header = {"inpaintssl": json.dumps({"kind": "pretrain"})}
    save_file(state, str(tmp_path / "pre.safetensors"), header)
    save_file(state, str(tmp_path / "plain.safetensors"))
    for name in ("pre.safetensors", "plain.safetensors"):
        assert transfer(tmp_path / name, unet(), weights="encoder_decoder").copied
    assert transfer(dict(state), unet()).copied


@pytest.mark.parametrize("model", ["not a model", None, {"encoder.weight": torch.zeros(1)}])
def test_a_model_that_is_not_a_module_is_a_type_error_naming_it(model: object) -> None:
    # It used to fail inside the part lookup: "'str' object has no attribute 'named_children'".
    with pytest.raises(TypeError, match=rf"^model: expected an nn\.Module .*found {type(model).__name__}$"):
        transfer(pretrained_inpainter(), model)  # type: ignore[arg-type]


def test_a_missing_path_raises_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing-here"):
        transfer(tmp_path / "nothing-here", unet())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit
def test_wrapper_prefixes_are_stripped_from_sources_and_targets() -> None:
    pretrained = pretrained_inpainter()
    ddp_state = {f"module.{k}": v for k, v in pretrained.state_dict().items()}
    model = unet()
    # DataParallel moves the module to the first GPU when one is present.
    transfer(ddp_state, nn.DataParallel(model), weights="encoder")
    assert torch.equal(model.encoder.levels[1][0][0].weight.cpu(), pretrained.encoder.levels[1][0][0].weight)
    compiled_source = torch.compile(pretrained)
    assert next(iter(compiled_source.state_dict())).startswith("_orig_mod.")
    other = unet()
    report = transfer(compiled_source, other, weights="encoder")
    assert report.copied and torch.equal(
        other.encoder.levels[0][0][0].weight, pretrained.encoder.levels[0][0][0].weight
    )


def test_strip_wrapper_prefixes_only_strips_prefixes_shared_by_every_key() -> None:
    t = torch.zeros(1)
    assert list(strip_wrapper_prefixes({"module._orig_mod.a": t, "module._orig_mod.b": t})) == ["a", "b"]
    assert list(strip_wrapper_prefixes({"module.a": t, "b": t})) == ["module.a", "b"]


def test_copies_in_place_keeping_parameters_layout_and_dtype() -> None:
    model = unet().to(memory_format=torch.channels_last)
    ids = [id(p) for p in model.parameters()]
    transfer(pretrained_inpainter(), model, weights="encoder_decoder")
    assert ids == [id(p) for p in model.parameters()]
    assert model.encoder.levels[1][0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_half_precision_source_is_cast_to_the_model_dtype() -> None:
    pretrained = pretrained_inpainter()
    half_state = {k: v.half() for k, v in pretrained.state_dict().items()}
    model = unet()
    transfer(half_state, model, weights="encoder")
    weight = model.encoder.levels[0][0][0].weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, pretrained.encoder.levels[0][0][0].weight.half().float())


def test_shape_mismatch_in_a_copied_part_raises_and_changes_nothing() -> None:
    model = unet(base_width=4)
    before = snapshot(model)
    with pytest.raises(
        ValueError,
        match=r"encoder\.levels\.0\.0\.0\.weight: pretrained shape \(8, 1, 3, 3\) "
        r"!= model shape \(4, 1, 3, 3\)",
    ):
        transfer(pretrained_inpainter(base_width=8), model, weights="encoder")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # Twelve shape lines say what differs; the last sentence says what to do about it.
    with pytest.raises(
        ValueError, match=r"The two networks differ: build the model with the pretraining run's"
    ):
        transfer(pretrained_inpainter(base_width=8), model, weights="encoder")


def test_missing_tensor_in_a_copied_part_raises_with_its_name() -> None:
    state = dict(pretrained_inpainter().state_dict())
    del state["decoder.levels.0.up.bias"]
    transfer(state, unet(), weights="encoder")  # not a copied part: fine
    with pytest.raises(ValueError, match=r"decoder\.levels\.0\.up\.bias \(16,\) is missing"):
        transfer(state, unet(), weights="encoder_decoder")


def test_extra_pretrained_levels_in_a_copied_part_raise() -> None:
    # A deeper pretrained encoder shares the first levels' shapes exactly: without this check a
    # depth-3 model would silently take a truncated depth-4 encoder.
    with pytest.raises(
        ValueError, match=r"encoder\.levels\.3\..* is in the pretrained weights but not in the model"
    ):
        transfer(pretrained_inpainter(depth=4), unet(depth=3), weights="encoder")


def test_unexpected_keys_outside_copied_parts_are_reported_not_raised() -> None:
    state = dict(pretrained_inpainter().state_dict())
    state["head.extra"] = torch.zeros(3)
    report = transfer(state, unet(), weights="encoder")
    assert report.unexpected == ["head.extra"]
    assert "head.extra" in report.summary()


def test_input_channel_difference_needs_an_explicit_choice() -> None:
    with pytest.raises(
        ValueError, match=r"\(8, 1, 3, 3\) != model shape \(8, 3, 3, 3\).*in_channels='repeat' or 'average'"
    ) as info:
        transfer(pretrained_inpainter(), unet(in_channels=3), weights="encoder")
    assert "(transfer.in_channels in a fine-tuning config)" in str(info.value)
    assert "The two networks differ" not in str(info.value)  # only the channels do


@pytest.mark.parametrize("mode", ["repeat", "average"])
def test_input_channel_adaptation_is_reported(mode: str) -> None:
    pretrained, model = pretrained_inpainter(), unet(in_channels=3)
    report = transfer(pretrained, model, weights="encoder", in_channels=mode)  # type: ignore[arg-type]
    assert report.adapted == ["encoder.levels.0.0.0.weight"]
    assert report.shape_changes["encoder.levels.0.0.0.weight"] == ((8, 1, 3, 3), (8, 3, 3, 3))
    assert "encoder.levels.0.0.0.weight" in report.copied
    old = pretrained.encoder.levels[0][0][0].weight
    new = model.encoder.levels[0][0][0].weight
    expected = old.repeat(1, 3, 1, 1) / 3 if mode == "repeat" else old.expand(-1, 3, -1, -1)
    torch.testing.assert_close(new, expected)


def test_repeat_adaptation_preserves_the_network_output_on_replicated_input() -> None:
    pretrained, model = pretrained_inpainter(), unet(in_channels=3, out_channels=1)
    transfer(pretrained, model, weights="encoder_decoder", in_channels="repeat")
    model.head.load_state_dict(pretrained.head.state_dict())
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    # Not bit-exact: weight standardisation and GroupNorm each add an eps to a variance that the
    # adaptation rescales, which moves outputs by ~1e-4.
    with torch.no_grad():
        torch.testing.assert_close(model(x.repeat(1, 3, 1, 1)), pretrained(x), atol=1e-3, rtol=1e-3)


def test_only_the_first_kernel_may_be_adapted() -> None:
    state = dict(pretrained_inpainter().state_dict())
    state["encoder.levels.1.0.0.weight"] = state["encoder.levels.1.0.0.weight"][:, :4]
    with pytest.raises(ValueError, match=r"encoder\.levels\.1\.0\.0\.weight: pretrained shape"):
        transfer(state, unet(), weights="encoder", in_channels="repeat")


def test_bad_arguments_are_rejected() -> None:
    pretrained, model = pretrained_inpainter(), unet()
    with pytest.raises(KeyError, match="Did you mean 'encoder'"):
        transfer(pretrained, model, weights="encodr")
    with pytest.raises(ValueError, match="in_channels='tile'"):
        transfer(pretrained, model, in_channels="tile")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="found int"):
        transfer(3, model)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"no part 'encoder'.*\['0', '1'\]"):
        transfer(pretrained, nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU()))


def test_a_plugin_strategy_instance_can_be_passed_directly() -> None:
    class DecoderOnly(TransferStrategy):
        name = "decoder_only"
        parts = ("decoder",)

    pretrained, model = pretrained_inpainter(), unet()
    report = transfer(pretrained, model, weights=DecoderOnly())
    assert {k.split(".")[0] for k in report.copied} == {"decoder"}
    assert torch.equal(model.decoder.levels[0].up.weight, pretrained.decoder.levels[0].up.weight)


def test_a_strategy_whose_parts_are_a_string_is_refused_naming_the_missing_comma() -> None:
    # ("encoder") is the string "encoder": it was built, then transfer looked for a part 'e'.
    class MissingComma(TransferStrategy):
        name = "missing_comma"
        parts = "encoder"  # type: ignore[assignment]

    with pytest.raises(
        TypeError,
        match=r"^MissingComma\.parts must be a tuple .*found the string 'encoder': a one-part tuple needs "
        r"a trailing comma, \('encoder',\)$",
    ):
        MissingComma()


def test_a_strategy_whose_parts_are_a_list_is_refused() -> None:
    class Listed(TransferStrategy):
        name = "listed"
        parts = ["encoder"]  # type: ignore[assignment]  # noqa: RUF012 (the mistake under test)

    with pytest.raises(
        TypeError, match=r"^Listed\.parts must be a non-empty tuple .*found list \['encoder'\]$"
    ):
        Listed()


def test_a_strategy_class_as_weights_is_a_type_error_naming_weights() -> None:
    # It reached the registry, which said only "name must be a str, got type".
    with pytest.raises(
        TypeError,
        match=r"^weights: expected a strategy name or a TransferStrategy instance; found the class "
        r"EncoderTransfer: pass an instance, EncoderTransfer\(\) or its registered name \('encoder'\)$",
    ):
        transfer(pretrained_inpainter(), unet(), weights=EncoderTransfer)  # type: ignore[arg-type]


def test_a_key_prefix_on_every_pretrained_key_is_named_with_how_to_strip_it() -> None:
    # A PyTorch Lightning checkpoint keeps the network under "model.": the message listed only
    # the model's keys as missing and said the networks differ.
    pretrained = pretrained_inpainter()
    state = {f"model.{k}": v for k, v in pretrained.state_dict().items()}
    with pytest.raises(ValueError) as info:
        transfer(state, unet(), weights="encoder")
    message = str(info.value)
    assert "all pretrained keys start with 'model.' (model.encoder.levels.0.0.0.weight," in message
    assert "k.removeprefix('model.')" in message
    assert "The two networks differ" not in message
    # The advice works: the stripped keys transfer.
    stripped = {k.removeprefix("model."): v for k, v in state.items()}
    model = unet()
    transfer(stripped, model, weights="encoder")
    assert torch.equal(model.encoder.levels[0][0][0].weight, pretrained.encoder.levels[0][0][0].weight)


def test_a_state_dict_of_the_encoder_alone_is_told_to_add_its_prefix() -> None:
    pretrained = pretrained_inpainter()
    state = pretrained.encoder.state_dict()  # keys "levels.0.0.0.weight", ...
    with pytest.raises(ValueError, match=r"the pretrained keys lack the prefix 'encoder\.'") as info:
        transfer(state, unet(), weights="encoder")
    assert "'encoder.' + k" in str(info.value) and "The two networks differ" not in str(info.value)
    model = unet()
    transfer({f"encoder.{k}": v for k, v in state.items()}, model, weights="encoder")
    assert torch.equal(model.encoder.levels[1][0][0].weight, pretrained.encoder.levels[1][0][0].weight)


def test_weights_without_any_tensor_of_a_copied_part_are_listed() -> None:
    state = {"backbone.conv.weight": torch.zeros(8, 1, 3, 3), "fc.bias": torch.zeros(2)}
    with pytest.raises(ValueError) as info:
        transfer(state, unet(), weights="encoder")
    message = str(info.value)
    assert "hold no tensor of part(s) 'encoder'; their 2 key(s) are backbone.conv.weight, fc.bias" in message
    assert "The two networks differ" in message  # no prefix explains it


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("parts", "encoder"),
        ("copied", "encoder.w"),
        ("skipped", [1]),
        ("strategy", 3),
        ("shape_changes", {"head.w": [[1, 2]]}),
        ("shape_changes", {"head.w": "ab"}),
        ("shape_changes", {"head.w": [[1, 2], [3, True]]}),
    ],
)
def test_a_transfer_record_of_the_wrong_shape_is_refused_naming_the_field(field: str, value: object) -> None:
    # A string of keys was split into its characters (parts 'e', 'n', ...); a bad shape named no field.
    record = TransferReport(strategy="encoder", parts=("encoder",), copied=["encoder.w"]).to_record()
    with pytest.raises(ValueError, match=rf"^transfer record field '{field}'"):
        TransferReport.from_record({**record, field: value})


def test_strategy_without_parts_is_rejected() -> None:
    class Empty(TransferStrategy):
        name = "empty"

    with pytest.raises(TypeError, match="parts must be a non-empty tuple"):
        Empty()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_weights_transfer_into_a_cuda_model() -> None:
    pretrained, model = pretrained_inpainter(), unet().cuda()
    transfer(pretrained, model, weights="encoder")
    weight = model.encoder.levels[0][0][0].weight
    assert weight.device.type == "cuda" and torch.equal(
        weight.cpu(), pretrained.encoder.levels[0][0][0].weight
    )


def test_the_report_names_the_strategy_by_the_name_it_was_selected_by() -> None:
    # A plugin class's own name may differ from its entry point: the report showed the class's
    # "decoder_only" for a run whose config said transfer.weights: decoder_probe_test.
    class DecoderOnly(TransferStrategy):
        name = "decoder_only"
        parts = ("decoder",)

    TRANSFER_STRATEGIES.register("decoder_probe_test")(DecoderOnly)
    try:
        by_name = transfer(pretrained_inpainter(), unet(), weights="decoder_probe_test")
    finally:
        TRANSFER_STRATEGIES.unregister("decoder_probe_test")
    assert by_name.strategy == "decoder_probe_test"
    assert "transfer 'decoder_probe_test' (parts: decoder)" in by_name.summary()
    # An instance passed directly has only its own name to go by.
    assert transfer(pretrained_inpainter(), unet(), weights=DecoderOnly()).strategy == "decoder_only"


class _ImageTwice(nn.Module):
    """An encoder whose image meets a convolution and a shortcut, and a kernel on features + image."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict(
            {
                "conv": nn.Conv2d(in_channels, 4, 3, padding=1),
                "shortcut": nn.Conv2d(in_channels, 4, 1),
                "joined": nn.Conv2d(4 + in_channels, 4, 3, padding=1),  # features concatenated with the image
            }
        )
        self.head = nn.Conv2d(4, 1, 1)


def test_every_kernel_that_reads_the_image_is_adapted_and_a_joined_one_is_not() -> None:
    pretrained, model = _ImageTwice(1), _ImageTwice(3)
    with pytest.raises(ValueError, match=r"encoder\.joined\.weight: pretrained shape \(4, 5, 3, 3\)") as info:
        transfer(pretrained, model, weights="encoder", in_channels="repeat")
    # 5 -> 7 input channels is 4 features and the image: no hint, the networks differ there.
    (joined,) = [part for part in str(info.value).split("; ") if "joined" in part]
    assert "in_channels='repeat'" not in joined and "The two networks differ" in str(info.value)
    del pretrained.encoder["joined"], model.encoder["joined"]
    report = transfer(pretrained, model, weights="encoder", in_channels="repeat")
    assert report.adapted == ["encoder.conv.weight", "encoder.shortcut.weight"]
    for name in ("conv", "shortcut"):
        old = pretrained.encoder[name].weight
        torch.testing.assert_close(model.encoder[name].weight, old.repeat(1, 3, 1, 1) / 3)


def test_without_a_mode_every_kernel_that_reads_the_image_is_named_with_the_hint() -> None:
    pretrained, model = _ImageTwice(1), _ImageTwice(3)
    del pretrained.encoder["joined"], model.encoder["joined"]
    with pytest.raises(ValueError, match=r"2 problem\(s\)") as info:
        transfer(pretrained, model, weights="encoder")
    assert str(info.value).count("in_channels='repeat' or 'average'") == 2
    assert "The two networks differ" not in str(info.value)  # only the image's channels do


def test_a_checkpoints_weights_file_damaged_since_sealed_is_refused(tmp_path: Path) -> None:
    # Given as its model.safetensors, a checkpoint damaged after it was written (COMPLETE.json no
    # longer matching) was copied silently, though its folder, and load_model on the file, refuse it.
    from safetensors.torch import load_file

    pretrained = pretrained_inpainter()
    folder = tmp_path / "run" / "checkpoints" / "best"
    save_checkpoint(
        folder,
        pretrained.state_dict(),
        CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1),
    )
    weights = folder / "model.safetensors"
    flip_exponent_bits(weights)
    damaged = load_file(str(weights))
    first = "encoder.levels.0.0.0.weight"
    ratio = (damaged[first] / pretrained.state_dict()[first]).unique().tolist()
    assert set(ratio) <= {0.25, 4.0}  # the damage: readable weights, each scaled by 4 or 1/4
    model = unet()
    before = snapshot(model)
    with pytest.raises(
        CheckpointError,
        match=rf"{re.escape(str(folder))}: files changed or missing since written: model\.safetensors",
    ):
        transfer(weights, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_home_relative_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A config's transfer.pretrained and load_model expand "~"; transfer() took it literally.
    monkeypatch.setenv("HOME", str(tmp_path))
    pretrained = pretrained_inpainter()
    write_sources(tmp_path, pretrained.state_dict())
    expected, model = unet(), unet()
    transfer(pretrained, expected, weights="encoder_decoder")
    assert transfer("~/run", model, weights="encoder_decoder").copied
    assert all(torch.equal(a, b) for a, b in zip(expected.state_dict().values(), model.state_dict().values()))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit's own deprecation notices
def test_a_torchscript_export_is_refused_with_what_to_pass_instead(tmp_path: Path) -> None:
    # Reported as "it may carry pickled code", as if the library's own export were an attack.
    from inpaintssl.inference.export import export_model

    meta = CheckpointMeta(
        kind="pretrain", backbone="unet2d", backbone_params=SMALL, in_channels=1, out_channels=1
    )
    save_checkpoint(tmp_path / "best", pretrained_inpainter().state_dict(), meta)
    exported = export_model(str(tmp_path / "best"), format="torchscript", output=str(tmp_path / "pre.pt"))
    with pytest.raises(CheckpointError) as caught:
        transfer(exported, unet())
    message = str(caught.value)
    assert message.startswith(f"{exported}: a TorchScript archive")
    assert "export_model(format='safetensors')" in message and "pickled code" not in message
