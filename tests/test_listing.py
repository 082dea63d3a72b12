"""``first_and_more``: named items, then a count, checked against the items themselves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.listing import first_and_more


@pytest.mark.parametrize(
    ("items", "limit", "separator", "expected"),
    [
        ([], 3, ", ", ""),
        (["a"], 3, ", ", "a"),
        (["a", "b", "c"], 3, ", ", "a, b, c"),
        (["a", "b", "c", "d"], 3, ", ", "a, b, c and 1 more"),
        ([1, 2, 3, 4, 5, 6], 2, ", ", "1, 2 and 4 more"),
        (["x, y bad", "z bad", "w bad"], 2, "; ", "x, y bad; z bad; and 1 more"),
        (["x bad", "z bad"], 2, "; ", "x bad; z bad"),
    ],
)
def test_first_and_more_hand_worked(items: list[object], limit: int, separator: str, expected: str) -> None:
    assert first_and_more(items, limit=limit, separator=separator) == expected


@given(
    names=st.lists(st.text(alphabet="abcxyz0123", min_size=1, max_size=6), max_size=30),
    limit=st.integers(min_value=1, max_value=12),
)
def test_first_and_more_names_the_first_items_and_counts_every_other(names: list[str], limit: int) -> None:
    text = first_and_more(names, limit=limit)
    hidden = len(names) - limit
    if hidden > 0:
        shown, count = text.rsplit(" and ", 1)
        assert count == f"{hidden} more"
    else:
        shown = text
    assert shown.split(", ") == names[:limit] or (not names and shown == "")


def test_first_and_more_takes_any_iterable_once() -> None:
    assert first_and_more((f"run-{i}" for i in range(5)), limit=2) == "run-0, run-1 and 3 more"


@pytest.mark.parametrize("limit", [0, -1])
def test_first_and_more_refuses_a_limit_that_names_nothing(limit: int) -> None:
    with pytest.raises(ValueError, match=rf"limit={limit}: expected at least 1"):
        first_and_more(["a"], limit=limit)
