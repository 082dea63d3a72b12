"""Comparisons of run folders' checkpoints, and a run stopped after its first checkpoint, shared by
the tests of resume, recipes and workers.

Imported by the tests (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

import inpaintssl as issl
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


def pretrain_stopped_after_the_first_epoch(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``issl.pretrain(config)`` and stop it by Ctrl-C once ``checkpoints/last`` is written."""
    import inpaintssl.training.loop as loop

    real_save = loop.save_checkpoint

    def stopped_after_the_first_epoch(folder: Path, *args: Any, **kwargs: Any) -> None:
        real_save(folder, *args, **kwargs)
        if Path(folder).name == "last":
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(loop, "save_checkpoint", stopped_after_the_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            issl.pretrain(config)


def flip_exponent_bits(weights: Path) -> None:
    """Damage every float32 of a safetensors file in place, its header intact (it still parses).

    Each value's byte 3 (little-endian) holds the sign and the top seven exponent bits; flipping its
    lowest bit (exponent bit 1) multiplies the value by 4 or 1/4: 1.0 (exponent 127) becomes 0.25.
    """
    raw = bytearray(weights.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    for offset in range(start, len(raw), 4):
        raw[offset + 3] ^= 0x01
    weights.write_bytes(bytes(raw))
