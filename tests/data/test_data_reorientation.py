"""Volumes read in another axis order: readers, the ``nifti`` dataset's ``orientation``, the run's record.

The reference for every reoriented array and affine is nibabel's own ``as_reoriented``; the
datasets are checked by invariance: one scan stored in two axis orders gives the same items once
both are read in one orientation.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_builders import write_dicom_slice

from inpaintssl.data.base import DataError
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.orientation import mixed_orientation_message, training_orientations
from inpaintssl.data.readers import DicomVolume, NiftiVolume, NumpyVolume
from inpaintssl.data.views import ConcatSlices, FitToSize, ImagesOnly, Subset, slice_orientation_of
from inpaintssl.data.volumes import nifti_dataset
from nifti_helpers import stored_as

# An oblique-free affine with anisotropic voxels, stored in "ALS" order (not RAS).
AFFINE = np.array([[0.0, -3.5, 0.0, 90.0], [3.0, 0.0, 0.0, -120.0], [0.0, 0.0, 4.25, -70.0], [0, 0, 0, 1]])
SHAPE = (6, 5, 4)


def _volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 20.0, SHAPE).astype(np.float32)
    label = rng.integers(0, 3, SHAPE).astype(np.uint8)
    return image, label


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("target", ["RAS", "LPS", "SAR", "ALS"])
@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_a_reoriented_nifti_reads_as_nibabel_reorients_it(
    tmp_path: Path, gz: bool, target: str, slice_axis: int
) -> None:
    image, _ = _volume()
    stored = nib.Nifti1Image(image, AFFINE)
    path = tmp_path / ("v.nii.gz" if gz else "v.nii")
    nib.save(stored, path)
    expected = stored_as(stored, target)
    volume = NiftiVolume(path, slice_axis=slice_axis, orientation=target)
    assert volume.stored_orientation == "ALS" and volume.orientation == target
    assert volume.shape == expected.shape and volume.stored_shape == SHAPE
    assert np.allclose(volume.affine, expected.affine)
    array = np.asarray(expected.dataobj)
    for index in range(volume.num_slices):
        assert np.array_equal(volume.read(index), np.take(array, index, axis=slice_axis))
    zooms = expected.header.get_zooms()
    in_plane = [zooms[a] for a in range(3) if a != slice_axis]
    assert volume.spacing == pytest.approx((*in_plane, zooms[slice_axis]))
    assert (volume.reorientation is None) == (target == "ALS")  # the stored order: read as before


def test_a_4d_volume_keeps_its_channels_last(tmp_path: Path) -> None:
    image, _ = _volume()
    four = np.stack([image, -image], axis=-1)
    stored = nib.Nifti1Image(four, AFFINE)
    nib.save(stored, tmp_path / "v.nii")
    volume = NiftiVolume(tmp_path / "v.nii", slice_axis=1, orientation="RAS")
    array = np.asarray(stored_as(stored, "RAS").dataobj)
    assert volume.channels == 2 and volume.shape == array.shape
    for index in range(volume.num_slices):
        assert np.array_equal(volume.read(index), array[:, index])


def test_the_same_scan_stored_two_ways_gives_the_same_items(tmp_path: Path) -> None:
    image, label = _volume()
    for name, codes in (("als", "ALS"), ("ipr", "IPR")):
        nib.save(stored_as(nib.Nifti1Image(image, AFFINE), codes), tmp_path / f"{name}.nii.gz")
        nib.save(stored_as(nib.Nifti1Image(label, AFFINE), codes), tmp_path / f"{name}_seg.nii.gz")

    def items(name: str, orientation: str | None) -> list[dict[str, object]]:
        ds = nifti_dataset(
            split="train",
            cases={"train": {"image": f"{name}.nii.gz", "label": f"{name}_seg.nii.gz"}},
            root=tmp_path,
            class_names=("a", "b"),
            orientation=orientation,
        )
        return [ds[i] for i in range(len(ds))]

    stored_als, stored_ipr = items("als", None), items("ipr", None)
    assert [tuple(i["image"].shape) for i in stored_ipr] != [tuple(i["image"].shape) for i in stored_als]
    for orientation in ("RAS", "ALS", "PIR"):
        first, second = items("als", orientation), items("ipr", orientation)
        assert len(first) == len(second)
        for a, b in zip(first, second):
            assert a["image"].equal(b["image"]) and a["label"].equal(b["label"])
            assert a["spacing"].equal(b["spacing"])
    # Read in its own stored order, a volume gives exactly what it gave without the option.
    for a, b in zip(items("als", "ALS"), stored_als):
        assert a["image"].equal(b["image"]) and a["label"].equal(b["label"])


def test_an_image_and_label_stored_differently_line_up_once_reoriented(tmp_path: Path) -> None:
    image, label = _volume()
    nib.save(nib.Nifti1Image(image, AFFINE), tmp_path / "img.nii")
    nib.save(stored_as(nib.Nifti1Image(label, AFFINE), "RAS"), tmp_path / "seg.nii")
    cases = {"train": {"image": "img.nii", "label": "seg.nii"}}
    with pytest.raises(DataError, match=r"seg\.nii"):  # as stored, the grids differ
        nifti_dataset(split="train", cases=cases, root=tmp_path, class_names=("a", "b"))
    ds = nifti_dataset(split="train", cases=cases, root=tmp_path, class_names=("a", "b"), orientation="ras")
    ras_label = np.asarray(stored_as(nib.Nifti1Image(label, AFFINE), "RAS").dataobj)
    for i in range(len(ds)):
        onehot = ds[i]["label"].numpy()
        assert np.array_equal(onehot[0] + 2 * onehot[1], ras_label[:, :, i])
    (check,) = ds.preflight_checks({"img"})
    check.run()  # the geometry check compares the reoriented affines: they agree


def test_a_bad_orientation_parameter_names_the_field(tmp_path: Path) -> None:
    image, _ = _volume()
    nib.save(nib.Nifti1Image(image, AFFINE), tmp_path / "v.nii")
    with pytest.raises(DataError, match=r"nifti: orientation='RAR' is invalid; expected three letters"):
        nifti_dataset(split="u", labelled=False, cases={"u": "v.nii"}, root=tmp_path, orientation="RAR")


def test_a_file_without_orientation_cannot_be_reoriented(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros(SHAPE))
    volume = NumpyVolume(tmp_path / "v.npy")
    assert volume.stored_orientation is None and volume.orientation is None
    with pytest.raises(DataError, match=r"v.npy cannot be reoriented to RAS: it states no orientation"):
        volume.reorient("RAS")


def test_a_nifti_header_without_sform_or_qform_states_no_orientation(tmp_path: Path) -> None:
    # nibabel stands in an affine of the voxel sizes with x mirrored, which read as 'LAS': reoriented
    # to RAS, the file was read mirrored left-right without a word.
    image, _ = _volume()
    uncoded = nib.Nifti1Image(image, None)
    assert (int(uncoded.header["sform_code"]), int(uncoded.header["qform_code"])) == (0, 0)
    nib.save(uncoded, tmp_path / "v.nii")
    volume = NiftiVolume(tmp_path / "v.nii")
    assert volume.stored_orientation is None and volume.orientation is None
    with pytest.raises(DataError, match=r"v.nii cannot be reoriented to RAS: it states no orientation"):
        NiftiVolume(tmp_path / "v.nii", orientation="RAS")
    # Either code set, the affine is the file's own and the orientation is known.
    for kept, dropped in (("sform", "qform"), ("qform", "sform")):
        coded = nib.Nifti1Image(image, AFFINE)
        getattr(coded, f"set_{kept}")(AFFINE, code=1)
        getattr(coded, f"set_{dropped}")(None)
        nib.save(coded, tmp_path / f"{kept}.nii")
        assert int(nib.load(tmp_path / f"{kept}.nii").header[f"{dropped}_code"]) == 0
        assert NiftiVolume(tmp_path / f"{kept}.nii").stored_orientation == "".join(nib.aff2axcodes(AFFINE))


@pytest.mark.parametrize("codes", ["ALS", "LAS", "PLS", "ARS", "RPI"])
@pytest.mark.parametrize("target", ["RAS", "ALS", "PRS"])
def test_a_2d_nifti_slice_is_turned_within_its_plane_as_nibabel_turns_it_as_one_slice_volume(
    tmp_path: Path, codes: str, target: str
) -> None:
    # One axial slice stored transposed and/or mirrored (its affine saying so), as a 2-D file. The
    # reference is nibabel's reorientation of the same slice saved as an (X, Y, 1) volume.
    plane = _volume()[0][:, :, 1]
    one = stored_as(nib.Nifti1Image(plane[:, :, None], AFFINE), codes)
    flat = nib.Nifti1Image(np.asarray(one.dataobj)[:, :, 0], one.affine)
    nib.save(flat, tmp_path / "flat.nii.gz")
    expected = stored_as(one, target)
    volume = NiftiVolume(tmp_path / "flat.nii.gz", orientation=target)
    assert volume.stored_orientation == "".join(nib.aff2axcodes(one.affine)) == codes
    assert volume.stored_shape == flat.shape and volume.orientation == target
    assert volume.shape == expected.shape and volume.num_slices == 1 and volume.slice_axis == 2
    assert np.allclose(volume.affine, expected.affine)
    assert np.array_equal(volume.read(0), np.asarray(expected.dataobj)[:, :, 0])
    assert volume.spacing == pytest.approx(expected.header.get_zooms())  # 4.25 mm thick, as its affine says
    # A map on the grid as read goes back onto the file's own two axes.
    assert np.array_equal(volume.to_stored(np.asarray(expected.dataobj)), np.asarray(flat.dataobj))
    probs = np.stack([np.asarray(expected.dataobj), -np.asarray(expected.dataobj)], axis=-1)
    assert np.array_equal(volume.to_stored(probs)[..., 1], -np.asarray(flat.dataobj))


def test_a_2d_nifti_slice_in_another_plane_or_without_geometry_is_not_reoriented(tmp_path: Path) -> None:
    plane = _volume()[0][:, :, 1]
    # Its normal (third affine axis) runs anterior: a coronal slice, which no in-plane turn makes axial.
    nib.save(nib.Nifti1Image(plane, AFFINE[:, [1, 2, 0, 3]]), tmp_path / "coronal.nii")
    volume = NiftiVolume(tmp_path / "coronal.nii")
    assert volume.stored_orientation == "".join(nib.aff2axcodes(AFFINE[:, [1, 2, 0, 3]])) == "LSA"
    with pytest.raises(
        DataError, match=r"coronal\.nii cannot be reoriented to RAS with slices along axis 2: "
    ):
        volume.reorient("RAS", slice_axis=2)
    assert volume.shape == plane.shape and volume.reorientation is None  # left as it was
    NiftiVolume(tmp_path / "coronal.nii", slice_axis=1, orientation="RAS")  # coronal slices: fine
    uncoded = nib.Nifti1Image(plane, None)
    nib.save(uncoded, tmp_path / "uncoded.nii")
    assert NiftiVolume(tmp_path / "uncoded.nii").stored_orientation is None
    with pytest.raises(
        DataError, match=r"uncoded\.nii cannot be reoriented to RAS: it states no orientation"
    ):
        NiftiVolume(tmp_path / "uncoded.nii", orientation="RAS")


def test_a_dicom_series_reads_across_its_slices_once_reoriented(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    stored = rng.integers(-500, 500, (3, 4, 5)).astype(np.int16)  # rows x columns x slices
    for k in range(stored.shape[2]):
        write_dicom_slice(
            tmp_path / f"s{k}.dcm", stored[:, :, k], slope=1.0, intercept=0.0, z=2.5 * k, instance=k + 1
        )
    series = DicomVolume(tmp_path)
    # Rows run toward the patient's posterior, columns to the left (DICOM LPS): "PLS" in RAS terms.
    assert series.stored_orientation == "PLS"
    stored_affine = np.asarray(series.world_affine)
    series.reorient("SAR")
    reference = stored_as(nib.Nifti1Image(stored.astype(np.float32), stored_affine), "SAR")
    expected = np.asarray(reference.dataobj)
    assert series.shape == (5, 3, 4) and np.allclose(np.asarray(series.world_affine), reference.affine)
    for index in range(series.num_slices):
        assert np.array_equal(series.read(index), expected[:, :, index])
    series.reorient("ALS", slice_axis=0)  # across the stored slices: the whole series is read
    expected = np.asarray(stored_as(nib.Nifti1Image(stored.astype(np.float32), stored_affine), "ALS").dataobj)
    assert (series.num_slices, series.slice_shape) == (3, (4, 5))
    for index in range(series.num_slices):
        assert np.array_equal(series.read(index), expected[index])
    with pytest.raises(DataError, match=r"slice_axis=3 is not one of the axes 0, 1, 2"):
        series.reorient("ALS", slice_axis=3)


def test_the_run_record_counts_slices_per_orientation_through_views(tmp_path: Path) -> None:
    image, _ = _volume()
    for name, codes in (("a", "ALS"), ("b", "RAS"), ("c", "ALS")):
        nib.save(stored_as(nib.Nifti1Image(image, AFFINE), codes), tmp_path / f"{name}.nii")
    np.save(tmp_path / "d.npy", image)
    mixed = nifti_dataset(split="u", labelled=False, cases={"u": ["a.nii", "b.nii", "c.nii"]}, root=tmp_path)
    # a and c stored ALS: 4 slices each along axis 2; b stored RAS: 4 slices along its axis 2.
    assert training_orientations(mixed) == {"ALS": 8, "RAS": 4}
    message = mixed_orientation_message(training_orientations(mixed), where="data")
    assert message is not None and "2 orientations (ALS: 8 slices, RAS: 4 slices)" in message
    one = nifti_dataset(
        split="u", labelled=False, cases={"u": ["a.nii", "b.nii"]}, root=tmp_path, orientation="LPS"
    )
    assert training_orientations(one) == {"LPS": 8}  # both read LPS: 4 axial slices each
    assert mixed_orientation_message(training_orientations(one), where="data") is None
    fitted = FitToSize(ImagesOnly(Subset(one, [0, 7])), (8, 8), mode="crop_or_pad")
    viewed = ConcatSlices([fitted], names=["x"])
    assert [slice_orientation_of(viewed, i) for i in range(2)] == ["LPS", "LPS"]
    assert training_orientations(viewed) == {"LPS": 2}


def _ct_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 3x4x5 CT series (rows x columns x slices); its HU and its patient affine."""
    folder.mkdir()
    stored = np.random.default_rng(3).integers(-900, 900, (3, 4, 5)).astype(np.int16)
    for k in range(stored.shape[2]):
        write_dicom_slice(
            folder / f"s{k}.dcm", stored[:, :, k], slope=1.0, intercept=-24.0, z=2.5 * k, instance=k + 1
        )
    return stored.astype(np.float32) - 24.0, np.asarray(DicomVolume(folder).world_affine)


