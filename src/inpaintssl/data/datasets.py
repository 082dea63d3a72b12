"""The built-in datasets of :data:`inpaintssl.registry.DATASETS` (a reference table).

Each registers with the ``@DATASETS.register(name)`` decorator on its own class or factory, in
the module named below; :mod:`inpaintssl.data` imports every such module, and the registry
imports :mod:`inpaintssl.data` on its first lookup. A new built-in therefore needs the decorator
and, in a new module, an import in ``inpaintssl/data/__init__.py``
(``tests/test_registration.py`` fails otherwise). Each name builds a
:class:`~inpaintssl.data.base.SliceDataset` as ``DATASETS.build(name, split=..., labelled=...,
**params)``:

=========  ==========================================  =================  ====================================
name       source                                      paper              module
=========  ==========================================  =================  ====================================
mni152     ICBM152 2009a template, bundled by nilearn  demo only (a)      :mod:`inpaintssl.data.mni152`
skmtea     SKM-TEA knee MRI, DICOM-track HDF5 layout   sec. 2.1.1, 2.2    :mod:`inpaintssl.data.skmtea`
ct         CT: DICOM, NIfTI, MetaImage, NRRD, NumPy    sec. 2.1.2, 2.2    :mod:`inpaintssl.data.ct`
dicom      DICOM series of any modality (MR, ...)      sec. 2.1, 2.2 (b)  :mod:`inpaintssl.data.dicom_dataset`
nifti      NIfTI volumes with integer label volumes    sec. 2.1, 2.2 (b)  :mod:`inpaintssl.data.volumes`
metaimage  MetaImage (``.mha``/``.mhd``) volumes       sec. 2.1, 2.2 (b)  :mod:`inpaintssl.data.volumes`
nrrd       NRRD (``.nrrd``/``.nhdr``) volumes          sec. 2.1, 2.2 (b)  :mod:`inpaintssl.data.volumes`
numpy      ``.npy``/``.npz`` arrays                    sec. 2.1, 2.2 (b)  :mod:`inpaintssl.data.volumes`
hdf5       HDF5 datasets                               sec. 2.1, 2.2 (b)  :mod:`inpaintssl.data.volumes`
synthetic  generated shapes for tests and examples     stand-in (c)       :mod:`inpaintssl.data.synthetic`
=========  ==========================================  =================  ====================================

(a) Not data of the paper: a real brain MRI template that installs offline, for the demo and
    the default config.
(b) The library's generalisation of the paper's datasets to the user's own files, with the
    paper's preprocessing (2D slices, z-scored per volume, sec. 2.2).
(c) Not data of the paper: in-memory slices on which every experiment (sec. 2.4-2.7) runs in
    seconds, for tests, examples and install checks; its numbers say nothing about the paper's.

Example:
    >>> from inpaintssl.registry import DATASETS
    >>> built_in = ("ct", "dicom", "hdf5", "metaimage", "mni152", "nifti", "nrrd", "numpy", "skmtea")
    >>> [n for n in built_in if n in DATASETS.names()]
    ['ct', 'dicom', 'hdf5', 'metaimage', 'mni152', 'nifti', 'nrrd', 'numpy', 'skmtea']
"""

from __future__ import annotations

__all__: list[str] = []
