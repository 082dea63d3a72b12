"""Expand a study spec into pretraining and fine-tuning jobs with stable ids (paper sec. 2.5-2.7).

Every grid combination resolves to a full :class:`~inpaintssl.config.PretrainConfig` and, per
label fraction and subset seed, a full :class:`~inpaintssl.config.FinetuneConfig`. A job's id is a
hash of its resolved config (plus, for fine-tuning, the id of the pretraining job it starts from),
so the same experiment has the same id in every process, on every machine and after any restart;
two grid points that resolve to one config are one job (so is 100% of the labels under several subset
seeds: it is trained with the first seed only). Fields that change where or how a run
executes but not what it computes (output folder, resume flag, device, ``torch.compile`` mode,
cuDNN autotuning, loader workers; the CPU speed settings ``run.reuse_host_memory`` and
``run.cpu_weight_gradient``, and how often ``run.checkpoint_every`` saves) leave the hash
unchanged, and so does ``transfer.second_lr`` under the ``immediate`` schedule, which never reads it.
A value written out at what ``optim.recipe`` fills in (``optim.lr: 0.01`` under the ``budget``
recipe) is hashed as left to the recipe: the same run whichever way the spec says it, so a grid
key may not hold both (nor ``"4"`` and ``4``): :class:`~inpaintssl.studies.spec.StudySpec` refuses
values of one key that would be one run, naming both.

Every SSL fine-tuning job is compared with a supervised baseline trained the same way
(sec. 2.5.3; docs/studies.rst). A baseline takes the SSL job's label fraction, subset seed and
every ``finetune.*`` grid value outside ``transfer.*`` (learning rate, recipe, loss, budget, early
stopping, model, run seed, ...), so one baseline is trained per distinct combination of those
values. The transfer settings say how pretrained weights enter, which a model trained from
scratch has none of, with one exception: the two-run schedules (``immediate_twice``,
``freeze_then_unfreeze``) train twice, each run with its own early-stopping window, the second
from the first's best weights at ``transfer.second_lr``. Their baseline trains that same
two-phase schedule from scratch (``immediate_twice``: both phases train every weight, as nothing
is transferred to freeze), at the same first and second learning rates, so both arms get the same
phases, the same budget per phase and the same early stopping in each. Grid points that differ
in transfer settings alone share one baseline when they train once, or twice at the same second
learning rate. Each fine-tuning job's ``baseline_id`` label names its baseline's run id (a
baseline names itself; ``None`` with ``baseline: false``) and ``budget_epochs`` its epochs over
all its runs, so the analysis pairs each SSL result with its own baseline. A baseline that
computes exactly what the base fine-tuning config computes keeps that config and its id, so the
baseline of a study run before baselines followed the grid is not trained again.

Every SSL fine-tuning job depends on exactly one pretraining job, shared by all fine-tuning jobs
that need that pretrained model: a pretext-design grid of 16 strategies x 5 label fractions trains
16 pretraining models, not 80. :meth:`StudyPlan.shard` splits the jobs so that a pretraining job
and all its dependants land in the same shard; shards never wait for each other.

Example:
    >>> from inpaintssl.studies.spec import StudySpec
    >>> spec = StudySpec(study="pretext_design", label_fractions=[0.5, 0.1],
    ...                  grid={"pretrain.pretext.patch_size": [16, 32]})
    >>> plan = expand_study(spec)
    >>> len(plan.pretrain_jobs()), len(plan.finetune_jobs())   # 2 pretrained models, 4 SSL + 2 baseline
    (2, 6)
    >>> sorted({j.labels["strategy"] for j in plan.finetune_jobs()})
    ['context_restoration 16x16 poisson_disc', 'context_restoration 32x32 poisson_disc', 'supervised']

    Each SSL run with the baseline it is compared with: same learning rates, same phases.

    >>> grid = {"finetune.optim.lr": [1e-2, 1e-3],
    ...         "finetune.transfer.schedule": ["immediate", "immediate_twice"]}
    >>> plan = expand_study(StudySpec(study="transfer_design", label_fractions=[0.1], grid=grid))
    >>> for job in plan.finetune_jobs()[4:]:
    ...     print(job.labels["strategy"], "->", plan.baseline_of(job).labels["strategy"])
    FEF lr=0.01 -> supervised lr=0.01
    FES lr=0.01/0.001 -> supervised lr=0.01 second_lr=0.001
    FEF lr=0.001 -> supervised lr=0.001
    FES lr=0.001/0.0001 -> supervised lr=0.001 second_lr=0.0001
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from inpaintssl.config import (
    DATA_READING_FIELDS,
    TWO_RUN_SCHEDULES,
    ConfigError,
    FinetuneConfig,
    PretrainConfig,
    TransferConfig,
    format_validation_error,
    update_fields,
)
from inpaintssl.studies.spec import StudySpec, field_value, trained_fields

__all__ = [
    "Job",
    "JobKind",
    "StudyPlan",
    "expand_study",
    "parse_shard",
    "run_id",
    "transfer_acronym",
]

JobKind = Literal["pretrain", "finetune"]
ModelT = TypeVar("ModelT", bound=BaseModel)

# (section, field) pairs that say where/how a run executes, not what it computes.
_RUNTIME_FIELDS = (
    ("run", "output_dir"),
    ("run", "resume"),
    ("run", "quiet"),
    ("run", "device"),
    ("run", "compile"),
    ("run", "cudnn_benchmark"),
    *(("data", name) for name in DATA_READING_FIELDS),
    ("transfer", "pretrained"),
)


# Settings of how fast a run executes, not what it computes, that were in the hash before
# that was noticed: hashed at their defaults whatever they are set to, so that switching one on
# keeps a study's run ids, and the ids earlier releases computed stay (popping them would not).
_HASHED_AT_DEFAULT = (
    ("run", "reuse_host_memory"),
    ("run", "cpu_weight_gradient"),
    ("run", "checkpoint_every"),
)


def _recipe_given(config: PretrainConfig | FinetuneConfig) -> dict[str, None]:
    """The fields given explicitly at the value ``optim.recipe`` fills in when they are ``None``,
    each mapped to ``None`` (the fields of :func:`~inpaintssl.config.recipe_filled`).

    ``optim.lr: 0.01`` under a recipe whose rate is 0.01 trains exactly as ``optim.lr: null``.

    Example:
        >>> _recipe_given(update_fields(FinetuneConfig(), {"optim.lr": 0.01, "loss.name": "dice_ce"}))
        {'optim.lr': None, 'loss.name': None}
        >>> _recipe_given(update_fields(FinetuneConfig(), {"optim.lr": 0.001}))
        {}
    """
    optim, recipe = config.optim, config.optim.defaults
    given: dict[str, None] = {}
    if optim.lr is not None and optim.lr == recipe.lr:
        given["optim.lr"] = None
    if optim.betas is not None and tuple(optim.betas) == tuple(recipe.betas):
        given["optim.betas"] = None
    if optim.schedule is not None and optim.schedule == recipe.schedule:
        given["optim.schedule"] = None
    # Under a null name the recipe's loss parameters come first and the given ones over them.
    if (
        isinstance(config, FinetuneConfig)
        and config.loss.name == recipe.loss
        and {**recipe.loss_params, **config.loss.params} == config.loss.params
    ):
        given["loss.name"] = None
    return given


def _canonical(config: PretrainConfig | FinetuneConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    # Null, as a config that leaves them to the recipe has them: that config's ids stay as they were.
    for dotted in _recipe_given(config):
        section, name = dotted.split(".")
        data[section][name] = None
    for section, name in _RUNTIME_FIELDS:
        if section in data:
            data[section].pop(name, None)
    for section, name in _HASHED_AT_DEFAULT:
        data[section][name] = type(getattr(config, section)).model_fields[name].default
    return data


def run_id(kind: JobKind, config: PretrainConfig | FinetuneConfig, *, depends_on: str | None = None) -> str:
    """Stable id of a run: ``pt-``/``ft-`` + 16 hex digits of SHA-256 over the resolved config.

    Args:
        kind: ``pretrain`` or ``finetune``.
        config: The resolved config; runtime-only fields (see the module docstring) are ignored,
            and a value given explicitly at what ``optim.recipe`` fills in (``optim.lr``,
            ``optim.betas``, ``optim.schedule``, ``loss.name``) hashes as ``None``, as the same
            config leaving it to the recipe does.
        depends_on: Id of the pretraining run a fine-tuning run starts from.

    Example:
        >>> from inpaintssl.config import PretrainConfig
        >>> a = run_id("pretrain", PretrainConfig())
        >>> a == run_id("pretrain", update_fields(PretrainConfig(), {"run.output_dir": "elsewhere"}))
        True
        >>> a == run_id("pretrain", update_fields(PretrainConfig(), {"pretext.patch_size": 16}))
        False
        >>> a == run_id("pretrain", update_fields(PretrainConfig(), {"optim.lr": 0.01}))  # the recipe's
        True
    """
    payload = {"kind": kind, "config": _canonical(config), "depends_on": depends_on}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{'pt' if kind == 'pretrain' else 'ft'}-{digest[:16]}"


def transfer_acronym(weights: str, schedule: str) -> str:
    """Figure A1's model name for a transfer strategy (paper Appendix B).

    ``A B C``: A is ``F`` (fine-tuned immediately) or ``FF`` (frozen first); B is ``E`` (encoder
    weights) or ``B`` (encoder and decoder); C is ``F`` (one training run) or ``S`` (a second
    run). The schedules map as ``immediate`` = ``F?F``, ``immediate_twice`` = ``F?S``,
    ``frozen`` = ``FF?F`` and ``freeze_then_unfreeze`` = ``FF?S``.

    Example:
        >>> transfer_acronym("encoder", "immediate")
        'FEF'
        >>> transfer_acronym("encoder_decoder", "freeze_then_unfreeze")
        'FFBS'
        >>> transfer_acronym("encoder", "frozen"), transfer_acronym("encoder", "immediate_twice")
        ('FFEF', 'FES')
    """
    part = {"encoder": "E", "encoder_decoder": "B"}.get(weights, f"[{weights}]")
    first = "F" if schedule.startswith("immediate") else "FF"
    return f"{first}{part}{'S' if schedule in TWO_RUN_SCHEDULES else 'F'}"


@dataclass(frozen=True, eq=False)
class Job:
    """One run of a study.

    Attributes:
        id: Stable run id (:func:`run_id`).
        kind: ``pretrain`` or ``finetune``.
        config: The resolved config; ``run.output_dir`` is the run's folder and, for SSL
            fine-tuning, ``transfer.pretrained`` is the pretraining run's folder.
        labels: The factors of this run for tables and figures (``arm``, ``strategy``,
            ``label_fraction``, ``task``, ``patch_size``, ``sampler``, ...), JSON-serialisable.
            Fine-tuning jobs also have ``baseline_id`` (the run id of the supervised baseline
            they are compared with; a baseline's own id; ``None`` when the study trains no
            baseline) and ``budget_epochs`` (epochs over all the job's training runs).
        depends_on: Id of the pretraining job an SSL fine-tuning job needs.
    """

    id: str
    kind: JobKind
    config: PretrainConfig | FinetuneConfig
    labels: Mapping[str, Any] = field(default_factory=dict)
    depends_on: str | None = None

    @property
    def group(self) -> str:
        """The pretraining job this job belongs with (itself for pretraining and baselines)."""
        return self.depends_on or self.id


@dataclass(frozen=True)
class StudyPlan:
    """The jobs of a study, each pretraining job before the fine-tuning jobs that need it."""

    jobs: tuple[Job, ...]

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def get(self, job_id: str) -> Job:
        """The job with this id.

        Raises:
            KeyError: No such job in the plan.
        """
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(f"run id {job_id!r} is not part of this study plan ({len(self.jobs)} jobs)")

    def pretrain_jobs(self) -> list[Job]:
        """The pretraining jobs."""
        return [j for j in self.jobs if j.kind == "pretrain"]

    def finetune_jobs(self) -> list[Job]:
        """The fine-tuning jobs (SSL and baseline)."""
        return [j for j in self.jobs if j.kind == "finetune"]

    def baseline_of(self, job: Job) -> Job | None:
        """The supervised baseline a fine-tuning job is compared with (itself for a baseline).

        ``None`` for pretraining jobs and when the study trains no baseline.

        Raises:
            KeyError: The baseline is not part of this plan (a shard that holds another part).
        """
        baseline_id = job.labels.get("baseline_id")
        return None if baseline_id is None else self.get(str(baseline_id))

    def dependants(self, pretrain_id: str) -> list[Job]:
        """Fine-tuning jobs that start from the pretraining job ``pretrain_id``."""
        return [j for j in self.jobs if j.depends_on == pretrain_id]

    def shard(self, index: int, count: int) -> StudyPlan:
        """The jobs of shard ``index`` of ``count``: whole groups, balanced by job count.

        Groups (a pretraining job with its dependants; a baseline alone) are assigned largest
        first to the least loaded shard, ties to the lowest index, so every process computes the
        same split from the same spec.

        Raises:
            ValueError: ``index`` is not in ``[0, count)``.
        """
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {index}/{count} is invalid; expected 0 <= i < n")
        sizes: dict[str, int] = {}
        for job in self.jobs:
            sizes[job.group] = sizes.get(job.group, 0) + 1
        order = sorted(sizes, key=lambda g: -sizes[g])  # stable: ties keep plan order
        loads = [0] * count
        owner: dict[str, int] = {}
        for group in order:
            target = min(range(count), key=lambda s: (loads[s], s))
            owner[group] = target
            loads[target] += sizes[group]
        return StudyPlan(tuple(j for j in self.jobs if owner[j.group] == index))


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0-based shard ``i`` of ``n``).

    Raises:
        ValueError: Not two integers with ``0 <= i < n``.
        TypeError: ``text`` is no string (a shard given as ``(3, 8)`` goes to ``run_study``'s
            ``shard`` as it is).

    Example:
        >>> parse_shard("3/8")
        (3, 8)
    """
    if not isinstance(text, str):
        # 3 failed as "'int' object has no attribute 'partition'".
        raise TypeError(
            f"shard {text!r} is of type {type(text).__name__}; expected the text 'i/n', e.g. '0/4'"
        )
    head, sep, tail = text.partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index, count = -1, 0
    if not sep or count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r} is invalid; expected 'i/n' with 0 <= i < n, e.g. '0/4'")
    return index, count


