"""The ``inpaintssl`` command line: a thin layer over :mod:`inpaintssl.api`.

Each training subcommand takes an optional YAML/JSON config followed by dotted overrides::

    inpaintssl pretrain pretrain.yaml optim.lr=1e-4 run.output_dir=runs/pre
    inpaintssl finetune finetune.yaml transfer.pretrained=runs/pre data.label_fraction=0.05
    inpaintssl evaluate runs/ft --data data.yaml --split test --output test.csv
    inpaintssl predict runs/ft scans/*.nii.gz --output segmentations
    inpaintssl export runs/ft --format onnx --output model.onnx
    inpaintssl experiment run study.yaml --shard 0/4
    inpaintssl cache prune /scratch/me/decompressed --max-size 200G
    inpaintssl demo --quick
    inpaintssl plugins
    inpaintssl config schema finetune

Example:
    >>> main(["config", "show", "pretrain", "optim.lr=0.01"])  # doctest: +ELLIPSIS
    data:
    ...
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, cast

from inpaintssl._version import __version__
from inpaintssl.layout import RunFolder
from inpaintssl.signals import Terminated, terminate_as_exit
from inpaintssl.warning_format import command_warnings, warn_each_time

if TYPE_CHECKING:
    from inpaintssl.api import FinetuneResult, PretrainResult
    from inpaintssl.config import EvaluateConfig, FinetuneConfig, PretrainConfig

    ConfigT = TypeVar("ConfigT", PretrainConfig, FinetuneConfig)

__all__ = ["main", "parse_args"]


def _split_config_and_overrides(items: Sequence[str]) -> tuple[str | None, list[str]]:
    from inpaintssl.config import ConfigError

    config: str | None = None
    overrides: list[str] = []
    for item in items:
        # A file's name may hold "=" too (a sweep folder "lr=0.1/pre.yaml"): an existing file wins.
        is_override = "=" in item and not Path(item).expanduser().is_file()
        if not is_override and config is not None:
            if not Path(item).expanduser().exists():
                # Most often an override that lost its "=value" (`optim.lr 0.1`), not a second file.
                raise ConfigError(
                    f"{item!r} after the config file {config!r}: expected a section.field=value "
                    "override; found no '=' in it, and no file of that name"
                )
            # Without this, a second file reads as a malformed override ("must look like ...").
            raise ConfigError(
                f"two config files given ({config!r}, then {item!r}); expected one file, then "
                "section.field=value overrides"
            )
        if is_override:
            overrides.append(item)
            continue
        path = Path(item).expanduser()
        if not path.exists() and path.suffix.lower() not in _CONFIG_SUFFIXES:
            # `config show pretrain optim.lr`: an override that lost its "=value", which was
            # reported as a missing config file named "optim.lr".
            raise ConfigError(
                f"{item!r}: expected a config file (.yaml, .yml or .json) or a section.field=value "
                "override; found no file of that name and no '=' in it"
            )
        config = item
    return config, overrides


def _common_run_flags(parser: argparse.ArgumentParser) -> None:
    # default=[]: argparse names a list positional without a default among "the following arguments
    # are required" when an argument before it is missing, though none of its words is.
    parser.add_argument(
        "items", nargs="*", default=[], metavar="CONFIG|KEY=VALUE", help="config file, then overrides"
    )
    _trailing_list(parser, "items")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last checkpoint"
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars, one log line per epoch (same as run.quiet=true)",
    )
    parser.add_argument(
        "--output",
        type=_user_path,
        help="run folder (same as run.output_dir=...; default: the config's run.output_dir, else runs/run)",
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (same as run.device=...; default: auto)")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms: bit-reproducible CPU runs (same as run.deterministic=true)",
    )


def _user_path(text: str) -> Path:
    """A path argument, ``~`` expanded (a quoted ``"~/runs"`` reaches the command unexpanded).

    Raises:
        argparse.ArgumentTypeError: The text is empty or blank; argparse names the flag.
    """
    return Path(_not_empty(text)).expanduser()


def _not_empty(text: str) -> str:
    """``text``, unless it is empty or blank: ``Path("")`` is the working directory.

    ``--output "$OUT"`` with ``OUT`` unset trained into the folder the job started in, as the
    empty ``run.output_dir=""`` is refused.
    """
    if not text.strip():
        found = "an empty one (an unset shell variable?)" if not text else f"only blanks ({text!r})"
        raise argparse.ArgumentTypeError(f"expected a path, found {found}; write . for the working directory")
    return text


def _scan_parameter(text: str) -> tuple[str, float]:
    """A ``KEY=VALUE`` scan parameter of the qDESS T2 model (its name checked by predict)."""
    key, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not sep or not key.strip() or not math.isfinite(number):
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with a finite number, e.g. gl_area=3132 or tg_us=1792; found {text!r}"
        )
    return key.strip(), number


def _seed(text: str) -> int:
    """A seed argument, checked by ``run.seed``'s own field (what NumPy's and torch's generators take)."""
    from pydantic import ValidationError

    from inpaintssl.config import RunConfig

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, found {text!r}") from None
    try:
        return RunConfig(seed=value).seed
    except ValidationError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, found {value}") from None


def _series_choice(text: str) -> str | int:
    """A ``--series`` argument: digits are a SeriesNumber, other text a description or UID."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a SeriesDescription, SeriesInstanceUID or SeriesNumber")
    return int(text) if text.strip().isdigit() else text


def _user_file_path(text: str) -> str:
    """A file path argument, ``~`` expanded, kept as text: a trailing ``/`` (a folder) survives.

    Raises:
        argparse.ArgumentTypeError: The text is empty or blank; argparse names the flag.
    """
    return os.path.expanduser(_not_empty(text))


def _yaml_quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar that reads back as exactly ``text``.

    Overrides are YAML, where unquoted "exp #3" would lose its " #3" and "2024" be a number. Every
    character outside printable ASCII is escaped: raw, a NEL (U+0085) or line separator inside
    quotes is folded to a space, an undecodable byte of a file name (a lone surrogate, as Python
    reads it) is refused as "unacceptable", and JSON's escapes split an emoji into two surrogates.

    Example:
        >>> print(_yaml_quoted("runs/exp #3\\x85\\U0001f9e0"))
        "runs/exp #3\\u0085\\U0001f9e0"
    """
    escaped = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            escaped.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            escaped.append(char)
        else:
            escaped.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(escaped) + '"'


