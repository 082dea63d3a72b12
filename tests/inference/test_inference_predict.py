"""``predict``: label maps on new scans, on the input's own voxel grid (issue 15, item 1).

The scans are the ICBM152 template bundled with nilearn (``load_template(zoom=0.25)``, cropped to
48x56x40) written as NIfTI with a rotated, translated, anisotropic affine. Three tiny runs are
trained by the library on that data through the ``nifti`` dataset: a softmax run on the slices'
own size (its predictions must match what ``evaluate`` scores, Dice for Dice), a 2-channel run
that crops slices to 48x48 and a run that resizes them to 32x32.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import importlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import inpaintssl as issl
from dicom_helpers import write_mr_slice
from inpaintssl.checkpoint import CheckpointError
from inpaintssl.cli import main as cli_main
from inpaintssl.config import DataConfig, FinetuneConfig, load_config
from inpaintssl.data.base import DataError
from inpaintssl.data.build import build_datasets
from inpaintssl.data.cases import case_stem
from inpaintssl.data.mni152 import load_template
from inpaintssl.data.readers import NiftiVolume, Volume
from inpaintssl.data.volumes import Case, VolumeSliceDataset
from inpaintssl.inference import labelling, preparation, writing
from inpaintssl.inference.inputs import case_names, expand_inputs
from inpaintssl.inference.loading import load_model, recorded_spacing
from inpaintssl.inference.predict import (
    CUT_EDGE_WARN_SHARE,
    PredictionError,
    label_map,
    predict,
)
from inpaintssl.inference.slice_grids import shrinks_past_bilinear
from nifti_helpers import stored_as

CLASSES = ("csf", "gm", "wm")
# Exactly representable in float32, so header round trips and voxel volumes are exact.
AFFINE = np.array(
    [[0.0, -3.5, 0.0, 90.0], [3.0, 0.0, 0.0, -120.0], [0.0, 0.0, 4.25, -70.0], [0.0, 0.0, 0.0, 1.0]]
)
VOXEL_MM3 = 3.0 * 3.5 * 4.25
TINY = {"backbone": "unet2d", "params": {"depth": 3, "base_width": 8}}


def _save(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, AFFINE), path)
    return path


@pytest.fixture(scope="module")
def brains(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three brains a (train), b (val), c (test), 3D and 2-channel 4D, with integer labels."""
    root = tmp_path_factory.mktemp("brains")
    t = load_template(zoom=0.25)
    image = t.image[:48, 1:57, 4:44] * 80.0 + 400.0
    label = t.label[:48, 1:57, 4:44].astype(np.uint8)
    rng = np.random.default_rng(0)
    variants = {
        "a": (image, label),
        "b": (image[::-1], label[::-1]),
        "c": (image * 1.1 + rng.normal(0, 8.0, image.shape), label),
    }
    for name, (img, lab) in variants.items():
        img = np.ascontiguousarray(img, dtype=np.float32)
        _save(root / f"{name}.nii.gz", img)
        _save(root / f"{name}_seg.nii.gz", np.ascontiguousarray(lab))
        # A second contrast: inverted intensities, as a T2 next to a T1.
        _save(root / f"{name}_4d.nii.gz", np.stack([img, 1000.0 - 0.5 * img], axis=-1))
    return root


def _finetune(root: Path, out: Path, *, suffix: str = "", **data: Any) -> Path:
    cases = {
        split: {"image": f"{n}{suffix}.nii.gz", "label": f"{n}_seg.nii.gz"}
        for split, n in (("train", "a"), ("val", "b"), ("test", "c"))
    }
    params = {"root": str(root), "cases": cases, "class_names": list(CLASSES), **data.pop("params", {})}
    loss = data.pop("loss", {})
    result = issl.finetune(
        {
            "data": {"dataset": "nifti", "params": params, **data},
            "model": TINY,
            "loss": loss,
            "optim": {"max_epochs": 4, "batch_size": 8},
            "run": {"output_dir": str(out), "device": "cpu", "quiet": True},
        }
    )
    return result.run_dir


