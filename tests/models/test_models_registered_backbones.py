"""Every registered backbone, plugins included, passes the backbone contract at its defaults.

A plugin therefore gets tested by this suite the moment it is installed; its authors can run the
same checks with their own settings by subclassing :class:`inpaintssl.testing.BackboneContract`.
"""

from __future__ import annotations

import functools
import importlib.util

import pytest

from inpaintssl.registry import BACKBONES, REQUIRES_ATTRIBUTE, RegistryEntry, RegistryStatus
from inpaintssl.testing import BackboneContract


def _contract(name: str) -> BackboneContract:
    return type(f"Contract_{name}", (BackboneContract,), {"backbone": name})()


@functools.cache
def _entries() -> dict[str, RegistryEntry]:
    # check=True imports each plugin once, so that a missing extra reads "unavailable" and a
    # plugin that fails to import reads "broken" instead of raising here.
    return {entry.name: entry for entry in BACKBONES.entries(check=True)}


def _shipped(entry: RegistryEntry) -> bool:
    """Whether inpaintssl itself provides ``entry``: a built-in, or an entry point of its own distribution."""
    return entry.source == "builtin" or (entry.distribution or "").partition(" ")[0] == "inpaintssl"


def _skip_reason(entry: RegistryEntry) -> str | None:
    """Why backbone ``entry`` is left unchecked here, or None when it must pass the contract.

    Only a package the factory declares in ``requires`` and that is not installed excuses it: any
    other import error (a broken plugin, a typo in an import, a built-in's own bug) is a failure,
    since skipping it would hide exactly what this suite is for. A built-in never skips: it is
    importable wherever inpaintssl is.
    """
    if entry.source != "builtin" and entry.status == "unavailable":
        return entry.reason or "a required package is not installed"
    return None


@pytest.mark.parametrize("check", BackboneContract.check_names())
@pytest.mark.parametrize("name", BACKBONES.names())
def test_registered_backbone_keeps_the_contract(name: str, check: str) -> None:
    reason = _skip_reason(_entries()[name])
    if reason is not None:
        pytest.skip(reason)
    getattr(_contract(name), check)()


def test_only_a_declared_missing_requirement_skips() -> None:
    def entry(source: str, status: RegistryStatus) -> RegistryEntry:
        distribution = None if source == "builtin" else "some-plugin 1.0"
        return RegistryEntry("x", source, "m:X", distribution, status, "needs foo")

    assert _skip_reason(entry("plugin", "unavailable")) == "needs foo"
    # A broken plugin is checked, so that building it fails with the import error.
    assert _skip_reason(entry("plugin", "broken")) is None
    assert _skip_reason(entry("plugin", "ok")) is None
    assert _skip_reason(entry("builtin", "ok")) is None
    assert _skip_reason(entry("builtin", "unavailable")) is None


def test_shipped_backbones_whose_requirements_are_installed_are_checked() -> None:
    shipped = [entry for entry in _entries().values() if _shipped(entry)]
    assert "unet2d" in {entry.name for entry in shipped}
    for entry in shipped:
        requires = getattr(BACKBONES.get(entry.name), REQUIRES_ATTRIBUTE, None) or {}
        installed = all(importlib.util.find_spec(module) is not None for module in requires)
        checked = _skip_reason(entry) is None
        assert checked == (installed or entry.source == "builtin"), (entry, dict(requires))


def test_the_contract_has_the_acceptance_checks() -> None:
    # The acceptance list: output shape, parts cover every parameter, determinism under a
    # seed, gradient flow, channels_last equal to the default layout.
    required = {
        "test_output_shape",
        "test_parts_cover_every_parameter",
        "test_seed_is_deterministic",
        "test_gradient_flows_to_every_parameter",
        "test_channels_last_matches_default",
    }
    assert required <= set(BackboneContract.check_names())
