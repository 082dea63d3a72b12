"""Bad-input cases of issue 16 (reliability, second round): data.

Cases register themselves into :data:`corpus.CASES` through :func:`corpus._case`; corpus.py
imports this module at its end, so every name it defines above is available here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import h5py
import nibabel as nib
import numpy as np
from corpus import (
    _CLASSES,
    Call,
    CommandLineError,
    _case,
    _cli,
    _config,
    _h5_data,
    _image,
    _label,
    _pretrain_config,
    _volume_data,
    _write_nifti,
)

import inpaintssl as issl
from inpaintssl.data import DataError
from inpaintssl.registry import DATASETS
from inpaintssl.training.memory_check import InsufficientMemoryError

# The device's free memory as the checks see it, fixed so the message is the same on every machine.
_FREE = 2 * 2**30


def _truncate(path: Path, *, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _with_free_memory(call: Call) -> Call:
    def run() -> object:
        with mock.patch(
            "inpaintssl.training.memory_check.available_memory", return_value=(_FREE, "this CPU")
        ):
            return call()

    return run


def _nifti_data_with_a_larger_train_pair(folder: Path) -> dict[str, Any]:
    """NIfTI volumes per split, the train pair 64x64x8: its compressed data runs well past what a
    header read decompresses, so damage there shows only when the voxels are read."""
    return _volume_data(
        folder,
        "nifti",
        ".nii.gz",
        _write_nifti,
        train_image=_image(0, (64, 64, 8)),
        train_label=_label(0, (64, 64, 8)),
    )


def _nifti_pair(folder: Path, *, label_affine: np.ndarray) -> dict[str, Any]:
    """NIfTI volumes per split; the train label written with ``label_affine``."""
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    nib.save(nib.Nifti1Image(_label(0), label_affine), folder / "train_seg.nii.gz")  # type: ignore[no-untyped-call]
    return data


@_case(
    "data-nifti-image-truncated",
    "data",
    DataError,
    r"NIfTI file .*train\.nii\.gz cannot be read at slice 0",
    r"truncated or corrupt data",
    r"EOFError",
)
def _nifti_image_truncated(folder: Path) -> Call:
    """A ``.nii.gz`` image cut short (an interrupted download): its header reads, its voxels do not."""
    data = _nifti_data_with_a_larger_train_pair(folder)
    _truncate(folder / "train.nii.gz", keep=0.6)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-nifti-label-truncated",
    "data",
    DataError,
    r"NIfTI file .*val_seg\.nii\.gz cannot be read at slice 0",
    r"truncated or corrupt data",
)
def _nifti_label_truncated(folder: Path) -> Call:
    """A ``.nii.gz`` label of the validation split cut short."""
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    _write_nifti(folder / "val_seg.nii.gz", _label(1, (64, 64, 8)))
    _write_nifti(folder / "val.nii.gz", _image(1, (64, 64, 8)))
    _truncate(folder / "val_seg.nii.gz", keep=0.5)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-nifti-image-wrong-crc",
    "data",
    DataError,
    r"NIfTI file .*train\.nii\.gz cannot be read at slice 0",
    r"truncated or corrupt data",
    r"incorrect data check",
)
def _nifti_image_wrong_crc(folder: Path) -> Call:
    """A ``.nii.gz`` image whose gzip CRC does not match (a flipped bit in a copy): every voxel
    still decompresses to a value, so only the CRC tells."""
    data = _nifti_data_with_a_larger_train_pair(folder)
    path = folder / "train.nii.gz"
    damaged = bytearray(path.read_bytes())
    damaged[-6] ^= 0x01  # in the trailer's CRC-32
    path.write_bytes(bytes(damaged))
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-nifti-uncompressed-named-gz",
    "data",
    DataError,
    r"NIfTI file .*train\.nii\.gz is not gzip-compressed: rename it to \.nii$",
)
def _nifti_uncompressed_named_gz(folder: Path) -> Call:
    """An uncompressed NIfTI saved under a ``.nii.gz`` name (a converter that does not compress):
    "not a gzip file" alone leaves the user to guess that the file itself is sound."""
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    nib.save(nib.Nifti1Image(_image(0), np.eye(4)), folder / "train.nii")  # type: ignore[no-untyped-call]
    (folder / "train.nii").replace(folder / "train.nii.gz")
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-dicom-enhanced-two-time-points",
    "data",
    DataError,
    r"DICOM file .*perfusion\.dcm holds frames 1 and 3 both at 0 mm along the slice normal",
    r"expected one frame per position: a multi-frame file of several echoes, time points or stacks",
    r"split it into one series per volume first \(e\.g\. dcm2niix\)",
)
def _dicom_enhanced_two_time_points(folder: Path) -> Call:
    """An Enhanced CT of two time points at the same two positions (a perfusion scan): stacked as
    one volume, each position would hold two slices, a volume of twice the slices."""
    from dicom_helpers import write_enhanced

    frames = np.random.default_rng(0).integers(0, 1000, size=(4, 16, 16))
    positions = [(0.0, 0.0, 0.0), (0.0, 0.0, 2.5)]
    write_enhanced(
        folder / "perfusion.dcm", frames, modality="CT", positions=positions * 2, rescale=[(1.0, -1024.0)] * 4
    )
    cases = "perfusion.dcm"
    return lambda: DATASETS.build("ct", split="unlabelled", labelled=False, cases=cases, root=folder)


@_case(
    "data-dicom-seg-as-image",
    "data",
    DataError,
    r"DICOM file .*labels\.dcm is a Segmentation \(SEG\): label maps of another series, not an image",
    r"the ct dataset reads a SEG as the label of the DICOM series it segments",
)
def _dicom_seg_as_image(folder: Path) -> Call:
    """A DICOM SEG (as OHIF or 3D Slicer save annotations) given as a CT case's image, its series
    forgotten: read as a series, its frames (one per segment and slice) would repeat positions, a
    message about echoes."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from dicom_helpers import save_dicom, single_frame_dataset

    seg = single_frame_dataset(
        sop_class="1.2.840.10008.5.1.4.1.1.66.4", modality="SEG", shape=(16, 16), signed=False
    )
    seg.NumberOfFrames = 2
    seg.PerFrameFunctionalGroupsSequence = Sequence([Dataset(), Dataset()])
    seg.PixelData = np.zeros((2, 16, 16), "<u2").tobytes()
    save_dicom(seg, folder / "labels.dcm")
    cases = {"unlabelled": [str(folder / "labels.dcm")]}
    return lambda: DATASETS.build("ct", split="unlabelled", labelled=False, cases=cases)


