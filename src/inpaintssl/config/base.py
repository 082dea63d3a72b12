"""The strict base of every config section, and the field checks several sections share.

Every section forbids unknown fields, refuses infinite and NaN numbers, re-validates on
assignment, and checks string choices with a "did you mean" before pydantic's own check.

Example:
    >>> from typing import Literal
    >>> class Section(_Strict):
    ...     mode: Literal["fast", "slow"] = "fast"
    >>> Section.model_validate({"mode": "slwo"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for Section
    mode
      Value error, mode='slwo' is not a valid option: ... did you mean 'slow'? ...
"""

from __future__ import annotations

import functools
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from inpaintssl.config.unused import UnusedSetting
from inpaintssl.options import check_device_name, check_option, format_choices

__all__ = ["Device", "Params", "user_path"]

_MAX_BATCH = 100_000
"""The largest batch size a config accepts."""


def _given(section: BaseModel, name: str) -> bool:
    """Whether ``section``'s field ``name`` was given, with a value other than its default.

    Given alone is not enough: a config dumped to ``config.yaml`` (or by an override or a field
    update) and read back has every field given, its defaults included.

    Example:
        >>> class Section(_Strict):
        ...     size: int = 1
        >>> _given(Section(), "size"), _given(Section(size=1), "size"), _given(Section(size=2), "size")
        (False, False, True)
    """
    if name not in section.model_fields_set:
        return False
    return bool(getattr(section, name) != _default(type(section), name))


@functools.cache
def _default(model: type[BaseModel], name: str) -> Any:
    """Field ``name``'s default, made once: pydantic inspects a factory's signature on every call.

    Only compared with, never handed out, so one shared (possibly mutable) value is safe.
    """
    return model.model_fields[name].get_default(call_default_factory=True)


@functools.cache
def _option_choices(model: type[BaseModel], name: str) -> tuple[str, ...] | None:
    """The names a string-choice field accepts, or ``None`` for any other kind of field.

    Only fields whose every member is a string ``Literal`` (``None`` aside) count: a field such
    as ``Literal["auto"] | bool`` also takes ``"true"``, which is pydantic's to parse.
    """
    field = model.model_fields.get(name)
    if field is None:
        return None
    members = [field.annotation]
    choices: list[str] = []
    while members:
        member = members.pop(0)
        origin = typing.get_origin(member)
        if origin is typing.Union or origin is types.UnionType:
            members.extend(typing.get_args(member))
        elif origin is Literal and all(isinstance(arg, str) for arg in typing.get_args(member)):
            choices.extend(typing.get_args(member))
        elif member is not type(None):
            return None
    return tuple(choices) or None


Device = Annotated[str, AfterValidator(functools.partial(check_device_name, field="device"))]
"""``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked with a "did you mean"."""


class _Strict(BaseModel):
    # allow_inf_nan=False: an infinite or NaN rate, fraction or tolerance is a typo; caught here,
    # not as a non-finite loss at the first step.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _known_option(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs before pydantic's own Literal check, whose message has no "did you mean".
        choices = _option_choices(cls, info.field_name) if info.field_name else None
        if choices is not None and value is False and "off" in choices:
            # YAML 1.1 reads a bare `off` (and `no`, `false`) as the boolean false.
            return "off"
        if choices is not None and value is True:
            # A bare `on` (or `yes`, `true`) arrives as the boolean true, which names no choice.
            raise ValueError(
                f"{info.field_name}=true is not a valid option: expected {format_choices(choices)} "
                "(YAML reads a bare on, yes or true as the boolean true; write one of these names)"
            )
        if choices is not None and isinstance(value, str):
            return check_option(value, choices, field=info.field_name or "option")
        if isinstance(value, bool) and info.field_name and _is_number_field(cls, info.field_name):
            # bool is an int in Python: `batch_size: true` (or `max_epochs: yes # TODO`) would be 1.
            raise ValueError(
                f"{info.field_name}={str(value).lower()} is a boolean; expected a number (YAML reads a "
                "bare yes, no, on, off, true or false as a boolean)"
            )
        if (
            isinstance(value, (list, tuple))
            and info.field_name
            and _is_number_sequence_field(cls, info.field_name)
        ):
            # The same for elements: `image_size: [yes, 64]` would be (1, 64).
            for index, element in enumerate(value):
                if isinstance(element, bool):
                    raise ValueError(
                        f"{info.field_name}[{index}]={str(element).lower()} is a boolean; expected a "
                        "number (YAML reads a bare yes, no, on, off, true or false as a boolean)"
                    )
            # pydantic reports `betas: [0.9]` as "betas.1: Field required", naming neither the
            # count expected nor the list found.
            length = _fixed_length(cls, info.field_name)
            if length is not None and len(value) != length:
                raise ValueError(f"{info.field_name} must hold {length} numbers, got {len(value)}")
        return value

    def _unused_settings(self) -> list[UnusedSetting]:
        """The settings this section gives that its own other settings leave unused.

        A section that can leave one unused overrides this; its sections' judgements are their
        own (:func:`~inpaintssl.config.unused_settings` walks them all).
        """
        return []

    @model_validator(mode="after")
    def _warn_unused_settings(self) -> _Strict:
        for setting in self._unused_settings():
            setting.warn()
        return self


