"""A new user's mistakes on the command line: each exits 2 with one line naming what was wrong."""

from __future__ import annotations

import argparse
import builtins
import importlib.metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cli_parsers import subparsers
from inpaintssl.cli import build_parser, main, parse_args


def _arguments() -> list[tuple[str, argparse.Action]]:
    found = []
    for path, sub in subparsers(build_parser()):
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = action.option_strings[0] if action.option_strings else action.dest
            found.append((f"{' '.join(path)} {name}", action))
    return found


@pytest.mark.parametrize(("where", "action"), _arguments(), ids=[where for where, _ in _arguments()])
def test_every_argument_says_what_it_is_and_its_default(where: str, action: argparse.Action) -> None:
    assert action.help, f"{where}: no help text"
    # A value used when the flag is absent is one the user should not have to read the code for.
    if action.default not in (None, False, [], argparse.SUPPRESS):
        assert f"default: {action.default}" in action.help, (where, action.default, action.help)


def test_every_subcommand_is_covered_by_the_help_check() -> None:
    covered = {where.rsplit(" ", 1)[0] for where, _ in _arguments()}
    assert {"pretrain", "finetune", "evaluate", "predict", "export", "demo", "plugins", "config"} <= covered
    assert {"experiment run", "experiment status", "experiment report"} <= covered
    assert {"cache info", "cache prune"} <= covered


