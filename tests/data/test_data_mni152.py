"""The mni152 demo dataset read from the ICBM152 files inside the installed nilearn wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inpaintssl.data.base import DataError
from inpaintssl.data.mni152 import MNI152_CLASSES, MNI152Dataset, assign_blocks, template_files

nib = pytest.importorskip("nibabel")


def _independent_labels(zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels and T1 recomputed here from the stored maps: comparisons instead of argmax.

    At zoom 1 this is exact integer arithmetic on the stored 0..255 values (probability x 255).
    """
    files = template_files()
    t1, gm, wm = (np.asanyarray(nib.load(files[k]).dataobj).astype(np.int64) for k in ("t1", "gm", "wm"))
    if zoom != 1:
        t1, gm, wm = (
            ndimage.zoom(v.astype(np.float32), zoom, order=1).astype(np.float64) for v in (t1, gm, wm)
        )
    brain = t1 > 51  # 0.2 x 255
    csf = np.clip(255 - gm - wm, 0, 255)
    label = np.zeros(t1.shape, np.int64)
    # argmax(bg, csf, gm, wm) with ties to the first, written as comparisons
    label[brain & (csf >= gm) & (csf >= wm)] = 1
    label[brain & (gm > csf) & (gm >= wm)] = 2
    label[brain & (wm > csf) & (wm > gm)] = 3
    return label, t1.astype(np.float64)


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    return volume[:, :, z].T[::-1]  # anterior up, patient left on the left


def test_the_bundled_files_are_the_documented_template() -> None:
    files = template_files()
    assert all(Path(p).parent.name == "data" and "nilearn" in str(p) for p in files.values())
    for path in files.values():
        image = nib.load(path)
        assert image.shape == (197, 233, 189)
        assert image.header.get_zooms() == (1.0, 1.0, 1.0)
        stored = np.asanyarray(image.dataobj)
        assert stored.dtype == np.uint8 and stored.max() == 255  # the documented 0..255 range


@pytest.mark.parametrize("zoom", [0.5, 1.0])
def test_labels_come_from_the_probability_maps(zoom: float) -> None:
    label, t1 = _independent_labels(zoom)
    for split in ("train", "test"):
        ds = MNI152Dataset(split=split, zoom=zoom)
        for i in range(0, len(ds), 5):
            item = ds[i]
            z = item["slice_index"]
            expected = _axial(label, z)
            got = item["label"].numpy()
            assert got.shape == (3, *expected.shape)
            np.testing.assert_array_equal(got, (expected[None] == np.array([1, 2, 3])[:, None, None]))
            np.testing.assert_allclose(
                item["image"][0].numpy(), (_axial(t1, z) - t1.mean()) / t1.std(), atol=1e-4
            )


def test_shapes_spacing_and_class_presence_in_mid_brain() -> None:
    ds = MNI152Dataset(split="train")
    assert ds.class_names == MNI152_CLASSES == ("csf", "gm", "wm")
    assert ds.in_channels == 1
    for i in range(len(ds)):
        assert ds[i]["image"].shape == (1, 116, 98)
    mid = [i for i in range(len(ds)) if 30 <= ds[i]["slice_index"] <= 60]
    assert mid
    for i in mid:
        label = ds[i]["label"].numpy()
        fractions = [float((label.sum(0) == 0).mean()), *label.mean(axis=(1, 2)).tolist()]
        assert min(fractions) > 0.005, fractions  # background, csf, gm and wm all present
        assert label.sum(0).max() == 1
    # Rows are y (233 -> 116 voxels), columns x (197 -> 98), slices z (189 -> 94).
    assert ds[0]["spacing"].tolist() == pytest.approx(
        [_zoomed_step(233, 0.5), _zoomed_step(197, 0.5), _zoomed_step(189, 0.5)]
    )


def _zoomed_step(count: int, zoom: float) -> float:
    """The voxel step ndimage.zoom gives 1 mm voxels: where it puts the stored 1 mm ramp, measured."""
    # mode="nearest": the default drops the last sample to cval when its coordinate rounds past the end.
    ramp = ndimage.zoom(np.arange(count, dtype=np.float64), zoom, order=1, mode="nearest")
    steps = np.diff(ramp)
    assert np.allclose(steps, steps[0])
    return float(steps[0])


