"""The run folder's layout: every file and folder a run writes, named in this module only.

A run folder (``run.output_dir``) holds::

    <run>/
        config.yaml          the resolved configuration
        manifest.json        versions, seed, worker seeds, git commit, data-file hash
        splits.json          the exact subsets used
        metrics.csv          one row per epoch
        learning_curve.png   losses per epoch and whether the run converged
        checkpoints/best/    best validation loss (see inpaintssl.checkpoint)
        checkpoints/last/    latest epoch, with optimizer and trainer state for --resume
        checkpoints/best.pending/  a new best's weights, until ``last`` records its epoch
        tensorboard/         event files, when the tensorboard package is installed
        reconstructions/     pretraining: what the network restores, one image per epoch
        val_inpainting.csv   pretraining: per-image L2 norms of the inpainted validation images
        test_metrics.csv     fine-tuning: per-image and per-volume Dice on the test split
        eval_<split>.csv     ``inpaintssl evaluate`` output when no ``--output`` is given
        .inpaintssl.lock     present only while a run writes the folder (inpaintssl.training.lock)

Code that reads or writes any of these goes through :class:`RunFolder`, so renaming one is a
one-line change and a reader finds every user of a file by its property. This module imports
nothing from ``inpaintssl``: the checkpoint and data layers, which sit below training, use it too.

Example:
    >>> from pathlib import Path
    >>> run = RunFolder(Path("runs/ft"))
    >>> run.config, run.best
    (PosixPath('runs/ft/config.yaml'), PosixPath('runs/ft/checkpoints/best'))
    >>> run.eval_csv("test").name
    'eval_test.csv'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, overload

__all__ = ["RunFolder"]


class _Entry:
    """A file or folder directly inside a run folder: on a :class:`RunFolder`, its path."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.__doc__ = f"``{name}``: {what}."

    @overload
    def __get__(self, folder: None, owner: type[RunFolder]) -> _Entry: ...
    @overload
    def __get__(self, folder: RunFolder, owner: type[RunFolder]) -> Path: ...
    def __get__(self, folder: RunFolder | None, owner: type[RunFolder]) -> Path | _Entry:
        return self if folder is None else folder.root / self.name


@dataclass(frozen=True)
class RunFolder:
    """The paths inside one run folder (nothing is created or checked: these are names only).

    Attributes:
        root: The run folder itself.

    Example:
        >>> from pathlib import Path
        >>> RunFolder(Path("runs/pre")).checkpoint("last")
        PosixPath('runs/pre/checkpoints/last')
        >>> RunFolder.of_checkpoint(Path("runs/pre/checkpoints/best"))
        RunFolder(root=PosixPath('runs/pre'))
    """

    root: Path

    # The names themselves, for code that must match a name rather than build a path (and for
    # the test that no other module spells them).
    CONFIG: ClassVar[str] = "config.yaml"
    MANIFEST: ClassVar[str] = "manifest.json"
    SPLITS: ClassVar[str] = "splits.json"
    METRICS_CSV: ClassVar[str] = "metrics.csv"
    LEARNING_CURVE: ClassVar[str] = "learning_curve.png"
    CHECKPOINTS: ClassVar[str] = "checkpoints"
    TENSORBOARD: ClassVar[str] = "tensorboard"
    RECONSTRUCTIONS: ClassVar[str] = "reconstructions"
    VAL_INPAINTING: ClassVar[str] = "val_inpainting.csv"
    TEST_METRICS: ClassVar[str] = "test_metrics.csv"
    DATA_CHECK: ClassVar[str] = "data_check.json"
    LOCK: ClassVar[str] = ".inpaintssl.lock"
    NAMES: ClassVar[tuple[str, ...]] = (
        CONFIG,
        MANIFEST,
        SPLITS,
        METRICS_CSV,
        LEARNING_CURVE,
        CHECKPOINTS,
        TENSORBOARD,
        RECONSTRUCTIONS,
        VAL_INPAINTING,
        TEST_METRICS,
        DATA_CHECK,
        LOCK,
    )
    """Every fixed name above (``best``/``last`` are the checkpoint choices, not listed)."""

    def __post_init__(self) -> None:
        # Accept a str too (frozen: set through object.__setattr__), so RunFolder("runs/a") works.
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> RunFolder | None:
        """The run folder a checkpoint folder (or a file inside one) belongs to, if it is in one.

        A symbolic link (``current -> runs/ft/checkpoints/best``) names the checkpoint it points
        to, so the run it came from is found through it.
        """
        for path in (checkpoint, checkpoint.resolve()):
            folder = path.parent if path.is_file() else path
            if folder.parent.name == cls.CHECKPOINTS:
                return cls(folder.parent.parent)
        return None

    @classmethod
    def owning(cls, path: Path) -> RunFolder:
        """The run folder ``path`` names or lies in: a run, ``checkpoints/best`` or a file in one.

        A file outside any run folder gets its own folder (which holds no ``config.yaml``).
        """
        return cls.of_checkpoint(path) or cls(path if path.is_dir() else path.parent)

    config = _Entry(CONFIG, "the resolved configuration")
    manifest = _Entry(MANIFEST, "versions, seeds, git commit, data-file hash")
    splits = _Entry(SPLITS, "the exact subsets used")
    metrics_csv = _Entry(METRICS_CSV, "one row per epoch")
    learning_curve = _Entry(LEARNING_CURVE, "the losses per epoch")
    checkpoints = _Entry(CHECKPOINTS, "the folder holding ``best`` and ``last``")
    tensorboard = _Entry(TENSORBOARD, "event files")
    reconstructions = _Entry(RECONSTRUCTIONS, "pretraining's per-epoch restoration images")
    val_inpainting = _Entry(VAL_INPAINTING, "pretraining's per-image inpainting L2 norms")
    test_metrics = _Entry(TEST_METRICS, "fine-tuning's test-split Dice table")
    data_check = _Entry(DATA_CHECK, "the data files the pre-flight check passed, for a resume to skip")
    lock = _Entry(LOCK, "present while a run writes the folder")

    def checkpoint(self, which: Literal["best", "last"]) -> Path:
        """``checkpoints/<which>``."""
        return self.checkpoints / which

    @property
    def best(self) -> Path:
        """``checkpoints/best``: the weights of the best validation loss."""
        return self.checkpoint("best")

    @property
    def last(self) -> Path:
        """``checkpoints/last``: the latest epoch with the state to resume from."""
        return self.checkpoint("last")

    @property
    def pending_best(self) -> Path:
        """``checkpoints/best.pending``: a new best epoch's weights until ``last`` records that epoch.

        Training moves them to ``best`` right after it writes ``last``, so ``best`` never holds an
        epoch that a resume trains again.
        """
        return self.checkpoints / "best.pending"

    def eval_csv(self, split: str) -> Path:
        """``eval_<split>.csv``: where ``inpaintssl evaluate`` writes by default."""
        return self.root / f"eval_{split}.csv"
