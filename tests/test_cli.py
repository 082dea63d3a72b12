"""The console script is a thin layer over the typed API."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli_parsers import subparsers
from inpaintssl import cli
from inpaintssl.cli import _data_overrides, build_parser, main, parse_args
from inpaintssl.warning_format import command_warnings


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
    overrides = ["optim.lr=0.01", "transfer.pretrained=runs/pre", "transfer.weights=encoder_decoder"]
    assert main(["config", "show", "finetune", *overrides]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["optim"]["lr"] == 0.01 and shown["transfer"]["weights"] == "encoder_decoder"


def test_config_schema_refuses_what_it_would_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema", "pretrain", "optim.lr=1"]) == 2
    assert "config schema takes only the stage; found 'optim.lr=1'" in capsys.readouterr().err
    assert main(["config", "schema", "pretrain"]) == 0
    assert json.loads(capsys.readouterr().out)["additionalProperties"] is False


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


@pytest.mark.slow
def test_finetune_then_evaluate_reuses_the_runs_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "ft"
    overrides = [
        "data.dataset=synthetic",
        "data.params={num_images: 8, num_val: 2, num_test: 3, size: [16, 16]}",
        "model.params={depth: 2, base_width: 4}",
        "optim.max_epochs=1",
        f"run.output_dir={run}",
    ]
    assert main(["finetune", *overrides, "--quiet", "--device", "cpu"]) == 0
    finetuned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["images"] == 3 and Path(report["output"]) == run / "eval_test.csv"
    assert report["mean"]["dice_disc"] == pytest.approx(finetuned["test_dice"]["disc"], abs=1e-6)
    # A checkpoint folder: the run's data, and the table goes to the run folder.
    for target in (run / "checkpoints" / "best", run / "checkpoints" / "last"):
        (run / "eval_test.csv").unlink()
        assert main(["evaluate", str(target), "--device", "cpu"]) == 0
        again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert Path(again["output"]) == run / "eval_test.csv" and again["mean"] == report["mean"]
    # An evaluate config as `config show evaluate` writes it: its fields, and flags beside it win.
    assert main(["config", "show", "evaluate", f"checkpoint={run}", "split=val", "device=cpu"]) == 0
    config = tmp_path / "eval.yaml"
    config.write_text(capsys.readouterr().out)
    assert yaml.safe_load(config.read_text())["data"] is None  # the run's own record
    assert main(["evaluate", str(config)]) == 0
    val = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(val["output"]) == run / "eval_val.csv" and val["images"] == 2
    assert main(["evaluate", str(config), "--split", "test", "--output", str(tmp_path / "t.csv")]) == 0
    flagged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert flagged["output"] == str(tmp_path / "t.csv") and flagged["mean"] == report["mean"]
    # A data section in the file and --data: two answers to one question, refused.
    config.write_text(yaml.safe_dump({"checkpoint": str(run), "data": {"dataset": "synthetic"}}))
    assert main(["evaluate", str(config), "--data", str(run / "config.yaml")]) == 2
    assert "expected one of them" in capsys.readouterr().err


@pytest.mark.slow
def test_flags_beside_an_evaluate_config_file_keep_the_runs_recorded_slice_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: any flag beside the file re-validated it from a full dump, which marked the data
    # section's left-out image_size as given (null): whole 16x16 slices were scored, not the
    # run's 8x8 ones, and the Dice changed without a word.
    run = tmp_path / "ft"
    params = {"num_images": 8, "num_val": 2, "num_test": 3, "size": [16, 16]}
    overrides = [
        "data.dataset=synthetic",
        f"data.params={json.dumps(params)}",
        "data.image_size=[8, 8]",
        "model.params={depth: 2, base_width: 4}",
        "optim.max_epochs=1",
        f"run.output_dir={run}",
    ]
    assert main(["finetune", *overrides, "--quiet", "--device", "cpu"]) == 0
    finetuned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_dice"]
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump({"checkpoint": str(run), "data": {"dataset": "synthetic", "params": params}})
    )
    for flags in ([], ["--device", "cpu"], ["--batch-size", "2"]):
        assert main(["evaluate", str(config), *flags, "--output", str(tmp_path / "t.csv")]) == 0
        mean = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mean"]
        # The training's own test scores are those of the run's 8x8 slices.
        assert mean["dice_disc"] == pytest.approx(finetuned["disc"], abs=1e-6), flags
        assert mean["dice_square"] == pytest.approx(finetuned["square"], abs=1e-6), flags


_TINY_PRETRAIN = [
    "data.dataset=synthetic",
    "data.params={num_images: 6, num_val: 2, num_test: 2, size: [16, 16]}",
    "model.params={depth: 2, base_width: 4}",
    "pretext.patch_size=4",
    "optim.max_epochs=1",
    "optim.steps_per_epoch=1",
]


@pytest.mark.parametrize("name", ["a\x85b", "a\u2028b", "exp #3 \U0001f9e0", "2024", 'q"u\\o'])
def test_output_is_the_folder_named_character_for_character(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # Was: the name went through YAML raw, which folds a NEL or line separator inside quotes to a
    # space: --output 'runs/a<NEL>b' trained into 'runs/a b'.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(
            ["pretrain", *_TINY_PRETRAIN, "--quiet", "--device", "cpu", "--output", str(tmp_path / name)]
        )
    assert code == 0
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"] == str(tmp_path / name)


def test_an_output_name_with_bytes_that_are_not_utf8_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Latin-1 byte in a name reaches Python as a lone surrogate: the run created the folder, then
    # failed to record it ("'utf-8' codec can't encode character '\udce9'"), naming no field.
    name = os.fsdecode(b"caf\xe9")
    assert (
        main(["pretrain", *_TINY_PRETRAIN, "--quiet", "--device", "cpu", "--output", str(tmp_path / name)])
        == 2
    )
    assert "byte 0xe9 at character" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_config_show_evaluate_marks_the_required_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "evaluate"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["checkpoint"].startswith("<required") and shown["split"] == "test"
    assert main(["config", "show", "evaluate", "checkpoint=runs/ft"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["checkpoint"] == "runs/ft"


def test_evaluate_overrides_take_the_data_prefix_and_warn_without_it() -> None:
    assert _data_overrides(["data.image_size=[64, 64]"]) == ["data.image_size=[64, 64]"]
    with pytest.warns(FutureWarning, match=r"write 'data.image_size=\[64, 64\]'"):
        assert _data_overrides(["image_size=[64, 64]"]) == ["data.image_size=[64, 64]"]
    # A whole section, as pretrain and finetune take one: it was prefixed to data.data={...}.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _data_overrides(["data={image_size: [64, 64]}"]) == ["data={image_size: [64, 64]}"]


def test_the_librarys_warnings_print_as_command_line_messages(tmp_path: Path) -> None:
    # A real console: the warning goes through Python's own showwarning to stderr, before the error.
    argv = ["evaluate", str(tmp_path / "no-run"), "image_size=[64, 64]"]
    done = subprocess.run([sys.executable, "-m", "inpaintssl", *argv], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "inpaintssl evaluate: warning: override 'image_size=[64, 64]' without the 'data.' prefix is "
        "deprecated; write 'data.image_size=[64, 64]' as pretrain and finetune do",
        f"inpaintssl evaluate: error: {tmp_path / 'no-run'} does not exist (expected a .safetensors "
        "file, a checkpoint folder or a run folder)",
    ]


def test_other_packages_warnings_keep_their_source_line() -> None:
    with command_warnings("predict"):
        other = warnings.formatwarning("careful", UserWarning, "/site-packages/torch/nn.py", 7)
        ours = warnings.formatwarning("careful", UserWarning, str(Path(cli.__file__)), 7)
    assert other.startswith("/site-packages/torch/nn.py:7: UserWarning: careful")
    assert ours == "inpaintssl predict: warning: careful\n"
    assert warnings.formatwarning("x", UserWarning, str(Path(cli.__file__)), 1).startswith(cli.__file__)


def test_every_subcommand_help_shows_an_example_of_itself() -> None:
    found = dict(subparsers(build_parser()))
    assert {("predict",), ("export",), ("experiment", "run"), ("config",)} <= set(found)
    for path, sub in found.items():
        epilog = sub.epilog or ""
        # The example runs this very subcommand (for a group such as `experiment`, one of its own).
        assert epilog.startswith(f"example: inpaintssl {' '.join(path)}"), (path, epilog)


@pytest.mark.parametrize(
    ("argv", "field", "words"),
    [
        (["pretrain", "pre.yaml", "--quiet", "optim.lr=0.1"], "items", ["pre.yaml", "optim.lr=0.1"]),
        (
            ["finetune", "--resume", "ft.yaml", "--output", "r", "a=1", "b=2"],
            "items",
            ["ft.yaml", "a=1", "b=2"],
        ),
        (
            ["evaluate", "runs/ft", "--split", "val", "data.image_size=[8,8]"],
            "overrides",
            ["data.image_size=[8,8]"],
        ),
        (["predict", "runs/ft", "a.nii", "--output", "o", "b.nii"], "inputs", ["a.nii", "b.nii"]),
        (["config", "show", "pretrain", "optim.lr=1"], "items", ["optim.lr=1"]),
    ],
)
def test_overrides_and_inputs_may_follow_the_flags(argv: list[str], field: str, words: list[str]) -> None:
    assert getattr(parse_args(argv), field) == words


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["pretrain", "pre.yaml", "--ouput", "r"], "pretrain"),
        (["experiment", "status", "spec.yaml", "extra"], "experiment status"),
        (["plugins", "optim.lr=1"], "plugins"),
    ],
)
def test_unknown_arguments_are_reported_by_their_subcommand(
    argv: list[str], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    unknown = " ".join(argv[-2:]) if argv[-2].startswith("-") else argv[-1]
    assert f"inpaintssl {command}: error: unrecognized arguments: {unknown}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{{", r"config file .*config\.yaml is not valid YAML"),
        ("- a\n", r"config\.yaml: expected a mapping at the top level, found list"),
        ("data: 5\n", r"config\.yaml: 'data' holds a int; expected the data section"),
        (b"\xff\xfe", r"config\.yaml is not UTF-8 text"),
    ],
)
def test_evaluate_names_a_damaged_run_config(
    content: str | bytes, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    if isinstance(content, bytes):
        (run / "config.yaml").write_bytes(content)
    else:
        (run / "config.yaml").write_text(content)
    assert main(["evaluate", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.startswith("inpaintssl evaluate: error: "), err


def test_evaluate_without_a_recorded_config_asks_for_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before, the defaults (the demo's brain data) were used without a word.
    (tmp_path / "run").mkdir()
    assert main(["evaluate", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no config.yaml recorded beside it" in err and "--data FILE on the command line" in err


@pytest.mark.parametrize("recipe", ["budget", "paper"])
def test_config_show_says_what_the_recipe_fills_in_and_stays_a_config(
    recipe: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from inpaintssl.config import RECIPES, FinetuneConfig

    assert main(["config", "show", "finetune", f"optim.recipe={recipe}", "optim.betas=[0.5, 0.6]"]) == 0
    out = capsys.readouterr().out
    shown = yaml.safe_load(out)  # the comments do not change the config it prints
    assert FinetuneConfig.model_validate(shown).optim.recipe == recipe
    filled = [line for line in out.splitlines() if line.startswith("#   ")]
    defaults = RECIPES[recipe]
    assert filled == [
        f"#   optim.lr: {json.dumps(defaults.lr)}",
        f'#   optim.schedule: "{defaults.schedule}"',
        f'#   loss.name: "{defaults.loss}"',
    ]  # optim.betas was given, so the recipe does not fill it


def test_a_shard_given_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse keeps the last value: a script that appends --shard would run another shard silently.
    with pytest.raises(SystemExit) as info:
        parse_args(["experiment", "run", "spec.yaml", "--shard", "0/2", "--shard", "1/2"])
    assert info.value.code == 2
    assert (
        "inpaintssl experiment run: error: --shard given twice ('0/2' and '1/2')" in capsys.readouterr().err
    )
    assert parse_args(["experiment", "run", "spec.yaml", "--shard", "1/2"]).shard == "1/2"


@pytest.mark.parametrize("shard", ["-1/2", "-0/0"])
def test_a_shard_starting_with_a_minus_gets_the_library_message(
    shard: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # argparse reads "-1/2" as a flag and says "expected one argument", which hides the bad value.
    assert parse_args(["experiment", "run", "spec.yaml", "--shard", shard]).shard == shard
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\n", encoding="utf-8")
    assert main(["experiment", "run", str(spec), "--shard", shard]) == 2
    assert f"--shard '{shard}' is invalid; expected 'i/n' with 0 <= i < n" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["exp #3", "2024", "true", "2024-05-01", "@x", "'q'", "~/runs/a", "emo-\U0001f9e0", "café"]
)
def test_output_is_a_path_not_yaml(name: str) -> None:
    from inpaintssl.cli import _training_input
    from inpaintssl.config import PretrainConfig, apply_overrides

    # "exp #3" read as YAML lost its " #3" and trained into ./exp; "2024" was a number.
    _, overrides = _training_input(parse_args(["pretrain", "--output", name]))
    config = apply_overrides(PretrainConfig(), overrides)
    assert config.run.output_dir == Path(name).expanduser()


def test_evaluate_on_a_missing_path_says_it_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'} does not exist (expected a .safetensors file" in capsys.readouterr().err


def test_ctrl_c_prints_one_line_that_says_how_to_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_pretrain", interrupted)
    assert main(["pretrain"]) == 130
    assert capsys.readouterr().err == (
        "inpaintssl pretrain: interrupted; the same command with --resume continues from the last "
        "checkpoint\n"
    )


def test_sigterm_prints_one_line_that_says_how_to_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # scancel or a preemption sends SIGTERM: the command exits 143 through its cleanups, and says
    # so as Ctrl-C does, instead of stopping its output without a word.
    import os
    import signal
    import time

    def terminated(args: argparse.Namespace) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in this thread at the next bytecode
        raise AssertionError("SIGTERM did not end the command")

    monkeypatch.setattr(cli, "_cmd_pretrain", terminated)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as caught:
        main(["pretrain"])
    assert caught.value.code == 143
    assert capsys.readouterr().err == (
        "inpaintssl pretrain: terminated (SIGTERM); the same command with --resume continues from the "
        "last checkpoint\n"
    )
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize(
    ("signal_name", "status", "said"),
    [("SIGTERM", 143, "terminated (SIGTERM)"), ("SIGINT", 130, "interrupted")],
)
def test_a_signal_that_lands_in_a_finaliser_still_ends_the_command(
    signal_name: str,
    status: int,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The handler runs wherever the main thread is. Inside a weakref callback (matplotlib has many)
    # Python drops the exception with "Exception ignored in ...", and a CI run saw the command then
    # finish its training and exit 0 after scancel. The signal must still end it, as it says.
    import signal
    import threading
    import time
    import weakref

    class Figure:
        pass

    handled_in_the_finaliser = True

    def collected(ref: object) -> None:
        nonlocal handled_in_the_finaliser
        signal.raise_signal(signal.Signals[signal_name])  # the handler runs inside this call
        handled_in_the_finaliser = False

    def signalled_in_a_finaliser(args: argparse.Namespace) -> int:
        figure = Figure()
        watch = weakref.ref(figure, collected)
        del figure
        assert watch() is None
        # Blocked, as a study's driver waits on its workers: the signal sent again must reach
        # this thread and interrupt the wait, not only be noticed once the wait ends.
        threading.Event().wait(30)
        raise AssertionError(f"the {signal_name} dropped in the finaliser did not end the command")

    monkeypatch.setattr(cli, "_cmd_pretrain", signalled_in_a_finaliser)
    hook_before = sys.unraisablehook
    # Ctrl-C as at a terminal: a shell starts a background job (``make test &``) with SIGINT
    # ignored, and Python then leaves it so.
    sigint_before = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    try:
        returned = main(["pretrain"])
    except SystemExit as exc:  # SIGTERM's exit goes on up, for the interpreter to exit 143
        returned = exc.code
    finally:
        signal.signal(signal.SIGINT, sigint_before)
    assert returned == status
    assert time.monotonic() - started < 15, "the wait was not interrupted; it ran out"
    assert handled_in_the_finaliser, "the signal was not handled inside the finaliser"
    err = capsys.readouterr().err
    assert "Exception ignored" not in err
    assert err == (
        f"inpaintssl pretrain: {said}; the same command with --resume continues from the last checkpoint\n"
    )
    assert sys.unraisablehook is hook_before


def test_a_full_disk_in_safetensors_exits_2_naming_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # safetensors reports a full disk with its own SafetensorError: it came out as a traceback with
    # exit status 1, naming neither the checkpoint nor the full disk as such.
    from safetensors import SafetensorError

    from study_helpers import tiny_pretrain_config

    def full_disk(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("inpaintssl.checkpoint.save_file", full_disk)
    config = tmp_path / "pretrain.json"
    config.write_text(json.dumps(tiny_pretrain_config(tmp_path / "run", optim={"max_epochs": 1})))
    assert main(["pretrain", str(config)]) == 2
    err = capsys.readouterr().err
    assert re.search(
        r"^inpaintssl pretrain: error: \[Errno 28\] could not write checkpoint "
        r".*run/checkpoints/(best\.pending|last): No space left on device$",
        err,
        re.MULTILINE,
    ), err
    assert "Traceback" not in err and "SafetensorError" not in err


def test_a_config_file_whose_path_holds_an_equals_sign_is_read_as_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Sweep folders are often named lr=0.1; the path was taken for a malformed override.
    config = tmp_path / "lr=0.1" / "pre.yaml"
    config.parent.mkdir()
    config.write_text("optim: {lr: 0.1, max_epochs: 7}\n")
    assert main(["config", "show", "pretrain", str(config), "optim.max_epochs=8"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["optim"]["lr"], shown["optim"]["max_epochs"]) == (0.1, 8)
    # A missing file with "=" in its name is an override still, refused as one.
    assert main(["config", "show", "pretrain", str(tmp_path / "lr=0.2" / "pre.yaml")]) == 2
    assert "unknown field" in capsys.readouterr().err


def test_a_training_step_that_cannot_fit_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The memory check names the settings to lower: a bad setting like any other, not a traceback.
    argv = [
        "pretrain",
        "data.dataset=synthetic",
        "data.image_size=[65536, 65536]",
        "optim.batch_size=8",
        "--device",
        "cpu",
        "--output",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "inpaintssl pretrain: error: data.image_size=[65536, 65536] with optim.batch_size=8"
    )
    assert "Lower data.image_size or optim.batch_size" in err and "Traceback" not in err


@pytest.mark.parametrize("seed", ["-1", "4294967296", "x"])
def test_a_demo_seed_out_of_range_is_refused_by_its_flag(
    seed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["demo", "--seed", seed])
    assert exited.value.code == 2
    assert "argument --seed: expected an integer from 0 to 2**32 - 1, found" in capsys.readouterr().err


def test_evaluate_checks_its_flags_by_the_evaluate_configs_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before anything is read, naming the field (DataLoader would have said it later).
    assert main(["evaluate", str(tmp_path / "nope"), "--batch-size", "0"]) == 2
    assert re.search(r"batch_size: .*greater than 0", capsys.readouterr().err)


def test_evaluate_data_expands_the_home_folder() -> None:
    args = parse_args(["evaluate", "runs/ft", "--data", "~/data.yaml"])
    assert args.data == Path.home() / "data.yaml"


def test_two_config_files_are_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "pre.yaml", tmp_path / "ft.yaml"
    first.write_text("{}\n")
    second.write_text("{}\n")
    assert main(["pretrain", str(first), str(second), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "two config files given" in err and "ft.yaml" in err and "must look like" not in err


@pytest.mark.parametrize(
    "item",
    [
        "optim.lr=1",
        "model.params.depth=3",
        "run.seed=2",
        "pretext.patch_size=4",
        "loss.name=dice",
        "early_stopping.patience=3",
        "transfer.weights=encoder",
    ],
)
def test_evaluate_refuses_training_settings_instead_of_prefixing_them(
    item: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no "write data.optim.lr" advice
        assert main(["evaluate", str(tmp_path), item]) == 2
    err = capsys.readouterr().err
    assert f"override {item!r}: evaluate reads a trained network, so it takes only data.KEY=VALUE" in err


class _Table:
    """What ``evaluate`` returns, as far as the command reads it."""

    def select(self, *, level: str) -> _Table:
        return self

    def mean(self) -> dict[str, float]:
        return {"dice_mean": 0.5}

    def __len__(self) -> int:
        return 3


@pytest.mark.parametrize("command", ["pretrain", "finetune", "evaluate"])
def test_under_torchrun_only_rank_0_prints_a_summary(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every rank returns from training, but only rank 0 evaluated the test set: the job printed
    # one summary per rank, the others with "test_dice": {}. Evaluation is not data-parallel:
    # every rank evaluated the whole split and wrote the same file.
    import inpaintssl.api as api

    called: list[str] = []

    def run(*args: object, **kwargs: object) -> object:
        rank = os.environ["RANK"]
        called.append(rank)
        if command == "evaluate":
            return _Table()
        return argparse.Namespace(
            run_dir=tmp_path,
            best_val_loss=0.5,
            epochs_run=1,
            converged=False,
            mean_dice=lambda: {"disc": 0.25} if rank == "0" else {},
        )

    monkeypatch.setattr(api, command, run)
    monkeypatch.setenv("WORLD_SIZE", "2")
    printed: dict[str, str] = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert main([command, str(tmp_path)] if command == "evaluate" else [command]) == 0
        printed[rank] = capsys.readouterr().out
    assert printed["1"] == ""
    summary = json.loads(printed["0"])
    if command == "evaluate":
        assert called == ["0"] and summary["images"] == 3
    else:
        assert called == ["0", "1"] and summary["run_dir"] == str(tmp_path)
    if command == "finetune":
        assert summary["test_dice"] == {"disc": 0.25}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"RANK": "5", "WORLD_SIZE": "2"}, "environment variable RANK=5 is out of range"),
        ({"RANK": "1"}, "environment variable RANK=1 is out of range (expected a rank of WORLD_SIZE=1"),
        ({"RANK": "abc", "WORLD_SIZE": "2"}, "environment variable RANK='abc': expected a whole number"),
        (
            {"RANK": "0", "WORLD_SIZE": "two"},
            "environment variable WORLD_SIZE='two': expected a whole number",
        ),
    ],
)
def test_evaluate_under_a_rank_no_launcher_could_set_exits_2_naming_it(
    env: dict[str, str],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A stray RANK=5 made evaluate do nothing and exit 0, without a results file.
    import inpaintssl.api as api

    monkeypatch.setattr(api, "evaluate", lambda *args, **kwargs: pytest.fail("evaluated"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["evaluate", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"inpaintssl evaluate: error: {says}")


@pytest.mark.parametrize(
    ("item", "advice"),
    [
        ("split=val", "given as --split val"),
        ("device=cpu", "given as --device cpu"),
        ("batch_size=4", "given as --batch-size 4"),
        ("output=t.csv", "given as --output t.csv"),
        ("checkpoint=runs/ft", "given as the first argument"),
    ],
)
def test_evaluate_refuses_its_own_settings_as_overrides_naming_the_flag(
    item: str, advice: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `config show evaluate split=val` spells them so; here they were prefixed to data.split=val,
    # with a deprecation warning advising that spelling, then refused as unknown data fields.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert main(["evaluate", str(tmp_path), item]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"inpaintssl evaluate: error: override {item!r}: ") and advice in err, err
    assert "data." + item not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("word", "advice"), [("val", "--split val"), ("test", "--split test"), ("runs/other", "found no '='")]
)
def test_evaluate_names_a_stray_word_as_typed(
    word: str, advice: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `evaluate runs/ft val` warned that "val" lacked the data. prefix, then refused 'data.val',
    # an override the user never typed.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert main(["evaluate", str(tmp_path), word]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"inpaintssl evaluate: error: {word!r} after the checkpoint: expected a data.KEY=VALUE"
    )
    assert advice in err and "data." + word not in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    ("argv", "missing", "optional"),
    [
        (["evaluate"], "CHECKPOINT_OR_CONFIG", "data.KEY=VALUE"),
        (["config", "show"], "stage", "CONFIG|KEY=VALUE"),
    ],
)
def test_a_missing_argument_is_named_without_the_optional_words_after_it(
    argv: list[str], missing: str, optional: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == f"inpaintssl {argv[0]}: error: the following arguments are required: {missing}"
    assert optional not in last


def test_an_override_without_its_value_is_not_called_a_second_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pre.yaml"
    config.write_text("{}\n")
    # `optim.lr 0.1`: the "=" is missing, so "optim.lr" is not an override; no such file exists.
    assert main(["config", "show", "pretrain", str(config), "optim.lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"inpaintssl config: error: 'optim.lr' after the config file {str(config)!r}")
    assert "expected a section.field=value override; found no '=' in it" in err
    assert "two config files" not in err


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
@pytest.mark.parametrize(
    ("given", "logged"),
    [([], False), (["--quiet"], True), (["run.quiet=true"], True), (["FILE"], True)],
)
def test_a_quiet_run_logs_its_epochs_however_quiet_was_asked_for(
    command: str,
    given: list[str],
    logged: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Quiet means no progress bars, not silence. Only the flag set up the epoch log; run.quiet in
    # the config file (or as an override) silenced the whole run: no bars, no log, no done line.
    import logging

    import inpaintssl.api as api
    from inpaintssl.config import FinetuneConfig, PretrainConfig, load_config

    config = tmp_path / "run.yaml"
    config.write_text("run: {quiet: true}\n")
    received: list[Any] = []

    def run(config: Any, *, overrides: Sequence[str] = ()) -> object:
        expected = PretrainConfig if command == "pretrain" else FinetuneConfig
        received.append(load_config(config, expected, overrides=overrides))
        return argparse.Namespace(
            run_dir=tmp_path, best_val_loss=0.5, epochs_run=1, converged=False, mean_dice=dict
        )

    setups: list[dict[str, object]] = []
    monkeypatch.setattr(api, command, run)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: setups.append(kwargs))
    argv = [command, *(str(config) if word == "FILE" else word for word in given), "run.seed=3"]
    assert main(argv) == 0
    assert [setup["level"] for setup in setups] == ([logging.INFO] if logged else [])
    # The API gets the config the command line describes, flags and overrides applied.
    (resolved,) = received
    assert resolved.run.seed == 3 and resolved.run.quiet is logged
    assert json.loads(capsys.readouterr().out)["epochs"] == 1


@pytest.mark.parametrize("command", ["predict", "export"])
def test_run_or_checkpoint_help_names_every_source_the_command_takes(command: str) -> None:
    # Both load through one resolver, which takes a run folder, a checkpoint folder and a
    # .safetensors file (the safetensors export among them); predict's help left the file out.
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = next(a for a in sub.choices[command]._actions if a.dest == "run")
    assert run.metavar == "RUN_OR_CHECKPOINT"
    for phrase in ("run folder", "checkpoint folder", ".safetensors file"):
        assert phrase in str(run.help)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["pretrain", "--output", ""], "--output"),
        (["finetune", "--output", "  "], "--output"),
        (["export", "runs/ft", "--format", "onnx", "--output", ""], "--output"),
        (["predict", "runs/ft", "scan.nii.gz", "--output", ""], "--output"),
        (["evaluate", ""], "CHECKPOINT_OR_CONFIG"),
        (["experiment", "run", ""], "spec"),
    ],
)
def test_an_empty_path_argument_is_refused_naming_it(
    argv: list[str],
    flag: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --output "$OUT" with OUT unset trained into the working directory; run.output_dir="" is refused.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"argument {flag}: expected a path, found " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_every_path_argument_refuses_an_empty_path() -> None:
    checked = 0
    for _, parser in subparsers(build_parser()):
        for action in parser._actions:
            if action.type in (cli._user_path, cli._user_file_path):
                for text in ("", " \t"):
                    with pytest.raises(argparse.ArgumentTypeError, match="expected a path"):
                        action.type(text)
                checked += 1
    assert checked >= 10


def test_a_config_file_given_under_home_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "pre.yaml").write_text("optim: {lr: 0.5}\n")
    assert main(["config", "show", "pretrain", "~/pre.yaml", "optim.max_epochs=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["optim"]["lr"], shown["optim"]["max_epochs"]) == (0.5, 3)


def test_an_evaluate_config_files_paths_expand_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "ev.yaml"
    path.write_text("checkpoint: ~/runs/ft\noutput: ~/out/test.csv\n")
    config, _ = cli._evaluate_config(parse_args(["evaluate", str(path)]))
    assert (config.checkpoint, config.output) == (tmp_path / "runs" / "ft", tmp_path / "out" / "test.csv")


@pytest.mark.parametrize("given_as", ["folder", "config file"])
def test_a_bad_evaluate_flag_is_named_as_a_flag_beside_a_config_file_too(
    given_as: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    positional = tmp_path / "ev.yaml"
    if given_as == "config file":
        positional.write_text(f"checkpoint: {tmp_path / 'runs' / 'ft'}\n")
    assert main(["evaluate", str(positional), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration in evaluate's flags:\n  batch_size: Input should be greater than 0" in err


def test_a_study_spec_may_merge_a_yaml_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Specs are read by the config files' loader: "<<: *data" was refused as an unknown tag.
    spec = tmp_path / "study.yaml"
    spec.write_text(
        "study: pretext_design\n"
        f"output: {tmp_path / 'study'}\n"
        "pretrain:\n  data: &data {dataset: mni152, image_size: [64, 64]}\n  optim: {max_epochs: 2}\n"
        "finetune:\n  data:\n    <<: *data\n    val_max_images: 4\n  optim: {max_epochs: 2}\n"
        "grid:\n  pretrain.pretext.patch_size: [8, 16]\n"
        "label_fractions: [1.0]\n"
    )
    assert main(["experiment", "status", str(spec)]) == 0
    assert "pretext_design: 0 of " in capsys.readouterr().out
