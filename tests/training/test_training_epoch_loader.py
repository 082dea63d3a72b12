"""``training.epoch_loader``: workers kept for a whole run, each pass drawing as a new DataLoader would.

The reference is PyTorch's own: a ``DataLoader`` built afresh for each pass (what the Trainer did
before), whose workers start from their seeds every time, and for an epoch other than 0 from
those seeds moved on by the epoch, by the rule the module documents (restated here).
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import os
import random
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler

from inpaintssl.checkpoint import CheckpointMeta
from inpaintssl.config import EarlyStoppingConfig, OptimConfig, RunConfig
from inpaintssl.data.loading import seed_worker
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.registry import BACKBONES, LOSSES
from inpaintssl.training.context import RunContext
from inpaintssl.training.epoch_loader import EpochLoader, pass_worker_seed
from inpaintssl.training.loader_workers import batches
from inpaintssl.training.loop import Phase, Trainer
from inpaintssl.training.objectives import SegmentationObjective
from inpaintssl.training.run_folder import build_manifest

SEED = 5


class _Draws(Dataset[dict[str, Any]]):
    """Each item draws from torch, NumPy and ``random`` (as an augmentation would) and names its process."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> dict[str, Any]:
        info = torch.utils.data.get_worker_info()
        return {
            "index": index,
            "torch": torch.rand(()),
            "numpy": float(np.random.rand()),
            "random": random.random(),
            "pid": os.getpid(),
            "worker_seed": -1 if info is None else info.seed,
        }


def _take(loader: Iterable[dict[str, Any]], count: int | None) -> list[dict[str, Any]]:
    # Both arms start each pass from the same state of this process's generators, which the
    # items draw from when there are no workers.
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    return list(islice(batches(loader), count))


def _seed_for_epoch(epoch: int, worker_id: int) -> None:
    """``worker_init_fn`` seeding as PyTorch does, from the worker's seed moved on by ``epoch``."""
    info = torch.utils.data.get_worker_info()
    assert info is not None
    # The documented rule, stated again: NumPy's SeedSequence of the worker's seed and the epoch.
    entropy = [info.seed, epoch]
    seed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
    random.seed(seed)
    torch.manual_seed(seed)
    seed_worker(worker_id)


def _fresh_loader(
    dataset: Dataset[Any], sampler: Sampler[Any], num_workers: int, *, epoch: int = 0
) -> DataLoader[Any]:
    generator = torch.Generator()
    generator.manual_seed(SEED)
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=3,
        num_workers=num_workers,
        # Epoch 0 is PyTorch's own seeding, untouched.
        worker_init_fn=seed_worker if epoch == 0 else functools.partial(_seed_for_epoch, epoch),
        generator=generator,
    )


def _draws(batch_list: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (b["index"].tolist(), b["torch"].tolist(), b["numpy"].tolist(), b["random"].tolist())
        for b in batch_list
    ]


def _pids(batch_list: list[dict[str, Any]]) -> set[int]:
    return {int(p) for b in batch_list for p in b["pid"]}


@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_every_pass_draws_what_a_new_dataloader_draws_and_the_workers_are_kept(num_workers: int) -> None:
    dataset = _Draws()
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=SEED)
    kept_pids: set[int] = set()
    fresh_pids: set[int] = set()
    fresh_readers = 0
    # The second pass is abandoned after one batch, as an epoch of fewer steps than a pass is.
    with EpochLoader(dataset, sampler=sampler, batch_size=3, seed=SEED, num_workers=num_workers) as loader:
        for data_pass, count in enumerate([None, 1, None, None]):
            sampler.set_epoch(data_pass)
            kept = _take(loader, count)
            fresh = _take(_fresh_loader(dataset, sampler, num_workers, epoch=data_pass), count)
            assert _draws(kept) == _draws(fresh), f"pass {data_pass}"
            kept_pids |= _pids(kept)
            fresh_pids |= _pids(fresh)
            fresh_readers += min(len(fresh), num_workers)  # batches go round-robin from worker 0
    if num_workers == 0:
        assert kept_pids == fresh_pids == {os.getpid()}
    else:
        assert len(kept_pids) == num_workers
        assert len(fresh_pids) == fresh_readers
    # The items do draw (the comparison is not between constants), and each differently.
    torch_draws = [value for batch in kept for value in batch["torch"].tolist()]
    assert len(set(torch_draws)) == len(dataset)


