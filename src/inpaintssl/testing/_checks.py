"""What every contract check shares."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from inpaintssl.corruption.samplers import check_sampler_signature
from inpaintssl.registry import Registry, ShadowedPluginWarning
from inpaintssl.transfer_learning.transfer import BACKBONE_PARTS, check_backbone_parts


def check(condition: bool, message: str) -> None:
    """Fail a contract check with ``message`` unless ``condition`` holds."""
    # Explicit raise instead of `assert`: the checks must still run under `python -O`.
    if not condition:
        raise AssertionError(message)


class Contract:
    """What every contract class shares: a subclass named ``Test*`` is collected by pytest."""

    @classmethod
    def check_names(cls) -> list[str]:
        """Names of all check methods, e.g. to parametrize over them."""
        return sorted(name for name in dir(cls) if name.startswith("test_"))


@dataclass(frozen=True)
class Usable:
    """The names of one registry a check combines the component under test with.

    Attributes:
        kind: The registry kind, e.g. ``"samplers"``.
        names: Built-ins, and installed plugins that load, build without parameters and pass the
            check every run makes of their kind.
        left_out: ``"name (why)"`` for each installed plugin that does not.
    """

    kind: str
    names: tuple[str, ...]
    left_out: tuple[str, ...] = ()

    def note(self) -> str:
        """What the check left out, for its failure messages (empty when nothing was)."""
        if not self.left_out:
            return ""
        return (
            f" [checked with the {self.kind} {', '.join(self.names)}; left out the unusable "
            f"{self.kind} of other packages: {'; '.join(self.left_out)}]"
        )


def usable(registry: Registry[Any], *, params: Mapping[str, Any] = MappingProxyType({})) -> Usable:
    """The names of ``registry`` a contract check can combine the component under test with.

    A contract checks *one* component; some checks combine it with every registered name of
    another kind (a task with every sampler, a backbone with every transfer strategy, a transfer
    strategy with every backbone). An installed plugin of another package that is broken,
    ambiguous (two distributions provide its name), unavailable (a requirement is missing), that
    does not build with ``params`` alone (what a run passes itself: a backbone's channel counts
    and seed; nothing for the other kinds) or that every run refuses once built (a backbone
    without the parts, a sampler whose ``sample`` cannot take the banks' call, a transfer strategy
    naming parts no backbone has) would otherwise fail the check of a component that has nothing
    to do with it, so it is left out and named in the check's failure messages
    (:meth:`Usable.note`); ``inpaintssl plugins`` lists why for those it marks. Built-ins are always
    kept: a broken built-in is a fault of inpaintssl itself and fails.
    """
    names: list[str] = []
    left_out: list[str] = []
    for entry in registry.entries(check=True):
        if entry.source == "builtin":
            names.append(entry.name)
            continue
        where = f"plugin {entry.target} from {entry.distribution}"
        if entry.status != "ok":
            left_out.append(f"{entry.name!r} ({where}: {entry.status}: {entry.reason})")
            continue
        try:
            # The checks build the component with no parameters of its own, as the runs' defaults do.
            with combining():
                built = registry.build(entry.name, **params)
        except Exception as exc:  # noqa: BLE001 - any failure of another package's plugin is its own
            given = f"with only {', '.join(params)}" if params else "without parameters"
            reason = f"does not build {given}: {type(exc).__name__}: {exc}"
            left_out.append(f"{entry.name!r} ({where}: {reason})")
            continue
        run_check = _RUN_CHECKS.get(registry.kind)
        try:
            # Built is not enough: a run refuses the component at its own check, so a contract
            # combining it would fail on it with nothing to do with the component under test.
            if run_check is not None:
                run_check(entry.name, built)
        except Exception as exc:  # noqa: BLE001 - as above: the run's refusal is the plugin's own
            left_out.append(f"{entry.name!r} ({where}: every run refuses it: {type(exc).__name__}: {exc})")
            continue
        names.append(entry.name)
    return Usable(registry.kind, tuple(names), tuple(left_out))


def _check_backbone(name: str, built: Any) -> None:
    """The parts check every run makes of the backbone it builds (as ``build_backbone`` does)."""
    check_backbone_parts(built, what=f"backbone {name!r}")


def _check_sampler(name: str, built: Any) -> None:
    """The signature check every pretext task makes of its sampler as it is built."""
    check_sampler_signature(built)


def _check_strategy(name: str, built: Any) -> None:
    """A fine-tuning run copies a strategy's parts from the backbone: each must be one every backbone has."""
    unknown = [part for part in built.parts if part not in BACKBONE_PARTS]
    if unknown:
        raise ValueError(
            f"transfer strategy {name!r}: parts {unknown} are not parts every backbone has (a "
            f"fine-tuning run finds no such part to copy); expected names among {BACKBONE_PARTS}, "
            f"found parts {built.parts}"
        )


_RUN_CHECKS: Mapping[str, Callable[[str, Any], None]] = MappingProxyType(
    {"backbones": _check_backbone, "samplers": _check_sampler, "transfer_strategies": _check_strategy}
)
"""By registry kind: the check a run makes of a built component of that kind, raising where it refuses it."""


@contextmanager
def combining() -> Iterator[None]:
    """Around a check's use of other components: another package's name clash does not fail it.

    A plugin of another package named like a built-in is ignored with a
    :class:`~inpaintssl.registry.ShadowedPluginWarning`; a test suite that turns warnings into
    errors (``-W error``) would otherwise fail the check of an unrelated component on it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShadowedPluginWarning)
        yield
