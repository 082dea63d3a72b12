"""Resource pre-flight: refuse an image size or batch whose training memory cannot fit the device.

``data.image_size=[65536, 65536]`` used to fit the first slice to 65536x65536 (17 GB) before any
model ran, then fail deep inside an allocator. :func:`check_training_memory` estimates what one
training step keeps alive and refuses the run, before any slice is read or anything written, when
the estimate exceeds the memory the device has free.

The estimate works for any registered backbone: the model is built on PyTorch's ``meta`` device
(shapes without storage) and run forward at the full batch and image size under
:func:`torch.autograd.graph.saved_tensors_hooks`, which sees every tensor autograd keeps for the
backward pass; distinct storages are summed. A small step (at most 64x64 pixels for the whole
batch) is instead run for real on the CPU at its full batch and size, which gives the same bytes:
it costs no more than one of the fallback's probes below, while the meta device's Python kernels
take seconds to import, most of a small run's start-up. A backbone that cannot run on ``meta`` is
run for real on the CPU at two small sizes, each at batches of 2 and 4, and the saved bytes are
split into what grows with the batch and what does not (the weights a convolution keeps for its
gradient), each extrapolated linearly in the pixel count (activations of a convolutional network
scale with it); slices of at most 64x64 pixels are run at their own size, so that only the batch
is extrapolated. A network that runs on ``meta`` at a probe's size but fails at the run's size
fails for a reason of its own (a bottleneck too small for its normalisation): that error is
raised, as the run's first step would raise it, not measured around. The estimate leaves the global
CPU generator as it found it: the run has seeded it, and building a model or running dropout for
real would otherwise shift the run's random stream. Parameters count four times (weights,
gradients and the two Adam moments). Under mixed precision the forward pass runs under CPU
autocast with the training device's policy (:mod:`~inpaintssl.training.autocast_policy`: CUDA
runs GroupNorm in float32, the CPU does not), on ``FakeTensorMode`` rather than the meta device,
which autocast does not reach. Halving the float32 count, as the estimate did until 2026-12-04,
is close on the CPU (the paper's U-Net at 512x512 keeps 344 MiB per image, half its float32 count
327 MiB) but on CUDA the U-Net keeps 680 MiB per image, 2.1x that
(``benchmarks/bench_saved_activations.py``).

The estimate leaves out transient buffers (the backward pass's own temporaries, cuDNN
workspaces, the allocator's fragmentation), so it is a lower bound: a refused run could not
have trained, and a run that passes may still need somewhat more.

The limit is what is free now: ``torch.cuda.mem_get_info`` on CUDA; on the CPU, ``MemAvailable``
from ``/proc/meminfo`` (``os.sysconf`` elsewhere), lowered to the least remaining allowance of the
process's memory cgroups, v1 or v2, its own and those above it (a container, a Slurm job step).

Under ``torchrun`` every process trains its own replica, and every process checks itself, before
any of them has allocated its training memory: each one sees the same free memory, which all of
them will draw on. So each process is judged against its share: the estimate times the number of
processes that draw on that memory (:func:`processes_sharing_memory`) must fit. On the CPU that is
every process on the node (torchrun's ``LOCAL_WORLD_SIZE``); on CUDA it is the processes on the
node that train on this process's card, which is each process alone under ``run.device: auto``
or ``cuda`` (the card of its ``LOCAL_RANK``) and every process on the node when ``run.device``
names one card (``cuda:N``). Nodes differ in free memory, so the ranks then exchange verdicts:
when one is refused, every rank raises, naming it.

Example:
    >>> from inpaintssl.training.components import build_backbone
    >>> factory = lambda: build_backbone("unet2d", {"depth": 2, "base_width": 4},
    ...                                  in_channels=1, out_channels=1, seed=0)
    >>> small = estimate_training_memory(factory, batch_size=2, channels=1, image_size=(32, 32))
    >>> large = estimate_training_memory(factory, batch_size=2, channels=1, image_size=(64, 64))
    >>> round(large.activation_bytes / small.activation_bytes)
    4
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from inpaintssl.byte_sizes import format_bytes
from inpaintssl.config import ConfigError
from inpaintssl.data.base import SliceDataset
from inpaintssl.data.views import slice_shape_of
from inpaintssl.training.autocast_policy import autocast_as_on
from inpaintssl.training.components import build_backbone
from inpaintssl.training.distributed import DistInfo, all_gather_object

if TYPE_CHECKING:
    from inpaintssl.training.context import RunContext

__all__ = [
    "InsufficientMemoryError",
    "MemoryEstimate",
    "available_memory",
    "check_run_memory",
    "check_training_memory",
    "estimate_training_memory",
    "format_bytes",
    "processes_sharing_memory",
]

# Sides and batches of the small real forward passes that the fallback extrapolates from: two
# batches, as some saved bytes do not grow with the batch; not 1, which a network may treat apart
# (batch norm refuses a batch of one 1x1 bottleneck).
_PROBE_SIDES = (32, 64)
_PROBE_BATCHES = (2, 4)
# Up to this many pixels per step (batch x H x W), one real pass at the full size is the estimate.
_MEASURED_PIXELS = _PROBE_SIDES[-1] ** 2
# What a pass on shapes alone (meta device or fake tensors) raises: for a network it cannot run,
# or the network's own refusal of the shape; _saved_activation_bytes tells them apart.
_META_FAILURES = (NotImplementedError, RuntimeError, TypeError, ValueError)


class InsufficientMemoryError(ConfigError, RuntimeError):
    """A run whose training step cannot fit the device's free memory; refused before it starts.

    A :class:`~inpaintssl.config.ConfigError` (its message names the settings to lower), so the
    command line prints it as one line and exits 2, as for any other bad setting.
    """


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training step keeps alive.

    Attributes:
        activation_bytes: Tensors saved for the backward pass, for the whole batch.
        parameter_bytes: Weights, gradients and Adam's two moments (4 x the parameters).
        method: ``measured`` (a real CPU pass at full size, for a small step), ``meta`` (exact
            shapes at full size: on the meta device, or under ``FakeTensorMode`` with mixed
            precision) or ``extrapolated`` (small CPU passes).
    """

    activation_bytes: int
    parameter_bytes: int
    method: str

    @property
    def total_bytes(self) -> int:
        """Activations plus parameter state."""
        return self.activation_bytes + self.parameter_bytes


