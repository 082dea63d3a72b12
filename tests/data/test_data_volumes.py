"""Generic nifti / numpy / hdf5 datasets and the ``cases`` format, on files written in a temp dir."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from data_builders import onehot_reference, write_nifti

from inpaintssl.data.base import DataError
from inpaintssl.data.cases import resolve_cases
from inpaintssl.data.preflight import preflight
from inpaintssl.data.readers import NumpyVolume
from inpaintssl.data.volumes import (
    hdf5_dataset,
    metaimage_dataset,
    nifti_dataset,
    nrrd_dataset,
    numpy_dataset,
)
from metaimage_helpers import write_metaimage
from nrrd_helpers import write_nrrd
from predict_helpers import plain_slice_preprocessing

RNG = np.random.default_rng(42)
IMAGE = RNG.normal(100.0, 20.0, size=(6, 5, 4)).astype(np.float32)
LABEL = RNG.integers(0, 3, size=(6, 5, 4)).astype(np.uint8)


def _write(fmt: str, folder: Path, image: np.ndarray = IMAGE, label: np.ndarray = LABEL) -> dict[str, Any]:
    """Write one case in ``fmt``; returns the dataset factory and its ``cases``/params."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "nifti":
        write_nifti(folder / "img.nii.gz", image, spacing=(0.5, 0.6, 2.0))
        write_nifti(folder / "seg.nii.gz", label)
        return {"factory": nifti_dataset, "cases": {"train": {"image": "img.nii.gz", "label": "seg.nii.gz"}}}
    if fmt == "metaimage":
        write_metaimage(folder / "img.mhd", image, spacing=(0.5, 0.6, 2.0), compressed=True)
        write_metaimage(folder / "seg.mha", label, spacing=(0.5, 0.6, 2.0))
        return {"factory": metaimage_dataset, "cases": {"train": {"image": "img.mhd", "label": "seg.mha"}}}
    if fmt == "nrrd":
        steps = ((0.5, 0, 0), (0, 0.6, 0), (0, 0, 2.0))
        write_nrrd(folder / "img.nhdr", image, directions=steps, encoding="gzip")
        write_nrrd(folder / "seg.nrrd", label, directions=steps)
        return {"factory": nrrd_dataset, "cases": {"train": {"image": "img.nhdr", "label": "seg.nrrd"}}}
    if fmt == "npy":
        np.save(folder / "img.npy", image)
        np.save(folder / "seg.npy", label)
        return {
            "factory": numpy_dataset,
            "cases": {"train": {"image": "img.npy", "label": "seg.npy"}},
            "spacing": (0.5, 0.6, 2.0),
        }
    if fmt == "npz":
        np.savez(folder / "img.npz", vol=image, mask=label)
        return {
            "factory": numpy_dataset,
            "cases": {"train": {"image": "img.npz", "label": "img.npz"}},
            "image_key": "vol",
            "label_key": "mask",
            "spacing": (0.5, 0.6, 2.0),
        }
    with h5py.File(folder / "img.h5", "w") as f:
        f["scan/image"] = image
        f["scan/label"] = label
    return {
        "factory": hdf5_dataset,
        "cases": {"train": "img.h5"},
        "image_key": "scan/image",
        "label_key": "scan/label",
        "spacing": (0.5, 0.6, 2.0),
    }


def _build(spec: dict[str, Any], folder: Path, **overrides: Any) -> Any:
    params = {k: v for k, v in spec.items() if k != "factory"}
    params.update(overrides)
    params.setdefault("class_names", ("a", "b"))
    params.setdefault("split", "train")
    return spec["factory"](root=folder, **params)


FORMATS = ["nifti", "metaimage", "nrrd", "npy", "npz", "hdf5"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_labels_and_volume_zscore(tmp_path: Path, fmt: str, axis: int) -> None:
    spec = _write(fmt, tmp_path)
    ds = _build(spec, tmp_path, slice_axis=axis)
    assert len(ds) == IMAGE.shape[axis]
    mean, std = IMAGE.astype(np.float64).mean(), IMAGE.astype(np.float64).std()
    for k in range(len(ds)):
        item = ds[k]
        expected = (np.take(IMAGE, k, axis=axis).astype(np.float64) - mean) / std
        np.testing.assert_allclose(item["image"][0].numpy(), expected, atol=1e-5)
        np.testing.assert_array_equal(
            item["label"].numpy(), onehot_reference(np.take(LABEL, k, axis=axis), 2)
        )
        assert item["slice_index"] == k
    in_plane = [s for a, s in enumerate((0.5, 0.6, 2.0)) if a != axis]
    assert ds[0]["spacing"].tolist() == pytest.approx([*in_plane, (0.5, 0.6, 2.0)[axis]])


def test_four_dimensional_images_put_channels_first_and_normalise_per_channel(tmp_path: Path) -> None:
    image = np.stack([IMAGE, 10 * IMAGE + 5], axis=-1)
    np.save(tmp_path / "img.npy", image)
    ds = numpy_dataset(
        split="train", labelled=False, cases={"train": "img.npy"}, root=tmp_path, normalize="channel"
    )
    assert ds.in_channels == 2
    volume = np.stack([ds[k]["image"].numpy() for k in range(len(ds))], axis=-1)  # (C, X, Y, Z)
    np.testing.assert_allclose(volume.mean(axis=(1, 2, 3)), [0, 0], atol=1e-5)
    np.testing.assert_allclose(volume.std(axis=(1, 2, 3)), [1, 1], atol=1e-5)
    np.testing.assert_allclose(volume[0], volume[1], atol=1e-4)  # an affine copy z-scores identically


def test_normalize_none_keeps_stored_values(tmp_path: Path) -> None:
    np.save(tmp_path / "img.npy", IMAGE)
    ds = numpy_dataset(split="unlabelled", labelled=False, cases="img.npy", root=tmp_path, normalize="none")
    np.testing.assert_array_equal(ds[1]["image"][0].numpy(), IMAGE[:, :, 1])


def test_label_values_map_classes(tmp_path: Path) -> None:
    label = np.where(LABEL == 2, 7, LABEL)
    spec = _write("npy", tmp_path, label=label)
    ds = _build(spec, tmp_path, class_names=("x", "y"), label_values={"x": 1, "y": 7})
    np.testing.assert_array_equal(ds[0]["label"].numpy(), onehot_reference(LABEL[:, :, 0], 2))


def test_cases_globs_pair_images_and_labels_in_sorted_order(tmp_path: Path) -> None:
    for name in ("c2", "c1", "c3"):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "seg").mkdir(exist_ok=True)
        (tmp_path / "img" / f"{name}.nii.gz").touch()
        (tmp_path / "seg" / f"{name}_seg.nii.gz").touch()
    cases = resolve_cases(
        {"val": {"image": "img/*.nii.gz", "label": "seg/*.nii.gz"}}, "val", root=tmp_path, dataset="nifti"
    )
    assert [c.volume_id for c in cases] == ["c1", "c2", "c3"]
    assert [c.label.name for c in cases if c.label is not None] == [
        "c1_seg.nii.gz",
        "c2_seg.nii.gz",
        "c3_seg.nii.gz",
    ]


