"""The header of a written label map says what the geometry it is written with says, and no more.

Each label map is read back with nibabel and compared with what its input states, worked out here
independently: voxel sizes as the lengths of the affine's columns, and NIfTI codes that claim a
place in space only where the input states one (NumPy/HDF5 arrays and a DICOM series without
PixelSpacing do not: coded 0, unknown, their voxel sizes in pixdim).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from dicom_helpers import write_mr_slice
from inpaintssl.data.readers import NiftiVolume
from predict_helpers import predict_quietly

SHAPE = (32, 32, 3)
"""The tiny run's own 32x32 slices, three of them."""


def _scan(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, SHAPE).astype(np.float32)


def _load(path: Path) -> Any:
    # nibabel's stubs type a loaded file as a generic image, without NIfTI's header methods.
    return nib.load(path)


def _column_lengths(affine: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0))


@pytest.mark.parametrize("qform_code", [0, 1])
def test_a_stale_pixdim_is_not_copied_into_the_label_map(
    trained_run: issl.FinetuneResult, tmp_path: Path, qform_code: int
) -> None:
    # Resampled by a tool that rewrote only the sform: 0.75 x 1.25 x 2.5 mm voxels, pixdim still 1 mm.
    affine = np.array(
        [[0.0, -1.25, 0.0, 30.0], [0.75, 0.0, 0.0, -20.0], [0.0, 0.0, 2.5, 5.0], [0.0, 0.0, 0.0, 1.0]]
    )
    # No affine: nibabel rewrites nothing of the header on saving.
    image: Any = nib.Nifti1Image(_scan(0), None)  # type: ignore[no-untyped-call]
    image.header.set_qform(affine, code=qform_code)  # the rotation and shift; pixdim follows...
    image.header.set_sform(affine, code=1)
    image.header["pixdim"][1:4] = 1.0  # ...and is then left behind
    scan = tmp_path / "scan.nii.gz"
    image.to_filename(scan)
    with pytest.warns(UserWarning, match="pixdim"):
        NiftiVolume(scan)  # the reader sees the disagreement too

    report = predict_quietly(trained_run.run_dir, scan, tmp_path / "pred")

    written = _load(tmp_path / "pred" / "scan_seg.nii.gz")
    header = written.header
    assert np.array_equal(written.affine, affine)
    assert (int(header["sform_code"]), int(header["qform_code"])) == (1, qform_code)
    assert np.allclose(header.get_zooms(), _column_lengths(affine), rtol=1e-6)
    assert np.allclose(header.get_zooms(), (0.75, 1.25, 2.5), rtol=1e-6)
    # The qform (rotation from the input, sizes from pixdim) now places voxels where the sform does.
    assert np.allclose(header.get_qform(), affine, atol=1e-5)
    # Read back by the library: nothing disagrees, and its volumes are the report's.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        label_volume = NiftiVolume(tmp_path / "pred" / "scan_seg.nii.gz")
    assert np.allclose(label_volume.spacing, (0.75, 1.25, 2.5), rtol=1e-6)
    labels = np.asarray(written.dataobj)
    for k, name in enumerate(report.class_names):
        expected_ml = np.sum(labels == k + 1) * 0.75 * 1.25 * 2.5 / 1000.0
        assert report.cases[0].volumes_ml[name] == pytest.approx(expected_ml)


