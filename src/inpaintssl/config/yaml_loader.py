"""The YAML loader of config files and ``key=value`` overrides: PyYAML's safe loader, made strict
where YAML 1.1 surprises a config's author.

* A key given twice in one mapping is an error: plain YAML keeps the last value silently, so a
  config with ``lr`` twice trains at whichever came second and nobody notices.
* ``1e-4`` is a float. YAML 1.1 wants a dot (``1.0e-4``) and reads ``1e-4`` as the string
  ``"1e-4"``; typed fields convert it, but a free-form ``params`` mapping passed it on as text.
* ``2024-01-05`` is text, not a date: no config field takes a date, and a run folder named by
  one was refused as "found datetime.date(2024, 1, 5)".
* ``1:30`` and ``12:30:00`` are text, not YAML 1.1's base-60 numbers (90 and 45000), which
  YAML 1.2 dropped: a time or a ratio written in a ``params`` mapping stays what it reads as.
* ``010`` is ten, not YAML 1.1's octal eight, which YAML 1.2 dropped too: zero-padded seeds
  (``run.seed=$(printf %03d $i)``) ran seed 8 for ``010`` and for ``008``.

:class:`ConfigYamlDumper` writes what this loader reads back unchanged: it quotes a string that
the loader would take for a float (``'1e5'``), which PyYAML's safe dumper leaves bare.

Example:
    >>> yaml.load("{eps: 1e-5, name: 2024-01-05, lr: 1.0e-3, at: 1:30, seed: 010}", Loader=ConfigYamlLoader)
    {'eps': 1e-05, 'name': '2024-01-05', 'lr': 0.001, 'at': '1:30', 'seed': 10}
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["ConfigYamlDumper", "ConfigYamlLoader"]

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_FLOAT = "tag:yaml.org,2002:float"
_INT = "tag:yaml.org,2002:int"
# YAML 1.1's int without its base-60 form (1:30 for 90), and with leading zeros decimal.
_INT_PATTERN = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?[0-9][0-9_]*
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.VERBOSE,
)
# YAML 1.1's float with the dot made optional before an exponent (YAML 1.2's core schema).
_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class ConfigYamlLoader(yaml.SafeLoader):
    """See the module docstring; a :class:`yaml.SafeLoader` subclass, so no arbitrary objects."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {line} (first given at line {seen[key]})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# The resolvers are a class-level mapping from a value's first character to (tag, pattern) pairs,
# shared with SafeLoader until copied: replace this class's own copy.
ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_TIMESTAMP, _FLOAT, _INT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigYamlLoader.add_implicit_resolver(_INT, _INT_PATTERN, list("-+0123456789"))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An int as YAML 1.2 reads it: a leading zero is no octal prefix (SafeLoader's own takes ``010``
    for 8)."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits.startswith(("0b", "0x")):
        return sign * int(digits[2:], 2 if digits[1] == "b" else 16)
    return sign * int(digits, 10)


ConfigYamlLoader.add_constructor(_INT, _construct_int)
ConfigYamlLoader.add_implicit_resolver(_FLOAT, _FLOAT_PATTERN, list("-+0123456789."))


class ConfigYamlDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting every string :class:`ConfigYamlLoader` would read as a float.

    The safe dumper quotes a string only where YAML 1.1 would read it as something else, and
    YAML 1.1 reads ``1e5`` as text: written bare, a run's ``config.yaml`` turned the folder name or
    dataset parameter ``"1e5"`` into the number 100000.0 when read back.

    Example:
        >>> print(yaml.dump({"name": "1e5", "lr": 1e-05}, Dumper=ConfigYamlDumper, sort_keys=False), end="")
        name: '1e5'
        lr: 1.0e-05
    """


# Its own copy of the safe dumper's resolvers plus the loader's float: it quotes at least what the
# safe dumper quotes, so nothing else it writes changes.
ConfigYamlDumper.add_implicit_resolver(_FLOAT, _FLOAT_PATTERN, list("-+0123456789."))
