"""Relations between config fields and option values are checked when a config is validated.

Issue 16: a misspelt option says "did you mean ...", and pretext patches that cannot corrupt
``data.image_size`` images fail when the config is read, not at the first batch.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from inpaintssl.config import (
    ConfigError,
    EvaluateConfig,
    FinetuneConfig,
    PretrainConfig,
    load_config,
    quiet_unused_settings,
)
from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS
from sampler_requests import exact_target

ROOTS: dict[str, type[BaseModel]] = {
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
    "evaluate": EvaluateConfig,
}


def _string_choices(annotation: object) -> tuple[str, ...] | None:
    """Independent reading of an annotation: the strings of a Literal (with None), else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return args if all(isinstance(a, str) for a in args) else None
    members = [a for a in args if a is not type(None)]
    if len(members) == 1 and len(args) == 2:
        return _string_choices(members[0])
    return None


def _option_fields() -> list[tuple[str, str, tuple[str, ...]]]:
    """(stage, dotted path, choices) of every string-choice field reachable from a root config."""
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for stage, root in ROOTS.items():
        stack: list[tuple[str, type[BaseModel]]] = [("", root)]
        while stack:
            prefix, model = stack.pop()
            for name, field in model.model_fields.items():
                annotation = field.annotation
                # Python 3.10 takes tuple[int, int] for a class; issubclass then raises.
                if (
                    isinstance(annotation, type)
                    and not isinstance(annotation, types.GenericAlias)
                    and issubclass(annotation, BaseModel)
                ):
                    stack.append((f"{prefix}{name}.", annotation))
                    continue
                choices = _string_choices(annotation)
                if choices:
                    found.append((stage, f"{prefix}{name}", choices))
    return sorted(found)


OPTION_FIELDS = _option_fields()


def _nest(path: str, value: object) -> dict[str, object]:
    head, _, rest = path.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _base(stage: str) -> dict[str, object]:
    return {"checkpoint": "run"} if stage == "evaluate" else {}


def test_the_option_fields_are_found() -> None:
    paths = {path for _, path, _ in OPTION_FIELDS}
    assert {"run.amp", "run.cpu_weight_gradient", "optim.recipe", "optim.schedule"} <= paths
    assert {"transfer.schedule", "transfer.in_channels", "data.resize_mode", "split"} <= paths


@pytest.mark.parametrize(
    ("stage", "path", "choices"), OPTION_FIELDS, ids=[f"{s}-{p}" for s, p, _ in OPTION_FIELDS]
)
def test_a_misspelt_option_names_the_field_and_suggests_the_choice(
    stage: str, path: str, choices: tuple[str, ...]
) -> None:
    intended = choices[0]
    typo = intended[:-1] + ("x" if intended[-1] != "x" else "y")
    with pytest.raises(ConfigError) as info:
        load_config({**_base(stage), **_nest(path, typo)}, ROOTS[stage])
    message = str(info.value)
    assert path in message and repr(typo) in message
    assert f"did you mean {intended!r}?" in message
    assert all(repr(choice) in message for choice in choices)
    # The right spelling is accepted (whether the other settings then use it is another check's).
    with quiet_unused_settings():
        assert load_config({**_base(stage), **_nest(path, intended)}, ROOTS[stage]) is not None


OFF_FIELDS = [(stage, path) for stage, path, choices in OPTION_FIELDS if "off" in choices]


def test_the_off_fields_are_found() -> None:
    expected = {("pretrain", "run.amp"), ("pretrain", "run.compile"), ("finetune", "run.compile")}
    assert expected <= set(OFF_FIELDS)


def _bare_yaml(stage: str, path: str, word: str, folder: Path) -> Path:
    """A config file setting the dotted ``path`` to the unquoted YAML ``word``."""
    head, _, leaf = path.rpartition(".")
    text = f"{head}:\n  {leaf}: {word}\n" if head else f"{leaf}: {word}\n"
    if stage == "evaluate":
        text += "checkpoint: run\n"
    file = folder / "config.yaml"
    file.write_text(text)
    return file


