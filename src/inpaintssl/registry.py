"""Named-component registries with lazy entry-point plugins.

Every swappable part of inpaintssl (pretext tasks, patch samplers, backbones, losses, transfer
strategies, datasets) lives in one :class:`Registry`, typed by what its factories build
(``BACKBONES.build(...)`` is an ``nn.Module``, ``SAMPLERS.build(...)`` a ``Sampler``). A built-in
component registers in exactly one way: the :meth:`Registry.register` decorator on its class or
factory function, in a module that its package's ``__init__`` imports; the registry imports that
package on its first lookup. Third-party packages add
components through the standard entry-point groups ``inpaintssl.<kind>``, read with
:func:`importlib.metadata.entry_points` and imported only when their name is asked for, so one
broken plugin never breaks ``import inpaintssl`` or the other names.

Example:
    >>> from inpaintssl.registry import SAMPLERS
    >>> "poisson_disc" in SAMPLERS.names()
    True
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from inpaintssl.options import CLOSE_MATCH_CUTOFF
from inpaintssl.warning_format import warn_each_time

if TYPE_CHECKING:  # the component types; importing them here would load torch and NumPy
    from torch import nn

    from inpaintssl.corruption.base import PretextTask
    from inpaintssl.corruption.samplers import Sampler
    from inpaintssl.data.base import SliceDataset
    from inpaintssl.transfer_learning.strategies import TransferStrategy

__all__ = [
    "BACKBONES",
    "DATASETS",
    "LOSSES",
    "PRETEXT_TASKS",
    "REGISTRIES",
    "REQUIRES_ATTRIBUTE",
    "SAMPLERS",
    "TRANSFER_STRATEGIES",
    "Origin",
    "OriginChange",
    "PluginLoadError",
    "Registry",
    "RegistryEntry",
    "RegistryStatus",
    "ShadowedPluginWarning",
    "origin_change",
    "registrations",
    "restore_hint",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

REGISTERED_AS = "__inpaintssl_registry__"
"""Attribute the :meth:`Registry.register` decorator sets on what it registers: a tuple of
``(kind, name)`` pairs (read it with :func:`registrations`)."""


def registrations(factory: object) -> tuple[tuple[str, str], ...]:
    """The ``(kind, name)`` pairs ``factory`` was registered under by the decorator.

    A class's own registrations only: a subclass of a registered class is not registered.

    Example:
        >>> from inpaintssl.models import UNet2d
        >>> registrations(UNet2d)
        (('backbones', 'unet2d'),)
    """
    own = vars(factory) if isinstance(factory, type) else getattr(factory, "__dict__", {})
    found: tuple[tuple[str, str], ...] = own.get(REGISTERED_AS, ())
    return found


class PluginLoadError(ImportError):
    """An installed plugin's entry point failed to load.

    The message names the registry, the plugin name, the distribution that provides it and the
    original exception, which is also chained as ``__cause__``.

    Attributes:
        reason: What is wrong with the plugin, without the names (for listings; the whole
            message when not given).
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class ShadowedPluginWarning(UserWarning):
    """An installed plugin has the name of a built-in (or of a backbone inpaintssl ships) and is ignored.

    Raised pointing at the code that asked for the name. Its own category lets the command
    line print it in its form (:mod:`inpaintssl.warning_format`, which knows the library's
    warnings by where they are raised or by a category the library defines), and lets code that
    knows about the clash filter it.
    """


RegistryStatus = Literal["ok", "unchecked", "broken", "shadowed", "unavailable"]
"""How usable a registry entry is: ``ok`` (a built-in, or a plugin that loaded), ``unchecked`` (a
plugin not imported yet), ``broken`` (its entry point fails to import or is not callable),
``shadowed`` (another entry of the same name wins, so this one is never used) or ``unavailable``
(it loads, but a package it names in ``REQUIRES_ATTRIBUTE`` is not installed)."""

REQUIRES_ATTRIBUTE = "requires"
"""A factory attribute mapping each module it imports only when built to the pip extra (or
requirement) that provides it, e.g. ``{"monai": "inpaintssl[monai]"}``: listings with
``check=True`` then say ``unavailable`` instead of ``ok`` while one is missing."""


@dataclass(frozen=True)
class RegistryEntry:
    """Where a registered name comes from, and whether it can be used.

    Attributes:
        name: The registered name.
        source: ``"builtin"`` or ``"plugin"``.
        target: ``module:attribute`` of the factory.
        distribution: The installed distribution providing a plugin (``None`` for built-ins).
        status: See :data:`RegistryStatus`.
        reason: Why an entry is ``broken``, ``shadowed`` or ``unavailable`` (``None`` otherwise).
        shadowed: Entries of the same name that lose to this one (each with status ``shadowed``).
    """

    name: str
    source: str
    target: str
    distribution: str | None = None
    status: RegistryStatus = "ok"
    reason: str | None = None
    shadowed: tuple[RegistryEntry, ...] = ()


_UNKNOWN_DISTRIBUTION = "<unknown distribution>"


def _distribution_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return _UNKNOWN_DISTRIBUTION
    return f"{dist.name} {dist.version}"


def _entry_point_target(ep: EntryPoint) -> str:
    """``module:attribute`` that ``ep`` names, without the extras an entry point may list.

    ``pkg:make [fancy]`` names the code ``pkg:make``; the extras (``[fancy]``) say only which optional
    requirements it wants, and their space broke the run record that :meth:`Origin.parse` reads back.
    """
    return f"{ep.module}:{ep.attr}" if ep.attr else ep.module