def _is_number_field(model: type[BaseModel], name: str) -> bool:
    """Whether the field ``name`` takes an int or float and no bool."""
    field = model.model_fields.get(name)
    if field is None:
        return False
    options = _number_options(field.annotation)
    return bool(options & {int, float}) and bool not in options


def _number_options(annotation: Any) -> set[Any]:
    return set(
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )


def _is_number_sequence_field(model: type[BaseModel], name: str) -> bool:
    """Whether the field ``name`` takes a tuple or list of ints or floats (and no bools)."""
    field = model.model_fields.get(name)
    if field is None:
        return False
    for option in _number_options(field.annotation):
        if typing.get_origin(option) in (tuple, list):
            elements = {a for a in typing.get_args(option) if a is not Ellipsis}
            if elements and elements <= {int, float}:
                return True
    return False


def _fixed_length(model: type[BaseModel], name: str) -> int | None:
    """How many elements the fixed-length tuple field ``name`` takes (``None``: not such a field).

    Example:
        >>> class Section(_Strict):
        ...     size: tuple[int, int] | None = None
        >>> _fixed_length(Section, "size")
        2
    """
    field = model.model_fields.get(name)
    if field is None:
        return None
    lengths = {
        len(typing.get_args(option))
        for option in _number_options(field.annotation)
        if typing.get_origin(option) is tuple and Ellipsis not in typing.get_args(option)
    }
    return lengths.pop() if len(lengths) == 1 else None


def _plain_value(value: Any, *, at: str) -> Any:
    """``value`` as the plain data a config file and a study worker's JSON carry the same way.

    A factory gets a run's parameters from the user's config in one process and from JSON (a
    study worker, ``config.yaml`` on resume, ``load_model``) in another; only plain data reads
    back as given there. NumPy scalars become Python numbers, paths text and tuples lists, as the
    JSON would make them; what JSON would change or cannot hold is refused, naming ``at``.
    """
    if value is None or type(value) in (str, bool, int):
        return value
    # Subclasses (a str Enum member, numpy.float64) as the plain value JSON holds of them.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{at}={value} is not a finite number (the JSON study workers read has none)")
        return float(value)
    if isinstance(value, PurePath):
        return str(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return _plain_value(value.item(), at=at)
    if isinstance(value, (list, tuple)):
        return [_plain_value(element, at=f"{at}[{index}]") for index, element in enumerate(value)]
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, element in value.items():
            if not isinstance(key, str):
                raise ValueError(
                    f"{at} has the key {key!r} ({type(key).__name__}); expected text keys: config.yaml and "
                    f"study workers carry keys as text, so write {str(key)!r} (quoted in YAML)"
                )
            plain[key] = _plain_value(element, at=f"{at}[{key!r}]")
        return plain
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    hint = "; give array.tolist()" if kind == "numpy.ndarray" else ""
    raise ValueError(
        f"{at} is a {kind}; expected text, a number, true/false, null, a list or a mapping with text "
        f"keys (what config.yaml and study workers carry){hint}"
    )


def _plain_params(value: dict[str, Any]) -> dict[str, Any]:
    # The error's location names the field (data.params); ``at`` goes on from there.
    return {key: _plain_value(element, at=f"[{key!r}]") for key, element in value.items()}


Params = Annotated[dict[str, Any], AfterValidator(_plain_params)]
"""A factory's keyword arguments, held as plain data (:func:`_plain_value`)."""


def user_path(value: Any, *, field: str) -> Any:
    """A path field's value with ``~`` and ``$VAR`` expanded; an empty one is refused.

    Raises:
        ValueError: The path is empty (it would mean the working directory), holds bytes that
            are not UTF-8, or names an environment variable that is not set.
    """
    if value is None or not isinstance(value, (str, Path)):
        return value
    text = str(value)
    if not text.strip():
        raise ValueError(f"{field}: the path is empty; expected a folder or file path (write . for here)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A file name's undecodable bytes, as Python reads them (lone surrogates): the run would
        # create the folder, then fail to record it in config.yaml, naming no field.
        raise ValueError(
            f"{field}={text!r}: byte {ord(text[exc.start]) - 0xDC00:#04x} at character {exc.start} is not "
            "UTF-8; expected a path in UTF-8, as config.yaml and the results record it"
        ) from None
    expanded = os.path.expandvars(os.path.expanduser(text))
    unset = sorted(set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)))
    if unset:
        raise ValueError(
            f"{field}={text!r} names the environment variable(s) {', '.join('$' + u for u in unset)}, "
            "which are not set in this process"
        )
    return expanded  # a str: the field's own validation makes it a Path (in JSON mode too)