@_case(
    "data-rtstruct-classes-not-its-rois",
    "data",
    DataError,
    r"DICOM RTSTRUCT .*rtstruct\.dcm has no ROI named 'muscle' \(its ROIs: 1 'Liver', 2 'Spleen'\)",
    r"expected an ROI of each class's name .* name the classes as the ROIs",
)
def _rtstruct_classes_not_its_rois(folder: Path) -> Call:
    """An RT Structure Set of liver and spleen contours as a CT case's label, class_names left at the
    default body-composition classes: filled by ROI number, liver would train as muscle."""
    from dicom_helpers import write_rtstruct, write_series

    stored = np.full((2, 16, 16), 1024, dtype=np.int16)
    stored[:, 0, 0] = 24
    write_series(
        folder / "series",
        stored,
        modality="CT",
        positions=[(0.0, 0.0, 0.0), (0.0, 0.0, 2.5)],
        rescale=[(1.0, -1024.0)] * 2,
    )
    square = np.array([(2.0, 2.0, 0.0), (2.0, 5.0, 0.0), (5.0, 5.0, 0.0), (5.0, 2.0, 0.0)])
    contours = [{"points": square}]
    write_rtstruct(folder / "rtstruct.dcm", [(1, "Liver", contours), (2, "Spleen", [])])
    cases = {"train": [{"image": str(folder / "series"), "label": str(folder / "rtstruct.dcm")}]}
    return lambda: DATASETS.build("ct", split="train", cases=cases)


