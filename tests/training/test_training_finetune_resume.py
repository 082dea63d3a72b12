"""A fine-tuning run resumes from its own checkpoint, whatever became of its pretrained source."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import inpaintssl as issl
from inpaintssl.checkpoint import load_checkpoint
from inpaintssl.training import loop
from study_helpers import tiny_pretrain_config


class _KilledError(Exception):
    pass


def _finetune_config(pretrained: Path, output: Path, *, resume: bool = False) -> dict[str, Any]:
    config = tiny_pretrain_config(output, optim={"max_epochs": 2, "batch_size": 4})
    del config["pretext"]
    config["transfer"] = {"pretrained": str(pretrained), "schedule": "freeze_then_unfreeze"}
    config["run"]["resume"] = resume
    return config


def test_a_resume_after_the_pretrained_run_was_moved_trains_on_from_its_own_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every weight comes from checkpoints/last on a resume: the transfer was done when the run
    # began, and is recorded. Transferring again refused the resume once the source had moved.
    pretrained = tmp_path / "pre"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issl.pretrain(tiny_pretrain_config(pretrained))
        whole_result = issl.finetune(_finetune_config(pretrained, tmp_path / "whole"))
        epochs = 0
        run_epoch = loop.Trainer._run_epoch

        def killed_in_the_second_phase(self: loop.Trainer, *args: Any, **kwargs: Any) -> Any:
            nonlocal epochs
            if epochs == 3:
                raise _KilledError
            epochs += 1
            return run_epoch(self, *args, **kwargs)

        with monkeypatch.context() as patched:
            patched.setattr(loop.Trainer, "_run_epoch", killed_in_the_second_phase)
            with pytest.raises(_KilledError):
                issl.finetune(_finetune_config(pretrained, tmp_path / "killed"))
        recorded = json.loads((tmp_path / "killed" / "manifest.json").read_text())["transfer"]
        shutil.move(pretrained, tmp_path / "moved")
        result = issl.finetune(_finetune_config(pretrained, tmp_path / "killed", resume=True))
    assert [row["phase"] for row in result.history] == ["frozen"] * 2 + ["unfrozen"] * 2
    # The same bits as the run that was never stopped, and the transfer it recorded kept.
    whole, _ = load_checkpoint(tmp_path / "whole")
    resumed, _ = load_checkpoint(tmp_path / "killed")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert recorded.startswith("transfer 'encoder' (parts: encoder): copied ")
    assert json.loads((tmp_path / "killed" / "manifest.json").read_text())["transfer"] == recorded
    # The resumed run transferred at its start and says what it copied, as the whole run does; it
    # reported transfer=None, which the result documents as "from scratch".
    assert whole_result.transfer is not None
    assert result.transfer == whole_result.transfer


def test_a_fresh_run_still_needs_its_pretrained_source(tmp_path: Path) -> None:
    # Only a resume with a checkpoint to resume skips the transfer; a resume of nothing starts fresh.
    config = _finetune_config(tmp_path / "missing", tmp_path / "ft", resume=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception, match="missing"):
            issl.finetune(config)


def test_a_resumed_finished_run_hands_back_its_model_in_eval_mode(tmp_path: Path) -> None:
    # A finished run resumed trains nothing: its model, built afresh in train mode, came back in
    # the mode the test pass left it, and evaluation now leaves a module's modes as it found them.
    config = tiny_pretrain_config(tmp_path / "ft", optim={"max_epochs": 1, "batch_size": 4})
    del config["pretext"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issl.finetune(config)
        config["run"]["resume"] = True
        resumed = issl.finetune(config)
        pretrained = issl.pretrain(tiny_pretrain_config(tmp_path / "pre", optim={"max_epochs": 1}))
    assert resumed.model is not None and pretrained.model is not None
    assert not any(module.training for module in resumed.model.modules())
    assert not any(module.training for module in pretrained.model.modules())
