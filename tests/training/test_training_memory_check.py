"""The resource pre-flight: training memory estimated, and impossible runs refused before they start."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from torch import nn

import inpaintssl as issl
from inpaintssl.config import ConfigError, RunConfig
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.registry import BACKBONES
from inpaintssl.training.components import build_backbone
from inpaintssl.training.context import RunContext
from inpaintssl.training.distributed import DistInfo
from inpaintssl.training.memory_check import (
    InsufficientMemoryError,
    _cgroup_allowance,
    available_memory,
    check_run_memory,
    check_training_memory,
    estimate_training_memory,
)


def _unet(**params: Any) -> nn.Module:
    return build_backbone(
        "unet2d", {"depth": 3, "base_width": 4, **params}, in_channels=1, out_channels=2, seed=0
    )


def _activation_bytes_by_hooks(model: nn.Module, images: torch.Tensor) -> int:
    """Sum of every leaf module's output size in one real forward pass (an independent tally)."""
    total = 0

    def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()
    return total


def test_estimate_scales_with_pixel_count_and_batch() -> None:
    sizes = {
        side: estimate_training_memory(_unet, batch_size=2, channels=1, image_size=(side, side))
        for side in (64, 128, 256)
    }
    assert {e.method for e in sizes.values()} == {"meta"}
    # Activations of a convolutional network are proportional to the pixels (4x per doubled side),
    # up to the weights some layers save, which do not grow with the image.
    growth = (sizes[256].activation_bytes - sizes[128].activation_bytes) / (
        sizes[128].activation_bytes - sizes[64].activation_bytes
    )
    assert growth == pytest.approx(4.0, rel=1e-6)
    by_batch = [
        estimate_training_memory(_unet, batch_size=b, channels=1, image_size=(64, 64)).activation_bytes
        for b in (1, 2, 4)
    ]
    assert by_batch[2] - by_batch[1] == 2 * (by_batch[1] - by_batch[0])
    assert sizes[64].parameter_bytes == 4 * sum(p.numel() * 4 for p in _unet().parameters())


def test_estimate_matches_the_order_of_the_measured_activations() -> None:
    model = _unet()
    images = torch.randn(2, 1, 128, 128)
    measured = _activation_bytes_by_hooks(model, images)
    estimate = estimate_training_memory(_unet, batch_size=2, channels=1, image_size=(128, 128))
    # Autograd keeps most layer outputs (some ops save their input instead, some save nothing).
    assert 0.3 * measured < estimate.activation_bytes < 3 * measured


def test_meta_estimate_equals_a_real_cpu_forward() -> None:
    model = _unet()
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(2, 1, 64, 64))
    estimate = estimate_training_memory(_unet, batch_size=2, channels=1, image_size=(64, 64))
    assert estimate.activation_bytes == sum(storages.values())


def _kept_with_group_norm_in_float32(model: nn.Module, images: torch.Tensor, dtype: torch.dtype) -> int:
    """Bytes a real CPU forward keeps under autocast with every GroupNorm made to run in float32 by
    hand, as CUDA's autocast runs it: an emulation independent of the library's."""

    def in_float32(module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return nn.functional.group_norm(
                x.float(), module.num_groups, module.weight, module.bias, module.eps
            )

    for module in model.modules():
        if isinstance(module, nn.GroupNorm):
            module.forward = lambda x, module=module: in_float32(module, x)  # type: ignore[method-assign]
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=dtype):
        model(images)
    return sum(storages.values())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("pixels", [0, 64 * 64], ids=["fake", "measured"])
def test_mixed_precision_on_cuda_counts_group_norm_in_float32_as_cuda_autocast_runs_it(
    dtype: torch.dtype, pixels: int
) -> None:
    # 2 x 32 x 32 is measured for real unless the limit is 0; above it, fake tensors are counted.
    with mock.patch("inpaintssl.training.memory_check._MEASURED_PIXELS", pixels):
        on_cuda = estimate_training_memory(
            _unet, batch_size=2, channels=1, image_size=(32, 32), amp=dtype, device="cuda"
        )
    assert on_cuda.method == ("measured" if pixels else "meta")
    expected = _kept_with_group_norm_in_float32(_unet(), torch.zeros(2, 1, 32, 32), dtype)
    assert on_cuda.activation_bytes == expected