def test_without_reseeding_kept_workers_would_draw_other_numbers() -> None:
    # What the per-pass re-seeding is for: PyTorch's own persistent workers go on drawing.
    dataset = _Draws()
    sampler = SequentialSampler(dataset)
    generator = torch.Generator()
    generator.manual_seed(SEED)
    persistent = DataLoader(
        dataset, sampler=sampler, batch_size=3, num_workers=2, worker_init_fn=seed_worker,
        generator=generator, persistent_workers=True,
    )  # fmt: skip
    first, second = _take(persistent, None), _take(persistent, None)
    assert _draws(first) == _draws(_take(_fresh_loader(dataset, sampler, 2), None))
    assert _draws(second) != _draws(first)
    with EpochLoader(dataset, sampler=sampler, batch_size=3, seed=SEED, num_workers=2) as loader:
        assert _draws(_take(loader, None)) == _draws(_take(loader, None)) == _draws(first)


def _epoch_draws(loader: EpochLoader[dict[str, Any]], epochs: Iterable[int]) -> list[list[tuple[Any, ...]]]:
    """Each epoch's draws, the epoch set on the sampler as the Trainer sets it."""
    assert isinstance(loader.sampler, DistributedSampler)
    draws = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        draws.append(_draws(_take(loader, None)))
    return draws


@pytest.mark.parametrize("by", ["sampler", "loader"])
def test_a_dataset_that_draws_draws_other_numbers_in_each_epoch_with_workers(by: str) -> None:
    # As it does without workers (from this process's generators) and in a DataLoader whose
    # generator goes on from epoch to epoch: an augmentation that drew the same numbers in every
    # epoch would show the network one fixed transform of each slice. The Trainer sets the epoch
    # on its DistributedSampler; a sampler without one takes it from the loader.
    dataset = _Draws()
    sampler: Sampler[int] = (
        DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=False, seed=SEED)
        if by == "sampler"
        else SequentialSampler(dataset)
    )
    with EpochLoader(
        dataset, sampler=sampler, batch_size=3, seed=SEED, num_workers=2, multiprocessing_context="fork"
    ) as loader:
        draws = []
        for epoch in range(3):
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            else:
                loader.set_epoch(epoch)
            draws.append(_take(loader, None))
    assert [b["index"].tolist() for b in draws[0]] == [b["index"].tolist() for b in draws[2]]
    for generator in ("torch", "numpy", "random"):
        per_epoch = [tuple(v for b in batch_list for v in b[generator].tolist()) for batch_list in draws]
        assert len(set(per_epoch)) == 3, f"{generator}: the same numbers in two epochs"
        # Nor does one epoch's worker repeat another's numbers, nor another worker's.
        assert len({v for numbers in per_epoch for v in numbers}) == 3 * len(dataset), generator


@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_an_epoch_read_again_draws_what_it_drew_whichever_way_the_workers_start(method: str) -> None:
    # A resumed run's loader is a new one with the run's seed that starts at the epoch it resumes:
    # it must draw what the uninterrupted run's drew there, whether its workers are forked or
    # started afresh (the dataset and the seeding pickled).
    dataset = _Draws()
    # In order (the order is the sampler's business): only the random numbers differ by epoch.
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=False, seed=SEED)
    options: dict[str, Any] = {"batch_size": 3, "num_workers": 2, "multiprocessing_context": method}
    with EpochLoader(dataset, sampler=sampler, seed=SEED, **options) as loader:
        uninterrupted = _epoch_draws(loader, range(4))
    with EpochLoader(dataset, sampler=sampler, seed=SEED, **options) as loader:
        resumed = _epoch_draws(loader, [2, 3])
    assert resumed == uninterrupted[2:]
    assert len({tuple(map(repr, epoch)) for epoch in uninterrupted}) == 4, "an epoch repeated another's"
    # Epoch 0 draws what a new DataLoader with the run's seed draws (what every epoch drew before).
    sampler.set_epoch(0)
    assert uninterrupted[0] == _draws(_take(_fresh_loader(dataset, sampler, 2), None))