def _flag_overrides(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Each run flag given, as it was written and as the override it stands for."""
    extra: list[tuple[str, str]] = []
    if args.resume:
        extra.append(("--resume", "run.resume=true"))
    if args.quiet:
        extra.append(("--quiet", "run.quiet=true"))
    if args.output is not None:
        output = _yaml_quoted(str(args.output))
        extra.append((f"--output {args.output}", f"run.output_dir={output}"))
    if args.device is not None:
        extra.append((f"--device {args.device}", f"run.device={args.device}"))
    if args.deterministic:
        extra.append(("--deterministic", "run.deterministic=true"))
    return extra


def _training_input(args: argparse.Namespace) -> tuple[str | dict[str, Any], list[str]]:
    """The config (file, or ``{}`` for the defaults) and overrides a training subcommand was given.

    Raises:
        ConfigError: A flag and an override set the same field (``--output a run.output_dir=b``):
            the flag won silently, so a script's override did nothing.
    """
    from inpaintssl.config import ConfigError
    from inpaintssl.config.overrides import override_fields, parse_override

    config, overrides = _split_config_and_overrides(args.items)
    flags = _flag_overrides(args)
    if flags:
        # Through a mapping too: --output a with run={output_dir: b} trained into a, silently.
        set_by = {field: item for item in overrides for field in override_fields(*parse_override(item))}
        for flag, stands_for in flags:
            field = stands_for.split("=", 1)[0]
            for named, item in set_by.items():
                if named == field or named.startswith(f"{field}.") or field.startswith(f"{named}."):
                    raise ConfigError(
                        f"{flag} and the override {item!r} both set {field}; expected one of them"
                    )
    return config if config is not None else {}, [*overrides, *(override for _, override in flags)]


def _is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job, or a process ``torchrun`` did not start (no ``RANK``).

    Read from torchrun's variables as :class:`inpaintssl.training.distributed.DistInfo` reads them
    (the command line imports only the API, not the training package), and refused as it refuses
    them: ``evaluate`` under a stray ``RANK=5`` did nothing and exited 0, without a results file.

    Raises:
        ValueError: ``RANK`` or ``WORLD_SIZE`` is no whole number, or ``RANK`` is not below
            ``WORLD_SIZE`` (1 when unset); the message names the variable.
    """
    values = {}
    for name, default in (("WORLD_SIZE", 1), ("RANK", 0)):
        text = os.environ.get(name, str(default))
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"environment variable {name}={text!r}: expected a whole number") from None
    rank, world_size = values["RANK"], values["WORLD_SIZE"]
    if not 0 <= rank < max(world_size, 1):
        raise ValueError(
            f"environment variable RANK={rank} is out of range (expected a rank of WORLD_SIZE={world_size} "
            f"processes: 0 to {max(world_size, 1) - 1}); start the processes with torchrun, or unset RANK"
        )
    return rank == 0


def _print_run(result: PretrainResult | FinetuneResult, **more: Any) -> int:
    """Print a training run's one-line JSON summary (plus ``more``) on rank 0; return the exit status.

    Under ``torchrun`` every rank returns from training, but only rank 0 wrote the run folder and
    evaluated the test set (another rank's result has no test Dice): the job prints one summary,
    rank 0's, not one per rank that contradict each other.
    """
    if not _is_main_process():
        return 0
    summary = {
        "run_dir": str(result.run_dir),
        "best_val_loss": result.best_val_loss,
        "epochs": result.epochs_run,
        "converged": result.converged,
    }
    print(json.dumps({**summary, **more}))
    return 0


def _resolved_run_config(args: argparse.Namespace, cls: type[ConfigT]) -> ConfigT:
    """The training command's config, resolved as the API resolves it (file, overrides, flags).

    Quiet (``--quiet``, or ``run.quiet`` in the file or an override) means no progress bars,
    not silence: the epochs are logged instead, one line each. Read from the resolved config, so
    that the field and the flag behave alike (the field alone silenced a whole run).
    """
    from inpaintssl.config import load_config

    config, overrides = _training_input(args)
    resolved = load_config(config, cls, overrides=overrides)
    if resolved.run.quiet:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return resolved


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from inpaintssl.api import pretrain
    from inpaintssl.config import PretrainConfig

    return _print_run(pretrain(_resolved_run_config(args, PretrainConfig)))


def _cmd_finetune(args: argparse.Namespace) -> int:
    from inpaintssl.api import finetune
    from inpaintssl.config import FinetuneConfig

    result = finetune(_resolved_run_config(args, FinetuneConfig))
    return _print_run(result, test_dice=result.mean_dice())


def _training_sections() -> set[str]:
    """Top-level sections of a run config other than ``data``: none of them applies to evaluation."""
    from inpaintssl.config import FinetuneConfig, PretrainConfig

    return (set(PretrainConfig.model_fields) | set(FinetuneConfig.model_fields)) - {"data"}


_SPLITS = frozenset({"train", "val", "test"})


def _data_overrides(items: Sequence[str]) -> list[str]:
    """Overrides as ``pretrain`` and ``finetune`` spell them: ``data.key=value`` or ``data={...}``.

    The old unprefixed spelling still works, with a deprecation warning.
    """
    from inpaintssl.config import ConfigError, EvaluateConfig

    prefixed: list[str] = []
    training = _training_sections()
    own = set(EvaluateConfig.model_fields) - {"data"}
    for item in items:
        if "=" not in item:
            # Checked first: prefixed, a stray word was warned about as a deprecated spelling and
            # refused as "data.<word>", an override the user never typed.
            split = f" (the split to score is given as --split {item})" if item in _SPLITS else ""
            raise ConfigError(
                f"{item!r} after the checkpoint: expected a data.KEY=VALUE override; found no '=' in "
                f"it{split}"
            )
        section = item.split("=", 1)[0].split(".", 1)[0]
        if section in own:
            # `config show evaluate split=val` takes them so; read as data.split=val here, they
            # were prefixed with advice to write that, then refused as unknown data fields.
            flag = (
                "the first argument"
                if section == "checkpoint"
                else f"--{section.replace('_', '-')} {item.split('=', 1)[-1].strip()}"
            )
            raise ConfigError(
                f"override {item!r}: {section!r} is a setting of evaluate itself, given as {flag} "
                f"(or in an evaluate config file); overrides here are data.KEY=VALUE only"
            )
        if section in training:
            raise ConfigError(
                f"override {item!r}: evaluate reads a trained network, so it takes only data.KEY=VALUE "
                f"overrides; {section!r} is a training setting"
            )
        # `data={...}` sets the section's fields, as for pretrain and finetune (`optim={...}`).
        if not item.startswith("data.") and section.strip() != "data":
            warn_each_time(
                f"override {item!r} without the 'data.' prefix is deprecated; "
                f"write 'data.{item}' as pretrain and finetune do",
                # FutureWarning: the deprecation is the command-line user's, and Python shows it.
                FutureWarning,
            )
            item = f"data.{item}"
        prefixed.append(item)
    return prefixed


