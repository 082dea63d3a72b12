"""Globs of ``cases``: one that matches nothing says which of its folders is missing, if one is; an
image glob and a label glob of different counts name the files without a partner; globs pair by
name under any root."""

from __future__ import annotations

import warnings
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


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def test_an_image_glob_that_matches_the_labels_too_is_named_as_the_cause(tmp_path: Path) -> None:
    # The usual mistake: "train/*.npy" beside "train/*_seg.npy" takes each label for an image too.
    _touch(tmp_path, "train/a.npy", "train/a_seg.npy", "train/b.npy", "train/b_seg.npy")
    with pytest.raises(DataError) as caught:
        resolve_cases(
            {"train": {"image": "train/*.npy", "label": "train/*_seg.npy"}},
            "train",
            root=tmp_path,
            dataset="numpy",
        )
    message = str(caught.value)
    assert "image 'train/*.npy' matches 4 file(s) but label 'train/*_seg.npy' matches 2" in message
    assert "the image pattern also matches 2 label file(s) (a_seg.npy, b_seg.npy)" in message


@pytest.mark.parametrize(
    ("images", "labels", "image_glob", "label_glob", "said"),
    [
        # One image of three lacks its label: by the wildcards' matches as they are ...
        (
            ["x/a.npy", "x/b.npy", "x/c.npy"],
            ["x/a_seg.npy", "x/c_seg.npy"],
            "x/?.npy",
            "x/?_seg.npy",
            "1 image(s) have no label: b.npy",
        ),
        # ... and less what every name shares (case2 is the one; sorted it sits last, not in the middle).
        (
            ["img/case1.npy", "img/case10.npy", "img/case2.npy"],
            ["seg/case1_seg.npy", "seg/case10_seg.npy"],
            "img/*.npy",
            "seg/*.npy",
            "1 image(s) have no label: case2.npy",
        ),
        # A spare label is named the same way.
        (
            ["x/a.npy"],
            ["x/a_seg.npy", "x/z_seg.npy"],
            "x/?.npy",
            "x/?_seg.npy",
            "1 label(s) have no image: z_seg.npy",
        ),
    ],
)
def test_image_and_label_globs_of_different_counts_name_the_files_without_a_partner(
    tmp_path: Path, images: list[str], labels: list[str], image_glob: str, label_glob: str, said: str
) -> None:
    _touch(tmp_path, *images, *labels)
    with pytest.raises(DataError) as caught:
        resolve_cases(
            {"train": {"image": image_glob, "label": label_glob}}, "train", root=tmp_path, dataset="numpy"
        )
    message = str(caught.value)
    assert f"matches {len(images)} file(s) but label {label_glob!r} matches {len(labels)}" in message
    assert message.endswith(f"expected one label per image; {said}")


def test_globs_under_root_dot_pair_images_and_labels_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With root ".", the glob query kept "./" and the matches (Paths) did not, so no name matched
    # the query and the pairs fell back to sorted order: case1 with case10_seg.
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path, "img/case1.npy", "img/case10.npy", "img/case2.npy")
    _touch(tmp_path, "seg/case1_seg.npy", "seg/case10_seg.npy", "seg/case2_seg.npy")
    cases = {"train": {"image": "img/*.npy", "label": "seg/*_seg.npy"}}
    for root in (".", Path(), None):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "paired in sorted order" warning either
            found = resolve_cases(cases, "train", root=root, dataset="numpy")
        assert [(c.image.name, c.label.name if c.label else None) for c in found] == [
            ("case1.npy", "case1_seg.npy"),
            ("case10.npy", "case10_seg.npy"),
            ("case2.npy", "case2_seg.npy"),
        ]
