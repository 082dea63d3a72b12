"""NIfTI files whose arrays carry singleton axes after the third (one time point; an ITK vector
image's ``(X, Y, Z, 1, C)``) read as the volume they hold. Every file is written with nibabel, and
what it must read as is worked out here from the array written, independently of the reader."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_builders import write_nifti
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.data.base import DataError
from inpaintssl.data.decompressed import decompressed_into
from inpaintssl.data.readers import LABEL_RANKS, NiftiVolume, nifti_volume_shape, open_volume

SPACING = (0.5, 0.6, 2.0)
RNG = np.random.default_rng(11)
VOLUME = RNG.normal(100.0, 20.0, size=(6, 5, 4)).astype(np.float32)
CHANNELS = RNG.normal(0.0, 1.0, size=(6, 5, 4, 3)).astype(np.float32)
LABELS = RNG.integers(0, 4, size=(6, 5, 4)).astype(np.uint8)


def _slices(volume: NiftiVolume) -> list[np.ndarray]:
    return [np.asarray(volume.read(i)) for i in range(volume.num_slices)]


def _expected_slices(array: np.ndarray, axis: int) -> list[np.ndarray]:
    # A channels-last volume's slice keeps its channels last: (H, W, C).
    return [np.take(array, i, axis=axis) for i in range(array.shape[axis])]


# (array as it should read, the shape it is stored with)
STORED = {
    "volume-one-time-point": (VOLUME, (6, 5, 4, 1)),
    "volume-two-singletons": (VOLUME, (6, 5, 4, 1, 1)),
    "itk-vector-image": (CHANNELS, (6, 5, 4, 1, 3)),
    "channels-one-trailing": (CHANNELS, (6, 5, 4, 3, 1)),
}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("axis", [0, 2])
@pytest.mark.parametrize("case", STORED)
def test_singleton_axes_after_the_third_read_as_the_volume_they_hold(
    tmp_path: Path, case: str, axis: int, suffix: str
) -> None:
    array, stored = STORED[case]
    path = tmp_path / f"scan{suffix}"
    write_nifti(path, array.reshape(stored), spacing=SPACING)
    assert nib.load(path).shape == stored  # nibabel keeps the axes as written

    volume = NiftiVolume(path, slice_axis=axis)
    assert volume.file_shape == stored
    assert volume.shape == volume.stored_shape == array.shape
    assert volume.channels == (array.shape[3] if array.ndim == 4 else 1)
    assert volume.stored_zooms == pytest.approx(SPACING)
    for got, want in zip(_slices(volume), _expected_slices(array, axis), strict=True):
        assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("case", STORED)
def test_a_decompressed_copy_on_disk_holds_the_volume_without_its_singleton_axes(
    tmp_path: Path, case: str
) -> None:
    array, stored = STORED[case]
    path = tmp_path / "scan.nii.gz"
    write_nifti(path, array.reshape(stored), spacing=SPACING)
    with decompressed_into(tmp_path / "cache"):
        first = NiftiVolume(path)
        assert np.array_equal(np.stack(_slices(first), axis=2), array)
        # A second volume reads the kept copy, which must have been written in the shape read.
        again = NiftiVolume(path)
        assert np.array_equal(np.stack(_slices(again), axis=2), array)
    assert list((tmp_path / "cache").rglob("*.npy"))


def test_a_label_map_with_one_time_point_is_read_as_a_label_volume(tmp_path: Path) -> None:
    path = tmp_path / "label.nii.gz"
    write_nifti(path, LABELS.reshape(6, 5, 4, 1), spacing=SPACING)
    volume = open_volume(path, ranks=LABEL_RANKS)
    assert volume.shape == LABELS.shape
    assert np.array_equal(np.stack(_slices(volume), axis=2), LABELS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored", "ranks", "read_as"),
    [
        ((6, 5, 4, 1, 3), LABEL_RANKS, (6, 5, 4, 3)),  # a vector image given as a label map
        ((6, 5, 4, 2, 3), None, (6, 5, 4, 2, 3)),  # time points and channels
    ],
    ids=["vector-label", "time-and-channels"],
)
def test_what_is_left_after_the_singleton_axes_is_refused_naming_the_stored_shape(
    tmp_path: Path, stored: tuple[int, ...], ranks: frozenset[int] | None, read_as: tuple[int, ...]
) -> None:
    path = tmp_path / "odd.nii.gz"
    write_nifti(path, np.zeros(stored, dtype=np.float32))
    stated = "" if stored == read_as else f" \\(stored shape {re.escape(str(stored))}\\)"
    with pytest.raises(
        DataError,
        match=rf"^NIfTI file{stated} {re.escape(str(path))}: array has rank {len(read_as)} "
        rf"\(shape {re.escape(str(read_as))}\); expected rank",
    ):
        NiftiVolume(path) if ranks is None else NiftiVolume(path, ranks=ranks)


@given(st.lists(st.integers(1, 4), min_size=2, max_size=7))
def test_nifti_volume_shape_drops_only_singletons_after_the_third_axis(shape: list[int]) -> None:
    read_as = nifti_volume_shape(shape)
    assert read_as[:3] == tuple(shape[:3])
    assert 1 not in read_as[3:]
    assert [n for n in shape[3:] if n > 1] == list(read_as[3:])
    assert int(np.prod(read_as)) == int(np.prod(shape))  # the same voxels, so a reshape is a view
    assert nifti_volume_shape(read_as) == read_as
