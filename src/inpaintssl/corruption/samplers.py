"""Patch samplers: where the ``K x K`` corruption patches go (paper sec. 2.4 and 2.5.2).

A sampler turns an image shape, a patch side ``K`` and a coverage into the top-left corners of
patches whose union covers at least that share of the image. Two are registered in
:data:`inpaintssl.registry.SAMPLERS`:

``poisson_disc``
    Bridson's Poisson-disc sampling (the paper's ref. 31) with centre spacing ``K*sqrt(2)``, so no
    two patches overlap; it places the smallest count of patches that reaches the coverage.
``random``
    Uniformly placed patches, fully inside the image and free to overlap, drawn until their
    union reaches the coverage ("fully-random sampling", sec. 2.5.2).

``pairs=True`` asks for the patches context restoration swaps: an even count in which rows
``2i`` and ``2i + 1`` form a pair of mutually non-overlapping patches.

Example:
    >>> import numpy as np
    >>> from inpaintssl.registry import SAMPLERS
    >>> corners = SAMPLERS.build("poisson_disc").sample(
    ...     shape=(64, 64), patch_size=8, coverage=0.25, rng=np.random.default_rng(0)
    ... )
    >>> corners.shape, corners.dtype.name
    ((16, 2), 'int64')
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from inpaintssl.corruption._bridson import bridson_corners, random_corners
from inpaintssl.registry import SAMPLERS

__all__ = [
    "PoissonDiscSampler",
    "lattice_corners",
    "RandomSampler",
    "Sampler",
    "check_patch_options",
    "check_request",
    "check_sampler_signature",
    "describe_sampler",
    "required_patch_count",
    "target_pixels",
    "validate_request",
]

# Numba's Mersenne Twister takes a 32-bit seed.
_SEED_BOUND = 2**32

# Packing draws PoissonDiscSampler makes, per one of its ``attempts``, before it refuses a request
# that neither its regular draws nor a lattice met: a tight request that some layout meets (8
# patches of 8x8 in 31x31) is found by about 1 in 25 packing draws, so ten per attempt find it for
# all but a few seeds in a hundred, while a refusal costs at most about ten times what it did.
_PACKING_DRAWS_PER_ATTEMPT = 10


@runtime_checkable
class Sampler(Protocol):
    """What the pretext tasks need from a sampler (DESIGN.md section 1).

    Runtime-checkable: ``isinstance(obj, Sampler)`` holds for any object with a ``sample``
    method, which is how :meth:`~inpaintssl.registry.Registry.build` checks a sampler plugin.
    """

    def sample(
        self,
        *,
        shape: tuple[int, int],
        patch_size: int,
        coverage: float = 0.25,
        rng: np.random.Generator,
        pairs: bool = False,
    ) -> NDArray[np.int64]:
        """Return ``(N, 2)`` int64 top-left corners ``(row, col)`` of ``K x K`` patches.

        Every patch ``[r, r+K) x [c, c+K)`` lies inside the ``(H, W)`` image and the union covers
        at least ``coverage * H * W`` pixels. With ``pairs`` the count is even and rows ``2i``,
        ``2i + 1`` do not overlap each other. Impossible requests raise :class:`ValueError`.
        """
        ...


def describe_sampler(sampler: object) -> str:
    """A sampler as messages name it: its own ``repr``, else ``module.Class`` (not an address);
    a plugin's class also by its registered name and distribution.

    A plugin author reading "sampler mypkg.samplers.Grid returned ..." learns which class
    failed but not which ``pretext.sampler`` name and installed package it came in, which is
    what the run's config and ``pip`` show.

    Example:
        >>> from inpaintssl.corruption.samplers import RandomSampler
        >>> describe_sampler(RandomSampler()), describe_sampler(object())
        ('RandomSampler(max_draws=None)', 'builtins.object')
    """
    kind = type(sampler)
    own = f"{kind.__module__}.{kind.__qualname__}" if kind.__repr__ is object.__repr__ else repr(sampler)
    target = f"{kind.__module__}:{kind.__qualname__}"
    # Only error messages call this: reading entry-point metadata costs nothing on the hot path,
    # and a failure to read it must not hide the error being reported.
    with contextlib.suppress(Exception):
        for entry in SAMPLERS.entries():
            if entry.source == "plugin" and entry.target == target:
                return f"{entry.name!r} ({own}, plugin from distribution {entry.distribution})"
    return own


def check_sampler_signature(sampler: object) -> None:
    """Refuse a sampler whose ``sample`` cannot take the keyword call every bank makes.

    Checked when a task is built, so that a plugin written against another signature fails
    there, named, rather than at the first batch.

    Raises:
        TypeError: Naming the sampler, its signature and the call expected.

    Example:
        >>> class Positional:
        ...     def sample(self, shape, patch_size):
        ...         return None
        >>> check_sampler_signature(Positional())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: sampler ...Positional: sample(shape, patch_size) cannot be called as \
