"""The optimizer's state through a checkpoint: moments and step counts round-trip, and the way it
steps (fused, foreach) follows the device it was built for, not the checkpoint's writer."""

from __future__ import annotations

import copy

import torch

from inpaintssl.training.state import optimizer_from_tensors, optimizer_to_tensors
from inpaintssl.training.step import adam


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    optimizer.zero_grad()
    model(x).square().mean().backward()
    optimizer.step()


def test_a_resumed_optimizer_steps_as_one_that_never_stopped() -> None:
    straight = _model()
    optimizer = adam(straight.parameters(), lr=1e-2, device=torch.device("cpu"))
    for seed in range(3):
        _step(straight, optimizer, seed)

    interrupted = _model()
    first = adam(interrupted.parameters(), lr=1e-2, device=torch.device("cpu"))
    for seed in range(2):
        _step(interrupted, first, seed)
    tensors, document = optimizer_to_tensors(first)
    resumed = copy.deepcopy(interrupted)
    second = adam(resumed.parameters(), lr=1e-2, device=torch.device("cpu"))
    optimizer_from_tensors(second, tensors, document)
    _step(resumed, second, 2)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_the_implementation_flags_follow_the_resuming_optimizer_not_the_checkpoint() -> None:
    # A run started on CUDA writes fused=True; resumed on the CPU it stepped with the fused kernel
    # there (and one started on the CPU resumed on a card without it).
    model = _model()
    writer = adam(model.parameters(), lr=1e-2, device=torch.device("cpu"))
    _step(model, writer, 0)
    tensors, document = optimizer_to_tensors(writer)
    for group in document["param_groups"]:
        group.update(fused=True, foreach=False)  # as a CUDA writer records them
    reader = adam(model.parameters(), lr=1e-2, device=torch.device("cpu"))
    optimizer_from_tensors(reader, tensors, document)
    assert [(g["fused"], g["foreach"]) for g in reader.param_groups] == [
        (reader.defaults["fused"], reader.defaults["foreach"])
    ]
    assert reader.defaults["fused"] is None
    # What it computes still comes from the checkpoint.
    assert reader.param_groups[0]["lr"] == document["param_groups"][0]["lr"]
