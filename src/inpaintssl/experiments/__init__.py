"""Deprecated: use :mod:`inpaintssl.studies` (running studies) and :mod:`inpaintssl.analysis` (results).

The old names (``from inpaintssl.experiments import run_study``) and submodules
(``import inpaintssl.experiments.runner``) keep working with a :class:`DeprecationWarning`; each
old submodule is a view that looks its names up in the modules that now hold them.
``ResultsTable`` and ``Table`` are both :class:`inpaintssl.analysis.table.Table`, whose options
are keyword-only (``Table(rows, name=..., title=..., columns=...)``).

Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     from inpaintssl.experiments import ResultsTable
    >>> ResultsTable.__module__
    'inpaintssl.analysis.table'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from inpaintssl.warning_format import caller_stacklevel

# Old submodule -> the modules that now hold its names, searched in order.
_MOVED: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "cli": ("inpaintssl.cli.experiment",),
        "clinical": ("inpaintssl.analysis.clinical", "inpaintssl.studies.clinical"),
        "database": ("inpaintssl.studies.store", "inpaintssl.studies.queue", "inpaintssl.studies.database"),
        "demo": ("inpaintssl.studies.demo",),
        "execute": ("inpaintssl.studies.execute",),
        "figures": ("inpaintssl.analysis.figures",),
        "grid": ("inpaintssl.studies.grid",),
        "report": ("inpaintssl.studies.report",),
        "results": ("inpaintssl.studies.results", "inpaintssl.analysis.table"),
        "runner": ("inpaintssl.studies.runner",),
        "spec": ("inpaintssl.studies.spec",),
        "summaries": ("inpaintssl.analysis.summaries",),
        "tables": ("inpaintssl.analysis.paper_tables",),
        "tabular": ("inpaintssl.analysis.table",),
    }
)
_RENAMED = MappingProxyType({"ResultsTable": "Table"})
_PACKAGE_NAMES = ("inpaintssl.studies", "inpaintssl.analysis")


def _warn(old: str, new: str) -> None:
    # Once per location, as Python shows deprecations, and at the caller's line: the import
    # system's frames and this module's __getattr__ lie between, their number by the path taken,
    # and Python's default filters show a DeprecationWarning only where it points at __main__.
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=caller_stacklevel())


def _lookup(name: str, modules: Sequence[str], where: str) -> Any:
    wanted = _RENAMED.get(name, name)
    for module in modules:
        found = importlib.import_module(module)
        if hasattr(found, wanted):
            _warn(f"{where}.{name}", f"{module}.{wanted}")
            return getattr(found, wanted)
    raise AttributeError(f"module {where!r} has no attribute {name!r}")


class _Shim(types.ModuleType):
    """An old submodule: attribute access is forwarded to the modules that now hold the names."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _lookup(name, _MOVED[self.__name__.rsplit(".", 1)[-1]], self.__name__)


class _ShimLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        _warn(spec.name, " or ".join(_MOVED[spec.name.rsplit(".", 1)[-1]]))
        return _Shim(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the shim only forwards attribute access."""


class _ShimFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        parent, _, child = fullname.rpartition(".")
        if parent != __name__ or child not in _MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _ShimLoader())


if not any(isinstance(f, _ShimFinder) for f in sys.meta_path):
    sys.meta_path.append(_ShimFinder())


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _MOVED:  # ``inpaintssl.experiments.runner`` as an attribute
        return importlib.import_module(f"{__name__}.{name}")
    return _lookup(name, _PACKAGE_NAMES, __name__)
