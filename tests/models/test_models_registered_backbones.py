"""Every registered backbone, plugins included, passes the backbone contract at its defaults.

A plugin therefore gets tested by this suite the moment it is installed; its authors can run the
same checks with their own settings by subclassing :class:`inpaintssl.testing.BackboneContract`.
"""

from __future__ import annotations

import functools

import pytest

from inpaintssl.registry import BACKBONES
from inpaintssl.testing import BackboneContract


def _contract(name: str) -> BackboneContract:
    return type(f"Contract_{name}", (BackboneContract,), {"backbone": name})()


@functools.cache
def _unavailable(name: str) -> str | None:
    """Why backbone ``name`` cannot be built here (its optional extra is missing), or None."""
    try:
        _contract(name).build()
    except ImportError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("check", BackboneContract.check_names())
@pytest.mark.parametrize("name", BACKBONES.names())
def test_registered_backbone_keeps_the_contract(name: str, check: str) -> None:
    # The ecosystem backbones (monai_basic_unet, smp_unet) are registered by this package's own
    # entry points but need their extras; where one is missing, say which instead of failing.
    reason = _unavailable(name)
    if reason is not None:
        pytest.skip(reason)
    getattr(_contract(name), check)()


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
