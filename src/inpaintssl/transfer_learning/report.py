"""What :func:`inpaintssl.transfer_learning.transfer` did, tensor by tensor.

Example:
    >>> report = TransferReport(strategy="encoder", parts=("encoder",), copied=["encoder.w"],
    ...                         skipped=["head.w"], shape_mismatches=["head.w"],
    ...                         shape_changes={"head.w": ((1, 8), (4, 8))})
    >>> print(report.summary())
    transfer 'encoder' (parts: encoder): copied 1 tensors, 0 adapted; left 1 at their fresh initialisation
      different shape, not copied: head.w (1, 8) -> (4, 8)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["TransferReport"]

Shape = tuple[int, ...]

_KEY_LISTS = ("copied", "skipped", "missing", "unexpected", "shape_mismatches", "adapted")
"""The fields of :class:`TransferReport` that list state-dict keys."""


@dataclass(frozen=True)
class TransferReport:
    """Outcome of a weight transfer; every list holds state-dict keys of the fine-tuning model.

    Attributes:
        strategy: Name of the transfer strategy.
        parts: Parts that were copied.
        copied: Tensors overwritten with pretrained values (including adapted ones).
        skipped: Tensors deliberately left at their fresh initialisation (outside ``parts``).
        missing: Model tensors with no counterpart in the pretrained weights (all outside
            ``parts``: a missing tensor inside them is an error).
        unexpected: Pretrained tensors with no counterpart in the model (pretrained key names).
        shape_mismatches: Tensors present in both with different shapes, outside ``parts``
            (e.g. the head when output channels change), therefore not copied.
        adapted: Kernels that read the image, rebuilt for a different number of input channels.
        shape_changes: ``(pretrained shape, model shape)`` of every key in
            ``shape_mismatches`` and ``adapted``.
    """

    strategy: str
    parts: tuple[str, ...]
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    shape_changes: dict[str, tuple[Shape, Shape]] = field(default_factory=dict)

    def summary(self) -> str:
        """Human-readable multi-line account, for logs and run manifests."""
        lines = [
            f"transfer {self.strategy!r} (parts: {', '.join(self.parts)}): copied {len(self.copied)} "
            f"tensors, {len(self.adapted)} adapted; left {len(self.skipped)} at their fresh initialisation"
        ]
        lines += self._section("adapted to new input channels", self.adapted, with_shapes=True)
        lines += self._section("different shape, not copied", self.shape_mismatches, with_shapes=True)
        lines += self._section("missing from the pretrained weights, left fresh", self.missing)
        lines += self._section("unexpected in the pretrained weights, ignored", self.unexpected)
        return "\n".join(lines)

    def to_record(self) -> dict[str, Any]:
        """The report as plain JSON data, for a run's manifest (``transfer_report``).

        Example:
            >>> report = TransferReport(strategy="all", parts=("encoder",), copied=["w"])
            >>> TransferReport.from_record(report.to_record()) == report
            True
        """
        record = asdict(self)
        record["parts"] = list(self.parts)
        record["shape_changes"] = {key: [list(a), list(b)] for key, (a, b) in self.shape_changes.items()}
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TransferReport:
        """The report :meth:`to_record` wrote: a resumed fine-tuning run reports its transfer with it.

        Raises:
            ValueError: ``record`` is not what :meth:`to_record` writes; the message names the field.

        Example:
            >>> TransferReport.from_record({"strategy": "encoder", "parts": "encoder"})
            Traceback (most recent call last):
            ...
            ValueError: transfer record field 'parts': expected a list of strings; found str 'encoder'
        """
        if not isinstance(record, Mapping):
            raise ValueError(
                "a transfer record is a mapping of strategy, parts and lists of state-dict keys; "
                f"found {type(record).__name__}"
            )
        strategy = record.get("strategy")
        if not isinstance(strategy, str):
            raise ValueError(f"transfer record field 'strategy': expected a string; found {_found(strategy)}")
        if "parts" not in record:
            raise ValueError("transfer record field 'parts': missing; expected a list of part names")
        return cls(
            strategy=strategy,
            parts=tuple(_strings(record["parts"], field="parts")),
            **{name: _strings(record.get(name, []), field=name) for name in _KEY_LISTS},
            shape_changes=_shape_changes(record.get("shape_changes", {})),
        )

    def _section(self, title: str, keys: Sequence[str], *, with_shapes: bool = False) -> list[str]:
        if not keys:
            return []
        shown = [
            f"{key} {self.shape_changes[key][0]} -> {self.shape_changes[key][1]}"
            if with_shapes and key in self.shape_changes
            else key
            for key in keys
        ]
        return [f"  {title}: {', '.join(shown)}"]


def _found(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _strings(value: object, *, field: str) -> list[str]:
    """A record's list of names, checked: a string would otherwise be split into its characters."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"transfer record field {field!r}: expected a list of strings; found {_found(value)}"
        )
    bad = next((item for item in value if not isinstance(item, str)), None)
    if bad is not None:
        raise ValueError(
            f"transfer record field {field!r}: expected a list of strings; found an item {_found(bad)}"
        )
    return list(value)


def _shape(value: object) -> Shape | None:
    if not isinstance(value, (list, tuple)):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        return None
    return tuple(value)


def _shape_changes(value: object) -> dict[str, tuple[Shape, Shape]]:
    if not isinstance(value, Mapping):
        raise ValueError(
            "transfer record field 'shape_changes': expected a mapping of state-dict keys to "
            f"[pretrained shape, model shape]; found {_found(value)}"
        )
    changes: dict[str, tuple[Shape, Shape]] = {}
    for key, pair in value.items():
        shapes = (
            (_shape(pair[0]), _shape(pair[1])) if isinstance(pair, (list, tuple)) and len(pair) == 2 else None
        )
        if not isinstance(key, str) or shapes is None or shapes[0] is None or shapes[1] is None:
            raise ValueError(
                f"transfer record field 'shape_changes', key {key!r}: expected [pretrained shape, model "
                f"shape], two lists of integers >= 0; found {_found(pair)}"
            )
        changes[key] = (shapes[0], shapes[1])
    return changes
