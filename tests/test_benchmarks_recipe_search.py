"""``benchmarks/recipe_search.py`` resumes a stopped search where it stopped, in the run folders it
made, and refuses to mix runs of two budgets in one record (the training is faked: what is checked
is which runs run, where, and what the record says of them)."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class _Stopped(BaseException):
    """The search killed after some runs (as ``kill`` stops it)."""


class _Fake:
    """Stand-ins for the runs: a pretraining run leaves its folder; an SSL run needs it."""

    def __init__(self, *, stop_after: int | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.stop_after = stop_after

    def _started(self, kind: str, config: dict[str, Any]) -> None:
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise _Stopped
        self.calls.append((kind, config))

    def pretrain(self, config: dict[str, Any]) -> dict[str, Any]:
        self._started("pretrain", config)
        (Path(config["run"]["output_dir"]) / "checkpoints").mkdir(parents=True)
        return {
            "best_val_loss": 1.0,
            "converged": True,
            "epochs_run": config["optim"]["max_epochs"],
            "curve": [],
        }

    def finetune(self, config: dict[str, Any]) -> dict[str, Any]:
        self._started("finetune", config)
        pretrained = config.get("transfer", {}).get("pretrained")
        if pretrained is not None and not Path(pretrained).exists():
            raise FileNotFoundError(f"{pretrained} does not exist")  # as issl.finetune's CheckpointError
        return {"val_dice": 0.5, "converged": True, "epochs_run": config["optim"]["max_epochs"], "curve": []}


@pytest.fixture
def search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its default root: a new temporary folder
    return importlib.import_module("recipe_search")


def _run(monkeypatch: pytest.MonkeyPatch, search: ModuleType, fake: _Fake, argv: list[str]) -> int:
    monkeypatch.setattr(search, "_pretrain_run", fake.pretrain)
    monkeypatch.setattr(search, "_finetune_run", fake.finetune)
    result: int = search.main(argv)
    return result


def _stopped_transfer(monkeypatch: pytest.MonkeyPatch, search: ModuleType, argv: list[str]) -> _Fake:
    """The transfer search stopped once its pretraining run is recorded."""
    fake = _Fake(stop_after=1)
    with pytest.raises(_Stopped):
        _run(monkeypatch, search, fake, argv)
    assert [kind for kind, _ in fake.calls] == ["pretrain"]
    return fake


TRANSFER = ["transfer", "--epochs", "1", "--steps", "1", "--pretrain-epochs", "1"]


def test_a_stopped_transfer_search_resumes_from_its_pretraining_run_without_root(
    monkeypatch: pytest.MonkeyPatch, search: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "transfer.json"
    first = _stopped_transfer(monkeypatch, search, [*TRANSFER, "--out", str(out)])
    pretrained = Path(first.calls[0][1]["run"]["output_dir"])
    again = _Fake()
    assert _run(monkeypatch, search, again, [*TRANSFER, "--out", str(out)]) == 0
    assert "pretrain" not in [kind for kind, _ in again.calls]  # recorded: not run again
    ssl = [config for _, config in again.calls if config.get("transfer")]
    assert ssl and {Path(config["transfer"]["pretrained"]) for config in ssl} == {pretrained}
    record = json.loads(out.read_text())
    assert len(record["runs"]) == 1 + len(again.calls)
    assert Path(record["root"]) == pretrained.parent


def test_a_transfer_search_whose_root_is_gone_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, search: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "transfer.json"
    first = _stopped_transfer(monkeypatch, search, [*TRANSFER, "--out", str(out)])
    root = Path(first.calls[0][1]["run"]["output_dir"]).parent
    shutil.rmtree(root)
    again = _Fake()
    with pytest.raises(SystemExit) as stopped:
        _run(monkeypatch, search, again, [*TRANSFER, "--out", str(out)])
    assert stopped.value.code == 2
    assert again.calls == []
    error = capsys.readouterr().err
    assert str(root) in error
    assert "--root" in error


def test_a_root_without_the_recorded_pretraining_run_is_refused(
    monkeypatch: pytest.MonkeyPatch, search: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "transfer.json"
    _stopped_transfer(monkeypatch, search, [*TRANSFER, "--out", str(out), "--root", str(tmp_path / "a")])
    again = _Fake()
    with pytest.raises(SystemExit):
        _run(monkeypatch, search, again, [*TRANSFER, "--out", str(out), "--root", str(tmp_path / "b")])
    assert again.calls == []
    assert str(tmp_path / "b" / "pretrain") in capsys.readouterr().err


@pytest.mark.parametrize(
    ("what", "then", "new"),
    [
        ("pretrain", ["--epochs", "3", "--steps", "1"], "'epochs': 3"),
        ("finetune", ["--epochs", "1", "--steps", "2"], "'steps_per_epoch': 2"),
        ("transfer", ["--epochs", "1", "--steps", "1", "--pretrain-epochs", "2"], "'pretrain_epochs': 2"),
    ],
)
def test_resuming_with_another_budget_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch,
    search: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
    then: list[str],
    new: str,
) -> None:
    # Resumed at --epochs 3, the record said "budget epochs 3" beside a run of 1 epoch.
    common = ["--out", str(tmp_path / "record.json"), "--root", str(tmp_path / "runs")]
    first = (
        ["--epochs", "1", "--steps", "1", "--pretrain-epochs", "1"]
        if what == "transfer"
        else ["--epochs", "1", "--steps", "1"]
    )
    with pytest.raises(_Stopped):
        _run(monkeypatch, search, _Fake(stop_after=1), [what, *first, *common])
    kept = (tmp_path / "record.json").read_text()
    again = _Fake()
    with pytest.raises(SystemExit) as stopped:
        _run(monkeypatch, search, again, [what, *then, *common])
    assert stopped.value.code == 2
    assert again.calls == []
    assert (tmp_path / "record.json").read_text() == kept
    error = " ".join(capsys.readouterr().err.split())
    (name,) = json.loads(kept)["runs"]
    assert repr(name) in error
    assert "'epochs': 1" in error  # the recorded run's
    assert new in error  # this search's


def test_each_run_keeps_its_budget_and_the_same_budget_resumes(
    monkeypatch: pytest.MonkeyPatch, search: ModuleType, tmp_path: Path
) -> None:
    argv = [
        "transfer",
        "--epochs",
        "2",
        "--steps",
        "3",
        "--pretrain-epochs",
        "4",
        "--out",
        str(tmp_path / "r.json"),
    ]
    with pytest.raises(_Stopped):
        _run(monkeypatch, search, _Fake(stop_after=3), argv)
    assert _run(monkeypatch, search, _Fake(), argv) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    budget = {"epochs": 2, "steps_per_epoch": 3, "batch_size": 9, "pretrain_epochs": 4}
    assert record["budget"] == budget
    assert all(run["budget"] == budget for run in record["runs"].values())
    assert record["runs"]["pretrain"]["epochs_run"] == 4  # the pretraining run's own epochs


def test_a_record_from_before_runs_kept_their_budget_resumes_at_its_budget(
    monkeypatch: pytest.MonkeyPatch, search: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "pretrain.json"
    budget = {"epochs": 20, "steps_per_epoch": 10, "batch_size": 9}
    out.write_text(json.dumps({"budget": budget, "runs": {"paper": {"epochs_run": 20}}}))
    fake = _Fake()
    assert (
        _run(monkeypatch, search, fake, ["pretrain", "--out", str(out), "--root", str(tmp_path / "runs")])
        == 0
    )
    assert len(fake.calls) == len(search.PRETRAIN_VARIANTS) - 1
    with pytest.raises(SystemExit):
        _run(monkeypatch, search, _Fake(), ["pretrain", "--epochs", "5", "--out", str(out)])


def test_a_transfer_record_from_before_is_checked_on_the_budget_it_states(
    monkeypatch: pytest.MonkeyPatch, search: ModuleType, tmp_path: Path
) -> None:
    # Its budget names no pretrain_epochs (the committed recipe_search_transfer.json's does not).
    out, root = tmp_path / "transfer.json", tmp_path / "runs"
    (root / "pretrain" / "checkpoints").mkdir(parents=True)
    budget = {"epochs": 1, "steps_per_epoch": 1, "batch_size": 9}
    out.write_text(json.dumps({"budget": budget, "runs": {"pretrain": {"epochs_run": 40}}}))
    fake = _Fake()
    assert _run(monkeypatch, search, fake, [*TRANSFER, "--out", str(out), "--root", str(root)]) == 0
    assert fake.calls and all(kind == "finetune" for kind, _ in fake.calls)
    out.write_text(json.dumps({"budget": budget, "runs": {"pretrain": {"epochs_run": 40}}}))
    with pytest.raises(SystemExit):
        _run(monkeypatch, search, _Fake(), ["transfer", "--epochs", "2", "--steps", "1", "--out", str(out)])


def test_a_finished_search_resumed_does_nothing_without_its_folders(
    monkeypatch: pytest.MonkeyPatch, search: ModuleType, tmp_path: Path
) -> None:
    # As the committed records, whose run folders are long gone: nothing to run, nothing refused.
    out = tmp_path / "transfer.json"
    args = argparse.Namespace(what="transfer", epochs=1, steps=1, pretrain_epochs=1)
    names = [name for name, _, _ in search._jobs(args, Path("."))]
    budget = {"epochs": 1, "steps_per_epoch": 1, "batch_size": 9}
    out.write_text(json.dumps({"budget": budget, "runs": {name: {} for name in names}}))
    fake = _Fake()
    assert _run(monkeypatch, search, fake, [*TRANSFER, "--out", str(out)]) == 0
    assert fake.calls == []
    assert list(tmp_path.iterdir()) == [out]