@_case(
    "data-dicom-dataset-given-nifti",
    "data",
    DataError,
    r"dicom case 'knee': image .*knee\.nii\.gz is read as NiftiVolume, not a DICOM series",
    r"use the nifti, metaimage or nrrd dataset for those formats",
)
def _dicom_dataset_given_nifti(folder: Path) -> Call:
    """A NIfTI converted from a series, listed in a config that still says dataset: dicom: read as
    DICOM, it would be "not a DICOM file (a web page or text saved under a .dcm name?)", pointing
    nowhere near the dataset to use."""
    _write_nifti(folder / "knee.nii.gz", _image(0))
    cases = {"train": [str(folder / "knee.nii.gz")]}
    return lambda: DATASETS.build("dicom", split="train", labelled=False, cases=cases)


@_case(
    "data-dicom-two-echoes-as-one-volume",
    "data",
    DataError,
    r"DICOM series folder .*qdess holds 2 echoes \(EchoTime 6, 34\.5 ms\) at the same slice positions",
    r"choose an echo with echo=1 to 2 .*data\.params\.echo",
)
def _dicom_two_echoes_as_one_volume(folder: Path) -> Call:
    """The scanner's qDESS series, both echoes at every position, given to the dicom dataset without
    an echo: it was refused as "two slices at one position", which says nothing of echoes or of
    the option that reads one (or both combined)."""
    from dicom_helpers import write_single_frame

    (folder / "qdess").mkdir()
    for echo, te in enumerate((6.0, 34.5)):
        for k in range(2):
            write_single_frame(
                folder / "qdess" / f"IM{echo}{k}.dcm",
                np.full((16, 16), 100 * (echo + 1), dtype=np.int16),
                modality="MR",
                position=(0.0, 0.0, 1.5 * k),
                instance=2 * echo + k + 1,
                identity={"EchoTime": f"{te:g}", "EchoNumbers": echo + 1},
            )
    cases = {"train": [str(folder / "qdess")]}
    return lambda: DATASETS.build("dicom", split="train", labelled=False, cases=cases)


@_case(
    "data-dicom-series-not-in-study",
    "data",
    DataError,
    r"DICOM folder .*study holds no series 'SAG T2 MAP' \(by SeriesInstanceUID or SeriesDescription\)",
    r"it holds SeriesInstanceUID .* \(SeriesDescription 'AX T1', SeriesNumber 3\): 2 file\(s\)",
)
def _dicom_series_not_in_study(folder: Path) -> Call:
    """A study folder as a PACS exports it (a folder per series) and the dicom dataset told to read a
    series by a description the study does not hold (another site's protocol name): the message
    lists what the study holds, so the right name can be given."""
    from dicom_helpers import write_single_frame

    (folder / "study" / "SE0003").mkdir(parents=True)
    for k in range(2):
        write_single_frame(
            folder / "study" / "SE0003" / f"IM{k}",
            np.full((16, 16), 100, dtype=np.int16),
            modality="MR",
            position=(0.0, 0.0, 1.5 * k),
            instance=k + 1,
            identity={"SeriesInstanceUID": "1.2.3.4", "SeriesDescription": "AX T1", "SeriesNumber": 3},
        )
    cases = {"train": [str(folder / "study")]}
    return lambda: DATASETS.build("dicom", split="train", labelled=False, cases=cases, series="SAG T2 MAP")