# What `evaluate` reads as a config file rather than a checkpoint (a .safetensors file or a folder).
_CONFIG_SUFFIXES = frozenset({".yaml", ".yml", ".json"})


def _evaluate_config(args: argparse.Namespace) -> tuple[EvaluateConfig, Path | None]:
    """The evaluation the command line asks for, and the ``--data`` file if one was given.

    The positional is a checkpoint, or an evaluate config file (as ``config show evaluate``
    writes one); flags given beside a file take precedence over its fields.
    """
    from pydantic import ValidationError

    from inpaintssl.config import ConfigError, EvaluateConfig, load_config
    from inpaintssl.config.errors import format_config_error

    flags = {
        "split": args.split,
        "output": args.output,
        "device": args.device,
        "batch_size": args.batch_size,
    }
    given = {name: value for name, value in flags.items() if value is not None}
    if args.data is not None and not args.data.is_file():
        # Read much later, by the API, whose message names a "config file" but not the flag.
        found = "is a folder" if args.data.is_dir() else "does not exist"
        raise ConfigError(
            f"--data {args.data} {found}; expected a YAML/JSON file holding the data section's fields "
            "or a whole run config"
        )
    source = Path(args.checkpoint)
    try:
        # Checked on their own first, whatever the positional: beside a config file too, a bad
        # flag is named as the flag it is, not as a "field update".
        flagged = EvaluateConfig.model_validate({"checkpoint": source, **given})
    except ValidationError as exc:
        raise ConfigError(format_config_error(exc, source="evaluate's flags", model=EvaluateConfig)) from exc
    if source.suffix.lower() in _CONFIG_SUFFIXES and source.is_file():
        config = load_config(source, EvaluateConfig)
        if args.data is not None and config.data is not None:
            raise ConfigError(
                f"--data {args.data} and the data section of {source}: expected one of them "
                "(or data: null in the file, for the run's own record)"
            )
        # model_copy, not update_fields: re-validating a full dump would mark every field of the
        # file's data section as given, so one it leaves out (image_size) no longer took the run's
        # recorded value. The flags' values were validated above.
        return config.model_copy(update={name: getattr(flagged, name) for name in given}), args.data
    return flagged, args.data


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from inpaintssl.api import evaluate

    if not _is_main_process():
        # Evaluation is not data-parallel: under torchrun every rank would evaluate the whole
        # split, write the same file and print the same line. Rank 0 does it alone.
        return 0
    config, data_file = _evaluate_config(args)
    output = config.output
    if output is None:
        output = RunFolder.owning(config.checkpoint).eval_csv(config.split)
    elif output.is_dir():
        # Checked before the split is scored: the whole evaluation ran, then "[Errno 21] ... Is a directory".
        from inpaintssl.config import ConfigError

        raise ConfigError(
            f"--output {output} is a folder; expected the CSV file to write, such as "
            f"{output / f'eval_{config.split}.csv'}"
        )
    table = evaluate(
        config.checkpoint,
        config.data if config.data is not None else data_file,
        overrides=_data_overrides(args.overrides),
        split=config.split,
        device=config.device,
        batch_size=config.batch_size,
        output=output,
    )
    means = table.select(level="image").mean()
    print(json.dumps({"output": str(output), "images": len(table.select(level="image")), "mean": means}))
    return 0


def _once_each(pairs: list[tuple[str, float]], *, flag: str) -> dict[str, float]:
    """``KEY=VALUE`` arguments as a mapping; a key given twice is refused (the last would win unseen)."""
    found: dict[str, float] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"{flag} {key} given twice ({found[key]:g}, then {value:g}); give each once")
        found[key] = value
    return found


