"""Every registered sampler and pretext task, plugins included, keeps its contract.

A plugin is tested by this suite the moment it is installed; its authors run the same checks with
their own settings by subclassing :class:`inpaintssl.testing.SamplerContract` or
:class:`inpaintssl.testing.PretextTaskContract`. Each check is also shown to fail on a component
that breaks it, so none of them passes by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given

from inpaintssl.corruption import ContextPrediction, MaskBank, RandomSampler
from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS, Registry
from inpaintssl.testing import PretextTaskContract, SamplerContract
from sampler_requests import requests


def _sampler_contract(name: str, **attributes: Any) -> SamplerContract:
    return type(f"Contract_{name}", (SamplerContract,), {"sampler": name, **attributes})()


def _task_contract(name: str) -> PretextTaskContract:
    return type(f"Contract_{name}", (PretextTaskContract,), {"task": name})()


@pytest.mark.parametrize("check", SamplerContract.check_names())
@pytest.mark.parametrize("name", SAMPLERS.names())
def test_registered_sampler_keeps_the_contract(name: str, check: str) -> None:
    getattr(_sampler_contract(name), check)()


@pytest.mark.parametrize("check", PretextTaskContract.check_names())
@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_registered_task_keeps_the_contract(name: str, check: str) -> None:
    getattr(_task_contract(name), check)()


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("pairs", [False, True])
@given(request=requests())
def test_corners_keep_the_contract_for_any_request(
    name: str, pairs: bool, request: tuple[tuple[int, int], int, float, int]
) -> None:
    """Beyond the contract's fixed requests: the same check over drawn shapes, patches and seeds."""
    shape, k, coverage, seed = request
    _sampler_contract(name).check_corners(
        shape=shape, patch_size=k, coverage=coverage, seed=seed, pairs=pairs
    )


# -- each check fails on a component that breaks it ---------------------------------------------


class _Stacked:
    """Every patch at the origin: in bounds, but far short of the coverage."""

    def sample(self, **_: Any) -> np.ndarray:
        return np.zeros((8, 2), dtype=np.int64)


class _GlobalRandom(RandomSampler):
    """Draws from NumPy's global RNG instead of the ``rng`` it is given."""

    def sample(self, **request: Any) -> np.ndarray:
        return super().sample(**{**request, "rng": np.random.default_rng(np.random.randint(2**31))})


class _AnyRng(RandomSampler):
    """Accepts a seed for ``rng`` instead of refusing it."""

    def sample(self, *, rng: Any, **request: Any) -> np.ndarray:
        return super().sample(
            rng=np.random.default_rng(0) if not isinstance(rng, np.random.Generator) else rng, **request
        )


@pytest.mark.parametrize(
    ("broken", "check", "told"),
    [
        (
            _Stacked,
            "test_corners_are_in_bounds_and_reach_the_coverage",
            r"cover 64 pixels; expected at least",
        ),
        (_GlobalRandom, "test_same_rng_seed_gives_same_corners", r"gave other corners the second time"),
        (_AnyRng, "test_rng_must_be_a_numpy_generator", r"rng=int: expected a TypeError, nothing was raised"),
    ],
)
def test_sampler_checks_fail_on_a_sampler_that_breaks_them(broken: type, check: str, told: str) -> None:
    _fails_when_registered(SAMPLERS, broken, _sampler_contract, check, told, AssertionError)


def _fails_when_registered(
    registry: Registry[Any],
    broken: type,
    contract: Callable[[str], Any],
    check: str,
    told: str,
    errors: type[Exception] | tuple[type[Exception], ...],
) -> None:
    """Register ``broken`` for the length of one contract check, which must fail saying ``told``."""
    registry.register("broken_component_test")(broken)
    try:
        with pytest.raises(errors, match=told):
            getattr(contract("broken_component_test"), check)()
    finally:
        registry.unregister("broken_component_test")


class _InPlace(ContextPrediction):
    def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
        return images.masked_fill_(bank.masks_for(choice)[:, None], 0.0)


class _FirstChannelOnly(ContextPrediction):
    def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
        out = super().apply(images, bank=bank, choice=choice)
        out[:, 1:] = images[:, 1:]
        return out


class _Unseeded(ContextPrediction):
    def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
        return super().apply(images, bank=bank, choice=torch.randint(len(bank), choice.shape))


@pytest.mark.parametrize(
    ("broken", "check", "told"),
    [
        (
            _InPlace,
            "test_output_keeps_shape_dtype_device_and_leaves_input_alone",
            r"apply returned its input",
        ),
        (_FirstChannelOnly, "test_every_channel_gets_the_same_corruption_covering_the_coverage", r"channels"),
        (_Unseeded, "test_fixed_corruption_is_reproducible_across_calls_and_instances", r"key 7 changed"),
    ],
)
def test_task_checks_fail_on_a_task_that_breaks_them(broken: type, check: str, told: str) -> None:
    # An in-place apply is refused by the task itself (ValueError) before the contract looks.
    _fails_when_registered(PRETEXT_TASKS, broken, _task_contract, check, told, (AssertionError, ValueError))
