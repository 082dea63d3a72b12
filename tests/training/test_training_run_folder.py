"""The run record: written once, kept on resume, and a resume with other settings is refused."""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import inpaintssl as issl
from inpaintssl.checkpoint import CheckpointMeta, save_checkpoint
from inpaintssl.config import ConfigError, FinetuneConfig, PretrainConfig, apply_overrides
from inpaintssl.data import DataError
from inpaintssl.layout import RunFolder
from inpaintssl.training.context import FinishedRunWarning
from inpaintssl.training.finetuning import phases_for
from inpaintssl.training.run_folder import (
    DataCheck,
    TensorBoardLog,
    TensorBoardWriteWarning,
    changed_fields,
    read_data_check,
    record_budget,
    record_run,
    recorded_config,
    write_data_check,
)
from study_helpers import EmptySplitRecord, tiny_numpy_pretrain_config, tiny_pretrain_config


def test_new_run_writes_config_splits_and_manifest(tmp_path: Path) -> None:
    splits = EmptySplitRecord()
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=splits, manifest=lambda: {"seed": 0})
    assert (tmp_path / "config.yaml").is_file() and splits.saved == [tmp_path / "splits.json"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"seed": 0}


def _checkpointed(run: Path) -> None:
    """A run that trained an epoch: its ``checkpoints/last`` (a resume continues from it)."""
    meta = CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2, epoch=0)
    save_checkpoint(RunFolder(run).last, {"w": torch.zeros(1)}, meta)


def test_resume_keeps_the_record_and_allows_longer_training(tmp_path: Path) -> None:
    # The paper's step decay is a function of the epoch alone: a longer budget continues the run.
    paper = apply_overrides(FinetuneConfig(), ["optim.recipe=paper"])
    record_run(tmp_path, paper, resume=False, splits=EmptySplitRecord(), manifest=lambda: {"seed": 0})
    _checkpointed(tmp_path)
    before = (tmp_path / "config.yaml").read_text()
    longer = apply_overrides(paper, ["optim.max_epochs=500", "run.quiet=true", "run.resume=true"])
    splits = EmptySplitRecord()
    record_run(tmp_path, longer, resume=True, splits=splits, manifest=lambda: {"seed": 99})
    assert (tmp_path / "config.yaml").read_text() == before  # the trainer records the new budget
    assert splits.saved == [] and json.loads((tmp_path / "manifest.json").read_text()) == {"seed": 0}


def test_a_new_budget_is_refused_where_the_schedule_spans_the_budget(tmp_path: Path) -> None:
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=lambda: {})
    longer = apply_overrides(FinetuneConfig(), ["optim.max_epochs=500"])
    # Before a first checkpoint the resume starts afresh, so the new budget is taken and recorded.
    record_run(tmp_path, longer, resume=True, splits=EmptySplitRecord(), manifest=lambda: {})
    assert recorded_config(tmp_path / "config.yaml", FinetuneConfig).optim.max_epochs == 500
    _checkpointed(tmp_path)
    with pytest.raises(
        ConfigError, match=r"optim.max_epochs=100 \(recorded: 500\): its warmup_cosine schedule is laid over"
    ):
        record_run(tmp_path, FinetuneConfig(), resume=True, splits=EmptySplitRecord(), manifest=lambda: {})


def test_resume_under_another_seed_is_refused(tmp_path: Path) -> None:
    # Data order and corruption follow the seed: the resumed run would mix two runs.
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=lambda: {})
    other = apply_overrides(FinetuneConfig(), ["run.seed=1", "run.device=cpu", "run.resume=true"])
    told = r"differ from its recorded config.yaml: run\.seed \(recorded 0, now 1\)\. Resume"
    with pytest.raises(ConfigError, match=told):
        record_run(tmp_path, other, resume=True, splits=EmptySplitRecord(), manifest=lambda: {})


