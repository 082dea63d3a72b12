"""What a demo study's recorded spec and a new one differ in (sec. 2.5, the demo of the README).

A demo study names its run folders by arm, label fraction and seed (``ssl_50pct_seed0``), not by
run id: a demo spec whose settings changed finds the earlier runs' folders, and each of its runs
would fail to resume there. The study runner records the spec it ran (``spec.json`` beside the
database); both ``inpaintssl demo`` and ``inpaintssl experiment run`` compare a new spec with it
before anything trains, and refuse one that differs in what the runs train with.

Example:
    >>> from inpaintssl.studies.spec import StudySpec
    >>> before = StudySpec(study="demo", pretrain={"run": {"seed": 0}}, finetune={"run": {"seed": 0}})
    >>> now = StudySpec(study="demo", pretrain={"run": {"seed": 1}}, finetune={"run": {"seed": 1}})
    >>> setting_differences(before, now)
    ['run.seed (recorded 0, now 1)']
"""

from __future__ import annotations

from pathlib import Path

from inpaintssl.config import ConfigError, quiet_unused_settings
from inpaintssl.studies.spec import StudySpec
from inpaintssl.training.run_folder import (
    RESUMABLE_CHANGES,
    changed_fields,
    described_differences,
    trained_differently,
)

__all__ = [
    "NOT_SETTINGS",
    "check_same_demo_settings",
    "recorded_demo_spec",
    "setting_differences",
    "shown_differences",
]

NOT_SETTINGS = (
    # Where the demo's folder is and how the runner schedules its runs: a moved folder, or another
    # default of the runner, changes no run.
    "name",
    "output",
    "database",
    "target_dice",
    "max_attempts",
    "heartbeat_s",
    "stale_after_s",
    "executor",
    # What a run folder lets a resume change (where and how it runs, how it reads the data), but
    # not the budget: each demo run's schedule is laid over it, and a resume refuses a new one.
    *(
        f"{stage}.{name}"
        for stage in ("pretrain", "finetune")
        for name in RESUMABLE_CHANGES
        if name != "optim.max_epochs"
    ),
)
"""Fields of a demo's spec that two demos sharing one folder may differ in."""

_SHOWN_DIFFERENCES = 3


def recorded_demo_spec(path: Path) -> StudySpec | None:
    """The demo spec an earlier run of the runner recorded at ``path`` (``None``: none, or unreadable).

    An unreadable record (torn, from a version whose fields no longer validate) refuses nothing
    here: each run folder still checks its own ``config.yaml`` when it resumes.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:  # none yet (a new folder), or unreadable
        return None
    try:
        with quiet_unused_settings():  # judged when that demo started; once is enough
            return StudySpec.model_validate_json(text)
    except ValueError:  # pydantic's ValidationError is one
        return None


def setting_differences(before: StudySpec, now: StudySpec) -> list[str]:
    """``field (recorded X, now Y)`` for each setting that differs between two demo specs.

    A field that differs the same way in both stages (``model.params.depth``, ``run.seed``) is named
    once, without its stage.
    """
    keys = changed_fields(before, now, ignore=NOT_SETTINGS)
    for stage in ("pretrain", "finetune"):
        # A value written out at what optim.recipe fills in trains, and resumes, as null does.
        prefix = f"{stage}."
        given = [key.removeprefix(prefix) for key in keys if key.startswith(prefix)]
        differ = trained_differently(getattr(before, stage), getattr(now, stage), given)
        keys = [key for key in keys if not key.startswith(prefix) or key.removeprefix(prefix) in differ]
    items = [described_differences(before, now, [key]) for key in keys]
    named: list[str] = []
    for item in items:
        stage, _, rest = item.partition(".")
        both = stage in ("pretrain", "finetune") and {f"pretrain.{rest}", f"finetune.{rest}"} <= set(items)
        shown = rest if both else item
        if shown not in named:
            named.append(shown)
    return named


def shown_differences(differences: list[str]) -> str:
    """The first few of ``differences`` for a message, and how many more there are."""
    shown = ", ".join(differences[:_SHOWN_DIFFERENCES])
    if len(differences) > _SHOWN_DIFFERENCES:
        shown += f" and {len(differences) - _SHOWN_DIFFERENCES} more"
    return shown


def check_same_demo_settings(spec: StudySpec, record: Path) -> None:
    """Refuse a demo study spec whose settings differ from the one recorded at ``record``.

    Raises:
        inpaintssl.config.ConfigError: Naming the study folder, the record and the settings that
            differ, and what to do.
    """
    recorded = recorded_demo_spec(record)
    differences = [] if recorded is None else setting_differences(recorded, spec)
    if differences:
        output = spec.output_dir()
        raise ConfigError(
            f"{output} holds a demo study run with other settings ({record}): "
            f"{shown_differences(differences)}; a demo study names its run folders by arm, label "
            "fraction and seed, so these runs would find the earlier runs' folders and could not "
            f"resume there: give the spec another output, or delete {output} to start over"
        )
