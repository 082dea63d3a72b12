"""The docs' code blocks match the library as it is now.

Every YAML config block of README.md, docs/*.rst, docs/guides/*.rst and the plugin example's
README validates against its config model with warnings as errors (a ``ConfigWarning`` for a
setting the others leave unused fails too), its free-form ``params`` are keyword arguments of the
dataset or backbone they are given to, and the study specs in ``examples/studies`` load. Every
``inpaintssl <command>`` line in those files' code blocks uses only flags that command's parser
knows (no abbreviations), parses, and overrides only fields that exist. The Python blocks import
and call only names that exist with those keywords. Each check is also shown failing on a block
built here.

Which config a YAML block is read as follows from its keys (no table to keep in step):

- ``study`` -> a study spec (:func:`inpaintssl.studies.spec.load_spec`);
- ``executor`` alone -> a study spec's executor section;
- ``pretext`` -> :class:`~inpaintssl.config.PretrainConfig`, ``transfer`` or ``loss`` ->
  :class:`~inpaintssl.config.FinetuneConfig`, ``checkpoint`` -> :class:`~inpaintssl.config.EvaluateConfig`;
  ``data.unlabelled`` -> pretraining, ``data.label_fraction`` -> fine-tuning (the stage that reads them);
- none of these (a data fragment) -> both training configs.

A block that signals two stages is read as each, and fails in one of them. A fragment that does
not name ``data.dataset`` is the page's previous block's dataset (a guide's follow-on snippets).
A command line the docs show failing (the block's next line is its ``inpaintssl ...: error``)
is checked for its flags only.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import io
import re
import shlex
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from inpaintssl.cli import _data_overrides, build_parser, main, parse_args
from inpaintssl.config import (
    ConfigError,
    DataConfig,
    EvaluateConfig,
    FinetuneConfig,
    PretrainConfig,
    load_config,
    read_config_text,
)
from inpaintssl.config.errors import is_model_class
from inpaintssl.registry import BACKBONES, DATASETS
from inpaintssl.studies.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
# changelog.rst and reliability.rst are generated records, not instructions.
GENERATED = ("changelog.rst", "reliability.rst")
DOC_FILES = (
    ROOT / "README.md",
    ROOT / "examples" / "plugin_example" / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.rst") if p.name not in GENERATED),
    *sorted((ROOT / "docs" / "guides").glob("*.rst")),
)
STUDY_SPECS = tuple(sorted((ROOT / "examples" / "studies").glob("*.yaml")))


@dataclass(frozen=True)
class Block:
    """One code block: where it is, its language and its text (dedented)."""

    path: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _rst_blocks(path: Path) -> Iterator[Block]:
    """``.. code-block::`` blocks, and ``::`` literal blocks (as ``text``)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = re.match(r"^(\s*)\.\. code-block::\s*(\S*)", lines[index]) or re.match(
            r"^(\s*)(?!\.\. )\S.*::()$", lines[index]
        )
        if not match:
            index += 1
            continue
        indent = len(match.group(1))
        start = index + 1
        index += 1
        while index < len(lines) and re.match(r"^\s+:[\w-]+:", lines[index]):  # :caption: and co.
            index += 1
        body: list[str] = []
        while index < len(lines) and (
            not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
        ):
            body.append(lines[index])
            index += 1
        text = "\n".join(body).strip("\n")
        margin = min((len(x) - len(x.lstrip()) for x in text.splitlines() if x.strip()), default=0)
        dedented = "\n".join(x[margin:] for x in text.splitlines())
        yield Block(path, start, match.group(2) or "text", dedented)


def _markdown_blocks(path: Path) -> Iterator[Block]:
    text = path.read_text(encoding="utf-8")
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        yield Block(path, text[: match.start()].count("\n") + 1, match.group(1) or "text", match.group(2))


def _blocks() -> list[Block]:
    found: list[Block] = []
    for path in DOC_FILES:
        found.extend(_markdown_blocks(path) if path.suffix == ".md" else _rst_blocks(path))
    return found


BLOCKS = tuple(_blocks())

# -- YAML config blocks ---------------------------------------------------------------------------


def _stages(data: Mapping[str, Any]) -> list[type[BaseModel]]:
    section = data.get("data")
    section = section if isinstance(section, Mapping) else {}
    signals: dict[type[BaseModel], bool] = {
        PretrainConfig: "pretext" in data or "unlabelled" in section,
        FinetuneConfig: "transfer" in data or "loss" in data or "label_fraction" in section,
        EvaluateConfig: "checkpoint" in data,
    }
    named = [cls for cls, signalled in signals.items() if signalled]
    return named or [PretrainConfig, FinetuneConfig]


