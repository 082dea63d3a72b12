"""Bland-Altman and ICC against hand-worked ANOVA tables and Shrout & Fleiss's published example."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inpaintssl.metrics import bland_altman, icc


def test_bland_altman_hand_worked() -> None:
    # d = measured - reference = [-1, 2, 0, 3]; mean 1; squared deviations 4 + 1 + 1 + 4 = 10;
    # sample variance 10 / 3.
    ba = bland_altman([10.0, 12.0, 9.0, 15.0], [11.0, 10.0, 9.0, 12.0])
    sd = math.sqrt(10 / 3)
    assert ba.n == 4
    assert ba.bias == pytest.approx(1.0)
    assert ba.sd == pytest.approx(sd)
    assert ba.lower == pytest.approx(1.0 - 1.96 * sd)
    assert ba.upper == pytest.approx(1.0 + 1.96 * sd)
    assert bland_altman([10.0, 12.0, 9.0, 15.0], [11.0, 10.0, 9.0, 12.0], z=1.0).upper == pytest.approx(
        1.0 + sd
    )


@pytest.mark.parametrize(
    ("measured", "reference", "message"),
    [
        ([1.0, 2.0], [1.0], r"measured\.shape=\(2,\) and reference\.shape=\(1,\)"),
        ([1.0], [1.0], r">= 2 pairs"),
        ([1.0, np.nan], [1.0, 2.0], r"found NaN or inf"),
    ],
)
def test_bland_altman_validates(measured, reference, message) -> None:
    with pytest.raises(ValueError, match=message):
        bland_altman(measured, reference)


# 4 subjects x 2 methods. Grand mean 6.5; row means 8, 5.5, 9, 3.5; column means 6, 7.
# SSR = 2 * (1.5^2 + 1^2 + 2.5^2 + 3^2) = 37 -> MSR = 37/3
# SSC = 4 * (0.5^2 + 0.5^2) = 2 -> MSC = 2
# SST = 42 -> SSE = 42 - 37 - 2 = 3 -> MSE = 3 / (3 * 1) = 1
# ICC(2,1) = (37/3 - 1) / (37/3 + 1 + 2 * (2 - 1) / 4) = (34/3) / (83/6) = 68/83
# ICC(3,1) = (37/3 - 1) / (37/3 + 1) = 34/40
HAND_TABLE = [[7.0, 9.0], [5.0, 6.0], [8.0, 10.0], [4.0, 3.0]]


def test_icc_hand_worked_anova() -> None:
    assert icc(HAND_TABLE) == pytest.approx(68 / 83)
    assert icc(HAND_TABLE, kind="agreement") == pytest.approx(68 / 83)
    assert icc(HAND_TABLE, kind="consistency") == pytest.approx(0.85)


# Shrout & Fleiss (1979), Table 2 data (6 targets x 4 judges); their Table 4 gives
# ICC(2,1) = .29, ICC(3,1) = .71.
SHROUT_FLEISS_TABLE = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_matches_shrout_fleiss_1979_table() -> None:
    ratings = SHROUT_FLEISS_TABLE
    assert icc(ratings, kind="agreement") == pytest.approx(0.29, abs=0.005)
    assert icc(ratings, kind="consistency") == pytest.approx(0.71, abs=0.005)


def test_offset_lowers_agreement_but_not_consistency() -> None:
    reference = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    table = np.column_stack([reference + 2.0, reference])
    assert icc(table, kind="consistency") == pytest.approx(1.0)
    assert icc(table, kind="agreement") < 0.9
    assert icc(np.column_stack([reference, reference])) == pytest.approx(1.0)


@given(
    arrays(np.float64, (5, 3), elements=st.floats(-100, 100)),
    st.floats(0.1, 10.0),
    st.floats(-50.0, 50.0),
    arrays(np.float64, (3,), elements=st.floats(-20, 20)),
)
def test_icc_invariances(table, scale, shift, column_offsets) -> None:
    assume(np.ptp(table.mean(axis=1)) > 1e-3)  # indistinguishable subjects: ICC is ill-conditioned
    for kind in ("agreement", "consistency"):
        assert icc(table * scale + shift, kind=kind) == pytest.approx(icc(table, kind=kind), abs=1e-7)
    assert icc(table + column_offsets, kind="consistency") == pytest.approx(
        icc(table, kind="consistency"), abs=1e-7
    )
    assert icc(table, kind="consistency") <= 1.0 + 1e-12


def test_icc_all_identical_is_nan() -> None:
    assert math.isnan(icc(np.full((3, 2), 4.0)))


@pytest.mark.parametrize(
    ("ratings", "kind"),
    [
        # Every rating identical: MSR = MSC = MSE = 0, both ICCs 0/0. 0.1 and 1234.567 are not
        # binary fractions, so their means carry round-off that an exact zero test lets through.
        ([[0.1, 0.1]] * 3, "agreement"),
        ([[0.1, 0.1]] * 3, "consistency"),
        ([[1.1, 1.1]] * 7, "agreement"),
        ([[1234.567, 1234.567]] * 5, "consistency"),
        # Identical subjects, methods apart by a constant: MSR = MSE = 0, so consistency is 0/0.
        ([[0.1, 0.3]] * 3, "consistency"),
        ([[10.1, 10.3]] * 7, "consistency"),
    ],
)
def test_icc_is_nan_for_ratings_without_variation(
    ratings: list[list[float]], kind: Literal["agreement", "consistency"]
) -> None:
    assert math.isnan(icc(ratings, kind=kind))


def test_icc_tells_round_off_from_small_real_variation() -> None:
    # 0.1 everywhere has no variation (NaN); Shrout & Fleiss's table shrunk by 1e-6 on top of it
    # varies far above round-off (1e-6 vs ~1e-17) and keeps its published ICCs, which a shift and
    # a scale do not change.
    flat = np.full((6, 4), 0.1)
    assert math.isnan(icc(flat)) and math.isnan(icc(flat, kind="consistency"))
    small = flat + 1e-6 * np.asarray(SHROUT_FLEISS_TABLE)
    assert icc(small, kind="agreement") == pytest.approx(0.29, abs=0.005)
    assert icc(small, kind="consistency") == pytest.approx(0.71, abs=0.005)
    # Identical subjects with an offset between methods: MSR = MSE = 0 < MSC, so absolute
    # agreement is 0 / (k * MSC / n) = 0, not NaN.
    assert icc([[10.1, 10.3]] * 7, kind="agreement") == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("ratings", "kwargs", "message"),
    [
        (np.ones((1, 2)), {}, r"n >= 2 and k >= 2; found shape \(1, 2\)"),
        (np.ones(4), {}, r"found shape \(4,\)"),
        ([[1.0, np.nan], [2.0, 3.0]], {}, r"must be finite"),
        (
            np.ones((3, 2)),
            {"kind": "absolute"},
            r"kind='absolute' is not a valid option: expected 'agreement' or 'consistency'",
        ),
    ],
)
def test_icc_validates(ratings, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        icc(ratings, **kwargs)
