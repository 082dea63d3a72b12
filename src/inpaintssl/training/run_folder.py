"""The run folder: resolved config, manifest, per-epoch metrics CSV (and TensorBoard when installed).

Where each file lives is :class:`~inpaintssl.layout.RunFolder` (re-exported here); this module
writes the record of a run into it.

Example:
    >>> m = build_manifest(seed=3, data_files=["a.h5"], num_workers=2)
    >>> m["seed"], m["worker_seeds"][1] - m["worker_seeds"][0]
    (3, 1)
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from inpaintssl.atomic import atomic_write_text
from inpaintssl.checkpoint import CheckpointError, checkpoint_exists, resolve_checkpoint
from inpaintssl.config import (
    DATA_READING_FIELDS,
    ConfigError,
    FinetuneConfig,
    OptimConfig,
    PretrainConfig,
    RunConfig,
    config_to_yaml,
    load_config,
    read_config_file,
    recipe_filled,
    update_fields,
)
from inpaintssl.config.yaml_loader import ConfigYamlDumper
from inpaintssl.errors import DataError
from inpaintssl.layout import RunFolder
from inpaintssl.listing import first_and_more
from inpaintssl.registry import origin_change, restore_hint
from inpaintssl.training.epoch_loader import base_worker_seed
from inpaintssl.warning_format import warn_each_time

ConfigT = TypeVar("ConfigT", bound=BaseModel)

__all__ = [
    "RESUMABLE_CHANGES",
    "DataCheck",
    "RunFolder",
    "record_budget",
    "TensorBoardLog",
    "TensorBoardWriteWarning",
    "build_manifest",
    "changed_fields",
    "described_differences",
    "data_files_hash",
    "read_data_check",
    "trained_differently",
    "trains_on",
    "worker_seed",
    "write_data_check",
    "write_config",
    "write_manifest",
    "write_metrics_csv",
]

_PACKAGES = (
    "inpaintssl",
    "torch",
    "numpy",
    "scipy",
    "numba",
    "h5py",
    "pydantic",
    "safetensors",
    "nibabel",
    "pydicom",
)


def worker_seed(seed: int, worker_id: int) -> int:
    """The seed of DataLoader worker ``worker_id`` in a run seeded with ``seed``.

    The one PyTorch gives it (and ``torch.utils.data.get_worker_info().seed`` reports) in the
    Trainer's loaders (:class:`~inpaintssl.training.epoch_loader.EpochLoader`); it draws with
    it in epoch 0 and, in each other epoch, with
    :func:`~inpaintssl.training.epoch_loader.pass_worker_seed` of it and the epoch.
    """
    return base_worker_seed(seed) + worker_id


def data_files_hash(data_files: Sequence[str]) -> str:
    """sha256 over the sorted data-file list with each file's size (cheap, content-sensitive enough)."""
    digest = hashlib.sha256()
    for name in sorted(set(data_files)):
        path = Path(name)
        size = path.stat().st_size if path.is_file() else -1
        digest.update(f"{name}\t{size}\n".encode())
    return digest.hexdigest()


