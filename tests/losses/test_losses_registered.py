"""Every registered loss, plugins included, keeps the loss contract; each check fails on a loss breaking it.

A plugin loss is tested by this suite the moment it is installed; its authors run the same checks
with their own parameters by subclassing :class:`inpaintssl.testing.LossContract`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import torch

from inpaintssl.losses import DiceLoss, L2Loss, SegmentationLoss, l2_loss
from inpaintssl.registry import LOSSES, PluginLoadError
from inpaintssl.testing import LossContract


def _is_segmentation_loss(name: str) -> bool:
    """Whether loss ``name`` is a :class:`SegmentationLoss`, told from its factory without building it.

    Nothing is built at collection, so one plugin loss with required parameters (or a broken one)
    fails its own tests instead of the collection of this whole module. A factory function cannot
    be told apart without calling it; it is checked as a segmentation loss, whose segmentation
    checks then skip if the loss it builds is not one.
    """
    try:
        factory = LOSSES.get(name)
    except PluginLoadError:
        return True  # listed, so that the import error fails a test of its own
    return not isinstance(factory, type) or issubclass(factory, SegmentationLoss)


SEGMENTATION_LOSSES = [n for n in LOSSES.names() if _is_segmentation_loss(n)]

# The built-ins' other output layouts: softmax is a head of its own (K + 1 channels, background first).
VARIANTS: list[tuple[str, Mapping[str, Any]]] = [
    ("dice", {"activation": "softmax"}),
    ("dice", {"activation": "softmax", "include_background": True}),
    ("dice_ce", {"activation": "softmax", "ce_weight": 0.5}),
]


def _contract(name: str, params: Mapping[str, Any] | None = None) -> LossContract:
    return type(f"Contract_{name}", (LossContract,), {"loss": name, "params": dict(params or {})})()


def _cases(names: list[str], variants: list[tuple[str, Mapping[str, Any]]]) -> list[Any]:
    """Every (name, params, check) a loss of that kind is held to; ids read ``name[-params]-check``."""
    cases = []
    for name, params in [*((n, {}) for n in names), *variants]:
        checks = LossContract.check_names()
        if name not in SEGMENTATION_LOSSES:
            checks = [c for c in checks if c not in LossContract.segmentation_checks()]
        label = "-".join([name, *(f"{k}={v}" for k, v in params.items())])
        cases += [pytest.param(name, params, check, id=f"{label}-{check}") for check in checks]
    return cases


@pytest.mark.parametrize(("name", "params", "check"), _cases(LOSSES.names(), VARIANTS))
def test_registered_loss_keeps_the_contract(name: str, params: Mapping[str, Any], check: str) -> None:
    getattr(_contract(name, params), check)()


def test_builtin_names_are_registered() -> None:
    assert {"l2", "dice", "dice_ce"} <= set(LOSSES.names())


def test_dice_is_a_segmentation_loss_and_l2_is_not() -> None:
    assert "dice" in SEGMENTATION_LOSSES and "l2" not in SEGMENTATION_LOSSES


def test_segmentation_checks_are_left_out_for_an_inpainting_loss_and_skip_there() -> None:
    ids = [case.id for case in _cases(["l2", "dice"], [])]
    segmentation = LossContract.segmentation_checks()
    assert segmentation == ["test_activation_and_out_channels", "test_predict_onehot_is_what_predict_gives"]
    assert not [i for i in ids if i.startswith("l2-") and i.split("-", 1)[1] in segmentation]
    assert {f"dice-{check}" for check in segmentation} <= set(ids)
    # A plugin author's subclass runs every check; for an inpainting loss these two skip, saying why.
    with pytest.raises(pytest.skip.Exception, match="an inpainting loss has no activation"):
        _contract("l2").test_activation_and_out_channels()


@pytest.mark.parametrize("name", SEGMENTATION_LOSSES)
@pytest.mark.parametrize(
    ("scale", "found"), [(255.0, "from 0 to 255"), (-1.0, "from -1 to 0"), (float("nan"), "nan")]
)
def test_a_target_outside_zero_to_one_is_refused_by_every_segmentation_loss(
    name: str, scale: float, found: str
) -> None:
    # Was: a 0/255 mask scored a loss of -0.99 (Dice) or -1271 (Dice + CE) for a perfect
    # prediction, falling without bound as the logits grew: eq. (A2) is bounded for Y in [0, 1] only.
    contract = _contract(name)
    loss = contract.segmentation_loss()
    logits, target = contract.sample(loss)
    with pytest.raises(ValueError, match="target_onehot holds values") as refused:
        loss(logits, target * scale)
    assert found in str(refused.value) and "divide 0/255 masks by 255" in str(refused.value)
    # Soft targets inside [0, 1] (label smoothing) and boolean masks are taken.
    assert torch.isfinite(loss(logits, 0.1 + 0.8 * target))
    assert torch.equal(loss(logits, target.bool()), loss(logits, target))


def test_a_label_map_in_the_target_of_one_class_is_refused() -> None:
    labels = torch.tensor([[[[0.0, 1.0], [2.0, 2.0]]]])  # classes 1 and 2 in one channel
    with pytest.raises(ValueError, match="from 0 to 2; expected one-hot values in \\[0, 1\\]"):
        DiceLoss()(torch.zeros(1, 1, 2, 2), labels)


# -- each check fails on a loss that breaks it -----------------------------------------------------
class HoldsATemperature(DiceLoss):
    """A learnable temperature: nothing would train it, and it would stay on the CPU."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.temperature = torch.nn.Parameter(torch.ones(()))

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        return super().compute(logits / self.temperature, target_onehot)


