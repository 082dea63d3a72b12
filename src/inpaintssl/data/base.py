"""The contract every dataset keeps: 2D slices with one-hot foreground labels and metadata.

A dataset registered in :data:`inpaintssl.registry.DATASETS` is built as
``DATASETS.build(name, split=..., labelled=..., **params)`` and returns a :class:`SliceDataset`.
Each item is a dict:

``image``
    ``(C, H, W)`` float32 tensor, normalised as in paper sec. 2.2.
``label``
    ``(K, H, W)`` float32 one-hot tensor over the K *foreground* classes (background is the
    pixels where every channel is 0, as in the authors' sigmoid-per-class head). Absent when the
    dataset is unlabelled.
``volume_id``
    The unit that label-limited subsets are drawn by (a scan for 3D data).
``slice_index``
    Index of the slice inside its volume.
``spacing``
    ``(3,)`` float64 tensor ``(row_mm, col_mm, slice_mm)``: the voxel spacing.

Datasets may add more keys (e.g. ``hu`` for CT, ``echo1``/``echo2``/``scan_params`` for
SKM-TEA); collation keeps them.

A dataset whose ``unlabelled`` split holds the anatomy of its ``test`` split (slices of the test
scans, or of one template that every split is cut from, as ``mni152``'s) declares it with the
:meth:`SliceDataset.unlabelled_holds_test_anatomy` hook: a study that pretrains on that split and
fine-tunes on the dataset is then warned that its SSL-vs-supervised comparison is not held out
(:func:`unlabelled_sees_test_anatomy`). A dataset that does not declare it, a factory without the
hook (a plugin written before it) included, is taken not to.

Example:
    >>> from inpaintssl.data.base import SliceDataset
    >>> issubclass(SliceDataset, object)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from inpaintssl.errors import DataError
from inpaintssl.registry import DATASETS, PluginLoadError

__all__ = ["DataError", "SliceDataset", "unlabelled_sees_test_anatomy"]


class SliceDataset(Dataset[dict[str, Any]]):
    """Base class of 2D-slice datasets.

    Subclasses set :attr:`in_channels`, :attr:`class_names` and :attr:`volume_ids`
    (one entry per item) and implement ``__len__`` and ``__getitem__``.
    """

    in_channels: int = 1
    class_names: tuple[str, ...] = ()
    volume_ids: Sequence[str] = ()
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def num_classes(self) -> int:
        """Number of foreground classes K (0 for unlabelled data)."""
        return len(self.class_names)

    @property
    def labelled(self) -> bool:
        """Whether items carry a ``label``."""
        return self.num_classes > 0

    @classmethod
    def unlabelled_holds_test_anatomy(cls, **params: Any) -> str | bool | None:
        """Whether this dataset's ``unlabelled`` split holds the anatomy of its ``test`` split.

        Asked with a pretraining source's ``params`` (as in ``data.unlabelled``), without
        building the dataset. A dataset that declares it returns what those slices are, as a
        phrase that completes "pretrain.data.unlabelled holds ..." (``mni152``: "the mni152
        template's coronal and sagittal slices, which cross every axial test slice of the same
        template"), or ``True``; ``None`` or ``False`` when it does not (the default).
        """
        return None

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the first item (datasets of mixed sizes must be fitted to one size)."""
        image = self[0]["image"]
        assert isinstance(image, torch.Tensor)
        c, h, w = image.shape
        return int(c), int(h), int(w)


def unlabelled_sees_test_anatomy(dataset: str, params: Mapping[str, Any] | None = None) -> str | None:
    """What the registered ``dataset``'s ``unlabelled`` split holds of its ``test`` anatomy, if it says.

    Asks the factory's :meth:`SliceDataset.unlabelled_holds_test_anatomy` hook. A factory without
    the hook (a plain function, a plugin written before the hook) and a name not registered here
    (a plugin not installed, or failing to import, where a report is written) declare nothing:
    ``None``.

    Args:
        dataset: Registered dataset name (``data.unlabelled[i].dataset``).
        params: The source's parameters.

    Returns:
        A phrase that completes "pretrain.data.unlabelled holds ...", or ``None``.

    Example:
        >>> unlabelled_sees_test_anatomy("mni152")[:45]
        "the mni152 template's coronal and sagittal sl"
        >>> unlabelled_sees_test_anatomy("synthetic") is None
        True
    """
    try:
        factory = DATASETS.get(dataset)
    except (KeyError, PluginLoadError):
        return None  # a study refuses these names before training (StudySpec.check_component_names)
    hook = getattr(factory, "unlabelled_holds_test_anatomy", None)
    if not callable(hook):
        return None
    said = hook(**dict(params or {}))
    if said is True:
        return (
            f"the {dataset} dataset's unlabelled slices, which it declares hold the anatomy of its test split"
        )
    return said if isinstance(said, str) and said else None
