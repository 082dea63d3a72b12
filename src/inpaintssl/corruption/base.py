"""The pretext-task base class: mask banks, seeded mask selection, fixed validation corruption.

Subclass :class:`PretextTask` and implement :meth:`PretextTask.apply` to add a pretext task (for
example pixel shuffling inside the patches); the base class validates inputs, builds one
:class:`~inpaintssl.corruption.masks.MaskBank` per input shape and device on first use, and draws
one bank entry per image. Register the subclass under the entry-point group
``inpaintssl.pretext_tasks`` and every registry-parametrized test in ``tests/corruption`` runs on it.

Example:
    >>> import torch
    >>> class Invert(PretextTask):
    ...     def apply(self, images, *, bank, choice):
    ...         return torch.where(bank.masks_for(choice)[:, None], -images, images)
    >>> task = Invert(patch_size=8, bank_size=2)
    >>> task.corrupt(torch.ones(2, 1, 32, 32)).eq(-1).float().mean().item() >= 0.25
    True
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from inpaintssl.corruption.masks import MaskBank, _image_and_patch
from inpaintssl.corruption.samplers import (
    Sampler,
    _printed_coverage,
    check_patch_options,
    check_sampler_signature,
)

# A bare PRETEXT_TASKS.build(name)'s options are PretextConfig's defaults, defined once for both.
from inpaintssl.defaults import DEFAULT_BANK_SIZE, DEFAULT_COVERAGE, DEFAULT_PATCH_SIZE, DEFAULT_SAMPLER
from inpaintssl.registry import SAMPLERS

__all__ = ["DEFAULT_BANK_SIZE", "DEFAULT_COVERAGE", "DEFAULT_PATCH_SIZE", "DEFAULT_SAMPLER", "PretextTask"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # A bijective 64-bit mixer: nearby keys (0, 1, 2, ...) give unrelated bank entries.
    with np.errstate(over="ignore"):
        z = values + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        mixed: NDArray[np.uint64] = z ^ (z >> np.uint64(31))
        return mixed


def _check_seed(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value < 2**63:
        raise ValueError(f"{name}={value!r} must be an integer in [0, 2**63)")
    return int(value)


def _per_image_keys(key: Sequence[int] | NDArray[np.integer] | Tensor, count: int) -> NDArray[np.uint64]:
    values = key.detach().cpu().numpy() if isinstance(key, Tensor) else np.asarray(key)
    if values.ndim != 1 or (values.size and not np.issubdtype(values.dtype, np.integer)):
        raise ValueError(
            f"key must be an int or a 1-D sequence of ints, got {values.dtype} of shape {values.shape}"
        )
    if len(values) != count:
        raise ValueError(f"key has {len(values)} entries but images has {count}; expected one per image")
    if values.size and values.min() < 0:
        raise ValueError(f"key values must be >= 0, got {int(values.min())}")
    return values.astype(np.uint64)


def _indexed(device: torch.device) -> torch.device:
    """``device`` with its index filled in: ``torch.Generator(device="cuda")`` reports ``cuda``
    while tensors on the same GPU report ``cuda:0``."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _constructor_signature(cls: type) -> inspect.Signature:
    """``cls(...)``'s parameters: its ``__init__``'s own, with ``**options`` replaced by the base's."""
    own = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    if not own or own[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        return inspect.Signature(own)
    named = own[:-1]
    # ``super().__init__(**options)`` reaches the next pretext task in the MRO (past any mixin).
    parent = next(base for base in cls.__mro__[1:] if issubclass(base, PretextTask))
    inherited = inspect.signature(parent).parameters.values()
    return inspect.Signature([*named, *(p for p in inherited if p.name not in {q.name for q in named})])


class PretextTask(abc.ABC):
    """Corrupts ``(N, C, H, W)`` float images for an inpainting pretext task (paper sec. 2.4).

    All channels of an image get the same corruption. Masks come from a bank of ``bank_size``
    base masks in 4 orientations (:class:`~inpaintssl.corruption.masks.MaskBank`), built lazily
    for each ``(H, W)`` and device from ``seed``, so equal seeds give equal banks everywhere.

    Args:
        patch_size: Patch side ``K`` in pixels (the paper compares 64, 32, 16, 8).
        sampler: A registered sampler name (``"poisson_disc"``, ``"random"``) or a
            :class:`~inpaintssl.corruption.samplers.Sampler` instance.
        coverage: Share of the image area the patches cover at least (the paper fixes 1/4).
        bank_size: Base masks per input shape (the authors used 100, i.e. 400 with rotations).
        seed: Seeds the banks, the internal generator and :meth:`corrupt_fixed`.
        sampler_params: Keyword arguments for ``SAMPLERS.build(sampler, ...)``.

    A subclass with options of its own takes them keyword-only and passes the rest on, e.g.
    ``def __init__(self, *, fill="mean", **options): super().__init__(**options)``; its
    signature (``inspect.signature``) lists its options and these.

    Raises:
        ValueError: A bad option, naming it.
        KeyError: An unknown sampler name (with close matches).
    """

    pairs: ClassVar[bool] = False
    """Whether the task needs patch pairs and swap permutations in its banks."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass may take its own options and pass the rest on as ``**options``; its
        # signature then lists both, so PRETEXT_TASKS.build reports a misspelt option by name.
        cls.__signature__ = _constructor_signature(cls)  # type: ignore[attr-defined]

    def __init__(
        self,
        *,
        patch_size: int = DEFAULT_PATCH_SIZE,
        sampler: str | Sampler = DEFAULT_SAMPLER,
        coverage: float = DEFAULT_COVERAGE,
        bank_size: int = DEFAULT_BANK_SIZE,
        seed: int = 0,
        sampler_params: Mapping[str, Any] | None = None,
    ) -> None:
        # Bad values are refused now rather than at the first batch; whether the patches fit an
        # image is checked against the real shape when its bank is built.
        check_patch_options(patch_size=patch_size, coverage=coverage)
        # NumPy integers too (a sweep over np.arange), as for seed; bool is an int but no count.
        if isinstance(bank_size, bool) or not isinstance(bank_size, int | np.integer) or bank_size < 1:
            raise ValueError(f"bank_size={bank_size!r} must be a positive integer")
        self.patch_size = int(patch_size)
        # The decimal a NumPy float prints as: float(np.float32(0.07)) is 0.07000000029802322, which
        # asked one patch more than 0.07 does. A Python float is kept as it is (same banks, same repr).
        self.coverage = _printed_coverage(coverage)
        self.bank_size = int(bank_size)
        self.seed = _check_seed("seed", seed)
        if isinstance(sampler, str):
            self.sampler_name = sampler
            self.sampler: Sampler = SAMPLERS.build_from(
                sampler, dict(sampler_params or {}), field="sampler_params", set_by_caller={}
            )
        else:
            if sampler_params:
                raise ValueError("sampler_params only apply when sampler is a registered name")
            self.sampler_name = type(sampler).__name__
            self.sampler = sampler
        check_sampler_signature(self.sampler)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._banks: dict[tuple[int, int, torch.device], MaskBank] = {}
        self._apply_checked = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(patch_size={self.patch_size}, sampler={self.sampler_name!r}, "
            f"coverage={self.coverage}, bank_size={self.bank_size}, seed={self.seed})"
        )

    @abc.abstractmethod
    def apply(self, images: Tensor, *, bank: MaskBank, choice: Tensor) -> Tensor:
        """Corrupt ``images[i]`` with bank entry ``choice[i]``.

        Args:
            images: ``(N, C, H, W)`` float tensor on ``bank.device``.
            bank: The bank for ``(H, W)`` on the images' device.
            choice: ``(N,)`` int64 bank entries on the images' device.

        Returns:
            ``(N, C, H, W)`` tensor of the same dtype and device; must not modify ``images``.
        """

    def bank(self, *, shape: tuple[int, int], device: torch.device | str = "cpu") -> MaskBank:
        """The mask bank for ``shape`` ``(H, W)`` on ``device``, built on first use and cached.

        Raises:
            ValueError: ``shape`` is not two positive integers, or the patches cannot reach the
                coverage in that shape.
        """
        # int() on each side truncated (32.7, 40) to a 32x40 bank; 32 or (32, 32, 1) failed in the
        # unpacking with a message naming no argument.
        height, width, _ = _image_and_patch(shape, self.patch_size)
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            # Tensors report "cuda:0", never "cuda": one cache key per physical device.
            device = torch.device("cuda", torch.cuda.current_device())
        key = (height, width, device)
        if key not in self._banks:
            host = self._banks.get((height, width, torch.device("cpu")))
            if host is None:
                host = MaskBank.build(
                    sampler=self.sampler,
                    shape=(height, width),
                    patch_size=self.patch_size,
                    coverage=self.coverage,
                    size=self.bank_size,
                    seed=self.seed,
                    pairs=self.pairs,
                )
                self._banks[(height, width, torch.device("cpu"))] = host
            self._banks[key] = host.to(device)
        return self._banks[key]

    def corrupt(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Corrupt a batch, one bank entry per image drawn from ``generator``.

        Works under :func:`torch.no_grad` and autocast; half-precision inputs stay half.

        Args:
            images: ``(N, C, H, W)`` floating-point tensor on any device.
            generator: Draws the bank entries, on the CPU (results identical on every device)
                or on the images' device. ``None`` uses the task's CPU generator seeded with
                ``seed``, which advances on every call.

        Returns:
            ``(N, C, H, W)`` corrupted copy, same dtype and device.

        Raises:
            TypeError: ``images`` is not a floating-point tensor or ``generator`` not a Generator.
            ValueError: ``images`` is not 4-D, ``generator`` is on another accelerator, or the
                coverage is unreachable for ``(H, W)``.
        """
        bank = self._bank_for(images)
        gen = self._generator if generator is None else generator
        if not isinstance(gen, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(gen).__name__}")
        if gen.device.type != "cpu" and _indexed(gen.device) != _indexed(images.device):
            raise ValueError(
                f"generator is on {gen.device} but images are on {images.device}; "
                "expected a CPU generator or one on the images' device"
            )
        choice = torch.randint(len(bank), (images.shape[0],), generator=gen, device=gen.device)
        return self._applied(images, bank=bank, choice=choice.to(images.device, non_blocking=True))

    def corrupt_fixed(
        self, images: Tensor, *, key: int | Sequence[int] | NDArray[np.integer] | Tensor
    ) -> Tensor:
        """Reproducible corruption for validation: the same key gives the same output, always.

        Bank entries are a hash of ``(seed, key)``, independent of any generator state, so the
        corrupted validation set is identical every epoch, every run and on every device.

        Args:
            images: ``(N, C, H, W)`` floating-point tensor.
            key: One int for the batch (image ``i`` uses ``(key, i)``; pass the batch index with a
                fixed, unshuffled loader), or ``N`` non-negative ints, one per image, as a
                sequence, array or tensor (e.g. dataset indices, which also makes the result
                independent of the batch size and of which rank a sample lands on).

        Returns:
            ``(N, C, H, W)`` corrupted copy, same dtype and device.

        Example:
            >>> from inpaintssl.corruption import ContextRestoration
            >>> x = torch.randn(2, 1, 64, 64)
            >>> a = ContextRestoration(patch_size=8, bank_size=4).corrupt_fixed(x, key=3)
            >>> b = ContextRestoration(patch_size=8, bank_size=4).corrupt_fixed(x, key=3)
            >>> torch.equal(a, b)
            True
        """
        bank = self._bank_for(images)
        count = images.shape[0]
        salt = _splitmix64(np.array([self.seed], dtype=np.uint64))
        if isinstance(key, int | np.integer):
            batch = _splitmix64(salt ^ np.uint64(_check_seed("key", key)))
            mixed = _splitmix64(batch ^ np.arange(count, dtype=np.uint64))
        else:
            mixed = _splitmix64(salt ^ _per_image_keys(key, count))
        choice = torch.from_numpy((mixed % np.uint64(len(bank))).astype(np.int64))
        # A blocking host-to-GPU copy would wait for all queued GPU work on every training step;
        # CUDA stages a pageable source before returning, so the non-blocking copy is safe.
        return self._applied(images, bank=bank, choice=choice.to(images.device, non_blocking=True))

    def _applied(self, images: Tensor, *, bank: MaskBank, choice: Tensor) -> Tensor:
        """:meth:`apply`, with its contract checked: a plugin's mistake would otherwise train silently.

        An output that is the input itself (an in-place ``apply``) makes the clean target equal
        to the corrupted input, so the network learns to copy. Shape, dtype and device are
        compared on every call (metadata only); whether the input was left alone is compared
        once per task, on its first batch, since that costs a copy and a host sync.
        """
        first = not getattr(self, "_apply_checked", False)  # a subclass may skip our __init__
        before = images.detach().clone() if first else None
        out = self.apply(images, bank=bank, choice=choice)
        where = f"pretext task {type(self).__module__}.{type(self).__qualname__}: apply"
        if not isinstance(out, Tensor):
            raise TypeError(f"{where} returned a {type(out).__name__}; expected a tensor")
        if out.shape != images.shape or out.dtype != images.dtype or out.device != images.device:
            raise ValueError(
                f"{where} returned a {out.dtype} tensor of shape {tuple(out.shape)} on {out.device} for a "
                f"{images.dtype} batch of shape {tuple(images.shape)} on {images.device}; expected the "
                "same shape, dtype and device"
            )
        if images.numel() and out.untyped_storage().data_ptr() == images.untyped_storage().data_ptr():
            raise ValueError(f"{where} returned its input (corrupted in place); expected a new tensor")
        if before is not None:
            if not torch.equal(images.isnan(), before.isnan()) or not torch.equal(
                images.nan_to_num(), before.nan_to_num()
            ):
                raise ValueError(f"{where} modified its input images; expected a corrupted copy")
            self._apply_checked = True
        return out

    def _bank_for(self, images: Tensor) -> MaskBank:
        if not isinstance(images, Tensor) or not images.is_floating_point():
            found = images.dtype if isinstance(images, Tensor) else type(images).__name__
            raise TypeError(f"images must be a floating-point tensor (N, C, H, W), got {found}")
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        return self.bank(shape=(images.shape[-2], images.shape[-1]), device=images.device)