def _combinations(grid: Mapping[str, Sequence[Any]], stage: str) -> list[dict[str, Any]]:
    keys = [k for k in grid if k.startswith(f"{stage}.")]
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _updates(combo: Mapping[str, Any]) -> dict[str, Any]:
    """Grid values keyed by their field path inside the stage's config (``pretrain.`` dropped)."""
    return {key.split(".", 1)[1]: value for key, value in combo.items()}


def _grid_values(combo: Mapping[str, Any], stage: str) -> str:
    """A run's grid values, as an error names the run."""
    if not combo:
        return f"no {stage}.* grid value (the base {stage} config as given)"
    return "grid values " + ", ".join(f"{key}={value!r}" for key, value in combo.items())


def _run_config(base: ModelT, updates: Mapping[str, Any], *, run: str, stage: str) -> ModelT:
    """``base`` with ``updates``, validated whole; a failure names ``run`` and every problem.

    The spec's base configs are checked field by field only (:class:`StudySpec`): how their
    fields go together is checked here, on each config a run trains with.
    """
    try:
        return update_fields(base, updates)
    except ConfigError as exc:
        cause = exc.__cause__
        if not isinstance(cause, ValidationError):
            raise ConfigError(f"{run} is not valid: {exc}") from None
        lines = format_validation_error(cause, header="", root=stage, model=type(base)).splitlines()[1:]
        raise ConfigError(f"{run} is not valid: {'; '.join(line.strip() for line in lines)}") from None