def _plugin_origin(ep: EntryPoint) -> str:
    """:meth:`Registry.origin`'s words for a plugin (:meth:`Origin.parse` reads them back)."""
    return f"plugin {_entry_point_target(ep)} from distribution {_distribution_name(ep)}"


# The optional extras suffix: runs recorded before the target left it out wrote "plugin pkg:make
# [fancy] from ...", which must still parse (an unparsed record compares as "unknown", refusing nothing).
_PLUGIN_ORIGIN = re.compile(
    r"plugin (?P<target>[^\s\[]+)(?:\s*\[[^\]]*\])? from distribution (?P<distribution>.+)"
)
_BUILTIN_ORIGIN = re.compile(r"built-in (?P<target>\S+)")

OriginChange = Literal["same", "version", "other", "unknown"]
"""How the code behind a component name changed between two records (:func:`origin_change`)."""


@dataclass(frozen=True)
class Origin:
    """A :meth:`Registry.origin` record read back (a run's ``manifest.json`` holds them).

    Attributes:
        builtin: Registered in the running process (inpaintssl's own components, or a decorator
            run by code that no entry point names) rather than provided by a plugin.
        target: ``module:qualname`` of the factory.
        distribution: The plugin's distribution as its metadata names it; ``None`` for a built-in
            or where the distribution was not known.
        version: The plugin distribution's version; ``None`` as for ``distribution``.

    Example:
        >>> Origin.parse("plugin wide:make from distribution wide-unet 1.2.0")
        Origin(builtin=False, target='wide:make', distribution='wide-unet', version='1.2.0')
        >>> Origin.parse("built-in inpaintssl.models.unet:UNet2d").builtin
        True
        >>> Origin.parse("plugin wide:make [fancy] from distribution wide-unet 1.2.0").target
        'wide:make'
    """

    builtin: bool
    target: str
    distribution: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Origin | None:
        """Read one record; ``None`` for text in neither form."""
        plugin = _PLUGIN_ORIGIN.fullmatch(text)
        if plugin is not None:
            provider = plugin["distribution"]
            name, _, version = provider.rpartition(" ")
            if provider == _UNKNOWN_DISTRIBUTION or not name:
                return cls(False, plugin["target"])
            return cls(False, plugin["target"], name, version)
        builtin = _BUILTIN_ORIGIN.fullmatch(text)
        return None if builtin is None else cls(True, builtin["target"])

    @property
    def requirement(self) -> str | None:
        """``name==version`` to install the plugin's distribution again; ``None`` for a built-in."""
        if self.distribution is None or self.version is None:
            return None
        return f"{self.distribution}=={self.version}"

    def _package(self) -> str:
        return self.target.partition(":")[0].split(".")[0]


