"""Multi-echo DICOM series: one echo chosen (``echo=k``), or the echoes' root-sum-of-squares.

A qDESS knee scan exported by the scanner holds both echoes at every slice position, as do
multi-echo spin-echo (T2 mapping) and Dixon series. The expectations are the pixels written,
not the reader: echo ``k`` is the ``k``-th shortest echo time, its slices in position order, and
the root-sum-of-squares is computed here in float64, and read by the ``skmtea`` dataset's own
reader (:class:`~inpaintssl.data.skmtea.QdessRssVolume`) from an HDF5 file of the same echoes.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from dicom_helpers import write_enhanced, write_single_frame
from inpaintssl.data.base import DataError
from inpaintssl.data.dicom import DicomEchoesRssVolume, DicomVolume
from inpaintssl.data.loading import H5Files
from inpaintssl.data.skmtea import QdessRssVolume

pydicom = pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 6, 5, 4
ECHO_TIMES = (6.0, 34.5)  # qDESS: the FID-like echo, then the longer one
POSITIONS = [(-20.0, 10.0, 3.0 * k) for k in range(SLICES)]
RESCALE = (2.0, -7.0)  # slope, intercept: the echoes are compared in rescaled values


def _echoes(seed: int = 0, count: int = 2) -> np.ndarray:
    """``(echoes, slices, rows, columns)`` as stored; each later echo darker (T2 decay)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(100, 3000, (SLICES, ROWS, COLUMNS))
    return np.stack([first // (k + 1) + k for k in range(count)]).astype(np.int16)


def _rescaled(stored: np.ndarray) -> np.ndarray:
    """``(rows, columns, slices)`` float64 values of one echo's ``(slices, rows, columns)``."""
    return np.moveaxis(stored.astype(np.float64) * RESCALE[0] + RESCALE[1], 0, -1)


def _classic(
    folder: Path,
    echoes: np.ndarray,
    *,
    times: tuple[float, ...] | None = ECHO_TIMES,
    numbers: bool = True,
    positions: list[list[tuple[float, float, float]]] | None = None,
    identity: dict[str, Any] | None = None,
) -> Path:
    """One single-frame file per echo and slice, the echoes' files interleaved by name (as PACS
    exports number them) and the slices shuffled, so that neither name nor write order sorts them."""
    folder.mkdir(parents=True)
    uid = pydicom.uid.generate_uid()
    order = np.random.default_rng(5).permutation(len(echoes) * SLICES)
    for n, flat in enumerate(order):
        e, k = divmod(int(flat), SLICES)
        tags: dict[str, Any] = {"SeriesInstanceUID": uid, **(identity or {})}
        if times is not None:
            tags["EchoTime"] = f"{times[e]:g}"
        if numbers:
            tags["EchoNumbers"] = e + 1
        where = POSITIONS if positions is None else positions[e]
        write_single_frame(
            folder / f"IM{n:04d}.dcm",
            echoes[e, k],
            modality="MR",
            position=where[k],
            instance=n + 1,
            rescale=RESCALE,
            identity=tags,
        )
    return folder


def _enhanced(path: Path, echoes: np.ndarray) -> Path:
    """One Enhanced MR file: every frame its position and EffectiveEchoTime, frames echo-interleaved."""
    frames = [(k, e) for k in range(SLICES) for e in range(len(echoes))][::-1]
    write_enhanced(
        path,
        np.stack([echoes[e, k] for k, e in frames]),
        modality="MR",
        positions=[POSITIONS[k] for k, _ in frames],
        rescale=[RESCALE] * len(frames),
        echo_times=[ECHO_TIMES[e] for _, e in frames],
        series_uid=pydicom.uid.generate_uid(),
    )
    return path


@pytest.fixture(params=["classic", "enhanced"])
def series(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, np.ndarray]:
    echoes = _echoes()
    if request.param == "classic":
        return _classic(tmp_path / "qdess", echoes), echoes
    return _enhanced(tmp_path / "qdess.dcm", echoes), echoes


@pytest.mark.parametrize("echo", [1, 2])
def test_the_chosen_echo_is_read_in_position_order(series: tuple[Path, np.ndarray], echo: int) -> None:
    path, echoes = series
    volume = DicomVolume(path, echo=echo)
    assert volume.echo == echo
    assert volume.echo_times_ms == ECHO_TIMES
    assert volume.stored_shape == (ROWS, COLUMNS, SLICES)
    assert volume.spacing == pytest.approx((0.5, 0.75, 3.0))
    np.testing.assert_array_equal(
        np.stack([volume.read(k) for k in range(SLICES)], axis=-1), _rescaled(echoes[echo - 1])
    )
    # Across the slices (the whole series decoded): the same values.
    volume.reorient("LAS", slice_axis=0)
    expected = _rescaled(echoes[echo - 1])  # stored rows run P, columns L, slices S: LPS
    np.testing.assert_array_equal(volume.read(2), expected[:, 2, :][::-1])


def test_a_multi_echo_series_read_as_one_volume_names_its_echoes_and_the_option(
    series: tuple[Path, np.ndarray],
) -> None:
    path, _ = series
    expected = "holds 2 echoes (EchoTime 6, 34.5 ms) at the same slice positions"
    with pytest.raises(DataError, match=re.escape(expected)) as caught:
        DicomVolume(path)
    assert "echo=1 to 2" in str(caught.value) and "data.params.echo" in str(caught.value)
    assert str(path) in str(caught.value)


def test_echo_numbers_tell_the_echoes_apart_where_no_echo_time_is_stated(tmp_path: Path) -> None:
    echoes = _echoes(seed=1)
    path = _classic(tmp_path / "s", echoes, times=None)
    volume = DicomVolume(path, echo=2)
    assert volume.echo_times_ms == ()
    np.testing.assert_array_equal(
        np.stack([volume.read(k) for k in range(SLICES)], axis=-1), _rescaled(echoes[1])
    )
    with pytest.raises(DataError, match=r"holds 2 echoes \(EchoNumbers 1, 2\)"):
        DicomVolume(path)


def test_an_echo_the_series_does_not_hold_is_refused_naming_the_ones_it_does(
    series: tuple[Path, np.ndarray],
) -> None:
    path, _ = series
    with pytest.raises(
        DataError, match=re.escape("holds 2 echo(es) (EchoTime 6, 34.5 ms); echo=3 asks for echo 3")
    ):
        DicomVolume(path, echo=3)


def test_a_single_echo_series_is_its_own_echo_1_and_has_no_echo_2(tmp_path: Path) -> None:
    echoes = _echoes(seed=2, count=1)
    path = _classic(tmp_path / "t1", echoes, times=None, numbers=False)
    np.testing.assert_array_equal(DicomVolume(path, echo=1).read(3), DicomVolume(path).read(3))
    with pytest.raises(
        DataError, match=r"state no EchoTime .* or EchoNumbers on every slice, so it is read as one echo"
    ):
        DicomVolume(path, echo=2)


@pytest.mark.parametrize("echo", [0, -1, True, 1.0, "1"])
def test_an_echo_that_is_no_positive_whole_number_is_refused(tmp_path: Path, echo: Any) -> None:
    path = _classic(tmp_path / "s", _echoes())
    with pytest.raises(ValueError, match=re.escape(f"echo={echo!r}: expected an echo number >= 1")):
        DicomVolume(path, echo=echo)


def test_the_root_sum_of_squares_is_that_of_the_echoes_and_the_skmtea_readers(
    series: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, echoes = series
    volume = DicomEchoesRssVolume(path)
    assert volume.echo_times_ms == ECHO_TIMES and volume.echo is None
    assert "root-sum-of-squares of its 2 echoes" in volume.source
    # Every echo's files, so that checks and resumes see a change to any of them.
    assert sorted(volume.files) == sorted(str(f) for f in ([path] if path.is_file() else path.iterdir()))
    read = np.stack([volume.read(k) for k in range(SLICES)], axis=-1)
    assert read.dtype == np.float32
    e1, e2 = (_rescaled(e) for e in echoes)
    np.testing.assert_allclose(read, np.sqrt(e1**2 + e2**2), rtol=1e-6)
    # The skmtea dataset's reader, on an HDF5 file of the same echoes: the same float32 values.
    h5 = tmp_path / "same.h5"
    with h5py.File(h5, "w") as handle:
        handle["echo1"], handle["echo2"] = e1.astype(np.float32), e2.astype(np.float32)
    skmtea = QdessRssVolume(h5, handles=H5Files())
    np.testing.assert_array_equal(read, np.stack([skmtea.read(k) for k in range(SLICES)], axis=-1))
    # Geometry is the echoes' own, and a worker the volume is pickled to reads the same.
    assert np.array_equal(volume.patient_affine, DicomVolume(path, echo=2).patient_affine)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(volume)).read(1), read[..., 1])
    volume.reorient("LAS", slice_axis=0)  # read across the slices: every file of both echoes
    np.testing.assert_array_equal(volume.read(4), read[:, 4, :][::-1])


def test_the_root_sum_of_squares_of_more_echoes_takes_them_all(tmp_path: Path) -> None:
    echoes = _echoes(seed=3, count=3)
    path = _classic(tmp_path / "mese", echoes, times=(10.0, 20.0, 30.0))
    read = np.stack([DicomEchoesRssVolume(path).read(k) for k in range(SLICES)], axis=-1)
    expected = np.sqrt(sum(_rescaled(e) ** 2 for e in echoes))
    np.testing.assert_allclose(read, expected, rtol=1e-6)


def test_a_single_echo_series_has_no_root_sum_of_squares(tmp_path: Path) -> None:
    path = _classic(tmp_path / "one", _echoes(count=1), times=(6.0,))
    with pytest.raises(
        DataError, match=re.escape("holds one echo (EchoTime 6 ms); expected a series of several")
    ):
        DicomEchoesRssVolume(path)


def test_echoes_on_different_grids_are_not_combined(tmp_path: Path) -> None:
    shifted = [(x, y, z + 1.0) for x, y, z in POSITIONS]
    path = _classic(tmp_path / "moved", _echoes(), positions=[POSITIONS, shifted])
    with pytest.raises(DataError, match=r"echo 2 is .* at other positions where echo 1 is"):
        DicomEchoesRssVolume(path)


# -- the dicom dataset's echo, and what a run records of it -----------------------------------
LABELS = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
LABELS[1:4, 1:4, :] = 1


def _nifti_twin(series: Path, values: np.ndarray, target: Path) -> Path:
    import nibabel as nib

    affine = DicomVolume(series, echo=1).patient_affine  # every echo's (checked above)
    nib.Nifti1Image(values, affine).to_filename(target)  # type: ignore[no-untyped-call]
    return target


@pytest.mark.parametrize("echo", [1, 2, "rss"])
def test_the_dicom_dataset_reads_the_echo_asked_for_as_nifti_reads_it(
    series: tuple[Path, np.ndarray], tmp_path: Path, echo: int | str
) -> None:
    from inpaintssl.data.dicom_dataset import dicom_dataset
    from inpaintssl.data.volumes import nifti_dataset

    path, echoes = series
    e1, e2 = (_rescaled(e).astype(np.float32) for e in echoes)
    values = {1: e1, 2: e2, "rss": np.sqrt(e1 * e1 + e2 * e2)}[echo]
    image = _nifti_twin(path, values, tmp_path / "image.nii.gz")
    label = _nifti_twin(path, LABELS, tmp_path / "label.nii.gz")
    common: dict[str, Any] = {"split": "train", "class_names": ["cartilage"], "orientation": "RAS"}
    mine = dicom_dataset(cases={"train": [{"image": str(path), "label": str(label)}]}, echo=echo, **common)
    theirs = nifti_dataset(cases={"train": [{"image": str(image), "label": str(label)}]}, **common)
    assert len(mine) == len(theirs) > 0
    for k in range(len(mine)):
        np.testing.assert_allclose(mine[k]["image"].numpy(), theirs[k]["image"].numpy(), rtol=0, atol=1e-5)
        assert np.array_equal(mine[k]["label"].numpy(), theirs[k]["label"].numpy())


def test_the_dicom_dataset_refuses_a_multi_echo_series_without_an_echo(
    series: tuple[Path, np.ndarray],
) -> None:
    from inpaintssl.data.dicom_dataset import dicom_dataset

    path, _ = series
    with pytest.raises(DataError, match=r"holds 2 echoes .* data\.params\.echo"):
        dicom_dataset(split="train", labelled=False, cases={"train": [str(path)]})


@pytest.mark.parametrize("echo", [0, "RSS", 1.5, True])
def test_the_dicom_dataset_refuses_an_echo_it_cannot_read(tmp_path: Path, echo: Any) -> None:
    from inpaintssl.data.dicom_dataset import dicom_dataset

    path = _classic(tmp_path / "s", _echoes())
    with pytest.raises(DataError, match=re.escape(f"dicom: echo={echo!r}; expected an echo number >= 1")):
        dicom_dataset(split="train", labelled=False, cases={"train": [str(path)]}, echo=echo)


@pytest.mark.parametrize(
    ("params", "echo", "channels"),
    [({}, None, "image"), ({"echo": 2}, 2, "image"), ({"echo": "rss"}, None, "rss_echoes")],
)
def test_a_dicom_run_records_its_echo_for_predict(
    params: dict[str, Any], echo: int | None, channels: str
) -> None:
    from inpaintssl.config import DataConfig
    from inpaintssl.inference.loading import Preprocessing
    from inpaintssl.inference.trained_run import slice_preprocessing

    recorded = Preprocessing.from_data_config(DataConfig(dataset="dicom", params=params))
    assert (recorded.echo, recorded.channels) == (echo, channels)
    # What predict reads multi-echo inputs with: the run's echo, or predict's own over it.
    prep = slice_preprocessing(recorded, slice_axis=None)
    assert (prep.echo, prep.rss_echoes) == (echo, channels == "rss_echoes")
    if channels == "rss_echoes":
        with pytest.raises(ValueError, match="echo=1: the run trained on the root-sum-of-squares"):
            slice_preprocessing(recorded, slice_axis=None, echo=1)
    else:
        assert slice_preprocessing(recorded, slice_axis=None, echo=3).echo == 3
    # An exported model keeps it: the metadata round-trips through JSON.
    from inpaintssl.inference.loading import ModelInfo

    info = ModelInfo(
        kind="finetune", backbone="unet2d", in_channels=1, out_channels=1, preprocessing=recorded
    )
    restored = ModelInfo.from_json(info.for_export().to_json()).preprocessing
    assert restored is not None and (restored.echo, restored.channels) == (echo, channels)


@pytest.mark.parametrize("echo", [2, "rss"])
@pytest.mark.parametrize("kind", ["rtstruct", "seg"])
def test_contours_and_segs_drawn_on_the_first_echo_label_every_echo(
    tmp_path: Path, kind: str, echo: Any
) -> None:
    # A viewer shows (and a reader annotates) one echo; every echo lies on its grid.
    from inpaintssl.data.dicom_dataset import dicom_dataset

    uid = pydicom.uid.generate_uid
    path = _classic(
        tmp_path / "s", _echoes(), identity={"StudyInstanceUID": uid(), "FrameOfReferenceUID": uid()}
    )
    first = DicomVolume(path, echo=1)
    target = tmp_path / "label.dcm"
    if kind == "rtstruct":
        from inpaintssl.inference.rtstruct import write_rtstruct

        assert first.patient_affine is not None
        write_rtstruct(LABELS, first, target, class_names=["cartilage"], affine=first.patient_affine)
    else:
        pytest.importorskip("highdicom", reason="the dicom-seg extra writes the SEG")
        from inpaintssl.inference.dicom_seg import write_dicom_seg

        write_dicom_seg(LABELS, first, target, class_names=["cartilage"])
    cases = {"train": [{"image": str(path), "label": str(target)}]}
    dataset = dicom_dataset(split="train", cases=cases, class_names=["cartilage"], echo=echo)
    read = np.stack([dataset[k]["label"].numpy()[0] for k in range(len(dataset))], axis=-1)
    assert np.array_equal(read, LABELS)


# -- t2_echoes: every echo in each item, for the clinical study's mean T2 ----------------------
MESE_TIMES = (10.0, 20.0, 30.0, 40.0)


def _mese(folder: Path, seed: int = 4, tags: dict[str, Any] | None = None) -> tuple[Path, np.ndarray]:
    """A 4-echo spin-echo series whose voxels decay with T2 between 20 and 70 ms; ``tags``: more
    tags every file states."""
    rng = np.random.default_rng(seed)
    t2 = rng.uniform(20.0, 70.0, (SLICES, ROWS, COLUMNS))
    s0 = rng.uniform(800.0, 1500.0, (SLICES, ROWS, COLUMNS))
    stored = np.stack([np.round(s0 * np.exp(-te / t2)) for te in MESE_TIMES]).astype(np.int16)
    uid = pydicom.uid.generate_uid
    path = _classic(folder, stored, times=MESE_TIMES, identity={"StudyInstanceUID": uid(), **(tags or {})})
    return path, stored


def test_items_carry_every_echo_of_their_slice_in_the_images_orientation(tmp_path: Path) -> None:
    from inpaintssl.data.dicom_dataset import dicom_dataset

    path, stored = _mese(tmp_path / "mese")
    dataset = dicom_dataset(
        split="train",
        labelled=False,
        cases={"train": [str(path)]},
        echo=1,
        t2_echoes=True,
        orientation="LAS",
        slice_axis=0,
    )
    rescaled = [_rescaled(e) for e in stored]  # (rows P, columns L, slices S): LPS
    assert len(dataset) == COLUMNS
    assert dataset.data_files == sorted(str(f) for f in path.iterdir())  # every echo's, not echo 1's
    for k in range(COLUMNS):
        item = dataset[k]
        expected = np.stack([r[:, k, :][::-1] for r in rescaled])  # LAS, cut along L
        assert item["echoes"].dtype == torch.float32
        np.testing.assert_array_equal(item["echoes"].numpy(), expected.astype(np.float32))
        assert item["echo_times_ms"].tolist() == list(MESE_TIMES)
        # The image is the first echo, z-scored: its values follow echo 1 slice for slice.
        image = item["image"][0].numpy()
        assert np.corrcoef(image.ravel(), expected[0].ravel())[0, 1] == pytest.approx(1.0)


def test_the_clinical_study_measures_each_tissues_mese_t2_from_the_items(tmp_path: Path) -> None:
    from inpaintssl.data.dicom_dataset import dicom_dataset
    from inpaintssl.studies.clinical import clinical_measurements

    path, stored = _mese(tmp_path / "mese")
    labels = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    labels[:3, :, :] = 1
    labels[4:, 1:4, 1:] = 2
    label = _nifti_twin(path, labels, tmp_path / "label.nii.gz")
    dataset = dicom_dataset(
        split="test",
        cases={"test": [{"image": str(path), "label": str(label)}]},
        class_names=["femoral", "tibial"],
        echo=1,
        t2_echoes=True,
    )
    predicted = np.zeros_like(labels)
    predicted[:2, :, :] = 1  # a smaller femoral, no tibial
    masks = torch.from_numpy(np.stack([np.moveaxis(predicted == k, -1, 0) for k in (1, 2)], axis=1))
    batches = iter(torch.split(masks.float(), 1))
    rows = {
        (m.class_name, m.metric): m.value
        for m in clinical_measurements(
            dataset, lambda images: next(batches), class_names=["femoral", "tibial"], batch_size=1
        )
    }
    values = stored.astype(np.float64) * RESCALE[0] + RESCALE[1]
    fitted = np.empty((ROWS, COLUMNS, SLICES))
    for r, c, s in np.ndindex(ROWS, COLUMNS, SLICES):
        signal = values[1:, s, r, c]
        fitted[r, c, s] = -1.0 / np.polyfit(MESE_TIMES[1:], np.log(signal), 1, w=signal)[0]
    assert rows[("femoral", "mean_t2_ms_ref")] == pytest.approx(fitted[labels == 1].mean(), rel=1e-4)
    assert rows[("tibial", "mean_t2_ms_ref")] == pytest.approx(fitted[labels == 2].mean(), rel=1e-4)
    assert rows[("femoral", "mean_t2_ms_pred")] == pytest.approx(fitted[predicted == 1].mean(), rel=1e-4)
    assert np.isnan(rows[("tibial", "mean_t2_ms_pred")])  # no voxel predicted


def test_t2_echoes_refuses_series_whose_t2_cannot_be_fitted(tmp_path: Path) -> None:
    from inpaintssl.data.dicom_dataset import dicom_dataset

    two = _classic(tmp_path / "two", _echoes())
    numbers_only = _classic(tmp_path / "numbers", _echoes(count=3), times=None)
    mese, _ = _mese(tmp_path / "mese")

    def build(*series: Path, echo: Any = 1) -> Any:
        cases = {"train": [str(s) for s in series]}
        return dicom_dataset(split="train", labelled=False, cases=cases, echo=echo, t2_echoes=True)

    with pytest.raises(DataError, match=re.escape("holds 2 echo(es) (6, 34.5 ms)")):
        build(two)
    with pytest.raises(DataError, match=re.escape("holds 3 echo(es) without an EchoTime on every slice")):
        build(numbers_only)
    four = _classic(tmp_path / "four", _echoes(count=5), times=(10.0, 20.0, 30.0, 40.0, 50.0))
    with pytest.raises(
        DataError, match=r"t2_echoes reads series of different echo counts \(.*mese: 4; .*four: 5\)"
    ):
        build(mese, four)


def _enhanced_mese(path: Path, edit: Any) -> Path:
    """One Enhanced MR file of a 4-echo series, each frame its EffectiveEchoTime; ``edit`` adds tags."""
    stored = _mese(path.parent / f"{path.stem}-classic", seed=6)[1]
    frames = [(k, e) for k in range(SLICES) for e in range(len(MESE_TIMES))]
    write_enhanced(
        path,
        np.stack([stored[e, k] for k, e in frames]),
        modality="MR",
        positions=[POSITIONS[k] for k, _ in frames],
        echo_times=[MESE_TIMES[e] for _, e in frames],
        series_uid=pydicom.uid.generate_uid(),
        edit=edit,
    )
    return path


def test_t2_echoes_refuses_a_series_that_states_a_gradient_echo(tmp_path: Path) -> None:
    # A multi-echo gradient echo (a T2* map's echoes) decays with T2*: fitted as a spin echo, its
    # T2* was measured as "T2", without a word. The echo count alone cannot tell them
    # apart; the sequence's own tags do.
    from inpaintssl.data.dicom_dataset import dicom_dataset

    def build(series: Path) -> Any:
        cases = {"train": [str(series)]}
        return dicom_dataset(split="train", labelled=False, cases=cases, echo=1, t2_echoes=True)

    for folder, stated in (("gre", "GR"), ("ir_gre", ["IR", "GR"])):
        gre, _ = _mese(tmp_path / folder, tags={"ScanningSequence": stated})
        written = "\\".join(stated) if isinstance(stated, list) else stated
        with pytest.raises(
            DataError,
            match=rf"dicom case '{folder}': t2_echoes fits the 4 echoes of .*{folder} as a multi-echo spin "
            rf"echo, but .*{folder}.*\.dcm states ScanningSequence '{re.escape(written)}' \(a gradient echo, "
            r"no SE\).*T2\*.*expected a multi-echo spin-echo series",
        ):
            build(gre)
    # A spin echo, a hybrid stating both, and a series stating no sequence are fitted.
    for folder, stated in (("se", "SE"), ("grase", ["GR", "SE"]), ("untagged", None)):
        series, _ = _mese(tmp_path / folder, tags=None if stated is None else {"ScanningSequence": stated})
        assert build(series)[0]["echoes"].shape[0] == len(MESE_TIMES)

    def pulse(where: str, value: str) -> Any:
        def edit(ds: Any) -> None:
            if where == "root":
                ds.EchoPulseSequence = value
            else:
                from pydicom.dataset import Dataset
                from pydicom.sequence import Sequence

                timing = Dataset()
                timing.EchoPulseSequence = value
                ds.SharedFunctionalGroupsSequence[0].MRTimingAndRelatedParametersSequence = Sequence([timing])

        return edit

    for where in ("root", "shared"):
        enhanced = _enhanced_mese(tmp_path / f"{where}.dcm", pulse(where, "GRADIENT"))
        tag = (
            "EchoPulseSequence"
            if where == "root"
            else "SharedFunctionalGroupsSequence[0].MRTimingAndRelatedParametersSequence.EchoPulseSequence"
        )
        with pytest.raises(DataError, match=rf"{where}\.dcm states {re.escape(tag)} 'GRADIENT'"):
            build(enhanced)
    for value in ("SPIN", "BOTH"):
        enhanced = _enhanced_mese(tmp_path / f"{value}.dcm", pulse("shared", value))
        assert build(enhanced)[0]["echo_times_ms"].tolist() == list(MESE_TIMES)


def test_each_echo_of_one_enhanced_file_keeps_its_own_decompressed_array(tmp_path: Path) -> None:
    # Both echoes of an Enhanced file are read from one file: under data.cache_dir each must be
    # kept as a file of its own, never the other echo's (their sources once shared one name).
    from inpaintssl.data.decompressed import decompressed_into

    echoes = _echoes(seed=3)
    path = _enhanced(tmp_path / "qdess.dcm", echoes)
    with decompressed_into(tmp_path / "cache"):
        volumes = {echo: DicomVolume(path, echo=echo) for echo in (1, 2)}
        for echo, volume in volumes.items():
            np.testing.assert_array_equal(
                np.stack([volume.read(k) for k in range(SLICES)], axis=-1), _rescaled(echoes[echo - 1])
            )
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