def _with_unlabelled_fraction(config: PretrainConfig, fraction: float) -> PretrainConfig:
    sources = (
        [] if fraction == 0 else [s.model_copy(update={"fraction": fraction}) for s in config.data.unlabelled]
    )
    return update_fields(config, {"data.unlabelled": sources})


# Beyond this many decimals of a percent two planned fractions are named by their full repr.
_FRACTION_DECIMALS = 8
_PRETEXT_KEYS = ("pretrain.pretext.task", "pretrain.pretext.patch_size", "pretrain.pretext.sampler")
_TRANSFER_PREFIX = "finetune.transfer."
_TRANSFER_KEYS = (
    "finetune.transfer.weights",
    "finetune.transfer.schedule",
    "finetune.optim.lr",
    "finetune.transfer.second_lr",
)


def _fraction_name(fraction: float, planned: Sequence[float]) -> str:
    """``fraction`` in percent with the fewest decimals that keep every ``planned`` fraction apart.

    Whole percents while no two planned fractions round alike, so the names studies always had
    stay; ``0.12`` and ``0.125`` (both ``12%``) are named ``12.0%`` and ``12.5%``.

    Example:
        >>> _fraction_name(0.125, [0, 0.125, 0.375]), _fraction_name(0.125, [0.12, 0.125])
        ('12%', '12.5%')
    """
    numbers = sorted({float(f) for f in planned} | {float(fraction)})
    for decimals in range(_FRACTION_DECIMALS):
        if len({format(f, f".{decimals}%") for f in numbers}) == len(numbers):
            return format(fraction, f".{decimals}%")
    return f"{100 * fraction!r}%"


