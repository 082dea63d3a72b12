"""The error a bad configuration raises, and the one-line-per-field form of pydantic's errors.

Example:
    >>> from pydantic import BaseModel, ValidationError
    >>> class Data(BaseModel):
    ...     size: int
    >>> try:
    ...     Data.model_validate({"size": "big"})
    ... except ValidationError as exc:
    ...     print(format_config_error(exc, source="data.yaml"))
    invalid configuration in data.yaml:
      size: Input should be a valid integer, unable to parse string as an integer (found 'big')
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeGuard

from pydantic import BaseModel, ValidationError

from inpaintssl.options import CLOSE_MATCH_CUTOFF

__all__ = ["ConfigError", "ConfigWarning", "format_config_error", "format_validation_error", "is_model_class"]


class ConfigError(ValueError):
    """A configuration could not be read or failed validation; the message names each field path."""

    # Where users import and catch it from, and the name tracebacks and doctests have always shown.
    __module__ = "inpaintssl.config"


class ConfigWarning(UserWarning):
    """A setting a config gives has no effect under another of its settings; the message names both.

    Filter it as any warning: ``warnings.filterwarnings("ignore", category=ConfigWarning)``.
    """

    __module__ = "inpaintssl.config"


def _is_class(member: object) -> TypeGuard[type]:
    """Whether ``member`` is a class, not a parametrized builtin such as ``tuple[int, int]``.

    Python 3.10 answers ``isinstance(tuple[int, int], type)`` with ``True`` (3.11 made it ``False``),
    and ``issubclass`` then raises ``TypeError`` on the alias.
    """
    return isinstance(member, type) and not isinstance(member, types.GenericAlias)


def is_model_class(member: object) -> TypeGuard[type[BaseModel]]:
    """Whether ``member`` is a config model class (a section), on every supported Python.

    Example:
        >>> from inpaintssl.config import OptimConfig
        >>> is_model_class(OptimConfig), is_model_class(tuple[int, int]), is_model_class(None)
        (True, False, False)
    """
    return _is_class(member) and issubclass(member, BaseModel)


def _members(annotation: Any) -> list[Any]:
    """The types a field annotation admits: a union's members, without ``Annotated`` or ``None``."""
    pending, found = [annotation], []
    while pending:
        member = pending.pop()
        origin = typing.get_origin(member)
        if origin is typing.Union or origin is types.UnionType:
            pending.extend(typing.get_args(member))
        elif origin is typing.Annotated:
            pending.append(typing.get_args(member)[0])
        elif member is not type(None):
            found.append(member)
    return found


def _step(member: Any, part: int | str) -> list[Any]:
    """The types one step of an error location leads to from ``member`` (none: it leads nowhere known)."""
    if is_model_class(member):
        field = member.model_fields.get(part) if isinstance(part, str) else None
        return [] if field is None else _members(field.annotation)
    origin = typing.get_origin(member)
    args = typing.get_args(member)
    if isinstance(origin, type) and issubclass(origin, Mapping) and len(args) == 2:
        return _members(args[1])  # ``part`` is the key
    if isinstance(origin, type) and issubclass(origin, Sequence) and isinstance(part, int) and args:
        return _members(args[0])
    return []


def _close_field(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """The field closest to the unknown key at the end of ``loc``, among those of its own model.

    ``None`` where nothing is close, or where the location leads through something other than
    models, lists and dicts of them.
    """
    if not loc or not isinstance(loc[-1], str):
        return None
    members: list[Any] = [model]
    for part in loc[:-1]:
        # A union of models puts the member's class name in the location: follow that member.
        named = [m for m in members if _is_class(m) and m.__name__ == part]
        members = named or [found for m in members for found in _step(m, part)]
    names = sorted({name for m in members if is_model_class(m) for name in m.model_fields})
    match = difflib.get_close_matches(loc[-1], names, n=1, cutoff=CLOSE_MATCH_CUTOFF)
    return match[0] if match else None


def format_validation_error(
    exc: ValidationError,
    *,
    header: str,
    root: str,
    unknown: str = "unknown field",
    quiet: Collection[str] = ("extra_forbidden", "missing"),
    model: type[BaseModel] | None = None,
    see: str | None = None,
) -> str:
    """One line per error under ``header``: the field's dotted path, what is wrong and the value found.

    Shared by run configs and study specs, so both read alike: pydantic's "Value error, " prefix is
    dropped, and an error with no location (a check across sections) is named ``root``.

    Args:
        exc: pydantic's error.
        header: The first line, e.g. ``"invalid configuration in pre.yaml:"``.
        root: The name for an error with no field path.
        unknown: What an unknown field is called.
        quiet: Error types whose value is not repeated (the message names it, or there is none).
        model: The model that raised ``exc``: an unknown field then gets "did you mean ...?" with
            the closest field of the model (or nested section) it was found in.
        see: Where the valid fields are listed, added to an unknown field's message.

    Example:
        >>> from pydantic import BaseModel, ConfigDict
        >>> class Optim(BaseModel):
        ...     model_config = ConfigDict(extra="forbid")
        ...     lr: float = 0.1
        >>> try:
        ...     Optim.model_validate({"lr": "fast"})
        ... except ValidationError as exc:
        ...     print(format_validation_error(exc, header="invalid optim:", root="optim"))
        invalid optim:
          lr: Input should be a valid number, unable to parse string as a number (found 'fast')
        >>> try:
        ...     Optim.model_validate({"lrr": 0.01})
        ... except ValidationError as exc:
        ...     print(format_validation_error(exc, header="invalid optim:", root="optim", model=Optim))
        invalid optim:
          lrr: unknown field; did you mean 'lr'?
    """
    lines = [header]
    for err in exc.errors():
        # A check across sections has no single field: it names its fields itself.
        path = ".".join(str(p) for p in err["loc"]) or root
        detail = unknown if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = _close_field(model, err["loc"]) if model is not None else None
            if close is not None:
                detail += f"; did you mean {close!r}?" + (f" (see {see})" if see else "")
            elif see:
                detail += f" (check the spelling; see {see})"
        # A model-level error (empty location) would echo the whole input: say only what is wrong.
        silent = err["type"] in quiet or not err["loc"]
        found = "" if silent else f" (found {err.get('input')!r})"
        lines.append(f"  {path}: {detail}{found}")
    return "\n".join(lines)


def format_config_error(exc: ValidationError, *, source: str, model: type[BaseModel] | None = None) -> str:
    """:func:`format_validation_error` as every run config reports it, naming ``source``.

    ``model``, the config class that raised ``exc``, adds "did you mean ...?" to unknown fields.
    """
    return format_validation_error(
        exc,
        header=f"invalid configuration in {source}:",
        root="config",
        model=model,
        see="`inpaintssl config schema`",
    )
