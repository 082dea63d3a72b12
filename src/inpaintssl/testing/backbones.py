"""The contract every backbone keeps (sec. 2.3, 2.5.1); see :mod:`inpaintssl.testing`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from inpaintssl.registry import BACKBONES, TRANSFER_STRATEGIES
from inpaintssl.testing._checks import Contract, check, combining, usable
from inpaintssl.transfer_learning import transfer
from inpaintssl.transfer_learning.transfer import BACKBONE_PARTS, backbone_parts

__all__ = ["BackboneContract"]

PARTS = BACKBONE_PARTS


class BackboneContract(Contract):
    """Checks one registered backbone; subclass it as ``Test<Something>`` and set the attributes.

    Attributes:
        backbone: Registered name to check.
        params: Extra keyword arguments for ``BACKBONES.build`` (besides channels and seed).
        in_channels: Input channels used by the checks.
        out_channels: Output channels used by the checks.
        batch_size: Batch size of the sample inputs.
        size_factors: Sample inputs are ``size_multiple * size_factors`` pixels (``H``, ``W``);
            unequal factors catch transposed axes.
        atol: Tolerance of the float32 layout comparison, absolute for outputs up to 1 in
            magnitude and relative to the largest output beyond (round-off of a reordered
            reduction grows with the values summed).
        seed: Seed used to build models.
    """

    backbone: ClassVar[str] = "unet2d"
    params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    in_channels: ClassVar[int] = 2
    out_channels: ClassVar[int] = 3
    batch_size: ClassVar[int] = 2
    size_factors: ClassVar[tuple[int, int]] = (2, 3)
    atol: ClassVar[float] = 1e-4
    seed: ClassVar[int] = 0

    # -- helpers --------------------------------------------------------------------------------
    def build(self, **overrides: Any) -> nn.Module:
        """Build the backbone with the class settings, ``overrides`` taking precedence."""
        kwargs: dict[str, Any] = {
            **self.params,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "seed": self.seed,
            **overrides,
        }
        model = BACKBONES.build(self.backbone, **kwargs)
        check(
            isinstance(model, nn.Module), f"{self.backbone}: built a {type(model).__name__}, not an nn.Module"
        )
        return model

    def size_multiple(self, model: nn.Module) -> int:
        """The model's ``size_multiple``, checked to be a positive int."""
        multiple = getattr(model, "size_multiple", None)
        check(
            isinstance(multiple, int) and not isinstance(multiple, bool) and multiple >= 1,
            f"{self.backbone}: attribute size_multiple must be an int >= 1; found {multiple!r}",
        )
        return int(multiple)  # type: ignore[arg-type]

    def sample(self, model: nn.Module, *, in_channels: int | None = None, seed: int = 0) -> torch.Tensor:
        """A seeded random input ``(batch_size, C_in, H, W)`` of a size the model accepts."""
        multiple = self.size_multiple(model)
        height, width = (multiple * f for f in self.size_factors)
        generator = torch.Generator().manual_seed(seed)
        channels = self.in_channels if in_channels is None else in_channels
        return torch.randn(self.batch_size, channels, height, width, generator=generator)

    # -- checks ---------------------------------------------------------------------------------
    def test_registered(self) -> None:
        """The name is listed by the registry."""
        check(self.backbone in BACKBONES.names(), f"{self.backbone!r} is not in {BACKBONES.names()}")

    def test_output_shape(self) -> None:
        """``(N, C_in, H, W)`` maps to raw float ``(N, C_out, H, W)`` on the input's device."""
        model = self.build()
        x = self.sample(model)
        out = model(x)
        expected = (x.shape[0], self.out_channels, *x.shape[2:])
        check(
            tuple(out.shape) == expected,
            f"{self.backbone}: output shape {tuple(out.shape)}, expected {expected}",
        )
        check(
            out.dtype == x.dtype and out.device == x.device, f"{self.backbone}: output dtype/device changed"
        )

    def test_in_and_out_channels(self) -> None:
        """Other channel counts (1 and 3 in, 1 out) build and run."""
        for c_in, c_out in ((1, 1), (3, 1)):
            model = self.build(in_channels=c_in, out_channels=c_out)
            out = model(self.sample(model, in_channels=c_in))
            check(
                out.shape[1] == c_out,
                f"{self.backbone}: in_channels={c_in}, out_channels={c_out} gave {out.shape[1]} channels",
            )

    def test_rejects_indivisible_size(self) -> None:
        """A size that is not a multiple of ``size_multiple`` raises ``ValueError`` naming both."""
        model = self.build()
        multiple = self.size_multiple(model)
        if multiple == 1:
            return
        x = self.sample(model)[..., :-1, :]
        try:
            model(x)
        except ValueError as exc:
            message = str(exc)
            check(
                str(x.shape[-2]) in message and str(multiple) in message,
                f"{self.backbone}: the error for height {x.shape[-2]} should name it and "
                f"size_multiple={multiple}; got {message!r}",
            )
            return
        raise AssertionError(
            f"{self.backbone}: input height {x.shape[-2]} (not a multiple of {multiple}) was accepted"
        )

    def test_parts_cover_every_parameter(self) -> None:
        """``encoder``, ``decoder`` and ``head`` exist, share no parameter, and hold all of them."""
        model = self.build()
        # The check every run makes when it builds a backbone (training.components.build_backbone).
        found = backbone_parts(model)
        check(not found.missing, f"{self.backbone}: missing submodule(s) {list(found.missing)}")
        check(
            not found.outside,
            f"{self.backbone}: parameters outside encoder/decoder/head: {list(found.outside)}",
        )
        owner: dict[int, str] = {}
        for part in PARTS:
            for param in getattr(model, part).parameters():
                check(
                    id(param) not in owner,
                    f"{self.backbone}: a parameter is shared by {owner.get(id(param))!r} and {part!r}",
                )
                owner[id(param)] = part
        check(
            len(owner) > 0
            and all(len(list(getattr(model, p).parameters())) > 0 for p in ("encoder", "head")),
            f"{self.backbone}: encoder and head must hold parameters",
        )

    def test_state_dict_keys_in_parts(self) -> None:
        """Every state-dict key (buffers included) starts with a part name, so transfer can sort it."""
        stray = [k for k in self.build().state_dict() if k.split(".", 1)[0] not in PARTS]
        check(not stray, f"{self.backbone}: state-dict keys outside encoder/decoder/head: {stray}")

    def test_seed_is_deterministic(self) -> None:
        """The same seed gives bit-identical tensors; another seed gives different ones."""
        first, second = self.build(seed=7).state_dict(), self.build(seed=7).state_dict()
        unequal = [k for k in first if not torch.equal(first[k], second[k])]
        check(not unequal, f"{self.backbone}: seed=7 twice gave different {unequal}")
        other = self.build(seed=8).state_dict()
        check(
            any(not torch.equal(first[k], other[k]) for k in first),
            f"{self.backbone}: seeds 7 and 8 gave identical weights",
        )

    def test_seed_leaves_global_rng_untouched(self) -> None:
        """Building with a seed neither reads nor reseeds the global torch RNG."""
        before = torch.random.get_rng_state()
        self.build(seed=3)
        check(
            torch.equal(before, torch.random.get_rng_state()),
            f"{self.backbone}: building the model changed the global torch RNG state",
        )

    def test_gradient_flows_to_every_parameter(self) -> None:
        """A loss on the output gives every parameter a finite, non-zero gradient."""
        model = self.build()
        x = self.sample(model)
        target = torch.randn(
            x.shape[0], self.out_channels, *x.shape[2:], generator=torch.Generator().manual_seed(1)
        )
        (model(x) - target).square().mean().backward()
        dead = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        check(not dead, f"{self.backbone}: no gradient reached {dead}")
        bad = [
            n for n, p in model.named_parameters() if p.grad is not None and not bool(p.grad.isfinite().all())
        ]
        check(not bad, f"{self.backbone}: non-finite gradients in {bad}")

    def test_channels_last_matches_default(self) -> None:
        """``channels_last`` weights and inputs give the default layout's output."""
        reference_model, model = self.build(), self.build()
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = self.sample(model)
        with torch.no_grad():
            expected = reference_model(x)
            out = model(x.contiguous(memory_format=torch.channels_last))
        # The layouts reduce in other orders (oneDNN picks kernels by CPU): float32 round-off of a
        # deep encoder's outputs near 5 reaches 1.5e-4, 3e-5 of the output's scale.
        scale = max(1.0, float(expected.abs().max()))
        check(
            torch.allclose(out, expected, atol=self.atol * scale, rtol=1e-4),
            f"{self.backbone}: channels_last differs by {(out - expected).abs().max().item():.3g}",
        )

    def test_autocast_bfloat16(self) -> None:
        """A forward pass under CPU bfloat16 autocast is finite and close to float32 (inference mode)."""
        # Inference mode: batch statistics of a tiny batch (BatchNorm at the coarsest level sees a
        # few values) would turn bfloat16 rounding into large output changes in any precision.
        model = self.build().eval()
        x = self.sample(model)
        with torch.no_grad():
            expected = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
        check(out.shape == expected.shape, f"{self.backbone}: autocast changed the output shape")
        error = (out.float() - expected).abs().mean()
        check(
            bool(out.isfinite().all()) and bool(error <= 0.05 * expected.abs().mean() + 1e-3),
            f"{self.backbone}: bfloat16 autocast output is off by {error.item():.3g} on average",
        )

    def test_transfer_from_inpainting_model(self) -> None:
        """An inpainting model's weights transfer into a segmentation model with every usable strategy.

        Every built-in strategy, and every installed plugin strategy that loads and builds;
        another package's broken plugin is left out, and named in the failure messages.
        """
        pretrained = self.build(out_channels=self.in_channels, seed=1)
        strategies = usable(TRANSFER_STRATEGIES)
        for name in strategies.names:
            model = self.build(seed=2)
            with combining():
                report = transfer(pretrained, model, weights=name)
            source, target = pretrained.state_dict(), model.state_dict()
            differing = [k for k in report.copied if not torch.equal(source[k], target[k])]
            check(
                bool(report.copied) and not differing,
                f"{self.backbone}: transfer {name!r} copied {len(report.copied)} tensors, "
                f"of which differ from the pretrained ones: {differing}{strategies.note()}",
            )

    def test_cuda_autocast(self) -> None:
        """On CUDA: channels_last forward and backward under float16 autocast are finite (skipped on CPU)."""
        if not torch.cuda.is_available():
            import pytest

            pytest.skip("needs CUDA")
        model = self.build().cuda().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = self.sample(model).cuda().contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(x)
            loss = out.float().square().mean()
        loss.backward()
        check(out.device.type == "cuda", f"{self.backbone}: output left the GPU")
        check(bool(out.isfinite().all()), f"{self.backbone}: non-finite output under CUDA autocast")
        bad = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.isfinite().all())]
        check(not bad, f"{self.backbone}: missing or non-finite gradients under CUDA autocast: {bad}")
