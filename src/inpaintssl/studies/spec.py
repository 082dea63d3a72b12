"""The declarative description of one study: what to vary, where results go (paper sec. 2.5-2.8).

A study spec is a YAML (or JSON) file, validated by :class:`StudySpec`::

    study: pretext_design            # transfer_design | pretext_design | data_scaling | clinical | demo
    name: mni152-pretext
    output: studies/mni152-pretext   # run folders, database, report (relative to the CWD)
    pretrain: {data: {dataset: mni152}, optim: {max_epochs: 20}}     # base PretrainConfig
    finetune: {data: {dataset: mni152}, optim: {max_epochs: 30}}     # base FinetuneConfig
    grid:                            # dotted fields of the two configs, each with its values
      pretrain.pretext.task: [context_prediction, context_restoration]
      pretrain.pretext.patch_size: [8, 16, 32]
      pretrain.pretext.sampler: [random, poisson_disc]
    label_fractions: [1.0, 0.5, 0.25, 0.1, 0.05]
    subset_seeds: [0]
    baseline: true                   # also train the supervised baselines (see below)
    executor:                        # resources of --executor slurm | ray (optional)
      partition: gpu
      gpus_per_task: 1
      cpus_per_task: 8
      timeout_min: 720

Every combination of grid values is one pretraining run (``pretrain.*`` keys) times one
fine-tuning run (``finetune.*`` keys) per label fraction and subset seed; identical pretraining
configurations are trained once and shared (:mod:`inpaintssl.studies.grid`). Each SSL
fine-tuning run is compared with a supervised baseline trained like it (sec. 2.5.3): from scratch,
at its label fraction and subset seed, with its non-transfer fine-tuning settings (every
``finetune.*`` grid value outside ``finetune.transfer.*``: learning rate, recipe, loss, budget,
early stopping, model, run seed) and the same training phases (a two-run schedule's baseline
trains the same two phases from scratch, each with its own ``optim.max_epochs`` and early
stopping, the second at ``transfer.second_lr``). One baseline is trained per label fraction,
subset seed, distinct non-transfer setting and, for two-run schedules, second learning rate;
grid points that differ in other transfer settings alone share one, so a grid over one-run
transfer settings alone keeps the one baseline per label fraction and seed. Every fine-tuning
run's ``baseline_id`` label names its baseline (docs/studies.rst, "The supervised baseline").

``data_scaling`` (sec. 2.6) adds ``unlabelled_fractions``: each value sets the ``fraction`` of
every source in ``pretrain.data.unlabelled`` (0 drops them: the training set alone, the paper's
100% pretraining data).

Example:
    >>> spec = StudySpec(study="pretext_design", grid={"pretrain.pretext.patch_size": [16, 32]})
    >>> spec.database_path()
    PosixPath('studies/pretext_design/study.sqlite')
"""

from __future__ import annotations

import difflib
import functools
import glob
import itertools
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ValidationInfo, ValidatorFunctionWrapHandler

from inpaintssl.config import (
    TWO_RUN_SCHEDULES,
    ConfigError,
    FinetuneConfig,
    PretrainConfig,
    UnusedSetting,
    format_validation_error,
    quiet_unused_settings,
    read_config_text,
    read_text_file,
    recipe_filled,
    unused_settings,
    update_fields,
    user_path,
)
from inpaintssl.config.errors import is_model_class

if TYPE_CHECKING:
    from inpaintssl.studies.grid import StudyPlan  # grid imports this module

__all__ = [
    "EXECUTORS",
    "GRID_STAGES",
    "MANAGED_FIELDS",
    "STUDY_KINDS",
    "ExecutorName",
    "ExecutorSpec",
    "StudyKind",
    "StudySpec",
    "executor_flag",
    "executor_setting",
    "field_value",
    "format_executor_errors",
    "load_spec",
    "trained_fields",
]

ExecutorName = Literal["local", "slurm", "ray"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)

StudyKind = Literal["transfer_design", "pretext_design", "data_scaling", "clinical", "demo"]
STUDY_KINDS: tuple[str, ...] = get_args(StudyKind)
GRID_STAGES = ("pretrain", "finetune")
ModelT = TypeVar("ModelT", bound=BaseModel)

# A subset seed, bounded as ``data.subset_seed`` is: checked here, a bad one is blamed on the spec's
# own field, not on ``data.subset_seed``, which the runner sets and the spec never names.
_SubsetSeed = Annotated[int, Field(ge=0, lt=2**32)]

_MIN_MEM_GB = 1 / 1024
"""The least ``mem_gb``: 1 MB, the smallest memory Slurm's ``--mem`` and Ray are sent."""

MANAGED_FIELDS = frozenset(
    {
        "run.output_dir",
        "run.resume",
        "data.label_fraction",
        "data.subset_seed",
        "transfer.pretrained",
    }
)
"""Fields the runner sets itself; a grid may not vary them (use the spec's own fields instead)."""