def test_a_ct_series_and_a_label_stored_by_another_tool_line_up_once_reoriented(tmp_path: Path) -> None:
    hu, affine = _ct_series(tmp_path / "series")
    mask = np.random.default_rng(4).integers(0, 5, hu.shape).astype(np.uint8)
    # The label as a tool working in RAS writes it: other axis order, the series' world geometry.
    nib.save(stored_as(nib.Nifti1Image(mask, affine), "RAS"), tmp_path / "seg.nii.gz")
    cases = {"train": {"image": "series", "label": "seg.nii.gz"}}
    with pytest.raises(DataError, match=r"seg\.nii\.gz"):  # as stored: (3, 4, 5) against (4, 3, 5)
        ct_dataset(split="train", cases=cases, root=tmp_path)
    ds = ct_dataset(split="train", cases=cases, root=tmp_path, orientation="LPS")
    expected_hu = np.asarray(stored_as(nib.Nifti1Image(hu, affine), "LPS").dataobj)
    expected_mask = np.asarray(stored_as(nib.Nifti1Image(mask, affine), "LPS").dataobj)
    assert len(ds) == expected_hu.shape[2]
    for i in range(len(ds)):
        item = ds[i]
        assert np.array_equal(item["hu"][0].numpy(), np.maximum(expected_hu[:, :, i], -1024.0))
        onehot = item["label"].numpy()
        assert np.array_equal((onehot * np.arange(1, 5)[:, None, None]).sum(0), expected_mask[:, :, i])
    (check,) = ds.preflight_checks({"series"})
    check.run()  # the series' patient geometry is the label's affine


