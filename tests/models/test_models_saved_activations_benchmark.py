"""``benchmarks/bench_saved_activations.py`` counts the bytes a training step keeps for backward:
checked against counts worked by hand, against the real step, and for the batch size's linearity."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings
    return importlib.import_module("bench_saved_activations")


def _conv_norm_relu_conv(channels: int, groups: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1, bias=False),
        nn.GroupNorm(groups, channels),
        nn.ReLU(),
        nn.Conv2d(channels, 1, 3, padding=1, bias=False),
    )


def _by_hand(policy: str, *, n: int, c: int, g: int, pixels: int) -> int:
    """Bytes kept by conv -> GroupNorm -> ReLU -> conv and the L2 loss, tensor by tensor."""
    loss = 4 * n * pixels + 4 * n * pixels  # the output as float32, and the image (the target)
    stats = 2 * 4 * n * g  # GroupNorm's float32 mean and 1/std per sample and group
    if policy == "fp32":
        # conv 1 keeps the image itself (the loss's target: one storage), GroupNorm its input,
        # ReLU its output (conv 2's input: one storage), the loss the network's output.
        return 4 * n * pixels + 4 * n * c * pixels + stats + 4 * n * c * pixels + 4 * n * pixels
    weights = 2 * c * 9 + 2 * c * 9  # each convolution's bf16 copy of its kernel
    image = 2 * n * pixels  # conv 1's bf16 copy of the image
    if policy == "cuda":
        # GroupNorm keeps its float32 copy of conv 1's output, ReLU its float32 output, and conv 2
        # its bf16 copy of that.
        activations = 4 * n * c * pixels + 4 * n * c * pixels + 2 * n * c * pixels
    else:
        # All bf16: GroupNorm's input, and ReLU's output, which conv 2 takes as it is.
        activations = 2 * n * c * pixels + 2 * n * c * pixels
    return weights + image + activations + stats + loss


@pytest.mark.parametrize("fake", [True, False], ids=["fake", "real"])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("policy", ["cuda", "cpu", "fp32"])
def test_a_small_network_keeps_the_bytes_worked_by_hand(
    bench: ModuleType, policy: str, n: int, fake: bool
) -> None:
    size, channels, groups = 8, 4, 2
    dtype = None if policy == "fp32" else torch.bfloat16
    counted = bench.saved_bytes(
        _conv_norm_relu_conv(channels, groups),
        size=size,
        batch=n,
        dtype=dtype,
        policy="cpu" if policy == "fp32" else policy,
        fake=fake,
    )
    by_hand = _by_hand(policy, n=n, c=channels, g=groups, pixels=size * size)
    if fake and policy == "cpu":
        by_hand -= 2 * n * groups * 2  # the meta function's statistics are bf16, the CPU kernel's float32
    assert counted["total"] == by_hand
    assert counted["total"] == sum(v for k, v in counted.items() if k != "total")


def _networks(bench: ModuleType) -> list[tuple[str, Callable[[], nn.Module]]]:
    networks = [
        ("library", bench.library_unet),
        ("library_norm_autocast", lambda: bench.library_unet(norm_precision="autocast")),
    ]
    try:
        bench.monai_basicunet()
    except ImportError:
        return networks
    return [*networks, ("monai", bench.monai_basicunet)]


def _float32_statistics(model: nn.Module, *, n: int, policy: str) -> int:
    """Bytes the real CPU kernels keep in float32 where the fake count has bf16: each norm's mean
    and 1/std per sample and group (GroupNorm with float32 weights on a bf16 input) or channel."""
    extra = 0
    for module in model.modules():
        if isinstance(module, nn.GroupNorm) and getattr(module, "precision", "float32") == "float32":
            # Under the CUDA policy the input is cast to float32, and the fake count has float32 too.
            extra += 2 * n * module.num_groups * 2 if policy == "cpu" else 0
        elif isinstance(module, nn.modules.instancenorm._InstanceNorm):
            extra += 2 * n * module.num_features * 2
    return extra


@pytest.mark.parametrize("policy", ["cuda", "cpu"])
def test_the_fake_count_is_the_real_steps_count_but_for_the_norms_statistics(
    bench: ModuleType, policy: str
) -> None:
    for name, build in _networks(bench):
        real = bench.saved_bytes(build(), size=32, batch=2, dtype=torch.bfloat16, policy=policy, fake=False)
        fake = bench.saved_bytes(build(), size=32, batch=2, dtype=torch.bfloat16, policy=policy, fake=True)
        extra = _float32_statistics(build(), n=2, policy=policy)
        assert real["total"] - fake["total"] == extra, name
        assert real["torch.float32"] - fake["torch.float32"] == 2 * extra, name


def test_float32_norms_keep_more_and_autocast_norms_ignore_the_policy(bench: ModuleType) -> None:
    def count(build: Callable[[], nn.Module], policy: str) -> int:
        return int(bench.saved_bytes(build(), size=32, batch=2, dtype=torch.bfloat16, policy=policy)["total"])

    def autocast_norms() -> nn.Module:
        return bench.library_unet(norm_precision="autocast")

    plain = bench.library_unet
    # A norm that normalises in bf16 itself never reaches autocast's policy.
    assert count(autocast_norms, "cuda") == count(autocast_norms, "cpu")
    assert count(plain, "cuda") > count(plain, "cpu")
    assert count(plain, "cuda") > count(autocast_norms, "cuda")


def test_a_step_keeps_its_per_step_bytes_plus_the_per_image_bytes_per_image(bench: ModuleType) -> None:
    for name, build in _networks(bench):
        split = bench.per_image_and_fixed(build, size=32, dtype=torch.bfloat16, policy="cuda")
        assert split["per_image"] > 0 and split["per_step"] >= 0, name
        for batch in (3, 5):
            counted = bench.saved_bytes(build(), size=32, batch=batch, dtype=torch.bfloat16, policy="cuda")
            assert counted["total"] == split["per_step"] + batch * split["per_image"], (name, batch)


def test_an_unknown_policy_is_refused_naming_the_choices(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"policy='tpu' is invalid; expected one of cuda, cpu"):
        bench.saved_bytes(nn.Conv2d(1, 1, 3), size=8, batch=1, dtype=None, policy="tpu")


def test_the_record_has_every_arm_at_the_batch_asked_for(bench: ModuleType, tmp_path: Path) -> None:
    output = tmp_path / "saved.json"
    record = bench.main(["--size", "32", "--batch", "4", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(json.dumps(record, default=str))
    names = [name for name, _ in _networks(bench)]
    assert list(record["arms"]) == names
    for arm in record["arms"].values():
        assert arm["at_batch"] == arm["per_step"] + 4 * arm["per_image"]
        assert sum(arm["per_image_by_dtype"].values()) == arm["per_image"]
    if "monai" in names:
        monai = record["arms"]["monai"]["per_image"]
        target = record["targets"]["library_norm_autocast per_image <= monai per_image"]
        assert target == (record["arms"]["library_norm_autocast"]["per_image"] <= monai)
        assert record["arms"]["monai"]["per_image_vs_monai"] == 1.0