def test_the_epoch_seed_is_the_workers_own_at_epoch_0_and_differs_in_its_low_bits_elsewhere() -> None:
    # torch's generator and seed_worker keep a seed's low 32 bits: two workers' seeds must differ
    # there, over the workers of a loader and the epochs of a run.
    base = 2**40 + 17
    assert pass_worker_seed(base, 0) == base
    keys = [(w, e) for w in range(8) for e in [0, 1, 2, 1009, 2 * 1009 + 1, 100_003 * 1009]]
    low = {pass_worker_seed(base + w, e) % 2**32 for w, e in keys}
    assert len(low) == len(keys)
    assert all(0 <= pass_worker_seed(base, e) < 2**64 for e in (-1, 1, 2**70))


# More workers than this machine's cores, on purpose: PyTorch's advice against it is not the point.
_MANY_WORKERS = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@_MANY_WORKERS
@pytest.mark.parametrize("num_workers", [2, 4, 6])
def test_a_loader_starts_no_worker_that_a_pass_would_leave_without_a_batch(num_workers: int) -> None:
    dataset = _Draws()
    sampler = SequentialSampler(dataset)
    before = set(multiprocessing.active_children())
    with EpochLoader(dataset, sampler=sampler, batch_size=3, seed=SEED, num_workers=num_workers) as loader:
        kept = _take(loader, None)
        started = set(multiprocessing.active_children()) - before
    assert len(kept) == 4  # 10 items in batches of 3
    assert len(started) == len(_pids(kept)) == min(num_workers, len(kept)) == loader.num_workers
    # The same batches and random numbers as a DataLoader with every worker asked for.
    assert _draws(kept) == _draws(_take(_fresh_loader(dataset, sampler, num_workers), None))


def test_the_workers_have_the_seeds_the_run_manifest_records() -> None:
    dataset = _Draws()
    sampler = SequentialSampler(dataset)
    with EpochLoader(dataset, sampler=sampler, batch_size=1, seed=SEED, num_workers=2) as loader:
        seen = {int(b["worker_seed"]) for b in loader}
    recorded = build_manifest(seed=SEED, data_files=[], num_workers=2)["worker_seeds"]
    assert seen == set(recorded)
    # PyTorch's documented rule: worker w gets base_seed + w, base_seed drawn from the generator.
    generator = torch.Generator()
    generator.manual_seed(SEED)
    base = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
    assert recorded == [base, base + 1]
    assert build_manifest(seed=SEED, data_files=[], num_workers=0)["worker_seeds"] == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_close_stops_the_workers_and_a_later_pass_starts_new_ones() -> None:
    dataset = _Draws()
    loader = EpochLoader(dataset, sampler=SequentialSampler(dataset), batch_size=5, seed=SEED, num_workers=2)
    before = _take(loader, None)
    first = _pids(before)
    assert len(first) == 2 and all(_alive(pid) for pid in first)
    loader.close()
    assert not any(_alive(pid) for pid in first)
    after = _take(loader, None)
    again = _pids(after)
    assert len(again) == 2 and again.isdisjoint(first)
    loader.close()
    assert not any(_alive(pid) for pid in again)
    # The new workers have the old ones' seeds and draw the same numbers.
    assert [b["worker_seed"].tolist() for b in after] == [b["worker_seed"].tolist() for b in before]
    assert _draws(after) == _draws(before)