@pytest.mark.parametrize(("stage", "path"), OFF_FIELDS, ids=[f"{s}-{p}" for s, p in OFF_FIELDS])
def test_a_bare_yaml_off_reads_as_the_off_option(stage: str, path: str, tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads an unquoted `off` as the boolean false; the field means its option.
    config: object = load_config(_bare_yaml(stage, path, "off", tmp_path), ROOTS[stage])
    for part in path.split("."):
        config = getattr(config, part)
    assert config == "off"


@pytest.mark.parametrize(
    ("stage", "path", "choices"), OPTION_FIELDS, ids=[f"{s}-{p}" for s, p, _ in OPTION_FIELDS]
)
def test_a_bare_yaml_on_names_the_field_and_its_choices(
    stage: str, path: str, choices: tuple[str, ...], tmp_path: Path
) -> None:
    # An unquoted `on` is the boolean true, which names none of a string option's choices.
    file = _bare_yaml(stage, path, "on", tmp_path)
    leaf = path.rpartition(".")[2]
    with pytest.raises(ConfigError) as info:
        load_config(file, ROOTS[stage])
    message = str(info.value)
    assert str(file) in message and f"{leaf}=true" in message and "YAML reads a bare on" in message
    assert all(repr(choice) in message for choice in choices)


@pytest.mark.parametrize("stage", ["pretrain", "finetune", "evaluate"])
@pytest.mark.parametrize(("device", "close"), [("gpu", "cpu"), ("cdua", "cuda"), ("cuda:x", "cuda:N")])
def test_a_misspelt_device_suggests_the_closest(stage: str, device: str, close: str) -> None:
    path = "device" if stage == "evaluate" else "run.device"
    with pytest.raises(ConfigError, match=rf"did you mean '{close}'\?"):
        load_config({**_base(stage), **_nest(path, device)}, ROOTS[stage])
    assert load_config({**_base(stage), **_nest(path, "cuda:1")}, ROOTS[stage]) is not None


def _pretext(task: str, sampler: str, size: tuple[int, int], k: int, coverage: float) -> dict[str, object]:
    return {
        "data": {"image_size": list(size)},
        "pretext": {"task": task, "sampler": sampler, "patch_size": k, "coverage": coverage},
    }


@pytest.mark.parametrize("task", PRETEXT_TASKS.names())
@pytest.mark.parametrize("sampler", SAMPLERS.names())
@pytest.mark.parametrize(
    ("size", "k", "why"),
    [
        ((64, 64), 80, r"patch_size=80 is larger than the image"),
        ((64, 64), 64, r"one patch alone covers 100%"),
        ((96, 48), 40, r"one patch alone covers 34\.7%"),
    ],
)
def test_patches_that_do_not_fit_the_image_fail_on_validation(
    task: str, sampler: str, size: tuple[int, int], k: int, why: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_pretext(task, sampler, size, k, 0.25), PretrainConfig)
    message = str(info.value)
    assert f"pretext.patch_size={k}" in message and f"data.image_size={size}" in message
    assert f"'{task}'" in message and f"'{sampler}'" in message
    assert re.search(why, message)


@pytest.mark.parametrize("task", PRETEXT_TASKS.names())
def test_poisson_coverage_beyond_any_packing_fails_on_validation(task: str) -> None:
    with pytest.raises(ConfigError, match=r"coverage unreachable: it needs 58 non-overlapping patches"):
        load_config(_pretext(task, "poisson_disc", (64, 64), 8, 0.9), PretrainConfig)
    # Overlapping random patches reach it.
    assert load_config(_pretext(task, "random", (64, 64), 8, 0.9), PretrainConfig).pretext.coverage == 0.9


def test_without_an_image_size_nothing_is_assumed() -> None:
    config = load_config({"pretext": {"patch_size": 512}}, PretrainConfig)
    assert config.data.image_size is None


def test_an_unknown_sampler_is_left_to_the_registry_at_build_time() -> None:
    # The registry's KeyError (with close matches) stays the one place unknown names are reported.
    config = load_config(_pretext("context_prediction", "poisson", (64, 64), 80, 0.25), PretrainConfig)
    assert config.pretext.sampler == "poisson"


@pytest.mark.parametrize("task", PRETEXT_TASKS.names())
@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(8, 256),
    width=st.integers(8, 256),
    k=st.integers(1, 128),
    coverage=st.sampled_from([0.1, 0.25, 0.4]),
)
def test_random_sampler_configs_pass_exactly_when_the_rules_hold(
    task: str, height: int, width: int, k: int, coverage: float
) -> None:
    pairs = task == "context_restoration"
    fits = (
        k <= min(height, width)
        and k * k <= exact_target(coverage, (height, width))
        and not (pairs and 2 * k > max(height, width))
    )
    call = _pretext(task, "random", (height, width), k, coverage)
    if fits:
        assert load_config(call, PretrainConfig).pretext.patch_size == k
    else:
        with pytest.raises(ConfigError, match=rf"does not fit data\.image_size=\({height}, {width}\)"):
            load_config(call, PretrainConfig)


@pytest.mark.parametrize("stage", ["pretrain", "finetune", "evaluate"])
def test_the_gpu_index_placeholder_is_not_a_device(stage: str) -> None:
    path = "device" if stage == "evaluate" else "run.device"
    expected = r"'cuda:N' is not a valid option: .* N a GPU index, e\.g\. 'cuda:0'"
    with pytest.raises(ConfigError, match=expected):
        load_config({**_base(stage), **_nest(path, "cuda:N")}, ROOTS[stage])
