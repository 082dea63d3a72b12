"""The example study specs load, expand on the demo data, and say how long they take; the API is pinned."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import inpaintssl.experiments as experiments
from inpaintssl.experiments import expand_study, load_spec
from inpaintssl.experiments.spec import STUDY_KINDS

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "studies").glob("*.yaml"))


def test_there_is_one_example_per_study() -> None:
    assert sorted(load_spec(p).study for p in EXAMPLES) == sorted(STUDY_KINDS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_specs_expand_on_the_demo_data(path: Path) -> None:
    spec = load_spec(path)
    plan = expand_study(spec)
    assert plan.pretrain_jobs() and plan.finetune_jobs()
    assert {j.config.data.dataset for j in plan} == {"mni152"}
    text = path.read_text()
    assert "Runtime here" in text and "minutes" in text


def test_public_names_are_exported_and_importable() -> None:
    assert sorted(experiments.__all__) == sorted(experiments._EXPORTS)
    for name in experiments.__all__:
        module = importlib.import_module(experiments._EXPORTS[name])
        assert getattr(experiments, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        experiments.nope  # noqa: B018
