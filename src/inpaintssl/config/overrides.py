"""Changing a validated config: dotted ``key=value`` overrides (YAML values) and typed field updates.

Both dump the config, set the values at their dotted paths and validate the result again, so an
override meets every check a config file does.

A mapping given for a config section (a field whose type is a config model, such as ``optim`` or
``data``) is merged into the section, recursively, as a config file's keys are: ``optim={lr:
1e-5}`` changes the learning rate and keeps every other ``optim`` field the config had. A mapping
given for a free-form ``dict`` field (``data.params``, ``model.params``, ``pretext.params``,
``loss.params``) replaces it: those are one value, the keyword arguments of a dataset, backbone,
task or loss factory (a plugin's), whose keys the config cannot check, and a key kept from the
old value would be passed to a factory that may not take it, or may mean something else by it.
A list (``data.unlabelled``) and ``null`` replace too. Set one key of a free-form field with its
dotted path instead (``data.params.root=/data``).

Example:
    >>> from inpaintssl.config import PretrainConfig
    >>> apply_overrides(PretrainConfig(), ["optim.lr=1e-4", "data.image_size=[64, 64]"]).data.image_size
    (64, 64)
"""

from __future__ import annotations

import contextlib
import copy
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from inpaintssl.config.errors import ConfigError, _members, format_config_error, is_model_class
from inpaintssl.config.unused import quiet_unused_settings
from inpaintssl.config.yaml_loader import ConfigYamlLoader

__all__ = [
    "ModelT",
    "apply_overrides",
    "check_override_list",
    "override_fields",
    "parse_override",
    "update_fields",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_override(item: str) -> tuple[str, Any]:
    """The dotted field path and the YAML value of an override ``key=value``.

    Raises:
        ConfigError: Not ``key=value``, an empty name in the path, or a value that is no YAML.

    Example:
        >>> parse_override("run={output_dir: runs/a}")
        ('run', {'output_dir': 'runs/a'})
    """
    path, value = _parse_override(item)
    return ".".join(path), value


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like 'section.field=value'")
    key, raw = item.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        # optim..lr or .optim.lr: a slip the user should see, not a path silently mended.
        raise ConfigError(
            f"override {item!r}: an empty name in the field path; expected e.g. 'optim.lr=0.01'"
        )
    try:
        value = yaml.load(raw, Loader=ConfigYamlLoader) if raw.strip() else ""
    except yaml.YAMLError as exc:
        # One line: PyYAML's message spans several, quoting the value with carets under it.
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"override {item!r}: expected a YAML value after '=' (quote text with \"...\"), "
            f"found {raw.strip()!r}: {problem}"
        ) from exc
    commented = isinstance(value, str) and "#" in raw and "#" not in value
    if commented or (value is None and raw.strip().startswith("#")):
        # YAML took " #..." (or a whole "#3") for a comment; on a command line it is part of the
        # value (a folder named "exp #3"), and dropping it silently would train into another folder.
        value = raw.strip()
    return path, value


def _section_model(model: type[BaseModel] | None, name: str) -> type[BaseModel] | None:
    """The config model of ``model``'s field ``name`` when it is a section, else ``None``.

    ``None`` also for an unknown field (validation names it) and for a free-form ``dict``.

    Example:
        >>> from inpaintssl.config import EvaluateConfig
        >>> _section_model(EvaluateConfig, "data").__name__, _section_model(EvaluateConfig, "split")
        ('DataConfig', None)
    """
    field = None if model is None else model.model_fields.get(name)
    if field is None:
        return None
    sections = [m for m in _members(field.annotation) if is_model_class(m)]
    # A union of several sections has no one set of fields to merge into: the value replaces it.
    return sections[0] if len(sections) == 1 else None