sample(*, shape, patch_size, coverage, rng, pairs): ...
    """
    method = getattr(sampler, "sample", None)
    if not callable(method):
        raise TypeError(f"sampler {describe_sampler(sampler)} has no callable sample method")
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return  # not introspectable (an extension type): the first call decides
    try:
        signature.bind(shape=(1, 1), patch_size=1, coverage=0.25, rng=None, pairs=False)
    except TypeError as exc:
        raise TypeError(
            f"sampler {describe_sampler(sampler)}: sample{signature} cannot be called as "
            f"sample(*, shape, patch_size, coverage, rng, pairs): {exc}; expected the keyword "
            "parameters of inpaintssl.corruption.samplers.Sampler.sample"
        ) from exc


def validate_request(
    *, shape: tuple[int, int], patch_size: int, coverage: float, pairs: bool = False
) -> tuple[int, int]:
    """Check a sampling request and return ``(H, W)`` as plain ints.

    Besides the plain argument checks, a request is refused when the image is a single pixel
    (there is nothing to corrupt: context prediction's fill, the image's mean, is that pixel,
    and context restoration has no second patch to swap it with), and when one ``K x K`` patch
    alone covers more than the ``ceil(coverage * H * W)`` pixels the coverage asks for
    (:func:`target_pixels`), that is, when ``K**2 > ceil(coverage * H * W)``: every mask would
    then overshoot the coverage asked by more than a patch (a 64x64 patch on a 64x64 image
    corrupts 100 %, not the 25 % asked). So a sampler that stops as soon as the coverage is
    reached never exceeds it by more than one patch's area (one pair's area when ``pairs``,
    which come two at a time).

    Raises:
        ValueError: Naming the argument, what was expected and what was found; an impossible
            request names the image size, the patch size and the coverage.

    Example:
        >>> validate_request(shape=(96, 160), patch_size=16, coverage=0.25)
        (96, 160)
        >>> validate_request(shape=(64, 64), patch_size=64, coverage=0.25)
        Traceback (most recent call last):
        ...
        ValueError: cannot cover 25% of a 64x64 image with 64x64 patches (shape=(64, 64), \
patch_size=64, coverage=0.25): one patch alone covers 100%; expected patch_size <= 32 \
(the largest K with K**2 <= ceil(coverage * H * W), the pixels the coverage asks for)
    """
    if not isinstance(shape, Sequence | np.ndarray) or len(shape) != 2 or not all(map(_is_integral, shape)):
        raise ValueError(f"shape={shape!r} must be (H, W), two integers")
    height, width = (int(side) for side in shape)
    if height < 1 or width < 1:
        raise ValueError(f"shape={shape!r} must have positive sides")
    check_patch_options(patch_size=patch_size, coverage=coverage)
    request = _Request(height, width, patch_size, coverage, pairs)
    if height * width == 1:
        # Whatever the patch, the output would equal the input: prediction fills the one pixel
        # with the image's mean (itself) and restoration has no second patch to swap it with.
        raise request.refuse(
            f"nothing to corrupt: a {height}x{width} image has a single pixel, which no patch can "
            "change while leaving context to restore it from; expected an image of at least 2 pixels"
        )
    if patch_size > min(height, width):
        raise request.refuse(
            f"patch_size={patch_size} is larger than the image; "
            f"expected patch_size <= min(H, W) = {min(height, width)}"
        )
    target = target_pixels(shape=(height, width), coverage=coverage)
    if patch_size**2 > target:
        raise request.refuse(
            f"one patch alone covers {_percent(patch_size**2 / (height * width))}; expected "
            f"patch_size <= {math.isqrt(target)} (the largest K with K**2 <= ceil(coverage * H * W), "
            "the pixels the coverage asks for)"
        )
    if pairs and 2 * patch_size > max(height, width):
        raise request.refuse(
            f"two non-overlapping {patch_size}x{patch_size} patches do not fit; "
            "pairs need 2 * patch_size <= max(H, W)"
        )
    return height, width


def check_patch_options(*, patch_size: int, coverage: float) -> None:
    """Refuse a ``patch_size`` or ``coverage`` that no image could take, before any shape is known.

    Whether the patches fit a given image is :func:`validate_request`'s to say, with that image.

    Raises:
        ValueError: ``patch_size`` is not a positive integer or ``coverage`` not a number in
            ``(0, 1]``, naming the argument and the value found.

    Example:
        >>> check_patch_options(patch_size=16, coverage=0.0)
        Traceback (most recent call last):
        ...
        ValueError: coverage=0.0 must be a number in (0, 1]
    """
    if not _is_integral(patch_size) or patch_size < 1:
        raise ValueError(f"patch_size={patch_size!r} must be a positive integer")
    # A bool or a string would otherwise pass as 1.0 or fail in a comparison that names nothing;
    # NaN fails the range test.
    if not isinstance(coverage, numbers.Real) or isinstance(coverage, bool) or not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage={coverage!r} must be a number in (0, 1]")


def _is_integral(value: object) -> bool:
    """Whether ``value`` is a whole number (``8``, ``np.int64(8)``, ``8.0``), never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or float(value).is_integer()


