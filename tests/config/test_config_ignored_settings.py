"""A setting given that has no effect under another setting raises one ConfigWarning naming both.

The inventory: each case is a setting the training code reads only under some other setting
(``training.loop.Trainer.learning_rate`` for the schedules, ``training.finetuning.phases_for`` for
``second_lr``, ``data.build`` for the size, label subset and unlabelled sources, the Trainer's
loaders for the workers' start method, ``training.device.autocast_dtype`` and
``training.context.seed_everything`` for the CUDA-only run settings). Defaults never warn, nor
does a config read back from the ``config.yaml`` it was written to, unless the user gave the
setting.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from inpaintssl.config import (
    ConfigWarning,
    EvaluateConfig,
    FinetuneConfig,
    PretrainConfig,
    UnusedSetting,
    apply_overrides,
    config_to_yaml,
    load_config,
    quiet_unused_settings,
    unused_settings,
    update_fields,
)

# (stage, config mapping, the one message expected)
CASES: tuple[tuple[type[BaseModel], dict[str, Any], str], ...] = (
    (
        PretrainConfig,
        {"optim": {"recipe": "paper", "warmup_fraction": 0.1}},
        "optim.warmup_fraction=0.1 has no effect: optim.schedule is 'step_decay' (the 'paper' recipe's), "
        "which does not warm up; it applies to 'warmup_cosine'",
    ),
    (
        FinetuneConfig,
        {"optim": {"schedule": "step_decay", "warmup_fraction": 0.2}},
        "optim.warmup_fraction=0.2 has no effect: optim.schedule is 'step_decay', which does not warm up; "
        "it applies to 'warmup_cosine'",
    ),
    (
        PretrainConfig,
        {"optim": {"lr_decay": 0.5}},
        "optim.lr_decay=0.5 has no effect: optim.schedule is 'warmup_cosine' (the 'budget' recipe's), "
        "which decays along a cosine, not in steps; it applies to 'step_decay'",
    ),
    (
        FinetuneConfig,
        {"optim": {"recipe": "paper", "schedule": "warmup_cosine", "lr_decay_every": 5}},
        "optim.lr_decay_every=5 has no effect: optim.schedule is 'warmup_cosine', which decays along a "
        "cosine, not in steps; it applies to 'step_decay'",
    ),
    (
        FinetuneConfig,
        {"transfer": {"pretrained": "runs/pre", "schedule": "immediate", "second_lr": 1e-4}},
        "transfer.second_lr=0.0001 has no effect: transfer.schedule='immediate' trains once; only "
        "'immediate_twice' and 'freeze_then_unfreeze' have a second run",
    ),
    (
        FinetuneConfig,
        {"transfer": {"pretrained": "runs/pre", "schedule": "frozen", "second_lr": 1e-4}},
        "transfer.second_lr=0.0001 has no effect: transfer.schedule='frozen' trains once; only "
        "'immediate_twice' and 'freeze_then_unfreeze' have a second run",
    ),
    (
        PretrainConfig,
        {"data": {"resize_mode": "resize"}},
        "data.resize_mode='resize' has no effect: data.image_size is null, so every slice keeps its own "
        "size and nothing is resized",
    ),
    (
        FinetuneConfig,
        {"data": {"worker_start_method": "spawn"}},
        "data.worker_start_method='spawn' has no effect: data.num_workers is 0, so the training process "
        "reads the data and no worker starts",
    ),
    (
        PretrainConfig,
        {"data": {"label_fraction": 0.25}},
        "data.label_fraction=0.25 has no effect: pretraining trains on every training volume, without "
        "labels; label_fraction selects fine-tuning's labelled subset",
    ),
    (
        FinetuneConfig,
        {"data": {"unlabelled": [{"dataset": "ct"}]}},
        "data.unlabelled=['ct'] has no effect: fine-tuning trains on the labelled data alone; unlabelled "
        "sources are added to pretraining",
    ),
    (
        PretrainConfig,
        {"run": {"device": "cpu", "amp": "bf16"}},
        "run.amp='bf16' has no effect: run.device='cpu', and mixed precision is used on CUDA only",
    ),
    (
        FinetuneConfig,
        {"run": {"device": "cpu", "cudnn_benchmark": True}},
        "run.cudnn_benchmark=true has no effect: run.device='cpu', and cuDNN's autotuning applies to "
        "CUDA only",
    ),
    (
        PretrainConfig,
        {"run": {"device": "cuda:1", "cpu_weight_gradient": "blocked_gemm"}},
        "run.cpu_weight_gradient='blocked_gemm' has no effect: run.device='cuda:1', and it chooses a "
        "kernel for CPU training only",
    ),
    (
        FinetuneConfig,
        {"run": {"channels_last": False, "cpu_weight_gradient": "onednn"}},
        "run.cpu_weight_gradient='onednn' has no effect: run.channels_last=false, and it chooses a kernel "
        "for channels_last training only",
    ),
    (
        PretrainConfig,
        {"run": {"device": "cpu", "compile": "default", "cpu_weight_gradient": "blocked_gemm"}},
        "run.cpu_weight_gradient='blocked_gemm' has no effect: run.compile='default', and the compiler "
        "generates the backward pass itself",
    ),
    # A transfer setting without weights to transfer: the pretraining run was most likely left out.
    (
        FinetuneConfig,
        {"transfer": {"weights": "encoder_decoder"}},
        "transfer.weights='encoder_decoder' has no effect: transfer.pretrained is null, so nothing is "
        "transferred and the run trains from scratch",
    ),
    (
        FinetuneConfig,
        {"transfer": {"in_channels": "repeat"}},
        "transfer.in_channels='repeat' has no effect: transfer.pretrained is null, so nothing is "
        "transferred and the run trains from scratch",
    ),
)

# The same settings where the mode reads them, or left at their defaults: no warning.
USED: tuple[tuple[type[BaseModel], dict[str, Any]], ...] = (
    (PretrainConfig, {"optim": {"warmup_fraction": 0.1}}),
    (PretrainConfig, {"optim": {"recipe": "paper", "lr_decay": 0.5, "lr_decay_every": 5}}),
    (
        FinetuneConfig,
        {"transfer": {"pretrained": "runs/pre", "schedule": "immediate_twice", "second_lr": 1e-4}},
    ),
    (FinetuneConfig, {"transfer": {"schedule": "immediate", "second_lr": None}}),
    (PretrainConfig, {"data": {"resize_mode": "resize", "image_size": [64, 64]}}),
    (PretrainConfig, {"data": {"resize_mode": "crop_or_pad"}}),  # the default, given
    (FinetuneConfig, {"data": {"label_fraction": 0.25}}),
    (PretrainConfig, {"data": {"num_workers": 2, "worker_start_method": "forkserver"}}),
    (PretrainConfig, {"data": {"unlabelled": [{"dataset": "ct"}]}}),
    (PretrainConfig, {"run": {"device": "cuda", "amp": "bf16", "cudnn_benchmark": True}}),
    (PretrainConfig, {"run": {"device": "auto", "amp": "fp16"}}),  # auto may pick CUDA
    (FinetuneConfig, {"run": {"device": "cpu", "amp": "off"}}),
    # auto may pick the CPU; channels_last auto is channels_last there; eager autograd.
    (PretrainConfig, {"run": {"device": "auto", "cpu_weight_gradient": "blocked_gemm"}}),
    (FinetuneConfig, {"run": {"device": "cpu", "channels_last": True, "cpu_weight_gradient": "onednn"}}),
    (PretrainConfig, {"run": {"device": "cuda", "compile": "default", "cpu_weight_gradient": "auto"}}),
    (
        FinetuneConfig,
        {"transfer": {"pretrained": "runs/pre", "weights": "encoder_decoder", "in_channels": "repeat"}},
    ),
    (FinetuneConfig, {"transfer": {"weights": "encoder"}}),  # the default, given
)


def _messages(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, ConfigWarning)]


def _validated(cls: type[BaseModel], data: dict[str, Any]) -> tuple[BaseModel, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        config = cls.model_validate(data)
    return config, _messages(record)


@pytest.mark.parametrize(("cls", "data", "message"), CASES)
def test_a_setting_the_mode_ignores_warns_once_naming_the_field_the_value_and_the_mode(
    cls: type[BaseModel], data: dict[str, Any], message: str
) -> None:
    assert _validated(cls, data)[1] == [message]


@pytest.mark.parametrize(("cls", "data", "message"), CASES)
def test_a_config_file_read_back_from_config_yaml_still_warns_for_the_users_setting(
    cls: type[BaseModel], data: dict[str, Any], message: str, tmp_path: Path
) -> None:
    config = _validated(cls, data)[0]
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_config(path, cls)
    assert _messages(record) == [message]


@pytest.mark.parametrize(("cls", "data"), USED)
def test_a_setting_the_mode_reads_or_a_default_given_does_not_warn(
    cls: type[BaseModel], data: dict[str, Any]
) -> None:
    assert _validated(cls, data)[1] == []


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig])
def test_defaults_do_not_warn_before_or_after_a_round_trip_through_config_yaml(
    cls: type[BaseModel], tmp_path: Path
) -> None:
    # config.yaml holds every field, so every field reads back as given: defaults must stay quiet.
    path = tmp_path / "config.yaml"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        path.write_text(config_to_yaml(cls()))
        load_config(path, cls)
        cls.model_validate(cls().model_dump(mode="json"))
    assert _messages(record) == []


def test_a_file_setting_that_the_overrides_put_to_use_does_not_warn(tmp_path: Path) -> None:
    path = tmp_path / "pre.yaml"
    path.write_text("optim: {recipe: paper, warmup_fraction: 0.1}\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        config = load_config(path, PretrainConfig, overrides=["optim.recipe=budget"])
    assert config.optim.effective_schedule == "warmup_cosine" and _messages(record) == []


def test_an_override_that_takes_a_file_setting_out_of_use_warns(tmp_path: Path) -> None:
    path = tmp_path / "pre.yaml"
    path.write_text("optim: {warmup_fraction: 0.1}\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_config(path, PretrainConfig, overrides=["optim.schedule=step_decay"])
    assert [m.split(":")[0] for m in _messages(record)] == ["optim.warmup_fraction=0.1 has no effect"]


def test_overrides_warn_and_field_updates_made_by_code_do_not() -> None:
    # update_fields is what the study grid combines a base config with its grid values through.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        update_fields(FinetuneConfig(), {"transfer.second_lr": 1e-4})
    assert _messages(record) == []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        apply_overrides(FinetuneConfig(), ["transfer.second_lr=1e-4"])
    assert [m.split(":")[0] for m in _messages(record)] == ["transfer.second_lr=0.0001 has no effect"]


def test_an_evaluation_configs_data_section_is_checked_too() -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        EvaluateConfig.model_validate({"checkpoint": "runs/ft", "data": {"resize_mode": "resize"}})
    assert [m.split(":")[0] for m in _messages(record)] == ["data.resize_mode='resize' has no effect"]


def test_the_warning_is_a_user_warning_importable_from_the_config_package() -> None:
    assert issubclass(ConfigWarning, UserWarning) and ConfigWarning.__module__ == "inpaintssl.config"
    with pytest.warns(ConfigWarning, match=r"^optim\.lr_decay=0\.5 has no effect"):
        PretrainConfig.model_validate({"optim": {"lr_decay": 0.5}})


# -- the same judgement as data, and the quiet switch --------------------------------------------------


def _quietly(cls: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quiet means no ConfigWarning at all, not one filtered out
        with quiet_unused_settings():
            return cls.model_validate(data)


@pytest.mark.parametrize(("cls", "data", "message"), CASES)
def test_unused_settings_lists_what_validation_warns_about(
    cls: type[BaseModel], data: dict[str, Any], message: str
) -> None:
    found = unused_settings(_quietly(cls, data))
    assert [str(setting) for setting in found] == [message]
    # The field is the dotted path the case's mapping gives, whatever the message says of it.
    ((section, fields),) = data.items()
    assert found[0].field.split(".")[0] == section and found[0].field.split(".")[1] in fields


@pytest.mark.parametrize(("cls", "data"), USED)
def test_unused_settings_is_empty_where_validation_is_quiet(
    cls: type[BaseModel], data: dict[str, Any]
) -> None:
    assert unused_settings(_quietly(cls, data)) == ()


def test_several_unused_settings_come_in_the_order_validation_warns_them() -> None:
    data = {
        "data": {"resize_mode": "resize", "unlabelled": [{"dataset": "ct"}]},
        "optim": {"schedule": "step_decay", "warmup_fraction": 0.2},
        "transfer": {"second_lr": 1e-4, "weights": "encoder_decoder", "in_channels": "repeat"},
        "run": {"device": "cpu", "cudnn_benchmark": True},
    }
    config, said = _validated(FinetuneConfig, data)
    # Each section as pydantic validates it, in field order; the stage's own judgement (the
    # unlabelled sources, a fine-tuning matter) after all its sections.
    assert [message.split("=")[0] for message in said] == [
        "data.resize_mode",
        "optim.warmup_fraction",
        "transfer.second_lr",
        "transfer.weights",
        "transfer.in_channels",
        "run.cudnn_benchmark",
        "data.unlabelled",
    ]
    assert [str(setting) for setting in unused_settings(config)] == said


def test_quiet_unused_settings_touches_no_warnings_filter_and_resets_on_an_error() -> None:
    filters = list(warnings.filters)
    with pytest.raises(RuntimeError), quiet_unused_settings():
        assert warnings.filters == filters
        raise RuntimeError("stop")
    with pytest.warns(ConfigWarning, match="run.amp='bf16' has no effect"):
        PretrainConfig.model_validate({"run": {"device": "cpu", "amp": "bf16"}})


def test_a_quiet_validation_in_another_thread_leaves_this_threads_warnings_alone() -> None:
    # A warnings filter is process-wide: a loader quieting its own validation in a worker thread
    # would silence the user's config in the main thread for as long as it held the filter.
    holding, done = threading.Event(), threading.Event()

    def quiet_loader() -> None:
        with quiet_unused_settings():
            _quietly(PretrainConfig, {"optim": {"lr_decay": 0.5}})
            holding.set()
            done.wait(timeout=30)

    thread = threading.Thread(target=quiet_loader)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        with warnings.catch_warnings(record=True) as record:
            # Appended, as a user's own filters would be: a filter the other thread put in front
            # of the list (a warnings-filter quiet switch) would still win.
            warnings.simplefilter("always", ConfigWarning, append=True)
            FinetuneConfig.model_validate({"run": {"device": "cpu", "cudnn_benchmark": True}})
        said = [m.split(":")[0] for m in _messages(record)]
        assert said == ["run.cudnn_benchmark=true has no effect"]
    finally:
        done.set()
        thread.join(timeout=30)


def test_an_unused_setting_warns_from_its_own_method_unless_quiet() -> None:
    setting = UnusedSetting("optim.lr_decay", 0.5, "optim.schedule is 'warmup_cosine'")
    with pytest.warns(ConfigWarning, match=r"^optim\.lr_decay=0\.5 has no effect: optim\.schedule") as record:
        setting.warn()
    assert record[0].filename == __file__  # stacklevel 1: the caller's line, not the library's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet_unused_settings():
            setting.warn()
