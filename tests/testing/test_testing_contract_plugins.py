"""The contracts check the plugin author's component, whatever else is installed (audit item 1).

A contract check that combines the component under test with every registered name of another
kind (a task with every sampler, a backbone with every transfer strategy) must not fail because
an unrelated installed plugin is broken: those plugins are left out and named, built-ins never.
The plugins come from throwaway ``*.dist-info`` folders on ``sys.path``, as installed ones do.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from inpaintssl.corruption import PretextTask
from inpaintssl.corruption.masks import MaskBank
from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS, TRANSFER_STRATEGIES
from inpaintssl.testing import BackboneContract, PretextTaskContract
from inpaintssl.testing._checks import usable

GOOD = """
    from inpaintssl.corruption.samplers import RandomSampler
    from inpaintssl.transfer_learning import TransferStrategy

    CALLS = {"sampler": 0, "strategy": 0}

    class CountedSampler(RandomSampler):
        def sample(self, **request):
            CALLS["sampler"] += 1
            return super().sample(**request)

    class DecoderTooTransfer(TransferStrategy):
        name = "decoder_too_test"
        parts = ("encoder", "decoder")

        def __init__(self):
            CALLS["strategy"] += 1
            super().__init__()
"""

BAD = """
    class NotAComponent:
        pass

    def needs_step(*, step):
        raise AssertionError("never built: it needs a parameter")

    class NeedsMissingPackage:
        requires = {"issl_contract_no_such_module": "issl-contract-no-such"}

        def sample(self, *, shape, patch_size, coverage=0.25, rng, pairs=False):
            raise AssertionError("never called: its requirement is missing")
