"""Shared test settings: a bounded hypothesis profile, small torch thread pools, GPU markers."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# The contract suites of inpaintssl.testing (for plugin authors) import without pytest, so their
# CUDA checks (``test_cuda_matches_cpu``, ``test_cuda_autocast``) cannot carry the marker
# themselves; here they get it, so that ``-m gpu`` on a card runs them with the other GPU tests.
_CONTRACT_CUDA_CHECKS = ("test_cuda_matches_cpu", "test_cuda_autocast")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(check in item.name for check in _CONTRACT_CUDA_CHECKS):
            item.add_marker(pytest.mark.gpu)