@_case(
    "data-h5-truncated-tail",
    "data",
    DataError,
    r"HDF5 file .*test\.h5 cannot be opened",
    r"truncated",
)
def _h5_truncated_tail(folder: Path) -> Call:
    """An HDF5 test file missing only its last kilobyte."""
    data = _h5_data(folder)
    path = folder / "test.h5"
    path.write_bytes(path.read_bytes()[:-1024])
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-nan-in-val-image",
    "data",
    DataError,
    r"val\.nii\.gz slice 2: 1 NaN/Inf value\(s\)",
    "expected finite intensities",
)
def _nan_in_val_image(folder: Path) -> Call:
    """A NaN voxel in the last slice of a validation image, found before the first training step."""
    image = _image(1)
    image[0, 0, 2] = np.nan
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    _write_nifti(folder / "val.nii.gz", image)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-inf-in-label",
    "data",
    DataError,
    r"label .*test_seg\.npy slice 1: label holds 1 NaN/Inf value\(s\)",
    "expected integer class values",
)
def _inf_in_label(folder: Path) -> Call:
    """An infinite value in a float label volume of the test split."""
    data = _volume_data(folder, "numpy", ".npy", np.save)
    label = _label(2).astype(np.float32)
    label[4, 4, 1] = np.inf
    np.save(folder / "test_seg.npy", label)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-empty-volume",
    "data",
    DataError,
    r"NIfTI file .*val\.nii\.gz: array has shape \(16, 16, 0\), an empty axis",
    "expected at least one voxel along every axis",
)
def _empty_volume(folder: Path) -> Call:
    """A validation image with zero slices (an export that wrote the header only)."""
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    _write_nifti(folder / "val.nii.gz", np.zeros((16, 16, 0), np.float32))
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-label-affine-mismatch",
    "data",
    DataError,
    r"label .*train_seg\.nii\.gz has affine .* but image .*train\.nii\.gz has",
    r"largest difference 12 mm",
    "expected the same voxel-to-world mapping",
)
def _label_affine_mismatch(folder: Path) -> Call:
    """A label volume whose origin is 12 mm away from its image's (exported from another frame)."""
    shifted = np.eye(4)
    shifted[0, 3] = 12.0
    data = _nifti_pair(folder, label_affine=shifted)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-label-spacing-mismatch",
    "data",
    DataError,
    r"label .*train_seg\.nii\.gz has voxel spacing \(1, 1, 2\.5\) mm",
    r"but image .*train\.nii\.gz has \(1, 1, 1\) mm",
    "was the label resampled",
)
def _label_spacing_mismatch(folder: Path) -> Call:
    """A label volume with 2.5 mm slices on an image with 1 mm slices (same voxel counts)."""
    data = _nifti_pair(folder, label_affine=np.diag([1.0, 1.0, 2.5, 1.0]))
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-val-label-out-of-range",
    "data",
    DataError,
    r"label .*val_seg\.nii\.gz slice 1: label values \[3\] are out of range",
    r"expected 0 \(background\) or one of \[1, 2\]",
)
def _val_label_out_of_range(folder: Path) -> Call:
    """A validation label with a third class (3) where ``class_names`` lists two."""
    label = _label(1)
    label[2, 2, 1] = len(_CLASSES) + 1
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    _write_nifti(folder / "val_seg.nii.gz", label)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-test-label-not-integer",
    "data",
    DataError,
    r"label .*test_seg\.npy slice 0: label holds non-integer values",
)
def _test_label_not_integer(folder: Path) -> Call:
    """A float test label holding 1.5 (a mask resampled with linear interpolation)."""
    data = _volume_data(folder, "numpy", ".npy", np.save)
    label = _label(2).astype(np.float32)
    label[8, 8, 0] = 1.5
    np.save(folder / "test_seg.npy", label)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-h5-nan-in-unread-slice",
    "data",
    DataError,
    r"train\.h5 \(dataset 'image'\) slice 2: 1 NaN/Inf value\(s\)",
)
def _h5_nan_late_slice(folder: Path) -> Call:
    """A NaN voxel in the last slice of an HDF5 image used for pretraining."""
    data = _h5_data(folder)
    with h5py.File(folder / "train.h5", "r+") as handle:
        handle["image"][5, 5, 2] = np.nan
    return lambda: issl.pretrain(_pretrain_config(folder, data=data))


