"""DataLoader worker support: per-worker seeding and per-process HDF5 handles.

HDF5 files are opened once per process and then read one slice at a time (cpu-budget notes:
about 20,000 slice reads/s with the file kept open). An h5py handle must not be shared across a
``fork``: a worker that used its parent's handle would read through HDF5 state it does not own.
:class:`H5Files` therefore keys its handles by process id, so each DataLoader worker opens its
own on first use, and it drops them when pickled (``spawn``/``forkserver`` workers).

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> loader = DataLoader(range(4), num_workers=0, worker_init_fn=seed_worker)
    >>> [int(x) for x in loader]
    [0, 1, 2, 3]
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from inpaintssl.data.base import DataError

__all__ = ["H5Files", "open_h5", "seed_worker"]


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` that seeds NumPy and :mod:`random` from torch's per-worker seed.

    PyTorch gives each worker the seed ``base_seed + worker_id`` (the base drawn from the
    DataLoader's generator) and seeds torch, :mod:`random` and NumPy in every worker itself
    (NumPy from a hash of the base and the worker's index). This gives NumPy and :mod:`random` the
    worker's torch seed (``torch.initial_seed()``, to 32 bits) instead, so that all three follow
    one rule from the seed the run's manifest records (``worker_seeds``), and a worker that
    re-seeds torch (:class:`~inpaintssl.training.epoch_loader.EpochLoader` at each epoch) can
    re-seed the other two the same way by calling this again.

    Args:
        worker_id: The worker index DataLoader passes (unused: torch's seed already includes it).
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def open_h5(path: str | Path) -> h5py.File:
    """Open ``path`` read-only, turning h5py's low-level errors into a :class:`DataError`.

    Raises:
        DataError: The file is missing, truncated or not HDF5; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"HDF5 file {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"HDF5 file {path} cannot be opened (truncated or not HDF5?): {exc}") from exc


class H5Files:
    """Read-only HDF5 handles, opened lazily and at most once per process and path.

    Example:
        >>> handles = H5Files()
        >>> len(handles)
        0
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._files: dict[Path, h5py.File] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._files) if self._pid == os.getpid() else 0

    def get(self, path: Path) -> h5py.File:
        """The open handle of ``path`` in this process (opened on first call)."""
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: forget (never close) the parent's handles; closing them here
                # would touch HDF5 state the parent still uses.
                self._pid = os.getpid()
                self._files = {}
            handle = self._files.get(path)
            if handle is None or not handle.id.valid:
                handle = open_h5(path)
                self._files[path] = handle
            return handle

    def close(self) -> None:
        """Close this process's handles."""
        with self._lock:
            if self._pid == os.getpid():
                for handle in self._files.values():
                    if handle.id.valid:
                        handle.close()
            self._files = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._reset()
