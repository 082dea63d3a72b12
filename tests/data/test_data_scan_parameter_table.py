"""A CSV table of each scan's qDESS parameters (``data.scan_parameter_table``).

Tables are written here with the standard library's ``csv`` writer, in both namings a user meets
(``qdess_t2``'s keywords, SKM-TEA's ``all_metadata.csv`` columns), and read back.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintssl.data.base import DataError
from inpaintssl.data.dicom_acquisition import SCAN_PARAMETER_KEYS
from inpaintssl.data.scan_parameter_table import SCAN_PARAM_COLUMNS, read_scan_parameter_table

SKMTEA_HEADER = ["MTR_ID", "Manufacturer", *SCAN_PARAM_COLUMNS.values(), "EchoTime2"]
MTR_005 = ["MTR_005", "GE", "18.176", "5.712", "20", "3132", "1792", "30.64"]
MTR_006 = ["MTR_006", "GE", "20.5", "6.1", "15", "3100", "1800", "31"]


def _write(path: Path, rows: list[list[str]], *, encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_skmteas_metadata_file_is_read_as_it_is(tmp_path: Path) -> None:
    # Saved by Excel: a byte-order mark before the first column's name.
    path = _write(tmp_path / "all_metadata.csv", [SKMTEA_HEADER, MTR_005, MTR_006], encoding="utf-8-sig")
    table = read_scan_parameter_table(path)
    assert table.case_column == "MTR_ID" and table.cases == ("MTR_005", "MTR_006") and len(table) == 2
    assert dict(table.columns) == dict(SCAN_PARAM_COLUMNS)
    assert table.parameters_of("MTR_005") == {
        "tr_ms": 18.176,
        "te_ms": 5.712,
        "flip_angle_deg": 20.0,
        "gl_area": 3132.0,
        "tg_us": 1792.0,
    }
    assert table.parameters_of("MTR_006")["flip_angle_deg"] == 15.0
    assert "MTR_007" not in table and table.parameters_of("MTR_007") == {}


def test_a_table_of_some_parameters_named_as_the_keywords(tmp_path: Path) -> None:
    path = _write(tmp_path / "spoilers.csv", [["case", "gl_area", "tg_us"], ["knee_01", "3132", " 1792 "]])
    table = read_scan_parameter_table(path)
    assert table.case_column == "case" and dict(table.columns) == {"gl_area": "gl_area", "tg_us": "tg_us"}
    assert table.parameters_of("knee_01") == {"gl_area": 3132.0, "tg_us": 1792.0}


def test_an_empty_cell_gives_nothing_and_a_row_without_a_case_is_not_read(tmp_path: Path) -> None:
    rows = [["case", "tr_ms", "FlipAngle"], ["a", "", "20"], ["", "99", "99"], ["b", "18", ""]]
    table = read_scan_parameter_table(_write(tmp_path / "t.csv", rows))
    assert table.cases == ("a", "b")
    assert table.parameters_of("a") == {"flip_angle_deg": 20.0}
    assert table.parameters_of("b") == {"tr_ms": 18.0}


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("n/a", r"column FlipAngle holds 'n/a'; expected a number"),
        ("nan", r"\{'FlipAngle': nan\} are not finite"),
    ],
)
def test_a_damaged_row_is_refused_when_asked_for_and_stops_no_other(
    tmp_path: Path, cell: str, message: str
) -> None:
    damaged = [*MTR_006[:4], cell, *MTR_006[5:]]
    path = _write(tmp_path / "all_metadata.csv", [SKMTEA_HEADER, MTR_005, damaged])
    table = read_scan_parameter_table(path)
    assert table.parameters_of("MTR_005")["flip_angle_deg"] == 20.0
    with pytest.raises(DataError, match=rf"{path}, MTR_ID 'MTR_006': {message}"):
        table.parameters_of("MTR_006")


def test_two_rows_of_a_case_are_one_if_they_agree_and_refused_if_they_differ(tmp_path: Path) -> None:
    other_flip = [*MTR_005[:4], "15", *MTR_005[5:]]
    # A column the table does not read may differ: it is no scan parameter.
    other_echo2 = [*MTR_005[:-1], "31"]
    path = _write(tmp_path / "all_metadata.csv", [SKMTEA_HEADER, MTR_005, other_echo2, MTR_006, other_flip])
    table = read_scan_parameter_table(path, what="metadata file")
    assert table.parameters_of("MTR_006")["tr_ms"] == 20.5
    with pytest.raises(
        DataError,
        match=r"metadata file .*: MTR_ID 'MTR_005' has two rows that differ in \['FlipAngle'\] "
        r"\(lines 2 and 5\)",
    ):
        table.parameters_of("MTR_005")


def test_two_rows_of_a_case_with_the_same_numbers_written_otherwise_agree(tmp_path: Path) -> None:
    # A re-export through pandas writes the integer columns as 20.0, 3132.0: the same scan.
    rewritten = [cell if i in (0, 1) else f"{float(cell):.6f}" for i, cell in enumerate(MTR_005)]
    assert rewritten != MTR_005
    path = _write(tmp_path / "all_metadata.csv", [SKMTEA_HEADER, MTR_005, rewritten])
    expected = {key: float(MTR_005[SKMTEA_HEADER.index(col)]) for key, col in SCAN_PARAM_COLUMNS.items()}
    assert read_scan_parameter_table(path, what="metadata file").parameters_of("MTR_005") == expected


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            ["scan", "tr_ms"],
            r"has no case column: expected one named case or MTR_ID; found \['scan', 'tr_ms'\]",
        ),
        (["case", "MTR_ID", "tr_ms"], r"has columns \['case', 'MTR_ID'\] for the case; expected one of them"),
        (["case", "TR"], r"has no scan parameter column: expected some of tr_ms or RepetitionTime, .*found"),
        (
            ["case", "tg_us", "SpoilerGradientTime"],
            r"has columns \['tg_us', 'SpoilerGradientTime'\] for tg_us; expected one",
        ),
    ],
)
def test_a_header_that_is_no_scan_parameter_table_is_refused_naming_the_file(
    tmp_path: Path, header: list[str], message: str
) -> None:
    path = _write(tmp_path / "t.csv", [header, ["x"] * len(header)])
    with pytest.raises(DataError, match=rf"scan parameter table {path} {message}"):
        read_scan_parameter_table(path)


def test_a_missing_or_binary_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"qdess table .*nowhere\.csv does not exist"):
        read_scan_parameter_table(tmp_path / "nowhere.csv", what="qdess table")
    binary = tmp_path / "scan.h5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe")
    with pytest.raises(DataError, match=rf"{binary} is not UTF-8 text .*expected a CSV table"):
        read_scan_parameter_table(binary)


_finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    values=st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True),
        st.fixed_dictionaries({}, optional={key: _finite for key in SCAN_PARAMETER_KEYS}),
        min_size=1,
        max_size=6,
    ),
    skmtea_names=st.lists(
        st.booleans(), min_size=len(SCAN_PARAMETER_KEYS), max_size=len(SCAN_PARAMETER_KEYS)
    ),
)
def test_every_value_written_is_read_back_under_its_keyword(
    tmp_path_factory: pytest.TempPathFactory, values: dict[str, dict[str, float]], skmtea_names: list[bool]
) -> None:
    names = {
        key: SCAN_PARAM_COLUMNS[key] if skmtea else key
        for key, skmtea in zip(SCAN_PARAMETER_KEYS, skmtea_names, strict=True)
    }
    rows = [["case", *names.values()]]
    rows += [
        [case, *(repr(given[key]) if key in given else "" for key in names)] for case, given in values.items()
    ]
    path = _write(tmp_path_factory.mktemp("table") / "t.csv", rows)
    table = read_scan_parameter_table(path)
    assert table.cases == tuple(values)
    for case, given_values in values.items():
        read = table.parameters_of(case)
        assert read == given_values and all(math.isfinite(v) for v in read.values())
