"""Per-run set-up shared by pretraining and fine-tuning: device, process group, seeding, run folder.

:func:`run_session` also makes the run the folder's only writer (a lock file, see
:mod:`~inpaintssl.training.lock`), puts back every process-wide setting it changed (see
:mod:`~inpaintssl.training.process_state`), and removes a run folder it created when the run
fails before writing anything into it.

Example:
    >>> from inpaintssl.config import RunConfig
    >>> import tempfile, pathlib
    >>> ctx = RunContext.start(RunConfig(output_dir=pathlib.Path(tempfile.mkdtemp()) / "r", device="cpu"))
    >>> ctx.device.type, ctx.dist.world_size
    ('cpu', 1)
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inpaintssl.checkpoint import checkpoint_exists, remove_stale_twins
from inpaintssl.config import ConfigError, RunConfig
from inpaintssl.layout import RunFolder
from inpaintssl.signals import ctrl_c_redelivered
from inpaintssl.training.device import autocast_dtype, resolve_device, use_channels_last
from inpaintssl.training.distributed import (
    DistInfo,
    broadcast_object,
    group_joined,
    init_distributed,
    shutdown_distributed,
)
from inpaintssl.training.host_memory import keep_freed_host_memory
from inpaintssl.training.lock import RunFolderInUseError, RunFolderLockedError, acquire_run_lock
from inpaintssl.training.process_state import preserved_process_state
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "FreshStartWarning",
    "RunContext",
    "RunFolderInUseError",
    "RunFolderLockedError",
    "refused_on_rank_zero",
    "run_session",
    "seed_everything",
]


log = logging.getLogger("inpaintssl.training")


class FreshStartWarning(UserWarning):
    """``run.resume`` was asked for, but the run folder holds nothing to resume: the run starts fresh."""


class FinishedRunWarning(UserWarning):
    """``run.resume`` was asked for, but the run had finished: nothing is trained, its best weights
    are loaded again and its results written again."""


def seed_everything(seed: int, *, deterministic: bool, cudnn_benchmark: bool = False) -> None:
    """Seed Python, NumPy and torch; with ``deterministic``, also force deterministic kernels;
    with ``cudnn_benchmark``, let cuDNN autotune its convolutions (``run.cudnn_benchmark``)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace for reproducible GEMMs on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif cudnn_benchmark:
        torch.backends.cudnn.benchmark = True


@dataclass(frozen=True)
class RunContext:
    """Where and how this process trains."""

    run: RunConfig
    device: torch.device
    dist: DistInfo
    amp_dtype: torch.dtype | None

    @property
    def channels_last(self) -> bool:
        """Whether this run uses the ``channels_last`` memory format on its device."""
        return use_channels_last(self.device, self.run.channels_last)

    @property
    def run_dir(self) -> Path:
        """The run folder."""
        return self.run.output_dir

    @property
    def run_folder(self) -> RunFolder:
        """The paths inside the run folder."""
        return RunFolder(self.run.output_dir)

    @classmethod
    def local(cls, run: RunConfig) -> RunContext:
        """A context for this process alone that changes nothing around it.

        Unlike :meth:`start` it seeds nothing, joins no process group and neither checks nor
        creates the run folder: for building a :class:`~inpaintssl.training.loop.Trainer` in a
        test or a notebook.

        Example:
            >>> from inpaintssl.config import RunConfig
            >>> ctx = RunContext.local(RunConfig(output_dir=Path("runs/x"), device="cpu"))
            >>> ctx.device.type, ctx.dist.is_main, ctx.run_folder.last
            ('cpu', True, PosixPath('runs/x/checkpoints/last'))
        """
        device = resolve_device(run.device, field="run.device")
        return cls(run=run, device=device, dist=DistInfo(), amp_dtype=autocast_dtype(device, run.amp))

    @classmethod
    def start(cls, run: RunConfig) -> RunContext:
        """Resolve the device, join a torchrun group if any, seed, and claim the run folder.

        Raises:
            RunFolderInUseError: ``run.output_dir`` already holds checkpoints and ``resume`` is off.
        """
        device, info = _joined(run)
        return cls._begun(run, device=device, info=info)

    @classmethod
    def _begun(cls, run: RunConfig, *, device: torch.device, info: DistInfo) -> RunContext:
        """Seed, and claim the run folder, once the device is resolved and the group joined."""
        seed_everything(run.seed, deterministic=run.deterministic, cudnn_benchmark=run.cudnn_benchmark)
        found = _checkpoints_held(RunFolder(run.output_dir))
        if not run.resume and found:
            raise RunFolderInUseError(
                f"run.output_dir={str(run.output_dir)!r} already holds a run (found "
                f"{', '.join(map(str, found))}); "
                "pass --resume (run.resume=true) to continue it, or choose another run.output_dir"
            )
        if info.is_main:
            run.output_dir.mkdir(parents=True, exist_ok=True)
        return cls(run=run, device=device, dist=info, amp_dtype=autocast_dtype(device, run.amp))


