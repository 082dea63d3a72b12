"""Compressed DICOM series: JPEG Lossless, JPEG-LS, JPEG 2000 and RLE, as PACS archives export them.

The expectation is the pixels written before compression (every syntax here is lossless), and the
same series written uncompressed. Files are compressed by pydicom's RLE encoder and by GDCM's
encoders (``python-gdcm``, the ``dicom-compressed`` extra, which also decodes them); a decoder
that is missing is made so in a child process that cannot import any (GDCM, Pillow, pylibjpeg).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom_helpers import HTJ2K_LOSSLESS, compress_dicom, write_enhanced, write_series
from inpaintssl.data.base import DataError
from inpaintssl.data.decompressed import decompressed_into
from inpaintssl.data.dicom import DicomVolume
from inpaintssl.data.dicom_pixels import COMPRESSED_EXTRA, HTJ2K_EXTRA, what_decodes

pydicom = pytest.importorskip("pydicom")

ROWS, COLUMNS, SLICES = 24, 20, 4  # GDCM's JPEG 2000 encoder needs frames of about 16x16 or more
POSITIONS = [(-30.0, 12.0, 2.5 * k) for k in range(SLICES)]
RESCALE = (1.0, -1024.0)
RLE = "1.2.840.10008.1.2.5"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"  # JPEG Lossless, first-order prediction
SYNTAXES = {
    "rle": RLE,
    "jpeg-lossless": "1.2.840.10008.1.2.4.57",
    "jpeg-lossless-sv1": JPEG_LOSSLESS_SV1,
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "jpeg-2000": "1.2.840.10008.1.2.4.90",
    "htj2k": HTJ2K_LOSSLESS,
}


def _stored(seed: int = 0) -> np.ndarray:
    """``(slices, rows, columns)`` int16 CT values as stored: air to bone, negative ones included."""
    return np.random.default_rng(seed).integers(-1024, 2500, (SLICES, ROWS, COLUMNS)).astype(np.int16)


def _hu(stored: np.ndarray) -> np.ndarray:
    return np.moveaxis(stored.astype(np.float64) * RESCALE[0] + RESCALE[1], 0, -1)


def _write(path: Path, stored: np.ndarray, *, layout: str) -> Path:
    """The series uncompressed: a folder of single-frame files, or one Enhanced CT file.

    With its SeriesInstanceUID: GDCM's writer gives a file without one a new UID of its own.
    """
    uid = pydicom.uid.generate_uid()
    if layout == "classic":
        return write_series(
            path,
            stored,
            modality="CT",
            positions=POSITIONS,
            rescale=[RESCALE] * SLICES,
            identity={"SeriesInstanceUID": uid},
        )
    write_enhanced(
        path, stored, modality="CT", positions=POSITIONS, rescale=[RESCALE] * SLICES, series_uid=uid
    )
    return path


def _compressed(path: Path, syntax: str) -> Path:
    for f in sorted(path.glob("*.dcm")) if path.is_dir() else [path]:
        compress_dicom(f, syntax)
    return path


def _all_slices(volume: DicomVolume) -> np.ndarray:
    return np.stack([volume.read(k) for k in range(volume.num_slices)], axis=-1)


@pytest.mark.parametrize("layout", ["classic", "enhanced"])
@pytest.mark.parametrize("syntax", SYNTAXES.values(), ids=SYNTAXES.keys())
def test_a_compressed_series_reads_the_values_it_was_written_with(
    tmp_path: Path, syntax: str, layout: str
) -> None:
    stored = _stored()
    suffix = "" if layout == "classic" else ".dcm"
    plain = DicomVolume(_write(tmp_path / f"plain{suffix}", stored, layout=layout))
    path = _compressed(_write(tmp_path / f"packed{suffix}", stored, layout=layout), syntax)
    files = sorted(path.glob("*.dcm")) if path.is_dir() else [path]
    assert {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files} == {
        syntax
    }
    volume = DicomVolume(path)
    assert volume.compressed and not plain.compressed
    np.testing.assert_array_equal(_all_slices(volume), _hu(stored))
    assert volume.spacing == plain.spacing
    assert volume.patient_affine is not None and plain.patient_affine is not None
    np.testing.assert_array_equal(volume.patient_affine, plain.patient_affine)
    # Across the slices (the whole series decoded at once): the same values.
    volume.reorient("LAS", slice_axis=0)
    np.testing.assert_array_equal(volume.read(3), _hu(stored)[:, 3, :][::-1])


@pytest.mark.parametrize("layout", ["classic", "enhanced"])
def test_under_a_cache_folder_a_compressed_series_is_decoded_once_for_every_later_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    stored = _stored(seed=1)
    suffix = "" if layout == "classic" else ".dcm"
    path = _compressed(_write(tmp_path / f"packed{suffix}", stored, layout=layout), JPEG_LOSSLESS_SV1)
    plain = _write(tmp_path / f"plain{suffix}", stored, layout=layout)
    cache = tmp_path / "cache"
    with decompressed_into(cache):
        np.testing.assert_array_equal(_all_slices(DicomVolume(path)), _hu(stored))
        if layout == "classic":
            # An uncompressed series of single-frame files is read slice by slice, as before: no copy.
            np.testing.assert_array_equal(_all_slices(DicomVolume(plain)), _hu(stored))
    assert len(list(cache.glob("*.npy"))) == 1

    def no_decoding(self: Any) -> Any:
        raise AssertionError(f"{self.filename} decoded again")

    # Another process (a DataLoader worker, the next run of a study) opens the series: its headers
    # are read, its pixels never decoded again.
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    with decompressed_into(cache):
        again = DicomVolume(path)
    np.testing.assert_array_equal(_all_slices(again), _hu(stored))
    with pytest.raises(DataError, match="decoded again"):
        _all_slices(DicomVolume(path))  # without the folder each read decodes its slice


def test_the_ct_dataset_reads_a_compressed_series_under_a_cache_folder_as_the_plain_one(
    tmp_path: Path,
) -> None:
    from inpaintssl.data.ct import ct_dataset

    stored = _stored(seed=2)
    packed = _compressed(_write(tmp_path / "packed", stored, layout="classic"), "1.2.840.10008.1.2.4.90")
    plain = _write(tmp_path / "plain", stored, layout="classic")
    common: dict[str, Any] = {"split": "train", "labelled": False, "orientation": "RAS"}
    with decompressed_into(tmp_path / "cache"):
        mine = ct_dataset(cases={"train": [str(packed)]}, **common)
        theirs = ct_dataset(cases={"train": [str(plain)]}, **common)
        assert len(mine) == len(theirs) == SLICES
        for k in range(SLICES):
            for key in ("image", "hu"):
                assert np.array_equal(mine[k][key].numpy(), theirs[k][key].numpy())


_WITHOUT_DECODERS = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoDecoders(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"gdcm", "PIL", "pylibjpeg", "openjpeg", "libjpeg", "jpeg_ls", "rle"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoDecoders())
    from inpaintssl.data.base import DataError
    from inpaintssl.data.dicom import DicomVolume

    found = {}
    for path in sys.argv[1:]:
        volume = DicomVolume(path)  # the headers read without a decoder
        try:
            volume.read(0)
            found[path] = [volume.compressed, None]
        except DataError as exc:
            found[path] = [volume.compressed, str(exc)]
    print(json.dumps(found))
    """
)


