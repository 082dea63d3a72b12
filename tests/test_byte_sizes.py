"""``inpaintssl.byte_sizes``: sizes as ``du -h`` prints them and as disks are sold, read and written."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.byte_sizes import format_bytes, parse_byte_size

# Each unit spelt out by hand, not from the module's table.
BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
DECIMAL = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}


@given(
    count=st.integers(0, 10**6),
    unit=st.sampled_from(sorted(BINARY)),
    spelling=st.sampled_from(["", "iB", "ib"]),
)
def test_binary_units_are_powers_of_1024(count: int, unit: str, spelling: str) -> None:
    for text in (f"{count}{unit}{spelling}", f"{count} {unit.lower()}{spelling}"):
        assert parse_byte_size(text) == count * BINARY[unit], text


@given(count=st.integers(0, 10**9), unit=st.sampled_from(sorted(DECIMAL)))
def test_units_ending_in_b_are_powers_of_1000(count: int, unit: str) -> None:
    assert parse_byte_size(f"{count}{unit}") == count * DECIMAL[unit]
    assert parse_byte_size(f"{count} {unit.lower()}") == count * DECIMAL[unit]


@given(count=st.integers(0, 2**62))
def test_a_bare_number_or_b_is_bytes(count: int) -> None:
    assert parse_byte_size(str(count)) == parse_byte_size(f"{count}B") == count


def test_fractions_round_to_whole_bytes() -> None:
    assert parse_byte_size("1.5G") == 3 * 2**29
    assert parse_byte_size(".5K") == 512
    assert parse_byte_size("295149PB") == 295149 * 10**15  # exact: through a float it is 32768 bytes short
    assert parse_byte_size("2.") == 2
    assert parse_byte_size("0.3") == 0  # 0.3 bytes: rounded, not refused


@pytest.mark.parametrize("text", ["", "G", "-5G", "5 gigs", "5X", "1e3", "nan", "inf", "5GiBs", "5 G B"])
def test_anything_else_is_refused_quoting_it(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size: expected a number of bytes") as info:
        parse_byte_size(text)
    assert repr(text) in str(info.value)


@given(count=st.integers(0, 2**55))
def test_a_formatted_size_reads_back_within_its_rounding(count: int) -> None:
    # Two significant figures at least: under 10 units one decimal, else whole units (<= 5 %).
    back = parse_byte_size(format_bytes(count))
    assert abs(back - count) <= 0.05 * count + 0.5, (count, format_bytes(count))


def test_hand_worked_formats() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1024) == "1.0 KiB"
    assert format_bytes(10 * 2**20 - 1) == "10.0 MiB"  # 9.99999 MiB, one decimal
    assert format_bytes(2**60) == "1024 PiB"
