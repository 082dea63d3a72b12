"""``inpaintssl series PATH``: the DICOM series of a study folder, as ``--series`` names them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dicom_helpers import write_single_frame
from inpaintssl.cli import main as cli_main

pydicom = pytest.importorskip("pydicom")


def _study(root: Path) -> dict[str, str]:
    uids = {}
    for number, description in [(3, "AX T1"), (7, "COR STIR")]:
        uid = uids[description] = pydicom.uid.generate_uid()
        (root / f"S{number}").mkdir(parents=True)
        for k in range(2):
            write_single_frame(
                root / f"S{number}" / f"IM{k}",
                np.full((4, 4), 100 * number, np.int16),
                modality="MR",
                position=(0.0, 0.0, 2.0 * k),
                instance=k + 1,
                identity={"SeriesInstanceUID": uid, "SeriesDescription": description, "SeriesNumber": number},
            )
    return uids


def test_the_listing_prints_each_series_and_as_json_every_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uids = _study(tmp_path / "study")
    assert cli_main(["series", str(tmp_path / "study")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'study'}: 2 series"
    assert lines[1].split()[:3] == ["3", "AX", "T1"] and f"SeriesInstanceUID {uids['AX T1']}" in lines[1]
    assert "2 slices; 2 file(s) in " in lines[2] and lines[2].split()[0] == "7"

    assert cli_main(["series", str(tmp_path / "study"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["number"], r["description"], r["uid"]) for r in rows] == [
        (3, "AX T1", uids["AX T1"]),
        (7, "COR STIR", uids["COR STIR"]),
    ]
    assert rows[0] == {
        "uid": uids["AX T1"],
        "number": 3,
        "description": "AX T1",
        "modality": "MR",
        "image": True,
        "files": 2,
        "slices": 2,
        "echo_times_ms": [],
        "folder": str(tmp_path / "study" / "S3"),
    }


def test_a_path_that_does_not_exist_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["series", str(tmp_path / "nowhere")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
