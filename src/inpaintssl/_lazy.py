"""Lazy package exports (PEP 562): a package lists its public names and the submodule of each.

Importing :mod:`inpaintssl.studies` or :mod:`inpaintssl.analysis` then costs nothing until a name
is used, and a submodule that fails to import (a missing optional extra) breaks only the names it
holds.

Example:
    >>> import types
    >>> namespace = {}
    >>> getattr_, dir_ = lazy_exports("inpaintssl", {"RunFolder": "layout"}, namespace)
    >>> getattr_("RunFolder").__name__, "RunFolder" in namespace, dir_()
    ('RunFolder', True, ['RunFolder'])
    >>> getattr_, _ = lazy_exports("inpaintssl", {"layout": "layout"}, {})
    >>> getattr_("layout").__name__
    'inpaintssl.layout'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that import each exported name on first use.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> the submodule (relative to ``package``) that defines it; a name
            that is its submodule's own name (``{"registry": "registry"}``) is the submodule itself.
        namespace: The package's ``globals()``; a name is cached there once imported.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's module level.
    """

    def attribute(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(f"{package}.{module}")
        value = imported if module == name else getattr(imported, name)
        namespace[name] = value
        return value

    def listing() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return attribute, listing