@pytest.mark.parametrize("root", ["scans[v2]", "scans[2]", "lr*", "run?"])
def test_a_root_named_with_glob_characters_is_that_folder_not_a_pattern(tmp_path: Path, root: str) -> None:
    # Unescaped, scans[v2] matched a sibling "scansv" (or nothing), whose files were then trained on.
    for folder in (root, "scansv", "scans2", "lrx", "runs"):
        for split in ("img", "seg"):
            (tmp_path / folder / split).mkdir(parents=True, exist_ok=True)
        for name in ("c1", "c2") if folder == root else ("other",):
            (tmp_path / folder / "img" / f"{name}.nii.gz").touch()
            (tmp_path / folder / "seg" / f"{name}_seg.nii.gz").touch()
    cases = {"val": {"image": "img/*.nii.gz", "label": "seg/*.nii.gz"}}
    found = resolve_cases(cases, "val", root=tmp_path / root, dataset="nifti")
    assert [c.image for c in found] == [tmp_path / root / "img" / f"{n}.nii.gz" for n in ("c1", "c2")]
    assert [c.label for c in found] == [tmp_path / root / "seg" / f"{n}_seg.nii.gz" for n in ("c1", "c2")]


@pytest.mark.parametrize("label_glob", ["seg/*.nii.gz", "seg/*", "seg/case*", "seg/*_seg.nii.gz"])
def test_a_label_glob_that_takes_in_a_shared_suffix_pairs_each_image_with_its_own_label(
    tmp_path: Path, label_glob: str
) -> None:
    # "seg/*.nii.gz" matches case1_seg where "img/*.nii.gz" matches case1: paired in sorted order,
    # case1 got case10_seg ('_' sorts after '0') and case10 got case1_seg, silently.
    (tmp_path / "img").mkdir()
    (tmp_path / "seg").mkdir()
    names = ("case1", "case2", "case10", "case11", "case3")
    for name in names:
        (tmp_path / "img" / f"{name}.nii.gz").touch()
        (tmp_path / "seg" / f"{name}_seg.nii.gz").touch()
    cases = {"train": {"image": "img/*.nii.gz", "label": label_glob}}
    found = resolve_cases(cases, "train", root=tmp_path, dataset="nifti")
    assert sorted(c.volume_id for c in found) == sorted(names)
    for case in found:
        assert case.label is not None and case.label.name == f"{case.volume_id}_seg.nii.gz"


@pytest.mark.parametrize(
    ("image_name", "label_name"),
    [
        ("case_{n}.npy", "case_{n:02d}.npy"),
        ("case_{n:03d}.npy", "mask_{n}_seg.npy"),
        ("s{n}.npy", "s{n:02d}.npy"),
    ],
)
def test_numbers_padded_differently_pair_by_their_value(
    tmp_path: Path, image_name: str, label_name: str
) -> None:
    # case_1 with case_01: in sorted order 11 of 12 images took another case's label, silently.
    (tmp_path / "img").mkdir()
    (tmp_path / "seg").mkdir()
    for n in range(1, 13):
        (tmp_path / "img" / image_name.format(n=n)).touch()
        (tmp_path / "seg" / label_name.format(n=n)).touch()
    cases = {"train": {"image": "img/*.npy", "label": "seg/*.npy"}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = resolve_cases(cases, "train", root=tmp_path, dataset="numpy")
    assert len(found) == 12
    for case in found:
        assert case.label is not None
        assert int(re.findall(r"\d+", case.label.name)[0]) == int(re.findall(r"\d+", case.image.name)[0])


def test_names_that_do_not_pair_are_paired_in_sorted_order_with_a_warning_naming_the_pairs(
    tmp_path: Path,
) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "seg").mkdir()
    for image, label in (("knee_a", "mask_x"), ("knee_b", "mask_y"), ("knee_c", "mask_z")):
        (tmp_path / "img" / f"{image}.npy").touch()
        (tmp_path / "seg" / f"{label}.npy").touch()
    cases = {"train": {"image": "img/*.npy", "label": "seg/*.npy"}}
    with pytest.warns(
        UserWarning,
        match=r"numpy cases\['train'\].*paired in sorted order \(knee_a\.npy with mask_x\.npy, knee_b\.npy "
        r"with mask_y\.npy, knee_c\.npy with mask_z\.npy\); check that",
    ):
        found = resolve_cases(cases, "train", root=tmp_path, dataset="numpy")
    assert [(c.image.name, c.label.name if c.label else None) for c in found] == [
        ("knee_a.npy", "mask_x.npy"),
        ("knee_b.npy", "mask_y.npy"),
        ("knee_c.npy", "mask_z.npy"),
    ]