class ExecutorSpec(BaseModel):
    """Resources of the remote executors (``--executor slurm`` or ``ray``); the local one ignores them.

    Every field but ``max_requeues`` and ``setup`` can also be given on the command line
    (``--partition``, ``--gpus-per-task``, ...), which wins over the spec.

    Attributes:
        partition: Slurm partition (``None``: the cluster's default).
        gpus_per_task: GPUs of each array task or Ray task.
        cpus_per_task: CPU cores of each task (also torch's thread count there); ``None``: the
            scheduler's default for Slurm, 1 for Ray. The local executor's workers train on this
            many threads too when it is given (else the cores shared among them): a run's last
            bits depend on its thread count, so one count gives the same results on every
            executor.
        timeout_min: Wall time of each Slurm array task; a task that reaches it is requeued and
            its run resumes from its checkpoint.
        mem_gb: Memory of each Slurm task or Ray task in GB, finite and at least 1/1024 (1 MB)
            (``None``: the cluster's default; Ray reserves none).
        array_parallelism: Most tasks of the study submitted at once (Slurm array tasks, queued
            or running, or Ray tasks); the driver submits more as they end.
        chunk_size: Runs per task: several short runs share one task's start-up cost.
        max_requeues: How often a timed-out Slurm task is requeued (submitit requeues a
            preempted one every time), or a Ray task whose worker died is retried.
        setup: Shell lines a Slurm task runs first (``source .venv/bin/activate``, ``module load ...``).
        cluster: ``slurm``, or ``local`` for submitit's local executor: the same submission and
            merge path as on a cluster, in subprocesses on this machine (to try a spec out).
        ray_address: Address of a running Ray cluster (``auto``, ``ray://host:10001``); ``None``:
            ``RAY_ADDRESS``, or a Ray instance already running on this machine, else a new local one.
        slurm_options: More ``sbatch`` options of each array task by long name, e.g.
            ``{account: proj42, qos: high, constraint: a100}`` (``#SBATCH --account=proj42``);
            ``--slurm-option KEY=VALUE`` on the command line replaces them. Checked before the
            first submission (:func:`inpaintssl.studies.submitit_backend.check_slurm_options`).
    """

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    gpus_per_task: int = Field(default=0, ge=0)
    cpus_per_task: int | None = Field(default=None, ge=1)
    timeout_min: int = Field(default=24 * 60, ge=1)
    mem_gb: float | None = None  # range checked by _mem_in_range, NaN included
    array_parallelism: int | None = Field(default=None, ge=1)
    chunk_size: int = Field(default=1, ge=1)
    max_requeues: int = Field(default=3, ge=0)
    setup: list[str] = Field(default_factory=list)
    cluster: Literal["slurm", "local"] = "slurm"
    ray_address: str | None = None
    slurm_options: dict[str, str] = Field(default_factory=dict)

    @field_validator("mem_gb")
    @classmethod
    def _mem_in_range(cls, value: float | None) -> float | None:
        # Slurm and Ray get whole MB (bytes): less than 1 MB is sent as --mem=0, which Slurm reads
        # as a whole node's memory, and infinity overflowed submitit's and Ray's conversions.
        if value is not None and not (math.isfinite(value) and value >= _MIN_MEM_GB):
            raise PydanticCustomError(
                "mem_gb_range",
                "expected a finite number of GB, at least 1/1024 (1 MB; Slurm reads --mem=0 as all of a "
                "node's memory)",
            )
        return value


_EXECUTOR_FLAGS: Mapping[str, str] = MappingProxyType({"slurm_options": "--slurm-option"})
"""Resource flags of ``experiment run`` not spelled as their field (one ``--slurm-option`` per option)."""
_NO_FLAG = frozenset({"max_requeues", "setup"})
"""Fields of the ``executor`` section that the spec alone sets."""
_BOUNDS: Mapping[str, str] = MappingProxyType({"ge": ">=", "gt": ">", "le": "<=", "lt": "<"})
"""pydantic's bounds (its errors' ``ctx``), as an error message writes them."""


def executor_flag(field: str) -> str | None:
    """The ``experiment run`` flag that sets the ``executor`` section's ``field`` (``None``: none does).

    Example:
        >>> executor_flag("gpus_per_task"), executor_flag("slurm_options"), executor_flag("setup")
        ('--gpus-per-task', '--slurm-option', None)
    """
    if field in _NO_FLAG:
        return None
    return _EXECUTOR_FLAGS.get(field, "--" + field.replace("_", "-"))


def executor_setting(field: str) -> str:
    """How messages name the ``executor`` section's ``field``: its flag and spec field, or the field alone.

    Example:
        >>> executor_setting("mem_gb"), executor_setting("max_requeues")
        ('--mem-gb (executor.mem_gb)', 'executor.max_requeues')
    """
    flag = executor_flag(field)
    return f"executor.{field}" if flag is None else f"{flag} (executor.{field})"


