"""The contract every transfer strategy keeps (sec. 2.5.1); see :mod:`inpaintssl.testing`.

A fine-tuning run builds the strategy named by ``transfer.weights`` twice (design choices #1 and
#2): :func:`inpaintssl.transfer` copies the state-dict tensors that its
:meth:`~inpaintssl.transfer_learning.TransferStrategy.part_of` assigns to a part, and the freezing
schedules (``frozen``, ``freeze_then_unfreeze``) freeze its
:attr:`~inpaintssl.transfer_learning.TransferStrategy.parts` by name. A strategy whose two
answers disagree freezes weights that were never copied, or trains copied ones it meant to keep;
one that copies the head meets a head whose channel count changed. These checks hold a plugin
strategy to what the built-ins do, with every backbone a run could pair it with.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from inpaintssl.registry import BACKBONES, TRANSFER_STRATEGIES
from inpaintssl.testing._checks import Contract, Usable, check, combining, usable
from inpaintssl.testing.backbones import PARTS
from inpaintssl.transfer_learning import TransferStrategy, set_trainable, transfer

__all__ = ["TransferStrategyContract"]

SMALL_BACKBONES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "unet2d": MappingProxyType({"depth": 2, "base_width": 4}),
        "monai_basic_unet": MappingProxyType({"features": (4, 4, 8, 8, 16, 4)}),
        "monai_unet": MappingProxyType({"channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 1}),
    }
)
"""Small parameters for the backbones inpaintssl ships; any other backbone is built at its defaults."""


class TransferStrategyContract(Contract):
    """Checks one registered transfer strategy; subclass it as ``Test<Something>`` and set the attributes.

    Attributes:
        strategy: Registered name to check.
        backbone_params: Parameters for ``BACKBONES.build`` by backbone name, to keep the networks
            small; a backbone not named is built at its defaults.
        in_channels: Image channels: the pretrained (inpainting) network's input and output.
        num_classes: Output channels of the fine-tuning network, other than ``in_channels`` (as
            a segmentation head's are), so that the head's tensors change shape.

    Example:
        >>> class TestEncoder(TransferStrategyContract):
        ...     strategy = "encoder"
        >>> TestEncoder().test_head_is_left_fresh()
        >>> "test_transfer_copies_exactly_the_named_parts" in TransferStrategyContract.check_names()
        True
    """

    strategy: ClassVar[str] = "encoder"
    backbone_params: ClassVar[Mapping[str, Mapping[str, Any]]] = SMALL_BACKBONES
    in_channels: ClassVar[int] = 2
    num_classes: ClassVar[int] = 3

    # -- helpers --------------------------------------------------------------------------------
    def build(self) -> TransferStrategy:
        """Build the strategy without parameters, as a fine-tuning run does."""
        try:
            built = TRANSFER_STRATEGIES.build(self.strategy)
        except Exception as exc:  # a run would fail there: this check says why, naming the strategy
            raise AssertionError(
                f"{self.strategy}: does not build without parameters, as transfer.weights builds it: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        check(
            isinstance(built, TransferStrategy),
            f"{self.strategy}: built a {type(built).__name__}, not a TransferStrategy",
        )
        return built

    def backbones(self) -> Usable:
        """Every usable backbone: built-ins, and installed plugins that build from the run's arguments."""
        return usable(BACKBONES, params={"in_channels": 1, "out_channels": 1, "seed": 0})

    def network(self, backbone: str, *, out_channels: int, seed: int) -> nn.Module:
        """Backbone ``backbone`` with :attr:`backbone_params`, ``in_channels`` image channels."""
        params = dict(self.backbone_params.get(backbone, {}))
        with combining():
            return BACKBONES.build(
                backbone, in_channels=self.in_channels, out_channels=out_channels, seed=seed, **params
            )

    def each_backbone(self) -> Iterator[tuple[str, nn.Module, nn.Module, str]]:
        """``(name, pretrained, model, note)`` for every usable backbone; ``note`` ends failure messages.

        ``pretrained`` is an inpainting network (as many outputs as image channels, seed 1),
        ``model`` a fresh segmentation network (:attr:`num_classes` outputs, seed 2).
        """
        backbones = self.backbones()
        for name in backbones.names:
            pretrained = self.network(name, out_channels=self.in_channels, seed=1)
            model = self.network(name, out_channels=self.num_classes, seed=2)
            yield name, pretrained, model, backbones.note()

    # -- checks ---------------------------------------------------------------------------------
    def test_builds_without_parameters(self) -> None:
        """The name is listed and builds, with no parameters, into a ``TransferStrategy``.

        ``transfer.weights`` is a name alone: a run builds the strategy without parameters, and
        :func:`inpaintssl.transfer` refuses anything that is not a ``TransferStrategy``.
        """
        check(
            self.strategy in TRANSFER_STRATEGIES.names(),
            f"{self.strategy!r} is not in {TRANSFER_STRATEGIES.names()}",
        )
        self.build()

    def test_name_is_a_non_empty_string(self) -> None:
        """``name`` is a non-empty string: the transfer report's name for an instance passed directly."""
        name = self.build().name
        check(
            isinstance(name, str) and bool(name.strip()),
            f"{self.strategy}: name is {name!r}; expected a non-empty string (best the registered name)",
        )

    def test_parts_are_a_tuple_of_backbone_parts(self) -> None:
        """``parts`` is a non-empty tuple of distinct names among ``encoder``, ``decoder``, ``head``.

        Those are the top-level parts every backbone has (:class:`BackboneContract`); the run
        freezes ``parts`` by name (``set_trainable`` refuses a string) and records them as a
        tuple. A string, say ``("encoder")`` without its comma, would be taken apart letter by
        letter (:class:`~inpaintssl.transfer_learning.TransferStrategy` refuses one as it is built;
        a strategy that sets ``parts`` later is checked here).
        """
        parts = self.build().parts
        check(
            isinstance(parts, tuple) and len(parts) > 0,
            f"{self.strategy}: parts is {parts!r}; expected a non-empty tuple of part names",
        )
        unknown = [part for part in parts if part not in PARTS]
        check(
            not unknown,
            f"{self.strategy}: parts {unknown} are not parts every backbone has; expected names "
            f"among {PARTS}",
        )
        check(len(set(parts)) == len(parts), f"{self.strategy}: parts {parts!r} name a part twice")

    def test_part_of_agrees_with_parts(self) -> None:
        """``part_of`` assigns a tensor of any usable backbone to its part exactly when ``parts`` names it.

        :func:`inpaintssl.transfer` copies by ``part_of``; the freezing schedules freeze every
        parameter of ``parts``. Where they disagree, a frozen run keeps a fresh random tensor
        frozen for good, or trains one it was meant to keep as pretrained. Checked by freezing
        ``parts`` on each backbone the way the trainer does.
        """
        strategy = self.build()
        for name, _, model, note in self.each_backbone():
            wrong = [
                f"{key} -> {strategy.part_of(key)!r}"
                for key in model.state_dict()
                if strategy.part_of(key) != _named_part(key, strategy.parts)
            ]
            check(
                not wrong,
                f"{self.strategy} with backbone {name!r}: part_of disagrees with parts {strategy.parts}: "
                f"{wrong[:8]}{note}",
            )
            set_trainable(model, strategy.parts, trainable=False)
            mismatched = [
                key
                for key, param in model.named_parameters()
                if param.requires_grad != (strategy.part_of(key) is None)
            ]
            check(
                not mismatched,
                f"{self.strategy} with backbone {name!r}: freezing parts {strategy.parts} freezes or "
                f"trains other tensors than transfer copies: {mismatched[:8]}{note}",
            )

    def test_head_is_left_fresh(self) -> None:
        """The head is not among the parts, and a network with another output count takes the transfer.

        The head maps to image channels when pretraining and to classes when fine-tuning, so its
        tensors change shape (:func:`inpaintssl.transfer` refuses a copied tensor of another
        shape), and the ``frozen`` schedule trains only the fresh parts: without the head there
        would be nothing left to train.
        """
        strategy = self.build()
        check(
            "head" not in strategy.parts,
            f"{self.strategy}: parts {strategy.parts} include the head, whose output channels change "
            "from image channels to classes",
        )
        for name, pretrained, model, note in self.each_backbone():
            try:
                with combining():
                    transfer(pretrained, model, weights=self.strategy)
            except ValueError as exc:
                raise AssertionError(
                    f"{self.strategy} with backbone {name!r}: an inpainting network ({self.in_channels} "
                    f"outputs) does not transfer into one of {self.num_classes}: {exc}{note}"
                ) from exc

    def test_transfer_copies_exactly_the_named_parts(self) -> None:
        """With every usable backbone, exactly the named parts' tensors come from the pretrained network.

        Every other tensor keeps its fresh value (the seeded initialisation of a network built
        alike), and the report lists the copied tensors as copied and the others as skipped:
        what the run's manifest records about the transfer.
        """
        strategy = self.build()
        for name, pretrained, model, note in self.each_backbone():
            initial = self.network(name, out_channels=self.num_classes, seed=2).state_dict()
            with combining():
                report = transfer(pretrained, model, weights=self.strategy)
            source, result = pretrained.state_dict(), model.state_dict()
            named = [key for key in result if key.split(".", 1)[0] in strategy.parts]
            where = f"{self.strategy} with backbone {name!r}"
            check(
                sorted(report.copied) == sorted(named),
                f"{where}: the report lists {len(report.copied)} tensors copied; the parts "
                f"{strategy.parts} hold {len(named)}{note}",
            )
            check(
                sorted(report.skipped) == sorted(set(result) - set(named)),
                f"{where}: the report's skipped tensors are not those outside the parts{note}",
            )
            not_copied = [key for key in named if not torch.equal(result[key], source[key])]
            check(
                not not_copied,
                f"{where}: tensors of the parts differ from the pretrained ones: {not_copied[:8]}{note}",
            )
            check(
                any(not torch.equal(result[key], initial[key]) for key in named),
                f"{where}: the transfer left every tensor of the parts at its fresh value{note}",
            )
            changed = [
                key for key in result if key not in named and not torch.equal(result[key], initial[key])
            ]
            check(
                not changed,
                f"{where}: tensors outside the parts lost their fresh values: {changed[:8]}{note}",
            )


def _named_part(key: str, parts: tuple[str, ...]) -> str | None:
    """The top-level part of state-dict ``key`` when ``parts`` names it, else ``None``."""
    top = key.split(".", 1)[0]
    return top if top in parts else None
