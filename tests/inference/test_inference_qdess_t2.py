"""``predict(t2=True)`` on a qDESS series: the paper's analytic T2 from the two echoes (sec. 2.7).

The series is written from known T2 values (a disc of 40 ms in tissue of 30 ms) through the qDESS
forward model, coded here from its formulas (DESIGN.md sec. 2, Sveinsson et al. 2017) rather than
the library's: ``S2 / S1 = k exp(-2 (TR - TE) / T2 - c1)``. The T2 map must give the values back to
the rounding of the stored integers, and equal this file's own inversion of the stored echoes.
The scan parameters are in the tags a GE qDESS export states them in (the spoiler in the private
block of ``GEMS_ACQU_01``), or given.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from dicom_helpers import write_echo_series, write_enhanced
from inpaintssl.cli import main as cli_main
from inpaintssl.data.base import DataError
from inpaintssl.data.dicom import DicomEchoesRssVolume, DicomVolume
from inpaintssl.data.dicom_acquisition import GE_ACQUISITION_CREATOR, scan_parameters, stated_parameters
from inpaintssl.inference.t2_maps import QdessFit, check_t2_input, qdess_t2_map
from inpaintssl.metrics import T1_OTHER_MS, qdess_t2
from predict_helpers import assert_t2_outputs, predict_quietly

pydicom = pytest.importorskip("pydicom")

SIZE, SLICES = 32, 2
SCAN = {"tr_ms": 18.176, "te_ms": 5.712, "flip_angle_deg": 20.0, "gl_area": 3132.0, "tg_us": 1792.0}
TE2_MS = 30.64
SLOPE = 1e-4  # stored integers of about 20,000 read as values near 2, the synthetic run's range
SPOILER = {"gl_area": SCAN["gl_area"], "tg_us": SCAN["tg_us"]}
H5_OPTIONS: dict[str, Any] = {"key": "echo1", "t2": True, "spacing": (0.3125, 0.3125, 0.8)}


def _without(key: str) -> dict[str, float]:
    return {name: value for name, value in SCAN.items() if name != key}


def _k_c1(t1_ms: float, scan: dict[str, float]) -> tuple[float, float]:
    """The model's ``k`` and ``c1`` (DESIGN.md sec. 2), for cartilage's diffusivity."""
    tr, tg, t1 = scan["tr_ms"] * 1e-3, scan["tg_us"] * 1e-6, t1_ms * 1e-3
    alpha = math.radians(scan["flip_angle_deg"])
    gl = scan["gl_area"] / (tg * 1e6) * 100
    dkl = 4258 * 2 * math.pi * gl * tg
    diffusivity = 1.25e-9
    e = math.exp(-tr / t1 - tr * dkl**2 * diffusivity)
    k = math.sin(alpha / 2) ** 2 * (1 + e) / (1 - math.cos(alpha) * e)
    return k, (tr - tg / 3) * dkl**2 * diffusivity


def _ratio(t2_ms: np.ndarray, t1_ms: np.ndarray, scan: dict[str, float]) -> np.ndarray:
    out = np.empty(t2_ms.shape)
    for t1 in np.unique(t1_ms):
        k, c1 = _k_c1(float(t1), scan)
        where = t1_ms == t1
        out[where] = k * np.exp(-2 * (scan["tr_ms"] - scan["te_ms"]) * 1e-3 / (t2_ms[where] * 1e-3) - c1)
    return out


def _inverted(stored: np.ndarray, t1_ms: float, scan: dict[str, float] = SCAN) -> np.ndarray:
    """T2 (ms) from the stored echoes by the model's inversion, in float64."""
    k, c1 = _k_c1(t1_ms, scan)
    s1, s2 = stored[0].astype(np.float64) * SLOPE, stored[1].astype(np.float64) * SLOPE
    return -2000 * (scan["tr_ms"] - scan["te_ms"]) * 1e-3 / (np.log(np.abs(s2 / s1) / k) + c1)


def _disc() -> np.ndarray:
    rows, columns = np.mgrid[:SIZE, :SIZE]
    return np.repeat(((rows - 14) ** 2 + (columns - 15) ** 2 < 49)[..., None], SLICES, axis=-1)