def test_mixed_precision_follows_the_devices_policy_and_the_norms_precision() -> None:
    def estimate(build: Any, **options: Any) -> int:
        return estimate_training_memory(
            build, batch_size=2, channels=1, image_size=(128, 128), **options
        ).activation_bytes

    def bf16_norms() -> nn.Module:
        return _unet(norm_precision="autocast")

    full = estimate(_unet)
    on_cpu, on_cuda = estimate(_unet, amp=torch.bfloat16), estimate(_unet, amp=torch.bfloat16, device="cuda")
    # Without its float32 norms a bf16 step keeps about half of float32's bytes (plus bf16 copies
    # of the weights); CUDA's float32 GroupNorm keeps float32 copies of most activations.
    assert 0.45 * full < on_cpu < 0.6 * full
    assert on_cuda > 1.5 * on_cpu
    assert estimate(_unet, amp=True) == on_cpu  # True is bf16
    assert estimate(_unet, amp=None) == estimate(_unet, amp=False) == full
    # GroupNorm that normalises in bf16 itself never reaches autocast's policy.
    assert estimate(bf16_norms, amp=torch.bfloat16, device="cuda") == estimate(bf16_norms, amp=torch.bfloat16)


def _entries_that_build() -> list[str]:
    """Every registered backbone whose requirements are installed (smp_unet has its own virtualenv)."""
    return [e.name for e in BACKBONES.entries(check=True) if e.status == "ok"]


@pytest.mark.parametrize("name", BACKBONES.names())
def test_a_small_step_is_measured_by_a_real_pass_that_equals_the_meta_estimate(name: str) -> None:
    if name not in _entries_that_build():
        pytest.skip(f"{name}: a required package is not installed")

    def build() -> nn.Module:
        return build_backbone(name, {}, in_channels=1, out_channels=2, seed=0)

    # 2 x 32 x 32 pixels: under the 64x64 of one extrapolation probe, so measured for real.
    measured = estimate_training_memory(build, batch_size=2, channels=1, image_size=(32, 32))
    assert measured.method == "measured"
    with mock.patch("inpaintssl.training.memory_check._MEASURED_PIXELS", 0):
        on_meta = estimate_training_memory(build, batch_size=2, channels=1, image_size=(32, 32))
    assert on_meta.method == "meta"
    assert (measured.activation_bytes, measured.parameter_bytes) == (
        on_meta.activation_bytes,
        on_meta.parameter_bytes,
    )
    # 64x64 pixels in all is the largest step measured for real; the next size the networks take is not.
    assert estimate_training_memory(build, batch_size=1, channels=1, image_size=(64, 64)).method == "measured"
    assert estimate_training_memory(build, batch_size=1, channels=1, image_size=(80, 64)).method == "meta"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_is_counted_at_full_size_under_mixed_precision(name: str, device: str) -> None:
    if name not in _entries_that_build():
        pytest.skip(f"{name}: a required package is not installed")

    def build() -> nn.Module:
        return build_backbone(name, {}, in_channels=1, out_channels=2, seed=0)

    full = estimate_training_memory(build, batch_size=2, channels=1, image_size=(96, 96))
    half = estimate_training_memory(
        build, batch_size=2, channels=1, image_size=(96, 96), amp=torch.bfloat16, device=device
    )
    assert full.method == half.method == "meta"
    # bf16 activations, and some kept in float32 (the norms' on CUDA, a network's own casts).
    assert 0.4 * full.activation_bytes < half.activation_bytes < 1.2 * full.activation_bytes
    assert half.parameter_bytes == full.parameter_bytes


