"""A dataset says whether its unlabelled split holds its test anatomy; mni152 does, others do not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from inpaintssl.data.base import SliceDataset, unlabelled_sees_test_anatomy
from inpaintssl.registry import DATASETS

_MNI152_SAYS = (
    "the mni152 template's coronal and sagittal slices, which cross every axial test slice of the "
    "same template"
)


def test_the_builtin_mni152_declares_its_unlabelled_slices_hold_the_test_anatomy() -> None:
    assert unlabelled_sees_test_anatomy("mni152") == _MNI152_SAYS
    # Asked without building the dataset: parameters that do not change which slices are cut
    # do not change the answer.
    assert unlabelled_sees_test_anatomy("mni152", {"zoom": 0.25, "min_brain_fraction": 0.3}) == _MNI152_SAYS


# Written out by hand: every coronal or sagittal slice crosses every axial test slice; with axial
# among the axes the split holds the test slices themselves.
_TEMPLATE = "the mni152 template's "
_CROSS = ", which cross every axial test slice of the same template"
_INCLUDE = ", which include every axial test slice of the same template"


@pytest.mark.parametrize(
    ("axes", "says"),
    [
        (["coronal", "sagittal"], _TEMPLATE + "coronal and sagittal slices" + _CROSS),
        (["sagittal", "coronal"], _TEMPLATE + "coronal and sagittal slices" + _CROSS),
        (("coronal",), _TEMPLATE + "coronal slices" + _CROSS),
        (["sagittal"], _TEMPLATE + "sagittal slices" + _CROSS),
        (["axial"], _TEMPLATE + "axial slices" + _INCLUDE),
        (["coronal", "axial"], _TEMPLATE + "axial and coronal slices" + _INCLUDE),
        (["sagittal", "axial"], _TEMPLATE + "axial and sagittal slices" + _INCLUDE),
        (["axial", "coronal", "sagittal"], _TEMPLATE + "axial, coronal and sagittal slices" + _INCLUDE),
        (["sagittal", "sagittal"], _TEMPLATE + "sagittal slices" + _CROSS),
        ([], None),  # keeps no slice: the dataset refuses to build
        (["oblique"], None),  # unknown: the dataset refuses to build
    ],
    ids=lambda value: "+".join(value) or "none" if isinstance(value, (list, tuple)) else "",
)
def test_what_mni152_declares_names_the_axes_its_unlabelled_split_is_cut_along(
    axes: list[str], says: str | None
) -> None:
    assert unlabelled_sees_test_anatomy("mni152", {"axes": axes}) == says
    assert unlabelled_sees_test_anatomy("mni152", {"axes": axes, "split": "unlabelled"}) == says


@pytest.mark.parametrize(
    ("split", "says"),
    [
        ("test", "the mni152 template's axial test slices themselves"),
        ("train", None),  # axial slices parallel to the test slices, and the supervised arm's too
        ("val", None),
    ],
)
def test_a_source_of_another_mni152_split_holds_the_test_anatomy_only_for_test(
    split: str, says: str | None
) -> None:
    # build_datasets builds a source with its params' split; its axes are then not used.
    assert unlabelled_sees_test_anatomy("mni152", {"split": split, "axes": ["coronal"]}) == says


@pytest.mark.parametrize(
    "axes", [("coronal",), ("sagittal",), ("axial",), ("axial", "coronal", "sagittal")], ids="+".join
)
def test_the_axes_named_are_the_axes_the_unlabelled_split_is_cut_along(axes: tuple[str, ...]) -> None:
    pytest.importorskip("nibabel")
    from inpaintssl.data.mni152 import MNI152Dataset

    unlabelled = MNI152Dataset(split="unlabelled", labelled=False, axes=axes, zoom=0.25)
    cut = {volume_id.split("_")[0] for volume_id in unlabelled.volume_ids}
    said = unlabelled_sees_test_anatomy("mni152", {"axes": list(axes), "zoom": 0.25})
    assert said is not None
    named = said.removeprefix(_TEMPLATE).split(" slices")[0].replace(",", "").split()
    assert set(named) - {"and"} == cut
    if "axial" in cut:  # the test slices themselves are among them
        test = MNI152Dataset(split="test", zoom=0.25)
        assert set(test.volume_ids) <= set(unlabelled.volume_ids)


def test_what_mni152_declares_is_so() -> None:
    # Its unlabelled and test slices are cut from the same files, and every coronal and sagittal
    # slice spans the whole axial extent, so it holds a row of every axial test slice.
    pytest.importorskip("nibabel")
    from inpaintssl.data.mni152 import MNI152Dataset

    unlabelled = MNI152Dataset(split="unlabelled", labelled=False)
    test = MNI152Dataset(split="test")
    assert unlabelled.data_files == test.data_files
    axial_extent = {unlabelled.slice_shape(i)[0] for i in range(len(unlabelled))}
    assert axial_extent == {94}  # superior at the top: rows are the axial positions at zoom 0.5
    assert all(0 <= test.slice_indices[i] < 94 for i in range(len(test)))


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if n != "mni152"])
def test_other_builtin_datasets_do_not_declare_it(name: str) -> None:
    assert unlabelled_sees_test_anatomy(name) is None


class _Quiet(SliceDataset):
    """A dataset that keeps the base class's hook."""


def _old_plugin(**params: Any) -> SliceDataset:
    """A factory function of a plugin written before the hook existed."""
    return _Quiet()


class _Declares(SliceDataset):
    @classmethod
    def unlabelled_holds_test_anatomy(cls, **params: Any) -> bool:
        return params.get("split", "unlabelled") == "unlabelled"


@pytest.fixture
def registered() -> Iterator[None]:
    names = {"anatomy_quiet": _Quiet, "anatomy_old": _old_plugin, "anatomy_declares": _Declares}
    for name, factory in names.items():
        DATASETS.register(name)(factory)
    try:
        yield
    finally:
        for name in names:
            DATASETS.unregister(name)


@pytest.mark.usefixtures("registered")
def test_a_dataset_without_the_hook_or_with_the_default_is_taken_not_to() -> None:
    assert unlabelled_sees_test_anatomy("anatomy_quiet") is None
    assert unlabelled_sees_test_anatomy("anatomy_old") is None  # a plain function: no hook at all
    assert unlabelled_sees_test_anatomy("not_installed_here") is None  # a report without the plugin


@pytest.mark.usefixtures("registered")
def test_a_plugin_dataset_that_declares_it_is_heard_with_its_source_params() -> None:
    said = unlabelled_sees_test_anatomy("anatomy_declares")
    assert said == (
        "the anatomy_declares dataset's unlabelled slices, which it declares hold the anatomy of its "
        "test split"
    )
    assert unlabelled_sees_test_anatomy("anatomy_declares", {"split": "train"}) is None
