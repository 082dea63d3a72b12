"""Users' own knee-MRI and L3-CT files, as their scanners and tools write them, to the clinical numbers.

SKM-TEA scans with uint16 echoes and a metadata CSV as a spreadsheet saves it; CT slices as int16
DICOM with intercept -1024, and the exports that are not HU (a windowed 0..255 image, a NIfTI whose
intercept was lost). Expected values come from the DESIGN.md T2 formula and pixel counts by hand.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from data_builders import SkmteaFixture, make_skmtea, write_dicom_slice, write_nifti, write_skmtea_scan

from inpaintssl.data.base import DataError
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.skmtea import SKMTEADataset
from inpaintssl.metrics import cross_sectional_area, mean_hu, mean_t2, qdess_t2, tissue_volume


def _t2_by_hand(s1: np.ndarray, s2: np.ndarray, p: dict[str, float], t1_ms: float) -> np.ndarray:
    """DESIGN.md section 2, line by line; values outside (0, 100) ms are NaN."""
    tr, te, tg, t1 = p["tr_ms"] * 1e-3, p["te_ms"] * 1e-3, p["tg_us"] * 1e-6, t1_ms * 1e-3
    alpha = math.radians(p["flip_angle_deg"])
    gl = p["gl_area"] / (tg * 1e6) * 100
    dkl = 4258 * 2 * math.pi * gl * tg
    e = math.exp(-tr / t1 - tr * dkl**2 * 1.25e-9)
    k = math.sin(alpha / 2) ** 2 * (1 + e) / (1 - math.cos(alpha) * e)
    c1 = (tr - tg / 3) * dkl**2 * 1.25e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = -2000 * (tr - te) / (np.log(np.abs(s2 / s1) / k) + c1)
    return np.where((t2 > 0) & (t2 < 100), t2, np.nan)


def _uint16_scan(fx: SkmteaFixture, scan_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Rewrite a scan with uint16 echoes (as the DICOM track stores them); returns them."""
    rng = np.random.default_rng(3)
    shape = fx.echo1[scan_id].shape
    e1 = rng.integers(200, 900, size=shape).astype(np.uint16)
    e2 = (e1 * rng.uniform(0.3, 0.6, size=shape)).astype(np.uint16)
    write_skmtea_scan(fx.root / "image_files" / f"{scan_id}.h5", e1, e2, fx.seg[scan_id], with_stats=False)
    return e1, e2


def test_uint16_echoes_give_the_design_formulas_t2_and_the_voxel_volume(skmtea: SkmteaFixture) -> None:
    scan_id = skmtea.splits["test"][0]
    e1, e2 = _uint16_scan(skmtea, scan_id)
    ds = SKMTEADataset(split="test", root=skmtea.root)
    z = 2
    item = ds[z]
    assert (item["volume_id"], item["slice_index"]) == (scan_id, z)
    femoral = skmtea.seg[scan_id][:, :, z, 1] > 0
    t2 = qdess_t2(item["echo1"][0].numpy(), item["echo2"][0].numpy(), **item["scan_params"], t1_ms=1200.0)
    by_hand = _t2_by_hand(
        e1[:, :, z].astype(np.float64), e2[:, :, z].astype(np.float64), skmtea.params[scan_id], 1200.0
    )
    assert mean_t2(t2, item["label"][1].numpy() > 0) == pytest.approx(np.nanmean(by_hand[femoral]), rel=1e-5)
    tibial = (skmtea.seg[scan_id][..., 2] | skmtea.seg[scan_id][..., 3]) > 0
    labels = np.stack([ds[i]["label"][2].numpy() for i in range(len(ds)) if ds.volume_ids[i] == scan_id], -1)
    spacing = skmtea.spacing[scan_id]
    assert tissue_volume(labels > 0, (*ds.slice_spacing(0), spacing[2])) == pytest.approx(
        tibial.sum() * spacing[0] * spacing[1] * spacing[2]
    )


def _rewrite_csv(fx: SkmteaFixture, edit: object) -> Path:
    path = fx.root / "all_metadata.csv"
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    rows = edit(rows)  # type: ignore[operator]
    with path.open("w", newline="", encoding="utf-8-sig" if rows and rows[0][0] == "BOM" else "utf-8") as h:
        csv.writer(h).writerows([["MTR_ID", *rows[0][1:]], *rows[1:]] if rows[0][0] == "BOM" else rows)
    return path