def test_ctrl_c_while_the_command_starts_prints_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ctrl-C at once lands while PyTorch is imported: the import raises KeyboardInterrupt.
    real_import = builtins.__import__

    def interrupted_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "inpaintssl.checkpoint":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted_import)
    try:
        status = main(["config", "show", "pretrain"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main() (a traceback for the user)")
    monkeypatch.undo()
    assert status == 130
    assert capsys.readouterr().err == "inpaintssl config: interrupted before the command started\n"


# The console script's own import of main(), as pip's generated script does it.
_ENTRY = importlib.metadata.entry_points(group="console_scripts", name="inpaintssl")
_MAIN_MODULE = next(iter(_ENTRY)).module if _ENTRY else "inpaintssl.cli"
_HEAVY = ("pydantic", "numpy", "torch", "yaml")


def test_the_console_script_reaches_main_without_importing_the_heavy_libraries() -> None:
    # What runs before main() has no Ctrl-C handler: it took ~0.8 s (pydantic through
    # inpaintssl.config), and a Ctrl-C in it printed a 30-line traceback.
    code = f"import sys, {_MAIN_MODULE}; print(sorted(m for m in {_HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_ctrl_c_at_the_first_heavy_import_of_a_real_process_prints_one_line_and_exits_130(
    tmp_path: Path,
) -> None:
    # A real SIGINT, sent by the process to itself at the first import of a heavy library (the
    # moment a Ctrl-C at once lands), then the console script's own steps: import main, call it.
    script = textwrap.dedent(
        f"""
        import os, signal, sys

        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a shell's child has it

        class CtrlC:
            def find_spec(self, name, path=None, target=None):
                if name in {_HEAVY!r}:
                    sys.meta_path.remove(self)
                    os.kill(os.getpid(), signal.SIGINT)
                return None

        sys.meta_path.insert(0, CtrlC())
        sys.argv = ["inpaintssl", "config", "show", "pretrain"]
        from {_MAIN_MODULE} import main

        sys.exit(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    # Interrupted while parsing the arguments (no command known yet) or after: one line either way.
    assert done.returncode == 130, done.stderr[-2000:]
    assert re.fullmatch(r"inpaintssl( config)?: interrupted before the command started\n", done.stderr), (
        done.stderr[-2000:]
    )
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("flags", "override", "field"),
    [
        (["--output", "runs/a"], "run.output_dir=runs/b", "run.output_dir"),
        (["--device", "cpu"], "run.device=cuda", "run.device"),
        (["--quiet"], "run.quiet=false", "run.quiet"),
        (["--resume"], "run.resume=false", "run.resume"),
        (["--deterministic"], "run.deterministic=false", "run.deterministic"),
        # Through a mapping of the section: the flag won silently.
        (["--output", "runs/a"], "run={output_dir: runs/b}", "run.output_dir"),
        (["--device", "cpu"], "run={device: cuda, quiet: true}", "run.device"),
    ],
)
@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_a_run_flag_and_an_override_of_its_field_are_refused(
    command: str,
    flags: list[str],
    override: str,
    field: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def trained(config: Any) -> Any:
        pytest.fail(f"trained with {field} set twice; the flag won silently")

    monkeypatch.setattr(f"inpaintssl.api.{command}", trained)
    assert main([command, *flags, override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"inpaintssl {command}: error: {flags[0]}")
    assert f"the override {override!r} both set {field}; expected one of them" in err


@pytest.mark.parametrize("flag", ["--output", "--device"])
def test_a_run_flag_given_twice_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["pretrain", flag, "a", flag, "b"])
    assert exited.value.code == 2
    assert f"{flag} given twice ('a' and 'b'); give it once" in capsys.readouterr().err


def _flags_taking_a_value() -> list[tuple[tuple[str, ...], str, str]]:
    """Each subcommand's flags that take one value once, with a value its type takes."""
    found = []
    for words, parser in subparsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.nargs not in (None, "?") or action.const is not None:
                continue
            if isinstance(action, argparse._AppendAction):
                continue  # repeatable by design (--slurm-option KEY=VALUE, once per option)
            candidates = [str(c) for c in action.choices or ()] or ["1", "1G", "1d", "0/1", "a"]
            for value in candidates:
                try:
                    (action.type or str)(value)
                except (ValueError, TypeError, argparse.ArgumentTypeError):
                    continue
                found.append((words, action.option_strings[-1], value))
                break
    return found


@pytest.mark.parametrize(("words", "flag", "value"), _flags_taking_a_value())
def test_every_flag_that_takes_a_value_is_refused_given_twice(
    words: tuple[str, ...], flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # evaluate --output a.csv --output b.csv wrote b.csv alone; predict and export likewise.
    with pytest.raises(SystemExit) as exited:
        parse_args([*words, flag, value, flag, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} given twice" in err and err.endswith("; give it once\n"), err


def test_an_override_without_its_value_in_first_place_is_not_called_a_missing_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "show", "pretrain", "optim.lr"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "inpaintssl config: error: 'optim.lr': expected a config file (.yaml, .yml or .json) or a "
        "section.field=value override; found no file of that name and no '=' in it\n"
    )


def test_a_missing_config_file_is_still_called_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "pre.yaml"
    assert main(["config", "show", "pretrain", str(missing)]) == 2
    assert capsys.readouterr().err == f"inpaintssl config: error: config file {missing} does not exist\n"


@pytest.mark.parametrize(
    ("override", "found"),
    [("data.image_size=[1, 2", "'[1, 2'"), ("optim.lr=@x", "'@x'"), ("run.output_dir={a", "'{a'")],
)
def test_an_override_value_that_is_not_yaml_is_one_line(
    override: str, found: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show", "pretrain", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"inpaintssl config: error: override {override!r}: expected a YAML value")
    assert f"found {found}" in err


def test_demo_output_that_is_a_file_is_refused_before_the_demo_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def demo(**kwargs: Any) -> None:
        raise FileExistsError(17, "File exists", str(kwargs["output"]))

    monkeypatch.setattr("inpaintssl.studies.demo.run_demo", demo)
    a_file = tmp_path / "pre.yaml"
    a_file.write_text("{}\n")
    assert main(["demo", "--quick", "--output", str(a_file)]) == 2
    assert capsys.readouterr().err == (
        f"inpaintssl demo: error: --output {a_file} is a file; expected a folder for the report "
        "(new or earlier)\n"
    )


@pytest.mark.parametrize("command", ["run", "status", "report"])
def test_an_experiment_spec_that_is_a_folder_is_called_a_folder(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["experiment", command, str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"inpaintssl experiment: error: study spec {tmp_path} is a folder; expected a YAML file such "
        "as study.yaml\n"
    )


def test_evaluate_output_that_is_a_folder_is_refused_before_scoring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def scored(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("the split was scored before the output was found to be a folder")

    monkeypatch.setattr("inpaintssl.api.evaluate", scored)
    run = tmp_path / "run"
    run.mkdir()
    assert main(["evaluate", str(run), "--split", "val", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"inpaintssl evaluate: error: --output {tmp_path} is a folder; expected the CSV file to write, "
        f"such as {tmp_path / 'eval_val.csv'}\n"
    )


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_evaluate_data_that_is_not_a_file_names_the_flag_before_scoring(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def scored(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("the split was scored before --data was found not to be a file")

    monkeypatch.setattr("inpaintssl.api.evaluate", scored)
    run = tmp_path / "run"
    run.mkdir()
    data = tmp_path / "data.yaml"
    if kind == "folder":
        data.mkdir()
    found = "is a folder" if kind == "folder" else "does not exist"
    assert main(["evaluate", str(run), "--data", str(data)]) == 2
    assert capsys.readouterr().err == (
        f"inpaintssl evaluate: error: --data {data} {found}; expected a YAML/JSON file holding the data "
        "section's fields or a whole run config\n"
    )
