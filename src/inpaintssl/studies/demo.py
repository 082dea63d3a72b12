"""The demo: the whole method on real MRI (the bundled MNI152 brain template), on a laptop CPU.

``inpaintssl demo`` (what ``make demo`` runs) pretrains a U-Net with the paper's optimal strategy
(context restoration, Poisson-disc patches, sec. 3.3), fine-tunes it with 5, 10, 25 and 100 % of the
labelled axial slices from the SSL weights (encoder transfer, fine-tuned immediately, sec. 3.1)
and from scratch, evaluates every model on the held-out test slices and writes a report folder.
The smallest fraction is repeated over three label-subset seeds because slices of one brain are
strongly correlated: a per-slice Wilcoxon p-value overstates the evidence, the spread over seeds
shows it honestly. Both arms train with the library's default recipe (``optim.recipe=budget``)
and the same budget, and every run is checked for convergence
(:mod:`inpaintssl.training.convergence`): the report marks any run that was still improving, and
a label fraction where not every run of both arms converged gets no p-value on the console
(``n/a (not converged)``; ``summary.csv`` keeps it, marked ``unconverged runs``): a comparison
means something only between converged models. Nothing is tuned to make SSL win; whatever comes
out is reported.

``--quick`` is a smoke test of the pipeline (CI), not a result: its budgets are far below what
convergence takes (the full demo's), so expect its runs to be reported unconverged and its
p-values as ``n/a``.

Patch size: the paper's 32x32 patches on 512x512 slices cover 1/16 of the side; the demo keeps
that ratio, ``K = round(32 * min(H, W) / 512)`` (at least 2 pixels), e.g. 6 for 112x96 slices.

The demo is a study (kind ``demo``, :func:`demo_spec`) run by the same runner and reported by the
same report writer as the paper's studies (:mod:`inpaintssl.studies.runner`,
:mod:`inpaintssl.studies.report`); this module adds its settings and its report parts.

Report folder::

    corruption_panel.png     Figure-1-style panel on a test slice (both tasks, 4 patch sizes)
    dice_vs_label_fraction.png/.pdf
    example_segmentations.png
    results.csv              one row per test slice, class, arm, fraction and seed
    summary.csv              mean Dice per class, arm and fraction; converged runs per arm; p-values
                             (``comparison``: ``unconverged runs`` where not every run converged)
    runs.csv                 every run: epochs, kept epoch (1-based, the best validation loss's),
                             converged, final validation loss, validation Dice of the kept weights,
                             seconds (total, training, validation)
    learning_curves.png      every run's learning curve, unconverged runs marked in red
    report.md, report.html   everything above, linked
    runs/                    every run folder (config, manifest, metrics, checkpoints), and the
                             study's database and spec (study.sqlite, spec.json); while runs have
                             failed, failed_runs.txt with each one's whole error

The demo's settings (``--quick``, ``--seed``) are recorded in ``runs/spec.json``: a rerun with the
same ones resumes the folder, one with others is refused before anything trains (its runs' folders
are named by arm, fraction and seed alone, so the two demos' runs would collide).

Example:
    >>> settings_for(quick=True).fractions
    (0.05, 0.1, 0.25, 1.0)
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from inpaintssl.analysis.figures import FigureFiles, plot_dice_vs_label_fraction, save_figure
from inpaintssl.analysis.pages import ReportParts
from inpaintssl.analysis.summaries import UNCONVERGED, class_names, label_fraction_summary
from inpaintssl.analysis.table import Table
from inpaintssl.api import load_model, render_corruption_figure
from inpaintssl.atomic import atomic_write_text
from inpaintssl.config import (
    ConfigError,
    DataConfig,
    EarlyStoppingConfig,
    FinetuneConfig,
    ModelConfig,
    OptimConfig,
    PretextConfig,
    PretrainConfig,
    RunConfig,
    TransferConfig,
)
from inpaintssl.data.base import SliceDataset
from inpaintssl.layout import RunFolder
from inpaintssl.studies.demo_settings import (
    NOT_SETTINGS,
    recorded_demo_spec,
    setting_differences,
    shown_differences,
)
from inpaintssl.studies.grid import expand_study
from inpaintssl.studies.queue import RunRecord
from inpaintssl.studies.report import write_report
from inpaintssl.studies.results import load_results, load_runs
from inpaintssl.studies.runner import run_study
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.summary import StudySummary
from inpaintssl.training.convergence import ConvergenceWarning
from inpaintssl.training.diagnostics import plot_learning_curves_grid
from inpaintssl.training.run_folder import changed_fields
from inpaintssl.training.stages import build_stage_data

__all__ = [
    "DemoResult",
    "DemoRunsError",
    "DemoSettings",
    "demo_parts",
    "demo_spec",
    "run_demo",
    "settings_for",
]

CAVEAT = (
    "Caveat: test slices come from one brain and are strongly correlated, so per-slice p-values "
    "overstate confidence; read them beside the per-seed differences."
)
TITLE = "inpaintssl demo: SSL vs supervised on the MNI152 template"
FINETUNE_MIN_DELTA = 1e-3
QUICK_NOTE = (
    "quick: a smoke test of the pipeline, not a result: its budgets are far below what convergence "
    "takes (the full demo's), so expect unconverged runs and no p-values"
)
NOT_CONVERGED = "n/a (not converged)"
FAILED_RUNS_FILE = "failed_runs.txt"
"""Beside the study database: every failed run's whole error (traceback included), while any has."""


