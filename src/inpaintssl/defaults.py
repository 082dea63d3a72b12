"""The paper's pretext-task defaults, defined once below every package.

:class:`inpaintssl.config.PretextConfig` and :class:`inpaintssl.corruption.PretextTask` both take
their defaults from here, so a bare ``PRETEXT_TASKS.build(name)`` corrupts as a run configured
with nothing does, and neither module has to import the other for them.

Example:
    >>> from inpaintssl.defaults import DEFAULT_PATCH_SIZE, DEFAULT_COVERAGE
    >>> DEFAULT_PATCH_SIZE, DEFAULT_COVERAGE
    (32, 0.25)
"""

from __future__ import annotations

__all__ = ["DEFAULT_BANK_SIZE", "DEFAULT_COVERAGE", "DEFAULT_PATCH_SIZE", "DEFAULT_SAMPLER"]

# Paper sec. 2.4, 2.5.2: K = 32 pixel patches over 1/4 of the area, 100 precomputed masks.
DEFAULT_PATCH_SIZE = 32
"""Side of a square patch in pixels (K)."""
DEFAULT_SAMPLER = "poisson_disc"
"""Sampler of the patch positions."""
DEFAULT_COVERAGE = 0.25
"""Least share of the image area the patches cover."""
DEFAULT_BANK_SIZE = 100
"""Masks precomputed per image size."""
