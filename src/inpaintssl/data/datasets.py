"""Registers the built-in datasets in :data:`inpaintssl.registry.DATASETS`.

The registry imports this module on its first lookup. Each name builds a
:class:`~inpaintssl.data.base.SliceDataset` as ``DATASETS.build(name, split=..., labelled=...,
**params)``:

=========  =====================================================  ==============================
name       source                                                 module
=========  =====================================================  ==============================
mni152     ICBM152 2009a template bundled with nilearn (demo)     :mod:`inpaintssl.data.mni152`
skmtea     SKM-TEA knee MRI, DICOM-track HDF5 layout              :mod:`inpaintssl.data.skmtea`
ct         CT: DICOM series/slices, NIfTI or NumPy, 3 HU windows  :mod:`inpaintssl.data.ct`
nifti      NIfTI volumes with integer label volumes               :mod:`inpaintssl.data.volumes`
numpy      ``.npy``/``.npz`` arrays                               :mod:`inpaintssl.data.volumes`
hdf5       HDF5 datasets                                          :mod:`inpaintssl.data.volumes`
synthetic  generated shapes for tests and install checks          :mod:`inpaintssl.data.synthetic`
=========  =====================================================  ==============================

Example:
    >>> from inpaintssl.registry import DATASETS
    >>> [n for n in ("ct", "hdf5", "mni152", "nifti", "numpy", "skmtea") if n in DATASETS.names()]
    ['ct', 'hdf5', 'mni152', 'nifti', 'numpy', 'skmtea']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import inpaintssl.data.synthetic  # noqa: F401  (registers "synthetic" with its own decorator)
from inpaintssl.data.ct import ct_dataset
from inpaintssl.data.mni152 import MNI152Dataset
from inpaintssl.data.skmtea import SKMTEADataset
from inpaintssl.data.volumes import hdf5_dataset, nifti_dataset, numpy_dataset
from inpaintssl.registry import DATASETS

__all__ = ["BUILTIN_DATASETS"]

BUILTIN_DATASETS: dict[str, Callable[..., Any]] = {
    "mni152": MNI152Dataset,
    "skmtea": SKMTEADataset,
    "ct": ct_dataset,
    "nifti": nifti_dataset,
    "numpy": numpy_dataset,
    "hdf5": hdf5_dataset,
}

for _name, _factory in BUILTIN_DATASETS.items():
    DATASETS.register(_name)(_factory)