class DemoRunsError(RuntimeError):
    """Runs of the demo failed for good (a ``RuntimeError``, as the demo raised before).

    The message is short: how many runs failed, and each one's id, folder and first error line.

    Attributes:
        errors: ``{run_id: error}`` as the study runner recorded them (first line, then traceback).
        log: The file holding every failed run's whole error (``None``: it could not be written).
    """

    def __init__(self, message: str, *, errors: Mapping[str, str], log: Path | None) -> None:
        super().__init__(message)
        self.errors = dict(errors)
        self.log = log


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
    finetune_patience: int
    pretrain_patience: int = 4
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
            f"K={self.patch_size} (paper's 32 px at 512 px scaled), up to {self.pretrain_epochs} epochs x "
            f"{self.pretrain_steps_per_epoch} steps, early stopping patience {self.pretrain_patience} "
            f"(min-delta 50 per 512x512 slice, scaled); fine-tuning: encoder transfer, immediate, "
            f"up to {self.finetune_max_epochs} epochs x {self.finetune_steps_per_epoch} steps, early "
            f"stopping patience {self.finetune_patience} (min-delta {FINETUNE_MIN_DELTA:g}); both stages "
            f"and both arms: recipe '{recipe.recipe}' (Adam betas {recipe.effective_betas}, peak lr "
            f"{recipe.effective_lr:g}, warm-up + cosine over the budget); "
            f"label fractions {', '.join(f'{100 * f:g}%' for f in self.fractions)}; {runs} fine-tuning runs"
        )


def settings_for(*, quick: bool) -> DemoSettings:
    """The full demo (<= 10 min here) or the ``--quick`` one (< 2 min, used in CI)."""
    # Budgets measured to converge by the library's criterion (README, docs/training.rst); the
    # epochs are short (10 steps) so validation and the learning curve see every stage of a run.
    full = DemoSettings(
        image_size=(112, 96),
        depth=4,
        base_width=16,
        pretrain_epochs=40,
        pretrain_steps_per_epoch=10,
        finetune_max_epochs=20,
        finetune_steps_per_epoch=10,
        finetune_patience=10,
        pretrain_patience=4,  # the library's pretraining default
        seeds={0.05: 3},
    )
    if not quick:
        return full
    # Each stage's patience below its epochs, so early stopping can end a run as in the full demo.
    return replace(
        full,
        depth=3,
        base_width=8,
        pretrain_epochs=4,
        pretrain_patience=2,
        finetune_max_epochs=8,
        finetune_steps_per_epoch=5,
        finetune_patience=3,
    )


def _data(settings: DemoSettings) -> DataConfig:
    return DataConfig(dataset="mni152", image_size=settings.image_size)


