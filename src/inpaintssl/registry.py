"""Named-component registries with lazy entry-point plugins.

Every swappable part of inpaintssl (pretext tasks, patch samplers, backbones, losses, transfer
strategies, datasets) lives in one :class:`Registry`. Built-in components register with the
:meth:`Registry.register` decorator when their module is imported; third-party packages add
components through the standard entry-point groups ``inpaintssl.<kind>``, read with
:func:`importlib.metadata.entry_points` and imported only when their name is asked for, so one
broken plugin never breaks ``import inpaintssl`` or the other names.

Example:
    >>> from inpaintssl.registry import SAMPLERS
    >>> "poisson_disc" in SAMPLERS.names()
    True
"""

from __future__ import annotations

import difflib
import importlib
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

__all__ = [
    "BACKBONES",
    "DATASETS",
    "LOSSES",
    "PRETEXT_TASKS",
    "REGISTRIES",
    "SAMPLERS",
    "TRANSFER_STRATEGIES",
    "PluginLoadError",
    "Registry",
    "RegistryEntry",
]

T = TypeVar("T")


class PluginLoadError(ImportError):
    """An installed plugin's entry point failed to load.

    The message names the registry, the plugin name, the distribution that provides it and the
    original exception, which is also chained as ``__cause__``.
    """


@dataclass(frozen=True)
class RegistryEntry:
    """Where a registered name comes from.

    Attributes:
        name: The registered name.
        source: ``"builtin"`` or ``"plugin"``.
        target: ``module:attribute`` of the factory.
        distribution: The installed distribution providing a plugin (``None`` for built-ins).
    """

    name: str
    source: str
    target: str
    distribution: str | None = None


def _distribution_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown distribution>"
    return f"{dist.name} {dist.version}"


