"""The console's kept epoch is the one metrics.csv records, whichever way it is counted."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from inpaintssl.cli import main
from study_helpers import tiny_pretrain_config

DONE = re.compile(
    r"^(pretrain|finetune) done: (\d+) epochs.* in epoch (\d+) of (\d+) \(metrics\.csv epoch (\d+)\)"
)
STARRED = re.compile(r"\[(\w+)\] epoch (\d+): .* \*$")


def _config(stage: str, output: Path) -> dict[str, Any]:
    config: dict[str, Any] = tiny_pretrain_config(output, optim={"max_epochs": 4}, run={"quiet": False})
    if stage == "finetune":
        del config["pretext"]
        config["transfer"] = {"pretrained": None}
    return config


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_the_printed_best_epoch_is_metrics_csv_best_row(
    stage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"{stage}.yaml"
    path.write_text(yaml.safe_dump(_config(stage, tmp_path / "run")))
    with caplog.at_level(logging.INFO, logger="inpaintssl"):
        assert main([stage, str(path)]) == 0
    lines = [m for m in map(DONE.match, capsys.readouterr().out.splitlines()) if m]
    assert len(lines) == 1, "one summary line"
    _, epochs_run, ordinal, of, csv_epoch = lines[0].groups()

    with (tmp_path / "run" / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    best = min(range(len(rows)), key=lambda i: float(rows[i]["val_loss"]))
    # The number to look up in metrics.csv is that file's own: the row with the lowest val_loss.
    assert int(csv_epoch) == int(rows[best]["epoch"])
    # Counted from 1, it is that row's place in the file, of as many rows as the run has epochs.
    assert (int(ordinal), int(of)) == (best + 1, len(rows))
    assert int(epochs_run) == len(rows)
    # The --quiet log lines (logged here too) star the same epoch last.
    starred = [m for m in map(STARRED.search, caplog.messages) if m]
    assert starred and int(starred[-1].group(2)) == int(csv_epoch)
