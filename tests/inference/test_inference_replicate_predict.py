"""``predict`` replicated from an export and docs/inference.rst alone (audit item 2).

"Replicating predict outside inpaintssl" lists every step between a scan and its label map. This
test follows that list in NumPy and nibabel, reading nothing but the exported file's metadata, and
gets ``predict``'s labels on an ``mni152`` run, whose slices reach the network turned
(``in_plane: "transpose_flip_rows"``): the step the export metadata once left out.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

import inpaintssl as issl
from inpaintssl.config import DataConfig
from inpaintssl.data.mni152 import load_template
from inpaintssl.inference import export_model
from inpaintssl.inference.loading import HEADER_KEY, ModelInfo, Preprocessing, safetensors_metadata
from inpaintssl.inference.slice_grids import from_display, to_display
from nifti_helpers import stored_as

Network = Callable[[np.ndarray], np.ndarray]


def _crop_or_pad_offsets(length: int, target: int) -> tuple[int, int, int]:
    """Step 5: where the kept part starts in the slice and in the target, and its length."""
    return max(0, (length - target) // 2), max(0, (target - length) // 2), min(length, target)


def _labels(logits: np.ndarray, activation: str) -> np.ndarray:
    """Step 7, on ``(C_out, H, W)`` logits."""
    if activation == "softmax":
        return np.asarray(logits.argmax(axis=0))
    present = logits > 0
    best = np.where(present, logits, -np.inf).argmax(axis=0) + 1
    return np.where(present.any(axis=0), best, 0)


def replicate(scan: Path, meta: dict[str, Any], network: Network, *, turn: bool = True) -> np.ndarray:
    """The label map of ``scan`` by the documented steps (``turn=False`` skips step 4)."""
    pre = meta["preprocessing"]
    image: Any = nib.load(scan)
    volume = np.asarray(image.dataobj, dtype=np.float64)
    # 1. Axis order: the one the training volumes had.
    codes = list(pre["training_orientations"])
    assert len(codes) == 1
    ornt = ornt_transform(io_orientation(image.affine), axcodes2ornt(tuple(codes[0])))
    volume = apply_orientation(volume, ornt)
    # 2. Intensities: one mean and standard deviation over the volume.
    assert pre["normalization"] == "volume" and pre["channels"] == "image"
    volume = (volume - volume.mean()) / volume.std()
    axis, (height, width) = pre["slice_axis"], pre["image_size"]
    assert pre["resize_mode"] == "crop_or_pad"
    turned = turn and pre["in_plane"] == "transpose_flip_rows"
    labels = np.zeros(volume.shape, dtype=np.uint8)
    for k in range(volume.shape[axis]):
        plane = np.take(volume, k, axis=axis)  # 3. Slices.
        if turned:
            plane = plane.T[::-1]  # 4. In-plane transform.
        rows, cols = _crop_or_pad_offsets(plane.shape[0], height), _crop_or_pad_offsets(plane.shape[1], width)
        fitted = np.full((height, width), plane.min())  # 5. Fit, padded with the slice's minimum.
        fitted[rows[1] : rows[1] + rows[2], cols[1] : cols[1] + cols[2]] = plane[
            rows[0] : rows[0] + rows[2], cols[0] : cols[0] + cols[2]
        ]
        logits = network(fitted[None, None].astype(np.float32))[0]  # 6. Network.
        fitted_labels = _labels(logits, meta["activation"])  # 7. Labels.
        back = np.zeros(plane.shape, dtype=np.uint8)  # 8. Back onto the slice; what was cut is 0.
        back[rows[0] : rows[0] + rows[2], cols[0] : cols[0] + cols[2]] = fitted_labels[
            rows[1] : rows[1] + rows[2], cols[1] : cols[1] + cols[2]
        ]
        if turned:
            back = back[::-1].T  # 9. Undo step 4 ...
        index: list[Any] = [slice(None)] * 3
        index[axis] = k
        labels[tuple(index)] = back
    # ... and step 1: onto the input's own grid.
    return np.asarray(
        apply_orientation(labels, ornt_transform(axcodes2ornt(tuple(codes[0])), io_orientation(image.affine)))
    )


def test_the_in_plane_transform_is_in_the_metadata_of_every_kind_of_run(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    assert Preprocessing.from_data_config(DataConfig(dataset="mni152")).in_plane == "transpose_flip_rows"
    for dataset in ("nifti", "numpy", "hdf5", "ct", "synthetic", "some_plugin_dataset"):
        assert Preprocessing.from_data_config(DataConfig(dataset=dataset)).in_plane == "identity"
    exported = export_model(trained_run.run_dir, format="safetensors", output=tmp_path / "model.safetensors")
    stored = json.loads(safetensors_metadata(exported)[HEADER_KEY])
    assert stored["preprocessing"]["in_plane"] == "identity"  # a synthetic run
    # An export written before the field existed still loads, the transform following from its dataset.
    for dataset, expected in (("mni152", "transpose_flip_rows"), ("synthetic", "identity")):
        older = {**stored, "preprocessing": {**stored["preprocessing"], "dataset": dataset}}
        del older["preprocessing"]["in_plane"]
        info = ModelInfo.from_json(json.dumps(older))
        assert info.preprocessing is not None and info.preprocessing.in_plane == expected


def test_the_in_plane_transform_is_transpose_then_flip_rows_and_round_trips() -> None:
    planes = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
    turned = to_display(planes)
    for c in range(2):
        assert np.array_equal(turned[c].numpy(), planes[c].numpy().T[::-1])
    assert torch.equal(from_display(turned), planes)


@pytest.fixture(scope="module")
def mni152_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small mni152 run (quarter-size template, rows cropped and columns padded) and its export."""
    root = tmp_path_factory.mktemp("mni152_replicate")
    run = issl.finetune(
        {
            "data": {"dataset": "mni152", "image_size": [56, 52], "params": {"zoom": 0.25}},
            "model": {"backbone": "unet2d", "params": {"depth": 3, "base_width": 8}},
            "optim": {"max_epochs": 3, "steps_per_epoch": 4, "batch_size": 8},
            "run": {"output_dir": str(root / "run"), "device": "cpu", "quiet": True},
        }
    ).run_dir
    return run, export_model(run, format="safetensors", output=root / "model.safetensors")