class _Dropout(nn.Module):
    """A backbone whose forward pass draws from the global generator."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.conv(x))


@pytest.mark.parametrize("image_size", [(16, 16), (512, 512)], ids=["measured", "meta"])
def test_the_estimate_leaves_the_global_generator_where_the_run_seeded_it(
    image_size: tuple[int, int],
) -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    estimate_training_memory(_Dropout, batch_size=2, channels=1, image_size=image_size)
    assert torch.equal(torch.rand(3), expected)


class _NoMeta(nn.Module):
    """A backbone with data-dependent control flow, which the meta device cannot run."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        return y * 2 if bool(y.sum() > -1) else y


def test_backbones_that_cannot_run_on_meta_are_extrapolated_from_small_passes() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    estimate = estimate_training_memory(_NoMeta, batch_size=3, channels=1, image_size=(512, 512))
    assert torch.equal(torch.rand(3), expected)  # nn.Conv2d's initialisation draws from it
    assert estimate.method == "extrapolated"
    # Saved per pixel: the conv input (4 B, for the weight gradient) and the ReLU output (8 x 4 B).
    per_image = 512 * 512 * (4 + 32)
    assert estimate.activation_bytes == pytest.approx(3 * per_image, rel=0.01)
    # Under bf16 autocast: the conv's bf16 copy of its input (2 B) and the bf16 ReLU output (8 x 2 B).
    bf16 = estimate_training_memory(
        _NoMeta, batch_size=3, channels=1, image_size=(512, 512), amp=torch.bfloat16
    )
    assert bf16.method == "extrapolated"
    assert bf16.activation_bytes == pytest.approx(3 * 512 * 512 * (2 + 16), rel=0.01)


_WIDE = 128