def _stored(t2_ms: np.ndarray, t1_ms: np.ndarray, scan: dict[str, float] = SCAN) -> np.ndarray:
    """``(2, rows, columns, slices)`` int16 echoes: S1 about 20,000, S2 = S1 x the model's ratio."""
    s1 = np.full(t2_ms.shape, 20000.0) + 500.0 * np.arange(SIZE)[:, None, None] / SIZE
    return np.stack([np.round(s1), np.round(s1 * _ratio(t2_ms, t1_ms, scan))]).astype(np.int16)


def _skmtea_scan(path: Path, stored: np.ndarray) -> Path:
    """An SKM-TEA scan's file of the echoes ``stored``: ``echo1``, ``echo2`` (X, Y, Z) as floats."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle["echo1"] = stored[0].astype(np.float32) * SLOPE
        handle["echo2"] = stored[1].astype(np.float32) * SLOPE
    return path


def _ge_spoiler(ds: Any) -> None:
    block = ds.private_block(0x0019, GE_ACQUISITION_CREATOR, create=True)
    block.add_new(0xB6, "DS", f"{SCAN['gl_area']:g}")
    block.add_new(0xB7, "DS", f"{SCAN['tg_us']:g}")


def _series(folder: Path, stored: np.ndarray, *, spoiler_tags: bool = True) -> Path:
    scan = {"RepetitionTime": f"{SCAN['tr_ms']:g}", "FlipAngle": f"{SCAN['flip_angle_deg']:g}"}
    return write_echo_series(
        folder,
        stored,
        (SCAN["te_ms"], TE2_MS),
        slope=SLOPE,
        tags=scan,
        edit=_ge_spoiler if spoiler_tags else None,
    )


def _bare_series(folder: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """The disc's T2 truth, its stored echoes (T1 1200 ms) and their series without the spoiler tags."""
    truth = np.where(_disc(), 40.0, 30.0)
    stored = _stored(truth, np.full(truth.shape, T1_OTHER_MS))
    return truth, stored, _series(folder, stored, spoiler_tags=False)


def test_the_scan_parameters_are_the_series_tags_and_ge_spoiler_block(tmp_path: Path) -> None:
    truth = np.where(_disc(), 40.0, 30.0)
    series = _series(tmp_path / "qdess", _stored(truth, np.full(truth.shape, 1200.0)))
    assert scan_parameters(DicomVolume(series, echo=1)) == pytest.approx(SCAN)
    bare = _series(tmp_path / "bare", _stored(truth, np.full(truth.shape, 1200.0)), spoiler_tags=False)
    assert scan_parameters(DicomVolume(bare, echo=2)) == pytest.approx(
        {k: SCAN[k] for k in ("tr_ms", "te_ms", "flip_angle_deg")}
    )


def test_the_spoiler_is_taken_only_from_ges_block_whatever_its_numbers() -> None:
    from pydicom.dataset import Dataset

    other = Dataset()
    # Another vendor's private data where GE's block usually sits: not a spoiler.
    block = other.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0xB6, "DS", "3132")
    assert stated_parameters(other) == {}
    # An implicit-VR file's private element reads as raw bytes (VR UN); the number is still read.
    ge = Dataset()
    moved = ge.private_block(0x0019, "OTHER CREATOR", create=True)  # GE's block is then 0x11
    moved.add_new(0x01, "LO", "x")
    raw = ge.private_block(0x0019, GE_ACQUISITION_CREATOR, create=True)
    raw.add_new(0xB6, "UN", b"3132.5 ")
    raw.add_new(0xB7, "UN", b"1792\\0 ")
    assert raw.get_tag(0xB6) == 0x001911B6
    assert stated_parameters(ge) == {"gl_area": 3132.5, "tg_us": 1792.0}


