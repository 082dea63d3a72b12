"""Settings a config gives that its other settings leave unused: found, listed, warned about.

A config section names what it leaves unused (``optim.warmup_fraction`` under the ``step_decay``
schedule) in its ``_unused_settings`` method; :func:`unused_settings` collects them over a whole
config, and validation warns about each with a :class:`~inpaintssl.config.ConfigWarning`, unless
:func:`quiet_unused_settings` is in effect.

The quiet switch is a :mod:`contextvars` variable rather than a warnings filter: a filter is
process-wide state (``warnings.catch_warnings`` is documented as not thread-safe), so a quiet
validation in one thread would silence another thread's warnings, or restore a filter under it.

Example:
    >>> from inpaintssl.config import OptimConfig, quiet_unused_settings, unused_settings
    >>> with quiet_unused_settings():
    ...     optim = OptimConfig(schedule="step_decay", warmup_fraction=0.2)
    >>> [setting.field for setting in unused_settings(optim)]
    ['optim.warmup_fraction']
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from inpaintssl.config.errors import ConfigWarning
from inpaintssl.warning_format import warn_each_time

__all__ = ["UnusedSetting", "quiet_unused_settings", "unused_settings"]

_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("quiet_unused_settings", default=False)


def _shown(value: Any) -> str:
    """A setting's value as a config file spells it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class UnusedSetting:
    """One setting a config gives, with a value other than its default, that has no effect.

    Attributes:
        field: Its dotted path from the section that judged it (``optim.warmup_fraction``).
        value: The value given.
        why: Which other setting leaves it unused, and what it would apply to.

    Example:
        >>> print(UnusedSetting("run.amp", "bf16", "run.device='cpu'"))
        run.amp='bf16' has no effect: run.device='cpu'
    """

    field: str
    value: Any
    why: str

    def __str__(self) -> str:
        return f"{self.field}={_shown(self.value)} has no effect: {self.why}"

    def warn(self, *, stacklevel: int = 1) -> None:
        """Raise it as a :class:`~inpaintssl.config.ConfigWarning`, unless quiet.

        It points at the first caller outside inpaintssl and pydantic (the user's line that
        built or loaded the config), and is shown again each time that line runs
        (:func:`~inpaintssl.warning_format.warn_each_time`): a notebook cell run twice warns twice.

        Args:
            stacklevel: Ignored (the caller is found as above); kept for existing callers.
        """
        del stacklevel
        if not _QUIET.get():
            warn_each_time(str(self), ConfigWarning)


@contextlib.contextmanager
def quiet_unused_settings() -> Iterator[None]:
    """Validate configs without a :class:`~inpaintssl.config.ConfigWarning` about unused settings.

    For a config whose settings were judged elsewhere: a file about to get its overrides, a study's
    base config (its runs are judged), a run's saved ``config.yaml`` read back to use its model.
    Only this thread's (or task's) validations are quiet; other warnings are untouched.

    Example:
        >>> import warnings
        >>> from inpaintssl.config import RunConfig
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error")
        ...     with quiet_unused_settings():
        ...         RunConfig(device="cpu", amp="bf16").amp
        'bf16'
    """
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def unused_settings(config: BaseModel) -> tuple[UnusedSetting, ...]:
    """Every setting of ``config`` that its other settings leave unused, sections first.

    The same judgement validation warns with, made on a config already built, so it can be asked
    again (over a study's runs, say) without validating anything.

    Args:
        config: A config or any of its sections (:class:`~inpaintssl.config.PretrainConfig`,
            :class:`~inpaintssl.config.OptimConfig`, ...).

    Returns:
        The unused settings, in the order validation warns about them; empty for a config that
        uses all it gives.

    Example:
        >>> from inpaintssl.config import FinetuneConfig
        >>> with quiet_unused_settings():
        ...     config = FinetuneConfig.model_validate({"transfer": {"in_channels": "repeat"}})
        >>> for setting in unused_settings(config):
        ...     print(setting)  # doctest: +ELLIPSIS
        transfer.in_channels='repeat' has no effect: transfer.pretrained is null, so nothing is ...
    """
    found: list[UnusedSetting] = []
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            found.extend(unused_settings(value))
    judge = getattr(config, "_unused_settings", None)
    if judge is not None:
        found.extend(judge())
    return tuple(found)
