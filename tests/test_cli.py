"""The console script is a thin layer over the typed API."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from inpaintssl.cli import main


def test_plugins_lists_every_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind in ("pretext_tasks", "samplers", "backbones", "losses", "transfer_strategies", "datasets"):
        assert f"{kind} (entry-point group inpaintssl.{kind})" in out
    for name in ("context_restoration", "poisson_disc", "unet2d", "dice", "encoder_decoder", "mni152"):
        assert name in out


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in report["samplers"]} >= {"random", "poisson_disc"}


def test_config_show_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "finetune", "optim.lr=0.01", "transfer.weights=encoder_decoder"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["optim"]["lr"] == 0.01 and shown["transfer"]["weights"] == "encoder_decoder"


def test_config_error_exits_2_with_the_field_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "pretrain", "optim.lrr=0.01"]) == 2
    assert "optim.lrr" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "inpaintssl", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.startswith("inpaintssl ")
