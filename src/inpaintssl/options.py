"""One check for string options: a value outside its choices fails naming the field and the closest choice.

Every keyword that takes one of a few names (``run.device``, ``optim.schedule``, ``fill``,
``in_channels``, ...) goes through :func:`check_option`, so a typo always reads the same way:
what was given, where, every valid name, and "did you mean ..." when one is close (MONAI's
``look_up_option`` does the same). This module imports nothing from inpaintssl, so every package,
leaf packages included, may use it.

Example:
    >>> check_option("mean", ("mean", "zero"), field="fill")
    'mean'
    >>> check_option("maen", ("mean", "zero"), field="fill")
    Traceback (most recent call last):
    ...
    ValueError: fill='maen' is not a valid option: expected 'mean' or 'zero'; did you mean 'mean'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeVar

__all__ = [
    "CLOSE_MATCH_CUTOFF",
    "DEVICE_NAMES",
    "MAX_CUDA_INDEX",
    "check_device_name",
    "check_option",
    "closest_option",
    "format_choices",
]

OptionT = TypeVar("OptionT", bound=str)

# difflib's ratio for one wrong letter in a 4-letter word is 0.75; 0.6 keeps short typos
# ("cdua" -> "cuda") while not suggesting unrelated names (0.5 offered 'value' -> 'sampler').
CLOSE_MATCH_CUTOFF = 0.6
"""Least :func:`difflib.get_close_matches` ratio for a "did you mean" hint, wherever one is given."""


def format_choices(choices: Iterable[str]) -> str:
    """``'a', 'b' or 'c'``: the valid names as a message lists them.

    Example:
        >>> format_choices(["auto", "cpu", "cuda"])
        "'auto', 'cpu' or 'cuda'"
    """
    quoted = [repr(choice) for choice in choices]
    if len(quoted) < 2:
        return "".join(quoted) or "nothing"
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def closest_option(value: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``value`` (case-insensitive), or ``None`` when none is close.

    Example:
        >>> closest_option("poisson_disk", ["random", "poisson_disc"])
        'poisson_disc'
        >>> closest_option("validation", ["train", "val", "test"])
        'val'
        >>> closest_option("xyz", ["random", "poisson_disc"]) is None
        True
    """
    by_lower = {choice.lower(): choice for choice in choices}
    lowered = value.lower()
    match = difflib.get_close_matches(lowered, list(by_lower), n=1, cutoff=CLOSE_MATCH_CUTOFF)
    if match:
        return by_lower[match[0]]
    # A spelled-out or cut-short name ("validation" for "val", "enc" for "encoder") is far in
    # edit ratio but plainly meant: take the longest choice that one is a prefix of the other.
    prefixed = [c for c in by_lower if c and lowered and (lowered.startswith(c) or c.startswith(lowered))]
    return by_lower[max(prefixed, key=len)] if prefixed else None


def check_option(
    value: object, choices: Iterable[OptionT], *, field: str, error: type[Exception] = ValueError
) -> OptionT:
    """Return ``value`` when it is one of ``choices``; otherwise raise naming ``field``.

    Matching is exact (case-sensitive): a near miss such as ``"CPU"`` is refused with the right
    spelling suggested, rather than silently accepted in one place and not in another.

    Args:
        value: What the user gave.
        choices: The valid names, in the order the message lists them.
        field: Where the value came from (``"run.device"``, ``"fill"``), named in the message.
        error: The exception type to raise, for callers with their own (a ``ValueError``
            subclass such as ``DataError``).

    Returns:
        ``value``, typed as one of the choices.

    Raises:
        ValueError: (or ``error``) ``value`` is not a string or not one of ``choices``; the message lists the
            choices and, when one is close, asks "did you mean ...?".

    Example:
        >>> check_option("onednn", ("auto", "blocked_gemm", "onednn"), field="run.cpu_weight_gradient")
        'onednn'
    """
    options = list(choices)
    if isinstance(value, str):
        for option in options:
            if value == option:
                return option
        suggestion = closest_option(value, options)
        hint = f"; did you mean {suggestion!r}?" if suggestion is not None else ""
        raise error(f"{field}={value!r} is not a valid option: expected {format_choices(options)}{hint}")
    raise error(
        f"{field} must be a string, one of {format_choices(options)}; found {type(value).__name__} {value!r}"
    )


DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
"""The device names a run's ``run.device``, ``predict``, ``evaluate`` and ``load_model`` take
(``N`` a card's index)."""


MAX_CUDA_INDEX = 127
"""The largest card index torch can name (its device indices are 8-bit integers)."""


def check_device_name(value: object, *, field: str) -> str:
    """Return ``value`` when it is one of :data:`DEVICE_NAMES` (``cuda:N`` with a card's index);
    otherwise raise naming ``field``, with a "did you mean".

    One rule for a config's ``run.device`` and for the API's ``device=`` arguments: any name torch
    knows (``meta``, ``mps``, ``cpu:3``) is refused.

    Example:
        >>> check_device_name("cuda:1", field="run.device")
        'cuda:1'
        >>> check_device_name("meta", field="device")
        Traceback (most recent call last):
        ...
        ValueError: device='meta' is not a valid option: expected 'auto', 'cpu', 'cuda' or 'cuda:N'
    """
    if isinstance(value, str) and value.startswith("cuda:") and value[5:].isascii() and value[5:].isdigit():
        index = value[5:]
        # torch refuses a leading zero ('cuda:01') with a bare RuntimeError, and keeps an index in
        # 8 bits: 'cuda:255' is its -1, "the current card", and 'cuda:128' a negative index.
        if index == str(int(index)) and int(index) <= MAX_CUDA_INDEX:
            return value
        example = int(index) if int(index) <= MAX_CUDA_INDEX else 0
        raise ValueError(
            f"{field}={value!r} is not a valid option: expected 'cuda:N' with N a GPU index from 0 to "
            f"{MAX_CUDA_INDEX} written without leading zeros, e.g. 'cuda:{example}'"
        )
    if value == "cuda:N":  # the message's placeholder for a card's index, not a device
        raise ValueError(
            f"{field}={value!r} is not a valid option: expected {format_choices(DEVICE_NAMES)} with N a "
            "GPU index, e.g. 'cuda:0'"
        )
    return check_option(value, DEVICE_NAMES, field=field)
