"""``benchmarks/provenance.py``: the command a record gives reruns it from the repository's root,
relative paths and all, and the scripts' counting options refuse a count too small before any work."""

from __future__ import annotations

import argparse
import importlib
import os
import stat
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
REPO = BENCHMARKS.parent


@pytest.fixture
def provenance(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("provenance")


def _rerun(command: str, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Where ``command``, run by a shell in the repository's root, starts python: its working
    folder, the script it names and the other arguments (a stand-in ``python`` prints them)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$PWD" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    folder, script, *args = done.stdout.splitlines()
    return Path(folder), Path(folder, script).resolve(), args


@pytest.mark.parametrize("where", ["root", "benchmarks", "outside", "outside with space"])
def test_the_command_reruns_the_script_on_the_same_paths_from_the_root(
    provenance: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # The seven records written from benchmarks/ say "python benchmarks/... --out results/x.json",
    # which from the root writes <repo>/results/, not benchmarks/results/.
    folder = {"root": REPO, "benchmarks": BENCHMARKS}.get(where, tmp_path / where.replace("outside", "away"))
    folder.mkdir(exist_ok=True)
    monkeypatch.chdir(folder)
    script = BENCHMARKS / "bench_label_map_formats.py"
    command = provenance.command(script, ["--repeats", "5", "--out", "results/x.json"])
    started_in, named, args = _rerun(command, tmp_path)
    assert named == script.resolve()
    assert args[:3] == ["--repeats", "5", "--out"]
    assert (started_in / args[3]).resolve() == (folder / "results" / "x.json").resolve()


def test_the_record_names_the_folder_it_ran_in(
    provenance: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BENCHMARKS)
    assert provenance.provenance(BENCHMARKS / "bench_system.py", [])["cwd"] == "benchmarks"
    monkeypatch.chdir(REPO)
    assert provenance.provenance(BENCHMARKS / "bench_system.py", [])["cwd"] == "."
    monkeypatch.chdir(tmp_path)
    assert Path(provenance.provenance(BENCHMARKS / "bench_system.py", [])["cwd"]) == tmp_path.resolve()


@pytest.mark.parametrize(("minimum", "given"), [(1, "0"), (1, "-3"), (2, "1"), (1, "two")])
def test_a_count_too_small_is_refused_naming_the_option_the_bound_and_the_value(
    provenance: ModuleType, capsys: pytest.CaptureFixture[str], minimum: int, given: str
) -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--repeats", type=provenance.at_least(minimum), default=3)
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--repeats", given])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "argument --repeats" in error
    assert f">= {minimum}" in error
    assert repr(given) in error


def test_a_count_at_the_bound_is_taken(provenance: ModuleType) -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--epochs", type=provenance.at_least(2), default=5)
    assert parser.parse_args(["--epochs", "2"]).epochs == 2
    assert parser.parse_args([]).epochs == 5