def _cmd_predict(args: argparse.Namespace) -> int:
    from inpaintssl.api import predict

    report = predict(
        args.run,
        args.inputs,
        output=args.output,
        batch_size=args.batch_size,
        device=args.device,
        probabilities=args.probabilities,
        progress=not args.quiet,
        slice_axis=args.slice_axis,
        key=args.key,
        spacing=args.spacing,
        amp=args.amp,
        large_slices=args.large_slices,
        overlap=args.overlap,
        orientation=args.orientation,
        resample=args.resample,
        check_threads=args.check_threads,
        read_ahead=args.read_ahead,
        output_format=args.output_format,
        dicom_seg_type=args.dicom_seg_type,
        echo=args.echo,
        t2=args.t2,
        qdess_parameters=_once_each(args.qdess_parameter or [], flag="--qdess-parameter"),
        qdess_parameters_csv=args.qdess_parameters_csv,
        series=args.series,
        resume=not args.no_resume,
        skip_bad_inputs=args.skip_bad_inputs,
    )
    cases = report.cases
    print(
        json.dumps(
            {
                "output": str(report.output),
                "cases": len(report),
                "volumes_csv": str(report.volumes_csv),
                "classes": list(report.class_names),
                # The cases a pipeline should look at (the warnings on stderr say why).
                # Predicted at a spacing the run never saw (resampled cases were brought into it).
                "spacing_outside_training": [
                    c.case for c in cases if c.spacing_fits_training is False and c.resampled_to_mm is None
                ],
                "anatomy_cut_by_crop": [c.case for c in cases if c.anatomy_cut_by_crop],
                # Taken from an interrupted predict into the same output, not predicted again.
                "resumed": list(report.resumed),
                # Left out by --skip-bad-inputs (skipped.csv holds their errors).
                "skipped": [s.case for s in report.skipped],
            }
        )
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from inpaintssl.api import ExportError, export_model

    try:
        path = export_model(
            args.run,
            format=args.format,
            output=args.output,
            opset=args.opset,
            which=args.which,
            atol=args.atol,
            overwrite=args.overwrite,
        )
    except (ImportError, ExportError) as exc:
        # A missing optional extra (onnx) is a user's setup problem, not a crash. ExportError is
        # caught here rather than in main(), which would import the whole API for every command.
        print(f"inpaintssl export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"output": str(path), "format": args.format}))
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from inpaintssl.cli.experiment import run_experiment_command

    return int(run_experiment_command(args))


def _cmd_cache(args: argparse.Namespace) -> int:
    from inpaintssl.cli.cache import run_cache_command

    return run_cache_command(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from inpaintssl.config import ConfigError
    from inpaintssl.studies.demo import DemoRunsError, run_demo

    # The quick demo's own default folder, as `make demo-quick` writes it: in the full demo's, the
    # full demo that usually follows would be refused (another demo's settings).
    output = args.output or Path("demo-report-quick" if args.quick else "demo-report")
    if output.exists() and not output.is_dir():
        # Checked before the demo starts: it printed its whole plan, then "[Errno 17] File exists".
        raise ConfigError(f"--output {output} is a file; expected a folder for the report (new or earlier)")
    try:
        run_demo(output=output, quick=args.quick, seed=args.seed, quiet=args.quiet)
    except DemoRunsError as exc:
        # Failed runs are not a usage error: status 1, as `experiment run` ends when runs failed.
        _tell(f"inpaintssl {args.command}: error: {exc}")
        return 1
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from inpaintssl.registry import REGISTRIES

    # Every plugin is imported here (check=True): a listing that calls a broken entry point
    # healthy is worse than a slower one.
    report: dict[str, list[dict[str, Any]]] = {}
    for kind, registry in REGISTRIES.items():
        report[kind] = []
        for entry in registry.entries(check=True):
            for e in (entry, *entry.shadowed):
                report[kind].append(
                    {
                        "name": e.name,
                        "source": e.source,
                        "target": e.target,
                        "distribution": e.distribution,
                        "status": e.status,
                        "reason": e.reason,
                    }
                )
    # A broken plugin fails the command, so that a plugin package's CI can gate on it; a shadowed
    # one is never used, and an unavailable one only waits for its optional dependency.
    status = 1 if any(row["status"] == "broken" for rows in report.values() for row in rows) else 0
    if args.json:
        print(json.dumps(report, indent=2))
        return status
    for kind, rows in report.items():
        print(f"{kind} (entry-point group inpaintssl.{kind}):")
        for row in rows:
            origin = "built-in" if row["source"] == "builtin" else f"plugin from {row['distribution']}"
            state = "" if row["status"] == "ok" else f"  {row['status'].upper()}: {row['reason']}"
            print(f"  {row['name']:<24} {origin}  [{row['target']}]{state}")
    return status


def _config_class(stage: str) -> Any:
    from inpaintssl.config import EvaluateConfig, FinetuneConfig, PretrainConfig

    return {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "evaluate": EvaluateConfig}[stage]


def _cmd_series(args: argparse.Namespace) -> int:
    from inpaintssl.api import list_dicom_series

    found = list_dicom_series(args.path)
    if args.json:
        rows = [{**dataclasses.asdict(s), "folder": str(s.folder)} for s in found]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{args.path}: {len(found)} series")
    for s in found:
        echoes = f", {len(s.echo_times_ms)} echoes" if len(s.echo_times_ms) > 1 else ""
        what = f"{s.slices} slices{echoes}" if s.image else "not an image series"
        number = "-" if s.number is None else str(s.number)
        print(
            f"  {number:>4}  {s.description or '(no description)':<28} {s.modality or '-':<6} {what}; "
            f"{s.files} file(s) in {s.folder}; SeriesInstanceUID {s.uid}"
        )
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from inpaintssl.config import config_to_yaml, load_config, recipe_filled

    cls = _config_class(args.stage)
    if args.action == "schema":
        if args.items:
            # The schema is the stage's, whatever a config holds: extra words were ignored silently.
            raise ValueError(
                f"config schema takes only the stage; found {' '.join(args.items)!r} after it "
                f"(to see a config with them applied: inpaintssl config show {args.stage} ...)"
            )
        print(json.dumps(cls.model_json_schema(), indent=2))
        return 0
    config, overrides = _split_config_and_overrides(args.items)
    source: Any = config if config is not None else {}
    if args.stage == "evaluate" and config is None:
        # The one required field: show where it goes instead of failing on its absence (an
        # override checkpoint=... replaces the placeholder).
        source = {"checkpoint": "<required: a run folder, checkpoint folder or .safetensors file>"}
    resolved = load_config(source, cls, overrides=overrides)
    print(config_to_yaml(resolved), end="")
    filled = recipe_filled(resolved)
    if filled:
        # Comments: the output stays a config to feed back, with the recipe still deciding.
        recipe = getattr(getattr(resolved, "optim", None), "recipe", "")
        print(f"# filled in by optim.recipe={recipe} for the fields left null above:")
        for field, value in filled.items():
            print(f"#   {field}: {json.dumps(value)}")
    return 0


_HELP: Mapping[str, str] = MappingProxyType(
    {
        "pretrain": "pretrain a backbone by inpainting (context prediction/restoration)",
        "finetune": "fine-tune for segmentation from pretrained weights or from scratch",
        "evaluate": "per-image metrics of a checkpoint on a data split",
        "predict": "label maps for new scans, on each scan's own voxel grid",
        "export": "write a trained network as ONNX, TorchScript or a plain safetensors state dict",
        "experiment": "run or report one of the paper's studies from a spec",
        "experiment run": "run (or resume) every pending run of a study spec",
        "experiment report": "write tables, figures and a report from a study's database",
        "experiment status": "how many runs are done, running, pending",
        "cache": "what a data.cache_dir folder holds; remove the volumes no longer worth keeping",
        "cache info": "how many decompressed volumes, how large, when last used",
        "cache prune": "remove decompressed volumes of changed sources, unused past an age, or beyond a size",
        "demo": "the whole method on the bundled MNI152 brain template",
        "plugins": "list every registry's names and where they come from",
        "series": "list the DICOM series under a folder: what --series and data.params.series name",
        "config": "print a resolved config or its JSON schema",
    }
)
"""The one-line help of every subcommand, keyed by its words."""

_EXAMPLES: Mapping[str, str] = MappingProxyType(
    {
        "pretrain": "inpaintssl pretrain pre.yaml pretext.task=context_restoration --output runs/pre",
        "finetune": "inpaintssl finetune ft.yaml transfer.pretrained=runs/pre data.label_fraction=0.1",
        "evaluate": "inpaintssl evaluate runs/ft --split test --output test.csv",
        "predict": "inpaintssl predict runs/ft 'scans/*.nii.gz' dicom/series-01 --output segmentations",
        "export": "inpaintssl export runs/ft --format onnx --output model.onnx",
        "experiment": "inpaintssl experiment run examples/studies/pretext_design.yaml --shard 0/4",
        "experiment run": "inpaintssl experiment run study.yaml --executor slurm --partition gpu",
        "experiment report": "inpaintssl experiment report study.yaml --output report/",
        "experiment status": "inpaintssl experiment status study.yaml",
        "cache": "inpaintssl cache prune /scratch/me/decompressed --max-size 200G",
        "cache info": "inpaintssl cache info /scratch/me/decompressed",
        "cache prune": "inpaintssl cache prune /scratch/me/decompressed --stale --max-size 200G",
        "demo": "inpaintssl demo --output demo-report",
        "plugins": "inpaintssl plugins --json",
        "series": "inpaintssl series pacs-export/patient-001/",
        "config": "inpaintssl config show finetune finetune.yaml optim.recipe=paper",
    }
)
"""An example command line of every subcommand (its help epilog; a test runs none, it checks the words)."""


def _command(parent: Any, words: str, *, description: str | None = None) -> argparse.ArgumentParser:
    """Add the subcommand ``words`` (its last word) to ``parent``, with its help line and example."""
    parser: argparse.ArgumentParser = parent.add_parser(
        words.split()[-1], help=_HELP[words], description=description, epilog=f"example: {_EXAMPLES[words]}"
    )
    # The innermost subcommand's parser, to report an argument error under its own name.
    parser.set_defaults(command_parser=parser)
    # Every flag that takes a value takes it once: a command line edited by appending (a script's
    # --output, then the user's) ran with whichever came last.
    parser.register("action", None, _Once)
    parser.register("action", "store", _Once)
    return parser


class _Once(argparse.Action):
    """Store a flag's value, refusing the flag given twice (argparse keeps the last silently).

    Every subcommand's flags that take a value store it so (:func:`_command`); a positional
    argument is stored as argparse stores it.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option: str | None = None,
    ) -> None:
        if option is not None and getattr(namespace, f"_{self.dest}_given", False):
            first = getattr(namespace, self.dest)
            # As text: a path argument's value is a Path, whose repr is not what the user typed; a
            # value its type turned into something else (a size in bytes, an age) is not named.
            shown = f" ({str(first)!r} and {str(values)!r})" if isinstance(values, (str, os.PathLike)) else ""
            parser.error(f"{option} given twice{shown}; give it once")
        setattr(namespace, f"_{self.dest}_given", True)
        setattr(namespace, self.dest, values)


def _trailing_list(parser: argparse.ArgumentParser, dest: str) -> None:
    """Mark ``dest`` (a ``nargs`` list positional) as taking words given after the flags too.

    argparse fills a list positional from one run of words: ``pretrain cfg.yaml --quiet
    optim.lr=0.1`` would reject ``optim.lr=0.1``. :func:`parse_args` adds such words to ``dest``.
    """
    parser.set_defaults(trailing_list=dest)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation tools)."""
    parser = argparse.ArgumentParser(
        prog="inpaintssl",
        description="Inpainting-based self-supervised pretraining for medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"inpaintssl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "pretrain")
    _common_run_flags(p)
    p.set_defaults(func=_cmd_pretrain)

    p = _command(sub, "finetune")
    _common_run_flags(p)
    p.set_defaults(func=_cmd_finetune)

    p = _command(sub, "evaluate")
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT_OR_CONFIG",
        type=_user_path,
        help="run folder, checkpoint folder or .safetensors file; or an evaluate config file "
        "(YAML/JSON, as `inpaintssl config show evaluate` writes one), whose fields the flags override",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        default=[],  # optional, also in argparse's "required" message (see _common_run_flags)
        metavar="data.KEY=VALUE",
        help="overrides of the data config, e.g. data.image_size=[64,64]",
    )
    _trailing_list(p, "overrides")
    p.add_argument(
        "--data",
        type=_user_path,
        help="data config: a YAML/JSON file holding the data section's fields, or a whole run config "
        "(its data section is used); default: the run's own data section",
    )
    p.add_argument("--split", choices=["train", "val", "test"], help="default: test")
    p.add_argument("--output", type=_user_path, help="CSV path (default: <run>/eval_<split>.csv)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int, help="inference batch size (default: 9)")
    p.set_defaults(func=_cmd_evaluate)

    predict_text = (
        "Segment scans with a fine-tuned run: the run's preprocessing is applied and inverted, so "
        "each label map (<case>_seg.nii.gz, or --output-format's) has its input's shape and affine; "
        "volumes.csv holds each class's volume in mL. Nothing is written to --output unless every "
        "input succeeds (or, with --skip-bad-inputs, is left out); an interrupted predict's finished "
        "cases are taken by the next (see --no-resume)."
    )
    p = _command(sub, "predict", description=predict_text)
    p.add_argument(
        "run",
        metavar="RUN_OR_CHECKPOINT",
        type=_user_path,
        help="fine-tuning run folder, checkpoint folder or .safetensors file (export --format safetensors)",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="NIfTI, MetaImage, NRRD, NumPy or HDF5 files, folders of them, DICOM series folders or files "
        "(a study's folder of series folders as 'study/*/'), or glob patterns",
    )
    _trailing_list(p, "inputs")
    p.add_argument(
        "--output", type=_user_path, required=True, help="folder for the label maps and volumes.csv"
    )
    p.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default: 16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument(
        "--probabilities", action="store_true", help="also write <case>_prob.nii.gz (or .mha, .nrrd, .dcm)"
    )
    p.add_argument(
        "--output-format",
        choices=("nifti", "metaimage", "nrrd", "dicom_seg", "rtstruct", "input"),
        default="nifti",
        help="label map files: NIfTI (<case>_seg.nii.gz), MetaImage (.mha), NRRD (.nrrd) or, for DICOM "
        "series, DICOM SEG (.dcm, the dicom-seg extra) or an RT Structure Set of contours (rtstruct, .dcm, "
        "without --probabilities); input: each input's own kind (DICOM SEG, MetaImage, NRRD), NIfTI for "
        "the others (default: nifti)",
    )
    p.add_argument(
        "--dicom-seg-type",
        choices=("binary", "labelmap"),
        default="binary",
        help="type of a DICOM SEG label map: binary (a frame per class and slice, read by every SEG viewer) "
        "or labelmap (Label Map Segmentation Storage: a frame per slice holding the class numbers) "
        "(default: binary)",
    )
    p.add_argument("--slice-axis", type=int, help="slice along this axis instead of the run's")
    p.add_argument(
        "--key",
        help="HDF5 dataset or .npz member holding the image (default: 'image', or the file's only array)",
    )
    p.add_argument(
        "--echo",
        type=int,
        metavar="K",
        help="echo read from multi-echo DICOM series, 1 being the shortest echo time (default: the run's "
        "own; without one such a series is refused)",
    )
    p.add_argument(
        "--series",
        type=_series_choice,
        metavar="SERIES",
        help="each DICOM input folder is a whole study (its series' files together or in subfolders): "
        "read the series of this SeriesDescription (without case), SeriesInstanceUID, or SeriesNumber "
        "(a whole number); default: the series the run read from each study, where an input is one",
    )
    p.add_argument(
        "--t2",
        action="store_true",
        help="also compute a T2 map from each input's echoes (a qDESS DICOM series of 2 echoes, or a "
        "multi-echo spin-echo series of 3 or more, the first left out): <case>_t2.nii.gz, and each "
        "class's mean T2 in volumes.csv",
    )
    p.add_argument(
        "--qdess-parameter",
        type=_scan_parameter,
        action="append",
        metavar="KEY=VALUE",
        help="a scan parameter of the qDESS T2 model, over what each series states (tr_ms, te_ms, "
        "flip_angle_deg, gl_area, tg_us; the spoiler's gl_area and tg_us are GE private tags, which "
        "other exports lack); repeat it for several; with --t2",
    )
    p.add_argument(
        "--qdess-parameters-csv",
        metavar="CSV",
        help="a table of qDESS scan parameters per case, for a cohort whose scans differ: a 'case' column "
        "(each input's file or folder name without suffixes) or SKM-TEA's all_metadata.csv as it is "
        "(MTR_ID), and a column per parameter (the keys above, or all_metadata.csv's names); a case's "
        "row overrides what its series states; with --t2",
    )
    p.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="MM",
        help="voxel size in mm of NumPy/HDF5 inputs, one value per stored axis: 3 for a volume, "
        "2 (or 3, with the thickness) for a single 2-D slice",
    )
    p.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "bf16", "fp16", "off"],
        help="CUDA mixed precision; auto: bf16 where supported, else fp16 (default: auto)",
    )
    p.add_argument(
        "--large-slices",
        default="crop",
        choices=["crop", "sliding_window"],
        help="slices larger than a crop_or_pad run's data.image_size: crop to the centre, as training "
        "did, or cover with overlapping windows of that size (default: crop)",
    )
    p.add_argument(
        "--overlap",
        type=float,
        default=0.5,
        help="share of a sliding window its neighbours overlap, in [0, 1) (default: 0.5)",
    )
    p.add_argument(
        "--resample",
        default="off",
        choices=["off", "outside"],
        help="outside: resample scans whose in-plane spacing lies outside the run's training range to "
        "the nearest spacing in it (and the labels back); off: use them as they are, with a "
        "warning (default: off)",
    )
    p.add_argument(
        "--orientation",
        default="auto",
        help="axis order NIfTI/DICOM inputs are read in before slicing: auto (the training volumes' "
        "one), stored, or axis codes such as RAS (default: auto)",
    )
    p.add_argument(
        "--check-threads",
        type=int,
        metavar="N",
        help="inputs read and checked at once before any is predicted, each on a thread holding its "
        "decompressed scan; 1: one after the other (default: the cores this process may use, 8 at most)",
    )
    p.add_argument(
        "--read-ahead",
        choices=("auto", "on", "off"),
        default="auto",
        help="read the next input on a background thread while a case is predicted; auto: on a GPU "
        "only (default: auto)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="predict every case, and remove what an interrupted predict into --output kept; without it, "
        "the cases an interrupted predict of the same model and options finished (each case's input "
        "unchanged) are taken, not predicted again",
    )
    p.add_argument(
        "--skip-bad-inputs",
        action="store_true",
        help="leave out each input that fails a check (unreadable, blank, wrong channel count, changed "
        "while predicting, ...) with a warning and predict the others, instead of stopping at the first; "
        "those left out are listed in --output's skipped.csv with their errors",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars (inputs checked, cases predicted)")
    p.set_defaults(func=_cmd_predict)

    export_text = (
        "Export with weight standardisation folded into plain convolutions; the file is checked "
        "against the PyTorch model before it is kept (onnxruntime for ONNX)."
    )
    p = _command(sub, "export", description=export_text)
    p.add_argument(
        "run",
        metavar="RUN_OR_CHECKPOINT",
        type=_user_path,
        help="run folder, checkpoint folder or .safetensors file",
    )
    p.add_argument(
        "--format",
        required=True,
        choices=["onnx", "torchscript", "safetensors"],
        help="onnx (needs the onnx extra), torchscript, or safetensors (a plain state dict)",
    )
    p.add_argument("--output", type=_user_file_path, required=True, help="the file to write")
    p.add_argument("--which", choices=["best", "last"], help="checkpoint of a run folder (default: best)")
    p.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    p.add_argument(
        "--atol", type=float, help="largest max-abs difference the checks accept (default: 1e-4 ONNX, 1e-5)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --output that is not an earlier inpaintssl export (an earlier export "
        "is replaced without it; a run's checkpoints never are)",
    )
    p.set_defaults(func=_cmd_export)

    p = _command(sub, "experiment")
    exp = p.add_subparsers(dest="experiment_command", required=True)
    run = _command(exp, "experiment run")
    spec_help = "study spec (YAML), e.g. examples/studies/pretext_design.yaml"
    run.add_argument("spec", type=_user_path, help=spec_help)
    run.add_argument(
        "--shard",
        default="0/1",
        help="i/n: this process runs the i-th of n shards, counted from 0 (default: 0/1, every run)",
    )
    run.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine (local; default: 1)"
    )
    run.add_argument(
        "--executor",
        default="local",
        choices=["local", "slurm", "ray"],
        help="local: worker processes here; slurm: a job array (submitit); ray: Ray tasks (default: local)",
    )
    res = run.add_argument_group("resources of --executor slurm|ray (override the spec's executor section)")
    res.add_argument("--partition", help="Slurm partition")
    res.add_argument("--gpus-per-task", type=int, dest="gpus_per_task", help="GPUs of each task")
    res.add_argument(
        "--cpus-per-task",
        type=int,
        dest="cpus_per_task",
        help="CPU cores of each task (local: threads of each worker)",
    )
    res.add_argument("--timeout-min", type=int, dest="timeout_min", help="wall time of a Slurm task")
    res.add_argument("--mem-gb", type=float, dest="mem_gb", help="memory of each task in GB")
    res.add_argument(
        "--array-parallelism",
        type=int,
        dest="array_parallelism",
        help="most tasks of the study submitted at once",
    )
    res.add_argument("--chunk-size", type=int, dest="chunk_size", help="runs per task")
    res.add_argument("--cluster", choices=["slurm", "local"], help="submitit cluster (local: try it here)")
    res.add_argument("--ray-address", dest="ray_address", help="Ray cluster address (default: a local one)")
    res.add_argument(
        "--slurm-option",
        dest="slurm_options",
        action="append",
        metavar="KEY=VALUE",
        help="another sbatch option of each array task, e.g. account=proj42, qos=high, "
        "constraint=a100 (repeatable; replaces the spec's executor.slurm_options)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress output")
    rep = _command(exp, "experiment report")
    rep.add_argument("spec", type=_user_path, help=spec_help)
    rep.add_argument("--output", type=_user_path, help="report folder (default: <the spec's output>/report)")
    st = _command(exp, "experiment status")
    st.add_argument("spec", type=_user_path, help=spec_help)
    p.set_defaults(func=_cmd_experiment)

    _cache_parser(sub)

    p = _command(sub, "demo")
    p.add_argument("--quick", action="store_true", help="a sub-2-minute version (used in CI)")
    p.add_argument(
        "--output",
        type=_user_path,
        default=None,
        help="report folder, also holding the runs; an earlier demo there is resumed with the same --quick "
        "and --seed, and refused with others (default: demo-report, or demo-report-quick with --quick)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of every run, 0 to 2**32 - 1 (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_demo)

    p = _command(sub, "plugins")
    p.add_argument("--json", action="store_true", help="print the listing as JSON")
    p.set_defaults(func=_cmd_plugins)

    p = _command(sub, "series")
    p.add_argument("path", type=_user_path, help="a DICOM study's folder (subfolders included) or file")
    p.add_argument("--json", action="store_true", help="print the listing as JSON")
    p.set_defaults(func=_cmd_series)

    p = _command(sub, "config")
    p.add_argument(
        "action",
        choices=["show", "schema"],
        help="show: the resolved config as YAML; schema: the stage's JSON schema",
    )
    p.add_argument("stage", choices=["pretrain", "finetune", "evaluate"], help="whose configuration")
    p.add_argument(
        "items",
        nargs="*",
        default=[],  # see _common_run_flags
        metavar="CONFIG|KEY=VALUE",
        help="show only: a config file, then overrides",
    )
    _trailing_list(p, "items")
    p.set_defaults(func=_cmd_config)
    return parser


def _cache_parser(sub: Any) -> None:
    """``inpaintssl cache info|prune FOLDER``."""
    from inpaintssl.cli.cache import parse_age, parse_size

    p = _command(sub, "cache")
    cache = p.add_subparsers(dest="cache_command", required=True)
    folder_help = "a data.cache_dir folder"
    info = _command(cache, "cache info")
    info.add_argument("folder", type=_user_path, help=folder_help)
    info.add_argument("--json", action="store_true", help="print the listing as JSON")
    prune = _command(cache, "cache prune")
    prune.add_argument("folder", type=_user_path, help=folder_help)
    prune.add_argument(
        "--max-size",
        type=parse_size,
        dest="max_size",
        metavar="SIZE",
        help="the most the volumes left may take: 200G or 200GiB (powers of 1024), 200GB (of 1000)",
    )
    prune.add_argument(
        "--unused-for",
        type=parse_age,
        dest="unused_for",
        metavar="AGE",
        help="remove every volume unused for longer than this: 90m, 12h, 30d, 2w (lower-case units)",
    )
    prune.add_argument(
        "--stale",
        action="store_true",
        help="remove every volume whose source files were rewritten or removed since",
    )
    prune.add_argument(
        "--dry-run", action="store_true", dest="dry_run", help="remove nothing; say what would go"
    )
    prune.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_cache)


