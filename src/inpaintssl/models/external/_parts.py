"""What both ecosystem wrappers share: seeded construction and the encoder-decoder-head forward.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Tiny(ThreePartBackbone):
    ...     size_reason = "no pooling"
    ...     def __init__(self) -> None:
    ...         super().__init__(in_channels=1, out_channels=1, size_multiple=1)
    ...         self.encoder, self.decoder, self.head = nn.Identity(), nn.Identity(), nn.Conv2d(1, 1, 1)
    >>> Tiny()(torch.zeros(2, 1, 5, 5)).shape
    torch.Size([2, 1, 5, 5])
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import torch
from torch import nn

from inpaintssl.models.input_checks import check_backbone_input, check_init_seed

__all__ = ["ThreePartBackbone", "seeded_construction"]


@contextlib.contextmanager
def seeded_construction(seed: int | None) -> Iterator[None]:
    """Seed the global CPU generator while a third-party network initialises, then restore it.

    MONAI, smp and timm initialise from the global CPU generator; seeding it for the build gives
    reproducible weights, and restoring it leaves the caller's random stream untouched. Only the
    CPU generator is reseeded (``torch.manual_seed`` would also reseed the CUDA generators).
    ``None`` draws fresh entropy.
    """
    seed = check_init_seed(seed)
    with torch.random.fork_rng(devices=()):
        torch.default_generator.manual_seed(secrets.randbits(32) if seed is None else seed)
        yield


class ThreePartBackbone(nn.Module):
    """A backbone made of ``encoder``, ``decoder`` and ``head`` parts (paper sec. 2.5.1).

    Subclasses set the three parts and :attr:`size_reason`; ``forward`` checks the input
    (:func:`~inpaintssl.models.input_checks.check_backbone_input`) and composes them.

    Args:
        in_channels: Image channels ``C_in``.
        out_channels: Output channels ``C_out``.
        size_multiple: Input height and width must be multiples of it.
    """

    size_reason: str = "the network's downsampling"
    encoder: nn.Module
    decoder: nn.Module
    head: nn.Module

    def __init__(self, *, in_channels: int, out_channels: int, size_multiple: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, C_in, H, W)`` to raw outputs ``(N, C_out, H, W)``.

        Raises:
            ValueError: If ``x`` is not 4-D, has the wrong channel count, or ``H``/``W`` is not a
                multiple of :attr:`size_multiple` (the wrapped libraries would pad silently or
                fail deep inside the decoder).
        """
        check_backbone_input(
            x, in_channels=self.in_channels, size_multiple=self.size_multiple, why=self.size_reason
        )
        out: torch.Tensor = self.head(self.decoder(self.encoder(x)))
        return out
