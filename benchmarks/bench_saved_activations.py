"""Bytes a training step keeps for its backward pass: the library's U-Net vs. MONAI's BasicUNet.

A U-Net's training step at 512x512 is bound by memory traffic, not arithmetic: every tensor that
autograd keeps for the backward pass is written in the forward pass and read again in the backward
pass, and those tensors decide the step's peak memory. This benchmark counts them, exactly, without
running the networks: the forward pass (and the L2 loss) runs under ``FakeTensorMode``, which
propagates shapes and dtypes but computes nothing, so the paper's size counts in about a second on
any machine. Each saved tensor's storage is counted once (an in-place ReLU's output and the next
convolution's input are one tensor), the parameters are left out (they are resident anyway), and
so is the gradient memory of the backward pass itself. The fake count takes each operator's output
dtypes from PyTorch's meta functions, which give a norm's per-sample statistics the input's dtype;
the real CPU kernels (GroupNorm with float32 weights, InstanceNorm) and cuDNN's batch norm keep
them in float32: 4 bytes more per sample and group (or channel) of such a layer, 23 kB at batch 2
for ``BasicUNet``, where it keeps 964 MB at 512x512.

**The autocast policy.** Under bf16/fp16 autocast, CUDA runs ``group_norm`` and ``layer_norm`` in
float32 (PyTorch's AMP reference, "CUDA Ops that can autocast to float32"); CPU autocast runs
them in their input's dtype, and both run ``instance_norm``/``batch_norm``, ``max_pool2d``, ``relu``
and ``cat`` alike, and the convolutions in the low precision. ``--policy cuda`` (the default)
therefore counts what a CUDA step keeps by casting a low-precision input of those two norms to
float32 under autocast, as CUDA's autocast does (with the library's own
:func:`inpaintssl.training.autocast_policy.autocast_as_on`, which the memory pre-flight uses
too); ``--policy cpu`` counts what a CPU step keeps.

Arms, each at ``--size`` and ``--batch`` with one input channel:

* **library**: the paper's U-Net (``unet2d``, depth 5, base width 32) as a run builds it;
* **library_norm_autocast**: the same with ``model.params.norm_precision: autocast``
  (:class:`inpaintssl.models.AutocastGroupNorm` normalises in the autocast dtype);
* **monai**: MONAI's ``BasicUNet`` with the same widths (left out where MONAI is not installed).

Each arm is counted at batch 1 and 2: the difference is the bytes per image, and the rest is what a
step keeps once whatever its batch (the low-precision copies of the weights). The record gives
both, their total at ``--batch``, and each arm's ratio to MONAI's.

Usage::

    python benchmarks/bench_saved_activations.py [--size 512] [--batch 16] [--quick]
        [--dtype {bf16,fp16,fp32}] [--policy {cuda,cpu}] [--output PATH]

Target (issue 18's throughput, through memory traffic): with ``norm_precision: autocast`` the
library keeps no more bytes per image than MONAI's ``BasicUNet`` under the CUDA policy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_gpu_throughput import library_unet
from bench_training import monai_basicunet
from provenance import at_least, provenance, write_record
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from inpaintssl.training.autocast_policy import autocast_as_on

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
POLICIES = ("cuda", "cpu")


def _storage_key(tensor: torch.Tensor) -> int:
    # A fake tensor's storage has no data pointer; its C++ object identifies it, as it does a real one.
    return int(tensor.untyped_storage()._cdata)


def saved_bytes(
    model: nn.Module,
    *,
    size: int,
    batch: int,
    dtype: torch.dtype | None,
    policy: str = "cuda",
    fake: bool = True,
) -> dict[str, int]:
    """Bytes autograd keeps for one step's backward pass, in total and per dtype.

    Args:
        model: A 2D network taking ``(batch, 1, size, size)`` and returning one channel.
        size: Image side in pixels.
        batch: Images per step.
        dtype: Autocast's dtype (``None``: float32 without autocast).
        policy: ``"cuda"`` or ``"cpu"``: whose autocast policy for the norms (module docstring).
        fake: Count under ``FakeTensorMode`` (no arithmetic); ``False`` runs the real step.

    Returns:
        ``{"total": bytes, "<dtype>": bytes, ...}``, each storage counted once, parameters left out.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.ReLU())
        >>> saved_bytes(net, size=8, batch=1, dtype=None)  # the input, and ReLU's output
        {'total': 512, 'torch.float32': 512}
    """
    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r} is invalid; expected one of {', '.join(POLICIES)}")
    kept: dict[int, torch.Tensor] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        kept[_storage_key(tensor)] = tensor
        return tensor

    parameters = {_storage_key(p) for p in model.parameters()}
    mode: contextlib.AbstractContextManager[Any] = (
        FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    )
    with mode:
        image = torch.zeros(batch, 1, size, size)
        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
            autocast_as_on(policy, dtype),
        ):
            F.mse_loss(model(image).float(), image)
    counted: dict[str, int] = {"total": 0}
    for key, tensor in kept.items():
        if key in parameters:
            continue
        nbytes = int(tensor.untyped_storage().nbytes())
        counted["total"] += nbytes
        counted[str(tensor.dtype)] = counted.get(str(tensor.dtype), 0) + nbytes
    return counted


def per_image_and_fixed(
    build: Callable[[], nn.Module], *, size: int, dtype: torch.dtype | None, policy: str
) -> dict[str, Any]:
    """Bytes per image and bytes per step (batch-independent), from counts at batch 1 and 2."""
    one = saved_bytes(build(), size=size, batch=1, dtype=dtype, policy=policy)
    two = saved_bytes(build(), size=size, batch=2, dtype=dtype, policy=policy)
    dtypes = sorted((set(one) | set(two)) - {"total"})
    return {
        "per_image": two["total"] - one["total"],
        "per_step": 2 * one["total"] - two["total"],
        "per_image_by_dtype": {d: two.get(d, 0) - one.get(d, 0) for d in dtypes},
    }


def _arms() -> Iterator[tuple[str, Callable[[], nn.Module]]]:
    yield "library", library_unet
    yield "library_norm_autocast", lambda: library_unet(norm_precision="autocast")
    try:
        monai_basicunet()
    except ImportError:
        return
    yield "monai", monai_basicunet


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Count every arm; print and write the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64 (a smoke run)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=at_least(1), default=16)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--policy", choices=POLICIES, default="cuda")
    parser.add_argument("--output", "--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = 64
    dtype = DTYPES[args.dtype]
    arms: dict[str, dict[str, Any]] = {}
    for name, build in _arms():
        counted = per_image_and_fixed(build, size=args.size, dtype=dtype, policy=args.policy)
        at_batch = counted["per_step"] + args.batch * counted["per_image"]
        arms[name] = {**counted, "at_batch": at_batch, "at_batch_gib": round(at_batch / 2**30, 3)}
        print(name, json.dumps(arms[name]), flush=True)
    targets: dict[str, bool | None] = {}
    if "monai" in arms:
        for arm in arms.values():
            arm["per_image_vs_monai"] = round(arm["per_image"] / arms["monai"]["per_image"], 4)
        name = "library_norm_autocast per_image <= monai per_image"
        targets[name] = arms["library_norm_autocast"]["per_image"] <= arms["monai"]["per_image"]
    record: dict[str, Any] = {
        "benchmark": "saved_activations",
        **provenance(__file__, argv),
        "size": args.size,
        "batch": args.batch,
        "dtype": args.dtype,
        "policy": args.policy,
        "torch": torch.__version__,
        "arms": arms,
        "targets": targets,
    }
    if args.output is not None:
        write_record(args.output, record)
    return record


if __name__ == "__main__":
    main()