class _PressedWhileStarting(Sampler[int]):
    def __len__(self) -> int:
        return 8

    def __iter__(self) -> Iterator[int]:
        raise RuntimeError("planted: the stop button")


def test_an_error_while_the_workers_start_leaves_none_behind() -> None:
    gc.collect()
    before = set(multiprocessing.active_children())
    gc.disable()  # as between two automatic collections: only batches() may collect the iterator
    try:
        loader = EpochLoader(
            _Draws(), sampler=_PressedWhileStarting(), batch_size=2, seed=SEED, num_workers=2
        )
        with pytest.raises(RuntimeError, match="planted: the stop button"):
            next(batches(loader))
        assert set(multiprocessing.active_children()) == before
    finally:
        gc.enable()


class _NamesItsProcess(Dataset[dict[str, Any]]):
    """Synthetic slices; each read appends the reading process's id to ``log``."""

    def __init__(self, base: Dataset[dict[str, Any]], log: Path) -> None:
        self.base = base
        self.log = log

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        with self.log.open("a") as out:
            out.write(f"{os.getpid()}\n")
        return dict(self.base[index])


def _trainer(tmp_path: Path, *, num_workers: int, max_epochs: int, epoch_hooks: Any = ()) -> Trainer:
    log = tmp_path / "readers.txt"
    run = RunConfig(output_dir=tmp_path / "run", device="cpu", seed=0, quiet=True)
    return Trainer(
        model=BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0),
        objective=SegmentationObjective(loss=LOSSES.build("dice")),
        train_set=_NamesItsProcess(SyntheticShapes(split="train", num_images=8, size=(16, 16)), log),
        val_set=_NamesItsProcess(SyntheticShapes(split="val", num_images=8, num_val=4, size=(16, 16)), log),
        phases=[Phase(name="finetune", lr=1e-2)],
        optim=OptimConfig(batch_size=2, max_epochs=max_epochs, steps_per_epoch=6),
        stopping=EarlyStoppingConfig(min_delta=0.0, patience=50),
        meta=CheckpointMeta(kind="finetune", backbone="unet2d", in_channels=1, out_channels=2),
        context=RunContext.local(run),
        num_workers=num_workers,
        epoch_hooks=epoch_hooks,
    )


def _readers(tmp_path: Path) -> set[int]:
    return {int(line) for line in (tmp_path / "readers.txt").read_text().split()}


@_MANY_WORKERS
@pytest.mark.parametrize(("num_workers", "expected"), [(2, 2 + 2), (4, 4 + 2)])
def test_a_run_starts_its_workers_once_and_stops_them_when_it_ends(
    tmp_path: Path, num_workers: int, expected: int
) -> None:
    # Three epochs of two passes over the 8 slices each (6 steps of 2), each validated: with 2
    # workers a loader per pass started 2 x (3 x 2 + 3) = 18. A pass reads 4 training batches and
    # 2 validation ones, so at most 4 and 2 workers get one.
    before = set(multiprocessing.active_children())
    alive: list[int] = []

    def count(model: torch.nn.Module, *, epoch: int, tensorboard: object) -> None:
        alive.append(len(set(multiprocessing.active_children()) - before))

    outcome = _trainer(tmp_path, num_workers=num_workers, max_epochs=3, epoch_hooks=[count]).fit()
    assert outcome.epochs_run == 3
    readers = _readers(tmp_path)
    assert os.getpid() not in readers
    assert len(readers) == expected, "the training and validation workers of the whole run"
    assert alive == [expected] * 3, "no worker started that reads nothing"
    assert not any(_alive(pid) for pid in readers)


def test_validating_outside_a_run_leaves_no_worker(tmp_path: Path) -> None:
    _trainer(tmp_path, num_workers=2, max_epochs=1).validate()
    readers = _readers(tmp_path)
    assert len(readers) == 2
    assert not any(_alive(pid) for pid in readers)