"""

SAMPLER_NAMES = ("exploding_test", "not_a_sampler_test", "needs_step_test", "unavailable_test", "twice_test")
STRATEGY_NAMES = ("exploding_test", "not_a_strategy_test")


def _distribution(root: Path, name: str, entry_points: str) -> None:
    # No '-' in ``name``: importlib.metadata takes a dist-info folder's name up to its first '-' and
    # lists one distribution per name.
    dist = root / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """One good and two bad distributions; yields the good plugins' call counts."""
    (tmp_path / "issl_contract_good.py").write_text(textwrap.dedent(GOOD))
    (tmp_path / "issl_contract_bad.py").write_text(textwrap.dedent(BAD))
    (tmp_path / "issl_contract_exploding.py").write_text("raise RuntimeError('exploding plugin')\n")
    _distribution(
        tmp_path,
        "issl_contract_good_dist",
        """
        [inpaintssl.samplers]
        counted_test = issl_contract_good:CountedSampler
        [inpaintssl.transfer_strategies]
        decoder_too_test = issl_contract_good:DecoderTooTransfer
        """,
    )
    _distribution(
        tmp_path,
        "issl_contract_bad_dist",
        """
        [inpaintssl.samplers]
        exploding_test = issl_contract_exploding:Sampler
        not_a_sampler_test = issl_contract_bad:NotAComponent
        needs_step_test = issl_contract_bad:needs_step
        unavailable_test = issl_contract_bad:NeedsMissingPackage
        twice_test = issl_contract_good:CountedSampler
        random = issl_contract_bad:NotAComponent
        [inpaintssl.transfer_strategies]
        exploding_test = issl_contract_exploding:Strategy
        not_a_strategy_test = issl_contract_bad:NotAComponent
        encoder = issl_contract_bad:NotAComponent
        """,
    )
    # A second provider of one name makes it ambiguous: the registry refuses it.
    _distribution(
        tmp_path, "issl_contract_other_dist", "[inpaintssl.samplers]\ntwice_test = issl_contract_bad:X\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    import issl_contract_good

    yield issl_contract_good.CALLS
    for name in (*SAMPLER_NAMES, "counted_test"):
        SAMPLERS.unregister(name)
    for name in (*STRATEGY_NAMES, "decoder_too_test"):
        TRANSFER_STRATEGIES.unregister(name)
    for module in ("issl_contract_good", "issl_contract_bad", "issl_contract_exploding"):
        sys.modules.pop(module, None)


class _Prediction(PretextTaskContract):
    task = "context_prediction"


class _TinyUNet(BackboneContract):
    backbone = "unet2d"
    params: ClassVar[dict[str, Any]] = {"depth": 2, "base_width": 4}
    in_channels, out_channels = 1, 2


def test_a_task_contract_passes_beside_broken_plugins_and_still_uses_working_ones(
    installed: dict[str, int],
) -> None:
    assert set(SAMPLER_NAMES) <= set(SAMPLERS.names())
    # As in a plugin's suite run with -W error: another package's clash with the built-in
    # 'random' (ignored with a warning) must not fail the check either.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _Prediction().test_every_channel_gets_the_same_corruption_covering_the_coverage()
    assert installed["sampler"] > 0  # another package's working sampler is still combined with it


def test_a_backbone_contract_passes_beside_broken_plugins_and_still_uses_working_ones(
    installed: dict[str, int],
) -> None:
    assert set(STRATEGY_NAMES) <= set(TRANSFER_STRATEGIES.names())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the plugin named 'encoder' clashes with the built-in
        _TinyUNet().test_transfer_from_inpainting_model()
    assert installed["strategy"] > 0


def test_usable_names_keep_builtins_and_working_plugins_and_say_why_others_are_left_out(
    installed: dict[str, int],
) -> None:
    samplers = usable(SAMPLERS)
    assert {"random", "poisson_disc", "counted_test"} <= set(samplers.names)
    assert not set(SAMPLER_NAMES) & set(samplers.names)
    why = {entry.split(" ", 1)[0].strip("'"): entry for entry in samplers.left_out}
    assert set(why) == set(SAMPLER_NAMES)
    assert (
        "issl_contract_bad_dist 1.0" in why["exploding_test"] and "exploding plugin" in why["exploding_test"]
    )
    assert "broken" in why["not_a_sampler_test"]
    assert "does not build without parameters" in why["needs_step_test"] and "step" in why["needs_step_test"]
    assert "unavailable" in why["unavailable_test"] and "issl-contract-no-such" in why["unavailable_test"]
    assert "2 installed distributions" in why["twice_test"]
    strategies = usable(TRANSFER_STRATEGIES)
    assert {"encoder", "encoder_decoder", "decoder_too_test"} <= set(strategies.names)
    assert {entry.split(" ", 1)[0].strip("'") for entry in strategies.left_out} == set(STRATEGY_NAMES)


class FirstChannelOnly(PretextTask):
    """A faulty task: it corrupts the first channel only."""

    def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
        masks = bank.masks_for(choice)
        out = images.clone()
        out[:, 0] = out[:, 0].masked_fill(masks, 0.0)
        return out


class _FaultyTask(PretextTaskContract):
    task = "first_channel_only_test"


@pytest.fixture
def faulty_task() -> Iterator[None]:
    PRETEXT_TASKS.register("first_channel_only_test")(FirstChannelOnly)
    yield
    PRETEXT_TASKS.unregister("first_channel_only_test")


@pytest.mark.usefixtures("faulty_task")
def test_a_failing_check_names_the_plugins_it_left_out(installed: dict[str, int]) -> None:
    with pytest.raises(AssertionError, match="corrupted differently") as failed:
        _FaultyTask().test_every_channel_gets_the_same_corruption_covering_the_coverage()
    message = str(failed.value)
    assert "left out the unusable samplers of other packages" in message
    for name in SAMPLER_NAMES:
        assert repr(name) in message


class BrokenBuiltin:
    def __init__(self) -> None:
        raise RuntimeError("the built-in sampler is broken")


@pytest.fixture
def broken_builtin_sampler() -> Iterator[None]:
    SAMPLERS.register("broken_builtin_test")(BrokenBuiltin)
    yield
    SAMPLERS.unregister("broken_builtin_test")


@pytest.mark.usefixtures("broken_builtin_sampler")
def test_a_broken_builtin_is_never_left_out(installed: dict[str, int]) -> None:
    assert "broken_builtin_test" in usable(SAMPLERS).names
    with pytest.raises(RuntimeError, match="the built-in sampler is broken"):
        _Prediction().test_every_channel_gets_the_same_corruption_covering_the_coverage()