def _left_out(model: type[BaseModel] | None, name: str) -> Any:
    """What ``model``'s field ``name`` holds where a config's mapping leaves it out, as a dump holds it.

    A config file's mapping leaves out what it does not set; an override descending into such a
    field meets its default, as it does on a validated config: pretraining's ``early_stopping``
    keeps its own ``min_delta`` (null), not the section class's (1e-3), and ``optim.lr.x=1``
    finds ``lr`` null, which is no section. An unknown or required field starts empty, for
    validation to name.

    Example:
        >>> from inpaintssl.config import EvaluateConfig, PretrainConfig
        >>> _left_out(PretrainConfig, "early_stopping")["min_delta"], _left_out(EvaluateConfig, "data")
        (None, {})
    """
    field = None if model is None else model.model_fields.get(name)
    if field is None or field.is_required():
        return {}
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return default.model_dump(mode="json")
    if default is None and _section_model(model, name) is not None:
        return {}  # an optional section, none given: an override starts one
    return copy.deepcopy(default)


def _takes_null(model: type[BaseModel] | None, name: str) -> bool:
    """Whether ``model``'s field ``name`` may be ``None`` (an optional section: none given)."""
    field = None if model is None else model.model_fields.get(name)
    return field is not None and type(None) in typing.get_args(field.annotation)


def _current(node: Mapping[str, Any], key: str, model: type[BaseModel] | None) -> Any:
    """What ``model``'s field ``key`` holds in ``node``; a section left out holds its default."""
    if key in node:
        return node[key]
    return _left_out(model, key) if _section_model(model, key) is not None else None


