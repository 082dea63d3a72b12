"""One series read from a whole DICOM study (``series=``): exported flat, or as a tree of folders.

PACS and CD exports hold a study's series together: every file in one folder, or one folder per
series under the study's, beside a DICOMDIR, viewer files and text. The expectation is the series
written on its own: the values it was written with, in position order, and its files alone.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom_helpers import count_dicom_reads, count_opens_under, save_study_object, write_single_frame
from inpaintssl.data.base import DataError
from inpaintssl.data.decompressed import decompressed_into
from inpaintssl.data.dicom import DicomEchoesRssVolume, DicomVolume, echoes_of, open_echoes, open_series

pydicom = pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 6, 5, 3
RESCALE = (1.0, 0.0)
# name -> (SeriesDescription, SeriesNumber, echo times or None)
SERIES: dict[str, tuple[str, int, tuple[float, ...] | None]] = {
    "t1": ("AX T1 SE", 2, None),
    "t2map": ("SAG T2 MAP", 5, (10.0, 20.0, 30.0)),
    "scout": ("LOCALIZER", 1, None),
}


def _values(name: str, echo: int = 0) -> np.ndarray:
    """``(slices, rows, columns)`` stored int16 of a series (and echo): each series its own values."""
    seed = sorted(SERIES).index(name) * 10 + echo
    return np.random.default_rng(seed).integers(10, 3000, (SLICES, ROWS, COLUMNS)).astype(np.int16)


def _write_study(root: Path, *, tree: bool, extras: bool = True) -> dict[str, str]:
    """Every series of :data:`SERIES`, flat in ``root`` or one subfolder each, and with ``extras``
    what else an export holds; returns name -> SeriesInstanceUID."""
    uids = {}
    study = pydicom.uid.generate_uid()
    n = 0
    for name, (description, number, times) in SERIES.items():
        uid = uids[name] = pydicom.uid.generate_uid()
        folder = root / f"SE{number:04d}" if tree else root
        folder.mkdir(parents=True, exist_ok=True)
        for e, te in enumerate(times or (None,)):
            for k in range(SLICES):
                n += 1
                tags: dict[str, Any] = {
                    "StudyInstanceUID": study,
                    "SeriesInstanceUID": uid,
                    "SeriesDescription": description,
                    "SeriesNumber": number,
                }
                if te is not None:
                    tags["EchoTime"] = f"{te:g}"
                write_single_frame(
                    folder / f"IM{n:05d}",  # as CD exports name them: no suffix
                    _values(name, e)[k],
                    modality="MR",
                    position=(0.0, 0.0, 4.0 * k),
                    instance=n,
                    rescale=RESCALE,
                    identity=tags,
                )
    if not extras:
        return uids
    # What else an export holds: its index, a viewer's files, a hidden folder of a desktop.
    (root / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 64)
    (root / "README.TXT").write_text("Exported by a PACS\n")
    (root / "VIEWER").mkdir()
    (root / "VIEWER" / "viewer.exe").write_bytes(b"MZ" + b"\x00" * 300)
    (root / ".Trashes").mkdir()
    shutil.copy(next(root.rglob("IM00001")), root / ".Trashes" / "IM00001")
    # Objects of the study that are no slices, numbered as a series' (scanners number them so): a
    # structured report (no pixels at all).
    t1 = next(root.rglob("IM00001"))
    save_study_object(t1, root / "SR00001", kind="SR", SeriesDescription="REPORT")
    # ... and a segmentation of the T1 (its pixels are labels, not an image of the study).
    save_study_object(t1, root / "SEG00001", kind="SEG", SeriesDescription="AX T1 SE")
    return uids


def _stack(volume: DicomVolume) -> np.ndarray:
    return np.stack([volume.read(k) for k in range(volume.num_slices)], axis=-1)


def _expected(name: str, echo: int = 0) -> np.ndarray:
    return np.moveaxis(_values(name, echo).astype(np.float32), 0, -1)


@pytest.fixture(params=["flat", "tree"])
def study(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "study"
    return root, _write_study(root, tree=request.param == "tree")


@pytest.mark.parametrize(
    "choose",
    [lambda uids: "AX T1 SE", lambda uids: "  ax t1 se ", lambda uids: 2, lambda uids: uids["t1"]],
    ids=["description", "description-any-case", "number", "uid"],
)
def test_the_series_chosen_is_read_as_it_was_written(study: tuple[Path, dict[str, str]], choose: Any) -> None:
    root, uids = study
    volume = DicomVolume(root, series=choose(uids))
    np.testing.assert_array_equal(_stack(volume), _expected("t1"))
    assert volume.spacing == pytest.approx((0.5, 0.75, 4.0))
    # Its own files only: a resume's data hash and predict's unchanged-file check see no other.
    files = [Path(f) for f in volume.files]
    assert len(files) == SLICES
    assert {str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID) for f in files} == {uids["t1"]}
    assert volume.series == choose(uids)
    assert f"series {choose(uids)!r}" in volume.source


def test_a_multi_echo_series_of_a_study_gives_its_echoes_and_their_root_sum_of_squares(
    study: tuple[Path, dict[str, str]],
) -> None:
    root, _ = study
    echoes = open_echoes(root, series="SAG T2 MAP")
    assert [e.echo for e in echoes] == [1, 2, 3] and echoes[0].echo_times_ms == (10.0, 20.0, 30.0)
    for k, echo in enumerate(echoes):
        np.testing.assert_array_equal(_stack(echo), _expected("t2map", k))
    np.testing.assert_array_equal(_stack(open_series(root, echo=2, series=5)), _expected("t2map", 1))
    rss = DicomEchoesRssVolume(root, series=5)
    expected = np.sqrt(sum(_expected("t2map", k).astype(np.float64) ** 2 for k in range(3)))
    np.testing.assert_allclose(_stack(rss), expected, rtol=1e-6)
    assert open_series(root, series=5, combine_echoes=True).source == rss.source


def test_a_flat_study_without_a_choice_is_refused_naming_its_series_and_the_option(tmp_path: Path) -> None:
    # Without the export's other files: a series folder holding those is refused for them first.
    _write_study(tmp_path / "study", tree=False, extras=False)
    with pytest.raises(DataError) as caught:
        DicomVolume(tmp_path / "study")
    message = str(caught.value)
    assert "holds 3 series" in message and "SeriesDescription 'SAG T2 MAP'" in message
    assert "series=..." in message and "data.params.series" in message and "--series" in message


def test_a_series_the_study_does_not_hold_is_refused_listing_the_ones_it_does(
    study: tuple[Path, dict[str, str]],
) -> None:
    root, uids = study
    with pytest.raises(DataError, match=re.escape(f"DICOM folder {root} holds no series 'COR PD'")) as caught:
        DicomVolume(root, series="COR PD")
    for name, (description, number, _) in SERIES.items():
        assert (
            f"SeriesInstanceUID {uids[name]} (SeriesDescription {description!r}, SeriesNumber {number})"
            in str(caught.value)
        )
    with pytest.raises(DataError, match="holds no series 7 \\(by SeriesNumber\\)"):
        DicomVolume(root, series=7)


def test_two_series_of_one_description_are_refused_asking_for_the_uid(tmp_path: Path) -> None:
    root = tmp_path / "study"
    _write_study(root, tree=True)
    # The T1 scanned twice (a repeat after motion): the same description, another series.
    repeat = root / "SE0012"
    shutil.copytree(root / "SE0002", repeat)
    uid = pydicom.uid.generate_uid()
    for f in repeat.iterdir():
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SOPInstanceUID = uid, 12, pydicom.uid.generate_uid()
        ds.save_as(f)
    with pytest.raises(DataError, match=r"holds 2 series 'AX T1 SE' .* name it by its SeriesInstanceUID"):
        DicomVolume(root, series="AX T1 SE")
    np.testing.assert_array_equal(_stack(DicomVolume(root, series=uid)), _expected("t1"))
    np.testing.assert_array_equal(_stack(DicomVolume(root, series=12)), _expected("t1"))


@pytest.mark.parametrize("series", ["", "   ", True, 1.5, ["AX T1 SE"]])
def test_a_choice_that_names_no_series_is_a_value_error(tmp_path: Path, series: Any) -> None:
    _write_study(tmp_path / "study", tree=False)
    with pytest.raises(ValueError, match=re.escape(f"series={series!r}: expected a SeriesInstanceUID")):
        DicomVolume(tmp_path / "study", series=series)


def test_a_folder_without_dicom_files_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("no images\n")
    with pytest.raises(DataError, match="holds no DICOM images, in it or its subfolders"):
        DicomVolume(tmp_path, series="AX T1 SE")


def test_each_series_of_one_study_keeps_its_own_decompressed_copy(tmp_path: Path) -> None:
    root = tmp_path / "study"
    _write_study(root, tree=False)
    with decompressed_into(tmp_path / "cache"):
        t1, scout = DicomVolume(root, series=2), DicomVolume(root, series=1)
        for volume in (t1, scout):
            assert volume.stored_orientation is not None
            # Across the slices: the series is read whole and kept.
            volume.reorient(volume.stored_orientation, slice_axis=0)
        assert np.array_equal(t1.read(1), _expected("t1")[1])
        assert np.array_equal(scout.read(1), _expected("scout")[1])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_the_dicom_dataset_reads_the_series_of_every_case_as_its_own_folder(tmp_path: Path) -> None:
    from inpaintssl.data.dicom_dataset import dicom_dataset

    cases = []
    for patient in ("p1", "p2"):
        _write_study(tmp_path / patient, tree=True)
        cases.append(str(tmp_path / patient))
    mine = dicom_dataset(split="train", labelled=False, cases={"train": cases}, series="ax t1 se")
    alone = [str(tmp_path / patient / "SE0002") for patient in ("p1", "p2")]
    theirs = dicom_dataset(split="train", labelled=False, cases={"train": alone})
    assert len(mine) == len(theirs) == 2 * SLICES
    for k in range(len(mine)):
        assert np.array_equal(mine[k]["image"].numpy(), theirs[k]["image"].numpy())
    with pytest.raises(DataError, match=r"dicom: series=True; expected a SeriesDescription"):
        dicom_dataset(split="train", labelled=False, cases={"train": cases}, series=True)


@pytest.mark.filterwarnings("ignore:ct case .* holds values")  # MR values: no HU, as the test knows
def test_the_ct_dataset_reads_the_series_of_every_study_and_refuses_other_formats(tmp_path: Path) -> None:
    from inpaintssl.data.ct import ct_dataset

    _write_study(tmp_path / "p1", tree=False, extras=False)
    common: dict[str, Any] = {"split": "train", "labelled": False}
    mine = ct_dataset(cases={"train": [str(tmp_path / "p1")]}, series=2, **common)
    alone = tmp_path / "alone"
    alone.mkdir()
    for f in DicomVolume(tmp_path / "p1", series=2).files:
        shutil.copy(f, alone / Path(f).name)
    theirs = ct_dataset(cases={"train": [str(alone)]}, **common)
    assert len(mine) == len(theirs) == SLICES
    for k in range(SLICES):
        for key in ("image", "hu"):
            assert np.array_equal(mine[k][key].numpy(), theirs[k][key].numpy())
    np.save(tmp_path / "scan.npy", np.zeros((4, 4, 2), np.float32))
    with pytest.raises(
        DataError, match=r"read as NumpyVolume, but series=2 chooses a series of a DICOM study"
    ):
        ct_dataset(cases={"train": [str(tmp_path / "scan.npy")]}, series=2, **common)
    with pytest.raises(DataError, match=r"ct: series=1\.5; expected a SeriesDescription"):
        ct_dataset(cases={"train": [str(tmp_path / "p1")]}, series=1.5, **common)


def test_the_listing_names_every_series_of_a_study_by_what_series_takes(tmp_path: Path) -> None:
    from inpaintssl.data.dicom import list_series

    root = tmp_path / "study"
    uids = _write_study(root, tree=True)
    found = list_series(root)
    images = [s for s in found if s.image]
    # Ordered by number; the T1, its SEG and the report share 2, as a scanner may number them.
    assert [(s.number, s.description) for s in images] == [
        (1, "LOCALIZER"),
        (2, "AX T1 SE"),
        (5, "SAG T2 MAP"),
    ]
    for s in images:
        name = next(n for n, (description, _, _) in SERIES.items() if description == s.description)
        times = SERIES[name][2]
        assert s.uid == uids[name] and s.modality == "MR"
        assert s.slices == s.files == SLICES * len(times or (None,))
        assert s.echo_times_ms == (times or ())
        assert s.folder == root / f"SE{s.number:04d}"
    others = sorted((s.description, s.modality) for s in found if not s.image)
    assert others == [("AX T1 SE", "SEG"), ("REPORT", "SR")]
    # Each listed image series is what series= reads by its UID.
    for s in images:
        assert DicomVolume(root, series=s.uid, echo=1 if len(s.echo_times_ms) > 1 else None).files


def test_each_file_of_a_study_is_opened_once_for_its_preamble_and_header(
    study: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaintssl.data.dicom import list_series

    root, _ = study
    # What an export holds beside its series is opened too (to look for the preamble), but never
    # DICOMDIR, nor anything hidden.
    opened = sorted(
        p.resolve()
        for p in root.rglob("*")
        if p.is_file() and p.name != "DICOMDIR" and ".Trashes" not in p.parts
    )
    opens = count_opens_under(root, monkeypatch)
    list_series(root)
    assert sorted(opens) == opened and set(opens.values()) == {1}
    opens.clear()
    volume = DicomVolume(root, series="AX T1 SE")
    assert sorted(opens) == opened and set(opens.values()) == {1}  # headers read, no pixels yet
    monkeypatch.undo()
    np.testing.assert_array_equal(_stack(volume), _expected("t1"))


def test_the_echoes_of_a_studys_series_are_read_from_its_files_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaintssl.data.dicom_dataset import dicom_dataset

    _write_study(tmp_path / "study", tree=True)
    reads = count_dicom_reads(monkeypatch)
    mine = dicom_dataset(
        split="train",
        labelled=False,
        cases={"train": [str(tmp_path / "study")]},
        series=5,
        echo=2,
        t2_echoes=True,
    )
    # The other series' headers are read once, to choose the series; the echoes come from its own files.
    assert reads["SE0002"] == SLICES and reads["SE0001"] == SLICES
    monkeypatch.undo()
    volume = DicomVolume(tmp_path / "study", series=5, echo=2)
    assert volume.series_files == tuple(sorted(str(p) for p in (tmp_path / "study" / "SE0005").iterdir()))
    assert [echo.echo for echo in echoes_of(volume)] == [1, 2, 3]
    for k, echo in enumerate(echoes_of(volume)):
        np.testing.assert_array_equal(_stack(echo), _expected("t2map", k))
    alone = dicom_dataset(
        split="train",
        labelled=False,
        cases={"train": [str(tmp_path / "study" / "SE0005")]},
        echo=2,
        t2_echoes=True,
    )
    assert len(mine) == len(alone) == SLICES
    for k in range(SLICES):
        np.testing.assert_array_equal(mine[k]["echoes"].numpy(), alone[k]["echoes"].numpy())
        np.testing.assert_array_equal(mine[k]["image"].numpy(), alone[k]["image"].numpy())
