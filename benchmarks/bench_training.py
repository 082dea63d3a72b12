"""Training-loop throughput: the library's pretraining loop vs. a bare PyTorch loop (and MONAI).

All three train the same 5-level U-Net (or MONAI's BasicUNet, its closest peer) on the same
in-memory 256x256 batches of 9 with context-restoration corruption on the device, L2 loss and
the paper's Adam; the library and bare loops use the library's own layout default
(``run.channels_last: auto``: channels_last on the CPU, contiguous on CUDA) unless
``--channels-last`` or ``--no-channels-last`` says otherwise, MONAI runs in its default layout,
and on CUDA all three run under bf16 autocast. The record names the layout each contender used. The
library's number is its own epoch timer (``train_seconds`` in ``metrics.csv``), so it includes
the DataLoader, device moves, corruption keys, finiteness checks and progress bookkeeping that a
real run pays; validation and checkpoint writing are excluded.

Each contender runs in a fresh process (the allocator setting below is process-wide), each as
its users would run it: the library with its defaults (on the CPU, ``run.cpu_weight_gradient:
auto`` picks per 3x3 convolution between the library's blocked GEMMs and oneDNN for the weight
gradient; the record's ``weight_gradient`` says what it picked), the bare loop and MONAI with
PyTorch's defaults (the bare loop's U-Net brings the same ``auto`` weight gradient with it). Three
more CPU contenders say where the library's lead comes from and what the opt-in
``run.reuse_host_memory`` adds: the library and MONAI each with the reused heap, and the library
with oneDNN's weight gradient everywhere.

Threads: each contender runs with torch's thread count (``--threads``, default torch's own); the
record gives the count each contender ran with (``threads_per_contender``, read at its start and
at its end).

Usage::

    python benchmarks/bench_training.py [--quick] [--out PATH] [--device cpu|cuda] [--steps N]
        [--channels-last|--no-channels-last] [--threads N]

Targets (issue #5): library >= 0.95x bare loop; library >= 1.5x MONAI BasicUNet when installed.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from provenance import at_least, emit, provenance

from inpaintssl.config import PretrainConfig
from inpaintssl.data.base import SliceDataset
from inpaintssl.losses import l2_loss
from inpaintssl.registry import BACKBONES, DATASETS, PRETEXT_TASKS
from inpaintssl.training.device import use_channels_last
from inpaintssl.training.host_memory import keep_freed_host_memory
from inpaintssl.training.pretraining import run_pretraining


class InMemorySlices(SliceDataset):
    """Pre-generated random slices, so data loading costs the same in every contender."""

    def __init__(
        self, *, split: str = "train", labelled: bool = False, count: int = 36, size: int = 256
    ) -> None:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        self.images = torch.randn(count, 1, size, size, generator=generator)
        self.volume_ids = [f"{split}{i}" for i in range(count)]
        self.in_channels = 1
        self.class_names = ()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "image": self.images[index],
            "volume_id": self.volume_ids[index],
            "slice_index": 0,
            "spacing": torch.ones(3, dtype=torch.float64),
        }


def _timed_loop(
    model: torch.nn.Module,
    *,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    device: str,
    channels_last: bool,
) -> float:
    """Images/s of a hand-written corruption + forward + backward + Adam loop."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)  # type: ignore[call-overload]
    task = PRETEXT_TASKS.build("context_restoration", patch_size=32, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.99, 0.995), eps=1e-8)
    data = InMemorySlices(count=batch * 4, size=size).images.to(device)
    model.train()

    def step(i: int) -> None:
        clean = data[(i % 4) * batch : (i % 4 + 1) * batch].contiguous(memory_format=fmt)
        corrupted = task.corrupt_fixed(clean, key=i)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            restored = model(corrupted)
        loss = l2_loss(restored.float(), clean)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    _sync(device)
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _bare_loop(
    *, size: int, batch: int, steps: int, warmup: int, device: str = "cpu", channels_last: bool = True
) -> float:
    model = BACKBONES.build("unet2d", in_channels=1, out_channels=1, seed=0)
    return _timed_loop(
        model, size=size, batch=batch, steps=steps, warmup=warmup, device=device, channels_last=channels_last
    )


def monai_basicunet() -> torch.nn.Module:
    """MONAI's BasicUNet with this U-Net's widths (32..512), the peer every comparison uses.

    Raises:
        ImportError: MONAI is not installed.
    """
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=(32, 64, 128, 256, 512, 32))


def _monai_loop(*, size: int, batch: int, steps: int, warmup: int, device: str = "cpu") -> float | None:
    """MONAI's BasicUNet, trained eagerly in its default layout (how its users run it)."""
    try:
        model = monai_basicunet()
    except ImportError:
        return None
    return _timed_loop(
        model, size=size, batch=batch, steps=steps, warmup=warmup, device=device, channels_last=False
    )