@_case(
    "runtime-image-size-too-large",
    "runtime",
    InsufficientMemoryError,
    r"data\.image_size=\[65536, 65536\] with optim\.batch_size=4 needs about \S+ TiB for training",
    r"this CPU has 2\.0 GiB available",
    r"Lower data\.image_size or optim\.batch_size",
)
def _image_size_too_large(folder: Path) -> Call:
    """``data.image_size=[65536, 65536]``, whose activations no machine holds (17 GB per slice alone)."""
    data = {"image_size": [65536, 65536]}
    return _with_free_memory(lambda: issl.pretrain(_pretrain_config(folder, data=data)))


@_case(
    "runtime-batch-too-large",
    "runtime",
    InsufficientMemoryError,
    r"data\.image_size=\[1024, 1024\] with optim\.batch_size=64 needs about \d+ GiB for training",
    r"this CPU has 2\.0 GiB available",
)
def _batch_too_large(folder: Path) -> Call:
    """A batch of 64 slices of 1024x1024 on a device with 2 GiB free."""
    data = {
        "image_size": [1024, 1024],
        "params": {"num_images": 64, "num_val": 2, "num_test": 2, "size": [16, 16]},
    }
    return _with_free_memory(lambda: issl.finetune(_config(folder, data=data, optim={"batch_size": 64})))


@_case(
    "data-orientation-not-axis-codes",
    "data",
    DataError,
    r"nifti: orientation='RAR' is invalid",
    r"expected three letters, one from each of R/L, A/P and S/I",
)
def _orientation_not_axis_codes(folder: Path) -> Call:
    """``data.params.orientation: RAR``, which names the left-right axis twice and no front-back one."""
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    data["params"]["orientation"] = "RAR"
    return lambda: issl.finetune(_config(folder, data=data))


def _write_uncoded_nifti(path: Path, array: np.ndarray) -> None:
    """A NIfTI file with sform_code and qform_code 0: no statement of how it lies in the patient."""
    nib.save(nib.Nifti1Image(array, None), path)


@_case(
    "data-orientation-of-a-2d-slice",
    "data",
    DataError,
    r"NIfTI file .*train\.nii\.gz cannot be reoriented to RAS: it states no orientation",
    r"a voxel-to-world affine is needed: NIfTI with sform_code or qform_code above 0, a 2D slice too",
)
def _orientation_of_a_2d_slice(folder: Path) -> Call:
    """``data.params.orientation: RAS`` over 2D slices without sform or qform (coded ones are turned)."""
    data = _volume_data(
        folder,
        "nifti",
        ".nii.gz",
        _write_uncoded_nifti,
        train_image=_image(0, (16, 16)),
        train_label=_label(0, (16, 16)),
    )
    data["params"]["orientation"] = "RAS"
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-cache-dir-is-a-file",
    "data",
    DataError,
    r"data\.cache_dir='.*decompressed' is a file",
    r"expected a folder for the decompressed volumes",
)
def _cache_dir_is_a_file(folder: Path) -> Call:
    """``data.cache_dir`` naming an existing file, not a folder for the decompressed volumes."""
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    (folder / "decompressed").write_text("a file of the user's")
    data["cache_dir"] = str(folder / "decompressed")
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-cache-prune-without-a-limit",
    "data",
    CommandLineError,
    r"^exit status 2: inpaintssl cache: error:",
    r"give --stale, --unused-for, --max-size or several; found none",
)
def _cache_prune_without_a_limit(folder: Path) -> Call:
    """``inpaintssl cache prune FOLDER`` with none of ``--stale``, ``--unused-for`` and ``--max-size``."""
    (folder / "cache").mkdir()
    return lambda: _cli("cache", "prune", str(folder / "cache"))


@_case(
    "data-cache-folder-missing",
    "data",
    CommandLineError,
    r"^exit status 2: inpaintssl cache: error:",
    r"decompressed: expected a data\.cache_dir folder; found nothing there",
)
def _cache_folder_missing(folder: Path) -> Call:
    """``inpaintssl cache info`` given a folder that does not exist."""
    return lambda: _cli("cache", "info", str(folder / "decompressed"))