def format_executor_errors(exc: ValidationError) -> str:
    """The errors of validating an ``executor`` section, each naming the flag typed and the value found.

    One line, as the command line prints a :class:`~inpaintssl.config.ConfigError`: e.g.
    ``--gpus-per-task (executor.gpus_per_task) is -1; expected >= 0``.

    Example:
        >>> try:
        ...     ExecutorSpec.model_validate({"gpus_per_task": -1, "cluster": "pbs"})
        ... except ValidationError as exc:
        ...     print(format_executor_errors(exc).replace("; --", ";\\n--"))
        --gpus-per-task (executor.gpus_per_task) is -1; expected >= 0;
        --cluster (executor.cluster) is 'pbs'; expected 'slurm' or 'local'
    """
    said = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        name = executor_setting(loc[0]) if loc else "executor"
        if len(loc) > 1:  # inside a field's value: slurm_options' key, setup's line
            name += f" at {'.'.join(loc[1:])}"
        bound = next(
            (f"{sign} {err['ctx'][key]}" for key, sign in _BOUNDS.items() if key in err.get("ctx", {})), None
        )
        expected = bound or err["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        if not expected.startswith("expected"):
            expected = f"expected {expected}"
        said.append(f"{name} is {err['input']!r}; {expected}")
    return "; ".join(said)


class StudySpec(BaseModel):
    """One study: the base configs, the grid, the label-limited subsets and where results go.

    Attributes:
        study: Which of the paper's studies this is; it picks the strategy names, tables and
            figures of the report.
        name: Title of the report (defaults to ``study``).
        pretrain: Base pretraining config (sec. 2.4; Appendix A.2: pretrain on all training data).
        finetune: Base fine-tuning config (sec. 2.5.1).
        grid: ``"pretrain.<field>"`` or ``"finetune.<field>"`` -> list of values.
        label_fractions: Label-limited training subsets (sec. 2.1), each in (0, 1].
        subset_seeds: Seeds of the nested label-limited subset draws; several seeds show the
            spread that per-image p-values alone hide (label fraction 1.0 is the whole training
            set for every seed, so it runs with the first seed only); each in [0, 2**32).
        fraction_seeds: Subset seeds for particular label fractions, replacing ``subset_seeds``
            there (the demo repeats only its smallest fraction).
        unlabelled_fractions: ``data_scaling`` only: share of each unlabelled source added to the
            pretraining set, each in [0, 1].
        baseline: Also train the fully supervised baseline per label fraction, subset seed and
            non-transfer fine-tuning setting; each fine-tuning run names its own in its
            ``baseline_id`` label (see the module docstring).
        target_dice: Dice the labels-needed estimate aims for (default: the supervised Dice with
            all labels).
        output: Study folder: ``runs/<run_id>/``, the database and the report.
        database: SQLite file (default ``<output>/study.sqlite``), written from the host that
            created it only. A ``{shard}`` placeholder gives each shard its own file (shards on
            several machines); reports read every matching file.
        max_attempts: A run that raised is retried until it has been attempted this often.
        heartbeat_s: How often a worker refreshes the heartbeat of the run it executes.
        stale_after_s: A ``running`` run of a worker on another host whose heartbeat is older than
            this is reclaimed (its worker is presumed dead); on this host a run is reclaimed once its
            worker's process is gone, however long it was silent (stopped by Ctrl-Z, asleep).
        executor: Resources of ``--executor slurm`` and ``--executor ray``
            (:class:`ExecutorSpec`).
    """

    model_config = ConfigDict(extra="forbid")

    study: StudyKind
    name: str | None = None
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    label_fractions: list[float] = Field(default_factory=lambda: [1.0, 0.5, 0.25, 0.1, 0.05], min_length=1)
    subset_seeds: list[_SubsetSeed] = Field(default_factory=lambda: [0], min_length=1)
    fraction_seeds: dict[float, list[int]] = Field(default_factory=dict)
    unlabelled_fractions: list[float] | None = None
    baseline: bool = True
    target_dice: float | None = Field(default=None, gt=0.0, le=1.0)
    output: Path | None = None
    database: Path | None = None
    max_attempts: int = Field(default=2, ge=1)
    heartbeat_s: float = Field(default=30.0, gt=0.0)
    stale_after_s: float = Field(default=900.0, gt=0.0)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)

    @field_validator("output", "database", mode="before")
    @classmethod
    def _user_paths(cls, value: Any, info: ValidationInfo) -> Any:
        # As run.output_dir expands them: a study of output ~/studies/x kept its database in a
        # folder named "~" under the working folder and its run folders in the home folder.
        return user_path(value, field=info.field_name or "path")

    @field_validator("label_fractions")
    @classmethod
    def _fractions_in_range(cls, value: list[float]) -> list[float]:
        bad = [f for f in value if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"label_fractions must lie in (0, 1]; found {bad}")
        return value

    @field_validator("unlabelled_fractions")
    @classmethod
    def _unlabelled_in_range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(not 0.0 <= f <= 1.0 for f in value)):
            raise ValueError(
                f"unlabelled_fractions must be a non-empty list of values in [0, 1]; found {value}"
            )
        return value

    # Runs after the range checks above (pydantic applies a field's validators in order).
    @field_validator("label_fractions", "subset_seeds", "unlabelled_fractions")
    @classmethod
    def _distinct(cls, value: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"{info.field_name} must be distinct; found {value}")
        return value

    @field_validator("fraction_seeds")
    @classmethod
    def _fraction_seeds(cls, value: dict[float, list[int]]) -> dict[float, list[int]]:
        for fraction, seeds in value.items():
            # Range-checked here, not by the type: pydantic would name the seed 'fraction_seeds.0.5.0'.
            if not seeds or len(set(seeds)) != len(seeds) or any(not 0 <= s < 2**32 for s in seeds):
                raise ValueError(
                    f"fraction_seeds[{fraction}] must be distinct seeds in [0, 2**32), at least one; "
                    f"found {seeds}"
                )
        return value

    @field_validator("pretrain", "finetune", mode="wrap")
    @classmethod
    def _base_fields(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        # A base config's checks across fields (patch size against image size, second_lr against
        # min_lr, ...) compare values a grid key may set in every run, so they are made on the runs'
        # configs instead (_consistent); each field's own type and range checks stay here.
        try:
            # A base setting unused under the base's own mode may be used under a grid value's
            # (second_lr beside a grid of one- and two-run schedules): judged on the runs instead.
            with quiet_unused_settings():
                return handler(value)
        except ValidationError as exc:
            config = PretrainConfig if info.field_name == "pretrain" else FinetuneConfig
            try:
                unchecked = _fields_only(config).model_validate(value)
            except ValidationError:
                raise exc from None
            return _restored(config, unchecked)

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, value: dict[str, list[Any]], info: ValidationInfo) -> dict[str, list[Any]]:
        for key, values in value.items():
            stage, _, field = key.partition(".")
            if stage not in GRID_STAGES or not field:
                raise ValueError(
                    f"grid key {key!r} must start with 'pretrain.' or 'finetune.' followed by a dotted "
                    "config field, e.g. 'pretrain.pretext.patch_size'"
                )
            # Checked once for the key: validating each value would blame the first value for the key.
            # The base config is absent here when it failed validation itself (reported on its own).
            base = info.data.get(stage)
            missing = _missing_field(base, field) if isinstance(base, BaseModel) else ""
            if missing:
                raise ValueError(f"grid key {key!r} names no field of the {stage} config: {missing}")
            if field in MANAGED_FIELDS:
                raise ValueError(
                    f"grid key {key!r}: {field} is set by the runner; use label_fractions, subset_seeds "
                    "or output instead"
                )
            if not values:
                raise ValueError(f"grid key {key!r} has no values; expected a non-empty list")
            # 4 and 4.0 are one run: a repeated value was silently one run fewer than the spec says.
            repeated = [v for i, v in enumerate(values) if any(v == w for w in values[:i])]
            if repeated:
                raise ValueError(
                    f"grid key {key!r} holds {values}, repeating {repeated}; expected distinct values"
                )
        # Unequal as written, yet one run once read and filled in by the recipe ("4" and 4; null
        # and 0.01 under a recipe whose rate is 0.01): the plan kept one of the two grid points.
        for stage in GRID_STAGES:
            base = info.data.get(stage)
            if isinstance(base, BaseModel):
                keys = {k: v for k, v in value.items() if k.startswith(f"{stage}.")}
                alike = _values_trained_alike(_fields_only_copy(base), keys)
                if alike:
                    raise ValueError(alike)
        unread = _second_rate_unread(info.data.get("finetune"), value)
        if unread:
            raise ValueError(unread)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        # Each value's own type and range, checked on its own; how it goes with the other fields
        # depends on the other grid values too, and is checked on every run below (_check_runs).
        bases = {"pretrain": _fields_only_copy(self.pretrain), "finetune": _fields_only_copy(self.finetune)}
        for key, values in self.grid.items():
            stage, _, field = key.partition(".")
            for value in values:
                try:
                    update_fields(bases[stage], {field: value})
                except ConfigError as exc:
                    raise ValueError(f"grid key {key!r}, value {value!r} is not valid: {exc}") from exc
        if self.heartbeat_s >= self.stale_after_s:
            # A worker beating less often than a run is judged stale would lose its live run to
            # another worker, and the two would train it at once in one folder.
            raise ValueError(
                f"heartbeat_s={self.heartbeat_s:g} must be smaller than stale_after_s="
                f"{self.stale_after_s:g} (a few heartbeats per stale period, e.g. 30 and 900)"
            )
        unknown = sorted(set(self.fraction_seeds) - set(self.label_fractions))
        if unknown:
            raise ValueError(
                f"fraction_seeds names label fractions {unknown} that are not in label_fractions "
                f"{sorted(self.label_fractions, reverse=True)}"
            )
        if self.study == "data_scaling":
            if self.unlabelled_fractions is None:
                raise ValueError("study 'data_scaling' needs unlabelled_fractions, e.g. [0.0, 0.5, 1.0]")
            if not self.pretrain.data.unlabelled:
                raise ValueError(
                    "study 'data_scaling' needs at least one source in pretrain.data.unlabelled "
                    "(the unlabelled data the pretraining superset grows with)"
                )
        elif self.unlabelled_fractions is not None:
            raise ValueError(
                f"unlabelled_fractions applies to study 'data_scaling' only; this study is {self.study!r}"
            )
        self._check_runs()
        return self

    def _check_runs(self) -> None:
        """Validate every run's resolved config, naming the grid values of the first that fails.

        A base value that every run's grid value replaces is never trained with, so it is not
        checked against the other fields (a base ``pretext.patch_size`` of 32 on 48x48 images under
        a grid of 4 and 8); a base value that some run keeps is checked in that run.
        """
        from inpaintssl.studies.grid import expand_study  # grid imports this module

        try:
            plan = expand_study(self)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        _warn_settings_no_run_uses([job.config for job in plan.jobs])

    def pretraining_sees_test_anatomy(self, *, plan: StudyPlan | None = None) -> str | None:
        """Why the SSL arm's pretraining may hold the test images' anatomy; ``None`` if not known to.

        Two checks, over every SSL fine-tuning run of the plan and the pretraining run it starts
        from (``data_scaling`` at 0% keeps no unlabelled source):

        * Declared: an ``unlabelled`` source of the dataset the run is fine-tuned and tested on
          has seen the test anatomy when that dataset declares that its unlabelled split holds it
          (:func:`inpaintssl.data.base.unlabelled_sees_test_anatomy`; ``mni152`` does: its coronal
          and sagittal slices each cross every axial slice of the same template, the test slices
          included, which no id shows). Other datasets' sources cannot be compared by name.
        * Built: the pretraining run's sets (``pretrain.data``'s train and val sets and each
          unlabelled source) and the fine-tuning run's test set are built as the runs build them
          (:func:`~inpaintssl.data.build.build_datasets`) and their volume ids intersected, where
          both come from the same data: the same dataset with the same parameters, save those that
          only cut it into splits (``split``, ``cases``, ``block_size``, ``min_brain_fraction``,
          ...). This finds test slices that a pretraining section cutting the splits differently
          from ``finetune.data`` trains on. Each distinct data section is built once; one that
          cannot be built here (files not present where a report is written) leaves the declared
          check alone.

        Either way the supervised arm it is compared with has not seen them.

        Args:
            plan: The spec's plan (:func:`~inpaintssl.studies.grid.expand_study`), when the caller
                has it already; expanded here otherwise.

        Example:
            >>> spec = StudySpec(study="clinical", pretrain={"data": {"unlabelled": [{"dataset": "mni152"}]}})
            >>> spec.pretraining_sees_test_anatomy()[:40]
            'pretrain.data.unlabelled holds the mni15'
            >>> StudySpec(study="clinical").pretraining_sees_test_anatomy() is None
            True
            >>> cut = StudySpec(study="clinical", finetune={"data": {"params": {"min_brain_fraction": 0.2}}})
            >>> print(cut.pretraining_sees_test_anatomy()[62:104])
            pretrain.data's train set holds 4 of the 4
        """
        from inpaintssl.data.base import unlabelled_sees_test_anatomy
        from inpaintssl.studies.grid import expand_study  # grid imports this module

        plan = expand_study(self) if plan is None else plan
        asked: dict[str, str | None] = {}
        held: dict[str, None] = {}  # what each source holds, once, in plan order
        pairs: list[tuple[PretrainConfig | FinetuneConfig, PretrainConfig | FinetuneConfig]] = []
        for job in plan.finetune_jobs():
            if job.depends_on is None:
                continue
            pretraining = plan.get(job.depends_on).config
            pairs.append((pretraining, job.config))
            for source in pretraining.data.unlabelled:
                if source.dataset != job.config.data.dataset:
                    continue
                key = json.dumps([source.dataset, source.params], sort_keys=True, default=repr)
                if key not in asked:
                    asked[key] = unlabelled_sees_test_anatomy(source.dataset, source.params)
                if asked[key]:
                    held[str(asked[key])] = None
        said = []
        if held:
            said.append(
                f"pretrain.data.unlabelled holds {' and '.join(held)}: the SSL runs pretrained on them have "
                "seen the test anatomy and the supervised baselines have not, so their comparison is not "
                "held out. Pretrain on unlabelled scans of other subjects (or leave unlabelled out, as "
                "the demo does) for a held-out comparison"
            )
        shared = StudySpec._pretraining_holds_test_items(pairs)
        if shared:
            listed = "; ".join(shared[:3]) + (f"; and {len(shared) - 3} more" if len(shared) > 3 else "")
            said.append(
                f"the SSL arm's pretraining data holds fine-tuning test images: {listed}. The SSL runs "
                "pretrained on them have seen those test images and the supervised baselines have not, so "
                "their comparison is not held out. Cut pretrain.data, its unlabelled sources and "
                "finetune.data into splits the same way (the same split parameters) for a held-out comparison"
            )
        return ". ".join(said) if said else None

    @staticmethod
    def _pretraining_holds_test_items(
        pairs: list[tuple[PretrainConfig | FinetuneConfig, PretrainConfig | FinetuneConfig]],
    ) -> list[str]:
        """What the pretraining sets of each (pretraining, fine-tuning) pair hold of its test set,
        by volume id, once per phrase (see :meth:`pretraining_sees_test_anatomy`).

        A data section that cannot be built here is left out silently: the declared check stands.
        """
        import warnings

        from inpaintssl.config import DataConfig
        from inpaintssl.data.build import DataBundle, Stage, build_datasets

        # Parameters that only choose which items of the same data go to which split (the built
        # ids show their effect); every other parameter (root, data_dir, zoom, seed, ...) locates
        # or makes the data, and sets that differ in one are not compared.
        cutting = {
            "split", "cases", "files", "annotation_version", "block_size", "min_brain_fraction", "axes",
            "num_images", "num_val", "num_test",
        }  # fmt: skip
        builds: dict[str, DataBundle | None] = {}

        def built(data: DataConfig, stage: Stage) -> DataBundle | None:
            # The test set does not depend on the label fraction or subset seed: one build serves all.
            ignored = {"label_fraction", "subset_seed"} if stage == "finetune" else set()
            key = json.dumps(
                [stage, data.model_dump(mode="json", exclude=ignored)], sort_keys=True, default=repr
            )
            if key not in builds:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        builds[key] = build_datasets(data, stage=stage, seed=0)
                except Exception:  # noqa: BLE001 - files absent here, a plugin missing: the declared check stands
                    builds[key] = None
            return builds[key]

        def located(dataset: str, params: Mapping[str, Any]) -> str:
            kept = {k: v for k, v in params.items() if k not in cutting}
            return json.dumps([dataset, kept], sort_keys=True, default=repr)

        said: dict[str, None] = {}
        for pretraining, finetuning in pairs:
            tested, trained = built(finetuning.data, "finetune"), built(pretraining.data, "pretrain")
            if tested is None or trained is None or "test" not in tested.splits.subsets:
                continue
            test = tested.splits.subsets["test"]
            test_ids = set(test.volume_ids)
            test_data = located(finetuning.data.dataset, finetuning.data.params)
            sets = [("train", "pretrain.data's train set"), ("val", "pretrain.data's val set")]
            sets += [
                (f"unlabelled/{i}", f"pretrain.data.unlabelled[{i}]")
                for i in range(len(pretraining.data.unlabelled))
            ]
            for key, where in sets:
                record = trained.splits.subsets.get(key)
                if record is None:
                    continue
                source = pretraining.data.unlabelled[int(key[11:])] if key.startswith("unlabelled/") else None
                dataset, params = (
                    (pretraining.data.dataset, pretraining.data.params)
                    if source is None
                    else (source.dataset, source.params)
                )
                if located(dataset, params) != test_data:
                    continue
                common = sorted(test_ids.intersection(record.volume_ids))
                if common:
                    examples = ", ".join(common[:5]) + (", ..." if len(common) > 5 else "")
                    said[
                        f"{where} holds {len(common)} of the {len(test_ids)} {test.dataset} test volumes of "
                        f"finetune.data ({examples})"
                    ] = None
        return list(said)

    def check_component_names(self) -> None:
        """Refuse a component name no registry here can build, in the base configs or a grid value.

        Config validation leaves these names to the registries (a plugin registers through an
        entry point, and ``status`` or ``report`` may run where it is not installed); a study
        about to train checks them first, so that a misspelt ``pretrain.pretext.task`` fails the
        command at once, naming the grid key, rather than each run that builds it.

        Raises:
            ConfigError: Naming the field (or grid key and value), the name and the registered
                names, with close matches; or, for an installed plugin that cannot be used (its
                entry point fails to import, or two distributions provide the name), the plugin,
                its distribution and why.

        Example:
            >>> spec = StudySpec(study="pretext_design", grid={"pretrain.pretext.task": ["inpaint"]})
            >>> spec.check_component_names()  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            inpaintssl.config.ConfigError: grid key 'pretrain.pretext.task', value 'inpaint': unknown ...
        """
        from inpaintssl.registry import REGISTRIES, PluginLoadError

        def resolve(kind: str, value: object, where: str) -> None:
            if value is None:
                return
            # Resolved, not only looked up in the names: an installed entry point is listed there
            # even when it fails to import or two distributions provide the name.
            try:
                REGISTRIES[kind].get(str(value))
            except KeyError as exc:
                raise ConfigError(f"{where}: {exc.args[0]}") from None
            except PluginLoadError as exc:
                raise ConfigError(f"{where}: {exc}") from exc

        for stage, base in (("pretrain", self.pretrain), ("finetune", self.finetune)):
            for field, kind in _COMPONENT_FIELDS.items():
                section, _, name = field.partition(".")
                if section not in type(base).model_fields:
                    continue
                key = f"{stage}.{field}"
                given = [(f"grid key {key!r}, value {v!r}", v) for v in self.grid.get(key, [])]
                for where, value in given or [(key, getattr(getattr(base, section), name))]:
                    resolve(kind, value, where)
        # Pretraining's unlabelled sources name datasets too (fine-tuning reads none of them).
        key = "pretrain.data.unlabelled"
        lists = [(f"grid key {key!r}, value {v!r}, ", v) for v in self.grid.get(key, [])]
        for where, sources in lists or [("", self.pretrain.data.unlabelled)]:
            for index, source in enumerate(sources or []):
                dataset = (
                    source.get("dataset") if isinstance(source, Mapping) else getattr(source, "dataset", None)
                )
                resolve("datasets", dataset, f"{where}{key}[{index}].dataset")

    def seeds_at(self, fraction: float) -> list[int]:
        """The subset seeds run at a label fraction (``fraction_seeds``, else ``subset_seeds``)."""
        return self.fraction_seeds.get(fraction, self.subset_seeds)

    @property
    def title(self) -> str:
        """The report title."""
        return self.name or self.study

    def output_dir(self) -> Path:
        """The study folder (``studies/<name or study>`` unless ``output`` is given)."""
        return self.output if self.output is not None else Path("studies") / (self.name or self.study)

    def runs_dir(self) -> Path:
        """Where each run gets its folder ``<runs_dir>/<run_id>``."""
        return self.output_dir() / "runs"

    def results_dir(self) -> Path:
        """Where remote workers write one result file per finished run (``<output>/results``)."""
        return self.output_dir() / "results"

    def database_template(self) -> Path:
        """The database file as given (``database``, else ``<output>/study.sqlite``), any ``{shard}`` kept."""
        return self.database if self.database is not None else self.output_dir() / "study.sqlite"

    def database_path(self, shard: tuple[int, int] = (0, 1)) -> Path:
        """This shard's database file (the ``{shard}`` placeholder becomes ``<i>-of-<n>``)."""
        return Path(str(self.database_template()).replace("{shard}", f"{shard[0]}-of-{shard[1]}"))

    def database_pattern(self) -> str:
        """A glob matching the database file of every shard; :meth:`is_database_file` tells them apart.

        The glob finds the candidates; its ``*`` also matches other files named like a shard's
        (``shard-0-of-2.damaged.sqlite``, ``shard-1-of-2 (copy).sqlite``), so the study's own files
        are those of its matches that :meth:`is_database_file` accepts.

        The path's own ``[``, ``*`` and ``?`` are escaped: a study in ``exp[12]`` matched no file,
        and one in ``exp[34]`` another study's ``exp3``, whose runs it then took as its own.
        """
        return glob.escape(str(self.database_template())).replace("{shard}", "[0-9]*-of-[0-9]*")

    def is_database_file(self, path: Path | str) -> bool:
        """Whether ``path`` names the database file of one of the study's shards, and nothing else.

        With a ``{shard}`` placeholder that is ``<i>-of-<n>`` in its place, digits only; the rest of
        the path as the spec gives it (as :meth:`database_pattern`'s matches spell it).

        Example:
            >>> spec = StudySpec(study="clinical", database="db/shard-{shard}.sqlite")
            >>> [spec.is_database_file(f"db/shard-{tail}") for tail in ("0-of-2.sqlite", "0-of-2.bad.sqlite")]
            [True, False]
        """
        # Why a regex after the glob: a glob's ``*`` matches anything, and fnmatch has no "digits only".
        fixed = str(self.database_template()).split("{shard}")
        return re.fullmatch("[0-9]+-of-[0-9]+".join(map(re.escape, fixed)), str(path)) is not None