def _library_loop(
    *,
    size: int,
    batch: int,
    steps: int,
    device: str = "cpu",
    channels_last: bool = True,
    cpu_weight_gradient: str | None = None,
    reuse_host_memory: bool = False,
) -> float:
    """Images/s of the library's pretraining loop; ``None`` settings keep the library's default."""
    name = "bench_in_memory"
    if name not in DATASETS.names():
        DATASETS.register(name)(InMemorySlices)
    with tempfile.TemporaryDirectory() as tmp:
        config = PretrainConfig.model_validate(
            {
                "data": {
                    "dataset": name,
                    "params": {"count": batch * steps, "size": size},
                    "val_max_images": 1,
                },
                "pretext": {"task": "context_restoration", "patch_size": 32, "bank_size": 100},
                "optim": {"batch_size": batch, "max_epochs": 2, "steps_per_epoch": steps},
                "early_stopping": {"min_delta": 0.0, "patience": 10},
                "run": {
                    "output_dir": str(Path(tmp) / "run"),
                    "quiet": True,
                    "device": device,
                    "channels_last": channels_last,
                    "reuse_host_memory": reuse_host_memory,
                    **({} if cpu_weight_gradient is None else {"cpu_weight_gradient": cpu_weight_gradient}),
                },
            }
        )
        result = run_pretraining(config)
    # Epoch 0 warms up allocators and oneDNN kernels; epoch 1 is measured.
    seconds = float(result.history[-1]["train_seconds"])
    return steps * batch / seconds


# Each contender runs in a fresh process: the allocator setting is process-wide, and a contender
# timed after another would inherit its heap. The last three (CPU only) say where the library's
# lead comes from and what the opt-in reused heap adds.
CONTENDERS = (
    "bare_loop",
    "library",
    "monai_basicunet",
    "monai_basicunet_reused_host_memory",
    "library_reused_host_memory",
    "library_onednn_weight_gradient",
)
_CPU_ONLY = CONTENDERS[3:]


def _run_contender(
    name: str, *, size: int, batch: int, steps: int, warmup: int, device: str, channels_last: bool
) -> float | None:
    """Images/s of one contender, measured in this process."""
    layout = {"device": device, "channels_last": channels_last}
    if name == "bare_loop":
        return _bare_loop(size=size, batch=batch, steps=steps, warmup=warmup, **layout)
    if name == "library":
        return _library_loop(size=size, batch=batch, steps=steps, **layout)
    if name == "library_onednn_weight_gradient":
        return _library_loop(size=size, batch=batch, steps=steps, cpu_weight_gradient="onednn", **layout)
    if name == "library_reused_host_memory":
        return _library_loop(size=size, batch=batch, steps=steps, reuse_host_memory=True, **layout)
    if name == "monai_basicunet":
        return _monai_loop(size=size, batch=batch, steps=steps, warmup=warmup, device=device)
    if name == "monai_basicunet_reused_host_memory":
        keep_freed_host_memory()
        return _monai_loop(size=size, batch=batch, steps=steps, warmup=warmup, device=device)
    raise ValueError(f"--contender {name!r} is unknown; expected one of {', '.join(CONTENDERS)}")


