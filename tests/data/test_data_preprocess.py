"""Normalisation, windows, fit-to-size and label conversion against NumPy and hand-worked values."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inpaintssl.data.base import DataError
from inpaintssl.data.labels import check_label_values, class_values, merge_onehot, onehot_from_values
from inpaintssl.data.preprocess import (
    RunningStats,
    apply_windows,
    clip_padding,
    fit_to_size,
    parse_windows,
    zscore,
)

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 4)),
        elements=finite,
    )
)
def test_running_stats_match_numpy_over_the_whole_volume(volume: np.ndarray) -> None:
    # volume: (C, H, W, slices), fed one slice at a time
    for per_channel in (False, True):
        acc = RunningStats(per_channel=per_channel)
        for s in range(volume.shape[-1]):
            acc.update(volume[..., s])
        stats = acc.result(channels=volume.shape[0])
        v = volume.astype(np.float64)
        axis = (1, 2, 3) if per_channel else None
        expected_mean = np.broadcast_to(v.mean(axis=axis), (volume.shape[0],))
        expected_std = np.broadcast_to(v.std(axis=axis), (volume.shape[0],))
        np.testing.assert_allclose(stats.mean, expected_mean, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(stats.std, expected_std, rtol=1e-6, atol=1e-3)


def test_zscore_hand_values_and_constant_channel() -> None:
    acc = RunningStats(per_channel=True)
    x = np.array([[[1.0, 3.0]], [[5.0, 5.0]]])  # channel 0: mean 2, std 1; channel 1 constant
    acc.update(x)
    out = zscore(x, acc.result(channels=2))
    assert out.dtype == np.float32
    assert out.tolist() == [[[-1.0, 1.0]], [[0.0, 0.0]]]


def test_an_adc_map_in_square_metres_per_second_comes_out_with_unit_std() -> None:
    # Diffusion in tissue is about 1e-9 m^2/s: an absolute std cutoff (1e-6) only centred it.
    rng = np.random.default_rng(0)
    adc = rng.normal(1.2e-9, 4e-10, size=(1, 64, 64, 6)).astype(np.float32)
    acc = RunningStats(per_channel=False)
    for s in range(adc.shape[-1]):
        acc.update(adc[..., s])
    stats = acc.result(channels=1)
    out = np.stack([zscore(adc[..., s], stats) for s in range(adc.shape[-1])], axis=-1)
    assert abs(float(out.mean())) < 1e-5
    assert float(out.std()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("per_channel", [True, False])
def test_a_constant_channel_over_a_whole_volume_has_std_exactly_zero(per_channel: bool) -> None:
    # E[x^2] - E[x]^2 over 512 x 512 x 40 voxels of 3000.1 (float32) rounds to a std of 7e-4.
    rng = np.random.default_rng(1)
    varying = rng.normal(40.0, 10.0, size=(512, 512)).astype(np.float32)
    acc = RunningStats(per_channel=per_channel)
    constant = np.full((1, 512, 512), 3000.1, dtype=np.float32)
    for _ in range(40):
        acc.update(np.concatenate([constant, varying[None]]) if per_channel else constant)
    stats = acc.result(channels=2)
    assert stats.std[0] == 0.0
    assert stats.std[1] > 0.0 if per_channel else stats.std[1] == 0.0
    out = zscore(np.concatenate([constant, varying[None]]), stats)
    assert np.isfinite(out).all()
    assert (out[0] == 0.0).all()


@given(
    arrays(np.float64, (2, 4, 5), elements=st.integers(-1000, 1000).map(float)),
    st.booleans(),
    st.integers(-12, 6),
)
def test_zscore_is_the_same_in_any_unit(image: np.ndarray, per_channel: bool, k: int) -> None:
    # Whole numbers in [-1000, 1000]: a channel that varies has std >= 1e-4 * |mean|, far from
    # the constant cutoff, and one that does not is exactly constant at every scale.
    def normalised(x: np.ndarray) -> np.ndarray:
        acc = RunningStats(per_channel=per_channel)
        acc.update(x)
        return zscore(x, acc.result(channels=x.shape[0]))

    np.testing.assert_allclose(normalised(image * 10.0**k), normalised(image), rtol=1e-5, atol=1e-5)


def test_padding_is_clipped_and_windows_clip_to_level_plus_minus_half_width() -> None:
    hu = clip_padding(np.array([[-3024.0, -2000.0, -1024.0, -1000.0, 40.0, 2000.0]]))
    assert hu.tolist() == [[-1024.0, -1024.0, -1024.0, -1000.0, 40.0, 2000.0]]
    out = apply_windows(hu, ((400.0, 50.0), (1800.0, 400.0), (500.0, 50.0)))
    assert out.tolist() == [
        [[-150.0, -150.0, -150.0, -150.0, 40.0, 250.0]],
        [[-500.0, -500.0, -500.0, -500.0, 40.0, 1300.0]],
        [[-200.0, -200.0, -200.0, -200.0, 40.0, 300.0]],
    ]


def test_parse_windows_rejects_bad_pairs() -> None:
    assert parse_windows([[400, 50]]) == ((400.0, 50.0),)
    with pytest.raises(DataError, match=r"windows\[0\]=\[400\]"):
        parse_windows([[400]])
    with pytest.raises(DataError, match="windows is empty"):
        parse_windows([])


def test_crop_or_pad_is_centred_by_hand() -> None:
    x = torch.arange(1, 13, dtype=torch.float32).reshape(1, 3, 4)
    # crop 3x4 -> 1x2: rows from (3-1)//2 = 1, cols from (4-2)//2 = 1
    assert fit_to_size(x, (1, 2), mode="crop_or_pad", kind="image").tolist() == [[[6.0, 7.0]]]
    # pad 3x4 -> 5x5 with the channel minimum (1): 1 row above, 1 below; 0 columns left, 1 right
    padded = fit_to_size(x, (5, 5), mode="crop_or_pad", kind="image")
    assert padded[0, 1:4, 0:4].tolist() == x[0].tolist()
    assert padded[0, 0].tolist() == [1.0] * 5 and padded[0, :, 4].tolist() == [1.0] * 5
    label = torch.ones(2, 3, 4)
    assert fit_to_size(label, (5, 5), mode="crop_or_pad", kind="label").sum().item() == 2 * 12


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 12), st.integers(1, 12))
def test_pad_then_crop_back_is_the_identity(h: int, w: int, th: int, tw: int) -> None:
    x = torch.randn(2, h, w)
    big = (max(h, th), max(w, tw))
    restored = fit_to_size(
        fit_to_size(x, big, mode="crop_or_pad", kind="image"), (h, w), mode="crop_or_pad", kind="image"
    )
    torch.testing.assert_close(restored, x)


@given(st.integers(2, 12), st.integers(2, 12), st.integers(2, 20), st.integers(2, 20))
def test_resized_labels_stay_one_hot(h: int, w: int, th: int, tw: int) -> None:
    classes = torch.randint(0, 4, (h, w))
    onehot = torch.stack([classes == k for k in (1, 2, 3)]).float()
    out = fit_to_size(onehot, (th, tw), mode="resize", kind="label")
    assert out.shape == (3, th, tw)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert out.sum(0).max() <= 1


def test_resize_images_bilinear_preserves_a_constant() -> None:
    out = fit_to_size(torch.full((1, 7, 5), 3.5), (16, 16), mode="resize", kind="image")
    torch.testing.assert_close(out, torch.full((1, 16, 16), 3.5))


def test_fit_to_size_rejects_other_ranks() -> None:
    with pytest.raises(ValueError, match=r"expected a \(C, H, W\) tensor, got shape \(4, 4\)"):
        fit_to_size(torch.zeros(4, 4), (2, 2), mode="resize", kind="image")


def test_onehot_from_values_hand_example() -> None:
    label = np.array([[0, 1, 2], [2, 0, 1]])
    out = onehot_from_values(label, class_values(("a", "b"), None), where="x")
    assert out.tolist() == [[[0, 1, 0], [0, 0, 1]], [[0, 0, 1], [1, 0, 0]]]


@given(arrays(np.int64, (4, 5), elements=st.integers(-3, 8)))
def test_onehot_rejects_exactly_the_values_outside_the_classes(label: np.ndarray) -> None:
    values = ((1,), (2, 5))
    allowed = {0, 1, 2, 5}
    bad = sorted(set(label.ravel().tolist()) - allowed)
    if bad:
        with pytest.raises(DataError, match=re.escape(f"label values {bad[:10]} are out of range")):
            onehot_from_values(label, values, where="m")
    else:
        out = onehot_from_values(label, values, where="m")
        np.testing.assert_array_equal(out[1], np.isin(label, [2, 5]))
        np.testing.assert_array_equal(out.sum(0), label != 0)


def test_a_label_value_of_a_billion_maps_in_memory_bounded_by_the_image_not_the_value() -> None:
    values = class_values(("a", "b"), {"a": 1, "b": 1_000_000_000})
    label = np.zeros((256, 256), dtype=np.int32)
    label[:64] = 1
    label[-32:] = 1_000_000_000
    tracemalloc.start()
    try:
        out = onehot_from_values(label, values, where="m")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # A lookup table up to 1e9 would take 8 GB; the image's own int64 arrays take 512 KiB each.
    assert peak < 16 * 2**20
    np.testing.assert_array_equal(out[0], label == 1)
    np.testing.assert_array_equal(out[1], label == 1_000_000_000)
    for stray in (2, 999_999_999, 1_000_000_001, -1):
        label[5, 7] = stray
        with pytest.raises(DataError, match=re.escape(f"m: label values [{stray}] are out of range")):
            check_label_values(label, values, where="m")


def test_a_label_value_beyond_64_bits_is_refused_and_large_integers_are_read_exactly() -> None:
    with pytest.raises(
        DataError, match=r"label_values\['a'\]: expected whole numbers from 1 to 9223372036854775807"
    ):
        class_values(("a",), {"a": 2**63})
    assert class_values(("a",), {"a": [2**53 + 1, np.uint64(2**63 - 1)]}) == ((2**53 + 1, 2**63 - 1),)


@given(
    st.lists(st.sets(st.integers(1, 40), min_size=1, max_size=3), min_size=1, max_size=4),
    st.sampled_from([0, 60_000, 1_000_000_000]),
    st.data(),
)
def test_label_mapping_equals_a_dict_lookup_per_pixel(
    groups: list[set[int]], offset: int, data: st.DataObject
) -> None:
    # offset 0 and 60_000 map through the lookup table, 1e9 through the search: same answers.
    names = tuple(f"c{k}" for k in range(len(groups)))
    given_values = {name: sorted(v + offset for v in g) for name, g in zip(names, groups)}
    assume(len({v for g in given_values.values() for v in g}) == sum(map(len, given_values.values())))
    values = class_values(names, given_values)
    table = {0: 0} | {v: k + 1 for k, g in enumerate(values) for v in g}
    stored = [*sorted(table), offset + 41, offset + 1_000, -5]
    label = data.draw(arrays(np.int64, (3, 5), elements=st.sampled_from(stored)))
    unknown = sorted({int(v) for v in label.ravel()} - set(table))
    if unknown:
        with pytest.raises(DataError, match=re.escape(f"label values {unknown[:10]} are out of range")):
            onehot_from_values(label, values, where="m")
        return
    expected = np.array([table[int(v)] for v in label.ravel()]).reshape(label.shape)
    out = onehot_from_values(label, values, where="m")
    np.testing.assert_array_equal(out, np.stack([expected == k + 1 for k in range(len(values))]))


def test_float_labels_must_be_integers() -> None:
    with pytest.raises(DataError, match="non-integer"):
        onehot_from_values(np.array([[0.0, 1.5]]), ((1,),), where="m")


@pytest.mark.parametrize("check", [check_label_values, onehot_from_values])
def test_non_integer_label_values_are_named_with_their_count(check: Callable[..., object]) -> None:
    # A mask resampled with linear interpolation: the message said "non-integer values" and named
    # none, though both functions' docstrings promise the offending values.
    label = np.zeros((4, 4), np.float32)
    label[1, 1], label[1, 2], label[2, 2], label[2, 1], label[3, 3] = 0.25, 0.5, 1.0, 0.999, 0.5
    with pytest.raises(DataError) as caught:
        check(label, ((1,),), where="label seg.nii.gz slice 3")
    assert str(caught.value) == (
        "label seg.nii.gz slice 3: label holds non-integer values [0.25, 0.5, 0.999] (3 distinct, in 4 "
        "voxel(s)); expected integer class values (was the label map resampled with linear "
        "interpolation? resample label maps with nearest neighbour)"
    )


def test_non_integer_label_values_beyond_ten_are_counted() -> None:
    label = np.arange(0, 6, 0.25)  # 24 values; 18 of them (0.25, 0.5, 0.75, 1.25, ...) not whole
    fractions = sorted(v for v in label.tolist() if v != int(v))
    with pytest.raises(DataError) as caught:
        check_label_values(label, ((1,), (2,)), where="m")
    shown = ", ".join(str(v) for v in fractions[:10])
    assert f"non-integer values [{shown}] and 8 more (18 distinct, in 18 voxel(s));" in str(caught.value)


def test_class_values_checks_the_mapping() -> None:
    assert class_values(("a", "b"), {"a": [1, 3], "b": 2}) == ((1, 3), (2,))
    with pytest.raises(DataError, match="unknown class"):
        class_values(("a",), {"z": 1})
    with pytest.raises(DataError, match="reserved for background"):
        class_values(("a",), {"a": 0})
    with pytest.raises(DataError, match="claimed by both"):
        class_values(("a", "b"), {"a": 1, "b": 1})
    with pytest.raises(DataError, match="no value for class 'b'"):
        class_values(("a", "b"), {"a": 1})
    # A string was read one digit at a time: "12" became the values 1 and 2.
    with pytest.raises(
        DataError,
        match=r"label_values\['a'\]: expected an integer or a list of integers, found the string '12'",
    ):
        class_values(("a",), {"a": "12"})


@pytest.mark.parametrize(
    ("given", "found"),
    [
        # -1 indexed the lookup table from its end: the voxels of value 2 became class 'b'.
        ({"a": 2, "b": -1}, "-1"),
        ({"a": [2, -3], "b": 1}, "-3"),
        ({"a": 1.7, "b": 2}, "1.7"),  # int(1.7) read it as 1
        ({"a": [1, 2.5], "b": 3}, "2.5"),
        ({"a": 1, "b": float("nan")}, "nan"),
    ],
)
def test_class_values_must_be_whole_numbers_of_the_label_map(given: dict[str, object], found: str) -> None:
    name = next(k for k, v in given.items() if found in repr(v))
    with pytest.raises(
        DataError, match=rf"label_values\['{name}'\]: expected whole numbers >= 1.*found {found}"
    ):
        class_values(("a", "b"), given)  # type: ignore[arg-type]


def test_class_values_read_whole_floats_and_numpy_integers_as_their_values() -> None:
    # What a YAML file (2.0) or an array (np.int16) gives; a float scalar raised a bare TypeError.
    assert class_values(("a", "b"), {"a": 2.0, "b": [np.int16(3), np.uint8(4)]}) == ((2,), (3, 4))
    with pytest.raises(DataError, match=r"label_values\['a'\]: expected an integer.*found None"):
        class_values(("a",), {"a": [None]})  # type: ignore[list-item]
    with pytest.raises(DataError, match=r"label_values\['a'\] is empty"):
        class_values(("a",), {"a": []})


def test_merge_onehot_ors_channel_groups() -> None:
    seg = np.zeros((1, 3, 6), np.uint8)
    seg[0, 0, 2] = 1
    seg[0, 1, 3] = 1
    seg[0, 2, 5] = 1
    out = merge_onehot(seg, ((0,), (1,), (2, 3), (4, 5)), where="s")
    assert out[:, 0].tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 1]]
    with pytest.raises(DataError, match=r"s: one-hot label values \[3\]"):
        merge_onehot(seg * 3, ((0,),), where="s")


def test_merge_onehot_refuses_a_voxel_in_two_merged_classes() -> None:
    groups = ((0,), (1,), (2, 3), (4, 5))
    seg = np.zeros((4, 3, 6), np.uint8)
    # Two channels of one group (tibial medial + lateral) are still one class: allowed.
    seg[0, 0, 2] = seg[0, 0, 3] = 1
    assert merge_onehot(seg, groups, where="s").sum(axis=0).max() == 1
    # Patellar (0) and femoral (1) at one voxel, tibial (3) and meniscus (4) at two others.
    seg[1, 2, 0] = seg[1, 2, 1] = 1
    seg[2, 1, 3] = seg[2, 1, 4] = 1
    seg[3, 0, 2] = seg[3, 0, 5] = 1
    names = ("patellar", "femoral", "tibial", "meniscus")
    with pytest.raises(DataError) as info:
        merge_onehot(seg, groups, where="MTR_001.h5 seg slice 7", class_names=names)
    message = str(info.value)
    assert message.startswith("MTR_001.h5 seg slice 7: 3 voxel(s) are set in more than one class")
    assert "1 in both 'patellar' (channel 0) and 'femoral' (channel 1)" in message
    assert "2 in both 'tibial' (channels [2, 3]) and 'meniscus' (channels [4, 5])" in message
    assert "first at index (1, 2) of the (4, 3) array" in message
    assert "expected at most one class per voxel" in message
    # Without names the classes are numbered by output channel.
    with pytest.raises(DataError, match=r"1 in both class 0 \(channel 0\) and class 1 \(channel 1\)"):
        merge_onehot(seg, groups, where="s")


def test_antialiased_shrinking_averages_detail_finer_than_the_new_pixels() -> None:
    # Stripes one pixel wide: at 64 -> 24 pixels no stripe survives on the new grid, so the
    # honest image is their mean, 0.5, everywhere. Plain bilinear sampling picks stripes and
    # gaps unevenly: a false pattern of the same contrast order (aliasing).
    stripes = torch.zeros(1, 64, 64)
    stripes[:, ::2, :] = 1.0
    plain = fit_to_size(stripes, (24, 24), mode="resize", kind="image")
    smooth = fit_to_size(stripes, (24, 24), mode="resize", kind="image", antialias=True)
    assert float(plain.std()) > 0.2
    assert float(smooth.std()) < 0.05 and float(smooth.mean()) == pytest.approx(0.5, abs=1e-4)
    # Enlarging is unaffected (another kernel, so equal up to rounding).
    up = (32, 40)
    small = torch.rand(2, 8, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        fit_to_size(small, up, mode="resize", kind="image", antialias=True),
        fit_to_size(small, up, mode="resize", kind="image"),
        rtol=0,
        atol=1e-6,
    )
