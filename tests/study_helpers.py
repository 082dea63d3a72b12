"""Tiny study specs on the registered ``synthetic`` dataset: 32x32 slices, a 3-level U-Net of width 4,
and a tiny pretraining config on 16x16 slices.

Imported by the tests (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from inpaintssl.analysis.table import Table as ResultsTable
from inpaintssl.studies import StudySpec, expand_study, load_spec
from inpaintssl.studies.grid import Job

# Test split of every tiny study: 4 slices in 2 volumes of 2 slices (so Dice has volume rows too).
TEST_SLICES = 4
TEST_VOLUMES = 2
VAL_SLICES = 4
CLASSES = ("disc", "square")


def tiny_segmentation_trainer(
    output_dir: Path, /, *, max_epochs: int, trainer_options: dict[str, Any] | None = None, **run: Any
) -> Any:
    """A ``Trainer`` that fine-tunes a 2-level width-4 U-Net on 8 synthetic 16x16 slices, 2 steps an
    epoch, on the CPU; ``run`` sets more ``RunConfig`` fields (``resume``, ``compile``, ``device``:
    the model goes to the run's device), ``trainer_options`` more ``Trainer`` arguments
    (``num_workers``, ``epoch_hooks``, ...)."""
    from inpaintssl.checkpoint import CheckpointMeta
    from inpaintssl.config import EarlyStoppingConfig, OptimConfig, RunConfig
    from inpaintssl.data.synthetic import SyntheticShapes
    from inpaintssl.registry import BACKBONES, LOSSES
    from inpaintssl.training.context import RunContext
    from inpaintssl.training.loop import Phase, Trainer
    from inpaintssl.training.objectives import SegmentationObjective

    context = RunContext.local(
        RunConfig(**{"output_dir": output_dir, "device": "cpu", "seed": 0, "quiet": True, **run})
    )
    # The Trainer takes the model on the run's device, as the library's stages hand it over.
    model = BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0)
    return Trainer(
        model=model.to(context.device),
        objective=SegmentationObjective(loss=LOSSES.build("dice")),
        train_set=SyntheticShapes(split="train", num_images=8, size=(16, 16)),
        val_set=SyntheticShapes(split="val", num_images=8, num_val=4, size=(16, 16)),
        phases=[Phase(name="finetune", lr=1e-2)],
        optim=OptimConfig(batch_size=4, max_epochs=max_epochs),
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=context,
        **(trainer_options or {}),
    )


class EmptySplitRecord:
    """A split record for ``record_run`` that writes ``{}`` and keeps where (``saved``)."""

    def __init__(self) -> None:
        self.saved: list[Path] = []

    def save(self, path: Path) -> None:
        path.write_text("{}")
        self.saved.append(path)


def tiny_numpy_pretrain_config(root: Path, volumes: list[tuple[str, str]]) -> dict[str, Any]:
    """A :func:`tiny_pretrain_config` on ``.npy`` volumes found by pattern in ``<root>/<split>/``.

    ``volumes`` lists ``(split, name)`` pairs (``train`` and ``val``); each is a seeded 16x16x3
    volume ``<root>/<split>/<name>_img.npy``. The run writes to ``<root>/run``.
    """
    for seed, (split, name) in enumerate(volumes):
        (root / split).mkdir(parents=True, exist_ok=True)
        volume = np.random.default_rng(seed).normal(size=(16, 16, 3)).astype(np.float32)
        np.save(root / split / f"{name}_img.npy", volume)
    cases = {split: {"image": f"{split}/*_img.npy"} for split in ("train", "val")}
    return tiny_pretrain_config(
        root / "run", data={"dataset": "numpy", "params": {"root": str(root), "cases": cases}}
    )


def tiny_pretrain_config(output_dir: Path, /, **sections: dict[str, Any]) -> dict[str, Any]:
    """A pretraining config that runs in about a second: 8 synthetic 16x16 slices, a 2-level U-Net.

    ``sections`` update the defaults section by section, e.g. ``optim={"max_epochs": 3}``; the run
    writes to ``output_dir``.
    """
    config: dict[str, Any] = {
        "data": {
            "dataset": "synthetic",
            "params": {"num_images": 8, "num_val": 2, "num_test": 2, "size": [16, 16]},
        },
        "model": {"params": {"depth": 2, "base_width": 4}},
        "pretext": {"patch_size": 4, "bank_size": 4, "sampler": "random"},
        "optim": {"max_epochs": 2, "batch_size": 4},
        "run": {"output_dir": str(output_dir), "device": "cpu", "quiet": True},
    }
    for name, values in sections.items():
        config[name] = {**config[name], **values}
    return config


def tiny_spec(output: Path, *, study: str = "pretext_design", **changes: Any) -> dict[str, Any]:
    """A study spec that trains in about a second per run on two CPU cores."""
    params = {
        "num_images": 8,
        "num_val": VAL_SLICES,
        "num_test": TEST_SLICES,
        "size": [32, 32],
        "slices_per_volume": TEST_SLICES // TEST_VOLUMES,
    }
    data = {"dataset": "synthetic", "params": params}
    model = {"params": {"depth": 3, "base_width": 4}}
    run = {"device": "cpu", "channels_last": False}
    optim = {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 4}
    spec: dict[str, Any] = {
        "study": study,
        "output": str(output),
        "pretrain": {
            "data": data,
            "model": model,
            "run": run,
            "pretext": {"patch_size": 4, "bank_size": 4},
            "optim": optim,
        },
        "finetune": {"data": data, "model": model, "run": run, "optim": optim},
        "grid": {"pretrain.pretext.task": ["context_prediction", "context_restoration"]},
        "label_fractions": [1.0, 0.5],
        "heartbeat_s": 0.2,
    }
    spec.update(changes)
    return spec


# -- small hand-made results tables (figures and reports) --------------------------------------
FRACTIONS = (1.0, 0.5, 0.25, 0.1)
RESULT_CLASSES = ("csf", "gm", "wm")
RESULT_IMAGES = 4


def result_row(
    arm: str,
    strategy: str | None,
    fraction: float | None,
    image: int | str,
    value: float,
    *,
    seed: int = 0,
    run: str | None = None,
    baseline: str | None = None,
    metric: str = "dice_mean",
    class_name: str = "",
    level: str = "image",
    slice_index: int = 0,
    **labels: Any,
) -> dict[str, Any]:
    """One row of a long results table (:mod:`inpaintssl.studies.results`), as the analysis reads it.

    ``image`` is the test item: ``img<i>`` for an int, else the ``volume_id`` itself. ``run_id`` and
    ``baseline_id`` are set only when given: results recorded before runs named their baseline have
    no ``baseline_id``. ``labels`` come last, so they may also replace any column above.
    """
    row: dict[str, Any] = {
        "arm": arm,
        "strategy": strategy,
        "label_fraction": fraction,
        "subset_seed": seed,
        "level": level,
        "volume_id": f"img{image}" if isinstance(image, int) else image,
        "slice_index": slice_index,
        "class_name": class_name,
        "metric": metric,
        "value": value,
    }
    if run is not None:
        row["run_id"] = run
    if baseline is not None:
        row["baseline_id"] = baseline
    return {**row, **labels}


def dice_rows(arm: str, strategy: str, fraction: float, seed: int = 0, **labels: Any) -> list[dict[str, Any]]:
    """Per-class and class-averaged Dice of ``RESULT_IMAGES`` test images, random but fixed per
    ``(strategy, fraction, seed)``; ``labels`` are added to every row (e.g. ``run_id``)."""
    rng = np.random.default_rng(zlib.crc32(repr((strategy, fraction, seed)).encode()))
    rows = []
    for i in range(RESULT_IMAGES):
        dice = rng.uniform(0.5, 0.9, size=len(RESULT_CLASSES))
        rows += [
            result_row(arm, strategy, fraction, i, d, seed=seed, metric="dice", class_name=c, **labels)
            for c, d in zip(RESULT_CLASSES, dice)
        ]
        rows.append(result_row(arm, strategy, fraction, i, dice.mean(), seed=seed, **labels))
    return rows


def pretext_results() -> ResultsTable:
    rows = []
    for fraction in FRACTIONS:
        rows += dice_rows("supervised", "supervised", fraction)
        for size, sampler in itertools.product((16, 32), ("random", "poisson_disc")):
            for seed in (0, 1):
                rows += dice_rows(
                    "ssl", f"context_restoration {size} {sampler}", fraction, seed, task="context_restoration"
                )
        rows += dice_rows("ssl", "context_prediction 16 random", fraction, task="context_prediction")
    return ResultsTable(rows)


def scaling_results() -> ResultsTable:
    rows = []
    for fraction in FRACTIONS:
        labelled = round(40 * fraction)  # labelled training volumes at this fraction
        rows += dice_rows("supervised", "supervised", fraction, labelled_volumes=labelled)
        for pct in (100.0, 150.0, 200.0):
            rows += dice_rows("ssl", f"+{pct}", fraction, pretrain_data_pct=pct, labelled_volumes=labelled)
    return ResultsTable(rows)


def clinical_results() -> ResultsTable:
    rng = np.random.default_rng(3)
    rows = []
    for arm, fraction, metric, name, image in itertools.product(
        ("supervised", "ssl"), (0.5, 0.1), ("volume_mm3", "mean_t2_ms"), ("gm", "wm"), range(RESULT_IMAGES)
    ):
        rows.append(
            result_row(
                arm,
                None,
                fraction,
                f"v{image}",
                rng.uniform(1, 40),
                level="volume",
                slice_index=-1,
                class_name=name,
                metric=f"{metric}_pct_error",
            )
        )
    return ResultsTable(rows)


def transfer_results() -> ResultsTable:
    rows = []
    for lr in (1e-2, 1e-3, 1e-4):
        for acronym in ("FEF", "FBF"):
            rows += dice_rows(
                "ssl",
                f"{acronym} lr={lr}",
                0.05,
                schedule="immediate",
                second_lr=None,
                lr=lr,
                acronym=acronym,
            )
        for second, acronym in itertools.product((1e-3, 1e-4), ("FFES", "FFBS")):
            rows += dice_rows(
                "ssl",
                f"{acronym} lr={lr}/{second}",
                0.05,
                schedule="freeze_then_unfreeze",
                second_lr=second,
                lr=lr,
                acronym=acronym,
            )
    return ResultsTable(rows)


def kill_study_after_first_checkpoint(
    spec: dict[str, Any], folder: Path, *flags: str
) -> tuple[StudySpec, Job]:
    """Run ``inpaintssl experiment run`` on ``spec`` and SIGKILL it, whole process group, mid-run.

    The spec's pretraining is lengthened to 6 epochs without early stopping, so the kill lands
    after its first checkpoint and before it ends. ``flags`` go to the command (e.g.
    ``--executor slurm``). Returns the study and its pretraining job.
    """
    study, pre, _, _ = signal_study_after_first_checkpoint(spec, folder, *flags, signum=signal.SIGKILL)
    return study, pre


def _ctrl_c_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_study_after_first_checkpoint(
    spec: dict[str, Any], folder: Path, *flags: str, signum: int, to: str = "group"
) -> tuple[StudySpec, Job, int, str]:
    """:func:`kill_study_after_first_checkpoint` with another signal (``SIGTERM``: what Slurm sends
    every process of a job step on ``scancel``); also returns the exit status and stderr.

    ``to``: ``group`` (every process of the command, as ``scancel``), ``driver`` (its pid alone,
    as ``kill``) or ``driver+group`` (the pid, then the group, as ``timeout`` does).
    """
    spec["pretrain"]["optim"] = {"max_epochs": 6, "steps_per_epoch": 2, "batch_size": 4}
    spec["pretrain"]["early_stopping"] = {"min_delta": 0.0, "patience": 100}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = load_spec(spec)
    (pre,) = expand_study(study).pretrain_jobs()
    last = study.runs_dir() / pre.id / "checkpoints" / "last"
    proc = subprocess.Popen(
        [sys.executable, "-m", "inpaintssl", "experiment", "run", str(path), *flags, "--quiet"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A background job (`make test &`, a CI runner) starts with Ctrl-C ignored, and Python keeps
        # an ignored SIGINT ignored: give the command the terminal's default, as a user's has.
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    deadline = time.monotonic() + 120
    try:
        while not last.exists():
            ended = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
            assert proc.poll() is None, f"the study ended before the signal: {ended!r}"
            assert time.monotonic() < deadline, "pretraining never wrote a checkpoint"
            time.sleep(0.02)
        if to in ("driver", "driver+group"):
            os.kill(proc.pid, signum)
        if to == "driver+group":
            time.sleep(0.5)  # the second signal lands while the first one's clean-up runs
        if to in ("group", "driver+group"):
            os.killpg(proc.pid, signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        # Its workers end with it but may linger a moment (until reaped): while their pid exists
        # the run folder's lock is not stale, and a resumed attempt would find it held.
        gone_by = time.monotonic() + 30
        while time.monotonic() < gone_by:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
    return study, pre, proc.returncode, err


def pool_task_after_its_sibling_started(
    folder: str, *, then_sleep_s: float, then_ignore_sigterm: bool
) -> int:
    """A call for a study pool's worker: wait until both workers of the pool hold a call (each writes
    its pid into ``folder``), sleep ``then_sleep_s``, and return the worker's pid.

    ``then_ignore_sigterm``: end as a worker that a signal stopped and that handed its run back does,
    waiting for the pool's word to exit with SIGTERM ignored.
    """
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(Path(folder).iterdir())) < 2:
        assert time.monotonic() < deadline, "the pool's other worker never took a call"
        time.sleep(0.01)
    time.sleep(then_sleep_s)
    if then_ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return os.getpid()


class InstantClock:
    """``time`` for a study driver under test: ``sleep`` moves ``monotonic`` on at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
