"""``predict(series=...)``: the series of each DICOM study folder, as PACS and CD exports hold them.

The expectation is the same series given as a folder of its own: the same probabilities, label
map and volumes, and with ``t2`` the same T2 map.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

import inpaintssl as issl
from dicom_helpers import count_dicom_reads, save_study_object, write_single_frame
from inpaintssl.cli import main as cli_main
from inpaintssl.inference.results import PredictionError
from predict_helpers import plain_slice_preprocessing, predict_quietly, written_nifti

pydicom = pytest.importorskip("pydicom")

SIZE, SLICES = 32, 3  # the tiny run's 32x32 slices
SLOPE = 0.001  # stored integers to the synthetic run's value range
ECHO_TIMES = (10.0, 30.0, 50.0)


def _study(root: Path) -> None:
    """A study of two series, one folder each: ``SE0002`` a T1 (a disc), ``SE0005`` a 3-echo MESE."""
    rows, columns = np.mgrid[:SIZE, :SIZE]
    disc = ((rows - 12) ** 2 + (columns - 14) ** 2 < 36).astype(np.float64) * 900 + 50
    study = pydicom.uid.generate_uid()
    n = 0
    for number, description, echoes in [(2, "AX T1", [disc]), (5, "SAG T2 MAP", None)]:
        if echoes is None:
            tissue = ((abs(rows - 20) < 6) & (abs(columns - 18) < 6)) * 900.0 + 60.0
            echoes = [tissue * np.exp(-te / 40.0) for te in ECHO_TIMES]
        uid = pydicom.uid.generate_uid()
        folder = root / f"SE{number:04d}"
        folder.mkdir(parents=True)
        for e, image in enumerate(echoes):
            for k in range(SLICES):
                n += 1
                tags = {
                    "StudyInstanceUID": study,
                    "SeriesInstanceUID": uid,
                    "SeriesDescription": description,
                    "SeriesNumber": number,
                }
                if len(echoes) > 1:
                    tags["EchoTime"] = f"{ECHO_TIMES[e]:g}"
                write_single_frame(
                    folder / f"IM{n:04d}",
                    np.round(image + (7 * k if len(echoes) == 1 else 0)).astype(np.int16),
                    modality="MR",
                    position=(0.0, 0.0, 2.0 * k),
                    instance=n,
                    pixel_spacing=(1.0, 1.0),  # the tiny run's
                    rescale=(SLOPE, 0.0),
                    identity=tags,
                )


def test_the_series_of_each_study_is_predicted_as_the_series_alone(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    for patient in ("p1", "p2"):
        _study(tmp_path / "studies" / patient)
    report = predict_quietly(
        trained_run.run_dir,
        f"{tmp_path / 'studies'}/*/",
        tmp_path / "out",
        series="ax t1",
        probabilities=True,
    )
    assert [case.case for case in report.cases] == ["p1", "p2"]
    for case in report.cases:
        alone = predict_quietly(
            trained_run.run_dir,
            tmp_path / "studies" / case.case / "SE0002",
            tmp_path / f"alone-{case.case}",
            probabilities=True,
        ).cases[0]
        np.testing.assert_array_equal(written_nifti(case.probabilities), written_nifti(alone.probabilities))
        np.testing.assert_array_equal(written_nifti(case.segmentation), written_nifti(alone.segmentation))
        assert case.volumes_ml == alone.volumes_ml


def test_a_t2_map_of_the_studys_mese_series_is_the_series_alones(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _study(tmp_path / "study")
    reads = count_dicom_reads(monkeypatch)
    (got,) = predict_quietly(
        trained_run.run_dir, tmp_path / "study", tmp_path / "out", series=5, echo=2, t2=True
    ).cases
    # The other series' headers are read once, to choose the series; the T2 fit reads its own alone.
    assert reads["SE0002"] == SLICES
    monkeypatch.undo()
    (alone,) = predict_quietly(
        trained_run.run_dir, tmp_path / "study" / "SE0005", tmp_path / "alone", echo=2, t2=True
    ).cases
    assert got.t2_map is not None and alone.t2_map is not None
    t2 = written_nifti(got.t2_map)
    np.testing.assert_array_equal(t2, written_nifti(alone.t2_map))
    assert np.nanmax(np.abs(t2[np.isfinite(t2)] - 40.0)) < 2.0  # the T2 it was written with (rounding)
    np.testing.assert_array_equal(written_nifti(got.segmentation), written_nifti(alone.segmentation))


def test_the_cli_takes_a_series_number_and_refuses_what_is_not_dicom(
    trained_run: issl.FinetuneResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _study(tmp_path / "study")
    code = cli_main(
        [
            "predict",
            str(trained_run.run_dir),
            str(tmp_path / "study"),
            "--output",
            str(tmp_path / "cli"),
            "--series",
            "2",
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cases"] == 1
    alone = predict_quietly(trained_run.run_dir, tmp_path / "study" / "SE0002", tmp_path / "alone").cases[0]
    np.testing.assert_array_equal(
        written_nifti(tmp_path / "cli" / "study_seg.nii.gz"), written_nifti(alone.segmentation)
    )

    scan = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(np.zeros((SIZE, SIZE, 2), np.float32), np.eye(4)).to_filename(scan)
    with pytest.raises(PredictionError, match=r"series='AX T1' chooses a series among a DICOM study's"):
        predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti", series="AX T1")
    assert not (tmp_path / "nifti").exists()
    with pytest.raises(PredictionError, match=r"holds no series 'COR PD'"):
        predict_quietly(trained_run.run_dir, tmp_path / "study", tmp_path / "missing", series="COR PD")
    with pytest.raises(ValueError, match=r"series=1.5; expected a SeriesDescription"):
        predict_quietly(trained_run.run_dir, tmp_path / "study", tmp_path / "bad", series=1.5)


def test_a_study_of_series_folders_without_a_choice_points_to_it(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    _study(tmp_path / "study")
    with pytest.raises(
        PredictionError, match=r"holds no files, only 2 folder\(s\).*series=\.\.\. \(--series\)"
    ):
        predict_quietly(trained_run.run_dir, tmp_path / "study", tmp_path / "out")


def _run_reading(trained_run: issl.FinetuneResult, folder: Path, series: str | int) -> Path:
    """The tiny run as a ``dicom`` run that read ``series`` from each case's study (its config.yaml)."""
    run = Path(shutil.copytree(trained_run.run_dir, folder))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"].update(dataset="dicom", params={"series": series})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def _flat(study: Path) -> Path:
    """The study with every series' files in its one folder, as some exports write it."""
    for series in [p for p in study.iterdir() if p.is_dir()]:
        for file in series.iterdir():
            file.rename(study / file.name)
        series.rmdir()
    return study


