"""Study specs: validation names the bad field, overrides round-trip, paths follow the spec."""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from inpaintssl.config import ConfigError, ConfigWarning, PretrainConfig, quiet_unused_settings, update_fields
from inpaintssl.data.base import SliceDataset
from inpaintssl.registry import DATASETS
from inpaintssl.studies import run_study
from inpaintssl.studies.grid import expand_study
from inpaintssl.studies.results import study_databases
from inpaintssl.studies.spec import StudySpec, load_spec


def _spec(**changes: Any) -> dict[str, Any]:
    return {"study": "pretext_design", **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grid": {"pretext.patch_size": [16]}}, "must start with 'pretrain.' or 'finetune.'"),
        ({"grid": {"finetune.data.label_fraction": [0.5]}}, "set by the runner"),
        ({"grid": {"pretrain.pretext.patch_size": []}}, "has no values"),
        ({"grid": {"pretrain.pretext.patch_size": [4, 8, 4.0]}}, "holds [4, 8, 4.0], repeating [4.0]"),
        ({"grid": {"pretrain.pretext.patch_sise": [16]}}, "pretext.patch_sise"),
        ({"grid": {"pretrain.pretext.patch_size": [-4]}}, "value -4 is not valid"),
        ({"label_fractions": [0.5, 1.5]}, "label_fractions must lie in (0, 1]"),
        ({"label_fractions": [0.5, 0.5]}, "label_fractions must be distinct"),
        ({"subset_seeds": [1, 1]}, "subset_seeds must be distinct"),
        ({"unlabelled_fractions": [0.5]}, "applies to study 'data_scaling' only"),
        ({"study": "data_scaling"}, "needs unlabelled_fractions"),
        ({"study": "data_scaling", "unlabelled_fractions": [0.0, 1.0]}, "pretrain.data.unlabelled"),
        ({"study": "ablation"}, "study"),
        ({"stale_after": 3}, "unknown field"),
        (
            {"pretrain": {"optim": {"lr": "fast"}}},
            "pretrain.optim.lr: Input should be a valid number, unable to parse string as a number "
            "(found 'fast')",
        ),
        ({"max_attempts": "two"}, "(found 'two')"),
        # A worker beating less often than runs go stale would lose its live run to another.
        ({"heartbeat_s": 60, "stale_after_s": 1}, "heartbeat_s=60 must be smaller than stale_after_s=1"),
        ({"heartbeat_s": 900}, "heartbeat_s=900 must be smaller than stale_after_s=900"),
    ],
)
def test_invalid_specs_name_the_problem(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_spec(_spec(**changes))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("changes", "blamed"),
    [
        ({"subset_seeds": [0, -1]}, "subset_seeds.1: Input should be greater than or equal to 0 (found -1)"),
        (
            {"subset_seeds": [2**32]},
            "subset_seeds.0: Input should be less than 4294967296 (found 4294967296)",
        ),
        (
            {"subset_seeds": [-1], "label_fractions": [1.0], "baseline": False},
            "subset_seeds.0: Input should be greater than or equal to 0 (found -1)",
        ),
        (
            {"label_fractions": [1.0, 0.5], "fraction_seeds": {0.5: [0, -3]}},
            "fraction_seeds[0.5] must be distinct seeds in [0, 2**32), at least one; found [0, -3]",
        ),
        (
            {"label_fractions": [1.0, 0.5], "fraction_seeds": {0.5: [2**32]}},
            "fraction_seeds[0.5] must be distinct seeds in [0, 2**32), at least one; found [4294967296]",
        ),
    ],
)
def test_a_bad_subset_seed_is_blamed_on_the_spec_field_that_gives_it(
    tmp_path: Path, changes: dict[str, Any], blamed: str
) -> None:
    # Checked only when the runner set data.subset_seed, it was blamed on that field, which no spec
    # names, and on "the supervised baseline" or "field updates".
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(**changes)), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"invalid study spec {path}")
    assert blamed in message
    assert "data.subset_seed" not in message


