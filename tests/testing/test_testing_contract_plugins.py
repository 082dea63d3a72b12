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
from inpaintssl.registry import BACKBONES, PRETEXT_TASKS, SAMPLERS, TRANSFER_STRATEGIES, ShadowedPluginWarning
from inpaintssl.testing import BackboneContract, PretextTaskContract, TransferStrategyContract
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
    from torch import nn

    from inpaintssl.transfer_learning import TransferStrategy

    class NotAComponent:
        pass

    # Three that load and build as a run builds them, but that every run refuses at its own check.
    class PositionalSampler:
        # sample() lacks coverage and pairs: a task refuses it as it is built.
        def sample(self, shape, patch_size, rng):
            raise AssertionError("never called: a run refuses its signature")

    class Partless(nn.Module):
        # No encoder, decoder or head: a run refuses it before it trains.
        def __init__(self, *, in_channels, out_channels, seed=None):
            super().__init__()
            self.body = nn.Conv2d(in_channels, out_channels, 3, padding=1)

        def forward(self, x):
            return self.body(x)

    class StemOnly(TransferStrategy):
        # No backbone has a stem: a fine-tuning run finds nothing to copy.
        name = "stem_only_test"
        parts = ("stem",)

    def needs_step(*, step):
        raise AssertionError("never built: it needs a parameter")

    class NeedsMissingPackage:
        requires = {"issl_contract_no_such_module": "issl-contract-no-such"}

        def sample(self, *, shape, patch_size, coverage=0.25, rng, pairs=False):
            raise AssertionError("never called: its requirement is missing")
"""

SAMPLER_NAMES = (
    "exploding_test",
    "not_a_sampler_test",
    "needs_step_test",
    "unavailable_test",
    "twice_test",
    "positional_test",
)
STRATEGY_NAMES = ("exploding_test", "not_a_strategy_test", "stem_only_test")
BACKBONE_NAMES = ("partless_test",)
RUN_ARGUMENTS = {"in_channels": 1, "out_channels": 1, "seed": 0}
"""What a run passes a backbone itself (the usable backbones build from these alone)."""


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
        positional_test = issl_contract_bad:PositionalSampler
        random = issl_contract_bad:NotAComponent
        [inpaintssl.transfer_strategies]
        exploding_test = issl_contract_exploding:Strategy
        not_a_strategy_test = issl_contract_bad:NotAComponent
        stem_only_test = issl_contract_bad:StemOnly
        encoder = issl_contract_bad:NotAComponent
        [inpaintssl.backbones]
        partless_test = issl_contract_bad:Partless
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
    for name in BACKBONE_NAMES:
        BACKBONES.unregister(name)
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
    # Loads and builds, but the check every task makes of its sampler refuses it.
    assert "every run refuses it" in why["positional_test"]
    assert "cannot be called as sample(*, shape, patch_size, coverage, rng, pairs)" in why["positional_test"]
    strategies = usable(TRANSFER_STRATEGIES)
    assert {"encoder", "encoder_decoder", "decoder_too_test"} <= set(strategies.names)
    why = {entry.split(" ", 1)[0].strip("'"): entry for entry in strategies.left_out}
    assert set(why) == set(STRATEGY_NAMES)
    assert "every run refuses it" in why["stem_only_test"] and "parts ['stem']" in why["stem_only_test"]
    backbones = usable(BACKBONES, params=RUN_ARGUMENTS)
    assert "unet2d" in backbones.names and "partless_test" not in backbones.names
    (partless,) = [entry for entry in backbones.left_out if entry.startswith("'partless_test' ")]
    assert "plugin issl_contract_bad:Partless from issl_contract_bad_dist 1.0" in partless
    assert "every run refuses it" in partless and "missing: encoder, decoder, head" in partless


class _EncoderDecoder(TransferStrategyContract):
    strategy = "encoder_decoder"  # not 'encoder', which the bad distribution clashes with


def test_a_strategy_contract_passes_beside_a_backbone_every_run_refuses(installed: dict[str, int]) -> None:
    # The partless backbone builds from the run's arguments: transferring into it failed the
    # built-in strategy's contract ("has no part 'encoder'"), which has nothing to do with it.
    assert set(BACKBONE_NAMES) <= set(BACKBONES.names())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _EncoderDecoder().test_head_is_left_fresh()


# -- another package's plugin named like a built-in the task builds -------------------------------
@pytest.fixture
def shadowing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` for distributions that clash with built-in names (each test adds its own)."""
    (tmp_path / "issl_contract_shadow.py").write_text(
        "from inpaintssl.corruption.samplers import RandomSampler\n\n"
        "class Sampler(RandomSampler):\n    pass\n\n"
        "def task(**options):\n    raise AssertionError('never built: the built-in wins')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("issl_contract_shadow", None)


def test_another_packages_default_sampler_name_does_not_fail_a_task_contract_under_w_error(
    shadowing: Path,
) -> None:
    # 'poisson_disc' is the sampler every task builds by default: its clash warned in build(),
    # outside the checks that combine other components, and -W error failed the plugin's contract.
    _distribution(
        shadowing,
        "issl_contract_shadow_dist",
        "[inpaintssl.samplers]\npoisson_disc = issl_contract_shadow:Sampler\n",
    )
    importlib.invalidate_caches()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _Prediction().test_empty_batch()
        _Prediction().test_bad_inputs_raise_clear_errors()


def test_a_clash_of_the_task_under_test_itself_still_warns(shadowing: Path) -> None:
    # Only the other components' clashes are ignored: one of the task checked is its author's to see.
    _distribution(
        shadowing,
        "issl_contract_task_dist",
        "[inpaintssl.pretext_tasks]\ncontext_prediction = issl_contract_shadow:task\n",
    )
    importlib.invalidate_caches()
    with pytest.warns(ShadowedPluginWarning, match="'context_prediction' from issl_contract_task_dist 1.0"):
        _Prediction().test_empty_batch()


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