def test_a_study_gives_the_series_the_run_read_from_each_study(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    run = _run_reading(trained_run, tmp_path / "run", "ax t1")
    _study(tmp_path / "studies" / "tree")
    _study(tmp_path / "studies" / "flat")
    _flat(tmp_path / "studies" / "flat")
    studies = f"{tmp_path / 'studies'}/*/"
    chosen = predict_quietly(run, studies, tmp_path / "chosen", series="AX T1", probabilities=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*the run read from each study")
        got = predict_quietly(run, studies, tmp_path / "out", probabilities=True)
    assert [case.case for case in got.cases] == ["flat", "tree"]
    for case, expected in zip(got.cases, chosen.cases, strict=True):
        np.testing.assert_array_equal(
            written_nifti(case.probabilities), written_nifti(expected.probabilities)
        )
        np.testing.assert_array_equal(written_nifti(case.segmentation), written_nifti(expected.segmentation))
        assert case.volumes_ml == expected.volumes_ml
    # The series alone is read as it is, as without a run's series.
    _study(tmp_path / "more")
    (alone,) = predict_quietly(
        run, tmp_path / "more" / "SE0002", tmp_path / "alone", probabilities=True
    ).cases
    np.testing.assert_array_equal(
        written_nifti(alone.probabilities), written_nifti(got.cases[1].probabilities)
    )
    # What predict names wins over the run's series.
    (mese,) = predict_quietly(run, tmp_path / "studies" / "tree", tmp_path / "mese", series=5, echo=2).cases
    (mese_alone,) = predict_quietly(run, tmp_path / "more" / "SE0005", tmp_path / "m", echo=2).cases
    np.testing.assert_array_equal(written_nifti(mese.segmentation), written_nifti(mese_alone.segmentation))


@pytest.mark.parametrize("kind", ["SR", "SEG"])
def test_an_export_of_the_runs_series_beside_a_report_or_seg_gives_that_series(
    trained_run: issl.FinetuneResult, tmp_path: Path, kind: str
) -> None:
    # A CT export holds a dose report beside the images, an export after review a SEG: each is a
    # series of its own, so the folder is a study, from which the run's series is taken (it was
    # refused as "not an image" while the run's series alone was predicted as it is).
    run = _run_reading(trained_run, tmp_path / "run", "ax t1")
    _study(tmp_path / "study")
    shutil.rmtree(tmp_path / "study" / "SE0005")
    alone = predict_quietly(run, tmp_path / "study" / "SE0002", tmp_path / "alone", probabilities=True)
    export = _flat(tmp_path / "study")
    save_study_object(sorted(export.iterdir())[0], export / f"{kind}0001", kind=kind, SeriesNumber=99)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*the run read from each study")
        (got,) = predict_quietly(run, export, tmp_path / "out", probabilities=True).cases
    (expected,) = alone.cases
    np.testing.assert_array_equal(written_nifti(got.probabilities), written_nifti(expected.probabilities))
    np.testing.assert_array_equal(written_nifti(got.segmentation), written_nifti(expected.segmentation))
    # Without a series to take (a run of another dataset), the object is named and the way out said.
    with pytest.raises(
        PredictionError, match=rf"{kind}0001 .*series of its own: move it out of the series folder"
    ):
        predict_quietly(trained_run.run_dir, export, tmp_path / "refused")


@pytest.mark.parametrize("layout", ["series alone", "flat study", "series beside a report"])
def test_each_header_of_an_input_is_parsed_once_to_find_the_runs_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    # A folder is read as one series first and, a study after all, as a study; a series alone has
    # its first slice's tags read to compare with the run's series. Twice the parses, on a share.
    from inpaintssl.inference.inputs import open_input

    _study(tmp_path / "study")
    if layout != "flat study":
        shutil.rmtree(tmp_path / "study" / "SE0005")
    folder = tmp_path / "study" / "SE0002" if layout == "series alone" else _flat(tmp_path / "study")
    if layout == "series beside a report":
        save_study_object(sorted(folder.iterdir())[0], folder / "SR0001", kind="SR", SeriesNumber=99)
    prep = dataclasses.replace(plain_slice_preprocessing(), run_series="AX T1")
    reads = count_dicom_reads(monkeypatch, by="file")
    volume, _ = open_input(folder, prep=prep, key=None, spacing=None)
    monkeypatch.undo()
    assert len(volume.files) == SLICES  # the T1's, not the MESE's 3 echoes
    assert volume.series == (None if layout == "series alone" else "AX T1")
    assert reads == Counter({file.name: 1 for file in folder.iterdir()})


def test_a_series_alone_that_is_not_the_runs_is_warned_of_and_a_study_without_it_refused(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    run = _run_reading(trained_run, tmp_path / "run", 2)
    _study(tmp_path / "study")
    with pytest.warns(
        UserWarning,
        match=r"SE0005: one series \(SeriesDescription 'SAG T2 MAP', SeriesNumber '?5'?\), not the series 2 "
        r"the run read from each study \(data\.params\.series\); predicted as it is",
    ):
        report = issl.predict(
            run, tmp_path / "study" / "SE0005", output=tmp_path / "out", echo=2, progress=False
        )
    assert len(report.cases) == 1
    # A NIfTI input is no study: predicted as without the run's series.
    scan = tmp_path / "scan.nii.gz"
    image = np.random.default_rng(0).normal(size=(SIZE, SIZE, 2)).astype(np.float32)
    nib.Nifti1Image(image, np.eye(4)).to_filename(scan)
    assert len(predict_quietly(run, scan, tmp_path / "nifti").cases) == 1
    shutil.rmtree(tmp_path / "study" / "SE0002")  # a study whose series folders hold none of the run's
    with pytest.raises(PredictionError, match=r"study holds no series 2 \(by SeriesNumber\); it holds"):
        predict_quietly(run, tmp_path / "study", tmp_path / "missing", echo=2)


@pytest.mark.parametrize(
    ("dataset", "params", "expected"),
    [
        ("dicom", {"series": "SAG T2 MAP"}, "SAG T2 MAP"),
        ("ct", {"series": 3}, 3),
        ("dicom", {}, None),
        ("nifti", {"series": "AX T1"}, None),  # a plugin's or another dataset's key of that name
    ],
)
def test_the_series_a_run_read_from_each_study_is_predicts_default(
    dataset: str, params: dict[str, object], expected: object
) -> None:
    from inpaintssl.config import DataConfig
    from inpaintssl.inference.loading import Preprocessing
    from inpaintssl.inference.trained_run import slice_preprocessing

    recorded = Preprocessing.from_data_config(DataConfig.model_construct(dataset=dataset, params=params))
    prep = slice_preprocessing(recorded, slice_axis=None)
    assert (prep.series, prep.run_series) == (None, expected)
    assert slice_preprocessing(recorded, slice_axis=None, series="AX T1").series == "AX T1"
