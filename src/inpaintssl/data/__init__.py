"""Data layer: 2D slice datasets, preprocessing, label-limited splits and run data bundles.

Paper sections 2.1 (datasets, label-limited subsets), 2.2 (preprocessing) and 2.6 (pretraining
supersets). Built-in datasets (``mni152``, ``skmtea``, ``ct``, ``dicom``, ``nifti``, ``metaimage``,
``nrrd``, ``numpy``, ``hdf5``) register in :data:`inpaintssl.registry.DATASETS` when this package is
imported (each with the decorator on its class or factory; the imports below load every module
holding one, see
:mod:`inpaintssl.data.datasets`); :func:`build_datasets` turns a
:class:`~inpaintssl.config.DataConfig` into the train/val/test sets of a run.

Example:
    >>> from inpaintssl.data import label_limited_subsets
    >>> len(label_limited_subsets([str(i) for i in range(20)], seed=0)[0.5])
    10
"""

# Modules holding registered datasets: importing them is what registers them.
from inpaintssl.data import ct, dicom_dataset, mni152, skmtea, synthetic, volumes  # noqa: F401
from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.build import DataBundle, build_datasets
from inpaintssl.data.loading import seed_worker
from inpaintssl.data.preprocess import DEFAULT_CT_WINDOWS
from inpaintssl.data.splits import (
    DEFAULT_LABEL_FRACTIONS,
    SplitRecord,
    label_limited_subsets,
    pretraining_supersets,
)

__all__ = [
    "DEFAULT_CT_WINDOWS",
    "DEFAULT_LABEL_FRACTIONS",
    "DataBundle",
    "DataError",
    "SliceDataset",
    "SplitRecord",
    "build_datasets",
    "label_limited_subsets",
    "pretraining_supersets",
    "seed_worker",
]