def _strategy(spec: StudySpec, labels: Mapping[str, Any], combo: Mapping[str, Any]) -> str:
    """A readable name that tells the study's strategies apart; other grid values are appended."""
    encoded: tuple[str, ...] = ()
    if spec.study == "transfer_design" and labels["arm"] == "ssl":
        name = f"{labels['acronym']} lr={labels['lr']:g}"
        if labels["second_lr"] is not None:
            name += f"/{labels['second_lr']:g}"
        encoded = _TRANSFER_KEYS
    elif spec.study == "data_scaling":
        name = f"+{_fraction_name(labels['unlabelled_fraction'], spec.unlabelled_fractions or [])} unlabelled"
    elif spec.study == "clinical" and labels["arm"] == "ssl":
        name = "ssl"
    elif spec.study == "demo" and labels["arm"] == "ssl":
        name = str(labels["task"])
    else:
        k = labels["patch_size"]
        name = f"{labels['task']} {k}x{k} {labels['sampler']}"
        encoded = _PRETEXT_KEYS
    tail = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in combo.items() if key not in encoded]
    return " ".join([name, *tail])


def _pretrain_labels(spec: StudySpec, cfg: PretrainConfig, fraction: float | None) -> dict[str, Any]:
    return {
        "study": spec.study,
        "arm": "pretrain",
        "task": cfg.pretext.task,
        "patch_size": cfg.pretext.patch_size,
        "sampler": cfg.pretext.sampler,
        "unlabelled_fraction": fraction,
    }


