"""The contract every loss keeps (App. A.1, eqs. A1 and A2); see :mod:`inpaintssl.testing`.

Fine-tuning trains with a registered segmentation loss (a
:class:`~inpaintssl.losses.SegmentationLoss`, ``loss.name``), which also decides the network's
output channels, the activation a checkpoint records for ``inpaintssl predict`` and the hard
predictions validation scores; pretraining restores images with the inpainting loss ``l2``
(eq. A1). The trainer weights each batch's loss by its rows, averages gradients over ``torchrun``
ranks, runs the loss under autocast and scales it for float16: a loss that breaks one of those
assumptions trains, silently, on something else. These checks hold a plugin loss to them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from inpaintssl.inference.labelling import label_map
from inpaintssl.losses.base import SegmentationLoss
from inpaintssl.registry import LOSSES
from inpaintssl.testing._checks import Contract, check

__all__ = ["LossContract"]

ACTIVATIONS = ("sigmoid", "softmax")
"""The output layouts the trainer, the checkpoint metadata and ``inpaintssl predict`` know."""

SEGMENTATION_CHECKS = ("test_activation_and_out_channels", "test_predict_onehot_is_what_predict_gives")
"""The checks that apply to segmentation losses only (an inpainting loss has no activation)."""

_CONFIDENT = 30.0
"""Logits of +-15 for a perfect prediction: a sigmoid of 1 - 3e-7, a softmax of 1 - 1e-13."""


class LossContract(Contract):
    """Checks one registered loss; subclass it as ``Test<Something>`` and set the attributes.

    A :class:`~inpaintssl.losses.SegmentationLoss` maps logits ``(N, C_out, H, W)`` and one-hot
    targets ``(N, K, H, W)`` to a scalar; any other registered loss is an inpainting loss (like
    ``l2``), mapping a restored and an original image of one shape to a scalar. The checks
    in :data:`SEGMENTATION_CHECKS` skip for an inpainting loss; the others check either kind on
    inputs of its own.

    Attributes:
        loss: Registered name to check.
        params: Keyword arguments for ``LOSSES.build`` (``loss.params`` in a fine-tuning config).
        num_classes: Foreground classes ``K`` of the segmentation samples (at least 1).
        image_channels: Channels of the inpainting samples.
        batch_size: Images in a sample batch (at least 2, so that order and repetition matter).
        size: ``(H, W)`` of the samples; ``W`` must exceed ``num_classes``, so that the first
            image of every sample holds every class.
        seed: Seed of the random samples.

    Example:
        >>> class TestDice(LossContract):
        ...     loss = "dice"
        ...     params = {"activation": "softmax"}
        >>> TestDice().test_perfect_prediction_scores_lowest()
        >>> "test_batch_size_does_not_scale_the_loss" in LossContract.check_names()
        True
    """

    loss: ClassVar[str] = "dice"
    params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    num_classes: ClassVar[int] = 3
    image_channels: ClassVar[int] = 2
    batch_size: ClassVar[int] = 4
    size: ClassVar[tuple[int, int]] = (8, 12)
    seed: ClassVar[int] = 0

    @classmethod
    def segmentation_checks(cls) -> list[str]:
        """Names of the checks that apply to segmentation losses only."""
        return [name for name in cls.check_names() if name in SEGMENTATION_CHECKS]

    # -- helpers --------------------------------------------------------------------------------
    def build(self, **overrides: Any) -> nn.Module:
        """Build the loss from the registry with :attr:`params`, ``overrides`` taking precedence."""
        loss = LOSSES.build(self.loss, **{**self.params, **overrides})
        check(isinstance(loss, nn.Module), f"{self.loss}: built a {type(loss).__name__}, not an nn.Module")
        return loss

    def segmentation_loss(self) -> SegmentationLoss:
        """The loss, for a check of segmentation losses only (which skips for an inpainting loss)."""
        loss = self.build()
        if not isinstance(loss, SegmentationLoss):
            import pytest  # only here: importing this module must not need pytest

            pytest.skip(f"{self.loss} builds a {type(loss).__name__}: an inpainting loss has no activation")
        return loss

    def sample(
        self, loss: nn.Module, *, seed: int | None = None, empty_class: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded random ``(prediction, target)`` pair in the loss's layout.

        Segmentation: random logits ``(N, out_channels(K), H, W)`` and a one-hot target ``(N, K,
        H, W)`` with background pixels, whose first image holds every class (unless
        ``empty_class``: then the last class occurs nowhere in the batch, as in a batch of slices
        without the lesion). Inpainting: two random images ``(N, image_channels, H, W)``.
        """
        generator = torch.Generator().manual_seed(self.seed if seed is None else seed)
        height, width = self.size
        if not isinstance(loss, SegmentationLoss):
            shape = (self.batch_size, self.image_channels, height, width)
            return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
        k = self.num_classes
        labels = torch.randint(0, k + 1, (self.batch_size, height, width), generator=generator)
        labels[0, 0, : k + 1] = torch.arange(k + 1)
        if empty_class:
            labels[labels == k] = 0
        target = torch.stack([labels == c + 1 for c in range(k)], dim=1).float()
        logits = torch.randn(self.batch_size, loss.out_channels(k), height, width, generator=generator)
        return logits, target

    def perfect(self, loss: nn.Module, target: torch.Tensor) -> torch.Tensor:
        """The prediction that matches ``target``: confident logits of its layout, or the image."""
        if not isinstance(loss, SegmentationLoss):
            return target.clone()
        check(loss.activation in ACTIVATIONS, f"{self.loss}: activation {loss.activation!r} is unknown")
        layout = target
        if loss.activation == "softmax":
            layout = torch.cat(((1 - target.sum(dim=1, keepdim=True)).clamp(min=0), target), dim=1)
        return _CONFIDENT * (layout - 0.5)

    def value(self, loss: nn.Module, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``loss(prediction, target)``, checked to be a 0-d floating-point tensor."""
        out = loss(prediction, target)
        check(
            isinstance(out, torch.Tensor) and out.ndim == 0 and out.is_floating_point(),
            f"{self.loss}: returned {_describe(out)}; expected a 0-d floating-point tensor (a scalar loss)",
        )
        return out  # type: ignore[no-any-return]

    # -- checks ---------------------------------------------------------------------------------
    def test_builds_and_holds_no_tensors(self) -> None:
        """The name is listed and builds with :attr:`params` into a module without parameters or buffers.

        The trainer's optimiser and ``DistributedDataParallel`` take the network's parameters
        only, so a loss's own would never train nor be synchronised across ranks, and the trainer
        never moves the loss to the device: a buffer would stay on the CPU beside CUDA logits.
        """
        check(self.loss in LOSSES.names(), f"{self.loss!r} is not in {LOSSES.names()}")
        loss = self.build()
        held = [f"parameter {n}" for n, _ in loss.named_parameters()]
        held += [f"buffer {n}" for n, _ in loss.named_buffers()]
        check(
            not held,
            f"{self.loss}: the loss holds {', '.join(held)}; nothing trains or moves a loss's own tensors "
            "(create them from the inputs' device and dtype in forward)",
        )

    def test_activation_and_out_channels(self) -> None:
        """``activation`` is ``sigmoid`` with ``K`` output channels, or ``softmax`` with ``K + 1``.

        Fine-tuning builds the network with ``out_channels(K)`` and records ``activation`` in the
        checkpoint; ``inpaintssl predict`` reads the classes back from that layout alone.
        """
        loss = self.segmentation_loss()
        check(
            loss.activation in ACTIVATIONS,
            f"{self.loss}: activation is {loss.activation!r}; expected one of {ACTIVATIONS}",
        )
        extra = 1 if loss.activation == "softmax" else 0
        for k in (1, 2, 3, 5):
            got = loss.out_channels(k)
            check(
                got == k + extra,
                f"{self.loss}: out_channels({k}) is {got!r}; a {loss.activation} head has {k + extra} "
                "output channels",
            )

    def test_scalar_finite_non_negative_and_differentiable(self) -> None:
        """A finite scalar ``>= 0`` whose gradient reaches the prediction, finite and not all zero.

        The step backpropagates the scalar; the loop stops on a non-finite loss; the convergence
        report measures float noise relative to the loss's level, which a loss with a floor of
        0 keeps meaningful. Also with a class absent from the whole batch (a batch of slices
        without the lesion): batch-aggregate Dice must not divide 0 by 0 there.
        """
        loss = self.build()
        for empty_class in (False, True) if isinstance(loss, SegmentationLoss) else (False,):
            prediction, target = self.sample(loss, empty_class=empty_class)
            prediction.requires_grad_(True)
            out = self.value(loss, prediction, target)
            where = f"{self.loss}" + (" with a class absent from the batch" if empty_class else "")
            number = float(out.detach())
            check(math.isfinite(number), f"{where}: the loss is {number}")
            check(number >= 0, f"{where}: the loss is {number:.6g}; expected >= 0")
            check(out.requires_grad, f"{where}: the loss does not depend on the prediction through autograd")
            out.backward()  # type: ignore[no-untyped-call]
            grad = prediction.grad if prediction.grad is not None else torch.full_like(prediction, math.nan)
            check(
                bool(torch.isfinite(grad).all()),
                f"{where}: the prediction's gradient is missing or not finite",
            )
            check(bool(grad.abs().sum() > 0), f"{where}: the prediction's gradient is zero")

    def test_perfect_prediction_scores_lowest(self) -> None:
        """Matching the target scores below a random prediction, and near 0.

        Training minimises the loss towards the target. Segmentation: confident logits of the
        target's layout score below 1e-3. Inpainting: identical images score 0 (to 1e-6) and any
        difference, one pixel of the last channel included, more. Early stopping's ``min_delta``
        and the convergence report's noise floor read the loss on that scale.
        """
        loss = self.build()
        prediction, target = self.sample(loss)
        best = float(self.value(loss, self.perfect(loss, target), target))
        random = float(self.value(loss, prediction, target))
        check(
            best < random,
            f"{self.loss}: a perfect prediction scores {best:.6g}, not below a random one ({random:.6g})",
        )
        floor = 1e-3 if isinstance(loss, SegmentationLoss) else 1e-6
        check(
            0 <= best < floor, f"{self.loss}: a perfect prediction scores {best:.6g}; expected 0 to {floor}"
        )
        if not isinstance(loss, SegmentationLoss):
            one_pixel = target.clone()
            one_pixel[-1, -1, -1, -1] += 0.5
            moved = float(self.value(loss, one_pixel, target))
            check(moved > best, f"{self.loss}: one pixel changed scores {moved:.6g}, as identical images do")

    def test_predict_onehot_is_what_predict_gives(self) -> None:
        """``predict_onehot``: float32 ``(N, K, H, W)`` in {0, 1}, the label rule of ``inpaintssl predict``.

        Validation Dice and the test metrics score these hard predictions; a checkpoint records
        only the activation, from which :func:`~inpaintssl.inference.labelling.label_map` labels
        new images (sigmoid: each class whose logit is above 0; softmax: the arg-max channel,
        background dropped). A loss with its own rule would report Dice for predictions
        ``predict`` never makes. A perfect prediction gives the target back.
        """
        loss = self.segmentation_loss()
        logits, target = self.sample(loss)
        onehot = loss.predict_onehot(logits)
        expected_shape = tuple(target.shape)
        check(
            isinstance(onehot, torch.Tensor) and tuple(onehot.shape) == expected_shape,
            f"{self.loss}: predict_onehot gave {_describe(onehot)}; expected shape {expected_shape}",
        )
        check(onehot.dtype == torch.float32, f"{self.loss}: predict_onehot gave {onehot.dtype}, not float32")
        check(
            bool(((onehot == 0) | (onehot == 1)).all()),
            f"{self.loss}: predict_onehot gave values other than 0 and 1",
        )
        if loss.activation == "sigmoid":
            expected = (logits > 0).float()
        else:
            labels = label_map(logits, activation="softmax")
            expected = torch.stack([labels == c + 1 for c in range(self.num_classes)], dim=1).float()
        differ = int((onehot != expected).sum())
        check(
            differ == 0,
            f"{self.loss}: predict_onehot differs from inpaintssl predict's {loss.activation} rule in "
            f"{differ} of {expected.numel()} values",
        )
        check(
            torch.equal(loss.predict_onehot(self.perfect(loss, target)), target),
            f"{self.loss}: predict_onehot of a perfect prediction is not the target",
        )

    def test_wrong_shapes_are_refused_naming_them(self) -> None:
        """Mismatched inputs raise ``ValueError`` naming the shapes (or the channel counts).

        A network built for another class count or activation, an integer label map given for a
        one-hot target, or a target of one image beside a batch would otherwise fail with
        PyTorch's broadcasting message, naming neither input, or broadcast silently into the
        loss of something else.
        """
        loss = self.build()
        prediction, target = self.sample(loss)
        n, c, height, width = prediction.shape
        cases: list[tuple[str, torch.Tensor, torch.Tensor, tuple[str, ...]]] = [
            (f"a target of one image for a batch of {n}", prediction, target[:1], ()),
            ("one image fewer in the target", prediction, target[1:], ()),
            ("a narrower target", prediction, target[..., :-1], ()),
        ]
        if isinstance(loss, SegmentationLoss):
            cases.append(("a label map for a one-hot target", prediction, target.argmax(dim=1), ()))
            wider = torch.randn(n, c + 1, height, width)
            cases.append(("logits with one channel too many", wider, target, (str(c + 1), str(c))))
        else:
            cases.append(
                ("a prediction with one channel more", torch.randn(n, c + 1, height, width), target, ())
            )
        for what, bad_prediction, bad_target, named in cases:
            named = named or (str(tuple(bad_prediction.shape)), str(tuple(bad_target.shape)))
            try:
                loss(bad_prediction, bad_target)
            except ValueError as exc:
                missing = [word for word in named if word not in str(exc)]
                check(
                    not missing,
                    f"{self.loss}: the error for {what} does not name {', '.join(missing)}: {str(exc)!r}",
                )
                continue
            except Exception as exc:  # any other error is the defect being checked
                raise AssertionError(
                    f"{self.loss}: {what} raised {type(exc).__name__} ({exc}); expected a ValueError "
                    "naming the shapes"
                ) from exc
            raise AssertionError(
                f"{self.loss}: {what} was accepted: shapes {tuple(bad_prediction.shape)} and "
                f"{tuple(bad_target.shape)}"
            )

    def test_deterministic_and_leaves_global_rng_alone(self) -> None:
        """The same inputs give bit-identical values, from one instance or another; no RNG is drawn.

        ``run.deterministic`` runs, and a resumed run matching an uninterrupted one, need the loss
        to be a function of its inputs; drawing from the global RNG would also shift every random
        draw that follows it.
        """
        loss = self.build()
        prediction, target = self.sample(loss)
        before = torch.random.get_rng_state()
        first = self.value(loss, prediction, target)
        check(
            torch.equal(torch.random.get_rng_state(), before),
            f"{self.loss}: computing the loss changed the global torch RNG state",
        )
        for again, which in ((loss, "the same instance"), (self.build(), "another instance")):
            value = self.value(again, prediction, target)
            check(
                torch.equal(value, first),
                f"{self.loss}: {which} gave {value.item()!r} for inputs that gave {first.item()!r}",
            )

    def test_leaves_its_inputs_untouched(self) -> None:
        """Neither the prediction nor the target changes, with or without gradients.

        The objective computes the loss of a batch's real rows (under ``no_grad``) from the very
        output and label tensors the step's loss then reads, and validation scores the same logits
        again for Dice.
        """
        loss = self.build()
        prediction, target = self.sample(loss)
        kept = (prediction.clone(), target.clone())
        with torch.no_grad():
            self.value(loss, prediction, target)
        check(torch.equal(prediction, kept[0]), f"{self.loss}: the loss modified the prediction (no_grad)")
        check(torch.equal(target, kept[1]), f"{self.loss}: the loss modified the target (no_grad)")
        leaf = prediction.clone().requires_grad_(True)
        self.value(loss, leaf, target).backward()  # type: ignore[no-untyped-call]
        check(torch.equal(leaf.detach(), kept[0]), f"{self.loss}: the loss modified the prediction")
        check(torch.equal(target, kept[1]), f"{self.loss}: the loss modified the target")

    def test_half_precision_gives_a_float32_loss(self) -> None:
        """Half inputs and CPU bfloat16 autocast give a float32 loss equal to float32's.

        The step runs the loss under autocast and, for float16, scales it by up to 65536 in
        ``GradScaler``: a half-precision loss would overflow there, and sums over whole images
        lose most of their digits in bfloat16. Half inputs (a network's output under autocast,
        not cast first) are summed in float32 too, as the built-in losses do.
        """
        loss = self.build()
        prediction, target = self.sample(loss)
        for dtype in (torch.float16, torch.bfloat16):
            half_prediction, half_target = prediction.to(dtype), target.to(dtype)
            out = self.value(loss, half_prediction, half_target)
            check(out.dtype == torch.float32, f"{self.loss}: {dtype} inputs gave a {out.dtype} loss")
            reference = self.value(loss, half_prediction.float(), half_target.float())
            check(
                torch.allclose(out, reference, rtol=1e-4, atol=1e-5),
                f"{self.loss}: {dtype} inputs gave {out.item():.6g}; the same values in float32 "
                f"{reference.item():.6g}",
            )
        reference = self.value(loss, prediction, target)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.value(loss, prediction, target)
        check(out.dtype == torch.float32, f"{self.loss}: under bfloat16 autocast the loss is {out.dtype}")
        check(
            torch.allclose(out, reference, rtol=1e-3, atol=1e-4),
            f"{self.loss}: under bfloat16 autocast {out.item():.6g}, without {reference.item():.6g}",
        )

    def test_batch_order_does_not_matter(self) -> None:
        """The images of a batch in reverse order give the same loss (to float round-off).

        Every epoch shuffles the training set and ``torchrun`` deals it to the ranks in another
        order: a loss that weighs images by their place trains on some more than others.
        """
        loss = self.build()
        prediction, target = self.sample(loss)
        value = self.value(loss, prediction, target)
        flipped = self.value(loss, prediction.flip(0), target.flip(0))
        check(
            torch.allclose(flipped, value, rtol=1e-5, atol=1e-6),
            f"{self.loss}: the batch in reverse order scores {flipped.item():.6g}; in order "
            f"{value.item():.6g}",
        )

    def test_batch_size_does_not_scale_the_loss(self) -> None:
        """A batch repeated scores as the batch itself; so does one image, alone or repeated.

        The trainer weights each batch's loss by its rows in ``train_loss`` and ``val_loss`` (the
        last batch of an epoch is smaller, a ``torchrun`` rank's padding rows are left out, and
        a batch's real rows are scored alone), and ``DistributedDataParallel`` averages the ranks'
        gradients: both take the loss to be a mean over the batch, whose scale does not grow with
        the batch size (a per-image mean, or a batch-aggregate ratio like eq. A2).
        """
        loss = self.build()
        prediction, target = self.sample(loss)
        for rows, what in ((len(prediction), "the batch"), (1, "its first image")):
            part_prediction, part_target = prediction[:rows], target[:rows]
            value = self.value(loss, part_prediction, part_target)
            check(bool(torch.isfinite(value)), f"{self.loss}: {what} alone scores {value.item()}")
            repeated = self.value(loss, part_prediction.repeat(2, 1, 1, 1), part_target.repeat(2, 1, 1, 1))
            check(
                torch.allclose(repeated, value, rtol=1e-5, atol=1e-6),
                f"{self.loss}: {what} twice scores {repeated.item():.6g}, once {value.item():.6g}: the "
                "loss must not grow with the batch size",
            )

    def test_unknown_parameter_is_refused_by_name(self) -> None:
        """The registry refuses a misspelt parameter naming the loss, the field and the parameter.

        It can only when the factory's signature lists its parameters: a loss that takes
        ``**kwargs`` (or keeps ``nn.Module``'s ``*args, **kwargs``) fails inside its constructor
        instead, naming neither the ``loss.params`` field nor the loss.
        """
        expected = f"loss.params: losses {self.loss!r}: invalid parameters ['no_such_parameter']"
        try:
            LOSSES.build_from(
                self.loss, {**self.params, "no_such_parameter": 1}, field="loss.params", set_by_caller={}
            )
        except TypeError as exc:
            check(expected in str(exc), f"{self.loss}: the error {str(exc)!r} does not contain {expected!r}")
            return
        raise AssertionError(f"{self.loss}: the parameter no_such_parameter=1 was accepted")

    def test_cuda_matches_cpu(self) -> None:
        """On CUDA (skipped without one): half inputs and float16 autocast give float32's value.

        The float32 loss of a CUDA step under float16 autocast is what ``GradScaler`` scales.
        """
        if not torch.cuda.is_available():
            import pytest  # only here: importing this module must not need pytest

            pytest.skip("needs CUDA")
        loss = self.build()
        prediction, target = self.sample(loss)
        expected = float(self.value(loss, prediction, target))
        cuda_prediction, cuda_target = prediction.cuda(), target.cuda()
        got = self.value(loss, cuda_prediction.half(), cuda_target.half())
        check(got.device.type == "cuda", f"{self.loss}: the loss of CUDA inputs left the GPU")
        check(got.dtype == torch.float32, f"{self.loss}: float16 inputs on CUDA gave a {got.dtype} loss")
        check(
            abs(float(got) - expected) <= 1e-3 + 1e-2 * abs(expected),
            f"{self.loss}: float16 on CUDA gives {float(got):.6g}, float32 on the CPU {expected:.6g}",
        )
        with torch.autocast("cuda", dtype=torch.float16):
            scaled = self.value(loss, cuda_prediction, cuda_target)
        check(
            scaled.dtype == torch.float32,
            f"{self.loss}: under CUDA float16 autocast the loss is {scaled.dtype}",
        )
        check(
            abs(float(scaled) - expected) <= 1e-3 + 1e-2 * abs(expected),
            f"{self.loss}: under CUDA float16 autocast {float(scaled):.6g}; float32 on the CPU "
            f"{expected:.6g}",
        )


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
