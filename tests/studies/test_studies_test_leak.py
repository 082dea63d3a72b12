"""A study warns when the SSL arm's pretraining sets hold the fine-tuning test items themselves.

The declared check (an unlabelled split that says it holds the test anatomy) cannot see a
pretraining data section that cuts the same data into splits differently from ``finetune.data``:
these tests build nothing through the library's run builders for their expectations, they list
the mni152 slices of each split with the dataset itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import inpaintssl.data.build
from inpaintssl.data.mni152 import MNI152Dataset
from inpaintssl.studies.demo import demo_spec, settings_for
from inpaintssl.studies.grid import expand_study
from inpaintssl.studies.spec import StudySpec, load_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "studies").glob("*.yaml"))
FOUND = "the SSL arm's pretraining data holds fine-tuning test images"


def _slices(**params: Any) -> set[str]:
    """The mni152 slice ids of one split, as the dataset lists them."""
    return set(MNI152Dataset(labelled=False, **params).volume_ids)


def _demo(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> StudySpec:
    data = demo_spec(settings_for(quick=True), output=str(tmp_path / "study")).model_dump(mode="json")
    change(data)
    return StudySpec.model_validate(data)


def _pretrain_block_size_2(data: dict[str, Any]) -> None:
    data["pretrain"]["data"]["params"] = {"block_size": 2}


def _unlabelled_train_block_size_2(data: dict[str, Any]) -> None:
    data["pretrain"]["data"]["unlabelled"] = [
        {"dataset": "mni152", "fraction": 1.0, "params": {"split": "train", "block_size": 2}}
    ]


def _finetune_min_brain_fraction(data: dict[str, Any]) -> None:
    data["finetune"]["data"]["params"] = {"min_brain_fraction": 0.2}


@pytest.mark.parametrize(
    ("change", "where", "trained", "tested", "auditor"),
    [
        # pretrain.data cut into blocks of 2: its train split takes half of the 8 test slices.
        (
            _pretrain_block_size_2,
            "pretrain.data's train set",
            {"split": "train", "block_size": 2},
            {"split": "test"},
            ["axial_035", "axial_036", "axial_063", "axial_064"],
        ),
        # An unlabelled source naming the train split with blocks of 2: the same slices again.
        (
            _unlabelled_train_block_size_2,
            "pretrain.data.unlabelled[0]",
            {"split": "train", "block_size": 2},
            {"split": "test"},
            ["axial_035", "axial_036", "axial_063", "axial_064"],
        ),
        # finetune.data drops more cap slices: every one of its 4 test slices is a pretraining
        # train slice of the default cut.
        (
            _finetune_min_brain_fraction,
            "pretrain.data's train set",
            {"split": "train"},
            {"split": "test", "min_brain_fraction": 0.2},
            ["axial_041", "axial_042", "axial_043", "axial_044"],
        ),
    ],
    ids=["pretrain-block-size", "unlabelled-train-split", "finetune-min-brain-fraction"],
)
def test_pretraining_sets_holding_test_slices_are_named(
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    where: str,
    trained: dict[str, Any],
    tested: dict[str, Any],
    auditor: list[str],
) -> None:
    test = _slices(**tested)
    common = sorted(_slices(**trained) & test)
    assert common == auditor  # the slices the audit found, listed again by the dataset
    spec = _demo(tmp_path, change)
    said = spec.pretraining_sees_test_anatomy(plan=expand_study(spec))
    assert said is not None
    assert said.startswith(FOUND)
    assert f"{where} holds {len(common)} of the {len(test)} mni152 test volumes of finetune.data" in said
    assert f"({', '.join(common)})" in said
    assert "not held out" in said
    assert "pretrain.data.unlabelled holds" not in said  # no declared crossing: the items themselves


def test_the_demo_as_shipped_holds_no_test_slice(tmp_path: Path) -> None:
    for quick in (True, False):
        spec = demo_spec(settings_for(quick=quick), output=str(tmp_path / f"study-{quick}"))
        assert spec.pretraining_sees_test_anatomy() is None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_shipped_examples_hold_no_test_slice(path: Path) -> None:
    said = load_spec(path).pretraining_sees_test_anatomy()
    if path.stem == "data_scaling":  # its unlabelled coronal/sagittal slices cross the test slices
        assert said is not None and said.startswith("pretrain.data.unlabelled holds")
        assert FOUND not in said
    else:
        assert said is None


def test_each_distinct_data_section_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    build = inpaintssl.data.build.build_datasets

    def counted(cfg: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["stage"])
        return build(cfg, **kwargs)

    monkeypatch.setattr(inpaintssl.data.build, "build_datasets", counted)
    spec = _demo(tmp_path, _finetune_min_brain_fraction)
    plan = expand_study(spec)
    assert len([job for job in plan.finetune_jobs() if job.depends_on is not None]) > 2
    assert spec.pretraining_sees_test_anatomy(plan=plan) is not None
    assert sorted(calls) == ["finetune", "pretrain"]  # one pretraining section, one test set


def test_data_that_cannot_be_built_here_leaves_the_declared_check(tmp_path: Path) -> None:
    # The template is not where the spec says (a report written on another machine): no error,
    # and the declared crossing of the unlabelled source is still reported.
    missing = {"data_dir": str(tmp_path / "absent"), "block_size": 2}

    def change(data: dict[str, Any]) -> None:
        data["pretrain"]["data"]["params"] = missing
        data["finetune"]["data"]["params"] = {"data_dir": missing["data_dir"]}

    assert _demo(tmp_path, change).pretraining_sees_test_anatomy() is None

    def with_unlabelled(data: dict[str, Any]) -> None:
        change(data)
        data["pretrain"]["data"]["unlabelled"] = [
            {"dataset": "mni152", "params": {"data_dir": missing["data_dir"]}}
        ]

    said = _demo(tmp_path, with_unlabelled).pretraining_sees_test_anatomy()
    assert said is not None and said.startswith("pretrain.data.unlabelled holds") and FOUND not in said
