"""An unknown config field is answered with the closest field of its own section, as registries do."""

from __future__ import annotations

from pathlib import Path

import pytest

from inpaintssl.cli import main
from inpaintssl.config import ConfigError, FinetuneConfig, PretrainConfig, load_config

_SEE = "(see `inpaintssl config schema`)"


def test_a_misspelt_key_in_a_config_file_names_the_field_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pre.yaml"
    path.write_text("optim:\n  max_epoch: 60\n")
    assert main(["config", "show", "pretrain", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"inpaintssl config: error: invalid configuration in {path}:",
        f"  optim.max_epoch: unknown field; did you mean 'max_epochs'? {_SEE}",
    ]


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["data.lable_fraction=0.5"],
            f"  data.lable_fraction: unknown field; did you mean 'label_fraction'? {_SEE}",
        ),
        (["optimm.lr=0.1"], f"  optimm: unknown field; did you mean 'optim'? {_SEE}"),
        # Inside a list of sections: the fields of one list item.
        (
            ["data.unlabelled=[{dataset: ct, fractoin: 0.5}]"],
            f"  data.unlabelled.0.fractoin: unknown field; did you mean 'fraction'? {_SEE}",
        ),
        # Nothing close: the message stays as it was, with no guess.
        (
            ["optim.learning_rate=1e-4"],
            "  optim.learning_rate: unknown field (check the spelling; see `inpaintssl config schema`)",
        ),
    ],
)
def test_a_misspelt_override_names_the_field_meant(overrides: list[str], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, FinetuneConfig, overrides=overrides)
    assert line in str(info.value).splitlines()


def test_only_the_fields_of_the_keys_own_section_are_offered() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"data": {"subset_sed": 1}, "run": {"patch_size": 8}}, PretrainConfig)
    assert str(info.value).splitlines()[1:] == [
        f"  data.subset_sed: unknown field; did you mean 'subset_seed'? {_SEE}",
        # pretext.patch_size exists, but run has nothing like it: a guess from another section
        # would send the user to the wrong place.
        "  run.patch_size: unknown field (check the spelling; see `inpaintssl config schema`)",
    ]
