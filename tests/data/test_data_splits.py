"""Nested label-limited subsets, pretraining supersets and the split record JSON."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.data.base import DataError
from inpaintssl.data.splits import (
    DEFAULT_LABEL_FRACTIONS,
    SplitRecord,
    SubsetRecord,
    label_limited_subsets,
    pretraining_supersets,
    rank_volumes,
    select_fraction,
    subset_size,
    superset_fraction,
)

ids_strategy = st.lists(
    st.text("abcdefghij0123456789_", min_size=1, max_size=8), min_size=1, max_size=60, unique=True
)
fractions_strategy = st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6)


@given(ids_strategy, fractions_strategy, st.integers(0, 2**31))
def test_subsets_are_nested_for_any_fractions(ids: list[str], fractions: list[float], seed: int) -> None:
    chosen = {}
    for f in fractions:
        try:
            chosen[f] = set(select_fraction(ids, fraction=f, seed=seed))
        except DataError:
            assert round(f * len(ids)) == 0
    ordered = sorted(chosen)
    for small, large in itertools.pairwise(ordered):
        assert chosen[small] <= chosen[large]
    for f, subset in chosen.items():
        assert len(subset) == round(f * len(ids)) and subset <= set(ids)


@given(ids_strategy, st.integers(0, 2**31), st.randoms())
def test_ranking_ignores_listing_order_and_duplicates(ids: list[str], seed: int, rnd: object) -> None:
    shuffled = list(ids) + list(ids[:3])
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert rank_volumes(shuffled, seed=seed) == rank_volumes(ids, seed=seed)


def test_adding_volumes_keeps_the_relative_order_of_existing_ones() -> None:
    base = [f"v{i}" for i in range(30)]
    grown = rank_volumes([*base, "new1", "new2"], seed=3)
    assert [v for v in grown if v in base] == rank_volumes(base, seed=3)


def test_seed_changes_the_draw_and_the_same_seed_repeats_it() -> None:
    ids = [f"MTR_{i:03d}" for i in range(86)]
    assert select_fraction(ids, fraction=0.25, seed=0) == select_fraction(ids, fraction=0.25, seed=0)
    assert select_fraction(ids, fraction=0.25, seed=0) != select_fraction(ids, fraction=0.25, seed=1)


@pytest.mark.parametrize(
    ("count", "expected"),
    [(86, [86, 43, 22, 9, 4]), (709, [709, 354, 177, 71, 35])],  # paper sec. 2.1: MRI 5% used 5 (see docs)
)
def test_paper_subset_sizes(count: int, expected: list[int]) -> None:
    subsets = label_limited_subsets([str(i) for i in range(count)], seed=0)
    assert [len(subsets[f]) for f in DEFAULT_LABEL_FRACTIONS] == expected


def test_a_fraction_selecting_no_volume_is_an_error() -> None:
    with pytest.raises(DataError, match=r"^label_fraction=0.01 of 12 training volumes selects 0 volumes"):
        select_fraction([str(i) for i in range(12)], fraction=0.01, seed=0)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5, 25.0, float("nan")])
def test_a_fraction_outside_zero_one_names_the_setting(fraction: float) -> None:
    ids = [str(i) for i in range(12)]
    shown = f"{fraction:g}"
    with pytest.raises(DataError, match=rf"^label_fraction={shown}: expected a share .* in \(0, 1\]"):
        subset_size(12, fraction)
    with pytest.raises(DataError, match=rf"^label_fraction={shown}: expected .*; found {shown}"):
        select_fraction(ids, fraction=fraction, seed=0)
    with pytest.raises(DataError, match=rf"^label_fraction={shown}: "):
        label_limited_subsets(ids, fractions=[fraction], seed=0)
    # An unlabelled source's share is named as its config field, as build.py passes it.
    with pytest.raises(DataError, match=rf"^data\.unlabelled\[0\]\.fraction={shown}: "):
        select_fraction(ids, fraction=fraction, seed=0, what="data.unlabelled[0].fraction")


def test_pretraining_supersets_are_nested_and_sized_like_the_paper() -> None:
    train = [f"t{i}" for i in range(86)]
    extra = [f"u{i}" for i in range(86)]
    sets = pretraining_supersets(train, extra, seed=0)
    assert [len(sets[p]) for p in (100.0, 150.0, 200.0)] == [86, 129, 172]
    assert set(sets[100.0]) == set(train)
    assert set(sets[100.0]) < set(sets[150.0]) < set(sets[200.0])
    with pytest.raises(DataError, match=r"superset of 250% needs 129 unlabelled volumes"):
        pretraining_supersets(train, extra, percents=(250,), seed=0)
    assert superset_fraction(150, train_volumes=86, unlabelled_volumes=86) == 0.5
    assert round(superset_fraction(1200, train_volumes=709, unlabelled_volumes=7799) * 7799) == 7799


def test_a_pool_holding_the_training_volumes_adds_only_others() -> None:
    # The whole archive as the pool, the 4 training volumes among its 10: 150 % is 4 + 2 distinct
    # volumes and 250 % all 10 (training volumes were drawn again, counted twice).
    train = [f"s{i:02d}" for i in range(4)]
    archive = [f"s{i:02d}" for i in range(10)]
    sets = pretraining_supersets(train, archive, percents=(100, 150, 250), seed=0)
    for percent, size in ((100.0, 4), (150.0, 6), (250.0, 10)):
        assert len(sets[percent]) == len(set(sets[percent])) == size
        assert set(train) <= set(sets[percent])
    # The same shares as a pool without them: the training volumes took no other's place.
    assert sets == pretraining_supersets(train, archive[4:], percents=(100, 150, 250), seed=0)


@pytest.mark.parametrize("percent", [float("nan"), float("inf")])
def test_a_percentage_that_is_no_finite_number_is_refused(percent: float) -> None:
    with pytest.raises(DataError, match=r"pretraining superset of (nan|inf)%: expected a finite percentage"):
        pretraining_supersets(["t1"], ["u1"], percents=(percent,), seed=0)


def _record() -> SplitRecord:
    return SplitRecord(
        stage="finetune",
        dataset="skmtea",
        subset_seed=4,
        label_fraction=0.25,
        label_subsets={"1": ["a", "b", "c", "d"], "0.5": ["a", "c"], "0.25": ["c"]},
        subsets={
            "train": SubsetRecord(
                dataset="skmtea", split="train", fraction=0.25, volume_ids=["c"], items=[("c", 0), ("c", 1)]
            ),
            "val": SubsetRecord(dataset="skmtea", split="val", volume_ids=["v"], items=[("v", 3)]),
        },
    )


def test_split_record_round_trips_through_json(tmp_path: Path) -> None:
    record = _record()
    path = tmp_path / "run" / "splits.json"
    record.save(path)
    raw = json.loads(path.read_text())
    assert raw["subsets"]["train"]["items"] == [["c", 0], ["c", 1]]
    assert raw["label_subsets"]["0.25"] == ["c"]
    assert SplitRecord.load(path) == record
    assert not list(path.parent.glob(".*.tmp"))  # the atomic writer left no temporary file


def test_split_record_lookups_and_load_errors(tmp_path: Path) -> None:
    record = _record()
    assert record.label_subset(0.5) == ["a", "c"]
    with pytest.raises(
        DataError, match=r"no label-limited subset for label_fraction=0.1; it has \['1', '0.5', '0.25'\]"
    ):
        record.label_subset(0.1)
    with pytest.raises(DataError, match=r"splits file .*absent\.json does not exist"):
        SplitRecord.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"stage": "later"}')
    with pytest.raises(DataError, match=r"bad\.json is not a valid split record"):
        SplitRecord.load(tmp_path / "bad.json")
