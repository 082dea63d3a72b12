"""How the training recipe was chosen: measured runs on the demo data, selected on validation Dice.

Three measurements, each a list of runs at the demo's size (MNI152 axial slices at 112x96, U-Net
depth 4 width 16, batch 9), every run given the same budget:

- ``finetune``: supervised fine-tuning with 100 % of the labels under candidate recipes (the
  paper's and ``budget`` variants: peak learning rate, Dice vs Dice+CE, sigmoid vs softmax).
  The recipe is chosen on the *validation* Dice of each run's best checkpoint; test Dice is
  recorded for the report, never used to choose.
- ``pretrain``: context-restoration pretraining under the paper's recipe and ``budget`` peak
  learning rates, compared on the validation L2 of the best checkpoint.
- ``transfer``: SSL (encoder transfer) against supervised at 5 % labels over three label-subset
  seeds and at 10 %, for several fine-tuning learning rates (``immediate``) and for
  ``freeze_then_unfreeze``; both arms get the same recipe at each learning rate, so the table
  shows how the SSL gain moves with the fine-tuning learning rate once both arms converge.

Usage::

    python benchmarks/recipe_search.py finetune|pretrain|transfer [--epochs 20] [--steps 10]
        [--pretrain-epochs 40] [--root DIR] [--out benchmarks/results/recipe_search_<what>.json]

Results are appended run by run (a killed search resumes where it stopped). The record keeps the
run folders' root (``--root``, default a temporary folder) and each run's budget: the same command
resumes in that root, since ``transfer``'s SSL runs start from the pretraining run kept there, and
refuses where the root is gone or the budget (``--epochs``, ``--steps``, ``--pretrain-epochs`` for
``transfer``) is not the recorded runs' budget, rather than mix runs of two budgets in one record.
A search whose every run is recorded does nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from provenance import at_least, provenance

import inpaintssl as issl
from inpaintssl.atomic import atomic_write_text
from inpaintssl.training.convergence import ConvergenceWarning

IMAGE_SIZE = [112, 96]
MODEL = {"backbone": "unet2d", "params": {"depth": 4, "base_width": 16}}

FINETUNE_VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"optim": {"recipe": "paper"}, "loss": {"name": "dice"}},
    "budget lr 1e-3 dice": {"optim": {"lr": 1e-3}, "loss": {"name": "dice"}},
    "budget lr 3e-3 dice": {"optim": {"lr": 3e-3}, "loss": {"name": "dice"}},
    "budget lr 1e-2 dice": {"optim": {"lr": 1e-2}, "loss": {"name": "dice"}},
    "budget lr 3e-3 dice_ce": {"optim": {"lr": 3e-3}, "loss": {"name": "dice_ce"}},
    "budget lr 1e-2 dice_ce": {"optim": {"lr": 1e-2}, "loss": {"name": "dice_ce"}},
    "budget lr 3e-3 dice softmax": {
        "optim": {"lr": 3e-3},
        "loss": {"name": "dice", "params": {"activation": "softmax"}},
    },
    "budget lr 1e-2 dice softmax": {
        "optim": {"lr": 1e-2},
        "loss": {"name": "dice", "params": {"activation": "softmax"}},
    },
    "budget lr 3e-2 dice": {"optim": {"lr": 3e-2}, "loss": {"name": "dice"}},
}
PRETRAIN_VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"optim": {"recipe": "paper"}},
    "budget lr 1e-3": {"optim": {"lr": 1e-3}},
    "budget lr 3e-3": {"optim": {"lr": 3e-3}},
    "budget lr 1e-2": {"optim": {"lr": 1e-2}},
}
TRANSFER_LRS = (1e-3, 3e-3, 1e-2)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _budget(args: argparse.Namespace, **optim: Any) -> dict[str, Any]:
    return {"batch_size": 9, "max_epochs": args.epochs, "steps_per_epoch": args.steps, **optim}


def _curve(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("phase", "epoch", "lr", "train_loss", "val_loss", "val_dice", "converged")
    return [{k: row[k] for k in keep if k in row} for row in history]


def _finetune_run(config: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = issl.finetune(config)
    best = next(r for r in result.history if r["epoch"] == result.best_epoch)
    return {
        "val_dice": best.get("val_dice"),
        "best_val_loss": result.best_val_loss,
        "test_dice": result.mean_dice(),
        "test_mean_dice": statistics.fmean(result.mean_dice().values()),
        "converged": result.converged,
        "epochs_run": result.epochs_run,
        "seconds": round(time.perf_counter() - started, 1),
        "curve": _curve(result.history),
    }


def _pretrain_run(config: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = issl.pretrain(config)
    return {
        "best_val_loss": result.best_val_loss,
        "converged": result.converged,
        "epochs_run": result.epochs_run,
        "seconds": round(time.perf_counter() - started, 1),
        "curve": _curve(result.history),
    }


def _data(fraction: float = 1.0, seed: int = 0) -> dict[str, Any]:
    return {"dataset": "mni152", "image_size": IMAGE_SIZE, "label_fraction": fraction, "subset_seed": seed}


def _pretrain_config(args: argparse.Namespace, folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    base = {
        # The training split only: the template's coronal and sagittal slices cross the test
        # slices (the committed records, made before this change, pretrained on them too).
        "data": _data(),
        "model": MODEL,
        "pretext": {"task": "context_restoration", "sampler": "poisson_disc", "patch_size": 6},
        "optim": _budget(args),
        "run": {"output_dir": str(folder), "quiet": True, "resume": True},
    }
    return _merge(base, extra)


def _finetune_config(args: argparse.Namespace, folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    base = {
        "data": _data(),
        "model": MODEL,
        "optim": _budget(args),
        "run": {"output_dir": str(folder), "quiet": True, "resume": True},
    }
    return _merge(base, extra)


def _jobs(args: argparse.Namespace, root: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, kind, config) of every run of the chosen measurement."""
    if args.what == "finetune":
        return [
            (name, "finetune", _finetune_config(args, root / f"ft{i}", extra))
            for i, (name, extra) in enumerate(FINETUNE_VARIANTS.items())
        ]
    if args.what == "pretrain":
        return [
            (name, "pretrain", _pretrain_config(args, root / f"pre{i}", extra))
            for i, (name, extra) in enumerate(PRETRAIN_VARIANTS.items())
        ]
    pre = root / "pretrain"
    jobs = [
        (
            "pretrain",
            "pretrain",
            _pretrain_config(args, pre, {"optim": _budget(args, max_epochs=args.pretrain_epochs)}),
        )
    ]
    subsets = [(0.05, s) for s in range(3)] + [(0.1, 0), (1.0, 0)]
    immediate: dict[float, list[tuple[str, str, dict[str, Any]]]] = {}
    for lr in TRANSFER_LRS:
        for fraction, seed in subsets:
            for arm in ("ssl", "supervised"):
                transfer = {"pretrained": str(pre), "weights": "encoder"} if arm == "ssl" else {}
                extra = {"data": _data(fraction, seed), "optim": {"lr": lr}, "transfer": transfer}
                name = f"{arm} lr {lr:g} {100 * fraction:g}% seed {seed}"
                config = _finetune_config(args, root / name.replace(" ", "_"), extra)
                immediate.setdefault(lr, []).append((name, "finetune", config))
    # The default rate (the comparison that means most) and freeze-then-unfreeze at it come first,
    # so a search cut short has them; then the smaller rates.
    jobs.extend(immediate.pop(1e-2))
    for fraction, seed in subsets:
        extra = {
            "data": _data(fraction, seed),
            "optim": {"lr": 1e-2},
            "transfer": {"pretrained": str(pre), "weights": "encoder", "schedule": "freeze_then_unfreeze"},
        }
        name = f"ssl freeze_then_unfreeze lr 0.01 {100 * fraction:g}% seed {seed}"
        jobs.append((name, "finetune", _finetune_config(args, root / name.replace(" ", "_"), extra)))
    for lr in sorted(immediate, reverse=True):
        jobs.extend(immediate[lr])
    return jobs


