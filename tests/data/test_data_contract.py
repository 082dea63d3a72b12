"""Every registered dataset keeps the item contract of inpaintssl.data.base.

Parametrized over ``DATASETS.names()`` and :class:`inpaintssl.testing.DatasetContract`'s checks:
an installed plugin dataset that builds from ``split`` and ``labelled`` alone is checked too.
Every dataset inpaintssl ships (read from the registry) is checked, with the parameters and files
of its recipe in :data:`RECIPES`; one without a recipe fails.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data_builders import make_skmtea, write_dicom_slice, write_nifti
from PIL import Image

from inpaintssl.registry import DATASETS, PluginLoadError, RegistryEntry
from inpaintssl.testing import DatasetContract
from metaimage_helpers import write_metaimage
from nrrd_helpers import write_nrrd


def _ct(root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
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


def _dicom(root: Path) -> dict[str, Any]:
    """An MR series of 3 slices with an RT Structure Set of two classes drawn on it (pydicom only)."""
    from dicom_helpers import write_rtstruct, write_series

    rng = np.random.default_rng(0)
    series = write_series(
        root / "series",
        rng.integers(0, 1000, (3, 6, 8)).astype(np.int16),
        modality="MR",
        positions=[(0.0, 0.0, 2.0 * k) for k in range(3)],
        identity={"FrameOfReferenceUID": "1.2.3"},
    )

    # PixelSpacing (0.5, 0.75), axial at the origin: pixel (row r, column c) is at x = 0.75 c, y = 0.5 r.
    def box(top: float, left: float, bottom: float, right: float) -> list[tuple[float, float]]:
        corners = ((top, left), (top, right), (bottom, right), (bottom, left))
        return [(0.75 * c, 0.5 * r) for r, c in corners]

    rois = [
        (1, "a", [{"points": [(x, y, 2.0 * k) for x, y in box(0.5, 0.5, 3.5, 4.5)]} for k in range(3)]),
        (2, "b", [{"points": [(x, y, 2.0) for x, y in box(3.5, 4.5, 5.5, 7.5)]}]),
    ]
    write_rtstruct(root / "rtstruct.dcm", rois, frame_of_reference="1.2.3")
    return {
        "cases": {"train": {"image": str(series.name), "label": "rtstruct.dcm"}},
        "root": str(root),
        "class_names": ["a", "b"],
    }


def _volumes(name: str) -> Callable[[Path], dict[str, Any]]:
    """The recipe of the volume reader ``name`` (nifti, metaimage, nrrd, numpy, hdf5): one case."""

    def recipe(root: Path) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        image = rng.normal(size=(6, 8, 3)).astype(np.float32)
        label = rng.integers(0, 3, size=(6, 8, 3)).astype(np.uint8)
        common = {"root": str(root), "class_names": ["a", "b"]}
        # Anisotropic voxels, so that a spacing told in the wrong axis order shows.
        spacing = (0.5, 0.75, 2.0)
        if name == "nifti":
            write_nifti(root / "i.nii.gz", image, spacing=spacing)
            write_nifti(root / "l.nii.gz", label, spacing=spacing)
            return {"cases": {"train": {"image": "i.nii.gz", "label": "l.nii.gz"}}, **common}
        if name == "nrrd":
            steps = ((spacing[0], 0, 0), (0, spacing[1], 0), (0, 0, spacing[2]))
            write_nrrd(root / "i.nrrd", image, directions=steps, encoding="gzip")
            write_nrrd(root / "l.nhdr", label, directions=steps)
            return {"cases": {"train": {"image": "i.nrrd", "label": "l.nhdr"}}, **common}
        if name == "metaimage":
            write_metaimage(root / "i.mhd", image, spacing=spacing, compressed=True)
            write_metaimage(root / "l.mha", label, spacing=spacing)
            return {"cases": {"train": {"image": "i.mhd", "label": "l.mha"}}, **common}
        if name == "numpy":
            np.savez(root / "c.npz", image=image, label=label)
            return {
                "cases": {"train": {"image": "c.npz", "label": "c.npz"}},
                "spacing": list(spacing),
                **common,
            }
        import h5py

        with h5py.File(root / "c.h5", "w") as f:
            f["image"], f["label"] = image, label
        return {"cases": {"train": "c.h5"}, "spacing": list(spacing), **common}

    return recipe


RECIPES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "ct": _ct,
    "dicom": _dicom,
    "hdf5": _volumes("hdf5"),
    "metaimage": _volumes("metaimage"),
    "nrrd": _volumes("nrrd"),
    # nilearn's wheel bundles the template, so there is nothing to write.
    "mni152": lambda root: {},
    "nifti": _volumes("nifti"),
    "numpy": _volumes("numpy"),
    "skmtea": lambda root: {"root": str(make_skmtea(root / "skm").root)},
    "synthetic": lambda root: {"num_images": 4, "size": [32, 32]},
}
"""The ``data.params`` of each dataset inpaintssl ships, after writing the files it reads into ``root``."""


def _shipped(entry: RegistryEntry) -> bool:
    """Whether inpaintssl itself provides ``entry``: a built-in, or an entry point of its own distribution."""
    return entry.source == "builtin" or (entry.distribution or "").partition(" ")[0] == "inpaintssl"


# From the registry, not a list kept here: a new built-in dataset is checked (and fails for want of
# a recipe) without anyone remembering to name it in this module.
BUILT_IN = tuple(entry.name for entry in DATASETS.entries() if _shipped(entry))


def _params(name: str, root: Path) -> dict[str, Any]:
    """``data.params`` of dataset ``name``, with its files written into ``root``.

    Raises:
        LookupError: If ``name`` is a built-in with no entry in :data:`RECIPES`.
    """
    if name in RECIPES:
        return RECIPES[name](root)
    if name in BUILT_IN:
        raise LookupError(
            f"built-in dataset {name!r} has no recipe in {__name__}.RECIPES: add the parameters "
            "(and the files) it is built from there"
        )
    return {}  # a plugin checked here builds from split and labelled alone


def _builds_without_files(name: str) -> bool:
    """Whether a plugin dataset builds from ``split`` and ``labelled`` alone."""
    try:
        factory = DATASETS.get(name)
    except PluginLoadError:
        return True  # checked, so that its import error fails its own tests, not this module's collection
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return True
    return not any(
        p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name not in ("split", "labelled", "self")
        for p in signature.parameters.values()
    )


# An installed plugin that needs parameters (files of its own) is checked by its own suite, with
# inpaintssl.testing.DatasetContract and its own params (docs/plugins.rst); one that builds from
# split and labelled alone is checked here too. Every built-in is checked, recipe or not.
CHECKED = [n for n in DATASETS.names() if n in BUILT_IN or _builds_without_files(n)]


def _contract(name: str) -> DatasetContract:
    """The contract of a registered dataset, with the files :func:`_params` writes."""

    class Registered(DatasetContract):
        dataset = name

        def params(self, root: Path) -> dict[str, Any]:
            return _params(name, root)

    return Registered()


def test_every_built_in_dataset_is_checked_with_a_recipe() -> None:
    # The datasets inpaintssl is known to ship: a registry that lost one would otherwise shrink
    # this suite without failing it.
    assert {"ct", "hdf5", "mni152", "nifti", "numpy", "skmtea", "synthetic"} <= set(BUILT_IN)
    assert set(BUILT_IN) <= set(CHECKED)
    missing = sorted(set(BUILT_IN) - set(RECIPES))
    assert not missing, f"built-in datasets without a recipe in RECIPES: {missing}"


def test_a_built_in_without_a_recipe_fails_instead_of_building_with_no_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(RECIPES, "ct")
    with pytest.raises(LookupError, match=r"built-in dataset 'ct' has no recipe"):
        _params("ct", tmp_path)


@pytest.mark.parametrize("name", CHECKED)
@pytest.mark.parametrize("check", DatasetContract.check_names())
def test_registered_dataset_keeps_the_contract(name: str, check: str, tmp_path: Path) -> None:
    getattr(_contract(name), check)(tmp_path)


@pytest.mark.parametrize("name", CHECKED)
def test_registered_dataset_round_trips_through_pickle_after_use(name: str, tmp_path: Path) -> None:
    # The transport of spawned DataLoader workers itself (the contract copies the pickled state
    # with deepcopy, since the library loads no pickles).
    dataset = DATASETS.build(name, split="train", labelled=True, **_params(name, tmp_path))
    before = dataset[len(dataset) - 1]
    after = pickle.loads(pickle.dumps(dataset))[len(dataset) - 1]
    torch.testing.assert_close(after["image"], before["image"])
    torch.testing.assert_close(after["label"], before["label"])
