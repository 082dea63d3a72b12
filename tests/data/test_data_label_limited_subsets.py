"""``label_limited_subsets`` itself is nested, sized and seeded for any volumes, fractions and seed.

The nesting property was tested only through ``select_fraction``; a ``label_limited_subsets`` that
drew each fraction with its own seed, or from the unranked listing, would have slipped through.
"""

from __future__ import annotations

import itertools

from hypothesis import assume, given
from hypothesis import strategies as st

from inpaintssl.data.splits import label_limited_subsets

ids_strategy = st.lists(
    st.text("abcdefghij0123456789_-", min_size=1, max_size=8), min_size=1, max_size=80, unique=True
)
fractions_strategy = st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6, unique=True)


def _selecting(ids: list[str], fractions: list[float]) -> list[float]:
    # A fraction that rounds to no volume is an error (tested elsewhere), so keep the others.
    return [f for f in fractions if round(f * len(ids)) > 0]


@given(ids_strategy, fractions_strategy, st.integers(0, 2**31), st.randoms())
def test_every_smaller_subset_lies_inside_every_larger_one(
    ids: list[str], fractions: list[float], seed: int, rnd: object
) -> None:
    kept = _selecting(ids, fractions)
    assume(len(kept) >= 2)
    rnd.shuffle(kept)  # type: ignore[attr-defined]
    subsets = label_limited_subsets(ids, fractions=kept, seed=seed)

    assert sorted(subsets) == sorted(float(f) for f in kept)
    for small, large in itertools.pairwise(sorted(subsets)):
        assert set(subsets[small]) <= set(subsets[large]), (small, large)
    for fraction, subset in subsets.items():
        assert len(subset) == len(set(subset)) == round(fraction * len(ids))
        assert set(subset) <= set(ids)


@given(ids_strategy, fractions_strategy, st.integers(0, 2**31), st.randoms())
def test_subsets_ignore_listing_order_and_grow_with_new_volumes(
    ids: list[str], fractions: list[float], seed: int, rnd: object
) -> None:
    kept = _selecting(ids, fractions)
    assume(kept)
    shuffled = list(ids)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    subsets = label_limited_subsets(ids, fractions=kept, seed=seed)
    assert label_limited_subsets(shuffled, fractions=kept, seed=seed) == subsets
    # The whole set is the 100 % subset, and one fraction asked alone gives the same subset.
    assert set(label_limited_subsets(ids, fractions=[1.0], seed=seed)[1.0]) == set(ids)
    for fraction in kept:
        assert label_limited_subsets(ids, fractions=[fraction], seed=seed)[fraction] == subsets[fraction]


def test_the_seed_changes_the_draw() -> None:
    ids = [f"scan{i:03d}" for i in range(100)]
    draws = {label_limited_subsets(ids, fractions=[0.1], seed=seed)[0.1] for seed in range(5)}
    assert len(draws) == 5