class Registry(Generic[T]):
    """A name -> factory mapping for one kind of component.

    Args:
        kind: The component kind, e.g. ``"samplers"``; the entry-point group is
            ``inpaintssl.<kind>``.
        builtin_modules: Modules whose import registers the built-in components. They are
            imported on the first lookup, so ``import inpaintssl.registry`` stays cheap and the
            registry module imports nothing above it.

    Example:
        >>> reg: Registry[type] = Registry("widgets")
        >>> @reg.register("plain")
        ... class Plain:
        ...     def __init__(self, size: int = 1) -> None:
        ...         self.size = size
        >>> reg.build("plain", size=3).size
        3
    """

    def __init__(self, kind: str, *, builtin_modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self.group = f"inpaintssl.{kind}"
        self._builtin_modules = tuple(builtin_modules)
        self._builtins: dict[str, Callable[..., T]] = {}
        self._plugins: dict[str, Callable[..., T]] = {}
        self._builtins_loaded = not self._builtin_modules
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a built-in factory (a class or function) under ``name``.

        Raises:
            ValueError: If ``name`` is already registered or is not a valid identifier-like name.
        """
        if not name or not all(ch.isalnum() or ch in "_-." for ch in name):
            raise ValueError(
                f"registry {self.kind!r}: name must be non-empty and use letters, digits, "
                f"'_', '-' or '.', got {name!r}"
            )

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            with self._lock:
                if name in self._builtins:
                    existing = self._builtins[name]
                    raise ValueError(
                        f"registry {self.kind!r}: name {name!r} is already registered "
                        f"to {_qualname(existing)}; cannot register {_qualname(factory)}"
                    )
                self._builtins[name] = factory
            return factory

        return decorator

    def unregister(self, name: str) -> None:
        """Remove a built-in or cached plugin name (for tests and interactive use)."""
        with self._lock:
            self._builtins.pop(name, None)
            self._plugins.pop(name, None)

    # -- lookup -------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        with self._lock:
            if self._builtins_loaded:
                return
            self._builtins_loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)

    def _entry_points(self, name: str | None = None) -> list[EntryPoint]:
        if name is None:
            return list(entry_points(group=self.group))
        return list(entry_points(group=self.group, name=name))

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory registered as ``name``.

        Built-ins win over a plugin of the same name (the plugin is ignored with a warning).

        Raises:
            KeyError: If no built-in or installed plugin has that name; the message lists close
                matches and every available name.
            PluginLoadError: If the plugin's entry point fails to import.
        """
        if not isinstance(name, str):
            raise TypeError(f"registry {self.kind!r}: name must be a str, got {type(name).__name__}")
        self._load_builtins()
        eps = self._entry_points(name)
        if name in self._builtins:
            for ep in eps:
                warnings.warn(
                    f"registry {self.kind!r}: plugin {name!r} from {_distribution_name(ep)} "
                    f"({ep.value}) has the same name as a built-in; the built-in is used",
                    stacklevel=2,
                )
            return self._builtins[name]
        if name in self._plugins:
            return self._plugins[name]
        if not eps:
            raise KeyError(self._unknown_message(name))
        ep = eps[0]
        try:
            factory = ep.load()
        except Exception as exc:
            raise PluginLoadError(
                f"registry {self.kind!r}: plugin {name!r} ({ep.value}) from distribution "
                f"{_distribution_name(ep)} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(factory):
            raise PluginLoadError(
                f"registry {self.kind!r}: plugin {name!r} ({ep.value}) from distribution "
                f"{_distribution_name(ep)} is not callable (got {type(factory).__name__})"
            )
        with self._lock:
            self._plugins[name] = factory
        return factory  # type: ignore[no-any-return]

    def build(self, name: str, /, **params: Any) -> T:
        """Look up ``name`` and call its factory with keyword ``params``.

        Raises:
            KeyError: Unknown name (see :meth:`get`).
            TypeError: If the factory rejects ``params``; the message names the component.
        """
        factory = self.get(name)
        try:
            return factory(**params)
        except TypeError as exc:
            raise TypeError(f"{self.kind} {name!r}: invalid parameters {sorted(params)}: {exc}") from exc

    def names(self) -> list[str]:
        """Sorted names of built-ins and installed plugins (plugins are not imported)."""
        self._load_builtins()
        found = set(self._builtins) | set(self._plugins)
        found.update(ep.name for ep in self._entry_points())
        return sorted(found)

    def entries(self) -> list[RegistryEntry]:
        """Where each name comes from, without importing any plugin."""
        self._load_builtins()
        rows = {
            name: RegistryEntry(name, "builtin", _qualname(factory))
            for name, factory in self._builtins.items()
        }
        for ep in self._entry_points():
            if ep.name not in rows:
                rows[ep.name] = RegistryEntry(ep.name, "plugin", ep.value, _distribution_name(ep))
        for name, factory in self._plugins.items():
            rows.setdefault(name, RegistryEntry(name, "plugin", _qualname(factory)))
        return [rows[n] for n in sorted(rows)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def _unknown_message(self, name: str) -> str:
        available = self.names()
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} name {name!r}.{hint} Available: {', '.join(available) or 'none'}. "
            f"Plugins register under the entry-point group {self.group!r}."
        )


def _qualname(obj: object) -> str:
    module = getattr(obj, "__module__", "?")
    qual = getattr(obj, "__qualname__", repr(obj))
    return f"{module}:{qual}"


PRETEXT_TASKS: Registry[Any] = Registry("pretext_tasks", builtin_modules=("inpaintssl.corruption.tasks",))
SAMPLERS: Registry[Any] = Registry("samplers", builtin_modules=("inpaintssl.corruption.samplers",))
BACKBONES: Registry[Any] = Registry("backbones", builtin_modules=("inpaintssl.models.unet",))
LOSSES: Registry[Any] = Registry("losses", builtin_modules=("inpaintssl.losses",))
TRANSFER_STRATEGIES: Registry[Any] = Registry(
    "transfer_strategies", builtin_modules=("inpaintssl.transfer_learning.strategies",)
)
DATASETS: Registry[Any] = Registry(
    "datasets", builtin_modules=("inpaintssl.data.datasets", "inpaintssl.data.synthetic")
)

REGISTRIES: dict[str, Registry[Any]] = {
    "pretext_tasks": PRETEXT_TASKS,
    "samplers": SAMPLERS,
    "backbones": BACKBONES,
    "losses": LOSSES,
    "transfer_strategies": TRANSFER_STRATEGIES,
    "datasets": DATASETS,
}