@pytest.mark.parametrize(
    ("images", "labels", "unpaired"),
    [
        (("knee_101", "knee_102"), ("knee_101_seg", "knee_201_seg"), ("knee_102.npy", "knee_201_seg.npy")),
        (("knee_ab", "knee_ac"), ("knee_zb_seg", "knee_zc_seg"), None),
    ],
)
def test_shared_parts_cut_through_a_number_or_word_do_not_pair_other_cases(
    tmp_path: Path, images: tuple[str, str], labels: tuple[str, str], unpaired: tuple[str, str] | None
) -> None:
    # knee_101, knee_102 less their shared "knee_10" left 1, 2; knee_101_seg, knee_201_seg less
    # their shared "01_seg" left 1, 2 too: knee_102 got knee_201_seg, silently. Compared whole,
    # 101 pairs and 102 / 201 do not: refused, naming those two (sorted order would pair them).
    # Names that pair no way go in sorted order with the warning, as the docs promise.
    (tmp_path / "img").mkdir()
    (tmp_path / "seg").mkdir()
    for image, label in zip(images, labels):
        (tmp_path / "img" / f"{image}.npy").touch()
        (tmp_path / "seg" / f"{label}.npy").touch()
    cases = {"train": {"image": "img/*.npy", "label": "seg/*.npy"}}
    if unpaired is None:
        with pytest.warns(UserWarning, match=r"paired in sorted order"):
            resolve_cases(cases, "train", root=tmp_path, dataset="numpy")
    else:
        lonely, spare = unpaired
        with pytest.raises(
            DataError,
            match=rf"1 image\(s\) have no label: {re.escape(lonely)}; 1 label\(s\) have no image: "
            rf"{re.escape(spare)};",
        ):
            resolve_cases(cases, "train", root=tmp_path, dataset="numpy")
    # Whole numbers still pair by value, however padded and whatever the affixes.
    for n in (7, 11, 101):
        (tmp_path / "img" / f"knee_{n:04d}.npy").touch()
        (tmp_path / "seg" / f"mask{n}_seg.npy").touch()
    cases = {"train": {"image": "img/knee_0*.npy", "label": "seg/mask*.npy"}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = resolve_cases(cases, "train", root=tmp_path, dataset="numpy")
    assert {c.image.name: c.label.name if c.label else None for c in found} == {
        f"knee_{n:04d}.npy": f"mask{n}_seg.npy" for n in (7, 11, 101)
    }


def test_a_label_glob_with_a_shared_prefix_pairs_by_the_part_that_differs(tmp_path: Path) -> None:
    for n in ("1", "9", "10"):
        (tmp_path / f"sub{n}.npy").touch()
        (tmp_path / f"mask_sub{n}.npy").touch()
    found = resolve_cases(
        {"train": {"image": "sub*.npy", "label": "mask_*.npy"}}, "train", root=tmp_path, dataset="numpy"
    )
    assert {c.image.name: c.label.name if c.label else None for c in found} == {
        f"sub{n}.npy": f"mask_sub{n}.npy" for n in ("1", "9", "10")
    }


def test_bare_entries_are_the_unlabelled_split(tmp_path: Path) -> None:
    (tmp_path / "x.npy").touch()
    assert [c.volume_id for c in resolve_cases(["x.npy"], "unlabelled", root=tmp_path, dataset="numpy")] == [
        "x"
    ]


# -- bad input -------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nifti cases\['train'\] image .*absent\.nii\.gz does not exist"):
        nifti_dataset(
            split="train", cases={"train": {"image": "absent.nii.gz"}}, root=tmp_path, class_names=("a",)
        )


def test_glob_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pattern .*\*\.npy' matches no files"):
        numpy_dataset(split="train", labelled=False, cases={"train": "*.npy"}, root=tmp_path)


def test_a_glob_ending_in_a_slash_takes_series_folders_only(tmp_path: Path) -> None:
    # Per-patient folders of identically named slices: globbing the folders gives one case per
    # patient, globbing the files one case per file (a slice each), named with its folder.
    for patient in ("p1", "p2"):
        (tmp_path / patient).mkdir()
        (tmp_path / patient / "IM0001.dcm").touch()
    (tmp_path / "notes.txt").touch()
    found = resolve_cases("*/", "unlabelled", root=tmp_path, dataset="ct")
    assert [(c.volume_id, c.image) for c in found] == [("p1", tmp_path / "p1"), ("p2", tmp_path / "p2")]
    assert [c.volume_id for c in resolve_cases("*", "unlabelled", root=tmp_path, dataset="ct")] == [
        "notes",
        "p1",
        "p2",
    ]
    by_file = resolve_cases("**/*.dcm", "unlabelled", root=tmp_path, dataset="ct")
    assert [(c.volume_id, c.image.name) for c in by_file] == [
        ("p1_IM0001", "IM0001.dcm"),
        ("p2_IM0001", "IM0001.dcm"),
    ]


def test_globbed_labels_pair_with_their_images_by_name_not_by_sorted_position(tmp_path: Path) -> None:
    # Sorted, case1_seg comes after case10_seg ('_' > '0') while case1 comes before case10: paired
    # by position, case1 got case10's mask.
    for folder in ("img", "seg", "a", "b", "c"):
        (tmp_path / folder).mkdir()
    for n in ("1", "2", "10"):
        (tmp_path / "img" / f"case{n}.npy").touch()
        (tmp_path / "seg" / f"case{n}_seg.npy").touch()
    cases = {"train": {"image": "img/case*.npy", "label": "seg/case*_seg.npy"}}
    found = resolve_cases(cases, "train", root=tmp_path, dataset="numpy")
    assert [(c.volume_id, c.label.name if c.label else None) for c in found] == [
        ("case1", "case1_seg.npy"),
        ("case10", "case10_seg.npy"),
        ("case2", "case2_seg.npy"),
    ]
    # Several wildcards, '?' and a character class: each pair agrees on every one of them.
    for site, n in (("a", "1"), ("a", "10"), ("b", "1")):
        (tmp_path / site / f"s{n}x.npy").touch()
        (tmp_path / site / f"s{n}x_mask.npy").touch()
    cases = {"train": {"image": "[ab]/s*?x.npy", "label": "[ab]/s*?x_mask.npy"}}
    found = resolve_cases(cases, "train", root=tmp_path, dataset="numpy")
    assert [(c.image.parent.name, c.image.name, c.label.name if c.label else None) for c in found] == [
        ("a", "s10x.npy", "s10x_mask.npy"),
        ("a", "s1x.npy", "s1x_mask.npy"),
        ("b", "s1x.npy", "s1x_mask.npy"),
    ]
    # Wildcards that match other names on each side (t1 / seg): paired in sorted order, as before.
    for n in ("1", "2"):
        (tmp_path / "c" / f"p{n}_t1.npy").touch()
        (tmp_path / "c" / f"p{n}_seg.npy").touch()
    cases = {"train": {"image": "c/*_t1.npy", "label": "c/*_seg.npy"}}
    assert [
        c.label.name if c.label else None
        for c in resolve_cases(cases, "train", root=tmp_path, dataset="numpy")
    ] == [
        "p1_seg.npy",
        "p2_seg.npy",
    ]


def test_glob_pair_with_different_counts(tmp_path: Path) -> None:
    for name in ("a.npy", "b.npy", "a_seg.npz"):
        (tmp_path / name).touch()
    with pytest.raises(DataError, match=r"matches 2 file\(s\) but label '\*_seg.npz' matches 1"):
        resolve_cases(
            {"train": {"image": "?.npy", "label": "*_seg.npz"}}, "train", root=tmp_path, dataset="numpy"
        )


def test_empty_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"numpy cases\['val'\] is empty"):
        numpy_dataset(split="val", cases={"val": []}, root=tmp_path, class_names=("a",))


def test_undefined_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"split 'test' is not defined in 'cases'; it defines \['train'\]"):
        numpy_dataset(split="test", cases={"train": []}, root=tmp_path, class_names=("a",))


