"""What a walk through docs/scaling.rst on one machine found: the driver's signals and order."""

from __future__ import annotations

import re
import signal
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from inpaintssl.cli import main
from inpaintssl.signals import Terminated, terminate_as_exit
from inpaintssl.studies import expand_study, load_spec, ray_backend
from inpaintssl.studies.merge import merge_results
from inpaintssl.studies.resultfiles import ResultFileError, read_result_file, result_path, write_result_file
from inpaintssl.studies.spec import ExecutorSpec
from inpaintssl.studies.status import study_status
from inpaintssl.studies.store import Measurement
from study_helpers import tiny_spec


def _exit_15(signum: int, frame: Any) -> None:  # pragma: no cover - never delivered here
    raise SystemExit(signum)


class _FakeRay(types.SimpleNamespace):
    """What ``ray.init`` does to a driver's signals (ray 2.x, ``_private/worker.py``): it installs
    its own SIGTERM handler, which exits with status 15 after a C++ stack dump."""

    def __init__(self) -> None:
        super().__init__(initialized=False, shut_down=False)

    def is_initialized(self) -> bool:
        return bool(self.initialized)

    def init(self, **kwargs: Any) -> None:
        signal.signal(signal.SIGTERM, _exit_15)
        self.initialized = True

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True, "Resources": {"CPU": 1.0}}]  # one node that runs the default task

    def remote(self, function: Any) -> Any:
        return types.SimpleNamespace(options=lambda **options: function)

    def shutdown(self) -> None:
        self.shut_down = True


def test_a_ray_driver_keeps_the_command_lines_sigterm_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # scancel / kill of the driver must raise Terminated (runs handed back, "terminated (SIGTERM)",
    # status 143), as with --executor slurm, not end in Ray's handler with status 15.
    fake = _FakeRay()
    monkeypatch.setattr(ray_backend, "import_optional", lambda *args, **kwargs: fake)
    with terminate_as_exit():
        ours = signal.getsignal(signal.SIGTERM)
        backend = ray_backend.RayBackend(ExecutorSpec(), results=tmp_path, quiet=True)
        assert fake.initialized
        assert signal.getsignal(signal.SIGTERM) is ours
        with pytest.raises(Terminated) as stopped:
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            handler(signal.SIGTERM, None)
        assert stopped.value.code == 143
        backend.close()
    assert fake.shut_down


def test_status_names_the_unmerged_result_files_that_run_and_report_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A truncated file (a full disk, a copy cut short) of a run not recorded yet is counted as
    # waiting for `experiment run` or `report` to merge it, but both refuse it: status says which.
    given = tiny_spec(tmp_path / "study")
    spec = load_spec(given)
    first, second = [job for job in expand_study(spec)][:2]
    folder = spec.results_dir()
    write_result_file(folder, first.id, kind=first.kind, result={}, rows=[])
    damaged = result_path(folder, second.id)
    damaged.write_text('{"format": 1, "run_id": "' + second.id, encoding="utf-8")
    status = study_status(spec)
    assert status.unmerged == 2
    assert status.damaged == (damaged,)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(given), encoding="utf-8")
    assert main(["experiment", "status", str(spec_file)]) == 0
    printed = capsys.readouterr().out
    assert f"  damaged, refused by run and report: {damaged} (delete it; its run trains again)" in printed
    with pytest.raises(ResultFileError, match=str(damaged)):
        merge_results(spec)  # what `experiment run` and `report` do first


def test_a_result_file_whose_kind_contradicts_its_run_is_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: a "pretrain" result in a fine-tuning run's file merged silently, as if it were that run's.
    given = tiny_spec(tmp_path / "study")
    spec = load_spec(given)
    plan = expand_study(spec)
    pre, fine = plan.pretrain_jobs()[0], plan.finetune_jobs()[0]
    folder = spec.results_dir()
    write_result_file(folder, pre.id, kind="pretrain", result={}, rows=[])
    wrong = write_result_file(folder, fine.id, kind="pretrain", result={}, rows=[])
    with pytest.raises(ResultFileError) as refused:
        read_result_file(wrong)
    assert f"result file {wrong} holds a 'pretrain' result, expected 'finetune'" in str(refused.value)
    assert study_status(spec).damaged == (wrong,)  # status flags it ...
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(given), encoding="utf-8")
    assert main(["experiment", "report", str(spec_file)]) == 2  # ... and report refuses it, naming it
    assert str(wrong) in capsys.readouterr().err
    # A kind that is no kind at all is damage too, whatever the run.
    write_result_file(folder, pre.id, kind="segmentation", result={}, rows=[])
    with pytest.raises(ResultFileError, match="holds a 'segmentation' result, expected 'pretrain'"):
        read_result_file(result_path(folder, pre.id))


def test_a_result_file_that_repeats_a_measurement_is_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: the merge of `experiment run` and `report` failed with a bare sqlite3.IntegrityError
    # (UNIQUE constraint failed: measurements...) naming no file, and status did not call it damaged.
    given = tiny_spec(tmp_path / "study")
    spec = load_spec(given)
    fine = expand_study(spec).finetune_jobs()[0]
    folder = spec.results_dir()
    dice = Measurement("v1", 3, "image", "fg", "dice", 0.5)
    other = Measurement("v1", 3, "image", "fg", "hd95", 2.0)  # the same key but for its metric: kept
    repeated = write_result_file(folder, fine.id, kind="finetune", result={}, rows=[dice, other, dice])
    with pytest.raises(ResultFileError) as refused:
        read_result_file(repeated)
    said = str(refused.value)
    assert f"result file {repeated} repeats a measurement at rows[0] and rows[2]" in said
    assert "volume_id='v1', slice_index=3, level='image', class_name='fg', metric='dice'" in said
    status = study_status(spec)
    assert (status.unmerged, status.damaged) == (1, (repeated,))
    with pytest.raises(ResultFileError, match=re.escape(str(repeated))):
        merge_results(spec)  # what `experiment run` and `report` do first
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(given), encoding="utf-8")
    assert main(["experiment", "report", str(spec_file)]) == 2
    assert str(repeated) in capsys.readouterr().err
    # Rows that differ in any key field are distinct measurements: the file reads.
    rows = [dice, *(Measurement(**{**vars(dice), name: value}) for name, value in _OTHER_KEY.items())]
    assert (
        read_result_file(write_result_file(folder, fine.id, kind="finetune", result={}, rows=rows)).rows
        == rows
    )


# One change of each key field of a measurement (the measurements table's UNIQUE key, less the run).
_OTHER_KEY: dict[str, Any] = {
    "volume_id": "v2",
    "slice_index": 4,
    "level": "volume",
    "class_name": "bg",
    "metric": "hd95",
}
