"""``inpaintssl experiment run|report|status``: the study runner on the command line.

::

    inpaintssl experiment run spec.yaml [--shard i/n] [--workers N] [--quiet]
    inpaintssl experiment run spec.yaml --executor slurm [--partition P --gpus-per-task 1 ...]
        [--slurm-option account=proj42 --slurm-option qos=high ...]
    inpaintssl experiment run spec.yaml --executor ray [--ray-address auto]
    inpaintssl experiment status spec.yaml
    inpaintssl experiment report spec.yaml [--output DIR]

``run`` exits 0 when every run of its shard is done, 1 when some failed (they are listed; running
the command again retries them). On a Slurm cluster, run the driver on the login node (in
``tmux`` or ``screen``: it waits for the array) and let it submit::

    inpaintssl experiment run spec.yaml --executor slurm --partition gpu --gpus-per-task 1

``report`` first merges result files that remote workers wrote and no driver merged yet. Each
command parses and prints only; the work is :func:`inpaintssl.studies.run_study`,
:func:`inpaintssl.studies.study_status` and :func:`inpaintssl.studies.report_study`.

Example:
    >>> import argparse, tempfile, pathlib, yaml
    >>> spec = pathlib.Path(tempfile.mkdtemp()) / "spec.yaml"
    >>> _ = spec.write_text(yaml.safe_dump({"study": "clinical", "output": str(spec.parent / "out")}))
    >>> args = argparse.Namespace(experiment_command="status", spec=spec)
    >>> run_experiment_command(args)  # doctest: +ELLIPSIS
    clinical: 0 of 11 runs done
      finetune: 10 not started
      pretrain: 1 not started
    databases: none yet
    0
"""

from __future__ import annotations

import argparse
import json
import sys

from inpaintssl.studies.grid import parse_shard
from inpaintssl.studies.report import report_study
from inpaintssl.studies.runner import run_study
from inpaintssl.studies.spec import ExecutorSpec, executor_flag
from inpaintssl.studies.status import study_status
from inpaintssl.studies.submitit_backend import check_slurm_options

__all__ = ["run_experiment_command"]

_SLURM_ONLY = frozenset({"partition", "timeout_min", "cluster", "slurm_options"})
"""Resource flags of Slurm (submitit) alone; Ray has no partitions or wall times."""
_RAY_ONLY = frozenset({"ray_address"})


def _flag(field: str) -> str:
    # Named as the runner's errors name them (studies cannot import the command line).
    return executor_flag(field) or f"executor.{field}"


def _slurm_options(given: list[str]) -> dict[str, str]:
    """The ``--slurm-option KEY=VALUE`` flags as a mapping, checked.

    Raises:
        ValueError: A flag without ``KEY=VALUE``, or a key given twice (naming both values): the
            last would otherwise win unseen, as ``--qdess-parameter`` and the spec's
            ``executor.slurm_options`` refuse too.
        inpaintssl.config.ConfigError: A key that is not an sbatch option this executor passes on.
    """
    options: dict[str, str] = {}
    for text in given:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"--slurm-option {text!r}: expected KEY=VALUE with an sbatch long option name, e.g. "
                "account=proj42, qos=high or constraint=a100"
            )
        key, value = key.strip(), value.strip()
        if key in options:
            raise ValueError(
                f"--slurm-option {key} given twice ({options[key]!r}, then {value!r}); give each once"
            )
        options[key] = value
    return check_slurm_options(options, source="--slurm-option")


