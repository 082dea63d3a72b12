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


@pytest.mark.parametrize("label_glob", ["seg/*_seg.npy", "seg/*.npy"])
def test_globs_whose_names_pair_but_for_a_few_are_refused_naming_those_files(
    tmp_path: Path, label_glob: str
) -> None:
    # 30 images; case17's label is missing and a stray case31_seg sits in its place. The counts
    # agree, so everything went in sorted order: case17 to case30 each got the next case's label,
    # with only a warning that listed the first three pairs (all correct).
    _touch(tmp_path, *(f"img/case{n:02d}.npy" for n in range(1, 31)))
    _touch(tmp_path, *(f"seg/case{n:02d}_seg.npy" for n in [*range(1, 17), *range(18, 32)]))
    with pytest.raises(DataError) as caught:
        resolve_cases(
            {"train": {"image": "img/*.npy", "label": label_glob}}, "train", root=tmp_path, dataset="numpy"
        )
    message = str(caught.value)
    assert message.startswith("numpy cases['train']: the image and label globs match 30 file(s) each")
    assert "; 1 image(s) have no label: case17.npy; 1 label(s) have no image: case31_seg.npy;" in message


def test_names_that_pair_but_for_a_few_are_named_whatever_the_counts(tmp_path: Path) -> None:
    # Three images, two labels, one of them a stray: neither list pairs whole, and the message
    # named no file; it names both sides now.
    _touch(tmp_path, "img/a1.npy", "img/a2.npy", "img/a3.npy", "seg/a1_seg.npy", "seg/a9_seg.npy")
    with pytest.raises(DataError) as caught:
        resolve_cases(
            {"train": {"image": "img/*.npy", "label": "seg/*_seg.npy"}},
            "train",
            root=tmp_path,
            dataset="numpy",
        )
    assert str(caught.value).endswith(
        "expected one label per image; 2 image(s) have no label: a2.npy, a3.npy; "
        "1 label(s) have no image: a9_seg.npy"
    )


@pytest.mark.parametrize(
    ("labels", "image_glob", "label_glob"),
    [
        (("case1_seg.nii.gz", "case2_seg.nii.gz", "case10_seg.nii.gz"), "img/*", "seg/*"),
        (("case1_seg.nii.gz", "case2_seg.nii.gz", "case10_seg.nii.gz"), "img/*.nii*", "seg/*_seg.nii.gz"),
        (("case1_seg.nii.gz", "case2_seg.nii.gz", "case10_seg.nii.gz"), "img/case*", "seg/case*_seg*"),
        # The labels mixed the other way round, with the images' own names.
        (("case1.nii.gz", "case2.nii", "case10.NII"), "img/*", "seg/*"),
    ],
)
def test_nii_beside_nii_gz_pairs_by_name(
    tmp_path: Path, labels: tuple[str, str, str], image_glob: str, label_glob: str
) -> None:
    # case1.nii beside case2.nii.gz: the suffix is part of what the wildcards match, so no name
    # paired and sorted order gave case1 the label of case10 (and case10 case1's), with a warning.
    images = ("case1.nii", "case2.nii.gz", "case10.nii.gz")
    _touch(tmp_path, *(f"img/{name}" for name in images), *(f"seg/{name}" for name in labels))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "paired in sorted order" warning
        found = resolve_cases(
            {"train": {"image": image_glob, "label": label_glob}}, "train", root=tmp_path, dataset="nifti"
        )
    expected = dict(zip(images, labels))  # written side by side: case1 with case1's label, ...
    assert {c.image.name: c.label.name if c.label else None for c in found} == expected
    assert sorted(c.volume_id for c in found) == ["case1", "case10", "case2"]


def test_nii_beside_nii_gz_with_a_label_missing_names_the_image_without_one(tmp_path: Path) -> None:
    _touch(tmp_path, "img/case1.nii", "img/case2.nii.gz", "img/case10.nii.gz")
    _touch(tmp_path, "seg/case1_seg.nii.gz", "seg/case2_seg.nii.gz")
    with pytest.raises(DataError) as caught:
        resolve_cases(
            {"train": {"image": "img/*", "label": "seg/*"}}, "train", root=tmp_path, dataset="nifti"
        )
    assert str(caught.value).endswith("expected one label per image; 1 image(s) have no label: case10.nii.gz")