def test_a_metadata_csv_saved_with_a_byte_order_mark_is_read(skmtea: SkmteaFixture) -> None:
    # Excel's "CSV UTF-8" starts the file with a byte-order mark.
    _rewrite_csv(skmtea, lambda rows: [["BOM", *rows[0][1:]], *rows[1:]])
    assert (skmtea.root / "all_metadata.csv").read_bytes().startswith(b"\xef\xbb\xbfMTR_ID")
    scan_id = skmtea.splits["test"][0]
    assert SKMTEADataset(split="test", root=skmtea.root)[0]["scan_params"] == pytest.approx(
        skmtea.params[scan_id]
    )


def test_a_blank_scan_parameter_is_refused_naming_file_scan_and_column(skmtea: SkmteaFixture) -> None:
    scan_id = skmtea.splits["test"][0]

    def blank(rows: list[list[str]]) -> list[list[str]]:
        column = rows[0].index("SpoilerGradientTime")
        for row in rows[1:]:
            if row[0] == scan_id:
                row[column] = ""
        return rows

    path = _rewrite_csv(skmtea, blank)
    with pytest.raises(DataError, match=rf"{path}.*{scan_id}.*column SpoilerGradientTime holds ''"):
        SKMTEADataset(split="test", root=skmtea.root)


def test_two_differing_metadata_rows_for_one_scan_are_refused(skmtea: SkmteaFixture) -> None:
    scan_id = skmtea.splits["test"][0]

    def append(rows: list[list[str]]) -> list[list[str]]:
        again = next(list(r) for r in rows if r[0] == scan_id)
        again[rows[0].index("FlipAngle")] = "15"
        return [*rows, again]

    _rewrite_csv(skmtea, append)
    with pytest.raises(DataError, match=rf"MTR_ID '{scan_id}' has two rows that differ in \['FlipAngle'\]"):
        SKMTEADataset(split="test", root=skmtea.root)
    # A row repeated as it is changes nothing.
    _rewrite_csv(skmtea, lambda rows: [r for r in rows if r[rows[0].index("FlipAngle")] != "15"] + rows[1:2])
    assert len(SKMTEADataset(split="test", root=skmtea.root)) > 0


def _replace_key(path: Path, key: str, array: np.ndarray) -> None:
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = array


def test_complex_echoes_are_refused_naming_file_and_key(skmtea: SkmteaFixture) -> None:
    scan_id = skmtea.splits["test"][0]
    path = skmtea.root / "image_files" / f"{scan_id}.h5"
    _replace_key(path, "echo2", skmtea.echo2[scan_id].astype(np.complex64) * (1 + 1j))
    with pytest.raises(DataError, match=rf"{path}: 'echo2' has dtype complex64; expected real magnitude"):
        SKMTEADataset(split="test", root=skmtea.root, stats="compute")


def test_float64_echoes_read_as_the_stored_values(skmtea: SkmteaFixture) -> None:
    scan_id = skmtea.splits["test"][0]
    path = skmtea.root / "image_files" / f"{scan_id}.h5"
    _replace_key(path, "echo1", skmtea.echo1[scan_id].astype(np.float64))
    item = SKMTEADataset(split="test", root=skmtea.root)[1]
    np.testing.assert_allclose(item["echo1"][0].numpy(), skmtea.echo1[scan_id][:, :, 1], rtol=1e-6)


def test_a_seg_with_a_seventh_channel_is_refused(skmtea: SkmteaFixture) -> None:
    # A background channel in front would shift every class by one: patellar cartilage = background.
    scan_id = skmtea.splits["test"][0]
    path = skmtea.root / "image_files" / f"{scan_id}.h5"
    seg = skmtea.seg[scan_id]
    background = (seg.sum(-1, keepdims=True) == 0).astype(np.uint8)
    _replace_key(path, "seg", np.concatenate([background, seg], axis=-1))
    with pytest.raises(DataError, match=r"seg has shape \(16, 12, 5, 7\); expected \(16, 12, 5, 6\)"):
        SKMTEADataset(split="test", root=skmtea.root)


@pytest.mark.parametrize(("mean", "std"), [(300.0, 0.0), (300.0, float("nan")), (float("inf"), 50.0)])
def test_stored_rss_statistics_that_cannot_normalise_are_refused(
    skmtea: SkmteaFixture, mean: float, std: float
) -> None:
    scan_id = skmtea.splits["test"][0]
    path = skmtea.root / "image_files" / f"{scan_id}.h5"
    with h5py.File(path, "a") as f:
        f.pop("stats", None)
        group = f.create_group("stats/rss")
        group.attrs["mean"], group.attrs["std"] = mean, std
    with pytest.raises(
        DataError, match=rf"{path}: stats/rss holds mean .* expected finite numbers with std > 0"
    ):
        SKMTEADataset(split="test", root=skmtea.root)
    # Computing them from the echoes instead still works.
    assert len(SKMTEADataset(split="test", root=skmtea.root, stats="compute")) > 0


