"""Comparisons of run folders' checkpoints, shared by the tests of resume, recipes and workers.

Imported by the tests (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from inpaintssl.checkpoint import load_checkpoint


def assert_same_checkpoints(
    run: Path, reference: Path, *, which: Sequence[str] = ("best", "last"), why: str = "differs"
) -> None:
    """Assert that ``run`` holds, bit for bit, the weights of ``reference``'s checkpoints ``which``."""
    for kind in which:
        ours, _ = load_checkpoint(run, which=kind)
        theirs, _ = load_checkpoint(reference, which=kind)
        assert ours.keys() == theirs.keys(), kind
        for name, tensor in theirs.items():
            assert torch.equal(ours[name], tensor), f"{kind}:{name} {why}"
