"""The run record: written once, kept on resume, and a resume with other settings is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inpaintssl.config import ConfigError, FinetuneConfig, apply_overrides
from inpaintssl.training.finetuning import phases_for
from inpaintssl.training.run_folder import (
    changed_fields,
    read_data_check,
    record_run,
    recorded_config,
    write_data_check,
)


class _Splits:
    def __init__(self) -> None:
        self.saved: list[Path] = []

    def save(self, path: Path) -> None:
        path.write_text("{}")
        self.saved.append(path)


def test_new_run_writes_config_splits_and_manifest(tmp_path: Path) -> None:
    splits = _Splits()
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=splits, manifest=lambda: {"seed": 0})
    assert (tmp_path / "config.yaml").is_file() and splits.saved == [tmp_path / "splits.json"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"seed": 0}


def test_resume_keeps_the_record_and_allows_longer_training(tmp_path: Path) -> None:
    # The paper's step decay is a function of the epoch alone: a longer budget continues the run.
    paper = apply_overrides(FinetuneConfig(), ["optim.recipe=paper"])
    record_run(tmp_path, paper, resume=False, splits=_Splits(), manifest=lambda: {"seed": 0})
    before = (tmp_path / "config.yaml").read_text()
    longer = apply_overrides(paper, ["optim.max_epochs=500", "run.quiet=true", "run.resume=true"])
    splits = _Splits()
    record_run(tmp_path, longer, resume=True, splits=splits, manifest=lambda: {"seed": 99})
    assert (tmp_path / "config.yaml").read_text() == before  # the trainer records the new budget
    assert splits.saved == [] and json.loads((tmp_path / "manifest.json").read_text()) == {"seed": 0}


def test_a_new_budget_is_refused_where_the_schedule_spans_the_budget(tmp_path: Path) -> None:
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=_Splits(), manifest=lambda: {})
    longer = apply_overrides(FinetuneConfig(), ["optim.max_epochs=500"])
    with pytest.raises(
        ConfigError, match=r"optim.max_epochs=500 \(recorded: 100\): its warmup_cosine schedule is laid over"
    ):
        record_run(tmp_path, longer, resume=True, splits=_Splits(), manifest=lambda: {})


def test_resume_under_another_seed_is_refused(tmp_path: Path) -> None:
    # Data order and corruption follow the seed: the resumed run would mix two runs.
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=_Splits(), manifest=lambda: {})
    other = apply_overrides(FinetuneConfig(), ["run.seed=1", "run.device=cpu", "run.resume=true"])
    with pytest.raises(ConfigError, match=r"differ from its recorded config.yaml: run\.seed\. Resume"):
        record_run(tmp_path, other, resume=True, splits=_Splits(), manifest=lambda: {})


def test_a_resume_completes_a_record_a_kill_cut_short(tmp_path: Path) -> None:
    # Killed after config.yaml and before the rest: the resume writes splits and manifest, which
    # predict's spacing and orientation checks read.
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=_Splits(), manifest=lambda: {"seed": 0})
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "splits.json").unlink()
    splits = _Splits()
    record_run(tmp_path, FinetuneConfig(), resume=True, splits=splits, manifest=lambda: {"seed": 0})
    assert splits.saved == [tmp_path / "splits.json"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"seed": 0}


def test_resume_with_other_data_or_model_is_refused(tmp_path: Path) -> None:
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=_Splits(), manifest=lambda: {})
    other = apply_overrides(FinetuneConfig(), ["data.label_fraction=0.5", "model.params={depth: 3}"])
    with pytest.raises(ConfigError, match=r"data\.label_fraction, model\.params\.depth"):
        record_run(tmp_path, other, resume=True, splits=_Splits(), manifest=lambda: {})


def test_changed_fields_ignores_whole_sections() -> None:
    a = FinetuneConfig()
    b = apply_overrides(a, ["run.seed=5", "optim.lr=0.1", "run.output_dir=x"])
    assert changed_fields(a, b) == ["optim.lr", "run.output_dir", "run.seed"]
    assert changed_fields(a, b, ignore=("run",)) == ["optim.lr"]


@pytest.mark.parametrize(
    ("schedule", "names", "lrs", "frozen"),
    [
        ("immediate", ["finetune"], [1e-3], [()]),
        ("immediate_twice", ["finetune", "again"], [1e-3, 1e-4], [(), ()]),
        ("frozen", ["frozen"], [1e-3], [("encoder",)]),
        ("freeze_then_unfreeze", ["frozen", "unfrozen"], [1e-3, 1e-4], [("encoder",), ()]),
    ],
)
def test_schedules_map_to_the_papers_runs(
    schedule: str, names: list[str], lrs: list[float], frozen: list[tuple[str, ...]]
) -> None:
    phases = phases_for(lr=1e-3, schedule=schedule, second_lr=None, transferred=("encoder",))
    assert [p.name for p in phases] == names
    assert [p.lr for p in phases] == pytest.approx(lrs)
    assert [p.frozen_parts for p in phases] == frozen


def test_a_run_recorded_before_recipes_resumes_only_under_the_papers_recipe(tmp_path: Path) -> None:
    # Written by a version without optim.recipe: the paper's optimiser was the only one.
    old = apply_overrides(FinetuneConfig(), ["optim.lr=0.001", "optim.betas=[0.99, 0.995]"])
    record_run(tmp_path, old, resume=False, splits=_Splits(), manifest=lambda: {})
    config_yaml = tmp_path / "config.yaml"
    text = config_yaml.read_text()
    assert "  recipe: budget\n" in text
    config_yaml.write_text(text.replace("  recipe: budget\n", ""))
    assert recorded_config(config_yaml, FinetuneConfig).optim.effective_schedule == "step_decay"
    with pytest.raises(ConfigError, match=r"optim\.recipe"):
        record_run(tmp_path, old, resume=True, splits=_Splits(), manifest=lambda: {})
    paper = apply_overrides(old, ["optim.recipe=paper"])
    record_run(tmp_path, paper, resume=True, splits=_Splits(), manifest=lambda: {})


def test_data_check_record_is_read_back_only_for_the_same_data_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passed = {"nifti case 'a' (/d/a.nii)": [["/d/a.nii", 352, 17], ["/d/a_seg.nii", 300, 18]]}
    data = FinetuneConfig().data
    write_data_check(tmp_path, passed, data_config=data)

    assert read_data_check(tmp_path, data_config=data) == passed
    assert read_data_check(tmp_path, data_config=data.model_copy(update={"num_workers": 3})) == passed
    other = data.model_copy(update={"image_size": (64, 64)})
    assert read_data_check(tmp_path, data_config=other) == {}
    # Checked by another library version: its checks may have been weaker, so nothing is skipped.
    monkeypatch.setattr("inpaintssl.training.run_folder._version_of", lambda package: "0.0.0-other")
    assert read_data_check(tmp_path, data_config=data) == {}


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"passed": 3}'])
def test_unreadable_data_check_record_means_check_everything(tmp_path: Path, content: str) -> None:
    (tmp_path / "data_check.json").write_text(content)
    assert read_data_check(tmp_path, data_config=FinetuneConfig().data) == {}
    assert read_data_check(tmp_path / "missing", data_config=FinetuneConfig().data) == {}


def test_resuming_a_run_of_the_other_stage_names_the_stage(tmp_path: Path) -> None:
    from inpaintssl.config import PretrainConfig

    record_run(
        tmp_path, PretrainConfig(), resume=False, splits=_Splits(), manifest=lambda: {"stage": "pretrain"}
    )
    with pytest.raises(ConfigError, match=r"cannot resume .* as a finetune run: it holds a pretrain run"):
        record_run(tmp_path, FinetuneConfig(), resume=True, splits=_Splits(), manifest=lambda: {})
    # A damaged config of the same stage is still reported as what it is.
    (tmp_path / "config.yaml").write_text("optim: {lr: [1]}\n")
    with pytest.raises(ConfigError, match=r"optim.lr"):
        record_run(tmp_path, PretrainConfig(), resume=True, splits=_Splits(), manifest=lambda: {})
