"""SKM-TEA reader against hand-computed NumPy expectations on a written SKM-TEA-layout folder."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from data_builders import SKMTEA_SHAPE, SkmteaFixture, make_skmtea, write_skmtea_scan
from torch.utils.data import DataLoader

from inpaintssl.data.base import DataError
from inpaintssl.data.loading import seed_worker
from inpaintssl.data.skmtea import SKMTEA_CLASSES, SKMTEADataset
from inpaintssl.registry import DATASETS


def _expected_image(fx: SkmteaFixture, scan: str, z: int) -> np.ndarray:
    rss = np.sqrt(fx.echo1[scan].astype(np.float64) ** 2 + fx.echo2[scan].astype(np.float64) ** 2)
    return (rss[:, :, z] - rss.mean()) / rss.std()


def test_items_are_sagittal_rss_slices_zscored_per_volume(skmtea: SkmteaFixture) -> None:
    ds = SKMTEADataset(split="train", root=skmtea.root)
    assert len(ds) == 4 * SKMTEA_SHAPE[2]
    for index in (0, 3, 7, 19):
        item = ds[index]
        scan, z = item["volume_id"], item["slice_index"]
        assert item["image"].dtype == torch.float32
        assert item["image"].shape == (1, SKMTEA_SHAPE[0], SKMTEA_SHAPE[1])
        np.testing.assert_allclose(item["image"][0].numpy(), _expected_image(skmtea, scan, z), atol=1e-4)


@pytest.mark.parametrize("stats", ["auto", "compute"])
def test_whole_volume_of_zscored_slices_has_zero_mean_unit_std(skmtea: SkmteaFixture, stats: str) -> None:
    ds = SKMTEADataset(split="val", root=skmtea.root, stats=stats)  # type: ignore[arg-type]
    volume = np.stack([ds[i]["image"][0].numpy() for i in range(len(ds))], axis=-1).astype(np.float64)
    assert volume.mean() == pytest.approx(0.0, abs=1e-5)
    assert volume.std() == pytest.approx(1.0, abs=1e-5)


def test_file_statistics_are_used_when_present(tmp_path: Path) -> None:
    fx = make_skmtea(tmp_path / "s", splits={"train": 1}, unlabelled=0)
    scan = fx.splits["train"][0]
    path = fx.root / "image_files" / f"{scan}.h5"
    with h5py.File(path, "a") as f:  # deliberately "wrong" stored statistics
        group = f.require_group("stats/rss")
        for key, value in (("mean", 100.0), ("std", 4.0)):
            if key in group:
                del group[key]
            group[key] = value
    from_file = SKMTEADataset(split="train", root=fx.root, stats="file")[2]["image"][0].numpy()
    computed = SKMTEADataset(split="train", root=fx.root, stats="compute")[2]["image"][0].numpy()
    rss = np.sqrt(fx.echo1[scan].astype(np.float64) ** 2 + fx.echo2[scan].astype(np.float64) ** 2)[:, :, 2]
    np.testing.assert_allclose(from_file, (rss - 100.0) / 4.0, atol=1e-4)
    np.testing.assert_allclose(computed, _expected_image(fx, scan, 2), atol=1e-4)


def test_stats_file_without_stored_statistics_is_an_error(tmp_path: Path) -> None:
    fx = make_skmtea(tmp_path / "s", splits={"train": 1}, unlabelled=0)  # scan 1 has no stats group
    with pytest.raises(DataError, match=r"MTR_001\.h5 has no stats/rss"):
        SKMTEADataset(split="train", root=fx.root, stats="file")


def test_six_classes_collapse_to_the_papers_four(skmtea: SkmteaFixture) -> None:
    ds = SKMTEADataset(split="train", root=skmtea.root)
    assert ds.class_names == SKMTEA_CLASSES
    for index in (1, 12):
        item = ds[index]
        seg = skmtea.seg[item["volume_id"]][:, :, item["slice_index"], :].astype(bool)
        expected = np.stack([seg[..., 0], seg[..., 1], seg[..., 2] | seg[..., 3], seg[..., 4] | seg[..., 5]])
        assert item["label"].dtype == torch.float32
        np.testing.assert_array_equal(item["label"].numpy(), expected.astype(np.float32))


def test_echoes_spacing_and_scan_parameters(skmtea: SkmteaFixture) -> None:
    ds = SKMTEADataset(split="train", root=skmtea.root)
    item = ds[2 * SKMTEA_SHAPE[2] + 1]  # second slice of the third scan
    scan = item["volume_id"]
    assert scan == skmtea.splits["train"][2]
    np.testing.assert_array_equal(item["echo1"][0].numpy(), skmtea.echo1[scan][:, :, 1])
    np.testing.assert_array_equal(item["echo2"][0].numpy(), skmtea.echo2[scan][:, :, 1])
    assert item["spacing"].tolist() == skmtea.spacing[scan]
    assert item["scan_params"] == pytest.approx(skmtea.params[scan])


def test_splits_follow_the_annotation_files(skmtea: SkmteaFixture) -> None:
    for split in ("train", "val", "test"):
        ds = DATASETS.build("skmtea", split=split, labelled=True, root=str(skmtea.root))
        assert sorted(set(ds.volume_ids)) == skmtea.splits[split]
    unlabelled = DATASETS.build("skmtea", split="unlabelled", labelled=False, root=str(skmtea.root))
    assert sorted(set(unlabelled.volume_ids)) == skmtea.splits["unlabelled"]
    assert "label" not in unlabelled[0] and "scan_params" not in unlabelled[0]


@pytest.mark.parametrize("folder", ["skm-tea[v1]", "skm*"])
def test_unlabelled_files_are_matched_under_a_root_named_with_glob_characters(
    tmp_path: Path, folder: str
) -> None:
    # The root is a folder: its [ and * match themselves, where they matched no scan (or a sibling's).
    fx = make_skmtea(tmp_path / folder, splits={"train": 1}, unlabelled=2)
    make_skmtea(tmp_path / "skm-teav", splits={"train": 1}, unlabelled=3, seed=1)
    found = SKMTEADataset(split="unlabelled", labelled=False, root=fx.root, files="*.h5")
    own = sorted(p.stem for p in (fx.root / "image_files").iterdir())  # the named files, annotated too
    assert sorted(set(found.volume_ids)) == own and len(own) == 3
    assert all(Path(f).parent == fx.root / "image_files" for f in found.data_files)


def test_unlabelled_files_matching_held_out_scans_warn_and_declare_the_test_anatomy(tmp_path: Path) -> None:
    # files="MTR_*.h5" took the val and test scans into pretraining, silently: the SSL arm saw the
    # anatomy the comparison holds out, and a study's report did not say so.
    fx = make_skmtea(tmp_path / "s", splits={"train": 2, "val": 1, "test": 1}, unlabelled=1)
    held_out = sorted([*fx.splits["val"], *fx.splits["test"]])
    with pytest.warns(
        UserWarning, match=rf"match 2 scan\(s\) of the val or test split \({', '.join(held_out)}\)"
    ):
        found = SKMTEADataset(split="unlabelled", labelled=False, root=fx.root, files="MTR_*.h5")
    assert set(found.volume_ids) >= set(held_out)
    said = SKMTEADataset.unlabelled_holds_test_anatomy(root=str(fx.root), files="MTR_*.h5")
    assert said == f"SKM-TEA test scans ({fx.splits['test'][0]}), which files='MTR_*.h5' match"
    # The unannotated scans alone (the default, or named) hold none of it, and build without a word.
    assert SKMTEADataset.unlabelled_holds_test_anatomy(root=str(fx.root)) is None
    own = [f"{scan}.h5" for scan in fx.splits["unlabelled"]]
    assert SKMTEADataset.unlabelled_holds_test_anatomy(root=str(fx.root), files=own) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SKMTEADataset(split="unlabelled", labelled=False, root=fx.root, files=own)
    assert SKMTEADataset.unlabelled_holds_test_anatomy(root=str(fx.root), split="test") is not None


def test_unlabelled_split_refuses_labels(skmtea: SkmteaFixture) -> None:
    with pytest.raises(DataError, match="unlabelled"):
        SKMTEADataset(split="unlabelled", labelled=True, root=skmtea.root)


def _open_count(ds: SKMTEADataset) -> int:
    return len(ds._handles)


def test_each_file_is_opened_once_per_process(skmtea: SkmteaFixture) -> None:
    ds = SKMTEADataset(split="train", root=skmtea.root)
    for i in range(len(ds)):
        ds[i]
    assert _open_count(ds) == 4
    handle = ds._handles.get(skmtea.root / "image_files" / "MTR_001.h5")
    ds[0]
    assert ds._handles.get(skmtea.root / "image_files" / "MTR_001.h5") is handle


def test_worker_processes_read_the_same_items(skmtea: SkmteaFixture) -> None:
    ds = SKMTEADataset(split="train", root=skmtea.root)
    ds[0]  # the parent opens a handle first: forked workers must not reuse it
    serial = [ds[i]["image"] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=5, num_workers=2, worker_init_fn=seed_worker)
    parallel = torch.cat([batch["image"] for batch in loader])
    torch.testing.assert_close(parallel, torch.stack(serial))
    assert os.getpid() == ds._handles._pid


# -- bad input -------------------------------------------------------------------------------


def test_missing_h5_file(skmtea: SkmteaFixture) -> None:
    (skmtea.root / "image_files" / "MTR_002.h5").unlink()
    with pytest.raises(DataError, match=r"MTR_002\.h5 does not exist"):
        SKMTEADataset(split="train", root=skmtea.root)


def test_missing_h5_key(skmtea: SkmteaFixture) -> None:
    with h5py.File(skmtea.root / "image_files" / "MTR_003.h5", "a") as f:
        del f["echo2"]
    with pytest.raises(DataError, match=r"MTR_003\.h5 has no dataset 'echo2'"):
        SKMTEADataset(split="train", root=skmtea.root)


def test_wrong_rank(skmtea: SkmteaFixture) -> None:
    path = skmtea.root / "image_files" / "MTR_001.h5"
    e = np.ones((16, 12), np.float32)
    write_skmtea_scan(path, e, e, None, with_stats=False)
    with pytest.raises(DataError, match=r"MTR_001\.h5 key 'echo1'.*rank 2.*expected rank 3"):
        SKMTEADataset(split="train", root=skmtea.root, labelled=False)


def test_seg_shape_mismatch(skmtea: SkmteaFixture) -> None:
    path = skmtea.root / "image_files" / "MTR_004.h5"
    with h5py.File(path, "a") as f:
        del f["seg"]
        f["seg"] = np.zeros((16, 12, 4, 6), np.uint8)
    with pytest.raises(DataError, match=r"MTR_004\.h5: seg has shape \(16, 12, 4, 6\)"):
        SKMTEADataset(split="train", root=skmtea.root)


def test_label_values_out_of_range_name_file_and_slice(skmtea: SkmteaFixture) -> None:
    path = skmtea.root / "image_files" / "MTR_001.h5"
    with h5py.File(path, "a") as f:
        f["seg"][3, 4, 2, 1] = 7
    ds = SKMTEADataset(split="train", root=skmtea.root)
    ds[1]  # other slices still read
    with pytest.raises(DataError, match=r"MTR_001\.h5 seg slice 2: one-hot label values \[7\]"):
        ds[2]


def test_a_voxel_in_two_merged_classes_is_refused_naming_file_slice_and_classes(
    skmtea: SkmteaFixture,
) -> None:
    path = skmtea.root / "image_files" / "MTR_001.h5"
    with h5py.File(path, "a") as f:
        seg = f["seg"][:, :, 2, :]
        seg[3, 4] = 0
        seg[3, 4, [0, 1]] = 1  # patellar and femoral cartilage at one voxel
        seg[5, 6] = 0
        seg[5, 6, [0, 1]] = 1
        f["seg"][:, :, 2, :] = seg
    ds = SKMTEADataset(split="train", root=skmtea.root)
    ds[1]  # other slices still read
    with pytest.raises(
        DataError,
        match=r"MTR_001\.h5 seg slice 2: 2 voxel\(s\) are set in more than one class: 2 in both "
        r"'patellar_cartilage' \(channel 0\) and 'femoral_cartilage' \(channel 1\) "
        r"\(the first at index \(3, 4\) of the \(16, 12\) array\)",
    ):
        ds[2]
    # The pre-flight check reads the whole scan and refuses it too, naming the rows it read.
    from inpaintssl.data.preflight import preflight

    with pytest.raises(DataError, match=r"MTR_001\.h5 seg rows 0\.\.15: 2 voxel\(s\) .* more than one class"):
        preflight({"train": ds}, progress=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_pixels_name_file_and_slice(skmtea: SkmteaFixture, bad: float) -> None:
    path = skmtea.root / "image_files" / "MTR_002.h5"  # has stored statistics
    with h5py.File(path, "a") as f:
        f["echo1"][0, 0, 3] = bad
    ds = SKMTEADataset(split="train", root=skmtea.root, stats="auto")
    ds[SKMTEA_SHAPE[2] + 2]
    with pytest.raises(DataError, match=r"MTR_002\.h5 echo1 slice 3: 1 NaN/Inf"):
        ds[SKMTEA_SHAPE[2] + 3]
    with pytest.raises(DataError, match=r"MTR_002\.h5 echo1 rows 0"):
        SKMTEADataset(split="train", root=skmtea.root, stats="compute")[SKMTEA_SHAPE[2]]


def test_truncated_h5_file(skmtea: SkmteaFixture) -> None:
    path = skmtea.root / "image_files" / "MTR_002.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"MTR_002\.h5 cannot be opened"):
        SKMTEADataset(split="train", root=skmtea.root)


def test_empty_split(skmtea: SkmteaFixture) -> None:
    ann = skmtea.root / "annotations" / "v1.0.0" / "val.json"
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match=r"split 'val' .* is empty"):
        SKMTEADataset(split="val", root=skmtea.root)


@pytest.mark.parametrize(
    ("added_to", "built", "also_in"),
    [("test", "train", "test"), ("test", "test", "train"), ("val", "train", "val"), ("val", "val", "train")],
)
def test_a_scan_in_two_annotation_splits_is_refused(
    skmtea: SkmteaFixture, added_to: str, built: str, also_in: str
) -> None:
    # A scan in train and test leaks into the test scores: neither split of such a folder builds.
    folder = skmtea.root / "annotations" / "v1.0.0"
    train = json.loads((folder / "train.json").read_text())["images"]
    data = json.loads((folder / f"{added_to}.json").read_text())
    data["images"].append(train[1])  # MTR_002
    (folder / f"{added_to}.json").write_text(json.dumps(data))
    with pytest.raises(
        DataError,
        match=rf"^skmtea: scan 'MTR_002' \(MTR_002\.h5\) is listed in both annotation files "
        rf".*v1\.0\.0/{built}\.json and .*v1\.0\.0/{also_in}\.json; "
        r"expected each scan in exactly one of train, val and test",
    ):
        SKMTEADataset(split=built, root=skmtea.root)
    # The split that shares nothing still builds.
    untouched = ({"val", "test"} - {added_to}).pop()
    assert (
        sorted(set(SKMTEADataset(split=untouched, root=skmtea.root).volume_ids)) == skmtea.splits[untouched]
    )


@pytest.mark.parametrize(
    ("copy", "key"),
    [({}, "file_name"), ({"file_name": "MTR_002_again.h5"}, "scan_id"), ({"scan_id": "knee_2"}, "file_name")],
)
def test_a_scan_listed_twice_in_one_split_is_refused(
    skmtea: SkmteaFixture, copy: dict[str, str], key: str
) -> None:
    # Listed twice, a scan would count as two training volumes, or two test cases of the paired tests.
    path = skmtea.root / "annotations" / "v1.0.0" / "train.json"
    data = json.loads(path.read_text())
    data["images"].append({**data["images"][1], **copy})
    path.write_text(json.dumps(data))
    last = len(data["images"]) - 1
    told = rf"train\.json: images\[1\] and images\[{last}\] have the same {key}"
    with pytest.raises(DataError, match=told):
        SKMTEADataset(split="train", root=skmtea.root)


def test_a_scan_renamed_in_another_split_is_still_the_same_scan(skmtea: SkmteaFixture) -> None:
    # Same scan_id under another file name (or the same file under another id) is one volume.
    folder = skmtea.root / "annotations" / "v1.0.0"
    data = json.loads((folder / "val.json").read_text())
    data["images"].append({"file_name": "MTR_003_copy.h5", "scan_id": "MTR_003"})
    data["images"].append({"file_name": "MTR_004.h5", "scan_id": "knee_4"})
    (folder / "val.json").write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=r"scan 'MTR_003' \(MTR_003\.h5\) \(and 1 more: 'MTR_004' \(MTR_004\.h5\)\) is listed"
    ):
        SKMTEADataset(split="train", root=skmtea.root)


def test_a_folder_with_only_a_train_annotation_file_builds(tmp_path: Path) -> None:
    fx = make_skmtea(tmp_path / "s", splits={"train": 2}, unlabelled=0)
    assert sorted(set(SKMTEADataset(split="train", root=fx.root).volume_ids)) == ["MTR_001", "MTR_002"]


def test_the_unlabelled_split_of_a_train_only_folder_is_the_scans_train_does_not_list(tmp_path: Path) -> None:
    # It asked for val.json and test.json, which the train split of the same folder does without.
    fx = make_skmtea(tmp_path / "s", splits={"train": 2}, unlabelled=2)
    unlabelled = SKMTEADataset(split="unlabelled", labelled=False, root=fx.root)
    assert sorted(set(unlabelled.volume_ids)) == fx.splits["unlabelled"] == ["MTR_003", "MTR_004"]
    # With val.json too, its scans are annotated as well: not unlabelled.
    fx = make_skmtea(tmp_path / "t", splits={"train": 1, "val": 1}, unlabelled=1)
    unlabelled = SKMTEADataset(split="unlabelled", labelled=False, root=fx.root)
    assert sorted(set(unlabelled.volume_ids)) == ["MTR_003"]


def test_the_unlabelled_split_needs_one_annotation_file_at_least(skmtea: SkmteaFixture) -> None:
    # A misspelt annotation_version would otherwise take every scan, the test scans too, as unannotated.
    with pytest.raises(
        DataError, match=r"^skmtea: no annotation file in .*annotations.v9; expected at least one of "
    ):
        SKMTEADataset(split="unlabelled", labelled=False, root=skmtea.root, annotation_version="v9")


@pytest.mark.parametrize(
    ("spacing", "found"),
    [
        (None, "is not a list of numbers"),
        ([0.3125, 0.3125, 0], r"holds 0 \(value 3\)"),
        ([0.3, 0.3], "has 2 value"),
    ],
)
def test_a_bad_voxel_spacing_is_refused_naming_the_scan(
    skmtea: SkmteaFixture, spacing: object, found: str
) -> None:
    # A null spacing crashed in float(); a zero one made every volume of the scan 0 mm^3.
    ann = skmtea.root / "annotations" / "v1.0.0" / "val.json"
    data = json.loads(ann.read_text())
    data["images"][0]["voxel_spacing"] = spacing
    ann.write_text(json.dumps(data))
    scan = data["images"][0]["scan_id"]
    with pytest.raises(DataError, match=rf"voxel_spacing of scan '{scan}' .*{found}"):
        SKMTEADataset(split="val", root=skmtea.root)


def test_missing_annotation_file(skmtea: SkmteaFixture) -> None:
    with pytest.raises(DataError, match=r"annotation file .*v9/train\.json does not exist"):
        SKMTEADataset(split="train", root=skmtea.root, annotation_version="v9")


def test_scan_missing_from_metadata(skmtea: SkmteaFixture) -> None:
    csv_path = skmtea.root / "all_metadata.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(line for line in lines if not line.startswith("MTR_005")) + "\n")
    with pytest.raises(DataError, match=r"all_metadata\.csv has no row with MTR_ID 'MTR_005'"):
        SKMTEADataset(split="val", root=skmtea.root)
    assert "scan_params" not in SKMTEADataset(split="val", root=skmtea.root, metadata_csv=None)[0]


def _set_scan_parameter(csv_path: Path, scan: str, column: str, value: str) -> None:
    """Write ``value`` into ``column`` of ``scan``'s row of an ``all_metadata.csv``."""
    lines = csv_path.read_text().splitlines()
    index = lines[0].split(",").index(column)
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        if row[0] == scan:
            row[index] = value
    csv_path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_non_finite_scan_parameter_is_refused_naming_the_file_and_scan(
    skmtea: SkmteaFixture, bad: str
) -> None:
    _set_scan_parameter(skmtea.root / "all_metadata.csv", "MTR_005", "RepetitionTime", bad)
    with pytest.raises(
        DataError, match=rf"all_metadata\.csv, MTR_ID 'MTR_005': \{{'RepetitionTime': {bad}\}} are not finite"
    ):
        SKMTEADataset(split="val", root=skmtea.root)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("RepetitionTime", "0.018176", r"tr_ms=0\.018176 is implausibly small .*given in seconds"),
        ("EchoTime1", "0.005712", r"te_ms=0\.005712 is implausibly small .*given in seconds"),
        ("FlipAngle", "0.349", r"flip_angle_deg=0\.349 is implausibly small .*given in radians"),
    ],
)
def test_scan_parameters_in_another_unit_are_refused_when_the_dataset_is_built(
    skmtea: SkmteaFixture, column: str, value: str, message: str
) -> None:
    # Built without a word, they stopped a study at its clinical numbers, after every run had
    # trained, in an error naming neither the file nor the scan.
    _set_scan_parameter(skmtea.root / "all_metadata.csv", "MTR_005", column, value)
    with pytest.raises(
        DataError,
        match=r"all_metadata\.csv, MTR_ID 'MTR_005': its scan parameters do not fit the qDESS T2 model: ",
    ) as refused:
        SKMTEADataset(split="val", root=skmtea.root)
    assert re.search(message, str(refused.value))