def _check_count(name: str, value: object, *, allow_none: bool = False) -> None:
    """Refuse a sampler option that is not an integer >= 1, naming it.

    The options reach the Numba kernels, where a float (``max_draws: 1e5`` in a JSON config) would
    fail to compile with a message that names no option, and a bool would pass as 1.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        expected = "an integer >= 1" + (" or None" if allow_none else "")
        raise ValueError(f"{name}={value!r} is invalid; expected {expected}")


def _percent(share: float) -> str:
    return f"{100 * share:.3g}%"


@dataclass(frozen=True)
class _Request:
    """A sampling request past the plain argument checks, and the one wording of its refusal."""

    height: int
    width: int
    patch_size: int
    coverage: float
    pairs: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def refuse(self, why: str) -> ValueError:
        """The error for an impossible request: image size, patch size and coverage, then why."""
        size, k = f"{self.height}x{self.width}", f"{self.patch_size}x{self.patch_size}"
        return ValueError(
            f"cannot cover {_percent(self.coverage)} of a {size} image with {k} patches "
            f"(shape={self.shape}, patch_size={self.patch_size}, coverage={self.coverage}): "
            f"{why}"
        )


def check_request(
    *, sampler: object, shape: tuple[int, int], patch_size: int, coverage: float, pairs: bool = False
) -> tuple[int, int]:
    """Refuse, without sampling, a request ``sampler`` cannot meet; return ``(H, W)``.

    Uses the sampler's own ``check_request`` when it has one (the built-ins do: Poisson-disc adds
    a packing bound), else :func:`validate_request`, which holds for any sampler.

    Raises:
        ValueError: Naming the image size, the patch size and the coverage.

    Example:
        >>> check_request(sampler=PoissonDiscSampler(), shape=(64, 64), patch_size=8, coverage=0.9)
        Traceback (most recent call last):
        ...
        ValueError: cannot cover 90% of a 64x64 image with 8x8 patches (shape=(64, 64), patch_size=8, \
coverage=0.9): coverage unreachable: it needs 58 non-overlapping patches with centre distance >= \
8*sqrt(2), but at most 39 fit; lower coverage or patch_size
    """
    own = getattr(sampler, "check_request", None)
    if callable(own):
        return own(shape=shape, patch_size=patch_size, coverage=coverage, pairs=pairs)  # type: ignore[no-any-return]
    return validate_request(shape=shape, patch_size=patch_size, coverage=coverage, pairs=pairs)


def required_patch_count(
    *, shape: tuple[int, int], patch_size: int, coverage: float, pairs: bool = False
) -> int:
    """Smallest count of non-overlapping ``K x K`` patches covering ``coverage`` of the image.

    The authors used ``floor(H*W*coverage/K**2)``, which falls short of the coverage when ``H*W``
    is not a multiple of ``K**2`` (DESIGN.md section 2); this rounds up, then up to even for pairs.

    Example:
        >>> required_patch_count(shape=(100, 100), patch_size=30, coverage=0.25, pairs=True)
        4
    """
    height, width = shape
    count = max(1, -(-target_pixels(shape=(height, width), coverage=coverage) // patch_size**2))
    return count + count % 2 if pairs else count


def target_pixels(*, shape: tuple[int, int], coverage: float) -> int:
    """Pixels the union of the patches must cover: ``ceil(coverage * H * W)``.

    The product is exact, with ``coverage`` read as the decimal it prints as: in floating point
    ``0.07 * 100 * 100`` is ``700.0000000000001``, whose ceiling would ask one patch more than the
    smallest count that covers 7 %. A NumPy float prints at its own precision, so
    ``np.float32(0.07)`` is read as 0.07 too, not as the ``0.07000000029802322`` it widens to.

    Example:
        >>> target_pixels(shape=(200, 72), coverage=0.25)
        3600
        >>> target_pixels(shape=(100, 100), coverage=0.07)
        700
    """
    return math.ceil(Fraction(repr(_printed_coverage(coverage))) * shape[0] * shape[1])


def _printed_coverage(coverage: float) -> float:
    """``coverage`` as the Python float of the decimal it prints as.

    ``float(np.float32(0.07))`` is ``0.07000000029802322``: the float32 nearest 0.07, widened. Read
    that way, 7 % of a 100x100 image would need 701 pixels, one patch more than a Python ``0.07``
    asks. A NumPy float is read from its shortest decimal at its own precision (what it prints
    as); every other real, Python floats included, is ``float(coverage)`` unchanged.

    Example:
        >>> _printed_coverage(np.float32(0.07)), float(np.float32(0.07))
        (0.07, 0.07000000029802322)
    """
    if isinstance(coverage, np.floating):
        return float(str(coverage))
    return float(coverage)


def _draw_seed(rng: np.random.Generator) -> int:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return int(rng.integers(0, _SEED_BOUND))


def _poisson_capacity(height: int, width: int, patch_size: int) -> int:
    """An upper bound on how many patches any Poisson-disc draw can place.

    Two bounds, the tighter wins: non-overlapping squares (``floor(H/K) * floor(W/K)``) and
    Oler's inequality for points at mutual distance >= 1 in a convex region of area ``A`` and
    perimeter ``P``, ``n <= 2 A / sqrt(3) + P / 2 + 1``, applied to the corner domain in units of
    ``K*sqrt(2)``.
    """
    squares = (height // patch_size) * (width // patch_size)
    spacing = patch_size * math.sqrt(2.0)
    a = (height - patch_size) / spacing
    b = (width - patch_size) / spacing
    oler = math.floor(2.0 * a * b / math.sqrt(3.0) + (a + b) + 1.0 + 1e-9)
    return min(squares, oler)


def _lattice_spacings(patch_size: int) -> tuple[int, int]:
    """``(2*K**2, ceil(K*sqrt(2)))``: the squared Poisson-disc distance and the least within-row spacing.

    Integer corners compare their squared distances exactly against the first; the second
    (whose square is at least the first) starts each lattice's range of within-row spacings.
    """
    return 2 * patch_size * patch_size, math.ceil(patch_size * math.sqrt(2.0))


def _zigzag_lattices(span_rows: int, span_cols: int, patch_size: int) -> list[NDArray[np.int64]]:
    """Corner sets of the staggered lattices that fit the corner domain ``[0, R] x [0, C]``.

    Rows ``a`` apart, ``b`` apart within a row, every other row shifted by ``b // 2``: the densest
    packings of a strip (a zig-zag) and, for ``b`` near ``K*sqrt(2)``, near-hexagonal ones. Each set
    starts at the domain's corner and keeps exact integer spacings. Its closest pairs are a row's
    neighbours (``b`` apart), the next row's nearest points (``(a, b // 2)`` away, as
    ``b // 2 <= b - b // 2``) and the row after next (``2a``); all three are at least
    ``K*sqrt(2)``, so every pair is, without comparing all pairs.
    """
    min_sq, spacing = _lattice_spacings(patch_size)
    found = []
    for across in range(spacing, 2 * spacing + 1):
        half = across // 2
        rows = max(math.ceil(math.sqrt(max(min_sq - half * half, 0))), math.ceil(spacing / 2), 1)
        while rows * rows + half * half < min_sq or 4 * rows * rows < min_sq:  # integer rounding
            rows += 1
        points = [
            (r, c)
            for i, r in enumerate(range(0, span_rows + 1, rows))
            for c in range(half * (i % 2), span_cols + 1, across)
        ]
        found.append(np.asarray(points, dtype=np.int64).reshape(-1, 2))
    return found


def _two_row_lattices(span_rows: int, span_cols: int, patch_size: int) -> list[NDArray[np.int64]]:
    """Corner sets of zig-zags with one row at each edge of the corner domain ``[0, R] x [0, C]``.

    Where the domain holds only two rows there is no row after next, so :func:`_zigzag_lattices`'
    ``2a >= K*sqrt(2)`` would only push the second row out of the domain: in a 52 x 160 image
    with ``K = 32`` (``R = 20``) it found one row of three where (0, 0), (20, 41), (0, 82),
    (20, 123) hold four. Here the rows are ``R`` apart, the farthest they can be, and a row's
    neighbours ``b`` apart with the other row shifted by ``b // 2``; only the row's neighbours and
    the other row's nearest points (``(R, b // 2)`` away) need to be at least ``K*sqrt(2)``.
    """
    min_sq, spacing = _lattice_spacings(patch_size)
    found = []
    for across in range(spacing, 2 * spacing + 1):
        half = across // 2
        if span_rows < 1 or span_rows * span_rows + half * half < min_sq:
            continue
        points = [
            (r, c) for i, r in enumerate((0, span_rows)) for c in range(half * i, span_cols + 1, across)
        ]
        found.append(np.asarray(points, dtype=np.int64).reshape(-1, 2))
    return found


def lattice_corners(
    *, shape: tuple[int, int], patch_size: int, count: int, rng: np.random.Generator
) -> NDArray[np.int64] | None:
    """``count`` corners with centre distance >= ``K*sqrt(2)`` from a staggered lattice, or ``None``.

    The fallback of :class:`PoissonDiscSampler` for tight requests (narrow images, large ``K``),
    where a random maximal Poisson-disc set often blocks the zig-zag packing that fits. Among the
    lattices (both orientations, every within-row spacing up to ``2*K*sqrt(2)``) that hold at
    least ``count`` corners, or where none does the two-row zig-zags of
    :func:`_two_row_lattices`, one is chosen at random, shifted by a random offset within the room
    left over, and ``count`` of its corners kept at random.

    Example:
        >>> import numpy as np
        >>> corners = lattice_corners(shape=(33, 65), patch_size=16, count=4, rng=np.random.default_rng(0))
        >>> len(corners), int(((corners[0] - corners[1]) ** 2).sum()) >= 2 * 16**2
        (4, True)
    """
    height, width = shape
    span_rows, span_cols = height - patch_size, width - patch_size
    options = []
    # The two-row zig-zags only where no other lattice holds the count, so that the requests the
    # others met keep the corners they had.
    for lattices in (_zigzag_lattices, _two_row_lattices):
        for transpose in (False, True):
            rows, cols = (span_cols, span_rows) if transpose else (span_rows, span_cols)
            for corners in lattices(rows, cols, patch_size):
                if len(corners) >= count:
                    options.append(corners[:, ::-1] if transpose else corners)
        if options:
            break
    if not options:
        return None
    corners = options[int(rng.integers(len(options)))]
    room = np.array([span_rows, span_cols]) - corners.max(axis=0)
    shift = np.array([rng.integers(0, room[0] + 1), rng.integers(0, room[1] + 1)], dtype=np.int64)
    keep = rng.permutation(len(corners))[:count]
    return np.ascontiguousarray(corners[keep] + shift, dtype=np.int64)


class _CheckedSampler(ABC):
    """The built-ins' :meth:`sample`: refuse what :meth:`check_request` refuses, then :meth:`_draw`."""

    def sample(
        self,
        *,
        shape: tuple[int, int],
        patch_size: int,
        coverage: float = 0.25,
        rng: np.random.Generator,
        pairs: bool = False,
    ) -> NDArray[np.int64]:
        """``(N, 2)`` int64 corners of patches whose union covers ``coverage`` of the image.

        Raises:
            ValueError: The request is invalid, or the draws fell short of the coverage (the
                message says "coverage unreachable", or for Poisson-disc draws that found no
                layout "coverage not reached", with the shape, ``K`` and what was reached).
        """
        height, width = self.check_request(shape=shape, patch_size=patch_size, coverage=coverage, pairs=pairs)
        # Plain ints for the Numba kernels: a whole float (8.0) or a NumPy integer passes the checks
        # but would make the kernels compile for, or fail on, another type.
        return self._draw(
            _Request(height, width, int(patch_size), _printed_coverage(coverage), bool(pairs)), rng
        )

    def check_request(
        self, *, shape: tuple[int, int], patch_size: int, coverage: float = 0.25, pairs: bool = False
    ) -> tuple[int, int]:
        """Refuse, without sampling, a request no draw can meet; return ``(H, W)``.

        Overlapping patches can reach any coverage up to 1, so here this is :func:`validate_request`.

        Example:
            >>> RandomSampler().check_request(shape=(64, 64), patch_size=8, coverage=0.25)
            (64, 64)
        """
        return validate_request(shape=shape, patch_size=patch_size, coverage=coverage, pairs=pairs)

    @abstractmethod
    def _draw(self, request: _Request, rng: np.random.Generator) -> NDArray[np.int64]:
        """The corners for a request :meth:`check_request` let through."""


