"""Reading configs: YAML or JSON text and files (a repeated key is an error), and writing YAML.

Example:
    >>> from inpaintssl.config import PretrainConfig
    >>> config = load_config({"optim": {"lr": 0.01}}, PretrainConfig, overrides=["run.seed=3"])
    >>> load_config(read_config_text(config_to_yaml(config), source="round trip"), PretrainConfig) == config
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from inpaintssl.config.errors import ConfigError, format_config_error
from inpaintssl.config.overrides import ModelT, _overridden, apply_overrides
from inpaintssl.config.yaml_loader import ConfigYamlDumper, ConfigYamlLoader

__all__ = ["config_to_yaml", "load_config", "read_config_file", "read_config_text", "read_text_file"]


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, duplicates))} in one JSON object")
    return dict(pairs)


def read_config_text(text: str, *, source: str, json_format: bool = False) -> Any:
    """Parse YAML (or JSON) config text; a key repeated within one mapping is an error.

    Raises:
        ConfigError: Invalid syntax or a duplicate key; the message names ``source``, the key
            and (YAML) both lines.

    Example:
        >>> read_config_text("optim: {lr: 0.1}", source="example")
        {'optim': {'lr': 0.1}}
        >>> read_config_text("{lr: 0.1, lr: 0.2}", source="example")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.config.ConfigError: example is not valid YAML: duplicate key 'lr' at line 1 ...
    """
    try:
        if json_format:
            # Windows editors start UTF-8 files with a byte-order mark; YAML skips it, so JSON does too.
            return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_unique_pairs)
        return yaml.load(text, Loader=ConfigYamlLoader)  # a SafeLoader subclass: no arbitrary objects
    except (json.JSONDecodeError, ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if json_format else "YAML"
        detail = str(exc)
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
            mark = exc.problem_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            detail = exc.problem if "line" in exc.problem else f"{exc.problem}{where}"
        raise ConfigError(f"{source} is not valid {kind}: {detail}") from exc


def read_text_file(path: Path, *, what: str, expected: str) -> str:
    """The text of a settings file; a folder, a missing file or one not in UTF-8 is refused naming it.

    Args:
        path: The file.
        what: What the file is, for messages (``"config file"``, ``"study spec"``).
        expected: What it should be, for messages (``"a YAML or JSON file"``).

    Raises:
        ConfigError: Naming ``what``, the path and what was found; the codec's own message alone
            does not say which file (one saved as Latin-1, say).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.yaml"
        >>> _ = path.write_bytes(b"name: caf\\xe9")
        >>> read_text_file(path, what="study spec", expected="a YAML file")
        Traceback (most recent call last):
        ...
        inpaintssl.config.ConfigError: study spec ... is not UTF-8 text (...); expected a YAML file
    """
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; expected {expected}")
    if not path.exists():
        # exists(), not is_file(): a pipe (`<(...)`, /dev/stdin) is no regular file but reads as one.
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text ({exc}); expected {expected}") from exc


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML (or ``.json``) config file, not validated against a schema.

    Raises:
        ConfigError: The file is missing, a folder, not UTF-8 text, not valid YAML/JSON (with
            duplicate keys refused), or not a mapping; the message names the file.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
        >>> _ = path.write_text("optim: {lr: 0.1}")
        >>> read_config_file(path)
        {'optim': {'lr': 0.1}}
    """
    path = Path(path).expanduser()  # a quoted "~/pre.yaml" reaches here unexpanded
    text = read_text_file(path, what="config file", expected="a YAML or JSON file")
    data = read_config_text(text, source=f"config file {path}", json_format=path.suffix.lower() == ".json")
    if data is None:
        # Empty (or comments only): a truncated copy more often than a wish for every default.
        raise ConfigError(
            f"config file {path} is empty; expected a mapping of sections (data:, optim:, ...), "
            "or {} for every default"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping at the top level, found {type(data).__name__}"
        )
    return data