def _subsets(spec: StudySpec) -> list[tuple[float, int]]:
    """``(label fraction, subset seed)`` pairs; all labels (1.0) are one set whatever the seed: once."""
    return [
        (f, s) for f in spec.label_fractions for s in spec.seeds_at(f) if f < 1.0 or s == spec.seeds_at(f)[0]
    ]


def _subset(fraction: float, seed: int) -> dict[str, Any]:
    return {"data.label_fraction": fraction, "data.subset_seed": seed}


def _placed(config: ModelT, field: str, path: Path) -> ModelT:
    return update_fields(config, {field: path})


def _folder(spec: StudySpec, job_id: str, labels: Mapping[str, Any]) -> Path:
    """A run's folder: its id, or for the demo a readable name (``pretrain``, ``ssl_5pct_seed0``).

    A readable name leaves out grid values and rounds the label fraction, so several runs of a demo
    study can get one; :func:`_distinct_folders` then gives each its own.
    """
    if spec.study != "demo":
        return spec.runs_dir() / job_id
    if labels["arm"] == "pretrain":
        return spec.runs_dir() / "pretrain"
    return (
        spec.runs_dir()
        / f"{labels['arm']}_{round(100 * labels['label_fraction'])}pct_seed{labels['subset_seed']}"
    )


