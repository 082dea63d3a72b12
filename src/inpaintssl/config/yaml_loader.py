"""The YAML loader of config files and ``key=value`` overrides: PyYAML's safe loader, made strict
where YAML 1.1 surprises a config's author.

* A key given twice in one mapping is an error: plain YAML keeps the last value silently, so a
  config with ``lr`` twice trains at whichever came second and nobody notices. A key a merge
  (``<<: *base``) brings in may be given again: the mapping's own value wins, as YAML's merge
  key defines it.
* ``1e-4`` is a float. YAML 1.1 wants a dot (``1.0e-4``) and reads ``1e-4`` as the string
  ``"1e-4"``; typed fields convert it, but a free-form ``params`` mapping passed it on as text.
* ``2024-01-05`` is text, not a date: no config field takes a date, and a run folder named by
  one was refused as "found datetime.date(2024, 1, 5)".
* ``1:30`` and ``12:30:00`` are text, not YAML 1.1's base-60 numbers (90 and 45000), which
  YAML 1.2 dropped: a time or a ratio written in a ``params`` mapping stays what it reads as.
* ``010`` is ten, not YAML 1.1's octal eight, which YAML 1.2 dropped too: zero-padded seeds
  (``run.seed=$(printf %03d $i)``) ran seed 8 for ``010`` and for ``008``.

:class:`ConfigYamlDumper` writes what this loader reads back unchanged: it quotes a string that
the loader would take for a float (``'1e5'``) or an int (``'09'``), which PyYAML's safe dumper
leaves bare.

Example:
    >>> yaml.load("{eps: 1e-5, name: 2024-01-05, lr: 1.0e-3, at: 1:30, seed: 010}", Loader=ConfigYamlLoader)
    {'eps': 1e-05, 'name': '2024-01-05', 'lr': 0.001, 'at': '1:30', 'seed': 10}
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

__all__ = ["ConfigYamlDumper", "ConfigYamlLoader"]

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_FLOAT = "tag:yaml.org,2002:float"
_INT = "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_STR = "tag:yaml.org,2002:str"
# YAML 1.1's int without its base-60 form (1:30 for 90), and with leading zeros decimal.
_INT_PATTERN = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?[0-9][0-9_]*
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.VERBOSE,
)
# YAML 1.1's float with the dot made optional before an exponent and a sign allowed before a
# leading dot (-.5), as YAML 1.2's core schema reads them.
_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class ConfigYamlLoader(yaml.SafeLoader):
    """See the module docstring; a :class:`yaml.SafeLoader` subclass, so no arbitrary objects."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        # The mappings already flattened, by id (the node kept, so that no id is reused while
        # loading): a flattened node holds its merged keys among its own, which may repeat them.
        self._flattened: dict[int, yaml.MappingNode] = {}
        self._flattening: set[int] = set()  # the mappings whose merges are being read

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Put the pairs of ``node``'s ``<<`` merges before its own, refusing an own key given twice.

        A key a merge brings in and the mapping gives again is no repetition: that is what a merge
        is for, and the mapping's own value wins (its pair comes later). Of several bases
        (``<<: [*a, *b]``) the earlier wins. PyYAML 6.0.4's own flattening keeps the first pair of
        each key it merges, so a base's own key loses to the one it merges itself: ``c: {<<: *b}``
        with ``b: {<<: *a, x: 2}`` reads ``x`` from ``a``.
        """
        if id(node) in self._flattened:
            return  # merged into another mapping before being read itself: done then
        if id(node) in self._flattening:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the mapping at line {node.start_mark.line + 1} merges itself (<<: through its own anchor)",
            )
        self._flattening.add(id(node))
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        merge_lines: list[int] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                if key_node.tag == _VALUE:
                    key_node.tag = _STR  # a plain "=" key is text, as SafeLoader reads it
                own.append((key_node, value_node))
                continue
            merge_lines.append(key_node.start_mark.line + 1)
            if len(merge_lines) > 1:
                # SafeLoader merges both, the later winning silently, as for any repeated key.
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate merge key '<<' at line {merge_lines[1]} (first given at line "
                    f"{merge_lines[0]}); merge several mappings with one key: '<<: [*first, *second]'",
                )
            bases = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for base in bases:
                if not isinstance(base, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"expected a mapping or list of mappings for merging, but found {base.id}",
                        base.start_mark,
                    )
                self.flatten_mapping(base)
            for base in reversed(bases):  # later pairs win: the earlier base goes last
                merged.extend(base.value)
        self._check_unique(own)
        node.value = merged + own
        self._flattened[id(node)] = node
        self._flattening.discard(id(node))

    def _check_unique(self, pairs: list[tuple[yaml.Node, yaml.Node]]) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in pairs:
            key = self.construct_object(key_node)
            if not isinstance(key, Hashable):
                continue  # SafeLoader's construct_mapping refuses it, naming the line
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {line} (first given at line {seen[key]})"
                )
            seen[key] = line


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
    """PyYAML's safe dumper, quoting every string :class:`ConfigYamlLoader` would read as a number.

    The safe dumper quotes a string only where YAML 1.1 would read it as something else, and
    YAML 1.1 reads ``1e5`` as text: written bare, a run's ``config.yaml`` turned the folder name or
    dataset parameter ``"1e5"`` into the number 100000.0 when read back. So too ``09`` (no octal
    number in YAML 1.1, the int 9 to the loader): a run folder named ``09`` was read back as 9,
    and its ``--resume`` refused as a different config.

    Example:
        >>> text = yaml.dump({"name": "1e5", "lr": 1e-05, "run": "09"}, Dumper=ConfigYamlDumper)
        >>> print(text, end="")
        lr: 1.0e-05
        name: '1e5'
        run: '09'
    """


# Its own copy of the safe dumper's resolvers plus the loader's float and int: it quotes at least
# what the safe dumper quotes, so nothing else it writes changes.
ConfigYamlDumper.add_implicit_resolver(_FLOAT, _FLOAT_PATTERN, list("-+0123456789."))
ConfigYamlDumper.add_implicit_resolver(_INT, _INT_PATTERN, list("-+0123456789"))