def _saved_bytes(model: nn.Module, images: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves during one forward pass of ``model``."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        # Several ops save the same tensor (a conv input is also the previous ReLU's output):
        # count each storage once. Meta storages have no address; their handle is unique.
        key = storage.data_ptr() if storage.device.type != "meta" else storage._cdata
        storages[key] = storage.nbytes()
        # Not ``tensor`` itself: an output its own node saves would hold that node, which holds
        # it, a cycle through C++ the garbage collector cannot see, so every activation and the
        # model's weights would outlive the call (one forward pass leaked per run in a notebook).
        # The detached view keeps the storage alive until ``output`` goes, so no address repeats.
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(images)
    del output
    return sum(storages.values())


def _parameter_bytes(model: nn.Module) -> int:
    return 4 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def _meta_saved_bytes(
    build_model: Callable[[], nn.Module],
    *,
    batch_size: int,
    channels: int,
    image_size: tuple[int, int],
    amp_dtype: torch.dtype | None,
    device_type: str,
) -> tuple[int, nn.Module]:
    """Activation bytes of one step counted on shapes alone, and the model they were counted on."""
    if amp_dtype is None:
        with torch.device("meta"):
            model = build_model()
            return _saved_bytes(model, torch.empty(batch_size, channels, *image_size)), model
    # The meta device never autocasts; fake tensors are CPU tensors to autocast, with no storage.
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = build_model()
    with FakeTensorMode(allow_non_fake_inputs=True), autocast_as_on(device_type, amp_dtype):
        return _saved_bytes(model, torch.empty(batch_size, channels, *image_size)), model


def _extrapolated_bytes(
    model: nn.Module,
    *,
    batch_size: int,
    channels: int,
    image_size: tuple[int, int],
    amp_dtype: torch.dtype | None,
    device_type: str,
) -> int:
    """Activation bytes of one step from real CPU passes of ``model`` at small sizes (module docstring)."""
    h, w = image_size
    # A slice this small is probed at its own size: nothing to extrapolate in pixels, and a
    # failure there (a bottleneck too small for a norm) is the run's, raised as the run would.
    sizes = [(h, w)] if h * w <= _MEASURED_PIXELS else [(side, side) for side in _PROBE_SIDES]
    low, high = _PROBE_BATCHES
    with autocast_as_on(device_type, amp_dtype):
        saved = {
            (batch, size): _saved_bytes(model, torch.zeros(batch, channels, *size))
            for size in sizes
            for batch in _PROBE_BATCHES
        }
    # Some saved bytes do not grow with the batch (the weights a convolution keeps for its
    # gradient): multiplied by the batch with the rest, they made a 64x64 step of 32 images
    # 7x the real count. Split at each size into what one more image adds and what stays.
    per_image = [(saved[high, size] - saved[low, size]) / (high - low) for size in sizes]
    fixed = [saved[low, size] - low * grown for size, grown in zip(sizes, per_image, strict=True)]
    pixels = [a * b for a, b in sizes]

    def at_run_size(values: list[float]) -> float:
        # Linear in the pixel count: a convolutional network's activations scale with it.
        if len(values) == 1:
            return max(values[0], 0.0)
        slope = (values[1] - values[0]) / (pixels[1] - pixels[0])
        return max(values[1] + slope * (h * w - pixels[1]), 0.0)

    return int(at_run_size(fixed) + batch_size * at_run_size(per_image))


def _saved_activation_bytes(
    build_model: Callable[[], nn.Module],
    *,
    batch_size: int,
    channels: int,
    image_size: tuple[int, int],
    amp_dtype: torch.dtype | None = None,
    device_type: str = "cpu",
) -> tuple[int, nn.Module, str]:
    """Activation bytes of one step, the model they were measured on, and how (module docstring)."""
    h, w = image_size
    if batch_size * h * w <= _MEASURED_PIXELS:
        model = build_model()
        with autocast_as_on(device_type, amp_dtype):
            return _saved_bytes(model, torch.zeros(batch_size, channels, h, w)), model, "measured"
    try:
        saved, model = _meta_saved_bytes(
            build_model,
            batch_size=batch_size,
            channels=channels,
            image_size=(h, w),
            amp_dtype=amp_dtype,
            device_type=device_type,
        )
    except _META_FAILURES as exc:
        failed = exc
    else:
        return saved, model, "meta"
    # Whose failure? A network that runs on shapes alone at a probe's size but not at the run's
    # refuses the run's size for a reason of its own (a bottleneck too small for its norm, sides
    # that do not halve evenly), as its first real step would: raised, not measured around (the
    # probes, at sizes it takes, passed such a run that then failed after writing its folder).
    side = _PROBE_SIDES[-1]
    try:
        _meta_saved_bytes(
            build_model,
            batch_size=_PROBE_BATCHES[0],
            channels=channels,
            image_size=(side, side),
            amp_dtype=amp_dtype,
            device_type=device_type,
        )
    except _META_FAILURES:
        pass  # data-dependent control flow, or a kernel without a meta implementation
    else:
        raise failed
    model = build_model()
    saved = _extrapolated_bytes(
        model,
        batch_size=batch_size,
        channels=channels,
        image_size=(h, w),
        amp_dtype=amp_dtype,
        device_type=device_type,
    )
    return saved, model, "extrapolated"


def estimate_training_memory(
    build_model: Callable[[], nn.Module],
    *,
    batch_size: int,
    channels: int,
    image_size: tuple[int, int],
    amp: bool | torch.dtype | None = False,
    device: torch.device | str = "cpu",
) -> MemoryEstimate:
    """Estimate the memory of one training step (see the module docstring for the method).

    Args:
        build_model: Builds the model (under ``torch.device("meta")`` for a float32 step above
            64x64 pixels, on the CPU otherwise).
        batch_size: Images per step and process.
        channels: Input channels C.
        image_size: ``(H, W)``.
        amp: Mixed precision: its dtype (``torch.bfloat16`` or ``torch.float16``; ``True`` is
            bf16), or ``False``/``None`` for float32.
        device: The training device, whose autocast policy decides which ops stay in float32.

    Returns:
        A :class:`MemoryEstimate`.
    """
    amp_dtype = torch.bfloat16 if amp is True else (amp or None)
    # A model built or run for real may draw from the global generator (default initialisation,
    # dropout): the run seeded it already, so the estimate must not move it.
    with torch.random.fork_rng(devices=()):
        activations, model, method = _saved_activation_bytes(
            build_model,
            batch_size=batch_size,
            channels=channels,
            image_size=image_size,
            amp_dtype=amp_dtype,
            device_type=torch.device(device).type,
        )
    return MemoryEstimate(activations, _parameter_bytes(model), method)


_CGROUP_ROOT = Path("/sys/fs/cgroup")
_SELF_CGROUP = Path("/proc/self/cgroup")
_V1_UNLIMITED = 1 << 60
"""cgroup v1 writes "no limit" as 2**63 - 1 rounded down to a page; no machine has that much."""


def _cgroup_allowance(root: Path = _CGROUP_ROOT, membership: Path = _SELF_CGROUP) -> int | None:
    """Bytes the process's memory cgroups may still allocate, or ``None`` when unlimited or unknown.

    The least allowance (limit minus working set, :func:`_allowance`) of the process's own cgroup and
    every one above it, under cgroup v2 (``memory.max``, ``memory.current``) and v1
    (``memory/memory.limit_in_bytes``, ``memory.usage_in_bytes``). Only the root's v2 files were read:
    a v1 container (Docker or Kubernetes on an older host) or a Slurm job step's nested cgroup was
    given the host's free memory, and a run too large for its limit was killed by the kernel instead
    of refused.
    ``/proc/self/cgroup`` names the process's cgroups (``0::/path`` for v2, ``N:memory:/path``
    for v1); in a cgroup namespace that is ``/``, the mounted root itself.
    """
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    own = {"v2": "/", "v1": "/"}
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            own["v2"] = path or "/"
        elif "memory" in controllers.split(","):
            own["v1"] = path or "/"
    allowances = [
        allowance
        for folder in _up_from(root, own["v2"])
        if (allowance := _allowance(folder / "memory.max", folder / "memory.current")) is not None
    ]
    allowances += [
        allowance
        for folder in _up_from(root / "memory", own["v1"])
        if (allowance := _allowance(folder / "memory.limit_in_bytes", folder / "memory.usage_in_bytes"))
        is not None
    ]
    return min(allowances) if allowances else None


def _up_from(base: Path, path: str) -> list[Path]:
    """``base`` joined with the cgroup ``path``, then each folder above it up to ``base``."""
    folder = base.joinpath(*[part for part in path.split("/") if part not in ("", ".", "..")])
    return [folder, *[parent for parent in folder.parents if parent.is_relative_to(base)]]


def _allowance(limit_file: Path, usage_file: Path) -> int | None:
    """A cgroup's limit minus its working set; ``None`` where a file is missing or it has no limit.

    The working set is the usage less the inactive page cache (``memory.stat``), as the kubelet
    and ``docker stats`` count it: the usage counts cached file pages, which the kernel reclaims
    before it kills, so a cgroup that has read many files would look full.
    """
    try:
        limit = limit_file.read_text().strip()
        if limit == "max" or int(limit) >= _V1_UNLIMITED:
            return None
        usage = int(usage_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return int(limit) - max(0, usage - _inactive_file(limit_file.parent / "memory.stat"))


def _inactive_file(stat_file: Path) -> int:
    """The inactive page cache a cgroup's ``memory.stat`` reports (v1: its hierarchy's), else 0."""
    try:
        fields = dict(
            line.split()[:2] for line in stat_file.read_text().splitlines() if len(line.split()) >= 2
        )
        return int(fields.get("total_inactive_file", fields.get("inactive_file", 0)))
    except (OSError, ValueError):
        return 0


def _host_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def available_memory(device: torch.device) -> tuple[int, str] | None:
    """Free memory of ``device`` in bytes and the device in words, or ``None`` when unknown.

    Example:
        >>> found = available_memory(torch.device("cpu"))
        >>> found is None or (found[0] >= 0 and found[1] == "this CPU")
        True
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type != "cpu":
        return None
    candidates = [v for v in (_host_available(), _cgroup_allowance()) if v is not None]
    if not candidates:
        return None
    return max(min(candidates), 0), "this CPU"


def check_training_memory(
    build_model: Callable[[], nn.Module],
    *,
    batch_size: int,
    channels: int,
    image_size: tuple[int, int],
    device: torch.device,
    amp: bool | torch.dtype | None = False,
    what: str,
    processes: int = 1,
) -> MemoryEstimate:
    """Refuse a run whose training step cannot fit ``device``'s free memory.

    Args:
        build_model: Builds the run's model (see :func:`estimate_training_memory`).
        batch_size: Images per step and process.
        channels: Input channels.
        image_size: ``(H, W)`` of the training slices.
        device: The training device.
        amp: Mixed precision's dtype, or ``False`` (see :func:`estimate_training_memory`).
        what: The settings that chose the size and batch, for the message, e.g.
            ``"data.image_size=[65536, 65536] with optim.batch_size=8"``.
        processes: The processes on this node, this one included, that will each need the
            estimate from the memory ``device`` has free (:func:`processes_sharing_memory`).

    Returns:
        The estimate for one process (also when no limit is known, e.g. on an accelerator other
        than CUDA).

    Raises:
        InsufficientMemoryError: ``processes`` times the estimate exceeds the free memory; the
            message gives both, and the number of processes it counted.
    """
    estimate = estimate_training_memory(
        build_model, batch_size=batch_size, channels=channels, image_size=image_size, amp=amp, device=device
    )
    found = available_memory(device)
    if found is not None and processes * estimate.total_bytes > found[0]:
        free, name = found
        need = (
            f"{format_bytes(estimate.total_bytes)} for training "
            f"({format_bytes(estimate.activation_bytes)} of activations, "
            f"{format_bytes(estimate.parameter_bytes)} of weights, gradients and optimizer state)"
        )
        if processes == 1:
            raise InsufficientMemoryError(
                f"{what} needs about {need}; {name} has {format_bytes(free)} available. "
                "Lower data.image_size or optim.batch_size"
            )
        raise InsufficientMemoryError(
            f"{what} needs about {need} per process; counted {processes} processes on this node "
            f"that share {name}, {format_bytes(processes * estimate.total_bytes)} together, and "
            f"{name} has {format_bytes(free)} available. Lower data.image_size or optim.batch_size, "
            "or start fewer processes per node (torchrun --nproc_per_node)"
        )
    return estimate


def processes_sharing_memory(device: torch.device, *, setting: str, dist: DistInfo) -> int:
    """How many processes on this node, this one included, draw on the memory ``device`` has free.

    Args:
        device: This process's training device.
        setting: ``run.device``, which chose it: every process of the job was given the same.
        dist: Where this process sits in the job (``dist.local_world_size`` processes on its node).

    Returns:
        On the CPU, every process on the node (they share its memory). On CUDA, every process
        on the node when ``setting`` names one card (``cuda:N``: they all train on it), else 1:
        ``auto`` and ``cuda`` give each process the card of its ``LOCAL_RANK``. Elsewhere 1.

    Example:
        >>> from inpaintssl.training.distributed import DistInfo
        >>> four = DistInfo(rank=5, local_rank=1, world_size=8, local_world_size=4)
        >>> processes_sharing_memory(torch.device("cpu"), setting="cpu", dist=four)
        4
        >>> processes_sharing_memory(torch.device("cuda", 1), setting="auto", dist=four)
        1
        >>> processes_sharing_memory(torch.device("cuda", 0), setting="cuda:0", dist=four)
        4
    """
    if not dist.distributed:
        return 1
    if device.type == "cpu":
        return dist.local_world_size
    if device.type == "cuda" and setting.startswith("cuda:"):
        return dist.local_world_size
    return 1


def check_run_memory(
    *,
    backbone: str,
    params: dict[str, Any],
    train_set: SliceDataset,
    image_size: tuple[int, int] | None,
    in_channels: int,
    out_channels: int,
    batch_size: int,
    ctx: RunContext,
) -> MemoryEstimate:
    """:func:`check_training_memory` for a run, before any training slice is read.

    Args:
        backbone: ``model.backbone``.
        params: ``model.params``.
        train_set: The (lazily fitted) training set; only its first slice's shape is asked for.
        image_size: ``data.image_size`` (named in the message when set).
        in_channels: Input channels.
        out_channels: Output channels.
        batch_size: ``optim.batch_size``; a process never batches more than its share of the set.
        ctx: The run's device, precision and process group (under torchrun, each process is
            judged against its share of the memory: :func:`processes_sharing_memory`).

    Raises:
        InsufficientMemoryError: The run cannot fit; the message names the settings to change.
            Under ``torchrun`` every rank raises when any rank does: a rank that found room
            names the first rank that did not, with that rank's message.
        ConfigError: The network's trial step fails on slices of this size (a bottleneck too
            small for its normalisation); the message names the backbone and the slice size.
    """
    h, w = slice_shape_of(train_set, 0)
    per_process = math.ceil(len(train_set) / ctx.dist.world_size)
    batch = min(batch_size, per_process)
    source = (
        f"data.image_size={[h, w]}" if image_size is not None else f"{h}x{w} slices (data.image_size unset)"
    )
    what = f"{source} with optim.batch_size={batch_size}"
    if batch < batch_size:
        what += f" (batches of {batch}, the training set's share per process)"
    refused: InsufficientMemoryError | None = None
    try:
        estimate = check_training_memory(
            lambda: build_backbone(
                backbone, params, in_channels=in_channels, out_channels=out_channels, seed=0
            ),
            batch_size=batch,
            channels=in_channels,
            image_size=(h, w),
            device=ctx.device,
            amp=ctx.amp_dtype,
            what=what,
            processes=processes_sharing_memory(ctx.device, setting=ctx.run.device, dist=ctx.dist),
        )
    except InsufficientMemoryError as exc:
        if not ctx.dist.distributed:
            raise
        refused = exc
    except (RuntimeError, ValueError) as exc:
        # The trial step is the network's first; a network that cannot train on slices this
        # small (MONAI's instance norm on a 1x1 bottleneck) fails in it with torch's own words.
        # Every rank builds the same network for the same slices, so every rank raises alike.
        raise ConfigError(
            f"model.backbone={backbone!r} cannot take a training step on {what}: a trial step "
            f"before training failed with {type(exc).__name__}: {exc}. Expected slices this network "
            "trains on: raise data.image_size, or change model.params (fewer levels, for one)"
        ) from exc
    if ctx.dist.distributed:
        # Nodes differ in free memory, so the verdicts may too; a rank that stopped alone would
        # leave the others waiting in their first collective, ended only by a launcher that
        # watches its processes (torchrun does; srun or mpirun with a long timeout may not).
        verdicts = all_gather_object(None if refused is None else str(refused))
        if refused is not None:
            raise refused
        first = next(((rank, text) for rank, text in enumerate(verdicts) if text is not None), None)
        if first is not None:
            raise InsufficientMemoryError(
                f"rank {first[0]} of {len(verdicts)} refused the run, so this rank stops too: {first[1]}"
            )
    return estimate
