"""Typed configuration: paper defaults, strict fields, YAML round-trip, dotted overrides."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from inpaintssl.config import (
    RECIPES,
    ConfigError,
    FinetuneConfig,
    OptimConfig,
    PretrainConfig,
    apply_overrides,
    config_to_yaml,
    load_config,
    read_config_text,
)


def test_paper_recipe_is_the_papers_settings() -> None:
    pre = PretrainConfig(optim=OptimConfig(recipe="paper"))
    fine = FinetuneConfig(optim=OptimConfig(recipe="paper"))
    assert pre.optim.effective_betas == (0.99, 0.995) and pre.optim.eps == 1e-8
    assert pre.optim.batch_size == 9 and pre.optim.effective_lr == 1e-3
    assert pre.optim.effective_schedule == "step_decay"
    assert (pre.optim.lr_decay, pre.optim.lr_decay_every, pre.optim.min_lr) == (0.9, 2, 1e-8)
    assert (fine.loss_name, fine.loss_params) == ("dice", {})
    # None: the paper's 50 per 512x512 slice, scaled to the slice area when the run starts.
    assert (pre.early_stopping.min_delta, pre.early_stopping.patience) == (None, 4)
    assert (fine.early_stopping.min_delta, fine.early_stopping.patience) == (1e-3, 10)
    assert (pre.pretext.task, pre.pretext.patch_size, pre.pretext.sampler) == (
        "context_restoration",
        32,
        "poisson_disc",
    )
    assert pre.pretext.coverage == 0.25
    assert fine.transfer.weights == "encoder" and fine.transfer.schedule == "immediate"


def test_default_recipe_is_budget_and_explicit_fields_win() -> None:
    optim = OptimConfig()
    assert optim.recipe == "budget" and optim.effective_schedule == "warmup_cosine"
    assert optim.effective_betas == (0.9, 0.999)
    assert optim.effective_lr == RECIPES["budget"].lr
    mixed = OptimConfig(recipe="paper", lr=5e-4, schedule="warmup_cosine")
    assert (mixed.effective_lr, mixed.effective_schedule, mixed.effective_betas) == (
        5e-4,
        "warmup_cosine",
        (0.99, 0.995),
    )


def test_recipe_switch_by_override_changes_every_recipe_field(tmp_path: Path) -> None:
    # The recipe's values are not written into the fields, so switching recipes later still works.
    budget = FinetuneConfig()
    paper = apply_overrides(budget, ["optim.recipe=paper"])
    assert paper.optim.effective_lr == 1e-3 and paper.optim.effective_schedule == "step_decay"
    assert paper.loss_name == "dice"
    (tmp_path / "paper.yaml").write_text(config_to_yaml(paper))
    again = load_config(tmp_path / "paper.yaml", FinetuneConfig)
    assert again == paper and again.optim.lr is None


def test_min_lr_above_lr_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"optim.min_lr \(0.1\) must not exceed the learning rate \(0.001\)"
    ):
        load_config({"optim": {"lr": 1e-3, "min_lr": 0.1}}, PretrainConfig)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"optim": {"learning_rate": 0.1}}, "optim.learning_rate"),
        ({"optm": {"lr": 0.1}}, "optm"),
        ({"data": {"image_sise": [64, 64]}}, "data.image_sise"),
        ({"pretext": {"patch_size": "big"}}, "pretext.patch_size"),
        ({"data": {"unlabelled": [{"dataset": "x", "fractoin": 0.5}]}}, "data.unlabelled.0.fractoin"),
    ],
)
def test_unknown_or_mistyped_field_names_its_path(data: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data, PretrainConfig)
    assert path in str(info.value)


@pytest.mark.parametrize("lr", [0.0, -1e-3])
def test_non_positive_learning_rate_is_refused(lr: float) -> None:
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_config({"optim": {"lr": lr}}, FinetuneConfig)


def test_freeze_then_unfreeze_needs_a_pretrained_model() -> None:
    with pytest.raises(ConfigError, match="freeze_then_unfreeze"):
        load_config({"transfer": {"schedule": "freeze_then_unfreeze"}}, FinetuneConfig)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    cfg = apply_overrides(
        FinetuneConfig(),
        [
            "optim.lr=1e-4",
            "data.image_size=[96, 112]",
            "transfer.pretrained=runs/pre",
            "loss.params={activation: softmax}",
        ],
    )
    path = tmp_path / f"cfg{suffix}"
    data = yaml.safe_load(config_to_yaml(cfg))
    path.write_text(json.dumps(data) if suffix == ".json" else config_to_yaml(cfg))
    assert load_config(path, FinetuneConfig) == cfg


@pytest.mark.parametrize("text", ["1e5", "7E-3", "+2e1", "1_0e2"])
def test_a_string_that_reads_as_a_float_in_a_config_file_round_trips_as_a_string(
    tmp_path: Path, text: str
) -> None:
    # Config files read 1e5 as a float (YAML 1.1 would not); PyYAML's safe dumper wrote the string
    # "1e5" bare, so a run's config.yaml gave back 100000.0 and a folder named "1e5" failed to resume.
    cfg = FinetuneConfig.model_validate({"data": {"params": {"case": text}}, "run": {"output_dir": text}})
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    back = load_config(path, FinetuneConfig)
    assert back.data.params == {"case": text} and back.run.output_dir == Path(text)
    assert back == cfg


# Text the loader's resolvers could take for something else: numbers in every base and spelling,
# booleans, nulls, dates, times, merge and value keys.
_RESOLVER_SHAPES = st.one_of(
    st.from_regex(r"\A[-+]?(0[bx])?[0-9_a-fA-F.:eE+-]{0,8}\Z"),
    st.from_regex(r"\A[-+]?0[0-9_]{1,4}\Z"),  # zero-padded: decimal to the loader, not octal
    st.sampled_from(["yes", "No", "ON", "off", "~", "null", "Null", "<<", "=", ".inf", "-.Inf", ".NaN"]),
)


@given(key=st.one_of(st.text(), _RESOLVER_SHAPES), text=st.one_of(st.text(), _RESOLVER_SHAPES))
@example(key="case", text="09")
@example(key="08", text="-09")
@example(key="+09", text="0_8")
def test_any_text_round_trips_through_config_yaml_as_text(key: str, text: str) -> None:
    # The dumper wrote "09" bare (YAML 1.1 has no such int), which the loader reads as the int 9:
    # a run folder named 09 was refused on --resume.
    cfg = FinetuneConfig.model_validate({"data": {"params": {key: text}}})
    back = load_config(read_config_text(config_to_yaml(cfg), source="config.yaml"), FinetuneConfig)
    assert back.data.params == {key: text}


@pytest.mark.parametrize("name", ["08", "09", "-09", "+09", "0_8", "00"])
def test_a_run_folder_named_like_a_decimal_number_round_trips(name: str) -> None:
    cfg = PretrainConfig.model_validate({"run": {"output_dir": name}})
    back = load_config(read_config_text(config_to_yaml(cfg), source="config.yaml"), PretrainConfig)
    assert back.run.output_dir == Path(name)


@given(
    lr=st.floats(min_value=1e-8, max_value=1.0, allow_nan=False),
    patch=st.integers(min_value=1, max_value=256),
    scale=st.tuples(st.floats(4.0, 16.0), st.floats(4.0, 16.0)),
    task=st.sampled_from(["context_prediction", "context_restoration"]),
)
def test_yaml_round_trips_to_the_same_model(
    lr: float, patch: int, scale: tuple[float, float], task: str
) -> None:
    # Sides of at least 4 patches: the patches fit the image at coverage 1/4 (checked on validation).
    size = (int(patch * scale[0]), int(patch * scale[1]))
    cfg = PretrainConfig.model_validate(
        {"optim": {"lr": lr}, "pretext": {"patch_size": patch, "task": task}, "data": {"image_size": size}}
    )
    assert load_config(yaml.safe_load(config_to_yaml(cfg)), PretrainConfig) == cfg


def test_overrides_parse_yaml_values_and_validate() -> None:
    cfg = apply_overrides(
        PretrainConfig(), ["optim.max_epochs=3", "run.deterministic=true", "data.image_size=null"]
    )
    assert cfg.optim.max_epochs == 3 and cfg.run.deterministic is True and cfg.data.image_size is None
    with pytest.raises(ConfigError, match="must look like"):
        apply_overrides(cfg, ["optim.lr"])
    with pytest.raises(ConfigError, match=r"optim\.batch_size"):
        apply_overrides(cfg, ["optim.batch_size=0"])
    with pytest.raises(ConfigError, match=r"optim\.nope"):
        apply_overrides(cfg, ["optim.nope=1"])


@pytest.mark.parametrize(
    "text",
    [
        *("1e-5", "1E-5", "-2.5e3", "+1e+2", "3.0e-4", "7e0", ".5e-1", "1_000e-3"),
        # ".5" was a float but "-.5" text: a factory's free-form params got the string "-.5".
        *("-.5", "+.5", "-.5e3", "+.25E-1", "-.1_5"),
    ],
)
def test_an_exponent_without_a_dot_or_a_signed_leading_dot_is_a_float_in_files_and_overrides(
    text: str, tmp_path: Path
) -> None:
    # YAML 1.1 read 1e-5 as text: typed fields converted it, a loss's free-form params did not.
    expected = float(text.replace("_", ""))
    by_override = apply_overrides(FinetuneConfig(), [f"loss.params={{eps: {text}}}"])
    (tmp_path / "c.yaml").write_text(f"loss: {{params: {{eps: {text}}}}}\n")
    by_file = load_config(tmp_path / "c.yaml", FinetuneConfig)
    for config in (by_override, by_file):
        (eps,) = config.loss.params.values()
        assert isinstance(eps, float) and eps == expected
    # The text itself still round trips as text (the dumper quotes what the loader reads as a number).
    cfg = FinetuneConfig.model_validate({"data": {"params": {"tag": text}}})
    assert load_config(read_config_text(config_to_yaml(cfg), source="c.yaml"), FinetuneConfig) == cfg


@pytest.mark.parametrize("text", ["1e", "e5", "1e-5x", "1.2.3", "1e-5e5", "0x1p3"])
def test_what_only_resembles_an_exponent_stays_text(text: str) -> None:
    assert apply_overrides(FinetuneConfig(), [f"loss.params={{tag: {text}}}"]).loss.params == {"tag": text}


@pytest.mark.parametrize("text", ["1:30", "12:30:00", "-1:05", "190:20:30.15"])
def test_a_base_60_looking_value_is_text_in_files_and_overrides(text: str, tmp_path: Path) -> None:
    # YAML 1.1 read 1:30 as 90 and 12:30:00 as 45000 (base 60), which YAML 1.2 dropped.
    by_override = apply_overrides(FinetuneConfig(), [f"data.params={{at: {text}}}"])
    (tmp_path / "c.yaml").write_text(f"data: {{params: {{at: {text}}}}}\n")
    by_file = load_config(tmp_path / "c.yaml", FinetuneConfig)
    assert by_override.data.params == by_file.data.params == {"at": text}


@pytest.mark.parametrize(
    ("text", "expected"), [("42", 42), ("-7", -7), ("1_000", 1000), ("0x1F", 31), ("0", 0)]
)
def test_integers_still_read_as_integers(text: str, expected: int) -> None:
    (value,) = apply_overrides(FinetuneConfig(), [f"data.params={{n: {text}}}"]).data.params.values()
    assert type(value) is int and value == expected


@given(value=st.integers(-(10**9), 10**9), zeros=st.integers(1, 4))
def test_a_zero_padded_integer_is_its_decimal_value_not_octal(value: int, zeros: int) -> None:
    # YAML 1.1 read 010 as octal 8 (YAML 1.2 dropped it): seeds 008 and 010 both trained seed 8.
    text = ("-" if value < 0 else "") + "0" * zeros + str(abs(value))
    (read,) = apply_overrides(FinetuneConfig(), [f"data.params={{n: {text}}}"]).data.params.values()
    assert type(read) is int and read == value
    assert apply_overrides(FinetuneConfig(), [f"run.seed={'0' * zeros}{abs(value)}"]).run.seed == abs(value)


def test_a_zero_padded_integer_in_a_file_is_decimal(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("optim: {max_epochs: 010}\nrun: {seed: 0011}\n")
    loaded = load_config(tmp_path / "c.yaml", FinetuneConfig)
    assert (loaded.optim.max_epochs, loaded.run.seed) == (10, 11)


def test_a_date_or_a_hash_in_a_value_is_text(tmp_path: Path) -> None:
    # A run folder named by a date was refused as "found datetime.date(2024, 1, 5)"; one named
    # "exp #3" trained into "exp" (YAML took " #3" for a comment).
    for value, expected in (
        ("2024-01-05", "2024-01-05"),
        ("runs/exp #3", "runs/exp #3"),
        ("'runs/a #b'", "runs/a #b"),
        # A leading "#" made the whole value a comment: null, refused as "found None".
        ("#3", "#3"),
        ("2024-01-05T10:00:00", "2024-01-05T10:00:00"),
    ):
        assert apply_overrides(PretrainConfig(), [f"run.output_dir={value}"]).run.output_dir == Path(expected)
    (tmp_path / "c.yaml").write_text("run: {output_dir: 2024-01-05}\n")
    assert load_config(tmp_path / "c.yaml", PretrainConfig).run.output_dir == Path("2024-01-05")
    # In free-form params the null was taken silently.
    params = apply_overrides(
        PretrainConfig(), ["data.params.colour=#ff0000", "data.params.tag= #3"]
    ).data.params
    assert params == {"colour": "#ff0000", "tag": "#3"}


def test_a_config_file_read_from_a_pipe_is_read(tmp_path: Path) -> None:
    # `inpaintssl config show pretrain <(...)` said "config file /dev/fd/63 does not exist":
    # a pipe is no regular file.
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)
    writer = threading.Thread(target=pipe.write_text, args=("optim: {lr: 0.1}\n",), daemon=True)
    writer.start()
    try:
        assert load_config(pipe, PretrainConfig).optim.lr == 0.1
    finally:
        writer.join(timeout=10)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", PretrainConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(bad, PretrainConfig)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar, PretrainConfig)


def test_json_schema_exports() -> None:
    schema = FinetuneConfig.model_json_schema()
    assert {"data", "model", "loss", "optim", "early_stopping", "transfer", "run"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False


def test_a_config_path_that_is_a_folder_or_not_text_is_named(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"config file .*dir\.yaml is a folder; expected a YAML or JSON"):
        load_config(tmp_path / "dir.yaml", PretrainConfig)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ConfigError, match=r"config file .*bin\.yaml is not UTF-8 text"):
        load_config(tmp_path / "bin.yaml", PretrainConfig)


@pytest.mark.parametrize("seed", [-1, 2**32, 10**20])
def test_seeds_outside_what_the_generators_take_are_refused_by_name(seed: int) -> None:
    with pytest.raises(ConfigError, match=r"run\.seed: Input should be"):
        load_config({"run": {"seed": seed}}, PretrainConfig)
    with pytest.raises(ConfigError, match=r"data\.subset_seed: Input should be"):
        load_config({"data": {"subset_seed": seed}}, FinetuneConfig)


@pytest.mark.parametrize(
    ("field", "value"), [("optim.lr", ".inf"), ("optim.min_lr", ".nan"), ("data.label_fraction", ".nan")]
)
def test_infinite_or_nan_numbers_are_refused_at_validation(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"{re.escape(field)}: Input should be a finite number"):
        load_config({}, FinetuneConfig, overrides=[f"{field}={value}"])


@pytest.mark.parametrize("item", ["optim..lr=1", ".optim.lr=1", "optim.lr.=1", "=1"])
def test_an_override_with_an_empty_name_is_refused(item: str) -> None:
    with pytest.raises(ConfigError, match="an empty name in the field path"):
        load_config({}, PretrainConfig, overrides=[item])


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["optim.lr=1e-3", "optim.lr=1e-4"], "'optim.lr=1e-4': optim.lr is already set by 'optim.lr=1e-3'"),
        (
            ["optim={lr: 1}", "optim.max_epochs=3", "optim={lr: 2}"],
            "'optim={lr: 2}': optim.lr is already set by 'optim={lr: 1}'",
        ),
        # Through a mapping: the later value won silently.
        (
            ["optim.lr=1e-3", "optim={lr: 1e-4}"],
            "'optim={lr: 1e-4}': optim.lr is already set by 'optim.lr=1e-3'",
        ),
        (
            ["data.params={root: /d}", "data.params.root=/x"],
            "'data.params.root=/x': data.params.root is already set by 'data.params={root: /d}'",
        ),
        (
            ["data={params: {a: 1}}", "data.params.a=2"],
            "'data.params.a=2': data.params.a is already set by 'data={params: {a: 1}}'",
        ),
    ],
)
def test_a_field_path_given_twice_is_refused_naming_both(overrides: list[str], refused: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(refused) + "; give each field once"):
        load_config({}, PretrainConfig, overrides=overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.params.num_images=12", "data.params={num_val: 2}"],
        ["data.params.num_images=12", "data={params: {num_val: 2}}"],
        ["data.params.num_images=12", "data.params={}"],
    ],
)
def test_a_mapping_that_drops_a_key_set_before_it_is_refused(overrides: list[str]) -> None:
    # A free-form params mapping replaces the whole field: num_images vanished from the config.
    with pytest.raises(
        ConfigError,
        match=rf"override {re.escape(repr(overrides[1]))} replaces data\.params, whose "
        r"data\.params\.num_images is set by 'data\.params\.num_images=12'",
    ):
        load_config({}, PretrainConfig, overrides=overrides)


def test_sections_merged_field_by_field_take_each_field_once() -> None:
    config = load_config({}, PretrainConfig, overrides=["optim={lr: 1e-4}", "optim={max_epochs: 3}"])
    assert (config.optim.lr, config.optim.max_epochs) == (1e-4, 3)


def test_overrides_apply_in_order_so_a_replaced_params_field_can_take_a_key_after() -> None:
    config = load_config(
        {}, PretrainConfig, overrides=["data.params={num_images: 8}", "data.params.size=[16, 16]"]
    )
    assert config.data.params == {"num_images": 8, "size": [16, 16]}


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_size", 2**63), ("max_epochs", 1e30), ("max_epochs", 100_001), ("steps_per_epoch", 10**12)],
)
def test_absurd_budgets_are_refused_naming_the_field(field: str, value: float) -> None:
    # A batch of 2**63 failed deep in the loader; 1e30 epochs warmed up for ever at lr ~ 1e-31.
    # 1e30 is refused before the bound: pydantic will not make an int that large.
    refused = rf"optim\.{field}: .*(less than or equal to|exceeded maximum size)"
    with pytest.raises(ConfigError, match=refused):
        load_config({"optim": {field: value}}, PretrainConfig)


def test_a_yaml_syntax_error_names_its_line_and_a_json_bom_is_read(tmp_path: Path) -> None:
    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("optim:\n  lr: 0.1\n\tbatch_size: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cannot start any token \(line 3, column 1\)"):
        load_config(tabs, PretrainConfig)
    bom = tmp_path / "windows.json"
    bom.write_text('\ufeff{"optim": {"batch_size": 4}}', encoding="utf-8")
    assert load_config(bom, PretrainConfig).optim.batch_size == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # A boolean is an int in Python: a half-edited `max_epochs: yes # TODO` trained one epoch.
        (["optim.batch_size=true"], r"batch_size=true is a boolean; expected a number"),
        (["optim.max_epochs=yes"], r"max_epochs=true is a boolean; expected a number"),
        (["optim.lr=false"], r"lr=false is a boolean; expected a number"),
        # ...and so is an element: `image_size: [yes, 64]` was (1, 64).
        (["data.image_size=[yes, 64]"], r"image_size\[0\]=true is a boolean; expected a number"),
        (["optim.betas=[0.9, no]"], r"betas\[1\]=false is a boolean; expected a number"),
        # An empty path is the working directory, where a run would replace the user's files.
        (["run.output_dir="], r"output_dir: the path is empty"),
        (["transfer.pretrained=''"], r"pretrained: the path is empty"),
        (["run.output_dir=$NO_SUCH_VARIABLE_HERE/pre"], r"names the environment variable\(s\) \$NO_SUCH"),
        (["model.params.out_channels=2"], r"out_channels: filled in from the data"),
        (["model.params={in_channels: 3, depth: 4}"], r"in_channels: filled in from the data"),
        # The schedules floor the rate at min_lr: the second phase would train at 1e-6, not 1e-9.
        (
            ["transfer.schedule=immediate_twice", "transfer.second_lr=1e-9", "optim.min_lr=1e-6"],
            r"transfer.second_lr \(1e-09\) must not be below optim.min_lr \(1e-06\)",
        ),
        # ...and the default second rate, lr / 10: a cosine climbed from 1e-4 to 5e-4 in the second
        # phase, step decay sat at 5e-4, five times the rate the user was told.
        (
            ["transfer.schedule=freeze_then_unfreeze", "optim.lr=1e-3", "optim.min_lr=5e-4"],
            r"transfer.second_lr, by default optim.lr / 10 \(0\.0001\), must not be below optim.min_lr "
            r"\(0\.0005\)",
        ),
    ],
)
def test_values_that_would_silently_mean_something_else_are_refused(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({}, FinetuneConfig, overrides=overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ["transfer.schedule=immediate"],  # one run: no second rate to floor
        ["transfer.schedule=immediate_twice", "transfer.second_lr=5e-4"],  # at the floor
    ],
)
def test_a_floor_above_lr_over_10_is_taken_where_no_second_run_falls_below_it(overrides: list[str]) -> None:
    config = load_config({}, FinetuneConfig, overrides=[*overrides, "optim.lr=1e-3", "optim.min_lr=5e-4"])
    assert config.optim.min_lr == 5e-4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.betas=[0.9]"], r"optim\.betas: betas must hold 2 numbers, got 1 \(found \[0\.9\]\)"),
        (["optim.betas=[]"], r"optim\.betas: betas must hold 2 numbers, got 0 \(found \[\]\)"),
        (["optim.betas=[0.9, 0.99, 0.5]"], r"optim\.betas: betas must hold 2 numbers, got 3"),
        (
            ["data.image_size=[64]"],
            r"data\.image_size: image_size must hold 2 numbers, got 1 \(found \[64\]\)",
        ),
    ],
)
def test_a_pair_of_the_wrong_length_names_the_field_the_count_and_the_value(
    overrides: list[str], message: str
) -> None:
    # pydantic's own message was "optim.betas.1: Field required": no count expected, no value found.
    with pytest.raises(ConfigError, match=message) as caught:
        load_config({}, FinetuneConfig, overrides=overrides)
    assert "Field required" not in str(caught.value)


def test_paths_expand_home_and_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRATCH", "/scratch/me")
    monkeypatch.setenv("HOME", "/home/me")
    config = load_config(
        {
            "run": {"output_dir": "$SCRATCH/pre"},
            "transfer": {"pretrained": "~/runs/p"},
            "data": {"cache_dir": "$SCRATCH/decompressed"},
        },
        FinetuneConfig,
    )
    assert config.run.output_dir == Path("/scratch/me/pre")
    assert config.transfer.pretrained == Path("/home/me/runs/p")
    assert config.data.cache_dir == Path("/scratch/me/decompressed")
    assert load_config({"run": {"output_dir": "${SCRATCH}/x"}}, FinetuneConfig).run.output_dir == Path(
        "/scratch/me/x"
    )


def test_every_path_a_config_or_its_file_names_expands_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaintssl.config import DataConfig, EvaluateConfig

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "pre.yaml").write_text("data: {splits_file: ~/splits.json}\n")
    config = load_config("~/pre.yaml", PretrainConfig)
    assert config.data.splits_file == tmp_path / "splits.json"
    assert DataConfig.model_validate({"splits_file": "~/s.json"}).splits_file == tmp_path / "s.json"
    evaluation = EvaluateConfig.model_validate({"checkpoint": "~/runs/ft", "output": "~/test.csv"})
    assert (evaluation.checkpoint, evaluation.output) == (tmp_path / "runs" / "ft", tmp_path / "test.csv")


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        ("DataConfig", {"splits_file": ""}, "splits_file"),
        ("EvaluateConfig", {"checkpoint": " "}, "checkpoint"),
        ("EvaluateConfig", {"checkpoint": "runs/ft", "output": ""}, "output"),
    ],
)
def test_an_empty_path_is_refused_naming_the_field(cls: str, data: dict[str, str], field: str) -> None:
    # Path("") is the working directory: a splits file "" failed later as a folder, not as a file.
    import inpaintssl.config

    with pytest.raises(ConfigError, match=rf"{field}: the path is empty"):
        load_config(data, getattr(inpaintssl.config, cls))


def test_overrides_given_as_one_string_are_refused_not_read_letter_by_letter() -> None:
    with pytest.raises(
        ConfigError,
        match=r"overrides: expected a list .* found the string 'optim.lr=1'; write \['optim.lr=1'\]",
    ):
        load_config({}, FinetuneConfig, overrides="optim.lr=1")  # type: ignore[arg-type]


def test_an_empty_config_file_is_refused_rather_than_read_as_every_default(tmp_path: Path) -> None:
    for text in ("", "# only a comment\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"empty.yaml is empty; expected a mapping of sections"):
            load_config(path, PretrainConfig)
    path.write_text("{}\n")
    assert load_config(path, PretrainConfig) == PretrainConfig()


def test_the_fields_that_say_how_data_are_read_are_data_fields() -> None:
    from inpaintssl.config import DATA_READING_FIELDS, DataConfig

    assert set(DATA_READING_FIELDS) <= set(DataConfig.model_fields)


def test_a_yaml_merge_key_merges_and_the_mappings_own_keys_win(tmp_path: Path) -> None:
    # SafeLoader's merge (YAML 1.1's <<) was refused: "could not determine a constructor".
    path = tmp_path / "pre.yaml"
    path.write_text("optim:\n  <<: {lr: 0.1, max_epochs: 3}\n  max_epochs: 5\n")
    assert load_config(path, PretrainConfig) == PretrainConfig.model_validate(
        {"optim": {"lr": 0.1, "max_epochs": 5}}
    )
    # Several bases: an earlier one wins over a later one (YAML's merge key), the own key over both.
    text = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b], z: 3, w: 3}\n"
    assert read_config_text(text, source="s")["c"] == {"x": 1, "y": 1, "z": 3, "w": 3}


@pytest.mark.parametrize(
    "text",
    [
        "a: &a {x: 1}\nb: &b {<<: *a, x: 2}\nc: {<<: *b, y: 3}\n",
        # b nested deeper than c: c is built first, and b is flattened for c's merge before it is
        # read itself, its merged and own x side by side then, which is no repeated key.
        "a: &a {x: 1}\nn: {m: {b: &b {<<: *a, x: 2}}}\nc: {<<: *b, y: 3}\n",
    ],
)
def test_a_base_that_merges_its_own_base_passes_on_its_own_keys(text: str) -> None:
    # b is {x: 2} (its own x over a's), so c, merging b, has x 2; PyYAML 6.0.4's SafeLoader gives
    # c a's x 1, keeping the first pair of each key it merges.
    loaded = read_config_text(text, source="s")
    b = loaded["b"] if "b" in loaded else loaded["n"]["m"]["b"]
    assert b == {"x": 2}
    assert loaded["c"] == {"x": 2, "y": 3}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "optim:\n  lr: 0.1\n  <<: {lr: 0.2}\n  lr: 0.3\n",
            r"duplicate key 'lr' at line 4 \(first given at line 2\)",
        ),
        (
            "a: &a {x: 1}\nb: &b {y: 1}\nc:\n  <<: *a\n  <<: *b\n",
            r"duplicate merge key '<<' at line 5 \(first given at line 4\); merge several mappings with one "
            r"key: '<<: \[\*first, \*second\]'",
        ),
        # Within a base too, merged or not.
        ("a: &a {x: 1, x: 2}\nc: {<<: *a}\n", r"duplicate key 'x' at line 1 \(first given at line 1\)"),
        # Endless otherwise (a RecursionError).
        ("a: &a {x: 1, <<: *a}\n", r"the mapping at line 1 merges itself"),
        # A key that is a list or a mapping: named as such, no TypeError.
        ("? [1]\n: 2\n", r"found unhashable key"),
    ],
)
def test_a_key_given_twice_in_one_mapping_is_still_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^c.yaml is not valid YAML: " + message):
        read_config_text(text, source="c.yaml")


def test_a_numpy_float_coverage_is_the_decimal_it_prints_as_and_keeps_the_run_id() -> None:
    import numpy as np

    from inpaintssl.studies.grid import run_id

    as_numpy = PretrainConfig.model_validate({"pretext": {"coverage": np.float32(0.07)}})
    as_python = PretrainConfig.model_validate({"pretext": {"coverage": 0.07}})
    assert str(np.float32(0.07)) == "0.07" and float(np.float32(0.07)) != 0.07
    assert as_numpy.pretext.coverage == 0.07
    assert run_id("pretrain", as_numpy) == run_id("pretrain", as_python)