@pytest.mark.parametrize(
    ("written_out", "other"),
    [
        (["optim.lr=0.01", "optim.betas=[0.9, 0.999]", "optim.schedule=warmup_cosine"], "optim.lr=0.001"),
        (["loss.name=dice_ce"], "loss.name=dice"),
    ],
    ids=["optim", "loss"],
)
def test_a_resume_takes_a_value_written_out_at_what_the_recipe_fills_in(
    tmp_path: Path, written_out: list[str], other: str
) -> None:
    # The same training, and in a study the same run id: the study's resume was refused on every
    # call, with advice (a new run.output_dir) its runner, which names the folder, cannot take.
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=lambda: {})
    _checkpointed(tmp_path)
    given = apply_overrides(FinetuneConfig(), written_out)
    record_run(tmp_path, given, resume=True, splits=EmptySplitRecord(), manifest=lambda: {})
    record_run(tmp_path, FinetuneConfig(), resume=True, splits=EmptySplitRecord(), manifest=lambda: {})
    # A value other than the recipe's is another run, as before.
    with pytest.raises(ConfigError, match="differ from its recorded config.yaml: " + other.split("=")[0]):
        record_run(
            tmp_path,
            apply_overrides(FinetuneConfig(), [other]),
            resume=True,
            splits=EmptySplitRecord(),
            manifest=lambda: {},
        )


def test_a_resume_completes_a_record_a_kill_cut_short(tmp_path: Path) -> None:
    # Killed after config.yaml and before the rest: the resume writes splits and manifest, which
    # predict's spacing and orientation checks read.
    record_run(
        tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=lambda: {"seed": 0}
    )
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "splits.json").unlink()
    splits = EmptySplitRecord()
    record_run(tmp_path, FinetuneConfig(), resume=True, splits=splits, manifest=lambda: {"seed": 0})
    assert splits.saved == [tmp_path / "splits.json"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"seed": 0}


def test_resume_with_other_data_or_model_is_refused(tmp_path: Path) -> None:
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=lambda: {})
    other = apply_overrides(FinetuneConfig(), ["data.label_fraction=0.5", "model.params={depth: 3}"])
    told = r"data\.label_fraction \(recorded 1\.0, now 0\.5\), model\.params\.depth \(recorded unset, now 3\)"
    with pytest.raises(ConfigError, match=told):
        record_run(tmp_path, other, resume=True, splits=EmptySplitRecord(), manifest=lambda: {})


# -- the components a run records (manifest.json components) --------------------------------------
PLUGIN_A = "plugin nets_a:Net from distribution nets-a 1.0.0"


def _components(backbone: str, sampler: str = "built-in inpaintssl.corruption.samplers:RandomSampler") -> Any:
    """A manifest recording ``backbone`` as the origin of backbone ``net`` and a sampler."""
    return lambda: {"components": {"backbones": {"net": backbone}, "samplers": {"random": sampler}}}


@pytest.mark.parametrize(
    ("now", "advice"),
    [
        (
            "plugin nets_b:Net from distribution nets-b 1.0.0",
            "pip install 'nets-a==1.0.0' and pip uninstall nets-b",
        ),
        (
            "built-in inpaintssl.models.unet:UNet2d",
            "pip install 'nets-a==1.0.0' under the inpaintssl version",
        ),
    ],
)
def test_resume_refuses_other_code_under_a_recorded_component(tmp_path: Path, now: str, advice: str) -> None:
    record_run(
        tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=_components(PLUGIN_A)
    )
    _checkpointed(tmp_path)
    before = (tmp_path / "manifest.json").read_text()
    with pytest.raises(ConfigError) as refused:
        record_run(
            tmp_path, FinetuneConfig(), resume=True, splits=EmptySplitRecord(), manifest=_components(now)
        )
    message = str(refused.value)
    assert message.startswith(f"cannot resume {tmp_path}: other code provides these components"), message
    assert f"backbones 'net' (recorded {PLUGIN_A}, now {now}: {advice}" in message, message
    assert "samplers" not in message  # the unchanged one is not named
    assert (tmp_path / "manifest.json").read_text() == before


def test_resume_refuses_a_plugin_where_the_run_had_a_built_in(tmp_path: Path) -> None:
    builtin = "built-in inpaintssl.corruption.samplers:RandomSampler"
    plugin = "plugin my_samplers:Random from distribution my-samplers 0.1.0"
    record_run(
        tmp_path,
        FinetuneConfig(),
        resume=False,
        splits=EmptySplitRecord(),
        manifest=_components(PLUGIN_A, builtin),
    )
    with pytest.raises(
        ConfigError, match=rf"samplers 'random' \(recorded {builtin}, now {plugin}: install the inpaintssl"
    ):
        record_run(
            tmp_path,
            FinetuneConfig(),
            resume=True,
            splits=EmptySplitRecord(),
            manifest=_components(PLUGIN_A, plugin),
        )