def _model(settings: DemoSettings) -> ModelConfig:
    return ModelConfig(backbone="unet2d", params={"depth": settings.depth, "base_width": settings.base_width})


def demo_spec(settings: DemoSettings, *, output: Path | str, seed: int = 0) -> StudySpec:
    """The demo as a study: one pretraining run, SSL and supervised fine-tuning per fraction and seed.

    Example:
        >>> spec = demo_spec(settings_for(quick=True), output="demo-report")
        >>> spec.study, spec.seeds_at(0.05), spec.seeds_at(1.0)
        ('demo', [0, 1, 2], [0])
    """
    run = RunConfig(seed=seed)
    pretrain = PretrainConfig(
        # The training split's axial slices only, labels unused. The template's coronal and
        # sagittal slices would add unlabelled images, but each crosses the test and validation
        # slices' voxels, which the SSL arm would then have seen and the supervised arm not.
        data=_data(settings),
        model=_model(settings),
        pretext=PretextConfig(
            task="context_restoration", sampler="poisson_disc", patch_size=settings.patch_size
        ),
        optim=OptimConfig(
            batch_size=settings.batch_size,
            max_epochs=settings.pretrain_epochs,
            steps_per_epoch=settings.pretrain_steps_per_epoch,
        ),
        # min_delta None: the library's pretraining threshold, scaled to the slices' area.
        early_stopping=EarlyStoppingConfig(min_delta=None, patience=settings.pretrain_patience),
        run=run,
    )
    finetune = FinetuneConfig(
        data=_data(settings),
        model=_model(settings),
        optim=OptimConfig(
            batch_size=settings.batch_size,
            max_epochs=settings.finetune_max_epochs,
            steps_per_epoch=settings.finetune_steps_per_epoch,
        ),
        early_stopping=EarlyStoppingConfig(min_delta=FINETUNE_MIN_DELTA, patience=settings.finetune_patience),
        transfer=TransferConfig(weights="encoder", schedule="immediate"),
        run=run,
    )
    return StudySpec(
        study="demo",
        name=TITLE,
        pretrain=pretrain,
        finetune=finetune,
        label_fractions=list(settings.fractions),
        subset_seeds=[0],
        fraction_seeds={
            f: list(range(settings.seeds_for(f))) for f in settings.fractions if settings.seeds_for(f) > 1
        },
        output=Path(output),
        database=Path(output) / "runs" / "study.sqlite",  # the report folder keeps its own files
    )


@dataclass(frozen=True)
class RunTiming:
    """One finished run of the demo: its curve, verdict and where its time went.

    ``best_epoch`` is the trainer's: the ``metrics.csv`` ``epoch`` (0-based) of the kept weights,
    those of the lowest validation loss; ``runs.csv`` writes it 1-based (``kept_epoch``).
    """

    name: str
    history: list[dict[str, Any]]
    converged: bool
    best_epoch: int
    seconds: float
    labels: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, run: RunRecord) -> RunTiming:
        """The timing of a ``done`` run, from the result the runner recorded."""
        result = run.result or {}
        return cls(
            Path(str(result.get("run_dir", run.id))).name,
            list(result.get("history", [])),
            bool(result.get("converged", False)),
            int(result.get("best_epoch", 0)),
            float(result.get("seconds", 0.0)),
            dict(run.labels),
        )

    @property
    def kept_val_dice(self) -> float | None:
        """Validation Dice of the kept weights (``None``: not recorded, as in pretraining)."""
        kept = [row for row in self.history if int(row.get("epoch", -1)) == self.best_epoch]
        value = kept[-1].get("val_dice") if kept else None
        return None if value is None else float(value)

    @property
    def is_pretraining(self) -> bool:
        """A pretraining run: its ``arm`` label, or for a timing without labels its folder's name."""
        arm = self.labels.get("arm")
        return arm == "pretrain" if arm is not None else self.name == "pretrain"

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
        """One line of ``runs.csv``: the kept weights' epoch counted from 1, as ``epochs`` is."""
        last = self.history[-1] if self.history else {}
        return {
            "run": self.name,
            "epochs": len(self.history),
            "kept_epoch": self.best_epoch + 1,
            "converged": int(self.converged),
            "final_val_loss": last.get("val_loss"),
            "kept_val_dice": self.kept_val_dice,
            "seconds": round(self.seconds, 1),
            "train_seconds": round(self.train_seconds, 1),
            "validation_seconds": round(self.validation_seconds, 1),
        }