# Config fields whose value names a registered component (inpaintssl.registry.REGISTRIES).
_COMPONENT_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "data.dataset": "datasets",
        "model.backbone": "backbones",
        "pretext.task": "pretext_tasks",
        "pretext.sampler": "samplers",
        "loss.name": "losses",
        "transfer.weights": "transfer_strategies",
    }
)


def _unchecked(self: ModelT) -> ModelT:
    return self


def _warn_settings_no_run_uses(configs: list[PretrainConfig | FinetuneConfig]) -> None:
    """One :class:`~inpaintssl.config.ConfigWarning` per setting that no run of its stage uses.

    The base configs are read quietly (:meth:`StudySpec._base_fields`); each run's config says
    which of its settings it leaves unused (:func:`~inpaintssl.config.unused_settings`). A setting
    counts as unused only when every run of its stage leaves it so, as a grid value can give it a
    use. Quiet under :func:`~inpaintssl.config.quiet_unused_settings`, as validation is.
    """
    for stage in (PretrainConfig, FinetuneConfig):
        common: dict[str, UnusedSetting] | None = None
        for config in configs:
            if type(config) is not stage:
                continue
            said = {str(setting): setting for setting in unused_settings(config)}
            common = said if common is None else {text: s for text, s in common.items() if text in said}
        prefix = "pretrain" if stage is PretrainConfig else "finetune"
        for setting in (common or {}).values():
            why = f"{setting.why} (in every {prefix} run)"
            UnusedSetting(f"{prefix}.{setting.field}", setting.value, why).warn()


