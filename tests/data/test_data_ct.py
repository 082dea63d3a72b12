"""CT reader: HU from DICOM rescale tags, padding, windows and per-channel z-scores, by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_builders import onehot_reference, write_dicom_slice, write_nifti
from PIL import Image

from inpaintssl.data.base import DataError
from inpaintssl.data.ct import BODY_COMPOSITION_CLASSES, ct_dataset
from inpaintssl.data.preprocess import DEFAULT_CT_WINDOWS
from inpaintssl.data.readers import DicomVolume, import_optional

# Stored values and rescale of three slices, written under names whose order is not z order.
STORED = np.array(
    [
        [[-1000, 0, 512, 537], [600, 1000, 2000, 700]],
        [[100, 200, 300, 400], [500, 525, 550, 575]],
        [[-3000, 50, 1070, 1110], [1500, 1050, 1090, 1200]],
    ],
    dtype=np.int16,
)
RESCALE = [(2.0, -1024.0), (2.0, -1024.0), (1.0, -1000.0)]
Z_POSITIONS = [10.0, 12.5, 15.0]
FILE_NAMES = ["b.dcm", "c.dcm", "a.dcm"]


def _series(folder: Path) -> np.ndarray:
    """Write the series; returns the expected HU volume (rows, cols, slices) after clipping."""
    folder.mkdir(parents=True)
    hu = []
    for k, (stored, (slope, intercept), z, name) in enumerate(zip(STORED, RESCALE, Z_POSITIONS, FILE_NAMES)):
        write_dicom_slice(
            folder / name, stored, slope=slope, intercept=intercept, z=z, instance=k + 1, thickness=3.0
        )
        hu.append(np.maximum(stored.astype(np.float64) * slope + intercept, -1024.0))
    return np.stack(hu, axis=-1)


def _windowed(hu: np.ndarray, windows: tuple[tuple[float, float], ...]) -> np.ndarray:
    return np.stack([np.clip(hu, lv - w / 2, lv + w / 2) for w, lv in windows])


def test_hand_worked_hu_values(tmp_path: Path) -> None:
    hu = _series(tmp_path / "series")
    # stored 537 * 2 - 1024 = 50 HU; stored -1000 * 2 - 1024 = -3024 -> padding clipped to -1024
    assert hu[0, 3, 0] == 50.0 and hu[0, 0, 0] == -1024.0
    ds = ct_dataset(split="unlabelled", labelled=False, cases=str(tmp_path / "series"))
    assert ds[0]["hu"][0, 0].tolist() == [-1024.0, -1024.0, 0.0, 50.0]
    assert ds[2]["hu"][0, 0].tolist() == [-1024.0, -950.0, 70.0, 110.0]  # slope 1, intercept -1000


def test_series_hu_windows_and_per_channel_zscore(tmp_path: Path) -> None:
    hu = _series(tmp_path / "series")
    ds = ct_dataset(split="unlabelled", labelled=False, cases=str(tmp_path / "series"))
    assert len(ds) == 3 and ds.in_channels == 3
    windowed = _windowed(hu, DEFAULT_CT_WINDOWS)  # (3, rows, cols, slices)
    mean = windowed.mean(axis=(1, 2, 3))[:, None, None]
    std = windowed.std(axis=(1, 2, 3))[:, None, None]
    for k in range(3):
        item = ds[k]
        np.testing.assert_allclose(item["hu"][0].numpy(), hu[..., k])
        np.testing.assert_allclose(item["image"].numpy(), (windowed[..., k] - mean) / std, atol=1e-5)
        assert item["slice_index"] == k
    # spacing: PixelSpacing, then the distance between sorted positions (not SliceThickness=3)
    assert ds[0]["spacing"].tolist() == pytest.approx([0.7, 0.8, 2.5])


def test_windows_are_configurable(tmp_path: Path) -> None:
    hu = _series(tmp_path / "series")
    text_windows = ((400.0, 50.0), (1800.0, 40.0), (500.0, 50.0))
    ds = ct_dataset(split="unlabelled", labelled=False, cases=str(tmp_path / "series"), windows=text_windows)
    bone = np.clip(hu, 40 - 900, 40 + 900)
    got = np.stack([ds[k]["image"][1].numpy() for k in range(3)], axis=-1)
    np.testing.assert_allclose(got, (bone - bone.mean()) / bone.std(), atol=1e-5)
    assert DEFAULT_CT_WINDOWS[1] == (1800.0, 400.0)


def test_series_with_nifti_label(tmp_path: Path) -> None:
    _series(tmp_path / "series")
    label = np.random.default_rng(0).integers(0, 5, size=(2, 4, 3)).astype(np.uint8)
    write_nifti(tmp_path / "seg.nii.gz", label)
    ds = ct_dataset(split="train", cases={"train": {"image": "series", "label": "seg.nii.gz"}}, root=tmp_path)
    assert ds.class_names == BODY_COMPOSITION_CLASSES
    for k in range(3):
        np.testing.assert_array_equal(ds[k]["label"].numpy(), onehot_reference(label[..., k], 4))


def _single_slice_case(folder: Path, mask: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stored = np.arange(12, dtype=np.int16).reshape(3, 4) * 100
    write_dicom_slice(folder / "l3.dcm", stored, slope=1.0, intercept=-1024.0, z=0.0, instance=1)
    Image.fromarray(mask.astype(np.uint8), mode="L").save(folder / "l3_mask.png")


def test_single_dicom_slice_with_png_mask_and_custom_values(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 2, 3], [5, 4, 0, 1], [3, 5, 2, 0]])
    _single_slice_case(tmp_path, mask)
    ds = ct_dataset(
        split="test",
        cases={"test": [{"image": "l3.dcm", "label": "l3_mask.png", "id": "patient7"}]},
        root=tmp_path,
        label_values={"muscle": 1, "imat": 2, "vat": [3, 5], "sat": 4},
    )
    item = ds[0]
    assert item["volume_id"] == "patient7" and len(ds) == 1
    expected = np.stack([mask == 1, mask == 2, (mask == 3) | (mask == 5), mask == 4]).astype(np.float32)
    np.testing.assert_array_equal(item["label"].numpy(), expected)
    hu = (np.arange(12).reshape(3, 4) * 100 - 1024.0).clip(-1024)
    np.testing.assert_allclose(item["hu"][0].numpy(), hu)


def test_nifti_ct_volume_along_another_axis(tmp_path: Path) -> None:
    hu = np.random.default_rng(1).uniform(-1200, 1500, size=(3, 6, 5)).astype(np.float32)
    write_nifti(tmp_path / "ct.nii.gz", hu, spacing=(3.0, 0.6, 0.7))
    ds = ct_dataset(split="unlabelled", labelled=False, cases="ct.nii.gz", root=tmp_path, slice_axis=0)
    assert len(ds) == 3 and ds.slice_shape(0) == (6, 5)
    np.testing.assert_allclose(ds[1]["hu"][0].numpy(), np.maximum(hu[1], -1024), rtol=1e-6)
    assert ds[1]["spacing"].tolist() == pytest.approx([0.6, 0.7, 3.0])


# -- bad input -------------------------------------------------------------------------------


def test_label_values_out_of_range(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.array([[0, 1, 9, 3], [0, 0, 0, 0], [0, 0, 0, 0]]))
    ds = ct_dataset(
        split="train", cases={"train": {"image": "l3.dcm", "label": "l3_mask.png"}}, root=tmp_path
    )
    with pytest.raises(DataError, match=r"l3_mask\.png slice 0: label values \[9\] are out of range"):
        ds[0]


def test_image_label_shape_mismatch(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "wrong.png")
    with pytest.raises(
        DataError, match=r"wrong\.png has shape \(4, 4, 1\) but image .*l3\.dcm has shape \(3, 4, 1\)"
    ):
        ct_dataset(split="train", cases={"train": {"image": "l3.dcm", "label": "wrong.png"}}, root=tmp_path)


def test_rgb_png_mask_is_refused_naming_its_mode(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    Image.fromarray(np.zeros((3, 4, 3), np.uint8), mode="RGB").save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"rgb\.png has mode 'RGB' \(3 bands: R, G, B\)"):
        ct_dataset(split="train", cases={"train": {"image": "l3.dcm", "label": "rgb.png"}}, root=tmp_path)


def test_corrupt_dicom_in_a_series(tmp_path: Path) -> None:
    _series(tmp_path / "series")
    (tmp_path / "series" / "d.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(DataError, match=r"DICOM file .*d\.dcm cannot be read"):
        ct_dataset(split="unlabelled", labelled=False, cases=str(tmp_path / "series"))


def test_series_with_two_matrix_sizes(tmp_path: Path) -> None:
    _series(tmp_path / "series")
    write_dicom_slice(
        tmp_path / "series" / "z.dcm", np.zeros((3, 3), np.int16), slope=1, intercept=0, z=20.0, instance=9
    )
    with pytest.raises(DataError, match=r"z\.dcm is 3x3 but the series .* is 2x4"):
        ct_dataset(split="unlabelled", labelled=False, cases=str(tmp_path / "series"))


def test_nan_pixels_in_a_nifti_ct(tmp_path: Path) -> None:
    hu = np.zeros((4, 4, 2), np.float32)
    hu[1, 1, 1] = np.nan
    write_nifti(tmp_path / "ct.nii", hu)
    ds = ct_dataset(split="unlabelled", labelled=False, cases="ct.nii", root=tmp_path)
    with pytest.raises(DataError, match=r"ct\.nii slice 1: 1 NaN/Inf"):
        ds[1]


def test_missing_label_file(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    with pytest.raises(DataError, match=r"label .*nope\.png does not exist"):
        ct_dataset(split="train", cases={"train": {"image": "l3.dcm", "label": "nope.png"}}, root=tmp_path)


def test_labelled_case_without_label(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    with pytest.raises(DataError, match=r"case 'l3' .* has no label"):
        ct_dataset(split="train", cases={"train": "l3.dcm"}, root=tmp_path)


def test_bad_window(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    with pytest.raises(DataError, match=r"windows\[1\]: width=-5.0 must be positive"):
        ct_dataset(
            split="unlabelled", labelled=False, cases="l3.dcm", root=tmp_path, windows=[(400, 50), (-5, 0)]
        )


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        # One pair written flat, as a YAML list [400, 50] instead of [[400, 50]]: no TypeError.
        ([400, 50], r"windows\[0\]=400: expected a \(width, level\) pair in HU"),
        ([[400, None]], r"windows\[0\]=\[400, None\]: expected two numbers"),
        ([[400, 50], [1800, 400, 0]], r"windows\[1\]=\[1800, 400, 0\]: expected a \(width, level\) pair"),
        # A NaN level clips every HU value to NaN: the run would train on NaN images.
        ([[400, float("nan")]], r"windows\[0\]: level=nan must be a finite HU value"),
        ([[float("inf"), 50]], r"windows\[0\]: width=inf must be positive and finite"),
    ],
)
def test_a_malformed_window_is_refused_naming_it(tmp_path: Path, windows: object, message: str) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    with pytest.raises(DataError, match=message):
        ct_dataset(split="unlabelled", labelled=False, cases="l3.dcm", root=tmp_path, windows=windows)


def test_windows_given_as_an_array_are_read_as_pairs(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    ds = ct_dataset(
        split="unlabelled", labelled=False, cases="l3.dcm", root=tmp_path, windows=np.array([[400, 50]])
    )
    assert ds.windows == ((400.0, 50.0),) and ds[0]["image"].shape == (1, 3, 4)


def test_missing_optional_dependency_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r'pip install "inpaintssl\[dicom\]"'):
        import_optional("inpaintssl_no_such_module", extra="dicom", purpose="reading DICOM")


def test_items_collate(tmp_path: Path) -> None:
    _series(tmp_path / "series")
    ds = ct_dataset(split="unlabelled", labelled=False, cases=str(tmp_path / "series"))
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 2, 4) and batch["hu"].shape == (2, 1, 2, 4)
    assert batch["spacing"].shape == (2, 3)


def test_a_class_named_twice_is_refused(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    cases = {"train": {"image": "l3.dcm", "label": "l3_mask.png"}}
    with pytest.raises(DataError, match=r"^ct: class_names \['muscle', 'muscle'\] name 'muscle' 2 times"):
        ct_dataset(split="train", cases=cases, root=tmp_path, class_names=["muscle", "muscle"])


def test_a_slice_axis_that_is_not_an_integer_is_refused(tmp_path: Path) -> None:
    _series(tmp_path / "series")
    # A DICOM series is sliced along its slices without a reorientation: "z" went unnoticed.
    with pytest.raises(DataError, match=r"^ct: slice_axis='z' \(str\) is not one of the axes 0, 1, 2"):
        ct_dataset(split="unlabelled", labelled=False, cases=str(tmp_path / "series"), slice_axis="z")


def test_a_rescale_slope_of_zero_is_refused_not_mended(tmp_path: Path) -> None:
    # Before, a slope of 0 was read as 1: the stored values passed for HU without a word.
    folder = tmp_path / "series"
    folder.mkdir()
    write_dicom_slice(
        folder / "a.dcm", np.full((2, 3), 1064, np.int16), slope=0.0, intercept=-1024, z=0, instance=1
    )
    with pytest.raises(DataError, match=r"a\.dcm has RescaleSlope 0\.0; expected a finite number, not 0"):
        DicomVolume(folder)


def test_numpy_images_take_their_spacing_from_the_parameters_or_warn(tmp_path: Path) -> None:
    hu = np.full((6, 5, 2), 40.0, np.float32)
    np.save(tmp_path / "scan.npy", hu)
    np.save(tmp_path / "seg.npy", np.ones((6, 5, 2), np.uint8))
    cases = {"test": [{"image": "scan.npy", "label": "seg.npy"}]}

    with pytest.warns(
        UserWarning, match=r"ct: 1 image\(s\) state no pixel spacing \(.*scan\.npy\); 1 mm is assumed"
    ):
        assumed = ct_dataset(split="test", cases=cases, root=tmp_path)
    assert assumed[0]["spacing"].tolist() == [1.0, 1.0, 1.0]

    given = ct_dataset(split="test", cases=cases, root=tmp_path, spacing=[0.8, 0.7, 5.0])
    assert given[0]["spacing"].tolist() == pytest.approx([0.8, 0.7, 5.0])
    with pytest.raises(DataError, match=r"ct: spacing=\[0\.8, 0\] holds 0"):
        ct_dataset(split="test", cases=cases, root=tmp_path, spacing=[0.8, 0])


@pytest.mark.parametrize(
    ("hu_floor", "message"),
    [
        # NaN clips every value to NaN: every image of the run would be NaN.
        (float("nan"), r"ct: hu_floor=nan; expected a finite HU value"),
        (float("inf"), r"ct: hu_floor=inf; expected a finite HU value"),
        ("abc", r"ct: hu_floor='abc'; expected a number"),
        (None, r"ct: hu_floor=None; expected a number"),
        (True, r"ct: hu_floor=True; expected a number"),
        # The default -1024 with its sign dropped: above the soft-tissue window's top, 50 + 400 / 2.
        (
            1024,
            r"ct: hu_floor=1024 is at or above the top of windows\[0\] \(width 400, level 50: -150 to 250",
        ),
    ],
)
def test_a_bad_hu_floor_is_refused_naming_it(tmp_path: Path, hu_floor: object, message: str) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    with pytest.raises(DataError, match=message):
        ct_dataset(split="unlabelled", labelled=False, cases="l3.dcm", root=tmp_path, hu_floor=hu_floor)


def test_a_hu_floor_must_stay_below_every_windows_top(tmp_path: Path) -> None:
    _single_slice_case(tmp_path, np.zeros((3, 4)))
    # 1300 HU is the bone window's top (400 + 1800 / 2): clipped at it, that channel is one value.
    bone = [(1800, 400)]
    with pytest.raises(DataError, match=r"hu_floor=1300 is at or above the top of windows\[0\]"):
        ct_dataset(
            split="unlabelled", labelled=False, cases="l3.dcm", root=tmp_path, windows=bone, hu_floor=1300
        )
    # Just below it, some HU above the floor can still differ in the window: accepted as given.
    ds = ct_dataset(
        split="unlabelled", labelled=False, cases="l3.dcm", root=tmp_path, windows=bone, hu_floor="1299.5"
    )
    assert ds.hu_floor == 1299.5