def _timings(spec: StudySpec) -> list[RunTiming]:
    """Every finished run, pretraining first (then in the order the plan registered them)."""
    runs = [r for r in load_runs(spec).values() if r.status == "done"]
    return [RunTiming.of(r) for r in sorted(runs, key=lambda r: r.kind != "pretrain")]


def _convergence_table(runs: Sequence[RunTiming]) -> Table:
    """Each fine-tuning run's arm, label fraction and verdict, for :func:`label_fraction_summary`."""
    return Table(
        [
            {"arm": r.labels["arm"], "label_fraction": r.labels["label_fraction"], "converged": r.converged}
            for r in runs
            if "arm" in r.labels and "label_fraction" in r.labels
        ],
        name="convergence",
    )


def _summary(results: Table, runs: Sequence[RunTiming], *, class_names: Sequence[str]) -> Table:
    """The demo's summary: SSL vs supervised per fraction, with each arm's converged runs."""
    return label_fraction_summary(
        results, class_names=class_names, level="image", runs=_convergence_table(runs)
    )


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        output: The report folder.
        results: Every measurement (the long results table of the study).
        summary: :func:`~inpaintssl.analysis.summaries.label_fraction_summary` of the results.
        seconds: Wall time.
        files: The report's files by role.
        runs: Every run's timing.
    """

    output: Path
    results: Table
    summary: Table
    seconds: float
    files: dict[str, Path]
    runs: list[RunTiming] = field(default_factory=list)


def format_table(summary: Table, *, class_names: Sequence[str]) -> str:
    """The console table of Dice per class and label fraction, SSL / supervised, and the p-values.

    Each fraction's p-value, and beside it the Holm-adjusted one (``p_holm``): the demo tests
    every fraction, and a reader scanning the column for the smallest p makes as many comparisons.
    A summary with convergence columns (:func:`label_fraction_summary` given the runs) also shows
    each arm's converged runs, and ``n/a (not converged)`` instead of the p-values of a fraction
    where not every run of both arms converged.
    """
    convergence = "comparison" in summary.columns
    header = [
        "labels",
        *[f"{n} SSL / sup" for n in (*class_names, "mean")],
        *(["converged SSL / sup"] if convergence else []),
        "p (SSL>sup)",
        "p Holm",
        "SSL-sup per seed",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summary:
        cells = [f"{100 * entry['label_fraction']:g}%"]
        cells += [f"{entry[f'ssl_{n}']:.3f} / {entry[f'supervised_{n}']:.3f}" for n in (*class_names, "mean")]
        if convergence:
            cells.append(f"{entry['ssl_converged']} / {entry['supervised_converged']}")
        if convergence and entry["comparison"] == UNCONVERGED:
            cells += [NOT_CONVERGED, NOT_CONVERGED]
        else:
            cells.append(f"{entry['p_value']:.3g} (n={entry['pairs']})")
            cells.append(f"{entry['p_holm']:.3g}")
        cells.append(", ".join(f"{d:+.3f}" for d in entry["seed_differences"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label_map(onehot: torch.Tensor) -> np.ndarray:
    """(K, H, W) one-hot -> (H, W) map with 0 = background and k + 1 = class k."""
    array = onehot.numpy() > 0.5
    labels = np.zeros(array.shape[1:], dtype=np.int64)
    for k in range(array.shape[0]):
        labels[array[k]] = k + 1
    return labels


@torch.no_grad()
def _example_figure(
    test: SliceDataset, folders: Mapping[str, Path], path: Path, *, count: int = 3
) -> FigureFiles:
    """Test slices, their ground truth and both arms' predictions (models loaded from their runs)."""
    picks = np.linspace(0, len(test) - 1, num=min(count, len(test))).round().astype(int)
    models = {arm: load_model(folder) for arm, folder in folders.items()}
    figure = Figure(figsize=(8, 2.2 * len(picks)))
    titles = ["T1 slice", "ground truth", "SSL", "supervised"]
    for row, index in enumerate(picks):
        item = test[int(index)]
        panels = [item["image"][0].numpy(), _label_map(item["label"])]
        for arm in ("ssl", "supervised"):
            model = models[arm].eval()
            panels.append(_label_map(model.predict_onehot(model(item["image"][None]).float())[0].cpu()))
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
    figure.suptitle(f"Test slices: {', '.join(test.class_names)} = 1, 2, 3 (smallest label fraction, seed 0)")
    return save_figure(figure, path, formats=("png",))