@pytest.fixture(scope="module")
def softmax_run(brains: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Softmax head on the slices' own 48x56 size (no fitting): predictions are evaluate's."""
    return _finetune(
        brains, tmp_path_factory.mktemp("softmax") / "run", loss={"params": {"activation": "softmax"}}
    )


@pytest.fixture(scope="module")
def crop_run_4d(brains: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sigmoid heads, 2-channel input z-scored per channel, slices cropped to 48x48."""
    return _finetune(
        brains,
        tmp_path_factory.mktemp("crop4d") / "run",
        suffix="_4d",
        params={"normalize": "channel"},
        image_size=[48, 48],
    )


@pytest.fixture(scope="module")
def resize_run(brains: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sigmoid heads, slices resized to 32x32."""
    return _finetune(
        brains, tmp_path_factory.mktemp("resize") / "run", image_size=[32, 32], resize_mode="resize"
    )


def _data_config(run: Path) -> DataConfig:
    return load_config(run / "config.yaml", FinetuneConfig).data


def _model_outputs(run: Path) -> tuple[list[torch.Tensor], Any]:
    """Logits of the run's own test slices (as training fitted them), and the loaded model."""
    model = load_model(run)
    test = build_datasets(_data_config(run), stage="finetune", seed=0, size_multiple=4).test
    assert test is not None
    with torch.no_grad():
        logits = [model(test[i]["image"][None])[0] for i in range(len(test))]
    return logits, model


def _nifti(path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    image = nib.load(path)
    return np.asarray(image.dataobj), np.asarray(image.affine), image.header


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _dice(pred: np.ndarray, target: np.ndarray) -> float:
    total = pred.sum() + target.sum()
    return 1.0 if total == 0 else 2.0 * float((pred & target).sum()) / float(total)


def test_label_map_is_on_the_input_grid_and_scores_as_evaluate(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pred"
    report = predict(softmax_run, brains / "c.nii.gz", output=out, batch_size=9, device="cpu", progress=False)
    assert report.cases[0].cut_edge_voxels == 0 and report.cases[0].cut_edge_share == 0.0  # nothing cut
    seg, affine, header = _nifti(out / "c_seg.nii.gz")
    source = nib.load(brains / "c.nii.gz")
    assert seg.shape == source.shape == report.cases[0].shape
    assert np.array_equal(affine, source.affine)
    assert header.get_data_dtype() == np.uint8
    assert header.get_sform(coded=True)[1] == source.header.get_sform(coded=True)[1]
    assert set(np.unique(seg)) <= {0, 1, 2, 3} and (seg > 0).any()
    # The output folder and files have the modes a plain mkdir and write give (not mkdtemp's 0o700).
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain.txt").write_text("")
    assert out.stat().st_mode == (tmp_path / "plain").stat().st_mode
    assert {p.stat().st_mode for p in out.iterdir()} == {(tmp_path / "plain.txt").stat().st_mode}

    # The same model and data through evaluate(): per-slice Dice identical to the written labels'.
    table = issl.evaluate(softmax_run, _data_config(softmax_run), split="test", device="cpu", batch_size=9)
    truth = np.asarray(nib.load(brains / "c_seg.nii.gz").dataobj)
    rows = table.select(level="image").rows
    assert len(rows) == seg.shape[2]
    for row in rows:
        s = row["slice_index"]
        for k, name in enumerate(CLASSES):
            assert _dice(seg[..., s] == k + 1, truth[..., s] == k + 1) == row[f"dice_{name}"], (s, name)

    # volumes.csv: voxel count x voxel volume from the header zooms, in mL.
    (row,) = _read_csv(out / "volumes.csv")
    assert row["case"] == "c" and Path(row["file"]) == brains / "c.nii.gz"
    assert np.prod(header.get_zooms()) == VOXEL_MM3
    for k, name in enumerate(CLASSES):
        expected = np.count_nonzero(seg == k + 1) * VOXEL_MM3 / 1000.0
        assert float(row[f"{name}_ml"]) == pytest.approx(expected, rel=1e-12)
        assert report.cases[0].volumes_ml[name] == pytest.approx(expected, rel=1e-12)
    # Then the checks: the training data's own 3 x 3.5 mm pixels, nothing cropped.
    checks = (row["in_plane_spacing_mm"], row["spacing_fits_training"], row["cut_edge_share"])
    assert checks == ("3x3.5", "true", "0")
    assert sorted(p.name for p in out.iterdir()) == ["c_seg.nii.gz", "volumes.csv"]


def test_crop_or_pad_4d_inverts_the_crop(crop_run_4d: Path, brains: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = predict(
            crop_run_4d, brains / "c_4d.nii.gz", output=out, device="cpu", probabilities=True, progress=False
        )
    seg, affine, _ = _nifti(out / "c_4d_seg.nii.gz")
    prob, prob_affine, prob_header = _nifti(out / "c_4d_prob.nii.gz")
    assert (
        seg.shape == (48, 56, 40) and np.array_equal(affine, AFFINE) and np.array_equal(prob_affine, AFFINE)
    )
    assert prob.shape == (48, 56, 40, 3) and prob_header.get_data_dtype() == np.float32

    # The brains are cut tightly, so the crop to 48 columns cuts anatomy: the cut edges are
    # columns 4 and 51 (the outermost the model saw) of 48 rows in 40 slices.
    (case,) = report.cases
    on_edges = int((seg[:, [4, 51], :] > 0).sum())
    assert case.cut_edge_voxels == on_edges
    assert case.cut_edge_share == pytest.approx(on_edges / (48 * 2 * 40))
    assert case.cut_edge_share >= CUT_EDGE_WARN_SHARE
    (row,) = _read_csv(out / "volumes.csv")
    assert float(row["cut_edge_share"]) == pytest.approx(case.cut_edge_share, rel=1e-3)
    messages = [str(w.message) for w in caught]
    (warned,) = [m for m in messages if "on the edges where its slices were cropped" in m]
    assert f"input {brains / 'c_4d.nii.gz'}: {on_edges} of the 3840 voxels" in warned
    assert "data.image_size=[48, 48]" in warned

    # Training cropped columns 4..51 of each 48x56 slice: inside, the written labels are the
    # model's predictions on the run's own test slices; outside, background.
    logits, model = _model_outputs(crop_run_4d)
    assert seg[:, :4].max() == 0 and seg[:, 52:].max() == 0 and prob[:, :4].max() == 0
    for s, lg in enumerate(logits):
        onehot = model.predict_onehot(lg[None])[0].numpy() > 0.5  # evaluate's prediction
        window = seg[:, 4:52, s]
        count = onehot.sum(axis=0)
        single = count == 1
        assert np.array_equal(window[single], onehot.argmax(axis=0)[single] + 1)
        assert (window[count == 0] == 0).all()
        # Overlapping sigmoid classes: the most probable of those above 0.5.
        probs = torch.sigmoid(lg).numpy()
        assert np.allclose(prob[:, 4:52, s].transpose(2, 0, 1), probs, atol=1e-6)
        many = count > 1
        best = np.where(onehot, probs, -1.0).argmax(axis=0) + 1
        assert np.array_equal(window[many], best[many])


def test_cut_edges_of_a_slice_cut_one_way_and_padded_the_other_count_only_its_pixels(
    crop_run_4d: Path, brains: Path, tmp_path: Path
) -> None:
    # 40x56 slices for a 48x48 model: the columns are cut (4..51 kept), the rows padded (4 rows of
    # padding above and below). The cut edges are columns 4 and 51 of the scan's 40 rows, not the
    # model grid's 48 rows, and labels the network puts on the padding are no labels of the scan.
    source = nib.load(brains / "c_4d.nii.gz")
    short = tmp_path / "short.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj)[4:44], source.affine), short)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = predict(crop_run_4d, short, output=tmp_path / "pred", device="cpu", progress=False)
    seg, _, _ = _nifti(tmp_path / "pred" / "short_seg.nii.gz")
    (case,) = report.cases
    assert seg.shape == (40, 56, 40)
    on_edges = int((seg[:, [4, 51], :] > 0).sum())
    assert on_edges > 0  # the tightly cut brains reach the crop
    assert case.cut_edge_voxels == on_edges
    assert case.cut_edge_share == pytest.approx(on_edges / (40 * 2 * 40))


def test_sliding_windows_cover_the_whole_slice(
    crop_run_4d: Path, brains: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pred"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = predict(
            crop_run_4d,
            brains / "c_4d.nii.gz",
            output=out,
            device="cpu",
            probabilities=True,
            progress=False,
            large_slices="sliding_window",
            batch_size=3,
        )
    assert not [w for w in caught if "cropped" in str(w.message)] and report.cases[0].cut_edge_voxels == 0
    seg, _, _ = _nifti(out / "c_4d_seg.nii.gz")
    prob, _, _ = _nifti(out / "c_4d_prob.nii.gz")
    assert seg[:, :4].max() > 0 and seg[:, 52:].max() > 0  # the columns the centre crop never saw

    # The same by hand: the run's own test slices uncropped (48x56), windows of 48x48 at columns
    # 0 and 8, sigmoid probabilities blended with Gaussian weights (sigma = side / 8).
    model = load_model(crop_run_4d)
    whole = _data_config(crop_run_4d).model_copy(update={"image_size": None})
    test = build_datasets(whole, stage="finetune", seed=0, size_multiple=4).test
    assert test is not None and len(test) == seg.shape[2]
    axis = (np.arange(48) - 23.5) / 6.0
    weight = np.exp(-0.5 * axis[:, None] ** 2) * np.exp(-0.5 * axis[None, :] ** 2)
    for s in (0, len(test) // 2, len(test) - 1):
        image = test[s]["image"]
        assert tuple(image.shape[-2:]) == (48, 56)
        blended, norm = np.zeros((len(CLASSES), 48, 56)), np.zeros((48, 56))
        for left in (0, 8):
            with torch.no_grad():
                window = torch.sigmoid(model(image[None, :, :, left : left + 48]))[0].numpy()
            blended[:, :, left : left + 48] += window * weight
            norm[:, left : left + 48] += weight
        blended /= norm
        np.testing.assert_allclose(prob[:, :, s].transpose(2, 0, 1), blended, atol=1e-5)
        clear = np.abs(blended - 0.5).min(axis=0) > 1e-4  # no class on the 0.5 knife edge
        on = blended > 0.5
        expected = np.where(on.any(axis=0), np.where(on, blended, -1.0).argmax(axis=0) + 1, 0)
        assert np.array_equal(seg[:, :, s][clear], expected[clear])

    # The command line gives the same files.
    args = ["predict", str(crop_run_4d), str(brains / "c_4d.nii.gz"), "--output", str(tmp_path / "cli")]
    flags = ["--device", "cpu", "--quiet", "--large-slices", "sliding_window", "--batch-size", "3"]
    assert cli_main([*args, *flags]) == 0
    assert np.array_equal(_nifti(tmp_path / "cli" / "c_4d_seg.nii.gz")[0], seg)
    # Cropped instead, the summary line names the case whose anatomy the crop cut.
    capsys.readouterr()
    with pytest.warns(UserWarning, match="large_slices='sliding_window'"):
        assert cli_main([*args[:-1], str(tmp_path / "cropped"), "--device", "cpu", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["anatomy_cut_by_crop"] == ["c_4d"]


def test_sliding_windows_change_nothing_where_nothing_is_cropped(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    for mode in ("crop", "sliding_window"):
        predict(softmax_run, brains / "c.nii.gz", output=tmp_path / mode, device="cpu", progress=False,
                large_slices=mode)  # fmt: skip
    assert np.array_equal(
        _nifti(tmp_path / "crop" / "c_seg.nii.gz")[0], _nifti(tmp_path / "sliding_window" / "c_seg.nii.gz")[0]
    )


def test_an_unknown_large_slices_mode_is_refused(softmax_run: Path, brains: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"large_slices='sliding'.*did you mean 'sliding_window'\?"):
        predict(softmax_run, brains / "c.nii.gz", output=tmp_path / "p", large_slices="sliding")  # type: ignore[arg-type]
    assert not (tmp_path / "p").exists()


def test_an_unknown_amp_is_refused_before_the_model_is_loaded(brains: Path, tmp_path: Path) -> None:
    # No run at all: the option is refused first, as the CLI's --amp choices refuse it.
    with pytest.raises(ValueError, match=r"amp='of'.*did you mean 'off'\?"):
        predict(tmp_path / "no-run", brains / "c.nii.gz", output=tmp_path / "p", amp="of")  # type: ignore[arg-type]
    assert not (tmp_path / "p").exists()


def test_resize_resamples_probabilities_back(resize_run: Path, brains: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = predict(resize_run, str(brains / "c.nii.gz"), output=out, device="cpu", progress=False)
    assert not [w for w in caught if "voxel spacing" in str(w.message)]  # the training data's own
    assert report.cases[0].cut_edge_voxels == 0  # resizing cuts nothing off
    seg, affine, _ = _nifti(out / "c_seg.nii.gz")
    assert seg.shape == (48, 56, 40) and np.array_equal(affine, AFFINE)
    logits, _ = _model_outputs(resize_run)
    for s, lg in enumerate(logits):
        probs = F.interpolate(torch.sigmoid(lg)[None], size=(48, 56), mode="bilinear", align_corners=False)
        p = probs[0].numpy()
        on = p > 0.5
        expected = np.where(on.any(axis=0), np.where(on, p, -1.0).argmax(axis=0) + 1, 0)
        assert np.array_equal(seg[..., s], expected), s


def test_numpy_hdf5_and_folder_inputs_match_nifti(softmax_run: Path, brains: Path, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    array = np.asarray(nib.load(brains / "c.nii.gz").dataobj)
    np.save(scans / "c_npy.npy", array)
    with h5py.File(scans / "c_h5.h5", "w") as handle:
        handle.create_dataset("scan/t1", data=array)
    shutil.copy(brains / "c.nii.gz", scans / "c_nii.nii.gz")
    out = tmp_path / "pred"
    # One spacing= serves the arrays; the NIfTI in the same folder keeps its own, and says so.
    unused = r"c_nii\.nii\.gz: spacing=\(3\.0, 3\.5, 4\.25\) is not used; the file states its own voxel size"
    with pytest.warns(UserWarning, match=unused):
        report = predict(
            softmax_run,
            [scans, str(scans / "*.npy"), scans / "c_h5.h5"],
            output=out,
            device="cpu",
            progress=False,
            spacing=(3.0, 3.5, 4.25),
        )
    # The folder gives all three in name order; the pattern and the file repeat two of them.
    assert [c.case for c in report.cases] == ["c_h5", "c_nii", "c_npy"]
    reference, _, _ = _nifti(out / "c_nii_seg.nii.gz")
    for case in ("c_npy", "c_h5"):
        seg, affine, _ = _nifti(out / f"{case}_seg.nii.gz")
        assert np.array_equal(seg, reference)
        assert np.array_equal(affine, np.diag([3.0, 3.5, 4.25, 1.0]))
    rows = _read_csv(out / "volumes.csv")
    assert [r["case"] for r in rows] == ["c_h5", "c_nii", "c_npy"]
    assert len({r["gm_ml"] for r in rows}) == 1


def test_hdf5_and_dicom_inputs_are_checked_in_the_calling_thread_and_the_others_on_threads(
    softmax_run: Path, brains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # h5py holds one lock over every HDF5 call, and pydicom parses in Python: on threads their
    # reads only take turns.
    scans = tmp_path / "scans"
    scans.mkdir()
    array = np.asarray(nib.load(brains / "c.nii.gz").dataobj)
    for name in ("a", "b"):
        with h5py.File(scans / f"{name}.h5", "w") as handle:
            handle.create_dataset("image", data=array)
        np.save(scans / f"{name}.npy", array)
    (scans / "series").mkdir()
    for i in range(3):
        write_mr_slice(
            scans / "series" / f"im{i}.dcm", array[:, :, 20 + i].astype(np.uint16), z=4.0 * i, instance=i + 1
        )
    seen: dict[str, str] = {}
    real = preparation._checked

    def spied(case: str, path: Path, **kwargs: Any) -> Any:
        seen[Path(path).name] = threading.current_thread().name
        return real(case, path, **kwargs)

    monkeypatch.setattr(preparation, "_checked", spied)
    inputs = [scans / "a.h5", scans / "a.npy", scans / "series", scans / "b.h5", scans / "b.npy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the series' 0.5 x 0.75 mm pixels are not the run's
        report = predict(
            softmax_run,
            inputs,
            output=tmp_path / "p",
            device="cpu",
            progress=False,
            check_threads=2,
            spacing=(3, 3, 3),
        )
    assert len(report.cases) == 5
    calling = threading.current_thread().name
    assert seen["a.h5"] == seen["b.h5"] == seen["series"] == calling
    assert seen["a.npy"].startswith("inpaintssl-in-order") and seen["b.npy"].startswith("inpaintssl-in-order")


def test_an_archive_is_read_at_its_image_array_as_training_reads_it(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    # The first array was read: an archive saved with its label map first was segmented at the
    # label map, with plausible volumes and no warning.
    image = np.asarray(nib.load(brains / "c.nii.gz").dataobj)
    labels = (image > image.mean()).astype(np.uint8)
    scans = tmp_path / "scans"
    scans.mkdir()
    np.savez(scans / "pair.npz", label=labels, image=image)
    with h5py.File(scans / "pair.h5", "w") as handle:
        handle.create_dataset("a_label", data=labels)
        handle.create_dataset("image", data=image)
    np.savez(scans / "only.npz", scan=image)
    out = tmp_path / "pred"
    # The NIfTI states its own spacing (spacing= would be unused there): it is predicted alone.
    alone = predict(softmax_run, brains / "c.nii.gz", output=tmp_path / "ref", device="cpu", progress=False)
    reference = _nifti(Path(alone.cases[0].segmentation))[0]
    inputs = [scans / "pair.npz", scans / "pair.h5", scans / "only.npz"]
    report = predict(softmax_run, inputs, output=out, device="cpu", progress=False, spacing=(3.0, 3.5, 4.25))
    others = [_nifti(Path(c.segmentation))[0] for c in report.cases]
    assert len(others) == 3
    for case, seg in zip(report.cases, others, strict=True):
        assert np.array_equal(seg, reference), case.case


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_an_archive_of_several_arrays_none_called_image_is_refused_naming_them(
    softmax_run: Path, brains: Path, tmp_path: Path, suffix: str
) -> None:
    image = np.asarray(nib.load(brains / "c.nii.gz").dataobj)
    path = tmp_path / f"scan{suffix}"
    arrays = {"seg": (image > image.mean()).astype(np.uint8), "t1": image}
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as handle:
            for name, array in arrays.items():
                handle.create_dataset(name, data=array)
    out = tmp_path / "pred"
    with pytest.raises(
        PredictionError, match=rf"{re.escape(str(path))}.*2 .*'seg', 't1'.*none is called 'image'.*key="
    ):
        predict(softmax_run, path, output=out, device="cpu", progress=False, spacing=(3.0, 3.5, 4.25))
    assert not out.exists()
    predict(softmax_run, path, output=out, device="cpu", progress=False, spacing=(3.0, 3.5, 4.25), key="t1")
    assert (out / "scan_seg.nii.gz").is_file()


def test_inputs_with_one_name_never_write_over_each_other(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
    shutil.copy(brains / "c.nii.gz", tmp_path / "one" / "scan.nii.gz")
    shutil.copy(brains / "a.nii.gz", tmp_path / "two" / "scan.nii.gz")
    np.save(tmp_path / "one" / "scan.npy", np.asarray(nib.load(brains / "b.nii.gz").dataobj))
    out = tmp_path / "pred"
    inputs = [
        tmp_path / "one" / "scan.nii.gz",
        tmp_path / "two" / "scan.nii.gz",
        tmp_path / "one" / "scan.npy",
    ]

    # spacing= is the .npy's; each NIfTI states its own and says the given one is not used.
    unused = r"/scan\.nii\.gz: spacing=\(3\.0, 3\.5, 4\.25\) is not used; the file states its own voxel size"
    with pytest.warns(UserWarning, match=unused) as caught:
        report = predict(
            softmax_run, inputs, output=out, device="cpu", progress=False, spacing=(3.0, 3.5, 4.25)
        )
    told = sorted(str(w.message).split(":")[0] for w in caught if re.search(unused, str(w.message)))
    assert told == [f"input {inputs[0]}", f"input {inputs[1]}"]

    names = [c.case for c in report.cases]
    assert names == ["one_scan_nii_gz", "two_scan", "one_scan_npy"]
    assert len({c.segmentation for c in report.cases}) == 3
    # Each file holds its own scan's labels: the same as predicting that scan alone.
    for case, scan in zip(report.cases, ("c", "a", "b")):
        alone = predict(
            softmax_run,
            [brains / f"{scan}.nii.gz"],
            output=tmp_path / f"alone_{scan}",
            device="cpu",
            progress=False,
        )
        seg, _, _ = _nifti(case.segmentation)
        assert np.array_equal(seg, _nifti(alone.cases[0].segmentation)[0])
    assert [r["case"] for r in _read_csv(out / "volumes.csv")] == names


def test_a_scan_stored_in_metres_is_measured_in_mm(softmax_run: Path, brains: Path, tmp_path: Path) -> None:
    image = nib.load(brains / "c.nii.gz")
    in_metres = AFFINE.copy()
    in_metres[:3] /= 1000.0
    scan = nib.Nifti1Image(np.asarray(image.dataobj), in_metres)
    scan.header.set_xyzt_units("meter")
    nib.save(scan, tmp_path / "c_m.nii.gz")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in metres, 0.003 x 0.0035 would be far outside the training spacing
        report = predict(
            softmax_run,
            [brains / "c.nii.gz", tmp_path / "c_m.nii.gz"],
            output=tmp_path / "p",
            device="cpu",
            progress=False,
        )

    mm, metres = report.cases
    assert np.array_equal(_nifti(metres.segmentation)[0], _nifti(mm.segmentation)[0])
    assert metres.volumes_ml == pytest.approx(mm.volumes_ml, rel=1e-6)
    # The label map says where it lies as its scan does: the same affine, in the same unit.
    written = nib.load(metres.segmentation)
    assert np.allclose(written.affine, in_metres) and written.header.get_xyzt_units()[0] == "meter"


def test_a_2d_nifti_slice_is_measured_with_the_thickness_its_affine_states(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    # Slice 20 of scan "c" as a 2-D file, in millimetres and in metres: its header sizes two axes,
    # but its affine (which its label map is written with) makes each voxel 4.25 mm thick, as the
    # same slice saved as an (X, Y, 1) volume is measured.
    plane = np.asarray(nib.load(brains / "c.nii.gz").dataobj)[:, :, 20]
    nib.save(nib.Nifti1Image(plane, AFFINE), tmp_path / "flat.nii.gz")
    in_metres = AFFINE.copy()
    in_metres[:3] /= 1000.0
    scan = nib.Nifti1Image(plane, in_metres)
    scan.header.set_xyzt_units("meter")
    nib.save(scan, tmp_path / "flat_m.nii.gz")
    # Transposed, its affine's columns swapped to match: turned back for the network, just as thick.
    nib.save(
        nib.Nifti1Image(np.ascontiguousarray(plane.T), AFFINE[:, [1, 0, 2, 3]]), tmp_path / "flat_t.nii.gz"
    )
    report = predict(
        softmax_run,
        [tmp_path / "flat.nii.gz", tmp_path / "flat_m.nii.gz", tmp_path / "flat_t.nii.gz"],
        output=tmp_path / "p",
        device="cpu",
        progress=False,
    )
    reference = _nifti(report.cases[0].segmentation)[0]
    assert np.array_equal(_nifti(report.cases[2].segmentation)[0], reference.T)
    assert report.cases[2].volumes_ml == report.cases[0].volumes_ml
    for case in report.cases:
        seg = _nifti(case.segmentation)[0]
        assert seg.shape == ((56, 48) if case.case == "flat_t" else (48, 56))
        expected = {name: int((seg == k + 1).sum()) * VOXEL_MM3 / 1000.0 for k, name in enumerate(CLASSES)}
        assert any(expected.values())
        assert case.volumes_ml == pytest.approx(expected, rel=1e-6)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "A", "b", "a/b"]),
            st.sampled_from(["s", "S", "s_npy", "t"]),
            st.sampled_from([".nii.gz", ".nii", ".NII.GZ", ".npy", ".npz", ".h5", ".dcm", ""]),
        ),
        min_size=1,
        max_size=8,
        unique=True,
    )
)
def test_case_names_are_unique_for_any_distinct_inputs(parts: list[tuple[str, str, str]]) -> None:
    paths = [Path("/data") / folder / f"{stem}{suffix}" for folder, stem, suffix in parts]
    names = case_names(paths)
    # Unique in any letter case: on macOS and Windows "S_seg.nii.gz" and "s_seg.nii.gz" are one file.
    assert len({name.casefold() for name in names}) == len(names) == len(paths)
    # A name no other input has (in any case) is kept as it is, whatever names the others are given.
    stems = [case_stem(p).casefold() for p in paths]
    assert all(
        name == case_stem(path) for name, stem, path in zip(names, stems, paths) if stems.count(stem) == 1
    )


def test_a_series_given_as_dot_or_dot_dot_is_named_after_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `inpaintssl predict runs/ft . --output ../segs` from inside a DICOM series folder: the case
    # (and its label map's name) is the folder's, not "" ("_seg.nii.gz", a hidden file) or "..".
    inner = tmp_path / "study" / "series-7"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    assert case_names([Path(".")]) == ["series-7"]
    assert case_names([Path("..")]) == ["study"]
    assert case_names([Path("."), Path("..")]) == ["series-7", "study"]


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        # The brains' zooms (3.0, 3.5, 4.25) mm, sliced along axis 2: 3 x 3.5 mm in plane.
        ("softmax_run", {"smallest": [3.0, 3.5], "largest": [3.0, 3.5], "axes": "rows_columns"}),
        # Resized from 48x56 to 32x32: each pixel covers 3.0 * 48 / 32 by 3.5 * 56 / 32 mm.
        ("resize_run", {"smallest": [4.5, 6.125], "largest": [4.5, 6.125], "axes": "rows_columns"}),
    ],
)
def test_the_run_records_the_spacing_its_network_saw(
    run: str, expected: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(run)
    manifest = json.loads((folder / "manifest.json").read_text())
    approx = {key: pytest.approx(value) for key, value in expected.items()}
    assert manifest["in_plane_spacing_mm"] == approx
    recorded = load_model(folder).inference_meta.preprocessing
    assert recorded is not None and recorded.in_plane_spacing_mm is not None
    assert recorded.in_plane_spacing_mm.to_json() == approx
    for inside in (folder / "checkpoints" / "best", folder / "checkpoints" / "last" / "model.safetensors"):
        assert recorded_spacing(inside) == recorded.in_plane_spacing_mm
    assert recorded_spacing(folder.parent) is None  # not a run folder


def _resaved(source: Path, target: Path, *, scale: float) -> Path:
    """``source`` with voxels ``scale`` times as large (same array, stretched affine)."""
    image = nib.load(source)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine @ np.diag([scale, scale, 1, 1])), target)
    return target


@pytest.mark.parametrize(
    ("scale", "warned"), [(1.1, False), (0.85, False), (1.3, True), (2.0, True), (0.5, True)]
)
def test_a_scan_at_another_resolution_is_predicted_with_a_warning(
    softmax_run: Path, brains: Path, tmp_path: Path, scale: float, warned: bool
) -> None:
    # The run saw 3 x 3.5 mm pixels; predict warns beyond 20 % either way (3 / 1.2 = 2.5 mm).
    scan = _resaved(brains / "c.nii.gz", tmp_path / "c.nii.gz", scale=scale)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = predict(softmax_run, scan, output=tmp_path / "pred", device="cpu", progress=False)
    messages = [str(w.message) for w in caught if "voxel spacing" in str(w.message)]
    assert len(messages) == int(warned), messages
    if warned:
        (message,) = messages
        assert f"input {scan}: in-plane voxel spacing {3 * scale:.3g} x {3.5 * scale:.3g} mm" in message
        assert "trained on 3 x 3.5 mm" in message and "resample the scan" in message
    assert (tmp_path / "pred" / "c_seg.nii.gz").is_file() and len(report) == 1  # predicted all the same
    (case,) = report.cases
    assert case.spacing_mm == pytest.approx((3 * scale, 3.5 * scale))
    assert case.spacing_fits_training is (not warned)
    (row,) = _read_csv(tmp_path / "pred" / "volumes.csv")
    assert row["spacing_fits_training"] == str(not warned).lower()


def _twice_as_fine(source_path: Path, target: Path) -> tuple[Any, np.ndarray]:
    """``source_path`` at twice its in-plane resolution: each voxel repeated 2 x 2, half as large."""
    source = nib.load(source_path)
    fine = np.repeat(np.repeat(np.asarray(source.dataobj), 2, axis=0), 2, axis=1)
    nib.save(nib.Nifti1Image(fine, source.affine @ np.diag([0.5, 0.5, 1.0, 1.0])), target)
    return source, fine


def _upsample_twice(values: np.ndarray, *, axis: int) -> np.ndarray:
    """Linear interpolation to twice the samples along ``axis``, sample centres aligned (no corners)."""
    n = values.shape[axis]
    source = np.clip((np.arange(2 * n) + 0.5) / 2.0 - 0.5, 0.0, None)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n - 1)
    weight = (source - low).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    return np.take(values, low, axis=axis) * (1 - weight) + np.take(values, high, axis=axis) * weight


def test_a_finer_scan_is_resampled_to_the_training_spacing_and_labelled_on_its_own_grid(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    # Scan "c" at twice the in-plane resolution: each voxel repeated 2 x 2, voxels half as large.
    # Resampled to the run's 3 x 3.5 mm, bilinear averaging of each 2 x 2 block of equal values
    # gives back the original slices exactly (z-scoring is unchanged by the repetition), so the
    # network sees what it sees for "c" itself, and its labels come back onto the fine grid.
    source, fine = _twice_as_fine(brains / "c.nii.gz", tmp_path / "fine.nii.gz")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*voxel spacing")  # resampled, not warned about
        report = predict(
            softmax_run,
            [brains / "c.nii.gz", tmp_path / "fine.nii.gz"],
            output=tmp_path / "p",
            progress=False,
            resample="outside",
            probabilities=True,
        )
    coarse_case, fine_case = report.cases
    assert coarse_case.resampled_to_mm is None  # at the training spacing: predicted as with "off"
    assert fine_case.resampled_to_mm == (3.0, 3.5) and fine_case.spacing_fits_training is False
    assert fine_case.shape == fine.shape
    coarse, _, _ = _nifti(tmp_path / "p" / "c_seg.nii.gz")
    seg, affine, _ = _nifti(tmp_path / "p" / "fine_seg.nii.gz")
    assert np.array_equal(affine, source.affine @ np.diag([0.5, 0.5, 1.0, 1.0]))
    # The fine probabilities are the coarse ones, bilinearly interpolated (a NumPy reference of the
    # half-pixel-centred interpolation), and the labels their arg-max.
    coarse_prob = np.asarray(nib.load(tmp_path / "p" / "c_prob.nii.gz").dataobj)
    fine_prob = np.asarray(nib.load(tmp_path / "p" / "fine_prob.nii.gz").dataobj)
    expected = _upsample_twice(_upsample_twice(coarse_prob, axis=0), axis=1)
    assert np.abs(fine_prob - expected).max() < 1e-4
    background = 1.0 - expected.sum(axis=-1)  # softmax: the K + 1 probabilities sum to one
    assert (seg == np.concatenate([background[..., None], expected], axis=-1).argmax(axis=-1)).mean() > 0.999
    repeated = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    assert (seg == repeated).mean() > 0.9  # the coarse labels, but where interpolation moves a border
    # Volumes are measured on the fine grid with its own voxel size: the labelled brain keeps its
    # volume (a class one coarse voxel thin, here some of the CSF, can thin out under interpolation).
    assert sum(fine_case.volumes_ml.values()) == pytest.approx(sum(coarse_case.volumes_ml.values()), rel=0.02)
    (_, row) = _read_csv(tmp_path / "p" / "volumes.csv")
    assert (row["resampled_to_mm"], row["spacing_fits_training"]) == ("3x3.5", "false")

    # Without resampling, the fine scan is the anatomy at twice the size: warned, and worse.
    with pytest.warns(UserWarning, match=r"fine\.nii\.gz: in-plane voxel spacing 1\.5 x 1\.75 mm"):
        as_is = predict(softmax_run, tmp_path / "fine.nii.gz", output=tmp_path / "q", progress=False)
    assert as_is.cases[0].resampled_to_mm is None
    unresampled, _, _ = _nifti(tmp_path / "q" / "fine_seg.nii.gz")
    assert (unresampled == repeated).mean() < (seg == repeated).mean()


def test_cli_predict_lists_only_scans_left_outside_the_training_spacing(
    softmax_run: Path, brains: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _twice_as_fine(brains / "c.nii.gz", tmp_path / "fine.nii.gz")
    argv = ["predict", str(softmax_run), str(tmp_path / "fine.nii.gz"), "--device", "cpu", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli_main([*argv, "--output", str(tmp_path / "a")]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["spacing_outside_training"] == ["fine"]
        assert cli_main([*argv, "--output", str(tmp_path / "b"), "--resample", "outside"]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["spacing_outside_training"] == []
    (row,) = _read_csv(tmp_path / "b" / "volumes.csv")
    assert row["resampled_to_mm"] == "3x3.5"


def test_a_cropped_run_resamples_the_probabilities_its_crop_kept(
    crop_run_4d: Path, brains: Path, tmp_path: Path
) -> None:
    # The 2-channel run crops 48x56 slices to 48x48 and has sigmoid heads: outside the crop the
    # probabilities are 0, and the fine grid gets all of them interpolated.
    _, fine = _twice_as_fine(brains / "c_4d.nii.gz", tmp_path / "fine.nii.gz")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".* on the edges where its slices were cropped")
        report = predict(
            crop_run_4d,
            [brains / "c_4d.nii.gz", tmp_path / "fine.nii.gz"],
            output=tmp_path / "p",
            progress=False,
            resample="outside",
            probabilities=True,
        )
    assert [c.resampled_to_mm for c in report.cases] == [None, (3.0, 3.5)]
    coarse_prob = np.asarray(nib.load(tmp_path / "p" / "c_4d_prob.nii.gz").dataobj)
    expected = _upsample_twice(_upsample_twice(coarse_prob, axis=0), axis=1)
    fine_prob = np.asarray(nib.load(tmp_path / "p" / "fine_prob.nii.gz").dataobj)
    assert fine_prob.shape == (*fine.shape[:3], len(CLASSES))
    assert np.abs(fine_prob - expected).max() < 1e-4
    seg, _, _ = _nifti(tmp_path / "p" / "fine_seg.nii.gz")
    # Sigmoid heads: the most probable class above 0.5, else background.
    above = np.where(expected > 0.5, expected, -1.0)
    labels = np.where(above.max(axis=-1) > 0, above.argmax(axis=-1) + 1, 0)
    assert (seg == labels).mean() > 0.999


def test_resampling_needs_a_run_that_kept_the_pixel_grid_and_its_spacing(
    resize_run: Path, softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    scan = brains / "c.nii.gz"
    with pytest.raises(ValueError, match=r"resample='outside' needs a run that kept the pixel grid"):
        predict(resize_run, scan, output=tmp_path / "p", progress=False, resample="outside")
    with pytest.raises(ValueError, match=r"resample='sometimes' is not a valid option: expected 'off' or"):
        predict(softmax_run, scan, output=tmp_path / "p", progress=False, resample="sometimes")
    older = shutil.copytree(softmax_run, tmp_path / "older")  # a run from before spacing was recorded
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["in_plane_spacing_mm"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"needs the training spacing, but .*older recorded none"):
        predict(older, scan, output=tmp_path / "p", progress=False, resample="outside")
    assert not (tmp_path / "p").exists()


def test_sliding_windows_are_refused_for_a_run_that_resized_its_slices(
    resize_run: Path, brains: Path, tmp_path: Path
) -> None:
    # The run resized each 48x56 slice whole to 32x32: no part of a slice is cut off for windows to
    # cover, so the option would be ignored; refused as resample='outside' is, before anything is written.
    scan = brains / "c.nii.gz"
    told = r"large_slices='sliding_window' .* but .*run resized every slice to data.image_size=\[32, 32\]"
    with pytest.raises(ValueError, match=told):
        predict(resize_run, scan, output=tmp_path / "p", progress=False, large_slices="sliding_window")
    assert not (tmp_path / "p").exists()


def test_evaluate_on_data_at_another_resolution_warns(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    # The run's own test scan is at its spacing: no warning. The same scans with voxels twice as
    # large (image and label alike) are scored with a warning naming both spacings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        issl.evaluate(softmax_run, _data_config(softmax_run), split="test", device="cpu")
    for name in ("a", "b", "c"):
        for suffix in ("", "_seg"):
            _resaved(brains / f"{name}{suffix}.nii.gz", tmp_path / f"{name}{suffix}.nii.gz", scale=2.0)
    coarse = _data_config(softmax_run).model_copy(
        update={"params": {**_data_config(softmax_run).params, "root": str(tmp_path)}}
    )
    told = r"evaluate: the data's in-plane voxel spacing as the model sees it, 6 x 7 mm, .* 3 x 3.5 mm"
    with pytest.warns(UserWarning, match=told):
        table = issl.evaluate(softmax_run, coarse, split="test", device="cpu")
    assert table.select(level="image").rows  # scored all the same


def test_an_array_without_spacing_is_told_how_to_give_it(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    array = tmp_path / "c.npy"
    np.save(array, np.asarray(nib.load(brains / "c.nii.gz").dataobj))
    told = r"1 x 1 mm as the model sees it \(this file type carries no spacing"
    how = (
        r"c\.npy: a NumPy/HDF5 file states no voxel size, so 1 mm is assumed along every axis of its "
        r"\(48, 56, 40\) array.*give the scan's own with spacing=\.\.\. \(--spacing"
    )
    with pytest.warns(UserWarning, match=told), pytest.warns(UserWarning, match=how):
        predict(softmax_run, array, output=tmp_path / "a", device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spacing = (3.0, 3.5, 4.25)
        predict(softmax_run, array, output=tmp_path / "b", device="cpu", progress=False, spacing=spacing)
    # A spacing given but not the training one: the warning names it as given, and asks for none.
    given = r"1.5 x 1.75 mm as the model sees it \(as given by spacing=\.\.\. / --spacing\), but the run"
    with pytest.warns(UserWarning, match=given) as caught:
        predict(
            softmax_run, array, output=tmp_path / "c", device="cpu", progress=False, spacing=(1.5, 1.75, 4.25)
        )
    assert not any("carries no spacing" in str(w.message) for w in caught)


def test_dicom_series_gets_its_patient_geometry(softmax_run: Path, tmp_path: Path) -> None:
    series = tmp_path / "series"
    series.mkdir()
    rng = np.random.default_rng(1)
    for i, z in enumerate((4.0, 0.0, 2.0)):  # written out of order: sorted by position
        write_mr_slice(series / f"im{i}.dcm", rng.integers(0, 1000, (20, 26)), z=z, instance=i + 1)
    out = tmp_path / "pred"
    # The series' 0.5 x 0.75 mm pixels are not the run's 3 x 3.5 mm: predicted, with a warning.
    told = r"series: in-plane voxel spacing 0.5 x 0.75 mm .* trained on 3 x 3.5 mm"
    with pytest.warns(UserWarning, match=told):
        report = predict(softmax_run, series, output=out, device="cpu", progress=False)
    seg, affine, header = _nifti(out / "series_seg.nii.gz")
    assert seg.shape == (20, 26, 3) == report.cases[0].shape
    # LPS -> RAS: x and y flip sign.
    expected = np.array([[0, -0.75, 0, 10], [-0.5, 0, 0, -20], [0, 0, 2.0, 0.0], [0, 0, 0, 1]])
    assert np.allclose(affine, expected)
    assert header.get_qform(coded=True)[1] == 1 and header.get_sform(coded=True)[1] == 1


def test_dicom_label_maps_code_only_the_geometry_their_series_states(
    softmax_run: Path, tmp_path: Path
) -> None:
    from inpaintssl.data.dicom import DicomVolume

    tilt = np.tan(np.deg2rad(15))
    positions = {
        "straight": lambda k: (-10.0, 20.0, 2.0 * k),
        # A CT gantry tilted 15 degrees: each slice sits 0.54 mm further back, off its normal.
        "tilted": lambda k: (-10.0, 20.0 + 2.0 * k * tilt, 2.0 * k),
        "unplaced": lambda k: (-10.0, 20.0, 5.0 * k),  # and no ImageOrientationPatient
    }
    rng = np.random.default_rng(3)
    for name, place in positions.items():
        (tmp_path / name).mkdir()
        for k in range(3):
            write_mr_slice(
                tmp_path / name / f"im{k}.dcm",
                rng.integers(0, 1000, (20, 26)),
                z=0.0,
                instance=k + 1,
                pixel_spacing=("3", "3.5"),  # the run's own: no spacing warning
                thickness="5" if name == "unplaced" else "2",
                position=place(k),
                orientation=None if name == "unplaced" else (1, 0, 0, 0, 1, 0),
            )
    out = tmp_path / "pred"
    report = predict(softmax_run, [tmp_path / n for n in positions], output=out, device="cpu", progress=False)
    headers = {n: nib.load(out / f"{n}_seg.nii.gz").header for n in positions}

    straight = headers["straight"]
    assert (int(straight["qform_code"]), int(straight["sform_code"])) == (1, 1)
    assert np.allclose(straight.get_qform(), straight.get_sform(), atol=1e-5)
    # The tilted series' sheared affine, exact in the sform; no qform approximates it (coded 0).
    tilted = headers["tilted"]
    assert (int(tilted["qform_code"]), int(tilted["sform_code"])) == (0, 1)
    affine = DicomVolume(tmp_path / "tilted").patient_affine
    assert affine is not None and affine[1, 2] != 0.0  # sheared: the slice step leans along y
    assert np.array_equal(tilted.get_sform(), affine.astype(np.float32))
    # No patient geometry: a placeholder grid, coded unknown, with the series' own voxel sizes,
    # the 5 mm SliceThickness, not 1 mm, and the volumes in mL measured with them.
    unplaced = headers["unplaced"]
    assert (int(unplaced["qform_code"]), int(unplaced["sform_code"])) == (0, 0)
    assert unplaced.get_zooms() == (3.0, 3.5, 5.0)
    case = next(c for c in report.cases if c.case == "unplaced")
    labels = np.asarray(nib.load(out / "unplaced_seg.nii.gz").dataobj)
    assert (labels > 0).any()
    for k, name in enumerate(CLASSES):
        assert case.volumes_ml[name] == pytest.approx(np.sum(labels == k + 1) * 3.0 * 3.5 * 5.0 / 1000.0)


def test_an_unevenly_spaced_series_is_refused_before_anything_is_written(
    softmax_run: Path, tmp_path: Path
) -> None:
    # Slices at 0, 2, 4 and 8 mm (the one at 6 mm missing): training reads its slices, but its
    # label map has no one grid to lie on.
    series = tmp_path / "gap"
    series.mkdir()
    rng = np.random.default_rng(4)
    for k, z in enumerate((0.0, 2.0, 4.0, 8.0)):
        write_mr_slice(
            series / f"im{k}.dcm",
            rng.integers(0, 1000, (20, 26)),
            z=0.0,
            instance=k + 1,
            pixel_spacing=("3", "3.5"),
            position=(-10.0, 20.0, z),
        )
    out = tmp_path / "pred"
    with (
        pytest.warns(UserWarning, match="not one regular grid"),
        pytest.raises(
            PredictionError, match=r"im2\.dcm and im3\.dcm at 4 and 8 mm .*cannot be written on one grid"
        ),
    ):
        predict(softmax_run, [series], output=out, device="cpu", progress=False)
    assert not out.exists()


def test_the_run_records_the_orientation_of_its_training_volumes(softmax_run: Path) -> None:
    # The brains are stored with AFFINE: axis 0 runs anterior, 1 left, 2 superior; 40 slices of "a".
    assert json.loads((softmax_run / "manifest.json").read_text())["orientations"] == {"ALS": 40}
    recorded = load_model(softmax_run).inference_meta.preprocessing
    assert recorded is not None and dict(recorded.training_orientations) == {"ALS": 40}


@pytest.mark.parametrize("codes", ["RAS", "PSL"])
def test_a_non_finite_voxel_of_a_reoriented_scan_is_named_by_its_place_in_the_file(
    softmax_run: Path, brains: Path, tmp_path: Path, codes: str
) -> None:
    # Read in the run's orientation (ALS), the scan's slice k was named "slice k": no slice of the
    # file as stored holds the NaN there.
    moved = stored_as(nib.load(brains / "c.nii.gz"), codes)
    data = np.asarray(moved.dataobj, dtype=np.float32)
    data[3, 10, 20] = np.nan
    nib.save(nib.Nifti1Image(data, moved.affine), tmp_path / "holed.nii.gz")
    with pytest.raises(PredictionError, match=r"holed\.nii\.gz slice \d+ along its stored axis \d") as told:
        predict(softmax_run, [tmp_path / "holed.nii.gz"], output=tmp_path / "p", device="cpu", progress=False)
    found = re.search(r"slice (\d+) along its stored axis (\d) \(slice \d+ as read in ALS\)", str(told.value))
    assert found is not None, told.value
    index, axis = int(found.group(1)), int(found.group(2))
    assert np.isnan(np.take(data, index, axis=axis)).sum() == 1


def test_a_non_finite_pixel_of_a_turned_2d_slice_is_named_by_its_file_alone(tmp_path: Path) -> None:
    # A 2-D file has two axes: its one slice, turned within its plane, has no "stored axis 2".
    data = np.ones((4, 5), np.float32)
    data[1, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, 1.0, 1.0, 1.0])), tmp_path / "flat.nii")
    volume = NiftiVolume(tmp_path / "flat.nii")  # stored LAS
    volume.reorient("ARS")
    dataset = VolumeSliceDataset([Case("flat", volume, None)], name="predict")
    with pytest.raises(DataError, match=r"flat\.nii slice 0: 1 NaN/Inf value"):
        dataset[0]


@pytest.mark.parametrize("codes", ["RAS", "SPR", "ILA"])
def test_a_scan_stored_in_another_axis_order_is_predicted_as_in_training(
    softmax_run: Path, brains: Path, tmp_path: Path, codes: str
) -> None:
    source = nib.load(brains / "c.nii.gz")
    moved = stored_as(source, codes)
    nib.save(moved, tmp_path / "moved.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: read in the training orientation
        report = predict(
            softmax_run,
            [brains / "c.nii.gz", tmp_path / "moved.nii.gz"],
            output=tmp_path / "p",
            progress=False,
        )
    original, moved_case = report.cases
    assert (original.orientation, original.reoriented_to) == ("ALS", None)
    assert (moved_case.orientation, moved_case.reoriented_to) == (codes, "ALS")
    seg, affine, _ = _nifti(tmp_path / "p" / "moved_seg.nii.gz")
    # On the scan's own grid, and the very labels of the scan stored as in training.
    assert seg.shape == moved.shape and np.array_equal(affine, moved.affine)
    reference = nib.load(tmp_path / "p" / "c_seg.nii.gz")
    assert np.array_equal(seg, np.asarray(stored_as(reference, codes).dataobj))
    assert moved_case.volumes_ml == original.volumes_ml
    rows = _read_csv(tmp_path / "p" / "volumes.csv")
    assert [(r["orientation"], r["reoriented_to"]) for r in rows] == [("ALS", ""), (codes, "ALS")]

    # Read as stored, the scan shows the network other planes (at other pixel sizes, too): predicted,
    # with a warning.
    told = (
        rf"moved.nii.gz: stored in {codes} orientation, which none of the run's training volumes had \(ALS\)"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stored = predict(
            softmax_run,
            tmp_path / "moved.nii.gz",
            output=tmp_path / "q",
            progress=False,
            orientation="stored",
        )
    assert any(re.search(told, str(w.message)) for w in caught), [str(w.message) for w in caught]
    assert stored.cases[0].reoriented_to is None


@pytest.mark.parametrize("codes", ["LAS", "PLS", "ARS", "RPS", "ALI"])
def test_a_2d_slice_turned_against_the_training_slices_is_labelled_as_the_training_slice(
    softmax_run: Path, brains: Path, tmp_path: Path, codes: str
) -> None:
    # One slice of scan "c" as a 2-D NIfTI: as in training (rows A, columns L: the run's ALS volumes
    # sliced along axis 2), and stored transposed or mirrored, its affine saying so (nibabel turns
    # the slice saved as an (X, Y, 1) volume). It is turned back for the network, and its label map
    # is the as-trained slice's, turned as the file is stored, voxel for voxel.
    plane = np.asarray(nib.load(brains / "c.nii.gz").dataobj)[:, :, 20]
    nib.save(nib.Nifti1Image(plane, AFFINE), tmp_path / "as_trained.nii.gz")
    one = stored_as(nib.Nifti1Image(plane[:, :, None], AFFINE), codes)
    turned = nib.Nifti1Image(np.ascontiguousarray(np.asarray(one.dataobj)[:, :, 0]), one.affine)
    nib.save(turned, tmp_path / "turned.nii.gz")
    assert "".join(nib.aff2axcodes(turned.affine)) == codes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: turned into the training orientation
        report = predict(
            softmax_run,
            [tmp_path / "as_trained.nii.gz", tmp_path / "turned.nii.gz"],
            output=tmp_path / "p",
            device="cpu",
            progress=False,
        )
    as_trained, turned_case = report.cases
    assert (as_trained.orientation, as_trained.reoriented_to) == ("ALS", None)
    assert (turned_case.orientation, turned_case.reoriented_to) == (codes, "ALS")
    reference = nib.load(tmp_path / "p" / "as_trained_seg.nii.gz")
    labels, affine, _ = _nifti(turned_case.segmentation)
    # In the input's own layout and affine: the reference's labels turned as nibabel turns the slice.
    assert labels.shape == turned.shape == turned_case.shape and np.array_equal(affine, turned.affine)
    expected = stored_as(nib.Nifti1Image(np.asarray(reference.dataobj)[:, :, None], AFFINE), codes)
    assert np.array_equal(labels, np.asarray(expected.dataobj)[:, :, 0])
    assert any(turned_case.volumes_ml.values()) and turned_case.volumes_ml == as_trained.volumes_ml
    if codes == "LAS":  # the transposed slice, spelled out
        assert np.array_equal(labels, np.asarray(reference.dataobj).T)


def test_a_2d_slice_that_cannot_be_turned_into_the_training_plane_warns(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    plane = np.asarray(nib.load(brains / "c.nii.gz").dataobj)[:, :, 20]
    # Its affine's third axis runs left: a sagittal slice, which no turn within its plane makes axial.
    sagittal = AFFINE[:, [0, 2, 1, 3]]
    nib.save(nib.Nifti1Image(plane, sagittal), tmp_path / "sagittal.nii.gz")
    told = (
        r"sagittal\.nii\.gz: a 2-D slice normal to L \(its affine, axis codes ASL\), but the run's "
        r"training slices are normal to S \(volumes in ALS, sliced along axis 2\)"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = predict(softmax_run, tmp_path / "sagittal.nii.gz", output=tmp_path / "p", progress=False)
    messages = [str(w.message) for w in caught]
    assert [m for m in messages if re.search(told, m)], messages
    (case,) = report.cases
    assert (case.orientation, case.reoriented_to, case.shape) == ("ASL", None, plane.shape)
    # Used as stored: the very labels of the same array stored as the training slices.
    nib.save(nib.Nifti1Image(plane, AFFINE), tmp_path / "axial.nii.gz")
    axial = predict(softmax_run, tmp_path / "axial.nii.gz", output=tmp_path / "q", progress=False)
    assert np.array_equal(_nifti(case.segmentation)[0], _nifti(axial.cases[0].segmentation)[0])
    # Read as stored on request, the other plane is told as a 3-D volume in another orientation is.
    # Its stored plane is 3 x 4.25 mm, not the training 3 x 3.5 mm: that is told too.
    scale = (
        r"sagittal\.nii\.gz: in-plane voxel spacing 3 x 4\.25 mm as the model sees it, but the run "
        r"trained on 3 x 3\.5 mm"
    )
    with (
        pytest.warns(UserWarning, match=r"stored in ASL orientation, which none of the run's training"),
        pytest.warns(UserWarning, match=scale),
    ):
        predict(
            softmax_run,
            tmp_path / "sagittal.nii.gz",
            output=tmp_path / "r",
            progress=False,
            orientation="stored",
        )


def test_a_dicom_series_of_a_nifti_trained_run_is_read_in_the_training_orientation(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    # Scan "c" written as a DICOM series: rows x columns x slices run posterior, left, superior
    # ("PLS"), against the run's "ALS" NIfTI volumes: the rows are the NIfTI's axis 0 reversed.
    source = nib.load(brains / "c.nii.gz")
    values = np.rint(np.asarray(source.dataobj)).astype(np.float32)  # DICOM stores integers
    nib.save(nib.Nifti1Image(values, AFFINE), tmp_path / "c_int.nii.gz")
    series = tmp_path / "series"
    series.mkdir()
    as_dicom = values[::-1]
    for k in range(as_dicom.shape[2]):
        write_mr_slice(
            series / f"im{k:03d}.dcm",
            as_dicom[:, :, k],
            z=4.25 * k,
            instance=k + 1,
            pixel_spacing=("3", "3.5"),
            thickness="4.25",
        )
    report = predict(softmax_run, [tmp_path / "c_int.nii.gz", series], output=tmp_path / "p", progress=False)
    assert [(c.orientation, c.reoriented_to) for c in report.cases] == [("ALS", None), ("PLS", "ALS")]
    nifti_seg, _, _ = _nifti(tmp_path / "p" / "c_int_seg.nii.gz")
    dicom_seg, _, _ = _nifti(tmp_path / "p" / "series_seg.nii.gz")
    assert (nifti_seg > 0).any() and np.array_equal(dicom_seg, nifti_seg[::-1])


def test_an_orientation_that_is_no_axis_code_is_refused(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        ValueError, match=r"orientation='up' is invalid; expected three letters.*'auto' or 'stored'"
    ):
        predict(softmax_run, brains / "c.nii.gz", output=tmp_path / "p", progress=False, orientation="up")


def test_a_device_error_names_the_argument_not_a_config_field(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    # predict takes ``device=``; "run.device" would send the user looking for a config file.
    with pytest.raises(ValueError, match=r"^device='tpu' is not a valid option: expected 'auto', 'cpu'"):
        predict(softmax_run, brains / "c.nii.gz", output=tmp_path / "p", progress=False, device="tpu")
    assert not (tmp_path / "p").exists()


def test_label_map_sigmoid_overlap_and_softmax() -> None:
    probs = torch.tensor([[[[0.9, 0.2, 0.7]], [[0.6, 0.1, 0.8]]]])  # (1, K=2, 1, 3)
    assert label_map(probs, activation="sigmoid").tolist() == [[[1, 0, 2]]]
    logits = torch.tensor([[[[3.0, -1.0]], [[1.0, 2.0]], [[0.0, 5.0]]]])  # background first
    assert label_map(logits, activation="softmax").tolist() == [[[0, 2]]]


# --- bad inputs: a clear error naming the file, nothing left in output ------------------------


def _nothing_written(out: Path) -> bool:
    leftovers = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return not out.exists() and not leftovers


def test_missing_run_folder(brains: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    with pytest.raises(CheckpointError, match=r"no-such-run does not exist"):
        predict(tmp_path / "no-such-run", brains / "c.nii.gz", output=out, progress=False)
    assert _nothing_written(out)


def test_pretraining_checkpoint_is_refused(pretrained_run: Any, brains: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    with pytest.raises(
        PredictionError, match=r"pretrain \(inpainting\) checkpoint: it outputs images"
    ) as err:
        predict(pretrained_run.run_dir, brains / "c.nii.gz", output=out, device="cpu", progress=False)
    assert str(pretrained_run.run_dir) in str(err.value)
    assert _nothing_written(out)


def test_wrong_channel_count(softmax_run: Path, crop_run_4d: Path, brains: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    with pytest.raises(PredictionError, match=r"c_4d\.nii\.gz: the model takes 1 input channel.*gives 2"):
        predict(softmax_run, [brains / "c.nii.gz", brains / "c_4d.nii.gz"], output=out, progress=False)
    with pytest.raises(
        PredictionError, match=r"c\.nii\.gz: the model takes 2 input channel.*\(X, Y, Z, 2\).*gives 1"
    ):
        predict(crop_run_4d, brains / "c.nii.gz", output=out, progress=False)
    assert _nothing_written(out)


def test_truncated_file_leaves_output_as_it_was(softmax_run: Path, brains: Path, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(brains / "c.nii.gz", scans / "a_good.nii.gz")
    data = (brains / "c.nii.gz").read_bytes()
    (scans / "b_cut.nii.gz").write_bytes(data[: len(data) // 3])
    out = tmp_path / "pred"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    # Refused while every input is read in full, before the good case is predicted.
    with pytest.raises(PredictionError, match=r"b_cut\.nii\.gz cannot be read .*truncated"):
        predict(softmax_run, scans, output=out, device="cpu", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred.")]
    # Into an existing folder, a successful call adds its files beside what was there.
    predict(softmax_run, scans / "a_good.nii.gz", output=out, device="cpu", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["a_good_seg.nii.gz", "keep.txt", "volumes.csv"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred.")]


def test_a_failed_predict_removes_the_folders_it_created_for_its_output(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.nii.gz"
    data = (brains / "c.nii.gz").read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(PredictionError, match=r"cut\.nii\.gz cannot be read"):
        predict(softmax_run, cut, output=tmp_path / "new" / "deeper" / "pred", device="cpu", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.nii.gz"]
    # A folder that was there stays, with what it holds.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(PredictionError, match=r"cannot be read"):
        predict(softmax_run, cut, output=tmp_path / "mine" / "a" / "pred", device="cpu", progress=False)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def _blank_and_nan_scans(brains: Path, folder: Path) -> dict[str, Path]:
    """Scans on c's grid that training's pre-flight check refuses: blank (zeros, a constant), NaN."""
    folder.mkdir()
    image = np.asarray(nib.load(brains / "c.nii.gz").dataobj, dtype=np.float32)
    holed = image.copy()
    holed[20, 30, 17] = np.nan
    return {
        "zeros": _save(folder / "zeros.nii.gz", np.zeros_like(image)),
        "constant": _save(folder / "constant.nii.gz", np.full_like(image, 412.5)),
        "nan": _save(folder / "holed.nii.gz", holed),
    }


def test_a_blank_or_nan_scan_is_refused_before_any_case_is_predicted(
    softmax_run: Path, brains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _blank_and_nan_scans(brains, tmp_path / "scans")
    found = {
        "zeros": r"zeros\.nii\.gz holds the value 0 in every voxel \(a blank volume.*expected an image whose "
        r"intensities vary",
        "constant": r"constant\.nii\.gz holds the value 412\.5 in every voxel",
        "nan": r"holed\.nii\.gz slice 17: 1 NaN/Inf value\(s\) \(expected finite intensities\)",
    }
    predicted: list[str] = []
    real_predict_case = labelling.predict_case

    def counted(item: Any, **kwargs: Any) -> Any:
        predicted.append(item.case)
        return real_predict_case(item, **kwargs)

    # The module, not the function of that name the package exports.
    monkeypatch.setattr(importlib.import_module("inpaintssl.inference.predict"), "predict_case", counted)
    out = tmp_path / "pred"
    for kind, path in bad.items():
        # After a good scan: a check made only while predicting would label c first.
        with pytest.raises(PredictionError, match=found[kind]) as err:
            predict(softmax_run, [brains / "c.nii.gz", path], output=out, device="cpu", progress=False)
        assert str(path) in str(err.value)
        assert predicted == [], kind
        assert _nothing_written(out)
    # A scan with any variation is no blank: one voxel off zero is predicted. (Off by a fraction:
    # 0 and 1 alone would be a two-value label map, which has its own warning.)
    nearly = np.zeros(nib.load(brains / "c.nii.gz").shape, dtype=np.float32)
    nearly[0, 0, 0] = 0.5
    report = predict(
        softmax_run, _save(tmp_path / "nearly.nii.gz", nearly), output=out, device="cpu", progress=False
    )
    assert [c.case for c in report.cases] == predicted == ["nearly"]


def test_the_scan_check_leaves_valid_predictions_bit_identical(
    softmax_run: Path, brains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = [brains / "b.nii.gz", brains / "c.nii.gz"]
    checked = predict(
        softmax_run, inputs, output=tmp_path / "checked", probabilities=True, device="cpu", progress=False
    )
    calls: list[Any] = []
    monkeypatch.setattr(preparation, "preflight", lambda *args, **kwargs: calls.append(args))
    unchecked = predict(
        softmax_run, inputs, output=tmp_path / "unchecked", probabilities=True, device="cpu", progress=False
    )
    assert len(calls) == 2  # the check was indeed left out
    for case in ("b", "c"):
        for kind in ("seg", "prob"):
            one, affine, _ = _nifti(tmp_path / "checked" / f"{case}_{kind}.nii.gz")
            other, affine_other, _ = _nifti(tmp_path / "unchecked" / f"{case}_{kind}.nii.gz")
            assert one.dtype == other.dtype and np.array_equal(one, other), (case, kind)
            assert np.array_equal(affine, affine_other)
    assert checked.cases[1].volumes_ml == unchecked.cases[1].volumes_ml


# --- memory: each input is released after its check and read again for its prediction -------------


def _three_scans(brains: Path, folder: Path) -> list[Path]:
    """Scans a and b as stored, and c stored in another axis order (reoriented on reading)."""
    folder.mkdir()
    nib.save(stored_as(nib.load(brains / "c.nii.gz"), "SPR"), folder / "moved.nii.gz")
    return [brains / "a.nii.gz", brains / "b.nii.gz", folder / "moved.nii.gz"]


def _decompressions(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[weakref.ref[np.ndarray]]]:
    """The real NIfTI reader, instrumented: the file name of each ``.nii.gz`` it decompresses, in
    order, and a weak reference to each array it decompressed (alive while anything holds it)."""
    real = NiftiVolume._array
    names: list[str] = []
    arrays: list[weakref.ref[np.ndarray]] = []

    def instrumented(self: NiftiVolume) -> Any:
        fresh = "_cache" not in self.__dict__
        array = real(self)
        if fresh and isinstance(array, np.ndarray):
            names.append(self.path.name)
            arrays.append(weakref.ref(array))
        return array

    monkeypatch.setattr(NiftiVolume, "_array", instrumented)
    return names, arrays


def _alive(arrays: list[weakref.ref[np.ndarray]]) -> int:
    gc.collect()
    return sum(ref() is not None for ref in arrays)


@pytest.mark.parametrize("read_ahead", ["on", "auto"])
def test_inputs_in_memory_are_the_one_predicted_and_with_read_ahead_the_next(
    softmax_run: Path,
    brains: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    decompressing_threads: list[str],
    read_ahead: str,
) -> None:
    inputs = _three_scans(brains, tmp_path / "scans")
    names = [p.name for p in inputs]
    decompressed, arrays = _decompressions(monkeypatch)
    threads = decompressing_threads
    module = importlib.import_module("inpaintssl.inference.predict")
    prepared: list[Any] = []
    real_prepare, real_predict_case = module.prepare_inputs, labelling.predict_case

    def held() -> tuple[set[str], int]:
        """The cases whose volume keeps its decompressed array, and how many such arrays live."""
        return {i.case for i in prepared if "_cache" in i.volume.__dict__}, _alive(arrays)

    def prepare(*args: Any, **kwargs: Any) -> Any:
        items = real_prepare(*args, **kwargs)
        prepared.extend(items)
        assert sorted(decompressed) == sorted(names)  # every input read in full by its check (on threads)...
        assert held() == (set(), 0)  # ...and none kept after it
        return items

    seen: list[tuple[str, tuple[set[str], int], tuple[set[str], int]]] = []

    def counted(item: Any, **kwargs: Any) -> Any:
        before = held()
        result = real_predict_case(item, **kwargs)
        seen.append((item.case, before, held()))
        return result

    monkeypatch.setattr(module, "prepare_inputs", prepare)
    monkeypatch.setattr(module, "predict_case", counted)
    predict(
        softmax_run,
        inputs,
        output=tmp_path / "p",
        probabilities=True,
        device="cpu",
        progress=False,
        read_ahead=read_ahead,  # type: ignore[arg-type]
    )
    cases = ["a", "b", "moved"]
    assert [case for case, _, _ in seen] == cases
    # Each input read once more for its case.
    assert len(decompressed) == 6 and sorted(decompressed[3:]) == sorted(names)
    assert held() == (set(), 0)
    if read_ahead == "auto":
        # On the CPU, each in its own turn: the one case being predicted holds its array, no other.
        assert seen == [(case, (set(), 0), ({case}, 1)) for case in cases]
        assert decompressed[3:] == names and threads[3:] == ["MainThread"] * 3
        return
    for position, (case, before, after) in enumerate(seen):
        # The case predicted and, read ahead on a thread (done or not yet), the next one: no other.
        allowed = set(cases[position : position + 2])
        assert case in after[0] and before[0] <= allowed and after[0] <= allowed
        assert before[1] <= 2 and after[1] <= 2 and after[1] >= 1
        if position > 0:
            assert case in before[0]  # read ahead while the case before was predicted
    # The first in its own turn, the others ahead of theirs.
    assert sorted(threads[3:]) == ["MainThread", "inpaintssl-read-ahead_0", "inpaintssl-read-ahead_0"]


def test_inputs_checked_on_threads_hold_at_most_that_many_scans_and_label_as_one_by_one(
    softmax_run: Path, brains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = [*_three_scans(brains, tmp_path / "scans"), brains / "c.nii.gz"]
    real = NiftiVolume._array
    lock = threading.Lock()
    arrays: list[weakref.ref[np.ndarray]] = []
    most: dict[str, Any] = {"alive": 0, "threads": set(), "checking": True}

    def instrumented(self: NiftiVolume) -> Any:
        fresh = "_cache" not in self.__dict__
        array = real(self)
        if fresh and isinstance(array, np.ndarray) and most["checking"]:
            with lock:
                arrays.append(weakref.ref(array))
                most["alive"] = max(most["alive"], _alive(arrays))
                most["threads"].add(threading.current_thread().name)
        return array

    monkeypatch.setattr(NiftiVolume, "_array", instrumented)
    real_predict_case = labelling.predict_case

    def predicting(item: Any, **kwargs: Any) -> Any:
        most["checking"] = False  # every input was checked: from here on, the prediction's reads
        return real_predict_case(item, **kwargs)

    monkeypatch.setattr(importlib.import_module("inpaintssl.inference.predict"), "predict_case", predicting)
    threaded = predict(
        softmax_run,
        inputs,
        output=tmp_path / "t",
        probabilities=True,
        device="cpu",
        progress=False,
        check_threads=2,
    )
    # Each checking thread holds one decompressed scan while it checks it, and releases it after.
    assert 1 <= most["alive"] <= 2
    assert any(name.startswith("inpaintssl-in-order") for name in most["threads"])
    one_by_one = predict(
        softmax_run,
        inputs,
        output=tmp_path / "s",
        probabilities=True,
        device="cpu",
        progress=False,
        check_threads=1,
    )
    for case in threaded.cases:
        for kind in ("seg", "prob"):
            one, affine, _ = _nifti(tmp_path / "t" / f"{case.case}_{kind}.nii.gz")
            other, affine_other, _ = _nifti(tmp_path / "s" / f"{case.case}_{kind}.nii.gz")
            assert np.array_equal(one, other) and np.array_equal(affine, affine_other), (case.case, kind)
    assert _read_csv(tmp_path / "t" / "volumes.csv") == _read_csv(tmp_path / "s" / "volumes.csv")
    assert [c.volumes_ml for c in threaded.cases] == [c.volumes_ml for c in one_by_one.cases]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_the_inputs_being_checked_before_the_cases_are_predicted(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    inputs = [brains / "a.nii.gz", brains / "b.nii.gz", brains / "c.nii.gz"]
    with contextlib.redirect_stderr(_Terminal()) as err:
        predict(softmax_run, inputs, output=tmp_path / "p", device="cpu", progress=True)
    shown = err.getvalue()
    # Reading hundreds of scans takes minutes: the check has a bar of its own, before predict's.
    assert "checking inputs:" in shown and "/3 " in shown.split("predict")[0]
    assert shown.index("checking inputs") < shown.index("predict")
    with contextlib.redirect_stderr(_Terminal()) as quiet:
        predict(softmax_run, inputs, output=tmp_path / "q", device="cpu", progress=False)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("threads", [0, -1])
def test_fewer_than_one_checking_thread_is_refused_naming_the_argument(
    softmax_run: Path, brains: Path, tmp_path: Path, threads: int
) -> None:
    with pytest.raises(ValueError, match=rf"check_threads={threads}; expected 1 or more threads"):
        predict(softmax_run, brains / "a.nii.gz", output=tmp_path / "p", device="cpu", check_threads=threads)
    assert not (tmp_path / "p").exists()


def test_inputs_checked_on_threads_raise_and_warn_in_input_order(
    softmax_run: Path, brains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _blank_and_nan_scans(brains, tmp_path / "bad")
    inputs = [brains / "a.nii.gz", bad["nan"], brains / "b.nii.gz", bad["zeros"]]
    # The NaN scan's check waits until the blank one, later in order, has failed: the error raised
    # is still the NaN scan's, the first in input order.
    blank_failed = threading.Event()
    real_preflight = preparation.preflight

    def ordered(datasets: Any, **kwargs: Any) -> Any:
        if "holed" in kwargs["what"]:
            assert blank_failed.wait(timeout=60), "the blank scan's check never ran beside this one"
        try:
            return real_preflight(datasets, **kwargs)
        except Exception:
            if "zeros" in kwargs["what"]:
                blank_failed.set()
            raise

    monkeypatch.setattr(preparation, "preflight", ordered)
    with pytest.raises(PredictionError, match=r"holed\.nii\.gz slice 17: 1 NaN/Inf value"):
        predict(softmax_run, inputs, output=tmp_path / "p", device="cpu", progress=False, check_threads=4)
    assert blank_failed.is_set()
    monkeypatch.setattr(preparation, "preflight", real_preflight)

    # Warnings raised while inputs are opened on threads come in input order, at the caller's line.
    moved = tmp_path / "moved"
    moved.mkdir()
    for name, codes in (("first", "SPR"), ("second", "PSL"), ("third", "RIA")):
        nib.save(stored_as(nib.load(brains / "c.nii.gz"), codes), moved / f"{name}.nii.gz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(
            softmax_run,
            [moved / f"{name}.nii.gz" for name in ("first", "second", "third")],
            output=tmp_path / "q",
            device="cpu",
            progress=False,
            orientation="stored",
            check_threads=3,
        )
    told = [w for w in caught if "which none of the run's training volumes had" in str(w.message)]
    assert [re.search(r"(\w+)\.nii\.gz: stored in", str(w.message)).group(1) for w in told] == [  # type: ignore[union-attr]
        "first",
        "second",
        "third",
    ]
    assert {w.filename for w in told} == {__file__}


def test_released_inputs_are_labelled_bit_for_bit_as_inputs_kept_in_memory(
    softmax_run: Path, brains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = _three_scans(brains, tmp_path / "scans")
    names = [p.name for p in inputs]
    decompressed, _ = _decompressions(monkeypatch)
    released = predict(
        softmax_run, inputs, output=tmp_path / "released", probabilities=True, device="cpu", progress=False
    )
    # Each read by its check (in any order: inputs are checked on threads), then again by its
    # prediction (in any order too: the next input is read ahead while a case is predicted).
    assert sorted(decompressed[:3]) == sorted(names) and sorted(decompressed[3:]) == sorted(names)
    decompressed.clear()
    # As before releasing existed: each input kept from its check to its prediction.
    monkeypatch.setattr(Volume, "release", lambda self: None)
    kept = predict(
        softmax_run, inputs, output=tmp_path / "kept", probabilities=True, device="cpu", progress=False
    )
    assert sorted(decompressed) == sorted(names)  # by the checks alone, on threads, in any order
    for case in ("a", "b", "moved"):
        for kind in ("seg", "prob"):
            one, affine, _ = _nifti(tmp_path / "released" / f"{case}_{kind}.nii.gz")
            other, affine_other, _ = _nifti(tmp_path / "kept" / f"{case}_{kind}.nii.gz")
            assert one.dtype == other.dtype and np.array_equal(one, other), (case, kind)
            assert np.array_equal(affine, affine_other)
    assert [c.volumes_ml for c in released.cases] == [c.volumes_ml for c in kept.cases]
    assert _read_csv(tmp_path / "released" / "volumes.csv") == _read_csv(tmp_path / "kept" / "volumes.csv")


@pytest.mark.parametrize("change", ["rewritten", "removed", "rewritten while predicted"])
def test_an_input_changed_after_its_check_is_refused_and_nothing_is_written(
    softmax_run: Path, brains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    inputs = [shutil.copy(brains / f"{n}.nii.gz", scans / f"{n}.nii.gz") for n in ("a", "b", "c")]
    target = scans / "c.nii.gz"
    checked = target.stat()
    out = tmp_path / "pred"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    predicted: list[str] = []
    real_predict_case = labelling.predict_case

    def rewrite() -> None:
        # Another valid scan under the same name (a copy finishing, a re-export): other data, other size.
        _save(target, np.asarray(nib.load(brains / "b.nii.gz").dataobj)[:, :, ::-1] * np.float32(0.5))

    def changing(item: Any, **kwargs: Any) -> Any:
        predicted.append(item.case)
        if item.case == "b" and change == "rewritten":
            rewrite()
        elif item.case == "b" and change == "removed":
            target.unlink()
        result = real_predict_case(item, **kwargs)
        if item.case == "c" and change == "rewritten while predicted":
            rewrite()
        return result

    monkeypatch.setattr(importlib.import_module("inpaintssl.inference.predict"), "predict_case", changing)
    with pytest.raises(PredictionError, match=r"changed after it was checked") as err:
        predict(softmax_run, [str(p) for p in inputs], output=out, device="cpu", progress=False)
    when = r"modified \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9}"
    found = "missing" if change == "removed" else rf"{target.stat().st_size} bytes, {when}"
    assert re.search(
        rf"input {re.escape(str(target))} changed after it was checked: it was {checked.st_size} bytes, "
        rf"{when} when checked, and is {found} now",
        str(err.value),
    ), str(err.value)
    assert predicted == (["a", "b", "c"] if change == "rewritten while predicted" else ["a", "b"])
    # Nothing of a, b (or c) reaches the output folder: what was there stays.
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    # The cases finished before the change are kept beside it, for the next predict to take.
    (kept,) = (p for p in tmp_path.iterdir() if p.name.startswith(".pred."))
    assert sorted(p.name for p in kept.iterdir()) == [".predict-resume", "a_seg.nii.gz", "b_seg.nii.gz"]
    if change != "removed":
        predicted.clear()

        def unchanging(item: Any, **kwargs: Any) -> Any:
            predicted.append(item.case)
            return real_predict_case(item, **kwargs)

        monkeypatch.setattr(
            importlib.import_module("inpaintssl.inference.predict"), "predict_case", unchanging
        )
        report = predict(softmax_run, [str(p) for p in inputs], output=out, device="cpu", progress=False)
        assert report.resumed == ("a", "b") and predicted == ["c"]
        assert sorted(p.name for p in out.iterdir()) == [
            "a_seg.nii.gz",
            "b_seg.nii.gz",
            "c_seg.nii.gz",
            "keep.txt",
            "volumes.csv",
        ]


def test_an_input_that_fails_its_read_ahead_is_refused_in_its_turn_and_nothing_is_written(
    softmax_run: Path, brains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    inputs = [shutil.copy(brains / f"{n}.nii.gz", scans / f"{n}.nii.gz") for n in ("a", "b", "c")]
    target = scans / "c.nii.gz"
    out = tmp_path / "pred"
    predicted: list[str] = []
    real_predict_case = labelling.predict_case

    def damaging(item: Any, **kwargs: Any) -> Any:
        predicted.append(item.case)
        if item.case == "a":
            # Before c is read ahead (while b is predicted): damaged in place, its size and time
            # kept, so only reading it tells.
            before = target.stat()
            data = bytearray(target.read_bytes())
            data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
            target.write_bytes(bytes(data))
            os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        return real_predict_case(item, **kwargs)

    monkeypatch.setattr(importlib.import_module("inpaintssl.inference.predict"), "predict_case", damaging)
    with pytest.raises(PredictionError) as err:
        predict(
            softmax_run, [str(p) for p in inputs], output=out, device="cpu", progress=False, read_ahead="on"
        )
    assert str(err.value).startswith(
        f"NIfTI file {target} cannot be read at slice 0 (truncated or corrupt data?): "
    ), str(err.value)
    assert predicted == ["a", "b"]  # refused when its own case came, after those before it
    assert not out.exists()
    # Kept for the next predict, once c is whole again: the cases before it.
    (kept,) = (p for p in tmp_path.iterdir() if p.name.startswith(".pred."))
    assert sorted(p.name for p in kept.iterdir()) == [".predict-resume", "a_seg.nii.gz", "b_seg.nii.gz"]
    assert not [t for t in threading.enumerate() if t.name.startswith("inpaintssl-read-ahead")]


@pytest.mark.parametrize("value", ["yes", "ON", True])
def test_an_unknown_read_ahead_is_refused_naming_the_choices(
    softmax_run: Path, brains: Path, tmp_path: Path, value: Any
) -> None:
    with pytest.raises(ValueError, match=r"read_ahead") as err:
        predict(softmax_run, brains / "a.nii.gz", output=tmp_path / "p", device="cpu", read_ahead=value)
    assert "'auto'" in str(err.value) and "'off'" in str(err.value)
    assert not (tmp_path / "p").exists()


def test_output_through_a_symbolic_link(softmax_run: Path, brains: Path, tmp_path: Path) -> None:
    dangling = tmp_path / "pred"
    dangling.symlink_to(tmp_path / "scratch" / "pred")
    # Refused before the model is loaded, not by the final rename after every case ran.
    with pytest.raises(
        PredictionError, match=r"pred is a symbolic link to .*scratch/pred, which does not exist"
    ):
        predict(tmp_path / "no-such-run", brains / "c.nii.gz", output=dangling, progress=False)
    # A link to an existing folder is that folder.
    (tmp_path / "scratch" / "pred").mkdir(parents=True)
    predict(softmax_run, brains / "c.nii.gz", output=dangling, device="cpu", progress=False)
    assert dangling.is_symlink()
    assert sorted(p.name for p in (tmp_path / "scratch" / "pred").iterdir()) == [
        "c_seg.nii.gz",
        "volumes.csv",
    ]


def test_no_inputs_matched(softmax_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    with pytest.raises(PredictionError, match=r"'.*nothing-\*\.nii\.gz' matched no files"):
        predict(softmax_run, str(tmp_path / "nothing-*.nii.gz"), output=out, progress=False)
    with pytest.raises(PredictionError, match=r"absent\.nii\.gz does not exist"):
        predict(softmax_run, tmp_path / "absent.nii.gz", output=out, progress=False)
    assert _nothing_written(out)


_KILLED_PREDICT = """
import importlib, os, signal, sys
predict_module = importlib.import_module("inpaintssl.inference.predict")
run, scan, out = sys.argv[1:4]
save_volume = predict_module.save_volume

def save_then_die(data, geometry, target, **options):
    save_volume(data, geometry, target, **options)
    os.kill(os.getpid(), signal.SIGKILL)  # mid-predict: a case staged, nothing moved into output

predict_module.save_volume = save_then_die
predict_module.predict(run, scan, output=out, device="cpu", progress=False)
"""
"""A predict killed by SIGKILL right after it staged its first label map."""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL, flock and symbolic links are POSIX")
def test_the_next_predict_removes_what_a_killed_predict_left_and_nothing_else(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pred"
    # A live predict's folder, which it holds locked (as the library's own predict does) throughout.
    with writing.staging_folder(out) as live:
        (live / "c_seg.nii.gz").write_text("a concurrent predict, still writing")
        killed = subprocess.run(
            [sys.executable, "-c", _KILLED_PREDICT, str(softmax_run), str(brains / "c.nii.gz"), str(out)],
            capture_output=True,
            timeout=600,
            env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
        # The killed predict's staging folder, named for the output, holding the case it staged.
        (stale,) = (p for p in tmp_path.iterdir() if p != live)
        assert re.fullmatch(r"\.pred\.[a-z0-9_]{8}\.predict\.tmp", stale.name), stale.name
        assert [p.name for p in stale.iterdir()] == ["c_seg.nii.gz"]
        # A user's files and folders that only look alike.
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("mine")
        folders = [".pred.notes.predict.tmp", ".pred.abcd1234.predict.tmp.bak", ".other.abcd1234.predict.tmp"]
        folders += ["pred.abcd1234.predict.tmp"]
        for name in folders:
            (tmp_path / name).mkdir()
            (tmp_path / name / "kept.txt").write_text(name)
        (tmp_path / ".pred.file1234.predict.tmp").write_text("a file named like a staging folder")
        (tmp_path / ".pred.link1234.predict.tmp").symlink_to(mine, target_is_directory=True)
        report = predict(softmax_run, brains / "c.nii.gz", output=out, device="cpu", progress=False)
        assert not stale.exists()
        assert (live / "c_seg.nii.gz").read_text() == "a concurrent predict, still writing"
        shutil.rmtree(live)  # what its predict's commit would have moved into output
    assert [c.segmentation for c in report.cases] == [out / "c_seg.nii.gz"]
    assert sorted(p.name for p in out.iterdir()) == ["c_seg.nii.gz", "volumes.csv"]
    for name in folders:
        assert (tmp_path / name / "kept.txt").read_text() == name
    assert (tmp_path / ".pred.file1234.predict.tmp").read_text() == "a file named like a staging folder"
    assert (tmp_path / ".pred.link1234.predict.tmp").resolve() == mine
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*folders, ".pred.file1234.predict.tmp", ".pred.link1234.predict.tmp", "mine", "pred"]
    )


# The two-step model labels far too much, the cut rows too: the warning is right, and not this test's concern.
@pytest.mark.filterwarnings("ignore:input .* on the edges where its slices were cropped")
def _train_set(run: Path) -> Any:
    train = build_datasets(_data_config(run), stage="finetune", seed=0, size_multiple=4).train
    assert train is not None
    return train


def test_mni152_run_predicts_in_the_templates_display_orientation(tmp_path: Path) -> None:
    # The demo dataset shows axial slices transposed and flipped; predict must undo that.
    run = issl.finetune(
        {
            "data": {"dataset": "mni152", "image_size": [112, 112]},
            "model": TINY,
            "optim": {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 4},
            "run": {"output_dir": str(tmp_path / "run"), "device": "cpu", "quiet": True},
        }
    ).run_dir
    template = load_template(zoom=0.5)
    scan = tmp_path / "mni.nii.gz"
    as_trained = nib.Nifti1Image(template.image, np.diag([*template.spacing, 1.0]))
    nib.save(as_trained, scan)
    nib.save(stored_as(as_trained, "PIL"), tmp_path / "mni_pil.nii.gz")  # another converter's order
    with warnings.catch_warnings():
        # Two steps of training label the whole crop, its cut edges too; that warning is not tested here.
        warnings.filterwarnings("ignore", message=r".* on the edges where its slices were cropped")
        # On the CPU, like the reference below: on a card, bf16 autocast would differ by more than rounding.
        report = predict(
            run, [scan, tmp_path / "mni_pil.nii.gz"], output=tmp_path / "pred", progress=False, device="cpu"
        )
    assert json.loads((run / "manifest.json").read_text())["orientations"] == {"RAS": len(_train_set(run))}
    assert [c.reoriented_to for c in report.cases] == [None, "RAS"]
    seg, _, _ = _nifti(tmp_path / "pred" / "mni_seg.nii.gz")
    assert seg.shape == template.image.shape
    other = np.asarray(nib.load(tmp_path / "pred" / "mni_pil_seg.nii.gz").dataobj)
    assert np.array_equal(
        other, np.asarray(stored_as(nib.Nifti1Image(seg, as_trained.affine), "PIL").dataobj)
    )
    model = load_model(run)
    val = build_datasets(_data_config(run), stage="finetune", seed=0, size_multiple=4).val
    for i in (0, len(val) // 2, len(val) - 1):
        item = val[i]
        with torch.no_grad():
            onehot = model.predict_onehot(model(item["image"][None]))[0].numpy() > 0.5
        expected = np.where(onehot.any(axis=0), onehot.argmax(axis=0) + 1, 0)
        # Display slice (116, 98) was cropped to 112 rows (from row 2) and padded to 112 columns (at 7).
        shown = seg[:, :, item["slice_index"]].T[::-1][2:114]
        inside = expected[:, 7:105]
        single = onehot.sum(axis=0)[:, 7:105] <= 1
        assert (inside[single] > 0).any()
        # z-scoring the already z-scored template again can move a logit by a rounding error.
        assert (shown[single] == inside[single]).mean() > 0.999


# --- the command line: the same call, JSON on stdout, exit code 2 and no traceback on bad input --


def test_evaluate_reads_the_architecture_of_safetensors_files_as_load_model_does(
    softmax_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data_config(softmax_run)
    reference = issl.evaluate(softmax_run, data, split="test", device="cpu").select(level="image").mean()
    exported = tmp_path / "model.safetensors"
    issl.export_model(softmax_run, format="safetensors", output=exported)
    for weights in (softmax_run / "checkpoints" / "best" / "model.safetensors", exported):
        table = issl.evaluate(weights, data, split="test", device="cpu")
        assert table.select(level="image").mean() == pytest.approx(reference, abs=1e-6), weights
    # The command line too, with the data section given as the run's whole config file.
    out = tmp_path / "eval.csv"
    config = softmax_run / "config.yaml"
    assert (
        cli_main(["evaluate", str(exported), "--data", str(config), "--device", "cpu", "--output", str(out)])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["mean"] == pytest.approx(reference, abs=1e-6)


def test_cli_predict_writes_what_the_api_writes(
    softmax_run: Path, brains: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_out, cli_out = tmp_path / "api", tmp_path / "cli"
    predict(softmax_run, brains / "c.nii.gz", output=api_out, device="cpu", progress=False)
    argv = ["predict", str(softmax_run), str(brains / "c.nii.gz"), "--output", str(cli_out)]
    assert cli_main([*argv, "--device", "cpu", "--quiet", "--probabilities"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {
        "output": str(cli_out),
        "cases": 1,
        "volumes_csv": str(cli_out / "volumes.csv"),
        "classes": list(CLASSES),
        "spacing_outside_training": [],
        "anatomy_cut_by_crop": [],
        "resumed": [],
        "skipped": [],
    }
    assert np.array_equal(_nifti(cli_out / "c_seg.nii.gz")[0], _nifti(api_out / "c_seg.nii.gz")[0])
    probabilities = _nifti(cli_out / "c_prob.nii.gz")[0]
    assert probabilities.shape == (*nib.load(brains / "c.nii.gz").shape, len(CLASSES))


@pytest.mark.parametrize("flag", [[], ["--read-ahead", "on"], ["--read-ahead", "off"]])
def test_cli_predict_reads_ahead_as_its_flag_says(
    softmax_run: Path, brains: Path, tmp_path: Path, decompressing_threads: list[str], flag: list[str]
) -> None:
    threads = decompressing_threads
    inputs = [str(brains / "a.nii.gz"), str(brains / "b.nii.gz")]
    argv = ["predict", str(softmax_run), *inputs, "--output", str(tmp_path / "p"), "--device", "cpu"]
    assert cli_main([*argv, "--quiet", *flag]) == 0
    # After the two checks: a in its own turn; b read ahead only when asked for (auto: not on the CPU).
    ahead = flag == ["--read-ahead", "on"]
    assert sorted(threads[2:]) == ["MainThread", "inpaintssl-read-ahead_0" if ahead else "MainThread"]


def test_cli_predict_refuses_an_unknown_read_ahead(
    softmax_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(
            ["predict", str(softmax_run), "x.nii.gz", "--output", str(tmp_path / "p"), "--read-ahead", "1"]
        )
    assert info.value.code == 2
    assert "argument --read-ahead: invalid choice: '1' (choose from" in capsys.readouterr().err


def test_spacing_given_for_a_file_that_states_its_own_warns_and_is_not_used(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    with pytest.warns(
        UserWarning,
        match=r"c\.nii\.gz: spacing=\(9\.0, 9\.0, 9\.0\) is not used; the file states its own voxel "
        r"size \(3 x 3\.5 x 4\.25 mm\)",
    ):
        given = predict(
            softmax_run,
            [brains / "c.nii.gz"],
            output=tmp_path / "a",
            device="cpu",
            progress=False,
            spacing=(9, 9, 9),
        )
    plain = predict(softmax_run, [brains / "c.nii.gz"], output=tmp_path / "b", device="cpu", progress=False)
    assert given.cases[0].volumes_ml == plain.cases[0].volumes_ml


def test_key_given_for_a_file_of_one_image_warns_and_is_not_used(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    # As spacing: a key meant for the .npz or HDF5 inputs of a mixed cohort is named where it
    # chose nothing, not passed over in silence.
    with pytest.warns(UserWarning, match=r"c\.nii\.gz: key='t1' is not used; a NIfTI file holds one image"):
        given = predict(
            softmax_run, [brains / "c.nii.gz"], output=tmp_path / "a", device="cpu", progress=False, key="t1"
        )
    plain = predict(softmax_run, [brains / "c.nii.gz"], output=tmp_path / "b", device="cpu", progress=False)
    assert np.array_equal(_nifti(given.cases[0].segmentation)[0], _nifti(plain.cases[0].segmentation)[0])


def test_cli_predict_bad_inputs_exit_2_naming_them(
    softmax_run: Path, pretrained_run: Any, brains: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncated = tmp_path / "cut.nii.gz"
    data = (brains / "c.nii.gz").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    np.save(tmp_path / "c.npy", np.asarray(nib.load(brains / "c.nii.gz").dataobj))
    blank = _save(tmp_path / "blank.nii.gz", np.zeros((48, 56, 40), dtype=np.float32))
    out = tmp_path / "pred"
    cases = [
        ([str(tmp_path / "no-such-run"), str(brains / "c.nii.gz")], r"no-such-run does not exist"),
        ([str(pretrained_run.run_dir), str(brains / "c.nii.gz")], r"pretrain \(inpainting\) checkpoint"),
        ([str(softmax_run), str(brains / "c_4d.nii.gz")], r"c_4d\.nii\.gz: the model takes 1 input channel"),
        ([str(softmax_run), str(truncated)], r"cut\.nii\.gz cannot be read"),
        ([str(softmax_run), str(blank)], r"blank\.nii\.gz holds the value 0 in every voxel"),
        ([str(softmax_run), str(brains / "c.nii.gz"), "--overlap", "1"], r"overlap=1\.0; expected a share"),
        ([str(softmax_run), str(brains / "c.nii.gz"), "--orientation", "RAX"], r"orientation='RAX' is"),
        (
            [str(softmax_run), str(brains / "c.nii.gz"), "--spacing", "0", "2", "2"],
            r"spacing=\(0\.0, 2\.0, 2\.0\); expected",
        ),
        (
            [str(softmax_run), str(brains / "c.nii.gz"), "--spacing", "nan", "1", "1"],
            r"spacing=\(nan, 1\.0, 1\.0\)",
        ),
        (
            [str(softmax_run), str(brains / "c.nii.gz"), "--spacing", "-2", "2", "2"],
            r"finite voxel sizes in mm, each > 0",
        ),
        # Two sizes for a volume would leave its slice thickness, and so every mL, to a guess.
        (
            [str(softmax_run), str(tmp_path / "c.npy"), "--spacing", "2", "2"],
            r"c\.npy: spacing=\[2\.0, 2\.0\] has 2 value\(s\); expected 3 voxel sizes in mm for a 3D array",
        ),
    ]
    for args, message in cases:
        assert cli_main(["predict", *args, "--output", str(out), "--device", "cpu", "--quiet"]) == 2, args
        err = capsys.readouterr().err
        assert re.search(message, err) and err.startswith("inpaintssl predict: error: "), err
        assert "Traceback" not in err
        assert _nothing_written(out)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize(
    ("run", "case", "large_slices"),
    [("softmax_run", "c", "crop"), ("crop_run_4d", "c_4d", "sliding_window")],
)
def test_cuda_prediction_agrees_with_the_cpu(
    run: str,
    case: str,
    large_slices: str,
    amp: str,
    brains: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    # The same run on both devices: the same files and geometry; only kernel rounding (TF32
    # convolutions, bf16 under autocast) may move a few voxels that sit on a class border.
    folder: Path = request.getfixturevalue(run)
    written = {}
    for device in ("cpu", "cuda"):
        written[device] = predict(
            folder,
            brains / f"{case}.nii.gz",
            output=tmp_path / device,
            device=device,
            amp=amp,
            probabilities=True,
            progress=False,
            large_slices=large_slices,  # type: ignore[arg-type]
        )
        files = sorted(p.name for p in (tmp_path / device).iterdir())
        assert files == [f"{case}_prob.nii.gz", f"{case}_seg.nii.gz", "volumes.csv"], device
    seg_cpu, affine_cpu, _ = _nifti(tmp_path / "cpu" / f"{case}_seg.nii.gz")
    seg_gpu, affine_gpu, _ = _nifti(tmp_path / "cuda" / f"{case}_seg.nii.gz")
    assert np.array_equal(affine_gpu, affine_cpu) and seg_gpu.dtype == seg_cpu.dtype == np.uint8
    assert np.mean(seg_gpu != seg_cpu) < (0.005 if amp == "off" else 0.02)
    prob_cpu, _, _ = _nifti(tmp_path / "cpu" / f"{case}_prob.nii.gz")
    prob_gpu, _, _ = _nifti(tmp_path / "cuda" / f"{case}_prob.nii.gz")
    assert float(np.mean(np.abs(prob_gpu - prob_cpu))) < (2e-3 if amp == "off" else 2e-2)
    for cpu_case, gpu_case in zip(written["cpu"].cases, written["cuda"].cases, strict=True):
        if large_slices == "sliding_window":  # windows cover every slice: nothing is cut
            assert gpu_case.cut_edge_voxels == cpu_case.cut_edge_voxels == 0
        for name in CLASSES:
            expected = pytest.approx(cpu_case.volumes_ml[name], rel=0.03, abs=0.5)
            assert gpu_case.volumes_ml[name] == expected, name


def test_evaluate_on_volumes_in_another_orientation_warns(
    softmax_run: Path, brains: Path, tmp_path: Path
) -> None:
    # The run's own data, stored as trained: no warning. The same scans stored "RAS" (nibabel's
    # reorientation, every voxel in place) are scored with a warning naming both orders; read in
    # the training order through data.params.orientation they score exactly as the originals.
    data = _data_config(softmax_run)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*orientation")
        original = issl.evaluate(softmax_run, data, split="test", device="cpu")
    for name in ("a", "b", "c"):
        for suffix in ("", "_seg"):
            nib.save(
                stored_as(nib.load(brains / f"{name}{suffix}.nii.gz"), "RAS"),
                tmp_path / f"{name}{suffix}.nii.gz",
            )
    moved = data.model_copy(update={"params": {**data.params, "root": str(tmp_path)}})
    told = (
        r"volumes are read in orientations the run .* never trained on \(RAS: 40 slices; it trained on ALS\)"
    )
    with pytest.warns(UserWarning, match=told):
        issl.evaluate(softmax_run, moved, split="test", device="cpu")
    aligned = moved.model_copy(update={"params": {**moved.params, "orientation": "ALS"}})
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*orientation")
        table = issl.evaluate(softmax_run, aligned, split="test", device="cpu")
    assert table.select(level="image").rows == original.select(level="image").rows


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_reorients_and_resamples_as_the_cpu(softmax_run: Path, brains: Path, tmp_path: Path) -> None:
    # A scan stored in another axis order at twice the resolution: reoriented on the host,
    # resampled (and its probabilities resampled back) on the device.
    _twice_as_fine(brains / "c.nii.gz", tmp_path / "fine.nii.gz")
    nib.save(stored_as(nib.load(tmp_path / "fine.nii.gz"), "SPR"), tmp_path / "moved.nii.gz")
    reports = {
        device: predict(
            softmax_run,
            tmp_path / "moved.nii.gz",
            output=tmp_path / device,
            device=device,
            amp="off",
            progress=False,
            resample="outside",
        )
        for device in ("cpu", "cuda")
    }
    cases = [(r.cases[0].reoriented_to, r.cases[0].resampled_to_mm) for r in reports.values()]
    assert cases == [("ALS", (3.0, 3.5))] * 2
    seg_cpu, affine_cpu, _ = _nifti(tmp_path / "cpu" / "moved_seg.nii.gz")
    seg_gpu, affine_gpu, _ = _nifti(tmp_path / "cuda" / "moved_seg.nii.gz")
    assert np.array_equal(affine_gpu, affine_cpu) and seg_gpu.shape == seg_cpu.shape
    assert np.mean(seg_gpu != seg_cpu) < 0.005


@pytest.mark.parametrize(
    ("grid", "target", "smooth"),
    [
        ((96, 112), (48, 56), False),
        ((96, 112), (47, 56), True),
        ((30, 30), (10, 12), True),
        ((8, 8), (32, 32), False),
    ],
)
def test_resampling_low_passes_only_past_a_twofold_shrink(
    grid: tuple[int, int], target: tuple[int, int], smooth: bool
) -> None:
    # Twofold bilinear averages each pixel pair (the finer-scan test above relies on it); beyond,
    # pixels are skipped and the image is low-passed first.
    assert shrinks_past_bilinear(grid, target) is smooth


def test_inputs_a_folder_of_arrays_and_names_with_glob_characters(tmp_path: Path) -> None:
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    for name in ("b.npy", "a.npz", "c.h5", "notes.txt"):
        (arrays / name).write_bytes(b"")
    assert [p.name for p in expand_inputs(arrays)] == ["a.npz", "b.npy", "c.h5"]  # not a DICOM series
    (tmp_path / "scan[1].nii.gz").write_bytes(b"")
    assert [p.name for p in expand_inputs(tmp_path / "scan[1].nii.gz")] == ["scan[1].nii.gz"]
    with pytest.raises(PredictionError, match=r"input pattern .*scan\[2\]\.nii\.gz' matched no files"):
        expand_inputs(str(tmp_path / "scan[2].nii.gz"))


def test_committing_into_an_existing_folder_is_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def staged() -> Path:
        staging = tmp_path / f".out.{len(list(tmp_path.iterdir()))}.predict.tmp"
        staging.mkdir()
        for name in ("s1_seg.nii.gz", "s2_seg.nii.gz"):
            (staging / name).write_text(f"new {name}")
        (staging / "volumes.csv").write_text("case,file,wm_ml\ns1,s1.nii.gz,2.5\ns2,s2.nii.gz,3.0\n")
        return staging

    out = tmp_path / "out"
    out.mkdir()
    for name in ("s1_seg.nii.gz", "s2_seg.nii.gz", "s0_seg.nii.gz"):
        (out / name).write_text(f"old {name}")
    (out / "volumes.csv").write_text("case,file,wm_ml\ns0,s0.nii.gz,1.0\ns1,s1.nii.gz,2.0\n")
    before = {p.name: p.read_text() for p in out.iterdir()}

    # The second file cannot be moved in: the first is taken out again, the old ones put back.
    real_replace = os.replace

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == out / "s2_seg.nii.gz" and ".predict.tmp" in str(src):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(writing.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        writing.commit(staged(), out)
    monkeypatch.setattr(writing.os, "replace", real_replace)
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".out.*.old.tmp"))

    # A folder where a file goes is refused before anything moves.
    (out / "s2_seg.nii.gz").unlink()
    (out / "s2_seg.nii.gz").mkdir()
    with pytest.raises(
        PredictionError, match=r"holds a folder 's2_seg\.nii\.gz' where a prediction file goes"
    ):
        writing.commit(staged(), out)
    assert (out / "s1_seg.nii.gz").read_text() == "old s1_seg.nii.gz"

    # Success: the new files replace the old, other files stay, nothing temporary is left.
    (out / "s2_seg.nii.gz").rmdir()
    writing.commit(staged(), out)
    assert (out / "s1_seg.nii.gz").read_text() == "new s1_seg.nii.gz"
    assert (out / "s0_seg.nii.gz").read_text() == "old s0_seg.nii.gz"
    # The table keeps the row of the case not predicted again (inference.volume_table).
    rows = "s0,s0.nii.gz,1.0\ns1,s1.nii.gz,2.5\ns2,s2.nii.gz,3.0\n"
    assert (out / "volumes.csv").read_text() == "case,file,wm_ml\n" + rows
    assert not list(tmp_path.glob(".out.*.old.tmp"))


def _output_files(out: Path) -> dict[str, str]:
    """The files in ``out`` (not its folders): name -> text (gzip bytes decoded with replacements)."""
    return {p.name: p.read_bytes().decode(errors="replace") for p in sorted(out.iterdir()) if p.is_file()}


_TABLE = "case,file,disc_ml,square_ml\n"


def test_a_case_committed_again_takes_out_its_earlier_files_this_predict_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    earlier = {
        "a_seg.nii.gz": "old a label map",
        "a_seg.nrrd": "old a label map, as NRRD",
        "a_prob.nii.gz": "old a probabilities, another model's",
        "a_t2.mha": "old a T2 map",
        "a_prob_seg.nii.gz": "the label map of a case named a_prob",
        "a_notes.txt": "a user's notes",
        "b_seg.nii.gz": "old b label map",
        "b_prob.nii.gz": "old b probabilities",
        "d_prob.nii.gz": "no predict's: volumes.csv has no row of d",
        "volumes.csv": _TABLE + "a,a.nii.gz,1.0,0.0\nb,b.nii.gz,2.0,0.0\na_prob,a_prob.nii.gz,3.0,0.0\n",
    }
    for name, text in earlier.items():
        (out / name).write_text(text)
    (out / "a_seg.dcm").mkdir()  # a folder is never taken

    def staged() -> Path:
        staging = tmp_path / f".out.{len(list(tmp_path.iterdir()))}.predict.tmp"
        staging.mkdir()
        (staging / "a_seg.nii.gz").write_text("new a label map")
        (staging / "d_seg.nii.gz").write_text("new d label map")
        (staging / "volumes.csv").write_text(_TABLE + "a,a.nii.gz,1.5,0.0\nd,d.nii.gz,4.0,0.0\n")
        return staging

    # The new table cannot be moved in, the last move: the earlier files taken out come back too.
    real_replace = os.replace

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == out / "volumes.csv" and ".predict.tmp" in str(src):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(writing.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        writing.commit(staged(), out, cases=["a", "d"])
    monkeypatch.setattr(writing.os, "replace", real_replace)
    assert _output_files(out) == earlier
    assert not list(tmp_path.glob(".out.*.old.tmp"))

    writing.commit(staged(), out, cases=["a", "d"])
    # By hand: of a's files only the new label map is left; b and the case a_prob were not predicted
    # again; d's stray file is no predict's (no row); the notes and the folder are no output's.
    expected = {
        "a_notes.txt": "a user's notes",
        "a_prob_seg.nii.gz": "the label map of a case named a_prob",
        "a_seg.nii.gz": "new a label map",
        "b_prob.nii.gz": "old b probabilities",
        "b_seg.nii.gz": "old b label map",
        "d_prob.nii.gz": "no predict's: volumes.csv has no row of d",
        "d_seg.nii.gz": "new d label map",
    }
    assert {n: t for n, t in _output_files(out).items() if n != "volumes.csv"} == expected
    assert (out / "a_seg.dcm").is_dir()
    assert not list(tmp_path.glob(".out.*.old.tmp"))


def test_a_case_predicted_again_leaves_none_of_its_earlier_predictions_files(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    image = np.random.default_rng(0).normal(size=(32, 32, 5)).astype(np.float32)
    for name, shift in (("a", 0.0), ("b", 1.0)):
        nib.save(nib.Nifti1Image(image + shift, np.diag([1.0, 1.0, 2.0, 1.0])), scans / f"{name}.nii.gz")
    run, out = trained_run.run_dir, tmp_path / "out"
    quiet: dict[str, Any] = {"device": "cpu", "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        predict(run, [scans / "a.nii.gz", scans / "b.nii.gz"], output=out, probabilities=True, **quiet)
        predict(run, scans / "a.nii.gz", output=out, **quiet)
        after_nifti = sorted(p.name for p in out.iterdir())
        predict(run, scans / "a.nii.gz", output=out, output_format="nrrd", **quiet)
        predict(run, scans / "a.nii.gz", output=tmp_path / "alone", output_format="nrrd", **quiet)
    # a's probabilities (no longer asked for), then its NIfTI label map (now NRRD), are gone; b's stay.
    assert after_nifti == ["a_seg.nii.gz", "b_prob.nii.gz", "b_seg.nii.gz", "volumes.csv"]
    assert sorted(p.name for p in out.iterdir()) == [
        "a_seg.nrrd",
        "b_prob.nii.gz",
        "b_seg.nii.gz",
        "volumes.csv",
    ]
    assert (out / "a_seg.nrrd").read_bytes() == (tmp_path / "alone" / "a_seg.nrrd").read_bytes()


def test_an_output_file_that_is_an_input_is_refused_before_predicting(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    # Predicting a folder into itself: case a's label map a_seg.nii.gz would replace the scan of that name.
    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "a_seg"):
        image = rng.normal(size=(32, 32, 5)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), folder / f"{name}.nii.gz")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    for output in (folder, tmp_path / "link"):
        with pytest.raises(
            PredictionError,
            match=rf"^output {re.escape(str(output / 'a_seg.nii.gz'))} \(a file of case 'a', .* is the input "
            rf"{re.escape(str(folder / 'a_seg.nii.gz'))}: the scan would be replaced",
        ):
            predict(trained_run.run_dir, folder, output=output, device="cpu", progress=False)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "scans"]


_KILLED_COMMIT = """
import os, shutil, signal, sys
from pathlib import Path
from inpaintssl.inference import writing
staging, out, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
real_replace, moves = os.replace, []

def dying_replace(src, dst):
    real_replace(src, dst)
    if out in (Path(src).parent, Path(dst).parent):
        moves.append(src)
        if str(len(moves)) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

def dying_rmtree(path, *args, **kwargs):
    if kill_at == "rmtree" and str(path).endswith(".old.tmp"):
        os.kill(os.getpid(), signal.SIGKILL)
    return shutil_rmtree(path, *args, **kwargs)

shutil_rmtree = shutil.rmtree
writing.os.replace = dying_replace
writing.shutil.rmtree = dying_rmtree
writing.commit(staging, out, cases=["a", "c"])
"""
"""A commit into an existing output, killed by SIGKILL after its ``kill_at``-th move into or out of
``output``, or (``rmtree``) when it removes its set-aside folder, every file in place."""

_BEFORE_COMMIT = {
    "a_prob.nii.gz": "old a probabilities",
    "a_seg.nii.gz": "old a label map",
    "b_seg.nii.gz": "old b label map",
    "volumes.csv": _TABLE + "a,scans/a.nii.gz,1.0,0.0\nb,scans/b.nii.gz,2.0,0.0\n",
}
_COMMITTED = {
    "a_seg.nii.gz": "new a label map",
    "b_seg.nii.gz": "old b label map",
    "c_seg.nii.gz": "new c label map",
    "volumes.csv": _TABLE + "a,scans/a.nii.gz,1.5,0.0\nb,scans/b.nii.gz,2.0,0.0\nc,scans/c.nii.gz,3.0,0.0\n",
}
# The moves: a_prob.nii.gz (taken out, not written now) aside; the old a_seg.nii.gz aside and the
# new one in; c_seg.nii.gz in (nothing to set aside); the old volumes.csv aside and the new one in.
_COMMIT_MOVES = 6


def _killed_commit(tmp_path: Path, kill_at: str) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    for name, text in _BEFORE_COMMIT.items():
        (out / name).write_text(text)
    staging = tmp_path / ".out.abcd1234.predict.tmp"
    staging.mkdir()
    (staging / "a_seg.nii.gz").write_text("new a label map")
    (staging / "c_seg.nii.gz").write_text("new c label map")
    (staging / "volumes.csv").write_text(_TABLE + "a,scans/a.nii.gz,1.5,0.0\nc,scans/c.nii.gz,3.0,0.0\n")
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_COMMIT, str(staging), str(out), kill_at],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX")
@pytest.mark.parametrize("kill_at", [*(str(k) for k in range(1, _COMMIT_MOVES + 1)), "rmtree"])
def test_a_commit_killed_midway_is_undone_by_the_next_one(tmp_path: Path, kill_at: str) -> None:
    out = _killed_commit(tmp_path, kill_at)
    (aside,) = tmp_path.glob(".out.*.old.tmp")
    torn = _output_files(out)
    if kill_at == "rmtree":
        assert torn == _COMMITTED  # every file was in place, the journal removed: nothing to undo
    elif kill_at == str(_COMMIT_MOVES):
        assert torn == _COMMITTED  # every file moved, but not yet confirmed: undone all the same
    else:
        assert torn not in (_BEFORE_COMMIT, _COMMITTED)
    assert writing.restore_interrupted_commits(out) == [aside]
    assert _output_files(out) == (_COMMITTED if kill_at == "rmtree" else _BEFORE_COMMIT)
    assert not aside.exists()
    assert writing.restore_interrupted_commits(out) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX")
def test_the_next_predict_puts_back_what_a_killed_commit_set_aside(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    # Killed after the old volumes.csv was set aside, before the new one was in: the output had no
    # table, and its old label map and probabilities lay in the hidden folder for good.
    out = _killed_commit(tmp_path, str(_COMMIT_MOVES - 1))
    assert "volumes.csv" not in _output_files(out)
    scans = tmp_path / "scans"
    scans.mkdir()
    image = np.random.default_rng(0).normal(size=(32, 32, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), scans / "e.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        predict(trained_run.run_dir, scans / "e.nii.gz", output=out, device="cpu", progress=False)
    files = _output_files(out)
    assert sorted(files) == sorted([*_BEFORE_COMMIT, "e_seg.nii.gz"])
    assert {name: files[name] for name in _BEFORE_COMMIT if name != "volumes.csv"} == {
        name: text for name, text in _BEFORE_COMMIT.items() if name != "volumes.csv"
    }
    rows = list(csv.DictReader(io.StringIO(files["volumes.csv"])))
    assert [(row["case"], row["file"]) for row in rows] == [
        ("a", "scans/a.nii.gz"),
        ("b", "scans/b.nii.gz"),
        ("e", str(scans / "e.nii.gz")),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scans"]


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_restoring_leaves_a_live_commits_folder_and_puts_back_an_older_layouts_files(tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    (out / "a_seg.nii.gz").write_text("new a label map")
    identity = [out.stat().st_dev, out.stat().st_ino]
    live = tmp_path / ".out.live1234.old.tmp"
    (live / "old").mkdir(parents=True)
    (live / "old" / "b_seg.nii.gz").write_text("old b label map")
    (live / "journal.json").write_text(json.dumps({"output": identity, "new": ["a_seg.nii.gz"]}))
    # An earlier version's folder: its old files directly in it, no journal.
    earlier = tmp_path / ".out.earl1234.old.tmp"
    earlier.mkdir()
    (earlier / "c_seg.nii.gz").write_text("old c label map")
    (earlier / "a_seg.nii.gz").write_text("old a label map")  # replaced: the output's own is kept
    # Named like neither: never touched.
    (tmp_path / ".out.notes.old.tmp").mkdir()
    (tmp_path / ".out.notes.old.tmp" / "b_seg.nii.gz").write_text("mine")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a commit still moving its files
        assert writing.restore_interrupted_commits(out) == [earlier]
        assert _output_files(out) == {"a_seg.nii.gz": "new a label map", "c_seg.nii.gz": "old c label map"}
        assert (live / "journal.json").is_file()
    finally:
        os.close(fd)
    # Its commit gone, the live folder's commit is undone: b back, a (new, none before) out.
    assert writing.restore_interrupted_commits(out) == [live]
    assert _output_files(out) == {"b_seg.nii.gz": "old b label map", "c_seg.nii.gz": "old c label map"}
    assert (tmp_path / ".out.notes.old.tmp" / "b_seg.nii.gz").read_text() == "mine"
    # A folder set aside from an output since moved away: nothing is put into the new folder there.
    gone = tmp_path / ".out.gone1234.old.tmp"
    (gone / "old").mkdir(parents=True)
    (gone / "old" / "d_seg.nii.gz").write_text("old d label map")
    (gone / "journal.json").write_text(
        json.dumps({"output": [out.stat().st_dev, out.stat().st_ino], "new": []})
    )
    out.rename(tmp_path / "moved")
    out.mkdir()
    assert writing.restore_interrupted_commits(out) == [gone]
    assert _output_files(out) == {}
    assert sorted(_output_files(tmp_path / "moved")) == ["b_seg.nii.gz", "c_seg.nii.gz"]


def test_a_network_failing_on_small_slices_is_named_with_the_input(tmp_path: Path) -> None:
    """MONAI's instance norm needs more than one pixel at 1/16 of the input: 16 x 16 slices fail."""
    pytest.importorskip("monai")
    run = tmp_path / "monai"
    with pytest.warns(UserWarning):  # one step: too short to judge convergence
        issl.finetune(
            {
                "data": {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 4, "num_test": 4}},
                "model": {"backbone": "monai_basic_unet", "params": {"features": [4, 4, 4, 4, 4, 4]}},
                "optim": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 4},
                "run": {"output_dir": str(run), "quiet": True, "device": "cpu"},
            }
        )
    scan = tmp_path / "small.npy"
    np.save(scan, np.random.default_rng(0).normal(size=(16, 16, 3)).astype(np.float32))
    with pytest.raises(
        PredictionError,
        match=r"input .*small\.npy: the network \(monai_basic_unet\) failed on slices of \(16, 16\)",
    ):
        predict(run, scan, output=tmp_path / "pred", device="cpu", progress=False, spacing=(1.0, 1.0, 1.0))
    assert _nothing_written(tmp_path / "pred")