def _budget_of_record(args: argparse.Namespace) -> dict[str, Any]:
    """What every run of the record is given; ``transfer``'s SSL runs start from a pretraining run
    of ``--pretrain-epochs`` epochs, so that is part of their budget."""
    budget = {"epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": 9}
    return {**budget, "pretrain_epochs": args.pretrain_epochs} if args.what == "transfer" else budget


def _resumed(
    parser: argparse.ArgumentParser, out: Path, budget: dict[str, Any]
) -> tuple[dict[str, Any], Path | None]:
    """The runs already in ``out`` and the root they were made in (``None``: none recorded).

    Refuses (``parser.error``) a recorded run whose budget is not ``budget``.
    """
    if not out.exists():
        return {}, None
    earlier = json.loads(out.read_text())
    runs: dict[str, Any] = earlier.get("runs", {})
    for name, run in runs.items():
        recorded, compared = run.get("budget"), budget
        if recorded is None and isinstance(earlier.get("budget"), dict):
            # Written before each run kept its budget: the record's, on the keys it states (a
            # transfer record then stated no pretrain_epochs; the committed one's pretraining ran 40).
            recorded = earlier["budget"]
            compared = {key: budget.get(key) for key in recorded}
        if recorded != compared:
            parser.error(
                f"{out} holds run {name!r} made with budget {recorded}, but this search's budget is "
                f"{budget}: give the recorded budget to resume it, or a new --out for this one"
            )
    root = earlier.get("root")
    return runs, None if root is None else Path(root)