def test_without_a_decoder_a_compressed_series_is_refused_naming_its_syntax_and_what_to_install(
    tmp_path: Path,
) -> None:
    stored = _stored(seed=3)
    sv1 = _compressed(_write(tmp_path / "sv1", stored, layout="classic"), JPEG_LOSSLESS_SV1)
    j2k = _compressed(_write(tmp_path / "j2k.dcm", stored, layout="enhanced"), "1.2.840.10008.1.2.4.90")
    rle = _compressed(_write(tmp_path / "rle", stored, layout="classic"), RLE)
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DECODERS, str(sv1), str(j2k), str(rle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    first_slice = min(sv1.glob("*.dcm"), key=lambda f: int(f.stem.removeprefix("im")))
    for path, file, name in [
        (sv1, first_slice, "JPEG Lossless, Non-Hierarchical, First-Order Prediction"),
        (j2k, j2k, "JPEG 2000 Image Compression (Lossless Only)"),
    ]:
        compressed, message = found[str(path)]
        assert compressed
        assert message.startswith(f"DICOM file {file} cannot be read: its pixel data is compressed as {name}")
        syntax = str(pydicom.dcmread(file, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        assert f"(TransferSyntaxUID {syntax})" in message
        assert f'pip install "inpaintssl[{COMPRESSED_EXTRA}]"' in message and "python-gdcm" in message
    assert found[str(rle)] == [True, None]  # pydicom decodes RLE itself


def test_an_htj2k_series_without_its_decoder_names_the_extra_that_decodes_it(tmp_path: Path) -> None:
    # GDCM decodes no High-Throughput JPEG 2000: the dicom-compressed extra is not the answer there.
    if int(pydicom.__version__.split(".")[0]) < 3:
        pytest.skip("pydicom 2 knows no High-Throughput JPEG 2000: it decodes no such file")
    stored = _stored(seed=4)
    htj2k = _compressed(_write(tmp_path / "htj2k", stored, layout="classic"), HTJ2K_LOSSLESS)
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DECODERS, str(htj2k)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    compressed, message = json.loads(done.stdout.splitlines()[-1])[str(htj2k)]
    assert compressed
    assert f"(TransferSyntaxUID {HTJ2K_LOSSLESS}), and no installed decoder reads it" in message
    assert what_decodes(HTJ2K_LOSSLESS) in message
    assert f'pip install "inpaintssl[{HTJ2K_EXTRA}]"' in message and COMPRESSED_EXTRA not in message
    # With its decoder, this process's: the values written.
    np.testing.assert_array_equal(_all_slices(DicomVolume(htj2k)), _hu(stored))


def test_damaged_compressed_data_with_a_decoder_installed_is_refused_in_the_decoders_words(
    tmp_path: Path,
) -> None:
    from pydicom.encaps import encapsulate

    pytest.importorskip("gdcm")
    folder = _write(tmp_path / "cut", _stored(seed=5), layout="classic")
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = JPEG_LOSSLESS_SV1
        ds.PixelData = encapsulate([b"\x00" * 40])  # no JPEG data (GDCM before 3.0.25 read it as pixels)
        ds["PixelData"].VR = "OB"
        ds.save_as(f)
    with pytest.raises(DataError, match=r"cannot be read: ") as caught:
        DicomVolume(folder).read(0)
    assert "pip install" not in str(caught.value)  # a decoder is there: the data is what is wrong


def test_the_benchmark_runs_and_reads_every_arm_as_the_uncompressed_series(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    pytest.importorskip("gdcm", reason="the benchmark compresses with GDCM")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    record = importlib.import_module("bench_dicom_compressed").main(
        ["--quick", "--repeats", "1", "--epochs", "2"]
    )  # raises if an arm reads other values
    capsys.readouterr()  # the JSON record it prints
    assert [e["source"] for e in record["entries"]] == [
        "uncompressed",
        "jpeg_lossless",
        "jpeg_lossless_cached",
        "jpeg2000",
        "jpeg2000_cached",
    ]
    sizes = record["series_bytes"]
    assert sizes["jpeg_lossless"] < sizes["uncompressed"] and sizes["jpeg2000"] < sizes["uncompressed"]
    assert all(e["first_epoch_s"] > 0 and e["later_epoch_s"] > 0 for e in record["entries"])
    assert isinstance(record["target_met"], bool)