_RESUME_HINT = MappingProxyType(
    {
        "pretrain": "; the same command with --resume continues from the last checkpoint",
        "finetune": "; the same command with --resume continues from the last checkpoint",
        "experiment": "; the same command continues the study (finished runs are kept)",
        "demo": "; the same command continues the demo (finished runs are kept)",
    }
)


def _joined_shard(argv: Sequence[str]) -> list[str]:
    """``--shard -1/2`` as ``--shard=-1/2``, so that the library's own check names the bad value.

    argparse takes any word starting with ``-`` that is not a plain negative number for a flag, and
    answers ``expected one argument``, which hides what was wrong.
    """
    joined: list[str] = []
    for word in argv:
        if joined and joined[-1] == "--shard" and word.startswith("-") and not word.startswith("--"):
            joined[-1] = f"--shard={word}"
        else:
            joined.append(word)
    return joined


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; overrides and inputs may also come after the flags.

    Raises:
        SystemExit: With status 2 and the subcommand's usage, for an unknown flag or a missing
            argument (argparse's own behaviour).

    Example:
        >>> parse_args(["pretrain", "pre.yaml", "--quiet", "optim.lr=0.1"]).items
        ['pre.yaml', 'optim.lr=0.1']
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(_joined_shard(sys.argv[1:] if argv is None else argv))
    if extra:
        trailing: str | None = getattr(args, "trailing_list", None)
        command_parser: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        if trailing is None or any(word.startswith("-") for word in extra):
            command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
        getattr(args, trailing).extend(extra)
    return args


_READER_GONE_STATUS = 141
"""The exit status when stdout's reader went away: ``128 + SIGPIPE``, as a shell reports a command
that SIGPIPE ended (``yes | head``), in line with 130 for Ctrl-C and 143 for SIGTERM."""


class _StdoutWatch:
    """``sys.stdout`` while a command runs, noting whether a write failed because its reader left.

    A ``BrokenPipeError`` from stdout (``inpaintssl config show ... | head -5``) is the reader's
    choice, not the command's failure; one from any other pipe (a worker's, a cluster client's)
    still is. The exception does not say which file it came from, so stdout's writes pass here.
    A process started with stdout closed (``>&-``) has ``sys.stdout`` ``None``, where ``print``
    writes nothing: that is left as it is.
    """

    def __init__(self) -> None:
        self.reader_gone = False
        self._stream: TextIO | None = None

    def __enter__(self) -> _StdoutWatch:
        self._stream = sys.stdout
        if self._stream is not None:
            sys.stdout = cast(TextIO, self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is not None and sys.stdout is cast(TextIO, self):
            sys.stdout = self._stream

    def write(self, text: str) -> int:
        """Write ``text`` to the real stdout."""
        assert self._stream is not None
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self.reader_gone = True
            raise

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of ``lines`` to the real stdout."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the real stdout."""
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self.reader_gone = True
            raise

    def __getattr__(self, name: str) -> Any:
        # Everything else (fileno, isatty, encoding, buffer) is the real stream's.
        return getattr(self._stream, name)


def _exit_for_gone_reader(stream: TextIO | None = None) -> int:
    """Point ``stream`` (default: stdout) at devnull and return :data:`_READER_GONE_STATUS`, saying nothing.

    Python's advice for command-line tools (the :mod:`signal` module's note on SIGPIPE): the output
    still buffered would otherwise meet the broken pipe again at interpreter exit, which prints an
    "Exception ignored" traceback and exits 120.
    """
    _silence(sys.stdout if stream is None else stream)
    return _READER_GONE_STATUS


def _silence(stream: TextIO | None) -> None:
    """Point ``stream``'s file descriptor at devnull, so that nothing written to it fails any more."""
    # A stream without a file descriptor (a test's capture) has no pipe to be broken.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())  # type: ignore[union-attr]
        finally:
            os.close(devnull)


def _tell(line: str) -> bool:
    """Print ``line`` on stderr; ``False`` (and stderr silenced) when stderr's reader has gone.

    ``inpaintssl pretrain ... 2>&1 | head`` closes the pipe stderr writes to as well: the message
    cannot be delivered, and the ``BrokenPipeError`` it raised in an ``except`` clause ended the
    command with Python's status 1 instead of the documented one.
    """
    try:
        print(line, file=sys.stderr, flush=True)
    except BrokenPipeError:
        _silence(sys.stderr)
        return False
    return True


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions :func:`main` reports as a user's error (one line, status 2).

    Importing them loads PyTorch, so a Ctrl-C here is the common case of one given at once.
    """
    from inpaintssl.checkpoint import CheckpointError
    from inpaintssl.config import ConfigError
    from inpaintssl.errors import DataError
    from inpaintssl.registry import PluginLoadError

    return (
        ConfigError,
        DataError,
        CheckpointError,
        PluginLoadError,
        ImportError,  # an optional extra that is not installed; its message names the pip extra
        KeyError,
        ValueError,
        TypeError,
        FloatingPointError,
        OSError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``inpaintssl`` console script; returns the exit status.

    Known user errors (bad config, bad data, bad checkpoint) print one clear message and exit 2.
    A reader of stdout (or of stderr) that stops reading early (``| head``) ends the command
    silently with status 141, as a shell reports a command that SIGPIPE ended.
    """
    args: argparse.Namespace | None = None
    try:
        args = parse_args(argv)  # first: --help and a mistyped flag answer without loading PyTorch
        user_errors = _user_errors()
    except KeyboardInterrupt:
        # Ctrl-C at once lands in these imports (PyTorch's take seconds), outside the handler
        # below: it printed a traceback of the import machinery. Nothing has started to resume.
        _tell(
            f"inpaintssl{'' if args is None else ' ' + args.command}: interrupted before the command started"
        )
        return 130

    stdout = _StdoutWatch()
    try:
        with command_warnings(args.command), terminate_as_exit(), stdout:
            status = int(args.func(args))
            # Here, not at interpreter exit: a reader that left is then seen by the handler below.
            stdout.flush()
            return status
    except BrokenPipeError as exc:
        if stdout.reader_gone:
            return _exit_for_gone_reader()
        if not _tell(f"inpaintssl {args.command}: error: {exc}"):
            # stderr's own reader left (`2>&1 | head`), so most likely that is the pipe that broke.
            return _READER_GONE_STATUS
        return 2
    except KeyboardInterrupt:
        # The run's lock and temporaries are cleaned up on the way out; its last checkpoint stays.
        _tell(f"inpaintssl {args.command}: interrupted{_RESUME_HINT.get(args.command, '')}")
        return 130
    except Terminated as exc:
        # Cleaned up as for Ctrl-C; the exit status stays the signal's (143), which schedulers read.
        hint = _RESUME_HINT.get(args.command, "")
        _tell(f"inpaintssl {args.command}: terminated ({exc.signal_name}){hint}")
        raise
    except user_errors as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        _tell(f"inpaintssl {args.command}: error: {message}")
        return 2
