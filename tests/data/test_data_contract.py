"""Every registered dataset keeps the item contract of inpaintssl.data.base.

Parametrized over ``DATASETS.names()``: a plugin dataset is checked too. Built-ins that need files
get them from :func:`_params`; any other name must build from ``split`` and ``labelled`` alone (a
plugin that needs parameters adds them there).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data_builders import make_skmtea, write_dicom_slice, write_nifti
from PIL import Image
from torch.utils.data import default_collate

from inpaintssl.data.base import SliceDataset
from inpaintssl.data.orientation import check_axis_codes, training_orientations
from inpaintssl.data.views import (
    ConcatSlices,
    FitToSize,
    ImagesOnly,
    Subset,
    slice_orientation_of,
    slice_shape_of,
    slice_spacing_of,
)
from inpaintssl.registry import DATASETS


def _params(name: str, root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    if name == "skmtea":
        return {"root": str(make_skmtea(root / "skm").root)}
    if name == "ct":
        write_dicom_slice(
            root / "a.dcm",
            rng.integers(0, 2000, (6, 8)).astype(np.int16),
            slope=1.0,
            intercept=-1024.0,
            z=0.0,
            instance=1,
        )
        Image.fromarray(rng.integers(0, 5, (6, 8)).astype(np.uint8)).save(root / "a.png")
        return {"cases": {"train": {"image": "a.dcm", "label": "a.png"}}, "root": str(root)}
    image = rng.normal(size=(6, 8, 3)).astype(np.float32)
    label = rng.integers(0, 3, size=(6, 8, 3)).astype(np.uint8)
    common = {"root": str(root), "class_names": ["a", "b"]}
    # Anisotropic voxels, so that a spacing told in the wrong axis order shows.
    spacing = (0.5, 0.75, 2.0)
    if name == "nifti":
        write_nifti(root / "i.nii.gz", image, spacing=spacing)
        write_nifti(root / "l.nii.gz", label, spacing=spacing)
        return {"cases": {"train": {"image": "i.nii.gz", "label": "l.nii.gz"}}, **common}
    if name == "numpy":
        np.savez(root / "c.npz", image=image, label=label)
        return {"cases": {"train": {"image": "c.npz", "label": "c.npz"}}, "spacing": list(spacing), **common}
    if name == "hdf5":
        import h5py

        with h5py.File(root / "c.h5", "w") as f:
            f["image"], f["label"] = image, label
        return {"cases": {"train": "c.h5"}, "spacing": list(spacing), **common}
    if name == "synthetic":
        return {"num_images": 4, "size": [32, 32]}
    return {}


def _check_item(ds: SliceDataset, index: int) -> dict[str, Any]:
    item = ds[index]
    image = item["image"]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32 and image.ndim == 3
    assert image.shape[0] == ds.in_channels
    assert torch.isfinite(image).all()
    assert isinstance(item["volume_id"], str) and item["volume_id"] == ds.volume_ids[index]
    assert isinstance(item["slice_index"], int)
    spacing = torch.as_tensor(item["spacing"], dtype=torch.float64)
    assert spacing.shape == (3,) and (spacing > 0).all()
    # What the dataset tells without reading an item is what the item holds.
    assert slice_shape_of(ds, index) == tuple(image.shape[-2:])
    assert slice_spacing_of(ds, index) == pytest.approx(tuple(spacing[:2].tolist()), rel=1e-12)
    codes = slice_orientation_of(ds, index)  # unknown (None) or three valid axis codes
    assert codes is None or check_axis_codes(codes, where="slice_orientation") == codes
    if ds.labelled:
        label = item["label"]
        assert label.dtype == torch.float32 and label.shape == (ds.num_classes, *image.shape[1:])
        assert set(label.unique().tolist()) <= {0.0, 1.0}
        assert label.sum(0).max() <= 1  # foreground classes are exclusive; background is all-zero
    else:
        assert "label" not in item
    return item


@pytest.mark.parametrize("name", DATASETS.names())
@pytest.mark.parametrize("labelled", [True, False])
def test_registered_dataset_keeps_the_item_contract(name: str, labelled: bool, tmp_path: Path) -> None:
    ds = DATASETS.build(name, split="train", labelled=labelled, **_params(name, tmp_path))
    assert isinstance(ds, SliceDataset)
    assert len(ds) > 0 and len(ds.volume_ids) == len(ds)
    assert ds.labelled is labelled and (ds.num_classes > 0) is labelled
    first, last = _check_item(ds, 0), _check_item(ds, len(ds) - 1)
    if first["image"].shape == last["image"].shape:
        batch = default_collate([first, last])  # extras must collate with torch's default rules
        assert batch["image"].shape[0] == 2


@pytest.mark.parametrize("name", DATASETS.names())
def test_registered_dataset_survives_pickling_after_use(name: str, tmp_path: Path) -> None:
    # spawn/forkserver DataLoader workers receive the dataset pickled, open handles and caches included
    ds = DATASETS.build(name, split="train", labelled=True, **_params(name, tmp_path))
    before = ds[len(ds) - 1]
    clone = pickle.loads(pickle.dumps(ds))
    after = clone[len(clone) - 1]
    torch.testing.assert_close(after["image"], before["image"])
    torch.testing.assert_close(after["label"], before["label"])


@pytest.mark.parametrize("name", DATASETS.names())
def test_views_tell_shape_and_spacing_as_their_items_hold_them(name: str, tmp_path: Path) -> None:
    ds = DATASETS.build(name, split="train", labelled=True, **_params(name, tmp_path))
    views = {
        "subset": Subset(ds, list(range(len(ds)))[::-1]),
        "images_only": ImagesOnly(ds),
        "concat": ConcatSlices([ds, ds], names=["a", "b"]),
        "crop": FitToSize(ds, (4, 12), mode="crop_or_pad"),
        # Resizing scales the spacing, so that physical sizes (areas, volumes) are kept.
        "resize": FitToSize(ds, (12, 4), mode="resize"),
    }
    for kind, view in views.items():
        for index in (0, len(view) - 1):
            item = view[index]
            spacing = torch.as_tensor(item["spacing"], dtype=torch.float64)[:2].tolist()
            assert slice_shape_of(view, index) == tuple(item["image"].shape[-2:]), kind
            assert slice_spacing_of(view, index) == pytest.approx(tuple(spacing), rel=1e-12), kind
        # Views keep the orientation of the volume a slice comes from.
        assert set(training_orientations(view)) == set(training_orientations(ds)), kind