def test_one_folder_per_case_with_the_same_file_names_is_named_by_the_folders(tmp_path: Path) -> None:
    # The layout of KiTS and many hospital exports: <case>/imaging.nii.gz, <case>/segmentation.nii.gz.
    for case in ("case_00000", "case_00001"):
        (tmp_path / "cases" / case).mkdir(parents=True)
        np.save(tmp_path / "cases" / case / "imaging.npy", IMAGE)
        np.save(tmp_path / "cases" / case / "segmentation.npy", np.zeros_like(IMAGE, dtype=np.uint8))
    np.save(tmp_path / "cases" / "extra.npy", IMAGE)
    cases = {"image": "cases/*/imaging.npy", "label": "cases/*/segmentation.npy"}
    found = resolve_cases({"train": [cases, "cases/extra.npy"]}, "train", root=tmp_path, dataset="numpy")
    assert [(c.volume_id, c.image.parent.name) for c in found] == [
        ("case_00000_imaging", "case_00000"),
        ("case_00001_imaging", "case_00001"),
        ("extra", "cases"),  # a name no other image of the split has is kept
    ]
    assert all(c.label is not None and c.label.parent == c.image.parent for c in found[:2])
    # Deeper: the folders below the common one, joined.
    for site in ("s1", "s2"):
        (tmp_path / site / "p").mkdir(parents=True)
        np.save(tmp_path / site / "p" / "ct.npy", IMAGE)
    assert [
        c.volume_id for c in resolve_cases("s*/*/ct.npy", "unlabelled", root=tmp_path, dataset="numpy")
    ] == [
        "s1_p_ct",
        "s2_p_ct",
    ]


def test_duplicate_ids(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "x.npy", IMAGE)
    np.save(tmp_path / "x.npy", IMAGE)
    (tmp_path / "a" / "y.npy").write_bytes((tmp_path / "x.npy").read_bytes())
    # An id given twice, or given as another image's name, is refused, naming both images.
    with pytest.raises(DataError, match=r"id 'x' is used by both .*a.x\.npy and .*a.y\.npy"):
        numpy_dataset(
            split="train",
            labelled=False,
            cases={"train": [{"image": "a/x.npy", "id": "x"}, {"image": "a/y.npy", "id": "x"}]},
            root=tmp_path,
        )
    with pytest.raises(DataError, match=r"id 'x' is used by both"):
        numpy_dataset(
            split="train",
            labelled=False,
            cases={"train": ["x.npy", {"image": "a/y.npy", "id": "x"}]},
            root=tmp_path,
        )
    # Two formats of one name in one folder: no folder tells them apart.
    np.savez(tmp_path / "x.npz", IMAGE)
    with pytest.raises(DataError, match=r"id 'x' is used by both .*x\.npy and .*x\.npz"):
        resolve_cases("x.np?", "unlabelled", root=tmp_path, dataset="numpy")


def test_one_image_listed_twice_in_a_split_is_refused_naming_both_entries(tmp_path: Path) -> None:
    # Under a second id it was read twice: two test cases of one scan in the paired statistics.
    (tmp_path / "test").mkdir()
    for name in ("a", "b"):
        np.save(tmp_path / "test" / f"{name}.npy", IMAGE)
        np.save(tmp_path / "test" / f"{name}_seg.npy", np.ones_like(IMAGE, dtype=np.uint8))
    cases = {
        "test": [
            {"image": "test/?.npy", "label": "test/?_seg.npy"},
            {"image": "test/a.npy", "label": "test/a_seg.npy", "id": "patient7"},
        ]
    }
    with pytest.raises(DataError) as caught:
        numpy_dataset(split="test", cases=cases, root=tmp_path, class_names=("x",))
    assert str(caught.value).startswith(
        f"numpy cases['test']: image {tmp_path / 'test' / 'a.npy'} is read by two cases, 'a' and 'patient7': "
        "entries 0 ('test/?.npy') and 1 ('test/a.npy') both list it; expected each image once in a split"
    )
    # Another spelling of the path, or a link to the file, is the same image; so in any split.
    (tmp_path / "link.npy").symlink_to(tmp_path / "test" / "b.npy")
    for again in ("./test/b.npy", "link.npy"):
        with pytest.raises(DataError, match=r"is read by two cases, 'b' and '(b|link)': entries 0 .* and 1 "):
            resolve_cases(["test/b.npy", again], "unlabelled", root=tmp_path, dataset="numpy")
    # Distinct files of one split are fine, as before.
    found = resolve_cases({"train": ["test/a.npy", "test/b.npy"]}, "train", root=tmp_path, dataset="numpy")
    assert [c.volume_id for c in found] == ["a", "b"]


