"""The demo: the whole method on real MRI (the bundled MNI152 brain template), on a laptop CPU.

``inpaintssl demo`` (what ``make demo`` runs) pretrains a U-Net with the paper's optimal strategy
(context restoration, Poisson-disc patches, sec. 3.3), fine-tunes it with 5, 10, 25 and 100 % of the
labelled axial slices from the SSL weights (encoder transfer, fine-tuned immediately, sec. 3.1)
and from scratch, evaluates every model on the held-out test slices and writes a report folder.
The smallest fraction is repeated over three label-subset seeds because slices of one brain are
strongly correlated: a per-slice Wilcoxon p-value overstates the evidence, the spread over seeds
shows it honestly. Both arms train with the library's default recipe (``optim.recipe=budget``)
and the same budget, and every run is checked for convergence
(:mod:`inpaintssl.training.convergence`): the report marks any run that was still improving.
Nothing is tuned to make SSL win; whatever comes out is reported.

Patch size: the paper's 32x32 patches on 512x512 slices cover 1/16 of the side; the demo keeps
that ratio, ``K = round(32 * min(H, W) / 512)`` (at least 2 pixels), e.g. 6 for 112x96 slices.

Report folder::

    corruption_panel.png     Figure-1-style panel on a test slice (both tasks, 4 patch sizes)
    dice_vs_label_fraction.png/.pdf
    example_segmentations.png
    results.csv              one row per test slice, class, arm, fraction and seed
    summary.csv              mean Dice per class, arm and fraction; p-values
    runs.csv                 every run: epochs, best epoch, converged, seconds (training, validation, other)
    learning_curves.png      every run's learning curve, unconverged runs marked in red
    report.md, report.html   everything above, linked
    runs/                    every run folder (config, manifest, metrics, checkpoints)

Example:
    >>> settings_for(quick=True).fractions
    (0.05, 0.1, 0.25, 1.0)
"""

from __future__ import annotations

import csv
import html
import io
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inpaintssl.atomic import atomic_path, atomic_write_text
from inpaintssl.config import (
    DataConfig,
    EarlyStoppingConfig,
    FinetuneConfig,
    ModelConfig,
    OptimConfig,
    PretextConfig,
    PretrainConfig,
    RunConfig,
    SourceConfig,
    TransferConfig,
)
from inpaintssl.corruption import render_corruption_figure
from inpaintssl.data.build import build_datasets
from inpaintssl.experiments.figures import plot_dice_vs_label_fraction
from inpaintssl.experiments.results import ResultsTable
from inpaintssl.progress import progress_iter
from inpaintssl.registry import LOSSES
from inpaintssl.stats import wilcoxon_greater
from inpaintssl.training.convergence import ConvergenceWarning
from inpaintssl.training.diagnostics import plot_learning_curves_grid
from inpaintssl.training.finetuning import run_finetuning
from inpaintssl.training.pretraining import run_pretraining
from inpaintssl.training.results import FinetuneResult, PretrainResult

__all__ = ["DemoResult", "DemoSettings", "run_demo", "settings_for"]