def _normalised(distribution: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``Wide_UNet`` is ``wide-unet``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def origin_change(recorded: str, current: str) -> OriginChange:
    """How the code behind a component changed between a recorded origin and the current one.

    Both are :meth:`Registry.origin` records. ``same``: the same code. ``version``: the same
    plugin distribution at another version (or with its entry point moved), whose network a run's
    weights still fit, though it may compute otherwise. ``other``: another distribution's code, or a
    plugin where a built-in was (or the reverse): a run's weights would silently load into a
    network that is not the one they were trained in. ``unknown``: a record in neither form, which
    says nothing to compare.

    A built-in whose class moved inside its package (a refactor between inpaintssl versions, which
    the manifest's ``packages`` records) is the same code; so is a decorator-registered factory
    recorded as built-in where it is now known as its plugin's (the same ``module:qualname``).

    Example:
        >>> trained = "plugin a:Net from distribution a-pkg 1.0"
        >>> origin_change(trained, "plugin a:Net from distribution a-pkg 1.1")
        'version'
        >>> origin_change(trained, "plugin b:Net from distribution b-pkg 1.0")
        'other'
        >>> origin_change("built-in inpaintssl.models.unet:UNet2d", "built-in inpaintssl.models:UNet2d")
        'same'
    """
    if recorded == current:
        return "same"
    then, now = Origin.parse(recorded), Origin.parse(current)
    if then is None or now is None:
        return "unknown"
    if then.builtin and now.builtin:
        return "same" if then._package() == now._package() else "other"
    if then.builtin != now.builtin or then.distribution is None or now.distribution is None:
        return "version" if then.target == now.target else "other"
    if _normalised(then.distribution) != _normalised(now.distribution):
        return "other"
    # Records of one plugin that differ in words only (a run recorded with its entry point's extras,
    # "pkg:make [fancy]") name the same code: no upgrade to warn about.
    return "same" if (then.target, then.version) == (now.target, now.version) else "version"


def restore_hint(recorded: str, current: str) -> str:
    """How to have the recorded origin's code provide the name again where ``current`` does now.

    For messages that refuse other code under a recorded name (:func:`origin_change` ``other``).
    A built-in always wins over a plugin, so where the two swapped, the inpaintssl version decides.

    Example:
        >>> trained = "plugin a:Net from distribution a-pkg 1.0"
        >>> restore_hint(trained, "plugin b:Net from distribution b-pkg 2.0")
        "pip install 'a-pkg==1.0' and pip uninstall b-pkg"
        >>> restore_hint("built-in inpaintssl.models:Net", "plugin b:Net from distribution b-pkg 2.0")[:45]
        'install the inpaintssl version the manifest.j'
    """
    then, now = Origin.parse(recorded), Origin.parse(current)
    if then is None or now is None:
        return "run with the code the manifest.json records"
    if then.builtin:
        return (
            "install the inpaintssl version the manifest.json records under packages, whose built-in "
            "it was (a built-in wins over any plugin of its name)"
        )
    install = f"pip install '{then.requirement}'" if then.requirement else f"install the plugin {then.target}"
    if now.builtin:
        return (
            f"{install} under the inpaintssl version the manifest.json records under packages (this "
            f"version's built-in {now.target} wins over any plugin of its name)"
        )
    return install if now.distribution is None else f"{install} and pip uninstall {now.distribution}"


def _entry_point_object(ep: EntryPoint) -> object | None:
    """What ``ep`` names, where its module is imported already; ``None`` otherwise (nothing is imported)."""
    module = sys.modules.get(ep.module)
    if module is None or not ep.attr:
        return None
    found: object = module
    for part in ep.attr.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


def _bundled(ep: EntryPoint) -> bool:
    """Whether ``ep`` is one of inpaintssl's own entry points (an optional backbone it ships)."""
    dist = getattr(ep, "dist", None)
    return dist is not None and str(dist.name).lower().replace("_", "-") == "inpaintssl"


def _copies_in_one_folder(ep: EntryPoint) -> str | None:
    """Why the metadata of ``ep``'s distribution is not one copy in its folder; ``None`` when it is.

    A failed upgrade or a copied ``site-packages`` can leave two ``.dist-info`` folders of one
    distribution side by side (``pkg-0.1.0.dist-info`` beside ``pkg-0.2.0.dist-info``). Python
    reads whichever the file system lists first, for the entry points and for the version a run
    records, so the record of which code built a component would not be defined. Copies in
    different ``sys.path`` folders are not this: the first folder on the path wins, as the import
    of the code itself does.
    """
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    folder = dist.locate_file("")
    # By metadata folder: a folder listed twice on sys.path yields the same copy twice.
    same: dict[str, str] = {}
    for other in importlib.metadata.distributions(name=str(dist.name)):
        if other.locate_file("") == folder:
            # Where the distribution type keeps its metadata folder (a plain folder's does).
            metadata = getattr(getattr(other, "_path", None), "name", None) or f"version {other.version}"
            same.setdefault(metadata, other.version)
    if len(same) < 2:
        return None
    copies = ", ".join(f"{version} ({metadata})" for metadata, version in same.items())
    return (
        f"distribution {dist.name} has {len(same)} copies of its metadata in {folder}: {copies}; "
        "which one Python reads first depends on the file system, so the entry points used and the "
        "version a run records are not defined; expected one: delete the stale .dist-info folder there"
    )


def _ambiguity(kind: str, name: str, eps: list[EntryPoint]) -> str:
    providers = "; ".join(f"{_distribution_name(ep)} ({ep.value})" for ep in eps)
    return (
        f"registry {kind!r}: plugin name {name!r} is provided by {len(eps)} installed distributions: "
        f"{providers}. Which one a run would use is not defined, so the name is refused; expected "
        "one provider: uninstall the others (pip uninstall), or have one register another name"
    )


def _close_parameter(unknown: str, parameters: list[str]) -> str | None:
    """The parameter ``unknown`` most likely misspells, or None.

    Each parameter's ``_``-separated words are candidates too, so ``widht`` finds ``base_width``
    at the usual cutoff, which the whole name alone would only reach at one that also pairs
    unrelated names (``value`` with ``sampler``).
    """
    spellings = {p: p for p in parameters}
    for parameter in parameters:
        for word in parameter.split("_"):
            spellings.setdefault(word, parameter)
    close = difflib.get_close_matches(unknown, list(spellings), n=1, cutoff=CLOSE_MATCH_CUTOFF)
    return spellings[close[0]] if close else None


class Registry(Generic[T]):
    """A name -> factory mapping for one kind of component.

    Args:
        kind: The component kind, e.g. ``"samplers"``; the entry-point group is
            ``inpaintssl.<kind>``.
        package: The package whose import registers the built-in components: its ``__init__``
            imports every module holding a decorated component. It is imported on the first
            lookup, so ``import inpaintssl.registry`` stays cheap and the registry module imports
            nothing above it.
        component: ``"module:qualname"`` of the type every factory builds (the registry's type
            parameter, checked by the tests); see :meth:`component_type`.

    Example:
        >>> reg: Registry[type] = Registry("widgets")
        >>> @reg.register("plain")
        ... class Plain:
        ...     def __init__(self, size: int = 1) -> None:
        ...         self.size = size
        >>> reg.build("plain", size=3).size
        3
    """

    def __init__(self, kind: str, *, package: str | None = None, component: str = "builtins:object") -> None:
        self.kind = kind
        self.group = f"inpaintssl.{kind}"
        self.package = package
        self.component = component
        self._builtins: dict[str, Callable[..., T]] = {}
        self._plugins: dict[str, Callable[..., T]] = {}
        # Built-in names already checked for a same-named plugin, with the import path they were
        # checked under: scanning the installed distributions costs milliseconds, and a config
        # validation asks for names many times. A changed sys.path (a plugin folder added) rescans.
        self._shadow_checked: dict[str, tuple[str, ...]] = {}
        self._builtins_loaded = package is None
        self._lock = threading.RLock()

    def component_type(self) -> type:
        """Import and return the type every factory of this registry builds.

        Example:
            >>> from inpaintssl.registry import BACKBONES
            >>> BACKBONES.component_type()
            <class 'torch.nn.modules.module.Module'>
        """
        module, _, qualname = self.component.partition(":")
        found: object = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        if not isinstance(found, type):
            raise TypeError(f"registry {self.kind!r}: component {self.component!r} is not a type")
        return found

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that registers a built-in factory (a class or function) under ``name``.

        The factory is returned unchanged but for one attribute, ``__inpaintssl_registry__``
        (see :func:`registrations`), by which the tests find components left unregistered.

        Registering the same object again changes nothing. In an interactive session (a notebook
        or a REPL) a cell that defines and registers a factory may run again: the same
        ``__main__`` qualified name replaces the earlier definition there. Anything else under a
        taken name is refused, two definitions of one name in a module or script included.

        The registry's built-ins are loaded first, so a taken built-in name is refused (and a
        name freed with :meth:`unregister` is not taken back by the built-in loaded later).

        Raises:
            ValueError: If ``name`` is already registered to another factory or is not a valid
                identifier-like name.
        """
        if not name or not all(ch.isalnum() or ch in "_-." for ch in name):
            raise ValueError(
                f"registry {self.kind!r}: name must be non-empty and use letters, digits, "
                f"'_', '-' or '.', got {name!r}"
            )

        def decorator(factory: F) -> F:
            # Before the check: registered ahead of the built-ins, a built-in's name was taken, and
            # the built-in's own registration then failed the package import, losing the others.
            self._load_builtins()
            with self._lock:
                existing = self._builtins.get(name)
                if (
                    existing is not None
                    and existing is not factory
                    and not _rerun_cell(existing, factory)
                    and not _reloaded(existing, factory)
                ):
                    raise ValueError(
                        f"registry {self.kind!r}: name {name!r} is already registered "
                        f"to {_qualname(existing)}; cannot register {_qualname(factory)} "
                        f"(call {self.kind.upper()}.unregister({name!r}) first to replace it)"
                    )
                self._builtins[name] = factory  # type: ignore[assignment]
            # An extension type or bound method takes no attributes; it is registered all the same.
            with contextlib.suppress(AttributeError, TypeError):
                setattr(factory, REGISTERED_AS, (*registrations(factory), (self.kind, name)))
            return factory

        return decorator

    def unregister(self, name: str) -> None:
        """Remove a built-in or cached plugin name (for tests and interactive use).

        The registry's built-ins are loaded first, so a built-in removed to be replaced stays
        removed.
        """
        # Removing a built-in not loaded yet removed nothing: its loading registered it again later.
        self._load_builtins()
        with self._lock:
            self._builtins.pop(name, None)
            self._plugins.pop(name, None)
            self._shadow_checked.pop(name, None)

    # -- lookup -------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        """Import the package that registers the built-ins, once it imports in full.

        Not under the registry's lock: Python's import lock already makes other threads wait for
        an import under way, and a thread importing the package itself (whose modules register
        while it runs) would otherwise wait for a lock held by the thread waiting for its import.
        """
        if self._builtins_loaded or self.package is None:
            return
        # A built-in module registering while the package is imported gets the package as run so
        # far (Python hands an import under way in this thread back, which ends the recursion);
        # only a complete import counts, and a failed one raises and is tried again next time.
        package = importlib.import_module(self.package)
        if not getattr(getattr(package, "__spec__", None), "_initializing", False):
            self._builtins_loaded = True

    def _entry_points(self, name: str | None = None) -> list[EntryPoint]:
        if name is None:
            return list(entry_points(group=self.group))
        return list(entry_points(group=self.group, name=name))

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory registered as ``name``.

        Built-ins, and the optional backbones inpaintssl ships as entry points of its own
        distribution, win over a plugin of the same name (the plugin is ignored, with a warning
        the first time the name is asked for under the current ``sys.path``). Two plugins of one
        name from different distributions are refused: which one is found first depends on the
        file system, so a run could silently change component. A plugin is imported once and
        then served from memory. A plugin whose module also registers its factory with the
        decorator stays that plugin (its origin names its distribution), not a built-in that
        shadows itself.

        Raises:
            KeyError: If no built-in or installed plugin has that name; the message lists close
                matches and every available name.
            PluginLoadError: If the plugin's entry point fails to import, or two distributions
                provide the name (the message names both).
        """
        if not isinstance(name, str):
            raise TypeError(f"registry {self.kind!r}: name must be a str, got {type(name).__name__}")
        self._load_builtins()
        if name in self._builtins:
            search_path = tuple(sys.path)
            if self._shadow_checked.get(name) != search_path:
                eps = self._entry_points(name)
                own = self._own_entry_point(self._builtins[name], eps)
                if own is None:
                    self._warn_shadowed(name, eps, "a built-in")
                else:
                    # The plugin's module registered it with the decorator too: that is the plugin
                    # itself, not a built-in it clashes with; only other providers are ignored.
                    winner = f"the plugin {own.value} from {_distribution_name(own)}"
                    others = [ep for ep in eps if ep is not own]
                    self._warn_shadowed(name, others, winner, used=f"plugin from {_distribution_name(own)}")
                self._shadow_checked[name] = search_path
            return self._builtins[name]
        if name in self._plugins:
            return self._plugins[name]
        eps = self._entry_points(name)
        if not eps:
            raise KeyError(self._unknown_message(name))
        chosen = self._choose(name, eps)
        self._warn_shadowed(name, [ep for ep in eps if ep is not chosen], "a backbone inpaintssl ships")
        return self._load_plugin(chosen)

    def _choose(self, name: str, eps: list[EntryPoint]) -> EntryPoint:
        """The entry point a name resolves to among installed ones: inpaintssl's own, or the only one."""
        bundled = [ep for ep in eps if _bundled(ep)]
        if bundled:
            return bundled[0]
        if len(eps) > 1:
            raise PluginLoadError(_ambiguity(self.kind, name, eps), reason=_ambiguity(self.kind, name, eps))
        return eps[0]

    def _warn_shadowed(self, name: str, eps: list[EntryPoint], winner: str, *, used: str = "") -> None:
        used = used or winner.removeprefix("a ")
        for ep in eps:
            warn_each_time(
                f"registry {self.kind!r}: plugin {name!r} from {_distribution_name(ep)} "
                f"({ep.value}) has the same name as {winner}; the {used} is used",
                ShadowedPluginWarning,
            )

    @staticmethod
    def _own_entry_point(factory: object, eps: list[EntryPoint]) -> EntryPoint | None:
        """The entry point among ``eps`` that names ``factory`` itself, if any.

        A plugin module may register its component with the decorator as well as name it in an
        entry point (the decorator then works in a notebook without installing). Once the entry
        point imported the module, the decorated factory is that plugin's, not a built-in. Only
        modules imported already are looked at: telling this must not import another plugin.
        """
        return next((ep for ep in eps if _entry_point_object(ep) is factory), None)

    def _load_plugin(self, ep: EntryPoint) -> Callable[..., T]:
        where = f"registry {self.kind!r}: plugin {ep.name!r} ({ep.value})"
        where += f" from distribution {_distribution_name(ep)}"
        duplicated = _copies_in_one_folder(ep)
        if duplicated:
            raise PluginLoadError(f"{where} is refused: {duplicated}", reason=duplicated)
        try:
            factory = ep.load()
        # SystemExit too: a training script made a plugin module (argparse's parse_args() at module
        # level) exits as it is imported, which ended `inpaintssl plugins` or a run with the plugin's
        # usage text. KeyboardInterrupt still stops the process, as the user asked.
        except (Exception, SystemExit) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, SystemExit):
                error += (
                    " (its module exits as it is imported, as argparse's parse_args() or sys.exit() at "
                    "module level do; expected a module that only defines its components)"
                )
            raise PluginLoadError(
                f"{where} failed to load: {error}", reason=f"fails to import: {error}"
            ) from exc
        if not callable(factory):
            # Pointing the entry point at an instance (GRID = GridSampler()) is the usual cause.
            reason = (
                f"is not callable (got {type(factory).__name__}); expected a class or factory function, "
                "which the registry calls with the component's parameters"
            )
            raise PluginLoadError(f"{where} {reason}", reason=reason)
        with self._lock:
            self._plugins[ep.name] = factory
        return factory  # type: ignore[no-any-return]

    def build(self, name: str, /, **params: Any) -> T:
        """Look up ``name`` and call its factory with keyword ``params``.

        The parameters are bound to the factory's signature first, so a misspelt or missing
        parameter is reported as such; an exception raised while the factory runs (a
        ``TypeError`` included) propagates unchanged, with its own traceback, because it is a
        problem inside the component, not in what was passed.

        What the factory returns must be an instance of the registry's :meth:`component_type`
        (a backbone an ``nn.Module``, a sampler an object with ``sample``, ...), so a plugin that
        builds something else fails here, named, not at its first use deep inside a run.

        Raises:
            KeyError: Unknown name (see :meth:`get`).
            TypeError: If ``params`` do not fit the factory's signature; the message names the
                component, the parameters given and those it accepts. Or if the factory built
                something other than the registry's component type; the message names the
                factory (and the plugin's distribution), what it built and what was expected.

        Example:
            >>> reg: Registry[object] = Registry("gadgets")
            >>> @reg.register("pair")
            ... def make_pair(*, left: int, right: int = 0) -> object:
            ...     return (left, right)
            >>> reg.build("pair", left=1)
            (1, 0)
            >>> reg.build("pair", left=1, rihgt=2)
            Traceback (most recent call last):
            ...
            TypeError: gadgets 'pair': invalid parameters ['rihgt'] (it accepts left, right; did you mean \
'rihgt' -> 'right'?): got an unexpected keyword argument 'rihgt'
        """
        return self._build(name, params)

    def build_from(
        self, name: str, params: Mapping[str, Any], /, *, field: str, set_by_caller: Mapping[str, Any]
    ) -> T:
        """:meth:`build` with ``params`` from the config field ``field`` and ``set_by_caller`` from the code.

        What a run does: the user's parameters (``data.params``) beside the ones the run passes
        itself (a dataset's ``split``, a backbone's channel counts). A misfit is said of the field
        the user wrote, and the run's own parameters are not offered as what it accepts.

        Args:
            name: Registered name.
            params: The user's parameters, as the config field ``field`` holds them.
            field: Their dotted config path, for messages (``data.params``).
            set_by_caller: The parameters the caller passes itself; ``params`` may not repeat them.

        Raises:
            KeyError: Unknown name (see :meth:`get`).
            TypeError: ``params`` repeat a parameter the caller sets, or do not fit the factory's
                signature (the message names ``field``), or the factory built the wrong type.

        Example:
            >>> reg: Registry[object] = Registry("gadgets")
            >>> @reg.register("pair")
            ... def make_pair(*, left: int, right: int = 0) -> object:
            ...     return (left, right)
            >>> reg.build_from("pair", {"right": 2}, field="gadget.params", set_by_caller={"left": 1})
            (1, 2)
            >>> reg.build_from("pair", {"lfet": 2}, field="gadget.params", set_by_caller={"left": 1})
            Traceback (most recent call last):
            ...
            TypeError: gadget.params: gadgets 'pair': invalid parameters ['lfet'] (it accepts right; did \
you mean 'lfet' -> 'left', which the run sets itself?): got an unexpected keyword argument 'lfet'
        """
        self._refuse_repeated(name, params, field=field, set_by_caller=set_by_caller)
        return self._build(name, {**set_by_caller, **params}, field=field, set_by_caller=set_by_caller)

    def check_from(
        self, name: str, params: Mapping[str, Any], /, *, field: str, set_by_caller: Mapping[str, Any]
    ) -> None:
        """What :meth:`build_from` checks before it calls the factory, without calling it.

        For a run that builds the component only later (after its data): a misspelt name or
        parameter fails at once, in :meth:`build_from`'s words, and nothing is built or run.

        Raises:
            KeyError: Unknown name (see :meth:`get`).
            PluginLoadError: The plugin fails to load or is ambiguous (see :meth:`get`).
            TypeError: As :meth:`build_from`, for parameters that do not fit.

        Example:
            >>> reg: Registry[object] = Registry("gadgets")
            >>> @reg.register("pair")
            ... def make_pair(*, left: int, right: int = 0) -> object:
            ...     raise AssertionError("not called")
            >>> reg.check_from("pair", {"right": 2}, field="gadget.params", set_by_caller={"left": 1})
        """
        self._refuse_repeated(name, params, field=field, set_by_caller=set_by_caller)
        factory = self.get(name)
        self._bind(name, factory, {**set_by_caller, **params}, field=field, set_by_caller=set_by_caller)

    def _refuse_repeated(
        self, name: str, params: Mapping[str, Any], *, field: str, set_by_caller: Mapping[str, Any]
    ) -> None:
        repeated = [key for key in params if key in set_by_caller]
        if repeated:
            key = repeated[0]
            raise TypeError(
                f"{field}.{key}={params[key]!r}: {self.kind} {name!r} gets {key} from the run itself "
                f"({key}={set_by_caller[key]!r}); expected only its other parameters in {field}"
            )

    def _build(
        self,
        name: str,
        params: dict[str, Any],
        *,
        field: str | None = None,
        set_by_caller: Mapping[str, Any] = MappingProxyType({}),
    ) -> T:
        factory = self.get(name)
        self._bind(name, factory, params, field=field, set_by_caller=set_by_caller)
        built = factory(**params)
        expected = self.component_type()
        if not isinstance(built, expected):
            raise TypeError(
                f"{self.kind} {name!r} ({self._origin(name, factory)}) built a {_qualname(type(built))}"
                f"{_lacking(built, expected)}; expected a {_qualname(expected)} (the type every "
                f"{self.kind} factory returns)"
            )
        return built

    def _origin(self, name: str, factory: Callable[..., T]) -> str:
        eps = self._entry_points(name)
        if name in self._builtins:
            own = self._own_entry_point(factory, eps)
            return f"built-in {_qualname(factory)}" if own is None else _plugin_origin(own)
        if not eps:
            return _qualname(factory)
        return _plugin_origin(self._choose(name, eps))

    def origin(self, name: str) -> str:
        """Where ``name`` comes from: ``built-in module:qualname`` or the plugin and its distribution.

        For the run record (``manifest.json``): a plugin's distribution and version say which
        code built a component.

        Example:
            >>> from inpaintssl.registry import SAMPLERS
            >>> SAMPLERS.origin("random")
            'built-in inpaintssl.corruption.samplers:RandomSampler'
        """
        return self._origin(name, self.get(name))

    def _bind(
        self,
        name: str,
        factory: Callable[..., T],
        params: dict[str, Any],
        *,
        field: str | None = None,
        set_by_caller: Mapping[str, Any] = MappingProxyType({}),
    ) -> None:
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            return  # no introspectable signature (some extension types): the call itself decides
        try:
            signature.bind(**params)
        except TypeError as exc:
            # What the user can give: the caller's own parameters are not theirs to set.
            accepts = ", ".join(
                p.name if p.kind is not p.VAR_KEYWORD else f"**{p.name}"
                for p in signature.parameters.values()
                if p.kind is not p.VAR_POSITIONAL and p.name not in set_by_caller
            )
            named = {
                p.name: p
                for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            }
            open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
            # Name only the culprits: listing every parameter given made valid ones look wrong.
            unknown = [] if open_ended else sorted(k for k in params if k not in named)
            not_taken = [k for k in set_by_caller if k in unknown]
            if not_taken:
                # The run's own arguments are the factory's fault, not the config field's: saying
                # "data.params: invalid parameters ['labelled']" blamed a field the user never set.
                passed = ", ".join(f"{k}={set_by_caller[k]!r}" for k in not_taken)
                raise TypeError(
                    f"{self.kind} {name!r} ({self._origin(name, factory)}) does not accept "
                    f"{', '.join(not_taken)}, which the run passes itself ({passed}); expected a "
                    f"factory that takes {', '.join(set_by_caller)}"
                    + (f" beside the parameters of {field}" if field else "")
                    + f", found the signature {signature}"
                ) from exc
            missing = [k for k, p in named.items() if p.default is p.empty and k not in params]
            accepted = accepts or "no parameters"
            problems = []
            if unknown:
                close = {u: _close_parameter(u, list(named)) for u in unknown}
                hints = [
                    f"{u!r} -> {c!r}" + (", which the run sets itself" if c in set_by_caller else "")
                    for u, c in close.items()
                    if c
                ]
                guess = f"; did you mean {', '.join(hints)}?" if hints else ""
                problems.append(f"invalid parameters {unknown} (it accepts {accepted}{guess})")
            if missing:
                problems.append(f"missing parameters {missing} (it accepts {accepted})")
            if not problems:  # something bind() refuses that is neither (a positional-only name)
                problems.append(f"invalid parameters {sorted(params)} (it accepts {accepted})")
            where = f"{field}: " if field else ""
            # A plugin's own parameters are its author's: say which package to read (at the end,
            # so the message starts as every component's does).
            found = self._origin(name, factory)
            origin = "" if found.startswith("built-in ") else f" [{found}]"
            raise TypeError(f"{where}{self.kind} {name!r}: {'; '.join(problems)}: {exc}{origin}") from exc

    def names(self) -> list[str]:
        """Sorted names of built-ins and installed plugins (plugins are not imported)."""
        self._load_builtins()
        found = set(self._builtins) | set(self._plugins)
        found.update(ep.name for ep in self._entry_points())
        return sorted(found)

    def entries(self, *, check: bool = False) -> list[RegistryEntry]:
        """One row per name: the entry :meth:`get` uses, with the entries it shadows.

        A built-in (or a backbone inpaintssl ships) shadows any plugin of its name; two plugins
        of one name make it ``broken`` (refused as ambiguous, the first listed with the others
        in its ``shadowed``). Shadowed entries are listed in the winner's ``shadowed`` with the
        reason, since they are otherwise invisible.

        Args:
            check: Import every winning plugin to tell ``ok`` from ``broken`` (with the
                reason). Without it no plugin is imported and those not loaded yet are
                ``unchecked``.

        Example:
            >>> from inpaintssl.registry import SAMPLERS
            >>> [(e.name, e.source, e.status) for e in SAMPLERS.entries() if e.name == "random"]
            [('random', 'builtin', 'ok')]
        """
        self._load_builtins()
        rows: dict[str, RegistryEntry] = {
            name: RegistryEntry(name, "builtin", _qualname(factory))
            for name, factory in self._builtins.items()
        }
        losers: dict[str, list[RegistryEntry]] = {}
        by_name: dict[str, list[EntryPoint]] = {}
        for ep in self._entry_points():
            by_name.setdefault(ep.name, []).append(ep)
        for name, eps in by_name.items():
            builtin = self._builtins.get(name)
            own = None if builtin is None else self._own_entry_point(builtin, eps)
            if own is not None:
                # The decorator in the plugin's own module registered it (see get): the plugin's row.
                rows[name] = RegistryEntry(name, "plugin", _entry_point_target(own), _distribution_name(own))
            ambiguous = name not in rows and len(eps) > 1 and not any(_bundled(ep) for ep in eps)
            first = own or next((ep for ep in eps if _bundled(ep)), eps[0])
            if name not in rows:
                row = RegistryEntry(name, "plugin", _entry_point_target(first), _distribution_name(first))
                if ambiguous:
                    reason = _ambiguity(self.kind, name, eps).split(": ", 1)[1]
                    rows[name] = dataclasses.replace(row, status="broken", reason=reason)
                else:
                    rows[name] = self._checked(row, first) if check else self._loaded_status(row)
            winner = rows[name]
            for ep in eps:
                if ep is first and winner.source == "plugin":
                    continue
                if ambiguous:
                    reason = f"also provided by {winner.distribution} ({winner.target}): the name is refused"
                else:
                    who = (
                        "the built-in"
                        if winner.source == "builtin"
                        else f"the plugin from {winner.distribution}"
                    )
                    reason = f"shadowed by {who} {winner.target} of the same name, which is used instead"
                losers.setdefault(name, []).append(
                    RegistryEntry(
                        name, "plugin", _entry_point_target(ep), _distribution_name(ep), "shadowed", reason
                    )
                )
        for name, factory in self._plugins.items():
            rows.setdefault(name, RegistryEntry(name, "plugin", _qualname(factory)))
        for name, shadowed in losers.items():
            rows[name] = dataclasses.replace(rows[name], shadowed=tuple(shadowed))
        return [rows[n] for n in sorted(rows)]

    def _loaded_status(self, row: RegistryEntry) -> RegistryEntry:
        status: RegistryStatus = "ok" if row.name in self._plugins else "unchecked"
        return dataclasses.replace(row, status=status)

    def _checked(self, row: RegistryEntry, ep: EntryPoint) -> RegistryEntry:
        try:
            factory = self._load_plugin(ep)
        except PluginLoadError as exc:
            return dataclasses.replace(row, status="broken", reason=exc.reason)
        # A class can be checked without building it; a factory function only by calling it
        # (build() does), which needs its parameters.
        expected = self.component_type()
        if isinstance(factory, type) and not issubclass(factory, expected):
            reason = (
                f"is a class that is not a {_qualname(expected)}{_lacking(factory, expected)}: "
                "build() would refuse it"
            )
            return dataclasses.replace(row, status="broken", reason=reason)
        missing = _missing_requirements(factory)
        if missing:
            return dataclasses.replace(row, status="unavailable", reason=missing)
        return dataclasses.replace(row, status="ok")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def _unknown_message(self, name: str) -> str:
        available = self.names()
        close = difflib.get_close_matches(name, available, n=3, cutoff=CLOSE_MATCH_CUTOFF)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} name {name!r}.{hint} Available: {', '.join(available) or 'none'}. "
            f"Plugins register under the entry-point group {self.group!r}."
        )