def load_config(
    source: ModelT | Mapping[str, Any] | str | Path,
    cls: type[ModelT],
    *,
    overrides: Sequence[str] = (),
) -> ModelT:
    """Build a validated ``cls`` from a model, a mapping, or a YAML/JSON file, with overrides applied.

    Args:
        source: An instance of ``cls``, a plain mapping, or a path to ``.yaml``/``.yml``/``.json``
            (``~`` expanded).
        cls: The config model, e.g. :class:`PretrainConfig`.
        overrides: Dotted ``key=value`` strings applied last.

    A mapping or file is validated once, with its overrides applied: it need not be valid
    without them (``transfer.schedule: frozen`` in the file, ``transfer.pretrained=...`` in an
    override). An error names the file (or mapping), the overrides, or both, by which of them
    gave the field it is about.

    A setting that has no effect under the config's other settings raises one
    :class:`~inpaintssl.config.ConfigWarning` each, judged on the config with its overrides.

    Raises:
        ConfigError: Unreadable file or invalid content; the message names each field path.

    Example:
        >>> from inpaintssl.config import PretrainConfig
        >>> cfg = load_config({"optim": {"lr": 0.01}}, PretrainConfig)
        >>> cfg.optim.lr
        0.01
    """
    if isinstance(source, cls):
        config = source
    elif isinstance(source, BaseModel):
        raise ConfigError(f"expected a {cls.__name__}, got a {type(source).__name__}")
    else:
        if isinstance(source, (str, Path)):
            where = str(source)
            data = read_config_file(source)
        elif isinstance(source, Mapping):
            where = f"{cls.__name__} mapping"
            data = dict(source)
        else:
            raise ConfigError(
                f"config must be a {cls.__name__}, a mapping or a path, got {type(source).__name__}"
            )
        given = bool(data)
        set_by_overrides: list[tuple[str, ...]] = []
        if overrides:
            # Set on the file's own mapping, then validated once: validated alone first, a file
            # that leaves a cross-section check to its overrides was refused before they applied.
            data, set_by_overrides = _overridden(data, overrides, cls)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            shown = where if not overrides else _sources(exc, where if given else None, set_by_overrides)
            raise ConfigError(format_config_error(exc, source=shown, model=cls)) from exc
    return apply_overrides(config, overrides) if overrides else config


def _sources(exc: ValidationError, where: str | None, set_by_overrides: Sequence[tuple[str, ...]]) -> str:
    """Where a failure of a config given as ``where`` with overrides came from, to name in its message.

    An error about a field the overrides set (or inside one) is theirs; one about a section none of
    them touches is the file's; one about a section both give, or about the whole config (a check
    across sections), names both. ``where`` is ``None`` when the overrides came alone (with ``{}``).

    Example:
        >>> from inpaintssl.config import PretrainConfig
        >>> try:
        ...     PretrainConfig.model_validate({"optim": {"lr": -1}})
        ... except ValidationError as exc:
        ...     _sources(exc, "pre.yaml", [("optim", "lr")]), _sources(exc, "pre.yaml", [("run", "seed")])
        ('overrides', 'pre.yaml')
    """
    if where is None:
        return "overrides"
    theirs = mine = False
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        if any(loc[: len(path)] == path for path in set_by_overrides):
            theirs = True
        elif loc and not any(path[0] == loc[0] for path in set_by_overrides):
            mine = True
        else:
            theirs = mine = True
    if theirs and mine:
        return f"{where} with the overrides"
    return "overrides" if theirs else where


def config_to_yaml(config: BaseModel) -> str:
    """Serialise a config to YAML that :func:`load_config` reads back to an equal model.

    Example:
        >>> from inpaintssl.config import FinetuneConfig
        >>> config = FinetuneConfig.model_validate({"data": {"params": {"case": "1e5"}}})
        >>> load_config(read_config_text(config_to_yaml(config), source="x"), FinetuneConfig) == config
        True
    """
    return yaml.dump(config.model_dump(mode="json"), Dumper=ConfigYamlDumper, sort_keys=False)
