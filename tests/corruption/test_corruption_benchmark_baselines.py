"""The benchmark's baselines compute what the library computes, so its speed-ups compare like with like."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from inpaintssl.registry import PRETEXT_TASKS


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_corruption.py"
    spec = importlib.util.spec_from_file_location("bench_corruption", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_bridson_is_a_valid_poisson_disc_draw(bench: ModuleType) -> None:
    corners = bench.python_bridson((96, 128), 8, 48, np.random.default_rng(0))
    assert corners.shape == (48, 2)
    assert corners.min() >= 0 and (corners <= [88, 120]).all()
    assert pdist(corners.astype(float), "sqeuclidean").min() >= 2 * 8**2


def test_scipy_baseline_draws_the_requested_count_in_the_corner_domain(bench: ModuleType) -> None:
    # The benchmark's contender passes PoissonDisk(l_bounds=, u_bounds=) (SciPy 1.11) and rng= (1.15);
    # the library itself needs neither, and supports SciPy 1.10.
    pytest.importorskip("scipy", minversion="1.15", reason="the SciPy contender needs SciPy 1.15")
    points = bench.scipy_poisson((96, 128), 8, 20, np.random.default_rng(0))
    assert points.shape == (20, 2)
    assert points.min() >= 0 and (points <= [88, 120]).all()
    assert pdist(points).min() >= 8 * np.sqrt(2) - 1e-9


@pytest.mark.parametrize("name", ["context_restoration", "context_prediction"])
def test_python_loops_match_the_library(bench: ModuleType, name: str) -> None:
    task = PRETEXT_TASKS.build(name, patch_size=8, sampler="random", bank_size=2)
    images = torch.randn(3, 2, 48, 64)
    bank = task.bank(shape=(48, 64))
    choice = torch.tensor([0, 3, 6])
    expected = task.apply(images, bank=bank, choice=choice)
    looped = bench.LOOPS[name](images, [bank.corners[c] for c in choice.tolist()], 8)
    torch.testing.assert_close(looped, expected, rtol=0, atol=1e-6)