@functools.cache
def _fields_only(config: type[ModelT]) -> type[ModelT]:
    """``config`` with its checks across fields switched off, and its sections': fields' own checks only.

    A subclass whose ``mode="after"`` model validators (the checks that compare fields, run once
    every field is valid) are replaced by no-ops; its instances are turned back into ``config``'s
    by :func:`_restored`. Pydantic builds a subclass's validators from its own namespace, so a
    plain method of the same name drops the inherited validator.
    """
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__, "__annotations__": annotations}
    for name, info in config.model_fields.items():
        if is_model_class(info.annotation):
            annotations[name] = _fields_only(info.annotation)
            namespace[name] = info  # the section's default (factory) and description
    for name, decorator in config.__pydantic_decorators__.model_validators.items():
        if decorator.info.mode == "after":
            namespace[name] = _unchecked
    return cast("type[ModelT]", type(config.__name__, (config,), namespace))


def _restored(config: type[ModelT], value: BaseModel) -> ModelT:
    """``value`` (validated by ``_fields_only(config)``) as a ``config`` with the same fields set."""
    fields: dict[str, Any] = {}
    for name, info in config.model_fields.items():
        field = getattr(value, name)
        if is_model_class(info.annotation) and isinstance(field, BaseModel):
            field = _restored(info.annotation, field)
        fields[name] = field
    return config.model_construct(_fields_set=set(value.model_fields_set), **fields)


