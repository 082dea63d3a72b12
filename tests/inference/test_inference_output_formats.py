"""``predict(output_format=...)``: label and probability maps as MetaImage and NRRD files.

Each map is read back with this library's readers (checked against ITK's own files in
``tests/data``) and compared with what NIfTI holds for the same scan in the same call or run: the
same labels and probabilities, on the same voxel positions; and a MetaImage or NRRD scan's label map
carries the scan's own geometry fields.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from inpaintssl.cli import main as cli_main
from inpaintssl.data.metaimage import MetaImageVolume, read_metaimage_header
from inpaintssl.data.nrrd import NrrdVolume, read_nrrd_header
from inpaintssl.inference.predict import PredictionError, predict
from inpaintssl.inference.writing import OUTPUT_FORMATS, VOLUME_FORMATS
from predict_helpers import predict_quietly

SHAPE = (32, 32, 3)
"""The tiny run's own 32x32 slices, three of them."""

OBLIQUE = np.array(
    [[0.0, -1.25, 0.1, 30.0], [0.75, 0.0, 0.0, -20.0], [0.0, 0.05, 2.5, 5.0], [0.0, 0.0, 0.0, 1.0]]
)
"""Rows along anterior, columns along left, slices along superior, slightly off the patient's axes."""


def _scan(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, shape).astype(np.float32)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The array and RAS+ affine of a written map, whatever its format."""
    if path.name.endswith(".nii.gz"):
        image: Any = nib.load(path)
        return np.asarray(image.dataobj), np.asarray(image.affine)
    reader = MetaImageVolume if path.suffix == ".mha" else NrrdVolume
    volume = reader(path, ranks=(3, 4))
    assert volume.affine is not None
    whole = np.stack([volume.read(k) for k in range(volume.shape[2])], axis=2)
    return whole, volume.affine


# VOLUME_FORMATS: every format that writes any input's maps; DICOM SEG and RT Structure Sets
# annotate DICOM series only, and have their own tests (test_inference_dicom_seg.py,
# test_inference_rtstruct.py).


@pytest.mark.parametrize("file_format", VOLUME_FORMATS)
def test_every_format_holds_the_nifti_maps_on_the_same_voxel_positions(
    trained_run: issl.FinetuneResult, tmp_path: Path, file_format: str
) -> None:
    scan = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(_scan(1), OBLIQUE).to_filename(scan)  # type: ignore[no-untyped-call]
    stored = _read(scan)[1]  # OBLIQUE as the file holds it, in float32
    reference = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti", probabilities=True)
    report = predict_quietly(
        trained_run.run_dir, scan, tmp_path / "out", probabilities=True, output_format=file_format
    )

    case = report.cases[0]
    suffix = OUTPUT_FORMATS[file_format]
    assert case.segmentation == tmp_path / "out" / f"scan_seg{suffix}" and case.segmentation.is_file()
    assert case.probabilities == tmp_path / "out" / f"scan_prob{suffix}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"scan_seg{suffix}", f"scan_prob{suffix}", "volumes.csv"]
    )
    labels, affine = _read(case.segmentation)
    expected_labels, _ = _read(reference.cases[0].segmentation)
    assert labels.dtype == np.uint8 and labels.shape == SHAPE
    assert np.array_equal(labels, expected_labels) and labels.max() > 0
    np.testing.assert_allclose(affine, stored, rtol=0, atol=1e-12)
    assert case.probabilities is not None and reference.cases[0].probabilities is not None
    probs, prob_affine = _read(case.probabilities)
    expected_probs, _ = _read(reference.cases[0].probabilities)
    assert probs.dtype == np.float32 and probs.shape == (*SHAPE, len(trained_run.class_names))
    assert np.array_equal(probs, expected_probs)
    np.testing.assert_allclose(prob_affine, stored, rtol=0, atol=1e-12)
    assert case.volumes_ml == reference.cases[0].volumes_ml


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.replace("(", " ").replace(")", " ").replace(",", " ").split()]


def test_input_writes_each_metaimage_and_nrrd_scan_in_its_own_format(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    from metaimage_helpers import write_metaimage
    from nrrd_helpers import write_nrrd

    # Rows along posterior, columns along left, slices along superior (LPS), tilted about x.
    th = 0.2
    transform = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, -np.sin(th), np.cos(th))
    spacing, offset = (0.75, 1.25, 2.5), (10.0, -20.0, 5.0)
    steps = [[v * spacing[n] for v in transform[3 * n : 3 * n + 3]] for n in range(3)]
    scans = tmp_path / "scans"
    scans.mkdir()
    write_metaimage(scans / "m1.mha", _scan(2), spacing=spacing, transform=transform, offset=offset)
    write_metaimage(
        scans / "m2.mhd", _scan(3), spacing=spacing, transform=transform, offset=offset, compressed=True
    )
    write_nrrd(scans / "n1.nrrd", _scan(4), directions=steps, origin=offset, encoding="gzip")
    write_nrrd(scans / "n2.nhdr", _scan(5), directions=steps, origin=offset)
    # m1's NIfTI conversion, and an array: NIfTI label maps.
    lps = np.eye(4)
    lps[:3, :3] = np.array(steps).T
    lps[:3, 3] = offset
    nib.Nifti1Image(_scan(2), np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).to_filename(scans / "m1_nifti.nii.gz")  # type: ignore[no-untyped-call]
    np.save(scans / "array.npy", _scan(6))

    out = tmp_path / "out"
    argv = ["predict", str(trained_run.run_dir), str(scans), "--output", str(out), "--device", "cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert cli_main([*argv, "--quiet", "--output-format", "input"]) == 0

    assert sorted(p.name for p in out.iterdir()) == [
        "array_seg.nii.gz",
        "m1_nifti_seg.nii.gz",
        "m1_seg.mha",
        "m2_seg.mha",
        "n1_seg.nrrd",
        "n2_seg.nrrd",
        "volumes.csv",
    ]
    # The same labels as the scan's NIfTI conversion gets, on the same positions.
    labels, affine = _read(out / "m1_seg.mha")
    nifti_labels, nifti_affine = _read(out / "m1_nifti_seg.nii.gz")
    assert np.array_equal(labels, nifti_labels)
    np.testing.assert_allclose(affine, _read(scans / "m1.mha")[1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(affine, nifti_affine, rtol=0, atol=1e-5)  # NIfTI's sform is float32
    # Each label map states its scan's geometry: spacing and origin exactly, directions to rounding.
    for name in ("m1", "m2"):
        scan_fields = read_metaimage_header(next(scans.glob(f"{name}.mh?")))[0]
        fields = read_metaimage_header(out / f"{name}_seg.mha")[0]
        for key in ("DimSize", "ElementSpacing", "Offset"):
            assert _numbers(fields[key]) == _numbers(scan_fields[key]), key
        np.testing.assert_allclose(
            _numbers(fields["TransformMatrix"]), _numbers(scan_fields["TransformMatrix"]), atol=1e-15
        )
        assert fields["ElementType"] == "MET_UCHAR"
    for name in ("n1", "n2"):
        scan_fields = read_nrrd_header(next(scans.glob(f"{name}.n*")))[0]
        fields = read_nrrd_header(out / f"{name}_seg.nrrd")[0]
        assert _numbers(fields["sizes"]) == _numbers(scan_fields["sizes"])
        assert _numbers(fields["space origin"]) == _numbers(scan_fields["space origin"])
        np.testing.assert_allclose(
            _numbers(fields["space directions"]), _numbers(scan_fields["space directions"]), atol=1e-15
        )
        assert fields["type"] == "uint8"


def test_a_2d_slice_is_written_as_a_volume_of_one_slice(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scan = tmp_path / "slice.nii.gz"
    nib.Nifti1Image(_scan(7, SHAPE[:2]), OBLIQUE).to_filename(scan)  # type: ignore[no-untyped-call]
    reference = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti")
    report = predict_quietly(trained_run.run_dir, scan, tmp_path / "out", output_format="metaimage")

    labels, affine = _read(report.cases[0].segmentation)
    expected, _ = _read(reference.cases[0].segmentation)
    assert expected.shape == SHAPE[:2] and labels.shape == (*SHAPE[:2], 1)
    assert np.array_equal(labels[:, :, 0], expected)
    np.testing.assert_allclose(affine, _read(scan)[1], rtol=0, atol=1e-12)
    assert report.cases[0].volumes_ml == reference.cases[0].volumes_ml


@pytest.mark.parametrize("file_format", VOLUME_FORMATS)
def test_a_2d_slices_probability_map_is_one_slice_of_class_channels(
    trained_run: issl.FinetuneResult, tmp_path: Path, file_format: str
) -> None:
    # (X, Y, 1, K), as a volume's (X, Y, Z, K): written (X, Y, K), NIfTI readers took the classes for
    # slices, the second class's map one slice thickness off the label map.
    scan = tmp_path / "slice.nii.gz"
    nib.Nifti1Image(_scan(7, SHAPE[:2]), OBLIQUE).to_filename(scan)  # type: ignore[no-untyped-call]
    report = predict_quietly(
        trained_run.run_dir, scan, tmp_path / "out", output_format=file_format, probabilities=True
    )
    case = report.cases[0]
    assert case.probabilities is not None
    probabilities, affine = _read(case.probabilities)
    labels, _ = _read(case.segmentation)
    classes = len(trained_run.class_names)
    assert probabilities.shape == (*SHAPE[:2], 1, classes)
    np.testing.assert_allclose(affine, OBLIQUE, rtol=0, atol=1e-6)  # float32 in a NIfTI header
    # A sigmoid head's pixel is labelled where a class's probability passes 0.5.
    assert np.array_equal((probabilities[:, :, 0] > 0.5).any(axis=-1), labels.reshape(SHAPE[:2]) > 0)


def test_a_2d_nrrd_slice_in_a_3d_space_gets_its_label_map_where_it_lies(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    # 3D Slicer saves one slice so: two axes in LPS. Its label map lies on it, third axis the
    # plane's normal at 1 mm, as the same slice saved as a 2-D NIfTI file with that affine.
    from nrrd_helpers import write_nrrd

    to_lps = np.diag([-1.0, -1.0, 1.0])
    steps, origin = to_lps @ OBLIQUE[:3, :2], to_lps @ OBLIQUE[:3, 3]
    normal = np.cross(steps[:, 0], steps[:, 1])
    ras = np.eye(4)
    ras[:3, :2], ras[:3, 2], ras[:3, 3] = (
        OBLIQUE[:3, :2],
        to_lps @ (normal / np.linalg.norm(normal)),
        OBLIQUE[:3, 3],
    )
    plane = _scan(11, SHAPE[:2])
    scan = tmp_path / "slice.nrrd"
    write_nrrd(scan, plane, directions=steps.T.tolist(), origin=origin.tolist())
    twin = tmp_path / "twin.nii.gz"
    nib.Nifti1Image(plane, ras).to_filename(twin)  # type: ignore[no-untyped-call]

    report = predict_quietly(trained_run.run_dir, scan, tmp_path / "out", output_format="nrrd")
    reference = predict_quietly(trained_run.run_dir, twin, tmp_path / "nifti")
    labels, affine = _read(report.cases[0].segmentation)
    expected, _ = _read(reference.cases[0].segmentation)
    assert labels.shape == (*SHAPE[:2], 1) and expected.shape == SHAPE[:2] and expected.max() > 0
    assert np.array_equal(labels[:, :, 0], expected)
    np.testing.assert_allclose(affine, ras, rtol=0, atol=1e-12)
    # The twin's affine is stored in float32: its voxel sizes, and so the volumes, agree to 1e-6.
    volumes = reference.cases[0].volumes_ml
    assert report.cases[0].volumes_ml == pytest.approx(volumes, rel=1e-6) and min(volumes.values()) > 0


@pytest.mark.parametrize("file_format", ["metaimage", "nrrd"])
def test_a_grid_the_format_cannot_state_is_refused_before_anything_is_predicted(
    trained_run: issl.FinetuneResult, tmp_path: Path, file_format: str
) -> None:
    good, flat = tmp_path / "good.nii.gz", tmp_path / "flat.nii.gz"
    nib.Nifti1Image(_scan(8), OBLIQUE).to_filename(good)  # type: ignore[no-untyped-call]
    # A second axis of length 0: NIfTI can hold it (in the sform), ITK and NRRD cannot.
    image: Any = nib.Nifti1Image(_scan(9), None)  # type: ignore[no-untyped-call]
    image.set_sform(np.diag([1.0, 0.0, 2.0, 1.0]), code=2)
    image.to_filename(flat)

    with pytest.raises(
        PredictionError, match=rf"input {flat}: its label map cannot be written as {file_format}"
    ):
        predict_quietly(trained_run.run_dir, [good, flat], tmp_path / "out", output_format=file_format)
    assert not (tmp_path / "out").exists()
    # As NIfTI it is written, its sform copied.
    report = predict_quietly(trained_run.run_dir, [good, flat], tmp_path / "nifti")
    assert [c.segmentation.name for c in report.cases] == ["good_seg.nii.gz", "flat_seg.nii.gz"]


@pytest.mark.parametrize("value", ["mha", "NIfTI", "dicom"])
def test_an_unknown_output_format_is_refused_naming_the_choices(
    trained_run: issl.FinetuneResult, tmp_path: Path, value: str
) -> None:
    scan = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(_scan(1), OBLIQUE).to_filename(scan)  # type: ignore[no-untyped-call]
    with pytest.raises(ValueError, match=r"output_format") as err:
        predict(trained_run.run_dir, scan, output=tmp_path / "p", device="cpu", output_format=value)  # type: ignore[arg-type]
    assert all(f"'{name}'" in str(err.value) for name in (*OUTPUT_FORMATS, "input"))
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("file_format", ["dicom_seg", "png"])
def test_save_volume_refuses_a_format_it_cannot_write_from_a_grid(tmp_path: Path, file_format: str) -> None:
    from inpaintssl.inference.inputs import Geometry
    from inpaintssl.inference.writing import save_volume

    geometry = Geometry(np.eye(4), None, (1.0, 1.0, 1.0))
    with pytest.raises(
        ValueError, match=rf"file_format='{file_format}'; expected 'nifti', 'metaimage' or 'nrrd'"
    ):
        save_volume(
            np.zeros(SHAPE, np.uint8), geometry, tmp_path / "x", file_format=file_format, dtype=np.uint8
        )
    assert not list(tmp_path.iterdir())


def _fields(path: Path) -> dict[str, str]:
    """A written NRRD or MetaImage file's header fields, read by hand (not by this library's readers)."""
    raw = path.read_bytes()
    if path.suffix == ".nrrd":
        lines, separator = raw.split(b"\n\n", 1)[0].decode("ascii").splitlines()[1:], ": "
    else:
        lines, separator = raw.split(b"ElementDataFile = LOCAL\n", 1)[0].decode("ascii").splitlines(), " = "
    pairs = (line.split(separator, 1) for line in lines if separator in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _lps_geometry(path: Path) -> np.ndarray:
    """The ``(4, 4)`` LPS voxel-to-world matrix a written NRRD or MetaImage header states, by hand."""
    fields = _fields(path)
    lps = np.eye(4)
    if path.suffix == ".nrrd":
        assert fields["space"] == "left-posterior-superior"
        # A probability map's class axis comes first, its direction "none".
        vectors = [v for v in fields["space directions"].split() if v != "none"]
        lps[:3, :3] = np.array([_numbers(v) for v in vectors]).T
        lps[:3, 3] = _numbers(fields["space origin"])
        return lps
    # TransformMatrix: axis n's direction, one axis after another; ElementSpacing: each axis' step.
    directions = np.array(_numbers(fields["TransformMatrix"])).reshape(3, 3).T
    lps[:3, :3] = directions * np.array(_numbers(fields["ElementSpacing"]))
    lps[:3, 3] = _numbers(fields["Offset"])
    return lps


@pytest.mark.parametrize("file_format", ["metaimage", "nrrd"])
@pytest.mark.parametrize(("unit", "mm_per_unit"), [("meter", 1000.0), ("micron", 0.001)])
def test_a_nifti_scan_in_metres_or_microns_gets_maps_in_millimetres(
    trained_run: issl.FinetuneResult, tmp_path: Path, file_format: str, unit: str, mm_per_unit: float
) -> None:
    # 0.5 x 0.5 x 2 mm voxels, rows along anterior, columns along left, stored in the file's unit.
    in_mm = np.array([[0.0, -0.5, 0.0, 30.0], [0.5, 0.0, 0.0, -20.0], [0.0, 0.0, 2.0, 5.0], [0, 0, 0, 1.0]])
    in_unit = in_mm.copy()
    in_unit[:3] /= mm_per_unit
    image: Any = nib.Nifti1Image(_scan(12), in_unit)  # type: ignore[no-untyped-call]
    image.header.set_xyzt_units(unit, "sec")
    scan = tmp_path / "scan.nii.gz"
    image.to_filename(scan)
    report = predict_quietly(
        trained_run.run_dir, scan, tmp_path / "out", output_format=file_format, probabilities=True
    )

    # NIfTI-1: the affine nibabel reads (float32 in the header) times the unit's millimetres; then
    # RAS to LPS (x and y negated), as MetaImage and NRRD state positions.
    stored: Any = nib.load(scan)
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.diag([mm_per_unit] * 3 + [1.0]) @ stored.affine
    np.testing.assert_allclose(expected, np.diag([-1.0, -1.0, 1.0, 1.0]) @ in_mm, rtol=1e-6, atol=1e-5)
    case = report.cases[0]
    assert case.probabilities is not None
    for written in (case.segmentation, case.probabilities):
        np.testing.assert_allclose(
            _lps_geometry(written), expected, rtol=1e-9, atol=1e-9, err_msg=written.name
        )
    if file_format == "metaimage":
        spacing = _numbers(_fields(case.segmentation)["ElementSpacing"])
        np.testing.assert_allclose(spacing, [0.5, 0.5, 2.0], rtol=1e-6)