def test_the_pre_flight_check_keeps_the_statistics_it_read(skmtea: SkmteaFixture) -> None:
    from inpaintssl.data.preflight import preflight

    checked = SKMTEADataset(split="train", root=skmtea.root, stats="compute")
    fresh = SKMTEADataset(split="train", root=skmtea.root, stats="compute")
    preflight({"train": checked}, progress=False)
    volumes = range(len(checked._scans))
    assert set(checked._stats) == set(volumes)
    for v in volumes:  # bit-identical to the first epoch's own pass
        kept, own = checked._stats[v], fresh.volume_stats(v)
        assert np.array_equal(kept.mean, own.mean) and np.array_equal(kept.std, own.std)
    calls: list[int] = []
    checked._compute_stats = lambda scan: calls.append(1)  # type: ignore[method-assign,assignment,misc,return-value]
    checked[0]
    assert calls == []


@pytest.mark.parametrize("stats", ["compute", "auto"])
def test_a_blank_scan_is_refused_by_the_pre_flight_check(skmtea: SkmteaFixture, stats: str) -> None:
    # Both echoes zero throughout: every slice would be trained on as an image of one value, as
    # the other formats' pre-flight check refuses. MTR_002 has stored statistics (stats="auto"
    # skips computing them), MTR_001 has none.
    from inpaintssl.data.preflight import preflight

    for name in ("MTR_001.h5", "MTR_002.h5"):
        with h5py.File(skmtea.root / "image_files" / name, "a") as f:
            f["echo1"][...] = 0.0
            f["echo2"][...] = 0.0
    ds = SKMTEADataset(split="train", root=skmtea.root, stats=stats)
    with pytest.raises(
        DataError, match=r"skmtea scan 'MTR_00[12]': .*MTR_00[12]\.h5 holds the value 0 in every voxel"
    ):
        preflight({"train": ds}, progress=False)