def _run(args: argparse.Namespace) -> int:
    # Command-line flags override the spec's executor section (fields without a flag read None).
    given = {k: getattr(args, k, None) for k in ExecutorSpec.model_fields}
    resources = {k: v for k, v in given.items() if v is not None}
    if "slurm_options" in resources:
        resources["slurm_options"] = _slurm_options(list(resources["slurm_options"]))
    executor = getattr(args, "executor", "local")
    # cpus_per_task is also the local workers' thread count (as the spec's field is).
    cluster_only = sorted(k for k in resources if k != "cpus_per_task")
    if executor == "local" and cluster_only:
        flag = cluster_only[0]
        owners = "ray" if flag in _RAY_ONLY else "slurm" if flag in _SLURM_ONLY else "slurm or ray"
        raise ValueError(
            f"{_flag(flag)} applies to --executor {owners}; "
            "the local executor runs on this machine with --workers (and --cpus-per-task threads each)"
        )
    # A flag the chosen engine has no use for would otherwise be dropped without a word.
    other = sorted(k for k in resources if k in (_RAY_ONLY if executor == "slurm" else _SLURM_ONLY))
    if executor in ("slurm", "ray") and other:
        owner = "ray" if executor == "slurm" else "slurm"
        raise ValueError(
            f"{_flag(other[0])} applies to --executor {owner} only; --executor {executor} has no use for it"
        )
    summary = run_study(
        args.spec,
        shard=parse_shard(args.shard),
        workers=args.workers,
        quiet=args.quiet,
        executor=executor,
        resources=resources,
    )
    print(
        json.dumps(
            {
                "study": summary.study,
                "executor": executor,
                "shard": f"{summary.shard[0]}/{summary.shard[1]}",
                "database": str(summary.database),
                "runs": summary.total,
                "status": summary.status,
                "executed": summary.executed,
            }
        )
    )
    for run_id, error in summary.errors.items():
        print(f"failed: {run_id}: {error.splitlines()[0] if error else ''}", file=sys.stderr)
    return 0 if summary.complete else 1


def _status(args: argparse.Namespace) -> int:
    status = study_status(args.spec)
    print(f"{status.study}: {status.done} of {status.planned} runs done")
    for kind, by_status in status.counts.items():
        print(f"  {kind}: " + ", ".join(f"{n} {name}" for name, n in sorted(by_status.items())))
    print("databases: " + (", ".join(str(p) for p in status.databases) or "none yet"))
    if status.unmerged:
        print(f"result files not merged yet: {status.unmerged} (`experiment run` or `report` merges them)")
    for path in status.damaged:
        print(f"  damaged, refused by run and report: {path} (delete it; its run trains again)")
    if status.unplanned:
        print(f"result files of runs this spec does not plan: {status.unplanned} (ignored)")
    for run_id, error in status.failures:
        print(f"  failed {run_id}: {error}")
    return 0


def _report(args: argparse.Namespace) -> int:
    done = report_study(args.spec, output=args.output)
    if done.merged.merged:
        print(f"merged {done.merged.merged} result files into {done.database}", file=sys.stderr)
    if done.left_out:
        print(
            f"left out {done.left_out} recorded run(s) that this spec does not plan (from an earlier "
            "version of it?); the report covers the spec's own runs",
            file=sys.stderr,
        )
    files = done.files
    print(
        json.dumps(
            {
                "markdown": str(files.markdown),
                "html": str(files.html),
                "tables": len(files.tables),
                "figures": len(files.figures),
                "skipped": [name for name, _ in files.skipped],
            }
        )
    )
    return 0


def run_experiment_command(args: argparse.Namespace) -> int:
    """Dispatch ``inpaintssl experiment <run|report|status>``; returns the exit status.

    Args:
        args: Parsed arguments of :func:`inpaintssl.cli.build_parser`'s ``experiment`` command:
            ``experiment_command`` and ``spec``, plus ``shard``, ``workers``, ``quiet``,
            ``executor`` and the resource flags (run) or ``output`` (report).

    Raises:
        inpaintssl.config.ConfigError: Invalid spec (the CLI prints it and exits 2).
        ValueError: Invalid ``--shard``, ``--workers`` or ``--slurm-option``, or a resource flag
            with ``--executor local``.
    """
    commands = {"run": _run, "status": _status, "report": _report}
    if args.experiment_command not in commands:
        raise ValueError(
            f"experiment command {args.experiment_command!r}; expected one of {sorted(commands)}"
        )
    return commands[args.experiment_command](args)