@pytest.mark.parametrize("zoom", [0.25, 0.5])
def test_the_spacing_is_that_of_the_zoomed_grid_so_sizes_in_mm_are_kept(zoom: float) -> None:
    # The head's extent between the first and last voxel centres is the same in mm before and
    # after zooming; 197 / 98 per voxel put it (and every volume in mL) 1.5 % short at zoom 0.5.
    ds = MNI152Dataset(split="val", zoom=zoom)
    rows, cols, step = ds[0]["spacing"].tolist()
    shape = nib.load(template_files()["t1"]).shape
    zoomed = [round(n * zoom) for n in shape]
    assert (rows * (zoomed[1] - 1), cols * (zoomed[0] - 1), step * (zoomed[2] - 1)) == pytest.approx(
        (shape[1] - 1.0, shape[0] - 1.0, shape[2] - 1.0)
    )
    assert (rows, cols, step) == pytest.approx(
        (_zoomed_step(233, zoom), _zoomed_step(197, zoom), _zoomed_step(189, zoom))
    )


def test_whole_volume_zscore_puts_background_near_minus_half() -> None:
    item = MNI152Dataset(split="val")[0]
    assert item["image"][0, 0, 0].item() == pytest.approx(-0.511, abs=0.01)


def test_splits_are_disjoint_interleaved_blocks() -> None:
    sets = {s: MNI152Dataset(split=s) for s in ("train", "val", "test")}
    slices = {s: ds.slice_indices for s, ds in sets.items()}
    assert not set(slices["train"]) & set(slices["val"])
    assert not set(slices["train"]) & set(slices["test"])
    assert not set(slices["val"]) & set(slices["test"])
    assert len(slices["train"]) > 4 * len(slices["test"]) > 0
    for name in ("val", "test"):  # each held-out block is 4 consecutive slices
        indices = slices[name]
        runs = np.split(np.array(indices), np.flatnonzero(np.diff(indices) != 1) + 1)
        assert all(len(run) == 4 for run in runs[:-1]) and len(runs) >= 2
    all_ids = [v for ds in sets.values() for v in ds.volume_ids]
    assert len(all_ids) == len(set(all_ids)) and all_ids[0].startswith("axial_")


def test_assign_blocks_round_robin() -> None:
    names = assign_blocks(15, block_size=2)
    assert names[:4] == ["train"] * 4 and names[4:6] == ["val", "val"] and names[12:14] == ["test", "test"]


def test_unlabelled_split_holds_the_other_axes() -> None:
    ds = MNI152Dataset(split="unlabelled", labelled=False)
    axes = {v.split("_")[0] for v in ds.volume_ids}
    assert axes == {"coronal", "sagittal"}
    shapes = {ds.slice_shape(i) for i in range(len(ds))}
    assert shapes == {(94, 98), (94, 116)}  # (z, x) coronal and (z, y) sagittal at zoom 0.5
    assert "label" not in ds[0]
    only_sagittal = MNI152Dataset(split="unlabelled", labelled=False, axes=("sagittal",))
    assert {only_sagittal.slice_shape(i) for i in range(len(only_sagittal))} == {(94, 116)}


@pytest.mark.parametrize(
    ("axes", "said"),
    [
        # One string was split into letters: "axes ['a', 'c', 'l', 'n', 'o', 'r'] unknown".
        (
            "coronal",
            r"axes: expected a list of axis names, found the string 'coronal'; for one axis write a "
            r"one-item list: \[coronal\]$",
        ),
        # Each slice of a repeated axis was built twice, without a word.
        (
            ["coronal", "sagittal", "coronal"],
            r"axes \['coronal', 'sagittal', 'coronal'\] name 'coronal' 2 times; "
            r"expected each axis once$",
        ),
        # No axis at all was blamed on min_brain_fraction and block_size.
        ([], r"axes \[\] names no axis, so split 'unlabelled' has no slices; expected one or more of "),
        ([1], r"axes \[1\] unknown; expected some of \['axial', 'coronal', 'sagittal'\]$"),
        (None, r"axes=None: expected a list of axis names"),
    ],
)
def test_axes_are_checked_as_a_list_of_distinct_names(axes: object, said: str) -> None:
    with pytest.raises(DataError, match=rf"^mni152: {said}"):
        MNI152Dataset(split="unlabelled", labelled=False, axes=axes)  # type: ignore[arg-type]


def test_bad_parameters() -> None:
    with pytest.raises(DataError, match="has no labels; build it with labelled=False"):
        MNI152Dataset(split="unlabelled")
    with pytest.raises(DataError, match=r"axes \['oblique'\] unknown"):
        MNI152Dataset(split="unlabelled", labelled=False, axes=("oblique",))
    with pytest.raises(DataError, match=r"split='validation' is not a valid option.*did you mean 'val'\?"):
        MNI152Dataset(split="validation")
    with pytest.raises(DataError, match=r"split 'test' keeps no slices"):
        MNI152Dataset(split="test", min_brain_fraction=0.43)
    with pytest.raises(DataError, match=r"ICBM152 t1 file .* does not exist"):
        MNI152Dataset(split="train", data_dir="/nonexistent")