def _fields_only_copy(config: BaseModel) -> BaseModel:
    """``config`` as a :func:`_fields_only` instance: an update to it checks the updated fields alone."""
    unchecked: BaseModel = _fields_only(type(config)).model_validate(config.model_dump())
    return unchecked


def trained_fields(config: BaseModel) -> dict[str, Any]:
    """``config``'s fields as a run trains with them: JSON values, what ``optim.recipe`` fills in filled in.

    Example:
        >>> trained_fields(FinetuneConfig())["optim"]["lr"], FinetuneConfig().optim.lr is None
        (0.01, True)
    """
    filled: dict[str, Any] = update_fields(config, recipe_filled(config)).model_dump(mode="json")
    return filled


def field_value(fields: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted field path of dumped config fields (``None`` where there is none)."""
    value: Any = fields
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _spelled(value: Any) -> str:
    """A grid value as an error names it: ``null`` as the spec writes it, others as Python shows them."""
    return "null" if value is None else repr(value)


def _second_rate_unread(base: Any, grid: Mapping[str, list[Any]]) -> str:
    """Why a grid over ``finetune.transfer.second_lr`` is one run, or ``""``.

    A study's SSL runs drop ``transfer.second_lr`` under a one-run schedule, which never reads it
    (:func:`~inpaintssl.studies.grid.expand_study`): where every schedule of the grid trains once,
    its values were one run and the plan kept one strategy of several, silently. A grid that also
    has two-run schedules is what the key is for, and one-run schedules there are not duplicated.
    """
    key = "finetune.transfer.second_lr"
    values = grid.get(key, [])
    if len(values) < 2 or not isinstance(base, FinetuneConfig):
        return ""
    schedules = grid.get("finetune.transfer.schedule", [base.transfer.schedule])
    if any(schedule in TWO_RUN_SCHEDULES for schedule in schedules):
        return ""
    listed = "[" + ", ".join(map(_spelled, values)) + "]"
    where = (
        "every finetune.transfer.schedule of the grid" if len(schedules) > 1 else "finetune.transfer.schedule"
    )
    return (
        f"grid key {key!r} holds {listed}, but {where} ({', '.join(map(repr, schedules))}) trains once "
        f"and never reads it: the values are one run; expected a two-run schedule "
        f"({' or '.join(map(repr, TWO_RUN_SCHEDULES))}) in the grid, or no grid over {key}"
    )


def _values_trained_alike(base: BaseModel, grid: Mapping[str, list[Any]]) -> str:
    """Why two values of one grid key are one run, or ``""`` when every value trains differently.

    Two values are one run when the configs they give, the other keys' values alike, train with
    the same fields once validated (``"4"`` is ``4``) and filled in by ``optim.recipe`` (``null``
    is ``0.01`` under a recipe whose rate is 0.01): the run ids are equal and the plan kept one
    of the two grid points, silently. Equal as written (``4`` and ``4.0``) is refused before.

    A value that fails its own checks is skipped here (every point it is in), and named by
    :meth:`StudySpec._consistent`.

    Args:
        base: The stage's base config, its checks across fields off (:func:`_fields_only_copy`),
            as the grid values' own checks use it.
        grid: The stage's grid keys (``pretrain.``/``finetune.`` kept) and their values.
    """
    keys = list(grid)

    def point(indices: tuple[int, ...]) -> dict[str, Any]:
        # The grid point's updates in grid order, as a run's config gets them (grid._updates).
        return {k.split(".", 1)[1]: grid[k][n] for k, n in zip(keys, indices)}

    # (key position, the other keys' value indices) -> trained fields (JSON) -> the first value's index.
    seen: dict[tuple[int, tuple[int, ...]], dict[str, int]] = {}
    # key position -> (value index, later value index) -> the later value's grid points alike.
    alike: dict[int, dict[tuple[int, int], list[tuple[int, ...]]]] = {}
    for indices in itertools.product(*(range(len(grid[k])) for k in keys)):
        try:
            trained = trained_fields(update_fields(base, point(indices)))
        except ConfigError:
            continue  # keys that overlap (a section and a field of it): the runs' own checks say why
        text = json.dumps(trained, sort_keys=True)
        for at in range(len(keys)):
            others = indices[:at] + indices[at + 1 :]
            first = seen.setdefault((at, others), {}).setdefault(text, indices[at])
            if first != indices[at]:
                alike.setdefault(at, {}).setdefault((first, indices[at]), []).append(indices)
    for at in sorted(alike):
        key = keys[at]
        stage, _, field = key.partition(".")
        total = sum(1 for position, _ in seen if position == at)
        said = []
        for (i, j), points in alike[at].items():
            a, b = grid[key][i], grid[key][j]
            # The null value's config, if one is null: the recipe may be what makes the two alike.
            nulled = list(points[0])
            nulled[at] = i if a is None else j
            config = update_fields(base, point(tuple(nulled)))
            trained = trained_fields(config)
            shown = _spelled(field_value(trained, field))
            if (a is None or b is None) and any(
                f == field or f.startswith(field + ".") for f in recipe_filled(config)
            ):
                recipe = field_value(trained, "optim.recipe")
                why = f"{shown} is what {stage}.optim.recipe {recipe!r} fills in for null"
                named = {f"{stage}.optim.recipe"}  # a grid over the recipe: named already
            else:
                why, named = f"both read as {shown}", set()
            if len(points) < total:  # alike under some of the other keys' values only: name the first
                given = [
                    f"{k}={grid[k][n]!r}"
                    for position, (k, n) in enumerate(zip(keys, points[0]))
                    if position != at and k not in named
                ]
                why += f" with {', '.join(given)}" if given else ""
            said.append(f"{_spelled(a)} and {_spelled(b)} are one run ({why})")
        listed = "[" + ", ".join(map(_spelled, grid[key])) + "]"
        return f"grid key {key!r} holds {listed}: {'; '.join(said)}; expected values that train differently"
    return ""


def _missing_field(config: BaseModel, dotted: str) -> str:
    """Why ``dotted`` names no field of ``config`` (what is there instead), or ``""`` when it does.

    Only config sections are checked: below a free-form mapping (``model.params``, ``data.params``)
    any key may be meant, and a wrong value type is left to validating the values.
    """
    node: Any = config
    walked: list[str] = []
    for part in dotted.split("."):
        if isinstance(node, BaseModel):
            fields = sorted(type(node).model_fields)
            if part not in fields:
                where = f"section {'.'.join(walked)!r}" if walked else "the top level"
                close = difflib.get_close_matches(part, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                return f"{where} has no field {part!r}{hint} (expected one of {', '.join(fields)})"
            node = getattr(node, part)
        elif isinstance(node, Mapping):
            return ""
        else:
            return f"{'.'.join(walked)!r} is a value ({node!r}), not a section with a field {part!r}"
        walked.append(part)
    return ""


def _format_errors(exc: ValidationError, where: str) -> str:
    # The spec's own validators name the value already, so their errors do not repeat it.
    return format_validation_error(
        exc,
        header=f"invalid study spec {where}:",
        root="spec",
        quiet=("extra_forbidden", "missing", "value_error"),
        model=StudySpec,
    )


def load_spec(source: StudySpec | Mapping[str, Any] | str | Path) -> StudySpec:
    """Read and validate a study spec from a model, a mapping or a YAML/JSON file.

    Raises:
        ConfigError: A missing file, a folder, a file that is not UTF-8 text, or invalid content;
            the message names the file and every bad field.

    Example:
        >>> load_spec({"study": "clinical", "label_fractions": [0.1]}).label_fractions
        [0.1]
    """
    if isinstance(source, StudySpec):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        text = read_text_file(path, what="study spec", expected="a YAML file such as study.yaml")
        data = read_config_text(text, source=f"study spec {path}")
        if not isinstance(data, dict):
            raise ConfigError(
                f"study spec {path}: expected a mapping at the top level, found {type(data).__name__}"
            )
        where = str(path)
    elif isinstance(source, Mapping):
        data, where = dict(source), "mapping"
    else:
        raise ConfigError(f"study spec must be a StudySpec, a mapping or a path; got {type(source).__name__}")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, where)) from exc
