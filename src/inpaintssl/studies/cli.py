"""``inpaintssl experiment run|report|status``: the study runner on the command line.

::

    inpaintssl experiment run spec.yaml [--shard i/n] [--workers N] [--quiet]
    inpaintssl experiment run spec.yaml --executor slurm [--partition P --gpus-per-task 1 ...]
    inpaintssl experiment run spec.yaml --executor ray [--ray-address auto]
    inpaintssl experiment status spec.yaml
    inpaintssl experiment report spec.yaml [--output DIR]

``run`` exits 0 when every run of its shard is done, 1 when some failed (they are listed; running
the command again retries them). On a Slurm cluster, run the driver on the login node (in
``tmux`` or ``screen``: it waits for the array) and let it submit::

    inpaintssl experiment run spec.yaml --executor slurm --partition gpu --gpus-per-task 1

``report`` first merges result files that remote workers wrote and no driver merged yet.

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

from inpaintssl.studies.grid import expand_study, parse_shard
from inpaintssl.studies.merge import merge_results
from inpaintssl.studies.report import write_report
from inpaintssl.studies.resultfiles import result_files
from inpaintssl.studies.results import load_runs, study_databases
from inpaintssl.studies.runner import run_study
from inpaintssl.studies.spec import ExecutorSpec, load_spec

__all__ = ["run_experiment_command"]


def _run(args: argparse.Namespace) -> int:
    # Command-line flags override the spec's executor section (fields without a flag read None).
    given = {k: getattr(args, k, None) for k in ExecutorSpec.model_fields}
    resources = {k: v for k, v in given.items() if v is not None}
    executor = getattr(args, "executor", "local")
    # cpus_per_task is also the local workers' thread count (as the spec's field is).
    cluster_only = sorted(k for k in resources if k != "cpus_per_task")
    if executor == "local" and cluster_only:
        raise ValueError(
            f"--{cluster_only[0].replace('_', '-')} applies to --executor slurm or ray; "
            "the local executor runs on this machine with --workers (and --cpus-per-task threads each)"
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
    spec = load_spec(args.spec)
    plan = expand_study(spec)
    runs = load_runs(spec)
    counts: dict[str, dict[str, int]] = {}
    for job in plan:
        run = runs.get(job.id)
        status = run.status if run is not None else "not started"
        counts.setdefault(job.kind, {})
        counts[job.kind][status] = counts[job.kind].get(status, 0) + 1
    done = sum(c.get("done", 0) for c in counts.values())
    print(f"{spec.study}: {done} of {len(plan)} runs done")
    for kind, by_status in counts.items():
        print(f"  {kind}: " + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items())))
    print("databases: " + (", ".join(str(p) for p in study_databases(spec)) or "none yet"))
    planned = {job.id for job in plan}
    files = result_files(spec.results_dir())
    unmerged = [
        p for p in files if p.stem in planned and (p.stem not in runs or runs[p.stem].status != "done")
    ]
    if unmerged:
        print(f"result files not merged yet: {len(unmerged)} (`experiment run` or `report` merges them)")
    unplanned = [p for p in files if p.stem not in planned]
    if unplanned:
        print(f"result files of runs this spec does not plan: {len(unplanned)} (ignored)")
    for job in plan:
        run = runs.get(job.id)
        if run is not None and run.status == "failed" and run.error:
            print(f"  failed {job.id}: {run.error.splitlines()[0]}")
    return 0


def _report(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    # A driver killed after its workers finished leaves result files unmerged: take them in first.
    merged = merge_results(spec)
    merged.warn(results_dir=spec.results_dir())
    if merged.merged:
        print(f"merged {merged.merged} result files into {spec.database_path()}", file=sys.stderr)
    # Runs of earlier versions of the spec stay in the database but are not this spec's results.
    left_out = len(load_runs(spec, planned_only=False)) - len(load_runs(spec))
    if left_out:
        print(
            f"left out {left_out} recorded run(s) that this spec does not plan (from an earlier version "
            "of it?); the report covers the spec's own runs",
            file=sys.stderr,
        )
    files = write_report(spec, output=args.output)
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
        ValueError: Invalid ``--shard``, ``--workers`` or a resource flag with ``--executor local``.
    """
    commands = {"run": _run, "status": _status, "report": _report}
    if args.experiment_command not in commands:
        raise ValueError(
            f"experiment command {args.experiment_command!r}; expected one of {sorted(commands)}"
        )
    return commands[args.experiment_command](args)
