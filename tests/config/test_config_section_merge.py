"""A mapping given for a whole config section merges into it; one for a free-form dict replaces it.

Both ways of changing a config (``apply_overrides`` with YAML text, ``update_fields`` with Python
values) are checked alike, against values worked out by hand from the file's contents.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inpaintssl.config import (
    ConfigError,
    DataConfig,
    EvaluateConfig,
    FinetuneConfig,
    PretrainConfig,
    SourceConfig,
    TransferConfig,
    apply_overrides,
    load_config,
    update_fields,
)

Change = Callable[[Any, str, str, Any], Any]


def _by_override(config: Any, key: str, text: str, value: Any) -> Any:
    del value
    return apply_overrides(config, [f"{key}={text}"])


def _by_update(config: Any, key: str, text: str, value: Any) -> Any:
    del text
    return update_fields(config, {key: value})


CHANGES = pytest.mark.parametrize("change", [_by_override, _by_update], ids=["override", "update"])


@pytest.fixture
def from_file(tmp_path: Path) -> FinetuneConfig:
    path = tmp_path / "ft.yaml"
    path.write_text(
        "optim: {lr: 0.002, max_epochs: 7}\n"
        "data: {dataset: numpy, params: {root: /data/a, pattern: '*.npz'}, image_size: [64, 64]}\n"
        "transfer: {pretrained: runs/pre, schedule: immediate_twice, second_lr: 0.0005}\n"
    )
    return load_config(path, FinetuneConfig)


@CHANGES
def test_a_section_mapping_changes_its_field_and_keeps_the_other_one_from_the_file(
    from_file: FinetuneConfig, change: Change
) -> None:
    config = change(from_file, "optim", "{lr: 1e-5}", {"lr": 1e-5})
    assert (config.optim.lr, config.optim.max_epochs) == (1e-5, 7)
    # Nothing outside the section moves either.
    assert config.data == from_file.data and config.transfer == from_file.transfer


@CHANGES
def test_a_top_level_mapping_merges_each_section_it_names(from_file: FinetuneConfig, change: Change) -> None:
    config = change(
        from_file,
        "transfer",
        "{schedule: freeze_then_unfreeze}",
        {"schedule": "freeze_then_unfreeze"},
    )
    assert config.transfer.schedule == "freeze_then_unfreeze"
    assert config.transfer.second_lr == 0.0005 and config.transfer.pretrained == Path("runs/pre")


def test_nested_sections_merge_at_every_level() -> None:
    # EvaluateConfig.data is a section inside a config: data.image_size changes, data.dataset stays.
    base = EvaluateConfig(checkpoint=Path("runs/ft"), data=DataConfig(dataset="numpy", label_fraction=0.5))
    for config in (
        apply_overrides(base, ["data={image_size: [32, 32]}"]),
        update_fields(base, {"data": {"image_size": (32, 32)}}),
    ):
        assert config.data is not None
        assert (config.data.dataset, config.data.label_fraction, config.data.image_size) == (
            "numpy",
            0.5,
            (32, 32),
        )


def test_a_mapping_of_mappings_merges_down_to_the_fields_it_names(from_file: FinetuneConfig) -> None:
    config = update_fields(from_file, {"data": {"image_size": (32, 32)}, "optim": {"max_epochs": 3}})
    assert config.data.dataset == "numpy" and config.data.image_size == (32, 32)
    assert (config.optim.lr, config.optim.max_epochs) == (0.002, 3)


@CHANGES
def test_a_free_form_params_mapping_replaces_the_old_one(from_file: FinetuneConfig, change: Change) -> None:
    config = change(from_file, "data.params", "{root: /data/b}", {"root": "/data/b"})
    assert config.data.params == {"root": "/data/b"}  # 'pattern' is gone: the factory gets these only


def test_params_inside_a_merged_section_are_replaced_while_the_section_merges(
    from_file: FinetuneConfig,
) -> None:
    config = apply_overrides(from_file, ["data={params: {root: /data/b}}"])
    assert config.data.params == {"root": "/data/b"}
    assert config.data.dataset == "numpy" and config.data.image_size == (64, 64)


def test_one_key_of_params_is_still_set_by_its_dotted_path(from_file: FinetuneConfig) -> None:
    config = apply_overrides(from_file, ["data.params.root=/data/b"])
    assert config.data.params == {"root": "/data/b", "pattern": "*.npz"}


def test_a_list_of_sections_is_replaced() -> None:
    base = PretrainConfig(
        data=DataConfig(unlabelled=[SourceConfig(dataset="ct"), SourceConfig(dataset="numpy")])
    )
    config = apply_overrides(base, ["data={unlabelled: [{dataset: hdf5}]}"])
    assert [s.dataset for s in config.data.unlabelled] == ["hdf5"]


def test_a_model_instance_replaces_the_whole_section(from_file: FinetuneConfig) -> None:
    # A model is a complete section: the runner resets transfer with TransferConfig() this way.
    config = update_fields(from_file, {"transfer": TransferConfig()})
    assert config.transfer == TransferConfig()


def test_null_clears_an_optional_section_and_a_mapping_fills_a_cleared_one() -> None:
    base = EvaluateConfig(checkpoint=Path("runs/ft"), data=DataConfig(dataset="numpy"))
    assert apply_overrides(base, ["data=null"]).data is None
    assert update_fields(base, {"data": None}).data is None
    # Nothing to merge into: the mapping is the section, the rest defaults.
    filled = apply_overrides(EvaluateConfig(checkpoint=Path("runs/ft")), ["data={dataset: ct}"])
    assert filled.data == DataConfig(dataset="ct")


@CHANGES
def test_a_field_of_an_optional_section_left_null_starts_the_section(change: Change) -> None:
    # evaluate's data: null (the run's own record) was "not a section (found None)" for
    # data.dataset=ct, though data={dataset: ct} filled it.
    config = change(EvaluateConfig(checkpoint=Path("runs/ft")), "data.dataset", "ct", "ct")
    assert config.data == DataConfig(dataset="ct")
    assert load_config({"checkpoint": "runs/ft"}, EvaluateConfig, overrides=["data.dataset=ct"]) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optim={lrr: 0.1}"],
            "invalid configuration in overrides:\n  optim.lrr: unknown field; did you mean 'lr'? "
            "(see `inpaintssl config schema`)",
        ),
        (
            ["optim={lr: -1}"],
            "invalid configuration in overrides:\n  optim.lr: Input should be greater than 0 (found -1)",
        ),
        (
            ["optim=3"],
            "invalid configuration in overrides:\n  optim: Input should be a valid dictionary or instance "
            "of OptimConfig (found 3)",
        ),
        (["optim.lr.value=1"], "override 'optim.lr.value=1': 'lr' is not a section (found None)"),
    ],
)
def test_errors_read_as_before(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_overrides(PretrainConfig(), overrides)
    assert str(caught.value) == message
