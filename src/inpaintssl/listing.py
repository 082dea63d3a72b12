"""How a message names many things: the first few, then how many more.

A refusal that names every bad file, tensor or run of hundreds is unreadable, and one that names
only a count cannot be acted on; every message of the library that lists things lists the first
``limit`` and counts the rest, in one form.

Example:
    >>> first_and_more(["a.nii", "b.nii", "c.nii", "d.nii"], limit=2)
    'a.nii, b.nii and 2 more'
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["first_and_more"]


def first_and_more(items: Iterable[object], *, limit: int, separator: str = ", ") -> str:
    """The first ``limit`` of ``items`` joined by ``separator``, then ``and N more`` for the rest.

    Args:
        items: What to name, in the order to name it; each is written with ``str``.
        limit: How many to name (at least 1).
        separator: Between two items. Items that hold commas themselves (whole sentences) read
            better with ``"; "``; the count then follows one more separator (``a; b; and 2 more``).

    Raises:
        ValueError: ``limit`` is below 1.

    Example:
        >>> first_and_more(["a", "b"], limit=5)
        'a, b'
        >>> first_and_more(["x is bad", "y is bad", "z is bad"], limit=1, separator="; ")
        'x is bad; and 2 more'
    """
    if limit < 1:
        raise ValueError(f"limit={limit!r}: expected at least 1 item to name")
    names = [str(item) for item in items]
    shown = separator.join(names[:limit])
    hidden = len(names) - limit
    if hidden <= 0:
        return shown
    return f"{shown} and {hidden} more" if separator == ", " else f"{shown}{separator}and {hidden} more"