class SigmoidWithBackground(DiceLoss):
    """A sigmoid head that claims a background channel."""

    def out_channels(self, num_classes: int) -> int:
        return num_classes + 1

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        return super().compute(logits[:, 1:], target_onehot)

    def check_inputs(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> None:
        pass


class PerClass(DiceLoss):
    """Returns the per-class losses, not their mean."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        probs, target = self.dice_pair(logits, target_onehot)
        dims = (0, *range(2, probs.ndim))
        return 1 - (2 * (probs * target).sum(dims) + 1e-7) / ((probs + target).sum(dims) + 1e-7)


class HardDice(DiceLoss):
    """Dice of the hard prediction: right value, but no gradient reaches the logits."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        hard = self.predict_onehot(logits)
        return 1 - (2 * (hard * target_onehot).sum() + 1e-7) / ((hard + target_onehot).sum() + 1e-7)


class DiceScore(DiceLoss):
    """The Dice coefficient, not the loss: training would move away from the target."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        return 1 - super().compute(logits, target_onehot)


class HalfThreshold(DiceLoss):
    """Hard predictions at a logit of 0.5: not what inpaintssl predict does from the checkpoint."""

    @torch.no_grad()
    def predict_onehot(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > 0.5).to(torch.float32)


class Unchecked(DiceLoss):
    """Eq. A2 written out in ``forward``, skipping the shape checks: a target of one image broadcasts."""

    def forward(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(logits.float())
        intersection = (probs * target_onehot).sum(dim=(0, 2, 3))
        total = probs.sum(dim=(0, 2, 3)) + target_onehot.expand_as(probs).sum(dim=(0, 2, 3))
        return (1 - (2 * intersection + 1e-7) / (total + 1e-7)).mean()


class NoisyTieBreak(DiceLoss):
    """Adds noise from the global RNG 'to break ties'."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        return super().compute(logits + 1e-3 * torch.randn_like(logits), target_onehot)


class InPlaceStabilised(DiceLoss):
    """Subtracts the maximum from the logits in place: the caller's tensor changes."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        if not logits.requires_grad:
            logits.sub_(logits.amax(dim=1, keepdim=True))
        return super().compute(logits, target_onehot)


class HalfResult(DiceLoss):
    """Returns the loss in the logits' dtype."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        return super().compute(logits, target_onehot).to(logits.dtype)


class FirstImageOnly(DiceLoss):
    """Scores the first image of the batch only."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        return super().compute(logits[:1], target_onehot[:1])


class SummedOverTheBatch(DiceLoss):
    """Sums over the batch: the loss grows with the batch size."""

    def compute(self, logits: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        return super().compute(logits, target_onehot) * logits.shape[0]


class TakesAnything(DiceLoss):
    """Takes ``**options`` without naming them: the registry cannot name a misspelt one."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)


class FirstChannelL2(L2Loss):
    """Restores the first image channel only."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return l2_loss(pred[:, :1], target[:, :1])


class BroadcastingL2(L2Loss):
    """A mean squared error that broadcasts mismatched shapes."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.float() - target.float()).square().flatten(2).sum(2).mean()


class SummedL2(L2Loss):
    """Eq. A1 summed over the images instead of averaged."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return l2_loss(pred, target) * pred.shape[0]


BROKEN: dict[str, tuple[type, str, str]] = {
    "holds_a_temperature": (
        HoldsATemperature,
        "test_builds_and_holds_no_tensors",
        "the loss holds parameter temperature",
    ),
    "sigmoid_with_background": (
        SigmoidWithBackground,
        "test_activation_and_out_channels",
        r"out_channels\(1\) is 2; a sigmoid head has 1",
    ),
    "per_class": (PerClass, "test_scalar_finite_non_negative_and_differentiable", "expected a 0-d"),
    "hard_dice": (HardDice, "test_scalar_finite_non_negative_and_differentiable", "through autograd"),
    "dice_score": (DiceScore, "test_perfect_prediction_scores_lowest", "not below a random one"),
    "half_threshold": (HalfThreshold, "test_predict_onehot_is_what_predict_gives", "sigmoid rule in"),
    "unchecked": (
        Unchecked,
        "test_wrong_shapes_are_refused_naming_them",
        "a target of one image .* was accepted",
    ),
    "noisy_tie_break": (NoisyTieBreak, "test_deterministic_and_leaves_global_rng_alone", "global torch RNG"),
    "in_place_stabilised": (InPlaceStabilised, "test_leaves_its_inputs_untouched", "modified the prediction"),
    "half_result": (
        HalfResult,
        "test_half_precision_gives_a_float32_loss",
        "float16 inputs gave a torch.float16",
    ),
    "first_image_only": (FirstImageOnly, "test_batch_order_does_not_matter", "reverse order"),
    "summed_over_the_batch": (SummedOverTheBatch, "test_batch_size_does_not_scale_the_loss", "twice scores"),
    "takes_anything": (TakesAnything, "test_unknown_parameter_is_refused_by_name", "does not contain"),
    "first_channel_l2": (FirstChannelL2, "test_perfect_prediction_scores_lowest", "one pixel changed"),
    "broadcasting_l2": (
        BroadcastingL2,
        "test_wrong_shapes_are_refused_naming_them",
        "a target of one image .* was accepted",
    ),
    "summed_l2": (SummedL2, "test_batch_size_does_not_scale_the_loss", "twice scores"),
}


@pytest.fixture
def broken_loss(request: pytest.FixtureRequest) -> Iterator[str]:
    name: str = request.param
    LOSSES.register(f"broken_{name}")(BROKEN[name][0])
    yield f"broken_{name}"
    LOSSES.unregister(f"broken_{name}")


@pytest.mark.parametrize("broken_loss", sorted(BROKEN), indirect=True)
def test_the_contract_catches_a_broken_loss(broken_loss: str) -> None:
    _, failing_check, told = BROKEN[broken_loss.removeprefix("broken_")]
    with pytest.raises(AssertionError, match=f"^{broken_loss}: .*{told}"):
        getattr(_contract(broken_loss), failing_check)()


def test_every_check_is_shown_to_fail() -> None:
    # The CUDA check needs a GPU to fail: on one, test_cuda_matches_cpu runs for every registered loss.
    shown = {check for _, check, _ in BROKEN.values()}
    assert shown == set(LossContract.check_names()) - {"test_cuda_matches_cpu"}


def test_an_unregistered_name_fails_the_first_check() -> None:
    with pytest.raises(AssertionError, match="'no_such_loss' is not in"):
        _contract("no_such_loss").test_builds_and_holds_no_tensors()