def _checkpoints_held(folder: RunFolder) -> list[Path]:
    """The checkpoints (``best``, ``last``, ``best.pending``, or their ``.old`` twins) ``folder`` holds.

    Only what a resume would find counts: a run killed while writing its first checkpoint leaves
    just that write's hidden temporary (``.best.pending.<random>.tmp``), which the next run sweeps
    away; such a folder starts afresh, as one killed before any checkpoint does.
    """
    return [path for path in (folder.best, folder.last, folder.pending_best) if checkpoint_exists(path)]


def _joined(run: RunConfig) -> tuple[torch.device, DistInfo]:
    """The run's device, and this process's place in the torchrun group it joined (if launched so)."""
    info = DistInfo.from_env()
    device = resolve_device(
        run.device, local_rank=info.local_rank if info.distributed else None, field="run.device"
    )
    return device, init_distributed(device)


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder on the way to ``folder`` that does not exist yet (``None``: all exist)."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_if_empty(folder: Path, *, up_to: Path) -> None:
    """Remove ``folder`` if nothing but empty folders is left in it, then its parents up to ``up_to``."""
    for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            Path(root).rmdir()  # fails on a folder that holds a file: that output stays
    for parent in folder.parents:
        if not parent.is_relative_to(up_to):
            break
        with contextlib.suppress(OSError):
            parent.rmdir()


def _remove_stale_twins(folder: Path) -> None:
    """Remove the ``.old`` copy a run killed after a checkpoint swap left beside a complete checkpoint.

    A finished run never writes ``last`` again, so nothing else would ever remove it; beside a
    missing or damaged checkpoint it is what the resume recovers, and stays
    (:func:`~inpaintssl.checkpoint.remove_stale_twins`). Failing to remove it (a read-only folder)
    stops nothing: it is a spare copy.
    """
    try:
        removed = remove_stale_twins(RunFolder(folder).checkpoints, names=("best", "last"))
    except OSError as exc:
        log.warning("could not remove a stale checkpoint copy in %s: %s", RunFolder(folder).checkpoints, exc)
        return
    for path in removed:
        log.info("removed %s, a copy of the previous checkpoint an interrupted save left behind", path)


def _warn_if_nothing_to_resume(folder: Path, *, existed: bool) -> None:
    last = RunFolder(folder).last
    if checkpoint_exists(last):
        return
    found = f"holds no resumable checkpoint ({last})" if existed else "did not exist"
    warn_each_time(
        f"run.resume=true, but run.output_dir={str(folder)!r} {found}: starting a fresh run there",
        FreshStartWarning,
    )


