"""Narrow integer label maps go through a table over their dtype's values and map as int64 ones do."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inpaintssl.data import DataError
from inpaintssl.data.labels import _class_indices, _dtype_table, check_label_values, onehot_from_values

# int64 labels take the general path (a lookup table up to the largest class value, or a search).
NARROW = ["uint8", "int8", "uint16", "int16", ">i2", "<u2"]


def _outcome(label: np.ndarray, values: tuple[tuple[int, ...], ...]) -> np.ndarray | str:
    try:
        return _class_indices(label, values, where="seg.nii").astype(np.int64)
    except DataError as exc:
        return str(exc)


@settings(max_examples=150, deadline=None)
@given(
    dtype=st.sampled_from(NARROW),
    data=st.data(),
    values=st.lists(
        st.lists(st.integers(1, 70_000), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4
    ).map(tuple),
)
def test_a_narrow_label_maps_and_fails_exactly_as_its_int64_copy(
    dtype: str, data: st.DataObject, values: tuple[tuple[int, ...], ...]
) -> None:
    info = np.iinfo(dtype)
    # Values near the classes' (to map) and anywhere in the dtype's range (to fail).
    near = st.sampled_from(sorted({0, *(min(v, int(info.max)) for group in values for v in group)}))
    anywhere = st.integers(int(info.min), int(info.max))
    label = data.draw(arrays(dtype, st.sampled_from([(7,), (3, 5), (2, 3, 4)]), elements=near | anywhere))
    widened = label.astype(np.int64)
    got, expected = _outcome(label, values), _outcome(widened, values)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert isinstance(got, np.ndarray) and np.array_equal(got, expected)
        onehot = onehot_from_values(label, values, where="seg.nii")
        assert onehot.dtype == np.float32
        assert np.array_equal(onehot, onehot_from_values(widened, values, where="seg.nii"))


def test_a_value_in_two_classes_maps_to_the_later_one_on_both_paths() -> None:
    label = np.array([0, 3, 1], dtype=np.uint8)
    values = ((1, 3), (3,))
    assert _class_indices(label, values, where="x").tolist() == [0, 2, 1]
    assert _class_indices(label.astype(np.int64), values, where="x").tolist() == [0, 2, 1]


def test_the_table_is_shared_read_only_and_built_once_per_dtype_and_classes() -> None:
    _dtype_table.cache_clear()
    first = _dtype_table(np.dtype("int16"), ((1,), (2, 5)))
    assert _dtype_table(np.dtype("int16"), ((1,), (2, 5))) is first
    assert first.shape == (65_536,) and not first.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1
    # Indexed by the bits read unsigned: -1 is stored as 0xFFFF.
    assert first[0] == 0 and first[1] == 1 and first[5] == 2 and first[0xFFFF] == -1


def test_the_refusal_names_the_out_of_range_values_of_a_uint8_slice() -> None:
    label = np.zeros((4, 4), dtype=np.uint8)
    label[1, 1], label[2, 2] = 7, 200
    with pytest.raises(
        DataError, match=r"^s\.nii slice 3: label values \[7, 200\] are out of range; expected"
    ):
        check_label_values(label, ((1,), (2,)), where="s.nii slice 3")
