"""A glob of ``cases`` that matches nothing says which of its folders is missing, if one is."""

from __future__ import annotations

from pathlib import Path

import pytest

from inpaintssl.data import DataError
from inpaintssl.data.cases import resolve_cases


@pytest.mark.parametrize(
    ("root", "pattern", "missing"),
    [
        ("brians", "train/*_t1.nii.gz", "brians"),  # a typo in data.params.root
        ("brains", "trian/*_t1.nii.gz", "brains/trian"),  # ... in the pattern's folder
        ("brains", "train/sub-*/anat/*.nii.gz", None),  # a glob above the file: no folder to blame
        ("brains", "train/*_t2.nii.gz", None),  # the folder is there, its files are not
    ],
)
def test_an_unmatched_glob_names_its_first_missing_folder(
    tmp_path: Path, root: str, pattern: str, missing: str | None
) -> None:
    (tmp_path / "brains" / "train").mkdir(parents=True)
    (tmp_path / "brains" / "train" / "case0_t1.nii.gz").write_bytes(b"")
    with pytest.raises(DataError) as caught:
        resolve_cases({"train": pattern}, "train", root=tmp_path / root, dataset="nifti")
    message = str(caught.value)
    assert message.startswith(
        f"nifti cases['train'] image pattern '{tmp_path / root / pattern}' matches no files"
    )
    if missing is None:
        assert "does not exist" not in message
    else:
        assert message.endswith(f"matches no files: folder {tmp_path / missing} does not exist")


def test_a_relative_pattern_without_root_names_its_missing_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # root None: the working directory
    with pytest.raises(DataError, match=r"'scnas/\*\.npy' matches no files: folder scnas does not exist$"):
        resolve_cases({"train": "scnas/*.npy"}, "train", root=None, dataset="numpy")