def _merged(current: dict[str, Any], value: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``value`` merged into the dumped section ``current`` of ``model``; sub-sections merge too.

    Example:
        >>> from inpaintssl.config import OptimConfig
        >>> merged = _merged({"lr": 0.1, "max_epochs": 5}, {"lr": 0.2}, OptimConfig)
        >>> merged["lr"], merged["max_epochs"]
        (0.2, 5)
    """
    merged = dict(current)
    for key, item in value.items():
        merged[key] = _placed(_current(merged, key, model), item, _section_model(model, key))
    return merged


def _placed(current: Any, value: Any, section: type[BaseModel] | None) -> Any:
    """What a field holds once ``value`` is set over ``current`` (``section``: the field's model)."""
    if isinstance(value, BaseModel):
        # A model instance is a complete section (the runner resets transfer to TransferConfig()):
        # it replaces, defaults and all.
        return value.model_dump(mode="python")
    if section is not None and isinstance(value, Mapping) and isinstance(current, dict):
        return _merged(current, value, section)
    return value


def _set_path(
    data: dict[str, Any], path: list[str], value: Any, *, item: str, model: type[BaseModel]
) -> None:
    node = data
    section: type[BaseModel] | None = model
    for part in path[:-1]:
        parent, section = section, _section_model(section, part)
        # A missing key starts a new section, and so does null in an optional section (evaluate's
        # data: null, the run's own record): data.dataset=x names a section as data={dataset: x}
        # does. Any other null (optim.lr left to the recipe) is a value, and descending into it is
        # the same mistake as into a number.
        if part not in node:
            node[part] = _left_out(parent, part)
        elif node[part] is None and section is not None and _takes_null(parent, part):
            node[part] = {}
        child = node[part]
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section (found {child!r})")
        node = child
    node[path[-1]] = _placed(_current(node, path[-1], section), value, _section_model(section, path[-1]))


def _revalidated(cls: type[ModelT], data: dict[str, Any], *, source: str, quiet: bool = False) -> ModelT:
    """``cls`` validated from ``data`` (an updated dump); a failure names ``source`` and the field.

    ``quiet``: no warning about settings that have no effect (:func:`update_fields`).
    """
    try:
        with quiet_unused_settings() if quiet else contextlib.nullcontext():
            return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_config_error(exc, source=source, model=cls)) from exc


def check_override_list(overrides: Sequence[str]) -> None:
    """Refuse overrides given as one string rather than a list of them.

    Raises:
        ConfigError: ``overrides`` is a ``str`` or ``bytes``; the message shows the list to write.

    Example:
        >>> check_override_list(["optim.lr=1"])
        >>> check_override_list("optim.lr=1")
        Traceback (most recent call last):
        ...
        inpaintssl.config.ConfigError: overrides: expected a list of ... write ['optim.lr=1']
    """
    # A string is a sequence too: "optim.lr=1" would be read one letter at a time.
    if isinstance(overrides, (str, bytes)):
        raise ConfigError(
            f"overrides: expected a list of 'section.field=value' strings, found the string {overrides!r}; "
            f"write [{overrides!r}]"
        )


def apply_overrides(config: ModelT, overrides: Sequence[str]) -> ModelT:
    """Return a copy of ``config`` with dotted ``key=value`` overrides applied and re-validated.

    Values are parsed as YAML (``1e-4`` -> float, ``[64, 64]`` -> list, ``null`` -> None). A
    mapping for a section merges into it (``optim={lr: 1e-4}`` keeps the other ``optim`` fields);
    one for a free-form ``params`` field replaces it (see the module docstring). They apply in
    order, so ``data.params={root: /data} data.params.split=val`` sets both keys; a field set
    twice is refused, as a flag given twice is, also through a mapping (``optim.lr=1e-3
    optim={lr: 1e-4}``), and so is a mapping that replaces one whose key was set before it
    (``data.params.root=/data data.params={split: val}``, which dropped ``root``).

    Raises:
        ConfigError: Malformed override, a field set twice (or dropped by a later mapping), or a
            value that fails validation; names the field path.
    """
    data, _ = _overridden(config.model_dump(mode="json"), overrides, type(config))
    return _revalidated(type(config), data, source="overrides")


def _overridden(
    data: Mapping[str, Any], overrides: Sequence[str], model: type[BaseModel]
) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    """A copy of a ``model`` config's mapping ``data`` with ``overrides`` set, and the field paths they set.

    :func:`apply_overrides` without the validation: ``data`` may be a config file's mapping,
    which need not be valid before the overrides complete it (a schedule in the file, the
    pretrained run it needs in an override). Sections the mapping leaves out start from their
    defaults; the field paths returned are those the overrides set (to the last level of a
    mapping) or replace whole, so that an error can say which it came from.

    Raises:
        ConfigError: Malformed override, a field set twice (or dropped by a later mapping), or a
            path that descends into a non-section.

    Example:
        >>> from inpaintssl.config import FinetuneConfig
        >>> file = {"transfer": {"schedule": "frozen"}}
        >>> _overridden(file, ["transfer.pretrained=runs/pre"], FinetuneConfig)
        ({'transfer': {'schedule': 'frozen', 'pretrained': 'runs/pre'}}, [('transfer', 'pretrained')])
    """
    check_override_list(overrides)
    copied: dict[str, Any] = _unshared(data)
    given: dict[tuple[str, ...], str] = {}
    paths: list[tuple[str, ...]] = []
    for item in overrides:
        path, value = _parse_override(item)
        leaves, replaced = _fields_set(tuple(path), value, model)
        _check_set_once(item, leaves, replaced, given)
        given.update(dict.fromkeys(leaves, item))
        paths += [p for p in dict.fromkeys((*leaves, *replaced)) if p not in paths]
        _set_path(copied, path, value, item=item, model=model)
    return copied, paths


def _unshared(value: Any) -> Any:
    """``value`` with each mapping and list a copy of its own, and config models as their fields.

    Overrides set fields in place, and a file's YAML alias (``*base``) puts one mapping in two
    places, which :func:`copy.deepcopy` keeps shared: an override of one would change both. A
    caller's mapping stays the caller's. A model instance (``{"data": DataConfig(...)}``) is its
    fields, for an override to descend into.
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def _fields_set(
    path: tuple[str, ...], value: Any, model: type[BaseModel]
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The field paths an override of ``path`` sets (a mapping's keys, to the last level) and those
    it replaces whole (all but the sections a mapping merges into)."""
    section: type[BaseModel] | None = model
    for part in path[:-1]:
        section = _section_model(section, part)
    return _set_by(path, value, _section_model(section, path[-1]))


def _set_by(
    path: tuple[str, ...], value: Any, section: type[BaseModel] | None
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    if section is not None and isinstance(value, Mapping):
        leaves: list[tuple[str, ...]] = []
        replaced: list[tuple[str, ...]] = []
        for key, item in value.items():
            more, whole = _set_by((*path, str(key)), item, _section_model(section, str(key)))
            leaves += more
            replaced += whole
        return leaves, replaced
    return [tuple(p.split(".")) for p in override_fields(".".join(path), value)], [path]


def override_fields(key: str, value: Any) -> list[str]:
    """The dotted field paths an override ``key=value`` sets: each key of a mapping value, to its
    last level (``run={output_dir: a}`` sets ``run.output_dir``), else ``key`` itself.

    Example:
        >>> override_fields("optim", {"lr": 1e-4, "betas": [0.9, 0.99]})
        ['optim.lr', 'optim.betas']
        >>> override_fields("data.params", {}), override_fields("optim.lr", 0.1)
        (['data.params'], ['optim.lr'])
    """
    if isinstance(value, Mapping) and value:
        return [field for name, item in value.items() for field in override_fields(f"{key}.{name}", item)]
    return [key]


def _check_set_once(
    item: str,
    leaves: list[tuple[str, ...]],
    replaced: list[tuple[str, ...]],
    given: Mapping[tuple[str, ...], str],
) -> None:
    """Refuse an override that sets a field an earlier one set, or replaces a mapping one set a key of.

    A command line edited by appending (a script's default, then the user's value) would otherwise
    train with whichever came last, and the manifest shows only that one; through a mapping
    (``optim.lr=1e-3 optim={lr: 1e-4}``, ``data.params.n=12 data.params={m: 2}``) just the same.
    """
    for earlier, by in given.items():
        for whole in replaced:
            if _nested(whole, earlier) and whole != earlier:
                raise ConfigError(
                    f"override {item!r} replaces {'.'.join(whole)}, whose {'.'.join(earlier)} is set by "
                    f"{by!r}; give that key in the mapping, or each field once"
                )
        for leaf in leaves:
            if _nested(leaf, earlier) or _nested(earlier, leaf):
                shown = ".".join(leaf if len(leaf) <= len(earlier) else earlier)
                raise ConfigError(
                    f"override {item!r}: {shown} is already set by {by!r}; give each field once"
                )


def _nested(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    """Whether ``inner`` is ``outer`` or a field inside it."""
    return inner[: len(outer)] == outer


def update_fields(config: ModelT, updates: Mapping[str, Any]) -> ModelT:
    """Return a copy of ``config`` with typed values set at dotted field paths, re-validated.

    The typed twin of :func:`apply_overrides` for code (the study grid, the runner): values are
    Python objects (numbers, paths, lists, other config models), never YAML text, so nothing is
    formatted and parsed back (``1e-05`` stays a float, a path stays a path). A mapping for a
    section merges into it, as in :func:`apply_overrides`; a config model instance (such as
    ``TransferConfig()``) is a complete section and replaces it, its defaults included.

    Unlike :func:`apply_overrides`, it raises no :class:`~inpaintssl.config.ConfigWarning` about
    settings the result does not use: code combines a base config with other values (a study's
    grid point), and a base setting that one combination leaves unused is not a mistake (a study
    spec judges its settings on all its runs together, when it is read).

    Raises:
        ConfigError: A path that descends into a non-section, or a value that fails validation;
            names the field path.

    Example:
        >>> from pathlib import Path
        >>> from inpaintssl.config import PretrainConfig
        >>> config = update_fields(PretrainConfig(), {"optim.lr": 1e-5, "run.output_dir": Path("runs/a")})
        >>> config.optim.lr, config.run.output_dir
        (1e-05, PosixPath('runs/a'))
    """
    data = config.model_dump(mode="python")
    for dotted, value in updates.items():
        shown = value.model_dump(mode="python") if isinstance(value, BaseModel) else value
        _set_path(data, dotted.split("."), value, item=f"{dotted}={shown!r}", model=type(config))
    return _revalidated(type(config), data, source="field updates", quiet=True)