def test_a_ct_label_with_another_world_geometry_is_refused(tmp_path: Path) -> None:
    hu, affine = _ct_series(tmp_path / "series")
    shifted = affine.copy()
    shifted[0, 3] += 12.0  # the same axis order, 12 mm off: a label of another frame
    nib.save(nib.Nifti1Image(np.zeros(hu.shape, np.uint8), shifted), tmp_path / "seg.nii.gz")
    cases = {"train": {"image": "series", "label": "seg.nii.gz"}}
    refused = r"seg\.nii\.gz has affine .* but image .*series has .*difference 12 mm"
    # Read in the series' own order and as stored alike: the series states its geometry per slice.
    for orientation in ("PLS", None):
        ds = ct_dataset(split="train", cases=cases, root=tmp_path, orientation=orientation)
        (check,) = ds.preflight_checks({"series"})
        with pytest.raises(DataError, match=refused):
            check.run()


def test_a_square_ct_label_in_another_voxel_order_is_refused_as_stored_and_pairs_when_reoriented(
    tmp_path: Path,
) -> None:
    # 512x512 CT is square, so a label converted columns-first (as dcm2niix stores a series) has
    # the image's shape, and paired as stored each slice's label lay transposed on its image.
    folder = tmp_path / "series"
    folder.mkdir()
    stored = np.random.default_rng(5).integers(-900, 900, (4, 4, 3)).astype(np.int16)
    for k in range(stored.shape[2]):
        write_dicom_slice(
            folder / f"s{k}.dcm",
            stored[:, :, k],
            slope=1.0,
            intercept=0.0,
            z=2.5 * k,
            instance=k + 1,
            pixel_spacing=(0.7, 0.7),  # isotropic in plane, as CT is: the spacing check tells nothing
        )
    affine = np.asarray(DicomVolume(folder).world_affine)
    mask = np.zeros(stored.shape, np.uint8)
    mask[0, 1:3, :] = 1  # one row of the series, so a transposed label is a column
    nib.save(stored_as(nib.Nifti1Image(mask, affine), "RAS"), tmp_path / "seg.nii.gz")
    cases = {"train": {"image": "series", "label": "seg.nii.gz"}}
    (check,) = ct_dataset(split="train", cases=cases, root=tmp_path).preflight_checks({"series"})
    with pytest.raises(DataError, match=r"voxel axes run PLS and the label's RAS: .*orientation: PLS"):
        check.run()
    ds = ct_dataset(split="train", cases=cases, root=tmp_path, orientation="PLS")
    (check,) = ds.preflight_checks({"series"})
    check.run()
    for i in range(len(ds)):
        assert np.array_equal(ds[i]["label"][0].numpy(), mask[:, :, i])