@pytest.mark.parametrize("slice_axis", [2, 0, 1])
@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_an_array_label_map_is_coded_as_nibabel_writes_the_same_array(
    trained_run: issl.FinetuneResult, tmp_path: Path, suffix: str, slice_axis: int
) -> None:
    # Was: with slices along axis 0 or 1 (a (Z, H, W) array), the map's voxel sizes came in the
    # slice plane's order, (0.75, 1.25, 2.5) for the stored (2.5, 0.75, 1.25): it did not overlay.
    array = np.moveaxis(_scan(1), 2, slice_axis)
    scan = tmp_path / f"scan{suffix}"
    if suffix == ".npy":
        np.save(scan, array)
    else:
        with h5py.File(scan, "w") as handle:
            handle.create_dataset("image", data=array)
    # In stored axis order, as documented: 2.5 mm along the slice axis, 0.75 and 1.25 in plane.
    in_plane = iter((0.75, 1.25))
    spacing = tuple(2.5 if axis == slice_axis else next(in_plane) for axis in range(3))

    predict_quietly(trained_run.run_dir, scan, tmp_path / "pred", spacing=spacing, slice_axis=slice_axis)

    written = _load(tmp_path / "pred" / "scan_seg.nii.gz")
    assert written.shape == array.shape
    # The user's own conversion of the array: the label map must overlay it in any reader.
    own = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))  # type: ignore[no-untyped-call]
    for code in ("sform_code", "qform_code"):
        assert int(written.header[code]) == int(own.header[code])
    assert np.array_equal(written.affine, own.affine)
    assert written.header.get_zooms() == spacing


