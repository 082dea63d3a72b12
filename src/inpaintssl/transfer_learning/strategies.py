"""Which pretrained weights move into the segmentation network (paper sec. 2.5.1, design choice #1).

A strategy names top-level parts of the backbone (``encoder``, ``decoder``, ``head``); the
parts it lists are copied by :func:`inpaintssl.transfer_learning.transfer`, every other part keeps its
fresh initialisation. The paper compares ``encoder`` (ref. [7]) with ``encoder_decoder``
(ref. [8]); the head ("post-processing" layer) is never transferred because its output channels
change from image channels to classes.

A plugin strategy subclasses :class:`TransferStrategy`, sets :attr:`~TransferStrategy.name` and
:attr:`~TransferStrategy.parts`, and registers in :data:`inpaintssl.registry.TRANSFER_STRATEGIES`.

Example:
    >>> from inpaintssl.registry import TRANSFER_STRATEGIES
    >>> TRANSFER_STRATEGIES.build("encoder_decoder").parts
    ('encoder', 'decoder')
"""

from __future__ import annotations

from inpaintssl.registry import TRANSFER_STRATEGIES

__all__ = ["EncoderDecoderTransfer", "EncoderTransfer", "TransferStrategy"]


class TransferStrategy:
    """Base class: the backbone parts whose pretrained weights are copied.

    Attributes:
        name: Registered name, shown in reports.
        parts: Names of top-level submodules to copy, e.g. ``("encoder",)``.

    Raises:
        TypeError: On construction, if ``parts`` is not a non-empty tuple of names without dots
            (``("encoder")``, a string without the trailing comma, included).

    Example:
        >>> class DecoderOnly(TransferStrategy):
        ...     name = "decoder_only"
        ...     parts = ("decoder",)
        >>> DecoderOnly().part_of("decoder.levels.0.up.weight")
        'decoder'
        >>> DecoderOnly().part_of("encoder.levels.0.0.0.weight") is None
        True
    """

    name: str = ""
    parts: tuple[str, ...] = ()

    def __init__(self) -> None:
        parts: object = self.parts
        if isinstance(parts, str):
            # ("encoder") is a string, not a tuple: its letters would be taken as part names.
            raise TypeError(
                f"{type(self).__name__}.parts must be a tuple of top-level submodule names; found the "
                f"string {parts!r}: a one-part tuple needs a trailing comma, ({parts!r},)"
            )
        if (
            not isinstance(parts, tuple)
            or not parts
            or not all(isinstance(p, str) and p and "." not in p for p in parts)
        ):
            raise TypeError(
                f"{type(self).__name__}.parts must be a non-empty tuple of top-level submodule names "
                f"(e.g. ('encoder',)); found {type(parts).__name__} {parts!r}"
            )

    def part_of(self, key: str) -> str | None:
        """The copied part a state-dict ``key`` belongs to, or ``None`` if it stays fresh."""
        head = key.split(".", 1)[0]
        return head if head in self.parts else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, parts={self.parts!r})"


@TRANSFER_STRATEGIES.register("encoder")
class EncoderTransfer(TransferStrategy):
    """Copy the encoder only; decoder and head start fresh (the paper's best choice, App. B.3)."""

    name = "encoder"
    parts = ("encoder",)


@TRANSFER_STRATEGIES.register("encoder_decoder")
class EncoderDecoderTransfer(TransferStrategy):
    """Copy encoder and decoder; only the head ("post-processing" layer) starts fresh.

    The other arm of design choice #1 (paper sec. 2.5.1, after ref. [8]), the "B" (both) in the
    model names of Figure A1 (App. B). The paper found the encoder alone the better starting
    point for fine-tuning (sec. 3.1, App. B.3), so :class:`EncoderTransfer` is the default.

    Example:
        >>> EncoderDecoderTransfer().part_of("decoder.levels.0.up.weight")
        'decoder'
        >>> EncoderDecoderTransfer().part_of("head.weight") is None
        True
    """

    name = "encoder_decoder"
    parts = ("encoder", "decoder")