def _version_of(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def build_manifest(
    *, seed: int, data_files: Sequence[str], num_workers: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything needed to say what produced a run."""
    versions = {name: _version_of(name) for name in _PACKAGES}
    return {
        "seed": seed,
        "worker_seeds": [worker_seed(seed, w) for w in range(num_workers)],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(),
        "data_files": len(set(data_files)),
        "data_files_sha256": data_files_hash(data_files),
        **(extra or {}),
    }


def write_config(run_dir: Path, config: BaseModel) -> None:
    """Write the resolved config as ``config.yaml`` (atomically)."""
    atomic_write_text(RunFolder(run_dir).config, config_to_yaml(config))


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` (atomically)."""
    atomic_write_text(RunFolder(run_dir).manifest, json.dumps(manifest, indent=2))


def _data_check_key(data_config: BaseModel) -> dict[str, str]:
    # A check passed under another library version or other data settings (label convention,
    # orientation, ...) says nothing about this run: the record is keyed on both. How the data
    # are read, which a resume may change, is not a data setting here.
    settings = json.dumps(
        data_config.model_dump(mode="json", exclude=set(DATA_READING_FIELDS)), sort_keys=True
    )
    return {
        "inpaintssl": _version_of("inpaintssl") or "",
        "data": hashlib.sha256(settings.encode()).hexdigest(),
    }


def trains_on(name: str) -> bool:
    """Whether a run trains on the set or subset called ``name``.

    ``train`` is the training set of the pre-flight check (``data_check.json``'s ``sets``) and of
    ``splits.json``; ``splits.json`` also records each extra pretraining source as
    ``unlabelled/<i>``, which the pre-flight check sees inside ``train``. ``val``, ``test`` (and
    anything else) are only evaluated on.

    Example:
        >>> [trains_on(name) for name in ("train", "unlabelled/0", "val", "test")]
        [True, True, False, False]
    """
    return name == "train" or name.startswith("unlabelled/")


@dataclass(frozen=True)
class DataCheck:
    """What ``data_check.json`` holds (:func:`read_data_check`).

    Attributes:
        passed: The cases the pre-flight check passed: check name -> its files' fingerprints
            (``PreflightReport.passed``; the ``passed`` argument of the next check).
        sets: The sets each of those cases served: check name -> set names
            (``PreflightReport.sets``). Empty in a record written before it held them.
    """

    passed: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, tuple[str, ...]] = field(default_factory=dict)


def write_data_check(
    run_dir: Path,
    passed: Mapping[str, Any],
    *,
    data_config: BaseModel,
    sets: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Write ``data_check.json``: the cases the pre-flight check passed, by file fingerprint.

    A resumed run reads it back (:func:`read_data_check`) and skips those cases while their files
    are unchanged (:func:`inpaintssl.data.preflight.preflight`). Written atomically; merely a
    saving of time, so it is rewritten on every start.

    Args:
        run_dir: The run folder.
        passed: ``PreflightReport.passed``.
        data_config: The run's data settings: a record written for others is not read back.
        sets: ``PreflightReport.sets``, kept as ``sets`` for the cases in ``passed``: a resume
            tells a rewritten training file from a validation or test file by them
            (:func:`trains_on`). Without it the record holds none, as one written before it did.
    """
    record: dict[str, Any] = {**_data_check_key(data_config), "passed": dict(passed)}
    if sets is not None:
        record["sets"] = {what: sorted(sets[what]) for what in passed if what in sets}
    atomic_write_text(RunFolder(run_dir).data_check, json.dumps(record, indent=1))


def read_data_check(run_dir: Path, *, data_config: BaseModel) -> DataCheck:
    """The cases an earlier start of this run passed, if checked with these data settings.

    Empty when there is no record, it is unreadable, or it was written by another library version
    or for other data settings: then every case is checked again. A case whose sets are missing or
    malformed has no entry in ``sets`` (a record written before it held them has none at all).
    """
    try:
        record = json.loads(RunFolder(run_dir).data_check.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DataCheck()
    if not isinstance(record, dict) or any(
        record.get(k) != v for k, v in _data_check_key(data_config).items()
    ):
        return DataCheck()
    passed = record.get("passed")
    if not isinstance(passed, dict):
        return DataCheck()
    recorded = record.get("sets")
    sets = {
        str(what): tuple(str(name) for name in names)
        for what, names in (recorded.items() if isinstance(recorded, dict) else ())
        if isinstance(names, list) and all(isinstance(name, str) for name in names)
    }
    return DataCheck(passed=passed, sets=sets)


def write_metrics_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """Rewrite the whole per-epoch table atomically (columns: union of row keys, first-seen order)."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue(), fsync=False)


class TensorBoardWriteWarning(UserWarning):
    """Writing TensorBoard's event file failed (a full disk): the run goes on without it."""


class TensorBoardLog:
    """Per-epoch scalars and images in ``<run>/tensorboard`` when the ``tensorboard`` package is installed.

    Without it every call is a no-op: the CSV stays the record of truth. So a failed write (a full
    disk) does not stop the run either: it warns once (:class:`TensorBoardWriteWarning`, naming the
    folder and the error) and the run goes on without TensorBoard. (TensorBoard writes from a
    thread of its own, which may print the failure's traceback first: silencing it would take a
    process-wide :func:`threading.excepthook`, which a library must leave to its caller.)

    Args:
        run_dir: The run folder.
        purge_step: For a resumed run, the first step it logs: TensorBoard's readers drop the
            events an earlier process wrote from this step on (the epochs redone after a kill).
    """

    def __init__(self, run_dir: Path, *, purge_step: int | None = None) -> None:
        self._writer: Any = None
        self._folder = RunFolder(run_dir).tensorboard
        self._metrics = RunFolder(run_dir).metrics_csv
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        try:
            self._writer = SummaryWriter(log_dir=str(self._folder), purge_step=purge_step)
        except OSError as exc:
            self._give_up(exc)

    @property
    def active(self) -> bool:
        """Whether scalars are being written."""
        return self._writer is not None

    def _give_up(self, exc: OSError) -> None:
        """Warn that TensorBoard's folder could not be written, and write no more into it."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # it fails again for the same reason
                writer.close()
        warn_each_time(
            f"could not write TensorBoard's event file in {self._folder}: {exc.strerror or exc}; "
            f"the run goes on without TensorBoard (every epoch is still in {self._metrics})",
            TensorBoardWriteWarning,
        )

    def log(self, row: dict[str, Any], *, step: int) -> None:
        """Write every numeric value of one metrics row."""
        if self._writer is None:
            return
        try:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{row.get('phase', 'train')}/{key}", value, step)
            self._writer.flush()
        except OSError as exc:
            self._give_up(exc)

    def log_image(self, tag: str, image: Any, *, step: int) -> None:
        """Write one greyscale ``(H, W)`` image with values in [0, 1]."""
        if self._writer is None:
            return
        try:
            self._writer.add_image(tag, image, step, dataformats="HW")
            self._writer.flush()
        except OSError as exc:
            self._give_up(exc)

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as exc:
                self._give_up(exc)
            self._writer = None


RESUMABLE_CHANGES = (
    *(f"run.{name}" for name in RunConfig.model_fields if name != "seed"),
    "optim.max_epochs",
    *(f"data.{name}" for name in DATA_READING_FIELDS),
)
"""Config fields a resumed run may change: where/how it runs, how long it trains, how it reads the data.

Not ``run.seed``: data order and corruption are functions of it, so a run resumed under another
seed would mix two runs under the first one's record.
"""


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data}


def changed_fields(old: BaseModel, new: BaseModel, *, ignore: Sequence[str] = ()) -> list[str]:
    """Dotted paths whose values differ between two configs, skipping ``ignore`` and their children."""
    a, b = _flatten(old.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
    return [
        key
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key) and not any(key == i or key.startswith(i + ".") for i in ignore)
    ]


def _as_trained(config: BaseModel) -> dict[str, Any]:
    """``config`` flattened, with the values ``optim.recipe`` gives its null fields written in."""
    return _flatten(update_fields(config, recipe_filled(config)).model_dump(mode="json"))


def trained_differently(before: BaseModel, now: BaseModel, keys: Sequence[str]) -> list[str]:
    """``keys`` less those whose difference is a null the recipe fills and that value written out.

    ``optim.lr: 0.01`` under a recipe whose rate is 0.01 trains exactly as ``optim.lr: null``, and
    a study gives both one run id: a resume refused it, with advice (a new ``run.output_dir``) a
    study's runner, which names the folder, cannot take.
    """
    recorded, current = _as_trained(before), _as_trained(now)
    return [key for key in keys if recorded.get(key) != current.get(key)]


def described_differences(before: BaseModel, now: BaseModel, keys: Sequence[str], *, width: int = 60) -> str:
    """``key (recorded X, now Y)`` for each of ``keys``, each value's JSON cut to ``width`` characters.

    The values tell a deliberate change from a slip (``run.seed (recorded 0, now 1)``) without
    opening config.yaml; a long list or mapping is shortened, not dropped.

    Example:
        >>> from inpaintssl.config import RunConfig
        >>> described_differences(RunConfig(seed=0), RunConfig(seed=1), ["seed"])
        'seed (recorded 0, now 1)'
    """
    recorded, current = _flatten(before.model_dump(mode="json")), _flatten(now.model_dump(mode="json"))

    def shown(flat: dict[str, Any], key: str) -> str:
        text = json.dumps(flat[key]) if key in flat else "unset"
        return text if len(text) <= width else text[: width - 3] + "..."

    return ", ".join(f"{key} (recorded {shown(recorded, key)}, now {shown(current, key)})" for key in keys)


def recorded_config(path: Path, cls: type[ConfigT]) -> ConfigT:
    """Read a run's ``config.yaml`` as ``cls``, as the run that wrote it understood it.

    A training config written before ``optim.recipe`` existed trained with the paper's recipe
    (Appendix A.1), the only one then; read under today's default it would resume with another
    schedule, so its missing recipe reads as ``paper``.
    """
    config = load_config(path, cls)
    optim = getattr(config, "optim", None)
    # pydantic records which fields the file gave: no second read of the YAML.
    written = "optim" in config.model_fields_set
    if isinstance(optim, OptimConfig) and written and "recipe" not in optim.model_fields_set:
        return config.model_copy(update={"optim": optim.model_copy(update={"recipe": "paper"})})
    return config


def _recorded_for_resume(folder: RunFolder, cls: type[ConfigT]) -> ConfigT:
    """The folder's recorded config; a run of the other stage is named as such, not as bad fields."""
    try:
        return recorded_config(folder.config, cls)
    except ConfigError as exc:
        wanted = {FinetuneConfig: "finetune", PretrainConfig: "pretrain"}.get(cls)
        try:
            stage = json.loads(folder.manifest.read_text(encoding="utf-8")).get("stage")
        except (OSError, ValueError, AttributeError):
            stage = None
        if wanted is not None and stage in ("pretrain", "finetune") and stage != wanted:
            raise ConfigError(
                f"cannot resume {folder.root} as a {wanted} run: it holds a {stage} run (manifest.json); "
                f"resume it with 'inpaintssl {stage}', or choose another run.output_dir"
            ) from exc
        raise


def record_run(
    run_dir: Path,
    config: BaseModel,
    *,
    resume: bool,
    splits: Any,
    manifest: Callable[[], dict[str, Any]],
) -> None:
    """Write ``config.yaml``, ``splits.json`` and ``manifest.json`` for a new run.

    ``manifest`` is called once (it stats data files and asks git): for a new run's record, and on
    a resume for what the data and the environment are now.

    A resumed run keeps the folder's original record, after checking that its last checkpoint is
    intact, that nothing but :data:`RESUMABLE_CHANGES` differs from the recorded config, and that
    the data is the data it started on (:func:`_check_same_data`), so a failed or mistaken resume
    never rewrites what produced the weights. What a resume runs with differently is appended to
    the manifest's ``resumes`` list (:func:`_record_resume`). An unreadable ``splits.json`` or
    ``manifest.json`` gets a warning naming it and is written again from this start.

    Raises:
        inpaintssl.checkpoint.CheckpointError: The last checkpoint is incomplete or corrupt.
        ConfigError: The folder has a last checkpoint but no ``config.yaml`` to check against,
            the resumed config changes data, model, task, loss or transfer settings, or
            another distribution's code now provides a component the manifest records
            (``components``; another version of the same plugin only warns, and is recorded).
        inpaintssl.data.DataError: The data changed since the run started (volumes or data files
            added or removed, files rewritten).
    """
    folder = RunFolder(run_dir)
    recorded = folder.config
    if resume:
        last = folder.last
        resumed_from: Path | None = None
        if checkpoint_exists(last):
            try:
                resumed_from = resolve_checkpoint(run_dir, which="last")
            except CheckpointError as exc:
                raise CheckpointError(f"cannot resume from {last}: {exc}") from exc
        if resumed_from is not None and not recorded.is_file():
            # Without the record a resume can check nothing against it and would write this
            # start's settings as the record of weights trained with others.
            raise ConfigError(
                f"cannot resume {run_dir}: it has a checkpoint ({last}) but no {recorded.name}, the "
                f"record of the settings its weights were trained with, so this resume's settings "
                f"cannot be checked against them; put back the run's {recorded} (a copy, or the "
                "settings it started with written by `inpaintssl config show`), or start a new "
                "run.output_dir"
            )
        if recorded.is_file():
            before = _recorded_for_resume(folder, type(config))
            changed = trained_differently(
                before, config, changed_fields(before, config, ignore=RESUMABLE_CHANGES)
            )
            if changed:
                raise ConfigError(
                    f"cannot resume {run_dir}: these settings differ from its recorded config.yaml: "
                    f"{described_differences(before, config, changed)}. Resume with the original settings, "
                    "or start a new run.output_dir"
                )
            budget = _budget_change(before, config)
            if budget is not None and resumed_from is not None:
                _refuse_a_relaid_schedule(run_dir, *budget)
            elif budget is not None:
                # Stopped before its first checkpoint: nothing was laid over the old budget, and
                # the fresh start (which says so) trains to the new one, which the record names.
                record_budget(run_dir, budget[1].max_epochs)
            now = manifest()
            _check_same_components(folder, now)
            _check_same_data(folder, config, splits=splits, manifest=now)
            # A run killed between config.yaml and the rest of its record (before its first
            # checkpoint) completes the record now: predict's spacing and orientation checks read
            # the manifest. A torn one is named and written again (:func:`_unreadable_record`).
            if not folder.splits.is_file() or _unreadable_record(folder.splits, what="subsets"):
                splits.save(folder.splits)
            if not folder.manifest.is_file():
                write_manifest(run_dir, now)
                return
            if _unreadable_record(folder.manifest, what="data files and environment"):
                write_manifest(run_dir, now)
            _record_resume(folder, before, config, manifest=now, resumed_from=resumed_from)
            return
    write_config(run_dir, config)
    splits.save(folder.splits)
    write_manifest(run_dir, manifest())


def _unreadable_record(path: Path, *, what: str) -> bool:
    """Warn and return ``True`` when the record ``path`` (a JSON object) cannot be read.

    Written atomically, a torn or emptied record is damage from outside (a full disk on another
    writer, an editor). A resume could not compare its data with it, and the record would stay
    torn for every later resume and for ``predict``: it is written again from what this start found.
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if isinstance(record, dict):
            return False
        reason = f"expected a JSON object, found {type(record).__name__}"
    warn_each_time(
        f"{path} is unreadable ({reason}): this resume could not compare its {what} with it, and "
        f"writes it again from the {what} this start found",
        UserWarning,
    )
    return True


def _read_json(path: Path) -> Any:
    """``path``'s JSON, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _listed(names: Sequence[str]) -> str:
    return first_and_more(names, limit=8)


def _subsets(record: Any) -> dict[str, Any] | None:
    subsets = record.get("subsets") if isinstance(record, dict) else None
    return subsets if isinstance(subsets, dict) else None


def _split_changes(recorded: Any, splits: Any) -> list[str]:
    """How the subsets this start built differ from the recorded ``splits.json`` (by volume)."""
    then = _subsets(recorded)
    now = _subsets(splits.model_dump(mode="json")) if isinstance(splits, BaseModel) else None
    if then is None or now is None:
        return []  # nothing recorded to compare with (or a split record of another kind)
    changes: list[str] = []
    for name in sorted(set(then) | set(now)):
        old, new = then.get(name), now.get(name)
        if not isinstance(old, dict) or not isinstance(new, dict):
            changes.append(f"subset {name!r} {'was not there' if old is None else 'is gone'}")
            continue
        old_ids, new_ids = list(old.get("volume_ids") or []), list(new.get("volume_ids") or [])
        added = [v for v in new_ids if v not in set(old_ids)]
        removed = [v for v in old_ids if v not in set(new_ids)]
        parts = [f"volumes added: {_listed(added)}"] if added else []
        parts += [f"volumes removed: {_listed(removed)}"] if removed else []
        if not parts and old.get("items") != new.get("items"):
            count_old, count_new = len(old.get("items") or []), len(new.get("items") or [])
            parts.append(f"the same volumes give other slices ({count_old} recorded, {count_new} now)")
        if parts:
            changes.append(f"{name}: {'; '.join(parts)}")
    return changes


def _training_volumes(recorded: Any) -> set[str]:
    """The volume ids of the recorded subsets a run trains on (:func:`trains_on`)."""
    subsets = _subsets(recorded) or {}
    trained = (subset for name, subset in subsets.items() if trains_on(name) and isinstance(subset, dict))
    return {str(v) for subset in trained for v in subset.get("volume_ids") or []}


def _file_changes(check: DataCheck, training: set[str]) -> tuple[list[str], list[str], list[str]]:
    """Files of ``data_check.json``'s cases that are gone or resized, and those only rewritten
    (same size, new modification time), of training cases and of the others.

    A case is a training case when a set it served is trained on (:func:`trains_on`). A case
    without recorded sets (a ``data_check.json`` written before the record held them) is judged by
    its check's name, so that runs started before then still resume as they did: a training case
    when the name holds ``case '<id>'`` for an id in ``training`` (the volume ids of the subsets
    trained on). That fallback takes a validation case whose id is also a training id (ids are
    unique only within a split) for a training case, and misses a training case of a dataset that
    names its checks otherwise.
    """
    gone_or_resized: list[str] = []
    rewritten_training: list[str] = []
    rewritten_other: list[str] = []
    for what, prints in sorted(check.passed.items()):
        served = check.sets.get(what)
        if served is not None:
            trains = any(trains_on(name) for name in served)
        else:
            # Recorded without sets: only the name says which case it is, "<dataset> case '<id>' (<path>)".
            trains = any(f"case {volume!r}" in str(what) for volume in training)
        for entry in prints if isinstance(prints, list) else []:
            try:
                name, size, mtime = str(entry[0]), int(entry[1]), int(entry[2])
            except (TypeError, ValueError, IndexError, KeyError):
                continue
            try:
                stat = os.stat(name)
            except OSError:
                gone_or_resized.append(f"{name} (gone)")
                continue
            if stat.st_size != size:
                gone_or_resized.append(f"{name} ({size} bytes recorded, {stat.st_size} now)")
            elif stat.st_mtime_ns != mtime:
                (rewritten_training if trains else rewritten_other).append(name)
    return gone_or_resized, rewritten_training, rewritten_other


def _check_same_data(
    folder: RunFolder, config: BaseModel, *, splits: Any, manifest: Mapping[str, Any]
) -> None:
    """Refuse to resume on data other than the data the run started on.

    Compared, as far as the folder records it: the subsets (``splits.json``: volumes added or
    removed, or other slices of the same volumes), the data files (``manifest.json``'s
    ``data_files_sha256``, over every file's name and size: files added, removed or resized) and
    the cases the pre-flight check passed (``data_check.json``: each file's size and modification
    time). A training file rewritten in place (same size, new modification time) is refused too,
    with the way out for a file that was only copied or touched; a rewritten validation or test
    file only gets a warning, since the weights trained so far did not learn from it. Which is
    which comes from the sets ``data_check.json`` records for each case (a file of a case that
    served both is a training file), by volume id for a record that holds none
    (:func:`_file_changes`).

    Datasets that read no files (``synthetic``) record none, so only their subsets are compared.

    Raises:
        inpaintssl.data.DataError: What changed, and how to go on.
    """
    recorded_splits = _read_json(folder.splits)
    problems = [f"{folder.splits.name}: {change}" for change in _split_changes(recorded_splits, splits)]
    then = _read_json(folder.manifest)
    old_hash = then.get("data_files_sha256") if isinstance(then, dict) else None
    new_hash = manifest.get("data_files_sha256")
    data_config = getattr(config, "data", None)
    check = (
        DataCheck()
        if not isinstance(data_config, BaseModel)
        else read_data_check(folder.root, data_config=data_config)
    )
    gone, rewritten, rewritten_other = _file_changes(check, _training_volumes(recorded_splits))
    if gone:
        problems.append(
            f"files gone or resized since {folder.data_check.name} recorded them: {_listed(gone)}"
        )
    if old_hash is not None and new_hash is not None and old_hash != new_hash:
        counts = f"{then.get('data_files')} file(s) recorded, {manifest.get('data_files')} now"
        problems.append(
            f"the data files differ from {folder.manifest.name}'s data_files_sha256 (names and sizes; "
            f"{counts})"
        )
    way_out = "Restore the data as it was, or start a new run.output_dir for the data as it is"
    if rewritten:
        problems.append(
            f"training files rewritten since {folder.data_check.name} recorded them (same size, new "
            f"modification time): {_listed(rewritten)}"
        )
        way_out += (
            f"; if their contents are unchanged (files copied back or only touched), delete "
            f"{folder.data_check} and resume again"
        )
    if problems:
        raise DataError(
            f"cannot resume {folder.root}: its data changed since the run started (the rest of the run "
            f"would train on other data than its record says): {'; '.join(problems)}. {way_out}"
        )
    if rewritten_other:
        warn_each_time(
            f"resuming {folder.root}: validation or test files rewritten since {folder.data_check.name} "
            f"recorded them (same size, new modification time): {_listed(rewritten_other)}; the resumed "
            "run validates and tests on them as they are now",
            UserWarning,
        )


def _check_same_components(folder: RunFolder, manifest: Mapping[str, Any]) -> None:
    """Refuse to resume with components that other code provides now than when the run started.

    ``manifest.json``'s ``components`` records where each registered component came from
    (:func:`inpaintssl.training.stages.component_origins`). Another distribution's plugin under a
    recorded name, or a plugin where a built-in was (or the reverse), would train the rest of the
    run with other code under the record of the first (the checkpoint's weights load into a
    network of the same parameter names without a word). Another version of the same plugin only
    warns: it is recorded in the manifest's ``resumes`` (``environment``, :func:`_record_resume`).

    Raises:
        ConfigError: Naming each component, the recorded and the current origin, and what to install.
    """
    then = _read_json(folder.manifest)
    recorded = then.get("components") if isinstance(then, dict) else None
    current = manifest.get("components")
    if not isinstance(recorded, dict) or not isinstance(current, Mapping):
        return  # a run recorded before components were (or an unreadable manifest, said elsewhere)
    other: list[str] = []
    upgraded: list[str] = []
    for kind, names in sorted(recorded.items()):
        now = current.get(kind)
        if not isinstance(names, dict) or not isinstance(now, Mapping):
            continue
        for name, origin in sorted(names.items()):
            found = now.get(name)
            if not isinstance(origin, str) or not isinstance(found, str):
                continue
            change = origin_change(origin, found)
            if change == "other":
                other.append(
                    f"{kind} {name!r} (recorded {origin}, now {found}: {restore_hint(origin, found)})"
                )
            elif change == "version":
                upgraded.append(f"{kind} {name!r} (recorded {origin}, now {found})")
    if other:
        raise ConfigError(
            f"cannot resume {folder.root}: other code provides these components than when the run started "
            f"({folder.manifest.name}, components): {'; '.join(other)}. The rest of the run would train "
            "another package's code under this run's record; expected the recorded code, or start a new "
            "run.output_dir"
        )
    if upgraded:
        warn_each_time(
            f"resuming {folder.root} with other versions of its components than it started with: "
            f"{'; '.join(upgraded)}. The rest of the run trains with them; {folder.manifest.name} records "
            "the change under resumes",
            UserWarning,
        )


_NOT_RECORDED_ON_RESUME = ("run.resume", "run.quiet", "run.output_dir", "optim.max_epochs")
"""Resumable changes the manifest's ``resumes`` list leaves out: ``run.resume`` is what makes a
resume, ``run.quiet`` changes no output, the folder is where it is, and a new budget is written
into ``config.yaml`` itself (:func:`record_budget`)."""

_ENVIRONMENT = (
    "device",
    "world_size",
    "autocast_dtype",
    "channels_last",
    "worker_start_method",
    "python",
    "git_commit",
    "packages",
    "components",
)
"""Manifest entries that say where and with what a process trained, compared on a resume.

``components`` is one: another version of a plugin is resumed with (and recorded); other code
under a recorded name is refused before (:func:`_check_same_components`)."""


def _resume_epoch(checkpoint: Path | None) -> int | None:
    """The epochs trained before a resume from ``checkpoint`` (0 when there is none to resume)."""
    if checkpoint is None:
        return 0
    state = _read_json(checkpoint / "trainer_state.json")
    epoch = state.get("global_epoch") if isinstance(state, dict) else None
    return epoch if isinstance(epoch, int) else None


def _record_resume(
    folder: RunFolder,
    before: BaseModel,
    config: BaseModel,
    *,
    manifest: Mapping[str, Any],
    resumed_from: Path | None,
) -> None:
    """Append to ``manifest.json``'s ``resumes`` what this resume runs with differently.

    ``config.yaml`` keeps the settings the run started with; a resume may change the ``run``
    settings and how the data are read (:data:`RESUMABLE_CHANGES`), and may run on another device,
    workers' start method, library version, commit or plugin version (``components``). Each entry
    holds the time, the epochs trained before it (``resumed_from_epoch``), and each setting
    (``changed``) and environment entry (``environment``) whose value differs from the recorded
    one, as ``{"recorded": ..., "now": ...}``: they hold from that epoch on, up to the next
    entry's. A resume that differs in none of them adds an entry only once an earlier one did (an
    empty one: back to the recorded values). An entry is written before training continues, so a
    resume the trainer then refuses leaves one too, which the next entry from the same epoch
    replaces in meaning. Written atomically; an unreadable manifest is left as it is, with a
    warning.
    """
    recorded, current = _flatten(before.model_dump(mode="json")), _flatten(config.model_dump(mode="json"))
    changed = {
        key: {"recorded": recorded.get(key), "now": current.get(key)}
        for key in changed_fields(before, config)
        if any(key == name or key.startswith(name + ".") for name in RESUMABLE_CHANGES)
        and key not in _NOT_RECORDED_ON_RESUME
    }
    then = _read_json(folder.manifest)
    if not isinstance(then, dict):
        if not changed:
            return
        warn_each_time(
            f"{folder.manifest} is unreadable: this resume's changed settings ({_listed(sorted(changed))}) "
            "are not recorded",
            UserWarning,
        )
        return
    old_env = _flatten({key: then[key] for key in _ENVIRONMENT if key in then})
    new_env = _flatten({key: manifest[key] for key in _ENVIRONMENT if key in manifest})
    environment = {
        key: {"recorded": old_env.get(key), "now": new_env.get(key)}
        for key in sorted(set(old_env) | set(new_env))
        if key in old_env and key in new_env and old_env[key] != new_env[key]
    }
    resumes = then.get("resumes")
    earlier = resumes if isinstance(resumes, list) else []
    if not changed and not environment and not earlier:
        return
    entry = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed_from_epoch": _resume_epoch(resumed_from),
        "changed": changed,
        "environment": environment,
    }
    then["resumes"] = [*earlier, entry]
    write_manifest(folder.root, then)


def _budget_change(before: BaseModel, config: BaseModel) -> tuple[int, OptimConfig] | None:
    """The recorded ``optim.max_epochs`` and ``config``'s optim section, where the two budgets differ."""
    old, new = getattr(before, "optim", None), getattr(config, "optim", None)
    if isinstance(old, OptimConfig) and isinstance(new, OptimConfig) and old.max_epochs != new.max_epochs:
        return old.max_epochs, new
    return None


def _refuse_a_relaid_schedule(run_dir: Path, recorded_epochs: int, new: OptimConfig) -> None:
    """Refuse a new ``optim.max_epochs`` where the schedule is laid over the whole budget."""
    if new.effective_schedule == "warmup_cosine":
        raise ConfigError(
            f"cannot resume {run_dir} with optim.max_epochs={new.max_epochs} (recorded: {recorded_epochs}): "
            "its warmup_cosine schedule is laid over the whole budget, so a new budget would re-lay it "
            "mid-run and the learning rate would jump. Resume with the recorded optim.max_epochs, or "
            "start a new run.output_dir with the new budget"
        )


def record_budget(run_dir: Path, max_epochs: int) -> None:
    """Rewrite ``optim.max_epochs`` in ``config.yaml``: a resumed run trains on to a new budget.

    The record says what produced the weights. Only a ``step_decay`` run gets here (its rate is a
    function of the epoch alone, so the continued run is the run with the new budget from the
    start); :func:`record_run` refuses a new budget for a ``warmup_cosine`` one. A record that
    already names ``max_epochs`` is left as it is.
    """
    path = RunFolder(run_dir).config
    # Read and written as config files are (read_config_file, ConfigYamlDumper): PyYAML's safe pair
    # would take a quoted '1e5' back as text and write it bare, which the next load reads as a float.
    data = read_config_file(path)
    optim = data.get("optim")
    if isinstance(optim, dict) and optim.get("max_epochs") == max_epochs:
        return
    data["optim"] = {**(optim if isinstance(optim, dict) else {}), "max_epochs": max_epochs}
    atomic_write_text(path, yaml.dump(data, Dumper=ConfigYamlDumper, sort_keys=False))
