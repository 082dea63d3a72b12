"""Device selection and mixed precision.

Example:
    >>> resolve_device("cpu").type
    'cpu'
    >>> autocast_dtype(torch.device("cpu"), "auto") is None
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from inpaintssl.options import DEVICE_NAMES, check_device_name, check_option, format_choices

__all__ = [
    "AMP_MODES",
    "DEVICE_NAMES",
    "autocast_context",
    "autocast_dtype",
    "resolve_device",
    "to_memory_format",
    "use_channels_last",
]


def resolve_device(
    device: str | torch.device = "auto", *, local_rank: int | None = None, field: str = "device"
) -> torch.device:
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"`` into a :class:`torch.device`.

    ``auto`` picks CUDA when available (the process's local rank under torchrun), else CPU. A
    :class:`torch.device` must be a CPU or CUDA one, as the names are.

    Args:
        device: The device name or a :class:`torch.device`.
        local_rank: The process's rank on its node under torchrun: its card for ``auto``/``cuda``.
        field: The setting's name in error messages: ``run.device`` for a training config, the
            argument's name (``device``) for ``predict``, ``evaluate`` and ``load_model``.

    Raises:
        ValueError: ``device`` is not one of the names above (a torch device type such as ``meta``
            or ``mps`` included) nor a CPU or CUDA :class:`torch.device`, ``cuda`` was asked for but
            is not available, ``cuda:N`` names a card this machine does not have, or
            ``auto``/``cuda`` would give a torchrun process the card of a ``local_rank`` beyond the
            machine's cards.

    Example:
        >>> resolve_device("meta")
        Traceback (most recent call last):
        ...
        ValueError: device='meta' is not a valid option: expected 'auto', 'cpu', 'cuda' or 'cuda:N'
    """
    if isinstance(device, torch.device):
        # Only the two the library runs on: on "meta" a caller's module lost its weights, and
        # "mps"/"xla" fail later inside torch, naming neither the argument nor the choices.
        if device.type not in ("cpu", "cuda"):
            raise ValueError(
                f"{field}={device!r} is not a valid option: expected a torch.device of type 'cpu' or "
                f"'cuda' (or one of {format_choices(DEVICE_NAMES)}); found type {device.type!r}"
            )
        if device.type == "cpu":
            return device
        resolved = device
    else:
        check_device_name(device, field=field)
        if device == "auto":
            if torch.cuda.is_available():
                return _card_of_local_rank(device, local_rank=local_rank, field=field)
            return torch.device("cpu")
        resolved = torch.device(device)
        if resolved.type == "cpu":
            return resolved
    if not torch.cuda.is_available():
        raise ValueError(f"{field}={device!r} but CUDA is not available on this machine; use 'auto' or 'cpu'")
    if resolved.index is None:
        return _card_of_local_rank(device, local_rank=local_rank, field=field)
    count = torch.cuda.device_count()
    if resolved.index >= count:
        # Caught here, naming the setting, not as "invalid device ordinal" at the first copy.
        raise ValueError(
            f"{field}={str(device)!r} resolves to {resolved}, but this machine has {count} CUDA "
            f"device(s) (cuda:0 to cuda:{count - 1}); pick one of them, or 'auto'"
        )
    return resolved


def _card_of_local_rank(device: str | torch.device, *, local_rank: int | None, field: str) -> torch.device:
    """The card ``auto``/``cuda`` gives this process: its torchrun ``local_rank``'s, else ``cuda:0``.

    More processes on a node than cards (``torchrun --nproc-per-node`` above the count) would
    otherwise fail at the first copy as "invalid device ordinal", naming neither the setting nor
    the launch.
    """
    index = local_rank or 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"{field}={str(device)!r} gives this process (torchrun's LOCAL_RANK={index}) cuda:{index}, "
            f"but this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1}); start at most "
            f"{count} processes per node (torchrun --nproc-per-node={count})"
        )
    return torch.device("cuda", index)


AMP_MODES = ("auto", "bf16", "fp16", "off")
"""The values of ``amp`` (``run.amp``, ``predict(amp=...)``, ``--amp``)."""


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (``auto``/``bf16``/``fp16``/``off``) on ``device``; ``None`` = off.

    Mixed precision is used on CUDA only: on CPU the float32 path is both faster for these
    convolutions with oneDNN and exactly reproducible. ``auto`` is bf16 on cards that compute it
    natively (compute capability 8.0 and above, and ROCm) and fp16 elsewhere (Volta, Turing).

    Raises:
        ValueError: ``amp`` is not one of :data:`AMP_MODES` (on every device: a misspelt ``"off"``
            would be fp16 on a card).
    """
    check_option(amp, AMP_MODES, field="amp")
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "bf16" or (amp == "auto" and _native_bf16(device)):
        return torch.bfloat16
    return torch.float16


def _native_bf16(device: torch.device) -> bool:
    """Whether ``device`` itself has bf16 hardware.

    ``torch.cuda.is_bf16_supported()`` says yes on a T4 or V100 too (bf16 emulated, without tensor
    cores; ``including_emulation`` defaults to true), and asks the current card, not ``device``.
    """
    if torch.version.hip:
        return True
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


@contextlib.contextmanager
def autocast_context(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` when ``dtype`` is set, otherwise a no-op."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def use_channels_last(device: torch.device, setting: bool | str) -> bool:
    """Resolve ``run.channels_last``: ``auto`` means on for the CPU and off for CUDA.

    Example:
        >>> use_channels_last(torch.device("cpu"), "auto"), use_channels_last(torch.device("cpu"), False)
        (True, False)
    """
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ValueError(f"channels_last={setting!r} is invalid; expected 'auto', True or False")
    # On an H200, GroupNorm on channels_last activations spent a third of the step copying to
    # contiguous and back (benchmarks/README.md); oneDNN's CPU convolutions prefer channels_last.
    return device.type == "cpu"


def to_memory_format(module: nn.Module, *, channels_last: bool) -> nn.Module:
    """Move a module's 4D weights to ``channels_last`` (the largest CPU speed-up, cpu-budget notes)."""
    if channels_last:
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return module