def test_enhanced_mr_states_tr_and_flip_angle_in_its_timing_group(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def timing(ds: Any) -> None:
        group = Dataset()
        group.RepetitionTime, group.FlipAngle = SCAN["tr_ms"], SCAN["flip_angle_deg"]
        ds.SharedFunctionalGroupsSequence[0].MRTimingAndRelatedParametersSequence = Sequence([group])
        _ge_spoiler(ds)

    frames = np.ones((4, SIZE, SIZE), dtype=np.int16)
    path = tmp_path / "enhanced.dcm"
    positions = [(0.0, 0.0, 3.0 * k) for k in (0, 0, 1, 1)]
    times = [SCAN["te_ms"], TE2_MS, SCAN["te_ms"], TE2_MS]
    write_enhanced(path, frames, modality="MR", positions=positions, echo_times=times, edit=timing)
    assert scan_parameters(DicomVolume(path, echo=1)) == pytest.approx(SCAN)


def test_the_qdess_t2_map_gives_back_the_t2_the_echoes_were_written_with(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    truth = np.where(_disc(), 40.0, 30.0)
    stored = _stored(truth, np.full(truth.shape, T1_OTHER_MS))  # the tiny run's classes: no T1 of their own
    series = _series(tmp_path / "qdess", stored)
    report = predict_quietly(trained_run.run_dir, series, tmp_path / "out", echo=1, t2=True)
    assert_t2_outputs(report, truth, _inverted(stored, T1_OTHER_MS), rtol=2e-3)


def test_each_voxels_t1_is_its_predicted_tissues(tmp_path: Path) -> None:
    truth = np.where(_disc(), 40.0, 30.0)
    femoral = np.zeros(truth.shape, dtype=bool)
    femoral[:, 20:, :] = True
    meniscus = _disc()
    # Each tissue's echoes as its T1 shapes them: 1200 ms femoral cartilage and the rest, 1000 ms meniscus.
    t1 = np.where(meniscus, 1000.0, 1200.0)
    series = _series(tmp_path / "qdess", _stored(truth, t1))
    labels = np.where(meniscus, 2, np.where(femoral, 1, 0)).astype(np.uint8)
    volume = DicomVolume(series, echo=1)
    fit = check_t2_input(volume, series)
    t2 = qdess_t2_map(volume, fit.scan, labels, ["femoral_cartilage", "meniscus"])  # type: ignore[union-attr]
    np.testing.assert_allclose(t2, truth, rtol=2e-3)
    # Without the meniscus's T1 (a class the model does not know), its T2 comes out otherwise.
    unknown = qdess_t2_map(volume, fit.scan, labels, ["femoral_cartilage", "lesion"])  # type: ignore[union-attr]
    np.testing.assert_allclose(unknown[~meniscus], truth[~meniscus], rtol=2e-3)
    assert np.all(np.abs(unknown[meniscus] - 40.0) > 0.1)


def test_the_echoes_root_sum_of_squares_an_skmtea_run_reads_gives_the_same_map(tmp_path: Path) -> None:
    truth = np.where(_disc(), 40.0, 30.0)
    series = _series(tmp_path / "qdess", _stored(truth, np.full(truth.shape, T1_OTHER_MS)))
    labels = _disc().astype(np.uint8)
    maps = []
    for volume in (DicomVolume(series, echo=1), DicomVolume(series, echo=2), DicomEchoesRssVolume(series)):
        fit = check_t2_input(volume, series)
        assert fit == QdessFit(pytest.approx(SCAN))
        maps.append(qdess_t2_map(volume, fit.scan, labels, ["meniscus"]))  # type: ignore[union-attr]
    assert np.array_equal(maps[0], maps[1], equal_nan=True) and np.array_equal(
        maps[0], maps[2], equal_nan=True
    )


def test_a_series_without_the_spoiler_tags_takes_them_given(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    _, stored, bare = _bare_series(tmp_path / "bare")
    out = tmp_path / "out"
    with pytest.raises(issl.PredictionError, match=r"does not state gl_area \(GE's private .*tg_us") as err:
        predict_quietly(trained_run.run_dir, bare, out, echo=1, t2=True)
    assert str(bare) in str(err.value) and "--qdess-parameter" in str(err.value)
    assert not out.exists()
    given = predict_quietly(trained_run.run_dir, bare, out, echo=1, t2=True, qdess_parameters=SPOILER)
    tagged = _series(tmp_path / "tagged", stored)
    stated = predict_quietly(trained_run.run_dir, tagged, tmp_path / "stated", echo=1, t2=True)
    assert given.cases[0].t2_map is not None and stated.cases[0].t2_map is not None
    assert np.array_equal(
        np.asarray(nib.load(given.cases[0].t2_map).dataobj),
        np.asarray(nib.load(stated.cases[0].t2_map).dataobj),
    )
    # A value given wins over the tag: a flip angle in radians is refused as such, naming it given.
    with pytest.raises(issl.PredictionError, match=r"flip_angle_deg=0.349 \(given\).*implausibly small"):
        predict_quietly(
            trained_run.run_dir,
            tagged,
            tmp_path / "o",
            echo=1,
            t2=True,
            qdess_parameters={"flip_angle_deg": 0.349},
        )


def test_qdess_parameters_are_checked_before_anything_is_read(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"unknown scan parameter 'gl'; expected some of tr_ms"):
        predict_quietly(
            trained_run.run_dir, tmp_path / "nowhere", tmp_path / "o", t2=True, qdess_parameters={"gl": 1}
        )
    with pytest.raises(ValueError, match=r"only t2=True"):
        predict_quietly(trained_run.run_dir, tmp_path / "nowhere", tmp_path / "o", qdess_parameters=SPOILER)
    with pytest.raises(ValueError, match=r"tg_us=nan; expected a finite number"):
        predict_quietly(
            trained_run.run_dir,
            tmp_path / "nowhere",
            tmp_path / "o",
            t2=True,
            qdess_parameters={"tg_us": math.nan},
        )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "True"), (np.bool_(True), r"(np\.)?True_?"), ("3132", "'3132'")],
)
def test_a_bool_or_text_is_no_scan_parameter(
    trained_run: issl.FinetuneResult, tmp_path: Path, value: Any, shown: str
) -> None:
    # float() took True for a spoiler area of 1.0 and computed a T2 map from it, where qdess_t2
    # itself refuses a bool; the command line gives floats, so text is no scan parameter either.
    with pytest.raises(ValueError, match=rf"qdess_parameters: gl_area={shown}; expected a finite number"):
        predict_quietly(
            trained_run.run_dir,
            tmp_path / "nowhere",
            tmp_path / "o",
            t2=True,
            qdess_parameters={**SPOILER, "gl_area": value},
        )
    with pytest.raises(ValueError, match="gl_area must be one finite number"):
        qdess_t2(np.ones(1), np.ones(1), **{**SCAN, "gl_area": value})


