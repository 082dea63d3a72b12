"""A run's class names and class count as DICOM objects hold them.

A DICOM SEG's ``SegmentLabel`` and an RT Structure Set's ``ROIName`` are of DICOM's VR LO: at most
64 characters, no backslash (the separator between values) and no control characters. Names that
do not fit are refused by both writers, and by ``predict`` before any input is predicted (before
any is read, where the format is asked for by name). A run of more than 255 classes has label maps
of 16 bits, so that class 256 stays class 256 in every format. The objects are read back with
pydicom alone (:func:`dicom_helpers.seg_label_map`).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

import inpaintssl as issl
from dicom_helpers import seg_label_map, slice_planes, write_series
from inpaintssl.inference.predict import PredictionError
from predict_helpers import predict_quietly

pytest.importorskip("highdicom", reason="the dicom-seg extra is not installed")
pydicom = pytest.importorskip("pydicom")

SIZE, SLICES = 32, 3
"""The tiny run's own 32x32 slices, three of them."""


def _scan(folder: Path, seed: int) -> Path:
    from pydicom.uid import generate_uid

    identity = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "PatientID": "ABD-004",
    }
    stored = np.random.default_rng(seed).integers(0, 900, (SLICES, SIZE, SIZE)).astype(np.int16)
    positions = [(0.0, 0.0, 2.0 * k) for k in range(SLICES)]
    return write_series(folder, stored, modality="MR", positions=positions, identity=identity)


def _affine(writer: str, volume: Any) -> dict[str, Any]:
    """The series' affine, which write_rtstruct took before it placed contours by each slice's header."""
    return {} if writer == "dicom_seg" else {"affine": volume.patient_affine}


WHAT = {"dicom_seg": "DICOM SEG", "rtstruct": "RT Structure Set"}

BAD_NAMES = [
    ("x" * 65, "is 65 characters long"),
    ("left\\right kidney", "holds a backslash, which DICOM reads as the separator between two values"),
    ("liver\tsegment 4", "holds the control character '\\t'"),
    ("  ", "is blank"),
]


def _write_box(tmp_path: Path, writer: str, class_names: Any, *, label: int) -> Path:
    """A box of class ``label`` on the tiny series, written by ``writer`` to ``out.dcm``."""
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.dicom_seg import write_dicom_seg
    from inpaintssl.inference.rtstruct import write_rtstruct

    volume = DicomVolume(_scan(tmp_path / "scan", seed=label))
    labels = np.zeros((SIZE, SIZE, SLICES), dtype=np.uint8)
    labels[4:9, 5:12, :] = label
    target = tmp_path / "out.dcm"
    write = write_dicom_seg if writer == "dicom_seg" else write_rtstruct
    write(labels, volume, target, class_names=class_names, **_affine(writer, volume))
    return target


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES, ids=["65-characters", "backslash", "tab", "blank"])
@pytest.mark.parametrize("writer", ["dicom_seg", "rtstruct"])
def test_a_class_name_that_is_no_dicom_lo_value_is_refused_by_the_writer(
    tmp_path: Path, writer: str, name: str, problem: str
) -> None:
    field = "SegmentLabel" if writer == "dicom_seg" else "ROIName"
    expected = re.escape(
        f"write_{writer}: class_names: class 2 of 2, {name!r}, {problem}; the {WHAT[writer]} holds each "
        f"class name as its {field}, a DICOM LO value: expected at most 64 characters, no backslash, no "
        "control characters and not blank"
    )
    with pytest.raises(PredictionError, match=expected):
        _write_box(tmp_path, writer, ("spleen", name), label=2)
    assert not (tmp_path / "out.dcm").exists()


@pytest.mark.parametrize(
    ("class_names", "expected"),
    [
        ((), "expected one name per foreground class (at least one), found none"),
        ("liver", "expected a sequence of class names, found the string 'liver'"),
    ],
    ids=["none", "one-string"],
)
@pytest.mark.parametrize("writer", ["dicom_seg", "rtstruct"])
def test_no_class_names_or_one_string_is_refused_by_the_writer(
    tmp_path: Path, writer: str, class_names: Any, expected: str
) -> None:
    # No names made the DICOM SEG writer fail with an IndexError and the RT writer an object of no
    # ROIs; one string was written as one class per letter.
    with pytest.raises(PredictionError, match=re.escape(f"write_{writer}: class_names: {expected}")):
        _write_box(tmp_path, writer, class_names, label=1)
    assert not (tmp_path / "out.dcm").exists()


@pytest.mark.parametrize("writer", ["dicom_seg", "rtstruct"])
def test_a_class_name_of_64_characters_is_written_whole(tmp_path: Path, writer: str) -> None:
    from inpaintssl.data.dicom import DicomVolume
    from inpaintssl.inference.dicom_seg import write_dicom_seg
    from inpaintssl.inference.rtstruct import write_rtstruct

    volume = DicomVolume(_scan(tmp_path / "scan", seed=2))
    labels = np.zeros((SIZE, SIZE, SLICES), dtype=np.uint8)
    labels[4:9, 5:12, :] = 1
    name = "Gallbladder wall, fundus to neck, including the cystic duct stump"[:64]
    assert len(name) == 64
    target = tmp_path / "out.dcm"
    write = write_dicom_seg if writer == "dicom_seg" else write_rtstruct
    write(labels, volume, target, class_names=(name,), **_affine(writer, volume))
    ds = pydicom.dcmread(target, stop_before_pixels=True)
    written = (
        ds.SegmentSequence[0].SegmentLabel if writer == "dicom_seg" else ds.StructureSetROISequence[0].ROIName
    )
    assert written == name