def _value_at(config: FinetuneConfig, dotted: str) -> Any:
    """The value a config trains with at a dotted field path (recipe defaults filled in)."""
    return field_value(trained_fields(config), dotted)


def _run_count(config: FinetuneConfig) -> int:
    """Training runs of a fine-tuning schedule: two for ``??S``, each of the full budget."""
    return 2 if config.transfer.schedule in TWO_RUN_SCHEDULES else 1


def _second_lr(config: FinetuneConfig) -> float | None:
    """The initial learning rate of a config's second run; ``None`` for a one-run schedule."""
    if config.transfer.schedule not in TWO_RUN_SCHEDULES:
        return None
    second = config.transfer.second_lr
    # The engine's default (training.finetuning.phases_for).
    return config.optim.effective_lr / 10 if second is None else second


def _ssl_config(spec: StudySpec, combo: Mapping[str, Any], pretrained: Path) -> FinetuneConfig:
    """The fine-tuning config of an SSL run at a grid point (label fraction and seed not yet set).

    ``transfer.second_lr`` is dropped under a one-run schedule, which never reads it: a base value
    that only the two-run schedules use is checked against ``optim.min_lr`` in those runs alone.
    """
    updates = {"transfer.pretrained": pretrained, **_updates(combo)}
    schedule = updates.get("transfer.schedule", spec.finetune.transfer.schedule)
    if schedule not in TWO_RUN_SCHEDULES:
        updates["transfer.second_lr"] = None
    run = f"the SSL fine-tuning run with {_grid_values(combo, 'finetune')}"
    return _run_config(spec.finetune, updates, run=run, stage="finetune")


def _baseline_settings(spec: StudySpec, combo: Mapping[str, Any]) -> tuple[dict[str, Any], float | None]:
    """A grid point's non-transfer grid values and its second run's rate (``None``: one run)."""
    shared = {k: v for k, v in combo.items() if not k.startswith(_TRANSFER_PREFIX)}
    # The SSL run's schedule; a placeholder lets the freezing schedules validate (as in the spec).
    return shared, _second_lr(_ssl_config(spec, combo, Path("pretrained")))


def _baseline_transfer(second_lr: float | None) -> TransferConfig:
    """A baseline's transfer section: nothing transferred, trained once, or twice from scratch.

    A two-run schedule trained from scratch is ``immediate_twice`` whichever the SSL run's:
    ``freeze_then_unfreeze`` freezes the transferred parts in its first phase, and a model trained
    from scratch has none, so both of its phases train every weight (a freezing schedule without
    pretrained weights is refused by the config).
    """
    if second_lr is None:
        return TransferConfig()
    return TransferConfig(schedule="immediate_twice", second_lr=second_lr)


