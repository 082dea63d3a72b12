"""Where a CPU training step goes: each 3x3 convolution of the U-Net, per pass and memory format.

The training-loop benchmark (``bench_training.py``) compares whole steps. This one splits the
U-Net's 3x3 convolutions (256x256 input, batch 9, widths 32..512) into the three passes a training
step runs, forward, gradient of the input and gradient of the weight, each timed through
``torch.ops.aten.convolution_backward`` (oneDNN on the CPU) in the default (NCHW) and the
``channels_last`` (NHWC) layout, and the NHWC weight gradient also by the library's blocked GEMMs
(:func:`inpaintssl.models.conv3x3_weight_gradient`, what channels_last training uses). It shows
which pass decides the speed on a given processor. The layers are the U-Net's eighteen 3x3
convolutions, so a column's total is one training step's share.

By default the process first applies the allocator setting of the library's CPU runs
(``run.reuse_host_memory``), so fresh output tensors do not page-fault; ``--no-reuse-host-memory``
times PyTorch's default.

Usage::

    python benchmarks/bench_conv_layers.py [--quick] [--out PATH] [--no-reuse-host-memory]

Each entry is the best of ``--repeats`` timings after one warm-up, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_corruption import per_second
from provenance import at_least, cpu_model, provenance, write_record

from inpaintssl.models import WSConv2d, conv3x3_weight_gradient
from inpaintssl.models.cpu_convolution import auto_weight_gradient_kernel
from inpaintssl.registry import BACKBONES
from inpaintssl.training.host_memory import keep_freed_host_memory


def unet_convolutions(
    size: tuple[int, int] = (256, 256), *, depth: int = 5, base_width: int = 32
) -> list[tuple[int, int, int, int]]:
    """``(C_in, C_out, H, W)`` of each 3x3 convolution of a U-Net, in the order it runs.

    Read off the network itself (one batch-1 forward pass with hooks), so the list cannot drift
    from the model the training benchmark trains.
    """
    net = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=depth, base_width=base_width, seed=0)
    found: list[tuple[int, int, int, int]] = []

    def record(conv: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(conv, WSConv2d)
        found.append((conv.in_channels, conv.out_channels, *inputs[0].shape[-2:]))

    for module in net.modules():
        if isinstance(module, WSConv2d) and module.kernel_size == (3, 3):
            module.register_forward_pre_hook(record)
    with torch.no_grad():
        net(torch.zeros(1, 1, *size))
    return found


def _best_ms(fn: Callable[[], object], repeats: int) -> float:
    calls_per_s = per_second(fn, items=1, min_time=0.0, min_calls=repeats, device=torch.device("cpu"))
    return 1000 / calls_per_s


def _passes(
    c_in: int, c_out: int, height: int, width: int, *, channels_last: bool, batch: int, repeats: int
) -> dict[str, float]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c_in, height, width, generator=generator).contiguous(memory_format=fmt)
    weight = torch.randn(c_out, c_in, 3, 3, generator=generator).contiguous(memory_format=fmt)
    grad = torch.randn(batch, c_out, height, width, generator=generator).contiguous(memory_format=fmt)

    def backward(mask: list[bool]) -> object:
        return torch.ops.aten.convolution_backward(
            grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask
        )

    times = {
        "forward_ms": _best_ms(lambda: torch.nn.functional.conv2d(x, weight, None, 1, 1), repeats),
        "grad_input_ms": _best_ms(lambda: backward([True, False, False]), repeats),
        "grad_weight_ms": _best_ms(lambda: backward([False, True, False]), repeats),
        # What oneDNN-only training runs: both gradients in one call.
        "grad_both_ms": _best_ms(lambda: backward([True, True, False]), repeats),
    }
    if channels_last:
        times["grad_weight_blocked_gemm_ms"] = _best_ms(lambda: conv3x3_weight_gradient(grad, x), repeats)
        times["auto_chooses"] = auto_weight_gradient_kernel(x, weight)  # type: ignore[assignment]
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time every layer in both layouts; print and return (and optionally write) the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 2 and one repeat (smoke run)")
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reuse-host-memory", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--base-width", type=int, default=32)
    parser.add_argument("--batch", type=at_least(1), default=9)
    args = parser.parse_args(argv)
    if args.reuse_host_memory:
        keep_freed_host_memory()
    batch, repeats = (2, 1) if args.quick else (args.batch, args.repeats)
    layers = []
    convolutions = unet_convolutions(tuple(args.size), depth=args.depth, base_width=args.base_width)
    for c_in, c_out, height, width in convolutions:
        entry: dict[str, Any] = {"c_in": c_in, "c_out": c_out, "height": height, "width": width}
        for name, channels_last in (("nchw", False), ("nhwc", True)):
            entry[name] = _passes(
                c_in, c_out, height, width, channels_last=channels_last, batch=batch, repeats=repeats
            )
        layers.append(entry)
        print(json.dumps(entry), flush=True)
    totals = {
        layout: {
            key: sum(entry[layout][key] for entry in layers)
            for key in layers[0][layout]
            if key != "auto_chooses"
        }
        for layout in ("nchw", "nhwc")
    }
    # What the default ("auto") pays: per layer, the time of the kernel it picks.
    totals["nhwc"]["grad_weight_auto_ms"] = sum(
        entry["nhwc"][
            "grad_weight_blocked_gemm_ms"
            if entry["nhwc"]["auto_chooses"] == "blocked_gemm"
            else "grad_weight_ms"
        ]
        for entry in layers
    )
    record: dict[str, Any] = {
        "benchmark": "conv_layers",
        **provenance(__file__, argv),
        "quick": args.quick,
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "image_size": list(args.size),
        "depth": args.depth,
        "base_width": args.base_width,
        "reuse_host_memory": args.reuse_host_memory,
        "layers": layers,
        "totals_ms": totals,
    }
    if args.out:
        write_record(args.out, record)
    print(json.dumps({"totals_ms": totals}, indent=2))
    return record


if __name__ == "__main__":
    main()