@contextlib.contextmanager
def _sole_writer(folder: Path, *, resume: bool) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; on failure, remove the folder if this call created it
    and nothing was written into it."""
    for part in (folder, *folder.parents):
        # A file where the folder (or one above it) should be: say so, not "[Errno 17] File exists".
        if part.exists() and not part.is_dir():
            raise ConfigError(
                f"run.output_dir={str(folder)!r}: {str(part)!r} is a file; "
                "expected a folder (new or existing)"
            )
    created = _first_missing(folder)
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # A read-only parent: name the setting to change, not only the path that failed.
            raise OSError(
                exc.errno, f"could not create run.output_dir={str(folder)!r}: {exc.strerror or exc}"
            ) from exc
        with acquire_run_lock(folder):
            if resume:
                # After the lock: a folder another run is writing gets the lock error, not this
                # warning (which may be raised as an error, and then releases the lock too), and
                # its checkpoint copies are its own.
                _remove_stale_twins(folder)
                _warn_if_nothing_to_resume(folder, existed=created is None)
            yield
    except BaseException:
        # The lock is released first, so the lock file does not keep the folder from going.
        if created is not None:
            _remove_if_empty(folder, up_to=created)
        raise


@contextlib.contextmanager
def _claimed_by_main(run: RunConfig, info: DistInfo) -> Iterator[None]:
    """The main process holds the run folder (:func:`_sole_writer`) for the block; under torchrun
    every rank stops when it is refused.

    The group is joined first and rank 0 sends its verdict: a rank left out of it would wait for
    rank 0 in the first collective, until a launcher that watches its processes ended it (torchrun
    does, after which the rank said it was terminated and that ``--resume`` continues; srun or
    mpirun may leave it to PyTorch's store timeout). The other ranks raise the refusal's own type,
    naming rank 0's message, so a script that catches :class:`RunFolderLockedError` does so on
    every rank.
    """
    with contextlib.ExitStack() as held:
        refusal: Exception | None = None
        if info.is_main:
            try:
                held.enter_context(_sole_writer(run.output_dir, resume=run.resume))
            except Exception as exc:
                if not info.distributed:
                    raise
                refusal = exc
        if info.distributed:
            verdict = broadcast_object(None if refusal is None else (type(refusal), str(refusal)))
            if refusal is not None:
                raise refusal
            if verdict is not None:
                raise refused_on_rank_zero(
                    *verdict, world_size=info.world_size, failed="could not claim the run folder"
                )
        yield


def refused_on_rank_zero(kind: type[Exception], message: str, *, world_size: int, failed: str) -> Exception:
    """The error another rank raises where rank 0 ``failed`` with a ``kind`` error saying ``message``.

    Of rank 0's type (so a script catching it does so on every rank, and the command line's exit
    status is rank 0's), naming rank 0 and its message: a rank left to go on alone would wait in
    its first collective for one that has stopped.

    Example:
        >>> str(refused_on_rank_zero(ValueError, "busy", world_size=2, failed="could not start"))
        'rank 0 of 2 could not start, so this rank stops too: busy'
    """
    text = f"rank 0 of {world_size} {failed}, so this rank stops too: {message}"
    try:
        return kind(text)
    except TypeError:  # an error type that does not take a message alone: the text still says it all
        return RuntimeError(text)


@contextlib.contextmanager
def run_session(run: RunConfig) -> Iterator[RunContext]:
    """Start a run (:meth:`RunContext.start`) as the folder's only writer, and clean up after it.

    Once the device is resolved and the torchrun group (if any) joined, and before anything else,
    the main process takes the run folder's lock
    (:func:`~inpaintssl.training.lock.acquire_run_lock`), so a second run into the same folder
    stops with :class:`RunFolderLockedError` naming the first; under torchrun every rank stops
    with it. On exit, normal or not, the
    session leaves the process group, releases the lock, and restores every process-wide
    setting it changed (seeded random generators, deterministic-kernel and cuDNN autotuning flags,
    ``CUBLAS_WORKSPACE_CONFIG``; :func:`~inpaintssl.training.process_state.preserved_process_state`).
    A Ctrl-C that Python drops during the run (raised in a finaliser or a fork callback) is sent
    again (:func:`~inpaintssl.signals.ctrl_c_redelivered`). A run that fails before writing
    anything leaves no folder it created behind. A resume, once it holds the lock, removes the
    ``checkpoints/<name>.old`` copy a kill after a checkpoint swap left beside a complete
    ``<name>`` (:func:`~inpaintssl.checkpoint.remove_stale_twins`).

    On the CPU, ``run.reuse_host_memory: true`` also tunes the process's allocator (which stays
    tuned). ``run.cpu_weight_gradient`` is not a session setting: training builds the backbone
    with it (:func:`~inpaintssl.training.components.build_backbone`).

    Raises:
        RunFolderLockedError: Another run holds the folder's lock.
        RunFolderInUseError: The folder holds an earlier run and ``run.resume`` is off.

    Warns:
        FreshStartWarning: ``run.resume`` is on but the folder holds no checkpoint to resume.

    Example:
        >>> import tempfile, pathlib
        >>> from inpaintssl.config import RunConfig
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "run"
        >>> with run_session(RunConfig(output_dir=folder, device="cpu", deterministic=True)) as ctx:
        ...     sorted(p.name for p in ctx.run_dir.iterdir()), torch.are_deterministic_algorithms_enabled()
        (['.inpaintssl.lock'], True)
        >>> torch.are_deterministic_algorithms_enabled(), list(folder.iterdir())
        (False, [])
    """
    # What an enclosing ``except`` block is handling: a failed run's error chains to it.
    caller_error = sys.exc_info()[1]
    # A group the caller joined is the caller's to leave: left here, its next collective failed.
    callers_group = group_joined()
    # A notebook's stop button is Ctrl-C: one that lands in a fork callback (a DataLoader worker
    # starting) would be dropped, and the run would train on.
    with ctrl_c_redelivered(), preserved_process_state():
        device, info = _joined(run)
        try:
            with _claimed_by_main(run, info):
                ctx = RunContext._begun(run, device=device, info=info)
                if ctx.device.type == "cpu" and run.reuse_host_memory:
                    keep_freed_host_memory()
                try:
                    yield ctx
                except BaseException as error:
                    if not callers_group:
                        shutdown_distributed(error=error, caller_error=caller_error)
                    raise
                else:
                    if not callers_group:
                        shutdown_distributed()
        except BaseException as error:
            # Refused before the run began (the folder's claim, the in-use check): every rank
            # stops, and leaves the group it joined. After a normal leave this does nothing.
            if not callers_group:
                shutdown_distributed(error=error, caller_error=caller_error)
            raise
