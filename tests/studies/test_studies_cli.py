"""``inpaintssl experiment run|status|report`` through the real console parser."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from inpaintssl.cli import main


def _write(spec: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_run_status_and_report(spec_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write(
        spec_factory(
            label_fractions=[0.5], baseline=False, grid={"pretrain.pretext.task": ["context_restoration"]}
        ),
        tmp_path,
    )
    assert main(["experiment", "status", spec]) == 0
    assert "pretext_design: 0 of 2 runs done" in capsys.readouterr().out

    assert main(["experiment", "run", spec, "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == {"done": 2} and summary["executed"] == {"pretrain": 1, "finetune": 1}

    assert main(["experiment", "status", spec]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 runs done" in out and "pretrain: 1 done" in out

    report = tmp_path / "report"
    assert main(["experiment", "report", spec, "--output", str(report)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert Path(written["html"]) == report / "report.html" and (report / "report.md").is_file()
    assert (report / "table2_l2_norm.csv").is_file()

    # A later version of the spec (another label fraction): its report leaves the old run out.
    changed = yaml.safe_load(Path(spec).read_text())
    changed["label_fractions"] = [0.25]
    Path(spec).write_text(yaml.safe_dump(changed))
    assert main(["experiment", "run", spec, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["executed"] == {"finetune": 1}
    assert main(["experiment", "report", spec, "--output", str(tmp_path / "report2")]) == 0
    err = capsys.readouterr().err
    assert "left out 1 recorded run(s) that this spec does not plan" in err
    with open(tmp_path / "report2" / "results.csv", newline="") as handle:
        finetune_runs = {row["run_id"] for row in csv.DictReader(handle) if row["kind"] == "finetune"}
    assert len(finetune_runs) == 1


def test_run_exits_1_when_a_run_fails(
    spec_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(
        spec_factory(
            label_fractions=[0.5], baseline=False, max_attempts=1, grid={"pretrain.pretext.patch_size": [64]}
        ),
        tmp_path,
    )
    assert main(["experiment", "run", spec, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "failed: pt-" in err and "patch_size=64" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "3/2"], "--shard '3/2' is invalid"),
        (["--workers", "0"], "workers=0"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    spec_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    spec = _write(spec_factory(), tmp_path)
    assert main(["experiment", "run", spec, *args]) == 2
    assert message in capsys.readouterr().err


def test_an_invalid_spec_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write({"study": "pretext_design", "grid": {"pretrain.pretext.patch_sise": [8]}}, tmp_path)
    assert main(["experiment", "status", spec]) == 2
    assert "pretext.patch_sise" in capsys.readouterr().err