def _factory_problems(
    kind: str, name: str, params: Mapping[str, Any], get: Callable[[str], Any]
) -> list[str]:
    try:
        signature = inspect.signature(get(name))
    except (KeyError, TypeError, ValueError) as exc:
        return [f"{kind} {name!r}: {exc}"]
    try:
        signature.bind_partial(**params)
    except TypeError as exc:
        return [f"{kind} {name!r} params {sorted(params)}: {exc}"]
    return []


def _params_problems(config: BaseModel, given: Mapping[str, Any]) -> list[str]:
    """The free-form ``params`` a block gives, against the factory they go to."""
    problems: list[str] = []
    data = getattr(config, "data", None)
    data_given = given.get("data") if isinstance(given.get("data"), Mapping) else {}
    if isinstance(data, DataConfig) and isinstance(data_given, Mapping):
        if "params" in data_given:
            problems += _factory_problems("dataset", data.dataset, data.params, DATASETS.get)
        for source in data.unlabelled:
            problems += _factory_problems("dataset", source.dataset, source.params, DATASETS.get)
    model = getattr(config, "model", None)
    model_given = given.get("model") if isinstance(given.get("model"), Mapping) else {}
    if model is not None and isinstance(model_given, Mapping) and "params" in model_given:
        problems += _factory_problems("backbone", model.backbone, model.params, BACKBONES.get)
    return problems


def check_yaml_block(text: str, *, where: str, default_dataset: str | None = None) -> list[str]:
    """Validate one YAML block as the config its keys name, warnings as errors; return what failed."""
    data = read_config_text(text, source=where)
    assert isinstance(data, dict), f"{where}: a YAML block is a mapping, found {type(data).__name__}"
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if "study" in data or set(data) == {"executor"}:
            spec_data = data if "study" in data else {"study": "pretext_design", **data}
            try:
                spec = load_spec(spec_data)
            except (ConfigError, Warning) as exc:  # a warning is raised as an error here
                return [f"{where} (study spec): {type(exc).__name__}: {exc}"]
            for stage in ("pretrain", "finetune"):
                if isinstance(data.get(stage), Mapping):
                    problems += _params_problems(getattr(spec, stage), data[stage])
            return [f"{where}: {p}" for p in problems]
        section = data.get("data")
        if isinstance(section, dict) and "dataset" not in section and default_dataset is not None:
            data = {**data, "data": {"dataset": default_dataset, **section}}
        for cls in _stages(data):
            if cls is EvaluateConfig:
                continue  # checked by the CLI test's `config show evaluate`; no block is one today
            try:
                config = load_config(data, cls)
            except (ConfigError, Warning) as exc:
                problems.append(f"{where} (as {cls.__name__}): {type(exc).__name__}: {exc}")
                continue
            problems += [f"{where} (as {cls.__name__}): {p}" for p in _params_problems(config, data)]
    return problems


def _yaml_cases() -> list[tuple[Block, str | None]]:
    cases: list[tuple[Block, str | None]] = []
    dataset: dict[Path, str] = {}
    for block in BLOCKS:
        if block.language != "yaml":
            continue
        cases.append((block, dataset.get(block.path)))
        data = read_config_text(block.text, source=block.where)
        named = data.get("data", {}).get("dataset") if isinstance(data.get("data"), dict) else None
        if isinstance(named, str):
            dataset[block.path] = named
    return cases


YAML_CASES = _yaml_cases()


@pytest.mark.parametrize(("block", "dataset"), YAML_CASES, ids=[b.where for b, _ in YAML_CASES])
def test_yaml_block_validates_without_warnings(block: Block, dataset: str | None) -> None:
    assert check_yaml_block(block.text, where=block.where, default_dataset=dataset) == []


@pytest.mark.parametrize("path", STUDY_SPECS, ids=[p.name for p in STUDY_SPECS])
def test_example_study_spec_loads_without_warnings(path: Path) -> None:
    assert check_yaml_block(path.read_text(encoding="utf-8"), where=str(path.relative_to(ROOT))) == []


