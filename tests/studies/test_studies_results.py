"""The long results table: filters and group-bys, and loading it from study databases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from inpaintssl.analysis.table import Table as ResultsTable
from inpaintssl.studies.grid import expand_study
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
    """Ids of a pretraining run the spec plans and of a fine-tuning run that starts from it."""
    plan = list(expand_study(spec))
    pre = next(job for job in plan if job.kind == "pretrain")
    return pre.id, next(job.id for job in plan if job.depends_on == pre.id)


def _study(tmp_path: Path) -> StudySpec:
    spec = StudySpec(study="clinical", output=tmp_path)
    pt, ft = _planned_pair(spec)
    with StudyStore(spec.database_path()) as store:
        store.add_runs(
            [
                NewRun(pt, "pretrain", None, {}, {"arm": "pretrain", "strategy": "s"}),
                NewRun(ft, "finetune", pt, {}, {"arm": "ssl", "strategy": "ssl", "label_fraction": 0.5}),
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
    # Per-volume clinical rows do not make this a per-volume-Dice study: the Dice slices stay.
    assert len(results) == 3


def test_a_database_of_another_study_kind_is_refused_not_merged(tmp_path: Path) -> None:
    import pytest

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
