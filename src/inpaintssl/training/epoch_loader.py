"""A DataLoader whose worker processes serve every epoch of a run, each epoch drawing as fresh workers would.

Starting DataLoader workers costs little when they are forked, but Python 3.14 starts them by
``forkserver`` on Linux, and macOS and Windows by ``spawn``: each start is then a new interpreter
that imports torch and this library and unpickles the dataset, a second or more per worker. A
loader built per pass (and per validation) pays that at every epoch. :class:`EpochLoader` keeps
its workers (``persistent_workers=True``) for as long as it is open: 6 epochs of the demo data with
2 workers read in 5.7 s instead of 27.9 s by forkserver (``benchmarks/bench_worker_starts.py``).

Kept workers would carry their random state from one epoch into the next, where fresh ones
start each epoch from their seed; a dataset that draws at random (an augmentation) would then
draw numbers that depend on how many passes the workers have served, and a resumed run, whose
workers start afresh, would draw others. So every index the sampler gives travels with the number
of the pass over the data it belongs to and that pass's epoch, and a worker that sees a new pass
re-seeds itself as a fresh worker is seeded (``random`` and torch, then
:func:`~inpaintssl.data.loading.seed_worker`), from its seed moved on by the epoch
(:func:`pass_worker_seed`). The epoch is the sampler's (``DistributedSampler.set_epoch``, which
the Trainer sets to a key of the phase, epoch and pass), or :meth:`EpochLoader.set_epoch`'s for a
sampler without one, 0 if never set: each epoch draws its own numbers, and the same ones whenever
it is read again, after a resume or by another loader with the same seed. Which batch goes to
which worker does not change either: PyTorch hands batches out round-robin from worker 0 at every
pass. So a loader starts at most one worker per batch of a pass (:func:`workers_used`): a worker
beyond that would never get a batch, yet would start, import torch and hold a copy of the
dataset; the batches and their random numbers are the same as with every worker asked for.

Example:
    >>> import torch
    >>> from torch.utils.data import SequentialSampler
    >>> data = [torch.tensor(float(i)) for i in range(4)]
    >>> with EpochLoader(data, sampler=SequentialSampler(data), batch_size=2, seed=0) as loader:
    ...     [batch.tolist() for batch in loader]
    [[0.0, 1.0], [2.0, 3.0]]
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from inpaintssl.data.loading import seed_worker

__all__ = ["EpochLoader", "base_worker_seed", "pass_worker_seed", "unavailable_start_method", "workers_used"]

T = TypeVar("T")


def base_worker_seed(seed: int) -> int:
    """The seed PyTorch gives worker 0 of a loader whose generator is seeded with ``seed``.

    Worker ``w`` gets this plus ``w``. A ``DataLoader`` draws it from its generator each time it
    starts workers; :class:`EpochLoader` seeds that generator with the run's seed.

    Example:
        >>> base_worker_seed(0) == base_worker_seed(0) != base_worker_seed(1)
        True
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


def pass_worker_seed(worker_seed: int, epoch: int) -> int:
    """The seed a worker seeded ``worker_seed`` by PyTorch re-seeds itself with for a pass of ``epoch``.

    ``worker_seed`` itself for epoch 0 (what a new ``DataLoader``'s worker draws with, and the
    run manifest's ``worker_seeds`` record); for any other epoch a hash of the two (NumPy's
    ``SeedSequence``), in ``[0, 2**64)``. Hashed rather than added: torch's generator and
    :func:`~inpaintssl.data.loading.seed_worker` keep only a seed's low 32 bits, and a sum would
    give worker ``w`` of one epoch the numbers of worker ``w + d`` of another for some epoch gap.

    Example:
        >>> pass_worker_seed(7, 0), pass_worker_seed(7, 1) == pass_worker_seed(7, 1) != pass_worker_seed(7, 2)
        (7, True)
    """
    if epoch == 0:
        return worker_seed
    entropy = [worker_seed % 2**64, epoch % 2**64]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


