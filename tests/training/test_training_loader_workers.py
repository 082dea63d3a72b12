"""``training.loader_workers.batches``: a DataLoader interrupted while it starts leaves no worker."""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Iterator

import pytest
from torch.utils.data import DataLoader, Dataset, Sampler

from inpaintssl.training.loader_workers import batches


class _Numbers(Dataset[int]):
    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> int:
        return index


class _PressedWhileStarting(Sampler[int]):
    """Raises when the loader first asks for indices: after its workers have started, as a
    Ctrl-C does that lands in ``iter(loader)`` (in PyTorch 2.3's ``_try_put_index``)."""

    def __len__(self) -> int:
        return 8

    def __iter__(self) -> Iterator[int]:
        raise RuntimeError("planted: the stop button")


def _loader() -> DataLoader[int]:
    return DataLoader(_Numbers(8), sampler=_PressedWhileStarting(), num_workers=2, batch_size=2)


def test_an_error_while_the_loader_starts_leaves_no_worker_process() -> None:
    gc.collect()
    before = set(multiprocessing.active_children())
    gc.disable()  # as between two automatic collections: only batches() may collect the iterator
    try:
        with pytest.raises(RuntimeError, match="planted: the stop button") as caught:
            next(batches(_loader()))
        # While the error is still held (a caller's reference cycle, a notebook's last traceback).
        assert set(multiprocessing.active_children()) == before
        assert "planted" in str(caught.value)
    finally:
        gc.enable()


def test_without_it_the_workers_outlive_the_error_until_a_collection() -> None:
    # What batches() prevents, so that the test above cannot pass for another reason.
    gc.collect()
    before = set(multiprocessing.active_children())
    gc.disable()
    try:
        with pytest.raises(RuntimeError, match="planted: the stop button") as caught:
            iter(_loader())
        assert len(set(multiprocessing.active_children()) - before) == 2
        del caught
    finally:
        gc.enable()
        gc.collect()
    assert set(multiprocessing.active_children()) == before


def test_the_batches_are_the_loaders() -> None:
    loader = DataLoader(_Numbers(6), batch_size=4, num_workers=2)
    assert [b.tolist() for b in batches(loader)] == [b.tolist() for b in loader] == [[0, 1, 2, 3], [4, 5]]