@SAMPLERS.register("poisson_disc")
class PoissonDiscSampler(_CheckedSampler):
    """Non-overlapping patches by Bridson's Poisson-disc sampling (sec. 2.5.2, ref. 31).

    Each draw grows a maximal Poisson-disc set of corners with minimum centre distance
    ``K*sqrt(2)`` (so two patches can touch but never overlap), then keeps a random subset of
    exactly :func:`required_patch_count` corners, which spreads the patches over the whole image
    instead of a blob around the first point. A draw that places too few corners is retried with
    more candidates per point, a tighter candidate annulus and points pushed onto the image edges
    (denser packings). After ``attempts`` short draws, a tight request (a narrow image, a large
    ``K``) takes its corners from a randomly shifted staggered lattice (:func:`lattice_corners`),
    the zig-zag packing a random maximal set often blocks. Where no lattice holds the count
    either, up to ``10 * attempts`` packing draws follow (candidates exactly at the minimum
    distance, from a corner of the image), which find the irregular layouts of small images that
    neither the draws nor the lattices hit; only when none of them holds the count, or at once
    when a packing bound shows it cannot fit, it raises. A request met before those packing draws
    gets the same corners whether or not they exist.

    Args:
        candidates: Candidates per active point on the first draw (Bridson's ``k``; the authors
            used 10). Draw ``i`` uses ``candidates * (i + 1)``, each packing draw
            ``candidates * attempts``.
        attempts: Draws before the lattices are tried; ``10 * attempts`` packing draws follow
            before the request is refused.

    Example:
        >>> import numpy as np
        >>> sampler = PoissonDiscSampler()
        >>> corners = sampler.sample(shape=(96, 160), patch_size=16, rng=np.random.default_rng(1))
        >>> len(corners)  # ceil(0.25 * 96 * 160 / 16**2)
        15
    """

    def __init__(self, *, candidates: int = 30, attempts: int = 10) -> None:
        _check_count("candidates", candidates)
        _check_count("attempts", attempts)
        self.candidates = candidates
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"PoissonDiscSampler(candidates={self.candidates}, attempts={self.attempts})"

    def fill(
        self, *, shape: tuple[int, int], patch_size: int, rng: np.random.Generator, attempt: int = 0
    ) -> NDArray[np.int64]:
        """One maximal Poisson-disc set: every ``(M, 2)`` corner one draw placed.

        ``M * K**2 / (H * W)`` is the coverage that draw could reach.

        Args:
            shape: Image shape ``(H, W)``.
            patch_size: Patch side ``K``.
            rng: Source of the draw's seed.
            attempt: 0 is Bridson's algorithm with ``candidates`` per point; ``i > 0`` is the
                ``i``-th, denser retry that :meth:`sample` makes.

        Example:
            >>> import numpy as np
            >>> rng = np.random.default_rng(0)
            >>> len(PoissonDiscSampler().fill(shape=(64, 64), patch_size=8, rng=rng)) >= 16
            True
        """
        height, width = validate_request(shape=shape, patch_size=patch_size, coverage=1.0)
        if isinstance(attempt, bool) or not isinstance(attempt, numbers.Integral) or attempt < 0:
            raise ValueError(f"attempt={attempt!r} is invalid; expected an integer >= 0")
        patch_size, attempt = int(patch_size), int(attempt)
        # Retries try more candidates in a thinner annulus just outside the minimum distance, and
        # start from a domain corner with candidates pushed onto the edges: both pack closer to the
        # limit, which matters only for tight requests (narrow images, large K).
        outer = 1.0 + 1.0 / (attempt + 1)
        return bridson_corners(
            height - patch_size,
            width - patch_size,
            patch_size,
            self.candidates * (attempt + 1),
            outer,
            attempt > 0,
            _draw_seed(rng),
        )

    def _draw(self, request: _Request, rng: np.random.Generator) -> NDArray[np.int64]:
        """``N = required_patch_count(...)`` non-overlapping patches: the first of ``attempts`` draws
        that places them, else a lattice, else the first packing draw that does."""
        count = required_patch_count(
            shape=request.shape, patch_size=request.patch_size, coverage=request.coverage, pairs=request.pairs
        )
        best = 0
        for attempt in range(self.attempts):
            corners = self.fill(shape=request.shape, patch_size=request.patch_size, rng=rng, attempt=attempt)
            if len(corners) >= count:
                keep = rng.permutation(len(corners))[:count]
                return corners[keep]
            best = max(best, len(corners))
        packed = lattice_corners(shape=request.shape, patch_size=request.patch_size, count=count, rng=rng)
        if packed is not None:
            return packed
        # Only requests that were refused before reach here (a missing lattice draws nothing from
        # rng), so every request met above keeps its corners. Irregular layouts of small images
        # exist that no lattice holds and that a maximal Poisson-disc set hits only by chance.
        packing_draws = _PACKING_DRAWS_PER_ATTEMPT * self.attempts
        for _ in range(packing_draws):
            corners = self._packing_draw(request, rng)
            if len(corners) >= count:
                keep = rng.permutation(len(corners))[:count]
                return corners[keep]
            best = max(best, len(corners))
        raise request.refuse(
            f"coverage not reached: no layout of {count} non-overlapping Poisson-disc patches was "
            f"found in {self.attempts + packing_draws} draws (the best placed {best}) nor in a "
            "staggered lattice; one may still exist, but these draws did not find it; lower coverage "
            "or patch_size, use a larger image, or raise attempts"
        )

    def _packing_draw(self, request: _Request, rng: np.random.Generator) -> NDArray[np.int64]:
        """One maximal set packed as densely as Bridson's algorithm can: from a domain corner, with
        ``candidates * attempts`` candidates per point, all at the minimum distance (rounded to the
        integer lattice, so some fall short and are rejected) and pushed onto the edges."""
        span_rows, span_cols = request.height - request.patch_size, request.width - request.patch_size
        return bridson_corners(
            span_rows,
            span_cols,
            request.patch_size,
            self.candidates * self.attempts,
            1.0,
            True,
            _draw_seed(rng),
        )

    def check_request(
        self, *, shape: tuple[int, int], patch_size: int, coverage: float = 0.25, pairs: bool = False
    ) -> tuple[int, int]:
        """Refuse, without sampling, a request no draw can meet; return ``(H, W)``.

        On top of :func:`validate_request`, the patch count the coverage needs must fit a
        packing bound for centre distance ``K*sqrt(2)``. Passing does not promise that a draw
        succeeds (the bound is an upper one), only that failing here is certain.

        Raises:
            ValueError: Naming the image size, the patch size and the coverage ("coverage
                unreachable" when too many patches are needed).

        Example:
            >>> PoissonDiscSampler().check_request(shape=(64, 64), patch_size=8, coverage=0.25)
            (64, 64)
        """
        height, width = super().check_request(
            shape=shape, patch_size=patch_size, coverage=coverage, pairs=pairs
        )
        request = _Request(height, width, patch_size, coverage, pairs)
        count = required_patch_count(
            shape=request.shape, patch_size=patch_size, coverage=coverage, pairs=pairs
        )
        capacity = _poisson_capacity(height, width, patch_size)
        if count > capacity:
            raise request.refuse(
                f"coverage unreachable: it needs {count} non-overlapping patches with centre "
                f"distance >= {patch_size}*sqrt(2), but at most {capacity} fit; lower coverage "
                "or patch_size"
            )
        return height, width