def workers_used(num_workers: int, *, items: int, batch_size: int) -> int:
    """The workers a loader starts for passes over ``items`` in batches of ``batch_size``.

    At most ``num_workers``, and at most one per batch: PyTorch gives worker ``w`` the batches
    ``w``, ``w + n``, ``w + 2n``, ... of a pass, so a worker past the last batch would get none.

    Example:
        Fine-tuning on 20 labelled slices in batches of 9 reads 3 batches a pass:

        >>> workers_used(8, items=20, batch_size=9), workers_used(2, items=20, batch_size=9)
        (3, 2)
    """
    return min(num_workers, -(-items // batch_size))


def unavailable_start_method(method: str | None, *, num_workers: int) -> list[str] | None:
    """The start methods this platform offers, when workers would start by ``method`` and it is not one.

    ``None`` when the loader can start its workers: no workers, the process's default
    (``method=None``), or a method this platform has (Windows has ``spawn`` alone).

    Example:
        >>> unavailable_start_method("spawn", num_workers=2) is None
        True
        >>> unavailable_start_method("threads", num_workers=0) is None  # no worker starts
        True
    """
    offered = multiprocessing.get_all_start_methods()
    return offered if num_workers > 0 and method not in (None, *offered) else None


class _PassTagged(Sampler[tuple[int, int, Any]]):
    """Gives each index of ``sampler`` as ``(pass, epoch, index)``; both set by the loader."""

    def __init__(self, sampler: Sampler[Any]) -> None:
        self.sampler = sampler
        self.data_pass = 0
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        data_pass, epoch = self.data_pass, self.epoch
        return ((data_pass, epoch, index) for index in self.sampler)


class _ReseededPerPass(Dataset[T]):
    """``dataset`` read by ``(pass, epoch, index)``: in a worker, a new pass first re-seeds the worker."""

    def __init__(self, dataset: Dataset[T]) -> None:
        self.dataset = dataset
        # Per process: a forked worker inherits the parent's value, which never re-seeds.
        self._seeded_for: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, tagged: tuple[int, int, Any]) -> T:
        data_pass, epoch, index = tagged
        if data_pass != self._seeded_for:
            self._seeded_for = data_pass
            info = get_worker_info()
            if info is not None:
                # PyTorch's own worker start, from the epoch's seed: random and torch (and NumPy,
                # which seed_worker then seeds again), then the loader's worker_init_fn.
                seed = pass_worker_seed(info.seed, epoch)
                random.seed(seed)
                torch.manual_seed(seed)
                seed_worker(info.id)
        return self.dataset[index]


class EpochLoader(Generic[T]):
    """Batches of ``dataset`` in ``sampler``'s order, from workers kept until :meth:`close`.

    Each ``iter(loader)`` is one pass over the data and gives the same batches as a new
    ``DataLoader(dataset, sampler=sampler, num_workers=num_workers, worker_init_fn=seed_worker,
    generator=<seeded with seed>)`` would. Its workers draw from the seeds that loader's would
    have, moved on by the pass's epoch (:func:`pass_worker_seed`): the epoch of a sampler that has
    one (``DistributedSampler``, set by the caller's ``set_epoch`` before the pass), else the one
    given to :meth:`set_epoch`, else 0. So each epoch draws its own random numbers, and an epoch
    read again (after a resume, or by another loader with the same seed) draws the same ones;
    epoch 0 draws exactly what the new ``DataLoader`` would. Without workers the items draw from
    the calling process's generators, as they would in a ``DataLoader``. Close the loader (or use
    it as a context manager) to stop its workers; an abandoned pass is fine, the next one starts
    from the first batch.

    Args:
        dataset: A map-style dataset.
        sampler: The indices of a pass, in order, and how many (``len``); kept and iterated again
            at every pass.
        batch_size: Items per batch (the last one may be short).
        seed: Seeds the workers (:func:`base_worker_seed`), as the run's seed seeds everything else.
        num_workers: Worker processes; 0 reads in the calling process. No more start than a pass
            has batches (:func:`workers_used`).
        pin_memory: Collate into page-locked memory (for copies to a CUDA device).
        multiprocessing_context: How workers start (``"fork"``, ``"forkserver"``, ``"spawn"``);
            ``None`` takes the process's default start method.

    Example:
        >>> from torch.utils.data import SequentialSampler
        >>> loader = EpochLoader(list(range(5)), sampler=SequentialSampler(range(5)), batch_size=2, seed=0)
        >>> [len(batch) for batch in loader], len(loader)
        ([2, 2, 1], 3)
        >>> loader.close()
    """

    def __init__(
        self,
        dataset: Dataset[T],
        *,
        sampler: Sampler[Any],
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        multiprocessing_context: str | None = None,
    ) -> None:
        self.sampler = sampler
        num_workers = workers_used(num_workers, items=len(sampler), batch_size=batch_size)  # type: ignore[arg-type]
        self.num_workers = num_workers
        self._tagged = _PassTagged(sampler)
        self._seed = seed
        self._epoch = 0
        self._generator = torch.Generator()
        self._loader: DataLoader[Any] = DataLoader(
            _ReseededPerPass(dataset),
            batch_size=batch_size,
            sampler=self._tagged,
            num_workers=num_workers,
            worker_init_fn=seed_worker,
            generator=self._generator,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
        )

    def __len__(self) -> int:
        """Batches per pass."""
        return len(self._loader)

    def set_epoch(self, epoch: int) -> None:
        """Make the next passes those of ``epoch``: their random numbers, and order if the sampler has epochs.

        Calling the sampler's own ``set_epoch`` does as much; this is for a sampler without one,
        whose passes otherwise all draw as epoch 0's.

        Example:
            >>> from torch.utils.data import SequentialSampler
            >>> data = [0.0, 1.0]
            >>> with EpochLoader(data, sampler=SequentialSampler(data), batch_size=2, seed=0) as loader:
            ...     loader.set_epoch(3)
            ...     [batch.tolist() for batch in loader]
            [[0.0, 1.0]]
        """
        set_sampler_epoch = getattr(self.sampler, "set_epoch", None)
        if callable(set_sampler_epoch):
            set_sampler_epoch(epoch)
        self._epoch = epoch

    def _pass_epoch(self) -> int:
        """The epoch of the pass about to start: the sampler's when it keeps one, else :meth:`set_epoch`'s."""
        epoch = getattr(self.sampler, "epoch", None)
        return epoch if isinstance(epoch, int) else self._epoch

    def __iter__(self) -> Iterator[Any]:
        """One pass; the first starts the workers. Not a generator, so a failed start raises here."""
        self._tagged.data_pass += 1
        self._tagged.epoch = self._pass_epoch()
        if getattr(self._loader, "_iterator", None) is None:
            # Workers start in this pass (the first, or the first after close): their seeds are
            # drawn from the generator, which starts from the seed as a new DataLoader's would.
            self._generator.manual_seed(self._seed)
        return iter(self._loader)

    def close(self) -> None:
        """Stop the workers (waiting for them to exit); the next pass would start new ones."""
        # DataLoader has no public way to stop persistent workers: its iterator stops them when
        # collected, which a traceback or a reference cycle can put off indefinitely.
        iterator = getattr(self._loader, "_iterator", None)
        self._loader._iterator = None
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()

    def __enter__(self) -> EpochLoader[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