def demo_parts(spec: StudySpec, results: Table, parts: ReportParts) -> None:
    """The demo's report parts: summary and runs tables, learning curves, corruption panel, Dice, examples."""
    names = class_names(results)
    timings = _timings(spec)
    parts.table("summary", lambda: _summary(results, timings, class_names=names))
    parts.table(
        "runs",
        lambda: Table(
            [t.row() for t in timings],
            name="runs",
            title="Runs: epochs, kept epoch (best validation loss, from 1), convergence, validation Dice "
            "of the kept weights and where the time went (seconds)",
        ),
    )
    parts.figure(
        "learning_curves.png",
        "Learning curves (validation loss solid, training loss dashed, validation Dice right axis)",
        lambda p: FigureFiles(
            None,
            (
                plot_learning_curves_grid(
                    [(t.name, t.history, t.converged) for t in timings],
                    p,
                    title="Learning curves (validation loss solid, training loss dashed, "
                    "validation Dice right axis)",
                ),
            ),
        ),
    )
    bundle = build_stage_data(spec.finetune, stage="finetune")
    test = bundle.test
    if test is None or len(test) == 0:
        parts.skipped.append(("corruption panel and examples", "the data set has no test split"))
        return
    k = spec.pretrain.pretext.patch_size
    parts.figure(
        "corruption_panel.png",
        "Corruption of a test slice: both pretext tasks, four patch sizes (Figure 1)",
        lambda p: FigureFiles(
            None,
            (
                render_corruption_figure(
                    test[len(test) // 2]["image"][0].numpy(),
                    p,
                    patch_sizes=(2 * k, k, max(k // 2, 2), max(k // 4, 2)),
                    seed=spec.pretrain.run.seed,
                ),
            ),
        ),
    )
    parts.figure(
        "dice_vs_label_fraction",
        "Dice vs label fraction",
        lambda p: plot_dice_vs_label_fraction(results.select(level="image"), p),
    )
    smallest, seed = min(spec.label_fractions), spec.seeds_at(min(spec.label_fractions))[0]
    folders = {  # the two runs at the smallest fraction and its first seed, where the plan put them
        job.labels["arm"]: job.config.run.output_dir
        for job in expand_study(spec).finetune_jobs()
        if job.labels["label_fraction"] == smallest and job.labels["subset_seed"] == seed
    }
    if all(RunFolder(f).checkpoints.is_dir() for f in folders.values()):
        parts.figure(
            "example_segmentations.png",
            "Example segmentations",
            lambda p: _example_figure(test, folders, p),
        )
    else:
        parts.skipped.append(
            ("example segmentations", f"runs {sorted(map(str, folders.values()))} are not done")
        )


def _time_line(runs: Sequence[RunTiming], *, total: float) -> str:
    """Where the demo's time went: training steps, validation (with best checkpoints), the rest."""
    parts = {
        # By the run's arm, not its folder: a demo study with a grid names other pretraining folders.
        "pretraining steps": sum(r.train_seconds for r in runs if r.is_pretraining),
        "fine-tuning steps": sum(r.train_seconds for r in runs if not r.is_pretraining),
        "validation and best checkpoints": sum(r.validation_seconds for r in runs),
        "set-up, last checkpoints, test evaluation": sum(r.other_seconds for r in runs),
    }
    parts["report, corruption panel and data loading"] = max(total - sum(parts.values()), 0.0)
    return "time: " + ", ".join(
        f"{name} {value:.0f} s ({100 * value / max(total, 1e-9):.0f}%)" for name, value in parts.items()
    )


def _convergence_line(runs: Sequence[RunTiming]) -> str:
    stalled = [run.name for run in runs if not run.converged]
    if not stalled:
        return f"convergence: all {len(runs)} runs converged (inpaintssl.training.convergence)"
    return (
        f"convergence: {len(stalled)} of {len(runs)} runs were still improving when their budget ended "
        f"({', '.join(stalled)}); their scores understate a trained model"
    )


def _p_value_line(summary: Table) -> str | None:
    """Which fractions' p-values are withheld because their runs did not all converge (or None)."""
    withheld = [f"{100 * e['label_fraction']:g}%" for e in summary if e.get("comparison") == UNCONVERGED]
    if not withheld:
        return None
    return (
        f"p-values: {NOT_CONVERGED} at {', '.join(withheld)}: not every run of both arms converged there, "
        "and a comparison means something only between converged models (summary.csv keeps the "
        "numbers, marked 'unconverged runs'; see runs.csv and learning_curves.png)"
    )


def _flags(*, quick: bool, seed: int) -> str:
    """The demo's command-line options that give these settings (``--seed`` always named)."""
    return f"{'--quick ' if quick else ''}--seed {seed}"


def _recorded_flags(recorded: StudySpec, *, output: Path) -> str | None:
    """The options (``--quick``, ``--seed``) that made the recorded demo, if this version makes it so."""
    seed = recorded.pretrain.run.seed
    for quick in (False, True):
        again = demo_spec(settings_for(quick=quick), output=output, seed=seed)
        if not changed_fields(recorded, again, ignore=NOT_SETTINGS):
            return _flags(quick=quick, seed=seed)
    return None


def _check_same_demo(spec: StudySpec, *, quick: bool, seed: int) -> None:
    """Refuse a demo folder that holds a demo made with other settings, before anything trains.

    The demo names its run folders by arm, fraction and seed alone, so a demo with other settings
    (``--quick`` then without, another ``--seed``) would find the earlier demo's folders, and each
    run would fail to resume after the ones that do not collide had trained.

    Raises:
        ConfigError: The folder's ``runs/spec.json`` records other settings; the message names
            ``--output``, the options and fields that differ, and what to do.
    """
    output = spec.output_dir()
    record = spec.database_path().parent / "spec.json"  # where the study runner records it
    recorded = recorded_demo_spec(record)
    if recorded is None:
        return
    differences = setting_differences(recorded, spec)
    if not differences:
        return
    shown = shown_differences(differences)
    then = _recorded_flags(recorded, output=output)
    if then is not None:  # made by this version's demo: its options say what differs, and how to resume
        shown = f"recorded {then}, now {_flags(quick=quick, seed=seed)}, which differ in {shown}"
    resume = f", or rerun with {then} to resume it" if then is not None else ""
    raise ConfigError(
        f"--output {output} holds a demo made with other settings ({record}), and its runs cannot resume "
        f"with these: {shown}; give another --output, or delete {output} to start over{resume}"
    )


def _failed(spec: StudySpec, done: StudySummary) -> DemoRunsError:
    """The short error of a demo whose runs did not all finish; every whole error goes to a file.

    The runner's errors end in tracebacks (a screenful each); the message keeps each run's id,
    folder and first error line, and :data:`FAILED_RUNS_FILE` the rest.
    """
    unfinished = done.total - done.status.get("done", 0)
    if not done.errors:  # none failed: stopped runs, which the next call resumes
        return DemoRunsError(
            f"{unfinished} of {done.total} demo runs did not finish; the same command again resumes them",
            errors={},
            log=None,
        )
    folders = {job.id: job.config.run.output_dir for job in expand_study(spec)}
    database = spec.database_path()
    path = database.parent / FAILED_RUNS_FILE
    log: Path | None = path
    try:
        atomic_write_text(
            path,
            "".join(
                f"{run_id} ({folders.get(run_id, 'no folder')}):\n{error.rstrip()}\n\n"
                for run_id, error in done.errors.items()
            ),
        )
        where = f"every error in full, tracebacks included, is in {path}"
    except OSError as exc:
        where = f"every error in full is in the runs table of {database} (not written to {path}: {exc})"
        log = None
    failed = f"{len(done.errors)} of {done.total} demo runs failed"
    if unfinished > len(done.errors):
        failed += f" ({unfinished - len(done.errors)} more did not finish)"
    runs = "\n".join(
        f"  {run_id} ({folders.get(run_id, 'no folder')}): {(error.splitlines() or [''])[0]}"
        for run_id, error in done.errors.items()
    )
    return DemoRunsError(
        f"{failed}; the same command again retries them; {where}:\n{runs}", errors=done.errors, log=log
    )


def run_demo(
    *, output: Path | str = "demo-report", quick: bool = False, seed: int = 0, quiet: bool = False
) -> DemoResult:
    """Run the demo end to end (a ``demo`` study through the study runner) and write its report folder.

    Re-running with the same ``output`` and settings (``quick``, ``seed``) resumes: finished runs
    are skipped, an interrupted one continues from its last checkpoint. A folder holding a demo made
    with other settings is refused before anything trains.

    Args:
        output: Report folder (also the study folder: runs, database).
        quick: The sub-2-minute version (smaller network, fewer epochs) used in CI.
        seed: Seed of weights, corruption and data order (label subsets use seeds 0, 1, 2, ...).
        quiet: No progress output.

    Returns:
        Results, summary, wall time and written files.

    Raises:
        ConfigError: ``output`` holds a demo made with other settings (nothing has trained).
        DemoRunsError: Runs failed (each one's id and first error line in the message, the whole
            errors in ``runs/failed_runs.txt``); re-running retries them.
    """
    started = time.perf_counter()
    output = Path(output)
    settings = settings_for(quick=quick)
    spec = demo_spec(settings, output=output, seed=seed)
    # Before the plan is printed: a refused demo says only why.
    _check_same_demo(spec, quick=quick, seed=seed)
    print(f"inpaintssl demo{' (quick)' if quick else ''}: {settings.describe()}")
    if quick:
        print(QUICK_NOTE)
    with warnings.catch_warnings():
        # Convergence is reported per run in runs.csv, the table and learning_curves.png instead.
        warnings.simplefilter("ignore", ConvergenceWarning)
        done = run_study(spec, quiet=quiet)
    if not done.complete:
        raise _failed(spec, done)
    # The errors of runs that have now finished would mislead a reader of the folder.
    (spec.database_path().parent / FAILED_RUNS_FILE).unlink(missing_ok=True)
    results = load_results(spec)
    names = class_names(results)
    runs = _timings(spec)
    summary = _summary(results, runs, class_names=names)
    convergence = _convergence_line(runs)
    withheld = _p_value_line(summary)
    timing = _time_line(runs, total=time.perf_counter() - started)
    notes = [
        f"Settings: {settings.describe()}.",
        *([QUICK_NOTE[0].upper() + QUICK_NOTE[1:] + "."] if quick else []),
        f"Wall time before the report: {time.perf_counter() - started:.0f} s.",
        CAVEAT,
        convergence[0].upper() + convergence[1:] + ".",
        *([withheld[0].upper() + withheld[1:] + "."] if withheld else []),
        timing[0].upper() + timing[1:] + ".",
    ]
    report = write_report(spec, output=output, results=results, notes=notes)
    table = format_table(summary, class_names=names)
    seconds = time.perf_counter() - started
    print(table)
    print(CAVEAT)
    print(convergence)
    if withheld:
        print(withheld)
    print(
        "mean over seeds of SSL - supervised (class-averaged Dice): "
        + ", ".join(
            f"{100 * e['label_fraction']:g}%: {statistics.fmean(e['seed_differences'] or [math.nan]):+.3f}"
            + (" (not converged)" if e.get("comparison") == UNCONVERGED else "")
            for e in summary
        )
    )
    print(timing)
    print(f"report: {report.markdown} ({seconds:.0f} s)")
    files = {p.name: p for p in (*report.tables, *report.figures)}
    files["report"] = report.markdown
    return DemoResult(
        output=output, results=results, summary=summary, seconds=seconds, files=files, runs=runs
    )
