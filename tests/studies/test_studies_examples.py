"""The example study specs load, expand on the demo data, and say how long they take; the API is pinned."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import inpaintssl.studies as studies
from inpaintssl.studies import expand_study, load_spec
from inpaintssl.studies.spec import STUDY_KINDS

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "studies").glob("*.yaml"))


def test_there_is_one_example_per_study() -> None:
    # The demo's spec is built by inpaintssl.studies.demo.demo_spec (``inpaintssl demo``).
    assert sorted(load_spec(p).study for p in EXAMPLES) == sorted(set(STUDY_KINDS) - {"demo"})


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_specs_expand_on_the_demo_data(path: Path) -> None:
    spec = load_spec(path)
    plan = expand_study(spec)
    assert plan.pretrain_jobs() and plan.finetune_jobs()
    assert {j.config.data.dataset for j in plan} == {"mni152"}
    text = path.read_text()
    assert "Runtime here" in text and "minutes" in text


def test_public_names_are_exported_and_importable() -> None:
    assert sorted(studies.__all__) == sorted(studies._EXPORTS)
    for name in studies.__all__:
        module = importlib.import_module(f"inpaintssl.studies.{studies._EXPORTS[name]}")
        assert getattr(studies, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        studies.nope  # noqa: B018


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_only_the_data_scaling_example_pretrains_on_slices_crossing_the_test_set(path: Path) -> None:
    # clinical.yaml pretrained on the template's coronal and sagittal slices, which cross every
    # axial test slice, without a word: its SSL-vs-supervised tests were not held out.
    spec = load_spec(path)
    crossing = [
        job.id
        for job in expand_study(spec).pretrain_jobs()
        if any(source.dataset == "mni152" and source.fraction > 0 for source in job.config.data.unlabelled)
    ]
    if spec.study == "data_scaling":  # the template has no other unlabelled slices; it says so
        assert crossing and spec.pretraining_sees_test_anatomy() is not None
        assert "Not held out" in path.read_text()
    else:
        assert not crossing and spec.pretraining_sees_test_anatomy() is None
