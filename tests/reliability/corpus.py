"""The bad-input corpus: every malformed input a user can bring, and the error it must produce.

Issue 9 asks that malformed configs, data files and checkpoints fail at the door with a message
naming what is wrong and where, never hang, and never leave partial output that looks complete.
Each :class:`BadInputCase` here builds one malformed input with the real libraries (h5py,
nibabel, pydicom, Pillow, safetensors, torch, YAML) and calls the public entry point a user would
call (:func:`inpaintssl.pretrain`, :func:`inpaintssl.finetune`, :func:`inpaintssl.evaluate`,
:func:`inpaintssl.transfer`, :func:`~inpaintssl.config.load_config`,
:func:`~inpaintssl.checkpoint.load_checkpoint`, the ``inpaintssl`` command line, a registered
dataset, ...).

``tests/reliability/test_reliability_bad_inputs.py`` runs every case; ``render_table.py`` next to
it turns the corpus into ``docs/reliability.rst``. This module is plain Python (no pytest) so the
docs tooling can import it.

Training cases stay tiny (16x16 ``synthetic`` slices, ``model.params={depth: 2, base_width: 4}``,
one epoch), so each case runs in well under two seconds on a CPU.

Example:
    >>> len(CASES) >= 30, sorted({case.category for case in CASES})
    (True, ['checkpoint', 'config', 'data', 'runtime'])
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import inspect
import io
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import h5py
import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from safetensors.torch import save_file

import inpaintssl as issl
from inpaintssl.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from inpaintssl.cli import main as cli_main
from inpaintssl.config import ConfigError, DataConfig, PretrainConfig, load_config
from inpaintssl.data import DataError, SplitRecord, build_datasets
from inpaintssl.registry import BACKBONES, DATASETS
from inpaintssl.studies.spec import load_spec
from inpaintssl.training.context import RunFolderInUseError
from inpaintssl.training.loop import NonFiniteLossError

__all__ = ["CASES", "BadInputCase", "Category", "CommandLineError"]

Category = Literal["config", "data", "checkpoint", "runtime"]
Call = Callable[[], object]


@dataclass(frozen=True)
class BadInputCase:
    """One malformed input and the error it must raise.

    Attributes:
        id: Stable, unique name (``<category>-<what>``).
        category: ``config``, ``data``, ``checkpoint`` or ``runtime``.
        description: What is malformed, in one sentence.
        build: Writes the malformed input into a folder and returns the user's call; split from
            the call so a test can snapshot the folder in between.
        error: The exact exception type raised.
        match: Regular expressions the message must all match (``re.search``): what is wrong,
            where (file, field path or argument), and what was expected or found.
        warns: Regular expressions of the warnings (``UserWarning``) the call gives before it fails, each
            matched (``re.search``) by one of them; a warning it gives but does not list here shows
            in pytest's warnings summary.
    """

    id: str
    category: Category
    description: str
    build: Callable[[Path], Call]
    error: type[BaseException]
    match: tuple[str, ...]
    warns: tuple[str, ...] = ()

    def trigger(self, folder: Path) -> None:
        """Build the malformed input in ``folder`` and make the call that must fail."""
        self.build(folder)()


CASES: list[BadInputCase] = []


def _case(
    id: str, category: Category, error: type[BaseException], *match: str, warns: tuple[str, ...] = ()
) -> Callable[[Callable[[Path], Call]], Callable[[Path], Call]]:
    """Register a builder; its docstring is the case's description."""

    def register(build: Callable[[Path], Call]) -> Callable[[Path], Call]:
        description = inspect.getdoc(build)
        if not description:
            raise ValueError(f"bad-input case {id!r}: its builder needs a docstring saying what is malformed")
        if any(existing.id == id for existing in CASES):
            raise ValueError(f"bad-input case id {id!r} is used twice")
        CASES.append(BadInputCase(id, category, " ".join(description.split()), build, error, match, warns))
        return build

    return register


class CommandLineError(Exception):
    """The ``inpaintssl`` command exited with a non-zero status; the message is its stderr."""


# -- building blocks ---------------------------------------------------------------------------

_SHAPE = (16, 16, 3)
_CLASSES = ["disc", "square"]


def _config(folder: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A tiny run on 16x16 synthetic slices; ``sections`` update the defaults section by section."""
    config: dict[str, Any] = {
        "data": {
            "dataset": "synthetic",
            "params": {"num_images": 8, "num_val": 2, "num_test": 2, "size": [16, 16]},
        },
        "model": {"params": {"depth": 2, "base_width": 4}},
        "optim": {"max_epochs": 1, "batch_size": 4},
        "run": {"output_dir": str(folder / "run"), "device": "cpu", "quiet": True},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def _pretrain_config(folder: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    pretext = {"patch_size": 4, "bank_size": 4, "sampler": "random", **sections.pop("pretext", {})}
    return _config(folder, pretext=pretext, **sections)


def _image(seed: int, shape: tuple[int, ...] = _SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _label(seed: int, shape: tuple[int, ...] = _SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, len(_CLASSES) + 1, size=shape).astype(np.uint8)


def _write_nifti(path: Path, array: np.ndarray) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def _write_h5(path: Path, **datasets: np.ndarray) -> None:
    with h5py.File(path, "w") as handle:
        for key, array in datasets.items():
            handle.create_dataset(key, data=array)


def _write_ct_dicom(path: Path, stored: np.ndarray, *, rescale: bool = True) -> None:
    """One CT slice as a real DICOM file (signed 16-bit pixels)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    # Fixed UIDs keep the file, and so any message about it, identical from run to run.
    meta.MediaStorageSOPInstanceUID = UID("1.2.826.0.1.3680043.8.498.1")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    if rescale:
        ds.RescaleSlope = "1"
        ds.RescaleIntercept = "-1024"
    ds.PixelSpacing = ["0.8", "0.8"]
    ds.PixelData = stored.astype("<i2").tobytes()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 3.0 renamed write_like_original=False (2.x reads the encoding off the dataset)
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array.astype(np.uint8)).save(path)