def _with_class_names(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> list[str]:
    """From now on predict loads the tiny run with ``names`` as its classes' (its network unchanged);
    returns the cases predict_case is called for."""
    module = importlib.import_module("inpaintssl.inference.predict")  # not the function it exports
    real_load, real_predict = module.load_prediction_model, module.predict_case
    predicted: list[str] = []

    def load(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(real_load(*args, **kwargs), class_names=names)

    def counted(item: Any, **kwargs: Any) -> Any:
        predicted.append(item.case)
        return real_predict(item, **kwargs)

    monkeypatch.setattr(module, "load_prediction_model", load)
    monkeypatch.setattr(module, "predict_case", counted)
    return predicted


@pytest.mark.parametrize("output_format", ["dicom_seg", "rtstruct"])
def test_predict_refuses_such_class_names_before_reading_any_input(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output_format: str
) -> None:
    name = "left\\right kidney"
    _with_class_names(monkeypatch, ("disc", name))
    missing = tmp_path / "no-such-series"  # never read: it would be refused as missing
    expected = re.escape(f"{trained_run.run_dir}: class 2 of 2, {name!r}, holds a backslash")
    with pytest.raises(PredictionError, match=expected):
        predict_quietly(trained_run.run_dir, missing, tmp_path / "out", output_format=output_format)
    assert not (tmp_path / "out").exists()


def test_predict_refuses_them_for_the_dicom_inputs_of_output_format_input_before_predicting(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predicted = _with_class_names(monkeypatch, ("disc", "x" * 70))
    scan = _scan(tmp_path / "scan", seed=3)
    volume = tmp_path / "volume.nii.gz"
    image = np.random.default_rng(4).normal(size=(SIZE, SIZE, SLICES)).astype(np.float32)
    nib.Nifti1Image(image, np.eye(4)).to_filename(volume)  # type: ignore[no-untyped-call]
    with pytest.raises(
        PredictionError, match=rf"{trained_run.run_dir}: class 2 of 2, 'x+', is 70 characters long"
    ):
        predict_quietly(trained_run.run_dir, [scan, volume], tmp_path / "out", output_format="input")
    assert predicted == [] and not (tmp_path / "out").exists()
    # A NIfTI label map holds any class name.
    report = predict_quietly(trained_run.run_dir, volume, tmp_path / "out", output_format="input")
    assert [case.segmentation.name for case in report.cases] == ["volume_seg.nii.gz"]


CLASSES = 300
"""More classes than a byte holds."""


class _ManyClasses(torch.nn.Module):
    """A sigmoid head of :data:`CLASSES` classes: class 256 on the left half of every slice, class 300
    on the upper right quarter, none on the lower right quarter; the loaded model's metadata."""

    def __init__(self, loaded: Any) -> None:
        super().__init__()
        self.inference_meta = loaded.inference_meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        logits = torch.full((n, CLASSES, height, width), -10.0)
        logits[:, 255, :, : width // 2] = 10.0
        logits[:, 299, : height // 2, width // 2 :] = 10.0
        return logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


def test_a_run_of_more_than_255_classes_keeps_every_class_number(
    trained_run: issl.FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module("inpaintssl.inference.predict")
    real_load = module.load_prediction_model

    def load(*args: Any, **kwargs: Any) -> Any:
        model = real_load(*args, **kwargs)
        assert model.activation == "sigmoid"
        names = tuple(f"structure {k + 1}" for k in range(CLASSES))
        return dataclasses.replace(model, module=_ManyClasses(model.module), class_names=names)

    monkeypatch.setattr(module, "load_prediction_model", load)
    scan = _scan(tmp_path / "scan", seed=5)
    # Per slice: half the pixels class 256, a quarter class 300, a quarter background (however
    # the run turns its slices, the shares stay).
    expected = {0: SIZE * SIZE // 4, 256: SIZE * SIZE // 2, 300: SIZE * SIZE // 4}

    nifti = predict_quietly(trained_run.run_dir, scan, tmp_path / "nifti")
    image: Any = nib.load(nifti.cases[0].segmentation)
    labels = np.asarray(image.dataobj)
    assert image.get_data_dtype() == np.uint16
    for k in range(SLICES):
        values, counts = np.unique(labels[:, :, k], return_counts=True)
        assert dict(zip(values.tolist(), counts.tolist())) == expected, k

    seg = predict_quietly(
        trained_run.run_dir, scan, tmp_path / "seg", output_format="dicom_seg", dicom_seg_type="labelmap"
    )
    decoded, _ = seg_label_map(seg.cases[0].segmentation, slice_planes(sorted(scan.iterdir())), labels.shape)
    assert np.array_equal(decoded, labels)
    ds = pydicom.dcmread(seg.cases[0].segmentation)
    assert int(ds.BitsAllocated) == 16
    # Its palette (16-bit entries: more than an 8-bit palette's 256) shows each class in its colour.
    from pydicom.pixels import apply_color_lut

    from inpaintssl.inference.dicom_seg import class_colours

    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    shown = np.asarray(apply_color_lut(frames, ds))
    assert shown.dtype == np.uint16
    palette = np.array([(0, 0, 0), *class_colours(CLASSES)]) * 257
    np.testing.assert_array_equal(shown, palette[frames])