def test_the_documented_steps_reproduce_predict_from_an_export(
    mni152_export: tuple[Path, Path], tmp_path: Path
) -> None:
    run, exported = mni152_export
    meta = json.loads(safetensors_metadata(exported)[HEADER_KEY])
    assert meta["preprocessing"]["in_plane"] == "transpose_flip_rows"
    template = load_template(zoom=0.25)
    as_trained = nib.Nifti1Image(template.image.astype(np.float32), np.diag([*template.spacing, 1.0]))
    scan = tmp_path / "brain.nii.gz"
    nib.save(stored_as(as_trained, "PIL"), scan)  # stored in another axis order than training's
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".* on the edges where its slices were cropped")
        predict_labels = issl.predict(run, scan, output=tmp_path / "pred", device="cpu", progress=False)
    expected = np.asarray(nib.load(predict_labels.cases[0].segmentation).dataobj)

    model = issl.load_model(exported)

    def network(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(batch)).numpy())

    replicated = replicate(scan, meta, network)
    assert replicated.shape == expected.shape
    assert (expected > 0).mean() > 0.05 and len(np.unique(expected)) > 2  # labels worth comparing
    # A logit within float rounding of 0 may fall either way (folded weights, other statistics).
    assert (replicated == expected).mean() > 0.9999
    # Without the in-plane step the network sees the anatomy turned: most labels differ.
    assert (replicate(scan, meta, network, turn=False) == expected).mean() < 0.95
