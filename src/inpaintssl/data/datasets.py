"""The built-in datasets of :data:`inpaintssl.registry.DATASETS` (a reference table).

Each registers with the ``@DATASETS.register(name)`` decorator on its own class or factory, in
the module named below; :mod:`inpaintssl.data` imports every such module, and the registry
imports :mod:`inpaintssl.data` on its first lookup. A new built-in therefore needs the decorator
and, in a new module, an import in ``inpaintssl/data/__init__.py``
(``tests/test_registration.py`` fails otherwise). Each name builds a
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

__all__: list[str] = []
