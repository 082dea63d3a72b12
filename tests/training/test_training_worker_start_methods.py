"""Runs with DataLoader workers train the same bits whichever way the workers are started.

Python 3.14 starts multiprocessing children by ``forkserver`` on Linux where earlier versions
forked them, and macOS and Windows start them by ``spawn``: the workers then get the dataset, the
sampler and the worker seeding pickled instead of inherited, and a run must neither fail nor
draw other data. The process's default start method serves a run unless
``data.worker_start_method`` names one: the run's workers then start that way (seen in
``/proc``), the manifest names it, and a platform without it refuses the run before it writes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import inpaintssl as issl
from checkpoint_helpers import assert_same_checkpoints, pretrain_stopped_after_the_first_epoch
from inpaintssl.training.convergence import ConvergenceWarning
from inpaintssl.training.epoch_loader import base_worker_seed
from study_helpers import tiny_pretrain_config, tiny_segmentation_trainer

# Each run is a fresh interpreter: the start method is process-wide and set once, before any
# worker starts.
_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    if __name__ == "__main__":
        method, out = sys.argv[1], sys.argv[2]
        multiprocessing.set_start_method(method, force=True)
        import inpaintssl as issl
        data = {"dataset": "synthetic", "num_workers": 2,
                "params": {"num_images": 16, "num_val": 4, "num_test": 4, "size": [32, 32]}}
        issl.finetune({"data": data, "model": {"params": {"depth": 2, "base_width": 8}},
                       "optim": {"max_epochs": 2, "steps_per_epoch": 2},
                       "run": {"output_dir": out, "quiet": True}})
        assert multiprocessing.get_start_method() == method
    """
)


def _train(method: str, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, method, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_workers_started_by_the_process_default_forkserver_train_the_same_bits_as_forked_ones(
    tmp_path: Path,
) -> None:
    # forkserver pickles what spawn pickles (spawn also imports the caller's __main__ again), so one
    # short run stands for both. Two epochs: the run's workers serve both, re-seeding at each pass.
    for method in ("fork", "forkserver"):
        _train(method, tmp_path / method)
    assert_same_checkpoints(
        tmp_path / "forkserver", tmp_path / "fork", why="differs from the forked workers' run"
    )


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: its parent's id and its command line, from ``/proc`` (Linux)."""
    processes: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        # The second field, the command name in parentheses, may itself hold spaces.
        processes[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), command)
    return processes


def _worker_starts(parent: int, *, alive_before: set[int]) -> list[str]:
    """The start method of each worker ``parent`` started after ``alive_before`` was taken.

    A forked worker is ``parent``'s child running ``parent``'s command line; a spawned one is its
    child running ``multiprocessing.spawn``; a worker from the fork server is the child of
    ``parent``'s fork-server process (which may be older). Python's resource tracker, which spawn
    and forkserver start, is no worker; nor is a process an earlier test left running.
    """
    processes = _processes()
    own_command = processes[parent][1]
    starts: list[str] = []
    for pid, (ppid, command) in processes.items():
        if ppid != parent or "resource_tracker" in command:
            continue
        if "multiprocessing.forkserver" in command:
            starts += [
                "forkserver"
                for child, (server, _) in processes.items()
                if server == pid and child not in alive_before
            ]
        elif pid in alive_before:
            continue
        elif "multiprocessing.spawn" in command:
            starts.append("spawn")
        elif command == own_command:
            starts.append("fork")
    return sorted(starts)