# name -> (block, what the failure names)
BAD_YAML = {
    "misspelt field": ("pretext: {patch_size: 8}\noptim: {max_epoch: 3}\n", "optim.max_epoch: unknown field"),
    "misspelt section": ("pretext: {patch_size: 8}\noptimizer: {lr: 0.1}\n", "optimizer: unknown field"),
    "unused setting": (
        "pretext: {patch_size: 8}\noptim: {schedule: step_decay, warmup_fraction: 0.2}\n",
        "ConfigWarning: optim.warmup_fraction=0.2 has no effect",
    ),
    "both stages' data settings": (
        "data: {unlabelled: [{dataset: mni152}], label_fraction: 0.1}\n",
        "ConfigWarning: data.label_fraction=0.1 has no effect",
    ),
    "two stages' sections": ("pretext: {patch_size: 8}\ntransfer: {weights: encoder}\n", "transfer: unknown"),
    "misspelt dataset param": (
        "data:\n  dataset: ct\n  params: {root: /data, cases: x, windowz: [[400, 50]]}\n",
        "unexpected keyword argument 'windowz'",
    ),
    "misspelt backbone param": (
        "model: {params: {depth: 4, base_widht: 16}}\n",
        "unexpected keyword argument 'base_widht'",
    ),
    "misspelt unlabelled param": (
        "data:\n  unlabelled:\n    - {dataset: nifti, params: {roots: /x}}\n",
        "unexpected keyword argument 'roots'",
    ),
    "misspelt spec field": (
        "study: pretext_design\nlabel_fraction: [0.5]\n",
        "label_fraction: unknown field",
    ),
    "misspelt executor field": (
        "executor: {partition: gpu, gpu_per_task: 1}\n",
        "executor.gpu_per_task: unknown field",
    ),
}


@pytest.mark.parametrize(("text", "named"), BAD_YAML.values(), ids=BAD_YAML.keys())
def test_a_bad_yaml_block_fails(text: str, named: str) -> None:
    problems = check_yaml_block(text, where="made-up block")
    assert any(named in problem for problem in problems), problems


def test_a_fragment_is_read_with_its_pages_dataset() -> None:
    # windows is a ct parameter, not one of the default dataset's (mni152).
    fragment = "data:\n  params: {windows: [[400, 50]]}\n"
    assert check_yaml_block(fragment, where="fragment", default_dataset="ct") == []
    assert check_yaml_block(fragment, where="fragment") != []


# -- command lines --------------------------------------------------------------------------------

_COMMAND = re.compile(r"^(?:\$ )?(?:.*-m )?inpaintssl\s+(?=[a-z])(.*)$")
_SHELL_END = {">", ">>", "2>", "2>&1", "|", "&&", "||", ";", "&"}


@dataclass(frozen=True)
class CommandLine:
    """One ``inpaintssl ...`` command of a code block, split into its words."""

    where: str
    words: tuple[str, ...]
    shown_failing: bool
    shown_output: tuple[str, ...] = ()


def _command_words(text: str) -> tuple[str, ...]:
    words: list[str] = []
    for word in shlex.split(text, comments=True):
        if word in _SHELL_END or word.startswith(("2>", ">")):
            break
        words.append(word)
    return tuple(words)


def command_lines(block: Block) -> list[CommandLine]:
    joined = re.sub(r"\\\n\s*", " ", block.text).splitlines()
    found = []
    for number, line in enumerate(joined):
        match = _COMMAND.match(line.strip())
        # `inpaintssl pretrain: error: ...` is a command's output, not a command line.
        if not match or re.match(r"^[\w-]+:", match.group(1)):
            continue
        output = []
        for after in joined[number + 1 :]:
            text = after.strip()
            if text.startswith("$ ") or (_COMMAND.match(text) and not re.match(r"^inpaintssl [\w ]+:", text)):
                break  # the next command
            output.append(after.rstrip())
        failing = bool(output) and bool(re.match(r"^inpaintssl [\w ]+: error:", output[0].strip()))
        where = f"{block.where} {line.strip()!r}"
        found.append(CommandLine(where, _command_words(match.group(1)), failing, tuple(output)))
    return found