def test_the_largest_subset_seed_data_subset_seed_takes_is_accepted(tmp_path: Path) -> None:
    # data.subset_seed takes [0, 2**32): the spec's bound is the same, not tighter.
    spec = load_spec(_spec(output=str(tmp_path), subset_seeds=[2**32 - 1], fraction_seeds={0.5: [2**32 - 1]}))
    seeds = {job.config.data.subset_seed for job in expand_study(spec).finetune_jobs()}
    assert seeds == {2**32 - 1}


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        # The review's case: one letter short of the field, at the spec's top level.
        ({"label_fraction": [0.5]}, "  label_fraction: unknown field; did you mean 'label_fractions'?"),
        (
            {"executor": {"partitoin": "gpu"}},
            "  executor.partitoin: unknown field; did you mean 'partition'?",
        ),
        # A base config inside the spec: the fields of the section the key is in.
        (
            {"finetune": {"optim": {"max_epoch": 30}}},
            "  finetune.optim.max_epoch: unknown field; did you mean 'max_epochs'?",
        ),
        # An executor field one level too high: nothing at the top level is close, so no guess.
        ({"partition": "gpu"}, "  partition: unknown field"),
    ],
)
def test_an_unknown_spec_field_names_the_close_one(changes: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec(_spec(**changes))
    assert line in str(info.value).splitlines()


@pytest.mark.parametrize(
    ("key", "missing", "expected"),
    [
        (
            "pretrain.pretext.patchsize",
            "section 'pretext' has no field 'patchsize'",
            "did you mean 'patch_size'?",
        ),
        ("finetune.optimiser.lr", "the top level has no field 'optimiser'", "optim"),
        ("pretrain.optim.lr.x", "'optim.lr' is a value", "not a section with a field 'x'"),
    ],
)
def test_a_grid_key_that_names_no_field_is_blamed_not_its_values(
    key: str, missing: str, expected: str
) -> None:
    # The key is wrong whatever its values are: the message must say so under grid, once, naming
    # the field that is not there and what is, not call the first value invalid.
    with pytest.raises(ConfigError) as info:
        load_spec(_spec(grid={key: [4, 8]}))
    message = str(info.value)
    line = next(line for line in message.splitlines() if key in line)
    assert line.startswith(f"  grid: grid key {key!r} names no field of the {key.split('.')[0]} config")
    assert missing in line and expected in line
    assert "value 4" not in message and "value 8" not in message


def test_the_fields_a_missing_grid_key_could_have_meant_are_listed() -> None:
    with pytest.raises(ConfigError) as info:
        load_spec(_spec(grid={"pretrain.pretext.shape": ["square"]}))
    listed = str(info.value).split("expected one of ", 1)[1]
    for field in ("task", "patch_size", "sampler", "coverage", "bank_size"):
        assert field in listed


def test_grid_keys_below_a_free_form_mapping_are_accepted() -> None:
    # model.params is passed to the backbone as it is: any key there may be meant.
    spec = load_spec(_spec(grid={"pretrain.model.params.depth": [2, 3]}))
    assert spec.grid == {"pretrain.model.params.depth": [2, 3]}


def test_freeze_then_unfreeze_is_valid_in_a_grid() -> None:
    # The base finetune config has no pretrained weights; the grid still accepts the two-phase schedule.
    spec = load_spec(_spec(grid={"finetune.transfer.schedule": ["immediate", "freeze_then_unfreeze"]}))
    assert spec.grid["finetune.transfer.schedule"] == ["immediate", "freeze_then_unfreeze"]


def test_load_spec_reads_yaml_and_reports_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_spec(grid={"pretrain.pretext.patch_size": [8, 16]})))
    assert load_spec(path).grid == {"pretrain.pretext.patch_size": [8, 16]}
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    folder = f"^study spec {re.escape(str(tmp_path))} is a folder; expected a YAML"
    with pytest.raises(ConfigError, match=folder):
        load_spec(tmp_path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_spec(path)


def test_a_spec_that_is_not_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    # Was: the codec's message alone ("'utf-8' codec can't decode byte 0xe9 ..."), naming no file.
    path = tmp_path / "latin1.yaml"
    path.write_bytes("study: clinical\noutput: résultats\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=f"^study spec {re.escape(str(path))} is not UTF-8 text .*0xe9"):
        load_spec(path)


def test_default_paths_and_shard_placeholder(tmp_path: Path) -> None:
    spec = StudySpec(study="clinical", name="knee")
    assert spec.output_dir() == Path("studies/knee")
    assert spec.database_path() == Path("studies/knee/study.sqlite")
    sharded = StudySpec(study="clinical", output=tmp_path, database=tmp_path / "db-{shard}.sqlite")
    assert sharded.database_path((2, 8)) == tmp_path / "db-2-of-8.sqlite"
    assert sharded.database_template() == tmp_path / "db-{shard}.sqlite"
    for name in ("db-0-of-2.sqlite", "db-1-of-2.sqlite", "db-old.sqlite", "db-.sqlite"):
        (tmp_path / name).touch()
    assert study_databases(sharded) == [tmp_path / "db-0-of-2.sqlite", tmp_path / "db-1-of-2.sqlite"]


def test_output_and_database_expand_home_and_variables_as_run_folders_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run folders' run.output_dir expanded them; the database and spec.json were written to a
    # folder literally named "~" (or "$SCRATCH") under the working folder: one study, two places.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    spec = StudySpec(study="clinical", output="~/studies/knee", database="$SCRATCH/db-{shard}.sqlite")
    assert spec.output_dir() == tmp_path / "home" / "studies" / "knee"
    assert spec.runs_dir().parent == spec.output_dir()
    assert spec.database_path((1, 2)) == tmp_path / "scratch" / "db-1-of-2.sqlite"
    monkeypatch.delenv("SCRATCH")
    with pytest.raises(
        ValidationError, match=r"database='\$SCRATCH/db-\{shard\}.sqlite' names the environment"
    ):
        StudySpec(study="clinical", database="$SCRATCH/db-{shard}.sqlite")


def test_files_named_like_a_shard_database_are_not_the_study_s(tmp_path: Path) -> None:
    # The glob's "*" matched anything after the digits: a damaged database moved aside in the
    # folder broke status, run and report, and a file manager's copy counted as a shard.
    sharded = StudySpec(study="clinical", output=tmp_path, database=tmp_path / "db" / "shard-{shard}.sqlite")
    (tmp_path / "db").mkdir()
    own = ["shard-0-of-2.sqlite", "shard-1-of-2.sqlite", "shard-10-of-12.sqlite"]
    others = [
        "shard-0-of-2.damaged.sqlite",
        "shard-1-of-2 (copy).sqlite",
        "shard-0x-of-2.sqlite",
        "shard-0-of-2x.sqlite",
        "shard-0-of-.sqlite",
    ]
    for name in own + others:
        (tmp_path / "db" / name).touch()
    assert study_databases(sharded) == sorted(tmp_path / "db" / name for name in own)


@pytest.mark.parametrize("folder", ["exp[12]", "exp[34]", "lr*", "run?"])
def test_a_study_folder_named_with_glob_characters_finds_its_own_databases_alone(
    tmp_path: Path, folder: str
) -> None:
    # Unescaped, exp[12] matched no file (its finished runs reported as none) and exp[34] matched a
    # sibling study's exp3, whose runs were then adopted as done.
    for sibling in ("exp1", "exp3", "lrx", "runs"):
        (tmp_path / sibling).mkdir()
        (tmp_path / sibling / "study.sqlite").touch()
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "study.sqlite").touch()
    single = StudySpec(study="clinical", output=tmp_path / folder)
    assert study_databases(single) == [tmp_path / folder / "study.sqlite"]
    sharded = StudySpec(
        study="clinical", output=tmp_path / folder, database=tmp_path / folder / "{shard}.sqlite"
    )
    (tmp_path / folder / "0-of-1.sqlite").touch()
    assert study_databases(sharded) == [tmp_path / folder / "0-of-1.sqlite"]


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abc", min_size=1, max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(value=_values)
def test_grid_values_are_set_exactly_as_given(value: Any) -> None:
    # The grid sets typed values (update_fields): no text in between that could change them.
    cfg = update_fields(PretrainConfig(), {"pretext.params.x": value})
    assert cfg.pretext.params["x"] == value


def test_typed_updates_keep_small_floats_numeric() -> None:
    # PyYAML reads a bare "1e-05" as a string; a typed update never goes through text.
    cfg = update_fields(PretrainConfig(), {"optim.lr": 1e-5})
    assert cfg.optim.lr == 1e-5 and isinstance(cfg.optim.lr, float)


def test_typed_updates_are_validated_and_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        update_fields(PretrainConfig(), {"optim.lr": -1.0})
    with pytest.raises(ConfigError, match=r"'lr' is not a section"):
        update_fields(PretrainConfig(), {"optim.lr.x": 1})


@pytest.mark.parametrize(
    ("key", "name", "registry"),
    [
        ("pretrain.pretext.task", "inpaint", "pretext_tasks"),
        ("pretrain.pretext.sampler", "poisson", "samplers"),
        ("pretrain.model.backbone", "unet", "backbones"),
        ("finetune.loss.name", "dicece", "losses"),
        ("finetune.transfer.weights", "encoders", "transfer_strategies"),
        ("finetune.data.dataset", "mni", "datasets"),
    ],
)
def test_an_unregistered_component_name_is_refused_before_training_naming_its_grid_key(
    tmp_path: Path, key: str, name: str, registry: str
) -> None:
    # Config validation leaves names to the registries, so the spec loads (status and report work
    # where a plugin is missing); training checks them first instead of failing every run that
    # builds the name (each exited as "failed: ... KeyError", blocking the runs after it).
    spec = load_spec(_spec(grid={key: [name]}, output=str(tmp_path / "study")))
    told = rf"grid key '{key}', value '{name}': unknown {registry} name '{name}'\. .*Available: "
    with pytest.raises(ConfigError, match=told):
        spec.check_component_names()
    with pytest.raises(ConfigError, match=told):
        run_study(spec, quiet=True)
    assert not (tmp_path / "study").exists()  # refused before any database, folder or run


def test_an_unregistered_name_in_a_base_config_is_named_by_its_field() -> None:
    spec = load_spec(_spec(finetune={"loss": {"name": "tversky"}}))
    with pytest.raises(ConfigError, match=r"^finetune\.loss\.name: unknown losses name 'tversky'"):
        spec.check_component_names()


def test_an_unregistered_unlabelled_dataset_is_refused_before_training_naming_its_place(
    tmp_path: Path,
) -> None:
    # data.unlabelled[i].dataset was never checked: the study wrote its database, trained the
    # supervised runs and failed every pretraining run with a KeyError.
    sources = [{"dataset": "mni152"}, {"dataset": "mni"}]
    spec = load_spec(_spec(pretrain={"data": {"unlabelled": sources}}, output=str(tmp_path / "study")))
    told = r"^pretrain\.data\.unlabelled\[1\]\.dataset: unknown datasets name 'mni'\. .*Available: "
    with pytest.raises(ConfigError, match=told):
        spec.check_component_names()
    with pytest.raises(ConfigError, match=told):
        run_study(spec, quiet=True)
    assert not (tmp_path / "study").exists()
    grid = {"pretrain.data.unlabelled": [[{"dataset": "mni152"}], [{"dataset": "synthetc"}]]}
    spec = load_spec(_spec(grid=grid))
    with pytest.raises(
        ConfigError,
        match=r"^grid key 'pretrain\.data\.unlabelled', value .*'synthetc'.*, pretrain\.data\.unlabelled\[0\]"
        r"\.dataset: unknown datasets name 'synthetc'",
    ):
        spec.check_component_names()
    load_spec(_spec(pretrain={"data": {"unlabelled": sources[:1]}})).check_component_names()


def _installed(site: Path, dist: str, entry_points: str) -> None:
    """A distribution whose ``entry_points.txt`` holds ``entry_points`` (no code), first on the path."""
    info = site / f"{dist}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def unusable_samplers(tmp_path: Path) -> Iterator[None]:
    """``broken_test_sampler`` (its module is missing) and ``twice_test_sampler`` (two distributions)."""
    site = tmp_path / "site"
    _installed(
        site,
        "spec_plug_c",
        "[inpaintssl.samplers]\nbroken_test_sampler = spec_plug_missing:Grid\n"
        "twice_test_sampler = spec_plug_c:Grid\n",
    )
    _installed(site, "spec_plug_d", "[inpaintssl.samplers]\ntwice_test_sampler = spec_plug_d:Grid\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()


@pytest.mark.usefixtures("unusable_samplers")
@pytest.mark.parametrize(
    ("name", "told"),
    [
        (
            "broken_test_sampler",
            r"\(spec_plug_missing:Grid\) from distribution spec_plug_c 0\.1\.0 failed to load",
        ),
        ("twice_test_sampler", r"is provided by 2 installed distributions: spec_plug_\w 0\.1\.0"),
    ],
)
def test_an_installed_plugin_that_cannot_be_used_is_refused_before_training(
    tmp_path: Path, name: str, told: str
) -> None:
    # The name is listed by the registry (an installed entry point), so the check used to pass it,
    # and every run of the grid value failed alike; only an unknown name (KeyError) was refused.
    spec = load_spec(
        _spec(grid={"pretrain.pretext.sampler": ["random", name]}, output=str(tmp_path / "study"))
    )
    where = rf"^grid key 'pretrain\.pretext\.sampler', value '{name}': registry 'samplers': "
    with pytest.raises(ConfigError, match=where + ".*" + told):
        spec.check_component_names()
    with pytest.raises(ConfigError, match=where):
        run_study(spec, quiet=True)
    assert not (tmp_path / "study").exists()  # refused before any database, folder or run


def test_registered_names_pass() -> None:
    grid = {"pretrain.pretext.task": ["context_prediction", "context_restoration"]}
    load_spec(_spec(grid=grid, finetune={"loss": {"name": "dice"}})).check_component_names()


@pytest.mark.parametrize(
    ("study", "unlabelled", "fractions", "says"),
    [
        ("clinical", [{"dataset": "mni152"}], None, True),
        ("clinical", [], None, False),
        ("clinical", [{"dataset": "ct"}], None, False),  # another dataset's sources are not known to cross
        ("data_scaling", [{"dataset": "mni152"}], [0.0, 0.5], True),
        ("data_scaling", [{"dataset": "mni152"}], [0.0], False),  # the superset is never added
    ],
)
def test_a_spec_knows_when_pretraining_crosses_the_mni152_test_slices(
    study: str, unlabelled: list[dict[str, str]], fractions: list[float] | None, says: bool
) -> None:
    # The template's coronal and sagittal slices cross every axial test slice: an SSL arm
    # pretrained on them has seen the test anatomy, its supervised baseline has not.
    extra = {"unlabelled_fractions": fractions} if fractions is not None else {}
    spec = StudySpec(study=study, pretrain={"data": {"dataset": "mni152", "unlabelled": unlabelled}}, **extra)
    said = spec.pretraining_sees_test_anatomy()
    assert (said is not None) == says
    if said is not None:
        assert "test anatomy" in said and "not held out" in said


def test_fraction_seeds_of_a_fraction_not_studied_are_refused_naming_the_fractions_studied() -> None:
    with pytest.raises(
        ValueError,
        match=r"fraction_seeds names label fractions \[0\.25\] that are not in "
        r"label_fractions \[1\.0, 0\.5\]",
    ):
        StudySpec(study="clinical", label_fractions=[0.5, 1.0], fraction_seeds={0.25: [0, 1]})


_SMALL_IMAGES = {"data": {"image_size": [48, 48]}}  # the base patch_size (32) does not fit these


@pytest.mark.parametrize(
    ("changes", "trained"),
    [
        # The review's case: every run sets its own patch size, so the base 32 is never trained with.
        ({"pretrain": _SMALL_IMAGES, "grid": {"pretrain.pretext.patch_size": [4, 8]}}, {(48, 4), (48, 8)}),
        # Every run replaces the small base image size: 32 is checked against 96x96 alone.
        (
            {"pretrain": _SMALL_IMAGES, "grid": {"pretrain.data.image_size": [[96, 96]]}},
            {(96, 32)},
        ),
        (
            {
                "pretrain": _SMALL_IMAGES,
                "grid": {"pretrain.data.image_size": [[96, 96]], "pretrain.pretext.patch_size": [32]},
            },
            {(96, 32)},
        ),
    ],
)
def test_a_base_value_every_run_replaces_is_not_checked_against_the_other_fields(
    changes: dict[str, Any], trained: set[tuple[int, int]]
) -> None:
    spec = load_spec(_spec(**changes))
    assert spec.pretrain.pretext.patch_size == 32  # the base is kept as given
    runs = {
        (j.config.data.image_size[0], j.config.pretext.patch_size) for j in expand_study(spec).pretrain_jobs()
    }
    assert runs == trained
    # Workers validate the spec again from its JSON: the same spec, the same runs.
    again = StudySpec.model_validate_json(spec.model_dump_json())
    assert [j.id for j in expand_study(again)] == [j.id for j in expand_study(spec)]


@pytest.mark.parametrize(
    "finetune",
    [
        # Fine-tuning's min_delta must be a number; every run gives its own.
        {"early_stopping": {"min_delta": None}},
        # One-run schedules never read second_lr (the plan sets it to null there).
        {"transfer": {"second_lr": 1e-9}},
    ],
)
def test_a_base_finetune_value_no_run_trains_with_is_not_checked(finetune: dict[str, Any]) -> None:
    grid = {
        "finetune.early_stopping.min_delta": [1e-3, 1e-2],
        "finetune.transfer.schedule": ["immediate", "frozen"],
    }
    spec = load_spec(_spec(study="transfer_design", finetune=finetune, grid=grid))
    for job in expand_study(spec).finetune_jobs():
        assert job.config.early_stopping.min_delta in (1e-3, 1e-2)
        assert job.config.transfer.second_lr is None


@pytest.mark.parametrize(
    ("changes", "run", "problem"),
    [
        (
            {"pretrain": _SMALL_IMAGES, "grid": {"pretrain.pretext.patch_size": [4, 32]}},
            "the pretraining run with grid values pretrain.pretext.patch_size=32 is not valid",
            "does not fit data.image_size=(48, 48)",
        ),
        # The run at 48x48 keeps the base patch size; the one at 96x96 is fine.
        (
            {"pretrain": _SMALL_IMAGES, "grid": {"pretrain.data.image_size": [[96, 96], [48, 48]]}},
            "the pretraining run with grid values pretrain.data.image_size=[48, 48] is not valid",
            "pretext.patch_size=32 with pretext.coverage=0.25",
        ),
        # Every combination is checked, not each value against the base alone.
        (
            {
                "pretrain": {"data": {"image_size": [96, 96]}},
                "grid": {
                    "pretrain.data.image_size": [[96, 96], [48, 48]],
                    "pretrain.pretext.patch_size": [4, 32],
                },
            },
            "run with grid values pretrain.data.image_size=[48, 48], pretrain.pretext.patch_size=32 is not",
            "does not fit data.image_size=(48, 48)",
        ),
        (
            {"pretrain": _SMALL_IMAGES, "grid": {"pretrain.pretext.task": ["context_prediction"]}},
            "the pretraining run with grid values pretrain.pretext.task='context_prediction' is not valid",
            "pretext.patch_size=32",
        ),
        (
            {"pretrain": _SMALL_IMAGES},
            "the pretraining run with no pretrain.* grid value (the base pretrain config as given)",
            "pretext.patch_size=32",
        ),
        # Only the two-run schedule reads the base second_lr, which is below the rate's floor.
        (
            {
                "study": "transfer_design",
                "finetune": {"transfer": {"second_lr": 1e-9}},
                "grid": {"finetune.transfer.schedule": ["immediate", "immediate_twice"]},
            },
            "the SSL fine-tuning run with grid values finetune.transfer.schedule='immediate_twice' is not",
            "transfer.second_lr (1e-09) must not be below optim.min_lr (1e-08)",
        ),
        (
            {"finetune": {"early_stopping": {"min_delta": None}}, "grid": {"finetune.optim.lr": [1e-3]}},
            "the SSL fine-tuning run with grid values finetune.optim.lr=0.001 is not valid",
            "early_stopping.min_delta: null",
        ),
    ],
)
def test_a_run_that_keeps_a_bad_base_value_is_refused_naming_its_grid_values(
    changes: dict[str, Any], run: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec(_spec(**changes))
    message = str(info.value)
    assert run in message and problem in message
    assert "patch_size=4 " not in message and "'immediate' " not in message  # the valid runs are not blamed


@pytest.mark.parametrize(
    ("pretrain", "message"),
    [
        (
            {"pretext": {"patch_size": "large"}},
            "pretrain.pretext.patch_size: Input should be a valid integer, unable to parse string as an "
            "integer (found 'large')",
        ),
        ({"pretext": {"patch_size": -32}}, "pretrain.pretext.patch_size: Input should be greater than 0"),
        ({"data": {"image_size": [48, 0]}}, "pretrain.data.image_size: Value error, image_size must be two"),
    ],
)
def test_a_base_field_is_still_validated_on_its_own_where_every_run_replaces_it(
    pretrain: dict[str, Any], message: str
) -> None:
    # Types and ranges are the input's own validity, whatever the grid does with the value.
    grid = {"pretrain.pretext.patch_size": [4, 8], "pretrain.data.image_size": [[48, 48]]}
    with pytest.raises(ConfigError) as info:
        load_spec(_spec(pretrain=pretrain, grid=grid))
    assert message.replace("Value error, ", "") in str(info.value)


class _SharesTestAnatomy(SliceDataset):
    """A plugin dataset whose unlabelled scans are those of its test subjects."""

    @classmethod
    def unlabelled_holds_test_anatomy(cls, **params: Any) -> str:
        return "the test subjects' unlabelled scans"


def _plugin_factory(**params: Any) -> SliceDataset:
    """A plugin written before the hook: a factory function, which declares nothing."""
    return _SharesTestAnatomy()


@pytest.fixture
def anatomy_plugins() -> Iterator[None]:
    DATASETS.register("knee_plugin")(_SharesTestAnatomy)
    DATASETS.register("old_plugin")(_plugin_factory)
    try:
        yield
    finally:
        DATASETS.unregister("knee_plugin")
        DATASETS.unregister("old_plugin")


@pytest.mark.usefixtures("anatomy_plugins")
@pytest.mark.parametrize(
    ("dataset", "holds"),
    [
        ("knee_plugin", "the test subjects' unlabelled scans"),
        ("old_plugin", None),
        (
            "mni152",
            "the mni152 template's coronal and sagittal slices, which cross every axial test slice of "
            "the same template",
        ),
    ],
)
def test_the_spec_asks_the_dataset_whether_its_unlabelled_split_holds_the_test_anatomy(
    dataset: str, holds: str | None
) -> None:
    data = {"dataset": dataset, "unlabelled": [{"dataset": dataset}]}
    spec = StudySpec(study="clinical", pretrain={"data": data}, finetune={"data": {"dataset": dataset}})
    said = spec.pretraining_sees_test_anatomy()
    if holds is None:
        assert said is None
    else:
        assert said == (
            f"pretrain.data.unlabelled holds {holds}: the SSL runs pretrained on them have seen the test "
            "anatomy and the supervised baselines have not, so their comparison is not held out. Pretrain "
            "on unlabelled scans of other subjects (or leave unlabelled out, as the demo does) for a "
            "held-out comparison"
        )
    # Another dataset's unlabelled split says nothing of this one's test split.
    other = StudySpec(study="clinical", pretrain={"data": data}, finetune={"data": {"dataset": "synthetic"}})
    assert other.pretraining_sees_test_anatomy() is None


@pytest.mark.usefixtures("anatomy_plugins")
def test_a_run_of_a_plugin_dataset_that_holds_the_test_anatomy_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaintssl.studies import runner

    def stopped(job: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "execute_job", stopped)
    data = {"dataset": "knee_plugin", "unlabelled": [{"dataset": "knee_plugin"}]}
    spec = _spec(
        study="clinical",
        output=str(tmp_path / "study"),
        label_fractions=[0.5],
        pretrain={"data": data},
        finetune={"data": {"dataset": "knee_plugin"}},
    )
    told = "holds the test subjects' unlabelled scans: the SSL runs"
    with pytest.warns(UserWarning, match=told), pytest.raises(KeyboardInterrupt):
        run_study(spec, quiet=True)


# -- settings no run uses ---------------------------------------------------------------------------


def _config_warnings(spec: dict[str, Any]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_spec(spec)
    return [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]


def test_a_base_setting_that_no_run_uses_is_told_once_with_its_spec_path() -> None:
    # The 'paper' recipe steps its rate down; a warm-up set beside it is never used by any run.
    said = _config_warnings(_spec(pretrain={"optim": {"recipe": "paper", "warmup_fraction": 0.1}}))
    assert said == [
        "pretrain.optim.warmup_fraction=0.1 has no effect: optim.schedule is 'step_decay' (the 'paper' "
        "recipe's), which does not warm up; it applies to 'warmup_cosine' (in every pretrain run)"
    ]


@pytest.mark.parametrize(
    "spec",
    [
        # Unused under the base's own schedule, used under the grid's other schedule.
        _spec(
            pretrain={"optim": {"recipe": "paper", "warmup_fraction": 0.1}},
            grid={"pretrain.optim.schedule": ["step_decay", "warmup_cosine"]},
        ),
        _spec(
            study="transfer_design",
            finetune={"transfer": {"schedule": "immediate", "second_lr": 1e-4}},
            grid={"finetune.transfer.schedule": ["immediate", "freeze_then_unfreeze"]},
        ),
        # The grid's recipe, in every run, gives the base value its use.
        _spec(
            pretrain={"optim": {"recipe": "paper", "warmup_fraction": 0.1}},
            grid={"pretrain.optim.recipe": ["budget"]},
        ),
    ],
    ids=["used-by-a-grid-schedule", "second-run-in-some-runs", "used-in-every-run"],
)
def test_a_base_setting_some_run_uses_or_none_keeps_is_not_warned_about(spec: dict[str, Any]) -> None:
    assert _config_warnings(spec) == []


def test_a_spec_read_under_the_quiet_switch_judges_its_runs_silently() -> None:
    spec = _spec(pretrain={"optim": {"recipe": "paper", "warmup_fraction": 0.1}})
    assert len(_config_warnings(spec)) == 1  # the setting no run uses, as above
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet_unused_settings():
            assert load_spec(spec).pretrain.optim.warmup_fraction == 0.1


def test_a_worker_reads_its_job_without_warning_again() -> None:
    from inpaintssl.studies.worker import Task

    with pytest.warns(ConfigWarning):
        spec = load_spec(_spec(pretrain={"optim": {"recipe": "paper", "warmup_fraction": 0.1}}))
    job = expand_study(spec).pretrain_jobs()[0]
    task = Task.from_job(job)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert task.job().config == job.config


@pytest.mark.parametrize(
    ("grid", "finetune", "message"),
    [
        # The budget recipe's rate is 0.01 (docs/training.rst): null leaves it to the recipe.
        (
            {"finetune.optim.lr": [None, 0.01, 0.001]},
            {},
            "grid key 'finetune.optim.lr' holds [null, 0.01, 0.001]: null and 0.01 are one run "
            "(0.01 is what finetune.optim.recipe 'budget' fills in for null); expected values that train "
            "differently",
        ),
        (
            {"pretrain.pretext.patch_size": ["4", 4]},
            {},
            "grid key 'pretrain.pretext.patch_size' holds ['4', 4]: '4' and 4 are one run (both read as 4)",
        ),
        (
            {"pretrain.optim.lr": [0.01, None]},
            {},
            "0.01 and null are one run (0.01 is what pretrain.optim.recipe 'budget' fills in for null)",
        ),
        # The paper recipe's rate is 1e-3; under the budget recipe the two values are two runs.
        (
            {"finetune.optim.recipe": ["budget", "paper"], "finetune.optim.lr": [None, 0.001]},
            {},
            "null and 0.001 are one run (0.001 is what finetune.optim.recipe 'paper' fills in for null)",
        ),
        (
            {"finetune.loss.name": ["dice", None]},
            {"optim": {"recipe": "paper"}},
            "'dice' and null are one run",
        ),
        # SSL runs drop transfer.second_lr under a one-run schedule: with no two-run schedule in
        # the grid its values were one run, silently (a grid that mixes schedules is what it is for).
        (
            {"finetune.transfer.second_lr": [0.001, 0.0001]},
            {"transfer": {"schedule": "immediate"}},
            "grid key 'finetune.transfer.second_lr' holds [0.001, 0.0001], but finetune.transfer.schedule "
            "('immediate') trains once and never reads it: the values are one run; expected a two-run "
            "schedule ('immediate_twice' or 'freeze_then_unfreeze') in the grid",
        ),
        (
            {
                "finetune.transfer.second_lr": [0.001, 0.0001],
                "finetune.transfer.schedule": ["immediate", "frozen"],
            },
            {},
            "but every finetune.transfer.schedule of the grid ('immediate', 'frozen') trains once",
        ),
        # Alike under one value of another key only: that value is named.
        (
            {"pretrain.pretext.patch_size": [4, "4.0"], "pretrain.pretext.task": ["context_restoration"]},
            {},
            "4 and '4.0' are one run (both read as 4)",
        ),
    ],
)
def test_grid_values_that_one_run_trains_with_are_refused_naming_both(
    grid: dict[str, list[Any]], finetune: dict[str, Any], message: str
) -> None:
    # Was: only values equal as written were refused; these resolved to one config, so one run id,
    # and the plan silently kept one of the two grid points (3 lr values, 2 SSL runs).
    with pytest.raises(ConfigError) as refused:
        load_spec(_spec(grid=grid, finetune=finetune, label_fractions=[0.5]))
    assert message in str(refused.value)
    assert "\n  grid: grid key" in str(refused.value)  # blamed on the grid, as a repeat as written is


def test_grid_values_alike_under_some_values_of_another_key_name_them() -> None:
    # null and 0.001 train alike under the paper recipe (rate 1e-3) alone: the point is named.
    grid = {"finetune.optim": [{"recipe": "budget"}, {"recipe": "paper"}], "finetune.optim.lr": [None, 0.001]}
    with pytest.raises(ConfigError) as refused:
        load_spec(_spec(grid=grid, label_fractions=[0.5]))
    assert (
        "null and 0.001 are one run (0.001 is what finetune.optim.recipe 'paper' fills in for null with "
        "finetune.optim={'recipe': 'paper'})"
    ) in str(refused.value)
    # Alike under every value of the other keys: none is named.
    with pytest.raises(ConfigError, match=re.escape("null and 0.001 are one run (0.001 is what")) as refused:
        load_spec(_spec(grid={**grid, "finetune.optim": [{"recipe": "paper"}]}, label_fractions=[0.5]))
    assert "fills in for null); expected values that train differently" in str(refused.value)


@pytest.mark.parametrize(
    ("grid", "finetune", "runs"),
    [
        # Each value trains differently: one SSL run per value (one pretraining, label fraction 0.5).
        ({"finetune.optim.lr": [None, 0.001]}, {}, 2),
        ({"finetune.optim.lr": [None, 0.01]}, {"optim": {"recipe": "paper"}}, 2),  # paper's rate: 1e-3
        ({"pretrain.pretext.patch_size": ["4", 8]}, {}, 2),
    ],
)
def test_grid_values_that_train_differently_are_one_run_each(
    grid: dict[str, list[Any]], finetune: dict[str, Any], runs: int
) -> None:
    spec = load_spec(_spec(grid=grid, finetune=finetune, label_fractions=[0.5], baseline=False))
    assert len([j for j in expand_study(spec) if j.labels["arm"] == "ssl"]) == runs