@SAMPLERS.register("random")
class RandomSampler(_CheckedSampler):
    """Uniformly placed, possibly overlapping patches until the coverage is reached (sec. 2.4).

    Every corner is uniform over the positions that keep the patch inside the image. With
    ``pairs`` the second patch of each pair is uniform over the positions that do not overlap the
    first; pairs may overlap other pairs, as in the paper's random sampling.

    Args:
        max_draws: Bound on draws per call; ``None`` means ``64 * ceil(H * W / K**2) + 1000``,
            ample for any coverage below about 0.99, so an unreachable request fails fast instead
            of looping.

    Example:
        >>> import numpy as np
        >>> corners = RandomSampler().sample(shape=(32, 48), patch_size=8, rng=np.random.default_rng(0))
        >>> covered = np.zeros((32, 48), bool)
        >>> for r, c in corners:
        ...     covered[r : r + 8, c : c + 8] = True
        >>> bool(covered.mean() >= 0.25)
        True
    """

    def __init__(self, *, max_draws: int | None = None) -> None:
        _check_count("max_draws", max_draws, allow_none=True)
        self.max_draws = max_draws

    def __repr__(self) -> str:
        return f"RandomSampler(max_draws={self.max_draws})"

    def _draw(self, request: _Request, rng: np.random.Generator) -> NDArray[np.int64]:
        """Random patches until their union covers the target, within ``max_draws`` draws."""
        height, width, patch_size = request.height, request.width, request.patch_size
        target = target_pixels(shape=request.shape, coverage=request.coverage)
        max_draws = self.max_draws or 64 * math.ceil(height * width / patch_size**2) + 1000
        corners, area = random_corners(
            height, width, patch_size, target, request.pairs, max_draws, _draw_seed(rng)
        )
        if area < target:
            raise request.refuse(
                f"coverage unreachable: random patches covered {area} of the {target} pixels "
                f"needed within max_draws={max_draws}; lower coverage or raise max_draws"
            )
        return corners