def test_an_annotated_scan_without_voxel_spacing_is_read_at_skmteas_spacing_with_a_warning(
    skmtea: SkmteaFixture,
) -> None:
    path = skmtea.root / "annotations" / "v1.0.0" / "test.json"
    data = json.loads(path.read_text())
    for image in data["images"]:
        del image["voxel_spacing"]
    path.write_text(json.dumps(data))
    scan_id = skmtea.splits["test"][0]
    with pytest.warns(UserWarning, match=rf"scan '{scan_id}' \({scan_id}.h5\) has no voxel_spacing"):
        ds = SKMTEADataset(split="test", root=skmtea.root)
    assert ds.spacing == (0.3125, 0.3125, 0.8)


def test_unlabelled_scans_need_no_voxel_spacing_and_do_not_warn(tmp_path: Path) -> None:
    fx = make_skmtea(tmp_path / "skm-tea", unlabelled=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(SKMTEADataset(split="unlabelled", labelled=False, root=fx.root)) == 10


# ---- CT -------------------------------------------------------------------------------------------


def _l3(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An L3-like HU slice (air, SAT, muscle, VAT, IMAT, bone) and its 0..4 body-composition label."""
    yy, xx = np.mgrid[:24, :24]
    r = np.hypot(yy - 12, xx - 12)
    hu = np.full((24, 24), -1000.0)
    label = np.zeros((24, 24), np.uint8)
    for radius, value, cls in ((11, -100, 4), (8, 45, 1), (5, -90, 3)):
        hu[r < radius], label[r < radius] = value, cls
    ring = (r >= 7) & (r < 8) & (xx < 12)
    hu[ring], label[ring] = -60, 2
    hu[r < 1.5], label[r < 1.5] = 700, 0
    return np.round(hu + rng.normal(0, 8, hu.shape)), label


def test_an_int16_dicom_with_intercept_minus_1024_gives_hand_worked_areas_and_mean_hu(tmp_path: Path) -> None:
    hu, label = _l3(np.random.default_rng(0))
    write_dicom_slice(
        tmp_path / "L3.dcm",
        (hu + 1024).astype(np.int16),
        slope=1.0,
        intercept=-1024.0,
        z=0.0,
        instance=1,
        pixel_spacing=(0.78, 0.74),
    )
    write_nifti(tmp_path / "L3_seg.nii.gz", label[:, :, None], spacing=(0.78, 0.74, 5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real HU: no warning about its values
        ds = ct_dataset(
            split="test", cases={"test": {"image": "L3.dcm", "label": "L3_seg.nii.gz"}}, root=tmp_path
        )
        item = ds[0]
    clipped = np.maximum(hu, -1024.0)
    for k in range(4):
        mask = label == k + 1
        assert cross_sectional_area(
            item["label"][k].numpy() > 0, item["spacing"][:2].tolist()
        ) == pytest.approx(mask.sum() * 0.78 * 0.74)
        assert mean_hu(item["hu"][0].numpy(), item["label"][k].numpy() > 0) == pytest.approx(
            clipped[mask].mean()
        )


def _windowed_dicom(path: Path, hu: np.ndarray) -> None:
    grey = np.clip((hu + 150) / 400 * 255, 0, 255).round().astype(np.int16)
    write_dicom_slice(path, grey, slope=1.0, intercept=0.0, z=0.0, instance=1)


def _nifti_without_intercept(path: Path, hu: np.ndarray) -> None:
    write_nifti(path, (hu + 1024).astype(np.int16)[:, :, None])


def _numpy_windowed(path: Path, hu: np.ndarray) -> None:
    np.save(path, np.clip((hu + 150) / 400 * 255, 0, 255).astype(np.float32))


@pytest.mark.parametrize(
    ("name", "write", "likely"),
    [
        ("win.dcm", _windowed_dicom, "windowed to 0..255"),
        ("win.npy", _numpy_windowed, "windowed to 0..255"),
        ("raw.nii.gz", _nifti_without_intercept, "rescale was lost"),
    ],
)
def test_ct_values_that_are_not_hu_are_warned_about_naming_the_file(
    tmp_path: Path, name: str, write: object, likely: str
) -> None:
    hu, _ = _l3(np.random.default_rng(1))
    write(tmp_path / name, hu)  # type: ignore[operator]
    ds = ct_dataset(split="u", labelled=False, cases={"u": name}, root=tmp_path, spacing=(0.8, 0.8))
    with pytest.warns(UserWarning, match=rf"{tmp_path / name} holds values .* none below -200.*{likely}"):
        ds[0]
