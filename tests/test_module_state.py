"""No hidden globals: modules hold no mutable containers at module level (issue 17, item 4).

A module-level dict, list, set or writable array is state every caller shares: one caller's
change reaches all the others (and every thread). Constants are tuples, frozensets or
``types.MappingProxyType``; the registries and ``functools`` caches are the only shared state, by
design. The walk imports every module of the package and inspects its globals.
"""

from __future__ import annotations

import collections
import importlib
import pkgutil
import types
from collections.abc import Iterator

import numpy as np
import torch

import inpaintssl
from inpaintssl.registry import Registry

MUTABLE = dict | list | set | bytearray | collections.deque

# Globals still mutable in packages being moved by another change (issue 17's restructuring);
# each is to become a tuple, frozenset or MappingProxyType there. Keep this list short.
PENDING: set[str] = set()


def mutable_globals(module: types.ModuleType) -> Iterator[str]:
    """Names of ``module``'s globals that hold mutable containers or writable arrays."""
    for name, value in vars(module).items():
        if name.startswith("__") and name.endswith("__"):
            continue  # __all__, __path__, __annotations__, __builtins__: the interpreter's
        if isinstance(value, Registry | type):
            continue
        writable_array = isinstance(value, np.ndarray) and value.flags.writeable
        if isinstance(value, MUTABLE | torch.Tensor) or writable_array:
            yield name


def _all_modules() -> Iterator[types.ModuleType]:
    yield inpaintssl
    for info in pkgutil.walk_packages(inpaintssl.__path__, "inpaintssl."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it is what importing it does
        yield importlib.import_module(info.name)


def test_the_check_flags_mutable_containers_and_passes_constants() -> None:
    module = types.ModuleType("probe")
    module.__dict__.update(
        TABLE={"a": 1},
        NAMES=["a"],
        SEEN=set(),
        WEIGHTS=np.zeros(2),
        KERNEL=torch.zeros(1),
        FIXED=(1, 2),
        KNOWN=frozenset({"a"}),
        VIEW=types.MappingProxyType({"a": 1}),
        FROZEN=np.zeros(2),
        REG=Registry("probe_state"),
    )
    module.FROZEN.flags.writeable = False
    assert sorted(mutable_globals(module)) == ["KERNEL", "NAMES", "SEEN", "TABLE", "WEIGHTS"]


def test_no_module_holds_mutable_state_outside_the_registries() -> None:
    found = set()
    for module in _all_modules():
        found.update(f"{module.__name__}:{name}" for name in mutable_globals(module))
    unexpected = sorted(found - PENDING)
    assert not unexpected, (
        "make these constants tuples, frozensets or types.MappingProxyType (or pass the state "
        "explicitly):\n" + "\n".join(unexpected)
    )


def test_pending_entries_are_still_needed() -> None:
    # An entry fixed or moved away is dropped from PENDING, so the list only shrinks.
    found = set()
    for module in _all_modules():
        found.update(f"{module.__name__}:{name}" for name in mutable_globals(module))
    stale = sorted(PENDING - found)
    assert not stale, "remove from PENDING (fixed or gone):\n" + "\n".join(stale)