CAVEAT = (
    "Caveat: test slices come from one brain and are strongly correlated, so per-slice p-values "
    "overstate confidence; read them beside the per-seed differences."
)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and budgets of one demo flavour (chosen so the full demo fits 10 minutes on 2 cores).

    Both stages use the library's default recipe (``optim.recipe=budget``: Adam(0.9, 0.999), a
    warm-up + cosine schedule over ``epochs x steps_per_epoch``); only the budget is set here.
    """

    image_size: tuple[int, int]
    depth: int
    base_width: int
    pretrain_epochs: int
    pretrain_steps_per_epoch: int
    finetune_max_epochs: int
    finetune_steps_per_epoch: int
    patience: int
    fractions: tuple[float, ...] = (0.05, 0.1, 0.25, 1.0)
    seeds: dict[float, int] = field(default_factory=lambda: {0.05: 3})
    batch_size: int = 9

    @property
    def patch_size(self) -> int:
        """The paper's 32 px at 512 px, scaled to this image size."""
        return max(2, round(32 * min(self.image_size) / 512))

    def seeds_for(self, fraction: float) -> int:
        """Label-subset seeds run at ``fraction``."""
        return self.seeds.get(fraction, 1)

    def describe(self) -> str:
        """One paragraph for the console and the report."""
        runs = sum(2 * self.seeds_for(f) for f in self.fractions)
        recipe = OptimConfig()
        return (
            f"image size {self.image_size[0]}x{self.image_size[1]}, U-Net depth {self.depth} width "
            f"{self.base_width}, batch {self.batch_size}; pretraining: context restoration, Poisson-disc, "
            f"K={self.patch_size} (paper's 32 px at 512 px scaled), {self.pretrain_epochs} epochs x "
            f"{self.pretrain_steps_per_epoch} steps; fine-tuning: encoder transfer, immediate, "
            f"up to {self.finetune_max_epochs} epochs x {self.finetune_steps_per_epoch} steps; both stages "
            f"and both arms: recipe '{recipe.recipe}' (Adam betas {recipe.effective_betas}, peak lr "
            f"{recipe.effective_lr:g}, warm-up + cosine over the budget; early stopping patience "
            f"{self.patience}); "
            f"label fractions {', '.join(f'{100 * f:g}%' for f in self.fractions)}; {runs} fine-tuning runs"
        )


def settings_for(*, quick: bool) -> DemoSettings:
    """The full demo (<= 10 min here) or the ``--quick`` one (< 2 min, used in CI)."""
    if quick:
        return DemoSettings(
            image_size=(112, 96),
            depth=3,
            base_width=8,
            pretrain_epochs=2,
            pretrain_steps_per_epoch=10,
            finetune_max_epochs=8,
            finetune_steps_per_epoch=5,
            patience=10,
            seeds={0.05: 3},
        )
    # Budgets measured to converge by the library's criterion (README, docs/training.rst); the
    # epochs are short (10 steps) so validation and the learning curve see every stage of a run.
    return DemoSettings(
        image_size=(112, 96),
        depth=4,
        base_width=16,
        pretrain_epochs=40,
        pretrain_steps_per_epoch=10,
        finetune_max_epochs=20,
        finetune_steps_per_epoch=10,
        patience=10,
        seeds={0.05: 3},
    )


@dataclass(frozen=True)
class RunRecord:
    """One training run of the demo: its curve, verdict and where its time went."""

    name: str
    history: list[dict[str, Any]]
    converged: bool
    best_epoch: int
    seconds: float

    @classmethod
    def of(cls, result: PretrainResult | FinetuneResult, *, name: str, seconds: float) -> RunRecord:
        """The record of a finished run, timed by the caller."""
        return cls(name, result.history, result.converged, result.best_epoch, seconds)

    @property
    def train_seconds(self) -> float:
        """Time in optimisation steps (``train_seconds`` of every epoch)."""
        return sum(float(row["train_seconds"]) for row in self.history)

    @property
    def validation_seconds(self) -> float:
        """Time in each epoch after its steps: validation and writing the best checkpoint."""
        return sum(float(row["seconds"]) - float(row["train_seconds"]) for row in self.history)

    @property
    def other_seconds(self) -> float:
        """Everything else: data set-up, ``last`` checkpoints, test evaluation, the curve PNG."""
        return max(self.seconds - sum(float(row["seconds"]) for row in self.history), 0.0)

    def row(self) -> dict[str, Any]:
        """One line of ``runs.csv``."""
        last = self.history[-1] if self.history else {}
        return {
            "run": self.name,
            "epochs": len(self.history),
            "best_epoch": self.best_epoch,
            "converged": int(self.converged),
            "final_val_loss": last.get("val_loss"),
            "best_val_dice": max((row.get("val_dice", float("nan")) for row in self.history), default=None),
            "seconds": round(self.seconds, 1),
            "train_seconds": round(self.train_seconds, 1),
            "validation_seconds": round(self.validation_seconds, 1),
        }


@dataclass
class DemoResult:
    """What the demo produced."""

    output: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    seconds: float
    files: dict[str, Path]
    runs: list[RunRecord] = field(default_factory=list)


