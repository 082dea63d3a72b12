"""``Volume.release``: a reader drops what a read decompressed, and reads the file again after it.

Every format the readers open is written with its real library; each volume is read in full,
released and read again. The values must be the same, bit for bit, and the array the first read
kept must be gone: not in the volume, and freed (no reference left anywhere, a weak reference to it
dies), since the point of releasing is the memory (``predict`` releases each scan after checking it).
"""

from __future__ import annotations

import gc
import pickle
import weakref
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from volume_formats import FORMATS, IMAGE

from inpaintssl.data.loading import H5Files
from inpaintssl.data.readers import H5Volume, Volume


def _read_all(volume: Volume) -> list[np.ndarray]:
    # Copies: a slice may be a view of the kept array, which would keep it alive.
    return [volume.read(i).copy() for i in range(volume.num_slices)]


def _geometry(volume: Volume) -> tuple[Any, ...]:
    affine = volume.world_affine
    return (
        volume.shape,
        volume.spacing,
        volume.slice_axis,
        volume.num_slices,
        volume.orientation,
        volume.reorientation,
        None if affine is None else affine.tolist(),
    )


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_read_release_read_gives_the_same_values_and_drops_the_kept_array(tmp_path: Path, fmt: str) -> None:
    opened, keeps = FORMATS[fmt]
    volume = opened(tmp_path)
    geometry = _geometry(volume)
    first = _read_all(volume)
    assert ("_cache" in volume.__dict__) is keeps, fmt  # what a read keeps, if anything
    kept = weakref.ref(volume.__dict__["_cache"]) if keeps else None

    volume.release()

    assert "_cache" not in volume.__dict__
    gc.collect()
    assert kept is None or kept() is None, "the released array is still referenced"
    assert _geometry(volume) == geometry
    again = _read_all(volume)
    assert len(again) == len(first) == volume.num_slices
    for i, (one, other) in enumerate(zip(first, again)):
        assert one.dtype == other.dtype and one.shape == other.shape, (fmt, i)
        assert np.array_equal(one, other), (fmt, i)
    # A second release, and a release of a volume never read since, are harmless.
    volume.release()
    volume.release()
    assert np.array_equal(volume.read(volume.num_slices - 1), first[-1])


def test_releasing_one_hdf5_volume_keeps_the_shared_handle_of_the_others(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as handle:
        handle["image"] = IMAGE
        handle["label"] = IMAGE.astype(np.uint8)
    handles = H5Files()
    image = H5Volume(tmp_path / "v.h5", key="image", handles=handles)
    label = H5Volume(tmp_path / "v.h5", key="label", handles=handles)
    label.read(0)
    shared = handles.get(tmp_path / "v.h5")
    image.read(1)
    image.release()
    assert handles.get(tmp_path / "v.h5") is shared and shared.id.valid
    assert np.array_equal(label.read(2), IMAGE[..., 2].astype(np.uint8))
    assert np.array_equal(image.read(1), IMAGE[..., 1])


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_volume_sent_to_a_started_worker_goes_without_what_reads_kept(tmp_path: Path, fmt: str) -> None:
    # Workers started by forkserver or spawn get the dataset pickled: each reads its volumes again
    # and keeps its own arrays (docs/guides/nifti.rst, "What a run keeps in memory").
    opened, keeps = FORMATS[fmt]
    volume = opened(tmp_path)
    first = _read_all(volume)
    sent = pickle.loads(pickle.dumps(volume))
    assert "_cache" not in sent.__dict__
    assert ("_cache" in volume.__dict__) is keeps  # the sender keeps its own
    again = _read_all(sent)
    assert ("_cache" in sent.__dict__) is keeps
    for i, (one, other) in enumerate(zip(first, again)):
        assert one.dtype == other.dtype and np.array_equal(one, other), (fmt, i)