@pytest.fixture(scope="module")
def run_without_workers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run reading its data in the training process."""
    out = tmp_path_factory.mktemp("no-workers")
    with pytest.warns(ConvergenceWarning):
        tiny_segmentation_trainer(out, max_epochs=2).fit()
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the worker processes from /proc")
@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_the_run_starts_its_workers_the_way_it_is_told_and_trains_the_same_bits(
    method: str, tmp_path: Path, run_without_workers: Path
) -> None:
    seen: list[list[str]] = []
    alive_before = set(_processes())

    def look(model: torch.nn.Module, *, epoch: int, tensorboard: object) -> None:
        seen.append(_worker_starts(os.getpid(), alive_before=alive_before))

    trainer = tiny_segmentation_trainer(
        tmp_path,
        max_epochs=2,
        trainer_options={"num_workers": 1, "worker_start_method": method, "epoch_hooks": [look]},
    )
    with pytest.warns(ConvergenceWarning):
        trainer.fit()
    # After each epoch: its training worker and its validation worker, both started that way.
    assert seen == [[method, method]] * 2
    assert _worker_starts(os.getpid(), alive_before=alive_before) == []
    assert_same_checkpoints(
        tmp_path, run_without_workers, why=f"differs from the run without workers ({method})"
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("workers", "recorded"),
    [
        ({"num_workers": 1, "worker_start_method": "spawn"}, "spawn"),
        ({"num_workers": 1}, "the process's default"),
        ({"num_workers": 0}, None),
    ],
)
def test_the_manifest_names_how_the_workers_started(
    workers: dict[str, Any], recorded: str | None, tmp_path: Path
) -> None:
    issl.pretrain(tiny_pretrain_config(tmp_path, data=workers, optim={"max_epochs": 1}))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    if recorded == "the process's default":
        # Read after the run: reading it fixes it for this process, as the run's workers did
        # (fork on Linux before Python 3.14).
        recorded = multiprocessing.get_start_method()
    assert manifest["worker_start_method"] == recorded
    assert len(manifest["worker_seeds"]) == workers["num_workers"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_manifest_lists_the_seeds_of_the_workers_that_started(tmp_path: Path) -> None:
    # 8 training slices (synthetic 2D images), two batches of 4 a pass: two of the 3 workers
    # asked for get a batch, and only they start.
    config = tiny_pretrain_config(tmp_path, data={"num_workers": 3}, optim={"max_epochs": 1, "batch_size": 4})
    issl.pretrain(config)
    assert len(json.loads((tmp_path / "splits.json").read_text())["label_subsets"]["1"]) == 8
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["worker_seeds"] == [base_worker_seed(0), base_worker_seed(0) + 1]


def test_a_start_method_the_platform_lacks_fails_before_the_run_writes_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows offers spawn alone.
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    config = tiny_pretrain_config(tmp_path / "run", data={"num_workers": 2, "worker_start_method": "fork"})
    with pytest.raises(issl.config.ConfigError) as caught:
        issl.pretrain(config)
    assert str(caught.value) == (
        f"data.worker_start_method='fork' is not a start method this platform ({sys.platform}) offers: "
        "expected one of ['spawn'] or null (the process's default)"
    )
    assert list((tmp_path / "run").rglob("*")) == []
    # The Trainer itself refuses it too, for callers that build one without a config.
    with pytest.raises(ValueError, match=r"^worker_start_method='fork' is not a start method this platform"):
        tiny_segmentation_trainer(
            tmp_path / "trainer",
            max_epochs=1,
            trainer_options={"num_workers": 1, "worker_start_method": "fork"},
        )
    # Without workers nothing starts, so nothing is refused.
    with pytest.warns(issl.config.ConfigWarning, match=r"data\.worker_start_method='fork' has no effect"):
        issl.pretrain(tiny_pretrain_config(tmp_path / "no-workers", data={"worker_start_method": "fork"}))


def test_an_unknown_start_method_is_named_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(issl.config.ConfigError, match=r"data\.worker_start_method.*'threads'.*'forkserver'"):
        issl.pretrain(
            tiny_pretrain_config(tmp_path, data={"num_workers": 1, "worker_start_method": "threads"})
        )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_run_resumed_with_workers_started_another_way_records_it_and_trains_the_same_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tiny_pretrain_config(tmp_path / "reference", optim={"max_epochs": 2})
    issl.pretrain(reference)
    run = tmp_path / "run"
    config = tiny_pretrain_config(run, optim={"max_epochs": 2})
    pretrain_stopped_after_the_first_epoch(config, monkeypatch)

    workers = {"num_workers": 1, "worker_start_method": "spawn"}
    issl.pretrain({**config, "data": {**config["data"], **workers}, "run": {**config["run"], "resume": True}})

    (entry,) = json.loads((run / "manifest.json").read_text())["resumes"]
    assert entry["changed"] == {
        "data.num_workers": {"recorded": 0, "now": 1},
        "data.worker_start_method": {"recorded": None, "now": "spawn"},
    }
    assert entry["environment"] == {"worker_start_method": {"recorded": None, "now": "spawn"}}
    assert_same_checkpoints(run, tmp_path / "reference", why="differs from the run never interrupted")
