"""What ``predict`` makes of a folder it is given: its volumes, a DICOM series, or neither."""

from __future__ import annotations

from pathlib import Path

import pytest

from inpaintssl.inference.inputs import expand_inputs
from inpaintssl.inference.results import PredictionError


def test_a_folder_of_series_folders_is_not_called_empty(tmp_path: Path) -> None:
    # The usual export of a study: one folder per series, nothing beside them. Folders are not
    # searched, and "is empty" sent the user looking for files that are there.
    study = tmp_path / "dicom"
    for series in ("series-01", "series-02"):
        (study / series).mkdir(parents=True)
        (study / series / "IM0000.dcm").write_bytes(b"")
    (study / ".hidden").mkdir()
    with pytest.raises(PredictionError) as caught:
        expand_inputs(study)
    message = str(caught.value)
    assert "is empty" not in message
    assert f"input folder {study} holds no files, only 2 folder(s): series-01, series-02" in message
    assert f"'{study}/*/'" in message  # the glob that names every series folder
    # ... and that glob does give the series folders, each one input.
    assert expand_inputs(f"{study}/*/") == [study / "series-01", study / "series-02"]


@pytest.mark.parametrize("hidden", [False, True])
def test_a_folder_without_files_or_folders_is_empty(tmp_path: Path, hidden: bool) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    if hidden:  # a desktop's or a tool's own entries are no input
        (folder / ".DS_Store").write_bytes(b"")
        (folder / ".ipynb_checkpoints").mkdir()
    with pytest.raises(PredictionError, match=r"input folder .*scans is empty; expected NIfTI"):
        expand_inputs(folder)
