"""Every registered backbone, plugins included, passes the backbone contract at its defaults.

A plugin therefore gets tested by this suite the moment it is installed; its authors can run the
same checks with their own settings by subclassing :class:`inpaintssl.testing.BackboneContract`.
"""

from __future__ import annotations

import pytest

from inpaintssl.registry import BACKBONES
from inpaintssl.testing import BackboneContract


@pytest.mark.parametrize("check", BackboneContract.check_names())
@pytest.mark.parametrize("name", BACKBONES.names())
def test_registered_backbone_keeps_the_contract(name: str, check: str) -> None:
    contract = type(f"Contract_{name}", (BackboneContract,), {"backbone": name})()
    getattr(contract, check)()


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