def _baseline_job(
    spec: StudySpec, shared: Mapping[str, Any], second_lr: float | None, fraction: float, seed: int
) -> Job:
    """The supervised run that SSL runs with these settings are compared with (module docstring).

    Args:
        spec: The study.
        shared: The SSL runs' non-transfer grid values (``finetune.`` keys); the transfer section
            is reset (no weights).
        second_lr: The initial learning rate of the SSL runs' second run, ``None`` when their
            schedule trains once. With one, the baseline trains the same two phases from scratch
            (``immediate_twice`` at ``optim.lr`` and then ``second_lr``, each phase with its own
            ``optim.max_epochs`` and early stopping), so both arms train alike.
        fraction: Label fraction.
        seed: Subset seed.

    A baseline that computes what the base config computes keeps the base config itself, so its
    id is the one the single baseline of earlier releases had and a resumed study reuses that run.
    """
    reset = {"transfer": TransferConfig(), **_subset(fraction, seed)}
    run = f"the supervised baseline of {_grid_values(shared, 'finetune')}"
    cfg = _run_config(
        spec.finetune,
        {**_updates(shared), **reset, "transfer": _baseline_transfer(second_lr)},
        run=run,
        stage="finetune",
    )
    try:
        base: FinetuneConfig | None = update_fields(spec.finetune, reset)
    except ConfigError:
        base = None  # a base value every grid point replaces: this baseline computes something else
    # Compared in canonical form, where a value written out at the recipe's is the recipe's: one
    # that computes what the old single baseline computed is that run.
    if base is not None and _canonical(cfg) == _canonical(base):
        cfg = base
    job_id = run_id("finetune", cfg)
    # Named by what it trains with, so two grid points that share a baseline give it one name.
    tail = [f"{key.rsplit('.', 1)[-1]}={_value_at(cfg, key.split('.', 1)[1])}" for key in shared]
    if second_lr is not None:
        tail.append(f"second_lr={second_lr:g}")
    labels: dict[str, Any] = {
        "study": spec.study,
        "arm": "supervised",
        "strategy": " ".join(["supervised", *tail]),
        "lr": cfg.optim.effective_lr,
        "budget_epochs": _run_count(cfg) * cfg.optim.max_epochs,
        "label_fraction": fraction,
        "subset_seed": seed,
        "baseline_id": job_id,
    }
    labels.update(
        {k: _value_at(cfg, k.split(".", 1)[1]) for k in shared if k not in _PRETEXT_KEYS + _TRANSFER_KEYS}
    )
    cfg = _placed(cfg, "run.output_dir", _folder(spec, job_id, labels))
    return Job(job_id, "finetune", cfg, labels)


# (grid point index, label fraction, subset seed) -> the supervised run paired with it.
_Baselines = Mapping[tuple[int, float, int], Job]


def _ssl_jobs(
    spec: StudySpec,
    pre: Job,
    pre_combo: Mapping[str, Any],
    combos: Sequence[Mapping[str, Any]],
    baselines: _Baselines,
) -> Iterator[Job]:
    for index, combo in enumerate(combos):
        ssl = _ssl_config(spec, combo, pre.config.run.output_dir)
        for fraction, seed in _subsets(spec):
            cfg = update_fields(ssl, _subset(fraction, seed))
            job_id = run_id("finetune", cfg, depends_on=pre.id)
            subset = {"arm": "ssl", "label_fraction": fraction, "subset_seed": seed}
            cfg = _placed(cfg, "run.output_dir", _folder(spec, job_id, subset))
            baseline = baselines.get((index, fraction, seed))
            labels: dict[str, Any] = {
                **pre.labels,
                "arm": "ssl",
                "weights": cfg.transfer.weights,
                "schedule": cfg.transfer.schedule,
                "acronym": transfer_acronym(cfg.transfer.weights, cfg.transfer.schedule),
                "lr": cfg.optim.effective_lr,
                "second_lr": _second_lr(cfg),
                "budget_epochs": _run_count(cfg) * cfg.optim.max_epochs,
                "label_fraction": fraction,
                "subset_seed": seed,
                "baseline_id": None if baseline is None else baseline.id,
            }
            both = {**pre_combo, **combo}
            labels.update({k: v for k, v in both.items() if k not in _PRETEXT_KEYS + _TRANSFER_KEYS})
            labels["strategy"] = _strategy(spec, labels, both)
            yield Job(job_id, "finetune", cfg, labels, depends_on=pre.id)