class _WideNoMeta(nn.Module):
    """Two wide convolutions and data-dependent control flow: its saved weights outweigh an image's
    activations at small sizes, and the meta device cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, _WIDE, 3, padding=1)
        self.second = nn.Conv2d(_WIDE, _WIDE, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.second(torch.relu(self.first(x)))
        return y * 2 if bool(y.sum() > -1) else y


def _wide_saved_by_hand(batch: int, height: int, width: int) -> int:
    # Per pixel: the input (4 B, for the first weight's gradient) and the ReLU output, which the
    # second convolution saves too (one storage, _WIDE x 4 B); per step, whatever the batch:
    # the two weights each convolution keeps for its input's gradient. y * 2 saves nothing.
    per_image = 4 * height * width * (1 + _WIDE)
    return batch * per_image + 4 * (_WIDE * 1 * 9 + _WIDE * _WIDE * 9)


@pytest.mark.parametrize(
    ("batch", "image_size"),
    [(32, (64, 64)), (8, (96, 96)), (3, (200, 120))],
    ids=["probed-at-its-size", "extrapolated-in-pixels", "not-square"],
)
def test_an_extrapolated_estimate_counts_what_does_not_grow_with_the_batch_once(
    batch: int, image_size: tuple[int, int]
) -> None:
    # The fallback probed at a batch of 1 and multiplied everything by the batch, the saved
    # weights too: 64x64 in batches of 32 came out 1.3x the real count here, 7x for the U-Net.
    estimate = estimate_training_memory(_WideNoMeta, batch_size=batch, channels=1, image_size=image_size)
    assert estimate.method == "extrapolated"
    assert estimate.activation_bytes == pytest.approx(_wide_saved_by_hand(batch, *image_size), rel=1e-6)


def test_a_run_that_fits_is_not_refused_for_saved_weights_counted_once_per_image() -> None:
    need = _wide_saved_by_hand(32, 64, 64) + 4 * sum(p.numel() * 4 for p in _WideNoMeta().parameters())
    with mock.patch(
        "inpaintssl.training.memory_check.available_memory", return_value=(int(need * 1.1), "this CPU")
    ):
        estimate = check_training_memory(
            _WideNoMeta,
            batch_size=32,
            channels=1,
            image_size=(64, 64),
            device=torch.device("cpu"),
            what="data.image_size=[64, 64] with optim.batch_size=32",
        )
    assert estimate.total_bytes == pytest.approx(need, rel=1e-6)


class _Bottleneck(nn.Module):
    """Pools 16x16 to one pixel, where instance norm refuses to train; ``meta=False`` adds
    data-dependent control flow, which the meta device cannot run."""

    def __init__(self, *, meta: bool) -> None:
        super().__init__()
        self.meta = meta
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(16)
        self.norm = nn.InstanceNorm2d(4, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.norm(self.pool(self.conv(x)))
        if not self.meta and bool(y.sum() > 1e30):
            return y / 2
        return y


@pytest.mark.parametrize("runs_on_meta", [True, False], ids=["runs-on-meta", "cannot-run-on-meta"])
def test_a_network_that_refuses_the_runs_slice_size_raises_its_own_error_whatever_the_batch(
    runs_on_meta: bool,
) -> None:
    # 32 x 16 x 16 pixels is above what one real pass measures: the meta pass failed, the error
    # was caught as the meta device's, and probes at 32x32 and 64x64, which the network takes,
    # passed a size it cannot train on (a batch of 4, measured for real, was refused).
    def build() -> nn.Module:
        return _Bottleneck(meta=runs_on_meta)

    for batch in (4, 32):
        with pytest.raises(ValueError, match="more than 1 spatial element") as real:
            build()(torch.zeros(batch, 1, 16, 16))
        with pytest.raises(ValueError) as estimated:
            estimate_training_memory(build, batch_size=batch, channels=1, image_size=(16, 16))
        # The same refusal; a probe may have made it at a batch of its own, not the run's.
        before_shape = str(real.value).split("torch.Size")[0]
        assert str(estimated.value).startswith(before_shape) and before_shape
    # At 32 x 32 the bottleneck is 2 x 2: the same network is estimated.
    fine = estimate_training_memory(build, batch_size=32, channels=1, image_size=(32, 32))
    assert fine.method == ("meta" if runs_on_meta else "extrapolated")


def test_a_run_that_cannot_fit_is_refused_with_estimate_and_limit() -> None:
    with (
        mock.patch("inpaintssl.training.memory_check.available_memory", return_value=(2**30, "this CPU")),
        pytest.raises(InsufficientMemoryError) as caught,
    ):
        check_training_memory(
            _unet,
            batch_size=8,
            channels=1,
            image_size=(4096, 4096),
            device=torch.device("cpu"),
            what="data.image_size=[4096, 4096] with optim.batch_size=8",
        )
    message = str(caught.value)
    assert message.startswith("data.image_size=[4096, 4096] with optim.batch_size=8 needs about ")
    assert "this CPU has 1.0 GiB available" in message


def test_a_run_that_fits_passes() -> None:
    estimate = check_training_memory(
        _unet, batch_size=2, channels=1, image_size=(32, 32), device=torch.device("cpu"), what="x"
    )
    assert 0 < estimate.total_bytes < 2**30


def test_cpu_limit_is_the_available_memory() -> None:
    found = available_memory(torch.device("cpu"))
    assert found is not None
    free, name = found
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        line = next(x for x in meminfo.read_text().splitlines() if x.startswith("MemAvailable:"))
        assert free <= int(line.split()[1]) * 1024 * 1.2  # memory moves a little between the two reads
    assert free > 0 and name == "this CPU"


def test_huge_image_size_is_refused_before_any_slice_is_fitted(tmp_path: Path) -> None:
    config = {
        "data": {
            "dataset": "synthetic",
            "image_size": [65536, 65536],
            "params": {"num_images": 4, "num_val": 2, "num_test": 2, "size": [16, 16]},
        },
        "model": {"params": {"depth": 2, "base_width": 4}},
        "optim": {"max_epochs": 1, "batch_size": 8},
        "run": {"output_dir": str(tmp_path / "run"), "device": "cpu", "quiet": True},
    }
    with (
        mock.patch("inpaintssl.data.views.fit_to_size", side_effect=AssertionError("a slice was fitted")),
        pytest.raises(InsufficientMemoryError) as caught,
    ):
        issl.finetune(config)
    message = str(caught.value)
    assert message.startswith("data.image_size=[65536, 65536] with optim.batch_size=8 (batches of 4")
    assert "TiB for training" in message
    assert not any(p.is_file() for p in (tmp_path / "run").rglob("*"))


def test_a_network_that_cannot_train_on_slices_this_small_is_named_before_training(tmp_path: Path) -> None:
    # MONAI's BasicUNet pools four times: 16 x 16 slices leave a 1 x 1 bottleneck, on which its
    # instance norm refuses to train; the trial step raised torch's bare ValueError.
    pytest.importorskip("monai")
    config = {
        "data": {
            "dataset": "synthetic",
            "params": {"num_images": 4, "num_val": 2, "num_test": 2, "size": [16, 16]},
        },
        "model": {"backbone": "monai_basic_unet", "params": {"features": [4, 4, 8, 8, 16, 4]}},
        "pretext": {"patch_size": 4, "bank_size": 4, "sampler": "random"},
        "optim": {"max_epochs": 1, "batch_size": 4},
        "run": {"output_dir": str(tmp_path / "run"), "device": "cpu", "quiet": True},
    }
    with pytest.raises(
        ConfigError,
        match=r"model\.backbone='monai_basic_unet' cannot take a training step on "
        r"16x16 slices \(data\.image_size unset\) with optim\.batch_size=4: .*ValueError",
    ) as caught:
        issl.pretrain(config)
    assert not isinstance(caught.value, InsufficientMemoryError)
    assert "raise data.image_size" in str(caught.value)
    assert not any(p.is_file() for p in (tmp_path / "run").rglob("*"))
    # The same network at 32 x 32 trains: the refusal is about the size, not the network.
    config["data"]["params"]["size"] = [32, 32]
    issl.pretrain(config)


def test_a_network_that_cannot_train_on_slices_this_small_is_named_in_batches_of_any_size(
    tmp_path: Path,
) -> None:
    # 32 x 16 x 16 pixels: the step is estimated on the meta device, where the network fails as
    # for real; the error was taken for the meta device's, small probes passed, and the run wrote
    # its folder before dying in its first step with torch's bare ValueError.
    pytest.importorskip("monai")
    config = {
        "data": {
            "dataset": "synthetic",
            "params": {"num_images": 40, "num_val": 2, "num_test": 2, "size": [16, 16]},
        },
        "model": {"backbone": "monai_basic_unet", "params": {"features": [4, 4, 8, 8, 16, 4]}},
        "optim": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 32},
        "run": {"output_dir": str(tmp_path / "run"), "device": "cpu", "quiet": True},
    }
    with pytest.raises(
        ConfigError,
        match=r"model\.backbone='monai_basic_unet' cannot take a training step on "
        r"16x16 slices \(data\.image_size unset\) with optim\.batch_size=32: .*ValueError",
    ) as caught:
        issl.finetune(config)
    assert not isinstance(caught.value, InsufficientMemoryError)
    assert not any(p.is_file() for p in (tmp_path / "run").rglob("*"))


def _check_on(dist: DistInfo, *, device: str, setting: str, free_per_process: float) -> None:
    """:func:`check_run_memory` of a 2-level U-Net on 32 slices (batch 2) for the process ``dist``
    says, with ``free_per_process`` times the estimate free on ``device``."""
    need = estimate_training_memory(
        lambda: build_backbone(
            "unet2d", {"depth": 2, "base_width": 4}, in_channels=1, out_channels=1, seed=0
        ),
        batch_size=2,
        channels=1,
        image_size=(16, 16),
    ).total_bytes
    ctx = RunContext(
        run=RunConfig(output_dir=Path("unused"), device=setting),
        device=torch.device(device),
        dist=dist,
        amp_dtype=None,
    )
    free = (int(free_per_process * need), f"the memory of {device}")
    with mock.patch("inpaintssl.training.memory_check.available_memory", return_value=free):
        check_run_memory(
            backbone="unet2d",
            params={"depth": 2, "base_width": 4},
            train_set=SyntheticShapes(split="train", num_images=32, size=(16, 16)),
            image_size=None,
            in_channels=1,
            out_channels=1,
            batch_size=2,
            ctx=ctx,
        )


def test_each_torchrun_process_is_judged_against_its_share_of_the_node_memory() -> None:
    # Four processes on a node each saw the whole host free and passed, then together needed
    # four times what each had checked.
    node_of_four = DistInfo(rank=5, local_rank=1, world_size=8, local_world_size=4)
    with pytest.raises(InsufficientMemoryError) as caught:
        _check_on(node_of_four, device="cpu", setting="cpu", free_per_process=3.5)
    message = str(caught.value)
    assert "per process; counted 4 processes on this node that share the memory of cpu" in message
    assert message.endswith("or start fewer processes per node (torchrun --nproc_per_node)")
    _check_on(node_of_four, device="cpu", setting="cpu", free_per_process=4.5)
    # Eight nodes of one process each: every process has its node to itself.
    _check_on(
        DistInfo(rank=5, world_size=8, local_world_size=1), device="cpu", setting="cpu", free_per_process=1.5
    )
    _check_on(DistInfo(), device="cpu", setting="cpu", free_per_process=1.5)


def test_torchrun_processes_share_a_card_only_when_run_device_names_one() -> None:
    # The estimate is made on the meta device and the free memory is mocked: no card is needed.
    node_of_four = DistInfo(rank=1, local_rank=1, world_size=4, local_world_size=4)
    _check_on(node_of_four, device="cuda:1", setting="auto", free_per_process=1.5)
    _check_on(node_of_four, device="cuda:1", setting="cuda", free_per_process=1.5)
    with pytest.raises(InsufficientMemoryError, match="counted 4 processes on this node that share"):
        _check_on(node_of_four, device="cuda:0", setting="cuda:0", free_per_process=1.5)


def _cgroup_files(folder: Path, **files: int | str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (folder / name.replace("_", ".", 1)).write_text(f"{value}\n")


def test_the_cgroup_allowance_is_the_least_of_v1_and_every_nested_v2_cgroup(tmp_path: Path) -> None:
    # Only the root's memory.max was read: a v1 container's limit and a Slurm step's nested v2
    # limit were missed, and a run too large for them was killed by the kernel instead of refused.
    mib = 2**20
    membership = tmp_path / "self_cgroup"
    root = tmp_path / "cgroup"
    # v2: no limit at the root (it has no memory.max), 600 MiB with 500 used two levels up.
    _cgroup_files(root / "job" / "step", memory_max=1024 * mib, memory_current=200 * mib)
    _cgroup_files(root / "job", memory_max=600 * mib, memory_current=500 * mib)
    membership.write_text("0::/job/step\n")
    assert _cgroup_allowance(root, membership) == 100 * mib
    # v1 only (a container on an older host), its cgroup mounted as the root; the host's path in
    # /proc/self/cgroup does not exist under the mount.
    v1 = tmp_path / "v1"
    _cgroup_files(v1 / "memory", memory_limit_in_bytes=400 * mib, memory_usage_in_bytes=100 * mib)
    membership.write_text("4:memory:/docker/abc\n0::/\n")
    assert _cgroup_allowance(v1, membership) == 300 * mib
    # Inactive page cache is reclaimed before the kernel kills: not counted as used.
    (v1 / "memory" / "memory.stat").write_text(f"cache {90 * mib}\ntotal_inactive_file {60 * mib}\n")
    assert _cgroup_allowance(v1, membership) == 360 * mib
    # v1's "no limit" (2**63 - 1 rounded to a page) and v2's "max" are no allowance.
    _cgroup_files(v1 / "memory", memory_limit_in_bytes=9223372036854771712)
    _cgroup_files(v1, memory_max="max", memory_current=5)
    assert _cgroup_allowance(v1, membership) is None
    assert _cgroup_allowance(tmp_path / "none", tmp_path / "missing") is None