COMMANDS = [command for block in BLOCKS for command in command_lines(block)]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_parser(words: tuple[str, ...]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The innermost subcommand's parser the words select, and those subcommand words."""
    parser, path = build_parser(), list[str]()
    for word in words:
        choices = _subparsers(parser)
        if word not in choices:
            break
        parser, path = choices[word], [*path, word]
    return parser, path


def _field_exists(model: type[BaseModel], dotted: str) -> bool:
    current: Any = model
    for part in dotted.split("."):
        if not is_model_class(current):
            return True  # inside a free-form mapping (params): any key
        field = current.model_fields.get(part)
        if field is None:
            return False
        # A section may be optional (EvaluateConfig.data: DataConfig | None): its model decides.
        members = typing.get_args(field.annotation) or (field.annotation,)
        current = next((m for m in members if is_model_class(m)), None)
    return True


_STAGE_MODELS: Mapping[str, type[BaseModel]] = {
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
    "evaluate": EvaluateConfig,
}


def check_command(command: CommandLine) -> list[str]:
    """The command's flags are its parser's (no abbreviations), it parses, and its overrides name fields."""
    parser, path = _command_parser(command.words)
    if not path:
        return [f"{command.where}: no inpaintssl subcommand in {list(command.words)}"]
    known = {option for action in parser._actions for option in action.option_strings}
    problems = [
        f"{command.where}: {' '.join(path)} has no flag {word.split('=')[0]} (it has {sorted(known)})"
        for word in command.words
        if re.match(r"^--?[a-zA-Z]", word) and word.split("=")[0] not in known
    ]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parse_args(list(command.words))
    except SystemExit:
        return [*problems, f"{command.where}: {errors.getvalue().strip()}"]
    if command.shown_failing:
        return problems
    if path == ["config"] and args.action == "show":  # action and stage are positionals
        stage, items = _STAGE_MODELS[args.stage], list(args.items)
    elif path[0] in ("pretrain", "finetune"):
        stage, items = _STAGE_MODELS[path[0]], list(args.items)
    elif path[0] == "evaluate":
        # The command's own reading: data.KEY=VALUE only, the unprefixed spelling deprecated.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                items = _data_overrides(args.overrides)
        except (ConfigError, Warning) as exc:
            return [*problems, f"{command.where}: {type(exc).__name__}: {exc}"]
        stage = _STAGE_MODELS["evaluate"]
    else:
        return problems
    for item in items:
        key = item.split("=", 1)[0]
        if "=" in item and not _field_exists(stage, key):
            problems.append(f"{command.where}: {key} is no field of {stage.__name__}")
    return problems


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_command_line_uses_known_flags(command: CommandLine) -> None:
    assert check_command(command) == []


SHOWN_FAILING = [c for c in COMMANDS if c.shown_failing and c.words[:2] == ("config", "show")]


@pytest.mark.parametrize("command", SHOWN_FAILING, ids=[c.where for c in SHOWN_FAILING])
def test_a_config_error_shown_is_the_one_printed(
    command: CommandLine, capsys: pytest.CaptureFixture[str]
) -> None:
    # `config show` only reads and prints: the error the docs show can be checked word for word.
    assert main(list(command.words)) == 2
    assert capsys.readouterr().err.splitlines() == list(command.shown_output)


def test_every_subcommand_is_shown() -> None:
    # Also a check on the extraction: a pattern that found no command lines would pass the above.
    shown = {" ".join(_command_parser(c.words)[1]) for c in COMMANDS}
    every = set()
    for name, sub in _subparsers(build_parser()).items():
        inner = _subparsers(sub)
        every |= {f"{name} {word}" for word in inner} if inner else {name}
    assert every <= shown, sorted(every - shown)


# name -> (words after `inpaintssl`, what the failure names)
BAD_COMMANDS = {
    "misspelt flag": (("pretrain", "pre.yaml", "--ouput", "runs/x"), "pretrain has no flag --ouput"),
    "abbreviated flag": (("export", "runs/ft", "--format", "onnx", "--out", "m.onnx"), "has no flag --out "),
    "another command's flag": (
        ("evaluate", "runs/ft", "--probabilities"),
        "evaluate has no flag --probabilities",
    ),
    "nested command's flag": (
        ("experiment", "status", "spec.yaml", "--workers", "2"),
        "experiment status has no flag --workers",
    ),
    "missing required flag": (("predict", "runs/ft", "scan.nii.gz"), "required: --output"),
    "misspelt override": (("finetune", "ft.yaml", "optim.max_epoch=3"), "optim.max_epoch is no field"),
    "misspelt evaluate override": (
        ("evaluate", "runs/ft", "data.image_sise=[64,64]"),
        "data.image_sise is no field of EvaluateConfig",
    ),
    "evaluate's own setting as an override": (("evaluate", "runs/ft", "split=val"), "given as --split val"),
    "evaluate override in the old spelling": (
        ("evaluate", "runs/ft", "image_size=[64,64]"),
        "without the 'data.' prefix is deprecated",
    ),
    "misspelt config show field": (
        ("config", "show", "evaluate", "checkpoint=runs/ft", "splits=val"),
        "splits is no field of EvaluateConfig",
    ),
}


@pytest.mark.parametrize(("words", "named"), BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys())
def test_a_bad_command_line_fails(words: tuple[str, ...], named: str) -> None:
    problems = check_command(CommandLine("made-up line", words, shown_failing=False))
    assert any(named in problem for problem in problems), problems


def test_command_lines_are_found_in_every_form() -> None:
    block = Block(
        ROOT / "docs" / "made-up.rst",
        1,
        "bash",
        "inpaintssl pretrain: warning: something\n"
        "inpaintssl demo --quick   # a comment --not-a-flag\n"
        "$ inpaintssl plugins --json > plugins.json\n"
        "torchrun --nproc_per_node=2 -m inpaintssl pretrain \\\n    pre.yaml --quiet\n"
        "$ inpaintssl config show pretrain optim.max_epoch=60\n"
        "inpaintssl config: error: invalid configuration in overrides:\n",
    )
    found = [(c.words, c.shown_failing) for c in command_lines(block)]
    assert found == [
        (("demo", "--quick"), False),
        (("plugins", "--json"), False),
        (("pretrain", "pre.yaml", "--quiet"), False),
        (("config", "show", "pretrain", "optim.max_epoch=60"), True),
    ]
    assert command_lines(block)[-1].shown_output == (
        "inpaintssl config: error: invalid configuration in overrides:",
    )
    assert [check_command(c) for c in command_lines(block)] == [[], [], [], []]


# -- Python blocks --------------------------------------------------------------------------------


def check_python_names(text: str, *, where: str) -> list[str]:
    """Every ``inpaintssl`` name a block imports or uses exists; its calls' keywords are accepted."""
    tree = ast.parse(text)
    aliases: dict[str, Any] = {}
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "inpaintssl":
                    aliases[alias.asname or alias.name] = importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "inpaintssl":
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if not hasattr(module, alias.name):
                    problems.append(f"{where}: {node.module} has no {alias.name}")
                else:
                    aliases[alias.asname or alias.name] = getattr(module, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = aliases.get(node.value.id)
            if inspect.ismodule(owner) and not hasattr(owner, node.attr):
                problems.append(f"{where}: {owner.__name__} has no {node.attr}")
        if isinstance(node, ast.Call):
            target: Any = None
            if isinstance(node.func, ast.Name):
                target = aliases.get(node.func.id)
            elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                owner = aliases.get(node.func.value.id)
                target = getattr(owner, node.func.attr, None) if owner is not None else None
            keywords = {k.arg: None for k in node.keywords if k.arg is not None}
            has_star = any(k.arg is None for k in node.keywords)
            if target is None or not callable(target) or has_star:
                continue
            with contextlib.suppress(TypeError, ValueError):  # no signature to check against
                signature = inspect.signature(target)
                parameters = signature.parameters.values()
                if not any(p.kind is p.VAR_KEYWORD for p in parameters):
                    unknown = sorted(set(keywords) - set(signature.parameters))
                    if unknown:
                        name = getattr(target, "__qualname__", repr(target))
                        problems.append(f"{where}: {name} takes no keyword {unknown} ({signature})")
    return problems


GALLERY = tuple(sorted((ROOT / "examples" / "gallery").glob("*.py")))
PYTHON_BLOCKS = [
    *(block for block in BLOCKS if block.language == "python"),
    *(Block(path, 1, "python", path.read_text(encoding="utf-8")) for path in GALLERY),
]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.where for b in PYTHON_BLOCKS])
def test_python_block_names_exist(block: Block) -> None:
    assert check_python_names(block.text, where=block.where) == []


# name -> (block, what the failure names)
BAD_PYTHON = {
    "missing import": ("from inpaintssl.metrics import dice_score\n", "inpaintssl.metrics has no dice_score"),
    "missing attribute": ("import inpaintssl as issl\nissl.pretrian({})\n", "inpaintssl has no pretrian"),
    "unknown keyword": (
        "import inpaintssl as issl\nissl.predict('runs/ft', ['x'], out='seg')\n",
        "predict takes no keyword ['out']",
    ),
    "unknown keyword of an imported name": (
        "from inpaintssl.studies import run_study\nrun_study('s.yaml', shards=2)\n",
        "run_study takes no keyword ['shards']",
    ),
}


@pytest.mark.parametrize(("text", "named"), BAD_PYTHON.values(), ids=BAD_PYTHON.keys())
def test_a_bad_python_block_fails(text: str, named: str) -> None:
    problems = check_python_names(text, where="made-up block")
    assert any(named in problem for problem in problems), problems