def _distinct_folders(spec: StudySpec, jobs: Sequence[Job]) -> tuple[Job, ...]:
    """``jobs`` with a folder of its own each: a demo's readable name can be several runs'.

    Of the runs that would share a name, the one that the spec without its grid has there keeps it
    (so a demo study that a grid was added to finds its runs, and its pretrained weights, where
    they are); each of the others gets its run id appended (``ssl_5pct_seed0_ft-0123...``), as do
    all of them when no single run of the grid-less spec has the name (label fractions that round
    to one percentage). In a shared folder a later run resumed an earlier one's finished run and was
    recorded with its results. Fine-tuning runs follow their pretraining run's folder.
    """
    sharing: dict[Path, set[str]] = {}
    for job in jobs:
        sharing.setdefault(job.config.run.output_dir, set()).add(job.id)
    shared = {folder for folder, ids in sharing.items() if len(ids) > 1}
    if not shared:
        return tuple(jobs)
    keeper: dict[Path, set[str]] = {}
    if spec.grid:
        try:
            for job in _jobs(spec.model_copy(update={"grid": {}})):
                keeper.setdefault(job.config.run.output_dir, set()).add(job.id)
        except ConfigError:
            pass  # a base config that every grid point changes is no run: no run keeps its name
    moved = {
        job.id: job.config.run.output_dir.with_name(f"{job.config.run.output_dir.name}_{job.id}")
        for job in jobs
        if job.config.run.output_dir in shared and keeper.get(job.config.run.output_dir) != {job.id}
    }
    placed: list[Job] = []
    for job in jobs:
        cfg = job.config
        if job.id in moved:
            cfg = _placed(cfg, "run.output_dir", moved[job.id])
        if job.depends_on in moved:
            cfg = _placed(cfg, "transfer.pretrained", moved[job.depends_on])
        placed.append(dataclasses.replace(job, config=cfg))
    return tuple(placed)


def expand_study(spec: StudySpec) -> StudyPlan:
    """All jobs of a study: baselines first, then each pretraining job followed by its dependants.

    Every job has a folder of its own (:func:`_distinct_folders`).

    Args:
        spec: A validated study spec.

    Returns:
        The plan; job order is deterministic (grid order, then label fraction, then seed).
    """
    return StudyPlan(_distinct_folders(spec, _jobs(spec)))


def _jobs(spec: StudySpec) -> tuple[Job, ...]:
    """The jobs of :func:`expand_study`, each in the folder :func:`_folder` names."""
    jobs: dict[str, Job] = {}
    combos = _combinations(spec.grid, "finetune")
    baselines: dict[tuple[int, float, int], Job] = {}
    if spec.baseline:
        # Grid points that differ in transfer settings alone (a second run's rate aside) share one
        # baseline run (built once).
        built: dict[tuple[str, float | None, float, int], Job] = {}
        for index, combo in enumerate(combos):
            shared, second_lr = _baseline_settings(spec, combo)
            key = json.dumps(shared, sort_keys=True, default=repr)
            for labelled, seed in _subsets(spec):
                if (key, second_lr, labelled, seed) not in built:
                    job = _baseline_job(spec, shared, second_lr, labelled, seed)
                    built[(key, second_lr, labelled, seed)] = jobs.setdefault(job.id, job)
                baselines[(index, labelled, seed)] = built[(key, second_lr, labelled, seed)]
    fractions: Sequence[float | None] = spec.unlabelled_fractions or [None]
    for pre_combo in _combinations(spec.grid, "pretrain"):
        run = f"the pretraining run with {_grid_values(pre_combo, 'pretrain')}"
        for fraction in fractions:
            cfg = _run_config(spec.pretrain, _updates(pre_combo), run=run, stage="pretrain")
            if fraction is not None:
                cfg = _with_unlabelled_fraction(cfg, fraction)
            pre_id = run_id("pretrain", cfg)
            labels = _pretrain_labels(spec, cfg, fraction)
            cfg = _placed(cfg, "run.output_dir", _folder(spec, pre_id, labels))
            labels.update({k: v for k, v in pre_combo.items() if k not in _PRETEXT_KEYS})
            labels["strategy"] = _strategy(spec, labels, pre_combo)
            pre = Job(pre_id, "pretrain", cfg, labels)
            jobs.setdefault(pre.id, pre)
            for job in _ssl_jobs(spec, pre, pre_combo, combos, baselines):
                jobs.setdefault(job.id, job)
    return tuple(jobs.values())