# MetaImage and NRRD headers say which axes are spatial, which their readers refuse beyond three
# (tests/data/test_data_metaimage.py, test_data_nrrd.py); these formats hold arrays of any rank.
@pytest.mark.parametrize("fmt", [f for f in FORMATS if f not in ("metaimage", "nrrd")])
def test_wrong_rank(tmp_path: Path, fmt: str) -> None:
    spec = _write(
        fmt, tmp_path, image=np.zeros((2, 2, 2, 2, 2), np.float32), label=np.zeros((2, 2), np.uint8)
    )
    with pytest.raises(
        DataError, match=r"array has rank 5 \(shape \(2, 2, 2, 2, 2\)\); expected rank 2, 3 or 4"
    ):
        _build(spec, tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_image_label_shape_mismatch(tmp_path: Path, fmt: str) -> None:
    spec = _write(fmt, tmp_path, label=LABEL[:, :3])
    with pytest.raises(DataError, match=r"has shape \(6, 3, 4\) but image .* has shape \(6, 5, 4\)"):
        _build(spec, tmp_path)


def test_a_shape_mismatch_along_another_slice_axis_names_the_stored_shapes(tmp_path: Path) -> None:
    # The message gave the (rows, columns, slices) grids as "shape": (8, 3, 10), which neither file has.
    np.save(tmp_path / "a.npy", RNG.normal(size=(10, 8, 3)))
    np.save(tmp_path / "a_seg.npy", np.zeros((10, 8, 4), np.uint8))
    cases = {"train": {"image": "a.npy", "label": "a_seg.npy"}}
    with pytest.raises(DataError) as caught:
        numpy_dataset(split="train", cases=cases, root=tmp_path, class_names=("x",), slice_axis=0)
    # Slicing along axis 0: rows are axis 1 (8), columns axis 2 (3 or 4), 10 slices.
    assert str(caught.value) == (
        f"label {tmp_path / 'a_seg.npy'} (stored shape (10, 8, 4)) is sliced to a (rows, columns, slices) "
        f"grid of (8, 4, 10) but image {tmp_path / 'a.npy'} (stored shape (10, 8, 3)) to (8, 3, 10); "
        "expected the same voxel grid"
    )


def test_a_shape_mismatch_in_one_hdf5_file_names_each_dataset(tmp_path: Path) -> None:
    # Image and label in one file: the message named the file twice and neither dataset.
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["image"] = RNG.normal(size=(8, 8, 3))
        f["label"] = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(DataError) as caught:
        hdf5_dataset(split="train", cases={"train": "a.h5"}, root=tmp_path, class_names=("x",))
    path = tmp_path / "a.h5"
    assert str(caught.value) == (
        f"label {path} (dataset 'label') has shape (8, 8, 4) but image {path} (dataset 'image') has shape "
        "(8, 8, 3); expected the same voxel grid"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_label_out_of_range_names_file_and_slice(tmp_path: Path, fmt: str) -> None:
    label = LABEL.copy()
    label[0, 0, 2] = 5
    spec = _write(fmt, tmp_path, label=label)
    ds = _build(spec, tmp_path)
    ds[1]
    with pytest.raises(
        DataError, match=r"slice 2: label values \[5\] are out of range; expected 0 .* \[1, 2\]"
    ):
        ds[2]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_nan_or_inf_pixels(tmp_path: Path, fmt: str, bad: float) -> None:
    image = IMAGE.copy()
    image[3, 1, 1] = bad
    spec = _write(fmt, tmp_path, image=image)
    ds = _build(spec, tmp_path, normalize="none")
    ds[0]
    member = {"npz": " (array 'vol')", "hdf5": " (dataset 'scan/image')"}.get(fmt, "")
    with pytest.raises(DataError, match=rf"img\.\w+(\.gz)?{re.escape(member)} slice 1: 1 NaN/Inf value"):
        ds[1]


def test_missing_h5_key(tmp_path: Path) -> None:
    spec = _write("hdf5", tmp_path)
    with pytest.raises(DataError, match=r"img\.h5 has no dataset 'scan/labels'; it holds \['scan'\]"):
        _build(spec, tmp_path, label_key="scan/labels")


def test_missing_npz_member(tmp_path: Path) -> None:
    spec = _write("npz", tmp_path)
    with pytest.raises(DataError, match=r"img\.npz has no array 'image'; it holds \['mask', 'vol'\]"):
        _build(spec, tmp_path, image_key="image")


def test_an_object_array_in_an_npz_is_refused_as_never_loaded(tmp_path: Path) -> None:
    # np.load refuses it only when the data is read, which used to say "truncated or corrupt data?".
    objects = np.empty(IMAGE.shape, dtype=object)
    objects[...] = 1
    np.savez(tmp_path / "img.npz", vol=objects, mask=LABEL)
    spec = {"factory": numpy_dataset, "cases": {"train": {"image": "img.npz", "label": "img.npz"}}}
    with pytest.raises(
        DataError,
        match=r"^NumPy archive .*img\.npz: array 'vol' has dtype object \(Python objects\), which is never "
        r"loaded, as reading it would mean unpickling",
    ):
        _build(spec, tmp_path, image_key="vol", label_key="mask")


def test_a_file_that_is_no_npy_is_refused_as_such_not_as_pickled_data(tmp_path: Path) -> None:
    # np.load takes a file without the .npy magic for a pickle: "pickled (object) data ... allow_pickle=".
    page = tmp_path / "scan.npy"
    page.write_bytes(b"<html><body>404 Not Found</body></html>\n")
    with pytest.raises(
        DataError,
        match=r"^NumPy file .*scan\.npy is not a NumPy \.npy file \(expected the \\x93NUMPY magic; found "
        r"b'<html>' \(text markup: a web page saved by a failed download\?\)\)$",
    ):
        NumpyVolume(page)
    archive = tmp_path / "arch.npy"  # an .npz under an .npy name
    np.savez(archive.with_suffix(".npz"), image=IMAGE)
    archive.with_suffix(".npz").rename(archive)
    with pytest.raises(
        DataError, match=r"arch\.npy is not a NumPy \.npy file .*found b'PK\\x03\\x04.*zip archive"
    ):
        NumpyVolume(archive)
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.npy is not a NumPy \.npy file .*found b''\)$"):
        NumpyVolume(empty)


def test_an_object_array_npy_is_refused_as_never_loaded(tmp_path: Path) -> None:
    objects = np.empty(IMAGE.shape, dtype=object)
    objects[...] = 1
    np.save(tmp_path / "img.npy", objects, allow_pickle=True)
    with pytest.raises(
        DataError,
        match=r"^NumPy file .*img\.npy has dtype object \(Python objects: pickled data, no image\), which is "
        r"never loaded",
    ):
        NumpyVolume(tmp_path / "img.npy")
    # A numeric array of the same shape, beside it, is read.
    np.save(tmp_path / "ok.npy", IMAGE)
    np.testing.assert_array_equal(NumpyVolume(tmp_path / "ok.npy").read(1), IMAGE[:, :, 1])


def test_an_npz_whose_array_fails_its_crc_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    # zipfile raises BadZipFile (no OSError) for a member whose CRC fails: it escaped as a raw traceback.
    path = tmp_path / "crc.npz"
    image = np.random.default_rng(7).normal(size=(64, 64, 4)).astype(np.float32)
    np.savez(path, image=image)  # stored, not compressed: the array's bytes are in the file as they are
    data = bytearray(path.read_bytes())
    start = bytes(data).find(image.tobytes())
    assert start > 0
    # Its last bytes: the header, read first, does not reach them (nor the CRC check at the end).
    end = start + image.nbytes
    data[end - 4 : end] = bytes(b ^ 0xFF for b in data[end - 4 : end])
    path.write_bytes(bytes(data))
    volume = NumpyVolume(path)  # the header is intact
    with pytest.raises(
        DataError, match=r"^NumPy file .*crc\.npz cannot be read at slice 0 .*BadZipFile: Bad CRC-32"
    ):
        volume.read(0)


def _write_on_one_grid(
    fmt: str, folder: Path, image: np.ndarray, label: np.ndarray = LABEL
) -> dict[str, Any]:
    """:func:`_write`, with a NIfTI label on its image's grid (as the pre-flight check requires)."""
    spec = _write(fmt, folder, image=image, label=label)
    if fmt == "nifti":
        write_nifti(folder / "seg.nii.gz", label, spacing=(0.5, 0.6, 2.0))
    return spec


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value", [0.0, 7.0])
def test_a_blank_image_volume_is_refused_by_the_preflight_check(
    tmp_path: Path, fmt: str, value: float
) -> None:
    # Accepted, an all-zero training image was trained on and a constant test image scored.
    spec = _write_on_one_grid(fmt, tmp_path, image=np.full(IMAGE.shape, value, np.float32))
    dataset = _build(spec, tmp_path)
    # An archive's message names the array in it too: the file may hold a good scan beside it.
    member = {"npz": " (array 'vol')", "hdf5": " (dataset 'scan/image')"}.get(fmt, "")
    with pytest.raises(
        DataError,
        match=rf"^\w+ case 'img': image .*img\.[\w.]+{re.escape(member)} holds the value {value:g} in every "
        r"voxel \(a blank volume: .*\); expected an image whose intensities vary$",
    ):
        preflight({"train": dataset}, progress=False)


def test_an_hdf5_image_allocated_but_never_written_is_refused(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "img.h5", "w") as f:
        f.create_dataset("image", shape=IMAGE.shape, dtype="f4")  # all fill value
        f["label"] = LABEL
    dataset = hdf5_dataset(split="train", cases={"train": "img.h5"}, root=tmp_path, class_names=("a", "b"))
    with pytest.raises(
        DataError,
        match=r"^hdf5 case 'img': image .*img\.h5 \(dataset 'image'\) holds the value 0 in every voxel",
    ):
        preflight({"train": dataset}, progress=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_constant_label_volume_or_image_slice_passes_the_preflight_check(tmp_path: Path, fmt: str) -> None:
    image = IMAGE.copy()
    image[:, :, 1] = 3.0  # one blank slice of a scan: padding, not a failed export
    spec = _write_on_one_grid(fmt, tmp_path, image=image, label=np.zeros_like(LABEL))  # all background
    report = preflight({"train": _build(spec, tmp_path)}, progress=False)
    assert report.cases == 1


def test_truncated_h5(tmp_path: Path) -> None:
    _write("hdf5", tmp_path)
    data = (tmp_path / "img.h5").read_bytes()
    (tmp_path / "img.h5").write_bytes(data[:100])
    with pytest.raises(DataError, match=r"img\.h5 cannot be opened"):
        hdf5_dataset(split="train", labelled=False, cases={"train": "img.h5"}, root=tmp_path)


def test_labelled_without_class_names(tmp_path: Path) -> None:
    spec = _write("npy", tmp_path)
    with pytest.raises(DataError, match="labelled=True needs class_names"):
        _build(spec, tmp_path, class_names=())


@pytest.mark.parametrize(
    ("unit", "mm_per_unit"), [("meter", 1000.0), ("micron", 0.001), ("mm", 1.0), ("unknown", 1.0)]
)
def test_nifti_geometry_is_in_mm_whatever_unit_the_header_states(
    tmp_path: Path, unit: str, mm_per_unit: float
) -> None:
    import nibabel as nib

    from inpaintssl.data.preflight import check_same_geometry
    from inpaintssl.data.readers import NiftiVolume

    in_mm = np.array([[0.0, -0.8, 0.0, 90.0], [0.9, 0.0, 0.0, -120.0], [0.0, 0.0, 3.0, -70.0], [0, 0, 0, 1]])
    in_unit = in_mm.copy()
    in_unit[:3] /= mm_per_unit
    image = nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), in_unit)
    image.header.set_xyzt_units(unit)
    nib.save(image, tmp_path / "scan.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.uint8), in_mm), tmp_path / "seg_mm.nii.gz")

    volume = NiftiVolume(tmp_path / "scan.nii.gz")

    # Stored axes x, y, z are 0.9, 0.8 and 3 mm apart (the columns' lengths of the mm affine).
    assert np.allclose(volume.spacing, (0.9, 0.8, 3.0))
    assert np.allclose(volume.affine, in_mm)
    assert np.allclose(volume.file_affine, in_unit)
    assert volume.stored_orientation == "ALS"  # as nibabel.aff2axcodes(in_mm) says
    # The same grid, stated in mm by its label, is the same grid.
    check_same_geometry(volume, NiftiVolume(tmp_path / "seg_mm.nii.gz", ranks={3}))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_class_named_twice_is_refused(tmp_path: Path, fmt: str) -> None:
    spec = _write(fmt, tmp_path)
    # Accepted, this trained 3 output channels and kept 2 results columns.
    with pytest.raises(
        DataError, match=r"class_names \['a', 'b', 'a'\] name 'a' 2 times; expected each class"
    ):
        _build(spec, tmp_path, class_names=["a", "b", "a"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_class_named_mean_is_refused(tmp_path: Path, fmt: str) -> None:
    # Results hold the classes' average as dice_mean: a class "mean" had its own Dice overwritten
    # by the average in test_metrics.csv and the run's summary, without a word.
    spec = _write(fmt, tmp_path)
    with pytest.raises(DataError, match=r"class_names \['mean', 'b'\] name a class 'mean'; expected another"):
        _build(spec, tmp_path, class_names=["mean", "b"])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("labelled", [True, False])
def test_class_names_given_as_one_string_are_refused_not_split_into_letters(
    tmp_path: Path, fmt: str, labelled: bool
) -> None:
    spec = _write(fmt, tmp_path)
    name = fmt if fmt in ("nifti", "metaimage", "nrrd", "hdf5") else "numpy"
    # Accepted, 'liver' trained a 5-class model, one class per letter ('l', 'i', 'v', 'e', 'r').
    with pytest.raises(
        DataError,
        match=rf"^{name}: class_names: expected a list of class names, found the string 'liver'; "
        r"for a single class write a one-item list: \[liver\]$",
    ):
        _build(spec, tmp_path, class_names="liver", labelled=labelled)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("axis", "shown"), [("z", r"'z' \(str\)"), (1.0, r"1\.0 \(float\)"), (True, "True")])
def test_a_slice_axis_that_is_not_an_integer_is_refused(
    tmp_path: Path, fmt: str, axis: Any, shown: str
) -> None:
    spec = _write(fmt, tmp_path)
    name = fmt if fmt in ("nifti", "metaimage", "nrrd", "hdf5") else "numpy"
    with pytest.raises(DataError, match=rf"^{name}: slice_axis={shown} .*is not one of the axes 0, 1, 2"):
        _build(spec, tmp_path, slice_axis=axis)


def test_a_reader_names_its_file_for_a_slice_axis_that_is_not_an_integer(tmp_path: Path) -> None:
    from inpaintssl.data.readers import NumpyVolume

    np.save(tmp_path / "img.npy", IMAGE)
    with pytest.raises(
        DataError, match=r"NumPy file .*img\.npy: slice_axis='z' \(str\) is not one of the axes"
    ):
        NumpyVolume(tmp_path / "img.npy", slice_axis="z")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["npy", "npz", "hdf5"])
@pytest.mark.parametrize(
    ("spacing", "found"),
    [
        ([0, 0, 0], r"spacing=\[0, 0, 0\] holds 0 \(values 1, 2, 3\); expected finite values > 0 in mm"),
        (
            [0.5, -1.0, 2.0],
            r"spacing=\[0\.5, -1\.0, 2\.0\] holds -1\.0 \(value 2\); expected finite values > 0",
        ),
        ([0.5, 0.5, float("nan")], r"spacing=\[0\.5, 0\.5, nan\] holds nan \(value 3\)"),
        ([0.5], r"spacing=\[0\.5\] has 1 value\(s\); expected 2 or 3 voxel sizes in mm"),
        ("0.5", r"spacing='0\.5' is not a list of numbers"),
        ([0.5, "x", 1.0], r"spacing=\[0\.5, 'x', 1\.0\] holds 'x', not a number"),
    ],
)
def test_a_bad_spacing_parameter_is_refused(tmp_path: Path, fmt: str, spacing: Any, found: str) -> None:
    spec = _write(fmt, tmp_path)
    name = "hdf5" if fmt == "hdf5" else "numpy"
    with pytest.raises(DataError, match=rf"^{name}: {found}"):
        _build(spec, tmp_path, spacing=spacing)


@pytest.mark.parametrize("fmt", ["npy", "npz", "hdf5"])
def test_two_spacing_values_are_enough_for_2d_slices_only(tmp_path: Path, fmt: str) -> None:
    two_d = _write(fmt, tmp_path / "2d", image=IMAGE[:, :, 0], label=LABEL[:, :, 0])
    ds = _build(two_d, tmp_path / "2d", spacing=["0.5", 0.6])
    # A 2D slice's thickness is not stated: 1 mm, as before.
    assert ds[0]["spacing"].tolist() == pytest.approx([0.5, 0.6, 1.0])
    spec = _write(fmt, tmp_path)
    # For a volume the slice spacing silently became 1 mm.
    with pytest.raises(
        DataError,
        match=r"img\.\w+.*: spacing=\[0\.5, 0\.6\] has 2 value\(s\); expected 3 voxel sizes in mm for a 3D",
    ):
        _build(spec, tmp_path, spacing=[0.5, 0.6])


def test_an_h5_key_naming_a_group_says_so(tmp_path: Path) -> None:
    spec = _write("hdf5", tmp_path)
    with h5py.File(tmp_path / "img.h5", "a") as f:
        f.create_group("empty")
    with pytest.raises(
        DataError,
        match=r"img\.h5: 'scan' is a group, not a dataset; it holds datasets 'scan/image', 'scan/label';",
    ):
        _build(spec, tmp_path, image_key="scan")
    with pytest.raises(DataError, match=r"img\.h5: 'empty' is a group, not a dataset; it holds no datasets"):
        _build(spec, tmp_path, label_key="empty")


def test_mixed_channel_counts_name_the_files(tmp_path: Path) -> None:
    write_nifti(tmp_path / "a.nii", IMAGE)
    write_nifti(tmp_path / "b.nii", np.stack([IMAGE, IMAGE], axis=-1))
    write_nifti(tmp_path / "c.nii", IMAGE)
    with pytest.raises(DataError) as caught:
        nifti_dataset(split="u", labelled=False, cases={"u": ["a.nii", "b.nii", "c.nii"]}, root=tmp_path)
    a, b, c = (tmp_path / n for n in ("a.nii", "b.nii", "c.nii"))
    assert str(caught.value) == (
        f"nifti: images have different channel counts (1 channel(s): {a}, {c}; 2 channel(s): {b}); "
        "expected one channel count for every image"
    )


def test_an_image_listed_in_two_evaluated_splits_is_refused(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", np.zeros((4, 4, 2), np.float32))
    cases = {"train": ["a.npy", "b.npy"], "val": "c.npy", "test": ["./b.npy"], "unlabelled": "*.npy"}
    for split, other in (("train", "test"), ("test", "train")):
        both = rf"numpy: .*b\.npy is in both cases\['{split}'\] and cases\['{other}'\]; expected"
        with pytest.raises(DataError, match=both):
            resolve_cases(cases, split, root=tmp_path, dataset="numpy")
    # val is disjoint from both; pretraining-only images may repeat the others.
    assert [c.volume_id for c in resolve_cases(cases, "val", root=tmp_path, dataset="numpy")] == ["c"]
    assert len(resolve_cases(cases, "unlabelled", root=tmp_path, dataset="numpy")) == 3


def test_an_id_given_in_two_evaluated_splits_is_refused(tmp_path: Path) -> None:
    # Two files of one patient (a rescan, a copy) under one id in train and test: the image check
    # saw two paths and let the patient leak into the test scores.
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", np.zeros((4, 4, 2), np.float32))
    cases = {
        "train": [{"image": "a.npy", "id": "p01"}, {"image": "c.npy", "id": "p03"}],
        "test": [{"image": "b.npy", "id": "p01"}],
        "unlabelled": [{"image": "b.npy", "id": "p01"}],
    }
    for split, other, image, theirs in (("train", "test", "a", "b"), ("test", "train", "b", "a")):
        with pytest.raises(DataError) as caught:
            resolve_cases(cases, split, root=tmp_path, dataset="numpy")
        assert str(caught.value).startswith(
            f"numpy: id 'p01' is given in both cases['{split}'] (image {tmp_path / f'{image}.npy'}) and "
            f"cases['{other}'] (image '{theirs}.npy'); expected each id in one of train, val and test"
        )
    # Pretraining may repeat them; ids derived from file names are not patients' ids.
    assert [c.volume_id for c in resolve_cases(cases, "unlabelled", root=tmp_path, dataset="numpy")] == [
        "p01"
    ]
    (tmp_path / "t").mkdir()
    np.save(tmp_path / "t" / "a.npy", np.zeros((4, 4, 2), np.float32))
    named_alike = {"train": ["a.npy"], "test": ["t/a.npy"]}
    assert [c.volume_id for c in resolve_cases(named_alike, "test", root=tmp_path, dataset="numpy")] == ["a"]


def test_an_existing_file_with_glob_characters_in_its_name_is_that_file(tmp_path: Path) -> None:
    np.save(tmp_path / "case[1].npy", np.zeros((4, 4, 2), np.float32))
    np.save(tmp_path / "case1.npy", np.zeros((4, 4, 2), np.float32))
    (found,) = resolve_cases({"train": "case[1].npy"}, "train", root=tmp_path, dataset="numpy")
    assert found.image.name == "case[1].npy" and found.volume_id == "case[1]"
    # Not an existing file: a pattern, whose [1] is a character class.
    (matched,) = resolve_cases({"train": "cas[e]1.npy"}, "train", root=tmp_path, dataset="numpy")
    assert matched.image.name == "case1.npy"


def _nifti_with_pixdim(path: Path, sform: np.ndarray, pixdim: float) -> Path:
    """A NIfTI file whose sform is ``sform`` and whose pixdim[1:4] are ``pixdim``, written as stored."""
    import nibabel as nib

    image = nib.Nifti1Image(IMAGE, None)  # no affine: nibabel rewrites nothing on saving
    image.header.set_sform(sform, code=1)
    image.header.set_qform(None, code=0)
    image.header["pixdim"][1:4] = pixdim
    image.to_filename(path)
    return path


@pytest.mark.parametrize(("name", "pixdim"), [("stale", 1.0), ("zero", 0.0)])
def test_a_nifti_pixdim_at_odds_with_its_affine_warns_and_the_affine_measures(
    tmp_path: Path, name: str, pixdim: float
) -> None:
    from inpaintssl.data.readers import NiftiVolume
    from inpaintssl.inference.inputs import open_input

    # A stale pixdim (the sform rewritten by a resampling) or one of 0, which nibabel resets to 1.
    path = _nifti_with_pixdim(tmp_path / f"{name}.nii", np.diag([0.5, 0.5, 2.0, 1.0]), pixdim)
    with pytest.warns(UserWarning) as caught:
        volume = NiftiVolume(path)
    [warning] = [w for w in caught if "pixdim" in str(w.message)]
    assert str(warning.message).startswith(
        f"NIfTI file {path}: its header's voxel sizes (pixdim) are 1 x 1 x 1 mm but its affine (sform) "
        "has voxels of 0.5 x 0.5 x 2 mm (the lengths of its columns), more than 1% apart; volumes in "
        "mL and the spacing checks use the affine's 0.5 x 0.5 x 2 mm"
    )
    # Measured as placed: the voxel of the affine, not of the header's 1 mm.
    assert volume.spacing == (0.5, 0.5, 2.0) and volume.stored_zooms == (0.5, 0.5, 2.0)
    with pytest.warns(UserWarning, match="pixdim"):
        _, geometry = open_input(path, prep=plain_slice_preprocessing(), key=None, spacing=None)
    assert geometry.zooms == (0.5, 0.5, 2.0)  # predict's volumes in mL


def test_a_nifti_pixdim_within_one_percent_of_its_affine_is_kept_without_a_warning(tmp_path: Path) -> None:
    import nibabel as nib

    from inpaintssl.data.readers import NiftiVolume

    # 0.5 % off: a scanner's rounding, not a wrong header; the pixdim stays what spacing is.
    path = _nifti_with_pixdim(tmp_path / "close.nii", np.diag([1.005, 0.995, 1.0, 1.0]), 1.0)
    # An oblique anisotropic affine, as nibabel writes it: pixdim and sform agree to float32.
    rotation = np.array([[np.cos(0.3), 0.0, np.sin(0.3)], [0.0, 1.0, 0.0], [-np.sin(0.3), 0.0, np.cos(0.3)]])
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ np.diag([0.83, 0.91, 3.3])
    oblique[:3, 3] = (-91.3, 12.7, 40.1)
    nib.save(nib.Nifti1Image(IMAGE, oblique), tmp_path / "oblique.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        close = NiftiVolume(path)
        rotated = NiftiVolume(tmp_path / "oblique.nii.gz")
    assert close.spacing == (1.0, 1.0, 1.0)
    zooms = nib.load(tmp_path / "oblique.nii.gz").header.get_zooms()
    assert rotated.spacing == tuple(float(z) for z in zooms)


def test_a_gzip_nifti_named_nii_is_told_to_be_renamed(tmp_path: Path) -> None:
    from inpaintssl.data.readers import NiftiVolume

    write_nifti(tmp_path / "scan.nii.gz", IMAGE)
    path = (tmp_path / "scan.nii.gz").rename(tmp_path / "scan.nii")
    with pytest.raises(DataError) as caught:
        NiftiVolume(path)
    assert str(caught.value) == f"NIfTI file {path} is gzip-compressed: rename it to .nii.gz"


@pytest.mark.parametrize("version", [1, 2])
def test_an_uncompressed_nifti_named_nii_gz_is_told_to_be_renamed(tmp_path: Path, version: int) -> None:
    import nibabel as nib

    from inpaintssl.data.readers import NiftiVolume

    image = (nib.Nifti1Image if version == 1 else nib.Nifti2Image)(IMAGE, np.eye(4))
    nib.save(image, tmp_path / "scan.nii")
    path = (tmp_path / "scan.nii").rename(tmp_path / "scan.nii.gz")
    with pytest.raises(DataError) as caught:
        NiftiVolume(path)
    assert str(caught.value) == f"NIfTI file {path} is not gzip-compressed: rename it to .nii"
    # Neither gzip nor NIfTI: the reader's own error, not a rename that would not help.
    path.write_bytes(b"\x00" * 400)
    with pytest.raises(DataError, match=r"cannot be read: ImageFileError: .* is not a gzip file"):
        NiftiVolume(path)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", ["scan.nii", "Scan.Nii"])
def test_an_uncompressed_nifti_cut_short_is_refused_when_opened(
    tmp_path: Path, version: int, name: str
) -> None:
    # nibabel opens it and fails only at the first slice past the end ("Whoops, not enough data
    # in file"), after the checks made at open have passed.
    import nibabel as nib

    from inpaintssl.data.readers import NiftiVolume

    path = tmp_path / name
    nib.save((nib.Nifti1Image if version == 1 else nib.Nifti2Image)(IMAGE, np.eye(4)), tmp_path / "full.nii")
    whole = (tmp_path / "full.nii").read_bytes()  # what nibabel writes: header, then every voxel
    path.write_bytes(whole + b"\x00" * 8)  # bytes after the array are not the array's concern
    assert np.array_equal(NiftiVolume(path).read(3), IMAGE[:, :, 3])
    path.write_bytes(whole[:-20])
    with pytest.raises(DataError) as caught:
        NiftiVolume(path)
    offset = 352 if version == 1 else 544  # the standard's headers, with no extension
    assert len(whole) == offset + IMAGE.size * 4
    assert str(caught.value) == (
        f"NIfTI file {path} holds {len(whole) - 20} bytes; expected {len(whole)} (vox_offset {offset}, "
        "then 6 x 5 x 4 voxels of 4 byte(s)): truncated?"
    )