def _in_fresh_process(name: str, argv: list[str]) -> dict[str, Any]:
    """The contender's line of JSON: ``images_per_s`` and ``torch_threads`` (at its start and end)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv, "--contender", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"contender {name} failed:\n{done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else numerator / denominator


def resolved_weight_gradient(*, device: str, channels_last: bool, size: int, batch: int) -> dict[str, Any]:
    """What ``run.cpu_weight_gradient`` resolves to for this run's U-Net, layer by layer.

    The library's own kernel applies only to channels_last CPU training; ``auto`` picks it per 3x3
    convolution from the processor and the layer's shape
    (:func:`inpaintssl.models.cpu_convolution.auto_weight_gradient_kernel`).
    """
    from bench_conv_layers import unet_convolutions

    from inpaintssl.models.cpu_convolution import auto_weight_gradient_kernel

    found: dict[str, Any] = {"setting": "auto", "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device != "cpu":
        found["kernels"] = "not applicable: the setting is for CPU training only"
        return found
    if not channels_last:
        found["kernels"] = "onednn everywhere: the library's kernel applies to channels_last only"
        return found
    per_layer = []
    for c_in, c_out, height, width in unet_convolutions((size, size)):
        x = torch.empty(batch, c_in, height, width, device="meta")
        weight = torch.empty(c_out, c_in, 3, 3, device="meta")
        per_layer.append(f"{c_in}->{c_out}@{height}: {auto_weight_gradient_kernel(x, weight)}")
    kinds = [entry.rsplit(": ", 1)[1] for entry in per_layer]
    found["kernels"] = {kind: kinds.count(kind) for kind in sorted(set(kinds))}
    found["per_layer"] = per_layer
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison and return (and optionally write) the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="128x128 and fewer steps (smoke run)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=at_least(1), help="timed steps (default 10; 3 with --quick)")
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="memory format of the library and bare loops (default: the library's run.channels_last "
        "'auto', channels_last on the CPU and contiguous on CUDA; MONAI always runs in its default layout)",
    )
    parser.add_argument(
        "--threads",
        type=at_least(1),
        help="torch CPU threads of every contender (default: torch's own)",
    )
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size, steps, warmup = (128, 3, 1) if args.quick else (256, 10, 2)
    if args.steps is not None:
        steps = args.steps
    batch = 9
    channels_last = use_channels_last(
        torch.device(args.device), "auto" if args.channels_last is None else args.channels_last
    )
    torch.manual_seed(0)
    if args.contender is not None:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        threads_at_start = torch.get_num_threads()
        speed = _run_contender(
            args.contender,
            size=size,
            batch=batch,
            steps=steps,
            warmup=warmup,
            device=args.device,
            channels_last=channels_last,
        )
        line = {
            "contender": args.contender,
            "images_per_s": speed,
            "torch_threads": {"start": threads_at_start, "end": torch.get_num_threads()},
        }
        print(json.dumps(line))
        return line
    forwarded = [
        *(["--quick"] if args.quick else []),
        "--device",
        args.device,
        "--steps",
        str(steps),
        "--channels-last" if channels_last else "--no-channels-last",
        *(["--threads", str(args.threads)] if args.threads is not None else []),
    ]
    names = [name for name in CONTENDERS if args.device == "cpu" or name not in _CPU_ONLY]
    lines = {name: _in_fresh_process(name, forwarded) for name in names}
    speeds: dict[str, float | None] = {name: line["images_per_s"] for name, line in lines.items()}
    threads = {name: line.get("torch_threads") for name, line in lines.items()}
    counts = {value for entry in threads.values() if entry for value in entry.values()}
    library, bare, monai = speeds["library"], speeds["bare_loop"], speeds["monai_basicunet"]
    layout = "channels_last" if channels_last else "contiguous"
    record: dict[str, Any] = {
        "benchmark": "training_loop",
        **provenance(__file__, argv),
        "quick": args.quick,
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "device": "cpu" if args.device == "cpu" else torch.cuda.get_device_name(0),
        # One number when every contender ran with one thread count throughout, else null.
        "threads": counts.pop() if len(counts) == 1 else None,
        "threads_requested": args.threads,
        "threads_per_contender": threads,
        "image_size": size,
        "batch_size": batch,
        "steps": steps,
        "channels_last": channels_last,
        "channels_last_setting": "auto" if args.channels_last is None else args.channels_last,
        "layout": {
            "library": layout,
            "bare_loop": layout,
            "monai_basicunet": "contiguous (MONAI's default)",
        },
        "weight_gradient": {
            "library": resolved_weight_gradient(
                device=args.device, channels_last=channels_last, size=size, batch=batch
            ),
            **({"library_onednn_weight_gradient": "onednn, every layer"} if args.device == "cpu" else {}),
        },
        "images_per_s": speeds,
        "ratios": {
            "library_vs_bare": _ratio(library, bare),
            "library_vs_monai": _ratio(library, monai),
        },
    }
    if args.device == "cpu":
        reused, monai_reused = (
            speeds["library_reused_host_memory"],
            speeds["monai_basicunet_reused_host_memory"],
        )
        record["ratios"].update(
            {
                "library_reused_vs_monai_reused_host_memory": _ratio(reused, monai_reused),
                "library_reused_host_memory_vs_monai": _ratio(reused, monai),
                # The library's default (auto) against oneDNN everywhere; where auto picked the blocked
                # GEMMs in every layer this is the blocked-GEMM-vs-oneDNN ratio of earlier records.
                "default_vs_onednn_weight_gradient": _ratio(
                    library, speeds["library_onednn_weight_gradient"]
                ),
                "reused_host_memory_vs_system_allocator": _ratio(reused, library),
            }
        )
        kernels = record["weight_gradient"]["library"].get("kernels")
        if isinstance(kernels, dict) and set(kernels) == {"blocked_gemm"}:
            record["ratios"]["blocked_gemm_vs_onednn_weight_gradient"] = record["ratios"][
                "default_vs_onednn_weight_gradient"
            ]
    lib_vs_bare, lib_vs_monai = record["ratios"]["library_vs_bare"], record["ratios"]["library_vs_monai"]
    record["targets"] = {
        "library_vs_bare>=0.95": None if lib_vs_bare is None else lib_vs_bare >= 0.95,
        "library_vs_monai>=1.5": None if lib_vs_monai is None else lib_vs_monai >= 1.5,
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