def _root(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    out: Path,
    runs: dict[str, Any],
    recorded: Path | None,
) -> Path:
    """The run folders' root: ``--root``, else the recorded one, else a new temporary folder."""
    if args.root is not None:
        root: Path = args.root
    elif recorded is not None and recorded.is_dir():
        root = recorded
    elif recorded is not None and args.what == "transfer" and "pretrain" in runs:
        parser.error(
            f"{out} records its runs' root {recorded}, which no longer exists: the SSL runs still to "
            "do start from the pretraining run kept there; pass --root with the folder it was moved "
            "to, or a new --out to start again"
        )
    else:
        root = Path(tempfile.mkdtemp(prefix=f"recipe_{args.what}_"))
    if args.what == "transfer" and "pretrain" in runs and not (root / "pretrain").exists():
        # The recorded pretraining run is not redone, and every SSL run loads its weights.
        parser.error(
            f"{out} records the pretraining run, but {root / 'pretrain'} does not exist: pass --root "
            "with the folder the search ran in (it holds pretrain/), or a new --out to start again"
        )
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("finetune", "pretrain", "transfer"))
    parser.add_argument("--epochs", type=at_least(1), default=20)
    parser.add_argument("--steps", type=at_least(1), default=10)
    parser.add_argument("--pretrain-epochs", type=at_least(1), default=40)
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="run folders (default: the record's, else a temporary folder)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(__file__).parent / "results" / f"recipe_search_{args.what}.json"
    budget = _budget_of_record(args)
    runs, recorded = _resumed(parser, out, budget)
    if all(name in runs for name, _, _ in _jobs(args, Path("."))):  # the names alone
        print(f"{out}: every run is recorded already", flush=True)
        return 0
    root = _root(parser, args, out, runs, recorded).resolve()
    record: dict[str, Any] = {
        # date: when this invocation started (a resumed search keeps the runs of earlier ones).
        **provenance(__file__, argv),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "budget": budget,
        "root": str(root),
        "runs": runs,
    }
    for name, kind, config in _jobs(args, root):
        if name in record["runs"]:
            continue
        run = _pretrain_run(config) if kind == "pretrain" else _finetune_run(config)
        record["runs"][name] = {**run, "budget": budget}
        summary = {k: v for k, v in run.items() if k != "curve"}
        print(f"{name}: {summary}", flush=True)
        atomic_write_text(out, json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
