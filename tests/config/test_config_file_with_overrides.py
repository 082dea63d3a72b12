"""A config file and its overrides are merged, then validated once, as ``inpaintssl config show``
documents ("defaults, file and overrides merged and validated").

A file that leaves a check across sections to its overrides (a schedule in the file, the
pretrained run it needs in an override) was refused before the overrides applied. Expectations
are the configs built from the merged mapping written out by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inpaintssl.cli import main
from inpaintssl.config import ConfigError, DataConfig, FinetuneConfig, PretrainConfig, load_config
from inpaintssl.studies.grid import expand_study, run_id
from inpaintssl.studies.spec import load_spec


def test_a_file_that_its_overrides_complete_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "ft.yaml"
    path.write_text("transfer: {schedule: freeze_then_unfreeze}\n")
    config = load_config(path, FinetuneConfig, overrides=["transfer.pretrained=runs/pre"])
    by_hand = {"transfer": {"schedule": "freeze_then_unfreeze", "pretrained": "runs/pre"}}
    assert config == FinetuneConfig.model_validate(by_hand)


def test_a_pretext_that_fits_the_image_only_with_its_override_is_valid(tmp_path: Path) -> None:
    # 32x32 patches (the default) do not fit a 16x16 image: the file alone is refused.
    path = tmp_path / "small.yaml"
    path.write_text("data: {image_size: [16, 16]}\n")
    with pytest.raises(ConfigError, match=r"does not fit data\.image_size"):
        load_config(path, PretrainConfig)
    config = load_config(path, PretrainConfig, overrides=["pretext.patch_size=4"])
    assert config == PretrainConfig.model_validate(
        {"data": {"image_size": [16, 16]}, "pretext": {"patch_size": 4}}
    )


def test_config_show_takes_the_file_and_the_overrides_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ft.yaml"
    path.write_text("transfer: {schedule: freeze_then_unfreeze}\n")
    assert main(["config", "show", "finetune", str(path), "transfer.pretrained=runs/pre"]) == 0
    assert "schedule: freeze_then_unfreeze" in capsys.readouterr().out


def test_an_error_names_where_its_field_came_from(tmp_path: Path) -> None:
    path = tmp_path / "ft.yaml"
    path.write_text("transfer: {schedule: freeze_then_unfreeze}\noptim: {max_epochs: 0}\n")
    name = re.escape(str(path))
    # The file's own field, untouched by the overrides: the file.
    with pytest.raises(ConfigError, match=rf"^invalid configuration in {name}:\n  optim.max_epochs: "):
        load_config(path, FinetuneConfig, overrides=["transfer.pretrained=runs/pre"])
    path.write_text("transfer: {schedule: freeze_then_unfreeze}\n")
    # A field an override set: the overrides.
    with pytest.raises(ConfigError, match=r"^invalid configuration in overrides:\n  run.seed: "):
        load_config(path, FinetuneConfig, overrides=["transfer.pretrained=runs/pre", "run.seed=-1"])
    # A check across sections, one given by the file and neither by an override: both.
    with pytest.raises(
        ConfigError,
        match=rf"^invalid configuration in {name} with the overrides:\n  config: transfer.schedule",
    ):
        load_config(path, FinetuneConfig, overrides=["run.seed=1"])
    # Without a file (the command line's {}), the overrides alone, as before.
    with pytest.raises(
        ConfigError, match=r"^invalid configuration in overrides:\n  config: transfer.schedule"
    ):
        load_config({}, FinetuneConfig, overrides=["transfer.schedule=frozen"])


def test_a_field_set_twice_by_overrides_is_still_refused_beside_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pre.yaml"
    path.write_text("optim: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"optim.lr is already set by 'optim.lr=0.2'; give each field once"):
        load_config(path, PretrainConfig, overrides=["optim.lr=0.2", "optim={lr: 0.3}"])
    # An override of a field the file gives is no repetition: it is what overrides are for.
    assert load_config(path, PretrainConfig, overrides=["optim.lr=0.2"]).optim.lr == 0.2


def test_a_section_the_file_leaves_out_starts_from_its_default(tmp_path: Path) -> None:
    # Pretraining's early stopping defaults to min_delta null (scaled to the slice area), not the
    # section class's 1e-3: an override of its patience must keep that, as on a validated config.
    path = tmp_path / "pre.yaml"
    path.write_text("optim: {lr: 0.1}\n")
    for override in ("early_stopping.patience=7", "early_stopping={patience: 7}"):
        stopping = load_config(path, PretrainConfig, overrides=[override]).early_stopping
        assert (stopping.min_delta, stopping.patience) == (None, 7)
    # A field left out that is no section is still no section to descend into.
    with pytest.raises(ConfigError, match=r"'lr' is not a section \(found None\)"):
        load_config({"optim": {"max_epochs": 3}}, PretrainConfig, overrides=["optim.lr.value=1"])


def test_a_section_the_file_gives_in_part_fills_the_rest_from_the_stages_default(tmp_path: Path) -> None:
    # The file's "early_stopping: {patience: 8}" got the section class's min_delta (1e-3, fine-tuning's)
    # where the override spelling keeps pretraining's (null): two configs, two run ids, for one setting.
    path = tmp_path / "pre.yaml"
    path.write_text("early_stopping: {patience: 8}\n")
    by_override = load_config({}, PretrainConfig, overrides=["early_stopping.patience=8"])
    by_file = load_config(path, PretrainConfig)
    by_dict = PretrainConfig.model_validate({"early_stopping": {"patience": 8}})
    # A study spec's base config, and a grid value that is the whole section, are read alike.
    by_spec = load_spec({"study": "pretext_design", "pretrain": {"early_stopping": {"patience": 8}}}).pretrain
    plan = expand_study(
        load_spec({"study": "pretext_design", "grid": {"pretrain.early_stopping": [{"patience": 8}]}})
    )
    (by_grid,) = (job for job in plan.jobs if job.kind == "pretrain")
    for config in (by_file, by_dict, by_spec):
        assert (config.early_stopping.min_delta, config.early_stopping.patience) == (None, 8)
        assert config == by_override
        assert run_id("pretrain", config) == run_id("pretrain", by_override)
    # The study's run differs in its folder alone, which its run id leaves out.
    assert by_grid.config.early_stopping == by_override.early_stopping
    assert by_grid.id == run_id("pretrain", by_override)
    # A min_delta given is kept, and fine-tuning's section keeps its own default.
    given = PretrainConfig.model_validate({"early_stopping": {"patience": 8, "min_delta": 0.5}})
    assert given.early_stopping.min_delta == 0.5
    assert FinetuneConfig.model_validate({"early_stopping": {"patience": 8}}).early_stopping.min_delta == 1e-3


def test_an_override_changes_one_place_of_a_file_that_aliases_a_mapping(tmp_path: Path) -> None:
    # YAML's alias makes both params one mapping object: setting a key in place changed both.
    path = tmp_path / "pre.yaml"
    path.write_text("data: {params: &p {root: /a}}\nmodel: {params: *p}\n")
    config = load_config(path, PretrainConfig, overrides=["data.params.root=/b"])
    assert (config.data.params, config.model.params) == ({"root": "/b"}, {"root": "/a"})
    given = {"data": {"params": {"root": "/a"}}}
    load_config(given, PretrainConfig, overrides=["data.params.root=/b"])
    assert given == {"data": {"params": {"root": "/a"}}}  # the caller's mapping is left as it was


def test_a_section_given_as_a_model_in_a_mapping_takes_overrides_into_it() -> None:
    config = load_config({"data": DataConfig(dataset="ct")}, PretrainConfig, overrides=["data.num_workers=2"])
    assert config.data == DataConfig(dataset="ct", num_workers=2)
