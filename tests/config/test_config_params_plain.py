"""A factory's ``params`` are plain data: the same in the user's process, a study worker and a resume.

A study worker reads its run's config as JSON (``Task.job``), and a resumed or loaded run reads
``config.yaml``; a dataset, model, loss or task factory must get the same keyword arguments there
as in the process that validated the user's config. So a config equals itself read back through
either, and what JSON would change (an integer key, a set, NaN) is refused when it is given.
"""

from __future__ import annotations

import enum
import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from inpaintssl.config import (
    ConfigError,
    FinetuneConfig,
    PretrainConfig,
    config_to_yaml,
    load_config,
    read_config_text,
)

# Every free-form params field, as the mapping that sets it.
PLACES: tuple[tuple[str, type[BaseModel], Any], ...] = (
    ("data.params", PretrainConfig, lambda p: {"data": {"params": p}}),
    ("data.unlabelled.0.params", PretrainConfig, lambda p: {"data": {"unlabelled": [{"params": p}]}}),
    ("model.params", FinetuneConfig, lambda p: {"model": {"params": p}}),
    ("pretext.params", PretrainConfig, lambda p: {"pretext": {"params": p}}),
    ("loss.params", FinetuneConfig, lambda p: {"loss": {"params": p}}),
)
IDS = [place[0] for place in PLACES]

_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.floats(-1e6, 1e6).map(np.float32)
    | st.integers(-1000, 1000).map(np.int64)
    | st.booleans().map(np.bool_)
    | st.text("abc/", min_size=1, max_size=6).map(PurePosixPath)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text("xyz", min_size=1, max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_params = st.dictionaries(st.sampled_from(["alpha", "window", "root", "layers"]), _values, max_size=3)


def _as_json_would_carry(value: Any) -> Any:
    """``value`` after a JSON round trip, computed without the library: the independent expectation."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, PurePosixPath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_as_json_would_carry(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_json_would_carry(v) for k, v in value.items()}
    return value


def _params_at(config: BaseModel, place: str) -> Any:
    node: Any = config
    for part in place.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


@pytest.mark.parametrize(("place", "cls", "build"), PLACES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(params=_params)
def test_params_are_what_a_study_worker_and_config_yaml_read_back(
    place: str, cls: type[BaseModel], build: Any, params: dict[str, Any]
) -> None:
    config = cls.model_validate(build(params))
    held = _params_at(config, place)
    assert held == _as_json_would_carry(params)
    assert json.loads(json.dumps(held)) == held  # plain JSON data, nothing JSON would change
    worker = cls.model_validate_json(config.model_dump_json())  # what Task.job() reads
    resumed = load_config(read_config_text(config_to_yaml(config), source="config.yaml"), cls)
    assert worker == config and resumed == config


def test_a_tuple_reaches_the_factory_as_the_list_a_worker_would_get() -> None:
    config = PretrainConfig.model_validate({"data": {"params": {"window": (-160, 240)}}})
    assert config.data.params["window"] == [-160, 240]
    assert PretrainConfig.model_validate_json(config.model_dump_json()).data.params == config.data.params


class _Plane(str, enum.Enum):
    AXIAL = "axial"


def test_numpy_scalars_and_paths_become_the_python_values_json_would_hold() -> None:
    given_params = {
        "gain": np.float32(0.5),
        "scale": np.float64(2.0),  # a float subclass
        "axis": np.int64(2),
        "flip": np.bool_(True),
        "root": Path("/d"),
        "plane": _Plane.AXIAL,  # a str subclass
    }
    held = PretrainConfig.model_validate({"data": {"params": given_params}}).data.params
    expected = {"gain": 0.5, "scale": 2.0, "axis": 2, "flip": True, "root": str(Path("/d")), "plane": "axial"}
    assert held == expected
    assert {k: type(v) for k, v in held.items()} == {k: type(v) for k, v in expected.items()}
    assert json.loads(json.dumps(held)) == held


@pytest.mark.parametrize(("place", "cls", "build"), PLACES, ids=IDS)
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"labels": {1: "femur"}}, r"\['labels'\] has the key 1 \(int\); expected text keys.*write '1'"),
        ({"deep": [{"ok": {2.5: 1}}]}, r"\['deep'\]\[0\]\['ok'\] has the key 2\.5 \(float\)"),
        ({"classes": {1, 2}}, r"\['classes'\] is a builtins\.set; expected text, a number"),
        ({"clip": [0.0, math.inf]}, r"\['clip'\]\[1\]=inf is not a finite number"),
        ({"scale": math.nan}, r"\['scale'\]=nan is not a finite number"),
        ({"mask": np.zeros(3)}, r"\['mask'\] is a numpy\.ndarray; .*give array\.tolist\(\)"),
        ({"norm": object()}, r"\['norm'\] is a builtins\.object; expected text"),
    ],
    ids=["int-key", "nested-float-key", "set", "inf", "nan", "array", "object"],
)
def test_what_json_would_change_or_cannot_hold_is_refused_naming_the_field_and_key(
    place: str, cls: type[BaseModel], build: Any, params: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(place) + ": " + expected):
        load_config(build(params), cls)


@pytest.mark.parametrize("key", ["patch_size", "sampler", "coverage", "bank_size", "task", "seed"])
def test_pretext_params_refuse_what_the_task_gets_from_pretexts_own_fields_or_run_seed(key: str) -> None:
    # Given twice, the task factory was called with two values and Python named neither field.
    where = "run.seed" if key == "seed" else f"pretext.{key}"
    with pytest.raises(ConfigError, match=rf"pretext\.params: .*set {re.escape(where)}"):
        load_config({"pretext": {"params": {key: 8}}}, PretrainConfig)
    assert load_config({"pretext": {"params": {"sampler_params": {"candidates": 20}}}}, PretrainConfig)
