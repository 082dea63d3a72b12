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

from collections.abc import Collection

from pydantic import ValidationError

__all__ = ["ConfigError", "format_config_error", "format_validation_error"]


class ConfigError(ValueError):
    """A configuration could not be read or failed validation; the message names each field path."""

    # Where users import and catch it from, and the name tracebacks and doctests have always shown.
    __module__ = "inpaintssl.config"


def format_validation_error(
    exc: ValidationError,
    *,
    header: str,
    root: str,
    unknown: str = "unknown field",
    quiet: Collection[str] = ("extra_forbidden", "missing"),
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

    Example:
        >>> from pydantic import BaseModel
        >>> class Optim(BaseModel):
        ...     lr: float
        >>> try:
        ...     Optim.model_validate({"lr": "fast"})
        ... except ValidationError as exc:
        ...     print(format_validation_error(exc, header="invalid optim:", root="optim"))
        invalid optim:
          lr: Input should be a valid number, unable to parse string as a number (found 'fast')
    """
    lines = [header]
    for err in exc.errors():
        # A check across sections has no single field: it names its fields itself.
        path = ".".join(str(p) for p in err["loc"]) or root
        detail = unknown if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        # A model-level error (empty location) would echo the whole input: say only what is wrong.
        silent = err["type"] in quiet or not err["loc"]
        found = "" if silent else f" (found {err.get('input')!r})"
        lines.append(f"  {path}: {detail}{found}")
    return "\n".join(lines)


def format_config_error(exc: ValidationError, *, source: str) -> str:
    """:func:`format_validation_error` as every run config reports it, naming ``source``."""
    return format_validation_error(
        exc,
        header=f"invalid configuration in {source}:",
        root="config",
        unknown="unknown field (check the spelling; see `inpaintssl config schema`)",
    )