def test_resume_under_another_version_of_a_plugin_warns_and_records_it(tmp_path: Path) -> None:
    record_run(
        tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=_components(PLUGIN_A)
    )
    _checkpointed(tmp_path)
    upgraded = "plugin nets_a:Net from distribution nets_a 1.2.0"  # the name as pip compares it
    with pytest.warns(UserWarning, match=rf"backbones 'net' \(recorded {PLUGIN_A}, now {upgraded}\)"):
        record_run(
            tmp_path, FinetuneConfig(), resume=True, splits=EmptySplitRecord(), manifest=_components(upgraded)
        )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["components"]["backbones"] == {"net": PLUGIN_A}
    (entry,) = manifest["resumes"]
    assert entry["changed"] == {}
    assert entry["environment"] == {"components.backbones.net": {"recorded": PLUGIN_A, "now": upgraded}}


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
    record_run(tmp_path, old, resume=False, splits=EmptySplitRecord(), manifest=lambda: {})
    config_yaml = tmp_path / "config.yaml"
    text = config_yaml.read_text()
    assert "  recipe: budget\n" in text
    config_yaml.write_text(text.replace("  recipe: budget\n", ""))
    assert recorded_config(config_yaml, FinetuneConfig).optim.effective_schedule == "step_decay"
    with pytest.raises(ConfigError, match=r"optim\.recipe"):
        record_run(tmp_path, old, resume=True, splits=EmptySplitRecord(), manifest=lambda: {})
    paper = apply_overrides(old, ["optim.recipe=paper"])
    record_run(tmp_path, paper, resume=True, splits=EmptySplitRecord(), manifest=lambda: {})


def test_data_check_record_is_read_back_only_for_the_same_data_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passed = {"nifti case 'a' (/d/a.nii)": [["/d/a.nii", 352, 17], ["/d/a_seg.nii", 300, 18]]}
    sets = {"nifti case 'a' (/d/a.nii)": ("val", "train"), "nifti case 'b' (no files)": ("test",)}
    data = FinetuneConfig().data
    write_data_check(tmp_path, passed, data_config=data, sets=sets)

    recorded = DataCheck(passed=passed, sets={"nifti case 'a' (/d/a.nii)": ("train", "val")})
    assert read_data_check(tmp_path, data_config=data) == recorded
    workers = {
        "num_workers": 3,
        "worker_start_method": "spawn",
        "cache_dir": tmp_path / "decompressed",
        "check_threads": 2,
    }
    assert read_data_check(tmp_path, data_config=data.model_copy(update=workers)) == recorded
    other = data.model_copy(update={"image_size": (64, 64)})
    assert read_data_check(tmp_path, data_config=other) == DataCheck()
    # Checked by another library version: its checks may have been weaker, so nothing is skipped.
    monkeypatch.setattr("inpaintssl.training.run_folder._version_of", lambda package: "0.0.0-other")
    assert read_data_check(tmp_path, data_config=data) == DataCheck()


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"passed": 3}'])
def test_unreadable_data_check_record_means_check_everything(tmp_path: Path, content: str) -> None:
    (tmp_path / "data_check.json").write_text(content)
    assert read_data_check(tmp_path, data_config=FinetuneConfig().data) == DataCheck()
    assert read_data_check(tmp_path / "missing", data_config=FinetuneConfig().data) == DataCheck()


def test_a_case_with_malformed_sets_is_read_back_without_them(tmp_path: Path) -> None:
    # A hand-edited record: such a case is judged by volume id on a resume, as one recorded without sets.
    passed = {"a": [["/d/a.nii", 1, 2]], "b": [["/d/b.nii", 1, 2]], "c": [["/d/c.nii", 1, 2]]}
    data = FinetuneConfig().data
    write_data_check(tmp_path, passed, data_config=data, sets={"a": ["train"]})
    record = json.loads((tmp_path / "data_check.json").read_text())
    record["sets"].update({"b": "train", "c": [1]})
    (tmp_path / "data_check.json").write_text(json.dumps(record))
    assert read_data_check(tmp_path, data_config=data) == DataCheck(passed=passed, sets={"a": ("train",)})


def test_resuming_a_run_of_the_other_stage_names_the_stage(tmp_path: Path) -> None:
    from inpaintssl.config import PretrainConfig

    record_run(
        tmp_path,
        PretrainConfig(),
        resume=False,
        splits=EmptySplitRecord(),
        manifest=lambda: {"stage": "pretrain"},
    )
    with pytest.raises(ConfigError, match=r"cannot resume .* as a finetune run: it holds a pretrain run"):
        record_run(tmp_path, FinetuneConfig(), resume=True, splits=EmptySplitRecord(), manifest=lambda: {})
    # A damaged config of the same stage is still reported as what it is.
    (tmp_path / "config.yaml").write_text("optim: {lr: [1]}\n")
    with pytest.raises(ConfigError, match=r"optim.lr"):
        record_run(tmp_path, PretrainConfig(), resume=True, splits=EmptySplitRecord(), manifest=lambda: {})


