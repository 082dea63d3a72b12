"""GPU training throughput and model FLOPs utilisation: library step vs. MONAI vs. a bare loop.

Three arms train on the same device-resident batches (random ``(batch, 1, size, size)`` images,
four batches cycled) in one process, one after the other, each timed with CUDA events between
``torch.cuda.synchronize()`` calls (``time.perf_counter`` on the CPU):

* **library**: the paper's U-Net (``unet2d``, depth 5, base width 32, built through
  ``build_backbone``) trained by the library's own step, :class:`inpaintssl.training.step.TrainStep`,
  the object the training loop calls for every batch: ``InpaintingObjective`` (the pretext task's
  keyed corruption on the device, then the L2 loss of eq. A1) under autocast, the gradient scaler
  (active for fp16 only), the network compiled as ``run.compile`` would (``--compile``), and the
  paper's Adam as the loop builds it (:func:`inpaintssl.training.step.adam`: fused on CUDA);
  ``--norm-precision autocast`` builds it with ``model.params.norm_precision: autocast`` (GroupNorm
  in bf16 under autocast, :class:`inpaintssl.models.AutocastGroupNorm`), for the bare arm too;
* **monai**: MONAI's ``BasicUNet`` (features 32..512) in exactly the same step, compiled alike;
* **bare**: the library's network, plain PyTorch: forward on a batch corrupted once before the
  timing, ``F.mse_loss``, backward, ``torch.optim.Adam`` (the paper's hyperparameters, PyTorch's
  default implementation). Never compiled, no per-step corruption: the eager floor.

FLOPs per training image are counted with ``torch.utils.flop_counter.FlopCounterMode`` over one
forward + backward at batch 1 for each network (convolutions and matrix products; the corruption,
loss and optimiser are not counted). MFU = FLOPs per image x images/s / peak. The peak is
``--peak-tflops`` when given, else the NVIDIA datasheet's dense BF16 tensor-core figure for the
card (table below, matched on ``torch.cuda.get_device_name()``); on the CPU, or for a card not in
the table, it is unknown and MFU is null. ``peak_source`` in the record names where it came from.

Usage::

    python benchmarks/bench_gpu_throughput.py --device cuda --size 512 --batch 16 --dtype bf16
        [--steps N] [--warmup N] [--quick] [--channels-last|--no-channels-last]
        [--compile {off,default,reduce-overhead,max-autotune}] [--cudnn-benchmark]
        [--norm-precision {float32,autocast}]
        [--peak-tflops T] [--threads N] [--output PATH]

The record is written after every arm (``"complete": false`` and ``arms_pending`` until the last
one is done), so a run stopped by ``timeout`` keeps the arms it finished; SIGTERM writes it once
more, with ``state`` naming the arm it stopped.

Targets (issue 18): library >= 1.5x MONAI images/s; library MFU >= 25 %.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import torch
import torch.nn.functional as F
from bench_training import monai_basicunet
from provenance import at_least, provenance, write_record
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from inpaintssl.config import CompileMode, PretextConfig
from inpaintssl.training.components import build_backbone, build_pretext_task
from inpaintssl.training.device import autocast_context, use_channels_last
from inpaintssl.training.objectives import InpaintingObjective
from inpaintssl.training.step import TrainStep, adam

HERE = Path(__file__).resolve().parent

# NVIDIA datasheet, dense BF16 tensor core, no sparsity, in TFLOP/s (the datasheets print the
# sparse figure, twice this, first). Matched in order on torch.cuda.get_device_name(); the
# lower-clocked PCIe/NVL parts of Hopper are excluded rather than given the SXM figure.
PEAK_SOURCE = "NVIDIA datasheet, dense BF16 tensor core, no sparsity"
PEAK_BF16_DENSE_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4),  # H200 SXM: the same Hopper SXM tensor cores as H100 SXM
    ("H100", 989.4),  # H100 SXM
    ("A100", 312.0),
    ("L40S", 362.05),
)
_EXCLUDED_VARIANTS = ("PCIE", "NVL")  # H100 PCIe, H100 NVL, H200 NVL: lower peaks, not in the table

DEPTH, BASE_WIDTH = 5, 32
ADAM_LR, ADAM_BETAS, ADAM_EPS = 1e-3, (0.99, 0.995), 1e-8  # the paper's recipe
ADAM = {"lr": ADAM_LR, "betas": ADAM_BETAS, "eps": ADAM_EPS}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
ARMS = ("library", "monai", "bare")
DISTINCT_BATCHES = 4


def datasheet_peak(device_name: str) -> tuple[float | None, str | None]:
    """The table's dense BF16 peak (TFLOP/s) for a CUDA device name, and the row it matched.

    Example:
        >>> datasheet_peak("NVIDIA H200")
        (989.4, 'H200')
        >>> datasheet_peak("NVIDIA H100 PCIe")
        (None, None)
    """
    upper = device_name.upper()
    if any(variant in upper for variant in _EXCLUDED_VARIANTS) and ("H100" in upper or "H200" in upper):
        return None, None
    for key, tflops in PEAK_BF16_DENSE_TFLOPS:
        if key in upper:
            return tflops, key
    return None, None


def library_unet(*, norm_precision: str = "float32") -> nn.Module:
    """The paper's U-Net, built the way a pretraining run builds it (``model.params``)."""
    params = {"depth": DEPTH, "base_width": BASE_WIDTH, "norm_precision": norm_precision}
    return build_backbone("unet2d", params, in_channels=1, out_channels=1, seed=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_image(model: nn.Module, *, size: int, device: torch.device) -> dict[str, int]:
    """FLOPs of one forward and one backward at batch 1 (``FlopCounterMode``, fp32, eager model)."""
    x = torch.randn(1, 1, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
    forward = int(counter.get_total_flops())
    with counter:  # FlopCounterMode resets its counts on entry
        out.float().square().mean().backward()
    backward = int(counter.get_total_flops())
    model.zero_grad(set_to_none=True)
    return {"forward": forward, "backward": backward, "total": forward + backward}


def _make_step(
    arm: str,
    model: nn.Module,
    *,
    objective: InpaintingObjective,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    batch: int,
    compile: CompileMode,
) -> Callable[[torch.Tensor, torch.Tensor, int], None]:
    if arm != "bare":
        step = TrainStep(model, objective, device=device, amp_dtype=amp_dtype, compile=compile)
        library_optimizer = adam(
            model.parameters(), lr=ADAM_LR, device=device, betas=ADAM_BETAS, eps=ADAM_EPS
        )

        def library_step(clean: torch.Tensor, corrupted: torch.Tensor, i: int) -> None:
            # The loop's step, minus the DataLoader, the learning-rate schedule and the finiteness
            # check every 50 steps; keys stay on the host as in the loop.
            step(library_optimizer, {"image": clean}, keys=torch.arange(i * batch, (i + 1) * batch))

        return library_step
    optimizer = torch.optim.Adam(model.parameters(), **ADAM)  # type: ignore[arg-type]
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    def bare_step(clean: torch.Tensor, corrupted: torch.Tensor, i: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, amp_dtype):
            restored = model(corrupted)
        loss = F.mse_loss(restored.float(), clean)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return bare_step


def _time_arm(
    arm: str,
    *,
    data: torch.Tensor,
    corrupted: torch.Tensor,
    objective: InpaintingObjective,
    args: argparse.Namespace,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    peak_flops: float | None,
) -> dict[str, Any]:
    if arm == "monai":
        torch.manual_seed(0)  # the peer's initial weights, the same every run
    model = monai_basicunet() if arm == "monai" else library_unet(norm_precision=args.norm_precision)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)  # type: ignore[call-overload]
    model.train()
    flops = flops_per_image(model, size=args.size, device=device)
    compile_mode: CompileMode = "off" if arm == "bare" else args.compile  # the floor stays eager
    step = _make_step(
        arm,
        model,
        objective=objective,
        device=device,
        amp_dtype=amp_dtype,
        batch=args.batch,
        compile=compile_mode,
    )
    batches = [
        (
            data[j].contiguous(memory_format=fmt),
            corrupted[j].contiguous(memory_format=fmt),
        )
        for j in range(DISTINCT_BATCHES)
    ]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    warm_started = time.perf_counter()
    for i in range(args.warmup):
        step(*batches[i % DISTINCT_BATCHES], i)
    _sync(device)
    warmup_s = time.perf_counter() - warm_started
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(args.warmup, args.warmup + args.steps):
            step(*batches[i % DISTINCT_BATCHES], i)
        end.record()
        torch.cuda.synchronize(device)
        seconds = start.elapsed_time(end) / 1000.0
        peak_memory: int | None = int(torch.cuda.max_memory_allocated(device))
    else:
        started = time.perf_counter()
        for i in range(args.warmup, args.warmup + args.steps):
            step(*batches[i % DISTINCT_BATCHES], i)
        seconds = time.perf_counter() - started
        peak_memory = None
    images_per_s = args.steps * args.batch / seconds
    achieved = flops["total"] * images_per_s
    return {
        "network": "MONAI BasicUNet" if arm == "monai" else f"inpaintssl unet2d (depth {DEPTH})",
        "step": "bare (forward, mse_loss, backward, Adam)" if arm == "bare" else "TrainStep",
        "compile": compile_mode,
        "parameters": sum(p.numel() for p in model.parameters()),
        "images_per_s": images_per_s,
        "seconds_per_step": seconds / args.steps,
        "timed_seconds": seconds,
        "warmup_seconds": warmup_s,
        "flops_per_image": flops,
        "achieved_tflops": achieved / 1e12,
        "mfu": None if peak_flops is None else achieved / peak_flops,
        "peak_memory_bytes": peak_memory,
        "peak_memory_gib": None if peak_memory is None else peak_memory / 2**30,
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug.removeprefix("nvidia_") or "device"


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT, so that the partial record is written first."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated(signum)


def _install_handlers() -> dict[int, Any]:
    """SIGTERM (``timeout``) and SIGINT raise :class:`_Terminated`; returns the handlers replaced."""
    replaced: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread: leave the signals alone
            replaced[signum] = signal.signal(signum, _raise_terminated)
    return replaced


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time the three arms and return (and write) the JSON record.

    The record is written (atomically) before the first arm and again after every arm, marked
    ``"complete": false`` with the arms still to run until the last is done; a SIGTERM (``timeout``)
    or SIGINT writes it once more, naming the arm it stopped, and exits with 128 + the signal.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--steps", type=int, help="timed steps per arm (default 50; 10 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed steps per arm first (default 10; 3 with --quick)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer steps (see --steps, --warmup); the default record name ends in _quick",
    )
    parser.add_argument(
        "--dtype",
        default="bf16",
        choices=list(DTYPES),
        help="autocast dtype on CUDA (default bf16); the CPU always runs fp32",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="memory format of all three arms (default: the library's 'auto', off on CUDA, on on the CPU)",
    )
    parser.add_argument(
        "--compile",
        default="off",
        choices=list(get_args(CompileMode)),
        help="run.compile for the library and MONAI arms (default off; the bare arm stays eager)",
    )
    parser.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="set torch.backends.cudnn.benchmark for all arms (run.cudnn_benchmark; off by default)",
    )
    parser.add_argument(
        "--norm-precision",
        default="float32",
        choices=["float32", "autocast"],
        help="the library's U-Net's GroupNorm under autocast (model.params.norm_precision; default float32)",
    )
    parser.add_argument(
        "--patch-size", type=at_least(1), default=32, help="pretext patch side K (default 32)"
    )
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="peak TFLOP/s for MFU, > 0; default: the datasheet table (dense BF16), none on the CPU",
    )
    parser.add_argument("--threads", type=at_least(1), help="torch CPU threads (default: torch's own)")
    parser.add_argument(
        "--output",
        "--out",
        type=Path,
        help="JSON record (default benchmarks/results/bench_gpu_throughput_<device>[_quick].json)",
    )
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 10 if args.quick else 50
    if args.warmup is None:
        args.warmup = 3 if args.quick else 10
    if min(args.size, args.batch, args.steps) < 1 or args.warmup < 0:
        parser.error("--size, --batch and --steps must be >= 1 and --warmup >= 0")
    # Every arm runs a U-Net of depth DEPTH, which refuses a side that its poolings cannot halve evenly:
    # refused here rather than recorded as every arm's error after the data and corruption are set up.
    size_multiple = 2 ** (DEPTH - 1)
    if args.size % size_multiple:
        nearest = max(size_multiple, round(args.size / size_multiple) * size_multiple)
        parser.error(
            f"--size must be a multiple of {size_multiple} (2**(depth-1) for the benchmark's U-Net, "
            f"depth {DEPTH}), got {args.size}; e.g. {nearest}"
        )
    # Checked before any arm is timed: every MFU divides by it.
    if args.peak_tflops is not None and not (math.isfinite(args.peak_tflops) and args.peak_tflops > 0):
        parser.error(f"--peak-tflops must be a finite number > 0 TFLOP/s, got {args.peak_tflops:g}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    amp_dtype = DTYPES[args.dtype] if device.type == "cuda" else None
    channels_last = use_channels_last(device, "auto" if args.channels_last is None else args.channels_last)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if args.peak_tflops is not None:
        peak_tflops: float | None = args.peak_tflops
        peak_source: str | None = "--peak-tflops (given on the command line)"
    elif device.type == "cuda":
        peak_tflops, matched = datasheet_peak(device_name)
        peak_source = None if matched is None else f"{PEAK_SOURCE} ({matched}: {peak_tflops} TFLOP/s)"
        if peak_tflops is not None and amp_dtype != torch.bfloat16:
            peak_source = f"{peak_source}; note: the run's dtype is {args.dtype}, not bf16"
    else:
        peak_tflops, peak_source = None, None
    peak_flops = None if peak_tflops is None else peak_tflops * 1e12
    default_name = f"bench_gpu_throughput_{_slug(device_name)}{'_quick' if args.quick else ''}.json"
    output = args.output or HERE / "results" / default_name

    results: dict[str, Any] = {}
    record: dict[str, Any] = {
        "benchmark": "gpu_throughput",
        **provenance(__file__, argv),
        "complete": False,
        "arms_pending": list(args.arms),
        "machine": {
            "node": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "monai": _monai_version(),
        "device": device_name,
        "device_type": device.type,
        "image_size": args.size,
        "batch_size": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "quick": args.quick,
        "dtype": args.dtype if amp_dtype is not None else "fp32",
        "channels_last": channels_last,
        "channels_last_setting": "auto" if args.channels_last is None else args.channels_last,
        "compile": args.compile,
        "cudnn_benchmark": args.cudnn_benchmark,
        "norm_precision": args.norm_precision,
        "pretext": {"task": "context_restoration", "patch_size": args.patch_size},
        "optimizer": {"name": "Adam", **ADAM},
        "flop_counter": "torch.utils.flop_counter.FlopCounterMode, forward + backward at batch 1",
        "peak_tflops": peak_tflops,
        "peak_source": peak_source,
        "arms": results,
    }

    def speed(arm: str) -> float | None:
        entry = results.get(arm)
        if not isinstance(entry, dict) or not isinstance(entry.get("images_per_s"), (int, float)):
            return None
        return float(entry["images_per_s"])

    def save(state: str) -> None:
        """Write the record as it stands (``state``: what the run is doing or how it ended)."""
        library = results.get("library")
        library_mfu = library.get("mfu") if isinstance(library, dict) else None
        lib_vs_monai = _ratio(speed("library"), speed("monai"))
        record["state"] = state
        record["arms_pending"] = [arm for arm in args.arms if arm not in results]
        record["ratios"] = {
            "library_vs_monai": lib_vs_monai,
            "library_vs_bare": _ratio(speed("library"), speed("bare")),
        }
        record["targets"] = {
            "library_vs_monai>=1.5": None if lib_vs_monai is None else lib_vs_monai >= 1.5,
            "library_mfu>=0.25": None if library_mfu is None else library_mfu >= 0.25,
        }
        write_record(output, record)

    replaced = _install_handlers()
    current = "setup"
    try:
        save("setting up (data, corruption)")
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        data = torch.randn(DISTINCT_BATCHES, args.batch, 1, args.size, args.size, generator=generator)
        data = data.to(device)
        pretext = PretextConfig(task="context_restoration", patch_size=args.patch_size)
        objective = InpaintingObjective(build_pretext_task(pretext, seed=0))
        with torch.no_grad():  # the bare arm's input: corrupted once, outside any timing
            corrupted = torch.stack(
                [
                    objective.corrupt(data[j], torch.arange(j * args.batch, (j + 1) * args.batch))
                    for j in range(DISTINCT_BATCHES)
                ]
            )
        _sync(device)
        for arm in args.arms:
            current = arm
            if arm == "monai":
                try:
                    import monai  # noqa: F401
                except ImportError:
                    results[arm] = None
                    save(f"{arm}: MONAI not installed")
                    continue
            save(f"running arm {arm}")
            threads_at_start = torch.get_num_threads()
            try:
                results[arm] = _time_arm(
                    arm,
                    data=data,
                    corrupted=corrupted,
                    objective=objective,
                    args=args,
                    device=device,
                    amp_dtype=amp_dtype,
                    channels_last=channels_last,
                    peak_flops=peak_flops,
                )
            except Exception as exc:  # noqa: BLE001 - one arm's failure (e.g. a compiler bug) is a result too
                results[arm] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                print(f"{arm}: failed: {results[arm]['error'][:300]}", file=sys.stderr)
                save(f"{arm} failed")
                continue
            results[arm]["torch_threads"] = {"start": threads_at_start, "end": torch.get_num_threads()}
            save(f"{arm} done")
            print(f"{arm}: {results[arm]['images_per_s']:.2f} images/s", file=sys.stderr)
        record["complete"] = True
        save("complete")
    except _Terminated as stop:
        for signum in replaced:  # a second signal must not interrupt the last write
            signal.signal(signum, signal.SIG_IGN)
        name = signal.Signals(stop.signum).name
        where = f"after arm {current}" if current in results else f"during {current}"
        save(f"stopped by {name} {where}")
        print(f"stopped by {name} {where}; wrote the partial record {output}", file=sys.stderr)
        raise SystemExit(128 + stop.signum) from None
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    print(json.dumps(record, indent=2))
    print(f"wrote {output}", file=sys.stderr)
    return record


def _monai_version() -> str | None:
    try:
        import monai
    except ImportError:
        return None
    return str(monai.__version__)


if __name__ == "__main__":
    main()