def _data(settings: DemoSettings, *, fraction: float = 1.0, subset_seed: int = 0) -> DataConfig:
    return DataConfig(
        dataset="mni152",
        image_size=settings.image_size,
        label_fraction=fraction,
        subset_seed=subset_seed,
    )


def _model(settings: DemoSettings) -> ModelConfig:
    return ModelConfig(backbone="unet2d", params={"depth": settings.depth, "base_width": settings.base_width})


def _pretrain(settings: DemoSettings, *, folder: Path, seed: int, quiet: bool) -> PretrainResult:
    data = _data(settings).model_copy(update={"unlabelled": [SourceConfig(dataset="mni152")]})
    config = PretrainConfig(
        data=data,
        model=_model(settings),
        pretext=PretextConfig(
            task="context_restoration", sampler="poisson_disc", patch_size=settings.patch_size
        ),
        optim=OptimConfig(
            batch_size=settings.batch_size,
            max_epochs=settings.pretrain_epochs,
            steps_per_epoch=settings.pretrain_steps_per_epoch,
        ),
        run=RunConfig(output_dir=folder, seed=seed, resume=True, quiet=quiet),
    )
    return run_pretraining(config)


def _finetune(
    settings: DemoSettings,
    *,
    folder: Path,
    fraction: float,
    subset_seed: int,
    pretrained: Path | None,
    seed: int,
    quiet: bool,
) -> FinetuneResult:
    config = FinetuneConfig(
        data=_data(settings, fraction=fraction, subset_seed=subset_seed),
        model=_model(settings),
        optim=OptimConfig(
            batch_size=settings.batch_size,
            max_epochs=settings.finetune_max_epochs,
            steps_per_epoch=settings.finetune_steps_per_epoch,
        ),
        early_stopping=EarlyStoppingConfig(min_delta=1e-3, patience=settings.patience),
        transfer=TransferConfig(pretrained=pretrained, weights="encoder", schedule="immediate"),
        run=RunConfig(output_dir=folder, seed=seed, resume=True, quiet=quiet),
    )
    return run_finetuning(config)


def _rows_of(result: FinetuneResult, *, arm: str, fraction: float, subset_seed: int) -> list[dict[str, Any]]:
    assert result.test is not None
    rows: list[dict[str, Any]] = []
    for image in result.test.select(level="image").rows:
        for name in (*result.class_names, "mean"):
            rows.append(
                {
                    "arm": arm,
                    "strategy": "context_restoration" if arm == "ssl" else "supervised",
                    "label_fraction": fraction,
                    "subset_seed": subset_seed,
                    "level": "image",
                    "volume_id": image["volume_id"],
                    "slice_index": image["slice_index"],
                    "class_name": name,
                    "metric": "dice",
                    "value": image[f"dice_{name}"],
                }
            )
    return rows


def _paired(
    rows: Sequence[dict[str, Any]], *, fraction: float, class_name: str
) -> tuple[np.ndarray, np.ndarray]:
    def values(arm: str) -> dict[tuple[int, str], float]:
        return {
            (r["subset_seed"], r["volume_id"]): float(r["value"])
            for r in rows
            if r["arm"] == arm and r["label_fraction"] == fraction and r["class_name"] == class_name
        }

    ssl, sup = values("ssl"), values("supervised")
    keys = sorted(set(ssl) & set(sup))
    return np.array([ssl[k] for k in keys]), np.array([sup[k] for k in keys])


