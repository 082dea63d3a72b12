"""The ``data`` section: which dataset a run reads, at what size, and how much of it.

Example:
    >>> DataConfig(label_fraction=0.25, unlabelled=[SourceConfig(dataset="ct")]).unlabelled[0].fraction
    1.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from inpaintssl.config.base import Params, _given, _Strict, user_path
from inpaintssl.config.unused import UnusedSetting

__all__ = ["DATA_READING_FIELDS", "DataConfig", "SourceConfig", "WorkerStartMethod"]

WorkerStartMethod = Literal["fork", "forkserver", "spawn"]
"""How DataLoader workers start (:mod:`multiprocessing`'s start methods)."""


class SourceConfig(_Strict):
    """One data source: a registered dataset name and its parameters.

    Attributes:
        dataset: Name in :data:`inpaintssl.registry.DATASETS` (``mni152``, ``skmtea``, ``ct``,
            ``nifti``, ``numpy``, ``hdf5`` or a plugin).
        params: Keyword arguments for the dataset factory (paths, slice axis, windows, ...).
        fraction: Share of this source's volumes used (seeded, nested), in (0, 1].
    """

    dataset: str = "mni152"
    params: Params = Field(default_factory=dict)
    fraction: float = Field(default=1.0, gt=0.0, le=1.0)


class DataConfig(_Strict):
    """Training data (sec. 2.1, 2.2, 2.6).

    Attributes:
        dataset: Registered dataset name of the labelled (fine-tuning) or main (pretraining) source.
        params: Keyword arguments for the dataset factory.
        image_size: ``(H, W)`` every slice is cropped/padded or resized to; ``None`` keeps the
            dataset's own size (it must then be divisible by ``2**(depth-1)``).
        resize_mode: ``crop_or_pad`` (centre) or ``resize`` (bilinear images, nearest labels).
        label_fraction: Share of training volumes with labels used for fine-tuning (sec. 2.1:
            1.0, 0.5, 0.25, 0.1, 0.05); subsets are nested and seeded by ``subset_seed``.
        subset_seed: Seed of the label-limited subset draw (with ``splits_file``, the subsets
            come from the file, and ``splits.json`` states the file's seed).
        splits_file: A split JSON written by an earlier run; when given, its subsets are reused,
            and the new record states the file's ``subset_seed`` and each reused subset's fraction.
        unlabelled: Extra unlabelled sources added to the pretraining set (sec. 2.6).
        num_workers: DataLoader worker processes for training and as many for validation (no
            more than a pass has batches), each set started once per run and kept to its end;
            0 reads in the training process. The evaluation after training (``test_metrics.csv``,
            ``val_inpainting.csv``) and ``evaluate`` read with as many, started for that pass.
            Each worker keeps its own decompressed copy of the compressed volumes it reads (the
            NIfTI guide, "What a run keeps in memory").
        worker_start_method: How those workers start: ``fork`` copies the training process (the
            quickest start, unsafe once it runs threads), ``forkserver`` (Python 3.14's default on
            Linux) and ``spawn`` (macOS and Windows) start fresh interpreters that receive the
            dataset pickled; ``None`` takes the process's default. Training gives the same bits
            whichever starts them.
        val_max_images: Cap on validation slices (evenly spaced), ``None`` for all.
        cache_dir: A folder where compressed volumes (``.nii.gz``, ``.npz``) are kept
            decompressed as ``.npy`` files, memory-mapped by the training process and every
            worker, and reused by later runs over the same files
            (:mod:`~inpaintssl.data.decompressed`); ``None`` keeps each process's own copy in its
            memory. Values read are the same either way.
        check_threads: Cases the pre-flight check reads at once, each on a thread
            (:mod:`~inpaintssl.data.preflight`: 12 ``.nii.gz`` cases were checked 1.66x as fast
            on 2 cores as one by one; cases of HDF5 files or DICOM series are checked one at a
            time whatever this says, as h5py holds one lock over every HDF5 call and pydicom
            parses in Python); ``1`` reads them one after the other.
            ``None``: the cores the process may use (no more than PyTorch's threads), 8 at most
            (:func:`~inpaintssl.data.preflight.default_check_threads`). What is checked, and what it
            finds, are the same either way.
    """

    dataset: str = "mni152"
    params: Params = Field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    resize_mode: Literal["crop_or_pad", "resize"] = "crop_or_pad"
    label_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    subset_seed: int = Field(default=0, ge=0, lt=2**32)
    splits_file: Path | None = None
    unlabelled: list[SourceConfig] = Field(default_factory=list)
    num_workers: int = Field(default=0, ge=0)
    worker_start_method: WorkerStartMethod | None = None
    val_max_images: int | None = Field(default=None, gt=0)
    cache_dir: Path | None = None
    check_threads: int | None = Field(default=None, ge=1)

    @field_validator("cache_dir", "splits_file", mode="before")
    @classmethod
    def _home(cls, value: Any, info: ValidationInfo) -> Any:
        return user_path(value, field=info.field_name or "path")

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and (value[0] <= 0 or value[1] <= 0):
            raise ValueError(f"image_size must be two positive integers, got {value}")
        return value

    def _unused_settings(self) -> list[UnusedSetting]:
        unused: list[UnusedSetting] = []
        if self.image_size is None and _given(self, "resize_mode"):
            why = "data.image_size is null, so every slice keeps its own size and nothing is resized"
            unused.append(UnusedSetting("data.resize_mode", self.resize_mode, why))
        if self.num_workers == 0 and _given(self, "worker_start_method"):
            why = "data.num_workers is 0, so the training process reads the data and no worker starts"
            unused.append(UnusedSetting("data.worker_start_method", self.worker_start_method, why))
        return unused


DATA_READING_FIELDS = ("num_workers", "worker_start_method", "cache_dir", "check_threads")
""":class:`DataConfig` fields that say how the data are read, never what is read: a resume may
change them, and neither a study's run ids nor the pre-flight check's record depend on them."""