def test_numbers_of_every_numeric_type_are_scan_parameters() -> None:
    from inpaintssl.inference.t2_maps import check_qdess_parameters

    given = {"tr_ms": 18, "te_ms": np.float32(5.5), "flip_angle_deg": np.array(20.0), "gl_area": 3132.0}
    assert check_qdess_parameters(given) == {
        "tr_ms": 18.0,
        "te_ms": 5.5,
        "flip_angle_deg": 20.0,
        "gl_area": 3132.0,
    }


def test_the_cli_takes_the_spoiler_and_refuses_it_malformed_or_twice(
    trained_run: issl.FinetuneResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = np.where(_disc(), 40.0, 30.0)
    bare = _series(tmp_path / "bare", _stored(truth, np.full(truth.shape, T1_OTHER_MS)), spoiler_tags=False)
    out = tmp_path / "out"
    argv = ["predict", str(trained_run.run_dir), str(bare), "--output", str(out), "--echo", "1", "--t2"]
    argv += ["--device", "cpu", "--quiet"]
    spoiler = ["--qdess-parameter", "gl_area=3132", "--qdess-parameter", "tg_us=1792"]
    with pytest.warns(UserWarning):  # the tiny run's spacing
        assert cli_main([*argv, *spoiler]) == 0
    assert json.loads(capsys.readouterr().out)["cases"] == 1
    assert (out / "bare_t2.nii.gz").exists()
    with pytest.raises(SystemExit) as exited:
        cli_main([*argv, "--qdess-parameter", "gl_area"])
    assert exited.value.code == 2
    assert "expected KEY=VALUE with a finite number" in capsys.readouterr().err
    assert cli_main([*argv, *spoiler, "--qdess-parameter", "gl_area=3000"]) == 2
    assert "--qdess-parameter gl_area given twice (3132, then 3000)" in capsys.readouterr().err


def test_an_skmtea_scans_file_takes_its_scan_parameters_given(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    truth = np.where(_disc(), 40.0, 30.0)
    stored = _stored(truth, np.full(truth.shape, T1_OTHER_MS))
    scan = _skmtea_scan(tmp_path / "MTR_001.h5", stored)
    options = H5_OPTIONS
    out = tmp_path / "out"
    # An HDF5 file states no scan parameters: every one is named, with SKM-TEA's column for it.
    with pytest.raises(
        issl.PredictionError, match=r"give tr_ms \(RepetitionTime\), te_ms \(EchoTime1\)"
    ) as err:
        predict_quietly(trained_run.run_dir, scan, out, **options)
    assert "tg_us (SpoilerGradientTime)" in str(err.value) and "all_metadata.csv" in str(err.value)
    with pytest.raises(issl.PredictionError, match=r"give flip_angle_deg \(FlipAngle\) with"):
        predict_quietly(
            trained_run.run_dir, scan, out, qdess_parameters=_without("flip_angle_deg"), **options
        )
    report = predict_quietly(trained_run.run_dir, scan, out, qdess_parameters=SCAN, **options)
    (case,) = report.cases
    assert case.t2_map is not None
    t2 = np.asarray(nib.load(case.t2_map).dataobj)
    np.testing.assert_allclose(t2, truth, rtol=2e-3)
    np.testing.assert_allclose(t2, _inverted(stored, T1_OTHER_MS), rtol=1e-4)


# A cohort's scans differ in their parameters: each takes its own row of a table.
OTHER_SCAN = {**SCAN, "tr_ms": 20.5, "flip_angle_deg": 15.0, "gl_area": 3100.0}
METADATA_HEADER = ["MTR_ID", "Manufacturer", "RepetitionTime", "EchoTime1", "FlipAngle"]
METADATA_HEADER += ["SpoilerGradientArea", "SpoilerGradientTime", "EchoTime2"]


def _metadata_row(scan_id: str, scan: dict[str, float]) -> list[str]:
    values = [scan[key] for key in ("tr_ms", "te_ms", "flip_angle_deg", "gl_area", "tg_us")]
    return [scan_id, "GE", *(f"{v:g}" for v in values), f"{TE2_MS:g}"]


def _all_metadata(path: Path, rows: list[list[str]]) -> Path:
    """An SKM-TEA ``all_metadata.csv`` as Excel saves it (a byte-order mark first)."""
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([METADATA_HEADER, *rows])
    return path


def _cohort(folder: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Two SKM-TEA scans of one T2 truth through different scan parameters; their stored echoes."""
    truth = np.where(_disc(), 40.0, 30.0)
    t1 = np.full(truth.shape, T1_OTHER_MS)
    stored = {"MTR_001": _stored(truth, t1, SCAN), "MTR_002": _stored(truth, t1, OTHER_SCAN)}
    for scan_id, echoes in stored.items():
        _skmtea_scan(folder / f"{scan_id}.h5", echoes)
    return truth, stored


def _t2_of(report: issl.PredictionReport, case: str) -> np.ndarray:
    (found,) = [c for c in report.cases if c.case == case]
    assert found.t2_map is not None
    return np.asarray(nib.load(found.t2_map).dataobj)


def test_each_scan_of_a_cohort_takes_its_row_of_skmteas_all_metadata_csv(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    truth, stored = _cohort(tmp_path / "image_files")
    # A damaged row of a scan not predicted stops nothing.
    damaged = [*_metadata_row("MTR_099", SCAN)[:4], "n/a", *_metadata_row("MTR_099", SCAN)[5:]]
    table = _all_metadata(
        tmp_path / "all_metadata.csv",
        [_metadata_row("MTR_001", SCAN), damaged, _metadata_row("MTR_002", OTHER_SCAN)],
    )
    inputs = sorted((tmp_path / "image_files").glob("*.h5"))
    report = predict_quietly(
        trained_run.run_dir, inputs, tmp_path / "out", qdess_parameters_csv=table, **H5_OPTIONS
    )
    for case, scan in (("MTR_001", SCAN), ("MTR_002", OTHER_SCAN)):
        t2 = _t2_of(report, case)
        np.testing.assert_allclose(t2, truth, rtol=2e-3)
        np.testing.assert_allclose(t2, _inverted(stored[case], T1_OTHER_MS, scan), rtol=1e-4)
    # The scans differ enough that one's parameters would not do for the other.
    assert not np.allclose(_inverted(stored["MTR_002"], T1_OTHER_MS, SCAN), truth, rtol=2e-2)
    # The same map as a predict of that scan alone given its parameters.
    alone = predict_quietly(
        trained_run.run_dir, inputs[1], tmp_path / "alone", qdess_parameters=OTHER_SCAN, **H5_OPTIONS
    )
    assert np.array_equal(_t2_of(alone, "MTR_002"), _t2_of(report, "MTR_002"), equal_nan=True)


def test_a_scan_the_table_gives_too_little_is_refused_or_left_out(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    _cohort(tmp_path / "image_files")
    inputs = sorted((tmp_path / "image_files").glob("*.h5"))
    out = tmp_path / "out"
    first = _metadata_row("MTR_001", SCAN)

    def refused(rows: list[list[str]], message: str) -> None:
        table = _all_metadata(tmp_path / "all_metadata.csv", rows)
        with pytest.raises(issl.PredictionError, match=message):
            predict_quietly(trained_run.run_dir, inputs, out, qdess_parameters_csv=table, **H5_OPTIONS)
        assert not out.exists()

    refused([first], r"MTR_002\.h5: .*all_metadata\.csv has no row of MTR_ID 'MTR_002'")
    second = _metadata_row("MTR_002", OTHER_SCAN)
    blank = [*second[:4], "", *second[5:]]
    refused(
        [first, blank],
        r"MTR_002\.h5: .*give flip_angle_deg \(FlipAngle\) with .*the row of MTR_ID 'MTR_002' in .* leaves "
        "them empty",
    )
    damaged = [*second[:4], "n/a", *second[5:]]
    refused(
        [first, damaged],
        r"MTR_002\.h5: qdess_parameters_csv .*MTR_ID 'MTR_002': column FlipAngle holds 'n/a'",
    )
    # A cohort predict that leaves bad scans out leaves that one out.
    table = _all_metadata(tmp_path / "all_metadata.csv", [first, damaged])
    report = predict_quietly(
        trained_run.run_dir, inputs, out, qdess_parameters_csv=table, skip_bad_inputs=True, **H5_OPTIONS
    )
    assert [c.case for c in report.cases] == ["MTR_001"] and [s.case for s in report.skipped] == ["MTR_002"]


def test_the_table_is_checked_before_anything_is_read(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    table = _all_metadata(tmp_path / "all_metadata.csv", [_metadata_row("MTR_001", SCAN)])
    nowhere, out = tmp_path / "nowhere", tmp_path / "o"
    with pytest.raises(ValueError, match=r"qdess_parameters_csv=.*only t2=True"):
        predict_quietly(trained_run.run_dir, nowhere, out, qdess_parameters_csv=table)
    with pytest.raises(
        ValueError,
        match=r"qdess_parameters gives \['flip_angle_deg'\] .*per scan \(columns \['FlipAngle'\]\)",
    ):
        predict_quietly(
            trained_run.run_dir,
            nowhere,
            out,
            t2=True,
            qdess_parameters={"flip_angle_deg": 20.0},
            qdess_parameters_csv=table,
        )
    with pytest.raises(DataError, match=r"qdess_parameters_csv .*absent\.csv does not exist"):
        predict_quietly(
            trained_run.run_dir, nowhere, out, t2=True, qdess_parameters_csv=tmp_path / "absent.csv"
        )


@pytest.mark.filterwarnings("ignore:input .* in-plane voxel spacing:UserWarning")
def test_a_series_takes_its_row_over_its_tags_and_a_table_naming_no_case_is_warned_of(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    _, stored, bare = _bare_series(tmp_path / "knee_01")
    spoilers = tmp_path / "spoilers.csv"
    spoilers.write_text(f"case,gl_area,tg_us\nknee_01,{SCAN['gl_area']:g},{SCAN['tg_us']:g}\n")
    report = predict_quietly(
        trained_run.run_dir, bare, tmp_path / "out", echo=1, t2=True, qdess_parameters_csv=spoilers
    )
    given = predict_quietly(
        trained_run.run_dir, bare, tmp_path / "given", echo=1, t2=True, qdess_parameters=SPOILER
    )
    assert np.array_equal(_t2_of(report, "knee_01"), _t2_of(given, "knee_01"), equal_nan=True)
    # A row's value wins over the series' tag: a flip angle in radians is refused as given.
    spoilers.write_text("case,FlipAngle\nknee_01,0.349\n")
    tagged = _series(tmp_path / "tagged" / "knee_01", stored)
    with pytest.raises(issl.PredictionError, match=r"flip_angle_deg=0.349 \(given\).*implausibly small"):
        predict_quietly(
            trained_run.run_dir, tagged, tmp_path / "o", echo=1, t2=True, qdess_parameters_csv=spoilers
        )
    spoilers.write_text("case,gl_area,tg_us\nknee_1,3132,1792\nknee_2,3132,1792\n")
    with (
        pytest.warns(
            UserWarning,
            match=r"none of its 2 rows \(case 'knee_1', 'knee_2'\) names a case predicted "
            r"\('knee_01'\)",
        ),
        pytest.raises(
            issl.PredictionError, match=r"does not state gl_area .*spoilers\.csv has no row of case 'knee_01'"
        ),
    ):
        issl.predict(
            trained_run.run_dir,
            bare,
            output=tmp_path / "o",
            echo=1,
            t2=True,
            qdess_parameters_csv=spoilers,
            progress=False,
        )


def test_a_resumed_predict_takes_no_case_whose_row_of_the_table_changed(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth, stored = _cohort(tmp_path / "image_files")
    rows = [_metadata_row("MTR_001", SCAN), _metadata_row("MTR_002", OTHER_SCAN)]
    table = _all_metadata(tmp_path / "all_metadata.csv", rows)
    inputs = sorted((tmp_path / "image_files").glob("*.h5"))
    out = tmp_path / "out"
    predict_module = importlib.import_module("inpaintssl.inference.predict")
    predict_case = predict_module.predict_case

    def dies_at_the_second(item: Any, **kwargs: Any) -> Any:
        if item.case == "MTR_002":
            raise KeyboardInterrupt
        return predict_case(item, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(predict_module, "predict_case", dies_at_the_second)
        with pytest.raises(KeyboardInterrupt):
            predict_quietly(trained_run.run_dir, inputs, out, qdess_parameters_csv=table, **H5_OPTIONS)
    # MTR_001's row corrected (its flip angle was written wrong): its T2 map is made again from it.
    wrong = {**SCAN, "flip_angle_deg": 18.0}
    _all_metadata(table, [_metadata_row("MTR_001", wrong), rows[1]])
    report = predict_quietly(trained_run.run_dir, inputs, out, qdess_parameters_csv=table, **H5_OPTIONS)
    np.testing.assert_allclose(
        _t2_of(report, "MTR_001"), _inverted(stored["MTR_001"], T1_OTHER_MS, wrong), rtol=1e-4
    )
    np.testing.assert_allclose(_t2_of(report, "MTR_002"), truth, rtol=2e-3)


def test_the_cli_reads_the_table(
    trained_run: issl.FinetuneResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth, _ = _cohort(tmp_path / "image_files")
    table = _all_metadata(
        tmp_path / "all_metadata.csv", [_metadata_row("MTR_001", SCAN), _metadata_row("MTR_002", OTHER_SCAN)]
    )
    out = tmp_path / "out"
    argv = ["predict", str(trained_run.run_dir), str(tmp_path / "image_files"), "--output", str(out), "--t2"]
    argv += ["--key", "echo1", "--spacing", "0.3125", "0.3125", "0.8", "--device", "cpu", "--quiet"]
    with pytest.warns(UserWarning):  # the tiny run's spacing
        assert cli_main([*argv, "--qdess-parameters-csv", str(table)]) == 0
    assert json.loads(capsys.readouterr().out)["cases"] == 2
    for case in ("MTR_001", "MTR_002"):
        np.testing.assert_allclose(np.asarray(nib.load(out / f"{case}_t2.nii.gz").dataobj), truth, rtol=2e-3)