def summarise(rows: Sequence[dict[str, Any]], *, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Mean Dice per class and arm, the one-sided Wilcoxon p-value (SSL > supervised) on the
    per-slice class-averaged Dice, and the per-seed mean differences, for every label fraction."""
    summary: list[dict[str, Any]] = []
    for fraction in sorted({float(r["label_fraction"]) for r in rows}):
        entry: dict[str, Any] = {"label_fraction": fraction}
        for name in (*class_names, "mean"):
            ssl, sup = _paired(rows, fraction=fraction, class_name=name)
            entry[f"ssl_{name}"] = float(np.mean(ssl))
            entry[f"supervised_{name}"] = float(np.mean(sup))
        ssl, sup = _paired(rows, fraction=fraction, class_name="mean")
        entry["pairs"] = int(ssl.size)
        entry["p_value"] = wilcoxon_greater(ssl, sup) if ssl.size else float("nan")
        seeds = sorted({int(r["subset_seed"]) for r in rows if r["label_fraction"] == fraction})
        diffs = []
        for seed in seeds:
            seed_rows = [r for r in rows if r["subset_seed"] == seed]
            a, b = _paired(seed_rows, fraction=fraction, class_name="mean")
            diffs.append(float(np.mean(a - b)))
        entry["seed_differences"] = diffs
        summary.append(entry)
    return summary


def format_table(summary: Sequence[dict[str, Any]], *, class_names: Sequence[str]) -> str:
    """The console/Markdown table of Dice per class and label fraction, SSL vs supervised."""
    header = [
        "labels",
        *[f"{n} SSL / sup" for n in (*class_names, "mean")],
        "p (SSL>sup)",
        "SSL-sup per seed",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summary:
        cells = [f"{100 * entry['label_fraction']:g}%"]
        cells += [f"{entry[f'ssl_{n}']:.3f} / {entry[f'supervised_{n}']:.3f}" for n in (*class_names, "mean")]
        cells.append(f"{entry['p_value']:.3g} (n={entry['pairs']})")
        cells.append(", ".join(f"{d:+.3f}" for d in entry["seed_differences"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: (" ".join(f"{v:+.4f}" for v in row[k]) if isinstance(row.get(k), list) else row.get(k))
                for k in columns
            }
        )
    atomic_write_text(path, buffer.getvalue())


def _save_figure(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix[1:], dpi=110, bbox_inches="tight")
    return path


@torch.no_grad()
def _example_figure(
    settings: DemoSettings, ssl: FinetuneResult, supervised: FinetuneResult, path: Path, *, count: int = 3
) -> Path:
    bundle = build_datasets(
        _data(settings), stage="finetune", seed=0, size_multiple=2 ** (settings.depth - 1)
    )
    test = bundle.test
    assert test is not None
    picks = np.linspace(0, len(test) - 1, num=min(count, len(test))).round().astype(int)
    predictor = LOSSES.build("dice")
    figure = Figure(figsize=(8, 2.2 * len(picks)))
    titles = ["T1 slice", "ground truth", "SSL", "supervised"]
    for row, index in enumerate(picks):
        item = test[int(index)]
        image = item["image"][None]
        panels = [item["image"][0].numpy(), _label_map(item["label"])]
        for result in (ssl, supervised):
            assert result.model is not None
            result.model.eval()
            device = next(result.model.parameters()).device
            onehot = predictor.predict_onehot(result.model(image.to(device)).float())[0].cpu()
            panels.append(_label_map(onehot))
        for col, panel in enumerate(panels):
            ax = figure.add_subplot(len(picks), 4, row * 4 + col + 1)
            ax.imshow(
                panel,
                cmap="gray" if col == 0 else "viridis",
                vmin=None if col == 0 else 0,
                vmax=None if col == 0 else 3,
            )
            ax.set_axis_off()
            if row == 0:
                ax.set_title(titles[col], fontsize=9)
    figure.suptitle(
        f"Test slices: {', '.join(bundle.class_names)} = 1, 2, 3 (smallest label fraction, seed 0)"
    )
    return _save_figure(figure, path)


def _label_map(onehot: torch.Tensor) -> np.ndarray:
    """(K, H, W) one-hot -> (H, W) map with 0 = background and k + 1 = class k."""
    array = onehot.numpy() > 0.5
    labels = np.zeros(array.shape[1:], dtype=np.int64)
    for k in range(array.shape[0]):
        labels[array[k]] = k + 1
    return labels


def _report(
    output: Path,
    settings: DemoSettings,
    table: str,
    summary: Sequence[dict[str, Any]],
    seconds: float,
    files: dict[str, Path],
    *,
    timing: str,
    convergence: str,
) -> None:
    rel = {k: v.relative_to(output).as_posix() for k, v in files.items()}
    markdown = "\n".join(
        [
            "# inpaintssl demo: SSL vs supervised on the MNI152 template",
            "",
            f"Settings: {settings.describe()}.",
            f"Wall time: {seconds:.0f} s.",
            "",
            "## Dice per class and label fraction (test slices; SSL / supervised)",
            "",
            table,
            "",
            CAVEAT,
            "",
            convergence[0].upper() + convergence[1:] + ".",
            "",
            timing[0].upper() + timing[1:] + ".",
            "",
            "## Figures",
            "",
            f"![learning curves]({rel['curves']})",
            "",
            f"![corruption]({rel['corruption']})",
            "",
            f"![dice]({rel['dice']})",
            "",
            f"![examples]({rel['examples']})",
            "",
            f"Per-slice results: [{rel['results']}]({rel['results']}); "
            f"summary: [{rel['summary']}]({rel['summary']}); runs: [{rel['runs']}]({rel['runs']}).",
            "",
        ]
    )
    atomic_write_text(output / "report.md", markdown)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
        for line in table.splitlines()[2:]
    )
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in table.splitlines()[0].strip("|").split("|"))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>inpaintssl demo</title></head><body>
<h1>inpaintssl demo: SSL vs supervised on the MNI152 template</h1>
<p>Settings: {html.escape(settings.describe())}. Wall time: {seconds:.0f} s.</p>
<table border="1" cellpadding="4"><tr>{head}</tr>{rows}</table>
<p>{html.escape(CAVEAT)}</p>
<p>{html.escape(convergence)}</p>
<p>{html.escape(timing)}</p>
<img src="{rel["curves"]}" alt="learning curves"><br>
<img src="{rel["corruption"]}" alt="corruption panel"><br>
<img src="{rel["dice"]}" alt="Dice vs label fraction"><br>
<img src="{rel["examples"]}" alt="example segmentations"><br>
<p><a href="{rel["results"]}">results.csv</a> · <a href="{rel["summary"]}">summary.csv</a> ·
<a href="{rel["runs"]}">runs.csv</a></p>
</body></html>
"""
    atomic_write_text(output / "report.html", page)


def run_demo(
    *, output: Path | str = "demo-report", quick: bool = False, seed: int = 0, quiet: bool = False
) -> DemoResult:
    """Run the demo end to end and write its report folder.

    Re-running with the same ``output`` resumes: finished runs are reloaded, an interrupted one
    continues from its last checkpoint.

    Args:
        output: Report folder.
        quick: The sub-2-minute version (smaller network, fewer epochs) used in CI.
        seed: Seed of weights, corruption and data order (label subsets use seeds 0, 1, 2, ...).
        quiet: No progress bars.

    Returns:
        Rows, summary, wall time and written files.
    """
    started = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    settings = settings_for(quick=quick)
    print(f"inpaintssl demo{' (quick)' if quick else ''}: {settings.describe()}")
    files: dict[str, Path] = {}

    bundle = build_datasets(
        _data(settings), stage="finetune", seed=seed, size_multiple=2 ** (settings.depth - 1)
    )
    assert bundle.test is not None
    class_names = bundle.class_names
    panel_image = bundle.test[len(bundle.test) // 2]["image"][0].numpy()
    k = settings.patch_size
    files["corruption"] = render_corruption_figure(
        panel_image,
        output / "corruption_panel.png",
        patch_sizes=(2 * k, k, max(k // 2, 2), max(k // 4, 2)),
        seed=seed,
    )

    runs: list[RunRecord] = []
    with warnings.catch_warnings():
        # Convergence is reported per run in runs.csv, the table and learning_curves.png instead.
        warnings.simplefilter("ignore", ConvergenceWarning)
        timer = time.perf_counter()
        pre = _pretrain(settings, folder=output / "runs" / "pretrain", seed=seed, quiet=quiet)
        runs.append(RunRecord.of(pre, name="pretrain", seconds=time.perf_counter() - timer))
        rows, examples = _finetune_all(settings, runs, pretrained=pre.run_dir, seed=seed, quiet=quiet)
    timer = time.perf_counter()
    files["results"] = output / "results.csv"
    _write_csv(files["results"], rows)
    summary = summarise(rows, class_names=class_names)
    files["summary"] = output / "summary.csv"
    _write_csv(files["summary"], summary)
    files["runs"] = output / "runs.csv"
    _write_csv(files["runs"], [run.row() for run in runs])
    files["dice"] = plot_dice_vs_label_fraction(
        ResultsTable([r for r in rows if r["class_name"] != "mean"]), output / "dice_vs_label_fraction"
    ).paths[0]
    files["examples"] = _example_figure(
        settings, examples["ssl"], examples["supervised"], output / "example_segmentations.png"
    )
    files["curves"] = plot_learning_curves_grid(
        [(run.name, run.history, run.converged) for run in runs],
        output / "learning_curves.png",
        title="Learning curves (validation loss solid, training loss dashed, validation Dice right axis)",
    )
    figure_seconds = time.perf_counter() - timer
    table = format_table(summary, class_names=class_names)
    seconds = time.perf_counter() - started
    timing = _time_table(runs, figure_seconds=figure_seconds, total=seconds)
    convergence = _convergence_line(runs)
    _report(output, settings, table, summary, seconds, files, timing=timing, convergence=convergence)
    print(table)
    print(CAVEAT)
    print(convergence)
    print(
        "mean over seeds of SSL - supervised (class-averaged Dice): "
        + ", ".join(
            f"{100 * e['label_fraction']:g}%: {statistics.fmean(e['seed_differences']):+.3f}" for e in summary
        )
    )
    print(timing)
    print(f"report: {output / 'report.md'} ({seconds:.0f} s)")
    files["report"] = output / "report.md"
    return DemoResult(output=output, rows=rows, summary=summary, seconds=seconds, files=files, runs=runs)


def _finetune_all(
    settings: DemoSettings, runs: list[RunRecord], *, pretrained: Path, seed: int, quiet: bool
) -> tuple[list[dict[str, Any]], dict[str, FinetuneResult]]:
    """Every fine-tuning run of both arms; appends each run's record to ``runs``."""
    output = pretrained.parent.parent
    jobs = [
        (fraction, subset_seed, arm)
        for fraction in settings.fractions
        for subset_seed in range(settings.seeds_for(fraction))
        for arm in ("ssl", "supervised")
    ]
    rows: list[dict[str, Any]] = []
    examples: dict[str, FinetuneResult] = {}
    smallest = min(settings.fractions)
    for fraction, subset_seed, arm in progress_iter(
        jobs, desc="fine-tuning runs", unit="run", disable=quiet, lines=True
    ):
        name = f"{arm}_{round(100 * fraction)}pct_seed{subset_seed}"
        timer = time.perf_counter()
        result = _finetune(
            settings,
            folder=output / "runs" / name,
            fraction=fraction,
            subset_seed=subset_seed,
            pretrained=pretrained if arm == "ssl" else None,
            seed=seed,
            quiet=True,
        )
        runs.append(RunRecord.of(result, name=name, seconds=time.perf_counter() - timer))
        rows.extend(_rows_of(result, arm=arm, fraction=fraction, subset_seed=subset_seed))
        if fraction == smallest and subset_seed == 0:
            examples[arm] = result
    return rows, examples


def _time_table(runs: Sequence[RunRecord], *, figure_seconds: float, total: float) -> str:
    """Where the demo's time went: training steps, validation (with best checkpoints), the rest."""
    parts = {
        "pretraining steps": sum(r.train_seconds for r in runs if r.name == "pretrain"),
        "fine-tuning steps": sum(r.train_seconds for r in runs if r.name != "pretrain"),
        "validation and best checkpoints": sum(r.validation_seconds for r in runs),
        "set-up, last checkpoints, test evaluation, curves": sum(r.other_seconds for r in runs),
        "report figures and tables": figure_seconds,
    }
    parts["corruption panel and data loading"] = max(total - sum(parts.values()), 0.0)
    return "time: " + ", ".join(
        f"{name} {value:.0f} s ({100 * value / total:.0f}%)" for name, value in parts.items()
    )


def _convergence_line(runs: Sequence[RunRecord]) -> str:
    stalled = [run.name for run in runs if not run.converged]
    if not stalled:
        return f"convergence: all {len(runs)} runs converged (inpaintssl.training.convergence)"
    return (
        f"convergence: {len(stalled)} of {len(runs)} runs were still improving when their budget ended "
        f"({', '.join(stalled)}); their scores understate a trained model"
    )
