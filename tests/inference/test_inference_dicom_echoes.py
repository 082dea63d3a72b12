"""``predict`` on multi-echo DICOM series: the echo asked for (``echo=k``, ``--echo``), or none.

A multi-echo series (qDESS, multi-echo spin echo, Dixon) holds several images at every slice
position. Before, predict refused it as a series of repeated positions; read whole it would be no
volume. The expectation is a NIfTI file of the chosen echo's values on the series' grid, which
predict already reads: the two must give the same probabilities, and the two echoes different ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import inpaintssl as issl
from dicom_helpers import write_single_frame
from predict_helpers import predict_quietly

pydicom = pytest.importorskip("pydicom")

SIZE, SLICES = 32, 3  # the tiny run's 32x32 slices
SLOPE = 0.001  # stored integers to the synthetic run's value range (it trained on values as stored)


def _echoes() -> np.ndarray:
    """``(2, rows, columns, slices)`` stored: echo 1 a bright disc, echo 2 a bright square."""
    rows, columns = np.mgrid[:SIZE, :SIZE]
    disc = ((rows - 12) ** 2 + (columns - 14) ** 2 < 36).astype(np.int16) * 900
    square = ((abs(rows - 20) < 6) & (abs(columns - 18) < 6)).astype(np.int16) * 700
    return np.stack([np.repeat(image[..., None], SLICES, axis=-1) + 50 for image in (disc, square)])


def _series(folder: Path, echoes: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    uid = pydicom.uid.generate_uid()
    for e, te in enumerate((9.0, 60.0)):
        for k in range(SLICES):
            write_single_frame(
                folder / f"IM{k}{e}.dcm",  # echoes interleaved by name
                echoes[e, :, :, k],
                modality="MR",
                position=(0.0, 0.0, 2.0 * k),
                instance=2 * k + e + 1,
                rescale=(SLOPE, 0.0),
                identity={"SeriesInstanceUID": uid, "EchoTime": f"{te:g}"},
            )
    return folder


def _nifti_of_echo(series: Path, stored: np.ndarray, target: Path) -> Path:
    from inpaintssl.data.dicom import DicomVolume

    values = stored.astype(np.float32) * np.float32(SLOPE) + np.float32(0.0)  # the reader's rescale
    nib.Nifti1Image(values, DicomVolume(series, echo=1).patient_affine).to_filename(target)
    return target


def _probabilities(report: issl.PredictionReport) -> np.ndarray:
    (case,) = report.cases
    assert case.probabilities is not None
    return np.asarray(nib.load(case.probabilities).dataobj)


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, np.ndarray]:
    echoes = _echoes()
    return _series(tmp_path / "mese", echoes), echoes


@pytest.mark.parametrize("echo", [1, 2])
def test_the_echo_asked_for_is_predicted_as_a_nifti_of_it(
    trained_run: issl.FinetuneResult, series: tuple[Path, np.ndarray], tmp_path: Path, echo: int
) -> None:
    path, echoes = series
    twin = _nifti_of_echo(path, echoes[echo - 1], tmp_path / "twin.nii.gz")
    run = trained_run.run_dir
    got = predict_quietly(run, path, tmp_path / "dicom", echo=echo, probabilities=True)
    expected = predict_quietly(run, twin, tmp_path / "nifti", probabilities=True)
    assert got.cases[0].shape == (SIZE, SIZE, SLICES)
    assert np.array_equal(_probabilities(got), _probabilities(expected))
    other = predict_quietly(run, path, tmp_path / "other", echo=3 - echo, probabilities=True)
    assert not np.array_equal(_probabilities(got), _probabilities(other))  # the test tells the echoes apart


def test_a_multi_echo_series_without_an_echo_is_refused_naming_them_and_the_option(
    trained_run: issl.FinetuneResult, series: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, _ = series
    with pytest.raises(issl.PredictionError, match=r"holds 2 echoes \(EchoTime 9, 60 ms\).*--echo"):
        predict_quietly(trained_run.run_dir, path, tmp_path / "out")


def test_a_single_echo_input_is_read_as_it_is_whatever_the_echo(
    trained_run: issl.FinetuneResult, series: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, echoes = series
    twin = _nifti_of_echo(path, echoes[0], tmp_path / "twin.nii.gz")
    run = trained_run.run_dir
    with_echo = predict_quietly(run, twin, tmp_path / "a", echo=2, probabilities=True)
    without = predict_quietly(run, twin, tmp_path / "b", probabilities=True)
    assert np.array_equal(_probabilities(with_echo), _probabilities(without))


@pytest.mark.parametrize("echo", [0, True])
def test_an_echo_that_is_no_echo_number_is_refused_before_any_input_is_read(
    trained_run: issl.FinetuneResult, tmp_path: Path, echo: object
) -> None:
    with pytest.raises(ValueError, match=rf"echo={echo!r}; expected an echo number >= 1"):
        predict_quietly(trained_run.run_dir, tmp_path / "missing.nii.gz", tmp_path / "out", echo=echo)


def test_the_cli_takes_the_echo(
    trained_run: issl.FinetuneResult,
    series: tuple[Path, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from inpaintssl.cli import main

    path, _ = series
    args = [
        str(trained_run.run_dir),
        str(path),
        "--output",
        str(tmp_path / "cli"),
        "--device",
        "cpu",
        "--quiet",
    ]
    with pytest.warns(UserWarning):  # the tiny run's spacing warning
        assert main(["predict", *args, "--echo", "2", "--probabilities"]) == 0
    assert json.loads(capsys.readouterr().out)["cases"] == 1
    expected = predict_quietly(trained_run.run_dir, path, tmp_path / "api", echo=2, probabilities=True)
    (written,) = (tmp_path / "cli").glob("*_prob.nii.gz")
    assert np.array_equal(np.asarray(nib.load(written).dataobj), _probabilities(expected))