@pytest.mark.parametrize("imager_spacing", [False, True])
def test_a_dicom_series_without_pixel_spacing_claims_no_scanner_geometry(
    trained_run: issl.FinetuneResult, tmp_path: Path, imager_spacing: bool
) -> None:
    series = tmp_path / "series"
    series.mkdir()
    rng = np.random.default_rng(2)
    for k in range(SHAPE[2]):
        pixels = rng.integers(0, 1000, SHAPE[:2])
        # ImagerPixelSpacing, the detector's pixel size, is no patient geometry: the reader ignores it.
        write_mr_slice(
            series / f"im{k}.dcm",
            pixels,
            z=2.0 * k,
            instance=k + 1,
            pixel_spacing=None,
            imager_pixel_spacing=("0.5", "0.5") if imager_spacing else None,
        )

    predict_quietly(trained_run.run_dir, series, tmp_path / "pred")

    header = _load(tmp_path / "pred" / "series_seg.nii.gz").header
    # Its in-plane size is the reader's 1 mm assumption, not the scanner's: coded 0 (unknown).
    assert (int(header["sform_code"]), int(header["qform_code"])) == (0, 0)
    # pixdim: the assumed 1 mm in-plane and the 2 mm step between the slices' positions.
    assert header.get_zooms() == (1.0, 1.0, 2.0)
    # The stored matrix keeps the positions and axes the series does state (LPS -> RAS).
    stated = np.array([[0, -1.0, 0, 10], [-1.0, 0, 0, -20], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    assert np.allclose(header.get_sform(), stated)


@pytest.mark.parametrize(
    ("stored", "intent"),
    [((*SHAPE, 1), "none"), ((*SHAPE, 1, 1), "vector")],
    ids=["one-time-point", "itk-vector-image"],
)
def test_a_scan_with_singleton_axes_after_the_third_is_predicted_as_its_volume(
    trained_run: issl.FinetuneResult, tmp_path: Path, stored: tuple[int, ...], intent: str
) -> None:
    affine = np.diag([0.75, 1.25, 2.5, 1.0])
    twin = tmp_path / "twin.nii.gz"
    nib.Nifti1Image(_scan(3), affine).to_filename(twin)  # type: ignore[no-untyped-call]
    image: Any = nib.Nifti1Image(_scan(3).reshape(stored), affine)  # type: ignore[no-untyped-call]
    image.header.set_intent(intent)
    scan = tmp_path / "scan.nii.gz"
    image.to_filename(scan)

    report = predict_quietly(trained_run.run_dir, [twin, scan], tmp_path / "pred")

    written = _load(tmp_path / "pred" / "scan_seg.nii.gz")
    expected = _load(tmp_path / "pred" / "twin_seg.nii.gz")
    assert written.shape == SHAPE
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(expected.dataobj))
    assert np.array_equal(written.affine, affine)
    # The scan's intent (vectors) is not the label map's.
    assert int(written.header["intent_code"]) == 0
    assert report.cases[1].volumes_ml == report.cases[0].volumes_ml


def test_an_enhanced_dicom_file_is_predicted_as_its_classic_series(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    from dicom_helpers import write_enhanced, write_series

    stored = np.random.default_rng(4).integers(0, 1000, (SHAPE[2], *SHAPE[:2])).astype(np.int16)
    positions = [(-10.0, 20.0, 2.0 * k) for k in range(SHAPE[2])]
    series = write_series(tmp_path / "series", stored, modality="MR", positions=positions)
    enhanced = tmp_path / "enhanced.dcm"
    write_enhanced(enhanced, stored[::-1], modality="MR", positions=positions[::-1])

    report = predict_quietly(trained_run.run_dir, [series, enhanced], tmp_path / "pred")

    classic, frames = (_load(tmp_path / "pred" / f"{name}_seg.nii.gz") for name in ("series", "enhanced"))
    assert frames.shape == classic.shape == SHAPE
    assert np.array_equal(np.asarray(frames.dataobj), np.asarray(classic.dataobj))
    assert np.array_equal(frames.affine, classic.affine)
    assert (int(frames.header["sform_code"]), int(frames.header["qform_code"])) == (1, 1)
    assert report.cases[1].volumes_ml == report.cases[0].volumes_ml


@pytest.mark.parametrize("name", ["scan.mha", "scan.mhd", "scan.nrrd", "scan.nhdr"])
def test_a_metaimage_or_nrrd_scan_is_predicted_as_its_nifti_conversion(
    trained_run: issl.FinetuneResult, tmp_path: Path, name: str
) -> None:
    from metaimage_helpers import write_metaimage
    from nrrd_helpers import write_nrrd

    # Rows along posterior, columns along left, slices along superior (LPS), 0.75 x 1.25 x 2.5 mm.
    transform, spacing, offset = (0, 1, 0, 1, 0, 0, 0, 0, 1), (0.75, 1.25, 2.5), (10.0, -20.0, 5.0)
    scan = tmp_path / name
    if name.endswith(("mha", "mhd")):
        write_metaimage(scan, _scan(5), spacing=spacing, transform=transform, offset=offset, compressed=True)
    else:
        steps = [[v * spacing[n] for v in transform[3 * n : 3 * n + 3]] for n in range(3)]
        write_nrrd(scan, _scan(5), directions=steps, origin=offset, encoding="gzip")
    lps = np.eye(4)
    lps[:3, :3] = np.array(transform, dtype=float).reshape(3, 3).T * np.array(spacing)
    lps[:3, 3] = offset
    converted = tmp_path / "converted.nii.gz"
    nib.Nifti1Image(_scan(5), np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).to_filename(converted)  # type: ignore[no-untyped-call]

    report = predict_quietly(trained_run.run_dir, [scan, converted], tmp_path / "pred")

    written = _load(tmp_path / "pred" / "scan_seg.nii.gz")
    expected = _load(tmp_path / "pred" / "converted_seg.nii.gz")
    assert written.shape == SHAPE
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(expected.dataobj))
    assert np.allclose(written.affine, expected.affine)
    assert (int(written.header["sform_code"]), int(written.header["qform_code"])) == (1, 1)
    assert np.allclose(written.header.get_zooms(), spacing)
    assert report.cases[0].volumes_ml == pytest.approx(report.cases[1].volumes_ml)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_a_gantry_tilted_scan_is_measured_as_its_dicom_series(
    trained_run: issl.FinetuneResult, tmp_path: Path, suffix: str
) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from metaimage_helpers import write_metaimage
    from nrrd_helpers import write_nrrd

    # Slices 2 mm apart along their normal, each 0.73 mm further along y: a gantry tilted 20 degrees,
    # so the affine's third column, 2 / cos(20 degrees) = 2.13 mm long, leans off the normal.
    lean = 2.0 * np.tan(np.deg2rad(20.0))
    stored = np.random.default_rng(6).integers(0, 1000, (SHAPE[2], *SHAPE[:2]))
    series = tmp_path / "series"
    series.mkdir()
    for k in range(SHAPE[2]):
        position = (-10.0, 20.0 + lean * k, 2.0 * k)
        write_mr_slice(
            series / f"im{k}.dcm",
            stored[k],
            z=2.0 * k,
            instance=k + 1,
            pixel_spacing=("0.75", "1.25"),
            position=position,
        )
    dicom = DicomVolume(series)
    affine = dicom.patient_affine
    assert affine is not None
    image = np.stack([dicom.read(k) for k in range(SHAPE[2])], axis=-1).astype(np.float32)
    # The same voxels on the same grid, as a converter writes them (ITK's and Slicer's in LPS).
    scan = tmp_path / f"scan{suffix}"
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    if suffix == ".nii.gz":
        nib.Nifti1Image(image, affine).to_filename(scan)  # type: ignore[no-untyped-call]
    elif suffix == ".mha":
        lengths = _column_lengths(lps)
        transform = tuple((lps[:3, :3] / lengths).T.ravel())
        write_metaimage(scan, image, spacing=tuple(lengths), transform=transform, offset=tuple(lps[:3, 3]))
    else:
        write_nrrd(scan, image, directions=lps[:3, :3].T.tolist(), origin=tuple(lps[:3, 3]))

    report = predict_quietly(trained_run.run_dir, [series, scan], tmp_path / "pred")

    labels = np.asarray(_load(tmp_path / "pred" / "scan_seg.nii.gz").dataobj)
    assert np.array_equal(labels, np.asarray(_load(tmp_path / "pred" / "series_seg.nii.gz").dataobj))
    assert (labels > 0).any()
    # A voxel is the 0.75 x 1.25 mm pixel times the 2 mm between the slices, not times the column's
    # 2.13 mm (6 % more); to the MetaImage header's 6 digits.
    for case in report.cases:
        for k, name in enumerate(report.class_names):
            expected_ml = np.sum(labels == k + 1) * 0.75 * 1.25 * 2.0 / 1000.0
            assert case.volumes_ml[name] == pytest.approx(expected_ml, rel=1e-5), (case.case, name)


def test_an_oblique_unsheared_affine_keeps_the_product_of_its_voxel_sizes() -> None:
    from inpaintssl.inference.inputs import sheared_voxel_mm3
    from inpaintssl.inference.writing import volumes_ml

    # Rotated 0.4 rad about (1, 2, 2) / 3 and stored in float32, as a scanner's sform is: its axes
    # are perpendicular to the rounding, so volumes stay the product of the voxel sizes, to the digit.
    axis, angle = np.array([1.0, 2.0, 2.0]) / 3.0, 0.4
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    affine = np.eye(4)
    affine[:3, :3] = (rotation * np.array([0.7, 0.9, 2.5])).astype(np.float32)
    assert sheared_voxel_mm3(affine, (0.7, 0.9, 2.5)) is None
    # Sheared by 0.1 degrees, it counts: cos(0.1 degrees) of the product.
    affine[:3, 2] = rotation @ np.array([0.0, 2.5 * np.tan(np.deg2rad(0.1)), 2.5])
    lengths = tuple(_column_lengths(affine))
    voxel = sheared_voxel_mm3(affine, lengths)
    assert voxel == pytest.approx(0.7 * 0.9 * 2.5, rel=1e-6) and voxel < np.prod(lengths)
    labels = np.array([[[0, 1], [1, 2]]], dtype=np.uint8)
    assert volumes_ml(labels, (1.0, 1.0, 1.0), ["a", "b"], voxel_mm3=2000.0) == {"a": 4.0, "b": 2.0}
    with pytest.raises(ValueError, match=r"volumes_ml: voxel_mm3=nan; expected a finite voxel volume > 0"):
        volumes_ml(labels, (1.0, 1.0, 1.0), ["a", "b"], voxel_mm3=float("nan"))
