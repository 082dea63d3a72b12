"""One way to register a built-in, and nothing left unregistered (issue 17, item 5).

A built-in component registers with the ``@REGISTRY.register(name)`` decorator, in a module that
its package's ``__init__`` imports; the registry imports that package on its first lookup. These
tests walk every module of the registries' packages, find what looks like a component (a
subclass of a component base, or a backbone-shaped module) and fail when one is neither
registered nor declared internal, or when its module is not loaded by the registry's import.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from torch import nn
from typing_extensions import assert_type  # typing.assert_type is new in Python 3.11

import inpaintssl.registry as registry_module
from inpaintssl.corruption.base import PretextTask
from inpaintssl.corruption.samplers import Sampler
from inpaintssl.data.base import SliceDataset
from inpaintssl.losses.base import SegmentationLoss
from inpaintssl.registry import (
    BACKBONES,
    LOSSES,
    PRETEXT_TASKS,
    REGISTRIES,
    SAMPLERS,
    TRANSFER_STRATEGIES,
    Registry,
    registrations,
)
from inpaintssl.transfer_learning.strategies import TransferStrategy

# Component-shaped classes that are deliberately not registry entries, each with the reason.
INTERNAL = {
    "inpaintssl.models.external._parts:ThreePartBackbone": "base of the entry-point backbones",
}
# Modules whose component-shaped classes are all internal.
INTERNAL_MODULES = {
    "inpaintssl.data.views": "views over datasets a run already built (subsets, resizing, supersets)",
}


def _modules(package: str) -> Iterator[types.ModuleType]:
    root = importlib.import_module(package)
    yield root
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        yield importlib.import_module(info.name)


def _defined_classes(module: types.ModuleType) -> Iterator[type]:
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module.__name__:
            yield value


def _keyword_only(cls: type, *names: str) -> bool:
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False
    return all(n in parameters and parameters[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names)


def component_kind(cls: type) -> str | None:
    """The registry a class looks like it belongs to, or ``None`` (abstract bases excluded)."""
    if inspect.isabstract(cls) or getattr(cls, "_is_protocol", False):
        return None
    if issubclass(cls, PretextTask):
        return "pretext_tasks"
    if issubclass(cls, SliceDataset) and cls is not SliceDataset:
        return "datasets"
    if issubclass(cls, TransferStrategy) and cls is not TransferStrategy:
        return "transfer_strategies"
    if issubclass(cls, nn.Module) and cls.__module__.startswith("inpaintssl.losses."):
        return "losses"
    if issubclass(cls, nn.Module) and _keyword_only(cls, "in_channels", "out_channels"):
        return "backbones"
    if cls.__module__.startswith("inpaintssl.corruption.") and callable(getattr(cls, "sample", None)):
        return "samplers"
    return None


def _entry_point_targets() -> set[str]:
    """``module:qualname`` of every entry point this distribution declares (its plugins)."""
    found = set()
    for kind in REGISTRIES:
        for ep in entry_points(group=f"inpaintssl.{kind}"):
            if ep.value.startswith("inpaintssl."):
                found.add(ep.value)
    return found


def _covered(packages: list[str]) -> set[str]:
    """Classes a decorator registered, or that a decorated factory function is declared to return."""
    covered = set()
    for package in packages:
        for module in _modules(package):
            for value in vars(module).values():
                if not registrations(value) or getattr(value, "__module__", None) != module.__name__:
                    continue
                covered.add(f"{value.__module__}:{value.__qualname__}")
                if inspect.isfunction(value):
                    returned = typing.get_type_hints(value).get("return")
                    if isinstance(returned, type):
                        covered.add(f"{returned.__module__}:{returned.__qualname__}")
    return covered


def unregistered(packages: list[str]) -> list[str]:
    """``module:qualname (kind)`` of each component-shaped class nobody registered."""
    covered = _covered(packages) | _entry_point_targets() | set(INTERNAL)
    missing = []
    for package in packages:
        for module in _modules(package):
            for cls in _defined_classes(module):
                kind = component_kind(cls)
                target = f"{cls.__module__}:{cls.__qualname__}"
                internal = cls.__name__.startswith("_") or cls.__module__ in INTERNAL_MODULES
                if kind is not None and not internal and target not in covered:
                    missing.append(f"{target} ({kind})")
    return sorted(missing)


PACKAGES = sorted({r.package for r in REGISTRIES.values() if r.package is not None})


def test_every_registry_names_a_package_and_a_component_type() -> None:
    assert PACKAGES == [
        "inpaintssl.corruption",
        "inpaintssl.data",
        "inpaintssl.losses",
        "inpaintssl.models",
        "inpaintssl.transfer_learning",
    ]
    for registry in REGISTRIES.values():
        assert isinstance(registry.component_type(), type)


def test_no_component_is_left_unregistered() -> None:
    missing = unregistered(PACKAGES)
    assert not missing, (
        "register these with @<REGISTRY>.register(name), or list them in INTERNAL with the reason:\n"
        + "\n".join(missing)
    )


def test_internal_entries_exist_and_look_like_components() -> None:
    for target in INTERNAL:
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert component_kind(cls) is not None or inspect.isabstract(cls), target


def test_the_finder_flags_an_undecorated_component(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check itself can fail: a throwaway package with one registered and one forgotten dataset.
    package = tmp_path / "issl_registration_probe"
    package.mkdir()
    (package / "__init__.py").write_text("from issl_registration_probe import sets  # noqa: F401\n")
    (package / "sets.py").write_text(
        textwrap.dedent(
            """
            from inpaintssl.data.base import SliceDataset
            from inpaintssl.registry import Registry

            PROBE: Registry[SliceDataset] = Registry("probe_datasets")

            @PROBE.register("kept")
            class Kept(SliceDataset):
                pass

            class Forgotten(SliceDataset):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert unregistered(["issl_registration_probe"]) == ["issl_registration_probe.sets:Forgotten (datasets)"]