# -- a rewritten file refuses a resume only when the run trained on it ----------------------------


def _shared_id_run(root: Path) -> dict[str, Any]:
    """A tiny pretraining config on ``.npy`` volumes found by pattern in ``train/`` and ``val/``.

    ``train`` holds ``c1`` and ``c2``; ``val`` holds ``c1`` and ``c3``: its ``c1`` is another file
    with the same volume id as the training ``c1`` (ids are unique only within a split).
    """
    return tiny_numpy_pretrain_config(root, [("train", "c1"), ("train", "c2"), ("val", "c1"), ("val", "c3")])


def _resumed(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "run": {**config["run"], "resume": True}}


def _touch(path: Path) -> None:
    """A new modification time, the same contents (a file copied back, or touched)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def _data_check(run: Path) -> dict[str, Any]:
    record = json.loads((run / RunFolder.DATA_CHECK).read_text())
    assert isinstance(record, dict)
    return record


def _as_before_sets(run: Path) -> None:
    """Rewrite ``data_check.json`` as a version that recorded no sets wrote it."""
    record = _data_check(run)
    del record["sets"]
    (run / RunFolder.DATA_CHECK).write_text(json.dumps(record, indent=1))


def test_a_touched_validation_file_with_a_training_volume_id_only_warns(tmp_path: Path) -> None:
    config = _shared_id_run(tmp_path)
    issl.pretrain(config)
    run = tmp_path / "run"
    sets = {what.split("(")[-1].rstrip(")"): names for what, names in _data_check(run)["sets"].items()}
    assert sets == {
        str(tmp_path / "train" / "c1_img.npy"): ["train"],
        str(tmp_path / "train" / "c2_img.npy"): ["train"],
        str(tmp_path / "val" / "c1_img.npy"): ["val"],
        str(tmp_path / "val" / "c3_img.npy"): ["val"],
    }

    _touch(tmp_path / "val" / "c1_img.npy")
    with (
        pytest.warns(FinishedRunWarning),
        pytest.warns(UserWarning, match=r"validation or test files rewritten .*val/c1_img\.npy"),
    ):
        issl.pretrain(_resumed(config))

    _touch(tmp_path / "train" / "c1_img.npy")
    with pytest.raises(DataError, match=r"training files rewritten .*train/c1_img\.npy") as caught:
        issl.pretrain(_resumed(config))
    assert "val/c1_img.npy" not in str(caught.value)  # the resume above recorded it as it is now


def test_a_data_check_recorded_without_sets_still_judges_by_volume_id(tmp_path: Path) -> None:
    # Runs started before data_check.json held sets still resume, and are refused, as they were.
    config = _shared_id_run(tmp_path)
    issl.pretrain(config)
    run = tmp_path / "run"
    _as_before_sets(run)
    _touch(tmp_path / "val" / "c3_img.npy")  # no training volume is called c3_img
    with (
        pytest.warns(FinishedRunWarning),
        pytest.warns(UserWarning, match=r"validation or test files rewritten .*val/c3_img\.npy"),
    ):
        issl.pretrain(_resumed(config))
    assert "sets" in _data_check(run)  # the resumed start recorded them

    _as_before_sets(run)
    _touch(tmp_path / "train" / "c1_img.npy")
    with pytest.raises(DataError, match=r"training files rewritten .*train/c1_img\.npy"):
        issl.pretrain(_resumed(config))

    # By volume id, a validation case named like a training case is taken for one (the fallback's
    # limit, which the recorded sets lift).
    (run / RunFolder.DATA_CHECK).unlink()
    with pytest.warns(FinishedRunWarning):
        issl.pretrain(_resumed(config))
    _as_before_sets(run)
    _touch(tmp_path / "val" / "c1_img.npy")
    with pytest.raises(DataError, match=r"training files rewritten .*val/c1_img\.npy"):
        issl.pretrain(_resumed(config))


def test_a_new_budget_rewrites_config_yaml_leaving_every_other_value_as_it_was(tmp_path: Path) -> None:
    # "1e5" is a string a config file must read back as a string (the loader reads a bare 1e5 as a float).
    config = FinetuneConfig.model_validate(
        {"data": {"params": {"case": "1e5"}}, "optim": {"recipe": "paper", "max_epochs": 3, "lr": 1e-5}}
    )
    record_run(tmp_path, config, resume=False, splits=EmptySplitRecord(), manifest=lambda: {"seed": 0})
    record_budget(tmp_path, 7)
    recorded = recorded_config(RunFolder(tmp_path).config, FinetuneConfig)
    assert recorded.optim.max_epochs == 7
    assert recorded == config.model_copy(update={"optim": config.optim.model_copy(update={"max_epochs": 7})})


def test_a_resume_of_a_checkpointed_run_without_its_config_yaml_is_refused(tmp_path: Path) -> None:
    # Without the record nothing can be checked: the resume wrote its own settings as the record of
    # weights trained with others (another lr, batch size and data went through without a word).
    record_run(tmp_path, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=lambda: {})
    _checkpointed(tmp_path)
    (tmp_path / "config.yaml").unlink()
    other = apply_overrides(FinetuneConfig(), ["optim.lr=0.05", "run.resume=true"])
    with pytest.raises(ConfigError, match=r"has a checkpoint .* but no config\.yaml"):
        record_run(tmp_path, other, resume=True, splits=EmptySplitRecord(), manifest=lambda: {})
    assert not (tmp_path / "config.yaml").exists()
    # A folder killed before its first checkpoint has nothing to protect: the resume starts afresh.
    fresh = tmp_path / "fresh"
    record_run(fresh, FinetuneConfig(), resume=False, splits=EmptySplitRecord(), manifest=lambda: {})
    (fresh / "config.yaml").unlink()
    record_run(fresh, other, resume=True, splits=EmptySplitRecord(), manifest=lambda: {})
    assert recorded_config(fresh / "config.yaml", FinetuneConfig).optim.lr == 0.05


class _KilledError(Exception):
    pass


def _killed_after(epochs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next training stop (as a kill would) when it begins its ``epochs + 1``-th epoch."""
    from inpaintssl.training import loop

    run_epoch = loop.Trainer._run_epoch
    done = 0

    def stopped(self: loop.Trainer, *args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if done == epochs:
            raise _KilledError
        done += 1
        return run_epoch(self, *args, **kwargs)

    monkeypatch.setattr(loop.Trainer, "_run_epoch", stopped)


def test_a_resume_back_to_the_checkpoints_budget_puts_it_back_in_config_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Step decay takes a new budget: a resume to 7 epochs rewrote config.yaml and was stopped before
    # its first checkpoint; the next resume, back to 5, trained the 5-epoch run the checkpoint holds
    # and left the record saying 7, which then refused a resume "with the recorded optim.max_epochs".
    def config(max_epochs: int, *, resume: bool) -> dict[str, Any]:
        made = tiny_pretrain_config(
            tmp_path / "run", optim={"recipe": "paper", "max_epochs": max_epochs, "batch_size": 4}
        )
        made["run"]["resume"] = resume
        return made

    recorded = RunFolder(tmp_path / "run").config
    with pytest.warns():  # unconverged, resumed, new budget: the console's warnings are not the point
        with monkeypatch.context() as patched:
            _killed_after(2, patched)
            with pytest.raises(_KilledError):
                issl.pretrain(config(5, resume=False))
        with monkeypatch.context() as patched:
            _killed_after(0, patched)
            with pytest.raises(_KilledError):
                issl.pretrain(config(7, resume=True))
        assert recorded_config(recorded, PretrainConfig).optim.max_epochs == 7
        issl.pretrain(config(5, resume=True))
    assert recorded_config(recorded, PretrainConfig).optim.max_epochs == 5


def test_a_full_disk_stops_tensorboard_with_one_warning_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, a failed write of the event file came back from the next flush as
    # "[Errno 28] No space left on device" naming no file, ending a run whose metrics.csv was fine.
    # (Made to fail in flush itself, where TensorBoard hands its writer thread's failure to the
    # caller: a failure in the thread would outlive the test, reported in a later one.)
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    def full(self: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    board = TensorBoardLog(tmp_path)
    assert board.active
    monkeypatch.setattr(SummaryWriter, "flush", full)
    expected = rf"could not write TensorBoard's event file in {tmp_path / 'tensorboard'}: No space left"
    with pytest.warns(TensorBoardWriteWarning, match=expected):
        board.log({"phase": "pretrain", "loss": 0.5}, step=0)
    assert not board.active
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the later calls write nothing, and say nothing
        board.log({"loss": 0.4}, step=1)
        board.log_image("x", torch.zeros(4, 4), step=1)
        board.close()