def _volume_data(
    folder: Path,
    dataset: str,
    suffix: str,
    write: Callable[[Path, np.ndarray], None],
    *,
    train_image: np.ndarray | None = None,
    train_label: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write an image and a label volume per split; the ``data`` section that reads them."""
    cases: dict[str, Any] = {}
    for seed, split in enumerate(("train", "val", "test")):
        image = train_image if split == "train" and train_image is not None else _image(seed)
        label = train_label if split == "train" and train_label is not None else _label(seed)
        write(folder / f"{split}{suffix}", image)
        write(folder / f"{split}_seg{suffix}", label)
        cases[split] = {"image": f"{split}{suffix}", "label": f"{split}_seg{suffix}"}
    params = {"cases": cases, "root": str(folder), "class_names": _CLASSES}
    return {"dataset": dataset, "params": params}


def _h5_data(folder: Path, *, train: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """One HDF5 file per split holding ``image`` and ``label``; the ``data`` section."""
    cases: dict[str, Any] = {}
    for seed, split in enumerate(("train", "val", "test")):
        arrays = {"image": _image(seed), "label": _label(seed)}
        if split == "train" and train is not None:
            arrays = train
        _write_h5(folder / f"{split}.h5", **arrays)
        cases[split] = {"image": f"{split}.h5"}
    return {"dataset": "hdf5", "params": {"cases": cases, "root": str(folder), "class_names": _CLASSES}}


def _skmtea_root(folder: Path, *, echo2: bool = True, seg_value: int = 1) -> Path:
    """The SKM-TEA layout with one annotated 16x16x4 scan."""
    (folder / "image_files").mkdir()
    (folder / "annotations" / "v1.0.0").mkdir(parents=True)
    seg = np.zeros((16, 16, 4, 6), dtype=np.uint8)
    seg[4:8, 4:8, :, 1] = seg_value
    arrays = {"echo1": _image(0, (16, 16, 4)), "seg": seg}
    if echo2:
        arrays["echo2"] = _image(1, (16, 16, 4))
    _write_h5(folder / "image_files" / "MTR_001.h5", **arrays)
    # As SKM-TEA's annotation files do; without it the reader warns that it assumes the spacing.
    image = {"file_name": "MTR_001.h5", "scan_id": "MTR_001", "voxel_spacing": [0.3125, 0.3125, 0.8]}
    images = {"images": [image]}
    _write_text(folder / "annotations" / "v1.0.0" / "train.json", json.dumps(images))
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_unet(*, base_width: int = 4, in_channels: int = 1, out_channels: int = 1) -> torch.nn.Module:
    model: torch.nn.Module = BACKBONES.build(
        "unet2d",
        in_channels=in_channels,
        out_channels=out_channels,
        depth=2,
        base_width=base_width,
        seed=0,
    )
    return model


def _save_pretrained(folder: Path, *, base_width: int = 4, in_channels: int = 1) -> Path:
    """A real pretraining checkpoint folder, written by the library's own writer."""
    model = _tiny_unet(base_width=base_width, in_channels=in_channels, out_channels=in_channels)
    meta = CheckpointMeta(
        kind="pretrain",
        backbone="unet2d",
        backbone_params={"depth": 2, "base_width": base_width},
        in_channels=in_channels,
        out_channels=in_channels,
    )
    save_checkpoint(folder, model.state_dict(), meta)
    return folder


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _cli(*argv: str) -> None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = cli_main(list(argv))
    if status != 0:
        raise CommandLineError(f"exit status {status}: {stderr.getvalue().strip()}")


def _no_space(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@contextlib.contextmanager
def _disk_full_after_half(target: str, *, serialise: Callable[..., bytes]) -> Iterator[None]:
    """Patch the writer ``target`` so it writes half of its bytes, then fails with ENOSPC.

    That is what a full disk leaves behind: a torn file at the path being written.
    """

    def torn_write(tensors: Any, filename: Any, *args: Any, **kwargs: Any) -> None:
        data = serialise(tensors, *args, **kwargs)
        with open(filename, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise _no_space(filename)

    with mock.patch(target, torn_write):
        yield


def _torn_write_bytes(self: Path, data: bytes) -> int:
    with open(self, "wb") as handle:
        handle.write(data[: len(data) // 2])
    raise _no_space(self)


class _OpensAFile:
    """Unpickling this creates a file: harmless, but proof that loading ran the pickle's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


# -- config ------------------------------------------------------------------------------------


@_case(
    "config-unknown-field", "config", ConfigError, r"pretrain\.yaml", r"optim\.learning_rate", "unknown field"
)
def _unknown_field(folder: Path) -> Call:
    """A YAML config with a misspelt field (``optim.learning_rate`` instead of ``optim.lr``)."""
    path = _write_text(folder / "pretrain.yaml", "optim:\n  learning_rate: 0.01\n")
    return lambda: issl.pretrain(path)


@_case(
    "config-wrong-type",
    "config",
    ConfigError,
    r"finetune\.json",
    r"optim\.batch_size",
    "valid integer",
    r"found 'nine'",
)
def _wrong_type(folder: Path) -> Call:
    """A JSON config whose ``optim.batch_size`` is a word, not an integer."""
    path = _write_text(folder / "finetune.json", json.dumps({"optim": {"batch_size": "nine"}}))
    return lambda: issl.finetune(path)


@_case(
    "config-zero-lr",
    "config",
    CommandLineError,
    r"^exit status 2: inpaintssl pretrain: error:",
    r"optim\.lr: Input should be greater than 0",
    r"found 0\)",
)
def _zero_lr(folder: Path) -> Call:
    """A zero learning rate given as a command-line override (``optim.lr=0``)."""
    return lambda: _cli("pretrain", "optim.lr=0", f"run.output_dir={folder / 'run'}")


@_case("config-negative-lr", "config", ConfigError, r"optim\.lr: Input should be greater than 0", r"-0\.001")
def _negative_lr(folder: Path) -> Call:
    """A negative learning rate in a config mapping."""
    return lambda: issl.finetune(_config(folder, optim={"lr": -1e-3}))


@_case(
    "config-min-lr-above-lr",
    "config",
    ConfigError,
    r"optim: optim\.min_lr \(0\.1\) must not exceed the learning rate \(0\.01\)",
)
def _min_lr_above_lr(folder: Path) -> Call:
    """A learning-rate floor above the learning rate (``optim.min_lr=0.1`` with the default 1e-2)."""
    return lambda: issl.finetune(_config(folder, optim={"min_lr": 0.1}))


@_case("config-invalid-yaml", "config", ConfigError, r"config file .*broken\.yaml is not valid YAML")
def _invalid_yaml(folder: Path) -> Call:
    """A YAML file that does not parse (an unclosed bracket)."""
    path = _write_text(folder / "broken.yaml", "optim: {lr: [0.001\n")
    return lambda: issl.pretrain(path)


@_case(
    "config-duplicate-yaml-key",
    "config",
    ConfigError,
    r"config file .*twice\.yaml is not valid YAML",
    r"duplicate key 'lr' at line 4 \(first given at line 2\)",
)
def _duplicate_yaml_key(folder: Path) -> Call:
    """A YAML config that gives ``optim.lr`` twice (plain YAML would keep the second silently)."""
    path = _write_text(folder / "twice.yaml", "optim:\n  lr: 0.001\n  max_epochs: 1\n  lr: 0.1\n")
    return lambda: issl.pretrain(path)


@_case(
    "config-duplicate-json-key",
    "config",
    ConfigError,
    r"config file .*twice\.json is not valid JSON",
    r"duplicate key\(s\) 'lr'",
)
def _duplicate_json_key(folder: Path) -> Call:
    """A JSON config that gives ``optim.lr`` twice."""
    path = _write_text(folder / "twice.json", '{"optim": {"lr": 0.001, "lr": 0.1}}')
    return lambda: issl.pretrain(path)


@_case(
    "config-study-duplicate-yaml-key",
    "config",
    ConfigError,
    r"study spec .*study\.yaml is not valid YAML",
    r"duplicate key 'label_fractions' at line 3 \(first given at line 2\)",
)
def _duplicate_study_key(folder: Path) -> Call:
    """A study spec that lists ``label_fractions`` twice."""
    path = _write_text(
        folder / "study.yaml", "study: clinical\nlabel_fractions: [0.1]\nlabel_fractions: [1.0]\n"
    )
    return lambda: load_spec(path)


@_case(
    "config-top-level-list",
    "config",
    ConfigError,
    r"config file .*list\.yaml",
    "expected a mapping at the top level, found list",
)
def _top_level_list(folder: Path) -> Call:
    """A YAML config whose top level is a list instead of a mapping."""
    path = _write_text(folder / "list.yaml", "- optim\n- run\n")
    return lambda: load_config(path, PretrainConfig)


@_case(
    "config-missing-file",
    "config",
    CommandLineError,
    r"^exit status 2: inpaintssl finetune: error:",
    r"config file .*finetune\.yaml does not exist",
)
def _missing_config_file(folder: Path) -> Call:
    """A command line naming a config file that does not exist."""
    return lambda: _cli("finetune", str(folder / "finetune.yaml"))


@_case(
    "config-override-not-a-section",
    "config",
    CommandLineError,
    r"^exit status 2: inpaintssl config: error:",
    r"override 'optim\.lr\.value=1'",
    r"'lr' is not a section",
)
def _override_into_a_value(folder: Path) -> Call:
    """A dotted override that descends into a plain value (``optim.lr.value=1``)."""
    return lambda: _cli("config", "show", "pretrain", "optim.lr.value=1")


@_case(
    "config-zero-image-size",
    "config",
    ConfigError,
    r"data\.image_size",
    r"two positive integers",
    r"\(0, 16\)",
)
def _zero_image_size(folder: Path) -> Call:
    """An ``image_size`` with a zero side."""
    return lambda: issl.pretrain(_pretrain_config(folder, data={"image_size": [0, 16]}))


@_case(
    "config-unknown-device",
    "config",
    ConfigError,
    r"run\.device",
    r"'auto', 'cpu', 'cuda' or 'cuda:N'",
    "'gpu'",
)
def _unknown_device(folder: Path) -> Call:
    """A device name torch does not know (``run.device=gpu``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, run={"device": "gpu"}))


@_case(
    "config-unknown-weight-gradient-kernel",
    "config",
    ConfigError,
    r"run\.cpu_weight_gradient",
    r"'blocked_gemm' or 'onednn'",
    "'mkl'",
)
def _unknown_weight_gradient_kernel(folder: Path) -> Call:
    """A CPU weight-gradient kernel the library does not have (``run.cpu_weight_gradient=mkl``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, run={"cpu_weight_gradient": "mkl"}))


@_case(
    "config-freeze-without-pretrained",
    "config",
    ConfigError,
    r"transfer\.schedule 'freeze_then_unfreeze' needs transfer\.pretrained",
)
def _freeze_without_pretrained(folder: Path) -> Call:
    """A freeze-then-unfreeze schedule without pretrained weights to freeze."""
    return lambda: issl.finetune(_config(folder, transfer={"schedule": "freeze_then_unfreeze"}))


@_case(
    "config-unknown-model-param",
    "config",
    TypeError,
    r"backbones 'unet2d': invalid parameters",
    r"'widht'",
)
def _unknown_model_param(folder: Path) -> Call:
    """A misspelt backbone parameter inside ``model.params`` (``widht``)."""
    return lambda: issl.finetune(_config(folder, model={"params": {"depth": 2, "widht": 4}}))


@_case(
    "config-params-integer-key",
    "config",
    ConfigError,
    r"data\.params: \['class_names'\] has the key 1 \(int\); expected text keys",
    r"write '1' \(quoted in YAML\)",
)
def _params_integer_key(folder: Path) -> Call:
    """A mapping with integer keys inside ``data.params`` (``class_names: {1: fg}``), which a study
    worker and a resume would read back with text keys."""
    config = _pretrain_config(folder)
    config["data"]["params"]["class_names"] = {1: "fg"}
    return lambda: issl.pretrain(config)


@_case(
    "config-unknown-dataset",
    "config",
    KeyError,
    r"unknown datasets name 'synthetc'",
    r"Did you mean 'synthetic'\?",
)
def _unknown_dataset(folder: Path) -> Call:
    """A misspelt dataset name (``data.dataset=synthetc``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, data={"dataset": "synthetc"}))


@_case(
    "config-unknown-backbone",
    "config",
    KeyError,
    r"unknown backbones name 'unet'",
    r"Did you mean 'unet2d'",
)
def _unknown_backbone(folder: Path) -> Call:
    """A backbone name that is not registered (``model.backbone=unet``)."""
    return lambda: issl.finetune(_config(folder, model={"backbone": "unet"}))


@_case(
    "config-unknown-pretext-task",
    "config",
    KeyError,
    r"unknown pretext_tasks name 'context_inpainting'",
    r"Did you mean 'context_\w+'",
)
def _unknown_pretext_task(folder: Path) -> Call:
    """A pretext task name that is not registered (``pretext.task=context_inpainting``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, pretext={"task": "context_inpainting"}))


@_case("config-unknown-sampler", "config", KeyError, r"unknown samplers name 'poisson'", r"'poisson_disc'")
def _unknown_sampler(folder: Path) -> Call:
    """A patch sampler name that is not registered (``pretext.sampler=poisson``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, pretext={"sampler": "poisson"}))


@_case(
    "config-unknown-loss", "config", KeyError, r"unknown losses name 'dice_loss'", r"Did you mean .*'dice'"
)
def _unknown_loss(folder: Path) -> Call:
    """A segmentation loss name that is not registered (``loss.name=dice_loss``)."""
    return lambda: issl.finetune(_config(folder, loss={"name": "dice_loss"}))


@_case(
    "config-unknown-transfer-strategy",
    "config",
    KeyError,
    r"unknown transfer_strategies name 'encoder_only'",
    r"Did you mean 'encoder'",
)
def _unknown_strategy(folder: Path) -> Call:
    """A transfer strategy name that is not registered (``weights="encoder_only"``)."""
    return lambda: issl.transfer(_tiny_unet(), _tiny_unet(out_channels=2), weights="encoder_only")


@_case(
    "config-patch-larger-than-image",
    "config",
    ValueError,
    r"cannot cover 25% of a 16x16 image with 32x32 patches",
    r"patch_size=32 is larger than the image; expected patch_size <= min\(H, W\)",
)
def _patch_too_large(folder: Path) -> Call:
    """Pretext patches larger than the 16x16 slices (``pretext.patch_size=32``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, pretext={"patch_size": 32}))


@_case(
    "config-coverage-unreachable",
    "config",
    ValueError,
    r"cannot cover 90% of a 16x16 image with 8x8 patches",
    r"coverage unreachable: .*at most 2 fit",
)
def _coverage_unreachable(folder: Path) -> Call:
    """A corrupted share that non-overlapping 8x8 patches cannot reach on 16x16 slices."""
    pretext = {"patch_size": 8, "coverage": 0.9, "sampler": "poisson_disc"}
    return lambda: issl.pretrain(_pretrain_config(folder, pretext=pretext))


@_case(
    "config-label-fraction-selects-nothing",
    "config",
    DataError,
    r"label_fraction=0\.01 of 8 training volumes selects 0 volumes",
    r"expected a fraction above 0\.0625",
)
def _label_fraction_too_small(folder: Path) -> Call:
    """A label fraction that rounds to zero training images."""
    return lambda: issl.finetune(_config(folder, data={"label_fraction": 0.01}))


@_case(
    "config-image-size-not-divisible",
    "config",
    DataError,
    r"data\.image_size=\[18, 18\] is not divisible by 4",
    r"multiples of 4",
)
def _image_size_not_divisible(folder: Path) -> Call:
    """An ``image_size`` that a depth-3 U-Net (size multiple 4) cannot pool."""
    return lambda: issl.finetune(
        _config(folder, data={"image_size": [18, 18]}, model={"params": {"depth": 3, "base_width": 4}})
    )


# -- data --------------------------------------------------------------------------------------


@_case("data-h5-truncated", "data", DataError, r"HDF5 file .*train\.h5 cannot be opened", r"truncated")
def _h5_truncated(folder: Path) -> Call:
    """An HDF5 file cut to half its size (an interrupted copy)."""
    data = _h5_data(folder)
    path = folder / "train.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-h5-missing-key",
    "data",
    DataError,
    r"HDF5 file .*train\.h5 has no dataset 'label'",
    r"it holds \['image', 'seg'\]",
)
def _h5_missing_key(folder: Path) -> Call:
    """An HDF5 file that stores its labels under another key (``seg`` instead of ``label``)."""
    data = _h5_data(folder, train={"image": _image(0), "seg": _label(0)})
    return lambda: DATASETS.build("hdf5", split="train", **data["params"])


@_case(
    "data-skmtea-missing-echo",
    "data",
    DataError,
    r"HDF5 file .*MTR_001\.h5 has no dataset 'echo2'",
    r"it holds \['echo1', 'seg'\]",
)
def _skmtea_missing_echo(folder: Path) -> Call:
    """An SKM-TEA scan file without its second echo."""
    root = _skmtea_root(folder, echo2=False)
    return lambda: DATASETS.build("skmtea", split="train", root=root, metadata_csv=None)


@_case(
    "data-skmtea-seg-not-onehot",
    "data",
    DataError,
    r"MTR_001\.h5 seg slice 0",
    r"one-hot label values \[2\] are out of range; expected 0 or 1",
)
def _skmtea_seg_not_onehot(folder: Path) -> Call:
    """An SKM-TEA ``seg`` that holds class indices instead of one-hot 0/1 channels."""
    root = _skmtea_root(folder, seg_value=2)
    return lambda: DATASETS.build("skmtea", split="train", root=root, metadata_csv=None)[0]


@_case(
    "data-image-wrong-rank",
    "data",
    DataError,
    r"NumPy file .*train\.npy: array has rank 5",
    r"expected rank 2, 3 or 4",
)
def _image_wrong_rank(folder: Path) -> Call:
    """A 5-D image array (a batch of 4-D volumes saved as one file)."""
    data = _volume_data(folder, "numpy", ".npy", np.save, train_image=_image(0, (2, *_SHAPE, 1)))
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-label-wrong-rank",
    "data",
    DataError,
    r"NIfTI file .*train_seg\.nii\.gz: array has rank 4",
    r"expected rank 2 or 3",
)
def _label_wrong_rank(folder: Path) -> Call:
    """A label volume stored one-hot as 4-D, where integer class maps are expected."""
    onehot = np.eye(3, dtype=np.uint8)[_label(0)]
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti, train_label=onehot)
    return lambda: build_datasets(DataConfig.model_validate(data), stage="finetune", seed=0)


@_case(
    "data-nan-pixels",
    "data",
    DataError,
    r"train\.nii\.gz slice 1: 1 NaN/Inf value\(s\)",
    "expected finite intensities",
)
def _nan_pixels(folder: Path) -> Call:
    """A NaN pixel in a NIfTI image of the training split."""
    image = _image(0)
    image[3, 5, 1] = np.nan
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti, train_image=image)
    return lambda: issl.finetune(_config(folder, data=data))


@_case("data-inf-pixels", "data", DataError, r"val\.h5 \(dataset 'image'\) slice 0: 2 NaN/Inf value\(s\)")
def _inf_pixels(folder: Path) -> Call:
    """Infinite pixels in an HDF5 image used for pretraining."""
    data = _h5_data(folder)
    with h5py.File(folder / "val.h5", "r+") as handle:
        handle["image"][0, 0:2, 0] = [np.inf, -np.inf]
    return lambda: issl.pretrain(_pretrain_config(folder, data=data))


@_case(
    "data-label-out-of-range",
    "data",
    DataError,
    r"label .*train_seg\.nii\.gz slice 2",
    r"label values \[7\] are out of range; expected 0 \(background\) or one of \[1, 2\]",
)
def _label_out_of_range(folder: Path) -> Call:
    """A label value (7) that no class of ``class_names`` maps to."""
    label = _label(0)
    label[0, 0, 2] = 7
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti, train_label=label)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-label-not-integer", "data", DataError, r"train_seg\.npy slice 0", "label holds non-integer values"
)
def _label_not_integer(folder: Path) -> Call:
    """A float label volume holding 0.5 (an interpolated mask)."""
    label = _label(0).astype(np.float32)
    label[8, 8, 0] = 0.5
    data = _volume_data(folder, "numpy", ".npy", np.save, train_label=label)
    return lambda: DATASETS.build("numpy", split="train", **data["params"])[0]


@_case(
    "data-ct-label-not-in-mapping",
    "data",
    DataError,
    r"label .*l3_mask\.png slice 0",
    r"label values \[9\] are out of range; expected 0 \(background\) or one of \[1, 2, 3, 4\]",
)
def _ct_label_not_in_mapping(folder: Path) -> Call:
    """A CT mask with a value (9) outside the ``label_values`` mapping."""
    _write_ct_dicom(folder / "l3.dcm", np.full((16, 16), 1024))
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[2:6, 2:6] = 1
    mask[10, 10] = 9
    _write_png(folder / "l3_mask.png", mask)
    cases = {"train": {"image": "l3.dcm", "label": "l3_mask.png"}}
    values = {"muscle": 1, "imat": 2, "vat": 3, "sat": 4}
    return lambda: DATASETS.build("ct", split="train", cases=cases, root=folder, label_values=values)[0]


@_case(
    "data-dicom-without-rescale",
    "data",
    DataError,
    r"DICOM file .*l3\.dcm \(Modality CT\) has no RescaleSlope or RescaleIntercept",
    "to convert stored pixel values to HU",
)
def _dicom_without_rescale(folder: Path) -> Call:
    """A CT DICOM slice without RescaleSlope/RescaleIntercept, so its pixels are not HU."""
    _write_ct_dicom(folder / "l3.dcm", np.full((16, 16), 1024), rescale=False)
    return lambda: DATASETS.build("ct", split="unlabelled", labelled=False, cases="l3.dcm", root=folder)


@_case("data-dicom-corrupt", "data", DataError, r"DICOM file .*l3\.dcm cannot be read")
def _dicom_corrupt(folder: Path) -> Call:
    """A ``.dcm`` file that is not DICOM (an HTML error page saved by a download script)."""
    _write_text(folder / "l3.dcm", "<html><body>404 Not Found</body></html>\n")
    return lambda: DATASETS.build("ct", split="unlabelled", labelled=False, cases="l3.dcm", root=folder)


@_case("data-nifti-corrupt", "data", DataError, r"NIfTI file .*train\.nii\.gz cannot be read")
def _nifti_corrupt(folder: Path) -> Call:
    """A ``.nii.gz`` file whose bytes are not gzip-compressed NIfTI."""
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    (folder / "train.nii.gz").write_bytes(b"not a nifti file\n" * 8)
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-image-label-shape-mismatch",
    "data",
    DataError,
    r"label .*train_seg\.npy has shape \(16, 16, 2\) but image .*train\.npy has shape \(16, 16, 3\)",
    "expected the same voxel grid",
)
def _image_label_shape_mismatch(folder: Path) -> Call:
    """A label volume with fewer slices than its image."""
    data = _volume_data(folder, "numpy", ".npy", np.save, train_label=_label(0, (16, 16, 2)))
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-slice-size-not-divisible",
    "data",
    DataError,
    r"synthetic train set: slice size \(18, 18\) is not divisible by 4",
    r"set data\.image_size",
)
def _slice_size_not_divisible(folder: Path) -> Call:
    """18x18 slices for a depth-3 U-Net (size multiple 4) and no ``data.image_size`` to fit them."""
    data = {"params": {"num_images": 8, "num_val": 2, "num_test": 2, "size": [18, 18]}}
    model = {"params": {"depth": 3, "base_width": 4}}
    return lambda: issl.finetune(_config(folder, data=data, model=model))


@_case(
    "data-mixed-slice-sizes",
    "data",
    DataError,
    r"nifti train set: slices have different sizes \[\(16, 16\), \(16, 24\)\]",
    r"set data\.image_size",
)
def _mixed_slice_sizes(folder: Path) -> Call:
    """Training volumes of two in-plane sizes and no ``data.image_size`` to fit them."""
    data = _volume_data(folder, "nifti", ".nii.gz", _write_nifti)
    _write_nifti(folder / "wide.nii.gz", _image(5, (16, 24, 3)))
    _write_nifti(folder / "wide_seg.nii.gz", _label(5, (16, 24, 3)))
    train = data["params"]["cases"]["train"]
    data["params"]["cases"]["train"] = [train, {"image": "wide.nii.gz", "label": "wide_seg.nii.gz"}]
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-model-input-not-divisible",
    "data",
    ValueError,
    r"input size \(H, W\) = \(18, 18\) is not divisible by size_multiple=4",
    r"e\.g\. to \(20, 20\)",
)
def _model_input_not_divisible(folder: Path) -> Call:
    """18x18 slices passed straight to a depth-3 U-Net in ``evaluate`` (no resizing on that path)."""
    model = BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=3, base_width=4, seed=0)
    dataset = DATASETS.build("synthetic", split="test", num_images=2, size=[18, 18])
    return lambda: issl.evaluate(model, dataset, device="cpu")


@_case(
    "data-empty-masks",
    "data",
    DataError,
    r"data\.dataset='numpy' train set \(label_fraction=1\)",
    r"none of its 3 labelled slice\(s\) \(volumes train\) has a foreground pixel",
    r"\['disc', 'square'\]",
)
def _empty_masks(folder: Path) -> Call:
    """Training labels that are all background (an empty mask export)."""
    data = _volume_data(folder, "numpy", ".npy", np.save, train_label=np.zeros(_SHAPE, np.uint8))
    return lambda: issl.finetune(_config(folder, data=data))


@_case(
    "data-mni152-files-missing",
    "data",
    DataError,
    r"ICBM152 t1 file .*empty/mni_icbm152_t1_tal_nlin_sym_09a_converted\.nii\.gz does not exist",
)
def _mni152_files_missing(folder: Path) -> Call:
    """``data_dir`` of the ``mni152`` dataset pointing to an empty folder."""
    (folder / "empty").mkdir()
    return lambda: DATASETS.build("mni152", split="train", data_dir=folder / "empty")


@_case("data-missing-file", "data", DataError, r"numpy cases\['train'\] image .*missing\.npy does not exist")
def _missing_data_file(folder: Path) -> Call:
    """A case whose image file does not exist."""
    cases = {"train": {"image": "missing.npy"}}
    return lambda: DATASETS.build("numpy", split="train", labelled=False, cases=cases, root=folder)


@_case(
    "data-glob-matches-nothing",
    "data",
    DataError,
    r"nifti cases\['train'\] image pattern .*scans/\*\.nii\.gz",
)
def _glob_matches_nothing(folder: Path) -> Call:
    """A file pattern that matches no file (a wrong folder name)."""
    cases = {"train": "scans/*.nii.gz"}
    return lambda: DATASETS.build("nifti", split="train", labelled=False, cases=cases, root=folder)


@_case(
    "data-splits-file-other-data",
    "data",
    DataError,
    r"splits file .*splits\.json: volume id\(s\) \['ghost'\] are not in the dataset",
)
def _splits_file_other_data(folder: Path) -> Call:
    """A ``data.splits_file`` written for another dataset (it lists volumes this one lacks)."""
    path = folder / "splits.json"
    SplitRecord(
        stage="finetune",
        dataset="synthetic",
        subset_seed=0,
        label_fraction=1.0,
        label_subsets={"1": ["ghost"]},
        subsets={},
    ).save(path)
    return lambda: issl.finetune(_config(folder, data={"splits_file": str(path)}))


# -- checkpoints -------------------------------------------------------------------------------


@_case(
    "checkpoint-other-architecture",
    "checkpoint",
    ValueError,
    r"cannot transfer weights='encoder' \(parts: encoder\)",
    r"encoder\.levels\.0\.0\.0\.weight: pretrained shape \(8, 1, 3, 3\) != model shape \(4, 1, 3, 3\)",
)
def _other_architecture(folder: Path) -> Call:
    """Pretrained weights of a wider U-Net (base width 8) for a base-width-4 model."""
    pretrained = _save_pretrained(folder / "pre" / "checkpoints" / "best", base_width=8)
    return lambda: issl.finetune(_config(folder, transfer={"pretrained": str(pretrained)}))


@_case(
    "checkpoint-other-input-channels",
    "checkpoint",
    ValueError,
    r"encoder\.levels\.0\.0\.0\.weight: pretrained shape \(4, 3, 3, 3\) != model shape \(4, 1, 3, 3\)",
    r"pass in_channels='repeat' or 'average'",
)
def _other_input_channels(folder: Path) -> Call:
    """Weights pretrained on 3-channel images for a 1-channel model, without ``in_channels``."""
    pretrained = _save_pretrained(folder / "pre", in_channels=3)
    return lambda: issl.transfer(pretrained, _tiny_unet(out_channels=2))


@_case(
    "checkpoint-truncated-safetensors",
    "checkpoint",
    CheckpointError,
    r"encoder\.safetensors: not a readable safetensors file",
)
def _truncated_safetensors(folder: Path) -> Call:
    """A ``.safetensors`` file cut short (an interrupted download)."""
    path = folder / "encoder.safetensors"
    save_file(_tiny_unet().state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    return lambda: issl.transfer(path, _tiny_unet(out_channels=2))


@_case(
    "checkpoint-tampered",
    "checkpoint",
    CheckpointError,
    r"no complete checkpoint:",
    r"best: files changed or missing since written: model\.safetensors",
)
def _tampered(folder: Path) -> Call:
    """A checkpoint whose weights file changed after it was written (its sha256 no longer matches)."""
    best = _save_pretrained(folder / "run" / "checkpoints" / "best")
    weights = best / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return lambda: load_checkpoint(folder / "run")


@_case(
    "checkpoint-incomplete",
    "checkpoint",
    CheckpointError,
    r"no complete checkpoint: .*best has no COMPLETE\.json \(interrupted write\)",
)
def _incomplete(folder: Path) -> Call:
    """A checkpoint folder without its ``COMPLETE.json`` marker (copied while being written)."""
    best = _save_pretrained(folder / "run" / "checkpoints" / "best")
    (best / "COMPLETE.json").unlink()
    data = {"dataset": "synthetic", "params": {"num_test": 2, "size": [16, 16]}}
    return lambda: issl.evaluate(folder / "run", data, device="cpu")


@_case(
    "checkpoint-invalid-metadata",
    "checkpoint",
    CheckpointError,
    r"meta\.json: invalid checkpoint metadata",
    r"kind",
)
def _invalid_metadata(folder: Path) -> Call:
    """A checkpoint whose ``meta.json`` names an unknown kind (``segmentation``), re-sealed by hand."""
    best = _save_pretrained(folder / "best")
    meta = json.loads((best / "meta.json").read_text(encoding="utf-8"))
    _write_text(best / "meta.json", json.dumps({**meta, "kind": "segmentation"}))
    # Re-seal, as a hand edit that also updated the hashes would: the metadata check must still catch it.
    marker = json.loads((best / "COMPLETE.json").read_text(encoding="utf-8"))
    marker["files"]["meta.json"] = _sha256(best / "meta.json")
    _write_text(best / "COMPLETE.json", json.dumps(marker))
    return lambda: load_checkpoint(best)


@_case(
    "checkpoint-malicious-pickle",
    "checkpoint",
    CheckpointError,
    r"model\.pt: refused to load",
    r"weights_only=True",
    r"may carry pickled code",
)
def _malicious_pickle(folder: Path) -> Call:
    """A ``.pt`` checkpoint whose pickle would create a file when unpickled."""
    path = folder / "model.pt"
    torch.save({"weight": torch.zeros(2), "payload": _OpensAFile(folder / "PAYLOAD_RAN")}, path)
    return lambda: load_checkpoint(path)


@_case(
    "checkpoint-missing-path",
    "checkpoint",
    CheckpointError,
    r"runs/pretrain does not exist",
    r"expected a",
)
def _missing_path(folder: Path) -> Call:
    """``transfer.pretrained`` naming a run folder that does not exist."""
    missing = folder / "runs" / "pretrain"
    return lambda: issl.finetune(_config(folder, transfer={"pretrained": str(missing)}))


@_case(
    "checkpoint-wrong-file-type",
    "checkpoint",
    CheckpointError,
    r"weights\.txt: expected a \.safetensors file",
    r"found a '\.txt' file",
)
def _wrong_file_type(folder: Path) -> Call:
    """Pretrained weights given as a text file."""
    path = _write_text(folder / "weights.txt", "encoder.levels.0.0.0.weight: [...]\n")
    return lambda: issl.finetune(_config(folder, transfer={"pretrained": str(path)}))


@_case(
    "checkpoint-onnx-export-to-predict",
    "checkpoint",
    CheckpointError,
    r"model\.onnx: expected a \.safetensors file",
    r"an ONNX export runs in onnxruntime or another ONNX runtime, not here",
    r"export it with --format safetensors",
)
def _onnx_export_to_predict(folder: Path) -> Call:
    """An ONNX export given to ``predict`` as the model (it runs in onnxruntime, not in inpaintssl)."""
    model = _write_text(folder / "model.onnx", "not read: refused by its suffix\n")
    scan = folder / "scan.npy"
    np.save(scan, _image(3))
    return lambda: issl.predict(model, [scan], output=folder / "labels")


@_case(
    "checkpoint-bare-weights-to-evaluate",
    "checkpoint",
    CheckpointError,
    r"model\.safetensors: no architecture metadata",
    "or a meta.json next to it",
)
def _bare_weights_to_evaluate(folder: Path) -> Call:
    """A bare ``.safetensors`` file given to ``evaluate``, which cannot tell its architecture."""
    path = folder / "model.safetensors"
    save_file(_tiny_unet().state_dict(), path)
    return lambda: issl.evaluate(path, {"dataset": "synthetic"}, device="cpu")


# -- runtime -----------------------------------------------------------------------------------


@_case(
    "runtime-disk-full-on-checkpoint",
    "runtime",
    OSError,
    r"could not write checkpoint .*run/checkpoints/best\.pending: No space left on device",
)
def _disk_full_on_checkpoint(folder: Path) -> Call:
    """The disk fills up half-way through writing the first checkpoint."""

    def run() -> object:
        with _disk_full_after_half("inpaintssl.checkpoint.save_file", serialise=safetensors_bytes):
            return issl.finetune(_config(folder))

    return run


@_case(
    "runtime-disk-full-on-config",
    "runtime",
    OSError,
    r"could not write .*run/config\.yaml: No space left on device",
)
def _disk_full_on_config(folder: Path) -> Call:
    """The disk fills up half-way through writing the run's ``config.yaml``."""

    def run() -> object:
        with mock.patch.object(Path, "write_bytes", _torn_write_bytes):
            return issl.pretrain(_pretrain_config(folder))

    return run


@_case(
    "runtime-non-finite-loss",
    "runtime",
    NonFiniteLossError,
    r"non-finite training loss \(nan\) in phase 'finetune' at epoch 0 step 1",
    "No checkpoint had been written yet",
    r"optim\.grad_clip",
)
def _non_finite_loss(folder: Path) -> Call:
    """A learning rate so large (1e30) that the loss becomes NaN on the second step."""
    return lambda: issl.finetune(_config(folder, optim={"lr": 1e30}))


@_case(
    "runtime-run-folder-in-use",
    "runtime",
    RunFolderInUseError,
    r"run\.output_dir='.*run' already holds a run",
    r"pass --resume \(run\.resume=true\)",
)
def _run_folder_in_use(folder: Path) -> Call:
    """A new run pointed at a folder that holds an earlier run's checkpoints."""
    _save_pretrained(folder / "run" / "checkpoints" / "best")
    return lambda: issl.pretrain(_pretrain_config(folder))


@_case(
    "runtime-resume-incomplete-checkpoint",
    "runtime",
    CheckpointError,
    r"cannot resume from .*run/checkpoints/last",
    r"has no COMPLETE\.json \(interrupted write\)",
)
def _resume_incomplete(folder: Path) -> Call:
    """``--resume`` from a run whose last checkpoint is incomplete and has no earlier twin."""
    last = _save_pretrained(folder / "run" / "checkpoints" / "last")
    (last / "COMPLETE.json").unlink()
    return lambda: issl.pretrain(_pretrain_config(folder, run={"resume": True}))


@_case(
    "runtime-resume-without-trainer-state",
    "runtime",
    CheckpointError,
    r"cannot resume from .*run/checkpoints/last: it has no trainer state",
)
def _resume_without_state(folder: Path) -> Call:
    """``--resume`` from a ``last`` checkpoint that holds weights only (copied from ``best``), in a
    run folder the run recorded (without its config.yaml a resume is refused before that)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issl.pretrain(_pretrain_config(folder))
    shutil.rmtree(folder / "run" / "checkpoints" / "last")
    _save_pretrained(folder / "run" / "checkpoints" / "last")
    return lambda: issl.pretrain(_pretrain_config(folder), overrides=["run.resume=true"])


# -- later rounds ------------------------------------------------------------------------------
# Each round of reliability work keeps its cases in its own module (``corpus_<topic>.py`` next to
# this file), built from the blocks above; importing it registers them, so CASES stays the one list.
import corpus_predict_tables  # noqa: E402,F401
import corpus_round2_checks  # noqa: E402,F401
import corpus_round2_data  # noqa: E402,F401
import corpus_round2_process  # noqa: E402,F401
import corpus_round2_store  # noqa: E402,F401