def test_the_registry_import_alone_loads_every_module_holding_a_builtin() -> None:
    # In a fresh process, the lookups load only what the packages' __init__ files import: a
    # decorated component in a module nothing imports would silently be missing.
    probe = (
        "import json, sys\n"
        "from inpaintssl.registry import REGISTRIES\n"
        "names = {kind: r.names() for kind, r in REGISTRIES.items()}\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'names': names}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    for package in PACKAGES:
        for module in _modules(package):
            for value in vars(module).values():
                for kind, name in (
                    registrations(value) if getattr(value, "__module__", None) == module.__name__ else ()
                ):
                    assert module.__name__ in fresh["modules"], f"{module.__name__} is never imported"
                    assert name in fresh["names"][kind], f"{kind} {name!r} missing after a fresh lookup"


def test_the_decorator_marks_what_it_registers_and_not_subclasses() -> None:
    registry: Registry[object] = Registry("marks_test")

    @registry.register("base")
    class Base:
        pass

    class Child(Base):
        pass

    assert registrations(Base) == (("marks_test", "base"),)
    assert registrations(Child) == ()
    registry.register("again")(Base)
    assert registrations(Base) == (("marks_test", "base"), ("marks_test", "again"))


# -- the registries' type parameters ----------------------------------------------------------


def test_declared_type_parameters_match_the_component_types() -> None:
    declared = inspect.get_annotations(registry_module)
    for kind, registry in REGISTRIES.items():
        variable = kind.upper()
        component = registry.component.rpartition(":")[2]
        assert declared[variable] == f"Registry[{'nn.' if component == 'Module' else ''}{component}]", kind


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_builtin_factory_builds_its_registrys_type(kind: str) -> None:
    registry = REGISTRIES[kind]
    expected = registry.component_type()
    for entry in registry.entries():
        if entry.source != "builtin":
            continue
        factory = registry.get(entry.name)
        built = factory if isinstance(factory, type) else typing.get_type_hints(factory)["return"]
        assert isinstance(built, type) and issubclass(built, expected), (kind, entry.name, built)


def test_built_components_have_the_declared_types() -> None:
    # What mypy sees (assert_type) is what the objects are at run time.
    backbone = assert_type(
        BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0), nn.Module
    )
    sampler = assert_type(SAMPLERS.build("random"), Sampler)
    task = assert_type(PRETEXT_TASKS.build("context_prediction", bank_size=1), PretextTask)
    loss = assert_type(LOSSES.build("dice"), nn.Module)
    strategy = assert_type(TRANSFER_STRATEGIES.build("encoder"), TransferStrategy)
    assert isinstance(backbone, nn.Module) and isinstance(sampler, Sampler)
    assert isinstance(task, PretextTask) and isinstance(loss, SegmentationLoss)
    assert isinstance(strategy, TransferStrategy)
    assert backbone(torch.zeros(1, 1, 4, 4)).shape == (1, 1, 4, 4)