def _lacking(found: object, expected: type) -> str:
    """What ``found`` lacks of the protocol ``expected`` (``", without sample"``); empty otherwise.

    A protocol (a sampler: any object with ``sample``) is met by its members, not by a base
    class, so "is not a Sampler" alone leaves a plugin author guessing what to add.
    """
    if not getattr(expected, "_is_protocol", False):
        return ""
    members = sorted(
        {n for n in vars(expected) if not n.startswith("_")} | set(getattr(expected, "__annotations__", {}))
    )
    missing = [m for m in members if not hasattr(found, m)]
    return f", without {', '.join(missing)}" if missing else ""


def _missing_requirements(factory: object) -> str | None:
    """What a factory's ``requires`` names that is not installed, as advice; ``None`` if nothing."""
    requires = getattr(factory, REQUIRES_ATTRIBUTE, None)
    if not isinstance(requires, Mapping):
        return None
    missing = {}
    for module, provider in requires.items():
        try:
            found = importlib.util.find_spec(str(module)) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing[str(module)] = str(provider)
    if not missing:
        return None
    providers = " ".join(sorted({f"'{p}'" for p in missing.values()}))
    return f"needs {', '.join(sorted(missing))}, not installed: pip install {providers}"


def _interactive() -> bool:
    """Whether Python runs a REPL or a notebook kernel (where cells are re-run), not a script."""
    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or "IPython" in sys.modules


