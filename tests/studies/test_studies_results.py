"""The long results table: filters and group-bys, and loading it from study databases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from inpaintssl.analysis.paper_tables import table3_ranking
from inpaintssl.analysis.table import Table as ResultsTable
from inpaintssl.config import TransferConfig, update_fields
from inpaintssl.studies.grid import expand_study, run_id
from inpaintssl.studies.queue import NewRun, RunRecord, WorkerId
from inpaintssl.studies.results import load_results, load_runs
from inpaintssl.studies.spec import StudySpec
from inpaintssl.studies.store import Measurement, StudyStore


def test_filters_groups_and_columns() -> None:
    table = ResultsTable(
        [
            {"arm": "ssl", "f": 0.5, "value": 1.0},
            {"arm": "ssl", "f": 0.1, "value": 3.0},
            {"arm": "supervised", "f": 0.5, "value": None},
            {"arm": "ssl", "value": 5.0},
        ]
    )
    assert table.unique("f") == [0.1, 0.5, None]
    assert list(table.groups("arm")) == [("ssl",), ("supervised",)]
    assert [len(t) for t in table.groups("arm", "f").values()] == [1, 1, 1, 1]
    column = table.select(arm="supervised").column("value")
    assert math.isnan(column[0])
    assert table.where(lambda r: (r.get("f") or 0) > 0.2).column("value").tolist()[0] == 1.0
    assert table.columns == ("arm", "f", "value")


def test_to_csv_writes_the_union_of_columns(tmp_path: Path) -> None:
    path = ResultsTable([{"a": 1}, {"b": 2}]).to_csv(tmp_path / "r.csv")
    with open(path, newline="") as handle:
        assert list(csv.reader(handle)) == [["a", "b"], ["1", ""], ["", "2"]]


def _planned_pair(spec: StudySpec) -> tuple[str, str]:
    """Ids of a pretraining run the spec plans and of its fine-tuning run at label fraction 0.5."""
    plan = list(expand_study(spec))
    pre = next(job for job in plan if job.kind == "pretrain")
    return pre.id, next(
        job.id for job in plan if job.depends_on == pre.id and job.labels["label_fraction"] == 0.5
    )


def _study(tmp_path: Path) -> StudySpec:
    spec = StudySpec(study="clinical", output=tmp_path)
    pt, ft = _planned_pair(spec)
    with StudyStore(spec.database_path()) as store:
        store.add_runs(
            [
                NewRun(pt, "pretrain", None, {}, {"arm": "pretrain", "strategy": "s"}),
                # Labels as recorded before runs named their baseline, and one the plan does not set.
                NewRun(
                    ft,
                    "finetune",
                    pt,
                    {},
                    {"arm": "ssl", "strategy": "ssl", "label_fraction": 0.5, "note": "recorded"},
                ),
                # An earlier version of the spec planned this run too: recorded, but not the spec's.
                NewRun(
                    "ft-old", "finetune", pt, {}, {"arm": "ssl", "strategy": "ssl", "label_fraction": 0.5}
                ),
            ]
        )
        me = WorkerId.current()
        for run_id, result, rows in (
            (
                pt,
                {"train_images": 30, "pretrain_data_pct": 300.0},
                [Measurement("v0", 0, "image", "", "l2_norm", 7.0)],
            ),
            (
                ft,
                {"train_images": 4, "labelled_volumes": 4},
                [
                    Measurement("v0", 0, "image", "gm", "dice", 0.8),
                    Measurement("v0", -1, "volume", "gm", "volume_mm3_pct_error", 12.0),
                ],
            ),
            ("ft-old", {"train_images": 4}, [Measurement("v0", 0, "image", "gm", "dice", 0.2)]),
        ):
            claimed = store.claim(me)
            assert isinstance(claimed, RunRecord) and claimed.id == run_id
            assert store.record(run_id, me, result=result, rows=rows)
    return spec


def test_load_results_joins_labels_and_the_pretraining_run(tmp_path: Path) -> None:
    spec = _study(tmp_path)
    pt, ft = _planned_pair(spec)
    assert set(load_runs(spec)) == {pt, ft}
    assert set(load_runs(spec, planned_only=False)) == {pt, ft, "ft-old"}
    results = load_results(spec)
    # The earlier version's run (Dice 0.2, same labels) is not averaged in.
    (dice,) = results.select(metric="dice").rows
    assert dice["arm"] == "ssl" and dice["label_fraction"] == 0.5 and dice["value"] == 0.8
    assert dice["pretrain_images"] == 30 and dice["pretrain_data_pct"] == 300.0
    assert dice["labelled_volumes"] == 4 and dice["kind"] == "finetune"
    # The plan's labels reach the rows of a run recorded without them; the recorded ones stay.
    planned = expand_study(spec).get(ft).labels
    assert dice["baseline_id"] == planned["baseline_id"] is not None
    assert dice["budget_epochs"] == planned["budget_epochs"] and dice["note"] == "recorded"
    # Per-volume clinical rows do not make this a per-volume-Dice study: the Dice slices stay.
    assert len(results) == 3


def test_rows_follow_the_plan_whatever_order_the_runs_were_recorded_in(tmp_path: Path) -> None:
    # Local workers, Slurm tasks and Ray tasks finish (and result files merge) in any order: the
    # results table, and so results.csv, must not depend on it.
    tables = []
    for order in ("forward", "backward"):
        spec = StudySpec(study="clinical", output=tmp_path / order)
        plan = list(expand_study(spec))
        chosen = [job for job in plan if job.kind == "pretrain"][:1]
        chosen += [job for job in plan if job.depends_on == chosen[0].id][:3]
        recorded = chosen if order == "forward" else chosen[::-1]
        with StudyStore(spec.database_path()) as store:
            store.add_runs([NewRun(job.id, job.kind, job.depends_on, {}, job.labels) for job in plan])
            for number, job in enumerate(recorded):
                rows = [Measurement(f"v{i}", i, "image", "gm", "dice", number + i / 10) for i in range(2)]
                assert store.merge(job.id, result={"train_images": 4}, rows=rows) == "merged"
        table = load_results(spec)
        tables.append([(row["run_id"], row["volume_id"]) for row in table.rows])
    order_in_plan = {job.id: index for index, job in enumerate(plan)}
    forward, backward = tables
    assert forward == backward and len(forward) == 8
    assert [order_in_plan[run] for run, _ in forward] == sorted(order_in_plan[run] for run, _ in forward)
    assert [volume for _, volume in forward[:2]] == ["v0", "v1"]  # a run's own rows keep their order


def test_a_database_of_another_study_kind_is_refused_not_merged(tmp_path: Path) -> None:
    from inpaintssl.config import ConfigError
    from inpaintssl.studies.runner import run_study

    design = StudySpec(study="pretext_design", output=tmp_path / "study")
    with StudyStore(design.database_path((0, 1))) as store:
        store.set_meta("spec", design.model_dump_json())
        store.add_runs([NewRun("pt-1", "pretrain", None, {}, {})])
    clinical = StudySpec(study="clinical", output=tmp_path / "study")
    message = (
        r"study database .*study\.sqlite holds a 'pretext_design' study, and this spec is a 'clinical' study"
    )
    with pytest.raises(ConfigError, match=message):
        load_runs(clinical)
    with pytest.raises(ConfigError, match=message):
        run_study(clinical, quiet=True)
    assert set(load_runs(design, planned_only=False)) == {"pt-1"}  # its own study still reads
    assert not (tmp_path / "study" / "spec.json").exists()  # the refused spec wrote nothing


def test_a_report_on_a_database_recorded_before_runs_named_their_baseline_pairs_them(tmp_path: Path) -> None:
    # A transfer-design study over two learning rates, begun before baselines followed the grid:
    # its database holds the SSL runs and the one old baseline (the recipe's rate, lr=0.01, whose
    # run and id stayed the same) with the labels of that time, no baseline_id and the name
    # "supervised"; the lr=0.001 baseline was trained since, with the new labels.
    spec = StudySpec(
        study="transfer_design",
        output=tmp_path,
        label_fractions=[0.5],
        grid={"finetune.optim.lr": [1e-2, 1e-3]},
    )
    plan = expand_study(spec)
    old_baseline = run_id(
        "finetune",
        update_fields(spec.finetune, {"transfer": TransferConfig(), "data.label_fraction": 0.5}),
    )
    by_name = {job.labels.get("strategy"): job for job in plan}
    assert by_name["supervised lr=0.01"].id == old_baseline
    # Dice of the 6 test images, worked by hand: FEF lr=0.01 beats its baseline on every image
    # (p = 1/64); FEF lr=0.001 beats its own on five and loses the smallest difference (p = 2/64).
    # Against the other rate's baseline both would be far off: 0.2 apart.
    dice = {
        "supervised lr=0.01": [0.5 + 0.01 * i for i in range(6)],
        "supervised lr=0.001": [0.7 + 0.01 * i for i in range(6)],
    }
    dice["FEF lr=0.01"] = [
        b + d for b, d in zip(dice["supervised lr=0.01"], (0.01, 0.02, 0.03, 0.04, 0.05, 0.06))
    ]
    dice["FEF lr=0.001"] = [
        b + d for b, d in zip(dice["supervised lr=0.001"], (-0.01, 0.02, 0.03, 0.04, 0.05, 0.06))
    ]
    with StudyStore(spec.database_path()) as store:
        runs = []
        for job in plan:
            labels = dict(job.labels)
            if job.id == old_baseline or labels.get("arm") == "ssl":
                labels.pop("baseline_id", None)
                labels.pop("budget_epochs", None)
                if labels["arm"] == "supervised":
                    labels["strategy"] = "supervised"
            runs.append(NewRun(job.id, job.kind, job.depends_on, {}, labels))
        store.add_runs(runs)
        me = WorkerId.current()
        while isinstance(claimed := store.claim(me), RunRecord):
            name = plan.get(claimed.id).labels["strategy"]
            rows = [
                Measurement(f"img{i}", 0, "image", "", "dice_mean", v)
                for i, v in enumerate(dice.get(name, []))
            ]
            assert store.record(claimed.id, me, result={}, rows=rows)
    results = load_results(spec)
    assert {r["strategy"] for r in results.select(arm="supervised")} == {
        "supervised lr=0.01",
        "supervised lr=0.001",
    }
    table = {row["strategy"]: row for row in table3_ranking(results)}
    assert table["FEF lr=0.01"]["baseline"] == "supervised lr=0.01"
    assert table["FEF lr=0.001"]["baseline"] == "supervised lr=0.001"
    assert table["FEF lr=0.01"]["p_value"] == pytest.approx(1 / 64)
    assert table["FEF lr=0.001"]["p_value"] == pytest.approx(2 / 64)
    assert table["FEF lr=0.01"]["mean_dice_difference"] == pytest.approx(0.035)
    assert table["FEF lr=0.001"]["mean_dice_difference"] == pytest.approx(0.19 / 6)


def test_a_ct_study_with_volume_dice_keeps_its_per_slice_clinical_rows(tmp_path: Path) -> None:
    # CT scans of several slices: Dice is reported per volume, so the per-slice Dice rows of the
    # fine-tuning runs are left out; area and mean HU are measured per slice (level "image") and
    # exist at no other level, so every one of them must stay.
    spec = StudySpec(study="clinical", output=tmp_path)
    pt, ft = _planned_pair(spec)
    rows = [Measurement("ct0", -1, "volume", "", "dice_mean", 0.8)]
    for s in range(3):
        rows.append(Measurement("ct0", s, "image", "", "dice_mean", 0.7))
        for metric, (pred, ref) in {"area_mm2": (110.0, 100.0), "mean_hu": (45.0, 50.0)}.items():
            rows.append(Measurement("ct0", s, "image", "muscle", f"{metric}_pred", pred))
            rows.append(Measurement("ct0", s, "image", "muscle", f"{metric}_ref", ref))
            rows.append(Measurement("ct0", s, "image", "muscle", f"{metric}_pct_error", 10.0))
    with StudyStore(spec.database_path()) as store:
        store.add_runs([NewRun(pt, "pretrain", None, {}, {}), NewRun(ft, "finetune", pt, {}, {})])
        assert (
            store.merge(pt, result={}, rows=[Measurement("v0", 0, "image", "", "l2_norm", 7.0)]) == "merged"
        )
        assert store.merge(ft, result={}, rows=rows) == "merged"
    results = load_results(spec)
    # 3 slices x 2 metrics x (pred, ref, pct_error) = 18 clinical rows, the volume's Dice and the
    # pretraining run's L2 norm; the 3 per-slice Dice rows are left out.
    assert len(results) == 18 + 1 + 1
    assert results.select(metric="dice_mean").cells("level") == ["volume"]
    errors = results.select(metric="area_mm2_pct_error", level="image")
    assert sorted(errors.cells("slice_index")) == [0, 1, 2]
    assert results.select(metric="mean_hu_pred").column("value").tolist() == [45.0] * 3
    assert len(load_results(spec, finetune_slices=True)) == 18 + 1 + 1 + 3
