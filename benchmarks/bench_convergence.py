"""Steps to a trained model: the paper's recipe against the library's default, on the demo data.

Both recipes fine-tune the demo's network (U-Net depth 4, width 16, MNI152 axial slices at
112x96, batch 9, all labels, from scratch) for the same budget, one after the other in one run,
and validate every ``--steps`` steps. ``--dataset synthetic`` runs the same comparison on the
library's generated shapes (64x64, 64 training slices), a dataset the recipe was not chosen on.
For each the table gives the validation Dice at the end, the test Dice of the kept
(best-validation) weights, whether the run converged by the library's criterion
(:mod:`inpaintssl.training.convergence`), and the steps it took to reach 95 % of its own final
validation Dice and 95 % of the better recipe's final validation Dice.

Usage::

    python benchmarks/bench_convergence.py [--epochs 30] [--steps 10] [--quick]
        [--dataset mni152|synthetic] [--out benchmarks/results/bench_convergence.json]
    python benchmarks/bench_convergence.py --figure docs/_static/recipe_curves.png RECORD.json [...]

The second form draws the learning curves of saved records, one panel per recipe and dataset.

Target (issue #14): the default recipe reaches 95 % of the better final validation Dice in fewer
steps than the paper's recipe, and converges within the budget.
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
from provenance import at_least, provenance, write_record

import inpaintssl as issl
from inpaintssl.training.convergence import ConvergenceWarning
from inpaintssl.training.diagnostics import plot_learning_curves_grid

RECIPES = ("paper", "budget")


def steps_to_reach(curve: list[dict[str, Any]], target: float, *, steps_per_epoch: int) -> int | None:
    """Optimisation steps until the validation Dice first reaches ``target`` (``None``: never)."""
    for row in curve:
        if float(row["val_dice"]) >= target:
            return (int(row["epoch"]) + 1) * steps_per_epoch
    return None


DATA = {
    "mni152": {"dataset": "mni152", "image_size": [112, 96]},
    "synthetic": {
        "dataset": "synthetic",
        "params": {"num_images": 64, "num_val": 16, "num_test": 32, "size": [64, 64]},
    },
}


def _run(recipe: str, *, folder: Path, epochs: int, steps: int, quick: bool, dataset: str) -> dict[str, Any]:
    config = {
        "data": DATA[dataset],
        "model": {"params": {"depth": 3, "base_width": 8} if quick else {"depth": 4, "base_width": 16}},
        "optim": {"recipe": recipe, "batch_size": 9, "max_epochs": epochs, "steps_per_epoch": steps},
        "run": {"output_dir": str(folder / recipe), "quiet": True, "device": "cpu"},
    }
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = issl.finetune(config)
    curve = [
        {k: row[k] for k in ("epoch", "lr", "train_loss", "val_loss", "val_dice") if k in row}
        for row in result.history
    ]
    return {
        "final_val_dice": float(curve[-1]["val_dice"]),
        "best_val_dice": max(float(r["val_dice"]) for r in curve),
        "test_mean_dice": statistics.fmean(result.mean_dice().values()),
        "converged": result.converged,
        "epochs_run": result.epochs_run,
        "seconds": round(time.perf_counter() - started, 1),
        "curve": curve,
    }


def table(record: dict[str, Any]) -> str:
    """The Markdown table of a record."""
    lines = [
        "| recipe | steps run | final val Dice | test Dice | converged | steps to 95 % of own final "
        "| steps to 95 % of best final |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in record["recipes"].items():
        lines.append(
            f"| {name} | {run['epochs_run'] * record['steps_per_epoch']} | {run['final_val_dice']:.3f} "
            f"| {run['test_mean_dice']:.3f} | {'yes' if run['converged'] else 'no'} "
            f"| {run['steps_to_95pct_own']} | {run['steps_to_95pct_best']} |"
        )
    return "\n".join(lines)


def figure(records: list[Path], path: Path) -> Path:
    """One learning-curve panel per recipe of each saved record."""
    runs = []
    for source in records:
        record = json.loads(source.read_text())
        for name, run in record["recipes"].items():
            runs.append((f"{record['dataset']['dataset']}: {name}", run["curve"], bool(run["converged"])))
    title = "Fine-tuning with all labels, validation every 10 steps: paper recipe vs budget recipe"
    return plot_learning_curves_grid(runs, path, title=title)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=at_least(1), default=30)
    parser.add_argument("--steps", type=at_least(1), default=10, help="steps per epoch (validation interval)")
    parser.add_argument("--quick", action="store_true", help="a smaller network and 5 epochs (smoke run)")
    parser.add_argument("--dataset", choices=sorted(DATA), default="mni152")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--figure", type=Path, help="draw the curves of the RECORD files instead of running")
    parser.add_argument("records", type=Path, nargs="*")
    args = parser.parse_args(argv)
    if args.figure:
        print(figure(args.records, args.figure))
        return {}
    epochs = 5 if args.quick else args.epochs
    # The runs' folders hold checkpoints no one reads after the record: removed, even on an error.
    with tempfile.TemporaryDirectory(prefix="bench_convergence_") as folder:
        runs = {
            name: _run(
                name,
                folder=Path(folder),
                epochs=epochs,
                steps=args.steps,
                quick=args.quick,
                dataset=args.dataset,
            )
            for name in RECIPES
        }
    best_final = max(run["final_val_dice"] for run in runs.values())
    for run in runs.values():
        run["steps_to_95pct_own"] = steps_to_reach(
            run["curve"], 0.95 * run["final_val_dice"], steps_per_epoch=args.steps
        )
        run["steps_to_95pct_best"] = steps_to_reach(
            run["curve"], 0.95 * best_final, steps_per_epoch=args.steps
        )
    record: dict[str, Any] = {
        "benchmark": "convergence",
        **provenance(__file__, argv),
        "quick": args.quick,
        "dataset": DATA[args.dataset],
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "budget_steps": epochs * args.steps,
        "steps_per_epoch": args.steps,
        "recipes": runs,
    }
    paper, budget = runs["paper"], runs["budget"]
    record["targets"] = {
        "budget_converged": bool(budget["converged"]),
        "budget_faster_to_95pct_of_best": budget["steps_to_95pct_best"] is not None
        and (
            paper["steps_to_95pct_best"] is None
            or budget["steps_to_95pct_best"] < paper["steps_to_95pct_best"]
        ),
    }
    print(table(record))
    if args.out:
        write_record(args.out, record, indent=1)
    return record


if __name__ == "__main__":
    main()
