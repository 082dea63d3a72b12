"""``predict(t2=True)``: a multi-echo spin-echo series' T2 map, and each predicted tissue's mean T2.

The series is written from known T2 values (two regions, 30 and 60 ms) decaying over four echo
times; the map must give them back (to the rounding of the stored integers), on the grid and
affine of the label map, and each class's mean in ``volumes.csv`` must be the mean, over the
voxels the written label map gives that class, of a T2 fitted here voxel by voxel with NumPy's
weighted ``polyfit`` (first echo left out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from dicom_helpers import write_echo_series, write_enhanced
from predict_helpers import assert_t2_outputs, predict_quietly

pydicom = pytest.importorskip("pydicom")

SIZE, SLICES = 32, 2
TE_MS = (10.0, 20.0, 30.0, 40.0)
SLOPE = 1e-4  # stored integers of about 10,000 read as values near 1, the synthetic run's range


def _t2_field() -> np.ndarray:
    """``(rows, columns, slices)`` T2 in ms: a disc of 60 ms (fluid-like) in tissue of 30 ms."""
    rows, columns = np.mgrid[:SIZE, :SIZE]
    disc = (rows - 14) ** 2 + (columns - 15) ** 2 < 49
    return np.repeat(np.where(disc, 60.0, 30.0)[..., None], SLICES, axis=-1)


def _stored(t2: np.ndarray) -> np.ndarray:
    """``(echoes, rows, columns, slices)`` int16: ``S0 exp(-TE / T2)``, the disc brighter at TE 0."""
    s0 = np.where(t2 > 45.0, 25000.0, 14000.0)
    return np.stack([np.round(s0 * np.exp(-te / t2)) for te in TE_MS]).astype(np.int16)


def _series(folder: Path, stored: np.ndarray, times: tuple[float, ...] = TE_MS) -> Path:
    return write_echo_series(folder, stored, times, slope=SLOPE)


def _fitted_by_numpy(stored: np.ndarray) -> np.ndarray:
    values = stored.astype(np.float64) * SLOPE
    t2 = np.empty(values.shape[1:])
    for index in np.ndindex(*t2.shape):
        signal = values[(slice(1, None), *index)]
        slope, _ = np.polyfit(TE_MS[1:], np.log(signal), 1, w=signal)
        t2[index] = -1.0 / slope
    return t2


def test_the_t2_map_and_each_classs_mean_t2_are_the_echoes_fit(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    truth = _t2_field()
    stored = _stored(truth)
    series = _series(tmp_path / "mese", stored)
    report = predict_quietly(trained_run.run_dir, series, tmp_path / "out", echo=1, t2=True)
    assert_t2_outputs(report, truth, _fitted_by_numpy(stored), rtol=0.01)


def test_without_t2_there_is_no_map_and_no_t2_column(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    series = _series(tmp_path / "mese", _stored(_t2_field()))
    report = predict_quietly(trained_run.run_dir, series, tmp_path / "out", echo=2)
    assert report.cases[0].t2_map is None and report.cases[0].mean_t2_ms is None
    assert "t2" not in report.volumes_csv.read_text().splitlines()[0]
    assert not list((tmp_path / "out").glob("*_t2*"))


def test_an_input_without_echoes_to_fit_is_refused_before_anything_is_written(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    stored = _stored(_t2_field())
    one = _series(tmp_path / "one", stored[:1], times=TE_MS[:1])
    # Two echoes are read as a qDESS series, whose scan parameters (TR, flip angle, spoiler) these lack.
    two = _series(tmp_path / "two", stored[:2], times=TE_MS[:2])
    nifti = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(stored[0].astype(np.float32) * SLOPE, np.eye(4)).to_filename(nifti)
    out = tmp_path / "out"
    with pytest.raises(
        issl.PredictionError,
        match=r"needs a qDESS series \(two echoes\) or a multi-echo spin-echo series of at least 3 echoes "
        r".*but it holds 1 echo \(10 ms\)",
    ):
        predict_quietly(trained_run.run_dir, one, out, t2=True)
    with pytest.raises(issl.PredictionError, match=r"two echoes, whose T2 comes from the qDESS model.*tr_ms"):
        predict_quietly(trained_run.run_dir, two, out, echo=1, t2=True)
    with pytest.raises(issl.PredictionError, match=r"fits a T2 map .* but it is a NiftiVolume"):
        predict_quietly(trained_run.run_dir, nifti, out, t2=True)
    assert not out.exists()


def test_with_skip_bad_inputs_the_inputs_without_echoes_are_left_out(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    stored = _stored(_t2_field())
    qdess_like = _series(tmp_path / "two", stored[:2], times=TE_MS[:2])
    mese = _series(tmp_path / "mese", stored)
    nifti = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(stored[0].astype(np.float32) * SLOPE, np.eye(4)).to_filename(nifti)
    out = tmp_path / "out"
    report = predict_quietly(
        trained_run.run_dir, [qdess_like, mese, nifti], out, echo=1, t2=True, skip_bad_inputs=True
    )
    assert [c.case for c in report.cases] == ["mese"]
    assert [(s.case, s.source) for s in report.skipped] == [("two", qdess_like), ("scan", nifti)]
    assert "whose T2 comes from the qDESS model, but it does not state" in report.skipped[0].reason
    assert "but it is a NiftiVolume" in report.skipped[1].reason
    alone = predict_quietly(trained_run.run_dir, mese, tmp_path / "alone", echo=1, t2=True)
    for kind in ("seg", "t2"):
        written = np.asarray(nib.load(out / f"mese_{kind}.nii.gz").dataobj)
        assert np.array_equal(
            written, np.asarray(nib.load(tmp_path / "alone" / f"mese_{kind}.nii.gz").dataobj)
        )
    assert report.volumes_csv.read_text() == alone.volumes_csv.read_text()


def test_a_series_that_states_a_gradient_echo_is_refused_before_anything_is_written(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    # A multi-echo gradient echo (a T2* map's echoes) decays with T2*, which a spin-echo fit
    # measured and volumes.csv reported as T2: the echo count alone cannot tell them apart.
    stored = _stored(_t2_field())
    gre = write_echo_series(
        tmp_path / "mgre",
        stored,
        TE_MS,
        slope=SLOPE,
        tags={"ScanningSequence": "GR", "SequenceVariant": "SP"},
    )
    out = tmp_path / "out"
    with pytest.raises(
        issl.PredictionError,
        match=r"input .*mgre: t2=True fits a series of 4 echoes as a multi-echo spin echo, but .*mgre.*\.dcm "
        r"states ScanningSequence 'GR' \(a gradient echo, no SE\), whose echoes decay with T2\*, not T2; "
        r"expected a multi-echo spin-echo series",
    ):
        predict_quietly(trained_run.run_dir, gre, out, echo=1, t2=True)
    assert not out.exists()
    # Left out with skip_bad_inputs; a series stating its spin echo is fitted as one that states none.
    se = write_echo_series(tmp_path / "mese", stored, TE_MS, slope=SLOPE, tags={"ScanningSequence": "SE"})
    report = predict_quietly(trained_run.run_dir, [gre, se], out, echo=1, t2=True, skip_bad_inputs=True)
    assert [c.case for c in report.cases] == ["mese"]
    assert [s.case for s in report.skipped] == ["mgre"] and "a gradient echo" in report.skipped[0].reason
    assert_t2_outputs(report, _t2_field(), _fitted_by_numpy(stored), rtol=0.01)


@pytest.mark.parametrize(
    ("where", "value", "refused"),
    [
        ("root", "GRADIENT", True),
        ("shared timing", "GRADIENT", True),
        ("per-frame echo", "GRADIENT", True),
        ("shared timing", "SPIN", False),
        ("root", "BOTH", False),
        (None, None, False),
    ],
)
def test_an_enhanced_series_is_refused_where_its_echo_pulse_sequence_is_gradient(
    tmp_path: Path, where: str | None, value: str | None, refused: bool
) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.t2_maps import MeseFit, check_t2_input

    def edit(ds: Any) -> None:
        stated = Dataset()
        stated.EchoPulseSequence = value
        if where == "root":
            ds.EchoPulseSequence = value
        elif where == "shared timing":
            ds.SharedFunctionalGroupsSequence[0].MRTimingAndRelatedParametersSequence = Sequence([stated])
        elif where == "per-frame echo":
            for group in ds.PerFrameFunctionalGroupsSequence:
                group.MREchoSequence[0].EchoPulseSequence = value

    stored = _stored(_t2_field())  # (echoes, rows, columns, slices)
    frames = [(e, k) for k in range(SLICES) for e in range(len(TE_MS))]
    path = tmp_path / "mese.dcm"
    write_enhanced(
        path,
        np.stack([stored[e, :, :, k] for e, k in frames]),
        modality="MR",
        positions=[(0.0, 0.0, 3.0 * k) for _, k in frames],
        echo_times=[TE_MS[e] for e, _ in frames],
        series_uid=pydicom.uid.generate_uid(),
        edit=edit,
    )
    volume = DicomVolume(path, echo=1)
    if not refused:
        assert check_t2_input(volume, path) == MeseFit(TE_MS)
        return
    with pytest.raises(issl.PredictionError, match=r"EchoPulseSequence 'GRADIENT' \(a gradient echo\)"):
        check_t2_input(volume, path)


def test_the_cli_writes_the_map_and_the_means(
    trained_run: issl.FinetuneResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inpaintssl.cli import main

    series = _series(tmp_path / "mese", _stored(_t2_field()))
    out = tmp_path / "cli"
    args = [str(trained_run.run_dir), str(series), "--output", str(out), "--device", "cpu", "--quiet"]
    with pytest.warns(UserWarning):  # the tiny run's spacing warning
        assert main(["predict", *args, "--echo", "1", "--t2"]) == 0
    capsys.readouterr()
    assert (out / "mese_t2.nii.gz").is_file()
    header = (out / "volumes.csv").read_text().splitlines()[0].split(",")
    assert [c for c in header if c.endswith("_t2_ms")] == [f"{n}_t2_ms" for n in trained_run.class_names]


def test_the_t2_benchmark_runs_and_its_map_equals_the_whole_volume_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    record = importlib.import_module("bench_mese_t2").main(
        ["--quick", "--repeats", "1"]
    )  # raises if they differ
    capsys.readouterr()  # the JSON record it prints
    assert [e["source"] for e in record["entries"]] == ["read", "t2_map", "whole_volume_fit"]
    assert record["valid_voxel_share"] > 0.99 and isinstance(record["target_met"], bool)
    assert all(e["median_s"] > 0 and e["peak_mib"] > 0 for e in record["entries"])