def _rerun_cell(existing: object, factory: object) -> bool:
    """Whether ``factory`` is ``existing``'s definition run again in an interactive session."""
    same = _qualname(existing) == _qualname(factory)
    in_session = getattr(factory, "__module__", None) == "__main__" and "<lambda>" not in _qualname(factory)
    return same and in_session and _interactive()


def _reloaded(existing: object, factory: object) -> bool:
    """Whether ``factory`` is ``existing``'s definition executed again by a module reload.

    ``importlib.reload`` (or IPython's ``%autoreload``) runs a plugin module's registrations a
    second time. Same module, name and source file, and the same first line (an unchanged file)
    or an interactive session (where an edited module is reloaded); two definitions under one
    name in one file start on different lines and stay refused.
    """
    if _qualname(existing) != _qualname(factory) or "<lambda>" in _qualname(factory):
        return False
    source = _source_position(factory, check_file=True)
    earlier = _source_position(existing)
    if source is None or earlier is None or source[0] != earlier[0]:
        return False
    return source[1] == earlier[1] or _interactive()


def _source_position(obj: object, *, check_file: bool = False) -> tuple[str, int] | None:
    """The file that defines ``obj`` and its first line there; ``None`` for code without a file.

    With ``check_file``, the block found there must also define ``obj``'s name, which holds for a
    definition just executed (not for an earlier one whose file has since been edited): Python
    3.13 takes a class's first line from its ``__firstlineno__`` without reading the file, so a
    class made by ``exec`` under ``__main__`` mapped onto line 1 of whatever file ``__main__`` is
    (pytest's, a script's), and two such classes looked like one definition run twice.
    """
    try:
        path = inspect.getsourcefile(obj)  # type: ignore[arg-type]
        lines, line = inspect.getsourcelines(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None
    if path is None:
        return None
    if inspect.isclass(obj) and _class_definitions(path, obj.__qualname__) > 1:
        # Before Python 3.13 inspect finds a class by its name in the file and gives the first
        # definition's line for every one of them: two classes would look like one run twice.
        return None
    if check_file:
        name = getattr(obj, "__name__", None)
        if not isinstance(name, str) or not re.search(
            rf"\b(?:class|def)\s+{re.escape(name)}\b", "".join(lines)
        ):
            return None
    return path, line


def _class_definitions(path: str, qualname: str) -> int:
    """How many class statements in the file ``path`` define a class of that ``__qualname__``."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return 0
    count = 0
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                count += prefix + child.name == qualname
                stack.append((child, f"{prefix}{child.name}."))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                stack.append((child, f"{prefix}{child.name}.<locals>."))
            else:
                stack.append((child, prefix))
    return count


def _qualname(obj: object) -> str:
    module = getattr(obj, "__module__", "?")
    qual = getattr(obj, "__qualname__", repr(obj))
    return f"{module}:{qual}"


PRETEXT_TASKS: Registry[PretextTask] = Registry(
    "pretext_tasks", package="inpaintssl.corruption", component="inpaintssl.corruption.base:PretextTask"
)
SAMPLERS: Registry[Sampler] = Registry(
    "samplers", package="inpaintssl.corruption", component="inpaintssl.corruption.samplers:Sampler"
)
BACKBONES: Registry[nn.Module] = Registry(
    "backbones", package="inpaintssl.models", component="torch.nn:Module"
)
LOSSES: Registry[nn.Module] = Registry("losses", package="inpaintssl.losses", component="torch.nn:Module")
TRANSFER_STRATEGIES: Registry[TransferStrategy] = Registry(
    "transfer_strategies",
    package="inpaintssl.transfer_learning",
    component="inpaintssl.transfer_learning.strategies:TransferStrategy",
)
DATASETS: Registry[SliceDataset] = Registry(
    "datasets", package="inpaintssl.data", component="inpaintssl.data.base:SliceDataset"
)

REGISTRIES: Mapping[str, Registry[Any]] = MappingProxyType(
    {
        "pretext_tasks": PRETEXT_TASKS,
        "samplers": SAMPLERS,
        "backbones": BACKBONES,
        "losses": LOSSES,
        "transfer_strategies": TRANSFER_STRATEGIES,
        "datasets": DATASETS,
    }
)
"""Every registry by kind (read-only)."""
