"""Profile a few U-Net training steps and print where the time goes, by operator.

The same step as ``bench_training.py``'s bare loop (256x256, batch 9, L2 loss, Adam; bf16
autocast on CUDA), run under :mod:`torch.profiler`. Use it to see why a layout or device is slow,
e.g. the copies that GroupNorm makes of ``channels_last`` activations on CUDA.

Usage::

    python benchmarks/profile_step.py [--device cpu|cuda] [--channels-last|--no-channels-last]
        [--model unet2d|monai] [--steps N] [--rows N]
"""

from __future__ import annotations

import argparse

import torch
from bench_training import monai_basicunet
from provenance import at_least
from torch.profiler import ProfilerActivity, profile

from inpaintssl.registry import BACKBONES


def _model(name: str) -> torch.nn.Module:
    if name == "monai":
        return monai_basicunet()
    return BACKBONES.build("unet2d", in_channels=1, out_channels=1, seed=0)


def main(argv: list[str] | None = None) -> str:
    """Profile ``--steps`` steps after five warm-up steps; print and return the operator table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--model", default="unet2d", choices=["unet2d", "monai"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=at_least(1), default=5)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = _model(args.model).to(device, memory_format=fmt)  # type: ignore[call-overload]
    images = torch.randn(9, 1, args.size, args.size, device=device).contiguous(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.99, 0.995))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            restored = model(images)
        ((restored.float() - images) ** 2).sum().backward()
        optimizer.step()

    for _ in range(5):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table: str = prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60)
    print(table)
    return table


if __name__ == "__main__":
    main()
